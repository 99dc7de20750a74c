//! # diffim
//!
//! Difference imaging for time-domain astronomy, in one Rust workspace. This crate is the
//! facade: every member crate is re-exported as a module, together with the `ndarray` version
//! they all use, so downstream code never meets two copies of the array type.
//!
//! | module | job |
//! |---|---|
//! | [`core`] | conventions, FFTs, robust statistics |
//! | [`fits`] | FITS images, headers, masks, multi-extension files |
//! | [`wcs`] | WCS, pixel grids, reprojection |
//! | [`extract`] | background, noise model, detection, photometry |
//! | [`psf`] | PSF models |
//! | [`sfft`] | SFFT subtraction |
//! | [`zogy`] | ZOGY subtraction and proper coaddition |
//! | [`hotpants`] | running an installed HOTPANTS |
//! | [`survey`] | survey templates |
//! | [`cutout`] | postage stamps |
//! | [`sim`] | synthetic image pairs with known truth |

pub use ndarray;

pub use cutout;
pub use diffim_core as core;
pub use fits_io as fits;
pub use hotpants_sys as hotpants;
pub use psf_kl as psf;
pub use sfft_core as sfft;
pub use sky_sim as sim;
pub use source_extract as extract;
pub use survey_fetch as survey;
pub use wcs_grid as wcs;
pub use zogy_core as zogy;

pub mod pipeline;
pub mod subtract;
