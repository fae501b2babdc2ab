//! The monitor's own metrics, beside the shared stage metrics of the runtime.

use clipguard_schemas::Decision;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

/// The monitor's own metrics (beside the shared stage metrics).
#[derive(Debug, Clone, Default)]
pub struct MonitorMetrics {
    shadow_verdicts: Counter,
    shadow_disagreements: Family<PairLabels, Counter>,
    reasoning: Family<OutcomeLabels, Counter>,
    signals_dropped: Family<ReasonLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

impl MonitorMetrics {
    /// Registers `clipguard_monitor_shadow_verdicts_total`,
    /// `..._shadow_disagreements_total{active, shadow}`, `..._reasoning_total{outcome}` (`used` or
    /// the fallback kind) and `..._signals_dropped_total{reason}`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("clipguard_monitor");
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

    pub(crate) fn dropped(&self, reason: &str) {
        self.signals_dropped
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }
}
