//! Input preparation: inpainting of bad pixels, background RMS estimates.

use crate::cosmic::row_major;
use diffim_core::stats::{mad_std, median_in_place};
use ndarray::{Array2, ArrayView2, Axis, Zip, s};
use rayon::prelude::*;

/// Replaces the pixels where `bad` is true (in place) by the mean of the good pixels in a square box
/// around them, growing the box (half-widths 2, 4, 8, ...) until every bad pixel has a good
/// neighbour: a smooth local-background fill rather than zeros. Good pixels are expected to be
/// finite. Small boxes are summed directly; once the remaining bad pixels' boxes would cost
/// more than two passes over the image, summed-area tables finish them in O(N). Returns the
/// number of pixels filled.
///
/// # Panics
/// When `bad` does not have the shape of `img` (a caller bug).
pub fn inpaint(img: &mut Array2<f32>, bad: &ArrayView2<bool>) -> usize {
    let (ny, nx) = img.dim();
    assert_eq!(bad.dim(), (ny, nx), "bad-pixel mask shape");
    let bad_v = row_major(bad);
    // The bad pixels in raster order; blocks without any are skipped after one test.
    const BLOCK: usize = 64;
    let mut todo: Vec<usize> = Vec::new();
    for (b, blk) in bad_v.chunks(BLOCK).enumerate() {
        if blk.iter().fold(false, |a, &v| a | v) {
            todo.extend((0..blk.len()).filter(|&o| blk[o]).map(|o| b * BLOCK + o));
        }
    }
    let n_bad = todo.len();
    if n_bad == 0 || n_bad == ny * nx {
        if n_bad == ny * nx {
            img.fill(0.0);
        }
        return n_bad;
    }
    match img.as_slice_mut() {
        Some(v) => fill_bad(v, &bad_v, ny, nx, todo),
        None => {
            let mut v: Vec<f32> = img.iter().copied().collect();
            fill_bad(&mut v, &bad_v, ny, nx, todo);
            img.iter_mut().zip(v).for_each(|(a, b)| *a = b);
        }
    }
    n_bad
}

/// [`inpaint`] on row-major `img` and `bad`, whose bad pixels are `todo` (not all).
fn fill_bad(img: &mut [f32], bad: &[bool], ny: usize, nx: usize, mut todo: Vec<usize>) {
    let clip = |y: usize, x: usize, r: usize| {
        let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(ny));
        (y0, y1, x.saturating_sub(r), (x + r + 1).min(nx))
    };
    // Only bad pixels are written and only good ones are read, so the order of the fills
    // does not matter.
    let mut r = 2usize;
    while !todo.is_empty() && todo.len().saturating_mul((2 * r + 1).pow(2)) <= 2 * ny * nx {
        todo.retain(|&k| {
            let (y0, y1, x0, x1) = clip(k / nx, k % nx, r);
            let (mut s, mut c) = (0.0f64, 0usize);
            for y in y0..y1 {
                let row = y * nx;
                for (&v, &b) in img[row + x0..row + x1].iter().zip(&bad[row + x0..row + x1]) {
                    s += if b { 0.0 } else { v as f64 };
                    c += !b as usize;
                }
            }
            if c > 0 {
                img[k] = (s / c as f64) as f32;
                false
            } else {
                true
            }
        });
        r *= 2;
    }
    if todo.is_empty() {
        return;
    }
    // Summed-area tables of good values and counts, (ny+1, nx+1): prefix sums along each
    // row (rows in parallel), then down the columns (row-vector additions).
    let mut sv = Array2::<f64>::zeros((ny + 1, nx + 1));
    let mut sc = Array2::<f64>::zeros((ny + 1, nx + 1));
    sv.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(sc.axis_iter_mut(Axis(0)).into_par_iter())
        .skip(1)
        .zip(img.par_chunks(nx))
        .zip(bad.par_chunks(nx))
        .for_each(|(((mut rv, mut rc), row), brow)| {
            let (mut acc_v, mut acc_c) = (0.0, 0.0);
            for x in 0..nx {
                if !brow[x] {
                    acc_v += row[x] as f64;
                    acc_c += 1.0;
                }
                rv[x + 1] = acc_v;
                rc[x + 1] = acc_c;
            }
        });
    for t in [&mut sv, &mut sc] {
        for y in 1..=ny {
            let (prev, mut cur) = t.multi_slice_mut((s![y - 1, ..], s![y, ..]));
            cur += &prev;
        }
    }
    let boxsum = |t: &Array2<f64>, y: usize, x: usize, r: usize| {
        let (y0, y1, x0, x1) = clip(y, x, r);
        t[[y1, x1]] - t[[y0, x1]] - t[[y1, x0]] + t[[y0, x0]]
    };
    while !todo.is_empty() {
        todo.retain(|&k| {
            let (y, x) = (k / nx, k % nx);
            let c = boxsum(&sc, y, x, r);
            if c > 0.5 {
                img[k] = (boxsum(&sv, y, x, r) / c) as f32;
                false
            } else {
                true
            }
        });
        r *= 2;
    }
}

