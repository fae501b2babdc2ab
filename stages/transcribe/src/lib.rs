//! The transcribe stage: speech in a clip's audio → text with segment timestamps, on
//! `clips.transcripts` and as the stage's signal for the monitor.
//!
//! It consumes the media stage's extracts. A clip without audio gets an empty transcript at
//! once; otherwise the voice-activity gate picks the speech and whisper.cpp (one shared model,
//! a decoding state per concurrent clip, 1 ggml thread each by default) transcribes only that.

pub mod config;
pub mod engine;
pub mod grpc;
pub mod vad;
pub mod wer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clipguard_pipeline::stage::error_signal;
use clipguard_pipeline::store::MediaStore;
use clipguard_pipeline::{Failure, ProcessCtx, Record, Stage, StageError, now_ms};
use clipguard_schemas::{MediaExtract, Signal, Transcript, TranscriptSegment};
use tokio::sync::Semaphore;

pub use config::{Decoding, TranscribeConfig};
pub use engine::{Engine, Transcription};

pub const NAME: &str = clipguard_schemas::names::stage::TRANSCRIBE;

#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error("{0}")]
    Config(String),
    #[error("model: {0}")]
    Model(String),
    #[error(transparent)]
    Models(#[from] clipguard_models::ModelError),
    #[error("whisper: {0}")]
    Whisper(String),
}

impl clipguard_pipeline::Failure for TranscribeError {
    /// Configuration and model files are the deployment's to fix (input); whisper failing is
    /// ours; the model cache's errors say whose they are.
    fn domain(&self) -> clipguard_pipeline::ErrorDomain {
        use clipguard_pipeline::ErrorDomain;
        match self {
            TranscribeError::Config(_) | TranscribeError::Model(_) => ErrorDomain::Input,
            TranscribeError::Models(e) if e.is_external() => ErrorDomain::External,
            TranscribeError::Models(_) => ErrorDomain::Input,
            TranscribeError::Whisper(_) => ErrorDomain::Internal,
        }
    }
}

/// The stage: engine, media store for claim-checked audio, and a bound on concurrent work.
#[derive(Debug)]
pub struct TranscribeStage {
    engine: Arc<Engine>,
    store: MediaStore,
    /// One per concurrent transcription; held by the whisper thread itself, so a timed-out
    /// attempt (whose thread runs on) still counts until whisper returns.
    permits: Arc<Semaphore>,
    config: TranscribeConfig,
}

/// What one clip became, before it is put on topics.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub signal: Signal,
    /// Absent when the audio could not be read (the signal carries the error).
    pub transcript: Option<Transcript>,
    /// Seconds spent in this stage's work for the clip (fetch, gate, whisper).
    pub elapsed_s: f64,
}

