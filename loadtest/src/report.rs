//! The load test's report: `report.md` (tables and plots), `report.json` (everything, with the
//! samples and every verdict seen), PNG plots; and the Python baseline's run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::FontStyle;
use serde::{Deserialize, Serialize};

use crate::profile::{Profile, STAGES};
use crate::{Sample, Seen};

/// Cores one replica may use in the capacity table (the stages' CPU limit is 1–2 cores; one
/// core per replica is the unit KEDA adds).
pub const CORES_PER_REPLICA: f64 = 1.0;
/// Target CPU utilisation of a replica in the capacity table (headroom for bursts).
pub const UTILISATION: f64 = 0.7;
/// Rates of the capacity table, clips per second.
pub const CAPACITY_RATES: &[f64] = &[10.0, 100.0, 1000.0];

/// What one stage used during the measured run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageUse {
    pub replicas: usize,
    pub cpu_s: f64,
    pub peak_rss_mib: f64,
    pub peak_lag: f64,
    /// Peak of the group's lag as the brokers see it.
    pub peak_group_lag: f64,
}

/// What the Python baseline reports (`loadtest/baseline.py --out FILE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    pub clips: usize,
    /// CPU seconds over the clips (models loaded before timing).
    pub cpu_s: f64,
    pub wall_s: f64,
    pub load_s: f64,
    pub peak_rss_mib: f64,
    pub threads: usize,
    pub errors: usize,
    #[serde(default)]
    pub sampling: String,
    #[serde(default)]
    pub models: Vec<String>,
    /// CPU seconds by step (decode, pdq, open_nsfw, whisper, text).
    #[serde(default)]
    pub steps_cpu_s: BTreeMap<String, f64>,
}

/// The inputs of a report.
#[derive(Debug)]
pub struct Inputs {
    pub name: String,
    pub profile: Profile,
    pub submitted: usize,
    pub seen: Vec<Seen>,
    pub duplicates: usize,
    pub elapsed_s: f64,
    pub stages: BTreeMap<String, StageUse>,
    pub broker_cpu_s: Option<f64>,
    pub samples: Vec<Sample>,
    pub clean_exits: usize,
    pub processes: usize,
    pub baseline: Option<Baseline>,
    pub faults: Option<FaultSummary>,
}

/// What a fault run did and what it found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultSummary {
    /// SIGKILLs per stage.
    pub kills: BTreeMap<String, usize>,
    pub restarts: usize,
    pub broker_restarts: usize,
    /// Verdict records read (every revision and duplicate).
    pub verdict_records: usize,
    /// Records beyond one per decided clip, all with the clip's decision.
    pub duplicates_absorbed: usize,
    /// Clips with two different decisions.
    pub conflicts: Vec<String>,
    /// Signals on `clips.signals` beyond one per (clip, stage): work redone after a kill.
    pub redelivered_signals: usize,
    pub signal_records: usize,
    /// From the last submission to the last verdict.
    pub drain_s: f64,
}
#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub replicas: usize,
    pub cpu_s: f64,
    pub cpu_s_per_clip: f64,
    pub peak_rss_mib: f64,
    pub peak_lag: f64,
    pub peak_group_lag: f64,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub name: String,
    pub date: String,
    pub machine: String,
    pub clips: usize,
    pub rate: f64,
    pub partitions: u32,
    pub submitted: usize,
    pub verdicts: usize,
    pub missing: usize,
    pub duplicates: usize,
    pub elapsed_s: f64,
    /// Verdicts per second from the first submission to the last verdict.
    pub throughput: f64,
    pub latency_p50_s: f64,
    pub latency_p95_s: f64,
    pub latency_p99_s: f64,
    pub latency_max_s: f64,
    pub decisions: BTreeMap<String, usize>,
    pub stages: BTreeMap<String, StageRow>,
    pub cpu_s_per_clip: f64,
    pub broker_cpu_s: Option<f64>,
    /// rate → replicas per stage.
    pub capacity: Vec<(f64, BTreeMap<String, usize>)>,
    pub clean_exits: usize,
    pub processes: usize,
    pub baseline: Option<Baseline>,
    pub faults: Option<FaultSummary>,
    /// clipguard's clips per CPU-second over the baseline's (the throughput-per-core ratio).
    pub per_core_ratio: Option<f64>,
    pub samples: Vec<Sample>,
    pub seen: Vec<Seen>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Replicas a stage needs for `rate` clips/s at `cpu_per_clip` CPU seconds each.
