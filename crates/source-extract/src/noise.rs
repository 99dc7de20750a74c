//! Per-pixel noise model (STDPipe `err=True`) and the separable convolution it shares with
//! the matched filter.

use crate::clip::sigma_clip_sorted;
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
    let mut noise = Array2::<f32>::zeros(dim);
    if !gain.is_finite() {
        Zip::from(&mut noise)
            .and(&background.rms)
            .par_for_each(|n, &r| *n = (r * r).sqrt());
        return Ok(noise);
    }
    let inv_gain = (1.0 / gain) as f32;
    let kernel = (params.smooth_sigma > 0.0).then(|| gaussian_kernel_1d(params.smooth_sigma));
    let (ny, nx) = dim;
    // Bands of rows, one task each; a band convolves its rows plus a halo of `r` rows on
    // either side, so more bands cost more (2 r rows each).
    let band = ny
        .div_ceil(4 * rayon::current_num_threads())
        .max(64)
        .min(ny.max(1));
    let ones = kernel.as_ref().map(|k| OnesConvolved::new(k, ny, nx));
    noise
        .axis_chunks_iter_mut(Axis(0), band)
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut out)| {
            let src = NoiseSource {
                image,
                background,
                mask,
            };
            match (&kernel, &ones) {
                (Some(k), Some(ones)) => {
                    smoothed_noise_band(&src, k, ones, b * band, &mut out, inv_gain)
                }
                _ => {
                    let mut resid = vec![0.0f32; nx];
                    let mut good = vec![false; nx];
                    for (i, mut row) in out.outer_iter_mut().enumerate() {
                        let y = b * band + i;
                        src.residual_row(y, &mut resid, &mut good);
                        let rms = background.rms.row(y);
                        for (x, n) in row.iter_mut().enumerate() {
                            *n = noise_value(rms[x], resid[x], good[x], inv_gain);
                        }
                    }
                }
            }
        });
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
/// Images of more than 2^17 pixels are measured on evenly spaced bands of 32 rows.
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
    let is_good =
        |y: usize, x: usize| image[[y, x]].is_finite() && !mask.is_some_and(|m| m[[y, x]]);
    if !(0..ny).any(|y| (0..nx).any(|x| is_good(y, x))) {
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
    // The good pixels of the bands (the only pixels measured).
    let goods: Vec<Array2<bool>> = bands
        .iter()
        .map(|&(y0, y1)| {
            let rows = ndarray::s![y0..y1, ..];
            good_mask(&image.slice(rows), mask.map(|m| m.slice(rows)).as_ref())
        })
        .collect();
    // Sized once for the most samples a measurement can take (no regrowth).
    let n_band: usize = bands.iter().map(|&(y0, y1)| (y1 - y0) * nx).sum();
    let mut values = Vec::with_capacity(n_band);
    let mut diffs = Vec::with_capacity(2 * n_band);
    let mut scratch = Vec::with_capacity(2 * n_band);
    let mut measure = |sources: Option<(f64, f64)>| {
        values.clear();
        diffs.clear();
        for (&(y0, y1), g) in bands.iter().zip(&goods) {
            let img = image.slice(ndarray::s![y0..y1, ..]);
            match sources {
                Some((sky, rms)) => {
                    let src = source_mask(&img, &g.view(), sky, rms);
                    let mut k = g.clone();
                    Zip::from(&mut k).and(&src).for_each(|k, &s| *k &= !s);
                    sky_samples(&img, &k.view(), &mut values, &mut diffs);
                }
                None => sky_samples(&img, &g.view(), &mut values, &mut diffs),
            }
        }
        let sky =
            sigma_clip_sorted(&mut values, &mut scratch, 3.0, 50).map_or(f64::NAN, |s| s.median);
        let clipped = sigma_clip_sorted(&mut diffs, &mut scratch, 3.0, 50);
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
        let (row, krow) = (img.row(y), keep.row(y));
        let below = (y + lag < ny).then(|| (img.row(y + lag), keep.row(y + lag)));
        for x in 0..nx {
            if !krow[x] {
                continue;
            }
            let v = row[x] as f64;
            values.push(v);
            if x + lag < nx && krow[x + lag] {
                diffs.push(v - row[x + lag] as f64);
            }
            if let Some((brow, bkeep)) = &below
                && bkeep[x]
            {
                diffs.push(v - brow[x] as f64);
            }
        }
    }
}

