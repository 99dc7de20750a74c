//! Candidates on the significance image: detection, rejection, photometry.

use ndarray::{Array2, ArrayView2};
use serde::Serialize;
use source_extract::{ApertureParams, Background, DetectParams, Object};

use crate::subtract::{Method, Subtraction};

/// Parameters of candidate detection (see [`find_candidates`]).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CandidateParams {
    /// Detection threshold on the significance image, in sigma (default 5).
    pub threshold: f64,
    /// Minimum connected pixels above the threshold (default 3).
    pub min_area: usize,
    /// Also look for negative candidates (something that faded), default false.
    pub negative: bool,
    /// Reject candidates within this many pixels of the image edge (default: 2 x FWHM, at
    /// least 5 px).
    pub edge: Option<f64>,
    /// Reject candidates within this many FWHM of a saturated science pixel (default 3).
    pub saturation_radius_fwhm: f64,
    /// Reject candidates whose central pixel (3x3 box) touches the result mask (default true).
    pub reject_masked: bool,
    /// Aperture radius for photometry in units of the FWHM (default 1.5), for methods whose
    /// result has no PSF-photometry plane.
    pub aperture_fwhm: f64,
    /// Photometric zero point: `mag = zp - 2.5 log10(flux)` (default none: no magnitudes).
    pub zero_point: Option<f64>,
}

impl Default for CandidateParams {
    fn default() -> Self {
        Self {
            threshold: 5.0,
            min_area: 3,
            negative: false,
            edge: None,
            saturation_radius_fwhm: 3.0,
            reject_masked: true,
            aperture_fwhm: 1.5,
            zero_point: None,
        }
    }
}

/// One candidate: a significant, unmasked, not-at-the-edge source in the difference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateRow {
    /// 1-based running number.
    pub id: usize,
    /// Column (0-based pixel coordinate), windowed centroid on the significance image.
    pub x: f64,
    /// Row (0-based).
    pub y: f64,
    /// Right ascension (degrees) when the science image has a WCS.
    pub ra: Option<f64>,
    /// Declination (degrees).
    pub dec: Option<f64>,
    /// Peak significance (sigma; negative for a fading source).
    pub significance: f64,
    /// Flux in the difference (science ADU): PSF photometry for ZOGY, aperture otherwise.
    pub flux: f64,
    /// Its 1-sigma error.
    pub flux_err: f64,
    /// `flux / flux_err`.
    pub snr: f64,
    /// AB-like magnitude from the zero point (when given and flux > 0).
    pub mag: Option<f64>,
    /// Magnitude error.
    pub mag_err: Option<f64>,
    /// Pixels above the threshold.
    pub npix: usize,
    /// Detection flags (source-extract `FLAG_*`).
    pub flags: u32,
    /// Adjust fit p-value (high = explained by a small shift/rescale: likely an artefact).
    /// For ZOGY it allows for the correlated noise of the cross-convolved planes (see
    /// [`super::candidate_cutout`]).
    pub adjust_pvalue: Option<f64>,
    /// Adjust fit chi2 before / after and shift.
    pub adjust_chi2_0: Option<f64>,
    /// chi2 after the adjust fit.
    pub adjust_chi2: Option<f64>,
    /// Fitted x shift of the adjust fit, pixels.
    pub adjust_dx: Option<f64>,
    /// Fitted y shift.
    pub adjust_dy: Option<f64>,
    /// Fitted template scale.
    pub adjust_scale: Option<f64>,
}

/// Counts of rejected detections, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rejections {
    /// Centre on or next to a masked pixel.
    pub masked: usize,
    /// Too close to the edge.
    pub edge: usize,
    /// Too close to a saturated star.
    pub saturated: usize,
}

