//! The media stage: turns a submitted clip into what the rest of the pipeline needs.
//!
//! For each `ClipSubmitted` it fetches the media (inline or by claim check, SHA-256 verified),
//! decodes it with GStreamer (anything `decodebin` can), samples frames on a clock plus scene
//! cuts, keeps small JPEG thumbnails for the classifiers (full-resolution frames never leave the
//! worker), extracts 16 kHz mono PCM, and enforces limits on bytes, duration, resolution, frame
//! count and wall-clock time. It emits a `MediaExtract` on `clips.media` and exactly one
//! `Signal` on `clips.signals`; undecodable media becomes an error signal with a precise kind
//! (`media_error:<kind>` in the verdict) plus a record on `clips.dlq`. The worker never crashes
//! on input: decoding runs on a blocking thread under a deadline.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use clipguard_media::{MediaConfig, MediaStage};
//! use clipguard_pipeline::store::{MediaStore, StoreConfig};
//! let stage = MediaStage::new(MediaConfig::default(), MediaStore::open(&StoreConfig::default())?)?;
//! let result = stage.process_clip(&Default::default()).await;
//! println!("{:?}", result.signal);
//! # Ok(()) }
//! ```

pub mod decode;
pub mod error;
pub mod frames;
pub mod grpc;
pub mod provenance;
pub mod sparse;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clipguard_pipeline::stage::error_signal_record;
use clipguard_pipeline::store::{FetchError, MediaStore};
use clipguard_pipeline::{Outputs, ProcessCtx, Record, Stage, StageError, now_ms, topics};
use clipguard_schemas::media_ref::Location;
use clipguard_schemas::{
    AudioTrack, CategoryScore, ClipContext, ClipSubmitted, DeadLetter, Evidence, MediaExtract,
    MediaInfo, MediaRef, MediaResult, Provenance, SampledFrame, Signal,
    StageError as StageErrorMsg, Thumbnail,
};
use md5::Digest as _;
use serde::Deserialize;
use tokio::sync::Semaphore;

pub use decode::Decoded;
pub use error::MediaError;

/// Stage name, consumer group suffix and signal `stage` field.
pub const NAME: &str = clipguard_schemas::names::stage::MEDIA;

/// Settings of the media stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MediaConfig {
    /// Frames sampled per second of video on the clock.
    pub sample_fps: f64,
    /// Scene-cut sensitivity: mean absolute luma change (0–1) between consecutive frames on a
    /// coarse grid that counts as a cut; 0 turns scene-cut sampling off.
    pub scene_cut_threshold: f32,
    /// Minimum time between a picked frame and a scene-cut pick.
    pub min_scene_gap_s: f64,
    /// At most this many frames are sampled per clip.
    pub max_sampled_frames: u32,
    /// Thumbnails' shorter side in pixels (never upscaled).
    pub thumbnail_short_side: u32,
    /// JPEG quality of thumbnails, 1–100.
    pub jpeg_quality: u8,
    /// Compute PDQ hashes of frames (vPDQ, and each sampled frame) for the hashmatch stage.
    pub pdq: bool,
    /// vPDQ frames per second hashed (every `fps / rate`-th frame, as the reference picks
    /// them); 0 hashes every frame. Banks of video hashes should be built at the same rate.
    pub pdq_rate_hz: f64,
    /// 0 hashes frames at full size, as the reference does. Otherwise a large frame is hashed
    /// reduced by the largest integer factor (at most 4) that keeps its shorter side at least
    /// this long: 256 makes PDQ of a 720p frame 4× cheaper and moves its hash from the
    /// reference's by a median 4 bits (p95 10, max 18 on the reference's conformance videos, all
    /// match decisions unchanged; the match distance is 31).
    pub pdq_min_side: u32,
    /// A frame whose PDQ is within this distance of the last kept frame's is dropped from the
    /// vPDQ (0 drops exact repeats only, which never changes a match).
    pub pdq_prune_distance: u32,
    /// Extract 16 kHz mono audio for transcription.
    pub extract_audio: bool,
    /// Largest accepted media in bytes (checked before fetching and decoding).
    pub max_bytes: u64,
    /// Copy a decodable clip sent inline into the claim-check store (`clips/<sha256>`), so the
    /// verdict can say where its bytes are for the release stage (rendition, "made by us"
    /// index). Clips sent by URI are never copied.
    pub store_inline: bool,
    /// PEM bundle of the root certificates C2PA signers may chain to (a manifest signed under
    /// one is `trusted`, which a policy's `[provenance]` rule requires by default); empty: none.
    pub c2pa_trust_anchors: String,
    /// Longest accepted clip in seconds.
    pub max_duration_s: f64,
    /// Largest accepted frame width.
    pub max_width: u32,
    /// Largest accepted frame height.
    pub max_height: u32,
    /// Most decoded frames accepted per clip.
    pub max_frames: u64,
    /// Wall-clock deadline for decoding one clip, seconds.
    pub deadline_s: f64,
    /// A decode in which no data moves (no sample, no new stream, no pipeline message) for this
    /// long is stopped as `corrupt`: GStreamer's decodebin can swallow the error of a demuxer
    /// that fails at once on a broken file, and the pipeline would otherwise wait out the whole
    /// deadline.
    pub stall_timeout_s: f64,
    /// Clips decoded at once by one worker; 0 = the number of CPUs.
    pub max_concurrent_decodes: usize,
    /// `full` decodes every frame; `sparse` decodes only the frames sampling needs (see
    /// [`DecodeMode`]).
    pub decode: DecodeMode,
    /// Sparse decoding: every sampling time has a decoded frame at most this many seconds
    /// away; a keyframe that close serves, otherwise the frames up to the wanted one are
    /// decoded.
    pub sparse_tolerance_s: f64,
}

