//! Realtime factor of the transcribe stage (processing seconds / audio seconds, one ggml
//! thread) for whisper tiny.en and base, beside whisper-rs `full()` alone on the same PCM in the
//! same run, and the voice-activity gate's saving on a clip that is half silence.
//!
//! Speech is espeak-ng resampled to 16 kHz by GStreamer. Models come from the model cache
//! (`clipguard models fetch whisper-tiny.en whisper-base`); a missing one is skipped with that
//! message. `CLIPGUARD_BENCH_REPS` (default 2) sets repetitions; the median is reported.
//!
//!     cargo bench -p clipguard-transcribe --bench rtf

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use clipguard_models::{Cache, Manifest};
use clipguard_pipeline::store::{MediaStore, StoreConfig};
use clipguard_schemas::{AudioTrack, MediaExtract, MediaRef, media_ref::Location};
use clipguard_transcribe::{TranscribeConfig, TranscribeStage};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

const SENTENCES: &[&str] = &[
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please keep your hands inside the vehicle at all times during the ride.",
    "The weather today is sunny with a light breeze coming from the west.",
    "We will meet at the library after lunch to finish the science project.",
    "Turn off the lights before you leave the room and lock the front door.",
    "Never share your password with anyone who calls you on the phone.",
];

/// One sentence as 16 kHz mono s16 samples.
fn speak(dir: &Path, i: usize, text: &str) -> Vec<i16> {
    let wav = dir.join(format!("{i}.wav"));
    let raw = dir.join(format!("{i}.raw"));
    let ok = Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .unwrap()
        .success();
    assert!(ok, "espeak-ng");
    support::wav_to_pcm16k(&wav, &raw)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn extract(pcm: &[i16]) -> MediaExtract {
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    MediaExtract {
        clip_id: "bench".into(),
        audio: Some(AudioTrack {
            pcm: Some(MediaRef {
                size_bytes: bytes.len() as u64,
                location: Some(Location::Inline(bytes)),
                ..MediaRef::default()
            }),
            sample_rate: 16_000,
            channels: 1,
            duration_s: pcm.len() as f64 / 16_000.0,
        }),
        ..MediaExtract::default()
    }
}

fn main() {
    let reps: usize = std::env::var("CLIPGUARD_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .max(1);
    let dir = tempfile::tempdir().unwrap();
    let parts: Vec<Vec<i16>> = SENTENCES
        .iter()
        .enumerate()
        .map(|(i, s)| speak(dir.path(), i, s))
        .collect();
    let speech: Vec<i16> = parts.concat();
    // Each sentence followed by as much silence: half the clip is silent.
    let half_silent: Vec<i16> = parts
        .iter()
        .flat_map(|p| p.iter().copied().chain(std::iter::repeat_n(0, p.len())))
        .collect();
    let secs = |pcm: &[i16]| pcm.len() as f64 / 16_000.0;
    println!(
        "clips: speech {:.1} s, half silence {:.1} s; {reps} repetitions, medians; 1 ggml thread",
        secs(&speech),
        secs(&half_silent)
    );
    let manifest = Manifest::load_default().unwrap();
    let store = MediaStore::open(&StoreConfig {
        url: dir.path().join("store").display().to_string(),
        ..StoreConfig::default()
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for model in ["whisper-tiny.en", "whisper-base"] {
        let entry = manifest.get(model).unwrap();
        let path = match Cache::default().verified_path(entry) {
            Ok(p) => p,
            Err(e) => {
                println!("{model}: skipped: {e}");
                continue;
            }
        };
        let cfg = TranscribeConfig {
            model: model.to_string(),
            // Full 30 s windows, as the baseline below decodes: this bench measures the stage's
            // overhead and the gate. The fitted context's saving (and its word errors) is
            // measured by the espeak_wer example.
            fit_audio_context: false,
            ..TranscribeConfig::default()
        };
        let stage = TranscribeStage::new(cfg.clone(), store.clone()).unwrap();
        let no_vad = TranscribeStage::new(
            TranscribeConfig {
                vad: clipguard_transcribe::vad::VadConfig {
                    enabled: false,
                    ..Default::default()
                },
                ..cfg
            },
            store.clone(),
        )
        .unwrap();
        // The baseline: whisper-rs alone, its own context and state, the stage's parameters.
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let ctx = WhisperContext::new_with_params(&path, params).unwrap();
        let mut state = ctx.create_state().unwrap();
        let full_alone = |state: &mut whisper_rs::WhisperState, pcm: &[i16]| {
            let samples: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
            let mut p = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
            p.set_n_threads(1);
            p.set_no_context(true);
            p.set_suppress_nst(true);
            p.set_print_progress(false);
            p.set_print_realtime(false);
            p.set_print_special(false);
            p.set_print_timestamps(false);
            p.set_language(Some(if ctx.is_multilingual() { "auto" } else { "en" }));
            let t = Instant::now();
            state.full(p, &samples).unwrap();
            t.elapsed().as_secs_f64()
        };
        let run_stage = |s: &TranscribeStage, pcm: &[i16]| {
            let e = extract(pcm);
            let t = Instant::now();
            let out = rt.block_on(s.transcribe_extract(&e)).unwrap();
            assert!(out.signal.error.is_none());
            t.elapsed().as_secs_f64()
        };
        // Warm up both paths once.
        full_alone(&mut state, &parts[0]);
        run_stage(&stage, &parts[0]);

        let (mut base, mut staged) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            base.push(full_alone(&mut state, &speech));
            staged.push(run_stage(&stage, &speech));
        }
        let (b, s) = (median(base), median(staged));
        println!(
            "{model:<16} speech      full() alone {b:6.2} s  RTF {:.3} | stage {s:6.2} s  RTF {:.3} | stage/full() {:.3}",
            b / secs(&speech),
            s / secs(&speech),
            s / b
        );
        let (mut gated, mut ungated, mut alone) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            alone.push(full_alone(&mut state, &half_silent));
            gated.push(run_stage(&stage, &half_silent));
            ungated.push(run_stage(&no_vad, &half_silent));
        }
        let (a, g, u) = (median(alone), median(gated), median(ungated));
        println!(
            "{model:<16} half silent full() alone {a:6.2} s  RTF {:.3} | stage {g:6.2} s  RTF {:.3} | gate off {u:6.2} s | gate saves {:.0} % (gate on / off {:.3})",
            a / secs(&half_silent),
            g / secs(&half_silent),
            (1.0 - g / u) * 100.0,
            g / u
        );
    }
}
