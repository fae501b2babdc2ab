//! Hash matching through the whole pipeline, with the real binary: a bank built from one clip's
//! vPDQ (`hash vpdq` → `bank import`) makes that clip and a re-encoded, rescaled copy of it
//! `block` with `hash_match:csam` through `clipguard run` (embedded Kafka broker, every stage
//! a consumer), while an unrelated clip is allowed. Also: bank import reports malformed lines
//! with file and line, `--strict` leaves the bank unchanged, and `match vpdq --json` agrees.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn gst(args: &str) {
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(args.split_whitespace())
        .status()
        .expect("gst-launch-1.0 (run scripts/setup.sh)");
    assert!(status.success(), "gst-launch-1.0 {args}");
}

/// A 4 s clip whose picture moves (scrolling colour bars), its copy re-encoded at 480x360 in
/// another container at a low bitrate, and an unrelated clip.
fn make_clips(dir: &Path) {
    let d = dir.display();
    gst(&format!(
        "mp4mux name=mux ! filesink location={d}/known.mp4 \
         videotestsrc pattern=smpte horizontal-speed=3 num-buffers=100 \
         ! video/x-raw,width=640,height=480,framerate=25/1,format=I420 \
         ! x264enc speed-preset=ultrafast ! h264parse ! mux."
    ));
    gst(&format!(
        "filesrc location={d}/known.mp4 ! decodebin ! videoconvert ! videoscale \
         ! video/x-raw,width=480,height=360 ! x264enc speed-preset=ultrafast bitrate=300 \
         ! h264parse ! matroskamux ! filesink location={d}/copy.mkv"
    ));
    gst(&format!(
        "mp4mux name=mux ! filesink location={d}/other.mp4 \
         videotestsrc pattern=ball num-buffers=100 \
         ! video/x-raw,width=640,height=480,framerate=25/1,format=I420 \
         ! x264enc speed-preset=ultrafast ! h264parse ! mux."
    ));
}

fn clipguard(dir: &Path, args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(args)
        .current_dir(dir)
        .env("CLIPGUARD_HASHMATCH__BANKS_DIR", dir.join("banks"))
        .env("CLIPGUARD_STORE__URL", dir.join("store"))
        .env("CLIPGUARD_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_bank_built_from_a_clip_blocks_it_and_its_copy_through_the_pipeline() {
    let _turn = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_clips(dir);

    let vpdq = ok(clipguard(dir, &["hash", "vpdq", "known.mp4"]), "hash vpdq");
    let lines: Vec<&str> = vpdq.lines().collect();
    assert!(lines.len() >= 4, "one frame a second of a 4 s clip: {vpdq}");
    for l in &lines {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), 4, "frame_index,quality,pdq_hex,timestamp: {l}");
        assert_eq!(f[2].len(), 64);
    }
    std::fs::write(dir.join("known.txt"), &vpdq).unwrap();

    let imported = ok(
        clipguard(
            dir,
            &[
                "bank",
                "import",
                "--bank",
                "known-bad",
                "--category",
                "csam",
                "--action",
                "block",
                "--id",
                "case-17",
                "known.txt",
            ],
        ),
        "bank import",
    );
    assert!(imported.contains("now 0 PDQ, 1 videos"), "{imported}");
    let list = ok(clipguard(dir, &["bank", "list", "--json"]), "bank list");
    let bank: serde_json::Value = serde_json::from_str(list.trim()).unwrap();
    assert_eq!(bank["bank"], "known-bad");
    assert_eq!(bank["vpdq_videos"], 1);

    let matched = ok(
        clipguard(dir, &["match", "vpdq", "--json", "known.txt", "copy.mkv"]),
        "match vpdq",
    );
    let m: serde_json::Value = serde_json::from_str(matched.trim()).unwrap();
    assert_eq!(m["is_match"], true, "{m}");
    println!("known vs re-encoded copy: {m}");

    let out = ok(
        clipguard(
            dir,
            &["run", "--json", "known.mp4", "copy.mkv", "other.mp4"],
        ),
        "run",
    );
    let mut seen = 0;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let source = v["source"].as_str().unwrap();
        let reasons = v["reasons"].to_string();
        println!("{source}: {} {reasons} — {}", v["decision"], v["rationale"]);
        if source.ends_with("other.mp4") {
            assert_eq!(v["decision"], "allow", "{v}");
            assert!(!reasons.contains("hash_match"), "{v}");
        } else {
            assert_eq!(v["decision"], "block", "{v}");
            assert!(reasons.contains("hash_match:csam"), "{v}");
            assert!(v["rationale"].as_str().unwrap().contains("case-17"), "{v}");
            // The bank's hashes never appear in a verdict.
            for l in &lines {
                assert!(!line.contains(l.split(',').nth(2).unwrap()));
            }
        }
        seen += 1;
    }
    assert_eq!(seen, 3, "one verdict per clip: {out}");
}

