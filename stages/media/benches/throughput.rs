//! Media stage throughput against a decode-only GStreamer pipeline, same clips, same run.
//!
//! Makes `CLIPGUARD_BENCH_CLIPS` (default 3) 10 s 720p clips, H.264 (4:2:0 8-bit, as generators
//! emit) with AAC audio, from GStreamer test sources, then decodes each with
//! `filesrc ! decodebin ! fakesink` (the baseline: what decoding alone costs) and with the media stage (fetch, decode, sample, thumbnails, audio to 16 kHz,
//! claim-check packing), one clip at a time, and prints clips/s, frames/s and the ratio.
//!
//! Run: `cargo bench -p clipguard-media --bench throughput`

// Tests and benchmarks report failure by panicking.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clipguard_media::{DecodeMode, MediaConfig, MediaStage};
use clipguard_pipeline::store::{MediaStore, StoreConfig};
use clipguard_schemas::{ClipSubmitted, MediaRef, media_ref::Location};
use gstreamer as gst;
use gstreamer::prelude::*;

fn make_clip(path: &Path, pattern: &str, gop: u32) {
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(["mp4mux", "name=mux", "!", "filesink"])
        .arg(format!("location={}", path.display()))
        .args([
            "videotestsrc",
            &format!("pattern={pattern}"),
            "num-buffers=250",
            "!",
        ])
        .args([
            "video/x-raw,width=1280,height=720,framerate=25/1,format=I420",
            "!",
        ])
        .args([
            "x264enc",
            "speed-preset=veryfast",
            "bitrate=2500",
            &format!("key-int-max={gop}"),
            "!",
            "h264parse",
            "!",
            "mux.",
        ])
        .args([
            "audiotestsrc",
            "num-buffers=431",
            "!",
            "audio/x-raw,rate=44100",
            "!",
            "audioconvert",
            "!",
        ])
        .args(["avenc_aac", "!", "aacparse", "!", "mux."])
        .status()
        .expect("gst-launch-1.0 (run scripts/setup.sh)");
    assert!(status.success(), "could not make {}", path.display());
}

