//! HOTPANTS through the common subtraction interface.
//!
//! Glue only: masks (non-finite, given, saturated), mesh backgrounds and noise maps
//! (`source-extract`, STDPipe's noise model with the gains), FWHMs and a stamp list from stars
//! detected in both images, then [`hotpants_sys::run_hotpants`] on the raw images (HOTPANTS
//! fits the differential background itself).

use super::prep::{clean_stars, prepare_image};
use super::{Method, SubtractError, SubtractInputs, Subtraction, seconds_since};
use hotpants_sys::{HotpantsInputs, HotpantsParams, ImageInput, run_hotpants};
use ndarray::{Array2, ArrayView2};
use source_extract::{Object, estimate_fwhm};
use std::path::PathBuf;
use std::time::Instant;

/// Options of [`subtract_hotpants`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HotpantsOptions {
    /// HOTPANTS parameters, the executable (`params.executable`; `None`: `$HOTPANTS`, then
    /// `PATH`), timeout and escape-hatch flags included. Default [`HotpantsParams::default`].
    pub params: HotpantsParams,
    /// Science FWHM, pixels; `None` (default): measured on detected stars.
    pub science_fwhm: Option<f64>,
    /// Template FWHM, pixels; `None` (default): measured.
    pub template_fwhm: Option<f64>,
    /// Detection threshold (background sigma) of the stamp and FWHM stars. Default 10.
    pub detect_threshold: f64,
    /// Most stamp centres passed to HOTPANTS (`-ssf`), brightest first. Default 300.
    pub max_stamps: usize,
    /// Largest distance (pixels) between a science and a template detection for them to be
    /// the same star (stamp centres are stars found in both). Default 1.5.
    pub match_radius: f64,
}

impl Default for HotpantsOptions {
    fn default() -> Self {
        Self {
            params: HotpantsParams::default(),
            science_fwhm: None,
            template_fwhm: None,
            detect_threshold: 10.0,
            max_stamps: 300,
            match_radius: 1.5,
        }
    }
}

impl HotpantsOptions {
    /// Default options with an explicit executable.
    pub fn with_executable(path: impl Into<PathBuf>) -> Self {
        let mut o = Self::default();
        o.params.executable = Some(path.into());
        o
    }
}

struct Prepared {
    mask: Array2<bool>,
    noise: Array2<f32>,
    stars: Vec<Object>,
}

fn prepare(
    image: &ArrayView2<f32>,
    mask: Option<&ArrayView2<bool>>,
    saturation: Option<f64>,
    gain: Option<f64>,
    noise: Option<&ArrayView2<f32>>,
    threshold: f64,
) -> Result<Prepared, SubtractError> {
    let p = prepare_image(image, mask, saturation, gain, noise)?;
    let stars = clean_stars(image, &p, threshold, gain, saturation)?;
    Ok(Prepared {
        mask: p.mask,
        noise: p.noise,
        stars,
    })
}

fn side<'a>(
    img: ArrayView2<'a, f32>,
    p: &'a Prepared,
    fwhm: f64,
    gain: Option<f64>,
    saturation: Option<f64>,
) -> ImageInput<'a> {
    let mut s = ImageInput::new(img, fwhm)
        .with_mask(p.mask.view())
        .with_noise(p.noise.view());
    s.gain = gain;
    s.saturation = saturation;
    s
}

/// Science stars with a template detection within `radius`, brightest (science flux) first.
fn matched_stamps(sci: &[Object], tmpl: &[Object], radius: f64, max: usize) -> Vec<(f64, f64)> {
    let r2 = radius * radius;
    let mut out: Vec<&Object> = sci
        .iter()
        .filter(|s| {
            tmpl.iter()
                .any(|t| (t.x - s.x).powi(2) + (t.y - s.y).powi(2) <= r2)
        })
        .collect();
    out.sort_by(|a, b| b.flux.total_cmp(&a.flux));
    out.into_iter().take(max).map(|o| (o.x, o.y)).collect()
}