/// Background RMS: the given value, else the median of the noise map over good pixels, else the
/// MAD standard deviation of the good pixels of the image.
pub(crate) fn background_sigma(
    given: Option<f64>,
    image: &ArrayView2<f32>,
    noise: Option<&ArrayView2<f32>>,
    bad: &ArrayView2<bool>,
) -> Option<f64> {
    if let Some(s) = given {
        return Some(s);
    }
    if let Some(nm) = noise {
        let mut v: Vec<f64> = Zip::from(nm).and(bad).fold(Vec::new(), |mut acc, &n, &b| {
            if !b {
                acc.push(n as f64);
            }
            acc
        });
        return median_in_place(&mut v);
    }
    // Subsample large images: the MAD of ~1e6 pixels is plenty.
    let step = ((image.len() / 1_000_000) as f64).sqrt().ceil().max(1.0) as usize;
    mad_std(
        image
            .slice(ndarray::s![..;step, ..;step])
            .iter()
            .zip(bad.slice(ndarray::s![..;step, ..;step]).iter())
            .filter(|(_, b)| !**b)
            .map(|(v, _)| *v as f64),
    )
}

#[cfg(test)]
mod reference {
    //! [`super::inpaint`] by summed-area tables alone.
    use super::*;

    pub fn inpaint(img: &mut Array2<f32>, bad: &ArrayView2<bool>) -> usize {
        let (ny, nx) = img.dim();
        let n_bad = bad.iter().filter(|&&b| b).count();
        if n_bad == 0 || n_bad == ny * nx {
            if n_bad == ny * nx {
                img.fill(0.0);
            }
            return n_bad;
        }
        let mut sv = Array2::<f64>::zeros((ny + 1, nx + 1));
        let mut sc = Array2::<f64>::zeros((ny + 1, nx + 1));
        for y in 0..ny {
            for x in 0..nx {
                let (v, c) = if bad[[y, x]] {
                    (0.0, 0.0)
                } else {
                    (img[[y, x]] as f64, 1.0)
                };
                sv[[y + 1, x + 1]] = sv[[y + 1, x]] + sv[[y, x + 1]] - sv[[y, x]] + v;
                sc[[y + 1, x + 1]] = sc[[y + 1, x]] + sc[[y, x + 1]] - sc[[y, x]] + c;
            }
        }
        let boxsum = |t: &Array2<f64>, y: usize, x: usize, r: usize| {
            let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(ny));
            let (x0, x1) = (x.saturating_sub(r), (x + r + 1).min(nx));
            t[[y1, x1]] - t[[y0, x1]] - t[[y1, x0]] + t[[y0, x0]]
        };
        let mut todo: Vec<(usize, usize)> = bad
            .indexed_iter()
            .filter(|(_, b)| **b)
            .map(|(p, _)| p)
            .collect();
        let mut r = 2usize;
        while !todo.is_empty() {
            todo.retain(|&(y, x)| {
                let c = boxsum(&sc, y, x, r);
                if c > 0.5 {
                    img[[y, x]] = (boxsum(&sv, y, x, r) / c) as f32;
                    false
                } else {
                    true
                }
            });
            r *= 2;
        }
        n_bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inpaint_fills_with_local_mean() {
        let mut img = Array2::from_shape_fn((20, 20), |(y, _)| y as f32);
        let mut bad = Array2::from_elem((20, 20), false);
        for y in 8..12 {
            for x in 8..12 {
                bad[[y, x]] = true;
                img[[y, x]] = f32::NAN;
            }
        }
        let n = inpaint(&mut img, &bad.view());
        assert_eq!(n, 16);
        assert!(img.iter().all(|v| v.is_finite()));
        // A linear ramp in y is reproduced to within the box asymmetry.
        assert!((img[[9, 9]] - 9.0).abs() < 1.5 && (img[[10, 10]] - 10.0).abs() < 1.5);
    }

    /// Direct box sums and tables give the same fills as tables alone (to float rounding),
    /// from a few scattered bad pixels (direct sums only) to big holes (tables), also for
    /// column-major input.
    #[test]
    fn inpaint_matches_tables() {
        use ndarray::ShapeBuilder;
        let (ny, nx) = (61, 83);
        let img = Array2::from_shape_fn((ny, nx), |(y, x)| {
            100.0 + ((x * 7919 + y * 104_729) % 1000) as f32 * 0.37 - 0.05 * (x * y) as f32
        });
        let mut masks = Vec::new();
        let mut m = Array2::from_shape_fn((ny, nx), |(y, x)| (x * 31 + y * 17) % 53 == 0);
        m[[0, 0]] = true;
        m[[ny - 1, nx - 1]] = true;
        // A hole with one good pixel: its neighbours' 5x5 boxes hold just that one.
        m.slice_mut(ndarray::s![30..39, 10..19]).fill(true);
        m[[34, 14]] = false;
        masks.push(m.clone());
        m.slice_mut(ndarray::s![5..16, 40..60]).fill(true);
        masks.push(m.clone());
        m.slice_mut(ndarray::s![20..58, ..]).fill(true);
        masks.push(m);
        for bad in &masks {
            let mut a = img.clone();
            let mut b = img.clone();
            for (a, &bd) in a.iter_mut().zip(bad) {
                if bd {
                    *a = f32::NAN;
                }
            }
            b.assign(&a);
            let mut f = Array2::<f32>::zeros((ny, nx).f());
            f.assign(&a);
            let n = inpaint(&mut a, &bad.view());
            assert_eq!(n, reference::inpaint(&mut b, &bad.view()));
            assert_eq!(inpaint(&mut f, &bad.view()), n);
            for ((&x, &y), &z) in a.iter().zip(&b).zip(&f) {
                assert!((x - y).abs() <= 1e-5 * y.abs(), "{x} vs {y}");
                assert_eq!(x.to_bits(), z.to_bits());
            }
        }
    }
}
