//! The claim-check media store: large media travels as a URI plus SHA-256, never inside a Kafka
//! message. A local directory by default; `s3://`, `gs://`, `az://` with the matching cargo
//! feature (`s3`, `gcs`, `azure`) and credentials from `store.options` or the environment.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use clipguard_schemas::MediaRef;
use clipguard_schemas::media_ref::Location;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use crate::error::{ErrorDomain, Failure, PipelineError, StageError};

/// Why the bytes behind a media reference could not be had. The stage that asked decides what
/// each means for the clip (the media stage reports `TooLarge` as its own limit); every other
/// caller passes it on as a [`StageError`] with the same kind.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// Over the caller's limit (`what`: "media", or the URI).
    #[error("{what} is {size} bytes, over the {limit} byte limit")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("{0}")]
    MissingMedia(String),
    #[error("SHA-256 is {actual}, the message says {expected}")]
    ChecksumMismatch { actual: String, expected: String },
    #[error("{0}")]
    BadUri(String),
    /// The store failed (network, permissions, a service down): a retry may help.
    #[error("{0}")]
    Failed(String),
}

impl FetchError {
    /// The machine-readable kind, as in reasons and the `error_type` metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::TooLarge { .. } => "too_large",
            FetchError::MissingMedia(_) => "missing_media",
            FetchError::ChecksumMismatch { .. } => "checksum_mismatch",
            FetchError::BadUri(_) => "bad_uri",
            FetchError::Failed(_) => "fetch_failed",
        }
    }
}

impl Failure for FetchError {
    fn domain(&self) -> ErrorDomain {
        match self {
            FetchError::Failed(_) => ErrorDomain::External,
            _ => ErrorDomain::Input,
        }
    }
}

impl From<FetchError> for StageError {
    fn from(e: FetchError) -> Self {
        match e.domain() {
            ErrorDomain::External => StageError::external(e.kind(), e.to_string()),
            _ => StageError::input(e.kind(), e.to_string()),
        }
    }
}

/// Where claim-checked media lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Base URL: `file:///var/lib/clipguard/store`, `s3://bucket/prefix`, or a plain directory.
    /// Default: `$XDG_DATA_HOME/clipguard/store` (`~/.local/share/clipguard/store`).
    pub url: String,
    /// Blobs up to this size travel inline in the message; larger ones by URI.
    pub inline_max_bytes: usize,
    /// Options for the object-store builder (region, endpoint, credentials, ...).
    pub options: BTreeMap<String, String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/share"))
            })
            .unwrap_or_else(std::env::temp_dir);
        Self {
            url: base.join("clipguard/store").display().to_string(),
            inline_max_bytes: 256 * 1024,
            options: BTreeMap::new(),
        }
    }
}

impl StoreConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if let Err(e) = base_url(&self.url) {
            problems.push(format!("store.url: {e}"));
        }
        if self.inline_max_bytes > crate::topics::MAX_MESSAGE_BYTES / 2 {
            problems.push(format!(
                "store.inline_max_bytes: {} is over half the message limit ({})",
                self.inline_max_bytes,
                crate::topics::MAX_MESSAGE_BYTES / 2
            ));
        }
    }
}

