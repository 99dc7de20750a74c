//! The `diffim` command line: difference imaging for time-domain astronomy.
//!
//! Every subcommand prints one clear line on error and exits non-zero (see `diffim --help`).

use clap::{Parser, Subcommand};
use std::io::IsTerminal;

mod cmd;
mod common;
mod error;

pub use error::{CliError, Context};

const AFTER_HELP: &str = "\
Examples:
  diffim demo --out demo-out                      simulate a pair, subtract, detect, report
  diffim subtract sci.fits tmpl.fits --method zogy --out diff-out
  diffim pipeline sci.fits --template tmpl.fits --method sfft --out run1

Exit codes:
  0  success
  1  failure caused by the data or the environment (unreadable file, no stars, network fault)
  2  bad command-line usage";

/// Difference imaging for time-domain astronomy: subtract a template from a science image
/// and find what changed.
#[derive(Debug, Parser)]
#[command(name = "diffim", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// Print nothing but errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Print machine-readable JSON results on stdout where a command has any.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a science/template pair with injected transients and run the whole job on it.
    Demo(cmd::demo::Args),
    /// Subtract a template from a science image (ZOGY, SFFT or HOTPANTS).
    Subtract(cmd::subtract::Args),
    /// Run the whole pipeline on one science image: template, subtraction, candidates, report.
    Pipeline(cmd::pipeline::Args),
    /// Run the pipeline on many pairs listed in a CSV manifest, in parallel and resumably.
    Batch(cmd::batch::Args),
    /// Detect sources and write a catalogue.
    Detect(cmd::detect::Args),
    /// Write background and background-RMS maps.
    Background(cmd::background::Args),
    /// Estimate the PSF (Karhunen-Loeve spatially varying model).
    Psf(cmd::psf::Args),
    /// Proper coaddition of aligned images (Zackay & Ofek 2017).
    Coadd(cmd::coadd::Args),
    /// Reproject an image onto another image's pixel grid.
    Reproject(cmd::reproject::Args),
    /// Convert pixel <-> world coordinates with an image's WCS.
    Wcs(cmd::wcs::Args),
    /// Fetch a template from a survey onto a science image's grid.
    Template(cmd::template::Args),
    /// Make postage stamps (FITS + PNG) and an HTML gallery for candidates.
    Cutouts(cmd::cutouts::Args),
}

/// What every command may consult: output verbosity and whether to draw progress bars.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// `--quiet`: print nothing but errors.
    pub quiet: bool,
    /// `--json`: machine-readable output on stdout.
    pub json: bool,
    /// Progress bars are drawn only when stderr is a terminal and not quiet.
    pub progress: bool,
}

fn main() {
    let cli = Cli::parse();
    let ctx = Ctx {
        quiet: cli.quiet,
        json: cli.json,
        progress: !cli.quiet && std::io::stderr().is_terminal(),
    };
    let result = match &cli.command {
        Command::Demo(a) => cmd::demo::run(a, &ctx),
        Command::Subtract(a) => cmd::subtract::run(a, &ctx),
        Command::Pipeline(a) => cmd::pipeline::run(a, &ctx),
        Command::Batch(a) => cmd::batch::run(a, &ctx),
        Command::Detect(a) => cmd::detect::run(a, &ctx),
        Command::Background(a) => cmd::background::run(a, &ctx),
        Command::Psf(a) => cmd::psf::run(a, &ctx),
        Command::Coadd(a) => cmd::coadd::run(a, &ctx),
        Command::Reproject(a) => cmd::reproject::run(a, &ctx),
        Command::Wcs(a) => cmd::wcs::run(a, &ctx),
        Command::Template(a) => cmd::template::run(a, &ctx),
        Command::Cutouts(a) => cmd::cutouts::run(a, &ctx),
    };
    if let Err(e) = result {
        eprintln!("diffim: error: {e}");
        std::process::exit(e.code);
    }
}
