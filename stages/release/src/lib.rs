//! The release stage: what happens to a clip after its verdict. It consumes `clips.verdicts` and,
//! for a clip its verdict allows (in the clip's own audience):
//!
//! - **Outgoing rendition**, for clips on the surfaces that need one (`download` by default)
//!   once an operator signing key is configured: the clip re-encoded with a visible moving
//!   watermark ([`watermark`]) and a C2PA manifest signed with the operator's key that records
//!   the original as its parent ingredient and clipguard's moderation as an assertion
//!   ([`sign`]). The file goes to the claim-check store; a [`Rendition`] record keyed by clip id
//!   goes to the compacted `clips.renditions`. Every verdict of a clip on such a surface gets a
//!   record: the rendition, or why there is none (renditions off, not allowed, bytes not kept, rendering
//!   failed), so a service delivering downloads waits for one record and never for ever.
//! - **"Made by us" index**, when `release.index_dir` is set: the clip's vPDQ joins the
//!   `internal_generated` bank ([`index`]); `clipguard provenance lookup VIDEO` and the
//!   `ProvenanceLookup` service answer whether a video was generated and allowed here. A later
//!   revision of the verdict that no longer allows the clip takes it out again.
//!
//! Why a topic of its own and not a second verdict revision: a verdict is published the moment
//! it is decided, while a rendition takes seconds of encoding; a revision that only adds a
//! pointer would give every verdict reader two revisions of each downloadable clip, and
//! revisions are kept for changes of the decision (reviews, appeals).

pub mod cli;
pub mod grpc;
pub mod index;
pub mod sign;
pub mod watermark;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clipguard_media::{MediaConfig, MediaError};
use clipguard_pipeline::store::{FetchError, MediaStore};
use clipguard_pipeline::{ProcessCtx, Record, Stage, StageError, now_ms};
use clipguard_policy::{Audience, surface_word};
use clipguard_schemas::media_ref::Location;
use clipguard_schemas::names::stage;
use clipguard_schemas::{
    Decision, GeneratedMatch, LookupResponse, MediaRef, ReleaseResult, Rendition, Surface, Verdict,
};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::index::Index;
use crate::sign::{Moderation, Signing};
use crate::watermark::{Encoding, Watermark};

/// Stage name and consumer group suffix.
pub const NAME: &str = stage::RELEASE;

/// Settings of the release stage (`[release]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ReleaseConfig {
    /// Surfaces whose allowed clips get a rendition: `download`, `feed`, `private`.
    pub rendition_surfaces: Vec<String>,
    /// PEM certificate chain (end-entity first) of the operator's C2PA signing key. Empty: no
    /// renditions are made.
    pub signing_cert: String,
    /// The private key (PEM) as a file; empty: read from the environment variable
    /// `signing_key_env` (a mounted secret). Never a command-line argument.
    pub signing_key: String,
    pub signing_key_env: String,
    /// `es256`, `es384`, `es512`, `ps256`, `ps384`, `ps512` or `ed25519`.
    pub signing_alg: String,
    /// The watermark: a PNG file; empty: clipguard's built-in mark.
    pub watermark_image: String,
    /// Its width as a fraction of the frame's.
    pub watermark_width: f64,
    /// Its opacity, 0–1.
    pub watermark_alpha: f64,
    /// Seconds the mark takes to cross the frame.
    pub watermark_crossing_s: f64,
    /// H.264 bitrate of the rendition, kbit/s.
    pub video_bitrate_kbps: u32,
    /// Renditions encoded at once by one worker.
    pub max_concurrent_renders: usize,
    /// Wall-clock limit for one rendition, seconds.
    pub deadline_s: f64,
    /// The "made by us" index folder (shared by every replica); empty: no index.
    pub index_dir: String,
    /// Clips the index keeps at most; past it the oldest go.
    pub index_max_clips: usize,
    /// Days a clip stays in the index.
    pub index_retention_days: f64,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        Self {
            rendition_surfaces: vec!["download".into()],
            signing_cert: String::new(),
            signing_key: String::new(),
            signing_key_env: "CLIPGUARD_RELEASE_SIGNING_KEY".into(),
            signing_alg: "es256".into(),
            watermark_image: String::new(),
            watermark_width: 0.25,
            watermark_alpha: 0.7,
            watermark_crossing_s: 4.0,
            video_bitrate_kbps: 2500,
            max_concurrent_renders: 1,
            deadline_s: 600.0,
            index_dir: String::new(),
            index_max_clips: 100_000,
            index_retention_days: 365.0,
        }
    }
}

