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

/// The one shape of every clipguard error: whose fault it is and whether the same call may
/// succeed later. Hosts decide from it (retry, dead-letter, stop; the gRPC status), and each
/// crate's error implements it, so no caller matches on strings.
pub trait Failure: std::error::Error + Send + Sync + 'static {
    fn domain(&self) -> ErrorDomain;
    /// True when the same call may succeed later; by default, when something outside failed.
    fn retryable(&self) -> bool {
        self.domain() == ErrorDomain::External
    }
}

/// The error kinds the runtime itself gives (`StageError::kind`, the `error_type` metric
/// label, dead letters' reasons); stages add their own.
pub mod kind {
    /// A stage panicked (caught; the message is dead-lettered, the worker goes on).
    pub const PANIC: &str = "panic";
    /// An attempt ran past the stage's deadline.
    pub const ATTEMPT_TIMEOUT: &str = "attempt_timeout";
    /// A message no input type decodes from.
    pub const MALFORMED_MESSAGE: &str = "malformed_message";
    /// A stage produced a record over the message limit (its bug).
    pub const OVERSIZED_OUTPUT: &str = "oversized_output";
    /// A stage produced on a topic its graph node does not declare (its bug: the edges the
    /// monitor and the hosts read would be wrong).
    pub const UNDECLARED_OUTPUT: &str = "undeclared_output";
    /// A synchronous call without what every call must carry (a clip id).
    pub const BAD_REQUEST: &str = "bad_request";
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
    /// A bug or broken invariant (a panic, an attempt past its deadline, an inference failure).
    /// Not retryable: the same input takes the same path again, so the host dead-letters it at
    /// once and the clip gets its fail-closed verdict without waiting out the retries.
    pub fn internal(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            domain: ErrorDomain::Internal,
            retryable: false,
        }
    }
}

impl Failure for StageError {
    fn domain(&self) -> ErrorDomain {
        self.domain
    }
    fn retryable(&self) -> bool {
        self.retryable
    }
}

impl From<StageError> for tonic::Status {
    /// The gRPC status of a failed call, from whose fault it is: bad input is
    /// `INVALID_ARGUMENT` (do not retry), a failing dependency `UNAVAILABLE` (retry with
    /// backoff), a call past the stage's deadline `DEADLINE_EXCEEDED`, a bug `INTERNAL`. The
    /// message keeps the machine-readable kind first.
    fn from(e: StageError) -> Self {
        let message = format!("{}: {}", e.kind, e.message);
        if e.kind == kind::ATTEMPT_TIMEOUT {
            return tonic::Status::deadline_exceeded(message);
        }
        match e.domain {
            ErrorDomain::Input => tonic::Status::invalid_argument(message),
            ErrorDomain::External => tonic::Status::unavailable(message),
            ErrorDomain::Internal => tonic::Status::internal(message),
        }
    }
}

/// A task that ended without an answer (panicked or cancelled) as an internal [`StageError`].
pub fn join_error(e: tokio::task::JoinError) -> StageError {
    StageError::internal(kind::PANIC, e.to_string())
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
    /// A stage produced a record over the message limit: never sent (a bug in the stage, not
    /// the broker's fault; the host dead-letters the input instead of stalling on it).
    #[error("record for {topic} is {bytes} bytes, over the {limit} byte limit")]
    OversizedRecord {
        topic: String,
        bytes: usize,
        limit: usize,
    },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A file named by the user could not be read.
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    /// A topic is missing or has no partitions.
    #[error("{0}")]
    Topic(String),
    /// A bug or broken invariant in clipguard.
    #[error("internal: {0}")]
    Internal(String),
}

impl Failure for PipelineError {
    fn domain(&self) -> ErrorDomain {
        match self {
            PipelineError::Config(_) => ErrorDomain::Input,
            PipelineError::Kafka(_)
            | PipelineError::Store(_)
            | PipelineError::Delivery { .. }
            | PipelineError::Io(_) => ErrorDomain::External,
            PipelineError::Server(_) | PipelineError::Topic(_) => ErrorDomain::External,
            PipelineError::File { .. } => ErrorDomain::Input,
            PipelineError::Internal(_) | PipelineError::OversizedRecord { .. } => {
                ErrorDomain::Internal
            }
        }
    }
}

impl PipelineError {
    /// A file named by the user could not be read or listed.
    pub fn file(path: &std::path::Path, source: std::io::Error) -> Self {
        PipelineError::File {
            path: path.display().to_string(),
            source,
        }
    }
}
