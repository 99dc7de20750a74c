//! Bad-pixel masks that ZOGY inputs need and that headers rarely describe: hard saturation
//! (also without a `SATURATE` card), flat fill regions left by resampling/alignment, and
//! cosmic-ray / hot pixels sharper than the PSF. Generic helpers (candidates for
//! `diffim-core::mask`).

use crate::cosmic::row_major;
pub use crate::cosmic::{CosmicParams, CosmicRays, cosmic_rays, psf_contrast, star_contrast};
pub use crate::prep::inpaint;
use diffim_core::mask::dilate;
use ndarray::{Array2, ArrayView2, Zip};

/// Pixels at or above the saturation level, grown by `grow` pixels (bleed trails and the
/// non-linear halo of a saturated core).
///
/// `level = None` detects *hard* saturation: the largest finite value is taken as the
/// saturation level when at least `3` pixels share it exactly (a clipped plateau, e.g. 65535
/// for unsigned 16-bit data); otherwise nothing is masked.
pub fn saturation_mask(image: &ArrayView2<f32>, level: Option<f64>, grow: usize) -> Array2<bool> {
    let (ny, nx) = image.dim();
    let v = row_major(image);
    let level = level.or_else(|| {
        let max = v.iter().fold(
            f32::NEG_INFINITY,
            |m, &a| if a.is_finite() { m.max(a) } else { m },
        );
        let n = v.iter().filter(|&&a| a == max).count();
        (max.is_finite() && n >= 3).then_some(max as f64)
    });
    let mut runs = Runs::default();
    if let Some(l) = level {
        // Row runs of saturated pixels; blocks without any are skipped after one test.
        const BLOCK: usize = 32;
        let sat = |a: f32| a.is_finite() & (a as f64 >= l);
        for (y, row) in v.chunks(nx.max(1)).enumerate() {
            let mut start: Option<usize> = None;
            for (b, blk) in row.chunks(BLOCK).enumerate() {
                if start.is_none() && !blk.iter().fold(false, |acc, &a| acc | sat(a)) {
                    continue;
                }
                for (o, &a) in blk.iter().enumerate() {
                    let x = b * BLOCK + o;
                    match (sat(a), start) {
                        (true, None) => start = Some(x),
                        (false, Some(s)) => {
                            runs.rows.push((y, s, x));
                            start = None;
                        }
                        _ => {}
                    }
                }
            }
            if let Some(s) = start {
                runs.rows.push((y, s, nx));
            }
        }
    }
    runs.mask(ny, nx, grow)
}

/// Pixels in runs of at least `min_run` identical values along a row or a column (the
/// constant fill of resampled/aligned frames' borders, dead columns, clipped plateaus), grown
/// by `grow` pixels (the partly filled pixels next to them).
pub fn flat_run_mask(image: &ArrayView2<f32>, min_run: usize, grow: usize) -> Array2<bool> {
    let (ny, nx) = image.dim();
    let v = row_major(image);
    let min_run = min_run.max(2);
    // `a` continues the run of the pixel before it (same finite value).
    let same = |a: f32, before: f32| (a == before) & a.is_finite();
    let mut runs = Runs::default();
    if nx == 0 || ny == 0 {
        return runs.mask(ny, nx, grow);
    }
    // Rows: runs end where a pixel differs from the one before; blocks of pixels that all
    // differ from theirs are skipped after one test.
    const BLOCK: usize = 32;
    for (y, row) in v.chunks(nx).enumerate() {
        let mut start = 0;
        let mut b0 = 1;
        while b0 < nx {
            let b1 = (b0 + BLOCK).min(nx);
            let (cur, before) = (&row[b0..b1], &row[b0 - 1..b1 - 1]);
            if !cur
                .iter()
                .zip(before)
                .fold(false, |acc, (&a, &p)| acc | same(a, p))
            {
                if b0 - start >= min_run {
                    runs.rows.push((y, start, b0));
                }
                start = b1 - 1;
            } else {
                for x in b0..b1 {
                    if !same(row[x], row[x - 1]) {
                        if x - start >= min_run {
                            runs.rows.push((y, start, x));
                        }
                        start = x;
                    }
                }
            }
            b0 = b1;
        }
        if nx - start >= min_run {
            runs.rows.push((y, start, nx));
        }
    }
    // Columns, swept row by row: the current run length of every column.
    let min_len = u32::try_from(min_run).unwrap_or(u32::MAX);
    let mut len = vec![1u32; nx];
    for y in 1..ny {
        let (before, cur) = (&v[(y - 1) * nx..y * nx], &v[y * nx..(y + 1) * nx]);
        let blocks = cur.chunks(BLOCK).zip(before.chunks(BLOCK));
        for (c, ((cur, before), len)) in blocks.zip(len.chunks_mut(BLOCK)).enumerate() {
            // All ones where the run goes on, 0 where it ends.
            let mut e = [0u32; BLOCK];
            for ((e, &a), &p) in e.iter_mut().zip(cur).zip(before) {
                *e = (same(a, p) as u32).wrapping_neg();
            }
            let ends = e
                .iter()
                .zip(len.iter())
                .fold(false, |acc, (&e, &l)| acc | ((e == 0) & (l >= min_len)));
            if ends {
                for (o, (&e, &l)) in e.iter().zip(len.iter()).enumerate() {
                    if e == 0 && l >= min_len {
                        runs.cols.push((c * BLOCK + o, y - l as usize, y));
                    }
                }
            }
            for (l, &e) in len.iter_mut().zip(&e) {
                *l = 1 + (*l & e);
            }
        }
    }
    for (x, &l) in len.iter().enumerate() {
        if l >= min_len {
            runs.cols.push((x, ny - l as usize, ny));
        }
    }
    runs.mask(ny, nx, grow)
}

