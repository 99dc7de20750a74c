//! The per-tile spectral core of ZOGY: one padded tile in, D / S / V_S out.
//!
//! Full-size 2-D FFTs per tile (all `f32`, element-wise arithmetic in `f64`):
//! forward N, R, P_n, P_r (4; the PSF stamps with [`Fft2::forward_stamp`], about half the
//! cost); inverse D, S (2); with noise maps forward V_n, V_r, k_n^2, k_r^2 (stamps again) and
//! one inverse of their summed products (5); with astrometric noise or the PSF-error term the
//! inverse of S_r (1): S_n = S + S_r, and the gradients of both come from a 4th-order
//! finite-difference stencil in real space; with the PSF-wing term the inverse of
//! `G (x) S_r` (1). The kernels `k_n`, `k_r`, `P_D` in real space are made on a
//! small odd grid (a few times the PSF side) in `f64`, which costs nothing at image scale.
//! Spectra stay in [`Fft2`]'s transposed layout (`[kx, ky]`, one transpose per FFT saved).
//! The variance of S is assembled per pixel ([`TileOut::var_at`]) only where the tile's
//! output is used, with no image-sized temporaries.

use crate::odd_fast_len;
use diffim_core::fft::{Fft2, signed_freq};
use diffim_core::psf::{embed_psf, extract_centered};
use ndarray::{Array2, Axis, Zip};
use num_complex::Complex;
use rayon::prelude::*;

/// Scalars of the ZOGY model shared by all tiles.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Model {
    /// F_n = beta F_r.
    pub f_n: f64,
    /// F_r.
    pub f_r: f64,
    /// sigma_n^2.
    pub sn2: f64,
    /// sigma_r^2.
    pub sr2: f64,
    /// Relative floor of the denominator.
    pub den_floor: f64,
    /// Shift (dx, dy) applied to R (and V_r).
    pub shift: (f64, f64),
    /// Astrometric noise (sigma_x, sigma_y).
    pub sig_ast: (f64, f64),
    /// Relative PSF-model error `eps`: adds `eps^2 S_r^2` to the variance of S.
    pub psf_err: f64,
    /// Relative PSF-wing error `eps_w`: adds `(eps_w G (x) S_r)^2` to the variance of S.
    pub wing_err: f64,
    /// Standard deviation of the Gaussian `G` (pixels).
    pub wing_sigma: f64,
}

/// The PSF-only quantities of ZOGY at one pair of transfer-function values.
#[derive(Debug, Clone, Copy)]
struct Coefs {
    /// F_r P_r / sqrt(den), multiplies N-hat in D-hat.
    dn: Complex<f64>,
    /// F_n P_n / sqrt(den), multiplies R-hat in D-hat.
    dr: Complex<f64>,
    /// k_n-hat (eq. 26 kernel on N).
    kn: Complex<f64>,
    /// k_r-hat.
    kr: Complex<f64>,
    /// F_n^2 F_r^2 |P_n|^2 |P_r|^2 / den (summand of F_S).
    fs: f64,
}

impl Model {
    fn den0(&self) -> f64 {
        self.sn2 * self.f_r * self.f_r + self.sr2 * self.f_n * self.f_n
    }

    /// F_D (eq. 15).
    pub fn f_d(&self) -> f64 {
        self.f_r * self.f_n / self.den0().sqrt()
    }

    #[inline]
    fn coefs(&self, pn: Complex<f64>, pr: Complex<f64>) -> Coefs {
        let (fnn, fr) = (self.f_n, self.f_r);
        let (an, ar) = (pn.norm_sqr(), pr.norm_sqr());
        let den =
            (self.sn2 * fr * fr * ar + self.sr2 * fnn * fnn * an).max(self.den_floor * self.den0());
        let sq = den.sqrt();
        Coefs {
            dn: pr * (fr / sq),
            dr: pn * (fnn / sq),
            kn: pn.conj() * (fnn * fr * fr * ar / den),
            kr: pr.conj() * (fr * fnn * fnn * an / den),
            fs: fnn * fnn * fr * fr * an * ar / den,
        }
    }

