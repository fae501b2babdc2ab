//! The stage registry: one plain function maps a stage name to a built stage. A built stage runs
//! on the Kafka host (`clipguard stage NAME`, `clipguard run`), serves its gRPC services, or joins
//! an in-process [`Topology`] (`clipguard scan`): the same stage object on every path.

use std::sync::{Arc, OnceLock};

use clipguard_classify::stage::{ClassifyStage, ClassifyTranscriptStage};
use clipguard_hashmatch::stage::HashmatchStage;
use clipguard_media::MediaStage;
use clipguard_monitor::MonitorStage;
use clipguard_pipeline::graph::{self, Graph, GraphError, Node};
use clipguard_pipeline::grpc::{Served, name_of};
use clipguard_pipeline::inproc::Topology;
use clipguard_pipeline::kafka::KafkaHost;
use clipguard_pipeline::metrics::StageMetrics;
use clipguard_pipeline::store::MediaStore;
use clipguard_pipeline::{ErrorDomain, Failure, PipelineError, Stage};
use clipguard_schemas::classify_stage_server::ClassifyStageServer;
use clipguard_schemas::classify_transcript_stage_server::ClassifyTranscriptStageServer;
use clipguard_schemas::hash_match_stage_server::HashMatchStageServer;
use clipguard_schemas::media_stage_server::MediaStageServer;
use clipguard_schemas::monitor_stage_server::MonitorStageServer;
use clipguard_schemas::names::stage;
use clipguard_schemas::provenance_lookup_server::ProvenanceLookupServer;
use clipguard_schemas::release_stage_server::ReleaseStageServer;
use clipguard_schemas::reviews_server::ReviewsServer;
use clipguard_schemas::transcribe_stage_server::TranscribeStageServer;
use clipguard_text::TextClassifier;
use clipguard_text::prompt::PromptChecker;
use futures::future::BoxFuture;
use prometheus_client::registry::Registry as MetricsRegistry;
use tokio::sync::watch;
use tonic::service::Routes;

use crate::{Config, TopologyError};

type RunKafka = Box<
    dyn FnOnce(
            KafkaHost,
            StageMetrics,
            watch::Receiver<bool>,
        ) -> BoxFuture<'static, Result<(), PipelineError>>
        + Send,
>;

/// How a stage is built: from what [`Context`] holds.
pub type Build = fn(&Context<'_>) -> Result<Built, TopologyError>;

/// One stage this build can run: its place in the pipeline and how to build it. Adding a stage
/// is adding an entry ([`Registry::with`]): hosts subscribe it by its node, and the monitor
/// waits for its signal when its node produces one.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub node: Node,
    pub build: Build,
}

/// clipguard's stages, in pipeline order.
pub const STANDARD: &[Entry] = &[
    Entry {
        node: graph::MEDIA,
        build: media,
    },
    Entry {
        node: graph::HASHMATCH,
        build: hashmatch,
    },
    Entry {
        node: graph::TRANSCRIBE,
        build: transcribe,
    },
    Entry {
        node: graph::CLASSIFY,
        build: classify,
    },
    Entry {
        node: graph::CLASSIFY_TRANSCRIPT,
        build: classify_transcript,
    },
    Entry {
        node: graph::MONITOR,
        build: monitor,
    },
    Entry {
        node: graph::RELEASE,
        build: release,
    },
    Entry {
        node: graph::REVIEW,
        build: review,
    },
];

/// What a stage's [`Build`] gets: the configuration, the pipeline it is built into, its own
/// place there, and what stages built together share.
#[derive(Debug)]
pub struct Context<'a> {
    pub cfg: &'a Config,
    /// The deployment's pipeline: every stage built with this one (a worker built alone: every
    /// stage of the registry).
    pub graph: &'a Graph,
    /// The stage's own place in it.
    pub node: Node,
    /// The stage's shared metrics, which its gRPC services count into as the Kafka host does
    /// (registered when the worker registers [`Built::register_metrics`]).
    pub metrics: StageMetrics,
    shared: &'a Shared,
}