/// Runs of flagged pixels: `(y, x0, x1)` along rows, `(x, y0, y1)` along columns (ends
/// exclusive).
#[derive(Default)]
struct Runs {
    rows: Vec<(usize, usize, usize)>,
    cols: Vec<(usize, usize, usize)>,
}

impl Runs {
    /// The runs' pixels grown by `grow` (a square dilation): each run painted as its grown
    /// rectangle, or, when those would cover more than the image, the runs dilated with
    /// [`dilate`] (the same pixels).
    fn mask(&self, ny: usize, nx: usize, grow: usize) -> Array2<bool> {
        let mut out = vec![false; ny * nx];
        let g = grow;
        let area: usize = self
            .rows
            .iter()
            .chain(&self.cols)
            .map(|&(_, a, b)| (b - a + 2 * g) * (2 * g + 1))
            .sum();
        let direct = g == 0 || area <= ny * nx;
        let g = if direct { g } else { 0 };
        let mut paint = |y0: usize, y1: usize, x0: usize, x1: usize| {
            let (y0, y1) = (y0.saturating_sub(g), (y1 + g).min(ny));
            let (x0, x1) = (x0.saturating_sub(g), (x1 + g).min(nx));
            for y in y0..y1 {
                out[y * nx + x0..y * nx + x1].fill(true);
            }
        };
        for &(y, x0, x1) in &self.rows {
            paint(y, y + 1, x0, x1);
        }
        for &(x, y0, y1) in &self.cols {
            paint(y0, y1, x, x + 1);
        }
        let m = Array2::from_shape_vec((ny, nx), out).expect("one flag per pixel");
        if direct { m } else { dilate(&m.view(), grow) }
    }
}

