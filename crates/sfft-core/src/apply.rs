//! Applying the spatially varying kernel to the whole frame, with noise propagation.
//!
//! Direct (no FFT): on image row `y` the kernel coefficient of shift `s` is a polynomial in
//! the scaled column coordinate `cx` alone, `k_s(cx) = sum_p e_sp cx^p` with
//! `e_sp = sum_q a_(p,q),s cy^q` collapsed once per row, evaluated by Horner's rule in f32.
//! Each pixel-shift then costs `order` FMAs for the kernel value, one for the convolution and
//! two for the variance, vectorised over contiguous column runs. This is cheaper than the FFT
//! route (one forward and `n_terms` inverse full-frame FFTs for the image, and as many again
//! for the variance with the squared kernels) for kernels up to ~15x15.

use crate::layout::{Layout, scaled};
use ndarray::{Array2, ArrayView2, Axis, Zip};
use rayon::prelude::*;

/// Full-frame planes of the fitted model.
pub struct Applied {
    /// `sum_s K_x(s) C(x - s)`.
    pub conv: Array2<f32>,
    /// `sum_s K_x(s)^2 var_C(x - s)`.
    pub var: Array2<f32>,
    /// Differential background polynomial.
    pub bg: Array2<f32>,
    /// Kernel sum `sum_s K_x(s)`.
    pub ksum: Array2<f32>,
}

/// Column block processed at once (accumulators stay in L1).
const XBLOCK: usize = 1024;

/// `conv[x] += k(cx[x]) src[x]`, `var[x] += k^2 srcv[x]` with `k` the polynomial `e`
/// (`e[p]` the coefficient of `cx^p`, `N = order + 1` coefficients).
#[inline(always)]
fn accumulate_shift<const N: usize>(
    e: &[f32; N],
    cx: &[f32],
    src: &[f32],
    srcv: &[f32],
    conv: &mut [f32],
    var: &mut [f32],
) {
    let n = cx.len();
    let (src, srcv, conv, var) = (&src[..n], &srcv[..n], &mut conv[..n], &mut var[..n]);
    for j in 0..n {
        let c = cx[j];
        let mut k = e[N - 1];
        for p in (0..N - 1).rev() {
            k = k * c + e[p];
        }
        conv[j] += k * src[j];
        var[j] += k * k * srcv[j];
    }
}

/// One output row for `N = order + 1` coefficients per shift (`e` is `[n_shifts][N]`).
#[allow(clippy::too_many_arguments)]
fn row<const N: usize>(
    layout: &Layout,
    e: &[f32],
    cxs: &[f32],
    c: &ArrayView2<f32>,
    var_c: &ArrayView2<f32>,
    y: usize,
    crow: &mut [f32],
    vrow: &mut [f32],
) {
    let (ny, nx) = (layout.ny, layout.nx);
    for xb in (0..nx).step_by(XBLOCK) {
        let xe = (xb + XBLOCK).min(nx);
        for (s, &(dy, dx)) in layout.shifts.iter().enumerate() {
            let yy = y as isize - dy;
            if yy < 0 || yy >= ny as isize {
                continue;
            }
            // Output x with x - dx in [0, nx).
            let x0 = (xb as isize).max(dx) as usize;
            let x1 = (xe as isize).min(nx as isize + dx);
            if x1 <= x0 as isize {
                continue;
            }
            let x1 = x1 as usize;
            let off = (x0 as isize - dx) as usize;
            let n = x1 - x0;
            let (Some(sc), Some(sv)) = (c.row(yy as usize).to_slice(), var_c.row(yy as usize).to_slice())
            else {
                continue;
            };
            let mut es = [0.0f32; N];
            es.copy_from_slice(&e[s * N..(s + 1) * N]);
            accumulate_shift::<N>(
                &es,
                &cxs[x0..x1],
                &sc[off..off + n],
                &sv[off..off + n],
                &mut crow[x0..x1],
                &mut vrow[x0..x1],
            );
        }
    }
}

