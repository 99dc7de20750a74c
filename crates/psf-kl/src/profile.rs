//! Analytic PSF profiles (elliptical Gaussian and Moffat) fitted by Levenberg-Marquardt, and
//! the FWHM measurement every model uses.
//!
//! The fits use the crate's own small solver (`lm`: normal equations accumulated in one pass,
//! Cholesky, Nielsen damping) with analytic Jacobians; a unit test pins it against the
//! `levenberg-marquardt` crate (MINPACK's algorithm).
//!
//! Both profiles share the quadratic form `q(dx, dy) = (l1 dx + l2 dy)^2 + (l3 dy)^2`
//! (a Cholesky factor, so any parameter values give a valid ellipse). The Gaussian is
//! `A exp(-q / 2)`, the Moffat `A (1 + q)^-beta`. Profiles are point-sampled at pixel centres;
//! fitting point-sampled profiles to pixel-integrated data absorbs the pixel response into
//! the widths, and rendering the fitted profile the same way reproduces the data.
//! The reported FWHM is the geometric mean of the major- and minor-axis FWHMs.

use crate::lm::{LmFit, LmParams, levmar};
use crate::{PsfError, PsfModel};
use ndarray::{Array2, ArrayView2};

/// `2 sqrt(2 ln 2)`: FWHM of a unit-sigma Gaussian.
pub const FWHM_PER_SIGMA: f64 = 2.354_820_045_030_949;

/// A stamp pixel `(x, y, value)`, `x`, `y` relative to the middle pixel.
type Point = (f64, f64, f64);

/// Fits `N` parameters from `p0` to the points: `row(p, point, grad)` returns the residual at
/// one point and writes its gradient.
fn fit_rows<const N: usize>(
    p0: [f64; N],
    pts: &[Point],
    row: impl Fn(&[f64; N], Point, &mut [f64; N]) -> f64,
) -> Option<LmFit<N>> {
    let fit = levmar(
        p0,
        |p, ne| {
            let mut g = [0.0; N];
            for &pt in pts {
                let r = row(p, pt, &mut g);
                ne.add(r, &g);
            }
        },
        &LmParams::default(),
    )?;
    fit.p.iter().all(|v| v.is_finite()).then_some(fit)
}

/// Shape of an elliptical profile: centre offset from the middle pixel and the Cholesky
/// factor `(l1, l2, l3)` of its quadratic form (pixel^-1).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ellipse {
    /// Centre offset in x from the stamp's middle pixel (pixels).
    pub dx: f64,
    /// Centre offset in y from the stamp's middle pixel (pixels).
    pub dy: f64,
    /// `l1` of `q = (l1 dx + l2 dy)^2 + (l3 dy)^2`.
    pub l1: f64,
    /// `l2` of the quadratic form.
    pub l2: f64,
    /// `l3` of the quadratic form.
    pub l3: f64,
}

impl Ellipse {
    /// The ellipse of a fit's parameter vector `(A, dx, dy, l1, l2, l3, ...)`.
    fn from_params(p: &[f64]) -> Self {
        Self {
            dx: p[1],
            dy: p[2],
            l1: p[3],
            l2: p[4],
            l3: p[5],
        }
    }

    pub(crate) fn q(&self, x: f64, y: f64) -> f64 {
        let u = self.l1 * x + self.l2 * y;
        let v = self.l3 * y;
        u * u + v * v
    }

    /// Geometric-mean scale length `det(Q)^(-1/4)` (pixels), Q the quadratic form matrix.
    pub fn mean_scale(&self) -> f64 {
        1.0 / (self.l1 * self.l3).abs().sqrt()
    }

    /// Axis scale lengths `(major, minor)` (pixels): `1/sqrt` of the quadratic form's
    /// eigenvalues.
    pub fn axes(&self) -> (f64, f64) {
        let a = self.l1 * self.l1;
        let b = self.l1 * self.l2;
        let c = self.l2 * self.l2 + self.l3 * self.l3;
        let tr = a + c;
        let disc = ((a - c) * (a - c) + 4.0 * b * b).sqrt();
        let (e1, e2) = ((tr + disc) / 2.0, ((tr - disc) / 2.0).max(1e-300));
        (1.0 / e2.sqrt(), 1.0 / e1.sqrt())
    }

