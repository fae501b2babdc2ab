//! clipguard's developer tasks, one entry point for people, the scripts and CI:
//! `cargo xtask help` lists them. Each task prints its phases with their wall-clock times, so a
//! slow CI run says where its time went.
//!
//! The tasks install what is missing through `scripts/setup.sh` (system packages, the test
//! broker) and the `clipguard models fetch` command (model weights), both safe to run twice.
//! Build and tool caches live outside the clone (`CLIPGUARD_CACHE`, default
//! `~/.cache/clipguard`), so repeated runs on one machine reuse them.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod suite;

/// What the test suite loads beyond what the default configuration does: the ONNX Runtime
/// backend, the reasoning tests' model, the opt-in graphic frame model, and the face
/// landmark and descriptor models.
const TEST_EXTRA_MODELS: &[&str] = &[
    "onnxruntime",
    "smollm2-135m",
    "image-safety-s",
    "face-descriptor-dlib",
    "face-landmarks-dlib5",
    "test-photos-white-house",
    "test-photos-groups",
];

const TASKS: &[(&str, &str)] = &[
    (
        "test",
        "install what is missing, then fmt, clippy -D warnings and every test (the README's test command)",
    ),
    (
        "demo [RUN ARGS]",
        "install what is missing, make sample clips, moderate them on an embedded broker",
    ),
    (
        "eval [--full] [REPORT DIR]",
        "every evaluation set against the reference table, in a release build, continuing an \
         interrupted run (spoken held-out sets: a fixed fifth unless --full; report dir: eval-report)",
    ),
    ("setup [--broker]", "system packages (and the test broker)"),
    ("help", "this list"),
];

/// The clone this xtask runs in. `cargo xtask` (`cargo run -p xtask`) sets
/// `CARGO_MANIFEST_DIR` to this clone's `xtask/` when it runs the binary; otherwise, the nearest
/// folder above the working directory holding the workspace. Never the path the binary was
/// compiled in: a shared build cache may hold an xtask built in another clone, since gone.
fn workspace_root() -> Option<PathBuf> {
    let is_root = |d: &Path| d.join("Cargo.toml").is_file() && d.join("xtask/Cargo.toml").is_file();
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR")
        && let Some(root) = Path::new(&dir).parent()
        && is_root(root)
    {
        return Some(root.to_path_buf());
    }
    let here = std::env::current_dir().ok()?;
    here.ancestors().find(|d| is_root(d)).map(Path::to_path_buf)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        return help(ExitCode::from(2));
    };
    let Some(root) = workspace_root() else {
        eprintln!("xtask: run it inside a clipguard clone (`cargo xtask …`)");
        return ExitCode::FAILURE;
    };
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!("xtask: cannot enter {}: {e}", root.display());
        return ExitCode::FAILURE;
    }
    let started = Instant::now();
    let mut run = Run::default();
    let result = match task.as_str() {
        "test" => test(&mut run),
        "demo" => demo(&mut run, rest),
        "eval" => eval(&mut run, rest),
        "setup" => run.phase("setup", sh("scripts/setup.sh").args(rest)),
        "help" | "--help" | "-h" => return help(ExitCode::SUCCESS),
        other => {
            eprintln!("xtask: unknown task `{other}`");
            return help(ExitCode::from(2));
        }
    };
    run.report(started.elapsed().as_secs_f64());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn help(code: ExitCode) -> ExitCode {
    println!("cargo xtask TASK\n");
    for (task, what) in TASKS {
        println!("  {task:<20} {what}");
    }
    code
}

/// The phases run so far and how long each took.
#[derive(Debug, Default)]
struct Run {
    phases: Vec<(String, f64, bool)>,
}

impl Run {
    /// Runs `cmd` as phase `name`; an unsuccessful exit ends the task.
    fn phase(&mut self, name: &str, cmd: &mut Command) -> Result<(), String> {
        println!("\n== {name}");
        let started = Instant::now();
        let status = cmd
            .status()
            .map_err(|e| format!("{name}: cannot run {:?}: {e}", cmd.get_program()))?;
        let seconds = started.elapsed().as_secs_f64();
        self.phases
            .push((name.to_string(), seconds, status.success()));
        if status.success() {
            Ok(())
        } else {
            Err(format!("{name} failed ({status})"))
        }
    }

    /// Records a phase run by other means, started at `started`.
    fn record(&mut self, name: &str, started: Instant, ok: bool) -> Result<(), String> {
        let seconds = started.elapsed().as_secs_f64();
        self.phases.push((name.to_string(), seconds, ok));
        if ok {
            Ok(())
        } else {
            Err(format!("{name} failed"))
        }
    }

