//! ZOGY through the common subtraction interface.
//!
//! [`subtract_zogy`] estimates what ZOGY needs and calls [`zogy_core::zogy`]:
//! 1. masks: input masks, NaN/Inf, pixels at or above the saturation level (the given level,
//!    else *hard* saturation detected as a plateau at the data maximum, e.g. 65535), grown by
//!    [`ZogyOptions::saturation_grow`]; flat fill regions (runs of >= 8 identical values along
//!    a row or column, e.g. the constant border of an aligned frame), grown by 2 px;
//! 2. PSF of each image with [`psf_kl::estimate_psf`] (background mesh + detection + star
//!    selection + Karhunen-Loeve fit); its background model is subtracted from the image;
//!    a model whose stamp varies by less than [`ZogyOptions::constant_psf_tolerance`] over
//!    the image is used as a constant PSF (one tile, no seams, ~10x faster);
//! 3. noise maps: the given ones, else [`source_extract::noise_model`] (background RMS plus
//!    source Poisson noise with the image's gain, 1 e-/ADU when unknown: pass the gain when
//!    the header lacks `GAIN`, or the source-noise term is off by that factor);
//! 4. cosmic-ray / hot pixels (sharper than the PSF, [`zogy_core::masks::sharp_pixel_mask`])
//!    are replaced by their local mean and flagged in the output mask (not dilated);
//! 5. stars for the flux ratio: detections of both images matched within 1.5 px, unflagged,
//!    S/N >= 20, the 300 with the highest S/N;
//! 6. [`zogy_core::zogy`] with the KL PSFs (spatially varying: overlapping tiles), the
//!    astrometric noise estimated from the star-to-star scatter of the shifts, and a 2 %
//!    PSF-model error term ([`ZogyParams::psf_error`]).
//!
//! Planes of the [`Subtraction`], all in **science ADU**:
//! - `diff` = `D * F_n / F_D`: ZOGY's `D` rescaled so that a point source of science flux `f`
//!   has total `f` (its PSF is `psf_d`);
//! - `significance` = `Scorr` (eqs. 25-33, N(0,1) on blank sky);
//! - `noise` = `(F_n / F_D) * sqrt(V_S / F_S)`: the background RMS of `diff`, inflated where
//!   the source noise (and astrometric terms) inflate the variance of `S` (so that
//!   `diff / noise` is close to N(0,1) around bright stars too);
//! - extras: `"psf_d"` (odd stamp, unit sum), `"s"` (matched filter `S`), `"flux"` and
//!   `"flux_err"` (PSF-photometry flux of a point source centred on each pixel, `beta S / F_S`,
//!   and its error).

use super::{Method, SubtractError, SubtractInputs, Subtraction, seconds_since};
use ndarray::{Array2, ArrayView2, Zip};
use psf_kl::{PsfEstimateParams, PsfModel, estimate_psf};
use source_extract::{FLAG_SATURATED, NoiseParams, Object, noise_model};
use std::time::Instant;
use zogy_core::masks::{flat_run_mask, inpaint, saturation_mask, sharp_pixel_mask};
use zogy_core::{PsfProvider, ZogyInputs, ZogyParams, remove_pedestal, zogy};

/// Options of [`subtract_zogy`].
#[derive(Debug, Clone)]
pub struct ZogyOptions {
    /// ZOGY parameters (flux ratio fit, tiles, astrometric noise, ...). Default: the
    /// zogy-core defaults with `psf_error = 0.02`.
    pub params: ZogyParams,
    /// PSF estimation (background, detection, star selection, KL fit) for both images.
    pub psf: PsfEstimateParams,
    /// Noise model used when no noise map is given.
    pub noise: NoiseParams,
    /// Growth (pixels) of the saturation mask. Default 5.
    pub saturation_grow: usize,
    /// Mask flat fill regions (runs of >= 8 identical values). Default `true`.
    pub mask_flat: bool,
    /// Significance (sigmas of the Laplacian) of cosmic-ray / hot pixels; `None` disables
    /// their replacement. Default `Some(6.0)`.
    pub cosmic_nsigma: Option<f64>,
    /// How much sharper than the PSF a cosmic-ray / hot pixel must be. Default 2.0.
    pub cosmic_sharpness: f64,
    /// Largest relative change of the PSF stamp over the image (max |P(x) - P(centre)| / max
    /// P(centre), at the corners and edge midpoints) below which the PSF model is treated as
    /// constant. Default 0.02.
    pub constant_psf_tolerance: f64,
}

impl Default for ZogyOptions {
    fn default() -> Self {
        Self {
            params: ZogyParams {
                psf_error: 0.02,
                ..Default::default()
            },
            psf: PsfEstimateParams::default(),
            noise: NoiseParams::default(),
            saturation_grow: 5,
            mask_flat: true,
            cosmic_nsigma: Some(6.0),
            cosmic_sharpness: 2.0,
            constant_psf_tolerance: 0.02,
        }
    }
}

