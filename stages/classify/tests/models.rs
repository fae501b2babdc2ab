//! Manifest-declared classifiers in tract: open_nsfw and image-safety-s equal onnxruntime
//! (fixtures from `fixtures/make_parity.py`) within 1e-4 from the image file on, with Pillow's
//! exact resized pixels; neither flags the benign conformance images or the risky-looking
//! fixture frames (red paint, ketchup, raw meat); a user's own ONNX model (built here) runs from a manifest entry alone; wrong tensor
//! names, layouts and category indices fail at load, naming the model and the tensor.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use clipguard_classify::{ImageClassifier, Rgb};
use clipguard_models::classifier::{ClassifierSpec, Fit};
use clipguard_models::{Cache, Manifest, ModelEntry};
use prost::Message;
use sha2::{Digest, Sha256};
use tract_onnx::pb;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn load_png(path: &Path) -> (usize, usize, Vec<u8>) {
    let img = image::open(path).unwrap().to_rgb8();
    (img.width() as usize, img.height() as usize, img.into_raw())
}

/// The manifest's model, fetched into the cache if it is not there yet (idempotent).
fn model(name: &str) -> (ModelEntry, PathBuf) {
    let manifest = Manifest::load_default().unwrap();
    let entry = manifest.get(name).unwrap().clone();
    let cache = Cache::default();
    cache.fetch(&entry, &mut |l| eprintln!("{l}")).unwrap();
    let path = cache.verified_path(&entry).unwrap();
    (entry, path)
}

/// The frame classifiers of the manifest: open_nsfw (default) and image-safety-s (opt-in).
const FRAME_CLASSIFIERS: [&str; 2] = ["open-nsfw", "image-safety-s"];

#[test]
fn open_nsfw_in_tract_equals_onnxruntime_from_the_image_file_on() {
    parity("open-nsfw");
}

#[test]
fn image_safety_in_tract_equals_onnxruntime_from_the_image_file_on() {
    parity("image-safety-s");
}

/// The model's reference preprocessing: resize (Pillow bilinear) to `resize` and centre-crop to
/// `size`, or resize straight to `size`.
fn reference_pixels(spec: &ClassifierSpec, w: usize, h: usize, pixels: &[u8]) -> Vec<u8> {
    let [sh, sw] = spec.size.map(|v| v as usize);
    let Some([rh, rw]) = spec.resize.map(|r| r.map(|v| v as usize)) else {
        return clipguard_classify::resize::resize_rgb(pixels, w, h, sw, sh);
    };
    let resized = clipguard_classify::resize::resize_rgb(pixels, w, h, rw, rh);
    let (top, left) = ((rh - sh) / 2, (rw - sw) / 2);
    (top..top + sh)
        .flat_map(|y| resized[(y * rw + left) * 3..(y * rw + left + sw) * 3].to_vec())
        .collect()
}

