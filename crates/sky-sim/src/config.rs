//! Simulation parameters: [`SimConfig`], its presets, and the smooth fields ([`Smooth`]) that
//! make PSF width, ellipticity, sky and flux scale vary across the field.

use crate::SimError;

/// A smooth quadratic field over the image, used for every quantity that varies across the
/// field (PSF FWHM, ellipticity and angle, sky level, flux scale).
///
/// The value at pixel `(x, y)` of an `ny x nx` image is
/// `c + dx*u + dy*v + dxx*u^2 + dxy*u*v + dyy*v^2` with the normalised coordinates
/// `u = 2x/(nx-1) - 1`, `v = 2y/(ny-1) - 1` (so `u, v` run from -1 at pixel 0 to +1 at the last
/// pixel, and are 0 at the image centre). A field is therefore independent of the image size:
/// [`SimConfig::with_size`] keeps corner-to-corner variations as they were.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Smooth {
    /// Value at the image centre (`u = v = 0`).
    pub c: f64,
    /// Linear coefficient in `u` (half the left-to-right change).
    pub dx: f64,
    /// Linear coefficient in `v` (half the bottom-to-top change).
    pub dy: f64,
    /// Quadratic coefficient of `u^2`.
    pub dxx: f64,
    /// Quadratic coefficient of `u*v`.
    pub dxy: f64,
    /// Quadratic coefficient of `v^2`.
    pub dyy: f64,
}

impl Smooth {
    /// A constant field.
    pub const fn constant(c: f64) -> Self {
        Smooth {
            c,
            dx: 0.0,
            dy: 0.0,
            dxx: 0.0,
            dxy: 0.0,
            dyy: 0.0,
        }
    }

    /// A field varying linearly from `a` at pixel `(0, 0)` to `b` at the opposite corner
    /// `(nx-1, ny-1)` (value `(a+b)/2` at the centre and along the anti-diagonal).
    pub const fn corner_to_corner(a: f64, b: f64) -> Self {
        let h = (b - a) / 4.0;
        Smooth {
            c: (a + b) / 2.0,
            dx: h,
            dy: h,
            dxx: 0.0,
            dxy: 0.0,
            dyy: 0.0,
        }
    }

    /// A field varying quadratically along the diagonal: `a` at pixel `(0, 0)`, `b` at the far
    /// corner, with `t = (u+v)/2` running from -1 to 1, value `m + (b-a)/2 t + ((a+b)/2 - m) t^2`
    /// where `m` is the value at the centre.
    pub fn corner_to_corner_quadratic(a: f64, m: f64, b: f64) -> Self {
        let lin = (b - a) / 2.0;
        let q = (a + b) / 2.0 - m;
        // t = (u+v)/2, t^2 = (u^2 + 2uv + v^2)/4
        Smooth {
            c: m,
            dx: lin / 2.0,
            dy: lin / 2.0,
            dxx: q / 4.0,
            dxy: q / 2.0,
            dyy: q / 4.0,
        }
    }

    /// A plane with value `c` at the centre and total changes `gx` across the width and `gy`
    /// across the height (from pixel 0 to the last pixel).
    pub const fn plane(c: f64, gx: f64, gy: f64) -> Self {
        Smooth {
            c,
            dx: gx / 2.0,
            dy: gy / 2.0,
            dxx: 0.0,
            dxy: 0.0,
            dyy: 0.0,
        }
    }

    /// Value at normalised coordinates `(u, v)` (see the type docs).
    #[inline]
    pub fn eval_uv(&self, u: f64, v: f64) -> f64 {
        self.c + self.dx * u + self.dy * v + self.dxx * u * u + self.dxy * u * v + self.dyy * v * v
    }

    /// Value at pixel `(x, y)` of an `ny x nx` image.
    #[inline]
    pub fn eval(&self, x: f64, y: f64, ny: usize, nx: usize) -> f64 {
        let (u, v) = norm_uv(x, y, ny, nx);
        self.eval_uv(u, v)
    }

    /// Mean of the field over the square `u, v in [-1, 1]` (the image): `c + (dxx + dyy)/3`.
    pub fn mean(&self) -> f64 {
        self.c + (self.dxx + self.dyy) / 3.0
    }

