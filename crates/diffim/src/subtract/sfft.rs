//! SFFT through the common subtraction interface.
//!
//! Glue only: masks (non-finite, given, saturated), mesh backgrounds and noise maps
//! (`source-extract`, STDPipe's noise model with the gains), a star list and FWHMs (detection
//! on both images), then [`sfft_core::subtract`]. The mesh backgrounds are subtracted from both
//! images before the fit, so the fitted differential background (extra plane "background")
//! only holds what the meshes missed.

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
        }
    }
}

/// SFFT subtraction (Hu et al. 2022) of `inputs.template` from `inputs.science`.
///
/// Extra planes: "convolved" (the convolved image), "background" (fitted differential
/// background), "kernel_grid" (a mosaic of `kernel_grid x kernel_grid` kernels across the
/// field, see [`sfft_core::kernel_grid`]). Diagnostics: the fit summary, the flux scale at
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
    let sci = prepare_image(
        &inputs.science,
        inputs.science_mask.as_ref(),
        inputs.science_saturation,
        inputs.science_gain,
        inputs.science_noise.as_ref(),
    )?;
    let tmpl = prepare_image(
        &inputs.template,
        inputs.template_mask.as_ref(),
        inputs.template_saturation,
        inputs.template_gain,
        inputs.template_noise.as_ref(),
    )?;
    // The mesh backgrounds come off both images before the fit.
    let sci_image = &inputs.science - &sci.background.background;
    let tmpl_image = &inputs.template - &tmpl.background.background;
    timings.push(("background+noise".to_string(), seconds_since(t0)));

    let t1 = Instant::now();
    let mut params = opts.params.clone();
    let need_t = params.obj.is_none() || params.fwhm_template.is_none();
    if need_t {
        let st = clean_stars(
            &inputs.template,
            &tmpl,
            opts.detect_threshold,
            inputs.template_gain,
            None,
        )?;
        if params.fwhm_template.is_none() {
            params.fwhm_template = estimate_fwhm(&st).ok();
        }
        if params.obj.is_none() && st.len() >= 10 {
            params.obj = Some(st.iter().map(|o| (o.x, o.y)).collect());
        }
    }
    if params.fwhm_science.is_none() {
        let st = clean_stars(
            &inputs.science,
            &sci,
            opts.detect_threshold,
            inputs.science_gain,
            None,
        )?;
        params.fwhm_science = estimate_fwhm(&st).ok();
    }
    if let Some(obj) = &mut params.obj {
        obj.truncate(params.max_stamps.max(1) * 4);
    }
    timings.push(("detection".to_string(), seconds_since(t1)));

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

    let (ny, nx) = res.diff.dim();
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
    let diagnostics = serde_json::json!({
        "sfft": res.summary(),
        "params": params_summary(&params),
        "flux_scale_centre": res.flux_scale_at((nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0),
        "kernel_grid": grid,
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
