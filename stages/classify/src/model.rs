//! One manifest-declared ONNX classifier, loaded and optimised by tract for a symbolic batch.

use std::path::Path;

use clipguard_models::classifier::{ClassifierSpec, Colour, Fit, Layout, Scores};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::dims;
use tract_onnx::tract_hir::internal::DimLike;

use crate::resize::resize_rgb;
use crate::{ClassifyError, load_err};

type Plan = std::sync::Arc<TypedRunnableModel>;

/// Largest batch one inference call takes by default.
pub const DEFAULT_MAX_BATCH: usize = 8;

/// Optimised plans: one for any batch size when tract can optimise the model with a symbolic
/// batch axis, else a plan for one image run once per image. (A fixed batch-8 plan of
/// open_nsfw measured 76 ms a frame against 41 ms for the batch-1 plan in tract 0.23, so
/// batching buys nothing there.)
enum Plans {
    Symbolic(Plan),
    Single(Plan),
    /// ONNX Runtime (the optional backend).
    Ort(crate::ort_backend::OrtModel),
}

/// A loaded classifier: the optimised plan(s) and the spec that feeds them.
pub struct ImageClassifier {
    pub name: String,
    pub spec: ClassifierSpec,
    plans: Plans,
    max_batch: usize,
    outputs: usize,
}

impl std::fmt::Debug for ImageClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageClassifier")
            .field("name", &self.name)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// An 8-bit RGB image, row-major.
#[derive(Debug, Clone)]
pub struct Rgb<'a> {
    pub width: usize,
    pub height: usize,
    pub pixels: &'a [u8],
}

/// The outlet named `output` (a tensor label or a node name), or an error naming the model's
/// real outputs.
pub(crate) fn find_output(
    model: &InferenceModel,
    name: &str,
    output: &str,
) -> Result<OutletId, ClassifyError> {
    if let Some(o) = model.find_outlet_label(output).or_else(|| {
        model
            .node_by_name(output)
            .ok()
            .map(|n| OutletId::new(n.id, 0))
    }) {
        return Ok(o);
    }
    let outs: Vec<String> = model
        .output_outlets()
        .map(|o| {
            o.iter()
                .map(|o| {
                    model
                        .outlet_label(*o)
                        .map(str::to_string)
                        .unwrap_or_else(|| model.node(o.node).name.clone())
                })
                .collect()
        })
        .unwrap_or_default();
    Err(load_err(
        name,
        format!("no output tensor {output:?} (the model's outputs: {outs:?})"),
    ))
}

impl ImageClassifier {
    /// Loads and checks the model: the declared input and output tensors must exist, the input
    /// must take the declared layout and size, and the output must cover every category index.
    pub fn load(name: &str, spec: &ClassifierSpec, path: &Path) -> Result<Self, ClassifyError> {
        Self::load_with(name, spec, path, DEFAULT_MAX_BATCH)
    }

