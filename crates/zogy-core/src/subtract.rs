//! [`zogy`]: preparation, flux-ratio fit, tiling and blending around the spectral core.

use crate::engine::{
    Model, ThreadBufs, TilePsf, TileStats, centre_products, new_bufs, row_of, run_tile,
};
use crate::fluxfit::{Side, fit_flux_ratio};
use crate::prep::{background_sigma, inpaint};
use crate::psf::checked_stamp;
use crate::{
    BetaMode, ZogyDiagnostics, ZogyError, ZogyInputs, ZogyParams, ZogyResult, odd_fast_len,
};
use diffim_core::fft::{Fft2, next_fast_len, next_fast_real_len};
use diffim_core::mask::dilate;
use diffim_core::mem::filled_array;
use diffim_core::stats::{MAD_TO_SIGMA, median_two_pass};
use ndarray::{Array2, ArrayView2, Axis, Zip, s};
use rayon::prelude::*;

fn check_shape<T>(
    what: &'static str,
    dim: (usize, usize),
    a: Option<&ArrayView2<T>>,
) -> Result<(), ZogyError> {
    match a {
        Some(a) if a.dim() != dim => Err(ZogyError::ShapeMismatch {
            what,
            expected: dim,
            got: a.dim(),
        }),
        _ => Ok(()),
    }
}

/// A tile: its core rows `(y0, y1)` and columns `(x0, x1)`.
type Tile = ((usize, usize), (usize, usize));

/// Splits `[0, n)` into `round(n / t)` (at least 1) near-equal cores.
fn cores(n: usize, t: usize) -> Vec<(usize, usize)> {
    let k = ((n as f64 / t.max(1) as f64).round() as usize).max(1);
    (0..k).map(|i| (i * n / k, (i + 1) * n / k)).collect()
}

/// Padded FFT length of an axis of length `n` cut into the cores `c`: a tile's region (the
/// core and `ext` on each side, clipped to the axis) needs no zero padding of its own, as the FFT's
/// wrap-around reaches only the outer margin, whose output is not used. Where the region
/// meets the axis' end, that output is used, and `margin` zeros keep the far side from
/// wrapping in.
fn padded_need(c: &[(usize, usize)], n: usize, ext: usize, margin: usize) -> usize {
    c.iter()
        .map(|&(a, b)| {
            let (r0, r1) = (a.saturating_sub(ext), (b + ext).min(n));
            r1 - r0 + if r0 == 0 || r1 == n { margin } else { 0 }
        })
        .max()
        .unwrap_or(0)
}

/// The `round(n / t)` cores of an axis and their padded FFT length `(len, cores)`, with the
/// cores sized to fill a fast length: the two end tiles need `ext + margin` besides their
/// core, the inner ones `2 ext`, so the end cores are the wider ones. `fast` rounds a length
/// up to a fast one, `min_len` is the least length. Equal cores padded to a fast length can
/// waste a tenth of the FFT area (1024 px in 4 cores with `ext` 44, `margin` 28: 384 per
/// tile, against 336 with the end cores 264 and the inner ones 248).
fn fitted_cores(
    n: usize,
    t: usize,
    ext: usize,
    margin: usize,
    min_len: usize,
    fast: impl Fn(usize) -> usize,
) -> (usize, Vec<(usize, usize)>) {
    let equal = cores(n, t);
    let k = equal.len();
    let fallback = || {
        let len = fast(padded_need(&equal, n, ext, margin).max(min_len));
        (len, equal.clone())
    };
    if k < 2 {
        return fallback();
    }
    // Core widths that fit a padded length `p`: ends, inner.
    let widths = |p: usize| Some((p.checked_sub(ext + margin)?, p.checked_sub(2 * ext)?));
    let capacity = |p: usize| widths(p).map_or(0, |(e, i)| 2 * e + (k - 2) * i);
    let mut p = fast(min_len.max(2 * ext + 1));
    while capacity(p) < n {
        p = fast(p + 1);
    }
    let Some((e, i)) = widths(p) else {
        return fallback();
    };
    // Trim the excess evenly over the cores.
    let excess = capacity(p) - n;
    let mut a = 0;
    let fitted: Vec<(usize, usize)> = (0..k)
        .map(|j| {
            let w = if j == 0 || j == k - 1 { e } else { i };
            let w = w.saturating_sub(excess / k + usize::from(j < excess % k));
            let c = (a, (a + w).min(n));
            a += w;
            c
        })
        .collect();
    // Every core at least `ext` wide (so no inner region reaches an end) and the cores
    // tiling `[0, n)`; otherwise equal cores.
    let ok = a == n
        && fitted.iter().all(|&(a, b)| b >= a + ext.max(1))
        && padded_need(&fitted, n, ext, margin) <= p;
    if ok { (p, fitted) } else { fallback() }
}