    /// The phases with their times; background phases overlap the others, so the total is
    /// the wall clock, not the sum.
    fn report(&self, wall: f64) {
        if self.phases.is_empty() {
            return;
        }
        println!("\n== phases");
        for (name, seconds, ok) in &self.phases {
            let mark = if *ok { "" } else { "  FAILED" };
            println!("  {name:<48} {seconds:>8.1} s{mark}");
        }
        println!("  {:<48} {wall:>8.1} s", "total (wall clock)");
    }
}

/// A phase running beside the others; its output goes to a log file, shown if it fails.
struct Background {
    name: String,
    child: std::process::Child,
    log: PathBuf,
    started: Instant,
}

impl Background {
    fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Self, String> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        println!("\n== {name} (in the background; log: {})", log.display());
        let child = cmd
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{name}: cannot run {:?}: {e}", cmd.get_program()))?;
        Ok(Background {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            started: Instant::now(),
        })
    }

    /// Waits for it and records its phase; returns what it printed.
    fn wait(mut self, run: &mut Run) -> Result<String, String> {
        let status = self
            .child
            .wait()
            .map_err(|e| format!("{}: {e}", self.name))?;
        let seconds = self.started.elapsed().as_secs_f64();
        run.phases.push((
            format!("{} (background)", self.name),
            seconds,
            status.success(),
        ));
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        if !status.success() {
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            for line in tail.iter().rev() {
                eprintln!("  {line}");
            }
            return Err(format!("{} failed ({status})", self.name));
        }
        Ok(text)
    }
}

fn sh(script: &str) -> Command {
    let mut c = Command::new(script);
    // As for `cargo` below: the scripts run cargo too.
    suite::scrub(&mut c);
    c
}

/// A cargo command, without what `cargo xtask` told this process about the xtask package (see
/// [`suite::scrub`]).
fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.args(args);
    suite::scrub(&mut c);
    c
}

fn cache_dir() -> PathBuf {
    if let Some(c) = std::env::var_os("CLIPGUARD_CACHE") {
        return PathBuf::from(c);
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/clipguard"))
        .unwrap_or_else(|| PathBuf::from(".clipguard-cache"))
}

/// The build's target folder (`CARGO_TARGET_DIR`, else the workspace's `target/`).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from("target"),
    }
}

/// The `clipguard` binary of the last dev-profile build.
fn clipguard_bin() -> PathBuf {
    let bin = target_dir().join("debug/clipguard");
    std::path::absolute(&bin).unwrap_or(bin)
}

/// The models the configured stages load (`clipguard models fetch` without names: the
/// configuration is the one list), then `extra` by name; fetched once, verified every run.
fn models_fetch(
    run: &mut Run,
    extra: &[&str],
    command: impl Fn() -> Command,
) -> Result<(), String> {
    let mut configured = command();
    configured.args(["models", "fetch"]);
    run.phase("models (fetched once, verified every run)", &mut configured)?;
    if extra.is_empty() {
        return Ok(());
    }
    let mut named = command();
    named.args(["models", "fetch"]).args(extra);
    run.phase(
        "test-only models (fetched once, verified every run)",
        &mut named,
    )
}

