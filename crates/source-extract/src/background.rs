//! Mesh background and background-RMS estimation (SExtractor / SEP algorithm).

use crate::{ExtractError, check_shape};
use diffim_core::stats::{median_in_place, sigma_clip};
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Minimum fraction of good pixels for a box to be used (SExtractor `BACK_MINGOODFRAC`).
const DEFAULT_MIN_GOOD_FRACTION: f64 = 0.5;
/// Half-width of the per-box histogram in units of the box sigma (SExtractor `QUANTIF_NSIGMA`).
const QUANTIF_NSIGMA: f64 = 5.0;
/// Maximum number of histogram bins (SExtractor `QUANTIF_NMAXLEVELS`).
const QUANTIF_NMAXLEVELS: usize = 4096;
/// Minimum number of pixels per histogram bin at the mode (SExtractor `QUANTIF_AMIN`).
const QUANTIF_AMIN: f64 = 4.0;

/// How the sky level of one box is estimated from its clipped pixel distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum BackgroundEstimator {
    /// SExtractor's histogram mode: iterative 3-sigma clipping of a fine histogram about its
    /// median, then `2.5 median - 1.5 mean`, or the median when `|mean - median| > 0.3 sigma`
    /// (Bertin & Arnouts 1996, section 3.1; SEP <= 1.2).
    #[default]
    Mode,
    /// The clipped mean of the same histogram iteration (what SEP >= 1.3 returns).
    ClippedMean,
    /// `diffim_core::stats::sigma_clip` (3 sigma about the median, iterated) then
    /// [`ClippedStats::mode`](diffim_core::stats::ClippedStats::mode): no histogram.
    SigmaClipMode,
}

/// Parameters of [`estimate_background`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackgroundParams {
    /// Box (mesh) size in pixels, both axes (SExtractor `BACK_SIZE`). Default 64.
    pub box_size: usize,
    /// Median-filter size across boxes, both axes (SExtractor `BACK_FILTERSIZE`); 1 = none.
    /// Default 3.
    pub filter_size: usize,
    /// A box is replaced by the median of its neighbourhood only when they differ by at least
    /// this many ADU (SExtractor `BACK_FILTERTHRESH`). Default 0 (always).
    pub filter_threshold: f64,
    /// Minimum fraction of good (unmasked, finite) pixels for a box to be measured; other
    /// boxes are filled from their nearest good boxes. Default 0.5.
    pub min_good_fraction: f64,
    /// Sky estimator per box. Default [`BackgroundEstimator::Mode`].
    pub estimator: BackgroundEstimator,
}

impl Default for BackgroundParams {
    fn default() -> Self {
        Self {
            box_size: 64,
            filter_size: 3,
            filter_threshold: 0.0,
            min_good_fraction: DEFAULT_MIN_GOOD_FRACTION,
            estimator: BackgroundEstimator::Mode,
        }
    }
}

/// A background model: full-resolution sky and sky-RMS maps plus the mesh they come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Background {
    /// Sky level per pixel (ADU), the image's shape.
    pub background: Array2<f32>,
    /// Sky RMS per pixel (ADU), the image's shape.
    pub rms: Array2<f32>,
    /// Median of the filtered box sky levels (SEP `globalback`).
    pub global_background: f64,
    /// Median of the filtered box RMS values (SEP `globalrms`); 1.0 when every box has zero
    /// RMS (a constant image), as SEP.
    pub global_rms: f64,
    /// Filtered box sky levels, shape `(n_boxes_y, n_boxes_x)`.
    pub mesh_background: Array2<f32>,
    /// Filtered box RMS values, shape `(n_boxes_y, n_boxes_x)`.
    pub mesh_rms: Array2<f32>,
    /// Number of boxes that had too few good pixels and were filled from neighbours.
    pub n_filled: usize,
}

