//! `diffim reproject`: resample an image onto another image's pixel grid (WCS + shape).

use std::path::{Path, PathBuf};

use diffim::fits::{self, Hdu, Header, WriteOptions};
use diffim::wcs::{Grid, Interpolation, ReprojectParams, Wcs, reproject};

use crate::common::{load_image, load_mask, parse_hdu_spec, say, stage};
use crate::{CliError, Context, Ctx};

/// Reproject an image onto the pixel grid of a reference image (its WCS and shape).
///
/// Example: `diffim reproject tmpl.fits --like sci.fits --out tmpl_on_sci.fits --method lanczos3
/// --mask tmpl_mask.fits --mask-out tmpl_mask_on_sci.fits`
///
/// Pixels outside the input's footprint become NaN (and bad in `--mask-out`). The mask is
/// reprojected conservatively: an output pixel is bad if any input pixel with non-negligible
/// interpolation weight is bad or non-finite. Without `--conserve-flux` surface brightness is
/// preserved; with it values are scaled by the ratio of pixel areas (counts preserved).
/// Supported WCS: TAN, SIN, ARC, ZEA, STG, CAR, TAN-SIP, TPV (ICRS/FK5 J2000).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Input image (FITS; `file.fits[EXT]` selects an extension).
    pub image: PathBuf,
    /// Reference image whose WCS and shape define the output grid (only its header is read).
    #[arg(long)]
    pub like: PathBuf,
    /// Output FITS image (written atomically); carries the reference's WCS.
    #[arg(long)]
    pub out: PathBuf,
    /// Interpolation: lanczos3, bilinear or nearest.
    #[arg(long, default_value = "lanczos3")]
    pub method: String,
    /// Bad-pixel mask of the input (FITS, non-zero = bad); needs --mask-out.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Output mask (FITS, 1 = bad: outside the footprint or touched by a bad input pixel).
    #[arg(long)]
    pub mask_out: Option<PathBuf>,
    /// Scale by the pixel-area ratio so that flux sums are preserved.
    #[arg(long)]
    pub conserve_flux: bool,
    /// Overwrite existing outputs.
    #[arg(long)]
    pub overwrite: bool,
}

/// Reads the header of `spec` that carries a celestial WCS: the HDU named, else the primary,
/// else (for multi-extension files) extension 1.
pub(crate) fn wcs_header(spec: &Path) -> Result<Header, CliError> {
    let (path, hdu) = parse_hdu_spec(spec);
    let h = fits::read_header(&path, &hdu).context(spec.display())?;
    if hdu == Hdu::Primary
        && Wcs::from_header(&h).is_err()
        && let Ok(h1) = fits::read_header(&path, &Hdu::Index(1))
        && Wcs::from_header(&h1).is_ok()
    {
        return Ok(h1);
    }
    Ok(h)
}

/// Runs `diffim reproject`.
pub fn run(args: &Args, ctx: &Ctx) -> Result<(), CliError> {
    let method = Interpolation::from_name(&args.method).ok_or_else(|| {
        CliError::usage(format!(
            "--method must be lanczos3, bilinear or nearest (got {:?})",
            args.method
        ))
    })?;
    if args.mask.is_some() && args.mask_out.is_none() {
        return Err(CliError::usage(
            "--mask needs --mask-out (where the reprojected mask goes)",
        ));
    }
    let img = load_image(&args.image)?;
    let (ny, nx) = img.data.dim();
    let src_wcs = Wcs::from_header(&img.header).context(args.image.display())?;
    let src = Grid::new(src_wcs, nx, ny).context(args.image.display())?;
    let ref_header = wcs_header(&args.like)?;
    let dst = Grid::from_header(&ref_header).context(args.like.display())?;
    let mask = load_mask(args.mask.as_deref(), (ny, nx))?;

    let params = ReprojectParams {
        interpolation: method,
        conserve_flux: args.conserve_flux,
        ..Default::default()
    };
    let pb = stage(ctx, "reprojecting");
    let r = reproject(
        &img.data.view(),
        mask.as_ref().map(|m| m.view()).as_ref(),
        &src,
        &dst,
        &params,
    )?;
    pb.finish_and_clear();

    // Output header: the input's non-WCS cards (GAIN, SATURATE, ...) with the reference's WCS.
    let mut header = img.header.clone();
    dst.to_header(&mut header);
    header.add_history(&format!(
        "diffim reproject: {} onto the grid of {} ({:?}{})",
        args.image.display(),
        args.like.display(),
        method,
        if args.conserve_flux {
            ", flux conserved"
        } else {
            ""
        }
    ));
    let opts = WriteOptions {
        overwrite: args.overwrite,
    };
    fits::write_image(&args.out, &r.image.view(), &header, opts).context(args.out.display())?;
    if let Some(mo) = &args.mask_out {
        fits::write_mask(mo, &r.mask.view(), &header, opts).context(mo.display())?;
    }
    let n_bad = r.mask.iter().filter(|&&b| b).count();
    let n_nan = r.image.iter().filter(|v| !v.is_finite()).count();
    if ctx.json {
        let v = serde_json::json!({
            "out": args.out.display().to_string(),
            "mask_out": args.mask_out.as_ref().map(|p| p.display().to_string()),
            "shape": [dst.ny(), dst.nx()],
            "method": args.method.to_ascii_lowercase(),
            "conserve_flux": args.conserve_flux,
            "n_bad": n_bad,
            "n_nan": n_nan,
            "map_step": r.map_step,
            "map_max_error_px": r.map_max_error,
        });
        println!("{v}");
    } else {
        say(
            ctx,
            format!(
                "wrote {} ({}x{} px, {:?}); {} pixels bad, {} NaN (outside the footprint or non-finite); coordinate map step {} px, max error {:.1e} px",
                args.out.display(),
                dst.nx(),
                dst.ny(),
                method,
                n_bad,
                n_nan,
                r.map_step,
                r.map_max_error
            ),
        );
    }
    Ok(())
}
