//! Step one: the signals read once into [`Findings`].

use std::collections::{BTreeMap, BTreeSet};

use clipguard_policy::{self as policy, Audience, Policy};
use clipguard_schemas::names::stage;
use clipguard_schemas::{
    AudienceDecisions, CategoryDecision, ClipContext, Decision, Evidence, MediaInfo, Signal,
};

use super::CSAM_BANK_CATEGORIES;
use crate::wait::Wait;

/// One category's highest score over all signals and the evidence behind it (the
/// highest-scoring signal's evidence first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scored {
    pub score: f32,
    pub evidence: Vec<Evidence>,
    /// Stages that reported the category.
    pub stages: Vec<String>,
}

/// A finding that decides the same in every audience: a stage failure, a missing stage, a
/// hash-bank match.
#[derive(Debug, Clone, PartialEq)]
pub struct Hard {
    pub decision: Decision,
    pub rationale: String,
    pub category: Option<CategoryDecision>,
}

/// Everything a clip's signals say, before a policy weighs the category scores.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    pub clip_id: String,
    pub context: ClipContext,
    pub scores: BTreeMap<String, Scored>,
    pub hard: Vec<Hard>,
    /// Machine-readable reasons from the stages and the hard findings.
    pub reasons: Vec<String>,
    /// Stages whose signal was used.
    pub stages: Vec<String>,
    /// Expected stages that never answered (set only when the deadline passed).
    pub missing: Vec<String>,
    pub media: Option<MediaInfo>,
    /// The clip's transcript (for the reasoning backend).
    pub transcript: String,
    /// The audience the clip's context puts it in.
    pub audience: Option<Audience>,
}

impl Findings {
    /// True when a potential minor was found: every audience takes the under-18 rules.
    pub fn minor(&self) -> bool {
        self.scores
            .get(policy::POTENTIAL_MINOR)
            .is_some_and(|s| s.score >= policy::MINOR_SCORE)
    }

    /// The hard findings' strictest decision (a floor no other engine may go below).
    pub fn floor(&self) -> Decision {
        self.hard
            .iter()
            .map(|h| h.decision)
            .max()
            .unwrap_or(Decision::Allow)
    }

    /// Highest score per category, as the policy reads them.
    pub fn plain_scores(&self) -> BTreeMap<String, f32> {
        self.scores
            .iter()
            .map(|(k, v)| (k.clone(), v.score))
            .collect()
    }
}

