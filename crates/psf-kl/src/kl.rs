//! The Karhunen-Loeve (principal component) model of a spatially varying PSF
//! (Lauer 2002; ProperImage, Sánchez et al. 2019).

use crate::poly::{self, CoordScale};
use crate::{PsfError, PsfModel, StarSet, profile::measure_fwhm};
use ndarray::{Array2, ArrayView2};

/// Parameters of [`KlPsf::fit`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KlParams {
    /// Largest fraction of the *signal* eigenvalue sum that may be discarded (ProperImage's
    /// `inf_loss`). Default 0.002: ProperImage's 0.2 keeps a single element for any realistic
    /// field (the mean PSF alone carries > 90 % of the Gram trace), which cannot follow a FWHM
    /// change of 3 -> 5 px; 0.002 keeps the 3-5 elements needed for 3 % accuracy. Noise
    /// components are removed before this rule applies (see `noise_margin`), so a small value
    /// does not admit noise.
    pub inf_loss: f64,
    /// Eigenvalues below `noise_margin` times the Marchenko-Pastur upper edge of the noise
    /// spectrum, `nu (1 + sqrt(n/m))^2` (`nu` the mean noise energy of the weighted stamps,
    /// `n` stars, `m` pixels), are noise and never kept. Default 1.5. Set to 0 to disable.
    pub noise_margin: f64,
    /// Upper limit on the number of basis elements. Default 10.
    pub max_basis: usize,
    /// Fixed number of basis elements (overrides `inf_loss`, `noise_margin` and `max_basis`).
    /// More elements than stars gives [`PsfError::TooFewStars`].
    pub n_basis: Option<usize>,
    /// Degree of the 2-D polynomial of each coefficient field. Default 3 (ProperImage).
    pub degree: usize,
    /// The degree is reduced until there are at least this many stars per polynomial term
    /// (`(d+1)(d+2)/2` terms): with the default 3.0, degree 3 needs 30 stars, 2 needs 18,
    /// 1 needs 9, and fewer stars give a constant field (degree 0).
    pub min_stars_per_term: f64,
    /// Stars whose coefficient residual exceeds this many robust sigmas are dropped from the
    /// field fit (one re-fit). Default 5.
    pub clip_sigma: f64,
    /// Maximum ratio between the largest and the median star weight (stars are weighted by
    /// inverse noise energy; the cap keeps a few bright stars from dominating). Default 10.
    pub max_weight_ratio: f64,
    /// Wing regularisation for faint/sparse star sets. Where the azimuthal mean of the
    /// weighted mean stamp (in elliptical annuli 1 px wide, the ellipse of its Gaussian fit)
    /// falls below `wing_snr` times the per-pixel noise of that mean, every star stamp is
    /// replaced, annulus by annulus, by its own annulus mean (sums are preserved). This cuts
    /// the noise of the wings, where it dominates the PSF error on faint fields, by the
    /// square root of the annulus size, and lowers the noise floor of the basis selection.
    /// On bright fields the wings are above the noise and nothing changes. Applied only to
    /// sparse star sets (see [`KlParams::wing_max_stars`]). Default 0 (off); 1.0 is the
    /// tested setting for PSF-shape estimates on sparse, faint fields. It is off by default
    /// because PSF-fit photometry depends on the wings' true shape: with it on, ZOGY's flux
    /// ratio on a small sky-sim pair (the CLI test, 256^2) came out 1.34 instead of 1.2.
    #[serde(default = "default_wing_snr")]
    pub wing_snr: f64,
    /// The wing regularisation runs only when fewer stars than this enter the fit. With
    /// many stars the mean stamp's wings are measured well enough and their real asymmetry
    /// matters more than their noise: on the real properimage pair (77 stars) ring-averaged
    /// wings raised ZOGY's false positives at bright stars from 4 to 6. Default 40.
    #[serde(default = "default_wing_max_stars")]
    pub wing_max_stars: usize,
}

fn default_wing_max_stars() -> usize {
    40
}

fn default_wing_snr() -> f64 {
    0.0
}

