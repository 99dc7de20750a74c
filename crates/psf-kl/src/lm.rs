//! A small dense Levenberg-Marquardt solver for the profile fits (a handful of parameters,
//! up to a few thousand residuals).
//!
//! The residual function streams one residual and its gradient row at a time into
//! [`NormalEquations`], which accumulates `J^T J`, `J^T r` and `chi^2 = r^T r` in one pass:
//! no `m x n` Jacobian is stored. Each iteration solves the damped system
//! `(J^T J + lambda D) delta = -J^T r` with a Cholesky factorisation, `D` the running maximum
//! of `diag(J^T J)` (Marquardt's scaling, as MINPACK keeps it), and updates `lambda` by
//! Nielsen's rule (H. B. Nielsen, "Damping parameter in Marquardt's method", IMM-REP-1999-05;
//! Madsen, Nielsen & Tingleff, "Methods for non-linear least squares problems", 2004, eq. 3.16).

/// Stopping rules of [`levmar`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LmParams {
    /// Relative `chi^2` decrease of an accepted step below which the fit may stop
    /// (with `xtol`). Default `1.49e-8` (MINPACK's).
    pub ftol: f64,
    /// Relative scaled step `||D^1/2 delta|| / ||D^1/2 p||` below which the fit may stop
    /// (with `ftol` on an accepted step, alone on a rejected one). Default `1.49e-8`.
    pub xtol: f64,
    /// Largest cosine between the residual vector and a Jacobian column at which the fit
    /// stops (the gradient vanishes). Default `1e-12`.
    pub gtol: f64,
    /// Maximum number of iterations (trial steps). Default 200.
    pub max_iter: usize,
    /// Initial damping `lambda`, relative to `D`. Default `1e-3`.
    pub lambda0: f64,
}

impl Default for LmParams {
    fn default() -> Self {
        Self {
            ftol: 1.49e-8,
            xtol: 1.49e-8,
            gtol: 1e-12,
            max_iter: 200,
            lambda0: 1e-3,
        }
    }
}

/// Why [`levmar`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Termination {
    /// Small relative `chi^2` decrease and small relative step.
    Converged,
    /// The gradient vanished (or `chi^2` reached 0).
    Gradient,
    /// A rejected step was already negligible: no further progress is possible.
    Stalled,
    /// `max_iter` reached.
    MaxIter,
}

/// The result of [`levmar`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LmFit<const N: usize> {
    /// Best parameters found.
    pub p: [f64; N],
    /// `chi^2 = sum r_i^2` at `p`.
    pub chi2: f64,
    /// Iterations (trial steps, including rejected ones).
    pub n_iter: usize,
    /// Residual-function evaluations.
    pub n_eval: usize,
    /// Why it stopped.
    pub termination: Termination,
}

/// Rows buffered by [`NormalEquations`] before they are folded in.
const BLOCK: usize = 64;

/// `J^T J`, `J^T r` and `chi^2` accumulated one residual at a time. Rows are buffered in
/// blocks of [`BLOCK`] and folded in by column dot products, which vectorise (a rank-1 update
/// per row does not).
#[derive(Debug, Clone)]
pub(crate) struct NormalEquations<const N: usize> {
    jtj: [[f64; N]; N],
    jtr: [f64; N],
    chi2: f64,
    /// Buffered residuals and gradient columns, `len` of them.
    r: [f64; BLOCK],
    g: [[f64; BLOCK]; N],
    len: usize,
}

/// Dot product with independent partial sums (vectorisable).
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

impl<const N: usize> NormalEquations<N> {
    fn new() -> Self {
        Self {
            jtj: [[0.0; N]; N],
            jtr: [0.0; N],
            chi2: 0.0,
            r: [0.0; BLOCK],
            g: [[0.0; BLOCK]; N],
            len: 0,
        }
    }

    fn reset(&mut self) {
        self.jtj = [[0.0; N]; N];
        self.jtr = [0.0; N];
        self.chi2 = 0.0;
        self.len = 0;
    }

