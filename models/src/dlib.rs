//! dlib's face models without dlib. [`ShapePredictor`] reads and runs the 5-point landmark
//! model, [`face_chip`] cuts the chip the descriptor reads, and [`convert_dlib_resnet`] turns the
//! descriptor network into ONNX.
//!
//! dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`: a 150 × 150
//! aligned face chip → a 128-D descriptor; the same person below Euclidean distance 0.6) as an
//! ONNX graph, so tract runs it without dlib.
//!
//! The `.dat` file does not describe its network: it is the network's parameters in the order
//! dlib's serializers write them, for one fixed C++ network type (the 29-convolution ResNet of
//! dlib's face recognition example). [`convert_dlib_resnet`] walks the file along that type,
//! checking every tag, kernel, stride and channel count it meets and that the walk ends on the
//! file's last byte; then it writes the graph.
//!
//! dlib's encodings, in short: an integer is a control byte (bit 7: negative; low 4 bits: byte
//! count) and that many little-endian bytes; a float is two integers, mantissa then exponent
//! (m · 2^e); a string is its length and bytes; a bool is ASCII `1` or `0`; a tensor is version
//! 2, its four dimensions and raw little-endian f32s; an alias tensor is version 1 and four
//! dimensions. A layer wrapper writes its version, then the layers beneath it, then its own
//! details: so the details come out from input to output.
//!
//! The graph takes `chip`, [1, 150, 150, 3] RGB 0..255 (HWC, as a chip is cut), subtracts
//! dlib's means and divides by 256 (not 255), folds each affine (batch norm) layer into the
//! convolution before it, and where a residual sum meets tensors of different sizes (the
//! downsampling blocks) pads both with zeros at the end of each axis, as dlib's `add_prev` does.

use std::io::Write;

use crate::ModelError;
use crate::onnx::{Attr, DataType, Dim, Graph};

fn bad(at: usize, what: impl std::fmt::Display) -> ModelError {
    ModelError::Format(format!("dlib model, byte {at}: {what}"))
}

/// A cursor over dlib's serialization.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ModelError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| bad(self.pos, format!("{n} more bytes past the end")))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn int(&mut self) -> Result<i64, ModelError> {
        let at = self.pos;
        let ctrl = self.take(1)?[0];
        let n = usize::from(ctrl & 0x0f);
        if ctrl & 0x70 != 0 || n > 8 {
            return Err(bad(
                at,
                format!("not an integer (control byte {ctrl:#04x})"),
            ));
        }
        let mut v: u64 = 0;
        for (i, byte) in self.take(n)?.iter().enumerate() {
            v |= u64::from(*byte) << (8 * i);
        }
        let v = i64::try_from(v).map_err(|_| bad(at, "integer out of range"))?;
        Ok(if ctrl & 0x80 != 0 { -v } else { v })
    }

    fn count(&mut self) -> Result<usize, ModelError> {
        let at = self.pos;
        let v = self.int()?;
        usize::try_from(v).map_err(|_| bad(at, format!("a size of {v}")))
    }

    fn float(&mut self) -> Result<f64, ModelError> {
        let m = self.int()?;
        let e = self.int()?;
        Ok(match e {
            32000 => f64::INFINITY,
            32001 => f64::NEG_INFINITY,
            32002 => f64::NAN,
            e => (m as f64) * 2f64.powi(e as i32),
        })
    }

    fn boolean(&mut self) -> Result<bool, ModelError> {
        let at = self.pos;
        match self.take(1)?[0] {
            b'1' => Ok(true),
            b'0' => Ok(false),
            c => Err(bad(at, format!("not a bool ({c:#04x})"))),
        }
    }

    fn name(&mut self, expected: &str) -> Result<(), ModelError> {
        let at = self.pos;
        let n = self.count()?;
        let s = self.take(n)?;
        if s != expected.as_bytes() {
            return Err(bad(
                at,
                format!(
                    "expected {expected:?}, found {:?}",
                    String::from_utf8_lossy(s)
                ),
            ));
        }
        Ok(())
    }

    fn version(&mut self, allowed: &[i64]) -> Result<i64, ModelError> {
        let at = self.pos;
        let v = self.int()?;
        if !allowed.contains(&v) {
            return Err(bad(at, format!("version {v}, expected one of {allowed:?}")));
        }
        Ok(v)
    }

    /// A tensor: its dimensions (n, k, rows, cols) and values.
    fn tensor(&mut self) -> Result<([usize; 4], Vec<f32>), ModelError> {
        self.version(&[2])?;
        let dims = [self.count()?, self.count()?, self.count()?, self.count()?];
        let len = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&l| l <= self.b.len() / 4)
            .ok_or_else(|| bad(self.pos, format!("a tensor of {dims:?}")))?;
        let raw = self.take(len * 4)?;
        let values = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((dims, values))
    }

    fn alias(&mut self) -> Result<[usize; 4], ModelError> {
        self.version(&[1])?;
        Ok([self.count()?, self.count()?, self.count()?, self.count()?])
    }
}

