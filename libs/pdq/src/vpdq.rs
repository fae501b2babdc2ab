//! vPDQ: a video as a bag of per-frame PDQ hashes, and the reference's comparison of two videos.
//!
//! Hashing takes every frame, or one every `fps / rate` frames (by frame number, as the
//! reference does), and may prune a frame whose hash is within `D_prune` of the last retained
//! frame. Comparison (the reference's README): drop frames of quality below `F` and duplicate
//! hashes, count the query frames within distance `D` of some target frame and the target frames
//! within `D` of some query frame, and call it a match when the target percentage reaches `P_t`
//! and the query percentage `P_q`. The reference C++ `matchTwoHashBrute` differs in two details
//! (a strict `< D` and no de-duplication); the README is the specification followed here.
//!
//! The text format is the reference's: one line per frame,
//! `frame_index,quality,pdq_hex,timestamp_seconds`.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::{PdqHash, word_distance};

/// One hashed frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameHash {
    pub frame: u64,
    pub quality: u32,
    pub hash: PdqHash,
    pub timestamp_s: f64,
}

/// A malformed line of a vPDQ hash file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// Parses the reference text format. Blank lines and `#` comments are skipped; every malformed
/// line is reported (all of them, not just the first).
pub fn parse(text: &str) -> Result<Vec<FrameHash>, Vec<LineError>> {
    let (frames, errors) = parse_lenient(text);
    if errors.is_empty() {
        Ok(frames)
    } else {
        Err(errors)
    }
}

/// Parses what it can: the good lines' frames and the malformed lines' errors.
pub fn parse_lenient(text: &str) -> (Vec<FrameHash>, Vec<LineError>) {
    let mut frames = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(f) => frames.push(f),
            Err(message) => errors.push(LineError {
                line: i + 1,
                message,
            }),
        }
    }
    (frames, errors)
}

fn parse_line(line: &str) -> Result<FrameHash, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != 4 {
        return Err(format!(
            "expected 4 comma-separated fields (frame,quality,pdq_hex,timestamp), got {}",
            fields.len()
        ));
    }
    let frame = fields[0]
        .parse::<u64>()
        .map_err(|_| format!("frame index `{}` is not a whole number", fields[0]))?;
    let quality = fields[1]
        .parse::<u32>()
        .ok()
        .filter(|q| *q <= 100)
        .ok_or_else(|| format!("quality `{}` is not a whole number in 0..=100", fields[1]))?;
    let hash = fields[2]
        .parse::<PdqHash>()
        .map_err(|e| format!("PDQ hash: {e}"))?;
    let timestamp_s = fields[3]
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or_else(|| format!("timestamp `{}` is not a number of seconds", fields[3]))?;
    Ok(FrameHash {
        frame,
        quality,
        hash,
        timestamp_s,
    })
}

/// Writes the reference text format (timestamps with 3 decimals, as the reference prints them).
pub fn format(frames: &[FrameHash]) -> String {
    let mut out = String::with_capacity(frames.len() * 80);
    for f in frames {
        let _ = writeln!(
            out,
            "{},{},{},{:.3}",
            f.frame, f.quality, f.hash, f.timestamp_s
        );
    }
    out
}

/// Which frames to hash: every `frame_mod`-th decoded frame by frame number, like the reference.
#[derive(Debug, Clone, Copy)]
pub struct FrameSelector {
    frame_mod: u64,
}

impl FrameSelector {
    /// `rate_hz` frames per second; 0 (or anything at or above the frame rate) means every frame.
    pub fn new(rate_hz: f64, fps: f64) -> Self {
        let frame_mod = if rate_hz > 0.0 && fps > 0.0 {
            // seconds-per-hash × frame rate, truncated, at least 1 (the reference's rule).
            ((fps / rate_hz) as u64).max(1)
        } else {
            1
        };
        Self { frame_mod }
    }

    /// Frames between two hashed ones.
    pub fn frame_mod(&self) -> u64 {
        self.frame_mod
    }

    pub fn wants(&self, frame: u64) -> bool {
        frame.is_multiple_of(self.frame_mod)
    }
}

/// Drops each frame whose hash is within `distance` of the last retained frame's (the README's
/// optional pruning). `distance` 0 removes exact repeats only.
pub fn prune(frames: &[FrameHash], distance: u32) -> Vec<FrameHash> {
    let mut out: Vec<FrameHash> = Vec::with_capacity(frames.len());
    for f in frames {
        match out.last() {
            Some(last) if last.hash.distance(&f.hash) <= distance => {}
            _ => out.push(*f),
        }
    }
    out
}

/// The comparison's parameters; defaults are the reference's examples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchParams {
    /// PDQ distance at or below which two frames match (D).
    pub distance: u32,
    /// Frames below this quality are not compared (F).
    pub quality: u32,
    /// Share of the query's frames that must match, percent (P_q).
    pub query_pct: f64,
    /// Share of the target's frames that must match, percent (P_t, "comparison" in the README).
    pub target_pct: f64,
}

impl Default for MatchParams {
    fn default() -> Self {
        Self {
            distance: 31,
            quality: 50,
            query_pct: 0.0,
            target_pct: 80.0,
        }
    }
}

