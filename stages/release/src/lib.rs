//! The release stage: what happens to a clip after its verdict. It consumes `clips.verdicts` and,
//! for a clip its verdict allows (in the clip's own audience):
//!
//! - **Outgoing rendition**, for clips on the surfaces that need one (`download` by default)
//!   once an operator signing key is configured: the clip re-encoded with a visible moving
//!   watermark ([`watermark`]) and a C2PA manifest signed with the operator's key that records
//!   the original as its parent ingredient and clipguard's moderation as an assertion
//!   ([`sign`]). The file goes to the claim-check store; a [`Rendition`] record keyed by clip id
//!   goes to the compacted `clips.renditions`. Every verdict of a clip on such a surface gets a
//!   record: the rendition, or why there is none (renditions off, not allowed, bytes not kept,
//!   rendering failed), so a service delivering downloads waits for one record, not for ever
//!   (a verdict the stage cannot process at all is dead-lettered). A later revision that no
//!   longer allows the clip deletes its earlier renditions from the store.
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

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clipguard_media::{MediaConfig, MediaError};
use clipguard_pipeline::store::{FetchError, MediaStore};
use clipguard_pipeline::{ProcessCtx, Record, Stage, StageError, now_ms};
use clipguard_policy::{Audience, surface_of, surface_word};
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

/// A rendition surface's word: any surface but `unspecified`.
fn surface(word: &str) -> Option<Surface> {
    surface_of(word).filter(|s| *s != Surface::Unspecified)
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

/// What a verdict means to the release stage.
#[derive(Debug)]
struct Gate<'v> {
    surface: Surface,
    audience: Audience,
    allowed: bool,
    stored: Option<&'v MediaRef>,
    wants_rendition: bool,
    /// Why the clip gets no rendition (`None`: it gets one).
    no_rendition: Option<String>,
}

/// The highest verdict revision handled per clip (the most recent clips, bounded), so that
/// an older revision arriving late or retried never overrides a newer one.
#[derive(Debug, Default)]
struct Latest {
    seen: Mutex<(HashMap<String, u32>, VecDeque<String>)>,
}

const LATEST_CLIPS: usize = 100_000;

impl Latest {
    /// Records `revision` for `clip`; the newer revision already handled, if there is one.
    fn note(&self, clip: &str, revision: u32) -> Option<u32> {
        let Ok(mut guard) = self.seen.lock() else {
            return None;
        };
        let (map, order) = &mut *guard;
        match map.get(clip).copied() {
            Some(r) if r > revision => return Some(r),
            Some(_) => {}
            None => {
                order.push_back(clip.to_string());
                if order.len() > LATEST_CLIPS
                    && let Some(old) = order.pop_front()
                {
                    map.remove(&old);
                }
            }
        }
        map.insert(clip.to_string(), revision);
        None
    }

    fn newer_than(&self, clip: &str, revision: u32) -> Option<u32> {
        let guard = self.seen.lock().ok()?;
        guard.0.get(clip).copied().filter(|r| *r > revision)
    }
}

