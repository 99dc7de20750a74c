//! The generator: [`simulate`] and the [`SimPair`] it returns.

use fits_io::Header;
use ndarray::{Array2, Axis, Zip};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use crate::SimError;
use crate::config::{ImageConfig, SimConfig, norm_uv};
use crate::header::{Which, build_header};
use crate::psf::{LocalPsf, PixelStamp, pixel_stamp, render_half_width};
use crate::truth::{Transient, TrueStar, Truth};

/// RNG stream tags: every random choice draws from its own ChaCha8 generator, seeded from
/// `(seed, tag)`; the noise of row `j` uses stream `j` of its image's generator, so the
/// result does not depend on how rows are spread over threads.
const TAG_STARS: u64 = 1;
const TAG_TRANSIENTS: u64 = 2;
const TAG_NOISE_SCIENCE: u64 = 3;
const TAG_NOISE_TEMPLATE: u64 = 4;

/// Rows per band when stamps are accumulated (fixed, so the summation order is too).
const BAND: usize = 32;
/// Sources whose stamps are computed at once (bounds memory on big images).
const CHUNK: usize = 4096;

/// A simulated science/template pair with its truth. All arrays are `[y, x]`, in ADU.
#[derive(Debug, Clone)]
pub struct SimPair {
    /// Science image (ADU): sky + stars * flux scale + transients + noise, clipped at the
    /// saturation level.
    pub science: Array2<f32>,
    /// Template image (ADU): sky + stars + noise, clipped at its saturation level.
    pub template: Array2<f32>,
    /// Saturated science pixels (`true` = bad).
    pub science_mask: Array2<bool>,
    /// Saturated template pixels (`true` = bad).
    pub template_mask: Array2<bool>,
    /// True per-pixel RMS of the science noise (ADU): `sqrt(model / gain + (rn / gain)^2)`
    /// where `model` is the noiseless sky + sources.
    pub science_noise: Array2<f32>,
    /// True per-pixel RMS of the template noise (ADU), as for the science.
    pub template_noise: Array2<f32>,
    /// Science FITS header (TAN WCS, GAIN, RDNOISE, SATURATE, FWHM, ...).
    pub science_header: Header,
    /// Template FITS header.
    pub template_header: Header,
    /// What was injected.
    pub truth: Truth,
    /// The configuration that produced the pair.
    pub config: SimConfig,
}

impl SimPair {
    /// The true science PSF at science pixel `(x, y)`: a `size x size` unit-sum stamp,
    /// integrated over pixels exactly as the images were rendered, for a source at the centre
    /// of the middle pixel. A star rendered at an integer position, cut out with the same size
    /// (no larger than its rendering box) and normalised, equals this stamp.
    ///
    /// # Panics
    /// If `size` is even or zero (a caller bug).
    pub fn science_psf_at(&self, x: f64, y: f64, size: usize) -> Array2<f64> {
        psf_at(&self.config, &self.config.science, x, y, size)
    }

    /// The true template PSF at template pixel `(x, y)` (see [`SimPair::science_psf_at`]).
    ///
    /// # Panics
    /// If `size` is even or zero (a caller bug).
    pub fn template_psf_at(&self, x: f64, y: f64, size: usize) -> Array2<f64> {
        psf_at(&self.config, &self.config.template, x, y, size)
    }

    /// Exactly what a unit-flux source at science pixel `(x, y)` (fractional allowed) adds to
    /// the science image: the rendered, pixel-integrated stamp with its placement.
    pub fn science_psf_rendered(&self, x: f64, y: f64) -> PixelStamp {
        rendered(&self.config, &self.config.science, x, y)
    }

    /// Exactly what a unit-flux source at template pixel `(x, y)` adds to the template.
    pub fn template_psf_rendered(&self, x: f64, y: f64) -> PixelStamp {
        rendered(&self.config, &self.config.template, x, y)
    }

    /// Photometric scale science/template at science pixel `(x, y)`.
    pub fn flux_scale_at(&self, x: f64, y: f64) -> f64 {
        self.config
            .flux_scale
            .eval(x, y, self.config.ny, self.config.nx)
    }

    /// The true science sky (ADU), without sources.
    pub fn science_background(&self) -> Array2<f32> {
        background(&self.config, &self.config.science)
    }

    /// The true template sky (ADU), without sources.
    pub fn template_background(&self) -> Array2<f32> {
        background(&self.config, &self.config.template)
    }

    /// The true science background RMS (ADU): sky Poisson noise and read noise, no sources.
    pub fn science_background_rms(&self) -> Array2<f32> {
        background_rms(&self.config, &self.config.science)
    }

