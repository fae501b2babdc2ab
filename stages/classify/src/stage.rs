//! The classify stage: every sampled frame of a clip through the configured frame classifiers,
//! batched across clips, into per-category scores with the frames that drove them.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clipguard_models::{Cache, Manifest};
use clipguard_pipeline::store::MediaStore;
use clipguard_pipeline::{Failure, ProcessCtx, Record, Stage, StageError, now_ms};
use clipguard_schemas::{
    CategoryScore, ClipContext, Evidence, LikenessMatch, MediaExtract, Signal, Transcript,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::ClassifyError;
use crate::combine::{Combine, FrameScore, fold_frame};
use crate::detect::ImageDetector;
use crate::faces::FaceAges;
use crate::likeness::{FaceDescriber, LikenessCheck, RegistryStore};
use crate::model::{ImageClassifier, Rgb};
use clipguard_text::{TextClassifier, TextInput, TextPolicy, TextSetup};

pub const NAME: &str = clipguard_schemas::names::stage::CLASSIFY;

/// What runs a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Tract,
    Onnxruntime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
    /// Sentence encoder for text (a manifest model); empty: blocklists only.
    pub text_model: String,
    /// Its tokenizer (a manifest model).
    pub text_tokenizer: String,
    /// Text policy file (blocklists, exemplars, operating points); unset: the shipped one.
    pub text_policy: Option<std::path::PathBuf>,
    /// Load the policy's `[refine]` encoder for the uncertain band (a stronger, slower
    /// encoder: ~420 MB more memory, ~0.1 s per refined sentence on one core). Off: the first
    /// encoder's scores stand everywhere.
    pub text_refine: bool,
    /// Text beyond this many bytes of a prompt, scene description or transcript is not
    /// classified, and the signal says `text_truncated`.
    pub max_text_bytes: usize,
    /// Input checks (`Moderation.CheckInput`): images a request may upload, encoded bytes
    /// per image, decoded pixels per image.
    pub max_input_images: usize,
    pub max_input_image_bytes: usize,
    pub max_input_pixels: u64,
    /// Input checks running at once in a worker (each holds one decoded upload at full size
    /// at a time); more wait.
    pub input_checks_in_flight: usize,
    /// Per category, how the frame models that score it combine on a frame: `max` (a
    /// category not named) or `mean`. Default: `sexual` = `mean` (open_nsfw and
    /// image-safety-s must agree; see [`crate::combine`]).
    pub combine: std::collections::BTreeMap<String, Combine>,
    /// Per frame model, the backend that runs it: `tract` (for a model not named here) or
    /// `onnxruntime`. Default: image-safety-s on `onnxruntime`, the rest on tract.
    pub backends: std::collections::BTreeMap<String, Backend>,
    /// The manifest entry of the ONNX Runtime library the `onnxruntime` backend loads.
    pub onnxruntime: String,
    /// Face detector for potential minors (a manifest model); empty: no face/age check.
    pub face_detector: String,
    /// Age estimator run on each face (a manifest model).
    pub age_model: String,
    /// Detections below this confidence are not faces.
    pub min_face_score: f32,
    /// A face whose probability of being under 18 reaches this is `potential_minor` evidence.
    pub minor_threshold: f32,
    /// The likeness registry's folder (`clipguard likeness enroll`); empty: faces are not
    /// matched against enrolled people. Needs `face_detector`.
    pub likeness_dir: String,
    /// dlib's landmark model and face descriptor (manifest models) for likeness.
    pub face_landmarks: String,
    pub face_descriptor: String,
    /// A face at or below this descriptor distance from an enrolled person is that person.
    pub likeness_max_distance: f32,
    /// How often a worker looks for a new registry version (seconds; it looks when a clip or
    /// upload arrives this long after the last look): a person enrolled or revoked is in force
    /// from the first clip after that, and a revoked person then leaves the worker's memory.
    pub likeness_reload_interval_s: f64,
}

/// The shipped backends: image-safety-s's depthwise and attention layers run 4.9× slower in
/// tract than in ONNX Runtime (124.6 vs 25.4 ms a frame on one core), so where it is listed in
/// `frame_models` it runs in ONNX Runtime.
fn default_backends() -> std::collections::BTreeMap<String, Backend> {
    [("image-safety-s".to_string(), Backend::Onnxruntime)].into()
}

