//! Step two: a policy applied to [`Findings`]: one decision per audience, the per-category
//! table, and the rationale.

use std::collections::BTreeMap;

use clipguard_policy::{self as policy, Audience, Outcome, Policy, evidence_phrase};
use clipguard_schemas::{AudienceDecisions, CategoryDecision, Decision, Verdict};

use super::findings::{Findings, Scored, push_unique};
use super::{CONTEXT_CATEGORIES, POLICY_ENGINE};

/// One category's outcome in every audience column.
struct Row<'a> {
    name: &'a str,
    scored: &'a Scored,
    /// Outcome per audience (`Audience::ALL` order); `None` when the policy lacks the category.
    outcomes: [Option<Outcome>; 3],
}

/// Applies `policy` to `f`: the verdict with a decision per audience.
pub fn verdict(f: &Findings, policy: &Policy) -> Verdict {
    let minor = f.minor();
    let plain = f.plain_scores();
    let by_audience: Vec<Vec<Outcome>> = Audience::ALL
        .iter()
        .map(|a| policy.decide_as(&plain, *a, minor))
        .collect();
    let own = f.audience.unwrap_or(Audience::PublicFeed);
    let mut columns = [Decision::Allow; 3];
    let floor = f.floor();
    for c in &mut columns {
        *c = (*c).max(floor);
    }
    let mut reasons = f.reasons.clone();
    let mut categories: Vec<CategoryDecision> =
        f.hard.iter().filter_map(|h| h.category.clone()).collect();
    let mut drivers = Vec::new();

    for (name, scored) in &f.scores {
        if CONTEXT_CATEGORIES.contains(&name.as_str()) {
            if scored.score >= policy::MINOR_SCORE {
                push_unique(&mut reasons, format!("context:{name}"));
            }
            categories.push(CategoryDecision {
                category: name.clone(),
                score: scored.score,
                threshold: policy::MINOR_SCORE,
                decision: Decision::Allow as i32,
                evidence: scored.evidence.clone(),
                audiences: Some(AudienceDecisions {
                    adult: Decision::Allow as i32,
                    under_18: Decision::Allow as i32,
                    public_feed: Decision::Allow as i32,
                }),
            });
            continue;
        }
        let row = Row {
            name,
            scored,
            outcomes: [0, 1, 2]
                .map(|i| by_audience[i].iter().find(|o| o.category == *name).cloned()),
        };
        let mut per = AudienceDecisions::default();
        let mut strictest: Option<(Decision, f32)> = None;
        // The clip's own audience first, so ties report its threshold.
        let order = std::iter::once(own).chain(Audience::ALL.into_iter().filter(|a| *a != own));
        for a in order {
            let (d, threshold) = match &row.outcomes[a.index()] {
                Some(o) => (o.decision, o.threshold),
                // A category the policy does not name: found at 0.5, treated as missing policy.
                None if scored.score >= 0.5 => (policy.on_missing.decision(), 0.5),
                None => (Decision::Allow, 0.5),
            };
            a.set(&mut per, d);
            columns[a.index()] = columns[a.index()].max(d);
            if strictest.is_none_or(|(best, _)| d > best) {
                strictest = Some((d, threshold));
            }
        }
        let (decision, threshold) = strictest.unwrap_or((Decision::Allow, 0.5));
        if decision != Decision::Allow {
            let unknown = row.outcomes.iter().all(Option::is_none);
            push_unique(
                &mut reasons,
                if unknown {
                    format!("unknown_category:{name}")
                } else {
                    format!("category:{name}")
                },
            );
            drivers.push((decision, scored.score, driver_sentence(&row, unknown)));
        }
        categories.push(CategoryDecision {
            category: name.clone(),
            score: scored.score,
            threshold,
            decision: decision as i32,
            evidence: scored.evidence.clone(),
            audiences: Some(per),
        });
    }

    let audiences = AudienceDecisions {
        adult: columns[0] as i32,
        under_18: columns[1] as i32,
        public_feed: columns[2] as i32,
    };
    let decision = columns.iter().copied().max().unwrap_or(Decision::Allow);
    let rationale = rationale(f, &columns, decision, drivers, minor);
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
    }
}

/// "self_harm 0.83 (block for under_18, public_feed; review for adult): transcript 3.2–5.1 s …"
fn driver_sentence(row: &Row<'_>, unknown: bool) -> String {
    let mut by_decision: BTreeMap<std::cmp::Reverse<Decision>, Vec<String>> = BTreeMap::new();
    for a in Audience::ALL {
        let d = match &row.outcomes[a.index()] {
            Some(o) => (o.decision, o.threshold),
            None => (Decision::Allow, 0.5),
        };
        let t = if d.0 == Decision::Allow {
            a.name().to_string()
        } else {
            format!("{} ≥ {:.2}", a.name(), d.1)
        };
        by_decision
            .entry(std::cmp::Reverse(d.0))
            .or_default()
            .push(t);
    }
    let columns = if unknown {
        "not in the policy; held for review".to_string()
    } else {
        by_decision
            .iter()
            .map(|(d, names)| format!("{} for {}", d.0.word(), names.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let evidence = row
        .scored
        .evidence
        .first()
        .map(|e| format!(": {}", evidence_phrase(e)))
        .unwrap_or_else(|| format!(" (from {})", row.scored.stages.join(", ")));
    format!("{} {:.2} ({columns}){evidence}", row.name, row.scored.score)
}

/// The verdict in a few sentences: the decision per audience, then what drove it, strongest
/// first (at most four drivers named).
fn rationale(
    f: &Findings,
    columns: &[Decision; 3],
    decision: Decision,
    mut drivers: Vec<(Decision, f32, String)>,
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
    drivers.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let more = drivers.len().saturating_sub(4);
    for (_, _, sentence) in drivers.into_iter().take(4) {
        parts.push(sentence);
    }
    if more > 0 {
        parts.push(format!("{more} more categories in `categories`"));
    }
    if parts.len() == 1 {
        parts.push(match &f.media {
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
