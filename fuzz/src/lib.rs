//! Fuzz targets: each takes arbitrary bytes and drives one of clipguard's parsers or stage inputs
//! the way production does, with no `catch_unwind` between them and the fuzzer, so a panic, an
//! abort, a hang or a runaway allocation is a finding. A target returns normally on every input
//! the code under test handles (an error value included).
//!
//! `scripts/fuzz.sh` runs each under libFuzzer for a bounded time (`src/bin/fuzz.rs`, built with
//! coverage instrumentation on the stable toolchain); `tests/regressions.rs` runs every target on
//! the seeds of [`seeds`] and on each input in `fuzz/regressions/TARGET/` (the findings, kept once
//! fixed) in the ordinary test suite.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use clipguard_hashmatch::bank::{Action, BankMeta, BankStore, Contents};
use clipguard_hashmatch::stage::{HashmatchConfig, HashmatchStage};
use clipguard_pdq::PdqHash;
use clipguard_pdq::vpdq::{self, FrameHash, MatchParams};
use clipguard_pipeline::config::Validate;
use clipguard_pipeline::graph::{self, Node};
use clipguard_pipeline::stage::NoEmitter;
use clipguard_pipeline::{Outputs, ProcessCtx, Stage};
use clipguard_policy::{Audience, Policy};
use clipguard_schemas::{ClipSubmitted, MediaExtract, MediaRef, Signal, Verdict, media_ref};
use prost::Message;
use serde::Deserialize;

/// A fuzz target: what it is called and the function that takes one input.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub what: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    Target {
        name: "clip_submitted",
        what: "the media stage's input message (clips.submitted), decoded and processed",
        run: clip_submitted,
    },
    Target {
        name: "media_probe",
        what: "arbitrary bytes as a clip's media through the media stage (GStreamer probing)",
        run: media_probe,
    },
    Target {
        name: "media_extract",
        what: "the hashmatch stage's input message (clips.media) against loaded banks",
        run: media_extract,
    },
    Target {
        name: "monitor_signals",
        what: "signals (clips.signals, length-delimited) fused into a verdict and its JSON; a \
               state-topic verdict restored",
        run: monitor_signals,
    },
    Target {
        name: "vpdq_text",
        what: "the vPDQ per-frame text format: parse, format, parse again, compare",
        run: vpdq_text,
    },
    Target {
        name: "bank_import",
        what: "hash lists (CSV / TSV) and vPDQ files imported into a bank, written and loaded",
        run: bank_import,
    },
    Target {
        name: "bank_files",
        what: "a bank's files on disk (bank.toml, pdq.idx, pdq.ids, videos, files) damaged",
        run: bank_files,
    },
    Target {
        name: "policy",
        what: "a policy file parsed, then deciding scores for every audience",
        run: policy,
    },
    Target {
        name: "config",
        what: "a config file with CLIPGUARD_* overrides (the loader and every section's checks)",
        run: config,
    },
    Target {
        name: "manifest",
        what: "the model manifest",
        run: manifest,
    },
    Target {
        name: "c2pa_manifest",
        what: "a clip's C2PA manifest store read and validated (the media stage's provenance)",
        run: c2pa_manifest,
    },
    Target {
        name: "ct2_ggml",
        what: "the CTranslate2 model reader and the GGML whisper reader",
        run: ct2_ggml,
    },
];

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// One runtime for the async stage entry points (a current-thread runtime, as cheap to enter
/// as the targets need).
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
    .block_on(fut)
}

/// What the Kafka host would tell a stage of `node` about an input of `clip_id`.
fn ctx(node: Node, clip_id: &str) -> ProcessCtx {
    ProcessCtx {
        clip_id: clip_id.to_string(),
        topic: node.consumes,
        attempt: 1,
        trace: clipguard_pipeline::trace::TraceContext::new_root(),
        emitter: Arc::new(NoEmitter),
    }
}

/// A folder for the whole process (fuzzing runs millions of inputs in one; a `static` is never
/// dropped, so a fixed folder, emptied at start, instead of a new temporary one per run).
fn scratch() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("clipguard-fuzz-scratch");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        dir
    })
}

