//! End-to-end tests on a real Kafka-protocol broker process (tansu) with every stage as its
//! own `clipguard stage` process (media, hashmatch, transcribe, classify, classify_transcript,
//! monitor): exactly one verdict per clip, also when the media worker is
//! killed with SIGKILL mid-run; precise errors for hostile input; gRPC reflection, health and
//! metrics.

// Tests and benchmarks report failure by panicking.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clipguard_schemas::Decision;
use common::{Broker, Proc, Samples, TopicReader, VerdictLog};

const PARTITIONS: u32 = 3;

fn stage_env(store: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("CLIPGUARD_STORE__URL", store.display().to_string()),
        (
            "CLIPGUARD_HASHMATCH__BANKS_DIR",
            store.join("banks").display().to_string(),
        ),
        ("CLIPGUARD_KAFKA__SESSION_TIMEOUT_MS", "6000".to_string()),
        ("CLIPGUARD_KAFKA__CREATE_TOPICS", "false".to_string()),
        ("CLIPGUARD_LOG", "warn".to_string()),
        // A burst of 100 clips queues at the one transcribe worker (whisper, one thread, on a
        // 2-core machine shared with every other stage): these tests check exactly-once
        // verdicts, not latency, so the monitor waits for every stage.
        ("CLIPGUARD_MONITOR__TIMEOUT_S", "300".to_string()),
    ]
}

/// Every input kind and what its verdict must say: file, decision, reason prefix (none = no
/// reasons at all).
const EXPECTED: &[(&str, Decision, Option<&str>)] = &[
    ("speech.mp4", Decision::Allow, None),
    ("ball.webm", Decision::Allow, None),
    ("snow.mkv", Decision::Allow, None),
    (
        "corrupt.mp4",
        Decision::Block,
        Some("media_error:truncated"),
    ),
    ("empty.mp4", Decision::Block, Some("media_error:empty")),
    (
        "text.mp4",
        Decision::Block,
        Some("media_error:unrecognized_format"),
    ),
    ("random.mp4", Decision::Block, Some("media_error:")),
];

struct Run {
    verdicts: VerdictLog,
    sources: HashMap<String, String>,
    elapsed: Duration,
    /// Media signals on clips.signals (more than 100 means work was redone).
    media_signals: usize,
    /// Distinct clip ids on clips.dlq.
    dead_lettered: HashSet<String>,
}

