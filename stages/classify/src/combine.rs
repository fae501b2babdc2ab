//! How the frame classifiers' scores become one score per category: per frame, the models that
//! score a category are combined by the category's rule; the clip's score is the highest frame's.
//!
//! `max` (the default) lets any model flag the frame; `mean` asks the models to agree, which is
//! what a second opinion is for: image-safety-s gives a plain black frame `sexual` 0.47 where
//! open_nsfw gives 0.07, and open_nsfw has its own false alarms (skin-coloured shapes) that a
//! differently trained model does not share.

use std::collections::BTreeMap;

use clipguard_schemas::{CategoryScore, Evidence};
use serde::{Deserialize, Serialize};

/// How a category's frame scores from several models combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// The highest model score counts; evidence from any model at its own threshold.
    #[default]
    Max,
    /// The models' mean counts; evidence where it reaches the mean of their thresholds.
    Mean,
}

/// One model's score for one category on one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameScore {
    pub model: String,
    pub category: String,
    pub score: f32,
    /// The model's evidence threshold.
    pub threshold: f32,
}

/// Folds one frame's model scores (at clip time `t`) into `scores`, combining each category by
/// its rule in `rules` (absent: [`Combine::Max`]).
pub fn fold_frame(
    scores: &mut Vec<CategoryScore>,
    t: f64,
    frame: &[FrameScore],
    rules: &BTreeMap<String, Combine>,
) {
    let mut by_category: BTreeMap<&str, Vec<&FrameScore>> = BTreeMap::new();
    for s in frame {
        by_category.entry(&s.category).or_default().push(s);
    }
    for (category, models) in by_category {
        let entry = match scores.iter_mut().position(|s| s.category == category) {
            Some(i) => &mut scores[i],
            None => {
                scores.push(CategoryScore {
                    category: category.to_string(),
                    ..CategoryScore::default()
                });
                scores.last_mut().expect("just pushed")
            }
        };
        let evidence = |detail: String| Evidence {
            kind: "frame".into(),
            start_s: t,
            end_s: t,
            detail,
        };
        match rules.get(category).copied().unwrap_or_default() {
            Combine::Max => {
                for m in &models {
                    entry.score = entry.score.max(m.score);
                    if m.score >= m.threshold {
                        entry
                            .evidence
                            .push(evidence(format!("{} {:.2}", m.model, m.score)));
                    }
                }
            }
            Combine::Mean => {
                let n = models.len() as f32;
                let score = models.iter().map(|m| m.score).sum::<f32>() / n;
                let threshold = models.iter().map(|m| m.threshold).sum::<f32>() / n;
                entry.score = entry.score.max(score);
                if score >= threshold {
                    let each: Vec<String> = models
                        .iter()
                        .map(|m| format!("{} {:.2}", m.model, m.score))
                        .collect();
                    entry.evidence.push(evidence(if models.len() == 1 {
                        each.join("")
                    } else {
                        format!("mean {score:.2} of {}", each.join(", "))
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn s(model: &str, category: &str, score: f32, threshold: f32) -> FrameScore {
        FrameScore {
            model: model.into(),
            category: category.into(),
            score,
            threshold,
        }
    }

    #[test]
    fn max_lets_either_model_flag_and_mean_asks_them_to_agree() {
        let black = [
            s("open-nsfw", "sexual", 0.07, 0.8),
            s("image-safety-s", "sexual", 0.47, 0.5),
            s("image-safety-s", "violence_gore", 0.04, 0.5),
        ];
        let explicit = [
            s("open-nsfw", "sexual", 0.95, 0.8),
            s("image-safety-s", "sexual", 0.85, 0.5),
            s("image-safety-s", "violence_gore", 0.02, 0.5),
        ];
        let mean: BTreeMap<String, Combine> = [("sexual".to_string(), Combine::Mean)].into();

        let mut scores = Vec::new();
        fold_frame(&mut scores, 0.0, &black, &BTreeMap::new());
        let sexual = scores.iter().find(|c| c.category == "sexual").unwrap();
        assert_eq!(sexual.score, 0.47);

        let mut scores = Vec::new();
        fold_frame(&mut scores, 0.0, &black, &mean);
        fold_frame(&mut scores, 1.0, &explicit, &mean);
        let sexual = scores.iter().find(|c| c.category == "sexual").unwrap();
        assert!((sexual.score - 0.90).abs() < 1e-6, "{}", sexual.score);
        // Evidence from the explicit frame only, naming both models.
        assert_eq!(sexual.evidence.len(), 1, "{:?}", sexual.evidence);
        assert_eq!(sexual.evidence[0].start_s, 1.0);
        assert_eq!(
            sexual.evidence[0].detail,
            "mean 0.90 of open-nsfw 0.95, image-safety-s 0.85"
        );
        // A category one model scores is that model's score, whatever the rule.
        let violence = scores
            .iter()
            .find(|c| c.category == "violence_gore")
            .unwrap();
        assert_eq!(violence.score, 0.04);
        assert!(violence.evidence.is_empty());
    }
}
