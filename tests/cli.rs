//! The command-line contract on the embedded broker and the in-process host: `run --json`
//! prints one verdict object per input with the design's fields; `scan` gives the same
//! decisions without Kafka; config problems are all reported at once, by name.

// Tests and benchmarks report failure by panicking.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::Samples;

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn by_file(verdicts: &[serde_json::Value]) -> HashMap<String, serde_json::Value> {
    verdicts
        .iter()
        .map(|v| {
            let source = v["source"].as_str().expect("source");
            let name = std::path::Path::new(source)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, v.clone())
        })
        .collect()
}

fn assert_contract(v: &serde_json::Value) {
    for key in [
        "clip_id",
        "source",
        "decision",
        "audiences",
        "categories",
        "reasons",
        "policy_version",
        "rationale",
    ] {
        assert!(v.get(key).is_some(), "verdict lacks `{key}`: {v}");
    }
    for audience in ["adult", "under_18", "public_feed"] {
        let d = v["audiences"][audience].as_str().unwrap_or_default();
        assert!(
            ["allow", "review", "block"].contains(&d),
            "audience {audience}: {v}"
        );
    }
    assert!(
        !v["rationale"].as_str().unwrap_or_default().is_empty(),
        "empty rationale: {v}"
    );
}

fn expect_kinds(map: &HashMap<String, serde_json::Value>) {
    for good in ["speech.mp4", "ball.webm", "snow.mkv"] {
        assert_eq!(map[good]["decision"], "allow", "{good}: {}", map[good]);
    }
    for (bad, reason) in [
        ("corrupt.mp4", "media_error:truncated"),
        ("empty.mp4", "media_error:empty"),
        ("text.mp4", "media_error:unrecognized_format"),
    ] {
        assert_eq!(map[bad]["decision"], "block", "{bad}: {}", map[bad]);
        let reasons: Vec<&str> = map[bad]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r.as_str())
            .collect();
        assert_eq!(reasons, vec![reason], "{bad}");
    }
    let random = map["random.mp4"]["reasons"][0].as_str().unwrap_or_default();
    assert!(
        random.starts_with("media_error:"),
        "random bytes: {}",
        map["random.mp4"]
    );
}

