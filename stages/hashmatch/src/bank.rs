//! Hash banks: named lists of known-bad hashes, each with a category and an action.
//!
//! A bank holds PDQ image hashes, vPDQ video hashes and MD5 / SHA-256 file hashes, each with an
//! optional external id (a ThreatExchange indicator id, an NCMEC id, an internal case number).
//! On disk a bank is a folder of immutable versions plus a `CURRENT` file naming the live one:
//!
//! ```text
//! <banks_dir>/<name>/CURRENT            "v7"
//! <banks_dir>/<name>/v7/bank.toml       name, category, action, match settings, counts
//! <banks_dir>/<name>/v7/pdq.idx         the PDQ hashes as a multi-index (instant load)
//! <banks_dir>/<name>/v7/pdq.ids         one external id per PDQ hash, in index order
//! <banks_dir>/<name>/v7/videos.vpdq     `#video <id>` then the reference per-frame lines
//! <banks_dir>/<name>/v7/files.tsv       `md5|sha256 <TAB> hex <TAB> id`
//! ```
//!
//! A new version is written completely into a temporary folder, renamed into place, and only
//! then does `CURRENT` (itself written to a temporary file and renamed) point at it, so a reader
//! sees the old bank or the new one, never half of one. Loading checks every file of the
//! version; a bank that fails is not loaded at all (a running stage keeps the version it had).

use crate::HashmatchError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::index::HashIndex;
use clipguard_pdq::PdqHash;
use clipguard_pdq::vpdq::{self, FrameHash, MatchParams};

/// Categories with a meaning in the default policy; any other lower-case name is a custom one.
pub const KNOWN_CATEGORIES: &[&str] = &clipguard_schemas::names::category::HASH_BANK;

/// What a match in the bank does to the clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Block,
    Review,
}

impl Action {
    pub fn word(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Review => "review",
        }
    }
}

impl std::str::FromStr for Action {
    type Err = HashmatchError;
    fn from_str(s: &str) -> Result<Self, HashmatchError> {
        match s {
            "block" => Ok(Action::Block),
            "review" => Ok(Action::Review),
            other => Err(HashmatchError::Invalid(format!(
                "action `{other}`: expected `block` or `review`"
            ))),
        }
    }
}

/// A bank's settings and counts (`bank.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankMeta {
    pub name: String,
    pub category: String,
    pub action: Action,
    #[serde(default)]
    pub description: String,
    /// PDQ distance at or below which a frame matches an image hash.
    #[serde(default = "default_pdq_distance")]
    pub pdq_distance: u32,
    /// vPDQ comparison settings for the bank's videos.
    #[serde(default = "default_vpdq_distance")]
    pub vpdq_distance: u32,
    #[serde(default = "default_vpdq_quality")]
    pub vpdq_quality: u32,
    #[serde(default)]
    pub vpdq_query_pct: f64,
    #[serde(default = "default_vpdq_target_pct")]
    pub vpdq_target_pct: f64,
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub updated_ms: i64,
    #[serde(default)]
    pub counts: Counts,
}

fn default_pdq_distance() -> u32 {
    31
}
fn default_vpdq_distance() -> u32 {
    MatchParams::default().distance
}
fn default_vpdq_quality() -> u32 {
    MatchParams::default().quality
}
fn default_vpdq_target_pct() -> f64 {
    MatchParams::default().target_pct
}

/// How many entries of each kind a bank holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub pdq: u64,
    pub vpdq_videos: u64,
    pub md5: u64,
    pub sha256: u64,
}

impl BankMeta {
    pub fn new(name: &str, category: &str, action: Action) -> Self {
        Self {
            name: name.to_string(),
            category: category.to_string(),
            action,
            description: String::new(),
            pdq_distance: default_pdq_distance(),
            vpdq_distance: default_vpdq_distance(),
            vpdq_quality: default_vpdq_quality(),
            vpdq_query_pct: 0.0,
            vpdq_target_pct: default_vpdq_target_pct(),
            version: 0,
            updated_ms: 0,
            counts: Counts::default(),
        }
    }

    pub fn vpdq_params(&self) -> MatchParams {
        MatchParams {
            distance: self.vpdq_distance,
            quality: self.vpdq_quality,
            query_pct: self.vpdq_query_pct,
            target_pct: self.vpdq_target_pct,
        }
    }

