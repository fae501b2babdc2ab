//! Text classification of prompts, scene descriptions and transcripts against the policy's
//! text categories: policy blocklists (word boundaries, case, leetspeak, spaced-out letters,
//! stretched letters, one-edit fuzzy variants of long words) plus a per-category logistic head
//! over sentence embeddings, trained at load on the exemplar sentences kept beside the policy.
//!
//! Every score comes with the text span that drove it and, for the embedding head, the nearest
//! exemplar, so a reviewer sees why.

use clipguard_schemas::{CategoryScore, Evidence};

use crate::embed::TextEmbedder;

/// The text policy shipped with clipguard (`policy/text.toml`).
pub const DEFAULT_POLICY: &str = clipguard_policy::DEFAULT_TEXT_POLICY;

/// Reported scores at or above this are findings (each category's operating point maps here).
pub const REPORTED_THRESHOLD: f32 = 0.5;

/// Longest unit embedded at once, in words (MiniLM takes 128 tokens; ~1.3 tokens a word).
const MAX_UNIT_WORDS: usize = 80;

mod attributes;
mod cache;
mod cv;
pub mod embed;
mod error;
mod heads;
mod policy;
pub mod prompt;
mod setup;
mod words;

pub use cache::{HeadsCache, default_dir as default_heads_dir};
pub use cv::{
    CvCategory, PARAPHRASE_COSINE, cross_validate, cross_validate_with, exemplar_vectors,
};
pub use error::TextError;
pub use heads::calibrate;
pub use policy::{Refine, TextCategory, TextPolicy};
pub use setup::{TextSetup, load_encoder};

use attributes::Attribute;
use cv::*;
use heads::*;
use words::*;

struct CategoryModel {
    name: String,
    threshold: f32,
    blocklist_score: f32,
    terms: Vec<Term>,
    /// Its heads; for a composed category, its attribute head.
    heads: Option<Heads>,
    /// The unsafe exemplars its heads took as positives (its family's), with their embeddings
    /// (for "nearest exemplar" and the gates).
    exemplars: Vec<(String, Vec<f32>)>,
    /// For a composed category: its base (index into the categories) and attribute.
    compose: Option<(usize, Attribute)>,
    /// The attribute its own score needs not to be denied (see [`TextCategory::requires`]).
    requires: Option<Attribute>,
}

/// A piece of text to classify and where it came from.
#[derive(Debug, Clone)]
pub struct TextInput<'a> {
    /// `prompt`, `scene_description`, `transcript`.
    pub source: &'a str,
    pub text: &'a str,
    /// Clip time the text covers (transcript segments), else 0.
    pub start_s: f64,
    pub end_s: f64,
}

/// The policy's text categories, ready to score.
pub struct TextClassifier {
    pub version: String,
    embedder: Option<TextEmbedder>,
    categories: Vec<CategoryModel>,
    /// Benign exemplars (shared and near misses) and their embeddings, for the near-miss gate.
    benign: Vec<(String, Vec<f32>)>,
    near_miss_gate: f32,
    support_gate: Option<[f32; 2]>,
    /// Whether the embeddings and heads were read from a [`HeadsCache`] instead of computed.
    pub from_cache: bool,
    /// The stronger encoder's classifier for the uncertain band, if the policy has one and it
    /// was loaded.
    refine: Option<Refiner>,
}

/// Builds the refining classifier (loads its encoder, reads or trains its heads).
pub type RefinerLoader = Box<dyn FnOnce() -> Result<TextClassifier, TextError> + Send>;

/// See [`Refine`]. Loaded on first use (or by [`TextClassifier::warm_refiner`]): a prompt
/// check that never reaches the band never pays for the larger encoder.
struct Refiner {
    band: [f32; 2],
    encoder: String,
    classifier: std::sync::LazyLock<Result<Box<TextClassifier>, String>, LoadOnce>,
}

type LoadOnce = Box<dyn FnOnce() -> Result<Box<TextClassifier>, String> + Send>;

