//! Reviewer accounts and console sessions, in the cases database.
//!
//! - `review_accounts`: an id, a role (`reviewer`, `lead`, `admin`) and an Argon2id password
//!   hash (PHC string; the password itself is never stored or logged). An account is disabled,
//!   never deleted, so the audit log's actors stay resolvable.
//! - `review_sessions`: a console session: the SHA-256 of its cookie token (a stolen database
//!   gives no usable session), the account, the session's CSRF token and when it ends.
//!
//! Every change and every sign-in (failed ones too) is written to the audit log.
//!
//! Guessing is throttled per account, in the database (so across every worker): after
//! [`FREE_FAILURES`] wrong passwords in a row an account waits before its next try is even
//! checked, 30 s after the 5th, doubling with each further failure up to 15 minutes. A right
//! password resets the run; so does an admin setting a new password or enabling the account.
//! A throttled try is refused without looking at the password and answered as any failed
//! sign-in (same message, same time), so it tells a guesser nothing, and is audited as
//! `sign_in_throttled`. Throttling slows a guesser without locking the owner out for good.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use rand::RngCore as _;
use sha2::Digest as _;
use sqlx::Row as _;

use crate::ReviewError;
use crate::db::{AuditEntry, Case, Cases, check_reviewer, db};

/// What an account may do. Each role can do what the one before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// A platform's backend sending users' reports and appeals to the HTTP API; no console.
    Reporter,
    /// Pulls cases from the queues and decides the ones they hold.
    Reviewer,
    /// ... and reads any case and the audit log.
    Lead,
    /// ... and manages accounts.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reporter, Role::Reviewer, Role::Lead, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Reporter => "reporter",
            Role::Reviewer => "reviewer",
            Role::Lead => "lead",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ReviewError> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                ReviewError::Refused(format!(
                    "role `{s}`: one of reporter, reviewer, lead, admin"
                ))
            })
    }
}

/// A reviewer account (never its password hash).
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: String,
    pub role: Role,
    pub created_ms: i64,
    pub disabled_ms: Option<i64>,
    /// Wrong passwords in a row since the last sign-in.
    pub failed_signins: i64,
    /// Until when a sign-in is refused unchecked, after repeated failures.
    pub throttled_until_ms: Option<i64>,
}

impl Account {
    /// `active`, `disabled`, or how it stands after failed sign-ins.
    pub fn standing(&self, now_ms: i64) -> String {
        if self.disabled_ms.is_some() {
            return "disabled".into();
        }
        match (self.failed_signins, self.throttled_until_ms) {
            (n, Some(until)) if until > now_ms => format!(
                "throttled ({n} failed sign-ins in a row; the next try is checked in {} s)",
                seconds_up(until - now_ms)
            ),
            (0, _) => "active".into(),
            (n, _) => format!("active ({n} failed sign-ins in a row)"),
        }
    }
}

/// The new `throttled_until_ms` of an account whose failure count goes up by one, in SQL
/// (`$2` is now): [`throttle_ms`] written out for each count, since SQLite has no `power`.
fn throttle_sql() -> String {
    let mut sql = String::from("CASE failed_signins + 1");
    let mut n = FREE_FAILURES;
    while throttle_ms(n) < throttle_ms(n + 1) {
        sql.push_str(&format!(" WHEN {n} THEN $2 + {}", throttle_ms(n)));
        n += 1;
    }
    sql.push_str(&format!(
        " ELSE CASE WHEN failed_signins + 1 < {FREE_FAILURES} THEN NULL ELSE $2 + {} END END",
        throttle_ms(n)
    ));
    sql
}

/// Milliseconds as whole seconds, rounded up (a wait of 0.2 s is "1 s", never "0 s").
fn seconds_up(ms: i64) -> i64 {
    (ms + 999) / 1000
}

/// Failed sign-ins in a row an account may have before it must wait.
pub const FREE_FAILURES: i64 = 5;

/// How long an account waits after its `failures`-th failure in a row: nothing for the first
/// [`FREE_FAILURES`] − 1, then 30 s, doubling each time, at most 15 minutes.
pub fn throttle_ms(failures: i64) -> i64 {
    const FIRST_MS: i64 = 30_000;
    const MAX_MS: i64 = 15 * 60_000;
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - FREE_FAILURES).min(10) as u32;
    (FIRST_MS << doublings).min(MAX_MS)
}

/// A signed-in console session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub account: String,
    pub role: Role,
    /// The token every form of this session carries.
    pub csrf: String,
    pub expires_ms: i64,
}

