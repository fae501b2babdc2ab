//! The crate's one error: whose fault it is, and whether a retry can help.

use clipguard_pipeline::{ErrorDomain, Failure};

/// Why a bank or an index could not be read, written or changed.
#[derive(Debug, thiserror::Error)]
pub enum HashmatchError {
    /// A bank name, meta file, import request or input file is wrong.
    #[error("{0}")]
    Invalid(String),
    #[error("bank `{0}` does not exist")]
    NotFound(String),
    /// The banks folder could not be read or written.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A bank version on disk is unreadable; the previous version stays in service.
    #[error("bank `{bank}` is damaged and was not loaded: {message}")]
    Damaged { bank: String, message: String },
    /// An index file could not be read or written.
    #[error("{path}: {source}")]
    IndexIo {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a clipguard hash index ({reason})")]
    IndexFormat { path: String, reason: String },
    #[error("too many hashes for one index: {0} (at most {max})", max = u32::MAX)]
    IndexTooLarge(usize),
    #[error("cannot allocate the index: {0}")]
    IndexMemory(std::io::Error),
}

impl Failure for HashmatchError {
    /// Whose fault it is: the user's input and files, or the machine (disk, memory); a retry
    /// may help with the machine's.
    fn domain(&self) -> ErrorDomain {
        match self {
            HashmatchError::Invalid(_)
            | HashmatchError::NotFound(_)
            | HashmatchError::Damaged { .. }
            | HashmatchError::IndexFormat { .. }
            | HashmatchError::IndexTooLarge(_) => ErrorDomain::Input,
            HashmatchError::Io { .. }
            | HashmatchError::IndexIo { .. }
            | HashmatchError::IndexMemory(_) => ErrorDomain::External,
        }
    }
}
