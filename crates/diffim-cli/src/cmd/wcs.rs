//! `diffim wcs`: convert pixel <-> world coordinates with an image's WCS.

use std::path::PathBuf;

use diffim::wcs::Wcs;

use crate::cmd::reproject::wcs_header;
use crate::{CliError, Context, Ctx};

/// Convert pixel <-> world coordinates with an image's WCS (TAN, SIN, ARC, ZEA, STG, CAR,
/// TAN-SIP, TPV).
///
/// Pixels are 0-BASED (the centre of the first pixel is 0,0) unless `--fits-pixels` is given,
/// which makes them 1-based like FITS/ds9. World coordinates are RA/Dec (or GLON/GLAT) in
/// degrees. Prints `x y ra dec` on one line (or JSON with `--json`).
///
/// Examples: `diffim wcs sci.fits --pix 100 200` ; `diffim wcs sci.fits --world 150.1 2.2`
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("point").required(true).args(["pix", "world"])))]
pub struct Args {
    /// Image whose header holds the WCS (`file.fits[EXT]` selects an extension).
    pub image: PathBuf,
    /// Pixel coordinates X Y to convert to world (0-based unless --fits-pixels).
    #[arg(long, num_args = 2, value_names = ["X", "Y"], allow_negative_numbers = true)]
    pub pix: Option<Vec<f64>>,
    /// World coordinates RA DEC in degrees to convert to pixels.
    #[arg(long, num_args = 2, value_names = ["RA", "DEC"], allow_negative_numbers = true)]
    pub world: Option<Vec<f64>>,
    /// Read and print pixels 1-based (FITS convention) instead of 0-based.
    #[arg(long)]
    pub fits_pixels: bool,
}

/// Runs `diffim wcs`.
pub fn run(args: &Args, ctx: &Ctx) -> Result<(), CliError> {
    let header = wcs_header(&args.image)?;
    let wcs = Wcs::from_header(&header).context(args.image.display())?;
    let origin = if args.fits_pixels { 1.0 } else { 0.0 };
    let (x, y, ra, dec) = match (&args.pix, &args.world) {
        (Some(p), None) => {
            let (x, y) = (p[0], p[1]);
            let (ra, dec) = wcs.pixel_to_world(x - origin, y - origin).ok_or_else(|| {
                CliError::failure(format!(
                    "pixel ({x}, {y}) is outside the projection's domain"
                ))
            })?;
            (x, y, ra, dec)
        }
        (None, Some(w)) => {
            let (ra, dec) = (w[0], w[1]);
            let (x, y) = wcs.world_to_pixel(ra, dec).ok_or_else(|| {
                CliError::failure(format!(
                    "world ({ra}, {dec}) is outside the projection's domain (or the distortion does not invert there)"
                ))
            })?;
            (x + origin, y + origin, ra, dec)
        }
        _ => {
            return Err(CliError::usage(
                "give exactly one of --pix X Y or --world RA DEC",
            ));
        }
    };
    if ctx.json {
        let v = serde_json::json!({
            "x": x, "y": y, "ra": ra, "dec": dec,
            "pixel_origin": origin as i64,
            "units": "pixels, degrees",
        });
        println!("{v}");
    } else if !ctx.quiet {
        let base = if args.fits_pixels {
            "1-based"
        } else {
            "0-based"
        };
        println!("x y ({base} pixels) = {x:.6} {y:.6}  ra dec (deg) = {ra:.10} {dec:.10}");
    }
    Ok(())
}
