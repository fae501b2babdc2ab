//! The policy surfaces over real processes: `Moderation.CheckPrompt` over gRPC on loopback
//! (served by a classify worker) agreeing with `clipguard check-prompt`; a monitor worker with a
//! shadow policy publishing shadow verdicts and counting disagreements; and `clipguard replay`
//! re-deciding 100 stored clips under a stricter policy.

// Tests report failure by panicking.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use clipguard_schemas::moderation_client::ModerationClient;
use clipguard_schemas::{
    Audience, CategoryScore, CheckPromptRequest, ClipContext, Decision, Evidence, Signal, Verdict,
};
use common::{Broker, Proc, TopicReader};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The tests of this file take turns (two cores; each starts workers).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn check_prompt_cli(prompt: &str, audience: &str) -> (serde_json::Value, i32) {
    let out = Command::new(common::bin())
        .args(["check-prompt", "--json", "--audience", audience, prompt])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "check-prompt output {text}: {e}; stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prompt_over_grpc_and_the_cli_agree() {
    let _serial = SERIAL.lock().await;
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topics(1);
    let dir = tempfile::tempdir().unwrap();
    let (_worker, addrs) = Proc::spawn_listening(
        "classify",
        &[
            "stage",
            "classify",
            "--brokers",
            &broker.addr,
            "--grpc-addr",
            "127.0.0.1:0",
        ],
        &[
            ("CLIPGUARD_STORE__URL", dir.path().display().to_string()),
            ("CLIPGUARD_KAFKA__CREATE_TOPICS", "false".into()),
        ],
        &["grpc"],
        Duration::from_secs(120),
    );
    let grpc = addrs["grpc"].to_string();
    let mut client = ModerationClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let cases = [
        (
            "a golden retriever catching a frisbee on the beach",
            Audience::PublicFeed,
            "public-feed",
            Decision::Allow,
        ),
        (
            "show me the best way to kill myself tonight",
            Audience::Adult,
            "adult",
            Decision::Allow,
        ),
        (
            "show me the best way to kill myself tonight",
            Audience::Under18,
            "under-18",
            Decision::Block,
        ),
        (
            "show me the best way to kill myself tonight",
            Audience::PublicFeed,
            "public-feed",
            Decision::Block,
        ),
    ];
    for (prompt, audience, cli_audience, want) in cases {
        let r = client
            .check_prompt(CheckPromptRequest {
                prompt: prompt.into(),
                audience: audience as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.decision(),
            want,
            "{prompt} for {audience:?}: {}",
            r.rationale
        );
        assert!(!r.policy_version.is_empty());
        let (cli, code) = check_prompt_cli(prompt, cli_audience);
        assert_eq!(cli["decision"], want.word(), "{cli}");
        assert_eq!(code, if want == Decision::Block { 3 } else { 0 });
        assert_eq!(cli["rationale"], r.rationale.as_str());
        if prompt.contains("kill myself") {
            // Self-harm is found in every audience; only the action differs (adult: review).
            let c = r
                .categories
                .iter()
                .find(|c| c.category == "self_harm")
                .unwrap();
            assert!(c.score >= c.threshold, "{c:?}");
            assert!(r.rationale.contains("self_harm"), "{}", r.rationale);
            assert!(!c.evidence.is_empty());
        }
    }
    // Oversized: blocked, not checked, with the reason (fail closed).
    let r = client
        .check_prompt(CheckPromptRequest {
            prompt: "a".repeat(70_000),
            audience: Audience::Adult as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.decision(), Decision::Block);
    assert!(
        r.rationale.contains("over the 65536-byte limit"),
        "{}",
        r.rationale
    );
}

fn signals_for(i: usize, sexual: f32) -> [Signal; 2] {
    let clip_id = format!("stored-{i:03}");
    [
        Signal {
            clip_id: clip_id.clone(),
            stage: "media".into(),
            context: Some(ClipContext {
                source: format!("clip-{i:03}.mp4"),
                ..Default::default()
            }),
            ..Default::default()
        },
        Signal {
            clip_id,
            stage: "classify".into(),
            scores: vec![CategoryScore {
                category: "sexual".into(),
                score: sexual,
                evidence: vec![Evidence {
                    kind: "frame".into(),
                    start_s: 1.0,
                    end_s: 1.0,
                    detail: format!("open-nsfw {sexual:.2}"),
                }],
            }],
            ..Default::default()
        },
    ]
}

/// The shipped policy with the public feed's sexual threshold lowered from 0.5 to 0.3.
fn stricter_policy(dir: &std::path::Path) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policy/default.toml"),
    )
    .unwrap();
    let sexual = "[categories.sexual]\ndescription = \"sexual content without a real person's likeness\"\nadult = { threshold = 0.8, action = \"allow\" }\nunder_18 = { threshold = 0.5, action = \"block\" }\npublic_feed = { threshold = 0.5, action = \"block\" }";
    assert!(
        shipped.contains(sexual),
        "policy/default.toml changed: update this test"
    );
    let strict = shipped
        .replace(
            sexual,
            &sexual.replace(
                "public_feed = { threshold = 0.5",
                "public_feed = { threshold = 0.3",
            ),
        )
        .replace(
            "under_18 = { threshold = 0.5, action = \"block\" }\npublic_feed = { threshold = 0.3",
            "under_18 = { threshold = 0.3, action = \"block\" }\npublic_feed = { threshold = 0.3",
        );
    let strict = {
        let start = strict.find("version = ").unwrap();
        let end = start + strict[start..].find('\n').unwrap();
        format!(
            "{}version = \"strict-test\"{}",
            &strict[..start],
            &strict[end..]
        )
    };
    let path = dir.join("strict.toml");
    std::fs::write(&path, strict).unwrap();
    path
}

