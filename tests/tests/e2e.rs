//! End-to-end tests: the pipeline on simulated pairs against their truth (the demo's targets)
//! and on the real ProperImage pair with injected fakes.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use diffim::pipeline::{
    Evaluation, FakeParams, PipelineMeta, PipelineParams, evaluate, inject_fakes, run_pipeline,
};
use diffim::sim::{SimConfig, simulate};
use diffim::subtract::{Method, SubtractInputs};

/// A real data file (see `diffim_core::testdata`: `$DIFFIM_DATA` or `data/real`; missing
/// files fail under `CI=true`).
fn real_data(rel: &str) -> Option<PathBuf> {
    diffim::core::testdata::real_data(rel)
}

/// Runs the pipeline (no files) on a simulated pair and scores it against the truth.
fn sim_run(method: Method, seed: u64, size: usize, n_transients: usize) -> Evaluation {
    let mut cfg = SimConfig::default().with_size(size, size).with_seed(seed);
    cfg.n_transients = n_transients;
    let pair = simulate(&cfg).unwrap();
    let inputs = SubtractInputs::from_sim(&pair);
    let params = PipelineParams {
        method,
        max_cutouts: 0,
        ..Default::default()
    };
    let meta = PipelineMeta {
        science_header: Some(&pair.science_header),
        science_name: None,
    };
    let res = run_pipeline(&inputs, &meta, &params, None).unwrap();
    let truth: Vec<_> = pair
        .truth
        .transients
        .iter()
        .map(|t| (t.x, t.y, t.flux, t.snr))
        .collect();
    let e = evaluate(&res.candidates, &truth, (size, size), 2.0);
    eprintln!("{method} seed {seed}:\n{}", e.table());
    e
}

/// The demo's targets (issue 11): >= 97% of S/N >= 10 transients recovered and <= 2 false
/// candidates per megapixel, over two 1024^2 pairs. Fluxes: median ratio within `flux_tol`
/// (ZOGY 3%, issue 6's target: 1.012 and 0.998 on these seeds with the aperture-corrected PSF
/// photometry; SFFT's aperture photometry 5%, a regression guard).
fn demo_targets(method: Method, flux_tol: f64) {
    let runs: Vec<Evaluation> = (1..=2)
        .map(|seed| sim_run(method, seed, 1024, 120))
        .collect();
    let inj: usize = runs.iter().map(|e| e.injected_snr10).sum();
    let rec: usize = runs.iter().map(|e| e.recovered_snr10).sum();
    let fp: f64 = runs.iter().map(|e| e.false_per_mpix).sum::<f64>() / runs.len() as f64;
    assert!(
        inj >= 80,
        "enough bright transients for the statistic: {inj}"
    );
    assert!(
        rec as f64 >= 0.97 * inj as f64,
        "{method}: completeness {rec}/{inj}"
    );
    assert!(fp <= 2.0, "{method}: {fp} false candidates per Mpix");
    for e in &runs {
        assert!(
            (e.median_flux_ratio - 1.0).abs() < flux_tol,
            "{method}: flux ratio {}",
            e.median_flux_ratio
        );
    }
}

#[test]
fn demo_targets_zogy() {
    demo_targets(Method::Zogy, 0.03);
}

#[test]
fn demo_targets_sfft() {
    demo_targets(Method::Sfft, 0.05);
}