/// One layer, input to output.
#[derive(Debug, Clone, PartialEq)]
enum Layer {
    /// Filters [out, in, k, k] and bias [out].
    Conv {
        w: Vec<f32>,
        b: Vec<f32>,
        out: usize,
        inp: usize,
        k: usize,
        stride: usize,
        pad: usize,
    },
    /// Per-channel scale and shift (batch norm, folded at training's end).
    Affine {
        gamma: Vec<f32>,
        beta: Vec<f32>,
    },
    Relu,
    MaxPool {
        k: usize,
        stride: usize,
    },
    AvgPool {
        k: usize,
        stride: usize,
    },
    GlobalAvgPool,
    Tag(u8),
    Skip(u8),
    AddPrev(u8),
    /// Weights [in, out], no bias.
    Fc {
        w: Vec<f32>,
        inp: usize,
        out: usize,
    },
}

/// The network type, as a tree from the loss down to the input.
enum Net {
    /// `add_layer<details, subnet>`.
    Add(Spec, Box<Net>),
    Tag(u8, Box<Net>),
    Skip(u8, Box<Net>),
    /// The first convolution over `input_rgb_image_sized<150>`.
    Input(Spec),
}

/// What a layer's details must say.
#[derive(Clone, Copy)]
enum Spec {
    Conv { out: usize, k: usize, stride: usize },
    Affine,
    Relu,
    MaxPool { k: usize, stride: usize },
    AvgPool { k: usize, stride: usize },
    AddPrev(u8),
    Fc(usize),
}

fn add(s: Spec, sub: Net) -> Net {
    Net::Add(s, Box::new(sub))
}

/// conv → affine → relu → conv → affine over `sub`.
fn block(n: usize, stride: usize, sub: Net) -> Net {
    let c = |stride| Spec::Conv {
        out: n,
        k: 3,
        stride,
    };
    add(
        Spec::Affine,
        add(
            c(1),
            add(Spec::Relu, add(Spec::Affine, add(c(stride), sub))),
        ),
    )
}

fn residual(n: usize, sub: Net) -> Net {
    add(
        Spec::Relu,
        add(Spec::AddPrev(1), block(n, 1, Net::Tag(1, Box::new(sub)))),
    )
}

fn residual_down(n: usize, sub: Net) -> Net {
    let main = Net::Tag(2, Box::new(block(n, 2, Net::Tag(1, Box::new(sub)))));
    add(
        Spec::Relu,
        add(
            Spec::AddPrev(2),
            add(
                Spec::AvgPool { k: 2, stride: 2 },
                Net::Skip(1, Box::new(main)),
            ),
        ),
    )
}

/// dlib's face recognition network (`anet_type` of its example), loss aside.
fn network() -> Net {
    let mut x = Net::Input(Spec::Conv {
        out: 32,
        k: 7,
        stride: 2,
    });
    x = add(Spec::Affine, x);
    x = add(Spec::Relu, x);
    x = add(Spec::MaxPool { k: 3, stride: 2 }, x);
    // Per level: its channels and plain residual blocks; every level but the first opens with
    // a downsampling block, and one more downsampling block ends the network.
    for (n, plain) in [(32, 3), (64, 3), (128, 2), (256, 2)] {
        if n != 32 {
            x = residual_down(n, x);
        }
        for _ in 0..plain {
            x = residual(n, x);
        }
    }
    x = residual_down(256, x);
    // avg_pool_everything, then fc_no_bias<128>.
    x = add(Spec::AvgPool { k: 0, stride: 1 }, x);
    add(Spec::Fc(128), x)
}

struct Walk<'a> {
    r: Reader<'a>,
    layers: Vec<Layer>,
    means: [f32; 3],
    /// Channels of the tensor the next layer reads.
    channels: usize,
}