/// Submits 100 clips through separate media and monitor processes and collects verdicts.
/// With `kill_after`, the media process is SIGKILLed once that many verdicts exist, then
/// restarted.
fn hundred_clips(kill_after: Option<usize>) -> Option<Run> {
    let _turn = common::serial();
    let broker = Broker::start()?;
    broker.create_topics(PARTITIONS);
    let samples = Samples::make();
    let store = samples.path("store");
    let mut env = stage_env(&store);
    if kill_after.is_some() {
        // Commit rarely, so the killed worker leaves acknowledged outputs behind uncommitted
        // offsets: its successor redoes that work and the duplicates must change nothing.
        env.push(("CLIPGUARD_HOST__COMMIT_INTERVAL_MS", "4000".to_string()));
    }
    let brokers = broker.addr.clone();
    let mut media = Proc::spawn("media", &["stage", "media", "--brokers", &brokers], &env);
    let mut hashmatch = Proc::spawn(
        "hashmatch",
        &["stage", "hashmatch", "--brokers", &brokers],
        &env,
    );
    let mut transcribe = Proc::spawn(
        "transcribe",
        &["stage", "transcribe", "--brokers", &brokers],
        &env,
    );
    let mut classify = Proc::spawn(
        "classify",
        &["stage", "classify", "--brokers", &brokers],
        &env,
    );
    let mut classify_transcript = Proc::spawn(
        "classify_transcript",
        &["stage", "classify_transcript", "--brokers", &brokers],
        &env,
    );
    let mut monitor = Proc::spawn(
        "monitor",
        &["stage", "monitor", "--brokers", &brokers],
        &env,
    );

    let files: Vec<PathBuf> = (0..100)
        .map(|i| samples.path(EXPECTED[i % EXPECTED.len()].0))
        .collect();
    let started = Instant::now();
    let sources = common::submit(&brokers, &files, &env);
    assert_eq!(sources.len(), 100, "100 distinct clip ids");

    let reader = TopicReader::new(&brokers, "clips.verdicts", PARTITIONS as i32);
    let mut log = VerdictLog::default();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(240);
    while log.by_clip.len() < 100 && Instant::now() < deadline {
        log.absorb(reader.poll(Duration::from_millis(300)));
        if let Some(n) = kill_after
            && !killed
            && log.by_clip.len() >= n
        {
            media.kill9();
            eprintln!(
                "media worker killed with SIGKILL after {} verdicts",
                log.by_clip.len()
            );
            killed = true;
            media = Proc::spawn("media", &["stage", "media", "--brokers", &brokers], &env);
        }
        assert!(monitor.alive(), "monitor process died");
        assert!(hashmatch.alive(), "hashmatch process died");
        assert!(transcribe.alive(), "transcribe process died");
        assert!(classify.alive(), "classify process died");
        assert!(
            classify_transcript.alive(),
            "classify_transcript process died"
        );
        assert!(
            media.alive(),
            "media process died (a worker must never crash on input)"
        );
    }
    let elapsed = started.elapsed();
    // Anything still in flight would show up now as a duplicate or conflict.
    log.absorb(reader.poll(Duration::from_secs(2)));
    if kill_after.is_some() {
        assert!(killed, "the kill never happened");
    }
    assert!(media.alive(), "media process died");
    assert_eq!(
        media.sigterm().code(),
        Some(0),
        "media drains and exits 0 on SIGTERM"
    );
    assert_eq!(
        monitor.sigterm().code(),
        Some(0),
        "monitor drains and exits 0 on SIGTERM"
    );
    let media_signals = TopicReader::new(&brokers, "clips.signals", PARTITIONS as i32)
        .poll(Duration::from_secs(2))
        .into_iter()
        .filter(|(_, p)| {
            prost::Message::decode(p.as_slice())
                .is_ok_and(|s: clipguard_schemas::Signal| s.stage == "media")
        })
        .count();
    let dead_lettered = TopicReader::new(&brokers, "clips.dlq", PARTITIONS as i32)
        .poll(Duration::from_secs(2))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    Some(Run {
        verdicts: log,
        sources,
        elapsed,
        media_signals,
        dead_lettered,
    })
}

fn check(run: &Run, samples_mix: &[(&str, Decision, Option<&str>)]) {
    let log = &run.verdicts;
    let missing: Vec<_> = run
        .sources
        .keys()
        .filter(|id| !log.by_clip.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} clips got no verdict: {missing:?}",
        missing.len()
    );
    assert_eq!(log.by_clip.len(), 100, "exactly one verdict per clip id");
    let strays: Vec<_> = log
        .by_clip
        .keys()
        .filter(|id| !run.sources.contains_key(*id))
        .collect();
    assert!(strays.is_empty(), "verdicts for unknown clips: {strays:?}");
    assert!(
        log.conflicts().is_empty(),
        "conflicting verdicts for {:?}",
        log.conflicts()
    );
    for (id, verdicts) in &log.by_clip {
        let source = &run.sources[id];
        let name = std::path::Path::new(source)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let (_, decision, reason) = samples_mix
            .iter()
            .find(|(n, _, _)| *n == name)
            .expect("known sample");
        let v = &verdicts[0];
        assert_eq!(
            v.decision(),
            *decision,
            "{name}: {:?} / {}",
            v.reasons,
            v.rationale
        );
        match reason {
            Some(r) => assert!(
                v.reasons.iter().any(|x| x.starts_with(r)),
                "{name}: reasons {:?} lack {r}",
                v.reasons
            ),
            None => assert!(
                v.reasons.is_empty(),
                "{name}: unexpected reasons {:?}",
                v.reasons
            ),
        }
        assert_eq!(&v.source, source);
    }
    // Every undecodable clip left a dead letter, and only those.
    let bad: HashSet<String> = log
        .by_clip
        .iter()
        .filter(|(_, v)| v[0].reasons.iter().any(|r| r.starts_with("media_error:")))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        run.dead_lettered, bad,
        "dead letters are exactly the undecodable clips"
    );
    println!(
        "100 clips: {} verdict records for {} clip ids in {:.1} s, no conflicts; {} media signals \
         ({} redelivered), {} dead letters",
        log.records,
        log.by_clip.len(),
        run.elapsed.as_secs_f64(),
        run.media_signals,
        run.media_signals.saturating_sub(100),
        run.dead_lettered.len()
    );
}

