//! The test suite's executables run side by side.
//!
//! `cargo test` runs one test executable after another; each then runs its tests on as many
//! threads as there are cores, but most of the suite's time is spent waiting (on brokers,
//! databases, model servers, child processes), so a 2-core machine sat half idle. This runs
//! the executables the build listed, several at a time, longest first (by the durations the
//! previous run recorded), each in its package's folder with the environment `cargo test` gives
//! it. Each executable's output goes to a log file; a failure prints its whole log, a success
//! its summary line.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One test executable (or the doctests, which `cargo test --doc` builds and runs).
#[derive(Debug)]
pub struct Job {
    /// The test's source, relative to the workspace: `stages/review/tests/console.rs`.
    pub name: String,
    cmd: Vec<OsString>,
    dir: PathBuf,
    /// Run by cargo (the doctests), which sets the test's environment itself.
    by_cargo: bool,
}

/// What the build says the suite is: the executables, and the folders of native libraries
/// the build scripts linked (cargo puts those on the loader's path when it runs a test).
#[derive(Debug, Default)]
pub struct Suite {
    pub jobs: Vec<Job>,
    native: Vec<PathBuf>,
}

impl Suite {
    /// Reads `cargo … --message-format=json-render-diagnostics` output (diagnostics go to stderr
    /// as text; stdout carries one JSON message a line).
    pub fn from_messages(out: impl BufRead, root: &Path, target: &Path) -> Result<Self, String> {
        let mut suite = Suite::default();
        for line in out.lines() {
            let line = line.map_err(|e| format!("reading cargo's messages: {e}"))?;
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            match msg["reason"].as_str() {
                Some("compiler-artifact") if msg["profile"]["test"] == true => {
                    let (Some(exe), Some(src), Some(manifest)) = (
                        msg["executable"].as_str(),
                        msg["target"]["src_path"].as_str(),
                        msg["manifest_path"].as_str(),
                    ) else {
                        continue;
                    };
                    let src = Path::new(src);
                    let name = src.strip_prefix(root).unwrap_or(src);
                    suite.jobs.push(Job {
                        name: name.display().to_string(),
                        cmd: vec![exe.into()],
                        dir: Path::new(manifest).parent().unwrap_or(root).to_path_buf(),
                        by_cargo: false,
                    });
                }
                Some("build-script-executed") => {
                    for p in msg["linked_paths"].as_array().into_iter().flatten() {
                        let p = p.as_str().unwrap_or_default();
                        // `KIND=PATH` or a bare path; only folders inside the target, as cargo.
                        let p = p.split_once('=').map_or(p, |(_, p)| p);
                        let p = PathBuf::from(p);
                        if p.starts_with(target) && !suite.native.contains(&p) {
                            suite.native.push(p);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(suite)
    }

    /// Adds the doctests (built and run by cargo itself).
    pub fn with_doctests(mut self, cargo: OsString, root: &Path) -> Self {
        self.jobs.push(Job {
            name: "doctests".into(),
            cmd: [cargo]
                .into_iter()
                .chain(
                    ["test", "--workspace", "--locked", "--doc"]
                        .iter()
                        .map(OsString::from),
                )
                .collect(),
            dir: root.to_path_buf(),
            by_cargo: true,
        });
        self
    }

    /// The loader path cargo gives a test: the build scripts' native folders, then the
    /// target's `deps` and profile folders, then what the environment had.
    fn library_path(&self, target: &Path) -> OsString {
        let profile = target.join("debug");
        let mut dirs = self.native.clone();
        dirs.push(profile.join("deps"));
        dirs.push(profile);
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
            dirs.extend(std::env::split_paths(&old));
        }
        std::env::join_paths(dirs).unwrap_or_default()
    }
}

/// Removes what `cargo xtask` (a `cargo run`) put in this process's environment about the
/// xtask package itself: a build script that watches one of these (ring's watches
/// `CARGO_MANIFEST_DIR` and `CARGO_PKG_*`) would otherwise run again whenever builds alternate
/// between this task and a plain `cargo build`, and everything above it be rebuilt.
pub fn scrub(c: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || matches!(
                k.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_BIN_NAME"
            )
        {
            c.env_remove(k.as_ref());
        }
    }
}

/// How long each job took last time (seconds), kept between runs in one file.
#[derive(Debug, Default)]
pub struct Durations(HashMap<String, f64>);

impl Durations {
    pub fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Durations(
            text.lines()
                .filter_map(|l| l.split_once('\t'))
                .filter_map(|(name, s)| Some((name.to_string(), s.parse().ok()?)))
                .collect(),
        )
    }

    pub fn save(&self, path: &Path) {
        let mut rows: Vec<_> = self.0.iter().collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        let text: String = rows.iter().map(|(n, s)| format!("{n}\t{s:.1}\n")).collect();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(path, text);
    }

    /// Longest first, so the long ones do not start last; one never timed counts as longest.
    pub fn order(&self, jobs: &mut [Job]) {
        let key = |j: &Job| self.0.get(&j.name).copied().unwrap_or(f64::INFINITY);
        jobs.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
    }
}

/// One finished job.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub seconds: f64,
    /// CPU seconds it and the processes it waited for used (Linux; `None` elsewhere).
    pub cpu: Option<f64>,
    pub ok: bool,
}

/// CPU seconds of this process's reaped children so far: `cutime` + `cstime` of
/// `/proc/self/stat`, in clock ticks (100 a second on Linux). Read after each reap, the
/// difference is what that job used, its own children included.
fn children_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses; cutime and cstime
    // are fields 16 and 17, the 14th and 15th after it.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(13)?.parse::<f64>().ok()? + f.get(14)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

struct Running {
    job: Job,
    child: Child,
    log: PathBuf,
    started: Instant,
}

/// Runs the jobs, `slots` at a time, with `env` set on each; logs go to `logs`. Returns every
/// job's outcome in the order they finished.
pub fn run(
    suite: Suite,
    slots: usize,
    env: &[(String, OsString)],
    target: &Path,
    logs: &Path,
) -> Result<Vec<Outcome>, String> {
    std::fs::create_dir_all(logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let library_path = suite.library_path(target);
    let mut queue: std::collections::VecDeque<Job> = suite.jobs.into();
    let mut running: Vec<Running> = Vec::new();
    let mut done = Vec::new();
    let total = queue.len();
    let mut cpu_before = children_cpu();
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < slots.max(1)
            && let Some(job) = queue.pop_front()
        {
            let log = logs.join(format!("{}.log", job.name.replace(['/', '.'], "_")));
            let file =
                std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
            let err = file
                .try_clone()
                .map_err(|e| format!("{}: {e}", log.display()))?;
            let mut c = Command::new(&job.cmd[0]);
            scrub(&mut c);
            if !job.by_cargo {
                // What cargo gives a test it runs.
                c.env("CARGO_MANIFEST_DIR", &job.dir)
                    .env("LD_LIBRARY_PATH", &library_path);
            }
            c.args(&job.cmd[1..])
                .current_dir(&job.dir)
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(err);
            for (k, v) in env {
                c.env(k, v);
            }
            let child = match c.spawn() {
                Ok(child) => child,
                Err(e) => {
                    // Counted as a failure; the others still run.
                    println!(
                        "[{}/{total}] FAILED {}: cannot run {:?}: {e}",
                        done.len() + 1,
                        job.name,
                        job.cmd[0]
                    );
                    done.push(Outcome {
                        name: job.name,
                        seconds: 0.0,
                        cpu: None,
                        ok: false,
                    });
                    continue;
                }
            };
            running.push(Running {
                job,
                child,
                log,
                started: Instant::now(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut i = 0;
        while i < running.len() {
            let status = match running[i].child.try_wait() {
                Ok(Some(status)) => Ok(status),
                Ok(None) => {
                    i += 1;
                    continue;
                }
                Err(e) => {
                    // Cannot be watched: stopped, and counted as a failure.
                    let _ = running[i].child.kill();
                    let _ = running[i].child.wait();
                    Err(e)
                }
            };
            let r = running.swap_remove(i);
            let seconds = r.started.elapsed().as_secs_f64();
            let cpu_now = children_cpu();
            let cpu = cpu_now.zip(cpu_before).map(|(now, before)| now - before);
            cpu_before = cpu_now;
            let text = std::fs::read_to_string(&r.log).unwrap_or_default();
            let ok = status.as_ref().is_ok_and(|s| s.success());
            let status = match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("not watchable: {e}"),
            };
            let cpu_text = cpu.map(|c| format!(", {c:.1} CPU-s")).unwrap_or_default();
            println!(
                "[{}/{total}] {} {} ({seconds:.1} s{cpu_text})",
                done.len() + 1,
                if ok { "ok    " } else { "FAILED" },
                r.job.name,
            );
            if ok {
                for l in text.lines().filter(|l| l.starts_with("test result:")) {
                    println!("    {l}");
                }
            } else {
                println!("---- output of {} ({status}):", r.job.name);
                println!("{text}");
                println!("---- end of {}", r.job.name);
            }
            done.push(Outcome {
                name: r.job.name,
                seconds,
                cpu,
                ok,
            });
        }
    }
    Ok(done)
}

/// The durations of this run's passing jobs, merged into those kept (one that failed early
/// says nothing of how long it takes).
pub fn record(kept: &mut Durations, outcomes: &[Outcome]) {
    for o in outcomes.iter().filter(|o| o.ok) {
        kept.0.insert(o.name.clone(), o.seconds);
    }
}

/// Reads cargo's messages from a running build, passing stderr through.
pub fn build(cmd: &mut Command, root: &Path, target: &Path) -> Result<(Suite, bool), String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    let out = child.stdout.take().ok_or("cargo's stdout")?;
    let suite = Suite::from_messages(BufReader::new(out), root, target);
    if suite.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| format!("cargo: {e}"))?;
    Ok((suite?, status.success()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_test_executables_and_native_folders_from_cargos_messages() {
        let messages = [
            r#"{"reason":"compiler-artifact","profile":{"test":true},"executable":"/t/debug/deps/console-1a","target":{"src_path":"/w/stages/review/tests/console.rs"},"manifest_path":"/w/stages/review/Cargo.toml"}"#,
            // A library built for the tests, not a test: not run.
            r#"{"reason":"compiler-artifact","profile":{"test":false},"executable":null,"target":{"src_path":"/w/src/lib.rs"},"manifest_path":"/w/Cargo.toml"}"#,
            r#"{"reason":"build-script-executed","linked_paths":["native=/t/debug/build/x-1/out/lib","/usr/lib/x86_64-linux-gnu"]}"#,
            "   Compiling something (text, not a message)",
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        let suite =
            Suite::from_messages(messages.as_bytes(), Path::new("/w"), Path::new("/t")).unwrap();
        assert_eq!(suite.jobs.len(), 1);
        assert_eq!(suite.jobs[0].name, "stages/review/tests/console.rs");
        assert_eq!(suite.jobs[0].dir, Path::new("/w/stages/review"));
        assert_eq!(suite.native, [PathBuf::from("/t/debug/build/x-1/out/lib")]);
        let path = suite.library_path(Path::new("/t"));
        let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        assert_eq!(dirs[0], Path::new("/t/debug/build/x-1/out/lib"));
        assert_eq!(dirs[1], Path::new("/t/debug/deps"));
    }

    #[test]
    fn the_longest_and_the_never_timed_start_first() {
        let job = |name: &str| Job {
            name: name.into(),
            cmd: vec![],
            dir: PathBuf::new(),
            by_cargo: false,
        };
        let mut jobs = vec![job("a"), job("b"), job("new"), job("c")];
        let kept = Durations([("a".into(), 1.0), ("b".into(), 30.0), ("c".into(), 5.0)].into());
        kept.order(&mut jobs);
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["new", "b", "c", "a"]);
    }
}