impl TranscribeStage {
    pub fn new(config: TranscribeConfig, store: MediaStore) -> Result<Self, TranscribeError> {
        let mut problems = Vec::new();
        config.validate(&mut problems);
        if !problems.is_empty() {
            return Err(TranscribeError::Config(problems.join("; ")));
        }
        let engine = Arc::new(Engine::load(&config)?);
        Ok(TranscribeStage {
            engine,
            store,
            permits: Arc::new(Semaphore::new(config.workers)),
            config,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Transcribes one extract. Bad audio becomes an error signal; `Err` only when the attempt
    /// itself failed (the store is unreachable, whisper failed) and a retry may help.
    pub async fn transcribe_extract(&self, extract: &MediaExtract) -> Result<Outcome, StageError> {
        let started = Instant::now();
        let clip_id = extract.clip_id.clone();
        let Some(audio) = extract.audio.as_ref() else {
            let nothing = Transcription {
                language: self.engine.configured_language(),
                ..Transcription::default()
            };
            let t = transcript_of(extract, &nothing);
            return Ok(Outcome {
                signal: signal_of(extract, Some(t.clone()), Vec::new()),
                transcript: Some(t),
                elapsed_s: started.elapsed().as_secs_f64(),
            });
        };
        let bad = |kind: &'static str, message: String| {
            let error = StageError::input(kind, message);
            tracing::info!(clip_id = %clip_id, kind, error = %error.message, "unusable audio");
            Ok(Outcome {
                signal: error_signal(NAME, &extract.clip_id, &error, None),
                transcript: None,
                elapsed_s: started.elapsed().as_secs_f64(),
            })
        };
        if audio.sample_rate != vad::SAMPLE_RATE as u32 || audio.channels != 1 {
            return bad(
                "audio_format",
                format!(
                    "audio is {} Hz × {} channels; the media stage sends 16000 Hz mono",
                    audio.sample_rate, audio.channels
                ),
            );
        }
        let Some(pcm_ref) = audio.pcm.as_ref() else {
            return bad("missing_media", "the audio track names no PCM".into());
        };
        let bytes = match self.store.fetch(pcm_ref, self.config.max_pcm_bytes).await {
            Ok(b) => b,
            Err(e) if e.retryable() => return Err(e.into()),
            Err(e) => return bad(e.kind(), e.to_string()),
        };
        if bytes.len() % 2 != 0 {
            return bad(
                "audio_format",
                format!("PCM is {} bytes, not whole 16-bit samples", bytes.len()),
            );
        }
        let pcm: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StageError::external("shutdown", "the stage is stopping"))?;
        let engine = self.engine.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            engine.transcribe(&pcm)
        })
        .await
        .map_err(|e| {
            StageError::internal(
                clipguard_pipeline::error::kind::PANIC,
                format!("transcription panicked: {e}"),
            )
        })?;
        let t = result.map_err(|e| StageError::internal("whisper", e.to_string()))?;
        let mut reasons = Vec::new();
        if t.truncated {
            reasons.push("transcript_truncated".to_string());
        }
        let transcript = transcript_of(extract, &t);
        tracing::debug!(
            clip_id = %clip_id,
            audio_s = t.audio_s,
            speech_s = t.speech_s,
            segments = t.segments.len(),
            elapsed_s = started.elapsed().as_secs_f64(),
            "transcribed"
        );
        Ok(Outcome {
            signal: signal_of(extract, Some(transcript.clone()), reasons),
            transcript: Some(transcript),
            elapsed_s: started.elapsed().as_secs_f64(),
        })
    }
}

fn transcript_of(extract: &MediaExtract, t: &Transcription) -> Transcript {
    Transcript {
        clip_id: extract.clip_id.clone(),
        language: t.language.clone(),
        text: t.text.clone(),
        segments: t
            .segments
            .iter()
            .map(|s| TranscriptSegment {
                start_s: s.start_s,
                end_s: s.end_s,
                text: s.text.clone(),
            })
            .collect(),
        context: extract.context.clone(),
    }
}

fn signal_of(
    extract: &MediaExtract,
    transcript: Option<Transcript>,
    reasons: Vec<String>,
) -> Signal {
    Signal {
        clip_id: extract.clip_id.clone(),
        stage: NAME.to_string(),
        body: transcript.map(clipguard_schemas::signal::Body::Transcript),
        reasons,
        produced_at_ms: now_ms(),
        ..Signal::default()
    }
}

impl Stage for TranscribeStage {
    type Input = MediaExtract;
    type Output = Vec<Record>;

    fn name(&self) -> &'static str {
        NAME
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.config.attempt_timeout_s)
    }

    async fn process(
        &self,
        mut input: MediaExtract,
        ctx: &ProcessCtx,
    ) -> Result<Vec<Record>, StageError> {
        if input.clip_id.is_empty() {
            input.clip_id = ctx.clip_id.clone();
        }
        let key = input.clip_id.clone();
        let outcome = self.transcribe_extract(&input).await?;
        let mut records = Vec::with_capacity(2);
        if let Some(t) = &outcome.transcript {
            records.push(Record::transcript(key.clone(), t));
        }
        records.push(Record::signal(key, &outcome.signal));
        Ok(records)
    }
}
