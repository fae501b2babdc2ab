//! Sentence embeddings: a BERT-family ONNX encoder (all-MiniLM-L6-v2 by default) run by tract,
//! its WordPiece tokenizer from `tokenizer.json`, mean pooling over the attention mask and L2
//! normalisation — what sentence-transformers computes for the same model.
//!
//! Weight-only int8 graphs (`Cast(int8 initializer) → Mul(scale)` before every MatMul and
//! embedding table) are dequantised once at load: tract would otherwise convert every weight
//! matrix on every call.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::prelude::*;

use crate::TextError;
use crate::error::load_err;

/// Longest input in tokens (the model's training length); longer texts are split by the caller.
pub const MAX_TOKENS: usize = 128;

/// Inputs are padded to a multiple of this many tokens.
pub const BUCKET: usize = 16;

pub struct TextEmbedder {
    pub name: String,
    tokenizer: tokenizers::Tokenizer,
    /// The decluttered graph with a symbolic sequence length.
    typed: TypedModel,
    sequence: Symbol,
    /// Optimised plans by padded sequence length. tract 0.23 mis-evaluates this graph's
    /// attention mask (Range over the symbolic length) in a plan optimised for any length, so
    /// inputs are padded to a multiple of [`BUCKET`] tokens and each length gets its own plan
    /// (at most MAX_TOKENS / BUCKET of them).
    plans: Mutex<HashMap<usize, Arc<TypedRunnableModel>>>,
    width: usize,
    /// Whether the graph takes `token_type_ids`.
    token_types: bool,
}

impl std::fmt::Debug for TextEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEmbedder")
            .field("name", &self.name)
            .field("width", &self.width)
            .finish_non_exhaustive()
    }
}

/// Reads a tensor's values as f32 (from `raw_data` or the typed field).
fn f32_values(t: &pb::TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::Float as i32 {
        return None;
    }
    if !t.raw_data.is_empty() {
        Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    } else {
        Some(t.float_data.clone())
    }
}

fn i8_values(t: &pb::TensorProto) -> Option<Vec<i8>> {
    if t.data_type != DataType::Int8 as i32 {
        return None;
    }
    if !t.raw_data.is_empty() {
        Some(t.raw_data.iter().map(|&b| b as i8).collect())
    } else {
        Some(t.int32_data.iter().map(|&v| v as i8).collect())
    }
}

/// Replaces every `Mul(Cast(q: int8 initializer), scale: f32 initializer)` by one f32
/// initializer holding `q × scale` (scale broadcast per row or per column, or a scalar).
/// Returns how many weights were folded.
pub fn fold_int8_weights(graph: &mut pb::GraphProto) -> usize {
    let index: HashMap<String, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    // Cast outputs that turn an int8 initializer into f32.
    let casts: HashMap<String, (usize, usize)> = graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type == "Cast" && n.input.len() == 1 && n.output.len() == 1)
        .filter_map(|(ni, n)| {
            let &ti = index.get(&n.input[0])?;
            let to = n.attribute.iter().find(|a| a.name == "to")?.i;
            (graph.initializer[ti].data_type == DataType::Int8 as i32
                && to == DataType::Float as i64)
                .then(|| (n.output[0].clone(), (ni, ti)))
        })
        .collect();
    let mut remove = Vec::new();
    let mut added = Vec::new();
    for (mi, node) in graph.node.iter().enumerate() {
        if node.op_type != "Mul" || node.input.len() != 2 || node.output.len() != 1 {
            continue;
        }
        let (cast_out, scale_name) = match (casts.get(&node.input[0]), casts.get(&node.input[1])) {
            (Some(_), None) => (&node.input[0], &node.input[1]),
            (None, Some(_)) => (&node.input[1], &node.input[0]),
            _ => continue,
        };
        let Some(&si) = index.get(scale_name) else {
            continue;
        };
        let (ci, qi) = casts[cast_out];
        let q = &graph.initializer[qi];
        let s = &graph.initializer[si];
        let (Some(qv), Some(sv)) = (i8_values(q), f32_values(s)) else {
            continue;
        };
        let dims: Vec<usize> = q.dims.iter().map(|&d| d as usize).collect();
        if dims.len() != 2 || qv.len() != dims[0] * dims[1] {
            continue;
        }
        let (rows, cols) = (dims[0], dims[1]);
        let sdims: Vec<usize> = s.dims.iter().map(|&d| d as usize).collect();
        let scale_at: Box<dyn Fn(usize, usize) -> f32> = match sdims.as_slice() {
            [] | [1] | [1, 1] if sv.len() == 1 => Box::new(|_, _| sv[0]),
            [r, 1] if *r == rows => Box::new(|r, _| sv[r]),
            [1, c] | [c] if *c == cols => Box::new(|_, c| sv[c]),
            _ => continue,
        };
        let mut raw = Vec::with_capacity(rows * cols * 4);
        for r in 0..rows {
            for c in 0..cols {
                let v = qv[r * cols + c] as f32 * scale_at(r, c);
                raw.extend_from_slice(&v.to_le_bytes());
            }
        }
        added.push(pb::TensorProto {
            name: node.output[0].clone(),
            dims: q.dims.clone(),
            data_type: DataType::Float as i32,
            raw_data: raw,
            ..Default::default()
        });
        remove.push(mi);
        remove.push(ci);
    }
    let folded = added.len();
    remove.sort_unstable();
    remove.dedup();
    for i in remove.into_iter().rev() {
        graph.node.remove(i);
    }
    graph.initializer.extend(added);
    // Drop initializers nothing reads any more (the int8 weights and their scales).
    let used: std::collections::HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(graph.output.iter().map(|o| o.name.as_str()))
        .collect();
    let keep: Vec<bool> = graph
        .initializer
        .iter()
        .map(|t| used.contains(t.name.as_str()))
        .collect();
    let mut k = keep.into_iter();
    graph.initializer.retain(|_| k.next().unwrap_or(true));
    folded
}

