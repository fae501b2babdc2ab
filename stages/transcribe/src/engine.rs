//! whisper.cpp through whisper-rs: one shared model (weights loaded once), one decoding state
//! per concurrent transcription.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use clipguard_models::{Cache, Manifest};
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use crate::TranscribeError;
use crate::config::{Decoding, TranscribeConfig};
use crate::vad::{self, Gated};

/// One segment of whisper's output, in seconds of the audio it was given.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSegment {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
}

/// A transcription's result, times in seconds of the clip.
#[derive(Debug, Clone, Default)]
pub struct Transcription {
    pub text: String,
    pub language: String,
    pub segments: Vec<RawSegment>,
    /// Seconds of audio in the clip (before `max_audio_s`).
    pub audio_s: f64,
    /// Seconds the voice-activity gate passed to whisper.
    pub speech_s: f64,
    /// True when the audio was longer than `max_audio_s` and its tail was not transcribed.
    pub truncated: bool,
}

/// Encoder frames whisper gives 30 s of audio (one per 20 ms).
const FULL_AUDIO_CTX: usize = 1500;
/// Frames of context kept beyond the audio's end when the context is fitted.
const AUDIO_CTX_MARGIN: usize = 128;

/// The encoder context for `samples` 16 kHz samples with `fit_audio_context`: the audio's
/// frames plus a margin, in steps of 32; 0 (whisper's full 30 s window) when that is not
/// shorter — longer audio runs in 30 s windows, each of which needs the full context.
fn audio_ctx(samples: usize) -> i32 {
    let frames = (samples.div_ceil(320) + AUDIO_CTX_MARGIN).next_multiple_of(32);
    if frames >= FULL_AUDIO_CTX {
        0
    } else {
        frames as i32
    }
}

/// Resolves `transcribe.model`: a path to a GGML file, or a manifest model in the cache
/// (verified against its checksum).
pub fn model_path(model: &str) -> Result<PathBuf, TranscribeError> {
    let p = Path::new(model);
    if model.contains('/') || p.extension().is_some_and(|e| e == "bin") {
        if !p.is_file() {
            return Err(TranscribeError::Config(format!(
                "transcribe.model: {model} is not a file"
            )));
        }
        return Ok(p.to_path_buf());
    }
    let manifest = Manifest::load_default()?;
    let entry = manifest.get(model)?;
    if entry.task != "transcribe" {
        return Err(TranscribeError::Config(format!(
            "transcribe.model: {model} is a {} model, not a transcription model",
            entry.task
        )));
    }
    Ok(Cache::default().verified_path(entry)?)
}

