//! `diffim psf` on a small simulated image: the MEF basis reproduces the true PSF, the PNG
//! grid is written, bad input fails cleanly.
#![allow(clippy::unwrap_used)]

use diffim::fits::{Hdu, PlaneData, WriteOptions, read_mef, write_image};
use diffim::psf::poly::{CoordScale, n_terms};
use diffim::psf::{KlPsf, KlPsfParts, PsfModel};
use diffim::sim::SimConfig;
use std::process::Command;

mod common;

#[test]
fn psf_writes_a_basis_that_reproduces_the_true_psf() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SimConfig::varying_psf();
    cfg.n_stars = 300;
    cfg.star_flux_min = 60_000.0;
    cfg.star_flux_max = 400_000.0;
    cfg.n_transients = 0;
    let (pair, sci, _) = common::write_pair(dir.path(), &cfg);
    let out = dir.path().join("psf.fits");
    let png = dir.path().join("grid.png");
    let st = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args(["psf", sci.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--png", png.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&st.stderr)
    );

    // Rebuild the model from the file alone.
    let (h, planes) = read_mef(&out).unwrap();
    let nb = h.get_i64("KLNB").unwrap() as usize;
    let deg = h.get_i64("KLDEG").unwrap() as usize;
    assert!(
        nb >= 1 && planes.len() == nb,
        "{nb} basis, {} planes",
        planes.len()
    );
    let basis: Vec<_> = (0..nb)
        .map(|i| {
            let p = planes
                .iter()
                .find(|p| p.name == format!("BASIS{i}"))
                .unwrap();
            match &p.data {
                PlaneData::F64(a) => a.clone(),
                PlaneData::F32(a) => a.mapv(f64::from),
                _ => panic!("basis not float"),
            }
        })
        .collect();
    let coeffs = (0..nb)
        .map(|i| {
            (0..n_terms(deg))
                .map(|j| h.get_f64(&format!("KLC{i}_{j}")).unwrap())
                .collect()
        })
        .collect();
    let f = |k: &str| h.get_f64(k).unwrap();
    let model = KlPsf::from_parts(KlPsfParts {
        basis,
        degree: deg,
        coeffs,
        scale: CoordScale {
            cx: f("KLXC"),
            hx: f("KLXS"),
            cy: f("KLYC"),
            hy: f("KLYS"),
        },
        image_shape: (
            h.get_i64("KLNY").unwrap() as usize,
            h.get_i64("KLNX").unwrap() as usize,
        ),
    })
    .unwrap();
    for (x, y) in [(256.0, 256.0), (100.0, 400.0), (420.0, 90.0)] {
        let p = model.psf_at(x, y);
        let t = pair.science_psf_at(x, y, model.stamp_size());
        let e = (&p - &t).mapv(|v| v * v).sum().sqrt() / t.mapv(|v| v * v).sum().sqrt();
        assert!(e < 0.05, "relative L2 error {e} at ({x}, {y})");
    }
    assert!(f("FWHM") > 3.0 && f("FWHM") < 5.0);

    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    // A second run without --overwrite refuses; a blank image fails with a star count.
    let again = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args(["psf", sci.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    let blank = dir.path().join("blank.fits");
    let flat = diffim::ndarray::Array2::from_shape_fn((128, 128), |(y, x)| {
        100.0 + ((x * 31 + y * 17) % 7) as f32
    });
    write_image(
        &blank,
        &flat.view(),
        &diffim::fits::Header::new(),
        WriteOptions::default(),
    )
    .unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args(["psf", blank.to_str().unwrap(), "--out"])
        .arg(dir.path().join("b.fits"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("no usable PSF star"), "stderr: {msg}");
    let _ = Hdu::Primary;
}
