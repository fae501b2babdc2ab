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

pub mod faults;
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
    replica: usize,
    proc: Proc,
    metrics: SocketAddr,
    /// CPU seconds of this process when the measured run began (0 for a restarted one: its
    /// start-up counts).
    offset: f64,
    /// CPU seconds of earlier, killed processes in this slot, since the measured run began.
    base: f64,
    /// Peak RSS of earlier processes in this slot.
    peak_rss: f64,
    /// Killed; started again at this time.
    down_until: Option<Instant>,
    incarnation: usize,
}

impl Stage {
    /// CPU seconds this slot used since the measured run began.
    fn used(&self, ticks: f64) -> f64 {
        let live = if self.down_until.is_none() {
            procs::cpu_seconds(self.proc.pid(), ticks).map_or(0.0, |c| c - self.offset)
        } else {
            0.0
        };
        self.base + live
    }

    fn peak_rss_mib(&self) -> f64 {
        let live = if self.down_until.is_none() {
            procs::peak_rss_mib(self.proc.pid()).unwrap_or(0.0)
        } else {
            0.0
        };
        self.peak_rss.max(live)
    }
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
    let broker_dir = opts.out.join("broker");
    let tansu = procs::tansu_path();
    let (mut broker, brokers) = match &opts.brokers {
        Some(b) => (None, b.clone()),
        None => {
            let tansu = tansu.as_ref().context(
                "no tansu broker (set CLIPGUARD_TANSU, or run scripts/setup.sh --broker), or pass --brokers",
            )?;
            let _ = std::fs::remove_dir_all(&broker_dir);
            let (p, addr) = procs::start_broker(tansu, &broker_dir)?;
            (Some(p), addr)
        }
    };
    anyhow::ensure!(
        profile
            .faults
            .as_ref()
            .is_none_or(|f| f.broker_restart_after_clips == 0 || broker.is_some()),
        "a broker restart needs the load test's own broker (no --brokers)"
    );
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
        // The review stage's cases, in the run's own folder.
        (
            "CLIPGUARD_REVIEW__DATABASE_URL".into(),
            format!(
                "sqlite://{}",
                std::path::absolute(opts.out.join("review.db"))?.display()
            ),
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
                replica: r,
                proc,
                metrics,
                offset: 0.0,
                base: 0.0,
                peak_rss: 0.0,
                down_until: None,
                incarnation: 0,
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
    for s in &mut stages {
        s.offset = procs::cpu_seconds(s.proc.pid(), ticks).unwrap_or(0.0);
    }
    let mut broker_pid = broker.as_ref().map(Proc::pid);
    let broker_cpu0 = broker_pid.and_then(|p| procs::cpu_seconds(p, ticks));
    let mut chaos = profile
        .faults
        .as_ref()
        .map(|f| faults::Chaos::new(f.clone()));
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
    let mut decided: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut read = 0;
    loop {
        let now = Instant::now();
        let n_sub = submitted.lock().map(|s| s.len()).unwrap_or(0);
        // Clips with a verdict (a fault run redelivers: records are not clips).
        if let Ok(v) = verdicts.lock() {
            for (id, _, _) in &v[read..] {
                decided.insert(id.clone());
            }
            read = v.len();
        }
        let n_ver = decided.len();
        if let Some(chaos) = chaos.as_mut() {
            for s in stages
                .iter_mut()
                .filter(|s| s.down_until.is_some_and(|t| now >= t))
            {
                s.incarnation += 1;
                let log = logs.join(format!("{}-{}.{}.log", s.name, s.replica, s.incarnation));
                let (bin, name, replica, env) =
                    (opts.clipguard.clone(), s.name, s.replica, env.clone());
                let (proc, metrics) = tokio::task::spawn_blocking(move || {
                    procs::start_stage(&bin, name, replica, &env, &log)
                })
                .await??;
                s.proc = proc;
                s.metrics = metrics;
                s.offset = 0.0;
                s.down_until = None;
                chaos.summary.restarts += 1;
                eprintln!("loadtest: {name}#{replica} restarted");
            }
            let slots: Vec<(&str, bool)> = stages
                .iter()
                .map(|s| (s.name, s.down_until.is_none()))
                .collect();
            if let Some(i) = chaos.victim(now, &slots) {
                let s = &mut stages[i];
                s.base = s.used(ticks);
                s.peak_rss = s.peak_rss_mib();
                let _ = s.proc.child.kill(); // SIGKILL
                let _ = s.proc.child.wait();
                s.down_until = Some(now + Duration::from_secs_f64(chaos.faults.restart_after_s));
                *chaos.summary.kills.entry(s.name.to_string()).or_default() += 1;
                eprintln!(
                    "loadtest: {}#{} killed with SIGKILL at {:.1} s ({n_sub} submitted, {n_ver} decided)",
                    s.name,
                    s.replica,
                    now.duration_since(t0).as_secs_f64()
                );
            }
            if chaos.broker_due(n_sub)
                && let (Some(b), Some(tansu)) = (broker.as_mut(), tansu.as_ref())
            {
                let _ = b.child.kill();
                let _ = b.child.wait();
                eprintln!("loadtest: broker killed with SIGKILL ({n_sub} submitted)");
                tokio::time::sleep(Duration::from_secs_f64(chaos.faults.broker_down_s)).await;
                let port = brokers
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .context("broker port")?;
                let (tansu, dir) = (tansu.clone(), broker_dir.clone());
                let (p, _) = tokio::task::spawn_blocking(move || {
                    procs::start_broker_on(&tansu, &dir, Some(port))
                })
                .await??;
                broker_pid = None; // its CPU is not comparable any more
                broker = Some(p);
                chaos.summary.broker_restarts += 1;
                eprintln!("loadtest: broker back on port {port}");
            }
        }
        if now >= next {
            let mut per_stage: BTreeMap<String, f64> = BTreeMap::new();
            let mut lag: BTreeMap<String, f64> = BTreeMap::new();
            for s in stages.iter() {
                *per_stage.entry(s.name.into()).or_default() += s.used(ticks);
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
    let broker_cpu = broker_pid
        .and_then(|p| procs::cpu_seconds(p, ticks))
        .zip(broker_cpu0)
        .map(|(a, b)| a - b);
    let mut per_stage: BTreeMap<String, report::StageUse> = BTreeMap::new();
    for s in &stages {
        let e = per_stage.entry(s.name.into()).or_default();
        e.replicas += 1;
        e.cpu_s += s.used(ticks);
        e.peak_rss_mib = e.peak_rss_mib.max(s.peak_rss_mib());
    }
    // A fault run keeps reading verdicts a while: a clip decided a second time shows up here.
    if let Some(chaos) = &chaos {
        eprintln!(
            "loadtest: {n} of {} clips decided; reading verdicts {:.0} s more",
            profile.clips,
            chaos.faults.settle_s,
            n = decided.len()
        );
        tokio::time::sleep(Duration::from_secs_f64(chaos.faults.settle_s)).await;
    }
    publisher.abort();
    reader.abort();
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
    let signal_counts = match &chaos {
        Some(_) => {
            let kafka = kafka.clone();
            Some(tokio::task::spawn_blocking(move || faults::count_signals(&kafka)).await??)
        }
        None => None,
    };
    drop(broker);

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
    let faults = chaos.map(|c| {
        let mut summary = c.summary;
        let mut by_clip: HashMap<&str, std::collections::BTreeSet<&str>> = HashMap::new();
        let mut records = 0;
        for (id, decision, _) in &verdicts {
            if by_id.contains_key(id.as_str()) {
                records += 1;
                by_clip.entry(id).or_default().insert(decision);
            }
        }
        summary.verdict_records = records;
        summary.duplicates_absorbed = records - by_clip.len();
        summary.conflicts = by_clip
            .iter()
            .filter(|(_, d)| d.len() > 1)
            .map(|(id, d)| format!("{id} ({})", d.iter().copied().collect::<Vec<_>>().join("/")))
            .collect();
        if let Some((records, distinct)) = signal_counts {
            summary.signal_records = records;
            summary.redelivered_signals = records - distinct;
        }
        let last_sub = submitted.iter().map(|(_, _, at)| *at).max();
        let last_verdict = verdicts.iter().map(|(_, _, at)| *at).max();
        summary.drain_s = last_sub
            .zip(last_verdict)
            .map_or(0.0, |(s, v)| v.saturating_duration_since(s).as_secs_f64());
        summary
    });
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
        faults,
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