    /// The true template background RMS (ADU).
    pub fn template_background_rms(&self) -> Array2<f32> {
        background_rms(&self.config, &self.config.template)
    }

    /// The flux uncertainty (ADU) of optimal PSF photometry of a point source at science pixel
    /// `(x, y)` against the background variance: `sigma_flux^-2 = sum_i P_i^2 / var_i`. A
    /// transient's `snr` is `flux / science_sigma_flux(x, y)`.
    pub fn science_sigma_flux(&self, x: f64, y: f64) -> f64 {
        sigma_flux(&self.config, &self.config.science, x, y)
    }
}

fn psf_at(cfg: &SimConfig, im: &ImageConfig, x: f64, y: f64, size: usize) -> Array2<f64> {
    assert!(size % 2 == 1, "psf_at: size must be odd, got {size}");
    let p = LocalPsf::at(&im.psf, x, y, cfg.ny, cfg.nx);
    pixel_stamp(&p, 0.0, 0.0, size / 2, cfg.subsample).data
}

fn rendered(cfg: &SimConfig, im: &ImageConfig, x: f64, y: f64) -> PixelStamp {
    let p = LocalPsf::at(&im.psf, x, y, cfg.ny, cfg.nx);
    let h = render_half_width(&p, cfg.max_render_radius);
    pixel_stamp(&p, x, y, h, cfg.subsample)
}

fn background(cfg: &SimConfig, im: &ImageConfig) -> Array2<f32> {
    let (ny, nx) = (cfg.ny, cfg.nx);
    Array2::from_shape_fn((ny, nx), |(j, i)| {
        im.sky.eval(i as f64, j as f64, ny, nx) as f32
    })
}

fn background_rms(cfg: &SimConfig, im: &ImageConfig) -> Array2<f32> {
    let (ny, nx) = (cfg.ny, cfg.nx);
    let rn = im.read_noise / im.gain;
    Array2::from_shape_fn((ny, nx), |(j, i)| {
        let sky = im.sky.eval(i as f64, j as f64, ny, nx).max(0.0);
        (sky / im.gain + rn * rn).sqrt() as f32
    })
}

fn sigma_flux(cfg: &SimConfig, im: &ImageConfig, x: f64, y: f64) -> f64 {
    let st = rendered(cfg, im, x, y);
    let rn = im.read_noise / im.gain;
    let mut inv = 0.0;
    for ((j, i), &p) in st.data.indexed_iter() {
        let yy = st.y0 + j as isize;
        let xx = st.x0 + i as isize;
        if yy < 0 || xx < 0 || yy >= cfg.ny as isize || xx >= cfg.nx as isize {
            continue;
        }
        let sky = im.sky.eval(xx as f64, yy as f64, cfg.ny, cfg.nx).max(0.0);
        let var = sky / im.gain + rn * rn;
        if var > 0.0 {
            inv += p * p / var;
        }
    }
    if inv > 0.0 {
        1.0 / inv.sqrt()
    } else {
        f64::INFINITY
    }
}

