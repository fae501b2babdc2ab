//! The classifier stage's models: ONNX classifiers declared in the model manifest, run with
//! tract. A manifest entry says how to turn a frame into the model's input tensor and how the
//! output maps to policy categories; no code per model.

pub mod combine;
pub mod detect;
pub mod faces;
pub mod grpc;
pub mod likeness;
pub mod likeness_cli;
pub mod model;
pub mod ort_backend;
pub mod resize;
pub mod stage;

pub use model::{ImageClassifier, Rgb};

#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("{0}")]
    Load(String),
    #[error("inference: {0}")]
    Run(String),
    #[error(transparent)]
    Models(#[from] clipguard_models::ModelError),
}

impl From<clipguard_text::TextError> for ClassifyError {
    fn from(e: clipguard_text::TextError) -> Self {
        match e {
            clipguard_text::TextError::Load(m) => ClassifyError::Load(m),
            clipguard_text::TextError::Run(m) => ClassifyError::Run(m),
            clipguard_text::TextError::Models(m) => ClassifyError::Models(m),
        }
    }
}

impl clipguard_pipeline::Failure for ClassifyError {
    /// A model or policy that cannot load is the deployment's to fix (input); a failed
    /// inference is ours; the model cache's errors say whose they are.
    fn domain(&self) -> clipguard_pipeline::ErrorDomain {
        match self {
            ClassifyError::Load(_) => clipguard_pipeline::ErrorDomain::Input,
            ClassifyError::Run(_) => clipguard_pipeline::ErrorDomain::Internal,
            ClassifyError::Models(e) if e.is_external() => {
                clipguard_pipeline::ErrorDomain::External
            }
            ClassifyError::Models(_) => clipguard_pipeline::ErrorDomain::Input,
        }
    }
}

/// A model that could not be loaded, named: `model "open-nsfw": ...`.
pub(crate) fn load_err(model: &str, msg: impl std::fmt::Display) -> ClassifyError {
    ClassifyError::Load(format!("model {model:?}: {msg}"))
}
