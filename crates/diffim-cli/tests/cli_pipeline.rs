//! `diffim demo` (whole job), `pipeline`, `batch` and `cutouts`: run the binary and check
//! what it leaves behind.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn diffim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 512^2 simulated pair written by `diffim demo --sim-only`.
fn sim_pair(dir: &Path) {
    common::diffim_ok(&[
        "--quiet",
        "demo",
        "--sim-only",
        "--size",
        "512",
        "--seed",
        "3",
        "--out",
        s(dir),
    ]);
}

#[test]
fn demo_runs_the_whole_job_and_scores_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = common::diffim_ok(&[
        "--json",
        "demo",
        "--size",
        "512",
        "--seed",
        "2",
        "--out",
        s(&out),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["completeness_snr10"].as_f64().unwrap() >= 0.9, "{v}");
    assert!(v["median_flux_ratio"].as_f64().unwrap() > 0.9, "{v}");
    for f in [
        "science.fits",
        "truth.csv",
        "diff.fits",
        "significance.fits",
        "candidates.csv",
        "index.html",
        "summary.json",
        "evaluation.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // Human output: the injected-vs-recovered table.
    let o = common::diffim_ok(&[
        "demo",
        "--size",
        "512",
        "--seed",
        "2",
        "--method",
        "sfft",
        "--out",
        s(&out),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("injected vs recovered (sfft"), "{text}");
    assert!(text.contains("S/N >= 10:"), "{text}");
}

#[test]
fn pipeline_then_cutouts_then_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pair = dir.path().join("pair");
    sim_pair(&pair);
    let run = dir.path().join("run");
    let (sci, tmpl) = (pair.join("science.fits"), pair.join("template.fits"));
    let (sm, tm) = (
        pair.join("science_mask.fits"),
        pair.join("template_mask.fits"),
    );
    let o = common::diffim_ok(&[
        "--json",
        "pipeline",
        s(&sci),
        "--template",
        s(&tmpl),
        "--mask",
        s(&sm),
        "--template-mask",
        s(&tm),
        "--method",
        "sfft",
        "--zp",
        "25",
        "--out",
        s(&run),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let n = v["candidates"].as_u64().unwrap() as usize;
    assert!(n >= 5, "a 512^2 default pair has 20 transients: {v}");
    let csv = std::fs::read_to_string(run.join("candidates.csv")).unwrap();
    assert_eq!(csv.lines().count(), n + 1);
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .starts_with("id,x,y,ra,dec,significance,flux")
    );
    let first: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert!(!first[9].is_empty(), "magnitude from --zp");
    assert!(
        !first[13].is_empty(),
        "SFFT has a convolved plane, so the adjust fit ran"
    );
    assert!(run.join("cutouts/cand-1.png").exists() && run.join("cutouts/cand-1.fits").exists());
    let html = std::fs::read_to_string(run.join("index.html")).unwrap();
    assert!(html.contains("cutouts/cand-1.png"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["method"], "sfft");
    assert!(summary["timings_s"]["total"].as_f64().unwrap() > 0.0);

    // Existing outputs are kept unless --overwrite.
    let o = diffim(&[
        "pipeline",
        s(&sci),
        "--template",
        s(&tmpl),
        "--method",
        "sfft",
        "--out",
        s(&run),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists"));

    // Cutouts from the candidate table, with the adjust fit.
    let stamps = dir.path().join("stamps");
    common::diffim_ok(&[
        "cutouts",
        "--candidates",
        s(&run.join("candidates.csv")),
        "--image",
        s(&sci),
        "--template",
        s(&tmpl),
        "--convolved",
        s(&run.join("convolved.fits")),
        "--diff",
        s(&run.join("diff.fits")),
        "--err",
        s(&run.join("noise.fits")),
        "--mask",
        s(&run.join("mask.fits")),
        "--adjust",
        "--radius",
        "10",
        "--out",
        s(&stamps),
    ]);
    for i in 1..=n {
        assert!(
            stamps.join(format!("cand-{i}.fits")).exists()
                && stamps.join(format!("cand-{i}.png")).exists()
        );
    }
    let c = diffim::cutout::load_cutout(&stamps.join("cand-1.fits")).unwrap();
    assert_eq!(c.size(), 21);
    assert!(c.adjust.is_some() && c.plane("adjusted").is_some());
    assert!(
        std::fs::read_to_string(stamps.join("index.html"))
            .unwrap()
            .contains("adjust")
    );

    // Errors: one line, exit code 1 for bad data, 2 for bad usage; never a panic.
    let o = diffim(&[
        "pipeline",
        s(&dir.path().join("nope.fits")),
        "--template",
        s(&tmpl),
        "--out",
        s(&run),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("nope.fits"), "{err}");
    let o = diffim(&[
        "pipeline",
        s(&sci),
        "--template",
        s(&tmpl),
        "--method",
        "magic",
        "--out",
        s(&run),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = diffim(&[
        "cutouts",
        "--candidates",
        s(&run.join("candidates.csv")),
        "--image",
        s(&sci),
        "--adjust",
        "--out",
        s(&stamps),
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--adjust without --convolved/--err"
    );
    // A survey template offline with an empty cache: a clean cache-miss error, exit 1.
    let o = diffim(&[
        "pipeline",
        s(&sci),
        "--survey",
        "hips:CDS/P/DSS2/red",
        "--offline",
        "--cache-dir",
        s(&dir.path().join("cache")),
        "--out",
        s(&dir.path().join("survey-run")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cache") && err.contains("hips:CDS/P/DSS2/red"),
        "{err}"
    );
    let o = diffim(&[
        "pipeline",
        s(&sci),
        "--survey",
        "nosuch:r",
        "--out",
        s(&run),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let text = dir.path().join("text.fits");
    std::fs::write(&text, "SIMPLE = this is not FITS\n").unwrap();
    let o = diffim(&[
        "subtract",
        s(&text),
        s(&tmpl),
        "--out",
        s(&dir.path().join("x")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
}

#[test]
fn batch_runs_resumes_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let pair = dir.path().join("pair");
    sim_pair(&pair);
    let manifest = dir.path().join("pairs.csv");
    std::fs::write(
        &manifest,
        "name,science,template,mask\na,pair/science.fits,pair/template.fits,pair/science_mask.fits\n\
         b,pair/science.fits,pair/template.fits,\nc,pair/missing.fits,pair/template.fits,\n",
    )
    .unwrap();
    let runs = dir.path().join("runs");
    let o = diffim(&[
        "batch",
        s(&manifest),
        "--out",
        s(&runs),
        "--jobs",
        "2",
        "--method",
        "sfft",
    ]);
    // Row c fails (missing file): exit 1, the others are done.
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary = std::fs::read_to_string(runs.join("batch_summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 4);
    assert!(
        summary.lines().nth(1).unwrap().contains(",done,"),
        "{summary}"
    );
    assert!(
        summary.lines().nth(2).unwrap().contains(",done,"),
        "{summary}"
    );
    assert!(
        summary.lines().nth(3).unwrap().contains(",failed,"),
        "{summary}"
    );
    assert!(runs.join("a/summary.json").exists() && runs.join("b/candidates.csv").exists());

    // Resume: complete pairs are skipped; an incomplete one (no summary.json) is redone.
    std::fs::remove_file(runs.join("b/summary.json")).unwrap();
    let o = diffim(&[
        "batch",
        s(&manifest),
        "--out",
        s(&runs),
        "--shard",
        "0/2",
        "--method",
        "sfft",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("2 pairs selected, 1 to run"), "{text}"); // rows 0 (a, done) and 2 (c)
    let o = common::diffim_ok(&[
        "batch",
        s(&manifest),
        "--out",
        s(&runs),
        "--index",
        "1",
        "--method",
        "sfft",
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 pairs selected, 1 to run"));
    assert!(runs.join("b/summary.json").exists());
    let o = diffim(&["batch", s(&manifest), "--out", s(&runs), "--index", "9"]);
    assert_eq!(o.status.code(), Some(2));
}