/// Estimates the sky background and its RMS with SExtractor's mesh method (see the crate docs).
///
/// `mask` (true = bad) and non-finite pixels are excluded. An image smaller than one box is
/// treated as a single box (the result is then constant).
///
/// # Errors
/// [`ExtractError::EmptyImage`], [`ExtractError::ShapeMismatch`],
/// [`ExtractError::InvalidParameter`] (box size 0, filter size 0, fraction outside `(0, 1]`),
/// [`ExtractError::NoGoodPixels`] when every pixel is masked or non-finite, and
/// [`ExtractError::NoGoodBoxes`] when no box has enough good pixels.
pub fn estimate_background(
    image: &ArrayView2<f32>,
    mask: Option<&ArrayView2<bool>>,
    params: &BackgroundParams,
) -> Result<Background, ExtractError> {
    let (ny, nx) = image.dim();
    if ny == 0 || nx == 0 {
        return Err(ExtractError::EmptyImage { ny, nx });
    }
    check_shape("mask", (ny, nx), mask)?;
    if params.box_size == 0 {
        return Err(ExtractError::InvalidParameter {
            name: "box_size",
            value: 0.0,
            reason: "must be at least 1",
        });
    }
    if params.filter_size == 0 {
        return Err(ExtractError::InvalidParameter {
            name: "filter_size",
            value: 0.0,
            reason: "must be at least 1",
        });
    }
    let f = params.min_good_fraction;
    if !(f > 0.0 && f <= 1.0) {
        return Err(ExtractError::InvalidParameter {
            name: "min_good_fraction",
            value: f,
            reason: "must be in (0, 1]",
        });
    }
    let good = |y: usize, x: usize| -> bool {
        image[[y, x]].is_finite() && !mask.is_some_and(|m| m[[y, x]])
    };
    let bs = params.box_size;
    let nbx = nx.div_ceil(bs);
    let nby = ny.div_ceil(bs);

    // Per-box statistics, in parallel over boxes; each worker reuses its pixel and histogram
    // buffers.
    let stats: Vec<Option<(f32, f32)>> = (0..nbx * nby)
        .into_par_iter()
        .map_init(
            || (Vec::new(), HistScratch::default()),
            |(vals, scratch), k| {
                let (by, bx) = (k / nbx, k % nbx);
                let (y0, x0) = (by * bs, bx * bs);
                let (y1, x1) = ((y0 + bs).min(ny), (x0 + bs).min(nx));
                vals.clear();
                for y in y0..y1 {
                    good_pixels(image, mask, y, x0..x1, vals);
                }
                let area = ((y1 - y0) * (x1 - x0)) as f64;
                if vals.is_empty() || (vals.len() as f64) < area * f {
                    return None;
                }
                box_statistics(vals, params.estimator, scratch)
            },
        )
        .collect();

    let n_good_boxes = stats.iter().filter(|s| s.is_some()).count();
    if n_good_boxes == 0 {
        let any_good = (0..ny).any(|y| (0..nx).any(|x| good(y, x)));
        if !any_good {
            return Err(ExtractError::NoGoodPixels { npix: ny * nx });
        }
        return Err(ExtractError::NoGoodBoxes { min_fraction: f });
    }
    let n_filled = nbx * nby - n_good_boxes;

    let (mut back, mut sigma) = fill_bad_boxes(&stats, nby, nbx);
    median_filter_mesh(
        &mut back,
        &mut sigma,
        params.filter_size,
        params.filter_threshold,
    );

    let mut bv: Vec<f64> = back.iter().map(|&v| v as f64).collect();
    let global_background = median_in_place(&mut bv).unwrap_or(0.0);
    let mut sv: Vec<f64> = sigma.iter().map(|&v| v as f64).collect();
    let mut global_rms = median_in_place(&mut sv).unwrap_or(0.0);
    if global_rms <= 0.0 {
        let mut pos: Vec<f64> = sigma
            .iter()
            .filter(|&&v| v > 0.0)
            .map(|&v| v as f64)
            .collect();
        global_rms = median_in_place(&mut pos).unwrap_or(1.0);
    }

    let background = spline_map(&back, ny, nx, bs);
    let rms = spline_map(&sigma, ny, nx, bs);
    Ok(Background {
        background,
        rms,
        global_background,
        global_rms,
        mesh_background: back,
        mesh_rms: sigma,
        n_filled,
    })
}

/// Appends the good (finite, unmasked) pixels of row `y`, columns `xs`, to `out`, in order.
fn good_pixels(
    image: &ArrayView2<f32>,
    mask: Option<&ArrayView2<bool>>,
    y: usize,
    xs: std::ops::Range<usize>,
    out: &mut Vec<f32>,
) {
    let row = image.row(y);
    let mrow = mask.map(|m| m.row(y));
    let start = out.len();
    out.resize(start + xs.len(), 0.0);
    let dst = &mut out[start..];
    // Branch-free compaction: every pixel is written at the next free slot, which only
    // advances past good ones.
    let mut k = 0;
    match (row.as_slice(), mrow.as_ref().map(|m| m.as_slice())) {
        (Some(r), None) => {
            for &v in &r[xs] {
                dst[k] = v;
                k += usize::from(v.is_finite());
            }
        }
        (Some(r), Some(Some(m))) => {
            for (&v, &b) in r[xs.clone()].iter().zip(&m[xs]) {
                dst[k] = v;
                k += usize::from(v.is_finite() & !b);
            }
        }
        _ => {
            for x in xs {
                let v = row[x];
                dst[k] = v;
                k += usize::from(v.is_finite() & !mrow.as_ref().is_some_and(|m| m[x]));
            }
        }
    }
    out.truncate(start + k);
}

