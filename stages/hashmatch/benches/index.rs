//! Hash index benchmark: clipguard's multi-index hashing against brute force and against FAISS
//! (`IndexBinaryMultiHash` 16 × 16 and `IndexBinaryFlat`, from the faiss-cpu wheel) on the same
//! data and queries, in the same run, one thread.
//!
//! Data: `CLIPGUARD_BENCH_SIZES` (default `1000000`; the full run is `1000000,10000000`) hashes,
//! 90 % uniformly random and 10 % clustered near-duplicates (clusters of 10 within 24 bits of a
//! random centre). Queries: 1,000, half a stored hash with 0–40 bits flipped, half random.
//! Radius 31 (`CLIPGUARD_BENCH_RADIUS`). Prints build, write and load time, memory, queries/s
//! and p99 latency, checks that every query's results are identical to brute force (and, per
//! query, to FAISS's result counts), and prints the ratios.
//!
//! FAISS runs through `benches/faiss_baseline.py` with the Python named by
//! `CLIPGUARD_BENCH_PYTHON` (default: the venv `scripts/bench-setup.sh` makes); without it the
//! FAISS columns are skipped with a message.
//!
//! Run: `cargo bench -p clipguard-hashmatch --bench index`

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clipguard_hashmatch::index::{HashIndex, Hit, Strategy};
use clipguard_pdq::PdqHash;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn hash(&mut self) -> PdqHash {
        let mut h = [0u8; 32];
        for c in h.chunks_exact_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        PdqHash(h)
    }
    fn flip(&mut self, h: &PdqHash, max_bits: u64) -> PdqHash {
        let mut out = *h;
        for _ in 0..self.next() % (max_bits + 1) {
            let b = (self.next() % 256) as usize;
            out.0[b / 8] ^= 1 << (b % 8);
        }
        out
    }
}

fn data(n: usize, rng: &mut Rng) -> Vec<PdqHash> {
    let clustered = n / 10;
    let mut out = Vec::with_capacity(n);
    while out.len() < n - clustered {
        out.push(rng.hash());
    }
    while out.len() < n {
        let centre = rng.hash();
        for _ in 0..10.min(n - out.len()) {
            out.push(rng.flip(&centre, 24));
        }
    }
    out
}

fn queries(stored: &[PdqHash], rng: &mut Rng) -> Vec<PdqHash> {
    (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                let h = stored[(rng.next() % stored.len() as u64) as usize];
                rng.flip(&h, 40)
            } else {
                rng.hash()
            }
        })
        .collect()
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

struct Timed {
    qps: f64,
    p99_ms: f64,
    results: Vec<Vec<Hit>>,
}

fn run(index: &HashIndex, queries: &[PdqHash], radius: u32, strategy: Strategy) -> Timed {
    let mut lat = Vec::with_capacity(queries.len());
    let mut results = Vec::with_capacity(queries.len());
    let mut out = Vec::new();
    for q in queries {
        let t = Instant::now();
        index.search_into(q, radius, strategy, &mut out);
        lat.push(t.elapsed());
        results.push(out.clone());
    }
    let total: Duration = lat.iter().sum();
    lat.sort_unstable();
    Timed {
        qps: queries.len() as f64 / total.as_secs_f64(),
        p99_ms: percentile(&lat, 0.99).as_secs_f64() * 1000.0,
        results,
    }
}

