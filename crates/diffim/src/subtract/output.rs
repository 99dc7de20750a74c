//! Writing a [`Subtraction`] to a folder: one FITS file per plane plus `summary.json`.

use std::path::{Path, PathBuf};

use fits_io::{Header, WriteOptions};

use super::Subtraction;

/// Why writing the outputs failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A FITS file could not be written (exists and no overwrite, I/O, cfitsio).
    #[error(transparent)]
    Fits(#[from] fits_io::FitsError),
    /// The output folder could not be created.
    #[error("cannot create output folder {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The summary could not be serialised.
    #[error("cannot serialise summary.json: {0}")]
    Json(#[from] serde_json::Error),
}

/// File name of a plane: `<name>.fits`, except `kernel_grid` which is written as `kernel.fits`.
pub fn plane_file_name(name: &str) -> String {
    match name {
        "kernel_grid" => "kernel.fits".to_string(),
        other => format!("{other}.fits"),
    }
}

/// Writes `diff.fits`, `significance.fits`, `noise.fits`, `mask.fits`, one file per extra plane,
/// and `summary.json` (method, diagnostics, timings, plus `summary_extra` merged in) into `dir`.
///
/// `header` supplies the science image's cards (WCS, exposure...) for the image-shaped planes;
/// planes of another shape (PSF stamps, kernel mosaics) get a header with only `BUNIT`-free
/// descriptive cards. Every file is written atomically; existing files are replaced only when
/// `opts.overwrite` is set. Returns the paths written.
pub fn write_outputs(
    dir: &Path,
    sub: &Subtraction,
    header: &Header,
    summary_extra: &serde_json::Map<String, serde_json::Value>,
    opts: WriteOptions,
) -> Result<Vec<PathBuf>, OutputError> {
    std::fs::create_dir_all(dir).map_err(|source| OutputError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let shape = sub.diff.dim();
    let mut written = Vec::new();
    let mut write_plane = |name: &str, data: &ndarray::Array2<f32>, what: &str| {
        let mut h = if data.dim() == shape {
            header.clone()
        } else {
            Header::new()
        };
        h.set_with_comment("DIFFPLN", name, "diffim plane");
        h.set_with_comment(
            "DIFFMETH",
            sub.method.to_string().as_str(),
            "subtraction method",
        );
        h.add_comment(what);
        let path = dir.join(plane_file_name(name));
        fits_io::write_image(&path, &data.view(), &h, opts)?;
        written.push(path);
        Ok::<(), OutputError>(())
    };
    write_plane("diff", &sub.diff, "difference image, science ADU")?;
    let sig_what = match sub.method {
        super::Method::Zogy => "significance: ZOGY Scorr (Gaussian sigma units)",
        _ => "significance: diff / noise (sigma units)",
    };
    write_plane("significance", &sub.significance, sig_what)?;
    write_plane("noise", &sub.noise, "noise RMS of diff, science ADU")?;
    for (name, data) in &sub.extra {
        write_plane(name, data, "method-specific plane")?;
    }
    let mut mh = header.clone();
    mh.set_with_comment("DIFFPLN", "mask", "diffim plane: 1 = bad pixel");
    let mpath = dir.join("mask.fits");
    fits_io::write_mask(&mpath, &sub.mask.view(), &mh, opts)?;
    written.push(mpath);

    let mut summary = serde_json::Map::new();
    summary.insert("method".into(), serde_json::to_value(sub.method)?);
    summary.insert("shape".into(), serde_json::json!([shape.0, shape.1]));
    summary.insert("science_fwhm".into(), serde_json::json!(sub.science_fwhm));
    summary.insert(
        "n_masked".into(),
        serde_json::json!(sub.mask.iter().filter(|&&m| m).count()),
    );
    summary.insert("diagnostics".into(), sub.diagnostics.clone());
    let timings: serde_json::Map<String, serde_json::Value> = sub
        .timings
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::json!(v)))
        .collect();
    summary.insert("timings_s".into(), serde_json::Value::Object(timings));
    for (k, v) in summary_extra {
        summary.insert(k.clone(), v.clone());
    }
    let spath = dir.join("summary.json");
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(summary))?;
    fits_io::write_atomic(&spath, text.as_bytes(), opts)?;
    written.push(spath);
    Ok(written)
}