pub fn replicas_for(rate: f64, cpu_per_clip: f64) -> usize {
    ((rate * cpu_per_clip / (CORES_PER_REPLICA * UTILISATION)).ceil() as usize).max(1)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(0.0, |k| k / 1024.0 / 1024.0);
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB")
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Report {
    pub fn build(i: Inputs) -> Self {
        let mut latencies: Vec<f64> = i.seen.iter().map(|s| s.latency_s).collect();
        latencies.sort_by(f64::total_cmp);
        let mut unique = std::collections::HashSet::new();
        let mut decisions = BTreeMap::new();
        for s in &i.seen {
            if unique.insert(&s.clip_id) {
                *decisions.entry(s.decision.clone()).or_default() += 1;
            }
        }
        let verdicts = unique.len();
        let last = i.seen.iter().map(|s| s.at_s).fold(0.0, f64::max);
        let per_clip = |cpu: f64| cpu / verdicts.max(1) as f64;
        let stages: BTreeMap<String, StageRow> = i
            .stages
            .iter()
            .map(|(name, u)| {
                (
                    name.clone(),
                    StageRow {
                        replicas: u.replicas,
                        cpu_s: u.cpu_s,
                        cpu_s_per_clip: per_clip(u.cpu_s),
                        peak_rss_mib: u.peak_rss_mib,
                        peak_lag: u.peak_lag,
                        peak_group_lag: u.peak_group_lag,
                    },
                )
            })
            .collect();
        let cpu_s_per_clip: f64 = stages.values().map(|s| s.cpu_s_per_clip).sum();
        let capacity = CAPACITY_RATES
            .iter()
            .map(|&rate| {
                let row = stages
                    .iter()
                    .map(|(n, s)| (n.clone(), replicas_for(rate, s.cpu_s_per_clip)))
                    .collect();
                (rate, row)
            })
            .collect();
        let per_core_ratio = i.baseline.as_ref().and_then(|b| {
            let ours = verdicts as f64 / stages.values().map(|s| s.cpu_s).sum::<f64>();
            let theirs = b.clips as f64 / b.cpu_s;
            (ours.is_finite() && theirs.is_finite() && theirs > 0.0).then_some(ours / theirs)
        });
        Report {
            name: i.name,
            date: today(),
            machine: machine(),
            clips: i.profile.clips,
            rate: i.profile.rate,
            partitions: i.profile.partitions,
            submitted: i.submitted,
            verdicts,
            missing: i.submitted.saturating_sub(verdicts),
            duplicates: i.duplicates,
            elapsed_s: i.elapsed_s,
            throughput: if last > 0.0 {
                verdicts as f64 / last
            } else {
                0.0
            },
            latency_p50_s: percentile(&latencies, 0.50),
            latency_p95_s: percentile(&latencies, 0.95),
            latency_p99_s: percentile(&latencies, 0.99),
            latency_max_s: latencies.last().copied().unwrap_or(f64::NAN),
            decisions,
            stages,
            cpu_s_per_clip,
            broker_cpu_s: i.broker_cpu_s,
            capacity,
            clean_exits: i.clean_exits,
            processes: i.processes,
            baseline: i.baseline,
            faults: i.faults,
            per_core_ratio,
            samples: i.samples,
            seen: i.seen,
        }
    }

    /// The report as Markdown (the plots beside it).
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "# clipguard load test: {}\n", self.name);
        let _ = writeln!(
            m,
            "{}, {}. {} clips submitted at {} clips/s to separate `clipguard stage` processes on a \
             tansu broker over loopback ({} partitions per topic), after a warm-up that is not \
             measured.\n",
            self.date, self.machine, self.submitted, self.rate, self.partitions
        );
        let _ = writeln!(m, "| measure | value |\n| --- | --- |");
        let _ = writeln!(
            m,
            "| verdicts | {} of {} ({} missing, {} clips with more than one) |",
            self.verdicts, self.submitted, self.missing, self.duplicates
        );
        let decisions: Vec<String> = self
            .decisions
            .iter()
            .map(|(d, n)| format!("{d} {n}"))
            .collect();
        let _ = writeln!(m, "| decisions | {} |", decisions.join(", "));
        let _ = writeln!(
            m,
            "| throughput | {:.2} verdicts/s (target rate {}) |",
            self.throughput, self.rate
        );
        let _ = writeln!(
            m,
            "| latency, submission → verdict | p50 {:.2} s, p95 {:.2} s, p99 {:.2} s, max {:.2} s |",
            self.latency_p50_s, self.latency_p95_s, self.latency_p99_s, self.latency_max_s
        );
        let _ = writeln!(
            m,
            "| CPU per clip, all stages | {:.3} s{} |",
            self.cpu_s_per_clip,
            self.broker_cpu_s
                .map(|b| format!(
                    " (the broker: {:.3} s more)",
                    b / self.verdicts.max(1) as f64
                ))
                .unwrap_or_default()
        );
        let _ = writeln!(
            m,
            "| stage processes stopped cleanly by SIGTERM | {} of {} |\n",
            self.clean_exits, self.processes
        );
        if let Some(f) = &self.faults {
            let kills: Vec<String> = f.kills.iter().map(|(s, n)| format!("{s} {n}")).collect();
            let _ = writeln!(
                m,
                "## Faults\n\n| measure | value |\n| --- | --- |\n\
                 | SIGKILLs | {} ({}), each restarted: {} restarts |\n\
                 | broker restarts | {} |\n\
                 | clips with a final verdict | {} of {} ({} missing) |\n\
                 | clips with two different decisions | {}{} |\n\
                 | verdict records | {} ({} duplicates absorbed, each with its clip's decision) |\n\
                 | signals | {} records, {} redelivered (work redone after a kill) |\n\
                 | drain, last submission → last verdict | {:.1} s |\n",
                f.kills.values().sum::<usize>(),
                kills.join(", "),
                f.restarts,
                f.broker_restarts,
                self.verdicts,
                self.submitted,
                self.missing,
                f.conflicts.len(),
                if f.conflicts.is_empty() {
                    String::new()
                } else {
                    format!(": {}", f.conflicts.join(", "))
                },
                f.verdict_records,
                f.duplicates_absorbed,
                f.signal_records,
                f.redelivered_signals,
                f.drain_s
            );
        }
        let _ = writeln!(
            m,
            "| stage | replicas | CPU s | CPU s per clip | peak RSS per replica (MiB) | peak lag (workers) | peak group lag (brokers) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for name in STAGES {
            if let Some(s) = self.stages.get(*name) {
                let _ = writeln!(
                    m,
                    "| {name} | {} | {:.1} | {:.3} | {:.0} | {:.0} | {:.0} |",
                    s.replicas,
                    s.cpu_s,
                    s.cpu_s_per_clip,
                    s.peak_rss_mib,
                    s.peak_lag,
                    s.peak_group_lag
                );
            }
        }
        let _ = writeln!(
            m,
            "\n## Capacity\n\nReplicas per stage for a sustained rate, from the CPU seconds per clip \
             measured above, at {CORES_PER_REPLICA} core per replica and {:.0} % utilisation \
             (`ceil(rate × CPU per clip / {:.1})`). A stage needs at least as many partitions as \
             replicas. The clip mix is this run's.\n",
            UTILISATION * 100.0,
            CORES_PER_REPLICA * UTILISATION
        );
        let mut header = "| clips/s |".to_string();
        let mut rule = "| ---: |".to_string();
        for name in STAGES {
            if self.stages.contains_key(*name) {
                let _ = write!(header, " {name} |");
                rule.push_str(" ---: |");
            }
        }
        let _ = writeln!(m, "{header} cores |\n{rule} ---: |");
        for (rate, row) in &self.capacity {
            let _ = write!(m, "| {rate} |");
            for name in STAGES {
                if let Some(n) = row.get(*name) {
                    let _ = write!(m, " {n} |");
                }
            }
            let cores: usize = row.values().sum();
            let _ = writeln!(m, " {} |", cores as f64 * CORES_PER_REPLICA);
        }
        if let Some(b) = &self.baseline {
            let ours_per_cpu =
                self.verdicts as f64 / self.stages.values().map(|s| s.cpu_s).sum::<f64>();
            let theirs_per_cpu = b.clips as f64 / b.cpu_s;
            let _ = writeln!(
                m,
                "\n## Against a plain Python worker\n\n`loadtest/baseline.py` ({}; {} thread(s); \
                 models: {}) over the same {} clips in the same run, after clipguard's \
                 processes stopped; its models loaded in {:.1} s, not counted.\n",
                b.sampling,
                b.threads,
                b.models.join(", "),
                b.clips,
                b.load_s
            );
            let _ = writeln!(
                m,
                "| | clipguard | Python worker | ratio |\n| --- | ---: | ---: | ---: |"
            );
            let _ = writeln!(
                m,
                "| clips per CPU-second (throughput per core) | {:.3} | {:.3} | **{:.2}×** |",
                ours_per_cpu,
                theirs_per_cpu,
                ours_per_cpu / theirs_per_cpu
            );
            let _ = writeln!(
                m,
                "| CPU seconds per clip | {:.3} | {:.3} | {:.2}× |",
                self.cpu_s_per_clip,
                b.cpu_s / b.clips.max(1) as f64,
                self.cpu_s_per_clip / (b.cpu_s / b.clips.max(1) as f64)
            );
            let _ = writeln!(
                m,
                "| peak RSS (MiB) | {:.0} (all stages) | {:.0} | |",
                self.stages
                    .values()
                    .map(|s| s.peak_rss_mib * s.replicas as f64)
                    .sum::<f64>(),
                b.peak_rss_mib
            );
            let _ = writeln!(
                m,
                "| clips it could not process | {} | {} | |",
                self.missing, b.errors
            );
            if !b.steps_cpu_s.is_empty() {
                let theirs = |steps: &str| -> f64 {
                    steps
                        .split(" + ")
                        .map(|s| b.steps_cpu_s.get(s).copied().unwrap_or(0.0))
                        .sum::<f64>()
                        / b.clips.max(1) as f64
                };
                let ours = |s: &str| self.stages.get(s).map_or(0.0, |r| r.cpu_s_per_clip);
                let _ = writeln!(
                    m,
                    "\nCPU seconds per clip by step:\n\n| clipguard stage | CPU s | Python worker step | CPU s |\n| --- | ---: | --- | ---: |"
                );
                for (stage, step) in [
                    ("media", "decode + pdq"),
                    ("classify", "open_nsfw"),
                    ("transcribe", "whisper"),
                    ("classify_transcript", "text"),
                ] {
                    let _ = writeln!(
                        m,
                        "| {stage} | {:.3} | {step} | {:.3} |",
                        ours(stage),
                        theirs(step)
                    );
                }
                let _ = writeln!(
                    m,
                    "| hashmatch + monitor | {:.3} | (none) | |",
                    ours("hashmatch") + ours("monitor")
                );
            }
        }
        let _ = writeln!(m, "\n## Plots\n");
        for (file, caption) in PLOTS {
            let _ = writeln!(m, "![{caption}]({file})\n");
        }
        m
    }

    /// Writes `report.md`, `report.json` and the plots into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(self)?)?;
        self.plots(dir)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        Ok(())
    }

    fn plots(&self, dir: &Path) -> anyhow::Result<()> {
        font()?;
        let mut lat: Vec<f64> = self.seen.iter().map(|s| s.latency_s).collect();
        lat.sort_by(f64::total_cmp);
        let n = lat.len().max(1) as f64;
        let cdf: Vec<(f64, f64)> = lat
            .iter()
            .enumerate()
            .map(|(i, l)| (*l, (i + 1) as f64 / n * 100.0))
            .collect();
        lines(
            &dir.join(PLOTS[0].0),
            PLOTS[0].1,
            "seconds",
            "% of clips",
            &[("verdicts".to_string(), cdf)],
        )?;
        let per_stage = |f: &dyn Fn(&Sample, &str, Option<&Sample>) -> f64| {
            STAGES
                .iter()
                .filter(|s| self.stages.contains_key(**s))
                .map(|stage| {
                    let pts = self
                        .samples
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            let prev = i.checked_sub(1).map(|p| &self.samples[p]);
                            (s.t, f(s, stage, prev))
                        })
                        .collect();
                    (stage.to_string(), pts)
                })
                .collect::<Vec<_>>()
        };
        lines(
            &dir.join(PLOTS[1].0),
            PLOTS[1].1,
            "seconds",
            "messages",
            &per_stage(&|s, stage, _| s.lag.get(stage).copied().unwrap_or(0.0)),
        )?;
        lines(
            &dir.join(PLOTS[4].0),
            PLOTS[4].1,
            "seconds",
            "messages",
            &per_stage(&|s, stage, _| s.group_lag.get(stage).copied().unwrap_or(0.0)),
        )?;
        lines(
            &dir.join(PLOTS[2].0),
            PLOTS[2].1,
            "seconds",
            "cores",
            &per_stage(&|s, stage, prev| match prev {
                Some(p) if s.t > p.t => {
                    (s.cpu.get(stage).copied().unwrap_or(0.0)
                        - p.cpu.get(stage).copied().unwrap_or(0.0))
                        / (s.t - p.t)
                }
                _ => 0.0,
            }),
        )?;
        let progress = vec![
            (
                "submitted".to_string(),
                self.samples
                    .iter()
                    .map(|s| (s.t, s.submitted as f64))
                    .collect(),
            ),
            (
                "verdicts".to_string(),
                self.samples
                    .iter()
                    .map(|s| (s.t, s.verdicts as f64))
                    .collect(),
            ),
        ];
        lines(
            &dir.join(PLOTS[3].0),
            PLOTS[3].1,
            "seconds",
            "clips",
            &progress,
        )?;
        Ok(())
    }
}

