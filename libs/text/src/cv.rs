//! Choosing operating points by grouped cross-validation on the exemplars (`clipguard text-cv`),
//! and the exemplar bookkeeping the classifier shares with it.

use std::collections::BTreeMap;

use super::attributes::{Attribute, Finding, value};
use super::heads::Heads;
use super::{TextPolicy, dot, gate_factor, nearest, support_factor};
use crate::TextError;
use crate::embed::TextEmbedder;

/// One category's operating point by repeated k-fold cross-validation on the exemplars (see
/// [`cross_validate`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CvCategory {
    pub category: String,
    /// The threshold in the policy file.
    pub current: f32,
    /// The lowest raw score (at least 0.5, in steps of 0.01) that on average over the repeats at
    /// most `max_benign_above` benign exemplars reach out of fold.
    pub chosen: f32,
    pub positives: usize,
    pub benign: usize,
    /// Out-of-fold share of the category's unsafe exemplars at or above each threshold
    /// (pooled over the repeats).
    pub recall_current: f64,
    pub recall_chosen: f64,
    /// Benign exemplars (shared and every category's near misses) at or above each threshold,
    /// on average over the repeats.
    pub benign_above_current: f64,
    pub benign_above_chosen: f64,
    /// The benign exemplars that reach the chosen threshold in any repeat, with their highest
    /// out-of-fold score, highest first.
    pub benign_hits: Vec<(String, f32)>,
}

/// One exemplar sentence of a policy.
pub(super) struct Exemplar<'p> {
    pub(super) text: &'p str,
    /// The category it is an unsafe example of.
    pub(super) unsafe_of: Option<&'p str>,
    /// The category it is a near miss of (`None` for unsafe and shared benign sentences).
    pub(super) near_of: Option<&'p str>,
}

impl Exemplar<'_> {
    pub(super) fn is_benign(&self) -> bool {
        self.unsafe_of.is_none()
    }
}

/// Every exemplar sentence of a policy in one order: the shared benign ones, then per category
/// its near misses and its unsafe ones.
pub(super) fn exemplar_sentences(policy: &TextPolicy) -> Vec<Exemplar<'_>> {
    let mut all: Vec<Exemplar<'_>> = policy
        .benign
        .iter()
        .map(|s| Exemplar {
            text: s,
            unsafe_of: None,
            near_of: None,
        })
        .collect();
    for (name, c) in &policy.categories {
        all.extend(c.benign_examples.iter().map(|s| Exemplar {
            text: s,
            unsafe_of: None,
            near_of: Some(name),
        }));
        all.extend(c.unsafe_examples.iter().map(|s| Exemplar {
            text: s,
            unsafe_of: Some(name),
            near_of: None,
        }));
    }
    all
}

/// One category's training sets among the exemplars `keep` admits (by index into `all` and
/// `vectors`). For a category scored by heads of its own: the unsafe exemplars of its family
/// (itself and every category composed on it: `pos`), every other exemplar (`neg`), the
/// family's near misses (`near`), and the benign ones: shared and every category's near misses
/// (`benign`). For a composed category, the training sets of its attribute head: its own
/// unsafe exemplars (`pos`) against those of the rest of its base's family (`neg`).
pub(super) struct TrainingSets<'v> {
    pub(super) pos: Vec<&'v [f32]>,
    pub(super) neg: Vec<&'v [f32]>,
    pub(super) near: Vec<&'v [f32]>,
    pub(super) benign: Vec<&'v [f32]>,
}

pub(super) fn training_sets<'v>(
    policy: &TextPolicy,
    all: &[Exemplar<'_>],
    vectors: &'v [Vec<f32>],
    category: &str,
    keep: impl Fn(usize) -> bool,
) -> TrainingSets<'v> {
    let mut sets = TrainingSets {
        pos: Vec::new(),
        neg: Vec::new(),
        near: Vec::new(),
        benign: Vec::new(),
    };
    let base = policy.base_of(category);
    let family = policy.family(base.unwrap_or(category));
    for (i, (e, v)) in all.iter().zip(vectors).enumerate() {
        if !keep(i) {
            continue;
        }
        if base.is_some() {
            match e.unsafe_of {
                Some(c) if c == category => sets.pos.push(v),
                Some(c) if family.contains(&c) => sets.neg.push(v),
                _ => {}
            }
            continue;
        }
        if e.unsafe_of.is_some_and(|c| family.contains(&c)) {
            sets.pos.push(v);
            continue;
        }
        sets.neg.push(v);
        if e.near_of.is_some_and(|c| family.contains(&c)) {
            sets.near.push(v);
        }
        if e.is_benign() {
            sets.benign.push(v);
        }
    }
    sets
}

