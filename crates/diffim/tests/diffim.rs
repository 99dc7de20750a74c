//! Integration tests of the diffim facade: the pipeline's adjust fit of ZOGY candidates in the
//! cross-convolution frame (issue 11), on a sky-sim pair with injected transients and one
//! deliberately misregistered star.
#![allow(clippy::unwrap_used, missing_docs)]

use diffim::cutout::{AdjustParams, Candidate, CutoutOptions};
use diffim::ndarray::Array2;
use diffim::pipeline::{
    ADJUST_NOISE_CORRELATION, CandidateRow, PipelineMeta, PipelineParams, PipelineResult,
    candidate_cutout, run_pipeline,
};
use diffim::sim::{SimConfig, SimPair, simulate};
use diffim::subtract::{Method, SubtractInputs};

/// Shift (pixels, +x) given to the template around the misregistered star.
const SHIFT: usize = 1;
/// Half-size of the template box moved by [`SHIFT`].
const BOX: usize = 12;

struct Run {
    pair: SimPair,
    template: Array2<f32>,
    /// The misregistered star (science position).
    star: (f64, f64),
    res: PipelineResult,
}

fn dist(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.0 - b.0).hypot(a.1 - b.1)
}

fn inputs<'a>(pair: &'a SimPair, template: &'a Array2<f32>) -> SubtractInputs<'a> {
    SubtractInputs {
        template: template.view(),
        ..SubtractInputs::from_sim(pair)
    }
}

/// A 512^2 sky-sim pair with 25 transients; one isolated, moderately bright star (science S/N
/// about 100) has its template box moved by [`SHIFT`] px in +x (an integer move keeps the
/// noise white): a misregistration dipole. ZOGY pipeline, cutouts for every candidate.
fn zogy_run() -> Run {
    let mut cfg = SimConfig::default().with_size(512, 512).with_seed(11);
    cfg.n_transients = 25;
    cfg.transient_snr = (8.0, 60.0);
    let pair = simulate(&cfg).unwrap();
    let t = &pair.truth;
    let isolated = |x: f64, y: f64| {
        x > 60.0
            && y > 60.0
            && x < 452.0
            && y < 452.0
            && t.transients
                .iter()
                .all(|tr| dist((tr.x, tr.y), (x, y)) > 30.0)
            && t.stars.iter().all(|s| {
                let d = dist((s.x, s.y), (x, y));
                !(0.5..=18.0).contains(&d) || s.flux_template < 500.0
            })
    };
    let s = t
        .stars
        .iter()
        .filter(|s| {
            !s.saturated && (3000.0..15000.0).contains(&s.flux_template) && isolated(s.x, s.y)
        })
        .max_by(|a, b| a.flux_template.total_cmp(&b.flux_template))
        .expect("an isolated moderately bright star");
    let star = (s.x, s.y);
    let mut template = pair.template.clone();
    let (cx, cy) = (s.x.round() as usize, s.y.round() as usize);
    for y in cy - BOX..=cy + BOX {
        for x in (cx - BOX..=cx + BOX).rev() {
            template[[y, x]] = pair.template[[y, x - SHIFT]];
        }
    }
    let params = PipelineParams {
        method: Method::Zogy,
        max_cutouts: 1000,
        ..Default::default()
    };
    let meta = PipelineMeta {
        science_header: Some(&pair.science_header),
        science_name: None,
    };
    let res = run_pipeline(&inputs(&pair, &template), &meta, &params, None).unwrap();
    Run {
        pair,
        template,
        star,
        res,
    }
}

fn nearest(rows: &[CandidateRow], p: (f64, f64)) -> Option<&CandidateRow> {
    rows.iter()
        .filter(|r| dist((r.x, r.y), p) < 3.0)
        .min_by(|a, b| dist((a.x, a.y), p).total_cmp(&dist((b.x, b.y), p)))
}