/// How much of the video stream is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    /// Every frame: scene cuts found between consecutive frames, vPDQ at `pdq_rate_hz` exactly
    /// as the reference hasher picks frames.
    #[default]
    Full,
    /// A demux-only pass reads where the keyframes are; then the decoder gets each keyframe
    /// and, only where no keyframe lies within `sparse_tolerance_s` of a sampling time, the
    /// frames up to the one nearest that time; every other frame is dropped before decoding.
    /// Scene cuts are not looked for (decoded frames are not consecutive), and the vPDQ holds
    /// the decoded frames at most `pdq_rate_hz` apart.
    Sparse,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            sample_fps: 1.0,
            scene_cut_threshold: 0.15,
            min_scene_gap_s: 0.5,
            max_sampled_frames: 64,
            thumbnail_short_side: 256,
            jpeg_quality: 85,
            pdq: true,
            pdq_rate_hz: 1.0,
            pdq_min_side: 0,
            pdq_prune_distance: 0,
            extract_audio: true,
            max_bytes: 512 * 1024 * 1024,
            store_inline: true,
            c2pa_trust_anchors: String::new(),
            max_duration_s: 600.0,
            max_width: 7680,
            max_height: 4320,
            max_frames: 100_000,
            deadline_s: 120.0,
            stall_timeout_s: 10.0,
            max_concurrent_decodes: 0,
            decode: DecodeMode::Full,
            sparse_tolerance_s: 1.0,
        }
    }
}

