//! `diffim pipeline`: template, subtraction, candidates, photometry, cutouts and a report.

use std::path::{Path, PathBuf};

use diffim::pipeline::{PipelineMeta, PipelineParams, PipelineResult, run_pipeline};

use crate::common::{LoadedImage, PairInputs, SubtractArgs, load_image, say, stage};
use crate::{CliError, Ctx};

/// Run the whole job on one science image: the template (given, or fetched from a survey and
/// reprojected), subtraction, candidates on the significance image (rejecting masked pixels,
/// edges and saturated stars), photometry (PSF for ZOGY, aperture otherwise; magnitudes with a
/// zero point), cutouts with the adjust fit, and a report in DIR: candidates.csv,
/// summary.json (timings per stage, parameters, counts), index.html (gallery), the images of
/// `diffim subtract` and cutouts/.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  diffim pipeline sci.fits --template tmpl.fits --method zogy --out run1\n  \
diffim pipeline sci.fits --survey ps1:r --method sfft --out run2 --cache-dir ~/.cache/diffim"
)]
pub struct Args {
    /// Science image (`file.fits` or `file.fits[EXT]`).
    pub science: PathBuf,
    /// Template image on the science image's pixel grid.
    #[arg(long, conflicts_with = "survey", required_unless_present = "survey")]
    pub template: Option<PathBuf>,
    /// Fetch the template from a survey instead: ps1:r, ls:r, hips:PanSTARRS/DR1/r, hips-tiles:URL.
    #[arg(long)]
    pub survey: Option<String>,
    /// Cache folder for survey downloads.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Use only the survey cache (no network).
    #[arg(long)]
    pub offline: bool,
    /// Method, output folder, masks, gains, HOTPANTS executable, overwriting.
    #[command(flatten)]
    pub common: SubtractArgs,
    /// Detection threshold on the significance image, sigma.
    #[arg(long, default_value_t = 5.0)]
    pub threshold: f64,
    /// Minimum connected pixels above the threshold.
    #[arg(long, default_value_t = 3)]
    pub min_area: usize,
    /// Also report negative candidates (sources that faded).
    #[arg(long)]
    pub negative: bool,
    /// Photometric zero point of the science image (default: MAGZP/ZP/... keywords).
    #[arg(long)]
    pub zp: Option<f64>,
    /// Cutout radius, pixels.
    #[arg(long, default_value_t = 15.0)]
    pub radius: f64,
    /// Most cutouts to write (most significant candidates first); 0 = none.
    #[arg(long, default_value_t = 200)]
    pub max_cutouts: usize,
    /// Skip the adjust fit of the cutouts.
    #[arg(long)]
    pub no_adjust: bool,
}

impl Args {
    /// Pipeline parameters from the arguments.
    pub fn params(&self) -> Result<PipelineParams, CliError> {
        let mut p = PipelineParams {
            method: self.common.method()?,
            zogy: self.common.zogy_options(),
            ..Default::default()
        };
        p.candidates.threshold = self.threshold;
        p.candidates.min_area = self.min_area;
        p.candidates.negative = self.negative;
        p.candidates.zero_point = self.zp;
        p.cutout_radius = self.radius;
        p.max_cutouts = self.max_cutouts;
        if self.no_adjust {
            p.adjust = None;
        }
        p.overwrite = self.common.overwrite;
        p.hotpants = self.common.hotpants.clone();
        Ok(p)
    }
}

/// Runs the pipeline on a loaded pair into `out`, with a spinner, and returns the result.
pub fn run_pair(
    pair: &PairInputs,
    params: &PipelineParams,
    out: &Path,
    ctx: &Ctx,
) -> Result<PipelineResult, CliError> {
    let name = pair.science.path.display().to_string();
    let meta = PipelineMeta {
        science_header: Some(&pair.science.header),
        science_name: Some(&name),
    };
    let pb = stage(ctx, &format!("pipeline ({}) on {name}", params.method));
    let res = run_pipeline(&pair.inputs(), &meta, params, Some(out));
    pb.finish_and_clear();
    Ok(res?)
}

/// Prints the outcome of a run (one line per stage timing unless --quiet; JSON with --json).
pub fn report(res: &PipelineResult, out: &Path, ctx: &Ctx) {
    if ctx.json {
        let v = serde_json::json!({
            "out": out.display().to_string(),
            "candidates": res.candidates.len(),
            "rejected": res.rejected,
            "timings_s": res.timings.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        println!("{v}");
        return;
    }
    say(
        ctx,
        format!(
            "{} candidates ({} rejected: {} masked, {} at edges, {} near saturated stars) -> {}",
            res.candidates.len(),
            res.rejected.masked + res.rejected.edge + res.rejected.saturated,
            res.rejected.masked,
            res.rejected.edge,
            res.rejected.saturated,
            out.join("index.html").display()
        ),
    );
    let stages: Vec<String> = res
        .timings
        .iter()
        .filter(|(k, _)| !k.starts_with("subtract."))
        .map(|(k, v)| format!("{k} {v:.2}s"))
        .collect();
    say(ctx, format!("timings: {}", stages.join(", ")));
}

/// Loads the template, or fetches it from a survey onto the science grid (with its mask).
fn template_for(
    args: &Args,
    science: &LoadedImage,
    ctx: &Ctx,
) -> Result<(LoadedImage, Option<diffim::ndarray::Array2<bool>>), CliError> {
    if let Some(t) = &args.template {
        return Ok((load_image(t)?, None));
    }
    let text = args
        .survey
        .as_deref()
        .ok_or_else(|| CliError::usage("give --template or --survey"))?;
    let spec: diffim::survey::SurveySpec = text
        .parse()
        .map_err(|e: diffim::survey::FetchError| CliError::usage(e.to_string()))?;
    let opts = diffim::survey::FetchOptions {
        cache_dir: args.cache_dir.clone(),
        offline: args.offline,
        ..Default::default()
    };
    let t = crate::cmd::template::fetch_like(&spec, science, opts, ctx)?;
    let path = PathBuf::from(format!("{spec}"));
    Ok((
        LoadedImage {
            data: t.image,
            header: t.header,
            path,
        },
        Some(t.mask),
    ))
}

/// Runs `diffim pipeline`.
pub fn run(args: &Args, ctx: &Ctx) -> Result<(), CliError> {
    let params = args.params()?;
    let science = load_image(&args.science)?;
    let (template, fetched_mask) = template_for(args, &science, ctx)?;
    let pair = PairInputs::load_with_template_mask(
        science,
        template,
        fetched_mask,
        &args.common.pair_files(),
        ctx,
    )?;
    let res = run_pair(&pair, &params, &args.common.out, ctx)?;
    report(&res, &args.common.out, ctx);
    Ok(())
}