impl Context<'_> {
    /// `stage` behind the pipeline's one gRPC adapter, counting into the stage's shared
    /// metrics: wrap it in the stage's generated server.
    pub fn served<S>(&self, stage: &Arc<S>) -> Served<S> {
        Served::new(stage.clone(), self.metrics.clone())
    }

    /// `stage` hosted by its node, serving `routes` (the gRPC services named by `services`).
    /// The stage must call itself by its node's name.
    pub fn built<S: Stage>(
        &self,
        stage: Arc<S>,
        routes: Routes,
        services: Vec<&'static str>,
    ) -> Result<Built, TopologyError> {
        let node = self.node;
        if stage.name() != node.stage {
            return Err(GraphError::Misnamed {
                node: node.stage,
                stage: stage.name(),
            }
            .into());
        }
        let for_topology = stage.clone();
        Ok(Built {
            name: node.stage,
            input_topic: node.consumes,
            metrics: self.metrics.clone(),
            register_metrics: Box::new(|_| {}),
            run_kafka: Box::new(move |host, metrics, shutdown| {
                Box::pin(async move { host.run(stage, node, metrics, shutdown).await })
            }),
            join: Box::new(move |t| t.add(for_topology, node)),
            routes,
            services,
            listening: Vec::new(),
        })
    }
}

/// The stages a build can run.
#[derive(Debug, Clone)]
pub struct Registry {
    entries: Vec<Entry>,
}

impl Default for Registry {
    /// [`STANDARD`].
    fn default() -> Self {
        Self {
            entries: STANDARD.to_vec(),
        }
    }
}

impl Registry {
    /// This registry and `entry` (replacing an entry of the same name).
    pub fn with(mut self, entry: Entry) -> Self {
        self.entries.retain(|e| e.node.stage != entry.node.stage);
        self.entries.push(entry);
        self
    }

    /// Every stage's name, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.node.stage).collect()
    }

    /// The pipeline of every registered stage.
    pub fn graph(&self) -> Result<Graph, TopologyError> {
        Ok(Graph::new(self.entries.iter().map(|e| e.node))?)
    }

    fn entry(&self, name: &str) -> Result<&Entry, TopologyError> {
        self.entries
            .iter()
            .find(|e| e.node.stage == name)
            .ok_or_else(|| TopologyError::UnknownStage {
                name: name.to_string(),
                available: self.names().join(", "),
            })
    }

    /// Builds stage `name` as a worker of the whole registry's pipeline. Loads everything the
    /// stage needs now (GStreamer plugins, models) so a broken worker fails at start with the
    /// reason.
    pub fn build(&self, name: &str, cfg: &Config) -> Result<Built, TopologyError> {
        let entry = self.entry(name)?;
        let graph = self.graph()?;
        build_entry(entry, cfg, &graph, &Shared::default())
    }

    /// Builds the stages `names` as one pipeline (the monitor, when among them, waits for the
    /// others), sharing what they can.
    pub fn build_all(&self, names: &[&str], cfg: &Config) -> Result<Vec<Built>, TopologyError> {
        let entries = names
            .iter()
            .map(|n| self.entry(n))
            .collect::<Result<Vec<_>, _>>()?;
        let graph = Graph::new(entries.iter().map(|e| e.node))?;
        let shared = Shared::default();
        entries
            .into_iter()
            .map(|e| build_entry(e, cfg, &graph, &shared))
            .collect()
    }
}

fn build_entry(
    entry: &Entry,
    cfg: &Config,
    graph: &Graph,
    shared: &Shared,
) -> Result<Built, TopologyError> {
    (entry.build)(&Context {
        cfg,
        graph,
        node: entry.node,
        metrics: StageMetrics::new(),
        shared,
    })
}

