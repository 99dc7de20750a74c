//! `diffim detect` and `diffim background` on a small sky-sim image written to a tempdir.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use diffim::extract::{BackgroundParams, estimate_background};
use diffim::fits::{self, Hdu};
use diffim::sim::SimConfig;

mod common;

#[test]
fn detect_and_background_on_a_sim_image() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, sci, _) = common::write_pair(
        dir.path(),
        &SimConfig::default().with_size(256, 256).with_seed(11),
    );

    // detect -> CSV file
    let cat = dir.path().join("cat.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args(["detect"])
        .arg(&sci)
        .args(["--threshold", "5", "--out"])
        .arg(&cat)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&cat).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "x,y,flux,flux_err,background,peak,fwhm,a,b,theta,snr,npix,flags"
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert!(!rows.is_empty());
    // Every bright, unsaturated true star inside the frame is in the catalogue (0-based x, y).
    let mut n = 0;
    for s in &pair.truth.stars {
        let inside = s.x > 10.0 && s.y > 10.0 && s.x < 245.0 && s.y < 245.0;
        if s.saturated || !inside || s.flux_science < 2e4 {
            continue;
        }
        let d = rows
            .iter()
            .map(|r| (r[0] - s.x).hypot(r[1] - s.y))
            .fold(f64::INFINITY, f64::min);
        assert!(d < 1.0, "star at ({}, {}) missing (nearest {d})", s.x, s.y);
        n += 1;
    }
    assert!(n > 0, "no bright star in the simulated frame");

    // detect -> stdout, same rows
    let out = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args(["detect"])
        .arg(&sci)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), text);

    // background -> two FITS maps equal to the library's
    let (bgp, rmsp) = (dir.path().join("bg.fits"), dir.path().join("rms.fits"));
    let out = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args(["background"])
        .arg(&sci)
        .arg("--out-bg")
        .arg(&bgp)
        .arg("--out-rms")
        .arg(&rmsp)
        .args(["--box", "32"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bg = fits::read_image::<f32>(&bgp, &Hdu::Primary).unwrap();
    let rms = fits::read_image::<f32>(&rmsp, &Hdu::Primary).unwrap();
    let lib = estimate_background(
        &pair.science.view(),
        None,
        &BackgroundParams {
            box_size: 32,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(bg.data, lib.background);
    assert_eq!(rms.data, lib.rms);

    // a missing file is a clean failure
    let out = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args(["detect"])
        .arg(dir.path().join("nope.fits"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
