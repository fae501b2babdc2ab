//! Potential minors: faces found by BlazeFace (full range, 256 × 256), each aligned by its eyes
//! and mouth into a 64 × 64 chip, and the age estimator's distribution over 0–80 years. A face
//! whose probability of being under 18 reaches the threshold makes `potential_minor` evidence
//! with the frame's time, the face's box and its estimated age.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

use crate::model::Rgb;
use crate::resize::resize_rgb;
use crate::{ClassifyError, load_err};

type Plan = Arc<TypedRunnableModel>;

/// Detector input side.
pub const DETECTOR_SIZE: usize = 256;
/// Age chip side.
pub const CHIP_SIZE: usize = 64;
/// Context around the face in the chip, as a share of the face size on each side.
pub const CHIP_PADDING: f32 = 0.2;
/// Where the eyes and the mouth centre land in the unpadded face square of a chip.
pub const CANONICAL: [(f32, f32); 3] = [(0.30, 0.33), (0.70, 0.33), (0.50, 0.78)];
/// The age estimator's per-channel means (RGB); inputs are `(value − mean) / 256`.
const AGE_MEANS: [f32; 3] = [122.782, 117.001, 104.298];
/// Ages of the estimator's 81 classes: 0.25, then 1 … 80 years.
fn class_age(i: usize) -> f32 {
    if i == 0 { 0.25 } else { i as f32 }
}

/// Overlap above which two detections are the same face (MediaPipe's value).
const IOU_SAME_FACE: f32 = 0.3;

/// `ConstantOfShape` without a `value` attribute means a float32 zero (ONNX); tract 0.23
/// assumes f64 there, which breaks the graph's types. Spell the default out.
pub fn spell_out_constant_of_shape(graph: &mut pb::GraphProto) -> usize {
    let mut n = 0;
    for node in &mut graph.node {
        if node.op_type == "ConstantOfShape" && !node.attribute.iter().any(|a| a.name == "value") {
            node.attribute.push(pb::AttributeProto {
                name: "value".into(),
                r#type: pb::attribute_proto::AttributeType::Tensor as i32,
                t: Some(pb::TensorProto {
                    dims: vec![1],
                    data_type: DataType::Float as i32,
                    float_data: vec![0.0],
                    ..Default::default()
                }),
                ..Default::default()
            });
            n += 1;
        }
    }
    n
}

fn plan_for(name: &str, path: &Path, patch: bool) -> Result<Plan, ClassifyError> {
    let onnx = tract_onnx::onnx();
    let mut proto = onnx.proto_model_for_path(path).map_err(|e| {
        load_err(
            name,
            format!("{}: not a loadable ONNX model: {e:#}", path.display()),
        )
    })?;
    if patch && let Some(g) = proto.graph.as_mut() {
        spell_out_constant_of_shape(g);
    }
    onnx.model_for_proto_model(&proto)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| load_err(name, format!("{e:#}")))
}

/// One detected face, in pixels of the image it was found in.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    pub score: f32,
    /// Box centre and size.
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
    /// Right eye, left eye, nose tip, mouth centre, right ear, left ear (the subject's sides).
    pub keypoints: [(f32, f32); 6],
}

fn iou(a: &Face, b: &Face) -> f32 {
    let ix = ((a.cx + a.w / 2.0).min(b.cx + b.w / 2.0) - (a.cx - a.w / 2.0).max(b.cx - b.w / 2.0))
        .max(0.0);
    let iy = ((a.cy + a.h / 2.0).min(b.cy + b.h / 2.0) - (a.cy - a.h / 2.0).max(b.cy - b.h / 2.0))
        .max(0.0);
    let inter = ix * iy;
    let union = a.w * a.h + b.w * b.h - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Weighted non-maximum suppression: detections overlapping the best one are merged into it,
/// coordinates averaged by score (MediaPipe's blending), the best score kept.
pub fn blend(mut faces: Vec<Face>) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while let Some(best) = faces.first().cloned() {
        let (same, rest): (Vec<Face>, Vec<Face>) = faces
            .into_iter()
            .partition(|f| iou(&best, f) >= IOU_SAME_FACE);
        faces = rest;
        let total: f32 = same.iter().map(|f| f.score).sum();
        let avg =
            |get: &dyn Fn(&Face) -> f32| same.iter().map(|f| get(f) * f.score).sum::<f32>() / total;
        let mut keypoints = [(0.0, 0.0); 6];
        for (k, kp) in keypoints.iter_mut().enumerate() {
            *kp = (avg(&|f| f.keypoints[k].0), avg(&|f| f.keypoints[k].1));
        }
        out.push(Face {
            score: best.score,
            cx: avg(&|f| f.cx),
            cy: avg(&|f| f.cy),
            w: avg(&|f| f.w),
            h: avg(&|f| f.h),
            keypoints,
        });
    }
    out
}

