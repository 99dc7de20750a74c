//! Flux ratio `beta` and sub-pixel shift from matched PSF photometry of common stars.
//!
//! For every star, each image is fitted in a PSF-sized box with
//! `data = a P + b dP/dx + c dP/dy + bg` (weighted linear least squares, weights `1/var`),
//! the PSF first shifted (Fourier phase ramp) to the star's sub-pixel position and then to the
//! fitted offset (two passes). `beta = a_N / a_R` and the shift `(dx, dy)` are robust
//! (Tukey biweight, iteratively reweighted) means over the stars.

use crate::psf::{PsfProvider, checked_stamp};
use crate::{ZogyError, odd_fast_len};
use diffim_core::stats::{median, tukey_mean};
use ndarray::{Array2, ArrayView2, s};
use rayon::prelude::*;

/// One image's PSF fit of one star.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StarFit {
    pub a: f64,
    pub sa: f64,
    /// Fitted position (x, y).
    pub x: f64,
    pub y: f64,
}

/// Result of the robust fit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FluxFit {
    pub beta: f64,
    pub beta_err: f64,
    pub shift: (f64, f64),
    /// Star-to-star scatter of the shifts beyond their formal errors `(sigma_x, sigma_y)`:
    /// an estimate of the astrometric registration noise (ZOGY section 3.3).
    pub shift_scatter: (f64, f64),
    pub n_iter: usize,
    pub n_used: usize,
    pub n_kept: usize,
}

/// Shifts a stamp by `(dy, dx)` pixels (Fourier phase ramp on an odd zero-padded grid of at
/// least twice its side, computed directly: [`diffim_core::psf::shift_stamp`]).
pub(crate) fn shift_stamp(st: &Array2<f64>, dy: f64, dx: f64) -> Array2<f64> {
    let (h, w) = st.dim();
    diffim_core::psf::shift_stamp(st, dy, dx, (odd_fast_len(2 * h), odd_fast_len(2 * w)))
}

fn solve4(mut a: [[f64; 4]; 4], mut b: [f64; 4]) -> Option<([f64; 4], f64)> {
    // Gauss-Jordan on a symmetric positive definite 4x4; also returns (A^-1)[0][0].
    let mut inv = [[0.0; 4]; 4];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for c in 0..4 {
        let p = (c..4).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-300 {
            return None;
        }
        a.swap(c, p);
        b.swap(c, p);
        inv.swap(c, p);
        let d = a[c][c];
        for k in 0..4 {
            a[c][k] /= d;
            inv[c][k] /= d;
        }
        b[c] /= d;
        for r in 0..4 {
            if r != c {
                let f = a[r][c];
                for k in 0..4 {
                    a[r][k] -= f * a[c][k];
                    inv[r][k] -= f * inv[c][k];
                }
                b[r] -= f * b[c];
            }
        }
    }
    Some((b, inv[0][0]))
}

/// Weighted linear PSF fit of one star; `None` when the box leaves the image, touches a bad
/// pixel or the system is singular.
pub(crate) fn fit_star(
    img: &ArrayView2<f32>,
    noise: Option<&ArrayView2<f32>>,
    sigma: f64,
    bad: &ArrayView2<bool>,
    psf: &Array2<f64>,
    x: f64,
    y: f64,
) -> Option<StarFit> {
    let (ny, nx) = img.dim();
    let (h, w) = psf.dim();
    let (hy, hx) = (h / 2, w / 2);
    if !(x.is_finite() && y.is_finite()) {
        return None;
    }
    let (xc, yc) = (x.round() as isize, y.round() as isize);
    if yc < hy as isize
        || xc < hx as isize
        || yc + hy as isize >= ny as isize
        || xc + hx as isize >= nx as isize
    {
        return None;
    }
    let (y0, x0) = (yc as usize - hy, xc as usize - hx);
    let win = s![y0..y0 + h, x0..x0 + w];
    if bad.slice(win).iter().any(|&b| b) {
        return None;
    }
    let data = img.slice(win);
    let var = |j: usize, i: usize| match noise {
        Some(n) => (n[[y0 + j, x0 + i]] as f64).powi(2).max(1e-30),
        None => sigma * sigma,
    };
    let (mut dx, mut dy) = (x - xc as f64, y - yc as f64);
    let mut out = None;
    for _pass in 0..2 {
        let p = shift_stamp(psf, dy, dx);
        let mut m = [[0.0; 4]; 4];
        let mut v = [0.0; 4];
        for j in 0..h {
            for i in 0..w {
                let gx = if i == 0 || i == w - 1 {
                    0.0
                } else {
                    0.5 * (p[[j, i + 1]] - p[[j, i - 1]])
                };
                let gy = if j == 0 || j == h - 1 {
                    0.0
                } else {
                    0.5 * (p[[j + 1, i]] - p[[j - 1, i]])
                };
                let f = [p[[j, i]], gx, gy, 1.0];
                let wt = 1.0 / var(j, i);
                let d = data[[j, i]] as f64;
                for r in 0..4 {
                    v[r] += wt * f[r] * d;
                    for c in 0..4 {
                        m[r][c] += wt * f[r] * f[c];
                    }
                }
            }
        }
        let (sol, c00) = solve4(m, v)?;
        let a = sol[0];
        if a <= 0.0 || !a.is_finite() {
            return None;
        }
        // data ~ a P(u - delta) ~ a P - a delta.grad P  =>  delta = -b / a.
        let (ddx, ddy) = (
            (-sol[1] / a).clamp(-1.0, 1.0),
            (-sol[2] / a).clamp(-1.0, 1.0),
        );
        dx += ddx;
        dy += ddy;
        out = Some(StarFit {
            a,
            sa: c00.max(0.0).sqrt(),
            x: xc as f64 + dx,
            y: yc as f64 + dy,
        });
    }
    out
}

