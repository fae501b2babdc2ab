//! The visible moving watermark and the re-encode that burns it in: `filesrc ! decodebin`, then
//! the video through `gdkpixbufoverlay` (the mark moved on every frame) and `openh264enc`, the
//! audio through `avenc_aac`, both into `mp4mux`. The mark bounces across the frame on two
//! incommensurate periods, so no one fixed box covers it for the length of a clip.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;

use crate::ReleaseError;

/// The built-in mark's word, drawn in a 5 × 7 pixel font.
const WORD: &str = "CLIPGUARD";

/// Rows of each glyph of [`WORD`], five bits each, the leftmost pixel the highest bit.
fn glyph(c: char) -> [u8; 7] {
    match c {
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'D' => [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E],
        _ => [0; 7],
    }
}

/// The built-in mark as a PNG: the word in dark letters on a light plate with a dark border,
/// readable on bright and dark footage alike.
pub fn builtin_png() -> Result<Vec<u8>, ReleaseError> {
    const SCALE: u32 = 4;
    const PAD: u32 = 3 * SCALE;
    let letters = WORD.chars().count() as u32;
    let width = PAD * 2 + letters * 6 * SCALE - SCALE;
    let height = PAD * 2 + 7 * SCALE;
    let mut img = image::RgbaImage::from_pixel(width, height, image::Rgba([245, 245, 245, 230]));
    let border = SCALE / 2 + 1;
    for (x, y, px) in img.enumerate_pixels_mut() {
        if x < border || y < border || x >= width - border || y >= height - border {
            *px = image::Rgba([20, 20, 20, 255]);
        }
    }
    for (i, c) in WORD.chars().enumerate() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..5u32 {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                let x0 = PAD + (i as u32 * 6 + col) * SCALE;
                let y0 = PAD + row as u32 * SCALE;
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        img.put_pixel(x0 + dx, y0 + dy, image::Rgba([20, 20, 20, 255]));
                    }
                }
            }
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| ReleaseError::Config(format!("built-in watermark: {e}")))?;
    Ok(out.into_inner())
}

/// Where the mark is and how it moves.
#[derive(Debug, Clone)]
pub struct Watermark {
    /// The PNG burned in.
    pub image: PathBuf,
    /// Its size in pixels.
    pub image_size: (u32, u32),
    /// Its width as a fraction of the frame's.
    pub width_fraction: f64,
    /// Its opacity, 0–1.
    pub alpha: f64,
    /// Seconds it takes to cross the frame horizontally (vertically: 0.77 of it).
    pub crossing_s: f64,
    /// What the rendition record says was burned in.
    pub description: String,
}

/// A box in a frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Watermark {
    /// The mark's size in a `frame_w` × `frame_h` frame (at least 16 px wide, never wider than
    /// the frame).
    pub fn size(&self, frame_w: u32, frame_h: u32) -> (u32, u32) {
        let (iw, ih) = self.image_size;
        let w = ((frame_w as f64 * self.width_fraction).round() as u32)
            .clamp(16.min(frame_w), frame_w.max(1));
        let h = ((w as f64 * ih as f64 / iw.max(1) as f64).round() as u32).clamp(1, frame_h.max(1));
        (w, h)
    }

    /// Where the mark is at `t` seconds: a triangle wave across the free width and, on a
    /// shorter period with a phase offset, across the free height.
    pub fn at(&self, t: f64, frame_w: u32, frame_h: u32) -> Rect {
        let (w, h) = self.size(frame_w, frame_h);
        let free_x = frame_w.saturating_sub(w) as f64;
        let free_y = frame_h.saturating_sub(h) as f64;
        let triangle = |phase: f64| {
            let p = phase.rem_euclid(2.0);
            if p <= 1.0 { p } else { 2.0 - p }
        };
        let period = self.crossing_s.max(0.1);
        Rect {
            x: (triangle(t / period) * free_x).round() as u32,
            y: (triangle(t / (period * 0.77) + 0.35) * free_y).round() as u32,
            width: w,
            height: h,
        }
    }
}

