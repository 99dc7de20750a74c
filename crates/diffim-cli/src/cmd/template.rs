//! `diffim template` (being built; see the issue tracker).

use crate::{CliError, Ctx};

/// Arguments of `diffim template`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `diffim template`.
pub fn run(_args: &Args, _ctx: &Ctx) -> Result<(), CliError> {
    Err(CliError::failure("`diffim template` is not part of this build yet"))
}