impl ReleaseConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        for s in &self.rendition_surfaces {
            if surface(s).is_none() {
                problems.push(format!(
                    "release.rendition_surfaces: `{s}` is not a surface (private, feed, download)"
                ));
            }
        }
        if self.signing_alg.parse::<c2pa::SigningAlg>().is_err() {
            problems.push(format!(
                "release.signing_alg: `{}` is not one of es256, es384, es512, ps256, ps384, ps512, ed25519",
                self.signing_alg
            ));
        }
        let ranges = [
            ("watermark_width", self.watermark_width, 0.02, 1.0),
            ("watermark_alpha", self.watermark_alpha, 0.05, 1.0),
            (
                "watermark_crossing_s",
                self.watermark_crossing_s,
                0.5,
                600.0,
            ),
            (
                "video_bitrate_kbps",
                self.video_bitrate_kbps as f64,
                100.0,
                100_000.0,
            ),
            ("deadline_s", self.deadline_s, 1.0, 3600.0),
            (
                "index_retention_days",
                self.index_retention_days,
                0.01,
                36_500.0,
            ),
            (
                "max_concurrent_renders",
                self.max_concurrent_renders as f64,
                1.0,
                64.0,
            ),
            (
                "index_max_clips",
                self.index_max_clips as f64,
                1.0,
                10_000_000.0,
            ),
        ];
        for (key, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                problems.push(format!("release.{key}: {v} is outside {lo}..={hi}"));
            }
        }
    }
}

fn surface(word: &str) -> Option<Surface> {
    [Surface::Private, Surface::Feed, Surface::Download]
        .into_iter()
        .find(|s| surface_word(*s) == word)
}

/// Why the release stage could not do its part for a clip, or cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0}")]
    Config(String),
    #[error("rendering failed: {0}")]
    Render(String),
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("the \"made by us\" index: {0}")]
    Index(String),
    #[error("{0}")]
    Fetch(FetchError),
    #[error("store: {0}")]
    Store(String),
    #[error("decoding: {0}")]
    Media(MediaError),
}

impl clipguard_pipeline::Failure for ReleaseError {
    /// Settings are the deployment's to fix; a store or index that fails may recover.
    fn domain(&self) -> clipguard_pipeline::ErrorDomain {
        use clipguard_pipeline::ErrorDomain;
        match self {
            ReleaseError::Config(_) | ReleaseError::Media(_) => ErrorDomain::Input,
            ReleaseError::Fetch(e) => e.domain(),
            ReleaseError::Store(_) | ReleaseError::Index(_) => ErrorDomain::External,
            ReleaseError::Render(_) | ReleaseError::Sign(_) => ErrorDomain::Internal,
        }
    }
}

impl ReleaseError {
    /// What the host does with it: a failing store or index is retried; a clip that cannot be
    /// decoded is its own fault; the rest are this worker's.
    pub fn into_stage_error(self) -> StageError {
        match self {
            ReleaseError::Fetch(e) => e.into(),
            e @ (ReleaseError::Store(_) | ReleaseError::Index(_)) => {
                StageError::external("release_store", e.to_string())
            }
            ReleaseError::Media(e) => e.into_stage_error(),
            e => StageError::internal("release", e.to_string()),
        }
    }
}

/// The release stage.
#[derive(Debug)]
pub struct ReleaseStage {
    config: ReleaseConfig,
    media: MediaConfig,
    store: MediaStore,
    signing: Option<Arc<Signing>>,
    watermark: Option<Watermark>,
    /// The built-in mark's file, alive as long as the stage.
    _mark_file: Option<tempfile::TempPath>,
    surfaces: Vec<Surface>,
    index: Option<Arc<Index>>,
    renders: Semaphore,
}

