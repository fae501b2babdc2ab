//! Sparse decoding: which coded video frames the decoder needs for a sampling schedule.
//!
//! A demux-only pass (`filesrc ! parsebin`, no decoder) lists every coded video frame with its
//! timestamps and whether it is a keyframe. [`plan`] then decides, per group of pictures (a
//! keyframe and the frames that depend on it, in decode order), how far into the group the
//! decoder must go: nowhere when a keyframe lies within the tolerance of every sampling time the
//! group spans, else up to the frame nearest the farthest such time. Frames before that point
//! are all fed (they are the references of the wanted one); frames after it are dropped, which
//! is safe because nothing kept depends on them. [`Gate`] applies the plan to the buffers on the
//! decoder's sink pad.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::error::MediaError;

/// One coded video frame as the demuxer and parser deliver it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodedFrame {
    /// Presentation time, nanoseconds.
    pub pts: Option<u64>,
    /// Decode time, nanoseconds.
    pub dts: Option<u64>,
    pub duration: Option<u64>,
    pub keyframe: bool,
}

impl CodedFrame {
    fn decode_time(&self) -> Option<u64> {
        self.dts.or(self.pts)
    }
}

/// What the decoder is fed.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Per group of pictures in stream order: its keyframe's presentation time and the decode
    /// time of the last dependent frame to feed (`None`: the keyframe alone).
    pub groups: Vec<(u64, Option<u64>)>,
    /// Coded video frames in the stream.
    pub frames: u64,
    /// Coded frames the plan feeds the decoder.
    pub fed: u64,
    /// Where the video starts (its first presentation time), seconds.
    pub start_s: f64,
    /// Where the video ends (last presentation time plus its duration), seconds.
    pub end_s: f64,
}

/// The plan for sampling every `interval_s` seconds from the first frame (infinite: the first
/// frame only) with a decoded frame at most `tolerance_s` from each sampling time. `None` when the stream has no
/// keyframe with a timestamp (the caller decodes everything instead).
pub fn plan(frames: &[CodedFrame], interval_s: f64, tolerance_s: f64) -> Option<Plan> {
    let ns = |s: f64| (s * 1e9) as u64;
    // Groups: index ranges starting at each keyframe (frames before the first keyframe cannot
    // be decoded on their own and are dropped by the gate).
    let starts: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.keyframe && f.pts.is_some())
        .map(|(i, _)| i)
        .collect();
    if starts.is_empty() {
        return None;
    }
    let end = frames
        .iter()
        .filter_map(|f| f.pts.map(|p| p + f.duration.unwrap_or(0)))
        .max()
        .unwrap_or(0);
    let first_pts = frames.iter().filter_map(|f| f.pts).min().unwrap_or(0);
    let tolerance = ns(tolerance_s.max(0.0));
    let mut groups = Vec::with_capacity(starts.len());
    let mut fed = 0u64;
    for (g, &start) in starts.iter().enumerate() {
        let stop = starts.get(g + 1).copied().unwrap_or(frames.len());
        let members = &frames[start..stop];
        let key = members[0].pts.unwrap_or(0);
        let next_key = starts.get(g + 1).and_then(|&i| frames[i].pts);
        // Sampling times in [key, next keyframe) (the last group: up to the end), each needing
        // a frame when neither keyframe is within the tolerance.
        let span_end = next_key.unwrap_or(end);
        let mut cutoff: Option<u64> = None;
        if interval_s.is_finite() && interval_s > 0.0 {
            // Sampling times count from the first frame, as frame numbers do.
            let first = (key.saturating_sub(first_pts) as f64 / 1e9 / interval_s).ceil() as u64;
            let mut k = first;
            loop {
                let t = first_pts + ns(k as f64 * interval_s);
                if t >= span_end || (next_key.is_none() && t > end) {
                    break;
                }
                let near_key = t.saturating_sub(key) <= tolerance
                    || next_key.is_some_and(|n| n.saturating_sub(t) <= tolerance);
                if !near_key
                    && let Some(nearest) = members
                        .iter()
                        .filter(|f| f.pts.is_some())
                        .min_by_key(|f| f.pts.unwrap_or(0).abs_diff(t))
                    && let Some(d) = nearest.decode_time()
                {
                    cutoff = Some(cutoff.map_or(d, |c| c.max(d)));
                }
                k += 1;
            }
        }
        fed += 1 + members[1..]
            .iter()
            .filter(|f| keep_delta(f, key, cutoff))
            .count() as u64;
        groups.push((key, cutoff));
    }
    Some(Plan {
        groups,
        frames: frames.len() as u64,
        fed,
        start_s: first_pts as f64 / 1e9,
        end_s: end as f64 / 1e9,
    })
}

