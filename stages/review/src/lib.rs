//! The review stage: `review` verdicts reach people. It consumes `clips.verdicts`; a verdict
//! whose decision is `review` in any audience opens a case (once per clip and verdict
//! revision) in the cases database ([`db`]): SQLite by default, PostgreSQL in production.
//! Reviewers pull cases from queues (category × audience); two never get the same case, and a
//! case whose reviewer disappears returns to its queue when the lease ends. A decision (allow,
//! review or block per audience, with a reason) publishes the clip's next verdict revision on
//! `clips.verdicts` (engine `review:<reviewer>`) and an [`Enforcement`] record on
//! `clips.enforcement` for the platform to notify the user: both are written to the database's
//! outbox in the decision's transaction, and the review worker publishes the outbox until the
//! broker acknowledged it. Every action is in the append-only audit log.
//!
//! Reviewers work in the console the worker serves ([`console`], `review.console_listen`), or
//! from the terminal: `clipguard cases queues | list | show | claim | decide | accounts`
//! ([`cli`]).

pub mod accounts;
pub mod cli;
pub mod console;
pub mod db;
pub mod grpc;
pub mod metrics;
pub mod reports;

use std::sync::Arc;
use std::time::Duration;

use clipguard_pipeline::{Emitter, ProcessCtx, Record, Stage, StageError};
use clipguard_schemas::names::stage;
use clipguard_schemas::{Enforcement, Verdict};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::db::{Cases, Outgoing};

/// Stage name and consumer group suffix.
pub const NAME: &str = stage::REVIEW;

/// Settings of the review stage (`[review]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ReviewConfig {
    /// `sqlite://PATH` (created when missing) or `postgres://USER:PASSWORD@HOST/DB`. Empty
    /// (the default): `sqlite://$XDG_DATA_HOME/clipguard/review.db`
    /// (`~/.local/share/clipguard/review.db`).
    pub database_url: String,
    /// PostgreSQL connections per worker (SQLite uses one).
    pub max_connections: u32,
    /// Seconds a reviewer holds a case before it returns to its queue.
    pub lease_s: f64,
    /// Seconds between looks at the outbox for decisions to publish.
    pub publish_interval_s: f64,
    /// Where the reviewer console listens (`127.0.0.1:8095`; `0.0.0.0:8095` in a pod, behind a
    /// TLS-terminating ingress); empty (the default): no console. Port 0 picks a free port
    /// (`clipguard stage review` prints it as `listening console=ADDR`).
    pub console_listen: String,
    /// Marks the session cookie `Secure` (the console is reached over HTTPS).
    pub console_secure_cookie: bool,
    /// Hours a console session lasts before its reviewer signs in again.
    pub session_hours: f64,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        Self {
            database_url: String::new(),
            max_connections: 8,
            lease_s: 600.0,
            publish_interval_s: 1.0,
            console_listen: String::new(),
            console_secure_cookie: false,
            session_hours: 8.0,
        }
    }
}

impl ReviewConfig {
    /// The database to use: `database_url`, or the SQLite default.
    pub fn url(&self) -> String {
        if !self.database_url.is_empty() {
            return self.database_url.clone();
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/share"))
            })
            .unwrap_or_else(std::env::temp_dir);
        format!("sqlite://{}", base.join("clipguard/review.db").display())
    }

    pub fn validate(&self, problems: &mut Vec<String>) {
        let url = &self.url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            problems.push(format!(
                "review.database_url: `{url}` is neither sqlite://PATH nor postgres://…"
            ));
        }
        for (key, v, lo, hi) in [
            ("lease_s", self.lease_s, 5.0, 86_400.0),
            ("publish_interval_s", self.publish_interval_s, 0.05, 60.0),
            ("max_connections", self.max_connections as f64, 1.0, 256.0),
            ("session_hours", self.session_hours, 0.1, 24.0 * 7.0),
        ] {
            if !(lo..=hi).contains(&v) {
                problems.push(format!("review.{key}: {v} is outside {lo}..={hi}"));
            }
        }
        if let Err(e) = self.console_addr() {
            problems.push(e);
        }
    }

    /// The console's address, when it has one.
    pub fn console_addr(&self) -> Result<Option<std::net::SocketAddr>, String> {
        if self.console_listen.is_empty() {
            return Ok(None);
        }
        self.console_listen.parse().map(Some).map_err(|e| {
            format!(
                "review.console_listen: `{}` is not HOST:PORT ({e})",
                self.console_listen
            )
        })
    }

    pub fn lease_ms(&self) -> i64 {
        (self.lease_s * 1000.0) as i64
    }
}

