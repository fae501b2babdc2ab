//! The cases database on SQLite and on a real PostgreSQL server (Debian's, started here on
//! 127.0.0.1 in a temporary folder and stopped at the end): opening cases once per clip and
//! revision, queues, claims and leases, decisions that queue the clip's next verdict revision
//! and its enforcement record, refusals, the append-only audit log, and many reviewers pulling
//! from one queue at once on PostgreSQL never getting the same case.

// Tests report failure by panicking.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clipguard_review::ReviewError;
use clipguard_review::db::{Cases, Decided, Outgoing};
use clipguard_schemas::{AudienceDecisions, CategoryDecision, Decision, Verdict};

/// A PostgreSQL server of its own, on a free port of 127.0.0.1.
struct Postgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    url: String,
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        // The server refuses to run as root: Debian's package made the `postgres` user.
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

impl Postgres {
    fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .max()
        });
        let Some(bin) = bin else {
            let msg = "no PostgreSQL server (Debian's `postgresql`; scripts/setup.sh installs it)";
            if std::env::var("CLIPGUARD_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("{msg}, and CLIPGUARD_REQUIRE_POSTGRES=1");
            }
            eprintln!("skipping: {msg}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let ok = as_postgres(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "clipguard", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=64",
            dir.path().display()
        );
        let ok = as_postgres(&bin, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.path().join("server.log"))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&ok.stderr),
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
        Some(Self {
            url: format!("postgres://clipguard@127.0.0.1:{port}/postgres"),
            _dir: dir,
            data,
            bin,
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn verdict(clip: &str, category: &str, revision: u32) -> Verdict {
    let review = Decision::Review as i32;
    let allow = Decision::Allow as i32;
    let audiences = AudienceDecisions {
        adult: allow,
        under_18: review,
        public_feed: review,
    };
    Verdict {
        clip_id: clip.into(),
        decision: review,
        audiences: Some(audiences),
        categories: vec![CategoryDecision {
            category: category.into(),
            score: 0.7,
            threshold: 0.5,
            decision: review,
            audiences: Some(audiences),
            ..Default::default()
        }],
        audience: "public_feed".into(),
        engine: "policy".into(),
        revision,
        rationale: format!("review public_feed — {category} scored 0.70"),
        policy_version: "test".into(),
        ..Default::default()
    }
}

fn block_all(reason: &str) -> Decided {
    Decided {
        audiences: [Decision::Block; 3],
        reason: reason.into(),
    }
}

fn refused<T>(r: Result<T, ReviewError>) -> bool {
    matches!(r, Err(ReviewError::Refused(_)))
}

/// The whole life of cases, the same on either database.
async fn life_of_cases(cases: &Cases) {
    let t0 = 1_000_000;
    // Cases open once per clip and revision, oldest first in their queue.
    let a = cases
        .open(&verdict("clip-a", "violence_gore", 0), t0)
        .await
        .unwrap();
    let b = cases
        .open(&verdict("clip-b", "violence_gore", 0), t0 + 1)
        .await
        .unwrap();
    let c = cases
        .open(&verdict("clip-c", "self_harm", 0), t0 + 2)
        .await
        .unwrap();
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(
        cases
            .open(&verdict("clip-a", "violence_gore", 0), t0 + 3)
            .await
            .unwrap(),
        None
    );
    let queues = cases.queues(t0 + 5).await.unwrap();
    let counts: Vec<(String, i64)> = queues
        .iter()
        .map(|q| (format!("{}/{}", q.category, q.audience), q.open))
        .collect();
    assert_eq!(
        counts,
        [
            ("self_harm/public_feed".to_string(), 1),
            ("violence_gore/public_feed".to_string(), 2)
        ]
    );

    // Claims: the oldest of the queue asked for, each to one reviewer.
    let lease = 60_000;
    let got = cases
        .claim("alice", "violence_gore", "", lease, t0 + 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.id, got.state.as_str()), (a, "claimed"));
    assert_eq!(
        got.verdict.rationale,
        "review public_feed — violence_gore scored 0.70"
    );
    let got = cases
        .claim("bob", "", "", lease, t0 + 11)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, b);

    // Refusals: no reason; another's case; a case never claimed.
    assert!(refused(
        cases.decide(a, "alice", &block_all(" "), t0 + 12).await
    ));
    assert!(refused(
        cases.decide(a, "bob", &block_all("gore"), t0 + 12).await
    ));
    assert!(refused(
        cases.decide(c, "alice", &block_all("gore"), t0 + 12).await
    ));
    assert!(matches!(
        cases
            .decide(999_999, "alice", &block_all("gore"), t0 + 12)
            .await,
        Err(ReviewError::NotFound(_))
    ));

    // A decision: the case is decided, the next verdict revision and the enforcement record
    // wait in the outbox until published.
    let (v, e) = cases
        .decide(a, "alice", &block_all("graphic injury, not news"), t0 + 20)
        .await
        .unwrap();
    assert_eq!((v.revision, v.engine.as_str()), (1, "review:alice"));
    assert_eq!(v.decision, Decision::Block as i32);
    assert!(
        v.rationale.contains("graphic injury, not news"),
        "{}",
        v.rationale
    );
    assert!(
        v.rationale.contains("violence_gore scored 0.70"),
        "{}",
        v.rationale
    );
    assert_eq!((e.case_id, e.verdict_revision), (a, 1));
    assert!(refused(
        cases.decide(a, "alice", &block_all("again"), t0 + 21).await
    ));
    // Published once: a failed publish leaves them waiting, a successful one marks them sent.
    let failed = cases
        .publish(10, async |_| {
            Err(ReviewError::Database("broker down".into()))
        })
        .await;
    assert!(failed.is_err());
    let mut out = Vec::new();
    let n = cases
        .publish(10, async |items| {
            out = items;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(n, 2, "{out:?}");
    assert!(matches!(&out[0], Outgoing::Verdict(x) if **x == v));
    assert!(matches!(&out[1], Outgoing::Enforcement(x) if *x == e));
    assert_eq!(cases.publish(10, async |_| Ok(())).await.unwrap(), 0);

    // What a reviewer may decide and who may decide.
    assert!(refused(
        cases
            .decide(
                b,
                "bob",
                &Decided {
                    audiences: [Decision::Review; 3],
                    reason: "unsure".into()
                },
                t0 + 23
            )
            .await
    ));
    assert!(refused(
        cases
            .decide(b, "bob", &block_all(&"x".repeat(2001)), t0 + 23)
            .await
    ));
    assert!(refused(cases.claim("", "", "", lease, t0 + 23).await));
    assert!(refused(
        cases.claim("eve; DROP TABLE", "", "", lease, t0 + 23).await
    ));
    // A newer revision of clip-b (a re-scan) supersedes bob's case: nobody decides it now.
    assert_eq!(
        cases
            .supersede(&verdict("clip-b", "violence_gore", 1), t0 + 24)
            .await
            .unwrap(),
        1
    );
    assert!(refused(
        cases.decide(b, "bob", &block_all("gore"), t0 + 25).await
    ));

    // A reviewer who disappears: the case returns to its queue when the lease ends, and the
    // first reviewer can no longer decide it.
    let got = cases
        .claim("carol", "self_harm", "", 5, t0 + 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, c);
    assert!(
        cases
            .claim("dave", "self_harm", "", lease, t0 + 31)
            .await
            .unwrap()
            .is_none()
    );
    let got = cases
        .claim("dave", "self_harm", "", lease, t0 + 40)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.id, got.reviewer.as_deref()), (c, Some("dave")));
    assert!(refused(
        cases.decide(c, "carol", &block_all("late"), t0 + 41).await
    ));

    // Everything is in the audit log, which the database keeps append-only.
    let (case, audit) = cases.show(a).await.unwrap();
    assert_eq!(case.state, "decided");
    assert_eq!(
        case.decision.as_deref(),
        Some("adult=block,under_18=block,public_feed=block")
    );
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|x| (x.action.as_str(), x.actor.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("open", "review-stage"),
            ("claim", "alice"),
            ("decide", "alice")
        ]
    );
    assert!(
        cases
            .execute("UPDATE review_audit SET actor = 'nobody'")
            .await
            .is_err()
    );
    assert!(cases.execute("DELETE FROM review_audit").await.is_err());
    assert_eq!(cases.show(a).await.unwrap().1.len(), 3);
    if cases.is_postgres() {
        assert!(cases.execute("TRUNCATE review_audit").await.is_err());
    }
}