    /// Lower and upper bounds of the field over the image, from a dense sampling (exact for
    /// the linear part; within 1e-3 of the range for the quadratic part).
    pub fn range(&self) -> (f64, f64) {
        let n = 33;
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for j in 0..n {
            for i in 0..n {
                let u = -1.0 + 2.0 * i as f64 / (n - 1) as f64;
                let v = -1.0 + 2.0 * j as f64 / (n - 1) as f64;
                let z = self.eval_uv(u, v);
                lo = lo.min(z);
                hi = hi.max(z);
            }
        }
        (lo, hi)
    }
}

/// Normalised coordinates `(u, v)` in `[-1, 1]` of pixel `(x, y)` (see [`Smooth`]).
#[inline]
pub(crate) fn norm_uv(x: f64, y: f64, ny: usize, nx: usize) -> (f64, f64) {
    let sx = if nx > 1 { 2.0 / (nx - 1) as f64 } else { 0.0 };
    let sy = if ny > 1 { 2.0 / (ny - 1) as f64 } else { 0.0 };
    (x * sx - 1.0, y * sy - 1.0)
}

/// Radial profile of a PSF.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum PsfProfile {
    /// Gaussian: `exp(-r^2 / 2 sigma^2)`, `FWHM = 2 sqrt(2 ln 2) sigma`.
    Gaussian,
    /// Moffat: `(1 + r^2/alpha^2)^-beta`, `FWHM = 2 alpha sqrt(2^(1/beta) - 1)`; `beta > 1`
    /// (2.5-4.765 is typical of seeing-limited images; smaller means heavier wings).
    Moffat {
        /// Power-law index of the wings (> 1).
        beta: f64,
    },
}

/// A spatially varying, possibly elliptical PSF.
///
/// At each position the profile has major-axis FWHM `fwhm / sqrt(1 - e)` and minor-axis FWHM
/// `fwhm * sqrt(1 - e)` (so `fwhm` is the geometric mean of the two, the FWHM of the
/// circular PSF with the same area), where `e = 1 - b/a` is the ellipticity; the major axis
/// points at `angle_deg` degrees counter-clockwise from the +x axis (towards +y).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PsfConfig {
    /// Radial profile.
    pub profile: PsfProfile,
    /// FWHM in pixels (geometric mean of major and minor axes), varying across the field.
    pub fwhm: Smooth,
    /// Ellipticity `1 - b/a` in `[0, 0.9]`, varying across the field.
    pub ellipticity: Smooth,
    /// Position angle of the major axis in degrees, counter-clockwise from +x.
    pub angle_deg: Smooth,
}

impl PsfConfig {
    /// A round Gaussian PSF of constant FWHM (pixels).
    pub const fn gaussian(fwhm: f64) -> Self {
        PsfConfig {
            profile: PsfProfile::Gaussian,
            fwhm: Smooth::constant(fwhm),
            ellipticity: Smooth::constant(0.0),
            angle_deg: Smooth::constant(0.0),
        }
    }

    /// A round Moffat PSF of constant FWHM (pixels) and index `beta`.
    pub const fn moffat(fwhm: f64, beta: f64) -> Self {
        PsfConfig {
            profile: PsfProfile::Moffat { beta },
            fwhm: Smooth::constant(fwhm),
            ellipticity: Smooth::constant(0.0),
            angle_deg: Smooth::constant(0.0),
        }
    }
}

/// Everything that differs between the science and the template exposure (apart from the
/// flux scale and offset, which are properties of the pair).
///
/// Units: ADU for sky and saturation, electrons per ADU for the gain, electrons for the read
/// noise (the FITS `RDNOISE` convention; in ADU it is `read_noise / gain`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    /// The PSF.
    pub psf: PsfConfig,
    /// Sky level (ADU per pixel), with its gradient.
    pub sky: Smooth,
    /// Gain in electrons per ADU (> 0).
    pub gain: f64,
    /// Read noise in electrons RMS (>= 0).
    pub read_noise: f64,
    /// Saturation level in ADU: pixels at or above it are clipped to it and masked.
    pub saturation: f64,
    /// Exposure time in seconds (header `EXPTIME` only).
    pub exptime: f64,
    /// Modified Julian date of the exposure (header `MJD-OBS` only).
    pub mjd: f64,
}

