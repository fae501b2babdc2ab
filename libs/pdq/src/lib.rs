//! clipguard's perceptual hashes: PDQ for pictures and vPDQ for videos, conformant with Meta's
//! reference implementation (ThreatExchange). The media stage hashes every sampled frame at full
//! resolution ([`hash_luma`]), so only 32 bytes plus a quality score per frame cross Kafka; the
//! hashmatch stage matches them against banks ([`vpdq`] for whole videos).
//!
//! ```
//! // A 64×64 gradient: bright on the right.
//! let luma: Vec<f32> = (0..64 * 64).map(|i| (i % 64) as f32 * 4.0).collect();
//! let h = clipguard_pdq::hash_luma(&luma, 64, 64);
//! assert_eq!(h.hash.distance(&h.hash), 0);
//! println!("{} quality {}", h.hash, h.quality);
//! ```
//!
//! # PDQ
//!
//! A 256-bit perceptual hash of a picture, as specified by Meta's reference implementation.
//!
//! Steps (all in `f32`, like the reference): RGB to luma (0.299 R + 0.587 G + 0.114 B); two
//! passes of a Jarosz box filter along rows then columns, with window `ceil(dim / 128)`; decimation
//! to 64×64 by sampling window centres; a 16×16 DCT (`D·A·Dᵀ` with the 16 lowest non-DC cosine
//! rows of a 64-point DCT); each coefficient becomes a bit, set when it is above the median (the
//! 128th smallest). Quality is the clipped sum of absolute neighbour differences of the 64×64
//! image. The 8 dihedral transforms (rotations, flips) of a picture have hashes that follow from
//! sign changes and a transposition of the same 16×16 DCT, so all 8 cost one hash.
//!
//! Bit `k` of a hash lives in 16-bit word `k / 16` at bit `k % 16`; the hex form prints words 15
//! down to 0, four hex digits each, as the reference does.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

pub mod vpdq;

/// Side of the downsampled picture.
const SIDE: usize = 64;
/// Side of the DCT block kept.
const DCT: usize = 16;

/// A 256-bit PDQ hash, stored in its hex byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PdqHash(pub [u8; 32]);

impl PdqHash {
    /// Sets bit `k` (0..256).
    fn set_bit(&mut self, k: usize) {
        let (word, bit) = (k >> 4, k & 15);
        let byte = (15 - word) * 2 + usize::from(bit < 8);
        self.0[byte] |= 1 << (bit & 7);
    }

    /// Reads bit `k` (0..256).
    pub fn bit(&self, k: usize) -> bool {
        let (word, bit) = (k >> 4, k & 15);
        let byte = (15 - word) * 2 + usize::from(bit < 8);
        self.0[byte] & (1 << (bit & 7)) != 0
    }

    /// Hamming distance: the number of differing bits (0..=256).
    pub fn distance(&self, other: &PdqHash) -> u32 {
        self.0
            .iter()
            .zip(other.0.iter())
            .map(|(a, b)| (a ^ b).count_ones())
            .sum()
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> u32 {
        self.0.iter().map(|b| b.count_ones()).sum()
    }

    /// The hash as four big-endian 64-bit words, for popcount arithmetic ([`word_distance`]).
    pub fn words(&self) -> [u64; 4] {
        let mut w = [0u64; 4];
        for (i, chunk) in self.0.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w[i] = u64::from_be_bytes(b);
        }
        w
    }
}

/// Hamming distance of two hashes in word form ([`PdqHash::words`]); `b` holds at least 4 words.
#[inline]
pub fn word_distance(a: &[u64; 4], b: &[u64]) -> u32 {
    (a[0] ^ b[0]).count_ones()
        + (a[1] ^ b[1]).count_ones()
        + (a[2] ^ b[2]).count_ones()
        + (a[3] ^ b[3]).count_ones()
}

impl fmt::Display for PdqHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PdqHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PdqHash({})", self.to_hex())
    }
}

