//! The classifier part of a manifest entry: how a frame becomes the model's input tensor and
//! how its output becomes per-category scores. A user brings an ONNX classifier by writing this,
//! no code:
//!
//! ```toml
//! [model.classifier]
//! input = "input:0"            # input tensor name
//! layout = "nhwc"              # nhwc | nchw
//! size = [224, 224]            # height, width the model takes
//! resize = [256, 256]          # resize to this first (bilinear, as Pillow), then centre-crop to size
//! fit = "stretch"              # stretch (to size, or resize then crop) | blurpad (keep the aspect
//!                              # ratio: Lanczos3 onto a Gaussian-blurred stretched copy)
//! colour = "bgr"               # channel order: rgb | bgr
//! scale = 1.0                  # pixel (0..=255) × scale, then (− mean) / std per channel
//! mean = [104.0, 117.0, 123.0]
//! std = [1.0, 1.0, 1.0]
//! output = "prob"              # output tensor name
//! scores = "probabilities"     # probabilities | logits (softmax applied) | sigmoid
//! threshold = 0.5              # a frame above it flags the category
//! categories = { sexual = 1 }  # category → output index
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nhwc,
    Nchw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Rgb,
    Bgr,
}

/// How a frame of another shape becomes the model's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Resized to `size` (or to `resize`, then centre-cropped), the aspect ratio lost.
    #[default]
    Stretch,
    /// Resized (Lanczos3) to fit inside `size` with its aspect ratio, centred on a copy
    /// stretched to `size` and blurred (Gaussian, σ = 10): what image-safety-s's package does.
    Blurpad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scores {
    /// The output already holds probabilities.
    Probabilities,
    /// Softmax over the last axis first.
    Logits,
    /// Independent sigmoid per output.
    Sigmoid,
}

fn one() -> f32 {
    1.0
}

fn ones() -> [f32; 3] {
    [1.0; 3]
}

fn half() -> f32 {
    0.5
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierSpec {
    pub input: String,
    pub layout: Layout,
    /// [height, width] of the model's input.
    pub size: [u32; 2],
    /// [height, width] to resize to before the centre crop; absent: resize straight to `size`.
    #[serde(default)]
    pub resize: Option<[u32; 2]>,
    #[serde(default)]
    pub fit: Fit,
    pub colour: Colour,
    #[serde(default = "one")]
    pub scale: f32,
    #[serde(default)]
    pub mean: [f32; 3],
    #[serde(default = "ones")]
    pub std: [f32; 3],
    pub output: String,
    pub scores: Scores,
    #[serde(default = "half")]
    pub threshold: f32,
    /// Policy category → index in the output's last axis.
    pub categories: BTreeMap<String, usize>,
}

impl ClassifierSpec {
    /// Every problem with the spec, each naming the model and the field.
    pub fn validate(&self, model: &str) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let p = |field: &str, msg: String| format!("model {model:?}: classifier.{field}: {msg}");
        if self.size.contains(&0) {
            problems.push(p("size", format!("{:?} has a zero side", self.size)));
        }
        if let Some(r) = self.resize
            && (r[0] < self.size[0] || r[1] < self.size[1])
        {
            problems.push(p(
                "resize",
                format!(
                    "{r:?} is smaller than size {:?}: nothing to crop",
                    self.size
                ),
            ));
        }
        if self.fit == Fit::Blurpad && self.resize.is_some() {
            problems.push(p(
                "fit",
                "\"blurpad\" keeps the whole frame: it takes no resize-and-crop".into(),
            ));
        }
        if self.std.contains(&0.0) {
            problems.push(p("std", "a channel's std is zero".into()));
        }
        if self.categories.is_empty() {
            problems.push(p("categories", "maps no output to a category".into()));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            problems.push(p(
                "threshold",
                format!("{} is outside 0..=1", self.threshold),
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// How a detector's output is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorFormat {
    /// Ultralytics YOLOv8 export: `[1, 4 + classes, boxes]`, rows `cx, cy, w, h` in input pixels
    /// then one score (already in 0..1) per class.
    Yolov8,
}

fn default_iou() -> f32 {
    0.45
}

/// An object detector declared in the manifest (`[model.detector]`): the same input
/// preprocessing as a classifier, then boxes whose classes map to policy categories, kept above
/// a score threshold after per-class non-maximum suppression.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSpec {
    pub input: String,
    pub layout: Layout,
    pub size: [u32; 2],
    #[serde(default)]
    pub resize: Option<[u32; 2]>,
    #[serde(default)]
    pub fit: Fit,
    pub colour: Colour,
    #[serde(default = "one")]
    pub scale: f32,
    #[serde(default)]
    pub mean: [f32; 3],
    #[serde(default = "ones")]
    pub std: [f32; 3],
    pub output: String,
    pub format: DetectorFormat,
    /// Boxes scoring below this are dropped.
    #[serde(default = "half")]
    pub threshold: f32,
    /// Boxes of one class overlapping a better one by more than this are the same object.
    #[serde(default = "default_iou")]
    pub iou: f32,
    /// Policy category → the detector's class indices that count as it.
    pub categories: BTreeMap<String, Vec<usize>>,
}

impl DetectorSpec {
    /// The preprocessing half of the spec, as a classifier spec (shared input code).
    pub fn preprocessing(&self) -> ClassifierSpec {
        ClassifierSpec {
            input: self.input.clone(),
            layout: self.layout,
            size: self.size,
            resize: self.resize,
            fit: Fit::Stretch,
            colour: self.colour,
            scale: self.scale,
            mean: self.mean,
            std: self.std,
            output: self.output.clone(),
            scores: Scores::Probabilities,
            threshold: self.threshold,
            categories: BTreeMap::new(),
        }
    }

    /// Every problem with the spec, each naming the model and the field.
    pub fn validate(&self, model: &str) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let p = |field: &str, msg: String| format!("model {model:?}: detector.{field}: {msg}");
        if self.size.contains(&0) {
            problems.push(p("size", format!("{:?} has a zero side", self.size)));
        }
        if self.resize.is_some() {
            problems.push(p(
                "resize",
                "a detector sees the whole frame; resize-and-crop would hide its edges".into(),
            ));
        }
        if self.fit == Fit::Blurpad && self.resize.is_some() {
            problems.push(p(
                "fit",
                "\"blurpad\" keeps the whole frame: it takes no resize-and-crop".into(),
            ));
        }
        if self.std.contains(&0.0) {
            problems.push(p("std", "a channel's std is zero".into()));
        }
        if self.categories.is_empty() || self.categories.values().all(Vec::is_empty) {
            problems.push(p("categories", "maps no class to a category".into()));
        }
        for (field, v) in [("threshold", self.threshold), ("iou", self.iou)] {
            if !(0.0..=1.0).contains(&v) {
                problems.push(p(field, format!("{v} is outside 0..=1")));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