impl ReleaseStage {
    /// Builds the stage: loads the signing key (when configured) and checks the GStreamer
    /// elements renditions need, opens the index folder; any problem stops the worker at start.
    pub fn new(
        config: ReleaseConfig,
        media: MediaConfig,
        store: MediaStore,
    ) -> Result<Self, ReleaseError> {
        let mut problems = Vec::new();
        config.validate(&mut problems);
        if !problems.is_empty() {
            return Err(ReleaseError::Config(problems.join("; ")));
        }
        let signing = Signing::load(&config)?.map(Arc::new);
        let (mut watermark, mut mark_file) = (None, None);
        if signing.is_some() {
            watermark::check_elements()?;
            let (path, description) = if config.watermark_image.is_empty() {
                let mut file = tempfile::Builder::new()
                    .prefix("clipguard-watermark-")
                    .suffix(".png")
                    .tempfile()
                    .map_err(|e| ReleaseError::Config(format!("watermark file: {e}")))?;
                std::io::Write::write_all(&mut file, &watermark::builtin_png()?)
                    .map_err(|e| ReleaseError::Config(format!("watermark file: {e}")))?;
                let path = file.into_temp_path();
                let p = PathBuf::from(&*path);
                mark_file = Some(path);
                (p, "clipguard's mark".to_string())
            } else {
                let p = PathBuf::from(&config.watermark_image);
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                (p, name)
            };
            let image_size = image::image_dimensions(&path).map_err(|e| {
                ReleaseError::Config(format!("release.watermark_image {}: {e}", path.display()))
            })?;
            watermark = Some(Watermark {
                image: path,
                image_size,
                width_fraction: config.watermark_width,
                alpha: config.watermark_alpha,
                crossing_s: config.watermark_crossing_s,
                description: format!(
                    "{description}, moving, {:.0} % of the frame's width",
                    config.watermark_width * 100.0
                ),
            });
        } else {
            tracing::info!("release: no signing certificate (release.signing_cert): no renditions");
        }
        let index = if config.index_dir.is_empty() {
            None
        } else {
            Some(Arc::new(Index::open(
                std::path::Path::new(&config.index_dir),
                config.index_max_clips,
                config.index_retention_days,
            )?))
        };
        Ok(Self {
            surfaces: config
                .rendition_surfaces
                .iter()
                .filter_map(|s| surface(s))
                .collect(),
            renders: Semaphore::new(config.max_concurrent_renders.max(1)),
            config,
            media,
            store,
            signing,
            watermark,
            _mark_file: mark_file,
            index,
        })
    }

    pub fn index(&self) -> Option<&Arc<Index>> {
        self.index.as_ref()
    }

    /// The watermark renditions get (`None` without a signing key).
    pub fn watermark(&self) -> Option<&Watermark> {
        self.watermark.as_ref()
    }

    /// What the stage does with one verdict (see the crate's documentation).
    pub async fn release(&self, v: &Verdict) -> Result<ReleaseResult, ReleaseError> {
        let surface = Surface::try_from(v.surface).unwrap_or_default();
        let audience = Audience::parse(&v.audience).unwrap_or(Audience::PublicFeed);
        let decision = Decision::try_from(audience.of(&v.audiences.unwrap_or_default()))
            .unwrap_or(Decision::Unspecified);
        let allowed = decision == Decision::Allow;
        let stored = v
            .media
            .as_ref()
            .filter(|m| matches!(m.location, Some(Location::Uri(_))));
        let wants_rendition = self.surfaces.contains(&surface);
        let mut result = ReleaseResult::default();
        let mut bytes: Option<Bytes> = None;

        if let Some(index) = &self.index {
            match (allowed, stored) {
                (true, Some(m)) => {
                    let b = self.fetch(m).await?;
                    let frames = self.vpdq(b.clone()).await?;
                    index.add(&v.clip_id, v.decided_at_ms, frames).await?;
                    result.indexed = true;
                    bytes = Some(b);
                }
                (true, None) => tracing::warn!(
                    clip_id = %v.clip_id,
                    "allowed clip not indexed: its bytes are not kept (media.store_inline)"
                ),
                // A later revision that no longer allows the clip takes it out.
                (false, _) if v.revision > 0 => index.remove(&v.clip_id).await?,
                (false, _) => {}
            }
        }

        if !wants_rendition {
            result.skipped = format!("no rendition for the {} surface", surface_word(surface));
            return Ok(result);
        }
        let mut record = Rendition {
            clip_id: v.clip_id.clone(),
            source: v.source.clone(),
            verdict_revision: v.revision,
            policy_version: v.policy_version.clone(),
            made_at_ms: now_ms(),
            surface: v.surface,
            ..Default::default()
        };
        if self.signing.is_none() {
            record.unavailable = "renditions are off (no release.signing_cert)".into();
        } else if !allowed {
            record.unavailable = format!(
                "the verdict does not allow the clip ({} for {})",
                decision.word(),
                audience.name()
            );
        } else if let Some(m) = stored {
            let original = match bytes {
                Some(b) => b,
                None => self.fetch(m).await?,
            };
            match self.render(v, audience, surface, original).await {
                Ok(made) => record = made,
                Err(e @ (ReleaseError::Store(_) | ReleaseError::Fetch(_))) => return Err(e),
                Err(e) => {
                    tracing::warn!(clip_id = %v.clip_id, error = %e, "no rendition");
                    record.unavailable = e.to_string();
                }
            }
        } else {
            record.unavailable =
                "the clip's bytes are not kept (it was sent inline and media.store_inline is off)"
                    .into();
        }
        result.skipped = record.unavailable.clone();
        result.rendition = Some(record);
        Ok(result)
    }

