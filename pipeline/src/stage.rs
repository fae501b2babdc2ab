//! The [`Stage`] trait: what every stage implements, whatever hosts it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use clipguard_schemas::{
    ClipContext, DeadLetter, Enforcement, MediaExtract, Rendition, Signal,
    StageError as StageErrorMsg, Transcript, Verdict,
};
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::{PipelineError, StageError};
use crate::topics;
use crate::trace::TraceContext;

/// One record to produce: topic, key (the clip id) and encoded payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: &'static str,
    pub key: String,
    pub payload: Vec<u8>,
    /// Trace context for the `traceparent` header; the host fills in its own span when `None`.
    pub trace: Option<TraceContext>,
}

impl Record {
    pub fn encode<M: prost::Message>(topic: &'static str, key: impl Into<String>, msg: &M) -> Self {
        Self {
            topic,
            key: key.into(),
            payload: msg.encode_to_vec(),
            trace: None,
        }
    }

    /// A stage's signal, for the monitor to join.
    pub fn signal(key: impl Into<String>, signal: &Signal) -> Self {
        Self::encode(topics::SIGNALS, key, signal)
    }

    /// The media stage's extract of a clip, for the stages that read frames and audio.
    pub fn extract(key: impl Into<String>, extract: &MediaExtract) -> Self {
        Self::encode(topics::MEDIA, key, extract)
    }

    /// A clip's transcript.
    pub fn transcript(key: impl Into<String>, transcript: &Transcript) -> Self {
        Self::encode(topics::TRANSCRIPTS, key, transcript)
    }

    /// A clip's verdict under the active policy.
    pub fn verdict(key: impl Into<String>, verdict: &Verdict) -> Self {
        Self::encode(topics::VERDICTS, key, verdict)
    }

    /// A clip's outgoing rendition (or why it has none).
    pub fn rendition(key: impl Into<String>, rendition: &Rendition) -> Self {
        Self::encode(topics::RENDITIONS, key, rendition)
    }

    /// A reviewer's decision, for the platform to act on.
    pub fn enforcement(key: impl Into<String>, enforcement: &Enforcement) -> Self {
        Self::encode(topics::ENFORCEMENT, key, enforcement)
    }

    /// A clip's verdict under the shadow policy.
    pub fn shadow_verdict(key: impl Into<String>, verdict: &Verdict) -> Self {
        Self::encode(topics::VERDICTS_SHADOW, key, verdict)
    }

    /// A message that could not be processed, with the reason.
    pub fn dead_letter(key: impl Into<String>, letter: &DeadLetter) -> Self {
        Self::encode(topics::DLQ, key, letter)
    }
}

/// A stage's typed output, turned into records by the Kafka host.
pub trait Outputs {
    fn into_records(self) -> Vec<Record>;
}

impl Outputs for Vec<Record> {
    fn into_records(self) -> Vec<Record> {
        self
    }
}

impl Outputs for () {
    fn into_records(self) -> Vec<Record> {
        Vec::new()
    }
}

/// Produces records and resolves when the broker acknowledged all of them. Stages that emit
/// outside the request/response flow (the monitor, on timeouts) use it.
pub trait Emitter: Send + Sync {
    fn emit(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), PipelineError>>;
}

/// What a host tells a stage about the message being processed.
#[derive(Clone)]
pub struct ProcessCtx {
    /// The message key: the clip id.
    pub clip_id: String,
    /// The topic the input came from.
    pub topic: &'static str,
    /// 1 for the first attempt at this message in this worker.
    pub attempt: u32,
    pub trace: TraceContext,
    /// Where to produce records outside the returned outputs.
    pub emitter: Arc<dyn Emitter>,
}

