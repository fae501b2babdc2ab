//! Topic names (spelled once, in `clipguard_schemas::names::topic`) and message limits shared by
//! every stage.

pub use clipguard_schemas::names::topic::*;

/// Every topic the pipeline uses, with whether it is compacted.
pub const ALL: &[(&str, bool)] = &[
    (SUBMITTED, false),
    (MEDIA, false),
    (TRANSCRIPTS, false),
    (SIGNALS, false),
    (VERDICTS, true),
    (VERDICTS_SHADOW, true),
    (RENDITIONS, true),
    (ENFORCEMENT, false),
    (DLQ, false),
];

/// No message clipguard produces is larger than this (Kafka's default `message.max.bytes` is
/// about 1 MiB, librdkafka's 1,000,000 bytes; this leaves room for headers and batch overhead);
/// larger media travels by claim check.
pub const MAX_MESSAGE_BYTES: usize = 900 * 1024;
