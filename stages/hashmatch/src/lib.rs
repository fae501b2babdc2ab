//! clipguard's hash matching: perceptual hashes of known abuse material.
//!
//! This crate owns the PDQ hashing library ([`pdq`]), conformant with Meta's reference
//! implementation (ThreatExchange). The media stage calls [`pdq::hash_luma`] on every sampled
//! frame at full resolution, so only 32 bytes plus a quality score per frame cross Kafka.
//!
//! ```
//! use clipguard_hashmatch::pdq;
//! // A 64×64 gradient: bright on the right.
//! let luma: Vec<f32> = (0..64 * 64).map(|i| (i % 64) as f32 * 4.0).collect();
//! let h = pdq::hash_luma(&luma, 64, 64);
//! assert_eq!(h.hash.distance(&h.hash), 0);
//! println!("{} quality {}", h.hash, h.quality);
//! ```

pub mod bank;
pub mod grpc;
pub mod import;
pub mod index;
pub mod pdq;
pub mod stage;
pub mod vpdq;