/// Evidence `kind` of the note a refined category carries: which encoder decided, and what
/// the first one had scored.
pub const REFINED_KIND: &str = "text_refine";

impl std::fmt::Debug for TextClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextClassifier")
            .field("version", &self.version)
            .field(
                "categories",
                &self.categories.iter().map(|c| &c.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A unit of text embedded on its own: a sentence, or a window of a long one.
struct Unit<'a> {
    input: usize,
    text: &'a str,
}

/// Input `i`'s text with its neighbours of the same source (the segment before and after),
/// in order: the context a required attribute is read in.
fn context(inputs: &[TextInput<'_>], i: usize) -> String {
    let from = i.saturating_sub(1);
    let to = (i + 1).min(inputs.len().saturating_sub(1));
    (from..=to)
        .filter(|&j| inputs[j].source == inputs[i].source)
        .map(|j| inputs[j].text)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits into sentences (after `.`, `!`, `?`, `;` or a line break), long ones into windows of
/// [`MAX_UNIT_WORDS`] words.
fn units(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        let end = matches!(c, '.' | '!' | '?' | ';' | '\n')
            && bytes
                .get(i + 1)
                .is_none_or(|b| b.is_ascii_whitespace() || *b == b'"');
        if end {
            out.push(&text[start..=i]);
            start = i + 1;
        }
    }
    out.push(&text[start..]);
    let mut windows = Vec::new();
    for s in out {
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        // Byte offsets of word starts, to cut the sentence without copying.
        let starts: Vec<usize> = s
            .split_whitespace()
            .map(|w| w.as_ptr() as usize - s.as_ptr() as usize)
            .collect();
        if starts.len() <= MAX_UNIT_WORDS {
            windows.push(s);
            continue;
        }
        let mut i = 0;
        while i < starts.len() {
            let end = starts.get(i + MAX_UNIT_WORDS).copied().unwrap_or(s.len());
            windows.push(s[starts[i]..end].trim());
            i += MAX_UNIT_WORDS;
        }
    }
    windows
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The nearest of `set` to `v`: (index, cosine); unit vectors.
fn nearest<'a>(set: impl Iterator<Item = &'a [f32]>, v: &[f32]) -> Option<(usize, f32)> {
    set.enumerate()
        .map(|(i, e)| (i, dot(e, v)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// The near-miss gate's factor (see [`TextPolicy::near_miss_gate`]): 1 when the nearest unsafe
/// exemplar is at least as close as the nearest benign one, falling towards 0 as the benign one
/// gets closer.
fn gate_factor(unsafe_cos: f32, benign_cos: f32, gate: f32) -> f32 {
    if gate <= 0.0 {
        return 1.0;
    }
    (2.0 / (1.0 + (-(unsafe_cos - benign_cos) / gate).exp())).min(1.0)
}

/// The support gate's factor (see [`TextPolicy::support_gate`]): 0 at or below `lo`, rising
/// linearly to 1 at `hi`, where `unsafe_cos` is the cosine to the nearest unsafe exemplar.
fn support_factor(unsafe_cos: f32, gate: Option<[f32; 2]>) -> f32 {
    match gate {
        Some([lo, hi]) if hi > lo => ((unsafe_cos - lo) / (hi - lo)).clamp(0.0, 1.0),
        _ => 1.0,
    }
}

fn quote(s: &str) -> String {
    const MAX: usize = 120;
    let s = s.trim();
    if s.chars().count() <= MAX {
        format!("\u{201c}{s}\u{201d}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("\u{201c}{cut}…\u{201d}")
    }
}

impl TextClassifier {
    /// Builds the classifier: blocklists compiled, exemplars embedded, two heads per category
    /// with unsafe exemplars (positives: its own; negatives: everything else — shared and
    /// near-miss benign sentences and the other categories' unsafe ones — and, for the second,
    /// its own near misses only; see [`Heads`]). Without an embedder only blocklists score.
    pub fn new(policy: TextPolicy, embedder: Option<TextEmbedder>) -> Result<Self, TextError> {
        Self::build(policy, embedder, None)
    }

    /// As [`TextClassifier::new`], reading the embeddings and heads from `cache` when it holds
    /// them for exactly this encoder and these exemplars, and writing them there otherwise. A
    /// cache that cannot be read or written is logged and built around, never an error.
    pub fn new_cached(
        policy: TextPolicy,
        embedder: Option<TextEmbedder>,
        cache: &HeadsCache,
    ) -> Result<Self, TextError> {
        Self::build(policy, embedder, Some(cache))
    }

    fn build(
        policy: TextPolicy,
        embedder: Option<TextEmbedder>,
        cache: Option<&HeadsCache>,
    ) -> Result<Self, TextError> {
        let all = exemplar_sentences(&policy);
        let names: Vec<&str> = policy.categories.keys().map(String::as_str).collect();
        // What the heads are trained for: a composed category's name carries its base.
        let roles: Vec<String> = names
            .iter()
            .map(|n| match policy.base_of(n) {
                Some(b) => format!("{n}={b}&attribute"),
                None => n.to_string(),
            })
            .collect();
        let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
        let width = embedder.as_ref().map_or(0, |e| e.width());
        // The cache only matters with an encoder: without one there is nothing to train.
        let cache = cache
            .filter(|_| embedder.is_some())
            .map(|c| (c, c.key(&roles, &all)));
        let cached = cache.as_ref().and_then(|(c, k)| {
            c.load(k, all.len(), width, names.len())
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cached text heads not used; training them again");
                    None
                })
        });
        let from_cache = cached.is_some();
        let trained = match (cached, &embedder) {
            (Some(t), _) => t,
            (None, Some(e)) => {
                let vectors = embed_all(e, &all)?;
                let heads = names
                    .iter()
                    .map(|name| {
                        let t = training_sets(&policy, &all, &vectors, name, |_| true);
                        (!t.pos.is_empty() && !t.neg.is_empty())
                            .then(|| Heads::train(&t.pos, &t.neg, &t.near, width))
                    })
                    .collect();
                let t = cache::Trained { vectors, heads };
                if let Some((c, k)) = &cache
                    && let Err(e) = c.store(k, &t, width)
                {
                    tracing::warn!(error = %e, "could not cache the text heads");
                }
                t
            }
            (None, None) => cache::Trained {
                vectors: Vec::new(),
                heads: names.iter().map(|_| None).collect(),
            },
        };
        let vectors = trained.vectors;
        let mut trained_heads = trained.heads.into_iter();
        let mut categories = Vec::new();
        for (name, c) in &policy.categories {
            let terms = compile(&c.blocklist);
            let family = match &c.compose {
                Some(_) => vec![name.as_str()],
                None => policy.family(name),
            };
            let exemplars = all
                .iter()
                .zip(&vectors)
                .filter(|(e, _)| e.unsafe_of.is_some_and(|u| family.contains(&u)))
                .map(|(e, v)| (e.text.to_string(), v.clone()))
                .collect();
            let heads = trained_heads.next().flatten();
            let compose = c.compose.as_ref().map(|k| {
                let base = names.iter().position(|n| *n == k.base).unwrap_or(0);
                let spec = policy
                    .attributes
                    .get(&k.attribute)
                    .cloned()
                    .unwrap_or_default();
                (base, Attribute::new(&k.attribute, &spec))
            });
            categories.push(CategoryModel {
                name: name.clone(),
                threshold: c.threshold,
                blocklist_score: c.blocklist_score,
                terms,
                heads,
                exemplars,
                compose,
                requires: policy.required(name),
            });
        }
        let benign = all
            .iter()
            .zip(&vectors)
            .filter(|(e, _)| e.is_benign())
            .map(|(e, v)| (e.text.to_string(), v.clone()))
            .collect();
        Ok(TextClassifier {
            version: policy.version,
            embedder,
            categories,
            benign,
            near_miss_gate: policy.near_miss_gate,
            support_gate: policy.support_gate,
            from_cache,
            refine: None,
        })
    }

    /// A unit's raw score by a category's own heads, gated, and the words that explain it.
    fn own_score(
        &self,
        cat: &CategoryModel,
        heads: &Heads,
        v: &[f32],
        near_unsafe: Option<(usize, f32)>,
        near_benign: Option<(usize, f32)>,
    ) -> (f32, String) {
        let unsafe_cos = near_unsafe.map_or(-1.0, |n| n.1);
        let factor = gate_factor(
            unsafe_cos,
            near_benign.map_or(-1.0, |n| n.1),
            self.near_miss_gate,
        );
        let support = support_factor(unsafe_cos, self.support_gate);
        let (raw, against_all, against_near) = heads.score(v);
        let mut near = match against_near {
            Some(b) => format!(
                " (heads: against everything allowed {against_all:.2}, against its near misses {b:.2})"
            ),
            None => String::new(),
        };
        if let Some((i, sim)) = near_unsafe {
            near.push_str(&format!(
                "; nearest exemplar {} (cosine {sim:.2})",
                quote(&cat.exemplars[i].0)
            ));
        }
        if factor < 0.995
            && let Some((i, sim)) = near_benign
        {
            near.push_str(&format!(
                "; nearest allowed exemplar {} (cosine {sim:.2}) lowered it ×{factor:.2}",
                quote(&self.benign[i].0)
            ));
        }
        if support < 0.995 {
            near.push_str(&format!(
                "; far from the category's exemplars (support gate ×{support:.2})"
            ));
        }
        (raw * factor * support, near)
    }

    pub fn categories(&self) -> impl Iterator<Item = &str> {
        self.categories.iter().map(|c| c.name.as_str())
    }

    /// The sentence encoder's name (`None`: blocklists only).
    pub fn encoder(&self) -> Option<&str> {
        self.embedder.as_ref().map(|e| e.name.as_str())
    }

    /// The stronger encoder, if this classifier refines its uncertain band with one.
    pub fn refined_by(&self) -> Option<&str> {
        self.refine.as_ref().map(|r| r.encoder.as_str())
    }

    /// Cascades to the classifier `load` builds (the same policy's categories, heads on the
    /// stronger encoder `encoder`: see [`TextPolicy::refined`]) for every category this
    /// classifier scores inside `band`. `load` runs once, at the first such score or at
    /// [`TextClassifier::warm_refiner`].
    pub fn with_refiner(mut self, encoder: &str, band: [f32; 2], load: RefinerLoader) -> Self {
        let names: Vec<String> = self.categories().map(str::to_string).collect();
        let init: LoadOnce = Box::new(move || {
            let strong = load().map_err(|e| format!("the refining text encoder: {e}"))?;
            if !strong.categories().eq(names.iter().map(String::as_str)) {
                return Err(format!(
                    "the refining classifier's categories {:?} are not {names:?}",
                    strong.categories().collect::<Vec<_>>()
                ));
            }
            Ok(Box::new(strong))
        });
        self.refine = Some(Refiner {
            band,
            encoder: encoder.to_string(),
            classifier: std::sync::LazyLock::new(init),
        });
        self
    }

    /// Loads the refining encoder now, if there is one and it is not loaded (a stage calls it
    /// at start, off its serving path, so the first uncertain score does not wait for it).
    pub fn warm_refiner(&self) -> Result<(), TextError> {
        match &self.refine {
            Some(r) => std::sync::LazyLock::force(&r.classifier)
                .as_ref()
                .map(|_| ())
                .map_err(|e| TextError::Load(e.clone())),
            None => Ok(()),
        }
    }

    /// Scores every category over all `inputs`: the highest score of any sentence or blocklist
    /// hit, with evidence (source, time span, the quoted text, what matched) for each unit at or
    /// above the category's threshold. With a refiner, a category scored inside its band is
    /// scored again by the stronger encoder's heads, whose score stands, with a
    /// [`REFINED_KIND`] note saying so.
    pub fn classify(&self, inputs: &[TextInput<'_>]) -> Result<Vec<CategoryScore>, TextError> {
        let mut scores = self.classify_alone(inputs)?;
        let Some(r) = &self.refine else {
            return Ok(scores);
        };
        let [lo, hi] = r.band;
        let uncertain: Vec<usize> = (0..scores.len())
            .filter(|&i| (lo..=hi).contains(&scores[i].score))
            .collect();
        if uncertain.is_empty() {
            return Ok(scores);
        }
        let strong = std::sync::LazyLock::force(&r.classifier)
            .as_ref()
            .map_err(|e| TextError::Load(e.clone()))?;
        let mut strong = strong.classify_alone(inputs)?;
        let first = self.encoder().unwrap_or("blocklists");
        let second = r.encoder.as_str();
        for i in uncertain {
            let mut s = std::mem::take(&mut strong[i]);
            s.evidence.push(Evidence {
                kind: REFINED_KIND.into(),
                start_s: 0.0,
                end_s: 0.0,
                detail: format!(
                    "{first} scored {:.2}, inside the uncertain band [{lo:.2}, {hi:.2}]; \
                     {second} scored {:.2}, which stands",
                    scores[i].score, s.score
                ),
            });
            scores[i] = s;
        }
        Ok(scores)
    }

    /// [`TextClassifier::classify`] by this classifier's own encoder, without refining.
    fn classify_alone(&self, inputs: &[TextInput<'_>]) -> Result<Vec<CategoryScore>, TextError> {
        let mut scores: Vec<CategoryScore> = self
            .categories
            .iter()
            .map(|c| CategoryScore {
                category: c.name.clone(),
                ..CategoryScore::default()
            })
            .collect();
        let evidence = |input: &TextInput<'_>, detail: String| Evidence {
            kind: input.source.to_string(),
            start_s: input.start_s,
            end_s: input.end_s,
            detail,
        };
        // Blocklists.
        for input in inputs {
            let ws = words(input.text);
            for (cat, out) in self.categories.iter().zip(scores.iter_mut()) {
                for (term, a, b) in find_terms(&cat.terms, &ws) {
                    out.score = out.score.max(cat.blocklist_score);
                    out.evidence.push(evidence(
                        input,
                        format!(
                            "blocklist term \u{201c}{}\u{201d} matched {} (chars {a}..{b})",
                            term.original,
                            quote(&input.text[a..b])
                        ),
                    ));
                }
            }
        }
        // Embeddings.
        let Some(embedder) = &self.embedder else {
            return Ok(scores);
        };
        let mut all_units: Vec<Unit<'_>> = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            for u in units(input.text) {
                all_units.push(Unit { input: i, text: u });
            }
        }
        let texts: Vec<&str> = all_units.iter().map(|u| u.text).collect();
        let mut vectors = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(16) {
            vectors.extend(embedder.embed(chunk)?);
        }
        // The nearest benign exemplar of each unit: the same for every category.
        let near_benign: Vec<Option<(usize, f32)>> = vectors
            .iter()
            .map(|v| nearest(self.benign.iter().map(|(_, e)| e.as_slice()), v))
            .collect();
        // Categories with heads of their own first: a composed category reads its base's raw
        // scores.
        let mut raws: Vec<Vec<f32>> = vec![Vec::new(); self.categories.len()];
        // Each input with its neighbours, built once for the categories that require an
        // attribute.
        let contexts: Vec<String> = if self.categories.iter().any(|c| c.requires.is_some()) {
            (0..inputs.len()).map(|i| context(inputs, i)).collect()
        } else {
            Vec::new()
        };
        for pass_composed in [false, true] {
            for (ci, (cat, out)) in self.categories.iter().zip(scores.iter_mut()).enumerate() {
                if cat.compose.is_some() != pass_composed {
                    continue;
                }
                let Some(heads) = &cat.heads else { continue };
                // What each input says about the attribute, found once.
                // A required attribute is read in the input's context: with its neighbours
                // from the same source (a transcript segment's context is often in the one
                // before or after: "call poison control" | "and do not make them vomit").
                let findings: Vec<attributes::Finding> = match (&cat.compose, &cat.requires) {
                    (Some((_, a)), _) => inputs.iter().map(|i| a.find(i.text)).collect(),
                    (None, Some(a)) => (0..inputs.len()).map(|i| a.find(&contexts[i])).collect(),
                    (None, None) => Vec::new(),
                };
                let mut unit_raws = Vec::with_capacity(all_units.len());
                for (ui, ((unit, v), &near_benign)) in
                    all_units.iter().zip(&vectors).zip(&near_benign).enumerate()
                {
                    let near_unsafe = nearest(cat.exemplars.iter().map(|(_, e)| e.as_slice()), v);
                    let (raw, detail) = match &cat.compose {
                        None => {
                            let (raw, detail) =
                                self.own_score(cat, heads, v, near_unsafe, near_benign);
                            match (&cat.requires, findings.get(unit.input)) {
                                (Some(a), Some(attributes::Finding::Against(c))) => {
                                    let text = &contexts[unit.input];
                                    // Said at debug level: below the threshold there is no
                                    // evidence to carry it.
                                    tracing::debug!(
                                        category = %cat.name,
                                        raw,
                                        "no {} cue, and {} {} says otherwise: scored 0",
                                        a.name,
                                        c.what,
                                        quote(&text[c.start..c.end])
                                    );
                                    (0.0, detail)
                                }
                                _ => (raw, detail),
                            }
                        }
                        Some((base, attribute)) => {
                            let base_raw = raws[*base].get(ui).copied().unwrap_or(0.0);
                            let head = heads.score(v).0;
                            let text = inputs[unit.input].text;
                            let finding = &findings[unit.input];
                            let attr = attributes::value(finding, head);
                            let why = match finding {
                                attributes::Finding::Cue(c) => format!(
                                    "{} cue {} {}",
                                    attribute.name,
                                    c.what,
                                    quote(&text[c.start..c.end])
                                ),
                                attributes::Finding::Against(c) => format!(
                                    "no {} cue, and {} {} says otherwise{}",
                                    attribute.name,
                                    c.what,
                                    quote(&text[c.start..c.end]),
                                    if attr > 0.0 {
                                        format!(
                                            ", overruled by the {} head {head:.2}",
                                            attribute.name
                                        )
                                    } else {
                                        String::new()
                                    }
                                ),
                                attributes::Finding::Unknown => format!(
                                    "{} head {head:.2}{}",
                                    attribute.name,
                                    near_unsafe
                                        .map(|(i, sim)| format!(
                                            ", nearest exemplar {} (cosine {sim:.2})",
                                            quote(&cat.exemplars[i].0)
                                        ))
                                        .unwrap_or_default()
                                ),
                            };
                            let base_name = &self.categories[*base].name;
                            (
                                base_raw.min(attr),
                                format!(
                                    " ({base_name} content {base_raw:.2} on the raw scale; {why})"
                                ),
                            )
                        }
                    };
                    unit_raws.push(raw);
                    let s = calibrate(raw, cat.threshold);
                    out.score = out.score.max(s);
                    if s >= REPORTED_THRESHOLD {
                        out.evidence.push(evidence(
                            &inputs[unit.input],
                            format!("{} scored {s:.2}{detail}", quote(unit.text)),
                        ));
                    }
                }
                raws[ci] = unit_raws;
            }
        }
        Ok(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(ws: &[Word]) -> Vec<&str> {
        ws.iter().map(|w| w.text.as_str()).collect()
    }

    #[test]
    fn support_gate_scores_down_text_far_from_the_exemplars() {
        let gate = Some([0.3, 0.5]);
        assert_eq!(support_factor(0.2, gate), 0.0);
        assert_eq!(support_factor(0.3, gate), 0.0);
        assert!((support_factor(0.4, gate) - 0.5).abs() < 1e-6);
        assert_eq!(support_factor(0.5, gate), 1.0);
        assert_eq!(support_factor(0.9, gate), 1.0);
        assert_eq!(support_factor(-1.0, None), 1.0);
        let bad = "version = \"t\"\nsupport_gate = [0.6, 0.4]\n[categories.x]\n";
        let err = TextPolicy::parse(bad, "test").unwrap_err().to_string();
        assert!(err.contains("support_gate: [0.6, 0.4]"), "{err}");
    }

    #[test]
    fn words_normalise_case_leetspeak_spacing_and_stretching() {
        assert_eq!(
            texts(&words("I want to K1LL mys3lf")),
            ["i", "want", "to", "kil", "myself"]
        );
        assert_eq!(texts(&words("k i l l  me")), ["kil", "me"]);
        assert_eq!(texts(&words("k.i.l.l")), ["kil"]);
        assert_eq!(texts(&words("kiiiiilll")), ["kil"]);
        assert_eq!(
            texts(&words("born in 1984, 3 cats")),
            ["born", "in", "1984", "3", "cats"]
        );
        assert_eq!(texts(&words("$uicide")), ["suicide"]);
        let ws = words("say: K1LL!");
        assert_eq!(&"say: K1LL!"[ws[1].start..ws[1].end], "K1LL");
    }

    #[test]
    fn a_refine_section_is_checked_and_gives_the_stronger_encoder_its_thresholds() {
        let base = "version = \"x\"\n[categories.a]\nthreshold = 0.8\nblocklist = [\"zz\"]\n";
        let ok = format!(
            "{base}[refine]\nencoder = \"e\"\ntokenizer = \"t\"\nband = [0.3, 0.7]\n\
             [refine.thresholds]\na = 0.6\n"
        );
        let (spec, refined) = TextPolicy::parse(&ok, "test").unwrap().refined().unwrap();
        assert_eq!(spec.band, [0.3, 0.7]);
        assert_eq!(refined.categories["a"].threshold, 0.6);
        assert!(refined.refine.is_none());
        let bad = format!(
            "{base}[refine]\nencoder = \"e\"\ntokenizer = \"t\"\nband = [0.7, 0.3]\n\
             [refine.thresholds]\nb = 0.6\n"
        );
        let e = TextPolicy::parse(&bad, "test").unwrap_err().to_string();
        assert!(e.contains("refine.band: [0.7, 0.3]"), "{e}");
        assert!(
            e.contains("refine.thresholds: \"b\" is not a category"),
            "{e}"
        );
    }

    #[test]
    fn a_required_attribute_must_exist_and_suits_only_a_category_with_heads() {
        let base = "version = \"x\"\n[attributes.a]\nterms = [\"zz\"]\n\
                    [categories.b]\nblocklist = [\"yy\"]\n";
        let ok = format!("{base}[categories.c]\nblocklist = [\"xx\"]\nrequires = \"a\"\n");
        TextPolicy::parse(&ok, "test").unwrap();
        let bad = format!(
            "{base}[categories.c]\nblocklist = [\"xx\"]\nrequires = \"nope\"\n\
             [categories.d]\nrequires = \"a\"\ncompose = {{ base = \"b\", attribute = \"a\" }}\n"
        );
        let e = TextPolicy::parse(&bad, "test").unwrap_err().to_string();
        assert!(
            e.contains("c.requires: \"nope\" is not under [attributes]"),
            "{e}"
        );
        assert!(e.contains("d.requires: a composed category"), "{e}");
    }

    #[test]
    fn a_required_attribute_reads_an_input_with_its_neighbours_of_the_same_source() {
        let input = |source, text| TextInput {
            source,
            text,
            start_s: 0.0,
            end_s: 0.0,
        };
        let inputs = [
            input("prompt", "p"),
            input("transcript", "a"),
            input("transcript", "b"),
            input("transcript", "c"),
            input("transcript", "d"),
        ];
        assert_eq!(context(&inputs, 0), "p");
        assert_eq!(context(&inputs, 1), "a b");
        assert_eq!(context(&inputs, 2), "a b c");
        assert_eq!(context(&inputs, 4), "c d");
        assert_eq!(context(&inputs[..1], 0), "p");
    }

    #[test]
    fn calibration_puts_the_operating_point_at_one_half() {
        assert_eq!(calibrate(0.8, 0.8), 0.5);
        assert_eq!(calibrate(0.0, 0.8), 0.0);
        assert_eq!(calibrate(1.0, 0.8), 1.0);
        assert!((calibrate(0.4, 0.8) - 0.25).abs() < 1e-6);
        assert!((calibrate(0.9, 0.8) - 0.75).abs() < 1e-6);
    }

    #[test]
    fn one_edit() {
        assert!(within_one_edit("suicide", "suicde"));
        assert!(within_one_edit("suicide", "suicidee"));
        assert!(within_one_edit("suicide", "suiside"));
        assert!(!within_one_edit("suicide", "sucde"));
        assert!(within_one_edit("abc", "abc"));
        assert!(within_one_edit("beheading", "behaeding"));
        assert!(!within_one_edit("beheading", "behadeing"));
    }

    fn terms(list: &[&str]) -> Vec<Term> {
        compile(&list.iter().map(|t| t.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn blocklist_matches_whole_words_and_variants_only() {
        let t = terms(&["kill myself", "beheading"]);
        let hit = |s: &str| !find_terms(&t, &words(s)).is_empty();
        assert!(hit("I will kill myself"));
        assert!(hit("i will K1LL   MYSELF"));
        assert!(hit("k i l l myself"));
        assert!(hit("a behaeding video")); // one edit, long word
        assert!(!hit("skill myselfie"));
        assert!(!hit("kill them myself"));
        assert!(!hit("the Kill Bill film"));
        let found = find_terms(&t, &words("then: beheadings!"));
        assert_eq!(found.len(), 1);
        assert_eq!(&"then: beheadings!"[found[0].1..found[0].2], "beheadings");
    }

    #[test]
    fn units_split_sentences_and_long_runs() {
        assert_eq!(
            units("One. Two! Three? four"),
            ["One.", "Two!", "Three?", "four"]
        );
        assert_eq!(units("3.5 ms is fast"), ["3.5 ms is fast"]);
        let long = vec!["word"; 200].join(" ");
        let u = units(&long);
        assert_eq!(u.len(), 3);
        assert_eq!(u[0].split_whitespace().count(), MAX_UNIT_WORDS);
    }

    #[test]
    fn the_shipped_policy_parses_and_bad_ones_are_refused_with_reasons() {
        let p = TextPolicy::parse(DEFAULT_POLICY, "default").unwrap();
        assert!(p.categories.contains_key("self_harm"));
        let e = TextPolicy::parse(
            "version = \"x\"\n[categories.a]\nthreshold = 2.0\nblocklist = [\"--\"]\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("a.threshold: 2 is outside 0..=1"), "{e}");
        assert!(e.contains("a.blocklist[0]"), "{e}");
        let e = TextPolicy::parse("version = \"x\"\nbogus = 1\n[categories]\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn blocklist_only_classifier_reports_the_span() {
        let p = TextPolicy::parse(
            "version = \"t\"\n[categories.self_harm]\nblocklist = [\"kill myself\"]\n",
            "t",
        )
        .unwrap();
        let c = TextClassifier::new(p, None).unwrap();
        let s = c
            .classify(&[TextInput {
                source: "transcript",
                text: "ok so i want to k1ll mys3lf tonight",
                start_s: 3.0,
                end_s: 5.5,
            }])
            .unwrap();
        assert_eq!(s[0].score, 1.0);
        assert_eq!(s[0].evidence[0].kind, "transcript");
        assert_eq!(s[0].evidence[0].start_s, 3.0);
        assert!(
            s[0].evidence[0].detail.contains("k1ll mys3lf"),
            "{:?}",
            s[0].evidence
        );
        let s = c
            .classify(&[TextInput {
                source: "prompt",
                text: "a skilled chef",
                start_s: 0.0,
                end_s: 0.0,
            }])
            .unwrap();
        assert_eq!(s[0].score, 0.0);
        assert!(s[0].evidence.is_empty());
    }
}
