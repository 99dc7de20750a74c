//! Seeded synthetic science/template pairs with known truth, for tests, benchmarks and the demo.
//!
//! ```
//! use sky_sim::{simulate, SimConfig};
//!
//! let cfg = SimConfig::default().with_size(128, 96).with_seed(7);
//! let pair = simulate(&cfg)?;
//! assert_eq!(pair.science.dim(), (128, 96));
//! // Same seed, same bytes.
//! assert_eq!(simulate(&cfg)?.science, pair.science);
//! // The true PSF: odd, unit sum, centred.
//! let psf = pair.science_psf_at(40.0, 60.0, 15);
//! assert!((psf.sum() - 1.0).abs() < 1e-12);
//! // Every transient's S/N is flux / sigma_flux.
//! for t in &pair.truth.transients {
//!     let snr = t.flux / pair.science_sigma_flux(t.x, t.y);
//!     assert!((snr - t.snr).abs() < 1e-9 * t.snr);
//! }
//! # Ok::<(), sky_sim::SimError>(())
//! ```
//!
//! # The model
//! Both images share one star field (uniform positions, fluxes drawn from a power law
//! `dN/dF ~ F^-index` between `star_flux_min` and `star_flux_max`, in template ADU). The
//! science image holds every star with flux `F * flux_scale(x, y)`, plus transients; the
//! template holds the stars only, shifted by `-offset`. Each image has its own PSF
//! ([`PsfConfig`]: Gaussian or Moffat, elliptical, with FWHM, ellipticity and angle varying
//! smoothly across the field, see [`Smooth`]), sky with a gradient, gain, read noise and
//! saturation level ([`ImageConfig`]).
//!
//! Pixel value = Poisson(gain * (sky + sources)) / gain + (read_noise / gain) * N(0, 1), then
//! values at or above the saturation level are set to it and masked. The noise maps are the
//! true RMS `sqrt((sky + sources) / gain + (read_noise / gain)^2)`.
//!
//! # Conventions
//! - Units: pixel values, sky, fluxes and saturation in ADU; gain in e-/ADU; read noise in
//!   electrons (the FITS `RDNOISE` convention).
//! - Arrays are `[y, x]`; pixel `(0, 0)` is centred at coordinate `(0.0, 0.0)`; FITS headers
//!   are 1-based (`CRPIX = ours + 1`). Truth positions are science-image pixel coordinates.
//! - PSF stamps are `Array2<f64>`, odd-sized, unit-sum, centred at the middle pixel.
//! - No FFTs are used.
//!
//! # Rendering
//! A star is rendered into a square box of half-width `ceil(r)` around its nearest pixel,
//! where `r` is the radius enclosing `1 - 1e-5` of a Gaussian's flux or `1 - 1e-3` (99.9 %)
//! of a Moffat's (`r = alpha_major sqrt(1000^(1/(beta-1)) - 1)`), capped at
//! [`SimConfig::max_render_radius`]. Each pixel holds the profile integrated over the pixel
//! by mid-point sub-sampling: `subsample x subsample` samples in every pixel for a Gaussian
//! (an exact multiplicative recurrence replaces the `exp` calls); for a Moffat that many
//! within 1.5 major-axis FWHM of the centre, 3 x 3 out to 2.5 FWHM and the centre value
//! beyond. The box is **normalised to the star's full flux**: the truth flux is exactly the sum of what was added to the image, and the wings
//! beyond the box (< 0.1 %) are absent. [`SimPair::science_psf_at`] uses the same pixel
//! integration, so a noiseless star cut out and normalised matches it to rounding.
//!
//! # Transient S/N
//! A transient's `snr` is the S/N of optimal PSF photometry against the science background:
//! `snr = flux / sigma_flux` with `sigma_flux^-2 = sum_i P_i^2 / var_i`, where `P` is the
//! rendered unit-sum PSF stamp at the transient and `var_i = sky_i / gain + (rn / gain)^2` the
//! background variance (the source's own Poisson noise excluded). See
//! [`SimPair::science_sigma_flux`].
//!
//! # Determinism
//! Every random choice comes from a ChaCha8 generator seeded from `(seed, purpose)`; the noise
//! of row `j` uses stream `j`, and stamps are summed in a fixed order, so a seed gives the
//! same bytes on every machine and with any number of rayon threads.
//!
//! # Presets
//! [`SimConfig::default`] (= [`SimConfig::constant_psf`]), [`SimConfig::varying_psf`],
//! [`SimConfig::sfft_issue`]; adjust with [`SimConfig::with_size`], [`SimConfig::with_seed`],
//! [`SimConfig::noiseless`] or by setting fields.

mod config;
mod header;
mod poisson;
mod psf;
mod sim;
mod truth;

pub use config::{ImageConfig, PsfConfig, PsfProfile, SimConfig, Smooth};
pub use psf::{LocalPsf, PixelStamp, RENDER_LOSS};
pub use sim::{SimPair, simulate};
pub use truth::{Transient, TrueStar, Truth};

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Image shape outside 16..=65536 on a side.
    #[error("image size {ny}x{nx} outside 16..=65536 per side")]
    InvalidSize {
        /// Rows requested.
        ny: usize,
        /// Columns requested.
        nx: usize,
    },
    /// A parameter is out of its range.
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Field name in [`SimConfig`].
        name: &'static str,
        /// The offending value (or the extreme of a field over the image).
        value: f64,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The transients could not all be placed away from edges, bright stars and each other.
    #[error("placed only {placed} of {requested} transients: field too crowded for the separation")]
    TransientPlacement {
        /// Transients placed before giving up.
        placed: usize,
        /// Transients requested.
        requested: usize,
    },
    /// File I/O failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// CSV reading or writing failed.
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    /// A truth CSV row is inconsistent.
    #[error("truth CSV line {line}: {reason}")]
    CsvRow {
        /// 1-based line number (the header is line 1).
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
}
