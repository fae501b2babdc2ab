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
//! are dropped (bounded memory of recent clip ids), so redelivered or late signals never produce
//! a second, different verdict. That memory survives restarts and moves with partitions:
//! `clips.verdicts` is the monitor's state topic (its node's `state`), which the Kafka host
//! reads before consuming and at every assignment, so a replica knows every verdict published
//! before it took over, its own and its peers'. A verdict published by a peer for a clip this
//! instance is still joining ends the join (the clip is decided). Join deadlines count from
//! when the clip's first signal was produced, so a restart does not restart them (with a short
//! grace for the replay to rebuild the join).
//!
//! ```no_run
//! use clipguard_monitor::{Wait, decide::decide};
//! use clipguard_policy::{Policy, PolicyConfig, PolicyError};
//! let verdict = decide("clip-1", &[], &Wait::default(), &Policy::default_policy(), true);
//! assert_eq!(verdict.decision(), clipguard_schemas::Decision::Review);
//! ```

pub mod decide;
pub mod grpc;
pub mod json;
mod metrics;
pub mod reasoning;
pub mod replay;
pub mod wait;

pub use wait::Wait;

pub use metrics::MonitorMetrics;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clipguard_pipeline::graph::Graph;
use clipguard_pipeline::{Emitter, ErrorDomain, Failure, ProcessCtx, Record, Stage, StageError};
use clipguard_schemas::names::stage;
use clipguard_schemas::{Signal, Verdict};
use prost::Message as _;
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::reasoning::{Reasoner, ReasoningConfig};
use clipguard_policy::{Policy, PolicyConfig, PolicyError};

/// Stage name and consumer group suffix.
pub const NAME: &str = stage::MONITOR;

/// Settings of the monitor.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MonitorConfig {
    /// Stages whose signal every clip needs before a decision (`media`, `hashmatch`, ...);
    /// empty (the default) = every stage of the deployment's graph that signals. Names are
    /// checked against the graph ([`Wait::new`]).
    pub expected_stages: Vec<String>,
    /// Seconds to wait for the expected signals after the first one was produced (by its
    /// stage: the time survives a monitor restart; a backlog before the media stage does not
    /// count against it).
    pub timeout_s: f64,
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
            expected_stages: Vec::new(),
            timeout_s: 30.0,
            reasoning: ReasoningConfig::default(),
            max_pending_clips: 10_000,
            remember_decided: 200_000,
        }
    }
}

impl MonitorConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.timeout_s.is_nan() || self.timeout_s <= 0.0 {
            problems.push(format!("monitor.timeout_s: {} must be > 0", self.timeout_s));
        }
        self.reasoning.validate(problems);
        if self.max_pending_clips == 0 {
            problems.push("monitor.max_pending_clips: must be >= 1".into());
        }
    }
}

type Waiter = oneshot::Sender<Result<(), StageError>>;

/// The least time a join waits after it (re)starts, whatever its signals' age (a quarter of
/// the timeout when that is shorter).
const REPLAY_GRACE: Duration = Duration::from_secs(5);

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
    fn remove(&mut self, id: &str) {
        self.set.remove(id);
    }

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

/// Why a monitor could not be built: the deployment's to fix.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The policy file (or the shadow policy's) is missing or invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// An expected stage is not a stage of the pipeline that signals.
    #[error("{0}")]
    ExpectedStages(String),
}

impl Failure for MonitorError {
    fn domain(&self) -> ErrorDomain {
        ErrorDomain::Input
    }
}

