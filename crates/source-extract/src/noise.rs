//! Per-pixel noise model (STDPipe `err=True`) and the separable convolution it shares with
//! the matched filter.

use crate::{Background, ExtractError, check_shape};
use ndarray::{Array2, ArrayView2, Axis, Zip};
use rayon::prelude::*;

/// Parameters of [`noise_model`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NoiseParams {
    /// Sigma (pixels) of the Gaussian that smooths `image - background` before it enters the
    /// Poisson term, so that the noise of the source estimate itself stays small; 0 = no
    /// smoothing. Default 1.0 (the kernel is truncated at 3 sigma and renormalised over good
    /// pixels).
    pub smooth_sigma: f64,
}

impl Default for NoiseParams {
    fn default() -> Self {
        Self { smooth_sigma: 1.0 }
    }
}

/// Per-pixel noise RMS (ADU): `sqrt(bg_rms^2 + max(0, smooth(image - bg)) / gain)`.
///
/// `gain` is in e-/ADU; `f64::INFINITY` drops the source (Poisson) term. Masked and
/// non-finite pixels get the background RMS alone (they carry no usable signal; keep using
/// the mask to exclude them).
///
/// # Errors
/// [`ExtractError::InvalidGain`] when `gain` is not positive (or NaN); shape errors when the
/// background or mask does not match the image; [`ExtractError::InvalidParameter`] for a
/// negative or non-finite `smooth_sigma`.
pub fn noise_model(
    image: &ArrayView2<f32>,
    background: &Background,
    mask: Option<&ArrayView2<bool>>,
    gain: f64,
    params: &NoiseParams,
) -> Result<Array2<f32>, ExtractError> {
    let dim = image.dim();
    check_shape("mask", dim, mask)?;
    check_shape("background", dim, Some(&background.background.view()))?;
    check_shape("background rms", dim, Some(&background.rms.view()))?;
    if gain.is_nan() || gain <= 0.0 {
        return Err(ExtractError::InvalidGain { gain });
    }
    if !(params.smooth_sigma >= 0.0 && params.smooth_sigma.is_finite()) {
        return Err(ExtractError::InvalidParameter {
            name: "smooth_sigma",
            value: params.smooth_sigma,
            reason: "must be finite and >= 0",
        });
    }
    let good = good_mask(image, mask);
    let mut noise = background.rms.mapv(|r| r * r);
    if gain.is_finite() {
        let mut resid = Array2::<f32>::zeros(dim);
        Zip::from(&mut resid)
            .and(image)
            .and(&background.background)
            .and(&good)
            .for_each(|r, &i, &b, &g| {
                if g {
                    *r = i - b;
                }
            });
        let smooth = if params.smooth_sigma > 0.0 {
            let k = gaussian_kernel_1d(params.smooth_sigma);
            let w = good.mapv(|g| if g { 1.0f32 } else { 0.0 });
            let num = convolve_separable(&resid.view(), &k, &k);
            let den = convolve_separable(&w.view(), &k, &k);
            let mut s = num;
            Zip::from(&mut s).and(&den).for_each(|s, &d| {
                *s = if d > 1e-6 { *s / d } else { 0.0 };
            });
            s
        } else {
            resid
        };
        let inv_gain = (1.0 / gain) as f32;
        Zip::from(&mut noise)
            .and(&smooth)
            .and(&good)
            .for_each(|n, &s, &g| {
                if g {
                    *n += s.max(0.0) * inv_gain;
                }
            });
    }
    noise.mapv_inplace(f32::sqrt);
    Ok(noise)
}

/// `true` where a pixel is finite and not masked.
pub(crate) fn good_mask(image: &ArrayView2<f32>, mask: Option<&ArrayView2<bool>>) -> Array2<bool> {
    let mut g = image.mapv(f32::is_finite);
    if let Some(m) = mask {
        Zip::from(&mut g).and(m).for_each(|g, &m| *g &= !m);
    }
    g
}

/// Unit-sum 1-D Gaussian of standard deviation `sigma`, truncated at `max(1, ceil(3 sigma))`.
pub(crate) fn gaussian_kernel_1d(sigma: f64) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as i64;
    let k: Vec<f64> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.iter().map(|v| (v / s) as f32).collect()
}

/// Separable "same" convolution with zero padding: rows with `kx`, then columns with `ky`
/// (odd lengths). Parallel over rows.
pub(crate) fn convolve_separable(img: &ArrayView2<f32>, ky: &[f32], kx: &[f32]) -> Array2<f32> {
    let (ny, nx) = img.dim();
    let rx = kx.len() / 2;
    let ry = ky.len() / 2;
    let mut tmp = Array2::<f32>::zeros((ny, nx));
    tmp.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(y, mut row)| {
            let src = img.row(y);
            for x in 0..nx {
                let lo = x.saturating_sub(rx);
                let hi = (x + rx).min(nx - 1);
                let mut acc = 0.0f32;
                for xx in lo..=hi {
                    acc += kx[xx + rx - x] * src[xx];
                }
                row[x] = acc;
            }
        });
    let mut out = Array2::<f32>::zeros((ny, nx));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(y, mut row)| {
            let lo = y.saturating_sub(ry);
            let hi = (y + ry).min(ny - 1);
            for yy in lo..=hi {
                let w = ky[yy + ry - y];
                let src = tmp.row(yy);
                row.zip_mut_with(&src, |o, &s| *o += w * s);
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_convolution_matches_direct_sum() {
        let img = Array2::from_shape_fn((9, 11), |(y, x)| ((y * 31 + x * 17) % 13) as f32);
        let k = gaussian_kernel_1d(0.8);
        let r = k.len() as i64 / 2;
        let out = convolve_separable(&img.view(), &k, &k);
        for y in 0..9i64 {
            for x in 0..11i64 {
                let mut s = 0.0f64;
                for dy in -r..=r {
                    for dx in -r..=r {
                        let (yy, xx) = (y + dy, x + dx);
                        if (0..9).contains(&yy) && (0..11).contains(&xx) {
                            s += (k[(dy + r) as usize] * k[(dx + r) as usize]) as f64
                                * img[[yy as usize, xx as usize]] as f64;
                        }
                    }
                }
                assert!((out[[y as usize, x as usize]] as f64 - s).abs() < 1e-4);
            }
        }
    }
}