/// Verdict history, reports and appeals, the same on either database.
async fn reports_and_appeals(cases: &Cases) {
    let t0 = 5_000_000;
    let block = Decision::Block as i32;
    let mut blocked = verdict("clip-r", "sexual", 0);
    blocked.decision = block;
    blocked.audiences = Some(AudienceDecisions {
        adult: Decision::Allow as i32,
        under_18: block,
        public_feed: block,
    });
    // No verdict yet: nothing to report or appeal.
    assert!(matches!(
        cases.report("clip-r", "spam", "u1", t0).await,
        Err(ReviewError::NotFound(_))
    ));
    cases.record_verdict(&blocked).await.unwrap();
    cases.record_verdict(&blocked).await.unwrap(); // once per revision
    let h = cases.history("clip-r").await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].engine.as_str(), h[0].decision.as_str()),
        ("policy", "adult=allow,under_18=block,public_feed=block")
    );

    // Reports: the first opens a case in report/<audience>, later ones join it.
    let r1 = cases
        .report("clip-r", "looks like spam", "u1", t0)
        .await
        .unwrap();
    let r2 = cases
        .report("clip-r", "offensive", "u2", t0 + 1)
        .await
        .unwrap();
    assert!(r1.opened && !r2.opened);
    assert_eq!((r2.case_id, r2.reports), (r1.case_id, 2));
    let (case, audit) = cases.show(r1.case_id).await.unwrap();
    assert_eq!(
        (case.kind.as_str(), case.category.as_str()),
        ("report", "report")
    );
    assert_eq!(case.reports, 2);
    let statement = case.statement.unwrap();
    assert!(statement.contains("u1: looks like spam") && statement.contains("u2: offensive"));
    assert_eq!(
        audit.iter().filter(|a| a.action == "report").count(),
        2,
        "{audit:?}"
    );
    assert!(refused(
        cases.report("clip-r", " ", "u3", t0).await.map(|_| ())
    ));
    assert!(refused(
        cases
            .report("clip-r", "x", "has space", t0)
            .await
            .map(|_| ())
    ));

    // An appeal: the appealed verdict and the re-scan side by side, once per revision.
    let mut relaxed = blocked.clone();
    relaxed.policy_version = "relaxed".into();
    relaxed.decision = Decision::Allow as i32;
    relaxed.audiences = Some(AudienceDecisions {
        adult: Decision::Allow as i32,
        under_18: block,
        public_feed: Decision::Allow as i32,
    });
    let a = cases
        .appeal(
            "clip-r",
            "it is a dance video",
            "owner-1",
            Some(&relaxed),
            t0 + 2,
        )
        .await
        .unwrap();
    assert_eq!(a.appealed.revision, 0);
    assert!(refused(
        cases
            .appeal("clip-r", "again", "owner-1", None, t0 + 3)
            .await
            .map(|_| ())
    ));
    let (case, _) = cases.show(a.case_id).await.unwrap();
    assert_eq!(
        (
            case.kind.as_str(),
            case.category.as_str(),
            case.audience.as_str()
        ),
        ("appeal", "appeal", "public_feed")
    );
    assert_eq!(case.rescan.as_ref().unwrap().policy_version, "relaxed");
    assert_eq!(case.verdict.audiences, blocked.audiences);
    // Decided for the user: the clip's own audience changes, so the appeal is overturned.
    let claimed = cases
        .claim("carol", "appeal", "", 60_000, t0 + 4)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, a.case_id);
    let (v, e) = cases
        .decide(
            a.case_id,
            "carol",
            &Decided {
                audiences: [Decision::Allow, Decision::Block, Decision::Allow],
                reason: "a dance video, not sexual".into(),
            },
            t0 + 5,
        )
        .await
        .unwrap();
    assert_eq!((v.revision, e.case_kind.as_str()), (1, "appeal"));
    assert!(e.overturned);
    assert_eq!(e.case_opened_at_ms, t0 + 2);
    assert!(v.rationale.contains("on appeal"), "{}", v.rationale);
    // The reviewer's revision joins the history; a newer revision does not retire the report.
    cases.record_verdict(&v).await.unwrap();
    assert_eq!(cases.supersede(&v, t0 + 6).await.unwrap(), 0);
    let h = cases.history("clip-r").await.unwrap();
    assert_eq!(
        h.iter()
            .map(|r| (r.revision, r.engine.as_str()))
            .collect::<Vec<_>>(),
        [(0, "policy"), (1, "review:carol")]
    );
    // Allowed in its own audience now: nothing left to appeal.
    assert!(refused(
        cases
            .appeal("clip-r", "more", "owner-1", None, t0 + 7)
            .await
            .map(|_| ())
    ));
    assert_eq!(cases.show(r1.case_id).await.unwrap().0.state, "open");

    // The report case still sits on revision 0; deciding it makes revision 2, after carol's 1
    // (never a second revision 1).
    let report_case = cases
        .claim("dave", "report", "", 60_000, t0 + 8)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report_case.id, r1.case_id);
    let (v2, _) = cases
        .decide(
            r1.case_id,
            "dave",
            &block_all("reported, and it is explicit"),
            t0 + 9,
        )
        .await
        .unwrap();
    assert_eq!(v2.revision, 2);
    assert!(
        v2.rationale.contains("on a user report"),
        "{}",
        v2.rationale
    );
    cases.record_verdict(&v2).await.unwrap();
    // Appealed in turn: dave may not decide the appeal of his own decision; erin may.
    let a2 = cases
        .appeal("clip-r", "still a dance video", "owner-1", None, t0 + 10)
        .await
        .unwrap();
    assert_eq!(a2.appealed.revision, 2);
    assert!(
        cases
            .claim("dave", "appeal", "", 60_000, t0 + 11)
            .await
            .unwrap()
            .is_none(),
        "nobody decides the appeal of their own decision"
    );
    let got = cases
        .claim("erin", "appeal", "", 60_000, t0 + 11)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, a2.case_id);
    // A clip whose decision is still `review` has nothing final to appeal.
    let mut pending = verdict("clip-p", "violence_gore", 0);
    pending.clip_id = "clip-p".into();
    cases.record_verdict(&pending).await.unwrap();
    assert!(refused(
        cases
            .appeal("clip-p", "why?", "owner-2", None, t0 + 12)
            .await
            .map(|_| ())
    ));
}

