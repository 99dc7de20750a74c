//! Weighted normal equations on the selected pixels, solved with faer.
//!
//! The design matrix is never held for more than `CHUNK` rows at a time: each chunk of rows
//! `X` (weighted by `sqrt(w)`) is added to `A = X^T X` and `b = X^T y` with faer's matmul,
//! and sigma clipping removes (or restores) the changed rows by the same rank-k update
//! with a negative (positive) sign, so no iteration rebuilds the whole matrix.

use crate::layout::Layout;
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::prelude::*;
use faer::{Accum, Side};
use ndarray::ArrayView2;
use rayon::prelude::*;

const CHUNK: usize = 2048;

/// One fit pixel: position and `sqrt(weight)`.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub y: usize,
    pub x: usize,
    pub sw: f64,
}

/// Accumulates (the lower triangle of) `sign * X^T X` and `sign * X^T y` over `rows` into `a`, `b`.
pub fn accumulate(
    layout: &Layout,
    c: &ArrayView2<f32>,
    t: &ArrayView2<f32>,
    rows: &[Row],
    sign: f64,
    a: &mut Mat<f64>,
    b: &mut Mat<f64>,
) {
    let np = layout.n_params();
    for chunk in rows.chunks(CHUNK) {
        let n = chunk.len();
        // Each design row is contiguous: the buffer is X^T in column-major order.
        let mut buf = vec![0.0f64; n * np];
        let mut yv = Mat::<f64>::zeros(n, 1);
        buf.par_chunks_mut(np).zip(chunk.par_iter()).for_each_init(
            || vec![0.0f64; layout.shifts.len()],
            |scratch, (col, r)| {
                layout.fill_row(c, r.y, r.x, col, scratch);
                for v in col.iter_mut() {
                    *v *= r.sw;
                }
            },
        );
        let xt = MatRef::from_column_major_slice(&buf, np, n);
        for (k, r) in chunk.iter().enumerate() {
            yv[(k, 0)] = t[[r.y, r.x]] as f64 * r.sw;
        }
        // Symmetric rank-k update: only the lower triangle of `a` is computed (and read).
        triangular::matmul(
            a.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Add,
            xt,
            BlockStructure::Rectangular,
            xt.transpose(),
            BlockStructure::Rectangular,
            sign,
            Par::rayon(0),
        );
        matmul(b.as_mut(), Accum::Add, xt, yv.as_ref(), sign, Par::rayon(0));
    }
}

/// Normalised residuals `(t - model) * sqrt(w)` of every row.
pub fn residuals(
    layout: &Layout,
    c: &ArrayView2<f32>,
    t: &ArrayView2<f32>,
    rows: &[Row],
    theta: &[f64],
) -> Vec<f64> {
    let np = layout.n_params();
    rows.par_iter()
        .map_init(
            || (vec![0.0f64; np], vec![0.0f64; layout.shifts.len()]),
            |(row, scratch), r| {
                layout.fill_row(c, r.y, r.x, row, scratch);
                let m: f64 = row.iter().zip(theta).map(|(a, b)| a * b).sum();
                (t[[r.y, r.x]] as f64 - m) * r.sw
            },
        )
        .collect()
}

/// Solution of the regularised normal equations and a condition estimate.
pub struct Solution {
    pub theta: Vec<f64>,
    /// Condition number (eigenvalue ratio) of the Jacobi-scaled, regularised matrix; `NaN`
    /// when not computed.
    pub condition: f64,
    /// Whether the eigen-decomposition fallback was used.
    pub fallback: bool,
}

/// Condition numbers above this switch to the truncated eigen-solve.
const MAX_CONDITION: f64 = 1e13;

/// Solves (from the lower triangle of `a`) `(D A D + ridge I + P) z = D b`, `theta = D z` with `D = diag(A)^-1/2` (Jacobi
/// scaling) and `P` the flux penalty on the `penalized` parameters. Cholesky first; the
/// symmetric eigen-decomposition with eigenvalues below `1e-13 max` dropped when Cholesky
/// fails or the condition estimate exceeds 1e13.
pub fn solve(
    a: &Mat<f64>,
    b: &Mat<f64>,
    ridge: f64,
    penalized: &[usize],
    penalty: f64,
    want_condition: bool,
) -> Option<Solution> {
    let n = a.nrows();
    let d: Vec<f64> = (0..n)
        .map(|k| {
            let v = a[(k, k)];
            if v > 0.0 && v.is_finite() {
                1.0 / v.sqrt()
            } else {
                0.0
            }
        })
        .collect();
    // Only the lower triangle of `a` is filled (see `accumulate`).
    let mut s = Mat::<f64>::from_fn(n, n, |i, j| a[(i.max(j), i.min(j))] * d[i] * d[j]);
    for k in 0..n {
        s[(k, k)] += ridge;
        if d[k] == 0.0 {
            s[(k, k)] = 1.0; // no data: the parameter stays 0
        }
    }
    for &k in penalized {
        s[(k, k)] += penalty;
    }
    let rhs = Mat::<f64>::from_fn(n, 1, |i, _| b[(i, 0)] * d[i]);
    if s.as_ref().has_nan() || rhs.as_ref().has_nan() {
        return None;
    }
    let mut condition = f64::NAN;
    let mut eig_needed = false;
    if want_condition && let Ok(ev) = s.self_adjoint_eigenvalues(Side::Lower) {
        let lo = ev.first().copied().unwrap_or(0.0);
        let hi = ev.last().copied().unwrap_or(0.0);
        condition = if lo > 0.0 { hi / lo } else { f64::INFINITY };
        eig_needed = condition > MAX_CONDITION;
    }
    let z = match (eig_needed, s.llt(Side::Lower)) {
        (false, Ok(llt)) => llt.solve(&rhs),
        _ => {
            let evd = s.self_adjoint_eigen(Side::Lower).ok()?;
            let (u, ev) = (evd.U(), evd.S());
            let lmax = (0..n).map(|k| ev[k]).fold(0.0f64, f64::max);
            let utb = u.transpose() * &rhs;
            let scaled = Mat::<f64>::from_fn(n, 1, |k, _| {
                if ev[k] > lmax * 1e-13 {
                    utb[(k, 0)] / ev[k]
                } else {
                    0.0
                }
            });
            return finish(&d, &(u * scaled), condition, true);
        }
    };
    finish(&d, &z, condition, false)
}

fn finish(d: &[f64], z: &Mat<f64>, condition: f64, fallback: bool) -> Option<Solution> {
    let theta: Vec<f64> = d.iter().enumerate().map(|(k, dk)| dk * z[(k, 0)]).collect();
    if theta.iter().any(|v| !v.is_finite()) {
        return None;
    }
    Some(Solution {
        theta,
        condition,
        fallback,
    })
}
