//! Review cases in a real database: SQLite, the embedded default, or PostgreSQL for production,
//! through one `sqlx` `Any` pool and one set of statements (placeholders written `$1`, turned
//! into `?1` for SQLite; the queue pull adds `FOR UPDATE SKIP LOCKED` on PostgreSQL).
//!
//! - `review_cases`: one row per clip and verdict revision that needs a person; `open`, then
//!   `claimed` by one reviewer until a lease ends, then `decided`.
//! - `review_outbox`: what a decision must publish (the clip's next verdict revision and its
//!   enforcement record), written in the decision's own transaction and published by the
//!   review worker until the broker acknowledged it: a decision is never half-published.
//! - `review_audit`: every action, append-only (the database refuses to update or delete a
//!   row: a trigger).
//!
//! The schema is applied at connect (`review_schema` records its version).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use clipguard_policy::Audience;
use clipguard_schemas::{AudienceDecisions, Decision, Enforcement, Verdict};
use prost::Message as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, ConnectOptions as _, Row as _};

use crate::ReviewError;

/// The longest reason a decision may give (it travels in the verdict and the enforcement
/// record).
pub const MAX_REASON_CHARS: usize = 2000;

/// A reviewer id: 1–64 of `A-Z a-z 0-9 . _ @ -` (it becomes `review:<id>` in verdicts).
pub fn check_reviewer(id: &str) -> Result<(), ReviewError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ReviewError::Refused(format!(
            "reviewer `{id}`: 1–64 of A-Z a-z 0-9 . _ @ -"
        )))
    }
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 4;

/// Version 1: cases, the outbox and the audit log.
const V1_POSTGRES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS review_schema (version BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS review_cases (
        id BIGSERIAL PRIMARY KEY,
        clip_id TEXT NOT NULL,
        verdict_revision BIGINT NOT NULL,
        category TEXT NOT NULL,
        audience TEXT NOT NULL,
        state TEXT NOT NULL,
        reviewer TEXT,
        lease_until_ms BIGINT,
        verdict BYTEA NOT NULL,
        created_ms BIGINT NOT NULL,
        decided_ms BIGINT,
        decision TEXT,
        reason TEXT,
        UNIQUE (clip_id, verdict_revision))",
    "CREATE INDEX IF NOT EXISTS review_cases_queue
        ON review_cases (state, category, audience, created_ms, id)",
    "CREATE TABLE IF NOT EXISTS review_outbox (
        id BIGSERIAL PRIMARY KEY,
        kind TEXT NOT NULL,
        clip_id TEXT NOT NULL,
        payload BYTEA NOT NULL,
        created_ms BIGINT NOT NULL,
        sent_ms BIGINT)",
    "CREATE TABLE IF NOT EXISTS review_audit (
        id BIGSERIAL PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        case_id BIGINT,
        clip_id TEXT,
        detail TEXT NOT NULL)",
    "CREATE OR REPLACE FUNCTION review_audit_append_only() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'review_audit is append-only'; END; $$ LANGUAGE plpgsql",
    "DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'review_audit_append_only') THEN
            CREATE TRIGGER review_audit_append_only BEFORE UPDATE OR DELETE ON review_audit
                FOR EACH ROW EXECUTE FUNCTION review_audit_append_only();
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'review_audit_no_truncate') THEN
            CREATE TRIGGER review_audit_no_truncate BEFORE TRUNCATE ON review_audit
                FOR EACH STATEMENT EXECUTE FUNCTION review_audit_append_only();
        END IF;
    END $$",
];

const V1_SQLITE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS review_schema (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS review_cases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        clip_id TEXT NOT NULL,
        verdict_revision INTEGER NOT NULL,
        category TEXT NOT NULL,
        audience TEXT NOT NULL,
        state TEXT NOT NULL,
        reviewer TEXT,
        lease_until_ms INTEGER,
        verdict BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        decided_ms INTEGER,
        decision TEXT,
        reason TEXT,
        UNIQUE (clip_id, verdict_revision))",
    "CREATE INDEX IF NOT EXISTS review_cases_queue
        ON review_cases (state, category, audience, created_ms, id)",
    "CREATE TABLE IF NOT EXISTS review_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        clip_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        sent_ms INTEGER)",
    "CREATE TABLE IF NOT EXISTS review_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        case_id INTEGER,
        clip_id TEXT,
        detail TEXT NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS review_audit_no_update BEFORE UPDATE ON review_audit
        BEGIN SELECT RAISE(ABORT, 'review_audit is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS review_audit_no_delete BEFORE DELETE ON review_audit
        BEGIN SELECT RAISE(ABORT, 'review_audit is append-only'); END",
];