/// Why a hash or picture could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PdqError {
    #[error("a PDQ hash is 64 hex digits, got {0} characters")]
    HexLength(usize),
    #[error("not hex: {0}")]
    NotHex(String),
    #[error("the picture is empty ({0}x{1})")]
    EmptyPicture(usize, usize),
    #[error("cannot read the picture: {0}")]
    Decode(String),
}

impl FromStr for PdqHash {
    type Err = PdqError;

    fn from_str(s: &str) -> Result<Self, PdqError> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(PdqError::HexLength(s.len()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| PdqError::NotHex(e.to_string()))?;
        Ok(PdqHash(out))
    }
}

/// A hash with its quality (0..=100; below ~50 the hash is unreliable: flat or tiny pictures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashed {
    pub hash: PdqHash,
    pub quality: u32,
}

/// The 8 dihedral transforms of a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dihedral {
    Original,
    Rotate90,
    Rotate180,
    Rotate270,
    FlipX,
    FlipY,
    FlipPlus1,
    FlipMinus1,
}

impl Dihedral {
    pub const ALL: [Dihedral; 8] = [
        Dihedral::Original,
        Dihedral::Rotate90,
        Dihedral::Rotate180,
        Dihedral::Rotate270,
        Dihedral::FlipX,
        Dihedral::FlipY,
        Dihedral::FlipPlus1,
        Dihedral::FlipMinus1,
    ];
}

/// Window size of the Jarosz filter for reducing `old` samples to `new`.
fn window(old: usize, new: usize) -> usize {
    old.div_ceil(2 * new)
}

/// One box-filter pass over a strided vector (the reference's `box1DFloat`): a running mean
/// whose window grows at the start and shrinks at the end.
fn box_1d(input: &[f32], output: &mut [f32], start: usize, len: usize, stride: usize, full: usize) {
    let half = (full + 2) / 2;
    let phase1 = half - 1;
    let phase2 = full - half + 1;
    let phase3 = len - full;
    let phase4 = half - 1;
    let (mut li, mut ri, mut oi) = (start, start, start);
    let mut sum = 0f32;
    let mut size = 0f32;
    for _ in 0..phase1 {
        sum += input[ri];
        size += 1.0;
        ri += stride;
    }
    for _ in 0..phase2 {
        sum += input[ri];
        size += 1.0;
        output[oi] = sum / size;
        ri += stride;
        oi += stride;
    }
    for _ in 0..phase3 {
        sum += input[ri];
        sum -= input[li];
        output[oi] = sum / size;
        li += stride;
        ri += stride;
        oi += stride;
    }
    for _ in 0..phase4 {
        sum -= input[li];
        size -= 1.0;
        output[oi] = sum / size;
        li += stride;
        oi += stride;
    }
}

/// The column pass of [`box_1d`] for the columns `cols` of a row-major plane, done row by row
/// (all columns advance together, so memory is read in order instead of one stride-`width` walk
/// per column). Per column it does exactly the additions, subtractions and divisions of
/// `box_1d`, in the same order, so results are bit-identical.
fn box_cols(
    input: &[f32],
    output: &mut [f32],
    width: usize,
    height: usize,
    full: usize,
    cols: &[usize],
) {
    let half = (full + 2) / 2;
    let phase1 = half - 1;
    let phase2 = full - half + 1;
    let phase3 = height - full;
    let phase4 = half - 1;
    let mut sum = vec![0f32; cols.len()];
    let mut size = 0f32;
    let (mut li, mut ri, mut oi) = (0usize, 0usize, 0usize);
    let contiguous = cols.len() == width;
    macro_rules! each {
        ($k:ident, $c:ident, $body:block) => {
            if contiguous {
                for $k in 0..width {
                    let $c = $k;
                    $body
                }
            } else {
                for ($k, &$c) in cols.iter().enumerate() {
                    $body
                }
            }
        };
    }
    for _ in 0..phase1 {
        each!(k, c, {
            sum[k] += input[ri * width + c];
        });
        size += 1.0;
        ri += 1;
    }
    for _ in 0..phase2 {
        size += 1.0;
        each!(k, c, {
            sum[k] += input[ri * width + c];
            output[oi * width + c] = sum[k] / size;
        });
        ri += 1;
        oi += 1;
    }
    for _ in 0..phase3 {
        each!(k, c, {
            sum[k] += input[ri * width + c];
            sum[k] -= input[li * width + c];
            output[oi * width + c] = sum[k] / size;
        });
        li += 1;
        ri += 1;
        oi += 1;
    }
    for _ in 0..phase4 {
        size -= 1.0;
        each!(k, c, {
            sum[k] -= input[li * width + c];
            output[oi * width + c] = sum[k] / size;
        });
        li += 1;
        oi += 1;
    }
}