/// Cosmic-ray and hot pixels: sharper than the PSF allows (a single-pixel test; the facade
/// uses [`cosmic_rays`], which also finds multi-pixel, resampled and negative artefacts and
/// hits on stars).
///
/// `resid` is the background-subtracted image, `noise` its per-pixel RMS, `psf` the (centred)
/// PSF stamp. A pixel is flagged when its excess over the mean of its 4 neighbours (the
/// discrete Laplacian `L`) is significant (`L > nsigma * noise`) and exceeds
/// `sharp_ratio` times what the PSF allows for its peak value: for a point source
/// `L / peak <= r_psf`, the ratio of the centred PSF stamp (which is the largest over sub-pixel
/// positions). `sharp_ratio = 1.5` flags features that are clearly sharper than stars.
/// Flagged pixels are grown by `grow` pixels.
///
/// Hot pixels and cosmic rays are usually best *replaced* ([`inpaint`]) rather than passed to
/// [`crate::zogy`] as a mask, which would dilate them by the PSF half-size.
pub fn sharp_pixel_mask(
    resid: &ArrayView2<f32>,
    noise: &ArrayView2<f32>,
    psf: &Array2<f64>,
    nsigma: f64,
    sharp_ratio: f64,
    grow: usize,
) -> Array2<bool> {
    let (ny, nx) = resid.dim();
    let (h, w) = psf.dim();
    let (cy, cx) = (h / 2, w / 2);
    let r_psf = if h >= 3 && w >= 3 {
        let p = psf[[cy, cx]];
        let nb =
            0.25 * (psf[[cy - 1, cx]] + psf[[cy + 1, cx]] + psf[[cy, cx - 1]] + psf[[cy, cx + 1]]);
        if p > 0.0 {
            ((p - nb) / p).clamp(0.0, 1.0)
        } else {
            1.0
        }
    } else {
        1.0
    };
    let lim = (sharp_ratio * r_psf).min(0.95);
    let mut m = Array2::from_elem((ny, nx), false);
    if ny < 3 || nx < 3 {
        return m;
    }
    Zip::indexed(&mut m).par_for_each(|(y, x), b| {
        if y == 0 || x == 0 || y + 1 >= ny || x + 1 >= nx {
            return;
        }
        let v = resid[[y, x]] as f64;
        let nb = 0.25
            * (resid[[y - 1, x]] + resid[[y + 1, x]] + resid[[y, x - 1]] + resid[[y, x + 1]])
                as f64;
        let l = v - nb;
        let s = noise[[y, x]] as f64;
        *b = v > 0.0 && s > 0.0 && l > nsigma * s * 1.118 && l > lim * v;
    });
    if grow > 0 { dilate(&m.view(), grow) } else { m }
}

#[cfg(test)]
mod reference {
    //! The direct versions of the masks (a whole-image test, scans with `[[y, x]]`, then
    //! [`dilate`]) that the run-based ones must equal.
    use super::*;

    pub fn saturation_mask(
        image: &ArrayView2<f32>,
        level: Option<f64>,
        grow: usize,
    ) -> Array2<bool> {
        let level = level.or_else(|| {
            let max = image
                .iter()
                .filter(|v| v.is_finite())
                .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let n = image.iter().filter(|&&v| v == max).count();
            (max.is_finite() && n >= 3).then_some(max as f64)
        });
        let m = match level {
            Some(l) => image.mapv(|v| v.is_finite() && v as f64 >= l),
            None => Array2::from_elem(image.dim(), false),
        };
        if grow > 0 { dilate(&m.view(), grow) } else { m }
    }

