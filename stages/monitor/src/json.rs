//! The verdict's JSON form: the contract enforcement services and `--json` output rely on,
//! declared once as serde types ([`VerdictJson`]) that a Rust client can also read back.

use clipguard_schemas::media_ref::Location;
use clipguard_schemas::{
    AudienceDecisions, CategoryDecision, Decision, Evidence, MediaRef, Provenance, Rendition,
    Surface, Verdict,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn word(d: i32) -> String {
    Decision::try_from(d)
        .unwrap_or(Decision::Unspecified)
        .word()
        .to_string()
}

/// One verdict: `clip_id`, `source`, `decision`, `audiences`, `categories`, `reasons`,
/// `policy_version`, `rationale`, `audience` (the clip's own audience), `engine` (`policy` or
/// `reasoning:<model>`), `fallback` (why a configured reasoning backend was not used) and
/// bookkeeping fields. Decisions are words: `allow`, `review`, `block`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictJson {
    pub clip_id: String,
    pub source: String,
    pub decision: String,
    pub audiences: AudiencesJson,
    pub categories: Vec<CategoryJson>,
    pub reasons: Vec<String>,
    pub policy_version: String,
    pub rationale: String,
    pub audience: String,
    pub engine: String,
    pub fallback: String,
    pub revision: u32,
    pub decided_at_ms: i64,
    pub stages: Vec<String>,
    pub missing_stages: Vec<String>,
    /// The clip's C2PA provenance; absent when the media stage never read the clip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<ProvenanceJson>,
    /// The surface the clip's context names: `private`, `feed`, `download`, `unspecified`.
    #[serde(default)]
    pub surface: String,
    /// Where the clip's bytes are kept; absent when they are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<StoredJson>,
    /// The clip's outgoing rendition, where the output joins it to the verdict (`clipguard
    /// scan`); on Kafka it is its own record on `clips.renditions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendition: Option<RenditionJson>,
}

/// Bytes in the claim-check store: `uri`, `sha256`, `size_bytes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredJson {
    pub uri: String,
    pub sha256: String,
    pub size_bytes: u64,
}

impl StoredJson {
    fn of(m: &MediaRef) -> Option<Self> {
        match &m.location {
            Some(Location::Uri(uri)) => Some(Self {
                uri: uri.clone(),
                sha256: m.sha256.clone(),
                size_bytes: m.size_bytes,
            }),
            _ => None,
        }
    }
}

/// An outgoing rendition ([`Rendition`]): where it is, the manifest clipguard signed, the
/// watermark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenditionJson {
    pub media: Option<StoredJson>,
    pub verdict_revision: u32,
    pub policy_version: String,
    pub manifest_label: String,
    pub signer: String,
    pub ingredient_provenance: String,
    pub watermark: String,
    pub made_at_ms: i64,
    /// Why there is no rendition (`media` absent); empty when there is one.
    pub unavailable: String,
}

impl From<&Rendition> for RenditionJson {
    fn from(r: &Rendition) -> Self {
        Self {
            media: r.media.as_ref().and_then(StoredJson::of),
            verdict_revision: r.verdict_revision,
            policy_version: r.policy_version.clone(),
            manifest_label: r.manifest_label.clone(),
            signer: r.signer.clone(),
            ingredient_provenance: r.ingredient_provenance.clone(),
            watermark: r.watermark.clone(),
            made_at_ms: r.made_at_ms,
            unavailable: r.unavailable.clone(),
        }
    }
}

/// C2PA provenance: `state` `present` / `invalid` / `absent`, the claim generator, actions
/// (with digital source types), validation errors, the signer, whether it is trusted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceJson {
    pub state: String,
    pub claim_generator: String,
    pub actions: Vec<String>,
    pub validation_errors: Vec<String>,
    pub signer: String,
    pub trusted: bool,
    pub note: String,
}