/// The rows and columns the 64×64 decimation samples.
fn sample_points(dim: usize) -> Vec<usize> {
    (0..SIDE)
        .map(|i| ((((i as f64 + 0.5) * dim as f64) / SIDE as f64) as usize).min(dim - 1))
        .collect()
}

/// Reduces a luma plane (row-major, `width` × `height`) to 64×64: two rounds of the box filter
/// along rows then columns, then the window centres. The last column pass runs only on the 64
/// columns that are sampled (the others are never read).
fn downsample(luma: &[f32], width: usize, height: usize) -> Vec<f32> {
    let mut a = luma[..width * height].to_vec();
    let mut b = vec![0f32; width * height];
    let along_rows = window(width, SIDE);
    let along_cols = window(height, SIDE);
    let all: Vec<usize> = (0..width).collect();
    let sampled_cols = sample_points(width);
    let mut needed = sampled_cols.clone();
    needed.dedup();
    for round in 0..2 {
        for r in 0..height {
            box_1d(&a, &mut b, r * width, width, 1, along_rows);
        }
        let cols = if round == 0 { &all } else { &needed };
        box_cols(&b, &mut a, width, height, along_cols, cols);
    }
    let mut out = vec![0f32; SIDE * SIDE];
    for (i, &ii) in sample_points(height).iter().enumerate() {
        for (j, &jj) in sampled_cols.iter().enumerate() {
            out[i * SIDE + j] = a[ii * width + jj];
        }
    }
    out
}

/// The 16×64 DCT matrix (rows 1..=16 of a 64-point DCT-II, DC dropped).
fn dct_matrix() -> &'static [[f32; SIDE]; DCT] {
    static M: OnceLock<[[f32; SIDE]; DCT]> = OnceLock::new();
    M.get_or_init(|| {
        let mut m = [[0f32; SIDE]; DCT];
        let scale = (2.0f64 / SIDE as f64).sqrt();
        for (i, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let angle =
                    std::f64::consts::PI / 2.0 / SIDE as f64 * (i + 1) as f64 * (2 * j + 1) as f64;
                *v = (scale * angle.cos()) as f32;
            }
        }
        m
    })
}

#[allow(clippy::needless_range_loop)]
/// `D·A·Dᵀ` for the 64×64 picture `a`.
fn dct16(a: &[f32]) -> [[f32; DCT]; DCT] {
    let d = dct_matrix();
    let mut t = [[0f32; SIDE]; DCT];
    for i in 0..DCT {
        for j in 0..SIDE {
            let mut s = 0f32;
            for k in 0..SIDE {
                s += d[i][k] * a[k * SIDE + j];
            }
            t[i][j] = s;
        }
    }
    let mut b = [[0f32; DCT]; DCT];
    for i in 0..DCT {
        for j in 0..DCT {
            let mut s = 0f32;
            for k in 0..SIDE {
                s += t[i][k] * d[j][k];
            }
            b[i][j] = s;
        }
    }
    b
}

