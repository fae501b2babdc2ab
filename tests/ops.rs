//! The operations assets, checked offline: the Kubernetes manifests (`deploy/k8s`) render and
//! validate against the Kubernetes and CRD schemas, with their references consistent and every
//! config a worker would load valid, while deliberately broken manifests fail; the alert rules
//! pass `promtool` and their unit tests; the dashboard and the rules name only metrics this
//! build exports; every alert has a runbook section.
//!
//! The tools (kubectl's kustomize, kubernetes-validate, promtool) come from
//! `scripts/ops-setup.sh`, which `cargo xtask test` runs beforehand; run alone, this test runs
//! it itself (idempotent).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use clipguard_schemas::names::stage;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `KEY=VALUE` paths of the ops tools: from the environment, else from `scripts/ops-setup.sh`.
fn tools() -> &'static HashMap<String, PathBuf> {
    static TOOLS: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let keys = ["CLIPGUARD_OPS_PYTHON", "CLIPGUARD_PROMTOOL"];
        if keys.iter().all(|k| std::env::var_os(k).is_some()) {
            return keys
                .iter()
                .map(|k| (k.to_string(), std::env::var_os(k).unwrap().into()))
                .collect();
        }
        let out = Command::new(root().join("scripts/ops-setup.sh"))
            .output()
            .expect("run scripts/ops-setup.sh");
        assert!(
            out.status.success(),
            "ops-setup.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
            .collect()
    })
}

fn tool(key: &str) -> &'static Path {
    tools()
        .get(key)
        .unwrap_or_else(|| panic!("ops-setup.sh did not report {key}"))
}

fn crds() -> PathBuf {
    root().join("../shared/conformance/k8s-crds")
}

