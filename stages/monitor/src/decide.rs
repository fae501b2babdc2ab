//! The decision: a pure function from a clip's signals and a policy to its verdict, the same
//! whether the signals arrived over Kafka, gRPC, in-process or from a replay.
//!
//! Two steps. [`gather`] reads the signals once into [`Findings`]: the highest score of each
//! category with the evidence behind it (frame times, transcript spans, bank ids), and the
//! findings that decide the same for every audience (hash matches, failed or missing stages).
//! [`verdict`] applies a [`Policy`] to those findings: one decision per audience, the
//! per-category table, and a rationale a reviewer can read at a glance. Re-deciding under
//! another policy (shadow, replay) re-runs only the second step.

mod findings;
mod verdict;

use clipguard_policy::{self as policy, Policy};
use clipguard_schemas::{Signal, Verdict};

pub use findings::{Findings, Hard, Scored, complete, gather};
pub use verdict::verdict;

use crate::wait::Wait;

/// Hash-bank categories of sexual content involving minors: any match blocks in every audience,
/// whatever action the bank was imported with, and the monitor decides without waiting.
pub const CSAM_BANK_CATEGORIES: &[&str] = &[policy::CSAM, policy::MINORS_SEXUAL];

/// The media `container` of an input check's uploads (`Moderation.CheckInput`): a "clip" whose
/// frames are uploaded images, their positions as times; rationales name images, not seconds.
pub const UPLOADS: &str = "uploaded images";

/// Engine name of the deterministic policy engine.
pub const POLICY_ENGINE: &str = "policy";

/// Fuses `signals` (at most one per stage; later duplicates are ignored) into a verdict under
/// `policy`. `deadline_passed` means the monitor stopped waiting: missing stages fail closed.
pub fn decide(
    clip_id: &str,
    signals: &[Signal],
    wait: &Wait,
    policy: &Policy,
    deadline_passed: bool,
) -> Verdict {
    verdict(
        &gather(clip_id, signals, wait, policy, deadline_passed),
        policy,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clipguard_schemas::{ClipContext, Decision, Evidence, MediaInfo, StageError};

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
            body: Some(clipguard_schemas::signal::Body::Media(MediaInfo {
                duration_s: 2.0,
                width: 64,
                height: 48,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn media_err(kind: &str) -> Signal {
        Signal {
            error: Some(StageError {
                kind: kind.into(),
                message: "bad".into(),
            }),
            body: None,
            reasons: vec![format!("media_error:{kind}")],
            ..media_ok()
        }
    }

    #[test]
    fn good_media_is_allowed_with_a_rationale() {
        let v = decide("c", &[media_ok()], &Wait::default(), &pol(), false);
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
            &Wait::default(),
            &pol(),
            false,
        );
        assert_eq!(v.decision(), Decision::Block);
        assert_eq!(v.reasons, vec!["media_error:truncated".to_string()]);
        assert!(complete(&[media_err("truncated")], &Wait::default()));
    }

    #[test]
    fn missing_stages_at_the_deadline_are_never_a_silent_allow() {
        let cfg = Wait::of(&["media", "hashmatch"]).unwrap();
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
        let cfg = Wait::of(&["media", "transcribe", "classify_transcript"]).unwrap();
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
        let cfg = Wait::of(&["media", "classify"]).unwrap();
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
            &Wait::default(),
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
        let cfg = Wait::default();
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
    use clipguard_schemas::{
        AudienceContext, CategoryScore, ClipContext, Decision, Evidence, HashMatch,
    };

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

    fn cfg() -> Wait {
        Wait::of(&["media", "classify"]).unwrap()
    }

    /// A face the classify stage recognised as enrolled `person` decides by the context's
    /// consented list; the evidence has the face's time, box and distance; a recognised person
    /// with sexual content is `sexual_likeness`.
    #[test]
    fn a_recognised_face_needs_the_person_on_the_consented_list() {
        let recognised = |scores: &[(&str, f32)]| {
            let mut s = signal("classify", scores);
            s.likeness_matches = vec![clipguard_schemas::LikenessMatch {
                person_id: "alice".into(),
                distance: 0.31,
                max_distance: 0.5,
                frame_timestamps_s: vec![1.5, 2.0],
                x: 10.0,
                y: 20.0,
                width: 80.0,
                height: 90.0,
                registry_version: 3,
            }];
            s
        };
        let p = Policy::default_policy();
        let v = decide("c", &[media(&[], &[]), recognised(&[])], &cfg(), &p, false);
        let a = v.audiences.unwrap();
        assert_eq!(
            [a.adult, a.under_18, a.public_feed],
            [
                Decision::Review as i32,
                Decision::Block as i32,
                Decision::Block as i32
            ],
            "{}",
            v.rationale
        );
        let c = v
            .categories
            .iter()
            .find(|c| c.category == "likeness_without_consent")
            .unwrap();
        let e = &c.evidence[0];
        assert_eq!((e.kind.as_str(), e.start_s, e.end_s), ("face", 1.5, 2.0));
        assert!(
            e.detail.contains("alice") && e.detail.contains("0.31") && e.detail.contains("x 10"),
            "{}",
            e.detail
        );
        let v = decide(
            "c",
            &[media(&[], &["alice"]), recognised(&[])],
            &cfg(),
            &p,
            false,
        );
        assert_eq!(v.decision(), Decision::Allow, "{}", v.rationale);
        let c = v
            .categories
            .iter()
            .find(|c| c.category == "likeness_without_consent")
            .unwrap();
        assert!(c.evidence[0].detail.contains("consent holds"));
        let v = decide(
            "c",
            &[media(&[], &["alice"]), recognised(&[("sexual", 0.6)])],
            &cfg(),
            &p,
            false,
        );
        assert!(
            v.categories
                .iter()
                .any(|c| c.category == "sexual_likeness" && c.decision() == Decision::Block),
            "{}",
            v.rationale
        );
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
        let cfg = Wait::of(&["media", "classify_transcript"]).unwrap();
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
        let cfg = Wait::default(); // expects five stages; only one has answered
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
