//! Frame sampling and thumbnails, independent of GStreamer so they can be tested alone.
//!
//! The sampler picks frames on a fixed clock (`sample_fps`) plus scene cuts: a frame whose coarse
//! luma layout (a 16×16 grid of block means) differs from the previous frame's by more than
//! `scene_cut_threshold` (mean absolute difference, 0–1) is picked too, at most one per
//! `min_scene_gap_s`. The grid is computed on every decoded frame from a subsample of the luma
//! plane, so the cost per frame stays tiny beside decoding.

/// Side of the coarse luma grid.
pub const GRID: usize = 16;

/// Block means of a luma plane on a [`GRID`]×[`GRID`] grid, 0–255.
#[derive(Debug, Clone, PartialEq)]
pub struct LumaGrid(pub [f32; GRID * GRID]);

impl LumaGrid {
    /// Computes the grid from a luma plane (`stride` bytes per row), reading every `step`-th
    /// pixel of every `step`-th row inside each block.
    pub fn from_plane(y: &[u8], stride: usize, width: usize, height: usize) -> Self {
        let mut out = [0f32; GRID * GRID];
        if width == 0 || height == 0 {
            return Self(out);
        }
        let step = (width.min(height) / (GRID * 8)).max(1);
        for gy in 0..GRID {
            let (y0, y1) = (
                gy * height / GRID,
                ((gy + 1) * height / GRID).max(gy * height / GRID + 1),
            );
            for gx in 0..GRID {
                let (x0, x1) = (
                    gx * width / GRID,
                    ((gx + 1) * width / GRID).max(gx * width / GRID + 1),
                );
                let (mut sum, mut n) = (0u32, 0u32);
                for row in (y0..y1.min(height)).step_by(step) {
                    let line = &y[row * stride..];
                    for col in (x0..x1.min(width)).step_by(step) {
                        sum += u32::from(line[col]);
                        n += 1;
                    }
                }
                out[gy * GRID + gx] = if n == 0 { 0.0 } else { sum as f32 / n as f32 };
            }
        }
        Self(out)
    }

    /// Mean absolute difference to another grid, 0 (same) to 1 (black vs white).
    pub fn distance(&self, other: &LumaGrid) -> f32 {
        let total: f32 = self
            .0
            .iter()
            .zip(other.0.iter())
            .map(|(a, b)| (a - b).abs())
            .sum();
        total / (GRID * GRID) as f32 / 255.0
    }
}

/// Why a frame was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Clock,
    SceneCut,
}

/// Decides which decoded frames to keep.
#[derive(Debug)]
pub struct Sampler {
    interval_s: f64,
    scene_threshold: f32,
    min_gap_s: f64,
    max_frames: u32,
    next_clock_s: f64,
    last_pick_s: Option<f64>,
    previous: Option<LumaGrid>,
    picked: u32,
}

impl Sampler {
    /// `fps` frames per second on the clock (0 = first frame only), `scene_threshold` 0 disables
    /// scene cuts.
    pub fn new(fps: f64, scene_threshold: f32, min_gap_s: f64, max_frames: u32) -> Self {
        Self {
            interval_s: if fps > 0.0 { 1.0 / fps } else { f64::INFINITY },
            scene_threshold,
            min_gap_s,
            max_frames,
            next_clock_s: 0.0,
            last_pick_s: None,
            previous: None,
            picked: 0,
        }
    }

    /// Looks at one decoded frame (timestamps must not decrease much; small reorderings are
    /// tolerated) and says whether to keep it.
    pub fn offer(&mut self, t: f64, grid: LumaGrid) -> Option<Pick> {
        let cut = match &self.previous {
            Some(prev) => self.scene_threshold > 0.0 && grid.distance(prev) > self.scene_threshold,
            None => false,
        };
        self.previous = Some(grid);
        if self.picked >= self.max_frames {
            return None;
        }
        let pick = if t + 1e-6 >= self.next_clock_s {
            while self.next_clock_s <= t + 1e-6 {
                self.next_clock_s += self.interval_s;
            }
            Some(Pick::Clock)
        } else if cut
            && self
                .last_pick_s
                .is_none_or(|last| t - last >= self.min_gap_s)
        {
            Some(Pick::SceneCut)
        } else {
            None
        };
        if pick.is_some() {
            self.picked += 1;
            self.last_pick_s = Some(t);
        }
        pick
    }
}

