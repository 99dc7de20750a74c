//! `diffim template`: fetch a survey template on the grid of a science image.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use diffim::fits::{WriteOptions, write_image, write_mask};
use diffim::survey::{
    Endpoints, FetchOptions, MaskParams, ProgressEvent, SurveySpec, Template, fetch_template,
    mask_template, read_catalog_csv,
};
use diffim::wcs::{Grid, Wcs};
use indicatif::{ProgressBar, ProgressStyle};

use crate::common::{LoadedImage, load_image, say};
use crate::{CliError, Context, Ctx};

/// Fetch a survey template resampled onto the grid (WCS and shape) of a science image.
///
/// Surveys: `ps1:BAND` (Pan-STARRS stacks), `ls:BAND` or `ls:LAYER:BAND` (Legacy Survey),
/// `hips:ID` (any HiPS through CDS hips2fits, e.g. `hips:PanSTARRS/DR1/r`), `hips-tiles:URL`
/// (raw FITS tiles of a HiPS server or local mirror folder).
///
/// Example:
/// `diffim template --survey ps1:r --like sci.fits --out tmpl.fits --mask-out tmask.fits --cache-dir ~/.cache/diffim`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Survey specification (ps1:r, ls:r, hips:PanSTARRS/DR1/r, hips-tiles:URL).
    #[arg(long)]
    pub survey: String,
    /// Science image whose grid the template is delivered on (`file.fits` or `file.fits[EXT]`).
    #[arg(long)]
    pub like: PathBuf,
    /// Output template (FITS, f32).
    #[arg(long)]
    pub out: PathBuf,
    /// Output mask (FITS, 1 = bad).
    #[arg(long)]
    pub mask_out: Option<PathBuf>,
    /// Cache folder for downloaded files (keyed by request).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Use only the cache; fail on a miss.
    #[arg(long)]
    pub offline: bool,
    /// One base URL for all services (`{URL}/hips2fits`, `{URL}/ps1`, `{URL}/legacy`): a mirror
    /// or an emulator. Otherwise DIFFIM_HIPS2FITS_URL / DIFFIM_PS1_URL / DIFFIM_LEGACY_URL or
    /// the public services.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Retries after transient faults (timeouts, 5xx, resets).
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Catalogue CSV (columns ra, dec, mag) of stars to mask when brighter than
    /// --saturation-mag (or without magnitude).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Saturation magnitude for --catalog.
    #[arg(long, default_value_t = 13.0)]
    pub saturation_mag: f64,
    /// Half-width (pixels) of the square masked around each saturated star.
    #[arg(long, default_value_t = 5)]
    pub dilate: usize,
    /// Replace existing output files.
    #[arg(long)]
    pub overwrite: bool,
}

/// Fetches `spec` on the pixel grid of `sci` (its WCS and shape), drawing a progress bar
/// when progress bars are on. Used by `diffim template` and `diffim pipeline --survey`.
pub fn fetch_like(
    spec: &SurveySpec,
    sci: &LoadedImage,
    mut opts: FetchOptions,
    ctx: &Ctx,
) -> Result<Template, CliError> {
    let bar = if ctx.progress {
        let pb = ProgressBar::new(0);
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} [{elapsed}]")
        {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(format!("fetching {spec}"));
        pb.enable_steady_tick(Duration::from_millis(120));
        Some(pb)
    } else {
        None
    };
    if let Some(pb) = &bar {
        let pb = pb.clone();
        opts.progress = Some(Arc::new(move |e: &ProgressEvent| {
            pb.set_length(e.total as u64);
            pb.set_position(e.done as u64);
            pb.set_message(e.label.clone());
        }));
    }
    let result = fetch_template(spec, &sci.header, sci.data.dim(), &opts);
    if let Some(pb) = &bar {
        pb.finish_and_clear();
    }
    result.context(format!("template {spec}"))
}

/// Runs `diffim template`.
pub fn run(args: &Args, ctx: &Ctx) -> Result<(), CliError> {
    let spec: SurveySpec = args
        .survey
        .parse()
        .map_err(|e: diffim::survey::FetchError| CliError::usage(e.to_string()))?;
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(CliError::usage(
            "--timeout must be a positive number of seconds",
        ));
    }
    let sci = load_image(&args.like)?;
    let mut opts = FetchOptions {
        cache_dir: args.cache_dir.clone(),
        offline: args.offline,
        timeout: Duration::from_secs_f64(args.timeout),
        retries: args.retries,
        ..FetchOptions::default()
    };
    if let Some(b) = &args.base_url {
        opts.endpoints = Endpoints::all_at(b);
    }
    let mut t = fetch_like(&spec, &sci, opts, ctx)?;
    if let Some(cat) = &args.catalog {
        let stars = read_catalog_csv(cat).context(cat.display())?;
        let grid = Grid::new(
            Wcs::from_header(&sci.header)?,
            sci.data.ncols(),
            sci.data.nrows(),
        )?;
        let params = MaskParams {
            saturation_mag: Some(args.saturation_mag),
            dilate: args.dilate,
            ..MaskParams::default()
        };
        t.mask = mask_template(
            &t.image.view(),
            Some(&t.mask.view()),
            &grid,
            &stars,
            &params,
        )?;
    }
    let wopts = WriteOptions {
        overwrite: args.overwrite,
    };
    write_image(&args.out, &t.image.view(), &t.header, wopts).context(args.out.display())?;
    if let Some(p) = &args.mask_out {
        write_mask(p, &t.mask.view(), &t.header, wopts).context(p.display())?;
    }
    let nbad = t.mask.iter().filter(|&&m| m).count();
    say(
        ctx,
        format!(
            "{spec}: {}x{} template written to {} ({nbad} masked pixels)",
            t.image.ncols(),
            t.image.nrows(),
            args.out.display()
        ),
    );
    Ok(())
}
