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
    let mut noise = Array2::<f32>::zeros(dim);
    if !gain.is_finite() {
        Zip::from(&mut noise)
            .and(&background.rms)
            .par_for_each(|n, &r| *n = (r * r).sqrt());
        return Ok(noise);
    }
    let mut resid = Array2::<f32>::zeros(dim);
    Zip::from(&mut resid)
        .and(image)
        .and(&background.background)
        .and(&good)
        .par_for_each(|r, &i, &b, &g| {
            if g {
                *r = i - b;
            }
        });
    let inv_gain = (1.0 / gain) as f32;
    // noise = sqrt(rms^2 + max(0, s) / gain) on good pixels, sqrt(rms^2) elsewhere.
    let finish = |n: &mut f32, r: f32, s: f32, g: bool| {
        let mut v = r * r;
        if g {
            v += s.max(0.0) * inv_gain;
        }
        *n = v.sqrt();
    };
    if params.smooth_sigma > 0.0 {
        let k = gaussian_kernel_1d(params.smooth_sigma);
        let num = convolve_separable(&resid.view(), &k, &k);
        // The normalisation (the kernel summed over good pixels) depends on the row only
        // through the distance to the top / bottom edge when every pixel is good.
        let all_good = good.as_slice().is_some_and(|g| g.iter().all(|&g| g));
        let (ny, nx) = dim;
        let ry = k.len() / 2;
        let den = if all_good && ny > 2 * ry {
            let ones = Array2::<f32>::ones((2 * ry + 1, nx));
            DenMap::Rows {
                rows: convolve_separable(&ones.view(), &k, &k),
                ny,
                ry,
            }
        } else {
            let w = good.mapv(|g| if g { 1.0f32 } else { 0.0 });
            DenMap::Full(convolve_separable(&w.view(), &k, &k))
        };
        Zip::indexed(&mut noise)
            .and(&num)
            .and(&background.rms)
            .and(&good)
            .par_for_each(|(y, x), n, &s, &r, &g| {
                let d = den.get(y, x);
                let s = if d > 1e-6 { s / d } else { 0.0 };
                finish(n, r, s, g);
            });
    } else {
        Zip::from(&mut noise)
            .and(&resid)
            .and(&background.rms)
            .and(&good)
            .par_for_each(|n, &s, &r, &g| finish(n, r, s, g));
    }
    Ok(noise)
}

/// Result of [`estimate_gain`]: an effective gain from the sky level and its noise.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GainEstimate {
    /// Effective gain `sky / sky_rms^2`, e-/ADU.
    pub gain: f64,
    /// Sky level, ADU: median of the iteratively 3-sigma-clipped good pixels off sources.
    pub sky: f64,
    /// Pixel-to-pixel RMS of the sky, ADU: the 3-sigma-clipped standard deviation of the
    /// differences of good pixels off sources [`GAIN_PAIR_LAG`] px apart (along x and y), divided by
    /// `sqrt(2)` and corrected for the clipping (a Gaussian clipped iteratively at 3 sigma
    /// keeps 0.9848 of its standard deviation).
    pub sky_rms: f64,
    /// Number of pixel differences kept by the clipping that measured `sky_rms`.
    pub n_pixels: usize,
}

/// Distance (pixels, along x and along y) between the two pixels of each difference that
/// [`estimate_gain`] measures the sky noise on: beyond the reach of resampling kernels
/// (bilinear to Lanczos-3 correlate neighbours up to 3 px apart) and short enough that smooth
/// background gradients hardly contribute.
pub const GAIN_PAIR_LAG: usize = 4;

/// Fewest pixel differences [`estimate_gain`] measures the sky noise on.
pub const GAIN_MIN_PIXELS: usize = 1000;

/// Cap on the pixels sampled by [`estimate_gain`]: larger images are measured on evenly
/// spaced bands of [`GAIN_BAND_ROWS`] rows; 2^17 samples measure the RMS to ~0.3 %.
const GAIN_MAX_SAMPLES: usize = 1 << 17;

/// Height of the row bands of a large image in [`estimate_gain`].
const GAIN_BAND_ROWS: usize = 32;

