//! `diffim detect`: background, detection and aperture photometry to a CSV catalogue.

use std::io::Write;
use std::path::{Path, PathBuf};

use diffim::extract::{BackgroundParams, DetectParams, Object, detect, estimate_background};

use crate::common::{gain_with_note, header_f64, load_image, load_mask, say};
use crate::{CliError, Context, Ctx};

/// Detect sources and write a CSV catalogue (x, y 0-based pixels; fluxes in ADU).
///
/// Example: `diffim detect sci.fits --mask sci_mask.fits --threshold 5 --out cat.csv`
///
/// The gain (e-/ADU) comes from `--gain`, else the header's GAIN, else it is estimated from the
/// sky (sky / sky variance, for raw counts with the bias removed; a note prints it). On a
/// background-subtracted image (a difference image) no estimate is possible: flux errors then
/// hold the background noise only (a note says so). The saturation level comes from
/// `--saturation`, else the header's SATURATE.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Input image (FITS; `file.fits[EXT]` selects an extension).
    pub image: PathBuf,
    /// Bad-pixel mask (FITS, non-zero = bad), same shape as the image.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Gain in e-/ADU (overrides the header's GAIN; default: GAIN, else estimated from the sky).
    #[arg(long)]
    pub gain: Option<f64>,
    /// Detection threshold in units of the background RMS.
    #[arg(long, default_value_t = 5.0)]
    pub threshold: f64,
    /// Minimum number of connected pixels.
    #[arg(long, default_value_t = 5)]
    pub min_area: usize,
    /// FWHM (px) of a Gaussian matched filter applied before thresholding (none by default).
    #[arg(long)]
    pub filter_fwhm: Option<f64>,
    /// Aperture radius in pixels.
    #[arg(long, default_value_t = 5.0)]
    pub aperture: f64,
    /// Background box size in pixels.
    #[arg(long = "box", default_value_t = 64)]
    pub box_size: usize,
    /// Saturation level in ADU (overrides the header's SATURATE).
    #[arg(long)]
    pub saturation: Option<f64>,
    /// Output CSV (written atomically); stdout when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// CSV header of the catalogue.
pub const CSV_COLUMNS: [&str; 13] = [
    "x",
    "y",
    "flux",
    "flux_err",
    "background",
    "peak",
    "fwhm",
    "a",
    "b",
    "theta",
    "snr",
    "npix",
    "flags",
];

/// Runs `diffim detect`.
pub fn run(args: &Args, ctx: &Ctx) -> Result<(), CliError> {
    if !(args.threshold.is_finite() && args.threshold > 0.0) {
        return Err(CliError::usage("--threshold must be a positive number"));
    }
    if let Some(g) = args.gain
        && !(g.is_finite() && g > 0.0)
    {
        return Err(CliError::usage("--gain must be a positive number (e-/ADU)"));
    }
    let img = load_image(&args.image)?;
    let mask = load_mask(args.mask.as_deref(), img.data.dim())?;
    // Notes go to stderr: stdout may carry the catalogue.
    let (gain, _, note) = gain_with_note(args.gain, &img, mask.as_ref());
    if let Some(n) = note
        && !ctx.quiet
    {
        eprintln!("{n}");
    }
    if gain.is_none() && !ctx.quiet {
        eprintln!(
            "note: without a gain, flux_err holds the background noise only ({})",
            args.image.display()
        );
    }
    let bp = BackgroundParams {
        box_size: args.box_size,
        ..Default::default()
    };
    let bg = estimate_background(
        &img.data.view(),
        mask.as_ref().map(|m| m.view()).as_ref(),
        &bp,
    )
    .context(args.image.display())?;
    let dp = DetectParams {
        threshold: args.threshold,
        min_area: args.min_area,
        filter_fwhm: args.filter_fwhm,
        aperture_radius: args.aperture,
        saturation: args
            .saturation
            .or_else(|| header_f64(&img.header, "SATURATE")),
        gain,
        ..Default::default()
    };
    let objects = detect(
        &img.data.view(),
        &bg,
        mask.as_ref().map(|m| m.view()).as_ref(),
        &dp,
    )
    .context(args.image.display())?;
    match &args.out {
        Some(path) => {
            write_atomically(path, &objects)?;
            say(
                ctx,
                format!("{} objects -> {}", objects.len(), path.display()),
            );
        }
        None => {
            let stdout = std::io::stdout();
            write_csv(stdout.lock(), &objects)?;
        }
    }
    Ok(())
}

/// Writes the catalogue as CSV with a header row.
pub fn write_csv<W: Write>(w: W, objects: &[Object]) -> Result<(), CliError> {
    let mut wr = csv::Writer::from_writer(w);
    wr.write_record(CSV_COLUMNS)?;
    for o in objects {
        wr.write_record([
            format!("{:.4}", o.x),
            format!("{:.4}", o.y),
            format!("{:.4}", o.flux),
            format!("{:.4}", o.flux_err),
            format!("{:.4}", o.background),
            format!("{:.4}", o.peak),
            format!("{:.4}", o.fwhm),
            format!("{:.4}", o.a),
            format!("{:.4}", o.b),
            format!("{:.5}", o.theta),
            format!("{:.3}", o.snr),
            o.npix.to_string(),
            o.flags.to_string(),
        ])?;
    }
    wr.flush()?;
    Ok(())
}

/// Writes to a temporary file beside `path`, then renames it into place.
fn write_atomically(path: &Path, objects: &[Object]) -> Result<(), CliError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let f = std::fs::File::create(&tmp).context(tmp.display())?;
    write_csv(std::io::BufWriter::new(f), objects)?;
    std::fs::rename(&tmp, path).context(path.display())?;
    Ok(())
}