impl Default for KlParams {
    fn default() -> Self {
        Self {
            inf_loss: 1e-5,
            noise_margin: 1.5,
            max_basis: 10,
            n_basis: None,
            degree: 3,
            min_stars_per_term: 3.0,
            clip_sigma: 5.0,
            max_weight_ratio: 10.0,
            wing_snr: default_wing_snr(),
            wing_max_stars: default_wing_max_stars(),
        }
    }
}

/// Diagnostics of a KL fit.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KlDiagnostics {
    /// Eigenvalues of the weighted Gram matrix, decreasing.
    pub eigenvalues: Vec<f64>,
    /// Mean noise energy per weighted stamp (the expected noise part of each eigenvalue).
    pub noise_level: f64,
    /// Eigenvalue threshold below which components are noise.
    pub noise_threshold: f64,
    /// Fraction of the signal eigenvalue sum discarded by the kept basis.
    pub discarded_fraction: f64,
    /// Polynomial degree requested.
    pub degree_requested: usize,
    /// Stars used in the fit.
    pub n_stars: usize,
    /// Stars clipped from the coefficient-field fit.
    pub n_clipped: usize,
    /// Weighted RMS of the coefficient-field residuals (relative to the stamp norm).
    pub coeff_residual_rms: f64,
    /// Number of stamp pixels replaced by their annulus mean (see [`KlParams::wing_snr`]).
    pub n_wing_pixels: usize,
}

/// The serialisable content of a [`KlPsf`] (what the CLI writes into a FITS file).
#[derive(Debug, Clone, PartialEq)]
pub struct KlPsfParts {
    /// Orthonormal basis stamps (odd square, same size).
    pub basis: Vec<Array2<f64>>,
    /// Polynomial degree of the coefficient fields.
    pub degree: usize,
    /// `coeffs[i][t]`: coefficient of term `t` (order of [`crate::poly::monomials`]) of
    /// field `a_i`.
    pub coeffs: Vec<Vec<f64>>,
    /// Coordinate scaling of the polynomials.
    pub scale: CoordScale,
    /// Shape `(ny, nx)` of the image the model was fitted on.
    pub image_shape: (usize, usize),
}

/// Spatially varying PSF: `PSF(x, y) = sum_i a_i(x, y) PSF_i / sum_i a_i(x, y) S_i`, with
/// `PSF_i` an orthonormal KL basis, `S_i` its sums and `a_i` 2-D polynomials in coordinates
/// scaled to `[-1, 1]`. The division renormalises every PSF to unit sum. Positions outside
/// the fitted image are clamped to its border (polynomials are not extrapolated).
#[derive(Debug, Clone, PartialEq)]
pub struct KlPsf {
    basis: Vec<Array2<f64>>,
    sums: Vec<f64>,
    degree: usize,
    coeffs: Vec<Vec<f64>>,
    scale: CoordScale,
    image_shape: (usize, usize),
    diagnostics: KlDiagnostics,
}

