//! Decoding one clip with GStreamer: `filesrc ! decodebin`, then per stream, added as decodebin
//! exposes it, `videoconvert ! I420 ! appsink` and `audioconvert ! audioresample ! S16LE 16 kHz
//! mono ! appsink`; other streams go to `fakesink`. Limits are enforced as soon as the facts are
//! known (resolution from the first frame's caps, duration from the first query that answers,
//! frame count as frames arrive, wall-clock deadline on the controlling thread), and the
//! pipeline is torn down at once when one is exceeded.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use clipguard_pdq as pdq;
use clipguard_pdq::vpdq::{FrameHash, FrameSelector};

use crate::error::MediaError;
use crate::frames::{
    I420, LumaGrid, Pick, Sampler, encode_jpeg, i420_to_rgb_thumbnail, thumbnail_size,
};
use crate::sparse::{self, Gate};
use crate::{DecodeMode, MediaConfig};

/// One picked frame, as a JPEG thumbnail.
#[derive(Debug, Clone)]
pub struct PickedFrame {
    pub index: u32,
    pub timestamp_s: f64,
    pub scene_cut: bool,
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// PDQ of the full-resolution frame; `None` when hashing is off.
    pub pdq: Option<pdq::Hashed>,
}

/// Everything decoding produced.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub duration_s: f64,
    pub frames_decoded: u64,
    pub frames: Vec<PickedFrame>,
    /// vPDQ: PDQ of every frame `pdq_rate_hz` selects, unpruned (empty when hashing is off).
    pub frame_hashes: Vec<FrameHash>,
    /// 0 for full decoding; when sparse, the longest time between consecutive vPDQ frames (and
    /// at least the clip's sampling interval), for [`clipguard_pdq::vpdq::compare_sparse`].
    pub frame_hash_max_gap_s: f64,
    /// 16 kHz mono S16LE PCM; `None` when the clip has no audio stream.
    pub audio: Option<Vec<u8>>,
    pub container: String,
    pub video_codec: String,
    pub audio_codec: String,
}

#[derive(Debug, Default)]
struct VideoState {
    sampler: Option<Sampler>,
    frames: u64,
    last_pts_s: f64,
    frame_duration_s: f64,
    width: u32,
    height: u32,
    fps: f64,
    picked: Vec<PickedFrame>,
    selector: Option<FrameSelector>,
    /// Sparse decoding: the last frame number hashed into the vPDQ.
    last_vpdq: Option<u32>,
    /// The last decoded frame's number in the stream.
    last_index: Option<u32>,
}

#[derive(Default)]
struct Shared {
    abort: Mutex<Option<MediaError>>,
    video: Mutex<VideoState>,
    audio: Mutex<Option<Vec<u8>>>,
    names: Mutex<(String, String, String)>,
    unknown: Mutex<Vec<String>>,
    video_linked: AtomicBool,
    no_more_pads: AtomicBool,
    /// Frames to hash and thumbnails to encode go to a worker thread, so PDQ and JPEG overlap
    /// decoding instead of holding up the streaming thread.
    hasher: Mutex<Option<std::sync::mpsc::SyncSender<HashJob>>>,
    /// Sparse decoding: what reaches the video decoder (`None`: everything).
    gate: Mutex<Option<Gate>>,
    /// When data last moved (a sample at a sink, a new pad): milliseconds after the start.
    progress_ms: std::sync::atomic::AtomicU64,
    started: std::sync::OnceLock<Instant>,
    /// Set when decoding sparsely: where the stream's first frame shows.
    sparse_start_s: std::sync::OnceLock<f64>,
    /// The first audio stream is decoded (its samples kept only when audio is extracted), so
    /// a clip whose audio runs past its video is told apart from a truncated one.
    audio_linked: AtomicBool,
    /// Where the decoded audio ends, microseconds.
    audio_end_us: std::sync::atomic::AtomicU64,
}

