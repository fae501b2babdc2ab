#!/usr/bin/env bash
# Generates small sample clips with GStreamer test sources and espeak-ng speech into DIR
# (default: samples/). Safe to run twice: existing files are kept.
#   speech.mp4   H.264 + AAC in MP4, a spoken English sentence over colour bars
#   ball.webm    VP8 + Vorbis in WebM, a moving ball and a tone
#   snow.mkv     H.264 in Matroska, no audio, noise then a pattern change (a scene cut)
#   corrupt.mp4  speech.mp4 cut in half (deliberately truncated)
set -euo pipefail
dir=${1:-samples}
mkdir -p "$dir"
cd "$dir"

need() { command -v "$1" >/dev/null || { echo "make-samples: $1 is missing (run scripts/setup.sh)" >&2; exit 1; }; }
need gst-launch-1.0
need espeak-ng

gst() { gst-launch-1.0 -q "$@" >/dev/null; }

if [ ! -s speech.mp4 ]; then
  espeak-ng -w speech.wav -s 150 "The quick brown fox jumps over the lazy dog. This clip is a safe sample for the moderation demo."
  gst mp4mux name=mux faststart=true ! filesink location=speech.mp4.tmp \
    videotestsrc pattern=smpte num-buffers=150 ! video/x-raw,width=320,height=240,framerate=25/1,format=I420 \
      ! x264enc speed-preset=ultrafast tune=zerolatency key-int-max=25 ! h264parse ! mux. \
    filesrc location=speech.wav ! wavparse ! audioconvert ! audioresample ! avenc_aac ! aacparse ! mux.
  mv speech.mp4.tmp speech.mp4
  rm -f speech.wav
fi

if [ ! -s ball.webm ]; then
  gst webmmux name=mux ! filesink location=ball.webm.tmp \
    videotestsrc pattern=ball num-buffers=75 ! video/x-raw,width=320,height=240,framerate=25/1,format=I420 \
      ! vp8enc deadline=1 ! mux. \
    audiotestsrc num-buffers=130 ! audio/x-raw,rate=44100 ! audioconvert ! vorbisenc ! mux.
  mv ball.webm.tmp ball.webm
fi

if [ ! -s snow.mkv ]; then
  gst concat name=c ! videoconvert ! x264enc speed-preset=ultrafast key-int-max=25 ! h264parse \
      ! matroskamux ! filesink location=snow.mkv.tmp \
    videotestsrc pattern=snow num-buffers=50 ! video/x-raw,width=320,height=240,framerate=25/1,format=I420 ! c. \
    videotestsrc pattern=white num-buffers=50 ! video/x-raw,width=320,height=240,framerate=25/1,format=I420 ! c.
  mv snow.mkv.tmp snow.mkv
fi

if [ ! -s corrupt.mp4 ]; then
  size=$(stat -c %s speech.mp4)
  head -c $((size / 2)) speech.mp4 > corrupt.mp4
fi
ls -l "$PWD"
