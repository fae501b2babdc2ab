//! The "made by us" index: the vPDQ of every clip that received an `allow` verdict, kept as the
//! video entries of one hash bank, `internal_generated`, in its own folder (never among the
//! hashmatch stage's banks: a match there is not a finding). It uses the bank machinery as it
//! is: each change is a new immutable version made live by `CURRENT`, so a lookup reads the old
//! index or the new one, never half of one.
//!
//! Writes are grouped: every clip added (or removed, when a later verdict revision no longer
//! allows it) while a version is being written goes into the next one, so a busy stage writes
//! one version per batch, not one per clip. The write runs in a task of its own, so a caller
//! that gives up (an attempt's timeout, a drain) never leaves a batch half-accounted. Replicas
//! sharing the folder take a file lock around read-merge-write, so none loses another's
//! entries. Each entry records the verdict revision it came from and a removal leaves a
//! tombstone (an entry without frames), so verdicts applied out of order (concurrent attempts,
//! retries) end as the highest revision says. Growth is bounded: entries older than the
//! retention period go, and past `max_clips` the oldest go first. Each entry's id is
//! `<clip id>@<decided at, ms>@r<revision>` (a clip id with characters outside
//! `[A-Za-z0-9._:-]` is written as `hex:<its bytes in hex>`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clipguard_hashmatch::bank::{Action, Bank, BankMeta, BankStore, Contents};
use clipguard_pdq::vpdq::{self, FrameHash};

use crate::ReleaseError;

/// The bank's name (and category).
pub const BANK: &str = "internal_generated";

/// A clip the looked-up video matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub clip_id: String,
    pub allowed_at_ms: i64,
    pub query_match_pct: f64,
    pub target_match_pct: f64,
}

/// One change waiting for the next version: a clip's frames (added) or none (removed), from
/// the verdict revision decided at `at_ms`.
#[derive(Debug, Clone)]
struct Change {
    clip_id: String,
    revision: u32,
    at_ms: i64,
    frames: Option<Vec<FrameHash>>,
}

#[derive(Debug, Default)]
struct Pending {
    changes: Vec<(u64, Change)>,
    next: u64,
    /// Every change numbered below this is in a live version (or was superseded by a later
    /// change of its clip that is).
    written_below: u64,
}

impl Pending {
    /// Queues `c`, dropping a queued change of the same clip from an older revision.
    fn push(&mut self, seq: u64, c: Change) {
        let older = self
            .changes
            .iter()
            .position(|(_, q)| q.clip_id == c.clip_id && q.revision <= c.revision);
        if self
            .changes
            .iter()
            .any(|(_, q)| q.clip_id == c.clip_id && q.revision > c.revision)
        {
            return;
        }
        if let Some(i) = older {
            self.changes.remove(i);
        }
        self.changes.push((seq, c));
    }
}

/// The index in a folder.
#[derive(Debug)]
pub struct Index {
    store: BankStore,
    max_clips: usize,
    retention_ms: i64,
    pending: Mutex<Pending>,
    writing: tokio::sync::Mutex<()>,
    loaded: Mutex<Option<(u64, Arc<Bank>)>>,
}

const SAFE: fn(char) -> bool = |c| c.is_ascii_alphanumeric() || "._:-".contains(c);

