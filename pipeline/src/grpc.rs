//! The gRPC host: a stage's tonic service, `grpc.health.v1` and server reflection on one port,
//! for synchronous calls (prompt checks, re-scans, debugging with grpcurl), in plain text, TLS or
//! mutual TLS (`[grpc]` in the config).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tonic::service::Routes;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::error::PipelineError;
use crate::metrics::StageMetrics;

/// How the gRPC server secures its connections. With neither file it speaks plain HTTP/2 (for
/// a service mesh that terminates TLS, or loopback); with a certificate and key, TLS; with a
/// client CA as well, mutual TLS: a client must present a certificate that CA signed, or its
/// handshake is refused before any call. Paths only: key material is read from files (mounted
/// Secrets), never passed as an argument or a config value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrpcConfig {
    /// The server's certificate chain, PEM.
    pub tls_cert: Option<PathBuf>,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that sign client certificates; set = mutual TLS, required.
    pub client_ca: Option<PathBuf>,
}

impl GrpcConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => problems.push("grpc.tls_key: needed with grpc.tls_cert".into()),
            (None, Some(_)) => problems.push("grpc.tls_cert: needed with grpc.tls_key".into()),
            _ => {}
        }
        if self.client_ca.is_some() && self.tls_cert.is_none() {
            problems.push(
                "grpc.client_ca: mutual TLS needs the server's own grpc.tls_cert and grpc.tls_key"
                    .into(),
            );
        }
        for (key, path) in [
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
            ("client_ca", &self.client_ca),
        ] {
            if let Some(path) = path
                && let Err(e) = std::fs::metadata(path)
            {
                problems.push(format!("grpc.{key}: {}: {e}", path.display()));
            }
        }
    }

    /// Whether the server speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// The server's TLS settings, or `None` for plain text.
    pub fn server_tls(&self) -> Result<Option<ServerTlsConfig>, PipelineError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |key: &str, path: &Path| {
            std::fs::read(path).map_err(|e| {
                PipelineError::Config(vec![format!("grpc.{key}: {}: {e}", path.display())])
            })
        };
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
            read("tls_cert", cert)?,
            read("tls_key", key)?,
        ));
        if let Some(ca) = &self.client_ca {
            tls = tls
                .client_ca_root(Certificate::from_pem(read("client_ca", ca)?))
                .client_auth_optional(false);
        }
        Ok(Some(tls))
    }
}

/// A running gRPC server.
#[derive(Debug)]
pub struct GrpcServer {
    pub addr: SocketAddr,
    pub health: HealthReporter,
    pub task: tokio::task::JoinHandle<()>,
}

/// Serves `routes` (the stage services named in `services`, fully qualified such as
/// `clipguard.v1.MediaStage`) plus health and reflection on `addr` until `shutdown` resolves.
/// Every named service and the server as a whole (`""`) report SERVING. `security` says whether
/// it speaks TLS and asks clients for certificates.
pub async fn serve(
    addr: SocketAddr,
    routes: Routes,
    services: &[&str],
    security: &GrpcConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<GrpcServer, PipelineError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in services.iter().copied().chain([""]) {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    // Both reflection versions (v1alpha for grpcio-reflection and older grpcurl), each file
    // served with its imports.
    // Lists what this server serves.
    let served: Vec<&str> = services
        .iter()
        .copied()
        .chain([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ])
        .collect();
    let descriptors = crate::reflection::Descriptors::from_sets(&[
        clipguard_schemas::v1::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ])?
    .listing(&served);
    let reflection = crate::reflection::Reflection::new(descriptors);
    let routes = routes
        .add_service(health_service)
        .add_service(reflection.v1())
        .add_service(reflection.v1alpha());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| PipelineError::Server(format!("grpc listener on {addr}: {e}")))?;
    let bound = listener.local_addr()?;
    // Without TCP_NODELAY on accepted connections, small responses wait for the peer's delayed
    // ACK (~40 ms on Linux) before they leave: tonic sets it only on listeners it binds itself.
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |conn| {
            conn.and_then(|s| {
                s.set_nodelay(true)?;
                Ok(s)
            })
        },
    );
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = security.server_tls()? {
        // A bad key or certificate fails here, at start, not at the first handshake.
        server = server
            .tls_config(tls)
            .map_err(|e| PipelineError::Config(vec![format!("grpc: TLS settings: {e}")]))?;
    }
    let task = tokio::spawn(async move {
        let result = server
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        if let Err(err) = result {
            tracing::error!(error = %err, "grpc server failed");
        }
    });
    tracing::info!(
        addr = %bound,
        tls = security.tls(),
        mutual_tls = security.client_ca.is_some(),
        "grpc serving"
    );
    Ok(GrpcServer {
        addr: bound,
        health,
        task,
    })
}

