//! `diffim cutouts`: postage stamps (FITS + PNG) and an HTML gallery for a list of candidates.

use std::path::PathBuf;

use diffim::cutout::{
    AdjustParams, Candidate, CutoutOptions, GalleryItem, MetaValue, PlotParams, Stretch,
    adjust_cutout, get_cutout, save_plot, write_cutout, write_gallery,
};
use diffim::fits::WriteOptions;

use crate::common::{load_image, load_mask, say};
use crate::{CliError, Context, Ctx};

/// Make a FITS and a PNG postage stamp for every candidate in a CSV table (columns `x`, `y`,
/// 0-based, or SExtractor's 1-based `X_IMAGE`, `Y_IMAGE`; `ra`, `dec` optional; every column is
/// kept in the stamp's metadata), plus `index.html`, a gallery that opens in a browser.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  diffim cutouts --candidates run1/candidates.csv --image sci.fits \
--template tmpl.fits --diff run1/diff.fits --err run1/noise.fits --mask run1/mask.fits --adjust --out stamps"
)]
pub struct Args {
    /// CSV table of candidates with a header row.
    #[arg(long)]
    pub candidates: PathBuf,
    /// Science image (the `image` plane).
    #[arg(long)]
    pub image: PathBuf,
    /// Template image.
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Template convolved to the science PSF (needed by --adjust).
    #[arg(long)]
    pub convolved: Option<PathBuf>,
    /// Difference image.
    #[arg(long)]
    pub diff: Option<PathBuf>,
    /// Noise (RMS) map of the difference (needed by --adjust).
    #[arg(long)]
    pub err: Option<PathBuf>,
    /// Bad-pixel mask (non-zero = bad).
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Cutout radius in pixels (stamps are 2*ceil(r)+1 wide).
    #[arg(long, default_value_t = 20.0)]
    pub radius: f64,
    /// Fit a sub-pixel shift and scale of the convolved template to each stamp (needs
    /// --convolved and --err) and record chi2, p-value, dx, dy, scale.
    #[arg(long)]
    pub adjust: bool,
    /// Brightness stretch of the PNGs: linear, asinh, log, sqrt.
    #[arg(long, default_value = "asinh")]
    pub stretch: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace existing stamp files.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `diffim cutouts`.
pub fn run(args: &Args, ctx: &Ctx) -> Result<(), CliError> {
    let stretch: Stretch = args.stretch.parse().map_err(CliError::usage)?;
    if args.adjust && (args.convolved.is_none() || args.err.is_none()) {
        return Err(CliError::usage("--adjust needs --convolved and --err"));
    }
    let sci = load_image(&args.image)?;
    let shape = sci.data.dim();
    let mut extra = Vec::new();
    for (name, path) in [
        ("template", &args.template),
        ("convolved", &args.convolved),
        ("diff", &args.diff),
        ("err", &args.err),
    ] {
        if let Some(p) = path {
            let img = load_image(p)?;
            if img.data.dim() != shape {
                return Err(CliError::failure(format!(
                    "{}: shape {:?} differs from the image's {:?}",
                    p.display(),
                    img.data.dim(),
                    shape
                )));
            }
            extra.push((name, img.data));
        }
    }
    let mask = load_mask(args.mask.as_deref(), shape)?;
    let mut reader = csv::Reader::from_path(&args.candidates).context(args.candidates.display())?;
    let columns: Vec<String> = reader
        .headers()
        .context(args.candidates.display())?
        .iter()
        .map(str::to_string)
        .collect();
    std::fs::create_dir_all(&args.out).context(args.out.display())?;
    let opts = WriteOptions {
        overwrite: args.overwrite,
    };
    let time = sci
        .header
        .get_f64_opt("MJD-OBS")
        .ok()
        .flatten()
        .map(MetaValue::Float);
    let filename = args.image.display().to_string();
    let mut items = Vec::new();
    let mut skipped = 0usize;
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.context(args.candidates.display())?;
        let cells: Vec<String> = rec.iter().map(str::to_string).collect();
        let cand = Candidate::from_row(&columns, &cells).map_err(|e| {
            CliError::failure(format!("{} row {}: {e}", args.candidates.display(), i + 1))
        })?;
        let copts = CutoutOptions {
            header: Some(&sci.header),
            time: time.clone(),
            filename: Some(filename.clone()),
            name: None,
            mask: mask.as_ref().map(|m| m.view()),
            planes: extra.iter().map(|(n, a)| (*n, a.view())).collect(),
        };
        let mut c = match get_cutout(&sci.data.view(), &cand, args.radius, &copts) {
            Ok(c) => c,
            Err(e) => {
                // A candidate outside the image is reported and skipped, not fatal.
                eprintln!("diffim: row {}: {e}", i + 1);
                skipped += 1;
                continue;
            }
        };
        let mut fields: Vec<(String, String)> = c
            .meta
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        if args.adjust {
            match adjust_cutout(&mut c, &AdjustParams::default()) {
                Ok(a) => fields.push((
                    "adjust".into(),
                    format!(
                        "p={:.2e} chi2 {:.0}→{:.0} dx={:.2} dy={:.2} scale={:.3}",
                        a.pvalue, a.chi2_0, a.chi2, a.dx, a.dy, a.scale
                    ),
                )),
                Err(e) => fields.push(("adjust".into(), format!("failed: {e}"))),
            }
        }
        let stem = format!("cand-{}", i + 1);
        write_cutout(&args.out.join(format!("{stem}.fits")), &c, opts)?;
        let params = PlotParams {
            stretch,
            ..Default::default()
        };
        save_plot(&c, &params, &args.out.join(format!("{stem}.png")))?;
        items.push(GalleryItem {
            title: match c.meta("name") {
                Some(n) => format!("#{} {n}", i + 1),
                None => format!("#{}", i + 1),
            },
            fields,
            png: Some(format!("{stem}.png")),
            fits: Some(format!("{stem}.fits")),
        });
    }
    let summary = vec![
        ("image".to_string(), filename.clone()),
        (
            "candidates".to_string(),
            args.candidates.display().to_string(),
        ),
        ("stamps".to_string(), items.len().to_string()),
        (
            "skipped (outside the image)".to_string(),
            skipped.to_string(),
        ),
    ];
    write_gallery(
        &args.out.join("index.html"),
        "diffim cutouts",
        &summary,
        &items,
    )?;
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"stamps": items.len(), "skipped": skipped, "out": args.out})
        );
    }
    say(
        ctx,
        format!(
            "wrote {} stamps and index.html to {} ({skipped} skipped)",
            items.len(),
            args.out.display()
        ),
    );
    Ok(())
}
