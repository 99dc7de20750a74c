//! Two-dimensional polynomials in scaled image coordinates, fitted by weighted least squares.

use nalgebra::{DMatrix, DVector};

/// Highest polynomial degree supported.
pub const MAX_DEGREE: usize = 20;

/// Number of terms `x^p y^q` with `p + q <= degree`: `(d + 1)(d + 2) / 2`.
pub fn n_terms(degree: usize) -> usize {
    (degree + 1) * (degree + 2) / 2
}

/// Maps pixel coordinates to `[-1, 1]` on each axis: `u = (x - cx) / hx`, `v = (y - cy) / hy`
/// with `cx = hx = (nx - 1) / 2` (so pixel centres `0` and `nx - 1` map to `-1` and `1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoordScale {
    /// Centre in x (pixels).
    pub cx: f64,
    /// Half-range in x (pixels, > 0).
    pub hx: f64,
    /// Centre in y (pixels).
    pub cy: f64,
    /// Half-range in y (pixels, > 0).
    pub hy: f64,
}

impl CoordScale {
    /// The scaling of an image of shape `(ny, nx)`.
    pub fn for_shape(ny: usize, nx: usize) -> Self {
        let hx = ((nx as f64 - 1.0) / 2.0).max(0.5);
        let hy = ((ny as f64 - 1.0) / 2.0).max(0.5);
        Self {
            cx: (nx as f64 - 1.0) / 2.0,
            hx,
            cy: (ny as f64 - 1.0) / 2.0,
            hy,
        }
    }

    /// Scaled `(u, v)` of pixel position `(x, y)`.
    pub fn scale(&self, x: f64, y: f64) -> (f64, f64) {
        ((x - self.cx) / self.hx, (y - self.cy) / self.hy)
    }
}

/// Values of the monomials at scaled `(u, v)`, in the crate's term order: by total degree
/// `k = 0..=degree`, and within a degree by increasing power of `v`:
/// `1, u, v, u^2, u v, v^2, u^3, u^2 v, u v^2, v^3, ...`.
///
/// # Panics
/// If `degree > MAX_DEGREE` (a caller bug; the fitters and loaders check it).
pub fn monomials(degree: usize, u: f64, v: f64, out: &mut Vec<f64>) {
    assert!(
        degree <= MAX_DEGREE,
        "polynomial degree {degree} > {MAX_DEGREE}"
    );
    out.clear();
    let mut up = [1.0; MAX_DEGREE + 1];
    let mut vp = [1.0; MAX_DEGREE + 1];
    for k in 1..=degree {
        up[k] = up[k - 1] * u;
        vp[k] = vp[k - 1] * v;
    }
    for k in 0..=degree {
        for q in 0..=k {
            out.push(up[k - q] * vp[q]);
        }
    }
}

/// Evaluates `sum_t c_t m_t(u, v)` for the coefficients of [`monomials`]' term order.
pub fn eval(coeffs: &[f64], degree: usize, u: f64, v: f64) -> f64 {
    let mut m = Vec::with_capacity(n_terms(degree));
    monomials(degree, u, v, &mut m);
    m.iter().zip(coeffs).map(|(a, b)| a * b).sum()
}

/// Weighted least-squares fit of several right-hand sides sharing one design:
/// minimises `sum_j w_j (z_ij - p_i(u_j, v_j))^2` for each `i`. Solved by SVD of the
/// weighted design matrix (robust to a near-singular star layout). Returns `None` when the
/// system is degenerate (fewer usable points than terms).
pub fn fit_many(
    degree: usize,
    uv: &[(f64, f64)],
    weights: &[f64],
    rhs: &[Vec<f64>],
) -> Option<Vec<Vec<f64>>> {
    let nt = n_terms(degree);
    let n = uv.len();
    if n < nt {
        return None;
    }
    let mut a = DMatrix::<f64>::zeros(n, nt);
    let mut m = Vec::with_capacity(nt);
    for (j, &(u, v)) in uv.iter().enumerate() {
        monomials(degree, u, v, &mut m);
        let sw = weights[j].max(0.0).sqrt();
        for t in 0..nt {
            a[(j, t)] = m[t] * sw;
        }
    }
    let svd = a.svd(true, true);
    let smax = svd.singular_values.max();
    if !(smax > 0.0) {
        return None;
    }
    let mut out = Vec::with_capacity(rhs.len());
    for z in rhs {
        let b = DVector::from_iterator(
            n,
            z.iter().zip(weights).map(|(zz, w)| zz * w.max(0.0).sqrt()),
        );
        let x = svd.solve(&b, smax * 1e-10).ok()?;
        out.push(x.iter().copied().collect());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_cubic_exactly() {
        let coeffs = vec![0.5, -0.2, 0.3, 0.1, 0.05, -0.07, 0.02, 0.01, -0.03, 0.04];
        let mut uv = Vec::new();
        let mut z = Vec::new();
        for j in 0..7 {
            for i in 0..7 {
                let (u, v) = (i as f64 / 3.0 - 1.0, j as f64 / 3.0 - 1.0);
                uv.push((u, v));
                z.push(eval(&coeffs, 3, u, v));
            }
        }
        let w = vec![1.0; uv.len()];
        let fit = fit_many(3, &uv, &w, &[z]).unwrap();
        for (a, b) in fit[0].iter().zip(&coeffs) {
            assert!((a - b).abs() < 1e-10, "{a} vs {b}");
        }
        assert_eq!(n_terms(3), 10);
        assert!(fit_many(3, &uv[..5], &w[..5], &[vec![0.0; 5]]).is_none());
        let s = CoordScale::for_shape(101, 201);
        assert_eq!(s.scale(0.0, 0.0), (-1.0, -1.0));
        assert_eq!(s.scale(200.0, 100.0), (1.0, 1.0));
    }
}