    /// Adds residual `r` with gradient `g = d r / d p`.
    #[inline]
    pub fn add(&mut self, r: f64, g: &[f64; N]) {
        let i = self.len;
        self.r[i] = r;
        for (col, &gk) in self.g.iter_mut().zip(g) {
            col[i] = gk;
        }
        self.len = i + 1;
        if self.len == BLOCK {
            self.flush();
        }
    }

    /// Folds the buffered rows into the upper triangle of `J^T J`, `J^T r` and `chi^2`.
    fn flush(&mut self) {
        let n = self.len;
        let r = &self.r[..n];
        self.chi2 += dot(r, r);
        for a in 0..N {
            let ga = &self.g[a][..n];
            self.jtr[a] += dot(ga, r);
            for b in a..N {
                self.jtj[a][b] += dot(ga, &self.g[b][..n]);
            }
        }
        self.len = 0;
    }

    /// Flushes and fills the lower triangle of `J^T J`.
    fn finish(&mut self) {
        self.flush();
        for a in 0..N {
            for b in 0..a {
                self.jtj[a][b] = self.jtj[b][a];
            }
        }
    }

    fn is_finite(&self) -> bool {
        self.chi2.is_finite()
            && self.jtr.iter().all(|v| v.is_finite())
            && self.jtj.iter().flatten().all(|v| v.is_finite())
    }
}

/// Solves `m x = b` for a symmetric positive definite `m` (Cholesky, in place); `None` when a
/// pivot is not clearly positive (relative to the diagonal).
fn cholesky_solve<const N: usize>(mut m: [[f64; N]; N], mut b: [f64; N]) -> Option<[f64; N]> {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    // m = L L^T, L stored in the lower triangle.
    for j in 0..N {
        let d = m[j][j] - dot(&m[j][..j], &m[j][..j]);
        if !(d > 1e-14 * m[j][j].abs()) || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        m[j][j] = d;
        for i in j + 1..N {
            m[i][j] = (m[i][j] - dot(&m[i][..j], &m[j][..j])) / d;
        }
    }
    // L y = b, then L^T x = y.
    for i in 0..N {
        b[i] = (b[i] - dot(&m[i][..i], &b[..i])) / m[i][i];
    }
    for i in (0..N).rev() {
        let s: f64 = (i + 1..N).map(|k| m[k][i] * b[k]).sum();
        b[i] = (b[i] - s) / m[i][i];
    }
    Some(b)
}

