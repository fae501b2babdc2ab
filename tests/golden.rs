//! Golden outputs: `clipguard scan`, `run`, `transcribe` and `eval` on the sample clips (with
//! the hostile files of `common::Samples`) and on the evaluation sets give what the committed
//! files in `tests/golden/` hold. They were written by the binary before the stage wiring moved
//! into `clipguard-topology` (scan and transcribe now run on the in-process topology, run and
//! eval on the Kafka path), so this is the proof that the move changed no verdict.
//!
//! Volatile fields are dropped before comparing (`clip_id`, `decided_at_ms`, `elapsed_s`; the
//! store's folder, the clip id and the content address in the URI of the clip's bytes; paths
//! become file names); numbers compare within 1e-6. After an intended change of behaviour,
//! `CLIPGUARD_UPDATE_GOLDEN=1 cargo test --test golden` rewrites the files: review their diff.
//! `CLIPGUARD_GOLDEN_SPEECH=1` adds the spoken held-out set (minutes on two cores).

// Tests report failure by panicking.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Drops what differs between runs and shortens paths to file names.
fn normalise(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in ["clip_id", "decided_at_ms", "elapsed_s"] {
            o.remove(k);
        }
        for k in ["source", "file"] {
            if let Some(Value::String(p)) = o.get_mut(k) {
                let name = Path::new(p.as_str())
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                *p = name;
            }
        }
        // Where the store keeps the clip (the store is a temporary folder, and the sample clips
        // are encoded anew each run): its content address, or its clip's folder.
        if let Some(Value::Object(m)) = o.get_mut("media") {
            let sha = m
                .get("sha256")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let uri = m
                .get("uri")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let addressed = !sha.is_empty() && uri.ends_with(&format!("/clips/{sha}"));
            m.clear();
            // Submitted by claim check: `<store>/clips/<clip id>/<file name>`.
            let name = uri.rsplit('/').next().unwrap_or_default();
            let uri = if addressed {
                "<store>/clips/<sha256>".to_string()
            } else if uri.contains("/clips/") {
                format!("<store>/clips/<clip id>/{name}")
            } else {
                uri.clone()
            };
            m.insert("uri".into(), Value::String(uri));
        }
    }
    v
}

/// Equal, numbers within 1e-6 (relative above 1).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-6 * x.abs().max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

/// Compares `got` (sorted by `key`) with the golden file `name`, or rewrites it.
fn check(name: &str, mut got: Vec<Value>, key: &str) {
    got.sort_by(|a, b| a[key].as_str().cmp(&b[key].as_str()));
    let path = golden(name);
    if std::env::var("CLIPGUARD_UPDATE_GOLDEN").as_deref() == Ok("1") {
        let text: String = got.iter().map(|v| format!("{v}\n")).collect();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), want.len(), "{name}: {got:#?}");
    for (g, w) in got.iter().zip(&want) {
        assert!(
            same(g, w),
            "{name}: output differs from the golden file\n got: {g}\nwant: {w}"
        );
    }
}

fn clipguard(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(common::bin())
        .args(args)
        .env("CLIPGUARD_HASHMATCH__BANKS_DIR", dir.join("banks"))
        .env("CLIPGUARD_STORE__URL", dir.join("store"))
        .output()
        .unwrap()
}

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| normalise(serde_json::from_str(l).unwrap()))
        .collect()
}

#[test]
fn scan_run_and_transcribe_give_the_golden_verdicts() {
    let _serial = common::serial();
    let samples = common::Samples::make();
    let work = tempfile::tempdir().unwrap();
    let dir = samples.dir.path().to_str().unwrap();

    let scan = clipguard(&["scan", "--json", dir], work.path());
    assert!(
        scan.status.success(),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    check("scan.jsonl", json_lines(&scan), "source");

    let audience = [
        "scan",
        "--json",
        "--age-band",
        "under18",
        "--surface",
        "feed",
        "--prompt",
        "a cooking show about tomatoes",
        dir,
    ];
    let scan = clipguard(&audience, work.path());
    assert!(
        scan.status.success(),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    check("scan-audience.jsonl", json_lines(&scan), "source");

    let run = clipguard(&["run", "--json", dir], work.path());
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    check("run.jsonl", json_lines(&run), "source");

    let mut transcripts = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let out = clipguard(&["transcribe", "--json", f.to_str().unwrap()], work.path());
        if out.status.success() {
            transcripts.extend(json_lines(&out));
        } else {
            // `error: PATH: MESSAGE` for media that cannot be decoded.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let line = stderr.lines().find(|l| l.starts_with("error: ")).unwrap();
            let prefix = format!("error: {}: ", f.display());
            let message = line.strip_prefix(&prefix).unwrap_or(line);
            let name = f.file_name().unwrap().to_string_lossy();
            transcripts.push(serde_json::json!({"file": name, "error": message}));
        }
    }
    check("transcribe.jsonl", transcripts, "file");
}

#[test]
fn eval_gives_the_golden_summaries() {
    let _serial = common::serial();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let mut runs = vec![
        (
            "eval-text.json",
            // The held-out split and the red-team set: the development split has grown to
            // thousands of items, minutes in a debug build for no decision the others miss.
            &["eval/text/heldout.jsonl", "eval/text/redteam.jsonl"][..],
        ),
        ("eval-video.json", &["eval/video/benign.jsonl"][..]),
    ];
    // The spoken set takes minutes on two cores (whisper over 112 sentences): on request.
    if std::env::var("CLIPGUARD_GOLDEN_SPEECH").as_deref() == Ok("1") {
        runs.push(("eval-speech.json", &["eval/speech/heldout.jsonl"][..]));
    }
    for (name, sets) in runs {
        let mut args = vec!["eval".to_string(), "--json".into(), "--fresh".into()];
        args.extend(sets.iter().map(|s| root.join(s).display().to_string()));
        args.extend([
            "--work".into(),
            work.path().join("media").display().to_string(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = clipguard(&args, work.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        check(name, json_lines(&out), "policy_version");
    }
}
