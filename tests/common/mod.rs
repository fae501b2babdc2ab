//! Shared helpers for the end-to-end tests: a real Kafka-protocol broker process (tansu with
//! SQLite storage) on 127.0.0.1, sample clips made with GStreamer, clipguard processes.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clipguard_schemas::Verdict;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// Heavy tests take turns: the machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn bin() -> &'static str {
    ensure_models();
    env!("CARGO_BIN_EXE_clipguard")
}

/// The models the default configuration's stages load (what `clipguard models fetch` fetches
/// without names: the configuration is the one list), fetched into the model cache once
/// (idempotent: a verified file is kept).
pub fn ensure_models() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_clipguard"))
            .args(["models", "fetch"])
            .output()
            .expect("run clipguard models fetch");
        assert!(
            out.status.success(),
            "clipguard models fetch (default models) failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// `clipguard cases ARGS --json --database-url DB`: (success, stdout, stderr).
#[allow(dead_code)]
pub fn cases(db: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .arg("cases")
        .args(args)
        .args(["--json", "--database-url", db])
        .output()
        .expect("run clipguard cases");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `clipguard cases accounts add --id ID --role ROLE` on `db`, the password from the
/// environment.
#[allow(dead_code)]
pub fn add_account(db: &str, id: &str, role: &str, password: &str) {
    let out = Command::new(bin())
        .args(["cases", "accounts", "add", "--id", id, "--role", role])
        .args(["--database-url", db])
        .env("CLIPGUARD_REVIEW_PASSWORD", password)
        .output()
        .expect("run clipguard cases accounts add");
    assert!(
        out.status.success(),
        "accounts add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tansu broker process with its own data folder (the load test's, `clipguard_loadtest::procs`);
/// killed on drop.
pub struct Broker {
    _proc: clipguard_loadtest::procs::Proc,
    pub addr: String,
    _dir: tempfile::TempDir,
}

/// The tansu binary, or `None` (with a message) when there is none and the run does not
/// require one (`CLIPGUARD_REQUIRE_BROKER=1` makes that a failure).
fn tansu_or_skip() -> Option<PathBuf> {
    let path = clipguard_loadtest::procs::tansu_path();
    if path.is_none() {
        let msg = "no tansu broker binary (set CLIPGUARD_TANSU, or run scripts/setup.sh --broker)";
        if std::env::var("CLIPGUARD_REQUIRE_BROKER").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        eprintln!("skipping: {msg}");
    }
    path
}

impl Broker {
    /// Starts a broker, or returns `None` when there is no tansu binary ([`tansu_or_skip`]).
    pub fn start() -> Option<Self> {
        let path = tansu_or_skip()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let (proc, addr) = clipguard_loadtest::procs::start_broker(&path, dir.path())
            .unwrap_or_else(|e| panic!("{e:#}"));
        Some(Broker {
            _proc: proc,
            addr,
            _dir: dir,
        })
    }

    /// Creates the pipeline's topics with `partitions` each.
    pub fn create_topics(&self, partitions: u32) {
        let out = Command::new(bin())
            .args(["topics", "create", "--brokers", &self.addr])
            .env("CLIPGUARD_KAFKA__PARTITIONS", partitions.to_string())
            .output()
            .expect("run clipguard topics create");
        assert!(
            out.status.success(),
            "topics create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Sample clips (see scripts/make-samples.sh) plus hostile files, in a temp folder.
pub struct Samples {
    pub dir: tempfile::TempDir,
}

impl Samples {
    pub fn make() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-samples.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(dir.path())
            .output()
            .expect("run make-samples.sh");
        assert!(
            out.status.success(),
            "make-samples.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(dir.path().join("empty.mp4"), b"").expect("write");
        std::fs::write(
            dir.path().join("text.mp4"),
            b"this is a text file, not a video\n",
        )
        .expect("write");
        // Deterministic noise (xorshift), so a lucky typefind match cannot make the test flaky.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let noise: Vec<u8> = (0..64 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        std::fs::write(dir.path().join("random.mp4"), noise).expect("write");
        Samples { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A `clipguard` child process, killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn clipguard");
        Proc {
            child,
            name: name.to_string(),
        }
    }

    /// Spawns a `clipguard stage` that serves on port 0, and returns it with the addresses it
    /// reports on stdout (`listening grpc=…`, `listening metrics=…`), by kind.
    pub fn spawn_listening(
        name: &str,
        args: &[&str],
        env: &[(&str, String)],
        kinds: &[&str],
        within: Duration,
    ) -> (Self, HashMap<String, SocketAddr>) {
        use std::io::BufRead;
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn clipguard");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some((kind, addr)) = line
                    .strip_prefix("listening ")
                    .and_then(|l| l.split_once('='))
                    && let Ok(addr) = addr.parse::<SocketAddr>()
                {
                    let _ = tx.send((kind.to_string(), addr));
                }
            }
        });
        let proc = Proc {
            child,
            name: name.to_string(),
        };
        let mut found = HashMap::new();
        let until = Instant::now() + within;
        while kinds.iter().any(|k| !found.contains_key(*k)) {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((kind, addr)) => {
                    found.insert(kind, addr);
                }
                Err(_) => panic!("{name} did not report {kinds:?} listening within {within:?}"),
            }
        }
        (proc, found)
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Submits `files` (repeats allowed) and returns clip id → source path.
pub fn submit(brokers: &str, files: &[PathBuf], env: &[(&str, String)]) -> HashMap<String, String> {
    let mut cmd = Command::new(bin());
    cmd.args(["submit", "--json", "--brokers", brokers])
        .args(files);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run submit");
    assert!(
        out.status.success(),
        "submit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("submit json");
            (
                v["clip_id"].as_str().expect("clip_id").to_string(),
                v["source"].as_str().expect("source").to_string(),
            )
        })
        .collect()
}

/// Reads every record of `topic` from the beginning.
pub struct TopicReader {
    consumer: BaseConsumer,
}

impl TopicReader {
    pub fn new(brokers: &str, topic: &str, partitions: i32) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("test-reader-{}", uuid::Uuid::now_v7()))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&list).expect("assign");
        TopicReader { consumer }
    }

    /// Polls for up to `wait` and returns the payloads read with their keys.
    pub fn poll(&self, wait: Duration) -> Vec<(String, Vec<u8>)> {
        let until = Instant::now() + wait;
        let mut out = Vec::new();
        while Instant::now() < until {
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => out.push((
                    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    m.payload().unwrap_or_default().to_vec(),
                )),
                Some(Err(e)) => eprintln!("poll error: {e}"),
                None => {}
            }
        }
        out
    }
}

/// Every verdict record seen, per clip id.
#[derive(Default)]
pub struct VerdictLog {
    pub by_clip: HashMap<String, Vec<Verdict>>,
    pub records: usize,
}

impl VerdictLog {
    pub fn absorb(&mut self, batch: Vec<(String, Vec<u8>)>) {
        for (key, payload) in batch {
            let v: Verdict = prost::Message::decode(payload.as_slice()).expect("verdict decodes");
            assert_eq!(key, v.clip_id, "verdict keyed by clip id");
            self.records += 1;
            self.by_clip.entry(v.clip_id.clone()).or_default().push(v);
        }
    }

    /// Clip ids whose verdict records disagree on decision or reasons.
    pub fn conflicts(&self) -> Vec<String> {
        self.by_clip
            .iter()
            .filter(|(_, vs)| {
                vs.iter()
                    .any(|v| v.decision != vs[0].decision || v.reasons != vs[0].reasons)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// A throwaway PKI made with the `openssl` command: a CA, a server certificate for `localhost`
/// and 127.0.0.1 signed by it, a client certificate signed by it, and a client certificate
/// signed by a second, untrusted CA. PEM files in a temporary folder.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn make() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sh = |script: &str| {
            let out = Command::new("sh")
                .arg("-ec")
                .arg(script)
                .current_dir(dir.path())
                .output()
                .expect("run openssl (Debian package `openssl`)");
            assert!(
                out.status.success(),
                "openssl failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ca = |name: &str| {
            format!(
                "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                 -keyout {name}.key -out {name}.crt -days 2 -subj /CN={name} \
                 -addext basicConstraints=critical,CA:TRUE \
                 -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null\n"
            )
        };
        let leaf = |name: &str, ca: &str, ext: &str| {
            format!(
                "printf '%s\\n' '{ext}' > {name}.ext\n\
                 openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                 -keyout {name}.key -out {name}.csr -subj /CN={name} 2>/dev/null\n\
                 openssl x509 -req -in {name}.csr -CA {ca}.crt -CAkey {ca}.key -CAcreateserial \
                 -days 2 -out {name}.crt -extfile {name}.ext 2>/dev/null\n"
            )
        };
        let mut script = ca("ca") + &ca("rogue-ca");
        script += &leaf(
            "server",
            "ca",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        );
        script += &leaf("client", "ca", "extendedKeyUsage=clientAuth");
        script += &leaf("rogue-client", "rogue-ca", "extendedKeyUsage=clientAuth");
        sh(&script);
        Pki { dir }
    }

    /// `NAME.crt` or `NAME.key`.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).unwrap()
    }
}

/// A TLS terminator on 127.0.0.1 in front of a plain TCP service (the test broker, whose own TLS
/// listener is not wired in tansu 0.6): rustls with the PKI's server certificate, asking for a
/// client certificate signed by the PKI's CA when `mutual`. Runs until dropped.
pub struct TlsProxy {
    pub port: u16,
    _runtime: tokio::runtime::Runtime,
}

impl TlsProxy {
    pub fn start(
        pki: &Pki,
        listener: std::net::TcpListener,
        upstream: SocketAddr,
        mutual: bool,
    ) -> Self {
        use std::sync::Arc;
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.path("server.crt"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if mutual {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_file_iter(pki.path("ca.crt")).unwrap() {
                roots.add(ca.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder.with_single_cert(certs, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            // Once per kind: clients retry, and each retry is refused alike.
                            static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
                            let e = e.to_string();
                            let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
                            if !seen.contains(&e) {
                                eprintln!("tls proxy: handshake refused: {e}");
                                seen.push(e);
                            }
                            return;
                        }
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = plain.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsProxy {
            port,
            _runtime: runtime,
        }
    }
}

/// A broker that speaks only SASL (SCRAM-SHA-512, user `clipguard`) over TLS: tansu with
/// authentication on a loopback port, advertising the TLS terminator's port in front of it, so
/// every connection a client makes after bootstrap goes through TLS too.
pub struct SecureBroker {
    _proc: clipguard_loadtest::procs::Proc,
    _proxy: TlsProxy,
    /// `127.0.0.1:PORT` of the TLS endpoint.
    pub addr: String,
    _dir: tempfile::TempDir,
}

pub const SASL_USER: &str = "clipguard";
pub const SASL_PASSWORD: &str = "correct horse battery staple";

impl SecureBroker {
    pub fn start(pki: &Pki, mutual: bool) -> Option<Self> {
        let tansu = tansu_or_skip()?;
        let dir = tempfile::tempdir().unwrap();
        let tls_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tls_port = tls_listener.local_addr().unwrap().port();
        // First without authentication, to create the SCRAM user (kept in the SQLite storage).
        let (setup, plain) = clipguard_loadtest::procs::start_broker(&tansu, dir.path())
            .unwrap_or_else(|e| panic!("{e:#}"));
        let plain_port: u16 = plain.rsplit(':').next().unwrap().parse().unwrap();
        let out = Command::new(&tansu)
            .args(["user", "create", "--broker", &format!("tcp://{plain}")])
            .args(["--mechanism", "scram512", SASL_USER, SASL_PASSWORD])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu user create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        drop(setup);
        // Again with authentication, on the same port or, should another test have taken it
        // meanwhile, on a fresh one (the users live in the storage, not the port).
        let mut port = plain_port;
        let mut started = None;
        for _ in 0..3 {
            match clipguard_loadtest::procs::start_broker_with(
                &tansu,
                dir.path(),
                port,
                &format!("tcp://127.0.0.1:{tls_port}"),
                &["--authentication"],
            ) {
                Ok(p) => {
                    started = Some(p);
                    break;
                }
                Err(e) => {
                    eprintln!("{e:#}; another port");
                    port = std::net::TcpListener::bind("127.0.0.1:0")
                        .unwrap()
                        .local_addr()
                        .unwrap()
                        .port();
                }
            }
        }
        let proc = started.expect("tansu with authentication did not start");
        let upstream: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let proxy = TlsProxy::start(pki, tls_listener, upstream, mutual);
        Some(SecureBroker {
            _proc: proc,
            _proxy: proxy,
            addr: format!("127.0.0.1:{tls_port}"),
            _dir: dir,
        })
    }
}
