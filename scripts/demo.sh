#!/usr/bin/env bash
# The demo: installs what is missing, builds clipguard, makes sample clips (GStreamer test
# sources, espeak-ng speech, one deliberately truncated file), fetches the models, and
# moderates the clips with `clipguard run` on an embedded broker. Prints one verdict per clip.
# Safe to run twice. Arguments go to `clipguard run` (e.g. --json). The steps live in
# `cargo xtask demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
# System packages first: building the task runner needs a C linker.
scripts/setup.sh
exec cargo xtask demo "$@"
