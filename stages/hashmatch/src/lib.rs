//! clipguard's hash matching: known abuse material, by perceptual and exact hashes.
//!
//! The hashes themselves (PDQ, vPDQ) live in `clipguard-pdq`, which the media stage calls per
//! frame; this crate owns what is matched against: versioned hash banks with atomic swaps
//! ([`bank`]), their import formats (HMA / ThreatExchange lists, vPDQ files: [`import`]), the
//! exact multi-index Hamming index ([`index`]), and the stage ([`stage`]: matching, hot reload)
//! with its gRPC service.

pub mod bank;
mod error;
pub mod grpc;
pub mod import;
pub mod index;
pub mod stage;

pub use error::HashmatchError;