/// Thumbnail size for a frame: the shorter side becomes `short_side` (never upscaled), even
/// dimensions, aspect kept.
pub fn thumbnail_size(width: u32, height: u32, short_side: u32) -> (u32, u32) {
    let short = width.min(height).max(1);
    if short <= short_side {
        return (width.max(2) & !1, height.max(2) & !1);
    }
    let scale = f64::from(short_side) / f64::from(short);
    let w = ((f64::from(width) * scale).round() as u32).max(2) & !1;
    let h = ((f64::from(height) * scale).round() as u32).max(2) & !1;
    (w, h)
}

/// The planes of an I420 frame.
#[derive(Debug, Clone, Copy)]
pub struct I420<'a> {
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub y_stride: usize,
    pub uv_stride: usize,
    pub width: usize,
    pub height: usize,
}

/// Scales an I420 frame to `out_w`×`out_h` packed RGB (BT.601 limited range), averaging the
/// source pixels under each output pixel (box filter) so small thumbnails do not alias.
pub fn i420_to_rgb_thumbnail(f: &I420<'_>, out_w: usize, out_h: usize) -> Vec<u8> {
    let mut rgb = vec![0u8; out_w * out_h * 3];
    if f.width == 0 || f.height == 0 {
        return rgb;
    }
    // The source box of each output pixel is sampled at most 2×2 points (enough against
    // aliasing at thumbnail scale factors, and 4× cheaper than 4×4); the points of every
    // column and row are worked out once.
    let points = |out: usize, full: usize| -> Vec<([usize; 2], usize)> {
        (0..out)
            .map(|o| {
                let s0 = o * full / out;
                let s1 = ((o + 1) * full / out).max(s0 + 1).min(full);
                let step = (s1 - s0).div_ceil(2).max(1);
                if s0 + step < s1 {
                    ([s0, s0 + step], 2)
                } else {
                    ([s0, s0], 1)
                }
            })
            .collect()
    };
    let cols = points(out_w, f.width);
    let rows = points(out_h, f.height);
    // BT.601 limited range to RGB in 16.16 fixed point, from sums over `n` = 1, 2 or 4
    // samples (a power of two: the mean is a shift).
    const FY: i32 = (1.164 * 65536.0) as i32;
    const FRV: i32 = (1.596 * 65536.0) as i32;
    const FGU: i32 = (0.392 * 65536.0) as i32;
    const FGV: i32 = (0.813 * 65536.0) as i32;
    const FBU: i32 = (2.017 * 65536.0) as i32;
    let clamp = |v: i32, shift: u32| (v >> (16 + shift)).clamp(0, 255) as u8;
    for (oy, (ys, ny)) in rows.iter().enumerate() {
        let out_row = &mut rgb[oy * out_w * 3..(oy + 1) * out_w * 3];
        let y_rows = [&f.y[ys[0] * f.y_stride..], &f.y[ys[1] * f.y_stride..]];
        let c_rows = [(ys[0] / 2) * f.uv_stride, (ys[1] / 2) * f.uv_stride];
        for ((xs, nx), o) in cols.iter().zip(out_row.chunks_exact_mut(3)) {
            let (mut ysum, mut usum, mut vsum) = (0i32, 0i32, 0i32);
            for r in 0..*ny {
                for &sx in &xs[..*nx] {
                    ysum += i32::from(y_rows[r][sx]);
                    usum += i32::from(f.u[c_rows[r] + sx / 2]);
                    vsum += i32::from(f.v[c_rows[r] + sx / 2]);
                }
            }
            let n = (ny * nx) as i32;
            let shift = n.trailing_zeros();
            let y = ysum - 16 * n;
            let u = usum - 128 * n;
            let v = vsum - 128 * n;
            o[0] = clamp(FY * y + FRV * v, shift);
            o[1] = clamp(FY * y - FGU * u - FGV * v, shift);
            o[2] = clamp(FY * y + FBU * u, shift);
        }
    }
    rgb
}

