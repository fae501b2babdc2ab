//! `clipguard models ...`: the model manifest and cache.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clipguard_models::{Cache, Manifest, Status};

/// Fetches the named models; without names, those the configured stages load (`needed`);
/// with `all`, every model of the manifest. Idempotent.
pub fn fetch(names: &[String], needed: &[String], all: bool) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::load_default()?;
    let cache = Cache::default();
    let names = if names.is_empty() { needed } else { names };
    let entries = if all {
        manifest.models.iter().collect::<Vec<_>>()
    } else {
        names
            .iter()
            .map(|n| manifest.get(n))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut failed = 0;
    for entry in entries {
        let started = std::time::Instant::now();
        let mut log = |line: &str| eprintln!("{line}");
        match cache.fetch(entry, &mut log) {
            Ok(outcome) => {
                println!(
                    "{}: {} ({:.1} s) {}",
                    entry.name,
                    outcome.describe(),
                    started.elapsed().as_secs_f64(),
                    cache.path(entry).display()
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e}", entry.name);
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Lists the manifest's models, whether the configured stages load each (`needed`: the one
/// list of what a deployment ships), and what the cache holds (checksums verified).
pub fn list(json: bool, needed: &[String]) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::load_default()?;
    let cache = Cache::default();
    let mut rows = Vec::new();
    for entry in &manifest.models {
        let status = cache.status(entry)?;
        let (state, bytes) = match &status {
            Status::Missing => ("missing".to_string(), None),
            Status::Verified { bytes } => ("verified".to_string(), Some(*bytes)),
            Status::Corrupt { actual } => (format!("corrupt (sha256 {actual})"), None),
        };
        rows.push((entry, state, bytes));
    }
    if json {
        for (entry, state, bytes) in rows {
            let source: Vec<String> = entry
                .package
                .iter()
                .map(|p| format!("pypi:{}=={}", p.name, p.version))
                .collect();
            let v = serde_json::json!({
                "name": entry.name,
                "task": entry.task,
                "licence": entry.licence,
                "status": state,
                "configured": needed.contains(&entry.name),
                "bytes": bytes,
                "path": cache.path(entry),
                "sha256": entry.sha256,
                "source": source,
            });
            println!("{v}");
        }
    } else {
        println!("model cache: {}", cache.dir.display());
        for (entry, state, bytes) in rows {
            let size = bytes
                .map(|b| format!("{:.1} MB", b as f64 / 1e6))
                .unwrap_or_default();
            let used = if needed.contains(&entry.name) {
                "configured"
            } else {
                ""
            };
            println!(
                "{:<24} {:<15} {:<13} {:<10} {:<10} {}",
                entry.name, entry.task, entry.licence, size, used, state
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Converts a CTranslate2 Whisper model folder (or model.bin + vocabulary.txt) to GGML.
pub fn convert_whisper(
    model: &Path,
    vocabulary: Option<&Path>,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let (bin, vocab) = if model.is_dir() {
        (model.join("model.bin"), model.join("vocabulary.txt"))
    } else {
        let vocab = vocabulary
            .map(Path::to_path_buf)
            .unwrap_or_else(|| model.with_file_name("vocabulary.txt"));
        (model.to_path_buf(), vocab)
    };
    let bytes = std::fs::read(&bin).with_context(|| format!("{}", bin.display()))?;
    let vocabulary =
        std::fs::read_to_string(&vocab).with_context(|| format!("{}", vocab.display()))?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut w = std::io::BufWriter::new(tmp.as_file());
    let converted = clipguard_models::ggml::convert_whisper(&bytes, &vocabulary, &mut w)
        .with_context(|| format!("{}", bin.display()))?;
    drop(w);
    tmp.persist(out)?;
    let h = converted.hparams;
    println!(
        "{}: {} encoder + {} decoder layers, width {}, {} tokens ({}), {} tensors, {:.1} MB",
        out.display(),
        h.n_audio_layer,
        h.n_text_layer,
        h.n_audio_state,
        h.n_vocab,
        if h.multilingual() {
            "multilingual"
        } else {
            "English"
        },
        converted.tensors,
        converted.bytes as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}