/// Why review could not do something.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("{0}")]
    Config(String),
    #[error("review database: {0}")]
    Database(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("refused: {0}")]
    Refused(String),
}

impl clipguard_pipeline::Failure for ReviewError {
    fn domain(&self) -> clipguard_pipeline::ErrorDomain {
        use clipguard_pipeline::ErrorDomain;
        match self {
            ReviewError::Database(_) => ErrorDomain::External,
            _ => ErrorDomain::Input,
        }
    }
}

/// The review stage: opens cases, publishes decisions.
#[derive(Debug)]
pub struct ReviewStage {
    config: ReviewConfig,
    cases: OnceCell<Cases>,
    draining: std::sync::atomic::AtomicBool,
    drained: tokio::sync::watch::Sender<bool>,
    /// The console's socket, bound at construction (a taken port is a start-up error), served
    /// from [`Stage::start`].
    console: std::sync::Mutex<Option<std::net::TcpListener>>,
    console_addr: Option<std::net::SocketAddr>,
    media: clipguard_media::MediaConfig,
    store: Option<clipguard_pipeline::store::MediaStore>,
    rescan: Option<Rescan>,
    metrics: metrics::ReviewMetrics,
}

/// Decides a clip again from its stored signals under the policy in force now (the replay
/// code): what an appeal shows beside the appealed decision. `Ok(None)`: its signals are no
/// longer kept.
#[derive(Clone)]
#[allow(clippy::type_complexity)]
pub struct Rescan(
    pub  Arc<
        dyn Fn(
                String,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<Option<Verdict>, String>> + Send>,
            > + Send
            + Sync,
    >,
);

impl std::fmt::Debug for Rescan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rescan")
    }
}