/// Work on one frame off the streaming thread: a full-resolution luma plane to hash, and/or a
/// picked frame's thumbnail to encode.
struct HashJob {
    index: u32,
    timestamp_s: f64,
    /// Part of the vPDQ (else only a picked frame's own hash).
    vpdq: bool,
    /// The packed Y plane, when the frame is hashed.
    y: Option<Vec<u8>>,
    width: usize,
    height: usize,
    limited: bool,
    /// Hash a copy reduced by this factor in each direction (1: full size).
    reduce: usize,
    /// A picked frame's RGB thumbnail (pixels, width, height) and the JPEG quality.
    thumbnail: Option<(Vec<u8>, u32, u32, u8)>,
}

/// What the worker made of one job.
struct JobDone {
    index: u32,
    timestamp_s: f64,
    vpdq: bool,
    hash: Option<pdq::Hashed>,
    jpeg: Option<Result<Vec<u8>, String>>,
}

/// The reduction PDQ hashes a frame at: the largest integer factor, at most 4, that keeps the
/// shorter side at least `min_side` (0: full size, as the reference hashes).
fn pdq_reduction(width: usize, height: usize, min_side: u32) -> usize {
    if min_side == 0 {
        return 1;
    }
    (width.min(height) / min_side as usize).clamp(1, 4)
}

/// Works through jobs until the sender is dropped.
fn spawn_hasher(jobs: std::sync::mpsc::Receiver<HashJob>) -> std::thread::JoinHandle<Vec<JobDone>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        for job in jobs {
            let hash = job.y.as_ref().map(|y| {
                let (luma, w, h) = pdq::luma_from_video_plane_reduced(
                    y,
                    job.width,
                    job.width,
                    job.height,
                    job.limited,
                    job.reduce,
                );
                pdq::hash_luma(&luma, w, h)
            });
            let jpeg = job
                .thumbnail
                .as_ref()
                .map(|(rgb, w, h, quality)| encode_jpeg(rgb, *w, *h, *quality));
            out.push(JobDone {
                index: job.index,
                timestamp_s: job.timestamp_s,
                vpdq: job.vpdq,
                hash,
                jpeg,
            });
        }
        out
    })
}

impl Shared {
    /// Notes that data moved.
    fn progress(&self) {
        if let Some(t) = self.started.get() {
            self.progress_ms
                .store(t.elapsed().as_millis() as u64, Ordering::SeqCst);
        }
    }

    fn abort(&self, e: MediaError) {
        let mut slot = lock(&self.abort);
        if slot.is_none() {
            *slot = Some(e);
        }
    }
    fn aborted(&self) -> bool {
        lock(&self.abort).is_some()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes sure GStreamer and the elements the stage needs are present. Call at worker start so a
/// missing plugin stops the worker with the reason, not at the first clip.
pub fn init() -> Result<(), MediaError> {
    gst::init().map_err(|e| MediaError::Internal(format!("gstreamer init: {e}")))?;
    for element in [
        "filesrc",
        "decodebin",
        "appsink",
        "videoconvert",
        "audioconvert",
        "audioresample",
        "fakesink",
    ] {
        if gst::ElementFactory::find(element).is_none() {
            return Err(MediaError::Internal(format!(
                "GStreamer element `{element}` is missing (install gstreamer1.0-plugins-base)"
            )));
        }
    }
    Ok(())
}

fn make(factory: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|e| MediaError::Internal(format!("cannot create {factory}: {e}")))
}

/// The vPDQ of a video file at `rate_hz` (0 = every frame), unpruned, as the reference hasher
/// gives it: the stage's decoder and limits from `settings`, with sampling and audio off.
pub fn vpdq_of_file(
    path: &Path,
    settings: &MediaConfig,
    rate_hz: f64,
) -> Result<Vec<FrameHash>, MediaError> {
    init()?;
    let settings = MediaConfig {
        decode: DecodeMode::Full,
        pdq: true,
        pdq_rate_hz: rate_hz,
        sample_fps: 0.0,
        scene_cut_threshold: 0.0,
        max_sampled_frames: 1,
        extract_audio: false,
        ..settings.clone()
    };
    Ok(decode_file(path, &settings)?.frame_hashes)
}

/// Decodes the file at `path` under `settings`.
pub fn decode_file(path: &Path, settings: &MediaConfig) -> Result<Decoded, MediaError> {
    let started = Instant::now();
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path.to_string_lossy().as_ref())
        .build()
        .map_err(|e| MediaError::Internal(format!("cannot create filesrc: {e}")))?;
    let decodebin = make("decodebin")?;
    pipeline
        .add_many([&src, &decodebin])
        .map_err(|e| MediaError::Internal(e.to_string()))?;
    src.link(&decodebin)
        .map_err(|e| MediaError::Internal(e.to_string()))?;