    /// Ellipticity `1 - minor/major`.
    pub fn ellipticity(&self) -> f64 {
        let (a, b) = self.axes();
        1.0 - b / a
    }
}

fn stamp_data(stamp: &ArrayView2<f64>) -> (Vec<(f64, f64, f64)>, f64, f64) {
    let (h, w) = stamp.dim();
    let (cy, cx) = ((h / 2) as f64, (w / 2) as f64);
    let pts: Vec<_> = stamp
        .indexed_iter()
        .filter(|(_, v)| v.is_finite())
        .map(|((j, i), &v)| (i as f64 - cx, j as f64 - cy, v))
        .collect();
    let peak = pts.iter().map(|p| p.2).fold(f64::MIN, f64::max);
    // Second moment of the positive part as a starting width.
    let (mut s, mut s2) = (0.0, 0.0);
    for &(x, y, v) in &pts {
        if v > 0.0 {
            s += v;
            s2 += v * (x * x + y * y);
        }
    }
    let sigma = if s > 0.0 {
        (s2 / s / 2.0).sqrt().clamp(0.5, h.max(w) as f64)
    } else {
        1.0
    };
    (pts, peak, sigma)
}

/// Residual `A exp(-q/2) - v` of the Gaussian at one point, and its gradient with respect to
/// `p = (A, dx, dy, l1, l2, l3)`: with `u = l1 x' + l2 y'`, `t = l3 y'` (`x' = x - dx`,
/// `y' = y - dy`) and `g = exp(-q/2)`, the derivatives are `g`, `A g u l1`,
/// `A g (u l2 + t l3)`, `-A g u x'`, `-A g u y'`, `-A g t y'`.
#[inline]
fn gaussian_row(p: &[f64; 6], (x, y, v): Point, grad: &mut [f64; 6]) -> f64 {
    let (a, dx, dy, l1, l2, l3) = (p[0], p[1], p[2], p[3], p[4], p[5]);
    let (xp, yp) = (x - dx, y - dy);
    let u = l1 * xp + l2 * yp;
    let t = l3 * yp;
    let g = (-0.5 * (u * u + t * t)).exp();
    let ag = a * g;
    *grad = [
        g,
        ag * u * l1,
        ag * (u * l2 + t * l3),
        -ag * u * xp,
        -ag * u * yp,
        -ag * t * yp,
    ];
    ag - v
}

/// The Moffat index `beta = 1 + exp(p6)`, `p6` clamped to `[-10, 5]`, and `d beta / d p6`
/// (0 where the clamp is active).
fn moffat_beta(p6: f64) -> (f64, f64) {
    let c = p6.clamp(-10.0, 5.0);
    let e = c.exp();
    (1.0 + e, if c == p6 { e } else { 0.0 })
}

/// Residual `A (1 + q)^-beta - v` of the Moffat at one point, and its gradient with respect
/// to `p = (A, dx, dy, l1, l2, l3, p6)` given `(beta, d beta / d p6)` from [`moffat_beta`]:
/// with `f = (1 + q)^-beta` and `dr/dq = -A beta f / (1 + q)`, the shape derivatives are
/// `dr/dq` times those of `q` (`-2 u l1`, `-2 (u l2 + t l3)`, `2 u x'`, `2 u y'`, `2 t y'`,
/// notation of [`gaussian_row`]) and `d r / d p6 = -A f ln(1 + q) d beta / d p6`.
#[inline]
fn moffat_row(
    p: &[f64; 7],
    (beta, dbeta): (f64, f64),
    (x, y, v): Point,
    grad: &mut [f64; 7],
) -> f64 {
    let (a, dx, dy, l1, l2, l3) = (p[0], p[1], p[2], p[3], p[4], p[5]);
    let (xp, yp) = (x - dx, y - dy);
    let u = l1 * xp + l2 * yp;
    let t = l3 * yp;
    let q = u * u + t * t;
    let lq = q.ln_1p();
    let f = (-beta * lq).exp();
    let af = a * f;
    let drdq = -beta * af / (1.0 + q);
    *grad = [
        f,
        -2.0 * drdq * u * l1,
        -2.0 * drdq * (u * l2 + t * l3),
        2.0 * drdq * u * xp,
        2.0 * drdq * u * yp,
        2.0 * drdq * t * yp,
        -af * lq * dbeta,
    ];
    af - v
}

