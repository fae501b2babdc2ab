//! The Kafka host: the production data plane for any [`Stage`].
//!
//! Per message: decode the input, run the stage (bounded retries with backoff for retryable
//! failures, a per-attempt timeout, panics caught), produce every output record and wait for the
//! broker's acknowledgements, then mark the offset finished. Commits only ever move to the lowest
//! unfinished offset of each partition ([`OffsetTracker`]). A message that cannot be processed
//! goes to `clips.dlq` with the reason, and the stage's poison outputs (an error signal) are
//! produced so the clip still gets a fail-closed verdict: a partition never stalls.
//!
//! Kafka features relied on (all supported by Apache Kafka and by the test broker): consumer
//! groups with committed offsets, idempotent produce with `acks=all`, record headers, topic
//! creation through the admin API. Transactions are not used; duplicates are expected downstream
//! and de-duplicated by `(clip_id, stage)`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::Producer;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::error::{PipelineError, StageError};
use crate::graph::Node;
use crate::metrics::{PartitionLabels, StageMetrics};
use crate::offsets::OffsetTracker;
use crate::stage::{Outputs, ProcessCtx, Stage, attempt, dead_letter_records, stamp, undeclared};
use crate::trace::{TRACEPARENT, TraceContext};

mod config;
mod emitter;
mod state;

pub use config::{HostConfig, KafkaConfig};
pub use emitter::KafkaEmitter;
pub use state::StateFollower;

/// The longest a stage waits to read its state topic before it consumes.
const STATE_CATCH_UP: Duration = Duration::from_secs(120);

/// Consumer context: commits finished work before partitions are taken away, and turns
/// librdkafka statistics into lag gauges.
struct HostContext {
    tracker: Arc<Mutex<OffsetTracker>>,
    metrics: StageMetrics,
    stage: &'static str,
    /// Set at every assignment: the state topic must be read up to date before more input.
    assigned: Arc<AtomicBool>,
}

impl ClientContext for HostContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in stats.topics {
            for (partition, p) in t.partitions {
                if partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                self.metrics
                    .lag
                    .get_or_create(&PartitionLabels {
                        topic: topic.clone(),
                        partition: partition.to_string(),
                    })
                    .set(p.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for HostContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut commit = TopicPartitionList::new();
            {
                let mut tracker = lock(&self.tracker);
                for elem in list.elements() {
                    let tp = (elem.topic().to_string(), elem.partition());
                    if let Some(safe) = tracker.revoke(&tp) {
                        let _ =
                            commit.add_partition_offset(&tp.0, tp.1, rdkafka::Offset::Offset(safe));
                    }
                }
            }
            if commit.count() > 0
                && let Err(err) = consumer.commit(&commit, CommitMode::Sync)
            {
                tracing::warn!(stage = self.stage, error = %err, "commit on revoke failed");
            }
            tracing::info!(
                stage = self.stage,
                partitions = list.count(),
                "partitions revoked"
            );
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            self.assigned.store(true, Ordering::SeqCst);
            tracing::info!(
                stage = self.stage,
                partitions = list.count(),
                "partitions assigned"
            );
        }
    }
}

fn lock(m: &Mutex<OffsetTracker>) -> std::sync::MutexGuard<'_, OffsetTracker> {
    // A panic while holding the lock leaves the tracker consistent (every method is one step).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a stopping stage waits for its final commit and its consumer group leave.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `stage` as a Kafka consumer-group member until `shutdown` turns true, then drains.
#[derive(Debug)]
pub struct KafkaHost {
    pub kafka: KafkaConfig,
    pub host: HostConfig,
}