fn python() -> Option<PathBuf> {
    let p = std::env::var_os("CLIPGUARD_BENCH_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/clipguard/bench-venv/bin/python"))
        })?;
    let ok = Command::new(&p)
        .args(["-c", "import faiss"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(p)
}

fn write_raw(path: &Path, hashes: &[PdqHash]) {
    let bytes: Vec<u8> = hashes.iter().flat_map(|h| h.0).collect();
    std::fs::write(path, bytes).unwrap();
}

fn main() {
    let sizes: Vec<usize> = std::env::var("CLIPGUARD_BENCH_SIZES")
        .unwrap_or_else(|_| "1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("CLIPGUARD_BENCH_SIZES: numbers"))
        .collect();
    let radius: u32 = std::env::var("CLIPGUARD_BENCH_RADIUS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(31);
    let py = python();
    if py.is_none() {
        println!("FAISS baseline skipped: no Python with faiss (run scripts/bench-setup.sh)");
    }
    let dir = tempfile::tempdir().unwrap();
    for n in sizes {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ n as u64);
        let hashes = data(n, &mut rng);
        let qs = queries(&hashes, &mut rng);
        println!(
            "\n== {n} hashes (90 % random, 10 % clustered), 1000 queries, radius {radius}, 1 thread"
        );

        let rss0 = rss_bytes();
        let t = Instant::now();
        let index = HashIndex::build_with(&hashes, true).unwrap();
        let build = t.elapsed();
        let rss_index = rss_bytes().saturating_sub(rss0);
        let path = dir.path().join(format!("bench-{n}.idx"));
        let t = Instant::now();
        index.write(&path).unwrap();
        let write = t.elapsed();
        drop(index);
        let t = Instant::now();
        let index = HashIndex::read(&path).unwrap();
        let load = t.elapsed();
        println!(
            "clipguard MIH: build {:.2} s, write {:.2} s, load {:.2} s, memory {:.0} MB (RSS growth at build {:.0} MB)",
            build.as_secs_f64(),
            write.as_secs_f64(),
            load.as_secs_f64(),
            index.memory_bytes() as f64 / 1e6,
            rss_index as f64 / 1e6
        );

        let mih = run(&index, &qs, radius, Strategy::MultiIndex);
        // Brute force over all queries is slow at 10M; 200 queries give a stable rate.
        let brute_n = if n > 2_000_000 { 200 } else { 1000 };
        let brute = run(&index, &qs[..brute_n], radius, Strategy::BruteForce);
        assert_eq!(
            &mih.results[..brute_n],
            &brute.results[..],
            "multi-index results differ from brute force"
        );
        let hits: usize = mih.results.iter().map(Vec::len).sum();
        println!(
            "clipguard MIH:         {:9.0} queries/s, p99 {:7.3} ms  ({hits} hits in all; identical to brute force on {brute_n} queries)",
            mih.qps, mih.p99_ms
        );
        println!(
            "clipguard brute force: {:9.0} queries/s, p99 {:7.3} ms  (MIH is {:.1}x)",
            brute.qps,
            brute.p99_ms,
            mih.qps / brute.qps
        );

        let Some(py) = &py else { continue };
        let data_path = dir.path().join("data.bin");
        let query_path = dir.path().join("queries.bin");
        write_raw(&data_path, &hashes);
        write_raw(&query_path, &qs);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/faiss_baseline.py");
        let out = Command::new(py)
            .arg(&script)
            .arg(&data_path)
            .arg(&query_path)
            .arg(radius.to_string())
            .args(["--flat-queries", &brute_n.to_string()])
            .env("OMP_NUM_THREADS", "1")
            .output()
            .unwrap();
        if !out.status.success() {
            println!(
                "FAISS baseline failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let f_mih_qps = v["mih"]["qps"].as_f64().unwrap();
        let f_flat_qps = v["flat"]["qps"].as_f64().unwrap();
        let counts = |key: &str| -> Vec<usize> {
            v[key]["counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap() as usize)
                .collect()
        };
        let ours: Vec<usize> = mih.results.iter().map(Vec::len).collect();
        let same_mih = counts("mih") == ours;
        let same_flat = counts("flat")[..] == ours[..brute_n];
        println!(
            "FAISS {} IndexBinaryMultiHash: build {:.2} s, memory {:.0} MB, {:9.0} queries/s, p99 {:7.3} ms, same results: {same_mih}",
            v["faiss"].as_str().unwrap_or("?"),
            v["mih_build_s"].as_f64().unwrap(),
            v["mih_memory_bytes"].as_f64().unwrap() / 1e6,
            f_mih_qps,
            v["mih"]["p99_ms"].as_f64().unwrap()
        );
        println!(
            "FAISS IndexBinaryFlat:          build {:.2} s, memory {:.0} MB, {:9.0} queries/s, p99 {:7.3} ms, same results: {same_flat}",
            v["flat_build_s"].as_f64().unwrap(),
            v["flat_memory_bytes"].as_f64().unwrap() / 1e6,
            f_flat_qps,
            v["flat"]["p99_ms"].as_f64().unwrap()
        );
        println!(
            "ratios: clipguard MIH / FAISS MIH = {:.1}x queries/s, {:.2}x memory; / FAISS flat = {:.1}x",
            mih.qps / f_mih_qps,
            index.memory_bytes() as f64 / v["mih_memory_bytes"].as_f64().unwrap().max(1.0),
            mih.qps / f_flat_qps
        );
    }
}
