//! The optional ONNX Runtime backend: a model run by `libonnxruntime.so` (loaded at run time
//! from the manifest's `onnxruntime` entry, the library in its PyPI wheel) instead of tract.
//! Chosen per model by `classify.backends`; tract stays the default.

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::value::TensorRef;

use crate::ClassifyError;

/// The process's ONNX Runtime environment (one per process: the first library loaded wins).
static RUNTIME: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime from `library` (once per process).
pub fn init(library: &Path) -> Result<(), ClassifyError> {
    RUNTIME
        .get_or_init(|| {
            ort::init_from(library)
                .map_err(|e| format!("{}: {e}", library.display()))
                .and_then(|b| b.with_name("clipguard").build().map_err(|e| e.to_string()))
        })
        .as_ref()
        .map(|_| ())
        .map_err(|e| ClassifyError::Load(format!("onnxruntime: {e}")))
}

/// One model in ONNX Runtime, one intra-op thread (like tract), one call at a time.
pub struct OrtModel {
    name: String,
    session: Mutex<Session>,
    input: String,
    output: String,
}

impl std::fmt::Debug for OrtModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtModel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl OrtModel {
    /// Opens `path` in ONNX Runtime (after [`init`]) and checks that `input` and `output` are
    /// tensors of the model, naming the model's real ones if not.
    pub fn load(name: &str, path: &Path, input: &str, output: &str) -> Result<Self, ClassifyError> {
        let err = |e: String| ClassifyError::Load(format!("model {name:?} (onnxruntime): {e}"));
        let Some(Ok(env)) = RUNTIME.get() else {
            return Err(err("ONNX Runtime is not loaded".into()));
        };
        let session = Session::builder(env)
            .map_err(|e| err(e.to_string()))?
            .with_intra_threads(1)
            .map_err(|e| err(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| err(e.to_string()))?
            .commit_from_file(path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        if !inputs.contains(&input) {
            return Err(err(format!(
                "no input tensor {input:?} (the model's inputs: {inputs:?})"
            )));
        }
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if !outputs.contains(&output) {
            return Err(err(format!(
                "no output tensor {output:?} (the model's outputs: {outputs:?})"
            )));
        }
        Ok(OrtModel {
            name: name.to_string(),
            session: Mutex::new(session),
            input: input.to_string(),
            output: output.to_string(),
        })
    }

    /// Runs one input tensor; returns the output's values.
    pub fn run(&self, shape: &[usize], data: &[f32]) -> Result<Vec<f32>, ClassifyError> {
        let err = |e: String| ClassifyError::Run(format!("{} (onnxruntime): {e}", self.name));
        let tensor =
            TensorRef::from_array_view((shape.to_vec(), data)).map_err(|e| err(e.to_string()))?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| err(e.to_string()))?;
        let value = outputs
            .get(self.output.as_str())
            .ok_or_else(|| err(format!("no output {:?}", self.output)))?;
        let (_, values) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| err(e.to_string()))?;
        Ok(values.to_vec())
    }
}