impl Walk<'_> {
    fn details(&mut self, s: Spec) -> Result<Layer, ModelError> {
        let r = &mut self.r;
        let at = r.pos;
        Ok(match s {
            Spec::Conv { out, k, stride } => {
                r.name("con_4")?;
                let (_, params) = r.tensor()?;
                let filters = r.count()?;
                let (nr, nc, sy, sx, py, px) = (
                    r.count()?,
                    r.count()?,
                    r.count()?,
                    r.count()?,
                    r.count()?,
                    r.count()?,
                );
                let wd = r.alias()?;
                let bd = r.alias()?;
                for _ in 0..4 {
                    r.float()?; // learning-rate and weight-decay multipliers
                }
                let inp = self.channels;
                if filters != out || (nr, nc) != (k, k) || (sy, sx) != (stride, stride) || py != px
                {
                    return Err(bad(
                        at,
                        format!(
                            "convolution {filters} {nr}x{nc}/{sy} pad {py}, expected {out} {k}x{k}/{stride}"
                        ),
                    ));
                }
                let wn = out * inp * k * k;
                if wd != [out, inp, k, k] || bd[1] != out || params.len() != wn + out {
                    return Err(bad(
                        at,
                        format!(
                            "convolution parameters {} for filters {wd:?} and bias {bd:?}",
                            params.len()
                        ),
                    ));
                }
                self.channels = out;
                Layer::Conv {
                    w: params[..wn].to_vec(),
                    b: params[wn..].to_vec(),
                    out,
                    inp,
                    k,
                    stride,
                    pad: py,
                }
            }
            Spec::Affine => {
                r.name("affine_")?;
                let (_, params) = r.tensor()?;
                let g = r.alias()?;
                let b = r.alias()?;
                let _mode = r.int()?;
                let c = self.channels;
                if g[1] != c || b[1] != c || params.len() != 2 * c {
                    return Err(bad(at, format!("affine of {g:?} over {c} channels")));
                }
                Layer::Affine {
                    gamma: params[..c].to_vec(),
                    beta: params[c..].to_vec(),
                }
            }
            Spec::Relu => {
                r.name("relu_")?;
                Layer::Relu
            }
            Spec::MaxPool { k, stride } | Spec::AvgPool { k, stride } => {
                let max = matches!(s, Spec::MaxPool { .. });
                r.name(if max { "max_pool_2" } else { "avg_pool_2" })?;
                let dims = [
                    r.count()?,
                    r.count()?,
                    r.count()?,
                    r.count()?,
                    r.count()?,
                    r.count()?,
                ];
                if dims != [k, k, stride, stride, 0, 0] {
                    return Err(bad(
                        at,
                        format!("pool {dims:?}, expected {k}x{k}/{stride} pad 0"),
                    ));
                }
                match (max, k) {
                    (true, _) => Layer::MaxPool { k, stride },
                    (false, 0) => Layer::GlobalAvgPool,
                    (false, _) => Layer::AvgPool { k, stride },
                }
            }
            Spec::AddPrev(tag) => {
                r.name("add_prev_")?;
                Layer::AddPrev(tag)
            }
            Spec::Fc(out) => {
                r.name("fc_2")?;
                let nout = r.count()?;
                let nin = r.count()?;
                let (_, params) = r.tensor()?;
                let wd = r.alias()?;
                let _bias = r.alias()?;
                let bias_mode = r.int()?;
                for _ in 0..4 {
                    r.float()?;
                }
                if nout != out
                    || nin != self.channels
                    || bias_mode != 1
                    || wd[..2] != [nin, nout]
                    || params.len() != nin * nout
                {
                    return Err(bad(
                        at,
                        format!(
                            "fc {nin}->{nout} (bias mode {bias_mode}), expected {}->{out} without bias",
                            self.channels
                        ),
                    ));
                }
                self.channels = out;
                Layer::Fc {
                    w: params,
                    inp: nin,
                    out,
                }
            }
        })
    }

    /// The wrapper's bools and work tensors after a layer's details.
    fn wrapper_tail(&mut self, tensors: usize) -> Result<(), ModelError> {
        for _ in 0..3 {
            self.r.boolean()?;
        }
        for _ in 0..tensors {
            self.r.tensor()?;
        }
        Ok(())
    }

    fn node(&mut self, n: &Net) -> Result<(), ModelError> {
        match n {
            Net::Add(s, sub) => {
                let v = self.r.version(&[1, 2])?;
                self.node(sub)?;
                let layer = self.details(*s)?;
                self.layers.push(layer);
                self.wrapper_tail(if v == 2 { 3 } else { 2 })
            }
            Net::Tag(id, sub) | Net::Skip(id, sub) => {
                self.r.version(&[1])?;
                self.node(sub)?;
                self.layers.push(match n {
                    Net::Tag(..) => Layer::Tag(*id),
                    _ => Layer::Skip(*id),
                });
                Ok(())
            }
            Net::Input(s) => {
                let v = self.r.version(&[2, 3])?;
                self.r.name("input_rgb_image_sized")?;
                for m in &mut self.means {
                    *m = self.r.float()? as f32;
                }
                let (rows, cols) = (self.r.count()?, self.r.count()?);
                if (rows, cols) != (150, 150) {
                    return Err(bad(self.r.pos, format!("an input of {rows}x{cols}")));
                }
                self.channels = 3;
                let layer = self.details(*s)?;
                self.layers.push(layer);
                self.wrapper_tail(3)?;
                if v == 3 {
                    self.r.int()?; // sample expansion factor
                }
                Ok(())
            }
        }
    }
}

