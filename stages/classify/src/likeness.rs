//! Likeness: faces in frames matched against a consent registry of enrolled people.
//!
//! A face BlazeFace finds is boxed the way dlib's detector boxes faces (from the eyes: the box
//! is 2.57 eye distances wide, its centre 0.46 eye distances below the eyes, fitted on dlib's
//! boxes of 25 faces), dlib's 5-point landmarks are placed in that box, dlib's 150 × 150 chip is
//! cut from them and dlib's ResNet (`face-descriptor-dlib`) gives a 128-D descriptor. Two faces
//! of one person lie closer than [`DEFAULT_MAX_DISTANCE`]; dlib's own rule is 0.6, which on the
//! group photos of the test set put different people of one photo at 0.56.
//!
//! The registry holds descriptors of people who enrolled, by id. Descriptors are biometric
//! data: they are stored only in the registry's files (owner-only permissions), never logged,
//! never put in a signal or verdict, and removing a person ([`RegistryStore::revoke`]) deletes
//! every version of the registry that held them. On disk, like the hash banks:
//!
//! ```text
//! <dir>/CURRENT              "v7"
//! <dir>/v7/registry.toml     version, time, the descriptor model's sha256, people and counts
//! <dir>/v7/descriptors.f32   the descriptors, 128 little-endian f32 each, in people order
//! ```
//!
//! A version is written whole into a temporary folder and renamed into place before `CURRENT`
//! names it, so a reader sees one version or the next, never half of one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

use clipguard_models::dlib::{self, ShapePredictor};

use crate::faces::Face;
use crate::model::Rgb;
use crate::{ClassifyError, load_err};

type Plan = Arc<TypedRunnableModel>;

/// Values in a face descriptor.
pub const DESCRIPTOR_LEN: usize = 128;
pub type Descriptor = [f32; DESCRIPTOR_LEN];

/// Default distance at or below which a face is the enrolled person.
pub const DEFAULT_MAX_DISTANCE: f32 = 0.5;
/// Faces whose eyes are closer than this many pixels are too small to recognise.
pub const MIN_EYE_DISTANCE: f32 = 10.0;
/// Descriptors kept per person (enrolling more photos adds up to this many).
pub const MAX_DESCRIPTORS_PER_PERSON: usize = 32;
/// People a registry may hold.
pub const MAX_PEOPLE: usize = 100_000;

/// dlib's face box from the eyes, in eye distances: width, and the centre's offset below the
/// eyes' midpoint (means over dlib's boxes of the 25 faces of the test photos, with dlib's own
/// eye points, `fixtures/likeness/fit_box.py`: from this box instead of dlib's the landmarks
/// move 0–2 px and the descriptor 0–0.09, except 5 px and 0.29 on one face in profile).
const BOX_SIDE: f32 = 2.57;
const BOX_DROP: f32 = 0.46;
/// Eye distance (picture pixels) above which a face is shrunk before its chip is cut: dlib's
/// chip takes at most about 2 picture pixels a chip pixel, and a chip's eyes are 52.8 px apart
/// (90 leaves room for landmarks wider apart than BlazeFace's eyes; a chip still refused is
/// cut again from a picture shrunk once more).
const MAX_EYE_DISTANCE: f32 = 90.0;

/// dlib's landmarks, chip and descriptor network.
pub struct FaceDescriber {
    predictor: ShapePredictor,
    net: Plan,
    /// SHA-256 of the descriptor model: a registry is only read with the model it was made with.
    pub model_sha256: String,
}

impl std::fmt::Debug for FaceDescriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceDescriber")
            .field("model_sha256", &self.model_sha256)
            .finish_non_exhaustive()
    }
}

/// A face's place in its picture as dlib would box it: `[left, top, right, bottom]`.
pub fn dlib_box(face: &Face) -> [f32; 4] {
    let (a, b) = (face.keypoints[0], face.keypoints[1]);
    let d = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt().max(1e-3);
    let (ux, uy) = ((b.0 - a.0) / d, (b.1 - a.1) / d);
    // Perpendicular to the eye line, towards the mouth for an upright face.
    let (vx, vy) = (-uy, ux);
    let (mx, my) = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
    let (cx, cy) = (mx + BOX_DROP * d * vx, my + BOX_DROP * d * vy);
    let half = BOX_SIDE * d / 2.0;
    [cx - half, cy - half, cx + half, cy + half]
}