/// Decode-only baseline: every stream decoded to raw and dropped.
fn decode_only(path: &Path) -> u64 {
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path.to_str().unwrap())
        .build()
        .unwrap();
    let dec = gst::ElementFactory::make("decodebin").build().unwrap();
    pipeline.add_many([&src, &dec]).unwrap();
    src.link(&dec).unwrap();
    let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let weak = pipeline.downgrade();
    let counter = frames.clone();
    dec.connect_pad_added(move |_, pad| {
        let pipeline = weak.upgrade().unwrap();
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .build()
            .unwrap();
        pipeline.add(&sink).unwrap();
        sink.sync_state_with_parent().unwrap();
        let is_video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        if is_video {
            let counter = counter.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
        pad.link(&sink.static_pad("sink").unwrap()).unwrap();
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("baseline decode failed: {}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    frames.load(std::sync::atomic::Ordering::Relaxed)
}

/// Seconds and (decoded frames, sampled frames) of the stage over `inputs`, `rounds` times.
fn run_stage(
    runtime: &tokio::runtime::Runtime,
    stage: &MediaStage,
    inputs: &[ClipSubmitted],
    rounds: usize,
) -> (f64, u64, usize) {
    let mut out = (Duration::ZERO, 0u64, 0usize);
    for _ in 0..rounds {
        for input in inputs {
            let t = Instant::now();
            let result = runtime.block_on(stage.process_clip(input));
            out.0 += t.elapsed();
            let Some(extract) = result.extract else {
                panic!("the stage did not decode the clip: {:?}", result.signal);
            };
            out.1 += extract.info.as_ref().map_or(0, |i| i.frames_decoded);
            out.2 += extract.frames.len();
        }
    }
    (out.0.as_secs_f64(), out.1, out.2)
}

fn decode_all(clips: &[PathBuf], rounds: usize) -> (f64, u64) {
    let t = Instant::now();
    let mut frames = 0;
    for _ in 0..rounds {
        for clip in clips {
            frames += decode_only(clip);
        }
    }
    (t.elapsed().as_secs_f64(), frames)
}

fn inputs_of(clips: &[PathBuf]) -> Vec<ClipSubmitted> {
    clips
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let bytes = std::fs::read(p).unwrap();
            ClipSubmitted {
                clip_id: format!("bench-{i}"),
                media: Some(MediaRef {
                    size_bytes: bytes.len() as u64,
                    location: Some(Location::Inline(bytes)),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect()
}

fn main() {
    gst::init().expect("gstreamer");
    let n: usize = std::env::var("CLIPGUARD_BENCH_CLIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let patterns = ["ball", "smpte", "snow", "pinwheel", "gamut"];
    // Keyframes every 2 s (as streaming encoders emit) and every 10 s (x264's default).
    let make = |gop: u32| -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let p = dir.path().join(format!("clip{i}-gop{gop}.mp4"));
                make_clip(&p, patterns[i % patterns.len()], gop);
                p
            })
            .collect()
    };
    let clips = make(50);
    let long_gop = make(250);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = || {
        MediaStore::open(&StoreConfig {
            url: dir.path().join("store").display().to_string(),
            ..Default::default()
        })
        .expect("store")
    };
    // `CLIPGUARD_BENCH_MEDIA=no-pdq,no-audio,no-scenes` turns parts of the stage off, to see
    // what each costs against decoding alone.
    let mut cfg = MediaConfig::default();
    let off = std::env::var("CLIPGUARD_BENCH_MEDIA").unwrap_or_default();
    for part in off.split(',').filter(|p| !p.is_empty()) {
        match part {
            "no-pdq" => cfg.pdq = false,
            "no-audio" => cfg.extract_audio = false,
            "no-scenes" => cfg.scene_cut_threshold = 0.0,
            other => panic!("CLIPGUARD_BENCH_MEDIA: unknown part `{other}`"),
        }
    }
    if !off.is_empty() {
        println!("  media stage parts off: {off}");
    }
    let full = MediaStage::new(cfg.clone(), store()).expect("media stage");
    // The fast configuration: PDQ of reduced frames (shorter side >= 256).
    let reduced = MediaStage::new(
        MediaConfig {
            pdq_min_side: 256,
            ..cfg.clone()
        },
        store(),
    )
    .expect("media stage");
    let sparse = MediaStage::new(
        MediaConfig {
            decode: DecodeMode::Sparse,
            pdq_min_side: 256,
            ..cfg
        },
        store(),
    )
    .expect("media stage");
    let inputs = inputs_of(&clips);
    let long_inputs = inputs_of(&long_gop);

    // Warm every path once (plugin loading, page cache).
    decode_only(&clips[0]);
    runtime.block_on(full.process_clip(&inputs[0]));
    runtime.block_on(sparse.process_clip(&inputs[0]));

    let rounds = 2;
    let total = (rounds * clips.len()) as f64;
    let base = decode_all(&clips, rounds);
    let ours = run_stage(&runtime, &full, &inputs, rounds);
    let small = run_stage(&runtime, &reduced, &inputs, rounds);
    let thin = run_stage(&runtime, &sparse, &inputs, rounds);
    let long_base = decode_all(&long_gop, rounds);
    let long_thin = run_stage(&runtime, &sparse, &long_inputs, rounds);
    println!(
        "media stage throughput, {} x 10 s 720p 25 fps H.264+AAC clips, {rounds} rounds, one clip at a time",
        clips.len()
    );
    let line = |name: &str, (secs, frames): (f64, u64), sampled: Option<usize>| {
        print!(
            "  {name:<38}: {:6.2} clips/s {:8.1} frames decoded/s {:6.1} decoded/clip",
            total / secs,
            frames as f64 / secs,
            frames as f64 / total
        );
        match sampled {
            Some(s) => println!(" {:5.1} sampled/clip", s as f64 / total),
            None => println!(),
        }
    };
    line("decode-only gstreamer, keyframes 2 s", base, None);
    line("media stage, full decode", (ours.0, ours.1), Some(ours.2));
    line(
        "media stage, full, PDQ min side 256",
        (small.0, small.1),
        Some(small.2),
    );
    line(
        "media stage, sparse, PDQ min side 256",
        (thin.0, thin.1),
        Some(thin.2),
    );
    line("decode-only gstreamer, keyframes 10 s", long_base, None);
    line(
        "media stage, sparse decode, keyframes 10 s",
        (long_thin.0, long_thin.1),
        Some(long_thin.2),
    );
    println!(
        "  ratio full stage / decode-only: {:.2}x; with PDQ min side 256: {:.2}x (target >= 0.80x)",
        base.0 / ours.0,
        base.0 / small.0
    );
    println!(
        "  ratio sparse stage / decode-only at 1 fps, keyframes 2 s: {:.2}x (target >= 5x); keyframes 10 s: {:.2}x",
        base.0 / thin.0,
        long_base.0 / long_thin.0
    );
}
