//! Everything that can go wrong with a clip's media, each with a precise kind.

use clipguard_pipeline::store::FetchError;
use clipguard_pipeline::{ErrorDomain, Failure, StageError};

/// Why a clip's media could not be used. [`MediaError::kind`] is the machine-readable word that
/// appears in `media_error:<kind>` reasons and in the `error_type` metric label.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MediaError {
    #[error("the media is empty (0 bytes)")]
    Empty,
    #[error("the media is {size} bytes, over the {limit} byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("not a recognised media format: {0}")]
    UnrecognizedFormat(String),
    #[error("the media has no video stream{0}")]
    NoVideoStream(String),
    #[error("no decoder for {0}")]
    UnsupportedCodec(String),
    #[error("the media is truncated: {0}")]
    Truncated(String),
    #[error("the media is corrupt: {0}")]
    Corrupt(String),
    #[error("the clip lasts {duration_s:.1} s, over the {limit_s:.1} s limit")]
    TooLong { duration_s: f64, limit_s: f64 },
    #[error("the video is {width}x{height}, over the {max_width}x{max_height} limit")]
    ResolutionTooLarge {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
    },
    #[error("the clip has more than {limit} frames")]
    TooManyFrames { limit: u64 },
    #[error("decoding took longer than the {limit_s:.1} s deadline")]
    Timeout { limit_s: f64 },
    /// The clip's media could not be read from where the message says it is: the store's
    /// typed error, which says whose fault it is.
    #[error("media fetch failed: {0}")]
    Fetch(FetchError),
    /// Writing the extract's blobs to the store failed: a retry may help.
    #[error("media store failed: {0}")]
    Store(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl MediaError {
    pub fn kind(&self) -> &'static str {
        match self {
            MediaError::Empty => "empty",
            MediaError::TooLarge { .. } => "too_large",
            MediaError::UnrecognizedFormat(_) => "unrecognized_format",
            MediaError::NoVideoStream(_) => "no_video_stream",
            MediaError::UnsupportedCodec(_) => "unsupported_codec",
            MediaError::Truncated(_) => "truncated",
            MediaError::Corrupt(_) => "corrupt",
            MediaError::TooLong { .. } => "too_long",
            MediaError::ResolutionTooLarge { .. } => "resolution_too_large",
            MediaError::TooManyFrames { .. } => "too_many_frames",
            MediaError::Timeout { .. } => "timeout",
            MediaError::Fetch(e) => e.kind(),
            MediaError::Store(_) => "store_failed",
            MediaError::Internal(_) => "internal",
        }
    }

    /// True when the clip itself is at fault (the verdict fails closed, no retry helps).
    pub fn is_input(&self) -> bool {
        match self {
            MediaError::Fetch(e) => !e.retryable(),
            MediaError::Store(_) | MediaError::Internal(_) => false,
            _ => true,
        }
    }

    pub fn into_stage_error(self) -> StageError {
        match self {
            MediaError::Fetch(e) => e.into(),
            e @ MediaError::Store(_) => StageError::external(e.kind(), e.to_string()),
            e @ MediaError::Internal(_) => StageError::internal("internal", e.to_string()),
            e => StageError::input(e.kind(), e.to_string()),
        }
    }
}

impl Failure for MediaError {
    /// The clip's fault for every kind but a failed fetch (the store's, as it says) and an
    /// internal error.
    fn domain(&self) -> ErrorDomain {
        match self {
            MediaError::Fetch(e) => e.domain(),
            MediaError::Store(_) => ErrorDomain::External,
            MediaError::Internal(_) => ErrorDomain::Internal,
            _ => ErrorDomain::Input,
        }
    }
    fn retryable(&self) -> bool {
        match self {
            MediaError::Fetch(e) => e.retryable(),
            MediaError::Store(_) => true,
            _ => false,
        }
    }
}
