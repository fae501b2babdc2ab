//! Reading hash lists in the formats HMA and ThreatExchange exchange.
//!
//! - **Hash lists**, CSV or TSV (the delimiter is taken from each line: a tab wins): one hash per
//!   line, optionally with an id and tags. With a header row, the columns are found by name:
//!   the hash in `hash`, `signal`, `signal_value`, `value`, `indicator`, `pdq`, `md5` or
//!   `sha256`; the id in `id`, `external_id`, `content_id`, `indicator_id` or `hash_id`; the
//!   type in `type`, `signal_type`, `hash_type`, `indicator_type` or `kind` (values such as
//!   `pdq`, `HASH_PDQ`, `md5`, `video_md5`, `sha256`). Without a header: `hash[,id[,…]]`.
//!   The kind of a hash comes from its type column, else from a column named after a kind,
//!   else from its length: 32 hex digits are MD5, 64 are the `default_kind` given (PDQ unless
//!   told SHA-256: the two are both 64 hex digits).
//! - **vPDQ files**: the reference per-frame text format, one video per file.
//!
//! Malformed lines are reported with file and line and skipped; the rest is imported.
//! [`import_files`] turns files into a new bank version (`clipguard bank import`).

use std::path::Path;

use clipguard_pdq::PdqHash;
use clipguard_pdq::vpdq::{self, FrameHash};

use crate::HashmatchError;
use crate::bank::{Action, BankMeta, BankStore, Contents, Counts, FileKind, check_name};

/// What a 64-hex-digit hash without a stated type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultKind {
    Pdq,
    Sha256,
}

/// One skipped line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pdq,
    File(FileKind),
}

fn kind_from_word(word: &str) -> Result<Option<Kind>, String> {
    let w = word.trim().to_ascii_lowercase().replace('-', "_");
    if w.is_empty() {
        return Ok(None);
    }
    if w.contains("vpdq") || w.contains("tmk") {
        return Err(format!(
            "type `{word}`: video hashes are imported from per-frame vPDQ files (--format vpdq)"
        ));
    }
    if w.contains("pdq") {
        Ok(Some(Kind::Pdq))
    } else if w.contains("sha256") {
        Ok(Some(Kind::File(FileKind::Sha256)))
    } else if w.contains("md5") {
        Ok(Some(Kind::File(FileKind::Md5)))
    } else {
        Err(format!("type `{word}` is not pdq, md5 or sha256"))
    }
}

const HASH_COLUMNS: &[&str] = &[
    "hash",
    "signal",
    "signal_value",
    "value",
    "indicator",
    "pdq",
    "md5",
    "sha256",
];
const ID_COLUMNS: &[&str] = &["id", "external_id", "content_id", "indicator_id", "hash_id"];
const TYPE_COLUMNS: &[&str] = &["type", "signal_type", "hash_type", "indicator_type", "kind"];

fn split(line: &str) -> Vec<&str> {
    let delim = if line.contains('\t') { '\t' } else { ',' };
    line.split(delim)
        .map(|f| f.trim().trim_matches('"'))
        .collect()
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit())
}

struct Columns {
    hash: usize,
    id: Option<usize>,
    kind: Option<usize>,
    /// The hash column's own name states the kind (`pdq`, `md5`, `sha256`).
    named_kind: Option<Kind>,
}

