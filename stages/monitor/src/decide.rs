//! The decision: a pure function from a clip's signals to its verdict, the same whether the
//! signals arrived over Kafka, gRPC or in-process.

use std::collections::BTreeSet;

use clipguard_schemas::{AudienceDecisions, CategoryDecision, Decision, Evidence, Signal, Verdict};

use crate::MonitorConfig;

/// Categories that describe the clip rather than a violation (`potential_minor`: a face that
/// may be under 18). Reported with their evidence; the policy uses them to pick stricter
/// rules; they never block or review a clip by themselves.
pub const CONTEXT_CATEGORIES: &[&str] = &[crate::policy::POTENTIAL_MINOR];

/// Fuses `signals` (at most one per stage; later duplicates are ignored) into a verdict.
/// `deadline_passed` means the monitor stopped waiting: missing stages fail closed.
pub fn decide(
    clip_id: &str,
    signals: &[Signal],
    cfg: &MonitorConfig,
    deadline_passed: bool,
) -> Verdict {
    let mut seen = BTreeSet::new();
    let signals: Vec<&Signal> = signals
        .iter()
        .filter(|s| seen.insert(s.stage.as_str()))
        .collect();
    let context = signals
        .iter()
        .find_map(|s| s.context.clone())
        .unwrap_or_default();
    let mut decision = Decision::Allow;
    let mut reasons = Vec::new();
    let mut rationale = Vec::new();
    let mut categories = Vec::new();

    for s in &signals {
        reasons.extend(s.reasons.iter().cloned());
        if let Some(err) = &s.error {
            let reason = format!("{}_error:{}", s.stage, err.kind);
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
            let action = if s.stage == "media" {
                cfg.on_media_error
            } else {
                cfg.on_stage_error
            };
            decision = decision.max(action);
            // The kind is already in `reasons`; the message says it in words.
            rationale.push(format!(
                "{}: the {} stage could not process the clip ({}), and an unchecked clip is not shown",
                action.word(),
                s.stage,
                err.message
            ));
        }
        for m in &s.hash_matches {
            let action = m.action().max(Decision::Review);
            decision = decision.max(action);
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
            rationale.push(format!(
                "{}: {what}{at} in bank `{}` ({}{ids})",
                action.word(),
                m.bank,
                m.category
            ));
            categories.push(CategoryDecision {
                category: format!("hash_match:{}", m.category),
                score: 1.0,
                threshold: 0.0,
                decision: action as i32,
                evidence: vec![Evidence {
                    kind: "hash".into(),
                    start_s: m.frame_timestamps_s.first().copied().unwrap_or(0.0),
                    end_s: m.frame_timestamps_s.last().copied().unwrap_or(0.0),
                    detail: format!(
                        "bank `{}`, {} match, distance {}{ids}",
                        m.bank, m.kind, m.distance
                    ),
                }],
            });
        }
        for score in &s.scores {
            if CONTEXT_CATEGORIES.contains(&score.category.as_str()) {
                // Context for the policy, not a finding: reported, never a decision by itself.
                if score.score >= cfg.score_threshold {
                    reasons.push(format!("context:{}", score.category));
                }
                categories.push(CategoryDecision {
                    category: score.category.clone(),
                    score: score.score,
                    threshold: cfg.score_threshold,
                    decision: Decision::Allow as i32,
                    evidence: score.evidence.clone(),
                });
                continue;
            }
            let flagged = score.score >= cfg.score_threshold;
            let d = if flagged {
                cfg.on_flag
            } else {
                Decision::Allow
            };
            decision = decision.max(d);
            if flagged {
                reasons.push(format!("category:{}", score.category));
                rationale.push(format!(
                    "{}: {} scored {:.2} (threshold {:.2}) from the {} stage",
                    d.word(),
                    score.category,
                    score.score,
                    cfg.score_threshold,
                    s.stage
                ));
            }
            categories.push(CategoryDecision {
                category: score.category.clone(),
                score: score.score,
                threshold: cfg.score_threshold,
                decision: d as i32,
                evidence: score.evidence.clone(),
            });
        }
    }

    let received: BTreeSet<&str> = signals.iter().map(|s| s.stage.as_str()).collect();
    let missing: Vec<String> = still_missing(&signals, cfg)
        .into_iter()
        .map(str::to_string)
        .collect();
    if !missing.is_empty() && deadline_passed {
        decision = decision.max(cfg.on_timeout);
        for m in &missing {
            reasons.push(format!("timeout:{m}"));
        }
        rationale.push(format!(
            "{}: no answer from {} within {:.0} s; failing closed",
            cfg.on_timeout.word(),
            missing.join(", "),
            cfg.timeout_s
        ));
    }
    if rationale.is_empty() {
        let media = signals.iter().find_map(|s| s.media.as_ref());
        rationale.push(match media {
            Some(m) => format!(
                "allow: the clip decoded ({:.1} s, {}x{}) and no stage ({}) found a problem",
                m.duration_s,
                m.width,
                m.height,
                received.iter().copied().collect::<Vec<_>>().join(", ")
            ),
            None => "allow: no stage found a problem".to_string(),
        });
    }
    Verdict {
        clip_id: clip_id.to_string(),
        source: context.source.clone(),
        decision: decision as i32,
        audiences: Some(AudienceDecisions {
            adult: decision as i32,
            under_18: decision as i32,
            public_feed: decision as i32,
        }),
        categories,
        reasons,
        policy_version: cfg.policy_version.clone(),
        rationale: rationale.join("; "),
        revision: context.revision,
        decided_at_ms: clipguard_pipeline::now_ms(),
        stages: received.iter().map(|s| s.to_string()).collect(),
        missing_stages: if deadline_passed { missing } else { Vec::new() },
    }
}

/// True when the signals are enough to decide without waiting any longer: all expected stages
/// answered, the media could not be decoded, or a CSAM bank matched with a block (nothing
/// another stage says can change that block).
pub fn complete(signals: &[Signal], cfg: &MonitorConfig) -> bool {
    if signals.iter().any(|s| {
        s.hash_matches
            .iter()
            .any(|m| m.category == "csam" && m.action() == Decision::Block)
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
        let v = decide("c", &[media_ok()], &MonitorConfig::default(), false);
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
        let v = decide("c", &[media_ok()], &cfg, true);
        assert_eq!(v.decision(), Decision::Review);
        assert_eq!(v.missing_stages, vec!["hashmatch".to_string()]);
        assert!(v.reasons.contains(&"timeout:hashmatch".to_string()));
        let none = decide("c", &[], &cfg, true);
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
        let v = decide("c", &signals, &cfg, false);
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
        let v = decide("c", &[media_ok(), classify], &cfg, false);
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
        let v = decide("c", &[csam], &cfg, false);
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
        let v = decide("c", &[media_ok(), ncii], &cfg, false);
        assert_eq!(v.decision(), Decision::Review);
    }
}
