//! Sparse decoding on real H.264 files made by GStreamer's encoder: what is decoded, what is
//! sampled, and that nothing a full decode reports is lost (audio, duration, thumbnails).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use clipguard_media::decode::{Decoded, decode_file, init};
use clipguard_media::{DecodeMode, MediaConfig};

/// 10 s of 25 fps 640×360 H.264 (a keyframe every `gop` frames) with AAC audio.
fn make_clip(path: &Path, gop: u32) {
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(["mp4mux", "name=mux", "!", "filesink"])
        .arg(format!("location={}", path.display()))
        .args(["videotestsrc", "pattern=ball", "num-buffers=250", "!"])
        .args(["video/x-raw,width=640,height=360,framerate=25/1", "!"])
        .args([
            "x264enc",
            "speed-preset=ultrafast",
            &format!("key-int-max={gop}"),
        ])
        .args(["!", "h264parse", "!", "mux."])
        .args([
            "audiotestsrc",
            "num-buffers=431",
            "!",
            "audio/x-raw,rate=44100",
        ])
        .args([
            "!",
            "audioconvert",
            "!",
            "avenc_aac",
            "!",
            "aacparse",
            "!",
            "mux.",
        ])
        .status()
        .expect("gst-launch-1.0 (run scripts/setup.sh)");
    assert!(status.success());
}

fn decode(path: &Path, decode: DecodeMode, tolerance: f64) -> Decoded {
    init().unwrap();
    let cfg = MediaConfig {
        decode,
        sparse_tolerance_s: tolerance,
        ..MediaConfig::default()
    };
    decode_file(path, &cfg).unwrap()
}

/// The largest distance from a sampling time (1 s apart from the first frame) to a sampled
/// frame.
fn worst_coverage(d: &Decoded) -> f64 {
    let start = d.frames.first().unwrap().timestamp_s;
    let mut worst: f64 = 0.0;
    let mut t = start;
    while t < d.duration_s - 0.05 {
        let nearest = d
            .frames
            .iter()
            .map(|f| (f.timestamp_s - t).abs())
            .fold(f64::INFINITY, f64::min);
        worst = worst.max(nearest);
        t += 1.0;
    }
    worst
}

#[test]
fn keyframes_two_seconds_apart_are_all_that_is_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("gop50.mp4");
    make_clip(&clip, 50);
    let full = decode(&clip, DecodeMode::Full, 1.0);
    let sparse = decode(&clip, DecodeMode::Sparse, 1.0);
    assert_eq!(full.frames_decoded, 250);
    assert!(
        sparse.frames_decoded <= 8,
        "decoded {} frames",
        sparse.frames_decoded
    );
    // Every sampling time has a decoded frame within the tolerance.
    assert!(
        worst_coverage(&sparse) <= 1.0 + 1e-3,
        "{}",
        worst_coverage(&sparse)
    );
    // What a full decode reports is all there: size, rate, duration, audio, thumbnails, the
    // vPDQ (each decoded frame here), and the clip is not called truncated.
    assert_eq!((sparse.width, sparse.height), (640, 360));
    assert!((sparse.fps - 25.0).abs() < 1e-6);
    assert!((sparse.duration_s - full.duration_s).abs() < 0.05);
    assert_eq!(
        sparse.audio.as_ref().map(Vec::len),
        full.audio.as_ref().map(Vec::len)
    );
    assert!(!sparse.frames.is_empty());
    for f in &sparse.frames {
        assert!(f.jpeg.starts_with(&[0xff, 0xd8]), "a JPEG thumbnail");
        assert!(f.pdq.is_some());
    }
    assert_eq!(sparse.frame_hashes.len() as u64, sparse.frames_decoded);
    assert!(sparse.frame_hash_max_gap_s >= 1.9 && sparse.frame_hash_max_gap_s <= 2.1);
    assert_eq!(full.frame_hash_max_gap_s, 0.0);
    // Frame numbers are the stream's, as a full decode numbers them.
    let numbers: Vec<u64> = sparse.frame_hashes.iter().map(|f| f.frame).collect();
    assert!(numbers.windows(2).all(|w| w[1] > w[0]), "{numbers:?}");
    assert!(
        numbers.iter().all(|n| n % 50 == 0),
        "keyframes: {numbers:?}"
    );
}

#[test]
fn long_groups_are_decoded_as_far_as_sampling_needs() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("gop250.mp4");
    make_clip(&clip, 250);
    // One keyframe in 10 s: sampling at 1 fps within 0.5 s needs the frames up to about 9 s.
    let sparse = decode(&clip, DecodeMode::Sparse, 0.5);
    assert!(
        (200..250).contains(&sparse.frames_decoded),
        "decoded {} frames",
        sparse.frames_decoded
    );
    assert!(
        worst_coverage(&sparse) <= 0.5 + 1e-3,
        "{}",
        worst_coverage(&sparse)
    );
    // A tolerance wider than the group: the keyframe alone.
    let wide = decode(&clip, DecodeMode::Sparse, 10.0);
    assert_eq!(wide.frames_decoded, 1);
}
