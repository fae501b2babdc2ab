//! The classify stage: every sampled frame of a clip through the configured frame classifiers,
//! batched across clips, into per-category scores with the frames that drove them.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clipguard_models::{Cache, Manifest};
use clipguard_pipeline::store::MediaStore;
use clipguard_pipeline::{ProcessCtx, Record, Stage, StageError, now_ms, topics};
use clipguard_schemas::{CategoryScore, Evidence, MediaExtract, Signal};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::ClassifyError;
use crate::model::{ImageClassifier, Rgb};

pub const NAME: &str = "classify";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifyConfig {
    /// Frame classifiers: models of the manifest with a `classifier` section.
    pub frame_models: Vec<String>,
    /// Most frames one inference call takes (frames of several clips share a batch).
    pub max_batch: usize,
    /// How long a frame waits for others to fill a batch.
    pub max_wait_ms: u64,
    /// Largest thumbnail accepted (bytes).
    pub max_thumbnail_bytes: u64,
    pub attempt_timeout_s: f64,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        ClassifyConfig {
            frame_models: vec!["open-nsfw".into()],
            max_batch: 8,
            max_wait_ms: 20,
            max_thumbnail_bytes: 4 << 20,
            attempt_timeout_s: 120.0,
        }
    }
}

impl ClassifyConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.max_batch == 0 || self.max_batch > 256 {
            problems.push(format!(
                "classify.max_batch: {} is outside 1..=256",
                self.max_batch
            ));
        }
        if self.attempt_timeout_s.is_nan() || self.attempt_timeout_s <= 0.0 {
            problems.push("classify.attempt_timeout_s: must be positive".into());
        }
    }
}

/// A decoded frame waiting for its model's batch (shared by every model's job).
struct Job {
    image: Arc<image::RgbImage>,
    reply: oneshot::Sender<Result<Vec<(String, f32)>, String>>,
}

/// One model and the thread that runs its batches.
struct Runner {
    model: Arc<ImageClassifier>,
    tx: mpsc::Sender<Job>,
}