/// `sqrt(rms^2 + max(0, s) / gain)` on a good pixel, `sqrt(rms^2)` on a bad one: the noise
/// of [`noise_model`] from the (smoothed) residual `s`.
#[inline]
fn noise_value(rms: f32, s: f32, good: bool, inv_gain: f32) -> f32 {
    let mut v = rms * rms;
    if good {
        v += s.max(0.0) * inv_gain;
    }
    v.sqrt()
}

/// The inputs of [`noise_model`], read one row at a time.
struct NoiseSource<'a> {
    image: &'a ArrayView2<'a, f32>,
    background: &'a Background,
    mask: Option<&'a ArrayView2<'a, bool>>,
}

impl NoiseSource<'_> {
    /// Row `y` of `image - background` (0 on bad pixels) and of the good-pixel mask; returns
    /// whether every pixel of the row is good.
    fn residual_row(&self, y: usize, resid: &mut [f32], good: &mut [bool]) -> bool {
        let img = self.image.row(y);
        let bg = self.background.background.row(y);
        let mrow = self.mask.map(|m| m.row(y));
        let (resid, good) = (&mut resid[..img.len()], &mut good[..img.len()]);
        // Contiguous rows (the usual case) as slices, so that the loop vectorises; other
        // layouts through ndarray's iterators.
        match (
            img.as_slice(),
            bg.as_slice(),
            mrow.as_ref().map(|m| m.as_slice()),
        ) {
            (Some(i), Some(b), None) => {
                residual_values(i.iter(), b.iter(), std::iter::repeat(false), resid, good)
            }
            (Some(i), Some(b), Some(Some(m))) => {
                residual_values(i.iter(), b.iter(), m.iter().copied(), resid, good)
            }
            _ => match &mrow {
                None => {
                    residual_values(img.iter(), bg.iter(), std::iter::repeat(false), resid, good)
                }
                Some(m) => residual_values(img.iter(), bg.iter(), m.iter().copied(), resid, good),
            },
        }
    }
}

/// [`NoiseSource::residual_row`] on a row's values: `img - bg` where the pixel is finite
/// and not `bad`, else 0; `good` gets the pixel's state. Returns whether every pixel is good.
#[inline]
fn residual_values<'a>(
    img: impl Iterator<Item = &'a f32>,
    bg: impl Iterator<Item = &'a f32>,
    bad: impl Iterator<Item = bool>,
    resid: &mut [f32],
    good: &mut [bool],
) -> bool {
    let mut all = true;
    for ((((r, g), &v), &b), m) in resid
        .iter_mut()
        .zip(good.iter_mut())
        .zip(img)
        .zip(bg)
        .zip(bad)
    {
        let ok = v.is_finite() & !m;
        *g = ok;
        all &= ok;
        *r = if ok { v - b } else { 0.0 };
    }
    all
}

/// The smoothing normalisation where no pixel is bad: the row pass of an all-good row (every
/// row's) and, per distance to the top / bottom edge, the column pass of those rows
/// (`2 r + 1` distinct rows; `None` when the image has no more than `2 r` rows).
struct OnesConvolved {
    row: Vec<f32>,
    rows: Option<Array2<f32>>,
}

impl OnesConvolved {
    fn new(k: &[f32], ny: usize, nx: usize) -> Self {
        let r = k.len() / 2;
        let mut row = vec![0.0f32; nx];
        convolve_row(&vec![1.0f32; nx], k, &mut row);
        let rows = (ny > 2 * r).then(|| {
            let n = 2 * r + 1;
            let mut out = Array2::<f32>::zeros((n, nx));
            for (y, mut o) in out.outer_iter_mut().enumerate() {
                let o = o.as_slice_mut().expect("standard layout");
                column_pass(o, k, y, n, |_| &row);
            }
            out
        });
        Self { row, rows }
    }