/// Whether a dependent frame of the group whose keyframe shows at `key` is fed. Leading
/// pictures (shown before their keyframe; in open groups they may refer to the previous group,
/// whose tail may have been dropped) never are.
fn keep_delta(f: &CodedFrame, key: u64, cutoff: Option<u64>) -> bool {
    let Some(cutoff) = cutoff else {
        return false;
    };
    if f.pts.is_some_and(|p| p < key) {
        return false;
    }
    f.decode_time().is_some_and(|d| d <= cutoff)
}

/// Applies a [`Plan`] to buffers arriving at the decoder, in decode order.
#[derive(Debug)]
pub struct Gate {
    pub plan: Plan,
    /// The current group's keyframe time and cutoff; `None` before the first keyframe.
    current: Option<(u64, Option<u64>)>,
    /// Frames let through.
    pub fed: u64,
}

impl Gate {
    pub fn new(plan: Plan) -> Self {
        Self {
            plan,
            current: None,
            fed: 0,
        }
    }

    /// Whether to feed this buffer to the decoder.
    pub fn admit(&mut self, frame: &CodedFrame) -> bool {
        if frame.keyframe {
            let key = frame.pts.unwrap_or(0);
            // A keyframe the scan did not see (it should not happen: same file, same demuxer)
            // makes its whole group fed.
            let cutoff = self
                .plan
                .groups
                .iter()
                .find(|(k, _)| k.abs_diff(key) < 1_000_000)
                .map_or(Some(u64::MAX), |(_, c)| *c);
            self.current = Some((key, cutoff));
            self.fed += 1;
            return true;
        }
        let keep = self
            .current
            .is_some_and(|(key, cutoff)| keep_delta(frame, key, cutoff));
        if keep {
            self.fed += 1;
        }
        keep
    }
}

pub fn coded_frame(buffer: &gst::BufferRef) -> CodedFrame {
    CodedFrame {
        pts: buffer.pts().map(|t| t.nseconds()),
        dts: buffer.dts().map(|t| t.nseconds()),
        duration: buffer.duration().map(|t| t.nseconds()),
        keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
    }
}

