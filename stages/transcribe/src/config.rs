//! The `[transcribe]` section of the configuration.

use serde::{Deserialize, Serialize};

use crate::vad::VadConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decoding {
    Greedy,
    Beam,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TranscribeConfig {
    /// A model of the manifest (`whisper-tiny.en`, `whisper-base`; fetched with
    /// `clipguard models fetch`) or the path of a GGML Whisper file.
    pub model: String,
    /// Clips transcribed at once by one worker; each has its own decoding state, the weights
    /// are shared. Scale out with replicas rather than this on small machines.
    pub workers: usize,
    /// ggml threads per transcription. ggml degrades badly when its threads compete for busy
    /// cores: keep 1 unless the worker has cores to itself.
    pub threads: usize,
    /// `greedy` (fast) or `beam` (beam search, `beam_size` wide).
    pub decoding: Decoding,
    pub beam_size: u32,
    /// `auto` detects the language with multilingual models; otherwise an ISO 639-1 code.
    pub language: String,
    /// Audio beyond this is not transcribed; the signal then carries `transcript_truncated`.
    pub max_audio_s: f64,
    /// Largest PCM payload accepted from the media stage.
    pub max_pcm_bytes: u64,
    /// The longest one transcription attempt may take.
    pub attempt_timeout_s: f64,
    /// Run whisper's encoder over the speech's length (plus 2.56 s) instead of a full 30 s
    /// window, for speech shorter than that: whisper pads every window to 30 s, so a 4 s clip
    /// otherwise costs as much as a 30 s one. On the 406 exemplar sentences of the text policy
    /// spoken by Festival (whisper tiny.en, greedy, one thread): realtime factor 0.085 vs
    /// 0.468 (5.5× less work), word errors 9.37 vs 8.44 %
    /// (`cargo run --release -p clipguard-transcribe --example espeak_wer -- --voices
    /// festival:cmu_us_slt_arctic_hts --fit on,off`). `false` for the last point of accuracy.
    /// Greedy decoding only: beam search keeps the full window.
    pub fit_audio_context: bool,
    pub vad: VadConfig,
}

impl Default for TranscribeConfig {
    fn default() -> Self {
        TranscribeConfig {
            model: "whisper-tiny.en".into(),
            workers: 1,
            threads: 1,
            decoding: Decoding::Greedy,
            beam_size: 5,
            language: "auto".into(),
            max_audio_s: 600.0,
            // One hour of 16 kHz mono s16.
            max_pcm_bytes: 3600 * 16_000 * 2,
            attempt_timeout_s: 600.0,
            fit_audio_context: true,
            vad: VadConfig::default(),
        }
    }
}

impl TranscribeConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.model.is_empty() {
            problems.push("transcribe.model: empty".into());
        }
        if self.workers == 0 {
            problems.push("transcribe.workers: must be at least 1".into());
        }
        if self.threads == 0 {
            problems.push("transcribe.threads: must be at least 1".into());
        }
        if self.decoding == Decoding::Beam && !(1..=16).contains(&self.beam_size) {
            problems.push(format!(
                "transcribe.beam_size: {} is outside 1..=16",
                self.beam_size
            ));
        }
        if self.max_audio_s.is_nan() || self.max_audio_s <= 0.0 {
            problems.push("transcribe.max_audio_s: must be positive".into());
        }
        if self.attempt_timeout_s.is_nan() || self.attempt_timeout_s <= 0.0 {
            problems.push("transcribe.attempt_timeout_s: must be positive".into());
        }
        self.vad.validate(problems);
    }
}