/// Fit of an elliptical Gaussian `A exp(-q/2)` to a stamp (centre free, no background).
/// Returns `(amplitude, ellipse)`.
pub fn fit_gaussian(stamp: &ArrayView2<f64>) -> Result<(f64, Ellipse), PsfError> {
    let (pts, peak, sigma) = stamp_data(stamp);
    if pts.len() < 7 || !(peak > 0.0) {
        return Err(PsfError::FitFailed {
            profile: "Gaussian",
            reason: "stamp has no positive signal".into(),
        });
    }
    let p0 = [peak, 0.0, 0.0, 1.0 / sigma, 0.0, 1.0 / sigma];
    let p = fit_rows(p0, &pts, gaussian_row)
        .ok_or(PsfError::FitFailed {
            profile: "Gaussian",
            reason: "Levenberg-Marquardt did not converge".into(),
        })?
        .p;
    let e = Ellipse::from_params(&p);
    if !(p[0] > 0.0) || !(e.mean_scale() > 0.0 && e.mean_scale().is_finite()) {
        return Err(PsfError::FitFailed {
            profile: "Gaussian",
            reason: format!("non-physical result {p:?}"),
        });
    }
    Ok((p[0], e))
}

/// FWHM (pixels) of a stamp: the geometric-mean FWHM of the best-fitting elliptical Gaussian
/// (see the module docs). `None` when the fit fails.
pub fn measure_fwhm(stamp: &ArrayView2<f64>) -> Option<f64> {
    fit_gaussian(stamp)
        .ok()
        .map(|(_, e)| FWHM_PER_SIGMA * e.mean_scale())
}

fn render(size: usize, f: impl Fn(f64, f64) -> f64) -> Array2<f64> {
    let c = (size / 2) as f64;
    let mut st = Array2::from_shape_fn((size, size), |(j, i)| f(i as f64 - c, j as f64 - c));
    diffim_core::psf::normalize_unit_sum(&mut st);
    st
}

/// A constant elliptical Gaussian PSF fitted to a stamp.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GaussianPsf {
    /// Shape (the centre offset is reported but not used when rendering: stamps are centred).
    pub ellipse: Ellipse,
    /// Stamp side (odd).
    pub size: usize,
}

impl GaussianPsf {
    /// Fits the profile to a (background-subtracted, centred) stamp, for example
    /// [`crate::EmpiricalPsf`]'s stamp.
    pub fn fit(stamp: &ArrayView2<f64>) -> Result<Self, PsfError> {
        check_stamp(stamp)?;
        let (_, ellipse) = fit_gaussian(stamp)?;
        Ok(Self {
            ellipse,
            size: stamp.nrows(),
        })
    }

    /// A circular Gaussian of the given FWHM.
    pub fn circular(fwhm: f64, size: usize) -> Self {
        let l = FWHM_PER_SIGMA / fwhm;
        Self {
            ellipse: Ellipse {
                dx: 0.0,
                dy: 0.0,
                l1: l,
                l2: 0.0,
                l3: l,
            },
            size,
        }
    }

    /// FWHM (pixels), geometric mean of the axes.
    pub fn fwhm(&self) -> f64 {
        FWHM_PER_SIGMA * self.ellipse.mean_scale()
    }
}

impl PsfModel for GaussianPsf {
    fn psf_at(&self, _x: f64, _y: f64) -> Array2<f64> {
        let e = self.ellipse;
        render(self.size, |x, y| (-0.5 * e.q(x, y)).exp())
    }
    fn stamp_size(&self) -> usize {
        self.size
    }
    fn fwhm_at(&self, _x: f64, _y: f64) -> f64 {
        self.fwhm()
    }
}

