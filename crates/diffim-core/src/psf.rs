//! PSF stamp conventions: odd sides, unit sum, centre at the middle pixel; embedding for FFTs.

use ndarray::{Array2, ArrayView2};
use num_traits::Float;

/// Embeds an odd-sized stamp (centre at its middle pixel) in a zero `(ny, nx)` array, rolled so
/// that the stamp centre lands at index `(0, 0)` (negative offsets wrap to the far edges).
/// The FFT of the result is the stamp's transfer function with zero phase at its centre.
///
/// # Panics
/// If a side of the stamp is even or larger than the target (a caller bug).
pub fn embed_psf<T: Float>(stamp: &ArrayView2<T>, ny: usize, nx: usize) -> Array2<T> {
    let (h, w) = stamp.dim();
    assert!(
        h % 2 == 1 && w % 2 == 1,
        "embed_psf: stamp sides must be odd, got {h}x{w}"
    );
    assert!(
        h <= ny && w <= nx,
        "embed_psf: stamp {h}x{w} larger than target {ny}x{nx}"
    );
    let (cy, cx) = (h / 2, w / 2);
    let mut out = Array2::<T>::zeros((ny, nx));
    for ((j, i), &v) in stamp.indexed_iter() {
        let y = (j + ny - cy) % ny;
        let x = (i + nx - cx) % nx;
        out[[y, x]] = v;
    }
    out
}

/// Inverse of [`embed_psf`]: cuts an odd `(h, w)` stamp centred on index `(0, 0)` of a
/// wrapped full-size array (for example a kernel obtained by inverse FFT).
///
/// # Panics
/// If a side is even or larger than the array (a caller bug).
pub fn extract_centered<T: Float>(full: &ArrayView2<T>, h: usize, w: usize) -> Array2<T> {
    let (ny, nx) = full.dim();
    assert!(
        h % 2 == 1 && w % 2 == 1 && h <= ny && w <= nx,
        "extract_centered: bad stamp size"
    );
    let (cy, cx) = (h / 2, w / 2);
    Array2::from_shape_fn((h, w), |(j, i)| {
        full[[(j + ny - cy) % ny, (i + nx - cx) % nx]]
    })
}

/// Divides a stamp by its sum so that it has unit sum. Returns `None` when the sum is not a
/// finite non-zero number.
pub fn normalize_unit_sum<T: Float>(stamp: &mut Array2<T>) -> Option<T> {
    let s = stamp.iter().fold(T::zero(), |a, &b| a + b);
    if !s.is_finite() || s == T::zero() {
        return None;
    }
    stamp.mapv_inplace(|v| v / s);
    Some(s)
}

/// Unit-sum circular Gaussian stamp of the given FWHM (pixels), side `size` (odd), centred at
/// the middle pixel plus a sub-pixel offset `(dy, dx)`; pixel values are integrated over the
/// pixel area (9x9 sub-samples) so narrow PSFs keep the right flux distribution.
///
/// # Panics
/// If `size` is even (a caller bug).
pub fn gaussian_stamp(size: usize, fwhm: f64, dy: f64, dx: f64) -> Array2<f64> {
    assert!(size % 2 == 1, "gaussian_stamp: size must be odd");
    let sigma = fwhm / (8.0 * 2.0f64.ln()).sqrt();
    let c = (size / 2) as f64;
    let sub = 9;
    let mut st = Array2::from_shape_fn((size, size), |(j, i)| {
        let mut s = 0.0;
        for a in 0..sub {
            for b in 0..sub {
                let y = j as f64 - 0.5 + (a as f64 + 0.5) / sub as f64 - c - dy;
                let x = i as f64 - 0.5 + (b as f64 + 0.5) / sub as f64 - c - dx;
                s += (-(x * x + y * y) / (2.0 * sigma * sigma)).exp();
            }
        }
        s
    });
    normalize_unit_sum(&mut st);
    st
}

/// Shifts a stamp by `(dy, dx)` pixels exactly as a Fourier phase ramp on the zero-padded odd
/// grid `(ly, lx)` would (no Nyquist bin, so the result stays real and exact for band-limited
/// stamps), computed directly: the ramp is separable, and along an axis of grid length `l` it
/// is the convolution with the Dirichlet kernel `D(t) = sin(pi t) / (l sin(pi t / l))`, so the
/// shifted stamp is `S_y P S_x^T` with `S[i][j] = D(i - j - d)` (two small matrix products
/// instead of two 2-D FFTs and a plan).
///
/// # Panics
/// If a grid length is even or smaller than the stamp side (a caller bug).
pub fn shift_stamp(st: &Array2<f64>, dy: f64, dx: f64, (ly, lx): (usize, usize)) -> Array2<f64> {
    let (h, w) = st.dim();
    assert!(
        ly % 2 == 1 && lx % 2 == 1 && ly >= h && lx >= w,
        "shift_stamp: grid {ly}x{lx} must be odd and hold the {h}x{w} stamp"
    );
    let sy = shift_matrix(h, ly, dy);
    let sx = shift_matrix(w, lx, dx);
    sy.dot(st).dot(&sx.t())
}

