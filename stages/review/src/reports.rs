//! Every verdict revision of a clip (its history), and the two ways a user reaches a reviewer:
//! a report (anyone who saw the clip) and an appeal (the clip's own user contests its
//! decision). Both open a case in the same queues, claims and decisions as the policy's
//! `review` verdicts: `report/<audience>` and `appeal/<audience>`.

use clipguard_policy::Audience;
use clipguard_schemas::{Decision, Verdict};
use prost::Message as _;
use sqlx::Row as _;

use crate::ReviewError;
use crate::db::{Cases, MAX_REASON_CHARS, NewCase, db, decision_text};

/// One verdict revision of a clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub revision: u32,
    /// `policy`, `reasoning:<model>` or `review:<reviewer>`.
    pub engine: String,
    /// `adult=…,under_18=…,public_feed=…`.
    pub decision: String,
    pub policy_version: String,
    pub decided_at_ms: i64,
}

/// A report taken: the case, whether it opened now, and the reports in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub case_id: i64,
    pub opened: bool,
    pub reports: i64,
}

/// An appeal taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Appealed {
    pub case_id: i64,
    pub appealed: Verdict,
}

/// An opaque user id as a platform sends it: 1–128 printable ASCII characters, no spaces.
pub fn check_user(what: &str, id: &str) -> Result<(), ReviewError> {
    let ok = !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(ReviewError::Refused(format!(
            "{what}: 1–128 printable ASCII characters without spaces"
        )))
    }
}