    /// The normalisation of row `y` of `ny` when rows `y - r ..= y + r` are all good.
    fn den_row(&self, y: usize, ny: usize, r: usize) -> Option<&[f32]> {
        let rows = self.rows.as_ref()?;
        let yr = if y < r {
            y
        } else if y + r >= ny {
            2 * r + 1 - (ny - y)
        } else {
            r
        };
        rows.row(yr).to_slice()
    }
}

/// Rows `y0 .. y0 + out.nrows()` of the smoothed noise model: the separable convolutions of
/// the residual and of the good-pixel weights (bitwise those of [`convolve_separable`]) with
/// a ring of `2 r + 1` row-convolved rows, instead of full-image temporaries.
fn smoothed_noise_band(
    src: &NoiseSource,
    k: &[f32],
    ones: &OnesConvolved,
    y0: usize,
    out: &mut ndarray::ArrayViewMut2<f32>,
    inv_gain: f32,
) {
    let (ny, nx) = src.image.dim();
    let r = k.len() / 2;
    let n_ring = 2 * r + 1;
    // Ring slot of source row yy: yy % n_ring; `ring_all[slot]`: that row is all good (its
    // weight row is then `ones.row`, not stored).
    let mut num = vec![0.0f32; n_ring * nx];
    let mut wts = vec![0.0f32; n_ring * nx];
    let mut ring_all = vec![false; n_ring];
    // The good masks of the ring's rows (the output row's own is one of them).
    let mut goods = vec![false; n_ring * nx];
    let mut resid = vec![0.0f32; nx];
    let mut w = vec![0.0f32; nx];
    let mut s_row = vec![0.0f32; nx];
    let mut d_row = vec![0.0f32; nx];
    let y1 = y0 + out.nrows();
    // Next source row to convolve into the ring.
    let mut next = y0.saturating_sub(r);
    for y in y0..y1 {
        let lo = y.saturating_sub(r);
        let hi = (y + r).min(ny - 1);
        while next <= hi {
            let slot = next % n_ring;
            let good = &mut goods[slot * nx..(slot + 1) * nx];
            let all = src.residual_row(next, &mut resid, good);
            convolve_row(&resid, k, &mut num[slot * nx..(slot + 1) * nx]);
            ring_all[slot] = all;
            if !all {
                for (w, &g) in w.iter_mut().zip(good.iter()) {
                    *w = if g { 1.0 } else { 0.0 };
                }
                convolve_row(&w, k, &mut wts[slot * nx..(slot + 1) * nx]);
            }
            next += 1;
        }
        column_pass(&mut s_row, k, y, ny, |yy| {
            let slot = yy % n_ring;
            &num[slot * nx..(slot + 1) * nx]
        });
        let den: &[f32] = match ones.den_row(y, ny, r) {
            Some(d) if (lo..=hi).all(|yy| ring_all[yy % n_ring]) => d,
            _ => {
                column_pass(&mut d_row, k, y, ny, |yy| {
                    let slot = yy % n_ring;
                    if ring_all[slot] {
                        &ones.row
                    } else {
                        &wts[slot * nx..(slot + 1) * nx]
                    }
                });
                &d_row
            }
        };
        // The good mask of row y itself, from the ring.
        let slot = y % n_ring;
        let good = &goods[slot * nx..(slot + 1) * nx];
        // The RMS row as a slice (copied when the caller's plane is not in standard
        // layout); `out` is a band of `noise_model`'s own standard-layout array.
        let rms_row = src.background.rms.row(y);
        let rms_copy: Vec<f32>;
        let rms = match rms_row.as_slice() {
            Some(r) => r,
            None => {
                rms_copy = rms_row.to_vec();
                &rms_copy
            }
        };
        let mut o = out.row_mut(y - y0);
        let o = o
            .as_slice_mut()
            .expect("rows of noise_model's own array are contiguous");
        smoothed_noise_row(o, rms, &s_row, den, good, ring_all[slot], inv_gain);
    }
}