/// Embeddings of `sentences`, in batches.
pub(super) fn embed_all(
    embedder: &TextEmbedder,
    sentences: &[Exemplar<'_>],
) -> Result<Vec<Vec<f32>>, TextError> {
    let texts: Vec<&str> = sentences.iter().map(|e| e.text).collect();
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(32) {
        vectors.extend(embedder.embed(chunk)?);
    }
    Ok(vectors)
}

/// Exemplars at least this similar (cosine) are one paraphrase group in cross-validation.
pub const PARAPHRASE_COSINE: f32 = 0.75;

/// Connected components of the "cosine ≥ `min`" graph over unit vectors, each in index order.
pub(super) fn paraphrase_groups(vectors: &[Vec<f32>], min: f32) -> Vec<Vec<usize>> {
    let n = vectors.len();
    let mut parent: Vec<usize> = (0..n).collect();
    pub(super) fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..n {
        for j in i + 1..n {
            if dot(&vectors[i], &vectors[j]) >= min {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    groups.into_values().collect()
}

/// Deterministic 64-bit FNV-1a of a sentence and a repeat number: the order folds are dealt in.
pub(super) fn deal_key(s: &str, repeat: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes().chain(repeat.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Chooses each category's operating point by `repeats` × `folds`-fold cross-validation on the
/// policy's own exemplars. Paraphrases (cosine ≥ [`PARAPHRASE_COSINE`], transitively) stay in
/// one fold; in each repeat the groups are shuffled (deterministically) and dealt to folds,
/// those with positives first; every sentence is scored by a head
/// trained without its fold. The threshold is the lowest raw score ≥ 0.5 (0.01 steps) that on
/// average at most `max_benign_above` benign exemplars reach. Benign means the shared `benign`
/// sentences and every category's `benign_examples`; other categories' unsafe sentences stay
/// negatives in training but do not count here (categories overlap: sexual_likeness is also
/// sexual). Reads only the exemplars, never the evaluation's held-out set.
pub fn cross_validate(
    policy: &TextPolicy,
    embedder: &TextEmbedder,
    folds: usize,
    repeats: usize,
    max_benign_above: usize,
) -> Result<Vec<CvCategory>, TextError> {
    let vectors = exemplar_vectors(policy, embedder)?;
    cross_validate_with(policy, &vectors, folds, repeats, max_benign_above)
}

/// The embeddings of the policy's exemplars, in the order [`cross_validate_with`] takes them.
pub fn exemplar_vectors(
    policy: &TextPolicy,
    embedder: &TextEmbedder,
) -> Result<Vec<Vec<f32>>, TextError> {
    embed_all(embedder, &exemplar_sentences(policy))
}

/// [`cross_validate`] on exemplar embeddings computed once ([`exemplar_vectors`]).
pub fn cross_validate_with(
    policy: &TextPolicy,
    vectors: &[Vec<f32>],
    folds: usize,
    repeats: usize,
    max_benign_above: usize,
) -> Result<Vec<CvCategory>, TextError> {
    let (folds, repeats) = (folds.max(2), repeats.max(1));
    let all = exemplar_sentences(policy);
    if vectors.len() != all.len() {
        return Err(TextError::Load(format!(
            "cross-validation: {} vectors for {} exemplars",
            vectors.len(),
            all.len()
        )));
    }
    let width = vectors.first().map_or(0, Vec::len);
    let groups = paraphrase_groups(vectors, PARAPHRASE_COSINE);
    let mut out = Vec::new();
    for (name, c) in &policy.categories {
        if c.unsafe_examples.is_empty() {
            continue;
        }
        let base = policy.base_of(name);
        let family = policy.family(base.unwrap_or(name));
        // Positives: the family's unsafe exemplars for a category with heads of its own, its
        // own for a composed one.
        let positive: Vec<bool> = all
            .iter()
            .map(|e| match (base, e.unsafe_of) {
                (Some(_), u) => u == Some(name.as_str()),
                (None, Some(u)) => family.contains(&u),
                (None, None) => false,
            })
            .collect();
        // What each exemplar says about a composed category's attribute (cues do not learn).
        // And for a category that requires an attribute: where it is denied, it scores 0.
        let found: Vec<Option<Finding>> = match &c.compose {
            Some(k) => {
                let spec = policy
                    .attributes
                    .get(&k.attribute)
                    .cloned()
                    .unwrap_or_default();
                let a = Attribute::new(&k.attribute, &spec);
                all.iter().map(|e| Some(a.find(e.text))).collect()
            }
            None => match policy.required(name) {
                Some(a) => all.iter().map(|e| Some(a.find(e.text))).collect(),
                None => vec![None; all.len()],
            },
        };
        // Out-of-fold scores, one row per repeat.
        let mut oof = vec![vec![0f32; all.len()]; repeats];
        for (r, scores) in oof.iter_mut().enumerate() {
            // Paraphrase groups go to one fold together: a held-out sentence must not be scored
            // by a head (or a near-miss gate) that trained on its near twin. Groups holding a
            // positive are dealt first, then the rest, each round-robin in shuffled order.
            let mut fold = vec![0usize; all.len()];
            let mut order: Vec<usize> = (0..groups.len()).collect();
            order.sort_by_key(|&g| {
                let has_pos = groups[g].iter().any(|&i| positive[i]);
                (!has_pos, deal_key(all[groups[g][0]].text, r))
            });
            let (mut dealt_pos, mut dealt_neg) = (0usize, 0usize);
            for g in order {
                let n = if groups[g].iter().any(|&i| positive[i]) {
                    &mut dealt_pos
                } else {
                    &mut dealt_neg
                };
                for &i in &groups[g] {
                    fold[i] = *n % folds;
                }
                *n += 1;
            }
            for f in 0..folds {
                // Heads and gate see only this fold's training exemplars; a composed category's
                // base is trained on the same folds.
                let keep = |i: usize| fold[i] != f;
                let own = base.unwrap_or(name);
                let t = training_sets(policy, &all, vectors, own, keep);
                let heads = Heads::train(&t.pos, &t.neg, &t.near, width);
                let attribute = base.map(|_| {
                    let a = training_sets(policy, &all, vectors, name, keep);
                    Heads::train(&a.pos, &a.neg, &a.near, width)
                });
                for (i, v) in vectors.iter().enumerate() {
                    if fold[i] == f {
                        let u = nearest(t.pos.iter().copied(), v).map_or(-1.0, |n| n.1);
                        let b = nearest(t.benign.iter().copied(), v).map_or(-1.0, |n| n.1);
                        let own_raw = heads.score(v).0
                            * gate_factor(u, b, policy.near_miss_gate)
                            * support_factor(u, policy.support_gate);
                        scores[i] = match &attribute {
                            None if matches!(found[i], Some(Finding::Against(_))) => 0.0,
                            None => own_raw,
                            Some(a) => {
                                let head = a.score(v).0;
                                let attr = found[i].as_ref().map_or(head, |f| value(f, head));
                                own_raw.min(attr)
                            }
                        };
                    }
                }
            }
        }
        // Counted against the budget: benign exemplars and, for a composed category, its
        // base's own unsafe exemplars (adult content it must not take for a minor's or a real
        // person's). Its siblings' are not counted: a real child's photo made sexual is both.
        let benign_idx: Vec<usize> = (0..all.len())
            .filter(|&i| all[i].is_benign() || (base.is_some() && all[i].unsafe_of == base))
            .collect();
        let pos_idx: Vec<usize> = (0..all.len()).filter(|&i| positive[i]).collect();
        let benign_above = |t: f32| {
            oof.iter()
                .map(|s| benign_idx.iter().filter(|&&i| s[i] >= t).count())
                .sum::<usize>() as f64
                / repeats as f64
        };
        let recall = |t: f32| {
            oof.iter()
                .map(|s| pos_idx.iter().filter(|&&i| s[i] >= t).count())
                .sum::<usize>() as f64
                / (repeats * pos_idx.len()) as f64
        };
        let chosen = (50..=100)
            .map(|k| k as f32 / 100.0)
            .find(|&t| benign_above(t) <= max_benign_above as f64)
            .unwrap_or(1.0);
        let mut benign_hits: Vec<(String, f32)> = benign_idx
            .iter()
            .map(|&i| {
                let top = oof.iter().map(|s| s[i]).fold(0f32, f32::max);
                (all[i].text.to_string(), top)
            })
            .filter(|(_, x)| *x >= chosen)
            .collect();
        benign_hits.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.push(CvCategory {
            category: name.clone(),
            current: c.threshold,
            chosen,
            positives: pos_idx.len(),
            benign: benign_idx.len(),
            recall_current: recall(c.threshold),
            recall_chosen: recall(chosen),
            benign_above_current: benign_above(c.threshold),
            benign_above_chosen: benign_above(chosen),
            benign_hits,
        });
    }
    Ok(out)
}
