//! SFFT through the common subtraction interface.
//!
//! Glue only: masks (non-finite, given, saturated), mesh backgrounds and noise maps
//! (`source-extract`, STDPipe's noise model with the gains), a star list and FWHMs (detection
//! on both images), then [`sfft_core::subtract`]. The mesh backgrounds are subtracted from both
//! images before the fit, so the fitted differential background (extra plane "background")
//! only holds what the meshes missed. Cosmic rays, hot pixels and dark holes of both images
//! are replaced before the fit ([`zogy_core::masks::cosmic_rays`] with a Gaussian PSF of the
//! measured FWHM, as for ZOGY) and recorded in the extra plane "cosmic". A gain not given is
//! estimated from the sky ([`super::resolve_gain`]); without one the noise maps hold the
//! background noise only.

use super::prep::{clean_stars, prepare_image};
use super::{Method, SubtractError, SubtractInputs, Subtraction, seconds_since};
use sfft_core::{SfftInputs, SfftParams};
use source_extract::estimate_fwhm;
use std::time::Instant;

/// Options of [`subtract_sfft`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SfftOptions {
    /// Parameters of the fit: STDPipe's defaults except `auto_kernel = true`, i.e. the
    /// kernel size comes from the measured FWHMs ([`sfft_core::auto_kernel_shape`]: half-width
    /// `ceil(3 sigma)` of the Gaussian matching kernel, 3..=10) rather than STDPipe's fixed
    /// 7x7, which truncates the matching kernel when the PSFs differ by more than ~1.5 px FWHM
    /// (1.2% flux-scale error on sky-sim `sfft_issue`; 0.3-0.9% with the automatic 9x9).
    /// Set `params.auto_kernel = false` for a fixed `params.kernel_shape`. When `params.obj`
    /// is `None`, clean stars detected in the template are used as stamps; FWHMs left `None`
    /// are measured.
    pub params: SfftParams,
    /// Detection threshold (background sigma) of the stamp stars. Default 10.
    pub detect_threshold: f64,
    /// Side of the grid of kernels in the "kernel_grid" plane. Default 5.
    pub kernel_grid: usize,
    /// Cosmic-ray / hot-pixel replacement in both images; `None` disables it. Default
    /// [`zogy_core::masks::CosmicParams::default`] (contrast limit twice that of a Gaussian
    /// PSF of the image's FWHM).
    #[serde(skip)]
    pub cosmic: Option<zogy_core::masks::CosmicParams>,
}

impl Default for SfftOptions {
    fn default() -> Self {
        Self {
            params: SfftParams {
                auto_kernel: true,
                ..SfftParams::default()
            },
            detect_threshold: 10.0,
            kernel_grid: 5,
            cosmic: Some(Default::default()),
        }
    }
}

