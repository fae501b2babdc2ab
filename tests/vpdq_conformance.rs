//! vPDQ conformance with Meta's reference implementation, on the reference's own test videos and
//! hash files (`../shared/conformance/threatexchange/vpdq`, or `CLIPGUARD_CONFORMANCE`). Skips
//! with a message when the data is absent; the reference data is never copied into the project.
//!
//! 1. Hashing: every frame of each video is decoded by the media stage's GStreamer decoder and
//!    hashed by the PDQ library, then paired with the reference line for the same frame. Of the
//!    frames whose reference quality is at least 80, 95 % must be within distance 10; of those
//!    at least 50, 95 % within 16. (Decoders' YUV→RGB conversions differ slightly; flat,
//!    quality-0 frames are unstable everywhere and filtered by vPDQ anyway.)
//! 2. Matching: all pairs of reference hash files are compared at D = 31, F = 50, 80 % / 0 %,
//!    by the library and by a literal transcription of the README's pseudocode written here
//!    with string hashes and sets; the decisions and percentages must agree. The decisions on
//!    our own hashes of the videos must agree with those on the reference hashes.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use clipguard_media::MediaConfig;
use clipguard_pdq::vpdq::{self, FrameHash, MatchParams};

fn conformance_dir() -> Option<PathBuf> {
    let dir = clipguard_testdata::conformance_dir(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/threatexchange"),
        "vpdq/hashes",
    )?;
    Some(dir.join("vpdq"))
}

fn reference_hashes(dir: &Path) -> BTreeMap<String, Vec<FrameHash>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("hashes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "txt") {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            out.insert(name, vpdq::parse(&text).unwrap());
        }
    }
    out
}

fn hash_video(path: &Path) -> Vec<FrameHash> {
    clipguard_media::decode::vpdq_of_file(path, &MediaConfig::default(), 0.0).unwrap()
}

/// The README's pseudocode, transcribed literally: sets of hashes (parsed here from their hex
/// text into two 128-bit halves, independently of the library), nested loops.
fn readme_match(q: &[FrameHash], c: &[FrameHash], d: u32, f: u32) -> (f64, f64) {
    fn hex_distance(a: &(u128, u128), b: &(u128, u128)) -> u32 {
        (a.0 ^ b.0).count_ones() + (a.1 ^ b.1).count_ones()
    }
    let unique = |frames: &[FrameHash]| -> Vec<(u128, u128)> {
        let mut seen = HashSet::new();
        frames
            .iter()
            .filter(|fr| fr.quality >= f)
            .map(|fr| {
                let hex = fr.hash.to_hex();
                (
                    u128::from_str_radix(&hex[..32], 16).unwrap(),
                    u128::from_str_radix(&hex[32..], 16).unwrap(),
                )
            })
            .filter(|h| seen.insert(*h))
            .collect()
    };
    let (qf, cf) = (unique(q), unique(c));
    if qf.is_empty() || cf.is_empty() {
        return (0.0, 0.0);
    }
    let mut q_matched = 0;
    for qh in &qf {
        for ch in &cf {
            if hex_distance(qh, ch) <= d {
                q_matched += 1;
                break;
            }
        }
    }
    let mut c_matched = 0;
    for ch in &cf {
        for qh in &qf {
            if hex_distance(qh, ch) <= d {
                c_matched += 1;
                break;
            }
        }
    }
    (
        q_matched as f64 * 100.0 / qf.len() as f64,
        c_matched as f64 * 100.0 / cf.len() as f64,
    )
}