/// A constant elliptical Moffat PSF `(1 + q)^-beta` fitted to a stamp.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MoffatPsf {
    /// Shape (scale lengths are the Moffat `alpha` along the axes).
    pub ellipse: Ellipse,
    /// Moffat index `beta` (> 1).
    pub beta: f64,
    /// Stamp side (odd).
    pub size: usize,
}

impl MoffatPsf {
    /// Fits the profile to a (background-subtracted, centred) stamp.
    pub fn fit(stamp: &ArrayView2<f64>) -> Result<Self, PsfError> {
        check_stamp(stamp)?;
        let p = fit_moffat(stamp)?;
        let ellipse = Ellipse::from_params(&p);
        let beta = moffat_beta(p[6]).0;
        if !(ellipse.mean_scale().is_finite() && ellipse.mean_scale() > 0.0) {
            return Err(PsfError::FitFailed {
                profile: "Moffat",
                reason: format!("non-physical result {p:?}"),
            });
        }
        Ok(Self {
            ellipse,
            beta,
            size: stamp.nrows(),
        })
    }

    /// FWHM (pixels), geometric mean of the axes: `2 alpha sqrt(2^(1/beta) - 1)`.
    pub fn fwhm(&self) -> f64 {
        2.0 * self.ellipse.mean_scale() * (2f64.powf(1.0 / self.beta) - 1.0).sqrt()
    }
}

impl PsfModel for MoffatPsf {
    fn psf_at(&self, _x: f64, _y: f64) -> Array2<f64> {
        let e = self.ellipse;
        let b = self.beta;
        render(self.size, |x, y| (1.0 + e.q(x, y)).powf(-b))
    }
    fn stamp_size(&self) -> usize {
        self.size
    }
    fn fwhm_at(&self, _x: f64, _y: f64) -> f64 {
        self.fwhm()
    }
}

/// Moffat fit `(A, dx, dy, l1, l2, l3, p6)` (`beta = 1 + exp(p6)`, see [`moffat_beta`]),
/// started from the Gaussian fit.
fn fit_moffat(stamp: &ArrayView2<f64>) -> Result<[f64; 7], PsfError> {
    let (amp, g) = fit_gaussian(stamp)?;
    let (pts, _, _) = stamp_data(stamp);
    let fit = levmar(
        moffat_start(amp, &g),
        |p, ne| {
            let beta = moffat_beta(p[6]);
            let mut grad = [0.0; 7];
            for &pt in &pts {
                let r = moffat_row(p, beta, pt, &mut grad);
                ne.add(r, &grad);
            }
        },
        &LmParams::default(),
    )
    .filter(|f| f.p.iter().all(|v| v.is_finite()))
    .ok_or(PsfError::FitFailed {
        profile: "Moffat",
        reason: "Levenberg-Marquardt did not converge".into(),
    })?;
    Ok(fit.p)
}

/// Moffat starting parameters from a Gaussian fit: `beta = 3` with the Gaussian's FWHM.
fn moffat_start(amp: f64, g: &Ellipse) -> [f64; 7] {
    let beta0: f64 = 3.0;
    let k = (2f64.powf(1.0 / beta0) - 1.0).sqrt() / (FWHM_PER_SIGMA / 2.0);
    [
        amp,
        g.dx,
        g.dy,
        g.l1 * k,
        g.l2 * k,
        g.l3 * k,
        (beta0 - 1.0).ln(),
    ]
}