    async fn fetch(&self, m: &MediaRef) -> Result<Bytes, ReleaseError> {
        self.store
            .fetch(m, self.media.max_bytes)
            .await
            .map_err(ReleaseError::Fetch)
    }

    /// The vPDQ of a clip's bytes, as the media stage hashes clips.
    async fn vpdq(
        &self,
        bytes: Bytes,
    ) -> Result<Vec<clipguard_pdq::vpdq::FrameHash>, ReleaseError> {
        let media = self.media.clone();
        tokio::task::spawn_blocking(move || vpdq_of_bytes(&bytes, &media))
            .await
            .map_err(|e| ReleaseError::Render(format!("hashing task: {e}")))?
    }

    async fn render(
        &self,
        v: &Verdict,
        audience: Audience,
        surface: Surface,
        original: Bytes,
    ) -> Result<Rendition, ReleaseError> {
        let (Some(signing), Some(mark)) = (self.signing.clone(), self.watermark.clone()) else {
            return Err(ReleaseError::Config("no signing key".into()));
        };
        let _slot = self
            .renders
            .acquire()
            .await
            .map_err(|e| ReleaseError::Render(e.to_string()))?;
        let moderation = Moderation {
            clip_id: v.clip_id.clone(),
            decision: Decision::Allow.word().into(),
            audience: audience.name().into(),
            surface: surface_word(surface).into(),
            policy_version: v.policy_version.clone(),
            verdict_revision: v.revision,
            decided_at_ms: v.decided_at_ms,
            engine: v.engine.clone(),
            watermark: mark.description.clone(),
        };
        let title = std::path::Path::new(&v.source)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| v.clip_id.clone());
        let enc = Encoding {
            video_bitrate_kbps: self.config.video_bitrate_kbps,
            deadline: Duration::from_secs_f64(self.config.deadline_s),
        };
        let description = mark.description.clone();
        let signed = tokio::task::spawn_blocking(move || {
            let temp = |suffix: &str| {
                tempfile::Builder::new()
                    .prefix("clipguard-release-")
                    .suffix(suffix)
                    .tempfile()
                    .map_err(|e| ReleaseError::Render(format!("temp file: {e}")))
            };
            let mut input = temp(".in")?;
            std::io::Write::write_all(&mut input, &original)
                .map_err(|e| ReleaseError::Render(format!("temp file: {e}")))?;
            let output = temp(".mp4")?;
            watermark::render(input.path(), output.path(), &mark, enc)?;
            let encoded = std::fs::read(output.path())
                .map_err(|e| ReleaseError::Render(format!("reading the rendition: {e}")))?;
            let signed = signing.sign(&original, &title, encoded, &moderation)?;
            // The manifest must validate as any reader will check it.
            let check = clipguard_media::provenance::read(&signed);
            if check.state != "present" {
                return Err(ReleaseError::Sign(format!(
                    "the signed rendition does not validate ({}): {}",
                    check.state,
                    check.validation_errors.join("; ")
                )));
            }
            let label = sign::manifest_of(&signed)
                .map(|(l, _)| l)
                .unwrap_or_default();
            Ok::<_, ReleaseError>((signed, label, check.signer))
        })
        .await
        .map_err(|e| ReleaseError::Render(format!("rendering task: {e}")))??;
        let (signed, label, signer) = signed;
        let key = format!("renditions/{}/r{}.mp4", v.clip_id, v.revision);
        let media = self
            .store
            .reference(&key, Bytes::from(signed), "video/mp4", false)
            .await
            .map_err(|e| ReleaseError::Store(e.to_string()))?;
        Ok(Rendition {
            clip_id: v.clip_id.clone(),
            source: v.source.clone(),
            verdict_revision: v.revision,
            policy_version: v.policy_version.clone(),
            media: Some(media),
            manifest_label: label,
            signer,
            ingredient_provenance: v
                .provenance
                .as_ref()
                .map(|p| p.state.clone())
                .unwrap_or_else(|| "absent".into()),
            watermark: description,
            made_at_ms: now_ms(),
            surface: v.surface,
            unavailable: String::new(),
        })
    }

    /// Whether the video behind `media` was generated and allowed here.
    pub async fn lookup(&self, media: &MediaRef) -> Result<LookupResponse, ReleaseError> {
        let Some(index) = self.index.clone() else {
            return Err(ReleaseError::Config(
                "the \"made by us\" index is off (release.index_dir)".into(),
            ));
        };
        let bytes = self.fetch(media).await?;
        let frames = self.vpdq(bytes).await?;
        tokio::task::spawn_blocking(move || answer(&index, &frames))
            .await
            .map_err(|e| ReleaseError::Index(format!("lookup task: {e}")))?
    }
}

