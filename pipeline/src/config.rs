//! Configuration loading: a TOML file plus `CLIPGUARD_*` environment overrides.
//!
//! An environment variable `CLIPGUARD_SECTION__KEY=value` sets `section.key` (double underscore
//! between levels; the value is read as a TOML value when it parses as one, else as a string).
//! Unknown keys, from the file or the environment, are rejected by name, all of them at once,
//! together with every problem the config's own validation finds.
//!
//! Why not `#[serde(deny_unknown_fields)]`: serde stops at the first unknown field, and an
//! operator fixing a config file wants the whole list in one go. `serde_ignored` reports every
//! ignored key while still deserializing strictly typed structs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::PipelineError;

/// Environment variables with the `CLIPGUARD_` prefix that are not config keys: the log filter,
/// the config file, the model cache and registries, and the variables of the project's own
/// scripts, tests and benchmarks (a test below checks that every one the project uses is here).
pub const RESERVED_ENV: &[&str] = &[
    "CLIPGUARD_LOG",
    "CLIPGUARD_CONFIG",
    // The release stage's signing key (a mounted secret; `release.signing_key_env`).
    "CLIPGUARD_RELEASE_SIGNING_KEY",
    "CLIPGUARD_MODELS",
    "CLIPGUARD_MODEL_MANIFEST",
    "CLIPGUARD_PYPI_INDEX",
    "CLIPGUARD_NPM_REGISTRY",
    "CLIPGUARD_CACHE",
    "CLIPGUARD_TANSU",
    "CLIPGUARD_OPS_PYTHON",
    "CLIPGUARD_PROMTOOL",
    "CLIPGUARD_INTEROP_PYTHON",
    "CLIPGUARD_DEBIAN_MIRROR",
    "CLIPGUARD_REQUIRE_BROKER",
    "CLIPGUARD_REQUIRE_POSTGRES",
    "CLIPGUARD_REQUIRE_BROWSER",
    "CLIPGUARD_TEST_ARTIFACTS",
    "CLIPGUARD_REVIEW_PASSWORD",
    "CLIPGUARD_BENCH_CLIPS",
    "CLIPGUARD_BENCH_MEDIA",
    "CLIPGUARD_BENCH_RUNS",
    "CLIPGUARD_BENCH_PYTHON",
    "CLIPGUARD_BENCH_PINNED",
    "CLIPGUARD_BENCH_SIZES",
    "CLIPGUARD_BENCH_RADIUS",
    "CLIPGUARD_BENCH_REPS",
    "CLIPGUARD_TARGET_LIMIT_GB",
    "CLIPGUARD_TEST_JOBS",
    "CLIPGUARD_LLAMA_SERVER",
    "CLIPGUARD_REQUIRE_LLM",
    "CLIPGUARD_UPDATE_PROTO_BASELINE",
    "CLIPGUARD_CONFORMANCE",
    "CLIPGUARD_REQUIRE_CONFORMANCE",
    "CLIPGUARD_UPDATE_GOLDEN",
    "CLIPGUARD_GOLDEN_SPEECH",
    "CLIPGUARD_BIN",
    "CLIPGUARD_FUZZ_TARGET",
    "CLIPGUARD_FUZZ_SEEDS",
    "CLIPGUARD_FUZZ_MEDIA",
];

/// A config that can check itself and report every problem.
pub trait Validate {
    fn validate(&self, problems: &mut Vec<String>);
}

