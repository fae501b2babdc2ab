//! `clipguard provenance lookup VIDEO`: "was this video made (and allowed) here?" from the
//! terminal, against the "made by us" index.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use clipguard_media::MediaConfig;

use crate::ReleaseConfig;
use crate::index::Index;

#[derive(Debug, Args)]
pub struct ProvenanceArgs {
    /// The index folder (default: release.index_dir).
    #[arg(long, global = true)]
    pub index_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ProvenanceCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProvenanceCommand {
    /// Whether a video (re-encoded, rescaled, slightly cropped, watermarked) was generated and
    /// allowed here: the clips it matches, with both match percentages. Exit status 0 when it
    /// matches one, 1 when it matches none.
    Lookup {
        #[arg(long)]
        json: bool,
        video: PathBuf,
    },
}

/// Runs one provenance command: the text printed and whether it found a match, or the error.
pub fn run(
    cfg: &ReleaseConfig,
    media: &MediaConfig,
    args: ProvenanceArgs,
) -> anyhow::Result<(String, bool)> {
    let dir = match (&args.index_dir, cfg.index_dir.as_str()) {
        (Some(d), _) => d.clone(),
        (None, "") => {
            anyhow::bail!("no \"made by us\" index: set release.index_dir or pass --index-dir")
        }
        (None, d) => PathBuf::from(d),
    };
    if !dir.is_dir() {
        anyhow::bail!("the index folder {} does not exist", dir.display());
    }
    let index = Index::open(&dir, cfg.index_max_clips, cfg.index_retention_days)?;
    match args.command {
        ProvenanceCommand::Lookup { json, video } => {
            let frames = clipguard_media::decode::vpdq_of_file(&video, media, media.pdq_rate_hz)
                .map_err(|e| anyhow::anyhow!("{}: {e}", video.display()))?;
            let answer = crate::answer(&index, &frames)?;
            let found = !answer.matches.is_empty();
            let text = if json {
                serde_json::json!({
                    "video": video.display().to_string(),
                    "made_here": found,
                    "matches": answer.matches.iter().map(|m| serde_json::json!({
                        "clip_id": m.clip_id,
                        "query_match_pct": (m.query_match_pct * 100.0).round() / 100.0,
                        "target_match_pct": (m.target_match_pct * 100.0).round() / 100.0,
                        "allowed_at_ms": m.allowed_at_ms,
                    })).collect::<Vec<_>>(),
                    "indexed_clips": answer.indexed_clips,
                    "index_version": answer.index_version,
                    "frames_hashed": answer.frames_hashed,
                })
                .to_string()
            } else if found {
                let mut lines = vec![format!(
                    "{}: made here — matches {} clip(s) of {} indexed (index v{}):",
                    video.display(),
                    answer.matches.len(),
                    answer.indexed_clips,
                    answer.index_version
                )];
                for m in &answer.matches {
                    lines.push(format!(
                        "  {}  {:.1} % of the video's frames, {:.1} % of the clip's",
                        m.clip_id, m.query_match_pct, m.target_match_pct
                    ));
                }
                lines.join("\n")
            } else {
                format!(
                    "{}: not made here, as far as the index knows ({} clip(s) indexed, v{}; {} frame(s) hashed)",
                    video.display(),
                    answer.indexed_clips,
                    answer.index_version,
                    answer.frames_hashed
                )
            };
            Ok((text, found))
        }
    }
}