/// tract equals onnxruntime on the same tensor (the stretched frame, Pillow's bytes exactly);
/// a model that fits frames otherwise (`fit = "blurpad"`) also stays close to the fixture's
/// outputs for that preprocessing done with Pillow (another resampler: close, not equal).
fn parity(model_name: &str) {
    let (entry, path) = model(model_name);
    let fitted_spec = entry.classifier.clone().unwrap();
    let spec = ClassifierSpec {
        fit: Fit::Stretch,
        ..fitted_spec.clone()
    };
    let fitted = ImageClassifier::load(&entry.name, &fitted_spec, &path).unwrap();
    let mut fitted_worst = 0f32;
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(format!("{model_name}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        doc["model_sha256"], entry.sha256,
        "fixtures made for this model file"
    );
    let classifier = ImageClassifier::load(&entry.name, &spec, &path).unwrap();
    let mut worst = 0f32;
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for (name, want) in doc["images"].as_object().unwrap() {
        let (w, h, pixels) = load_png(&fixtures().join("images").join(name));
        // clipguard's resize (+ crop) gives Pillow's bytes exactly.
        let crop = reference_pixels(&spec, w, h, &pixels);
        assert_eq!(
            hex::encode(Sha256::digest(&crop)),
            want["pixels_sha256"].as_str().unwrap(),
            "{name}: resized pixels differ from Pillow's"
        );
        let img = Rgb {
            width: w,
            height: h,
            pixels: &pixels,
        };
        let got = classifier
            .run(std::slice::from_ref(&img))
            .unwrap()
            .remove(0);
        let want: Vec<f32> = want["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        for (g, w) in got.iter().zip(&want) {
            worst = worst.max((g - w).abs());
        }
        println!("{name}: tract {got:?} onnxruntime {want:?}");
        if let Some(reference) = doc["images"][name]["fitted_outputs"].as_array() {
            let ours = fitted.run(std::slice::from_ref(&img)).unwrap().remove(0);
            for (g, w) in ours.iter().zip(reference) {
                fitted_worst = fitted_worst.max((g - w.as_f64().unwrap() as f32).abs());
            }
            println!("{name}: fitted {ours:?} with Pillow {reference:?}");
        }
        expected.push(got);
        batch.push((w, h, pixels));
    }
    println!("{model_name}: largest difference from onnxruntime: {worst:e}");
    assert!(worst <= 1e-4, "tract differs from onnxruntime by {worst}");
    println!("{model_name}: fitted, largest difference from Pillow's fitting: {fitted_worst:e}");
    assert!(
        fitted_worst <= 0.05,
        "fitted preprocessing differs from Pillow's by {fitted_worst}"
    );
    // A batch gives what the images give one by one.
    let images: Vec<Rgb<'_>> = batch
        .iter()
        .map(|(w, h, p)| Rgb {
            width: *w,
            height: *h,
            pixels: p,
        })
        .collect();
    let together = classifier.run(&images).unwrap();
    for (a, b) in together.iter().zip(&expected) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5, "batch {a:?} vs single {b:?}");
        }
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: 1,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(v) => Value::DimValue(*v),
                                None => Value::DimParam("N".into()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn initializer(name: &str, dims: &[i64], values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

/// A user's model: mean colour of an NCHW 8×8 image → two logits (red minus blue, blue minus red).
fn user_model() -> Vec<u8> {
    let node =
        |op: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>| pb::NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs,
            ..Default::default()
        };
    let axes = pb::AttributeProto {
        name: "axes".into(),
        ints: vec![2, 3],
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ..Default::default()
    };
    let keepdims = pb::AttributeProto {
        name: "keepdims".into(),
        i: 0,
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        ..Default::default()
    };
    let graph = pb::GraphProto {
        name: "mean-colour".into(),
        node: vec![
            node("ReduceMean", &["pixels"], "mean", vec![axes, keepdims]),
            node("MatMul", &["mean", "w"], "mm", vec![]),
            node("Add", &["mm", "b"], "logits", vec![]),
        ],
        initializer: vec![
            initializer("w", &[3, 2], &[2.0, -2.0, 0.0, 0.0, -2.0, 2.0]),
            initializer("b", &[2], &[0.0, 0.0]),
        ],
        input: vec![value_info("pixels", &[None, Some(3), Some(8), Some(8)])],
        output: vec![value_info("logits", &[None, Some(2)])],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn user_manifest(path: &Path, sha: &str, classifier: &str) -> String {
    format!(
        "[[model]]\nname = \"mean-colour\"\ntask = \"classify-frame\"\nlicence = \"CC0-1.0\"\n\
         file = \"mean-colour.onnx\"\nsha256 = \"{sha}\"\npath = \"{}\"\n\n[model.classifier]\n{classifier}",
        path.display()
    )
}

const USER_SPEC: &str = "input = \"pixels\"\nlayout = \"nchw\"\nsize = [8, 8]\ncolour = \"rgb\"\n\
    scale = 0.00392156862745098\noutput = \"logits\"\nscores = \"logits\"\n\
    categories = { reddish = 0, bluish = 1 }\n";

fn write_user_model(dir: &Path) -> (PathBuf, String) {
    let bytes = user_model();
    let path = dir.join("mean-colour.onnx");
    std::fs::write(&path, &bytes).unwrap();
    (path, hex::encode(Sha256::digest(&bytes)))
}

fn solid(w: usize, h: usize, rgb: [u8; 3]) -> Vec<u8> {
    (0..w * h).flat_map(|_| rgb).collect()
}

#[test]
fn a_users_onnx_model_runs_from_a_manifest_entry_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (path, sha) = write_user_model(dir.path());
    let manifest = Manifest::parse(&user_manifest(&path, &sha, USER_SPEC)).unwrap();
    let entry = manifest.get("mean-colour").unwrap();
    // A local model is used in place, after its checksum.
    let verified = Cache::new(dir.path().join("cache"))
        .verified_path(entry)
        .unwrap();
    assert_eq!(verified, path);
    let classifier =
        ImageClassifier::load(&entry.name, entry.classifier.as_ref().unwrap(), &verified).unwrap();
    let red = solid(40, 30, [255, 0, 0]);
    let blue = solid(13, 21, [0, 0, 255]);
    let grey = solid(8, 8, [128, 128, 128]);
    let scores = classifier
        .scores(&[
            Rgb {
                width: 40,
                height: 30,
                pixels: &red,
            },
            Rgb {
                width: 13,
                height: 21,
                pixels: &blue,
            },
            Rgb {
                width: 8,
                height: 8,
                pixels: &grey,
            },
        ])
        .unwrap();
    // Red: logits [2, -2] → softmax [0.982, 0.018]; blue the reverse; grey even.
    let p = 1.0 / (1.0 + (-4f32).exp());
    let get = |i: usize, c: &str| scores[i].iter().find(|(k, _)| k == c).unwrap().1;
    assert!((get(0, "reddish") - p).abs() < 1e-5, "{scores:?}");
    assert!((get(1, "bluish") - p).abs() < 1e-5, "{scores:?}");
    assert!((get(2, "reddish") - 0.5).abs() < 1e-5, "{scores:?}");

    // A changed file fails its checksum.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.push(0);
    std::fs::write(&path, bytes).unwrap();
    let e = Cache::default()
        .verified_path(entry)
        .unwrap_err()
        .to_string();
    assert!(e.contains("fails its checksum"), "{e}");
}

#[test]
fn wrong_names_layouts_and_indices_fail_at_load_naming_model_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (path, sha) = write_user_model(dir.path());
    let load = |spec: &str| {
        let manifest = Manifest::parse(&user_manifest(&path, &sha, spec)).unwrap();
        let entry = manifest.get("mean-colour").unwrap();
        ImageClassifier::load(&entry.name, entry.classifier.as_ref().unwrap(), &path)
            .unwrap_err()
            .to_string()
    };
    let e = load(&USER_SPEC.replace("input = \"pixels\"", "input = \"image\""));
    assert!(
        e.contains("\"mean-colour\"")
            && e.contains("no input tensor \"image\"")
            && e.contains("pixels"),
        "{e}"
    );
    let e = load(&USER_SPEC.replace("output = \"logits\"", "output = \"probs\""));
    assert!(
        e.contains("no output tensor \"probs\"") && e.contains("logits"),
        "{e}"
    );
    let e = load(&USER_SPEC.replace("bluish = 1", "bluish = 2"));
    assert!(
        e.contains("category \"bluish\" reads index 2") && e.contains("2 values"),
        "{e}"
    );
    let e = load(&USER_SPEC.replace("layout = \"nchw\"", "layout = \"nhwc\""));
    assert!(e.contains("input \"pixels\"") && e.contains("Nhwc"), "{e}");
    // Problems in the spec itself are reported by the manifest, every one at once.
    let bad = user_manifest(
        &path,
        &sha,
        &USER_SPEC.replace("size = [8, 8]", "size = [0, 8]\nresize = [4, 4]"),
    );
    let e = Manifest::parse(&bad).unwrap_err().to_string();
    assert!(
        e.contains("classifier.size") && e.contains("classifier.resize"),
        "{e}"
    );
    let bad = user_manifest(
        &path,
        &sha,
        &USER_SPEC.replace(
            "size = [8, 8]",
            "size = [8, 8]\nresize = [9, 9]\nfit = \"blurpad\"",
        ),
    );
    let e = Manifest::parse(&bad).unwrap_err().to_string();
    assert!(
        e.contains("classifier.fit") && e.contains("takes no resize-and-crop"),
        "{e}"
    );
    let unknown = user_manifest(
        &path,
        &sha,
        &format!("{USER_SPEC}colour_space = \"srgb\"\n"),
    );
    let e = Manifest::parse(&unknown).unwrap_err().to_string();
    assert!(e.contains("unknown field `colour_space`"), "{e}");
}

/// Every default frame classifier leaves benign images below its threshold: the conformance
/// photos (when `../shared` is there) and the fixture frames, the risky-looking ones included.
#[test]
fn benign_and_risky_looking_images_are_not_flagged() {
    let mut files = Vec::new();
    let mut stack = vec![fixtures().join("images")];
    if let Some(dir) = clipguard_testdata::conformance_dir(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/conformance/threatexchange"),
        "pdq/images",
    ) {
        stack.push(dir.join("pdq/images"));
    }
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.iter().any(|f| f.to_string_lossy().contains("risky-")));
    for name in FRAME_CLASSIFIERS {
        let (entry, path) = model(name);
        let spec = entry.classifier.clone().unwrap();
        let classifier = ImageClassifier::load(&entry.name, &spec, &path).unwrap();
        let mut worst: Vec<(String, f32, PathBuf)> = Vec::new();
        for f in &files {
            let (w, h, pixels) = load_png(f);
            let scores = classifier
                .scores(&[Rgb {
                    width: w,
                    height: h,
                    pixels: &pixels,
                }])
                .unwrap();
            for (category, score) in &scores[0] {
                assert!(
                    *score < spec.threshold,
                    "{name}: {}: {category} {score} at or above {}",
                    f.display(),
                    spec.threshold
                );
                match worst.iter_mut().find(|w| &w.0 == category) {
                    Some(w) if *score > w.1 => *w = (category.clone(), *score, f.clone()),
                    Some(_) => {}
                    None => worst.push((category.clone(), *score, f.clone())),
                }
            }
        }
        for (category, score, f) in worst {
            println!(
                "{name}: {} benign images, highest {category} score {score:.3} ({})",
                files.len(),
                f.display()
            );
        }
    }
}