/// Quality: clipped sum of absolute neighbour differences, as the reference computes it.
fn quality(a: &[f32]) -> u32 {
    let mut sum: i64 = 0;
    for i in 0..SIDE - 1 {
        for j in 0..SIDE {
            let d = ((a[i * SIDE + j] - a[(i + 1) * SIDE + j]) * 100.0 / 255.0) as i64;
            sum += d.abs();
        }
    }
    for i in 0..SIDE {
        for j in 0..SIDE - 1 {
            let d = ((a[i * SIDE + j] - a[i * SIDE + j + 1]) * 100.0 / 255.0) as i64;
            sum += d.abs();
        }
    }
    (sum / 90).min(100) as u32
}

// Index loops mirror the reference's matrix code, which makes them easy to check against it.
#[allow(clippy::needless_range_loop)]
/// Bits from a 16×16 DCT block: set where the coefficient is above the median.
fn to_hash(b: &[[f32; DCT]; DCT]) -> PdqHash {
    let mut values: Vec<f32> = b.iter().flatten().copied().collect();
    values.sort_by(f32::total_cmp);
    // The reference's median (Torben's method) is the lower median: the 128th smallest.
    let median = values[(DCT * DCT).div_ceil(2) - 1];
    let mut h = PdqHash([0; 32]);
    for i in 0..DCT {
        for j in 0..DCT {
            if b[i][j] > median {
                h.set_bit(i * DCT + j);
            }
        }
    }
    h
}

#[allow(clippy::needless_range_loop)]
/// The DCT block of a dihedral transform of the picture, from the original's block.
fn transform(a: &[[f32; DCT]; DCT], t: Dihedral) -> [[f32; DCT]; DCT] {
    let mut b = [[0f32; DCT]; DCT];
    for i in 0..DCT {
        for j in 0..DCT {
            let v = a[i][j];
            // Mirroring along an axis multiplies frequency k = index + 1 by (-1)^k.
            let (odd_i, odd_j) = (i % 2 == 1, j % 2 == 1);
            match t {
                Dihedral::Original => b[i][j] = v,
                Dihedral::Rotate90 => b[j][i] = if odd_j { v } else { -v },
                Dihedral::Rotate180 => b[i][j] = if (i + j) % 2 == 1 { -v } else { v },
                Dihedral::Rotate270 => b[j][i] = if odd_i { v } else { -v },
                Dihedral::FlipX => b[i][j] = if odd_i { v } else { -v },
                Dihedral::FlipY => b[i][j] = if odd_j { v } else { -v },
                Dihedral::FlipPlus1 => b[j][i] = v,
                Dihedral::FlipMinus1 => b[j][i] = if (i + j) % 2 == 1 { -v } else { v },
            }
        }
    }
    b
}

fn check(luma: &[f32], width: usize, height: usize) {
    assert!(
        luma.len() >= width * height,
        "luma plane smaller than {width}x{height}"
    );
}

/// The PDQ hash of a luma plane (row-major, values 0..=255).
///
/// # Panics
/// When `luma` holds fewer than `width * height` values or a side is 0.
pub fn hash_luma(luma: &[f32], width: usize, height: usize) -> Hashed {
    check(luma, width, height);
    assert!(width > 0 && height > 0, "empty picture");
    let small = downsample(luma, width, height);
    Hashed {
        hash: to_hash(&dct16(&small)),
        quality: quality(&small),
    }
}

/// The hashes of all 8 dihedral transforms (in [`Dihedral::ALL`] order) and the quality.
pub fn hash_luma_dihedral(luma: &[f32], width: usize, height: usize) -> ([PdqHash; 8], u32) {
    check(luma, width, height);
    assert!(width > 0 && height > 0, "empty picture");
    let small = downsample(luma, width, height);
    let block = dct16(&small);
    let hashes = Dihedral::ALL.map(|t| to_hash(&transform(&block, t)));
    (hashes, quality(&small))
}

/// Luma of 8-bit RGB (packed, 3 bytes a pixel) with the reference's coefficients.
pub fn luma_from_rgb(rgb: &[u8]) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect()
}

/// Luma of an 8-bit luma plane with a row stride (e.g. the Y plane of a decoded video frame).
pub fn luma_from_plane(y: &[u8], stride: usize, width: usize, height: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(width * height);
    for row in 0..height {
        out.extend(
            y[row * stride..row * stride + width]
                .iter()
                .map(|&v| f32::from(v)),
        );
    }
    out
}