fn base_url(s: &str) -> Result<Url, String> {
    if s.contains("://") {
        Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))
    } else {
        let p = std::path::absolute(s).map_err(|e| format!("`{s}`: {e}"))?;
        Url::from_directory_path(&p).map_err(|()| format!("`{s}` is not an absolute directory"))
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A media store rooted at a base URL.
#[derive(Clone)]
pub struct MediaStore {
    base: Url,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    inline_max_bytes: usize,
    options: BTreeMap<String, String>,
}

impl std::fmt::Debug for MediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaStore")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl MediaStore {
    pub fn open(cfg: &StoreConfig) -> Result<Self, PipelineError> {
        let mut base = base_url(&cfg.url).map_err(PipelineError::Store)?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        if base.scheme() == "file" {
            let dir = base
                .to_file_path()
                .map_err(|()| PipelineError::Store(format!("bad file URL {base}")))?;
            std::fs::create_dir_all(&dir).map_err(|e| {
                PipelineError::Store(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let (store, prefix) = object_store::parse_url_opts(&base, cfg.options.clone())
            .map_err(|e| PipelineError::Store(format!("{base}: {e}")))?;
        Ok(Self {
            base,
            store: Arc::from(store),
            prefix,
            inline_max_bytes: cfg.inline_max_bytes,
            options: cfg.options.clone(),
        })
    }

    pub fn inline_max_bytes(&self) -> usize {
        self.inline_max_bytes
    }

    /// Stores `bytes` under `key` (relative to the base) and returns its URI.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<String, PipelineError> {
        let path = Path::from(format!("{}/{}", self.prefix, key).trim_start_matches('/'));
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| PipelineError::Store(format!("put {key}: {e}")))?;
        let url = self
            .base
            .join(key)
            .map_err(|e| PipelineError::Store(e.to_string()))?;
        Ok(url.to_string())
    }

    /// Deletes every object under `prefix` (relative to the base); returns how many went.
    pub async fn remove_prefix(&self, prefix: &str) -> Result<usize, PipelineError> {
        use futures::StreamExt as _;
        let path = Path::from(format!("{}/{}", self.prefix, prefix).trim_start_matches('/'));
        let metas: Vec<_> = self.store.list(Some(&path)).collect().await;
        let mut removed = 0;
        for meta in metas {
            let meta = meta.map_err(|e| PipelineError::Store(format!("list {prefix}: {e}")))?;
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                Err(e) => {
                    return Err(PipelineError::Store(format!(
                        "delete {}: {e}",
                        meta.location
                    )));
                }
            }
        }
        Ok(removed)
    }

    /// A reference to `bytes`: inline when `inline_ok` and small enough, else stored under `key`.
    /// Callers that pack several blobs into one message pass `inline_ok = false` once their
    /// message budget is spent.
    pub async fn reference(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        inline_ok: bool,
    ) -> Result<MediaRef, PipelineError> {
        let sha256 = sha256_hex(&bytes);
        let size_bytes = bytes.len() as u64;
        let location = if inline_ok && bytes.len() <= self.inline_max_bytes {
            Location::Inline(bytes.to_vec())
        } else {
            Location::Uri(self.put(key, bytes).await?)
        };
        Ok(MediaRef {
            location: Some(location),
            sha256,
            size_bytes,
            content_type: content_type.into(),
        })
    }

    /// The bytes behind a reference, checked against `max_bytes` before reading and against the
    /// SHA-256 after.
    pub async fn fetch(&self, media: &MediaRef, max_bytes: u64) -> Result<Bytes, FetchError> {
        let too_large = |what: &str, size: u64| FetchError::TooLarge {
            what: what.to_string(),
            size,
            limit: max_bytes,
        };
        if media.size_bytes > max_bytes {
            return Err(too_large("media", media.size_bytes));
        }
        let bytes = match &media.location {
            None => return Err(FetchError::MissingMedia("the clip names no media".into())),
            Some(Location::Inline(b)) => Bytes::from(b.clone()),
            Some(Location::Uri(uri)) => self.fetch_uri(uri, max_bytes).await?,
        };
        if bytes.len() as u64 > max_bytes {
            return Err(too_large("media", bytes.len() as u64));
        }
        if !media.sha256.is_empty() {
            let actual = sha256_hex(&bytes);
            if !actual.eq_ignore_ascii_case(&media.sha256) {
                return Err(FetchError::ChecksumMismatch {
                    actual,
                    expected: media.sha256.clone(),
                });
            }
        }
        Ok(bytes)
    }

    async fn fetch_uri(&self, uri: &str, max_bytes: u64) -> Result<Bytes, FetchError> {
        let bad_uri = |e: &dyn std::fmt::Display| FetchError::BadUri(format!("`{uri}`: {e}"));
        let url = Url::parse(uri).map_err(|e| bad_uri(&e))?;
        let (store, path): (Arc<dyn ObjectStore>, Path) = if uri.starts_with(self.base.as_str()) {
            let rel = &uri[self.base.as_str().len()..];
            let rel = percent_decode(rel);
            (
                self.store.clone(),
                Path::from(format!("{}/{}", self.prefix, rel).trim_start_matches('/')),
            )
        } else {
            let (s, p) = object_store::parse_url_opts(&url, self.options.clone())
                .map_err(|e| bad_uri(&e))?;
            (Arc::from(s), p)
        };
        let got = store.get(&path).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                FetchError::MissingMedia(format!("{uri} does not exist"))
            }
            e => FetchError::Failed(format!("{uri}: {e}")),
        })?;
        if got.meta.size > max_bytes {
            return Err(FetchError::TooLarge {
                what: uri.to_string(),
                size: got.meta.size,
                limit: max_bytes,
            });
        }
        got.bytes()
            .await
            .map_err(|e| FetchError::Failed(format!("{uri}: {e}")))
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path, inline: usize) -> MediaStore {
        MediaStore::open(&StoreConfig {
            url: dir.display().to_string(),
            inline_max_bytes: inline,
            options: BTreeMap::new(),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn small_blobs_inline_large_ones_by_uri_and_both_fetch_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 8);
        let small = s
            .reference("a/small", Bytes::from_static(b"tiny"), "", true)
            .await
            .unwrap();
        assert!(matches!(small.location, Some(Location::Inline(_))));
        let big = s
            .reference("a/big name", Bytes::from(vec![7u8; 100]), "", true)
            .await
            .unwrap();
        let Some(Location::Uri(uri)) = &big.location else {
            panic!("not a uri")
        };
        assert!(uri.starts_with("file://"), "{uri}");
        assert_eq!(s.fetch(&small, 1000).await.unwrap().as_ref(), b"tiny");
        assert_eq!(s.fetch(&big, 1000).await.unwrap().len(), 100);
    }

    #[tokio::test]
    async fn fetch_enforces_size_and_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 8);
        let mut r = s
            .reference("x", Bytes::from(vec![1u8; 64]), "", true)
            .await
            .unwrap();
        let e = s.fetch(&r, 10).await.unwrap_err();
        assert!(
            matches!(
                e,
                FetchError::TooLarge {
                    size: 64,
                    limit: 10,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.kind(), "too_large");
        assert_eq!(StageError::from(e).domain, ErrorDomain::Input);
        r.sha256 = "00".repeat(32);
        assert_eq!(
            s.fetch(&r, 1000).await.unwrap_err().kind(),
            "checksum_mismatch"
        );
        let missing = MediaRef {
            location: Some(Location::Uri(format!("{}nope", s.base))),
            ..Default::default()
        };
        let e = s.fetch(&missing, 1000).await.unwrap_err();
        assert_eq!(e.kind(), "missing_media");
        assert!(!e.retryable());
    }
}