/// The optional ONNX Runtime backend (the library from the onnxruntime wheel, loaded at run
/// time) runs the same manifest entry from the image file on: it equals the fixture's
/// onnxruntime outputs and tract's; a batch equals single images; wrong tensor names fail at
/// load naming the real ones.
#[test]
fn the_onnxruntime_backend_runs_a_manifest_classifier_and_agrees_with_tract() {
    let (entry, path) = model("open-nsfw");
    let (_, lib) = model("onnxruntime");
    clipguard_classify::ort_backend::init(&lib).unwrap();
    let spec = entry.classifier.clone().unwrap();
    let ort = ImageClassifier::load_ort(&entry.name, &spec, &path, 8).unwrap();
    assert_eq!(ort.backend(), "onnxruntime");
    let tract = ImageClassifier::load(&entry.name, &spec, &path).unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("open-nsfw.json")).unwrap())
            .unwrap();
    let mut loaded = Vec::new();
    let mut wants = Vec::new();
    for (name, want) in doc["images"].as_object().unwrap() {
        loaded.push(load_png(&fixtures().join("images").join(name)));
        wants.push(
            want["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect::<Vec<f32>>(),
        );
    }
    let images: Vec<Rgb<'_>> = loaded
        .iter()
        .map(|(w, h, p)| Rgb {
            width: *w,
            height: *h,
            pixels: p,
        })
        .collect();
    let batch = ort.run(&images).unwrap();
    let by_tract = tract.run(&images).unwrap();
    let mut worst = 0f32;
    for (i, img) in images.iter().enumerate() {
        let single = ort.run(std::slice::from_ref(img)).unwrap().remove(0);
        for (k, w) in wants[i].iter().enumerate() {
            for got in [single[k], batch[i][k], by_tract[i][k]] {
                worst = worst.max((got - w).abs());
            }
        }
    }
    println!("onnxruntime backend vs fixture and tract: largest difference {worst:e}");
    assert!(worst <= 1e-4, "backends differ by {worst}");

    let mut wrong = spec.clone();
    wrong.output = "probabilities".into();
    let e = ImageClassifier::load_ort(&entry.name, &wrong, &path, 8)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("open-nsfw") && e.contains("\"probabilities\"") && e.contains("outputs"),
        "{e}"
    );
}