impl KlPsf {
    /// Fits the model to a star set (Lauer 2002, section 3; ProperImage `SingleImage.kl_basis`).
    ///
    /// 0. Faint fields: stamp wings where the weighted mean stamp is below `wing_snr` times
    ///    its per-pixel noise are replaced by their elliptical-annulus means
    ///    ([`KlParams::wing_snr`]); the noise floor of step 2 is lowered accordingly.
    /// 1. Stars are weighted by `w_j^2 = min(median(e) / e_j, max_weight_ratio)` (`e_j` the
    ///    stamp noise energy) and the Gram matrix `G_jk = w_j w_k s_j . s_k` is diagonalised.
    /// 2. Noise eigenvalues are dropped, then elements are kept until the discarded signal
    ///    fraction is `<= inf_loss` (see [`KlParams`]).
    /// 3. `PSF_i = sum_j v_ji w_j s_j / sqrt(lambda_i)` (orthonormal).
    /// 4. Each star's coefficients `c_ij = s_j . PSF_i` are fitted by weighted least squares
    ///    with a 2-D polynomial per element, with one outlier-clipping pass.
    pub fn fit(stars: &StarSet, params: &KlParams) -> Result<Self, PsfError> {
        let n = stars.len();
        let size = stars.stamp_size;
        let m = size * size;
        if n == 0 {
            return Err(
                if stars.rejections.candidates > 0
                    && stars.rejections.saturated > 0
                    && stars.rejections.rejected() == stars.rejections.saturated
                {
                    PsfError::AllSaturated {
                        saturated: stars.rejections.saturated,
                        rejections: stars.rejections,
                    }
                } else {
                    PsfError::NoUsableStars {
                        rejections: stars.rejections,
                    }
                },
            );
        }
        if !(params.inf_loss >= 0.0 && params.inf_loss < 1.0) {
            return Err(PsfError::InvalidParameter {
                name: "inf_loss",
                reason: format!("must be in [0, 1), got {}", params.inf_loss),
            });
        }
        if params.degree > poly::MAX_DEGREE {
            return Err(PsfError::InvalidParameter {
                name: "degree",
                reason: format!(
                    "must be at most {}, got {}",
                    poly::MAX_DEGREE,
                    params.degree
                ),
            });
        }
        if let Some(k) = params.n_basis {
            if k == 0 {
                return Err(PsfError::InvalidParameter {
                    name: "n_basis",
                    reason: "must be at least 1".into(),
                });
            }
            if k > n {
                return Err(PsfError::TooFewStars {
                    found: n,
                    needed: k,
                    what: "the requested number of KL basis elements",
                    rejections: stars.rejections,
                });
            }
        }
        let (ny, nx) = stars.image_shape;
        if ny == 0 || nx == 0 {
            return Err(PsfError::InvalidParameter {
                name: "image_shape",
                reason: "empty image".into(),
            });
        }

        // Star weights from the noise energies.
        let e: Vec<f64> = stars.stars.iter().map(|s| s.noise_energy).collect();
        let med_e = diffim_core::stats::median(e.iter().copied().filter(|v| *v > 0.0));
        let cap = params.max_weight_ratio.max(1.0);
        let w2: Vec<f64> = match med_e {
            Some(me) if me > 0.0 => e
                .iter()
                .map(|&ej| if ej > 0.0 { (me / ej).min(cap) } else { cap })
                .collect(),
            _ => vec![1.0; n],
        };
        let noise_level = match med_e {
            Some(_) => e.iter().zip(&w2).map(|(a, b)| a * b).sum::<f64>() / n as f64,
            None => 0.0,
        };

        // Wing regularisation (faint fields): stamps averaged in elliptical annuli where the
        // mean PSF is below the noise.
        let wings = if params.wing_snr > 0.0
            && stars.stars.len() < params.wing_max_stars
            && med_e.is_some()
        {
            wing_annuli(stars, &w2, params.wing_snr)
        } else {
            None
        };
        let regularised: Option<Vec<Array2<f64>>> = wings.as_ref().map(|(bins, nb)| {
            stars
                .stars
                .iter()
                .map(|s| annulus_average(&s.stamp, bins, *nb))
                .collect()
        });
        let stamps: Vec<&Array2<f64>> = match &regularised {
            Some(r) => r.iter().collect(),
            None => stars.stars.iter().map(|s| &s.stamp).collect(),
        };
        let n_wing_pixels = wings
            .as_ref()
            .map_or(0, |(bins, _)| bins.iter().filter(|b| b.is_some()).count());
        // The sky noise of the wing pixels now lives in one value per annulus (the star's own
        // Poisson noise sits in the untouched core).
        let noise_level = match &wings {
            Some((_, nb)) => {
                let cut = (n_wing_pixels - nb) as f64 / m as f64;
                stars
                    .stars
                    .iter()
                    .zip(&w2)
                    .map(|(s, w)| w * (s.noise_energy - cut * s.sky_noise_energy.max(0.0)))
                    .sum::<f64>()
                    / n as f64
            }
            None => noise_level,
        };

        // Weighted stamps (rows) and their Gram matrix.
        let y =
            faer::Mat::<f64>::from_fn(n, m, |j, p| w2[j].sqrt() * stamps[j][[p / size, p % size]]);
        let g = &y * y.transpose();
        let evd = g
            .self_adjoint_eigen(faer::Side::Lower)
            .map_err(|_| PsfError::Eigen { n })?;
        let s = evd.S().column_vector();
        let u = evd.U();
        // Decreasing order.
        let order: Vec<usize> = (0..n).rev().collect();
        let eig: Vec<f64> = order.iter().map(|&k| s[k]).collect();

        let mp_edge = noise_level * (1.0 + (n as f64 / m as f64).sqrt()).powi(2);
        let noise_threshold = params.noise_margin * mp_edge;
        let n_signal = eig
            .iter()
            .take_while(|&&l| l > noise_threshold && l > 0.0)
            .count()
            .max(1);
        let sig: Vec<f64> = eig[..n_signal]
            .iter()
            .map(|l| (l - noise_level).max(0.0))
            .collect();
        let total: f64 = sig.iter().sum();
        let mut k_keep = n_signal;
        if total > 0.0 {
            let mut tail = 0.0;
            for k in (1..n_signal).rev() {
                tail += sig[k];
                if tail > params.inf_loss * total {
                    break;
                }
                k_keep = k;
            }
        }
        k_keep = k_keep.min(params.max_basis.max(1));
        if let Some(k) = params.n_basis {
            k_keep = k;
        }
        let discarded_fraction = if total > 0.0 {
            sig.iter().skip(k_keep).sum::<f64>() / total
        } else {
            0.0
        };

        // Basis stamps.
        let mut basis = Vec::with_capacity(k_keep);
        for &col in order.iter().take(k_keep) {
            let lam = s[col];
            if !(lam > 0.0) {
                return Err(PsfError::TooFewStars {
                    found: n,
                    needed: k_keep,
                    what: "linearly independent KL basis elements",
                    rejections: stars.rejections,
                });
            }
            let mut b = Array2::<f64>::zeros((size, size));
            for j in 0..n {
                let c = u[(j, col)] / lam.sqrt();
                if c != 0.0 {
                    b.scaled_add(c * w2[j].sqrt(), stamps[j]);
                }
            }
            // Deterministic sign: positive sum (or positive largest pixel for zero-sum ones).
            let sum = b.sum();
            let flip = if sum.abs() > 1e-12 {
                sum < 0.0
            } else {
                let (mut best, mut val) = (0.0f64, 0.0);
                for &v in b.iter() {
                    if v.abs() > best {
                        best = v.abs();
                        val = v;
                    }
                }
                val < 0.0
            };
            if flip {
                b.mapv_inplace(|v| -v);
            }
            basis.push(b);
        }

        // Per-star coefficients and the polynomial fields.
        let scale = CoordScale::for_shape(ny, nx);
        let mut degree = params.degree;
        while degree > 0 && (n as f64) < params.min_stars_per_term * poly::n_terms(degree) as f64 {
            degree -= 1;
        }
        let uv: Vec<(f64, f64)> = stars
            .stars
            .iter()
            .map(|s| {
                let (u, v) = scale.scale(s.x, s.y);
                (u.clamp(-1.0, 1.0), v.clamp(-1.0, 1.0))
            })
            .collect();
        let c: Vec<Vec<f64>> = basis
            .iter()
            .map(|b| stamps.iter().map(|s| dot(&s.view(), &b.view())).collect())
            .collect();
        let too_few = || PsfError::TooFewStars {
            found: n,
            needed: poly::n_terms(degree),
            what: "the coefficient polynomials",
            rejections: stars.rejections,
        };
        let mut coeffs = poly::fit_many(degree, &uv, &w2, &c).ok_or_else(too_few)?;
        // One clipping pass on the weighted residual norm of each star.
        let chi = |coeffs: &Vec<Vec<f64>>| -> Vec<f64> {
            (0..n)
                .map(|j| {
                    let r2: f64 = (0..k_keep)
                        .map(|i| {
                            let r = c[i][j] - poly::eval(&coeffs[i], degree, uv[j].0, uv[j].1);
                            r * r
                        })
                        .sum();
                    (w2[j] * r2).sqrt()
                })
                .collect()
        };
        let chis = chi(&coeffs);
        let med = diffim_core::stats::median(chis.iter().copied()).unwrap_or(0.0);
        let sd = diffim_core::stats::mad_std(chis.iter().copied()).unwrap_or(0.0);
        let mut n_clipped = 0;
        if sd > 0.0 {
            let keep: Vec<bool> = chis
                .iter()
                .map(|&x| x <= med + params.clip_sigma * sd)
                .collect();
            n_clipped = keep.iter().filter(|k| !**k).count();
            if n_clipped > 0
                && (n - n_clipped) as f64
                    >= params.min_stars_per_term * poly::n_terms(degree) as f64
            {
                let wk: Vec<f64> = w2
                    .iter()
                    .zip(&keep)
                    .map(|(w, k)| if *k { *w } else { 0.0 })
                    .collect();
                coeffs = poly::fit_many(degree, &uv, &wk, &c).ok_or_else(too_few)?;
            } else {
                n_clipped = 0;
            }
        }
        let chis = chi(&coeffs);
        let coeff_residual_rms =
            (chis.iter().map(|x| x * x).sum::<f64>() / w2.iter().sum::<f64>().max(1e-300)).sqrt();

        let sums = basis.iter().map(|b| b.sum()).collect();
        Ok(Self {
            basis,
            sums,
            degree,
            coeffs,
            scale,
            image_shape: (ny, nx),
            diagnostics: KlDiagnostics {
                eigenvalues: eig,
                noise_level,
                noise_threshold,
                discarded_fraction,
                degree_requested: params.degree,
                n_stars: n,
                n_clipped,
                coeff_residual_rms,
                n_wing_pixels,
            },
        })
    }