/// Version 3 (2 was an interim layout of the same tables): cases of three kinds (`verdict`,
/// `report`, `appeal`) — one per clip, revision and kind — with a user's statement, a report
/// count and an appeal's re-scan; console accounts and
/// sessions; every verdict revision of every clip (the clip's history, what an appeal
/// contests). They run once, in the transaction that records version 3.
const V3_POSTGRES: &[&str] = &[
    "ALTER TABLE review_cases ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'verdict'",
    "ALTER TABLE review_cases ADD COLUMN IF NOT EXISTS statement TEXT",
    "ALTER TABLE review_cases ADD COLUMN IF NOT EXISTS reports BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE review_cases ADD COLUMN IF NOT EXISTS rescan BYTEA",
    "ALTER TABLE review_cases ADD COLUMN IF NOT EXISTS verdict_engine TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE review_outbox ADD COLUMN IF NOT EXISTS revision BIGINT",
    "ALTER TABLE review_cases DROP CONSTRAINT IF EXISTS review_cases_clip_id_verdict_revision_key",
    "CREATE UNIQUE INDEX IF NOT EXISTS review_cases_once
        ON review_cases (clip_id, verdict_revision, kind)",
    "CREATE TABLE IF NOT EXISTS review_accounts (
        id TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        disabled_ms BIGINT)",
    "CREATE TABLE IF NOT EXISTS review_sessions (
        token_sha256 TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS review_verdicts (
        clip_id TEXT NOT NULL,
        revision BIGINT NOT NULL,
        engine TEXT NOT NULL,
        decision TEXT NOT NULL,
        policy_version TEXT NOT NULL,
        decided_at_ms BIGINT NOT NULL,
        verdict BYTEA NOT NULL,
        PRIMARY KEY (clip_id, revision))",
];

/// Version 3 on SQLite: a table's UNIQUE constraint cannot be dropped, so `review_cases` is
/// rebuilt with the new columns and constraint, its rows and ids kept.
const V3_SQLITE: &[&str] = &[
    "DROP TABLE IF EXISTS review_cases_v3",
    "CREATE TABLE review_cases_v3 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        clip_id TEXT NOT NULL,
        verdict_revision INTEGER NOT NULL,
        kind TEXT NOT NULL DEFAULT 'verdict',
        category TEXT NOT NULL,
        audience TEXT NOT NULL,
        state TEXT NOT NULL,
        reviewer TEXT,
        lease_until_ms INTEGER,
        verdict BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        decided_ms INTEGER,
        decision TEXT,
        reason TEXT,
        statement TEXT,
        reports INTEGER NOT NULL DEFAULT 0,
        rescan BLOB,
        verdict_engine TEXT NOT NULL DEFAULT '',
        UNIQUE (clip_id, verdict_revision, kind))",
    "INSERT INTO review_cases_v3 (id, clip_id, verdict_revision, category, audience, state,
        reviewer, lease_until_ms, verdict, created_ms, decided_ms, decision, reason)
     SELECT id, clip_id, verdict_revision, category, audience, state, reviewer, lease_until_ms,
        verdict, created_ms, decided_ms, decision, reason FROM review_cases",
    "DROP TABLE review_cases",
    "ALTER TABLE review_cases_v3 RENAME TO review_cases",
    "CREATE INDEX IF NOT EXISTS review_cases_queue
        ON review_cases (state, category, audience, created_ms, id)",
    "ALTER TABLE review_outbox ADD COLUMN revision INTEGER",
    "CREATE TABLE IF NOT EXISTS review_accounts (
        id TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        disabled_ms INTEGER)",
    "CREATE TABLE IF NOT EXISTS review_sessions (
        token_sha256 TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS review_verdicts (
        clip_id TEXT NOT NULL,
        revision INTEGER NOT NULL,
        engine TEXT NOT NULL,
        decision TEXT NOT NULL,
        policy_version TEXT NOT NULL,
        decided_at_ms INTEGER NOT NULL,
        verdict BLOB NOT NULL,
        PRIMARY KEY (clip_id, revision))",
];

/// Version 4: an account's run of failed sign-ins and the time it may try again (see
/// `accounts::throttle_ms`). The same statements on both databases (BIGINT has SQLite's
/// integer affinity).
const V4: &[&str] = &[
    "ALTER TABLE review_accounts ADD COLUMN failed_signins BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE review_accounts ADD COLUMN throttled_until_ms BIGINT",
];

/// One review case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub id: i64,
    pub clip_id: String,
    pub verdict_revision: u32,
    /// The queue: the category that sent the clip to review, and the clip's own audience.
    pub category: String,
    pub audience: String,
    /// `open`, `claimed`, `decided`.
    pub state: String,
    pub reviewer: Option<String>,
    pub lease_until_ms: Option<i64>,
    /// The verdict that opened the case.
    pub verdict: Verdict,
    pub created_ms: i64,
    pub decided_ms: Option<i64>,
    /// `block` / `allow` / `review` per audience, as `adult=…,under_18=…,public_feed=…`.
    pub decision: Option<String>,
    pub reason: Option<String>,
    /// What opened it: `verdict` (the policy said review), `report` or `appeal`.
    pub kind: String,
    /// A report's reason(s) or an appeal's statement, as the user wrote it.
    pub statement: Option<String>,
    /// Reports joined into a report case.
    pub reports: i64,
    /// An appeal's re-scan: the clip's stored signals decided under the policy in force when
    /// the appeal came (`None`: the signals were no longer kept).
    pub rescan: Option<Verdict>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub case_id: Option<i64>,
    pub clip_id: Option<String>,
    pub detail: String,
}