    let shared = Arc::new(Shared::default());
    let _ = shared.started.set(started);
    // Sparse decoding: where the keyframes are, and what the decoder needs of each group.
    // When the scan fails the file is decoded in full, which names the problem precisely.
    let plan = (settings.decode == DecodeMode::Sparse)
        .then(|| sparse_plan(path, settings))
        .transpose()?
        .flatten();
    let sparse_end_s = plan.as_ref().map(|p| p.end_s);
    if let Some(plan) = plan {
        let _ = shared.sparse_start_s.set(plan.start_s);
        *lock(&shared.gate) = Some(Gate::new(plan));
    }
    let sparse = sparse_end_s.is_some();
    // At most 2 frames wait for the hashing thread (bounded memory; decoding waits beyond).
    let hasher = {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        *lock(&shared.hasher) = Some(tx);
        spawn_hasher(rx)
    };
    lock(&shared.video).sampler = Some(Sampler::new(
        settings.sample_fps,
        // Decoded frames are not consecutive when sparse: no scene cuts between them.
        if sparse {
            0.0
        } else {
            settings.scene_cut_threshold
        },
        settings.min_scene_gap_s,
        settings.max_sampled_frames,
    ));

    if let Some(bin) = decodebin.downcast_ref::<gst::Bin>() {
        let shared = shared.clone();
        bin.connect_element_added(move |_, element| {
            let Some(factory) = element.factory() else {
                return;
            };
            let klass = factory
                .metadata(gst::ELEMENT_METADATA_KLASS)
                .unwrap_or_default();
            let name = factory.name().to_string();
            if klass.contains("Decoder")
                && klass.contains("Video")
                && let Some(pad) = element.static_pad("sink")
                && lock(&shared.gate).is_some()
            {
                let shared = shared.clone();
                pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    let Some(buffer) = info.buffer() else {
                        return gst::PadProbeReturn::Ok;
                    };
                    let frame = sparse::coded_frame(buffer);
                    let admitted = lock(&shared.gate)
                        .as_mut()
                        .is_none_or(|gate| gate.admit(&frame));
                    if admitted {
                        gst::PadProbeReturn::Ok
                    } else {
                        // `Handled`: the binding releases the buffer (with `Drop` the core
                        // would release it again, from a pointer the binding emptied).
                        gst::PadProbeReturn::Handled
                    }
                });
            }
            let mut names = lock(&shared.names);
            if klass.contains("Demuxer") && names.0.is_empty() {
                names.0 = name;
            } else if klass.contains("Decoder") && klass.contains("Video") && names.1.is_empty() {
                names.1 = name;
            } else if klass.contains("Decoder") && klass.contains("Audio") && names.2.is_empty() {
                names.2 = name;
            }
        });
    }
    {
        let shared = shared.clone();
        decodebin.connect("unknown-type", false, move |args| {
            if let Some(caps) = args.get(2).and_then(|v| v.get::<gst::Caps>().ok()) {
                let name = caps
                    .structure(0)
                    .map(|s| s.name().to_string())
                    .unwrap_or_default();
                lock(&shared.unknown).push(name);
            }
            None
        });
    }
    {
        let shared = shared.clone();
        decodebin.connect_no_more_pads(move |_| shared.no_more_pads.store(true, Ordering::SeqCst));
    }
    {
        let shared = shared.clone();
        let weak = pipeline.downgrade();
        let settings = settings.clone();
        decodebin.connect_pad_added(move |_, pad| {
            let Some(pipeline) = weak.upgrade() else {
                return;
            };
            shared.progress();
            if let Err(e) = link_stream(&pipeline, pad, &shared, &settings) {
                shared.abort(e);
            }
        });
    }

    let result = run_bus(&pipeline, &shared, settings, started);
    let _ = pipeline.set_state(gst::State::Null);
    // Every frame is in; let the hashing thread finish and collect its hashes.
    lock(&shared.hasher).take();
    let mut done = hasher.join().unwrap_or_default();
    done.sort_by_key(|d| d.index);
    let (container, video_codec, audio_codec) = lock(&shared.names).clone();
    result.and_then(|duration_s| {
        let mut video = std::mem::take(&mut *lock(&shared.video));
        if !shared.video_linked.load(Ordering::SeqCst) || video.frames == 0 {
            let unknown = lock(&shared.unknown).clone();
            if !unknown.is_empty() {
                return Err(MediaError::UnsupportedCodec(unknown.join(", ")));
            }
            return Err(if shared.video_linked.load(Ordering::SeqCst) {
                MediaError::Truncated("no video frame could be decoded".into())
            } else {
                MediaError::NoVideoStream(String::new())
            });
        }
        // Sparse: the demuxer delivered frames up to `sparse_end_s`, decoded or not.
        let decoded_until =
            (video.last_pts_s + video.frame_duration_s).max(sparse_end_s.unwrap_or(0.0));
        // The container's duration is its longest stream's: a clip whose audio runs on after
        // the video (or the other way round) is whole. A file cut short loses the end of every
        // stream, so it is truncated only when no stream reaches the declared end.
        let audio_until = shared.audio_end_us.load(Ordering::SeqCst) as f64 / 1e6;
        let until = decoded_until.max(audio_until);
        if let Some(duration) = duration_s
            && duration > 1.0
            && until < duration * 0.9 - 0.5
        {
            let audio = if shared.audio_linked.load(Ordering::SeqCst) {
                format!(", audio at {audio_until:.2} s")
            } else {
                String::new()
            };
            return Err(MediaError::Truncated(format!(
                "video stops at {decoded_until:.2} s{audio} of the {duration:.2} s the container \
                 declares"
            )));
        }
        let mut frames = std::mem::take(&mut video.picked);
        for f in &mut frames {
            if let Ok(i) = done.binary_search_by_key(&f.index, |d| d.index) {
                f.pdq = done[i].hash;
                if let Some(jpeg) = done[i].jpeg.take() {
                    f.jpeg = jpeg.map_err(MediaError::Internal)?;
                }
            }
        }
        let frame_hashes: Vec<FrameHash> = done
            .iter()
            .filter(|d| d.vpdq)
            .filter_map(|d| {
                d.hash.map(|h| FrameHash {
                    frame: u64::from(d.index),
                    quality: h.quality,
                    hash: h.hash,
                    timestamp_s: d.timestamp_s,
                })
            })
            .collect();
        let frame_hash_max_gap_s: f64 = if sparse {
            let gaps = frame_hashes
                .windows(2)
                .map(|w: &[FrameHash]| w[1].timestamp_s - w[0].timestamp_s);
            gaps.fold(1.0 / settings.pdq_rate_hz.max(1e-3), f64::max)
        } else {
            0.0
        };
        Ok(Decoded {
            frame_hash_max_gap_s,
            width: video.width,
            height: video.height,
            fps: video.fps,
            duration_s: duration_s.unwrap_or(decoded_until),
            frames_decoded: video.frames,
            frames,
            frame_hashes,
            audio: lock(&shared.audio).take(),
            container: container.clone(),
            video_codec: video_codec.clone(),
            audio_codec: audio_codec.clone(),
        })
    })
}