/// Loads `T` from `file` (optional) and the `CLIPGUARD_*` variables in `env`, then validates.
pub fn load<T: DeserializeOwned + Validate>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, PipelineError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| PipelineError::Config(vec![format!("{}: {e}", path.display())]))?;
            text.parse::<toml::Table>()
                .map_err(|e| PipelineError::Config(vec![format!("{}: {e}", path.display())]))?
        }
        None => toml::Table::new(),
    };
    let mut origins = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("CLIPGUARD_") else {
            continue;
        };
        if RESERVED_ENV.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            problems.push(format!("{name}: malformed name (empty key between `__`)"));
            continue;
        }
        origins.insert(path.join("."), name.clone());
        // librdkafka properties are strings to librdkafka: a password such as `0x1F` or
        // `1e3` must reach it as written, not as the TOML number it also spells.
        let value = if path.len() > 2 && path[0] == "kafka" && path[1] == "client" {
            toml::Value::String(value.clone())
        } else {
            parse_env_value(&value)
        };
        if let Err(e) = set_path(&mut table, &path, value) {
            problems.push(format!("{name}: {e}"));
        }
    }
    let mut unknown = Vec::new();
    let parsed: Result<T, _> =
        serde_ignored::deserialize(toml::Value::Table(table), |p| unknown.push(p.to_string()));
    let config = match parsed {
        Ok(c) => c,
        Err(e) => {
            problems.push(e.to_string());
            return Err(PipelineError::Config(problems));
        }
    };
    for key in unknown {
        match origins.get(&key) {
            Some(var) => problems.push(format!("unknown key `{key}` (from {var})")),
            None => problems.push(format!("unknown key `{key}`")),
        }
    }
    config.validate(&mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(PipelineError::Config(problems))
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut cur = table;
    for (i, part) in parents.iter().enumerate() {
        let entry = cur
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{}` is not a table", path[..=i].join(".")))?;
    }
    cur.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variable with the prefix and no `__` that the project reads is reserved, so
    /// setting it never fails config loading as an unknown key.
    #[test]
    fn every_variable_the_project_reads_is_reserved() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut stack = vec![root.clone()];
        let mut missing = std::collections::BTreeSet::new();
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if p.is_dir() {
                    if !name.starts_with('.') && name != "target" || name == ".ci" {
                        stack.push(p);
                    }
                    continue;
                }
                if !(name.ends_with(".rs") || name.ends_with(".sh") || name == "run") {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&p) else {
                    continue;
                };
                for (i, _) in text.match_indices("CLIPGUARD_") {
                    let var: String = text[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                        .collect();
                    let var = var.trim_end_matches('_');
                    if var.len() > "CLIPGUARD_".len()
                        && !var.contains("__")
                        && !RESERVED_ENV.contains(&var)
                    {
                        missing.insert(format!("{var} ({})", p.display()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "not in RESERVED_ENV: {missing:?}");
    }
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Default)]
    #[serde(default)]
    struct Inner {
        rate: f64,
        name: String,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(default)]
    struct Top {
        inner: Inner,
        count: u32,
    }

    impl Validate for Top {
        fn validate(&self, problems: &mut Vec<String>) {
            if self.count > 10 {
                problems.push(format!("count: {} is over 10", self.count));
            }
        }
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn env_overrides_file_with_typed_values() {
        let f = write("count = 2\n[inner]\nrate = 1.5\n");
        let env = [
            ("CLIPGUARD_INNER__RATE".to_string(), "3.25".to_string()),
            (
                "CLIPGUARD_INNER__NAME".to_string(),
                "plain words".to_string(),
            ),
            ("CLIPGUARD_LOG".to_string(), "debug".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let top: Top = load(Some(f.path()), env).unwrap();
        assert_eq!(top.inner.rate, 3.25);
        assert_eq!(top.inner.name, "plain words");
        assert_eq!(top.count, 2);
    }

    #[test]
    fn every_unknown_key_and_problem_is_reported_at_once() {
        let f = write("count = 11\nbogus = 1\n[inner]\nrat = 2.0\n");
        let env = [("CLIPGUARD_INNER__COLOUR".to_string(), "red".to_string())];
        let err = load::<Top>(Some(f.path()), env).unwrap_err();
        let PipelineError::Config(problems) = err else {
            panic!("{err}")
        };
        let text = problems.join("\n");
        for needle in [
            "unknown key `bogus`",
            "unknown key `inner.rat`",
            "unknown key `inner.colour` (from CLIPGUARD_INNER__COLOUR)",
            "count: 11 is over 10",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
        assert_eq!(problems.len(), 4, "{text}");
    }

    #[test]
    fn type_errors_name_the_key() {
        let f = write("[inner]\nrate = \"fast\"\n");
        let err = load::<Top>(Some(f.path()), []).unwrap_err().to_string();
        assert!(err.contains("rate"), "{err}");
    }
}
