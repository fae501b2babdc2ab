//! Input blocking: a prompt is checked before anything is generated from it
//! (`clipguard.v1.Moderation/CheckPrompt`, `clipguard check-prompt`).
//!
//! The prompt goes through the same text classifier as the clip pipeline's prompts and
//! transcripts, and the monitor's engine ([`clipguard_policy::Policy::apply`]) decides for the
//! requested audience: `block` when any category's decision in that audience's column is
//! `block`; otherwise `allow`, the rationale naming what would hold the generated clip for
//! review. Every scored category is in the table with its decision in each audience column;
//! one the policy lacks is held to its `on_missing` action, as in the monitor.

use std::sync::Arc;
use std::time::Instant;

use clipguard_policy::{Applied, Audience, Policy, Scored};
use clipguard_schemas::{CategoryScore, CheckPromptResponse, Decision};

use crate::{TextClassifier, TextInput};

/// The prompt checker: a loaded text classifier and the active policy.
#[derive(Debug, Clone)]
pub struct PromptChecker {
    text: Arc<TextClassifier>,
    policy: Arc<Policy>,
    max_bytes: usize,
}

impl PromptChecker {
    pub fn new(text: Arc<TextClassifier>, policy: Arc<Policy>, max_bytes: usize) -> Self {
        Self {
            text,
            policy,
            max_bytes,
        }
    }

    /// Checks one prompt for `audience`. Never fails open: a prompt over the size limit, or
    /// one the classifier cannot score, is blocked with the reason.
    /// The policy the checks decide under.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    pub fn check(&self, prompt: &str, audience: Audience) -> CheckPromptResponse {
        let started = Instant::now();
        let response = match self.scores(prompt) {
            Ok(scores) => self.decide(self.applied(&scores).as_ref(), audience),
            Err(why) => self.refused(why, audience),
        };
        tracing::debug!(
            decision = response.decision().word(),
            micros = started.elapsed().as_micros() as u64,
            "prompt checked"
        );
        response
    }

    /// The check for every audience (`Audience::ALL` order), the prompt classified and the
    /// policy applied once: what the evaluation asks of every item.
    pub fn check_every_audience(&self, prompt: &str) -> [CheckPromptResponse; 3] {
        match self.scores(prompt) {
            Ok(scores) => {
                let applied = self.applied(&scores);
                Audience::ALL.map(|audience| self.decide(applied.as_ref(), audience))
            }
            Err(why) => Audience::ALL.map(|audience| self.refused(why.clone(), audience)),
        }
    }

    /// The text classifier's scores, or why the prompt gets no scores: `Ok(None)` for an
    /// empty prompt (allowed), `Err` for one that cannot be checked (blocked).
    fn scores(&self, prompt: &str) -> Result<Option<Vec<CategoryScore>>, String> {
        if prompt.len() > self.max_bytes {
            return Err(format!(
                "block: the prompt is {} bytes, over the {}-byte limit; it was not checked",
                prompt.len(),
                self.max_bytes
            ));
        }
        if prompt.trim().is_empty() {
            return Ok(None);
        }
        self.text
            .classify(&[TextInput {
                source: "prompt",
                text: prompt,
                start_s: 0.0,
                end_s: 0.0,
            }])
            .map(Some)
            .map_err(|e| format!("block: the prompt could not be classified ({e})"))
    }

    fn refused(&self, why: String, audience: Audience) -> CheckPromptResponse {
        CheckPromptResponse {
            decision: Decision::Block as i32,
            categories: Vec::new(),
            rationale: why,
            policy_version: self.policy.version.clone(),
            audience: audience.name().to_string(),
        }
    }

    /// The monitor's engine ([`Policy::apply`]) over the scores; `None` for an empty prompt.
    fn applied<'a>(&self, scores: &'a Option<Vec<CategoryScore>>) -> Option<Applied<'a>> {
        let scores = scores.as_ref()?;
        Some(self.policy.apply(scores.iter().map(|s| Scored {
            category: &s.category,
            score: s.score,
            evidence: &s.evidence,
            sources: &[],
        })))
    }

    /// The decision for one audience, with the rationale, the table reporting that audience's
    /// column; `None` is an empty prompt.
    fn decide(&self, applied: Option<&Applied<'_>>, audience: Audience) -> CheckPromptResponse {
        let Some(applied) = applied else {
            return CheckPromptResponse {
                decision: Decision::Allow as i32,
                rationale: "allow: the prompt is empty".into(),
                policy_version: self.policy.version.clone(),
                audience: audience.name().to_string(),
                ..Default::default()
            };
        };
        let decision = applied.columns()[audience.index()];
        let categories = applied
            .rows
            .iter()
            .map(|r| r.entry(r.columns[audience.index()]))
            .collect();
        let drivers = applied.drivers(&[audience]);
        let rationale = if drivers.is_empty() {
            format!(
                "allow for {} — no policy category reached its threshold",
                audience.name()
            )
        } else if decision == Decision::Block {
            format!("block for {} — {}", audience.name(), drivers.join("; "))
        } else {
            format!(
                "allow for {} (the generated clip will be held for review) — {}",
                audience.name(),
                drivers.join("; ")
            )
        };
        // A prompt is allowed or blocked; what a review would hold is the generated clip.
        let decision = if decision == Decision::Block {
            Decision::Block
        } else {
            Decision::Allow
        };
        CheckPromptResponse {
            decision: decision as i32,
            categories,
            rationale,
            policy_version: self.policy.version.clone(),
            audience: audience.name().to_string(),
        }
    }
}
