//! The text policy file: categories, blocklists, exemplars, operating points.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::words::words;
use crate::ClassifyError;

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
    pub categories: BTreeMap<String, TextCategory>,
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
}

pub(super) fn default_threshold() -> f32 {
    0.5
}
pub(super) fn one() -> f32 {
    1.0
}

impl TextPolicy {
    pub fn parse(text: &str, origin: &str) -> Result<Self, ClassifyError> {
        let p: TextPolicy = toml::from_str(text)
            .map_err(|e| ClassifyError::Load(format!("text policy {origin}: {e}")))?;
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
            for (i, term) in c.blocklist.iter().enumerate() {
                if words(term).is_empty() {
                    problems.push(format!("{name}.blocklist[{i}]: {term:?} has no words"));
                }
            }
        }
        if !problems.is_empty() {
            return Err(ClassifyError::Load(format!(
                "text policy {origin}: {}",
                problems.join("; ")
            )));
        }
        Ok(p)
    }

    pub fn load(path: &Path) -> Result<Self, ClassifyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClassifyError::Load(format!("text policy {}: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }
}