/// The 2 × 3 similarity transform (rotation, uniform scale, shift) that maps `src` onto `dst`
/// best in least squares ([`clipguard_models::dlib::similarity`], the one fit of the project).
pub fn similarity(src: &[(f32, f32)], dst: &[(f32, f32)]) -> [[f32; 3]; 2] {
    let points = |p: &[(f32, f32)]| -> Vec<[f64; 2]> {
        p.iter()
            .map(|&(x, y)| [f64::from(x), f64::from(y)])
            .collect()
    };
    let (m, t) = clipguard_models::dlib::similarity(&points(src), &points(dst));
    [
        [m[0] as f32, m[1] as f32, t[0] as f32],
        [m[2] as f32, m[3] as f32, t[1] as f32],
    ]
}

/// Extracts the aligned chip of `face`: eyes and mouth on [`CANONICAL`] (inside a
/// [`CHIP_PADDING`] margin), bilinear sampling, edge pixels repeated outside the image.
pub fn face_chip(image: &Rgb<'_>, face: &Face) -> Vec<u8> {
    let size = CHIP_SIZE as f32;
    let dst: Vec<(f32, f32)> = CANONICAL
        .iter()
        .map(|(x, y)| {
            (
                (x + CHIP_PADDING) / (1.0 + 2.0 * CHIP_PADDING) * size,
                (y + CHIP_PADDING) / (1.0 + 2.0 * CHIP_PADDING) * size,
            )
        })
        .collect();
    let src = [face.keypoints[0], face.keypoints[1], face.keypoints[3]];
    // Map chip → image: the inverse of image → chip.
    let m = similarity(&dst, &src);
    let (w, h) = (image.width as isize, image.height as isize);
    let px = |x: isize, y: isize, c: usize| -> f32 {
        let x = x.clamp(0, w - 1) as usize;
        let y = y.clamp(0, h - 1) as usize;
        image.pixels[(y * image.width + x) * 3 + c] as f32
    };
    let mut out = Vec::with_capacity(CHIP_SIZE * CHIP_SIZE * 3);
    for y in 0..CHIP_SIZE {
        for x in 0..CHIP_SIZE {
            // Pixel centres on both sides.
            let (u, v) = (x as f32 + 0.5, y as f32 + 0.5);
            let sx = m[0][0] * u + m[0][1] * v + m[0][2] - 0.5;
            let sy = m[1][0] * u + m[1][1] * v + m[1][2] - 0.5;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            for c in 0..3 {
                let top = px(x0, y0, c) * (1.0 - fx) + px(x0 + 1, y0, c) * fx;
                let bottom = px(x0, y0 + 1, c) * (1.0 - fx) + px(x0 + 1, y0 + 1, c) * fx;
                out.push((top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

/// A face and what the age estimator says of it.
#[derive(Debug, Clone)]
pub struct AgedFace {
    pub face: Face,
    /// Expected age over the estimator's distribution.
    pub age: f32,
    /// Probability of an age under 18.
    pub p_minor: f32,
}

pub struct FaceAges {
    detector: Plan,
    age: Plan,
    /// Detections below this score are ignored.
    pub min_face_score: f32,
}

impl std::fmt::Debug for FaceAges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceAges")
            .field("min_face_score", &self.min_face_score)
            .finish_non_exhaustive()
    }
}

impl FaceAges {
    /// Loads the detector (BlazeFace full range: input `[1, 256, 256, 3]`, outputs scores and
    /// boxes of 16 × 16 × 2 and 8 × 8 × 6 anchors) and the age estimator (`[N, 3, 64, 64]` →
    /// 81 probabilities); checks both shapes now.
    pub fn load(
        detector: (&str, &Path),
        age: (&str, &Path),
        min_face_score: f32,
    ) -> Result<Self, ClassifyError> {
        let d = plan_for(detector.0, detector.1, true)?;
        let shapes: Vec<String> = (0..d.model().outputs.len())
            .filter_map(|i| {
                d.model()
                    .output_fact(i)
                    .ok()
                    .map(|f| format!("{:?}", f.shape))
            })
            .collect();
        let want = ["1,512,1", "1,384,1", "1,512,16", "1,384,16"];
        if shapes.len() != 4 || shapes.iter().zip(want).any(|(s, w)| s != w) {
            return Err(load_err(
                detector.0,
                format!("outputs {shapes:?}; a BlazeFace full-range detector gives {want:?}"),
            ));
        }
        let a = plan_for(age.0, age.1, false)?;
        let fact = a.model().output_fact(0).map_err(|e| load_err(age.0, e))?;
        if fact.shape.last().and_then(|d| d.to_usize().ok()) != Some(81) {
            return Err(load_err(
                age.0,
                format!(
                    "output {:?}; the age estimator gives 81 classes",
                    fact.shape
                ),
            ));
        }
        Ok(FaceAges {
            detector: d,
            age: a,
            min_face_score,
        })
    }

    /// Where `image` lies in the detector's square input: shrunk (or grown) to fit 256 × 256
    /// whole, keeping its proportions, and centred on black (MediaPipe's letterbox): its size
    /// there and its offset. A tall portrait or a 16:9 frame is not squashed.
    pub fn letterbox(image: &Rgb<'_>) -> (usize, usize, usize, usize) {
        let side = image.width.max(image.height).max(1) as f64;
        let fit = |v: usize| {
            ((v as f64 * DETECTOR_SIZE as f64 / side).round() as usize).clamp(1, DETECTOR_SIZE)
        };
        let (w, h) = (fit(image.width), fit(image.height));
        (w, h, (DETECTOR_SIZE - w) / 2, (DETECTOR_SIZE - h) / 2)
    }

    /// The detector's input tensor for `image`: letterboxed into 256 × 256
    /// ([`FaceAges::letterbox`]; Pillow bilinear), RGB scaled to [-1, 1], NHWC.
    pub fn detector_input(image: &Rgb<'_>) -> Vec<f32> {
        let (w, h, ox, oy) = Self::letterbox(image);
        let small = resize_rgb(image.pixels, image.width, image.height, w, h);
        let mut out = vec![-1.0f32; DETECTOR_SIZE * DETECTOR_SIZE * 3];
        for y in 0..h {
            let row = ((oy + y) * DETECTOR_SIZE + ox) * 3;
            for (o, &v) in out[row..row + w * 3]
                .iter_mut()
                .zip(&small[y * w * 3..(y + 1) * w * 3])
            {
                *o = v as f32 / 127.5 - 1.0;
            }
        }
        out
    }

    /// Raw detector outputs (scores 512 + 384, boxes 512 × 16 + 384 × 16), for parity tests.
    pub fn run_detector(&self, input: Vec<f32>) -> Result<[Vec<f32>; 4], ClassifyError> {
        let t = Tensor::from_shape(&[1, DETECTOR_SIZE, DETECTOR_SIZE, 3], &input)
            .map_err(|e| ClassifyError::Run(e.to_string()))?;
        let out = self
            .detector
            .run(tvec!(t.into()))
            .map_err(|e| ClassifyError::Run(format!("face detector: {e:#}")))?;
        let v = |i: usize| -> Result<Vec<f32>, ClassifyError> {
            Ok(out[i]
                .to_plain_array_view::<f32>()
                .map_err(|e| ClassifyError::Run(e.to_string()))?
                .iter()
                .copied()
                .collect())
        };
        Ok([v(0)?, v(1)?, v(2)?, v(3)?])
    }

    /// Faces in `image`, in its pixels, after blending overlapping detections.
    pub fn detect(&self, image: &Rgb<'_>) -> Result<Vec<Face>, ClassifyError> {
        let [s16, s8, b16, b8] = self.run_detector(Self::detector_input(image))?;
        let (lw, lh, ox, oy) = Self::letterbox(image);
        // Detector pixels → picture pixels.
        let (sx, sy) = (
            image.width as f32 / lw as f32,
            image.height as f32 / lh as f32,
        );
        let mut faces = Vec::new();
        for (scores, boxes, cells, per_cell) in [(&s16, &b16, 16usize, 2usize), (&s8, &b8, 8, 6)] {
            for (i, &logit) in scores.iter().enumerate() {
                let score = 1.0 / (1.0 + (-logit).exp());
                if score < self.min_face_score {
                    continue;
                }
                let cell = i / per_cell;
                let ax = ((cell % cells) as f32 + 0.5) / cells as f32;
                let ay = ((cell / cells) as f32 + 0.5) / cells as f32;
                let b = &boxes[i * 16..i * 16 + 16];
                let at = |dx: f32, dy: f32| {
                    (
                        (ax * DETECTOR_SIZE as f32 + dx - ox as f32) * sx,
                        (ay * DETECTOR_SIZE as f32 + dy - oy as f32) * sy,
                    )
                };
                let (cx, cy) = at(b[0], b[1]);
                let mut keypoints = [(0.0, 0.0); 6];
                for (k, kp) in keypoints.iter_mut().enumerate() {
                    *kp = at(b[4 + 2 * k], b[5 + 2 * k]);
                }
                faces.push(Face {
                    score,
                    cx,
                    cy,
                    w: b[2] * sx,
                    h: b[3] * sy,
                    keypoints,
                });
            }
        }
        Ok(blend(faces))
    }

    /// The age estimator's 81 probabilities for each 64 × 64 RGB chip.
    pub fn age_probabilities(&self, chips: &[Vec<u8>]) -> Result<Vec<Vec<f32>>, ClassifyError> {
        let mut out = Vec::with_capacity(chips.len());
        for chip in chips {
            let mut data = Vec::with_capacity(3 * CHIP_SIZE * CHIP_SIZE);
            for c in 0..3 {
                for p in chip.chunks_exact(3) {
                    data.push((p[c] as f32 - AGE_MEANS[c]) / 256.0);
                }
            }
            let t = Tensor::from_shape(&[1, 3, CHIP_SIZE, CHIP_SIZE], &data)
                .map_err(|e| ClassifyError::Run(e.to_string()))?;
            let r = self
                .age
                .run(tvec!(t.into()))
                .map_err(|e| ClassifyError::Run(format!("age estimator: {e:#}")))?;
            out.push(
                r[0].to_plain_array_view::<f32>()
                    .map_err(|e| ClassifyError::Run(e.to_string()))?
                    .iter()
                    .copied()
                    .collect(),
            );
        }
        Ok(out)
    }

    /// Every face in `image` with its estimated age.
    pub fn faces_with_ages(&self, image: &Rgb<'_>) -> Result<Vec<AgedFace>, ClassifyError> {
        let faces = self.detect(image)?;
        let chips: Vec<Vec<u8>> = faces.iter().map(|f| face_chip(image, f)).collect();
        let probs = self.age_probabilities(&chips)?;
        Ok(faces
            .into_iter()
            .zip(probs)
            .map(|(face, p)| AgedFace {
                age: p.iter().enumerate().map(|(i, q)| q * class_age(i)).sum(),
                p_minor: p.iter().take(18).sum(),
                face,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(score: f32, cx: f32) -> Face {
        Face {
            score,
            cx,
            cy: 50.0,
            w: 20.0,
            h: 20.0,
            keypoints: [(cx, 50.0); 6],
        }
    }

    #[test]
    fn blending_merges_overlaps_and_keeps_separate_faces() {
        let out = blend(vec![face(0.9, 50.0), face(0.6, 54.0), face(0.8, 150.0)]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        // Score-weighted centre of 50 (0.9) and 54 (0.6).
        assert!((out[0].cx - 51.6).abs() < 1e-4, "{}", out[0].cx);
        assert_eq!(out[1].cx, 150.0);
    }

    #[test]
    fn similarity_recovers_a_known_transform() {
        // Rotate 90°, scale 2, shift (10, 5).
        let src = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)];
        let dst: Vec<(f32, f32)> = src
            .iter()
            .map(|(x, y)| (10.0 - 2.0 * y, 5.0 + 2.0 * x))
            .collect();
        let m = similarity(&src, &dst);
        let want = [[0.0, -2.0, 10.0], [2.0, 0.0, 5.0]];
        for r in 0..2 {
            for c in 0..3 {
                assert!((m[r][c] - want[r][c]).abs() < 1e-5, "{m:?}");
            }
        }
    }

    #[test]
    fn constant_of_shape_gets_an_f32_zero() {
        let mut g = pb::GraphProto {
            node: vec![pb::NodeProto {
                op_type: "ConstantOfShape".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(spell_out_constant_of_shape(&mut g), 1);
        assert_eq!(spell_out_constant_of_shape(&mut g), 0);
        let t = g.node[0].attribute[0].t.as_ref().unwrap();
        assert_eq!(t.data_type, DataType::Float as i32);
    }
}
