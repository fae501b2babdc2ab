#!/usr/bin/env bash
# The demo: installs what is missing, builds clipguard, makes sample clips (GStreamer test
# sources, espeak-ng speech, one deliberately truncated file) and moderates them with
# `clipguard run` on an embedded broker. Prints one verdict per clip. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --bin clipguard
scripts/make-samples.sh samples >/dev/null
echo
echo "clipguard run samples/   (embedded broker, every stage in-process)"
echo
exec "${CARGO_TARGET_DIR:-target}/debug/clipguard" run "$@" samples/