    /// Real-space kernels `k_n`, `k_r` and `P_D` on an odd `l x l` grid (centre in the middle).
    pub fn small_kernels(&self, pn: &Array2<f64>, pr: &Array2<f64>, l: usize) -> [Array2<f64>; 3] {
        let fft = Fft2::<f64>::new(l, l);
        let pnh = fft.forward(&embed_psf(&pn.view(), l, l).view());
        let prh = fft.forward(&embed_psf(&pr.view(), l, l).view());
        let f_d = self.f_d();
        let mut kn = Array2::zeros(pnh.dim());
        let mut kr = Array2::zeros(pnh.dim());
        let mut pd = Array2::zeros(pnh.dim());
        Zip::from(&mut kn)
            .and(&mut kr)
            .and(&mut pd)
            .and(&pnh)
            .and(&prh)
            .for_each(|a, b, c, &p, &q| {
                let k = self.coefs(p, q);
                *a = k.kn;
                *b = k.kr;
                // P_D-hat = F_r F_n P_r P_n / (F_D sqrt(den)) = dn * P_n * F_n / F_D (eq. 14).
                *c = k.dn * p * (self.f_n / f_d);
            });
        [kn, kr, pd].map(|s| extract_centered(&fft.inverse(s).view(), l, l))
    }
}

/// One padded tile.
pub(crate) struct TileIn<'a> {
    pub n: &'a Array2<f32>,
    pub r: &'a Array2<f32>,
    pub vn: Option<&'a Array2<f32>>,
    pub vr: Option<&'a Array2<f32>>,
    pub pn: &'a Array2<f64>,
    pub pr: &'a Array2<f64>,
    /// Odd side of the small kernel grid.
    pub kgrid: usize,
}

/// Outputs of one tile, padded shape. The variance of S is assembled per pixel by
/// [`TileOut::var_at`] from its parts, only where the tile's output is used.
pub(crate) struct TileOut {
    pub d: Array2<f32>,
    pub s: Array2<f32>,
    /// `V_n (x) k_n^2 + V_r (x) k_r^2` (eqs. 26-29); `None`: the constant `f_s` (no noise
    /// maps).
    var: Option<Array2<f32>>,
    /// `S_r = k_r (x) R` (astrometric and PSF-error terms).
    sr: Option<Array2<f32>>,
    /// `G (x) S_r` (PSF-wing term).
    sw: Option<Array2<f32>>,
    pub f_s: f64,
    pub n_fft: usize,
    /// `(sigma_x^2, sigma_y^2)`, zero without astrometric noise.
    sig2: (f64, f64),
    /// `eps^2` of the PSF-error term (zero: off).
    e2: f64,
    /// `eps_w^2` of the PSF-wing term.
    ew2: f64,
}

/// Central derivative along `x` of a row-major image at `(y, x)`: the 4th-order stencil
/// `(-f[i+2] + 8 f[i+1] - 8 f[i-1] + f[i-2]) / 12`, 2nd order next to the edges and one-sided
/// at the borders (`dy` likewise along `y`). `S` is smoothed by the PSF twice, so the
/// stencil's error is ~0.2 % for the narrowest PSFs (FWHM 2.5 px) and far below the
/// astrometric term's own uncertainty.
#[inline]
fn stencil(f: impl Fn(usize) -> f32, i: usize, n: usize) -> f32 {
    if n < 2 {
        0.0
    } else if i >= 2 && i + 2 < n {
        (-f(i + 2) + 8.0 * f(i + 1) - 8.0 * f(i - 1) + f(i - 2)) / 12.0
    } else if i >= 1 && i + 1 < n {
        0.5 * (f(i + 1) - f(i - 1))
    } else if i == 0 {
        f(1) - f(0)
    } else {
        f(i) - f(i - 1)
    }
}

#[inline]
fn grad(a: &Array2<f32>, y: usize, x: usize) -> (f64, f64) {
    let (ny, nx) = a.dim();
    (
        stencil(|i| a[[y, i]], x, nx) as f64,
        stencil(|j| a[[j, x]], y, ny) as f64,
    )
}

