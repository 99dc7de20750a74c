//! Analytic PSF profiles, their integration over pixels, and the rendering radius.
//!
//! One function, [`pixel_stamp`], produces both what is rendered into the images and what
//! [`crate::SimPair::science_psf_at`] returns, so the truth matches the pixels exactly.

use ndarray::Array2;

use crate::config::{PsfConfig, PsfProfile};

/// `2 sqrt(2 ln 2)`: FWHM / sigma of a Gaussian.
const FWHM_PER_SIGMA: f64 = 2.354_820_045_030_949_3;

/// Enclosed-flux target of the rendering radius: the wings outside hold less than this
/// fraction of the flux (before the [`crate::SimConfig::max_render_radius`] cap).
pub const RENDER_LOSS: f64 = 1e-3;

/// The PSF at one position: an elliptical profile `f(q)` of the quadratic form
/// `q = A dx^2 + B dx dy + C dy^2` (in units of the profile's scale length).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalPsf {
    /// Radial profile.
    pub profile: PsfProfile,
    /// FWHM (pixels), geometric mean of the axes.
    pub fwhm: f64,
    /// Ellipticity `1 - b/a`.
    pub ellipticity: f64,
    /// Major-axis angle (radians, counter-clockwise from +x).
    pub angle: f64,
    qa: f64,
    qb: f64,
    qc: f64,
    /// Integral of the profile over the plane (for unit normalisation of samples).
    integral: f64,
    /// Major-axis FWHM (pixels).
    fwhm_major: f64,
    /// Radius (pixels) outside which less than [`RENDER_LOSS`] of the flux lies.
    radius: f64,
    /// `2 beta` when it is an integer (fast Moffat evaluation), else 0.
    half_int_beta: i32,
}

impl LocalPsf {
    /// The PSF of `cfg` at pixel `(x, y)` of an `ny x nx` image.
    pub fn at(cfg: &PsfConfig, x: f64, y: f64, ny: usize, nx: usize) -> Self {
        let fwhm = cfg.fwhm.eval(x, y, ny, nx).max(0.1);
        let e = cfg.ellipticity.eval(x, y, ny, nx).clamp(0.0, 0.95);
        let angle = cfg.angle_deg.eval(x, y, ny, nx).to_radians();
        Self::new(cfg.profile, fwhm, e, angle)
    }

    /// A PSF from its shape parameters (FWHM in pixels, ellipticity `1 - b/a`, angle in radians).
    pub fn new(profile: PsfProfile, fwhm: f64, ellipticity: f64, angle: f64) -> Self {
        let axis = (1.0 - ellipticity).sqrt();
        let fwhm_major = fwhm / axis;
        let fwhm_minor = fwhm * axis;
        // scale lengths along the axes
        let (sa, sb, integral, radius) = match profile {
            PsfProfile::Gaussian => {
                let sa = fwhm_major / FWHM_PER_SIGMA;
                let sb = fwhm_minor / FWHM_PER_SIGMA;
                // Enclosed fraction of a round Gaussian within r: 1 - exp(-r^2 / 2 s^2); use
                // 1e-5 (tighter than RENDER_LOSS) because the radius is small anyway.
                let r = sa * (2.0 * (1e5f64).ln()).sqrt();
                (sa, sb, 2.0 * std::f64::consts::PI * sa * sb, r)
            }
            PsfProfile::Moffat { beta } => {
                let k = 2.0 * ((2.0f64).powf(1.0 / beta) - 1.0).sqrt();
                let aa = fwhm_major / k;
                let ab = fwhm_minor / k;
                // Enclosed fraction within r: 1 - (1 + r^2/alpha^2)^(1 - beta).
                let r = aa * (RENDER_LOSS.powf(1.0 / (1.0 - beta)) - 1.0).max(0.0).sqrt();
                (aa, ab, std::f64::consts::PI * aa * ab / (beta - 1.0), r)
            }
        };
        let (s, c) = angle.sin_cos();
        let ia = 1.0 / (sa * sa);
        let ib = 1.0 / (sb * sb);
        LocalPsf {
            profile,
            fwhm,
            ellipticity,
            angle,
            qa: c * c * ia + s * s * ib,
            qb: 2.0 * s * c * (ia - ib),
            qc: s * s * ia + c * c * ib,
            integral,
            fwhm_major,
            radius,
            half_int_beta: match profile {
                PsfProfile::Moffat { beta }
                    if (2.0 * beta - (2.0 * beta).round()).abs() < 1e-12 && beta < 50.0 =>
                {
                    (2.0 * beta).round() as i32
                }
                _ => 0,
            },
        }
    }