/// Guessing a password is throttled per account: after five wrong passwords in a row the
/// account waits, 30 s then doubling, before a try is even checked (the right password
/// included); a right password after the wait, or an admin enabling the account, resets the
/// run. Every refusal is audited; an unknown id leaves no state behind.
async fn sign_in_throttling(cases: &Cases) {
    use clipguard_review::accounts::{Role, throttle_ms};
    let t0 = 50_000_000;
    let good = "the right long password";
    cases
        .add_account("admin", "tess", Role::Reviewer, good, t0)
        .await
        .unwrap();
    let standing = async |now| {
        let all = cases.accounts().await.unwrap();
        all.into_iter()
            .find(|a| a.id == "tess")
            .unwrap()
            .standing(now)
    };
    for i in 1..=4 {
        assert_eq!(
            cases
                .authenticate("tess", "wrong guess", t0 + i)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        standing(t0 + 4).await,
        "active (4 failed sign-ins in a row)"
    );
    // The fourth failure costs nothing: the right password still works, and resets the run.
    assert_eq!(
        cases.authenticate("tess", good, t0 + 5).await.unwrap(),
        Some(Role::Reviewer)
    );
    assert_eq!(standing(t0 + 5).await, "active");
    for i in 1..=5 {
        assert_eq!(
            cases
                .authenticate("tess", "wrong guess", t0 + 10 + i)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(throttle_ms(5), 30_000);
    let t1 = t0 + 15;
    assert_eq!(
        standing(t1).await,
        "throttled (5 failed sign-ins in a row; the next try is checked in 30 s)"
    );
    // While it waits, even the right password is refused unchecked, and the run is not longer.
    assert_eq!(
        cases.authenticate("tess", good, t1 + 29_000).await.unwrap(),
        None
    );
    assert!(
        standing(t1 + 29_000)
            .await
            .starts_with("throttled (5 failed")
    );
    // After the wait a wrong password doubles it; the right one resets everything.
    assert_eq!(
        cases
            .authenticate("tess", "wrong guess", t1 + 30_000)
            .await
            .unwrap(),
        None
    );
    let t2 = t1 + 30_000;
    assert_eq!(
        standing(t2).await,
        "throttled (6 failed sign-ins in a row; the next try is checked in 60 s)"
    );
    assert_eq!(
        cases.authenticate("tess", good, t2 + 60_000).await.unwrap(),
        Some(Role::Reviewer)
    );
    assert_eq!(standing(t2 + 60_000).await, "active");
    // An admin enabling the account clears a throttle at once.
    for i in 1..=5 {
        cases
            .authenticate("tess", "wrong guess", t2 + 70_000 + i)
            .await
            .unwrap();
    }
    let t3 = t2 + 70_005;
    assert!(
        standing(t3).await.starts_with("throttled (5 failed"),
        "{}",
        standing(t3).await
    );
    assert_eq!(throttle_ms(7), 120_000);
    assert_eq!(throttle_ms(100), 15 * 60_000);
    cases
        .change_account("admin", "tess", None, None, Some(false), t3 + 1)
        .await
        .unwrap();
    assert_eq!(
        cases.authenticate("tess", good, t3 + 2).await.unwrap(),
        Some(Role::Reviewer)
    );
    // Unknown ids are audited as `?` and never get a row.
    for i in 0..6 {
        cases
            .authenticate("nobody-here", "x", t3 + 10 + i)
            .await
            .unwrap();
    }
    assert!(
        cases
            .accounts()
            .await
            .unwrap()
            .iter()
            .all(|a| a.id != "nobody-here")
    );
    let audit = cases.audit_recent(500).await.unwrap();
    let count = |action: &str| {
        audit
            .iter()
            .filter(|e| e.actor == "tess" && e.action == action)
            .count()
    };
    assert_eq!(count("sign_in_failed"), 4 + 5 + 1 + 5);
    assert_eq!(count("sign_in_throttled"), 1);
    assert!(
        audit.iter().any(|e| e.action == "sign_in_throttled"
            && e.detail.contains("the next try is checked in 1 s")),
        "{audit:?}"
    );

    // Twenty guesses sent at once: each takes its place in the count before any is checked,
    // so five are checked and fifteen refused unchecked.
    cases
        .add_account("admin", "vic", Role::Reviewer, good, t3)
        .await
        .unwrap();
    let t4 = t3 + 100_000;
    let guesses = (0..20).map(|i| {
        let cases = cases.clone();
        tokio::spawn(async move {
            cases
                .authenticate("vic", &format!("guess {i:02} of many"), t4)
                .await
        })
    });
    for r in futures::future::join_all(guesses).await {
        assert_eq!(r.unwrap().unwrap(), None);
    }
    let audit = cases.audit_recent(500).await.unwrap();
    let vic = |action: &str| {
        audit
            .iter()
            .filter(|e| e.actor == "vic" && e.action == action)
            .count()
    };
    assert_eq!((vic("sign_in_failed"), vic("sign_in_throttled")), (5, 15));
    let all = cases.accounts().await.unwrap();
    let v = all.iter().find(|a| a.id == "vic").unwrap();
    assert_eq!(
        (v.failed_signins, v.throttled_until_ms),
        (5, Some(t4 + 30_000))
    );
}

#[tokio::test]
async fn cases_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nested/review.db").display());
    let cases = Cases::connect(&url, 4).await.unwrap();
    life_of_cases(&cases).await;
    reports_and_appeals(&cases).await;
    sign_in_throttling(&cases).await;
    // Reopening applies nothing twice and keeps the cases (the decided case, appeal and
    // report).
    let again = Cases::connect(&url, 4).await.unwrap();
    assert_eq!(again.list("decided", 10).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_on_postgres_and_concurrent_reviewers_never_share_a_case() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let cases = Cases::connect(&pg.url, 32).await.unwrap();
    life_of_cases(&cases).await;
    reports_and_appeals(&cases).await;
    sign_in_throttling(&cases).await;
    // Connecting again applies nothing twice.
    Cases::connect(&pg.url, 2).await.unwrap();

    // Concurrent reports of one clip: one case, every report counted.
    let mut v = verdict("clip-many", "sexual", 0);
    v.decision = Decision::Block as i32;
    cases.record_verdict(&v).await.unwrap();
    let reports = (0..12).map(|i| {
        let cases = cases.clone();
        tokio::spawn(async move {
            cases
                .report(
                    "clip-many",
                    &format!("reason {i}"),
                    &format!("u{i}"),
                    3_000_000 + i,
                )
                .await
                .unwrap()
        })
    });
    let taken: Vec<_> = futures::future::join_all(reports)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ids: BTreeSet<i64> = taken.iter().map(|r| r.case_id).collect();
    assert_eq!(ids.len(), 1, "{taken:?}");
    assert_eq!(taken.iter().filter(|r| r.opened).count(), 1);
    let (case, _) = cases.show(*ids.first().unwrap()).await.unwrap();
    assert_eq!(case.reports, 12);
    assert_eq!(case.statement.unwrap().lines().count(), 12);

    // A database made by the first release (version 1) is migrated in place.
    postgres_version_1_is_migrated(&pg.url).await;
    machines_whose_clocks_disagree_agree_on_a_lease(&pg.url).await;

    // 200 cases in one queue; 16 reviewers pull at once until it is empty.
    let t0 = 2_000_000;
    for i in 0..200 {
        cases
            .open(&verdict(&format!("bulk-{i}"), "sexual", 0), t0 + i)
            .await
            .unwrap();
    }
    let pulls = (0..16).map(|r| {
        let cases = cases.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(c) = cases
                .claim(
                    &format!("reviewer-{r}"),
                    "sexual",
                    "public_feed",
                    60_000,
                    t0 + 500,
                )
                .await
                .unwrap()
            {
                mine.push(c.id);
            }
            mine
        })
    });
    let got: Vec<Vec<i64>> = futures::future::join_all(pulls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let all: Vec<i64> = got.iter().flatten().copied().collect();
    let unique: BTreeSet<i64> = all.iter().copied().collect();
    let busy = got.iter().filter(|m| !m.is_empty()).count();
    println!(
        "16 reviewers pulled {} cases ({} distinct); {busy} got some",
        all.len(),
        unique.len()
    );
    assert_eq!(all.len(), 200, "every case pulled once");
    assert_eq!(unique.len(), 200, "no case pulled twice");
    assert!(busy > 1, "the pulls ran side by side");
}

/// A database made by the first release (schema version 1) is migrated in place: its cases,
/// ids and audit log are kept, and it takes reports and appeals.
#[tokio::test]
async fn a_version_1_sqlite_database_is_migrated_with_its_cases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let url = format!("sqlite://{}", path.display());
    // The first release's layout, as it wrote it.
    let v1 = [
        "CREATE TABLE review_schema (version INTEGER NOT NULL)",
        "INSERT INTO review_schema (version) VALUES (1)",
        "CREATE TABLE review_cases (id INTEGER PRIMARY KEY AUTOINCREMENT, clip_id TEXT NOT NULL,
            verdict_revision INTEGER NOT NULL, category TEXT NOT NULL, audience TEXT NOT NULL,
            state TEXT NOT NULL, reviewer TEXT, lease_until_ms INTEGER, verdict BLOB NOT NULL,
            created_ms INTEGER NOT NULL, decided_ms INTEGER, decision TEXT, reason TEXT,
            UNIQUE (clip_id, verdict_revision))",
        "CREATE TABLE review_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
            clip_id TEXT NOT NULL, payload BLOB NOT NULL, created_ms INTEGER NOT NULL,
            sent_ms INTEGER)",
        "CREATE TABLE review_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL,
            actor TEXT NOT NULL, action TEXT NOT NULL, case_id INTEGER, clip_id TEXT,
            detail TEXT NOT NULL)",
    ];
    let raw = sqlx::sqlite::SqlitePoolOptions::new()
        .connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    for s in v1 {
        sqlx::query(s).execute(&raw).await.unwrap();
    }
    let old = verdict("clip-old", "violence_gore", 0);
    sqlx::query(
        "INSERT INTO review_cases (id, clip_id, verdict_revision, category, audience, state,
            verdict, created_ms) VALUES (7, 'clip-old', 0, 'violence_gore', 'public_feed', 'open', ?1, 5)",
    )
    .bind(prost::Message::encode_to_vec(&old))
    .execute(&raw)
    .await
    .unwrap();
    raw.close().await;

    let cases = Cases::connect(&url, 1).await.unwrap();
    let (case, _) = cases.show(7).await.unwrap();
    assert_eq!(
        (case.clip_id.as_str(), case.kind.as_str()),
        ("clip-old", "verdict")
    );
    assert_eq!(case.verdict, old);
    // New cases continue after the old ids, and the new kinds fit beside the old case.
    let next = cases
        .open(&verdict("clip-new", "sexual", 0), 10)
        .await
        .unwrap()
        .unwrap();
    assert!(next > 7, "{next}");
    cases.record_verdict(&old).await.unwrap();
    let r = cases.report("clip-old", "spam", "u1", 11).await.unwrap();
    assert!(r.opened);
    assert_eq!(cases.list("open", 10).await.unwrap().len(), 3);
    accounts_count_failures(&cases).await;
}