impl ReviewStage {
    /// The stage; the database is opened (and its schema applied) at the first verdict or when
    /// the host starts the stage, whichever comes first. `store` (where clips' bytes are kept)
    /// and `media` (the decoder's limits) give the console its frames.
    pub fn new(
        config: ReviewConfig,
        media: clipguard_media::MediaConfig,
        store: Option<clipguard_pipeline::store::MediaStore>,
    ) -> Result<Self, ReviewError> {
        let mut problems = Vec::new();
        config.validate(&mut problems);
        if !problems.is_empty() {
            return Err(ReviewError::Config(problems.join("; ")));
        }
        let (console, console_addr) = match config.console_addr().map_err(ReviewError::Config)? {
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr).map_err(|e| {
                    ReviewError::Config(format!(
                        "review.console_listen: cannot listen on {addr}: {e}"
                    ))
                })?;
                listener
                    .set_nonblocking(true)
                    .map_err(|e| ReviewError::Config(e.to_string()))?;
                let bound = listener.local_addr().ok();
                (Some(listener), bound)
            }
            None => (None, None),
        };
        Ok(Self {
            config,
            cases: OnceCell::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            drained: tokio::sync::watch::Sender::new(false),
            console: std::sync::Mutex::new(console),
            console_addr,
            media,
            store,
            rescan: None,
            metrics: metrics::ReviewMetrics::default(),
        })
    }

    /// Appeals get a re-scan from `rescan`.
    pub fn with_rescan(mut self, rescan: Rescan) -> Self {
        self.rescan = Some(rescan);
        self
    }

    pub fn metrics(&self) -> &metrics::ReviewMetrics {
        &self.metrics
    }

    /// A user's report of a clip (see [`take_report`]).
    pub async fn report(
        &self,
        clip_id: &str,
        reason: &str,
        reporter: &str,
    ) -> Result<reports::Reported, ReviewError> {
        take_report(
            self.cases().await?,
            &self.metrics,
            clip_id,
            reason,
            reporter,
        )
        .await
    }

    /// A user's appeal of a clip's decision (see [`take_appeal`]).
    pub async fn appeal(
        &self,
        clip_id: &str,
        statement: &str,
        appellant: &str,
    ) -> Result<(reports::Appealed, Option<Verdict>), ReviewError> {
        take_appeal(
            self.cases().await?,
            self.rescan.as_ref(),
            &self.metrics,
            clip_id,
            statement,
            appellant,
        )
        .await
    }

    /// Where the console listens, when it does.
    pub fn console_addr(&self) -> Option<std::net::SocketAddr> {
        self.console_addr
    }

    /// Serves the console on its socket until the worker drains.
    fn serve_console(self: &Arc<Self>) {
        let Some(listener) = self
            .console
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        let stage = Arc::downgrade(self);
        let mut drained = self.drained.subscribe();
        tokio::spawn(async move {
            let state = {
                let Some(stage) = stage.upgrade() else {
                    return;
                };
                let cases = match stage.cases().await {
                    Ok(c) => c.clone(),
                    Err(e) => {
                        tracing::error!(error = %e, "review console: no cases database");
                        return;
                    }
                };
                Arc::new(console::ConsoleState {
                    cases,
                    thumbnails: console::frames::Thumbnails::new(
                        stage.store.clone(),
                        stage.media.clone(),
                    ),
                    rescan: stage.rescan.clone(),
                    metrics: stage.metrics.clone(),
                    lease_ms: stage.config.lease_ms(),
                    session_ms: (stage.config.session_hours * 3_600_000.0) as i64,
                    secure_cookie: stage.config.console_secure_cookie,
                })
            };
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "review console");
                    return;
                }
            };
            let addr = listener.local_addr().ok();
            tracing::info!(addr = ?addr, "review console serving");
            let served = axum::serve(listener, console::router(state))
                .with_graceful_shutdown(async move {
                    let _ = drained.wait_for(|d| *d).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "review console");
            }
        });
    }

    pub async fn cases(&self) -> Result<&Cases, ReviewError> {
        self.cases
            .get_or_try_init(|| async {
                Cases::connect(&self.config.url(), self.config.max_connections).await
            })
            .await
    }

    /// Publishes what decisions left in the outbox; how many records went.
    pub async fn publish(&self, emitter: &dyn Emitter) -> Result<usize, ReviewError> {
        let cases = self.cases().await?;
        let mut decided = Vec::new();
        let n = cases
            .publish(100, async |items: Vec<Outgoing>| {
                let records: Vec<Record> = items
                    .into_iter()
                    .map(|o| match o {
                        Outgoing::Verdict(v) => Record::verdict(v.clip_id.clone(), &v),
                        Outgoing::Enforcement(e) => {
                            decided.push(e.clone());
                            enforcement_record(&e)
                        }
                    })
                    .collect();
                emitter
                    .emit(records)
                    .await
                    .map_err(|e| ReviewError::Database(format!("publishing decisions: {e}")))
            })
            .await?;
        for e in &decided {
            self.metrics.decided(e);
        }
        Ok(n)
    }
}

/// Takes a user's report of a clip (see [`Cases::report`]): over gRPC and the HTTP API alike.
pub async fn take_report(
    cases: &Cases,
    metrics: &metrics::ReviewMetrics,
    clip_id: &str,
    reason: &str,
    reporter: &str,
) -> Result<reports::Reported, ReviewError> {
    let r = cases
        .report(clip_id, reason, reporter, cases.now_ms())
        .await?;
    metrics.received("report");
    tracing::info!(
        clip_id,
        case = r.case_id,
        reports = r.reports,
        "report taken"
    );
    Ok(r)
}

