//! A sentence-transformers MPNet checkpoint (all-mpnet-base-v2: `model.safetensors`,
//! `config.json`, `1_Pooling/config.json` in a zip) → an ONNX encoder graph with the interface
//! the classify stage's sentence encoder expects: `input_ids` and `attention_mask` (i64
//! `[batch, sequence]`) → `last_hidden_state` (f32 `[batch, sequence, hidden]`); mean pooling
//! and L2 normalisation happen in the caller, as for MiniLM.
//!
//! The graph follows MPNet's encoder: word embeddings plus absolute position embeddings
//! (positions from 2, after the padding index), LayerNorm, then per layer self-attention with
//! a relative-position bias shared by all layers (T5-style buckets: 32 buckets, half per
//! direction, exact below 8, logarithmic to 128), residual + LayerNorm, an erf-GELU
//! feed-forward block, residual + LayerNorm. Linear weights are stored transposed for MatMul;
//! LayerNorm is written as primitive operators so any runtime (tract, onnxruntime) runs it.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

use serde::Deserialize;

use crate::ModelError;
use crate::onnx::{Attr, DataType, Dim, Graph};

fn bad(msg: impl std::fmt::Display) -> ModelError {
    ModelError::Format(format!("MPNet checkpoint: {msg}"))
}

/// The fields of the checkpoint's `config.json` the graph needs.
#[derive(Debug, Deserialize)]
struct Config {
    model_type: String,
    hidden_act: String,
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    layer_norm_eps: f32,
    relative_attention_num_buckets: usize,
    max_position_embeddings: usize,
    vocab_size: usize,
    pad_token_id: usize,
}

