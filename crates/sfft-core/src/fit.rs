//! Weighted normal equations on the selected pixels, solved with faer.
//!
//! The design matrix is never held: for each chunk of `CHUNK` rows only the shift values
//! `Phi` (`n_shifts` per row) are formed, and `A = X^T W X`, `b = X^T W y` are assembled from
//! `Phi^T diag(w mu) Phi` (lower triangles, faer's triangular matmul) and `Phi^T [w mu, w y mu]`
//! over the product monomials `mu` (see [`accumulate`]). Sigma clipping removes (or restores)
//! the changed rows by the same update with a negative (positive) sign, so no iteration
//! rebuilds the whole matrix.

use crate::layout::{Layout, monomials, scaled};
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

/// Accumulates (the lower triangle of) `sign * X^T W X` and `sign * X^T W y` over `rows`
/// into `a`, `b`, exploiting the structure of the design: the column of parameter `(i, s)` is
/// `m_i(x) phi_s(x)` (monomial times differential shift value), so
/// `sum_x w m_i m_j phi_s phi_s' = G_mu[s, s']` with `mu = m_i m_j` one of the few product
/// monomials (15 for kernel order 2). Each chunk of rows adds `Phi^T diag(w mu) Phi` (lower
/// triangle, `n_shifts^2` wide) per product monomial instead of one `n_params^2` product:
/// `15 * 81^2` instead of `492^2 / 2` flops per row for a 9x9 kernel at order 2 (2.5x fewer).
pub fn accumulate(
    layout: &Layout,
    c: &ArrayView2<f32>,
    t: &ArrayView2<f32>,
    rows: &[Row],
    sign: f64,
    a: &mut Mat<f64>,
    b: &mut Mat<f64>,
) {
    let ns = layout.shifts.len();
    let nk = layout.kparams.len();
    let mo = 2 * layout.max_order;
    let prods = monomials(mo);
    let nm = prods.len();
    let pidx = |p: u32, q: u32| -> usize {
        // monomials() order: by total degree d = p + q, then increasing q.
        let d = (p + q) as usize;
        d * (d + 1) / 2 + q as usize
    };
    // Which product monomials enter the shift-shift blocks.
    let mut need_g = vec![false; nm];
    for &(pi, qi) in &layout.kterms {
        for &(pj, qj) in &layout.kterms {
            need_g[pidx(pi + pj, qi + qj)] = true;
        }
    }
    let gl: Vec<usize> = (0..nm).filter(|&k| need_g[k]).collect();
    // Accumulators: G per needed monomial (ns x ns, lower), F = Phi^T [w mu | w t mu] (ns x 2nm),
    // moments h[k] = sum w mu, ht[k] = sum w t mu.
    let mut g: Vec<Mat<f64>> = gl.iter().map(|_| Mat::zeros(ns, ns)).collect();
    let mut f = Mat::<f64>::zeros(ns, 2 * nm);
    let mut h = vec![0.0f64; nm];
    let mut ht = vec![0.0f64; nm];
    for chunk in rows.chunks(CHUNK) {
        let n = chunk.len();
        // Phi^T column-major (each row's shift values contiguous), and the weighted monomials.
        let mut buf = vec![0.0f64; n * ns];
        let mut wm = Mat::<f64>::zeros(n, 2 * nm);
        buf.par_chunks_mut(ns)
            .zip(chunk.par_iter())
            .for_each(|(col, r)| layout.fill_shifts(c, r.y, r.x, col));
        for (k, r) in chunk.iter().enumerate() {
            let mut px = [0.0f64; 16];
            let mut py = [0.0f64; 16];
            powers(scaled(r.x as f64, layout.nx), mo, &mut px);
            powers(scaled(r.y as f64, layout.ny), mo, &mut py);
            let w = r.sw * r.sw;
            let tv = t[[r.y, r.x]] as f64;
            for (m, &(p, q)) in prods.iter().enumerate() {
                let v = w * px[p as usize] * py[q as usize];
                wm[(k, m)] = v;
                wm[(k, nm + m)] = v * tv;
                h[m] += v;
                ht[m] += v * tv;
            }
        }
        let xt = MatRef::from_column_major_slice(&buf, ns, n);
        matmul(f.as_mut(), Accum::Add, xt, wm.as_ref(), 1.0, Par::rayon(0));
        let mut scaled_buf = vec![0.0f64; n * ns];
        for (gi, &m) in gl.iter().enumerate() {
            scaled_buf
                .par_chunks_mut(ns)
                .zip(buf.par_chunks(ns))
                .enumerate()
                .for_each(|(k, (o, src))| {
                    let v = wm[(k, m)];
                    for (o, s) in o.iter_mut().zip(src) {
                        *o = v * s;
                    }
                });
            let yt = MatRef::from_column_major_slice(&scaled_buf, ns, n);
            triangular::matmul(
                g[gi].as_mut(),
                BlockStructure::TriangularLower,
                Accum::Add,
                yt,
                BlockStructure::Rectangular,
                xt.transpose(),
                BlockStructure::Rectangular,
                1.0,
                Par::rayon(0),
            );
        }
    }
    // Assemble (lower triangle of a).
    let mut gpos = vec![usize::MAX; nm];
    for (gi, &m) in gl.iter().enumerate() {
        gpos[m] = gi;
    }
    let sym = |gm: &Mat<f64>, s: usize, s2: usize| gm[(s.max(s2), s.min(s2))];
    for (u, &(i, s)) in layout.kparams.iter().enumerate() {
        let (pi, qi) = layout.kterms[i];
        for (v, &(j, s2)) in layout.kparams.iter().enumerate().take(u + 1) {
            let (pj, qj) = layout.kterms[j];
            a[(u, v)] += sign * sym(&g[gpos[pidx(pi + pj, qi + qj)]], s, s2);
        }
        for (qb, &(pb, qqb)) in layout.bterms.iter().enumerate() {
            a[(nk + qb, u)] += sign * f[(s, pidx(pi + pb, qi + qqb))];
        }
        b[(u, 0)] += sign * f[(s, nm + pidx(pi, qi))];
    }
    for (qb, &(pb, qqb)) in layout.bterms.iter().enumerate() {
        for (qb2, &(pb2, qqb2)) in layout.bterms.iter().enumerate().take(qb + 1) {
            a[(nk + qb, nk + qb2)] += sign * h[pidx(pb + pb2, qqb + qqb2)];
        }
        b[(nk + qb, 0)] += sign * ht[pidx(pb, qqb)];
    }
}

