//! Shared numerical conventions of diffim, defined once and pinned by tests.
//!
//! ```
//! use diffim_core::{fft::Fft2, psf::embed_psf};
//! use ndarray::Array2;
//!
//! // A unit delta PSF embedded with its centre at (0,0): convolution leaves the image unchanged.
//! let mut psf = Array2::<f64>::zeros((5, 5));
//! psf[[2, 2]] = 1.0;
//! let image = Array2::from_shape_fn((16, 20), |(y, x)| (y * 20 + x) as f64);
//! let fft = Fft2::<f64>::new(16, 20);
//! let mut spec = fft.forward(&image.view());
//! let kspec = fft.forward(&embed_psf(&psf.view(), 16, 20).view());
//! spec.zip_mut_with(&kspec, |a, b| *a *= *b);
//! let back = fft.inverse(spec);
//! assert!((back[[3, 7]] - image[[3, 7]]).abs() < 1e-9);
//! ```
//!
//! # Conventions (the one place they are written down)
//!
//! * **Axis order.** Images are `ndarray::Array2` indexed `[row, col]` = `[y, x]`.
//! * **Pixel origin.** Pixel `(0, 0)` has its centre at coordinate `(0.0, 0.0)`; pixel `p`
//!   covers `[p - 0.5, p + 0.5)`. FITS pixel `p` (1-based) is our `p - 1`, CRPIX included.
//! * **PSF stamps** have odd sides, unit sum and their centre at the middle pixel
//!   `(h/2, w/2)`. Before an FFT a stamp is embedded in a full-size array and rolled so that its
//!   centre sits at index `(0, 0)` ([`psf::embed_psf`]).
//! * **FFT normalisation.** [`fft::Fft2::forward`] is unnormalised; [`fft::Fft2::inverse`]
//!   applies `1/(ny*nx)`, so `inverse(forward(x)) == x` and the product of two spectra
//!   inverts to their circular convolution.
//! * **Masks.** `true` = bad pixel. NaN/Inf input pixels are masked
//!   ([`mask::finite_mask`]), never propagated silently.
//! * **Real test data** is found by [`testdata::real_data`]: `$DIFFIM_DATA`, else
//!   `data/real/`; missing files fail under `CI=true`.
//! * **Noise maps** are per-pixel RMS (standard deviation), not variance, unless a name says
//!   `var`.

pub mod fft;
pub mod mask;
pub mod mem;
pub mod psf;
pub mod stats;
pub mod testdata;