/// Minimises `sum r_i(p)^2` from `p0`. `eval(p, ne)` must call [`NormalEquations::add`] once
/// per residual with its value and gradient at `p`. Steps to parameters where a residual or
/// gradient is not finite are rejected. `None` when the residuals at `p0` are not finite.
pub(crate) fn levmar<const N: usize>(
    p0: [f64; N],
    mut eval: impl FnMut(&[f64; N], &mut NormalEquations<N>),
    params: &LmParams,
) -> Option<LmFit<N>> {
    let mut ne = NormalEquations::new();
    eval(&p0, &mut ne);
    ne.finish();
    if !ne.is_finite() {
        return None;
    }
    let mut fit = LmFit {
        p: p0,
        chi2: ne.chi2,
        n_iter: 0,
        n_eval: 1,
        termination: Termination::MaxIter,
    };
    let mut trial = NormalEquations::new();
    let mut scale = [0.0; N];
    let mut lambda = params.lambda0;
    let mut nu = 2.0;
    loop {
        // Marquardt scaling: the running maximum of the Jacobian's squared column norms, with
        // a floor so that a parameter the residuals ignore keeps a finite (zero) step.
        let top = (0..N).map(|k| ne.jtj[k][k]).fold(0.0, f64::max);
        for (k, s) in scale.iter_mut().enumerate() {
            *s = ne.jtj[k][k].max(*s).max(1e-30 * top).max(f64::MIN_POSITIVE);
        }
        let cos_max = (0..N)
            .filter(|&k| ne.jtj[k][k] > 0.0)
            .map(|k| ne.jtr[k].abs() / (ne.jtj[k][k] * ne.chi2).sqrt())
            .fold(0.0, f64::max);
        if ne.chi2 == 0.0 || cos_max <= params.gtol {
            fit.termination = Termination::Gradient;
            return Some(fit);
        }
        if fit.n_iter >= params.max_iter {
            return Some(fit);
        }
        fit.n_iter += 1;
        let mut m = ne.jtj;
        for k in 0..N {
            m[k][k] += lambda * scale[k];
        }
        let Some(delta) = cholesky_solve(m, ne.jtr.map(|v| -v)) else {
            // Not positive definite at this damping: damp more.
            lambda *= nu;
            nu *= 2.0;
            if !(lambda < 1e30) {
                fit.termination = Termination::Stalled;
                return Some(fit);
            }
            continue;
        };
        let mut p = fit.p;
        for (pk, dk) in p.iter_mut().zip(&delta) {
            *pk += dk;
        }
        trial.reset();
        eval(&p, &mut trial);
        trial.finish();
        fit.n_eval += 1;
        let norm = |v: &[f64; N]| {
            v.iter()
                .zip(&scale)
                .map(|(x, s)| s * x * x)
                .sum::<f64>()
                .sqrt()
        };
        let small_step = norm(&delta) <= params.xtol * norm(&fit.p);
        if trial.is_finite() && trial.chi2 < ne.chi2 {
            // Gain ratio: actual over predicted decrease, the latter
            // delta^T (lambda D delta - J^T r) (positive for the damped step).
            let predicted: f64 = (0..N)
                .map(|k| delta[k] * (lambda * scale[k] * delta[k] - ne.jtr[k]))
                .sum();
            let decrease = ne.chi2 - trial.chi2;
            let rho = decrease / predicted;
            let small_f = decrease <= params.ftol * ne.chi2;
            fit.p = p;
            fit.chi2 = trial.chi2;
            std::mem::swap(&mut ne, &mut trial);
            let t = 2.0 * rho - 1.0;
            lambda *= (1.0 - t * t * t).clamp(1.0 / 3.0, 2.0);
            lambda = lambda.max(1e-16);
            nu = 2.0;
            if small_f && small_step {
                fit.termination = Termination::Converged;
                return Some(fit);
            }
        } else {
            if small_step {
                fit.termination = Termination::Stalled;
                return Some(fit);
            }
            lambda *= nu;
            nu *= 2.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_spd_and_rejects_indefinite() {
        let m = [[4.0, 2.0, 0.4], [2.0, 5.0, 1.0], [0.4, 1.0, 3.0]];
        let x = [1.0, -2.0, 0.5];
        let b: [f64; 3] = std::array::from_fn(|i| (0..3).map(|k| m[i][k] * x[k]).sum());
        let s = cholesky_solve(m, b).unwrap();
        for k in 0..3 {
            assert!((s[k] - x[k]).abs() < 1e-14, "{s:?}");
        }
        assert!(cholesky_solve([[1.0, 2.0], [2.0, 1.0]], [1.0, 1.0]).is_none());
        assert!(cholesky_solve([[1.0, 1.0], [1.0, 1.0]], [1.0, 1.0]).is_none());
    }

    #[test]
    fn rosenbrock_converges() {
        // r = (10 (y - x^2), 1 - x): minimum 0 at (1, 1), a curved valley.
        let fit = levmar(
            [-1.2, 1.0],
            |p, ne| {
                ne.add(10.0 * (p[1] - p[0] * p[0]), &[-20.0 * p[0], 10.0]);
                ne.add(1.0 - p[0], &[-1.0, 0.0]);
            },
            &LmParams::default(),
        )
        .unwrap();
        assert!(
            (fit.p[0] - 1.0).abs() < 1e-8 && (fit.p[1] - 1.0).abs() < 1e-8,
            "{fit:?}"
        );
        assert!(fit.termination != Termination::MaxIter, "{fit:?}");
        // Non-finite start.
        assert!(
            levmar(
                [f64::NAN],
                |p, ne| ne.add(p[0], &[1.0]),
                &LmParams::default()
            )
            .is_none()
        );
    }
}
