//! Streams of different lengths: a clip whose audio runs past its video, or whose video runs past
//! its audio, is whole and decodes (generators add audio tails and end video early); the same
//! files cut short are `truncated`. Real files from GStreamer's encoders, MP4 (index first, so a
//! cut keeps it) and Matroska, decoded in full and sparsely.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use clipguard_media::decode::{decode_file, init};
use clipguard_media::{DecodeMode, MediaConfig, MediaError};

/// `video_s` of 25 fps 320×240 H.264 and `audio_s` of AAC, muxed by `mux` (`mp4` or `mkv`).
fn make(dir: &Path, name: &str, video_s: f64, audio_s: f64, mux: &str) -> PathBuf {
    let path = dir.join(format!("{name}.{mux}"));
    let muxer = match mux {
        "mp4" => "mp4mux faststart=true",
        _ => "matroskamux",
    };
    let pipeline = format!(
        "{muxer} name=mux ! filesink location={} \
         videotestsrc pattern=ball num-buffers={} ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc speed-preset=ultrafast key-int-max=25 ! h264parse ! mux. \
         audiotestsrc samplesperbuffer=441 num-buffers={} ! audio/x-raw,rate=44100 \
         ! audioconvert ! avenc_aac ! aacparse ! mux.",
        path.display(),
        (video_s * 25.0).round() as u32,
        (audio_s * 100.0).round() as u32,
    );
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .status()
        .expect("gst-launch-1.0 (run scripts/setup.sh)");
    assert!(status.success(), "gst-launch-1.0 {pipeline}");
    path
}

/// The first `fraction` of `path`'s bytes, as a new file.
fn cut(path: &Path, fraction: f64) -> PathBuf {
    let data = std::fs::read(path).unwrap();
    let out = path.with_file_name(format!(
        "cut-{}",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&out, &data[..(data.len() as f64 * fraction) as usize]).unwrap();
    out
}

fn decode(path: &Path, mode: DecodeMode) -> Result<clipguard_media::decode::Decoded, MediaError> {
    init().unwrap();
    let cfg = MediaConfig {
        decode: mode,
        ..MediaConfig::default()
    };
    decode_file(path, &cfg)
}

#[test]
fn streams_of_different_lengths_decode_and_cut_files_are_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("audio-longer", 6.0, 7.5),
        ("video-longer", 7.5, 3.0),
        ("equal", 6.0, 6.0),
    ];
    for mux in ["mp4", "mkv"] {
        for (name, video_s, audio_s) in cases {
            let path = make(dir.path(), name, video_s, audio_s, mux);
            for mode in [DecodeMode::Full, DecodeMode::Sparse] {
                let d = decode(&path, mode)
                    .unwrap_or_else(|e| panic!("{name}.{mux} ({mode:?}): {} — {e}", e.kind()));
                let last = d.frames.last().unwrap().timestamp_s;
                println!(
                    "{name}.{mux} {mode:?}: {:.2} s declared, {} frames sampled up to {last:.2} s, \
                     audio {}",
                    d.duration_s,
                    d.frames.len(),
                    d.audio.as_ref().map_or(0, |a| a.len() / 32_000),
                );
                assert!(
                    (d.duration_s - video_s.max(audio_s)).abs() < 0.3,
                    "{name}.{mux}: duration {}",
                    d.duration_s
                );
                assert!(last > video_s - 1.5, "{name}.{mux}: frames stop at {last}");
            }
            // Cut at 60 %: every stream stops early.
            let short = cut(&path, 0.6);
            for mode in [DecodeMode::Full, DecodeMode::Sparse] {
                match decode(&short, mode) {
                    Err(e) => {
                        println!("cut {name}.{mux} {mode:?}: {} — {e}", e.kind());
                        assert_eq!(e.kind(), "truncated", "cut {name}.{mux} ({mode:?}): {e}");
                    }
                    Ok(d) => panic!(
                        "cut {name}.{mux} ({mode:?}) decoded as whole: {:.2} s, {} frames",
                        d.duration_s,
                        d.frames.len()
                    ),
                }
            }
        }
    }
}