#[test]
fn run_json_on_the_embedded_broker_follows_the_contract() {
    let _turn = common::serial();
    let samples = Samples::make();
    let out = Command::new(common::bin())
        .args(["run", "--json"])
        .arg(samples.dir.path())
        .env("CLIPGUARD_STORE__URL", samples.path("store"))
        .output()
        .expect("run clipguard run");
    assert!(
        out.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts = json_lines(&out.stdout);
    let files = std::fs::read_dir(samples.dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count();
    assert_eq!(verdicts.len(), files, "one verdict per input");
    verdicts.iter().for_each(assert_contract);
    expect_kinds(&by_file(&verdicts));
}

#[test]
fn scan_gives_the_same_decisions_without_kafka() {
    let samples = Samples::make();
    let out = Command::new(common::bin())
        .args(["scan", "--json"])
        .arg(samples.dir.path())
        .env("CLIPGUARD_STORE__URL", samples.path("store"))
        .output()
        .expect("run clipguard scan");
    assert!(
        out.status.success(),
        "scan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts = json_lines(&out.stdout);
    verdicts.iter().for_each(assert_contract);
    expect_kinds(&by_file(&verdicts));
}

#[test]
fn human_table_has_one_row_per_clip() {
    let samples = Samples::make();
    let out = Command::new(common::bin())
        .arg("scan")
        .args([samples.path("ball.webm"), samples.path("corrupt.mp4")])
        .env("CLIPGUARD_STORE__URL", samples.path("store"))
        .output()
        .expect("scan");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("DECISION"));
    assert!(
        lines[1].starts_with("allow") && lines[1].contains("ball.webm"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("block") && lines[2].contains("media_error:truncated"),
        "{text}"
    );
}

#[test]
fn limits_are_enforced_with_precise_kinds() {
    let samples = Samples::make();
    let scan = |env: (&str, &str), file: &str| -> serde_json::Value {
        let out = Command::new(common::bin())
            .args(["scan", "--json"])
            .arg(samples.path(file))
            .env("CLIPGUARD_STORE__URL", samples.path("store"))
            .env(env.0, env.1)
            .output()
            .expect("scan");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&out.stdout).remove(0)
    };
    for (env, file, reason) in [
        (
            ("CLIPGUARD_MEDIA__MAX_BYTES", "1000"),
            "speech.mp4",
            "media_error:too_large",
        ),
        (
            ("CLIPGUARD_MEDIA__MAX_DURATION_S", "2.0"),
            "speech.mp4",
            "media_error:too_long",
        ),
        (
            ("CLIPGUARD_MEDIA__MAX_WIDTH", "100"),
            "ball.webm",
            "media_error:resolution_too_large",
        ),
        (
            ("CLIPGUARD_MEDIA__MAX_FRAMES", "10"),
            "snow.mkv",
            "media_error:too_many_frames",
        ),
    ] {
        let v = scan(env, file);
        assert_eq!(v["reasons"][0], reason, "{env:?} on {file}: {v}");
        assert_eq!(v["decision"], "block");
    }
}

#[test]
fn every_config_problem_is_reported_at_once_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[media]\nsample_fps = 100.0\nframe_rate = 2\n[monitor]\ntimeout_s = 0\n",
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["validate", "--config"])
        .arg(&cfg)
        .env("CLIPGUARD_KAFKA__BROKERZ", "x")
        .output()
        .expect("validate");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "unknown key `media.frame_rate`",
        "unknown key `kafka.brokerz` (from CLIPGUARD_KAFKA__BROKERZ)",
        "media.sample_fps: 100 is outside 0..=60",
        "monitor.timeout_s: 0 must be > 0",
    ] {
        assert!(err.contains(needle), "`{needle}` missing from:\n{err}");
    }
    let ok = Command::new(common::bin())
        .arg("validate")
        .output()
        .expect("validate");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// A text policy's `[refine]` section is checked at validation, and `text-cv --refine` says
/// plainly when there is none.
#[test]
fn a_text_policy_refine_section_is_validated_and_required_by_text_cv_refine() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.toml");
    std::fs::write(
        &plain,
        "version = \"t\"\n[categories.a]\nunsafe_examples = [\"x y z\"]\n",
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["text-cv", "--refine"])
        .env("CLIPGUARD_CLASSIFY__TEXT_POLICY", &plain)
        .output()
        .expect("text-cv");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no [refine] section"), "{err}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "version = \"t\"\n[refine]\nencoder = \"e\"\ntokenizer = \"t\"\nband = [0.8, 0.2]\n\
         [categories.a]\nunsafe_examples = [\"x y z\"]\n",
    )
    .unwrap();
    let out = Command::new(common::bin())
        .arg("validate")
        .env("CLIPGUARD_CLASSIFY__TEXT_POLICY", &bad)
        .output()
        .expect("validate");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refine.band: [0.8, 0.2]"), "{err}");
}

