//! The stage registry: one plain function maps a stage name to a built stage. A built stage runs
//! on the Kafka host (`clipguard stage NAME`, `clipguard run`), serves its gRPC services, or joins
//! an in-process [`Topology`] (`clipguard scan`): the same stage object on every path.

use std::sync::Arc;

use clipguard_classify::prompt::PromptChecker;
use clipguard_classify::stage::{ClassifyStage, ClassifyTranscriptStage};
use clipguard_classify::text::TextClassifier;
use clipguard_hashmatch::stage::HashmatchStage;
use clipguard_media::MediaStage;
use clipguard_monitor::MonitorStage;
use clipguard_pipeline::inproc::Topology;
use clipguard_pipeline::kafka::KafkaHost;
use clipguard_pipeline::metrics::StageMetrics;
use clipguard_pipeline::store::MediaStore;
use clipguard_pipeline::{ErrorDomain, Failure, PipelineError, Stage};
use clipguard_schemas::names::stage;
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tonic::service::Routes;

use crate::{Config, TopologyError};

/// Stages this build can run, in pipeline order.
pub const NAMES: &[&str] = stage::ALL;

type RunKafka = Box<
    dyn FnOnce(
            KafkaHost,
            StageMetrics,
            watch::Receiver<bool>,
        ) -> BoxFuture<'static, Result<(), PipelineError>>
        + Send,
>;

/// A built stage: its Kafka worker, its place in an in-process topology, its gRPC services.
pub struct Built {
    pub name: &'static str,
    /// The topic the stage consumes.
    pub input_topic: &'static str,
    /// Registers the stage's own metrics beside the shared ones.
    register_metrics: Box<dyn FnOnce(&mut Registry) + Send>,
    run_kafka: RunKafka,
    join: Box<dyn FnOnce(&mut Topology) + Send>,
    pub routes: Routes,
    pub services: Vec<&'static str>,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Built")
            .field("name", &self.name)
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl Built {
    fn new<S: Stage>(stage: Arc<S>, routes: Routes, services: Vec<&'static str>) -> Self {
        let for_topology = stage.clone();
        Built {
            name: stage.name(),
            input_topic: stage.input_topic(),
            register_metrics: Box::new(|_| {}),
            run_kafka: Box::new(move |host, metrics, shutdown| {
                Box::pin(async move { host.run(stage, metrics, shutdown).await })
            }),
            join: Box::new(move |t| t.add(for_topology)),
            routes,
            services,
        }
    }

    /// Registers the shared stage metrics (`clipguard_<stage>_…`) and the stage's own in
    /// `registry`; returns the shared ones for the Kafka host.
    pub fn register_metrics(&mut self, registry: &mut Registry) -> StageMetrics {
        let metrics = StageMetrics::register(registry, self.name);
        (std::mem::replace(&mut self.register_metrics, Box::new(|_| {})))(registry);
        metrics
    }

    /// The stage as a Kafka consumer-group member until `shutdown` turns true.
    pub fn run_kafka(
        self,
        host: KafkaHost,
        metrics: StageMetrics,
        shutdown: watch::Receiver<bool>,
    ) -> BoxFuture<'static, Result<(), PipelineError>> {
        (self.run_kafka)(host, metrics, shutdown)
    }

    /// The stage as a member of an in-process topology.
    pub fn join(self, topology: &mut Topology) {
        (self.join)(topology)
    }
}

/// What stages built together share: the text classifier (MiniLM and its heads, trained at
/// start) serves `classify`, `classify_transcript` and the prompt check in one process.
#[derive(Debug, Default)]
pub struct Shared {
    text: Option<Arc<TextClassifier>>,
}

fn failed<E: Failure>(stage: &'static str) -> impl FnOnce(E) -> TopologyError {
    move |e| TopologyError::Build {
        stage,
        error: Box::new(e),
    }
}

/// The policy file as a build error: it is the deployment's to fix.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct InvalidPolicy(#[from] clipguard_policy::PolicyError);

impl Failure for InvalidPolicy {
    fn domain(&self) -> ErrorDomain {
        ErrorDomain::Input
    }
}

