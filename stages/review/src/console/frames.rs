//! The frames a reviewer sees: the clip's bytes fetched from the claim-check store (the
//! verdict's `media`), decoded with the media stage's decoder, and the frames nearest the
//! evidence's times kept as JPEG thumbnails, each also blurred and in greyscale (what the
//! console shows until the reviewer reveals one). Kept per case for a while in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use clipguard_media::MediaConfig;
use clipguard_pipeline::store::MediaStore;
use clipguard_schemas::Verdict;
use tokio::sync::OnceCell;

/// At most this many frames per case.
pub const MAX_FRAMES: usize = 12;
/// Cases whose frames are kept in memory.
const CACHED_CASES: usize = 32;

/// One frame: its time, the clear thumbnail, and the blurred greyscale one.
#[derive(Debug)]
pub struct Frame {
    pub t: f64,
    pub clear: Vec<u8>,
    pub blurred: Vec<u8>,
}

/// A case's frames, or why there are none.
#[derive(Debug)]
pub enum FrameSet {
    Frames(Vec<Frame>),
    Unavailable(String),
}

type Slot = Arc<OnceCell<Arc<FrameSet>>>;

/// Frames per case, decoded at the first look.
pub struct Thumbnails {
    store: Option<MediaStore>,
    media: MediaConfig,
    cache: Mutex<(HashMap<i64, Slot>, VecDeque<i64>)>,
}

impl std::fmt::Debug for Thumbnails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thumbnails").finish_non_exhaustive()
    }
}