impl KafkaHost {
    pub async fn run<S: Stage>(
        &self,
        stage: Arc<S>,
        node: Node,
        metrics: StageMetrics,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let name = stage.name();
        let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
        let mut cc = self.kafka.client_config();
        cc.set("group.id", format!("clipguard-{name}"))
            .set("client.id", format!("clipguard-{name}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .set("fetch.min.bytes", "1")
            .set(
                "session.timeout.ms",
                self.kafka.session_timeout_ms.to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (self.kafka.session_timeout_ms / 5).max(500).to_string(),
            )
            .set("statistics.interval.ms", "5000");
        let assigned = Arc::new(AtomicBool::new(false));
        let context = HostContext {
            tracker: tracker.clone(),
            metrics: metrics.clone(),
            stage: name,
            assigned: assigned.clone(),
        };
        // The stage's memory first: nothing is consumed before it is read.
        let follower = match node.state {
            Some(topic) => {
                let s = stage.clone();
                let follower = Arc::new(StateFollower::start(
                    &self.kafka,
                    &format!("clipguard-{name}"),
                    topic,
                    move |key, payload| s.restore(key, payload),
                )?);
                let started = Instant::now();
                let f = follower.clone();
                let records = tokio::task::spawn_blocking(move || f.catch_up(STATE_CATCH_UP))
                    .await
                    .map_err(|e| PipelineError::Server(e.to_string()))??;
                tracing::info!(
                    stage = name,
                    topic,
                    records,
                    seconds = started.elapsed().as_secs_f64(),
                    "state restored"
                );
                Some(follower)
            }
            None => None,
        };
        let consumer: Arc<StreamConsumer<HostContext>> = Arc::new(cc.create_with_context(context)?);
        consumer.subscribe(&[node.consumes])?;

        let emitter = Arc::new(KafkaEmitter::new(
            self.kafka.producer()?,
            name,
            metrics.clone(),
        ));
        stage.start(emitter.clone());

        let commit_task = tokio::spawn(commit_loop(
            consumer.clone(),
            tracker.clone(),
            Duration::from_millis(self.host.commit_interval_ms),
            shutdown.clone(),
        ));
        let semaphore = Arc::new(Semaphore::new(
            stage.max_in_flight().unwrap_or(self.host.max_in_flight),
        ));
        let (fatal_tx, mut fatal_rx) = mpsc::channel::<PipelineError>(1);
        let mut tasks = JoinSet::new();
        let draining = Arc::new(AtomicBool::new(false));
        tracing::info!(stage = name, topic = node.consumes, "stage consuming");

        let outcome: Result<(), PipelineError> = loop {
            let permit = tokio::select! {
                p = semaphore.clone().acquire_owned() => p.map_err(|e| PipelineError::Server(e.to_string()))?,
                _ = shutdown.changed() => break Ok(()),
                Some(err) = fatal_rx.recv() => break Err(err),
            };
            let message = tokio::select! {
                m = consumer.recv() => m,
                _ = shutdown.changed() => break Ok(()),
                Some(err) = fatal_rx.recv() => break Err(err),
            };
            while tasks.try_join_next().is_some() {}
            // Newly assigned partitions: their previous owner's decisions are read first.
            if let Some(f) = &follower
                && assigned.swap(false, Ordering::SeqCst)
            {
                let f = f.clone();
                match tokio::task::spawn_blocking(move || f.catch_up(STATE_CATCH_UP)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => break Err(err),
                    Err(err) => break Err(PipelineError::Server(err.to_string())),
                }
            }
            let message = match message {
                Ok(m) => m.detach(),
                Err(err) => {
                    tracing::warn!(stage = name, error = %err, "consumer error");
                    metrics.error("consumer");
                    continue;
                }
            };
            let ticket = lock(&tracker).begin(
                (message.topic().to_string(), message.partition()),
                message.offset(),
            );
            metrics.in_flight.inc();
            let job = Job {
                stage: stage.clone(),
                node,
                emitter: emitter.clone(),
                metrics: metrics.clone(),
                host: self.host.clone(),
                draining: draining.clone(),
            };
            let tracker = tracker.clone();
            let fatal_tx = fatal_tx.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let result = job.handle(message).await;
                job.metrics.in_flight.dec();
                match result {
                    Ok(Handled::Abandoned) => {
                        job.metrics.drop_work("drain");
                        tracing::info!(
                            stage = job.stage.name(),
                            offset = ticket.offset,
                            "work abandoned on drain; left uncommitted"
                        );
                    }
                    Ok(Handled::Done) => {
                        lock(&tracker).finish(&ticket);
                        job.metrics.processed.inc();
                        job.metrics
                            .processing_seconds
                            .observe(started.elapsed().as_secs_f64());
                    }
                    Err(err) => {
                        let _ = fatal_tx.try_send(err);
                    }
                }
                drop(permit);
            });
        };

        draining.store(true, Ordering::SeqCst);
        stage.drain();
        tracing::info!(
            stage = name,
            in_flight = metrics.in_flight.get(),
            "draining"
        );
        let drain = Duration::from_secs(self.host.drain_timeout_s);
        let drained =
            tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                stage = name,
                "drain timed out; unfinished work will be redone by the next owner"
            );
            tasks.abort_all();
        }
        commit_task.abort();
        // The task holds a clone of the consumer: let it go before the last one is dropped.
        let _ = commit_task.await;
        // The final commit, leaving the group (a synchronous commit of the revoked partitions
        // in `pre_rebalance`) and closing the consumer all block on the broker: off the async
        // threads, and bounded, so a coordinator that never answers cannot hold the process.
        let closing = tokio::task::spawn_blocking(move || {
            commit_now(&consumer, &tracker, CommitMode::Sync);
            consumer.unsubscribe();
            drop(consumer);
        });
        if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
            tracing::warn!(
                stage = name,
                timeout_s = CLOSE_TIMEOUT.as_secs(),
                "leaving the consumer group timed out; the broker expires the membership after the session timeout"
            );
        }
        let _ = emitter.producer.flush(Duration::from_secs(5));
        tracing::info!(stage = name, "stage stopped");
        outcome
    }
}