#[derive(Debug, Deserialize)]
struct Pooling {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

/// The relative-position bucket of `memory − context` (MPNet's `relative_position_bucket`,
/// computed in f32 as the reference implementation does, so boundary positions fall in the
/// same bucket).
pub fn bucket(relative: i64, buckets: i64, max_distance: i64) -> i64 {
    let half = buckets / 2;
    let n = -relative;
    let ret = if n < 0 { half } else { 0 };
    let n = n.abs();
    let exact = half / 2;
    if n < exact {
        return ret + n;
    }
    let scale = ((max_distance as f64) / (exact as f64)).ln() as f32;
    let large = exact + ((n as f32 / exact as f32).ln() / scale * (half - exact) as f32) as i64;
    ret + large.min(half - 1)
}

/// The tensors of a safetensors file: name → (dtype, shape, data).
struct SafeTensors<'a> {
    tensors: BTreeMap<String, (String, Vec<usize>, &'a [u8])>,
}

#[derive(Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

impl<'a> SafeTensors<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, ModelError> {
        let len = bytes
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
            .ok_or_else(|| bad("model.safetensors is shorter than its header"))?;
        let header = bytes
            .get(8..8usize.saturating_add(len))
            .ok_or_else(|| bad(format!("model.safetensors declares a {len}-byte header")))?;
        let data = &bytes[8 + len..];
        let raw: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header)
            .map_err(|e| bad(format!("model.safetensors header: {e}")))?;
        let mut tensors = BTreeMap::new();
        for (name, v) in raw {
            if name == "__metadata__" {
                continue;
            }
            let info: TensorInfo = serde_json::from_value(v)
                .map_err(|e| bad(format!("model.safetensors tensor {name}: {e}")))?;
            let [a, b] = info.data_offsets;
            let slice = data.get(a..b).filter(|_| a <= b).ok_or_else(|| {
                bad(format!(
                    "tensor {name} lies at {a}..{b}, past the {}-byte data",
                    data.len()
                ))
            })?;
            tensors.insert(name, (info.dtype, info.shape, slice));
        }
        Ok(SafeTensors { tensors })
    }

    /// An f32 tensor of exactly `shape`.
    fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let (dtype, have, data) = self
            .tensors
            .get(name)
            .ok_or_else(|| bad(format!("no tensor {name}")))?;
        if dtype != "F32" || have.as_slice() != shape {
            return Err(bad(format!(
                "tensor {name} is {dtype} {have:?}; expected F32 {shape:?}"
            )));
        }
        if data.len() != shape.iter().product::<usize>() * 4 {
            return Err(bad(format!(
                "tensor {name} has {} bytes for shape {shape:?}",
                data.len()
            )));
        }
        Ok(data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// `[rows, cols]` row-major → `[cols, rows]`.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}

/// Reads one member of the checkpoint archive.
fn member(zip: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<Vec<u8>, ModelError> {
    let mut f = zip.by_name(name).map_err(|e| bad(format!("{name}: {e}")))?;
    let mut out = Vec::with_capacity(f.size() as usize);
    f.read_to_end(&mut out)
        .map_err(|e| bad(format!("{name}: {e}")))?;
    Ok(out)
}

/// Converts the zipped checkpoint into an ONNX encoder graph written to `out`.
pub fn convert_mpnet(
    archive: &[u8],
    out: &mut impl Write,
    log: &mut dyn FnMut(&str),
) -> Result<(), ModelError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(archive))
        .map_err(|e| bad(format!("not a zip archive: {e}")))?;
    let weights: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .filter(|n| n == "model.safetensors" || n.ends_with("/model.safetensors"))
        .collect();
    let [weights] = weights.as_slice() else {
        return Err(bad(format!(
            "the archive must hold one model.safetensors; it holds {}",
            weights.len()
        )));
    };
    let dir = &weights[..weights.len() - "model.safetensors".len()];
    let config: Config = serde_json::from_slice(&member(&mut zip, &format!("{dir}config.json"))?)
        .map_err(|e| bad(format!("config.json: {e}")))?;
    if config.model_type != "mpnet" || config.hidden_act != "gelu" {
        return Err(bad(format!(
            "config.json describes a {} model with {} activations; this converter reads MPNet \
             with gelu",
            config.model_type, config.hidden_act
        )));
    }
    let pooling: Pooling =
        serde_json::from_slice(&member(&mut zip, &format!("{dir}1_Pooling/config.json"))?)
            .map_err(|e| bad(format!("1_Pooling/config.json: {e}")))?;
    if !pooling.pooling_mode_mean_tokens
        || pooling.pooling_mode_cls_token
        || pooling.pooling_mode_max_tokens
    {
        return Err(bad(
            "1_Pooling/config.json: the sentence encoder must pool by mean over tokens (the \
             classify stage mean-pools)",
        ));
    }
    let (h, heads, inter) = (
        config.hidden_size,
        config.num_attention_heads,
        config.intermediate_size,
    );
    if heads == 0
        || !h.is_multiple_of(heads)
        || config.max_position_embeddings <= config.pad_token_id + 2
    {
        return Err(bad(format!(
            "config.json: hidden size {h}, {heads} heads, {} positions",
            config.max_position_embeddings
        )));
    }
    let d = h / heads;
    log(&format!(
        "reading {weights} ({} layers, hidden {h}, {heads} heads)",
        config.num_hidden_layers
    ));
    let bytes = member(&mut zip, weights)?;
    drop(zip);
    let st = SafeTensors::parse(&bytes)?;

    let mut g = Graph::default();
    let batch_seq = [Dim::Named("batch"), Dim::Named("sequence")];
    let ids = g.input("input_ids", DataType::Int64, &batch_seq);
    let mask = g.input("attention_mask", DataType::Int64, &batch_seq);
    let eps = g.scalar("eps", config.layer_norm_eps);
    let one = g.scalar("one", 1.0);
    let half = g.scalar("half", 0.5);
    let sqrt2 = g.scalar("sqrt2", std::f32::consts::SQRT_2);
    let scale = g.scalar("attention_scale", 1.0 / (d as f32).sqrt());
    let masked = g.scalar("masked", -1e9);
    let axis0 = g.i64s("axis0", &[1], &[0]);
    let first = g.i64s("first_position", &[1], &[config.pad_token_id as i64 + 1]);
    let axis1 = g.i64s("axis1", &[1], &[1]);
    let axis2 = g.i64s("axis2", &[1], &[2]);
    let to_heads = g.i64s("to_heads", &[4], &[0, 0, heads as i64, d as i64]);
    let to_hidden = g.i64s("to_hidden", &[3], &[0, 0, h as i64]);

    let layer_norm = |g: &mut Graph, x: &str, prefix: &str| -> Result<String, ModelError> {
        let w = g.f32s(
            &format!("{prefix}.weight"),
            &[h],
            &st.f32s(&format!("{prefix}.weight"), &[h])?,
        );
        let b = g.f32s(
            &format!("{prefix}.bias"),
            &[h],
            &st.f32s(&format!("{prefix}.bias"), &[h])?,
        );
        let last = [("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))];
        let mean = g.op("ReduceMean", &[x], &last);
        let centred = g.op("Sub", &[x, &mean], &[]);
        let sq = g.op("Mul", &[&centred, &centred], &[]);
        let var = g.op("ReduceMean", &[&sq], &last);
        let var = g.op("Add", &[&var, &eps], &[]);
        let sd = g.op("Sqrt", &[&var], &[]);
        let y = g.op("Div", &[&centred, &sd], &[]);
        let y = g.op("Mul", &[&y, &w], &[]);
        Ok(g.op("Add", &[&y, &b], &[]))
    };
    let linear = |g: &mut Graph,
                  x: &str,
                  prefix: &str,
                  inp: usize,
                  outp: usize|
     -> Result<String, ModelError> {
        let w = st.f32s(&format!("{prefix}.weight"), &[outp, inp])?;
        let w = g.f32s(
            &format!("{prefix}.weight_t"),
            &[inp, outp],
            &transpose(&w, outp, inp),
        );
        let b = g.f32s(
            &format!("{prefix}.bias"),
            &[outp],
            &st.f32s(&format!("{prefix}.bias"), &[outp])?,
        );
        let y = g.op("MatMul", &[x, &w], &[]);
        Ok(g.op("Add", &[&y, &b], &[]))
    };

    // Embeddings: words plus positions pad+1 .. pad+sequence (right-padded inputs: the padded
    // tokens' positions do not matter, they are masked everywhere).
    let shape = g.op("Shape", &[&ids], &[]);
    let seq = g.op("Slice", &[&shape, &axis1, &axis2], &[]);
    let words = g.f32s(
        "embeddings.word_embeddings.weight",
        &[config.vocab_size, h],
        &st.f32s("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
    );
    let x = g.op("Gather", &[&words, &ids], &[]);
    let positions = g.f32s(
        "embeddings.position_embeddings.weight",
        &[config.max_position_embeddings, h],
        &st.f32s(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?,
    );
    let last_position = g.op("Add", &[&seq, &first], &[]);
    let pos = g.op("Slice", &[&positions, &first, &last_position, &axis0], &[]);
    let x = g.op("Add", &[&x, &pos], &[]);
    let mut x = layer_norm(&mut g, &x, "embeddings.LayerNorm")?;

    // The relative-position bias [1, heads, sequence, sequence], shared by every layer, plus
    // the attention mask's bias [batch, 1, 1, sequence].
    let longest = config.max_position_embeddings - config.pad_token_id - 1;
    let nb = config.relative_attention_num_buckets;
    let mut table = Vec::with_capacity(longest * longest);
    for q in 0..longest as i64 {
        for k in 0..longest as i64 {
            table.push(bucket(k - q, nb as i64, 128));
        }
    }
    let table = g.i64s("relative_buckets", &[longest, longest], &table);
    let zeros = g.i64s("zeros2", &[2], &[0, 0]);
    let axes01 = g.i64s("axes01", &[2], &[0, 1]);
    let ends = g.op("Concat", &[&seq, &seq], &[("axis", Attr::Int(0))]);
    let rel = g.op("Slice", &[&table, &zeros, &ends, &axes01], &[]);
    let rel_bias = g.f32s(
        "encoder.relative_attention_bias.weight",
        &[nb, heads],
        &st.f32s("encoder.relative_attention_bias.weight", &[nb, heads])?,
    );
    let bias = g.op("Gather", &[&rel_bias, &rel], &[]);
    let bias = g.op(
        "Transpose",
        &[&bias],
        &[("perm", Attr::Ints(vec![2, 0, 1]))],
    );
    let bias = g.op("Unsqueeze", &[&bias, &axis0], &[]);
    let m = g.op(
        "Cast",
        &[&mask],
        &[("to", Attr::Int(DataType::Float as i64))],
    );
    let m = g.op("Sub", &[&one, &m], &[]);
    let m = g.op("Mul", &[&m, &masked], &[]);
    let axes12 = g.i64s("axes12", &[2], &[1, 2]);
    let m = g.op("Unsqueeze", &[&m, &axes12], &[]);
    let bias = g.op("Add", &[&bias, &m], &[]);

    for l in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        let split = |g: &mut Graph, t: &str, perm: Vec<i64>| {
            let t = g.op("Reshape", &[t, &to_heads], &[]);
            g.op("Transpose", &[&t], &[("perm", Attr::Ints(perm))])
        };
        let q = linear(&mut g, &x, &format!("{p}.attention.attn.q"), h, h)?;
        let q = split(&mut g, &q, vec![0, 2, 1, 3]);
        let k = linear(&mut g, &x, &format!("{p}.attention.attn.k"), h, h)?;
        let k = split(&mut g, &k, vec![0, 2, 3, 1]);
        let v = linear(&mut g, &x, &format!("{p}.attention.attn.v"), h, h)?;
        let v = split(&mut g, &v, vec![0, 2, 1, 3]);
        let s = g.op("MatMul", &[&q, &k], &[]);
        let s = g.op("Mul", &[&s, &scale], &[]);
        let s = g.op("Add", &[&s, &bias], &[]);
        let probs = g.op("Softmax", &[&s], &[("axis", Attr::Int(-1))]);
        let ctx = g.op("MatMul", &[&probs, &v], &[]);
        let ctx = g.op(
            "Transpose",
            &[&ctx],
            &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let ctx = g.op("Reshape", &[&ctx, &to_hidden], &[]);
        let o = linear(&mut g, &ctx, &format!("{p}.attention.attn.o"), h, h)?;
        let o = g.op("Add", &[&o, &x], &[]);
        let a = layer_norm(&mut g, &o, &format!("{p}.attention.LayerNorm"))?;
        let i = linear(&mut g, &a, &format!("{p}.intermediate.dense"), h, inter)?;
        let e = g.op("Div", &[&i, &sqrt2], &[]);
        let e = g.op("Erf", &[&e], &[]);
        let e = g.op("Add", &[&e, &one], &[]);
        let i = g.op("Mul", &[&i, &e], &[]);
        let i = g.op("Mul", &[&i, &half], &[]);
        let o = linear(&mut g, &i, &format!("{p}.output.dense"), inter, h)?;
        let o = g.op("Add", &[&o, &a], &[]);
        x = layer_norm(&mut g, &o, &format!("{p}.output.LayerNorm"))?;
    }
    g.node("Identity", &[&x], "last_hidden_state", &[]);
    g.output(
        "last_hidden_state",
        DataType::Float,
        &[
            Dim::Named("batch"),
            Dim::Named("sequence"),
            Dim::Fixed(h as i64),
        ],
    );
    log(&format!(
        "writing the ONNX graph ({} MB of weights)",
        g.weight_bytes >> 20
    ));
    drop(bytes);
    g.write_model("mpnet", "clipguard-models", 13, out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_the_reference_function() {
        // Values of MPNet's relative_position_bucket(memory − context, 32, 128), computed with
        // the reference implementation's float32 arithmetic.
        let expected = [
            (0, 0),
            (1, 17),
            (-1, 1),
            (7, 23),
            (8, 24),
            (-8, 8),
            (15, 25),
            (16, 26),
            (-16, 10),
            (31, 27),
            (32, 28),
            (-32, 12),
            (63, 29),
            (64, 30),
            (-64, 14),
            (127, 31),
            (128, 31),
            (-128, 15),
            (500, 31),
            (-511, 15),
        ];
        for (rel, want) in expected {
            assert_eq!(bucket(rel, 32, 128), want, "relative position {rel}");
        }
    }

    #[test]
    fn a_truncated_safetensors_header_is_refused() {
        let mut bytes = 1000u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        let err = SafeTensors::parse(&bytes).err().unwrap().to_string();
        assert!(err.contains("1000-byte header"), "{err}");
    }

    #[test]
    fn a_tensor_of_the_wrong_shape_is_named() {
        let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 8]);
        let st = SafeTensors::parse(&bytes).unwrap();
        assert_eq!(st.f32s("w", &[2]).unwrap(), vec![0.0, 0.0]);
        let err = st.f32s("w", &[3]).err().unwrap().to_string();
        assert!(
            err.contains("tensor w is F32 [2]; expected F32 [3]"),
            "{err}"
        );
        assert!(st.f32s("v", &[2]).is_err());
    }
}
