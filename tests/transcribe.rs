//! Transcription: the converted whisper tiny.en model loads in whisper.cpp, espeak-ng speech
//! muxed into video clips goes through media and transcribe stage processes on a real broker
//! with a word error rate of at most 25 %, and clips without speech or without audio cost no
//! whisper run.

// Tests report failure by panicking.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clipguard_pipeline::store::{MediaStore, StoreConfig};
use clipguard_schemas::{ClipSubmitted, MediaExtract, MediaRef, Transcript, media_ref::Location};
use clipguard_transcribe::wer::{word_errors, words};
use clipguard_transcribe::{Decoding, TranscribeConfig, TranscribeStage};
use common::{Broker, Proc, TopicReader};

const SENTENCES: &[&str] = &[
    "The quick brown fox jumps over the lazy dog.",
    "Please keep your hands inside the vehicle at all times.",
    "The weather today is sunny with a light breeze from the west.",
    "We will meet at the library after lunch to finish the project.",
    "Turn off the lights before you leave the room tonight.",
    "Never share your password with anyone who calls you on the phone.",
];

fn gst(args: &str) {
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(args.split_whitespace())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("gst-launch-1.0 (run scripts/setup.sh)");
    assert!(status.success(), "gst-launch-1.0 {args}");
}

/// An H.264 + AAC MP4 with colour bars and `wav` as its sound.
fn clip_with_speech(dir: &Path, name: &str, text: &str) -> PathBuf {
    let wav = dir.join(format!("{name}.wav"));
    let status = Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng (run scripts/setup.sh)");
    assert!(status.success());
    let out = dir.join(format!("{name}.mp4"));
    gst(&format!(
        "mp4mux name=mux ! filesink location={} \
         videotestsrc pattern=smpte num-buffers=125 ! video/x-raw,width=160,height=120,framerate=25/1,format=I420 \
         ! x264enc speed-preset=ultrafast key-int-max=25 ! h264parse ! mux. \
         filesrc location={} ! wavparse ! audioconvert ! audioresample ! avenc_aac ! aacparse ! mux.",
        out.display(),
        wav.display()
    ));
    out
}

#[test]
fn word_error_rate_helper_counts_edits() {
    let r = words("the cat sat on the mat");
    assert_eq!(word_errors(&r, &words("the cat sat on the mat")), 0);
    assert_eq!(word_errors(&r, &words("The cat sat on a mat.")), 1);
    assert_eq!(word_errors(&r, &words("cat sat on the mat today")), 2);
    assert_eq!(word_errors(&r, &[]), 6);
}

#[test]
fn spoken_sentences_through_media_and_transcribe_processes_have_low_word_error_rate() {
    let _turn = common::serial();
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topics(2);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let env = vec![
        ("CLIPGUARD_STORE__URL", store.display().to_string()),
        ("CLIPGUARD_KAFKA__CREATE_TOPICS", "false".to_string()),
        ("CLIPGUARD_KAFKA__SESSION_TIMEOUT_MS", "6000".to_string()),
        ("CLIPGUARD_LOG", "warn".to_string()),
    ];
    let mut files = Vec::new();
    let mut reference_of = HashMap::new();
    for (i, s) in SENTENCES.iter().enumerate() {
        let f = clip_with_speech(dir.path(), &format!("s{i}"), s);
        reference_of.insert(f.display().to_string(), *s);
        files.push(f);
    }
    let brokers = broker.addr.clone();
    let _media = Proc::spawn("media", &["stage", "media", "--brokers", &brokers], &env);
    let _transcribe = Proc::spawn(
        "transcribe",
        &["stage", "transcribe", "--brokers", &brokers],
        &env,
    );
    let started = Instant::now();
    let sources = common::submit(&brokers, &files, &env);
    let reader = TopicReader::new(&brokers, "clips.transcripts", 2);
    let mut transcripts: HashMap<String, Transcript> = HashMap::new();
    while transcripts.len() < sources.len() && started.elapsed() < Duration::from_secs(240) {
        for (key, payload) in reader.poll(Duration::from_millis(500)) {
            let t: Transcript = prost::Message::decode(payload.as_slice()).unwrap();
            assert_eq!(key, t.clip_id);
            transcripts.insert(t.clip_id.clone(), t);
        }
    }
    assert_eq!(
        transcripts.len(),
        sources.len(),
        "transcripts for every clip within 240 s"
    );
    let (mut errors, mut total) = (0, 0);
    for (clip_id, source) in &sources {
        let reference = words(reference_of[source]);
        let t = &transcripts[clip_id];
        let hypothesis = words(&t.text);
        let e = word_errors(&reference, &hypothesis);
        println!(
            "{e} errors / {} words: {:?} → {:?}",
            reference.len(),
            reference_of[source],
            t.text
        );
        assert_eq!(t.language, "en");
        assert!(!t.segments.is_empty(), "segments for {source}");
        for seg in &t.segments {
            assert!(
                seg.start_s <= seg.end_s && seg.end_s <= 5.5,
                "segment times {seg:?}"
            );
        }
        errors += e;
        total += reference.len();
    }
    let wer = errors as f64 / total as f64;
    println!(
        "word error rate {:.1} % ({errors} / {total} words, whisper tiny.en, {} clips in {:.1} s)",
        wer * 100.0,
        sources.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        wer <= 0.25,
        "word error rate {:.1} % over 25 %",
        wer * 100.0
    );
}

