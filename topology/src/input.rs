//! Input checks with images (`Moderation.CheckInput`, `clipguard check-input`): a prompt and
//! the images uploaded with it, checked before anything is generated from them.
//!
//! The uploads become the frames of a clip that has no video: each image is hashed (PDQ, SHA-256,
//! MD5) and matched by the hashmatch stage's code against the banks in service; the images and
//! the prompt go through the classify stage's code (frame classifiers, the face/age check, the
//! text classifier); the monitor's decision function fuses the three signals under the policy.
//! So a CSAM-bank match blocks for every audience, and a face that may be under 18 puts every
//! audience on the under-18 column (`minor_present`), exactly as for a clip.
//!
//! Evidence names the image by its position in the request (`image 0`, `image 1`, ...): its
//! kind is `image` and its time the position.
//! Images are never stored: they live in memory for the request.

use std::sync::Arc;

use clipguard_classify::stage::ClassifyStage;
use clipguard_hashmatch::stage::HashmatchStage;
use clipguard_monitor::decide::{gather, verdict};
use clipguard_monitor::wait::Wait;
use clipguard_pipeline::StageError;
use clipguard_policy::{Audience, Policy};
use clipguard_schemas::names::stage;
use clipguard_schemas::{
    AudienceContext, CheckInputResponse, ClipContext, MediaExtract, MediaInfo, SampledFrame,
    Signal, signal,
};
use md5::Digest as _;

/// The `container` of an input check's media signal: the monitor words its rationale for
/// uploaded images, not a clip.
pub const UPLOADS: &str = clipguard_monitor::decide::UPLOADS;

/// Limits on what one request may upload.
#[derive(Debug, Clone, Copy)]
pub struct InputLimits {
    /// Images per request.
    pub max_images: usize,
    /// Encoded bytes per image.
    pub max_image_bytes: usize,
    /// Decoded pixels per image (width × height): a small file that decodes to a huge picture
    /// is refused before its pixels are allocated.
    pub max_pixels: u64,
    /// Prompt bytes: a longer prompt is refused (the text classifier reads no further, and an
    /// unread tail must not pass), as CheckPrompt refuses it.
    pub max_prompt_bytes: usize,
    /// Checks running at once in this worker; more wait. Each holds one decoded upload at full
    /// size at a time (about 7 bytes a pixel while it is decoded and hashed).
    pub in_flight: usize,
    /// The classifiers see an upload at this short side (the media stage's thumbnail size), so
    /// an upload and a video frame are judged at the same scale.
    pub short_side: u32,
}

impl InputLimits {
    /// The limits a configuration sets (`classify.max_input_*`, `max_text_bytes`, the media
    /// stage's thumbnail size).
    pub fn of(cfg: &crate::Config) -> Self {
        let c = &cfg.classify;
        InputLimits {
            max_images: c.max_input_images,
            max_image_bytes: c.max_input_image_bytes,
            max_pixels: c.max_input_pixels,
            max_prompt_bytes: c.max_text_bytes,
            in_flight: c.input_checks_in_flight,
            short_side: cfg.media.thumbnail_short_side,
        }
    }
}

impl Default for InputLimits {
    /// The limits of the default configuration.
    fn default() -> Self {
        InputLimits::of(&crate::Config::default())
    }
}

/// A request refused before any check ran: what is wrong and with which image.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputRefused(pub String);

/// The input check: the classify and hashmatch stages and the policy, shared with the worker
/// that serves it.
#[derive(Clone)]
pub struct InputChecker {
    classify: Arc<ClassifyStage>,
    hashmatch: Arc<HashmatchStage>,
    policy: Arc<Policy>,
    limits: InputLimits,
    running: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for InputChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputChecker")
            .field("policy", &self.policy.version)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// One decoded upload.
struct Upload {
    rgb: Arc<image::RgbImage>,
    frame: SampledFrame,
    sha256: String,
    md5: String,
}

impl InputChecker {
    pub fn new(
        classify: Arc<ClassifyStage>,
        hashmatch: Arc<HashmatchStage>,
        policy: Arc<Policy>,
        limits: InputLimits,
    ) -> Self {
        InputChecker {
            classify,
            hashmatch,
            policy,
            running: Arc::new(tokio::sync::Semaphore::new(limits.in_flight.max(1))),
            limits,
        }
    }

    /// The checker a configuration describes, its stages built here (`clipguard check-input`;
    /// the classify worker shares its own stage instead).
    pub fn from_config(
        cfg: &crate::Config,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let store = clipguard_pipeline::store::MediaStore::open(&cfg.store)?;
        let classify = ClassifyStage::new(cfg.classify.clone(), store)?;
        let hashmatch = HashmatchStage::new(cfg.hashmatch.clone())?;
        Ok(InputChecker::new(
            Arc::new(classify),
            Arc::new(hashmatch),
            Arc::new(cfg.policy.load()?),
            InputLimits::of(cfg),
        ))
    }

