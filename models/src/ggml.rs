//! CTranslate2 Whisper → whisper.cpp GGML conversion.
//!
//! The GGML file is: magic `0x67676d6c`; 11 `i32` hyper-parameters; the mel filterbank
//! (`n_mel`, `n_fft`, `f32` weights); the ordinary tokens as bytes (whisper.cpp adds the special
//! ones); then tensors, each `n_dims`, name length, type (0 f32, 1 f16), dims innermost first,
//! name, data. Vectors, convolution biases (as `[n, 1]`) and positional embeddings are `f32`,
//! everything else `f16`, like whisper.cpp's own converter writes them.
//!
//! CTranslate2 fuses attention projections: self-attention `linear_0` is query‖key‖value and
//! cross-attention `linear_1` is key‖value, with an all-zero key bias (Whisper's key projection
//! has none). They are split back into whisper.cpp's names. Quantised (int8) models and layouts
//! this does not know are refused with the reason.

use std::collections::BTreeMap;
use std::io::Write;

use half::f16;

use crate::ModelError;
use crate::ct2::{self, DType, Variable};
use crate::mel;

pub const MAGIC: u32 = 0x6767_6d6c;
const TYPE_F32: i32 = 0;
const TYPE_F16: i32 = 1;

/// Whisper's hyper-parameters, in the order the GGML header stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    /// 1: f16 weights.
    pub ftype: i32,
}

impl Hparams {
    fn to_array(self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    /// True for the multilingual vocabulary (51865 tokens and more).
    pub fn multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }
}

/// What a conversion produced.
#[derive(Debug, Clone)]
pub struct Converted {
    pub hparams: Hparams,
    pub tokens: usize,
    pub tensors: usize,
    pub bytes: u64,
}

/// One output tensor: the GGML name, its shape (outermost first, as in PyTorch), the output
/// type, and the rows of the source variable it takes.
struct Plan<'a> {
    name: String,
    shape: Vec<usize>,
    f32_out: bool,
    source: &'a Variable<'a>,
    source_name: String,
    rows: std::ops::Range<usize>,
}

fn format_err(msg: impl Into<String>) -> ModelError {
    ModelError::Format(msg.into())
}