/// The sparse plan for `path`, `None` when the scan or the plan fails (decode in full then).
/// A stream with more coded frames than `max_frames` is refused here.
fn sparse_plan(path: &Path, settings: &MediaConfig) -> Result<Option<sparse::Plan>, MediaError> {
    let frames = match sparse::scan(
        path,
        settings.max_frames,
        Duration::from_secs_f64(settings.deadline_s),
        Duration::from_secs_f64(settings.stall_timeout_s),
    ) {
        Ok(frames) => frames,
        Err(e) => {
            tracing::debug!(error = %e, "sparse scan failed; decoding in full");
            return Ok(None);
        }
    };
    if frames.len() as u64 > settings.max_frames {
        return Err(MediaError::TooManyFrames {
            limit: settings.max_frames,
        });
    }
    // Frames are wanted at the sampling clock and, for the vPDQ, at its rate.
    let mut interval = f64::INFINITY;
    if settings.sample_fps > 0.0 {
        interval = interval.min(1.0 / settings.sample_fps);
    }
    if settings.pdq && settings.pdq_rate_hz > 0.0 {
        interval = interval.min(1.0 / settings.pdq_rate_hz);
    }
    Ok(sparse::plan(&frames, interval, settings.sparse_tolerance_s))
}

/// Runs the pipeline to EOS, an error, an abort or the deadline. Returns the video stream's
/// duration when the pipeline could tell it.
fn run_bus(
    pipeline: &gst::Pipeline,
    shared: &Shared,
    settings: &MediaConfig,
    started: Instant,
) -> Result<Option<f64>, MediaError> {
    let bus = pipeline
        .bus()
        .ok_or_else(|| MediaError::Internal("pipeline without bus".into()))?;
    if pipeline.set_state(gst::State::Playing).is_err() {
        // The reason is on the bus.
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(500),
            &[gst::MessageType::Error],
        ) && let gst::MessageView::Error(err) = msg.view()
        {
            return Err(classify_error(err, shared));
        }
        return Err(MediaError::Internal("pipeline refused to start".into()));
    }
    let deadline = Duration::from_secs_f64(settings.deadline_s);
    let stall = Duration::from_secs_f64(settings.stall_timeout_s);
    let mut duration: Option<f64> = None;
    loop {
        if let Some(e) = lock(&shared.abort).take() {
            return Err(e);
        }
        let elapsed = started.elapsed();
        if elapsed >= deadline {
            return Err(MediaError::Timeout {
                limit_s: settings.deadline_s,
            });
        }
        // decodebin drops a child's error that comes while it is still setting that child up
        // (a demuxer failing at once on a broken file): the pipeline then waits forever.
        // Nothing moving for this long is that, or a decoder that hangs on the input.
        let quiet = elapsed.saturating_sub(Duration::from_millis(
            shared.progress_ms.load(Ordering::SeqCst),
        ));
        if quiet >= stall {
            return Err(MediaError::Corrupt(format!(
                "the decoder stopped: no data for {:.0} s and no error reported",
                stall.as_secs_f64()
            )));
        }
        if shared.no_more_pads.load(Ordering::SeqCst) && !shared.video_linked.load(Ordering::SeqCst)
        {
            let unknown = lock(&shared.unknown).clone();
            if !unknown.is_empty() {
                return Err(MediaError::UnsupportedCodec(unknown.join(", ")));
            }
            return Err(MediaError::NoVideoStream(String::new()));
        }
        if duration.is_none()
            && let Some(d) = pipeline.query_duration::<gst::ClockTime>()
        {
            let d = d.seconds_f64();
            if d > settings.max_duration_s {
                return Err(MediaError::TooLong {
                    duration_s: d,
                    limit_s: settings.max_duration_s,
                });
            }
            duration = Some(d);
        }
        let wait = (deadline - elapsed).min(Duration::from_millis(20));
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(wait.as_nanos() as u64)) else {
            continue;
        };
        shared.progress();
        match msg.view() {
            gst::MessageView::Eos(_) => {
                if let Some(e) = lock(&shared.abort).take() {
                    return Err(e);
                }
                return Ok(duration);
            }
            gst::MessageView::Error(err) => {
                if let Some(e) = lock(&shared.abort).take() {
                    return Err(e);
                }
                return Err(classify_error(err, shared));
            }
            _ => {}
        }
    }
}

