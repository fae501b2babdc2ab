//! Object detectors declared in the model manifest (`[model.detector]`): frame → the
//! classifier preprocessing → tract → boxes, per-class non-maximum suppression, classes mapped
//! to policy categories. A user brings a detector by writing a manifest entry, no code.

use std::path::Path;
use std::sync::Arc;

use clipguard_models::classifier::{DetectorFormat, DetectorSpec, Layout};
use tract_onnx::prelude::*;

use crate::{ClassifyError, load_err};
use clipguard_models::classifier::ClassifierSpec;

use crate::model::{Rgb, find_output, preprocess, read_onnx};

/// One kept box, in pixels of the frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub class: usize,
    pub category: String,
    pub score: f32,
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

fn iou(a: &Detection, b: &Detection) -> f32 {
    let ix = ((a.x + a.w).min(b.x + b.w) - a.x.max(b.x)).max(0.0);
    let iy = ((a.y + a.h).min(b.y + b.h) - a.y.max(b.y)).max(0.0);
    let inter = ix * iy;
    let union = a.w * a.h + b.w * b.h - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Greedy non-maximum suppression within each class.
pub fn nms(mut boxes: Vec<Detection>, iou_limit: f32) -> Vec<Detection> {
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for b in boxes {
        if !kept
            .iter()
            .any(|k| k.class == b.class && iou(k, &b) > iou_limit)
        {
            kept.push(b);
        }
    }
    kept
}

pub struct ImageDetector {
    pub name: String,
    pub spec: DetectorSpec,
    /// The input half of the spec, as the shared preprocessing takes it.
    pre: ClassifierSpec,
    plan: Arc<TypedRunnableModel>,
    classes: usize,
}

impl std::fmt::Debug for ImageDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageDetector")
            .field("name", &self.name)
            .field("classes", &self.classes)
            .finish_non_exhaustive()
    }
}

impl ImageDetector {
    /// Loads and checks the detector: the declared tensors exist, the input takes the declared
    /// layout and size, the output has the declared format, every class index fits.
    pub fn load(name: &str, spec: &DetectorSpec, path: &Path) -> Result<Self, ClassifyError> {
        let mut model = read_onnx(name, path)?;
        let inputs = model
            .input_outlets()
            .map_err(|e| load_err(name, e))?
            .to_vec();
        let names: Vec<String> = inputs
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        if names.len() != 1 || names[0] != spec.input {
            return Err(load_err(
                name,
                format!(
                    "no single input tensor {:?} (the model's inputs: {names:?})",
                    spec.input
                ),
            ));
        }
        let output = find_output(&model, name, &spec.output)?;
        model
            .select_output_outlets(&[output])
            .map_err(|e| load_err(name, e))?;
        let [h, w] = spec.size.map(|d| d as usize);
        let shape = match spec.layout {
            Layout::Nhwc => tvec![1, h, w, 3],
            Layout::Nchw => tvec![1, 3, h, w],
        };
        model
            .set_input_fact(0, f32::fact(shape.clone()).into())
            .map_err(|e| load_err(name, e))?;
        let typed = model.into_optimized().map_err(|e| {
            load_err(
                name,
                format!("input {:?} does not take {shape:?} f32: {e:#}", spec.input),
            )
        })?;
        let fact = typed.output_fact(0).map_err(|e| load_err(name, e))?;
        let dims: Option<Vec<usize>> = fact.shape.as_concrete().map(|d| d.to_vec());
        let classes = match (spec.format, dims.as_deref()) {
            (DetectorFormat::Yolov8, Some([1, rows, _])) if *rows > 4 => rows - 4,
            _ => {
                return Err(load_err(
                    name,
                    format!(
                        "output {:?} is {:?}; the yolov8 format is [1, 4 + classes, boxes]",
                        spec.output, fact.shape
                    ),
                ));
            }
        };
        if let Some((cat, i)) = spec
            .categories
            .iter()
            .find_map(|(c, is)| is.iter().find(|i| **i >= classes).map(|i| (c, i)))
        {
            return Err(load_err(
                name,
                format!("category {cat:?} names class {i}; the model has {classes} classes"),
            ));
        }
        Ok(ImageDetector {
            name: name.to_string(),
            spec: spec.clone(),
            pre: spec.preprocessing(),
            plan: typed.into_runnable().map_err(|e| load_err(name, e))?,
            classes,
        })
    }

    /// Boxes of mapped classes above the threshold after NMS, in the frame's pixels.
    pub fn detect(&self, image: &Rgb<'_>) -> Result<Vec<Detection>, ClassifyError> {
        let run = |e: String| ClassifyError::Run(format!("{}: {e}", self.name));
        let mut data = Vec::new();
        preprocess(&self.pre, image, &mut data);
        let [h, w] = self.spec.size.map(|d| d as usize);
        let shape: [usize; 4] = match self.spec.layout {
            Layout::Nhwc => [1, h, w, 3],
            Layout::Nchw => [1, 3, h, w],
        };
        let t = Tensor::from_shape(&shape, &data).map_err(|e| run(e.to_string()))?;
        let out = self
            .plan
            .run(tvec!(t.into()))
            .map_err(|e| run(format!("{e:#}")))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| run(e.to_string()))?;
        let flat: Vec<f32> = view.iter().copied().collect();
        let rows = 4 + self.classes;
        if flat.is_empty() || !flat.len().is_multiple_of(rows) {
            return Err(run(format!(
                "{} output values, not rows of {rows}",
                flat.len()
            )));
        }
        let n = flat.len() / rows;
        let at = |r: usize, i: usize| flat[r * n + i];
        let (sx, sy) = (
            image.width as f32 / w as f32,
            image.height as f32 / h as f32,
        );
        let mut boxes = Vec::new();
        for i in 0..n {
            for (category, classes) in &self.spec.categories {
                for &c in classes {
                    let score = at(4 + c, i);
                    if score < self.spec.threshold {
                        continue;
                    }
                    let (cx, cy, bw, bh) = (at(0, i), at(1, i), at(2, i), at(3, i));
                    boxes.push(Detection {
                        class: c,
                        category: category.clone(),
                        score,
                        x: (cx - bw / 2.0) * sx,
                        y: (cy - bh / 2.0) * sy,
                        w: bw * sx,
                        h: bh * sy,
                    });
                }
            }
        }
        Ok(nms(boxes, self.spec.iou))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(class: usize, score: f32, x: f32) -> Detection {
        Detection {
            class,
            category: "c".into(),
            score,
            x,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_per_class() {
        let kept = nms(
            vec![
                d(0, 0.6, 1.0),
                d(0, 0.9, 0.0),
                d(1, 0.7, 0.0),
                d(0, 0.8, 50.0),
            ],
            0.45,
        );
        let got: Vec<(usize, f32)> = kept.iter().map(|k| (k.class, k.score)).collect();
        assert_eq!(got, vec![(0, 0.9), (0, 0.8), (1, 0.7)]);
    }
}