/// Runs `deploy/k8s/check.py` on kustomizations; returns (success, output).
fn check(kustomizations: &[&str]) -> (bool, String) {
    let python = tool("CLIPGUARD_OPS_PYTHON");
    let kubectl = python.parent().unwrap().join("kubectl");
    // Every stage the registry knows, with the topic it consumes.
    let stages: Vec<(&str, &str)> = clipguard_pipeline::graph::STANDARD
        .iter()
        .map(|n| (n.stage, n.consumes))
        .collect();
    assert_eq!(
        stages.iter().map(|s| s.0).collect::<Vec<_>>(),
        stage::ALL,
        "a stage without its input topic here"
    );
    let stages = stages
        .iter()
        .map(|(s, t)| format!("{s}={t}"))
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new(python)
        .arg(root().join("deploy/k8s/check.py"))
        .arg("--kubectl")
        .arg(&kubectl)
        .arg("--crds")
        .arg(crds())
        .arg("--stages")
        .arg(stages)
        .arg("--clipguard")
        .arg(env!("CARGO_BIN_EXE_clipguard"))
        .args(kustomizations.iter().map(|k| root().join(k)))
        .output()
        .expect("run deploy/k8s/check.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_overlay_renders_and_validates_with_consistent_references() {
    assert!(
        crds().join("keda.sh_scaledobjects.yaml").is_file(),
        "the CRD schemas are missing at {}",
        crds().display()
    );
    let (ok, out) = check(&[
        "deploy/k8s/base",
        "deploy/k8s/overlays/dev",
        "deploy/k8s/overlays/prod",
    ]);
    assert!(ok, "manifests did not validate:\n{out}");
    assert_eq!(out.matches(": ok").count(), 3, "{out}");
}

#[test]
fn a_manifest_the_schemas_refuse_fails_with_each_problem_named() {
    let (ok, out) = check(&["deploy/k8s/tests/broken-schema"]);
    assert!(!ok, "a broken manifest passed:\n{out}");
    for expected in [
        "Deployment/clipguard-monitor: spec: Additional properties are not allowed ('replica' was unexpected)",
        "ScaledObject/clipguard-media: spec.triggers.0.metadata.lagThreshold: 10 is not of type 'string'",
        "minReplicaCount must be less than or equal to maxReplicaCount",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
}

#[test]
fn a_manifest_with_wrong_references_fails_with_each_problem_named() {
    let (ok, out) = check(&["deploy/k8s/tests/broken-refs"]);
    assert!(!ok, "a broken manifest passed:\n{out}");
    for expected in [
        "stage media consumes clips.submitted, not clips.media",
        "maxReplicaCount 12 exceeds the 6 partitions of clips.media",
        "terminationGracePeriodSeconds 20 < preStop 5 + drain 30 + final commit 10",
        "no PersistentVolumeClaim clipguard-media-store",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
}

fn monitoring(name: &str) -> String {
    std::fs::read_to_string(root().join("deploy/k8s/monitoring").join(name)).unwrap()
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let promtool = tool("CLIPGUARD_PROMTOOL");
    let dir = root().join("deploy/k8s/monitoring");
    for args in [
        &["check", "rules", "alerts.yaml"][..],
        &["test", "rules", "alerts.test.yaml"][..],
    ] {
        let out = Command::new(promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every sample name this build's workers can export (`_total` for counters, `_bucket`,
/// `_sum`, `_count` for histograms).
fn exported() -> BTreeSet<String> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(
        &mut text,
        &clipguard_topology::registry::metrics_catalog(),
    )
    .unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// The metric names a PromQL text refers to: plain `clipguard_…` names, the patterns of
/// `__name__=~"…"` matchers, and the recorded `clipguard:…` series.
struct Refs {
    names: BTreeSet<String>,
    patterns: BTreeSet<String>,
    recorded: BTreeSet<String>,
}

fn refs(promql: &str) -> Refs {
    let mut refs = Refs {
        names: BTreeSet::new(),
        patterns: BTreeSet::new(),
        recorded: BTreeSet::new(),
    };
    // Quoted strings are label values, regexes and annotations, not metric names; collect the
    // name patterns among them and drop the rest.
    let mut bare = String::new();
    let mut rest = promql;
    while let Some(q) = rest.find('"') {
        bare.push_str(&rest[..q]);
        let after = &rest[q + 1..];
        let end = after.find('"').unwrap_or(after.len());
        if rest[..q].ends_with("__name__=~") {
            refs.patterns.insert(after[..end].to_string());
        }
        bare.push(' ');
        rest = &after[(end + 1).min(after.len())..];
    }
    bare.push_str(rest);
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    for token in bare.split(|c: char| !word(c)) {
        if token.starts_with("clipguard_") {
            refs.names.insert(token.to_string());
        } else if token.starts_with("clipguard:") {
            refs.recorded.insert(token.to_string());
        }
    }
    refs
}

/// The names a `clipguard_(stage|stage|…)_<suffix>` pattern (the one shape the rules use)
/// matches, after checking that it names every stage and nothing else.
fn pattern_names(pattern: &str) -> Vec<String> {
    let inner = pattern
        .strip_prefix("clipguard_(")
        .unwrap_or_else(|| panic!("unexpected name pattern {pattern}"));
    let (alternatives, suffix) = inner
        .split_once(")_")
        .unwrap_or_else(|| panic!("unexpected name pattern {pattern}"));
    let names: Vec<&str> = alternatives.split('|').collect();
    assert_eq!(names, stage::ALL, "{pattern}: the stages, in order");
    names
        .iter()
        .map(|s| format!("clipguard_{s}_{suffix}"))
        .collect()
}

#[test]
fn dashboard_and_alert_rules_use_only_exported_metrics() {
    let exported = exported();
    assert!(
        exported.contains("clipguard_media_consumer_lag"),
        "{exported:?}"
    );
    assert!(
        exported.contains("clipguard_monitor_verdicts_total"),
        "{exported:?}"
    );
    let rules = monitoring("alerts.yaml");
    let dashboard: serde_json::Value = serde_json::from_str(&monitoring("dashboard.json")).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 10, "dashboard has {} queries", exprs.len());
    let defined: BTreeSet<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(str::to_string)
        .collect();
    // The rules without their comments (which name metric patterns in prose).
    let rules_code: String = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for (what, text) in std::iter::once(("alerts.yaml", rules_code))
        .chain(exprs.into_iter().map(|e| ("dashboard.json", e)))
    {
        let r = refs(&text);
        for name in &r.names {
            assert!(exported.contains(name), "{what}: `{name}` is not exported");
        }
        for p in &r.patterns {
            for name in pattern_names(p) {
                assert!(
                    exported.contains(&name),
                    "{what}: `{p}` names `{name}`, not exported"
                );
            }
        }
        for name in &r.recorded {
            assert!(
                defined.contains(name),
                "{what}: `{name}` is not recorded by alerts.yaml"
            );
        }
    }
}

#[test]
fn every_alert_has_a_runbook_section() {
    let rules = monitoring("alerts.yaml");
    let runbook = std::fs::read_to_string(root().join("docs/runbook.md")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 6, "{alerts:?}");
    for alert in alerts {
        assert!(
            runbook.contains(&format!("\n## {alert}\n")),
            "docs/runbook.md has no section `## {alert}`"
        );
        let url = format!("docs/runbook.md#{}", alert.to_ascii_lowercase());
        assert!(
            rules.contains(&url),
            "{alert}: no runbook_url ending in {url}"
        );
    }
}