impl MediaConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if !self.c2pa_trust_anchors.is_empty() {
            match std::fs::read_to_string(&self.c2pa_trust_anchors) {
                Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {}
                Ok(_) => problems.push(format!(
                    "media.c2pa_trust_anchors: {} holds no PEM certificate",
                    self.c2pa_trust_anchors
                )),
                Err(e) => problems.push(format!(
                    "media.c2pa_trust_anchors: {}: {e}",
                    self.c2pa_trust_anchors
                )),
            }
        }
        if !(0.0..=60.0).contains(&self.sample_fps) {
            problems.push(format!(
                "media.sample_fps: {} is outside 0..=60",
                self.sample_fps
            ));
        }
        if !(0.0..=1.0).contains(&self.scene_cut_threshold) {
            problems.push(format!(
                "media.scene_cut_threshold: {} is outside 0..=1",
                self.scene_cut_threshold
            ));
        }
        if !(0.0..=240.0).contains(&self.pdq_rate_hz) {
            problems.push(format!(
                "media.pdq_rate_hz: {} is outside 0..=240 (0 = every frame)",
                self.pdq_rate_hz
            ));
        }
        if self.decode == DecodeMode::Sparse && self.pdq && self.pdq_rate_hz == 0.0 {
            problems.push(
                "media.pdq_rate_hz: 0 (every frame) needs media.decode = \"full\"; sparse \
                 decoding hashes only the frames it decodes"
                    .into(),
            );
        }
        if self.pdq_min_side != 0 && !(64..=4096).contains(&self.pdq_min_side) {
            problems.push(format!(
                "media.pdq_min_side: {} is outside 64..=4096 (0 = full size)",
                self.pdq_min_side
            ));
        }
        if !(0.0..=60.0).contains(&self.sparse_tolerance_s) {
            problems.push(format!(
                "media.sparse_tolerance_s: {} is outside 0..=60",
                self.sparse_tolerance_s
            ));
        }
        if self.pdq_prune_distance > 64 {
            problems.push(format!(
                "media.pdq_prune_distance: {} is above 64, which would merge unrelated frames",
                self.pdq_prune_distance
            ));
        }
        if self.max_sampled_frames == 0 {
            problems.push("media.max_sampled_frames: must be >= 1".into());
        }
        if !(16..=1024).contains(&self.thumbnail_short_side) {
            problems.push(format!(
                "media.thumbnail_short_side: {} is outside 16..=1024",
                self.thumbnail_short_side
            ));
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            problems.push(format!(
                "media.jpeg_quality: {} is outside 1..=100",
                self.jpeg_quality
            ));
        }
        if self.deadline_s.is_nan() || self.deadline_s <= 0.0 {
            problems.push(format!("media.deadline_s: {} must be > 0", self.deadline_s));
        }
        if !(self.stall_timeout_s >= 0.5 && self.stall_timeout_s <= 600.0) {
            problems.push(format!(
                "media.stall_timeout_s: {} is outside 0.5..=600",
                self.stall_timeout_s
            ));
        }
        if self.max_duration_s.is_nan() || self.max_duration_s <= 0.0 {
            problems.push(format!(
                "media.max_duration_s: {} must be > 0",
                self.max_duration_s
            ));
        }
        if self.max_bytes == 0
            || self.max_width == 0
            || self.max_height == 0
            || self.max_frames == 0
        {
            problems.push("media.max_bytes, max_width, max_height, max_frames: must be > 0".into());
        }
    }
}

/// `provenance_invalid` for a C2PA manifest that fails validation (1.0, with the failures and
/// the claim generator as evidence); nothing for a valid or absent one.
fn provenance_scores(p: &Provenance) -> Vec<CategoryScore> {
    if p.state != provenance::INVALID {
        return Vec::new();
    }
    let by = if p.claim_generator.is_empty() {
        String::new()
    } else {
        format!(" by {}", p.claim_generator)
    };
    vec![CategoryScore {
        category: clipguard_schemas::names::category::PROVENANCE_INVALID.into(),
        score: 1.0,
        evidence: vec![Evidence {
            kind: "media".into(),
            start_s: 0.0,
            end_s: 0.0,
            detail: format!(
                "the C2PA manifest{by} fails validation: {}",
                p.validation_errors.join("; ")
            ),
        }],
    }]
}

/// What the stage produces for one clip, with the dead letter for undecodable media.
#[derive(Debug, Clone)]
pub struct MediaOutput {
    pub result: MediaResult,
    pub dead_letter: Option<DeadLetter>,
}

impl Outputs for MediaOutput {
    fn into_records(self) -> Vec<Record> {
        let mut records = Vec::with_capacity(3);
        let signal = self.result.signal.unwrap_or_default();
        let key = signal.clip_id.clone();
        if let Some(extract) = &self.result.extract {
            records.push(Record::extract(&key, extract));
        }
        if let Some(letter) = &self.dead_letter {
            records.push(Record::dead_letter(&key, letter));
        }
        records.push(Record::signal(&key, &signal));
        records
    }
}

/// Settings apart; the decode-slot semaphore and store are the stage's state.
#[derive(Debug)]
pub struct MediaStage {
    config: MediaConfig,
    store: MediaStore,
    decode_slots: Arc<Semaphore>,
    /// `c2pa_trust_anchors`, read at start.
    trust_anchors: Option<Arc<str>>,
}