/// A queue and how many cases wait in it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueCount {
    pub category: String,
    pub audience: String,
    pub open: i64,
}

/// Something the review worker must publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Verdict(Box<Verdict>),
    Enforcement(Enforcement),
}

/// A reviewer's decision: one per audience, with the reason the user may be told.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub audiences: [Decision; 3],
    pub reason: String,
}

/// A case to open ([`Cases::insert_case`]).
pub(crate) struct NewCase<'a> {
    pub verdict: &'a Verdict,
    /// `verdict`, `report` or `appeal`.
    pub kind: &'static str,
    pub category: &'a str,
    pub audience: &'a str,
    pub statement: Option<String>,
    pub reports: i64,
    /// An appeal's re-scan, encoded.
    pub rescan: Option<Vec<u8>>,
}

/// The cases' database.
#[derive(Debug, Clone)]
pub struct Cases {
    pub(crate) pool: AnyPool,
    pub(crate) postgres: bool,
    clock: Arc<Clock>,
}

/// The one clock every worker and terminal of a database agrees on: the database's. Leases,
/// throttles and decision times are compared across processes on several machines, so each
/// reads this process's clock corrected by its measured offset from PostgreSQL's
/// (`clock_timestamp()`, re-measured by [`Cases::sync_clock`]). A SQLite file lives on one
/// machine: its offset stays 0.
#[derive(Debug, Default)]
struct Clock {
    /// The database's clock minus this process's, in ms.
    offset_ms: AtomicI64,
    /// Added to this process's clock: only for tests that play a machine whose clock is off.
    local_error_ms: AtomicI64,
}

pub(crate) fn db(e: sqlx::Error) -> ReviewError {
    ReviewError::Database(e.to_string())
}

/// The queue a verdict goes to: the first category whose decision is `review` in the clip's
/// own audience (or in any), else its first reason (`category:NAME` gives NAME; a failed or
/// missing stage's reason its kind, e.g. `timeout`).
pub fn queue_of(v: &Verdict) -> (String, String) {
    let own = Audience::parse(&v.audience).unwrap_or(Audience::PublicFeed);
    let review = Decision::Review as i32;
    let in_own = v
        .categories
        .iter()
        .find(|c| c.audiences.as_ref().is_some_and(|a| own.of(a) == review));
    let category = in_own
        .or_else(|| v.categories.iter().find(|c| c.decision == review))
        .map(|c| c.category.clone())
        .or_else(|| {
            v.reasons
                .first()
                .map(|r| match r.strip_prefix("category:") {
                    Some(category) => category.to_string(),
                    None => r.split(':').next().unwrap_or(r).to_string(),
                })
        })
        .unwrap_or_else(|| "other".into());
    (category, own.name().to_string())
}

/// Whether a verdict needs a person: `review` in any audience, and not a reviewer's own.
pub fn needs_review(v: &Verdict) -> bool {
    let review = Decision::Review as i32;
    !v.engine.starts_with("review:")
        && v.audiences
            .as_ref()
            .is_some_and(|a| [a.adult, a.under_18, a.public_feed].contains(&review))
}

pub(crate) fn decision_text(d: &[Decision; 3]) -> String {
    Audience::ALL
        .iter()
        .map(|a| format!("{}={}", a.name(), d[a.index()].word()))
        .collect::<Vec<_>>()
        .join(",")
}

