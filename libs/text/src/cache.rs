//! The learned state of a text classifier on disk. Building one embeds every exemplar sentence
//! and trains two heads per category: seconds in a release build, most of what a one-shot
//! `clipguard check-prompt` spends. The result depends only on the encoder and the exemplars
//! (their text and role), so it is kept under a key made of exactly those, and a later build
//! with the same inputs reads it instead. A file that is missing, truncated, of another format
//! or for other inputs is never trusted: the classifier is built as if there were no cache and
//! the file rewritten. Writes go to a temporary file renamed into place, so readers never see a
//! half-written one.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::cv::Exemplar;
use super::heads::{Head, Heads, TRAINING};

/// File format tag; bump when the layout below changes.
const MAGIC: &[u8; 8] = b"CGHEADS1";

/// Where trained heads are kept and what identifies the encoder.
#[derive(Debug, Clone)]
pub struct HeadsCache {
    /// Folder of the cache files (created on first write).
    pub dir: PathBuf,
    /// The encoder's identity: its name and the SHA-256 of its files (the manifest's), so a
    /// different model or tokenizer never reads another's heads.
    pub encoder: String,
}

/// What a build computes and the cache keeps: the exemplar embeddings (in
/// [`super::cv::exemplar_sentences`] order) and each category's heads (policy order).
pub(super) struct Trained {
    pub(super) vectors: Vec<Vec<f32>>,
    pub(super) heads: Vec<Option<Heads>>,
}

impl HeadsCache {
    /// The key of a build: encoder, training recipe, and every exemplar with its role.
    pub(super) fn key(&self, categories: &[&str], exemplars: &[Exemplar<'_>]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(MAGIC);
        let mut field = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        field(&self.encoder);
        field(TRAINING);
        for c in categories {
            field(c);
        }
        for e in exemplars {
            field(e.unsafe_of.unwrap_or("-"));
            field(e.near_of.unwrap_or("-"));
            field(e.text);
        }
        h.finalize().into()
    }

    pub(super) fn path(&self, key: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.heads", hex::encode(&key[..16])))
    }

    /// The cached state for `key`, if a file holds exactly it (`n` vectors of `dim`, `cats`
    /// categories); `Err` says why a file that exists was not used.
    pub(super) fn load(
        &self,
        key: &[u8; 32],
        n: usize,
        dim: usize,
        cats: usize,
    ) -> Result<Option<Trained>, String> {
        let path = self.path(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        decode(&bytes, key, n, dim, cats)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes the state for `key` (atomically: a temporary file renamed into place).
    pub(super) fn store(&self, key: &[u8; 32], t: &Trained, dim: usize) -> Result<(), String> {
        let path = self.path(key);
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, encode(key, t, dim)).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e)
        })
    }
}

fn put_f32s(out: &mut Vec<u8>, xs: &[f32]) {
    for x in xs {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn encode(key: &[u8; 32], t: &Trained, dim: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 4 * dim * (t.vectors.len() + 2 * t.heads.len() + 2));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(key);
    for n in [t.vectors.len(), dim, t.heads.len()] {
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
    for v in &t.vectors {
        put_f32s(&mut out, v);
    }
    for h in &t.heads {
        match h {
            None => out.push(0),
            Some(h) => {
                out.push(if h.near.is_some() { 2 } else { 1 });
                for head in std::iter::once(&h.all).chain(&h.near) {
                    put_f32s(&mut out, &head.w);
                    put_f32s(&mut out, &[head.b]);
                }
            }
        }
    }
    out
}

/// Reads what [`encode`] wrote, refusing anything that is not exactly that.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("truncated".into());
        }
        let (a, b) = self.bytes.split_at(n);
        self.bytes = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<usize, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn f32s(&mut self, n: usize) -> Result<Vec<f32>, String> {
        let b = self.take(4 * n)?;
        let v: Vec<f32> = b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if v.iter().any(|x| !x.is_finite()) {
            return Err("holds a value that is not a finite number".into());
        }
        Ok(v)
    }
    fn head(&mut self, dim: usize) -> Result<Head, String> {
        let w = self.f32s(dim)?;
        let b = self.f32s(1)?[0];
        Ok(Head { w, b })
    }
}

fn decode(
    bytes: &[u8],
    key: &[u8; 32],
    n: usize,
    dim: usize,
    cats: usize,
) -> Result<Trained, String> {
    let mut r = Reader { bytes };
    if r.take(MAGIC.len())? != MAGIC {
        return Err("not a heads file of this version".into());
    }
    if r.take(32)? != key {
        return Err("written for other inputs".into());
    }
    let shape = (r.u32()?, r.u32()?, r.u32()?);
    if shape != (n, dim, cats) {
        return Err(format!(
            "holds {} vectors of {} for {} categories, expected {n} of {dim} for {cats}",
            shape.0, shape.1, shape.2
        ));
    }
    let mut vectors = Vec::with_capacity(n);
    for _ in 0..n {
        vectors.push(r.f32s(dim)?);
    }
    let mut heads = Vec::with_capacity(cats);
    for _ in 0..cats {
        heads.push(match r.take(1)?[0] {
            0 => None,
            1 => Some(Heads {
                all: r.head(dim)?,
                near: None,
            }),
            2 => Some(Heads {
                all: r.head(dim)?,
                near: Some(r.head(dim)?),
            }),
            x => return Err(format!("unknown head tag {x}")),
        });
    }
    if !r.bytes.is_empty() {
        return Err(format!("{} bytes after the end", r.bytes.len()));
    }
    Ok(Trained { vectors, heads })
}

/// The default folder: beside the model cache (`<models>/derived/text-heads`).
pub fn default_dir(models: &Path) -> PathBuf {
    models.join("derived").join("text-heads")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trained(dim: usize) -> Trained {
        let head = |s: f32| Head {
            w: (0..dim).map(|i| s * i as f32).collect(),
            b: s,
        };
        Trained {
            vectors: vec![vec![0.5; dim], vec![-0.25; dim]],
            heads: vec![
                Some(Heads {
                    all: head(1.0),
                    near: Some(head(2.0)),
                }),
                None,
                Some(Heads {
                    all: head(3.0),
                    near: None,
                }),
            ],
        }
    }

    #[test]
    fn a_heads_file_reads_back_exactly_and_anything_else_is_refused() {
        let key = [7u8; 32];
        let bytes = encode(&key, &trained(4), 4);
        let t = decode(&bytes, &key, 2, 4, 3).unwrap();
        assert_eq!(t.vectors, trained(4).vectors);
        let h = t.heads[0].as_ref().unwrap();
        assert_eq!(h.near.as_ref().unwrap().w, vec![0.0, 2.0, 4.0, 6.0]);
        assert!(t.heads[1].is_none());
        assert!(t.heads[2].as_ref().unwrap().near.is_none());

        let refused = |b: &[u8], n, dim, cats, why: &str| {
            let e = decode(b, &key, n, dim, cats).err().unwrap();
            assert!(e.contains(why), "{e}");
        };
        refused(&bytes[..bytes.len() - 1], 2, 4, 3, "truncated");
        refused(&[bytes.as_slice(), &[0]].concat(), 2, 4, 3, "after the end");
        refused(&bytes, 3, 4, 3, "expected 3 of 4");
        let mut other = bytes.clone();
        other[8] ^= 1;
        refused(&other, 2, 4, 3, "other inputs");
        let mut nan = bytes.clone();
        let at = 8 + 32 + 12;
        nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        refused(&nan, 2, 4, 3, "finite");
        refused(b"junk", 2, 4, 3, "truncated");
    }
}
