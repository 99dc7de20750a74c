//! Development diagnostic: how far the psf-kl PSFs of a sky-sim pair are from the truth, and
//! what amplitude bias a PSF fit with them gives (the source of the beta bias).
//!
//! `cargo run -p zogy-core --example beta_diag`
#![allow(clippy::unwrap_used, missing_docs)]

use psf_kl::{PsfEstimateParams, PsfModel, estimate_psf};
use sky_sim::{SimConfig, simulate};

fn main() {
    let mut cfg = SimConfig::default().with_size(1024, 1024).with_seed(8);
    cfg.n_transients = 400;
    let pair = simulate(&cfg).unwrap();
    for (name, img, mask, gain) in [
        (
            "science",
            &pair.science,
            &pair.science_mask,
            pair.config.science.gain,
        ),
        (
            "template",
            &pair.template,
            &pair.template_mask,
            pair.config.template.gain,
        ),
    ] {
        let p = PsfEstimateParams {
            saturation: Some(60_000.0),
            gain: Some(gain),
            ..Default::default()
        };
        let e = estimate_psf(&img.view(), Some(&mask.view()), &p).unwrap();
        let m = e.model.psf_at(511.5, 511.5);
        let n = m.dim().0;
        let t = if name == "science" {
            pair.science_psf_at(511.5, 511.5, n)
        } else {
            pair.template_psf_at(511.5, 511.5, n)
        };
        // Linear fit t ~ a m + b over the stamp (free background, as in the beta fit).
        let k = (n * n) as f64;
        let (sm, st) = (m.sum(), t.sum());
        let smm: f64 = m.iter().map(|v| v * v).sum();
        let smt: f64 = m.iter().zip(t.iter()).map(|(a, b)| a * b).sum();
        let a = (smt - sm * st / k) / (smm - sm * sm / k);
        let a0 = smt / smm;
        let c = n / 2;
        println!(
            "{name}: stamp {n} n_basis {} fwhm model {:.3} stars {:.3}; sum model {:.4} true-in-stamp {:.4}; peak model/true {:.4}; fit amplitude of true with model: {a:.4} (with bg) {a0:.4} (no bg); edge mean model {:.2e}",
            e.model.n_basis(),
            e.fwhm,
            e.fwhm_stars,
            sm,
            st,
            m[[c, c]] / t[[c, c]],
            (m.row(0).sum() + m.row(n - 1).sum()) / (2.0 * n as f64)
        );
    }
}
