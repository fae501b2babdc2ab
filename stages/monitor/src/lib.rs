//! The monitor stage: joins each clip's signals and issues exactly one verdict.
//!
//! Signals arrive on `clips.signals`, keyed by clip id (so all of a clip's signals reach the same
//! monitor instance). The monitor waits for the expected set of stages (config), de-duplicates by
//! `(clip_id, stage)`, and decides ([`decide::decide`]) as soon as the set is complete, the media
//! stage reports undecodable media, or the clip's deadline passes (fail closed: `review` by
//! default, never a silent `allow`). Verdicts go to the compacted `clips.verdicts`, keyed by
//! clip id.
//!
//! Delivery: processing a signal does not finish until its clip's verdict is acknowledged by the
//! broker, so the Kafka host never commits a signal's offset before the verdict it fed exists. A
//! crash replays the uncommitted signals and rebuilds the join. Signals for clips already decided
//! by this instance are dropped (bounded memory of recent clip ids), so redelivered signals never
//! produce a second, different verdict.
//!
//! ```no_run
//! use clipguard_monitor::{MonitorConfig, decide::decide};
//! let verdict = decide("clip-1", &[], &MonitorConfig::default(), true);
//! assert_eq!(verdict.decision(), clipguard_schemas::Decision::Review);
//! ```

pub mod decide;
pub mod grpc;
pub mod json;
pub mod policy;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clipguard_pipeline::{Emitter, ProcessCtx, Record, Stage, StageError, topics};
use clipguard_schemas::{Decision, Signal, Verdict};
use serde::{Deserialize, Deserializer};
use tokio::sync::oneshot;

/// Stage name and consumer group suffix.
pub const NAME: &str = "monitor";

fn decision_from_word<'de, D: Deserializer<'de>>(d: D) -> Result<Decision, D::Error> {
    let word = String::deserialize(d)?;
    Decision::from_word(&word).ok_or_else(|| {
        serde::de::Error::custom(format!("`{word}` is not one of allow, review, block"))
    })
}

/// Settings of the monitor.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MonitorConfig {
    /// Stages whose signal every clip needs before a decision (`media`, `hashmatch`, ...).
    pub expected_stages: Vec<String>,
    /// Seconds to wait for the expected signals after the first one arrives.
    pub timeout_s: f64,
    /// Decision when stages are still missing at the deadline (`review` or `block`).
    #[serde(deserialize_with = "decision_from_word")]
    pub on_timeout: Decision,
    /// Decision for media that cannot be decoded.
    #[serde(deserialize_with = "decision_from_word")]
    pub on_media_error: Decision,
    /// Decision when another stage reports an error for the clip.
    #[serde(deserialize_with = "decision_from_word")]
    pub on_stage_error: Decision,
    /// Decision for a category score at or above `score_threshold`.
    #[serde(deserialize_with = "decision_from_word")]
    pub on_flag: Decision,
    /// Category score that counts as a finding.
    pub score_threshold: f32,
    /// Recorded in every verdict.
    pub policy_version: String,
    /// Clips joined at once (each holds its signals' offsets uncommitted).
    pub max_pending_clips: usize,
    /// Recently decided clip ids remembered to drop redelivered signals.
    pub remember_decided: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            expected_stages: vec![
                "media".into(),
                "hashmatch".into(),
                "transcribe".into(),
                "classify".into(),
                "classify_transcript".into(),
            ],
            timeout_s: 30.0,
            on_timeout: Decision::Review,
            on_media_error: Decision::Block,
            on_stage_error: Decision::Review,
            on_flag: Decision::Review,
            score_threshold: 0.5,
            policy_version: "builtin-1".into(),
            max_pending_clips: 10_000,
            remember_decided: 200_000,
        }
    }
}

impl MonitorConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        const STAGES: &[&str] = &[
            "media",
            "hashmatch",
            "transcribe",
            "classify",
            "classify_transcript",
        ];
        if self.expected_stages.is_empty() {
            problems.push("monitor.expected_stages: must name at least `media`".into());
        }
        for s in &self.expected_stages {
            if !STAGES.contains(&s.as_str()) {
                problems.push(format!(
                    "monitor.expected_stages: unknown stage `{s}` (known: {})",
                    STAGES.join(", ")
                ));
            }
        }
        if self.timeout_s.is_nan() || self.timeout_s <= 0.0 {
            problems.push(format!("monitor.timeout_s: {} must be > 0", self.timeout_s));
        }
        if self.on_timeout == Decision::Allow {
            problems.push("monitor.on_timeout: `allow` would let unchecked clips through; use review or block".into());
        }
        if self.on_media_error == Decision::Allow {
            problems
                .push("monitor.on_media_error: `allow` would let undecodable clips through".into());
        }
        if !(0.0..=1.0).contains(&self.score_threshold) {
            problems.push(format!(
                "monitor.score_threshold: {} is outside 0..=1",
                self.score_threshold
            ));
        }
        if self.max_pending_clips == 0 {
            problems.push("monitor.max_pending_clips: must be >= 1".into());
        }
    }
}

type Waiter = oneshot::Sender<Result<(), StageError>>;

#[derive(Debug)]
struct Pending {
    signals: BTreeMap<String, Signal>,
    deadline: Instant,
    waiters: Vec<Waiter>,
}

