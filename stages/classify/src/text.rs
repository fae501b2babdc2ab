//! Text classification of prompts, scene descriptions and transcripts against the policy's
//! text categories: policy blocklists (word boundaries, case, leetspeak, spaced-out letters,
//! stretched letters, one-edit fuzzy variants of long words) plus a per-category logistic head
//! over sentence embeddings, trained at load on the exemplar sentences kept beside the policy.
//!
//! Every score comes with the text span that drove it and, for the embedding head, the nearest
//! exemplar, so a reviewer sees why.

use std::collections::BTreeMap;
use std::path::Path;

use clipguard_schemas::{CategoryScore, Evidence};
use serde::Deserialize;

use crate::ClassifyError;
use crate::embed::TextEmbedder;

/// The text policy shipped with clipguard (`policy/text.toml`).
pub const DEFAULT_POLICY: &str = include_str!("../../../policy/text.toml");

/// Reported scores at or above this are findings (each category's operating point maps here).
pub const REPORTED_THRESHOLD: f32 = 0.5;

/// Longest unit embedded at once, in words (MiniLM takes 128 tokens; ~1.3 tokens a word).
const MAX_UNIT_WORDS: usize = 80;

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

fn default_threshold() -> f32 {
    0.5
}
fn one() -> f32 {
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

// ---------------------------------------------------------------------------------------------
// Normalisation and blocklists

/// Symbols that stand for letters inside words (leetspeak).
fn is_leet_symbol(c: char) -> bool {
    matches!(c, '!' | '|' | '@' | '$' | '+')
}

/// Symbols that are punctuation when they open or close a word (`K1LL!`).
fn is_edge_punctuation(c: char) -> bool {
    matches!(c, '!' | '|' | '+')
}

/// Lower case, leetspeak digits and symbols to letters.
fn norm_char(c: char) -> char {
    let c = match c {
        '0' => 'o',
        '1' | '!' | '|' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' | '+' => 't',
        '8' => 'b',
        c => c,
    };
    c.to_lowercase().next().unwrap_or(c)
}

/// One normalised word and the byte span of the original text it came from.
#[derive(Debug, Clone, PartialEq)]
struct Word {
    text: String,
    start: usize,
    end: usize,
}

/// Splits into normalised words: case folded, leetspeak inside words mapped to letters (a word
/// of digits only is a number and stays), runs of three or more single letters (`k i l l`,
/// `k.i.l.l`) joined, stretched letters squeezed (`kiiiill` → `kil`; terms alike).
fn words(text: &str) -> Vec<Word> {
    let mut raw: Vec<Word> = Vec::new();
    let mut start = None;
    let flush = |raw: &mut Vec<Word>, from: usize, to: usize| {
        let token = &text[from..to];
        let trimmed_start = token.len() - token.trim_start_matches(is_edge_punctuation).len();
        let token = token.trim_matches(is_edge_punctuation);
        if token.is_empty() {
            return;
        }
        let from = from + trimmed_start;
        let normalised: String = if token.chars().all(|c| c.is_ascii_digit()) {
            token.to_string()
        } else {
            token.chars().map(norm_char).collect()
        };
        raw.push(Word {
            text: normalised,
            start: from,
            end: from + token.len(),
        });
    };
    for (i, c) in text.char_indices() {
        let in_word = c.is_alphanumeric() || is_leet_symbol(c);
        match (in_word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                flush(&mut raw, s, i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        flush(&mut raw, s, text.len());
    }
    // Join runs of ≥ 3 single-letter words.
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let mut j = i;
        while j < raw.len() && raw[j].text.chars().count() == 1 {
            j += 1;
        }
        if j - i >= 3 {
            out.push(Word {
                text: raw[i..j].iter().map(|w| w.text.as_str()).collect(),
                start: raw[i].start,
                end: raw[j - 1].end,
            });
            i = j;
        } else {
            out.push(raw[i].clone());
            i += 1;
        }
    }
    for w in &mut out {
        w.text = squeeze(&w.text);
    }
    out
}

/// Collapses runs of the same character.
fn squeeze(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = None;
    for c in s.chars() {
        if Some(c) != last {
            out.push(c);
        }
        last = Some(c);
    }
    out
}

/// Whether `a` and `b` differ by at most one insertion, deletion, substitution or swap of
/// neighbouring letters.
fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() == b.len() {
        let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        if let [i, j] = diff[..]
            && j == i + 1
            && a[i] == b[j]
            && a[j] == b[i]
        {
            return true;
        }
    }
    let (short, long) = if a.len() <= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    if long.len() - short.len() > 1 {
        return false;
    }
    let (mut i, mut j, mut edits) = (0, 0, 0);
    while i < short.len() && j < long.len() {
        if short[i] == long[j] {
            i += 1;
            j += 1;
            continue;
        }
        edits += 1;
        if edits > 1 {
            return false;
        }
        if short.len() == long.len() {
            i += 1;
        }
        j += 1;
    }
    edits + (long.len() - j) + (short.len() - i) <= 1
}

/// Words of at least this many letters also match one edit away.
const FUZZY_MIN_LEN: usize = 6;

fn word_matches(term: &str, word: &str) -> bool {
    term == word || (term.chars().count() >= FUZZY_MIN_LEN && within_one_edit(term, word))
}

/// A blocklist term in normalised words.
#[derive(Debug, Clone)]
struct Term {
    original: String,
    words: Vec<String>,
}

/// Finds blocklist terms as whole-word sequences in `ws` (the [`words`] of a text); returns
/// (term, byte span of the text).
fn find_terms<'t>(terms: &'t [Term], ws: &[Word]) -> Vec<(&'t Term, usize, usize)> {
    let mut hits = Vec::new();
    for term in terms {
        let k = term.words.len();
        if k == 0 || ws.len() < k {
            continue;
        }
        for i in 0..=ws.len() - k {
            if term
                .words
                .iter()
                .zip(&ws[i..i + k])
                .all(|(t, w)| word_matches(t, &w.text))
            {
                hits.push((term, ws[i].start, ws[i + k - 1].end));
                break;
            }
        }
    }
    hits
}

