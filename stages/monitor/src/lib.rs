//! The monitor stage: joins each clip's signals and issues exactly one verdict.
//!
//! Signals arrive on `clips.signals`, keyed by clip id (so all of a clip's signals reach the same
//! monitor instance). The monitor waits for the expected set of stages (config), de-duplicates by
//! `(clip_id, stage)`, and decides ([`decide::decide`]) as soon as the set is complete, the media
//! stage reports undecodable media, a CSAM bank matched, or the clip's deadline passes (the
//! policy's fail-closed action, never a silent `allow`). The decision applies the policy file
//! ([`policy`]) per audience, optionally consults a reasoning model ([`reasoning`]), and goes
//! to the compacted `clips.verdicts`, keyed by clip id. A shadow policy, when configured, is
//! decided on the same findings and published on `clips.verdicts.shadow`, with a
//! disagreement counter.
//!
//! Delivery: processing a signal does not finish until its clip's verdict is acknowledged by the
//! broker, so the Kafka host never commits a signal's offset before the verdict it fed exists. A
//! crash replays the uncommitted signals and rebuilds the join. Signals for clips already decided
//! by this instance are dropped (bounded memory of recent clip ids), so redelivered signals never
//! produce a second, different verdict.
//!
//! ```no_run
//! use clipguard_monitor::{MonitorConfig, decide::decide};
//! use clipguard_policy::{Policy, PolicyError};
//! let verdict = decide("clip-1", &[], &MonitorConfig::default(), &Policy::default_policy(), true);
//! assert_eq!(verdict.decision(), clipguard_schemas::Decision::Review);
//! ```

pub mod decide;
pub mod grpc;
pub mod json;
mod metrics;
pub mod reasoning;
pub mod replay;

pub use metrics::MonitorMetrics;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::path::PathBuf;

use clipguard_pipeline::{Emitter, ProcessCtx, Record, Stage, StageError, topics};
use clipguard_schemas::names::stage;
use clipguard_schemas::{Signal, Verdict};
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::reasoning::{Reasoner, ReasoningConfig};
use clipguard_policy::{Policy, PolicyError};

/// Stage name and consumer group suffix.
pub const NAME: &str = stage::MONITOR;

/// Settings of the monitor.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MonitorConfig {
    /// Stages whose signal every clip needs before a decision (`media`, `hashmatch`, ...).
    pub expected_stages: Vec<String>,
    /// Seconds to wait for the expected signals after the first one arrives.
    pub timeout_s: f64,
    /// The policy file (TOML); unset = the shipped `policy/default.toml`. It owns the
    /// thresholds and actions, the fail-closed actions and the version every verdict records.
    pub policy: Option<PathBuf>,
    /// A second policy decided beside the active one on the same findings; its verdicts go to
    /// `clips.verdicts.shadow` and disagreements are counted. Unset = none.
    pub shadow_policy: Option<PathBuf>,
    /// Optional reasoning model over an OpenAI-compatible API (`[monitor.reasoning]`).
    pub reasoning: ReasoningConfig,
    /// Clips joined at once (each holds its signals' offsets uncommitted).
    pub max_pending_clips: usize,
    /// Recently decided clip ids remembered to drop redelivered signals.
    pub remember_decided: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            expected_stages: stage::SIGNALLING.iter().map(|s| s.to_string()).collect(),
            timeout_s: 30.0,
            policy: None,
            shadow_policy: None,
            reasoning: ReasoningConfig::default(),
            max_pending_clips: 10_000,
            remember_decided: 200_000,
        }
    }
}

impl MonitorConfig {
    /// The active policy: the configured file, else the shipped one.
    pub fn load_policy(&self) -> Result<Policy, PolicyError> {
        match &self.policy {
            Some(path) => Policy::load(path),
            None => Ok(Policy::default_policy()),
        }
    }