/// Converts a CTranslate2 Whisper `model.bin` (float16 or float32) and its `vocabulary.txt`
/// into a whisper.cpp GGML model written to `out`.
pub fn convert_whisper(
    model_bin: &[u8],
    vocabulary: &str,
    out: &mut impl Write,
) -> Result<Converted, ModelError> {
    let model = ct2::parse(model_bin)?;
    if model.spec != "WhisperSpec" {
        return Err(format_err(format!(
            "not a CTranslate2 Whisper model (spec {:?})",
            model.spec
        )));
    }
    let vars = &model.variables;
    for (name, v) in vars {
        if name.ends_with("weight_scale") || (v.dtype == DType::I8 && v.dims.len() >= 2) {
            return Err(format_err(format!(
                "{name} is int8-quantised: only float16 or float32 CTranslate2 models can be \
                 converted (re-export the model with quantization float16)"
            )));
        }
    }
    let get = |name: &str| -> Result<&Variable<'_>, ModelError> {
        vars.get(name)
            .ok_or_else(|| format_err(format!("CTranslate2 Whisper model lacks {name}")))
    };
    let dim = |name: &str, i: usize| -> Result<i32, ModelError> {
        let v = get(name)?;
        v.dims
            .get(i)
            .map(|&d| d as i32)
            .ok_or_else(|| format_err(format!("{name} has dims {:?}", v.dims)))
    };
    let heads = |name: &str| -> Result<i32, ModelError> {
        get(name)?
            .scalar_int()
            .map(|h| h as i32)
            .ok_or_else(|| format_err(format!("{name} is not an integer scalar")))
    };
    let layers = |prefix: &str| {
        (0..)
            .take_while(|i| {
                vars.keys()
                    .any(|k| k.starts_with(&format!("{prefix}/layer_{i}/")))
            })
            .count() as i32
    };
    let hparams = Hparams {
        n_vocab: dim("decoder/embeddings/weight", 0)?,
        n_audio_ctx: dim("encoder/position_encodings/encodings", 0)?,
        n_audio_state: dim("encoder/position_encodings/encodings", 1)?,
        n_audio_head: heads("encoder/num_heads")?,
        n_audio_layer: layers("encoder"),
        n_text_ctx: dim("decoder/position_encodings/encodings", 0)?,
        n_text_state: dim("decoder/position_encodings/encodings", 1)?,
        n_text_head: heads("decoder/num_heads")?,
        n_text_layer: layers("decoder"),
        n_mels: dim("encoder/conv1/weight", 1)?,
        ftype: 1,
    };
    if hparams.n_audio_state != hparams.n_text_state {
        return Err(format_err(format!(
            "encoder width {} differs from decoder width {}",
            hparams.n_audio_state, hparams.n_text_state
        )));
    }

    let mut plans = Vec::new();
    for (name, v) in vars {
        if v.dims.is_empty() {
            continue; // configuration scalars (num_heads, activation, ...)
        }
        plan_variable(name, v, &mut plans)?;
    }
    let expected = 7 + 15 * hparams.n_audio_layer as usize + 4 + 24 * hparams.n_text_layer as usize;
    if plans.len() != expected {
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        return Err(format_err(format!(
            "expected {expected} tensors for {} encoder and {} decoder layers, mapped {}: {names:?}",
            hparams.n_audio_layer,
            hparams.n_text_layer,
            plans.len()
        )));
    }

    let tokens = ordinary_tokens(vocabulary)?;
    let mut w = Counting {
        inner: out,
        bytes: 0,
    };
    w.write_all(&MAGIC.to_le_bytes())?;
    for p in hparams.to_array() {
        w.write_all(&p.to_le_bytes())?;
    }
    let n_fft = 201usize;
    w.write_all(&hparams.n_mels.to_le_bytes())?;
    w.write_all(&(n_fft as i32).to_le_bytes())?;
    for f in mel::filters(16_000, 400, hparams.n_mels as usize) {
        w.write_all(&f.to_le_bytes())?;
    }
    w.write_all(&(tokens.len() as i32).to_le_bytes())?;
    for t in &tokens {
        w.write_all(&(t.len() as u32).to_le_bytes())?;
        w.write_all(t)?;
    }
    for p in &plans {
        write_tensor(&mut w, p)?;
    }
    w.flush()?;
    Ok(Converted {
        hparams,
        tokens: tokens.len(),
        tensors: plans.len(),
        bytes: w.bytes,
    })
}

struct Counting<'w, W: Write> {
    inner: &'w mut W,
    bytes: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Maps one CTranslate2 variable to its GGML tensor(s).
