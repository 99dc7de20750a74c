//! Mask conventions: `true` = bad pixel.

use ndarray::{Array2, ArrayView2, Zip};

/// Bad-pixel mask of the non-finite pixels (NaN, +-Inf) of an image, OR-ed with an optional
/// input mask of the same shape.
///
/// # Panics
/// If `mask` has a different shape from `image` (a caller bug; validate shapes at the I/O edge).
pub fn finite_mask(image: &ArrayView2<f32>, mask: Option<&ArrayView2<bool>>) -> Array2<bool> {
    let mut out = image.mapv(|v| !v.is_finite());
    if let Some(m) = mask {
        assert_eq!(
            m.dim(),
            image.dim(),
            "finite_mask: mask shape differs from image"
        );
        Zip::from(&mut out).and(m).for_each(|o, &b| *o |= b);
    }
    out
}

/// Grows a mask by a square of half-width `r` pixels (binary dilation); separable, O(N).
pub fn dilate(mask: &ArrayView2<bool>, r: usize) -> Array2<bool> {
    if r == 0 {
        return mask.to_owned();
    }
    let (ny, nx) = mask.dim();
    let mut tmp = Array2::from_elem((ny, nx), false);
    // Horizontal pass with a running count.
    for y in 0..ny {
        let mut count = 0usize;
        for x in 0..(nx + r) {
            if x < nx && mask[[y, x]] {
                count += 1;
            }
            if x > 2 * r && mask[[y, x - 2 * r - 1]] {
                count -= 1;
            }
            if x >= r && x - r < nx {
                tmp[[y, x - r]] = count > 0;
            }
        }
    }
    let mut out = Array2::from_elem((ny, nx), false);
    for x in 0..nx {
        let mut count = 0usize;
        for y in 0..(ny + r) {
            if y < ny && tmp[[y, x]] {
                count += 1;
            }
            if y > 2 * r && tmp[[y - 2 * r - 1, x]] {
                count -= 1;
            }
            if y >= r && y - r < ny {
                out[[y - r, x]] = count > 0;
            }
        }
    }
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