// ---------------------------------------------------------------------------------------------
// The embedding head

/// A logistic head `σ(w·x + b)` over unit embeddings.
#[derive(Debug, Clone)]
struct Head {
    w: Vec<f32>,
    b: f32,
}

impl Head {
    /// Full-batch gradient descent on the class-balanced, L2-regularised log loss. Deterministic
    /// (zero start, fixed steps).
    fn train(pos: &[&[f32]], neg: &[&[f32]], dim: usize) -> Head {
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

    fn score(&self, x: &[f32]) -> f32 {
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
struct Heads {
    all: Head,
    near: Option<Head>,
}

impl Heads {
    fn train(pos: &[&[f32]], neg: &[&[f32]], near_misses: &[&[f32]], dim: usize) -> Heads {
        Heads {
            all: Head::train(pos, neg, dim),
            near: (!near_misses.is_empty()).then(|| Head::train(pos, near_misses, dim)),
        }
    }

    /// (raw score, `all`'s score, `near`'s score).
    fn score(&self, x: &[f32]) -> (f32, f32, Option<f32>) {
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
struct Exemplar<'p> {
    text: &'p str,
    /// The category it is an unsafe example of.
    unsafe_of: Option<&'p str>,
    /// The category it is a near miss of (`None` for unsafe and shared benign sentences).
    near_of: Option<&'p str>,
}

impl Exemplar<'_> {
    fn is_benign(&self) -> bool {
        self.unsafe_of.is_none()
    }
}

/// Every exemplar sentence of a policy in one order: the shared benign ones, then per category
/// its near misses and its unsafe ones.
fn exemplar_sentences(policy: &TextPolicy) -> Vec<Exemplar<'_>> {
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
/// `vectors`): its unsafe exemplars (`pos`), every other exemplar (`neg`), its own near misses
/// (`near`), and the benign ones: shared and every category's near misses (`benign`).
struct TrainingSets<'v> {
    pos: Vec<&'v [f32]>,
    neg: Vec<&'v [f32]>,
    near: Vec<&'v [f32]>,
    benign: Vec<&'v [f32]>,
}

fn training_sets<'v>(
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
    for (i, (e, v)) in all.iter().zip(vectors).enumerate() {
        if !keep(i) {
            continue;
        }
        if e.unsafe_of == Some(category) {
            sets.pos.push(v);
            continue;
        }
        sets.neg.push(v);
        if e.near_of == Some(category) {
            sets.near.push(v);
        }
        if e.is_benign() {
            sets.benign.push(v);
        }
    }
    sets
}

/// Embeddings of `sentences`, in batches.
fn embed_all(
    embedder: &TextEmbedder,
    sentences: &[Exemplar<'_>],
) -> Result<Vec<Vec<f32>>, ClassifyError> {
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
fn paraphrase_groups(vectors: &[Vec<f32>], min: f32) -> Vec<Vec<usize>> {
    let n = vectors.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
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
fn deal_key(s: &str, repeat: usize) -> u64 {
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
) -> Result<Vec<CvCategory>, ClassifyError> {
    let (folds, repeats) = (folds.max(2), repeats.max(1));
    let all = exemplar_sentences(policy);
    let vectors = embed_all(embedder, &all)?;
    let groups = paraphrase_groups(&vectors, PARAPHRASE_COSINE);
    let mut out = Vec::new();
    for (name, c) in &policy.categories {
        if c.unsafe_examples.is_empty() {
            continue;
        }
        let positive: Vec<bool> = all
            .iter()
            .map(|e| e.unsafe_of == Some(name.as_str()))
            .collect();
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
                // Heads and gate see only this fold's training exemplars.
                let t = training_sets(&all, &vectors, name, |i| fold[i] != f);
                let heads = Heads::train(&t.pos, &t.neg, &t.near, embedder.width());
                for (i, v) in vectors.iter().enumerate() {
                    if fold[i] == f {
                        let u = nearest(t.pos.iter().copied(), v).map_or(-1.0, |n| n.1);
                        let b = nearest(t.benign.iter().copied(), v).map_or(-1.0, |n| n.1);
                        scores[i] = heads.score(v).0 * gate_factor(u, b, policy.near_miss_gate);
                    }
                }
            }
        }
        let benign_idx: Vec<usize> = (0..all.len()).filter(|&i| all[i].is_benign()).collect();
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

struct CategoryModel {
    name: String,
    threshold: f32,
    blocklist_score: f32,
    terms: Vec<Term>,
    heads: Option<Heads>,
    /// The category's unsafe exemplars and their embeddings (for "nearest exemplar").
    exemplars: Vec<(String, Vec<f32>)>,
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
}

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
    pub fn new(policy: TextPolicy, embedder: Option<TextEmbedder>) -> Result<Self, ClassifyError> {
        let all = exemplar_sentences(&policy);
        let vectors = match &embedder {
            Some(e) => embed_all(e, &all)?,
            None => Vec::new(),
        };
        let mut categories = Vec::new();
        for (name, c) in &policy.categories {
            let terms = c
                .blocklist
                .iter()
                .map(|t| Term {
                    original: t.clone(),
                    words: words(t).into_iter().map(|w| w.text).collect(),
                })
                .collect();
            let exemplars = all
                .iter()
                .zip(&vectors)
                .filter(|(e, _)| e.unsafe_of == Some(name.as_str()))
                .map(|(e, v)| (e.text.to_string(), v.clone()))
                .collect();
            let t = training_sets(&all, &vectors, name, |_| true);
            let heads = match &embedder {
                Some(e) if !t.pos.is_empty() && !t.neg.is_empty() => {
                    Some(Heads::train(&t.pos, &t.neg, &t.near, e.width()))
                }
                _ => None,
            };
            categories.push(CategoryModel {
                name: name.clone(),
                threshold: c.threshold,
                blocklist_score: c.blocklist_score,
                terms,
                heads,
                exemplars,
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
        })
    }

    pub fn categories(&self) -> impl Iterator<Item = &str> {
        self.categories.iter().map(|c| c.name.as_str())
    }

    /// Scores every category over all `inputs`: the highest score of any sentence or blocklist
    /// hit, with evidence (source, time span, the quoted text, what matched) for each unit at or
    /// above the category's threshold.
    pub fn classify(&self, inputs: &[TextInput<'_>]) -> Result<Vec<CategoryScore>, ClassifyError> {
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
        for (cat, out) in self.categories.iter().zip(scores.iter_mut()) {
            let Some(heads) = &cat.heads else { continue };
            for ((unit, v), &near_benign) in all_units.iter().zip(&vectors).zip(&near_benign) {
                let near_unsafe = nearest(cat.exemplars.iter().map(|(_, e)| e.as_slice()), v);
                let factor = gate_factor(
                    near_unsafe.map_or(-1.0, |n| n.1),
                    near_benign.map_or(-1.0, |n| n.1),
                    self.near_miss_gate,
                );
                let (raw, against_all, against_near) = heads.score(v);
                let s = calibrate(raw * factor, cat.threshold);
                out.score = out.score.max(s);
                if s >= REPORTED_THRESHOLD {
                    let mut near = match against_near {
                        Some(b) => format!(
                            " (heads: against everything allowed {against_all:.2}, against its near misses {b:.2})"
                        ),
                        None => String::new(),
                    };
                    near += &near_unsafe
                        .map(|(i, sim)| {
                            format!(
                                "; nearest exemplar {} (cosine {sim:.2})",
                                quote(&cat.exemplars[i].0)
                            )
                        })
                        .unwrap_or_default();
                    if factor < 0.995
                        && let Some((i, sim)) = near_benign
                    {
                        near.push_str(&format!(
                            "; nearest allowed exemplar {} (cosine {sim:.2}) lowered it ×{factor:.2}",
                            quote(&self.benign[i].0)
                        ));
                    }
                    out.evidence.push(evidence(
                        &inputs[unit.input],
                        format!("{} scored {s:.2}{near}", quote(unit.text)),
                    ));
                }
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
        list.iter()
            .map(|t| Term {
                original: t.to_string(),
                words: words(t).into_iter().map(|w| w.text).collect(),
            })
            .collect()
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