/// Complete description of a simulated science/template pair. All positions are 0-based
/// pixel coordinates of the science image (pixel (0,0) centred at (0.0, 0.0)).
///
/// Build one from a preset ([`SimConfig::default`], [`SimConfig::varying_psf`],
/// [`SimConfig::sfft_issue`], [`SimConfig::constant_psf`]) and adjust fields or use
/// [`SimConfig::with_size`] / [`SimConfig::with_seed`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SimConfig {
    /// Number of rows (y) of both images (>= 16).
    pub ny: usize,
    /// Number of columns (x) of both images (>= 16).
    pub nx: usize,
    /// Seed of every random choice; the same seed gives the same bytes on every machine and
    /// with any number of threads.
    pub seed: u64,
    /// The science exposure.
    pub science: ImageConfig,
    /// The template (reference) exposure, usually deeper (lower relative noise).
    pub template: ImageConfig,
    /// Number of stars, placed uniformly over the field.
    pub n_stars: usize,
    /// Faintest star flux in the template (ADU, total over the PSF).
    pub star_flux_min: f64,
    /// Brightest star flux in the template (ADU).
    pub star_flux_max: f64,
    /// Power-law index `a` of the flux distribution `dN/dF ~ F^-a` (any real value; 1 gives
    /// a log-uniform distribution; 2.5 is the Euclidean differential count).
    pub star_flux_index: f64,
    /// Photometric scale science/template (`F_sci = scale(x, y) * F_tmpl` for every star),
    /// varying across the field in science pixel coordinates.
    pub flux_scale: Smooth,
    /// Position offset of the science image relative to the template, in pixels: a star at
    /// template pixel `(x, y)` appears at science pixel `(x + offset.0, y + offset.1)`.
    pub offset: (f64, f64),
    /// Number of transients injected in the science image only.
    pub n_transients: usize,
    /// Range of transient S/N (see the crate docs for the definition); drawn log-uniformly.
    pub transient_snr: (f64, f64),
    /// Minimum distance (pixels) of a transient from the image edges.
    pub transient_edge_margin: f64,
    /// Minimum distance (pixels) of a transient from a bright star (template flux >=
    /// [`SimConfig::transient_bright_flux`]) and from another transient.
    pub transient_min_sep: f64,
    /// Stars at least this bright (template ADU) are kept [`SimConfig::transient_min_sep`]
    /// away from transients.
    pub transient_bright_flux: f64,
    /// Add Poisson and read noise (false: noiseless images; noise maps stay the true RMS).
    pub noise: bool,
    /// Sub-samples per pixel side used to integrate the PSF over the pixel in the core
    /// (odd, >= 1; 5 by default). See the crate docs.
    pub subsample: usize,
    /// Largest rendering radius (pixels) of a star: caps Moffat wings (see the crate docs).
    pub max_render_radius: f64,
    /// Right ascension of the template centre (degrees).
    pub ra: f64,
    /// Declination of the template centre (degrees).
    pub dec: f64,
    /// Pixel scale in arcseconds per pixel (both images).
    pub pixel_scale: f64,
}

impl Default for SimConfig {
    /// 512x512, round Gaussian PSFs (template FWHM 2.5 px, science 3.5 px, constant), 300
    /// stars with fluxes 300-300 000 ADU (index 2), flux scale 1.2 (constant), sky 1000 ADU
    /// (science, gain 1, read noise 5 e-) and 300 ADU (template, gain 4, read noise 5 e-,
    /// so about 3.6x lower noise) with gradients, saturation 60 000 ADU, no offset, 20
    /// transients at S/N 3-50, seed 42.
    fn default() -> Self {
        SimConfig {
            ny: 512,
            nx: 512,
            seed: 42,
            science: ImageConfig {
                psf: PsfConfig::gaussian(3.5),
                sky: Smooth::plane(1000.0, 40.0, -25.0),
                gain: 1.0,
                read_noise: 5.0,
                saturation: 60_000.0,
                exptime: 60.0,
                mjd: 60_000.5,
            },
            template: ImageConfig {
                psf: PsfConfig::gaussian(2.5),
                sky: Smooth::plane(300.0, -15.0, 20.0),
                gain: 4.0,
                read_noise: 5.0,
                saturation: 60_000.0,
                exptime: 300.0,
                mjd: 59_000.5,
            },
            n_stars: 300,
            star_flux_min: 300.0,
            star_flux_max: 300_000.0,
            star_flux_index: 2.0,
            flux_scale: Smooth::constant(1.2),
            offset: (0.0, 0.0),
            n_transients: 20,
            transient_snr: (3.0, 50.0),
            transient_edge_margin: 16.0,
            transient_min_sep: 10.0,
            transient_bright_flux: 3000.0,
            noise: true,
            subsample: 5,
            max_render_radius: 40.0,
            ra: 150.0,
            dec: 2.2,
            pixel_scale: 1.0,
        }
    }
}

