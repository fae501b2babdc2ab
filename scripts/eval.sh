#!/usr/bin/env bash
# The full evaluation: every labelled set (held-out text, the same sentences spoken, benign
# video) through clipguard, with the reference table as targets. Writes report.md, report.html,
# summary.json and plots to DIR (default eval-report/, not in git) and prints the tables.
# The test suite runs the text and video sets; the spoken set (112 clips through every stage)
# takes a few minutes on 2 cores in this debug build. Exits 4 while a target is missed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-eval-report}
scripts/setup.sh
cargo run --locked --quiet -- models fetch whisper-tiny.en open-nsfw minilm-l6-int8 minilm-l6-tokenizer blazeface-back age-v1
cargo run --locked --quiet -- eval \
  eval/text/heldout.jsonl eval/speech/heldout.jsonl eval/video/benign.jsonl \
  --targets eval/targets.toml --report "$out"