impl Cases {
    /// Connects to `url` (`sqlite://PATH` — created when missing — or `postgres://…`) and
    /// applies the schema.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, ReviewError> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let url = if !postgres && url.starts_with("sqlite://") && !url.contains('?') {
            // Created when missing; writers wait for each other instead of failing at once.
            format!("{url}?mode=rwc")
        } else {
            url.to_string()
        };
        if !postgres && !url.starts_with("sqlite:") {
            return Err(ReviewError::Config(format!(
                "review.database_url: `{url}` is neither sqlite://PATH nor postgres://…"
            )));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .and_then(|p| p.split('?').next())
            && let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| ReviewError::Config(format!("{}: {e}", dir.display())))?;
        }
        let options = AnyConnectOptions::from_str(&url)
            .map_err(db)?
            .log_statements(tracing::log::LevelFilter::Trace);
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres { max_connections.max(1) } else { 1 })
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(db)?;
        let cases = Self {
            pool,
            postgres,
            clock: Arc::default(),
        };
        cases.apply_schema().await?;
        cases.sync_clock().await?;
        Ok(cases)
    }

    /// Now, in ms since the epoch, on the database's clock (see [`Clock`]).
    pub fn now_ms(&self) -> i64 {
        self.local_ms() + self.clock.offset_ms.load(Ordering::Relaxed)
    }

    fn local_ms(&self) -> i64 {
        clipguard_pipeline::now_ms() + self.clock.local_error_ms.load(Ordering::Relaxed)
    }

    /// Measures this process's clock against PostgreSQL's (half the round trip is the error);
    /// returns the offset in ms. Workers call it at connect and every minute; an offset over a
    /// second is logged, since this machine's clock is then wrong.
    pub async fn sync_clock(&self) -> Result<i64, ReviewError> {
        if !self.postgres {
            return Ok(0);
        }
        // Timed on a connection already held (a wait for one is not the clock's), three times;
        // the shortest round trip gives the offset with the smallest error.
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut best: Option<(i64, i64)> = None;
        for _ in 0..3 {
            let before = self.local_ms();
            let db_ms: i64 = sqlx::query(
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS now_ms",
            )
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?
            .try_get("now_ms")
            .map_err(db)?;
            let after = self.local_ms();
            let rtt = after - before;
            if best.is_none_or(|(r, _)| rtt < r) {
                best = Some((rtt, db_ms - (before + after) / 2));
            }
        }
        drop(conn);
        let offset = best.map_or(0, |(_, offset)| offset);
        let old = self.clock.offset_ms.swap(offset, Ordering::Relaxed);
        if offset.abs() > 1000 && (old - offset).abs() > 100 {
            tracing::warn!(
                offset_ms = offset,
                "this machine's clock is off the review database's; leases and times use the database's"
            );
        }
        Ok(offset)
    }

    /// Plays a machine whose clock is `ms` ahead (negative: behind), for tests of the shared
    /// clock. The corrected clock is right again after the next [`Cases::sync_clock`].
    #[doc(hidden)]
    pub fn pretend_local_clock_is_off_by(&self, ms: i64) {
        self.clock.local_error_ms.store(ms, Ordering::Relaxed);
    }

    /// A transaction that writes: on SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so a read-then-write never fails with "database is locked" when another
    /// process writes (it waits its turn instead).
    pub(crate) async fn write_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, ReviewError> {
        if self.postgres {
            self.pool.begin().await.map_err(db)
        } else {
            self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)
        }
    }

    /// Serialises writers of one clip's cases and revisions for the rest of `tx`: PostgreSQL
    /// takes a transaction-scoped advisory lock on the clip id; SQLite's write transactions
    /// are serial already.
    pub(crate) async fn lock_clip(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        clip_id: &str,
    ) -> Result<(), ReviewError> {
        if self.postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7262025, hashtext($1))")
                .bind(clip_id.to_string())
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    /// `$1` placeholders as this database wants them.
    pub(crate) fn sql(&self, text: &str) -> String {
        if self.postgres {
            text.to_string()
        } else {
            text.replace('$', "?")
        }
    }

    async fn apply_schema(&self) -> Result<(), ReviewError> {
        // Two processes opening one SQLite file (a worker and the `cases` command) take turns:
        // the write lock is taken at once.
        let mut tx = self.write_tx().await?;
        if self.postgres {
            // Workers starting together apply the schema one at a time.
            sqlx::query("SELECT pg_advisory_xact_lock(7262024)")
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let (v1, v3) = if self.postgres {
            (V1_POSTGRES, V3_POSTGRES)
        } else {
            (V1_SQLITE, V3_SQLITE)
        };
        for s in v1 {
            sqlx::query(s).execute(&mut *tx).await.map_err(db)?;
        }
        let version: i64 = sqlx::query("SELECT MAX(version) AS v FROM review_schema")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?
            .try_get::<Option<i64>, _>("v")
            .map_err(db)?
            .unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(ReviewError::Config(format!(
                "the review database has schema version {version}, newer than this build's {SCHEMA_VERSION}"
            )));
        }
        if version > 0 && version < SCHEMA_VERSION {
            tracing::info!(
                from = version,
                to = SCHEMA_VERSION,
                "migrating the review database"
            );
        }
        if version < 3 {
            for s in v3 {
                sqlx::query(s).execute(&mut *tx).await.map_err(db)?;
            }
        }
        if version < 4 {
            for s in V4 {
                sqlx::query(s).execute(&mut *tx).await.map_err(db)?;
            }
        }
        if version < SCHEMA_VERSION {
            sqlx::query(&self.sql("INSERT INTO review_schema (version) VALUES ($1)"))
                .bind(SCHEMA_VERSION)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    /// Opens a case for a verdict that needs review (once per clip and revision); the case's
    /// id, or `None` when it was already open.
    pub async fn open(&self, v: &Verdict, now_ms: i64) -> Result<Option<i64>, ReviewError> {
        let (category, audience) = queue_of(v);
        let mut tx = self.write_tx().await?;
        let case = NewCase {
            verdict: v,
            kind: "verdict",
            category: &category,
            audience: &audience,
            statement: None,
            reports: 0,
            rescan: None,
        };
        let Some(id) = self.insert_case(&mut tx, case, now_ms).await? else {
            return Ok(None);
        };
        self.audit_in(
            &mut tx,
            now_ms,
            "review-stage",
            "open",
            Some(id),
            &v.clip_id,
            &format!(
                "queue {category}/{audience}; verdict revision {} ({})",
                v.revision, v.rationale
            ),
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(Some(id))
    }

    /// Inserts an open case, once per clip, verdict revision and kind: its id, or `None` when
    /// that case exists already.
    pub(crate) async fn insert_case(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        c: NewCase<'_>,
        now_ms: i64,
    ) -> Result<Option<i64>, ReviewError> {
        let row = sqlx::query(&self.sql(
            "INSERT INTO review_cases
                (clip_id, verdict_revision, kind, category, audience, state, verdict, created_ms,
                 statement, reports, rescan, verdict_engine)
             VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9, $10, $11)
             ON CONFLICT (clip_id, verdict_revision, kind) DO NOTHING
             RETURNING id",
        ))
        .bind(c.verdict.clip_id.clone())
        .bind(i64::from(c.verdict.revision))
        .bind(c.kind)
        .bind(c.category.to_string())
        .bind(c.audience.to_string())
        .bind(c.verdict.encode_to_vec())
        .bind(now_ms)
        .bind(c.statement)
        .bind(c.reports)
        .bind(c.rescan)
        .bind(c.verdict.engine.clone())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
        row.map(|r| r.try_get::<i64, _>("id").map_err(db))
            .transpose()
    }

    /// A newer verdict revision of a clip (a re-scan, another reviewer's decision): cases of
    /// older revisions still open or claimed are `superseded` (no one decides a stale verdict);
    /// how many. A user's report stands: it is about the clip, not a revision.
    pub async fn supersede(&self, v: &Verdict, now_ms: i64) -> Result<u64, ReviewError> {
        let mut tx = self.write_tx().await?;
        let n = self.supersede_in(&mut tx, v, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    /// What the worker does with every verdict it consumes, in one transaction: keeps it in the
    /// clip's history ([`Cases::record_verdict`]) and retires the cases it makes stale
    /// ([`Cases::supersede`]); how many it retired.
    pub async fn observe(&self, v: &Verdict, now_ms: i64) -> Result<u64, ReviewError> {
        let mut tx = self.write_tx().await?;
        self.record_in(&mut tx, v).await?;
        let n = self.supersede_in(&mut tx, v, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    async fn supersede_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        v: &Verdict,
        now_ms: i64,
    ) -> Result<u64, ReviewError> {
        let rows = sqlx::query(&self.sql(
            "UPDATE review_cases SET state = 'superseded', lease_until_ms = NULL
             WHERE clip_id = $1 AND verdict_revision < $2 AND state IN ('open', 'claimed')
               AND kind IN ('verdict', 'appeal')
             RETURNING id",
        ))
        .bind(v.clip_id.clone())
        .bind(i64::from(v.revision))
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        for r in &rows {
            let id: i64 = r.try_get("id").map_err(db)?;
            self.audit_in(
                tx,
                now_ms,
                "review-stage",
                "supersede",
                Some(id),
                &v.clip_id,
                &format!("verdict revision {} ({}) replaced it", v.revision, v.engine),
            )
            .await?;
        }
        Ok(rows.len() as u64)
    }

    /// The next case for `reviewer`: the oldest open one (or one whose reviewer's lease ended)
    /// in the queue asked for (empty: any), leased until `now_ms + lease_ms`. Two reviewers
    /// never get the same case: PostgreSQL skips rows another pull has locked; SQLite has one
    /// writer at a time.
    pub async fn claim(
        &self,
        reviewer: &str,
        category: &str,
        audience: &str,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Case>, ReviewError> {
        check_reviewer(reviewer)?;
        let skip_locked = if self.postgres {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(&self.sql(&format!(
            "UPDATE review_cases SET state = 'claimed', reviewer = $1, lease_until_ms = $2
             WHERE id = (
                SELECT id FROM review_cases
                WHERE (state = 'open' OR (state = 'claimed' AND lease_until_ms < $3))
                  AND ($4 = '' OR category = $4) AND ($5 = '' OR audience = $5)
                  AND NOT (kind = 'appeal' AND verdict_engine = $6)
                ORDER BY created_ms, id LIMIT 1 {skip_locked})
             RETURNING {CASE_COLUMNS}"
        )))
        .bind(reviewer.to_string())
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .bind(category.to_string())
        .bind(audience.to_string())
        // Nobody decides the appeal of their own decision.
        .bind(format!("review:{reviewer}"))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let case = case_of(&row)?;
        self.audit_in(
            &mut tx,
            now_ms,
            reviewer,
            "claim",
            Some(case.id),
            &case.clip_id,
            &format!("lease until {}", now_ms + lease_ms),
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(Some(case))
    }

    /// Records `reviewer`'s decision on a case they hold: the case is decided, and the clip's
    /// next verdict revision and its enforcement record are queued for publishing, in one
    /// transaction. Refused when the case is not theirs (never claimed, another's, lease
    /// over) or already decided.
    pub async fn decide(
        &self,
        case_id: i64,
        reviewer: &str,
        decided: &Decided,
        now_ms: i64,
    ) -> Result<(Verdict, Enforcement), ReviewError> {
        check_reviewer(reviewer)?;
        if decided.reason.trim().is_empty() {
            return Err(ReviewError::Refused("a decision needs a reason".into()));
        }
        if decided.reason.chars().count() > MAX_REASON_CHARS {
            return Err(ReviewError::Refused(format!(
                "the reason is longer than {MAX_REASON_CHARS} characters"
            )));
        }
        if decided.audiences.contains(&Decision::Review)
            || decided.audiences.contains(&Decision::Unspecified)
        {
            return Err(ReviewError::Refused(
                "a reviewer decides allow or block for every audience (review would leave the clip with nobody to decide it)".into(),
            ));
        }
        let for_update = if self.postgres { "FOR UPDATE" } else { "" };
        let mut tx = self.write_tx().await?;
        // The clip's lock before the case's row: the order every writer of a clip takes.
        let clip: Option<String> =
            sqlx::query(&self.sql("SELECT clip_id FROM review_cases WHERE id = $1"))
                .bind(case_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .map(|r| r.try_get("clip_id"))
                .transpose()
                .map_err(db)?;
        if let Some(clip) = &clip {
            self.lock_clip(&mut tx, clip).await?;
        }
        let row = sqlx::query(&self.sql(&format!(
            "SELECT {CASE_COLUMNS} FROM review_cases WHERE id = $1 {for_update}"
        )))
        .bind(case_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .ok_or_else(|| ReviewError::NotFound(format!("case {case_id}")))?;
        let case = case_of(&row)?;
        let held = case.state == "claimed"
            && case.reviewer.as_deref() == Some(reviewer)
            && case.lease_until_ms.is_some_and(|t| t >= now_ms);
        if !held {
            return Err(ReviewError::Refused(format!(
                "case {case_id} is {}{}: claim it first",
                case.state,
                case.reviewer
                    .as_deref()
                    .map(|r| format!(" by {r}"))
                    .unwrap_or_default()
            )));
        }
        let words = decision_text(&decided.audiences);
        let updated = sqlx::query(&self.sql(
            "UPDATE review_cases SET state = 'decided', decided_ms = $1, decision = $2,
                reason = $3, lease_until_ms = NULL
             WHERE id = $4 AND state = 'claimed' AND reviewer = $5",
        ))
        .bind(now_ms)
        .bind(words.clone())
        .bind(decided.reason.clone())
        .bind(case_id)
        .bind(reviewer.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if updated.rows_affected() != 1 {
            return Err(ReviewError::Refused(format!(
                "case {case_id} changed hands while deciding"
            )));
        }
        // The clip's next revision: past every revision seen or already decided here (a
        // report case may sit on an older revision than the clip's latest).
        let latest: Option<i64> = sqlx::query(&self.sql(
            "SELECT MAX(r) AS r FROM (
                SELECT MAX(revision) AS r FROM review_verdicts WHERE clip_id = $1
                UNION ALL
                SELECT MAX(revision) AS r FROM review_outbox WHERE clip_id = $1) AS t",
        ))
        .bind(case.clip_id.clone())
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?
        .try_get("r")
        .map_err(db)?;
        let next = latest
            .map_or(0, |r| r.clamp(0, i64::from(u32::MAX - 1)) as u32)
            .max(case.verdict_revision)
            + 1;
        let (verdict, enforcement) = revision(&case, reviewer, decided, next, now_ms);
        for (kind, payload) in [
            ("verdict", verdict.encode_to_vec()),
            ("enforcement", enforcement.encode_to_vec()),
        ] {
            sqlx::query(&self.sql(
                "INSERT INTO review_outbox (kind, clip_id, payload, created_ms, revision)
                 VALUES ($1, $2, $3, $4, $5)",
            ))
            .bind(kind)
            .bind(case.clip_id.clone())
            .bind(payload)
            .bind(now_ms)
            .bind(i64::from(next))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        self.audit_in(
            &mut tx,
            now_ms,
            reviewer,
            "decide",
            Some(case_id),
            &case.clip_id,
            &format!(
                "{words} (verdict revision {}): {}",
                verdict.revision, decided.reason
            ),
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok((verdict, enforcement))
    }

    /// Publishes up to `limit` waiting records through `emit`, oldest first, and marks them
    /// sent once it returned. The rows are locked for the while (PostgreSQL `FOR UPDATE SKIP
    /// LOCKED`; SQLite's write lock), so two workers never publish the same decision. A row
    /// that cannot be read is set aside (marked with its error), never retried for ever in front
    /// of the others. Returns how many records went.
    pub async fn publish<F>(&self, limit: i64, emit: F) -> Result<usize, ReviewError>
    where
        F: AsyncFnOnce(Vec<Outgoing>) -> Result<(), ReviewError>,
    {
        let skip_locked = if self.postgres {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT id, kind, payload FROM review_outbox WHERE sent_ms IS NULL
             ORDER BY id LIMIT $1 {skip_locked}"
        )))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let now = self.now_ms();
        let (mut ids, mut items) = (Vec::new(), Vec::new());
        for r in rows {
            let id: i64 = r.try_get("id").map_err(db)?;
            let kind: String = r.try_get("kind").map_err(db)?;
            let payload: Vec<u8> = r.try_get("payload").map_err(db)?;
            let item = match kind.as_str() {
                "verdict" => Verdict::decode(payload.as_slice())
                    .map(|v| Outgoing::Verdict(Box::new(v)))
                    .map_err(|e| e.to_string()),
                "enforcement" => Enforcement::decode(payload.as_slice())
                    .map(Outgoing::Enforcement)
                    .map_err(|e| e.to_string()),
                other => Err(format!("unknown kind `{other}`")),
            };
            match item {
                Ok(item) => {
                    ids.push(id);
                    items.push(item);
                }
                Err(e) => {
                    tracing::error!(outbox = id, error = %e, "outbox row set aside");
                    sqlx::query(
                        &self.sql("UPDATE review_outbox SET sent_ms = $1, kind = $2 WHERE id = $3"),
                    )
                    .bind(-now)
                    .bind(format!("unreadable: {e}"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
            }
        }
        let n = items.len();
        if n > 0
            && let Err(e) = emit(items).await
        {
            // Release the row locks now: a dropped transaction is rolled back only when its
            // connection is next used, and until then another publish would skip these rows.
            let _ = tx.rollback().await;
            return Err(e);
        }
        for id in ids {
            sqlx::query(&self.sql("UPDATE review_outbox SET sent_ms = $1 WHERE id = $2"))
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    /// Open cases per queue.
    pub async fn queues(&self, now_ms: i64) -> Result<Vec<QueueCount>, ReviewError> {
        let rows = sqlx::query(&self.sql(
            "SELECT category, audience, COUNT(*) AS n FROM review_cases
             WHERE state = 'open' OR (state = 'claimed' AND lease_until_ms < $1)
             GROUP BY category, audience ORDER BY category, audience",
        ))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(QueueCount {
                    category: r.try_get("category").map_err(db)?,
                    audience: r.try_get("audience").map_err(db)?,
                    open: r.try_get("n").map_err(db)?,
                })
            })
            .collect()
    }

    /// Cases, newest first; `state` empty: any.
    pub async fn list(&self, state: &str, limit: i64) -> Result<Vec<Case>, ReviewError> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {CASE_COLUMNS} FROM review_cases WHERE ($1 = '' OR state = $1)
             ORDER BY id DESC LIMIT $2"
        )))
        .bind(state.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(case_of).collect()
    }

    /// One case and its audit trail, oldest action first.
    pub async fn show(&self, case_id: i64) -> Result<(Case, Vec<AuditEntry>), ReviewError> {
        let case = self.case(case_id).await?;
        let audit = self.trail(&case).await?;
        Ok((case, audit))
    }

    /// One case, without its audit trail.
    pub async fn case(&self, case_id: i64) -> Result<Case, ReviewError> {
        let row = sqlx::query(&self.sql(&format!(
            "SELECT {CASE_COLUMNS} FROM review_cases WHERE id = $1"
        )))
        .bind(case_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| ReviewError::NotFound(format!("case {case_id}")))?;
        case_of(&row)
    }

    /// A case's audit trail (and its clip's), oldest action first.
    pub async fn trail(&self, case: &Case) -> Result<Vec<AuditEntry>, ReviewError> {
        let rows = sqlx::query(&self.sql(
            "SELECT at_ms, actor, action, case_id, clip_id, detail FROM review_audit
             WHERE case_id = $1 OR clip_id = $2 ORDER BY id",
        ))
        .bind(case.id)
        .bind(case.clip_id.clone())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(audit_of).collect()
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn audit_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        at_ms: i64,
        actor: &str,
        action: &str,
        case_id: Option<i64>,
        clip_id: &str,
        detail: &str,
    ) -> Result<(), ReviewError> {
        sqlx::query(&self.sql(
            "INSERT INTO review_audit (at_ms, actor, action, case_id, clip_id, detail)
             VALUES ($1, $2, $3, $4, $5, $6)",
        ))
        .bind(at_ms)
        .bind(actor.to_string())
        .bind(action.to_string())
        .bind(case_id)
        .bind(clip_id.to_string())
        .bind(detail.to_string())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Whether this is PostgreSQL (else SQLite).
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// Runs a statement as is (tests: proving the audit log refuses changes).
    pub async fn execute(&self, statement: &str) -> Result<u64, ReviewError> {
        Ok(sqlx::query(statement)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected())
    }
}

pub(crate) const CASE_COLUMNS: &str = "id, clip_id, verdict_revision, category, audience, state, reviewer, \
     lease_until_ms, verdict, created_ms, decided_ms, decision, reason, kind, statement, reports, \
     rescan";

pub(crate) fn case_of(r: &AnyRow) -> Result<Case, ReviewError> {
    let verdict: Vec<u8> = r.try_get("verdict").map_err(db)?;
    Ok(Case {
        id: r.try_get("id").map_err(db)?,
        clip_id: r.try_get("clip_id").map_err(db)?,
        verdict_revision: r.try_get::<i64, _>("verdict_revision").map_err(db)? as u32,
        category: r.try_get("category").map_err(db)?,
        audience: r.try_get("audience").map_err(db)?,
        state: r.try_get("state").map_err(db)?,
        reviewer: r.try_get("reviewer").map_err(db)?,
        lease_until_ms: r.try_get("lease_until_ms").map_err(db)?,
        verdict: Verdict::decode(verdict.as_slice())
            .map_err(|e| ReviewError::Database(format!("case verdict: {e}")))?,
        created_ms: r.try_get("created_ms").map_err(db)?,
        decided_ms: r.try_get("decided_ms").map_err(db)?,
        decision: r.try_get("decision").map_err(db)?,
        reason: r.try_get("reason").map_err(db)?,
        kind: r.try_get("kind").map_err(db)?,
        statement: r.try_get("statement").map_err(db)?,
        reports: r.try_get("reports").map_err(db)?,
        rescan: r
            .try_get::<Option<Vec<u8>>, _>("rescan")
            .map_err(db)?
            .map(|b| Verdict::decode(b.as_slice()))
            .transpose()
            .map_err(|e| ReviewError::Database(format!("case re-scan: {e}")))?,
    })
}

pub(crate) fn audit_of(r: &AnyRow) -> Result<AuditEntry, ReviewError> {
    Ok(AuditEntry {
        at_ms: r.try_get("at_ms").map_err(db)?,
        actor: r.try_get("actor").map_err(db)?,
        action: r.try_get("action").map_err(db)?,
        case_id: r.try_get("case_id").ok(),
        clip_id: r.try_get("clip_id").ok(),
        detail: r.try_get("detail").map_err(db)?,
    })
}

/// The clip's next verdict revision and its enforcement record, from a reviewer's decision.
fn revision(
    case: &Case,
    reviewer: &str,
    decided: &Decided,
    next: u32,
    now_ms: i64,
) -> (Verdict, Enforcement) {
    let [adult, under_18, public_feed] = decided.audiences;
    let audiences = AudienceDecisions {
        adult: adult as i32,
        under_18: under_18 as i32,
        public_feed: public_feed as i32,
    };
    let decision = decided
        .audiences
        .iter()
        .copied()
        .max()
        .unwrap_or(Decision::Review);
    let engine = format!("review:{reviewer}");
    let words = decision_text(&decided.audiences);
    // An appeal is upheld when the clip's own audience gets another decision than the one
    // appealed.
    let own = Audience::parse(&case.verdict.audience).unwrap_or(Audience::PublicFeed);
    let overturned = case.kind == "appeal"
        && case
            .verdict
            .audiences
            .is_some_and(|a| own.of(&a) != decided.audiences[own.index()] as i32);
    let mut v = case.verdict.clone();
    v.revision = next;
    v.decision = decision as i32;
    v.audiences = Some(audiences);
    v.engine = engine.clone();
    v.fallback.clear();
    v.decided_at_ms = now_ms;
    v.reasons.push(format!("review:{}", decision.word()));
    let on = match case.kind.as_str() {
        "appeal" => "on appeal, ",
        "report" => "on a user report, ",
        _ => "",
    };
    v.rationale = format!(
        "{words} — decided {on}by reviewer {reviewer} (case {}): {}; before: {}",
        case.id, decided.reason, case.verdict.rationale
    );
    let enforcement = Enforcement {
        clip_id: case.clip_id.clone(),
        verdict_revision: v.revision,
        decision: decision as i32,
        audiences: Some(audiences),
        engine,
        reason: decided.reason.clone(),
        decided_at_ms: now_ms,
        case_id: case.id,
        case_kind: case.kind.clone(),
        case_opened_at_ms: case.created_ms,
        overturned,
    };
    (v, enforcement)
}