impl TileOut {
    /// Total variance of S at tile pixel `(y, x)`: the noise part, the astrometric terms
    /// (eqs. 30-31: `sigma^2 |grad S_n|^2 + sigma^2 |grad S_r|^2`, `S_n = S + S_r`), the
    /// PSF-model error of static sources (`eps^2 S_r^2`: their residual in S scales with
    /// their matched flux; transients, absent from R, are not penalised) and the same
    /// spread over a few FWHM (`(eps_w G (x) S_r)^2`).
    #[inline]
    pub fn var_at(&self, y: usize, x: usize) -> f64 {
        let mut v = match &self.var {
            Some(a) => a[[y, x]] as f64,
            None => self.f_s,
        };
        if let Some(sr) = &self.sr {
            let r = sr[[y, x]] as f64;
            v += self.e2 * r * r;
            if self.sig2 != (0.0, 0.0) {
                let (sx, sy) = grad(&self.s, y, x);
                let (rx, ry) = grad(sr, y, x);
                let (nx_, ny_) = (sx + rx, sy + ry);
                v += self.sig2.0 * (nx_ * nx_ + rx * rx) + self.sig2.1 * (ny_ * ny_ + ry * ry);
            }
        }
        if let Some(sw) = &self.sw {
            let w = sw[[y, x]] as f64;
            v += self.ew2 * w * w;
        }
        v
    }
}

fn c64(c: Complex<f32>) -> Complex<f64> {
    Complex::new(c.re as f64, c.im as f64)
}
fn c32(c: Complex<f64>) -> Complex<f32> {
    Complex::new(c.re as f32, c.im as f32)
}

/// Multiplies a half spectrum in the transposed layout (`px/2+1` x `py`, indexed
/// `[kx, ky]`, full grid `py` x `px`) by a separable transfer function `g_y(f_y) g_x(f_x)`,
/// frequencies in cycles per pixel (`f_y` signed): one table per axis.
fn multiply_separable(
    spec: &mut Array2<Complex<f32>>,
    (py, px): (usize, usize),
    gx: impl Fn(f64) -> Complex<f64> + Sync,
    gy: impl Fn(f64) -> Complex<f64>,
) {
    let ty: Vec<Complex<f64>> = (0..py)
        .map(|ky| gy(signed_freq(ky, py) as f64 / py as f64))
        .collect();
    spec.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(kx, mut row)| {
            let tx = gx(kx as f64 / px as f64);
            for (v, &t) in row.iter_mut().zip(&ty) {
                *v = c32(c64(*v) * (tx * t));
            }
        });
}

/// Multiplies a half spectrum by the phase ramp that shifts the image by `(dx, dy)`,
/// `e^{-2 pi i fy dy} e^{-2 pi i fx dx}`.
fn apply_shift(spec: &mut Array2<Complex<f32>>, py: usize, px: usize, dx: f64, dy: f64) {
    let tau = std::f64::consts::TAU;
    multiply_separable(
        spec,
        (py, px),
        |f| Complex::from_polar(1.0, -tau * f * dx),
        |f| Complex::from_polar(1.0, -tau * f * dy),
    );
}