fn commit_now(
    consumer: &StreamConsumer<HostContext>,
    tracker: &Mutex<OffsetTracker>,
    mode: CommitMode,
) {
    let positions = lock(tracker).committable();
    if positions.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in &positions {
        let _ = list.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset));
    }
    if let Err(err) = consumer.commit(&list, mode) {
        tracing::warn!(error = %err, "offset commit failed; will retry");
        // Make the positions reported again next time.
        let mut t = lock(tracker);
        for (tp, _) in positions {
            t.forget_committed(&tp);
        }
    }
}

async fn commit_loop(
    consumer: Arc<StreamConsumer<HostContext>>,
    tracker: Arc<Mutex<OffsetTracker>>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => commit_now(&consumer, &tracker, CommitMode::Async),
            _ = shutdown.changed() => return,
        }
    }
}

struct Job<S> {
    stage: Arc<S>,
    /// The stage's place in the pipeline: the topic it consumes, those it may produce on.
    node: Node,
    emitter: Arc<KafkaEmitter>,
    metrics: StageMetrics,
    host: HostConfig,
    /// Set once the host stops consuming: failed work is abandoned, not retried or
    /// dead-lettered.
    draining: Arc<AtomicBool>,
}

/// How a message ended.
enum Handled {
    /// Outputs (or a dead letter) acknowledged: the offset may be committed.
    Done,
    /// Given up during drain: no outputs, the offset stays uncommitted.
    Abandoned,
}