#[test]
fn vpdq_frame_hashes_agree_with_the_reference() {
    let Some(dir) = conformance_dir() else { return };
    let reference = reference_hashes(&dir);
    assert!(!reference.is_empty());
    let (mut n80, mut ok80, mut n50, mut ok50) = (0usize, 0usize, 0usize, 0usize);
    let mut all_distances = Vec::new();
    let mut ours = BTreeMap::new();
    for (name, want) in &reference {
        let video = dir.join("videos").join(format!("{name}.mp4"));
        let got = hash_video(&video);
        // Pair by frame number: our timestamps are presentation times (which may start after
        // 0 in MP4s with an edit list); the reference's are frame / fps.
        let by_frame: BTreeMap<u64, &FrameHash> = got.iter().map(|f| (f.frame, f)).collect();
        let mut distances = Vec::new();
        for w in want {
            let Some(g) = by_frame.get(&w.frame) else {
                continue;
            };
            let d = g.hash.distance(&w.hash);
            distances.push(d);
            if w.quality >= 80 {
                n80 += 1;
                ok80 += usize::from(d <= 10);
            }
            if w.quality >= 50 {
                n50 += 1;
                ok50 += usize::from(d <= 16);
            }
        }
        distances.sort_unstable();
        let median = distances.get(distances.len() / 2).copied().unwrap_or(0);
        let p95 = distances
            .get(distances.len() * 95 / 100)
            .copied()
            .unwrap_or(0);
        println!(
            "{name:32} frames ours {:4} ref {:4} paired {:4}  distance median {median:2} p95 {p95:2} max {:3}",
            got.len(),
            want.len(),
            distances.len(),
            distances.last().copied().unwrap_or(0)
        );
        assert!(
            distances.len() * 100 >= want.len() * 95,
            "{name}: only {} of {} reference frames decoded",
            distances.len(),
            want.len()
        );
        all_distances.extend(distances);
        ours.insert(name.clone(), got);
    }
    let pct80 = ok80 as f64 * 100.0 / n80.max(1) as f64;
    let pct50 = ok50 as f64 * 100.0 / n50.max(1) as f64;
    println!(
        "quality >= 80: {ok80}/{n80} = {pct80:.1} % within 10;  quality >= 50: {ok50}/{n50} = {pct50:.1} % within 16"
    );
    assert!(pct80 >= 95.0, "only {pct80:.1} % of q>=80 frames within 10");
    assert!(pct50 >= 95.0, "only {pct50:.1} % of q>=50 frames within 16");

    // Our hashes lead to the same match decisions as the reference's hashes.
    let params = MatchParams::default();
    for (a, qa) in &reference {
        for (b, tb) in &reference {
            let want = vpdq::compare(qa, tb, &params);
            let got = vpdq::compare(&ours[a], &ours[b], &params);
            assert_eq!(
                got.is_match, want.is_match,
                "{a} vs {b}: ours {got:?}, reference hashes {want:?}"
            );
        }
    }
}

#[test]
fn vpdq_matching_reproduces_the_reference_decisions() {
    let Some(dir) = conformance_dir() else { return };
    let reference = reference_hashes(&dir);
    let params = MatchParams::default();
    let mut matches = 0;
    for (a, q) in &reference {
        for (b, t) in &reference {
            let got = vpdq::compare(q, t, &params);
            let (q_pct, t_pct) = readme_match(q, t, params.distance, params.quality);
            let want = t_pct >= params.target_pct && q_pct >= params.query_pct;
            println!(
                "{a:30} vs {b:30} query {:6.2} % target {:6.2} %  {}",
                got.query_match_pct,
                got.target_match_pct,
                if got.is_match { "MATCH" } else { "-" }
            );
            assert!((got.query_match_pct - q_pct).abs() < 1e-9, "{a} vs {b}");
            assert!((got.target_match_pct - t_pct).abs() < 1e-9, "{a} vs {b}");
            assert_eq!(got.is_match, want, "{a} vs {b}");
            matches += usize::from(got.is_match);
            if a == b {
                assert!(got.is_match, "{a} must match itself");
            }
            // Different scenes never match.
            let family = |n: &str| n.split('-').next().unwrap().to_string();
            if family(a) != family(b) {
                assert!(!got.is_match, "{a} vs {b} are different videos");
            }
        }
    }
    println!(
        "{matches} matching ordered pairs of {}",
        reference.len().pow(2)
    );
}

