//! Bilinear resampling that reproduces Pillow's `Image.resize(..., BILINEAR)` on 8-bit RGB
//! exactly: a triangle filter widened by the scale factor when shrinking (antialiasing),
//! coefficients normalised per output pixel and rounded to 22-bit fixed point, a horizontal pass
//! then a vertical pass, each rounding back to 8 bits. Classifiers published with Python
//! preprocessing (most are) then see the same pixels here as in their reference pipeline.

/// Fixed-point precision Pillow uses for 8-bit images (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Per output pixel: first input index and its fixed-point weights.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the triangle's support is 1
    let mut out = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let weights: Vec<f64> = (xmin..xmax)
            .map(|x| triangle((x as f64 - center + 0.5) * ss))
            .collect();
        let total: f64 = weights.iter().sum();
        let fixed = weights
            .iter()
            .map(|&w| {
                let k = if total != 0.0 { w / total } else { w };
                let scaled = k * (1u64 << PRECISION_BITS) as f64;
                if k < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                }
            })
            .collect();
        out.push((xmin, fixed));
    }
    out
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes packed RGB (`width × height × 3`) to `out_w × out_h`.
pub fn resize_rgb(src: &[u8], width: usize, height: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    debug_assert_eq!(src.len(), width * height * 3);
    let half = 1i64 << (PRECISION_BITS - 1);
    // Horizontal pass (Pillow skips a pass whose size does not change).
    let horizontal: Vec<u8> = if out_w == width {
        src.to_vec()
    } else {
        let coeffs = coefficients(width, out_w);
        let mut tmp = vec![0u8; out_w * height * 3];
        for y in 0..height {
            let row = &src[y * width * 3..(y + 1) * width * 3];
            for (x, (first, ks)) in coeffs.iter().enumerate() {
                for c in 0..3 {
                    let mut acc = half;
                    for (i, &k) in ks.iter().enumerate() {
                        acc += row[(first + i) * 3 + c] as i64 * k as i64;
                    }
                    tmp[(y * out_w + x) * 3 + c] = clip8(acc);
                }
            }
        }
        tmp
    };
    if out_h == height {
        return horizontal;
    }
    let coeffs = coefficients(height, out_h);
    let mut out = vec![0u8; out_w * out_h * 3];
    for (y, (first, ks)) in coeffs.iter().enumerate() {
        for x in 0..out_w * 3 {
            let mut acc = half;
            for (i, &k) in ks.iter().enumerate() {
                acc += horizontal[(first + i) * out_w * 3 + x] as i64 * k as i64;
            }
            out[y * out_w * 3 + x] = clip8(acc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity_and_flat_stays_flat() {
        let src: Vec<u8> = (0..4 * 3 * 3).map(|i| i as u8).collect();
        assert_eq!(resize_rgb(&src, 4, 3, 4, 3), src);
        let flat = vec![77u8; 37 * 23 * 3];
        assert!(resize_rgb(&flat, 37, 23, 10, 9).iter().all(|&v| v == 77));
        assert!(resize_rgb(&flat, 37, 23, 80, 50).iter().all(|&v| v == 77));
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(640, 256), (256, 640), (7, 3), (3, 7), (1000, 1)] {
            for (_, ks) in coefficients(i, o) {
                let s: i64 = ks.iter().map(|&k| k as i64).sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= ks.len() as i64,
                    "{i}->{o}: {s}"
                );
            }
        }
    }
}