impl MediaStage {
    /// Builds the stage; fails at once when GStreamer or a needed element is missing.
    pub fn new(config: MediaConfig, store: MediaStore) -> Result<Self, MediaError> {
        decode::init()?;
        let slots = if config.max_concurrent_decodes == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            config.max_concurrent_decodes
        };
        let trust_anchors = if config.c2pa_trust_anchors.is_empty() {
            None
        } else {
            let pem = std::fs::read_to_string(&config.c2pa_trust_anchors).map_err(|e| {
                MediaError::Internal(format!(
                    "media.c2pa_trust_anchors {}: {e}",
                    config.c2pa_trust_anchors
                ))
            })?;
            Some(Arc::from(pem))
        };
        Ok(Self {
            config,
            store,
            decode_slots: Arc::new(Semaphore::new(slots)),
            trust_anchors,
        })
    }

    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    /// Processes one clip; every error becomes an error signal in the result (for callers that
    /// want an answer whatever happened: tests, benchmarks). The gRPC service answers with
    /// [`MediaStage::answer`] instead.
    pub async fn process_clip(&self, clip: &ClipSubmitted) -> MediaResult {
        self.try_process(clip)
            .await
            .unwrap_or_else(|e| error_result(clip, &e))
    }

    async fn try_process(&self, clip: &ClipSubmitted) -> Result<MediaResult, MediaError> {
        let context = context_of(clip);
        let media = clip.media.clone().unwrap_or_default();
        if media.location.is_none() {
            return Err(MediaError::Fetch(FetchError::MissingMedia(
                "the clip names no media".into(),
            )));
        }
        if media.size_bytes > self.config.max_bytes {
            return Err(MediaError::TooLarge {
                size: media.size_bytes,
                limit: self.config.max_bytes,
            });
        }
        let bytes = self
            .store
            .fetch(&media, self.config.max_bytes)
            .await
            .map_err(|e| match e {
                FetchError::TooLarge { size, limit, .. } => MediaError::TooLarge { size, limit },
                e => MediaError::Fetch(e),
            })?;
        if bytes.is_empty() {
            return Err(MediaError::Empty);
        }
        let (decoded, digests) = self.decode(bytes.clone()).await?;
        // Best effort: a store that fails here costs the release stage this clip, not the
        // clip its verdict.
        let stored = match self.stored(&media, bytes, &digests.0).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(clip_id = %clip.clip_id, error = %e, "clip bytes not kept");
                None
            }
        };
        let info = MediaInfo {
            duration_s: decoded.duration_s,
            width: decoded.width,
            height: decoded.height,
            fps: decoded.fps,
            container: decoded.container.clone(),
            video_codec: decoded.video_codec.clone(),
            audio_codec: decoded.audio_codec.clone(),
            has_audio: decoded.audio.is_some(),
            frames_decoded: decoded.frames_decoded,
            size_bytes: media.size_bytes,
            provenance: Some(digests.2.clone()),
            stored,
        };
        let scores = provenance_scores(&digests.2);
        let extract = self
            .build_extract(clip, context.clone(), info.clone(), decoded)
            .await?;
        let extract = MediaExtract {
            sha256: digests.0,
            md5: digests.1,
            ..extract
        };
        let signal = Signal {
            clip_id: clip.clip_id.clone(),
            stage: NAME.into(),
            context: Some(context),
            body: Some(clipguard_schemas::signal::Body::Media(info)),
            scores,
            produced_at_ms: now_ms(),
            ..Default::default()
        };
        Ok(MediaResult {
            extract: Some(extract),
            signal: Some(signal),
        })
    }

    /// Where the clip's bytes stay after the verdict: its claim-check URI, or, for a clip sent
    /// inline with `store_inline`, the URI it is now stored under (content-addressed: a
    /// redelivered clip overwrites the same object with the same bytes).
    async fn stored(
        &self,
        media: &MediaRef,
        bytes: Bytes,
        sha256: &str,
    ) -> Result<Option<MediaRef>, MediaError> {
        let uri = match &media.location {
            Some(Location::Uri(uri)) => uri.clone(),
            Some(Location::Inline(_)) if self.config.store_inline => self
                .store
                .put(&format!("clips/{sha256}"), bytes)
                .await
                .map_err(|e| MediaError::Store(e.to_string()))?,
            _ => return Ok(None),
        };
        Ok(Some(MediaRef {
            location: Some(Location::Uri(uri)),
            sha256: sha256.to_string(),
            size_bytes: media.size_bytes,
            content_type: media.content_type.clone(),
        }))
    }

    /// Decodes on a blocking thread; also returns the bytes' SHA-256 and MD5 (hex), for the
    /// exact-match banks.
    async fn decode(
        &self,
        bytes: Bytes,
    ) -> Result<(Decoded, (String, String, Provenance)), MediaError> {
        let _slot = self
            .decode_slots
            .acquire()
            .await
            .map_err(|e| MediaError::Internal(e.to_string()))?;
        let settings = self.config.clone();
        let anchors = self.trust_anchors.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = tempfile::Builder::new()
                .prefix("clipguard-media-")
                .tempfile()
                .map_err(|e| MediaError::Internal(format!("temp file: {e}")))?;
            std::io::Write::write_all(&mut file, &bytes)
                .map_err(|e| MediaError::Internal(format!("temp file: {e}")))?;
            // The digests and the C2PA manifest are worked out beside the decoder.
            std::thread::scope(|scope| {
                let digests = scope.spawn(|| {
                    (
                        clipguard_pipeline::store::sha256_hex(&bytes),
                        hex::encode(md5::Md5::digest(&bytes)),
                        provenance::read_trusting(&bytes, anchors.as_deref()),
                    )
                });
                let decoded = decode::decode_file(file.path(), &settings);
                let digests = digests
                    .join()
                    .map_err(|_| MediaError::Internal("digest thread panicked".into()))?;
                Ok((decoded?, digests))
            })
        })
        .await
        .map_err(|e| MediaError::Internal(format!("decoder thread: {e}")))?
    }

    /// Packs thumbnails and audio: inline while the message stays small, by claim check beyond.
    async fn build_extract(
        &self,
        clip: &ClipSubmitted,
        context: ClipContext,
        info: MediaInfo,
        decoded: Decoded,
    ) -> Result<MediaExtract, MediaError> {
        let store_err = |e: clipguard_pipeline::PipelineError| MediaError::Store(e.to_string());
        // Leave half the message budget for everything but blobs.
        let mut budget = topics::MAX_MESSAGE_BYTES / 2;
        let base = format!("extract/{}/r{}", safe_key(&clip.clip_id), clip.revision);
        let mut put = async |key: String, bytes: Vec<u8>, content_type: &str| {
            let len = bytes.len();
            let inline_ok = len <= budget;
            let r = self
                .store
                .reference(&key, Bytes::from(bytes), content_type, inline_ok)
                .await;
            let r = r.map_err(store_err)?;
            if matches!(
                r.location,
                Some(clipguard_schemas::media_ref::Location::Inline(_))
            ) {
                budget -= len;
            }
            Ok::<_, MediaError>(r)
        };
        let audio = match decoded.audio {
            Some(pcm) => {
                let duration_s = pcm.len() as f64 / 32_000.0;
                let pcm = put(
                    format!("{base}/audio.s16le"),
                    pcm,
                    "audio/L16;rate=16000;channels=1",
                )
                .await?;
                Some(AudioTrack {
                    pcm: Some(pcm),
                    sample_rate: 16_000,
                    channels: 1,
                    duration_s,
                })
            }
            None => None,
        };
        let mut frames = Vec::with_capacity(decoded.frames.len());
        for f in decoded.frames {
            let image = put(
                format!("{base}/frame-{:06}.jpg", f.index),
                f.jpeg,
                "image/jpeg",
            )
            .await?;
            frames.push(SampledFrame {
                index: f.index,
                timestamp_s: f.timestamp_s,
                scene_cut: f.scene_cut,
                pdq: f.pdq.map(|h| h.hash.0.to_vec()).unwrap_or_default(),
                pdq_quality: f.pdq.map(|h| h.quality).unwrap_or_default(),
                thumbnail: Some(Thumbnail {
                    image: Some(image),
                    width: f.width,
                    height: f.height,
                }),
            });
        }
        let frame_hash_max_gap_s = decoded.frame_hash_max_gap_s;
        let (frame_hashes, prune_distance) =
            fit_frame_hashes(decoded.frame_hashes, self.config.pdq_prune_distance);
        Ok(MediaExtract {
            clip_id: clip.clip_id.clone(),
            context: Some(context),
            info: Some(info),
            frames,
            audio,
            frame_hashes,
            frame_hash_prune_distance: prune_distance,
            frame_hash_max_gap_s,
            ..Default::default()
        })
    }
}