impl SimConfig {
    /// Like the default, but the science PSF is a Moffat (beta 3.5) whose FWHM grows from
    /// 3 px at pixel (0,0) to 5 px at the far corner, with ellipticity 0 -> 0.2 along x and a
    /// position angle turning from 0 to 60 degrees along y; the template PSF is a round
    /// Gaussian of FWHM 2.5 px. Used by the psf-kl and zogy tests.
    pub fn varying_psf() -> Self {
        let mut c = SimConfig::default();
        c.science.psf = PsfConfig {
            profile: PsfProfile::Moffat { beta: 3.5 },
            fwhm: Smooth::corner_to_corner(3.0, 5.0),
            ellipticity: Smooth::plane(0.1, 0.2, 0.0),
            angle_deg: Smooth::plane(30.0, 0.0, 60.0),
        };
        c
    }

    /// The set-up of the SFFT issue: template Gaussian FWHM 2.5 px; science Gaussian with
    /// FWHM 3.5 px at pixel (0,0) rising to 4.5 px at the far corner and slightly elliptical
    /// (0.05 -> 0.15); flux scale 1.2 varying by 5 % across the field (1.17 -> 1.23 from
    /// corner to corner); sky gradients; 20 transients at S/N 3-50.
    pub fn sfft_issue() -> Self {
        let mut c = SimConfig::default();
        c.science.psf = PsfConfig {
            profile: PsfProfile::Gaussian,
            fwhm: Smooth::corner_to_corner(3.5, 4.5),
            ellipticity: Smooth::corner_to_corner(0.05, 0.15),
            angle_deg: Smooth::constant(20.0),
        };
        c.flux_scale = Smooth::corner_to_corner(1.17, 1.23);
        c
    }

    /// Like the default but with a constant, round PSF in both images (Gaussian, FWHM 2.5 px
    /// template and 3.5 px science) and a constant flux scale: the easy case.
    pub fn constant_psf() -> Self {
        SimConfig::default()
    }