const PLOTS: &[(&str, &str)] = &[
    ("latency.png", "Submission to verdict latency (CDF)"),
    (
        "lag.png",
        "Consumer lag per stage, from the workers' own gauges",
    ),
    ("cpu.png", "CPU cores used per stage"),
    ("progress.png", "Clips submitted and verdicts received"),
    (
        "group_lag.png",
        "Consumer-group lag per stage, as the brokers (and KEDA) see it",
    ),
];

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn font() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let path = FONT_PATHS.iter().find(|p| Path::new(p).is_file()).ok_or(
            "no DejaVu Sans font (Debian package fonts-dejavu-core; scripts/setup.sh installs it)",
        )?;
        let bytes: &'static [u8] = Box::leak(
            std::fs::read(path)
                .map_err(|e| format!("{path}: {e}"))?
                .into_boxed_slice(),
        );
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path}: not a usable font"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

const COLOURS: &[RGBColor] = &[
    RGBColor(52, 101, 164),
    RGBColor(204, 0, 0),
    RGBColor(78, 154, 6),
    RGBColor(245, 121, 0),
    RGBColor(117, 80, 123),
    RGBColor(46, 52, 54),
];

fn lines(
    path: &Path,
    title: &str,
    x: &str,
    y: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let e = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: {e}", path.display());
    let root = BitMapBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let x_max = pts.clone().map(|p| p.0).fold(0.0, f64::max).max(1e-3);
    let y_max = pts.map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|x| e(&x))?;
    for (i, (name, p)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(p.iter().copied(), colour.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// Runs `loadtest/baseline.py` over `files` (the clips submitted, in order) and reads its
/// result.
pub fn run_baseline(
    python: &Path,
    args: &[String],
    files: &[PathBuf],
    out: &Path,
    profile: &Profile,
) -> anyhow::Result<Baseline> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("baseline.py");
    let result = out.join("baseline.json");
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .arg("--out")
        .arg(&result)
        .args(args)
        .arg("--")
        .args(files);
    // The same sampling as the stages, when the profile sets it.
    if let Some(fps) = profile.env.get("CLIPGUARD_MEDIA__SAMPLE_FPS") {
        cmd.env("BASELINE_SAMPLE_FPS", fps);
    }
    eprintln!(
        "loadtest: running the Python baseline over {} clips",
        files.len()
    );
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", python.display()))?;
    anyhow::ensure!(status.success(), "baseline.py failed ({status})");
    let text = std::fs::read_to_string(&result)?;
    Ok(serde_json::from_str(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn the_baseline_table_sets_each_step_beside_its_stage() {
        let profile: Profile = toml::from_str(
            "clips = 2\nrate = 1\nmax_seconds = 9\npartitions = 1\n[[clip]]\nname = \"a\"\nduration_s = 1\nwidth = 32\nheight = 32\naudio = \"none\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let stage = |cpu_s| StageUse {
            replicas: 1,
            cpu_s,
            peak_rss_mib: 10.0,
            peak_lag: 0.0,
            peak_group_lag: 0.0,
        };
        let baseline: Baseline = serde_json::from_str(
            r#"{"clips": 2, "cpu_s": 1.0, "wall_s": 1.0, "load_s": 0.1, "peak_rss_mib": 50,
                "threads": 1, "errors": 0,
                "steps_cpu_s": {"decode": 0.2, "pdq": 0.2, "open_nsfw": 0.3, "whisper": 0.3}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let report = Report::build(Inputs {
            name: "t".into(),
            profile,
            submitted: 2,
            seen: ["a", "b"]
                .iter()
                .map(|id| Seen {
                    clip_id: id.to_string(),
                    kind: "a".into(),
                    decision: "allow".into(),
                    latency_s: 0.5,
                    at_s: 1.0,
                })
                .collect(),
            duplicates: 0,
            elapsed_s: 1.0,
            stages: [
                ("media".to_string(), stage(0.5)),
                ("classify".to_string(), stage(0.2)),
            ]
            .into_iter()
            .collect(),
            broker_cpu_s: None,
            samples: Vec::new(),
            clean_exits: 0,
            processes: 0,
            baseline: Some(baseline),
            faults: None,
        });
        let md = report.markdown();
        assert!(
            md.contains("| media | 0.250 | decode + pdq | 0.200 |"),
            "{md}"
        );
        assert!(
            md.contains("| classify | 0.100 | open_nsfw | 0.150 |"),
            "{md}"
        );
    }

    #[test]
    fn replicas_cover_the_rate_with_headroom() {
        // 0.5 CPU-s per clip at 10 clips/s = 5 cores busy = 8 replicas at 70 %.
        assert_eq!(replicas_for(10.0, 0.5), 8);
        assert_eq!(replicas_for(10.0, 0.0001), 1);
        assert_eq!(replicas_for(1000.0, 0.07), 100);
    }
}