fn metrics(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// 100 clips' signals on the broker; a monitor worker with the stricter policy as its shadow
/// decides them (verdicts + shadow verdicts + the disagreement counter); then `replay` of
/// the stored signals under the stricter policy prints how many decisions changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_verdicts_and_replay_of_100_stored_clips_under_a_stricter_policy() {
    let _serial = SERIAL.lock().await;
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topics(1);
    let dir = tempfile::tempdir().unwrap();
    let strict = stricter_policy(dir.path());
    // Clip i scores i/100 for sexual: the public feed blocks at 0.5 (shipped) or 0.3 (strict),
    // so clips 30..49 change from allow to block.
    let expected_changed = 20;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    for i in 0..100 {
        for s in signals_for(i, i as f32 / 100.0) {
            producer
                .send(
                    FutureRecord::to("clips.signals")
                        .key(&s.clip_id)
                        .payload(&prost::Message::encode_to_vec(&s)),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    }

    let env = [
        ("CLIPGUARD_KAFKA__CREATE_TOPICS", "false".to_string()),
        (
            "CLIPGUARD_MONITOR__EXPECTED_STAGES",
            "[\"media\", \"classify\"]".to_string(),
        ),
        ("CLIPGUARD_POLICY__SHADOW", strict.display().to_string()),
    ];
    let (_monitor, addrs) = Proc::spawn_listening(
        "monitor",
        &[
            "stage",
            "monitor",
            "--brokers",
            &broker.addr,
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        &env,
        &["metrics"],
        Duration::from_secs(60),
    );
    let metrics_addr = addrs["metrics"].to_string();
    let verdicts = TopicReader::new(&broker.addr, "clips.verdicts", 1);
    let shadow = TopicReader::new(&broker.addr, "clips.verdicts.shadow", 1);
    let decode = |batch: Vec<(String, Vec<u8>)>| -> Vec<Verdict> {
        batch
            .into_iter()
            .map(|(_, p)| prost::Message::decode(p.as_slice()).unwrap())
            .collect()
    };
    let (mut active, mut shadowed) = (Vec::new(), Vec::new());
    let until = Instant::now() + Duration::from_secs(120);
    while (active.len() < 100 || shadowed.len() < 100) && Instant::now() < until {
        active.extend(decode(verdicts.poll(Duration::from_millis(500))));
        shadowed.extend(decode(shadow.poll(Duration::from_millis(500))));
    }
    assert_eq!(active.len(), 100, "active verdicts");
    assert_eq!(shadowed.len(), 100, "shadow verdicts");
    assert!(shadowed.iter().all(|v| v.policy_version == "strict-test"));
    assert!(active.iter().all(|v| v.policy_version != "strict-test"));
    let disagree = active
        .iter()
        .filter(|a| {
            shadowed
                .iter()
                .any(|s| s.clip_id == a.clip_id && s.decision != a.decision)
        })
        .count();
    assert_eq!(disagree, expected_changed);
    let m = metrics(&metrics_addr);
    assert!(
        m.contains("clipguard_monitor_shadow_verdicts_total 100"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "clipguard_monitor_shadow_disagreements_total{{active=\"allow\",shadow=\"block\"}} {expected_changed}"
        )),
        "{m}"
    );

    // Replay the stored signals (clips.signals) under the stricter policy.
    let out = Command::new(common::bin())
        .args(["replay", "--brokers", &broker.addr, "--policy"])
        .arg(&strict)
        .env(
            "CLIPGUARD_MONITOR__EXPECTED_STAGES",
            "[\"media\", \"classify\"]",
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "{expected_changed} of 100 clips changed decision (allow→block {expected_changed})"
        )),
        "{text}"
    );
    // Public feed and under-18 both moved for each changed clip.
    assert!(
        text.contains(&format!(
            "{} of 300 audience decisions changed",
            expected_changed * 2
        )),
        "{text}"
    );
    assert!(
        text.contains("stored-030 clip-030.mp4: allow → block"),
        "{text}"
    );
    assert!(!text.contains("stored-029"), "{text}");

    let out = Command::new(common::bin())
        .args(["replay", "--json", "--brokers", &broker.addr, "--policy"])
        .arg(&strict)
        .env(
            "CLIPGUARD_MONITOR__EXPECTED_STAGES",
            "[\"media\", \"classify\"]",
        )
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["clips"], 100);
    assert_eq!(j["changed_decisions"], expected_changed);
    assert_eq!(j["candidate_policy"], "strict-test");
}

