//! clipguard's pipeline runtime: the [`Stage`] trait and the hosts that run a stage.
//!
//! A stage is plain Rust: typed input (a prost message), typed output ([`Outputs`]: records for
//! one or more topics), immutable settings and resettable state. The runtime hosts any stage:
//!
//! - [`kafka::KafkaHost`]: the production data plane. One consumer group per stage, bounded
//!   in-flight work, idempotent producer, offsets committed only up to the lowest offset whose
//!   outputs are all acknowledged ([`offsets::OffsetTracker`]), poison input to `clips.dlq` after
//!   bounded retries plus a fail-closed error signal, graceful drain on SIGTERM.
//! - [`grpc`]: a stage's tonic service plus `grpc.health.v1` and server reflection.
//! - In-process: call [`Stage::process`] directly (the `scan` command and tests), or
//!   [`embedded::EmbeddedBroker`] (librdkafka's mock cluster) to run every stage on the Kafka code
//!   path inside one process (the `run` command).
//!
//! Invariants the hosts keep: no message over [`topics::MAX_MESSAGE_BYTES`] is produced; an
//! offset is committed only when every record produced for it and for every lower offset of its
//! partition is acknowledged; every input message ends as outputs or as a dead letter plus an
//! error signal, never as nothing.

pub mod config;
pub mod edges;
pub mod embedded;
pub mod error;
pub mod graph;
pub mod grpc;
pub mod inproc;
pub mod kafka;
pub mod metrics;
pub mod offsets;
pub mod reflection;
pub mod stage;
pub mod store;
pub mod telemetry;
/// The shared telemetry check every stage crate's tests run (feature `testing`: test builds only).
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;
pub mod trace;

pub use error::{ErrorDomain, Failure, PipelineError, StageError};
pub use stage::{Emitter, Outputs, ProcessCtx, Record, Stage};

/// Milliseconds since the Unix epoch, for message timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Resolves when the stop flag turns true.
pub fn stopped(
    rx: &tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Resolves on SIGTERM or Ctrl-C: a worker then drains (see [`kafka::KafkaHost::run`]).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