/// `cargo xtask test`: what CI runs.
fn test(run: &mut Run) -> Result<(), String> {
    let cache = cache_dir();
    let models = std::env::var_os("CLIPGUARD_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("models"));
    // Set on each command (the workspace forbids `unsafe`, which `std::env::set_var` needs).
    let env: Vec<(&str, PathBuf)> = vec![
        ("CLIPGUARD_CACHE", cache.clone()),
        ("CLIPGUARD_MODELS", models),
        ("CLIPGUARD_TANSU", cache.join("tansu/bin/tansu")),
    ];
    let with_env = |mut c: Command| {
        for (k, v) in &env {
            c.env(k, v);
        }
        c
    };
    // The test broker and cargo-deny (Rust builds, one after the other) and llama-server (C++)
    // need nothing of ours: they build beside the main build, on the cores it leaves idle (once;
    // later runs find them).
    let logs = cache.join("logs");
    let broker = Background::spawn(
        "test broker (tansu) and cargo-deny, built once",
        sh("scripts/setup.sh").args(["--broker", "--deny"]),
        &logs.join("broker.log"),
    )?;
    // kubectl, kubernetes-validate and promtool for the operations assets' tests (tests/ops.rs).
    let ops = Background::spawn(
        "ops tools (kubectl, kubernetes-validate, promtool; once)",
        &mut with_env(sh("scripts/ops-setup.sh")),
        &logs.join("ops-setup.log"),
    )?;
    run.phase(
        "cargo fmt --check",
        &mut cargo(&["fmt", "--all", "--", "--check"]),
    )?;
    // One build for everything below: the test executables and the `clipguard` binary the
    // model fetch, the reasoning tests' server and the end-to-end tests use.
    let root = std::env::current_dir().map_err(|e| format!("working directory: {e}"))?;
    let target = std::path::absolute(target_dir()).map_err(|e| format!("target: {e}"))?;
    let started = Instant::now();
    println!("\n== build (cargo test --no-run)");
    let (built, ok) = suite::build(
        &mut cargo(&[
            "test",
            "--workspace",
            "--locked",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ]),
        &root,
        &target,
    )?;
    run.record("build (cargo test --no-run)", started, ok)?;
    if built.jobs.is_empty() {
        return Err("the build listed no test executable: cargo's messages were not read".into());
    }
    let llama = {
        let mut c = with_env(sh("scripts/llama-server.sh"));
        c.env("CLIPGUARD_BIN", clipguard_bin());
        Background::spawn(
            "llama-server (built once)",
            &mut c,
            &logs.join("llama-server.log"),
        )?
    };
    run.phase(
        "cargo clippy -D warnings",
        &mut cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    models_fetch(run, TEST_EXTRA_MODELS, || {
        with_env(Command::new(clipguard_bin()))
    })?;
    let tools = broker.wait(run)?;
    // The last line setup.sh prints is the cargo-deny binary.
    let deny = tools.lines().last().unwrap_or_default().trim().to_string();
    run.phase(
        "cargo deny check licenses bans sources (advisories need a database not fetchable here)",
        Command::new(&deny).args(["--offline", "check", "licenses", "bans", "sources"]),
    )?;
    let ops = ops.wait(run)?;
    let llama = llama.wait(run)?;
    let llama = llama.lines().last().unwrap_or_default().trim();
    let mut test_env: Vec<(String, std::ffi::OsString)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone().into()))
        .collect();
    // CLIPGUARD_OPS_PYTHON=..., CLIPGUARD_PROMTOOL=...
    for (k, v) in ops.lines().filter_map(|l| l.split_once('=')) {
        if k.starts_with("CLIPGUARD_") {
            test_env.push((k.into(), v.into()));
        }
    }
    test_env.push(("CLIPGUARD_LLAMA_SERVER".into(), llama.into()));
    // Broker, database, browser, model-server and reference-data tests must run here, never
    // skip.
    for k in [
        "CLIPGUARD_REQUIRE_BROKER",
        "CLIPGUARD_REQUIRE_POSTGRES",
        "CLIPGUARD_REQUIRE_BROWSER",
        "CLIPGUARD_REQUIRE_LLM",
        "CLIPGUARD_REQUIRE_CONFORMANCE",
    ] {
        test_env.push((k.into(), "1".into()));
    }
    let cargo_bin = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut jobs = built.with_doctests(cargo_bin, &root);
    let kept_at = logs.join("test-durations.tsv");
    let mut kept = suite::Durations::load(&kept_at);
    kept.order(&mut jobs.jobs);
    let slots = test_slots()?;
    let name = format!("tests ({} executables, {slots} at a time)", jobs.jobs.len());
    println!("\n== {name}");
    let started = Instant::now();
    let outcomes = suite::run(jobs, slots, &test_env, &target, &logs.join("tests"))?;
    suite::record(&mut kept, &outcomes);
    kept.save(&kept_at);
    let mut by_time: Vec<_> = outcomes.iter().collect();
    by_time.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    println!("\n== test executables, slowest first (wall clock; CPU time, children included)");
    for o in by_time.iter().take(12) {
        let cpu = o.cpu.map(|c| format!("{c:>8.1} CPU-s")).unwrap_or_default();
        println!("  {:<48} {:>8.1} s {cpu}", o.name, o.seconds);
    }
    let cpu: f64 = outcomes.iter().filter_map(|o| o.cpu).sum();
    println!(
        "  {:<48} {:>8.1} s {cpu:>8.1} CPU-s",
        "all, one after another",
        outcomes.iter().map(|o| o.seconds).sum::<f64>()
    );
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.name.as_str())
        .collect();
    run.record(&name, started, failed.is_empty())?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")))
    }
}