    /// Every problem with the settings.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = check_name(&self.name) {
            p.push(e.to_string());
        }
        if let Err(e) = check_category(&self.category) {
            p.push(e.to_string());
        }
        if self.pdq_distance > 63 {
            p.push(format!(
                "pdq_distance {} is above 63: unrelated pictures would match",
                self.pdq_distance
            ));
        }
        if self.vpdq_distance > 63 || self.vpdq_quality > 100 {
            p.push("vpdq_distance must be <= 63 and vpdq_quality <= 100".into());
        }
        for (name, v) in [
            ("vpdq_query_pct", self.vpdq_query_pct),
            ("vpdq_target_pct", self.vpdq_target_pct),
        ] {
            if !(0.0..=100.0).contains(&v) {
                p.push(format!("{name} {v} is outside 0..=100"));
            }
        }
        p
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> HashmatchError + '_ {
    move |e| HashmatchError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Bank names: 1–64 of `a-z 0-9 _ -`, starting with a letter or digit (they name folders).
pub fn check_name(name: &str) -> Result<(), HashmatchError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(HashmatchError::Invalid(format!(
            "bank name `{name}`: use 1-64 of a-z, 0-9, _ and -, starting with a letter or digit"
        )))
    }
}

/// Categories: a known one or a custom `a-z 0-9 _` name of up to 40 characters.
pub fn check_category(category: &str) -> Result<(), HashmatchError> {
    let ok = !category.is_empty()
        && category.len() <= 40
        && category
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(HashmatchError::Invalid(format!(
            "category `{category}`: use a-z, 0-9 and _ (known: {})",
            KNOWN_CATEGORIES.join(", ")
        )))
    }
}

/// Exact file digests a bank can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    Md5,
    Sha256,
}

impl FileKind {
    pub fn word(self) -> &'static str {
        match self {
            FileKind::Md5 => "md5",
            FileKind::Sha256 => "sha256",
        }
    }
}

/// A bank's entries.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    pub pdq: Vec<(PdqHash, String)>,
    pub videos: Vec<(String, Vec<FrameHash>)>,
    /// (kind, lower-case hex) → external id.
    pub files: BTreeMap<(FileKind, String), String>,
}

impl Contents {
    /// Adds `other`, skipping entries already present (same hash, same id).
    pub fn merge(&mut self, other: Contents) {
        let seen: HashSet<(PdqHash, String)> = self.pdq.iter().cloned().collect();
        self.pdq
            .extend(other.pdq.into_iter().filter(|e| !seen.contains(e)));
        let ids: HashSet<String> = self.videos.iter().map(|(id, _)| id.clone()).collect();
        for (id, frames) in other.videos {
            if ids.contains(&id) {
                // The same external id again replaces the older hash of that video.
                if let Some(v) = self.videos.iter_mut().find(|(i, _)| *i == id) {
                    v.1 = frames;
                }
            } else {
                self.videos.push((id, frames));
            }
        }
        self.files.extend(other.files);
    }

    pub fn counts(&self) -> Counts {
        Counts {
            pdq: self.pdq.len() as u64,
            vpdq_videos: self.videos.len() as u64,
            md5: file_count(&self.files, FileKind::Md5),
            sha256: file_count(&self.files, FileKind::Sha256),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pdq.is_empty() && self.videos.is_empty() && self.files.is_empty()
    }
}

fn file_count(files: &BTreeMap<(FileKind, String), String>, kind: FileKind) -> u64 {
    files.keys().filter(|(k, _)| *k == kind).count() as u64
}

/// A loaded bank, ready for matching.
#[derive(Debug)]
pub struct Bank {
    pub meta: BankMeta,
    pub pdq: HashIndex,
    pub pdq_ids: Vec<String>,
    pub videos: Vec<(String, Vec<FrameHash>)>,
    /// Every frame of every video at or above the bank's vPDQ quality, to find candidate videos.
    pub video_frames: HashIndex,
    /// Video number of each entry of `video_frames`.
    pub video_of_frame: Vec<u32>,
    pub files: HashMap<(FileKind, String), String>,
}

impl Bank {
    /// The bank's videos (indices into `videos`) that share at least one frame, at or above
    /// the bank's vPDQ quality, within its vPDQ distance of `frames`: the only ones a whole
    /// comparison can match.
    pub fn video_candidates(&self, frames: &[FrameHash]) -> std::collections::BTreeSet<u32> {
        let params = self.meta.vpdq_params();
        let mut candidates = std::collections::BTreeSet::new();
        for f in frames.iter().filter(|f| f.quality >= params.quality) {
            for hit in self.video_frames.search(&f.hash, params.distance) {
                candidates.insert(self.video_of_frame[hit.index as usize]);
            }
        }
        candidates
    }

