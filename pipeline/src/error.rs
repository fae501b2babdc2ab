//! Errors of the runtime and of stage processing. Each says whose fault it is and whether a
//! retry can help, so hosts can decide between retrying, dead-lettering and stopping.

use std::fmt;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDomain {
    /// The input is bad (corrupt media, malformed message): retrying will not help.
    Input,
    /// Something outside us failed (broker, object store, network): a retry may help.
    External,
    /// A bug or broken invariant in clipguard.
    Internal,
}

impl fmt::Display for ErrorDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorDomain::Input => "input",
            ErrorDomain::External => "external",
            ErrorDomain::Internal => "internal",
        })
    }
}

/// Why a stage could not process one message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct StageError {
    /// Machine-readable kind (`truncated`, `fetch_failed`, `timeout`, ...), used in reasons
    /// (`media_error:<kind>`) and as the `error_type` metric label; a small fixed set per stage.
    pub kind: &'static str,
    /// Precise message for people.
    pub message: String,
    pub domain: ErrorDomain,
    /// True when the same input may succeed on a later attempt.
    pub retryable: bool,
}

impl StageError {
    pub fn input(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            domain: ErrorDomain::Input,
            retryable: false,
        }
    }
    pub fn external(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            domain: ErrorDomain::External,
            retryable: true,
        }
    }
    pub fn internal(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            domain: ErrorDomain::Internal,
            retryable: true,
        }
    }
}

/// Errors of the runtime itself (configuration, broker, store, servers).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The configuration is wrong; every problem found is listed.
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<String>),
    /// The broker refused or failed an operation. Retry may help.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The media store failed. Retry may help.
    #[error("media store: {0}")]
    Store(String),
    /// A server could not start or failed.
    #[error("server: {0}")]
    Server(String),
    /// Produced records were not acknowledged after retries: the worker stops so its supervisor
    /// restarts it from the last committed offset (nothing is lost, some work is redone).
    #[error("delivery failed after {attempts} attempts: {message}")]
    Delivery { attempts: u32, message: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl PipelineError {
    pub fn domain(&self) -> ErrorDomain {
        match self {
            PipelineError::Config(_) => ErrorDomain::Input,
            PipelineError::Kafka(_)
            | PipelineError::Store(_)
            | PipelineError::Delivery { .. }
            | PipelineError::Io(_) => ErrorDomain::External,
            PipelineError::Server(_) => ErrorDomain::External,
        }
    }
}