    /// The orthonormal basis stamps `PSF_i`.
    pub fn basis(&self) -> &[Array2<f64>] {
        &self.basis
    }

    /// Number of basis elements.
    pub fn n_basis(&self) -> usize {
        self.basis.len()
    }

    /// Polynomial degree actually used (may be lower than requested, see [`KlParams`]).
    pub fn degree(&self) -> usize {
        self.degree
    }

    /// Polynomial coefficients of the (un-normalised) fields, `[basis][term]`.
    pub fn field_coefficients(&self) -> &[Vec<f64>] {
        &self.coeffs
    }

    /// Coordinate scaling of the polynomials.
    pub fn scale(&self) -> CoordScale {
        self.scale
    }

    /// Shape `(ny, nx)` of the fitted image.
    pub fn image_shape(&self) -> (usize, usize) {
        self.image_shape
    }

    /// Fit diagnostics (default values for a model rebuilt with [`Self::from_parts`]).
    pub fn diagnostics(&self) -> &KlDiagnostics {
        &self.diagnostics
    }

    /// Normalised coefficients `c_i(x, y)` such that `psf_at(x, y) = sum_i c_i PSF_i`
    /// exactly (the unit-sum renormalisation is folded in).
    pub fn coefficients_at(&self, x: f64, y: f64) -> Vec<f64> {
        let (u, v) = self.scale.scale(x, y);
        let (u, v) = (u.clamp(-1.0, 1.0), v.clamp(-1.0, 1.0));
        let mut mono = Vec::with_capacity(poly::n_terms(self.degree));
        poly::monomials(self.degree, u, v, &mut mono);
        self.normalised_coefficients(&mono)
    }

