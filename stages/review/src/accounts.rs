//! Reviewer accounts and console sessions, in the cases database.
//!
//! - `review_accounts`: an id, a role (`reviewer`, `lead`, `admin`) and an Argon2id password
//!   hash (PHC string; the password itself is never stored or logged). An account is disabled,
//!   never deleted, so the audit log's actors stay resolvable.
//! - `review_sessions`: a console session: the SHA-256 of its cookie token (a stolen database
//!   gives no usable session), the account, the session's CSRF token and when it ends.
//!
//! Every change and every sign-in (failed ones too) is written to the audit log.

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
            "SELECT id, role, created_ms, disabled_ms FROM review_accounts ORDER BY id",
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
                })
            })
            .collect()
    }

    /// Checks an account's password: its role, or `None` for a wrong id or password or a
    /// disabled account (the same answer for each, in the same time). A failure is audited.
    pub async fn authenticate(
        &self,
        id: &str,
        password: &str,
        now_ms: i64,
    ) -> Result<Option<Role>, ReviewError> {
        let row =
            if check_reviewer(id).is_ok() {
                sqlx::query(&self.sql(
                    "SELECT password_hash, role, disabled_ms FROM review_accounts WHERE id = $1",
                ))
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?
            } else {
                None
            };
        let (stored, role, disabled) = match &row {
            Some(r) => (
                Some(r.try_get::<String, _>("password_hash").map_err(db)?),
                Some(r.try_get::<String, _>("role").map_err(db)?),
                r.try_get::<Option<i64>, _>("disabled_ms").map_err(db)?,
            ),
            None => (None, None, None),
        };
        if verify_password(password, stored).await && disabled.is_none() {
            return Ok(Some(Role::parse(role.as_deref().unwrap_or_default())?));
        }
        // An id that names no account is not written down: it may be a password typed in the
        // wrong field.
        let actor = if row.is_some() { id } else { "?" };
        self.audit(actor, "sign_in_failed", None, "", now_ms)
            .await?;
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