pub(crate) fn check_stamp(stamp: &ArrayView2<f64>) -> Result<(), PsfError> {
    let (h, w) = stamp.dim();
    if h != w || h % 2 == 0 {
        return Err(PsfError::InvalidParameter {
            name: "stamp",
            reason: format!("stamps must be square with an odd side, got {h}x{w}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffim_core::psf::gaussian_stamp;
    use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
    use nalgebra::{DMatrix, DVector, Dyn, Owned};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    /// The reference: the `levenberg-marquardt` crate (MINPACK's trust-region LM with pivoted
    /// QR) on the same residual rows, as `profile` used it before its own solver.
    struct Reference<'a, const N: usize, R> {
        p: [f64; N],
        pts: &'a [Point],
        row: R,
    }

    impl<const N: usize, R: Fn(&[f64; N], Point, &mut [f64; N]) -> f64>
        LeastSquaresProblem<f64, Dyn, Dyn> for Reference<'_, N, R>
    {
        type ResidualStorage = Owned<f64, Dyn>;
        type JacobianStorage = Owned<f64, Dyn, Dyn>;
        type ParameterStorage = Owned<f64, Dyn>;

        fn set_params(&mut self, x: &DVector<f64>) {
            self.p.copy_from_slice(x.as_slice());
        }

        fn params(&self) -> DVector<f64> {
            DVector::from_row_slice(&self.p)
        }

        fn residuals(&self) -> Option<DVector<f64>> {
            let mut g = [0.0; N];
            let r = DVector::from_iterator(
                self.pts.len(),
                self.pts.iter().map(|&pt| (self.row)(&self.p, pt, &mut g)),
            );
            r.iter().all(|v| v.is_finite()).then_some(r)
        }

        fn jacobian(&self) -> Option<DMatrix<f64>> {
            let mut j = DMatrix::zeros(self.pts.len(), N);
            let mut g = [0.0; N];
            for (i, &pt) in self.pts.iter().enumerate() {
                (self.row)(&self.p, pt, &mut g);
                for (k, &gk) in g.iter().enumerate() {
                    j[(i, k)] = gk;
                }
            }
            j.iter().all(|v| v.is_finite()).then_some(j)
        }
    }

    fn reference_fit<const N: usize>(
        p0: [f64; N],
        pts: &[Point],
        row: impl Fn(&[f64; N], Point, &mut [f64; N]) -> f64,
    ) -> [f64; N] {
        let prob = Reference { p: p0, pts, row };
        let (res, report) = LevenbergMarquardt::new().with_patience(200).minimize(prob);
        assert!(report.termination.was_successful(), "{report:?}");
        res.p
    }

    fn chi2<const N: usize>(
        p: &[f64; N],
        pts: &[Point],
        row: impl Fn(&[f64; N], Point, &mut [f64; N]) -> f64,
    ) -> f64 {
        let mut g = [0.0; N];
        pts.iter().map(|&pt| row(p, pt, &mut g).powi(2)).sum()
    }

    fn moffat_row_p(p: &[f64; 7], pt: Point, g: &mut [f64; 7]) -> f64 {
        moffat_row(p, moffat_beta(p[6]), pt, g)
    }

    /// Noisy synthetic stars: elliptical Gaussians and Moffats (3x3 subsampled), several
    /// FWHMs, ellipticities and offsets, peak 1 with seeded Gaussian noise.
    fn noisy_stamps() -> Vec<Array2<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(20240611);
        let cases = [
            // (size, l1, l2, l3, dx, dy, Moffat beta (0 = Gaussian), noise sigma)
            (19, 0.8, 0.0, 0.8, 0.0, 0.0, 0.0, 0.01),
            (19, 0.55, 0.1, 0.7, 0.3, -0.2, 0.0, 0.02),
            (19, 0.9, -0.25, 0.6, -0.45, 0.4, 0.0, 0.05),
            (25, 0.35, 0.05, 0.4, 1.2, -0.7, 0.0, 0.01),
            (19, 1.4, 0.2, 1.1, 0.1, 0.35, 0.0, 0.03),
            (19, 0.5, 0.1, 0.45, -0.3, 0.2, 2.5, 0.01),
            (25, 0.3, -0.05, 0.35, 0.6, 0.1, 4.0, 0.05),
        ];
        cases
            .iter()
            .map(|&(size, l1, l2, l3, dx, dy, beta, sigma)| {
                let e = Ellipse { dx, dy, l1, l2, l3 };
                let c = (size / 2) as f64;
                Array2::from_shape_fn((size, size), |(j, i)| {
                    let mut s = 0.0;
                    for a in [-1.0 / 3.0, 0.0, 1.0 / 3.0] {
                        for b in [-1.0 / 3.0, 0.0, 1.0 / 3.0] {
                            let q = e.q(i as f64 - c + b - dx, j as f64 - c + a - dy);
                            s += if beta > 0.0 {
                                (1.0 + q).powf(-beta)
                            } else {
                                (-0.5 * q).exp()
                            };
                        }
                    }
                    let n: f64 = StandardNormal.sample(&mut rng);
                    s / 9.0 + sigma * n
                })
            })
            .collect()
    }

    #[test]
    fn gaussian_fit_matches_the_levenberg_marquardt_crate() {
        for (k, st) in noisy_stamps().iter().enumerate() {
            let (pts, peak, sigma) = stamp_data(&st.view());
            let p0 = [peak, 0.0, 0.0, 1.0 / sigma, 0.0, 1.0 / sigma];
            let ours = fit_rows(p0, &pts, gaussian_row).unwrap();
            assert!(
                ours.termination != crate::lm::Termination::MaxIter && ours.n_iter <= 40,
                "stamp {k}: {ours:?}"
            );
            // The public path gives the same parameters.
            let (amp, e) = fit_gaussian(&st.view()).unwrap();
            assert_eq!((amp, e), (ours.p[0], Ellipse::from_params(&ours.p)));
            let theirs = reference_fit(p0, &pts, gaussian_row);
            let (c_ours, c_theirs) = (
                chi2(&ours.p, &pts, gaussian_row),
                chi2(&theirs, &pts, gaussian_row),
            );
            let te = Ellipse::from_params(&theirs);
            let fwhm_err = (e.mean_scale() - te.mean_scale()).abs() / te.mean_scale();
            let centre_err = (e.dx - te.dx).hypot(e.dy - te.dy);
            eprintln!(
                "stamp {k}: {} iterations, {} evaluations ({:?}); FWHM {:.5} rel. diff {fwhm_err:.1e}, \
                 centre diff {centre_err:.1e} px, chi2 {c_ours:.6e} vs {c_theirs:.6e} ({:+.1e})",
                ours.n_iter,
                ours.n_eval,
                ours.termination,
                FWHM_PER_SIGMA * e.mean_scale(),
                c_ours / c_theirs - 1.0
            );
            assert!(fwhm_err < 1e-7, "stamp {k}: FWHM {e:?} vs {te:?}");
            assert!(centre_err < 1e-7, "stamp {k}: centre {e:?} vs {te:?}");
            assert!(
                (amp - theirs[0]).abs() < 1e-7 * theirs[0],
                "stamp {k}: amplitude"
            );
            assert!(
                c_ours <= c_theirs * (1.0 + 1e-9),
                "stamp {k}: chi2 {c_ours} vs {c_theirs}"
            );
        }
    }

    #[test]
    fn moffat_fit_matches_the_levenberg_marquardt_crate() {
        for (k, st) in noisy_stamps().iter().enumerate() {
            let po = fit_moffat(&st.view()).unwrap();
            let ours = MoffatPsf::fit(&st.view()).unwrap();
            assert_eq!(
                (ours.ellipse, ours.beta),
                (Ellipse::from_params(&po), moffat_beta(po[6]).0)
            );
            let (pts, _, _) = stamp_data(&st.view());
            let (amp, g) = fit_gaussian(&st.view()).unwrap();
            let theirs = reference_fit(moffat_start(amp, &g), &pts, moffat_row_p);
            let te = Ellipse::from_params(&theirs);
            let tm = MoffatPsf {
                ellipse: te,
                beta: moffat_beta(theirs[6]).0,
                size: st.nrows(),
            };
            let e = ours.ellipse;
            let (c_ours, c_theirs) = (
                chi2(&po, &pts, moffat_row_p),
                chi2(&theirs, &pts, moffat_row_p),
            );
            let fwhm_err = (ours.fwhm() - tm.fwhm()).abs() / tm.fwhm();
            let centre_err = (e.dx - te.dx).hypot(e.dy - te.dy);
            eprintln!(
                "stamp {k}: beta {:.4} vs {:.4}, FWHM {:.5} rel. diff {fwhm_err:.1e}, centre diff \
                 {centre_err:.1e} px, chi2 {c_ours:.6e} vs {c_theirs:.6e} ({:+.1e})",
                ours.beta,
                tm.beta,
                ours.fwhm(),
                c_ours / c_theirs - 1.0
            );
            assert!(fwhm_err < 1e-6, "stamp {k}: FWHM {ours:?} vs {tm:?}");
            assert!(centre_err < 1e-6, "stamp {k}: centre {ours:?} vs {tm:?}");
            assert!(
                (ours.beta - tm.beta).abs() < 1e-5 * tm.beta,
                "stamp {k}: beta"
            );
            assert!(
                c_ours <= c_theirs * (1.0 + 1e-9),
                "stamp {k}: chi2 {c_ours} vs {c_theirs}"
            );
        }
    }

    #[test]
    fn analytic_gradients_match_central_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
        for _ in 0..50 {
            let p6 = [
                1.0 + 0.2 * normal(),
                0.5 * normal(),
                0.5 * normal(),
                0.6 + 0.1 * normal(),
                0.1 * normal(),
                0.5 + 0.1 * normal(),
            ];
            let p7 = [p6[0], p6[1], p6[2], p6[3], p6[4], p6[5], 0.7 * normal()];
            let pt = (3.0 * normal(), 3.0 * normal(), normal());
            check_gradient(&p6, pt, gaussian_row);
            check_gradient(&p7, pt, moffat_row_p);
        }
        // Beyond the clamp, beta no longer depends on p6.
        let mut g = [0.0; 7];
        moffat_row_p(
            &[1.0, 0.0, 0.0, 0.5, 0.0, 0.5, 6.0],
            (1.0, 2.0, 0.0),
            &mut g,
        );
        assert_eq!(g[6], 0.0);
    }

    fn check_gradient<const N: usize>(
        p: &[f64; N],
        pt: Point,
        row: impl Fn(&[f64; N], Point, &mut [f64; N]) -> f64,
    ) {
        let mut g = [0.0; N];
        let mut scratch = [0.0; N];
        row(p, pt, &mut g);
        for k in 0..N {
            let h = 1e-6 * p[k].abs().max(1e-2);
            let (mut hi, mut lo) = (*p, *p);
            hi[k] += h;
            lo[k] -= h;
            let fd = (row(&hi, pt, &mut scratch) - row(&lo, pt, &mut scratch)) / (2.0 * h);
            let tol = 1e-7 * (1.0 + g[k].abs());
            assert!(
                (fd - g[k]).abs() < tol,
                "d/dp{k}: analytic {} vs {fd} at {p:?}, {pt:?}",
                g[k]
            );
        }
    }

    #[test]
    fn gaussian_fit_recovers_fwhm_and_moffat_fits_moffat() {
        // gaussian_stamp integrates over pixels: the fitted point-sampled width is
        // sqrt(sigma^2 + 1/12) to a good approximation.
        let st = gaussian_stamp(25, 4.0, 0.0, 0.0);
        let s = 4.0 / FWHM_PER_SIGMA;
        let expect = FWHM_PER_SIGMA * (s * s + (1.0 - 1.0 / 81.0) / 12.0).sqrt();
        let f = measure_fwhm(&st.view()).unwrap();
        assert!((f - expect).abs() / expect < 2e-3, "{f} vs {expect}");
        let g = GaussianPsf::fit(&st.view()).unwrap();
        let r = g.psf_at(0.0, 0.0);
        let err = (&r - &st).mapv(|v| v * v).sum().sqrt() / st.mapv(|v| v * v).sum().sqrt();
        assert!(err < 0.01, "rendered Gaussian rel. L2 error {err}");
        assert!((r.sum() - 1.0).abs() < 1e-12);

        let truth = MoffatPsf {
            ellipse: Ellipse {
                dx: 0.0,
                dy: 0.0,
                l1: 0.4,
                l2: 0.05,
                l3: 0.3,
            },
            beta: 2.5,
            size: 31,
        };
        let st = truth.psf_at(0.0, 0.0);
        let m = MoffatPsf::fit(&st.view()).unwrap();
        assert!((m.beta - 2.5).abs() < 1e-3, "beta {}", m.beta);
        assert!((m.fwhm() - truth.fwhm()).abs() < 1e-3);
        let (a, b) = truth.ellipse.axes();
        assert!(a > b && truth.ellipse.ellipticity() > 0.0);
    }
}
