//! The rendition's C2PA manifest, signed with the operator's key: the original clip as the
//! parent ingredient (its own manifest kept inside when it has one), the watermark and the
//! re-encode as actions, and clipguard's moderation of the clip as an assertion.

use std::io::Cursor;

use c2pa::{Builder, BuilderIntent, Context, SigningAlg};
use serde::Serialize;

use crate::{ReleaseConfig, ReleaseError};

/// The label of clipguard's assertion in the manifests it signs.
pub const MODERATION_LABEL: &str = "org.clipguard.moderation";

/// The builder and reader settings: no thumbnail (the crate is built without image codecs),
/// nothing fetched from the network.
const SETTINGS: &str = r#"{"builder": {"thumbnail": {"enabled": false}}, "verify": {"remote_manifest_fetch": false, "ocsp_fetch": false}}"#;

/// What clipguard's assertion records: the decision the rendition was made under.
#[derive(Debug, Clone, Serialize)]
pub struct Moderation {
    pub clip_id: String,
    /// `allow`, for the audience below.
    pub decision: String,
    pub audience: String,
    pub surface: String,
    pub policy_version: String,
    pub verdict_revision: u32,
    /// When the verdict was decided, ms since the Unix epoch.
    pub decided_at_ms: i64,
    /// What decided: `policy`, `reasoning:<model>`, `review:<reviewer>`.
    pub engine: String,
    pub watermark: String,
}

/// The operator's signing key and certificate chain.
pub struct Signing {
    signer: c2pa::BoxedSigner,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing").finish_non_exhaustive()
    }
}

impl Signing {
    /// The signer `cfg` names: the certificate chain from `signing_cert`, the private key
    /// from the file `signing_key` or, when that is empty, from the environment variable
    /// `signing_key_env` (a mounted secret). `None` when no certificate is configured.
    pub fn load(cfg: &ReleaseConfig) -> Result<Option<Self>, ReleaseError> {
        if cfg.signing_cert.is_empty() {
            return Ok(None);
        }
        let cert = std::fs::read(&cfg.signing_cert).map_err(|e| {
            ReleaseError::Config(format!("release.signing_cert {}: {e}", cfg.signing_cert))
        })?;
        let key = if !cfg.signing_key.is_empty() {
            std::fs::read(&cfg.signing_key).map_err(|e| {
                ReleaseError::Config(format!("release.signing_key {}: {e}", cfg.signing_key))
            })?
        } else {
            std::env::var(&cfg.signing_key_env)
                .map_err(|_| {
                    ReleaseError::Config(format!(
                        "release.signing_cert is set but there is no key: set release.signing_key \
                         (a file) or the environment variable {}",
                        cfg.signing_key_env
                    ))
                })?
                .into_bytes()
        };
        let alg: SigningAlg = cfg.signing_alg.parse().map_err(|_| {
            ReleaseError::Config(format!(
                "release.signing_alg: `{}` is not one of es256, es384, es512, ps256, ps384, ps512, ed25519",
                cfg.signing_alg
            ))
        })?;
        let signer = c2pa::create_signer::from_keys(&cert, &key, alg, None).map_err(|e| {
            ReleaseError::Config(format!(
                "release.signing_cert / signing_key: not a usable {} certificate chain and key: {e}",
                cfg.signing_alg
            ))
        })?;
        Ok(Some(Self { signer }))
    }

    /// `rendition` (MP4 bytes) with a manifest: `original` as its parent ingredient, the
    /// watermark and re-encode as `c2pa.edited` and `c2pa.transcoded`, and `moderation` as
    /// [`MODERATION_LABEL`].
    pub fn sign(
        &self,
        original: &[u8],
        title: &str,
        rendition: Vec<u8>,
        moderation: &Moderation,
    ) -> Result<Vec<u8>, ReleaseError> {
        let failed = |what: &str, e: c2pa::Error| ReleaseError::Sign(format!("{what}: {e}"));
        let context = Context::new()
            .with_settings(SETTINGS)
            .map_err(|e| failed("settings", e))?;
        let definition = serde_json::json!({
            "title": title,
            "format": "video/mp4",
            "claim_generator_info": [{"name": "clipguard", "version": env!("CARGO_PKG_VERSION")}],
        });
        let mut builder = Builder::from_context(context)
            .with_definition(definition.to_string())
            .map_err(|e| failed("manifest", e))?;
        builder.set_intent(BuilderIntent::Edit);
        let parent = serde_json::json!({"title": title, "relationship": "parentOf"}).to_string();
        match clipguard_media::provenance::format_of(original) {
            Some(format) => {
                builder
                    .add_ingredient_from_stream(parent, format, &mut Cursor::new(original))
                    .map_err(|e| failed("the original as ingredient", e))?;
            }
            None => {
                // A container C2PA has no embedding for (WebM, Matroska): the ingredient is
                // named and hashed, without a manifest of its own.
                let mut ingredient = c2pa::Ingredient::new_v2(title, "application/octet-stream");
                ingredient.set_relationship(c2pa::Relationship::ParentOf);
                builder.add_ingredient(ingredient);
            }
        }
        for (action, what) in [
            (
                c2pa::assertions::c2pa_action::EDITED,
                format!(
                    "burned in a visible moving watermark ({})",
                    moderation.watermark
                ),
            ),
            (
                c2pa::assertions::c2pa_action::TRANSCODED,
                "re-encoded as H.264 and AAC in MP4".to_string(),
            ),
        ] {
            builder
                .add_action(serde_json::json!({
                    "action": action,
                    "parameters": {"description": what},
                }))
                .map_err(|e| failed("action", e))?;
        }
        builder
            .add_assertion(MODERATION_LABEL, moderation)
            .map_err(|e| failed("moderation assertion", e))?;
        let mut signed = Cursor::new(Vec::new());
        builder
            .sign(
                self.signer.as_ref(),
                "video/mp4",
                &mut Cursor::new(rendition),
                &mut signed,
            )
            .map_err(|e| failed("signing", e))?;
        Ok(signed.into_inner())
    }
}

/// The active manifest's label and the value of clipguard's assertion in signed `bytes`.
pub fn manifest_of(bytes: &[u8]) -> Option<(String, serde_json::Value)> {
    let context = Context::new().with_settings(SETTINGS).ok()?;
    let reader = c2pa::Reader::from_context(context)
        .with_stream("video/mp4", Cursor::new(bytes))
        .ok()?;
    let label = reader.active_label()?.to_string();
    let assertion = reader
        .active_manifest()?
        .find_assertion::<serde_json::Value>(MODERATION_LABEL)
        .ok()?;
    Some((label, assertion))
}