/// Encodes packed RGB as JPEG.
pub fn encode_jpeg(rgb: &[u8], width: u32, height: u32, quality: u8) -> Result<Vec<u8>, String> {
    let (w, h) = (
        u16::try_from(width).map_err(|_| format!("thumbnail width {width} > 65535"))?,
        u16::try_from(height).map_err(|_| format!("thumbnail height {height} > 65535"))?,
    );
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality)
        .encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn flat(v: u8) -> LumaGrid {
        LumaGrid([f32::from(v); GRID * GRID])
    }

    #[test]
    fn grid_sees_a_half_black_half_white_plane() {
        let (w, h) = (64, 32);
        let y: Vec<u8> = (0..w * h)
            .map(|i| if i % w < w / 2 { 0 } else { 255 })
            .collect();
        let g = LumaGrid::from_plane(&y, w, w, h);
        assert_eq!(g.0[0], 0.0);
        assert_eq!(g.0[GRID - 1], 255.0);
        assert!((g.distance(&flat(0)) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn clock_picks_one_frame_per_interval_and_scene_cuts_in_between() {
        let mut s = Sampler::new(1.0, 0.2, 0.5, 100);
        let mut picks = Vec::new();
        for i in 0..90 {
            let t = f64::from(i) / 30.0;
            let grid = if i < 48 { flat(10) } else { flat(240) };
            if let Some(p) = s.offer(t, grid) {
                picks.push((i, p));
            }
        }
        assert_eq!(
            picks,
            vec![
                (0, Pick::Clock),
                (30, Pick::Clock),
                (48, Pick::SceneCut),
                (60, Pick::Clock)
            ]
        );
    }

    #[test]
    fn thumbnail_size_keeps_aspect_and_never_upscales() {
        assert_eq!(thumbnail_size(1280, 720, 256), (454, 256));
        assert_eq!(thumbnail_size(720, 1280, 256), (256, 454));
        assert_eq!(thumbnail_size(160, 120, 256), (160, 120));
        assert_eq!(thumbnail_size(3, 3, 256), (2, 2));
    }

    #[test]
    fn grey_i420_becomes_grey_rgb() {
        let (w, h) = (8, 4);
        let y = vec![126u8; w * h];
        let uv = vec![128u8; (w / 2) * (h / 2)];
        let f = I420 {
            y: &y,
            u: &uv,
            v: &uv,
            y_stride: w,
            uv_stride: w / 2,
            width: w,
            height: h,
        };
        let rgb = i420_to_rgb_thumbnail(&f, 4, 2);
        assert!(rgb.iter().all(|&c| (127..=129).contains(&c)), "{rgb:?}");
    }

    proptest! {
        /// The sampler never exceeds its cap, picks the first frame, and clock picks are at
        /// least one interval apart.
        #[test]
        fn sampler_respects_cap_and_interval(fps in 0.2f64..10.0, n in 1usize..400, cap in 1u32..50,
                                             lumas in proptest::collection::vec(0u8..=255, 400)) {
            let mut s = Sampler::new(fps, 0.3, 0.25, cap);
            let mut clock_times = Vec::new();
            let mut total = 0;
            for (i, &luma) in lumas.iter().enumerate().take(n) {
                let t = i as f64 / 25.0;
                match s.offer(t, flat(luma)) {
                    Some(Pick::Clock) => { clock_times.push(t); total += 1; }
                    Some(Pick::SceneCut) => total += 1,
                    None => {}
                }
                if i == 0 { prop_assert_eq!(total, 1); }
            }
            prop_assert!(total <= cap as usize);
            for w in clock_times.windows(2) {
                prop_assert!(w[1] - w[0] >= 1.0 / fps - 1.0 / 25.0 - 1e-9);
            }
        }
    }
}
