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

impl StageMetrics {
    /// Registers the metrics of `stage` as `clipguard_<stage>_...`.
    pub fn register(registry: &mut Registry, stage: &str) -> Self {
        let m = Self {
            received: Counter::default(),
            processed: Counter::default(),
            produced: Counter::default(),
            dead_letters: Counter::default(),
            errors: Family::default(),
            dropped: Family::default(),
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
        m
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

/// Logging and tracing settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Default filter (`info`, `clipguard=debug,rdkafka=warn`, ...); `CLIPGUARD_LOG` overrides.
    pub log_level: String,
    /// OTLP/gRPC collector for traces, e.g. `http://127.0.0.1:4317`; unset = no export. Needs a
    /// build with the `otlp` feature (on by default).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of exported spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_level: "info".into(),
            otlp_endpoint: None,
            service_name: "clipguard".into(),
        }
    }
}

impl TelemetryConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if let Some(endpoint) = &self.otlp_endpoint {
            if !cfg!(feature = "otlp") {
                problems.push(
                    "telemetry.otlp_endpoint: this build has no OTLP exporter (built with `--no-default-features`; rebuild with the `otlp` feature)".into(),
                );
            } else if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                problems.push(format!(
                    "telemetry.otlp_endpoint: `{endpoint}` is not an http(s) URL"
                ));
            }
        }
    }
}

/// Keeps the trace exporter alive; flushes pending spans when dropped.
#[derive(Debug, Default)]
pub struct TracingGuard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.provider.take() {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }
}

/// Installs the global `tracing` subscriber (logs to stderr, spans to OTLP when configured).
/// Call inside the tokio runtime. Safe to call twice (the second call changes nothing).
pub fn init_tracing(cfg: &TelemetryConfig) -> Result<TracingGuard, PipelineError> {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_env("CLIPGUARD_LOG")
        .or_else(|_| EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match cfg.log_format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    #[allow(unused_mut)]
    let mut guard = TracingGuard::default();
    #[cfg(feature = "otlp")]
    let otel = match &cfg.otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry::trace::TracerProvider as _;
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| PipelineError::Server(format!("otlp exporter for {endpoint}: {e}")))?;
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(cfg.service_name.clone())
                        .build(),
                )
                .build();
            let tracer = provider.tracer("clipguard");
            guard.provider = Some(provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        None => None,
    };
    #[cfg(not(feature = "otlp"))]
    let otel: Option<tracing_subscriber::layer::Identity> = None;
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(guard)
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