/// SplitMix64 finaliser: decorrelates `(seed, tag)` into a generator seed.
fn sub_seed(seed: u64, tag: u64) -> u64 {
    let mut z = seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rng_for(seed: u64, tag: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(sub_seed(seed, tag));
    r.set_stream(stream);
    r
}

/// A point source to render into one image (that image's pixel coordinates).
struct Source {
    x: f64,
    y: f64,
    flux: f64,
    psf: LocalPsf,
}

/// A rendered stamp (flux included), in image coordinates.
struct Stamp {
    y0: isize,
    x0: isize,
    n: usize,
    data: Vec<f32>,
}

/// Sum of the sources' stamps, in a fixed order (source order within each band), whatever
/// the number of threads.
fn render(sources: &[Source], ny: usize, nx: usize, cfg: &SimConfig) -> Array2<f32> {
    let mut img = Array2::<f32>::zeros((ny, nx));
    for chunk in sources.chunks(CHUNK) {
        let stamps: Vec<Stamp> = chunk
            .par_iter()
            .map(|s| {
                let h = render_half_width(&s.psf, cfg.max_render_radius);
                let st = pixel_stamp(&s.psf, s.x, s.y, h, cfg.subsample);
                Stamp {
                    y0: st.y0,
                    x0: st.x0,
                    n: 2 * h + 1,
                    data: st.data.iter().map(|&v| (v * s.flux) as f32).collect(),
                }
            })
            .collect();
        img.axis_chunks_iter_mut(Axis(0), BAND)
            .into_par_iter()
            .enumerate()
            .for_each(|(b, mut band)| {
                let r0 = (b * BAND) as isize;
                let r1 = r0 + band.nrows() as isize;
                for st in &stamps {
                    let s_r0 = st.y0.max(r0);
                    let s_r1 = (st.y0 + st.n as isize).min(r1);
                    if s_r0 >= s_r1 {
                        continue;
                    }
                    let c0 = st.x0.max(0);
                    let c1 = (st.x0 + st.n as isize).min(nx as isize);
                    if c0 >= c1 {
                        continue;
                    }
                    for r in s_r0..s_r1 {
                        let srow = (r - st.y0) as usize * st.n;
                        let mut row = band.row_mut((r - r0) as usize);
                        for c in c0..c1 {
                            row[c as usize] += st.data[srow + (c - st.x0) as usize];
                        }
                    }
                }
            });
    }
    img
}

/// Turns the noiseless source image into the observed image in place (sky, noise,
/// saturation) and returns `(mask, noise_rms)`.
fn observe(
    img: &mut Array2<f32>,
    im: &ImageConfig,
    cfg: &SimConfig,
    tag: u64,
) -> (Array2<bool>, Array2<f32>) {
    let (ny, nx) = img.dim();
    let mut mask = Array2::from_elem((ny, nx), false);
    let mut noise = Array2::<f32>::zeros((ny, nx));
    let rn = im.read_noise / im.gain;
    let gain = im.gain;
    let inv_gain = 1.0 / gain;
    let sat = im.saturation;
    Zip::indexed(img.rows_mut())
        .and(mask.rows_mut())
        .and(noise.rows_mut())
        .par_for_each(|j, mut row, mut mrow, mut nrow| {
            let mut rng = rng_for(cfg.seed, tag, j as u64);
            let (u0, v) = norm_uv(0.0, j as f64, ny, nx);
            let du = if nx > 1 { 2.0 / (nx - 1) as f64 } else { 0.0 };
            let pixels = row.iter_mut().zip(mrow.iter_mut()).zip(nrow.iter_mut());
            for (i, ((px, m), n)) in pixels.enumerate() {
                let sky = im.sky.eval_uv(u0 + i as f64 * du, v).max(0.0);
                let model = sky + f64::from(*px).max(0.0);
                *n = (model * inv_gain + rn * rn).sqrt() as f32;
                let mut val = model;
                if cfg.noise {
                    let electrons = crate::poisson::sample(&mut rng, model * gain);
                    let read: f64 = rng.sample(StandardNormal);
                    val = electrons * inv_gain + rn * read;
                }
                if val >= sat {
                    val = sat;
                    *m = true;
                }
                *px = val as f32;
            }
        });
    (mask, noise)
}

fn draw_flux(cfg: &SimConfig, u: f64) -> f64 {
    let (a, b) = (cfg.star_flux_min, cfg.star_flux_max);
    let p = 1.0 - cfg.star_flux_index;
    if p.abs() < 1e-9 {
        a * (b / a).powf(u)
    } else {
        (a.powf(p) + u * (b.powf(p) - a.powf(p))).powf(1.0 / p)
    }
}

/// Generates a science/template pair from `cfg` (see the crate docs for the model).
///
/// Deterministic: the same config gives the same bytes, whatever the number of threads.
///
/// # Errors
/// [`SimError::InvalidSize`] / [`SimError::InvalidParameter`] for a bad config (see
/// [`SimConfig::validate`]); [`SimError::TransientPlacement`] when the transients cannot all
/// be placed `transient_min_sep` away from bright stars and each other.
pub fn simulate(cfg: &SimConfig) -> Result<SimPair, SimError> {
    cfg.validate()?;
    let (ny, nx) = (cfg.ny, cfg.nx);

    // --- stars (science coordinates), one sequential stream ---
    let mut rng = rng_for(cfg.seed, TAG_STARS, 0);
    let mut stars = Vec::with_capacity(cfg.n_stars);
    for _ in 0..cfg.n_stars {
        let x = rng.random::<f64>() * nx as f64 - 0.5;
        let y = rng.random::<f64>() * ny as f64 - 0.5;
        let flux_template = draw_flux(cfg, rng.random::<f64>());
        let flux_science = flux_template * cfg.flux_scale.eval(x, y, ny, nx);
        stars.push(TrueStar {
            x,
            y,
            flux_template,
            flux_science,
            saturated: false,
        });
    }

    // --- transients ---
    let transients = place_transients(cfg, &stars)?;

    // --- render ---
    let (ox, oy) = cfg.offset;
    let tmpl_sources: Vec<Source> = stars
        .iter()
        .map(|s| {
            let (x, y) = (s.x - ox, s.y - oy);
            Source {
                x,
                y,
                flux: s.flux_template,
                psf: LocalPsf::at(&cfg.template.psf, x, y, ny, nx),
            }
        })
        .collect();
    let sci_sources: Vec<Source> = stars
        .iter()
        .map(|s| (s.x, s.y, s.flux_science))
        .chain(transients.iter().map(|t| (t.x, t.y, t.flux)))
        .map(|(x, y, flux)| Source {
            x,
            y,
            flux,
            psf: LocalPsf::at(&cfg.science.psf, x, y, ny, nx),
        })
        .collect();

    let mut template = render(&tmpl_sources, ny, nx, cfg);
    let (template_mask, template_noise) =
        observe(&mut template, &cfg.template, cfg, TAG_NOISE_TEMPLATE);
    let mut science = render(&sci_sources, ny, nx, cfg);
    let (science_mask, science_noise) = observe(&mut science, &cfg.science, cfg, TAG_NOISE_SCIENCE);

    for s in &mut stars {
        s.saturated =
            near_masked(&science_mask, s.x, s.y) || near_masked(&template_mask, s.x - ox, s.y - oy);
    }

    Ok(SimPair {
        science,
        template,
        science_mask,
        template_mask,
        science_noise,
        template_noise,
        science_header: build_header(cfg, Which::Science),
        template_header: build_header(cfg, Which::Template),
        truth: Truth { stars, transients },
        config: cfg.clone(),
    })
}

/// Whether a pixel within one pixel of `(x, y)` is masked.
fn near_masked(mask: &Array2<bool>, x: f64, y: f64) -> bool {
    let (ny, nx) = mask.dim();
    let (xc, yc) = (x.round() as isize, y.round() as isize);
    for j in yc - 1..=yc + 1 {
        for i in xc - 1..=xc + 1 {
            if j >= 0
                && i >= 0
                && (j as usize) < ny
                && (i as usize) < nx
                && mask[[j as usize, i as usize]]
            {
                return true;
            }
        }
    }
    false
}

/// Rejection sampling of transient positions away from the edges, bright stars and each
/// other; fluxes from the drawn S/N.
fn place_transients(cfg: &SimConfig, stars: &[TrueStar]) -> Result<Vec<Transient>, SimError> {
    let (ny, nx) = (cfg.ny, cfg.nx);
    let mut rng = rng_for(cfg.seed, TAG_TRANSIENTS, 0);
    let bright: Vec<(f64, f64)> = stars
        .iter()
        .filter(|s| s.flux_template >= cfg.transient_bright_flux)
        .map(|s| (s.x, s.y))
        .collect();
    let m = cfg.transient_edge_margin;
    let sep2 = cfg.transient_min_sep * cfg.transient_min_sep;
    let (s0, s1) = cfg.transient_snr;
    let mut out: Vec<Transient> = Vec::with_capacity(cfg.n_transients);
    const MAX_TRIES: usize = 10_000;
    for _ in 0..cfg.n_transients {
        let snr = s0 * (s1 / s0).powf(rng.random::<f64>());
        let mut placed = None;
        for _ in 0..MAX_TRIES {
            let x = m + rng.random::<f64>() * (nx as f64 - 1.0 - 2.0 * m);
            let y = m + rng.random::<f64>() * (ny as f64 - 1.0 - 2.0 * m);
            let clear = |&(sx, sy): &(f64, f64)| (sx - x).powi(2) + (sy - y).powi(2) >= sep2;
            if bright.iter().all(clear) && out.iter().map(|t| (t.x, t.y)).all(|p| clear(&p)) {
                placed = Some((x, y));
                break;
            }
        }
        let Some((x, y)) = placed else {
            return Err(SimError::TransientPlacement {
                placed: out.len(),
                requested: cfg.n_transients,
            });
        };
        let flux = snr * sigma_flux(cfg, &cfg.science, x, y);
        out.push(Transient { x, y, flux, snr });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_law_fluxes_within_bounds_and_skewed() {
        let cfg = SimConfig::default();
        let lo = draw_flux(&cfg, 0.0);
        let hi = draw_flux(&cfg, 1.0 - 1e-15);
        assert!((lo - cfg.star_flux_min).abs() < 1e-9 * lo);
        assert!((hi - cfg.star_flux_max).abs() < 1e-6 * hi);
        // index 2: median = 2ab/(a+b)
        let med = draw_flux(&cfg, 0.5);
        let (a, b) = (cfg.star_flux_min, cfg.star_flux_max);
        assert!((med - 2.0 * a * b / (a + b)).abs() < 1e-6 * med);
    }

    #[test]
    fn sub_seeds_differ() {
        assert_ne!(sub_seed(1, TAG_STARS), sub_seed(1, TAG_TRANSIENTS));
        assert_ne!(sub_seed(1, TAG_STARS), sub_seed(2, TAG_STARS));
    }
}
