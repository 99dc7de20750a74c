//! ZOGY through the common subtraction interface.
//!
//! [`subtract_zogy`] estimates what ZOGY needs and calls [`zogy_core::zogy`]:
//! 1. masks: input masks, NaN/Inf, pixels at or above the saturation level;
//! 2. PSF of each image with [`psf_kl::estimate_psf`] (background mesh + detection + star
//!    selection + Karhunen-Loeve fit); its background model is subtracted from the image;
//! 3. noise maps: the given ones, else [`source_extract::noise_model`] (background RMS plus
//!    source Poisson noise with the image's gain, 1 e-/ADU when unknown);
//! 4. stars for the flux ratio: detections of both images matched within 1.5 px, unflagged,
//!    S/N >= 20, the 300 with the highest S/N;
//! 5. [`zogy_core::zogy`] with the KL PSFs (spatially varying: overlapping tiles).
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
use zogy_core::{FnPsf, ZogyInputs, ZogyParams, zogy};

/// Options of [`subtract_zogy`].
#[derive(Debug, Clone, Default)]
pub struct ZogyOptions {
    /// ZOGY parameters (flux ratio fit, tiles, astrometric noise, ...).
    pub params: ZogyParams,
    /// PSF estimation (background, detection, star selection, KL fit) for both images.
    pub psf: PsfEstimateParams,
    /// Noise model used when no noise map is given.
    pub noise: NoiseParams,
}

fn saturation_mask(
    img: &ArrayView2<f32>,
    mask: Option<&ArrayView2<bool>>,
    sat: Option<f64>,
) -> Array2<bool> {
    let mut m = diffim_core::mask::finite_mask(img, mask);
    if let Some(s) = sat {
        Zip::from(&mut m)
            .and(img)
            .for_each(|b, &v| *b |= v as f64 >= s);
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
    let sm = saturation_mask(
        &inputs.science,
        inputs.science_mask.as_ref(),
        inputs.science_saturation,
    );
    let tm = saturation_mask(
        &inputs.template,
        inputs.template_mask.as_ref(),
        inputs.template_saturation,
    );

    let est = |img: &ArrayView2<f32>, m: &Array2<bool>, sat: Option<f64>, gain: Option<f64>| {
        let mut p = opts.psf.clone();
        p.saturation = sat.or(p.saturation);
        p.gain = gain.or(p.gain);
        estimate_psf(img, Some(&m.view()), &p)
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
    let (se, te) = (se?, te?);
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
    let n_img = &inputs.science - &se.background.background;
    let r_img = &inputs.template - &te.background.background;
    let stars = common_stars(&se.objects, &te.objects);
    timings.push(("noise".to_string(), seconds_since(t1)));

    let t2 = Instant::now();
    let pn = FnPsf(|x, y| se.model.psf_at(x, y));
    let pr = FnPsf(|x, y| te.model.psf_at(x, y));
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
    let res = zogy(&zin, &opts.params)?;
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
        "science_fwhm": se.fwhm,
        "template_fwhm": te.fwhm,
        "zogy": serde_json::to_value(&res.diagnostics).unwrap_or(serde_json::Value::Null),
    });
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
    })
}
