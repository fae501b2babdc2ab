//! The workspace's layout rules, checked on `cargo metadata`: `schemas` imports nothing of ours,
//! `pipeline` only `schemas`, no stage crate imports another stage crate, and the binary's
//! `src/` stays a thin command line (at most 1,500 lines). Also: no crate reads a file outside
//! its own folder at compile time (each must be packageable on its own), and the runtime's test
//! helpers stay out of runtime builds.

// Tests report failure by panicking.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `cargo metadata` of the workspace (its own crates only).
fn metadata() -> serde_json::Value {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Workspace crate → (its folder, the workspace crates it depends on, dev-dependencies too).
fn workspace() -> BTreeMap<String, (PathBuf, Vec<String>)> {
    let meta = metadata();
    let packages = meta["packages"].as_array().unwrap();
    let ours: Vec<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let dir = Path::new(p["manifest_path"].as_str().unwrap())
                .parent()
                .unwrap()
                .to_path_buf();
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| ours.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_string(), (dir, deps))
        })
        .collect()
}

#[test]
fn crates_depend_only_downwards() {
    let ws = workspace();
    let stages: Vec<&String> = ws
        .iter()
        .filter(|(_, (dir, _))| dir.parent().is_some_and(|p| p.ends_with("stages")))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(stages.len(), 7, "the stage crates: {stages:?}");
    // The release and review stages work after the verdict on what the stages before it made.
    // Release decodes with the media stage's decoder (vPDQ, C2PA reading) and keeps its index
    // in the hashmatch stage's bank format; review decodes the frames its console shows with
    // the media stage's decoder. Those are their only ways down; nothing depends on them but
    // the topology.
    let after_verdict: &[(&str, &[&str])] = &[
        (
            "clipguard-release",
            &["clipguard-media", "clipguard-hashmatch"],
        ),
        ("clipguard-review", &["clipguard-media"]),
    ];
    assert!(
        ws["clipguard-schemas"].1.is_empty(),
        "{:?}",
        ws["clipguard-schemas"].1
    );
    assert_eq!(ws["clipguard-pipeline"].1, ["clipguard-schemas"]);
    for stage in &stages {
        let deps = &ws[*stage].1;
        let allowed = after_verdict
            .iter()
            .find(|(s, _)| *s == stage.as_str())
            .map(|(_, below)| *below)
            .unwrap_or_default();
        for d in deps {
            assert!(
                !stages.contains(&d) || allowed.contains(&d.as_str()),
                "stage crate {stage} depends on stage crate {d}"
            );
            assert!(
                !["clipguard-topology", "clipguard-eval", "clipguard"].contains(&d.as_str()),
                "stage crate {stage} depends on {d}, which sits above the stages"
            );
        }
    }
    for lib in [
        "clipguard-policy",
        "clipguard-pdq",
        "clipguard-models",
        "clipguard-text",
    ] {
        for d in &ws[lib].1 {
            assert!(
                !stages.contains(&d) && d != "clipguard-topology",
                "shared library {lib} depends on {d}"
            );
            // Dev-dependencies count: a hashing library's tests must not build the runtime
            // (and librdkafka) to find their reference data; `clipguard-testdata` has that.
            assert!(
                d != "clipguard-pipeline",
                "shared library {lib} depends on the runtime, if only in its tests"
            );
        }
    }
    assert!(
        ws["clipguard-testdata"].1.is_empty(),
        "{:?}",
        ws["clipguard-testdata"].1
    );
}

/// The runtime's test helpers (`clipguard-pipeline`'s feature `testing`) reach test builds only:
/// no crate enables the feature outside its dev-dependencies, and it is not a default.
#[test]
fn test_helpers_stay_out_of_runtime_builds() {
    let meta = metadata();
    let mut users = Vec::new();
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        if name == "clipguard-pipeline" {
            let default = &p["features"]["default"];
            assert!(
                !default
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "testing")),
                "`testing` is a default feature of clipguard-pipeline"
            );
        }
        for d in p["dependencies"].as_array().unwrap() {
            let enables = d["features"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "testing");
            if d["name"] == "clipguard-pipeline" && enables {
                assert_eq!(
                    d["kind"], "dev",
                    "{name} enables clipguard-pipeline/testing outside its dev-dependencies"
                );
                users.push(name.to_string());
            }
        }
    }
    // The check sees its subject: the registry's tests use the helpers.
    assert!(
        users.contains(&"clipguard-topology".to_string()),
        "{users:?}"
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir()
            && !p.ends_with("target")
            && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_binary_is_a_thin_command_line() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let lines: usize = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .sum();
    assert!(
        lines <= 1500,
        "src/ holds {lines} lines of Rust (at most 1,500)"
    );
}