/// The store folder of a clip's renditions: the clip id with only safe characters, and a
/// hash of the whole id so that two ids never share a folder.
fn rendition_folder(clip_id: &str) -> String {
    let safe: String = clip_id
        .chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = clipguard_pipeline::store::sha256_hex(clip_id.as_bytes());
    format!("renditions/{safe}-{}/", &hash[..12])
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
    renders: Arc<Semaphore>,
    latest: Latest,
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
            renders: Arc::new(Semaphore::new(config.max_concurrent_renders.max(1))),
            latest: Latest::default(),
            config,
            media,
            store,
            signing,
            watermark,
            _mark_file: mark_file,
            index,
        })
    }

    /// What a verdict means here, before anything is done about it.
    fn gate<'v>(&self, v: &'v Verdict) -> Gate<'v> {
        let surface = Surface::try_from(v.surface).unwrap_or_default();
        let audience = Audience::parse(&v.audience).unwrap_or(Audience::PublicFeed);
        let decision = Decision::try_from(audience.of(&v.audiences.unwrap_or_default()))
            .unwrap_or(Decision::Unspecified);
        let stored = v
            .media
            .as_ref()
            .filter(|m| matches!(m.location, Some(Location::Uri(_))));
        let allowed = decision == Decision::Allow;
        let wants_rendition = self.surfaces.contains(&surface);
        let no_rendition = if !wants_rendition {
            Some(format!(
                "no rendition for the {} surface",
                surface_word(surface)
            ))
        } else if self.signing.is_none() {
            Some("renditions are off (no release.signing_cert)".into())
        } else if !allowed {
            Some(format!(
                "the verdict does not allow the clip ({} for {})",
                decision.word(),
                audience.name()
            ))
        } else if stored.is_none() {
            Some(
                "the clip's bytes are not kept (it was sent inline and media.store_inline is off)"
                    .into(),
            )
        } else {
            None
        };
        Gate {
            surface,
            audience,
            allowed,
            stored,
            wants_rendition,
            no_rendition,
        }
    }

    /// What [`ReleaseStage::release`] would do with `v`, doing none of it (the gRPC call: a
    /// caller cannot have the operator's key sign what it sends, nor change the index).
    pub fn plan(&self, v: &Verdict) -> ReleaseResult {
        let g = self.gate(v);
        ReleaseResult {
            rendition: None,
            indexed: self.index.is_some() && g.allowed && g.stored.is_some(),
            skipped: g
                .no_rendition
                .unwrap_or_else(|| "would render, sign and publish a rendition".into()),
            dry_run: true,
        }
    }

    /// What the stage does with one verdict (see the crate's documentation). A verdict older
    /// than one this worker already handled for the clip is skipped, and a rendition made for
    /// a revision that was overtaken while it was rendered is deleted, not published.
    pub async fn release(&self, v: &Verdict) -> Result<ReleaseResult, ReleaseError> {
        if let Some(newer) = self.latest.note(&v.clip_id, v.revision) {
            return Ok(ReleaseResult {
                skipped: format!("revision {} was overtaken by revision {newer}", v.revision),
                ..Default::default()
            });
        }
        let g = self.gate(v);
        let mut result = ReleaseResult::default();
        let mut bytes: Option<Bytes> = None;

        if let Some(index) = &self.index {
            if let (true, Some(m)) = (g.allowed, g.stored) {
                let b = self.fetch(m).await?;
                // Best effort: a clip that cannot be hashed or an index that cannot be written
                // never holds up the rendition (the index answers "as far as it knows").
                match self.vpdq(b.clone()).await {
                    Ok(frames) => {
                        match index
                            .add(&v.clip_id, v.revision, v.decided_at_ms, frames)
                            .await
                        {
                            Ok(()) => result.indexed = true,
                            Err(e) => {
                                tracing::error!(clip_id = %v.clip_id, error = %e, "not indexed")
                            }
                        }
                    }
                    Err(e) => tracing::warn!(clip_id = %v.clip_id, error = %e, "not indexed"),
                }
                bytes = Some(b);
            } else if g.allowed {
                tracing::warn!(
                    clip_id = %v.clip_id,
                    "allowed clip not indexed: its bytes are not kept (media.store_inline)"
                );
            } else if v.revision > 0
                && let Err(e) = index.remove(&v.clip_id, v.revision, v.decided_at_ms).await
            {
                // A later revision that no longer allows the clip takes it out.
                tracing::error!(clip_id = %v.clip_id, error = %e, "not removed from the index");
            }
        }

        if !g.wants_rendition {
            result.skipped = g.no_rendition.unwrap_or_default();
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
        if !g.allowed && v.revision > 0 {
            // An earlier revision's rendition must not stay downloadable.
            let gone = self
                .store
                .remove_prefix(&rendition_folder(&v.clip_id))
                .await
                .map_err(|e| ReleaseError::Store(e.to_string()))?;
            if gone > 0 {
                tracing::info!(clip_id = %v.clip_id, files = gone, "earlier renditions deleted");
            }
        }
        match (g.no_rendition, g.stored) {
            (None, Some(m)) => {
                let original = match bytes {
                    Some(b) => b,
                    None => self.fetch(m).await?,
                };
                match self.render(v, g.audience, g.surface, original).await {
                    Ok(made) => record = made,
                    Err(e @ (ReleaseError::Store(_) | ReleaseError::Fetch(_))) => return Err(e),
                    Err(e) => {
                        tracing::warn!(clip_id = %v.clip_id, error = %e, "no rendition");
                        record.unavailable = e.to_string();
                    }
                }
            }
            (why, _) => record.unavailable = why.unwrap_or_default(),
        }
        if let Some(newer) = self.latest.newer_than(&v.clip_id, v.revision) {
            if let Some(uri) = record.media.as_ref().and_then(|m| match &m.location {
                Some(Location::Uri(u)) => Some(u.clone()),
                _ => None,
            }) {
                let key = uri
                    .rsplit_once("/renditions/")
                    .map(|(_, k)| k)
                    .unwrap_or_default();
                let _ = self.store.remove_prefix(&format!("renditions/{key}")).await;
            }
            result.skipped = format!("revision {} was overtaken by revision {newer}", v.revision);
            return Ok(result);
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
        // The slot goes with the blocking work: an attempt that times out does not free it
        // while its encoder still runs.
        let slot = self
            .renders
            .clone()
            .acquire_owned()
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
            let _slot = slot;
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
        // Content-addressed: a redelivered verdict's new rendition never replaces the bytes an
        // earlier record points at.
        let key = format!(
            "{}r{}-{}.mp4",
            rendition_folder(&v.clip_id),
            v.revision,
            &clipguard_pipeline::store::sha256_hex(&signed)[..16]
        );
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
        // Decoding for the index, waiting behind the other renders in flight, rendering and
        // signing.
        Duration::from_secs_f64(self.config.deadline_s * 3.0 + 60.0)
    }

    /// Two verdicts per render slot: one rendering, one waiting (the rest wait in Kafka).
    fn max_in_flight(&self) -> Option<usize> {
        Some(2 * self.config.max_concurrent_renders.max(1))
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

    /// A verdict the stage could not handle at all goes to the dead-letter topic only: a
    /// rendition record would need the verdict's revision and surface, which a message that
    /// could not be processed may not give.
    fn poison_outputs(&self, _clip_id: &str, _error: &StageError) -> Vec<Record> {
        Vec::new()
    }
}