/// SFFT subtraction (Hu et al. 2022) of `inputs.template` from `inputs.science`.
///
/// Extra planes: "convolved" (the convolved image), "background" (fitted differential
/// background), "kernel_grid" (a mosaic of `kernel_grid x kernel_grid` kernels across the
/// field, see [`sfft_core::kernel_grid`]), "cosmic" (1 where a cosmic-ray / hot / dark pixel
/// of either image was replaced). Diagnostics: the fit summary, the flux scale at
/// the grid positions and the kernel grid positions.
///
/// # Errors
/// Shape mismatches, no usable pixels, source-extraction failures and SFFT errors.
pub fn subtract_sfft(
    inputs: &SubtractInputs,
    opts: &SfftOptions,
) -> Result<Subtraction, SubtractError> {
    inputs.validate()?;
    let mut timings = Vec::new();
    let t0 = Instant::now();
    let (g_s, g_t) = rayon::join(
        || {
            super::resolve_gain(
                &inputs.science,
                inputs.science_mask.as_ref(),
                inputs.science_gain,
            )
        },
        || {
            super::resolve_gain(
                &inputs.template,
                inputs.template_mask.as_ref(),
                inputs.template_gain,
            )
        },
    );
    let (science_gain, template_gain) = (g_s.gain, g_t.gain);
    let sci = prepare_image(
        &inputs.science,
        inputs.science_mask.as_ref(),
        inputs.science_saturation,
        science_gain,
        inputs.science_noise.as_ref(),
    )?;
    let tmpl = prepare_image(
        &inputs.template,
        inputs.template_mask.as_ref(),
        inputs.template_saturation,
        template_gain,
        inputs.template_noise.as_ref(),
    )?;
    // The mesh backgrounds come off both images before the fit.
    let mut sci_image = &inputs.science - &sci.background.background;
    let mut tmpl_image = &inputs.template - &tmpl.background.background;
    timings.push(("background+noise".to_string(), seconds_since(t0)));

    let t1 = Instant::now();
    let mut params = opts.params.clone();
    let need_t = params.obj.is_none() || params.fwhm_template.is_none() || opts.cosmic.is_some();
    let mut stars_t: Vec<(f64, f64)> = Vec::new();
    if need_t {
        let st = clean_stars(
            &inputs.template,
            &tmpl,
            opts.detect_threshold,
            template_gain,
            None,
        )?;
        if params.fwhm_template.is_none() {
            params.fwhm_template = estimate_fwhm(&st).ok();
        }
        stars_t = st.iter().map(|o| (o.x, o.y)).collect();
        if params.obj.is_none() && st.len() >= 10 {
            params.obj = Some(stars_t.clone());
        }
    }
    let mut stars_s: Vec<(f64, f64)> = Vec::new();
    if params.fwhm_science.is_none() || opts.cosmic.is_some() {
        let st = clean_stars(
            &inputs.science,
            &sci,
            opts.detect_threshold,
            science_gain,
            None,
        )?;
        if params.fwhm_science.is_none() {
            params.fwhm_science = estimate_fwhm(&st).ok();
        }
        stars_s = st.iter().map(|o| (o.x, o.y)).collect();
    }
    if let Some(obj) = &mut params.obj {
        obj.truncate(params.max_stamps.max(1) * 4);
    }
    timings.push(("detection".to_string(), seconds_since(t1)));

    // Cosmic rays, hot pixels and dark holes, against a Gaussian PSF of each image's FWHM.
    let t1 = Instant::now();
    let (ny, nx) = sci_image.dim();
    let mut cosmic = ndarray::Array2::from_elem((ny, nx), false);
    let mut n_cosmic = [0usize; 2];
    if let Some(cp) = &opts.cosmic {
        // The contrast limit from the image's own stars (the 90th percentile of their S'/F),
        // else from a Gaussian of the measured FWHM (softer than real cores: a lower limit).
        let stamp = |fwhm: Option<f64>| {
            let f = fwhm.filter(|f| f.is_finite() && *f > 0.5)?;
            let size = diffim_core::psf::odd_at_least(4.0 * f).max(7);
            Some(diffim_core::psf::gaussian_stamp(size, f, 0.0, 0.0))
        };
        let limit = |img: &ndarray::Array2<f32>,
                     noise: &ndarray::Array2<f32>,
                     stars: &[(f64, f64)],
                     psf: Option<&ndarray::Array2<f64>>| {
            let measured = zogy_core::masks::star_contrast(&img.view(), &noise.view(), stars, 0.9)
                .or_else(|| psf.map(zogy_core::masks::psf_contrast))?;
            Some(
                cp.contrast
                    .unwrap_or((cp.psf_contrast_factor * measured).max(0.5)),
            )
        };
        let (ps, pt) = (stamp(params.fwhm_science), stamp(params.fwhm_template));
        let cps = zogy_core::masks::CosmicParams {
            contrast: limit(&sci_image, &sci.noise, &stars_s, ps.as_ref()),
            ..*cp
        };
        let cpt = zogy_core::masks::CosmicParams {
            contrast: limit(&tmpl_image, &tmpl.noise, &stars_t, pt.as_ref()),
            ..*cp
        };
        let (a, b) = rayon::join(
            || {
                ps.as_ref().map(|p| {
                    zogy_core::masks::cosmic_rays(
                        &mut sci_image,
                        &sci.noise.view(),
                        Some(&sci.mask.view()),
                        p,
                        &cps,
                    )
                })
            },
            || {
                pt.as_ref().map(|p| {
                    zogy_core::masks::cosmic_rays(
                        &mut tmpl_image,
                        &tmpl.noise.view(),
                        Some(&tmpl.mask.view()),
                        p,
                        &cpt,
                    )
                })
            },
        );
        for (k, c) in [a, b].into_iter().enumerate() {
            if let Some(c) = c {
                n_cosmic[k] = c.mask.iter().filter(|&&v| v).count();
                cosmic.zip_mut_with(&c.mask, |p, &q| *p |= q);
            }
        }
    }
    timings.push(("cosmic".to_string(), seconds_since(t1)));

    let t2 = Instant::now();
    let core_inputs = SfftInputs {
        science: sci_image.view(),
        template: tmpl_image.view(),
        science_mask: Some(sci.mask.view()),
        template_mask: Some(tmpl.mask.view()),
        science_noise: Some(sci.noise.view()),
        template_noise: Some(tmpl.noise.view()),
        fit_mask: None,
    };
    let res = sfft_core::subtract(&core_inputs, &params)?;
    timings.push(("sfft".to_string(), seconds_since(t2)));

    let g = opts.kernel_grid.max(1);
    let mut grid = Vec::new();
    for j in 0..g {
        for i in 0..g {
            let y = (j as f64 + 0.5) * ny as f64 / g as f64;
            let x = (i as f64 + 0.5) * nx as f64 / g as f64;
            grid.push(serde_json::json!({
                "x": x, "y": y,
                "flux_scale": res.flux_scale_at(x, y),
                "kernel": res.kernel_at(x, y).outer_iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
            }));
        }
    }
    let gains_json = [g_s.summary(), g_t.summary()];
    let diagnostics = serde_json::json!({
        "sfft": res.summary(),
        "params": params_summary(&params),
        "flux_scale_centre": res.flux_scale_at((nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0),
        "kernel_grid": grid,
        "gains": gains_json,
        "n_cosmic_pixels": n_cosmic,
    });
    let kgrid = sfft_core::kernel_grid(&res, g);
    let science_fwhm = res.fwhm_science.is_finite().then_some(res.fwhm_science);
    Ok(Subtraction {
        method: Method::Sfft,
        significance: res.scaled.clone(),
        noise: res.noise.clone(),
        mask: res.mask.clone(),
        extra: vec![
            ("convolved".to_string(), res.convolved.clone()),
            ("background".to_string(), res.background.clone()),
            ("kernel_grid".to_string(), kgrid),
            ("cosmic".to_string(), cosmic.mapv(|b| b as u8 as f32)),
        ],
        science_fwhm,
        diagnostics,
        timings,
        cross: None,
        diff: res.diff,
    })
}

fn params_summary(p: &SfftParams) -> serde_json::Value {
    serde_json::json!({
        "kernel_shape": [p.kernel_shape.0, p.kernel_shape.1],
        "auto_kernel": p.auto_kernel,
        "kernel_poly_order": p.kernel_poly_order,
        "bg_poly_order": p.bg_poly_order,
        "flux": p.flux,
        "ridge": p.ridge,
        "sigma_clip": p.sigma_clip,
        "max_iter": p.max_iter,
        "n_obj": p.obj.as_ref().map(|o| o.len()),
        "fwhm_science": p.fwhm_science,
        "fwhm_template": p.fwhm_template,
        "convolve": p.convolve,
    })
}
