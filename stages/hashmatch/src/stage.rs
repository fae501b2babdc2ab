//! The hashmatch stage: consumes `clips.media`, matches the clip's frame hashes against every
//! PDQ bank (so video frames match image banks), the clip's vPDQ against every video bank, and
//! the file's digests against the MD5 / SHA-256 entries, and emits one signal per clip with the
//! matches (bank, category, action, distance, frame timestamps, external ids).
//!
//! Banks reload while the stage runs: every `reload_interval_s` (each replica starting at a
//! random offset, so replicas do not all reload at once) the stage compares each bank's live
//! version with the one it holds, loads what changed on a blocking thread, and swaps the whole
//! set at once. A bank that fails to load keeps its previous version in service.
//! Bank hashes and matched media never reach logs or metric labels: logs name banks, categories
//! and counts only.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clipguard_pipeline::{Emitter, ProcessCtx, Record, Stage, StageError, now_ms};
use clipguard_schemas::{Decision, HashMatch, MediaExtract, Signal};
use serde::Deserialize;

use crate::HashmatchError;
use crate::bank::{Action, Bank, BankStore, FileKind};
use clipguard_pdq::PdqHash;
use clipguard_pdq::vpdq::{self, FrameHash};

/// Stage name, consumer group suffix and signal `stage` field.
pub const NAME: &str = clipguard_schemas::names::stage::HASHMATCH;
/// Frame timestamps and external ids reported per match, at most.
const MAX_TIMESTAMPS: usize = 32;
const MAX_IDS: usize = 16;

/// Settings of the hashmatch stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HashmatchConfig {
    /// Folder of banks (`clipguard bank import` writes there).
    pub banks_dir: PathBuf,
    /// How often a running stage looks for changed banks, seconds.
    pub reload_interval_s: f64,
    /// Frames below this PDQ quality are not matched (their hashes are unreliable).
    pub min_quality: u32,
}

impl Default for HashmatchConfig {
    fn default() -> Self {
        Self {
            banks_dir: PathBuf::from("banks"),
            reload_interval_s: 30.0,
            min_quality: 50,
        }
    }
}

impl HashmatchConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.reload_interval_s.is_nan() || self.reload_interval_s < 0.1 {
            problems.push(format!(
                "hashmatch.reload_interval_s: {} must be >= 0.1",
                self.reload_interval_s
            ));
        }
        if self.min_quality > 100 {
            problems.push(format!(
                "hashmatch.min_quality: {} is above 100",
                self.min_quality
            ));
        }
    }
}

/// The banks in service, with the version each was loaded at.
#[derive(Debug, Default)]
pub struct BankSet {
    pub banks: Vec<(u64, Arc<Bank>)>,
}

impl BankSet {
    /// Loads every bank; one that fails is reported and left out (or, on reload, kept at the
    /// version `previous` had).
    pub fn load(store: &BankStore, previous: Option<&BankSet>) -> (BankSet, Vec<HashmatchError>) {
        let mut errors = Vec::new();
        let names = match store.names() {
            Ok(n) => n,
            Err(e) => {
                errors.push(e);
                return (
                    BankSet {
                        banks: previous.map(|p| p.banks.clone()).unwrap_or_default(),
                    },
                    errors,
                );
            }
        };
        let mut banks = Vec::new();
        for name in names {
            let held = previous.and_then(|p| p.banks.iter().find(|(_, b)| b.meta.name == name));
            let live = match store.current(&name) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(e);
                    banks.extend(held.cloned());
                    continue;
                }
            };
            if let (Some((v, bank)), Some(live)) = (held, live)
                && *v == live
            {
                banks.push((*v, bank.clone()));
                continue;
            }
            match (live, store.load(&name)) {
                (Some(v), Ok(bank)) => banks.push((v, Arc::new(bank))),
                (_, Err(e)) => {
                    errors.push(e);
                    banks.extend(held.cloned());
                }
                (None, Ok(_)) => {}
            }
        }
        (BankSet { banks }, errors)
    }

    fn versions(&self) -> Vec<(String, u64)> {
        self.banks
            .iter()
            .map(|(v, b)| (b.meta.name.clone(), *v))
            .collect()
    }
}

