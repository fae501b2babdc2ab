//! Shared by the transcribe crate's benchmark and examples.

use std::path::Path;
use std::process::Command;

/// A WAV file as 16 kHz mono s16 samples (GStreamer resamples it through `raw`, a scratch file).
pub fn wav_to_pcm16k(wav: &Path, raw: &Path) -> Vec<i16> {
    let pipeline = format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample ! \
         audio/x-raw,format=S16LE,rate=16000,channels=1 ! filesink location={}",
        wav.display(),
        raw.display()
    );
    let ok = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .status()
        .expect("gst-launch-1.0 (scripts/setup.sh installs it)")
        .success();
    assert!(ok, "gst-launch-1.0 failed on {}", wav.display());
    std::fs::read(raw)
        .expect("GStreamer's output")
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}