impl std::fmt::Debug for ProcessCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessCtx")
            .field("clip_id", &self.clip_id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// A pipeline stage. Settings are immutable; state (models, buffers) lives inside the
/// implementation behind `&self`.
pub trait Stage: Send + Sync + 'static {
    /// The message consumed from the topic of the stage's node ([`crate::graph::Node`]).
    type Input: prost::Message + Default + Clone + Send + 'static;
    /// What one input becomes.
    type Output: Outputs + Send + 'static;

    /// The stage name: consumer group suffix, metric prefix, signal `stage` field.
    fn name(&self) -> &'static str;

    /// The longest one attempt may take before the host gives up on it.
    fn attempt_timeout(&self) -> std::time::Duration;

    /// Overrides the host's in-flight bound (the monitor holds a slot per clip it is joining).
    fn max_in_flight(&self) -> Option<usize> {
        None
    }

    /// Processes one input. Bad input is not an error here: a stage turns it into an error
    /// signal in its outputs. `Err` means the attempt failed (retryable or a bug); after bounded
    /// retries the host dead-letters the message and emits [`Stage::poison_outputs`].
    fn process(
        &self,
        input: Self::Input,
        ctx: &ProcessCtx,
    ) -> impl Future<Output = Result<Self::Output, StageError>> + Send;

    /// The clip id an input carries in its payload, for a message that arrived without a key
    /// (the key must be the clip id): the dead letter and the error verdict are then keyed by
    /// it. `None` (the default, for inputs only clipguard's stages produce): a dead letter alone.
    fn clip_id_of(&self, _input: &Self::Input) -> Option<String> {
        None
    }

    /// Records emitted when a message cannot be processed at all, so the clip still gets a
    /// (fail-closed) verdict. By default an error signal from this stage.
    fn poison_outputs(&self, clip_id: &str, error: &StageError) -> Vec<Record> {
        vec![error_signal_record(self.name(), clip_id, error, None)]
    }

    /// One record of the stage's state topic ([`crate::graph::Node::state`]), called from the
    /// Kafka host's follower thread.
    fn restore(&self, _key: &str, _payload: &[u8]) {}

    /// Starts background work (timers) once the host is ready to emit.
    fn start(self: &Arc<Self>, _emitter: Arc<dyn Emitter>) {}

    /// Called when the host stops consuming (SIGTERM): release work that is waiting for more
    /// input (the monitor's joins) by failing it. The host abandons such work without outputs and
    /// without committing its offsets, so the partition's next owner redoes it whole.
    fn drain(&self) {}
}

/// One attempt at an input, as every host runs it: the stage's [`Stage::process`] with panics
/// caught and [`Stage::attempt_timeout`] enforced, both as internal errors ([`contained`]).
pub async fn attempt<S: Stage>(
    stage: &S,
    input: S::Input,
    ctx: &ProcessCtx,
) -> Result<S::Output, StageError> {
    contained(stage.attempt_timeout(), stage.process(input, ctx)).await
}

/// A call into a stage as every host makes it (the Kafka and in-process hosts through
/// [`attempt`], the gRPC services through [`crate::grpc::call`]): a panic becomes an internal
/// `panic` error and a call past `timeout` an internal `attempt_timeout` error, so no input can
/// take a worker down or hold it forever.
pub async fn contained<T>(
    timeout: std::time::Duration,
    call: impl Future<Output = Result<T, StageError>>,
) -> Result<T, StageError> {
    let fut = AssertUnwindSafe(call).catch_unwind();
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(StageError::internal(
                crate::error::kind::PANIC,
                format!("stage panicked: {what}"),
            ))
        }
        Err(_) => Err(StageError::internal(
            crate::error::kind::ATTEMPT_TIMEOUT,
            format!("attempt took longer than {timeout:?}"),
        )),
    }
}

