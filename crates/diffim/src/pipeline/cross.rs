//! Local cross-convolution of ZOGY's inputs around a candidate: the planes of its adjust fit.
//!
//! Over a window of the image (a cutout), with the PSF stamps evaluated at the candidate:
//! - `image` = `N (x) P_r` (science convolved with the template PSF),
//! - `convolved` = `beta R (x) P_n` (flux-scaled template convolved with the science PSF,
//!   moved by ZOGY's fitted shift),
//! - `err` = `sqrt(V_n (x) P_r^2 + beta^2 V_r (x) P_n^2)`, the per-pixel RMS of
//!   `image - convolved` (V = noise RMS squared, P^2 = squared stamp).
//!
//! Both planes have the PSF `P_n (x) P_r`, so a small shift and rescale of `convolved`
//! explains a misregistration dipole and not a new source, as for SFFT's convolved template.
//! The convolution is direct (window plus a margin of half a stamp): a 31x31 window with
//! 15x15 stamps costs about 0.2 M multiply-adds per plane.

use ndarray::{Array2, ArrayView2};

use crate::subtract::CrossConvolution;

/// The cross-convolved planes of one window (see the module docs), all in science ADU, NaN
/// where a contributing input pixel is outside the image or not finite.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossWindow {
    /// `N (x) P_r`.
    pub image: Array2<f32>,
    /// `beta R (x) P_n`, moved by ZOGY's shift.
    pub convolved: Array2<f32>,
    /// `sqrt(V_n (x) P_r^2 + beta^2 V_r (x) P_n^2)`.
    pub err: Array2<f32>,
    /// Pixel-to-pixel correlation of the noise of `image - convolved`: `c = sum over lags of
    /// rho^2` (1 for white noise). A sum of `n` squared normalised residuals then has mean `n`
    /// and variance `2 c n`, and is distributed about as `c chi2(n / c)`
    /// (Satterthwaite), which is how the pipeline turns the adjust fit's chi2 into a p-value.
    pub noise_correlation: f64,
}

/// The cross-convolved planes of the `size x size` window whose pixel `(0, 0)` is the parent
/// pixel `(x0, y0)` (may be outside the image), with the PSFs evaluated at `(x, y)`.
pub fn cross_window(
    cross: &CrossConvolution,
    x: f64,
    y: f64,
    x0: i64,
    y0: i64,
    size: usize,
) -> CrossWindow {
    let pn = cross.science_psf.psf_at(x, y);
    let pr = cross.template_psf.psf_at(x, y);
    let (sx, sy) = cross.shift;
    let pn_shifted = if sx != 0.0 || sy != 0.0 {
        shift_stamp(&pn, sx, sy)
    } else {
        pn.clone()
    };
    let sq = |a: &Array2<f64>| a.mapv(|v| v * v);
    let beta = cross.beta;
    let (id, var) = (|v: f32| f64::from(v), |v: f32| f64::from(v) * f64::from(v));
    let window = |img: &Array2<f32>, k: &Array2<f64>, f: fn(f32) -> f64| {
        convolve_window(&img.view(), &k.view(), x0, y0, size, f)
    };
    let image = window(&cross.science, &pr, id);
    let conv = window(&cross.template, &pn_shifted, id);
    let vn_c = window(&cross.science_noise, &sq(&pr), var);
    let vr_c = window(&cross.template_noise, &sq(&pn), var);
    let err = ndarray::Zip::from(&vn_c)
        .and(&vr_c)
        .map_collect(|&a, &b| (a + beta * beta * b).sqrt() as f32);
    // Local noise levels (medians over the window) weight the two autocorrelations.
    let med = |a: &Array2<f64>| {
        diffim_core::stats::median(a.iter().copied().filter(|v| v.is_finite())).unwrap_or(0.0)
    };
    let (wn, wr) = (
        med(&vn_c) / (sq(&pr).sum()).max(1e-300),
        beta * beta * med(&vr_c) / (sq(&pn).sum()).max(1e-300),
    );
    CrossWindow {
        image: image.mapv(|v| v as f32),
        convolved: conv.mapv(|v| (beta * v) as f32),
        err,
        noise_correlation: noise_correlation(&pr, wn, &pn, wr),
    }
}

/// `out[j, i] = sum_{a, b} f(img[y0 + j - (a - h), x0 + i - (b - h)]) k[a, b]` (a "same"
/// convolution of `f(img)` restricted to the window, `f` applied on the fly: no full-image
/// temporaries); NaN where a contributing pixel is outside `img` or not finite.
pub(crate) fn convolve_window(
    img: &ArrayView2<f32>,
    k: &ArrayView2<f64>,
    x0: i64,
    y0: i64,
    size: usize,
    f: fn(f32) -> f64,
) -> Array2<f64> {
    let (ny, nx) = (img.nrows() as i64, img.ncols() as i64);
    let (kh, kw) = k.dim();
    let (hy, hx) = ((kh / 2) as i64, (kw / 2) as i64);
    Array2::from_shape_fn((size, size), |(j, i)| {
        let (py, px) = (y0 + j as i64, x0 + i as i64);
        if py - hy < 0 || px - hx < 0 || py + hy >= ny || px + hx >= nx {
            return f64::NAN;
        }
        let mut s = 0.0;
        for a in 0..kh {
            let yy = (py + hy - a as i64) as usize;
            for b in 0..kw {
                let xx = (px + hx - b as i64) as usize;
                s += f(img[[yy, xx]]) * k[[a, b]];
            }
        }
        s
    })
}

