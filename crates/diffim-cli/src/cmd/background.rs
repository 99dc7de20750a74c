//! `diffim background`: SExtractor/SEP mesh background and background-RMS maps.

use std::path::PathBuf;

use diffim::extract::{BackgroundParams, estimate_background};
use diffim::fits::{WriteOptions, write_image};

use crate::common::{load_image, load_mask, say};
use crate::{CliError, Context, Ctx};

/// Write the background and background-RMS maps of an image (SEP/SExtractor mesh method).
///
/// Example: `diffim background sci.fits --out-bg bg.fits --out-rms rms.fits --box 64`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Input image (FITS; `file.fits[EXT]` selects an extension).
    pub image: PathBuf,
    /// Bad-pixel mask (FITS, non-zero = bad), same shape as the image.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Output background map (FITS, float32, the input header kept).
    #[arg(long)]
    pub out_bg: Option<PathBuf>,
    /// Output background RMS map (FITS, float32).
    #[arg(long)]
    pub out_rms: Option<PathBuf>,
    /// Box (mesh) size in pixels.
    #[arg(long = "box", default_value_t = 64)]
    pub box_size: usize,
    /// Median-filter size across boxes.
    #[arg(long, default_value_t = 3)]
    pub filter: usize,
    /// Overwrite existing outputs.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `diffim background`.
pub fn run(args: &Args, ctx: &Ctx) -> Result<(), CliError> {
    if args.out_bg.is_none() && args.out_rms.is_none() {
        return Err(CliError::usage("give --out-bg and/or --out-rms"));
    }
    if args.box_size == 0 || args.filter == 0 {
        return Err(CliError::usage("--box and --filter must be at least 1"));
    }
    let img = load_image(&args.image)?;
    let mask = load_mask(args.mask.as_deref(), img.data.dim())?;
    let params = BackgroundParams {
        box_size: args.box_size,
        filter_size: args.filter,
        ..Default::default()
    };
    let bg = estimate_background(
        &img.data.view(),
        mask.as_ref().map(|m| m.view()).as_ref(),
        &params,
    )
    .context(args.image.display())?;
    let opts = WriteOptions {
        overwrite: args.overwrite,
    };
    let mut header = img.header.clone();
    header.set_with_comment("BKGBOX", args.box_size as i64, "background box size (px)");
    header.set_with_comment("BKGGLOB", bg.global_background, "global background (ADU)");
    header.set_with_comment("BKGRMS", bg.global_rms, "global background RMS (ADU)");
    if let Some(p) = &args.out_bg {
        write_image(p, &bg.background.view(), &header, opts).context(p.display())?;
    }
    if let Some(p) = &args.out_rms {
        write_image(p, &bg.rms.view(), &header, opts).context(p.display())?;
    }
    say(
        ctx,
        format!(
            "background {:.3} ADU, rms {:.3} ADU ({} boxes filled)",
            bg.global_background, bg.global_rms, bg.n_filled
        ),
    );
    Ok(())
}