/// 100 clips through separate stage processes, the media worker killed with SIGKILL after 30
/// verdicts and restarted: exactly one verdict per clip, each the right one. (The same run
/// without the kill proves nothing more, and `tests/loadtest.rs` runs separate stage processes
/// without faults too.)
#[test]
fn media_worker_killed_mid_run_still_yields_exactly_one_verdict_each() {
    let Some(run) = hundred_clips(Some(30)) else {
        return;
    };
    check(&run, EXPECTED);
}

/// A rolling restart of the monitor (SIGTERM) must not decide incomplete clips early: it
/// releases them uncommitted, exits promptly, and the next monitor decides each exactly once.
#[test]
fn monitor_sigterm_hands_incomplete_clips_to_the_next_owner() {
    let _turn = common::serial();
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topics(PARTITIONS);
    let samples = Samples::make();
    let mut env = stage_env(&samples.path("store"));
    // Expect a stage that is not running (no hashmatch worker here), so every join stays
    // incomplete.
    env.push((
        "CLIPGUARD_MONITOR__EXPECTED_STAGES",
        r#"["media", "hashmatch"]"#.to_string(),
    ));
    let brokers = broker.addr.clone();
    let _media = Proc::spawn("media", &["stage", "media", "--brokers", &brokers], &env);
    let mut slow_env = env.clone();
    slow_env.push(("CLIPGUARD_MONITOR__TIMEOUT_S", "300".to_string()));
    let mut monitor = Proc::spawn(
        "monitor",
        &["stage", "monitor", "--brokers", &brokers],
        &slow_env,
    );

    let files: Vec<PathBuf> = (0..5).map(|_| samples.path("ball.webm")).collect();
    let sources = common::submit(&brokers, &files, &env);
    let signals = TopicReader::new(&brokers, "clips.signals", PARTITIONS as i32);
    let mut seen = 0;
    let until = Instant::now() + Duration::from_secs(60);
    while seen < 5 && Instant::now() < until {
        seen += signals.poll(Duration::from_millis(200)).len();
    }
    assert_eq!(seen, 5, "media signals");
    std::thread::sleep(Duration::from_secs(2)); // let the monitor read them

    let stopping = Instant::now();
    assert_eq!(monitor.sigterm().code(), Some(0));
    let stop_s = stopping.elapsed().as_secs_f64();
    assert!(stop_s < 20.0, "monitor took {stop_s:.1} s to stop");
    let verdicts = TopicReader::new(&brokers, "clips.verdicts", PARTITIONS as i32);
    assert!(
        verdicts.poll(Duration::from_secs(1)).is_empty(),
        "no verdict before the joins are complete"
    );

    let mut fast_env = env.clone();
    fast_env.push(("CLIPGUARD_MONITOR__TIMEOUT_S", "2".to_string()));
    let _next = Proc::spawn(
        "monitor",
        &["stage", "monitor", "--brokers", &brokers],
        &fast_env,
    );
    let mut log = VerdictLog::default();
    let until = Instant::now() + Duration::from_secs(90);
    while log.by_clip.len() < 5 && Instant::now() < until {
        log.absorb(verdicts.poll(Duration::from_millis(300)));
    }
    log.absorb(verdicts.poll(Duration::from_secs(2)));
    assert_eq!(log.by_clip.len(), 5, "every clip decided by the next owner");
    assert_eq!(log.records, 5, "exactly one verdict each");
    for (id, v) in &log.by_clip {
        assert!(sources.contains_key(id));
        assert_eq!(
            v[0].decision(),
            Decision::Review,
            "fail closed on the missing stage"
        );
        assert_eq!(v[0].missing_stages, vec!["hashmatch".to_string()]);
    }
    println!(
        "monitor stopped in {stop_s:.1} s with 5 incomplete joins; the next owner decided each once"
    );
}

