"""Reference PDQ (C++, through the `pdqhash` wheel) on the frame benches/pdq.rs writes.

Usage: pdq_baseline.py FRAME.rgb WIDTH HEIGHT RUNS
Prints one JSON line: median ms per hash (single thread) and the hash as 64 hex digits, as the
reference prints it.
"""

import json
import sys
import time

import numpy as np
import pdqhash


def main():
    path, w, h, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    img = np.fromfile(path, dtype=np.uint8).reshape(h, w, 3)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        bits, quality = pdqhash.compute(img)
        times.append(time.perf_counter() - t)
    # The wheel lists the bits from the highest (255) down to 0.
    value = 0
    for k, b in enumerate(bits):
        if b:
            value |= 1 << (255 - k)
    print(json.dumps({
        "ms": float(np.median(times) * 1000),
        "hash": f"{value:064x}",
        "quality": int(quality),
    }))


if __name__ == "__main__":
    main()