/// The monitor stage (settings, policies, reasoning client, join state).
#[derive(Debug)]
pub struct MonitorStage {
    config: MonitorConfig,
    wait: Wait,
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
    /// Loads the policies (`[policy]`); a missing or invalid policy file fails here with every
    /// problem.
    /// `graph` is the deployment's pipeline: the expected stages are its stages that signal
    /// (or the configured subset of them).
    pub fn new(
        config: MonitorConfig,
        policies: &PolicyConfig,
        graph: &Graph,
    ) -> Result<Self, MonitorError> {
        let wait = Wait::new(&config, graph).map_err(MonitorError::ExpectedStages)?;
        let policy = policies.load()?;
        let shadow = policies.load_shadow()?;
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
            wait,
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

    /// What each clip's verdict waits for.
    pub fn wait(&self) -> &Wait {
        &self.wait
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
        let findings = decide::gather(clip_id, signals, &self.wait, &self.policy, deadline_passed);
        let mut verdict = decide::verdict(&findings, &self.policy);
        let consult = self.reasoner.as_ref().filter(|_| {
            let why = self.config.reasoning.wants(&findings);
            if why.is_none() {
                self.count_reasoning("not_uncertain");
            }
            why.is_some()
        });
        if let Some(r) = consult {
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
        // Decided from here on: a signal arriving while the verdict is being made and published
        // is dropped, not the start of a second join (undone if the verdict cannot be
        // delivered, so the retried signals join again).
        let Some(pending) = ({
            let mut state = lock(&self.state);
            let pending = state.pending.remove(clip_id);
            if pending.is_some() {
                state.decided.insert(clip_id.to_string());
            }
            pending
        }) else {
            return Ok(()); // someone else finalized it
        };
        let signals: Vec<Signal> = pending.signals.values().cloned().collect();
        let (verdict, shadow) = self
            .decide(clip_id, &signals, deadline_passed, pending.deadline)
            .await;
        let mut records = vec![verdict_record(&verdict)];
        if let Some(s) = &shadow {
            records.push(Record::shadow_verdict(&s.clip_id, s));
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
            }
            Err(err) => {
                lock(&self.state).decided.remove(clip_id);
                tracing::warn!(clip_id, error = %err, "verdict not delivered; signals will be retried")
            }
        }
        for w in pending.waiters {
            let _ = w.send(result.clone());
        }
        result
    }

    /// When a join that starts with `signal` gives up waiting: `timeout_s` after the signal was
    /// produced, but not before a short grace from now (after a restart, the replay of the
    /// clip's other uncommitted signals must get a chance to complete the join).
    fn deadline_of(&self, signal: &Signal) -> Instant {
        let timeout = Duration::from_secs_f64(self.config.timeout_s);
        let now_ms = clipguard_pipeline::now_ms();
        let age = if signal.produced_at_ms > 0 && signal.produced_at_ms <= now_ms {
            Duration::from_millis((now_ms - signal.produced_at_ms) as u64)
        } else {
            Duration::ZERO
        };
        let grace = (timeout / 4).min(REPLAY_GRACE);
        Instant::now() + timeout.saturating_sub(age).max(grace)
    }

    /// A verdict on `clips.verdicts` (published by this instance or a peer, now or before a
    /// restart): the clip is decided; a join still open for it here ends, its signals finished
    /// (their verdict exists).
    fn restore_verdict(&self, key: &str, payload: &[u8]) {
        let clip_id = match Verdict::decode(payload) {
            Ok(v) if !v.clip_id.is_empty() => v.clip_id,
            _ if !key.is_empty() => key.to_string(),
            _ => return,
        };
        let pending = {
            let mut state = lock(&self.state);
            if state.decided.set.contains(&clip_id) {
                return;
            }
            state.decided.insert(clip_id.clone());
            state.pending.remove(&clip_id)
        };
        self.metrics.restored();
        if let Some(p) = pending {
            tracing::info!(
                clip_id,
                "verdict published elsewhere; the join here ends without a second one"
            );
            for w in p.waiters {
                let _ = w.send(Ok(()));
            }
        }
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
    Record::verdict(&v.clip_id, v)
}

impl Stage for MonitorStage {
    type Input = Signal;
    type Output = ();

    fn name(&self) -> &'static str {
        NAME
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.config.timeout_s + 60.0)
    }

    fn max_in_flight(&self) -> Option<usize> {
        Some(self.config.max_pending_clips)
    }