/// Inputs of [`fit_flux_ratio`] for one image.
pub(crate) struct Side<'a> {
    pub img: ArrayView2<'a, f32>,
    pub noise: Option<ArrayView2<'a, f32>>,
    pub sigma: f64,
    pub psf: &'a dyn PsfProvider,
}

/// Fits `beta = a_N / a_R` and the shift N - R from the stars.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_flux_ratio(
    n: &Side,
    r: &Side,
    bad: &ArrayView2<bool>,
    stars: &[(f64, f64)],
    min_snr: f64,
    min_stars: usize,
    tukey_c: f64,
    max_iter: usize,
) -> Result<FluxFit, ZogyError> {
    // The stars are fitted in parallel (each with its own PSF stamps), in input order.
    let fits = stars
        .par_iter()
        .map(|&(x, y)| {
            let pn = checked_stamp(n.psf, x, y, "new")?;
            let pr = checked_stamp(r.psf, x, y, "reference")?;
            let fnn = fit_star(&n.img, n.noise.as_ref(), n.sigma, bad, &pn, x, y);
            let frr = fit_star(&r.img, r.noise.as_ref(), r.sigma, bad, &pr, x, y);
            Ok(fnn.zip(frr))
        })
        .collect::<Result<Vec<_>, ZogyError>>()?;
    let mut q = Vec::new();
    let mut qe = Vec::new();
    let mut sx = Vec::new();
    let mut sy = Vec::new();
    let mut se = Vec::new();
    for (a, b) in fits.into_iter().flatten() {
        let (snr_n, snr_r) = (a.a / a.sa, b.a / b.sa);
        if !(snr_n >= min_snr && snr_r >= min_snr) {
            continue;
        }
        let ratio = a.a / b.a;
        // 0.5 % floor: PSF-model error, so that the brightest star does not dominate.
        let rel = (1.0 / (snr_n * snr_n) + 1.0 / (snr_r * snr_r) + 0.005f64.powi(2)).sqrt();
        q.push(ratio);
        qe.push(ratio * rel);
        sx.push(a.x - b.x);
        sy.push(a.y - b.y);
        // Centroid error ~ FWHM / SNR, with a 0.01 px floor.
        se.push((2.0 * (1.0 / (snr_n * snr_n) + 1.0 / (snr_r * snr_r))).sqrt() + 0.01);
    }
    if q.len() < min_stars.max(1) {
        return Err(ZogyError::TooFewStars {
            needed: min_stars.max(1),
            found: q.len(),
            given: stars.len(),
        });
    }
    let (beta, beta_err, n_iter, n_kept) =
        tukey_mean(&q, &qe, tukey_c, max_iter).ok_or(ZogyError::TooFewStars {
            needed: min_stars,
            found: 0,
            given: stars.len(),
        })?;
    let shx = tukey_mean(&sx, &se, tukey_c, max_iter).map_or(0.0, |t| t.0);
    let shy = tukey_mean(&sy, &se, tukey_c, max_iter).map_or(0.0, |t| t.0);
    let formal2 = median(se.iter().map(|e| e * e)).unwrap_or(0.0);
    let excess = |v: &[f64], c: f64| {
        let s = diffim_core::stats::mad_std(v.iter().map(|x| x - c)).unwrap_or(0.0);
        (s * s - formal2).max(0.0).sqrt()
    };
    Ok(FluxFit {
        beta,
        beta_err,
        shift: (shx, shy),
        shift_scatter: (excess(&sx, shx), excess(&sy, shy)),
        n_iter,
        n_used: q.len(),
        n_kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffim_core::psf::gaussian_stamp;

    #[test]
    fn fourier_shift_matches_analytic_gaussian() {
        let st = gaussian_stamp(21, 4.0, 0.0, 0.0);
        let sh = shift_stamp(&st, 0.3, -0.4);
        let truth = gaussian_stamp(21, 4.0, 0.3, -0.4);
        let err = (&sh - &truth).mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v));
        assert!(err < 2e-4, "max error {err}");
    }

    #[test]
    fn star_fit_recovers_flux_and_position() {
        let psf = gaussian_stamp(21, 4.0, 0.0, 0.0);
        let mut img = Array2::<f32>::zeros((64, 64));
        let star = gaussian_stamp(21, 4.0, 0.35, -0.2);
        img.slice_mut(s![20..41, 10..31])
            .zip_mut_with(&star, |a, b| *a = (1000.0 * b + 3.0) as f32);
        let bad = Array2::from_elem((64, 64), false);
        let f = fit_star(&img.view(), None, 1.0, &bad.view(), &psf, 20.0, 30.0).unwrap();
        assert!((f.a - 1000.0).abs() < 2.0, "{f:?}");
        assert!(
            (f.x - 19.8).abs() < 0.02 && (f.y - 30.35).abs() < 0.02,
            "{f:?}"
        );
    }

    #[test]
    fn tukey_mean_rejects_outliers() {
        let mut v = vec![1.2; 20];
        for (i, x) in v.iter_mut().enumerate() {
            *x += (i as f64 - 10.0) * 1e-3;
        }
        v.push(3.0);
        v.push(-1.0);
        let e = vec![0.01; v.len()];
        let (m, _, _, kept) = tukey_mean(&v, &e, 4.685, 10).unwrap();
        assert!((m - 1.2).abs() < 2e-3, "{m}");
        assert_eq!(kept, 20);
    }
}
