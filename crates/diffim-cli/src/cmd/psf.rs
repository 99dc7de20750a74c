//! `diffim psf`: estimate the spatially varying PSF (Karhunen-Loeve model) of an image and
//! write it as a multi-extension FITS file, optionally with a PNG grid of the PSF.

use std::path::{Path, PathBuf};

use diffim::fits::{Header, Plane, PlaneData, WriteOptions, write_mef};
use diffim::psf::poly::{CoordScale, n_terms};
use diffim::psf::{KlPsf, KlPsfParts, PsfEstimateParams, PsfModel, estimate_psf, psf_grid_image};

use crate::common::{header_f64, load_image, load_mask, resolve_gain, say, stage};
use crate::{CliError, Context, Ctx};

/// Estimate the PSF of an image (Karhunen-Loeve basis with polynomial coefficient fields,
/// Lauer 2002) and write it as a multi-extension FITS file.
///
/// Example: `diffim psf sci.fits --mask sci_mask.fits --out psf.fits --png psf_grid.png`
///
/// Output: one image extension per basis element (EXTNAME BASIS0, BASIS1, ...; float64,
/// orthonormal stamps) and, in the primary header, KLNB (number of elements), KLDEG
/// (polynomial degree), KLSIZE (stamp side), KLNX/KLNY (image shape), KLXC/KLXS/KLYC/KLYS
/// (coordinate scaling u = (x - KLXC)/KLXS, v = (y - KLYC)/KLYS, 0-based pixels), and
/// KLCi_j = coefficient of term j of field a_i, terms ordered 1, u, v, u^2, uv, v^2, u^3, ...
/// The PSF at (x, y) is sum_i a_i(u, v) BASISi divided by its sum. FWHM = model FWHM at the
/// image centre (px), NSTARS = stars used. The PNG shows the PSF at 3x3 positions (each
/// stamp scaled to its own peak, square-root stretch, y up).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Input image (FITS; `file.fits[EXT]` selects an extension).
    pub image: PathBuf,
    /// Output multi-extension FITS file with the PSF basis.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write a PNG grid of the PSF at 3x3 positions.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Bad-pixel mask (FITS, non-zero = bad), same shape as the image.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Gain in e-/ADU (overrides the header's GAIN; default: GAIN, else estimated from the sky).
    #[arg(long)]
    pub gain: Option<f64>,
    /// Saturation level in ADU (overrides the header's SATURATE).
    #[arg(long)]
    pub saturation: Option<f64>,
    /// Polynomial degree of the coefficient fields.
    #[arg(long, default_value_t = 3)]
    pub degree: usize,
    /// Fixed number of basis elements (default: chosen from the eigenvalue spectrum).
    #[arg(long)]
    pub n_basis: Option<usize>,
    /// Replace existing output files.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `diffim psf`.