impl TextEmbedder {
    /// Loads the encoder and its tokenizer. The graph must take `input_ids` and
    /// `attention_mask` (and optionally `token_type_ids`) as i64 `[batch, sequence]` and give
    /// `[batch, sequence, width]` first.
    pub fn load(name: &str, model: &Path, tokenizer: &Path) -> Result<Self, TextError> {
        Self::load_with(name, model, tokenizer, true)
    }

    /// [`TextEmbedder::load`], optionally without folding int8 weights (for the benchmark).
    pub fn load_with(
        name: &str,
        model: &Path,
        tokenizer: &Path,
        fold_int8: bool,
    ) -> Result<Self, TextError> {
        let mut tok = tokenizers::Tokenizer::from_file(tokenizer).map_err(|e| {
            load_err(
                name,
                format!("{}: not a tokenizer.json: {e}", tokenizer.display()),
            )
        })?;
        // The packaged tokenizer pads every input to 128; batches pad to their longest here.
        tok.with_padding(None);
        tok.with_truncation(Some(tokenizers::TruncationParams {
            max_length: MAX_TOKENS,
            ..Default::default()
        }))
        .map_err(|e| load_err(name, e))?;

        // Exported encoders often carry wrong intermediate shapes in value_info (this one
        // declares the attention bias [batch, 1, sequence, sequence]; it is [batch, 1, 1,
        // sequence]): tract infers them instead.
        let onnx = tract_onnx::onnx().with_ignore_value_info(true);
        let mut proto = onnx.proto_model_for_path(model).map_err(|e| {
            load_err(
                name,
                format!("{}: not a loadable ONNX model: {e:#}", model.display()),
            )
        })?;
        if let Some(graph) = proto.graph.as_mut().filter(|_| fold_int8) {
            let folded = fold_int8_weights(graph);
            tracing::debug!(model = name, folded, "int8 weights dequantised at load");
        }
        let mut m = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| load_err(name, format!("{e:#}")))?;
        let inputs = m.input_outlets().map_err(|e| load_err(name, e))?.to_vec();
        let names: Vec<String> = inputs.iter().map(|o| m.node(o.node).name.clone()).collect();
        for required in ["input_ids", "attention_mask"] {
            if !names.iter().any(|n| n == required) {
                return Err(load_err(
                    name,
                    format!("no input tensor {required:?} (the model's inputs: {names:?})"),
                ));
            }
        }
        if let Some(other) = names.iter().find(|n| {
            !matches!(
                n.as_str(),
                "input_ids" | "attention_mask" | "token_type_ids"
            )
        }) {
            return Err(load_err(
                name,
                format!("unexpected input tensor {other:?} (the model's inputs: {names:?})"),
            ));
        }
        // Inputs in a fixed order: input_ids, attention_mask, token_type_ids.
        let order = ["input_ids", "attention_mask", "token_type_ids"];
        let mut outlets = Vec::new();
        for want in order {
            if let Some(i) = names.iter().position(|n| n == want) {
                outlets.push(inputs[i]);
            }
        }
        m.set_input_outlets(&outlets)
            .map_err(|e| load_err(name, e))?;
        let (b, s) = (m.sym("batch"), m.sym("sequence"));
        for i in 0..outlets.len() {
            m.set_input_fact(
                i,
                i64::fact(tract_onnx::tract_core::dims!(b.clone(), s.clone())).into(),
            )
            .map_err(|e| load_err(name, e))?;
        }
        let out = m.output_outlets().map_err(|e| load_err(name, e))?[0];
        m.select_output_outlets(&[out])
            .map_err(|e| load_err(name, e))?;
        let typed = m
            .into_typed()
            .and_then(|t| t.into_decluttered())
            .map_err(|e| load_err(name, format!("{e:#}")))?;
        let fact = typed.output_fact(0).map_err(|e| load_err(name, e))?;
        let width = fact
            .shape
            .last()
            .and_then(|d| d.to_i64().ok())
            .filter(|_| fact.shape.len() == 3)
            .ok_or_else(|| {
                load_err(
                    name,
                    format!(
                        "first output is {:?}; a sentence encoder gives [batch, sequence, width]",
                        fact.shape
                    ),
                )
            })? as usize;
        let embedder = TextEmbedder {
            name: name.to_string(),
            tokenizer: tok,
            typed,
            sequence: s,
            plans: Mutex::new(HashMap::new()),
            width,
            token_types: outlets.len() == 3,
        };
        // Build the commonest plan now: a model that cannot be optimised fails at load.
        embedder.plan(BUCKET)?;
        Ok(embedder)
    }

    /// The optimised plan for padded length `len` (a multiple of [`BUCKET`]), built once.
    fn plan(&self, len: usize) -> Result<Arc<TypedRunnableModel>, TextError> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = plans.get(&len) {
            return Ok(p.clone());
        }
        let subs = [(self.sequence.clone(), TDim::Val(len as i64))]
            .into_iter()
            .collect();
        let plan = self
            .typed
            .set_symbols(&subs)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| load_err(&self.name, format!("sequence length {len}: {e:#}")))?;
        plans.insert(len, plan.clone());
        Ok(plan)
    }
    pub fn width(&self) -> usize {
        self.width
    }

    /// Unit-length sentence embeddings, one per text, in order. Texts beyond
    /// [`MAX_TOKENS`] are truncated (callers split long texts first).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, TextError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let run_err = |e: String| TextError::Run(format!("{}: {e}", self.name));
        let mut encodings = Vec::with_capacity(texts.len());
        for t in texts {
            let enc = self
                .tokenizer
                .encode(*t, true)
                .map_err(|e| run_err(format!("tokenizer: {e}")))?;
            encodings.push(enc.get_ids().to_vec());
        }
        let n = texts.len();
        let longest = encodings.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let len = longest.div_ceil(BUCKET) * BUCKET;
        let mut ids = vec![0i64; n * len];
        let mut mask = vec![0i64; n * len];
        for (row, enc) in encodings.iter().enumerate() {
            for (j, &id) in enc.iter().enumerate() {
                ids[row * len + j] = id as i64;
                mask[row * len + j] = 1;
            }
        }
        let tensor =
            |v: Vec<i64>| Tensor::from_shape(&[n, len], &v).map_err(|e| run_err(e.to_string()));
        let mut inputs: TVec<TValue> = tvec!(tensor(ids)?.into(), tensor(mask.clone())?.into());
        if self.token_types {
            inputs.push(tensor(vec![0i64; n * len])?.into());
        }
        let out = self
            .plan(len)?
            .run(inputs)
            .map_err(|e| run_err(format!("{e:#}")))?;
        let hidden = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| run_err(e.to_string()))?;
        let flat = hidden
            .as_slice()
            .ok_or_else(|| run_err("non-contiguous output".into()))?;
        if flat.len() != n * len * self.width {
            return Err(run_err(format!(
                "{} output values for {n} × {len} tokens × {}",
                flat.len(),
                self.width
            )));
        }
        let mut result = Vec::with_capacity(n);
        for row in 0..n {
            let mut v = vec![0f32; self.width];
            let mut count = 0f32;
            for j in 0..len {
                if mask[row * len + j] == 0 {
                    continue;
                }
                count += 1.0;
                let h = &flat[(row * len + j) * self.width..(row * len + j + 1) * self.width];
                for (a, b) in v.iter_mut().zip(h) {
                    *a += b;
                }
            }
            let count = count.max(1.0);
            v.iter_mut().for_each(|a| *a /= count);
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|a| *a /= norm);
            result.push(v);
        }
        Ok(result)
    }
}