    pub fn flat_run_mask(image: &ArrayView2<f32>, min_run: usize, grow: usize) -> Array2<bool> {
        let (ny, nx) = image.dim();
        let mut m = Array2::from_elem((ny, nx), false);
        let min_run = min_run.max(2);
        let scan = |len: usize, at: &dyn Fn(usize) -> (usize, usize), m: &mut Array2<bool>| {
            let mut start = 0;
            for i in 1..=len {
                if i == len || image[at(i)] != image[at(start)] || !image[at(i)].is_finite() {
                    if i - start >= min_run && image[at(start)].is_finite() {
                        for k in start..i {
                            m[at(k)] = true;
                        }
                    }
                    start = i;
                }
            }
        };
        for y in 0..ny {
            scan(nx, &|x| (y, x), &mut m);
        }
        for x in 0..nx {
            scan(ny, &|y| (y, x), &mut m);
        }
        if grow > 0 { dilate(&m.view(), grow) } else { m }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffim_core::psf::gaussian_stamp;
    use ndarray::ShapeBuilder;

    #[test]
    fn masks_find_fill_saturation_and_hot_pixels() {
        let mut img = Array2::from_shape_fn((40, 40), |(y, x)| ((x * 7 + y * 13) % 11) as f32);
        img.column_mut(0).fill(5.5);
        let fm = flat_run_mask(&img.view(), 8, 1);
        assert!(fm[[10, 0]] && fm[[10, 1]] && !fm[[10, 3]]);
        img[[20, 20]] = 100.0;
        img[[20, 21]] = 100.0;
        img[[21, 20]] = 100.0;
        let sm = saturation_mask(&img.view(), None, 1);
        assert!(sm[[20, 20]] && sm[[19, 19]] && !sm[[25, 25]]);
        assert!(
            !saturation_mask(&img.view(), Some(1e9), 0)
                .iter()
                .any(|&b| b)
        );
        // A star (FWHM 3) is kept, a single hot pixel is flagged.
        let psf = gaussian_stamp(15, 3.0, 0.0, 0.0);
        let mut r = Array2::<f32>::zeros((40, 40));
        for ((j, i), &p) in psf.indexed_iter() {
            r[[5 + j, 5 + i]] += (5000.0 * p) as f32;
        }
        r[[30, 30]] = 200.0;
        let noise = Array2::from_elem((40, 40), 1.0f32);
        let cm = sharp_pixel_mask(&r.view(), &noise.view(), &psf, 5.0, 1.5, 0);
        assert!(cm[[30, 30]]);
        assert_eq!(cm.iter().filter(|&&b| b).count(), 1);
    }

    /// Plateaus, constant rows and columns, runs at the edges, NaN/Inf, signed zeros and
    /// a clipped maximum.
    fn plateaus(ny: usize, nx: usize, seed: u64) -> Array2<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        // Mostly distinct values (so that whole blocks are skipped), every third row on a
        // coarse grid (many short runs).
        let mut a = Array2::from_shape_fn((ny, nx), |(y, _)| match y % 3 {
            0 => (rnd() % 4) as f32,
            _ => (rnd() % 1_000_000) as f32 * 1e-3,
        });
        // Runs of 7-9 starting just before, at and after block boundaries (x = 32, 64).
        for (k, x0) in [31usize, 32, 33, 63, 64, 65].into_iter().enumerate() {
            let (y, l) = (1 + 3 * k, 7 + k % 3);
            if y < ny && x0 < nx {
                a.slice_mut(ndarray::s![y, x0..(x0 + l).min(nx)]).fill(2.25);
            }
        }
        for _ in 0..6 {
            let (y, x) = ((rnd() % ny as u64) as usize, (rnd() % nx as u64) as usize);
            let (h, w) = (1 + (rnd() % 12) as usize, 1 + (rnd() % 15) as usize);
            let v = [7.5, 0.0, -0.0, 9.0][(rnd() % 4) as usize];
            a.slice_mut(ndarray::s![y..(y + h).min(ny), x..(x + w).min(nx)])
                .fill(v);
        }
        a.row_mut(ny - 1).fill(-3.0);
        a.column_mut(0).fill(5.5);
        a.slice_mut(ndarray::s![3.min(ny)..12.min(ny), nx - 1])
            .fill(-0.0);
        a.slice_mut(ndarray::s![4.min(ny)..10.min(ny), nx - 1])
            .fill(0.0);
        let mut set = |y: usize, x: usize, v: f32| {
            if y < ny && x < nx {
                a[[y, x]] = v;
            }
        };
        set(ny / 2, 3, f32::NAN);
        set(ny / 2, 4, f32::NAN);
        for x in 5..8 {
            set(2, x, f32::INFINITY);
        }
        for k in 0..4 {
            set(1 + k, 2, 100.0);
            set(k, 20, 100.0);
        }
        a
    }

    /// The run-based masks equal the direct ones (rows, columns, blocks, grown rectangles and
    /// the dilation fallback), also for column-major input.
    #[test]
    fn masks_match_reference() {
        for (seed, (ny, nx)) in [(1, (40, 70)), (2, (67, 33)), (3, (5, 200)), (4, (150, 3))] {
            let a = plateaus(ny, nx, seed);
            let mut f = Array2::<f32>::zeros((ny, nx).f());
            f.assign(&a);
            for v in [a.view(), f.view()] {
                for min_run in [0, 2, 3, 8, 1000] {
                    for grow in [0, 1, 2, 30] {
                        assert_eq!(
                            flat_run_mask(&v, min_run, grow),
                            reference::flat_run_mask(&v, min_run, grow),
                            "flat seed {seed} run {min_run} grow {grow}"
                        );
                    }
                }
                for level in [None, Some(7.5), Some(0.0), Some(-1.0), Some(f64::INFINITY)] {
                    for grow in [0, 1, 5, 40] {
                        assert_eq!(
                            saturation_mask(&v, level, grow),
                            reference::saturation_mask(&v, level, grow),
                            "saturation seed {seed} level {level:?} grow {grow}"
                        );
                    }
                }
            }
        }
        let empty = Array2::<f32>::zeros((0, 5));
        assert_eq!(flat_run_mask(&empty.view(), 8, 2).dim(), (0, 5));
        assert_eq!(saturation_mask(&empty.view(), None, 2).dim(), (0, 5));
    }
}
