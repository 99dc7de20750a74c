//! Integration tests of psf-kl on sky-sim images (truth known) and on the real ProperImage
//! images.
#![allow(clippy::unwrap_used)]

use ndarray::Array2;
use psf_kl::{
    KlParams, KlPsf, PsfError, PsfEstimate, PsfEstimateParams, PsfModel, SelectParams,
    estimate_psf, profile::measure_fwhm, select_stars,
};
use sky_sim::{SimConfig, SimPair, simulate};
use std::path::PathBuf;

/// The PSF estimate of `pair`'s science image with `params`, and its errors against the truth
/// ([`grid_errors`]: worst and median relative L2, worst FWHM), summarised on stderr.
fn estimate_scored(
    label: &str,
    pair: &SimPair,
    params: &PsfEstimateParams,
) -> (PsfEstimate, (f64, f64, f64)) {
    let est = estimate_psf(
        &pair.science.view(),
        Some(&pair.science_mask.view()),
        params,
    )
    .unwrap();
    let (worst, med, fw) = grid_errors(pair, &est.model);
    eprintln!(
        "{label}: {} stars ({}), {} basis, degree {}, L2 worst {worst:.4} median {med:.4}, FWHM worst {fw:.4}",
        est.stars.len(),
        est.stars.rejections,
        est.model.n_basis(),
        est.model.degree(),
    );
    (est, (worst, med, fw))
}

fn rel_l2(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    (a - b).mapv(|v| v * v).sum().sqrt() / b.mapv(|v| v * v).sum().sqrt()
}

fn params_for(pair: &SimPair) -> PsfEstimateParams {
    PsfEstimateParams {
        saturation: Some(pair.config.science.saturation),
        gain: Some(pair.config.science.gain),
        ..Default::default()
    }
}

/// Worst and median relative L2 error and worst relative FWHM error of `model` against the
/// true science PSF on a 5x5 grid.
fn grid_errors(pair: &SimPair, model: &dyn PsfModel) -> (f64, f64, f64) {
    let (ny, nx) = pair.science.dim();
    let size = model.stamp_size();
    let mut l2 = Vec::new();
    let mut fw: f64 = 0.0;
    for gy in 0..5 {
        for gx in 0..5 {
            let x = 20.0 + gx as f64 * (nx as f64 - 41.0) / 4.0;
            let y = 20.0 + gy as f64 * (ny as f64 - 41.0) / 4.0;
            let truth = pair.science_psf_at(x, y, size);
            let p = model.psf_at(x, y);
            assert!((p.sum() - 1.0).abs() < 1e-9, "unit sum");
            l2.push(rel_l2(&p, &truth));

            let ft = measure_fwhm(&truth.view()).unwrap();
            fw = fw.max((model.fwhm_at(x, y) - ft).abs() / ft);
        }
    }
    let worst = l2.iter().cloned().fold(0.0, f64::max);
    let med = diffim_core::stats::median(l2.iter().copied()).unwrap();
    (worst, med, fw)
}

fn dense_varying() -> SimConfig {
    let mut cfg = SimConfig::varying_psf().with_size(1024, 1024);
    cfg.n_stars = 600;
    cfg.star_flux_min = 60_000.0;
    cfg.star_flux_max = 400_000.0;
    cfg.n_transients = 0;
    cfg
}

#[test]
fn kl_model_follows_a_varying_psf() {
    // The default star field (300 stars on 512^2, mostly faint) leaves ~17 usable stars: far
    // too few for a degree-3 field (worst L2 error 37 %). Here: 600 bright stars on 1024^2
    // (about 150 pass the selection). With fluxes from 20 000 instead of 60 000 ADU the
    // fifth KL component sinks into the noise and the worst error at the corners is 5.4 %
    // (median 1.6 %); see the crate README/report.
    let pair = simulate(&dense_varying()).unwrap();
    let (_, (worst, _, fw)) = estimate_scored("varying PSF", &pair, &params_for(&pair));
    assert!(worst <= 0.03, "worst relative L2 error {worst}");
    assert!(fw <= 0.02, "worst FWHM error {fw}");
}

