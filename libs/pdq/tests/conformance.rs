//! PDQ conformance with Meta's reference implementation, on the reference's own test images
//! (`../shared/conformance/threatexchange/pdq`, or `CLIPGUARD_CONFORMANCE`). Skips with a message
//! when the data is absent; the reference data is never copied into the project.
//!
//! The reference ports differ from each other by up to 12 bits on these files because their
//! image decoders and resizers differ, so conformance is a small Hamming distance: every image of
//! quality >= 80 within 16 bits, median <= 8; the dihedral hashes computed from one photo match
//! the hashes of the rotated and flipped files within 16.

// Tests report failure by panicking.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use clipguard_pdq::{self as pdq, Dihedral, PdqHash};

fn conformance_dir() -> Option<PathBuf> {
    clipguard_testdata::conformance_dir(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/conformance/threatexchange"),
        "pdq/expected-reference.csv",
    )
}

fn expected(dir: &std::path::Path) -> Vec<(String, PdqHash, u32)> {
    let text = std::fs::read_to_string(dir.join("pdq/expected-reference.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split(',');
            let path = parts.next().unwrap().to_string();
            let hash = parts.next().unwrap().parse().unwrap();
            let quality = parts.next().unwrap().trim().parse().unwrap();
            (path, hash, quality)
        })
        .collect()
}

#[test]
fn pdq_matches_the_reference_hashes() {
    let Some(dir) = conformance_dir() else { return };
    let mut distances = Vec::new();
    let mut report = String::new();
    for (path, want, want_quality) in expected(&dir) {
        let got = pdq::hash_file(&dir.join("pdq").join(&path)).unwrap();
        let d = got.hash.distance(&want);
        report.push_str(&format!(
            "{d:3} bits  quality {:3} (ref {want_quality:3})  {path}\n",
            got.quality
        ));
        if want_quality >= 80 {
            distances.push(d);
            assert!(d <= 16, "{path}: {d} bits from the reference\n{report}");
        }
    }
    distances.sort_unstable();
    let median = distances[distances.len() / 2];
    println!(
        "{report}distances (quality >= 80): {distances:?}, median {median}, max {}",
        distances.last().unwrap()
    );
    assert!(median <= 8, "median distance {median} > 8\n{report}");
}

#[test]
fn dihedral_hashes_match_the_transformed_files() {
    let Some(dir) = conformance_dir() else { return };
    let dih = dir.join("pdq/images/reg-test-input/dih");
    let (variants, _) = pdq::hash_file_dihedral(&dih.join("bridge-1-original.jpg")).unwrap();
    let files = [
        (Dihedral::Original, "bridge-1-original.jpg"),
        (Dihedral::Rotate90, "bridge-2-rotate-90.jpg"),
        (Dihedral::Rotate180, "bridge-3-rotate-180.jpg"),
        (Dihedral::Rotate270, "bridge-4-rotate-270.jpg"),
        (Dihedral::FlipX, "bridge-5-flipx.jpg"),
        (Dihedral::FlipY, "bridge-6-flipy.jpg"),
        (Dihedral::FlipPlus1, "bridge-7-flip-plus-1.jpg"),
        (Dihedral::FlipMinus1, "bridge-8-flip-minus-1.jpg"),
    ];
    let mut report = String::new();
    for (i, (variant, file)) in files.iter().enumerate() {
        let direct = pdq::hash_file(&dih.join(file)).unwrap().hash;
        let all: Vec<u32> = variants.iter().map(|v| v.distance(&direct)).collect();
        report.push_str(&format!(
            "{file}: {variant:?} at {} bits (all variants: {all:?})\n",
            all[i]
        ));
    }
    println!("{report}");
    for (i, (variant, file)) in files.iter().enumerate() {
        let direct = pdq::hash_file(&dih.join(file)).unwrap().hash;
        let d = variants[i].distance(&direct);
        assert!(
            d <= 16,
            "{variant:?} of the original is {d} bits from {file}\n{report}"
        );
    }
}

/// The WebAssembly port's hashes cover the misc images too (no qualities given: compare where
/// our quality is >= 80).
#[test]
fn pdq_is_close_to_the_wasm_port() {
    let Some(dir) = conformance_dir() else { return };
    let text = std::fs::read_to_string(dir.join("pdq/expected-wasm.csv")).unwrap();
    let mut report = String::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let (path, hex) = line.split_once(',').unwrap();
        let want: PdqHash = hex.parse().unwrap();
        let got = pdq::hash_file(&dir.join("pdq").join(path)).unwrap();
        let d = got.hash.distance(&want);
        report.push_str(&format!("{d:3} bits  quality {:3}  {path}\n", got.quality));
        if got.quality >= 80 {
            assert!(d <= 16, "{path}: {d} bits from the wasm port\n{report}");
        }
    }
    println!("{report}");
}
