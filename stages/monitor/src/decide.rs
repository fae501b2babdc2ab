//! The decision: a pure function from a clip's signals and a policy to its verdict, the same
//! whether the signals arrived over Kafka, gRPC, in-process or from a replay.
//!
//! Two steps. [`gather`] reads the signals once into [`Findings`]: the highest score of each
//! category with the evidence behind it (frame times, transcript spans, bank ids), and the
//! findings that decide the same for every audience (hash matches, failed or missing stages).
//! [`verdict`] applies a [`Policy`] to those findings: one decision per audience, the
//! per-category table, and a rationale a reviewer can read at a glance. Re-deciding under
//! another policy (shadow, replay) re-runs only the second step.

use std::collections::{BTreeMap, BTreeSet};

use clipguard_schemas::{
    AudienceDecisions, CategoryDecision, ClipContext, Decision, Evidence, MediaInfo, Signal,
    Verdict,
};

use crate::MonitorConfig;
use crate::policy::{self, Audience, Outcome, Policy};

/// Categories that describe the clip rather than a violation (`potential_minor`: a face that
/// may be under 18). Reported with their evidence; the policy uses them to pick stricter
/// rules; they never block or review a clip by themselves.
pub const CONTEXT_CATEGORIES: &[&str] = &[policy::POTENTIAL_MINOR];

/// Hash-bank categories of sexual content involving minors: any match blocks in every audience,
/// whatever action the bank was imported with, and the monitor decides without waiting.
pub const CSAM_BANK_CATEGORIES: &[&str] = &["csam", policy::MINORS_SEXUAL];

/// Engine name of the deterministic policy engine.
pub const POLICY_ENGINE: &str = "policy";

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

/// Fuses `signals` (at most one per stage; later duplicates are ignored) into a verdict under
/// `policy`. `deadline_passed` means the monitor stopped waiting: missing stages fail closed.
pub fn decide(
    clip_id: &str,
    signals: &[Signal],
    cfg: &MonitorConfig,
    policy: &Policy,
    deadline_passed: bool,
) -> Verdict {
    verdict(
        &gather(clip_id, signals, cfg, policy, deadline_passed),
        policy,
    )
}

