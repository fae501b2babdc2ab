//! The gRPC host: a stage's tonic service, `grpc.health.v1` and server reflection on one port,
//! for synchronous calls (prompt checks, re-scans, debugging with grpcurl).

use std::net::SocketAddr;

use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::error::PipelineError;

/// A running gRPC server.
#[derive(Debug)]
pub struct GrpcServer {
    pub addr: SocketAddr,
    pub health: HealthReporter,
    pub task: tokio::task::JoinHandle<()>,
}

/// Serves `routes` (the stage services named in `services`, fully qualified such as
/// `clipguard.v1.MediaStage`) plus health and reflection on `addr` until `shutdown` resolves.
/// Every named service and the server as a whole (`""`) report SERVING.
pub async fn serve(
    addr: SocketAddr,
    routes: Routes,
    services: &[&str],
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<GrpcServer, PipelineError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in services.iter().copied().chain([""]) {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(clipguard_schemas::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| PipelineError::Server(format!("reflection: {e}")))?;
    let routes = routes.add_service(health_service).add_service(reflection);
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
    let task = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        if let Err(err) = result {
            tracing::error!(error = %err, "grpc server failed");
        }
    });
    tracing::info!(addr = %bound, "grpc serving");
    Ok(GrpcServer {
        addr: bound,
        health,
        task,
    })
}