fn classify_error(err: &gst::message::Error, shared: &Shared) -> MediaError {
    let e = err.error();
    let text = e.message().to_string();
    let debug = err.debug().map(|d| d.to_string()).unwrap_or_default();
    let unknown = lock(&shared.unknown).clone();
    if !unknown.is_empty() {
        return MediaError::UnsupportedCodec(unknown.join(", "));
    }
    if let Some(kind) = e.kind::<gst::StreamError>() {
        return match kind {
            gst::StreamError::TypeNotFound | gst::StreamError::WrongType => {
                MediaError::UnrecognizedFormat(text)
            }
            gst::StreamError::CodecNotFound | gst::StreamError::NotImplemented => {
                MediaError::UnsupportedCodec(text)
            }
            gst::StreamError::Demux
            | gst::StreamError::Decode
            | gst::StreamError::Format
            | gst::StreamError::Failed => {
                let lower = format!("{text} {debug}").to_ascii_lowercase();
                if lower.contains("incomplete")
                    || lower.contains("moov")
                    || lower.contains("eos")
                    || lower.contains("end of")
                    || lower.contains("premature")
                {
                    MediaError::Truncated(text)
                } else if !shared.video_linked.load(Ordering::SeqCst)
                    && shared.no_more_pads.load(Ordering::SeqCst)
                {
                    MediaError::NoVideoStream(format!(" ({text})"))
                } else {
                    MediaError::Corrupt(text)
                }
            }
            _ => MediaError::Corrupt(text),
        };
    }
    if let Some(gst::CoreError::MissingPlugin) = e.kind::<gst::CoreError>() {
        return MediaError::UnsupportedCodec(text);
    }
    if e.kind::<gst::ResourceError>().is_some() {
        return MediaError::Internal(format!("{text} ({debug})"));
    }
    MediaError::Corrupt(format!("{text} ({debug})"))
}