/// The layers of the `.dat` file in input-to-output order and dlib's RGB means.
fn read_layers(dat: &[u8]) -> Result<(Vec<Layer>, [f32; 3]), ModelError> {
    let mut w = Walk {
        r: Reader { b: dat, pos: 0 },
        layers: Vec::new(),
        means: [0.0; 3],
        channels: 3,
    };
    w.r.version(&[1])?;
    w.r.name("loss_metric_2")?;
    let (_margin, threshold) = (w.r.float()?, w.r.float()?);
    if (threshold - 0.6).abs() > 1e-6 {
        return Err(bad(w.r.pos, format!("distance threshold {threshold}")));
    }
    w.node(&network())?;
    if w.r.pos != dat.len() {
        return Err(bad(
            w.r.pos,
            format!("{} bytes left after the network", dat.len() - w.r.pos),
        ));
    }
    Ok((w.layers, w.means))
}

/// Converts dlib's face recognition ResNet (`.dat`) into ONNX: input `chip` [1, 150, 150, 3]
/// f32 RGB 0..255, output `descriptor` [1, 128].
pub fn convert_dlib_resnet(
    dat: &[u8],
    out: &mut impl Write,
    log: &mut dyn FnMut(&str),
) -> Result<(), ModelError> {
    let (layers, means) = read_layers(dat)?;
    let mut g = Graph::default();
    let chip = g.input(
        "chip",
        DataType::Float,
        &[
            Dim::Fixed(1),
            Dim::Fixed(150),
            Dim::Fixed(150),
            Dim::Fixed(3),
        ],
    );
    let mean = g.f32s("mean", &[1, 1, 1, 3], &means);
    let scale = g.scalar("scale", 1.0 / 256.0);
    let x = g.op("Sub", &[&chip, &mean], &[]);
    let x = g.op("Mul", &[&x, &scale], &[]);
    let mut x = g.op(
        "Transpose",
        &[&x],
        &[("perm", Attr::Ints(vec![0, 3, 1, 2]))],
    );
    // (channels, height, width) of `x`, tracked to pad the residual sums.
    let mut shape = [3usize, 150, 150];
    let mut tags: Vec<(u8, String, [usize; 3])> = Vec::new();
    let mut convs = 0;
    let mut i = 0;
    while i < layers.len() {
        match &layers[i] {
            Layer::Conv {
                w,
                b,
                out,
                inp,
                k,
                stride,
                pad,
            } => {
                let Some(Layer::Affine { gamma, beta }) = layers.get(i + 1) else {
                    return Err(ModelError::Format(
                        "dlib model: a convolution without its affine layer".into(),
                    ));
                };
                // Fold: W' = W·γ (per output channel), b' = b·γ + β.
                let per = inp * k * k;
                let wf: Vec<f32> = w
                    .iter()
                    .enumerate()
                    .map(|(j, v)| v * gamma[j / per])
                    .collect();
                let bf: Vec<f32> = b
                    .iter()
                    .zip(gamma)
                    .zip(beta)
                    .map(|((b, g), be)| b * g + be)
                    .collect();
                convs += 1;
                let wn = g.f32s(&format!("conv{convs}.w"), &[*out, *inp, *k, *k], &wf);
                let bn = g.f32s(&format!("conv{convs}.b"), &[*out], &bf);
                let (ki, si, pi) = (*k as i64, *stride as i64, *pad as i64);
                x = g.op(
                    "Conv",
                    &[&x, &wn, &bn],
                    &[
                        ("kernel_shape", Attr::Ints(vec![ki, ki])),
                        ("strides", Attr::Ints(vec![si, si])),
                        ("pads", Attr::Ints(vec![pi, pi, pi, pi])),
                    ],
                );
                let side = |n: usize| (n + 2 * pad - k) / stride + 1;
                shape = [*out, side(shape[1]), side(shape[2])];
                i += 1;
            }
            Layer::Affine { .. } => {
                return Err(ModelError::Format(
                    "dlib model: an affine layer not after a convolution".into(),
                ));
            }
            Layer::Relu => x = g.op("Relu", &[&x], &[]),
            Layer::MaxPool { k, stride } | Layer::AvgPool { k, stride } => {
                let op = if matches!(layers[i], Layer::MaxPool { .. }) {
                    "MaxPool"
                } else {
                    "AveragePool"
                };
                let (ki, si) = (*k as i64, *stride as i64);
                x = g.op(
                    op,
                    &[&x],
                    &[
                        ("kernel_shape", Attr::Ints(vec![ki, ki])),
                        ("strides", Attr::Ints(vec![si, si])),
                    ],
                );
                let side = |n: usize| (n - k) / stride + 1;
                shape = [shape[0], side(shape[1]), side(shape[2])];
            }
            Layer::GlobalAvgPool => {
                x = g.op("GlobalAveragePool", &[&x], &[]);
                shape = [shape[0], 1, 1];
            }
            Layer::Tag(id) => {
                tags.retain(|t| t.0 != *id);
                tags.push((*id, x.clone(), shape));
            }
            Layer::Skip(id) | Layer::AddPrev(id) => {
                let Some((_, y, ys)) = tags.iter().rev().find(|t| t.0 == *id).cloned() else {
                    return Err(ModelError::Format(format!("dlib model: no tag {id}")));
                };
                if matches!(layers[i], Layer::Skip(_)) {
                    (x, shape) = (y, ys);
                } else {
                    // dlib adds tensors of different sizes over the larger one, zeros beyond.
                    let full = [0, 1, 2].map(|a| shape[a].max(ys[a]));
                    // ONNX pads: the starts of N, C, H, W, then their ends.
                    let mut pad_to = |v: String, vs: [usize; 3], which: &str| {
                        if vs == full {
                            return v;
                        }
                        let mut pads = vec![0i64; 5];
                        pads.extend([0, 1, 2].map(|a| (full[a] - vs[a]) as i64));
                        let p = g.i64s(&format!("pads{i}{which}"), &[8], &pads);
                        g.op("Pad", &[&v, &p], &[])
                    };
                    let a = pad_to(x.clone(), shape, "a");
                    let b = pad_to(y, ys, "b");
                    x = g.op("Add", &[&a, &b], &[]);
                    shape = full;
                }
            }
            Layer::Fc { w, inp, out } => {
                let flat = g.op("Flatten", &[&x], &[("axis", Attr::Int(1))]);
                let wn = g.f32s("fc.w", &[*inp, *out], w);
                g.node("MatMul", &[&flat, &wn], "descriptor", &[]);
                shape = [*out, 1, 1];
            }
        }
        i += 1;
    }
    if shape != [128, 1, 1] {
        return Err(ModelError::Format(format!(
            "dlib model: the network ends in {shape:?}, not a 128-D descriptor"
        )));
    }
    g.output(
        "descriptor",
        DataType::Float,
        &[Dim::Fixed(1), Dim::Fixed(128)],
    );
    log(&format!(
        "{convs} convolutions (affine layers folded in), {} MB of weights",
        g.weight_bytes / 1_000_000
    ));
    g.write_model(
        "dlib_face_recognition_resnet_model_v1",
        "clipguard",
        13,
        out,
    )
    .map_err(ModelError::from)
}

