//! ZOGY proper image subtraction (Zackay, Ofek & Gal-Yam 2016, ApJ 830, 27) and proper
//! coaddition (Zackay & Ofek 2017, ApJ 836, 187). Pure maths: arrays and parameter structs in,
//! a result struct out; no I/O.
//!
//! ```
//! use diffim_core::psf::gaussian_stamp;
//! use ndarray::{Array2, s};
//! use zogy_core::{BetaMode, ZogyInputs, ZogyParams, zogy};
//!
//! // A blank reference, and a new image with one point source of flux 500 at (40, 30);
//! // a deterministic pseudo-noise of RMS ~1 keeps the example self-contained.
//! let (pn, pr) = (gaussian_stamp(21, 4.0, 0.0, 0.0), gaussian_stamp(21, 3.0, 0.0, 0.0));
//! let noise = |y: usize, x: usize, k: usize| (((x * 7919 + y * 104_729 + k * 13) % 1009) as f32 / 1009.0 - 0.5) * 3.46;
//! let reference = Array2::from_shape_fn((64, 80), |(y, x)| noise(y, x, 1));
//! let mut new = Array2::from_shape_fn((64, 80), |(y, x)| noise(y, x, 2));
//! new.slice_mut(s![20..41, 30..51]).zip_mut_with(&pn, |a, p| *a += 500.0 * *p as f32);
//!
//! let inputs = ZogyInputs { sigma_new: Some(1.0), sigma_ref: Some(1.0), ..ZogyInputs::new(new.view(), reference.view(), &pn, &pr) };
//! let params = ZogyParams { beta: BetaMode::Fixed(1.0), fit_offset: false, ..Default::default() };
//! let res = zogy(&inputs, &params)?;
//! assert!((res.flux[[30, 40]] - 500.0).abs() < 20.0);          // flux = S / F_S (eqs. 41-43)
//! assert!(res.scorr[[30, 40]] > 20.0);                         // a strong detection
//! assert!((res.psf_d.sum() - 1.0).abs() < 1e-9);               // P_D has unit sum
//! # Ok::<(), zogy_core::ZogyError>(())
//! ```
//!
//! # Conventions
//! - Images are `ArrayView2<f32>` indexed `[y, x]`, pixel `(0, 0)` centred at `(0.0, 0.0)`;
//!   masks `true` = bad; noise maps are RMS. Inputs must be aligned and background-subtracted.
//! - PSF stamps: odd sides, centre at the middle pixel; normalised to unit sum on use
//!   ([`PsfProvider`]: a constant `Array2<f64>` or an [`FnPsf`] closure).
//! - FFTs: [`diffim_core::fft::Fft2`] in **`f32`** (half the memory traffic of `f64`; the
//!   element-wise filter arithmetic is done in `f64`). Forward unnormalised, inverse applies
//!   `1/(ny nx)`. With this convention `D` has unit variance for white noise of RMS
//!   `sigma_n`, `sigma_r`, and `F_S = (1/N_pix) sum_k F_n^2 F_r^2 |P_n|^2 |P_r|^2 / den` (eq. 42),
//!   summed over the full spectrum (the half spectrum with weights 1/2/1).
//! - Zero points: `F_r` = [`ZogyParams::f_ref`] (1), `F_n = beta F_r`.
//! - Units: `D` is in units of its own noise; `S` in flux x `F_S`; `Scorr` in sigmas;
//!   `flux = S / F_S` is the PSF-photometry flux of a point source in the **reference's**
//!   units (`F_r = 1`), i.e. new-image counts divided by `beta`; `flux_err = sqrt(V_S) / F_S`.
//!
//! # Equations (Zackay, Ofek & Gal-Yam 2016)
//! - `den = sigma_n^2 F_r^2 |P_r|^2 + sigma_r^2 F_n^2 |P_n|^2`, floored at
//!   [`ZogyParams::den_floor`] x its DC value.
//! - `D-hat = (F_r P_r N - F_n P_n R) / sqrt(den)` (eq. 13); `F_D = F_r F_n /
//!   sqrt(sigma_n^2 F_r^2 + sigma_r^2 F_n^2)` (eq. 15); `P_D-hat = F_r F_n P_r P_n / (F_D sqrt(den))` (eq. 14).
//! - `S-hat = F_D D-hat conj(P_D-hat) = k_n N - k_r R` (eq. 17) with `k_n-hat = F_n F_r^2
//!   conj(P_n) |P_r|^2 / den`, `k_r-hat = F_r F_n^2 conj(P_r) |P_n|^2 / den` (eqs. 26-27): **`F_D`
//!   included** (a known bug elsewhere omits it).
//! - `V_S = V_n (x) k_n^2 + V_r (x) k_r^2` with per-pixel variances *including source noise*
//!   (eqs. 28-29), plus `V_ast = sigma_x^2 (dS_n/dx)^2 + sigma_y^2 (dS_n/dy)^2` and the same for
//!   `S_r` (eqs. 30-31); `Scorr = S / sqrt(V_S + V_ast)` (eq. 25).
//! - `flux = S / F_S`, `F_S = sum F_n^2 F_r^2 |P_n|^2 |P_r|^2 / den` (eqs. 41-43).
//!
//! # Cost
//! Full-size `f32` FFTs per tile: 6 (forward N, R, P_n, P_r; inverse D, S), 11 with noise maps
//! (+ forward V_n, V_r, k_n^2, k_r^2, one inverse), 12 with astrometric noise or the PSF-error
//! term (+ inverse S_r; `S_n = S + S_r`, and the gradients of both come from a 4th-order
//! finite-difference stencil in real space), 13 with the PSF-wing term (+ inverse of
//! `G (x) S_r`, [`ZogyParams::psf_wing_error`]). The PSF and kernel stamps are transformed with
//! [`diffim_core::fft::Fft2::forward_stamp`] at about half the cost of a full transform. The
//! beta/shift fit uses PSF photometry in real space (no full-size FFT).
//! Spatially varying PSFs are handled with overlapping tiles ([`ZogyParams::tile_size`]),
//! blended with cos^2 weights that sum to exactly one, so that `Scorr` has no seams.
//!
//! # Proper coaddition
//! [`proper_coadd`]: `R-hat = sum_j (F_j/sigma_j^2) conj(P_j) M_j / sqrt(sum_j F_j^2/sigma_j^2
//! |P_j|^2)`, `P_R-hat ~ sqrt(sum_j F_j^2/sigma_j^2 |P_j|^2)`, `F_R = sqrt(sum_j F_j^2/sigma_j^2)`
//! (Zackay & Ofek 2017, eqs. 7-9). `2 J + 1` full-size FFTs for `J` images.

mod coadd;
mod cosmic;
mod engine;
mod error;
mod fluxfit;
pub mod masks;
mod params;
mod prep;
mod psf;
mod subtract;

pub use coadd::{CoaddImage, CoaddParams, CoaddResult, proper_coadd};
pub use error::ZogyError;
pub use params::{BetaMode, ZogyDiagnostics, ZogyInputs, ZogyParams, ZogyResult};
pub use psf::{FnPsf, PsfProvider, remove_pedestal};
pub use subtract::zogy;

/// The smallest odd 7-smooth integer `>= n` (odd FFT grids have no Nyquist bin, so phase
/// ramps and real kernels stay exactly real).
pub fn odd_fast_len(n: usize) -> usize {
    let mut m = diffim_core::fft::next_smooth_len(n.max(1));
    while m % 2 == 0 {
        m = diffim_core::fft::next_smooth_len(m + 1);
    }
    m
}