pub(crate) fn run_tile(fft: &Fft2<f32>, t: &TileIn, m: &Model) -> TileOut {
    let (py, px) = fft.shape();
    let n_fft = std::cell::Cell::new(0usize);
    let fwd = |a: &Array2<f32>| {
        n_fft.set(n_fft.get() + 1);
        fft.forward_t(&a.view())
    };
    let fwd_stamp = |a: &Array2<f64>| {
        n_fft.set(n_fft.get() + 1);
        fft.forward_stamp_t(&a.mapv(|v| v as f32).view())
    };
    let nh = fwd(t.n);
    let mut rh = fwd(t.r);
    let pnh = fwd_stamp(t.pn);
    let prh = fwd_stamp(t.pr);
    let shifted = m.shift.0 != 0.0 || m.shift.1 != 0.0;
    if shifted {
        apply_shift(&mut rh, py, px, m.shift.0, m.shift.1);
    }
    let astro = m.sig_ast.0 > 0.0 || m.sig_ast.1 > 0.0;
    let psf_term = m.psf_err > 0.0;
    let wing_term = m.wing_err > 0.0 && m.wing_sigma > 0.0;
    let need_sr = astro || psf_term || wing_term;
    let mut dh = Array2::<Complex<f32>>::zeros(nh.dim());
    let mut sh = Array2::<Complex<f32>>::zeros(nh.dim());
    // S_r-hat = k_r R-hat (S = S_n - S_r, so S_n needs no transform of its own).
    // Spectra are in the transposed layout `[kx, ky]` (zero-width rows when unused).
    let nc = px / 2 + 1;
    let mut srh = Array2::<Complex<f32>>::zeros((nc, if need_sr { py } else { 0 }));
    let fs_rows: Vec<f64> = dh
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(sh.axis_iter_mut(Axis(0)).into_par_iter())
        .zip(srh.axis_iter_mut(Axis(0)).into_par_iter())
        .enumerate()
        .map(|(kx, ((mut drow, mut srow), mut srrow))| {
            let mut acc = 0.0;
            for ky in 0..py {
                let k = m.coefs(c64(pnh[[kx, ky]]), c64(prh[[kx, ky]]));
                let (n, r) = (c64(nh[[kx, ky]]), c64(rh[[kx, ky]]));
                drow[ky] = c32(k.dn * n - k.dr * r);
                let kr_r = k.kr * r;
                srow[ky] = c32(k.kn * n - kr_r);
                if need_sr {
                    srrow[ky] = c32(kr_r);
                }
                acc += k.fs;
            }
            // Columns other than DC and Nyquist stand for their conjugate twins too.
            let w = if kx == 0 || (px % 2 == 0 && kx == px / 2) {
                1.0
            } else {
                2.0
            };
            w * acc
        })
        .collect();
    let f_s = fs_rows.iter().sum::<f64>() / (py * px) as f64;
    drop((nh, rh, pnh, prh));
    let inv = |a: Array2<Complex<f32>>| {
        n_fft.set(n_fft.get() + 1);
        fft.inverse_t(a)
    };
    // G (x) S_r for the wing term: S_r-hat times the Gaussian's transfer function.
    let swh = wing_term.then(|| {
        let mut a = srh.clone();
        let g = -2.0 * std::f64::consts::PI.powi(2) * m.wing_sigma * m.wing_sigma;
        let gauss = |f: f64| Complex::new((g * f * f).exp(), 0.0);
        multiply_separable(&mut a, (py, px), gauss, gauss);
        a
    });
    let d = inv(dh);
    let s = inv(sh);
    let sr = (astro || psf_term).then(|| inv(srh));
    let sw = swh.map(inv);

    // Variance of S: V_n (x) k_n^2 + V_r (x) k_r^2 (eqs. 26-29).
    let var = if t.vn.is_some() || t.vr.is_some() {
        let [kn, kr, _] = m.small_kernels(t.pn, t.pr, t.kgrid);
        let kn2 = kn.mapv(|v| v * v);
        let kr2 = kr.mapv(|v| v * v);
        let mut acc = Array2::<Complex<f32>>::zeros((nc, py));
        let mut konst = 0.0;
        for (v, k2, s2, is_r) in [(t.vn, &kn2, m.sn2, false), (t.vr, &kr2, m.sr2, true)] {
            match v {
                Some(v) => {
                    let mut vh = fwd(v);
                    if is_r && shifted {
                        apply_shift(&mut vh, py, px, m.shift.0, m.shift.1);
                    }
                    let kh = fwd_stamp(k2);
                    Zip::from(&mut acc)
                        .and(&vh)
                        .and(&kh)
                        .par_for_each(|a, &x, &y| *a += x * y);
                }
                None => konst += s2 * k2.sum(),
            }
        }
        let mut v = inv(acc);
        v.par_mapv_inplace(|x| (x.max(0.0) as f64 + konst) as f32);
        Some(v)
    } else {
        None
    };
    TileOut {
        d,
        s,
        var,
        sr,
        sw,
        f_s,
        n_fft: n_fft.get(),
        sig2: if astro {
            (m.sig_ast.0.powi(2), m.sig_ast.1.powi(2))
        } else {
            (0.0, 0.0)
        },
        e2: m.psf_err * m.psf_err,
        ew2: m.wing_err * m.wing_err,
    }
}

/// Convenience for the centre of the image: F_S, P_D from the small grid.
pub(crate) fn centre_products(
    m: &Model,
    pn: &Array2<f64>,
    pr: &Array2<f64>,
    side: usize,
) -> (Array2<f64>, f64) {
    let l = odd_fast_len(2 * side + 1);
    let [_, _, pd] = m.small_kernels(pn, pr, l);
    let f_s = m.f_d().powi(2) * pd.iter().map(|v| v * v).sum::<f64>();
    let (c, h) = (l / 2, side / 2);
    let mut stamp = pd
        .slice(ndarray::s![c - h..=c + h, c - h..=c + h])
        .to_owned();
    diffim_core::psf::normalize_unit_sum(&mut stamp);
    (stamp, f_s)
}