#[test]
fn bank_import_reports_bad_lines_and_strict_refuses_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pdq = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
    std::fs::write(
        dir.join("list.csv"),
        format!("hash,id\n{pdq},a\nnot-a-hash,b\n{},c\n", &pdq[..40]),
    )
    .unwrap();
    let out = clipguard(
        dir,
        &[
            "bank",
            "import",
            "--bank",
            "b",
            "--category",
            "ncii",
            "--action",
            "review",
            "list.csv",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("list.csv:3:"), "{stderr}");
    assert!(stderr.contains("list.csv:4:"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("now 1 PDQ"));

    let strict = clipguard(
        dir,
        &["bank", "import", "--bank", "b", "--strict", "list.csv"],
    );
    assert!(!strict.status.success());
    assert!(String::from_utf8_lossy(&strict.stderr).contains("left unchanged"));
    let list = ok(clipguard(dir, &["bank", "list", "--json"]), "bank list");
    let bank: serde_json::Value = serde_json::from_str(list.trim()).unwrap();
    assert_eq!(bank["version"], 1, "strict import wrote nothing");

    let new = clipguard(dir, &["bank", "import", "--bank", "c", "list.csv"]);
    assert!(String::from_utf8_lossy(&new.stderr).contains("--category"));
    ok(clipguard(dir, &["bank", "remove", "b"]), "bank remove");
    let gone = clipguard(dir, &["bank", "remove", "b"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("does not exist"));
}

/// Logs never carry what they must not: a pipeline run at debug level over a clip that a bank
/// blocks and a clip with speech writes none of the bank's hashes, none of the clips' frame
/// hashes and no run of four words of the transcript to its log.
#[test]
fn logs_carry_no_hashes_and_no_transcripts() {
    let _turn = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_clips(dir);
    let samples = common::Samples::make();
    std::fs::copy(samples.path("speech.mp4"), dir.join("speech.mp4")).unwrap();
    let vpdq = ok(clipguard(dir, &["hash", "vpdq", "known.mp4"]), "hash vpdq");
    std::fs::write(dir.join("known.txt"), &vpdq).unwrap();
    let speech_vpdq = ok(clipguard(dir, &["hash", "vpdq", "speech.mp4"]), "hash vpdq");
    ok(
        clipguard(
            dir,
            &[
                "bank",
                "import",
                "--bank",
                "known-bad",
                "--category",
                "csam",
                "--action",
                "block",
                "known.txt",
            ],
        ),
        "bank import",
    );
    let transcript = ok(
        clipguard(dir, &["transcribe", "--json", "speech.mp4"]),
        "transcribe",
    );
    let text = serde_json::from_str::<serde_json::Value>(transcript.trim()).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_lowercase();
    let words: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    assert!(words.len() >= 8, "a transcript to look for: {text}");

    let out = Command::new(common::bin())
        .args(["run", "--json", "known.mp4", "speech.mp4"])
        .current_dir(dir)
        .env("CLIPGUARD_HASHMATCH__BANKS_DIR", dir.join("banks"))
        .env("CLIPGUARD_STORE__URL", dir.join("store"))
        .env("CLIPGUARD_LOG", "debug")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(out.status.success(), "{log}");
    let verdicts = String::from_utf8_lossy(&out.stdout);
    assert!(verdicts.contains("hash_match:csam"), "{verdicts}");
    assert!(
        log.lines().count() > 50,
        "a debug log: {} lines",
        log.lines().count()
    );
    for line in vpdq.lines().chain(speech_vpdq.lines()) {
        let hex = line.split(',').nth(2).unwrap();
        assert!(!log.contains(hex), "a frame hash in the log: {hex}");
    }
    for run in words.windows(4) {
        let phrase = run.join(" ");
        assert!(
            !log.contains(&phrase),
            "transcript words in the log: {phrase:?}"
        );
    }
    println!(
        "{} log lines at debug level: no hash of {} frames, no 4 words of {:?}",
        log.lines().count(),
        vpdq.lines().count() + speech_vpdq.lines().count(),
        text
    );
}
