//! The whole job on one science/template pair: subtraction, candidates, photometry, cutouts
//! with the adjust fit, and a report (candidates.csv, summary.json, index.html).
//!
//! [`run_pipeline`] works on arrays; with an output folder it writes every product there,
//! `summary.json` last, so a folder holding `summary.json` is complete (used by `diffim batch`
//! to resume after a kill).
//!
//! The adjust fit (does a small shift and rescale of the template explain the candidate?)
//! runs for every method: against the `convolved` plane of SFFT and HOTPANTS, and for ZOGY in
//! its cross-convolution frame, computed per cutout ([`cross_window`], [`candidate_cutout`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use cutout::{AdjustParams, Candidate, Cutout, CutoutOptions, MetaValue, PlotParams};
use fits_io::{Header, WriteOptions};
use ndarray::Array2;
use serde::Serialize;

use crate::subtract::{Method, SubtractError, SubtractInputs, Subtraction};

mod candidates;
mod cross;
mod evaluate;
mod report;

pub use candidates::{CandidateParams, CandidateRow, Rejections, find_candidates};
pub use cross::{CrossWindow, cross_window};
pub use evaluate::{Evaluation, FakeParams, SnrBin, evaluate, inject_fakes};
pub use report::{CSV_COLUMNS, items_for_candidates, write_candidates_csv};

/// Name of the file whose presence marks a complete pipeline output folder.
pub const SUMMARY_FILE: &str = "summary.json";

