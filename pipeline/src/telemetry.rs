//! Metrics, logs and the metrics endpoint.
//!
//! Every stage gets the same [`StageMetrics`] under `clipguard_<stage>_`: received, processed,
//! produced, dead letters, errors by `error_type`, a processing-seconds histogram, in-flight and
//! consumer lag per partition. Labels are bounded: error types are a fixed set per stage, and no
//! label ever carries a clip id, a hash or media.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::error::PipelineError;

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error_type: String,
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
    /// Messages read from the input topic.
    pub received: Counter,
    /// Messages whose outputs were all acknowledged.
    pub processed: Counter,
    /// Records produced (outputs, signals, dead letters).
    pub produced: Counter,
    /// Messages sent to `clips.dlq`.
    pub dead_letters: Counter,
    /// Failed attempts and bad inputs, by kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Wall-clock time from receipt to acknowledged outputs.
    pub processing_seconds: Histogram,
    /// Messages being processed now.
    pub in_flight: Gauge,
    /// Consumer lag per partition, from librdkafka statistics.
    pub lag: Family<PartitionLabels, Gauge>,
}

impl StageMetrics {
    /// Registers the metrics of `stage` as `clipguard_<stage>_...`.
    pub fn register(registry: &mut Registry, stage: &str) -> Self {
        let m = Self {
            received: Counter::default(),
            processed: Counter::default(),
            produced: Counter::default(),
            dead_letters: Counter::default(),
            errors: Family::default(),
            processing_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            in_flight: Gauge::default(),
            lag: Family::default(),
        };
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
        m
    }

    /// A metrics set attached to no registry (in-process use where nobody scrapes).
    pub fn detached() -> Self {
        Self::register(&mut Registry::default(), "detached")
    }

    pub fn error(&self, error_type: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                error_type: error_type.to_string(),
            })
            .inc();
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Default filter (`info`, `clipguard=debug,rdkafka=warn`, ...); `CLIPGUARD_LOG` overrides.
    pub log_level: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_level: "info".into(),
        }
    }
}

/// Installs the global `tracing` subscriber (logs to stderr). Safe to call twice.
pub fn init_tracing(cfg: &TelemetryConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CLIPGUARD_LOG")
        .or_else(|_| EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Renders a registry in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// Serves `GET /metrics` until `shutdown` resolves. Returns the bound address.
pub async fn serve_metrics(
    addr: SocketAddr,
    registry: Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, PipelineError> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    render(&registry),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| PipelineError::Server(format!("metrics listener on {addr}: {e}")))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %err, "metrics server failed");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

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