/// Standard deviation kept by iterative 3-sigma clipping (about the median, until no value is
/// rejected) of a Gaussian, in units of its sigma: the fixed point of
/// `s = g(3 s)` with `g(c)^2 = 1 - 2 c phi(c) / (2 Phi(c) - 1)`.
const CLIP3_STD_FACTOR: f64 = 0.984_846_186;

/// Sources are masked where the image smoothed by a Gaussian of this sigma (px) is above the
/// sky by [`GAIN_SOURCE_NSIGMA`] times the smoothed noise.
const GAIN_SOURCE_SMOOTH: f64 = 1.0;

/// Threshold of the source mask of [`estimate_gain`], in sigmas of the smoothed sky (about
/// 1.1 sigma of a pixel for [`GAIN_SOURCE_SMOOTH`] = 1): high enough that noise alone
/// hardly ever crosses it (3e-5 of the pixels), so that the sky distribution is not truncated.
const GAIN_SOURCE_NSIGMA: f64 = 4.0;

/// Effective gain (e-/ADU) of a raw image from its sky: `gain = sky / sky_rms^2`, valid when
/// the sky noise is Poisson noise of the sky itself.
///
/// Two passes over the good pixels (finite, not masked): the first measures `sky` (median
/// after iterative 3-sigma clipping) and `sky_rms` from differences of pixels
/// [`GAIN_PAIR_LAG`] px apart along x and y (3-sigma-clipped `std / sqrt 2`, corrected for the
/// clipping), so that large-scale structure (gradients, a big galaxy) does not inflate it. The
/// second pass measures both again without the sources: pixels where the image smoothed by a
/// Gaussian of sigma 1 px exceeds the sky by 4 sigma of the smoothed noise, grown by
/// [`GAIN_PAIR_LAG`] px (star wings otherwise add 3-10 % to the variance on sky-sim images).
/// Images larger than about a megapixel are measured on evenly spaced bands of 64 rows.
///
/// Assumptions, and what breaks them:
/// - the bias / pedestal is removed (pixel value 0 = no light): a residual pedestal `p`
///   scales the estimate by `sky / (sky - p)`; a background-subtracted image is refused;
/// - read noise and dark current are ignored: they add variance, so the estimate is *low*
///   (`sky / (sky / g + rn^2 / g^2)` for read noise `rn` in electrons);
/// - the noise is white: resampled (aligned, reprojected), smoothed or coadded images have
///   pixel-to-pixel correlated noise of lower variance, so the estimate is *high*.
///
/// Measured: on sky-sim 256^2 images (default pair, seed 7) 0.966 / 3.881 against the
/// read-noise-biased expectations 0.976 / 3.918 (-1.0 %; without the source mask -5 %). On
/// the ProperImage pair (`aligned_eso085-030-004/005.fit`, no GAIN keyword): sky 8130 / 8248
/// ADU, `sky_rms` 71.1 / 75.9 ADU, gain 1.61 / 1.43 e-/ADU; data/README.md's 1.52 / 1.35 come
/// from SEP's mesh RMS (73.3 / 78.1 ADU), which keeps the faint sources of this crowded
/// field; the clipped standard deviation of the pixels (87.8 / 92.2 ADU, inflated by the
/// galaxy and the background gradients) would give 1.06 / 0.97.
///
/// # Errors
/// [`ExtractError::EmptyImage`]; [`ExtractError::ShapeMismatch`] for a mask of another shape;
/// [`ExtractError::NoGoodPixels`] when every pixel is masked or non-finite;
/// [`ExtractError::GainUnmeasurable`] when fewer than [`GAIN_MIN_PIXELS`] differences are
/// usable, when the sky is not clearly positive (`sky < 5 sky_rms`: a background-subtracted
/// image, or a zero-noise one) or when the gain is not finite or outside [0.01, 1000] e-/ADU.
pub fn estimate_gain(
    image: &ArrayView2<f32>,
    mask: Option<&ArrayView2<bool>>,
) -> Result<GainEstimate, ExtractError> {
    let (ny, nx) = image.dim();
    if ny == 0 || nx == 0 {
        return Err(ExtractError::EmptyImage { ny, nx });
    }
    check_shape("mask", (ny, nx), mask)?;
    let good = good_mask(image, mask);
    if !good.iter().any(|&g| g) {
        return Err(ExtractError::NoGoodPixels { npix: ny * nx });
    }
    // Row bands: the whole image, or evenly spaced bands of a large one.
    let bands: Vec<(usize, usize)> = if ny * nx <= GAIN_MAX_SAMPLES {
        vec![(0, ny)]
    } else {
        let h = GAIN_BAND_ROWS.min(ny);
        let n = GAIN_MAX_SAMPLES.div_ceil(h * nx).max(1);
        (0..n)
            .map(|i| {
                let y0 = if n > 1 { i * (ny - h) / (n - 1) } else { 0 };
                (y0, y0 + h)
            })
            .collect()
    };
    let measure = |sources: Option<(f64, f64)>| {
        let mut values = Vec::new();
        let mut diffs = Vec::new();
        for &(y0, y1) in &bands {
            let img = image.slice(ndarray::s![y0..y1, ..]);
            let g = good.slice(ndarray::s![y0..y1, ..]);
            let keep = match sources {
                Some((sky, rms)) => {
                    let src = source_mask(&img, &g, sky, rms);
                    let mut k = g.to_owned();
                    Zip::from(&mut k).and(&src).for_each(|k, &s| *k &= !s);
                    k
                }
                None => g.to_owned(),
            };
            sky_samples(&img, &keep.view(), &mut values, &mut diffs);
        }
        let sky =
            diffim_core::stats::sigma_clip(&mut values, 3.0, 50).map_or(f64::NAN, |s| s.median);
        let clipped = diffim_core::stats::sigma_clip(&mut diffs, 3.0, 50);
        let n_pixels = clipped.map_or(0, |c| c.n);
        let sky_rms = clipped.map_or(f64::NAN, |c| c.std / (2f64.sqrt() * CLIP3_STD_FACTOR));
        let fail = move |reason: &'static str| ExtractError::GainUnmeasurable {
            sky,
            sky_rms,
            n_pixels,
            reason,
        };
        if diffs.len() < GAIN_MIN_PIXELS {
            return Err(fail("too few good pixel pairs"));
        }
        if !(sky_rms > 0.0 && sky.is_finite() && sky >= 5.0 * sky_rms) {
            return Err(fail(
                "the sky is not clearly positive (sky < 5 sky RMS: background-subtracted?)",
            ));
        }
        Ok((sky, sky_rms, n_pixels, fail))
    };
    let (sky0, rms0, _, _) = measure(None)?;
    let (sky, sky_rms, n_pixels, fail) = measure(Some((sky0, rms0)))?;
    let gain = sky / (sky_rms * sky_rms);
    if !(gain.is_finite() && (0.01..=1000.0).contains(&gain)) {
        return Err(fail("the gain is outside [0.01, 1000] e-/ADU"));
    }
    Ok(GainEstimate {
        gain,
        sky,
        sky_rms,
        n_pixels,
    })
}

