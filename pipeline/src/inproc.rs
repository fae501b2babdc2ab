//! The in-process host: stages wired by topic inside one process, without a broker.
//!
//! A [`Topology`] routes every record to the stages whose input topic it is on, exactly as a
//! broker would deliver it, and runs each stage through the same attempt as the Kafka host
//! ([`crate::stage::attempt`]: panics caught, attempt deadline). What a stage emits outside its
//! outputs (the monitor's verdicts) goes through the same routing. A failed attempt is not
//! retried: the message becomes a dead letter plus the stage's poison outputs (its error signal),
//! so every clip still reaches a verdict. `clipguard scan` and `clipguard transcribe` run on it.
//!
//! ```no_run
//! # async fn demo(media: std::sync::Arc<impl clipguard_pipeline::Stage>, clip: clipguard_schemas::ClipSubmitted) {
//! use clipguard_pipeline::inproc::Topology;
//! use clipguard_pipeline::{Record, graph, topics};
//! let mut topology = Topology::new();
//! topology.add(media, graph::MEDIA);
//! let produced = topology
//!     .run(vec![Record::encode(topics::SUBMITTED, clip.clip_id.clone(), &clip)])
//!     .await;
//! let signals = produced.iter().filter(|r| r.topic == topics::SIGNALS).count();
//! # }
//! ```

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;

use crate::error::{PipelineError, StageError};
use crate::graph::Node;
use crate::stage::{
    Emitter, Outputs, ProcessCtx, Record, Stage, attempt, dead_letter_records, stamp, undeclared,
};
use crate::trace::TraceContext;

/// A stage as the router sees it: records in, records out.
trait Routed: Send + Sync {
    fn input_topic(&self) -> &'static str;
    fn start(&self, emitter: Arc<dyn Emitter>);
    fn handle(&self, record: Record, emitter: Arc<dyn Emitter>) -> BoxFuture<'_, Vec<Record>>;
}

struct Hosted<S> {
    stage: Arc<S>,
    node: Node,
}

impl<S: Stage> Routed for Hosted<S> {
    fn input_topic(&self) -> &'static str {
        self.node.consumes
    }

    fn start(&self, emitter: Arc<dyn Emitter>) {
        self.stage.start(emitter);
    }

    fn handle(&self, record: Record, emitter: Arc<dyn Emitter>) -> BoxFuture<'_, Vec<Record>> {
        Box::pin(async move {
            let stage = self.stage.as_ref();
            let failed = |error: StageError, attempts: u32| {
                tracing::warn!(stage = stage.name(), clip_id = %record.key, error = %error, "dead-lettering message");
                dead_letter_records(
                    stage,
                    record.topic,
                    -1,
                    -1,
                    &record.key,
                    &record.payload,
                    &error,
                    attempts,
                )
            };
            let input = match <S::Input as prost::Message>::decode(record.payload.as_slice()) {
                Ok(input) => input,
                Err(err) => {
                    let error = StageError::input(
                        crate::error::kind::MALFORMED_MESSAGE,
                        format!("cannot decode {}: {err}", record.topic),
                    );
                    return failed(error, 0);
                }
            };
            let ctx = ProcessCtx {
                clip_id: record.key.clone(),
                topic: self.node.consumes,
                attempt: 1,
                trace: record.trace.unwrap_or_else(TraceContext::new_root),
                emitter,
            };
            match attempt(stage, input, &ctx).await {
                Ok(output) => {
                    let mut records = output.into_records();
                    stamp(&mut records, stage.name(), &record.key, 1);
                    match undeclared(&records, self.node.produces) {
                        Some(error) => failed(error, 1),
                        None => records,
                    }
                }
                Err(error) => failed(error, 1),
            }
        })
    }
}

/// Records a stage emits outside its outputs, routed like any other.
struct ChannelEmitter(mpsc::UnboundedSender<Record>);

impl Emitter for ChannelEmitter {
    fn emit(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), PipelineError>> {
        let sent = records.into_iter().try_for_each(|r| self.0.send(r));
        Box::pin(async move {
            sent.map_err(|_| PipelineError::Internal("the in-process topology stopped".into()))
        })
    }
}

/// Stages wired by topic in one process.
pub struct Topology {
    stages: Vec<Box<dyn Routed>>,
    tx: mpsc::UnboundedSender<Record>,
    rx: mpsc::UnboundedReceiver<Record>,
    emitter: Arc<dyn Emitter>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("stages", &self.stages.len())
            .finish_non_exhaustive()
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

impl Topology {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let emitter: Arc<dyn Emitter> = Arc::new(ChannelEmitter(tx.clone()));
        Self {
            stages: Vec::new(),
            tx,
            rx,
            emitter,
        }
    }

    /// Adds a stage, consuming the topic of its `node`, and starts its background work (the
    /// monitor's deadlines), which emits into this topology.
    pub fn add<S: Stage>(&mut self, stage: Arc<S>, node: Node) {
        let hosted = Hosted { stage, node };
        hosted.start(self.emitter.clone());
        self.stages.push(Box::new(hosted));
    }

    /// Feeds `records` in and runs every stage they reach, and every stage those outputs reach,
    /// until nothing is left in flight. Returns every record that passed through, inputs
    /// included, in the order they were routed (verdicts, dead letters and other records no stage
    /// here consumes among them).
    pub async fn run(&mut self, records: Vec<Record>) -> Vec<Record> {
        for r in records {
            let _ = self.tx.send(r);
        }
        let mut routed = Vec::new();
        let mut in_flight = FuturesUnordered::new();
        loop {
            if in_flight.is_empty() && self.rx.is_empty() {
                return routed;
            }
            tokio::select! {
                Some(record) = self.rx.recv() => {
                    for stage in self.stages.iter().filter(|s| s.input_topic() == record.topic) {
                        in_flight.push(stage.handle(record.clone(), self.emitter.clone()));
                    }
                    routed.push(record);
                }
                Some(outputs) = in_flight.next(), if !in_flight.is_empty() => {
                    for r in outputs {
                        let _ = self.tx.send(r);
                    }
                }
            }
        }
    }
}
