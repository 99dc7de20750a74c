//! CLI tests of `diffim coadd` (and `diffim subtract --method zogy` when it is wired).
#![allow(clippy::unwrap_used)]

use diffim::fits::{Hdu, WriteOptions, read_mef, write_image};
use diffim::sim::{SimConfig, simulate};
use std::process::Command;

#[test]
fn coadd_writes_r_and_psf_r() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SimConfig::default().with_size(256, 256).with_seed(5);
    cfg.n_transients = 0;
    let pair = simulate(&cfg).unwrap();
    let a = dir.path().join("a.fits");
    let b = dir.path().join("b.fits");
    write_image(
        &a,
        &pair.science.view(),
        &pair.science_header,
        WriteOptions::default(),
    )
    .unwrap();
    write_image(
        &b,
        &pair.template.view(),
        &pair.template_header,
        WriteOptions::default(),
    )
    .unwrap();
    let out = dir.path().join("coadd.fits");
    let st = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args([
            "coadd",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let (_primary, planes) = read_mef(&out).unwrap();
    assert_eq!(planes.len(), 2);
    assert_eq!(planes[0].name, "R");
    assert_eq!(planes[1].name, "PSF_R");
    let r = match &planes[0].data {
        diffim::fits::PlaneData::F32(r) => r.clone(),
        other => panic!("R plane type {other:?}"),
    };
    assert_eq!(r.dim(), (256, 256));
    // Unit noise per pixel on blank sky.
    let rms = diffim::core::stats::mad_std(r.iter().filter(|v| v.is_finite()).map(|&v| v as f64))
        .unwrap();
    assert!((rms - 1.0).abs() < 0.15, "R rms {rms}");
    let psf_sum: f64 = match &planes[1].data {
        diffim::fits::PlaneData::F64(p) => p.sum(),
        diffim::fits::PlaneData::F32(p) => p.iter().map(|&v| v as f64).sum(),
        other => panic!("PSF_R plane type {other:?}"),
    };
    assert!((psf_sum - 1.0).abs() < 1e-4, "P_R sum {psf_sum}");
    // A mismatched zero-point list is a usage error (exit 2).
    let bad = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args([
            "coadd",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--zero-points",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let _ = Hdu::Primary;
}