/// A psf-kl model as a ZOGY PSF provider, flagged constant when it hardly varies. The stamps'
/// background pedestal is removed ([`remove_pedestal`]): psf-kl normalises its star stamps
/// including a small positive background residual, which biased beta by ~2.5 % on sky-sim.
struct KlProvider<'a> {
    model: &'a psf_kl::KlPsf,
    constant: Option<Array2<f64>>,
}

impl<'a> KlProvider<'a> {
    fn new(model: &'a psf_kl::KlPsf, shape: (usize, usize), tol: f64) -> Self {
        let (ny, nx) = shape;
        let (xm, ym) = (nx.saturating_sub(1) as f64, ny.saturating_sub(1) as f64);
        let c = remove_pedestal(&model.psf_at(xm / 2.0, ym / 2.0));
        let peak = c.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let varies = [0.0, 0.5, 1.0].iter().any(|&fy| {
            [0.0, 0.5, 1.0].iter().any(|&fx| {
                let p = remove_pedestal(&model.psf_at(fx * xm, fy * ym));
                let d = Zip::from(&p)
                    .and(&c)
                    .fold(0.0f64, |m, a, b| m.max((a - b).abs()));
                d.is_nan() || d > tol * peak
            })
        });
        let constant = (model.n_basis() == 1 || model.degree() == 0 || !varies).then_some(c);
        Self { model, constant }
    }
}

impl PsfProvider for KlProvider<'_> {
    fn psf_at(&self, x: f64, y: f64) -> Array2<f64> {
        match &self.constant {
            Some(c) => c.clone(),
            None => remove_pedestal(&self.model.psf_at(x, y)),
        }
    }
    fn is_constant(&self) -> bool {
        self.constant.is_some()
    }
}

fn input_mask(
    img: &ArrayView2<f32>,
    mask: Option<&ArrayView2<bool>>,
    sat: Option<f64>,
    opts: &ZogyOptions,
) -> Array2<bool> {
    let mut m = diffim_core::mask::finite_mask(img, mask);
    m.zip_mut_with(&saturation_mask(img, sat, opts.saturation_grow), |a, &b| {
        *a |= b
    });
    if opts.mask_flat {
        m.zip_mut_with(&flat_run_mask(img, 8, 2), |a, &b| *a |= b);
    }
    m
}

/// Common bright stars of two catalogues (matched within 1.5 px).
fn common_stars(a: &[Object], b: &[Object]) -> Vec<(f64, f64)> {
    let ok = |o: &&Object| o.flags & FLAG_SATURATED == 0 && o.flags == 0 && o.snr >= 20.0;
    let mut sel: Vec<&Object> = a.iter().filter(ok).collect();
    sel.sort_by(|p, q| q.snr.total_cmp(&p.snr));
    let bs: Vec<&Object> = b.iter().filter(ok).collect();
    sel.into_iter()
        .filter(|o| bs.iter().any(|p| (p.x - o.x).hypot(p.y - o.y) < 1.5))
        .take(300)
        .map(|o| (o.x, o.y))
        .collect()
}