fn plan_variable<'a>(
    name: &str,
    v: &'a Variable<'a>,
    plans: &mut Vec<Plan<'a>>,
) -> Result<(), ModelError> {
    let unknown = || {
        format_err(format!(
            "unknown CTranslate2 Whisper variable {name} {:?}: layout not supported",
            v.dims
        ))
    };
    if !matches!(v.dtype, DType::F16 | DType::F32) {
        return Err(format_err(format!(
            "{name} has dtype {:?}: only float16 and float32 weights can be converted",
            v.dtype
        )));
    }
    let rows = v.dims[0];
    let mut push = |ggml: String, shape: Vec<usize>, range: std::ops::Range<usize>| {
        let f32_out =
            shape.len() < 2 || ggml.ends_with(".bias") || ggml.ends_with("positional_embedding");
        plans.push(Plan {
            name: ggml,
            shape,
            f32_out,
            source: v,
            source_name: name.to_string(),
            rows: range,
        });
    };
    let parts: Vec<&str> = name.split('/').collect();
    let leaf = |p: &str| match p {
        "gamma" | "weight" => Some("weight"),
        "beta" | "bias" => Some("bias"),
        _ => None,
    };
    match parts.as_slice() {
        [
            "encoder",
            conv @ ("conv1" | "conv2"),
            kind @ ("weight" | "bias"),
        ] => {
            // whisper.cpp adds the convolution bias to an [n_state, n_ctx] result: [n, 1].
            let shape = if *kind == "bias" {
                vec![rows, 1]
            } else {
                v.dims.clone()
            };
            push(format!("encoder.{conv}.{kind}"), shape, 0..rows);
        }
        [
            side @ ("encoder" | "decoder"),
            "position_encodings",
            "encodings",
        ] => {
            push(
                format!("{side}.positional_embedding"),
                v.dims.clone(),
                0..rows,
            );
        }
        ["decoder", "embeddings", "weight"] => {
            push(
                "decoder.token_embedding.weight".into(),
                v.dims.clone(),
                0..rows,
            );
        }
        [side @ ("encoder" | "decoder"), "layer_norm", p] => {
            let ln = if *side == "encoder" { "ln_post" } else { "ln" };
            push(
                format!("{side}.{ln}.{}", leaf(p).ok_or_else(unknown)?),
                v.dims.clone(),
                0..rows,
            );
        }
        [side @ ("encoder" | "decoder"), layer, block, sub, p] if layer.starts_with("layer_") => {
            let i: usize = layer["layer_".len()..].parse().map_err(|_| unknown())?;
            let base = format!("{side}.blocks.{i}");
            let p = leaf(p).ok_or_else(unknown)?;
            let split = |n: usize| -> Result<usize, ModelError> {
                if !rows.is_multiple_of(n) {
                    return Err(format_err(format!(
                        "{name}: {rows} rows do not split in {n}"
                    )));
                }
                Ok(rows / n)
            };
            match (*block, *sub) {
                ("self_attention", "layer_norm") => {
                    push(format!("{base}.attn_ln.{p}"), v.dims.clone(), 0..rows)
                }
                ("attention", "layer_norm") if *side == "decoder" => {
                    push(format!("{base}.cross_attn_ln.{p}"), v.dims.clone(), 0..rows)
                }
                ("ffn", "layer_norm") => {
                    push(format!("{base}.mlp_ln.{p}"), v.dims.clone(), 0..rows)
                }
                ("ffn", "linear_0") => push(format!("{base}.mlp.0.{p}"), v.dims.clone(), 0..rows),
                ("ffn", "linear_1") => push(format!("{base}.mlp.2.{p}"), v.dims.clone(), 0..rows),
                ("self_attention", "linear_0") => {
                    let d = split(3)?;
                    let mut shape = v.dims.clone();
                    shape[0] = d;
                    push(format!("{base}.attn.query.{p}"), shape.clone(), 0..d);
                    if p == "weight" {
                        push(format!("{base}.attn.key.{p}"), shape.clone(), d..2 * d);
                    } else {
                        require_zero(name, v, d..2 * d)?;
                    }
                    push(format!("{base}.attn.value.{p}"), shape, 2 * d..3 * d);
                }
                ("self_attention", "linear_1") => {
                    push(format!("{base}.attn.out.{p}"), v.dims.clone(), 0..rows)
                }
                ("attention", "linear_0") if *side == "decoder" => push(
                    format!("{base}.cross_attn.query.{p}"),
                    v.dims.clone(),
                    0..rows,
                ),
                ("attention", "linear_1") if *side == "decoder" => {
                    let d = split(2)?;
                    let mut shape = v.dims.clone();
                    shape[0] = d;
                    if p == "weight" {
                        push(format!("{base}.cross_attn.key.{p}"), shape.clone(), 0..d);
                    } else {
                        require_zero(name, v, 0..d)?;
                    }
                    push(format!("{base}.cross_attn.value.{p}"), shape, d..2 * d);
                }
                ("attention", "linear_2") if *side == "decoder" => push(
                    format!("{base}.cross_attn.out.{p}"),
                    v.dims.clone(),
                    0..rows,
                ),
                _ => return Err(unknown()),
            }
        }
        _ => return Err(unknown()),
    }
    Ok(())
}