#[test]
fn the_example_config_is_complete_and_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.example.toml");
    let out = Command::new(common::bin())
        .args(["validate", "--config"])
        .arg(&example)
        .output()
        .expect("validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hash_pdq_prints_hex_quality_path() {
    let Some(dir) = clipguard_testdata::conformance_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/conformance/threatexchange"),
        "pdq/images/misc-images/c.png",
    ) else {
        return;
    };
    let dir = dir.join("pdq");
    let image = dir.join("images/misc-images/c.png");
    let out = Command::new(common::bin())
        .args(["hash", "pdq"])
        .arg(&image)
        .output()
        .expect("hash pdq");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let fields: Vec<&str> = line.split(',').collect();
    assert_eq!(fields.len(), 3, "{line}");
    assert_eq!(fields[0].len(), 64);
    assert_eq!(fields[1], "100");
    assert_eq!(fields[2], image.display().to_string());
    // The WebAssembly port's hash of the same file.
    let wasm: clipguard_pdq::PdqHash =
        "e4cc89d91c623842f8d1f1d9a398e78c9f199a3bf87925f2b7e11e0bf061b064"
            .parse()
            .unwrap();
    let ours: clipguard_pdq::PdqHash = fields[0].parse().unwrap();
    assert!(
        ours.distance(&wasm) <= 16,
        "{} bits from the reference",
        ours.distance(&wasm)
    );

    let bad = Command::new(common::bin())
        .args(["hash", "pdq", "Cargo.toml"])
        .output()
        .expect("hash pdq");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot read the picture"));
}

/// Fetches `models`, writes `config` and scans the samples with it (info logs on stderr).
fn scan_with(samples: &Samples, models: &[&str], config: &str) -> std::process::Output {
    let out = Command::new(common::bin())
        .args(["models", "fetch"])
        .args(models)
        .output()
        .expect("fetch models");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = samples.path("scan-config.toml");
    std::fs::write(&file, config).unwrap();
    Command::new(common::bin())
        .args(["scan", "--json", "--config"])
        .arg(&file)
        .arg(samples.dir.path())
        .env("CLIPGUARD_STORE__URL", samples.path("store"))
        .env("CLIPGUARD_LOG", "info")
        .output()
        .expect("run clipguard scan")
}

/// `classify.backends` puts a frame model on ONNX Runtime (the library from the manifest):
/// the same decisions as with tract; the log names the backend.
#[test]
fn scan_with_the_onnxruntime_backend_gives_the_same_decisions() {
    let samples = Samples::make();
    let out = scan_with(
        &samples,
        &["onnxruntime"],
        "[classify.backends]\n\"open-nsfw\" = \"onnxruntime\"\n",
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scan failed: {log}");
    assert!(
        log.contains("frame classifier loaded") && log.contains("onnxruntime"),
        "{log}"
    );
    let verdicts = json_lines(&out.stdout);
    verdicts.iter().for_each(assert_contract);
    expect_kinds(&by_file(&verdicts));
}

/// The graphic frame model, listed beside open_nsfw: it runs on its shipped ONNX Runtime
/// backend, every decoded clip's verdict scores `violence_gore` from frames, the decisions stay
/// those of the samples; a combine rule for a category no frame model scores stops the start,
/// named.
#[test]
fn scan_with_the_graphic_frame_model_scores_violence_from_frames() {
    let samples = Samples::make();
    let out = scan_with(
        &samples,
        &["onnxruntime", "image-safety-s"],
        "[classify]\nframe_models = [\"open-nsfw\", \"image-safety-s\"]\n",
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scan failed: {log}");
    assert!(
        log.lines()
            .any(|l| l.contains("image-safety-s") && l.contains("onnxruntime")),
        "{log}"
    );
    let verdicts = json_lines(&out.stdout);
    verdicts.iter().for_each(assert_contract);
    let map = by_file(&verdicts);
    expect_kinds(&map);
    let scored = verdicts
        .iter()
        .filter(|v| {
            v["categories"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "violence_gore")
        })
        .count();
    let decoded = verdicts
        .iter()
        .filter(|v| v["reasons"].as_array().unwrap().is_empty())
        .count();
    assert!(
        decoded > 0 && scored >= decoded,
        "{scored} of {decoded}: {verdicts:?}"
    );

    let out = scan_with(
        &samples,
        &[],
        "[classify]\nframe_models = [\"open-nsfw\"]\n[classify.combine]\nsexaul = \"mean\"\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("classify.combine: \"sexaul\" is not a category"),
        "{err}"
    );
}