/// dlib's 5-point face landmark model (`shape_predictor_5_face_landmarks.dat`): a cascade of
/// regression-tree forests over grey-level differences of pixel pairs placed relative to the
/// current shape. Read from the `.dat` as dlib writes it: version 1, the initial shape (in the
/// face box's unit square), the forests (each tree: its splits, pixel pair and threshold, then
/// its leaves' shape updates), and per cascade the feature pixels' anchor landmarks and offsets.
#[derive(Debug, Clone)]
pub struct ShapePredictor {
    initial: Vec<f32>,
    /// Per cascade: its trees.
    cascades: Vec<Vec<Tree>>,
    /// Per cascade: each feature pixel's anchor landmark and offset.
    anchors: Vec<Vec<usize>>,
    deltas: Vec<Vec<[f32; 2]>>,
}

#[derive(Debug, Clone)]
struct Tree {
    /// (pixel a, pixel b, threshold): go left when a − b > threshold.
    splits: Vec<(usize, usize, f32)>,
    leaves: Vec<Vec<f32>>,
}

impl ShapePredictor {
    pub fn parse(dat: &[u8]) -> Result<Self, ModelError> {
        let mut r = Reader { b: dat, pos: 0 };
        r.version(&[1])?;
        let initial = column(&mut r)?;
        let parts = initial.len();
        if parts == 0 || parts % 2 != 0 {
            return Err(bad(r.pos, format!("an initial shape of {parts} values")));
        }
        let mut cascades = Vec::new();
        for _ in 0..r.count()? {
            let mut trees = Vec::new();
            for _ in 0..r.count()? {
                let mut splits = Vec::new();
                for _ in 0..r.count()? {
                    splits.push((r.count()?, r.count()?, r.float()? as f32));
                }
                let mut leaves = Vec::new();
                for _ in 0..r.count()? {
                    let leaf = column(&mut r)?;
                    if leaf.len() != parts {
                        return Err(bad(r.pos, "a leaf of another shape"));
                    }
                    leaves.push(leaf);
                }
                if leaves.len() != splits.len() + 1 {
                    return Err(bad(r.pos, "a tree whose leaves do not follow its splits"));
                }
                trees.push(Tree { splits, leaves });
            }
            cascades.push(trees);
        }
        let mut anchors = Vec::new();
        for _ in 0..r.count()? {
            let mut a = Vec::new();
            for _ in 0..r.count()? {
                let i = r.count()?;
                if i >= parts / 2 {
                    return Err(bad(r.pos, format!("anchor landmark {i}")));
                }
                a.push(i);
            }
            anchors.push(a);
        }
        let mut deltas = Vec::new();
        for _ in 0..r.count()? {
            let mut d = Vec::new();
            for _ in 0..r.count()? {
                d.push([r.float()? as f32, r.float()? as f32]);
            }
            deltas.push(d);
        }
        if anchors.len() != cascades.len()
            || deltas.len() != cascades.len()
            || anchors.iter().zip(&deltas).any(|(a, d)| a.len() != d.len())
        {
            return Err(bad(
                r.pos,
                "cascades, anchors and offsets disagree in number",
            ));
        }
        for (c, trees) in cascades.iter().enumerate() {
            let features = anchors[c].len();
            if trees
                .iter()
                .flat_map(|t| &t.splits)
                .any(|s| s.0 >= features || s.1 >= features)
            {
                return Err(bad(
                    r.pos,
                    format!("cascade {c} compares a pixel it has not"),
                ));
            }
        }
        if r.pos != dat.len() {
            return Err(bad(
                r.pos,
                format!("{} bytes left after the model", dat.len() - r.pos),
            ));
        }
        Ok(ShapePredictor {
            initial,
            cascades,
            anchors,
            deltas,
        })
    }