/// The shipped combine rules: where image-safety-s is listed beside open_nsfw, their `sexual`
/// scores are averaged (its false alarms on blank and skin-toned frames need open_nsfw's
/// agreement; the price: a frame only one of them finds scores half as high).
fn default_combine() -> std::collections::BTreeMap<String, Combine> {
    [("sexual".to_string(), Combine::Mean)].into()
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        ClassifyConfig {
            frame_models: vec!["open-nsfw".into()],
            max_batch: 8,
            max_wait_ms: 20,
            max_thumbnail_bytes: 4 << 20,
            attempt_timeout_s: 120.0,
            text_model: TextSetup::SHIPPED.model.into(),
            text_tokenizer: TextSetup::SHIPPED.tokenizer.into(),
            text_policy: None,
            text_refine: TextSetup::SHIPPED.refine,
            max_text_bytes: 64 << 10,
            max_input_images: 8,
            max_input_image_bytes: 16 << 20,
            max_input_pixels: 50_000_000,
            input_checks_in_flight: 2,
            combine: default_combine(),
            backends: default_backends(),
            onnxruntime: "onnxruntime".into(),
            face_detector: "blazeface-back".into(),
            age_model: "age-v1".into(),
            min_face_score: 0.75,
            minor_threshold: 0.5,
            likeness_dir: String::new(),
            face_landmarks: "face-landmarks-dlib5".into(),
            face_descriptor: "face-descriptor-dlib".into(),
            likeness_max_distance: crate::likeness::DEFAULT_MAX_DISTANCE,
            likeness_reload_interval_s: 30.0,
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
        if !(1..=64).contains(&self.max_input_images) {
            problems.push(format!(
                "classify.max_input_images: {} is outside 1..=64",
                self.max_input_images
            ));
        }
        if !(1..=64).contains(&self.input_checks_in_flight) {
            problems.push(format!(
                "classify.input_checks_in_flight: {} is outside 1..=64",
                self.input_checks_in_flight
            ));
        }
        if self.max_input_image_bytes == 0 || self.max_input_pixels == 0 {
            problems.push(
                "classify.max_input_image_bytes and max_input_pixels: must be positive".into(),
            );
        }
        if self.max_text_bytes == 0 {
            problems.push("classify.max_text_bytes: must be positive".into());
        }
        if !self.text_model.is_empty() && self.text_tokenizer.is_empty() {
            problems.push("classify.text_tokenizer: needed with classify.text_model".into());
        }
        let shipped = default_backends();
        for (model, backend) in &self.backends {
            // The shipped entry stays valid when its model is not loaded.
            if !self.frame_models.contains(model) && shipped.get(model) != Some(backend) {
                problems.push(format!(
                    "classify.backends: {model:?} is not one of classify.frame_models {:?}",
                    self.frame_models
                ));
            }
        }
        if !self.face_detector.is_empty() && self.age_model.is_empty() {
            problems.push("classify.age_model: needed with classify.face_detector".into());
        }
        for (key, v) in [
            ("min_face_score", self.min_face_score),
            ("minor_threshold", self.minor_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                problems.push(format!("classify.{key}: {v} is outside 0..=1"));
            }
        }
        if !self.likeness_dir.is_empty() {
            if self.face_detector.is_empty() {
                problems.push("classify.likeness_dir: needs classify.face_detector".into());
            }
            if !(0.0..=2.0).contains(&self.likeness_max_distance) {
                problems.push(format!(
                    "classify.likeness_max_distance: {} is outside 0..=2",
                    self.likeness_max_distance
                ));
            }
            if !(0.1..=86_400.0).contains(&self.likeness_reload_interval_s) {
                problems.push(format!(
                    "classify.likeness_reload_interval_s: {} is outside 0.1..=86400",
                    self.likeness_reload_interval_s
                ));
            }
        }
        if let Some(path) = &self.text_policy
            && let Err(e) = TextPolicy::load(path)
        {
            problems.push(format!("classify.text_policy: {e}"));
        }
    }

    /// Loads the face detector and age estimator, unless `face_detector` is empty.
    pub fn load_faces(&self) -> Result<Option<FaceAges>, ClassifyError> {
        if self.face_detector.is_empty() {
            return Ok(None);
        }
        let manifest = Manifest::load_default()?;
        let cache = Cache::default();
        let detector = cache.verified_path(manifest.get(&self.face_detector)?)?;
        let age = cache.verified_path(manifest.get(&self.age_model)?)?;
        Ok(Some(FaceAges::load(
            (&self.face_detector, &detector),
            (&self.age_model, &age),
            self.min_face_score,
        )?))
    }

    /// dlib's landmarks and descriptor network for likeness, with the descriptor's SHA-256.
    pub fn load_describer(&self) -> Result<FaceDescriber, ClassifyError> {
        let manifest = Manifest::load_default()?;
        let cache = Cache::default();
        let landmarks = cache.verified_path(manifest.get(&self.face_landmarks)?)?;
        let entry = manifest.get(&self.face_descriptor)?;
        let descriptor = cache.verified_path(entry)?;
        FaceDescriber::load(
            (&self.face_landmarks, &landmarks),
            (&self.face_descriptor, &descriptor),
            &entry.sha256,
        )
    }

    /// The likeness check, unless `likeness_dir` is empty.
    pub fn load_likeness(&self) -> Result<Option<LikenessCheck>, ClassifyError> {
        if self.likeness_dir.is_empty() {
            return Ok(None);
        }
        LikenessCheck::new(
            self.load_describer()?,
            RegistryStore::new(&self.likeness_dir),
            self.likeness_max_distance,
            Duration::from_secs_f64(self.likeness_reload_interval_s),
        )
        .map(Some)
    }

    /// What the text classifier is loaded from: `config.text().load()`.
    pub fn text(&self) -> TextSetup<'_> {
        TextSetup {
            model: &self.text_model,
            tokenizer: &self.text_tokenizer,
            policy: self.text_policy.as_deref(),
            refine: self.text_refine,
        }
    }
}