fn link_stream(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    shared: &Arc<Shared>,
    settings: &MediaConfig,
) -> Result<(), MediaError> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let name = caps
        .structure(0)
        .map(|s| s.name().to_string())
        .unwrap_or_default();
    let internal = |e: gst::glib::BoolError| MediaError::Internal(e.to_string());
    let link_err = |e: gst::PadLinkError| MediaError::Internal(format!("link: {e:?}"));
    let elements: Vec<gst::Element> =
        if name.starts_with("video/") && !shared.video_linked.swap(true, Ordering::SeqCst) {
            let convert = make("videoconvert")?;
            let sink = gst_app::AppSink::builder()
                .caps(
                    &gst_video::VideoCapsBuilder::new()
                        .format(gst_video::VideoFormat::I420)
                        .build(),
                )
                .sync(false)
                .max_buffers(4)
                .callbacks(video_callbacks(shared.clone(), settings.clone()))
                .build();
            vec![convert, sink.upcast()]
        } else if name.starts_with("audio/") && !shared.audio_linked.swap(true, Ordering::SeqCst) {
            if settings.extract_audio {
                *lock(&shared.audio) = Some(Vec::new());
            }
            let convert = make("audioconvert")?;
            let resample = make("audioresample")?;
            let sink = gst_app::AppSink::builder()
                .caps(
                    &gst::Caps::builder("audio/x-raw")
                        .field("format", "S16LE")
                        .field("rate", 16_000i32)
                        .field("channels", 1i32)
                        .field("layout", "interleaved")
                        .build(),
                )
                .sync(false)
                .max_buffers(16)
                .callbacks(audio_callbacks(shared.clone(), settings.max_duration_s))
                .build();
            vec![convert, resample, sink.upcast()]
        } else {
            vec![make("fakesink")?]
        };
    pipeline.add_many(&elements).map_err(internal)?;
    gst::Element::link_many(&elements).map_err(internal)?;
    for e in &elements {
        e.sync_state_with_parent().map_err(internal)?;
    }
    let sink_pad = elements[0]
        .static_pad("sink")
        .ok_or_else(|| MediaError::Internal("no sink pad".into()))?;
    pad.link(&sink_pad).map_err(link_err)?;
    Ok(())
}

