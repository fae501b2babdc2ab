//! Normalisation and blocklists: words as a moderator reads them (case, leetspeak, spaced-out
//! and stretched letters, one-edit typos) and blocklist terms found in them.

/// Symbols that stand for letters inside words (leetspeak).
pub(super) fn is_leet_symbol(c: char) -> bool {
    matches!(c, '!' | '|' | '@' | '$' | '+')
}

/// Symbols that are punctuation when they open or close a word (`K1LL!`).
pub(super) fn is_edge_punctuation(c: char) -> bool {
    matches!(c, '!' | '|' | '+')
}

/// Lower case, leetspeak digits and symbols to letters.
pub(super) fn norm_char(c: char) -> char {
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
pub(super) struct Word {
    pub(super) text: String,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Splits into normalised words: case folded, leetspeak inside words mapped to letters (a word
/// of digits only is a number and stays), runs of three or more single letters (`k i l l`,
/// `k.i.l.l`) joined, stretched letters squeezed (`kiiiill` → `kil`; terms alike).
pub(super) fn words(text: &str) -> Vec<Word> {
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
pub(super) fn squeeze(s: &str) -> String {
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
pub(super) fn within_one_edit(a: &str, b: &str) -> bool {
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
pub(super) const FUZZY_MIN_LEN: usize = 7;

pub(super) fn word_matches(term: &str, word: &str) -> bool {
    term == word || (term.chars().count() >= FUZZY_MIN_LEN && within_one_edit(term, word))
}

/// A blocklist term in normalised words.
#[derive(Debug, Clone)]
pub(super) struct Term {
    pub(super) original: String,
    pub(super) words: Vec<String>,
}

/// Terms as the policy writes them, normalised as [`words`] normalises text.
pub(super) fn compile(terms: &[String]) -> Vec<Term> {
    terms
        .iter()
        .map(|t| Term {
            original: t.clone(),
            words: words(t).into_iter().map(|w| w.text).collect(),
        })
        .collect()
}

/// Finds blocklist terms as whole-word sequences in `ws` (the [`words`] of a text); returns
/// (term, byte span of the text).
pub(super) fn find_terms<'t>(terms: &'t [Term], ws: &[Word]) -> Vec<(&'t Term, usize, usize)> {
    find_terms_with(terms, ws, word_matches)
}

/// As [`find_terms`], each word matching exactly (after normalisation): attribute cues, where
/// one letter turns "youtube" into "youtuber".
pub(super) fn find_terms_exact<'t>(
    terms: &'t [Term],
    ws: &[Word],
) -> Vec<(&'t Term, usize, usize)> {
    find_terms_with(terms, ws, |t, w| t == w)
}

fn find_terms_with<'t>(
    terms: &'t [Term],
    ws: &[Word],
    matches: impl Fn(&str, &str) -> bool,
) -> Vec<(&'t Term, usize, usize)> {
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
                .all(|(t, w)| matches(t, &w.text))
            {
                hits.push((term, ws[i].start, ws[i + k - 1].end));
                break;
            }
        }
    }
    hits
}
