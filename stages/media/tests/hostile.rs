//! The hostile media corpus: more than 50 files generated here from a few valid clips (made by
//! GStreamer's encoders) and byte-level mutations — truncated at many offsets, empty, random
//! bytes, wrong extensions, garbage inside a valid container, huge declared dimensions, hour-long
//! declared durations, absurd frame rates, thousands of tiny frames, many streams, audio only,
//! video only, oversized and lying metadata boxes, gzip and zip bombs named `.mp4`, odd file
//! names. Nothing is committed: the corpus lives in a temporary folder.
//!
//! Each file goes through the media stage as a worker receives it. Every one must come back
//! quickly (none of these is slow to decode; GStreamer's decodebin sometimes swallows a failing
//! demuxer's error, which the stall watchdog turns into `corrupt` instead of a wait for the whole
//! deadline) with either an extract or an error signal whose reason is a precise
//! `media_error:<kind>` (never `internal` or `timeout`), the classes with a known answer must
//! give it, and the process's peak RSS is printed and bounded. A crash in a decoder would end this
//! test process: no worker dies is what passing means.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clipguard_media::{MediaConfig, MediaStage};
use clipguard_pipeline::store::{MediaStore, StoreConfig};
use clipguard_schemas::{ClipSubmitted, MediaRef, media_ref::Location};

/// Deadline per clip in this test (the stage's own limit; the default is 120 s), and how long
/// a decode may go without data (default 10 s).
const DEADLINE_S: f64 = 20.0;
const STALL_S: f64 = 3.0;

fn gst(args: &str) {
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(args.split_whitespace())
        .status()
        .expect("gst-launch-1.0 (run scripts/setup.sh)");
    assert!(status.success(), "gst-launch-1.0 {args}");
}

/// Deterministic bytes (xorshift), so a failure can be reproduced.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Offset of the first `fourcc` box type in an ISO-BMFF file (the 4 bytes after its size).
fn find_box(data: &[u8], fourcc: &[u8; 4]) -> Option<usize> {
    data.windows(4).position(|w| w == fourcc)
}

struct Corpus {
    dir: PathBuf,
    /// (file, expected kind when the class has one answer: "" = decodes or any precise kind).
    files: Vec<(PathBuf, &'static str)>,
}

impl Corpus {
    fn add(&mut self, name: &str, bytes: &[u8], expect: &'static str) {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        self.files.push((path, expect));
    }