#[test]
fn constant_psf_collapses_to_one_basis_element() {
    let mut cfg = SimConfig::constant_psf();
    cfg.n_stars = 400;
    cfg.star_flux_min = 20_000.0;
    cfg.star_flux_max = 400_000.0;
    cfg.n_transients = 0;
    let pair = simulate(&cfg).unwrap();
    let est = estimate_psf(
        &pair.science.view(),
        Some(&pair.science_mask.view()),
        &params_for(&pair),
    )
    .unwrap();
    let (worst, med, fw) = grid_errors(&pair, &est.model);
    eprintln!(
        "constant PSF: {} stars, {} basis, L2 worst {worst:.4} median {med:.4}, FWHM worst {fw:.4}, eigenvalues {:?}",
        est.stars.len(),
        est.model.n_basis(),
        &est.model.diagnostics().eigenvalues[..4]
    );
    assert_eq!(est.model.n_basis(), 1);
    assert!(worst <= 0.03 && fw <= 0.02);
    // The constant models agree with the truth as well.
    let emp = psf_kl::EmpiricalPsf::fit(&est.stars, psf_kl::Combine::ClippedMean).unwrap();
    let g = psf_kl::GaussianPsf::fit(&emp.stamp.view()).unwrap();
    let m = psf_kl::MoffatPsf::fit(&emp.stamp.view()).unwrap();
    let t = pair.science_psf_at(256.0, 256.0, est.stars.stamp_size);
    let ft = measure_fwhm(&t.view()).unwrap();
    for (name, model) in [
        ("empirical", &emp as &dyn PsfModel),
        ("gaussian", &g as &dyn PsfModel),
        ("moffat", &m as &dyn PsfModel),
    ] {
        let e = rel_l2(&model.psf_at(256.0, 256.0), &t);
        let f = (model.fwhm_at(256.0, 256.0) - ft).abs() / ft;
        eprintln!("{name}: L2 {e:.4}, FWHM error {f:.4}");
        assert!(e < 0.03 && f < 0.02, "{name}: L2 {e}, FWHM {f}");
    }
}

/// `measure_star_fwhm = false` skips the per-star FWHM fits and changes nothing else.
#[test]
fn star_fwhm_switch_changes_nothing_else() {
    let pair = simulate(&SimConfig::default().with_seed(5)).unwrap();
    let on = params_for(&pair);
    assert!(on.measure_star_fwhm, "on by default");
    let off = PsfEstimateParams {
        measure_star_fwhm: false,
        ..on.clone()
    };
    let run = |p: &PsfEstimateParams| {
        estimate_psf(&pair.science.view(), Some(&pair.science_mask.view()), p).unwrap()
    };
    let (a, b) = (run(&on), run(&off));
    assert!(a.fwhm_stars.is_finite() && b.fwhm_stars.is_nan());
    assert_eq!(a.objects, b.objects);
    assert_eq!(a.stars, b.stars);
    assert_eq!(a.background, b.background);
    assert_eq!(a.fwhm.to_bits(), b.fwhm.to_bits());
    assert_eq!(a.model.psf_at(100.0, 150.0), b.model.psf_at(100.0, 150.0));
}

#[test]
fn model_round_trips_through_parts_and_convolves() {
    let cfg = SimConfig::varying_psf().with_size(256, 256);
    let mut cfg = cfg;
    cfg.n_stars = 150;
    cfg.star_flux_min = 60_000.0;
    cfg.star_flux_max = 400_000.0;
    let pair = simulate(&cfg).unwrap();
    let est = estimate_psf(&pair.science.view(), None, &params_for(&pair)).unwrap();
    let back = KlPsf::from_parts(est.model.to_parts()).unwrap();
    for (x, y) in [(3.0, 7.0), (128.0, 100.0), (250.0, 240.0)] {
        assert_eq!(back.psf_at(x, y), est.model.psf_at(x, y));
    }
    let mut parts = est.model.to_parts();
    parts.coeffs[0].pop();
    assert!(matches!(
        KlPsf::from_parts(parts),
        Err(PsfError::InvalidModel { .. })
    ));
    // Convolution conserves flux away from the edges.
    let mut img = Array2::<f32>::zeros((256, 256));
    img[[100, 60]] = 1000.0;
    let out = psf_kl::convolve_varying(&img.view(), &est.model);
    assert!((out.sum() - 1000.0).abs() < 0.01, "flux {}", out.sum());
}