    pub fn validate(&self, problems: &mut Vec<String>) {
        const STAGES: &[&str] = stage::SIGNALLING;
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
        for (key, path) in [
            ("policy", &self.policy),
            ("shadow_policy", &self.shadow_policy),
        ] {
            if let Some(path) = path
                && let Err(e) = Policy::load(path)
            {
                problems.push(format!("monitor.{key}: {e}"));
            }
        }
        self.reasoning.validate(problems);
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

/// The monitor stage (settings, policies, reasoning client, join state).
#[derive(Debug)]
pub struct MonitorStage {
    config: MonitorConfig,
    policy: Policy,
    shadow: Option<Policy>,
    reasoner: Option<Reasoner>,
    metrics: MonitorMetrics,
    state: Mutex<JoinState>,
}

fn lock(m: &Mutex<JoinState>) -> std::sync::MutexGuard<'_, JoinState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MonitorStage {
    /// Loads the policies; a missing or invalid policy file fails here with every problem.
    pub fn new(config: MonitorConfig) -> Result<Self, PolicyError> {
        let policy = config.load_policy()?;
        let shadow = match &config.shadow_policy {
            Some(path) => Some(Policy::load(path)?),
            None => None,
        };
        let reasoner = config
            .reasoning
            .enabled()
            .then(|| Reasoner::new(config.reasoning.clone()));
        let state = JoinState {
            decided: Decided {
                capacity: config.remember_decided,
                ..Default::default()
            },
            ..Default::default()
        };
        Ok(Self {
            config,
            policy,
            shadow,
            reasoner,
            metrics: MonitorMetrics::default(),
            state: Mutex::new(state),
        })
    }

    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn metrics(&self) -> &MonitorMetrics {
        &self.metrics
    }

    /// The verdict for a clip's signals: the policy engine, then the reasoning backend when
    /// configured (never waiting past `deadline`), and the shadow policy's verdict if any.
    pub async fn decide(
        &self,
        clip_id: &str,
        signals: &[Signal],
        deadline_passed: bool,
        deadline: Instant,
    ) -> (Verdict, Option<Verdict>) {
        let findings = decide::gather(
            clip_id,
            signals,
            &self.config,
            &self.policy,
            deadline_passed,
        );
        let mut verdict = decide::verdict(&findings, &self.policy);
        if let Some(r) = &self.reasoner {
            match r.reason(&findings, &self.policy, deadline).await {
                Ok(answer) => {
                    reasoning::apply(&mut verdict, &findings, &answer, r.model());
                    self.count_reasoning("used");
                }
                Err(why) => {
                    tracing::warn!(clip_id, reason = %why, "reasoning backend not used");
                    reasoning::record_fallback(&mut verdict, &why);
                    self.count_reasoning(why.kind());
                }
            }
        }
        let shadow = self.shadow.as_ref().map(|p| {
            let s = decide::verdict(&findings, p);
            self.metrics.shadow(verdict.decision(), s.decision());
            s
        });
        (verdict, shadow)
    }

    fn count_reasoning(&self, outcome: &str) {
        self.metrics.reasoning(outcome);
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
        let (verdict, shadow) = self
            .decide(clip_id, &signals, deadline_passed, pending.deadline)
            .await;
        let mut records = vec![verdict_record(&verdict)];
        if let Some(s) = &shadow {
            records.push(Record::encode(topics::VERDICTS_SHADOW, &s.clip_id, s));
        }
        let result = emitter
            .emit(records)
            .await
            .map_err(|e| StageError::external("verdict_delivery", e.to_string()));
        match &result {
            Ok(()) => {
                tracing::info!(clip_id, decision = verdict.decision().word(), reasons = ?verdict.reasons, "verdict");
                let submitted_at_ms = signals
                    .iter()
                    .filter_map(|s| s.context.as_ref().map(|c| c.submitted_at_ms))
                    .find(|&ms| ms > 0)
                    .unwrap_or(0);
                self.metrics
                    .verdict(verdict.decision(), deadline_passed, submitted_at_ms);
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
                self.metrics.dropped("already_decided");
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
        let mut v = decide::decide(clip_id, &[], &self.config, &self.policy, true);
        v.reasons.push(format!("monitor_error:{}", error.kind));
        v.rationale = format!(
            "{} for every audience — a signal for this clip could not be read ({error})",
            self.policy.on_missing.word()
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
