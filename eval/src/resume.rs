//! Runs that finish: every item's outcome is kept on disk as soon as it is known, under a key
//! made of everything the outcome depends on, so an interrupted run (or a later one with the
//! same build, configuration, policies and models) continues where it stopped.
//!
//! The run key hashes the running executable (any code change is a new run), the stages'
//! settings, the decision policy, the text policy and the model manifest (the SHA-256 of every
//! model file). The item key hashes what the item is (kind, text or file or pattern, voice,
//! audience), not its id, labels or set, so relabelling an item or moving it between
//! manifests keeps its result. One append-only JSON-lines file per run key; a line cut off by
//! a crash is ignored. Items without a decision (errors, skipped files) are not kept: a rerun
//! tries them again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use clipguard_schemas::Decision;
use clipguard_topology::Config;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Item, Kind, Outcome};

#[derive(Serialize, Deserialize)]
struct Line {
    item: String,
    decisions: [String; 3],
    scores: BTreeMap<String, f32>,
    stopped_by: [BTreeSet<String>; 3],
    rationale: String,
}

/// The on-disk results of one run key.
#[derive(Debug)]
pub struct ResultStore {
    path: PathBuf,
    known: HashMap<String, Outcome>,
    file: Option<std::fs::File>,
}

fn field(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

/// The key of a run: the executable, the settings, the policies and the model manifest.
/// `None` when the executable cannot be read (nothing is then kept).
pub fn run_key(cfg: &Config, policy_text: &str, text_policy: &str) -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let mut h = Sha256::new();
    field(&mut h, "clipguard eval results v1");
    h.update(Sha256::digest(std::fs::read(exe).ok()?));
    for part in [
        format!("{:?}", cfg.media),
        format!("{:?}", cfg.transcribe),
        format!("{:?}", cfg.hashmatch),
        format!("{:?}", cfg.classify),
        format!("{:?}", cfg.monitor),
    ] {
        field(&mut h, &part);
    }
    field(&mut h, policy_text);
    field(&mut h, text_policy);
    field(&mut h, clipguard_models::BUILTIN_MANIFEST);
    Some(hex::encode(&h.finalize()[..12]))
}

/// The key of an item: what it is, not what it is called or labelled.
pub fn item_key(item: &Item) -> String {
    let mut h = Sha256::new();
    field(&mut h, item.kind.word());
    match &item.kind {
        Kind::Text(t) => field(&mut h, t),
        Kind::Speech { text, voice } => {
            field(&mut h, text);
            field(&mut h, &voice.tag());
        }
        Kind::Clip(p) => {
            // A file's content decides its outcome: its SHA-256 (unreadable: its path).
            match std::fs::read(p) {
                Ok(bytes) => h.update(Sha256::digest(bytes)),
                Err(_) => field(&mut h, &p.display().to_string()),
            }
        }
        Kind::Generated { pattern, seconds } => {
            field(&mut h, pattern);
            h.update(seconds.to_le_bytes());
        }
    }
    field(&mut h, item.audience.name());
    hex::encode(&h.finalize()[..12])
}

impl ResultStore {
    /// Opens (or starts) the results of `run_key` under `dir`.
    pub fn open(dir: &Path, run_key: &str) -> std::io::Result<ResultStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{run_key}.jsonl"));
        let mut known = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                let Ok(l) = serde_json::from_str::<Line>(line) else {
                    continue;
                };
                let d = |w: &str| Decision::from_word(w);
                let (Some(a), Some(b), Some(c)) =
                    (d(&l.decisions[0]), d(&l.decisions[1]), d(&l.decisions[2]))
                else {
                    continue;
                };
                known.insert(
                    l.item,
                    Outcome {
                        decisions: Some([a, b, c]),
                        scores: l.scores,
                        stopped_by: l.stopped_by,
                        rationale: l.rationale,
                        ..Default::default()
                    },
                );
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(ResultStore {
            path,
            known,
            file: Some(file),
        })
    }

    /// A store that keeps nothing (no run key).
    pub fn none() -> ResultStore {
        ResultStore {
            path: PathBuf::new(),
            known: HashMap::new(),
            file: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The kept outcome of an item, if any.
    pub fn get(&self, key: &str) -> Option<&Outcome> {
        self.known.get(key)
    }

    /// Keeps an item's outcome (decided ones only); a write that fails is reported once and
    /// the run goes on without keeping more.
    pub fn put(&mut self, key: &str, o: &Outcome) {
        let (Some(d), Some(file)) = (o.decisions, self.file.as_mut()) else {
            return;
        };
        let line = Line {
            item: key.to_string(),
            decisions: d.map(|x| x.word().to_string()),
            scores: o.scores.clone(),
            stopped_by: o.stopped_by.clone(),
            rationale: o.rationale.clone(),
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        if let Err(e) = file.write_all(text.as_bytes()) {
            eprintln!(
                "eval: could not keep results in {}: {e}; this run will not be resumable",
                self.path.display()
            );
            self.file = None;
        }
        self.known.insert(key.to_string(), o.clone());
    }
}

/// A fixed sample of the spoken items: per set and per label (or near miss), the `fraction`
/// of items whose id hashes lowest, at least one. Every other item is kept.
pub fn sample_speech(items: Vec<Item>, fraction: f64) -> Vec<Item> {
    // (set, labels, near) → (hash of the id, index).
    type Group = (String, Vec<String>, Option<String>);
    let mut groups: BTreeMap<Group, Vec<(String, usize)>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        if matches!(item.kind, Kind::Speech { .. }) {
            groups
                .entry((item.set.clone(), item.labels.clone(), item.near.clone()))
                .or_default()
                .push((hex::encode(Sha256::digest(item.id.as_bytes())), i));
        }
    }
    let mut keep: BTreeSet<usize> = BTreeSet::new();
    for mut g in groups.into_values() {
        g.sort();
        let n = ((g.len() as f64 * fraction).ceil() as usize).clamp(1, g.len());
        keep.extend(g.into_iter().take(n).map(|(_, i)| i));
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(i, item)| !matches!(item.kind, Kind::Speech { .. }) || keep.contains(i))
        .map(|(_, item)| item)
        .collect()
}