    /// The largest request message that fits the limits (for the gRPC server's decoding limit:
    /// tonic's default of 4 MiB would refuse one phone photo).
    pub fn max_message_bytes(&self) -> usize {
        let l = &self.limits;
        l.max_images
            .saturating_mul(l.max_image_bytes.saturating_add(16))
            .saturating_add(l.max_prompt_bytes)
            .saturating_add(4096)
    }

    /// Checks `prompt` and `images` (PNG or JPEG bytes) for `audience`. A request over the
    /// limits, or an image that does not decode, is refused whole, naming the image.
    pub async fn check(
        &self,
        prompt: &str,
        images: Vec<Vec<u8>>,
        audience: Audience,
    ) -> Result<CheckInputResponse, CheckFailed> {
        self.check_consented(prompt, images, audience, &[]).await
    }

    /// [`InputChecker::check`] for a requester whose `consented` people (likeness registry ids)
    /// may appear in the uploads; any other enrolled person recognised there is
    /// `likeness_without_consent`.
    pub async fn check_consented(
        &self,
        prompt: &str,
        images: Vec<Vec<u8>>,
        audience: Audience,
        consented: &[String],
    ) -> Result<CheckInputResponse, CheckFailed> {
        if prompt.len() > self.limits.max_prompt_bytes {
            return Err(CheckFailed::Refused(InputRefused(format!(
                "prompt: {} bytes, at most {}",
                prompt.len(),
                self.limits.max_prompt_bytes
            ))));
        }
        if images.len() > self.limits.max_images {
            return Err(CheckFailed::Refused(InputRefused(format!(
                "{} images: at most {} per request",
                images.len(),
                self.limits.max_images
            ))));
        }
        let _running =
            self.running.acquire().await.map_err(|e| {
                CheckFailed::Stage(StageError::internal("input_checks", e.to_string()))
            })?;
        let limits = self.limits;
        // One upload at full size at a time: decoded, hashed, then shrunk to thumbnail size.
        let uploads = tokio::task::spawn_blocking(move || {
            images
                .iter()
                .enumerate()
                .map(|(i, bytes)| decode(i, bytes, &limits))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| CheckFailed::Stage(clipguard_pipeline::error::join_error(e)))?
        .map_err(CheckFailed::Refused)?;

        let clip_id = format!("input-{}", clipguard_pipeline::edges::new_clip_id());
        let (age_band, surface) = audience.context();
        let mut ctx = AudienceContext::default();
        ctx.set_age_band(age_band);
        ctx.set_surface(surface);
        ctx.consented_likeness_ids = consented.to_vec();
        let context = ClipContext {
            source: "input".into(),
            audience: Some(ctx),
            prompt: prompt.to_string(),
            ..ClipContext::default()
        };

        // Hash banks: one extract per image (its own SHA-256 and MD5 for exact-match banks).
        let mut matches = Vec::new();
        let mut hash_reasons = Vec::new();
        for u in &uploads {
            let extract = MediaExtract {
                clip_id: clip_id.clone(),
                frames: vec![u.frame.clone()],
                sha256: u.sha256.clone(),
                md5: u.md5.clone(),
                ..MediaExtract::default()
            };
            let s = self
                .hashmatch
                .match_off_executor(extract)
                .await
                .map_err(CheckFailed::Stage)?;
            // Exact-file matches carry no frame time: the upload's position names the image.
            matches.extend(s.hash_matches.into_iter().map(|mut m| {
                if m.frame_timestamps_s.is_empty() {
                    m.frame_timestamps_s.push(u.frame.timestamp_s);
                }
                m
            }));
            for r in s.reasons {
                if !hash_reasons.contains(&r) {
                    hash_reasons.push(r);
                }
            }
        }
        let hashmatch = Signal {
            clip_id: clip_id.clone(),
            stage: stage::HASHMATCH.into(),
            hash_matches: matches,
            reasons: hash_reasons,
            ..Signal::default()
        };

        // Frame classifiers, faces and the prompt: the classify stage's code, the image's
        // position as its time.
        let frames: Vec<(f64, Arc<image::RgbImage>)> = uploads
            .iter()
            .map(|u| (u.frame.timestamp_s, u.rgb.clone()))
            .collect();
        let mut classify = self
            .classify
            .classify_frames(&clip_id, frames, 0, Some(&context))
            .await
            .map_err(CheckFailed::Stage)?;
        for score in &mut classify.scores {
            for e in &mut score.evidence {
                if e.kind == "frame" || e.kind == "face" {
                    e.kind = "image".into();
                }
            }
        }

        let (width, height) = uploads
            .first()
            .map_or((0, 0), |u| (u.rgb.width(), u.rgb.height()));
        let media = Signal {
            clip_id: clip_id.clone(),
            stage: stage::MEDIA.into(),
            context: Some(context),
            body: Some(signal::Body::Media(MediaInfo {
                width,
                height,
                container: UPLOADS.into(),
                frames_decoded: uploads.len() as u64,
                ..MediaInfo::default()
            })),
            ..Signal::default()
        };

        let signals = [media, hashmatch, classify];
        let wait = Wait::of(&[stage::MEDIA, stage::HASHMATCH, stage::CLASSIFY])
            .map_err(|e| CheckFailed::Stage(StageError::internal("wait", e)))?;
        let findings = gather(&clip_id, &signals, &wait, &self.policy, false);
        let minor_present = findings.minor();
        let v = verdict(&findings, &self.policy);
        let decided = if minor_present {
            Audience::Under18
        } else {
            audience
        };
        let decision = v.audiences.as_ref().map_or(v.decision, |a| audience.of(a));
        Ok(CheckInputResponse {
            decision,
            audience: decided.name().to_string(),
            minor_present,
            verdict: Some(v),
        })
    }
}

/// Why a check did not give a decision.
#[derive(Debug, thiserror::Error)]
pub enum CheckFailed {
    /// The request: too many images, one too large, not an image.
    #[error(transparent)]
    Refused(InputRefused),
    /// A stage failed on it (a model thread, the store).
    #[error("{0}")]
    Stage(StageError),
}

impl From<CheckFailed> for tonic::Status {
    fn from(e: CheckFailed) -> Self {
        match e {
            CheckFailed::Refused(r) => tonic::Status::invalid_argument(r.0),
            CheckFailed::Stage(s) => tonic::Status::from(s),
        }
    }
}

/// Decodes upload `i` within the limits; hashes it.
fn decode(i: usize, bytes: &[u8], limits: &InputLimits) -> Result<Upload, InputRefused> {
    if bytes.len() > limits.max_image_bytes {
        return Err(InputRefused(format!(
            "image {i}: {} bytes, at most {}",
            bytes.len(),
            limits.max_image_bytes
        )));
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| InputRefused(format!("image {i}: {e}")))?;
    if reader.format().is_none() {
        return Err(InputRefused(format!(
            "image {i}: not a PNG or JPEG image ({} bytes)",
            bytes.len()
        )));
    }
    // The header first: a picture over the limit is refused before its pixels are allocated.
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| InputRefused(format!("image {i}: {e}")))?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    if u64::from(w) * u64::from(h) > limits.max_pixels || w == 0 || h == 0 {
        return Err(InputRefused(format!(
            "image {i}: {w}x{h} pixels, at most {} and none empty",
            limits.max_pixels
        )));
    }
    let mut l = image::Limits::default();
    l.max_image_width = Some(w);
    l.max_image_height = Some(h);
    l.max_alloc = Some(limits.max_pixels.saturating_mul(4).max(1 << 20));
    image::ImageDecoder::set_limits(&mut decoder, l)
        .map_err(|e| InputRefused(format!("image {i}: {e}")))?;
    // A phone photo stored sideways is judged (faces above all) the way it is shown.
    let orientation = image::ImageDecoder::orientation(&mut decoder)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut picture = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| InputRefused(format!("image {i}: {e}")))?;
    picture.apply_orientation(orientation);
    let rgb = picture.to_rgb8();
    drop(picture);
    let hashed = {
        let luma = clipguard_pdq::luma_from_rgb(rgb.as_raw());
        clipguard_pdq::hash_luma(&luma, rgb.width() as usize, rgb.height() as usize)
    };
    // What the classifiers see: thumbnail size, by the media stage's rule for video frames.
    let (tw, th) =
        clipguard_media::frames::thumbnail_size(rgb.width(), rgb.height(), limits.short_side);
    let rgb = if (tw, th) == (rgb.width(), rgb.height()) {
        rgb
    } else {
        let small = clipguard_classify::resize::resize_rgb(
            rgb.as_raw(),
            rgb.width() as usize,
            rgb.height() as usize,
            tw as usize,
            th as usize,
        );
        image::RgbImage::from_raw(tw, th, small)
            .ok_or_else(|| InputRefused(format!("image {i}: could not be resized")))?
    };
    Ok(Upload {
        frame: SampledFrame {
            index: i as u32,
            timestamp_s: i as f64,
            pdq: hashed.hash.0.to_vec(),
            pdq_quality: hashed.quality,
            ..SampledFrame::default()
        },
        rgb: Arc::new(rgb),
        sha256: hex::encode(sha2::Sha256::digest(bytes)),
        md5: hex::encode(md5::Md5::digest(bytes)),
    })
}
