//! The telemetry every stage emits, declared once: [`StageMetrics`] under `clipguard_<stage>_`:
//! received, processed, produced, dead letters, errors by `error_type`, work dropped by
//! `reason`, a processing-seconds histogram, in-flight and consumer lag per partition. Labels
//! are bounded: error types and reasons are a fixed set per stage, and no label ever carries a
//! clip id, a hash or media.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error_type: String,
}

/// Labels of the dropped-work counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Labels of the lag gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

/// The telemetry every stage emits, whatever it does.
#[derive(Clone, Debug)]
pub struct StageMetrics {
    /// Messages read from the input topic, and rpc calls into the stage.
    pub received: Counter,
    /// Messages whose outputs were all acknowledged, and rpc calls answered.
    pub processed: Counter,
    /// Records produced (outputs, signals, dead letters).
    pub produced: Counter,
    /// Messages sent to `clips.dlq`.
    pub dead_letters: Counter,
    /// Failed attempts and bad inputs, by kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Work given up without outputs, by reason (`drain`: abandoned on shutdown, redone by the
    /// partition's next owner).
    pub dropped: Family<ReasonLabels, Counter>,
    /// Wall-clock time from receipt to acknowledged outputs.
    pub processing_seconds: Histogram,
    /// Messages being processed now.
    pub in_flight: Gauge,
    /// Consumer lag per partition, from librdkafka statistics.
    pub lag: Family<PartitionLabels, Gauge>,
}

impl Default for StageMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl StageMetrics {
    /// Registers the metrics of `stage` as `clipguard_<stage>_...`.
    pub fn register(registry: &mut Registry, stage: &str) -> Self {
        let m = Self::new();
        m.register_in(registry, stage);
        m
    }

    /// A set attached to no registry yet ([`StageMetrics::register_in`] attaches it): the
    /// registry builds a stage's gRPC services, which count into it, before the worker's
    /// registry exists.
    pub fn new() -> Self {
        Self {
            received: Counter::default(),
            processed: Counter::default(),
            produced: Counter::default(),
            dead_letters: Counter::default(),
            errors: Family::default(),
            dropped: Family::default(),
            processing_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            in_flight: Gauge::default(),
            lag: Family::default(),
        }
    }

    /// Registers this set as `clipguard_<stage>_...` in `registry`.
    pub fn register_in(&self, registry: &mut Registry, stage: &str) {
        let m = self;
        let r = registry.sub_registry_with_prefix(format!("clipguard_{stage}"));
        r.register(
            "received",
            "Messages read from the input topic",
            m.received.clone(),
        );
        r.register(
            "processed",
            "Messages whose outputs were acknowledged",
            m.processed.clone(),
        );
        r.register("produced", "Records produced", m.produced.clone());
        r.register(
            "dead_letters",
            "Messages sent to the dead-letter topic",
            m.dead_letters.clone(),
        );
        r.register(
            "errors",
            "Failed attempts and bad inputs by type",
            m.errors.clone(),
        );
        r.register(
            "dropped",
            "Work given up without outputs, by reason",
            m.dropped.clone(),
        );
        r.register(
            "processing_seconds",
            "Time from receipt to acknowledged outputs",
            m.processing_seconds.clone(),
        );
        r.register("in_flight", "Messages being processed", m.in_flight.clone());
        r.register(
            "consumer_lag",
            "Consumer lag in messages per partition",
            m.lag.clone(),
        );
    }

    /// A metrics set attached to no registry (in-process use where nobody scrapes).
    pub fn detached() -> Self {
        Self::register(&mut Registry::default(), "detached")
    }

    pub fn drop_work(&self, reason: &str) {
        self.dropped
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn error(&self, error_type: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                error_type: error_type.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::render;

    #[test]
    fn stage_metrics_use_the_stage_prefix() {
        let mut registry = Registry::default();
        let m = StageMetrics::register(&mut registry, "media");
        m.received.inc();
        m.error("truncated");
        m.processing_seconds.observe(0.2);
        let text = render(&registry);
        for name in [
            "clipguard_media_received_total 1",
            "clipguard_media_errors_total{error_type=\"truncated\"} 1",
            "clipguard_media_processing_seconds_bucket",
            "clipguard_media_in_flight",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