impl Thumbnails {
    pub fn new(store: Option<MediaStore>, media: MediaConfig) -> Self {
        Self {
            store,
            media,
            cache: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// The frames of case `case_id` (whose verdict is `verdict`).
    pub async fn of(&self, case_id: i64, verdict: &Verdict) -> Arc<FrameSet> {
        let slot = {
            let mut guard = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let (map, order) = &mut *guard;
            if !map.contains_key(&case_id) {
                if order.len() >= CACHED_CASES
                    && let Some(old) = order.pop_front()
                {
                    map.remove(&old);
                }
                order.push_back(case_id);
            }
            map.entry(case_id).or_default().clone()
        };
        slot.get_or_init(|| async {
            Arc::new(match self.decode(verdict).await {
                Ok(frames) => FrameSet::Frames(frames),
                Err(why) => {
                    tracing::warn!(case = case_id, clip_id = %verdict.clip_id, why = %why, "no frames for the review console");
                    FrameSet::Unavailable(why)
                }
            })
        })
        .await
        .clone()
    }

    async fn decode(&self, verdict: &Verdict) -> Result<Vec<Frame>, String> {
        let Some(media) = &verdict.media else {
            return Err(
                "the clip's bytes are not kept (the media stage's `store_inline` is off and the clip was sent inline)"
                    .into(),
            );
        };
        let Some(store) = &self.store else {
            return Err("this worker has no media store".into());
        };
        let bytes = store
            .fetch(media, self.media.max_bytes)
            .await
            .map_err(|e| format!("fetching the clip: {e}"))?;
        let settings = MediaConfig {
            pdq: false,
            extract_audio: false,
            sample_fps: 4.0,
            scene_cut_threshold: 0.0,
            max_sampled_frames: 2_000,
            thumbnail_short_side: 240,
            jpeg_quality: 85,
            ..self.media.clone()
        };
        let wanted = evidence_times(verdict);
        tokio::task::spawn_blocking(move || {
            let mut file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
            std::io::Write::write_all(&mut file, &bytes).map_err(|e| e.to_string())?;
            clipguard_media::decode::init().map_err(|e| e.to_string())?;
            let decoded = clipguard_media::decode::decode_file(file.path(), &settings)
                .map_err(|e| format!("decoding the clip: {e}"))?;
            pick(&decoded.frames, &wanted)
                .into_iter()
                .map(|f| {
                    Ok(Frame {
                        t: f.timestamp_s,
                        blurred: blur(&f.jpeg)?,
                        clear: f.jpeg.clone(),
                    })
                })
                .collect()
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// The times the verdict's visual evidence points at (frames, hash matches, faces), sorted,
/// one per quarter second.
pub fn evidence_times(v: &Verdict) -> Vec<f64> {
    let mut times: Vec<f64> = v
        .categories
        .iter()
        .flat_map(|c| &c.evidence)
        .filter(|e| matches!(e.kind.as_str(), "frame" | "hash" | "face" | "image"))
        .map(|e| e.start_s)
        .filter(|t| t.is_finite() && *t >= 0.0)
        .collect();
    times.sort_by(f64::total_cmp);
    times.dedup_by(|a, b| (*a - *b).abs() < 0.25);
    times
}

/// The decoded frames nearest `wanted` (each once, at most [`MAX_FRAMES`]); with no times,
/// frames spread over the clip.
fn pick<'a>(
    frames: &'a [clipguard_media::decode::PickedFrame],
    wanted: &[f64],
) -> Vec<&'a clipguard_media::decode::PickedFrame> {
    if frames.is_empty() {
        return Vec::new();
    }
    let mut idx: Vec<usize> = if wanted.is_empty() {
        let n = frames.len().min(6);
        (0..n).map(|i| i * frames.len() / n).collect()
    } else {
        wanted
            .iter()
            .map(|t| {
                (0..frames.len())
                    .min_by(|&a, &b| {
                        (frames[a].timestamp_s - t)
                            .abs()
                            .total_cmp(&(frames[b].timestamp_s - t).abs())
                    })
                    .unwrap_or(0)
            })
            .collect()
    };
    idx.dedup();
    idx.truncate(MAX_FRAMES);
    idx.into_iter().map(|i| &frames[i]).collect()
}

/// A thumbnail blurred past recognition and in greyscale.
fn blur(jpeg: &[u8]) -> Result<Vec<u8>, String> {
    let img = image::load_from_memory(jpeg).map_err(|e| format!("thumbnail: {e}"))?;
    let sigma = (img.width().max(img.height()) as f32 / 20.0).max(4.0);
    let grey = image::DynamicImage::ImageLuma8(img.to_luma8());
    let blurred = grey.fast_blur(sigma);
    let mut out = Vec::new();
    blurred
        .write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )
        .map_err(|e| format!("thumbnail: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clipguard_schemas::{CategoryDecision, Evidence};

    #[test]
    fn evidence_times_keep_visual_evidence_once_per_quarter_second() {
        let ev = |kind: &str, t: f64| Evidence {
            kind: kind.into(),
            start_s: t,
            end_s: t,
            detail: String::new(),
        };
        let v = Verdict {
            categories: vec![CategoryDecision {
                evidence: vec![
                    ev("frame", 2.0),
                    ev("transcript", 1.0),
                    ev("hash", 0.5),
                    ev("frame", 2.1),
                    ev("face", f64::NAN),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(evidence_times(&v), [0.5, 2.0]);
    }

    #[test]
    fn a_blurred_thumbnail_is_grey_and_loses_detail() {
        // A sharp black-and-red checkerboard: blurred, neighbouring pixels are nearly equal.
        let img = image::RgbImage::from_fn(64, 64, |x, y| {
            if (x / 4 + y / 4) % 2 == 0 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 0])
            }
        });
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        let out = image::load_from_memory(&blur(&jpeg).unwrap()).unwrap();
        assert_eq!(out.color(), image::ColorType::L8);
        let g = out.to_luma8();
        let contrast = (1..63)
            .map(|x| {
                (i32::from(g.get_pixel(x, 32)[0]) - i32::from(g.get_pixel(x - 1, 32)[0])).abs()
            })
            .max()
            .unwrap();
        assert!(contrast < 16, "{contrast}");
    }
}