/// Luma of a decoded video frame's Y plane, as the reference computes it from the RGB frame that
/// a decoder's YUV→RGB conversion would give: limited-range video (Y in 16..=235, the common case)
/// is expanded to 0..=255, so hashes and especially qualities agree with hashes of RGB frames.
pub fn luma_from_video_plane(
    y: &[u8],
    stride: usize,
    width: usize,
    height: usize,
    limited_range: bool,
) -> Vec<f32> {
    if !limited_range {
        return luma_from_plane(y, stride, width, height);
    }
    let scale = 255.0 / 219.0;
    let mut out = Vec::with_capacity(width * height);
    for row in 0..height {
        out.extend(
            y[row * stride..row * stride + width]
                .iter()
                .map(|&v| ((f32::from(v) - 16.0) * scale).clamp(0.0, 255.0)),
        );
    }
    out
}

/// [`luma_from_video_plane`] of the frame reduced by `factor` in each direction (each output
/// pixel the mean of a `factor`×`factor` box; a partial last row or column is dropped), with the
/// reduced width and height. PDQ reduces every picture to 64×64 with box filters anyway, so a
/// large frame hashed at half size gives nearly the same hash for a quarter of the work.
pub fn luma_from_video_plane_reduced(
    y: &[u8],
    stride: usize,
    width: usize,
    height: usize,
    limited_range: bool,
    factor: usize,
) -> (Vec<f32>, usize, usize) {
    let factor = factor.max(1);
    if factor == 1 {
        return (
            luma_from_video_plane(y, stride, width, height, limited_range),
            width,
            height,
        );
    }
    let (w, h) = (width / factor, height / factor);
    let (scale, offset) = if limited_range {
        (255.0 / 219.0, 16.0)
    } else {
        (1.0, 0.0)
    };
    let norm = 1.0 / (factor * factor) as f32;
    let mut sums = vec![0u32; w];
    let mut out = Vec::with_capacity(w * h);
    for r in 0..h {
        sums.iter_mut().for_each(|s| *s = 0);
        for dy in 0..factor {
            let row = &y[(r * factor + dy) * stride..][..w * factor];
            for (s, chunk) in sums.iter_mut().zip(row.chunks_exact(factor)) {
                *s += chunk.iter().map(|&v| u32::from(v)).sum::<u32>();
            }
        }
        out.extend(
            sums.iter()
                .map(|&s| ((s as f32 * norm - offset) * scale).clamp(0.0, 255.0)),
        );
    }
    (out, w, h)
}

/// Hashes an image file (JPEG, PNG).
#[cfg(feature = "image-files")]
pub fn hash_file(path: &std::path::Path) -> Result<Hashed, PdqError> {
    let (luma, w, h) = read_luma(path)?;
    Ok(hash_luma(&luma, w, h))
}

/// Hashes an image file's 8 dihedral transforms.
#[cfg(feature = "image-files")]
pub fn hash_file_dihedral(path: &std::path::Path) -> Result<([PdqHash; 8], u32), PdqError> {
    let (luma, w, h) = read_luma(path)?;
    Ok(hash_luma_dihedral(&luma, w, h))
}

