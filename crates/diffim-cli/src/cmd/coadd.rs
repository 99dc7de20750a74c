//! `diffim coadd`: proper coaddition of aligned images (Zackay & Ofek 2017).

use std::path::PathBuf;

use diffim::fits::{Header, Plane, PlaneData, WriteOptions, write_mef};
use diffim::psf::{PsfEstimateParams, PsfModel, estimate_psf};
use diffim::zogy::{CoaddImage, CoaddParams, proper_coadd};

use crate::common::{header_f64, load_image, resolve_gain, say};
use crate::{CliError, Ctx};

/// Arguments of `diffim coadd`.
///
/// Every image must be on the same pixel grid (reproject first). For each image the
/// background and the PSF are estimated (psf-kl; the PSF at the image centre is used), the
/// background is subtracted, and the background RMS weights the image. Zero points are taken
/// as equal (`F_j = 1`) unless `--zero-points` is given.
///
/// Output: a multi-extension FITS file with the coadd `R` (unit noise per pixel, zero point
/// `FR` in its header) in extension 1 (`EXTNAME = R`) and its PSF `P_R` in extension 2
/// (`EXTNAME = PSF_R`).
///
/// Example: `diffim coadd e1.fits e2.fits e3.fits --out coadd.fits`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Aligned input images (`file.fits` or `file.fits[EXT]`).
    #[arg(required = true, num_args = 1..)]
    pub images: Vec<PathBuf>,
    /// Output FITS file.
    #[arg(long)]
    pub out: PathBuf,
    /// Flux zero points, one per image, comma-separated (default: all 1).
    #[arg(long, value_delimiter = ',')]
    pub zero_points: Option<Vec<f64>>,
    /// Overwrite the output file.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `diffim coadd`.
pub fn run(args: &Args, ctx: &Ctx) -> Result<(), CliError> {
    if let Some(z) = &args.zero_points
        && z.len() != args.images.len()
    {
        return Err(CliError::usage(format!(
            "--zero-points has {} values for {} images",
            z.len(),
            args.images.len()
        )));
    }
    let mut data = Vec::new();
    let mut first_header = None;
    for spec in &args.images {
        let img = load_image(spec)?;
        let sat = header_f64(&img.header, "SATURATE");
        let mut mask = img.data.mapv(|v| !v.is_finite());
        if let Some(s) = sat {
            mask.zip_mut_with(&img.data, |m, &v| *m |= v as f64 >= s);
        }
        let (gain, _) = resolve_gain(None, &img, Some(&mask), ctx);
        let params = PsfEstimateParams {
            saturation: sat,
            gain,
            ..Default::default()
        };
        let est = estimate_psf(&img.data.view(), Some(&mask.view()), &params)?;
        let (ny, nx) = img.data.dim();
        let psf = est
            .model
            .psf_at((nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0);
        let sub = &img.data - &est.background.background;
        if first_header.is_none() {
            first_header = Some(img.header.clone());
        }
        data.push((sub, mask, psf, est.background.global_rms));
    }
    let shape = data.first().map(|d| d.0.dim()).unwrap_or((0, 0));
    if let Some((i, _)) = data.iter().enumerate().find(|(_, d)| d.0.dim() != shape) {
        return Err(CliError::usage(format!(
            "{}: shape {:?} differs from the first image's {:?} (reproject first)",
            args.images[i].display(),
            data[i].0.dim(),
            shape
        )));
    }
    let inputs: Vec<CoaddImage> = data
        .iter()
        .enumerate()
        .map(|(j, (img, mask, psf, sigma))| CoaddImage {
            image: img.view(),
            mask: Some(mask.view()),
            psf,
            sigma: Some(*sigma),
            zero_point: args.zero_points.as_ref().map(|z| z[j]),
        })
        .collect();
    let co = proper_coadd(&inputs, &CoaddParams::default())?;
    let mut primary = first_header.unwrap_or_else(Header::new);
    primary.set_with_comment("NCOMBINE", data.len() as i64, "images in the proper coadd");
    primary.set_with_comment(
        "FR",
        co.f_r,
        "zero point F_R of the coadd (Zackay & Ofek 2017)",
    );
    primary.add_history("diffim coadd: proper coaddition (Zackay & Ofek 2017)");
    let mut rh = Header::new();
    rh.set_with_comment("FR", co.f_r, "zero point F_R");
    rh.set_with_comment("BUNIT", "sigma", "unit noise per pixel");
    let mut r = co.r.clone();
    r.zip_mut_with(&co.mask, |v, &m| {
        if m {
            *v = f32::NAN;
        }
    });
    let planes = vec![
        Plane {
            name: "R".to_string(),
            data: PlaneData::F32(r),
            header: rh,
        },
        Plane {
            name: "PSF_R".to_string(),
            data: PlaneData::F64(co.psf_r.clone()),
            header: Header::new(),
        },
    ];
    write_mef(
        &args.out,
        &primary,
        &planes,
        WriteOptions {
            overwrite: args.overwrite,
        },
    )?;
    say(
        ctx,
        format!(
            "coadd of {} images written to {} (F_R = {:.4})",
            data.len(),
            args.out.display(),
            co.f_r
        ),
    );
    Ok(())
}