/// The vPDQ of a video's bytes under the media stage's decoder and limits.
pub fn vpdq_of_bytes(
    bytes: &[u8],
    media: &MediaConfig,
) -> Result<Vec<clipguard_pdq::vpdq::FrameHash>, ReleaseError> {
    let mut file = tempfile::Builder::new()
        .prefix("clipguard-release-")
        .tempfile()
        .map_err(|e| ReleaseError::Render(format!("temp file: {e}")))?;
    std::io::Write::write_all(&mut file, bytes)
        .map_err(|e| ReleaseError::Render(format!("temp file: {e}")))?;
    clipguard_media::decode::vpdq_of_file(file.path(), media, media.pdq_rate_hz)
        .map_err(ReleaseError::Media)
}

/// A lookup's answer for a video's vPDQ.
pub fn answer(
    index: &Index,
    frames: &[clipguard_pdq::vpdq::FrameHash],
) -> Result<LookupResponse, ReleaseError> {
    let found = index.lookup(frames)?;
    let (clips, version) = index.stats()?;
    Ok(LookupResponse {
        matches: found
            .into_iter()
            .map(|f| GeneratedMatch {
                clip_id: f.clip_id,
                query_match_pct: f.query_match_pct,
                target_match_pct: f.target_match_pct,
                allowed_at_ms: f.allowed_at_ms,
            })
            .collect(),
        indexed_clips: clips,
        index_version: version,
        frames_hashed: frames.len() as u32,
    })
}

impl Stage for ReleaseStage {
    type Input = Verdict;
    type Output = Vec<Record>;

    fn name(&self) -> &'static str {
        NAME
    }

    fn attempt_timeout(&self) -> Duration {
        // Decoding for the index, waiting for a render slot, rendering and signing.
        Duration::from_secs_f64(self.config.deadline_s * 2.0 + 60.0)
    }

    async fn process(
        &self,
        verdict: Verdict,
        _ctx: &ProcessCtx,
    ) -> Result<Vec<Record>, StageError> {
        let result = self
            .release(&verdict)
            .await
            .map_err(ReleaseError::into_stage_error)?;
        Ok(result
            .rendition
            .map(|r| vec![Record::rendition(verdict.clip_id.clone(), &r)])
            .unwrap_or_default())
    }

    fn clip_id_of(&self, verdict: &Verdict) -> Option<String> {
        Some(verdict.clip_id.clone()).filter(|id| !id.is_empty())
    }

    /// A verdict the stage could not handle at all: a rendition record saying so (the dead
    /// letter holds the verdict), so a service waiting for the clip's rendition hears why.
    fn poison_outputs(&self, clip_id: &str, error: &StageError) -> Vec<Record> {
        let r = Rendition {
            clip_id: clip_id.to_string(),
            made_at_ms: now_ms(),
            unavailable: format!("release failed: {}: {}", error.kind, error.message),
            ..Default::default()
        };
        vec![Record::rendition(clip_id, &r)]
    }
}