/// Sparse decoding (keyframes, and the frames a sampling time without a keyframe within the
/// tolerance needs; hashed reduced, `media.pdq_min_side = 256`), matched with `compare_sparse`, against the decision
/// the reference makes on its own every-frame hashes of both videos (the truth here). Two kinds
/// of bank: the reference's hash files (every frame) and our full decode at 1 Hz (what
/// `clipguard hash vpdq` writes into a bank). The stage's full decode at 1 Hz with `compare` is
/// scored the same way. Sparse decoding must never match different videos, must be right at
/// least as often as the full decode over both kinds of bank, and on the 1 Hz banks must decide
/// as the full decode does on at least 95 % of the pairs; every number is printed. (A video whose
/// picture changes completely within the tolerance — `doorknob`, every frame ~128 bits from the
/// one a second later — matches a 1 Hz bank only when the very frames the bank holds are
/// decoded: a smaller `media.sparse_tolerance_s` does that, at a cost in speed.)
#[test]
fn sparse_decoding_keeps_the_match_decisions() {
    let Some(dir) = conformance_dir() else { return };
    clipguard_media::decode::init().unwrap();
    let reference = reference_hashes(&dir);
    let sparse = MediaConfig {
        decode: clipguard_media::DecodeMode::Sparse,
        pdq_min_side: 256,
        sample_fps: 1.0,
        pdq_rate_hz: 1.0,
        extract_audio: false,
        ..MediaConfig::default()
    };
    let video = |name: &str| dir.join("videos").join(format!("{name}.mp4"));
    let mut queries = BTreeMap::new();
    let mut full = BTreeMap::new();
    let (mut decoded, mut total) = (0u64, 0u64);
    for name in reference.keys() {
        let d = clipguard_media::decode::decode_file(&video(name), &sparse).unwrap();
        decoded += d.frames_decoded;
        total += reference[name].len() as u64;
        assert!(d.frame_hash_max_gap_s > 0.0);
        queries.insert(name.clone(), (d.frame_hashes, d.frame_hash_max_gap_s));
        full.insert(
            name.clone(),
            clipguard_media::decode::vpdq_of_file(&video(name), &MediaConfig::default(), 1.0)
                .unwrap(),
        );
    }
    println!("sparse decoding decoded {decoded} of {total} frames");
    assert!(
        decoded * 3 < total,
        "sparse decoding decoded {decoded} of {total} frames"
    );
    let params = MatchParams::default();
    let family = |n: &str| n.split('-').next().unwrap().to_string();
    let (mut sparse_total, mut full_total) = (0, 0);
    for bank in ["reference", "1 Hz"] {
        let (mut pairs, mut sparse_right, mut full_right, mut same) = (0, 0, 0, 0);
        for (a, (q, gap)) in &queries {
            for b in reference.keys() {
                let target = if bank == "1 Hz" {
                    &full[b]
                } else {
                    &reference[b]
                };
                let truth = vpdq::compare(&reference[a], &reference[b], &params).is_match;
                let dense = vpdq::compare(&full[a], target, &params);
                let got = vpdq::compare_sparse(q, target, &params, *gap);
                if truth || got.is_match || dense.is_match {
                    println!(
                        "{a:28} vs {bank:9} {b:28} truth {:5}  sparse ({:2} frames) query {:6.2} % target {:6.2} % {:5}  full 1 Hz ({:2} frames) target {:6.2} % {}",
                        if truth { "MATCH" } else { "-" },
                        q.len(),
                        got.query_match_pct,
                        got.target_match_pct,
                        if got.is_match { "MATCH" } else { "-" },
                        full[a].len(),
                        dense.target_match_pct,
                        if dense.is_match { "MATCH" } else { "-" },
                    );
                }
                if family(a) != family(b) {
                    assert!(!got.is_match, "sparse {a} matched {bank} {b}: {got:?}");
                }
                pairs += 1;
                sparse_right += usize::from(got.is_match == truth);
                full_right += usize::from(dense.is_match == truth);
                same += usize::from(got.is_match == dense.is_match);
            }
        }
        println!(
            "{bank} banks: {pairs} pairs; decided as the reference: sparse {sparse_right}, full 1 Hz {full_right}; sparse decides as full 1 Hz on {same}"
        );
        sparse_total += sparse_right;
        full_total += full_right;
        if bank == "1 Hz" {
            assert!(
                same * 100 >= pairs * 95,
                "1 Hz banks: sparse = full on {same}/{pairs}"
            );
        }
    }
    assert!(
        sparse_total >= full_total,
        "sparse decided {sparse_total} pairs as the reference, full 1 Hz {full_total}"
    );
}
