//! The processes under test: a tansu broker with its own data folder, and one `clipguard stage`
//! process per replica; their CPU time and peak memory from `/proc`, their metrics over HTTP.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A child process killed on drop.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub label: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL after `grace`; true when it exited by itself in time.
    pub fn stop(&mut self, grace: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a live process (None once it is gone).
pub fn cpu_seconds(pid: u32, ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// Peak resident memory (VmHWM) of a live process, in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A tansu broker (SQLite storage) on a free loopback port.
pub fn start_broker(tansu: &Path, dir: &Path) -> anyhow::Result<(Proc, String)> {
    start_broker_on(tansu, dir, None)
}

/// A tansu broker (SQLite storage in `dir`) on `port`, or a free one; a restart on the same port
/// and folder finds its topics, records and committed offsets again.
pub fn start_broker_on(
    tansu: &Path,
    dir: &Path,
    port: Option<u16>,
) -> anyhow::Result<(Proc, String)> {
    for _ in 0..3 {
        let port = match port {
            Some(p) => p,
            None => TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
        };
        let url = format!("tcp://127.0.0.1:{port}");
        if let Some(proc) = spawn_broker(tansu, dir, port, &url, &[])? {
            return Ok((proc, format!("127.0.0.1:{port}")));
        }
    }
    anyhow::bail!("tansu did not start (log in {})", dir.display())
}

/// A tansu broker on `port` that tells clients to connect to `advertised` (such as a TLS
/// terminator in front of it), with extra broker arguments (`--authentication`).
pub fn start_broker_with(
    tansu: &Path,
    dir: &Path,
    port: u16,
    advertised: &str,
    extra: &[&str],
) -> anyhow::Result<Proc> {
    spawn_broker(tansu, dir, port, advertised, extra)?
        .with_context(|| format!("tansu did not start on {port} (log in {})", dir.display()))
}

/// Starts tansu and waits until its port answers; `None` if it exited first (port taken).
fn spawn_broker(
    tansu: &Path,
    dir: &Path,
    port: u16,
    advertised: &str,
    extra: &[&str],
) -> anyhow::Result<Option<Proc>> {
    std::fs::create_dir_all(dir)?;
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("tansu.log"))?;
    let child = Command::new(tansu)
        .current_dir(dir)
        .args(["broker", "--listener-url", &url])
        .args(["--advertised-listener-url", advertised])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", tansu.display()))?;
    let mut proc = Proc {
        child,
        label: "broker".into(),
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Ok(Some(_)) = proc.child.try_wait() {
            return Ok(None); // port taken meanwhile
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(Some(proc));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(None)
}

/// The broker binary: `CLIPGUARD_TANSU`, else the one `scripts/setup.sh --broker` builds.
pub fn tansu_path() -> Option<PathBuf> {
    std::env::var_os("CLIPGUARD_TANSU")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("CLIPGUARD_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/clipguard"))
                })?;
            Some(cache.join("tansu/bin/tansu"))
        })
        .filter(|p| p.is_file())
}

/// Starts `clipguard stage NAME` serving metrics on a free port; returns it with that port once
/// it reports it (`listening metrics=…`).
pub fn start_stage(
    bin: &Path,
    stage: &str,
    replica: usize,
    env: &[(String, String)],
    log: &Path,
) -> anyhow::Result<(Proc, SocketAddr)> {
    let log_file = std::fs::File::create(log)?;
    let mut cmd = Command::new(bin);
    cmd.args(["stage", stage, "--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(log_file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let proc = Proc {
        child,
        label: format!("{stage}#{replica}"),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(addr) = line.strip_prefix("listening metrics=") {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(300))
        .with_context(|| format!("{stage} did not start in 300 s (log: {})", log.display()))?;
    Ok((proc, addr.parse()?))
}

/// The body of `GET /metrics` (None when the worker does not answer).
fn get_metrics(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// `GET /metrics`, summing the samples of `metric` (any labels).
pub fn scrape_sum(addr: SocketAddr, metric: &str) -> Option<f64> {
    let body = get_metrics(addr)?;
    let mut total = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        *total.get_or_insert(0.0) += value;
    }
    Some(total.unwrap_or(0.0))
}

/// `GET /metrics`, the values label `label` takes on the samples of `metric`.
pub fn scrape_label_values(
    addr: SocketAddr,
    metric: &str,
    label: &str,
) -> std::collections::BTreeSet<String> {
    let mut values = std::collections::BTreeSet::new();
    let Some(body) = get_metrics(addr) else {
        return values;
    };
    let key = format!("{label}=\"");
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(metric).and_then(|r| r.strip_prefix('{')) else {
            continue;
        };
        if let Some(v) = rest.split(&key).nth(1).and_then(|v| v.split('"').next()) {
            values.insert(v.to_string());
        }
    }
    values
}