/// Pixels of `img` on sources, for [`estimate_gain`]: the image (bad pixels set to the sky)
/// smoothed by a Gaussian above the local background (SExtractor mesh, 64 px boxes; the
/// constant `sky` if that fails) by `GAIN_SOURCE_NSIGMA` times the smoothed noise, grown by
/// [`GAIN_PAIR_LAG`].
fn source_mask(img: &ArrayView2<f32>, good: &ArrayView2<bool>, sky: f64, rms: f64) -> Array2<bool> {
    let k = gaussian_kernel_1d(GAIN_SOURCE_SMOOTH);
    // RMS of white noise after the separable kernel: sum of the squared 1-D weights.
    let noise_factor: f64 = k.iter().map(|&w| (w as f64).powi(2)).sum();
    let bad = good.mapv(|g| !g);
    let bg =
        crate::estimate_background(img, Some(&bad.view()), &crate::BackgroundParams::default())
            .ok()
            .map(|b| b.background);
    let mut fill = img.to_owned();
    Zip::from(&mut fill).and(good).for_each(|v, &g| {
        if !g {
            *v = sky as f32;
        }
    });
    let smooth = convolve_separable(&fill.view(), &k, &k);
    let dt = (GAIN_SOURCE_NSIGMA * noise_factor * rms) as f32;
    let src = match &bg {
        Some(b) => Zip::from(&smooth).and(b).map_collect(|&v, &b| v > b + dt),
        None => smooth.mapv(|v| v > sky as f32 + dt),
    };
    diffim_core::mask::dilate(&src.view(), GAIN_PAIR_LAG)
}

