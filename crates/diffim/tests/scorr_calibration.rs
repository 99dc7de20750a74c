//! ZOGY's Scorr calibration ([`ZogyOptions::calibrate_scorr`]) on correlated noise: a sky-sim
//! pair whose two images are both smoothed with a 3x3 binomial kernel, as resampling does. The
//! per-pixel noise RMS then under-predicts the noise at the PSF scale, and ZOGY's white-noise
//! normalisation gives a Scorr that is too wide; the calibration restores N(0, 1) on blank sky
//! and keeps the bright transients detected.
#![allow(clippy::unwrap_used, missing_docs)]

use diffim::core::stats::mad_std;
use diffim::ndarray::Array2;
use diffim::sim::{SimConfig, SimPair, simulate};
use diffim::subtract::SubtractInputs;
use diffim::subtract::zogy::{ZogyOptions, subtract_zogy};

/// 3x3 binomial smoothing ([1 2 1] / 4 along each axis), edge pixels repeated.
fn smooth(a: &Array2<f32>) -> Array2<f32> {
    let (ny, nx) = a.dim();
    let w = [0.25f32, 0.5, 0.25];
    Array2::from_shape_fn((ny, nx), |(y, x)| {
        let mut s = 0.0;
        for (j, wy) in w.iter().enumerate() {
            for (i, wx) in w.iter().enumerate() {
                let yy = (y + j).saturating_sub(1).min(ny - 1);
                let xx = (x + i).saturating_sub(1).min(nx - 1);
                s += wy * wx * a[[yy, xx]];
            }
        }
        s
    })
}

/// Unmasked pixels at least 8 px from every star brighter than 300 ADU and 12 px from every
/// transient.
fn blank(pair: &SimPair, mask: &Array2<bool>) -> Array2<bool> {
    let t = &pair.truth;
    Array2::from_shape_fn(mask.dim(), |(y, x)| {
        let (xf, yf) = (x as f64, y as f64);
        !mask[[y, x]]
            && t.stars
                .iter()
                .filter(|s| s.flux_template.max(s.flux_science) > 300.0)
                .all(|s| (s.x - xf).hypot(s.y - yf) > 8.0)
            && t.transients
                .iter()
                .all(|tr| (tr.x - xf).hypot(tr.y - yf) > 12.0)
    })
}

fn robust_std(a: &Array2<f32>, keep: &Array2<bool>) -> f64 {
    mad_std(
        a.iter()
            .zip(keep.iter())
            .filter(|(_, k)| **k)
            .map(|(v, _)| *v as f64),
    )
    .unwrap()
}

#[test]
fn scorr_is_calibrated_on_correlated_noise() {
    let mut cfg = SimConfig::default().with_size(512, 512).with_seed(21);
    cfg.n_transients = 30;
    cfg.transient_snr = (25.0, 80.0);
    let pair = simulate(&cfg).unwrap();
    let (n, r) = (smooth(&pair.science), smooth(&pair.template));
    let inputs = SubtractInputs {
        science: n.view(),
        template: r.view(),
        ..SubtractInputs::from_sim(&pair)
    };
    let cal = subtract_zogy(&inputs, &ZogyOptions::default()).unwrap();
    let raw = subtract_zogy(
        &inputs,
        &ZogyOptions {
            calibrate_scorr: None,
            ..Default::default()
        },
    )
    .unwrap();
    let keep = blank(&pair, &cal.mask);
    let (std_raw, std_cal) = (
        robust_std(&raw.significance, &keep),
        robust_std(&cal.significance, &keep),
    );
    let scale = cal.diagnostics["scorr_calibration"].as_f64().unwrap();
    assert!(raw.diagnostics["scorr_calibration"].is_null());
    // diff / noise: the noise plane is the per-pixel RMS of diff, right without calibration.
    let z = Array2::from_shape_fn(cal.diff.dim(), |p| cal.diff[p] / cal.noise[p]);
    let std_z = robust_std(&z, &keep);
    // Bright transients: Scorr peak within 2 px.
    let peak = |s: &Array2<f32>, x: f64, y: f64| {
        let (xc, yc) = (x.round() as isize, y.round() as isize);
        let mut m = f32::NEG_INFINITY;
        for j in yc - 2..=yc + 2 {
            for i in xc - 2..=xc + 2 {
                if j >= 0 && i >= 0 && (j as usize) < s.nrows() && (i as usize) < s.ncols() {
                    m = m.max(s[[j as usize, i as usize]]);
                }
            }
        }
        m
    };
    let inside: Vec<_> = pair
        .truth
        .transients
        .iter()
        .filter(|t| t.x > 20.0 && t.y > 20.0 && t.x < 492.0 && t.y < 492.0)
        .collect();
    let found = inside
        .iter()
        .filter(|t| peak(&cal.significance, t.x, t.y) >= 5.0)
        .count();
    eprintln!(
        "correlated noise: blank-sky Scorr std {std_raw:.3} uncalibrated, {std_cal:.3} \
         calibrated (scale {scale:.3}); diff/noise std {std_z:.3}; {found}/{} bright \
         transients at Scorr >= 5",
        inside.len()
    );
    assert!(std_raw > 1.3, "the smoothing should widen Scorr: {std_raw}");
    assert!(
        (scale - std_raw).abs() < 0.1 * std_raw,
        "{scale} vs {std_raw}"
    );
    assert!((0.95..=1.05).contains(&std_cal), "calibrated std {std_cal}");
    assert!((0.9..=1.1).contains(&std_z), "diff / noise std {std_z}");
    assert!(
        found as f64 >= 0.9 * inside.len() as f64,
        "{found} of {}",
        inside.len()
    );
}