/// Bounded memory of decided clip ids.
#[derive(Debug, Default)]
struct Decided {
    set: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl Decided {
    fn insert(&mut self, id: String) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct JoinState {
    pending: HashMap<String, Pending>,
    decided: Decided,
    /// The host stopped consuming: no more decisions by deadline (the next owner replays).
    draining: bool,
}

/// The monitor stage (settings + join state).
#[derive(Debug)]
pub struct MonitorStage {
    config: MonitorConfig,
    state: Mutex<JoinState>,
}

fn lock(m: &Mutex<JoinState>) -> std::sync::MutexGuard<'_, JoinState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MonitorStage {
    pub fn new(config: MonitorConfig) -> Self {
        let state = JoinState {
            decided: Decided {
                capacity: config.remember_decided,
                ..Default::default()
            },
            ..Default::default()
        };
        Self {
            config,
            state: Mutex::new(state),
        }
    }

    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// Decides `clip_id` now (complete or expired), emits the verdict and releases the waiters.
    async fn finalize(
        &self,
        clip_id: &str,
        deadline_passed: bool,
        emitter: &dyn Emitter,
    ) -> Result<(), StageError> {
        let Some(pending) = lock(&self.state).pending.remove(clip_id) else {
            return Ok(()); // someone else finalized it
        };
        let signals: Vec<Signal> = pending.signals.values().cloned().collect();
        let verdict = decide::decide(clip_id, &signals, &self.config, deadline_passed);
        let result = emitter
            .emit(vec![verdict_record(&verdict)])
            .await
            .map_err(|e| StageError::external("verdict_delivery", e.to_string()));
        match &result {
            Ok(()) => {
                tracing::info!(clip_id, decision = verdict.decision().word(), reasons = ?verdict.reasons, "verdict");
                lock(&self.state).decided.insert(clip_id.to_string());
            }
            Err(err) => {
                tracing::warn!(clip_id, error = %err, "verdict not delivered; signals will be retried")
            }
        }
        for w in pending.waiters {
            let _ = w.send(result.clone());
        }
        result
    }

    /// Clips whose deadline passed.
    fn expired(&self, now: Instant) -> Vec<String> {
        let state = lock(&self.state);
        if state.draining {
            return Vec::new();
        }
        state
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// The verdict as a record for `clips.verdicts`.
pub fn verdict_record(v: &Verdict) -> Record {
    Record::encode(topics::VERDICTS, &v.clip_id, v)
}

impl Stage for MonitorStage {
    type Input = Signal;
    type Output = ();

    fn name(&self) -> &'static str {
        NAME
    }

    fn input_topic(&self) -> &'static str {
        topics::SIGNALS
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.config.timeout_s + 60.0)
    }

    fn max_in_flight(&self) -> Option<usize> {
        Some(self.config.max_pending_clips)
    }

    async fn process(&self, mut signal: Signal, ctx: &ProcessCtx) -> Result<(), StageError> {
        if signal.clip_id.is_empty() {
            signal.clip_id = ctx.clip_id.clone();
        }
        let clip_id = signal.clip_id.clone();
        let waiter = {
            let mut state = lock(&self.state);
            if state.draining {
                return Err(StageError::external(
                    "draining",
                    "the monitor is shutting down",
                ));
            }
            if state.decided.set.contains(&clip_id) {
                tracing::debug!(clip_id, stage = %signal.stage, "signal for a decided clip dropped");
                return Ok(());
            }
            let timeout = Duration::from_secs_f64(self.config.timeout_s);
            let pending = state
                .pending
                .entry(clip_id.clone())
                .or_insert_with(|| Pending {
                    signals: BTreeMap::new(),
                    deadline: Instant::now() + timeout,
                    waiters: Vec::new(),
                });
            pending
                .signals
                .entry(signal.stage.clone())
                .or_insert(signal);
            let signals: Vec<Signal> = pending.signals.values().cloned().collect();
            if decide::complete(&signals, &self.config) {
                None
            } else {
                let (tx, rx) = oneshot::channel();
                pending.waiters.push(tx);
                Some(rx)
            }
        };
        match waiter {
            None => self.finalize(&clip_id, false, ctx.emitter.as_ref()).await,
            Some(rx) => rx.await.unwrap_or_else(|_| {
                Err(StageError::internal(
                    "join_dropped",
                    "the clip's join ended without a verdict",
                ))
            }),
        }
    }

    /// On drain, incomplete joins are released without a verdict: deciding them now by deadline
    /// would fail closed early, and the next owner, which replays their uncommitted signals with
    /// whatever arrived since, could then decide differently.
    fn drain(&self) {
        let pending: Vec<Pending> = {
            let mut state = lock(&self.state);
            state.draining = true;
            state.pending.drain().map(|(_, p)| p).collect()
        };
        tracing::info!(
            clips = pending.len(),
            "releasing incomplete joins for the next owner"
        );
        for p in pending {
            for w in p.waiters {
                let _ = w.send(Err(StageError::external(
                    "draining",
                    "the monitor is shutting down",
                )));
            }
        }
    }

    fn poison_outputs(&self, clip_id: &str, error: &StageError) -> Vec<Record> {
        // A signal the monitor cannot read still ends in a (fail-closed) verdict for its clip.
        let cfg = &self.config;
        let mut v = decide::decide(clip_id, &[], cfg, true);
        v.reasons.push(format!("monitor_error:{}", error.kind));
        v.rationale = format!(
            "{}: a signal for this clip could not be read ({error})",
            cfg.on_timeout.word()
        );
        vec![verdict_record(&v)]
    }

    fn start(self: &Arc<Self>, emitter: Arc<dyn Emitter>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let Some(stage) = me.upgrade() else { return };
                for clip_id in stage.expired(Instant::now()) {
                    let _ = stage.finalize(&clip_id, true, emitter.as_ref()).await;
                }
            }
        });
    }
}