/// Scratch of [`box_statistics`]: the histogram and its cumulative counts and moments.
#[derive(Default)]
struct HistScratch {
    histo: Vec<u64>,
    cum: [Vec<u64>; 3],
}

/// Sky level and sigma of one box from its good pixel values (non-empty).
fn box_statistics(
    vals: &[f32],
    estimator: BackgroundEstimator,
    scratch: &mut HistScratch,
) -> Option<(f32, f32)> {
    let histo = &mut scratch.histo;
    if estimator == BackgroundEstimator::SigmaClipMode {
        let mut v: Vec<f64> = vals.iter().map(|&x| x as f64).collect();
        let s = sigma_clip(&mut v, 3.0, 10)?;
        return Some((s.mode() as f32, s.std as f32));
    }
    // Pass 1: mean and sigma of all good pixels, then a 2-sigma cut about the mean.
    let (mean, sigma, _) = mean_sigma(vals.iter().map(|&v| v as f64));
    let lcut = (mean - 2.0 * sigma) as f32;
    let hcut = (mean + 2.0 * sigma) as f32;
    let (mean, sigma, npix) = mean_sigma(
        vals.iter()
            .filter(|&&v| v >= lcut && v <= hcut)
            .map(|&v| v as f64),
    );
    if npix == 0 {
        return None;
    }
    // Histogram of 2 * QUANTIF_NSIGMA sigma centred on the clipped mean.
    let step = (2.0 / std::f64::consts::PI).sqrt() * QUANTIF_NSIGMA / QUANTIF_AMIN;
    let nlevels = ((step * npix as f64 + 1.0) as usize).clamp(1, QUANTIF_NMAXLEVELS);
    let qscale = if sigma > 0.0 {
        (2.0 * QUANTIF_NSIGMA * sigma / nlevels as f64) as f32
    } else {
        1.0
    };
    let qzero = (mean - QUANTIF_NSIGMA * sigma) as f32;
    histo.clear();
    histo.resize(nlevels, 0);
    let cste = 0.499_999_f32 - qzero / qscale;
    for &v in vals {
        // Truncation toward zero, as SExtractor: values just below bin 0 land in bin 0.
        let b = v / qscale + cste;
        if b > -1.0 && b < nlevels as f32 {
            let bin = (b as i64).max(0) as usize;
            if bin < nlevels {
                histo[bin] += 1;
            }
        }
    }
    let (mea, med, sig) =
        histogram_clip(histo, mean, qzero as f64, qscale as f64, &mut scratch.cum);
    let level = match estimator {
        BackgroundEstimator::ClippedMean => mea,
        _ => {
            if sig > 0.0 {
                if ((mea - med) / sig).abs() < 0.3 {
                    2.5 * med - 1.5 * mea
                } else {
                    med
                }
            } else {
                mea
            }
        }
    };
    Some((
        (qzero as f64 + level * qscale as f64) as f32,
        (sig * qscale as f64) as f32,
    ))
}

/// Mean, population sigma and count.
fn mean_sigma<I: Iterator<Item = f64>>(it: I) -> (f64, f64, usize) {
    let (mut s, mut s2, mut n) = (0.0, 0.0, 0usize);
    for v in it {
        s += v;
        s2 += v * v;
        n += 1;
    }
    if n == 0 {
        return (0.0, 0.0, 0);
    }
    let mean = s / n as f64;
    let var = s2 / n as f64 - mean * mean;
    (mean, if var > 0.0 { var.sqrt() } else { 0.0 }, n)
}

