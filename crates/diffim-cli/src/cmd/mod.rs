//! One module per subcommand. Each has `Args` (clap) and `run(&Args, &Ctx)`.

pub mod background;
pub mod batch;
pub mod coadd;
pub mod cutouts;
pub mod demo;
pub mod detect;
pub mod pipeline;
pub mod psf;
pub mod reproject;
pub mod subtract;
pub mod template;
pub mod wcs;
