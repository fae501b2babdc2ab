"""FAISS baseline for the hash-index benchmark (benches/index.rs runs it on the same data).

Usage: faiss_baseline.py DATA.bin QUERIES.bin RADIUS [--flat-queries N]
DATA and QUERIES are raw 32-byte hashes. Prints one JSON line: build time, resident memory
growth, single-thread queries/s and p99 latency for IndexBinaryMultiHash (16 x 16 bits) and
IndexBinaryFlat, and each query's result count (to check that the results are identical).
FAISS range_search on binary indexes returns distances strictly below its radius, so the
radius passed to FAISS is RADIUS + 1.
"""

import json
import sys
import time

import faiss
import numpy as np


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def timed_queries(index, queries, radius):
    latencies, counts = [], []
    for q in queries:
        t = time.perf_counter()
        lims, _, _ = index.range_search(q.reshape(1, 32), radius + 1)
        latencies.append(time.perf_counter() - t)
        counts.append(int(lims[1] - lims[0]))
    lat = np.array(latencies)
    return {
        "qps": len(queries) / lat.sum(),
        "p99_ms": float(np.percentile(lat, 99) * 1000),
        "counts": counts,
    }


def main():
    data_path, query_path, radius = sys.argv[1], sys.argv[2], int(sys.argv[3])
    flat_n = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--flat-queries" else None
    faiss.omp_set_num_threads(1)
    data = np.fromfile(data_path, dtype=np.uint8).reshape(-1, 32)
    queries = np.fromfile(query_path, dtype=np.uint8).reshape(-1, 32)
    out = {"n": int(data.shape[0]), "faiss": faiss.__version__}

    before = rss_bytes()
    t = time.perf_counter()
    mih = faiss.IndexBinaryMultiHash(256, 16, 16)
    mih.add(data)
    # Flip up to radius // 16 bits per chunk when probing: that is what makes multi-index
    # hashing exact at this radius (the default, 0, probes exact chunk matches only).
    mih.nflip = radius // 16
    out["mih_build_s"] = time.perf_counter() - t
    out["mih_memory_bytes"] = rss_bytes() - before
    out["mih"] = timed_queries(mih, queries, radius)
    del mih

    before = rss_bytes()
    t = time.perf_counter()
    flat = faiss.IndexBinaryFlat(256)
    flat.add(data)
    out["flat_build_s"] = time.perf_counter() - t
    out["flat_memory_bytes"] = rss_bytes() - before
    out["flat"] = timed_queries(flat, queries[: flat_n or len(queries)], radius)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
