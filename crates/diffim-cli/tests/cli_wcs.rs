//! `diffim wcs` and `diffim reproject` on a small sky-sim image written to a tempdir.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use diffim::fits::{self, Hdu, Header, WriteOptions};
use diffim::ndarray::Array2;
use diffim::sim::SimConfig;
use diffim::wcs::{Grid, Interpolation, ReprojectParams, Wcs, reproject};

mod common;

fn diffim(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args(args)
        .output()
        .unwrap()
}

fn numbers(s: &str) -> Vec<f64> {
    s.split(|c: char| c.is_whitespace() || c == '=')
        .filter_map(|t| t.parse::<f64>().ok())
        .collect()
}

#[test]
fn wcs_and_reproject_on_a_sim_image() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, sci, _) = common::write_pair(
        dir.path(),
        &SimConfig::default().with_size(192, 160).with_seed(5),
    );
    let wcs = Wcs::from_header(&pair.science_header).unwrap();

    // --pix (0-based) -> world, matching the library.
    let out = diffim(&[
        "wcs".as_ref(),
        sci.as_os_str(),
        "--pix".as_ref(),
        "10.5".as_ref(),
        "20".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("0-based"), "{text}");
    let v = numbers(&text);
    let (ra, dec) = wcs.pixel_to_world(10.5, 20.0).unwrap();
    assert!(
        (v[v.len() - 2] - ra).abs() < 1e-9 && (v[v.len() - 1] - dec).abs() < 1e-9,
        "{text}"
    );

    // --world -> pixel, 1-based with --fits-pixels, as JSON.
    let (ras, decs) = (format!("{ra:.12}"), format!("{dec:.12}"));
    let out = diffim(&[
        "--json".as_ref(),
        "wcs".as_ref(),
        sci.as_os_str(),
        "--world".as_ref(),
        ras.as_ref(),
        decs.as_ref(),
        "--fits-pixels".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!((j["x"].as_f64().unwrap() - 11.5).abs() < 1e-6, "{j}");
    assert!((j["y"].as_f64().unwrap() - 21.0).abs() < 1e-6, "{j}");
    assert_eq!(j["pixel_origin"].as_i64(), Some(1));

    // Bad usage: no point, a point behind the tangent plane.
    assert_eq!(
        diffim(&["wcs".as_ref(), sci.as_os_str()]).status.code(),
        Some(2)
    );
    let anti_ra = format!("{}", (ra + 180.0) % 360.0);
    let anti_dec = format!("{}", -dec);
    let out = diffim(&[
        "wcs".as_ref(),
        sci.as_os_str(),
        "--world".as_ref(),
        anti_ra.as_ref(),
        anti_dec.as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(1));

    // A rotated, shifted reference grid of another size.
    let (sy, sx) = pair.science.dim();
    let (cra, cdec) = wcs
        .pixel_to_world((sx as f64 - 1.0) / 2.0, (sy as f64 - 1.0) / 2.0)
        .unwrap();
    let dst = Grid::from_center(cra + 2.0 / 3600.0, cdec, 150, 140, 1.1 * 0.5, 12.0).unwrap();
    let mut ref_header = Header::new();
    dst.to_header(&mut ref_header);
    let refp = dir.path().join("ref.fits");
    fits::write_image(
        &refp,
        &Array2::<f32>::zeros((140, 150)).view(),
        &ref_header,
        WriteOptions::default(),
    )
    .unwrap();
    let mask_in = dir.path().join("mask.fits");
    fits::write_mask(
        &mask_in,
        &pair.science_mask.view(),
        &pair.science_header,
        WriteOptions::default(),
    )
    .unwrap();
    let outp = dir.path().join("out.fits");
    let maskp = dir.path().join("out_mask.fits");
    let out = diffim(&[
        "reproject".as_ref(),
        sci.as_os_str(),
        "--like".as_ref(),
        refp.as_os_str(),
        "--out".as_ref(),
        outp.as_os_str(),
        "--method".as_ref(),
        "bilinear".as_ref(),
        "--mask".as_ref(),
        mask_in.as_os_str(),
        "--mask-out".as_ref(),
        maskp.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = fits::read_image::<f32>(&outp, &Hdu::Primary).unwrap();
    assert_eq!(got.data.dim(), (140, 150));
    // Same numbers as the library call, and the output carries the reference WCS.
    let (ny, nx) = pair.science.dim();
    let src = Grid::new(wcs.clone(), nx, ny).unwrap();
    let p = ReprojectParams {
        interpolation: Interpolation::Bilinear,
        ..Default::default()
    };
    let want = reproject(
        &pair.science.view(),
        Some(&pair.science_mask.view()),
        &src,
        &dst,
        &p,
    )
    .unwrap();
    for (a, b) in got.data.iter().zip(want.image.iter()) {
        assert!((a == b) || (a.is_nan() && b.is_nan()));
    }
    let out_wcs = Wcs::from_header(&got.header).unwrap();
    let a = out_wcs.pixel_to_world(3.0, 4.0).unwrap();
    let b = dst.wcs().pixel_to_world(3.0, 4.0).unwrap();
    assert!((a.0 - b.0).abs() < 1e-10 && (a.1 - b.1).abs() < 1e-10);
    assert!(got.header.get_f64("GAIN").is_ok(), "non-WCS cards are kept");
    let m = fits::read_mask(&maskp, &Hdu::Primary).unwrap();
    assert_eq!(m, want.mask);
    // NaN exactly where the mask says outside/poisoned; corners of the rotated grid are off.
    assert!(
        m.iter()
            .zip(got.data.iter())
            .all(|(&bad, v)| bad || v.is_finite())
    );

    // Refuses to overwrite, and rejects an unknown method.
    let again = diffim(&[
        "reproject".as_ref(),
        sci.as_os_str(),
        "--like".as_ref(),
        refp.as_os_str(),
        "--out".as_ref(),
        outp.as_os_str(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    let bad = diffim(&[
        "reproject".as_ref(),
        sci.as_os_str(),
        "--like".as_ref(),
        refp.as_os_str(),
        "--out".as_ref(),
        dir.path().join("x.fits").as_os_str(),
        "--method".as_ref(),
        "cubic".as_ref(),
    ]);
    assert_eq!(bad.status.code(), Some(2));
}
