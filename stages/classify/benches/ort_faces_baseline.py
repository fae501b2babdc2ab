"""onnxruntime baseline for the face benchmark (benches/faces.rs).

argv: detector.onnx age.onnx runs; reads the detector input (1 x 256 x 256 x 3 f32) and a
64 x 64 chip (uint8 RGB) as raw little-endian files named by argv[4], argv[5]. One intra-op
thread; prints JSON: median seconds for the detector at batch 1, the age estimator at batch 1
and batch 8 (the same chip eight times), and the outputs for the difference check.
"""

import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort

detector_path, age_path, runs, det_in, chip_in = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
detector = ort.InferenceSession(detector_path, opts)
age = ort.InferenceSession(age_path, opts)
x = np.fromfile(det_in, np.float32).reshape(1, 256, 256, 3)
chip = np.fromfile(chip_in, np.uint8).reshape(64, 64, 3).astype(np.float32)
t = ((chip - np.array([122.782, 117.001, 104.298], np.float32)) / 256.0).transpose(2, 0, 1)[None]
t8 = np.repeat(t, 8, axis=0)


def timed(f):
    f()
    times = []
    for _ in range(runs):
        s = time.perf_counter()
        f()
        times.append(time.perf_counter() - s)
    return statistics.median(times)


print(json.dumps({
    "detector_s": timed(lambda: detector.run(None, {"input:0": x})),
    "age1_s": timed(lambda: age.run(None, {"images": t})),
    "age8_s": timed(lambda: age.run(None, {"images": t8})),
    "detector_scores": detector.run(None, {"input:0": x})[0].ravel().tolist(),
    "age": age.run(None, {"images": t})[0][0].tolist(),
}))
