//! CLI test of `diffim subtract --method sfft`.
#![allow(clippy::unwrap_used)]

mod common;

use diffim::fits::{Hdu, read_image, read_mask};
use diffim::sim::SimConfig;

/// `diffim subtract SCI TMPL --method sfft --out DIR` on a 256^2 sky-sim `sfft_issue` pair
/// written here: every output exists with the right shape, the kernel mosaic is a 5x5 grid of
/// odd kernels, significance ~ N(0,1) over unmasked pixels, the flux scale at the centre is the
/// truth within 2%, and summary.json names the method and the kernel actually used.
#[test]
fn subtract_sfft_writes_all_planes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig::sfft_issue().with_size(256, 256).with_seed(11);
    let (pair, sci, tmpl) = common::write_pair(dir.path(), &cfg);
    let out = dir.path().join("sfft");
    common::diffim_ok(&[
        "subtract",
        sci.to_str().unwrap(),
        tmpl.to_str().unwrap(),
        "--method",
        "sfft",
        "--out",
        out.to_str().unwrap(),
    ]);
    for f in [
        "diff.fits",
        "significance.fits",
        "noise.fits",
        "convolved.fits",
        "kernel.fits",
        "mask.fits",
        "summary.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let read = |name: &str| {
        read_image::<f32>(&out.join(name), &Hdu::Primary)
            .unwrap()
            .data
    };
    let (diff, sig, noise, conv) = (
        read("diff.fits"),
        read("significance.fits"),
        read("noise.fits"),
        read("convolved.fits"),
    );
    for a in [&diff, &sig, &noise, &conv] {
        assert_eq!(a.dim(), (256, 256));
    }
    let mask = read_mask(&out.join("mask.fits"), &Hdu::Primary).unwrap();
    assert_eq!(mask.dim(), (256, 256));
    // Kernel mosaic: 5x5 kernels of odd side k separated by one pixel: side 5 (k + 1) - 1.
    let kern = read("kernel.fits");
    let (ky, kx) = kern.dim();
    assert_eq!(ky, kx);
    assert_eq!((ky + 1) % 5, 0);
    let k = (ky + 1) / 5 - 1;
    assert!(k % 2 == 1 && k >= 7, "kernel side {k}");
    // Each kernel sums to the flux scale (science/template, 1.17-1.23 here).
    let centre: f64 = kern
        .slice(diffim::ndarray::s![
            2 * (k + 1)..2 * (k + 1) + k,
            2 * (k + 1)..2 * (k + 1) + k
        ])
        .iter()
        .map(|&v| v as f64)
        .sum();
    let truth = pair.flux_scale_at(127.5, 127.5);
    assert!(
        (centre / truth - 1.0).abs() < 0.02,
        "kernel sum {centre} vs {truth}"
    );
    // Significance ~ N(0,1) on unmasked pixels; noise positive there.
    let good: Vec<f64> = sig
        .iter()
        .zip(mask.iter())
        .filter(|(_, m)| !**m)
        .map(|(&v, _)| v as f64)
        .collect();
    assert!(good.len() > 256 * 256 / 2, "{} unmasked pixels", good.len());
    assert!(good.iter().all(|v| v.is_finite()));
    let sd = diffim::core::stats::mad_std(good).unwrap();
    assert!((0.9..=1.2).contains(&sd), "robust std of significance {sd}");
    assert!(
        noise
            .iter()
            .zip(mask.iter())
            .all(|(&n, &m)| m || (n.is_finite() && n > 0.0))
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["method"], "sfft");
    let ks = &summary["diagnostics"]["sfft"]["kernel_shape"];
    assert_eq!(ks[0].as_u64(), Some(k as u64), "summary kernel_shape {ks}");
}
