//! An exact index of 256-bit hashes under Hamming distance: multi-index hashing (Norouzi et
//! al.) over 16 chunks of 16 bits, with brute force for tiny banks and large radii.
//!
//! Pigeonhole: if two hashes differ in at most `r` bits, one of the 16 chunks differs in at most
//! `⌊r / 16⌋` bits. So a query probes, in each chunk's table, every 16-bit value within
//! `s = ⌊r / 16⌋` bits of its own chunk (1 value for s = 0, 17 for s = 1, 137 for s = 2),
//! checks the full distance of each candidate, and reports a candidate only from the first table
//! in which it qualifies, so results are exactly those of brute force, each once.
//!
//! Memory: 32 bytes per hash plus a 4-byte id per hash per table, 96 bytes per hash in all
//! (960 MB for 10M), and 4 MiB of bucket offsets. The tables are sorted buckets (counting sort),
//! written to disk exactly as held in memory, so loading is one read per array, no parsing.

use crate::HashmatchError;
use std::io::{Read, Write};
use std::path::Path;

use clipguard_pdq::{PdqHash, word_distance};

const CHUNKS: usize = 16;
const BUCKETS: usize = 1 << 16;
const MAGIC: &[u8; 8] = b"CGMIH256";
const VERSION: u32 = 1;

/// Below this many hashes a linear scan is as fast as probing and needs no tables.
pub const BRUTE_FORCE_BELOW: usize = 4096;

/// One result: the hash's position in the index and its distance from the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hit {
    pub index: u32,
    pub distance: u32,
}

/// How a query is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Multi-index probing when it pays, else brute force.
    Auto,
    BruteForce,
    MultiIndex,
}

/// A zeroed, page-aligned array in an anonymous mapping, advised to use transparent huge pages:
/// queries touch the hash and id arrays at random, and with 4 KiB pages nearly every candidate
/// also missed the TLB (huge pages make queries about 1.5–2x faster at 1M–10M hashes).
struct Region<T> {
    map: memmap2::MmapMut,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: bytemuck::Pod> Region<T> {
    fn zeroed(len: usize) -> std::io::Result<Self> {
        let bytes = (len * std::mem::size_of::<T>()).max(1);
        let map = memmap2::MmapMut::map_anon(bytes)?;
        #[cfg(target_os = "linux")]
        if bytes >= 2 << 20 {
            // A hint: without transparent huge pages the array works the same, slower.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        Ok(Self {
            map,
            len,
            _t: std::marker::PhantomData,
        })
    }

    fn get(&self) -> &[T] {
        bytemuck::cast_slice(self.bytes())
    }

    fn get_mut(&mut self) -> &mut [T] {
        bytemuck::cast_slice_mut(self.bytes_mut())
    }

    fn bytes(&self) -> &[u8] {
        &self.map[..self.len * std::mem::size_of::<T>()]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let n = self.len * std::mem::size_of::<T>();
        &mut self.map[..n]
    }
}

/// The index. Positions (`Hit::index`) are the order the hashes were given to [`HashIndex::build`].
pub struct HashIndex {
    n: usize,
    /// Four big-endian words per hash (the hex order), 4 × n.
    words: Region<u64>,
    /// Per table, BUCKETS + 1 offsets into that table's ids; empty when built without tables.
    offsets: Region<u32>,
    /// Per table, n positions sorted by that table's chunk.
    ids: Region<u32>,
}

impl std::fmt::Debug for HashIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashIndex")
            .field("hashes", &self.n)
            .field("tables", &self.has_tables())
            .finish()
    }
}

#[inline]
fn chunk(w: &[u64; 4], t: usize) -> usize {
    ((w[t / 4] >> (48 - 16 * (t % 4))) & 0xffff) as usize
}

impl HashIndex {
    /// Builds the index (with multi-index tables unless the bank is tiny).
    pub fn build(hashes: &[PdqHash]) -> Result<Self, HashmatchError> {
        Self::build_with(hashes, hashes.len() >= BRUTE_FORCE_BELOW)
    }

    /// Builds the index, with or without multi-index tables.
    pub fn build_with(hashes: &[PdqHash], tables: bool) -> Result<Self, HashmatchError> {
        let n = hashes.len();
        if n >= u32::MAX as usize {
            return Err(HashmatchError::IndexTooLarge(n));
        }
        let mut words = Region::zeroed(n * 4).map_err(HashmatchError::IndexMemory)?;
        for (w, h) in words.get_mut().chunks_exact_mut(4).zip(hashes) {
            w.copy_from_slice(&h.words());
        }
        let (offsets, ids) = if tables {
            (
                Region::zeroed(CHUNKS * (BUCKETS + 1)).map_err(HashmatchError::IndexMemory)?,
                Region::zeroed(CHUNKS * n).map_err(HashmatchError::IndexMemory)?,
            )
        } else {
            (
                Region::zeroed(0).map_err(HashmatchError::IndexMemory)?,
                Region::zeroed(0).map_err(HashmatchError::IndexMemory)?,
            )
        };
        let mut index = Self {
            n,
            words,
            offsets,
            ids,
        };
        if tables {
            index.build_tables();
        }
        Ok(index)
    }