fn eye_distance(face: &Face) -> f32 {
    let (a, b) = (face.keypoints[0], face.keypoints[1]);
    ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt()
}

/// A picture region shrunk by an integer factor (each output pixel the mean of a k × k block).
fn shrink(image: &Rgb<'_>, x0: usize, y0: usize, x1: usize, y1: usize, k: usize) -> Vec<u8> {
    let (w, h) = ((x1 - x0) / k, (y1 - y0) / k);
    let mut out = Vec::with_capacity(w * h * 3);
    let n = (k * k) as u32;
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let mut sum = 0u32;
                for dy in 0..k {
                    let row = (y0 + y * k + dy) * image.width;
                    for dx in 0..k {
                        sum += u32::from(image.pixels[(row + x0 + x * k + dx) * 3 + c]);
                    }
                }
                out.push(((sum + n / 2) / n) as u8);
            }
        }
    }
    out
}

impl FaceDescriber {
    /// Loads dlib's landmark model (its `.dat`) and the converted descriptor network (ONNX,
    /// `[1, 150, 150, 3]` RGB 0..255 → 128 values).
    pub fn load(
        landmarks: (&str, &Path),
        descriptor: (&str, &Path),
        descriptor_sha256: &str,
    ) -> Result<Self, ClassifyError> {
        let bytes = std::fs::read(landmarks.1)
            .map_err(|e| load_err(landmarks.0, format!("{}: {e}", landmarks.1.display())))?;
        let predictor = ShapePredictor::parse(&bytes).map_err(|e| load_err(landmarks.0, e))?;
        if predictor.parts() != 5 {
            return Err(load_err(
                landmarks.0,
                format!(
                    "places {} landmarks; the face chip needs dlib's 5",
                    predictor.parts()
                ),
            ));
        }
        let net = tract_onnx::onnx()
            .model_for_path(descriptor.1)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| load_err(descriptor.0, format!("{e:#}")))?;
        let fact = net
            .model()
            .output_fact(0)
            .map_err(|e| load_err(descriptor.0, e))?;
        if fact.shape.last().and_then(|d| d.to_usize().ok()) != Some(DESCRIPTOR_LEN) {
            return Err(load_err(
                descriptor.0,
                format!(
                    "output {:?}; a face descriptor has {DESCRIPTOR_LEN} values",
                    fact.shape
                ),
            ));
        }
        Ok(FaceDescriber {
            predictor,
            net,
            model_sha256: descriptor_sha256.to_string(),
        })
    }

    /// The descriptor of a face BlazeFace found in `image`; `None` for a face too small to
    /// recognise. A large face is shrunk first (dlib shrinks the whole picture instead).
    pub fn describe(
        &self,
        image: &Rgb<'_>,
        face: &Face,
    ) -> Result<Option<Descriptor>, ClassifyError> {
        let d = eye_distance(face);
        if !(MIN_EYE_DISTANCE..1e6).contains(&d) {
            return Ok(None);
        }
        let k = (d / MAX_EYE_DISTANCE).ceil().max(1.0) as usize;
        for k in [k, k + 1] {
            if let Some(chip) = self.chip(image, face, k) {
                return self.describe_chip(&chip).map(Some);
            }
        }
        Ok(None)
    }

    /// dlib's chip of `face`, cut from the picture shrunk by `k` around the face (the whole
    /// picture as it is when `k` is 1); `None` when the face does not fit a chip.
    fn chip(&self, image: &Rgb<'_>, face: &Face, k: usize) -> Option<Vec<u8>> {
        let [l, t, r, b] = dlib_box(face);
        let shrunk;
        let (pixels, width, height, ox, oy) = if k == 1 {
            (image.pixels, image.width, image.height, 0.0, 0.0)
        } else {
            // The box and as much again around it, shrunk by k.
            let side = r - l;
            let clamp_x = |v: f32| (v.max(0.0) as usize).min(image.width);
            let clamp_y = |v: f32| (v.max(0.0) as usize).min(image.height);
            let (x0, y0) = (clamp_x(l - side), clamp_y(t - side));
            let (x1, y1) = (clamp_x(r + side), clamp_y(b + side));
            if x1 < x0 + k || y1 < y0 + k {
                return None;
            }
            shrunk = shrink(image, x0, y0, x1, y1, k);
            (
                shrunk.as_slice(),
                (x1 - x0) / k,
                (y1 - y0) / k,
                x0 as f32,
                y0 as f32,
            )
        };
        let at = |v: f32, o: f32| ((v - o) / k as f32).round() as i64;
        let rect = [at(l, ox), at(t, oy), at(r, ox), at(b, oy)];
        let gray: Vec<u8> = pixels
            .chunks_exact(3)
            .map(|p| ((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3) as u8)
            .collect();
        let landmarks = self.predictor.predict(&gray, width, height, rect);
        dlib::face_chip(pixels, width, height, &landmarks)
    }

    /// The descriptor of a 150 × 150 RGB chip.
    pub fn describe_chip(&self, chip: &[u8]) -> Result<Descriptor, ClassifyError> {
        let input: Tensor = tract_ndarray::Array4::from_shape_vec(
            (1, 150, 150, 3),
            chip.iter().map(|&p| f32::from(p)).collect(),
        )
        .map_err(|e| ClassifyError::Run(e.to_string()))?
        .into();
        let out = self
            .net
            .run(tvec!(input.into()))
            .map_err(|e| ClassifyError::Run(format!("face descriptor: {e:#}")))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| ClassifyError::Run(e.to_string()))?;
        let mut d = [0f32; DESCRIPTOR_LEN];
        for (o, v) in d.iter_mut().zip(view.iter()) {
            *o = *v;
        }
        Ok(d)
    }
}