    /// Radius (pixels) containing at least `1 - RENDER_LOSS` of the flux (1 - 1e-5 for a
    /// Gaussian), before any cap.
    pub fn radius(&self) -> f64 {
        self.radius
    }

    /// The profile value per unit area at offset `(dx, dy)` from the centre, normalised to
    /// unit integral over the plane.
    #[inline]
    pub fn density(&self, dx: f64, dy: f64) -> f64 {
        let q = self.qa * dx * dx + self.qb * dx * dy + self.qc * dy * dy;
        let f = match self.profile {
            PsfProfile::Gaussian => (-0.5 * q).exp(),
            PsfProfile::Moffat { beta } => {
                if self.half_int_beta > 0 {
                    // beta = k/2: (1+q)^-beta by multiplications and at most one sqrt.
                    let t = 1.0 + q;
                    let k = self.half_int_beta;
                    let p = t.powi(-(k / 2));
                    if k % 2 == 1 { p / t.sqrt() } else { p }
                } else {
                    (-beta * q.ln_1p()).exp()
                }
            }
        };
        f / self.integral
    }

    /// Integral of the density over the unit pixel whose centre is at offset `(dx, dy)`, by
    /// `s x s` mid-point sub-sampling in the core (within 1.5 major-axis FWHM of the centre),
    /// `min(s, 3)` out to 2.5 FWHM, and the centre value beyond (where the profile is smooth).
    #[inline]
    pub fn pixel_integral(&self, dx: f64, dy: f64, s: usize) -> f64 {
        let r2 = dx * dx + dy * dy;
        let f2 = self.fwhm_major * self.fwhm_major;
        let s = if r2 < 2.25 * f2 {
            s
        } else if r2 < 6.25 * f2 {
            s.min(3)
        } else {
            1
        };
        if s == 1 {
            return self.density(dx, dy);
        }
        let step = 1.0 / s as f64;
        let start = -0.5 + 0.5 * step;
        let mut acc = 0.0;
        for a in 0..s {
            let oy = dy + start + a as f64 * step;
            for b in 0..s {
                let ox = dx + start + b as f64 * step;
                acc += self.density(ox, oy);
            }
        }
        acc * step * step
    }
}

impl LocalPsf {
    /// Gaussian pixel integrals over an `n x n` box whose first pixel centre is at offset
    /// `(dx0, dy0)` from the source: uniform `s x s` mid-point sub-sampling of every pixel
    /// (unnormalised). Along each sub-row the samples follow the exact recurrence
    /// `g(X + d) = g(X) r`, `r(X + d) = r(X) exp(-A d^2)`, started at the sample nearest the
    /// row's maximum and run outwards (values only shrink, so underflow is harmless): two
    /// multiplications per sample instead of an `exp`.
    fn gaussian_box(&self, dx0: f64, dy0: f64, n: usize, s: usize) -> Array2<f64> {
        let ns = n * s;
        let d = 1.0 / s as f64;
        let x0 = dx0 - 0.5 + 0.5 * d;
        let y0 = dy0 - 0.5 + 0.5 * d;
        let (a, b, c) = (self.qa, self.qb, self.qc);
        let decay = (-a * d * d).exp();
        let mut out = Array2::<f64>::zeros((n, n));
        let mut buf = vec![0.0f64; ns];
        for iy in 0..ns {
            let yy = y0 + iy as f64 * d;
            let peak = ((-b * yy / (2.0 * a) - x0) / d).round();
            let ms = if peak.is_finite() {
                peak.clamp(0.0, (ns - 1) as f64) as usize
            } else {
                0
            };
            let xm = x0 + ms as f64 * d;
            let g0 = (-0.5 * (a * xm * xm + b * xm * yy + c * yy * yy)).exp();
            buf[ms] = g0;
            let mut g = g0;
            let mut r = (-0.5 * (a * (2.0 * xm * d + d * d) + b * d * yy)).exp();
            for v in buf[ms + 1..].iter_mut() {
                g *= r;
                r *= decay;
                *v = g;
            }
            let mut g = g0;
            let mut r = (-0.5 * (a * (d * d - 2.0 * xm * d) - b * d * yy)).exp();
            for v in buf[..ms].iter_mut().rev() {
                g *= r;
                r *= decay;
                *v = g;
            }
            let mut row = out.row_mut(iy / s);
            for (o, chunk) in row.iter_mut().zip(buf.chunks_exact(s)) {
                *o += chunk.iter().sum::<f64>();
            }
        }
        out *= d * d / self.integral;
        out
    }
}

