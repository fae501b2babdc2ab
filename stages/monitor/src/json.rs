//! The verdict's JSON form: the contract enforcement services and `--json` output rely on.

use clipguard_schemas::{Decision, Verdict};
use serde_json::{Value, json};

fn word(d: i32) -> &'static str {
    Decision::try_from(d)
        .unwrap_or(Decision::Unspecified)
        .word()
}

/// One JSON object with `clip_id`, `source`, `decision`, `audiences`, `categories`, `reasons`,
/// `policy_version`, `rationale`, `audience` (the clip's own audience), `engine` (`policy` or
/// `reasoning:<model>`), `fallback` (why a configured reasoning backend was not used) and
/// bookkeeping fields.
pub fn verdict_json(v: &Verdict) -> Value {
    let audiences = v.audiences.unwrap_or_default();
    json!({
        "clip_id": v.clip_id,
        "source": v.source,
        "decision": word(v.decision),
        "audiences": {
            "adult": word(audiences.adult),
            "under_18": word(audiences.under_18),
            "public_feed": word(audiences.public_feed),
        },
        "categories": v.categories.iter().map(|c| json!({
            "name": c.category,
            "score": c.score,
            "threshold": c.threshold,
            "decision": word(c.decision),
            "audiences": c.audiences.map(|a| json!({
                "adult": word(a.adult),
                "under_18": word(a.under_18),
                "public_feed": word(a.public_feed),
            })),
            "evidence": c.evidence.iter().map(|e| json!({
                "kind": e.kind, "start_s": e.start_s, "end_s": e.end_s, "detail": e.detail,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "reasons": v.reasons,
        "policy_version": v.policy_version,
        "rationale": v.rationale,
        "audience": v.audience,
        "engine": v.engine,
        "fallback": v.fallback,
        "revision": v.revision,
        "decided_at_ms": v.decided_at_ms,
        "stages": v.stages,
        "missing_stages": v.missing_stages,
    })
}