#[test]
fn bad_input_gives_typed_errors() {
    let cfg = SimConfig::constant_psf().with_size(256, 256);
    let pair = simulate(&cfg).unwrap();
    // A flat image: no stars at all.
    let flat = Array2::<f32>::from_elem((128, 128), 100.0)
        + Array2::from_shape_fn((128, 128), |(y, x)| ((x * 31 + y * 17) % 7) as f32);
    match estimate_psf(&flat.view(), None, &PsfEstimateParams::default()) {
        Err(PsfError::NoUsableStars { rejections }) => assert_eq!(rejections.accepted, 0),
        other => panic!("expected NoUsableStars, got {other:?}"),
    }
    // A saturation level below every star peak: all saturated.
    let p = PsfEstimateParams {
        saturation: Some(pair.config.science.sky.c + 50.0),
        ..Default::default()
    };
    match estimate_psf(&pair.science.view(), None, &p) {
        Err(e @ PsfError::AllSaturated { .. }) => {
            let PsfError::AllSaturated {
                saturated,
                rejections,
            } = &e
            else {
                unreachable!()
            };
            assert!(*saturated > 0 && rejections.saturated == *saturated);
            assert!(e.to_string().contains("saturated"), "{e}");
        }
        other => panic!("expected AllSaturated, got {other:?}"),
    }
    // More basis terms than stars.
    let bg = source_extract::estimate_background(&pair.science.view(), None, &Default::default())
        .unwrap();
    let objs =
        source_extract::detect(&pair.science.view(), &bg, None, &Default::default()).unwrap();
    let stars = select_stars(
        &pair.science.view(),
        &bg,
        None,
        &objs,
        &SelectParams::default(),
    )
    .unwrap();
    let kp = KlParams {
        n_basis: Some(stars.len() + 1),
        ..Default::default()
    };
    match KlPsf::fit(&stars, &kp) {
        Err(PsfError::TooFewStars { found, needed, .. }) => {
            assert_eq!((found, needed), (stars.len(), stars.len() + 1));
        }
        other => panic!("expected TooFewStars, got {other:?}"),
    }
    // Shape mismatch of the mask.
    let m = Array2::<bool>::from_elem((10, 10), false);
    assert!(matches!(
        select_stars(
            &pair.science.view(),
            &bg,
            Some(&m.view()),
            &objs,
            &SelectParams::default()
        ),
        Err(PsfError::ShapeMismatch { .. })
    ));
}

/// A real data file (see `diffim_core::testdata`: `$DIFFIM_DATA` or `data/real`; missing
/// files fail under `CI=true`).
fn data_file(sub: &str) -> Option<PathBuf> {
    diffim_core::testdata::real_data(sub)
}

/// Per-star positions and Gaussian-fit FWHMs from `tests/golden/properimage_fwhm.py` (SEP
/// detections at 10 sigma, elliptical Gaussian, no background, 19 px stamps).
fn golden_stars(name: &str) -> Vec<(f64, f64, f64)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/golden/properimage_stars_{name}.csv"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|t| t.parse().unwrap()).collect();
            (v[0], v[1], v[2])
        })
        .collect()
}

