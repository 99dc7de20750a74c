//! Report files: candidates.csv and the index.html gallery.

use std::path::Path;

use cutout::GalleryItem;

use super::candidates::CandidateRow;

/// Writes the candidates as CSV (header row; empty cells for missing values), atomically.
pub fn write_candidates_csv(
    path: &Path,
    rows: &[CandidateRow],
) -> Result<(), super::PipelineError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if rows.is_empty() {
        // Still write the header row so that scripts can read an empty table.
        w.write_record(CSV_COLUMNS)?;
    }
    for r in rows {
        w.serialize(r)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| super::PipelineError::Report(e.to_string()))?;
    fits_io::write_atomic(path, &bytes, fits_io::WriteOptions::overwrite())?;
    Ok(())
}

/// Column names of candidates.csv, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "x",
    "y",
    "ra",
    "dec",
    "significance",
    "flux",
    "flux_err",
    "snr",
    "mag",
    "mag_err",
    "npix",
    "flags",
    "adjust_pvalue",
    "adjust_chi2_0",
    "adjust_chi2",
    "adjust_dx",
    "adjust_dy",
    "adjust_scale",
];

fn opt(v: Option<f64>, prec: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or("-".to_string(), |x| format!("{x:.prec$}"))
}

/// Gallery items for pipeline candidates whose cutouts are `cutouts/cand-<id>.{png,fits}`.
pub fn items_for_candidates(rows: &[CandidateRow], with_cutouts: bool) -> Vec<GalleryItem> {
    rows.iter()
        .map(|r| GalleryItem {
            title: format!("#{}", r.id),
            fields: vec![
                ("x, y".into(), format!("{:.2}, {:.2}", r.x, r.y)),
                (
                    "ra, dec".into(),
                    format!("{}, {}", opt(r.ra, 6), opt(r.dec, 6)),
                ),
                ("significance".into(), format!("{:.1}", r.significance)),
                (
                    "flux".into(),
                    format!("{} ± {}", opt(Some(r.flux), 1), opt(Some(r.flux_err), 1)),
                ),
                (
                    "mag".into(),
                    format!("{} ± {}", opt(r.mag, 3), opt(r.mag_err, 3)),
                ),
                ("flags".into(), r.flags.to_string()),
                (
                    "adjust".into(),
                    match r.adjust_pvalue {
                        Some(p) => format!(
                            "p={p:.2e} chi2 {}→{} dx={} dy={} scale={}",
                            opt(r.adjust_chi2_0, 0),
                            opt(r.adjust_chi2, 0),
                            opt(r.adjust_dx, 2),
                            opt(r.adjust_dy, 2),
                            opt(r.adjust_scale, 3)
                        ),
                        None => "-".into(),
                    },
                ),
            ],
            png: with_cutouts.then(|| format!("cutouts/cand-{}.png", r.id)),
            fits: with_cutouts.then(|| format!("cutouts/cand-{}.fits", r.id)),
        })
        .collect()
}
