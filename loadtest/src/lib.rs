//! clipguard's load test: publishes clips at a target rate to a pipeline of separate
//! `clipguard stage` processes on a real Kafka-protocol broker (tansu over loopback), and
//! measures submission → verdict latency, throughput, each stage's consumer lag over time (its
//! workers' own gauge, and its group's lag as the brokers and KEDA see it) and
//! its CPU seconds and peak memory per clip; from the CPU per clip, the replicas each stage
//! needs for 10, 100 and 1,000 clips/s. Optionally runs the plain Python worker of
//! `loadtest/baseline.py` over the same clips in the same run and reports the ratios.
//!
//! Bounded: a profile's `clips` and `max_seconds`; loopback only; every process it starts is
//! stopped at the end (SIGTERM, then SIGKILL). Writes `report.md`, `report.json` and PNG plots.
//!
//! ```text
//! cargo run --release -p clipguard-loadtest -- --profile loadtest/profiles/full.toml \
//!     --clipguard target/release/clipguard --out loadtest/out
//! ```

pub mod grouplag;
pub mod pool;
pub mod procs;
pub mod profile;
pub mod report;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clipguard_pipeline::edges::{self, SubmitOptions};
use clipguard_pipeline::kafka::KafkaConfig;
use clipguard_pipeline::store::{MediaStore, StoreConfig};

pub use profile::Profile;
pub use report::Report;

use crate::procs::Proc;
use crate::profile::STAGES;

/// What a run needs besides its profile.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `clipguard` binary whose stages are measured.
    pub clipguard: PathBuf,
    /// Where the report, plots, logs and the broker's data go.
    pub out: PathBuf,
    /// Where generated clips are kept between runs.
    pub pool: PathBuf,
    /// A running broker to use instead of starting tansu.
    pub brokers: Option<String>,
    /// The Python interpreter for `loadtest/baseline.py`; no baseline when absent.
    pub baseline_python: Option<PathBuf>,
    /// Arguments for the baseline (model files), passed through.
    pub baseline_args: Vec<String>,
    /// A name for the run in the report (the profile file's stem).
    pub name: String,
}

/// One sample of the run, `t` seconds after the first submission.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub t: f64,
    /// Cumulative CPU seconds per stage since the warm-up ended (all replicas).
    pub cpu: BTreeMap<String, f64>,
    /// Consumer lag per stage (its replicas' `clipguard_<stage>_consumer_lag`).
    pub lag: BTreeMap<String, f64>,
    /// The stage's consumer-group lag as the brokers see it (what KEDA scales on).
    pub group_lag: BTreeMap<String, f64>,
    pub submitted: usize,
    pub verdicts: usize,
}

/// A verdict as the load test saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Seen {
    pub clip_id: String,
    pub kind: String,
    pub decision: String,
    /// Submission (broker acknowledged) to verdict read, in seconds.
    pub latency_s: f64,
    /// When the verdict was read, seconds after the first submission.
    pub at_s: f64,
}

struct Stage {
    name: &'static str,
    proc: Proc,
    metrics: SocketAddr,
}