#[cfg(feature = "image-files")]
fn read_luma(path: &std::path::Path) -> Result<(Vec<f32>, usize, usize), PdqError> {
    let img = image::ImageReader::open(path)
        .map_err(|e| PdqError::Decode(format!("{}: {e}", path.display())))?
        .with_guessed_format()
        .map_err(|e| PdqError::Decode(format!("{}: {e}", path.display())))?
        .decode()
        .map_err(|e| PdqError::Decode(format!("{}: {e}", path.display())))?;
    let rgb = img.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if w == 0 || h == 0 {
        return Err(PdqError::EmptyPicture(w, h));
    }
    Ok((luma_from_rgb(rgb.as_raw()), w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gradient(w: usize, h: usize) -> Vec<f32> {
        (0..w * h)
            .map(|i| ((i % w) * 255 / w.max(1)) as f32)
            .collect()
    }

    #[test]
    fn hex_round_trips_and_bit_order_matches_the_reference_words() {
        let mut h = PdqHash([0; 32]);
        h.set_bit(0);
        // Bit 0 is the lowest bit of word 0, the last word printed.
        assert_eq!(h.to_hex(), format!("{}0001", "0".repeat(60)));
        h.set_bit(255);
        assert!(h.to_hex().starts_with("8000"));
        let parsed: PdqHash = h.to_hex().parse().unwrap();
        assert_eq!(parsed, h);
        assert!(parsed.bit(0) && parsed.bit(255) && !parsed.bit(1));
        assert_eq!("abc".parse::<PdqHash>(), Err(PdqError::HexLength(3)));
    }

    #[test]
    fn box_filter_of_a_constant_is_the_constant() {
        let input = vec![7f32; 50];
        let mut out = vec![0f32; 50];
        for full in 1..=9 {
            box_1d(&input, &mut out, 0, 50, 1, full);
            assert!(out.iter().all(|&v| (v - 7.0).abs() < 1e-5), "window {full}");
        }
    }

    #[test]
    fn half_the_bits_are_set_and_flat_pictures_have_zero_quality() {
        let h = hash_luma(&gradient(300, 200), 300, 200);
        assert!(h.hash.count_ones() <= 128);
        assert!(h.quality > 0);
        let flat = hash_luma(&vec![128f32; 100 * 100], 100, 100);
        assert_eq!(flat.quality, 0);
    }

    /// The straightforward filter: every pass over every row and column with `box_1d`.
    fn downsample_plain(luma: &[f32], width: usize, height: usize) -> Vec<f32> {
        let mut a = luma[..width * height].to_vec();
        let mut b = vec![0f32; width * height];
        for _ in 0..2 {
            for r in 0..height {
                box_1d(&a, &mut b, r * width, width, 1, window(width, SIDE));
            }
            for c in 0..width {
                box_1d(&b, &mut a, c, height, width, window(height, SIDE));
            }
        }
        let mut out = vec![0f32; SIDE * SIDE];
        for (i, &ii) in sample_points(height).iter().enumerate() {
            for (j, &jj) in sample_points(width).iter().enumerate() {
                out[i * SIDE + j] = a[ii * width + jj];
            }
        }
        out
    }

    #[test]
    fn row_wise_column_filter_is_bit_identical_to_the_plain_one() {
        for (w, h) in [(1280, 720), (333, 517), (64, 64), (20, 90), (7, 5)] {
            let luma: Vec<f32> = (0..w * h).map(|i| ((i * 7919) % 256) as f32).collect();
            let fast = downsample(&luma, w, h);
            let plain = downsample_plain(&luma, w, h);
            assert!(
                fast.iter()
                    .zip(&plain)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn original_variant_equals_the_plain_hash() {
        let luma: Vec<f32> = (0..123 * 77).map(|i| ((i * 37) % 251) as f32).collect();
        let (all, q) = hash_luma_dihedral(&luma, 123, 77);
        let plain = hash_luma(&luma, 123, 77);
        assert_eq!(all[0], plain.hash);
        assert_eq!(q, plain.quality);
    }

    proptest! {
        /// Hamming distance is a metric on random hashes: symmetric, zero only on equal
        /// hashes, and obeys the triangle inequality.
        #[test]
        fn distance_is_a_metric(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), c in any::<[u8; 32]>()) {
            let (a, b, c) = (PdqHash(a), PdqHash(b), PdqHash(c));
            prop_assert_eq!(a.distance(&b), b.distance(&a));
            prop_assert_eq!(a.distance(&a), 0);
            prop_assert_eq!(a.distance(&b) == 0, a == b);
            prop_assert!(a.distance(&c) <= a.distance(&b) + b.distance(&c));
        }
    }
}