/// A loaded whisper model and a pool of decoding states.
pub struct Engine {
    ctx: WhisperContext,
    states: Mutex<Vec<WhisperState>>,
    cfg: TranscribeConfig,
    multilingual: bool,
    whisper_runs: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.cfg.model)
            .field("multilingual", &self.multilingual)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads the configured model and one decoding state (more are made on demand, up to the
    /// stage's `workers`).
    pub fn load(cfg: &TranscribeConfig) -> Result<Engine, TranscribeError> {
        whisper_rs::install_logging_hooks();
        let path = model_path(&cfg.model)?;
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let ctx = WhisperContext::new_with_params(&path, params).map_err(|e| {
            TranscribeError::Model(format!(
                "{}: whisper.cpp cannot load it ({e}); is it a GGML Whisper model?",
                path.display()
            ))
        })?;
        let multilingual = ctx.is_multilingual();
        let language = cfg.language.as_str();
        if !multilingual && language != "en" && language != "auto" {
            return Err(TranscribeError::Config(format!(
                "transcribe.language: {} is English-only; use `en` or `auto`, or a multilingual model",
                cfg.model
            )));
        }
        if language != "auto" && whisper_rs::get_lang_id(language).is_none() {
            return Err(TranscribeError::Config(format!(
                "transcribe.language: {language:?} is not a language whisper knows"
            )));
        }
        let first = ctx
            .create_state()
            .map_err(|e| TranscribeError::Whisper(e.to_string()))?;
        Ok(Engine {
            ctx,
            states: Mutex::new(vec![first]),
            cfg: cfg.clone(),
            multilingual,
            whisper_runs: AtomicU64::new(0),
        })
    }

    pub fn multilingual(&self) -> bool {
        self.multilingual
    }

    pub fn config(&self) -> &TranscribeConfig {
        &self.cfg
    }

    /// How many times whisper has run (clips the gate found silent do not count).
    pub fn whisper_runs(&self) -> u64 {
        self.whisper_runs.load(Ordering::Relaxed)
    }

    /// The decoding parameters a transcription of `samples` 16 kHz samples uses.
    pub fn params(&self, samples: usize) -> FullParams<'_, '_> {
        let strategy = match self.cfg.decoding {
            Decoding::Greedy => SamplingStrategy::Greedy { best_of: 1 },
            Decoding::Beam => SamplingStrategy::BeamSearch {
                beam_size: self.cfg.beam_size as i32,
                patience: -1.0,
            },
        };
        let mut p = FullParams::new(strategy);
        p.set_n_threads(self.cfg.threads.max(1) as i32);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_special(false);
        p.set_print_timestamps(false);
        // Clips are independent; text from one window must not steer the next clip.
        p.set_no_context(true);
        // Bracketed non-speech annotations ("[Music]") are not speech.
        p.set_suppress_nst(true);
        let language = if self.multilingual {
            self.cfg.language.as_str()
        } else {
            "en"
        };
        p.set_language(Some(language));
        // Greedy only: beam search over a fitted context dropped the last words of a test
        // sentence ("… the lazy dog near the river bank" ended at "dog"); beam is the accurate
        // setting, so it keeps the full window.
        if self.cfg.fit_audio_context && self.cfg.decoding == Decoding::Greedy {
            p.set_audio_ctx(audio_ctx(samples));
        }
        p
    }

    fn take_state(&self) -> Result<WhisperState, TranscribeError> {
        let pooled = self.states.lock().map(|mut s| s.pop()).unwrap_or(None);
        match pooled {
            Some(s) => Ok(s),
            None => self
                .ctx
                .create_state()
                .map_err(|e| TranscribeError::Whisper(e.to_string())),
        }
    }

    fn give_state(&self, state: WhisperState) {
        if let Ok(mut s) = self.states.lock() {
            s.push(state);
        }
    }

    /// whisper's `full()` over 16 kHz mono samples: segments in seconds of `samples`, and the
    /// language (detected for multilingual models with `language = "auto"`).
    pub fn full(&self, samples: &[f32]) -> Result<(Vec<RawSegment>, String), TranscribeError> {
        self.whisper_runs.fetch_add(1, Ordering::Relaxed);
        let mut state = self.take_state()?;
        let result = self.full_with(&mut state, samples);
        self.give_state(state);
        result
    }

    fn full_with(
        &self,
        state: &mut WhisperState,
        samples: &[f32],
    ) -> Result<(Vec<RawSegment>, String), TranscribeError> {
        state
            .full(self.params(samples.len()), samples)
            .map_err(|e| TranscribeError::Whisper(format!("whisper full(): {e}")))?;
        let mut segments = Vec::new();
        for seg in state.as_iter() {
            let text = seg
                .to_str_lossy()
                .map(|t| t.trim().to_string())
                .unwrap_or_default();
            if text.is_empty() {
                continue;
            }
            segments.push(RawSegment {
                // whisper's timestamps are in units of 10 ms.
                start_s: seg.start_timestamp() as f64 / 100.0,
                end_s: seg.end_timestamp() as f64 / 100.0,
                text,
            });
        }
        let language = if self.multilingual {
            whisper_rs::get_lang_str(state.full_lang_id_from_state())
                .unwrap_or_default()
                .to_string()
        } else {
            "en".to_string()
        };
        Ok((segments, language))
    }

    /// Transcribes a clip's audio (16 kHz mono s16): the voice-activity gate first, whisper
    /// over the speech only, segment times mapped back to the clip.
    pub fn transcribe(&self, pcm: &[i16]) -> Result<Transcription, TranscribeError> {
        let audio_s = pcm.len() as f64 / vad::SAMPLE_RATE as f64;
        let max = (self.cfg.max_audio_s * vad::SAMPLE_RATE as f64) as usize;
        let truncated = pcm.len() > max;
        let pcm = &pcm[..pcm.len().min(max)];
        let regions = vad::speech_regions(pcm, &self.cfg.vad);
        let gated = Gated::new(pcm, &regions);
        let mut out = Transcription {
            audio_s,
            speech_s: gated.speech_seconds(),
            truncated,
            language: self.configured_language(),
            ..Transcription::default()
        };
        if gated.samples.is_empty() {
            return Ok(out);
        }
        let (segments, language) = self.full(&gated.samples)?;
        if !language.is_empty() {
            out.language = language;
        }
        out.segments = segments
            .into_iter()
            .map(|s| RawSegment {
                start_s: gated.clip_time(s.start_s, false),
                end_s: gated.clip_time(s.end_s, true),
                text: s.text,
            })
            .collect();
        out.text = out
            .segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(out)
    }

    /// The language reported when nothing was heard: the configured one, `en` for English-only
    /// models, empty when it would have been detected.
    pub fn configured_language(&self) -> String {
        match (self.multilingual, self.cfg.language.as_str()) {
            (false, _) => "en".into(),
            (true, "auto") => String::new(),
            (true, l) => l.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoder_context_covers_the_audio_and_a_margin_and_never_cuts_long_audio() {
        // 4 s = 200 frames, + 128 margin = 328 → 352 (multiple of 32).
        assert_eq!(audio_ctx(4 * 16_000), 352);
        assert_eq!(audio_ctx(0), 128);
        for s in [1usize, 100, 16_000, 5 * 16_000 + 7, 20 * 16_000] {
            let ctx = audio_ctx(s) as usize;
            assert!(ctx >= s.div_ceil(320) + AUDIO_CTX_MARGIN, "{s}");
            assert_eq!(ctx % 32, 0, "{s}");
        }
        // Near and past 30 s: whisper's full window.
        assert_eq!(audio_ctx(28 * 16_000), 0);
        assert_eq!(audio_ctx(30 * 16_000), 0);
        assert_eq!(audio_ctx(600 * 16_000), 0);
    }
}