/// Runs the profile; writes the report into `opts.out` and returns it.
pub async fn run(profile: &Profile, opts: &Options) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&opts.out)?;
    let logs = opts.out.join("logs");
    std::fs::create_dir_all(&logs)?;
    // The pool, generated once.
    let mut kinds: HashMap<String, PathBuf> = HashMap::new();
    for k in &profile.clip {
        let path = pool::ensure(k, &opts.pool).with_context(|| format!("clip kind {}", k.name))?;
        kinds.insert(k.name.clone(), path);
    }

    // The broker and the topics.
    let (_broker, brokers) = match &opts.brokers {
        Some(b) => (None, b.clone()),
        None => {
            let tansu = procs::tansu_path().context(
                "no tansu broker (set CLIPGUARD_TANSU, or run scripts/setup.sh --broker), or pass --brokers",
            )?;
            let dir = opts.out.join("broker");
            let _ = std::fs::remove_dir_all(&dir);
            let (p, addr) = procs::start_broker(&tansu, &dir)?;
            (Some(p), addr)
        }
    };
    let store_dir = opts.out.join("store");
    let banks_dir = opts.out.join("banks");
    std::fs::create_dir_all(&banks_dir)?;
    let mut env: Vec<(String, String)> = vec![
        ("CLIPGUARD_KAFKA__BROKERS".into(), brokers.clone()),
        (
            "CLIPGUARD_KAFKA__PARTITIONS".into(),
            profile.partitions.to_string(),
        ),
        (
            "CLIPGUARD_STORE__URL".into(),
            format!("file://{}", std::path::absolute(&store_dir)?.display()),
        ),
        (
            "CLIPGUARD_HASHMATCH__BANKS_DIR".into(),
            std::path::absolute(&banks_dir)?.display().to_string(),
        ),
    ];
    env.extend(profile.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let out = std::process::Command::new(&opts.clipguard)
        .args(["topics", "create", "--brokers", &brokers])
        .envs(env.iter().cloned())
        .output()
        .with_context(|| format!("cannot run {}", opts.clipguard.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "clipguard topics create: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The stages, started one after another (each loads its models), then warmed up together.
    let mut stages: Vec<Stage> = Vec::new();
    let started = Instant::now();
    for name in STAGES {
        for r in 0..profile.replicas_of(name) {
            let log = logs.join(format!("{name}-{r}.log"));
            let (proc, metrics) = procs::start_stage(&opts.clipguard, name, r, &env, &log)?;
            stages.push(Stage {
                name,
                proc,
                metrics,
            });
        }
    }
    eprintln!(
        "loadtest: {} stage processes up in {:.1} s",
        stages.len(),
        started.elapsed().as_secs_f64()
    );

    let kafka = KafkaConfig {
        brokers: brokers.clone(),
        partitions: profile.partitions as i32,
        ..KafkaConfig::default()
    };
    let store = MediaStore::open(&StoreConfig {
        url: format!("file://{}", std::path::absolute(&store_dir)?.display()),
        ..StoreConfig::default()
    })?;
    let producer: rdkafka::producer::FutureProducer = kafka
        .client_config()
        .set("enable.idempotence", "true")
        .create()?;
    let (consumer, _) = edges::verdict_reader(&kafka, edges::From::End).await?;
    let verdicts: Arc<Mutex<Vec<(String, String, Instant)>>> = Arc::default();
    let reader = {
        let verdicts = verdicts.clone();
        tokio::spawn(async move {
            let _ = edges::read_verdicts(&consumer, None, None, |v| {
                let decision = v.decision().word().to_string();
                if let Ok(mut all) = verdicts.lock() {
                    all.push((v.clip_id.clone(), decision, Instant::now()));
                }
                true
            })
            .await;
        })
    };

    // Warm-up: one clip of each kind through every stage (models loaded, groups settled), not
    // measured.
    let warm_started = Instant::now();
    let mut warm = Vec::new();
    for k in &profile.clip {
        warm.push(submit(&kinds[&k.name], &store, &producer).await?);
    }
    let warm_until = Instant::now() + Duration::from_secs(600);
    loop {
        let seen = verdicts.lock().map(|v| v.len()).unwrap_or(0);
        if seen >= warm.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < warm_until,
            "warm-up: {seen} of {} verdicts in 600 s (stage logs in {})",
            warm.len(),
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "loadtest: warm-up ({} clips) in {:.1} s",
        warm.len(),
        warm_started.elapsed().as_secs_f64()
    );
    if let Ok(mut v) = verdicts.lock() {
        v.clear();
    }
    // Each stage's input topic, from the `topic` label of its lag gauge (librdkafka reports
    // statistics every 5 s), for the brokers' view of its group's lag.
    let mut inputs: BTreeMap<&str, String> = BTreeMap::new();
    let until = Instant::now() + Duration::from_secs(20);
    while inputs.len() < STAGES.len() && Instant::now() < until {
        for s in &stages {
            if inputs.contains_key(s.name) {
                continue;
            }
            let metric = format!("clipguard_{}_consumer_lag", s.name);
            let m = s.metrics;
            let topics = tokio::task::spawn_blocking(move || {
                procs::scrape_label_values(m, &metric, "topic")
            })
            .await
            .unwrap_or_default();
            if let Some(topic) = topics.into_iter().next() {
                inputs.insert(s.name, topic);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let pairs: Vec<(String, String)> = inputs
        .iter()
        .map(|(s, t)| (s.to_string(), t.clone()))
        .collect();
    let group_lag = {
        let kafka = kafka.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || grouplag::GroupLag::new(&kafka, &pairs)).await??,
        )
    };

    // The measured run.
    let ticks = procs::clock_ticks();
    let cpu_now = |stages: &[Stage]| -> Vec<f64> {
        stages
            .iter()
            .map(|s| procs::cpu_seconds(s.proc.pid(), ticks).unwrap_or(f64::NAN))
            .collect()
    };
    let cpu0 = cpu_now(&stages);
    let broker_pid = _broker.as_ref().map(Proc::pid);
    let broker_cpu0 = broker_pid.and_then(|p| procs::cpu_seconds(p, ticks));
    let t0 = Instant::now();
    let submitted: Arc<Mutex<Vec<(String, String, Instant)>>> = Arc::default();
    let publisher = {
        let submitted = submitted.clone();
        let producer = producer.clone();
        let profile = profile.clone();
        let kinds = kinds.clone();
        tokio::spawn(async move {
            for i in 0..profile.clips {
                let due = t0 + Duration::from_secs_f64(i as f64 / profile.rate);
                tokio::time::sleep_until(due.into()).await;
                let kind = profile.kind_of(i);
                let id = submit(&kinds[&kind.name], &store, &producer).await?;
                if let Ok(mut s) = submitted.lock() {
                    s.push((id, kind.name.clone(), Instant::now()));
                }
            }
            anyhow::Ok(())
        })
    };
    let deadline = t0 + Duration::from_secs_f64(profile.max_seconds);
    let mut samples = Vec::new();
    let mut next = t0;
    loop {
        let now = Instant::now();
        let n_sub = submitted.lock().map(|s| s.len()).unwrap_or(0);
        let n_ver = verdicts.lock().map(|v| v.len()).unwrap_or(0);
        if now >= next {
            let cpu = cpu_now(&stages);
            let mut per_stage: BTreeMap<String, f64> = BTreeMap::new();
            let mut lag: BTreeMap<String, f64> = BTreeMap::new();
            for (i, s) in stages.iter().enumerate() {
                *per_stage.entry(s.name.into()).or_default() += cpu[i] - cpu0[i];
                let metric = format!("clipguard_{}_consumer_lag", s.name);
                let m = s.metrics;
                let v = tokio::task::spawn_blocking(move || procs::scrape_sum(m, &metric))
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(0.0);
                *lag.entry(s.name.into()).or_default() += v;
            }
            let reader = group_lag.clone();
            let group = tokio::task::spawn_blocking(move || reader.read())
                .await
                .unwrap_or_default();
            samples.push(Sample {
                t: now.duration_since(t0).as_secs_f64(),
                cpu: per_stage,
                lag,
                group_lag: group,
                submitted: n_sub,
                verdicts: n_ver,
            });
            next += Duration::from_secs(1);
        }
        if (n_sub == profile.clips && n_ver >= n_sub) || now >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_now(&stages);
    let broker_cpu = broker_pid
        .and_then(|p| procs::cpu_seconds(p, ticks))
        .zip(broker_cpu0)
        .map(|(a, b)| a - b);
    publisher.abort();
    reader.abort();

    let mut per_stage: BTreeMap<String, report::StageUse> = BTreeMap::new();
    for (i, s) in stages.iter().enumerate() {
        let e = per_stage.entry(s.name.into()).or_default();
        e.replicas += 1;
        e.cpu_s += cpu1[i] - cpu0[i];
        e.peak_rss_mib = e
            .peak_rss_mib
            .max(procs::peak_rss_mib(s.proc.pid()).unwrap_or(0.0));
    }
    for sample in &samples {
        for (stage, lag) in &sample.lag {
            let e = per_stage.entry(stage.clone()).or_default();
            e.peak_lag = e.peak_lag.max(*lag);
        }
        for (stage, lag) in &sample.group_lag {
            let e = per_stage.entry(stage.clone()).or_default();
            e.peak_group_lag = e.peak_group_lag.max(*lag);
        }
    }
    // Stop the stages (they drain and commit), then the broker.
    let mut clean = 0;
    for s in &mut stages {
        if s.proc.stop(Duration::from_secs(60)) {
            clean += 1;
        }
    }
    drop(_broker);

    let submitted = submitted.lock().map(|s| s.clone()).unwrap_or_default();
    let verdicts = verdicts.lock().map(|v| v.clone()).unwrap_or_default();
    let by_id: HashMap<&str, (&str, Instant)> = submitted
        .iter()
        .map(|(id, kind, at)| (id.as_str(), (kind.as_str(), *at)))
        .collect();
    let mut seen = Vec::new();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (id, decision, at) in &verdicts {
        let Some((kind, sent)) = by_id.get(id.as_str()) else {
            continue;
        };
        *counts.entry(id.as_str()).or_default() += 1;
        seen.push(Seen {
            clip_id: id.clone(),
            kind: kind.to_string(),
            decision: decision.clone(),
            latency_s: at.saturating_duration_since(*sent).as_secs_f64(),
            at_s: at.duration_since(t0).as_secs_f64(),
        });
    }
    let baseline = match &opts.baseline_python {
        Some(python) => {
            let files: Vec<PathBuf> = (0..submitted.len())
                .map(|i| kinds[&profile.kind_of(i).name].clone())
                .collect();
            Some(report::run_baseline(
                python,
                &opts.baseline_args,
                &files,
                &opts.out,
                profile,
            )?)
        }
        None => None,
    };
    let report = Report::build(report::Inputs {
        name: opts.name.clone(),
        profile: profile.clone(),
        submitted: submitted.len(),
        seen,
        duplicates: counts.values().filter(|&&n| n > 1).count(),
        elapsed_s: elapsed,
        stages: per_stage,
        broker_cpu_s: broker_cpu,
        samples,
        clean_exits: clean,
        processes: stages.len(),
        baseline,
    });
    report.write(&opts.out)?;
    Ok(report)
}

/// Publishes the file at `path` as a new clip (inline or by claim check, as `clipguard submit`
/// does) and returns its id once the broker acknowledged it.
async fn submit(
    path: &std::path::Path,
    store: &MediaStore,
    producer: &rdkafka::producer::FutureProducer,
) -> anyhow::Result<String> {
    let id = edges::new_clip_id();
    let clip = edges::clip_for_file(path, &id, store, &SubmitOptions::default(), u64::MAX).await?;
    edges::publish(producer, &clip).await?;
    Ok(id)
}
