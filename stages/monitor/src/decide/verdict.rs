//! Step two: a policy applied to [`Findings`] through the policy's one engine
//! ([`Policy::apply`]), with the hard findings (failed or missing stages, hash matches) as a
//! floor: one decision per audience, the per-category table, and the rationale.

use clipguard_policy::{self as policy, Audience, Policy, Scored, evidence_phrase};
use clipguard_schemas::{AudienceDecisions, CategoryDecision, Decision, Evidence, Verdict};

use super::POLICY_ENGINE;
use super::findings::{self, Findings, push_unique};

/// The policy's `[provenance]` rule applied to the clip: `provenance_unverified` 1.0 when its
/// surface requires a valid manifest from an expected generator and it has none. Scored here,
/// not in [`findings::gather`], because it depends on the policy (a shadow policy may differ).
fn provenance_rule(f: &Findings, policy: &Policy) -> Option<findings::Scored> {
    let surface = f
        .context
        .audience
        .as_ref()
        .map(|a| a.surface())
        .unwrap_or_default();
    let provenance = f.media.as_ref().and_then(|m| m.provenance.as_ref());
    let why = policy.provenance.unmet(surface, provenance)?;
    Some(findings::Scored {
        score: 1.0,
        evidence: vec![Evidence {
            kind: "media".into(),
            start_s: 0.0,
            end_s: 0.0,
            detail: why,
        }],
        stages: vec!["media".into()],
    })
}

/// Applies `policy` to `f`: the verdict with a decision per audience.
pub fn verdict(f: &Findings, policy: &Policy) -> Verdict {
    let unverified = provenance_rule(f, policy);
    let rule = unverified
        .as_ref()
        .map(|s| (policy::PROVENANCE_UNVERIFIED.to_string(), s));
    let applied = policy.apply(
        f.scores
            .iter()
            .chain(rule.as_ref().map(|(k, v)| (k, *v)))
            .map(|(name, s)| Scored {
                category: name,
                score: s.score,
                evidence: &s.evidence,
                sources: &s.stages,
            }),
    );
    let own = f.audience.unwrap_or(Audience::PublicFeed);
    let floor = f.floor();
    let columns = applied.columns().map(|c| c.max(floor));
    let mut reasons = f.reasons.clone();
    let mut categories: Vec<CategoryDecision> =
        f.hard.iter().filter_map(|h| h.category.clone()).collect();
    for row in &applied.rows {
        if let Some(reason) = row.reason() {
            push_unique(&mut reasons, reason);
        }
        categories.push(row.entry(row.strictest(own)));
    }
    let audiences = AudienceDecisions {
        adult: columns[0] as i32,
        under_18: columns[1] as i32,
        public_feed: columns[2] as i32,
    };
    let decision = columns.iter().copied().max().unwrap_or(Decision::Allow);
    let rationale = rationale(
        f,
        &columns,
        decision,
        applied.drivers(&Audience::ALL),
        applied.minor,
    );
    Verdict {
        clip_id: f.clip_id.clone(),
        source: f.context.source.clone(),
        decision: decision as i32,
        audiences: Some(audiences),
        categories,
        reasons,
        policy_version: policy.version.clone(),
        rationale,
        revision: f.context.revision,
        decided_at_ms: clipguard_pipeline::now_ms(),
        stages: f.stages.clone(),
        missing_stages: f.missing.clone(),
        audience: own.name().to_string(),
        engine: POLICY_ENGINE.to_string(),
        fallback: String::new(),
        provenance: f.media.as_ref().and_then(|m| m.provenance.clone()),
        media: f.media.as_ref().and_then(|m| m.stored.clone()),
        surface: f
            .context
            .audience
            .as_ref()
            .map(|a| a.surface)
            .unwrap_or_default(),
    }
}

/// The verdict in a few sentences: the decision per audience, then what drove it, strongest
/// first (at most four drivers named).
fn rationale(
    f: &Findings,
    columns: &[Decision; 3],
    decision: Decision,
    drivers: Vec<String>,
    minor: bool,
) -> String {
    let mut parts = Vec::new();
    let head = if columns.iter().all(|c| *c == decision) {
        format!("{} for every audience", decision.word())
    } else {
        Audience::ALL
            .iter()
            .map(|a| format!("{} {}", columns[a.index()].word(), a.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    parts.push(head);
    if minor {
        let at = f
            .scores
            .get(policy::POTENTIAL_MINOR)
            .and_then(|s| s.evidence.first())
            .map(|e| format!(" ({})", evidence_phrase(e)))
            .unwrap_or_default();
        parts.push(format!(
            "a person who may be under 18 appears{at}: every audience uses the under-18 rules"
        ));
    }
    for h in &f.hard {
        parts.push(h.rationale.clone());
    }
    parts.extend(drivers);
    if parts.len() == 1 {
        parts.push(match &f.media {
            Some(m) if m.container == super::UPLOADS => format!(
                "{} uploaded image(s) read (the first {}x{}) and no check ({}) found a problem",
                m.frames_decoded,
                m.width,
                m.height,
                f.stages.join(", ")
            ),
            Some(m) => format!(
                "the clip decoded ({:.1} s, {}x{}) and no stage ({}) found a problem",
                m.duration_s,
                m.width,
                m.height,
                f.stages.join(", ")
            ),
            None => "no stage found a problem".to_string(),
        });
    }
    let head = parts.remove(0);
    format!("{head} — {}", parts.join("; "))
}