/// A monitor killed with SIGKILL forgets nothing it decided: clips decided by deadline (a stage
/// missing) stay decided when their late signals reach the restarted monitor, which read the
/// verdicts back from `clips.verdicts` before consuming. Without that memory each late signal
/// would start a new join and a second verdict.
#[test]
fn monitor_killed_after_deadline_verdicts_never_decides_those_clips_again() {
    let _turn = common::serial();
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topics(PARTITIONS);
    let samples = Samples::make();
    let mut env = stage_env(&samples.path("store"));
    env.retain(|(k, _)| *k != "CLIPGUARD_MONITOR__TIMEOUT_S");
    env.push((
        "CLIPGUARD_MONITOR__EXPECTED_STAGES",
        r#"["media", "hashmatch"]"#.to_string(),
    ));
    env.push(("CLIPGUARD_MONITOR__TIMEOUT_S", "2".to_string()));
    let brokers = broker.addr.clone();
    let _media = Proc::spawn("media", &["stage", "media", "--brokers", &brokers], &env);
    let mut monitor = Proc::spawn(
        "monitor",
        &["stage", "monitor", "--brokers", &brokers],
        &env,
    );
    let files: Vec<PathBuf> = (0..4).map(|_| samples.path("ball.webm")).collect();
    let sources = common::submit(&brokers, &files, &env);
    let verdicts = TopicReader::new(&brokers, "clips.verdicts", PARTITIONS as i32);
    let mut log = VerdictLog::default();
    let until = Instant::now() + Duration::from_secs(90);
    while log.by_clip.len() < 4 && Instant::now() < until {
        log.absorb(verdicts.poll(Duration::from_millis(300)));
    }
    assert_eq!(log.by_clip.len(), 4, "every clip decided by deadline");
    for v in log.by_clip.values() {
        assert_eq!(v[0].missing_stages, vec!["hashmatch".to_string()]);
    }
    monitor.kill9();

    // The late signals: a hashmatch worker starts and signals all four clips.
    let _hashmatch = Proc::spawn(
        "hashmatch",
        &["stage", "hashmatch", "--brokers", &brokers],
        &env,
    );
    let signals = TopicReader::new(&brokers, "clips.signals", PARTITIONS as i32);
    let _restarted = Proc::spawn(
        "monitor",
        &["stage", "monitor", "--brokers", &brokers],
        &env,
    );
    let mut late = 0;
    let until = Instant::now() + Duration::from_secs(60);
    while late < 4 && Instant::now() < until {
        late += signals
            .poll(Duration::from_millis(300))
            .iter()
            .filter(|(_, payload)| {
                <clipguard_schemas::Signal as prost::Message>::decode(payload.as_slice())
                    .is_ok_and(|s| s.stage == "hashmatch")
            })
            .count();
    }
    assert_eq!(late, 4, "late hashmatch signals");
    // Longer than a join's deadline: a monitor that forgot would have decided again by now.
    let settle = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle {
        log.absorb(verdicts.poll(Duration::from_millis(300)));
    }
    assert_eq!(log.by_clip.len(), 4);
    assert!(log.by_clip.keys().all(|id| sources.contains_key(id)));
    assert_eq!(
        log.records, 4,
        "a restarted monitor decided clips it had already decided"
    );
    println!("4 clips decided by deadline, monitor SIGKILLed, 4 late signals: no second verdict");
}

