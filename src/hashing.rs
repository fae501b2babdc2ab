//! `clipguard hash …` and `clipguard match …`: perceptual hashes of files, and vPDQ comparison.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clipguard_hashmatch::pdq;
use clipguard_hashmatch::vpdq::{self, FrameHash, MatchParams};
use clipguard_media::MediaConfig;

use crate::edges;

/// PDQ of images: `pdq_hex,quality,path` per image (plus the 7 other dihedral variants).
pub fn hash_pdq(dihedral: bool, images: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for path in edges::expand_inputs(images)? {
        let line = if dihedral {
            pdq::hash_file_dihedral(&path).map(|(all, quality)| {
                let hexes: Vec<String> = all.iter().map(|h| h.to_hex()).collect();
                format!(
                    "{},{quality},{},{}",
                    hexes[0],
                    path.display(),
                    hexes[1..].join(",")
                )
            })
        } else {
            pdq::hash_file(&path).map(|h| format!("{},{},{}", h.hash, h.quality, path.display()))
        };
        match line {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Decodes a video with the media stage's decoder and limits and returns its vPDQ at `rate_hz`
/// (0 = every frame), unpruned, as the reference hasher would.
pub fn vpdq_of_video(
    media: &MediaConfig,
    path: &Path,
    rate_hz: f64,
) -> anyhow::Result<Vec<FrameHash>> {
    clipguard_media::decode::init()?;
    let settings = MediaConfig {
        pdq: true,
        pdq_rate_hz: rate_hz,
        sample_fps: 0.0,
        scene_cut_threshold: 0.0,
        max_sampled_frames: 1,
        extract_audio: false,
        ..media.clone()
    };
    let decoded = clipguard_media::decode::decode_file(path, &settings)
        .with_context(|| format!("{}", path.display()))?;
    Ok(decoded.frame_hashes)
}

/// `clipguard hash vpdq`: the reference line format on stdout.
pub fn hash_vpdq(media: &MediaConfig, rate_hz: f64, video: &Path) -> anyhow::Result<ExitCode> {
    let frames = vpdq_of_video(media, video, rate_hz)?;
    print!("{}", vpdq::format(&frames));
    Ok(ExitCode::SUCCESS)
}

/// A vPDQ from a hash file (reference text format) or, for anything else, a video.
pub fn load_vpdq(media: &MediaConfig, path: &Path, rate_hz: f64) -> anyhow::Result<Vec<FrameHash>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let looks_like_text = path.extension().is_some_and(|e| e == "txt" || e == "vpdq")
        || (!bytes.is_empty() && bytes.iter().take(512).all(|b| b.is_ascii()));
    if looks_like_text {
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
        return vpdq::parse(&text).map_err(|errors| {
            let lines: Vec<String> = errors
                .iter()
                .take(10)
                .map(|e| format!("  {}:{e}", path.display()))
                .collect();
            anyhow::anyhow!(
                "{} malformed line(s) in {}:\n{}",
                errors.len(),
                path.display(),
                lines.join("\n")
            )
        });
    }
    vpdq_of_video(media, path, rate_hz)
}

/// `clipguard match vpdq`.
pub fn match_vpdq(
    media: &MediaConfig,
    params: &MatchParams,
    rate_hz: f64,
    json: bool,
    query: &Path,
    target: &Path,
) -> anyhow::Result<ExitCode> {
    let q = load_vpdq(media, query, rate_hz)?;
    let t = load_vpdq(media, target, rate_hz)?;
    let r = vpdq::compare(&q, &t, params);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "query": query.display().to_string(),
                "target": target.display().to_string(),
                "query_match_pct": round2(r.query_match_pct),
                "target_match_pct": round2(r.target_match_pct),
                "is_match": r.is_match,
                "distance": params.distance,
                "quality": params.quality,
                "query_pct_threshold": params.query_pct,
                "target_pct_threshold": params.target_pct,
            })
        );
    } else {
        println!("{:.2} percentage query video match", r.query_match_pct);
        println!("{:.2} percentage target video match", r.target_match_pct);
        println!("{}", if r.is_match { "match" } else { "no match" });
    }
    Ok(ExitCode::SUCCESS)
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