/// Reads a clip's signals into [`Findings`]. The policy supplies only the fail-closed actions
/// (`on_missing`, `on_undecodable`).
pub fn gather(
    clip_id: &str,
    signals: &[Signal],
    cfg: &MonitorConfig,
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
        media: signals.iter().find_map(|s| s.media.clone()),
        transcript: signals
            .iter()
            .find_map(|s| s.transcript.as_ref().map(|t| t.text.clone()))
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
            let action = if s.stage == "media" {
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
        for m in &s.hash_matches {
            f.hard.push(hash_finding(m));
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

    let missing: Vec<String> = still_missing(&signals, cfg)
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
                cfg.timeout_s,
                policy.on_missing.word(),
            ),
            category: None,
        });
        f.missing = missing;
    }
    f
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// A hash-bank match: the bank's action (at least review); CSAM banks block.
fn hash_finding(m: &clipguard_schemas::HashMatch) -> Hard {
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
        "pdq" => format!("frames matched image hashes (PDQ distance {})", m.distance),
        "vpdq" => format!(
            "the video matched a known video ({:.0} % of its frames, PDQ distance {})",
            m.target_match_pct, m.distance
        ),
        kind => format!("the file matched exactly ({kind})"),
    };
    let at = match (m.frame_timestamps_s.first(), m.frame_timestamps_s.last()) {
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
                kind: "hash".into(),
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

/// One piece of evidence in words: where in the clip, and what.
pub fn evidence_phrase(e: &Evidence) -> String {
    let detail = shorten(&e.detail, 160);
    match e.kind.as_str() {
        "transcript" => format!("speech at {:.1}–{:.1} s, {detail}", e.start_s, e.end_s),
        "frame" | "face" => format!("{} at {:.1} s, {detail}", e.kind, e.start_s),
        "prompt" => format!("the prompt, {detail}"),
        "scene_description" => format!("the scene description, {detail}"),
        "hash" => format!("hash match at {:.1} s, {detail}", e.start_s),
        _ => detail,
    }
}

/// `s` cut to `max_chars` characters, with `…` when cut.
pub fn shorten(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_chars).collect();
    out.push('…');
    out
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

/// True when the signals are enough to decide without waiting any longer: all expected stages
/// answered, the media could not be decoded, or a CSAM bank matched (nothing another stage
/// says can change that block).
pub fn complete(signals: &[Signal], cfg: &MonitorConfig) -> bool {
    if signals.iter().any(|s| {
        s.hash_matches
            .iter()
            .any(|m| CSAM_BANK_CATEGORIES.contains(&m.category.as_str()))
    }) {
        return true;
    }
    let refs: Vec<&Signal> = signals.iter().collect();
    still_missing(&refs, cfg).is_empty()
}

/// The stages that produce from another stage's output, and that stage: when it failed on a
/// clip (an error signal), nothing will come from them.
const FED_BY: &[(&str, &str)] = &[("classify_transcript", "transcribe")];

/// Expected stages with no signal yet, less those that cannot answer: everything after a
/// media failure (an undecodable clip), and a stage whose feeding stage failed.
fn still_missing<'c>(signals: &[&Signal], cfg: &'c MonitorConfig) -> Vec<&'c str> {
    let failed = |stage: &str| {
        signals
            .iter()
            .any(|s| s.stage == stage && s.error.is_some())
    };
    if failed("media") {
        return Vec::new();
    }
    cfg.expected_stages
        .iter()
        .map(String::as_str)
        .filter(|e| !signals.iter().any(|s| s.stage == *e))
        .filter(|e| {
            !FED_BY
                .iter()
                .any(|(stage, feeder)| stage == e && failed(feeder))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clipguard_schemas::{ClipContext, MediaInfo, StageError};

    fn pol() -> Policy {
        Policy::default_policy()
    }

    fn media_ok() -> Signal {
        Signal {
            clip_id: "c".into(),
            stage: "media".into(),
            context: Some(ClipContext {
                source: "a.mp4".into(),
                ..Default::default()
            }),
            media: Some(MediaInfo {
                duration_s: 2.0,
                width: 64,
                height: 48,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn media_err(kind: &str) -> Signal {
        Signal {
            error: Some(StageError {
                kind: kind.into(),
                message: "bad".into(),
            }),
            media: None,
            reasons: vec![format!("media_error:{kind}")],
            ..media_ok()
        }
    }

    #[test]
    fn good_media_is_allowed_with_a_rationale() {
        let v = decide("c", &[media_ok()], &MonitorConfig::default(), &pol(), false);
        assert_eq!(v.decision(), Decision::Allow);
        assert_eq!(v.source, "a.mp4");
        assert!(v.rationale.contains("decoded"), "{}", v.rationale);
        assert!(v.reasons.is_empty());
    }

    #[test]
    fn bad_media_fails_closed_with_its_kind_once() {
        let v = decide(
            "c",
            &[media_err("truncated")],
            &MonitorConfig::default(),
            &pol(),
            false,
        );
        assert_eq!(v.decision(), Decision::Block);
        assert_eq!(v.reasons, vec!["media_error:truncated".to_string()]);
        assert!(complete(
            &[media_err("truncated")],
            &MonitorConfig::default()
        ));
    }

    #[test]
    fn missing_stages_at_the_deadline_are_never_a_silent_allow() {
        let cfg = MonitorConfig {
            expected_stages: vec!["media".into(), "hashmatch".into()],
            ..Default::default()
        };
        assert!(!complete(&[media_ok()], &cfg));
        let v = decide("c", &[media_ok()], &cfg, &pol(), true);
        assert_eq!(v.decision(), Decision::Review);
        assert_eq!(v.missing_stages, vec!["hashmatch".to_string()]);
        assert!(v.reasons.contains(&"timeout:hashmatch".to_string()));
        let none = decide("c", &[], &cfg, &pol(), true);
        assert_eq!(none.decision(), Decision::Review);
    }

    #[test]
    fn a_failed_transcription_excuses_the_transcript_classifier() {
        let cfg = MonitorConfig {
            expected_stages: vec![
                "media".into(),
                "transcribe".into(),
                "classify_transcript".into(),
            ],
            ..Default::default()
        };
        let transcribe_failed = Signal {
            clip_id: "c".into(),
            stage: "transcribe".into(),
            error: Some(StageError {
                kind: "audio_format".into(),
                message: "audio is 44100 Hz".into(),
            }),
            ..Default::default()
        };
        let transcribed = Signal {
            clip_id: "c".into(),
            stage: "transcribe".into(),
            ..Default::default()
        };
        // A good transcript: its classification is still awaited.
        assert!(!complete(&[media_ok(), transcribed], &cfg));
        // A failed one: nothing will come; decide now, on the transcribe error.
        let signals = [media_ok(), transcribe_failed];
        assert!(complete(&signals, &cfg));
        let v = decide("c", &signals, &cfg, &pol(), false);
        assert_eq!(v.decision(), Decision::Review);
        assert!(v.missing_stages.is_empty());
        assert!(
            v.reasons
                .contains(&"transcribe_error:audio_format".to_string())
        );
    }

    #[test]
    fn a_potential_minor_is_reported_but_decides_nothing_by_itself() {
        let classify = Signal {
            clip_id: "c".into(),
            stage: "classify".into(),
            scores: vec![clipguard_schemas::CategoryScore {
                category: "potential_minor".into(),
                score: 0.9,
                evidence: vec![Evidence {
                    kind: "face".into(),
                    start_s: 1.5,
                    end_s: 1.5,
                    detail: "estimated age 9.0".into(),
                }],
            }],
            ..Default::default()
        };
        let cfg = MonitorConfig {
            expected_stages: vec!["media".into(), "classify".into()],
            ..Default::default()
        };
        let v = decide("c", &[media_ok(), classify], &cfg, &pol(), false);
        assert_eq!(v.decision(), Decision::Allow);
        assert!(v.reasons.contains(&"context:potential_minor".to_string()));
        let c = v
            .categories
            .iter()
            .find(|c| c.category == "potential_minor")
            .unwrap();
        assert_eq!(c.evidence[0].start_s, 1.5);
    }

    #[test]
    fn duplicate_signals_count_once() {
        let v = decide(
            "c",
            &[media_err("timeout"), media_ok()],
            &MonitorConfig::default(),
            &pol(),
            false,
        );
        assert_eq!(v.decision(), Decision::Block);
        assert_eq!(v.stages, vec!["media".to_string()]);
    }

    fn hash_signal(category: &str, action: Decision) -> Signal {
        Signal {
            clip_id: "c".into(),
            stage: "hashmatch".into(),
            reasons: vec![format!("hash_match:{category}")],
            hash_matches: vec![clipguard_schemas::HashMatch {
                bank: "known".into(),
                category: category.into(),
                action: action as i32,
                kind: "vpdq".into(),
                distance: 6,
                frame_timestamps_s: vec![1.0, 2.5],
                external_ids: vec!["case-1".into()],
                target_match_pct: 92.0,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_csam_block_decides_at_once_and_says_where() {
        let cfg = MonitorConfig::default();
        let csam = hash_signal("csam", Decision::Block);
        assert!(
            complete(std::slice::from_ref(&csam), &cfg),
            "no waiting for other stages"
        );
        let v = decide("c", &[csam], &cfg, &pol(), false);
        assert_eq!(v.decision(), Decision::Block);
        assert_eq!(v.reasons, vec!["hash_match:csam".to_string()]);
        assert_eq!(v.categories[0].category, "hash_match:csam");
        assert_eq!(v.categories[0].evidence[0].start_s, 1.0);
        assert!(
            v.rationale.contains("1.0–2.5 s in bank `known`"),
            "{}",
            v.rationale
        );
        assert!(v.rationale.contains("case-1"), "{}", v.rationale);

        // A review bank of another category waits for the other stages and reviews.
        let ncii = hash_signal("ncii", Decision::Review);
        assert!(!complete(std::slice::from_ref(&ncii), &cfg));
        let v = decide("c", &[media_ok(), ncii], &cfg, &pol(), false);
        assert_eq!(v.decision(), Decision::Review);
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;
    use clipguard_schemas::{AudienceContext, CategoryScore, HashMatch};

    fn signal(stage: &str, scores: &[(&str, f32)]) -> Signal {
        Signal {
            clip_id: "c".into(),
            stage: stage.into(),
            scores: scores
                .iter()
                .map(|(c, s)| CategoryScore {
                    category: c.to_string(),
                    score: *s,
                    evidence: vec![Evidence {
                        kind: "frame".into(),
                        start_s: 2.0,
                        end_s: 2.0,
                        detail: format!("{c} {s}"),
                    }],
                })
                .collect(),
            ..Default::default()
        }
    }

    fn media(depicted: &[&str], consented: &[&str]) -> Signal {
        Signal {
            clip_id: "c".into(),
            stage: "media".into(),
            context: Some(ClipContext {
                source: "clip.mp4".into(),
                audience: Some(AudienceContext {
                    depicted_likeness_ids: depicted.iter().map(|s| s.to_string()).collect(),
                    consented_likeness_ids: consented.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn cfg() -> MonitorConfig {
        MonitorConfig {
            expected_stages: vec!["media".into(), "classify".into()],
            ..Default::default()
        }
    }

    /// Category × audience × potential minor × likeness, through `decide` from signals, on the
    /// shipped policy: [adult, under_18, public_feed].
    #[test]
    fn decisions_from_signals_by_category_audience_minor_and_likeness() {
        use Decision::{Allow as A, Block as B, Review as R};
        type Case<'a> = (
            &'a [(&'a str, f32)],
            bool,
            &'a [&'a str],
            &'a [&'a str],
            [Decision; 3],
        );
        #[rustfmt::skip]
        let table: &[Case] = &[
            // scores, potential minor, depicted, consented, expected per audience
            (&[("sexual", 0.9)], false, &[], &[], [A, B, B]),
            (&[("sexual", 0.3)], false, &[], &[], [A, A, A]),
            (&[("sexual", 0.6)], true, &[], &[], [B, B, B]),
            (&[("sexual", 0.6)], false, &["alice"], &["alice"], [B, B, B]), // → sexual_likeness
            (&[("sexual_likeness", 0.7)], false, &[], &[], [B, B, B]),
            (&[], false, &["bob"], &["alice"], [R, B, B]),               // likeness_without_consent
            (&[], true, &["bob"], &[], [B, B, B]),
            (&[], false, &["alice"], &["alice"], [A, A, A]),
            (&[("self_harm", 0.45)], false, &[], &[], [A, B, A]),
            (&[("self_harm", 0.45)], true, &[], &[], [B, B, B]),
            (&[("self_harm", 0.6)], false, &[], &[], [R, B, B]),
            (&[("violence_gore", 0.6)], false, &[], &[], [A, B, B]),
            (&[("violence_gore", 0.75)], false, &[], &[], [R, B, B]),
            (&[("political_persuasion", 0.6)], false, &[], &[], [R, R, B]),
            (&[("political_persuasion", 0.6)], true, &[], &[], [R, R, R]),
            (&[("extremism_hate", 0.6)], false, &[], &[], [B, B, B]),
            (&[("minors_sexual", 0.45)], false, &[], &[], [B, B, B]),
            (&[("minors_sexual", 0.2)], false, &[], &[], [A, A, A]),
            (&[("not_in_policy", 0.7)], false, &[], &[], [R, R, R]),
            (&[("potential_minor", 0.9)], false, &[], &[], [A, A, A]),
        ];
        let p = Policy::default_policy();
        for (scores, minor, depicted, consented, want) in table {
            let mut list: Vec<(&str, f32)> = scores.to_vec();
            if *minor {
                list.push(("potential_minor", 0.8));
            }
            let signals = [media(depicted, consented), signal("classify", &list)];
            let v = decide("c", &signals, &cfg(), &p, false);
            let a = v.audiences.unwrap();
            let got = [a.adult, a.under_18, a.public_feed].map(|d| Decision::try_from(d).unwrap());
            assert_eq!(
                &got, want,
                "{scores:?} minor={minor} depicted={depicted:?} consented={consented:?}: {}",
                v.rationale
            );
            assert_eq!(v.decision(), *want.iter().max().unwrap());
            assert_eq!(v.policy_version, p.version);
            assert_eq!(v.engine, POLICY_ENGINE);
            if want.iter().any(|d| *d != A) {
                assert!(
                    v.reasons
                        .iter()
                        .any(|r| r.starts_with("category:") || r.starts_with("unknown_category:")),
                    "{:?}",
                    v.reasons
                );
            }
        }
    }

    #[test]
    fn the_rationale_names_the_audiences_the_category_and_where() {
        let signals = [media(&[], &[]), signal("classify", &[("self_harm", 0.62)])];
        let v = decide("c", &signals, &cfg(), &Policy::default_policy(), false);
        assert!(
            v.rationale
                .starts_with("review adult, block under_18, block public_feed"),
            "{}",
            v.rationale
        );
        assert!(v.rationale.contains("self_harm 0.62"), "{}", v.rationale);
        assert!(v.rationale.contains("frame at 2.0 s"), "{}", v.rationale);
        let c = v
            .categories
            .iter()
            .find(|c| c.category == "self_harm")
            .unwrap();
        assert_eq!(c.decision(), Decision::Block);
        assert_eq!(c.audiences.unwrap().adult, Decision::Review as i32);
    }

    #[test]
    fn a_transcript_hit_shows_its_span_and_time_in_the_verdict_json() {
        let transcript = Signal {
            clip_id: "c".into(),
            stage: "classify_transcript".into(),
            scores: vec![CategoryScore {
                category: "self_harm".into(),
                score: 0.81,
                evidence: vec![Evidence {
                    kind: "transcript".into(),
                    start_s: 3.2,
                    end_s: 5.1,
                    detail: "\u{201c}I am going to hurt myself tonight\u{201d} scored 0.81".into(),
                }],
            }],
            ..Default::default()
        };
        let cfg = MonitorConfig {
            expected_stages: vec!["media".into(), "classify_transcript".into()],
            ..Default::default()
        };
        let v = decide(
            "c",
            &[media(&[], &[]), transcript],
            &cfg,
            &Policy::default_policy(),
            false,
        );
        let j = crate::json::verdict_json(&v);
        let cat = j["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "self_harm")
            .unwrap();
        assert_eq!(cat["evidence"][0]["kind"], "transcript");
        assert_eq!(cat["evidence"][0]["start_s"], 3.2);
        assert_eq!(cat["evidence"][0]["end_s"], 5.1);
        assert!(
            cat["evidence"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("hurt myself tonight")
        );
        let rationale = j["rationale"].as_str().unwrap();
        assert!(rationale.contains("speech at 3.2–5.1 s"), "{rationale}");
        assert!(rationale.contains("hurt myself tonight"), "{rationale}");
        assert_eq!(j["policy_version"], Policy::default_policy().version);
    }

    #[test]
    fn a_csam_bank_match_blocks_everywhere_before_other_signals_whatever_the_bank_action() {
        let hit = Signal {
            clip_id: "c".into(),
            stage: "hashmatch".into(),
            hash_matches: vec![HashMatch {
                bank: "ncmec".into(),
                category: "csam".into(),
                action: Decision::Review as i32, // a misconfigured bank still blocks
                kind: "pdq".into(),
                distance: 12,
                frame_timestamps_s: vec![4.0],
                ..Default::default()
            }],
            ..Default::default()
        };
        let cfg = MonitorConfig::default(); // expects five stages; only one has answered
        assert!(complete(std::slice::from_ref(&hit), &cfg));
        let v = decide("c", &[hit], &cfg, &Policy::default_policy(), false);
        let a = v.audiences.unwrap();
        assert_eq!(
            [a.adult, a.under_18, a.public_feed],
            [Decision::Block as i32; 3]
        );
        assert!(v.missing_stages.is_empty(), "decided, not timed out");
        assert!(
            v.rationale.contains("at 4.0 s in bank `ncmec`"),
            "{}",
            v.rationale
        );
    }
}
