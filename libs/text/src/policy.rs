//! The text policy file: categories, blocklists, exemplars, operating points.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::words::words;
use crate::TextError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextPolicy {
    pub version: String,
    /// Benign sentences shared by every category's head as negatives.
    #[serde(default)]
    pub benign: Vec<String>,
    /// Near-miss gate: a head's score is multiplied by `min(1, 2σ((u − b) / gate))`, where u is
    /// the cosine to the category's nearest unsafe exemplar and b to the nearest benign one
    /// (shared or any near miss), so a sentence closer to an allowed exemplar than to any unsafe
    /// one is scored down. 0 turns it off.
    #[serde(default)]
    pub near_miss_gate: f32,
    /// Support gate `[lo, hi]`: a head's score is multiplied by `clamp((u − lo) / (hi − lo), 0,
    /// 1)`, u being the cosine to the category's nearest unsafe exemplar, so text far from
    /// everything the category was taught (garbled speech, another topic) cannot score high in
    /// it however the head extrapolates. Absent turns it off.
    #[serde(default)]
    pub support_gate: Option<[f32; 2]>,
    /// Attribute cue detectors that composed categories name (see [`Compose`]), and that a
    /// category `requires`.
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeSpec>,
    pub categories: BTreeMap<String, TextCategory>,
    /// A stronger, slower encoder for the uncertain band (see [`Refine`]).
    #[serde(default)]
    pub refine: Option<Refine>,
}

/// The second encoder of a cascade: where the first encoder scores a category inside `band`
/// (on the reported scale, where 0.5 is the operating point), that category is scored again
/// from the same exemplars by heads trained on this encoder, at its own operating points, and
/// that score is the category's. Scores outside the band, and blocklist hits, stand as they
/// are. The heads of both encoders learn from the same exemplars and attributes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refine {
    /// The encoder and its tokenizer (manifest models).
    pub encoder: String,
    pub tokenizer: String,
    /// `[lo, hi]` on the reported scale.
    pub band: [f32; 2],
    /// This encoder's operating point per category (raw scale, like `threshold`); a category
    /// not named keeps its `threshold`.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f32>,
}

/// The words that make an attribute hold (`minor`: ages, school grades, child words; `person`:
/// relations, photos of someone, public roles, full names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeSpec {
    /// Words and phrases, matched as the blocklists are.
    #[serde(default)]
    pub terms: Vec<String>,
    /// A stated age below this (`15 year old`, `15yo`, `aged 15`, `fifteen years`).
    #[serde(default)]
    pub ages_under: Option<u32>,
    /// A school grade up to this (`8th grade`, `grade 8`, `a fifth grader`).
    #[serde(default)]
    pub grades_up_to: Option<u32>,
    /// Two or more capitalised words in a row, not opening a sentence (`Emma Watson`).
    #[serde(default)]
    pub full_names: bool,
    /// Words for someone's role that name one real person when a name follows them
    /// (`classmate Tyler`, `actress Emma`): a cue then, where the role alone is not one (`two
    /// coworkers in their forties` is nobody in particular).
    #[serde(default)]
    pub named_roles: Vec<String>,
    /// Words that are cues only where nothing says otherwise (`baby`: an infant, or an adult
    /// partner's pet name): found with an `against` word, they do not count.
    #[serde(default)]
    pub weak_terms: Vec<String>,
    /// Words that say the attribute does not hold (`adults`, `fictional`): found in a text with
    /// no cue, the attribute head cannot make it hold either.
    #[serde(default)]
    pub against_terms: Vec<String>,
    /// A stated age at or above this says the same (`a 30 year old`).
    #[serde(default)]
    pub against_ages_from: Option<u32>,
}

/// A category that is another's content with an attribute: `minors_sexual` is sexual content
/// and a minor, `sexual_likeness` sexual content and a real person. Its score is the base
/// category's head (trained on the unsafe exemplars of the base and of every category composed
/// on it) where the attribute holds: by a cue of [`AttributeSpec`], or by the category's
/// attribute head (its own unsafe exemplars against the base's and its siblings'); words
/// against the attribute (`adults`, `fictional`) set it to 0 unless the head is all but sure.
/// On the raw scale the score is `min(base, attribute)`, then this category's threshold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compose {
    pub base: String,
    pub attribute: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextCategory {
    /// The head's operating point: a raw score equal to it is reported as 0.5.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Words and phrases that flag the category wherever they occur as whole words.
    #[serde(default)]
    pub blocklist: Vec<String>,
    /// Score a blocklist hit gives.
    #[serde(default = "one")]
    pub blocklist_score: f32,
    /// Sentences of the category (positives of its head).
    #[serde(default)]
    pub unsafe_examples: Vec<String>,
    /// Near misses: sentences that look like the category but are allowed (negatives).
    #[serde(default)]
    pub benign_examples: Vec<String>,
    /// Scored as another category's content with an attribute, not by heads of its own.
    #[serde(default)]
    pub compose: Option<Compose>,
    /// An attribute (under `[attributes]`) the category's own score needs not to be denied:
    /// in a text where its `against_terms` are found and none of its cues, the category scores
    /// 0 ("press on the wound and call an ambulance" is first aid, not self-harm, however close
    /// its words are); with a cue, or neither, the heads' score stands. For a category with
    /// heads of its own (a composed one has its attribute already).
    #[serde(default)]
    pub requires: Option<String>,
}

pub(super) fn default_threshold() -> f32 {
    0.5
}
pub(super) fn one() -> f32 {
    1.0
}