/// Why the pipeline failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The subtraction failed.
    #[error(transparent)]
    Subtract(#[from] SubtractError),
    /// Candidate detection failed.
    #[error("candidate detection: {0}")]
    Detect(#[from] source_extract::ExtractError),
    /// Writing a FITS or other output file failed.
    #[error(transparent)]
    Fits(#[from] fits_io::FitsError),
    /// Writing the subtraction outputs failed.
    #[error(transparent)]
    Output(#[from] crate::subtract::OutputError),
    /// Making or writing a cutout failed.
    #[error("cutout: {0}")]
    Cutout(#[from] cutout::CutoutError),
    /// Writing the CSV report failed.
    #[error("candidates.csv: {0}")]
    Csv(#[from] csv::Error),
    /// Writing the JSON summary failed.
    #[error("summary.json: {0}")]
    Json(#[from] serde_json::Error),
    /// Another report failure.
    #[error("report: {0}")]
    Report(String),
}

/// Parameters of [`run_pipeline`].
#[derive(Debug, Clone, Serialize)]
pub struct PipelineParams {
    /// Subtraction method (default SFFT: on simulated pairs it leaves no false candidates at
    /// bright stars, where ZOGY's PSF-model wings still do).
    pub method: Method,
    /// Candidate detection and photometry.
    pub candidates: CandidateParams,
    /// Cutout radius, pixels (default 15: 31x31 stamps).
    pub cutout_radius: f64,
    /// Write cutouts (FITS + PNG) for at most this many candidates, most significant first
    /// (default 200); 0 disables cutouts.
    pub max_cutouts: usize,
    /// Run the adjust fit on each cutout (default on, STDPipe's defaults; every method, see
    /// [`candidate_cutout`]).
    pub adjust: Option<AdjustParams>,
    /// Replace existing output files (default false).
    pub overwrite: bool,
    /// Path of the hotpants executable (HOTPANTS method only).
    #[serde(skip)]
    pub hotpants: Option<PathBuf>,
    /// ZOGY options (ZOGY method only; default [`crate::subtract::zogy::ZogyOptions::default`]).
    #[serde(skip)]
    pub zogy: crate::subtract::zogy::ZogyOptions,
}

impl Default for PipelineParams {
    fn default() -> Self {
        Self {
            method: Method::Sfft,
            candidates: CandidateParams::default(),
            cutout_radius: 15.0,
            max_cutouts: 200,
            adjust: Some(AdjustParams::default()),
            overwrite: false,
            hotpants: None,
            zogy: Default::default(),
        }
    }
}

/// What is known about the images besides their pixels (for coordinates and metadata).
#[derive(Debug, Clone, Copy, Default)]
pub struct PipelineMeta<'a> {
    /// Science header (WCS for RA/Dec; MJD-OBS, zero point keywords).
    pub science_header: Option<&'a Header>,
    /// Science file name, recorded in cutouts.
    pub science_name: Option<&'a str>,
}

/// Everything a pipeline run produced.
#[derive(Debug, Clone)]
pub struct PipelineResult {
    /// The subtraction.
    pub subtraction: Subtraction,
    /// Accepted candidates, most significant first.
    pub candidates: Vec<CandidateRow>,
    /// Rejected detections by reason.
    pub rejected: Rejections,
    /// Seconds per stage, in order (the subtraction's own stages included).
    pub timings: Vec<(String, f64)>,
    /// Files written (empty without an output folder).
    pub files: Vec<PathBuf>,
}

/// Runs the subtraction, finds and measures candidates, makes cutouts with the adjust fit,
/// and (with `out`) writes diff/significance/noise/mask FITS, candidates.csv, cutouts,
/// index.html and summary.json.
pub fn run_pipeline(
    inputs: &SubtractInputs,
    meta: &PipelineMeta,
    params: &PipelineParams,
    out: Option<&Path>,
) -> Result<PipelineResult, PipelineError> {
    let t_all = Instant::now();
    let opts = WriteOptions {
        overwrite: params.overwrite,
    };
    let t = Instant::now();
    let sub = match params.method {
        Method::Zogy => crate::subtract::zogy::subtract_zogy(inputs, &params.zogy)?,
        m => crate::subtract::subtract(m, inputs, params.hotpants.as_deref())?,
    };
    let mut timings = vec![("subtract".to_string(), t.elapsed().as_secs_f64())];
    for (k, v) in &sub.timings {
        timings.push((format!("subtract.{k}"), *v));
    }

    let t = Instant::now();
    let fwhm = sub.science_fwhm.unwrap_or(3.0);
    let mut cparams = params.candidates.clone();
    if cparams.zero_point.is_none() {
        cparams.zero_point = meta.science_header.and_then(header_zero_point);
    }
    let (mut rows, rejected) = find_candidates(
        &sub,
        &inputs.science,
        inputs.science_saturation,
        fwhm,
        &cparams,
    )?;
    let wcs = meta
        .science_header
        .and_then(|h| wcs_grid::Wcs::from_header(h).ok());
    if let Some(w) = &wcs {
        for r in rows.iter_mut() {
            if let Some((ra, dec)) = w.pixel_to_world(r.x, r.y) {
                r.ra = Some(ra);
                r.dec = Some(dec);
            }
        }
    }
    timings.push(("candidates".into(), t.elapsed().as_secs_f64()));

    let mut files = Vec::new();
    if let Some(dir) = out {
        let t = Instant::now();
        let header = meta.science_header.cloned().unwrap_or_default();
        let mut extra = serde_json::Map::new();
        extra.insert("stage".into(), "subtraction".into());
        // The subtraction's own summary goes to subtraction.json; summary.json is the run's.
        let written = crate::subtract::write_outputs(dir, &sub, &header, &extra, opts)?;
        for p in written {
            if p.file_name().is_some_and(|n| n == SUMMARY_FILE) {
                let renamed = dir.join("subtraction.json");
                std::fs::rename(&p, &renamed).map_err(|e| PipelineError::Report(e.to_string()))?;
                files.push(renamed);
            } else {
                files.push(p);
            }
        }
        timings.push(("write_images".into(), t.elapsed().as_secs_f64()));
    }

    // Cutouts with the adjust fit (also without an output folder: the fit fills the table).
    let t = Instant::now();
    let n_cut = rows.len().min(params.max_cutouts);
    if n_cut > 0 {
        let cut_dir = out.map(|d| d.join("cutouts"));
        if let Some(cd) = &cut_dir {
            std::fs::create_dir_all(cd)
                .map_err(|e| PipelineError::Report(format!("{}: {e}", cd.display())))?;
        }
        let time = meta
            .science_header
            .and_then(|h| h.get_f64_opt("MJD-OBS").ok().flatten())
            .map(MetaValue::Float);
        for r in rows.iter_mut().take(n_cut) {
            let cand = Candidate {
                x: r.x,
                y: r.y,
                ra: r.ra,
                dec: r.dec,
                fields: vec![
                    ("id".into(), MetaValue::Int(r.id as i64)),
                    ("significance".into(), MetaValue::Float(r.significance)),
                    ("flux".into(), MetaValue::Float(r.flux)),
                    ("flux_err".into(), MetaValue::Float(r.flux_err)),
                ],
            };
            let copts = CutoutOptions {
                header: meta.science_header,
                time: time.clone(),
                filename: meta.science_name.map(str::to_string),
                ..Default::default()
            };
            let c = candidate_cutout(
                inputs,
                &sub,
                &cand,
                params.cutout_radius,
                copts,
                params.adjust.as_ref(),
            )?;
            if let Some(a) = &c.adjust {
                r.adjust_pvalue = Some(a.pvalue);
                r.adjust_chi2_0 = Some(a.chi2_0);
                r.adjust_chi2 = Some(a.chi2);
                r.adjust_dx = Some(a.dx);
                r.adjust_dy = Some(a.dy);
                r.adjust_scale = Some(a.scale);
            }
            if let Some(cd) = &cut_dir {
                let fp = cd.join(format!("cand-{}.fits", r.id));
                cutout::write_cutout(&fp, &c, opts)?;
                let pp = cd.join(format!("cand-{}.png", r.id));
                cutout::save_plot(&c, &PlotParams::default(), &pp)?;
                files.push(fp);
                files.push(pp);
            }
        }
    }
    timings.push(("cutouts".into(), t.elapsed().as_secs_f64()));

    if let Some(dir) = out {
        let t = Instant::now();
        let csv_path = dir.join("candidates.csv");
        write_candidates_csv(&csv_path, &rows)?;
        files.push(csv_path);
        let summary_rows = vec![
            ("method".to_string(), params.method.to_string()),
            (
                "science".to_string(),
                meta.science_name.unwrap_or("-").to_string(),
            ),
            ("candidates".to_string(), rows.len().to_string()),
            (
                "rejected".to_string(),
                format!(
                    "masked {}, edge {}, near saturated stars {}",
                    rejected.masked, rejected.edge, rejected.saturated
                ),
            ),
            ("science FWHM (px)".to_string(), format!("{fwhm:.2}")),
        ];
        let gallery = dir.join("index.html");
        let items = items_for_candidates(&rows[..n_cut], true);
        cutout::write_gallery(&gallery, "diffim candidates", &summary_rows, &items)?;
        files.push(gallery);
        timings.push(("report".into(), t.elapsed().as_secs_f64()));
        timings.push(("total".into(), t_all.elapsed().as_secs_f64()));
        let summary = serde_json::json!({
            "method": params.method,
            "shape": [sub.diff.nrows(), sub.diff.ncols()],
            "science_fwhm": sub.science_fwhm,
            "n_candidates": rows.len(),
            "rejected": rejected,
            "parameters": params,
            "diagnostics": sub.diagnostics,
            "timings_s": timings.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        let sp = dir.join(SUMMARY_FILE);
        fits_io::write_atomic(
            &sp,
            serde_json::to_string_pretty(&summary)?.as_bytes(),
            WriteOptions::overwrite(),
        )?;
        files.push(sp);
    } else {
        timings.push(("total".into(), t_all.elapsed().as_secs_f64()));
    }
    Ok(PipelineResult {
        subtraction: sub,
        candidates: rows,
        rejected,
        timings,
        files,
    })
}

/// Name of the cutout metadata field holding the noise-correlation factor `c` (see
/// [`CrossWindow::noise_correlation`]) used for the p-value of a ZOGY adjust fit.
pub const ADJUST_NOISE_CORRELATION: &str = "adjust_noise_corr";

/// The cutout of one candidate of `sub`, with the adjust fit when `adjust` is given (a fit that
/// fails, e.g. for want of usable pixels, leaves `cutout.adjust` at `None`). `opts` supplies
/// the header, time, file name and name; its mask and planes are replaced.
///
/// Planes for SFFT and HOTPANTS: `image` (the science), `convolved` (the template convolved to
/// the science PSF; without it no fit runs), `template`, `diff`, `significance`, `err` (noise
/// RMS of `diff`) and, after the fit, `adjusted`.
///
/// For ZOGY the fit runs in its cross-convolution frame ([`cross_window`]): `image` =
/// `N (x) P_r`, `convolved` = `beta R (x) P_n`, `science` (the science as given), `template`,
/// `diff`, `significance`, `err` = per-pixel RMS of `image - convolved`, `noise` (noise RMS of
/// `diff`), then `adjusted`; `image` and `convolved` are NaN on masked pixels. Their noise is
/// correlated between pixels (both are PSF-convolved), so the p-value is
/// `Q(dof / 2c, chi2 / 2c)` with the correlation factor `c` of [`CrossWindow`] (stored in the
/// cutout's metadata as [`ADJUST_NOISE_CORRELATION`]); chi2, dof and the other fitted values
/// are the adjust fit's own.
pub fn candidate_cutout(
    inputs: &SubtractInputs,
    sub: &Subtraction,
    cand: &Candidate,
    radius: f64,
    opts: CutoutOptions<'_>,
    adjust: Option<&AdjustParams>,
) -> Result<Cutout, PipelineError> {
    let mut o = CutoutOptions {
        mask: Some(sub.mask.view()),
        planes: Vec::new(),
        ..opts
    };
    let Some(cross) = &sub.cross else {
        let convolved = sub.extra("convolved");
        o.planes = vec![
            ("template", inputs.template),
            ("diff", sub.diff.view()),
            ("significance", sub.significance.view()),
            ("err", sub.noise.view()),
        ];
        if let Some(cv) = convolved {
            o.planes.insert(1, ("convolved", cv.view()));
        }
        let mut c = cutout::get_cutout(&inputs.science, cand, radius, &o)?;
        if let (Some(ap), true) = (adjust, convolved.is_some()) {
            // A failed fit leaves `c.adjust` empty: the candidate is kept, unjudged.
            let _ = cutout::adjust_cutout(&mut c, ap);
        }
        return Ok(c);
    };
    o.planes = vec![
        ("template", inputs.template),
        ("diff", sub.diff.view()),
        ("significance", sub.significance.view()),
        ("noise", sub.noise.view()),
    ];
    let mut c = cutout::get_cutout(&inputs.science, cand, radius, &o)?;
    let w = cross_window(cross, cand.x, cand.y, c.x0, c.y0, c.size());
    let masked_nan = |mut a: Array2<f32>| {
        a.zip_mut_with(&c.mask, |v, &m| {
            if m {
                *v = f32::NAN;
            }
        });
        a
    };
    let (image, convolved) = (masked_nan(w.image), masked_nan(w.convolved));
    let mut planes = vec![
        (cutout::IMAGE.to_string(), image),
        ("convolved".to_string(), convolved),
    ];
    for (name, plane) in std::mem::take(&mut c.planes) {
        match name.as_str() {
            cutout::IMAGE => planes.push(("science".to_string(), plane)),
            "noise" => {
                planes.push(("err".to_string(), w.err.clone()));
                planes.push((name, plane));
            }
            _ => planes.push((name, plane)),
        }
    }
    c.planes = planes;
    if let Some(ap) = adjust
        && let Ok(mut a) = cutout::adjust_cutout(&mut c, ap)
    {
        let k = w.noise_correlation;
        a.pvalue = cutout::chi2_sf(a.chi2 / k, a.dof as f64 / k);
        c.adjust = Some(a);
        c.set_meta(ADJUST_NOISE_CORRELATION, MetaValue::Float(k));
    }
    Ok(c)
}

/// A photometric zero point from the usual header keywords (MAGZP, MAGZPT, ZP, ZEROPT, MAGZERO).
pub fn header_zero_point(h: &Header) -> Option<f64> {
    ["MAGZP", "MAGZPT", "ZP", "ZEROPT", "MAGZERO", "PHOTZP"]
        .iter()
        .find_map(|k| h.get_f64_opt(k).ok().flatten())
        .filter(|v| v.is_finite())
}
