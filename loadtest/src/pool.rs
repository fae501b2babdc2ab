//! The clip pool: one generated file per clip kind (H.264 in MP4; AAC speech from espeak-ng or
//! a tone, or no audio), made with GStreamer's test sources, kept between runs (a file that
//! exists is reused; its name carries every parameter, so a changed kind makes a new file).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::profile::{Audio, ClipKind};

/// Sentences spoken over `speech` clips, repeated to fill the clip.
const SENTENCES: &[&str] = &[
    "We planted tomatoes along the fence and watered the basil before the sun came up.",
    "The train to the coast leaves at nine, so pack a sandwich and a warm jacket.",
    "Stir the sauce slowly, add a pinch of salt, and let it simmer for ten minutes.",
    "Our team scored twice in the second half and the crowd sang all the way home.",
];

/// The file for `kind` in `dir`, generated if it is not there yet.
pub fn ensure(kind: &ClipKind, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let audio = match kind.audio {
        Audio::Speech => "speech",
        Audio::Tone => "tone",
        Audio::None => "silent",
    };
    let stem = format!(
        "{}-{}s-{}x{}-{audio}{}",
        kind.name,
        kind.duration_s,
        kind.width,
        kind.height,
        if kind.broken { "-truncated" } else { "" }
    );
    let path = dir.join(format!("{stem}.mp4"));
    if path.is_file() {
        return Ok(path);
    }
    let tmp = dir.join(format!("{stem}.tmp.mp4"));
    let wav = dir.join(format!("{stem}.wav"));
    // Speech first: the video must last as long as the speech, or the file is one whose
    // container declares more than its video holds (which the media stage calls truncated).
    let mut seconds = kind.duration_s;
    if kind.audio == Audio::Speech {
        // About 2.5 words a second at espeak-ng's 150 words a minute.
        let mut text = String::new();
        let mut i = 0;
        while (text.split_whitespace().count() as f64) < kind.duration_s * 2.0 {
            text.push_str(SENTENCES[i % SENTENCES.len()]);
            text.push(' ');
            i += 1;
        }
        run(Command::new("espeak-ng")
            .arg("-w")
            .arg(&wav)
            .args(["-s", "150"])
            .arg(text.trim()))?;
        // espeak-ng writes 22,050 Hz 16-bit mono after a 44-byte header.
        let bytes = std::fs::metadata(&wav)?.len().saturating_sub(44);
        // Plus a little for the AAC encoder's priming and padding.
        seconds = seconds.max(bytes as f64 / 44_100.0 + 0.2);
    }
    let frames = (seconds * 25.0).ceil().max(1.0) as u64;
    let video = format!(
        "videotestsrc pattern={} num-buffers={frames} ! video/x-raw,width={},height={},framerate=25/1,format=I420 \
         ! x264enc speed-preset=ultrafast key-int-max=50 ! h264parse ! mux.",
        if kind.height >= 720 { "smpte" } else { "ball" },
        kind.width,
        kind.height
    );
    let audio = match kind.audio {
        Audio::None => String::new(),
        Audio::Tone => format!(
            "audiotestsrc wave=sine freq=440 num-buffers={} ! audio/x-raw,rate=44100 ! audioconvert \
             ! avenc_aac ! aacparse ! mux.",
            (seconds * 44100.0 / 1024.0).floor() as u64
        ),
        Audio::Speech => format!(
            "filesrc location={} ! wavparse ! audioconvert ! audioresample ! avenc_aac ! aacparse ! mux.",
            wav.display()
        ),
    };
    let pipeline = format!(
        "mp4mux name=mux faststart=true ! filesink location={} {video} {audio}",
        tmp.display()
    );
    let result = run(Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace()));
    let _ = std::fs::remove_file(&wav);
    result?;
    if kind.broken {
        let bytes = std::fs::read(&tmp)?;
        std::fs::write(&tmp, &bytes[..bytes.len() / 2])?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| {
        format!(
            "cannot run {:?} (scripts/setup.sh installs it)",
            cmd.get_program()
        )
    })?;
    anyhow::ensure!(
        out.status.success(),
        "{:?} failed: {}",
        cmd.get_program(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