/// Iterative 3-sigma clipping of a histogram about its (interpolated) median. Returns
/// `(mean, median, sigma)` in bin units.
fn histogram_clip(
    histo: &[u64],
    mean0: f64,
    qzero: f64,
    qscale: f64,
    cum: &mut [Vec<u64>; 3],
) -> (f64, f64, f64) {
    let nlevelsm1 = histo.len() as i64 - 1;
    let (mut lcut, mut hcut) = (0i64, nlevelsm1);
    let mut sig = 10.0 * nlevelsm1 as f64;
    let mut sig1 = 1.0;
    // Initial guesses in bin units (only used if the loop does not run).
    let mut mea = (mean0 - qzero) / qscale;
    let mut med = mea;
    let h = |i: i64| -> u64 {
        if i >= 0 && i <= nlevelsm1 {
            histo[i as usize]
        } else {
            0
        }
    };
    // Cumulative counts, first and second moments: exact integers (as are the f64 sums of
    // the direct loop, which stay far below 2^53), so the range sums are identical.
    let nl = histo.len();
    let [c0, c1, c2] = cum;
    for c in [&mut *c0, &mut *c1, &mut *c2] {
        c.clear();
        c.push(0);
    }
    // (Exact-size iterators: no capacity check per bin.)
    let mut a = 0u64;
    c0.extend(histo.iter().map(|&p| {
        a += p;
        a
    }));
    let mut a = 0u64;
    c1.extend((0u64..).zip(histo).map(|(i, &p)| {
        a += p * i;
        a
    }));
    let mut a = 0u64;
    c2.extend((0u64..).zip(histo).map(|(i, &p)| {
        a += p * i * i;
        a
    }));
    let (c0, c1, c2) = (&c0[..], &c1[..], &c2[..]);
    // Sum over bins lo..=hi (clipped to the histogram) of a cumulative array.
    let range = |c: &[u64], lo: i64, hi: i64| -> u64 {
        let lo = lo.clamp(0, nl as i64) as usize;
        let hi = (hi + 1).clamp(0, nl as i64) as usize;
        if hi > lo { c[hi] - c[lo] } else { 0 }
    };
    let mut iter = 0;
    while iter < 100 && sig >= 0.1 && (sig / sig1 - 1.0).abs() > 1e-4 {
        iter += 1;
        sig1 = sig;
        // Two-pointer median search (SExtractor): the side with the smaller sum takes the
        // next bin, `hcut - lcut + 1` times.
        let (lo, hi, lowsum, highsum) = median_split(c0, lcut, hcut);
        let sum = range(c0, lcut, hcut);
        let m1 = range(c1, lcut, hcut) as f64;
        let mut m2 = range(c2, lcut, hcut) as f64;
        med = if hi >= 0 {
            let denom = 2.0 * h(lo).max(h(hi)) as f64;
            let corr = if denom > 0.0 {
                (highsum as f64 - lowsum as f64) / denom
            } else {
                0.0
            };
            hi as f64 + 0.5 + corr
        } else {
            0.0
        };
        if sum > 0 {
            mea = m1 / sum as f64;
            m2 = m2 / sum as f64 - mea * mea;
        } else {
            mea = 0.0;
        }
        sig = if m2 > 0.0 { m2.sqrt() } else { 0.0 };
        let t = med - 3.0 * sig;
        lcut = if t > 0.0 { (t + 0.5) as i64 } else { 0 };
        let t = med + 3.0 * sig;
        hcut = if t < nlevelsm1 as f64 {
            if t > 0.0 {
                (t + 0.5) as i64
            } else {
                (t - 0.5) as i64
            }
        } else {
            nlevelsm1
        };
    }
    (mea, med, sig)
}

