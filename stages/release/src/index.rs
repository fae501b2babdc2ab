//! The "made by us" index: the vPDQ of every clip that received an `allow` verdict, kept as the
//! video entries of one hash bank, `internal_generated`, in its own folder (never among the
//! hashmatch stage's banks: a match there is not a finding). It uses the bank machinery as it
//! is: each change is a new immutable version made live by `CURRENT`, so a lookup reads the old
//! index or the new one, never half of one.
//!
//! Writes are grouped: every clip added (or removed, when a later verdict revision no longer
//! allows it) while a version is being written goes into the next one, so a busy stage writes
//! one version per batch, not one per clip. Replicas sharing the folder take a file lock around
//! read-merge-write, so none loses another's entries. Growth is bounded: entries older than
//! the retention period go, and past `max_clips` the oldest go first. Each entry's id is
//! `<clip id>@<allowed at, ms>`.

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

/// One change waiting for the next version.
#[derive(Debug, Clone)]
enum Change {
    Add {
        clip_id: String,
        allowed_at_ms: i64,
        frames: Vec<FrameHash>,
    },
    Remove {
        clip_id: String,
    },
}

#[derive(Debug, Default)]
struct Pending {
    changes: Vec<(u64, Change)>,
    next: u64,
    /// Every change numbered below this is in a live version.
    written_below: u64,
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

fn id_of(clip_id: &str, allowed_at_ms: i64) -> String {
    format!("{clip_id}@{allowed_at_ms}")
}

fn parse_id(id: &str) -> (String, i64) {
    match id.rsplit_once('@') {
        Some((clip, ms)) => (clip.to_string(), ms.parse().unwrap_or(0)),
        None => (id.to_string(), 0),
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

    /// Adds a clip allowed at `allowed_at_ms`; resolves once a live version holds it.
    pub async fn add(
        &self,
        clip_id: &str,
        allowed_at_ms: i64,
        frames: Vec<FrameHash>,
    ) -> Result<(), ReleaseError> {
        self.change(Change::Add {
            clip_id: clip_id.to_string(),
            allowed_at_ms,
            frames,
        })
        .await
    }

    /// Removes a clip (a later verdict no longer allows it); resolves once a live version no
    /// longer holds it.
    pub async fn remove(&self, clip_id: &str) -> Result<(), ReleaseError> {
        self.change(Change::Remove {
            clip_id: clip_id.to_string(),
        })
        .await
    }

    async fn change(&self, change: Change) -> Result<(), ReleaseError> {
        let seq = {
            let mut p = self.pending.lock().map_err(poisoned)?;
            let seq = p.next;
            p.next += 1;
            p.changes.push((seq, change));
            seq
        };
        let _writer = self.writing.lock().await;
        let batch: Vec<(u64, Change)> = {
            let mut p = self.pending.lock().map_err(poisoned)?;
            if p.written_below > seq {
                // A writer before us took this change into its version.
                return Ok(());
            }
            std::mem::take(&mut p.changes)
        };
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
        .map_err(|e| ReleaseError::Index(format!("index writer: {e}")))?;
        let mut p = self.pending.lock().map_err(poisoned)?;
        match written {
            Ok(()) => {
                let top = batch.iter().map(|(s, _)| *s).max().unwrap_or(seq);
                p.written_below = p.written_below.max(top + 1);
                Ok(())
            }
            Err(e) => {
                // Back in line for the next writer (or this clip's retry).
                let mut rest = std::mem::take(&mut p.changes);
                p.changes = batch;
                p.changes.append(&mut rest);
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

    /// Clips the index holds and the live version (0, 0 when nothing was ever indexed).
    pub fn stats(&self) -> Result<(u64, u64), ReleaseError> {
        Ok(match self.bank()? {
            Some(b) => (b.videos.len() as u64, b.meta.version),
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
                    let (clip_id, allowed_at_ms) = parse_id(id);
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

/// Under the folder's lock: the live entries, the changes applied, retention, a new version.
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
        let clip = match change {
            Change::Add { clip_id, .. } | Change::Remove { clip_id } => clip_id,
        };
        contents.videos.retain(|(id, _)| parse_id(id).0 != *clip);
        if let Change::Add {
            clip_id,
            allowed_at_ms,
            frames,
        } = change
        {
            contents
                .videos
                .push((id_of(clip_id, *allowed_at_ms), frames.clone()));
        }
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

/// The clip ids a list of entries names (for tests and `stats`).
pub fn clip_ids(bank: &Bank) -> BTreeSet<String> {
    bank.videos.iter().map(|(id, _)| parse_id(id).0).collect()
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
        let index = Index::open(dir.path(), 3, 365.0).unwrap();
        assert_eq!(index.stats().unwrap(), (0, 0));
        assert!(index.lookup(&frames(1, 8)).unwrap().is_empty());
        let now = clipguard_pipeline::now_ms();
        // Concurrent adds: every one lands, in fewer versions than clips when they overlap.
        let adds = (1..=3u8).map(|i| {
            let index = &index;
            async move {
                index
                    .add(&format!("clip-{i}"), now + i as i64, frames(i, 8))
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
        index.add("clip-4", now + 4, frames(4, 8)).await.unwrap();
        index.remove("clip-3").await.unwrap();
        let bank = index.bank().unwrap().unwrap();
        let ids: Vec<String> = clip_ids(&bank).into_iter().collect();
        assert_eq!(ids, ["clip-2", "clip-4"]);
        // Entries past the retention period go at the next write.
        let short = Index::open(dir.path(), 10, 1.0).unwrap();
        short
            .add("clip-old", now - 2 * 86_400_000, frames(5, 8))
            .await
            .unwrap();
        let bank = short.bank().unwrap().unwrap();
        let ids: Vec<String> = clip_ids(&bank).into_iter().collect();
        assert_eq!(ids, ["clip-2", "clip-4"]);
    }
}
