//! CLI tests of `diffim subtract --method hotpants`, against a stand-in HOTPANTS (a shell
//! script written by the test) so that no real HOTPANTS is needed.
#![allow(clippy::unwrap_used)]
#![cfg(unix)]

mod common;

use diffim::fits::{Hdu, read_image, read_mask};
use diffim::sim::{SimConfig, SimPair};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Setup {
    dir: tempfile::TempDir,
    pair: SimPair,
    sci: PathBuf,
    tmpl: PathBuf,
    fake: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig::default().with_size(256, 256).with_seed(7);
    let (pair, sci, tmpl) = common::write_pair(dir.path(), &cfg);
    // The stand-in HOTPANTS (hotpants-sys test support); `FAIL=1` makes it fail.
    let fake = diffim::hotpants::test_support::write_stand_in(dir.path()).unwrap();
    Setup {
        dir,
        pair,
        sci,
        tmpl,
        fake,
    }
}

fn subtract(s: &Setup, out: &Path, hotpants: &Path, fail: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_diffim"));
    cmd.args([
        "subtract",
        s.sci.to_str().unwrap(),
        s.tmpl.to_str().unwrap(),
    ])
    .args(["--method", "hotpants", "--out", out.to_str().unwrap()])
    .args(["--hotpants", hotpants.to_str().unwrap()]);
    if fail {
        cmd.env("FAIL", "1");
    }
    cmd.output().unwrap()
}

#[test]
fn subtract_with_hotpants_writes_the_outputs() {
    let s = setup();
    let out = s.dir.path().join("out");
    let o = subtract(&s, &out, &s.fake, false);
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The stand-in's "difference" is the science image, its convolved image the template.
    let diff = read_image::<f32>(&out.join("diff.fits"), &Hdu::Primary).unwrap();
    let mask = read_mask(&out.join("mask.fits"), &Hdu::Primary).unwrap();
    let conv = read_image::<f32>(&out.join("convolved.fits"), &Hdu::Primary).unwrap();
    assert_eq!(diff.data.dim(), (256, 256));
    let mut n_good = 0;
    for ((iy, ix), &m) in mask.indexed_iter() {
        if !m {
            n_good += 1;
            assert_eq!(diff.data[[iy, ix]], s.pair.science[[iy, ix]]);
            assert_eq!(conv.data[[iy, ix]], s.pair.template[[iy, ix]]);
        }
    }
    assert!(n_good > 256 * 256 * 9 / 10, "{n_good} good pixels");
    // The science WCS is carried to the outputs.
    assert_eq!(
        diff.header.get_f64("CRVAL1").unwrap(),
        s.pair.science_header.get_f64("CRVAL1").unwrap()
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["method"], "hotpants", "{summary}");
    let text = summary.to_string();
    assert!(
        text.contains("\"-ng\"") && text.contains("\"-ini\""),
        "{text}"
    );
}

#[test]
fn hotpants_failures_reach_the_user() {
    let s = setup();
    let out = s.dir.path().join("out");
    let o = subtract(&s, &out, &s.fake, true);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("failing on purpose"), "stderr: {err}");

    let o = subtract(&s, &out, &s.dir.path().join("no-such-hotpants"), false);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.to_lowercase().contains("not found"), "stderr: {err}");
}
