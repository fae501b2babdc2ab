#!/usr/bin/env bash
# Every evaluation set (held-out text, red-team prompts, the spoken twins, everyday speech, benign video) against the reference
# table, with the report in DIR (default eval-report/). Safe to run twice. The steps live in
# `cargo xtask eval`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo xtask eval "$@"