/// Powers `c^0 .. c^order` into `out`.
#[inline]
fn powers(c: f64, order: usize, out: &mut [f64]) {
    let mut v = 1.0;
    for o in out.iter_mut().take(order + 1) {
        *o = v;
        v *= c;
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
    /// Condition number of the Jacobi-scaled, regularised matrix: the eigenvalue ratio, or,
    /// when the ridge bounds it below 1e13, the Cholesky estimate `max L_kk^2 / min L_kk^2`
    /// (a lower bound); `NaN` when not computed.
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
    // `s` = (PSD scaled matrix) + ridge I + penalty: its eigenvalues lie in [ridge, trace], so
    // with a large enough ridge the condition cannot reach MAX_CONDITION and the (costly)
    // eigenvalues are skipped; the Cholesky estimate is reported instead.
    let trace: f64 = (0..n).map(|k| s[(k, k)]).sum();
    let bounded = ridge > 0.0 && trace / ridge <= MAX_CONDITION;
    if want_condition
        && !bounded
        && let Ok(ev) = s.self_adjoint_eigenvalues(Side::Lower)
    {
        let lo = ev.first().copied().unwrap_or(0.0);
        let hi = ev.last().copied().unwrap_or(0.0);
        condition = if lo > 0.0 { hi / lo } else { f64::INFINITY };
        eig_needed = condition > MAX_CONDITION;
    }
    let z = match (eig_needed, s.llt(Side::Lower)) {
        (false, Ok(llt)) => {
            if want_condition && bounded {
                let l = llt.L();
                let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
                for k in 0..n {
                    let v = l[(k, k)] * l[(k, k)];
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
                condition = hi / lo;
            }
            llt.solve(&rhs)
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::Array2;

    #[allow(dead_code)]
    /// Reference for [`accumulate`] (tests): the plain chunked product of weighted design rows;
    /// accumulates (the lower triangle of) `sign * X^T X` and `sign * X^T y` over `rows` into `a`, `b`.
    pub fn accumulate_dense(
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

    #[test]
    fn structured_accumulation_matches_dense_rows() {
        let (ny, nx) = (40, 50);
        let c = Array2::from_shape_fn((ny, nx), |(y, x)| {
            ((y * 7 + x * 3) % 13) as f32 + 0.1 * x as f32
        });
        let t = Array2::from_shape_fn((ny, nx), |(y, x)| ((y + 2 * x) % 5) as f32 - 1.0);
        let rows: Vec<Row> = (3..ny - 3)
            .flat_map(|y| (3..nx - 3).map(move |x| (y, x)))
            .filter(|(y, x)| (y + x) % 3 != 0)
            .map(|(y, x)| Row {
                y,
                x,
                sw: 0.5 + ((x * y) % 4) as f64 * 0.25,
            })
            .collect();
        for (ko, bo, cf) in [(2usize, 2usize, false), (1, 3, true), (0, 1, false)] {
            let layout = Layout::new(ny, nx, (5, 3), ko, bo, cf);
            let np = layout.n_params();
            let (mut a1, mut b1) = (Mat::<f64>::zeros(np, np), Mat::<f64>::zeros(np, 1));
            let (mut a2, mut b2) = (Mat::<f64>::zeros(np, np), Mat::<f64>::zeros(np, 1));
            accumulate(&layout, &c.view(), &t.view(), &rows, 1.0, &mut a1, &mut b1);
            accumulate(
                &layout,
                &c.view(),
                &t.view(),
                &rows[..100],
                -1.0,
                &mut a1,
                &mut b1,
            );
            accumulate_dense(
                &layout,
                &c.view(),
                &t.view(),
                &rows[100..],
                1.0,
                &mut a2,
                &mut b2,
            );
            let scale = (0..np).map(|k| a2[(k, k)].abs()).fold(0.0f64, f64::max);
            for i in 0..np {
                for j in 0..=i {
                    assert!(
                        (a1[(i, j)] - a2[(i, j)]).abs() <= 1e-9 * scale,
                        "order {ko}/{bo}: a[{i},{j}] {} vs {}",
                        a1[(i, j)],
                        a2[(i, j)]
                    );
                }
                assert!((b1[(i, 0)] - b2[(i, 0)]).abs() <= 1e-9 * scale.max(1.0));
            }
        }
    }
}
