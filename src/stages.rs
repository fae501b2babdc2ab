//! The stage registry: one plain function maps a stage name to a runnable worker.

use std::sync::Arc;

use clipguard_classify::prompt::PromptChecker;
use clipguard_classify::stage::{ClassifyStage, ClassifyTranscriptStage};
use clipguard_hashmatch::stage::HashmatchStage;
use clipguard_media::MediaStage;
use clipguard_monitor::MonitorStage;
use clipguard_pipeline::PipelineError;
use clipguard_pipeline::kafka::KafkaHost;
use clipguard_pipeline::store::MediaStore;
use clipguard_pipeline::telemetry::StageMetrics;
use clipguard_transcribe::TranscribeStage;
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tonic::service::Routes;

use crate::config::Config;

/// Stages this build can run, in pipeline order.
pub const NAMES: &[&str] = &[
    "media",
    "hashmatch",
    "transcribe",
    "classify",
    "classify_transcript",
    "monitor",
];

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
    /// Registers the stage's own metrics beside the shared ones.
    pub register_metrics: Box<dyn FnOnce(&mut Registry) + Send>,
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
                register_metrics: Box::new(|_| {}),
                name: clipguard_media::NAME,
                run_kafka: Box::new(move |host, metrics, shutdown| {
                    Box::pin(async move { host.run(stage, metrics, shutdown).await })
                }),
                routes,
                services: vec![clipguard_media::grpc::SERVICE],
            })
        }
        "hashmatch" => {
            let stage = Arc::new(HashmatchStage::new(cfg.hashmatch.clone())?);
            let routes = Routes::new(clipguard_hashmatch::grpc::service(stage.clone()));
            Ok(Built {
                register_metrics: Box::new(|_| {}),
                name: clipguard_hashmatch::stage::NAME,
                run_kafka: Box::new(move |host, metrics, shutdown| {
                    Box::pin(async move { host.run(stage, metrics, shutdown).await })
                }),
                routes,
                services: vec![clipguard_hashmatch::grpc::SERVICE],
            })
        }
        "transcribe" => {
            let store = MediaStore::open(&cfg.store)?;
            let stage = Arc::new(TranscribeStage::new(cfg.transcribe.clone(), store)?);
            let routes = Routes::new(clipguard_transcribe::grpc::service(stage.clone()));
            Ok(Built {
                register_metrics: Box::new(|_| {}),
                name: clipguard_transcribe::NAME,
                run_kafka: Box::new(move |host, metrics, shutdown| {
                    Box::pin(async move { host.run(stage, metrics, shutdown).await })
                }),
                routes,
                services: vec![clipguard_transcribe::grpc::SERVICE],
            })
        }
        "classify" => {
            let store = MediaStore::open(&cfg.store)?;
            let stage = Arc::new(ClassifyStage::new(cfg.classify.clone(), store)?);
            // The classify worker also serves synchronous prompt checks (same text model).
            let checker = PromptChecker::new(
                stage.text().clone(),
                Arc::new(cfg.monitor.load_policy().map_err(anyhow::Error::msg)?),
                cfg.classify.max_text_bytes,
            );
            let routes = Routes::new(clipguard_classify::grpc::service(stage.clone()))
                .add_service(clipguard_classify::prompt::service(checker));
            Ok(Built {
                register_metrics: Box::new(|_| {}),
                name: clipguard_classify::stage::NAME,
                run_kafka: Box::new(move |host, metrics, shutdown| {
                    Box::pin(async move { host.run(stage, metrics, shutdown).await })
                }),
                routes,
                services: vec![
                    clipguard_classify::grpc::SERVICE,
                    clipguard_classify::prompt::SERVICE,
                ],
            })
        }
        "classify_transcript" => {
            let stage = Arc::new(ClassifyTranscriptStage::new(cfg.classify.clone())?);
            let routes = Routes::new(clipguard_classify::grpc::transcript_service(stage.clone()));
            Ok(Built {
                register_metrics: Box::new(|_| {}),
                name: clipguard_classify::stage::TRANSCRIPT_NAME,
                run_kafka: Box::new(move |host, metrics, shutdown| {
                    Box::pin(async move { host.run(stage, metrics, shutdown).await })
                }),
                routes,
                services: vec![clipguard_classify::grpc::TRANSCRIPT_SERVICE],
            })
        }
        "monitor" => {
            let stage =
                Arc::new(MonitorStage::new(cfg.monitor.clone()).map_err(anyhow::Error::msg)?);
            let routes = Routes::new(clipguard_monitor::grpc::service(stage.clone()));
            let metrics = stage.metrics().clone();
            Ok(Built {
                register_metrics: Box::new(move |r| metrics.register(r)),
                name: clipguard_monitor::NAME,
                run_kafka: Box::new(move |host, metrics, shutdown| {
                    Box::pin(async move { host.run(stage, metrics, shutdown).await })
                }),
                routes,
                services: vec![clipguard_monitor::grpc::SERVICE],
            })
        }
        other => anyhow::bail!("unknown stage `{other}` (available: {})", NAMES.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use clipguard_pipeline::embedded::EmbeddedBroker;
    use clipguard_pipeline::telemetry::render;
    use clipguard_pipeline::topics;
    use clipguard_schemas::{ClipContext, ClipSubmitted, Signal};
    use prometheus_client::registry::Registry;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    use super::*;

    /// One input each stage accepts.
    fn sample_input(name: &str) -> (&'static str, Vec<u8>) {
        match name {
            "media" => (
                topics::SUBMITTED,
                prost::Message::encode_to_vec(&ClipSubmitted::default()),
            ),
            "hashmatch" | "transcribe" | "classify" => (
                topics::MEDIA,
                prost::Message::encode_to_vec(&clipguard_schemas::MediaExtract::default()),
            ),
            "classify_transcript" => (
                topics::TRANSCRIPTS,
                prost::Message::encode_to_vec(&clipguard_schemas::Transcript::default()),
            ),
            "monitor" => (
                topics::SIGNALS,
                prost::Message::encode_to_vec(&Signal {
                    stage: "media".into(),
                    context: Some(ClipContext::default()),
                    ..Default::default()
                }),
            ),
            other => panic!("add a sample input for stage {other}"),
        }
    }

    /// Every registered stage emits the shared telemetry when hosted on Kafka.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_stage_emits_the_shared_telemetry() {
        for name in NAMES {
            let broker = EmbeddedBroker::start(1).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = Config::default();
            cfg.kafka.brokers = broker.bootstrap_servers();
            cfg.store.url = dir.path().display().to_string();
            cfg.hashmatch.banks_dir = dir.path().join("banks");
            // One media signal completes a clip, so the monitor sample is processed at once.
            cfg.monitor.expected_stages = vec!["media".into()];
            let built = build(name, &cfg).unwrap();
            let mut registry = Registry::default();
            let metrics = StageMetrics::register(&mut registry, built.name);
            let (stop, stop_rx) = watch::channel(false);
            let host = KafkaHost {
                kafka: cfg.kafka.clone(),
                host: cfg.host.clone(),
            };
            let worker = tokio::spawn((built.run_kafka)(host, metrics.clone(), stop_rx));
            let producer: FutureProducer = cfg.kafka.producer().unwrap();
            let (topic, payload) = sample_input(name);
            producer
                .send(
                    FutureRecord::to(topic).key("clip-1").payload(&payload),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            let until = Instant::now() + Duration::from_secs(30);
            while metrics.processed.get() < 1 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            stop.send(true).unwrap();
            worker.await.unwrap().unwrap();
            let text = render(&registry);
            for metric in [
                "received_total 1",
                "processed_total 1",
                "produced_total",
                "dead_letters_total",
                "processing_seconds_count 1",
                "in_flight 0",
            ] {
                let full = format!("clipguard_{name}_{metric}");
                assert!(
                    text.contains(&full),
                    "stage {name}: `{full}` missing from\n{text}"
                );
            }
        }
    }
}
