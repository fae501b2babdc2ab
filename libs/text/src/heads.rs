//! The embedding heads: logistic regressions over sentence embeddings, and the calibration of
//! their raw scores onto the reported scale.

/// The training recipe below, in words: part of the key of cached heads (see
/// [`super::cache`]), so change it with any change to [`Head::train`] or [`Heads::train`].
pub(super) const TRAINING: &str =
    "logistic; 400 full-batch steps at rate 2.0; L2 1e-3; class-balanced; all + near; v1";

/// A logistic head `σ(w·x + b)` over unit embeddings.
#[derive(Debug, Clone)]
pub(super) struct Head {
    pub(super) w: Vec<f32>,
    pub(super) b: f32,
}

impl Head {
    /// Full-batch gradient descent on the class-balanced, L2-regularised log loss. Deterministic
    /// (zero start, fixed steps).
    pub(super) fn train(pos: &[&[f32]], neg: &[&[f32]], dim: usize) -> Head {
        const STEPS: usize = 400;
        const RATE: f32 = 2.0;
        const L2: f32 = 1e-3;
        let mut w = vec![0f32; dim];
        let mut b = 0f32;
        let (wp, wn) = (0.5 / pos.len().max(1) as f32, 0.5 / neg.len().max(1) as f32);
        let mut grad = vec![0f32; dim];
        for _ in 0..STEPS {
            grad.iter_mut().for_each(|g| *g = 0.0);
            let mut gb = 0f32;
            for (set, y, weight) in [(pos, 1f32, wp), (neg, 0f32, wn)] {
                for x in set.iter() {
                    let z: f32 = w.iter().zip(x.iter()).map(|(a, b)| a * b).sum::<f32>() + b;
                    let p = 1.0 / (1.0 + (-z).exp());
                    let e = (p - y) * weight;
                    for (g, xi) in grad.iter_mut().zip(x.iter()) {
                        *g += e * xi;
                    }
                    gb += e;
                }
            }
            for (wi, g) in w.iter_mut().zip(&grad) {
                *wi -= RATE * (g + L2 * *wi);
            }
            b -= RATE * gb;
        }
        Head { w, b }
    }

    pub(super) fn score(&self, x: &[f32]) -> f32 {
        let z: f32 = self.w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>() + self.b;
        1.0 / (1.0 + (-z).exp())
    }
}

/// A category's two logistic heads over unit embeddings: `all` separates its unsafe exemplars
/// from every other exemplar (shared benign sentences, every near miss, the other categories'
/// unsafe ones); `near` separates them from the category's own near misses only, so it learns
/// the direction that tells the violation from what merely shares its topic (persuading with a
/// lie vs informing about the vote; hurting oneself vs a figure of speech). The raw score is the
/// geometric mean of the two (`all` alone for a category without near misses).
#[derive(Debug, Clone)]
pub(super) struct Heads {
    pub(super) all: Head,
    pub(super) near: Option<Head>,
}

impl Heads {
    pub(super) fn train(
        pos: &[&[f32]],
        neg: &[&[f32]],
        near_misses: &[&[f32]],
        dim: usize,
    ) -> Heads {
        Heads {
            all: Head::train(pos, neg, dim),
            near: (!near_misses.is_empty()).then(|| Head::train(pos, near_misses, dim)),
        }
    }

    /// (raw score, `all`'s score, `near`'s score).
    pub(super) fn score(&self, x: &[f32]) -> (f32, f32, Option<f32>) {
        let a = self.all.score(x);
        match &self.near {
            Some(n) => {
                let b = n.score(x);
                ((a * b).sqrt(), a, Some(b))
            }
            None => (a, a, None),
        }
    }
}

/// Maps a raw head score onto the reported scale where `threshold` becomes 0.5: linear on
/// each side, so the order of scores is kept and 0 and 1 stay put.
pub fn calibrate(raw: f32, threshold: f32) -> f32 {
    let t = threshold.clamp(1e-6, 1.0 - 1e-6);
    if raw < t {
        0.5 * raw / t
    } else {
        0.5 + 0.5 * (raw - t) / (1.0 - t)
    }
}
