//! What an integrating team meets, from Python: `docs/examples/integrate.py` (confluent-kafka,
//! grpcio, grpcio-reflection, from PyPI in a cached venv) publishes clips to separately started
//! stage processes on the test broker, reads their verdicts, checks a prompt and a prompt with a
//! photo over gRPC, asks health, and lists and describes every service through server
//! reflection (v1alpha, with each file's imports).

// Tests and benchmarks report failure by panicking.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Broker, Proc, Samples};

#[test]
fn a_python_client_publishes_reads_verdicts_checks_a_prompt_and_reflects() {
    let Some(python) = std::env::var_os("CLIPGUARD_INTEROP_PYTHON") else {
        let msg = "no CLIPGUARD_INTEROP_PYTHON (scripts/ops-setup.sh makes the venv)";
        assert!(
            std::env::var("CLIPGUARD_REQUIRE_BROKER").as_deref() != Ok("1"),
            "{msg}"
        );
        eprintln!("skipping: {msg}");
        return;
    };
    let _turn = common::serial();
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topics(3);
    let samples = Samples::make();
    let store = samples.path("store");
    let env = vec![
        ("CLIPGUARD_STORE__URL", store.display().to_string()),
        ("CLIPGUARD_KAFKA__CREATE_TOPICS", "false".to_string()),
        ("CLIPGUARD_LOG", "warn".to_string()),
        (
            "CLIPGUARD_MONITOR__EXPECTED_STAGES",
            r#"["media", "classify"]"#.to_string(),
        ),
    ];
    let brokers = broker.addr.clone();
    let _media = Proc::spawn("media", &["stage", "media", "--brokers", &brokers], &env);
    let _monitor = Proc::spawn(
        "monitor",
        &["stage", "monitor", "--brokers", &brokers],
        &env,
    );
    let (_classify, addrs) = Proc::spawn_listening(
        "classify",
        &[
            "stage",
            "classify",
            "--brokers",
            &brokers,
            "--grpc-addr",
            "127.0.0.1:0",
        ],
        &env,
        &["grpc"],
        Duration::from_secs(60),
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = Instant::now();
    let out = Command::new(python)
        .arg(root.join("docs/examples/integrate.py"))
        .args(["--brokers", &brokers, "--grpc", &addrs["grpc"].to_string()])
        .arg("--proto")
        .arg(root.join("schemas/proto"))
        .args(["--timeout-s", "120"])
        .arg("--image")
        .arg(root.join("stages/classify/fixtures/faces/astronaut.png"))
        .arg(samples.path("ball.webm"))
        .arg(samples.path("corrupt.mp4"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "integrate.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "the Python client finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();

    let verdicts = result["verdicts"].as_object().unwrap();
    assert_eq!(verdicts.len(), 2, "{verdicts:?}");
    for v in verdicts.values() {
        let source = Path::new(v["source"].as_str().unwrap());
        match source.file_name().unwrap().to_str().unwrap() {
            "ball.webm" => assert_eq!(v["decision"], "DECISION_ALLOW", "{v}"),
            "corrupt.mp4" => {
                assert_eq!(v["decision"], "DECISION_BLOCK", "{v}");
                assert!(
                    v["reasons"].to_string().contains("media_error:truncated"),
                    "{v}"
                );
            }
            other => panic!("unexpected source {other}"),
        }
    }
    assert_eq!(result["check_prompt"]["decision"], "DECISION_ALLOW");
    assert_eq!(result["check_prompt"]["audience"], "public_feed");
    // A prompt with an uploaded photo of an adult: allowed on the public feed, no minor.
    assert_eq!(
        result["check_input"]["decision"], "DECISION_ALLOW",
        "{result}"
    );
    assert_eq!(result["check_input"]["minor_present"], false);
    assert_eq!(result["check_input"]["audience"], "public_feed");
    assert_eq!(result["health"], "SERVING");
    // Reflection described every service the worker serves, down to the methods' types
    // (which needs clip.proto, imported by services.proto).
    let services = result["services"].as_object().unwrap();
    let moderation = services["clipguard.v1.Moderation"].to_string();
    assert!(
        moderation.contains(
            "CheckPrompt(clipguard.v1.CheckPromptRequest) returns (clipguard.v1.CheckPromptResponse)"
        ) && moderation.contains(
            "CheckInput(clipguard.v1.CheckInputRequest) returns (clipguard.v1.CheckInputResponse)"
        ),
        "{moderation}"
    );
    let classify = services["clipguard.v1.ClassifyStage"].to_string();
    assert!(
        classify.contains("Classify(clipguard.v1.MediaExtract) returns (clipguard.v1.Signal)"),
        "{classify}"
    );
    for s in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(services.contains_key(s), "{s} not in {services:?}");
    }
}