/// Matches one clip's hashes against the banks. `vpdq_max_gap_s` > 0 says the frames were
/// hashed sparsely, at most that far apart (videos are then compared with
/// [`vpdq::compare_sparse`]).
pub fn match_clip(
    banks: &BankSet,
    frames: &[FrameHash],
    md5: &str,
    sha256: &str,
    min_quality: u32,
    vpdq_max_gap_s: f64,
) -> Vec<HashMatch> {
    let good: Vec<&FrameHash> = frames.iter().filter(|f| f.quality >= min_quality).collect();
    let mut out = Vec::new();
    for (_, bank) in &banks.banks {
        let meta = &bank.meta;
        let base = HashMatch {
            bank: meta.name.clone(),
            category: meta.category.clone(),
            action: match meta.action {
                Action::Block => Decision::Block,
                Action::Review => Decision::Review,
            } as i32,
            ..Default::default()
        };
        // Image hashes: every good frame against the PDQ index.
        if !bank.pdq.is_empty() {
            let mut times = BTreeSet::new();
            let mut ids = BTreeSet::new();
            let mut best = u32::MAX;
            for f in &good {
                for hit in bank.pdq.search(&f.hash, meta.pdq_distance) {
                    best = best.min(hit.distance);
                    times.insert(Millis::from(f.timestamp_s));
                    if let Some(id) = bank.pdq_ids.get(hit.index as usize)
                        && !id.is_empty()
                    {
                        ids.insert(id.clone());
                    }
                }
            }
            if best != u32::MAX {
                out.push(HashMatch {
                    kind: "pdq".into(),
                    distance: best,
                    frame_timestamps_s: times
                        .iter()
                        .take(MAX_TIMESTAMPS)
                        .map(|t| t.secs())
                        .collect(),
                    external_ids: ids.into_iter().take(MAX_IDS).collect(),
                    ..base.clone()
                });
            }
        }
        // Videos: candidates share at least one frame within D; each is then compared whole.
        if !bank.videos.is_empty() {
            let params = meta.vpdq_params();
            let candidates = bank.video_candidates(frames);
            let mut best: Option<HashMatch> = None;
            let mut ids = BTreeSet::new();
            for v in candidates {
                let (id, target) = &bank.videos[v as usize];
                let r = if vpdq_max_gap_s > 0.0 {
                    vpdq::compare_sparse(frames, target, &params, vpdq_max_gap_s)
                } else {
                    vpdq::compare(frames, target, &params)
                };
                if !r.is_match {
                    continue;
                }
                if !id.is_empty() {
                    ids.insert(id.clone());
                }
                let (distance, times) = matched_frames(frames, target, &params);
                let better = best
                    .as_ref()
                    .is_none_or(|b| r.target_match_pct > b.target_match_pct);
                if better {
                    best = Some(HashMatch {
                        kind: "vpdq".into(),
                        distance,
                        frame_timestamps_s: times,
                        query_match_pct: r.query_match_pct,
                        target_match_pct: r.target_match_pct,
                        ..base.clone()
                    });
                }
            }
            if let Some(mut m) = best {
                m.external_ids = ids.into_iter().take(MAX_IDS).collect();
                out.push(m);
            }
        }
        // Exact file digests.
        for (kind, digest) in [(FileKind::Md5, md5), (FileKind::Sha256, sha256)] {
            if digest.is_empty() {
                continue;
            }
            if let Some(id) = bank.files.get(&(kind, digest.to_ascii_lowercase())) {
                out.push(HashMatch {
                    kind: kind.word().into(),
                    distance: 0,
                    external_ids: if id.is_empty() {
                        vec![]
                    } else {
                        vec![id.clone()]
                    },
                    ..base.clone()
                });
            }
        }
    }
    out
}

/// Timestamps as whole milliseconds, so they sort and de-duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Millis(i64);

impl From<f64> for Millis {
    fn from(s: f64) -> Self {
        Millis((s * 1000.0).round() as i64)
    }
}