    fn restore(&self, key: &str, payload: &[u8]) {
        self.restore_verdict(key, payload);
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
            let deadline = self.deadline_of(&signal);
            let pending = state
                .pending
                .entry(clip_id.clone())
                .or_insert_with(|| Pending {
                    signals: BTreeMap::new(),
                    deadline,
                    waiters: Vec::new(),
                });
            pending
                .signals
                .entry(signal.stage.clone())
                .or_insert(signal);
            let signals: Vec<Signal> = pending.signals.values().cloned().collect();
            if decide::complete(&signals, &self.wait) {
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
        let mut v = decide::decide(clip_id, &[], &self.wait, &self.policy, true);
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

#[cfg(test)]
mod tests {
    use super::*;
    use clipguard_pipeline::trace::TraceContext;
    use futures::future::BoxFuture;

    /// Collects emitted records.
    #[derive(Default)]
    struct Collect(Mutex<Vec<Record>>);

    impl Emitter for Collect {
        fn emit(
            &self,
            records: Vec<Record>,
        ) -> BoxFuture<'_, Result<(), clipguard_pipeline::PipelineError>> {
            self.0.lock().unwrap().extend(records);
            Box::pin(async { Ok(()) })
        }
    }

    fn monitor(timeout_s: f64) -> Arc<MonitorStage> {
        Arc::new(
            MonitorStage::new(
                MonitorConfig {
                    expected_stages: vec!["media".into(), "hashmatch".into()],
                    timeout_s,
                    ..Default::default()
                },
                &PolicyConfig::default(),
                &Graph::default(),
            )
            .unwrap(),
        )
    }

    fn ctx(emitter: Arc<Collect>) -> ProcessCtx {
        ProcessCtx {
            clip_id: "c1".into(),
            topic: clipguard_pipeline::graph::MONITOR.consumes,
            attempt: 1,
            trace: TraceContext::new_root(),
            emitter,
        }
    }

    fn signal(stage: &str, produced_at_ms: i64) -> Signal {
        Signal {
            clip_id: "c1".into(),
            stage: stage.into(),
            produced_at_ms,
            ..Default::default()
        }
    }

    fn verdict_payload(clip_id: &str) -> Vec<u8> {
        let v = decide::decide(
            clip_id,
            &[],
            &Wait::default(),
            &Policy::default_policy(),
            true,
        );
        verdict_record(&v).payload
    }

    #[tokio::test]
    async fn a_clip_read_back_as_decided_is_never_decided_again() {
        let m = monitor(30.0);
        m.restore("c1", &verdict_payload("c1"));
        let out = Arc::new(Collect::default());
        for stage in ["media", "hashmatch"] {
            m.process(
                signal(stage, clipguard_pipeline::now_ms()),
                &ctx(out.clone()),
            )
            .await
            .unwrap();
        }
        assert!(out.0.lock().unwrap().is_empty(), "no second verdict");
    }

    #[tokio::test]
    async fn a_peer_verdict_ends_an_open_join_without_a_second_one() {
        let m = monitor(30.0);
        let out = Arc::new(Collect::default());
        let waiting = {
            let (m, c) = (m.clone(), ctx(out.clone()));
            tokio::spawn(async move {
                m.process(signal("media", clipguard_pipeline::now_ms()), &c)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        m.restore("c1", &verdict_payload("c1"));
        let done = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the join ends")
            .unwrap();
        assert!(done.is_ok(), "{done:?}");
        m.process(
            signal("hashmatch", clipguard_pipeline::now_ms()),
            &ctx(out.clone()),
        )
        .await
        .unwrap();
        assert!(out.0.lock().unwrap().is_empty());
    }

    #[test]
    fn deadlines_count_from_when_the_first_signal_was_produced() {
        let m = monitor(20.0);
        let now = Instant::now();
        let now_ms = clipguard_pipeline::now_ms();
        // Produced 12 s ago (before a restart): 8 s left, not 20.
        let left = m.deadline_of(&signal("media", now_ms - 12_000)) - now;
        assert!((7.5..8.5).contains(&left.as_secs_f64()), "{left:?}");
        // Long past: the replay grace (a quarter of the timeout, at most 5 s) still applies.
        let left = m.deadline_of(&signal("media", now_ms - 600_000)) - now;
        assert!((4.5..5.5).contains(&left.as_secs_f64()), "{left:?}");
        // No production time: the whole timeout from now.
        let left = m.deadline_of(&signal("media", 0)) - now;
        assert!((19.5..20.5).contains(&left.as_secs_f64()), "{left:?}");
    }
}
