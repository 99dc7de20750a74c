//! `diffim subtract`: subtract a template from a science image with ZOGY, SFFT or HOTPANTS.

use std::path::PathBuf;
use std::time::Instant;

use diffim::fits::WriteOptions;
use diffim::subtract::{Method, SubtractInputs, Subtraction, write_outputs};

use crate::common::{PairFiles, PairInputs, SubtractArgs, load_image, say, stage};
use crate::{CliError, Ctx};

/// Subtract TEMPLATE from SCIENCE (same pixel grid) and write the difference, its noise and
/// significance, a mask and summary.json into DIR.
///
/// Example: `diffim subtract sci.fits tmpl.fits --method zogy --out diff-zogy`
///
/// Outputs (all methods): diff.fits, significance.fits (ZOGY: Scorr; others: diff/noise),
/// noise.fits, mask.fits, summary.json. ZOGY adds psf_d.fits, s.fits, flux.fits, flux_err.fits
/// and cosmic.fits (1 where a cosmic-ray, hot or dark pixel was replaced); SFFT adds
/// convolved.fits and kernel.fits (kernels on a 5x5 grid); HOTPANTS adds convolved.fits.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  diffim subtract sci.fits tmpl.fits --method sfft --out diff-sfft"
)]
pub struct Args {
    /// Science image (`file.fits` or `file.fits[EXT]`).
    pub science: PathBuf,
    /// Template image on the same pixel grid (reproject it first with `diffim reproject`).
    pub template: PathBuf,
    /// Method, output folder, masks, gains, HOTPANTS executable, overwriting.
    #[command(flatten)]
    pub common: SubtractArgs,
    /// Science noise map (RMS), instead of the estimated one.
    #[arg(long)]
    pub noise: Option<PathBuf>,
    /// Template noise map (RMS).
    #[arg(long)]
    pub template_noise: Option<PathBuf>,
}

/// Runs `diffim subtract`.
pub fn run(args: &Args, ctx: &Ctx) -> Result<(), CliError> {
    let method = args.common.method()?;
    let t0 = Instant::now();
    let files = PairFiles {
        noise: args.noise.as_deref(),
        template_noise: args.template_noise.as_deref(),
        ..args.common.pair_files()
    };
    let pair = PairInputs::load(
        load_image(&args.science)?,
        load_image(&args.template)?,
        &files,
        ctx,
    )?;
    let load_s = t0.elapsed().as_secs_f64();
    let inputs = pair.inputs();
    let sci = &pair.science;

    let pb = stage(ctx, &format!("subtracting ({method})"));
    let result = subtract(method, &inputs, args);
    pb.finish_and_clear();
    let mut sub = result?;
    sub.timings.insert(0, ("load".to_string(), load_s));

    let mut extra = serde_json::Map::new();
    extra.insert("science".into(), args.science.display().to_string().into());
    extra.insert(
        "template".into(),
        args.template.display().to_string().into(),
    );
    // science_gain / template_gain and where each came from (option, header, estimated,
    // unknown).
    extra.extend(pair.gain_summary());
    let opts = WriteOptions {
        overwrite: args.common.overwrite,
    };
    let written = write_outputs(&args.common.out, &sub, &sci.header, &extra, opts)?;
    if ctx.json {
        let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        println!(
            "{}",
            serde_json::json!({ "method": method, "files": files, "diagnostics": sub.diagnostics })
        );
    }
    say(
        ctx,
        format!(
            "{method}: wrote {} files to {} in {:.2} s",
            written.len(),
            args.common.out.display(),
            t0.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

fn subtract(method: Method, inputs: &SubtractInputs, args: &Args) -> Result<Subtraction, CliError> {
    if method == Method::Zogy {
        let opts = args.common.zogy_options();
        return Ok(diffim::subtract::zogy::subtract_zogy(inputs, &opts)?);
    }
    Ok(diffim::subtract::subtract(
        method,
        inputs,
        args.common.hotpants.as_deref(),
    )?)
}