    fn build_tables(&mut self) {
        let n = self.n;
        let words = self.words.get();
        let hash = |i: usize| -> [u64; 4] {
            [
                words[i * 4],
                words[i * 4 + 1],
                words[i * 4 + 2],
                words[i * 4 + 3],
            ]
        };
        for t in 0..CHUNKS {
            let offsets = &mut self.offsets.get_mut()[t * (BUCKETS + 1)..(t + 1) * (BUCKETS + 1)];
            for i in 0..n {
                offsets[chunk(&hash(i), t) + 1] += 1;
            }
            for b in 0..BUCKETS {
                offsets[b + 1] += offsets[b];
            }
            let mut cursor: Vec<u32> = offsets[..BUCKETS].to_vec();
            let ids = &mut self.ids.get_mut()[t * n..(t + 1) * n];
            for i in 0..n {
                let c = chunk(&hash(i), t);
                ids[cursor[c] as usize] = i as u32;
                cursor[c] += 1;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn has_tables(&self) -> bool {
        self.offsets.len > 0
    }

    /// The hash at a position.
    pub fn hash(&self, index: u32) -> PdqHash {
        let mut out = [0u8; 32];
        for (k, w) in self.words.get()[index as usize * 4..index as usize * 4 + 4]
            .iter()
            .enumerate()
        {
            out[k * 8..k * 8 + 8].copy_from_slice(&w.to_be_bytes());
        }
        PdqHash(out)
    }

    /// Bytes held in memory.
    pub fn memory_bytes(&self) -> usize {
        self.words.len * 8 + self.offsets.len * 4 + self.ids.len * 4
    }

    /// Every hash within `radius` of `query`, in position order.
    pub fn search(&self, query: &PdqHash, radius: u32) -> Vec<Hit> {
        let mut out = Vec::new();
        self.search_into(query, radius, Strategy::Auto, &mut out);
        out
    }

    /// Appends the hashes within `radius` of `query` to `out` (cleared first), sorted by position.
    pub fn search_into(
        &self,
        query: &PdqHash,
        radius: u32,
        strategy: Strategy,
        out: &mut Vec<Hit>,
    ) {
        out.clear();
        let q = query.words();
        let per_chunk = radius / CHUNKS as u32;
        let mih = self.has_tables()
            && match strategy {
                Strategy::BruteForce => false,
                Strategy::MultiIndex => true,
                // Beyond 2 bits per chunk the probes (697+ per table) outgrow a linear scan.
                Strategy::Auto => per_chunk <= 2,
            };
        if mih {
            self.probe(&q, radius, per_chunk, out);
            out.sort_unstable();
        } else {
            for (i, h) in self.words.get().chunks_exact(4).enumerate() {
                let d = word_distance(&q, h);
                if d <= radius {
                    out.push(Hit {
                        index: i as u32,
                        distance: d,
                    });
                }
            }
        }
    }

    fn probe(&self, q: &[u64; 4], radius: u32, s: u32, out: &mut Vec<Hit>) {
        let n = self.n;
        let words = self.words.get();
        for t in 0..CHUNKS {
            let offsets = &self.offsets.get()[t * (BUCKETS + 1)..(t + 1) * (BUCKETS + 1)];
            let ids = &self.ids.get()[t * n..(t + 1) * n];
            let qc = chunk(q, t);
            let mut visit = |v: usize| {
                let (lo, hi) = (offsets[v] as usize, offsets[v + 1] as usize);
                for &id in &ids[lo..hi] {
                    let i = id as usize;
                    let h = &words[i * 4..i * 4 + 4];
                    let d = word_distance(q, h);
                    if d > radius {
                        continue;
                    }
                    // Reported already by an earlier table in which it also qualifies?
                    let x = [q[0] ^ h[0], q[1] ^ h[1], q[2] ^ h[2], q[3] ^ h[3]];
                    if (0..t).any(|u| (chunk(&x, u) as u32).count_ones() <= s) {
                        continue;
                    }
                    out.push(Hit {
                        index: id,
                        distance: d,
                    });
                }
            };
            visit(qc);
            if s >= 1 {
                for a in 0..16 {
                    let va = qc ^ (1 << a);
                    visit(va);
                    if s >= 2 {
                        for b in a + 1..16 {
                            visit(va ^ (1 << b));
                        }
                    }
                }
            }
            if s >= 3 {
                // Not used by Auto; correct but slow: every value within s bits.
                for v in 0..BUCKETS {
                    let bits = ((v ^ qc) as u32).count_ones();
                    if (3..=s).contains(&bits) {
                        visit(v);
                    }
                }
            }
        }
    }

    /// Writes the index: a header, then each array exactly as held in memory (little-endian).
    /// Written to a temporary file and renamed, so readers never see half a file.
    pub fn write(&self, path: &Path) -> Result<(), HashmatchError> {
        let io = |source| HashmatchError::IndexIo {
            path: path.display().to_string(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            w.write_all(MAGIC).map_err(io)?;
            w.write_all(&VERSION.to_le_bytes()).map_err(io)?;
            w.write_all(&u32::from(self.has_tables()).to_le_bytes())
                .map_err(io)?;
            w.write_all(&(self.n as u64).to_le_bytes()).map_err(io)?;
            for region in [self.words.bytes(), self.offsets.bytes(), self.ids.bytes()] {
                write_le(&mut w, region).map_err(io)?;
            }
            w.flush().map_err(io)?;
        }
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Reads an index written by [`HashIndex::write`], checking its structure (a damaged file is
    /// an error, never a wrong answer or a crash later).
    pub fn read(path: &Path) -> Result<Self, HashmatchError> {
        let p = path.display().to_string();
        let io = |source| HashmatchError::IndexIo {
            path: p.clone(),
            source,
        };
        let bad = |reason: &str| HashmatchError::IndexFormat {
            path: p.clone(),
            reason: reason.to_string(),
        };
        let mut f = std::fs::File::open(path).map_err(io)?;
        let file_len = f.metadata().map_err(io)?.len();
        let mut header = [0u8; 24];
        f.read_exact(&mut header)
            .map_err(|_| bad("shorter than its header"))?;
        if &header[..8] != MAGIC {
            return Err(bad("wrong magic bytes"));
        }
        let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if version != VERSION {
            return Err(bad(&format!("version {version}, expected {VERSION}")));
        }
        let tables = u32::from_le_bytes([header[12], header[13], header[14], header[15]]) == 1;
        let mut n_bytes = [0u8; 8];
        n_bytes.copy_from_slice(&header[16..24]);
        let n = u64::from_le_bytes(n_bytes);
        let (n_offsets, n_ids) = if tables {
            (CHUNKS as u64 * (BUCKETS as u64 + 1), CHUNKS as u64 * n)
        } else {
            (0, 0)
        };
        let want = 24 + n * 32 + (n_offsets + n_ids) * 4;
        if n >= u64::from(u32::MAX) || file_len != want {
            return Err(bad(&format!(
                "{file_len} bytes, but {n} hashes need {want}"
            )));
        }
        let n = n as usize;
        let mut words = Region::<u64>::zeroed(n * 4).map_err(HashmatchError::IndexMemory)?;
        read_le(&mut f, words.bytes_mut()).map_err(io)?;
        let mut offsets =
            Region::<u32>::zeroed(n_offsets as usize).map_err(HashmatchError::IndexMemory)?;
        read_le(&mut f, offsets.bytes_mut()).map_err(io)?;
        let mut ids = Region::<u32>::zeroed(n_ids as usize).map_err(HashmatchError::IndexMemory)?;
        read_le(&mut f, ids.bytes_mut()).map_err(io)?;
        if tables {
            for t in 0..CHUNKS {
                let o = &offsets.get()[t * (BUCKETS + 1)..(t + 1) * (BUCKETS + 1)];
                if o[0] != 0 || o[BUCKETS] as usize != n || o.windows(2).any(|w| w[0] > w[1]) {
                    return Err(bad(&format!("table {t} has inconsistent bucket offsets")));
                }
            }
            if ids.get().iter().any(|&i| i as usize >= n) {
                return Err(bad("a table names a hash beyond the end"));
            }
        }
        Ok(Self {
            n,
            words,
            offsets,
            ids,
        })
    }
}

/// Arrays are written as held in memory, which is the file's little-endian layout on the
/// little-endian hosts this runs on.
fn write_le(w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    if cfg!(target_endian = "big") {
        return Err(std::io::Error::other("big-endian hosts are not supported"));
    }
    w.write_all(bytes)
}

fn read_le(r: &mut impl Read, bytes: &mut [u8]) -> std::io::Result<()> {
    if cfg!(target_endian = "big") {
        return Err(std::io::Error::other("big-endian hosts are not supported"));
    }
    r.read_exact(bytes)
}

#[cfg(test)]
mod tests {
    use super::Strategy as Plan;
    use super::{HashIndex, Hit, PdqHash};
    use proptest::prelude::*;

    fn brute(hashes: &[PdqHash], q: &PdqHash, r: u32) -> Vec<Hit> {
        hashes
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                let d = h.distance(q);
                (d <= r).then_some(Hit {
                    index: i as u32,
                    distance: d,
                })
            })
            .collect()
    }

    /// Random centres with near-duplicates around them (flips of up to 40 bits), so buckets are
    /// uneven and many hashes sit near each radius boundary.
    fn clustered(seed: u64, centres: usize, per: usize) -> Vec<PdqHash> {
        let mut rng = seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut out = Vec::new();
        for _ in 0..centres {
            let mut c = [0u8; 32];
            c.iter_mut().for_each(|b| *b = next() as u8);
            for _ in 0..per {
                let mut h = c;
                for _ in 0..next() % 41 {
                    let bit = (next() % 256) as usize;
                    h[bit / 8] ^= 1 << (bit % 8);
                }
                out.push(PdqHash(h));
            }
        }
        out
    }

    fn flip(h: &PdqHash, bits: &[usize]) -> PdqHash {
        let mut out = *h;
        for &b in bits {
            out.0[b / 8] ^= 1 << (b % 8);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Multi-index search equals brute force on random hashes, for every radius 0..=47,
        /// with queries near stored hashes as well as random ones.
        #[test]
        fn mih_equals_brute_force_on_random_hashes(
            hashes in proptest::collection::vec(any::<[u8; 32]>().prop_map(PdqHash), 1..300),
            pick in any::<proptest::sample::Index>(),
            bits in proptest::collection::vec(0usize..256, 0..48),
            random_query in any::<[u8; 32]>(),
        ) {
            let index = HashIndex::build_with(&hashes, true).unwrap();
            let near = flip(&hashes[pick.index(hashes.len())], &bits);
            let mut got = Vec::new();
            for q in [near, PdqHash(random_query)] {
                for r in 0..=47 {
                    index.search_into(&q, r, Plan::MultiIndex, &mut got);
                    prop_assert_eq!(&got, &brute(&hashes, &q, r), "radius {}", r);
                }
            }
        }

        /// The same on clustered near-duplicates, through the automatic strategy as well.
        #[test]
        fn mih_equals_brute_force_on_clustered_hashes(seed in any::<u64>(), bits in proptest::collection::vec(0usize..256, 0..40)) {
            let hashes = clustered(seed, 20, 40);
            let index = HashIndex::build_with(&hashes, true).unwrap();
            let q = flip(&hashes[(seed % 800) as usize], &bits);
            let mut got = Vec::new();
            for r in 0..=47 {
                index.search_into(&q, r, Plan::MultiIndex, &mut got);
                let want = brute(&hashes, &q, r);
                prop_assert_eq!(&got, &want, "radius {}", r);
                index.search_into(&q, r, Plan::Auto, &mut got);
                prop_assert_eq!(&got, &want, "radius {} auto", r);
            }
        }
    }

    #[test]
    fn large_radii_and_tiny_banks_fall_back_to_brute_force() {
        let hashes = clustered(7, 5, 10);
        let index = HashIndex::build(&hashes).unwrap();
        assert!(!index.has_tables(), "50 hashes need no tables");
        let q = hashes[3];
        assert_eq!(index.search(&q, 90), brute(&hashes, &q, 90));
        let with = HashIndex::build_with(&hashes, true).unwrap();
        assert_eq!(with.search(&q, 64), brute(&hashes, &q, 64));
        assert_eq!(with.hash(3), hashes[3]);
    }

    #[test]
    fn files_round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let hashes = clustered(11, 10, 30);
        let index = HashIndex::build_with(&hashes, true).unwrap();
        let path = dir.path().join("bank.idx");
        index.write(&path).unwrap();
        let back = HashIndex::read(&path).unwrap();
        for r in [0, 16, 31] {
            assert_eq!(back.search(&hashes[5], r), index.search(&hashes[5], r));
        }
        // Truncated.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let e = HashIndex::read(&path).unwrap_err().to_string();
        assert!(e.contains("bytes, but 300 hashes need"), "{e}");
        // A bucket offset scrambled.
        let mut scrambled = bytes.clone();
        let at = 24 + 300 * 32 + 4 * 100;
        scrambled[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &scrambled).unwrap();
        let e = HashIndex::read(&path).unwrap_err().to_string();
        assert!(e.contains("inconsistent bucket offsets"), "{e}");
        std::fs::write(&path, b"hello").unwrap();
        assert!(HashIndex::read(&path).is_err());
    }
}
