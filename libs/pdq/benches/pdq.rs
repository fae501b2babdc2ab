//! PDQ hashing of a 720p frame, single thread, beside the reference C++ implementation (the
//! `pdqhash` wheel, through `benches/pdq_baseline.py`) on the same frame in the same run.
//!
//! The frame is synthetic but photo-like (smooth gradients, shapes and noise), 1280×720 RGB.
//! Prints the median ms per hash for clipguard (RGB → luma → hash, as for an image file, and
//! from a decoded video frame's Y plane, as the media stage does), the reference's, the ratio,
//! and the distance between the two hashes.
//!
//! Run: `cargo bench -p clipguard-pdq --bench pdq`

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use clipguard_pdq as pdq;

const W: usize = 1280;
const H: usize = 720;

fn frame() -> Vec<u8> {
    let mut rgb = vec![0u8; W * H * 3];
    let mut seed = 0x2545_F491_u32;
    for y in 0..H {
        for x in 0..W {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed % 24) as f32;
            let (fx, fy) = (x as f32 / W as f32, y as f32 / H as f32);
            let disc = ((fx - 0.6).powi(2) + (fy - 0.4).powi(2)).sqrt() < 0.2;
            let bar = (x / 160) % 2 == 0 && y > H / 2;
            let base = [
                200.0 * fx + if disc { 40.0 } else { 0.0 },
                180.0 * fy + if bar { 50.0 } else { 0.0 },
                120.0 * (1.0 - fx) + if disc { 90.0 } else { 0.0 },
            ];
            for c in 0..3 {
                rgb[(y * W + x) * 3 + c] = (base[c] + noise).min(255.0) as u8;
            }
        }
    }
    rgb
}

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[runs / 2]
}

fn main() {
    let runs = 30;
    let rgb = frame();
    let mut ours = None;
    let from_rgb = median_ms(runs, || {
        let luma = pdq::luma_from_rgb(&rgb);
        ours = Some(pdq::hash_luma(&luma, W, H));
    });
    let ours = ours.unwrap();
    // The media stage's path: an 8-bit limited-range Y plane.
    let y: Vec<u8> = pdq::luma_from_rgb(&rgb)
        .iter()
        .map(|v| (16.0 + v * 219.0 / 255.0).round() as u8)
        .collect();
    let from_y = median_ms(runs, || {
        let luma = pdq::luma_from_video_plane(&y, W, W, H, true);
        std::hint::black_box(pdq::hash_luma(&luma, W, H));
    });
    println!("PDQ of a {W}x{H} frame, 1 thread, median of {runs}:");
    println!(
        "clipguard, RGB frame:      {from_rgb:7.2} ms  (quality {})",
        ours.quality
    );
    println!("clipguard, video Y plane:  {from_y:7.2} ms");

    let python = std::env::var_os("CLIPGUARD_BENCH_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/clipguard/bench-venv/bin/python"))
        });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frame.rgb");
    std::fs::write(&path, &rgb).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/pdq_baseline.py");
    let out = python.and_then(|p| {
        Command::new(p)
            .arg(&script)
            .arg(&path)
            .args([W.to_string(), H.to_string(), runs.to_string()])
            .output()
            .ok()
            .filter(|o| o.status.success())
    });
    let Some(out) = out else {
        println!("reference skipped: no Python with pdqhash (run scripts/bench-setup.sh)");
        return;
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ms = v["ms"].as_f64().unwrap();
    let hash: pdq::PdqHash = v["hash"].as_str().unwrap().parse().unwrap();
    println!(
        "reference C++ (pdqhash):   {ms:7.2} ms  (quality {}); clipguard / reference time = {:.2}x; hashes differ in {} bits",
        v["quality"],
        from_rgb / ms,
        hash.distance(&ours.hash)
    );
}