/// Whisper's key projections have no bias; CTranslate2 stores zeros for them when it fuses.
fn require_zero(
    name: &str,
    v: &Variable<'_>,
    rows: std::ops::Range<usize>,
) -> Result<(), ModelError> {
    let values = row_values(v, rows);
    if values.iter().any(|&x| x != 0.0) {
        return Err(format_err(format!(
            "{name}: the key projection's bias is not zero; whisper.cpp has no key bias"
        )));
    }
    Ok(())
}

fn row_values(v: &Variable<'_>, rows: std::ops::Range<usize>) -> Vec<f32> {
    let per_row: usize = v.dims[1..].iter().product();
    let size = v.dtype.size();
    let bytes = &v.data[rows.start * per_row * size..rows.end * per_row * size];
    match v.dtype {
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

fn write_tensor(w: &mut impl Write, p: &Plan<'_>) -> Result<(), ModelError> {
    let v = p.source;
    let per_row: usize = v.dims[1..].iter().product();
    let expected: usize = p.shape.iter().product();
    if per_row * p.rows.len() != expected {
        return Err(format_err(format!(
            "{}: shape {:?} does not fit {} rows of {}",
            p.name,
            p.shape,
            p.rows.len(),
            p.source_name
        )));
    }
    w.write_all(&(p.shape.len() as i32).to_le_bytes())?;
    w.write_all(&(p.name.len() as i32).to_le_bytes())?;
    w.write_all(&(if p.f32_out { TYPE_F32 } else { TYPE_F16 }).to_le_bytes())?;
    for d in p.shape.iter().rev() {
        w.write_all(&(*d as i32).to_le_bytes())?;
    }
    w.write_all(p.name.as_bytes())?;
    let size = v.dtype.size();
    let bytes = &v.data[p.rows.start * per_row * size..p.rows.end * per_row * size];
    match (v.dtype, p.f32_out) {
        (DType::F16, false) | (DType::F32, true) => w.write_all(bytes)?,
        (DType::F16, true) => {
            let mut buf = Vec::with_capacity(bytes.len() * 2);
            for c in bytes.chunks_exact(2) {
                buf.extend_from_slice(&f16::from_le_bytes([c[0], c[1]]).to_f32().to_le_bytes());
            }
            w.write_all(&buf)?;
        }
        _ => {
            let mut buf = Vec::with_capacity(bytes.len() / 2);
            for c in bytes.chunks_exact(4) {
                let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                buf.extend_from_slice(&f16::from_f32(x).to_le_bytes());
            }
            w.write_all(&buf)?;
        }
    }
    Ok(())
}

/// GPT-2's byte-level alphabet: which byte each printable character of `vocabulary.txt` stands for.
fn unicode_to_byte() -> BTreeMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable
        .iter()
        .zip(&chars)
        .filter_map(|(&b, &c)| Some((char::from_u32(c)?, b as u8)))
        .collect()
}

/// The ordinary (non-special) tokens of a CTranslate2 `vocabulary.txt`, as bytes: every line
/// before `<|endoftext|>`.
pub fn ordinary_tokens(vocabulary: &str) -> Result<Vec<Vec<u8>>, ModelError> {
    let map = unicode_to_byte();
    let mut tokens = Vec::new();
    for (i, line) in vocabulary.split('\n').enumerate() {
        if line == "<|endoftext|>" {
            return Ok(tokens);
        }
        let bytes = line
            .chars()
            .map(|c| map.get(&c).copied())
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| {
                format_err(format!(
                    "vocabulary line {}: {line:?} is not a byte-level BPE token",
                    i + 1
                ))
            })?;
        tokens.push(bytes);
    }
    Err(format_err("vocabulary has no <|endoftext|> token"))
}

/// A GGML Whisper file read back: header, filterbank, tokens and tensor directory. whisper.cpp
/// is the real consumer; this reader lets tests and `models list` check a file's structure.
#[derive(Debug)]
pub struct GgmlWhisper {
    pub hparams: Hparams,
    pub mel_filters: Vec<f32>,
    pub tokens: Vec<Vec<u8>>,
    /// name → (type, dims innermost first, data offset, data length).
    pub tensors: BTreeMap<String, (i32, Vec<usize>, usize, usize)>,
}