    /// Assembles a bank read from disk (its settings already checked by `read_meta`): builds
    /// the (small) index of its videos' frames; the PDQ index comes as it was written.
    fn from_parts(
        meta: BankMeta,
        pdq: HashIndex,
        pdq_ids: Vec<String>,
        videos: Vec<(String, Vec<FrameHash>)>,
        files: BTreeMap<(FileKind, String), String>,
    ) -> Result<Self, HashmatchError> {
        let mut frames = Vec::new();
        let mut video_of_frame = Vec::new();
        for (v, (_, fs)) in videos.iter().enumerate() {
            let mut seen = HashSet::new();
            for f in fs {
                if f.quality >= meta.vpdq_quality && seen.insert(f.hash) {
                    frames.push(f.hash);
                    video_of_frame.push(v as u32);
                }
            }
        }
        let video_frames =
            HashIndex::build(&frames).map_err(|e| HashmatchError::Invalid(e.to_string()))?;
        Ok(Self {
            meta,
            pdq,
            pdq_ids,
            videos,
            video_frames,
            video_of_frame,
            files: files.into_iter().collect(),
        })
    }
}

/// The folder of banks.
#[derive(Debug, Clone)]
pub struct BankStore {
    dir: PathBuf,
}

impl BankStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Names of the banks with a live version, sorted.
    pub fn names(&self) -> Result<Vec<String>, HashmatchError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if check_name(&name).is_ok() && entry.path().join("CURRENT").is_file() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The live version of a bank (`None` when the bank does not exist).
    pub fn current(&self, name: &str) -> Result<Option<u64>, HashmatchError> {
        let path = self.dir.join(name).join("CURRENT");
        match std::fs::read_to_string(&path) {
            Ok(s) => s
                .trim()
                .strip_prefix('v')
                .and_then(|v| v.parse().ok())
                .map(Some)
                .ok_or_else(|| HashmatchError::Damaged {
                    bank: name.to_string(),
                    message: format!("CURRENT holds `{}`, expected v<number>", s.trim()),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The settings of the live version.
    pub fn meta(&self, name: &str) -> Result<BankMeta, HashmatchError> {
        let version = self
            .current(name)?
            .ok_or_else(|| HashmatchError::NotFound(name.to_string()))?;
        read_meta(name, &self.version_dir(name, version))
    }

    fn version_dir(&self, name: &str, version: u64) -> PathBuf {
        self.dir.join(name).join(format!("v{version}"))
    }

    /// Loads and checks the live version of a bank.
    pub fn load(&self, name: &str) -> Result<Bank, HashmatchError> {
        let version = self
            .current(name)?
            .ok_or_else(|| HashmatchError::NotFound(name.to_string()))?;
        let dir = self.version_dir(name, version);
        let damaged = |message: String| HashmatchError::Damaged {
            bank: name.to_string(),
            message,
        };
        let meta = read_meta(name, &dir)?;
        let pdq = HashIndex::read(&dir.join("pdq.idx")).map_err(|e| damaged(e.to_string()))?;
        let ids_text = read_text(&dir.join("pdq.ids"))?;
        let pdq_ids: Vec<String> = ids_text.lines().map(str::to_string).collect();
        if pdq_ids.len() != pdq.len() {
            return Err(damaged(format!(
                "pdq.ids has {} ids for {} hashes",
                pdq_ids.len(),
                pdq.len()
            )));
        }
        let videos = parse_videos(&read_text(&dir.join("videos.vpdq"))?)
            .map_err(|e| damaged(format!("videos.vpdq: {e}")))?;
        let mut files = BTreeMap::new();
        for (i, line) in read_text(&dir.join("files.tsv"))?.lines().enumerate() {
            let mut parts = line.splitn(3, '\t');
            let (Some(kind), Some(hex), id) = (parts.next(), parts.next(), parts.next()) else {
                return Err(damaged(format!("files.tsv line {}: malformed", i + 1)));
            };
            let kind = match kind {
                "md5" => FileKind::Md5,
                "sha256" => FileKind::Sha256,
                other => {
                    return Err(damaged(format!(
                        "files.tsv line {}: unknown kind `{other}`",
                        i + 1
                    )));
                }
            };
            files.insert((kind, hex.to_string()), id.unwrap_or("").to_string());
        }
        let counts = Counts {
            pdq: pdq.len() as u64,
            vpdq_videos: videos.len() as u64,
            md5: file_count(&files, FileKind::Md5),
            sha256: file_count(&files, FileKind::Sha256),
        };
        if counts != meta.counts {
            return Err(damaged(format!(
                "counts {counts:?} differ from bank.toml's {:?}",
                meta.counts
            )));
        }
        Bank::from_parts(meta, pdq, pdq_ids, videos, files)
    }

    /// The entries of the live version (empty when the bank does not exist).
    pub fn contents(&self, name: &str) -> Result<Contents, HashmatchError> {
        if self.current(name)?.is_none() {
            return Ok(Contents::default());
        }
        let bank = self.load(name)?;
        let pdq = (0..bank.pdq.len() as u32)
            .map(|i| (bank.pdq.hash(i), bank.pdq_ids[i as usize].clone()))
            .collect();
        Ok(Contents {
            pdq,
            videos: bank.videos,
            files: bank.files.into_iter().collect(),
        })
    }

    /// Writes a new version of a bank and makes it live. Returns the version written.
    pub fn write(&self, meta: &BankMeta, contents: &Contents) -> Result<u64, HashmatchError> {
        let problems = meta.problems();
        if !problems.is_empty() {
            return Err(HashmatchError::Invalid(problems.join("; ")));
        }
        let bank_dir = self.dir.join(&meta.name);
        std::fs::create_dir_all(&bank_dir).map_err(io_err(&bank_dir))?;
        let version = self.current(&meta.name)?.unwrap_or(0) + 1;
        let mut meta = meta.clone();
        meta.version = version;
        meta.updated_ms = now_ms();
        meta.counts = contents.counts();

        let tmp = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempdir_in(&bank_dir)
            .map_err(io_err(&bank_dir))?;
        let t = tmp.path();
        let hashes: Vec<PdqHash> = contents.pdq.iter().map(|(h, _)| *h).collect();
        HashIndex::build(&hashes)
            .and_then(|index| index.write(&t.join("pdq.idx")))
            .map_err(|e| HashmatchError::Invalid(e.to_string()))?;
        let mut ids = String::new();
        for (_, id) in &contents.pdq {
            ids.push_str(&clean_id(id));
            ids.push('\n');
        }
        write_file(&t.join("pdq.ids"), ids.as_bytes())?;
        let mut videos = String::new();
        for (id, frames) in &contents.videos {
            let _ = writeln!(videos, "#video {}", clean_id(id));
            videos.push_str(&vpdq::format(frames));
        }
        write_file(&t.join("videos.vpdq"), videos.as_bytes())?;
        let mut files = String::new();
        for ((kind, hex), id) in &contents.files {
            let _ = writeln!(files, "{}\t{hex}\t{}", kind.word(), clean_id(id));
        }
        write_file(&t.join("files.tsv"), files.as_bytes())?;
        let toml = toml::to_string(&meta).map_err(|e| HashmatchError::Invalid(e.to_string()))?;
        write_file(&t.join("bank.toml"), toml.as_bytes())?;

        let final_dir = self.version_dir(&meta.name, version);
        let kept = tmp.keep();
        std::fs::rename(&kept, &final_dir).map_err(io_err(&final_dir))?;
        let current = bank_dir.join("CURRENT");
        let mut tmp_current =
            tempfile::NamedTempFile::new_in(&bank_dir).map_err(io_err(&bank_dir))?;
        std::io::Write::write_all(&mut tmp_current, format!("v{version}\n").as_bytes())
            .map_err(io_err(&current))?;
        tmp_current.as_file().sync_all().map_err(io_err(&current))?;
        tmp_current
            .persist(&current)
            .map_err(|e| io_err(&current)(e.error))?;
        // Keep the previous version for readers still opening it; older ones go (found by
        // listing the folder: a bank written often must not pay per version it ever had).
        if let Ok(entries) = std::fs::read_dir(&bank_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if let Some(v) = name.strip_prefix('v').and_then(|v| v.parse::<u64>().ok())
                    && v + 1 < version
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(version)
    }

    /// Removes a bank: first its `CURRENT` (so no reader loads it any more), then its files.
    pub fn remove(&self, name: &str) -> Result<(), HashmatchError> {
        check_name(name)?;
        let bank_dir = self.dir.join(name);
        let current = bank_dir.join("CURRENT");
        if !current.is_file() {
            return Err(HashmatchError::NotFound(name.to_string()));
        }
        std::fs::remove_file(&current).map_err(io_err(&current))?;
        std::fs::remove_dir_all(&bank_dir).map_err(io_err(&bank_dir))?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// External ids live one per line: no line breaks or tabs inside.
fn clean_id(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), HashmatchError> {
    std::fs::write(path, bytes).map_err(io_err(path))
}

fn read_text(path: &Path) -> Result<String, HashmatchError> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

fn read_meta(name: &str, dir: &Path) -> Result<BankMeta, HashmatchError> {
    let path = dir.join("bank.toml");
    let meta: BankMeta =
        toml::from_str(&read_text(&path)?).map_err(|e| HashmatchError::Damaged {
            bank: name.to_string(),
            message: format!("bank.toml: {e}"),
        })?;
    let problems = meta.problems();
    if !problems.is_empty() || meta.name != name {
        return Err(HashmatchError::Damaged {
            bank: name.to_string(),
            message: format!("bank.toml: {}", problems.join("; ")),
        });
    }
    Ok(meta)
}

fn parse_videos(text: &str) -> Result<Vec<(String, Vec<FrameHash>)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(id) = line.strip_prefix("#video ") {
            out.push((id.to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        } else if !line.trim().is_empty() {
            return Err("frame lines before the first `#video` line".into());
        }
    }
    out.into_iter()
        .map(|(id, body)| {
            vpdq::parse(&body)
                .map(|frames| (id.clone(), frames))
                .map_err(|e| format!("video `{id}`: {}", e[0]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> PdqHash {
        PdqHash([b; 32])
    }

    fn sample() -> Contents {
        let mut c = Contents::default();
        c.pdq.push((h(1), "te-1".into()));
        c.pdq.push((h(2), String::new()));
        c.videos.push((
            "vid-9".into(),
            vec![FrameHash {
                frame: 0,
                quality: 90,
                hash: h(3),
                timestamp_s: 0.0,
            }],
        ));
        c.files
            .insert((FileKind::Md5, "0".repeat(32)), "case 12".into());
        c
    }

    #[test]
    fn versions_are_written_whole_and_loaded_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BankStore::new(dir.path());
        let meta = BankMeta::new("known-bad", "csam", Action::Block);
        assert_eq!(store.write(&meta, &sample()).unwrap(), 1);
        let bank = store.load("known-bad").unwrap();
        assert_eq!(bank.pdq.len(), 2);
        assert_eq!(bank.pdq_ids, vec!["te-1".to_string(), String::new()]);
        assert_eq!(bank.videos.len(), 1);
        assert_eq!(bank.meta.counts.md5, 1);
        assert_eq!(store.names().unwrap(), vec!["known-bad".to_string()]);

        // A second and third version; the first is collected, the previous kept.
        let mut more = store.contents("known-bad").unwrap();
        more.merge(sample());
        assert_eq!(more.pdq.len(), 2, "merging the same entries adds nothing");
        store.write(&meta, &more).unwrap();
        store.write(&meta, &more).unwrap();
        assert_eq!(store.current("known-bad").unwrap(), Some(3));
        assert!(!dir.path().join("known-bad/v1").exists());
        assert!(dir.path().join("known-bad/v2").exists());

        store.remove("known-bad").unwrap();
        assert!(store.names().unwrap().is_empty());
        assert!(matches!(
            store.load("known-bad"),
            Err(HashmatchError::NotFound(_))
        ));
    }

    #[test]
    fn a_damaged_version_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = BankStore::new(dir.path());
        store
            .write(&BankMeta::new("b", "ncii", Action::Review), &sample())
            .unwrap();
        let ids = dir.path().join("b/v1/pdq.ids");
        std::fs::write(&ids, "only-one\n").unwrap();
        let e = store.load("b").unwrap_err().to_string();
        assert!(e.contains("pdq.ids has 1 ids for 2 hashes"), "{e}");
        std::fs::write(dir.path().join("b/v1/bank.toml"), "name = 3").unwrap();
        let e = store.load("b").unwrap_err().to_string();
        assert!(e.contains("bank.toml"), "{e}");
    }

    #[test]
    fn names_and_categories_are_checked() {
        assert!(check_name("../etc").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("hma-bank_2").is_ok());
        assert!(check_category("CSAM").is_err());
        assert!(check_category("my_custom").is_ok());
        let mut meta = BankMeta::new("x", "csam", Action::Block);
        meta.pdq_distance = 100;
        assert_eq!(meta.problems().len(), 1);
        assert!("allow".parse::<Action>().is_err());
    }
}