impl From<&Provenance> for ProvenanceJson {
    fn from(p: &Provenance) -> Self {
        Self {
            state: p.state.clone(),
            claim_generator: p.claim_generator.clone(),
            actions: p.actions.clone(),
            validation_errors: p.validation_errors.clone(),
            signer: p.signer.clone(),
            trusted: p.trusted,
            note: p.note.clone(),
        }
    }
}

/// The decision for each audience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudiencesJson {
    pub adult: String,
    pub under_18: String,
    pub public_feed: String,
}

/// One category: its score, the threshold it was held to, its decisions and the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryJson {
    pub name: String,
    pub score: f32,
    pub threshold: f32,
    pub decision: String,
    pub audiences: Option<AudiencesJson>,
    pub evidence: Vec<EvidenceJson>,
}

/// What a category's score rests on, with its time in the clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceJson {
    pub kind: String,
    pub start_s: f64,
    pub end_s: f64,
    pub detail: String,
}

impl From<&AudienceDecisions> for AudiencesJson {
    fn from(a: &AudienceDecisions) -> Self {
        Self {
            adult: word(a.adult),
            under_18: word(a.under_18),
            public_feed: word(a.public_feed),
        }
    }
}

impl From<&Evidence> for EvidenceJson {
    fn from(e: &Evidence) -> Self {
        Self {
            kind: e.kind.clone(),
            start_s: e.start_s,
            end_s: e.end_s,
            detail: e.detail.clone(),
        }
    }
}

impl From<&CategoryDecision> for CategoryJson {
    fn from(c: &CategoryDecision) -> Self {
        Self {
            name: c.category.clone(),
            score: c.score,
            threshold: c.threshold,
            decision: word(c.decision),
            audiences: c.audiences.as_ref().map(AudiencesJson::from),
            evidence: c.evidence.iter().map(EvidenceJson::from).collect(),
        }
    }
}

impl From<&Verdict> for VerdictJson {
    fn from(v: &Verdict) -> Self {
        Self {
            clip_id: v.clip_id.clone(),
            source: v.source.clone(),
            decision: word(v.decision),
            audiences: AudiencesJson::from(&v.audiences.unwrap_or_default()),
            categories: v.categories.iter().map(CategoryJson::from).collect(),
            reasons: v.reasons.clone(),
            policy_version: v.policy_version.clone(),
            rationale: v.rationale.clone(),
            audience: v.audience.clone(),
            engine: v.engine.clone(),
            fallback: v.fallback.clone(),
            revision: v.revision,
            decided_at_ms: v.decided_at_ms,
            stages: v.stages.clone(),
            missing_stages: v.missing_stages.clone(),
            provenance: v.provenance.as_ref().map(ProvenanceJson::from),
            surface: clipguard_policy::surface_word(
                Surface::try_from(v.surface).unwrap_or_default(),
            )
            .to_string(),
            media: v.media.as_ref().and_then(StoredJson::of),
            rendition: None,
        }
    }
}

/// [`VerdictJson`] of `v` as a JSON value.
pub fn verdict_json(v: &Verdict) -> Value {
    serde_json::to_value(VerdictJson::from(v)).unwrap_or_default()
}

/// [`VerdictJson`] of `v` joined with the clip's rendition, when one was made.
pub fn verdict_json_with(v: &Verdict, rendition: Option<&Rendition>) -> Value {
    let mut j = VerdictJson::from(v);
    j.rendition = rendition.map(RenditionJson::from);
    serde_json::to_value(j).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The JSON reads back into the same type, field for field.
    #[test]
    fn a_verdict_json_reads_back() {
        let v = crate::decide::decide(
            "c",
            &[],
            &crate::Wait::default(),
            &clipguard_policy::Policy::default_policy(),
            true,
        );
        let j = verdict_json(&v);
        assert_eq!(j["decision"], "review");
        assert_eq!(j["audiences"]["under_18"], "review");
        let back: VerdictJson = serde_json::from_value(j.clone()).unwrap();
        assert_eq!(back, VerdictJson::from(&v));
        assert_eq!(serde_json::to_value(&back).unwrap(), j);
    }
}
