//! Input preparation: inpainting of bad pixels, background RMS estimates.

use diffim_core::stats::{mad_std, median_in_place};
use ndarray::{Array2, ArrayView2, Axis, Zip, s};
use rayon::prelude::*;

/// Replaces the pixels where `bad` is true (in place) by the mean of the good pixels in a square box
/// around them, growing the box (half-widths 2, 4, 8, ...) until every bad pixel has a good
/// neighbour: a smooth local-background fill rather than zeros. Summed-area tables make each
/// pass O(N). Returns the number of pixels filled.
pub fn inpaint(img: &mut Array2<f32>, bad: &ArrayView2<bool>) -> usize {
    let (ny, nx) = img.dim();
    let n_bad = bad.iter().filter(|&&b| b).count();
    if n_bad == 0 || n_bad == ny * nx {
        if n_bad == ny * nx {
            img.fill(0.0);
        }
        return n_bad;
    }
    // Summed-area tables of good values and counts, (ny+1, nx+1): prefix sums along each
    // row (rows in parallel), then down the columns (row-vector additions).
    let mut sv = Array2::<f64>::zeros((ny + 1, nx + 1));
    let mut sc = Array2::<f64>::zeros((ny + 1, nx + 1));
    sv.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(sc.axis_iter_mut(Axis(0)).into_par_iter())
        .skip(1)
        .zip(img.axis_iter(Axis(0)).into_par_iter())
        .zip(bad.axis_iter(Axis(0)).into_par_iter())
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
}
