//! Which text classifier to load, and loading it: the policy (a file or the shipped one), the
//! sentence encoder and tokenizer (manifest models, verified in the model cache), and the
//! refining encoder of the policy's `[refine]`.

use std::path::Path;

use clipguard_models::{Cache, Manifest, ModelError};

use crate::embed::TextEmbedder;
use crate::{DEFAULT_POLICY, HeadsCache, TextClassifier, TextError, TextPolicy, default_heads_dir};

/// What a text classifier is loaded from.
#[derive(Debug, Clone, Copy)]
pub struct TextSetup<'a> {
    /// Sentence encoder (a manifest model); empty: blocklists only.
    pub model: &'a str,
    /// Its tokenizer (a manifest model).
    pub tokenizer: &'a str,
    /// Text policy file; `None`: the shipped one.
    pub policy: Option<&'a Path>,
    /// Load the policy's `[refine]` encoder for the uncertain band.
    pub refine: bool,
}

impl TextSetup<'static> {
    /// What clipguard ships: MiniLM, the shipped policy, MPNet for its uncertain band.
    pub const SHIPPED: TextSetup<'static> = TextSetup {
        model: "minilm-l6-int8",
        tokenizer: "minilm-l6-tokenizer",
        policy: None,
        refine: true,
    };
}

impl TextSetup<'_> {
    /// Loads the text classifier: the policy and, unless `model` is empty, the sentence
    /// encoder, verified in the model cache.
    ///
    /// The exemplar embeddings and trained heads are cached beside the models
    /// (`<models>/derived/text-heads`), keyed by the encoder's files and the exemplars, so only
    /// the first load after a change of either trains them.
    ///
    /// With `refine` and a policy with `[refine]`, the stronger encoder's files are checked
    /// now and the encoder loads at first use (or [`TextClassifier::warm_refiner`]); it decides
    /// the categories the first one scores inside the uncertain band.
    pub fn load(&self) -> Result<TextClassifier, TextError> {
        let policy = self.policy()?;
        let refined = policy.refined().filter(|_| self.refine);
        let classifier = match self.encoder()? {
            Some((embedder, cache)) => TextClassifier::new_cached(policy, Some(embedder), &cache)?,
            None => return TextClassifier::new(policy, None),
        };
        let Some((spec, policy)) = refined else {
            return Ok(classifier);
        };
        // Missing files are a start-up error; the encoder itself loads at first use.
        let manifest = Manifest::load_default()?;
        let cache = Cache::default();
        for name in [&spec.encoder, &spec.tokenizer] {
            let entry = manifest.get(name)?;
            if !cache.path(entry).exists() {
                return Err(ModelError::Missing {
                    name: entry.name.clone(),
                    path: cache.path(entry),
                }
                .into());
            }
        }
        let (encoder, tokenizer) = (spec.encoder.clone(), spec.tokenizer.clone());
        Ok(classifier.with_refiner(
            &spec.encoder,
            spec.band,
            Box::new(move || {
                let (embedder, cache) = load_encoder(&encoder, &tokenizer)?;
                TextClassifier::new_cached(policy, Some(embedder), &cache)
            }),
        ))
    }

    /// The refining encoder and tokenizer [`TextSetup::load`] loads: the policy's `[refine]`
    /// ones, with `refine` and a first encoder; none if the policy cannot be read (validation
    /// says why).
    pub fn refine_models(&self) -> Vec<String> {
        if !self.refine || self.model.is_empty() {
            return Vec::new();
        }
        match self.policy().map(|p| p.refine) {
            Ok(Some(r)) => vec![r.encoder, r.tokenizer],
            _ => Vec::new(),
        }
    }

    /// The text policy as the refining encoder's heads use it (its `[refine.thresholds]`) and
    /// that encoder; `None` when the policy has no `[refine]`.
    pub fn refine_parts(&self) -> Result<Option<(TextPolicy, TextEmbedder)>, TextError> {
        let Some((spec, policy)) = self.policy()?.refined() else {
            return Ok(None);
        };
        let (embedder, _) = load_encoder(&spec.encoder, &spec.tokenizer)?;
        Ok(Some((policy, embedder)))
    }

    /// The text policy and the sentence encoder (`None` when `model` is empty).
    pub fn parts(&self) -> Result<(TextPolicy, Option<TextEmbedder>), TextError> {
        let policy = self.policy()?;
        Ok((policy, self.encoder()?.map(|(e, _)| e)))
    }

    /// The configured policy file, or the shipped one.
    pub fn policy(&self) -> Result<TextPolicy, TextError> {
        match self.policy {
            Some(path) => TextPolicy::load(path),
            None => TextPolicy::parse(DEFAULT_POLICY, "(shipped policy/text.toml)"),
        }
    }

    fn encoder(&self) -> Result<Option<(TextEmbedder, HeadsCache)>, TextError> {
        if self.model.is_empty() {
            return Ok(None);
        }
        load_encoder(self.model, self.tokenizer).map(Some)
    }
}

/// A sentence encoder (manifest models), verified in the model cache, and where its trained
/// heads are cached (`<models>/derived/text-heads`, keyed by the manifest's SHA-256 of its
/// files).
pub fn load_encoder(name: &str, tokenizer: &str) -> Result<(TextEmbedder, HeadsCache), TextError> {
    let manifest = Manifest::load_default()?;
    let cache = Cache::default();
    let model = manifest.get(name)?;
    let tokenizer = manifest.get(tokenizer)?;
    let embedder = TextEmbedder::load(
        name,
        &cache.verified_path(model)?,
        &cache.verified_path(tokenizer)?,
    )?;
    let heads = HeadsCache {
        dir: default_heads_dir(&cache.dir),
        encoder: format!("{}:{}:{}", model.name, model.sha256, tokenizer.sha256),
    };
    Ok((embedder, heads))
}