pub fn read_whisper(bytes: &[u8]) -> Result<GgmlWhisper, ModelError> {
    let mut pos = 0usize;
    let i32_at = |pos: &mut usize| -> Result<i32, ModelError> {
        let b = bytes
            .get(*pos..*pos + 4)
            .ok_or_else(|| format_err(format!("GGML file truncated at byte {pos}")))?;
        *pos += 4;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if i32_at(&mut pos)? as u32 != MAGIC {
        return Err(format_err("not a GGML file (bad magic)"));
    }
    let mut h = [0i32; 11];
    for x in &mut h {
        *x = i32_at(&mut pos)?;
    }
    let hparams = Hparams {
        n_vocab: h[0],
        n_audio_ctx: h[1],
        n_audio_state: h[2],
        n_audio_head: h[3],
        n_audio_layer: h[4],
        n_text_ctx: h[5],
        n_text_state: h[6],
        n_text_head: h[7],
        n_text_layer: h[8],
        n_mels: h[9],
        ftype: h[10],
    };
    // Counts from the header are checked against the bytes that are left before anything is
    // allocated for them: a damaged header must not ask for gigabytes.
    let n_mel = i32_at(&mut pos)?.max(0) as usize;
    let n_fft = i32_at(&mut pos)?.max(0) as usize;
    let filters = n_mel
        .checked_mul(n_fft)
        .filter(|n| n.saturating_mul(4) <= bytes.len() - pos)
        .ok_or_else(|| format_err(format!("GGML mel filters {n_mel}x{n_fft} exceed the file")))?;
    let mut mel_filters = Vec::with_capacity(filters);
    for _ in 0..filters {
        mel_filters.push(f32::from_bits(i32_at(&mut pos)? as u32));
    }
    let n_tokens = i32_at(&mut pos)?.max(0) as usize;
    if n_tokens.saturating_mul(4) > bytes.len() - pos {
        return Err(format_err(format!(
            "GGML token count {n_tokens} exceeds the file"
        )));
    }
    let mut tokens = Vec::with_capacity(n_tokens);
    for _ in 0..n_tokens {
        let len = i32_at(&mut pos)? as u32 as usize;
        let t = bytes
            .get(pos..pos + len)
            .ok_or_else(|| format_err("GGML token list truncated"))?;
        tokens.push(t.to_vec());
        pos += len;
    }
    let mut tensors = BTreeMap::new();
    while pos < bytes.len() {
        let n_dims = i32_at(&mut pos)?.clamp(0, 4) as usize;
        let name_len = i32_at(&mut pos)?.max(0) as usize;
        let ttype = i32_at(&mut pos)?;
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(i32_at(&mut pos)?.max(0) as usize);
        }
        let name = bytes
            .get(pos..pos + name_len)
            .ok_or_else(|| format_err("GGML tensor name truncated"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        pos += name_len;
        let size: usize = match ttype {
            TYPE_F32 => 4,
            TYPE_F16 => 2,
            t => return Err(format_err(format!("tensor {name}: unsupported type {t}"))),
        };
        let len = dims
            .iter()
            .try_fold(size, |acc, &d| acc.checked_mul(d))
            .filter(|&len| len <= bytes.len() - pos)
            .ok_or_else(|| format_err(format!("tensor {name} truncated")))?;
        tensors.insert(name, (ttype, dims, pos, len));
        pos += len;
    }
    Ok(GgmlWhisper {
        hparams,
        mel_filters,
        tokens,
        tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: usize = 4;
    const F16: u8 = 4;
    const F32: u8 = 0;
    const I16: u8 = 2;
    const I8: u8 = 1;

    type Var = (String, Vec<usize>, u8, Vec<u8>);

    /// A tensor whose element i is `base + i` (exact in f16 for small values).
    fn tensor(name: &str, dims: &[usize], base: f32, dtype: u8) -> Var {
        let n: usize = dims.iter().product();
        let data = (0..n)
            .flat_map(|i| {
                let x = base + i as f32;
                if dtype == F32 {
                    x.to_le_bytes().to_vec()
                } else {
                    f16::from_f32(x).to_le_bytes().to_vec()
                }
            })
            .collect();
        (name.to_string(), dims.to_vec(), dtype, data)
    }

    fn fused_bias(name: &str, parts: usize, zero_part: usize) -> Var {
        let mut v = tensor(name, &[parts * D], 1.0, F16);
        for b in &mut v.3[zero_part * D * 2..(zero_part + 1) * D * 2] {
            *b = 0;
        }
        v
    }

    fn synthetic(dtype: u8) -> Vec<Var> {
        let mut v = vec![
            tensor("encoder/conv1/weight", &[D, 80, 3], 0.0, dtype),
            tensor("encoder/conv1/bias", &[D], 0.0, dtype),
            tensor("encoder/conv2/weight", &[D, D, 3], 0.0, dtype),
            tensor("encoder/conv2/bias", &[D], 0.0, dtype),
            tensor("encoder/position_encodings/encodings", &[6, D], 0.0, dtype),
            (
                "encoder/num_heads".into(),
                vec![],
                I16,
                2i16.to_le_bytes().to_vec(),
            ),
            tensor("encoder/layer_norm/gamma", &[D], 0.0, dtype),
            tensor("encoder/layer_norm/beta", &[D], 0.0, dtype),
            tensor("decoder/embeddings/weight", &[5, D], 0.0, dtype),
            tensor("decoder/position_encodings/encodings", &[3, D], 0.0, dtype),
            (
                "decoder/num_heads".into(),
                vec![],
                I16,
                2i16.to_le_bytes().to_vec(),
            ),
            tensor("decoder/layer_norm/gamma", &[D], 0.0, dtype),
            tensor("decoder/layer_norm/beta", &[D], 0.0, dtype),
            ("decoder/activation".into(), vec![], I8, vec![3]),
        ];
        for side in ["encoder", "decoder"] {
            let l = format!("{side}/layer_0");
            v.extend([
                tensor(
                    &format!("{l}/self_attention/layer_norm/gamma"),
                    &[D],
                    0.0,
                    dtype,
                ),
                tensor(
                    &format!("{l}/self_attention/layer_norm/beta"),
                    &[D],
                    0.0,
                    dtype,
                ),
                tensor(
                    &format!("{l}/self_attention/linear_0/weight"),
                    &[3 * D, D],
                    0.0,
                    dtype,
                ),
                fused_bias(&format!("{l}/self_attention/linear_0/bias"), 3, 1),
                tensor(
                    &format!("{l}/self_attention/linear_1/weight"),
                    &[D, D],
                    0.0,
                    dtype,
                ),
                tensor(
                    &format!("{l}/self_attention/linear_1/bias"),
                    &[D],
                    0.0,
                    dtype,
                ),
                tensor(&format!("{l}/ffn/layer_norm/gamma"), &[D], 0.0, dtype),
                tensor(&format!("{l}/ffn/layer_norm/beta"), &[D], 0.0, dtype),
                tensor(&format!("{l}/ffn/linear_0/weight"), &[4 * D, D], 0.0, dtype),
                tensor(&format!("{l}/ffn/linear_0/bias"), &[4 * D], 0.0, dtype),
                tensor(&format!("{l}/ffn/linear_1/weight"), &[D, 4 * D], 0.0, dtype),
                tensor(&format!("{l}/ffn/linear_1/bias"), &[D], 0.0, dtype),
            ]);
        }
        let l = "decoder/layer_0/attention";
        v.extend([
            tensor(&format!("{l}/layer_norm/gamma"), &[D], 0.0, dtype),
            tensor(&format!("{l}/layer_norm/beta"), &[D], 0.0, dtype),
            tensor(&format!("{l}/linear_0/weight"), &[D, D], 0.0, dtype),
            tensor(&format!("{l}/linear_0/bias"), &[D], 0.0, dtype),
            tensor(&format!("{l}/linear_1/weight"), &[2 * D, D], 0.0, dtype),
            fused_bias(&format!("{l}/linear_1/bias"), 2, 0),
            tensor(&format!("{l}/linear_2/weight"), &[D, D], 0.0, dtype),
            tensor(&format!("{l}/linear_2/bias"), &[D], 0.0, dtype),
        ]);
        v
    }

    fn file(vars: &[Var]) -> Vec<u8> {
        let refs: Vec<(&str, Vec<usize>, u8, Vec<u8>)> = vars
            .iter()
            .map(|(n, d, t, b)| (n.as_str(), d.clone(), *t, b.clone()))
            .collect();
        ct2::write("WhisperSpec", 3, &refs)
    }

    const VOCAB: &str = "a\nb\n\u{120}c\n\n<|endoftext|>\n<|startoftranscript|>\n";

    fn f16_at(bytes: &[u8], (_, _, off, _): &(i32, Vec<usize>, usize, usize), i: usize) -> f32 {
        f16::from_le_bytes([bytes[off + 2 * i], bytes[off + 2 * i + 1]]).to_f32()
    }

    /// Found by fuzzing (`ct2_ggml`): counts in a damaged header made the reader ask for
    /// 69 GB before it looked at the file's size.
    #[test]
    fn header_counts_larger_than_the_file_are_an_error_not_an_allocation() {
        let header = |n_mel: i32, n_fft: i32, n_tokens: i32| {
            let mut b = MAGIC.to_le_bytes().to_vec();
            for _ in 0..11 {
                b.extend(1i32.to_le_bytes());
            }
            b.extend(n_mel.to_le_bytes());
            b.extend(n_fft.to_le_bytes());
            b.extend(n_tokens.to_le_bytes());
            b
        };
        let err = read_whisper(&header(i32::MAX, i32::MAX, 0)).unwrap_err();
        assert!(err.to_string().contains("mel filters"), "{err}");
        let err = read_whisper(&header(0, 0, i32::MAX)).unwrap_err();
        assert!(err.to_string().contains("token count"), "{err}");
        // A tensor whose dimensions overflow.
        let mut b = header(0, 0, 0);
        for x in [4i32, 1, 0, i32::MAX, i32::MAX, i32::MAX, i32::MAX] {
            b.extend(x.to_le_bytes());
        }
        b.push(b'w');
        let err = read_whisper(&b).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn converts_a_synthetic_model_with_whisper_cpp_names_shapes_and_types() {
        for dtype in [F16, F32] {
            let mut out = Vec::new();
            let c = convert_whisper(&file(&synthetic(dtype)), VOCAB, &mut out).unwrap();
            assert_eq!(c.bytes as usize, out.len());
            let g = read_whisper(&out).unwrap();
            assert_eq!(
                g.hparams,
                Hparams {
                    n_vocab: 5,
                    n_audio_ctx: 6,
                    n_audio_state: 4,
                    n_audio_head: 2,
                    n_audio_layer: 1,
                    n_text_ctx: 3,
                    n_text_state: 4,
                    n_text_head: 2,
                    n_text_layer: 1,
                    n_mels: 80,
                    ftype: 1,
                }
            );
            assert_eq!(g.tensors.len(), 7 + 15 + 4 + 24);
            assert_eq!(g.mel_filters.len(), 80 * 201);
            // Ordinary tokens only, GPT-2 byte-level characters decoded ("Ġ" is a space),
            // the empty token kept.
            assert_eq!(
                g.tokens,
                vec![b"a".to_vec(), b"b".to_vec(), b" c".to_vec(), vec![]]
            );
            let t = |n: &str| g.tensors.get(n).unwrap_or_else(|| panic!("{n} missing"));
            // Shapes are innermost first; conv biases [n, 1]; vectors and embeddings f32.
            assert_eq!(t("encoder.conv1.weight").1, vec![3, 80, D]);
            assert_eq!(t("encoder.conv1.weight").0, TYPE_F16);
            assert_eq!(t("encoder.conv1.bias").1, vec![1, D]);
            assert_eq!(t("encoder.conv1.bias").0, TYPE_F32);
            assert_eq!(t("encoder.positional_embedding").0, TYPE_F32);
            assert_eq!(t("decoder.blocks.0.mlp_ln.weight").0, TYPE_F32);
            assert_eq!(t("encoder.ln_post.bias").0, TYPE_F32);
            assert_eq!(t("decoder.ln.weight").0, TYPE_F32);
            // The fused query‖key‖value rows are split in order; the key has no bias.
            let q = t("encoder.blocks.0.attn.query.weight");
            let k = t("encoder.blocks.0.attn.key.weight");
            let v = t("encoder.blocks.0.attn.value.weight");
            assert_eq!(q.1, vec![D, D]);
            assert_eq!(f16_at(&out, q, 0), 0.0);
            assert_eq!(f16_at(&out, k, 0), (D * D) as f32);
            assert_eq!(f16_at(&out, v, 0), (2 * D * D) as f32);
            assert!(!g.tensors.contains_key("encoder.blocks.0.attn.key.bias"));
            let vb = t("encoder.blocks.0.attn.value.bias");
            let vb0 = f32::from_le_bytes(out[vb.2..vb.2 + 4].try_into().unwrap());
            assert_eq!(vb0, 1.0 + 2.0 * D as f32);
            // Cross-attention key‖value.
            let ck = t("decoder.blocks.0.cross_attn.key.weight");
            let cv = t("decoder.blocks.0.cross_attn.value.weight");
            assert_eq!(f16_at(&out, ck, 0), 0.0);
            assert_eq!(f16_at(&out, cv, 0), (D * D) as f32);
            assert!(
                g.tensors
                    .contains_key("decoder.blocks.0.cross_attn.value.bias")
            );
            assert!(
                !g.tensors
                    .contains_key("decoder.blocks.0.cross_attn.key.bias")
            );
        }
    }

    fn convert_err(vars: &[Var], vocab: &str) -> String {
        convert_whisper(&file(vars), vocab, &mut Vec::new())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn refuses_int8_unknown_layouts_and_damage_with_the_reason() {
        let mut vars = synthetic(F16);
        let i = vars
            .iter()
            .position(|v| v.0 == "encoder/layer_0/ffn/linear_0/weight")
            .unwrap();
        vars[i].2 = I8;
        vars[i].3 = vec![0; 4 * D * D];
        assert!(
            convert_err(&vars, VOCAB).contains("int8"),
            "{}",
            convert_err(&vars, VOCAB)
        );

        let mut vars = synthetic(F16);
        vars.push(tensor("decoder/layer_0/extra/weight", &[D, D], 0.0, F16));
        let e = convert_err(&vars, VOCAB);
        assert!(
            e.contains("decoder/layer_0/extra/weight") && e.contains("not supported"),
            "{e}"
        );

        let mut vars = synthetic(F16);
        let i = vars
            .iter()
            .position(|v| v.0 == "encoder/layer_0/self_attention/linear_0/bias")
            .unwrap();
        vars[i] = tensor(&vars[i].0.clone(), &[3 * D], 1.0, F16);
        assert!(convert_err(&vars, VOCAB).contains("key projection"));

        let vars: Vec<Var> = synthetic(F16)
            .into_iter()
            .filter(|v| v.0 != "decoder/layer_0/attention/linear_2/bias")
            .collect();
        assert!(convert_err(&vars, VOCAB).contains("expected 50 tensors"));

        assert!(convert_err(&synthetic(F16), "a\nb\n").contains("<|endoftext|>"));

        let bytes = file(&synthetic(F16));
        let e = convert_whisper(&bytes[..bytes.len() - 100], VOCAB, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");

        let other = ct2::write("TransformerSpec", 1, &[]);
        let e = convert_whisper(&other, VOCAB, &mut Vec::new()).unwrap_err();
        assert!(
            e.to_string().contains("not a CTranslate2 Whisper model"),
            "{e}"
        );
    }
}