/// The outcome of comparing two videos.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchResult {
    pub query_match_pct: f64,
    pub target_match_pct: f64,
    pub is_match: bool,
}

/// Unique hashes of the frames at or above `quality`, as 4 words for fast popcounts.
fn filtered(frames: &[FrameHash], quality: u32) -> Vec<[u64; 4]> {
    let mut seen = HashSet::new();
    frames
        .iter()
        .filter(|f| f.quality >= quality && seen.insert(f.hash))
        .map(|f| f.hash.words())
        .collect()
}

/// Compares a query video with a target (e.g. a bank's) video.
pub fn compare(query: &[FrameHash], target: &[FrameHash], params: &MatchParams) -> MatchResult {
    let q = filtered(query, params.quality);
    let t = filtered(target, params.quality);
    if q.is_empty() || t.is_empty() {
        return MatchResult {
            query_match_pct: 0.0,
            target_match_pct: 0.0,
            is_match: false,
        };
    }
    let count = |a: &[[u64; 4]], b: &[[u64; 4]]| {
        a.iter()
            .filter(|x| b.iter().any(|y| word_distance(x, y) <= params.distance))
            .count()
    };
    let query_match_pct = count(&q, &t) as f64 * 100.0 / q.len() as f64;
    let target_match_pct = count(&t, &q) as f64 * 100.0 / t.len() as f64;
    MatchResult {
        query_match_pct,
        target_match_pct,
        is_match: target_match_pct >= params.target_pct && query_match_pct >= params.query_pct,
    }
}