    fn normalised_coefficients(&self, mono: &[f64]) -> Vec<f64> {
        let mut a: Vec<f64> = self
            .coeffs
            .iter()
            .map(|c| c.iter().zip(mono).map(|(p, q)| p * q).sum())
            .collect();
        let norm: f64 = a.iter().zip(&self.sums).map(|(p, q)| p * q).sum();
        if norm.is_finite() && norm.abs() > 1e-12 {
            a.iter_mut().for_each(|v| *v /= norm);
        } else {
            // Degenerate field value: fall back to the first (mean-like) element alone.
            a.iter_mut().for_each(|v| *v = 0.0);
            a[0] = 1.0 / self.sums[0];
        }
        a
    }

    /// Everything needed to rebuild the model (see [`Self::from_parts`]).
    pub fn to_parts(&self) -> KlPsfParts {
        KlPsfParts {
            basis: self.basis.clone(),
            degree: self.degree,
            coeffs: self.coeffs.clone(),
            scale: self.scale,
            image_shape: self.image_shape,
        }
    }

    /// Rebuilds a model from its parts (for example read back from a FITS file), checking
    /// their consistency.
    pub fn from_parts(parts: KlPsfParts) -> Result<Self, PsfError> {
        let bad = |reason: String| PsfError::InvalidModel { reason };
        let first = parts
            .basis
            .first()
            .ok_or_else(|| bad("no basis element".into()))?;
        let size = first.nrows();
        if size % 2 == 0 || first.ncols() != size {
            return Err(bad(format!(
                "basis stamps must be square with an odd side, got {:?}",
                first.dim()
            )));
        }
        if parts.basis.iter().any(|b| b.dim() != (size, size)) {
            return Err(bad("basis stamps differ in size".into()));
        }
        if parts.basis.iter().any(|b| b.iter().any(|v| !v.is_finite())) {
            return Err(bad("non-finite basis pixel".into()));
        }
        if parts.degree > poly::MAX_DEGREE {
            return Err(bad(format!("degree {} is unreasonably high", parts.degree)));
        }
        let nt = poly::n_terms(parts.degree);
        if parts.coeffs.len() != parts.basis.len() || parts.coeffs.iter().any(|c| c.len() != nt) {
            return Err(bad(format!(
                "expected {} x {} field coefficients",
                parts.basis.len(),
                nt
            )));
        }
        if parts.coeffs.iter().flatten().any(|v| !v.is_finite()) {
            return Err(bad("non-finite field coefficient".into()));
        }
        let sc = parts.scale;
        if !(sc.hx > 0.0 && sc.hy > 0.0 && sc.cx.is_finite() && sc.cy.is_finite()) {
            return Err(bad(format!("invalid coordinate scaling {sc:?}")));
        }
        let sums: Vec<f64> = parts.basis.iter().map(|b| b.sum()).collect();
        if !(sums[0].abs() > 1e-12) {
            return Err(bad("first basis element has zero sum".into()));
        }
        Ok(Self {
            basis: parts.basis,
            sums,
            degree: parts.degree,
            coeffs: parts.coeffs,
            scale: parts.scale,
            image_shape: parts.image_shape,
            diagnostics: KlDiagnostics::default(),
        })
    }