/// Encoded size of one frame hash, a little over: 32 bytes of hash, frame, time, quality, tags.
const FRAME_HASH_BYTES: usize = 56;

/// Converts the vPDQ to messages, keeping it within a quarter of the message budget: a long clip
/// hashed at a high rate is pruned harder (distance raised in steps, as the reference README
/// suggests for size), and as a last resort thinned evenly. Returns the pruning distance applied.
fn fit_frame_hashes(
    frames: Vec<clipguard_pdq::vpdq::FrameHash>,
    configured: u32,
) -> (Vec<clipguard_schemas::FrameHash>, u32) {
    use clipguard_pdq::vpdq::prune;
    let max = topics::MAX_MESSAGE_BYTES / 4 / FRAME_HASH_BYTES;
    let mut distance = configured;
    let mut kept = prune(&frames, distance);
    while kept.len() > max && distance < 32 {
        distance = (distance + 4).min(32);
        kept = prune(&kept, distance);
    }
    if kept.len() > max {
        let step = kept.len().div_ceil(max);
        kept = kept.into_iter().step_by(step).collect();
    }
    let out = kept
        .into_iter()
        .map(|f| clipguard_schemas::FrameHash {
            frame: f.frame,
            timestamp_s: f.timestamp_s,
            pdq: f.hash.0.to_vec(),
            quality: f.quality,
        })
        .collect();
    (out, distance)
}

