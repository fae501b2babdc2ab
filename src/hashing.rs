//! `clipguard hash …` and `clipguard match …`: perceptual hashes of files, and vPDQ comparison.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clipguard_hashmatch::bank::BankStore;
use clipguard_hashmatch::import::{self, ImportRequest};
use clipguard_media::MediaConfig;
use clipguard_pdq::vpdq::{self, FrameHash, MatchParams};
use clipguard_pipeline::edges;
use clipguard_topology::Config;

/// PDQ of images: `pdq_hex,quality,path` per image (plus the 7 other dihedral variants).
pub fn hash_pdq(dihedral: bool, images: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for path in edges::expand_inputs(images)? {
        let line = if dihedral {
            clipguard_pdq::hash_file_dihedral(&path).map(|(all, quality)| {
                let hexes: Vec<String> = all.iter().map(|h| h.to_hex()).collect();
                format!(
                    "{},{quality},{},{}",
                    hexes[0],
                    path.display(),
                    hexes[1..].join(",")
                )
            })
        } else {
            clipguard_pdq::hash_file(&path)
                .map(|h| format!("{},{},{}", h.hash, h.quality, path.display()))
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
    clipguard_media::decode::vpdq_of_file(path, media, rate_hz)
        .with_context(|| format!("{}", path.display()))
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
/// `match vpdq`: both match percentages and the decision.
#[derive(Debug, clap::Args)]
pub struct VpdqMatchArgs {
    /// One JSON object.
    #[arg(long)]
    json: bool,
    /// Frames this close (Hamming distance) match (D).
    #[arg(long, default_value_t = 31)]
    distance: u32,
    /// Frames below this quality are ignored (F).
    #[arg(long, default_value_t = 50)]
    quality: u32,
    /// Percent of the query's frames that must match (P_q).
    #[arg(long, default_value_t = 0.0)]
    query_pct: f64,
    /// Percent of the target's frames that must match (P_t).
    #[arg(long, default_value_t = 80.0)]
    target_pct: f64,
    /// Hashing rate for videos given instead of hash files (default: media.pdq_rate_hz).
    #[arg(long)]
    rate: Option<f64>,
    query: PathBuf,
    target: PathBuf,
}

pub fn match_vpdq(media: &MediaConfig, a: VpdqMatchArgs) -> anyhow::Result<ExitCode> {
    let params = MatchParams {
        distance: a.distance,
        quality: a.quality,
        query_pct: a.query_pct,
        target_pct: a.target_pct,
    };
    let (json, rate_hz) = (a.json, a.rate.unwrap_or(media.pdq_rate_hz));
    let q = load_vpdq(media, &a.query, rate_hz)?;
    let t = load_vpdq(media, &a.target, rate_hz)?;
    let r = vpdq::compare(&q, &t, &params);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "query": a.query.display().to_string(),
                "target": a.target.display().to_string(),
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

/// Options of `clipguard bank import`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// Bank name (a-z, 0-9, _ and -).
    #[arg(long)]
    pub bank: String,
    /// csam, ncii, terrorism, internal_generated or a custom name (required for a new bank).
    #[arg(long)]
    pub category: Option<String>,
    /// block or review (required for a new bank).
    #[arg(long)]
    pub action: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// auto, list (CSV/TSV hash list), vpdq (per-frame file) or video.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Untyped 64-hex-digit hashes are SHA-256 file hashes (default: PDQ).
    #[arg(long)]
    pub sha256: bool,
    /// External id of a vPDQ file or video (default: its file name).
    #[arg(long)]
    pub id: Option<String>,
    /// Replace the bank's contents instead of adding to them.
    #[arg(long)]
    pub replace: bool,
    /// Refuse the whole import when any line is malformed.
    #[arg(long)]
    pub strict: bool,
}

/// `clipguard bank import`.
pub fn bank_import(cfg: &Config, args: ImportArgs, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let req = ImportRequest {
        action: args.action.as_deref().map(str::parse).transpose()?,
        format: args.format.parse()?,
        bank: args.bank,
        category: args.category,
        description: args.description,
        sha256: args.sha256,
        id: args.id,
        replace: args.replace,
        strict: args.strict,
    };
    let store = BankStore::new(&cfg.hashmatch.banks_dir);
    let hash_video = |path: &Path| {
        vpdq_of_video(&cfg.media, path, cfg.media.pdq_rate_hz).map_err(|e| format!("{e:#}"))
    };
    let done = import::import_files(&store, &req, files, &hash_video)?;
    for s in &done.skipped {
        eprintln!("skipped {s}");
    }
    let (new, c, meta) = (&done.read, &done.now, &done.meta);
    println!(
        "bank {} v{} ({}, {}): read {} PDQ, {} videos, {} MD5, {} SHA-256; now {} PDQ, {} videos, {} MD5, {} SHA-256{}",
        meta.name,
        done.version,
        meta.category,
        meta.action.word(),
        new.pdq,
        new.vpdq_videos,
        new.md5,
        new.sha256,
        c.pdq,
        c.vpdq_videos,
        c.md5,
        c.sha256,
        if done.skipped.is_empty() {
            String::new()
        } else {
            format!("; {} line(s) skipped", done.skipped.len())
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `clipguard bank list`.
pub fn bank_list(cfg: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let store = BankStore::new(&cfg.hashmatch.banks_dir);
    let names = store.names()?;
    if !json && names.is_empty() {
        println!("no banks in {}", store.dir().display());
    } else if !json {
        println!(
            "{:<24} {:<20} {:<7} {:>5} {:>10} {:>7} {:>8} {:>8}",
            "BANK", "CATEGORY", "ACTION", "VER", "PDQ", "VIDEOS", "MD5", "SHA256"
        );
    }
    for name in names {
        let m = store.meta(&name)?;
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "bank": m.name, "category": m.category, "action": m.action.word(),
                    "version": m.version, "updated_ms": m.updated_ms,
                    "description": m.description, "pdq": m.counts.pdq,
                    "vpdq_videos": m.counts.vpdq_videos, "md5": m.counts.md5,
                    "sha256": m.counts.sha256, "pdq_distance": m.pdq_distance,
                })
            );
        } else {
            println!(
                "{:<24} {:<20} {:<7} {:>5} {:>10} {:>7} {:>8} {:>8}",
                m.name,
                m.category,
                m.action.word(),
                m.version,
                m.counts.pdq,
                m.counts.vpdq_videos,
                m.counts.md5,
                m.counts.sha256
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `clipguard bank remove`.
pub fn bank_remove(cfg: &Config, name: &str) -> anyhow::Result<ExitCode> {
    let store = BankStore::new(&cfg.hashmatch.banks_dir);
    store.remove(name)?;
    println!("bank {name} removed");
    Ok(ExitCode::SUCCESS)
}