    /// [`ImageClassifier::load`] with the largest batch one call runs at once.
    pub fn load_with(
        name: &str,
        spec: &ClassifierSpec,
        path: &Path,
        max_batch: usize,
    ) -> Result<Self, ClassifyError> {
        let max_batch = max_batch.max(1);
        let mut model = read_onnx(name, path)?;
        let inputs = model
            .input_outlets()
            .map_err(|e| load_err(name, e))?
            .to_vec();
        let input_names: Vec<String> = inputs
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let Some(input) = input_names.iter().position(|n| *n == spec.input) else {
            return Err(load_err(
                name,
                format!(
                    "no input tensor {:?} (the model's inputs: {input_names:?})",
                    spec.input
                ),
            ));
        };
        if inputs.len() != 1 {
            return Err(load_err(
                name,
                format!(
                    "takes {} inputs ({input_names:?}); a frame classifier takes one",
                    inputs.len()
                ),
            ));
        }
        let output = find_output(&model, name, &spec.output)?;
        model
            .select_output_outlets(&[output])
            .map_err(|e| load_err(name, e))?;
        let batch = model.sym("N");
        let [h, w] = spec.size.map(|d| d as usize);
        let shape = match spec.layout {
            Layout::Nhwc => dims!(batch, h, w, 3),
            Layout::Nchw => dims!(batch, 3, h, w),
        };
        model
            .set_input_fact(input, f32::fact(shape.clone()).into())
            .map_err(|e| load_err(name, e))?;
        let shape_err = |e: TractError| {
            load_err(
                name,
                format!(
                    "input {:?} does not take {:?} f32 ({:?} layout, size {:?}): {e:#}",
                    spec.input, shape, spec.layout, spec.size
                ),
            )
        };
        let typed = model.into_typed().map_err(shape_err)?;
        // Some graphs (open_nsfw's ResNet among them) do not optimise with a symbolic batch
        // axis in tract 0.23; a batch-1 plan then stands in.
        let (optimised, symbolic) = match typed.clone().into_optimized() {
            Ok(opt) => (opt, true),
            Err(e) => {
                tracing::debug!(model = name, error = %e, "no symbolic-batch plan; batch 1");
                let one = typed
                    .set_symbols(&[(batch.clone(), TDim::Val(1))].into_iter().collect())
                    .and_then(|m| m.into_optimized())
                    .map_err(shape_err)?;
                (one, false)
            }
        };
        let out_fact = optimised.output_fact(0).map_err(|e| load_err(name, e))?;
        let outputs = out_fact
            .shape
            .last()
            .and_then(|d| d.to_usize().ok())
            .ok_or_else(|| {
                load_err(
                    name,
                    format!(
                        "output {:?} has no fixed last axis ({:?})",
                        spec.output, out_fact.shape
                    ),
                )
            })?;
        if let Some((cat, &i)) = spec.categories.iter().find(|(_, i)| **i >= outputs) {
            return Err(load_err(
                name,
                format!(
                    "category {cat:?} reads index {i} of output {:?}, which has {outputs} values",
                    spec.output
                ),
            ));
        }
        let plan = optimised.into_runnable().map_err(|e| load_err(name, e))?;
        let plans = if symbolic {
            Plans::Symbolic(plan)
        } else {
            Plans::Single(plan)
        };
        Ok(ImageClassifier {
            name: name.to_string(),
            spec: spec.clone(),
            plans,
            max_batch,
            outputs,
        })
    }

    /// Loads the model in ONNX Runtime (the optional backend; [`crate::ort_backend::init`]
    /// first). The tensor names are checked, and one blank image is run so that a wrong
    /// layout or size, or a category index beyond the output, fails here.
    pub fn load_ort(
        name: &str,
        spec: &ClassifierSpec,
        path: &Path,
        max_batch: usize,
    ) -> Result<Self, ClassifyError> {
        let model = crate::ort_backend::OrtModel::load(name, path, &spec.input, &spec.output)?;
        let [h, w] = spec.size.map(|d| d as usize);
        let shape = match spec.layout {
            Layout::Nhwc => [1, h, w, 3],
            Layout::Nchw => [1, 3, h, w],
        };
        let probe = model.run(&shape, &vec![0f32; h * w * 3]).map_err(|e| {
            load_err(
                name,
                format!(
                    "input {:?} does not take {shape:?} f32 ({:?} layout, size {:?}): {e}",
                    spec.input, spec.layout, spec.size
                ),
            )
        })?;
        let outputs = probe.len();
        if let Some((cat, &i)) = spec.categories.iter().find(|(_, i)| **i >= outputs) {
            return Err(load_err(
                name,
                format!(
                    "category {cat:?} reads index {i} of output {:?}, which has {outputs} values",
                    spec.output
                ),
            ));
        }
        Ok(ImageClassifier {
            name: name.to_string(),
            spec: spec.clone(),
            plans: Plans::Ort(model),
            max_batch: max_batch.max(1),
            outputs,
        })
    }