/// A built stage: its Kafka worker, its place in an in-process topology, its gRPC services.
pub struct Built {
    pub name: &'static str,
    /// The topic the stage consumes.
    pub input_topic: &'static str,
    /// The shared stage metrics, counted by its gRPC services and, once registered, its Kafka
    /// host.
    metrics: StageMetrics,
    /// Registers the stage's own metrics beside the shared ones.
    register_metrics: Box<dyn FnOnce(&mut MetricsRegistry) + Send>,
    run_kafka: RunKafka,
    join: Box<dyn FnOnce(&mut Topology) + Send>,
    pub routes: Routes,
    pub services: Vec<&'static str>,
    /// Other sockets the stage serves itself (the review console), by kind.
    pub listening: Vec<(&'static str, std::net::SocketAddr)>,
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
    /// Registers the shared stage metrics (`clipguard_<stage>_…`) and the stage's own in
    /// `registry`; returns the shared ones for the Kafka host.
    pub fn register_metrics(&mut self, registry: &mut MetricsRegistry) -> StageMetrics {
        self.metrics.register_in(registry, self.name);
        (std::mem::replace(&mut self.register_metrics, Box::new(|_| {})))(registry);
        self.metrics.clone()
    }

    /// Also registers `register` (the stage's own metrics) with the shared ones.
    pub fn with_listening(mut self, kind: &'static str, addr: std::net::SocketAddr) -> Self {
        self.listening.push((kind, addr));
        self
    }

    pub fn with_metrics(
        mut self,
        register: impl FnOnce(&mut MetricsRegistry) + Send + 'static,
    ) -> Self {
        self.register_metrics = Box::new(register);
        self
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
struct Shared {
    text: OnceLock<Arc<TextClassifier>>,
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

/// Builds stage `name` of the standard registry ([`Registry::build`]).
pub fn build(name: &str, cfg: &Config) -> Result<Built, TopologyError> {
    Registry::default().build(name, cfg)
}

/// Builds stages `names` of the standard registry as one pipeline ([`Registry::build_all`]).
pub fn build_all(names: &[&str], cfg: &Config) -> Result<Vec<Built>, TopologyError> {
    Registry::default().build_all(names, cfg)
}

fn media(ctx: &Context<'_>) -> Result<Built, TopologyError> {
    let store = MediaStore::open(&ctx.cfg.store)?;
    let stage =
        Arc::new(MediaStage::new(ctx.cfg.media.clone(), store).map_err(failed(stage::MEDIA))?);
    // A clip may travel inline in the call.
    let service =
        MediaStageServer::new(ctx.served(&stage)).max_decoding_message_size(64 * 1024 * 1024);
    let names = vec![name_of(&service)];
    ctx.built(stage, Routes::new(service), names)
}

fn hashmatch(ctx: &Context<'_>) -> Result<Built, TopologyError> {
    let stage =
        Arc::new(HashmatchStage::new(ctx.cfg.hashmatch.clone()).map_err(failed(stage::HASHMATCH))?);
    let service = HashMatchStageServer::new(ctx.served(&stage));
    let names = vec![name_of(&service)];
    ctx.built(stage, Routes::new(service), names)
}

fn transcribe(ctx: &Context<'_>) -> Result<Built, TopologyError> {
    let store = MediaStore::open(&ctx.cfg.store)?;
    let stage = Arc::new(
        clipguard_transcribe::TranscribeStage::new(ctx.cfg.transcribe.clone(), store)
            .map_err(failed(stage::TRANSCRIBE))?,
    );
    let service = TranscribeStageServer::new(ctx.served(&stage));
    let names = vec![name_of(&service)];
    ctx.built(stage, Routes::new(service), names)
}

fn classify(ctx: &Context<'_>) -> Result<Built, TopologyError> {
    let store = MediaStore::open(&ctx.cfg.store)?;
    let stage = Arc::new(
        ClassifyStage::new(ctx.cfg.classify.clone(), store).map_err(failed(stage::CLASSIFY))?,
    );
    let _ = ctx.shared.text.set(stage.text().clone());
    // The classify worker also serves synchronous prompt checks (same text model).
    let policy = ctx
        .cfg
        .policy
        .load()
        .map_err(InvalidPolicy)
        .map_err(failed(stage::CLASSIFY))?;
    let checker = PromptChecker::new(
        stage.text().clone(),
        Arc::new(policy),
        ctx.cfg.classify.max_text_bytes,
    );
    // And input checks with images: the hash banks (reloaded as the hashmatch stage reloads
    // them) beside this worker's frame models and face check.
    let banks =
        Arc::new(HashmatchStage::new(ctx.cfg.hashmatch.clone()).map_err(failed(stage::CLASSIFY))?);
    banks.keep_reloading();
    let inputs = crate::input::InputChecker::new(
        stage.clone(),
        banks,
        checker.policy().clone(),
        crate::input::InputLimits::of(ctx.cfg),
    );
    if !ctx.cfg.hashmatch.banks_dir.is_dir() {
        tracing::warn!(
            banks_dir = %ctx.cfg.hashmatch.banks_dir.display(),
            "no hash banks folder: input checks match uploads against no bank"
        );
    }
    let service = ClassifyStageServer::new(ctx.served(&stage));
    let prompts = crate::moderation::service(checker, inputs);
    let names = vec![name_of(&service), name_of(&prompts)];
    ctx.built(stage, Routes::new(service).add_service(prompts), names)
}

fn classify_transcript(ctx: &Context<'_>) -> Result<Built, TopologyError> {
    let stage = Arc::new(match ctx.shared.text.get() {
        Some(text) => ClassifyTranscriptStage::with_text(text.clone(), ctx.cfg.classify.clone()),
        None => {
            let stage = ClassifyTranscriptStage::new(ctx.cfg.classify.clone())
                .map_err(failed(stage::CLASSIFY_TRANSCRIPT))?;
            let _ = ctx.shared.text.set(stage.text().clone());
            stage
        }
    });
    let service = ClassifyTranscriptStageServer::new(ctx.served(&stage));
    let names = vec![name_of(&service)];
    ctx.built(stage, Routes::new(service), names)
}

fn monitor(ctx: &Context<'_>) -> Result<Built, TopologyError> {
    let stage = Arc::new(
        MonitorStage::new(ctx.cfg.monitor.clone(), &ctx.cfg.policy, ctx.graph)
            .map_err(failed(stage::MONITOR))?,
    );
    let service = MonitorStageServer::new(ctx.served(&stage));
    let names = vec![name_of(&service)];
    let metrics = stage.metrics().clone();
    Ok(ctx
        .built(stage, Routes::new(service), names)?
        .with_metrics(move |r| metrics.register(r)))
}

fn release(ctx: &Context<'_>) -> Result<Built, TopologyError> {
    let store = MediaStore::open(&ctx.cfg.store)?;
    let stage = Arc::new(
        clipguard_release::ReleaseStage::new(ctx.cfg.release.clone(), ctx.cfg.media.clone(), store)
            .map_err(failed(stage::RELEASE))?,
    );
    let service = ReleaseStageServer::new(ctx.served(&stage));
    let lookup = ProvenanceLookupServer::new(clipguard_release::grpc::Lookups::new(
        stage.clone(),
        ctx.metrics.clone(),
    ))
    .max_decoding_message_size(64 * 1024 * 1024);
    let names = vec![name_of(&service), name_of(&lookup)];
    ctx.built(stage, Routes::new(service).add_service(lookup), names)
}

fn review(ctx: &Context<'_>) -> Result<Built, TopologyError> {
    let store = MediaStore::open(&ctx.cfg.store)?;
    let wait = clipguard_monitor::Wait::new(&ctx.cfg.monitor, ctx.graph)
        .map_err(|e| failed(stage::REVIEW)(clipguard_review::ReviewError::Config(e)))?;
    let stage = Arc::new(
        clipguard_review::ReviewStage::new(
            ctx.cfg.review.clone(),
            ctx.cfg.media.clone(),
            Some(store),
        )
        .map_err(failed(stage::REVIEW))?
        .with_rescan(rescanner(ctx.cfg, wait)),
    );
    let console = stage.console_addr();
    let service = ReviewsServer::new(clipguard_review::grpc::ReviewsService::new(
        stage.clone(),
        ctx.metrics.clone(),
    ));
    let names = vec![name_of(&service)];
    let metrics = stage.metrics().clone();
    let built = ctx
        .built(stage, Routes::new(service), names)?
        .with_metrics(move |r| metrics.register(r));
    Ok(match console {
        Some(addr) => built.with_listening("console", addr),
        None => built,
    })
}

/// An appeal's re-scan: the clip's signals read back from `clips.signals` and decided by the
/// monitor's code under the policy in force now (the policy file is read at each appeal, so a
/// policy changed since the clip's verdict applies). Reads the topic from its start: the
/// signals a clip left are kept as long as the topic's retention.
fn rescanner(cfg: &Config, wait: clipguard_monitor::Wait) -> clipguard_review::Rescan {
    let kafka = cfg.kafka.clone();
    let policy = cfg.policy.clone();
    clipguard_review::Rescan(Arc::new(move |clip_id: String| {
        let (kafka, policy, wait) = (kafka.clone(), policy.clone(), wait.clone());
        Box::pin(async move {
            let policy = policy.load().map_err(|e| e.to_string())?;
            let (consumer, ends) = clipguard_pipeline::edges::topic_reader(
                &kafka,
                clipguard_schemas::names::topic::SIGNALS,
                clipguard_pipeline::edges::From::Beginning,
            )
            .await
            .map_err(|e| e.to_string())?;
            let mut signals = Vec::new();
            clipguard_pipeline::edges::read_topic(
                &consumer,
                Some(&ends),
                Some(std::time::Duration::from_secs(10)),
                |payload| {
                    if let Ok(s) = <clipguard_schemas::Signal as prost::Message>::decode(payload)
                        && s.clip_id == clip_id
                    {
                        signals.push(s);
                    }
                    true
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            if signals.is_empty() {
                return Ok(None);
            }
            let report = clipguard_monitor::replay::replay(signals, &wait, &policy, &policy);
            Ok(report.clips.into_iter().next().map(|c| c.after))
        })
    }))
}

/// Every metric family a worker of this build can export, registered without building any
/// stage: the shared stage metrics of each stage and the stages' own, each labelled family
/// with one sample so that encoding the registry lists it. What dashboards and alert rules may
/// refer to (checked over `deploy/k8s/monitoring` by `tests/ops.rs`).
pub fn metrics_catalog() -> MetricsRegistry {
    let mut registry = MetricsRegistry::default();
    for name in Registry::default().names() {
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
    let review = clipguard_review::metrics::ReviewMetrics::default();
    review.register(&mut registry);
    review.sample_every_family();
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
            // A verdict that needs review: a case opens.
            stage::REVIEW => prost::Message::encode_to_vec(&clipguard_schemas::Verdict {
                clip_id: "c".into(),
                audiences: Some(clipguard_schemas::AudienceDecisions {
                    public_feed: clipguard_schemas::Decision::Review as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            // A clip for the download surface: a rendition record (renditions are off here).
            stage::RELEASE => prost::Message::encode_to_vec(&clipguard_schemas::Verdict {
                clip_id: "c".into(),
                surface: clipguard_schemas::Surface::Download as i32,
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
        missing_policy.policy.file = Some("/nonexistent/policy.toml".into());
        let mut missing_key = Config::default();
        missing_key.release.signing_cert = "/nonexistent/chain.pem".into();
        for (name, cfg, named) in [
            (stage::CLASSIFY, unknown_model, "no-such-model"),
            (stage::MONITOR, missing_policy, "/nonexistent/policy.toml"),
            (stage::RELEASE, missing_key, "/nonexistent/chain.pem"),
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
        cfg.review.database_url = format!("sqlite://{}", dir.path().join("review.db").display());
        // One media signal completes a clip, so the monitor's sample is decided at once.
        cfg.monitor.expected_stages = vec![stage::MEDIA.into()];
        for name in Registry::default().names() {
            let built = build(name, &cfg).unwrap();
            let (name, topic) = (built.name, built.input_topic);
            let run = move |host, metrics, stop| built.run_kafka(host, metrics, stop);
            // The good input's outputs, a dead letter, and the error signal every stage before
            // the verdict gives for a message it cannot process. After the verdict: the release
            // stage's rendition record and the dead letter; the review stage publishes
            // decisions from its database, so only the dead letter.
            let min_produced = match name {
                stage::RELEASE => 2,
                stage::REVIEW => 1,
                _ => 3,
            };
            assert_shared_telemetry_of(name, topic, run, sample_input(name), min_produced).await;
        }
    }
}