fn check_text(what: &str, text: &str) -> Result<(), ReviewError> {
    if text.trim().is_empty() {
        return Err(ReviewError::Refused(format!("{what} is empty")));
    }
    if text.chars().count() > MAX_REASON_CHARS {
        return Err(ReviewError::Refused(format!(
            "{what} is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(())
}

fn decision_words(v: &Verdict) -> String {
    let a = v.audiences.unwrap_or_default();
    decision_text(
        &Audience::ALL.map(|aud| Decision::try_from(aud.of(&a)).unwrap_or(Decision::Unspecified)),
    )
}

impl Cases {
    /// Keeps a verdict revision in the clip's history (once per clip and revision).
    pub async fn record_verdict(&self, v: &Verdict) -> Result<(), ReviewError> {
        let mut tx = self.write_tx().await?;
        self.record_in(&mut tx, v).await?;
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn record_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        v: &Verdict,
    ) -> Result<(), ReviewError> {
        sqlx::query(&self.sql(
            "INSERT INTO review_verdicts
                (clip_id, revision, engine, decision, policy_version, decided_at_ms, verdict)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (clip_id, revision) DO NOTHING",
        ))
        .bind(v.clip_id.clone())
        .bind(i64::from(v.revision))
        .bind(v.engine.clone())
        .bind(decision_words(v))
        .bind(v.policy_version.clone())
        .bind(v.decided_at_ms)
        .bind(v.encode_to_vec())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        Ok(())
    }
    /// The clip's verdict revisions, oldest first.
    pub async fn history(&self, clip_id: &str) -> Result<Vec<Revision>, ReviewError> {
        let rows = sqlx::query(&self.sql(
            "SELECT revision, engine, decision, policy_version, decided_at_ms FROM review_verdicts
             WHERE clip_id = $1 ORDER BY revision",
        ))
        .bind(clip_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(Revision {
                    revision: r.try_get::<i64, _>("revision").map_err(db)? as u32,
                    engine: r.try_get("engine").map_err(db)?,
                    decision: r.try_get("decision").map_err(db)?,
                    policy_version: r.try_get("policy_version").map_err(db)?,
                    decided_at_ms: r.try_get("decided_at_ms").map_err(db)?,
                })
            })
            .collect()
    }

    /// The clip's latest verdict revision, when one was seen.
    pub async fn latest_verdict(&self, clip_id: &str) -> Result<Option<Verdict>, ReviewError> {
        let row = sqlx::query(&self.sql(
            "SELECT verdict FROM review_verdicts WHERE clip_id = $1
             ORDER BY revision DESC LIMIT 1",
        ))
        .bind(clip_id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| {
            let b: Vec<u8> = r.try_get("verdict").map_err(db)?;
            Verdict::decode(b.as_slice()).map_err(|e| ReviewError::Database(e.to_string()))
        })
        .transpose()
    }

    /// The clip's latest verdict revision, or why a user cannot act on the clip.
    async fn latest_verdict_or_refuse(&self, clip_id: &str) -> Result<Verdict, ReviewError> {
        self.latest_verdict(clip_id)
            .await?
            .ok_or_else(|| ReviewError::NotFound(format!("no verdict of clip `{clip_id}`")))
    }

    /// A user's report of a clip: opens a report case on the clip's latest verdict, or joins
    /// the one still open (its reasons gathered, its count raised).
    pub async fn report(
        &self,
        clip_id: &str,
        reason: &str,
        reporter: &str,
        now_ms: i64,
    ) -> Result<Reported, ReviewError> {
        check_user("reporter", reporter)?;
        check_text("the report's reason", reason)?;
        let v = self.latest_verdict_or_refuse(clip_id).await?;
        let own = Audience::parse(&v.audience).unwrap_or(Audience::PublicFeed);
        let mut tx = self.write_tx().await?;
        // Concurrent reports of one clip take turns: none is lost, none opens a second case.
        self.lock_clip(&mut tx, clip_id).await?;
        let open = sqlx::query(&self.sql(
            "SELECT id, reports, statement FROM review_cases
             WHERE clip_id = $1 AND kind = 'report' AND state IN ('open', 'claimed')
             ORDER BY id DESC LIMIT 1",
        ))
        .bind(clip_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let line = format!("{reporter}: {}", reason.trim());
        let reported = match open {
            Some(r) => {
                let id: i64 = r.try_get("id").map_err(db)?;
                let n: i64 = r.try_get::<i64, _>("reports").map_err(db)? + 1;
                let mut statement: String = r
                    .try_get::<Option<String>, _>("statement")
                    .map_err(db)?
                    .unwrap_or_default();
                // The first reasons are kept in the case; every report is in the audit log.
                if statement.chars().count() + line.chars().count() < 4 * MAX_REASON_CHARS {
                    statement.push('\n');
                    statement.push_str(&line);
                }
                sqlx::query(
                    &self.sql("UPDATE review_cases SET reports = $1, statement = $2 WHERE id = $3"),
                )
                .bind(n)
                .bind(statement)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                Reported {
                    case_id: id,
                    opened: false,
                    reports: n,
                }
            }
            None => {
                let case = NewCase {
                    verdict: &v,
                    kind: "report",
                    category: "report",
                    audience: own.name(),
                    statement: Some(line.clone()),
                    reports: 1,
                    rescan: None,
                };
                let id = self.insert_case(&mut tx, case, now_ms).await?;
                let Some(case_id) = id else {
                    return Err(ReviewError::Refused(format!(
                        "clip `{clip_id}` was already decided on a report at revision {}: \
                         report it again once its new revision is out",
                        v.revision
                    )));
                };
                Reported {
                    case_id,
                    opened: true,
                    reports: 1,
                }
            }
        };
        self.audit_in(
            &mut tx,
            now_ms,
            &format!("user:{reporter}"),
            "report",
            Some(reported.case_id),
            clip_id,
            reason.trim(),
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(reported)
    }

    /// The verdict an appeal of the clip would contest: its latest, when it blocks the clip in
    /// its own audience and was not appealed yet. Checked before the (costly) re-scan, and
    /// again when the appeal is written.
    pub async fn appealable(
        &self,
        clip_id: &str,
        statement: &str,
        appellant: &str,
    ) -> Result<Verdict, ReviewError> {
        check_user("appellant", appellant)?;
        check_text("the appeal's statement", statement)?;
        let v = self.latest_verdict_or_refuse(clip_id).await?;
        let own = Audience::parse(&v.audience).unwrap_or(Audience::PublicFeed);
        let decided = v.audiences.map(|a| own.of(&a)).unwrap_or_default();
        if decided != Decision::Block as i32 {
            return Err(ReviewError::Refused(format!(
                "clip `{clip_id}` is not blocked in its own audience ({}: {}): nothing to appeal",
                own.name(),
                Decision::try_from(decided).unwrap_or_default().word()
            )));
        }
        let taken = sqlx::query(&self.sql(
            "SELECT id FROM review_cases
             WHERE clip_id = $1 AND verdict_revision = $2 AND kind = 'appeal'",
        ))
        .bind(clip_id.to_string())
        .bind(i64::from(v.revision))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        if taken.is_some() {
            return Err(ReviewError::Refused(format!(
                "revision {} of clip `{clip_id}` is already appealed",
                v.revision
            )));
        }
        Ok(v)
    }

    /// The clip's user contests its latest decision: an appeal case with their statement, the
    /// appealed verdict and `rescan` (its stored signals decided under the policy in force now)
    /// side by side. Refused as [`Cases::appealable`] says.
    pub async fn appeal(
        &self,
        clip_id: &str,
        statement: &str,
        appellant: &str,
        rescan: Option<&Verdict>,
        now_ms: i64,
    ) -> Result<Appealed, ReviewError> {
        let v = self.appealable(clip_id, statement, appellant).await?;
        let own = Audience::parse(&v.audience).unwrap_or(Audience::PublicFeed);
        let mut tx = self.write_tx().await?;
        self.lock_clip(&mut tx, clip_id).await?;
        let case = NewCase {
            verdict: &v,
            kind: "appeal",
            category: "appeal",
            audience: own.name(),
            statement: Some(format!("{appellant}: {}", statement.trim())),
            reports: 0,
            rescan: rescan.map(|r| r.encode_to_vec()),
        };
        let Some(case_id) = self.insert_case(&mut tx, case, now_ms).await? else {
            return Err(ReviewError::Refused(format!(
                "revision {} of clip `{clip_id}` is already appealed",
                v.revision
            )));
        };
        let detail = match rescan {
            Some(r) => format!(
                "appealed revision {} ({}); re-scan under policy {}: {}",
                v.revision,
                decision_words(&v),
                r.policy_version,
                decision_words(r)
            ),
            None => format!(
                "appealed revision {} ({}); no re-scan (the clip's signals are no longer kept)",
                v.revision,
                decision_words(&v)
            ),
        };
        self.audit_in(
            &mut tx,
            now_ms,
            &format!("user:{appellant}"),
            "appeal",
            Some(case_id),
            clip_id,
            &detail,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(Appealed {
            case_id,
            appealed: v,
        })
    }
}