/// Parses a CSV/TSV hash list into `into`; returns the skipped lines.
pub fn hash_list(
    file: &str,
    text: &str,
    default_kind: DefaultKind,
    into: &mut Contents,
) -> Vec<Skipped> {
    let mut skipped = Vec::new();
    let mut columns: Option<Columns> = None;
    let mut first = true;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split(line);
        let skip = |message: String| Skipped {
            file: file.to_string(),
            line: i + 1,
            message,
        };
        if first {
            first = false;
            if !is_hex(fields[0]) {
                let lower: Vec<String> = fields.iter().map(|f| f.to_ascii_lowercase()).collect();
                let find = |names: &[&str]| lower.iter().position(|c| names.contains(&c.as_str()));
                let Some(hash) = find(HASH_COLUMNS) else {
                    skipped.push(skip(format!(
                        "header names no hash column (one of {})",
                        HASH_COLUMNS.join(", ")
                    )));
                    return skipped;
                };
                columns = Some(Columns {
                    hash,
                    id: find(ID_COLUMNS),
                    kind: find(TYPE_COLUMNS),
                    named_kind: kind_from_word(&lower[hash]).ok().flatten(),
                });
                continue;
            }
        }
        let cols = columns.as_ref();
        let hash_at = cols.map_or(0, |c| c.hash);
        let Some(hash) = fields.get(hash_at).copied() else {
            skipped.push(skip(format!("no field {} (the hash)", hash_at + 1)));
            continue;
        };
        let id = match cols {
            Some(c) => c.id.and_then(|i| fields.get(i)).copied().unwrap_or(""),
            None => fields.get(1).copied().unwrap_or(""),
        };
        let stated = match cols.and_then(|c| c.kind).and_then(|k| fields.get(k)) {
            Some(word) => match kind_from_word(word) {
                Ok(k) => k,
                Err(e) => {
                    skipped.push(skip(e));
                    continue;
                }
            },
            None => None,
        }
        .or(cols.and_then(|c| c.named_kind));
        let hash = hash.to_ascii_lowercase();
        if !is_hex(&hash) {
            skipped.push(skip(format!("`{}` is not a hex hash", truncate(&hash))));
            continue;
        }
        let kind = match (stated, hash.len()) {
            (Some(k), _) => k,
            (None, 32) => Kind::File(FileKind::Md5),
            (None, 64) => match default_kind {
                DefaultKind::Pdq => Kind::Pdq,
                DefaultKind::Sha256 => Kind::File(FileKind::Sha256),
            },
            (None, n) => {
                skipped.push(skip(format!(
                    "a hash of {n} hex digits is none of PDQ (64), MD5 (32), SHA-256 (64)"
                )));
                continue;
            }
        };
        let want = match kind {
            Kind::Pdq | Kind::File(FileKind::Sha256) => 64,
            Kind::File(FileKind::Md5) => 32,
        };
        if hash.len() != want {
            skipped.push(skip(format!(
                "a {} hash has {want} hex digits, this one {}",
                match kind {
                    Kind::Pdq => "PDQ",
                    Kind::File(k) => k.word(),
                },
                hash.len()
            )));
            continue;
        }
        match kind {
            Kind::Pdq => match hash.parse::<PdqHash>() {
                Ok(h) => into.pdq.push((h, id.to_string())),
                Err(e) => skipped.push(skip(e.to_string())),
            },
            Kind::File(k) => {
                into.files.insert((k, hash), id.to_string());
            }
        }
    }
    skipped
}

/// Reads one vPDQ per-frame file as a video with the given id.
pub fn vpdq_file(file: &str, text: &str, id: &str, into: &mut Contents) -> Vec<Skipped> {
    let (frames, errors) = vpdq::parse_lenient(text);
    let mut skipped: Vec<Skipped> = errors
        .into_iter()
        .map(|e| Skipped {
            file: file.to_string(),
            line: e.line,
            message: e.message,
        })
        .collect();
    if frames.is_empty() {
        skipped.push(Skipped {
            file: file.to_string(),
            line: 0,
            message: "no frames: nothing imported from this file".into(),
        });
    } else {
        into.videos.push((id.to_string(), frames));
    }
    skipped
}

/// Guesses a file's format: a vPDQ file's first line has 4 fields, a frame number first.
pub fn looks_like_vpdq(path: &Path, text: &str) -> bool {
    if path.extension().is_some_and(|e| e == "vpdq") {
        return true;
    }
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f.len() == 4 && f[0].parse::<u64>().is_ok() && f[2].len() == 64
        })
}