// --- the media stage --------------------------------------------------------------------------

fn media_stage() -> &'static clipguard_media::MediaStage {
    static STAGE: OnceLock<clipguard_media::MediaStage> = OnceLock::new();
    STAGE.get_or_init(|| {
        let store_dir = scratch().join("store");
        std::fs::create_dir_all(&store_dir).expect("store folder");
        // A file the store holds, so a URI can point at something real.
        std::fs::write(store_dir.join("inside.bin"), b"not a video").expect("store file");
        let store =
            clipguard_pipeline::store::MediaStore::open(&clipguard_pipeline::store::StoreConfig {
                url: store_dir.display().to_string(),
                ..Default::default()
            })
            .expect("media store");
        let config = clipguard_media::MediaConfig {
            // Bounded per input: a fuzzer's hang budget is seconds.
            deadline_s: 5.0,
            stall_timeout_s: 2.0,
            ..Default::default()
        };
        clipguard_media::MediaStage::new(config, store).expect("media stage")
    })
}

fn run_media(clip: ClipSubmitted) {
    let stage = media_stage();
    let id = clip.clip_id.clone();
    if let Ok(out) = block_on(stage.process(clip, &ctx(graph::MEDIA, &id))) {
        let _ = out.into_records();
    }
}

pub fn clip_submitted(data: &[u8]) {
    if let Ok(clip) = ClipSubmitted::decode(data) {
        run_media(clip);
    }
}

pub fn media_probe(data: &[u8]) {
    run_media(ClipSubmitted {
        clip_id: "fuzz".into(),
        media: Some(MediaRef {
            location: Some(media_ref::Location::Inline(data.to_vec())),
            ..Default::default()
        }),
        ..Default::default()
    });
}

// --- hashmatch ----------------------------------------------------------------------------------

fn hash(seed: u8) -> PdqHash {
    let mut h = [0u8; 32];
    for (i, b) in h.iter_mut().enumerate() {
        *b = seed
            .wrapping_mul(31)
            .wrapping_add(i as u8)
            .rotate_left(u32::from(seed % 7));
    }
    PdqHash(h)
}

fn frames(seed: u8, n: usize) -> Vec<FrameHash> {
    (0..n)
        .map(|i| FrameHash {
            frame: i as u64,
            hash: hash(seed.wrapping_add(i as u8)),
            quality: 100,
            timestamp_s: i as f64,
        })
        .collect()
}

/// A bank with image hashes, a video and file digests: what `media_extract` matches against.
fn sample_contents() -> Contents {
    let mut c = Contents::default();
    for i in 0..8u8 {
        c.pdq.push((hash(i), format!("img-{i}")));
    }
    c.videos.push(("video-1".into(), frames(40, 6)));
    c.files.insert(
        (clipguard_hashmatch::bank::FileKind::Md5, "0".repeat(32)),
        "file-1".into(),
    );
    c
}

fn hashmatch_stage() -> &'static HashmatchStage {
    static STAGE: OnceLock<HashmatchStage> = OnceLock::new();
    STAGE.get_or_init(|| {
        let dir = scratch().join("banks");
        let store = BankStore::new(&dir);
        let meta = BankMeta::new("known", "violence_gore", Action::Block);
        store.write(&meta, &sample_contents()).expect("write bank");
        HashmatchStage::new(HashmatchConfig {
            banks_dir: dir,
            ..Default::default()
        })
        .expect("hashmatch stage")
    })
}

pub fn media_extract(data: &[u8]) {
    let Ok(extract) = MediaExtract::decode(data) else {
        return;
    };
    let stage = hashmatch_stage();
    let signal = stage.match_extract(&extract);
    let _ = signal.encode_to_vec();
    let id = extract.clip_id.clone();
    if let Ok(records) = block_on(stage.process(extract, &ctx(graph::HASHMATCH, &id))) {
        let _ = records.into_records();
    }
}

// --- monitor ------------------------------------------------------------------------------------