pub fn run(args: &Args, ctx: &Ctx) -> Result<(), CliError> {
    if args.degree > 10 {
        return Err(CliError::usage("--degree must be at most 10"));
    }
    if args.n_basis == Some(0) {
        return Err(CliError::usage("--n-basis must be at least 1"));
    }
    if let Some(g) = args.gain
        && !(g.is_finite() && g > 0.0)
    {
        return Err(CliError::usage("--gain must be a positive number (e-/ADU)"));
    }
    if !args.overwrite {
        for p in std::iter::once(&args.out).chain(args.png.as_ref()) {
            if p.exists() {
                return Err(CliError::failure(format!(
                    "{} exists (use --overwrite)",
                    p.display()
                )));
            }
        }
    }
    let img = load_image(&args.image)?;
    let mask = load_mask(args.mask.as_deref(), img.data.dim())?;
    let mut params = PsfEstimateParams {
        gain: resolve_gain(args.gain, &img, mask.as_ref(), ctx).0,
        saturation: args
            .saturation
            .or_else(|| header_f64(&img.header, "SATURATE")),
        ..Default::default()
    };
    params.kl.degree = args.degree;
    params.kl.n_basis = args.n_basis;
    let pb = stage(ctx, "estimating the PSF");
    let est = estimate_psf(
        &img.data.view(),
        mask.as_ref().map(|m| m.view()).as_ref(),
        &params,
    )
    .context(args.image.display())?;
    pb.finish_and_clear();

    let (primary, planes) = model_to_mef(&est.model);
    let mut primary = primary;
    primary.set_with_comment("FWHM", est.fwhm, "model FWHM at the image centre (px)");
    primary.set_with_comment("NSTARS", est.stars.len(), "PSF stars used");
    primary.add_history(&format!("diffim psf {}", args.image.display()));
    write_mef(
        &args.out,
        &primary,
        &planes,
        WriteOptions {
            overwrite: args.overwrite,
        },
    )
    .context(args.out.display())?;
    // Read the file back: what others load must be the model we fitted.
    let (ny, nx) = img.data.dim();
    let (cx, cy) = ((nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0);
    let back = read_psf_file(&args.out)?;
    let diff = (&back.psf_at(cx, cy) - &est.model.psf_at(cx, cy))
        .mapv(f64::abs)
        .sum();
    if diff.is_nan() || diff >= 1e-9 {
        return Err(CliError::failure(format!(
            "{}: the written PSF does not read back identically (L1 difference {diff:e})",
            args.out.display()
        )));
    }
    if let Some(png) = &args.png {
        write_png_grid(png, &est.model, ny, nx)?;
    }
    if ctx.json {
        let j = serde_json::json!({
            "stars": est.stars.len(),
            "n_basis": est.model.n_basis(),
            "degree": est.model.degree(),
            "fwhm": est.fwhm,
            "fwhm_stars": est.fwhm_stars,
            "stamp_size": est.model.stamp_size(),
            "rejections": est.stars.rejections,
        });
        println!("{j}");
    }
    say(
        ctx,
        format!(
            "{}: {} PSF stars ({}), {} basis elements, degree {}, FWHM {:.3} px -> {}",
            args.image.display(),
            est.stars.len(),
            est.stars.rejections,
            est.model.n_basis(),
            est.model.degree(),
            est.fwhm,
            args.out.display()
        ),
    );
    Ok(())
}

/// The primary header (KL cards) and the BASISi planes of a model.
pub fn model_to_mef(model: &KlPsf) -> (Header, Vec<Plane>) {
    let parts = model.to_parts();
    let mut h = Header::new();
    h.set_with_comment("KLNB", parts.basis.len(), "number of KL basis elements");
    h.set_with_comment(
        "KLDEG",
        parts.degree,
        "degree of the coefficient polynomials",
    );
    h.set_with_comment("KLSIZE", parts.basis[0].nrows(), "basis stamp side (px)");
    h.set_with_comment(
        "KLNX",
        parts.image_shape.1,
        "image width the model was fitted on",
    );
    h.set_with_comment(
        "KLNY",
        parts.image_shape.0,
        "image height the model was fitted on",
    );
    h.set_with_comment(
        "KLXC",
        parts.scale.cx,
        "u = (x - KLXC) / KLXS, x 0-based px",
    );
    h.set_with_comment("KLXS", parts.scale.hx, "x half-range (px)");
    h.set_with_comment(
        "KLYC",
        parts.scale.cy,
        "v = (y - KLYC) / KLYS, y 0-based px",
    );
    h.set_with_comment("KLYS", parts.scale.hy, "y half-range (px)");
    h.add_comment("KLCi_j: term j of field a_i; terms 1, u, v, u^2, uv, v^2, u^3, u^2v, ...");
    h.add_comment("PSF(x,y) = sum_i a_i(u,v) BASISi / sum(sum_i a_i(u,v) BASISi)");
    for (i, c) in parts.coeffs.iter().enumerate() {
        for (j, v) in c.iter().enumerate() {
            h.set(&format!("KLC{i}_{j}"), *v);
        }
    }
    let planes = parts
        .basis
        .iter()
        .enumerate()
        .map(|(i, b)| Plane {
            name: format!("BASIS{i}"),
            data: PlaneData::F64(b.clone()),
            header: Header::new(),
        })
        .collect();
    (h, planes)
}

/// Rebuilds a model from a file written by `diffim psf` (for the commands that use one).
pub fn read_psf_file(path: &Path) -> Result<KlPsf, CliError> {
    let (h, planes) = diffim::fits::read_mef(path).context(path.display())?;
    let geti = |k: &str| -> Result<usize, CliError> {
        let v = h.get_i64(k).context(format!("{}: {k}", path.display()))?;
        usize::try_from(v).map_err(|_| CliError::failure(format!("{}: bad {k}", path.display())))
    };
    let getf = |k: &str| h.get_f64(k).context(format!("{}: {k}", path.display()));
    let nb = geti("KLNB")?;
    let degree = geti("KLDEG")?;
    if nb == 0 || nb > 1000 || degree > 20 {
        return Err(CliError::failure(format!(
            "{}: bad KLNB/KLDEG",
            path.display()
        )));
    }
    let mut basis = Vec::with_capacity(nb);
    for i in 0..nb {
        let name = format!("BASIS{i}");
        let p = planes
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| CliError::failure(format!("{}: no {name}", path.display())))?;
        basis.push(match &p.data {
            PlaneData::F64(a) => a.clone(),
            PlaneData::F32(a) => a.mapv(f64::from),
            _ => {
                return Err(CliError::failure(format!(
                    "{}: {name} is not float",
                    path.display()
                )));
            }
        });
    }
    let mut coeffs = Vec::with_capacity(nb);
    for i in 0..nb {
        let c = (0..n_terms(degree))
            .map(|j| getf(&format!("KLC{i}_{j}")))
            .collect::<Result<Vec<_>, _>>()?;
        coeffs.push(c);
    }
    let parts = KlPsfParts {
        basis,
        degree,
        coeffs,
        scale: CoordScale {
            cx: getf("KLXC")?,
            hx: getf("KLXS")?,
            cy: getf("KLYC")?,
            hy: getf("KLYS")?,
        },
        image_shape: (geti("KLNY")?, geti("KLNX")?),
    };
    KlPsf::from_parts(parts).context(path.display())
}

fn write_png_grid(path: &Path, model: &KlPsf, ny: usize, nx: usize) -> Result<(), CliError> {
    let zoom = (96 / model.stamp_size()).clamp(1, 8);
    let g = psf_grid_image(model, ny, nx, 3, zoom);
    let (h, w) = g.dim();
    // Flip so that y grows upwards, as astronomical images are displayed.
    let mut buf = Vec::with_capacity(h * w);
    for row in g.outer_iter().rev() {
        buf.extend(row.iter().copied());
    }
    let img = image::GrayImage::from_raw(w as u32, h as u32, buf)
        .ok_or_else(|| CliError::failure("PNG buffer size mismatch"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default(),
        std::process::id()
    ));
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .context(path.display())?;
    std::fs::rename(&tmp, path).context(path.display())?;
    Ok(())
}