/// Encoder settings of the rendition.
#[derive(Debug, Clone, Copy)]
pub struct Encoding {
    pub video_bitrate_kbps: u32,
    pub deadline: Duration,
}

fn element(factory: &str) -> Result<gst::Element, ReleaseError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| ReleaseError::Render(format!("GStreamer element `{factory}` is missing")))
}

/// Checks that every element a rendition needs is installed (at start, not at the first clip).
pub fn check_elements() -> Result<(), ReleaseError> {
    gst::init().map_err(|e| ReleaseError::Render(format!("GStreamer: {e}")))?;
    for f in [
        "filesrc",
        "decodebin",
        "videoconvert",
        "gdkpixbufoverlay",
        "openh264enc",
        "h264parse",
        "audioconvert",
        "audioresample",
        "avenc_aac",
        "mp4mux",
        "filesink",
        "queue",
    ] {
        if gst::ElementFactory::find(f).is_none() {
            return Err(ReleaseError::Render(format!(
                "GStreamer element `{f}` is missing (the rendition needs gstreamer1.0-plugins-base, -good, -bad and gstreamer1.0-libav)"
            )));
        }
    }
    Ok(())
}

/// Links `chain` in order inside `pipeline`, the last one to `sink_pad`'s element.
fn chain(pipeline: &gst::Pipeline, elements: &[gst::Element]) -> Result<(), ReleaseError> {
    pipeline
        .add_many(elements)
        .map_err(|e| ReleaseError::Render(format!("pipeline: {e}")))?;
    gst::Element::link_many(elements).map_err(|e| ReleaseError::Render(format!("link: {e}")))?;
    for e in elements {
        e.sync_state_with_parent()
            .map_err(|e| ReleaseError::Render(format!("state: {e}")))?;
    }
    Ok(())
}

/// What the re-encode saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rendered {
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    pub audio: bool,
}