/// One output row of [`smoothed_noise_band`] on slices: [`noise_value`] of the normalised
/// smoothed residual `s / den` (0 where `den <= 1e-6`), written branch-free so that it
/// vectorises; `all_good`: every pixel of the row is good.
#[inline]
fn smoothed_noise_row(
    out: &mut [f32],
    rms: &[f32],
    s: &[f32],
    den: &[f32],
    good: &[bool],
    all_good: bool,
    inv_gain: f32,
) {
    let n = out.len();
    let (rms, s, den, good) = (&rms[..n], &s[..n], &den[..n], &good[..n]);
    let value = |r: f32, s: f32, d: f32, g: bool| {
        let q = s / d;
        let s = if d > 1e-6 { q } else { 0.0 };
        noise_value(r, s, g, inv_gain)
    };
    if all_good {
        for (((o, &r), &s), &d) in out.iter_mut().zip(rms).zip(s).zip(den) {
            *o = value(r, s, d, true);
        }
    } else {
        for ((((o, &r), &s), &d), &g) in out.iter_mut().zip(rms).zip(s).zip(den).zip(good) {
            *o = value(r, s, d, g);
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

/// One row of the separable convolution: `out[x] = sum_t k[t] src[x - r + t]` over the taps
/// that fall inside the row (zero padding), accumulated from 0 in tap order.
pub(crate) fn convolve_row(src: &[f32], k: &[f32], out: &mut [f32]) {
    let nx = src.len();
    let rx = k.len() / 2;
    let conv = |x: usize| -> f32 {
        let lo = x.saturating_sub(rx);
        let hi = (x + rx).min(nx - 1);
        let mut acc = 0.0f32;
        for (xx, &s) in src.iter().enumerate().take(hi + 1).skip(lo) {
            acc += k[xx + rx - x] * s;
        }
        acc
    };
    if nx > 2 * rx {
        // Interior pixels: the full kernel, accumulated tap by tap over the whole interior
        // (vectorisable) in the same order as the per-pixel sum: 0 + k0 s0 + k1 s1 + ...,
        // hence bitwise the same result.
        for x in (0..rx).chain(nx - rx..nx) {
            out[x] = conv(x);
        }
        let m = nx - 2 * rx;
        let inner = &mut out[rx..nx - rx];
        inner.fill(0.0);
        for (t, &kt) in k.iter().enumerate() {
            for (o, &s) in inner.iter_mut().zip(&src[t..t + m]) {
                *o += kt * s;
            }
        }
    } else {
        for (x, o) in out.iter_mut().enumerate() {
            *o = conv(x);
        }
    }
}

/// Row `y` of the column pass of the separable convolution (zero padding) of `ny` rows:
/// `out = sum_t k[t] row(y - r + t)` over the rows inside the image, accumulated from 0 in
/// tap order.
fn column_pass<'a>(
    out: &mut [f32],
    k: &[f32],
    y: usize,
    ny: usize,
    row: impl Fn(usize) -> &'a [f32],
) {
    let r = k.len() / 2;
    out.fill(0.0);
    for yy in y.saturating_sub(r)..=(y + r).min(ny - 1) {
        let w = k[yy + r - y];
        for (o, &s) in out.iter_mut().zip(row(yy)) {
            *o += w * s;
        }
    }
}

/// Separable "same" convolution with zero padding: rows with `kx`, then columns with `ky`
/// (odd lengths). Parallel over rows.
pub(crate) fn convolve_separable(img: &ArrayView2<f32>, ky: &[f32], kx: &[f32]) -> Array2<f32> {
    let (ny, nx) = img.dim();
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
            let out = row.as_slice_mut().expect("standard layout");
            convolve_row(src, kx, out);
        });
    let mut out = Array2::<f32>::zeros((ny, nx));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(y, mut row)| {
            let o = row.as_slice_mut().expect("standard layout");
            column_pass(o, ky, y, ny, |yy| {
                tmp.row(yy).to_slice().expect("standard layout")
            });
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat background of 104 with an RMS rising from 3 along the diagonal.
    fn test_background(ny: usize, nx: usize) -> Background {
        Background {
            background: Array2::from_elem((ny, nx), 104.0),
            rms: Array2::from_shape_fn((ny, nx), |(y, x)| 3.0 + 0.01 * (x + y) as f32),
            global_background: 104.0,
            global_rms: 3.0,
            mesh_background: Array2::zeros((1, 1)),
            mesh_rms: Array2::zeros((1, 1)),
            n_filled: 0,
        }
    }

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
        // Shapes with one and several row bands (and 1 or 3 threads, so different band
        // splits), tiny images, a NaN pixel, sparse masks and a masked block (rows whose
        // neighbourhood is partly all good, partly not).
        let mut cases = 0;
        for &(ny, nx) in &[(37, 41), (150, 23), (5, 4), (3, 60), (200, 9)] {
            let mut image = Array2::from_shape_fn((ny, nx), |(y, x)| {
                let (dx, dy) = (x as f32 - 20.3, y as f32 - 17.6);
                100.0 + ((y * 31 + x * 17) % 13) as f32 + 500.0 * (-(dx * dx + dy * dy) / 8.0).exp()
            });
            image[[ny / 2, nx / 3]] = f32::NAN;
            let bg = test_background(ny, nx);
            let sparse = Array2::from_shape_fn((ny, nx), |(y, x)| (x * 7 + y * 3) % 29 == 0);
            let block = Array2::from_shape_fn((ny, nx), |(y, x)| {
                (ny * 2 / 3..ny * 2 / 3 + 4).contains(&y) && (1..4).contains(&x)
            });
            for m in [None, Some(sparse.view()), Some(block.view())] {
                for sigma in [0.0, 0.7, 1.0, 2.5] {
                    for gain in [2.0, f64::INFINITY] {
                        let p = NoiseParams {
                            smooth_sigma: sigma,
                        };
                        let b = if gain.is_finite() {
                            noise_model_ref(&image.view(), &bg, m.as_ref(), gain, sigma)
                        } else {
                            bg.rms.mapv(|r| (r * r).sqrt())
                        };
                        for threads in [1, 3] {
                            let pool = rayon::ThreadPoolBuilder::new()
                                .num_threads(threads)
                                .build()
                                .unwrap();
                            let a = pool.install(|| {
                                noise_model(&image.view(), &bg, m.as_ref(), gain, &p).unwrap()
                            });
                            assert!(
                                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                                "{ny}x{nx} sigma {sigma} gain {gain} masked {} threads {threads}",
                                m.is_some()
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 240);
    }

    #[test]
    fn noise_model_on_strided_views_is_bitwise_the_reference() {
        // Transposed (non-contiguous) image and mask views take the per-index row paths; a
        // background whose planes are owned in column-major order, the copied RMS rows.
        let (ny, nx) = (40, 33);
        let mut image = Array2::from_shape_fn((nx, ny), |(x, y)| {
            100.0 + ((y * 31 + x * 17) % 13) as f32 + 40.0 * ((x + y) % 5) as f32
        });
        image[[3, 7]] = f32::INFINITY;
        let mask = Array2::from_shape_fn((nx, ny), |(x, y)| (x * 5 + y * 3) % 17 == 0);
        let bg = test_background(ny, nx);
        let (img, m) = (image.t(), mask.t());
        for (mask, sigma) in [(None, 1.0), (Some(&m), 1.0), (Some(&m), 0.0)] {
            let p = NoiseParams {
                smooth_sigma: sigma,
            };
            let b = noise_model_ref(&img, &bg, mask, 1.7, sigma);
            let column_major = |a: &Array2<f32>| {
                let mut f = Array2::zeros(ndarray::ShapeBuilder::f((ny, nx)));
                f.assign(a);
                f
            };
            let mut bg_f = test_background(ny, nx);
            bg_f.background = column_major(&bg.background);
            bg_f.rms = column_major(&bg.rms);
            assert!(bg_f.rms.row(0).as_slice().is_none());
            for bg in [&bg, &bg_f] {
                let a = noise_model(&img, bg, mask, 1.7, &p).unwrap();
                assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
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
