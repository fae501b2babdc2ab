//! Word error rate of the transcribe engine on the text policy's exemplar sentences spoken by
//! espeak-ng (or Festival: `--voices festival:cmu_us_slt_arctic_hts`), for a grid of voices, speaking rates, models and decodings: how the speech
//! evaluation's voice and the transcription settings it reports were chosen. It reads only the
//! exemplars (`policy/text.toml`), never the held-out evaluation set.
//!
//!     cargo run --release -p clipguard-transcribe --example espeak_wer -- \
//!         [--policy policy/text.toml] [--limit N] [--voices en-us,en] [--rates 150,130] \
//!         [--models whisper-tiny.en,whisper-base] [--decodings greedy,beam] [--fit on,off]
//!
//! Prints, per setting, WER (word edits / reference words, after lower-casing and dropping
//! punctuation: `clipguard_transcribe::wer`), the share of sentences transcribed exactly, and seconds of processing per
//! second of audio. Models come from the cache (`clipguard models fetch …`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clipguard_transcribe::wer::{word_errors, words};
use clipguard_transcribe::{Decoding, Engine, TranscribeConfig};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every exemplar sentence of a text policy: `benign`, and each category's `unsafe_examples`
/// and `benign_examples`, in file order.
fn exemplars(path: &Path) -> Vec<String> {
    let doc: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let strings = |v: Option<&toml::Value>| -> Vec<String> {
        v.and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = strings(doc.get("benign"));
    if let Some(cats) = doc.get("categories").and_then(toml::Value::as_table) {
        for cat in cats.values() {
            out.extend(strings(cat.get("unsafe_examples")));
            out.extend(strings(cat.get("benign_examples")));
        }
    }
    out
}

/// One sentence as 16 kHz mono s16 samples.
fn speak(dir: &Path, voice: &str, rate: &str, i: usize, text: &str) -> Vec<i16> {
    let tag = voice.replace([':', '/'], "_");
    let wav = dir.join(format!("{tag}-{rate}-{i}.wav"));
    let raw = dir.join(format!("{tag}-{rate}-{i}.raw"));
    let ok = if let Some(festival) = voice.strip_prefix("festival:") {
        // Festival's text2wave (Debian `festival` + a voice package, e.g. festvox-us-slt-hts:
        // `festival:cmu_us_slt_arctic_hts`); the rate is ignored.
        let txt = dir.join(format!("{i}.txt"));
        std::fs::write(&txt, text).unwrap();
        Command::new("text2wave")
            .arg("-eval")
            .arg(format!("(voice_{festival})"))
            .arg("-o")
            .arg(&wav)
            .arg(&txt)
            .status()
            .expect("text2wave (Debian festival)")
            .success()
    } else {
        Command::new("espeak-ng")
            .args(["-v", voice, "-s", rate, "-w"])
            .arg(&wav)
            .arg(text)
            .status()
            .expect("espeak-ng (scripts/setup.sh installs it)")
            .success()
    };
    assert!(ok, "speech synthesis failed");
    support::wav_to_pcm16k(&wav, &raw)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let policy = arg(
        &args,
        "--policy",
        &root.join("policy/text.toml").display().to_string(),
    );
    let limit: usize = arg(&args, "--limit", "100000").parse().unwrap();
    let voices = list(&arg(&args, "--voices", "en-us"));
    let rates = list(&arg(&args, "--rates", "150"));
    let models = list(&arg(&args, "--models", "whisper-tiny.en"));
    let decodings = list(&arg(&args, "--decodings", "greedy"));
    // Whether whisper's encoder context is fitted to the audio (`transcribe.fit_audio_context`).
    let fits = list(&arg(&args, "--fit", "on"));
    let show = args.iter().any(|a| a == "--show");

    let sentences: Vec<String> = exemplars(Path::new(&policy))
        .into_iter()
        .take(limit)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "{} exemplar sentences from {policy}; 1 ggml thread\n",
        sentences.len()
    );
    println!(
        "{:<8} {:>5} {:<16} {:<7} {:<4} {:>7} {:>7} {:>7}",
        "voice", "rate", "model", "decode", "fit", "WER %", "exact%", "RTF"
    );
    for voice in &voices {
        for rate in &rates {
            let audio: Vec<Vec<i16>> = sentences
                .iter()
                .enumerate()
                .map(|(i, s)| speak(dir.path(), voice, rate, i, s))
                .collect();
            let audio_s: f64 = audio.iter().map(|a| a.len() as f64 / 16_000.0).sum();
            for model in &models {
                for (decoding, fit) in decodings
                    .iter()
                    .flat_map(|d| fits.iter().map(move |f| (d, f)))
                {
                    let cfg = TranscribeConfig {
                        model: model.clone(),
                        decoding: match decoding.as_str() {
                            "beam" => Decoding::Beam,
                            _ => Decoding::Greedy,
                        },
                        language: "en".into(),
                        fit_audio_context: fit == "on",
                        ..TranscribeConfig::default()
                    };
                    let engine = match Engine::load(&cfg) {
                        Ok(e) => e,
                        Err(e) => {
                            println!("{model}: skipped: {e}");
                            continue;
                        }
                    };
                    let (mut errs, mut total, mut exact) = (0usize, 0usize, 0usize);
                    let start = Instant::now();
                    for (s, pcm) in sentences.iter().zip(&audio) {
                        let heard = engine.transcribe(pcm).unwrap().text;
                        let (r, h) = (words(s), words(&heard));
                        let e = word_errors(&r, &h);
                        if show && e > 0 {
                            println!("  {s:?}\n    → {heard:?}");
                        }
                        errs += e;
                        total += r.len();
                        exact += usize::from(e == 0);
                    }
                    let secs = start.elapsed().as_secs_f64();
                    println!(
                        "{:<8} {:>5} {:<16} {:<7} {:<4} {:>7.2} {:>7.1} {:>7.3}",
                        voice,
                        rate,
                        model,
                        decoding,
                        fit,
                        100.0 * errs as f64 / total.max(1) as f64,
                        100.0 * exact as f64 / sentences.len().max(1) as f64,
                        secs / audio_s
                    );
                }
            }
        }
    }
}