/// The first 24 characters of `s` (never a cut inside a UTF-8 character: a hash list is any
/// text an operator was handed).
fn truncate(s: &str) -> String {
    match s.char_indices().nth(24) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PDQ: &str = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";

    /// Found by fuzzing (`bank_import`): a skipped value quoted in its message was cut inside a
    /// multi-byte character, and the import panicked.
    #[test]
    fn a_skipped_line_with_non_ascii_text_is_quoted_without_a_panic() {
        let mut into = Contents::default();
        let skipped = hash_list(
            "list.csv",
            "       4  categoa6787aÜÜÜÜ,x\n",
            DefaultKind::Pdq,
            &mut into,
        );
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(truncate(&"Ü".repeat(30)), format!("{}…", "Ü".repeat(24)));
        // A character across byte 24, where the old cut panicked.
        let across = format!("{}{}", "a".repeat(23), "Ü".repeat(5));
        assert_eq!(truncate(&across), format!("{}Ü…", "a".repeat(23)));
    }

    #[test]
    fn hma_style_csv_with_a_header_and_types() {
        let text = format!(
            "signal_type,signal_value,content_id,tags\n\
             pdq,{PDQ},te-1,a b\n\
             video_md5,{md5},te-2,\n\
             HASH_SHA256,{sha},te-3,\n\
             pdq,{short},te-4,\n\
             tmk,{PDQ},te-5,\n\
             pdq,xyz,te-6,\n",
            md5 = "d41d8cd98f00b204e9800998ecf8427e",
            sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            short = &PDQ[..60],
        );
        let mut c = Contents::default();
        let skipped = hash_list("hma.csv", &text, DefaultKind::Pdq, &mut c);
        assert_eq!(c.pdq.len(), 1);
        assert_eq!(c.pdq[0].1, "te-1");
        assert_eq!(c.files.len(), 2);
        let lines: Vec<usize> = skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![5, 6, 7], "{skipped:?}");
        assert!(
            skipped[0]
                .to_string()
                .starts_with("hma.csv:5: a PDQ hash has 64")
        );
        assert!(skipped[1].message.contains("vPDQ files"));
    }

    #[test]
    fn headerless_tsv_and_length_rules() {
        let text = format!(
            "{PDQ}\tid-1\tnsfw\n{}\n\n# note\nd41d8cd98f00b204e9800998ecf8427e\n",
            PDQ.to_uppercase()
        );
        let mut c = Contents::default();
        assert!(hash_list("te.tsv", &text, DefaultKind::Pdq, &mut c).is_empty());
        assert_eq!(c.pdq.len(), 2);
        assert_eq!(c.files.len(), 1);
        let mut s = Contents::default();
        assert!(hash_list("sha.txt", PDQ, DefaultKind::Sha256, &mut s).is_empty());
        assert_eq!(s.files.keys().next().unwrap().0, FileKind::Sha256);
    }

    #[test]
    fn vpdq_files_become_one_video_and_report_bad_lines() {
        let text = format!("0,100,{PDQ},0.000\n1,100,{PDQ},zz\n2,90,{PDQ},0.067\n");
        assert!(looks_like_vpdq(Path::new("x.txt"), &text));
        let mut c = Contents::default();
        let skipped = vpdq_file("v.txt", &text, "video-7", &mut c);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].line, 2);
        assert_eq!(c.videos[0].1.len(), 2);
        assert!(!looks_like_vpdq(Path::new("x.csv"), "hash,id\n"));
    }
}

/// How an input file of `clipguard bank import` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A vPDQ file when it looks like one, another text file as a hash list, anything else as a
    /// video.
    Auto,
    List,
    Vpdq,
    Video,
}

impl std::str::FromStr for Format {
    type Err = HashmatchError;
    fn from_str(s: &str) -> Result<Self, HashmatchError> {
        Ok(match s {
            "auto" => Format::Auto,
            "list" => Format::List,
            "vpdq" => Format::Vpdq,
            "video" => Format::Video,
            other => {
                return Err(HashmatchError::Invalid(format!(
                    "--format {other}: expected auto, list, vpdq or video"
                )));
            }
        })
    }
}