/// An rpc's answer, stamped as the other hosts stamp a stage's signals
/// ([`crate::stage::stamp`]): one call is one attempt.
pub trait Answer {
    fn stamp(&mut self, _stage: &str) {}
}

impl Answer for clipguard_schemas::Signal {
    fn stamp(&mut self, stage: &str) {
        if self.stage == stage {
            let clip_id = self.clip_id.clone();
            crate::stage::stamp_signal(self, &clip_id, 1);
        }
    }
}

impl Answer for clipguard_schemas::MediaResult {
    fn stamp(&mut self, stage: &str) {
        if let Some(signal) = self.signal.as_mut() {
            signal.stamp(stage);
        }
    }
}

impl Answer for clipguard_schemas::Verdict {}

impl Answer for clipguard_schemas::ReleaseResult {}

impl Answer for clipguard_schemas::LookupResponse {}

impl Answer for clipguard_schemas::ReportReply {}

impl Answer for clipguard_schemas::AppealReply {}

/// A stage's synchronous call: what a gRPC caller sends and what it gets back. Each stage
/// implements it once; [`Served`] is the one adapter that puts it behind its generated service.
pub trait Rpc: crate::Stage {
    /// The generated service it answers (`clipguard_schemas::rpc::Media`, …).
    type Service: clipguard_schemas::rpc::Service<Reply: Answer>;

    fn answer(
        &self,
        request: Request<Self>,
    ) -> impl std::future::Future<Output = Result<Reply<Self>, crate::StageError>> + Send;
}

/// What a stage's service takes.
pub type Request<S> = <<S as Rpc>::Service as clipguard_schemas::rpc::Service>::Request;
/// What a stage's service gives.
pub type Reply<S> = <<S as Rpc>::Service as clipguard_schemas::rpc::Service>::Reply;

/// A stage and its shared metrics as a gRPC service: wrap it in the stage's generated server
/// (`MediaStageServer::new(Served::new(stage, metrics))`); every call goes through [`call`].
#[derive(Debug)]
pub struct Served<S> {
    stage: std::sync::Arc<S>,
    metrics: StageMetrics,
}

impl<S> Served<S> {
    pub fn new(stage: std::sync::Arc<S>, metrics: StageMetrics) -> Self {
        Self { stage, metrics }
    }
}

impl<S: Rpc + Send + Sync + 'static> clipguard_schemas::rpc::Unary<S::Service> for Served<S> {
    async fn unary(
        &self,
        request: tonic::Request<Request<S>>,
    ) -> Result<tonic::Response<Reply<S>>, tonic::Status> {
        let stage = self.stage.as_ref();
        call(stage, &self.metrics, stage.answer(request.into_inner())).await
    }
}

/// The fully qualified name a generated server serves (`clipguard.v1.MediaStage`), for health
/// and reflection.
pub fn name_of<S: tonic::server::NamedService>(_: &S) -> &'static str {
    S::NAME
}