/// Evaluates the model on every pixel. `kc[i][s]` are the plain-delta kernel coefficients of
/// polynomial term `i` at shift `s`; pixels whose footprint leaves the image use zeros there
/// (they are masked by the caller). `c` and `var_c` must be in standard (row-major) layout.
pub fn apply(
    layout: &Layout,
    kc: &[Vec<f64>],
    bcoef: &[f64],
    c: &ArrayView2<f32>,
    var_c: &ArrayView2<f32>,
) -> Applied {
    let (ny, nx) = (layout.ny, layout.nx);
    let c = c.as_standard_layout();
    let var_c = var_c.as_standard_layout();
    let (c, var_c) = (c.view(), var_c.view());
    let ns = layout.shifts.len();
    let kord = layout
        .kterms
        .iter()
        .map(|&(p, _)| p as usize)
        .max()
        .unwrap_or(0);
    let ncoef = kord + 1;
    let cxs: Vec<f32> = (0..nx).map(|x| scaled(x as f64, nx) as f32).collect();
    let cxd: Vec<f64> = (0..nx).map(|x| scaled(x as f64, nx)).collect();
    let mut conv = Array2::<f32>::zeros((ny, nx));
    let mut var = Array2::<f32>::zeros((ny, nx));
    let mut bg = Array2::<f32>::zeros((ny, nx));
    let mut ksum = Array2::<f32>::zeros((ny, nx));
    conv.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(var.axis_iter_mut(Axis(0)).into_par_iter())
        .zip(bg.axis_iter_mut(Axis(0)).into_par_iter())
        .zip(ksum.axis_iter_mut(Axis(0)).into_par_iter())
        .enumerate()
        .for_each_init(
            || vec![0.0f32; ns * ncoef],
            |e, (y, (((mut crow, mut vrow), mut brow), mut srow))| {
                let cy = scaled(y as f64, ny);
                // Collapse the y powers: e[s][p] = sum_q a_(p,q),s cy^q.
                let mut esum = [0.0f64; 8];
                e.iter_mut().for_each(|v| *v = 0.0);
                for s in 0..ns {
                    let mut acc = [0.0f64; 8];
                    for (i, &(p, q)) in layout.kterms.iter().enumerate() {
                        acc[p as usize] += kc[i][s] * cy.powi(q as i32);
                    }
                    for p in 0..ncoef {
                        e[s * ncoef + p] = acc[p] as f32;
                        esum[p] += acc[p];
                    }
                }
                let mut bsum = [0.0f64; 8];
                for (j, &(p, q)) in layout.bterms.iter().enumerate() {
                    bsum[p as usize] += bcoef[j] * cy.powi(q as i32);
                }
                let poly = |co: &[f64; 8], x: usize| {
                    co.iter().rev().fold(0.0f64, |a, &v| a * cxd[x] + v)
                };
                for (x, (b, k)) in brow.iter_mut().zip(srow.iter_mut()).enumerate() {
                    *b = poly(&bsum, x) as f32;
                    *k = poly(&esum, x) as f32;
                }
                let cr = crow.as_slice_mut().expect("standard layout");
                let vr = vrow.as_slice_mut().expect("standard layout");
                match ncoef {
                    1 => row::<1>(layout, e, &cxs, &c, &var_c, y, cr, vr),
                    2 => row::<2>(layout, e, &cxs, &c, &var_c, y, cr, vr),
                    3 => row::<3>(layout, e, &cxs, &c, &var_c, y, cr, vr),
                    4 => row::<4>(layout, e, &cxs, &c, &var_c, y, cr, vr),
                    5 => row::<5>(layout, e, &cxs, &c, &var_c, y, cr, vr),
                    6 => row::<6>(layout, e, &cxs, &c, &var_c, y, cr, vr),
                    _ => row::<7>(layout, e, &cxs, &c, &var_c, y, cr, vr),
                }
            },
        );
    Applied {
        conv,
        var,
        bg,
        ksum,
    }
}

/// Zeroes non-finite or masked values (returns a copy).
pub fn clean(img: &ArrayView2<f32>, bad: &ArrayView2<bool>) -> Array2<f32> {
    let mut out = img.to_owned();
    Zip::from(&mut out).and(bad).par_for_each(|o, &b| {
        if b || !o.is_finite() {
            *o = 0.0;
        }
    });
    out
}
