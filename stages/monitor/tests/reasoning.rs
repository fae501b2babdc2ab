//! The reasoning backend against real HTTP servers on loopback: llama.cpp's `llama-server`
//! serving SmolLM2-135M (built by `scripts/llama-server.sh`, named by CLIPGUARD_LLAMA_SERVER),
//! and plain TCP listeners that misbehave (never answer, answer garbage, answer 500).
//!
//! SmolLM2 is far too weak to judge content: these tests check the protocol, strict parsing,
//! timeouts, the deadline and the fallback to the policy engine, never the model's decisions.

// Tests report failure by panicking.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clipguard_monitor::reasoning::{Consult, ReasoningConfig};
use clipguard_monitor::{MonitorConfig, MonitorStage};
use clipguard_pipeline::graph::Graph;
use clipguard_schemas::{CategoryScore, ClipContext, Decision, Evidence, Signal, Transcript};

fn signals() -> Vec<Signal> {
    vec![
        Signal {
            clip_id: "c1".into(),
            stage: "media".into(),
            context: Some(ClipContext {
                source: "clip.mp4".into(),
                prompt: "a person on a bridge at night".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Signal {
            clip_id: "c1".into(),
            stage: "classify_transcript".into(),
            body: Some(clipguard_schemas::signal::Body::Transcript(Transcript {
                text: "I am going to hurt myself tonight".into(),
                ..Default::default()
            })),
            scores: vec![CategoryScore {
                category: "self_harm".into(),
                score: 0.62,
                evidence: vec![Evidence {
                    kind: "transcript".into(),
                    start_s: 1.0,
                    end_s: 3.0,
                    detail: "\u{201c}I am going to hurt myself tonight\u{201d} scored 0.62".into(),
                }],
            }],
            ..Default::default()
        },
    ]
}

/// The same signals with the transcript's self-harm score set to `score`.
fn signals_scored(score: f32) -> Vec<Signal> {
    let mut s = signals();
    s[1].scores[0].score = score;
    s
}

/// A monitor that consults the model only for clips with a score in [0.35, 0.65].
fn cascade(url: &str, timeout_s: f64) -> MonitorStage {
    monitor_with(ReasoningConfig {
        consult: Consult::Uncertain,
        uncertain_band: [0.35, 0.65],
        ..reasoning(url, timeout_s, 384)
    })
}

fn reasoning(url: &str, timeout_s: f64, max_tokens: u32) -> ReasoningConfig {
    ReasoningConfig {
        url: url.into(),
        model: "smollm2".into(),
        timeout_s,
        max_tokens,
        ..Default::default()
    }
}

fn monitor(url: &str, timeout_s: f64, max_tokens: u32) -> MonitorStage {
    monitor_with(reasoning(url, timeout_s, max_tokens))
}

fn monitor_with(reasoning: ReasoningConfig) -> MonitorStage {
    MonitorStage::new(
        MonitorConfig {
            expected_stages: vec!["media".into(), "classify_transcript".into()],
            reasoning,
            ..Default::default()
        },
        &clipguard_policy::PolicyConfig::default(),
        &Graph::default(),
    )
    .unwrap()
}

/// The policy engine's verdict on the same signals (what every fallback must give).
fn deterministic() -> clipguard_schemas::Verdict {
    let m = MonitorStage::new(
        MonitorConfig {
            expected_stages: vec!["media".into(), "classify_transcript".into()],
            ..Default::default()
        },
        &clipguard_policy::PolicyConfig::default(),
        &Graph::default(),
    )
    .unwrap();
    clipguard_monitor::decide::decide("c1", &signals(), m.wait(), m.policy(), false)
}

fn assert_fell_back(v: &clipguard_schemas::Verdict, kind: &str) {
    let d = deterministic();
    assert_eq!(v.engine, "policy", "{v:?}");
    assert!(v.fallback.starts_with(kind), "{kind}: {}", v.fallback);
    assert!(
        v.reasons.contains(&format!("reasoning_fallback:{kind}")),
        "{:?}",
        v.reasons
    );
    assert_eq!(v.decision, d.decision);
    assert_eq!(v.audiences, d.audiences);
    assert!(
        v.rationale.contains("reasoning backend not used"),
        "{}",
        v.rationale
    );
}

/// A listener that accepts connections and answers each with `answer` (None: never answers).
fn fake_server(answer: Option<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 65536];
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = s.read(&mut buf);
            match answer {
                Some(a) => {
                    let _ = s.write_all(a.as_bytes());
                }
                None => held.push(s), // keep it open, say nothing
            }
        }
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn a_server_that_never_answers_cannot_delay_a_clip_past_its_deadline() {
    let url = fake_server(None);
    let m = monitor(&url, 30.0, 256);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(400);
    let (v, _) = m.decide("c1", &signals(), false, deadline).await;
    let took = started.elapsed();
    assert_fell_back(&v, "timeout");
    // Bounded by the deadline (0.4 s), not by the 30 s reasoning timeout.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // Past its deadline, a clip does not wait at all.
    let (v, _) = m.decide("c1", &signals(), true, Instant::now()).await;
    assert_fell_back(&v, "deadline");
}

#[tokio::test]
async fn garbage_and_http_errors_fall_back_with_the_reason() {
    let garbage = fake_server(Some(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\nConnection: close\r\n\r\n{\"choices\":[{\"message\":7}]}",
    ));
    let (v, _) = monitor(&garbage, 5.0, 256)
        .decide(
            "c1",
            &signals(),
            false,
            Instant::now() + Duration::from_secs(10),
        )
        .await;
    assert_fell_back(&v, "malformed");
    assert!(v.fallback.contains("message.content"), "{}", v.fallback);

    let error = fake_server(Some(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops!",
    ));
    let (v, _) = monitor(&error, 5.0, 256)
        .decide(
            "c1",
            &signals(),
            false,
            Instant::now() + Duration::from_secs(10),
        )
        .await;
    assert_fell_back(&v, "http_error");
    assert!(v.fallback.contains("500"), "{}", v.fallback);

    // Nothing listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (v, _) = monitor(&format!("http://127.0.0.1:{port}/v1"), 5.0, 256)
        .decide(
            "c1",
            &signals(),
            false,
            Instant::now() + Duration::from_secs(10),
        )
        .await;
    assert_fell_back(&v, "unavailable");
}

/// The cascade: a clip whose scores are all far from the operating point is decided by the
/// policy engine without a call (a server that never answers would otherwise hold it until its
/// timeout); one inside the band is sent, and here falls back on the timeout.
#[tokio::test]
async fn the_cascade_asks_the_model_only_inside_the_uncertain_band() {
    let url = fake_server(None);
    let m = cascade(&url, 1.0);
    let deadline = || Instant::now() + Duration::from_secs(30);
    for score in [0.05, 0.95] {
        let started = Instant::now();
        let (v, _) = m
            .decide("c1", &signals_scored(score), false, deadline())
            .await;
        assert_eq!(v.engine, "policy", "{score}: {v:?}");
        assert!(v.fallback.is_empty(), "{score}: {}", v.fallback);
        assert!(
            !v.reasons
                .iter()
                .any(|r| r.starts_with("reasoning_fallback")),
            "{:?}",
            v.reasons
        );
        assert!(started.elapsed() < Duration::from_millis(500), "{score}");
    }
    let (v, _) = m
        .decide("c1", &signals_scored(0.5), false, deadline())
        .await;
    assert_fell_back(&v, "timeout");
    let mut registry = prometheus_client::registry::Registry::default();
    m.metrics().register(&mut registry);
    let text = clipguard_pipeline::telemetry::render(&registry);
    assert!(
        text.contains("outcome=\"not_uncertain\"} 2"),
        "{}",
        text.lines()
            .filter(|l| l.contains("reasoning"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// llama-server and the SmolLM2 weights, or None (skipped) when this machine has neither and
/// CLIPGUARD_REQUIRE_LLM is unset.
fn llama() -> Option<(PathBuf, PathBuf)> {
    let require = std::env::var_os("CLIPGUARD_REQUIRE_LLM").is_some();
    let bin = std::env::var_os("CLIPGUARD_LLAMA_SERVER").map(PathBuf::from);
    let model = clipguard_models::Manifest::load_default()
        .ok()
        .and_then(|m| {
            let entry = m.get("smollm2-135m").ok()?;
            clipguard_models::Cache::default().verified_path(entry).ok()
        });
    match (bin, model) {
        (Some(b), Some(m)) if b.exists() => Some((b, m)),
        (b, m) => {
            let msg = format!(
                "llama-server test skipped: CLIPGUARD_LLAMA_SERVER={b:?}, smollm2-135m model {m:?}; \
                 run `scripts/llama-server.sh` and `clipguard models fetch smollm2-135m` \
                 (scripts/test.sh does both)"
            );
            assert!(!require, "{msg}");
            eprintln!("{msg}");
            None
        }
    }
}

fn start(bin: &PathBuf, model: &PathBuf) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-m"])
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["-t", "1", "-c", "4096", "-np", "1", "--no-webui"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}/v1"),
    };
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /health HTTP/1.0\r\n\r\n");
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            if r.starts_with("HTTP/1.1 200") {
                return server;
            }
        }
        assert!(
            Instant::now() < until,
            "llama-server did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn a_real_llama_server_answers_under_the_schema_and_failures_fall_back() {
    let Some((bin, model)) = llama() else { return };
    let server = start(&bin, &model);
    let deadline = || Instant::now() + Duration::from_secs(120);

    // Used: the grammar-constrained answer parses; the verdict says which model decided, and
    // no audience goes below the floor (nothing hard here, so the model's columns stand).
    let m = monitor(&server.url, 120.0, 384);
    let (v, _) = m.decide("c1", &signals(), false, deadline()).await;
    assert_eq!(
        v.engine, "reasoning:smollm2",
        "{}: {}",
        v.fallback, v.rationale
    );
    assert!(v.fallback.is_empty());
    eprintln!("llama-server verdict: {:?} {}", v.audiences, v.rationale);
    assert!(v.rationale.starts_with("smollm2: "), "{}", v.rationale);
    assert!(v.rationale.contains("Policy engine: "), "{}", v.rationale);
    let a = v.audiences.unwrap();
    for d in [a.adult, a.under_18, a.public_feed] {
        assert_ne!(Decision::try_from(d).unwrap(), Decision::Unspecified);
    }
    // The evidence table is the policy engine's, whatever the model said.
    assert!(v.categories.iter().any(|c| c.category == "self_harm"));

    // The cascade: inside the band the model decides, outside it the policy engine alone.
    let c = cascade(&server.url, 120.0);
    let (v, _) = c
        .decide("c1", &signals_scored(0.55), false, deadline())
        .await;
    assert_eq!(
        v.engine, "reasoning:smollm2",
        "{}: {}",
        v.fallback, v.rationale
    );
    let (v, _) = c
        .decide("c1", &signals_scored(0.9), false, deadline())
        .await;
    assert_eq!(v.engine, "policy", "{}", v.rationale);
    assert!(v.fallback.is_empty(), "{}", v.fallback);

    // Slow: a real generation takes far longer than 30 ms.
    let (v, _) = monitor(&server.url, 0.03, 384)
        .decide("c1", &signals(), false, deadline())
        .await;
    assert_fell_back(&v, "timeout");

    // Cut off by the token limit: the JSON is incomplete.
    let (v, _) = monitor(&server.url, 120.0, 32)
        .decide("c1", &signals(), false, deadline())
        .await;
    assert_fell_back(&v, "malformed");
    assert!(v.fallback.contains("cut off"), "{}", v.fallback);

    // Stopped.
    let url = server.url.clone();
    drop(server);
    let (v, _) = monitor(&url, 10.0, 384)
        .decide("c1", &signals(), false, deadline())
        .await;
    assert_fell_back(&v, "unavailable");
}