/// The real ProperImage pair (frames 74 s apart: nothing real changes) with fakes made of the
/// science image's own PSF at random empty positions.
fn properimage_with_fakes(method: Method) -> Option<Evaluation> {
    let sci_p = real_data("properimage/aligned_eso085-030-005.fit")?;
    let ref_p = real_data("properimage/aligned_eso085-030-004.fit")?;
    let mut sci = diffim::fits::read_image::<f32>(&sci_p, &diffim::fits::Hdu::Primary)
        .unwrap()
        .data;
    let tmpl = diffim::fits::read_image::<f32>(&ref_p, &diffim::fits::Hdu::Primary)
        .unwrap()
        .data;
    let (ny, nx) = sci.dim();
    // Hard saturation of the 16-bit camera.
    let sat = 65000.0;
    let est = diffim::psf::estimate_psf(
        &sci.view(),
        None,
        &diffim::psf::PsfEstimateParams {
            saturation: Some(sat),
            ..Default::default()
        },
    )
    .unwrap();
    let sigma_bg = est.background.global_rms;
    // Seeded positions away from edges and from every detected object.
    let objects: Vec<(f64, f64)> = est.objects.iter().map(|o| (o.x, o.y)).collect();
    let fakes = inject_fakes(
        &mut sci,
        &est.model,
        sigma_bg,
        &objects,
        &FakeParams::default(),
    );
    assert!(fakes.len() >= 50, "placed {} fakes", fakes.len());
    let mut inputs = SubtractInputs::new(sci.view(), tmpl.view());
    inputs.science_saturation = Some(sat);
    inputs.template_saturation = Some(sat);
    let params = PipelineParams {
        method,
        max_cutouts: 0,
        ..Default::default()
    };
    let res = run_pipeline(&inputs, &PipelineMeta::default(), &params, None).unwrap();
    let e = evaluate(&res.candidates, &fakes, (ny, nx), 2.0);
    eprintln!(
        "properimage {method}: {} candidates\n{}",
        res.candidates.len(),
        e.table()
    );
    Some(e)
}

/// ZOGY on the real pair: completeness >= 97% (60/60 measured), no false candidate (<= 1 per
/// Mpix is the target; before the cosmic-ray and PSF-wing work: 2), flux within 3% (1.024
/// measured: the fakes are copies of the PSF *model*, which lacks the real stars' wider
/// wings that ZOGY's flux aperture correction restores, so they read a little high).
#[test]
fn properimage_pair_with_fakes_zogy() {
    let Some(e) = properimage_with_fakes(Method::Zogy) else {
        return;
    };
    assert!(
        e.completeness_snr10() >= 0.97,
        "completeness {}",
        e.completeness_snr10()
    );
    assert!(
        e.false_per_mpix <= 1.0,
        "false per Mpix {}",
        e.false_per_mpix
    );
    assert!(
        (e.median_flux_ratio - 1.0).abs() < 0.03,
        "flux ratio {}",
        e.median_flux_ratio
    );
}

#[test]
fn properimage_pair_with_fakes_sfft() {
    let Some(e) = properimage_with_fakes(Method::Sfft) else {
        return;
    };
    assert!(
        e.completeness_snr10() >= 0.97,
        "completeness {}",
        e.completeness_snr10()
    );
}

#[test]
fn pipeline_writes_a_complete_report() {
    let cfg = SimConfig::default().with_size(512, 512).with_seed(5);
    let pair = simulate(&cfg).unwrap();
    let inputs = SubtractInputs::new(pair.science.view(), pair.template.view());
    let dir = std::env::temp_dir().join(format!("diffim-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let meta = PipelineMeta {
        science_header: Some(&pair.science_header),
        science_name: Some("sim"),
    };
    let res = run_pipeline(&inputs, &meta, &PipelineParams::default(), Some(&dir)).unwrap();
    for f in [
        "diff.fits",
        "significance.fits",
        "noise.fits",
        "mask.fits",
        "candidates.csv",
        "index.html",
        "summary.json",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["n_candidates"].as_u64(),
        Some(res.candidates.len() as u64)
    );
    assert!(summary["timings_s"]["subtract"].as_f64().unwrap() > 0.0);
    assert!(
        summary["timings_s"]["total"].as_f64().unwrap()
            >= summary["timings_s"]["subtract"].as_f64().unwrap()
    );
    let csv = std::fs::read_to_string(dir.join("candidates.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        res.candidates.len() + 1,
        "header + one line per candidate"
    );
    for c in res.candidates.iter().take(3) {
        assert!(dir.join(format!("cutouts/cand-{}.png", c.id)).exists());
        assert!(
            c.ra.is_some() && c.dec.is_some(),
            "sky coordinates from the sim's TAN WCS"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
