//! PSF star selection from a source-extract catalogue, and stamp extraction.

use crate::{PsfError, RejectionSummary, Star, StarSet};
use diffim_core::psf::odd_at_least;
use diffim_core::stats::{mad_std, median};
use ndarray::{Array2, ArrayView2, s};
use rayon::prelude::*;
use source_extract::{Background, FLAG_BLENDED, FLAG_EDGE, FLAG_MASKED, FLAG_SATURATED, Object};

/// Lanczos kernel order used for the sub-pixel re-centring.
const LANCZOS_A: usize = 5;

/// Parameters of [`select_stars`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SelectParams {
    /// Stamp side (odd); `None` (default) = `odd(stamp_fwhm_factor * FWHM)` with FWHM the
    /// median catalogue FWHM of the candidates, clamped to `[min_stamp_size, max_stamp_size]`.
    pub stamp_size: Option<usize>,
    /// Stamp side in FWHMs when `stamp_size` is `None`. Default 5.0 (ProperImage uses a
    /// similar ~4-5 FWHM box).
    pub stamp_fwhm_factor: f64,
    /// Smallest automatic stamp side. Default 11.
    pub min_stamp_size: usize,
    /// Largest automatic stamp side. Default 63.
    pub max_stamp_size: usize,
    /// Lowest catalogue S/N accepted. Default 20.
    pub snr_min: f64,
    /// Highest catalogue S/N accepted (guards against non-linear bright stars). Default 1e6.
    pub snr_max: f64,
    /// A star is crowded when another catalogue object with at least `neighbour_flux_ratio`
    /// of its flux lies within this radius (pixels). `None` (default) = half the stamp
    /// diagonal plus 2 FWHM, so neighbours neither fall into the stamp nor spill into it.
    pub isolation_radius: Option<f64>,
    /// Neighbours fainter than this fraction of the star's flux are ignored. Default 0.01.
    pub neighbour_flux_ratio: f64,
    /// Saturation level of the raw image (ADU): a star with a raw pixel at or above it in its
    /// stamp is rejected (in addition to the catalogue's `FLAG_SATURATED`). Default `None`.
    pub saturation: Option<f64>,
    /// Gain (e-/ADU): adds the star's own Poisson noise to the stamp noise energy used to
    /// weight stars. Default `None` (sky noise only).
    pub gain: Option<f64>,
    /// FWHM and ellipticity (`1 - b/a`) further than this many robust sigmas from the median
    /// are outliers (cosmic rays, galaxies, blends). Default 3.0.
    pub shape_nsigma: f64,
    /// Floor of the robust FWHM sigma, as a fraction of the median FWHM. Default 0.05.
    pub fwhm_sigma_floor: f64,
    /// Floor of the robust ellipticity sigma. Default 0.03.
    pub ellipticity_sigma_floor: f64,
    /// Largest distance (pixels) between the catalogue position and the re-measured centroid.
    /// Default 1.5.
    pub max_centroid_shift: f64,
    /// Keep at most this many stars (the highest S/N). Default 1000.
    pub max_stars: usize,
    /// Subtract the median of each stamp's outer ring after resampling (default false). The
    /// smooth mesh background can leave a local pedestal under stars (about 1e-4 per pixel of
    /// the unit-sum stamp on sky-sim, ~3% of a 19x19 stamp's sum), which biases PSF-fit fluxes;
    /// but the ring also holds the PSF's own wings, and removing it biases wide (Moffat)
    /// profiles (worst L2 error 2.7% -> 3.3% on the varying-PSF test). ZOGY's glue removes the
    /// pedestal from the PSFs it uses (`zogy_core::remove_pedestal`).
    pub local_pedestal: bool,
}