/// Two workers on machines whose clocks are 10 minutes apart read one clock, the database's:
/// a lease one takes holds against the other. On their own clocks the machine running ahead
/// would see the lease long expired and take the case.
async fn machines_whose_clocks_disagree_agree_on_a_lease(url: &str) {
    let ahead = Cases::connect(url, 2).await.unwrap();
    let behind = Cases::connect(url, 2).await.unwrap();
    let ten_minutes = 10 * 60_000;
    ahead.pretend_local_clock_is_off_by(ten_minutes);
    behind.pretend_local_clock_is_off_by(-ten_minutes);
    let a = ahead.sync_clock().await.unwrap();
    let b = behind.sync_clock().await.unwrap();
    assert!((a + ten_minutes).abs() < 1_000, "{a}");
    assert!((b - ten_minutes).abs() < 1_000, "{b}");
    assert!((ahead.now_ms() - behind.now_ms()).abs() < 1_000);

    let v = verdict("clip-clocks", "extremism_hate", 0);
    assert!(behind.open(&v, behind.now_ms()).await.unwrap().is_some());
    let lease_ms = 60_000;
    let held = behind
        .claim("rita", "extremism_hate", "", lease_ms, behind.now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ahead
            .claim("sam", "extremism_hate", "", lease_ms, ahead.now_ms())
            .await
            .unwrap(),
        None,
        "the lease is live on the database's clock"
    );
    // What the machine ahead would have done on its own clock.
    let stolen = ahead
        .claim(
            "sam",
            "extremism_hate",
            "",
            lease_ms,
            clipguard_pipeline::now_ms() + ten_minutes,
        )
        .await
        .unwrap();
    assert_eq!(stolen.map(|c| c.id), Some(held.id));
}