/// Takes a user's appeal of a clip's decision, with the clip decided again under the policy
/// in force now by `rescan` (see [`Cases::appeal`]). A re-scan that fails leaves the appeal
/// without one: it is still taken, and a reviewer decides it.
pub async fn take_appeal(
    cases: &Cases,
    rescan: Option<&Rescan>,
    metrics: &metrics::ReviewMetrics,
    clip_id: &str,
    statement: &str,
    appellant: &str,
) -> Result<(reports::Appealed, Option<Verdict>), ReviewError> {
    // Refuse what cannot be appealed before reading any signal.
    cases.appealable(clip_id, statement, appellant).await?;
    let rescan = match rescan {
        Some(f) => match (f.0)(clip_id.to_string()).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(clip_id, error = %e, "appeal: no re-scan");
                None
            }
        },
        None => None,
    };
    let a = cases
        .appeal(
            clip_id,
            statement,
            appellant,
            rescan.as_ref(),
            cases.now_ms(),
        )
        .await?;
    metrics.received("appeal");
    tracing::info!(clip_id, case = a.case_id, "appeal taken");
    Ok((a, rescan))
}

fn enforcement_record(e: &Enforcement) -> Record {
    Record::enforcement(e.clip_id.clone(), e)
}

impl Stage for ReviewStage {
    type Input = Verdict;
    type Output = Vec<Record>;

    fn name(&self) -> &'static str {
        NAME
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn process(
        &self,
        verdict: Verdict,
        _ctx: &ProcessCtx,
    ) -> Result<Vec<Record>, StageError> {
        let cases = self.cases().await.map_err(into_stage_error)?;
        let now = cases.now_ms();
        // Every revision is the clip's history (and what an appeal contests); a newer one
        // retires the cases of older ones.
        let retired = cases
            .observe(&verdict, now)
            .await
            .map_err(into_stage_error)?;
        if retired > 0 {
            tracing::info!(clip_id = %verdict.clip_id, cases = retired, revision = verdict.revision, "review cases superseded");
        }
        if db::needs_review(&verdict)
            && let Some(id) = cases.open(&verdict, now).await.map_err(into_stage_error)?
        {
            tracing::info!(clip_id = %verdict.clip_id, case = id, "review case opened");
        }
        Ok(Vec::new())
    }

    fn clip_id_of(&self, verdict: &Verdict) -> Option<String> {
        Some(verdict.clip_id.clone()).filter(|id| !id.is_empty())
    }

    /// A verdict that cannot be processed is dead-lettered only (its verdict exists already).
    fn poison_outputs(&self, _clip_id: &str, _error: &StageError) -> Vec<Record> {
        Vec::new()
    }

    /// Publishes decisions from the outbox for as long as the worker runs (until it drains
    /// or the stage is dropped).
    fn start(self: &Arc<Self>, emitter: Arc<dyn Emitter>) {
        self.serve_console();
        let stage = Arc::downgrade(self);
        let every = Duration::from_secs_f64(self.config.publish_interval_s);
        tokio::spawn(async move {
            let mut last_count: Option<std::time::Instant> = None;
            let mut last_sync = std::time::Instant::now();
            loop {
                let Some(stage) = stage.upgrade() else {
                    return;
                };
                if stage.draining.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                if last_count.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    last_count = Some(std::time::Instant::now());
                    if let Ok(cases) = stage.cases().await {
                        // The database's clock, re-measured every minute (see `Cases::now_ms`).
                        if last_sync.elapsed() >= Duration::from_secs(60) {
                            last_sync = std::time::Instant::now();
                            if let Err(e) = cases.sync_clock().await {
                                tracing::warn!(error = %e, "review database clock");
                            }
                        }
                        if let Ok(queues) = cases.queues(cases.now_ms()).await {
                            stage.metrics.queues(&queues);
                        }
                    }
                }
                match stage.publish(emitter.as_ref()).await {
                    Ok(0) => {
                        drop(stage);
                        tokio::time::sleep(every).await;
                    }
                    Ok(n) => tracing::info!(records = n, "review decisions published"),
                    Err(e) => {
                        drop(stage);
                        tracing::warn!(error = %e, "review outbox");
                        tokio::time::sleep(every * 5).await;
                    }
                }
            }
        });
    }

    /// Stops publishing and serving the console; what is left in the outbox goes out from the
    /// next worker.
    fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.drained.send_replace(true);
    }
}

fn into_stage_error(e: ReviewError) -> StageError {
    match e {
        e @ ReviewError::Database(_) => StageError::external("review_database", e.to_string()),
        e => StageError::input("review", e.to_string()),
    }
}