fn store(dir: &Path) -> MediaStore {
    MediaStore::open(&StoreConfig {
        url: dir.display().to_string(),
        ..StoreConfig::default()
    })
    .unwrap()
}

/// The media stage's extract of a file, as the transcribe stage receives it.
async fn extract_of(file: &Path, dir: &Path) -> MediaExtract {
    let media =
        clipguard_media::MediaStage::new(clipguard_media::MediaConfig::default(), store(dir))
            .unwrap();
    let bytes = std::fs::read(file).unwrap();
    let clip = ClipSubmitted {
        clip_id: file.display().to_string(),
        media: Some(MediaRef {
            size_bytes: bytes.len() as u64,
            location: Some(Location::Inline(bytes)),
            ..MediaRef::default()
        }),
        ..ClipSubmitted::default()
    };
    media
        .process_clip(&clip)
        .await
        .extract
        .expect("decodable clip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_without_speech_or_audio_cost_no_whisper_run() {
    common::ensure_models();
    let dir = tempfile::tempdir().unwrap();
    let silent = dir.path().join("silent.mp4");
    gst(&format!(
        "mp4mux name=mux ! filesink location={} \
         videotestsrc num-buffers=100 ! video/x-raw,width=160,height=120,framerate=25/1,format=I420 \
         ! x264enc speed-preset=ultrafast ! h264parse ! mux. \
         audiotestsrc wave=silence num-buffers=200 ! audioconvert ! avenc_aac ! aacparse ! mux.",
        silent.display()
    ));
    let no_audio = dir.path().join("no-audio.mkv");
    gst(&format!(
        "videotestsrc num-buffers=100 ! video/x-raw,width=160,height=120,framerate=25/1,format=I420 \
         ! x264enc speed-preset=ultrafast ! h264parse ! matroskamux ! filesink location={}",
        no_audio.display()
    ));
    let stage = TranscribeStage::new(TranscribeConfig::default(), store(dir.path())).unwrap();
    for (file, has_audio) in [(&silent, true), (&no_audio, false)] {
        let extract = extract_of(file, dir.path()).await;
        assert_eq!(extract.audio.is_some(), has_audio, "{}", file.display());
        let outcome = stage.transcribe_extract(&extract).await.unwrap();
        println!(
            "{}: {:.3} s of transcribe stage time (audio: {has_audio})",
            file.display(),
            outcome.elapsed_s
        );
        let t = outcome.transcript.unwrap();
        assert!(t.text.is_empty() && t.segments.is_empty(), "{t:?}");
        assert_eq!(t.language, "en");
        assert!(outcome.signal.error.is_none());
        assert_eq!(outcome.signal.stage, "transcribe");
    }
    assert_eq!(
        stage.engine().whisper_runs(),
        0,
        "whisper ran on a clip without speech"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converted_tiny_en_loads_in_whisper_cpp_and_transcribes_with_greedy_and_beam_search() {
    common::ensure_models();
    let manifest = clipguard_models::Manifest::load_default().unwrap();
    let entry = manifest.get("whisper-tiny.en").unwrap();
    let path = clipguard_models::Cache::default()
        .verified_path(entry)
        .unwrap();
    let header = clipguard_models::ggml::read_whisper(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(header.hparams.n_vocab, 51864);
    assert_eq!(header.hparams.n_audio_layer, 4);
    assert_eq!(header.hparams.n_audio_state, 384);
    assert_eq!(header.hparams.n_audio_head, 6);
    assert_eq!(header.tokens.len(), 50256);
    assert_eq!(header.tensors.len(), 7 + 15 * 4 + 4 + 24 * 4);

    let dir = tempfile::tempdir().unwrap();
    let clip = clip_with_speech(dir.path(), "fox", SENTENCES[0]);
    let extract = extract_of(&clip, dir.path()).await;
    for decoding in [Decoding::Greedy, Decoding::Beam] {
        let cfg = TranscribeConfig {
            decoding,
            ..TranscribeConfig::default()
        };
        let stage = TranscribeStage::new(cfg, store(dir.path())).unwrap();
        assert!(!stage.engine().multilingual());
        let outcome = stage.transcribe_extract(&extract).await.unwrap();
        let t = outcome.transcript.unwrap();
        println!("{decoding:?}: {:?} in {:.2} s", t.text, outcome.elapsed_s);
        let errors = word_errors(&words(SENTENCES[0]), &words(&t.text));
        assert!(errors <= 2, "{decoding:?}: {:?}", t.text);
        assert_eq!(stage.engine().whisper_runs(), 1);
    }
}

#[test]
fn audio_longer_than_the_limit_is_cut_and_flagged() {
    common::ensure_models();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clip = clip_with_speech(dir.path(), "long", SENTENCES[1]);
        let extract = extract_of(&clip, dir.path()).await;
        let cfg = TranscribeConfig {
            max_audio_s: 1.5,
            ..TranscribeConfig::default()
        };
        let stage = TranscribeStage::new(cfg, store(dir.path())).unwrap();
        let outcome = stage.transcribe_extract(&extract).await.unwrap();
        assert_eq!(
            outcome.signal.reasons,
            vec!["transcript_truncated".to_string()]
        );
        let t = outcome.transcript.unwrap();
        for s in &t.segments {
            assert!(s.end_s <= 1.5 + 1e-6, "{s:?}");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_audio_becomes_a_precise_error_signal() {
    use clipguard_schemas::AudioTrack;
    common::ensure_models();
    let dir = tempfile::tempdir().unwrap();
    let stage = TranscribeStage::new(TranscribeConfig::default(), store(dir.path())).unwrap();
    let track = |rate: u32, pcm: Option<Vec<u8>>| MediaExtract {
        clip_id: "bad".into(),
        audio: Some(AudioTrack {
            pcm: pcm.map(|b| MediaRef {
                size_bytes: b.len() as u64,
                location: Some(Location::Inline(b)),
                ..MediaRef::default()
            }),
            sample_rate: rate,
            channels: 1,
            duration_s: 1.0,
        }),
        ..MediaExtract::default()
    };
    for (extract, kind, says) in [
        (
            track(44_100, Some(vec![0; 100])),
            "audio_format",
            "44100 Hz",
        ),
        (
            track(16_000, Some(vec![0; 101])),
            "audio_format",
            "101 bytes",
        ),
        (track(16_000, None), "missing_media", "no PCM"),
    ] {
        let outcome = stage.transcribe_extract(&extract).await.unwrap();
        let error = outcome.signal.error.expect("error signal");
        assert_eq!(error.kind, kind);
        assert!(error.message.contains(says), "{}", error.message);
        assert!(outcome.transcript.is_none());
    }
    assert_eq!(stage.engine().whisper_runs(), 0);
}

#[test]
fn the_transcribe_worker_answers_over_grpc() {
    use clipguard_schemas::transcribe_stage_client::TranscribeStageClient;
    let _turn = common::serial();
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topics(1);
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        (
            "CLIPGUARD_STORE__URL",
            dir.path().join("store").display().to_string(),
        ),
        ("CLIPGUARD_KAFKA__CREATE_TOPICS", "false".to_string()),
    ];
    let (_worker, addrs) = Proc::spawn_listening(
        "transcribe",
        &[
            "stage",
            "transcribe",
            "--brokers",
            &broker.addr,
            "--grpc-addr",
            "127.0.0.1:0",
        ],
        &env,
        &["grpc"],
        Duration::from_secs(60),
    );
    let grpc = addrs["grpc"].to_string();
    let clip = clip_with_speech(dir.path(), "grpc", SENTENCES[4]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let signal = rt.block_on(async {
        let extract = extract_of(&clip, dir.path()).await;
        let mut client = TranscribeStageClient::connect(format!("http://{grpc}"))
            .await
            .unwrap();
        client.transcribe(extract).await.unwrap().into_inner()
    });
    assert_eq!(signal.stage, "transcribe");
    let t = signal.transcript().expect("transcript in the signal");
    println!("over gRPC: {:?}", t.text);
    assert!(
        word_errors(&words(SENTENCES[4]), &words(&t.text)) <= 2,
        "{:?}",
        t.text
    );
}