/// Detects candidates on `sub.significance`, rejects those on masked pixels, at edges and near
/// saturated science pixels, and measures their flux.
pub fn find_candidates(
    sub: &Subtraction,
    science: &ArrayView2<f32>,
    saturation: Option<f64>,
    fwhm: f64,
    params: &CandidateParams,
) -> Result<(Vec<CandidateRow>, Rejections), source_extract::ExtractError> {
    let (ny, nx) = sub.significance.dim();
    let fwhm = if fwhm.is_finite() && fwhm > 0.0 {
        fwhm
    } else {
        3.0
    };
    // The significance image is in sigma units already: zero background, unit RMS.
    let bg = Background {
        background: Array2::zeros((ny, nx)),
        rms: Array2::ones((ny, nx)),
        global_background: 0.0,
        global_rms: 1.0,
        mesh_background: Array2::zeros((1, 1)),
        mesh_rms: Array2::ones((1, 1)),
        n_filled: 0,
    };
    // Scorr is already matched-filtered; diff/noise is not: filter it with the PSF's Gaussian.
    let filter_fwhm = (sub.method != Method::Zogy).then_some(fwhm);
    let dp = DetectParams {
        threshold: params.threshold,
        min_area: params.min_area,
        filter_fwhm,
        deblend: true,
        aperture_radius: (params.aperture_fwhm * fwhm).max(1.0),
        annulus: None,
        ..Default::default()
    };
    let clean = sub
        .significance
        .mapv(|v| if v.is_finite() { v } else { 0.0 });
    let mut found: Vec<(Object, f64)> =
        source_extract::detect(&clean.view(), &bg, Some(&sub.mask.view()), &dp)?
            .into_iter()
            .map(|o| (o, 1.0))
            .collect();
    if params.negative {
        let neg = clean.mapv(|v| -v);
        found.extend(
            source_extract::detect(&neg.view(), &bg, Some(&sub.mask.view()), &dp)?
                .into_iter()
                .map(|o| (o, -1.0)),
        );
    }
    let edge = params.edge.unwrap_or((2.0 * fwhm).max(5.0));
    let sat_mask = saturation.map(|level| {
        let sat = science.mapv(|v| v.is_finite() && f64::from(v) >= level);
        let r = (params.saturation_radius_fwhm * fwhm).ceil() as usize;
        diffim_core::mask::dilate(&sat.view(), r)
    });
    let mut rej = Rejections::default();
    let mut kept = Vec::new();
    for (o, sign) in found {
        let (cx, cy) = (o.x.round(), o.y.round());
        if o.x < edge || o.y < edge || o.x > nx as f64 - 1.0 - edge || o.y > ny as f64 - 1.0 - edge
        {
            rej.edge += 1;
            continue;
        }
        let (cxu, cyu) = (cx as usize, cy as usize);
        if params.reject_masked {
            let touches = (cyu.saturating_sub(1)..=(cyu + 1).min(ny - 1))
                .any(|y| (cxu.saturating_sub(1)..=(cxu + 1).min(nx - 1)).any(|x| sub.mask[[y, x]]));
            if touches {
                rej.masked += 1;
                continue;
            }
        }
        if sat_mask.as_ref().is_some_and(|m| m[[cyu, cxu]]) {
            rej.saturated += 1;
            continue;
        }
        kept.push((o, sign));
    }
    // Photometry: the PSF-photometry planes when the method made them, else an aperture on diff.
    let positions: Vec<(f64, f64)> = kept.iter().map(|(o, _)| (o.x, o.y)).collect();
    let psf_phot = sub.extra("flux").zip(sub.extra("flux_err"));
    let aper = if psf_phot.is_none() {
        let ap = ApertureParams {
            radius: (params.aperture_fwhm * fwhm).max(1.0),
            annulus: None,
        };
        source_extract::aperture_photometry(
            &sub.diff.view(),
            &sub.noise.view(),
            Some(&sub.mask.view()),
            &positions,
            &ap,
        )
    } else {
        Vec::new()
    };
    let mut rows = Vec::with_capacity(kept.len());
    for (k, (o, sign)) in kept.iter().enumerate() {
        let (cxu, cyu) = (o.x.round() as usize, o.y.round() as usize);
        let peak_sig = peak_in_box(&sub.significance.view(), cxu, cyu, 1, *sign);
        let (flux, flux_err) = match (&psf_phot, aper.get(k)) {
            (Some((f, fe)), _) => {
                // The PSF-photometry image peaks at the source position.
                let (px, py) = argmax_in_box(&f.view(), cxu, cyu, 1, *sign);
                (f64::from(f[[py, px]]), f64::from(fe[[py, px]]))
            }
            (None, Some(p)) => (p.flux, p.flux_err),
            (None, None) => (f64::NAN, f64::NAN),
        };
        let snr = flux / flux_err;
        let (mag, mag_err) = match params.zero_point {
            Some(zp) if flux > 0.0 && flux.is_finite() => (
                Some(zp - 2.5 * flux.log10()),
                Some(2.5 / std::f64::consts::LN_10 * flux_err / flux),
            ),
            _ => (None, None),
        };
        rows.push(CandidateRow {
            id: 0,
            x: o.x,
            y: o.y,
            ra: None,
            dec: None,
            significance: peak_sig,
            flux,
            flux_err,
            snr,
            mag,
            mag_err,
            npix: o.npix,
            flags: o.flags,
            adjust_pvalue: None,
            adjust_chi2_0: None,
            adjust_chi2: None,
            adjust_dx: None,
            adjust_dy: None,
            adjust_scale: None,
        });
    }
    rows.sort_by(|a, b| b.significance.abs().total_cmp(&a.significance.abs()));
    for (i, r) in rows.iter_mut().enumerate() {
        r.id = i + 1;
    }
    Ok((rows, rej))
}

/// The signed extreme of `a` in a `(2h+1)` box around `(x, y)` (`sign` = +1 max, -1 min).
fn peak_in_box(a: &ArrayView2<f32>, x: usize, y: usize, h: usize, sign: f64) -> f64 {
    let (px, py) = argmax_in_box(a, x, y, h, sign);
    f64::from(a[[py, px]])
}

fn argmax_in_box(a: &ArrayView2<f32>, x: usize, y: usize, h: usize, sign: f64) -> (usize, usize) {
    let (ny, nx) = a.dim();
    let mut best = (x.min(nx - 1), y.min(ny - 1));
    let mut bv = f64::NEG_INFINITY;
    for yy in y.saturating_sub(h)..=(y + h).min(ny - 1) {
        for xx in x.saturating_sub(h)..=(x + h).min(nx - 1) {
            let v = sign * f64::from(a[[yy, xx]]);
            if v.is_finite() && v > bv {
                bv = v;
                best = (xx, yy);
            }
        }
    }
    best
}