    /// Which backend runs the model: `tract` or `onnxruntime`.
    pub fn backend(&self) -> &'static str {
        match self.plans {
            Plans::Ort(_) => "onnxruntime",
            _ => "tract",
        }
    }

    /// Raw outputs (after the declared activation) for a batch of images.
    pub fn run(&self, images: &[Rgb<'_>]) -> Result<Vec<Vec<f32>>, ClassifyError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let [h, w] = self.spec.size.map(|d| d as usize);
        let mut data = Vec::with_capacity(images.len() * h * w * 3);
        for img in images {
            preprocess(&self.spec, img, &mut data);
        }
        let shape = match self.spec.layout {
            Layout::Nhwc => [images.len(), h, w, 3],
            Layout::Nchw => [images.len(), 3, h, w],
        };
        self.run_tensor(&shape, data)
    }

    /// Runs an already-preprocessed batch of any size (split into calls the plan takes).
    pub fn run_tensor(
        &self,
        shape: &[usize],
        data: Vec<f32>,
    ) -> Result<Vec<Vec<f32>>, ClassifyError> {
        let n = shape[0];
        let per: usize = shape[1..].iter().product();
        if let Plans::Ort(model) = &self.plans {
            let mut out = Vec::with_capacity(n);
            for chunk in data.chunks(self.max_batch * per) {
                let mut s = shape.to_vec();
                s[0] = chunk.len() / per;
                let flat = model.run(&s, chunk)?;
                if flat.len() != s[0] * self.outputs {
                    return Err(ClassifyError::Run(format!(
                        "{}: {} output values for a batch of {} × {}",
                        self.name,
                        flat.len(),
                        s[0],
                        self.outputs
                    )));
                }
                out.extend(
                    flat.chunks(self.outputs)
                        .map(|row| activate(self.spec.scores, row)),
                );
            }
            return Ok(out);
        }
        let plan = match &self.plans {
            Plans::Symbolic(p) if n <= self.max_batch => p,
            Plans::Single(p) if n == 1 => p,
            _ => {
                // Larger than one call takes: split.
                let step = match self.plans {
                    Plans::Symbolic(_) => self.max_batch,
                    _ => 1,
                };
                let mut out = Vec::with_capacity(n);
                for chunk in data.chunks(step * per) {
                    let mut s = shape.to_vec();
                    s[0] = chunk.len() / per;
                    out.extend(self.run_tensor(&s, chunk.to_vec())?);
                }
                return Ok(out);
            }
        };
        let tensor = Tensor::from_shape(shape, &data)
            .map_err(|e| ClassifyError::Run(format!("{}: {e}", self.name)))?;
        let out = plan
            .run(tvec!(tensor.into()))
            .map_err(|e| ClassifyError::Run(format!("{}: {e:#}", self.name)))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| ClassifyError::Run(format!("{}: {e}", self.name)))?;
        let flat: Vec<f32> = view.iter().copied().collect();
        if flat.len() != n * self.outputs {
            return Err(ClassifyError::Run(format!(
                "{}: {} output values for a batch of {n} × {}",
                self.name,
                flat.len(),
                self.outputs
            )));
        }
        Ok(flat
            .chunks(self.outputs)
            .map(|row| activate(self.spec.scores, row))
            .collect())
    }

    /// Per-category scores for a batch, in the spec's category order.
    pub fn scores(&self, images: &[Rgb<'_>]) -> Result<Vec<Vec<(String, f32)>>, ClassifyError> {
        Ok(self
            .run(images)?
            .into_iter()
            .map(|row| {
                self.spec
                    .categories
                    .iter()
                    .map(|(c, &i)| (c.clone(), row[i]))
                    .collect()
            })
            .collect())
    }
}

