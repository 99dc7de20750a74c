//! Runs an installed HOTPANTS executable with options derived from the images, and reads its
//! results back (like STDPipe's `run_hotpants`).
//!
//! ```
//! use hotpants_sys::{derive_options, Convolve, HotpantsInputs, HotpantsParams, ImageInput};
//! use ndarray::Array2;
//!
//! # fn main() -> Result<(), hotpants_sys::HotpantsError> {
//! let science = Array2::<f32>::from_shape_fn((64, 64), |(y, x)| 100.0 + ((x * 7 + y * 3) % 5) as f32);
//! let template = science.clone();
//! // Science FWHM 5 px, template 3 px: s = sqrt(25 - 9) / 2.35 = 1.702 px.
//! let inputs = HotpantsInputs::new(
//!     ImageInput::new(science.view(), 5.0).with_gain(2.0).with_saturation(50_000.0),
//!     ImageInput::new(template.view(), 3.0).with_gain(1.5).with_saturation(40_000.0),
//! )
//! .with_stamps(vec![(10.0, 20.0)]);
//! let opts = derive_options(&inputs, &HotpantsParams::default())?;
//! assert_eq!(opts.convolve, Convolve::Template); // the sharper template is convolved
//! assert!((opts.sigma_match - 1.7021).abs() < 1e-3);
//! assert_eq!(opts.kernel_half_width, 13); // ceil(2.5 * 5)
//! assert_eq!(opts.substamp_half_width, 20); // ceil(1.5 * 13)
//!
//! let argv = opts.to_args();
//! let ng = argv.iter().position(|a| a == "-ng").unwrap();
//! assert_eq!(argv[ng..ng + 8], ["-ng", "3", "6", "0.8511", "4", "1.7021", "2", "3.4043"]);
//! assert!(argv.windows(2).any(|w| w == ["-iu", "50000"]));
//! assert!(argv.windows(2).any(|w| w == ["-c", "t"]));
//! // Stamp centres go 1-based into the -ssf file.
//! assert_eq!(opts.stamp_file_text(), "11.000 21.000\n");
//! # Ok(())
//! # }
//! ```
//!
//! Running it is one call, [`run_hotpants`], which needs an executable (explicit path,
//! `$HOTPANTS`, or `hotpants` on `PATH`; see [`find_executable`]).
//!
//! # Method
//!
//! HOTPANTS (Becker 2015, ascl:1504.004) implements the Alard & Lupton (1998, ApJ 503, 325)
//! image subtraction with Alard's (2000, A&AS 144, 363) spatially varying kernel: the kernel
//! is a sum of Gaussians times polynomials (their eq. 2), `exp(-(u^2+v^2)/(2 s_g^2)) u^i v^j`,
//! fitted by linear least squares on stamps around stars, with a polynomial background. The
//! options are derived as in ALGORITHMS.md section 6; see [`derive_options`].
//!
//! # Conventions
//!
//! * Arrays are `[y, x]`, 0-based (pixel (0,0) centre at (0.0, 0.0)); the stamp file HOTPANTS
//!   reads is 1-based (FITS), converted here.
//! * Images in ADU, noise maps are RMS (not variance), masks `true` = bad. Non-finite input
//!   pixels are masked and replaced by the image median before HOTPANTS sees them.
//! * The difference is on the science image's flux scale by default ([`Normalize::Image`],
//!   `-n i`; HOTPANTS's own default is the template's).
//! * Masked output pixels hold 0 in `diff`, `noise` and `scaled` (check `mask`).
//!
//! # Boundary
//!
//! This crate is the only place diffim talks to a foreign program. Every failure of the
//! process is a typed [`HotpantsError`] carrying the end of HOTPANTS's stderr: not found,
//! cannot start, non-zero exit, killed by a signal, timeout, missing or unreadable output.
//! HOTPANTS runs in a private temporary directory (removed afterwards unless
//! [`HotpantsParams::keep_dir`]), as its current directory, with relative file names.

mod diagnostics;
mod error;
mod options;
mod run;
#[doc(hidden)]
pub mod test_support;

pub use diagnostics::{Diagnostics, KeywordValue, RegionDiagnostics, is_hotpants_keyword};
pub use error::{HotpantsError, STDERR_TAIL_BYTES};
pub use options::{
    Convolve, DerivedOptions, ExtraArg, FWHM_PER_SIGMA, HotpantsInputs, HotpantsParams, ImageInput,
    KERNEL_HALF_WIDTH_PER_FWHM, LimitSource, MAX_KERNEL_HALF_WIDTH, MIN_KERNEL_HALF_WIDTH,
    Normalize, RESERVED_FLAGS, SUBSTAMP_PER_KERNEL, SideOptions, derive_options, files, fmt_num,
};
pub use run::{
    FLAG_OUTPUT_ISBAD, HotpantsResult, find_executable, resolve_executable, run_hotpants,
};

#[cfg(test)]
mod tests;