/// [`compare`] for a query hashed sparsely: consecutive query frames up to `max_gap_s` apart
/// (sparse decoding hashes keyframes). The query percentage is the reference's. A target frame
/// counts as matched when a query frame is within `D` of it, as in [`compare`], and also when it
/// lies, in time, between two target frames matched by consecutive query frames whose spacing
/// agrees with theirs (within a quarter of it, at least 0.5 s): the same stretch of video, seen
/// at both ends. Without the second rule a query at one frame per 2 s could never cover 80 % of
/// a bank video hashed at 1 Hz; with it, unrelated videos still need frames within `D` at both
/// ends of every stretch they cover.
pub fn compare_sparse(
    query: &[FrameHash],
    target: &[FrameHash],
    params: &MatchParams,
    max_gap_s: f64,
) -> MatchResult {
    let q = filtered(query, params.quality);
    let t_unique = filtered(target, params.quality);
    if q.is_empty() || t_unique.is_empty() {
        return MatchResult {
            query_match_pct: 0.0,
            target_match_pct: 0.0,
            is_match: false,
        };
    }
    let query_match_pct = q
        .iter()
        .filter(|x| {
            t_unique
                .iter()
                .any(|y| word_distance(x, y) <= params.distance)
        })
        .count() as f64
        * 100.0
        / q.len() as f64;
    // Frames in time order, with their hashes' words.
    let in_time = |frames: &[FrameHash]| {
        let mut v: Vec<(f64, PdqHash, [u64; 4])> = frames
            .iter()
            .filter(|f| f.quality >= params.quality)
            .map(|f| (f.timestamp_s, f.hash, f.hash.words()))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    let qt = in_time(query);
    let tt = in_time(target);
    let matched: Vec<Vec<usize>> = qt
        .iter()
        .map(|(_, _, qw)| {
            tt.iter()
                .enumerate()
                .filter(|(_, (_, _, tw))| word_distance(qw, tw) <= params.distance)
                .map(|(j, _)| j)
                .collect()
        })
        .collect();
    let mut covered = vec![false; tt.len()];
    for m in &matched {
        for &j in m {
            covered[j] = true;
        }
    }
    for i in 1..qt.len() {
        let dq = qt[i].0 - qt[i - 1].0;
        if dq <= 0.0 || dq > max_gap_s + 1e-6 {
            continue;
        }
        let slack = (dq * 0.25).max(0.5);
        for &a in &matched[i - 1] {
            for &b in &matched[i] {
                let dt = tt[b].0 - tt[a].0;
                if dt > 0.0 && (dt - dq).abs() <= slack {
                    for c in &mut covered[a..=b] {
                        *c = true;
                    }
                }
            }
        }
    }
    // Percent of the target's unique hashes with a covered frame.
    let mut unique = HashSet::new();
    let mut hit = HashSet::new();
    for ((_, hash, _), c) in tt.iter().zip(&covered) {
        unique.insert(*hash);
        if *c {
            hit.insert(*hash);
        }
    }
    let target_match_pct = hit.len() as f64 * 100.0 / unique.len() as f64;
    MatchResult {
        query_match_pct,
        target_match_pct,
        is_match: target_match_pct >= params.target_pct && query_match_pct >= params.query_pct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(byte: u8, flips: usize) -> PdqHash {
        let mut a = [byte; 32];
        for (i, b) in a.iter_mut().enumerate().take(flips.div_ceil(8)) {
            let n = (flips - i * 8).min(8);
            *b ^= ((1u16 << n) - 1) as u8;
        }
        PdqHash(a)
    }

    fn f(frame: u64, quality: u32, hash: PdqHash) -> FrameHash {
        FrameHash {
            frame,
            quality,
            hash,
            timestamp_s: frame as f64 / 30.0,
        }
    }

    #[test]
    fn text_format_round_trips_and_reports_every_bad_line() {
        let frames = vec![f(0, 100, h(0x5a, 0)), f(3, 42, h(0x0f, 3))];
        let text = format(&frames);
        assert!(text.starts_with("0,100,5a5a"), "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].hash, frames[1].hash);
        assert!((back[1].timestamp_s - 0.1).abs() < 1e-9);

        let bad = "0,100,zz,0.0\n\n# comment\n1,101,".to_string() + &"0".repeat(64) + ",0.1\n2,3\n";
        let errors = parse(&bad).unwrap_err();
        assert_eq!(
            errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![1, 4, 5]
        );
        assert!(errors[1].message.contains("quality `101`"), "{errors:?}");
    }

    #[test]
    fn selector_follows_the_reference_frame_modulus() {
        let every = FrameSelector::new(0.0, 30.0);
        assert!((0..10).all(|i| every.wants(i)));
        let one_hz = FrameSelector::new(1.0, 29.97);
        assert_eq!((0..90).filter(|&i| one_hz.wants(i)).count(), 4); // 0, 29, 58, 87
        assert!(FrameSelector::new(100.0, 25.0).wants(1));
    }

    #[test]
    fn pruning_keeps_frames_that_moved_away_from_the_last_kept() {
        let frames = vec![
            f(0, 100, h(0, 0)),
            f(1, 100, h(0, 1)),
            f(2, 100, h(0, 2)),
            f(3, 100, h(0, 3)),
            f(4, 100, h(0, 3)),
        ];
        let kept: Vec<u64> = prune(&frames, 2).iter().map(|f| f.frame).collect();
        assert_eq!(kept, vec![0, 3]);
        assert_eq!(prune(&frames, 0).len(), 4);
    }

    #[test]
    fn comparison_counts_unique_quality_frames_both_ways() {
        let a = h(0x00, 0);
        let b = h(0xff, 0);
        let near_a = h(0x00, 20);
        let query = vec![f(0, 100, a), f(1, 100, a), f(2, 100, b), f(3, 10, near_a)];
        let target = vec![f(0, 100, near_a)];
        let r = compare(&query, &target, &MatchParams::default());
        // Query: unique good frames {a, b}; only a matches. Target: its one frame matches.
        assert_eq!(r.query_match_pct, 50.0);
        assert_eq!(r.target_match_pct, 100.0);
        assert!(r.is_match);
        let strict = MatchParams {
            query_pct: 60.0,
            ..Default::default()
        };
        assert!(!compare(&query, &target, &strict).is_match);
        // Distance exactly D matches (README: `<= D`).
        let exact = compare(
            &[f(0, 100, h(0, 31))],
            &[f(0, 100, a)],
            &MatchParams::default(),
        );
        assert!(exact.is_match);
        // Nothing left after the quality filter: no match, 0 %.
        let low = compare(&[f(0, 10, a)], &[f(0, 100, a)], &MatchParams::default());
        assert_eq!((low.query_match_pct, low.is_match), (0.0, false));
    }

    #[test]
    fn a_sparse_query_covers_the_stretches_between_its_matched_frames() {
        // A target of 20 distinct frames at 1 Hz; the query has every other one.
        let target: Vec<FrameHash> = (0..20u8)
            .map(|i| FrameHash {
                frame: u64::from(i),
                quality: 100,
                hash: PdqHash([i.wrapping_mul(37) ^ 0xa5; 32]),
                timestamp_s: f64::from(i),
            })
            .collect();
        let query: Vec<FrameHash> = target.iter().step_by(2).copied().collect();
        let params = MatchParams::default();
        let dense = compare(&query, &target, &params);
        assert!(
            dense.target_match_pct <= 50.0 && !dense.is_match,
            "{dense:?}"
        );
        let sparse = compare_sparse(&query, &target, &params, 2.0);
        assert_eq!(sparse.query_match_pct, 100.0);
        assert!(
            sparse.target_match_pct >= 95.0 && sparse.is_match,
            "{sparse:?}"
        );
        // Gaps longer than the declared one are not filled.
        let thin = compare_sparse(&query, &target, &params, 1.0);
        assert!(!thin.is_match, "{thin:?}");
        // Query frames whose spacing disagrees with the target's (a different edit) are not
        // joined: the query's second frame is the target's last.
        let jumbled = vec![
            query[0],
            FrameHash {
                timestamp_s: 2.0,
                ..target[19]
            },
        ];
        let r = compare_sparse(&jumbled, &target, &params, 2.0);
        assert!(r.target_match_pct <= 10.0, "{r:?}");
        // An unrelated query matches nothing.
        let other: Vec<FrameHash> = query
            .iter()
            .map(|f| FrameHash {
                hash: PdqHash([0x0f; 32]),
                ..*f
            })
            .collect();
        assert!(!compare_sparse(&other, &target, &params, 2.0).is_match);
    }
}