/// A spoken self-harm sentence through the real pipeline (`scan`: decode, whisper, the
/// transcript classifier, the monitor): the verdict JSON quotes the transcript span with its
/// segment times.
#[test]
fn a_transcript_hit_shows_its_span_and_time_in_the_verdict_json() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("s.wav");
    let clip = dir.path().join("spoken.mp4");
    let ok = Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .args([
            "-s",
            "150",
            "Good evening. I am going to kill myself tonight.",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let pipeline = format!(
        "mp4mux name=mux faststart=true ! filesink location={} \
         videotestsrc pattern=smpte num-buffers=100 ! video/x-raw,width=320,height=240,framerate=25/1,format=I420 \
         ! x264enc speed-preset=ultrafast key-int-max=25 ! h264parse ! mux. \
         filesrc location={} ! wavparse ! audioconvert ! audioresample ! avenc_aac ! aacparse ! mux.",
        clip.display(),
        wav.display()
    );
    let ok = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .status()
        .unwrap();
    assert!(ok.success());
    let out = Command::new(common::bin())
        .args(["scan", "--json"])
        .arg(&clip)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    println!("{v:#}");
    let cat = v["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "self_harm")
        .unwrap_or_else(|| panic!("no self_harm category: {v}"));
    assert_ne!(cat["decision"], "allow", "{cat}");
    let e = cat["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "transcript")
        .unwrap_or_else(|| panic!("no transcript evidence: {cat}"));
    let (start, end) = (e["start_s"].as_f64().unwrap(), e["end_s"].as_f64().unwrap());
    assert!(end > start && end <= 4.5, "segment times {start}–{end}");
    let detail = e["detail"].as_str().unwrap().to_lowercase();
    assert!(detail.contains("kill myself"), "{detail}");
    let rationale = v["rationale"].as_str().unwrap();
    assert!(rationale.contains("speech at "), "{rationale}");
    assert_eq!(v["audiences"]["public_feed"], "block", "{v}");
}

/// A test photograph out of the cached `test-photos-white-house` package (fetched once).
fn white_house_photo(name: &str) -> image::RgbImage {
    let manifest = clipguard_models::Manifest::load_default().unwrap();
    let entry = manifest.get("test-photos-white-house").unwrap();
    let cache = clipguard_models::Cache::default();
    cache.fetch(entry, &mut |l| eprintln!("{l}")).unwrap();
    let mut archive = clipguard_models::pypi::Archive::Tarball(
        std::fs::read(cache.verified_path(entry).unwrap()).unwrap(),
    );
    let mut bytes = Vec::new();
    let member = format!("face_recognition-1.3.0/tests/test_images/{name}");
    clipguard_models::pypi::extract_member(&mut archive, &member, &mut bytes).unwrap();
    image::load_from_memory(&bytes).unwrap().to_rgb8()
}

/// A 3 s clip of a moving test pattern with `face` (a PNG) composited onto it by GStreamer.
fn clip_with_face(face: &std::path::Path, out: &std::path::Path) {
    let pipeline = format!(
        "videotestsrc pattern=ball num-buffers=75 ! video/x-raw,width=640,height=360,framerate=25/1 \
         ! gdkpixbufoverlay location={} offset-x=200 offset-y=60 overlay-width=240 overlay-height=240 \
         ! videoconvert ! video/x-raw,format=I420 ! x264enc speed-preset=ultrafast key-int-max=25 \
         ! h264parse ! mp4mux faststart=true ! filesink location={}",
        face.display(),
        out.display()
    );
    let ok = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .status()
        .unwrap();
    assert!(ok.success(), "gst-launch-1.0 {pipeline}");
}

/// `clipguard scan --json` of one clip with the likeness registry `dir` in force.
fn scan_with_registry(
    dir: &std::path::Path,
    clip: &std::path::Path,
    extra: &[&str],
) -> serde_json::Value {
    scan_json_with(clip, Some(dir), extra)
}

fn likeness_category(v: &serde_json::Value) -> Option<&serde_json::Value> {
    v["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "likeness_without_consent")
}

/// Likeness through the pipeline: person A enrolled from one official photograph
/// (`clipguard likeness enroll`); a clip with A's face from another photograph composited into
/// it is allowed when the clip's context lists A as consented, and `likeness_without_consent`
/// (time, box, distance) when it does not; a clip of someone else matches nobody; after
/// `clipguard likeness revoke` A is nobody.
#[test]
fn an_enrolled_face_in_a_clip_needs_consent() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("likeness");
    let likeness = |args: &[&str]| {
        Command::new(common::bin())
            .arg("likeness")
            .arg("--dir")
            .arg(&registry)
            .args(args)
            .output()
            .unwrap()
    };
    // Enrollment refuses a photo without exactly one face, naming it.
    let blank = dir.path().join("blank.png");
    image::RgbImage::from_pixel(320, 240, image::Rgb([90, 120, 150]))
        .save(&blank)
        .unwrap();
    let out = likeness(&["enroll", "--id", "person-a", blank.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("0 faces found"),
        "{err}"
    );
    let portrait = dir.path().join("a-portrait.jpg");
    white_house_photo("obama.jpg").save(&portrait).unwrap();
    let out = likeness(&["enroll", "--id", "person-a", portrait.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = likeness(&["list", "--json"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("\"id\":\"person-a\"") && listed.contains("\"photos\":1"),
        "{listed}"
    );

    // Faces cut (with a margin) from other photographs, composited into clips.
    let cut = |photo: &str, (x, y, side): (u32, u32, u32), name: &str| {
        let img = white_house_photo(photo);
        let face = image::imageops::crop_imm(&img, x, y, side, side).to_image();
        let path = dir.path().join(format!("{name}.png"));
        face.save(&path).unwrap();
        let clip = dir.path().join(format!("{name}.mp4"));
        clip_with_face(&path, &clip);
        clip
    };
    let a_clip = cut("obama2.jpg", (64, 183, 480), "a");
    let other_clip = cut("biden.jpg", (291, 113, 576), "someone-else");

    // A registry folder that is not there (a wrong path, a volume not mounted) stops the
    // pipeline at start instead of matching every face against nobody.
    let out = Command::new(common::bin())
        .env(
            "CLIPGUARD_CLASSIFY__LIKENESS_DIR",
            dir.path().join("not-mounted"),
        )
        .args(["scan", "--json"])
        .arg(&a_clip)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no such folder"),
        "{err}"
    );

    let v = scan_with_registry(&registry, &a_clip, &["--consent", "person-a"]);
    println!("consented: {v:#}");
    assert_eq!(v["decision"], "allow", "{v}");
    let cat = likeness_category(&v).unwrap_or_else(|| panic!("no likeness category: {v}"));
    let e = &cat["evidence"][0];
    assert_eq!(e["kind"], "face", "{cat}");
    assert!(
        e["detail"].as_str().unwrap().contains("consent holds"),
        "{cat}"
    );

    let v = scan_with_registry(&registry, &a_clip, &[]);
    println!("not consented: {v:#}");
    assert_eq!(v["audiences"]["public_feed"], "block", "{v}");
    let cat = likeness_category(&v).unwrap_or_else(|| panic!("no likeness category: {v}"));
    assert_ne!(cat["decision"], "allow", "{cat}");
    let e = &cat["evidence"][0];
    let detail = e["detail"].as_str().unwrap();
    assert!(
        e["kind"] == "face" && detail.contains("person-a") && detail.contains("distance"),
        "{cat}"
    );
    assert!(e["end_s"].as_f64().unwrap() > 0.0, "frame times: {e}");
    assert!(
        v["reasons"]
            .to_string()
            .contains("likeness_without_consent"),
        "{v}"
    );

    let v = scan_with_registry(&registry, &other_clip, &[]);
    assert_eq!(v["decision"], "allow", "someone else: {v}");
    assert!(likeness_category(&v).is_none(), "someone else matched: {v}");

    let out = likeness(&["revoke", "--id", "person-a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = scan_with_registry(&registry, &a_clip, &[]);
    assert_eq!(v["decision"], "allow", "after revoking: {v}");
}

/// Signs `clip` with a C2PA manifest (a throw-away certificate chain: the crate's ephemeral
/// signer) saying it was created by a generative model, as a generator would.
fn sign_clip(clip: &std::path::Path, out: &std::path::Path) {
    let signer = c2pa::EphemeralSigner::new("clipguard-test-generator").unwrap();
    sign_as_generator(clip, out, &signer);
}

/// `clip` signed by `signer` as the test generator: created by a generative model.
fn sign_as_generator(clip: &std::path::Path, out: &std::path::Path, signer: &dyn c2pa::Signer) {
    // No thumbnail in the manifest (the crate is built without its image codecs).
    let context = c2pa::Context::new()
        .with_settings(r#"{"builder": {"thumbnail": {"enabled": false}}}"#)
        .unwrap();
    let mut builder = c2pa::Builder::from_context(context)
        .with_definition(
            serde_json::json!({
                "title": "generated.mp4",
                "claim_generator_info": [{"name": "clipguard-test-generator", "version": "1.0"}],
            })
            .to_string(),
        )
        .unwrap();
    builder.set_intent(c2pa::BuilderIntent::Create(
        c2pa::DigitalSourceType::TrainedAlgorithmicMedia,
    ));
    let mut source = std::io::Cursor::new(std::fs::read(clip).unwrap());
    let mut signed = std::io::Cursor::new(Vec::new());
    builder
        .sign(signer, "video/mp4", &mut source, &mut signed)
        .unwrap();
    std::fs::write(out, signed.into_inner()).unwrap();
}

fn scan_json(clip: &std::path::Path) -> serde_json::Value {
    scan_json_with(clip, None, &[])
}

/// `clipguard scan --json` of one clip: the verdict, after checking the command succeeded.
fn scan_json_with(
    clip: &std::path::Path,
    likeness_dir: Option<&std::path::Path>,
    extra: &[&str],
) -> serde_json::Value {
    let mut command = Command::new(common::bin());
    if let Some(dir) = likeness_dir {
        command.env("CLIPGUARD_CLASSIFY__LIKENESS_DIR", dir);
    }
    let out = command
        .args(["scan", "--json"])
        .args(extra)
        .arg(clip)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).unwrap()
}

/// C2PA through the pipeline: a clip signed in the test (created by a generative model) is
/// `present` with its claim generator and action in the verdict's `provenance`; the same clip
/// with one byte of its media changed is `invalid` with the validation error, and
/// `provenance_invalid` sends it to review for the public feed; the unsigned clip is `absent`.
#[test]
fn c2pa_provenance_is_read_and_validated_into_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.mp4");
    let pipeline = format!(
        "videotestsrc pattern=ball num-buffers=50 ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! videoconvert ! video/x-raw,format=I420 ! x264enc speed-preset=ultrafast key-int-max=25 \
         ! h264parse ! mp4mux faststart=true ! filesink location={}",
        plain.display()
    );
    let ok = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .status()
        .unwrap();
    assert!(ok.success());
    let signed = dir.path().join("signed.mp4");
    sign_clip(&plain, &signed);

    let v = scan_json(&signed);
    let p = &v["provenance"];
    println!("signed: {p:#}");
    assert_eq!(p["state"], "present", "{v}");
    assert_eq!(p["claim_generator"], "clipguard-test-generator/1.0", "{p}");
    assert!(
        p["actions"]
            .to_string()
            .contains("c2pa.created trainedAlgorithmicMedia"),
        "{p}"
    );
    assert_eq!(v["decision"], "allow", "{v}");

    // One byte of the media data changed: the hard binding no longer holds.
    let mut bytes = std::fs::read(&signed).unwrap();
    let mdat = bytes.windows(4).rposition(|w| w == b"mdat").unwrap();
    let at = mdat + 4 + (bytes.len() - mdat - 4) / 2;
    bytes[at] ^= 0x01;
    let tampered = dir.path().join("tampered.mp4");
    std::fs::write(&tampered, &bytes).unwrap();
    let v = scan_json(&tampered);
    let p = &v["provenance"];
    println!("tampered: {p:#}");
    assert_eq!(p["state"], "invalid", "{v}");
    let errors = p["validation_errors"].to_string();
    assert!(errors.contains("mismatch"), "{errors}");
    assert_eq!(v["audiences"]["public_feed"], "review", "{v}");
    assert!(
        v["reasons"].to_string().contains("provenance_invalid"),
        "{v}"
    );

    let v = scan_json(&plain);
    assert_eq!(v["provenance"]["state"], "absent", "{v}");
}

/// A C2PA signing chain made with `openssl` as a generator or an operator would: an ES256 CA
/// and an end-entity certificate for document signing under it, files named after `who`.
/// Returns (chain, key, CA) paths.
fn signing_chain(
    dir: &std::path::Path,
    who: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let f = |suffix: &str| format!("{who}-{suffix}");
    let key_of = |name: &str| {
        vec![
            "genpkey".to_string(),
            "-algorithm".into(),
            "EC".into(),
            "-pkeyopt".into(),
            "ec_paramgen_curve:P-256".into(),
            "-out".into(),
            name.to_string(),
        ]
    };
    run(&key_of(&f("ca.key"))
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let subject = format!("/CN=clipguard test {who} CA/O=clipguard tests");
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &f("ca.key"),
        "-sha256",
        "-days",
        "30",
        "-subj",
        &subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
        "-out",
        &f("ca.pem"),
    ]);
    run(&key_of(&f("signer.key"))
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let subject = format!("/CN=clipguard test {who} signer/O=clipguard tests");
    run(&[
        "req",
        "-new",
        "-key",
        &f("signer.key"),
        "-subj",
        &subject,
        "-out",
        &f("signer.csr"),
    ]);
    std::fs::write(
        dir.join(f("signer.ext")),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=emailProtection\nsubjectKeyIdentifier=hash\n\
         authorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &f("signer.csr"),
        "-CA",
        &f("ca.pem"),
        "-CAkey",
        &f("ca.key"),
        "-CAcreateserial",
        "-sha256",
        "-days",
        "30",
        "-extfile",
        &f("signer.ext"),
        "-out",
        &f("signer.pem"),
    ]);
    let chain = [
        std::fs::read_to_string(dir.join(f("signer.pem"))).unwrap(),
        std::fs::read_to_string(dir.join(f("ca.pem"))).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join(f("chain.pem")), chain).unwrap();
    (
        dir.join(f("chain.pem")),
        dir.join(f("signer.key")),
        dir.join(f("ca.pem")),
    )
}

/// Signs `clip` as the test generator with the chain and key given (see [`sign_clip`]).
fn sign_clip_with(
    clip: &std::path::Path,
    out: &std::path::Path,
    chain: &std::path::Path,
    key: &std::path::Path,
) {
    let signer = c2pa::create_signer::from_keys(
        &std::fs::read(chain).unwrap(),
        &std::fs::read(key).unwrap(),
        c2pa::SigningAlg::Es256,
        None,
    )
    .unwrap();
    sign_as_generator(clip, out, signer.as_ref());
}

fn gst_launch(pipeline: &str) {
    let ok = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .status()
        .unwrap();
    assert!(ok.success(), "{pipeline}");
}

/// `clipguard` with the given environment; (stdout, exit code).
fn clipguard_env(env: &[(&str, &std::path::Path)], args: &[&str]) -> (String, i32) {
    let mut command = Command::new(common::bin());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command
        .args(args)
        .env("CLIPGUARD_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "clipguard {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (text, code)
}

/// Luma of every frame the media stage samples (1 a second), at full size, by time in ms.
fn frames_by_time(path: &std::path::Path) -> Vec<(i64, image::GrayImage)> {
    let settings = clipguard_media::MediaConfig {
        sample_fps: 1.0,
        scene_cut_threshold: 0.0,
        thumbnail_short_side: 10_000,
        jpeg_quality: 95,
        pdq: false,
        extract_audio: false,
        ..Default::default()
    };
    clipguard_media::decode::init().unwrap();
    let decoded = clipguard_media::decode::decode_file(path, &settings).unwrap();
    decoded
        .frames
        .iter()
        .map(|f| {
            let img = image::load_from_memory(&f.jpeg).unwrap().to_luma8();
            ((f.timestamp_s * 1000.0).round() as i64, img)
        })
        .collect()
}

/// Mean absolute luma difference of two frames inside `r` and outside it.
fn difference(
    a: &image::GrayImage,
    b: &image::GrayImage,
    r: clipguard_release::watermark::Rect,
) -> (f64, f64) {
    let (mut inside, mut n_in, mut outside, mut n_out) = (0.0, 0.0, 0.0, 0.0);
    for (x, y, pa) in a.enumerate_pixels() {
        let d = (pa.0[0] as f64 - b.get_pixel(x, y).0[0] as f64).abs();
        if x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height {
            inside += d;
            n_in += 1.0;
        } else {
            outside += d;
            n_out += 1.0;
        }
    }
    (inside / n_in, outside / n_out)
}

/// Issue 21, Builds 1–3 through the binary: a policy that requires a valid manifest from the
/// expected generator on the download surface; the release stage making the outgoing rendition
/// of the allowed clip (a moving watermark visible at three times, a manifest signed with an
/// operator certificate that the crate validates, with clipguard's assertion and the original,
/// its own manifest inside, as ingredient); and `provenance lookup` finding the allowed clip
/// after it was re-encoded at a lower bitrate and half the size, and not an unrelated clip.
#[test]
fn an_allowed_download_leaves_watermarked_signed_and_is_known_as_made_here() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    gst_launch(&format!(
        "mp4mux name=mux faststart=true ! filesink location={}/plain.mp4 \
         videotestsrc pattern=smpte horizontal-speed=3 num-buffers=100 \
         ! video/x-raw,width=320,height=240,framerate=25/1,format=I420 \
         ! x264enc speed-preset=ultrafast key-int-max=25 ! h264parse ! mux. \
         audiotestsrc num-buffers=190 ! audio/x-raw,rate=48000,channels=1 ! audioconvert \
         ! avenc_aac ! mux.",
        d.display()
    ));
    // The generator signs with a chain the media stage trusts; the operator signs renditions
    // with its own.
    let (gen_chain, gen_key, gen_ca) = signing_chain(d, "generator");
    let signed = d.join("generated.mp4");
    sign_clip_with(&d.join("plain.mp4"), &signed, &gen_chain, &gen_key);
    let self_signed = d.join("self-signed.mp4");
    sign_clip(&d.join("plain.mp4"), &self_signed);
    let (chain, key, _) = signing_chain(d, "operator");
    let policy = clipguard_policy::DEFAULT_POLICY.replace(
        "expected_generators = []",
        "expected_generators = [\"clipguard-test-generator\"]",
    );
    assert_ne!(policy, clipguard_policy::DEFAULT_POLICY);
    std::fs::write(d.join("policy.toml"), policy).unwrap();
    let (store, index) = (d.join("store"), d.join("index"));
    let env: Vec<(&str, &std::path::Path)> = vec![
        ("CLIPGUARD_STORE__URL", &store),
        (
            "CLIPGUARD_POLICY__FILE",
            std::path::Path::new("policy.toml"),
        ),
        ("CLIPGUARD_RELEASE__SIGNING_CERT", &chain),
        ("CLIPGUARD_RELEASE__SIGNING_KEY", &key),
        ("CLIPGUARD_RELEASE__INDEX_DIR", &index),
        ("CLIPGUARD_MEDIA__C2PA_TRUST_ANCHORS", &gen_ca),
    ];
    let env: Vec<(&str, std::path::PathBuf)> = env
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                if v.is_relative() {
                    d.join(v)
                } else {
                    v.to_path_buf()
                },
            )
        })
        .collect();
    let env: Vec<(&str, &std::path::Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let download = [
        "scan",
        "--json",
        "--age-band",
        "adult",
        "--surface",
        "download",
    ];

    // The signed clip: allowed, rendered, signed, indexed.
    let (text, _) = clipguard_env(&env, &[&download[..], &[signed.to_str().unwrap()]].concat());
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    println!("verdict: {v:#}");
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["provenance"]["trusted"], true, "{v}");
    assert_eq!(v["surface"], "download", "{v}");
    let r = &v["rendition"];
    assert_eq!(r["unavailable"], "", "{r}");
    assert_eq!(r["ingredient_provenance"], "present", "{r}");
    let uri = r["media"]["uri"].as_str().unwrap();
    let rendition_path = std::path::PathBuf::from(uri.strip_prefix("file://").unwrap());
    let rendition = std::fs::read(&rendition_path).unwrap();
    assert_eq!(r["media"]["size_bytes"], rendition.len());

    // The crate validates the manifest: clipguard's assertion, the original as parent
    // ingredient carrying the generator's own manifest.
    let context = c2pa::Context::new()
        .with_settings(r#"{"verify": {"remote_manifest_fetch": false, "ocsp_fetch": false}}"#)
        .unwrap();
    let reader = c2pa::Reader::from_context(context)
        .with_stream("video/mp4", std::io::Cursor::new(&rendition))
        .unwrap();
    println!(
        "validation: {:?} {:?}",
        reader.validation_state(),
        reader.validation_status()
    );
    assert_ne!(
        reader.validation_state(),
        c2pa::validation_results::ValidationState::Invalid
    );
    let manifest = reader.active_manifest().unwrap();
    assert_eq!(
        reader.active_label(),
        Some(r["manifest_label"].as_str().unwrap())
    );
    let moderation: serde_json::Value = manifest
        .find_assertion(clipguard_release::sign::MODERATION_LABEL)
        .unwrap();
    println!("assertion: {moderation:#}");
    assert_eq!(moderation["clip_id"], v["clip_id"]);
    assert_eq!(moderation["decision"], "allow");
    assert_eq!(moderation["surface"], "download");
    assert_eq!(moderation["policy_version"], v["policy_version"]);
    let ingredients = manifest.ingredients();
    assert_eq!(ingredients.len(), 1, "{ingredients:?}");
    assert_eq!(*ingredients[0].relationship(), c2pa::Relationship::ParentOf);
    let parent = ingredients[0].active_manifest().unwrap();
    let parent = reader.get_manifest(parent).unwrap();
    assert!(
        parent
            .claim_generator_info
            .as_ref()
            .is_some_and(|g| g.iter().any(|i| i.name == "clipguard-test-generator")),
        "{parent:?}"
    );
    // What the media stage reads from the rendition: present, clipguard's, signed by the
    // operator's certificate.
    let read = clipguard_media::provenance::read(&rendition);
    assert_eq!(read.state, "present", "{read:?}");
    assert!(read.claim_generator.starts_with("clipguard/"), "{read:?}");

    // The watermark: where the mark is at each sampled time, the rendition differs from the
    // original far more than elsewhere, and the mark is somewhere else each time.
    let mark = {
        let png = clipguard_release::watermark::builtin_png().unwrap();
        let cfg = clipguard_release::ReleaseConfig::default();
        clipguard_release::watermark::Watermark {
            image: std::path::PathBuf::new(),
            image_size: image::load_from_memory(&png)
                .unwrap()
                .to_rgba8()
                .dimensions(),
            width_fraction: cfg.watermark_width,
            alpha: cfg.watermark_alpha,
            crossing_s: cfg.watermark_crossing_s,
            description: String::new(),
        }
    };
    let original = frames_by_time(&signed);
    let rendered = frames_by_time(&rendition_path);
    let mut boxes = Vec::new();
    for (t, a) in &original {
        let Some((_, b)) = rendered.iter().find(|(tb, _)| (tb - t).abs() <= 20) else {
            continue;
        };
        let r = mark.at(*t as f64 / 1000.0, a.width(), a.height());
        let (inside, outside) = difference(a, b, r);
        println!(
            "t {t} ms: mark at {r:?}: luma difference {inside:.1} inside, {outside:.1} outside"
        );
        assert!(
            inside > 12.0 && inside > 3.0 * outside,
            "t {t}: {inside} vs {outside}"
        );
        boxes.push(r);
    }
    assert!(boxes.len() >= 3, "{boxes:?}");
    assert!(
        boxes[0] != boxes[1] && boxes[1] != boxes[2] && boxes[0] != boxes[2],
        "{boxes:?}"
    );

    // The unsigned clip on the download surface: no manifest from the expected generator →
    // review, and the rendition record says why there is none.
    let (text, _) = clipguard_env(
        &env,
        &[&download[..], &[d.join("plain.mp4").to_str().unwrap()]].concat(),
    );
    let u: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(u["audiences"]["adult"], "review", "{u}");
    assert!(
        u["reasons"].to_string().contains("provenance_unverified"),
        "{u}"
    );
    assert!(
        u["rendition"]["unavailable"]
            .as_str()
            .unwrap()
            .contains("does not allow"),
        "{u}"
    );
    assert!(u["rendition"]["media"].is_null(), "{u}");

    // Signed as the expected generator, but by anyone (a chain no trust anchor vouches for):
    // not what the policy requires.
    let (text, _) = clipguard_env(
        &env,
        &[&download[..], &[self_signed.to_str().unwrap()]].concat(),
    );
    let s: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(s["provenance"]["state"], "present", "{s}");
    assert_eq!(s["audiences"]["adult"], "review", "{s}");
    assert!(s.to_string().contains("chains to no trust anchor"), "{s}");

    // "Made by us?": a real clip (the vPDQ conformance footage, large enough to travel by claim
    // check) allowed on the feed, then re-encoded at a low bitrate and half its size, is found;
    // an unrelated clip is not. (Synthetic test patterns are no good here: a rescaled colour-bar
    // frame moves its PDQ by 30–40 bits.)
    let Some(conformance) = clipguard_testdata::conformance_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/conformance/threatexchange"),
        "vpdq/videos/chair-22-sd-grey-bar.mp4",
    ) else {
        return;
    };
    let videos = conformance.join("vpdq/videos");
    let chair = videos.join("chair-22-sd-grey-bar.mp4");
    let (text, _) = clipguard_env(&env, &["scan", "--json", chair.to_str().unwrap()]);
    let c: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(c["decision"], "allow", "{c}");
    assert!(
        c["rendition"].is_null(),
        "no rendition off the download surface: {c}"
    );
    gst_launch(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! videoscale \
         ! video/x-raw,width=160,height=120 ! x264enc speed-preset=ultrafast bitrate=150 \
         ! h264parse ! mp4mux ! filesink location={}/copy.mp4",
        chair.display(),
        d.display()
    ));
    let lookup = |file: &str| {
        let (text, code) = clipguard_env(
            &env,
            &[
                "provenance",
                "lookup",
                "--json",
                d.join(file).to_str().unwrap(),
            ],
        );
        let j: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        println!("lookup {file}: {j}");
        (j, code)
    };
    let (copy, code) = lookup("copy.mp4");
    assert_eq!(
        (copy["made_here"].as_bool(), code),
        (Some(true), 0),
        "{copy}"
    );
    assert_eq!(copy["matches"][0]["clip_id"], c["clip_id"], "{copy}");
    assert_eq!(copy["indexed_clips"], 2, "the two allowed clips: {copy}");
    let (downloaded, _) = lookup(rendition_path.to_str().unwrap());
    println!("the watermarked rendition of the test pattern: {downloaded}");
    let (other, code) = lookup(videos.join("doorknob-hd-no-bar.mp4").to_str().unwrap());
    assert_eq!(
        (other["made_here"].as_bool(), code),
        (Some(false), 1),
        "{other}"
    );
}

/// Issue 22's first step over real processes: a review worker on a real broker opens a case
/// for a `review` verdict (and none for an `allow`), a reviewer claims and decides it with
/// `clipguard cases`, and the decision comes out as the clip's next verdict revision on
/// `clips.verdicts` (engine `review:alice`) and an enforcement record on `clips.enforcement`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewers_decision_becomes_the_next_verdict_revision_and_an_enforcement_record() {
    let _turn = SERIAL.lock().await;
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topics(1);
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("review.db").display());
    let env = vec![
        ("CLIPGUARD_REVIEW__DATABASE_URL", db.clone()),
        ("CLIPGUARD_REVIEW__PUBLISH_INTERVAL_S", "0.2".to_string()),
        ("CLIPGUARD_KAFKA__CREATE_TOPICS", "false".to_string()),
    ];
    let mut worker = Proc::spawn(
        "review",
        &["stage", "review", "--brokers", &broker.addr],
        &env,
    );
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    let review = Decision::Review as i32;
    let allow = Decision::Allow as i32;
    let needs = Verdict {
        clip_id: "clip-to-review".into(),
        decision: review,
        audiences: Some(clipguard_schemas::AudienceDecisions {
            adult: allow,
            under_18: review,
            public_feed: review,
        }),
        audience: "public_feed".into(),
        engine: "policy".into(),
        reasons: vec!["category:violence_gore".into()],
        rationale: "review under_18, public_feed — violence_gore scored 0.71".into(),
        ..Default::default()
    };
    let fine = Verdict {
        clip_id: "clip-fine".into(),
        decision: allow,
        audiences: Some(clipguard_schemas::AudienceDecisions {
            adult: allow,
            under_18: allow,
            public_feed: allow,
        }),
        ..Default::default()
    };
    for v in [&fine, &needs] {
        producer
            .send(
                FutureRecord::to("clips.verdicts")
                    .key(&v.clip_id)
                    .payload(&prost::Message::encode_to_vec(v)),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let cases = |args: &[&str]| common::cases(&db, args);
    let until = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let (ok, text, err) = cases(&["list"]);
        assert!(ok, "{err}");
        if !text.trim().is_empty() || Instant::now() > until {
            break text;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let open: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        open.len(),
        1,
        "one case, for the review verdict only: {listed}"
    );
    assert_eq!(open[0]["clip_id"], "clip-to-review");
    assert_eq!(open[0]["queue"]["category"], "violence_gore");
    let (ok, queues, err) = cases(&["queues"]);
    assert!(ok && queues.contains("\"open\":1"), "{queues}{err}");

    // Claims and decisions are made by reviewer accounts.
    let (ok, _, err) = cases(&["claim", "--reviewer", "alice"]);
    assert!(!ok && err.contains("no account `alice`"), "{err}");
    common::add_account(&db, "alice", "reviewer", "alice's long password");

    // Deciding without a claim is refused; claimed, it goes through.
    let id = open[0]["id"].to_string();
    let (ok, _, err) = cases(&[
        "decide",
        &id,
        "--reviewer",
        "alice",
        "--all",
        "block",
        "--reason",
        "gore",
    ]);
    assert!(!ok && err.contains("claim it first"), "{err}");
    let (ok, claimed, err) = cases(&["claim", "--reviewer", "alice"]);
    assert!(ok, "{err}");
    assert!(claimed.contains("\"reviewer\":\"alice\""), "{claimed}");
    let (ok, decided, err) = cases(&[
        "decide",
        &id,
        "--reviewer",
        "alice",
        "--adult",
        "allow",
        "--under-18",
        "block",
        "--public-feed",
        "block",
        "--reason",
        "graphic injury, not news",
    ]);
    assert!(ok, "{err}");
    println!("decided: {decided}");

    let verdicts = TopicReader::new(&broker.addr, "clips.verdicts", 1);
    let enforcement = TopicReader::new(&broker.addr, "clips.enforcement", 1);
    let until = Instant::now() + Duration::from_secs(60);
    let (mut revised, mut enforced) = (None, None);
    while (revised.is_none() || enforced.is_none()) && Instant::now() < until {
        for (_, payload) in verdicts.poll(Duration::from_millis(300)) {
            let v: Verdict = prost::Message::decode(payload.as_slice()).unwrap();
            if v.engine == "review:alice" {
                revised = Some(v);
            }
        }
        for (key, payload) in enforcement.poll(Duration::from_millis(300)) {
            let e: clipguard_schemas::Enforcement =
                prost::Message::decode(payload.as_slice()).unwrap();
            assert_eq!(key, e.clip_id);
            enforced = Some(e);
        }
    }
    let v = revised.expect("the reviewer's verdict revision on clips.verdicts");
    let e = enforced.expect("an enforcement record on clips.enforcement");
    println!(
        "revision: {} {:?} — {}",
        v.revision, v.audiences, v.rationale
    );
    assert_eq!((v.clip_id.as_str(), v.revision), ("clip-to-review", 1));
    assert_eq!(v.decision, Decision::Block as i32);
    let a = v.audiences.unwrap();
    assert_eq!(
        (a.adult, a.under_18, a.public_feed),
        (allow, Decision::Block as i32, Decision::Block as i32)
    );
    assert!(
        v.rationale.contains("graphic injury, not news"),
        "{}",
        v.rationale
    );
    assert_eq!(
        (e.clip_id.as_str(), e.verdict_revision, e.engine.as_str()),
        ("clip-to-review", 1, "review:alice")
    );
    assert_eq!(e.reason, "graphic injury, not news");

    // The audit trail says who did what; the reviewer's own revision opened no new case.
    let (ok, shown, err) = cases(&["show", &id]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(shown.trim()).unwrap();
    let actions: Vec<&str> = shown["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["open", "claim", "decide"], "{shown}");
    let (_, listed, _) = cases(&["list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    worker.sigterm();
}