#[test]
fn properimage_real_images() {
    for (name, fwhm_readme) in [("004", 2.82), ("005", 2.91)] {
        let Some(path) = data_file(&format!("properimage/aligned_eso085-030-{name}.fit")) else {
            return;
        };
        let img = fits_io::read_image::<f32>(&path, &fits_io::Hdu::Primary).unwrap();
        let est = estimate_psf(&img.data.view(), None, &PsfEstimateParams::default()).unwrap();
        assert!(est.stars.len() >= 50, "{} stars", est.stars.len());
        // Apples to apples: the Python script's estimator (elliptical Gaussian fit, no
        // background, on a 19 px stamp = our `measure_fwhm` on our stamp size) applied to the
        // real stars, median over its ~120 stars, against the same estimator applied to the
        // model PSF at the same positions.
        assert_eq!(
            est.stars.stamp_size, 19,
            "the golden estimator uses 19 px stamps"
        );
        let golden = golden_stars(name);
        assert!(golden.len() >= 100, "{} golden stars", golden.len());
        let ref_med = diffim_core::stats::median(golden.iter().map(|g| g.2)).unwrap();
        let model_med =
            diffim_core::stats::median(golden.iter().map(|g| est.model.fwhm_at(g.0, g.1))).unwrap();
        let err = (model_med - ref_med).abs() / ref_med;
        let centre_err = (est.fwhm - fwhm_readme).abs() / fwhm_readme;
        eprintln!(
            "{name}: {} stars ({}), {} basis, degree {}, model FWHM at the golden stars (median) {model_med:.3} vs Python {ref_med:.3} (error {err:.4}); centre {:.3} vs README {fwhm_readme} (error {centre_err:.4}); star median {:.3}",
            est.stars.len(),
            est.stars.rejections,
            est.model.n_basis(),
            est.model.degree(),
            est.fwhm,
            est.fwhm_stars
        );
        assert!(err <= 0.03, "model {model_med} vs Python {ref_med}");
        // The README's numbers (2.82 / 2.91) could not be reproduced by any Gaussian-fit
        // variant (see the script header): only a loose check against them.
        assert!(
            centre_err <= 0.05,
            "centre FWHM {} vs {fwhm_readme}",
            est.fwhm
        );
    }
}

#[test]
fn sparse_default_varying_field_degrades_gracefully() {
    // sky-sim's default varying_psf preset: 300 stars on 512^2 with fluxes 300-300 000 ADU
    // (index 2): only 29 are detected and 17 qualify (10 are below S/N 20). Without the wing
    // regularisation the noise floor admits one element (worst L2 36.6 %, median 13.7 %,
    // FWHM 24 %); with it, two elements with linear fields.
    let pair = simulate(&SimConfig::varying_psf()).unwrap();
    let mut params = params_for(&pair);
    params.kl.wing_snr = 1.0;
    let (est, (worst, med, fw)) = estimate_scored("sparse varying PSF", &pair, &params);
    eprintln!("  {} wing px", est.model.diagnostics().n_wing_pixels);
    assert!(est.model.n_basis() >= 2 && est.model.degree() == 1);
    assert!(
        worst <= 0.27 && med <= 0.08 && fw <= 0.10,
        "{worst} {med} {fw}"
    );
    // Without the regularisation: one element, much worse.
    let kp = KlParams {
        wing_snr: 0.0,
        ..Default::default()
    };
    let raw = KlPsf::fit(&est.stars, &kp).unwrap();
    let (w0, m0, _) = grid_errors(&pair, &raw);
    assert_eq!(raw.n_basis(), 1);
    assert!(w0 > worst + 0.05 && m0 > med + 0.03, "{w0} {m0}");
}

/// Diagnostics on fields from sparse to dense (run with `--ignored --nocapture`; slow-ish):
/// prints the selection, the KL fit and the errors against the truth.
#[test]
#[ignore = "diagnostic (slow): prints selection and KL fit from sparse to dense fields"]
fn diag_sparse_fields() {
    let mut denser = SimConfig::varying_psf();
    denser.n_stars = 1000;
    for (name, cfg) in [
        (
            "varying_psf default 512^2 / 300 stars",
            SimConfig::varying_psf(),
        ),
        ("varying_psf 512^2 / 1000 stars", denser),
        ("dense bright 1024^2", dense_varying()),
    ] {
        let pair = simulate(&cfg).unwrap();
        let (est, (worst, med, fw)) = estimate_scored(name, &pair, &params_for(&pair));
        let d = est.model.diagnostics();
        eprintln!(
            "  {} objects, stamp {}\n  eig {:?}\n  noise {:.3e} thr {:.3e}",
            est.objects.len(),
            est.stars.stamp_size,
            &d.eigenvalues[..d.eigenvalues.len().min(6)],
            d.noise_level,
            d.noise_threshold
        );
        assert!(worst < 0.3 && med < 0.08 && fw < 0.16, "{name}");
    }
}
