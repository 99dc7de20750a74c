//! Analytic PSF profiles (elliptical Gaussian and Moffat) fitted by Levenberg-Marquardt, and
//! the FWHM measurement every model uses.
//!
//! Both profiles share the quadratic form `q(dx, dy) = (l1 dx + l2 dy)^2 + (l3 dy)^2`
//! (a Cholesky factor, so any parameter values give a valid ellipse). The Gaussian is
//! `A exp(-q / 2)`, the Moffat `A (1 + q)^-beta`. Profiles are point-sampled at pixel centres;
//! fitting point-sampled profiles to pixel-integrated data absorbs the pixel response into
//! the widths, and rendering the fitted profile the same way reproduces the data.
//! The reported FWHM is the geometric mean of the major- and minor-axis FWHMs.

use crate::{PsfError, PsfModel};
use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::{DMatrix, DVector, Dyn, Owned};
use ndarray::{Array2, ArrayView2};

/// `2 sqrt(2 ln 2)`: FWHM of a unit-sigma Gaussian.
pub const FWHM_PER_SIGMA: f64 = 2.354_820_045_030_949;

/// Fills the Jacobian `(m, n)` of the residuals at the given parameters.
type JacFn = fn(&[f64], &[(f64, f64, f64)], &mut DMatrix<f64>);
/// An analytic Jacobian and the points `(x, y, value)` it is evaluated over.
type Jacobian<'a> = (JacFn, &'a [(f64, f64, f64)]);

/// A least-squares problem given by a residual function, with an analytic Jacobian when one
/// is given (over the points `pts`), else a forward-difference one.
struct FnProblem<'a, F: Fn(&[f64], &mut [f64])> {
    p: DVector<f64>,
    m: usize,
    f: F,
    jac: Option<Jacobian<'a>>,
}

impl<F: Fn(&[f64], &mut [f64])> LeastSquaresProblem<f64, Dyn, Dyn> for FnProblem<'_, F> {
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, Dyn>;
    type ParameterStorage = Owned<f64, Dyn>;

    fn set_params(&mut self, x: &DVector<f64>) {
        self.p.copy_from(x);
    }

    fn params(&self) -> DVector<f64> {
        self.p.clone()
    }

    fn residuals(&self) -> Option<DVector<f64>> {
        let mut r = DVector::zeros(self.m);
        (self.f)(self.p.as_slice(), r.as_mut_slice());
        r.iter().all(|v| v.is_finite()).then_some(r)
    }

    fn jacobian(&self) -> Option<DMatrix<f64>> {
        let n = self.p.len();
        if let Some((jf, pts)) = self.jac {
            let mut j = DMatrix::zeros(self.m, n);
            jf(self.p.as_slice(), pts, &mut j);
            return j.iter().all(|v| v.is_finite()).then_some(j);
        }
        let mut r0 = vec![0.0; self.m];
        (self.f)(self.p.as_slice(), &mut r0);
        let mut j = DMatrix::zeros(self.m, n);
        let mut p = self.p.as_slice().to_vec();
        let mut r1 = vec![0.0; self.m];
        for k in 0..n {
            let h = 1e-7 * p[k].abs().max(1e-3);
            let old = p[k];
            p[k] = old + h;
            (self.f)(&p, &mut r1);
            p[k] = old;
            for i in 0..self.m {
                j[(i, k)] = (r1[i] - r0[i]) / h;
            }
        }
        j.iter().all(|v| v.is_finite()).then_some(j)
    }
}

fn minimize<F: Fn(&[f64], &mut [f64])>(
    p0: Vec<f64>,
    m: usize,
    f: F,
    jac: Option<Jacobian<'_>>,
) -> Option<Vec<f64>> {
    let prob = FnProblem {
        p: DVector::from_vec(p0),
        m,
        f,
        jac,
    };
    let (res, report) = LevenbergMarquardt::new().with_patience(200).minimize(prob);
    let ok = report.termination.was_successful() || report.objective_function.is_finite();
    let p = res.p.as_slice().to_vec();
    (ok && p.iter().all(|v| v.is_finite())).then_some(p)
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

/// Analytic Jacobian of the Gaussian residuals `A exp(-q/2) - v` with respect to
/// `(A, dx, dy, l1, l2, l3)`: with `u = l1 x' + l2 y'`, `t = l3 y'` (`x' = x - dx`,
/// `y' = y - dy`) and `g = exp(-q/2)`, the derivatives are `g`, `A g u l1`,
/// `A g (u l2 + t l3)`, `-A g u x'`, `-A g u y'`, `-A g t y'`.
fn gaussian_jacobian(p: &[f64], pts: &[(f64, f64, f64)], j: &mut DMatrix<f64>) {
    let (a, dx, dy, l1, l2, l3) = (p[0], p[1], p[2], p[3], p[4], p[5]);
    for (i, &(x, y, _)) in pts.iter().enumerate() {
        let (xp, yp) = (x - dx, y - dy);
        let u = l1 * xp + l2 * yp;
        let t = l3 * yp;
        let g = (-0.5 * (u * u + t * t)).exp();
        let ag = a * g;
        j[(i, 0)] = g;
        j[(i, 1)] = ag * u * l1;
        j[(i, 2)] = ag * (u * l2 + t * l3);
        j[(i, 3)] = -ag * u * xp;
        j[(i, 4)] = -ag * u * yp;
        j[(i, 5)] = -ag * t * yp;
    }
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
    let p0 = vec![peak, 0.0, 0.0, 1.0 / sigma, 0.0, 1.0 / sigma];
    let p = minimize(
        p0,
        pts.len(),
        |p, r| {
            let e = Ellipse::from_params(p);
            for (ri, &(x, y, v)) in r.iter_mut().zip(&pts) {
                *ri = p[0] * (-0.5 * e.q(x - e.dx, y - e.dy)).exp() - v;
            }
        },
        Some((gaussian_jacobian, &pts)),
    )
    .ok_or(PsfError::FitFailed {
        profile: "Gaussian",
        reason: "Levenberg-Marquardt did not converge".into(),
    })?;
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
        let (amp, g) = fit_gaussian(stamp)?;
        let (pts, _, _) = stamp_data(stamp);
        // Start from beta = 3 with the Gaussian's FWHM.
        let beta0: f64 = 3.0;
        let k = (2f64.powf(1.0 / beta0) - 1.0).sqrt() / (FWHM_PER_SIGMA / 2.0);
        let p0 = vec![
            amp,
            g.dx,
            g.dy,
            g.l1 * k,
            g.l2 * k,
            g.l3 * k,
            (beta0 - 1.0).ln(),
        ];
        let p = minimize(
            p0,
            pts.len(),
            |p, r| {
                let e = Ellipse::from_params(p);
                let beta = 1.0 + p[6].clamp(-10.0, 5.0).exp();
                for (ri, &(x, y, v)) in r.iter_mut().zip(&pts) {
                    *ri = p[0] * (1.0 + e.q(x - e.dx, y - e.dy)).powf(-beta) - v;
                }
            },
            None,
        )
        .ok_or(PsfError::FitFailed {
            profile: "Moffat",
            reason: "Levenberg-Marquardt did not converge".into(),
        })?;
        let ellipse = Ellipse::from_params(&p);
        let beta = 1.0 + p[6].clamp(-10.0, 5.0).exp();
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
