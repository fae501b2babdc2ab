//! The text classifier's error: whose fault it is says the model cache's error, or the variant.

/// Why the text classifier could not load or score.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// A model, tokenizer or policy that cannot load: the deployment's to fix.
    #[error("{0}")]
    Load(String),
    /// A failed inference: ours.
    #[error("inference: {0}")]
    Run(String),
    /// The model cache's error (a missing or corrupt file; an unreachable store).
    #[error(transparent)]
    Models(#[from] clipguard_models::ModelError),
}

/// A model that could not be loaded, named: `model "minilm-l6-int8": ...`.
pub(crate) fn load_err(model: &str, msg: impl std::fmt::Display) -> TextError {
    TextError::Load(format!("model {model:?}: {msg}"))
}