/// What a message that cannot be processed becomes: a dead letter on `clips.dlq` (the payload
/// kept unless it would push the letter over the message limit) and the stage's
/// [`Stage::poison_outputs`], so the clip still gets a fail-closed verdict.
#[allow(clippy::too_many_arguments)]
pub fn dead_letter_records<S: Stage>(
    stage: &S,
    topic: &str,
    partition: i32,
    offset: i64,
    clip_id: &str,
    payload: &[u8],
    error: &StageError,
    attempts: u32,
) -> Vec<Record> {
    let mut reason = format!("{}: {}", error.kind, error.message);
    let payload = if payload.len() > topics::MAX_MESSAGE_BYTES - 64 * 1024 {
        reason.push_str(&format!(" (payload of {} bytes not kept)", payload.len()));
        Vec::new()
    } else {
        payload.to_vec()
    };
    let letter = DeadLetter {
        stage: stage.name().to_string(),
        topic: topic.to_string(),
        partition,
        offset,
        key: clip_id.to_string(),
        payload,
        reason,
        attempts,
        failed_at_ms: crate::now_ms(),
    };
    let mut records = vec![Record::dead_letter(clip_id, &letter)];
    // Without a clip id there is nobody to give a verdict to (and none to make up).
    if !clip_id.is_empty() {
        let mut poison = stage.poison_outputs(clip_id, error);
        stamp(&mut poison, stage.name(), clip_id, attempts.max(1));
        records.extend(poison);
    }
    records
}

/// What the host writes on every signal `stage` emits, so no stage has to: the attempt it came
/// from, the clip id (the message key) where the stage left it empty, and the time it was
/// produced where the stage did not say. Records on the signals topic that are not this stage's
/// signals are left as they are.
pub fn stamp(records: &mut [Record], stage: &str, clip_id: &str, attempt: u32) {
    for r in records.iter_mut().filter(|r| r.topic == topics::SIGNALS) {
        let Ok(mut signal) = <Signal as prost::Message>::decode(r.payload.as_slice()) else {
            continue;
        };
        if signal.stage != stage {
            continue;
        }
        stamp_signal(&mut signal, clip_id, attempt);
        r.payload = prost::Message::encode_to_vec(&signal);
    }
}

/// The first of `records` on a topic outside `produces` (the stage's node), as the internal
/// error the host dead-letters it with.
pub fn undeclared(records: &[Record], produces: &[&str]) -> Option<StageError> {
    records
        .iter()
        .find(|r| !produces.contains(&r.topic))
        .map(|r| {
            StageError::internal(
                crate::error::kind::UNDECLARED_OUTPUT,
                format!(
                    "the stage produced a record on `{}`, which its node does not declare",
                    r.topic
                ),
            )
        })
}

/// [`stamp`] on one signal.
pub fn stamp_signal(signal: &mut Signal, clip_id: &str, attempt: u32) {
    signal.attempt = attempt;
    if signal.clip_id.is_empty() {
        signal.clip_id = clip_id.to_string();
    }
    if signal.produced_at_ms == 0 {
        signal.produced_at_ms = crate::now_ms();
    }
}

/// An error signal record for `clips.signals`.
pub fn error_signal_record(
    stage: &str,
    clip_id: &str,
    error: &StageError,
    context: Option<ClipContext>,
) -> Record {
    let signal = error_signal(stage, clip_id, error, context);
    Record::signal(clip_id, &signal)
}

/// The signal of a stage that failed on a clip.
pub fn error_signal(
    stage: &str,
    clip_id: &str,
    error: &StageError,
    context: Option<ClipContext>,
) -> Signal {
    Signal {
        clip_id: clip_id.to_string(),
        stage: stage.to_string(),
        error: Some(StageErrorMsg {
            kind: error.kind.to_string(),
            message: error.message.clone(),
        }),
        context,
        produced_at_ms: crate::now_ms(),
        ..Default::default()
    }
}

/// An emitter for hosts without a broker (in-process, gRPC): refuses to emit.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEmitter;

impl Emitter for NoEmitter {
    fn emit(&self, _records: Vec<Record>) -> BoxFuture<'_, Result<(), PipelineError>> {
        Box::pin(async {
            Err(PipelineError::Server(
                "this host cannot emit records".into(),
            ))
        })
    }
}
