//! Topic names and message limits shared by every stage.

/// Clips published by generators.
pub const SUBMITTED: &str = "clips.submitted";
/// The media stage's extracts (frames, thumbnails, audio refs).
pub const MEDIA: &str = "clips.media";
/// Transcripts from the transcribe stage.
pub const TRANSCRIPTS: &str = "clips.transcripts";
/// One signal per clip per stage, joined by the monitor.
pub const SIGNALS: &str = "clips.signals";
/// Final verdicts, compacted, keyed by clip_id.
pub const VERDICTS: &str = "clips.verdicts";
/// Shadow-policy verdicts.
pub const VERDICTS_SHADOW: &str = "clips.verdicts.shadow";
/// Messages no stage could process, with the reason.
pub const DLQ: &str = "clips.dlq";

/// Every topic the pipeline uses, with whether it is compacted.
pub const ALL: &[(&str, bool)] = &[
    (SUBMITTED, false),
    (MEDIA, false),
    (TRANSCRIPTS, false),
    (SIGNALS, false),
    (VERDICTS, true),
    (VERDICTS_SHADOW, true),
    (DLQ, false),
];

/// No message clipguard produces is larger than this (Kafka's default `message.max.bytes` is
/// about 1 MiB, librdkafka's 1,000,000 bytes; this leaves room for headers and batch overhead);
/// larger media travels by claim check.
pub const MAX_MESSAGE_BYTES: usize = 900 * 1024;