/// Re-encodes `input` into the MP4 `output` with `mark` burned in (H.264, AAC audio when the
/// clip has audio).
pub fn render(
    input: &Path,
    output: &Path,
    mark: &Watermark,
    enc: Encoding,
) -> Result<Rendered, ReleaseError> {
    gst::init().map_err(|e| ReleaseError::Render(format!("GStreamer: {e}")))?;
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", input.display().to_string())
        .build()
        .map_err(|e| ReleaseError::Render(format!("filesrc: {e}")))?;
    let decode = element("decodebin")?;
    let mux = gst::ElementFactory::make("mp4mux")
        .property("faststart", true)
        .build()
        .map_err(|e| ReleaseError::Render(format!("mp4mux: {e}")))?;
    let sink = gst::ElementFactory::make("filesink")
        .property("location", output.display().to_string())
        .build()
        .map_err(|e| ReleaseError::Render(format!("filesink: {e}")))?;
    pipeline
        .add_many([&src, &decode, &mux, &sink])
        .map_err(|e| ReleaseError::Render(format!("pipeline: {e}")))?;
    src.link(&decode)
        .and_then(|()| mux.link(&sink))
        .map_err(|e| ReleaseError::Render(format!("link: {e}")))?;

    let seen = Arc::new(Mutex::new(Rendered::default()));
    let linked_video = Arc::new(AtomicBool::new(false));
    let linked_audio = Arc::new(AtomicBool::new(false));
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let weak = pipeline.downgrade();
    let (mark, bitrate) = (mark.clone(), enc.video_bitrate_kbps);
    let (seen_pads, failure_pads) = (seen.clone(), failure.clone());
    decode.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None)));
        let kind = caps
            .as_ref()
            .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
            .unwrap_or_default();
        let result =
            if kind.starts_with("video/") && !linked_video.swap(true, Ordering::SeqCst) {
                link_video(&pipeline, pad, &mux, &mark, bitrate, seen_pads.clone())
            } else if kind.starts_with("audio/") && !linked_audio.swap(true, Ordering::SeqCst) {
                if let Ok(mut s) = seen_pads.lock() {
                    s.audio = true;
                }
                link_audio(&pipeline, pad, &mux)
            } else {
                // A second video or audio stream, subtitles, data: not carried into the rendition.
                element("fakesink").and_then(|f| {
                    chain(&pipeline, std::slice::from_ref(&f))?;
                    pad.link(&f.static_pad("sink").ok_or_else(|| {
                        ReleaseError::Render("fakesink without a sink pad".into())
                    })?)
                    .map(|_| ())
                    .map_err(|e| ReleaseError::Render(format!("link {kind}: {e:?}")))
                })
            };
        if let Err(e) = result
            && let Ok(mut f) = failure_pads.lock()
        {
            f.get_or_insert(e.to_string());
        }
    });

    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| ReleaseError::Render(format!("start: {e}")))?;
    let bus = pipeline
        .bus()
        .ok_or_else(|| ReleaseError::Render("pipeline without a bus".into()))?;
    let started = Instant::now();
    let outcome = loop {
        if let Some(f) = failure.lock().ok().and_then(|f| f.clone()) {
            break Err(ReleaseError::Render(f));
        }
        let left = enc.deadline.saturating_sub(started.elapsed());
        if left.is_zero() {
            break Err(ReleaseError::Render(format!(
                "rendering took longer than {:.0} s",
                enc.deadline.as_secs_f64()
            )));
        }
        let wait = gst::ClockTime::from_mseconds(left.as_millis().min(200) as u64);
        let Some(msg) = bus.timed_pop(wait) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(err) => {
                break Err(ReleaseError::Render(format!(
                    "{}: {}",
                    err.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default(),
                    err.error()
                )));
            }
            _ => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    outcome?;
    let seen = *seen
        .lock()
        .map_err(|_| ReleaseError::Render("poisoned".into()))?;
    if seen.frames == 0 {
        return Err(ReleaseError::Render("no video frame was rendered".into()));
    }
    Ok(seen)
}

fn mux_pad(mux: &gst::Element, template: &str) -> Result<gst::Pad, ReleaseError> {
    mux.request_pad_simple(template)
        .ok_or_else(|| ReleaseError::Render(format!("mp4mux refused a {template} pad")))
}