/// How many test executables run at once: `CLIPGUARD_TEST_JOBS`, else one more than the cores
/// (most of a test's time is spent waiting, not computing).
fn test_slots() -> Result<usize, String> {
    match std::env::var("CLIPGUARD_TEST_JOBS") {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("CLIPGUARD_TEST_JOBS={v:?}: want a positive whole number")),
        Err(_) => Ok(std::thread::available_parallelism().map_or(2, |n| n.get() + 1)),
    }
}

/// `cargo xtask demo`: sample clips through every stage on an embedded broker.
fn demo(run: &mut Run, args: &[String]) -> Result<(), String> {
    run.phase("setup (system packages)", &mut sh("scripts/setup.sh"))?;
    run.phase(
        "build",
        &mut cargo(&["build", "--locked", "--bin", "clipguard"]),
    )?;
    run.phase(
        "sample clips",
        sh("scripts/make-samples.sh")
            .arg("samples")
            .stdout(std::process::Stdio::null()),
    )?;
    models_fetch(run, &[], || Command::new(clipguard_bin()))?;
    let bin = clipguard_bin();
    // A demo hash bank holding the vPDQ of one sample (standing in for a known video), so the
    // run shows a hash match. Real banks come from HMA / ThreatExchange exports.
    let banks = std::env::var("CLIPGUARD_HASHMATCH__BANKS_DIR").unwrap_or(".demo-banks".into());
    let listed = Command::new(&bin)
        .args(["bank", "list", "--json"])
        .env("CLIPGUARD_HASHMATCH__BANKS_DIR", &banks)
        .output()
        .map_err(|e| format!("bank list: {e}"))?;
    if !String::from_utf8_lossy(&listed.stdout).contains("\"demo-known\"") {
        run.phase(
            "demo hash bank",
            Command::new(&bin)
                .args(["bank", "import", "--bank", "demo-known"])
                .args(["--category", "internal_generated", "--action", "review"])
                .args(["--id", "demo-video-1", "samples/speech.mp4"])
                .env("CLIPGUARD_HASHMATCH__BANKS_DIR", &banks),
        )?;
    }
    println!("\nclipguard transcribe samples/speech.mp4   (the media and transcribe stages)");
    run.phase(
        "transcribe",
        Command::new(&bin).args(["transcribe", "samples/speech.mp4"]),
    )?;
    println!(
        "\nclipguard run samples/   (embedded broker, every stage in-process; bank demo-known \
         holds speech.mp4)"
    );
    run.phase(
        "run",
        Command::new(&bin)
            .arg("run")
            .args(args)
            .arg("samples/")
            .env("CLIPGUARD_HASHMATCH__BANKS_DIR", &banks),
    )
}

/// `cargo xtask eval`: every evaluation set, with the report, in a release build. Per-item
/// results are kept (see the eval crate's `resume`), so a rerun after an interruption
/// continues; the spoken held-out sets run as a fixed, label-stratified fifth unless `--full`.
fn eval(run: &mut Run, args: &[String]) -> Result<(), String> {
    let full = args.iter().any(|a| a == "--full");
    let out = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
        .unwrap_or("eval-report");
    run.phase("setup (system packages)", &mut sh("scripts/setup.sh"))?;
    run.phase(
        "build (release)",
        &mut cargo(&["build", "--locked", "--release", "--bin", "clipguard"]),
    )?;
    models_fetch(run, &[], || Command::new(clipguard_bin()))?;
    let bin = target_dir().join("release/clipguard");
    let mut eval = Command::new(std::path::absolute(&bin).unwrap_or(bin));
    eval.args([
        "eval",
        "eval/text/heldout.jsonl",
        "eval/text/redteam.jsonl",
        "eval/speech/heldout.jsonl",
        "eval/speech/heldout-espeak.jsonl",
        "eval/speech/everyday.jsonl",
        "eval/speech/everyday-risky.jsonl",
        "eval/speech/everyday-risky-next.jsonl",
        "eval/speech/everyday-risky-third.jsonl",
        "eval/speech/everyday-risky-fourth.jsonl",
        "eval/speech/everyday-risky-fifth.jsonl",
        "eval/speech/everyday-risky-sixth.jsonl",
        "eval/speech/everyday-risky-seventh.jsonl",
        "eval/speech/everyday-risky-eighth.jsonl",
        "eval/video/benign.jsonl",
        "--targets",
        "eval/targets.toml",
        "--report",
        out,
    ]);
    if !full {
        eval.args(["--sample-speech", "0.2"]);
    }
    run.phase("eval", &mut eval)
}