    /// Normalised coefficient fields on the full pixel grid of a `(ny, nx)` image, one array
    /// per basis element (used by [`crate::convolve_varying`]).
    pub fn coefficient_maps(&self, ny: usize, nx: usize) -> Vec<Array2<f32>> {
        use rayon::prelude::*;
        let nb = self.n_basis();
        let nt = poly::n_terms(self.degree);
        // Row by row in parallel, one scratch buffer per row, no allocation per pixel.
        let rows: Vec<Vec<f32>> = (0..ny)
            .into_par_iter()
            .map(|yy| {
                let mut out = vec![0f32; nb * nx];
                let mut mono = Vec::with_capacity(nt);
                let mut a = vec![0f64; nb];
                for xx in 0..nx {
                    let (u, v) = self.scale.scale(xx as f64, yy as f64);
                    poly::monomials(
                        self.degree,
                        u.clamp(-1.0, 1.0),
                        v.clamp(-1.0, 1.0),
                        &mut mono,
                    );
                    let mut norm = 0.0;
                    for (i, c) in self.coeffs.iter().enumerate() {
                        a[i] = c.iter().zip(&mono).map(|(p, q)| p * q).sum();
                        norm += a[i] * self.sums[i];
                    }
                    if norm.is_finite() && norm.abs() > 1e-12 {
                        for i in 0..nb {
                            out[i * nx + xx] = (a[i] / norm) as f32;
                        }
                    } else {
                        out[xx] = (1.0 / self.sums[0]) as f32;
                    }
                }
                out
            })
            .collect();
        (0..nb)
            .map(|i| Array2::from_shape_fn((ny, nx), |(y, x)| rows[y][i * nx + x]))
            .collect()
    }
}