/// Euclidean distance between two descriptors.
pub fn distance(a: &Descriptor, b: &Descriptor) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// One enrolled person.
#[derive(Clone, PartialEq)]
pub struct Person {
    pub id: String,
    pub enrolled_ms: i64,
    pub descriptors: Vec<Descriptor>,
}

impl std::fmt::Debug for Person {
    /// Never the descriptors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Person")
            .field("id", &self.id)
            .field("enrolled_ms", &self.enrolled_ms)
            .field("descriptors", &self.descriptors.len())
            .finish()
    }
}

/// A version of the registry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    /// 0: nothing enrolled yet (no `CURRENT`).
    pub version: u64,
    pub updated_ms: i64,
    /// The descriptor model the descriptors come from (empty while nothing is enrolled).
    pub model_sha256: String,
    pub people: Vec<Person>,
}

impl Registry {
    /// The enrolled person closest to `d` and the distance, if anyone is enrolled.
    pub fn nearest(&self, d: &Descriptor) -> Option<(&str, f32)> {
        self.people
            .iter()
            .flat_map(|p| {
                p.descriptors
                    .iter()
                    .map(move |e| (p.id.as_str(), distance(e, d)))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    pub fn descriptor_count(&self) -> usize {
        self.people.iter().map(|p| p.descriptors.len()).sum()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    version: u64,
    updated_ms: i64,
    model_sha256: String,
    descriptor_len: usize,
    #[serde(default, rename = "person")]
    people: Vec<PersonMeta>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonMeta {
    id: String,
    enrolled_ms: i64,
    descriptors: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("likeness registry {dir}: {message}")]
    Damaged { dir: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("no person `{0}` is enrolled")]
    NotFound(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A person id: 1–128 characters, letters, digits and `-_.:@`, so it reads the same in a
/// file, a log line and a verdict.
pub fn check_id(id: &str) -> Result<(), RegistryError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "person id {id:?}: use 1–128 letters, digits and - _ . : @"
        )))
    }
}

/// The registry's folder.
#[derive(Debug, Clone)]
pub struct RegistryStore {
    dir: PathBuf,
}

impl RegistryStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RegistryStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The live version; 0 when nothing was ever enrolled.
    pub fn current(&self) -> Result<u64, RegistryError> {
        let path = self.dir.join("CURRENT");
        match std::fs::read_to_string(&path) {
            Ok(s) => s
                .trim()
                .strip_prefix('v')
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| self.damaged(format!("CURRENT holds `{}`", s.trim()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn damaged(&self, message: impl Into<String>) -> RegistryError {
        RegistryError::Damaged {
            dir: self.dir.display().to_string(),
            message: message.into(),
        }
    }

    /// Loads and checks the live version (empty when nothing was enrolled). A version a writer
    /// replaced (and deleted) while it was being read is read again at the new one.
    pub fn load(&self) -> Result<Registry, RegistryError> {
        let mut tries = 0;
        loop {
            let version = self.current()?;
            match self.load_version(version) {
                Err(e) if tries < 3 && self.current().is_ok_and(|v| v != version) => {
                    tries += 1;
                    tracing::debug!(error = %e, "likeness registry changed while read; again");
                }
                other => return other,
            }
        }
    }

    fn load_version(&self, version: u64) -> Result<Registry, RegistryError> {
        if version == 0 {
            return Ok(Registry::default());
        }
        let dir = self.dir.join(format!("v{version}"));
        let meta_path = dir.join("registry.toml");
        let text = std::fs::read_to_string(&meta_path).map_err(io_err(&meta_path))?;
        let meta: Meta =
            toml::from_str(&text).map_err(|e| self.damaged(format!("registry.toml: {e}")))?;
        if meta.version != version || meta.descriptor_len != DESCRIPTOR_LEN {
            return Err(self.damaged(format!(
                "registry.toml says version {} with {}-value descriptors; expected v{version}, {DESCRIPTOR_LEN}",
                meta.version, meta.descriptor_len
            )));
        }
        let data_path = dir.join("descriptors.f32");
        let bytes = std::fs::read(&data_path).map_err(io_err(&data_path))?;
        let total: usize = meta.people.iter().map(|p| p.descriptors).sum();
        if bytes.len() != total * DESCRIPTOR_LEN * 4 {
            return Err(self.damaged(format!(
                "descriptors.f32 has {} bytes for {total} descriptors",
                bytes.len()
            )));
        }
        let mut values = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let mut people = Vec::with_capacity(meta.people.len());
        for p in meta.people {
            check_id(&p.id).map_err(|e| self.damaged(e.to_string()))?;
            let mut descriptors = Vec::with_capacity(p.descriptors);
            for _ in 0..p.descriptors {
                let mut d = [0f32; DESCRIPTOR_LEN];
                for v in d.iter_mut() {
                    *v = values.next().unwrap_or(f32::NAN);
                }
                if d.iter().any(|v| !v.is_finite()) {
                    return Err(self.damaged(format!("a descriptor of `{}` is not finite", p.id)));
                }
                descriptors.push(d);
            }
            people.push(Person {
                id: p.id,
                enrolled_ms: p.enrolled_ms,
                descriptors,
            });
        }
        Ok(Registry {
            version,
            updated_ms: meta.updated_ms,
            model_sha256: meta.model_sha256,
            people,
        })
    }

    /// Writes `people` as the next version and makes it live; then deletes every older version
    /// (a revoked person's descriptors must not outlive the change). Returns the version.
    pub fn write(&self, model_sha256: &str, people: &[Person]) -> Result<u64, RegistryError> {
        if people.len() > MAX_PEOPLE {
            return Err(RegistryError::Invalid(format!(
                "{} people: the registry holds at most {MAX_PEOPLE}",
                people.len()
            )));
        }
        create_private_dir(&self.dir)?;
        let version = self.current()? + 1;
        // What a writer that died left (a version never made live, a temporary folder) may
        // hold anyone's descriptors, a revoked person's too, and would block this version.
        self.remove_all_but(version - 1)?;
        let meta = Meta {
            version,
            updated_ms: now_ms(),
            model_sha256: model_sha256.to_string(),
            descriptor_len: DESCRIPTOR_LEN,
            people: people
                .iter()
                .map(|p| PersonMeta {
                    id: p.id.clone(),
                    enrolled_ms: p.enrolled_ms,
                    descriptors: p.descriptors.len(),
                })
                .collect(),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempdir_in(&self.dir)
            .map_err(io_err(&self.dir))?;
        let toml = toml::to_string(&meta).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        write_private(&tmp.path().join("registry.toml"), toml.as_bytes())?;
        let mut data = Vec::with_capacity(meta.people.len() * DESCRIPTOR_LEN * 4);
        for d in people.iter().flat_map(|p| &p.descriptors) {
            for v in d {
                data.extend_from_slice(&v.to_le_bytes());
            }
        }
        write_private(&tmp.path().join("descriptors.f32"), &data)?;
        let final_dir = self.dir.join(format!("v{version}"));
        std::fs::rename(tmp.path(), &final_dir).map_err(io_err(&final_dir))?;
        // Renamed: nothing left for the temporary folder's guard to delete.
        let _ = tmp.keep();
        let current = self.dir.join("CURRENT");
        let mut tmp_current =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(io_err(&self.dir))?;
        std::io::Write::write_all(&mut tmp_current, format!("v{version}\n").as_bytes())
            .map_err(io_err(&current))?;
        tmp_current.as_file().sync_all().map_err(io_err(&current))?;
        tmp_current
            .persist(&current)
            .map_err(|e| io_err(&current)(e.error))?;
        self.remove_all_but(version)?;
        Ok(version)
    }

    /// Deletes every version folder but `keep`'s and every temporary folder (writers hold the
    /// lock, so none is in use).
    fn remove_all_but(&self, keep: u64) -> Result<(), RegistryError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let stale_version = name
                .strip_prefix('v')
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v != keep);
            if stale_version || name.starts_with(".incoming-") {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
            }
        }
        Ok(())
    }

    /// Holds the registry's lock file until dropped: one enroll or revoke at a time, so two
    /// running at once cannot lose each other's change.
    fn lock(&self) -> Result<std::fs::File, RegistryError> {
        create_private_dir(&self.dir)?;
        let path = self.dir.join(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.lock().map_err(io_err(&path))?;
        Ok(f)
    }

    /// Adds descriptors of `id` (enrolling the person, or adding photos), up to
    /// [`MAX_DESCRIPTORS_PER_PERSON`]. Returns the version written.
    pub fn enroll(
        &self,
        id: &str,
        model_sha256: &str,
        descriptors: Vec<Descriptor>,
    ) -> Result<u64, RegistryError> {
        check_id(id)?;
        if descriptors.is_empty() {
            return Err(RegistryError::Invalid(format!(
                "no face to enroll for `{id}`"
            )));
        }
        let _lock = self.lock()?;
        let mut registry = self.load()?;
        if registry.version > 0 && registry.model_sha256 != model_sha256 {
            return Err(RegistryError::Invalid(format!(
                "the registry's descriptors come from model sha256 {}, this one is {model_sha256}: enroll everyone again into a new registry",
                registry.model_sha256
            )));
        }
        let index = match registry.people.iter().position(|p| p.id == id) {
            Some(i) => i,
            None => {
                registry.people.push(Person {
                    id: id.to_string(),
                    enrolled_ms: now_ms(),
                    descriptors: Vec::new(),
                });
                registry.people.len() - 1
            }
        };
        let person = &mut registry.people[index];
        if person.descriptors.len() + descriptors.len() > MAX_DESCRIPTORS_PER_PERSON {
            return Err(RegistryError::Invalid(format!(
                "`{id}` would have {} face descriptors; at most {MAX_DESCRIPTORS_PER_PERSON} (revoke and enroll again to replace them)",
                person.descriptors.len() + descriptors.len()
            )));
        }
        person.descriptors.extend(descriptors);
        self.write(model_sha256, &registry.people)
    }

    /// Removes a person and everything stored of them. Returns the version written.
    pub fn revoke(&self, id: &str) -> Result<u64, RegistryError> {
        let _lock = self.lock()?;
        let mut registry = self.load()?;
        let before = registry.people.len();
        registry.people.retain(|p| p.id != id);
        if registry.people.len() == before {
            // Not live; a writer that died may still have left them in a folder.
            self.remove_all_but(registry.version)?;
            return Err(RegistryError::NotFound(id.to_string()));
        }
        self.write(&registry.model_sha256, &registry.people)
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), RegistryError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), RegistryError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(io_err(path))?;
    std::io::Write::write_all(&mut f, bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A face that matched an enrolled person.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognised {
    pub person_id: String,
    pub distance: f32,
}

/// The stage's likeness check: the describer, the registry in service (reloaded when a new
/// version appears) and the match distance.
#[derive(Debug)]
pub struct LikenessCheck {
    pub describer: FaceDescriber,
    pub store: RegistryStore,
    pub max_distance: f32,
    registry: RwLock<Arc<Registry>>,
    /// How often [`LikenessCheck::reload_when_due`] looks for a new version.
    interval: Duration,
    checked: Mutex<Instant>,
}

impl LikenessCheck {
    /// Loads the registry now: one made with another descriptor model, or damaged, is an error.
    pub fn new(
        describer: FaceDescriber,
        store: RegistryStore,
        max_distance: f32,
        interval: Duration,
    ) -> Result<Self, ClassifyError> {
        // A folder that is not there is a wrong path or a volume not mounted, not a registry
        // with nobody in it: matching against nobody would pass every face unseen.
        if !store.dir().is_dir() {
            return Err(ClassifyError::Load(format!(
                "classify.likeness_dir {}: no such folder (create it, or mount the registry's volume)",
                store.dir().display()
            )));
        }
        let registry = store
            .load()
            .map_err(|e| ClassifyError::Load(e.to_string()))?;
        check_model(&registry, &describer).map_err(ClassifyError::Load)?;
        Ok(LikenessCheck {
            describer,
            store,
            max_distance,
            registry: RwLock::new(Arc::new(registry)),
            interval,
            checked: Mutex::new(Instant::now()),
        })
    }

    /// Reloads when the interval has passed since the last look (blocking: file reads).
    pub fn reload_when_due(&self) {
        let due = match self.checked.lock() {
            Ok(mut last) if last.elapsed() >= self.interval => {
                *last = Instant::now();
                true
            }
            _ => false,
        };
        if due {
            self.reload();
        }
    }

    /// The registry in service.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Loads a new version if there is one; a version that fails keeps the one in service.
    /// Returns the version in service.
    pub fn reload(&self) -> u64 {
        let serving = self.registry().version;
        match self.store.current() {
            Ok(v) if v == serving => return v,
            Ok(v) if v < serving => {
                tracing::error!(
                    found = v,
                    "likeness registry: CURRENT went back (a folder replaced or deleted?); keeping version {serving}"
                );
                return serving;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "likeness registry: keeping version {serving}");
                return serving;
            }
        }
        match self.store.load().map_err(|e| e.to_string()).and_then(|r| {
            check_model(&r, &self.describer)?;
            Ok(r)
        }) {
            Ok(r) => {
                let v = r.version;
                tracing::info!(
                    version = v,
                    people = r.people.len(),
                    "likeness registry loaded"
                );
                match self.registry.write() {
                    Ok(mut g) => *g = Arc::new(r),
                    Err(p) => *p.into_inner() = Arc::new(r),
                }
                v
            }
            Err(e) => {
                tracing::error!(error = %e, "likeness registry: keeping version {serving}");
                serving
            }
        }
    }

    /// Who each face is, by `registry` (`None`: nobody enrolled within `max_distance`, or a
    /// face too small to tell), and how many faces were too small to tell. Nothing is computed
    /// while nobody is enrolled.
    pub fn recognise(
        &self,
        image: &Rgb<'_>,
        faces: &[Face],
        registry: &Registry,
    ) -> Result<(Vec<Option<Recognised>>, usize), ClassifyError> {
        if registry.people.is_empty() {
            return Ok((vec![None; faces.len()], 0));
        }
        let mut out = Vec::with_capacity(faces.len());
        let mut unchecked = 0;
        for face in faces {
            let Some(d) = self.describer.describe(image, face)? else {
                unchecked += 1;
                out.push(None);
                continue;
            };
            out.push(
                registry
                    .nearest(&d)
                    .filter(|(_, dist)| *dist <= self.max_distance)
                    .map(|(id, dist)| Recognised {
                        person_id: id.to_string(),
                        distance: dist,
                    }),
            );
        }
        Ok((out, unchecked))
    }
}

fn check_model(registry: &Registry, describer: &FaceDescriber) -> Result<(), String> {
    if registry.version > 0 && registry.model_sha256 != describer.model_sha256 {
        return Err(format!(
            "likeness registry v{}: its descriptors come from model sha256 {}, the stage loads {}; enroll everyone again with this model",
            registry.version, registry.model_sha256, describer.model_sha256
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(v: f32) -> Descriptor {
        let mut d = [0.0; DESCRIPTOR_LEN];
        d[0] = v;
        d
    }

    #[test]
    fn versions_are_written_whole_and_a_revoked_person_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = RegistryStore::new(dir.path().join("likeness"));
        assert_eq!(store.load().unwrap(), Registry::default());
        assert_eq!(store.enroll("alice", "m1", vec![desc(0.1)]).unwrap(), 1);
        assert_eq!(store.enroll("bob", "m1", vec![desc(0.9)]).unwrap(), 2);
        assert_eq!(store.enroll("alice", "m1", vec![desc(0.2)]).unwrap(), 3);
        let r = store.load().unwrap();
        assert_eq!(r.version, 3);
        assert_eq!(r.people.len(), 2);
        assert_eq!(r.people[0].descriptors.len(), 2);
        assert_eq!(r.nearest(&desc(0.8)).unwrap().0, "bob");
        // Another model's descriptors do not mix with these.
        let e = store.enroll("carol", "m2", vec![desc(0.5)]).unwrap_err();
        assert!(e.to_string().contains("sha256 m1"), "{e}");
        store.revoke("alice").unwrap();
        let r = store.load().unwrap();
        assert_eq!(r.people.len(), 1);
        // Only the live version is on disk: alice's descriptors are gone from every file.
        let versions: Vec<String> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n != "CURRENT" && n != ".lock")
            .collect();
        assert_eq!(versions, vec!["v4".to_string()]);
        let bytes = std::fs::read(store.dir().join("v4/descriptors.f32")).unwrap();
        assert_eq!(bytes.len(), DESCRIPTOR_LEN * 4);
        assert!(matches!(
            store.revoke("alice"),
            Err(RegistryError::NotFound(_))
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.dir().join("v4/descriptors.f32"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "descriptors readable by others: {mode:o}");
        }
        assert!(check_id("a b").is_err());
        assert!(check_id("").is_err());
        assert!(check_id("person-42@studio").is_ok());
    }

    #[test]
    fn what_a_writer_that_died_left_is_deleted_and_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let store = RegistryStore::new(dir.path());
        store.enroll("alice", "m1", vec![desc(0.1)]).unwrap();
        // A writer died after renaming v2 into place, before CURRENT named it, and another
        // while its temporary folder was being written.
        std::fs::create_dir(dir.path().join("v2")).unwrap();
        std::fs::write(dir.path().join("v2/descriptors.f32"), [1u8; 512]).unwrap();
        std::fs::create_dir(dir.path().join(".incoming-x")).unwrap();
        assert!(matches!(
            store.revoke("carol"),
            Err(RegistryError::NotFound(_))
        ));
        assert!(!dir.path().join("v2").exists() && !dir.path().join(".incoming-x").exists());
        std::fs::create_dir(dir.path().join("v2")).unwrap();
        assert_eq!(store.enroll("bob", "m1", vec![desc(0.9)]).unwrap(), 2);
        assert_eq!(store.load().unwrap().people.len(), 2);
    }

    #[test]
    fn a_damaged_version_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = RegistryStore::new(dir.path());
        store.enroll("alice", "m1", vec![desc(0.1)]).unwrap();
        std::fs::write(dir.path().join("v1/descriptors.f32"), [0u8; 12]).unwrap();
        let e = store.load().unwrap_err();
        assert!(e.to_string().contains("12 bytes for 1 descriptors"), "{e}");
        std::fs::write(dir.path().join("CURRENT"), "v9\n").unwrap();
        assert!(store.load().is_err());
    }
}
