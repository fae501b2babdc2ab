//! The names every crate shares: stages, topics and policy categories. They appear in messages
//! (`Signal.stage`, `CategoryScore.category`), consumer groups, metric prefixes, policy files and
//! configuration, so each is spelled once, here.

/// Stage names: the consumer group suffix, the metric prefix and `Signal.stage`.
pub mod stage {
    pub const MEDIA: &str = "media";
    pub const HASHMATCH: &str = "hashmatch";
    pub const TRANSCRIBE: &str = "transcribe";
    pub const CLASSIFY: &str = "classify";
    pub const CLASSIFY_TRANSCRIPT: &str = "classify_transcript";
    pub const MONITOR: &str = "monitor";
    /// After the verdict: outgoing renditions and the "made by us" index.
    pub const RELEASE: &str = "release";
    /// After the verdict: `review` verdicts become cases that people decide.
    pub const REVIEW: &str = "review";

    /// Every stage, in pipeline order.
    pub const ALL: &[&str] = &[
        MEDIA,
        HASHMATCH,
        TRANSCRIBE,
        CLASSIFY,
        CLASSIFY_TRANSCRIPT,
        MONITOR,
        RELEASE,
        REVIEW,
    ];
}

/// Kafka topics.
pub mod topic {
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
    /// Outgoing renditions of allowed clips (watermarked, signed), compacted, keyed by clip_id.
    pub const RENDITIONS: &str = "clips.renditions";
    /// Reviewers' decisions, for the generator or platform to notify users, keyed by clip_id.
    pub const ENFORCEMENT: &str = "clips.enforcement";
    /// Messages no stage could process, with the reason.
    pub const DLQ: &str = "clips.dlq";
}

/// Policy categories that code refers to by name (the policy file may define more).
pub mod category {
    pub const SEXUAL: &str = "sexual";
    /// Sexual content using a real person's likeness.
    pub const SEXUAL_LIKENESS: &str = "sexual_likeness";
    pub const SELF_HARM: &str = "self_harm";
    pub const VIOLENCE_GORE: &str = "violence_gore";
    pub const POLITICAL_PERSUASION: &str = "political_persuasion";
    pub const EXTREMISM_HATE: &str = "extremism_hate";
    /// The category that must block everywhere.
    pub const MINORS_SEXUAL: &str = "minors_sexual";
    /// A real person named in the clip's context without their consent.
    pub const LIKENESS_WITHOUT_CONSENT: &str = "likeness_without_consent";
    /// The clip carries a C2PA manifest that fails validation (the media stage's).
    pub const PROVENANCE_INVALID: &str = "provenance_invalid";
    /// The policy requires a valid C2PA manifest from an expected generator on the clip's
    /// surface and the clip has none (the monitor's, under the policy's `[provenance]`).
    pub const PROVENANCE_UNVERIFIED: &str = "provenance_unverified";
    /// Context, not a violation: a face that may be under 18 puts every audience on the
    /// under-18 rules.
    pub const POTENTIAL_MINOR: &str = "potential_minor";
    /// The hash-bank category of known child sexual abuse material.
    pub const CSAM: &str = "csam";
    /// Hash-bank categories with a meaning in the default policy beside [`CSAM`]:
    /// non-consensual intimate imagery, terrorist content, and clips generated (and allowed)
    /// here.
    pub const NCII: &str = "ncii";
    pub const TERRORISM: &str = "terrorism";
    pub const INTERNAL_GENERATED: &str = "internal_generated";
    /// Every hash-bank category the default policy gives a meaning.
    pub const HASH_BANK: [&str; 4] = [CSAM, NCII, TERRORISM, INTERNAL_GENERATED];
}
