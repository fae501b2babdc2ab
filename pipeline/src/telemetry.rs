//! Logs, traces and the metrics endpoint. The metrics themselves are declared in
//! [`crate::metrics`].

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::error::PipelineError;

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
    /// For an `https://` collector: the CA certificates (PEM) that sign its certificate. A
    /// collector with a public certificate: the system's bundle,
    /// `/etc/ssl/certs/ca-certificates.crt`.
    pub otlp_ca: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM) for a collector that asks for mutual TLS.
    pub otlp_client_cert: Option<std::path::PathBuf>,
    pub otlp_client_key: Option<std::path::PathBuf>,
    /// `service.name` of exported spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_level: "info".into(),
            otlp_endpoint: None,
            otlp_ca: None,
            otlp_client_cert: None,
            otlp_client_key: None,
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
            } else if endpoint.starts_with("https://") && self.otlp_ca.is_none() {
                problems.push(format!(
                    "telemetry.otlp_ca: `{endpoint}` is https: name the CA certificates that sign \
                     the collector's (the system's: /etc/ssl/certs/ca-certificates.crt)"
                ));
            }
        }
        let https = self
            .otlp_endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("https://"));
        if !https
            && (self.otlp_ca.is_some()
                || self.otlp_client_cert.is_some()
                || self.otlp_client_key.is_some())
        {
            problems.push(
                "telemetry.otlp_ca, otlp_client_cert, otlp_client_key: TLS settings need an \
                 https:// telemetry.otlp_endpoint (over http:// they would be ignored and traces \
                 sent in plain text)"
                    .into(),
            );
        }
        if self.otlp_client_cert.is_some() != self.otlp_client_key.is_some() {
            problems.push(
                "telemetry.otlp_client_cert, telemetry.otlp_client_key: give both or neither"
                    .into(),
            );
        }
        for (key, path) in [
            ("otlp_ca", &self.otlp_ca),
            ("otlp_client_cert", &self.otlp_client_cert),
            ("otlp_client_key", &self.otlp_client_key),
        ] {
            if let Some(path) = path
                && let Err(e) = std::fs::metadata(path)
            {
                problems.push(format!("telemetry.{key}: {}: {e}", path.display()));
            }
        }
    }

    /// The TLS settings for an `https://` collector.
    #[cfg(feature = "otlp")]
    fn otlp_tls(&self) -> Result<Option<tonic::transport::ClientTlsConfig>, PipelineError> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let Some(ca) = &self.otlp_ca else {
            return Ok(None);
        };
        let read = |key: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                PipelineError::Config(vec![format!("telemetry.{key}: {}: {e}", path.display())])
            })
        };
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("otlp_ca", ca)?));
        if let (Some(cert), Some(key)) = (&self.otlp_client_cert, &self.otlp_client_key) {
            tls = tls.identity(Identity::from_pem(
                read("otlp_client_cert", cert)?,
                read("otlp_client_key", key)?,
            ));
        }
        Ok(Some(tls))
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
            use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint);
            if let Some(tls) = cfg.otlp_tls()? {
                builder = builder.with_tls_config(tls);
            }
            let exporter = builder
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