/// Moves a stamp by `(+dx, +dy)` pixels (Fourier phase ramp on the zero-padded odd grid
/// `2 side + 1`, computed directly: [`diffim_core::psf::shift_stamp`]).
fn shift_stamp(st: &Array2<f64>, dx: f64, dy: f64) -> Array2<f64> {
    let (h, w) = st.dim();
    diffim_core::psf::shift_stamp(st, dy, dx, (2 * h + 1, 2 * w + 1))
}

/// `sum over lags of rho^2` for noise with covariance `wa A_a + wb A_b` (A = autocorrelation
/// of a stamp), normalised at lag 0.
fn noise_correlation(a: &Array2<f64>, wa: f64, b: &Array2<f64>, wb: f64) -> f64 {
    let l = a.nrows().max(a.ncols()).max(b.nrows()).max(b.ncols());
    let n = 2 * l - 1;
    let mut cov = Array2::<f64>::zeros((n, n));
    for (st, w) in [(a, wa), (b, wb)] {
        for ((y1, x1), v1) in st.indexed_iter() {
            for ((y2, x2), v2) in st.indexed_iter() {
                let dy = y2 as i64 - y1 as i64 + l as i64 - 1;
                let dx = x2 as i64 - x1 as i64 + l as i64 - 1;
                cov[[dy as usize, dx as usize]] += w * v1 * v2;
            }
        }
    }
    let c0 = cov[[l - 1, l - 1]];
    if !(c0 > 0.0 && c0.is_finite()) {
        return 1.0;
    }
    cov.iter().map(|c| (c / c0).powi(2)).sum::<f64>().max(1.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use diffim_core::psf::gaussian_stamp;

    #[test]
    fn window_matches_full_image_convolution() {
        let img = Array2::from_shape_fn((40, 50), |(y, x)| {
            ((y * 7 + x * 13) % 17) as f32 + 0.1 * x as f32
        });
        let k = gaussian_stamp(7, 2.5, 0.2, -0.3);
        let full = diffim_core::fft::convolve_same(&img.mapv(f64::from).view(), &k.view());
        let w = convolve_window(&img.view(), &k.view(), 10, 5, 11, f64::from);
        for j in 0..11 {
            for i in 0..11 {
                let d = (w[[j, i]] - full[[5 + j, 10 + i]]).abs();
                assert!(
                    d < 1e-9,
                    "({j},{i}) {} vs {}",
                    w[[j, i]],
                    full[[5 + j, 10 + i]]
                );
            }
        }
        // Too close to the edge for the stamp: undefined.
        let e = convolve_window(&img.view(), &k.view(), 1, 1, 5, f64::from);
        assert!(e[[1, 4]].is_nan() && e[[4, 1]].is_nan());
        assert!((e[[2, 2]] - full[[3, 3]]).abs() < 1e-9);
    }

    #[test]
    fn stamp_shift_moves_the_centroid() {
        let st = gaussian_stamp(15, 3.0, 0.0, 0.0);
        let s = shift_stamp(&st, 0.3, -0.45);
        let (mut cx, mut cy) = (0.0, 0.0);
        for ((y, x), v) in s.indexed_iter() {
            cx += v * x as f64;
            cy += v * y as f64;
        }
        let sum = s.sum();
        assert!((sum - 1.0).abs() < 1e-6, "{sum}");
        assert!(
            (cx / sum - 7.3).abs() < 1e-3 && (cy / sum - 6.55).abs() < 1e-3,
            "{cx} {cy}"
        );
    }

    #[test]
    fn white_noise_has_no_correlation_and_a_gaussian_has_the_analytic_one() {
        let delta = Array2::from_shape_fn((3, 3), |(y, x)| f64::from(u8::from(y == 1 && x == 1)));
        assert!((noise_correlation(&delta, 1.0, &delta, 1.0) - 1.0).abs() < 1e-12);
        // Gaussian sigma s: rho(d) = exp(-d^2 / (4 s^2)), sum of rho^2 = 2 pi s^2 (continuum);
        // the stamp is integrated over pixels, which adds 1/12 to s^2.
        let s = 2.0;
        let g = gaussian_stamp(31, s * 2.354_820_045, 0.0, 0.0);
        let c = noise_correlation(&g, 1.0, &g, 0.0);
        let want = 2.0 * std::f64::consts::PI * (s * s + 1.0 / 12.0);
        assert!((c / want - 1.0).abs() < 0.01, "{c} vs {want}");
    }
}