impl Millis {
    fn secs(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

/// The smallest distance between a query frame and the target, and the query frames that match.
fn matched_frames(
    query: &[FrameHash],
    target: &[FrameHash],
    params: &vpdq::MatchParams,
) -> (u32, Vec<f64>) {
    let target: Vec<&PdqHash> = target
        .iter()
        .filter(|f| f.quality >= params.quality)
        .map(|f| &f.hash)
        .collect();
    let mut best = u32::MAX;
    let mut times = BTreeSet::new();
    for q in query.iter().filter(|f| f.quality >= params.quality) {
        let d = target
            .iter()
            .map(|t| t.distance(&q.hash))
            .min()
            .unwrap_or(u32::MAX);
        best = best.min(d);
        if d <= params.distance {
            times.insert(Millis::from(q.timestamp_s));
        }
    }
    (
        best,
        times
            .iter()
            .take(MAX_TIMESTAMPS)
            .map(|t| t.secs())
            .collect(),
    )
}

/// The frame hashes a media extract carries: the vPDQ frames and the sampled frames' PDQ.
pub fn frames_of(extract: &MediaExtract) -> Vec<FrameHash> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let vpdq = extract
        .frame_hashes
        .iter()
        .map(|f| (f.frame, f.timestamp_s, &f.pdq, f.quality));
    let sampled = extract
        .frames
        .iter()
        .map(|f| (u64::from(f.index), f.timestamp_s, &f.pdq, f.pdq_quality));
    for (frame, timestamp_s, pdq, quality) in vpdq.chain(sampled) {
        let Ok(bytes) = <[u8; 32]>::try_from(pdq.as_slice()) else {
            continue;
        };
        if seen.insert(frame) {
            out.push(FrameHash {
                frame,
                quality,
                hash: PdqHash(bytes),
                timestamp_s,
            });
        }
    }
    out.sort_by_key(|f| f.frame);
    out
}

/// The signal for a clip's matches: the matches themselves plus a `hash_match:<category>` reason
/// per category (the monitor turns each match into a category decision with its evidence).
pub fn signal_for(extract: &MediaExtract, matches: Vec<HashMatch>) -> Signal {
    let mut reasons = Vec::new();
    for m in &matches {
        let reason = format!("hash_match:{}", m.category);
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
    Signal {
        clip_id: extract.clip_id.clone(),
        stage: NAME.into(),
        context: extract.context.clone(),
        produced_at_ms: now_ms(),
        reasons,
        hash_matches: matches,
        ..Default::default()
    }
}

/// The stage: the banks in service behind a lock that is held only to clone an `Arc`.
#[derive(Debug)]
pub struct HashmatchStage {
    config: HashmatchConfig,
    store: BankStore,
    banks: RwLock<Arc<BankSet>>,
}

impl HashmatchStage {
    /// Loads every bank now; a bank that fails is reported (and left out), so a worker starts
    /// even when one bank is damaged, and says which.
    pub fn new(config: HashmatchConfig) -> Result<Self, HashmatchError> {
        let store = BankStore::new(&config.banks_dir);
        let (set, errors) = BankSet::load(&store, None);
        for e in &errors {
            tracing::error!(error = %e, "bank not loaded");
        }
        for (v, b) in &set.banks {
            tracing::info!(bank = %b.meta.name, category = %b.meta.category, version = v,
                pdq = b.meta.counts.pdq, videos = b.meta.counts.vpdq_videos,
                files = b.meta.counts.md5 + b.meta.counts.sha256, "bank loaded");
        }
        Ok(Self {
            config,
            store,
            banks: RwLock::new(Arc::new(set)),
        })
    }

    pub fn banks(&self) -> Arc<BankSet> {
        self.banks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Loads changed banks and swaps them in; returns true when something changed.
    pub fn reload(&self) -> bool {
        let current = self.banks();
        let (set, errors) = BankSet::load(&self.store, Some(&current));
        for e in &errors {
            tracing::error!(error = %e, "bank reload failed; the previous version stays in service");
        }
        if set.versions() == current.versions() {
            return false;
        }
        tracing::info!(banks = ?set.versions(), "banks reloaded");
        *self.banks.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        true
    }

    /// Matches one extract against the banks in service now. CPU-bound (index lookups, vPDQ
    /// comparison): hosts call it off the async executor, through
    /// [`HashmatchStage::match_off_executor`].
    pub fn match_extract(&self, extract: &MediaExtract) -> Signal {
        match_with(&self.banks(), self.config.min_quality, extract)
    }

    /// [`HashmatchStage::match_extract`] on the blocking pool, as every host runs it (Kafka,
    /// gRPC, in process): a large bank never stalls the executor's other work.
    pub async fn match_off_executor(&self, extract: MediaExtract) -> Result<Signal, StageError> {
        let banks = self.banks();
        let min_quality = self.config.min_quality;
        tokio::task::spawn_blocking(move || match_with(&banks, min_quality, &extract))
            .await
            .map_err(clipguard_pipeline::error::join_error)
    }
}

/// Matches one extract against `banks`.
fn match_with(banks: &BankSet, min_quality: u32, extract: &MediaExtract) -> Signal {
    let frames = frames_of(extract);
    let matches = match_clip(
        banks,
        &frames,
        &extract.md5,
        &extract.sha256,
        min_quality,
        extract.frame_hash_max_gap_s,
    );
    if !matches.is_empty() {
        // Names and categories only: never hashes.
        let summary: Vec<String> = matches
            .iter()
            .map(|m| format!("{}:{}:{}", m.bank, m.category, m.kind))
            .collect();
        tracing::warn!(clip_id = %extract.clip_id, matches = ?summary, "hash match");
    }
    signal_for(extract, matches)
}

impl Stage for HashmatchStage {
    type Input = MediaExtract;
    type Output = Vec<Record>;

    fn name(&self) -> &'static str {
        NAME
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn process(
        &self,
        mut input: MediaExtract,
        ctx: &ProcessCtx,
    ) -> Result<Vec<Record>, StageError> {
        if input.clip_id.is_empty() {
            input.clip_id = ctx.clip_id.clone();
        }
        let key = input.clip_id.clone();
        let signal = self.match_off_executor(input).await?;
        Ok(vec![Record::signal(key, &signal)])
    }

    fn start(self: &Arc<Self>, _emitter: Arc<dyn Emitter>) {
        self.keep_reloading();
    }
}

impl HashmatchStage {
    /// Reloads changed banks every `reload_interval_s` for as long as the stage lives (on the
    /// current tokio runtime; without one, never). Its hosts start it; so does the classify
    /// worker, whose input checks match uploads against the same banks.
    pub fn keep_reloading(self: &Arc<Self>) {
        let stage = Arc::downgrade(self);
        let interval = Duration::from_secs_f64(self.config.reload_interval_s);
        // A random first offset within one interval spreads replicas' reloads over time.
        let offset = interval.mul_f64(random_fraction());
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            tokio::time::sleep(offset).await;
            loop {
                let Some(s) = stage.upgrade() else { return };
                let _ = tokio::task::spawn_blocking(move || s.reload()).await;
                tokio::time::sleep(interval).await;
            }
        });
    }
}

/// A fraction in [0, 1) that differs between processes and starts.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    (h.finish() % 10_000) as f64 / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bank::{BankMeta, Contents};