pub fn monitor_signals(data: &[u8]) {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    let policy = POLICY.get_or_init(Policy::default_policy);
    let wait = clipguard_monitor::Wait::default();
    let mut buf = data;
    let mut signals = Vec::new();
    while !buf.is_empty() && signals.len() < 16 {
        match Signal::decode_length_delimited(&mut buf) {
            Ok(s) => signals.push(s),
            Err(_) => break,
        }
    }
    let clip_id = signals
        .first()
        .map(|s| s.clip_id.clone())
        .unwrap_or_default();
    let _ = clipguard_monitor::decide::complete(&signals, &wait);
    for deadline_passed in [false, true] {
        let verdict =
            clipguard_monitor::decide::decide(&clip_id, &signals, &wait, policy, deadline_passed);
        let json = clipguard_monitor::json::verdict_json(&verdict);
        let _ = serde_json::to_string(&json);
        let _ = Verdict::decode(verdict.encode_to_vec().as_slice());
    }
    // What is left, as a verdict on the state topic.
    let _ = Verdict::decode(buf);
}

// --- vPDQ and banks -----------------------------------------------------------------------------

pub fn vpdq_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (parsed, _errors) = vpdq::parse_lenient(text);
    let formatted = vpdq::format(&parsed);
    let again = vpdq::parse(&formatted).expect("what format writes, parse reads");
    assert_eq!(
        again.len(),
        parsed.len(),
        "the frame count survives a round trip"
    );
    for (a, b) in again.iter().zip(&parsed) {
        assert_eq!(a.hash, b.hash, "hashes survive a round trip");
    }
    let params = MatchParams::default();
    let _ = vpdq::compare(&parsed, &parsed, &params);
    let _ = vpdq::compare_sparse(&parsed, &parsed, &params, 2.0);
    let _ = vpdq::prune(&parsed, 4);
}

pub fn bank_import(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut contents = Contents::default();
    let _ = clipguard_hashmatch::import::hash_list(
        "fuzz.csv",
        text,
        clipguard_hashmatch::import::DefaultKind::Pdq,
        &mut contents,
    );
    let _ = clipguard_hashmatch::import::vpdq_file("fuzz.txt", text, "fuzz-video", &mut contents);
    if contents.is_empty() {
        return;
    }
    let store = BankStore::new(scratch().join("import"));
    let meta = BankMeta::new("imported", "violence_gore", Action::Review);
    let version = store
        .write(&meta, &contents)
        .expect("an imported bank can be written");
    let bank = store.load("imported").expect("a written bank loads");
    assert_eq!(
        bank.pdq.len(),
        contents.pdq.len(),
        "every image hash written is loaded"
    );
    let _ = version;
}

/// The files of a bank version, in the order the first input byte picks them.
const BANK_FILES: &[&str] = &[
    "bank.toml",
    "pdq.idx",
    "pdq.ids",
    "videos.vpdq",
    "files.tsv",
];

pub fn bank_files(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let store = BankStore::new(scratch().join("damaged"));
    let meta = BankMeta::new("damaged", "violence_gore", Action::Block);
    let version = store.write(&meta, &sample_contents()).expect("write bank");
    let dir = store.dir().join("damaged").join(format!("v{version}"));
    let victim = BANK_FILES[usize::from(pick) % BANK_FILES.len()];
    let path = if dir.join(victim).exists() {
        dir.join(victim)
    } else {
        // Layouts change: damage whatever file of the version comes at that position.
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("bank version folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        if files.is_empty() {
            return;
        }
        files[usize::from(pick) % files.len()].clone()
    };
    std::fs::write(&path, rest).expect("damage a bank file");
    let _ = store.load("damaged");
    let _ = store.meta("damaged");
    let _ = store.contents("damaged");
    let _ = store.remove("damaged");
}

// --- policy, config, manifest, models -----------------------------------------------------------

pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text, "fuzz.toml") else {
        return;
    };
    let mut scores = BTreeMap::new();
    for (i, category) in [
        "sexual",
        "minors_sexual",
        "self_harm",
        "violence_gore",
        "hate",
    ]
    .iter()
    .enumerate()
    {
        scores.insert(category.to_string(), (i as f32) / 4.0);
    }
    scores.insert("unknown_category".into(), f32::NAN);
    for audience in Audience::ALL {
        let _ = policy.verdict(&scores, audience);
    }
}