/// The wing annuli of a star set: for every stamp pixel, `Some(annulus)` when it lies in a
/// wing annulus (azimuthal mean of the weighted mean stamp below `snr` times its per-pixel
/// noise, from that annulus outwards), and the number of annuli. `None` when there is no wing
/// or the mean stamp cannot be fitted.
fn wing_annuli(stars: &StarSet, w2: &[f64], snr: f64) -> Option<(Vec<Option<usize>>, usize)> {
    let size = stars.stamp_size;
    let m = size * size;
    let wsum: f64 = w2.iter().sum();
    if !(wsum > 0.0) {
        return None;
    }
    let mut mean = Array2::<f64>::zeros((size, size));
    let mut var = 0.0;
    for (s, &w) in stars.stars.iter().zip(w2) {
        mean.scaled_add(w / wsum, &s.stamp);
        // Per-pixel variance of a stamp ~ its noise energy spread evenly over the pixels.
        var += (w / wsum).powi(2) * s.noise_energy / m as f64;
    }
    let sigma = var.sqrt();
    if !(sigma > 0.0) {
        return None;
    }
    let (_, ell) = crate::profile::fit_gaussian(&mean.view()).ok()?;
    let scale = ell.mean_scale();
    let c = (size / 2) as f64;
    // Elliptical radius in pixels (of the mean axis), rounded to 1-px annuli.
    let ring: Vec<usize> = (0..m)
        .map(|p| {
            let (x, y) = ((p % size) as f64 - c, (p / size) as f64 - c);
            (ell.q(x - ell.dx, y - ell.dy).max(0.0).sqrt() * scale).round() as usize
        })
        .collect();
    let nr = ring.iter().copied().max().unwrap_or(0) + 1;
    let (mut sum, mut cnt) = (vec![0.0; nr], vec![0usize; nr]);
    for (p, &r) in ring.iter().enumerate() {
        sum[r] += mean[[p / size, p % size]];
        cnt[r] += 1;
    }
    // The first annulus from which every annulus is below the noise (the core is never
    // touched: at least 2 px).
    let mut first = nr;
    for r in (2..nr).rev() {
        if cnt[r] > 0 && (sum[r] / cnt[r] as f64).abs() >= snr * sigma {
            break;
        }
        first = r;
    }
    if first >= nr {
        return None;
    }
    let bins: Vec<Option<usize>> = ring
        .iter()
        .map(|&r| (r >= first).then(|| r - first))
        .collect();
    Some((bins, nr - first))
}

/// Replaces every wing pixel of `stamp` by the mean of its annulus.
fn annulus_average(stamp: &Array2<f64>, bins: &[Option<usize>], nb: usize) -> Array2<f64> {
    let size = stamp.nrows();
    let (mut sum, mut cnt) = (vec![0.0; nb], vec![0usize; nb]);
    for (p, b) in bins.iter().enumerate() {
        if let Some(k) = b {
            sum[*k] += stamp[[p / size, p % size]];
            cnt[*k] += 1;
        }
    }
    let mut out = stamp.clone();
    for (p, b) in bins.iter().enumerate() {
        if let Some(k) = b {
            out[[p / size, p % size]] = sum[*k] / cnt[*k].max(1) as f64;
        }
    }
    out
}

fn dot(a: &ArrayView2<f64>, b: &ArrayView2<f64>) -> f64 {
    a.iter().zip(b.iter()).map(|(p, q)| p * q).sum()
}

impl PsfModel for KlPsf {
    fn psf_at(&self, x: f64, y: f64) -> Array2<f64> {
        let a = self.coefficients_at(x, y);
        let size = self.basis[0].nrows();
        let mut out = Array2::<f64>::zeros((size, size));
        for (b, &ai) in self.basis.iter().zip(&a) {
            out.scaled_add(ai, b);
        }
        out
    }
    fn stamp_size(&self) -> usize {
        self.basis[0].nrows()
    }
    fn fwhm_at(&self, x: f64, y: f64) -> f64 {
        measure_fwhm(&self.psf_at(x, y).view()).unwrap_or(f64::NAN)
    }
}
