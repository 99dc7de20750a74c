//! `diffim demo`: simulate a science/template pair with known truth (sky-sim), write it as FITS
//! images, masks and a truth table, run the whole pipeline on it and score the candidates
//! against the injected transients.

use std::path::{Path, PathBuf};

use diffim::fits::{self, WriteOptions};
use diffim::sim::{SimConfig, SimPair, simulate};

use crate::{CliError, Ctx};

/// Which sky-sim preset to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Gaussian PSFs 2.5 / 3.5 px, flux scale 1.2, sky gradients, 20 transients at S/N 3-50.
    Default,
    /// Science Moffat PSF with FWHM 3 -> 5 px and varying ellipticity across the field.
    VaryingPsf,
    /// Science FWHM 3.5 -> 4.5 px, flux scale 1.2 varying by 5 % across the field.
    SfftIssue,
}

/// Arguments of `diffim demo`: simulate a pair with injected transients, run the pipeline,
/// and print injected vs recovered.
///
/// Writes `science.fits`, `template.fits`, `science_mask.fits`, `template_mask.fits`
/// (1 = saturated) and `truth.csv` (stars and transients) into `--out`, then every pipeline
/// output (diff.fits, significance.fits, candidates.csv, cutouts/, index.html, summary.json)
/// and `evaluation.json`, replacing earlier files. Example:
///
/// `diffim demo --out demo-out --size 1024 --seed 7 --preset varying-psf --method sfft`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (created if missing).
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// Side of the square images in pixels (64 to 16384); the star count scales with area.
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// Random seed: the same seed gives the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Simulation preset.
    #[arg(long, value_enum, default_value_t = Preset::Default)]
    pub preset: Preset,
    /// Subtraction method of the pipeline: sfft (default), zogy or hotpants.
    #[arg(long, default_value = "sfft")]
    pub method: String,
    /// Number of injected transients (default: the preset's, scaled with the image area).
    #[arg(long)]
    pub transients: Option<usize>,
    /// Only write the simulated pair and truth table; do not run the pipeline.
    #[arg(long)]
    pub sim_only: bool,
}

/// The simulation config of the arguments (checks the size).
pub fn config(args: &Args) -> Result<SimConfig, CliError> {
    if !(64..=16_384).contains(&args.size) {
        return Err(CliError::usage(format!(
            "--size must be between 64 and 16384, got {}",
            args.size
        )));
    }
    let base = match args.preset {
        Preset::Default => SimConfig::default(),
        Preset::VaryingPsf => SimConfig::varying_psf(),
        Preset::SfftIssue => SimConfig::sfft_issue(),
    };
    let mut cfg = base.with_size(args.size, args.size).with_seed(args.seed);
    cfg.n_transients = match args.transients {
        Some(n) => n,
        // Keep the preset's density (its 20 transients are per 512x512 image).
        None => ((cfg.n_transients as f64) * (args.size * args.size) as f64 / (512.0 * 512.0))
            .round()
            .max(1.0) as usize,
    };
    Ok(cfg)
}

/// Simulates `cfg` and writes the pair into `out` (created if missing; existing files are
/// replaced): `science.fits`, `template.fits`, `science_mask.fits`, `template_mask.fits`
/// (each with sky-sim's header: TAN WCS, GAIN, RDNOISE, SATURATE, FWHM, ...) and `truth.csv`.
/// Every file is written atomically (temporary file, then rename).
pub fn write_sim_pair(out: &Path, cfg: &SimConfig) -> Result<SimPair, CliError> {
    std::fs::create_dir_all(out)
        .map_err(|e| CliError::failure(format!("cannot create {}: {e}", out.display())))?;
    let pair = simulate(cfg)?;
    let ow = WriteOptions::overwrite();
    fits::write_image(
        &out.join("science.fits"),
        &pair.science.view(),
        &pair.science_header,
        ow,
    )?;
    fits::write_image(
        &out.join("template.fits"),
        &pair.template.view(),
        &pair.template_header,
        ow,
    )?;
    // Masks keep the WCS and exposure cards, but their pixels are flags, not ADU.
    let mask_header = |h: &fits::Header| {
        let mut h = h.clone();
        h.remove("BUNIT");
        h.add_comment("Mask: 1 = saturated pixel.");
        h
    };
    fits::write_mask(
        &out.join("science_mask.fits"),
        &pair.science_mask.view(),
        &mask_header(&pair.science_header),
        ow,
    )?;
    fits::write_mask(
        &out.join("template_mask.fits"),
        &pair.template_mask.view(),
        &mask_header(&pair.template_header),
        ow,
    )?;
    let tmp = out.join(".truth.csv.tmp");
    pair.truth.write_csv(&tmp)?;
    std::fs::rename(&tmp, out.join("truth.csv"))
        .map_err(|e| CliError::failure(format!("cannot write truth.csv: {e}")))?;
    Ok(pair)
}

