//! The per-tile spectral core of ZOGY: one padded tile in, D / S / the standard deviation
//! of S out.
//!
//! Full-size 2-D FFTs per tile (all `f32`, element-wise arithmetic in `f64`):
//! forward N, R (2); inverse D, S (2); with noise maps forward V_n, V_r and one inverse of
//! `V_n-hat k_n^2-hat + V_r-hat k_r^2-hat` (3); with astrometric noise or the PSF-error term
//! the inverse of S_r (1): S_n = S + S_r, and the gradients of both come from a 4th-order
//! finite-difference stencil in real space; with the PSF-wing term the inverse of
//! `G (x) S_r` (1). The PSF transfer functions P_n, P_r (and k_n^2, k_r^2 with noise maps)
//! are stamp transforms ([`Fft2::forward_stamp_t`], about half the cost of a full one), made
//! per tile ([`TilePsf`]), or once for all tiles when both PSFs are constant. The kernels
//! `k_n`, `k_r`, `P_D` in real space are made on a small odd grid (a few times the PSF side)
//! in `f64`, which costs nothing at image scale. Spectra stay in [`Fft2`]'s transposed
//! layout (`[kx, ky]`, one transpose per FFT saved); the shift of R and the wing Gaussian
//! are applied inside the one pass that forms D, S, S_r and `G (x) S_r`. Every buffer is
//! per thread and reused from tile to tile ([`TileWork`], and a thread's [`TilePsf`] renewed
//! in place, [`new_bufs`]); the standard deviation of S is assembled only over the part of
//! the tile whose output is used.

use crate::odd_fast_len;
use diffim_core::fft::{Fft2, signed_freq};
use diffim_core::psf::{embed_psf, extract_centered};
use ndarray::{Array2, Axis, Zip, s};
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
    /// k_n-hat (eq. 26 kernel on N).
    kn: Complex<f64>,
    /// k_r-hat.
    kr: Complex<f64>,
}

impl Model {
    fn den0(&self) -> f64 {
        self.sn2 * self.f_r * self.f_r + self.sr2 * self.f_n * self.f_n
    }

