//! clipguard's messages (`clipguard.v1`), generated from `proto/` at build time.
//!
//! Protobuf is the single source of truth: every Kafka payload and gRPC message is defined there
//! and nothing here is edited by hand. Every message carries `clip_id` and is keyed by it on Kafka.

#![allow(missing_docs, missing_debug_implementations, clippy::all)]

pub mod v1 {
    tonic::include_proto!("clipguard.v1");

    /// Encoded `FileDescriptorSet` of all clipguard protos, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("clipguard_descriptor");
}

pub mod names;
pub mod rpc;

pub use v1::*;

impl Signal {
    /// The media stage's body: the decoded clip's duration, size and tracks.
    pub fn media(&self) -> Option<&MediaInfo> {
        match &self.body {
            Some(signal::Body::Media(m)) => Some(m),
            _ => None,
        }
    }

    /// The transcribe stage's body: what was said.
    pub fn transcript(&self) -> Option<&Transcript> {
        match &self.body {
            Some(signal::Body::Transcript(t)) => Some(t),
            _ => None,
        }
    }
}

impl Decision {
    /// The lower-case word used in JSON and tables: `allow`, `review`, `block`.
    pub fn word(self) -> &'static str {
        match self {
            Decision::Unspecified => "unspecified",
            Decision::Allow => "allow",
            Decision::Review => "review",
            Decision::Block => "block",
        }
    }

    /// Parses the lower-case word.
    pub fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "allow" => Decision::Allow,
            "review" => Decision::Review,
            "block" => Decision::Block,
            _ => return None,
        })
    }
}