    fn frame(i: u64, hash: PdqHash) -> FrameHash {
        FrameHash {
            frame: i,
            quality: 100,
            hash,
            timestamp_s: i as f64 * 0.5,
        }
    }

    fn hashes(seed: u8, n: usize) -> Vec<PdqHash> {
        (0..n)
            .map(|i| {
                let mut h = [0u8; 32];
                for (k, b) in h.iter_mut().enumerate() {
                    *b = (seed as usize * 131 + i * 37 + k * 11).wrapping_mul(2654435761) as u8;
                }
                PdqHash(h)
            })
            .collect()
    }

    #[test]
    fn frames_match_image_and_video_banks_and_files_match_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = BankStore::new(dir.path());
        let known = hashes(1, 6);
        let mut c = Contents::default();
        c.pdq.push((known[2], "img-1".into()));
        c.videos.push((
            "vid-1".into(),
            known
                .iter()
                .enumerate()
                .map(|(i, h)| frame(i as u64, *h))
                .collect(),
        ));
        c.files
            .insert((FileKind::Sha256, "ab".repeat(32)), "file-1".into());
        store
            .write(&BankMeta::new("cs", "csam", Action::Block), &c)
            .unwrap();
        let cfg = HashmatchConfig {
            banks_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let stage = HashmatchStage::new(cfg).unwrap();

        // The same frames, 3 bits off each: PDQ and vPDQ match, with timestamps.
        let query: Vec<FrameHash> = known
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let mut h = *h;
                h.0[0] ^= 0b111;
                frame(i as u64, h)
            })
            .collect();
        let banks = stage.banks();
        let m = match_clip(&banks, &query, "", &"AB".repeat(32), 50, 0.0);
        let kinds: Vec<&str> = m.iter().map(|m| m.kind.as_str()).collect();
        assert_eq!(kinds, vec!["pdq", "vpdq", "sha256"]);
        assert_eq!(m[0].frame_timestamps_s, vec![1.0]);
        assert_eq!(m[0].distance, 3);
        assert_eq!(m[0].external_ids, vec!["img-1".to_string()]);
        assert_eq!(m[1].target_match_pct, 100.0);
        assert_eq!(m[1].frame_timestamps_s.len(), 6);
        assert_eq!(m[0].action(), Decision::Block);

        // Unrelated frames match nothing; low-quality frames are not matched.
        assert!(
            match_clip(
                &banks,
                &hashes(9, 6)
                    .iter()
                    .enumerate()
                    .map(|(i, h)| frame(i as u64, *h))
                    .collect::<Vec<_>>(),
                "",
                "",
                50,
                0.0
            )
            .is_empty()
        );
        // A sparse query (every other frame, as sparse decoding hashes keyframes) covers half
        // the bank video's frames: no video match when compared densely, a match when the
        // extract says its frames are up to 1 s apart.
        let thin: Vec<FrameHash> = query.iter().step_by(2).copied().collect();
        let video = |gap: f64| {
            match_clip(&banks, &thin, "", "", 50, gap)
                .iter()
                .any(|m| m.kind == "vpdq")
        };
        assert!(!video(0.0));
        assert!(video(1.0));

        let mut dim = query.clone();
        dim.iter_mut().for_each(|f| f.quality = 10);
        assert!(match_clip(&banks, &dim, "", "", 50, 0.0).is_empty());

        let signal = signal_for(&MediaExtract::default(), m);
        assert_eq!(signal.reasons, vec!["hash_match:csam".to_string()]);
        let text = format!("{signal:?}");
        assert!(
            !text.contains(&known[2].to_hex()),
            "no bank hash in the signal"
        );
    }

    #[test]
    fn reload_swaps_changed_banks_and_keeps_the_old_one_when_the_new_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let store = BankStore::new(dir.path());
        let cfg = HashmatchConfig {
            banks_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let stage = HashmatchStage::new(cfg).unwrap();
        assert!(stage.banks().banks.is_empty());
        assert!(!stage.reload());

        let meta = BankMeta::new("b", "ncii", Action::Review);
        let mut c = Contents::default();
        c.pdq.push((hashes(3, 1)[0], String::new()));
        store.write(&meta, &c).unwrap();
        assert!(stage.reload());
        assert_eq!(stage.banks().banks[0].0, 1);

        // Version 2 is damaged on disk: version 1 stays in service.
        c.pdq.push((hashes(4, 1)[0], String::new()));
        store.write(&meta, &c).unwrap();
        std::fs::write(dir.path().join("b/v2/pdq.idx"), b"junk").unwrap();
        assert!(!stage.reload());
        assert_eq!(stage.banks().banks[0].0, 1);
        assert_eq!(stage.banks().banks[0].1.pdq.len(), 1);

        store.remove("b").unwrap();
        assert!(stage.reload());
        assert!(stage.banks().banks.is_empty());
    }
}