/// Builds stage `name` from the config. Loads everything the stage needs now (GStreamer
/// plugins, models) so a broken worker fails at start with the reason.
pub fn build(name: &str, cfg: &Config) -> Result<Built, TopologyError> {
    build_shared(name, cfg, &mut Shared::default())
}

/// Builds every stage of `names`, sharing what they can.
pub fn build_all(names: &[&str], cfg: &Config) -> Result<Vec<Built>, TopologyError> {
    let mut shared = Shared::default();
    names
        .iter()
        .map(|n| build_shared(n, cfg, &mut shared))
        .collect()
}

/// [`build`], reusing what `shared` already holds.
pub fn build_shared(name: &str, cfg: &Config, shared: &mut Shared) -> Result<Built, TopologyError> {
    let store = || MediaStore::open(&cfg.store);
    match name {
        stage::MEDIA => {
            let stage = Arc::new(
                MediaStage::new(cfg.media.clone(), store()?).map_err(failed(stage::MEDIA))?,
            );
            let routes = Routes::new(clipguard_media::grpc::service(stage.clone()));
            Ok(Built::new(
                stage,
                routes,
                vec![clipguard_media::grpc::SERVICE],
            ))
        }
        stage::HASHMATCH => {
            let stage = Arc::new(
                HashmatchStage::new(cfg.hashmatch.clone()).map_err(failed(stage::HASHMATCH))?,
            );
            let routes = Routes::new(clipguard_hashmatch::grpc::service(stage.clone()));
            Ok(Built::new(
                stage,
                routes,
                vec![clipguard_hashmatch::grpc::SERVICE],
            ))
        }
        stage::TRANSCRIBE => {
            let stage = Arc::new(
                clipguard_transcribe::TranscribeStage::new(cfg.transcribe.clone(), store()?)
                    .map_err(failed(stage::TRANSCRIBE))?,
            );
            let routes = Routes::new(clipguard_transcribe::grpc::service(stage.clone()));
            Ok(Built::new(
                stage,
                routes,
                vec![clipguard_transcribe::grpc::SERVICE],
            ))
        }
        stage::CLASSIFY => {
            let stage = Arc::new(
                ClassifyStage::new(cfg.classify.clone(), store()?)
                    .map_err(failed(stage::CLASSIFY))?,
            );
            shared.text.get_or_insert_with(|| stage.text().clone());
            // The classify worker also serves synchronous prompt checks (same text model).
            let policy = cfg
                .monitor
                .load_policy()
                .map_err(InvalidPolicy)
                .map_err(failed(stage::CLASSIFY))?;
            let checker = PromptChecker::new(
                stage.text().clone(),
                Arc::new(policy),
                cfg.classify.max_text_bytes,
            );
            let routes = Routes::new(clipguard_classify::grpc::service(stage.clone()))
                .add_service(clipguard_classify::prompt::service(checker));
            Ok(Built::new(
                stage,
                routes,
                vec![
                    clipguard_classify::grpc::SERVICE,
                    clipguard_classify::prompt::SERVICE,
                ],
            ))
        }
        stage::CLASSIFY_TRANSCRIPT => {
            let stage = Arc::new(match &shared.text {
                Some(text) => {
                    ClassifyTranscriptStage::with_text(text.clone(), cfg.classify.clone())
                }
                None => {
                    let stage = ClassifyTranscriptStage::new(cfg.classify.clone())
                        .map_err(failed(stage::CLASSIFY_TRANSCRIPT))?;
                    shared.text = Some(stage.text().clone());
                    stage
                }
            });
            let routes = Routes::new(clipguard_classify::grpc::transcript_service(stage.clone()));
            Ok(Built::new(
                stage,
                routes,
                vec![clipguard_classify::grpc::TRANSCRIPT_SERVICE],
            ))
        }
        stage::MONITOR => {
            let stage = Arc::new(
                MonitorStage::new(cfg.monitor.clone())
                    .map_err(InvalidPolicy)
                    .map_err(failed(stage::MONITOR))?,
            );
            let routes = Routes::new(clipguard_monitor::grpc::service(stage.clone()));
            let metrics = stage.metrics().clone();
            let mut built = Built::new(stage, routes, vec![clipguard_monitor::grpc::SERVICE]);
            built.register_metrics = Box::new(move |r| metrics.register(r));
            Ok(built)
        }
        other => Err(TopologyError::UnknownStage {
            name: other.to_string(),
        }),
    }
}

