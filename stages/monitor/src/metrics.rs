//! The monitor's own metrics, beside the shared stage metrics of the runtime.

use clipguard_schemas::Decision;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PairLabels {
    active: String,
    shadow: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    decision: String,
    /// `complete` (every expected signal arrived, or a short-circuit) or `deadline` (decided
    /// fail-closed because signals were missing when the clip's deadline passed).
    completion: String,
}

/// The monitor's own metrics (beside the shared stage metrics).
#[derive(Debug, Clone)]
pub struct MonitorMetrics {
    verdicts: Family<VerdictLabels, Counter>,
    verdict_latency: Histogram,
    shadow_verdicts: Counter,
    shadow_disagreements: Family<PairLabels, Counter>,
    reasoning: Family<OutcomeLabels, Counter>,
    signals_dropped: Family<ReasonLabels, Counter>,
    restored: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

impl Default for MonitorMetrics {
    fn default() -> Self {
        Self {
            verdicts: Family::default(),
            // 50 ms to about 27 minutes: a clip's whole path, from submission to verdict.
            verdict_latency: Histogram::new(exponential_buckets(0.05, 2.0, 16)),
            shadow_verdicts: Counter::default(),
            shadow_disagreements: Family::default(),
            reasoning: Family::default(),
            signals_dropped: Family::default(),
            restored: Counter::default(),
        }
    }
}

impl MonitorMetrics {
    /// Registers `clipguard_monitor_verdicts_total{decision, completion}`,
    /// `..._verdict_latency_seconds` (submission to verdict), `..._shadow_verdicts_total`,
    /// `..._shadow_disagreements_total{active, shadow}`, `..._reasoning_total{outcome}` (`used`,
    /// the fallback kind, or `not_uncertain`: the cascade made no call) and `..._signals_dropped_total{reason}`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("clipguard_monitor");
        r.register(
            "verdicts",
            "Verdicts delivered, by decision and completion (complete, or deadline: decided \
             fail-closed with signals missing)",
            self.verdicts.clone(),
        );
        r.register(
            "verdict_latency_seconds",
            "Time from the clip's submission (ClipContext.submitted_at_ms) to its delivered verdict",
            self.verdict_latency.clone(),
        );
        r.register(
            "shadow_verdicts",
            "Clips decided under the shadow policy",
            self.shadow_verdicts.clone(),
        );
        r.register(
            "shadow_disagreements",
            "Clips whose shadow decision differs from the active one, by decision pair",
            self.shadow_disagreements.clone(),
        );
        r.register(
            "reasoning",
            "Reasoning backend outcomes: used, or why the policy engine decided instead",
            self.reasoning.clone(),
        );
        r.register(
            "signals_dropped",
            "Signals dropped without work, by reason (already_decided: a redelivered or late \
             signal for a clip this instance decided)",
            self.signals_dropped.clone(),
        );
        r.register(
            "verdicts_restored",
            "Clips learnt as decided from clips.verdicts (verdicts this instance published before \
             a restart, or a peer published)",
            self.restored.clone(),
        );
    }

    /// One sample in every labelled family, so that an encoder lists each of them (families
    /// without a sample are not exported): for a catalogue of what can be exported, never on a
    /// worker's own metrics.
    pub fn sample_every_family(&self) {
        self.verdict(Decision::Allow, false, 0);
        self.shadow(Decision::Allow, Decision::Block);
        self.reasoning("used");
        self.dropped("already_decided");
    }

    /// One verdict delivered; `submitted_at_ms` is the clip's submission time (0: unknown).
    pub(crate) fn verdict(&self, decision: Decision, deadline_passed: bool, submitted_at_ms: i64) {
        self.verdicts
            .get_or_create(&VerdictLabels {
                decision: decision.word().into(),
                completion: if deadline_passed {
                    "deadline"
                } else {
                    "complete"
                }
                .into(),
            })
            .inc();
        if submitted_at_ms > 0 {
            let now_ms = clipguard_pipeline::now_ms();
            // Clocks of different hosts may disagree by a little: never a negative latency.
            self.verdict_latency
                .observe((now_ms - submitted_at_ms).max(0) as f64 / 1000.0);
        }
    }

    /// One clip decided under the shadow policy as well.
    pub(crate) fn shadow(&self, active: Decision, shadow: Decision) {
        self.shadow_verdicts.inc();
        if active != shadow {
            self.shadow_disagreements
                .get_or_create(&PairLabels {
                    active: active.word().into(),
                    shadow: shadow.word().into(),
                })
                .inc();
        }
    }

    pub(crate) fn reasoning(&self, outcome: &str) {
        self.reasoning
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub(crate) fn restored(&self) {
        self.restored.inc();
    }

    pub(crate) fn dropped(&self, reason: &str) {
        self.signals_dropped
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }
}