/// A pixel-integrated, unit-sum PSF stamp placed on the pixel grid: `data[[j, i]]` is the
/// fraction of a source's flux that falls in image pixel `(y0 + j, x0 + i)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelStamp {
    /// Unit-sum values, shape `(2h+1, 2h+1)`.
    pub data: Array2<f64>,
    /// Image row of `data[[0, _]]` (may be negative near the edge).
    pub y0: isize,
    /// Image column of `data[[_, 0]]` (may be negative near the edge).
    pub x0: isize,
}

/// The stamp half-width used to render a source with this PSF: `ceil(radius)`, capped at
/// `max_radius`, at least 2.
pub fn render_half_width(psf: &LocalPsf, max_radius: f64) -> usize {
    psf.radius().min(max_radius).ceil().max(2.0) as usize
}

/// Pixel-integrated stamp of half-width `h` for a source at `(x, y)` (image pixel
/// coordinates, possibly fractional), centred on the nearest pixel and normalised to unit sum
/// over the stamp. Gaussians use `subsample x subsample` samples in every pixel; Moffats the
/// adaptive scheme of [`LocalPsf::pixel_integral`].
pub fn pixel_stamp(psf: &LocalPsf, x: f64, y: f64, h: usize, subsample: usize) -> PixelStamp {
    let xc = x.round();
    let yc = y.round();
    let n = 2 * h + 1;
    let hf = h as f64;
    let mut data = match psf.profile {
        PsfProfile::Gaussian => psf.gaussian_box(xc - hf - x, yc - hf - y, n, subsample),
        PsfProfile::Moffat { .. } => Array2::from_shape_fn((n, n), |(j, i)| {
            let dy = yc - hf + j as f64 - y;
            let dx = xc - hf + i as f64 - x;
            psf.pixel_integral(dx, dy, subsample)
        }),
    };
    let s: f64 = data.sum();
    if s > 0.0 && s.is_finite() {
        data.mapv_inplace(|v| v / s);
    }
    PixelStamp {
        data,
        y0: yc as isize - h as isize,
        x0: xc as isize - h as isize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_stamp_matches_core_helper() {
        let p = LocalPsf::new(PsfProfile::Gaussian, 3.0, 0.0, 0.0);
        let st = pixel_stamp(&p, 10.0, 10.0, 7, 9);
        let reference = diffim_core::psf::gaussian_stamp(15, 3.0, 0.0, 0.0);
        let err: f64 = (&st.data - &reference)
            .iter()
            .map(|v| v * v)
            .sum::<f64>()
            .sqrt();
        // Same integral, sampled differently (9x9 everywhere vs 9x9 in the core, 3x3 beyond).
        let norm: f64 = reference.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(err < 1e-4 * norm, "rel err {}", err / norm);
    }

    #[test]
    fn gaussian_recurrence_matches_direct_sampling() {
        // Strongly elliptical and rotated (tiny values along the minor axis underflow).
        for (e, ang, x, y) in [
            (0.9, 0.3, 3.2, -1.4),
            (0.0, 0.0, 0.49, 0.0),
            (0.5, 2.0, 0.1, 0.3),
        ] {
            let p = LocalPsf::new(PsfProfile::Gaussian, 2.0, e, ang);
            let h = render_half_width(&p, 100.0);
            let s = 5;
            let fast = pixel_stamp(&p, x, y, h, s);
            let (xc, yc) = (x.round(), y.round());
            let n = 2 * h + 1;
            let mut direct = Array2::from_shape_fn((n, n), |(j, i)| {
                let mut acc = 0.0;
                for a in 0..s {
                    for b in 0..s {
                        let oy = yc - h as f64 + j as f64 - 0.5 + (a as f64 + 0.5) / s as f64;
                        let ox = xc - h as f64 + i as f64 - 0.5 + (b as f64 + 0.5) / s as f64;
                        acc += p.density(ox - x, oy - y);
                    }
                }
                acc
            });
            direct /= direct.sum();
            let err = (&fast.data - &direct)
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(err < 1e-12, "e {e}: max err {err}");
            assert!(fast.data.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn densities_integrate_to_one() {
        for prof in [PsfProfile::Gaussian, PsfProfile::Moffat { beta: 3.0 }] {
            let p = LocalPsf::new(prof, 3.0, 0.3, 0.7);
            let h = 200;
            let mut s = 0.0;
            for j in -h..=h {
                for i in -h..=h {
                    s += p.pixel_integral(i as f64, j as f64, 5);
                }
            }
            assert!((s - 1.0).abs() < 2e-4, "{prof:?}: {s}");
        }
    }

    #[test]
    fn half_integer_moffat_matches_powf() {
        for beta in [2.0, 2.5, 3.5, 4.0] {
            let p = LocalPsf::new(PsfProfile::Moffat { beta }, 3.0, 0.2, 0.4);
            assert!(p.half_int_beta > 0);
            for (dx, dy) in [(0.0, 0.0), (1.3, -0.7), (10.0, 4.0), (-25.0, 30.0)] {
                let q = p.qa * dx * dx + p.qb * dx * dy + p.qc * dy * dy;
                let want = (1.0 + q).powf(-beta) / p.integral;
                let got = p.density(dx, dy);
                assert!(
                    (got / want - 1.0).abs() < 1e-13,
                    "beta {beta}: {got} vs {want}"
                );
            }
        }
        let p = LocalPsf::new(PsfProfile::Moffat { beta: 2.7 }, 3.0, 0.0, 0.0);
        assert_eq!(p.half_int_beta, 0);
    }

    #[test]
    fn fwhm_is_as_configured() {
        // Along the major axis the density falls to half the peak at fwhm_major / 2.
        for prof in [PsfProfile::Gaussian, PsfProfile::Moffat { beta: 2.5 }] {
            let p = LocalPsf::new(prof, 4.0, 0.36, 0.5);
            let (s, c) = 0.5f64.sin_cos();
            let r = 0.5 * 4.0 / 0.8;
            let ratio = p.density(r * c, r * s) / p.density(0.0, 0.0);
            assert!((ratio - 0.5).abs() < 1e-9, "{prof:?}: {ratio}");
            let r = 0.5 * 4.0 * 0.8;
            let ratio = p.density(-r * s, r * c) / p.density(0.0, 0.0);
            assert!((ratio - 0.5).abs() < 1e-9, "{prof:?}: {ratio}");
        }
    }

    #[test]
    fn render_radius_encloses_flux() {
        let p = LocalPsf::new(PsfProfile::Moffat { beta: 3.0 }, 3.0, 0.0, 0.0);
        let h = render_half_width(&p, 1e3) as i64;
        let mut inside = 0.0;
        for j in -h..=h {
            for i in -h..=h {
                inside += p.pixel_integral(i as f64, j as f64, 5);
            }
        }
        assert!(inside > 1.0 - RENDER_LOSS, "{inside}");
    }
}
