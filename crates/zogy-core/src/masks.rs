//! Bad-pixel masks that ZOGY inputs need and that headers rarely describe: hard saturation
//! (also without a `SATURATE` card), flat fill regions left by resampling/alignment, and
//! cosmic-ray / hot pixels sharper than the PSF. Generic helpers (candidates for
//! `diffim-core::mask`).

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

/// Pixels in runs of at least `min_run` identical values along a row or a column (the
/// constant fill of resampled/aligned frames' borders, dead columns, clipped plateaus), grown
/// by `grow` pixels (the partly filled pixels next to them).
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
mod tests {
    use super::*;
    use diffim_core::psf::gaussian_stamp;

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
}