/// The sections of `clipguard`'s config whose crates this one builds (transcribe and classify
/// bring model runtimes; their sections parse through the same loader).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FuzzConfig {
    kafka: clipguard_pipeline::kafka::KafkaConfig,
    host: clipguard_pipeline::kafka::HostConfig,
    store: clipguard_pipeline::store::StoreConfig,
    media: clipguard_media::MediaConfig,
    hashmatch: HashmatchConfig,
    monitor: clipguard_monitor::MonitorConfig,
    telemetry: clipguard_pipeline::telemetry::TelemetryConfig,
    grpc: clipguard_pipeline::grpc::GrpcConfig,
}

impl Validate for FuzzConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        self.kafka.validate(problems);
        self.host.validate(problems);
        self.store.validate(problems);
        self.media.validate(problems);
        self.hashmatch.validate(problems);
        self.monitor.validate(problems);
        self.telemetry.validate(problems);
        self.grpc.validate(problems);
    }
}

/// Input: lines `CLIPGUARD_...=value` first (environment overrides), then the file's TOML.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut env = Vec::new();
    let mut rest = text;
    while let Some((line, tail)) = rest.split_once('\n') {
        match line.split_once('=') {
            Some((k, v)) if k.starts_with("CLIPGUARD_") => {
                env.push((k.to_string(), v.to_string()));
                rest = tail;
            }
            _ => break,
        }
    }
    let path = scratch().join("clipguard.toml");
    std::fs::write(&path, rest).expect("write config");
    if let Ok(cfg) = clipguard_pipeline::config::load::<FuzzConfig>(Some(&path), env) {
        let _ = format!("{cfg:?}");
    }
}

pub fn manifest(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(m) = clipguard_models::Manifest::parse(text)
    {
        for entry in &m.models {
            let _ = m.get(&entry.name);
        }
    }
}

pub fn c2pa_manifest(data: &[u8]) {
    let p = clipguard_media::provenance::read_store(data);
    let _ = format!("{p:?}");
}