fn safe_key(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The context every downstream consumer needs.
pub fn context_of(clip: &ClipSubmitted) -> ClipContext {
    ClipContext {
        source: clip.source.clone(),
        audience: clip.audience.clone(),
        revision: clip.revision,
        submitted_at_ms: clip.submitted_at_ms,
        prompt: clip.prompt.clone(),
        scene_description: clip.scene_description.clone(),
    }
}

fn error_result(clip: &ClipSubmitted, e: &MediaError) -> MediaResult {
    let signal = Signal {
        clip_id: clip.clip_id.clone(),
        stage: NAME.into(),
        error: Some(StageErrorMsg {
            kind: e.kind().into(),
            message: e.to_string(),
        }),
        context: Some(context_of(clip)),
        produced_at_ms: now_ms(),
        reasons: vec![format!("media_error:{}", e.kind())],
        ..Default::default()
    };
    MediaResult {
        extract: None,
        signal: Some(signal),
    }
}

impl Stage for MediaStage {
    type Input = ClipSubmitted;
    type Output = MediaOutput;

    fn name(&self) -> &'static str {
        NAME
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.config.deadline_s + 60.0)
    }

    async fn process(
        &self,
        mut input: ClipSubmitted,
        ctx: &ProcessCtx,
    ) -> Result<MediaOutput, StageError> {
        if input.clip_id.is_empty() {
            input.clip_id = ctx.clip_id.clone();
        } else if input.clip_id != ctx.clip_id {
            // The key decides the partition, and so which monitor joins the clip's signals:
            // a payload naming another clip breaks the contract.
            return Err(StageError::input(
                "key_mismatch",
                format!(
                    "the message key `{}` and the payload's clip_id `{}` differ; the key must be \
                     the clip id",
                    ctx.clip_id, input.clip_id
                ),
            ));
        }
        match self.try_process(&input).await {
            Ok(result) => Ok(MediaOutput {
                result,
                dead_letter: None,
            }),
            Err(e) if e.is_input() => {
                tracing::info!(clip_id = %input.clip_id, kind = e.kind(), error = %e, "undecodable media");
                let mut original = input.clone();
                // Keep the dead letter under the message limit: a large inline clip is dropped.
                if let Some(m) = original.media.as_mut()
                    && matches!(&m.location, Some(clipguard_schemas::media_ref::Location::Inline(b)) if b.len() > topics::MAX_MESSAGE_BYTES / 2)
                {
                    m.location = None;
                }
                let letter = DeadLetter {
                    stage: NAME.into(),
                    topic: ctx.topic.into(),
                    partition: -1,
                    offset: -1,
                    key: input.clip_id.clone(),
                    payload: prost::Message::encode_to_vec(&original),
                    reason: format!("media_error:{}: {e}", e.kind()),
                    attempts: ctx.attempt,
                    failed_at_ms: now_ms(),
                };
                Ok(MediaOutput {
                    result: error_result(&input, &e),
                    dead_letter: Some(letter),
                })
            }
            Err(e) => Err(e.into_stage_error()),
        }
    }

    fn clip_id_of(&self, input: &ClipSubmitted) -> Option<String> {
        Some(input.clip_id.clone())
    }

    fn poison_outputs(&self, clip_id: &str, error: &StageError) -> Vec<Record> {
        vec![error_signal_record(NAME, clip_id, error, None)]
    }
}
