#!/usr/bin/env bash
# Baselines for the benchmarks: a Python venv with faiss-cpu (hash index), pdqhash (reference
# PDQ), onnxruntime (classifiers; also makes the classify parity fixtures) and pillow, from PyPI, under ~/.cache/clipguard/bench-venv. Safe to run twice.
set -euo pipefail
venv="${CLIPGUARD_CACHE:-$HOME/.cache/clipguard}/bench-venv"
if ! "$venv/bin/python" -c "import faiss, pdqhash, numpy, onnxruntime, PIL, tokenizers" 2>/dev/null; then
  command -v python3 >/dev/null || { sudo apt-get install -y python3 python3-venv; }
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "faiss-cpu==1.15.1" "pdqhash==0.2.8" numpy "onnxruntime==1.31.1" pillow "tokenizers==0.22.1"
fi
echo "benchmark baselines ready: CLIPGUARD_BENCH_PYTHON=$venv/bin/python"