impl Default for SelectParams {
    fn default() -> Self {
        Self {
            stamp_size: None,
            stamp_fwhm_factor: 5.0,
            min_stamp_size: 11,
            max_stamp_size: 63,
            snr_min: 20.0,
            snr_max: 1e6,
            isolation_radius: None,
            neighbour_flux_ratio: 0.01,
            saturation: None,
            gain: None,
            shape_nsigma: 3.0,
            fwhm_sigma_floor: 0.05,
            ellipticity_sigma_floor: 0.03,
            max_centroid_shift: 1.5,
            max_stars: 1000,
            local_pedestal: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Saturated,
    Edge,
    Masked,
    Blended,
    LowSnr,
    HighSnr,
    Crowded,
    Shape,
    BadStamp,
    OverLimit,
}

fn count(summary: &mut RejectionSummary, r: Reason) {
    match r {
        Reason::Saturated => summary.saturated += 1,
        Reason::Edge => summary.edge += 1,
        Reason::Masked => summary.masked += 1,
        Reason::Blended => summary.blended += 1,
        Reason::LowSnr => summary.low_snr += 1,
        Reason::HighSnr => summary.high_snr += 1,
        Reason::Crowded => summary.crowded += 1,
        Reason::Shape => summary.shape += 1,
        Reason::BadStamp => summary.bad_stamp += 1,
        Reason::OverLimit => summary.over_limit += 1,
    }
}

fn ellipticity(o: &Object) -> f64 {
    if o.a > 0.0 && o.b >= 0.0 {
        1.0 - o.b / o.a
    } else {
        f64::NAN
    }
}

/// Selects PSF stars from a catalogue and cuts their stamps.
///
/// Cuts, in order (an object is counted under the first it fails, see
/// [`RejectionSummary`]): saturation (flag or raw level), edge (flag, or the stamp plus the
/// interpolation margin leaves the image), masked/non-finite pixels in the stamp (or flag),
/// blended (flag), S/N band, isolation, shape outliers (robust FWHM / ellipticity), the
/// `max_stars` limit (highest S/N kept), then stamp quality (centroid within
/// `max_centroid_shift`, positive flux).
///
/// Each stamp is background-subtracted with the `Background` map, re-centred on its windowed
/// centroid (SExtractor `XWIN`) by Lanczos-3 resampling (the centroid is then re-measured
/// and a second correction applied when it is off by more than 0.01 px), and normalised to
/// unit sum. The noise energy of each stamp comes from the `Background` RMS map (plus the
/// star's Poisson noise when `gain` is set).
///
/// # Errors
/// [`PsfError::ShapeMismatch`] when the background or mask does not match the image,
/// [`PsfError::InvalidParameter`] for an even `stamp_size`, [`PsfError::AllSaturated`] when
/// every object that passed the other early cuts is saturated, [`PsfError::NoUsableStars`]
/// when nothing survives.
pub fn select_stars(
    image: &ArrayView2<f32>,
    background: &Background,
    mask: Option<&ArrayView2<bool>>,
    objects: &[Object],
    params: &SelectParams,
) -> Result<StarSet, PsfError> {
    let dim = image.dim();
    for (what, got) in [
        ("background", background.background.dim()),
        ("background rms", background.rms.dim()),
    ] {
        if got != dim {
            return Err(PsfError::ShapeMismatch {
                what,
                expected: dim,
                got,
            });
        }
    }
    if let Some(m) = mask
        && m.dim() != dim
    {
        return Err(PsfError::ShapeMismatch {
            what: "mask",
            expected: dim,
            got: m.dim(),
        });
    }
    if let Some(sz) = params.stamp_size
        && (sz % 2 == 0 || sz < 3)
    {
        return Err(PsfError::InvalidParameter {
            name: "stamp_size",
            reason: format!("must be odd and >= 3, got {sz}"),
        });
    }
    let mut summary = RejectionSummary {
        candidates: objects.len(),
        ..Default::default()
    };
    let mut status: Vec<Option<Reason>> = vec![None; objects.len()];

    // 1. Catalogue flags and S/N.
    for (st, o) in status.iter_mut().zip(objects) {
        *st = if o.flags & FLAG_SATURATED != 0 {
            Some(Reason::Saturated)
        } else if o.flags & FLAG_EDGE != 0 || !(o.x.is_finite() && o.y.is_finite()) {
            Some(Reason::Edge)
        } else if o.flags & FLAG_MASKED != 0 {
            Some(Reason::Masked)
        } else if o.flags & FLAG_BLENDED != 0 {
            Some(Reason::Blended)
        } else if !(o.snr >= params.snr_min) {
            Some(Reason::LowSnr)
        } else if o.snr > params.snr_max {
            Some(Reason::HighSnr)
        } else {
            None
        };
    }
    // Stamp size from the candidates' FWHM.
    let fwhm_ref = median(
        objects
            .iter()
            .zip(&status)
            .filter(|(o, s)| s.is_none() && o.fwhm > 0.0)
            .map(|(o, _)| o.fwhm),
    );
    let Some(fwhm_ref) = fwhm_ref else {
        return Err(finish_error(&mut summary, &status));
    };
    let size = params.stamp_size.unwrap_or_else(|| {
        odd_at_least(params.stamp_fwhm_factor * fwhm_ref).clamp(
            params.min_stamp_size.max(3) | 1,
            params.max_stamp_size.max(3) | 1,
        )
    });
    let h = size / 2;
    let margin = LANCZOS_A + params.max_centroid_shift.ceil().max(1.0) as usize + 1;
    let half = h + margin;

    // 2. Geometry, saturation level and masked pixels in the stamp region.
    let (ny, nx) = dim;
    for (st, o) in status.iter_mut().zip(objects) {
        if st.is_some() {
            continue;
        }
        let (ix, iy) = (o.x.round(), o.y.round());
        if ix < half as f64
            || iy < half as f64
            || ix + half as f64 > (nx - 1) as f64
            || iy + half as f64 > (ny - 1) as f64
        {
            *st = Some(Reason::Edge);
            continue;
        }
        let (ix, iy) = (ix as usize, iy as usize);
        let reg = s![iy - half..=iy + half, ix - half..=ix + half];
        // One pass over the stamp region: a pixel at the saturation level (that reason
        // first), a masked or non-finite pixel.
        let (mut saturated, mut bad) = (false, false);
        for (j, row) in image.slice(reg).outer_iter().enumerate() {
            for &v in row {
                saturated |= params.saturation.is_some_and(|sat| v as f64 >= sat);
                bad |= !v.is_finite();
            }
            if let Some(m) = mask {
                bad |= m
                    .slice(s![iy - half + j, ix - half..=ix + half])
                    .iter()
                    .any(|&b| b);
            }
        }
        if saturated {
            *st = Some(Reason::Saturated);
            continue;
        }
        if bad {
            *st = Some(Reason::Masked);
        }
    }

    // 3. Isolation (against every catalogue object, flagged or not).
    let iso = params
        .isolation_radius
        .unwrap_or(h as f64 * std::f64::consts::SQRT_2 + 2.0 * fwhm_ref);
    let cell = iso.max(1.0);
    let mut grid: std::collections::HashMap<(i64, i64), Vec<usize>> = Default::default();
    for (k, o) in objects.iter().enumerate() {
        if o.x.is_finite() && o.y.is_finite() {
            grid.entry(((o.x / cell).floor() as i64, (o.y / cell).floor() as i64))
                .or_default()
                .push(k);
        }
    }
    for k in 0..objects.len() {
        if status[k].is_some() {
            continue;
        }
        let o = &objects[k];
        let (gx, gy) = ((o.x / cell).floor() as i64, (o.y / cell).floor() as i64);
        let mut crowded = false;
        'outer: for dy in -1..=1 {
            for dx in -1..=1 {
                if let Some(list) = grid.get(&(gx + dx, gy + dy)) {
                    for &q in list {
                        if q == k {
                            continue;
                        }
                        let p = &objects[q];
                        let d2 = (p.x - o.x).powi(2) + (p.y - o.y).powi(2);
                        let bright = !(p.flux < params.neighbour_flux_ratio * o.flux);
                        if d2 < iso * iso && bright {
                            crowded = true;
                            break 'outer;
                        }
                    }
                }
            }
        }
        if crowded {
            status[k] = Some(Reason::Crowded);
        }
    }

    // 4. Shape outliers among the survivors.
    let alive: Vec<usize> = (0..objects.len())
        .filter(|&k| status[k].is_none())
        .collect();
    if alive.len() >= 3 {
        let f = |k: &usize| objects[*k].fwhm;
        let e = |k: &usize| ellipticity(&objects[*k]);
        let fm = median(alive.iter().map(f)).unwrap_or(fwhm_ref);
        let fs = mad_std(alive.iter().map(f))
            .unwrap_or(0.0)
            .max(params.fwhm_sigma_floor * fm);
        let em = median(alive.iter().map(e)).unwrap_or(0.0);
        let es = mad_std(alive.iter().map(e))
            .unwrap_or(0.0)
            .max(params.ellipticity_sigma_floor);
        for &k in &alive {
            let (fk, ek) = (f(&k), e(&k));
            let bad_f = !((fk - fm).abs() <= params.shape_nsigma * fs);
            let bad_e = !(ek - em <= params.shape_nsigma * es);
            if bad_f || bad_e {
                status[k] = Some(Reason::Shape);
            }
        }
    }

    // 5. At most max_stars, highest S/N first.
    let mut alive: Vec<usize> = (0..objects.len())
        .filter(|&k| status[k].is_none())
        .collect();
    alive.sort_by(|&a, &b| objects[b].snr.total_cmp(&objects[a].snr));
    for &k in alive.iter().skip(params.max_stars) {
        status[k] = Some(Reason::OverLimit);
    }
    alive.truncate(params.max_stars);
    alive.sort_unstable();

    // 6. Stamps.
    let results: Vec<(usize, Result<Star, Reason>)> = alive
        .par_iter()
        .map(|&k| {
            (
                k,
                cut_stamp(
                    image,
                    background,
                    &objects[k],
                    k,
                    size,
                    margin,
                    fwhm_ref,
                    params,
                ),
            )
        })
        .collect();
    let mut stars = Vec::with_capacity(results.len());
    for (k, r) in results {
        match r {
            Ok(star) => stars.push(star),
            Err(reason) => status[k] = Some(reason),
        }
    }
    for r in status.iter().flatten() {
        count(&mut summary, *r);
    }
    summary.accepted = stars.len();
    if stars.is_empty() {
        return Err(finish_error(&mut RejectionSummary::default(), &status).with_summary(summary));
    }
    Ok(StarSet {
        stars,
        stamp_size: size,
        fwhm: fwhm_ref,
        image_shape: dim,
        rejections: summary,
    })
}

trait WithSummary {
    fn with_summary(self, s: RejectionSummary) -> Self;
}

impl WithSummary for PsfError {
    fn with_summary(self, s: RejectionSummary) -> Self {
        match self {
            PsfError::AllSaturated { saturated, .. } => PsfError::AllSaturated {
                saturated,
                rejections: s,
            },
            _ => PsfError::NoUsableStars { rejections: s },
        }
    }
}

/// The error for an empty selection: `AllSaturated` when saturation is the only reason.
fn finish_error(summary: &mut RejectionSummary, status: &[Option<Reason>]) -> PsfError {
    let candidates = status.len();
    *summary = RejectionSummary {
        candidates,
        ..Default::default()
    };
    for r in status.iter().flatten() {
        count(summary, *r);
    }
    if summary.saturated > 0 && summary.saturated == summary.rejected() {
        PsfError::AllSaturated {
            saturated: summary.saturated,
            rejections: *summary,
        }
    } else {
        PsfError::NoUsableStars {
            rejections: *summary,
        }
    }
}

fn lanczos(x: f64) -> f64 {
    let a = LANCZOS_A as f64;
    if x.abs() < 1e-12 {
        1.0
    } else if x.abs() >= a {
        0.0
    } else {
        let px = std::f64::consts::PI * x;
        a * px.sin() * (px / a).sin() / (px * px)
    }
}

/// Windowed centroid (SExtractor `XWIN`) of `img` starting at `(x0, y0)` (local pixel
/// coordinates); `None` when the weighted flux is not positive.
pub(crate) fn windowed_centroid(
    img: &ArrayView2<f64>,
    x0: f64,
    y0: f64,
    sigma: f64,
) -> Option<(f64, f64)> {
    let (ny, nx) = img.dim();
    let (mut x, mut y) = (x0, y0);
    let r = (4.0 * sigma).ceil() as isize;
    let inv = 1.0 / (2.0 * sigma * sigma);
    for _ in 0..20 {
        let (mut sw, mut sx, mut sy) = (0.0, 0.0, 0.0);
        let (cx, cy) = (x.round() as isize, y.round() as isize);
        for j in (cy - r).max(0)..=(cy + r).min(ny as isize - 1) {
            for i in (cx - r).max(0)..=(cx + r).min(nx as isize - 1) {
                let (dx, dy) = (i as f64 - x, j as f64 - y);
                let w = (-(dx * dx + dy * dy) * inv).exp() * img[[j as usize, i as usize]];
                sw += w;
                sx += w * dx;
                sy += w * dy;
            }
        }
        if !(sw > 0.0) {
            return None;
        }
        let (ddx, ddy) = (2.0 * sx / sw, 2.0 * sy / sw);
        // Damp large steps: the window is a Gaussian of the PSF width.
        let step = (ddx * ddx + ddy * ddy).sqrt();
        let f = if step > sigma { sigma / step } else { 1.0 };
        x += ddx * f;
        y += ddy * f;
        if step < 1e-5 {
            break;
        }
    }
    (x.is_finite() && y.is_finite()).then_some((x, y))
}

/// Resamples `cut` on the grid `(yc + j - h, xc + i - h)`, `j, i = 0..2h+1`, with separable
/// normalised Lanczos-3 weights (one fractional shift for the whole stamp).
fn resample(cut: &ArrayView2<f64>, xc: f64, yc: f64, h: usize) -> Option<Array2<f64>> {
    let size = 2 * h + 1;
    let a = LANCZOS_A as isize;
    let (fx, fy) = (xc.floor(), yc.floor());
    let (tx, ty) = (xc - fx, yc - fy);
    let weights = |t: f64| -> Vec<f64> {
        let w: Vec<f64> = (-a + 1..=a).map(|k| lanczos(t - k as f64)).collect();
        let s: f64 = w.iter().sum();
        w.into_iter().map(|v| v / s).collect()
    };
    let (wx, wy) = (weights(tx), weights(ty));
    let (ny, nx) = cut.dim();
    let x0 = fx as isize - h as isize - a + 1;
    let y0 = fy as isize - h as isize - a + 1;
    let ntap = wx.len();
    if x0 < 0 || y0 < 0 || x0 as usize + size + ntap - 1 > nx || y0 as usize + size + ntap - 1 > ny
    {
        return None;
    }
    let (x0, y0) = (x0 as usize, y0 as usize);
    // Rows first (x), then columns (y); each sum over the taps in order, as
    // `(0..ntap).map(..).sum()`.
    let nrows = size + ntap - 1;
    let mut rows = Vec::with_capacity(nrows * size);
    for j in 0..nrows {
        let src = cut.row(y0 + j);
        let src: std::borrow::Cow<[f64]> = match src.to_slice() {
            Some(s) => s.into(),
            None => src.to_vec().into(),
        };
        let src = &src[x0..x0 + size + ntap - 1];
        rows.extend(
            src.windows(ntap)
                .map(|w| wx.iter().zip(w).map(|(a, b)| a * b).sum::<f64>()),
        );
    }
    let out: Vec<f64> = (0..size * size)
        .map(|ji| {
            let (j, i) = (ji / size, ji % size);
            (0..ntap)
                .map(|k| wy[k] * rows[(j + k) * size + i])
                .sum::<f64>()
        })
        .collect();
    Array2::from_shape_vec((size, size), out).ok()
}

#[allow(clippy::too_many_arguments)]
fn cut_stamp(
    image: &ArrayView2<f32>,
    background: &Background,
    o: &Object,
    index: usize,
    size: usize,
    margin: usize,
    fwhm_ref: f64,
    params: &SelectParams,
) -> Result<Star, Reason> {
    let h = size / 2;
    let half = h + margin;
    let (ix, iy) = (o.x.round() as usize, o.y.round() as usize);
    let reg = s![iy - half..=iy + half, ix - half..=ix + half];
    let bkg = background.background.slice(reg);
    let cut = ndarray::Zip::from(image.slice(reg))
        .and(&bkg)
        .map_collect(|&v, &b| v as f64 - b as f64);
    let sigma = (if o.fwhm > 0.0 { o.fwhm } else { fwhm_ref }) / crate::profile::FWHM_PER_SIGMA;
    let sigma = sigma.max(0.5);
    let (lx, ly) = (o.x - (ix - half) as f64, o.y - (iy - half) as f64);
    let (mut xc, mut yc) = windowed_centroid(&cut.view(), lx, ly, sigma).ok_or(Reason::BadStamp)?;
    if ((xc - lx).powi(2) + (yc - ly).powi(2)).sqrt() > params.max_centroid_shift {
        return Err(Reason::BadStamp);
    }
    let mut stamp = resample(&cut.view(), xc, yc, h).ok_or(Reason::BadStamp)?;
    let c = h as f64;
    let mut res = windowed_centroid(&stamp.view(), c, c, sigma).ok_or(Reason::BadStamp)?;
    if (res.0 - c).abs() > 0.01 || (res.1 - c).abs() > 0.01 {
        xc += res.0 - c;
        yc += res.1 - c;
        stamp = resample(&cut.view(), xc, yc, h).ok_or(Reason::BadStamp)?;
        res = windowed_centroid(&stamp.view(), c, c, sigma).ok_or(Reason::BadStamp)?;
    }
    // The mesh background is smooth, so a star can sit on a local pedestal (from neighbours,
    // or the mesh's own bias near bright stars): remove the median of the stamp's outer ring.
    // Left in, a pedestal of 1e-4 per pixel is ~3% of the unit sum of a 19x19 stamp and
    // biases every PSF-fit flux by that much.
    if params.local_pedestal {
        let ring = stamp
            .indexed_iter()
            .filter(|((j, i), _)| j.abs_diff(h).max(i.abs_diff(h)) == h)
            .map(|(_, &v)| v);
        if let Some(ped) = diffim_core::stats::median(ring) {
            stamp.mapv_inplace(|v| v - ped);
        }
    }
    let flux: f64 = stamp.sum();
    if !(flux > 0.0) || stamp.iter().any(|v| !v.is_finite()) {
        return Err(Reason::BadStamp);
    }
    stamp.mapv_inplace(|v| v / flux);
    let rms = background.rms.slice(s![iy - h..=iy + h, ix - h..=ix + h]);
    let var_sum: f64 = rms.iter().map(|&r| (r as f64) * (r as f64)).sum();
    let sky_noise_energy = var_sum / (flux * flux);
    let mut noise_energy = sky_noise_energy;
    if let Some(g) = params.gain
        && g > 0.0
    {
        noise_energy += 1.0 / (g * flux);
    }
    Ok(Star {
        index,
        x: xc + (ix - half) as f64,
        y: yc + (iy - half) as f64,
        flux,
        snr: o.snr,
        fwhm: o.fwhm,
        noise_energy,
        sky_noise_energy,
        residual_offset: (res.1 - c, res.0 - c),
        stamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffim_core::psf::gaussian_stamp;

    /// The original resampling (2-D indexed sums), for equality.
    fn resample_ref(cut: &ArrayView2<f64>, xc: f64, yc: f64, h: usize) -> Option<Array2<f64>> {
        let size = 2 * h + 1;
        let a = LANCZOS_A as isize;
        let (fx, fy) = (xc.floor(), yc.floor());
        let (tx, ty) = (xc - fx, yc - fy);
        let weights = |t: f64| -> Vec<f64> {
            let w: Vec<f64> = (-a + 1..=a).map(|k| lanczos(t - k as f64)).collect();
            let s: f64 = w.iter().sum();
            w.into_iter().map(|v| v / s).collect()
        };
        let (wx, wy) = (weights(tx), weights(ty));
        let (ny, nx) = cut.dim();
        let x0 = fx as isize - h as isize - a + 1;
        let y0 = fy as isize - h as isize - a + 1;
        let ntap = wx.len();
        if x0 < 0
            || y0 < 0
            || x0 as usize + size + ntap - 1 > nx
            || y0 as usize + size + ntap - 1 > ny
        {
            return None;
        }
        let (x0, y0) = (x0 as usize, y0 as usize);
        let rows = Array2::from_shape_fn((size + ntap - 1, size), |(j, i)| {
            (0..ntap)
                .map(|k| wx[k] * cut[[y0 + j, x0 + i + k]])
                .sum::<f64>()
        });
        Some(Array2::from_shape_fn((size, size), |(j, i)| {
            (0..ntap).map(|k| wy[k] * rows[[j + k, i]]).sum::<f64>()
        }))
    }

    #[test]
    fn resample_is_bitwise_the_indexed_sums() {
        let cut = Array2::from_shape_fn((41, 45), |(y, x)| {
            ((x * 37 + y * 11) % 19) as f64 * 0.37 - 2.0 + (x as f64 * 0.1).sin()
        });
        for k in 0..60 {
            let f = k as f64;
            let (xc, yc) = (10.0 + (f * 0.731) % 25.0, 8.0 + (f * 0.377) % 25.0);
            let h = [3, 5, 9][k % 3];
            let a = resample(&cut.view(), xc, yc, h);
            let b = resample_ref(&cut.view(), xc, yc, h);
            assert_eq!(a.is_some(), b.is_some(), "{xc} {yc} {h}");
            if let (Some(a), Some(b)) = (a, b) {
                assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
            }
            // A non-contiguous (transposed) view too.
            let t = cut.t();
            let a = resample(&t, yc, xc, h);
            let b = resample_ref(&t, yc, xc, h);
            if let (Some(a), Some(b)) = (a, b) {
                assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
            }
        }
    }

    #[test]
    fn recentring_puts_a_shifted_star_at_the_middle_pixel() {
        // A Gaussian star at a sub-pixel offset in a 41x41 cut, centred at (20.3, 19.6).
        let big = gaussian_stamp(41, 3.5, -0.4, 0.3);
        let sigma = 3.5 / crate::profile::FWHM_PER_SIGMA;
        let (xc, yc) = windowed_centroid(&big.view(), 20.0, 20.0, sigma).unwrap();
        assert!(
            (xc - 20.3).abs() < 1e-3 && (yc - 19.6).abs() < 1e-3,
            "{xc} {yc}"
        );
        let st = resample(&big.view(), xc, yc, 7).unwrap();
        let truth = gaussian_stamp(15, 3.5, 0.0, 0.0);
        let st = st.mapv(|v| v / st.sum());
        let err = (&st - &truth).mapv(|v| v * v).sum().sqrt() / truth.mapv(|v| v * v).sum().sqrt();
        assert!(err < 4e-3, "Lanczos re-centring error {err}");
        let (x2, y2) = windowed_centroid(&st.view(), 7.0, 7.0, sigma).unwrap();
        assert!((x2 - 7.0).abs() < 0.01 && (y2 - 7.0).abs() < 0.01);
    }
}