/// Appends the kept pixels of `img` to `values` and the differences of kept pixels
/// [`GAIN_PAIR_LAG`] apart (along x and along y) to `diffs`.
fn sky_samples(
    img: &ArrayView2<f32>,
    keep: &ArrayView2<bool>,
    values: &mut Vec<f64>,
    diffs: &mut Vec<f64>,
) {
    let (ny, nx) = img.dim();
    let lag = GAIN_PAIR_LAG;
    for y in 0..ny {
        for x in 0..nx {
            if !keep[[y, x]] {
                continue;
            }
            let v = img[[y, x]] as f64;
            values.push(v);
            if x + lag < nx && keep[[y, x + lag]] {
                diffs.push(v - img[[y, x + lag]] as f64);
            }
            if y + lag < ny && keep[[y + lag, x]] {
                diffs.push(v - img[[y + lag, x]] as f64);
            }
        }
    }
}

/// The smoothing normalisation of [`noise_model`]: a full map, or (no bad pixel) the
/// `2 ry + 1` distinct rows of the convolved all-ones image.
enum DenMap {
    Full(Array2<f32>),
    Rows {
        rows: Array2<f32>,
        ny: usize,
        ry: usize,
    },
}

impl DenMap {
    #[inline]
    fn get(&self, y: usize, x: usize) -> f32 {
        match self {
            DenMap::Full(d) => d[[y, x]],
            DenMap::Rows { rows, ny, ry } => {
                let yr = if y < *ry {
                    y
                } else if y + *ry >= *ny {
                    2 * *ry + 1 - (*ny - y)
                } else {
                    *ry
                };
                rows[[yr, x]]
            }
        }
    }
}