/// One gRPC call into `stage`, contained as every host's attempt is
/// ([`crate::stage::contained`]: a panic or a call past [`crate::Stage::attempt_timeout`] is
/// an internal error), its error turned into the status its domain says (bad input
/// `INVALID_ARGUMENT`, a failing dependency `UNAVAILABLE`, a bug `INTERNAL`), counted in the
/// stage's shared metrics as the Kafka host counts a message. Every stage's service answers
/// through it.
pub async fn call<S: crate::Stage, T: Answer>(
    stage: &S,
    metrics: &StageMetrics,
    work: impl std::future::Future<Output = Result<T, crate::StageError>>,
) -> Result<tonic::Response<T>, tonic::Status> {
    metrics.received.inc();
    metrics.in_flight.inc();
    let started = std::time::Instant::now();
    let outcome = crate::stage::contained(stage.attempt_timeout(), work).await;
    metrics.in_flight.dec();
    metrics
        .processing_seconds
        .observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok(mut answer) => {
            metrics.processed.inc();
            answer.stamp(stage.name());
            Ok(tonic::Response::new(answer))
        }
        Err(e) => {
            metrics.error(e.kind);
            tracing::warn!(stage = stage.name(), kind = e.kind, error = %e, "grpc call failed");
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use clipguard_schemas::Signal;
    use tonic::Code;

    use super::{Answer, call};
    use crate::metrics::StageMetrics;
    use crate::telemetry::render;
    use crate::{ProcessCtx, Record, Stage, StageError};

    impl Answer for u32 {}

    /// A stage whose calls take at most 200 ms.
    struct Quick;

    impl Stage for Quick {
        type Input = Signal;
        type Output = Vec<Record>;

        fn name(&self) -> &'static str {
            "quick"
        }

        fn attempt_timeout(&self) -> Duration {
            Duration::from_millis(200)
        }

        async fn process(&self, _: Signal, _: &ProcessCtx) -> Result<Vec<Record>, StageError> {
            Ok(Vec::new())
        }
    }

    async fn panics() -> Result<u32, StageError> {
        panic!("boom")
    }

    /// The containment of every host's attempt, on the gRPC host: a panic and an overlong call
    /// are internal errors with their kind, an error's domain picks the status.
    #[tokio::test]
    async fn a_panic_or_an_overlong_call_is_contained_as_every_host_contains_it() {
        let mut registry = prometheus_client::registry::Registry::default();
        let m = StageMetrics::register(&mut registry, "quick");
        let e = call(&Quick, &m, panics()).await.unwrap_err();
        assert_eq!(e.code(), Code::Internal);
        assert_eq!(e.message(), "panic: stage panicked: boom");

        let slow = async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(1)
        };
        let started = std::time::Instant::now();
        let e = call(&Quick, &m, slow).await.unwrap_err();
        assert_eq!(e.code(), Code::DeadlineExceeded);
        assert!(e.message().starts_with("attempt_timeout:"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));

        let bad = async { Err::<u32, _>(StageError::input("bad_input", "no frames")) };
        let e = call(&Quick, &m, bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let down = async { Err::<u32, _>(StageError::external("store_down", "try later")) };
        assert_eq!(
            call(&Quick, &m, down).await.unwrap_err().code(),
            Code::Unavailable
        );

        assert_eq!(
            call(&Quick, &m, async { Ok(7) })
                .await
                .unwrap()
                .into_inner(),
            7
        );

        // Counted as the Kafka host counts: every call received, the good one processed, each
        // failure by its kind, none left in flight.
        let text = render(&registry);
        for line in [
            "clipguard_quick_received_total 5",
            "clipguard_quick_processed_total 1",
            "clipguard_quick_errors_total{error_type=\"panic\"} 1",
            "clipguard_quick_errors_total{error_type=\"attempt_timeout\"} 1",
            "clipguard_quick_errors_total{error_type=\"bad_input\"} 1",
            "clipguard_quick_in_flight 0",
            "clipguard_quick_processing_seconds_count 5",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