fn video_callbacks(shared: Arc<Shared>, settings: MediaConfig) -> gst_app::AppSinkCallbacks {
    gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            shared.progress();
            match on_video_sample(&shared, &settings, &sample) {
                Ok(()) => Ok(gst::FlowSuccess::Ok),
                Err(e) => {
                    shared.abort(e);
                    Err(gst::FlowError::Eos)
                }
            }
        })
        .build()
}

fn on_video_sample(
    shared: &Shared,
    settings: &MediaConfig,
    sample: &gst::Sample,
) -> Result<(), MediaError> {
    if shared.aborted() {
        return Err(MediaError::Internal("aborted".into()));
    }
    let caps = sample
        .caps()
        .ok_or_else(|| MediaError::Internal("sample without caps".into()))?;
    let info =
        gst_video::VideoInfo::from_caps(caps).map_err(|e| MediaError::Internal(e.to_string()))?;
    let buffer = sample
        .buffer()
        .ok_or_else(|| MediaError::Internal("sample without buffer".into()))?;
    let (width, height) = (info.width(), info.height());
    if width > settings.max_width || height > settings.max_height {
        return Err(MediaError::ResolutionTooLarge {
            width,
            height,
            max_width: settings.max_width,
            max_height: settings.max_height,
        });
    }
    let pts = buffer.pts().map(|t| t.seconds_f64());
    let mut video = lock(&shared.video);
    video.frames += 1;
    if video.frames > settings.max_frames {
        return Err(MediaError::TooManyFrames {
            limit: settings.max_frames,
        });
    }
    // Sparse decoding: the stream's first frame time (set once, before the pipeline starts).
    let sparse_start_s = shared.sparse_start_s.get().copied();
    let sparse = sparse_start_s.is_some();
    let fps = info.fps();
    let fps = if fps.denom() > 0 && fps.numer() > 0 {
        f64::from(fps.numer()) / f64::from(fps.denom())
    } else {
        0.0
    };
    let decoded = (video.frames - 1) as u32;
    let t = pts.unwrap_or(if fps > 0.0 {
        f64::from(decoded) / fps
    } else {
        0.0
    });
    // The frame's number in the stream: the decode count, or when frames were skipped its
    // time since the first frame × frame rate (kept increasing).
    let start_s = sparse_start_s.unwrap_or(0.0);
    let index = if sparse && fps > 0.0 {
        // Numbered from the stream's first frame, as a full decode numbers it.
        let n = ((t - start_s).max(0.0) * fps).round() as u32;
        match video.last_index {
            Some(p) if n <= p => p + 1,
            _ => n,
        }
    } else {
        decoded
    };
    video.last_index = Some(index);
    if t > settings.max_duration_s {
        return Err(MediaError::TooLong {
            duration_s: t,
            limit_s: settings.max_duration_s,
        });
    }
    video.width = width;
    video.height = height;
    video.fps = fps;
    video.last_pts_s = video.last_pts_s.max(t);
    video.frame_duration_s = buffer
        .duration()
        .map(|d| d.seconds_f64())
        .unwrap_or(if fps > 0.0 { 1.0 / fps } else { 0.0 });

    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|e| MediaError::Internal(format!("map frame: {e}")))?;
    let y = frame
        .plane_data(0)
        .map_err(|e| MediaError::Internal(e.to_string()))?;
    let strides = frame.plane_stride();
    let grid = LumaGrid::from_plane(y, strides[0] as usize, width as usize, height as usize);
    let pick = video.sampler.as_mut().and_then(|s| s.offer(t, grid));
    // PDQ needs the full-resolution luma, which only exists here: the frames vPDQ wants and
    // the picked ones go (as a packed copy of the Y plane) to the worker thread, and only
    // 32 bytes + quality per frame leave the worker. A picked frame's thumbnail is scaled here
    // (it needs all three planes) and JPEG-encoded there.
    let vpdq = if settings.pdq {
        let selector = *video
            .selector
            .get_or_insert_with(|| FrameSelector::new(settings.pdq_rate_hz, fps));
        let vpdq = if sparse {
            // The frames a full decode would hash, where they were decoded; elsewhere a decoded
            // frame at least a hashing interval after the last hashed one (a keyframe).
            let due = video
                .last_vpdq
                .is_none_or(|last| index >= last + selector.frame_mod() as u32);
            selector.wants(u64::from(index)) || due
        } else {
            selector.wants(u64::from(index))
        };
        if vpdq {
            video.last_vpdq = Some(index);
        }
        vpdq
    } else {
        false
    };
    let hash = settings.pdq && (vpdq || pick.is_some());
    if !hash && pick.is_none() {
        return Ok(());
    }
    let (w, h) = (width as usize, height as usize);
    let packed = hash.then(|| {
        let stride = strides[0] as usize;
        let mut packed = Vec::with_capacity(w * h);
        for row in 0..h {
            packed.extend_from_slice(&y[row * stride..row * stride + w]);
        }
        packed
    });
    let mut thumbnail = None;
    if let Some(pick) = pick {
        let planes = I420 {
            y,
            u: frame
                .plane_data(1)
                .map_err(|e| MediaError::Internal(e.to_string()))?,
            v: frame
                .plane_data(2)
                .map_err(|e| MediaError::Internal(e.to_string()))?,
            y_stride: strides[0] as usize,
            uv_stride: strides[1] as usize,
            width: w,
            height: h,
        };
        let (tw, th) = thumbnail_size(width, height, settings.thumbnail_short_side);
        let rgb = i420_to_rgb_thumbnail(&planes, tw as usize, th as usize);
        thumbnail = Some((rgb, tw, th, settings.jpeg_quality));
        video.picked.push(PickedFrame {
            index,
            timestamp_s: t,
            scene_cut: pick == Pick::SceneCut,
            // Filled in from the worker's JPEG.
            jpeg: Vec::new(),
            width: tw,
            height: th,
            pdq: None,
        });
    }
    let job = HashJob {
        index,
        timestamp_s: t,
        vpdq,
        y: packed,
        width: w,
        height: h,
        limited: info.colorimetry().range() != gst_video::VideoColorRange::Range0_255,
        reduce: pdq_reduction(w, h, settings.pdq_min_side),
        thumbnail,
    };
    let sender = lock(&shared.hasher).clone();
    if let Some(tx) = sender {
        // Blocks while the worker is 2 frames behind (backpressure).
        drop(video);
        let _ = tx.send(job);
    }
    Ok(())
}

fn audio_callbacks(shared: Arc<Shared>, max_duration_s: f64) -> gst_app::AppSinkCallbacks {
    // 16 kHz mono S16: 32,000 bytes a second.
    let max_bytes = (max_duration_s * 32_000.0) as usize + 32_000;
    gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            shared.progress();
            let Some(buffer) = sample.buffer() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            if let Some(pts) = buffer.pts() {
                let end = pts.saturating_add(buffer.duration().unwrap_or(gst::ClockTime::ZERO));
                shared
                    .audio_end_us
                    .fetch_max(end.useconds(), Ordering::SeqCst);
            }
            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
            let mut audio = lock(&shared.audio);
            if let Some(pcm) = audio.as_mut() {
                if pcm.len() + map.len() > max_bytes {
                    drop(audio);
                    shared.abort(MediaError::TooLong {
                        duration_s: (max_bytes / 32_000) as f64,
                        limit_s: max_duration_s,
                    });
                    return Err(gst::FlowError::Eos);
                }
                pcm.extend_from_slice(&map);
            }
            Ok(gst::FlowSuccess::Ok)
        })
        .build()
}