/// Collects jobs until `max_batch` frames or `max_wait` after the first, then runs them as one
/// batch. One thread per model: tract runs single-threaded.
fn batch_loop(
    model: Arc<ImageClassifier>,
    rx: mpsc::Receiver<Job>,
    max_batch: usize,
    max_wait: Duration,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let until = Instant::now() + max_wait;
        while jobs.len() < max_batch {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let images: Vec<Rgb<'_>> = jobs
            .iter()
            .map(|j| Rgb {
                width: j.image.width() as usize,
                height: j.image.height() as usize,
                pixels: j.image.as_raw(),
            })
            .collect();
        match model.scores(&images) {
            Ok(rows) => {
                for (job, row) in jobs.into_iter().zip(rows) {
                    let _ = job.reply.send(Ok(row));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

pub struct ClassifyStage {
    runners: Vec<Runner>,
    store: MediaStore,
    config: ClassifyConfig,
}

impl std::fmt::Debug for ClassifyStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifyStage")
            .field(
                "models",
                &self
                    .runners
                    .iter()
                    .map(|r| &r.model.name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ClassifyStage {
    /// Loads every configured model now: a model that is missing, corrupt or does not fit its
    /// spec stops the worker at start with the reason.
    pub fn new(config: ClassifyConfig, store: MediaStore) -> Result<Self, ClassifyError> {
        let mut problems = Vec::new();
        config.validate(&mut problems);
        if !problems.is_empty() {
            return Err(ClassifyError::Load(problems.join("; ")));
        }
        let manifest = Manifest::load_default()?;
        let cache = Cache::default();
        let mut runners = Vec::new();
        for name in &config.frame_models {
            let entry = manifest.get(name)?;
            let spec = entry.classifier.as_ref().ok_or_else(|| {
                ClassifyError::Load(format!(
                    "classify.frame_models: model {name:?} has no classifier section in the manifest"
                ))
            })?;
            let path = cache.verified_path(entry)?;
            let model = Arc::new(ImageClassifier::load_with(
                name,
                spec,
                &path,
                config.max_batch,
            )?);
            let (tx, rx) = mpsc::channel();
            let m = model.clone();
            let (max_batch, wait) = (config.max_batch, Duration::from_millis(config.max_wait_ms));
            std::thread::Builder::new()
                .name(format!("classify-{name}"))
                .spawn(move || batch_loop(m, rx, max_batch, wait))
                .map_err(|e| ClassifyError::Load(format!("{name}: inference thread: {e}")))?;
            runners.push(Runner { model, tx });
        }
        Ok(ClassifyStage {
            runners,
            store,
            config,
        })
    }

    /// Scores one clip's frames. Frames that cannot be read are skipped and named in the
    /// signal's reasons (`frame_unreadable`); no frames at all is an empty signal.
    pub async fn classify_extract(&self, extract: &MediaExtract) -> Result<Signal, StageError> {
        let mut decoded = Vec::new();
        let mut unreadable = 0usize;
        for frame in &extract.frames {
            let Some(image) = frame.thumbnail.as_ref().and_then(|t| t.image.as_ref()) else {
                continue;
            };
            let bytes = match self
                .store
                .fetch(image, self.config.max_thumbnail_bytes)
                .await
            {
                Ok(b) => b,
                Err(e) if e.retryable => return Err(e),
                Err(_) => {
                    unreadable += 1;
                    continue;
                }
            };
            let rgb = tokio::task::spawn_blocking(move || {
                image::load_from_memory(&bytes).map(|i| i.to_rgb8())
            })
            .await
            .map_err(|e| StageError::internal("panic", e.to_string()))?;
            match rgb {
                Ok(img) => decoded.push((frame.timestamp_s, Arc::new(img))),
                Err(_) => unreadable += 1,
            }
        }
        let mut scores: Vec<CategoryScore> = Vec::new();
        for runner in &self.runners {
            let mut waits = Vec::with_capacity(decoded.len());
            for (t, img) in &decoded {
                let (reply, rx) = oneshot::channel();
                let job = Job {
                    image: img.clone(),
                    reply,
                };
                runner.tx.send(job).map_err(|_| {
                    StageError::internal("model_thread", "inference thread stopped")
                })?;
                waits.push((*t, rx));
            }
            let threshold = runner.model.spec.threshold;
            for (t, rx) in waits {
                let row = rx
                    .await
                    .map_err(|_| StageError::internal("model_thread", "inference thread stopped"))?
                    .map_err(|e| StageError::internal("inference", e))?;
                for (category, score) in row {
                    let entry = match scores.iter_mut().find(|s| s.category == category) {
                        Some(e) => e,
                        None => {
                            scores.push(CategoryScore {
                                category: category.clone(),
                                ..CategoryScore::default()
                            });
                            scores.last_mut().expect("just pushed")
                        }
                    };
                    entry.score = entry.score.max(score);
                    if score >= threshold {
                        entry.evidence.push(Evidence {
                            kind: "frame".into(),
                            start_s: t,
                            end_s: t,
                            detail: format!("{} {score:.2}", runner.model.name),
                        });
                    }
                }
            }
        }
        let mut reasons = Vec::new();
        if unreadable > 0 {
            reasons.push("frame_unreadable".to_string());
        }
        Ok(Signal {
            clip_id: extract.clip_id.clone(),
            stage: NAME.to_string(),
            attempt: 1,
            scores,
            reasons,
            produced_at_ms: now_ms(),
            ..Signal::default()
        })
    }
}

impl Stage for ClassifyStage {
    type Input = MediaExtract;
    type Output = Vec<Record>;

    fn name(&self) -> &'static str {
        NAME
    }

    fn input_topic(&self) -> &'static str {
        topics::MEDIA
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
        let signal = self.classify_extract(&input).await?;
        Ok(vec![Record::encode(topics::SIGNALS, key, &signal)])
    }
}
