//! Step one: the signals read once into [`Findings`].

use std::collections::{BTreeMap, BTreeSet};

use clipguard_policy::{self as policy, Audience, Policy};
use clipguard_schemas::names::stage;
use clipguard_schemas::{
    AudienceDecisions, CategoryDecision, ClipContext, Decision, Evidence, LikenessMatch, MediaInfo,
    Signal,
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
    /// Enrolled people the classify stage recognised in the frames.
    pub likeness: Vec<LikenessMatch>,
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
        f.likeness.extend(s.likeness_matches.iter().cloned());
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

/// Likeness: people the clip's context names, and enrolled people the classify stage
/// recognised in its frames, must all be on its consented list, else
/// `likeness_without_consent` (evidence: the context's names, each recognised face's time, box
/// and distance); and sexual content in a clip that depicts a real person is `sexual_likeness`.
fn likeness(f: &mut Findings) {
    let audience = f.context.audience.clone().unwrap_or_default();
    let named: Vec<String> = audience
        .depicted_likeness_ids
        .iter()
        .filter(|id| !id.trim().is_empty())
        .cloned()
        .collect();
    let recognised = f.likeness.clone();
    if named.is_empty() && recognised.is_empty() {
        return;
    }
    let on_list = |id: &str| audience.consented_likeness_ids.iter().any(|c| c == id);
    let consented = if audience.consented_likeness_ids.is_empty() {
        "none".to_string()
    } else {
        audience.consented_likeness_ids.join(", ")
    };
    let mut depicted: Vec<String> = Vec::new();
    let mut without: Vec<String> = Vec::new();
    let (mut against, mut holds) = (Vec::new(), Vec::new());
    if !named.is_empty() {
        let missing: Vec<&str> = named
            .iter()
            .map(String::as_str)
            .filter(|id| !on_list(id))
            .collect();
        let detail = if missing.is_empty() {
            format!("depicts {}; all on the consented list", named.join(", "))
        } else {
            format!(
                "depicts {} without consent (consented: {consented})",
                missing.join(", ")
            )
        };
        let e = Evidence {
            kind: "context".into(),
            start_s: 0.0,
            end_s: 0.0,
            detail,
        };
        if missing.is_empty() {
            &mut holds
        } else {
            &mut against
        }
        .push(e);
        for id in &named {
            push_unique(&mut depicted, id.clone());
        }
        for id in missing {
            push_unique(&mut without, id.to_string());
        }
    }
    for m in &recognised {
        let ok = on_list(&m.person_id);
        let detail = format!(
            "a face at x {:.0}, y {:.0}, {:.0} × {:.0} px is enrolled person {} (descriptor distance {:.2}, a match at or below {:.2}; {} frame(s); registry v{}): {}",
            m.x,
            m.y,
            m.width,
            m.height,
            m.person_id,
            m.distance,
            m.max_distance,
            m.frame_timestamps_s.len(),
            m.registry_version,
            if ok {
                "on the consented list, consent holds".to_string()
            } else {
                format!("not on the consented list (consented: {consented})")
            }
        );
        let e = Evidence {
            kind: "face".into(),
            start_s: m.frame_timestamps_s.first().copied().unwrap_or(0.0),
            end_s: m.frame_timestamps_s.last().copied().unwrap_or(0.0),
            detail,
        };
        if ok { &mut holds } else { &mut against }.push(e);
        push_unique(&mut depicted, m.person_id.clone());
        if !ok {
            push_unique(&mut without, m.person_id.clone());
        }
    }
    let score = if without.is_empty() { 0.0 } else { 1.0 };
    against.append(&mut holds);
    let mut stages = Vec::new();
    if !named.is_empty() {
        stages.push("context".to_string());
    }
    if !recognised.is_empty() {
        stages.push(stage::CLASSIFY.to_string());
    }
    f.scores.insert(
        policy::LIKENESS_WITHOUT_CONSENT.to_string(),
        Scored {
            score,
            evidence: against,
            stages,
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
