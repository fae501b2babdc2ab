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
    #[serde(default)]
    refined: bool,
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
    // The manifest in use (an override included): the SHA-256 of every model file.
    match clipguard_models::Manifest::load_default() {
        Ok(m) => field(&mut h, &format!("{m:?}")),
        Err(_) => field(&mut h, clipguard_models::BUILTIN_MANIFEST),
    }
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
        let mut cut = false;
        if let Ok(text) = std::fs::read_to_string(&path) {
            cut = !text.is_empty() && !text.ends_with('\n');
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
                        refined: l.refined,
                        ..Default::default()
                    },
                );
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        if cut {
            // The last line was cut off: the next one starts on a line of its own.
            file.write_all(b"\n")?;
        }
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
            refined: o.refined,
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

/// Spoken sets of at most this many items always run whole (the everyday sets).
pub const SAMPLE_ABOVE: usize = 100;

/// A fixed sample of the spoken items of sets larger than [`SAMPLE_ABOVE`]: per set and per
/// label (or near miss), the `fraction` of items whose id hashes lowest, at least one. Every
/// other item is kept.
pub fn sample_speech(items: Vec<Item>, fraction: f64) -> Vec<Item> {
    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for item in &items {
        if matches!(item.kind, Kind::Speech { .. }) {
            *sizes.entry(item.set.as_str()).or_default() += 1;
        }
    }
    let large: BTreeSet<String> = sizes
        .into_iter()
        .filter(|(_, n)| *n > SAMPLE_ABOVE)
        .map(|(s, _)| s.to_string())
        .collect();
    // (set, labels, near) → (hash of the id, index).
    type Group = (String, Vec<String>, Option<String>);
    let mut groups: BTreeMap<Group, Vec<(String, usize)>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        if matches!(item.kind, Kind::Speech { .. }) && large.contains(&item.set) {
            groups
                .entry((item.set.clone(), item.labels.clone(), item.near.clone()))
                .or_default()
                .push((hex::encode(Sha256::digest(item.id.as_bytes())), i));
        }
    }
    let mut keep: BTreeSet<usize> = BTreeSet::new();
    for mut g in groups.into_values() {
        g.sort();
        // The share rounded up, at least one (less a hair, so 35 × 0.2 is 7, not 8).
        let n = ((g.len() as f64 * fraction - 1e-9).ceil() as usize).clamp(1, g.len());
        keep.extend(g.into_iter().take(n).map(|(_, i)| i));
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(i, item)| {
            !matches!(item.kind, Kind::Speech { .. })
                || !large.contains(&item.set)
                || keep.contains(i)
        })
        .map(|(_, item)| item)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Voice;
    use clipguard_policy::Audience;

    fn speech(set: &str, id: &str, label: Option<&str>) -> Item {
        Item {
            id: id.into(),
            set: set.into(),
            kind: Kind::Speech {
                text: format!("sentence {id}"),
                voice: Voice::Espeak("en".into()),
            },
            labels: label.map(|l| vec![l.to_string()]).unwrap_or_default(),
            near: None,
            audience: Audience::PublicFeed,
            optional: false,
        }
    }

    #[test]
    fn the_sample_is_fixed_stratified_and_leaves_small_sets_whole() {
        let mut items = Vec::new();
        for i in 0..150 {
            let label = if i % 3 == 0 { Some("self_harm") } else { None };
            items.push(speech("speech/big", &format!("b{i}"), label));
        }
        for i in 0..20 {
            items.push(speech("speech/small", &format!("s{i}"), None));
        }
        let a = sample_speech(items.clone(), 0.2);
        let b = sample_speech(items, 0.2);
        let ids = |v: &[Item]| v.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        let big: Vec<&Item> = a.iter().filter(|i| i.set == "speech/big").collect();
        assert_eq!(big.iter().filter(|i| !i.labels.is_empty()).count(), 10);
        assert_eq!(big.iter().filter(|i| i.labels.is_empty()).count(), 20);
        assert_eq!(a.iter().filter(|i| i.set == "speech/small").count(), 20);
    }

    #[test]
    fn kept_results_read_back_by_what_an_item_is_and_a_cut_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let item = speech("speech/x", "one", Some("self_harm"));
        let mut renamed = item.clone();
        renamed.id = "two".into();
        renamed.labels.clear();
        assert_eq!(item_key(&item), item_key(&renamed));
        let mut other = item.clone();
        other.audience = Audience::Adult;
        assert_ne!(item_key(&item), item_key(&other));

        let mut o = Outcome {
            decisions: Some([Decision::Allow, Decision::Review, Decision::Block]),
            rationale: "why".into(),
            ..Default::default()
        };
        o.scores.insert("self_harm".into(), 0.7);
        o.stopped_by[2].insert("self_harm".into());
        let mut store = ResultStore::open(dir.path(), "k").unwrap();
        store.put(&item_key(&item), &o);
        // An undecided outcome is not kept.
        store.put(&item_key(&other), &Outcome::default());
        drop(store);
        // A crash mid-line.
        let path = dir.path().join("k.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"item\": \"cut");
        std::fs::write(&path, text).unwrap();
        let mut store = ResultStore::open(dir.path(), "k").unwrap();
        let back = store.get(&item_key(&renamed)).unwrap().clone();
        // What is kept after the cut line reads back too.
        store.put(&item_key(&other), &o);
        drop(store);
        let store = ResultStore::open(dir.path(), "k").unwrap();
        assert!(store.get(&item_key(&other)).is_some());
        assert_eq!(back.decisions, o.decisions);
        assert_eq!(back.scores, o.scores);
        assert_eq!(back.stopped_by, o.stopped_by);
    }
}