/// `S[i][j] = D(i - j - d)` for an axis of `n` samples on an odd grid of length `l`.
fn shift_matrix(n: usize, l: usize, d: f64) -> Array2<f64> {
    let lf = l as f64;
    let pi = std::f64::consts::PI;
    // D depends on i - j only: one value per difference.
    let diag: Vec<f64> = (0..2 * n.max(1) - 1)
        .map(|k| {
            let t = k as f64 - (n as f64 - 1.0) - d;
            let den = lf * (pi * t / lf).sin();
            if den.abs() < 1e-12 {
                1.0
            } else {
                (pi * t).sin() / den
            }
        })
        .collect();
    Array2::from_shape_fn((n, n), |(i, j)| diag[i + n - 1 - j])
}

/// The smallest odd integer `>= v` (at least 1): stamp sides derived from a FWHM.
pub fn odd_at_least(v: f64) -> usize {
    let n = v.ceil().max(1.0) as usize;
    if n % 2 == 1 { n } else { n + 1 }
}

#[cfg(test)]
mod tests {
    /// The shift as the FFTs do it: phase ramp on the zero-padded odd grid.
    fn shift_by_fft(st: &Array2<f64>, dy: f64, dx: f64, ly: usize, lx: usize) -> Array2<f64> {
        use crate::fft::{Fft2, signed_freq};
        let (h, w) = st.dim();
        let fft = Fft2::<f64>::new(ly, lx);
        let mut spec = fft.forward(&embed_psf(&st.view(), ly, lx).view());
        let tau = std::f64::consts::TAU;
        for ((ky, kx), v) in spec.indexed_iter_mut() {
            let ph =
                -tau * (signed_freq(ky, ly) as f64 * dy / ly as f64 + kx as f64 * dx / lx as f64);
            *v *= num_complex::Complex::from_polar(1.0, ph);
        }
        extract_centered(&fft.inverse(spec).view(), h, w)
    }

    #[test]
    fn direct_shift_equals_fourier_phase_ramp() {
        let mut seed = 1u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        // Grids as zogy-core (odd fast length >= 2 side) and the pipeline (2 side + 1) use.
        for &(h, w, ly, lx) in &[
            (19, 19, 45, 45),
            (7, 11, 15, 23),
            (1, 5, 3, 11),
            (15, 15, 31, 31),
        ] {
            let st = Array2::from_shape_fn((h, w), |_| next());
            for &(dy, dx) in &[(0.0, 0.0), (0.3, -0.45), (-1.0, 0.999), (2.5, 0.1)] {
                let a = shift_stamp(&st, dy, dx, (ly, lx));
                let b = shift_by_fft(&st, dy, dx, ly, lx);
                let err = (&a - &b).mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v));
                assert!(
                    err < 1e-12,
                    "{h}x{w} shift ({dy}, {dx}): max difference {err}"
                );
            }
        }
        // A zero shift is the identity.
        let st = Array2::from_shape_fn((5, 5), |_| next());
        let err = (&shift_stamp(&st, 0.0, 0.0, (11, 11)) - &st)
            .mapv(f64::abs)
            .sum();
        assert!(err < 1e-12);
    }

    use super::*;
    use crate::fft::Fft2;

    #[test]
    fn embedded_centre_is_at_origin_and_roundtrips() {
        let st = Array2::from_shape_fn((5, 3), |(j, i)| (j * 3 + i) as f64);
        let e = embed_psf(&st.view(), 8, 9);
        assert_eq!(e[[0, 0]], st[[2, 1]]);
        assert_eq!(e[[7, 8]], st[[1, 0]]);
        assert_eq!(e[[2, 1]], st[[4, 2]]);
        assert_eq!(extract_centered(&e.view(), 5, 3), st);
    }

    #[test]
    fn symmetric_psf_has_real_transfer_function() {
        let st = gaussian_stamp(11, 3.0, 0.0, 0.0);
        assert!((st.sum() - 1.0).abs() < 1e-12);
        assert_eq!(st.dim(), (11, 11));
        let (cy, cx) = (5, 5);
        let max = st.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(st[[cy, cx]], max, "centre at the middle pixel");
        let spec = Fft2::<f64>::new(32, 32).forward(&embed_psf(&st.view(), 32, 32).view());
        let max_im = spec.iter().map(|c| c.im.abs()).fold(0.0, f64::max);
        assert!(max_im < 1e-12, "zero phase: max imaginary part {max_im}");
        assert!(
            (spec[[0, 0]].re - 1.0).abs() < 1e-12,
            "unit sum = unit DC gain"
        );
    }

    #[test]
    fn gaussian_stamp_has_requested_fwhm() {
        // Second moment of a well-sampled Gaussian: sigma^2 plus the variance of the 9-point
        // sub-pixel integration, (1 - 1/81)/12.
        let st = gaussian_stamp(41, 6.0, 0.0, 0.0);
        let c = 20.0;
        let m2: f64 = st
            .indexed_iter()
            .map(|((_, i), v)| v * (i as f64 - c).powi(2))
            .sum();
        let sigma = 6.0 / (8.0 * 2.0f64.ln()).sqrt();
        assert!(
            (m2 - sigma * sigma - (1.0 - 1.0 / 81.0) / 12.0).abs() < 1e-5,
            "m2 {m2}"
        );
        assert_eq!(odd_at_least(6.2), 7);
        assert_eq!(odd_at_least(7.0), 7);
        assert_eq!(odd_at_least(8.0), 9);
    }
}
