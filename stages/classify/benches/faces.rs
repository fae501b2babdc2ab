//! The potential-minor models: BlazeFace (full range) per frame and the age estimator per face
//! in tract (one thread), beside onnxruntime (its PyPI wheel, one intra-op thread) on the same
//! tensors in the same run, with the ratios and the largest output difference; and the whole
//! face → age path on the fixture face.
//!
//!     scripts/bench-setup.sh && cargo bench -p clipguard-classify --bench faces
//!
//! `CLIPGUARD_BENCH_PYTHON` names a Python with onnxruntime (default: the bench-setup venv);
//! without one the baseline is skipped with a message. `CLIPGUARD_BENCH_RUNS` (default 20).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clipguard_classify::Rgb;
use clipguard_classify::faces::FaceAges;
use clipguard_models::{Cache, Manifest};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn timed(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let runs: usize = std::env::var("CLIPGUARD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(1);
    let manifest = Manifest::load_default().unwrap();
    let cache = Cache::default();
    let (Ok(detector), Ok(age)) = (
        cache.verified_path(manifest.get("blazeface-back").unwrap()),
        cache.verified_path(manifest.get("age-v1").unwrap()),
    ) else {
        println!("skipped: run `clipguard models fetch blazeface-back age-v1` first");
        return;
    };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/faces");
    let img = image::open(fixtures.join("astronaut.png"))
        .unwrap()
        .to_rgb8();
    let chip = image::open(fixtures.join("astronaut-chip.png"))
        .unwrap()
        .to_rgb8()
        .into_raw();
    let rgb = Rgb {
        width: img.width() as usize,
        height: img.height() as usize,
        pixels: img.as_raw(),
    };
    let faces = FaceAges::load(("blazeface-back", &detector), ("age-v1", &age), 0.75).unwrap();
    let input = FaceAges::detector_input(&rgb);
    let det = timed(runs, || {
        faces.run_detector(input.clone()).unwrap();
    });
    let age1 = timed(runs, || {
        faces
            .age_probabilities(std::slice::from_ref(&chip))
            .unwrap();
    });
    let eight = vec![chip.clone(); 8];
    let age8 = timed(runs, || {
        faces.age_probabilities(&eight).unwrap();
    }) / 8.0;
    let whole = timed(runs, || {
        faces.faces_with_ages(&rgb).unwrap();
    });
    println!("one thread, median of {runs} calls; input: the fixture face (256 × 256)");
    println!(
        "tract  detector {:7.2} ms/frame   age batch 1 {:6.2} ms/face   age batch 8 {:6.2} ms/face",
        det * 1e3,
        age1 * 1e3,
        age8 * 1e3
    );
    println!(
        "tract  frame with one face, detect + align + age: {:.2} ms",
        whole * 1e3
    );
    likeness(runs, &manifest, &cache, &faces, &rgb, whole);

    let python = std::env::var_os("CLIPGUARD_BENCH_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/clipguard/bench-venv/bin/python"))
        });
    let dir = tempfile::tempdir().unwrap();
    let (det_in, chip_in) = (dir.path().join("det.f32"), dir.path().join("chip.u8"));
    std::fs::write(
        &det_in,
        input
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    std::fs::write(&chip_in, &chip).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/ort_faces_baseline.py");
    let out = python.and_then(|py| {
        Command::new(py)
            .arg(&script)
            .arg(&detector)
            .arg(&age)
            .arg(runs.to_string())
            .arg(&det_in)
            .arg(&chip_in)
            .output()
            .ok()
    });
    let Some(b) = out
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
    else {
        println!(
            "onnxruntime baseline skipped: run scripts/bench-setup.sh (or set CLIPGUARD_BENCH_PYTHON)"
        );
        return;
    };
    let (od, o1, o8) = (
        b["detector_s"].as_f64().unwrap(),
        b["age1_s"].as_f64().unwrap(),
        b["age8_s"].as_f64().unwrap() / 8.0,
    );
    let ours = faces
        .age_probabilities(std::slice::from_ref(&chip))
        .unwrap()
        .remove(0);
    let worst = b["age"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&ours)
        .map(|(a, b)| (a.as_f64().unwrap() as f32 - b).abs())
        .fold(0f32, f32::max);
    println!(
        "ort    detector {:7.2} ms/frame   age batch 1 {:6.2} ms/face   age batch 8 {:6.2} ms/face",
        od * 1e3,
        o1 * 1e3,
        o8 * 1e3
    );
    println!(
        "ratio tract/onnxruntime: detector {:.2}×, age batch 1 {:.2}×, batch 8 {:.2}×; age max |difference| {worst:.1e}",
        det / od,
        age1 / o1,
        age8 / o8
    );
}