/// An MP4 signed with a throw-away certificate chain, as a generator signs its clips: the seed
/// that puts a real manifest store (JUMBF, COSE, CBOR) in front of the fuzzer.
fn signed_mp4(mp4: &[u8]) -> Option<Vec<u8>> {
    let signer = c2pa::EphemeralSigner::new("clipguard-fuzz-seed").ok()?;
    let context = c2pa::Context::new()
        .with_settings(r#"{"builder": {"thumbnail": {"enabled": false}}}"#)
        .ok()?;
    let mut builder = c2pa::Builder::from_context(context)
        .with_definition(
            r#"{"claim_generator_info": [{"name": "clipguard-fuzz-seed", "version": "1"}]}"#
                .to_string(),
        )
        .ok()?;
    builder.set_intent(c2pa::BuilderIntent::Create(
        c2pa::DigitalSourceType::TrainedAlgorithmicMedia,
    ));
    let mut out = std::io::Cursor::new(Vec::new());
    builder
        .sign(
            &signer,
            "video/mp4",
            &mut std::io::Cursor::new(mp4.to_vec()),
            &mut out,
        )
        .ok()?;
    Some(out.into_inner())
}

pub fn ct2_ggml(data: &[u8]) {
    if let Ok(model) = clipguard_models::ct2::parse(data) {
        let _ = format!("{model:?}");
    }
    let _ = clipguard_models::ggml::read_whisper(data);
}

// --- seeds --------------------------------------------------------------------------------------

/// The largest media seed (and, in `scripts/fuzz.sh`, the largest input of the media targets).
pub const MEDIA_MAX_LEN: usize = 2 * 1024 * 1024;

/// Writes each target's seeds into `dir/TARGET/seed-N` (for the fuzzer's first corpus).
pub fn write_seeds(dir: &Path, media_dir: Option<&Path>) -> std::io::Result<()> {
    for t in TARGETS {
        let out = dir.join(t.name);
        std::fs::create_dir_all(&out)?;
        for (i, seed) in seeds(t.name, media_dir).iter().enumerate() {
            std::fs::write(out.join(format!("seed-{i}")), seed)?;
        }
    }
    Ok(())
}

/// Valid inputs for each target, made from the project's own formats, for the fuzzer to start
/// from (and for the regression test to run). Media seeds are files of `media_dir` (the sample
/// clips), when given.
pub fn seeds(target: &str, media_dir: Option<&Path>) -> Vec<Vec<u8>> {
    let media: Vec<Vec<u8>> = media_dir
        .and_then(|d| std::fs::read_dir(d).ok())
        .map(|entries| {
            let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            files
                .into_iter()
                .filter(|p| p.is_file())
                .filter_map(|p| std::fs::read(p).ok())
                .filter(|b| b.len() <= MEDIA_MAX_LEN)
                .collect()
        })
        .unwrap_or_default();
    match target {
        "media_probe" => media,
        "c2pa_manifest" => {
            let signed: Vec<Vec<u8>> = media
                .iter()
                .filter(|m| clipguard_media::provenance::format_of(m) == Some("video/mp4"))
                .filter_map(|m| signed_mp4(m))
                .collect();
            media.into_iter().chain(signed).collect()
        }
        "clip_submitted" => {
            let mut out: Vec<Vec<u8>> = media
                .into_iter()
                .take(2)
                .map(|bytes| {
                    ClipSubmitted {
                        clip_id: "seed".into(),
                        media: Some(MediaRef {
                            location: Some(media_ref::Location::Inline(bytes)),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                    .encode_to_vec()
                })
                .collect();
            for uri in ["inside.bin", "../outside.bin", "/etc/hostname", "file:///etc/hostname"] {
                out.push(
                    ClipSubmitted {
                        clip_id: "seed-uri".into(),
                        media: Some(MediaRef {
                            location: Some(media_ref::Location::Uri(uri.into())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                );
            }
            out
        }
        "media_extract" => {
            let frames = frames(40, 6)
                .into_iter()
                .map(|f| clipguard_schemas::FrameHash {
                    timestamp_s: f.timestamp_s,
                    pdq: f.hash.0.to_vec(),
                    quality: f.quality,
                    ..Default::default()
                })
                .collect();
            vec![
                MediaExtract {
                    clip_id: "seed".into(),
                    frame_hashes: frames,
                    md5: "0".repeat(32),
                    ..Default::default()
                }
                .encode_to_vec(),
            ]
        }
        "monitor_signals" => {
            let mut out = Vec::new();
            for stage in ["media", "hashmatch", "transcribe", "classify", "classify_transcript"] {
                Signal {
                    clip_id: "seed".into(),
                    stage: stage.into(),
                    ..Default::default()
                }
                .encode_length_delimited(&mut out)
                .expect("encode to a Vec");
            }
            vec![out]
        }
        "vpdq_text" => vec![vpdq::format(&frames(3, 5)).into_bytes()],
        "bank_import" => vec![
            format!("hash,id\n{},img-1\n", hash(1).to_hex()).into_bytes(),
            format!("pdq\t{}\tx\nmd5\t{}\ty\n", hash(2).to_hex(), "a".repeat(32)).into_bytes(),
            vpdq::format(&frames(9, 4)).into_bytes(),
        ],
        "bank_files" => (0..BANK_FILES.len() as u8).map(|i| vec![i, b'x']).collect(),
        "policy" => vec![
            clipguard_policy::DEFAULT_POLICY.as_bytes().to_vec(),
            clipguard_policy::DEFAULT_TEXT_POLICY.as_bytes().to_vec(),
        ],
        "config" => vec![
            b"CLIPGUARD_KAFKA__PARTITIONS=3\n[kafka]\nbrokers = \"127.0.0.1:9092\"\n[media]\ndeadline_s = 30\n"
                .to_vec(),
        ],
        "manifest" => {
            let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/manifest.toml");
            std::fs::read(file).map(|b| vec![b]).unwrap_or_default()
        }
        "ct2_ggml" => vec![clipguard_models::ct2::write(
            "WhisperSpec",
            6,
            &[("encoder/conv1/weight", vec![2, 2], 0, vec![0; 16])],
        )],
        _ => Vec::new(),
    }
}