    /// Landmarks the model places.
    pub fn parts(&self) -> usize {
        self.initial.len() / 2
    }

    /// The landmarks (x, y) of the face in `rect` ([left, top, right, bottom], inclusive, as
    /// dlib's rectangles) of a grey image `gray` (`width` × `height`, row-major): for an RGB
    /// picture dlib reads (R + G + B) / 3.
    pub fn predict(
        &self,
        gray: &[u8],
        width: usize,
        height: usize,
        rect: [i64; 4],
    ) -> Vec<[i64; 2]> {
        let [l, t, r, b] = rect.map(|v| v as f64);
        let parts = self.initial.len() / 2;
        let mut shape = self.initial.clone();
        let from: Vec<[f64; 2]> = (0..parts)
            .map(|i| {
                [
                    f64::from(self.initial[2 * i]),
                    f64::from(self.initial[2 * i + 1]),
                ]
            })
            .collect();
        for (c, trees) in self.cascades.iter().enumerate() {
            let to: Vec<[f64; 2]> = (0..parts)
                .map(|i| [f64::from(shape[2 * i]), f64::from(shape[2 * i + 1])])
                .collect();
            let (m, _) = similarity(&from, &to);
            let m = m.map(|v| v as f32);
            let features: Vec<f32> = self.anchors[c]
                .iter()
                .zip(&self.deltas[c])
                .map(|(&a, d)| {
                    let ux = m[0] * d[0] + m[1] * d[1] + shape[2 * a];
                    let uy = m[2] * d[0] + m[3] * d[1] + shape[2 * a + 1];
                    let x = (l + f64::from(ux) * (r - l) + 0.5).floor();
                    let y = (t + f64::from(uy) * (b - t) + 0.5).floor();
                    if x >= 0.0 && y >= 0.0 && (x as usize) < width && (y as usize) < height {
                        f32::from(gray[y as usize * width + x as usize])
                    } else {
                        0.0
                    }
                })
                .collect();
            for tree in trees {
                let mut i = 0;
                while i < tree.splits.len() {
                    let (a, b2, thresh) = tree.splits[i];
                    i = if features[a] - features[b2] > thresh {
                        2 * i + 1
                    } else {
                        2 * i + 2
                    };
                }
                for (s, d) in shape.iter_mut().zip(&tree.leaves[i - tree.splits.len()]) {
                    *s += d;
                }
            }
        }
        (0..parts)
            .map(|i| {
                let x = l + f64::from(shape[2 * i]) * (r - l);
                let y = t + f64::from(shape[2 * i + 1]) * (b - t);
                [(x + 0.5).floor() as i64, (y + 0.5).floor() as i64]
            })
            .collect()
    }
}