impl<S: Stage> Job<S> {
    /// Processes one message to acknowledged outputs (or a dead letter). `Err` only when the
    /// broker would not take our records: the worker must stop.
    async fn handle(&self, message: OwnedMessage) -> Result<Handled, PipelineError> {
        let name = self.stage.name();
        self.metrics.received.inc();
        let key = message
            .key()
            .filter(|k| !k.is_empty())
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let parent = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == TRACEPARENT))
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(TraceContext::parse);
        let clip_id = match key {
            Some(k) => k,
            // The contract: the key is the clip id. An unkeyed message is dead-lettered (never
            // processed under an invented id); when its payload names the clip, the dead letter
            // and the clip's error verdict are keyed by that name.
            None => {
                let payload = message.payload().unwrap_or_default();
                let named = <S::Input as prost::Message>::decode(payload)
                    .ok()
                    .and_then(|input| self.stage.clip_id_of(&input))
                    .filter(|id| !id.is_empty());
                let error = StageError::input(
                    "unkeyed_message",
                    format!(
                        "the message on {} [{}] at offset {} has no key; the key must be the clip \
                         id{}",
                        message.topic(),
                        message.partition(),
                        message.offset(),
                        if named.is_some() {
                            " (this dead letter and the clip's verdict use the clip_id of the payload)"
                        } else {
                            " (the payload names no clip either: no verdict can be given)"
                        }
                    ),
                );
                let trace = TraceContext::new_root();
                let id = named.unwrap_or_default();
                return self.dead_letter(&message, &id, &error, 0, &trace).await;
            }
        };
        let span = tracing::info_span!(
            "process",
            stage = name,
            clip_id = %clip_id,
            trace_id = tracing::field::Empty
        );
        let trace = crate::trace::link(&span, parent);
        span.record("trace_id", tracing::field::display(trace.trace_id_hex()));
        self.run_attempts(&message, clip_id, trace)
            .instrument(span)
            .await
    }

    async fn run_attempts(
        &self,
        message: &OwnedMessage,
        clip_id: String,
        trace: TraceContext,
    ) -> Result<Handled, PipelineError> {
        let payload = message.payload().unwrap_or_default();
        let input = match <S::Input as prost::Message>::decode(payload) {
            Ok(input) => input,
            Err(err) => {
                let error = StageError::input(
                    crate::error::kind::MALFORMED_MESSAGE,
                    format!("cannot decode {}: {err}", message.topic()),
                );
                return self.dead_letter(message, &clip_id, &error, 0, &trace).await;
            }
        };

        let mut attempt_no = 0;
        let error = loop {
            attempt_no += 1;
            let ctx = ProcessCtx {
                clip_id: clip_id.clone(),
                topic: self.node.consumes,
                attempt: attempt_no,
                trace,
                emitter: self.emitter.clone(),
            };
            let error = match attempt(self.stage.as_ref(), input.clone(), &ctx).await {
                Ok(output) => {
                    let mut records = output.into_records();
                    stamp(&mut records, self.stage.name(), &clip_id, attempt_no);
                    if let Some(error) = undeclared(&records, self.node.produces) {
                        self.metrics.error(error.kind);
                        return self
                            .dead_letter(message, &clip_id, &error, attempt_no, &trace)
                            .await;
                    }
                    return match self.emitter.send_all(records, &trace).await {
                        Ok(()) => Ok(Handled::Done),
                        Err(e @ PipelineError::OversizedRecord { .. }) => {
                            // A stage produced an oversized record: a bug; never stall on it.
                            let error = StageError::internal(
                                crate::error::kind::OVERSIZED_OUTPUT,
                                e.to_string(),
                            );
                            self.metrics.error(error.kind);
                            self.dead_letter(message, &clip_id, &error, attempt_no, &trace)
                                .await
                        }
                        Err(err) => Err(err),
                    };
                }
                Err(err) => err,
            };
            if self.draining.load(Ordering::SeqCst) {
                return Ok(Handled::Abandoned);
            }
            self.metrics.error(error.kind);
            tracing::warn!(attempt = attempt_no, error = %error, retryable = error.retryable, "attempt failed");
            if !error.retryable || attempt_no >= self.host.max_attempts {
                break error;
            }
            let backoff = self
                .host
                .retry_backoff_ms
                .saturating_mul(1 << (attempt_no - 1).min(10));
            tokio::time::sleep(Duration::from_millis(backoff)).await;
        };
        self.dead_letter(message, &clip_id, &error, attempt_no, &trace)
            .await
    }

    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        clip_id: &str,
        error: &StageError,
        attempts: u32,
        trace: &TraceContext,
    ) -> Result<Handled, PipelineError> {
        let name = self.stage.name();
        tracing::error!(stage = name, clip_id = %clip_id, error = %error, attempts, "dead-lettering message");
        self.metrics.dead_letters.inc();
        if attempts == 0 {
            // Never attempted (undecodable input): not counted by a failed attempt yet.
            self.metrics.error(error.kind);
        }
        let records = dead_letter_records(
            self.stage.as_ref(),
            message.topic(),
            message.partition(),
            message.offset(),
            clip_id,
            message.payload().unwrap_or_default(),
            error,
            attempts,
        );
        self.emitter.send_all(records, trace).await?;
        Ok(Handled::Done)
    }
}