/// A user's detector in the YOLOv8 layout: channel means of an NCHW 32×32 image score three
/// fixed boxes ([1, 4 + 2 classes, 3 boxes]); class 0 follows red, class 1 green.
fn user_detector() -> Vec<u8> {
    let node =
        |op: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>| pb::NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs,
            ..Default::default()
        };
    let ints = |name: &str, v: Vec<i64>| pb::AttributeProto {
        name: name.into(),
        ints: v,
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ..Default::default()
    };
    let int = |name: &str, v: i64| pb::AttributeProto {
        name: name.into(),
        i: v,
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        ..Default::default()
    };
    let shape = pb::TensorProto {
        name: "shape".into(),
        dims: vec![3],
        data_type: 7,
        int64_data: vec![1, 2, 3],
        ..Default::default()
    };
    let graph = pb::GraphProto {
        name: "boxes".into(),
        node: vec![
            node(
                "ReduceMean",
                &["images"],
                "mean",
                vec![ints("axes", vec![2, 3]), int("keepdims", 0)],
            ),
            node("MatMul", &["mean", "w"], "flat", vec![]),
            node("Reshape", &["flat", "shape"], "scores", vec![]),
            node(
                "Concat",
                &["boxes", "scores"],
                "output0",
                vec![int("axis", 1)],
            ),
        ],
        initializer: vec![
            // Rows cx, cy, w, h; columns boxes 0, 1 (overlapping 0), 2.
            initializer(
                "boxes",
                &[1, 4, 3],
                &[
                    16.0, 17.0, 5.0, 16.0, 16.0, 5.0, 10.0, 10.0, 6.0, 10.0, 10.0, 6.0,
                ],
            ),
            // mean (r, g, b) → class 0 per box, then class 1 per box.
            initializer(
                "w",
                &[3, 6],
                &[
                    1.0, 0.9, 0.3, 0.0, 0.0, 0.0, //
                    0.0, 0.0, 0.0, 0.2, 0.2, 0.8, //
                    0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                ],
            ),
            shape,
        ],
        input: vec![value_info(
            "images",
            &[Some(1), Some(3), Some(32), Some(32)],
        )],
        output: vec![value_info("output0", &[Some(1), Some(6), Some(3)])],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn a_users_detector_maps_classes_to_categories_with_threshold_and_nms() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = user_detector();
    let path = dir.path().join("boxes.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let sha = hex::encode(Sha256::digest(&bytes));
    let text = |categories: &str| {
        format!(
            "[[model]]\nname = \"boxes\"\ntask = \"classify-frame\"\nlicence = \"CC0-1.0\"\n\
             file = \"boxes.onnx\"\nsha256 = \"{sha}\"\npath = \"{}\"\n\n[model.detector]\n\
             input = \"images\"\nlayout = \"nchw\"\nsize = [32, 32]\ncolour = \"rgb\"\n\
             scale = 0.00392156862745098\noutput = \"output0\"\nformat = \"yolov8\"\n\
             threshold = 0.5\niou = 0.45\ncategories = {categories}\n",
            path.display()
        )
    };
    let manifest = Manifest::parse(&text("{ sexual = [0], violence_gore = [1] }")).unwrap();
    let entry = manifest.get("boxes").unwrap();
    let spec = entry.detector.as_ref().unwrap();
    let detector = clipguard_classify::detect::ImageDetector::load("boxes", spec, &path).unwrap();
    // A 64×64 frame: boxes scale by 2 from the 32×32 input.
    let red = solid(64, 64, [255, 0, 0]);
    let found = detector
        .detect(&Rgb {
            width: 64,
            height: 64,
            pixels: &red,
        })
        .unwrap();
    // Boxes 0 (1.0) and 1 (0.9) overlap: one kept; box 2 (0.3) is under the threshold.
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].category, "sexual");
    assert!((found[0].score - 1.0).abs() < 1e-5);
    assert_eq!(
        (found[0].x, found[0].y, found[0].w, found[0].h),
        (22.0, 22.0, 20.0, 20.0)
    );
    let green = solid(32, 32, [0, 255, 0]);
    let found = detector
        .detect(&Rgb {
            width: 32,
            height: 32,
            pixels: &green,
        })
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].category, "violence_gore");
    assert!((found[0].score - 0.8).abs() < 1e-5);

    // A class the model does not have fails at load, naming model and category.
    let manifest = Manifest::parse(&text("{ sexual = [0, 7] }")).unwrap();
    let e = clipguard_classify::detect::ImageDetector::load(
        "boxes",
        manifest.get("boxes").unwrap().detector.as_ref().unwrap(),
        &path,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("boxes") && e.contains("class 7") && e.contains("2 classes"),
        "{e}"
    );
    // So does a wrong output name.
    let mut wrong = spec.clone();
    wrong.output = "detections".into();
    let e = clipguard_classify::detect::ImageDetector::load("boxes", &wrong, &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"detections\"") && e.contains("output0"), "{e}");
}