/// Every metric family a worker of this build can export, registered without building any
/// stage: the shared stage metrics of each stage and the stages' own, each labelled family
/// with one sample so that encoding the registry lists it. What dashboards and alert rules may
/// refer to (checked over `deploy/k8s/monitoring` by `tests/ops.rs`).
pub fn metrics_catalog() -> Registry {
    let mut registry = Registry::default();
    for name in NAMES {
        let m = StageMetrics::register(&mut registry, name);
        m.error("catalogue");
        m.drop_work("catalogue");
        m.lag
            .get_or_create(&clipguard_pipeline::metrics::PartitionLabels {
                topic: "catalogue".into(),
                partition: "0".into(),
            })
            .set(0);
    }
    let monitor = clipguard_monitor::MonitorMetrics::default();
    monitor.register(&mut registry);
    monitor.sample_every_family();
    registry
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clipguard_pipeline::testing::assert_shared_telemetry_of;
    use clipguard_schemas::{ClipContext, ClipSubmitted, MediaExtract, Signal, Transcript};

    use super::*;

    /// One input each stage processes to outputs.
    fn sample_input(name: &str) -> Vec<u8> {
        match name {
            stage::MEDIA => prost::Message::encode_to_vec(&ClipSubmitted::default()),
            stage::HASHMATCH | stage::TRANSCRIBE | stage::CLASSIFY => {
                prost::Message::encode_to_vec(&MediaExtract::default())
            }
            stage::CLASSIFY_TRANSCRIPT => prost::Message::encode_to_vec(&Transcript {
                text: "we plant tomatoes and water the basil".into(),
                ..Default::default()
            }),
            stage::MONITOR => prost::Message::encode_to_vec(&Signal {
                stage: stage::MEDIA.into(),
                context: Some(ClipContext::default()),
                ..Default::default()
            }),
            other => panic!("add a sample input for stage {other}"),
        }
    }

    /// A stage that cannot be built says which, why, and whose fault it is, from its own
    /// typed error (not a string): an unknown model, an unreadable policy.
    #[test]
    fn build_errors_keep_the_stages_own_error_and_its_domain() {
        let mut unknown_model = Config::default();
        unknown_model.classify.text_model = "no-such-model".into();
        let mut missing_policy = Config::default();
        missing_policy.monitor.policy = Some("/nonexistent/policy.toml".into());
        for (name, cfg, named) in [
            (stage::CLASSIFY, unknown_model, "no-such-model"),
            (stage::MONITOR, missing_policy, "/nonexistent/policy.toml"),
        ] {
            let e = build(name, &cfg).err().unwrap();
            assert!(
                matches!(&e, TopologyError::Build { stage, .. } if *stage == name),
                "{e}"
            );
            assert_eq!(e.domain(), ErrorDomain::Input, "{e}");
            assert!(!e.retryable(), "{e}");
            assert!(e.to_string().contains(named), "{e}");
        }
    }

    /// Every registered stage, as the registry builds it, emits the shared telemetry on the
    /// Kafka host: values after a processed input and after a malformed one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_stage_emits_the_shared_telemetry() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.store.url = dir.path().display().to_string();
        cfg.hashmatch.banks_dir = dir.path().join("banks");
        // One media signal completes a clip, so the monitor's sample is decided at once.
        cfg.monitor.expected_stages = vec![stage::MEDIA.into()];
        for name in NAMES {
            let built = build(name, &cfg).unwrap();
            let (name, topic) = (built.name, built.input_topic);
            let run = move |host, metrics, stop| built.run_kafka(host, metrics, stop);
            assert_shared_telemetry_of(name, topic, run, sample_input(name)).await;
        }
    }
}
