//! Helpers shared by the CLI test binaries (each includes this file with `mod common;`).
#![allow(dead_code, clippy::unwrap_used)] // not every test binary uses every helper

use std::path::{Path, PathBuf};

use diffim::fits::{WriteOptions, write_image};
use diffim::sim::{SimConfig, SimPair, simulate};

/// Simulates `cfg` and writes its science and template images (with their headers) into
/// `dir` as `science.fits` and `template.fits`; returns the pair and the two paths.
pub fn write_pair(dir: &Path, cfg: &SimConfig) -> (SimPair, PathBuf, PathBuf) {
    let pair = simulate(cfg).unwrap();
    let sci = dir.join("science.fits");
    let tmpl = dir.join("template.fits");
    let w = WriteOptions::default();
    write_image(&sci, &pair.science.view(), &pair.science_header, w).unwrap();
    write_image(&tmpl, &pair.template.view(), &pair.template_header, w).unwrap();
    (pair, sci, tmpl)
}

/// Runs the `diffim` binary with `args`, asserts that it succeeded (showing its stderr
/// otherwise) and returns its output.
pub fn diffim_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "diffim {:?} failed; stderr: {}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy())
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
