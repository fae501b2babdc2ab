//! The text encoder (minilm-l6-int8): tract latency at batch 1 and batch 8 (one thread), with
//! the int8 weights folded at load (what the stage runs) and without (the graph as shipped),
//! beside onnxruntime (its PyPI wheel, one intra-op thread) on the same sentences in the same
//! run, with the ratios and the largest embedding difference. Also the whole text classifier
//! (blocklists + every category head) per sentence.
//!
//!     scripts/bench-setup.sh && cargo bench -p clipguard-text --bench text
//!
//! `CLIPGUARD_BENCH_PYTHON` names a Python with onnxruntime and tokenizers (default: the
//! bench-setup venv); without one the baseline is skipped with a message.
//! `CLIPGUARD_BENCH_RUNS` (default 5).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clipguard_models::{Cache, Manifest};
use clipguard_text::embed::TextEmbedder;
use clipguard_text::{DEFAULT_POLICY, TextClassifier, TextInput, TextPolicy};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// 32 sentences of typical prompt length: the held-out evaluation texts.
fn sentences() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../eval/text/heldout.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .take(32)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

fn time_embedder(e: &TextEmbedder, sentences: &[&str], runs: usize) -> (f64, f64) {
    let (mut one, mut eight) = (Vec::new(), Vec::new());
    // Build the plans for every padded length these inputs need before timing.
    for s in sentences {
        e.embed(&[s]).unwrap();
    }
    for b in sentences.chunks_exact(8) {
        e.embed(b).unwrap();
    }
    for _ in 0..runs {
        for s in sentences {
            let t = Instant::now();
            e.embed(&[s]).unwrap();
            one.push(t.elapsed().as_secs_f64());
        }
        for b in sentences.chunks_exact(8) {
            let t = Instant::now();
            e.embed(b).unwrap();
            eight.push(t.elapsed().as_secs_f64());
        }
    }
    (median(one), median(eight))
}

fn main() {
    let runs: usize = std::env::var("CLIPGUARD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let manifest = Manifest::load_default().unwrap();
    let cache = Cache::default();
    let (model, tokenizer) = match (
        cache.verified_path(manifest.get("minilm-l6-int8").unwrap()),
        cache.verified_path(manifest.get("minilm-l6-tokenizer").unwrap()),
    ) {
        (Ok(m), Ok(t)) => (m, t),
        _ => {
            println!(
                "skipped: run `clipguard models fetch minilm-l6-int8 minilm-l6-tokenizer` first"
            );
            return;
        }
    };
    let owned = sentences();
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    println!(
        "minilm-l6-int8, one thread, median of {runs} passes over {} sentences",
        texts.len()
    );

    let folded = TextEmbedder::load("minilm-l6-int8", &model, &tokenizer).unwrap();
    let (f1, f8) = time_embedder(&folded, &texts, runs);
    let raw = TextEmbedder::load_with("minilm-l6-int8", &model, &tokenizer, false).unwrap();
    let (r1, r8) = time_embedder(&raw, &texts, runs.min(2));
    println!(
        "tract, int8 folded at load   batch 1 {:7.2} ms/sentence   batch 8 {:7.2} ms/sentence",
        f1 * 1e3,
        f8 * 1e3 / 8.0
    );
    println!(
        "tract, graph as shipped      batch 1 {:7.2} ms/sentence   batch 8 {:7.2} ms/sentence   ({:.1}× the folded time at batch 1)",
        r1 * 1e3,
        r8 * 1e3 / 8.0,
        r1 / f1
    );

    let python = std::env::var_os("CLIPGUARD_BENCH_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/clipguard/bench-venv/bin/python"))
        });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/ort_text_baseline.py");
    let baseline = python.and_then(|py| {
        let mut child = Command::new(&py)
            .arg(&script)
            .arg(&model)
            .arg(&tokenizer)
            .arg(runs.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        child
            .stdin
            .take()?
            .write_all(serde_json::to_string(&texts).unwrap().as_bytes())
            .ok()?;
        let out = child.wait_with_output().ok()?;
        if !out.status.success() {
            println!(
                "onnxruntime baseline failed ({}): {}",
                py.display(),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            return None;
        }
        serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
    });
    match baseline {
        Some(b) => {
            let (o1, o8) = (
                b["batch1_s"].as_f64().unwrap(),
                b["batch8_s"].as_f64().unwrap(),
            );
            let ours = folded.embed(&texts[..1]).unwrap().remove(0);
            let worst = b["embeddings"][0]
                .as_array()
                .unwrap()
                .iter()
                .zip(&ours)
                .map(|(a, b)| (a.as_f64().unwrap() as f32 - b).abs())
                .fold(0f32, f32::max);
            println!(
                "onnxruntime (as shipped)     batch 1 {:7.2} ms/sentence   batch 8 {:7.2} ms/sentence",
                o1 * 1e3,
                o8 * 1e3 / 8.0
            );
            println!(
                "ratio tract/onnxruntime: batch 1 {:.2}×, batch 8 {:.2}×; max |difference| {worst:.1e}",
                f1 / o1,
                f8 / o8
            );
        }
        None => println!(
            "onnxruntime baseline skipped: run scripts/bench-setup.sh (or set CLIPGUARD_BENCH_PYTHON)"
        ),
    }

    let t = Instant::now();
    let classifier = TextClassifier::new(
        TextPolicy::parse(DEFAULT_POLICY, "default").unwrap(),
        Some(folded),
    )
    .unwrap();
    println!(
        "text classifier built (exemplars embedded, heads trained) in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let mut per = Vec::new();
    for _ in 0..runs {
        for s in &texts {
            let t = Instant::now();
            classifier
                .classify(&[TextInput {
                    source: "prompt",
                    text: s,
                    start_s: 0.0,
                    end_s: 0.0,
                }])
                .unwrap();
            per.push(t.elapsed().as_secs_f64());
        }
    }
    per.sort_by(f64::total_cmp);
    println!(
        "whole text classifier per prompt: p50 {:.2} ms, p99 {:.2} ms",
        per[per.len() / 2] * 1e3,
        per[(per.len() * 99 / 100).min(per.len() - 1)] * 1e3
    );
}