/// Likeness: dlib's landmarks + chip + descriptor per face in tract, the descriptor beside
/// ONNX Runtime (in process, one thread) on the same chip, and what a frame with one face costs
/// the classify stage with likeness on (a registry with someone enrolled) against off.
fn likeness(
    runs: usize,
    manifest: &Manifest,
    cache: &Cache,
    faces: &FaceAges,
    rgb: &Rgb<'_>,
    without: f64,
) {
    use clipguard_classify::likeness::FaceDescriber;
    let (Ok(landmarks), Ok(descriptor)) = (
        cache.verified_path(manifest.get("face-landmarks-dlib5").unwrap()),
        cache.verified_path(manifest.get("face-descriptor-dlib").unwrap()),
    ) else {
        println!(
            "likeness skipped: run `clipguard models fetch face-landmarks-dlib5 face-descriptor-dlib` first"
        );
        return;
    };
    let describer = FaceDescriber::load(
        ("face-landmarks-dlib5", &landmarks),
        ("face-descriptor-dlib", &descriptor),
        "",
    )
    .unwrap();
    let face = faces.detect(rgb).unwrap().remove(0);
    let per_face = timed(runs, || {
        describer.describe(rgb, &face).unwrap().unwrap();
    });
    let chip = vec![128u8; 150 * 150 * 3];
    let net = timed(runs, || {
        describer.describe_chip(&chip).unwrap();
    });
    let with = timed(runs, || {
        for f in faces.detect(rgb).unwrap() {
            describer.describe(rgb, &f).unwrap();
        }
        faces.faces_with_ages(rgb).unwrap();
    });
    println!(
        "tract  likeness per face: landmarks + chip + descriptor {:.2} ms (descriptor network {:.2} ms)",
        per_face * 1e3,
        net * 1e3
    );
    println!(
        "tract  frame with one face: {:.2} ms with likeness (registry not empty) vs {:.2} ms without ({:.2}×)",
        with * 1e3,
        without * 1e3,
        with / without
    );
    let Ok(lib) = manifest
        .get("onnxruntime")
        .map_err(|e| e.to_string())
        .and_then(|e| cache.verified_path(e).map_err(|e| e.to_string()))
    else {
        println!("onnxruntime descriptor baseline skipped: `clipguard models fetch onnxruntime`");
        return;
    };
    clipguard_classify::ort_backend::init(&lib).unwrap();
    let ort = clipguard_classify::ort_backend::OrtModel::load(
        "face-descriptor-dlib",
        &descriptor,
        "chip",
        "descriptor",
    )
    .unwrap();
    let data: Vec<f32> = chip.iter().map(|&v| f32::from(v)).collect();
    let o = timed(runs, || {
        ort.run(&[1, 150, 150, 3], &data).unwrap();
    });
    let ours = describer.describe_chip(&chip).unwrap();
    let theirs = ort.run(&[1, 150, 150, 3], &data).unwrap();
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!(
        "ort    descriptor network {:.2} ms; tract/onnxruntime {:.2}×; max |difference| {worst:.1e}",
        o * 1e3,
        net / o
    );
}