/// cos^2 blend weight of coordinate `p` for a core `[a, b)` of an axis of length `n`, with blend
/// half-width `ov`: complementary weights of neighbours sum to exactly 1.
fn blend_weight(p: usize, a: usize, b: usize, n: usize, ov: usize) -> f64 {
    if ov == 0 {
        return if p >= a && p < b { 1.0 } else { 0.0 };
    }
    let ramp = |t: f64| {
        (std::f64::consts::FRAC_PI_2 * t.clamp(0.0, 1.0))
            .sin()
            .powi(2)
    };
    let pf = p as f64 + 0.5;
    let up = if a == 0 {
        1.0
    } else {
        ramp((pf - (a as f64 - ov as f64)) / (2.0 * ov as f64))
    };
    let down = if b == n {
        1.0
    } else {
        ramp(((b + ov) as f64 - pf) / (2.0 * ov as f64))
    };
    up * down
}

/// ZOGY proper image subtraction of `inputs.reference` from `inputs.new`.
///
/// Steps: masks (input masks, NaN/Inf, bad noise values) -> inpainting of bad pixels by the
/// local mean -> background RMS -> flux ratio `beta` and shift from matched PSF photometry of
/// `inputs.stars` (robust Tukey mean) -> offset `gamma` -> spectral core per tile (one tile for
/// constant PSFs; overlapping tiles blended with cos^2 weights otherwise, one tile per thread)
/// -> output mask (bad pixels dilated by the PSF half-size).
///
/// # Errors
/// Shape mismatches, images smaller than the PSF, invalid PSF stamps, no good pixel, a
/// non-positive sigma, invalid parameters, or too few stars for a fitted `beta`.
pub fn zogy(inputs: &ZogyInputs, params: &ZogyParams) -> Result<ZogyResult, ZogyError> {
    let dim = inputs.new.dim();
    let (ny, nx) = dim;
    check_shape("reference", dim, Some(&inputs.reference))?;
    check_shape("new_mask", dim, inputs.new_mask.as_ref())?;
    check_shape("ref_mask", dim, inputs.ref_mask.as_ref())?;
    check_shape("new_noise", dim, inputs.new_noise.as_ref())?;
    check_shape("ref_noise", dim, inputs.ref_noise.as_ref())?;
    if !(params.f_ref.is_finite() && params.f_ref > 0.0) {
        return Err(ZogyError::BadParam {
            name: "f_ref",
            value: params.f_ref,
            reason: "must be finite and > 0",
        });
    }
    for (name, v) in [
        ("sigma_astrometric.0", params.sigma_astrometric.0),
        ("sigma_astrometric.1", params.sigma_astrometric.1),
        ("psf_error", params.psf_error),
        ("psf_wing_error", params.psf_wing_error),
        ("psf_wing_sigma", params.psf_wing_sigma),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(ZogyError::BadParam {
                name,
                value: v,
                reason: "must be finite and >= 0",
            });
        }
    }
    if let BetaMode::Fixed(b) = params.beta
        && !(b.is_finite() && b > 0.0)
    {
        return Err(ZogyError::BadParam {
            name: "beta",
            value: b,
            reason: "must be finite and > 0",
        });
    }

    // PSFs at the centre fix the stamp side, the margin and the kernel grid.
    let (xc, yc) = ((nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0);
    let pn_c = checked_stamp(inputs.new_psf, xc, yc, "new")?;
    let pr_c = checked_stamp(inputs.ref_psf, xc, yc, "reference")?;
    let side = pn_c
        .dim()
        .0
        .max(pn_c.dim().1)
        .max(pr_c.dim().0)
        .max(pr_c.dim().1);
    if ny < side || nx < side || ny == 0 || nx == 0 {
        return Err(ZogyError::ImageTooSmall {
            shape: dim,
            stamp: side,
        });
    }
    let half = side / 2;
    let margin = side + half;
    let kgrid = odd_fast_len(2 * side + 1);

    // Bad pixels of either input, inpainted consistently in both.
    // Non-finite pixels of both, written straight into the new mask; then the masks and the
    // noise maps OR-ed in (parallel passes, no temporaries).
    let mut bad = Zip::from(&inputs.new)
        .and(&inputs.reference)
        .par_map_collect(|&a, &b| !(a.is_finite() && b.is_finite()));
    for m in [inputs.new_mask.as_ref(), inputs.ref_mask.as_ref()]
        .into_iter()
        .flatten()
    {
        Zip::from(&mut bad).and(m).par_for_each(|a, &b| *a |= b);
    }
    for nm in [inputs.new_noise.as_ref(), inputs.ref_noise.as_ref()]
        .into_iter()
        .flatten()
    {
        Zip::from(&mut bad)
            .and(nm)
            .par_for_each(|a, &v| *a |= !(v.is_finite() && v > 0.0));
    }
    let n_bad = bad.par_iter().filter(|&&b| b).count();
    if n_bad == ny * nx {
        return Err(ZogyError::NoGoodPixels {
            which: "new or reference",
        });
    }
    let fill = |img: &ArrayView2<f32>| {
        let mut a = img.to_owned();
        inpaint(&mut a, &bad.view());
        a
    };
    let (mut n_img, r_img) = rayon::join(|| fill(&inputs.new), || fill(&inputs.reference));

    let sig = |given, img: &ArrayView2<f32>, noise: Option<&ArrayView2<f32>>, which| {
        let s = background_sigma(given, img, noise, &bad.view()).unwrap_or(f64::NAN);
        if s.is_finite() && s > 0.0 {
            Ok(s)
        } else {
            Err(ZogyError::BadSigma { which, value: s })
        }
    };
    let sigma_n = sig(
        inputs.sigma_new,
        &n_img.view(),
        inputs.new_noise.as_ref(),
        "new",
    )?;
    let sigma_r = sig(
        inputs.sigma_ref,
        &r_img.view(),
        inputs.ref_noise.as_ref(),
        "reference",
    )?;

    // Flux ratio and shift.
    let need_fit =
        matches!(params.beta, BetaMode::Fit) || (params.fit_shift && !inputs.stars.is_empty());
    let (mut beta, mut beta_err, mut shift, mut n_iter, mut n_used, mut n_kept) =
        (1.0, 0.0, (0.0, 0.0), 0, 0, 0);
    let mut sig_ast = params.sigma_astrometric;
    if let BetaMode::Fixed(b) = params.beta {
        beta = b;
    }
    if need_fit {
        let fit = fit_flux_ratio(
            &Side {
                img: n_img.view(),
                noise: inputs.new_noise,
                sigma: sigma_n,
                psf: inputs.new_psf,
            },
            &Side {
                img: r_img.view(),
                noise: inputs.ref_noise,
                sigma: sigma_r,
                psf: inputs.ref_psf,
            },
            &bad.view(),
            inputs.stars,
            params.min_star_snr,
            params.min_stars,
            params.tukey_c,
            params.max_iter,
        );
        match (fit, params.beta) {
            (Ok(f), mode) => {
                if matches!(mode, BetaMode::Fit) {
                    beta = f.beta;
                    beta_err = f.beta_err;
                    n_iter = f.n_iter;
                }
                if params.fit_shift {
                    shift = f.shift;
                }
                if params.estimate_astrometric && sig_ast == (0.0, 0.0) {
                    let keep = |v: f64| if v >= 0.01 { v } else { 0.0 };
                    sig_ast = (keep(f.shift_scatter.0), keep(f.shift_scatter.1));
                }
                n_used = f.n_used;
                n_kept = f.n_kept;
            }
            (Err(e), BetaMode::Fit) => return Err(e),
            (Err(_), BetaMode::Fixed(_)) => {}
        }
    }

    // Constant offset of N - beta R.
    let mut offset = 0.0;
    if params.fit_offset {
        let step = ((ny * nx / 500_000) as f64).sqrt().ceil().max(1.0) as usize;
        // Two passes over the values instead of an image-sized copy to select in.
        let sub = s![..;step, ..;step];
        offset = median_two_pass(n_img.slice(sub).nrows(), |y, buf| {
            let (a, b, m) = (n_img.slice(sub), r_img.slice(sub), bad.slice(sub));
            buf.extend(
                a.row(y)
                    .iter()
                    .zip(b.row(y))
                    .zip(m.row(y))
                    .filter(|&(_, &m)| !m)
                    .map(|((&a, &b), _)| a as f64 - beta * b as f64),
            );
        })
        .unwrap_or(0.0);
        n_img.par_mapv_inplace(|v| (v as f64 - offset) as f32);
    }

    // Noise maps enter as variances, zero on bad pixels: squared tile by tile (no
    // image-sized copies).
    let (vn_full, vr_full) = (inputs.new_noise.as_ref(), inputs.ref_noise.as_ref());

    let model = Model {
        f_n: beta * params.f_ref,
        f_r: params.f_ref,
        sn2: sigma_n * sigma_n,
        sr2: sigma_r * sigma_r,
        den_floor: params.den_floor,
        shift,
        sig_ast,
        psf_err: params.psf_error,
        wing_err: params.psf_wing_error,
        wing_sigma: if params.psf_wing_sigma > 0.0 {
            params.psf_wing_sigma
        } else {
            0.25 * side as f64
        },
    };

    // Tiles.
    let constant = inputs.new_psf.is_constant() && inputs.ref_psf.is_constant();
    let (tile_y, tile_x, ov) = if constant {
        match params.constant_tile_size {
            0 => (usize::MAX, usize::MAX, 0),
            t => (t, t, 0),
        }
    } else {
        let ov = params.tile_overlap.min(params.tile_size / 2);
        (params.tile_size, params.tile_size, ov)
    };
    let ext = ov + margin;
    // Cores per axis, sized so that each tile's region fills a fast FFT length (rows: a
    // complex transform, columns: a real one).
    let (py, ycores) = fitted_cores(ny, tile_y, ext, margin, kgrid, next_fast_len);
    let (px, xcores) = fitted_cores(nx, tile_x, ext, margin, kgrid, next_fast_real_len);
    let fft = Fft2::<f32>::new(py, px);
    let noise = (vn_full.is_some(), vr_full.is_some());
    // Both PSFs constant: one set of transfer functions serves every tile.
    let shared_psf = constant.then(|| TilePsf::new(&fft, &pn_c, &pr_c, kgrid, &model, noise));
    // Tiles run side by side, one per thread (a tile's many small parallel passes keep two
    // threads busy less well than two tiles do), each batch then blended in order. Buffers:
    // one set per thread, reused from tile to tile.
    let tiles: Vec<Tile> = ycores
        .iter()
        .flat_map(|&yc| xcores.iter().map(move |&xc| (yc, xc)))
        .collect();
    let batch = rayon::current_num_threads().clamp(1, tiles.len().max(1));
    let mut works: Vec<ThreadBufs> = new_bufs(&fft, noise, batch);
    let run = |((y0, y1), (x0, x1)): Tile, b: &mut ThreadBufs| -> Result<TileStats, ZogyError> {
        let ThreadBufs {
            work: w,
            psf: psf_slot,
        } = b;
        let (ry0, ry1) = (y0.saturating_sub(ext), (y1 + ext).min(ny));
        let (rx0, rx1) = (x0.saturating_sub(ext), (x1 + ext).min(nx));
        let (h, wd) = (ry1 - ry0, rx1 - rx0);
        let region = s![ry0..ry1, rx0..rx1];
        // The tile's region in the top-left corner of the padded buffer, zeros elsewhere.
        let pad = |dst: &mut Array2<f32>, fill: &dyn Fn(ndarray::ArrayViewMut2<f32>)| {
            dst.slice_mut(s![h.., ..]).fill(0.0);
            dst.slice_mut(s![..h, wd..]).fill(0.0);
            fill(dst.slice_mut(s![..h, ..wd]));
        };
        let psf = match &shared_psf {
            Some(p) => p,
            None => {
                let (tx, ty) = ((x0 + x1) as f64 / 2.0 - 0.5, (y0 + y1) as f64 / 2.0 - 0.5);
                let pn = checked_stamp(inputs.new_psf, tx, ty, "new")?;
                let pr = checked_stamp(inputs.ref_psf, tx, ty, "reference")?;
                let too_big = |p: &Array2<f64>| {
                    p.dim().0 > py || p.dim().1 > px || p.dim().0 > kgrid || p.dim().1 > kgrid
                };
                if too_big(&pn) || too_big(&pr) {
                    return Err(ZogyError::ImageTooSmall {
                        shape: (py, px),
                        stamp: pn.dim().0.max(pr.dim().0),
                    });
                }
                // This thread's transfer functions, renewed in place.
                match psf_slot {
                    Some(p) => {
                        p.update(&fft, &pn, &pr, kgrid, &model, noise);
                        p
                    }
                    None => psf_slot.insert(TilePsf::new(&fft, &pn, &pr, kgrid, &model, noise)),
                }
            }
        };
        pad(&mut w.n, &|mut d| d.assign(&n_img.slice(region)));
        pad(&mut w.r, &|mut d| d.assign(&r_img.slice(region)));
        for (dst, src) in [(&mut w.vn, vn_full), (&mut w.vr, vr_full)] {
            if let (Some(d), Some(src)) = (dst.as_mut(), src) {
                pad(d, &|mut d| {
                    for ((mut o, x), m) in d
                        .rows_mut()
                        .into_iter()
                        .zip(src.slice(region).rows())
                        .zip(bad.slice(region).rows())
                    {
                        match (o.as_slice_mut(), x.as_slice(), m.as_slice()) {
                            (Some(o), Some(x), Some(m)) => {
                                // `if m { 0.0 } else { x * x }` as a bit mask (+0.0 where
                                // masked), so that the loop vectorises.
                                let n = o.len();
                                let (x, m) = (&x[..n], &m[..n]);
                                for i in 0..n {
                                    let keep = u32::from(m[i]).wrapping_sub(1);
                                    o[i] = f32::from_bits((x[i] * x[i]).to_bits() & keep);
                                }
                            }
                            _ => Zip::from(o)
                                .and(x)
                                .and(m)
                                .for_each(|v, &x, &m| *v = if m { 0.0 } else { x * x }),
                        }
                    }
                });
            }
        }
        // The output region: the core and its blend zone.
        let (oy0, oy1) = (y0.saturating_sub(ov), (y1 + ov).min(ny));
        let (ox0, ox1) = (x0.saturating_sub(ov), (x1 + ov).min(nx));
        let out = ((oy0 - ry0, oy1 - ry0), (ox0 - rx0, ox1 - rx0));
        Ok(run_tile(&fft, w, psf, &model, out))
    };

    // Blended outputs, accumulated in place (f32: at most four tiles overlap a pixel). The
    // weights are separable, w(y) w(x), so their sum per pixel is the product of 1-D sums.
    // Allocated by writing (diffim_core::mem): accumulating into fresh zeroed pages costs a
    // second page fault and a TLB shootdown per page.
    let mut d = filled_array(dim, 0.0f32);
    let mut s_out = filled_array(dim, 0.0f32);
    let mut scorr = filled_array(dim, 0.0f32);
    let mut flux = filled_array(dim, 0.0f32);
    let mut flux_err = filled_array(dim, 0.0f32);
    let wsum_axis = |n: usize, c: &[(usize, usize)]| -> Vec<f64> {
        (0..n)
            .map(|p| c.iter().map(|&(a, b)| blend_weight(p, a, b, n, ov)).sum())
            .collect()
    };
    let (wsum_y, wsum_x) = (wsum_axis(ny, &ycores), wsum_axis(nx, &xcores));
    // Output mask: bad pixels dilated by the PSF half-size. S, Scorr and the flux are zero
    // there.
    let mask = dilate(&bad.view(), half);
    let mut ffts_per_tile = 0;
    for chunk in tiles.chunks(batch) {
        let stats: Vec<Result<TileStats, ZogyError>> = chunk
            .par_iter()
            .zip(works.par_iter_mut())
            .map(|(&t, w)| run(t, w))
            .collect();
        for ((&((y0, y1), (x0, x1)), st), b) in chunk.iter().zip(stats).zip(&works) {
            let w = &b.work;
            let st = st?;
            let (ry0, rx0) = (y0.saturating_sub(ext), x0.saturating_sub(ext));
            ffts_per_tile = st.n_fft;
            let (oy0, oy1) = (y0.saturating_sub(ov), (y1 + ov).min(ny));
            let (ox0, ox1) = (x0.saturating_sub(ov), (x1 + ov).min(nx));
            let wx: Vec<f32> = (ox0..ox1)
                .map(|x| (blend_weight(x, x0, x1, nx, ov) / wsum_x[x]) as f32)
                .collect();
            let inv_fs = (1.0 / st.f_s) as f32;
            let reg = s![oy0..oy1, ox0..ox1];
            let cols = ox0 - rx0..ox1 - rx0;
            let mut views = [&mut d, &mut s_out, &mut scorr, &mut flux, &mut flux_err]
                .map(|a| a.slice_mut(reg));
            let [v0, v1, v2, v3, v4] = &mut views;
            v0.axis_iter_mut(Axis(0))
                .into_par_iter()
                .zip(v1.axis_iter_mut(Axis(0)))
                .zip(v2.axis_iter_mut(Axis(0)))
                .zip(v3.axis_iter_mut(Axis(0)))
                .zip(v4.axis_iter_mut(Axis(0)))
                .zip(mask.slice(reg).axis_iter(Axis(0)))
                .enumerate()
                .for_each(
                    |(j, (((((mut dr, mut sr), mut cr), mut fr), mut er), mr))| {
                        let y = oy0 + j;
                        let wy = (blend_weight(y, y0, y1, ny, ov) / wsum_y[y]) as f32;
                        if wy <= 0.0 {
                            return;
                        }
                        let ty = y - ry0;
                        let row = |a| &row_of(a, ty)[cols.clone()];
                        let (tdr, tsr, tsd) = (row(&w.d), row(&w.s), row(&w.sd));
                        let slices = (
                            dr.as_slice_mut(),
                            sr.as_slice_mut(),
                            cr.as_slice_mut(),
                            fr.as_slice_mut(),
                            er.as_slice_mut(),
                            mr.as_slice(),
                        );
                        let (Some(dr), Some(sr), Some(cr), Some(fr), Some(er), Some(mr)) = slices
                        else {
                            unreachable!("owned planes and mask rows are contiguous")
                        };
                        // All slices cut to one length: no bounds checks, so the loop
                        // vectorises.
                        let n = wx.len();
                        let (tdr, tsr, tsd) = (&tdr[..n], &tsr[..n], &tsd[..n]);
                        let (dr, sr, cr) = (&mut dr[..n], &mut sr[..n], &mut cr[..n]);
                        let (fr, er, mr) = (&mut fr[..n], &mut er[..n], &mr[..n]);
                        for i in 0..n {
                            let wt = wy * wx[i];
                            let (sv, sd) = (tsr[i], tsd[i]);
                            dr[i] += wt * tdr[i];
                            er[i] += wt * sd * inv_fs;
                            // Weight zero on masked pixels: S, Scorr and the flux stay zero.
                            let wk = if mr[i] { 0.0 } else { wt };
                            sr[i] += wk * sv;
                            cr[i] += wk * sv / sd;
                            fr[i] += wk * sv * inv_fs;
                        }
                    },
                );
        }
    }
    drop(works);
    let (psf_d, f_s) = centre_products(&model, &pn_c, &pr_c, side);

    // Diagnostics from a regular subsample of about 2^18 pixels (0.2 % precision).
    let step = ((ny * nx) as f64 / 262_144.0).sqrt().ceil().max(1.0) as usize;
    let sub = s![..;step, ..;step];
    let (sc, mk) = (scorr.slice(sub), mask.slice(sub));
    let good = |y: usize, buf: &mut Vec<f64>| {
        buf.extend(
            sc.row(y)
                .iter()
                .zip(mk.row(y))
                .filter(|&(a, &m)| !m && a.is_finite())
                .map(|(&a, _)| a as f64),
        )
    };
    // Median, then the MAD, each in two passes over the subsample (no copies).
    let scorr_median = median_two_pass(sc.nrows(), good);
    let scorr_robust_std = scorr_median.and_then(|m| {
        median_two_pass(sc.nrows(), |y, buf| {
            let start = buf.len();
            good(y, buf);
            buf[start..].iter_mut().for_each(|a| *a = (*a - m).abs());
        })
        .map(|d| d * MAD_TO_SIGMA)
    });
    let diagnostics = ZogyDiagnostics {
        n_iter,
        n_stars_used: n_used,
        n_stars_kept: n_kept,
        scorr_robust_std: scorr_robust_std.unwrap_or(f64::NAN),
        scorr_median: scorr_median.unwrap_or(f64::NAN),
        sigma_new: sigma_n,
        sigma_ref: sigma_r,
        n_tiles: ycores.len() * xcores.len(),
        tile_rows: ycores.clone(),
        tile_cols: xcores.clone(),
        pad_shape: (py, px),
        ffts_per_tile,
        n_inpainted: n_bad,
        sigma_astrometric: sig_ast,
    };
    Ok(ZogyResult {
        d,
        psf_d,
        f_d: model.f_d(),
        s: s_out,
        scorr,
        flux,
        flux_err,
        f_s,
        beta,
        beta_err,
        shift,
        offset,
        mask,
        diagnostics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitted_cores_tile_the_axis_within_a_fast_length() {
        // The real pair's columns: 4 cores of 256 with ext 44, margin 28 need 344 -> 384;
        // fitted cores need 336.
        let (len, c) = fitted_cores(1024, 256, 44, 28, 45, next_fast_real_len);
        assert_eq!(len, 336);
        assert_eq!(c.len(), 4);
        assert_eq!((c[0].0, c[3].1), (0, 1024));
        assert!(c.windows(2).all(|w| w[0].1 == w[1].0));
        assert!(padded_need(&c, 1024, 44, 28) <= len);
        for n in [100, 682, 700, 1024, 2048, 4096, 5000] {
            for (t, ext, margin) in [(256, 44, 28), (1024, 28, 28), (300, 60, 40)] {
                let (len, c) = fitted_cores(n, t, ext, margin, 45, next_fast_len);
                assert_eq!(c.len(), cores(n, t).len(), "n {n} t {t}");
                assert_eq!((c[0].0, c[c.len() - 1].1), (0, n));
                assert!(c.windows(2).all(|w| w[0].1 == w[1].0));
                assert!(padded_need(&c, n, ext, margin) <= len);
                assert_eq!(next_fast_len(len), len);
                // Never longer than equal cores padded to a fast length.
                let equal = next_fast_len(padded_need(&cores(n, t), n, ext, margin).max(45));
                assert!(len <= equal, "n {n} t {t}: {len} > {equal}");
            }
        }
    }

    #[test]
    fn blend_weights_sum_to_one() {
        let n = 700;
        let c = cores(n, 256);
        assert_eq!(c.len(), 3);
        for p in 0..n {
            let s: f64 = c.iter().map(|&(a, b)| blend_weight(p, a, b, n, 32)).sum();
            assert!((s - 1.0).abs() < 1e-12, "p={p} sum={s}");
        }
    }
}