/// Shortest and longest password an account may have.
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 12..=1024;

/// `n` random bytes as hex (from the thread's CSPRNG, seeded by the OS).
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn token_key(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Compares two secrets in time that depends only on their lengths.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn check_password(password: &str) -> Result<(), ReviewError> {
    let n = password.chars().count();
    if PASSWORD_CHARS.contains(&n) {
        Ok(())
    } else {
        Err(ReviewError::Refused(format!(
            "a password has {}–{} characters (this one has {n})",
            PASSWORD_CHARS.start(),
            PASSWORD_CHARS.end()
        )))
    }
}

/// Argon2 runs at most this many at once per worker: each takes 19 MiB, and a flood of
/// sign-in attempts must not take the worker's memory.
static ARGON2_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Argon2id with the library's defaults (19 MiB, 2 passes: OWASP's recommendation), off the
/// async threads.
async fn hash_password(password: &str) -> Result<String, ReviewError> {
    let password = password.to_string();
    let _slot = ARGON2_SLOTS
        .acquire()
        .await
        .map_err(|e| ReviewError::Config(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| ReviewError::Config(e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ReviewError::Config(format!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| ReviewError::Config(e.to_string()))?
}

async fn verify_password(password: &str, stored: Option<String>) -> bool {
    // An unknown account costs the same as a wrong password: no account enumeration by timing.
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$wd0t7RTZDbUUmRo6m5USt7/6Jl2IZLXg2VuUOZiMbsE";
    let known = stored.is_some();
    let stored = stored.unwrap_or_else(|| DUMMY.to_string());
    let password = password.to_string();
    let Ok(_slot) = ARGON2_SLOTS.acquire().await else {
        return false;
    };
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    known && ok
}

impl Cases {
    /// Adds an account; refused when the id is taken.
    pub async fn add_account(
        &self,
        actor: &str,
        id: &str,
        role: Role,
        password: &str,
        now_ms: i64,
    ) -> Result<(), ReviewError> {
        check_reviewer(id)?;
        check_password(password)?;
        let hash = hash_password(password).await?;
        let mut tx = self.write_tx().await?;
        let inserted = sqlx::query(&self.sql(
            "INSERT INTO review_accounts (id, password_hash, role, created_ms)
             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        ))
        .bind(id.to_string())
        .bind(hash)
        .bind(role.name())
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 0 {
            return Err(ReviewError::Refused(format!("account `{id}` exists")));
        }
        let detail = format!("account {id} added as {}", role.name());
        self.audit_in(&mut tx, now_ms, actor, "account_add", None, "", &detail)
            .await?;
        tx.commit().await.map_err(db)
    }

    /// Changes an account's role, password or standing (`disabled`: signs it out everywhere).
    pub async fn change_account(
        &self,
        actor: &str,
        id: &str,
        role: Option<Role>,
        password: Option<&str>,
        disabled: Option<bool>,
        now_ms: i64,
    ) -> Result<(), ReviewError> {
        let hash = match password {
            Some(p) => {
                check_password(p)?;
                Some(hash_password(p).await?)
            }
            None => None,
        };
        let mut tx = self.write_tx().await?;
        let found = sqlx::query(&self.sql("SELECT id FROM review_accounts WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if found.is_none() {
            return Err(ReviewError::NotFound(format!("account `{id}`")));
        }
        let mut changes = Vec::new();
        if let Some(role) = role {
            sqlx::query(&self.sql("UPDATE review_accounts SET role = $1 WHERE id = $2"))
                .bind(role.name())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            changes.push(format!("role {}", role.name()));
        }
        if hash.is_some() || disabled == Some(false) {
            // A new password or a re-enabled account starts without a run of failures.
            let cleared = sqlx::query(&self.sql(
                "UPDATE review_accounts SET failed_signins = 0, throttled_until_ms = NULL
                 WHERE id = $1 AND (failed_signins > 0 OR throttled_until_ms IS NOT NULL)",
            ))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if cleared.rows_affected() > 0 {
                changes.push("failed sign-ins cleared".to_string());
            }
        }
        if let Some(hash) = hash {
            sqlx::query(&self.sql("UPDATE review_accounts SET password_hash = $1 WHERE id = $2"))
                .bind(hash)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            changes.push("password changed".to_string());
        }
        if let Some(disabled) = disabled {
            sqlx::query(&self.sql("UPDATE review_accounts SET disabled_ms = $1 WHERE id = $2"))
                .bind(disabled.then_some(now_ms))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            changes.push(if disabled { "disabled" } else { "enabled" }.to_string());
        }
        if password.is_some() || disabled == Some(true) || role.is_some() {
            // A changed password, role or standing ends the account's sessions.
            sqlx::query(&self.sql("DELETE FROM review_sessions WHERE account = $1"))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let detail = format!("account {id}: {}", changes.join(", "));
        self.audit_in(&mut tx, now_ms, actor, "account_change", None, "", &detail)
            .await?;
        tx.commit().await.map_err(db)
    }

    /// Every account, by id.
    pub async fn accounts(&self) -> Result<Vec<Account>, ReviewError> {
        let rows = sqlx::query(
            "SELECT id, role, created_ms, disabled_ms, failed_signins, throttled_until_ms
             FROM review_accounts ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(Account {
                    id: r.try_get("id").map_err(db)?,
                    role: Role::parse(&r.try_get::<String, _>("role").map_err(db)?)?,
                    created_ms: r.try_get("created_ms").map_err(db)?,
                    disabled_ms: r.try_get("disabled_ms").map_err(db)?,
                    failed_signins: r.try_get("failed_signins").map_err(db)?,
                    throttled_until_ms: r.try_get("throttled_until_ms").map_err(db)?,
                })
            })
            .collect()
    }

    /// Checks an account's password: its role, or `None` for a wrong id or password, a
    /// disabled account or one throttled after repeated failures (the same answer for each,
    /// through the same statements). A failure is audited and counts towards the throttle.
    ///
    /// Each try is counted as a failure before the password is checked, in one statement that
    /// also starts the wait when the count reaches [`FREE_FAILURES`] and takes nothing while the
    /// account waits: guesses sent side by side (to one worker or several) each take a place in
    /// the count, so no more than the free ones are ever checked. A right password then clears
    /// the count it took, unless other failures came after it.
    pub async fn authenticate(
        &self,
        id: &str,
        password: &str,
        now_ms: i64,
    ) -> Result<Option<Role>, ReviewError> {
        // An id that cannot name an account runs the same statements, matching no row.
        let key = if check_reviewer(id).is_ok() { id } else { "" };
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(&self.sql(&format!(
            "UPDATE review_accounts SET failed_signins = failed_signins + 1,
                throttled_until_ms = {}
             WHERE id = $1 AND (throttled_until_ms IS NULL OR throttled_until_ms <= $2)
             RETURNING failed_signins, password_hash, role, disabled_ms",
            throttle_sql()
        )))
        .bind(key.to_string())
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        // A throttled account is told apart from an unknown id by a read that both make.
        let until: Option<i64> =
            sqlx::query(&self.sql("SELECT throttled_until_ms FROM review_accounts WHERE id = $1"))
                .bind(key.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .map(|r| r.try_get::<Option<i64>, _>("throttled_until_ms"))
                .transpose()
                .map_err(db)?
                .flatten();
        tx.commit().await.map_err(db)?;
        let (taken, stored, role, disabled) = match &row {
            Some(r) => (
                r.try_get::<i64, _>("failed_signins").map_err(db)?,
                Some(r.try_get::<String, _>("password_hash").map_err(db)?),
                Some(r.try_get::<String, _>("role").map_err(db)?),
                r.try_get::<Option<i64>, _>("disabled_ms").map_err(db)?,
            ),
            None => (0, None, None, None),
        };
        // Unknown and throttled: the dummy hash is verified, so the answer takes a failure's
        // time, and a throttled account's right password is never learnt.
        if verify_password(password, stored).await && disabled.is_none() {
            sqlx::query(&self.sql(
                "UPDATE review_accounts SET failed_signins = 0, throttled_until_ms = NULL
                 WHERE id = $1 AND failed_signins = $2",
            ))
            .bind(id.to_string())
            .bind(taken)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            return Ok(Some(Role::parse(role.as_deref().unwrap_or_default())?));
        }
        let (actor, action, detail) = match (&row, until) {
            // An id that names no account is not written down: it may be a password typed in
            // the wrong field.
            (None, None) => ("?", "sign_in_failed", String::new()),
            (None, Some(until)) => (
                id,
                "sign_in_throttled",
                format!(
                    "refused unchecked after repeated failures: the next try is checked in {} s",
                    seconds_up(until - now_ms)
                ),
            ),
            (Some(_), _) => {
                let wait = throttle_ms(taken);
                let detail = if wait > 0 {
                    format!(
                        "{taken} failures in a row: the next try is checked after {} s",
                        wait / 1000
                    )
                } else {
                    String::new()
                };
                (id, "sign_in_failed", detail)
            }
        };
        self.audit(actor, action, None, &detail, now_ms).await?;
        Ok(None)
    }

    /// Signs in to the console: a new session's cookie token and the session, or `None` for a
    /// wrong id or password, a disabled account, or a `reporter` account (API only). Both
    /// outcomes are audited.
    pub async fn sign_in(
        &self,
        id: &str,
        password: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<(String, Session)>, ReviewError> {
        let Some(role) = self.authenticate(id, password, now_ms).await? else {
            return Ok(None);
        };
        if role < Role::Reviewer {
            self.audit(
                id,
                "sign_in_failed",
                None,
                "a reporter account has no console",
                now_ms,
            )
            .await?;
            return Ok(None);
        }
        let mut tx = self.write_tx().await?;
        let token = random_hex(32);
        let session = Session {
            account: id.to_string(),
            role,
            csrf: random_hex(32),
            expires_ms: now_ms + ttl_ms,
        };
        sqlx::query(&self.sql("DELETE FROM review_sessions WHERE expires_ms < $1"))
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(&self.sql(
            "INSERT INTO review_sessions (token_sha256, account, csrf, created_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5)",
        ))
        .bind(token_key(&token))
        .bind(id.to_string())
        .bind(session.csrf.clone())
        .bind(now_ms)
        .bind(session.expires_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        self.audit_in(&mut tx, now_ms, id, "sign_in", None, "", role.name())
            .await?;
        tx.commit().await.map_err(db)?;
        Ok(Some((token, session)))
    }

    /// The live session a cookie token names, with its account's current role; `None` when
    /// unknown, expired or the account is disabled.
    pub async fn session(&self, token: &str, now_ms: i64) -> Result<Option<Session>, ReviewError> {
        if token.len() != 64 {
            return Ok(None);
        }
        let row = sqlx::query(&self.sql(
            "SELECT s.account AS account, s.csrf AS csrf, s.expires_ms AS expires_ms, a.role AS role
             FROM review_sessions s JOIN review_accounts a ON a.id = s.account
             WHERE s.token_sha256 = $1 AND s.expires_ms > $2 AND a.disabled_ms IS NULL",
        ))
        .bind(token_key(token))
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(Session {
            account: r.try_get("account").map_err(db)?,
            role: Role::parse(&r.try_get::<String, _>("role").map_err(db)?)?,
            csrf: r.try_get("csrf").map_err(db)?,
            expires_ms: r.try_get("expires_ms").map_err(db)?,
        }))
    }

    /// Ends a session.
    pub async fn sign_out(&self, token: &str, actor: &str, now_ms: i64) -> Result<(), ReviewError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(&self.sql("DELETE FROM review_sessions WHERE token_sha256 = $1"))
            .bind(token_key(token))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        self.audit_in(&mut tx, now_ms, actor, "sign_out", None, "", "")
            .await?;
        tx.commit().await.map_err(db)
    }

    /// Writes one audit line on its own.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        case: Option<(i64, &str)>,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), ReviewError> {
        let mut tx = self.write_tx().await?;
        let (case_id, clip_id) = match case {
            Some((id, clip)) => (Some(id), clip),
            None => (None, ""),
        };
        self.audit_in(&mut tx, now_ms, actor, action, case_id, clip_id, detail)
            .await?;
        tx.commit().await.map_err(db)
    }

    /// The newest `limit` audit lines, newest first.
    pub async fn audit_recent(&self, limit: i64) -> Result<Vec<AuditEntry>, ReviewError> {
        let rows = sqlx::query(&self.sql(
            "SELECT at_ms, actor, action, case_id, clip_id, detail FROM review_audit
             ORDER BY id DESC LIMIT $1",
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(crate::db::audit_of).collect()
    }

    /// The cases `reviewer` holds now (claimed, lease running), oldest claim first.
    pub async fn held_by(&self, reviewer: &str, now_ms: i64) -> Result<Vec<Case>, ReviewError> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {} FROM review_cases
             WHERE state = 'claimed' AND reviewer = $1 AND lease_until_ms >= $2
             ORDER BY lease_until_ms, id",
            crate::db::CASE_COLUMNS
        )))
        .bind(reviewer.to_string())
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(crate::db::case_of).collect()
    }
}
