//! The voice-activity gate: which stretches of a clip's audio hold speech, so silence and
//! music cost (almost) nothing and whisper sees only speech.
//!
//! Scores come from earshot's small neural detector (16 ms frames of 16 kHz audio); runs of
//! speech frames shorter than `min_speech_ms` are dropped, the rest padded by `pad_ms` and
//! merged across gaps shorter than `merge_gap_ms`.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Samples per detector frame (16 ms at 16 kHz).
pub const FRAME: usize = 256;
pub const SAMPLE_RATE: usize = 16_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VadConfig {
    /// Off: the whole audio goes to whisper.
    pub enabled: bool,
    /// Frame score (0..1) at or above which a frame is speech.
    pub threshold: f32,
    /// Shorter runs of speech frames are noise.
    pub min_speech_ms: u32,
    /// Audio kept before and after each run, so word edges are not clipped.
    pub pad_ms: u32,
    /// Runs closer than this are one region.
    pub merge_gap_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            enabled: true,
            threshold: 0.5,
            min_speech_ms: 200,
            pad_ms: 300,
            merge_gap_ms: 600,
        }
    }
}

impl VadConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if !(0.0..=1.0).contains(&self.threshold) {
            problems.push(format!(
                "transcribe.vad.threshold: {} is outside 0..=1",
                self.threshold
            ));
        }
    }
}

fn ms_to_samples(ms: u32) -> usize {
    ms as usize * SAMPLE_RATE / 1000
}

/// Sample ranges of `pcm` (16 kHz mono) that hold speech, in order, not overlapping.
pub fn speech_regions(pcm: &[i16], cfg: &VadConfig) -> Vec<Range<usize>> {
    if !cfg.enabled {
        return if pcm.is_empty() {
            Vec::new()
        } else {
            std::iter::once(0..pcm.len()).collect()
        };
    }
    let mut detector = earshot::Detector::default();
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut start: Option<usize> = None;
    let mut frame = [0i16; FRAME];
    for (i, chunk) in pcm.chunks(FRAME).enumerate() {
        frame[..chunk.len()].copy_from_slice(chunk);
        frame[chunk.len()..].fill(0);
        let speech = detector.predict_i16(&frame) >= cfg.threshold;
        let at = i * FRAME;
        match (speech, start) {
            (true, None) => start = Some(at),
            (false, Some(s)) => {
                runs.push(s..at);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push(s..pcm.len());
    }
    let min = ms_to_samples(cfg.min_speech_ms);
    let pad = ms_to_samples(cfg.pad_ms);
    let gap = ms_to_samples(cfg.merge_gap_ms);
    let mut out: Vec<Range<usize>> = Vec::new();
    for r in runs.into_iter().filter(|r| r.len() >= min) {
        let padded = r.start.saturating_sub(pad)..(r.end + pad).min(pcm.len());
        match out.last_mut() {
            Some(last) if padded.start <= last.end + gap => last.end = last.end.max(padded.end),
            _ => out.push(padded),
        }
    }
    out
}

/// Speech regions joined into one buffer for whisper, with what it needs to map times in
/// the buffer back to times in the clip.
#[derive(Debug, Clone, Default)]
pub struct Gated {
    pub samples: Vec<f32>,
    /// (offset in `samples`, offset in the clip, length), in order.
    pub pieces: Vec<(usize, usize, usize)>,
}

/// Silence between joined regions: whisper segments at pauses, and no word spans two regions.
const JOIN_GAP: usize = SAMPLE_RATE / 5;

impl Gated {
    pub fn new(pcm: &[i16], regions: &[Range<usize>]) -> Gated {
        let total: usize = regions.iter().map(|r| r.len() + JOIN_GAP).sum();
        let mut g = Gated {
            samples: Vec::with_capacity(total),
            pieces: Vec::with_capacity(regions.len()),
        };
        for (i, r) in regions.iter().enumerate() {
            if i > 0 {
                g.samples.extend(std::iter::repeat_n(0.0, JOIN_GAP));
            }
            g.pieces.push((g.samples.len(), r.start, r.len()));
            g.samples
                .extend(pcm[r.clone()].iter().map(|&s| s as f32 / 32768.0));
        }
        g
    }

    /// Seconds in the clip of a time (seconds) in the joined buffer. A time in the silence
    /// between two regions maps to the next region's start, or for an `end` time to the
    /// previous region's end.
    pub fn clip_time(&self, t: f64, end: bool) -> f64 {
        let at = (t * SAMPLE_RATE as f64).max(0.0) as usize;
        let mut best = 0.0;
        for &(buf, clip, len) in &self.pieces {
            if at < buf {
                return if end {
                    best
                } else {
                    clip as f64 / SAMPLE_RATE as f64
                };
            }
            let into = (at - buf).min(len);
            best = (clip + into) as f64 / SAMPLE_RATE as f64;
            if at <= buf + len {
                return best;
            }
        }
        best
    }

    pub fn speech_seconds(&self) -> f64 {
        self.pieces.iter().map(|p| p.2).sum::<usize>() as f64 / SAMPLE_RATE as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_has_no_speech() {
        let pcm = vec![0i16; SAMPLE_RATE * 5];
        assert!(speech_regions(&pcm, &VadConfig::default()).is_empty());
    }

    #[test]
    fn steady_noise_is_not_speech() {
        // A fixed-seed xorshift: white noise at about -20 dBFS.
        let mut x: u32 = 0x9e37_79b9;
        let pcm: Vec<i16> = (0..SAMPLE_RATE * 3)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                ((x >> 16) as i16) / 10
            })
            .collect();
        let speech: usize = speech_regions(&pcm, &VadConfig::default())
            .iter()
            .map(|r| r.len())
            .sum();
        assert!(
            speech < SAMPLE_RATE / 2,
            "{speech} samples of white noise called speech"
        );
    }

    #[test]
    fn disabled_gate_keeps_everything() {
        let pcm = vec![0i16; 1000];
        let cfg = VadConfig {
            enabled: false,
            ..VadConfig::default()
        };
        assert_eq!(
            speech_regions(&pcm, &cfg),
            std::iter::once(0..1000).collect::<Vec<_>>()
        );
    }

    #[test]
    fn joined_buffer_maps_times_back_to_the_clip() {
        let pcm = vec![1i16; SAMPLE_RATE * 10];
        let regions = [
            SAMPLE_RATE..2 * SAMPLE_RATE,
            5 * SAMPLE_RATE..7 * SAMPLE_RATE,
        ];
        let g = Gated::new(&pcm, &regions);
        assert_eq!(g.samples.len(), SAMPLE_RATE + JOIN_GAP + 2 * SAMPLE_RATE);
        assert!((g.clip_time(0.0, false) - 1.0).abs() < 1e-9);
        assert!((g.clip_time(0.5, false) - 1.5).abs() < 1e-9);
        // Inside the join gap: the next region's start, or the previous region's end.
        assert!((g.clip_time(1.1, false) - 5.0).abs() < 1e-9);
        assert!((g.clip_time(1.1, true) - 2.0).abs() < 1e-9);
        assert!((g.clip_time(1.2 + 1.0, false) - 6.0).abs() < 1e-9);
        assert!((g.clip_time(100.0, true) - 7.0).abs() < 1e-9);
        assert!((g.speech_seconds() - 3.0).abs() < 1e-9);
    }
}