/// A migrated database has accounts with version 4's run of failed sign-ins.
async fn accounts_count_failures(cases: &Cases) {
    use clipguard_review::accounts::Role;
    cases
        .add_account("admin", "mia", Role::Lead, "a migrated long password", 20)
        .await
        .unwrap();
    assert_eq!(
        cases.authenticate("mia", "wrong guess", 21).await.unwrap(),
        None
    );
    let mia = cases.accounts().await.unwrap().remove(0);
    assert_eq!((mia.failed_signins, mia.throttled_until_ms), (1, None));
}

async fn postgres_version_1_is_migrated(url: &str) {
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    sqlx::query("CREATE DATABASE first_release")
        .execute(&admin)
        .await
        .unwrap();
    let old_url = url.replace("/postgres", "/first_release");
    let raw = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&old_url)
        .await
        .unwrap();
    for s in [
        "CREATE TABLE review_schema (version BIGINT NOT NULL)",
        "INSERT INTO review_schema (version) VALUES (1)",
        "CREATE TABLE review_cases (id BIGSERIAL PRIMARY KEY, clip_id TEXT NOT NULL,
            verdict_revision BIGINT NOT NULL, category TEXT NOT NULL, audience TEXT NOT NULL,
            state TEXT NOT NULL, reviewer TEXT, lease_until_ms BIGINT, verdict BYTEA NOT NULL,
            created_ms BIGINT NOT NULL, decided_ms BIGINT, decision TEXT, reason TEXT,
            UNIQUE (clip_id, verdict_revision))",
        "CREATE TABLE review_outbox (id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL,
            clip_id TEXT NOT NULL, payload BYTEA NOT NULL, created_ms BIGINT NOT NULL,
            sent_ms BIGINT)",
        "CREATE TABLE review_audit (id BIGSERIAL PRIMARY KEY, at_ms BIGINT NOT NULL,
            actor TEXT NOT NULL, action TEXT NOT NULL, case_id BIGINT, clip_id TEXT,
            detail TEXT NOT NULL)",
    ] {
        sqlx::query(s).execute(&raw).await.unwrap();
    }
    let old = verdict("clip-old", "violence_gore", 0);
    sqlx::query(
        "INSERT INTO review_cases (clip_id, verdict_revision, category, audience, state,
            verdict, created_ms) VALUES ('clip-old', 0, 'violence_gore', 'public_feed', 'open', $1, 5)",
    )
    .bind(prost::Message::encode_to_vec(&old))
    .execute(&raw)
    .await
    .unwrap();
    raw.close().await;

    let cases = Cases::connect(&old_url, 2).await.unwrap();
    let listed = cases.list("open", 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].kind.as_str(), &listed[0].verdict),
        ("verdict", &old)
    );
    // The old unique constraint is gone: a report case beside the verdict case of revision 0.
    cases.record_verdict(&old).await.unwrap();
    assert!(
        cases
            .report("clip-old", "spam", "u1", 10)
            .await
            .unwrap()
            .opened
    );
    assert_eq!(cases.list("open", 10).await.unwrap().len(), 2);
    accounts_count_failures(&cases).await;
    Cases::connect(&old_url, 2).await.unwrap();
}
