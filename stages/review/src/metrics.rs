//! The review stage's own metrics (beside the shared stage metrics).
//!
//! Decisions, times to decision and appeal outcomes are counted once each, by the worker that
//! publishes the decision (from its enforcement record); sum them over workers. The open-case
//! gauge is read from the shared database: every worker reports the same value, so take the
//! `max` over workers, never the sum.

use clipguard_schemas::{Decision, Enforcement};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::db::QueueCount;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    category: String,
    audience: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    /// What opened the case: `verdict`, `report`, `appeal`.
    kind: String,
    /// The strictest decision across audiences.
    decision: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

fn time_to_decision() -> Histogram {
    // 10 s to about 45 days.
    Histogram::new(exponential_buckets(10.0, 3.0, 13))
}

/// The review stage's metrics.
#[derive(Debug, Clone)]
pub struct ReviewMetrics {
    open_cases: Family<QueueLabels, Gauge>,
    decisions: Family<DecisionLabels, Counter>,
    time_to_decision: Family<KindLabels, Histogram, fn() -> Histogram>,
    appeals_decided: Family<OutcomeLabels, Counter>,
    received: Family<KindLabels, Counter>,
}

impl Default for ReviewMetrics {
    fn default() -> Self {
        Self {
            open_cases: Family::default(),
            decisions: Family::default(),
            time_to_decision: Family::new_with_constructor(time_to_decision),
            appeals_decided: Family::default(),
            received: Family::default(),
        }
    }
}

impl ReviewMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("clipguard_review");
        r.register(
            "open_cases",
            "Cases waiting for a reviewer, by queue (category, audience), read from the cases \
             database (every worker reports the same: take the max)",
            self.open_cases.clone(),
        );
        r.register(
            "decisions",
            "Reviewers' decisions published, by what opened the case and the strictest decision",
            self.decisions.clone(),
        );
        r.register(
            "time_to_decision_seconds",
            "Time from a case opening to its decision, by what opened the case",
            self.time_to_decision.clone(),
        );
        r.register(
            "appeals_decided",
            "Appeals decided, by outcome: overturned (the clip's own audience got another \
             decision) or upheld",
            self.appeals_decided.clone(),
        );
        r.register(
            "received",
            "User reports and appeals taken by this worker",
            self.received.clone(),
        );
    }

    /// Sets the open-case gauge to `queues` (queues not listed drop to 0).
    pub fn queues(&self, queues: &[QueueCount]) {
        self.open_cases.clear();
        for q in queues {
            self.open_cases
                .get_or_create(&QueueLabels {
                    category: q.category.clone(),
                    audience: q.audience.clone(),
                })
                .set(q.open);
        }
    }

    /// A decision that went out.
    pub fn decided(&self, e: &Enforcement) {
        let kind = if e.case_kind.is_empty() {
            "verdict".to_string()
        } else {
            e.case_kind.clone()
        };
        self.decisions
            .get_or_create(&DecisionLabels {
                kind: kind.clone(),
                decision: Decision::try_from(e.decision)
                    .unwrap_or_default()
                    .word()
                    .to_string(),
            })
            .inc();
        if e.case_opened_at_ms > 0 && e.decided_at_ms >= e.case_opened_at_ms {
            self.time_to_decision
                .get_or_create(&KindLabels { kind: kind.clone() })
                .observe((e.decided_at_ms - e.case_opened_at_ms) as f64 / 1000.0);
        }
        if kind == "appeal" {
            let outcome = if e.overturned { "overturned" } else { "upheld" };
            self.appeals_decided
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.into(),
                })
                .inc();
        }
    }

    /// A report or appeal taken.
    pub fn received(&self, kind: &str) {
        self.received
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// One sample in every labelled family, so that encoding lists them all (the metrics
    /// catalogue dashboards and alerts are checked against).
    pub fn sample_every_family(&self) {
        self.queues(&[QueueCount {
            category: "catalogue".into(),
            audience: "catalogue".into(),
            open: 0,
        }]);
        self.decided(&Enforcement {
            case_kind: "appeal".into(),
            case_opened_at_ms: 1,
            decided_at_ms: 1,
            ..Default::default()
        });
        self.received("report");
    }
}
