//! C2PA provenance: the manifest store a clip carries, read and validated with the `c2pa` crate
//! (the claim's signature, the hard binding of the manifest to the file's bytes, the
//! assertions' hashes) into a [`Provenance`]:
//!
//! - `present`: a manifest whose checks pass (`trusted` when its signer chains to a configured
//!   trust anchor; none is configured by default, so a valid test signature is `present`,
//!   untrusted);
//! - `invalid`: a manifest that fails a check, with the failures (`code: explanation`), e.g.
//!   `assertion.bmffHash.mismatch` after a byte of the media changed;
//! - `absent`: no manifest, or a container the reader does not cover (then `note` says which).
//!
//! Nothing is fetched: remote manifests and OCSP are off, so a clip is judged from its own bytes.

use std::io::Cursor;

use c2pa::validation_results::ValidationState;
use clipguard_schemas::Provenance;

pub const PRESENT: &str = "present";
pub const INVALID: &str = "invalid";
pub const ABSENT: &str = "absent";

/// The reader's settings: nothing from the network.
const SETTINGS: &str = r#"{"verify": {"remote_manifest_fetch": false, "ocsp_fetch": false}}"#;

/// The C2PA embedding of a file by its first bytes: ISO BMFF (MP4, MOV, M4V) and AVI; `None`
/// for containers C2PA does not define an embedding for (WebM, Matroska, MPEG-TS, ...).
pub fn format_of(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return Some(if &bytes[8..12] == b"qt  " {
            "video/quicktime"
        } else {
            "video/mp4"
        });
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"AVI " {
        return Some("video/avi");
    }
    None
}

fn absent(note: &str) -> Provenance {
    Provenance {
        state: ABSENT.into(),
        note: note.into(),
        ..Provenance::default()
    }
}

/// Reads and validates the manifest store of a clip's bytes. A reader that panics on hostile
/// bytes gives `invalid` (the clip still gets its verdict; the worker goes on).
pub fn read(bytes: &[u8]) -> Provenance {
    read_trusting(bytes, None)
}

/// [`read`], with `trust_anchors` (a PEM bundle of root certificates): a manifest whose signer
/// chains to one of them is `trusted`.
pub fn read_trusting(bytes: &[u8], trust_anchors: Option<&str>) -> Provenance {
    std::panic::catch_unwind(|| read_store_trusting(bytes, trust_anchors)).unwrap_or_else(|_| {
        Provenance {
            state: INVALID.into(),
            validation_errors: vec![
                "manifest store unreadable: the C2PA reader failed on it".into(),
            ],
            ..Provenance::default()
        }
    })
}

/// [`read`] without the guard against a panicking reader (the fuzz target's entry).
pub fn read_store(bytes: &[u8]) -> Provenance {
    read_store_trusting(bytes, None)
}

fn read_store_trusting(bytes: &[u8], trust_anchors: Option<&str>) -> Provenance {
    let Some(format) = format_of(bytes) else {
        return absent("the container has no C2PA embedding (MP4, MOV and AVI have)");
    };
    let settings = match trust_anchors {
        None => SETTINGS.to_string(),
        Some(pem) => {
            let mut v: serde_json::Value = serde_json::from_str(SETTINGS).unwrap_or_default();
            v["trust"] = serde_json::json!({ "trust_anchors": pem });
            v.to_string()
        }
    };
    let context = match c2pa::Context::new().with_settings(settings.as_str()) {
        Ok(c) => c,
        Err(e) => {
            return Provenance {
                state: INVALID.into(),
                validation_errors: vec![format!("reader settings: {e}")],
                ..Provenance::default()
            };
        }
    };
    let reader = match c2pa::Reader::from_context(context).with_stream(format, Cursor::new(bytes)) {
        Ok(r) => r,
        Err(c2pa::Error::JumbfNotFound) | Err(c2pa::Error::ProvenanceMissing) => {
            return absent("no C2PA manifest");
        }
        Err(e) => {
            // A manifest store is there but cannot be read: as good as a broken one.
            return Provenance {
                state: INVALID.into(),
                validation_errors: vec![format!("manifest store unreadable: {e}")],
                ..Provenance::default()
            };
        }
    };
    let mut out = Provenance {
        state: match reader.validation_state() {
            ValidationState::Invalid => INVALID,
            _ => PRESENT,
        }
        .into(),
        trusted: reader.validation_state() == ValidationState::Trusted,
        ..Provenance::default()
    };
    if let Some(failures) = reader
        .validation_results()
        .and_then(|v| v.active_manifest())
    {
        for f in failures.failure() {
            out.validation_errors.push(match f.explanation() {
                Some(why) => format!("{}: {why}", f.code()),
                None => f.code().to_string(),
            });
        }
    }
    let Some(manifest) = reader.active_manifest() else {
        if out.validation_errors.is_empty() {
            out.validation_errors
                .push("a manifest store without an active manifest".into());
        }
        out.state = INVALID.into();
        return out;
    };
    out.claim_generator = manifest
        .claim_generator_info
        .as_ref()
        .and_then(|g| g.first())
        .map(|g| match &g.version {
            Some(v) => format!("{}/{v}", g.name),
            None => g.name.clone(),
        })
        .or_else(|| manifest.claim_generator().map(str::to_string))
        .unwrap_or_default();
    out.signer = manifest
        .signature_info()
        .and_then(|s| s.issuer.clone().or_else(|| s.common_name.clone()))
        .unwrap_or_default();
    if let Ok(actions) =
        manifest.find_assertion::<c2pa::assertions::Actions>(c2pa::assertions::Actions::LABEL)
    {
        for a in actions.actions() {
            out.actions.push(match a.source_type() {
                Some(t) => {
                    let t = t.to_string();
                    let short = t.rsplit('/').next().unwrap_or(&t).to_string();
                    format!("{} {short}", a.action())
                }
                None => a.action().to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_without_an_embedding_are_absent_without_reading() {
        assert_eq!(format_of(b"\x1a\x45\xdf\xa3webm........"), None);
        assert_eq!(
            format_of(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00"),
            Some("video/mp4")
        );
        assert_eq!(
            format_of(b"\x00\x00\x00\x14ftypqt  \x00\x00"),
            Some("video/quicktime")
        );
        let p = read(b"\x1a\x45\xdf\xa3 not a clip with C2PA");
        assert_eq!(p.state, ABSENT);
        assert!(p.note.contains("no C2PA embedding"), "{p:?}");
    }
}