    /// The scalars of the `f32` spectral pass.
    fn row_consts(&self) -> RowConsts {
        let (fnn, fr) = (self.f_n, self.f_r);
        RowConsts {
            a_r: (self.sn2 * fr * fr) as f32,
            a_n: (self.sr2 * fnn * fnn) as f32,
            floor: (self.den_floor * self.den0()) as f32,
            f_r: fr as f32,
            f_n: fnn as f32,
            kn: (fnn * fr * fr) as f32,
            kr: (fr * fnn * fnn) as f32,
            fs: (fnn * fnn * fr * fr) as f32,
        }
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
        // One division and one square root per frequency.
        let inv = 1.0 / den;
        let isq = inv.sqrt();
        Coefs {
            dn: pr * (fr * isq),
            kn: pn.conj() * (fnn * fr * fr * ar * inv),
            kr: pr.conj() * (fr * fnn * fnn * an * inv),
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

/// The scalars of [`Model::coefs`] for the `f32` pass over a spectrum row ([`RowConsts::row`]).
pub(crate) struct RowConsts {
    /// `sigma_n^2 F_r^2` (weight of `|P_r|^2` in the denominator).
    a_r: f32,
    /// `sigma_r^2 F_n^2`.
    a_n: f32,
    /// Floor of the denominator.
    floor: f32,
    f_r: f32,
    f_n: f32,
    /// `F_n F_r^2`, `F_r F_n^2`, `F_n^2 F_r^2`.
    kn: f32,
    kr: f32,
    fs: f32,
}

impl RowConsts {
    /// One row of the spectral pass, in `f32`: `n` (N-hat) becomes D-hat, `r` (R-hat)
    /// becomes S-hat, `sr` gets S_r-hat, and `sw` `G (x) S_r`-hat where given. R-hat is
    /// shifted by `shift.0 * shift.1[ky]`, the wing Gaussian is `gauss.0 * gauss.1[ky]`.
    /// `f` is scratch. Returns this row's sum of the F_S summands (eq. 42). Written as
    /// branch-free passes over slices, so that they vectorise.
    #[allow(clippy::too_many_arguments)]
    fn row(
        &self,
        (pn, pr): (&[Complex<f32>], &[Complex<f32>]),
        n: &mut [Complex<f32>],
        r: &mut [Complex<f32>],
        sr: &mut [Complex<f32>],
        sw: Option<&mut [Complex<f32>]>,
        shift: (Complex<f32>, &[Complex<f32>]),
        gauss: (f32, &[f32]),
        f: &mut Vec<[f32; 4]>,
    ) -> f64 {
        // The PSF-only factors: dn / P_r, dr / P_n, k_n / conj(P_n), k_r / conj(P_r), and
        // the F_S summands (summed in eight lanes, then in f64).
        f.clear();
        f.resize(pn.len(), [0.0; 4]);
        let mut lanes = [0.0f32; 8];
        for ((q, (p_n, p_r)), ky) in f.iter_mut().zip(pn.iter().zip(pr)).zip(0..) {
            let (an, ar) = (p_n.norm_sqr(), p_r.norm_sqr());
            let den = (self.a_r * ar + self.a_n * an).max(self.floor);
            let inv = 1.0 / den;
            let isq = inv.sqrt();
            *q = [
                self.f_r * isq,
                self.f_n * isq,
                self.kn * ar * inv,
                self.kr * an * inv,
            ];
            lanes[ky % 8] += self.fs * an * ar * inv;
        }
        for ((((nv, rv), srv), q), ((p_n, p_r), t)) in n
            .iter_mut()
            .zip(r.iter_mut())
            .zip(sr.iter_mut())
            .zip(f.iter())
            .zip(pn.iter().zip(pr).zip(shift.1))
        {
            let a = *nv;
            let b = *rv * (shift.0 * t);
            *nv = p_r * q[0] * a - p_n * q[1] * b;
            let kr_r = p_r.conj() * q[3] * b;
            *rv = p_n.conj() * q[2] * a - kr_r;
            *srv = kr_r;
        }
        if let Some(sw) = sw {
            for ((o, v), g) in sw.iter_mut().zip(sr.iter()).zip(gauss.1) {
                *o = v * (gauss.0 * g);
            }
        }
        lanes.iter().map(|&v| v as f64).sum()
    }
}

/// Row `k` of an owned spectrum (standard layout) as a slice.
fn row_c(a: &Array2<Complex<f32>>, k: usize) -> &[Complex<f32>] {
    a.row(k)
        .to_slice()
        .expect("an owned spectrum in standard layout")
}

/// The PSF-dependent transfer functions of one tile (transposed layout), shared by all tiles
/// when both PSFs are constant.
pub(crate) struct TilePsf {
    /// P_n-hat.
    pnh: Array2<Complex<f32>>,
    /// P_r-hat.
    prh: Array2<Complex<f32>>,
    /// `k_n^2`-hat, when the new image has a noise map.
    kn2h: Option<Array2<Complex<f32>>>,
    /// `k_r^2`-hat, when the reference has a noise map.
    kr2h: Option<Array2<Complex<f32>>>,
    /// Variance of S from a side without a noise map: `sigma^2 sum k^2` (constant).
    konst: f64,
    /// FFTs spent.
    pub n_fft: usize,
}

impl TilePsf {
    /// Transfer functions of the unit-sum stamps `pn`, `pr` on the plan's grid; the squared
    /// kernels only for the sides that have a noise map (`noise = (new, ref)`).
    pub fn new(
        fft: &Fft2<f32>,
        pn: &Array2<f64>,
        pr: &Array2<f64>,
        kgrid: usize,
        m: &Model,
        noise: (bool, bool),
    ) -> Self {
        let z = || Array2::zeros(fft.spectrum_shape_t());
        let mut p = Self {
            pnh: z(),
            prh: z(),
            kn2h: None,
            kr2h: None,
            konst: 0.0,
            n_fft: 0,
        };
        p.update(fft, pn, pr, kgrid, m, noise);
        p
    }

    /// [`Self::new`] in place: the spectra of `self` are overwritten where they have the
    /// plan's shape (no allocation, no fresh pages), reallocated otherwise. Bit for bit the
    /// values of [`Self::new`].
    pub fn update(
        &mut self,
        fft: &Fft2<f32>,
        pn: &Array2<f64>,
        pr: &Array2<f64>,
        kgrid: usize,
        m: &Model,
        noise: (bool, bool),
    ) {
        let shape = fft.spectrum_shape_t();
        let stamp = |a: &Array2<f64>, out: &mut Array2<Complex<f32>>| {
            if out.dim() != shape {
                *out = Array2::zeros(shape);
            }
            fft.forward_stamp_t_into(&a.mapv(|v| v as f32).view(), out);
        };
        stamp(pn, &mut self.pnh);
        stamp(pr, &mut self.prh);
        let mut n_fft = 2;
        let mut konst = 0.0;
        if noise.0 || noise.1 {
            let [kn, kr, _] = m.small_kernels(pn, pr, kgrid);
            for (k, given, s2, out) in [
                (kn, noise.0, m.sn2, &mut self.kn2h),
                (kr, noise.1, m.sr2, &mut self.kr2h),
            ] {
                let k2 = k.mapv(|v| v * v);
                if given {
                    stamp(&k2, out.get_or_insert_with(|| Array2::zeros(shape)));
                    n_fft += 1;
                } else {
                    *out = None;
                    konst += s2 * k2.sum();
                }
            }
        } else {
            (self.kn2h, self.kr2h) = (None, None);
        }
        self.konst = konst;
        self.n_fft = n_fft;
    }
}

/// The buffers of one thread's tiles, reused from tile to tile: padded inputs (filled by the
/// caller), spectra, and the planes read by the blending.
pub(crate) struct TileWork {
    /// Padded N.
    pub n: Array2<f32>,
    /// Padded R.
    pub r: Array2<f32>,
    /// Padded variance of N (zero on bad pixels), when a noise map is given.
    pub vn: Option<Array2<f32>>,
    /// Padded variance of R, likewise.
    pub vr: Option<Array2<f32>>,
    /// Spectra: N-hat then D-hat, R-hat then S-hat, S_r-hat, `G (x) S_r`-hat, V_n-hat then
    /// V_S-hat, V_r-hat.
    spec: [Array2<Complex<f32>>; 6],
    /// D.
    pub d: Array2<f32>,
    /// S.
    pub s: Array2<f32>,
    /// Standard deviation of S over the output region ([`run_tile`]'s `out`).
    pub sd: Array2<f32>,
    /// S_r.
    sr: Array2<f32>,
    /// `G (x) S_r`.
    sw: Array2<f32>,
    /// `V_n (x) k_n^2 + V_r (x) k_r^2`.
    var: Array2<f32>,
}

impl TileWork {
    /// Buffers for the plan's shape; noise-map planes only for the sides that have one.
    pub fn new(fft: &Fft2<f32>, noise: (bool, bool)) -> Self {
        let shape = fft.shape();
        let z = || Array2::<f32>::zeros(shape);
        let c = || Array2::<Complex<f32>>::zeros(fft.spectrum_shape_t());
        Self {
            n: z(),
            r: z(),
            vn: noise.0.then(z),
            vr: noise.1.then(z),
            spec: [c(), c(), c(), c(), c(), c()],
            d: z(),
            s: z(),
            sd: z(),
            sr: z(),
            sw: z(),
            var: z(),
        }
    }
}

/// One thread's buffers for the tiles of a call: its [`TileWork`] and, when the PSFs vary,
/// its [`TilePsf`] (renewed in place tile by tile, [`TilePsf::update`]).
pub(crate) struct ThreadBufs {
    /// Padded inputs and output planes.
    pub work: TileWork,
    /// The current tile's transfer functions (varying PSFs only).
    pub psf: Option<TilePsf>,
}

/// `count` sets of new buffers for the plan `fft` and noise sides `noise`, one per thread
/// of a call. Not kept between calls: a process-wide cache of them measured no faster on the
/// real pair, and its retained memory changed glibc's mmap threshold for everything after
/// it.
pub(crate) fn new_bufs(fft: &Fft2<f32>, noise: (bool, bool), count: usize) -> Vec<ThreadBufs> {
    // Made side by side: zeroing them (or faulting their pages in) is a few ms per set.
    (0..count)
        .into_par_iter()
        .map(|_| ThreadBufs {
            work: TileWork::new(fft, noise),
            psf: None,
        })
        .collect()
}

/// What a tile reports besides its planes.
pub(crate) struct TileStats {
    /// F_S of the tile's PSFs (eq. 42).
    pub f_s: f64,
    /// FFTs spent on the tile (the PSF transforms included).
    pub n_fft: usize,
}

/// The 4th-order central difference `(-f[i+2] + 8 f[i+1] - 8 f[i-1] + f[i-2]) / 12` at `i`
/// of a row `f` (2nd order next to the ends, one-sided at them, 0 for fewer than 2 values).
/// `S` is smoothed by the PSF twice, so the stencil's error is ~0.2 % for the narrowest
/// PSFs (FWHM 2.5 px) and far below the astrometric term's own uncertainty.
#[inline]
fn stencil_at(f: &[f32], i: usize) -> f32 {
    let n = f.len();
    if n < 2 {
        0.0
    } else if i >= 2 && i + 2 < n {
        (-f[i + 2] + 8.0 * f[i + 1] - 8.0 * f[i - 1] + f[i - 2]) / 12.0
    } else if i >= 1 && i + 1 < n {
        0.5 * (f[i + 1] - f[i - 1])
    } else if i == 0 {
        f[1] - f[0]
    } else {
        f[i] - f[i - 1]
    }
}

/// [`stencil_at`] along `x` for `x` in `x0..x0 + out.len()` of the row `f`, into `out`.
fn stencil_x(f: &[f32], x0: usize, out: &mut [f32]) {
    let n = f.len();
    let x1 = x0 + out.len();
    let (a, b) = (
        x0.max(2).min(x1),
        x1.min(n.saturating_sub(2)).max(x0.max(2).min(x1)),
    );
    for x in (x0..a).chain(b..x1) {
        out[x - x0] = stencil_at(f, x);
    }
    for (x, o) in (a..b).zip(&mut out[a - x0..b - x0]) {
        *o = (-f[x + 2] + 8.0 * f[x + 1] - 8.0 * f[x - 1] + f[x - 2]) / 12.0;
    }
}

/// [`stencil_at`] along `y` at row `y` of `a`, for columns `x0..x0 + out.len()`, into `out`.
fn stencil_y(a: &Array2<f32>, y: usize, x0: usize, out: &mut [f32]) {
    let n = a.nrows();
    let x1 = x0 + out.len();
    let row = |j: usize| &row_of(a, j)[x0..x1];
    if n < 2 {
        out.fill(0.0);
    } else if y >= 2 && y + 2 < n {
        let (p2, p1, m1, m2) = (row(y + 2), row(y + 1), row(y - 1), row(y - 2));
        for (i, o) in out.iter_mut().enumerate() {
            *o = (-p2[i] + 8.0 * p1[i] - 8.0 * m1[i] + m2[i]) / 12.0;
        }
    } else if y >= 1 && y + 1 < n {
        let (p1, m1) = (row(y + 1), row(y - 1));
        for (i, o) in out.iter_mut().enumerate() {
            *o = 0.5 * (p1[i] - m1[i]);
        }
    } else {
        let (p, q) = if y == 0 {
            (row(1), row(0))
        } else {
            (row(y), row(y - 1))
        };
        for (i, o) in out.iter_mut().enumerate() {
            *o = p[i] - q[i];
        }
    }
}

/// Row `y` of an owned plane (standard layout) as a slice.
pub(crate) fn row_of(a: &Array2<f32>, y: usize) -> &[f32] {
    a.row(y)
        .to_slice()
        .expect("an owned plane in standard layout")
}

fn c32(c: Complex<f64>) -> Complex<f32> {
    Complex::new(c.re as f32, c.im as f32)
}

/// Table of a separable transfer-function factor over the `n` frequencies of an axis
/// (cycles per pixel, signed).
fn freq_table(n: usize, g: impl Fn(f64) -> Complex<f64>) -> Vec<Complex<f64>> {
    (0..n)
        .map(|k| g(signed_freq(k, n) as f64 / n as f64))
        .collect()
}

/// Runs the spectral core on the padded tile in `w` (inputs filled by the caller) with the
/// PSF transfer functions `p`, and fills `w.d`, `w.s` and, over the output region
/// `out = ((y0, y1), (x0, x1))` (tile coordinates), `w.sd`: the standard deviation of S with
/// the noise part (eqs. 26-29), the astrometric terms (eqs. 30-31:
/// `sigma^2 |grad S_n|^2 + sigma^2 |grad S_r|^2`, `S_n = S + S_r`), the PSF-model error of
/// static sources (`eps^2 S_r^2`: their residual in S scales with their matched flux;
/// transients, absent from `R`, are not penalised) and the same spread over a few FWHM
/// (`(eps_w G (x) S_r)^2`).
pub(crate) fn run_tile(
    fft: &Fft2<f32>,
    w: &mut TileWork,
    p: &TilePsf,
    m: &Model,
    out: ((usize, usize), (usize, usize)),
) -> TileStats {
    let (py, px) = fft.shape();
    let mut n_fft = 0;
    let [nh, rh, srh, swh, vnh, vrh] = &mut w.spec;
    fft.forward_t_into(&w.n.view(), nh);
    fft.forward_t_into(&w.r.view(), rh);
    n_fft += 2;
    let astro = m.sig_ast.0 > 0.0 || m.sig_ast.1 > 0.0;
    let psf_term = m.psf_err > 0.0;
    let wing_term = m.wing_err > 0.0 && m.wing_sigma > 0.0;
    let need_sr = astro || psf_term;
    // Separable factors: the shift of R, `e^{-2 pi i (fx dx + fy dy)}`, and the wing
    // Gaussian's transfer function.
    let tau = std::f64::consts::TAU;
    let (dx, dy) = m.shift;
    let shift_y = freq_table(py, |f| Complex::from_polar(1.0, -tau * f * dy));
    let shift_x = freq_table(px, |f| Complex::from_polar(1.0, -tau * f * dx));
    let g = -2.0 * std::f64::consts::PI.powi(2) * m.wing_sigma * m.wing_sigma;
    let gauss = |f: f64| Complex::new((g * f * f).exp(), 0.0);
    let (gauss_y, gauss_x) = (freq_table(py, gauss), freq_table(px, gauss));
    // D-hat = dn N-hat - dr R-hat and S-hat = k_n N-hat - k_r R-hat in place of N-hat and
    // R-hat; S_r-hat = k_r R-hat (S = S_n - S_r, so S_n needs no transform of its own).
    let k = m.row_consts();
    let shift_y: Vec<Complex<f32>> = shift_y.iter().map(|&v| c32(v)).collect();
    let gauss_y: Vec<f32> = gauss_y.iter().map(|v| v.re as f32).collect();
    let fs_rows: Vec<f64> = nh
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(rh.axis_iter_mut(Axis(0)))
        .zip(srh.axis_iter_mut(Axis(0)))
        .zip(swh.axis_iter_mut(Axis(0)))
        .enumerate()
        .map_init(
            Vec::new,
            |f, (kx, (((mut nrow, mut rrow), mut srrow), mut swrow))| {
                let acc = k.row(
                    (row_c(&p.pnh, kx), row_c(&p.prh, kx)),
                    nrow.as_slice_mut().expect("standard layout"),
                    rrow.as_slice_mut().expect("standard layout"),
                    srrow.as_slice_mut().expect("standard layout"),
                    wing_term.then(|| swrow.as_slice_mut().expect("standard layout")),
                    (c32(shift_x[kx]), &shift_y),
                    (gauss_x[kx].re as f32, &gauss_y),
                    f,
                );
                // Columns other than DC and Nyquist stand for their conjugate twins too.
                let wgt = if kx == 0 || (px % 2 == 0 && kx == px / 2) {
                    1.0
                } else {
                    2.0
                };
                wgt * acc
            },
        )
        .collect();
    let f_s = fs_rows.iter().sum::<f64>() / (py * px) as f64;
    fft.inverse_t_into(nh, &mut w.d.view_mut());
    fft.inverse_t_into(rh, &mut w.s.view_mut());
    n_fft += 2;
    if need_sr {
        fft.inverse_t_into(srh, &mut w.sr.view_mut());
        n_fft += 1;
    }
    if wing_term {
        fft.inverse_t_into(swh, &mut w.sw.view_mut());
        n_fft += 1;
    }

    // Variance of S: V_n (x) k_n^2 + V_r (x) k_r^2 (eqs. 26-29).
    let noise = w.vn.is_some() || w.vr.is_some();
    if noise {
        let vn = w.vn.as_ref().zip(p.kn2h.as_ref());
        let vr = w.vr.as_ref().zip(p.kr2h.as_ref());
        if let Some((v, _)) = vn {
            fft.forward_t_into(&v.view(), vnh);
            n_fft += 1;
        }
        if let Some((v, _)) = vr {
            fft.forward_t_into(&v.view(), vrh);
            n_fft += 1;
        }
        vnh.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(vrh.axis_iter(Axis(0)))
            .enumerate()
            .for_each(|(kx, (mut a, vr_row))| {
                let a = a.as_slice_mut().expect("standard layout");
                let sx = c32(shift_x[kx]);
                let kn = vn.map(|(_, k)| k.row(kx));
                match &kn {
                    Some(k) => a.iter_mut().zip(k).for_each(|(v, &k)| *v *= k),
                    None => a.fill(Complex::new(0.0, 0.0)),
                }
                if let Some((_, k)) = vr {
                    for ((v, &r), (&k, &t)) in
                        a.iter_mut().zip(vr_row).zip(k.row(kx).iter().zip(&shift_y))
                    {
                        *v += r * (sx * t) * k;
                    }
                }
            });
        fft.inverse_t_into(vnh, &mut w.var.view_mut());
        n_fft += 1;
    }

    // Standard deviation of S over the output region.
    let ((y0, y1), (x0, x1)) = out;
    let konst = p.konst;
    let sig2 = if astro {
        (m.sig_ast.0.powi(2) as f32, m.sig_ast.1.powi(2) as f32)
    } else {
        (0.0, 0.0)
    };
    let (e2, ew2) = (
        (m.psf_err * m.psf_err) as f32,
        (m.wing_err * m.wing_err) as f32,
    );
    let (s_pl, sr_pl, sw_pl, var_pl) = (&w.s, &w.sr, &w.sw, &w.var);
    let width = x1 - x0;
    w.sd.slice_mut(s![y0..y1, ..])
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each_init(
            || vec![0.0f32; 4 * width],
            |g, (j, mut row)| {
                let y = y0 + j;
                let sd = &mut row.as_slice_mut().expect("standard layout")[x0..x1];
                if astro {
                    let (sx, rest) = g.split_at_mut(width);
                    let (rx, rest) = rest.split_at_mut(width);
                    let (sy, ry) = rest.split_at_mut(width);
                    stencil_x(row_of(s_pl, y), x0, sx);
                    stencil_x(row_of(sr_pl, y), x0, rx);
                    stencil_y(s_pl, y, x0, sy);
                    stencil_y(sr_pl, y, x0, ry);
                }
                // Variance terms added pass by pass (each vectorises), then the root.
                match noise {
                    true => {
                        for (o, &v) in sd.iter_mut().zip(&row_of(var_pl, y)[x0..x1]) {
                            *o = (v.max(0.0) as f64 + konst) as f32;
                        }
                    }
                    false => sd.fill(f_s as f32),
                }
                if need_sr {
                    for (o, &r) in sd.iter_mut().zip(&row_of(sr_pl, y)[x0..x1]) {
                        *o += e2 * r * r;
                    }
                }
                if astro {
                    let (sx, rest) = g.split_at(width);
                    let (rx, rest) = rest.split_at(width);
                    let (sy, ry) = rest.split_at(width);
                    for ((o, (&a, &b)), (&c, &d)) in
                        sd.iter_mut().zip(sx.iter().zip(rx)).zip(sy.iter().zip(ry))
                    {
                        let (gx, gy) = (a + b, c + d);
                        *o += sig2.0 * (gx * gx + b * b) + sig2.1 * (gy * gy + d * d);
                    }
                }
                if wing_term {
                    for (o, &q) in sd.iter_mut().zip(&row_of(sw_pl, y)[x0..x1]) {
                        *o += ew2 * q * q;
                    }
                }
                for o in sd.iter_mut() {
                    *o = o.max(1e-30).sqrt();
                }
            },
        );
    TileStats {
        f_s,
        n_fft: n_fft + p.n_fft,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The spectral pass one frequency at a time: the reference [`RowConsts::row`] must
    /// match bit for bit.
    #[allow(clippy::too_many_arguments)]
    fn row_ref(
        k: &RowConsts,
        (pn, pr): (&[Complex<f32>], &[Complex<f32>]),
        n: &mut [Complex<f32>],
        r: &mut [Complex<f32>],
        sr: &mut [Complex<f32>],
        sw: Option<&mut [Complex<f32>]>,
        shift: (Complex<f32>, &[Complex<f32>]),
        gauss: (f32, &[f32]),
    ) -> f64 {
        let mut lanes = [0.0f32; 8];
        for ky in 0..pn.len() {
            let (p_n, p_r) = (pn[ky], pr[ky]);
            let (an, ar) = (p_n.norm_sqr(), p_r.norm_sqr());
            let den = (k.a_r * ar + k.a_n * an).max(k.floor);
            let inv = 1.0 / den;
            let isq = inv.sqrt();
            let q = [k.f_r * isq, k.f_n * isq, k.kn * ar * inv, k.kr * an * inv];
            lanes[ky % 8] += k.fs * an * ar * inv;
            let a = n[ky];
            let b = r[ky] * (shift.0 * shift.1[ky]);
            n[ky] = p_r * q[0] * a - p_n * q[1] * b;
            let kr_r = p_r.conj() * q[3] * b;
            r[ky] = p_n.conj() * q[2] * a - kr_r;
            sr[ky] = kr_r;
        }
        if let Some(sw) = sw {
            for ky in 0..pn.len() {
                sw[ky] = sr[ky] * (gauss.0 * gauss.1[ky]);
            }
        }
        lanes.iter().map(|&v| v as f64).sum()
    }

    #[test]
    fn spectral_row_matches_reference() {
        let mut seed = 99u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let m = Model {
            f_n: 1.3,
            f_r: 0.9,
            sn2: 2.5,
            sr2: 0.7,
            den_floor: 1e-3,
            shift: (0.3, -0.2),
            sig_ast: (0.0, 0.0),
            psf_err: 0.0,
            wing_err: 0.0,
            wing_sigma: 0.0,
        };
        let k = m.row_consts();
        let mut f = Vec::new();
        for len in [0usize, 1, 5, 8, 9, 16, 23, 320] {
            let mut c = || Complex::new(rnd(), rnd());
            let pn: Vec<Complex<f32>> = (0..len)
                .map(|i| {
                    if i % 11 == 3 {
                        Complex::new(0.0, 0.0)
                    } else {
                        c()
                    }
                })
                .collect();
            let pr: Vec<Complex<f32>> = (0..len).map(|_| c()).collect();
            let n0: Vec<Complex<f32>> = (0..len).map(|_| c()).collect();
            let r0: Vec<Complex<f32>> = (0..len).map(|_| c()).collect();
            let sh: Vec<Complex<f32>> = (0..len).map(|_| c()).collect();
            let g: Vec<f32> = (0..len).map(|_| c().re).collect();
            let (s0, g0) = (Complex::new(0.6, -0.8), 0.7);
            let (mut n1, mut r1) = (n0.clone(), r0.clone());
            let (mut sr1, mut sw1) = (vec![Complex::new(0.0, 0.0); len], vec![c(); len]);
            let (mut n2, mut r2) = (n0.clone(), r0.clone());
            let (mut sr2, mut sw2) = (sr1.clone(), sw1.clone());
            let a = k.row(
                (&pn, &pr),
                &mut n1,
                &mut r1,
                &mut sr1,
                Some(&mut sw1),
                (s0, &sh),
                (g0, &g),
                &mut f,
            );
            let b = row_ref(
                &k,
                (&pn, &pr),
                &mut n2,
                &mut r2,
                &mut sr2,
                Some(&mut sw2),
                (s0, &sh),
                (g0, &g),
            );
            let bits = |v: &[Complex<f32>]| -> Vec<(u32, u32)> {
                v.iter().map(|c| (c.re.to_bits(), c.im.to_bits())).collect()
            };
            assert_eq!(a.to_bits(), b.to_bits(), "len {len}");
            for (x, y) in [(&n1, &n2), (&r1, &r2), (&sr1, &sr2), (&sw1, &sw2)] {
                assert_eq!(bits(x), bits(y), "len {len}");
            }
        }
    }
}