/// HOTPANTS subtraction (Becker 2015; Alard & Lupton 1998) of `inputs.template` from
/// `inputs.science`, by running an installed `hotpants` executable.
///
/// The difference is on the science flux scale (`-n i`), `significance` is HOTPANTS's
/// `diff / noise`. Extra plane: "convolved" (the convolved image). Diagnostics: HOTPANTS's
/// header keywords (kernel sum, X2NRM, ... per region), the derived options, the command
/// line, the FWHMs and the number of stamps.
///
/// # Errors
/// Shape mismatches, no usable pixels, source-extraction failures (no stars for an FWHM when
/// none is given) and every [`hotpants_sys::HotpantsError`] (not found, exit status, crash,
/// timeout, missing or bad outputs).
pub fn subtract_hotpants(
    inputs: &SubtractInputs,
    opts: &HotpantsOptions,
) -> Result<Subtraction, SubtractError> {
    inputs.validate()?;
    let mut timings = Vec::new();
    let t0 = Instant::now();
    let sci = prepare(
        &inputs.science,
        inputs.science_mask.as_ref(),
        inputs.science_saturation,
        inputs.science_gain,
        inputs.science_noise.as_ref(),
        opts.detect_threshold,
    )?;
    let tmpl = prepare(
        &inputs.template,
        inputs.template_mask.as_ref(),
        inputs.template_saturation,
        inputs.template_gain,
        inputs.template_noise.as_ref(),
        opts.detect_threshold,
    )?;
    let science_fwhm = match opts.science_fwhm {
        Some(f) => f,
        None => estimate_fwhm(&sci.stars)?,
    };
    let template_fwhm = match opts.template_fwhm {
        Some(f) => f,
        None => estimate_fwhm(&tmpl.stars)?,
    };
    let stamps = matched_stamps(&sci.stars, &tmpl.stars, opts.match_radius, opts.max_stamps);
    timings.push(("background+detection".to_string(), seconds_since(t0)));

    let hp_inputs = HotpantsInputs::new(
        side(
            inputs.science,
            &sci,
            science_fwhm,
            inputs.science_gain,
            inputs.science_saturation,
        ),
        side(
            inputs.template,
            &tmpl,
            template_fwhm,
            inputs.template_gain,
            inputs.template_saturation,
        ),
    )
    .with_stamps(stamps);
    let t1 = Instant::now();
    let res = run_hotpants(&hp_inputs, &opts.params)?;
    timings.push(("hotpants".to_string(), seconds_since(t1)));

    let diagnostics = serde_json::json!({
        "hotpants": &res,
        "fwhm_science": science_fwhm,
        "fwhm_template": template_fwhm,
        "n_stamps": hp_inputs.stamps.len(),
        "kernel_sum": res.diagnostics.kernel_sum(),
        "x2norm": res.diagnostics.x2norm(),
    });
    Ok(Subtraction {
        method: Method::Hotpants,
        significance: res.scaled,
        noise: res.noise,
        mask: res.mask,
        extra: vec![("convolved".to_string(), res.convolved)],
        science_fwhm: Some(science_fwhm),
        diagnostics,
        timings,
        cross: None,
        diff: res.diff,
    })
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::Zip;

    /// The stand-in HOTPANTS of hotpants-sys's test support (copies its inputs to its outputs).
    fn fake(dir: &std::path::Path) -> PathBuf {
        hotpants_sys::test_support::write_stand_in(dir).unwrap()
    }

    #[test]
    fn facade_measures_fwhms_places_stamps_and_reads_back() {
        let cfg = sky_sim::SimConfig {
            ny: 256,
            nx: 256,
            n_stars: 120,
            ..Default::default()
        };
        let pair = sky_sim::simulate(&cfg).unwrap();
        let mut inputs = SubtractInputs::new(pair.science.view(), pair.template.view());
        inputs.science_gain = Some(cfg.science.gain);
        inputs.template_gain = Some(cfg.template.gain);
        inputs.science_saturation = Some(cfg.science.saturation);
        inputs.template_saturation = Some(cfg.template.saturation);
        // (diffim has no tempfile dependency: a unique directory, removed at the end.)
        let dir = std::env::temp_dir().join(format!("diffim-hp-facade-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let opts = HotpantsOptions::with_executable(fake(&dir));
        let res = subtract_hotpants(&inputs, &opts);
        std::fs::remove_dir_all(&dir).unwrap();
        let s = res.unwrap();
        assert_eq!(s.method, Method::Hotpants);
        // The fake's "difference" is the science image itself.
        let mut n_good = 0;
        Zip::from(&s.diff)
            .and(&pair.science)
            .and(&s.mask)
            .for_each(|&d, &v, &m| {
                if !m {
                    assert_eq!(d, v);
                    n_good += 1;
                }
            });
        assert!(n_good > 256 * 256 * 9 / 10, "{n_good}");
        let fwhm = s.science_fwhm.unwrap();
        assert!((fwhm - 3.5).abs() < 0.5, "science FWHM {fwhm}");
        let d = &s.diagnostics;
        let ft = d["fwhm_template"].as_f64().unwrap();
        assert!((ft - 2.5).abs() < 0.5, "template FWHM {ft}");
        assert!(d["n_stamps"].as_u64().unwrap() >= 5, "{d}");
        assert_eq!(d["hotpants"]["options"]["convolve"], "template");
        let argv: Vec<&str> = d["hotpants"]["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(argv.windows(2).any(|w| w == ["-ssf", "stamps.txt"]));
        assert!(argv.windows(2).any(|w| w == ["-ini", "sci_noise.fits"]));
        assert!(argv.windows(2).any(|w| w == ["-iu", "60000"]));
        assert!(s.extra("convolved").is_some());
    }

    #[test]
    fn facade_reports_a_missing_executable() {
        let cfg = sky_sim::SimConfig {
            ny: 128,
            nx: 128,
            n_stars: 60,
            ..Default::default()
        };
        let pair = sky_sim::simulate(&cfg).unwrap();
        let inputs = SubtractInputs::new(pair.science.view(), pair.template.view());
        let mut opts = HotpantsOptions::with_executable("/no/such/hotpants");
        opts.science_fwhm = Some(3.5);
        opts.template_fwhm = Some(2.5);
        let e = subtract_hotpants(&inputs, &opts).unwrap_err();
        assert!(
            matches!(
                e,
                SubtractError::Hotpants(hotpants_sys::HotpantsError::NotFound { .. })
            ),
            "{e:?}"
        );
    }
}