/// A column vector (dlib matrix<float,0,1>): its size (dimensions stored negated) and values.
fn column(r: &mut Reader<'_>) -> Result<Vec<f32>, ModelError> {
    let at = r.pos;
    let rows = r.int()?.unsigned_abs() as usize;
    let cols = r.int()?.unsigned_abs() as usize;
    if cols != 1 || rows > r.b.len() {
        return Err(bad(
            at,
            format!("a {rows}x{cols} matrix where a column was due"),
        ));
    }
    (0..rows).map(|_| r.float().map(|v| v as f32)).collect()
}

/// The least-squares similarity taking points `from` onto `to` (rotation and scale as a 2×2
/// matrix, row-major, and the translation): the closed form of Umeyama's for the plane, in
/// double precision as dlib fits it. The face-chip alignments of the classify stage use it too.
pub fn similarity(from: &[[f64; 2]], to: &[[f64; 2]]) -> ([f64; 4], [f64; 2]) {
    let n = from.len().max(1) as f64;
    let mean = |p: &[[f64; 2]]| {
        let s = p.iter().fold([0.0, 0.0], |a, q| [a[0] + q[0], a[1] + q[1]]);
        [s[0] / n, s[1] / n]
    };
    let (fm, tm) = (mean(from), mean(to));
    let (mut dot, mut cross, mut var) = (0.0, 0.0, 0.0);
    for (f, t) in from.iter().zip(to) {
        let (ax, ay) = (f[0] - fm[0], f[1] - fm[1]);
        let (bx, by) = (t[0] - tm[0], t[1] - tm[1]);
        dot += ax * bx + ay * by;
        cross += ax * by - ay * bx;
        var += ax * ax + ay * ay;
    }
    let norm = (dot * dot + cross * cross).sqrt();
    let (cos, sin, scale) = if norm == 0.0 || var == 0.0 {
        (1.0, 0.0, 1.0)
    } else {
        (dot / norm, cross / norm, norm / var)
    };
    let m = [scale * cos, -scale * sin, scale * sin, scale * cos];
    let shift = [
        tm[0] - (m[0] * fm[0] + m[1] * fm[1]),
        tm[1] - (m[2] * fm[0] + m[3] * fm[1]),
    ];
    (m, shift)
}

/// Where dlib's 5 landmarks sit in a face chip, in the chip's unit square (before padding).
const CHIP_TEMPLATE: [[f64; 2]; 5] = [
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
];