/// ZOGY subtraction of `inputs.template` from `inputs.science` (see the module docs).
///
/// # Errors
/// Shape mismatches, and the errors of PSF estimation, noise modelling and ZOGY
/// (e.g. too few stars for the flux ratio).
pub fn subtract_zogy(
    inputs: &SubtractInputs,
    opts: &ZogyOptions,
) -> Result<Subtraction, SubtractError> {
    inputs.validate()?;
    let mut timings = Vec::new();
    let t0 = Instant::now();
    let (sm, tm) = rayon::join(
        || {
            input_mask(
                &inputs.science,
                inputs.science_mask.as_ref(),
                inputs.science_saturation,
                opts,
            )
        },
        || {
            input_mask(
                &inputs.template,
                inputs.template_mask.as_ref(),
                inputs.template_saturation,
                opts,
            )
        },
    );
    timings.push(("masks".to_string(), seconds_since(t0)));
    let t0 = Instant::now();

    let est = |img: &ArrayView2<f32>, m: &Array2<bool>, sat: Option<f64>, gain: Option<f64>| {
        let mut p = opts.psf.clone();
        p.saturation = sat.or(p.saturation);
        p.gain = gain.or(p.gain);
        estimate_psf(img, Some(&m.view()), &p).map_err(Box::new)
    };
    let (se, te) = rayon::join(
        || {
            est(
                &inputs.science,
                &sm,
                inputs.science_saturation,
                inputs.science_gain,
            )
        },
        || {
            est(
                &inputs.template,
                &tm,
                inputs.template_saturation,
                inputs.template_gain,
            )
        },
    );
    let (se, te) = (se.map_err(|e| *e)?, te.map_err(|e| *e)?);
    timings.push(("psf".to_string(), seconds_since(t0)));

    let t1 = Instant::now();
    let noise = |img: &ArrayView2<f32>,
                 given: Option<ArrayView2<f32>>,
                 bg,
                 m: &Array2<bool>,
                 gain: Option<f64>| {
        match given {
            Some(n) => Ok(n.to_owned()),
            None => noise_model(img, bg, Some(&m.view()), gain.unwrap_or(1.0), &opts.noise),
        }
    };
    let sn = noise(
        &inputs.science,
        inputs.science_noise,
        &se.background,
        &sm,
        inputs.science_gain,
    )?;
    let tn = noise(
        &inputs.template,
        inputs.template_noise,
        &te.background,
        &tm,
        inputs.template_gain,
    )?;
    let mut n_img = &inputs.science - &se.background.background;
    let mut r_img = &inputs.template - &te.background.background;
    let stars = common_stars(&se.objects, &te.objects);
    let dim = n_img.dim();
    let pn = KlProvider::new(&se.model, dim, opts.constant_psf_tolerance);
    let pr = KlProvider::new(&te.model, dim, opts.constant_psf_tolerance);
    // Cosmic rays and hot pixels: replaced, and flagged (undilated) in the output mask.
    let mut sharp = Array2::from_elem(dim, false);
    if let Some(ns) = opts.cosmic_nsigma {
        let (xc, yc) = ((dim.1 as f64 - 1.0) / 2.0, (dim.0 as f64 - 1.0) / 2.0);
        for (img, noise, p) in [(&mut n_img, &sn, &pn), (&mut r_img, &tn, &pr)] {
            let m = sharp_pixel_mask(
                &img.view(),
                &noise.view(),
                &p.psf_at(xc, yc),
                ns,
                opts.cosmic_sharpness,
                1,
            );
            inpaint(img, &m.view());
            sharp.zip_mut_with(&m, |a, &b| *a |= b);
        }
    }
    timings.push(("noise".to_string(), seconds_since(t1)));

    let t2 = Instant::now();
    let zin = ZogyInputs {
        new_mask: Some(sm.view()),
        ref_mask: Some(tm.view()),
        new_noise: Some(sn.view()),
        ref_noise: Some(tn.view()),
        sigma_new: Some(se.background.global_rms),
        sigma_ref: Some(te.background.global_rms),
        stars: &stars,
        ..ZogyInputs::new(n_img.view(), r_img.view(), &pn, &pr)
    };
    let mut res = zogy(&zin, &opts.params)?;
    res.mask.zip_mut_with(&sharp, |a, &b| *a |= b);
    timings.push(("zogy".to_string(), seconds_since(t2)));

    let f_n = res.beta * opts.params.f_ref;
    let scale = f_n / res.f_d;
    let diff = res.d.mapv(|v| (v as f64 * scale) as f32);
    let noise_d =
        Zip::from(&res.flux_err).map_collect(|&e| (scale * e as f64 * res.f_s.sqrt()) as f32);
    let flux = res.flux.mapv(|v| (v as f64 * res.beta) as f32);
    let flux_err = res.flux_err.mapv(|v| (v as f64 * res.beta) as f32);
    let diagnostics = serde_json::json!({
        "beta": res.beta,
        "beta_err": res.beta_err,
        "shift": [res.shift.0, res.shift.1],
        "offset": res.offset,
        "f_d": res.f_d,
        "f_s": res.f_s,
        "n_stars_given": stars.len(),
        "n_cosmic_pixels": sharp.iter().filter(|&&b| b).count(),
        "science_psf_constant": pn.is_constant(),
        "template_psf_constant": pr.is_constant(),
        "science_fwhm": se.fwhm,
        "template_fwhm": te.fwhm,
        "zogy": serde_json::to_value(&res.diagnostics).unwrap_or(serde_json::Value::Null),
    });
    // Kept for the adjust fit of candidates in ZOGY's cross-convolution frame: the PSFs as
    // ZOGY used them, the images it subtracted and their noise maps (no copies).
    let (xc, yc) = ((dim.1 as f64 - 1.0) / 2.0, (dim.0 as f64 - 1.0) / 2.0);
    let [pn_const, pr_const] = [&pn, &pr].map(|p| p.is_constant().then(|| p.psf_at(xc, yc)));
    let cross = super::CrossConvolution {
        science_psf: super::cross::ZogyPsf::shared(se.model, pn_const),
        template_psf: super::cross::ZogyPsf::shared(te.model, pr_const),
        beta: res.beta,
        shift: res.shift,
        science: std::sync::Arc::new(n_img),
        template: std::sync::Arc::new(r_img),
        science_noise: std::sync::Arc::new(sn),
        template_noise: std::sync::Arc::new(tn),
    };
    Ok(Subtraction {
        method: Method::Zogy,
        diff,
        significance: res.scorr,
        noise: noise_d,
        mask: res.mask,
        extra: vec![
            ("psf_d".to_string(), res.psf_d.mapv(|v| v as f32)),
            ("s".to_string(), res.s),
            ("flux".to_string(), flux),
            ("flux_err".to_string(), flux_err),
        ],
        science_fwhm: Some(se.fwhm),
        diagnostics,
        timings,
        cross: Some(cross),
    })
}