    fn make(dir: &Path) -> Self {
        let mut c = Corpus {
            dir: dir.to_path_buf(),
            files: Vec::new(),
        };
        let src = dir.join("src");
        std::fs::create_dir_all(&src).unwrap();
        let p = |n: &str| src.join(n).display().to_string();
        // The valid seeds.
        gst(&format!(
            "mp4mux name=m ! filesink location={} videotestsrc num-buffers=60 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc speed-preset=ultrafast key-int-max=15 ! h264parse ! m. audiotestsrc num-buffers=90 ! audioconvert ! avenc_aac ! aacparse ! m.",
            p("a.mp4")
        ));
        gst(&format!(
            "webmmux name=m ! filesink location={} videotestsrc pattern=ball num-buffers=60 ! video/x-raw,width=320,height=240,framerate=30/1 ! vp8enc deadline=1 ! m. audiotestsrc num-buffers=90 ! audioconvert ! vorbisenc ! m.",
            p("b.webm")
        ));
        gst(&format!(
            "matroskamux name=m ! filesink location={} videotestsrc pattern=snow num-buffers=40 ! video/x-raw,width=160,height=120,framerate=20/1 ! x264enc speed-preset=ultrafast ! h264parse ! m.",
            p("c.mkv")
        ));
        gst(&format!(
            "audiotestsrc num-buffers=100 ! audioconvert ! avenc_aac ! aacparse ! mp4mux ! filesink location={}",
            p("audio.m4a")
        ));
        gst(&format!(
            "audiotestsrc num-buffers=100 ! audioconvert ! vorbisenc ! oggmux ! filesink location={}",
            p("audio.ogg")
        ));
        gst(&format!(
            "videotestsrc num-buffers=30 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc speed-preset=ultrafast ! h264parse ! mp4mux ! filesink location={}",
            p("video-only.mp4")
        ));
        // 3,000 frames of 16x16 at 1,000 fps (3 s).
        gst(&format!(
            "videotestsrc num-buffers=3000 ! video/x-raw,width=16,height=16,framerate=1000/1 ! x264enc speed-preset=ultrafast ! h264parse ! mp4mux ! filesink location={}",
            p("tiny-frames.mp4")
        ));
        // One frame every 10 s, three frames.
        gst(&format!(
            "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=64,framerate=1/10 ! x264enc speed-preset=ultrafast ! h264parse ! mp4mux ! filesink location={}",
            p("slow.mp4")
        ));
        // One video and six audio streams.
        let mut many = format!(
            "matroskamux name=m ! filesink location={} videotestsrc num-buffers=20 ! video/x-raw,width=64,height=48,framerate=10/1 ! x264enc speed-preset=ultrafast ! h264parse ! m.",
            p("many-streams.mkv")
        );
        for i in 0..6 {
            many.push_str(&format!(
                " audiotestsrc num-buffers=20 freq={} ! audioconvert ! vorbisenc ! m.",
                300 + 100 * i
            ));
        }
        gst(&many);
        gst(&format!(
            "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=64 ! jpegenc ! filesink location={}",
            p("still.jpg")
        ));
        gst(&format!(
            "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=64 ! pngenc ! filesink location={}",
            p("still.png")
        ));
        let read = |n: &str| std::fs::read(src.join(n)).unwrap();
        let (mp4, webm, mkv) = (read("a.mp4"), read("b.webm"), read("c.mkv"));

        // Truncated at many offsets.
        for (name, data, cuts) in [
            ("mp4", &mp4, [0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99]),
            ("webm", &webm, [0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99]),
            ("mkv", &mkv, [0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99]),
        ] {
            for f in cuts {
                let n = (data.len() as f64 * f) as usize;
                c.add(&format!("truncated-{f}.{name}"), &data[..n], "");
            }
        }
        c.add("empty.mp4", &[], "empty");
        for (i, n) in [1usize, 7, 188, 4096, 65_536, 1 << 20]
            .into_iter()
            .enumerate()
        {
            c.add(&format!("random-{n}.mp4"), &noise(i as u64 + 1, n), "");
        }
        c.add(
            "text.mp4",
            b"this is not a video, it is a sentence\n",
            "unrecognized_format",
        );
        // Wrong extensions.
        c.add("webm-named.mp4", &webm, "");
        c.add("mp4-named.txt", &mp4, "");
        c.add("mkv-named.avi", &mkv, "");
        // A valid container around garbage: the media data replaced by noise.
        if let Some(at) = find_box(&mp4, b"mdat") {
            let mut g = mp4.clone();
            let body = at + 4;
            let len = g.len() - body;
            g[body..].copy_from_slice(&noise(42, len));
            c.add("garbage-mdat.mp4", &g, "");
            // The trials' case: a valid header and a zeroed body.
            let mut z = mp4.clone();
            z[body..].iter_mut().for_each(|b| *b = 0);
            c.add("zeroed-mdat.mp4", &z, "");
            let mut z = mp4.clone();
            z[64..].iter_mut().for_each(|b| *b = 0);
            c.add("zeroed-after-64-bytes.mp4", &z, "");
        }
        {
            let mut g = webm.clone();
            let from = g.len() / 3;
            let len = g.len() - from;
            g[from..].copy_from_slice(&noise(7, len));
            c.add("garbage-tail.webm", &g, "");
        }
        // Hour-long (and longer) declared durations: mvhd and mdhd durations at their maximum.
        for (fourcc, name) in [(b"mvhd", "long-mvhd.mp4"), (b"mdhd", "long-mdhd.mp4")] {
            let mut d = mp4.clone();
            let at = find_box(&d, fourcc).unwrap();
            // version/flags 4, creation 4, modification 4, timescale 4, duration 4 (version 0).
            let dur = at + 4 + 16;
            d[dur..dur + 4].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
            c.add(name, &d, "");
        }
        // Huge declared dimensions: the track header says 60000x60000; a JPEG says 65000x65000.
        {
            let mut d = mp4.clone();
            let at = find_box(&d, b"tkhd").unwrap();
            let wh = at + 4 + 76;
            d[wh..wh + 4].copy_from_slice(&(60_000u32 << 16).to_be_bytes());
            d[wh + 4..wh + 8].copy_from_slice(&(60_000u32 << 16).to_be_bytes());
            c.add("huge-tkhd.mp4", &d, "");
            let mut j = read("still.jpg");
            let sof = j.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
            j[sof + 5..sof + 7].copy_from_slice(&65_000u16.to_be_bytes());
            j[sof + 7..sof + 9].copy_from_slice(&65_000u16.to_be_bytes());
            c.add("huge.jpg.mp4", &j, "");
        }
        c.add("png-named.mp4", &read("still.png"), "");
        c.add("audio-only.m4a.mp4", &read("audio.m4a"), "no_video_stream");
        c.add("audio-only.ogg", &read("audio.ogg"), "no_video_stream");
        c.add("video-only.mp4", &read("video-only.mp4"), "ok");
        c.add("tiny-frames-1000fps.mp4", &read("tiny-frames.mp4"), "ok");
        c.add("one-frame-per-10s.mp4", &read("slow.mp4"), "");
        c.add("many-streams.mkv", &read("many-streams.mkv"), "ok");
        // Oversized metadata: 32 MiB of `free` box before the movie; a box that claims 4 GiB.
        {
            let mut d = Vec::with_capacity(mp4.len() + (32 << 20));
            let size: u32 = (32 << 20) + 8;
            d.extend_from_slice(&size.to_be_bytes());
            d.extend_from_slice(b"free");
            d.resize(size as usize, 0);
            d.extend_from_slice(&mp4);
            c.add("huge-free-box.mp4", &d, "");
            let mut l = mp4.clone();
            let at = find_box(&l, b"moov").unwrap() - 4;
            l[at..at + 4].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
            c.add("lying-moov-size.mp4", &l, "");
        }
        // Bombs: 256 MiB of zeros, gzip and zip, named .mp4.
        {
            let zeros = src.join("zeros");
            std::fs::File::create(&zeros)
                .unwrap()
                .set_len(256 << 20)
                .unwrap();
            let gz = Command::new("gzip")
                .args(["-c", "-1"])
                .arg(&zeros)
                .output()
                .unwrap();
            assert!(gz.status.success());
            c.add("gzip-bomb.mp4", &gz.stdout, "");
            let zip = src.join("bomb.zip");
            let ok = Command::new("python3")
                .args([
                    "-c",
                    "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED); z.write(sys.argv[2], 'video.mp4'); z.close()",
                ])
                .arg(&zip)
                .arg(&zeros)
                .status()
                .unwrap();
            assert!(ok.success());
            c.add("zip-bomb.mp4", &std::fs::read(&zip).unwrap(), "");
            std::fs::remove_file(&zeros).unwrap();
        }
        // Odd names, valid content.
        for name in [
            "with space.mp4",
            "ünïcödé-клип-片段.mp4",
            "-leading-dash.mp4",
            "new\nline.mp4",
            &format!("{}.mp4", "x".repeat(200)),
            "no-extension",
        ] {
            c.add(name, &mp4, "ok");
        }
        c
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(0.0, |k| k / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_file_gets_a_precise_answer_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::make(dir.path());
    assert!(corpus.files.len() >= 50, "{} files", corpus.files.len());
    let store = MediaStore::open(&StoreConfig {
        url: dir.path().join("store").display().to_string(),
        ..Default::default()
    })
    .unwrap();
    let stage = MediaStage::new(
        MediaConfig {
            deadline_s: DEADLINE_S,
            stall_timeout_s: STALL_S,
            ..MediaConfig::default()
        },
        store,
    )
    .unwrap();
    let rss_before = peak_rss_mib();
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    let started = Instant::now();
    for (i, (path, expect)) in corpus.files.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        let clip = ClipSubmitted {
            clip_id: format!("hostile-{i}"),
            media: Some(MediaRef {
                size_bytes: bytes.len() as u64,
                location: Some(Location::Inline(bytes)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let t = Instant::now();
        let result = stage.process_clip(&clip).await;
        let took = t.elapsed();
        let name = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace('\n', "\\n");
        let kind = match (
            &result.extract,
            result.signal.as_ref().and_then(|s| s.error.as_ref()),
        ) {
            (Some(_), None) => "ok".to_string(),
            (_, Some(e)) => e.kind.clone(),
            (None, None) => "nothing".to_string(),
        };
        let reasons = result
            .signal
            .as_ref()
            .map(|s| s.reasons.join(","))
            .unwrap_or_default();
        lines.push(format!("{took:>8.2?}  {kind:<22} {name}"));
        // Nothing here is slow to decode: only a stall may take long, and it ends as corrupt.
        if took > Duration::from_secs_f64(STALL_S + 5.0) {
            failures.push(format!("{name}: {took:?}"));
        }
        if kind == "internal" || kind == "nothing" || kind == "timeout" {
            failures.push(format!("{name}: {kind} ({reasons})"));
        }
        if kind != "ok" && reasons != format!("media_error:{kind}") {
            failures.push(format!("{name}: reasons {reasons:?} for kind {kind}"));
        }
        if !expect.is_empty() && kind != *expect {
            failures.push(format!("{name}: {kind}, expected {expect}"));
        }
    }
    println!("{}", lines.join("\n"));
    let peak = peak_rss_mib();
    println!(
        "{} files in {:.1} s; peak RSS {peak:.0} MiB (before the corpus {rss_before:.0} MiB)",
        corpus.files.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(peak < 2048.0, "peak RSS {peak:.0} MiB");
    let _ = std::io::stdout().flush();
}