/// The 150 × 150 face chip dlib cuts for its descriptor (padding 0.25) from an RGB picture, by
/// the face's 5 landmarks: RGB bytes, or `None` for a face so large in the picture that dlib
/// would first shrink the picture (more than about 2 picture pixels a chip pixel; not done
/// here: such a picture is to be shrunk before).
pub fn face_chip(
    rgb: &[u8],
    width: usize,
    height: usize,
    landmarks: &[[i64; 2]],
) -> Option<Vec<u8>> {
    const SIZE: usize = 150;
    const PADDING: f64 = 0.25;
    if landmarks.len() != 5 || rgb.len() < width * height * 3 {
        return None;
    }
    let size = SIZE as f64;
    let from: Vec<[f64; 2]> = CHIP_TEMPLATE
        .iter()
        .map(|p| {
            [
                (PADDING + p[0]) / (2.0 * PADDING + 1.0) * size,
                (PADDING + p[1]) / (2.0 * PADDING + 1.0) * size,
            ]
        })
        .collect();
    let to: Vec<[f64; 2]> = landmarks
        .iter()
        .map(|p| [p[0] as f64, p[1] as f64])
        .collect();
    let (m, shift) = similarity(&from, &to);
    let (px, py) = (m[0], m[2]);
    let angle = py.atan2(px);
    let scale = px.hypot(py);
    let centre = [
        m[0] * size / 2.0 + m[1] * size / 2.0 + shift[0],
        m[2] * size / 2.0 + m[3] * size / 2.0 + shift[1],
    ];
    let span = size * scale - 1.0;
    if (span / 2.0 + 1.0).powi(2) > size * size {
        return None;
    }
    let k = span / (size - 1.0);
    let a = [
        k * angle.cos(),
        -k * angle.sin(),
        k * angle.sin(),
        k * angle.cos(),
    ];
    let half = (size - 1.0) / 2.0;
    let b = [
        centre[0] - (a[0] * half + a[1] * half),
        centre[1] - (a[2] * half + a[3] * half),
    ];
    let mut out = vec![0u8; SIZE * SIZE * 3];
    for r in 0..SIZE {
        for c in 0..SIZE {
            let (cf, rf) = (c as f64, r as f64);
            let x = a[0] * cf + a[1] * rf + b[0];
            let y = a[2] * cf + a[3] * rf + b[1];
            let (left, top) = (x.floor(), y.floor());
            if left < 0.0 || top < 0.0 || left + 1.0 >= width as f64 || top + 1.0 >= height as f64 {
                continue;
            }
            let (fx, fy) = (x - left, y - top);
            let (li, ti) = (left as usize, top as usize);
            let px = |xx: usize, yy: usize, ch: usize| f64::from(rgb[(yy * width + xx) * 3 + ch]);
            for ch in 0..3 {
                let v = (1.0 - fy) * ((1.0 - fx) * px(li, ti, ch) + fx * px(li + 1, ti, ch))
                    + fy * ((1.0 - fx) * px(li, ti + 1, ch) + fx * px(li + 1, ti + 1, ch));
                out[(r * SIZE + c) * 3 + ch] = v as u8;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlib_integers_floats_and_bools_read_as_dlib_writes_them() {
        // 0, -10, 300, then the float 0.75 (3 · 2^-2), then '1'.
        let bytes = [
            0x01, 0x00, 0x81, 0x0a, 0x02, 0x2c, 0x01, 0x01, 0x03, 0x81, 0x02, b'1',
        ];
        let mut r = Reader { b: &bytes, pos: 0 };
        assert_eq!(r.int().unwrap(), 0);
        assert_eq!(r.int().unwrap(), -10);
        assert_eq!(r.int().unwrap(), 300);
        assert_eq!(r.float().unwrap(), 0.75);
        assert!(r.boolean().unwrap());
        assert!(r.int().is_err(), "past the end");
        let mut r = Reader {
            b: &[0x35, 0x00],
            pos: 0,
        };
        assert!(
            r.int().is_err(),
            "a control byte with bits 4..6 set is no integer"
        );
    }

    #[test]
    fn a_truncated_or_foreign_file_is_refused_with_the_byte_it_stopped_at() {
        let mut sink = Vec::new();
        let e = convert_dlib_resnet(&[0x01, 0x01], &mut sink, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("byte"), "{e}");
        let e = convert_dlib_resnet(b"not a dlib file", &mut sink, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("dlib model"), "{e}");
    }
}