/// Runs `diffim demo`.
pub fn run(args: &Args, ctx: &Ctx) -> Result<(), CliError> {
    let cfg = config(args)?;
    let method_params = if args.sim_only {
        None
    } else {
        let method: diffim::subtract::Method = args
            .method
            .parse()
            .map_err(|e: diffim::subtract::SubtractError| CliError::usage(e.to_string()))?;
        Some(diffim::pipeline::PipelineParams {
            method,
            overwrite: true,
            ..Default::default()
        })
    };
    let t0 = std::time::Instant::now();
    let pb = crate::common::stage(ctx, "simulating the pair");
    let pair = write_sim_pair(&args.out, &cfg);
    pb.finish_and_clear();
    let pair = pair?;
    let sim_s = t0.elapsed().as_secs_f64();
    let n_sat = pair.truth.stars.iter().filter(|s| s.saturated).count();
    let Some(params) = method_params else {
        if ctx.json {
            let v = serde_json::json!({
                "out": args.out.display().to_string(),
                "ny": cfg.ny,
                "nx": cfg.nx,
                "seed": cfg.seed,
                "stars": pair.truth.stars.len(),
                "saturated_stars": n_sat,
                "transients": pair.truth.transients.len(),
                "seconds": sim_s,
            });
            println!("{v}");
        }
        crate::common::say(
            ctx,
            format!(
                "wrote {}x{} pair to {} ({} stars, {} saturated, {} transients; seed {}) in {sim_s:.2} s",
                cfg.ny,
                cfg.nx,
                args.out.display(),
                pair.truth.stars.len(),
                n_sat,
                pair.truth.transients.len(),
                cfg.seed,
            ),
        );
        return Ok(());
    };
    crate::common::say(
        ctx,
        format!(
            "simulated {}x{} pair ({} stars, {} transients at S/N {}-{}; seed {}) in {sim_s:.2} s",
            cfg.ny,
            cfg.nx,
            pair.truth.stars.len(),
            pair.truth.transients.len(),
            cfg.transient_snr.0,
            cfg.transient_snr.1,
            cfg.seed
        ),
    );
    // The simulated planes move into the pipeline's inputs (no copies); the truth stays.
    let loaded = |data, header, name: &str| crate::common::LoadedImage {
        data,
        header,
        path: args.out.join(name),
    };
    let science = loaded(pair.science, pair.science_header, "science.fits");
    let template = loaded(pair.template, pair.template_header, "template.fits");
    drop(pair.science_noise);
    drop(pair.template_noise);
    // sky-sim headers carry GAIN; the same resolution as for files all the same.
    let (science_gain, science_gain_source) =
        crate::common::resolve_gain(None, &science, Some(&pair.science_mask), ctx);
    let (template_gain, template_gain_source) =
        crate::common::resolve_gain(None, &template, Some(&pair.template_mask), ctx);
    let inputs = crate::common::PairInputs {
        science,
        template,
        science_mask: Some(pair.science_mask),
        template_mask: Some(pair.template_mask),
        science_noise: None,
        template_noise: None,
        science_gain,
        template_gain,
        science_gain_source,
        template_gain_source,
    };
    let res = crate::cmd::pipeline::run_pair(&inputs, &params, &args.out, ctx)?;
    let truth: Vec<(f64, f64, f64, f64)> = pair
        .truth
        .transients
        .iter()
        .map(|t| (t.x, t.y, t.flux, t.snr))
        .collect();
    let eval = diffim::pipeline::evaluate(&res.candidates, &truth, (cfg.ny, cfg.nx), 2.0);
    let eval_json = serde_json::to_string_pretty(&eval)
        .map_err(|e| CliError::failure(format!("evaluation.json: {e}")))?;
    fits::write_atomic(
        &args.out.join("evaluation.json"),
        eval_json.as_bytes(),
        WriteOptions::overwrite(),
    )?;
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({
                "out": args.out.display().to_string(),
                "method": params.method,
                "candidates": res.candidates.len(),
                "completeness_snr10": eval.completeness_snr10(),
                "false_per_mpix": eval.false_per_mpix,
                "median_flux_ratio": eval.median_flux_ratio,
                "bins": eval.bins,
            })
        );
        return Ok(());
    }
    crate::cmd::pipeline::report(&res, &args.out, ctx);
    crate::common::say(
        ctx,
        format!(
            "\ninjected vs recovered ({}, match radius 2 px):\n{}",
            params.method,
            eval.table()
        ),
    );
    Ok(())
}