/// Loads the text classifier's refining encoder on a thread of its own, so a stage serves at
/// once and its first uncertain score does not wait for the load; a failure is logged here
/// and returned by every score that needs the encoder.
fn warm_refiner(text: &Arc<TextClassifier>) {
    if text.refined_by().is_none() {
        return;
    }
    let t = text.clone();
    let spawned = std::thread::Builder::new()
        .name("classify-text-refiner".into())
        .spawn(move || match t.warm_refiner() {
            Ok(()) => tracing::info!(encoder = ?t.refined_by(), "refining text encoder loaded"),
            Err(e) => tracing::error!(error = %e, "refining text encoder not loaded"),
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "refining text encoder: no thread to load it ahead of use");
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary; says whether it cut.
fn bounded(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// Runs the text classifier off the async threads.
async fn classify_texts(
    text: &Arc<TextClassifier>,
    inputs: Vec<(String, String, f64, f64)>,
) -> Result<Vec<CategoryScore>, StageError> {
    let text = text.clone();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<TextInput<'_>> = inputs
            .iter()
            .map(|(source, t, a, b)| TextInput {
                source,
                text: t,
                start_s: *a,
                end_s: *b,
            })
            .collect();
        text.classify(&refs)
    })
    .await
    .map_err(|e| StageError::internal(clipguard_pipeline::error::kind::PANIC, e.to_string()))?
    .map_err(|e| StageError::internal("inference", e.to_string()))
}

/// Most frame times a likeness match lists.
const MAX_MATCH_TIMES: usize = 32;

/// What the faces in a clip's frames say: `potential_minor` (the highest probability of any
/// face being under 18, with evidence — time, box, estimated age — for every face at or above
/// `threshold`) and, with a likeness check, which enrolled people appear (one match per
/// person: the closest face's box and distance, and the frame times).
fn face_scores(
    faces: &FaceAges,
    likeness: Option<&LikenessCheck>,
    frames: &[(f64, Arc<image::RgbImage>)],
    threshold: f32,
) -> Result<(CategoryScore, Vec<LikenessMatch>, usize), ClassifyError> {
    let mut out = CategoryScore {
        category: clipguard_policy::POTENTIAL_MINOR.to_string(),
        ..CategoryScore::default()
    };
    let registry = likeness.map(|l| l.registry());
    let mut matches: std::collections::BTreeMap<String, LikenessMatch> = Default::default();
    let mut unchecked = 0;
    for (t, img) in frames {
        let rgb = Rgb {
            width: img.width() as usize,
            height: img.height() as usize,
            pixels: img.as_raw(),
        };
        let found = faces.faces_with_ages(&rgb)?;
        for f in &found {
            out.score = out.score.max(f.p_minor);
            if f.p_minor >= threshold {
                out.evidence.push(Evidence {
                    kind: "face".into(),
                    start_s: *t,
                    end_s: *t,
                    detail: format!(
                        "face at x {:.0}, y {:.0}, {:.0} × {:.0} px (detector {:.2}): estimated age {:.1}, P(under 18) {:.2}",
                        f.face.cx - f.face.w / 2.0,
                        f.face.cy - f.face.h / 2.0,
                        f.face.w,
                        f.face.h,
                        f.face.score,
                        f.age,
                        f.p_minor
                    ),
                });
            }
        }
        let (Some(check), Some(registry)) = (likeness, registry.as_deref()) else {
            continue;
        };
        let boxes: Vec<_> = found.iter().map(|f| f.face.clone()).collect();
        let (who, small) = check.recognise(&rgb, &boxes, registry)?;
        unchecked += small;
        for (face, who) in boxes.iter().zip(who) {
            let Some(who) = who else { continue };
            let m = matches
                .entry(who.person_id.clone())
                .or_insert_with(|| LikenessMatch {
                    person_id: who.person_id.clone(),
                    distance: f32::INFINITY,
                    max_distance: check.max_distance,
                    registry_version: registry.version,
                    ..LikenessMatch::default()
                });
            if m.frame_timestamps_s.last() != Some(t) {
                m.frame_timestamps_s.push(*t);
            }
            if who.distance < m.distance {
                m.distance = who.distance;
                m.x = face.cx - face.w / 2.0;
                m.y = face.cy - face.h / 2.0;
                m.width = face.w;
                m.height = face.h;
            }
        }
    }
    let mut matches: Vec<LikenessMatch> = matches.into_values().collect();
    for m in &mut matches {
        m.frame_timestamps_s.sort_by(f64::total_cmp);
        m.frame_timestamps_s.truncate(MAX_MATCH_TIMES);
    }
    Ok((out, matches, unchecked))
}

/// A detector over a clip's frames: per category, the best box's score, and evidence (time,
/// class, box) for every box kept.
fn detection_scores(
    detector: &ImageDetector,
    frames: &[(f64, Arc<image::RgbImage>)],
) -> Result<Vec<CategoryScore>, ClassifyError> {
    let mut out: Vec<CategoryScore> = detector
        .spec
        .categories
        .keys()
        .map(|c| CategoryScore {
            category: c.clone(),
            ..CategoryScore::default()
        })
        .collect();
    for (t, img) in frames {
        let rgb = Rgb {
            width: img.width() as usize,
            height: img.height() as usize,
            pixels: img.as_raw(),
        };
        for d in detector.detect(&rgb)? {
            if let Some(c) = out.iter_mut().find(|c| c.category == d.category) {
                c.score = c.score.max(d.score);
                c.evidence.push(Evidence {
                    kind: "frame".into(),
                    start_s: *t,
                    end_s: *t,
                    detail: format!(
                        "{} class {} {:.2} at x {:.0}, y {:.0}, {:.0} × {:.0} px",
                        detector.name, d.class, d.score, d.x, d.y, d.w, d.h
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// Folds `more` into `scores`: the highest score per category, evidence appended.
fn merge(scores: &mut Vec<CategoryScore>, more: Vec<CategoryScore>) {
    for m in more {
        match scores.iter_mut().find(|s| s.category == m.category) {
            Some(s) => {
                s.score = s.score.max(m.score);
                s.evidence.extend(m.evidence);
            }
            None => scores.push(m),
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
    detectors: Vec<Arc<ImageDetector>>,
    text: Arc<TextClassifier>,
    faces: Option<Arc<FaceAges>>,
    likeness: Option<Arc<LikenessCheck>>,
    store: MediaStore,
    /// The frame combine rules in force ([`ClassifyConfig::combine_rules`]).
    combine: std::collections::BTreeMap<String, Combine>,
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

impl ClassifyConfig {
    /// Whether a loaded frame model runs on ONNX Runtime (its library is then needed).
    pub fn uses_onnxruntime(&self) -> bool {
        self.frame_models
            .iter()
            .any(|m| self.backend(m) == Backend::Onnxruntime)
    }

    /// The backend of frame model `model`: the configured one, else the shipped one, else
    /// tract. (A `[classify.backends]` table adds to the shipped entries, not replaces them.)
    pub fn backend(&self, model: &str) -> Backend {
        self.backends
            .get(model)
            .or(default_backends().get(model))
            .copied()
            .unwrap_or_default()
    }

    /// The combine rules in force: the configured ones over the shipped ones.
    pub fn combine_rules(&self) -> std::collections::BTreeMap<String, Combine> {
        let mut rules = default_combine();
        rules.extend(self.combine.clone());
        rules
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
        let mut detectors = Vec::new();
        for name in &config.frame_models {
            let entry = manifest.get(name)?;
            if let Some(spec) = &entry.detector {
                if config.backend(name) != Backend::Tract {
                    return Err(ClassifyError::Load(format!(
                        "classify.backends: detector {name:?} runs in tract only"
                    )));
                }
                let path = cache.verified_path(entry)?;
                detectors.push(Arc::new(ImageDetector::load(name, spec, &path)?));
                continue;
            }
            let spec = entry.classifier.as_ref().ok_or_else(|| {
                ClassifyError::Load(format!(
                    "classify.frame_models: model {name:?} has neither a classifier nor a detector section in the manifest"
                ))
            })?;
            let path = cache.verified_path(entry)?;
            let model = match config.backend(name) {
                Backend::Tract => ImageClassifier::load_with(name, spec, &path, config.max_batch)?,
                Backend::Onnxruntime => {
                    let lib = cache.verified_path(manifest.get(&config.onnxruntime)?)?;
                    crate::ort_backend::init(&lib)?;
                    ImageClassifier::load_ort(name, spec, &path, config.max_batch)?
                }
            };
            tracing::info!(model = %name, backend = model.backend(), "frame classifier loaded");
            let model = Arc::new(model);
            let (tx, rx) = mpsc::channel();
            let m = model.clone();
            let (max_batch, wait) = (config.max_batch, Duration::from_millis(config.max_wait_ms));
            std::thread::Builder::new()
                .name(format!("classify-{name}"))
                .spawn(move || batch_loop(m, rx, max_batch, wait))
                .map_err(|e| ClassifyError::Load(format!("{name}: inference thread: {e}")))?;
            runners.push(Runner { model, tx });
        }
        // A combine rule names a category a loaded frame model scores (the shipped one may
        // name one no model scores, when the frame models are cut down).
        let scored: Vec<&String> = runners
            .iter()
            .flat_map(|r| r.model.spec.categories.keys())
            .collect();
        for (category, rule) in &config.combine {
            let shipped = default_combine().get(category) == Some(rule);
            if !scored.contains(&category) && !shipped {
                return Err(ClassifyError::Load(format!(
                    "classify.combine: {category:?} is not a category of the frame classifiers {:?} (they score {scored:?})",
                    config.frame_models
                )));
            }
        }
        let text = Arc::new(config.text().load()?);
        warm_refiner(&text);
        let faces = config.load_faces()?.map(Arc::new);
        let likeness = config.load_likeness()?.map(Arc::new);
        Ok(ClassifyStage {
            runners,
            detectors,
            text,
            faces,
            likeness,
            store,
            combine: config.combine_rules(),
            config,
        })
    }

    /// The loaded text classifier.
    pub fn text(&self) -> &Arc<TextClassifier> {
        &self.text
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
                Err(e) if e.retryable() => return Err(e.into()),
                Err(_) => {
                    unreadable += 1;
                    continue;
                }
            };
            let rgb = tokio::task::spawn_blocking(move || {
                image::load_from_memory(&bytes).map(|i| i.to_rgb8())
            })
            .await
            .map_err(|e| {
                StageError::internal(clipguard_pipeline::error::kind::PANIC, e.to_string())
            })?;
            match rgb {
                Ok(img) => decoded.push((frame.timestamp_s, Arc::new(img))),
                Err(_) => unreadable += 1,
            }
        }
        self.classify_frames(
            &extract.clip_id,
            decoded,
            unreadable,
            extract.context.as_ref(),
        )
        .await
    }

    /// Scores decoded frames (clip time, picture) and the context's prompt and scene
    /// description: the stage's work once the thumbnails are read. Input checks call it with
    /// uploaded images. `unreadable` frames are named in the signal's reasons.
    pub async fn classify_frames(
        &self,
        clip_id: &str,
        decoded: Vec<(f64, Arc<image::RgbImage>)>,
        unreadable: usize,
        context: Option<&ClipContext>,
    ) -> Result<Signal, StageError> {
        let mut scores: Vec<CategoryScore> = Vec::new();
        // Every model gets every frame first (their threads run side by side), then each
        // frame's scores are combined per category.
        let mut waits = Vec::with_capacity(self.runners.len());
        for runner in &self.runners {
            let mut pending = Vec::with_capacity(decoded.len());
            for (_, img) in &decoded {
                let (reply, rx) = oneshot::channel();
                let job = Job {
                    image: img.clone(),
                    reply,
                };
                runner.tx.send(job).map_err(|_| {
                    StageError::internal("model_thread", "inference thread stopped")
                })?;
                pending.push(rx);
            }
            waits.push((runner, pending));
        }
        let mut frames: Vec<Vec<FrameScore>> = vec![Vec::new(); decoded.len()];
        for (runner, pending) in waits {
            for (frame, rx) in frames.iter_mut().zip(pending) {
                let row = rx
                    .await
                    .map_err(|_| StageError::internal("model_thread", "inference thread stopped"))?
                    .map_err(|e| StageError::internal("inference", e))?;
                frame.extend(row.into_iter().map(|(category, score)| FrameScore {
                    model: runner.model.name.clone(),
                    category,
                    score,
                    threshold: runner.model.spec.threshold,
                }));
            }
        }
        for ((t, _), frame) in decoded.iter().zip(&frames) {
            fold_frame(&mut scores, *t, frame, &self.combine);
        }
        for detector in &self.detectors {
            if decoded.is_empty() {
                break;
            }
            let detector = detector.clone();
            let frames = decoded.clone();
            let found = tokio::task::spawn_blocking(move || detection_scores(&detector, &frames))
                .await
                .map_err(|e| {
                    StageError::internal(clipguard_pipeline::error::kind::PANIC, e.to_string())
                })?
                .map_err(|e| StageError::internal("inference", e.to_string()))?;
            merge(&mut scores, found);
        }
        let mut likeness_matches = Vec::new();
        let mut unchecked_faces = 0;
        if let Some(faces) = &self.faces
            && !decoded.is_empty()
        {
            let faces = faces.clone();
            let likeness = self.likeness.clone();
            let frames = decoded.clone();
            let threshold = self.config.minor_threshold;
            let (score, matches, unchecked) = tokio::task::spawn_blocking(move || {
                if let Some(l) = &likeness {
                    l.reload_when_due();
                }
                face_scores(&faces, likeness.as_deref(), &frames, threshold)
            })
            .await
            .map_err(|e| {
                StageError::internal(clipguard_pipeline::error::kind::PANIC, e.to_string())
            })?
            .map_err(|e| StageError::internal("inference", e.to_string()))?;
            merge(&mut scores, vec![score]);
            likeness_matches = matches;
            unchecked_faces = unchecked;
        }
        let mut reasons = Vec::new();
        if unreadable > 0 {
            reasons.push("frame_unreadable".to_string());
        }
        if unchecked_faces > 0 {
            // Faces too small to compare with the enrolled people (eyes under 10 px apart).
            reasons.push("likeness_unchecked_faces".to_string());
        }
        let context = context.cloned().unwrap_or_default();
        let mut texts = Vec::new();
        for (source, text) in [
            ("prompt", &context.prompt),
            ("scene_description", &context.scene_description),
        ] {
            let (text, cut) = bounded(text, self.config.max_text_bytes);
            if cut && !reasons.iter().any(|r| r == "text_truncated") {
                reasons.push("text_truncated".to_string());
            }
            if !text.trim().is_empty() {
                texts.push((source.to_string(), text.to_string(), 0.0, 0.0));
            }
        }
        if !texts.is_empty() {
            merge(&mut scores, classify_texts(&self.text, texts).await?);
        }
        Ok(Signal {
            clip_id: clip_id.to_string(),
            stage: NAME.to_string(),
            scores,
            reasons,
            likeness_matches,
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
        Ok(vec![Record::signal(key, &signal)])
    }
}

pub const TRANSCRIPT_NAME: &str = clipguard_schemas::names::stage::CLASSIFY_TRANSCRIPT;

/// The text classifier over transcripts: consumes `clips.transcripts`, scores every segment
/// (evidence carries the segment's clip time) and emits the `classify_transcript` signal.
/// A deployment of its own, scaled by lag on `clips.transcripts`.
pub struct ClassifyTranscriptStage {
    text: Arc<TextClassifier>,
    config: ClassifyConfig,
}

impl std::fmt::Debug for ClassifyTranscriptStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifyTranscriptStage")
            .field("text", &self.text)
            .finish_non_exhaustive()
    }
}

impl ClassifyTranscriptStage {
    pub fn new(config: ClassifyConfig) -> Result<Self, ClassifyError> {
        let mut problems = Vec::new();
        config.validate(&mut problems);
        if !problems.is_empty() {
            return Err(ClassifyError::Load(problems.join("; ")));
        }
        let text = Arc::new(config.text().load()?);
        warm_refiner(&text);
        Ok(ClassifyTranscriptStage { text, config })
    }

    /// Shares an already loaded text classifier (in-process pipelines: `clipguard scan`).
    pub fn with_text(text: Arc<TextClassifier>, config: ClassifyConfig) -> Self {
        ClassifyTranscriptStage { text, config }
    }

    pub fn text(&self) -> &Arc<TextClassifier> {
        &self.text
    }

    /// Scores one transcript: each segment on its own (so evidence has its times), or the
    /// whole text when there are no segments.
    pub async fn classify_transcript(&self, t: &Transcript) -> Result<Signal, StageError> {
        let mut reasons = Vec::new();
        let mut budget = self.config.max_text_bytes;
        let mut inputs = Vec::new();
        let pieces: Vec<(&str, f64, f64)> = if t.segments.is_empty() {
            vec![(t.text.as_str(), 0.0, 0.0)]
        } else {
            t.segments
                .iter()
                .map(|s| (s.text.as_str(), s.start_s, s.end_s))
                .collect()
        };
        for (text, a, b) in pieces {
            let (text, cut) = bounded(text, budget);
            budget -= text.len();
            if cut {
                reasons.push("text_truncated".to_string());
            }
            if !text.trim().is_empty() {
                inputs.push(("transcript".to_string(), text.to_string(), a, b));
            }
            if cut {
                break;
            }
        }
        let scores = if inputs.is_empty() {
            Vec::new()
        } else {
            classify_texts(&self.text, inputs).await?
        };
        Ok(Signal {
            clip_id: t.clip_id.clone(),
            stage: TRANSCRIPT_NAME.to_string(),
            scores,
            reasons,
            produced_at_ms: now_ms(),
            ..Signal::default()
        })
    }
}

impl Stage for ClassifyTranscriptStage {
    type Input = Transcript;
    type Output = Vec<Record>;

    fn name(&self) -> &'static str {
        TRANSCRIPT_NAME
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.config.attempt_timeout_s)
    }

    async fn process(
        &self,
        mut input: Transcript,
        ctx: &ProcessCtx,
    ) -> Result<Vec<Record>, StageError> {
        if input.clip_id.is_empty() {
            input.clip_id = ctx.clip_id.clone();
        }
        let key = input.clip_id.clone();
        let signal = self.classify_transcript(&input).await?;
        Ok(vec![Record::signal(key, &signal)])
    }
}
