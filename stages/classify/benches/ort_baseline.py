#!/usr/bin/env python3
"""onnxruntime baseline for the classify benchmark: runs MODEL on the raw f32 batch in INPUT
(shape given as comma-separated dims), one intra-op thread, and prints the median milliseconds
per call and the outputs as JSON."""

import json
import sys
import time

import numpy as np
import onnxruntime as ort

model, name, path, shape, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
dims = [int(d) for d in shape.split(",")]
x = np.fromfile(path, dtype=np.float32).reshape(dims)
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
out = session.run(None, {name: x})[0]  # warm-up
times = []
for _ in range(runs):
    t = time.perf_counter()
    out = session.run(None, {name: x})[0]
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print(json.dumps({"ms": times[len(times) // 2], "outputs": out.reshape(-1).tolist(), "version": ort.__version__}))