#[test]
fn no_crate_includes_files_from_outside_its_folder() {
    for (name, (dir, _)) in workspace() {
        let mut files = Vec::new();
        for sub in ["src", "benches", "tests", "examples", "build.rs"] {
            let p = dir.join(sub);
            if p.is_dir() {
                rust_files(&p, &mut files);
            } else if p.is_file() {
                files.push(p);
            }
        }
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                for mac in ["include_str!(\"", "include_bytes!(\""] {
                    let Some(at) = line.find(mac) else { continue };
                    let rel = line[at + mac.len()..].split('"').next().unwrap();
                    let target = f.parent().unwrap().join(rel);
                    let target = std::path::absolute(&target).unwrap();
                    // Normalise `..` without touching the file system.
                    let mut parts: Vec<std::path::Component> = Vec::new();
                    for c in target.components() {
                        match c {
                            std::path::Component::ParentDir => {
                                parts.pop();
                            }
                            c => parts.push(c),
                        }
                    }
                    let target: PathBuf = parts.iter().collect();
                    assert!(
                        target.starts_with(&dir),
                        "{name}: {}:{} includes {} from outside the crate's folder",
                        f.display(),
                        i + 1,
                        target.display()
                    );
                }
            }
        }
    }
}

/// The pipeline's edges are declared once (`pipeline/src/graph.rs`): a stage crate's code names
/// no topic. It emits typed records (`Record::signal`, `Record::extract`, …) and learns its
/// input's topic from the host; message limits (`topics::MAX_MESSAGE_BYTES`) are not topics.
#[test]
fn no_stage_crate_names_a_topic() {
    let mut checked = 0;
    for (name, (dir, _)) in workspace() {
        if !dir.starts_with(Path::new(env!("CARGO_MANIFEST_DIR")).join("stages")) {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let mut in_tests = false;
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap();
                // Unit tests may build a graph of their own.
                in_tests |= code.trim_start().starts_with("#[cfg(test)]");
                if in_tests {
                    break;
                }
                let names_topic = code.contains("names::topic")
                    || code.contains("\"clips.")
                    || code
                        .match_indices("topics::")
                        .any(|(at, _)| !code[at..].starts_with("topics::MAX_MESSAGE_BYTES"));
                assert!(
                    !names_topic,
                    "{name}: {}:{} names a topic: {line}",
                    f.display(),
                    i + 1
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked > 10,
        "the check sees the stage crates ({checked} files)"
    );
}

/// A stage implements `clipguard_pipeline::grpc::Rpc`; the pipeline's one adapter serves it,
/// through the same containment (panic, deadline) as the Kafka and in-process hosts' attempt.
/// A stage crate reaching for a generated stage service (`*_stage_server`) would bypass both.
#[test]
fn no_stage_writes_a_grpc_service_by_hand() {
    let mut rpcs = 0;
    for (name, (dir, _)) in workspace() {
        if !dir.starts_with(Path::new(env!("CARGO_MANIFEST_DIR")).join("stages")) {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            rpcs += text.matches("impl Rpc for ").count();
            // `Moderation` (prompt and input checks) is not a stage (no topic, no signal): the
            // topology serves it, beside the classify stage whose models it uses.
            let by_hand = text.lines().any(|l| l.contains("_server::"));
            assert!(
                !by_hand,
                "{name}: {} serves a stage service by hand",
                f.display()
            );
        }
    }
    assert!(rpcs >= 6, "the check sees the stages' calls ({rpcs})");
}
