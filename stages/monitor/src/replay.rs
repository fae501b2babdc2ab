//! Replay: re-decide past clips from their stored signals under another policy, without
//! decoding anything again, and report what would change.

use std::collections::HashMap;

use clipguard_schemas::{Decision, Signal, Verdict};
use serde_json::{Value, json};

use crate::decide::{gather, verdict};
use crate::wait::Wait;
use clipguard_policy::{Audience, Policy};

/// One clip decided under both policies.
#[derive(Debug, Clone)]
pub struct Compared {
    pub before: Verdict,
    pub after: Verdict,
}

impl Compared {
    /// Audiences whose decision differs.
    pub fn changed_audiences(&self) -> Vec<(Audience, Decision, Decision)> {
        let (a, b) = (
            self.before.audiences.unwrap_or_default(),
            self.after.audiences.unwrap_or_default(),
        );
        Audience::ALL
            .iter()
            .filter_map(|aud| {
                let (x, y) = (aud.of(&a), aud.of(&b));
                (x != y).then(|| (*aud, word(x), word(y)))
            })
            .collect()
    }

    pub fn changed(&self) -> bool {
        self.before.decision != self.after.decision || !self.changed_audiences().is_empty()
    }
}

fn word(d: i32) -> Decision {
    Decision::try_from(d).unwrap_or(Decision::Unspecified)
}

/// The outcome of a replay.
#[derive(Debug, Clone)]
pub struct Report {
    pub active_version: String,
    pub candidate_version: String,
    pub clips: Vec<Compared>,
}

/// Groups `signals` by clip (first appearance order) and decides each clip under `active` and
/// `candidate`. Stored clips are past their deadline: a stage that never answered fails
/// closed under both policies alike.
pub fn replay(
    signals: impl IntoIterator<Item = Signal>,
    wait: &Wait,
    active: &Policy,
    candidate: &Policy,
) -> Report {
    let mut order: Vec<String> = Vec::new();
    let mut by_clip: HashMap<String, Vec<Signal>> = HashMap::new();
    for s in signals {
        if s.clip_id.is_empty() {
            continue;
        }
        let list = by_clip.entry(s.clip_id.clone()).or_insert_with(|| {
            order.push(s.clip_id.clone());
            Vec::new()
        });
        list.push(s);
    }
    let clips = order
        .iter()
        .map(|id| {
            let signals = &by_clip[id];
            let before = verdict(&gather(id, signals, wait, active, true), active);
            let after = verdict(&gather(id, signals, wait, candidate, true), candidate);
            Compared { before, after }
        })
        .collect();
    Report {
        active_version: active.version.clone(),
        candidate_version: candidate.version.clone(),
        clips,
    }
}

impl Report {
    pub fn changed(&self) -> impl Iterator<Item = &Compared> {
        self.clips.iter().filter(|c| c.changed())
    }

    /// Clips whose overall decision changed.
    pub fn changed_decisions(&self) -> usize {
        self.clips
            .iter()
            .filter(|c| c.before.decision != c.after.decision)
            .count()
    }

    /// Audience decisions (three per clip) that changed.
    pub fn changed_audience_decisions(&self) -> usize {
        self.clips.iter().map(|c| c.changed_audiences().len()).sum()
    }

    /// "allow→block 20, allow→review 3" over the overall decisions.
    pub fn transitions(&self) -> Vec<(Decision, Decision, usize)> {
        let mut counts: HashMap<(i32, i32), usize> = HashMap::new();
        for c in &self.clips {
            if c.before.decision != c.after.decision {
                *counts
                    .entry((c.before.decision, c.after.decision))
                    .or_default() += 1;
            }
        }
        let mut out: Vec<_> = counts
            .into_iter()
            .map(|((a, b), n)| (word(a), word(b), n))
            .collect();
        out.sort_by(|x, y| y.2.cmp(&x.2).then(x.0.cmp(&y.0)).then(x.1.cmp(&y.1)));
        out
    }

    /// The diff for people: one line per changed clip, then the totals.
    pub fn text(&self) -> String {
        let mut out = format!(
            "replay of {} clips from stored signals: policy {} → {}\n",
            self.clips.len(),
            self.active_version,
            self.candidate_version
        );
        for c in self.changed() {
            let audiences = c
                .changed_audiences()
                .iter()
                .map(|(a, x, y)| format!("{} {}→{}", a.name(), x.word(), y.word()))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "  {} {}: {} → {} ({audiences}); now: {}\n",
                c.after.clip_id,
                c.after.source,
                c.before.decision().word(),
                c.after.decision().word(),
                c.after.rationale
            ));
        }
        let transitions = self
            .transitions()
            .iter()
            .map(|(a, b, n)| format!("{}→{} {n}", a.word(), b.word()))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "{} of {} clips changed decision{}; {} of {} audience decisions changed\n",
            self.changed_decisions(),
            self.clips.len(),
            if transitions.is_empty() {
                String::new()
            } else {
                format!(" ({transitions})")
            },
            self.changed_audience_decisions(),
            self.clips.len() * 3
        ));
        out
    }

    /// The diff as one JSON object.
    pub fn json(&self) -> Value {
        let side = |v: &Verdict| {
            let a = v.audiences.unwrap_or_default();
            json!({
                "decision": v.decision().word(),
                "audiences": {
                    "adult": word(a.adult).word(),
                    "under_18": word(a.under_18).word(),
                    "public_feed": word(a.public_feed).word(),
                },
                "policy_version": v.policy_version,
                "rationale": v.rationale,
            })
        };
        json!({
            "clips": self.clips.len(),
            "active_policy": self.active_version,
            "candidate_policy": self.candidate_version,
            "changed_decisions": self.changed_decisions(),
            "changed_audience_decisions": self.changed_audience_decisions(),
            "changes": self.changed().map(|c| json!({
                "clip_id": c.after.clip_id,
                "source": c.after.source,
                "before": side(&c.before),
                "after": side(&c.after),
            })).collect::<Vec<_>>(),
        })
    }
}