/// The producer's contract, broken three ways: a message without a key whose payload names the
/// clip gets a dead letter and an error verdict under that name; one without a key and without
/// a readable payload gets a dead letter only (no invented id, no verdict for nobody); one whose
/// key and payload name different clips gets a dead letter and an error verdict under its key.
#[test]
fn contract_breaking_submissions_are_dead_lettered_with_a_precise_reason_and_no_invented_id() {
    use clipguard_schemas::{ClipSubmitted, DeadLetter, MediaRef, Verdict, media_ref::Location};
    use prost::Message;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let _turn = common::serial();
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topics(PARTITIONS);
    let samples = Samples::make();
    let mut env = stage_env(&samples.path("store"));
    env.push((
        "CLIPGUARD_MONITOR__EXPECTED_STAGES",
        r#"["media"]"#.to_string(),
    ));
    let brokers = broker.addr.clone();
    let _media = Proc::spawn("media", &["stage", "media", "--brokers", &brokers], &env);
    let _monitor = Proc::spawn(
        "monitor",
        &["stage", "monitor", "--brokers", &brokers],
        &env,
    );

    let clip = |id: &str| {
        ClipSubmitted {
            clip_id: id.into(),
            media: Some(MediaRef {
                location: Some(Location::Inline(
                    std::fs::read(samples.path("ball.webm")).unwrap(),
                )),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let producer: BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let unkeyed_named = clip("named-1");
    let garbage = b"\xff\xff\xff not a protobuf message".to_vec();
    let mismatched = clip("other-1");
    producer
        .send(BaseRecord::<(), Vec<u8>>::to("clips.submitted").payload(&unkeyed_named))
        .unwrap();
    producer
        .send(BaseRecord::<(), Vec<u8>>::to("clips.submitted").payload(&garbage))
        .unwrap();
    producer
        .send(
            BaseRecord::to("clips.submitted")
                .key("key-1")
                .payload(&mismatched),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    let dlq = TopicReader::new(&brokers, "clips.dlq", PARTITIONS as i32);
    let verdicts = TopicReader::new(&brokers, "clips.verdicts", PARTITIONS as i32);
    let mut letters: Vec<DeadLetter> = Vec::new();
    let mut decided: HashMap<String, Verdict> = HashMap::new();
    let until = Instant::now() + Duration::from_secs(60);
    while (letters.len() < 3 || decided.len() < 2) && Instant::now() < until {
        for (_, payload) in dlq.poll(Duration::from_millis(200)) {
            letters.push(DeadLetter::decode(payload.as_slice()).unwrap());
        }
        for (key, payload) in verdicts.poll(Duration::from_millis(200)) {
            decided.insert(key, Verdict::decode(payload.as_slice()).unwrap());
        }
    }
    // Anything more would come now.
    for (key, payload) in verdicts.poll(Duration::from_secs(3)) {
        decided.insert(key, Verdict::decode(payload.as_slice()).unwrap());
    }
    for l in &letters {
        println!("dead letter key={:?}: {}", l.key, l.reason);
    }
    for (id, v) in &decided {
        println!("verdict {id}: {:?} {:?}", v.decision(), v.reasons);
    }
    let reason_of = |key: &str| {
        letters
            .iter()
            .find(|l| l.key == key)
            .map(|l| l.reason.clone())
            .unwrap_or_else(|| panic!("no dead letter keyed {key:?}: {letters:?}"))
    };
    assert!(reason_of("named-1").starts_with("unkeyed_message:"));
    assert!(reason_of("").starts_with("unkeyed_message:"));
    assert!(reason_of("").contains("no verdict"));
    assert!(reason_of("key-1").starts_with("key_mismatch:"));
    assert_eq!(letters.len(), 3, "{letters:?}");
    let mut ids: Vec<&String> = decided.keys().collect();
    ids.sort();
    assert_eq!(
        ids,
        ["key-1", "named-1"],
        "verdicts only for the named clips"
    );
    for v in decided.values() {
        assert_eq!(v.decision(), Decision::Block, "{v:?}");
    }
}
