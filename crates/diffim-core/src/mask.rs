//! Mask conventions: `true` = bad pixel.

use ndarray::{Array2, ArrayView2, Axis, Zip};
use rayon::prelude::*;

/// Bad-pixel mask of the non-finite pixels (NaN, +-Inf) of an image, OR-ed with an optional
/// input mask of the same shape.
///
/// # Panics
/// If `mask` has a different shape from `image` (a caller bug; validate shapes at the I/O edge).
pub fn finite_mask(image: &ArrayView2<f32>, mask: Option<&ArrayView2<bool>>) -> Array2<bool> {
    // One parallel pass, written straight into the new array.
    match mask {
        Some(m) => {
            assert_eq!(
                m.dim(),
                image.dim(),
                "finite_mask: mask shape differs from image"
            );
            Zip::from(image)
                .and(m)
                .par_map_collect(|&v, &b| !v.is_finite() || b)
        }
        None => Zip::from(image).par_map_collect(|&v| !v.is_finite()),
    }
}

/// Grows a mask by a square of half-width `r` pixels (binary dilation); separable, O(N).
pub fn dilate(mask: &ArrayView2<bool>, r: usize) -> Array2<bool> {
    if r == 0 {
        return mask.to_owned();
    }
    let (ny, nx) = mask.dim();
    let mut tmp = Array2::from_elem((ny, nx), false);
    // Horizontal pass: running count along each row (rows in parallel).
    tmp.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(mask.axis_iter(Axis(0)).into_par_iter())
        .for_each(|(mut out, row)| {
            let mut count = 0usize;
            for x in 0..(nx + r) {
                if x < nx && row[x] {
                    count += 1;
                }
                if x > 2 * r && row[x - 2 * r - 1] {
                    count -= 1;
                }
                if x >= r && x - r < nx {
                    out[x - r] = count > 0;
                }
            }
        });
    // Vertical pass: running counts per column, swept row by row (cache friendly), over
    // blocks of columns in parallel.
    let mut out = Array2::from_elem((ny, nx), false);
    const COLS: usize = 512;
    out.axis_chunks_iter_mut(Axis(1), COLS)
        .into_par_iter()
        .zip(tmp.axis_chunks_iter(Axis(1), COLS).into_par_iter())
        .for_each(|(mut o, t)| {
            let w = t.ncols();
            let mut count = vec![0u32; w];
            for y in 0..(ny + r) {
                if y < ny {
                    for (c, &b) in count.iter_mut().zip(t.row(y)) {
                        *c += b as u32;
                    }
                }
                if y > 2 * r {
                    for (c, &b) in count.iter_mut().zip(t.row(y - 2 * r - 1)) {
                        *c -= b as u32;
                    }
                }
                if y >= r && y - r < ny {
                    for (d, &c) in o.row_mut(y - r).iter_mut().zip(&count) {
                        *d = c > 0;
                    }
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_inf_are_masked() {
        let img = ndarray::arr2(&[[1.0, f32::NAN], [f32::INFINITY, 2.0]]);
        let m = ndarray::arr2(&[[true, false], [false, false]]);
        let out = finite_mask(&img.view(), Some(&m.view()));
        assert_eq!(out, ndarray::arr2(&[[true, true], [true, false]]));
    }

    #[test]
    fn dilation_matches_brute_force() {
        let m = Array2::from_shape_fn((9, 11), |(y, x)| (y * 7 + x * 3) % 17 == 0);
        for r in 0..3usize {
            let d = dilate(&m.view(), r);
            for y in 0..9isize {
                for x in 0..11isize {
                    let mut any = false;
                    for j in -(r as isize)..=(r as isize) {
                        for i in -(r as isize)..=(r as isize) {
                            let (yy, xx) = (y + j, x + i);
                            if (0..9).contains(&yy) && (0..11).contains(&xx) {
                                any |= m[[yy as usize, xx as usize]];
                            }
                        }
                    }
                    assert_eq!(d[[y as usize, x as usize]], any, "r={r} at ({y},{x})");
                }
            }
        }
    }
}