fn encode_clip(clip_id: &str) -> String {
    if !clip_id.is_empty() && clip_id.chars().all(SAFE) && !clip_id.starts_with("hex:") {
        clip_id.to_string()
    } else {
        format!(
            "hex:{}",
            clip_id
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    }
}

fn decode_clip(s: &str) -> String {
    match s.strip_prefix("hex:") {
        Some(hex) => {
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        None => s.to_string(),
    }
}

fn id_of(clip_id: &str, at_ms: i64, revision: u32) -> String {
    format!("{}@{at_ms}@r{revision}", encode_clip(clip_id))
}

/// (clip id, decided at, revision) of an entry id.
fn parse_id(id: &str) -> (String, i64, u32) {
    let mut parts = id.rsplitn(3, '@');
    let (rev, at, clip) = (parts.next(), parts.next(), parts.next());
    match (clip, at, rev.and_then(|r| r.strip_prefix('r'))) {
        (Some(clip), Some(at), Some(rev)) => (
            decode_clip(clip),
            at.parse().unwrap_or(0),
            rev.parse().unwrap_or(0),
        ),
        _ => (decode_clip(id), 0, 0),
    }
}

impl Index {
    /// The index in `dir` (created when missing), keeping at most `max_clips` clips for at
    /// most `retention_days`.
    pub fn open(dir: &Path, max_clips: usize, retention_days: f64) -> Result<Self, ReleaseError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            ReleaseError::Config(format!("release.index_dir {}: {e}", dir.display()))
        })?;
        Ok(Self {
            store: BankStore::new(dir),
            max_clips,
            retention_ms: (retention_days * 86_400_000.0) as i64,
            pending: Mutex::default(),
            writing: tokio::sync::Mutex::new(()),
            loaded: Mutex::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    /// Adds a clip its verdict revision `revision` (decided at `at_ms`) allows; resolves once a
    /// live version holds it (or a later revision of the clip).
    pub async fn add(
        self: &Arc<Self>,
        clip_id: &str,
        revision: u32,
        at_ms: i64,
        frames: Vec<FrameHash>,
    ) -> Result<(), ReleaseError> {
        self.change(Change {
            clip_id: clip_id.to_string(),
            revision,
            at_ms,
            frames: Some(frames),
        })
        .await
    }

    /// Removes a clip its verdict revision `revision` no longer allows; resolves once a live
    /// version holds the removal.
    pub async fn remove(
        self: &Arc<Self>,
        clip_id: &str,
        revision: u32,
        at_ms: i64,
    ) -> Result<(), ReleaseError> {
        self.change(Change {
            clip_id: clip_id.to_string(),
            revision,
            at_ms,
            frames: None,
        })
        .await
    }

    async fn change(self: &Arc<Self>, change: Change) -> Result<(), ReleaseError> {
        let seq = {
            let mut p = self.pending.lock().map_err(poisoned)?;
            let seq = p.next;
            p.next += 1;
            p.push(seq, change);
            seq
        };
        // Detached: a caller that stops waiting does not stop the write or its accounting.
        let index = self.clone();
        tokio::spawn(async move { index.flush(seq).await })
            .await
            .map_err(|e| ReleaseError::Index(format!("index writer: {e}")))?
    }

    /// Writes everything pending unless change `seq` is already live.
    async fn flush(&self, seq: u64) -> Result<(), ReleaseError> {
        let _writer = self.writing.lock().await;
        let batch: Vec<(u64, Change)> = {
            let mut p = self.pending.lock().map_err(poisoned)?;
            if p.written_below > seq {
                return Ok(());
            }
            std::mem::take(&mut p.changes)
        };
        let top = batch.iter().map(|(s, _)| *s).max();
        let store = self.store.clone();
        let (max_clips, retention_ms) = (self.max_clips, self.retention_ms);
        let changes: Vec<Change> = batch.iter().map(|(_, c)| c.clone()).collect();
        let written = tokio::task::spawn_blocking(move || {
            write(
                &store,
                &changes,
                max_clips,
                retention_ms,
                clipguard_pipeline::now_ms(),
            )
        })
        .await
        .unwrap_or_else(|e| Err(ReleaseError::Index(format!("index writer: {e}"))));
        let mut p = self.pending.lock().map_err(poisoned)?;
        match (written, top) {
            (Ok(()), Some(top)) => {
                p.written_below = p.written_below.max(top + 1);
                Ok(())
            }
            // Nothing pending and `seq` not live: it was superseded by a change still queued
            // behind a failed write; this caller's retry will find it again.
            (Ok(()), None) => Err(ReleaseError::Index(
                "the change is waiting behind a failed write".into(),
            )),
            (Err(e), _) => {
                // Back in line for the next writer (or this clip's retry), newer changes first.
                for (s, c) in batch {
                    p.push(s, c);
                }
                Err(e)
            }
        }
    }

    /// The live version, loaded once per version.
    fn bank(&self) -> Result<Option<Arc<Bank>>, ReleaseError> {
        let Some(version) = self.store.current(BANK).map_err(index_err)? else {
            return Ok(None);
        };
        let mut loaded = self.loaded.lock().map_err(poisoned)?;
        if let Some((v, bank)) = loaded.as_ref()
            && *v == version
        {
            return Ok(Some(bank.clone()));
        }
        let bank = Arc::new(self.store.load(BANK).map_err(index_err)?);
        *loaded = Some((version, bank.clone()));
        Ok(Some(bank))
    }

    /// Clips the index holds (removals not counted) and the live version (0, 0 when nothing
    /// was ever indexed).
    pub fn stats(&self) -> Result<(u64, u64), ReleaseError> {
        Ok(match self.bank()? {
            Some(b) => (
                b.videos.iter().filter(|(_, f)| !f.is_empty()).count() as u64,
                b.meta.version,
            ),
            None => (0, 0),
        })
    }

    /// Clips whose vPDQ `frames` match, best first (by the match percentage of the indexed
    /// clip, then of the query).
    pub fn lookup(&self, frames: &[FrameHash]) -> Result<Vec<Found>, ReleaseError> {
        let Some(bank) = self.bank()? else {
            return Ok(Vec::new());
        };
        let params = bank.meta.vpdq_params();
        let mut found: Vec<Found> = bank
            .video_candidates(frames)
            .into_iter()
            .filter_map(|v| {
                let (id, target) = &bank.videos[v as usize];
                let r = vpdq::compare(frames, target, &params);
                r.is_match.then(|| {
                    let (clip_id, allowed_at_ms, _) = parse_id(id);
                    Found {
                        clip_id,
                        allowed_at_ms,
                        query_match_pct: r.query_match_pct,
                        target_match_pct: r.target_match_pct,
                    }
                })
            })
            .collect();
        found.sort_by(|a, b| {
            b.target_match_pct
                .total_cmp(&a.target_match_pct)
                .then(b.query_match_pct.total_cmp(&a.query_match_pct))
        });
        Ok(found)
    }
}

fn poisoned<T>(_: T) -> ReleaseError {
    ReleaseError::Index("a lock was poisoned".into())
}

fn index_err(e: clipguard_hashmatch::HashmatchError) -> ReleaseError {
    ReleaseError::Index(e.to_string())
}

/// Under the folder's lock: the live entries, the changes applied (an entry from a higher
/// revision stays), retention, a new version.
fn write(
    store: &BankStore,
    changes: &[Change],
    max_clips: usize,
    retention_ms: i64,
    now_ms: i64,
) -> Result<(), ReleaseError> {
    let lock_path: PathBuf = store.dir().join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| ReleaseError::Index(format!("{}: {e}", lock_path.display())))?;
    lock.lock()
        .map_err(|e| ReleaseError::Index(format!("lock {}: {e}", lock_path.display())))?;
    let mut contents = store.contents(BANK).map_err(index_err)?;
    for change in changes {
        let existing = contents
            .videos
            .iter()
            .position(|(id, _)| parse_id(id).0 == change.clip_id);
        if let Some(i) = existing {
            if parse_id(&contents.videos[i].0).2 > change.revision {
                continue;
            }
            contents.videos.remove(i);
        }
        contents.videos.push((
            id_of(&change.clip_id, change.at_ms, change.revision),
            change.frames.clone().unwrap_or_default(),
        ));
    }
    let oldest = now_ms.saturating_sub(retention_ms);
    contents.videos.retain(|(id, _)| parse_id(id).1 >= oldest);
    contents.videos.sort_by_key(|(id, _)| parse_id(id).1);
    if contents.videos.len() > max_clips {
        let over = contents.videos.len() - max_clips;
        contents.videos.drain(..over);
    }
    let mut meta = BankMeta::new(BANK, BANK, Action::Review);
    meta.description =
        "vPDQ of clips generated and allowed here (the release stage's \"made by us\" index)"
            .into();
    store
        .write(
            &meta,
            &Contents {
                videos: contents.videos,
                ..Contents::default()
            },
        )
        .map_err(index_err)?;
    drop(lock);
    Ok(())
}

/// The clips a bank holds (removals not counted).
pub fn clip_ids(bank: &Bank) -> BTreeSet<String> {
    bank.videos
        .iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(id, _)| parse_id(id).0)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clipguard_pdq::PdqHash;

    fn frames(seed: u8, n: usize) -> Vec<FrameHash> {
        (0..n)
            .map(|i| {
                let mut bytes = [0u8; 32];
                for (j, b) in bytes.iter_mut().enumerate() {
                    *b = seed
                        .wrapping_mul(31)
                        .wrapping_add((i * 7 + j * 13) as u8)
                        .rotate_left((j % 8) as u32);
                }
                FrameHash {
                    frame: i as u64,
                    hash: PdqHash(bytes),
                    quality: 100,
                    timestamp_s: i as f64,
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn clips_are_added_found_removed_and_the_oldest_go_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(Index::open(dir.path(), 3, 365.0).unwrap());
        assert_eq!(index.stats().unwrap(), (0, 0));
        assert!(index.lookup(&frames(1, 8)).unwrap().is_empty());
        let now = clipguard_pipeline::now_ms();
        // Concurrent adds: every one lands, in fewer versions than clips when they overlap.
        let adds = (1..=3u8).map(|i| {
            let index = &index;
            async move {
                index
                    .add(&format!("clip-{i}"), 0, now + i as i64, frames(i, 8))
                    .await
            }
        });
        for r in futures::future::join_all(adds).await {
            r.unwrap();
        }
        let (clips, version) = index.stats().unwrap();
        assert_eq!(clips, 3);
        assert!((1..=3).contains(&version), "{version}");
        let found = index.lookup(&frames(2, 8)).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].clip_id, "clip-2");
        assert_eq!(found[0].allowed_at_ms, now + 2);
        assert!(found[0].target_match_pct > 99.0);
        // A fourth clip pushes the oldest out; a removal takes one away.
        index.add("clip-4", 0, now + 4, frames(4, 8)).await.unwrap();
        index.remove("clip-3", 1, now + 5).await.unwrap();
        let bank = index.bank().unwrap().unwrap();
        let ids: Vec<String> = clip_ids(&bank).into_iter().collect();
        assert_eq!(ids, ["clip-2", "clip-4"]);
        assert_eq!(index.stats().unwrap().0, 2);
        // Revisions applied out of order end as the highest says: the late add of revision 0
        // does not bring back a clip revision 1 removed.
        index.add("clip-3", 0, now + 3, frames(3, 8)).await.unwrap();
        assert!(index.lookup(&frames(3, 8)).unwrap().is_empty());
        // Any clip id survives the round trip through the bank's files.
        let odd = "gen/7 \u{1b}[31m@r9";
        index.add(odd, 2, now + 6, frames(6, 8)).await.unwrap();
        assert_eq!(index.lookup(&frames(6, 8)).unwrap()[0].clip_id, odd);
        // Entries past the retention period go at the next write.
        let short = Arc::new(Index::open(dir.path(), 10, 1.0).unwrap());
        short
            .add("clip-old", 0, now - 2 * 86_400_000, frames(5, 8))
            .await
            .unwrap();
        let bank = short.bank().unwrap().unwrap();
        let ids: Vec<String> = clip_ids(&bank).into_iter().collect();
        assert!(!ids.contains(&"clip-old".to_string()), "{ids:?}");
        assert!(ids.contains(&"clip-4".to_string()), "{ids:?}");
    }
}
