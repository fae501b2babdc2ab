//! The stage registry: one plain function maps a stage name to a runnable worker.

use std::sync::Arc;

use clipguard_media::MediaStage;
use clipguard_monitor::MonitorStage;
use clipguard_pipeline::PipelineError;
use clipguard_pipeline::kafka::KafkaHost;
use clipguard_pipeline::store::MediaStore;
use clipguard_pipeline::telemetry::StageMetrics;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tonic::service::Routes;

use crate::config::Config;

/// Stages this build can run, in pipeline order.
pub const NAMES: &[&str] = &["media", "monitor"];
/// Stages of the design that later work adds.
pub const PLANNED: &[&str] = &["hashmatch", "transcribe", "classify"];

type RunKafka = Box<
    dyn FnOnce(
            KafkaHost,
            StageMetrics,
            watch::Receiver<bool>,
        ) -> BoxFuture<'static, Result<(), PipelineError>>
        + Send,
>;

/// A built stage: its Kafka worker and its gRPC service.
pub struct Built {
    pub name: &'static str,
    pub run_kafka: RunKafka,
    pub routes: Routes,
    pub services: Vec<&'static str>,
}

/// Builds stage `name` from the config. Loads everything the stage needs now (GStreamer
/// plugins, models) so a broken worker fails at start with the reason.
pub fn build(name: &str, cfg: &Config) -> anyhow::Result<Built> {
    match name {
        "media" => {
            let store = MediaStore::open(&cfg.store)?;
            let stage = Arc::new(MediaStage::new(cfg.media.clone(), store)?);
            let routes = Routes::new(clipguard_media::grpc::service(stage.clone()));
            Ok(Built {
                name: clipguard_media::NAME,
                run_kafka: Box::new(move |host, metrics, shutdown| {
                    Box::pin(async move { host.run(stage, metrics, shutdown).await })
                }),
                routes,
                services: vec![clipguard_media::grpc::SERVICE],
            })
        }
        "monitor" => {
            let stage = Arc::new(MonitorStage::new(cfg.monitor.clone()));
            let routes = Routes::new(clipguard_monitor::grpc::service(stage.clone()));
            Ok(Built {
                name: clipguard_monitor::NAME,
                run_kafka: Box::new(move |host, metrics, shutdown| {
                    Box::pin(async move { host.run(stage, metrics, shutdown).await })
                }),
                routes,
                services: vec![clipguard_monitor::grpc::SERVICE],
            })
        }
        other if PLANNED.contains(&other) => anyhow::bail!(
            "stage `{other}` is part of the design but not in this build yet (available: {})",
            NAMES.join(", ")
        ),
        other => anyhow::bail!("unknown stage `{other}` (available: {})", NAMES.join(", ")),
    }
}