/// Hashes to add to a bank, and how.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub bank: String,
    /// Required for a new bank; changes an existing one's.
    pub category: Option<String>,
    /// Required for a new bank; changes an existing one's.
    pub action: Option<Action>,
    pub description: Option<String>,
    pub format: Format,
    /// Untyped 64-hex-digit hashes are SHA-256 file hashes (else PDQ).
    pub sha256: bool,
    /// External id of a vPDQ file or video (default: its file stem).
    pub id: Option<String>,
    /// Replace the bank's contents instead of adding to them.
    pub replace: bool,
    /// Refuse the whole import when any line is malformed.
    pub strict: bool,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct Imported {
    pub meta: BankMeta,
    pub version: u64,
    /// Hashes read from the files.
    pub read: Counts,
    /// The bank's contents now.
    pub now: Counts,
    /// Malformed lines skipped.
    pub skipped: Vec<Skipped>,
}

/// Reads `files` into bank `req.bank` as a new version (created with the request's category and
/// action when new). Videos are hashed by `hash_video` (the media stage's decoder, which this
/// crate does not depend on). Nothing is written when a line was skipped under `strict`, or when
/// nothing was read (unless replacing).
pub fn import_files(
    store: &BankStore,
    req: &ImportRequest,
    files: &[std::path::PathBuf],
    hash_video: &dyn Fn(&Path) -> Result<Vec<FrameHash>, String>,
) -> Result<Imported, HashmatchError> {
    check_name(&req.bank)?;
    let mut meta = match (store.current(&req.bank)?, &req.category, req.action) {
        (Some(_), _, _) => store.meta(&req.bank)?,
        (None, Some(c), Some(a)) => BankMeta::new(&req.bank, c, a),
        (None, _, _) => {
            return Err(HashmatchError::Invalid(format!(
                "bank `{}` is new: give its --category (csam, ncii, terrorism, \
                 internal_generated or a custom name) and --action (block or review)",
                req.bank
            )));
        }
    };
    if let Some(c) = &req.category {
        meta.category = c.clone();
    }
    if let Some(a) = req.action {
        meta.action = a;
    }
    if let Some(d) = &req.description {
        meta.description = d.clone();
    }
    let problems = meta.problems();
    if !problems.is_empty() {
        return Err(HashmatchError::Invalid(problems.join("; ")));
    }
    let default_kind = if req.sha256 {
        DefaultKind::Sha256
    } else {
        DefaultKind::Pdq
    };
    let mut added = Contents::default();
    let mut skipped = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| HashmatchError::Io {
            path: name.clone(),
            message: e.to_string(),
        })?;
        let text = String::from_utf8(bytes).ok();
        let id = req.id.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default()
        });
        let format = match (req.format, &text) {
            (Format::Auto, Some(t)) if looks_like_vpdq(path, t) => Format::Vpdq,
            (Format::Auto, Some(_)) => Format::List,
            (Format::Auto, None) => Format::Video,
            (f, _) => f,
        };
        match (format, &text) {
            (Format::List, Some(t)) => {
                skipped.extend(hash_list(&name, t, default_kind, &mut added))
            }
            (Format::Vpdq, Some(t)) => skipped.extend(vpdq_file(&name, t, &id, &mut added)),
            (Format::Video, _) => {
                let frames = hash_video(path)
                    .map_err(|e| HashmatchError::Invalid(format!("{name}: {e}")))?;
                if frames.is_empty() {
                    return Err(HashmatchError::Invalid(format!(
                        "{name}: no video frames to hash"
                    )));
                }
                added.videos.push((id, frames));
            }
            _ => return Err(HashmatchError::Invalid(format!("{name}: not UTF-8 text"))),
        }
    }
    if req.strict && !skipped.is_empty() {
        let lines: Vec<String> = skipped.iter().map(|s| format!("\n  {s}")).collect();
        return Err(HashmatchError::Invalid(format!(
            "{} line(s) skipped and --strict given: bank `{}` left unchanged:{}",
            skipped.len(),
            req.bank,
            lines.concat()
        )));
    }
    if added.is_empty() && !req.replace {
        return Err(HashmatchError::Invalid(format!(
            "nothing to import: bank `{}` left unchanged",
            req.bank
        )));
    }
    let read = added.counts();
    let mut contents = if req.replace {
        Contents::default()
    } else {
        store.contents(&req.bank)?
    };
    contents.merge(added);
    let version = store.write(&meta, &contents)?;
    Ok(Imported {
        meta,
        version,
        read,
        now: contents.counts(),
        skipped,
    })
}