#[test]
fn zogy_adjust_fit_in_the_cross_convolution_frame() {
    let run = zogy_run();
    let rows = &run.res.candidates;
    let sub = &run.res.subtraction;
    assert!(
        sub.cross.is_some(),
        "ZOGY keeps its cross-convolution inputs"
    );
    assert!(!rows.is_empty());

    // (a) Every candidate has the adjust fit.
    for r in rows {
        assert!(
            r.adjust_pvalue.is_some() && r.adjust_chi2.is_some() && r.adjust_dx.is_some(),
            "candidate {} at ({:.1}, {:.1}) has no adjust fit",
            r.id,
            r.x,
            r.y
        );
    }

    // (b) Real transients (S/N >= 20) are not explained by a shift and rescale.
    let mut n_bright = 0;
    for tr in run.pair.truth.transients.iter().filter(|t| t.snr >= 20.0) {
        let Some(r) = nearest(rows, (tr.x, tr.y)) else {
            panic!(
                "transient S/N {:.1} at ({:.1}, {:.1}) not found",
                tr.snr, tr.x, tr.y
            );
        };
        let p = r.adjust_pvalue.unwrap();
        eprintln!(
            "transient S/N {:5.1}: p {p:.3e}, chi2 {:.0} -> {:.0}",
            tr.snr,
            r.adjust_chi2_0.unwrap(),
            r.adjust_chi2.unwrap()
        );
        assert!(p < 1e-6, "transient S/N {:.1}: p-value {p:e}", tr.snr);
        n_bright += 1;
    }
    assert!(n_bright >= 5, "{n_bright} transients with S/N >= 20");

    // (c) The misregistration dipole is explained: chi2/dof ~ 1, a fair p-value, dx ~ -SHIFT
    // (the template star sits SHIFT px to the right of the science star).
    let r = nearest(rows, run.star).expect("the dipole is a candidate");
    let inputs = inputs(&run.pair, &run.template);
    let c = candidate_cutout(
        &inputs,
        sub,
        &Candidate::at(r.x, r.y),
        15.0,
        CutoutOptions::default(),
        Some(&AdjustParams::default()),
    )
    .unwrap();
    let a = c.adjust.unwrap();
    let k = c.meta(ADJUST_NOISE_CORRELATION).unwrap().as_f64().unwrap();
    eprintln!(
        "dipole: significance {:.1}, chi2_0/dof {:.2}, chi2/dof {:.3}, p {:.3}, dx {:.3}, dy {:.3}, scale {:.3}, c {k:.2}",
        r.significance,
        a.chi2_0 / a.dof as f64,
        a.chi2 / a.dof as f64,
        a.pvalue,
        a.dx,
        a.dy,
        a.scale
    );
    assert_eq!(
        Some(a.pvalue),
        r.adjust_pvalue,
        "same fit as the pipeline's"
    );
    assert!(
        r.significance > 5.0,
        "a detected dipole: {}",
        r.significance
    );
    assert!(a.chi2_0 / a.dof as f64 > 5.0, "unexplained before the fit");
    assert!((0.7..1.4).contains(&(a.chi2 / a.dof as f64)), "{a:?}");
    assert!(a.pvalue > 0.01, "{a:?}");
    assert!(
        (a.dx + SHIFT as f64).abs() < 0.15 && a.dy.abs() < 0.15,
        "{a:?}"
    );
    assert!((a.scale - 1.0).abs() < 0.05, "{a:?}");
    // The ZOGY cutout's planes, in the order the FITS file and the PNG show them.
    let names: Vec<&str> = c.planes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "image",
            "convolved",
            "science",
            "template",
            "diff",
            "significance",
            "err",
            "noise",
            "adjusted"
        ]
    );
    // The adjusted plane is (image - model) / err: N(0,1)-like around the explained dipole.
    let adj = c.plane("adjusted").unwrap();
    let centre: Vec<f64> = adj
        .slice(diffim::ndarray::s![10..21, 10..21])
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let rms = (centre.iter().map(|v| v * v).sum::<f64>() / centre.len() as f64).sqrt();
    assert!(rms < 1.5, "adjusted RMS at the dipole {rms}");

    // The err plane is right: chi2/dof ~ 1 on blank sky (no transient, no star brighter than
    // 1000 ADU within 20 px, no masked pixel in the stamp), before and after the fit.
    let t = &run.pair.truth;
    let mut ratios = Vec::new();
    for gy in (40..480).step_by(37) {
        for gx in (40..480).step_by(41) {
            let p = (gx as f64, gy as f64);
            let clear = t.transients.iter().all(|tr| dist((tr.x, tr.y), p) > 25.0)
                && t.stars
                    .iter()
                    .all(|s| s.flux_template < 1000.0 || dist((s.x, s.y), p) > 20.0)
                && dist(run.star, p) > 30.0;
            if !clear {
                continue;
            }
            let c = candidate_cutout(
                &inputs,
                sub,
                &Candidate::at(p.0, p.1),
                15.0,
                CutoutOptions::default(),
                Some(&AdjustParams::default()),
            )
            .unwrap();
            if c.mask.iter().any(|&m| m) {
                continue;
            }
            let a = c.adjust.unwrap();
            let k = c.meta(ADJUST_NOISE_CORRELATION).unwrap().as_f64().unwrap();
            let dof = a.dof as f64;
            ratios.push((
                a.chi2_0 / dof,
                a.chi2 / dof,
                a.pvalue,
                (2.0 * k / dof).sqrt(),
            ));
        }
    }
    assert!(ratios.len() >= 15, "{} blank positions", ratios.len());
    let n = ratios.len() as f64;
    let mean = |f: fn(&(f64, f64, f64, f64)) -> f64| ratios.iter().map(f).sum::<f64>() / n;
    let (m0, m1, sd_pred) = (mean(|r| r.0), mean(|r| r.1), mean(|r| r.3));
    let sd0 = (ratios.iter().map(|r| (r.0 - m0).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let n_low_p = ratios.iter().filter(|r| r.2 < 1e-3).count();
    eprintln!(
        "blank sky: {} stamps, mean chi2_0/dof {m0:.3} (scatter {sd0:.3}, predicted from the \
         noise correlation {sd_pred:.3}), mean chi2/dof {m1:.3}, range {:.3}-{:.3}, p < 1e-3: {n_low_p}",
        ratios.len(),
        ratios.iter().map(|r| r.1).fold(f64::INFINITY, f64::min),
        ratios.iter().map(|r| r.1).fold(0.0, f64::max)
    );
    // The err plane: chi2/dof is 1 on average before the fit; the fit's 3 parameters absorb
    // about 3c of it (correlated noise), hence slightly less after.
    assert!((0.93..1.07).contains(&m0), "mean chi2_0/dof {m0}");
    assert!((0.85..1.05).contains(&m1), "mean chi2/dof {m1}");
    // Correlated noise: chi2/dof scatters by sqrt(2c/dof) (~0.19 here), not sqrt(2/dof).
    assert!(
        (0.7..1.4).contains(&(sd0 / sd_pred)),
        "chi2_0/dof scatter {sd0} vs predicted {sd_pred}"
    );
    for r in &ratios {
        assert!((0.5..1.6).contains(&r.1), "blank-sky chi2/dof {r:?}");
    }
    assert!(
        n_low_p * 10 <= ratios.len(),
        "{n_low_p} of {} blank stamps with p < 1e-3",
        ratios.len()
    );
}
