//! PSF models for difference imaging: fitted elliptical Gaussian and Moffat profiles, a
//! constant empirical PSF, and the spatially varying Karhunen-Loeve (KL) model of
//! Lauer (2002) as used by ProperImage (Sánchez et al. 2019).
//!
//! ```
//! use psf_kl::{KlParams, KlPsf, PsfModel, StarSet};
//! use diffim_core::psf::gaussian_stamp;
//!
//! // 49 stars on a 7x7 grid of a 200x200 image; the FWHM grows from 3 to 5 px with x.
//! let mut stamps = Vec::new();
//! let mut pos = Vec::new();
//! for j in 0..7 {
//!     for i in 0..7 {
//!         let (x, y) = (i as f64 * 199.0 / 6.0, j as f64 * 199.0 / 6.0);
//!         stamps.push(gaussian_stamp(21, 3.0 + 2.0 * x / 199.0, 0.0, 0.0));
//!         pos.push((x, y));
//!     }
//! }
//! let stars = StarSet::from_stamps(stamps, &pos, (200, 200));
//! let model = KlPsf::fit(&stars, &KlParams::default())?;
//! let p = model.psf_at(150.0, 80.0);
//! assert!((p.sum() - 1.0).abs() < 1e-12); // unit sum
//! let truth = gaussian_stamp(21, 3.0 + 2.0 * 150.0 / 199.0, 0.0, 0.0);
//! let err = (&p - &truth).mapv(|v| v * v).sum().sqrt() / truth.mapv(|v| v * v).sum().sqrt();
//! assert!(err < 0.01, "relative L2 error {err}");
//! # Ok::<(), psf_kl::PsfError>(())
//! ```
//!
//! # Pipeline
//! 1. [`select_stars`]: isolated, unsaturated, unmasked stars with S/N in a band and a
//!    non-outlying shape are cut into odd stamps of side `~ 5 FWHM`, background-subtracted
//!    (the `Background` map), re-centred to sub-pixel accuracy (windowed centroid +
//!    Lanczos-3 resampling, centroid re-measured) and normalised to unit sum -> [`StarSet`].
//! 2. A model: [`KlPsf::fit`] (varying), [`EmpiricalPsf`], [`GaussianPsf`], [`MoffatPsf`]
//!    (constant), all behind [`PsfModel`].
//!    On faint/sparse star sets [`KlPsf::fit`] first averages the stamps' wings in elliptical
//!    annuli where the mean PSF is below the noise ([`KlParams::wing_snr`]), so that a 2-3
//!    element model with low-degree fields survives the noise floor.
//! 3. [`convolve_varying`] convolves an image with the varying PSF
//!    (`sum_i (image * a_i) conv PSF_i`: `n_basis` forward FFTs and one inverse;
//!    [`VaryingConvolver`] keeps the basis spectra for repeated use), and [`estimate_psf`] does steps 1-2 in one call
//!    from an image (background, detection, selection, KL fit).
//!
//! # Conventions
//! * Arrays are `[y, x]`; pixel `(0, 0)` has its centre at `(0.0, 0.0)`.
//! * Stamps are `Array2<f64>`, square with an odd side, unit sum, PSF centre at the middle
//!   pixel `(size/2, size/2)`.
//! * FWHM (pixels) is the geometric mean of the major- and minor-axis FWHMs of the best-fitting
//!   point-sampled elliptical Gaussian ([`profile::measure_fwhm`]).
//! * KL coefficient fields are 2-D polynomials in coordinates scaled to `[-1, 1]`
//!   ([`poly::CoordScale`]: `u = (x - (nx-1)/2) / ((nx-1)/2)`), term order
//!   `1, u, v, u^2, uv, v^2, ...` ([`poly::monomials`]).
//! * FFTs follow `diffim_core::fft` (forward unnormalised, inverse `1/N`).
//! * No file I/O: the CLI turns a model into FITS via [`KlPsf::to_parts`] /
//!   [`KlPsf::from_parts`].
//!
//! # References
//! * T. R. Lauer, "Deconvolution with a spatially-variant PSF", Proc. SPIE 4847 (2002):
//!   KL decomposition of star stamps, eq. 1-4 (basis from the stamp covariance, coefficients
//!   as low-order polynomials of position).
//! * B. Sánchez et al., "ProperImage: a Python package for image coaddition and subtraction",
//!   Astronomy and Computing 28 (2019) 100305: `inf_loss` basis truncation and degree-3
//!   coefficient polynomials.

// `!(x > 0.0)` is deliberate throughout: it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord, clippy::nonminimal_bool)]
// The errors carry the full per-reason rejection counts by value (a few dozen bytes, on the
// cold path) so callers can match on them directly.
#![allow(clippy::result_large_err)]

mod convolve;
mod empirical;
mod error;
mod estimate;
mod grid;
mod kl;
mod lm;
pub mod poly;
pub mod profile;
mod select;
mod stars;

pub use convolve::{VaryingConvolver, convolve_varying};
pub use empirical::{Combine, EmpiricalPsf};
pub use error::{PsfError, RejectionSummary};
pub use estimate::{PsfEstimate, PsfEstimateParams, estimate_psf};
pub use grid::psf_grid_image;
pub use kl::{KlDiagnostics, KlParams, KlPsf, KlPsfParts};
pub use profile::{GaussianPsf, MoffatPsf};
pub use select::{SelectParams, select_stars};
pub use stars::{Star, StarSet};

use ndarray::Array2;

/// A PSF model: a stamp at any image position.
pub trait PsfModel: Send + Sync {
    /// The PSF at pixel position `(x, y)`: odd square stamp, unit sum, centred at the
    /// middle pixel.
    fn psf_at(&self, x: f64, y: f64) -> Array2<f64>;
    /// Side of the stamps returned by [`PsfModel::psf_at`] (odd).
    fn stamp_size(&self) -> usize;
    /// FWHM (pixels) of the PSF at `(x, y)` (see the crate conventions).
    fn fwhm_at(&self, x: f64, y: f64) -> f64;
}
