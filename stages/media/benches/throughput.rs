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

use clipguard_media::{MediaConfig, MediaStage};
use clipguard_pipeline::store::{MediaStore, StoreConfig};
use clipguard_schemas::{ClipSubmitted, MediaRef, media_ref::Location};
use gstreamer as gst;
use gstreamer::prelude::*;

fn make_clip(path: &Path, pattern: &str) {
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
            "key-int-max=50",
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

fn main() {
    gst::init().expect("gstreamer");
    let n: usize = std::env::var("CLIPGUARD_BENCH_CLIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let patterns = ["ball", "smpte", "snow", "pinwheel", "gamut"];
    let clips: Vec<PathBuf> = (0..n)
        .map(|i| {
            let p = dir.path().join(format!("clip{i}.mp4"));
            make_clip(&p, patterns[i % patterns.len()]);
            p
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = MediaStore::open(&StoreConfig {
        url: dir.path().join("store").display().to_string(),
        ..Default::default()
    })
    .expect("store");
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
    let stage = MediaStage::new(cfg, store).expect("media stage");
    let inputs: Vec<ClipSubmitted> = clips
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
        .collect();

    // Warm both paths once (plugin loading, page cache).
    decode_only(&clips[0]);
    runtime.block_on(stage.process_clip(&inputs[0]));

    let rounds = 2;
    let mut base = (Duration::ZERO, 0u64);
    let mut ours = (Duration::ZERO, 0u64, 0usize);
    for _ in 0..rounds {
        for (clip, input) in clips.iter().zip(&inputs) {
            let t = Instant::now();
            base.1 += decode_only(clip);
            base.0 += t.elapsed();
            let t = Instant::now();
            let result = runtime.block_on(stage.process_clip(input));
            ours.0 += t.elapsed();
            let extract = result.extract.expect("the stage decodes the clip");
            ours.1 += extract.info.as_ref().map_or(0, |i| i.frames_decoded);
            ours.2 += extract.frames.len();
        }
    }
    let total = (rounds * clips.len()) as f64;
    let (b_s, o_s) = (base.0.as_secs_f64(), ours.0.as_secs_f64());
    println!(
        "media stage throughput, {} x 10 s 720p H.264+AAC clips, {rounds} rounds, one clip at a time",
        clips.len()
    );
    println!(
        "  decode-only gstreamer : {:6.2} clips/s {:8.1} frames/s",
        total / b_s,
        base.1 as f64 / b_s
    );
    println!(
        "  media stage           : {:6.2} clips/s {:8.1} frames/s ({:.1} sampled frames/clip)",
        total / o_s,
        ours.1 as f64 / o_s,
        ours.2 as f64 / total
    );
    println!(
        "  ratio stage / decode-only: {:.2}x (target >= 0.80x)",
        b_s / o_s
    );
}
