//! clipguard's stages wired together: what the `clipguard` binary, the evaluation and the
//! end-to-end tests run.
//!
//! - [`Config`]: every section of the one configuration file, loaded with `CLIPGUARD_*`
//!   overrides, unknown keys and invalid values reported all at once.
//! - [`registry`]: the one plain function from a stage name to a built stage, which can then run
//!   on the Kafka host (`clipguard stage NAME`), serve its gRPC services, or join an in-process
//!   [`clipguard_pipeline::inproc::Topology`].
//! - [`run::moderate`]: every stage on one broker (embedded unless one is given), on the
//!   production Kafka path: `clipguard run` and `clipguard eval`.
//! - [`local`]: every stage in process, records routed by topic without a broker: `clipguard
//!   scan` and `clipguard transcribe`.

pub mod cli_args;
pub mod config;
pub mod input;
pub mod local;
pub mod moderation;
pub mod registry;
pub mod run;

pub use config::Config;

/// Why stages could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A stage could not start (a model missing, a policy invalid, GStreamer plugins absent,
    /// the model cache's disk): the stage's own error, which says whose fault it is.
    #[error("stage {stage}: {error}")]
    Build {
        stage: &'static str,
        error: Box<dyn clipguard_pipeline::Failure>,
    },
    /// No such stage.
    #[error("unknown stage `{name}` (available: {available})")]
    UnknownStage { name: String, available: String },
    /// The stages do not form a pipeline (a stage declared twice, or fed by nothing).
    #[error("{0}")]
    Graph(#[from] clipguard_pipeline::graph::GraphError),
    /// The runtime failed (broker, store, configuration).
    #[error(transparent)]
    Pipeline(#[from] clipguard_pipeline::PipelineError),
    /// A clip could not get through the stages (its input was refused before any stage ran).
    #[error("{0}")]
    Clip(String),
}

impl clipguard_pipeline::Failure for TopologyError {
    /// Whose fault it is: a stage's build error says; an unknown stage or a refused clip is
    /// the caller's.
    fn domain(&self) -> clipguard_pipeline::ErrorDomain {
        use clipguard_pipeline::ErrorDomain;
        match self {
            TopologyError::Build { error, .. } => error.domain(),
            TopologyError::UnknownStage { .. } | TopologyError::Graph(_) => ErrorDomain::Input,
            TopologyError::Pipeline(e) => e.domain(),
            TopologyError::Clip(_) => ErrorDomain::Input,
        }
    }

    /// The wrapped error's own answer, where there is one.
    fn retryable(&self) -> bool {
        match self {
            TopologyError::Build { error, .. } => error.retryable(),
            TopologyError::Pipeline(e) => e.retryable(),
            TopologyError::UnknownStage { .. }
            | TopologyError::Graph(_)
            | TopologyError::Clip(_) => false,
        }
    }
}
