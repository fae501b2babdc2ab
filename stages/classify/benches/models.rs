//! Per frame classifier of the manifest: tract latency and throughput at batch 1 and batch 8
//! (one thread), the optional in-process onnxruntime backend (when `clipguard models fetch
//! onnxruntime` has put the library in the cache), and onnxruntime from Python (its PyPI wheel,
//! one intra-op thread) on the same input tensors in the same run, with the ratios and the
//! largest output difference.
//!
//!     scripts/bench-setup.sh && cargo bench -p clipguard-classify --bench models
//!
//! `CLIPGUARD_BENCH_PYTHON` names a Python with onnxruntime (default: the bench-setup venv);
//! without one the baseline is skipped with a message. `CLIPGUARD_BENCH_RUNS` (default 10).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clipguard_classify::model::{ImageClassifier, Rgb, preprocess};
use clipguard_models::classifier::Layout;
use clipguard_models::{Cache, Manifest};

fn fixture_images() -> Vec<(usize, usize, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let img = image::open(f).unwrap().to_rgb8();
            (img.width() as usize, img.height() as usize, img.into_raw())
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("CLIPGUARD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(1);
    let python = std::env::var_os("CLIPGUARD_BENCH_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/clipguard/bench-venv/bin/python"))
        });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/ort_baseline.py");
    let manifest = Manifest::load_default().unwrap();
    let images = fixture_images();
    let dir = tempfile::tempdir().unwrap();
    println!("one thread each; median of {runs} calls; inputs: the parity fixture images");
    for entry in manifest.models.iter().filter(|m| m.classifier.is_some()) {
        let spec = entry.classifier.clone().unwrap();
        let path = match Cache::default().verified_path(entry) {
            Ok(p) => p,
            Err(e) => {
                println!("{}: skipped: {e}", entry.name);
                continue;
            }
        };
        let t = Instant::now();
        let model = ImageClassifier::load_with(&entry.name, &spec, &path, 8).unwrap();
        println!(
            "{}: loaded and optimised in {:.2} s",
            entry.name,
            t.elapsed().as_secs_f64()
        );
        // The optional in-process backend, when the library is in the cache.
        let in_process = manifest
            .get("onnxruntime")
            .ok()
            .and_then(|e| Cache::default().verified_path(e).ok())
            .and_then(|lib| clipguard_classify::ort_backend::init(&lib).ok())
            .and_then(|()| ImageClassifier::load_ort(&entry.name, &spec, &path, 8).ok());
        let [h, w] = spec.size.map(|d| d as usize);
        for batch in [1usize, 8] {
            let mut data = Vec::new();
            for i in 0..batch {
                let (iw, ih, px) = &images[i % images.len()];
                preprocess(
                    &spec,
                    &Rgb {
                        width: *iw,
                        height: *ih,
                        pixels: px,
                    },
                    &mut data,
                );
            }
            let shape = match spec.layout {
                Layout::Nhwc => vec![batch, h, w, 3],
                Layout::Nchw => vec![batch, 3, h, w],
            };
            let ours = model.run_tensor(&shape, data.clone()).unwrap(); // warm-up
            let times: Vec<f64> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    model.run_tensor(&shape, data.clone()).unwrap();
                    t.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            let ms = median(times);
            let line = format!(
                "{:<12} batch {batch}: tract {ms:8.2} ms/call {:6.1} frames/s",
                entry.name,
                batch as f64 * 1000.0 / ms
            );
            if let Some(m) = &in_process {
                m.run_tensor(&shape, data.clone()).unwrap();
                let t: Vec<f64> = (0..runs)
                    .map(|_| {
                        let t = Instant::now();
                        m.run_tensor(&shape, data.clone()).unwrap();
                        t.elapsed().as_secs_f64() * 1000.0
                    })
                    .collect();
                let b = median(t);
                println!(
                    "{:<12} batch {batch}: backend onnxruntime (in process) {b:8.2} ms/call {:6.1} frames/s | tract/this {:.2}×",
                    entry.name,
                    batch as f64 * 1000.0 / b,
                    ms / b
                );
            }
            let input = dir.path().join(format!("{}-{batch}.f32", entry.name));
            std::fs::write(
                &input,
                data.iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>(),
            )
            .unwrap();
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            let out = python.as_ref().and_then(|p| {
                Command::new(p)
                    .arg(&script)
                    .arg(&path)
                    .arg(&spec.input)
                    .arg(&input)
                    .arg(dims.join(","))
                    .arg(runs.to_string())
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
            });
            let Some(out) = out else {
                println!("{line} | onnxruntime skipped (run scripts/bench-setup.sh)");
                continue;
            };
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let ort_ms = v["ms"].as_f64().unwrap();
            // The model's raw outputs (before the spec's activation) are what onnxruntime gives.
            let raw: Vec<f64> = v["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let ours_flat: Vec<f32> = ours.concat();
            let diff = if matches!(
                spec.scores,
                clipguard_models::classifier::Scores::Probabilities
            ) {
                ours_flat
                    .iter()
                    .zip(&raw)
                    .map(|(a, b)| (*a as f64 - b).abs())
                    .fold(0.0, f64::max)
            } else {
                f64::NAN
            };
            println!(
                "{line} | onnxruntime {} {ort_ms:8.2} ms/call {:6.1} frames/s | tract/ort {:.2}× | max diff {diff:.1e}",
                v["version"].as_str().unwrap_or("?"),
                batch as f64 * 1000.0 / ort_ms,
                ms / ort_ms
            );
        }
    }
}
