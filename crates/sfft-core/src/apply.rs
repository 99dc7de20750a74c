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
const XBLOCK: usize = 512;

/// Output rows per parallel task.
const BAND: usize = 32;

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

/// One band of output rows `y0..y0 + crows.len() / nx` for `N = order + 1` coefficients per
/// shift (`e` is `[row][n_shifts][N]`), processed in column strips of `XBLOCK` so that the
/// source rows reused by neighbouring output rows stay in cache (a full 4096-px row set does
/// not).
#[allow(clippy::too_many_arguments)]
fn band<const N: usize>(
    layout: &Layout,
    e: &[f32],
    cxs: &[f32],
    c: &ArrayView2<f32>,
    var_c: &ArrayView2<f32>,
    y0: usize,
    crows: &mut [f32],
    vrows: &mut [f32],
) {
    let (ny, nx) = (layout.ny, layout.nx);
    let ns = layout.shifts.len();
    let nrows = crows.len() / nx;
    for xb in (0..nx).step_by(XBLOCK) {
        let xe = (xb + XBLOCK).min(nx);
        for r in 0..nrows {
            let y = y0 + r;
            let crow = &mut crows[r * nx..(r + 1) * nx];
            let vrow = &mut vrows[r * nx..(r + 1) * nx];
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
                let (Some(sc), Some(sv)) = (
                    c.row(yy as usize).to_slice(),
                    var_c.row(yy as usize).to_slice(),
                ) else {
                    continue;
                };
                let mut es = [0.0f32; N];
                let k0 = (r * ns + s) * N;
                es.copy_from_slice(&e[k0..k0 + N]);
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
    // Accumulated into: allocated by writing (diffim_core::mem), not zeroed.
    let mut conv = diffim_core::mem::filled_array((ny, nx), 0.0f32);
    let mut var = diffim_core::mem::filled_array((ny, nx), 0.0f32);
    let mut bg = Array2::<f32>::zeros((ny, nx));
    let mut ksum = Array2::<f32>::zeros((ny, nx));
    conv.axis_chunks_iter_mut(Axis(0), BAND)
        .into_par_iter()
        .zip(var.axis_chunks_iter_mut(Axis(0), BAND).into_par_iter())
        .zip(bg.axis_chunks_iter_mut(Axis(0), BAND).into_par_iter())
        .zip(ksum.axis_chunks_iter_mut(Axis(0), BAND).into_par_iter())
        .enumerate()
        .for_each(|(bi, (((mut cb, mut vb), mut bb), mut sb))| {
            let y0 = bi * BAND;
            let nrows = cb.nrows();
            let mut e = vec![0.0f32; nrows * ns * ncoef];
            for r in 0..nrows {
                let y = y0 + r;
                let cy = scaled(y as f64, ny);
                // Collapse the y powers: e[s][p] = sum_q a_(p,q),s cy^q.
                let mut esum = [0.0f64; 8];
                for s in 0..ns {
                    let mut acc = [0.0f64; 8];
                    for (i, &(p, q)) in layout.kterms.iter().enumerate() {
                        acc[p as usize] += kc[i][s] * cy.powi(q as i32);
                    }
                    for p in 0..ncoef {
                        e[(r * ns + s) * ncoef + p] = acc[p] as f32;
                        esum[p] += acc[p];
                    }
                }
                let mut bsum = [0.0f64; 8];
                for (j, &(p, q)) in layout.bterms.iter().enumerate() {
                    bsum[p as usize] += bcoef[j] * cy.powi(q as i32);
                }
                let poly =
                    |co: &[f64; 8], x: usize| co.iter().rev().fold(0.0f64, |a, &v| a * cxd[x] + v);
                for (x, (b, k)) in bb
                    .row_mut(r)
                    .iter_mut()
                    .zip(sb.row_mut(r).iter_mut())
                    .enumerate()
                {
                    *b = poly(&bsum, x) as f32;
                    *k = poly(&esum, x) as f32;
                }
            }
            let cr = cb.as_slice_mut().expect("standard layout");
            let vr = vb.as_slice_mut().expect("standard layout");
            let args = (layout, e.as_slice(), cxs.as_slice(), &c, &var_c, y0);
            match ncoef {
                1 => band::<1>(args.0, args.1, args.2, args.3, args.4, args.5, cr, vr),
                2 => band::<2>(args.0, args.1, args.2, args.3, args.4, args.5, cr, vr),
                3 => band::<3>(args.0, args.1, args.2, args.3, args.4, args.5, cr, vr),
                4 => band::<4>(args.0, args.1, args.2, args.3, args.4, args.5, cr, vr),
                5 => band::<5>(args.0, args.1, args.2, args.3, args.4, args.5, cr, vr),
                6 => band::<6>(args.0, args.1, args.2, args.3, args.4, args.5, cr, vr),
                _ => band::<7>(args.0, args.1, args.2, args.3, args.4, args.5, cr, vr),
            }
        });
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Slow f64 reference: the kernel at every pixel from the polynomial, then the sums.
    fn slow(
        layout: &Layout,
        kc: &[Vec<f64>],
        c: &Array2<f32>,
        v: &Array2<f32>,
    ) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
        let (ny, nx) = (layout.ny, layout.nx);
        let mut conv = Array2::<f64>::zeros((ny, nx));
        let mut var = Array2::<f64>::zeros((ny, nx));
        let mut ksum = Array2::<f64>::zeros((ny, nx));
        for y in 0..ny {
            for x in 0..nx {
                let (cx, cy) = (scaled(x as f64, nx), scaled(y as f64, ny));
                for (s, &(dy, dx)) in layout.shifts.iter().enumerate() {
                    let k: f64 = layout
                        .kterms
                        .iter()
                        .enumerate()
                        .map(|(i, &(p, q))| kc[i][s] * cx.powi(p as i32) * cy.powi(q as i32))
                        .sum();
                    ksum[[y, x]] += k;
                    let (yy, xx) = (y as isize - dy, x as isize - dx);
                    if yy < 0 || xx < 0 || yy >= ny as isize || xx >= nx as isize {
                        continue;
                    }
                    conv[[y, x]] += k * c[[yy as usize, xx as usize]] as f64;
                    var[[y, x]] += k * k * v[[yy as usize, xx as usize]] as f64;
                }
            }
        }
        (conv, var, ksum)
    }

    #[test]
    fn fast_apply_matches_slow_reference() {
        // Wider than one column strip, taller than one band, non-square kernel.
        let (ny, nx) = (70, 1100);
        for order in [0usize, 1, 2, 3] {
            let layout = Layout::new(ny, nx, (5, 7), order, 1, false);
            let nt = layout.kterms.len();
            let ns = layout.shifts.len();
            let kc: Vec<Vec<f64>> = (0..nt)
                .map(|i| {
                    (0..ns)
                        .map(|s| ((i * 31 + s * 17) % 23) as f64 / 23.0 - 0.4)
                        .collect()
                })
                .collect();
            let c = Array2::from_shape_fn((ny, nx), |(y, x)| {
                100.0 + ((y * 7 + x * 13) % 29) as f32 - 10.0 * ((x + y) % 3) as f32
            });
            let v = Array2::from_shape_fn((ny, nx), |(y, x)| 1.0 + ((y + 3 * x) % 11) as f32);
            let ap = apply(&layout, &kc, &[1.0, 0.5, -0.25], &c.view(), &v.view());
            let (conv, var, ksum) = slow(&layout, &kc, &c, &v);
            let rel = |a: &Array2<f32>, b: &Array2<f64>| {
                let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                a.iter()
                    .zip(b.iter())
                    .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y).abs()))
                    / scale
            };
            assert!(rel(&ap.conv, &conv) < 1e-5, "order {order} conv");
            assert!(rel(&ap.var, &var) < 1e-5, "order {order} var");
            assert!(rel(&ap.ksum, &ksum) < 1e-5, "order {order} ksum");
            let (cx, cy) = (scaled(5.0, nx), scaled(60.0, ny));
            let b = 1.0 + 0.5 * cx - 0.25 * cy;
            assert!((ap.bg[[60, 5]] as f64 - b).abs() < 1e-5);
        }
    }
}