/// Final state `(lo, hi, lowsum, highsum)` of SExtractor's two-pointer median search over
/// bins `lcut..=hcut` (`lo = lcut`, `hi = hcut`, then `hcut - lcut + 1` times: if
/// `lowsum < highsum` the low side takes bin `lo` and `lo += 1`, else the high side takes bin
/// `hi` and `hi -= 1`), in O(log n) from the cumulative counts `c0` (`c0[i]` = counts of bins
/// `< i`).
///
/// The walk is the merge of the two sorted sequences `A[i]` (low sum after `i` low steps) and
/// `B[j]` (high sum after `j` high steps) that takes `A[i]` only when `A[i] < B[j]`; after `n`
/// steps it has taken `i` low steps for the unique `i` with `A[i - 1] < B[n - i]` and
/// `B[n - i - 1] <= A[i]`, the largest `i` with the first property.
fn median_split(c0: &[u64], lcut: i64, hcut: i64) -> (i64, i64, u64, u64) {
    if lcut > hcut {
        return (lcut, hcut, 0, 0);
    }
    let n = (hcut - lcut + 1) as usize;
    let (l0, h1) = (lcut as usize, hcut as usize + 1);
    let a = |i: usize| c0[l0 + i] - c0[l0];
    let b = |j: usize| c0[h1] - c0[h1 - j];
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if a(mid - 1) < b(n - mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let (i, j) = (lo, n - lo);
    (lcut + i as i64, hcut - j as i64, a(i), b(j))
}

/// Fills boxes without statistics with the mean of their nearest good boxes (SExtractor).
fn fill_bad_boxes(
    stats: &[Option<(f32, f32)>],
    nby: usize,
    nbx: usize,
) -> (Array2<f32>, Array2<f32>) {
    let mut back = Array2::<f32>::zeros((nby, nbx));
    let mut sigma = Array2::<f32>::zeros((nby, nbx));
    let good: Vec<(usize, usize, f32, f32)> = stats
        .iter()
        .enumerate()
        .filter_map(|(k, s)| s.map(|(b, r)| (k / nbx, k % nbx, b, r)))
        .collect();
    for by in 0..nby {
        for bx in 0..nbx {
            if let Some((b, r)) = stats[by * nbx + bx] {
                back[[by, bx]] = b;
                sigma[[by, bx]] = r;
                continue;
            }
            let mut d2min = usize::MAX;
            let (mut sb, mut sr, mut n) = (0.0f64, 0.0f64, 0usize);
            for &(gy, gx, b, r) in &good {
                let d2 = gy.abs_diff(by).pow(2) + gx.abs_diff(bx).pow(2);
                if d2 < d2min {
                    d2min = d2;
                    (sb, sr, n) = (b as f64, r as f64, 1);
                } else if d2 == d2min {
                    sb += b as f64;
                    sr += r as f64;
                    n += 1;
                }
            }
            if n > 0 {
                back[[by, bx]] = (sb / n as f64) as f32;
                sigma[[by, bx]] = (sr / n as f64) as f32;
            }
        }
    }
    (back, sigma)
}

/// Median filter across boxes; the window shrinks symmetrically at the mesh edges (SExtractor).
fn median_filter_mesh(back: &mut Array2<f32>, sigma: &mut Array2<f32>, size: usize, thresh: f64) {
    let (nby, nbx) = back.dim();
    let half = size / 2;
    if half == 0 {
        return;
    }
    let mut back2 = back.clone();
    let mut sigma2 = sigma.clone();
    let mut wb: Vec<f64> = Vec::with_capacity(size * size);
    let mut ws: Vec<f64> = Vec::with_capacity(size * size);
    for py in 0..nby {
        let hy = half.min(py).min(nby - 1 - py);
        for px in 0..nbx {
            let hx = half.min(px).min(nbx - 1 - px);
            wb.clear();
            ws.clear();
            for y in py - hy..=py + hy {
                for x in px - hx..=px + hx {
                    wb.push(back[[y, x]] as f64);
                    ws.push(sigma[[y, x]] as f64);
                }
            }
            let med = median_in_place(&mut wb).unwrap_or(back[[py, px]] as f64);
            if (med - back[[py, px]] as f64).abs() >= thresh {
                back2[[py, px]] = med as f32;
                sigma2[[py, px]] =
                    median_in_place(&mut ws).unwrap_or(sigma[[py, px]] as f64) as f32;
            }
        }
    }
    *back = back2;
    *sigma = sigma2;
}

/// Second derivatives of the natural cubic spline through `v` at unit spacing (divided by 6,
/// so that evaluation needs no further factor).
fn spline_d2(v: &[f64]) -> Vec<f64> {
    let n = v.len();
    let mut d = vec![0.0; n];
    if n < 3 {
        return d;
    }
    let mut u = vec![0.0; n];
    for i in 1..n - 1 {
        let t = -1.0 / (d[i - 1] + 4.0);
        d[i] = t;
        u[i] = t * (u[i - 1] - 6.0 * (v[i + 1] + v[i - 1] - 2.0 * v[i]));
    }
    d[n - 1] = 0.0;
    for i in (1..n - 1).rev() {
        d[i] = d[i] * d[i + 1] + u[i];
    }
    for x in d.iter_mut() {
        *x /= 6.0;
    }
    d
}

/// Evaluates the natural spline (`v`, `d2` from [`spline_d2`]) at node coordinate `t`,
/// extrapolating the end segments cubically beyond the first and last node (SExtractor).
#[inline]
fn spline_eval(v: &[f64], d2: &[f64], t: f64) -> f64 {
    let n = v.len();
    if n == 1 {
        return v[0];
    }
    let j = (t.floor().max(0.0) as usize).min(n - 2);
    let dx = t - j as f64;
    let cdx = 1.0 - dx;
    cdx * (v[j] + (cdx * cdx - 1.0) * d2[j]) + dx * (v[j + 1] + (dx * dx - 1.0) * d2[j + 1])
}

/// Spline evaluation terms of the output pixels along one axis (see [`spline_eval`]),
/// identical for every row: pixels `seg_start[j]..seg_start[j + 1]` lie in segment `j`
/// (nodes `j`, `j + 1`) and have weights `cdx`, `dx`, `cdx^2 - 1`, `dx^2 - 1`.
struct SplineTerms {
    seg_start: Vec<usize>,
    cdx: Vec<f64>,
    dx: Vec<f64>,
    c3: Vec<f64>,
    d3: Vec<f64>,
}

impl SplineTerms {
    /// Terms of `len` output pixels for `n >= 2` nodes spaced `bs` pixels apart.
    fn new(n: usize, len: usize, bs: usize) -> Self {
        let inv = 1.0 / bs as f64;
        let mut t = Self {
            seg_start: vec![0; n],
            cdx: Vec::with_capacity(len),
            dx: Vec::with_capacity(len),
            c3: Vec::with_capacity(len),
            d3: Vec::with_capacity(len),
        };
        let mut counts = vec![0usize; n - 1];
        for i in 0..len {
            let x = (i as f64 + 0.5) * inv - 0.5;
            let j = (x.floor().max(0.0) as usize).min(n - 2);
            counts[j] += 1;
            let dx = x - j as f64;
            let cdx = 1.0 - dx;
            t.cdx.push(cdx);
            t.dx.push(dx);
            t.c3.push(cdx * cdx - 1.0);
            t.d3.push(dx * dx - 1.0);
        }
        // Segments are non-decreasing along the axis.
        for (j, &c) in counts.iter().enumerate() {
            t.seg_start[j + 1] = t.seg_start[j] + c;
        }
        t
    }
}

/// Bicubic natural-spline interpolation of a box mesh to full resolution. Box `j` is centred on
/// pixel coordinate `(j + 0.5) * box - 0.5`. Arithmetic is that of [`spline_eval`] per pixel,
/// with the per-column terms computed once and the loop over each segment vectorisable.
fn spline_map(mesh: &Array2<f32>, ny: usize, nx: usize, bs: usize) -> Array2<f32> {
    let (nby, nbx) = mesh.dim();
    let cols: Vec<(Vec<f64>, Vec<f64>)> = (0..nbx)
        .map(|bx| {
            let v: Vec<f64> = mesh.column(bx).iter().map(|&x| x as f64).collect();
            let d = spline_d2(&v);
            (v, d)
        })
        .collect();
    let inv = 1.0 / bs as f64;
    let xt = (nbx > 1).then(|| SplineTerms::new(nbx, nx, bs));
    let mut out = Array2::<f32>::zeros((ny, nx));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(y, mut row)| {
            let ty = (y as f64 + 0.5) * inv - 0.5;
            let nodes: Vec<f64> = if nby > 1 {
                cols.iter().map(|(v, d)| spline_eval(v, d, ty)).collect()
            } else {
                cols.iter().map(|(v, _)| v[0]).collect()
            };
            let Some(xt) = &xt else {
                row.fill(nodes[0] as f32);
                return;
            };
            let d2 = spline_d2(&nodes);
            let write = |out: &mut [f32]| {
                for j in 0..nbx - 1 {
                    let (s, e) = (xt.seg_start[j], xt.seg_start[j + 1]);
                    let (v0, v1, d0, d1) = (nodes[j], nodes[j + 1], d2[j], d2[j + 1]);
                    let it = out[s..e]
                        .iter_mut()
                        .zip(&xt.cdx[s..e])
                        .zip(&xt.dx[s..e])
                        .zip(&xt.c3[s..e])
                        .zip(&xt.d3[s..e]);
                    for ((((o, &cdx), &dx), &c3), &d3) in it {
                        *o = (cdx * (v0 + c3 * d0) + dx * (v1 + d3 * d1)) as f32;
                    }
                }
            };
            match row.as_slice_mut() {
                Some(o) => write(o),
                None => {
                    let mut tmp = vec![0.0f32; nx];
                    write(&mut tmp);
                    row.iter_mut().zip(&tmp).for_each(|(o, &t)| *o = t);
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spline_reproduces_linear_and_nodes() {
        let v: Vec<f64> = (0..6).map(|i| 3.0 + 2.0 * i as f64).collect();
        let d = spline_d2(&v);
        for t in [-0.5, 0.0, 0.3, 2.7, 5.0, 5.4] {
            assert!((spline_eval(&v, &d, t) - (3.0 + 2.0 * t)).abs() < 1e-12);
        }
        let v = vec![1.0, 5.0, -2.0, 0.5];
        let d = spline_d2(&v);
        for (i, &vi) in v.iter().enumerate() {
            assert!((spline_eval(&v, &d, i as f64) - vi).abs() < 1e-12);
        }
    }

    #[test]
    fn histogram_mode_of_symmetric_box_is_centre() {
        // Deterministic symmetric triangular-ish distribution centred on 50.
        let vals: Vec<f32> = (0..4096)
            .map(|i| {
                50.0 + (((i * 37) % 101) as f32 - 50.0) * 0.1 + (((i * 13) % 7) as f32 - 3.0) * 0.05
            })
            .collect();
        for est in [
            BackgroundEstimator::Mode,
            BackgroundEstimator::ClippedMean,
            BackgroundEstimator::SigmaClipMode,
        ] {
            let (b, s) = box_statistics(&vals, est, &mut HistScratch::default()).unwrap();
            assert!((b - 50.0).abs() < 0.05, "{est:?}: {b}");
            assert!(s > 1.0 && s < 4.0, "{est:?}: {s}");
        }
    }

    /// The original per-pixel spline map (every pixel through `spline_eval`).
    fn spline_map_ref(mesh: &Array2<f32>, ny: usize, nx: usize, bs: usize) -> Array2<f32> {
        let (nby, nbx) = mesh.dim();
        let cols: Vec<(Vec<f64>, Vec<f64>)> = (0..nbx)
            .map(|bx| {
                let v: Vec<f64> = mesh.column(bx).iter().map(|&x| x as f64).collect();
                let d = spline_d2(&v);
                (v, d)
            })
            .collect();
        let inv = 1.0 / bs as f64;
        Array2::from_shape_fn((ny, nx), |(y, x)| {
            let ty = (y as f64 + 0.5) * inv - 0.5;
            let nodes: Vec<f64> = if nby > 1 {
                cols.iter().map(|(v, d)| spline_eval(v, d, ty)).collect()
            } else {
                cols.iter().map(|(v, _)| v[0]).collect()
            };
            let d2 = spline_d2(&nodes);
            spline_eval(&nodes, &d2, (x as f64 + 0.5) * inv - 0.5) as f32
        })
    }

    #[test]
    fn spline_map_is_bitwise_the_per_pixel_evaluation() {
        for &(nby, nbx, bs, ny, nx) in &[
            (4, 5, 16, 60, 77),
            (1, 3, 32, 20, 90),
            (3, 1, 8, 24, 5),
            (1, 1, 64, 10, 10),
            (2, 2, 7, 14, 13),
        ] {
            let mesh = Array2::from_shape_fn((nby, nbx), |(y, x)| {
                100.0 + ((y * 37 + x * 11) % 17) as f32 * 0.37 - (x as f32) * 0.1
            });
            let a = spline_map(&mesh, ny, nx, bs);
            let b = spline_map_ref(&mesh, ny, nx, bs);
            assert!(
                a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{nby}x{nbx} mesh, box {bs}, {ny}x{nx}"
            );
        }
    }

    /// The original histogram clipping loop (direct sums and walk), for equality.
    fn histogram_clip_ref(histo: &[u64], mean0: f64, qzero: f64, qscale: f64) -> (f64, f64, f64) {
        let nlevelsm1 = histo.len() as i64 - 1;
        let (mut lcut, mut hcut) = (0i64, nlevelsm1);
        let mut sig = 10.0 * nlevelsm1 as f64;
        let mut sig1 = 1.0;
        let mut mea = (mean0 - qzero) / qscale;
        let mut med = mea;
        let h = |i: i64| -> u64 {
            if i >= 0 && i <= nlevelsm1 {
                histo[i as usize]
            } else {
                0
            }
        };
        let mut iter = 0;
        while iter < 100 && sig >= 0.1 && (sig / sig1 - 1.0).abs() > 1e-4 {
            iter += 1;
            sig1 = sig;
            let (mut sum, mut m1, mut m2) = (0u64, 0.0f64, 0.0f64);
            let (mut lowsum, mut highsum) = (0u64, 0u64);
            let (mut lo, mut hi) = (lcut, hcut);
            for i in lcut..=hcut {
                if lowsum < highsum {
                    lowsum += h(lo);
                    lo += 1;
                } else {
                    highsum += h(hi);
                    hi -= 1;
                }
                let p = h(i);
                sum += p;
                let dp = p as f64 * i as f64;
                m1 += dp;
                m2 += dp * i as f64;
            }
            med = if hi >= 0 {
                let denom = 2.0 * h(lo).max(h(hi)) as f64;
                let corr = if denom > 0.0 {
                    (highsum as f64 - lowsum as f64) / denom
                } else {
                    0.0
                };
                hi as f64 + 0.5 + corr
            } else {
                0.0
            };
            if sum > 0 {
                mea = m1 / sum as f64;
                m2 = m2 / sum as f64 - mea * mea;
            } else {
                mea = 0.0;
            }
            sig = if m2 > 0.0 { m2.sqrt() } else { 0.0 };
            let t = med - 3.0 * sig;
            lcut = if t > 0.0 { (t + 0.5) as i64 } else { 0 };
            let t = med + 3.0 * sig;
            hcut = if t < nlevelsm1 as f64 {
                if t > 0.0 {
                    (t + 0.5) as i64
                } else {
                    (t - 0.5) as i64
                }
            } else {
                nlevelsm1
            };
        }
        (mea, med, sig)
    }

    #[test]
    fn histogram_clip_is_bitwise_the_direct_loop() {
        let mut state = 99u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for case in 0..60 {
            let nl = [1usize, 2, 7, 300, 4096][case % 5];
            // Noisy Gaussian-ish histogram with a tail, plus empty and spiky variants.
            let c = nl as f64 * (0.3 + 0.4 * next());
            let w = nl as f64 * (0.02 + 0.2 * next());
            let histo: Vec<u64> = (0..nl)
                .map(|i| {
                    let z = (i as f64 - c) / w;
                    let base =
                        6.0 * (-0.5 * z * z).exp() + if z > 0.0 { 0.5 * (-z).exp() } else { 0.0 };
                    let v = (base * (0.5 + next())).floor() as u64;
                    if case % 11 == 3 && i % 5 == 0 {
                        v + 20
                    } else {
                        v
                    }
                })
                .collect();
            let a = histogram_clip(&histo, 0.0, -1.0, 0.1, &mut Default::default());
            let b = histogram_clip_ref(&histo, 0.0, -1.0, 0.1);
            assert_eq!(
                (a.0.to_bits(), a.1.to_bits(), a.2.to_bits()),
                (b.0.to_bits(), b.1.to_bits(), b.2.to_bits()),
                "case {case}: {a:?} vs {b:?}"
            );
        }
    }

    /// The direct two-pointer walk that [`median_split`] replaces.
    fn median_split_ref(histo: &[u64], lcut: i64, hcut: i64) -> (i64, i64, u64, u64) {
        let (mut lowsum, mut highsum) = (0u64, 0u64);
        let (mut lo, mut hi) = (lcut, hcut);
        for _ in lcut..=hcut {
            if lowsum < highsum {
                lowsum += histo[lo as usize];
                lo += 1;
            } else {
                highsum += histo[hi as usize];
                hi -= 1;
            }
        }
        (lo, hi, lowsum, highsum)
    }

    #[test]
    fn median_split_equals_two_pointer_walk() {
        // Deterministic pseudo-random histograms with empty runs, spikes and ties.
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        let mut checked = 0;
        for case in 0..400 {
            let n = 1 + (next() % 60) as usize;
            let histo: Vec<u64> = (0..n)
                .map(|_| match next() % 5 {
                    0 | 1 => 0,
                    2 => 1 + next() % 3,
                    3 => next() % 9,
                    _ => {
                        if case % 7 == 0 {
                            50
                        } else {
                            2
                        }
                    }
                })
                .collect();
            let mut c0 = vec![0u64];
            for &p in &histo {
                c0.push(c0.last().unwrap() + p);
            }
            for _ in 0..8 {
                let lcut = (next() % n as u64) as i64;
                let hcut = lcut + (next() % (n as u64 - lcut as u64)) as i64;
                assert_eq!(
                    median_split(&c0, lcut, hcut),
                    median_split_ref(&histo, lcut, hcut),
                    "{histo:?} {lcut} {hcut}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 3200);
        assert_eq!(median_split(&[0, 3, 5], 1, 0), (1, 0, 0, 0));
    }

    #[test]
    fn filling_uses_nearest_good_boxes() {
        let stats = vec![Some((1.0, 0.1)), None, Some((3.0, 0.3)), None];
        let (b, s) = fill_bad_boxes(&stats, 2, 2);
        // Box (0,1): nearest good box is (0,0) (distance 1); (1,0) is at sqrt(2).
        assert_eq!(b[[0, 1]], 1.0);
        assert!((s[[0, 1]] - 0.1).abs() < 1e-6);
        assert_eq!(b[[1, 1]], 3.0);
        let stats = vec![Some((1.0, 0.1)), None, None, Some((3.0, 0.3))];
        let (b, s) = fill_bad_boxes(&stats, 2, 2);
        // Box (0,1) is at distance 1 from both good boxes: their mean.
        assert_eq!(b[[0, 1]], 2.0);
        assert!((s[[0, 1]] - 0.2).abs() < 1e-6);
    }
}