fn link_video(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    mux: &gst::Element,
    mark: &Watermark,
    bitrate_kbps: u32,
    seen: Arc<Mutex<Rendered>>,
) -> Result<(), ReleaseError> {
    let queue = element("queue")?;
    let convert = element("videoconvert")?;
    let overlay = gst::ElementFactory::make("gdkpixbufoverlay")
        .property("location", mark.image.display().to_string())
        .property("alpha", mark.alpha)
        .build()
        .map_err(|e| ReleaseError::Render(format!("gdkpixbufoverlay: {e}")))?;
    let convert2 = element("videoconvert")?;
    // OpenH264 (BSD, in gstreamer1.0-plugins-bad, which the image has for decoding already).
    let encoder = gst::ElementFactory::make("openh264enc")
        .property("bitrate", bitrate_kbps.max(100) * 1000)
        .property("gop-size", 60u32)
        .build()
        .map_err(|e| ReleaseError::Render(format!("openh264enc: {e}")))?;
    let parse = element("h264parse")?;
    let queue2 = element("queue")?;
    let elements = [
        queue,
        convert,
        overlay.clone(),
        convert2,
        encoder,
        parse,
        queue2,
    ];
    chain(pipeline, &elements)?;
    let last = &elements[elements.len() - 1];
    let to_mux = mux_pad(mux, "video_%u")?;
    last.static_pad("src")
        .ok_or_else(|| ReleaseError::Render("queue without a src pad".into()))?
        .link(&to_mux)
        .map_err(|e| ReleaseError::Render(format!("link video to mp4mux: {e:?}")))?;
    // Every frame moves the mark to where it is at that frame's time.
    let overlay_sink = overlay
        .static_pad("sink")
        .ok_or_else(|| ReleaseError::Render("gdkpixbufoverlay without a sink pad".into()))?;
    let mark = mark.clone();
    let weak_overlay = overlay.downgrade();
    overlay_sink.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let (Some(overlay), Some(buffer)) = (weak_overlay.upgrade(), info.buffer()) else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(video) = pad
            .current_caps()
            .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
        else {
            return gst::PadProbeReturn::Ok;
        };
        let t = buffer
            .pts()
            .map(|p| p.nseconds() as f64 / 1e9)
            .unwrap_or(0.0);
        let r = mark.at(t, video.width(), video.height());
        overlay.set_property("overlay-width", r.width as i32);
        overlay.set_property("overlay-height", r.height as i32);
        overlay.set_property("offset-x", r.x as i32);
        overlay.set_property("offset-y", r.y as i32);
        if let Ok(mut s) = seen.lock() {
            s.width = video.width();
            s.height = video.height();
            s.frames += 1;
        }
        gst::PadProbeReturn::Ok
    });
    let first = elements[0]
        .static_pad("sink")
        .ok_or_else(|| ReleaseError::Render("queue without a sink pad".into()))?;
    pad.link(&first)
        .map_err(|e| ReleaseError::Render(format!("link decoded video: {e:?}")))?;
    Ok(())
}

fn link_audio(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    mux: &gst::Element,
) -> Result<(), ReleaseError> {
    let elements = [
        element("queue")?,
        element("audioconvert")?,
        element("audioresample")?,
        element("avenc_aac")?,
        element("queue")?,
    ];
    chain(pipeline, &elements)?;
    let to_mux = mux_pad(mux, "audio_%u")?;
    elements[elements.len() - 1]
        .static_pad("src")
        .ok_or_else(|| ReleaseError::Render("queue without a src pad".into()))?
        .link(&to_mux)
        .map_err(|e| ReleaseError::Render(format!("link audio to mp4mux: {e:?}")))?;
    let first = elements[0]
        .static_pad("sink")
        .ok_or_else(|| ReleaseError::Render("queue without a sink pad".into()))?;
    pad.link(&first)
        .map_err(|e| ReleaseError::Render(format!("link decoded audio: {e:?}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark() -> Watermark {
        Watermark {
            image: PathBuf::new(),
            image_size: (228, 40),
            width_fraction: 0.3,
            alpha: 0.8,
            crossing_s: 4.0,
            description: String::new(),
        }
    }

    /// The mark stays inside the frame and is somewhere else a second later.
    #[test]
    fn the_mark_moves_and_stays_in_the_frame() {
        let m = mark();
        let mut last = None;
        for i in 0..200 {
            let t = i as f64 * 0.25;
            let r = m.at(t, 640, 360);
            assert!(
                r.x + r.width <= 640 && r.y + r.height <= 360,
                "{r:?} at {t}"
            );
            assert_eq!((r.width, r.height), (192, 34));
            if i % 4 == 0 {
                if let Some(prev) = last {
                    assert_ne!(prev, r, "at {t}");
                }
                last = Some(r);
            }
        }
        // Tiny frames: the mark shrinks with them.
        let r = m.at(1.0, 20, 10);
        assert!(r.x + r.width <= 20 && r.y + r.height <= 10, "{r:?}");
    }

    #[test]
    fn the_builtin_mark_is_a_png() {
        let png = builtin_png().unwrap_or_default();
        let img = image::load_from_memory(&png).map(|i| i.to_rgba8());
        assert!(img.is_ok_and(|i| i.width() > 4 * i.height()));
    }
}