impl TextPolicy {
    pub fn parse(text: &str, origin: &str) -> Result<Self, TextError> {
        let p: TextPolicy = toml::from_str(text)
            .map_err(|e| TextError::Load(format!("text policy {origin}: {e}")))?;
        let mut problems = Vec::new();
        if p.categories.is_empty() {
            problems.push("no categories".to_string());
        }
        if !(0.0..=1.0).contains(&p.near_miss_gate) {
            problems.push(format!(
                "near_miss_gate: {} is outside 0..=1",
                p.near_miss_gate
            ));
        }
        if let Some([lo, hi]) = p.support_gate
            && !(0.0 <= lo && lo < hi && hi <= 1.0)
        {
            problems.push(format!(
                "support_gate: [{lo}, {hi}] must be two cosines with 0 <= lo < hi <= 1"
            ));
        }
        for (name, c) in &p.categories {
            if !(0.0..=1.0).contains(&c.threshold) {
                problems.push(format!(
                    "{name}.threshold: {} is outside 0..=1",
                    c.threshold
                ));
            }
            if !(0.0..=1.0).contains(&c.blocklist_score) {
                problems.push(format!(
                    "{name}.blocklist_score: {} is outside 0..=1",
                    c.blocklist_score
                ));
            }
            if c.blocklist.is_empty() && c.unsafe_examples.is_empty() {
                problems.push(format!(
                    "{name}: neither a blocklist nor unsafe_examples; nothing could flag it"
                ));
            }
            if let Some(k) = &c.compose {
                match p.categories.get(&k.base) {
                    None => problems.push(format!(
                        "{name}.compose.base: {:?} is not a category",
                        k.base
                    )),
                    Some(b) if b.compose.is_some() => problems.push(format!(
                        "{name}.compose.base: {:?} is itself composed",
                        k.base
                    )),
                    Some(_) => {}
                }
                if !p.attributes.contains_key(&k.attribute) {
                    problems.push(format!(
                        "{name}.compose.attribute: {:?} is not under [attributes]",
                        k.attribute
                    ));
                }
            }
            if let Some(a) = &c.requires {
                if c.compose.is_some() {
                    problems.push(format!(
                        "{name}.requires: a composed category has its attribute in compose"
                    ));
                }
                if !p.attributes.contains_key(a) {
                    problems.push(format!("{name}.requires: {a:?} is not under [attributes]"));
                }
            }
            for (i, term) in c.blocklist.iter().enumerate() {
                if words(term).is_empty() {
                    problems.push(format!("{name}.blocklist[{i}]: {term:?} has no words"));
                }
            }
        }
        if let Some(r) = &p.refine {
            let [lo, hi] = r.band;
            if !(0.0 <= lo && lo < hi && hi <= 1.0) {
                problems.push(format!(
                    "refine.band: [{lo}, {hi}] must be two scores with 0 <= lo < hi <= 1"
                ));
            }
            for (name, t) in &r.thresholds {
                if !p.categories.contains_key(name) {
                    problems.push(format!("refine.thresholds: {name:?} is not a category"));
                } else if !(0.0..=1.0).contains(t) {
                    problems.push(format!("refine.thresholds.{name}: {t} is outside 0..=1"));
                }
            }
        }
        for (name, a) in &p.attributes {
            for (list, terms) in [
                ("terms", &a.terms),
                ("named_roles", &a.named_roles),
                ("weak_terms", &a.weak_terms),
                ("against_terms", &a.against_terms),
            ] {
                for (i, term) in terms.iter().enumerate() {
                    if words(term).is_empty() {
                        problems.push(format!(
                            "attributes.{name}.{list}[{i}]: {term:?} has no words"
                        ));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(TextError::Load(format!(
                "text policy {origin}: {}",
                problems.join("; ")
            )));
        }
        Ok(p)
    }

    pub fn load(path: &Path) -> Result<Self, TextError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TextError::Load(format!("text policy {}: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }
}

impl TextPolicy {
    /// The policy the refining encoder's heads use: the same exemplars and attributes, its own
    /// operating points; `None` without `[refine]`.
    pub fn refined(&self) -> Option<(Refine, TextPolicy)> {
        let r = self.refine.clone()?;
        let mut p = self.clone();
        p.refine = None;
        for (name, t) in &r.thresholds {
            if let Some(c) = p.categories.get_mut(name) {
                c.threshold = *t;
            }
        }
        Some((r, p))
    }

    /// The attribute category `name` requires, if any, ready to find.
    pub(super) fn required(&self, name: &str) -> Option<super::attributes::Attribute> {
        let a = self.categories.get(name)?.requires.as_ref()?;
        let spec = self.attributes.get(a).cloned().unwrap_or_default();
        Some(super::attributes::Attribute::new(a, &spec))
    }

    /// The base category `name` is composed on, if it is composed.
    pub fn base_of(&self, name: &str) -> Option<&str> {
        self.categories
            .get(name)
            .and_then(|c| c.compose.as_ref())
            .map(|k| k.base.as_str())
    }

    /// The categories whose unsafe exemplars are `name`'s positives: itself and, for a base,
    /// every category composed on it.
    pub fn family<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        let mut out = vec![name];
        out.extend(
            self.categories
                .iter()
                .filter(|(_, c)| c.compose.as_ref().is_some_and(|k| k.base == name))
                .map(|(n, _)| n.as_str()),
        );
        out
    }
}