/// Lists the coded video frames of the file without decoding them. Stops at `max_frames + 1`
/// frames, the deadline, or `stall` without a frame or a pipeline message; any trouble is an
/// error (the caller then decodes in full, which reports the problem precisely).
pub fn scan(
    path: &Path,
    max_frames: u64,
    deadline: Duration,
    stall: Duration,
) -> Result<Vec<CodedFrame>, MediaError> {
    let started = Instant::now();
    let internal = |e: String| MediaError::Internal(format!("sparse scan: {e}"));
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path.to_string_lossy().as_ref())
        .build()
        .map_err(|e| internal(e.to_string()))?;
    let parse = gst::ElementFactory::make("parsebin")
        .build()
        .map_err(|e| internal(e.to_string()))?;
    pipeline
        .add_many([&src, &parse])
        .map_err(|e| internal(e.to_string()))?;
    src.link(&parse).map_err(|e| internal(e.to_string()))?;
    let frames: Arc<Mutex<Vec<CodedFrame>>> = Arc::default();
    let video_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let weak = pipeline.downgrade();
        let frames = frames.clone();
        parse.connect_pad_added(move |_, pad| {
            let Some(pipeline) = weak.upgrade() else {
                return;
            };
            // One demuxer thread feeds every sink: none may wait for preroll.
            let Ok(sink) = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .property("async", false)
                .build()
            else {
                return;
            };
            if pipeline.add(&sink).is_err() || sink.sync_state_with_parent().is_err() {
                return;
            }
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let video = caps
                .structure(0)
                .is_some_and(|s| s.name().starts_with("video/"));
            if video && !video_seen.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let frames = frames.clone();
                pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    if let Some(buffer) = info.buffer() {
                        let mut frames = frames.lock().unwrap_or_else(|e| e.into_inner());
                        if frames.len() as u64 > max_frames {
                            // Released by the binding (see the decoder's gate).
                            return gst::PadProbeReturn::Handled;
                        }
                        frames.push(coded_frame(buffer));
                    }
                    gst::PadProbeReturn::Ok
                });
            }
            if let Some(sink_pad) = sink.static_pad("sink") {
                let _ = pad.link(&sink_pad);
            }
        });
    }
    let bus = pipeline.bus().ok_or_else(|| internal("no bus".into()))?;
    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| internal(e.to_string()))?;
        let (mut seen, mut moved) = (0usize, Instant::now());
        loop {
            let elapsed = started.elapsed();
            if elapsed >= deadline {
                return Err(internal("deadline".into()));
            }
            let n = frames.lock().map_or(0, |f| f.len());
            if n as u64 > max_frames {
                return Ok(());
            }
            if n != seen {
                (seen, moved) = (n, Instant::now());
            } else if moved.elapsed() >= stall {
                return Err(internal("stalled".into()));
            }
            let wait = (deadline - elapsed).min(Duration::from_millis(20));
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(wait.as_nanos() as u64))
            else {
                continue;
            };
            moved = Instant::now();
            match msg.view() {
                gst::MessageView::Eos(_) => return Ok(()),
                gst::MessageView::Error(e) => return Err(internal(e.error().to_string())),
                _ => {}
            }
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    let frames = std::mem::take(&mut *frames.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// 25 fps, a keyframe every `gop` frames, no reordering.
    fn stream(seconds: u64, gop: u64) -> Vec<CodedFrame> {
        (0..seconds * 25)
            .map(|i| CodedFrame {
                pts: Some(i * 40 * MS),
                dts: Some(i * 40 * MS),
                duration: Some(40 * MS),
                keyframe: i % gop == 0,
            })
            .collect()
    }

    #[test]
    fn keyframes_within_the_tolerance_are_enough() {
        let p = plan(&stream(10, 50), 1.0, 1.0).unwrap();
        assert_eq!(p.groups.len(), 5);
        assert!(p.groups.iter().all(|(_, c)| c.is_none()), "{p:?}");
        assert_eq!(p.fed, 5);
        assert_eq!(p.frames, 250);
        assert!((p.end_s - 10.0).abs() < 1e-9);
    }

    #[test]
    fn long_groups_are_decoded_up_to_the_farthest_wanted_time() {
        // A keyframe every 10 s, sampling at 1 fps within 0.5 s: the group must be decoded
        // up to the frame at 9 s (1 s before the next keyframe is farther than 0.5 s).
        let frames = stream(20, 250);
        let p = plan(&frames, 1.0, 0.5).unwrap();
        assert_eq!(p.groups[0], (0, Some(9_000 * MS)));
        // The last group has no next keyframe: up to the last sampling time, 19 s.
        assert_eq!(p.groups[1], (10_000 * MS, Some(19_000 * MS)));
        let mut gate = Gate::new(p.clone());
        let fed: Vec<u64> = frames
            .iter()
            .filter(|f| gate.admit(f))
            .map(|f| f.pts.unwrap() / MS)
            .collect();
        assert_eq!(fed.len() as u64, p.fed);
        assert!(fed.contains(&9_000) && !fed.contains(&9_040), "{fed:?}");
    }

    #[test]
    fn dependent_frames_after_the_cutoff_and_leading_pictures_are_dropped() {
        // Decode order I P B B with the Bs shown before the P; a leading B before the second
        // keyframe.
        let f = |pts: u64, dts: u64, keyframe: bool| CodedFrame {
            pts: Some(pts * MS),
            dts: Some(dts * MS),
            duration: Some(40 * MS),
            keyframe,
        };
        let frames = vec![
            f(0, 0, true),
            f(120, 40, false),
            f(40, 80, false),
            f(80, 120, false),
            f(200, 160, false),
            f(160, 200, false),
            f(320, 240, true),
            f(280, 280, false),
            f(360, 320, false),
        ];
        let p = plan(&frames, 0.1, 0.03).unwrap();
        let mut gate = Gate::new(p);
        let fed: Vec<u64> = frames
            .iter()
            .filter(|f| gate.admit(f))
            .map(|f| f.pts.unwrap() / MS)
            .collect();
        // Wanted 100 and 200 ms in the first group: nearest frames 120 (dts 40; 80 is as near)
        // and 200 (dts 160), so everything up to dts 160 is fed and 160 (dts 200) is not; 300
        // is 20 ms from the second keyframe, whose leading B at 280 is dropped, and the clip
        // ends (400 ms) before the next sampling time.
        assert_eq!(fed, vec![0, 120, 40, 80, 200, 320]);
    }

    #[test]
    fn no_keyframe_means_no_plan() {
        let mut frames = stream(2, 1000);
        frames[0].keyframe = false;
        assert!(plan(&frames, 1.0, 1.0).is_none());
    }
}
