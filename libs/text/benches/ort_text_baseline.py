"""onnxruntime baseline for the text encoder benchmark (benches/text.rs).

argv: model.onnx tokenizer.json runs; stdin: JSON list of sentences. Tokenises with Hugging Face
`tokenizers`, pads each batch to its longest, one intra-op thread; prints JSON: median seconds
per call at batch 1 (each sentence) and batch 8 (the sentences in batches of 8), and the
embeddings of batch 1 for the difference check.
"""

import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

model, tokenizer, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
sentences = json.load(sys.stdin)
tok = Tokenizer.from_file(tokenizer)
tok.no_padding()
tok.enable_truncation(128)
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
session = ort.InferenceSession(model, opts)


def embed(batch):
    ids = [tok.encode(s).ids for s in batch]
    n = max(len(i) for i in ids)
    input_ids = np.zeros((len(ids), n), np.int64)
    mask = np.zeros((len(ids), n), np.int64)
    for r, i in enumerate(ids):
        input_ids[r, : len(i)] = i
        mask[r, : len(i)] = 1
    hidden = session.run(None, {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)})[0]
    v = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def timed(batches):
    times = []
    for _ in range(runs):
        for b in batches:
            t = time.perf_counter()
            embed(b)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


ones = [[s] for s in sentences]
eights = [sentences[i : i + 8] for i in range(0, len(sentences) - 7, 8)]
print(json.dumps({
    "batch1_s": timed(ones),
    "batch8_s": timed(eights),
    "embeddings": [embed(b)[0].tolist() for b in ones],
}))