    /// Sets the image shape `(ny, nx)` and scales the star count with the area (so the star
    /// density stays the same; transients are not scaled). Smooth fields are defined in
    /// normalised coordinates, so corner-to-corner variations are unchanged.
    pub fn with_size(mut self, ny: usize, nx: usize) -> Self {
        let area = (ny * nx) as f64 / (self.ny * self.nx).max(1) as f64;
        self.n_stars = (self.n_stars as f64 * area).round() as usize;
        self.ny = ny;
        self.nx = nx;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Turns the noise off (noiseless images; the noise maps remain the true RMS).
    pub fn noiseless(mut self) -> Self {
        self.noise = false;
        self
    }

    /// Checks every parameter; [`crate::simulate`] calls it first.
    ///
    /// # Errors
    /// [`SimError::InvalidSize`] or [`SimError::InvalidParameter`] naming the field (e.g.
    /// `science.gain`).
    pub fn validate(&self) -> Result<(), SimError> {
        if self.ny < 16 || self.nx < 16 || self.ny > 65_536 || self.nx > 65_536 {
            return Err(SimError::InvalidSize {
                ny: self.ny,
                nx: self.nx,
            });
        }
        let bad = |name: &'static str, value: f64, reason: &'static str| {
            Err(SimError::InvalidParameter {
                name,
                value,
                reason,
            })
        };
        let images = [
            (
                &self.science,
                [
                    "science.gain",
                    "science.read_noise",
                    "science.saturation",
                    "science.sky",
                    "science.psf.fwhm",
                    "science.psf.ellipticity",
                    "science.psf.angle_deg",
                    "science.psf.beta",
                ],
            ),
            (
                &self.template,
                [
                    "template.gain",
                    "template.read_noise",
                    "template.saturation",
                    "template.sky",
                    "template.psf.fwhm",
                    "template.psf.ellipticity",
                    "template.psf.angle_deg",
                    "template.psf.beta",
                ],
            ),
        ];
        for (im, n) in images {
            if !(im.gain.is_finite() && im.gain > 0.0) {
                return bad(n[0], im.gain, "must be finite and > 0");
            }
            if !(im.read_noise.is_finite() && im.read_noise >= 0.0) {
                return bad(n[1], im.read_noise, "must be finite and >= 0");
            }
            if im.saturation.is_nan() || im.saturation <= 0.0 {
                return bad(n[2], im.saturation, "must be > 0");
            }
            let (lo, _) = im.sky.range();
            if !(lo.is_finite() && lo >= 0.0) {
                return bad(n[3], lo, "must be >= 0 everywhere");
            }
            let (flo, fhi) = im.psf.fwhm.range();
            if !(flo.is_finite() && flo >= 0.5 && fhi <= 100.0) {
                return bad(n[4], flo, "must lie in [0.5, 100] px everywhere");
            }
            let (elo, ehi) = im.psf.ellipticity.range();
            if !(elo.is_finite() && elo >= 0.0 && ehi <= 0.9) {
                return bad(n[5], elo, "must lie in [0, 0.9] everywhere");
            }
            let (alo, _) = im.psf.angle_deg.range();
            if !alo.is_finite() {
                return bad(n[6], alo, "must be finite");
            }
            if let PsfProfile::Moffat { beta } = im.psf.profile
                && !(beta.is_finite() && beta > 1.05)
            {
                return bad(n[7], beta, "Moffat beta must be > 1.05");
            }
        }
        if !(self.star_flux_min.is_finite()
            && self.star_flux_min > 0.0
            && self.star_flux_max >= self.star_flux_min
            && self.star_flux_max.is_finite())
        {
            return bad(
                "star_flux_min",
                self.star_flux_min,
                "need 0 < star_flux_min <= star_flux_max < inf",
            );
        }
        if !self.star_flux_index.is_finite() {
            return bad("star_flux_index", self.star_flux_index, "must be finite");
        }
        let (slo, _) = self.flux_scale.range();
        if !(slo.is_finite() && slo > 0.0) {
            return bad("flux_scale", slo, "must be > 0 everywhere");
        }
        if !(self.offset.0.is_finite() && self.offset.1.is_finite()) {
            return bad("offset", self.offset.0, "must be finite");
        }
        let (s0, s1) = self.transient_snr;
        if !(s0.is_finite() && s0 > 0.0 && s1 >= s0 && s1.is_finite()) {
            return bad("transient_snr", s0, "need 0 < min <= max < inf");
        }
        if !(self.transient_edge_margin.is_finite() && self.transient_edge_margin >= 0.0) {
            return bad(
                "transient_edge_margin",
                self.transient_edge_margin,
                "must be >= 0",
            );
        }
        if 2.0 * self.transient_edge_margin >= self.nx.min(self.ny) as f64 - 1.0
            && self.n_transients > 0
        {
            return bad(
                "transient_edge_margin",
                self.transient_edge_margin,
                "leaves no room for transients",
            );
        }
        if !(self.transient_min_sep.is_finite() && self.transient_min_sep >= 0.0) {
            return bad("transient_min_sep", self.transient_min_sep, "must be >= 0");
        }
        if self.subsample == 0 || self.subsample % 2 == 0 || self.subsample > 15 {
            return bad("subsample", self.subsample as f64, "must be odd, in 1..=15");
        }
        if !(self.max_render_radius.is_finite() && self.max_render_radius >= 2.0) {
            return bad("max_render_radius", self.max_render_radius, "must be >= 2");
        }
        if !(self.pixel_scale.is_finite() && self.pixel_scale > 0.0) {
            return bad("pixel_scale", self.pixel_scale, "must be > 0");
        }
        if !(self.ra.is_finite() && self.dec.is_finite() && self.dec.abs() <= 90.0) {
            return bad("dec", self.dec, "ra/dec must be finite, |dec| <= 90");
        }
        Ok(())
    }
}
