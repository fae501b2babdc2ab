//! The load test's short profile end to end: generated clips at a target rate through separate
//! `clipguard stage` processes (two media replicas) on a real tansu broker, one verdict per
//! clip, and a complete report (tables, capacity, plots). Its numbers come from a debug build
//! beside other tests and are not checked: only that they were measured.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use clipguard_loadtest::{Options, Profile};

/// Whether the test broker binary exists; without it the test skips, unless the run requires a
/// broker (CI), where it fails.
fn broker_available() -> bool {
    if clipguard_loadtest::procs::tansu_path().is_some() {
        return true;
    }
    let msg = "no tansu broker binary (set CLIPGUARD_TANSU, or run scripts/setup.sh --broker)";
    assert!(
        std::env::var("CLIPGUARD_REQUIRE_BROKER").as_deref() != Ok("1"),
        "{msg}"
    );
    eprintln!("skipping: {msg}");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_short_profile_gets_a_verdict_for_every_clip_and_writes_the_report() {
    if !broker_available() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let profile = Profile::load(&root.join("loadtest/profiles/short.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        clipguard: common::bin().into(),
        out: dir.path().join("out"),
        pool: dir.path().join("pool"),
        brokers: None,
        baseline_python: None,
        baseline_args: Vec::new(),
        name: "short".into(),
    };
    let report = clipguard_loadtest::run(&profile, &opts).await.unwrap();

    assert_eq!(report.submitted, profile.clips);
    assert_eq!(report.verdicts, profile.clips, "clips without a verdict");
    assert_eq!(report.duplicates, 0);
    // Two of the eight are truncated files: blocked fail-closed, never allowed.
    let broken = (0..profile.clips)
        .filter(|i| profile.kind_of(*i).broken)
        .count();
    assert_eq!(broken, 2);
    for s in report.seen.iter().filter(|s| s.kind == "broken") {
        assert_eq!(s.decision, "block", "truncated clip {}", s.clip_id);
    }
    for stage in clipguard_schemas::names::stage::ALL {
        let row = &report.stages[*stage];
        assert_eq!(row.replicas, profile.replicas_of(stage), "{stage}");
        assert!(row.cpu_s_per_clip.is_finite(), "{stage}: CPU not read");
        assert!(row.peak_rss_mib > 10.0, "{stage}: no memory measured");
    }
    // The heavy stages' CPU is well above /proc's 10 ms resolution (the light ones may not be).
    for stage in ["media", "transcribe", "classify"] {
        assert!(report.stages[stage].cpu_s > 0.0, "{stage}: no CPU measured");
    }
    assert!(report.latency_p50_s > 0.0 && report.latency_p99_s >= report.latency_p50_s);
    assert!(
        report.samples.len() >= 3,
        "{} samples",
        report.samples.len()
    );
    let stages = clipguard_schemas::names::stage::ALL.len();
    assert!(report.samples.iter().all(|s| s.lag.len() == stages));
    // The brokers' view of every stage's group (its input topic found from its lag gauge).
    assert!(
        report.samples.iter().any(|s| s.group_lag.len() == stages),
        "group lag read for {:?}",
        report
            .samples
            .last()
            .map(|s| s.group_lag.keys().collect::<Vec<_>>())
    );
    assert_eq!(
        report.clean_exits, report.processes,
        "a stage did not stop on SIGTERM within 60 s"
    );
    let md = std::fs::read_to_string(opts.out.join("report.md")).unwrap();
    for expected in ["| media | 2 |", "## Capacity", "| 1000 |", "latency.png"] {
        assert!(md.contains(expected), "report.md lacks `{expected}`:\n{md}");
    }
    for png in [
        "latency.png",
        "lag.png",
        "group_lag.png",
        "cpu.png",
        "progress.png",
    ] {
        let len = std::fs::metadata(opts.out.join(png)).unwrap().len();
        assert!(len > 2000, "{png} is {len} bytes");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(opts.out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["verdicts"], profile.clips);
}

/// The fault run's short variant (`loadtest/profiles/faults-short.toml`, trimmed further for a
/// debug build: 12 clips): stage processes of every kind SIGKILLed and restarted while clips flow, the
/// broker killed and restarted once; every clip still ends with exactly one decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_run_loses_no_verdict_and_never_decides_a_clip_twice() {
    if !broker_available() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut profile = Profile::load(&root.join("loadtest/profiles/faults-short.toml")).unwrap();
    profile.clips = 12;
    profile.rate = 1.0;
    profile.max_seconds = 300.0;
    let faults = profile.faults.as_mut().unwrap();
    faults.broker_restart_after_clips = 6;
    faults.kill_every_s = 4.0;
    // The stateful one and the slow one first; random victims after.
    faults.first = vec!["monitor".into(), "transcribe".into()];
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        clipguard: common::bin().into(),
        out: dir.path().join("out"),
        pool: dir.path().join("pool"),
        brokers: None,
        baseline_python: None,
        baseline_args: Vec::new(),
        name: "faults".into(),
    };
    let report = clipguard_loadtest::run(&profile, &opts).await.unwrap();
    let f = report.faults.as_ref().expect("a fault summary");
    println!(
        "fault run: {} of {} clips decided, {} kills {:?}, {} broker restart(s), {} duplicates absorbed, {} signals redone, conflicts {:?}",
        report.verdicts,
        report.submitted,
        f.kills.values().sum::<usize>(),
        f.kills,
        f.broker_restarts,
        f.duplicates_absorbed,
        f.redelivered_signals,
        f.conflicts
    );
    assert_eq!(report.submitted, profile.clips);
    assert_eq!(report.verdicts, profile.clips, "clips without a verdict");
    assert!(
        f.conflicts.is_empty(),
        "clips decided two ways: {:?}",
        f.conflicts
    );
    assert_eq!(f.broker_restarts, 1);
    // The profile kills the monitor and transcribe first; how many more kills fit before the
    // last verdict depends on how fast the machine drains (a fast run ended after two).
    assert!(
        f.kills.contains_key("monitor") && f.kills.contains_key("transcribe"),
        "{:?}",
        f.kills
    );
    // Kills every 4 s, restarts 8 s later: at most three are still down at the end.
    assert!(f.restarts + 3 >= f.kills.values().sum::<usize>());
    for s in report.seen.iter().filter(|s| s.kind == "broken") {
        assert_eq!(s.decision, "block", "truncated clip {}", s.clip_id);
    }
    let md = std::fs::read_to_string(opts.out.join("report.md")).unwrap();
    assert!(md.contains("## Faults"));
}