fn activate(scores: Scores, row: &[f32]) -> Vec<f32> {
    match scores {
        Scores::Probabilities => row.to_vec(),
        Scores::Sigmoid => row.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
        Scores::Logits => {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = row.iter().map(|&x| (x - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            exps.iter().map(|&e| e / sum).collect()
        }
    }
}

/// The ONNX graph at `path`, for tract. Exported graphs often carry intermediate shapes in
/// value_info that tract's own shape inference disagrees with (image-safety-s does): they are
/// hints, not the model, and are ignored.
pub(crate) fn read_onnx(name: &str, path: &Path) -> Result<InferenceModel, ClassifyError> {
    tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_path(path)
        .map_err(|e| {
            load_err(
                name,
                format!("{}: not a loadable ONNX model: {e:#}", path.display()),
            )
        })
}

/// Appends one image's input tensor to `out`: resize (Pillow bilinear), centre crop, channel
/// order, scale, mean and std, in the spec's layout.
pub fn preprocess(spec: &ClassifierSpec, image: &Rgb<'_>, out: &mut Vec<f32>) {
    let [h, w] = spec.size.map(|d| d as usize);
    let [rh, rw] = spec.resize.unwrap_or(spec.size).map(|d| d as usize);
    let resized = match spec.fit {
        Fit::Stretch => resize_rgb(image.pixels, image.width, image.height, rw, rh),
        Fit::Blurpad => blurpad(image, w, h),
    };
    let (top, left) = ((rh - h) / 2, (rw - w) / 2);
    let order: [usize; 3] = match spec.colour {
        Colour::Rgb => [0, 1, 2],
        Colour::Bgr => [2, 1, 0],
    };
    let value = |y: usize, x: usize, c: usize| {
        let src = resized[((top + y) * rw + left + x) * 3 + order[c]] as f32;
        (src * spec.scale - spec.mean[c]) / spec.std[c]
    };
    match spec.layout {
        Layout::Nhwc => {
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        out.push(value(y, x, c));
                    }
                }
            }
        }
        Layout::Nchw => {
            for c in 0..3 {
                for y in 0..h {
                    for x in 0..w {
                        out.push(value(y, x, c));
                    }
                }
            }
        }
    }
}

/// The frame fitted inside `w` × `h` with its aspect ratio (Lanczos3), centred on a copy of it
/// stretched to `w` × `h` and blurred (Gaussian, σ = 10); RGB bytes, `w` × `h` × 3.
pub fn blurpad(image: &Rgb<'_>, w: usize, h: usize) -> Vec<u8> {
    use image::imageops::{self, FilterType};
    let Some(src) = image::RgbImage::from_raw(
        image.width as u32,
        image.height as u32,
        image.pixels.to_vec(),
    ) else {
        // A buffer that does not match its size: what a stretch makes of it.
        return resize_rgb(image.pixels, image.width, image.height, w, h);
    };
    let (sw, sh) = (image.width.max(1) as f64, image.height.max(1) as f64);
    let scale = (w as f64 / sw).min(h as f64 / sh);
    let fw = ((sw * scale).round() as u32).clamp(1, w as u32);
    let fh = ((sh * scale).round() as u32).clamp(1, h as u32);
    let mut canvas = imageops::blur(
        &imageops::resize(&src, w as u32, h as u32, FilterType::Lanczos3),
        10.0,
    );
    let fg = imageops::resize(&src, fw, fh, FilterType::Lanczos3);
    imageops::replace(
        &mut canvas,
        &fg,
        i64::from((w as u32 - fw) / 2),
        i64::from((h as u32 - fh) / 2),
    );
    canvas.into_raw()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A 2:1 frame keeps its shape: centred in the middle band, the blurred stretched copy
    /// above and below.
    #[test]
    fn blurpad_fits_the_frame_on_a_blurred_copy_of_itself() {
        // Left half white, right half black, 200 × 100.
        let pixels: Vec<u8> = (0..100)
            .flat_map(|_| (0..200).flat_map(|x| [if x < 100 { 255u8 } else { 0 }; 3]))
            .collect();
        let img = Rgb {
            width: 200,
            height: 100,
            pixels: &pixels,
        };
        let out = blurpad(&img, 224, 224);
        assert_eq!(out.len(), 224 * 224 * 3);
        let at = |x: usize, y: usize| out[(y * 224 + x) * 3];
        // Inside the fitted band (rows 56..168): sharp halves.
        assert!(at(20, 112) > 250 && at(200, 112) < 5);
        // Above it: the stretched copy, blurred across the edge at x = 112.
        assert!(at(20, 10) > 200 && at(200, 10) < 55);
        let (l, r) = (at(104, 10), at(120, 10));
        assert!(l < 250 && r > 5 && l > r, "a soft edge: {l} {r}");
    }
}