/// `true` where a pixel is finite and not masked.
pub(crate) fn good_mask(image: &ArrayView2<f32>, mask: Option<&ArrayView2<bool>>) -> Array2<bool> {
    let mut g = Array2::<bool>::from_elem(image.dim(), false);
    match mask {
        Some(m) => Zip::from(&mut g)
            .and(image)
            .and(m)
            .par_for_each(|g, &v, &m| *g = v.is_finite() && !m),
        None => Zip::from(&mut g)
            .and(image)
            .par_for_each(|g, &v| *g = v.is_finite()),
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
            let src_row = img.row(y);
            let owned: Vec<f32>;
            let src: &[f32] = match src_row.as_slice() {
                Some(s) => s,
                None => {
                    owned = src_row.to_vec();
                    &owned
                }
            };
            let conv = |x: usize| -> f32 {
                let lo = x.saturating_sub(rx);
                let hi = (x + rx).min(nx - 1);
                let mut acc = 0.0f32;
                for (xx, &s) in src.iter().enumerate().take(hi + 1).skip(lo) {
                    acc += kx[xx + rx - x] * s;
                }
                acc
            };
            match row.as_slice_mut() {
                // Interior pixels: the full kernel, accumulated tap by tap over the whole
                // interior (vectorisable) in the same order as the per-pixel sum: 0 + k0 s0 +
                // k1 s1 + ..., hence bitwise the same result.
                Some(out) if nx > 2 * rx => {
                    for x in (0..rx).chain(nx - rx..nx) {
                        out[x] = conv(x);
                    }
                    let m = nx - 2 * rx;
                    let inner = &mut out[rx..nx - rx];
                    inner.fill(0.0);
                    for (t, &k) in kx.iter().enumerate() {
                        for (o, &s) in inner.iter_mut().zip(&src[t..t + m]) {
                            *o += k * s;
                        }
                    }
                }
                _ => {
                    for x in 0..nx {
                        row[x] = conv(x);
                    }
                }
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

    /// The original separable convolution (per-pixel sums on 2-D indices), for equality.
    fn convolve_separable_ref(img: &ArrayView2<f32>, ky: &[f32], kx: &[f32]) -> Array2<f32> {
        let (ny, nx) = img.dim();
        let (rx, ry) = (kx.len() / 2, ky.len() / 2);
        let mut tmp = Array2::<f32>::zeros((ny, nx));
        for y in 0..ny {
            for x in 0..nx {
                let mut acc = 0.0f32;
                for xx in x.saturating_sub(rx)..=(x + rx).min(nx - 1) {
                    acc += kx[xx + rx - x] * img[[y, xx]];
                }
                tmp[[y, x]] = acc;
            }
        }
        let mut out = Array2::<f32>::zeros((ny, nx));
        for y in 0..ny {
            for yy in y.saturating_sub(ry)..=(y + ry).min(ny - 1) {
                let w = ky[yy + ry - y];
                for x in 0..nx {
                    out[[y, x]] += w * tmp[[yy, x]];
                }
            }
        }
        out
    }

    #[test]
    fn separable_convolution_is_bitwise_the_reference() {
        for &(ny, nx, sx, sy) in &[(9, 11, 0.8, 1.3), (30, 64, 1.0, 1.0), (5, 4, 2.0, 0.5)] {
            let img = Array2::from_shape_fn((ny, nx), |(y, x)| {
                ((y * 31 + x * 17) % 13) as f32 * 0.731 - 2.0
            });
            let (kx, ky) = (gaussian_kernel_1d(sx), gaussian_kernel_1d(sy));
            let a = convolve_separable(&img.view(), &ky, &kx);
            let b = convolve_separable_ref(&img.view(), &ky, &kx);
            assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
            // A non-contiguous (transposed) view takes the generic path.
            let t = img.t();
            let a = convolve_separable(&t, &ky, &kx);
            let b = convolve_separable_ref(&t, &ky, &kx);
            assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
        }
    }

    /// The original noise model (direct normalisation map, separate passes), for equality.
    fn noise_model_ref(
        image: &ArrayView2<f32>,
        background: &Background,
        mask: Option<&ArrayView2<bool>>,
        gain: f64,
        smooth_sigma: f64,
    ) -> Array2<f32> {
        let dim = image.dim();
        let mut g = image.mapv(f32::is_finite);
        if let Some(m) = mask {
            Zip::from(&mut g).and(m).for_each(|g, &m| *g &= !m);
        }
        let good = g;
        let mut noise = background.rms.mapv(|r| r * r);
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
        let smooth = if smooth_sigma > 0.0 {
            let k = gaussian_kernel_1d(smooth_sigma);
            let w = good.mapv(|g| if g { 1.0f32 } else { 0.0 });
            let mut s = convolve_separable_ref(&resid.view(), &k, &k);
            let den = convolve_separable_ref(&w.view(), &k, &k);
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
        noise.mapv_inplace(f32::sqrt);
        noise
    }

    #[test]
    fn noise_model_is_bitwise_the_reference() {
        let (ny, nx) = (37, 41);
        let image = Array2::from_shape_fn((ny, nx), |(y, x)| {
            let (dx, dy) = (x as f32 - 20.3, y as f32 - 17.6);
            100.0 + ((y * 31 + x * 17) % 13) as f32 + 500.0 * (-(dx * dx + dy * dy) / 8.0).exp()
        });
        let bg = Background {
            background: Array2::from_elem((ny, nx), 104.0),
            rms: Array2::from_shape_fn((ny, nx), |(y, x)| 3.0 + 0.01 * (x + y) as f32),
            global_background: 104.0,
            global_rms: 3.0,
            mesh_background: Array2::zeros((1, 1)),
            mesh_rms: Array2::zeros((1, 1)),
            n_filled: 0,
        };
        let mask = Array2::from_shape_fn((ny, nx), |(y, x)| (x * 7 + y * 3) % 29 == 0);
        for m in [None, Some(mask.view())] {
            for sigma in [0.0, 0.7, 1.0, 2.5] {
                for gain in [2.0, f64::INFINITY] {
                    let p = NoiseParams {
                        smooth_sigma: sigma,
                    };
                    let a = noise_model(&image.view(), &bg, m.as_ref(), gain, &p).unwrap();
                    let b = if gain.is_finite() {
                        noise_model_ref(&image.view(), &bg, m.as_ref(), gain, sigma)
                    } else {
                        bg.rms.mapv(|r| (r * r).sqrt())
                    };
                    assert!(
                        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "sigma {sigma} gain {gain} masked {}",
                        m.is_some()
                    );
                }
            }
        }
    }

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
