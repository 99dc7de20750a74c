//! `diffim demo`: runs the binary on a small pair and reads the files back.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use diffim::fits::{self, Hdu};
use diffim::sim::{SimConfig, Truth, simulate};

#[test]
fn demo_writes_a_readable_pair() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let status = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args([
            "demo",
            "--sim-only",
            "--transients",
            "20",
            "--size",
            "256",
            "--seed",
            "5",
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());

    let sci = fits::read_image::<f32>(&out.join("science.fits"), &Hdu::Primary).unwrap();
    let tmpl = fits::read_image::<f32>(&out.join("template.fits"), &Hdu::Primary).unwrap();
    assert_eq!(sci.data.dim(), (256, 256));
    assert_eq!(tmpl.data.dim(), (256, 256));
    let sm = fits::read_mask(&out.join("science_mask.fits"), &Hdu::Primary).unwrap();
    let tm = fits::read_mask(&out.join("template_mask.fits"), &Hdu::Primary).unwrap();
    assert_eq!(sm.dim(), (256, 256));
    assert_eq!(tm.dim(), (256, 256));

    // Same bytes as the library with the same config.
    let pair = simulate(&SimConfig::default().with_size(256, 256).with_seed(5)).unwrap();
    assert_eq!(sci.data, pair.science);
    assert_eq!(tmpl.data, pair.template);
    assert_eq!(sm, pair.science_mask);
    assert_eq!(tm, pair.template_mask);
    assert_eq!(sci.header.get_str("CTYPE1").unwrap(), "RA---TAN");
    assert_eq!(sci.header.get_f64("CRPIX1").unwrap(), 128.5);
    assert_eq!(
        sci.header.get_f64("GAIN").unwrap(),
        pair.config.science.gain
    );
    assert_eq!(tmpl.header.get_i64("SIMSEED").unwrap(), 5);

    let truth = Truth::read_csv(&out.join("truth.csv")).unwrap();
    assert_eq!(truth, pair.truth);
    assert_eq!(truth.transients.len(), 20);

    // Running again replaces the files.
    let again = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args([
            "--quiet",
            "demo",
            "--sim-only",
            "--size",
            "256",
            "--seed",
            "6",
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(again.success());
    let sci6 = fits::read_image::<f32>(&out.join("science.fits"), &Hdu::Primary).unwrap();
    assert_ne!(sci6.data, sci.data);
}

#[test]
fn demo_rejects_a_bad_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args(["demo", "--size", "3", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("science.fits").exists());
}