/// Reads a clip's signals into [`Findings`]. The policy supplies only the fail-closed actions
/// (`on_missing`, `on_undecodable`).
pub fn gather(
    clip_id: &str,
    signals: &[Signal],
    wait: &Wait,
    policy: &Policy,
    deadline_passed: bool,
) -> Findings {
    let mut seen = BTreeSet::new();
    let signals: Vec<&Signal> = signals
        .iter()
        .filter(|s| seen.insert(s.stage.as_str()))
        .collect();
    let context = signals
        .iter()
        .find_map(|s| s.context.clone())
        .unwrap_or_default();
    let mut f = Findings {
        clip_id: clip_id.to_string(),
        audience: Some(Audience::of_context(context.audience.as_ref())),
        context,
        media: signals.iter().find_map(|s| s.media().cloned()),
        transcript: signals
            .iter()
            .find_map(|s| s.transcript().map(|t| t.text.clone()))
            .unwrap_or_default(),
        stages: signals
            .iter()
            .map(|s| s.stage.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        ..Findings::default()
    };

    for s in &signals {
        for r in &s.reasons {
            push_unique(&mut f.reasons, r.clone());
        }
        if let Some(err) = &s.error {
            push_unique(&mut f.reasons, format!("{}_error:{}", s.stage, err.kind));
            let action = if s.stage == stage::MEDIA {
                policy.on_undecodable
            } else {
                policy.on_missing
            };
            f.hard.push(Hard {
                decision: action.decision(),
                rationale: format!(
                    "the {} stage could not process the clip ({}), and an unchecked clip is not shown → {}",
                    s.stage,
                    err.message,
                    action.word(),
                ),
                category: None,
            });
        }
        let uploads = f
            .media
            .as_ref()
            .is_some_and(|m| m.container == super::UPLOADS);
        for m in &s.hash_matches {
            f.hard.push(hash_finding(m, uploads));
        }
        for score in &s.scores {
            let entry = f.scores.entry(score.category.clone()).or_default();
            if score.score > entry.score || entry.stages.is_empty() {
                // The strongest signal's evidence leads.
                let mut evidence = score.evidence.clone();
                evidence.append(&mut entry.evidence);
                entry.evidence = evidence;
                entry.score = entry.score.max(score.score);
            } else {
                entry.evidence.extend(score.evidence.iter().cloned());
            }
            push_unique(&mut entry.stages, s.stage.clone());
        }
    }
    likeness(&mut f);

    let missing: Vec<String> = wait
        .missing(&signals)
        .into_iter()
        .map(str::to_string)
        .collect();
    if !missing.is_empty() && deadline_passed {
        for m in &missing {
            push_unique(&mut f.reasons, format!("timeout:{m}"));
        }
        f.hard.push(Hard {
            decision: policy.on_missing.decision(),
            rationale: format!(
                "no answer from {} within {:.0} s; failing closed → {}",
                missing.join(", "),
                wait.timeout_s,
                policy.on_missing.word(),
            ),
            category: None,
        });
        f.missing = missing;
    }
    f
}

pub(super) fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// A hash-bank match: the bank's action (at least review); CSAM banks block.
fn hash_finding(m: &clipguard_schemas::HashMatch, uploads: bool) -> Hard {
    let csam = CSAM_BANK_CATEGORIES.contains(&m.category.as_str());
    let decision = if csam {
        Decision::Block
    } else {
        m.action().max(Decision::Review)
    };
    let ids = if m.external_ids.is_empty() {
        String::new()
    } else {
        format!(", ids {}", m.external_ids.join(" "))
    };
    let what = match m.kind.as_str() {
        "pdq" if uploads => format!(
            "an upload matched image hashes (PDQ distance {})",
            m.distance
        ),
        "pdq" => format!("frames matched image hashes (PDQ distance {})", m.distance),
        "vpdq" => format!(
            "the video matched a known video ({:.0} % of its frames, PDQ distance {})",
            m.target_match_pct, m.distance
        ),
        kind => format!("the file matched exactly ({kind})"),
    };
    let at = match (m.frame_timestamps_s.first(), m.frame_timestamps_s.last()) {
        (Some(a), _) if uploads => format!(" in image {}", *a as usize),
        (Some(a), Some(b)) if a == b => format!(" at {a:.1} s"),
        (Some(a), Some(b)) => format!(" at {a:.1}–{b:.1} s"),
        _ => String::new(),
    };
    let all = AudienceDecisions {
        adult: decision as i32,
        under_18: decision as i32,
        public_feed: decision as i32,
    };
    Hard {
        decision,
        rationale: format!(
            "{what}{at} in bank `{}` ({}{ids}) → {}",
            m.bank,
            m.category,
            decision.word(),
        ),
        category: Some(CategoryDecision {
            category: format!("hash_match:{}", m.category),
            score: 1.0,
            threshold: 0.0,
            decision: decision as i32,
            evidence: vec![Evidence {
                kind: if uploads { "image" } else { "hash" }.into(),
                start_s: m.frame_timestamps_s.first().copied().unwrap_or(0.0),
                end_s: m.frame_timestamps_s.last().copied().unwrap_or(0.0),
                detail: format!(
                    "bank `{}`, {} match, distance {}{ids}",
                    m.bank, m.kind, m.distance
                ),
            }],
            audiences: Some(all),
        }),
    }
}

/// Likeness: people the clip's context names must all be on its consented list, else
/// `likeness_without_consent`; and sexual content in a clip that depicts a named real person
/// is `sexual_likeness`.
fn likeness(f: &mut Findings) {
    let Some(audience) = f.context.audience.as_ref() else {
        return;
    };
    let depicted: Vec<&str> = audience
        .depicted_likeness_ids
        .iter()
        .map(String::as_str)
        .filter(|id| !id.trim().is_empty())
        .collect();
    if depicted.is_empty() {
        return;
    }
    let without: Vec<&str> = depicted
        .iter()
        .copied()
        .filter(|id| !audience.consented_likeness_ids.iter().any(|c| c == id))
        .collect();
    let consented = if audience.consented_likeness_ids.is_empty() {
        "none".to_string()
    } else {
        audience.consented_likeness_ids.join(", ")
    };
    let (score, detail) = if without.is_empty() {
        (
            0.0,
            format!("depicts {}; all on the consented list", depicted.join(", ")),
        )
    } else {
        (
            1.0,
            format!(
                "depicts {} without consent (consented: {consented})",
                without.join(", ")
            ),
        )
    };
    f.scores.insert(
        policy::LIKENESS_WITHOUT_CONSENT.to_string(),
        Scored {
            score,
            evidence: vec![Evidence {
                kind: "context".into(),
                start_s: 0.0,
                end_s: 0.0,
                detail,
            }],
            stages: vec!["context".into()],
        },
    );
    if let Some(sexual) = f.scores.get(policy::SEXUAL).cloned() {
        let entry = f
            .scores
            .entry(policy::SEXUAL_LIKENESS.to_string())
            .or_default();
        if sexual.score > entry.score {
            entry.score = sexual.score;
            let mut evidence = vec![Evidence {
                kind: "context".into(),
                start_s: 0.0,
                end_s: 0.0,
                detail: format!(
                    "sexual content scored {:.2} in a clip depicting {}",
                    sexual.score,
                    depicted.join(", ")
                ),
            }];
            evidence.extend(sexual.evidence);
            evidence.append(&mut entry.evidence);
            entry.evidence = evidence;
            for s in sexual.stages {
                push_unique(&mut entry.stages, s);
            }
        }
    }
}

/// True when the signals are enough to decide without waiting any longer: all expected stages
/// answered, the media could not be decoded, or a CSAM bank matched (nothing another stage
/// says can change that block).
pub fn complete(signals: &[Signal], wait: &Wait) -> bool {
    if signals.iter().any(|s| {
        s.hash_matches
            .iter()
            .any(|m| CSAM_BANK_CATEGORIES.contains(&m.category.as_str()))
    }) {
        return true;
    }
    let refs: Vec<&Signal> = signals.iter().collect();
    wait.missing(&refs).is_empty()
}
