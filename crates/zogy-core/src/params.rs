//! Inputs, parameters and the result of a ZOGY subtraction.

use crate::psf::PsfProvider;
use ndarray::{Array2, ArrayView2};

/// How the flux ratio `beta = F_n / F_r` is obtained.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum BetaMode {
    /// Use this value (no fit).
    Fixed(f64),
    /// Fit it from matched PSF photometry of the stars in [`ZogyInputs::stars`].
    Fit,
}

/// Tuning of [`crate::zogy`]. Every field has a documented default.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ZogyParams {
    /// Flux ratio: fitted (default) or fixed.
    pub beta: BetaMode,
    /// Fit a global sub-pixel shift of the reference relative to the new image from the same
    /// stars and apply it to the reference (Fourier phase ramp, no extra FFT). Default `true`.
    pub fit_shift: bool,
    /// Fit and remove a constant background offset `gamma` of `N - beta R` (median over the
    /// good pixels). Default `true`.
    pub fit_offset: bool,
    /// Maximum robust (Tukey biweight) reweighting iterations of the beta/shift fit. Default 10.
    pub max_iter: usize,
    /// Tukey biweight tuning constant, in units of the robust residual scale. Default 4.685.
    pub tukey_c: f64,
    /// Minimum PSF-photometry S/N of a star in both images to enter the beta fit. Default 20.
    pub min_star_snr: f64,
    /// Minimum number of usable stars for the beta fit. Default 3.
    pub min_stars: usize,
    /// Reference zero point `F_r` (the new image's is `F_n = beta F_r`). Default 1.
    pub f_ref: f64,
    /// Astrometric noise `(sigma_x, sigma_y)` in pixels, the registration error of the pair
    /// (eqs. 30-33). `(0, 0)` (default) switches the astrometric terms off and saves 4 FFTs per
    /// tile.
    pub sigma_astrometric: (f64, f64),
    /// When `sigma_astrometric` is `(0, 0)` and the stars were fitted, use the star-to-star
    /// scatter of the measured shifts beyond their formal errors as the astrometric noise
    /// (ZOGY section 3.3 suggests estimating it from the registration residuals); values
    /// below 0.01 px are ignored. Default `true`.
    pub estimate_astrometric: bool,
    /// Relative PSF-model error `eps`: adds `eps^2 S_r^2` to the variance of `S`, with
    /// `S_r = k_r (x) R` the matched-filtered reference, so that the residuals of bright static
    /// stars left by an imperfect PSF model are not significant, while transients (absent from
    /// `R`) keep their full significance. Not in the paper; `0` (default) switches it off.
    /// Costs one inverse FFT per tile.
    pub psf_error: f64,
    /// Relative PSF-*wing* model error `eps_w`: adds `(eps_w G (x) S_r)^2` to the variance of
    /// `S`, with `G` a unit-sum Gaussian of standard deviation [`ZogyParams::psf_wing_sigma`].
    /// [`ZogyParams::psf_error`] covers model errors in the PSF core, where `S_r` is large;
    /// errors in the wings (a model stamp that is too small or too smooth, a halo that
    /// differs between the two images) leave residuals 2-4 FWHM from bright stars, where
    /// `S_r` has fallen to nothing but its smoothed version has not. Transients (absent from
    /// `R`) are penalised only within a few FWHM of stars much brighter than themselves.
    /// Not in the paper; `0` (default) switches it off. Costs one inverse FFT per tile.
    pub psf_wing_error: f64,
    /// Standard deviation (pixels) of the wing kernel `G`; `0` (default) = a quarter of the
    /// PSF stamp side.
    pub psf_wing_sigma: f64,
    /// Side of the tile cores used when a PSF varies over the image (ZiP/ZTF-style overlapping
    /// tiles blended with cos^2 weights). Ignored when both PSFs are constant. Default 256.
    pub tile_size: usize,
    /// Side of the tile cores for constant PSFs (`0`: one tile). A constant PSF needs no
    /// blending, but a large image is still cut into cores of about this side, each padded
    /// by the kernel margin and run one per thread: the FFTs stay cache-sized and no
    /// image-sized spectra are held. Sides below 1.5x this are one tile. Default 1024.
    pub constant_tile_size: usize,
    /// Half-width of the blend zone between tiles, pixels. Default 16: a wider zone costs
    /// FFT area (32 makes each tile ~18 % larger) and changed nothing measurable (sky-sim
    /// varying-PSF pair: every tile's and seam's Scorr std within 0.040 of 1 either way, flux
    /// 0.9974 vs 0.9964; real ProperImage pair: Scorr std 0.972 vs 0.973, no false peaks).
    pub tile_overlap: usize,
    /// Floor of the ZOGY denominator relative to its zero-frequency value, where both PSF
    /// transforms vanish. Default 1e-10.
    pub den_floor: f64,
}

impl Default for ZogyParams {
    fn default() -> Self {
        Self {
            beta: BetaMode::Fit,
            fit_shift: true,
            fit_offset: true,
            max_iter: 10,
            tukey_c: 4.685,
            min_star_snr: 20.0,
            min_stars: 3,
            f_ref: 1.0,
            sigma_astrometric: (0.0, 0.0),
            estimate_astrometric: true,
            psf_error: 0.0,
            psf_wing_error: 0.0,
            psf_wing_sigma: 0.0,
            tile_size: 256,
            constant_tile_size: 1024,
            tile_overlap: 16,
            den_floor: 1e-10,
        }
    }
}

/// The data of one subtraction: views in, nothing copied until needed.
///
/// Both images must be aligned on the same pixel grid and **background-subtracted** (a
/// residual constant offset is removed when [`ZogyParams::fit_offset`] is set).
pub struct ZogyInputs<'a> {
    /// New (science) image `N`.
    pub new: ArrayView2<'a, f32>,
    /// Reference (template) image `R`.
    pub reference: ArrayView2<'a, f32>,
    /// Bad pixels of `N` (`true` = bad). NaN/Inf pixels are always masked.
    pub new_mask: Option<ArrayView2<'a, bool>>,
    /// Bad pixels of `R`.
    pub ref_mask: Option<ArrayView2<'a, bool>>,
    /// Per-pixel RMS of `N` including the sources' Poisson noise (used for the Scorr variance,
    /// eqs. 25-29). Without it the variance is the constant `sigma_new^2` (no source noise).
    pub new_noise: Option<ArrayView2<'a, f32>>,
    /// Per-pixel RMS of `R`, as `new_noise`.
    pub ref_noise: Option<ArrayView2<'a, f32>>,
    /// Background RMS `sigma_n` of `N` (the scalar of eq. 13). `None`: the median of
    /// `new_noise` when given, else the MAD standard deviation of the good pixels.
    pub sigma_new: Option<f64>,
    /// Background RMS `sigma_r` of `R`, as `sigma_new`.
    pub sigma_ref: Option<f64>,
    /// PSF of `N`.
    pub new_psf: &'a dyn PsfProvider,
    /// PSF of `R`.
    pub ref_psf: &'a dyn PsfProvider,
    /// Positions `(x, y)` of bright, unsaturated, isolated stars for the flux-ratio and shift
    /// fit (ignored when `beta` is fixed and the shift fit is off).
    pub stars: &'a [(f64, f64)],
}

impl<'a> ZogyInputs<'a> {
    /// Inputs with no masks, no noise maps, estimated sigmas and no stars.
    pub fn new(
        new: ArrayView2<'a, f32>,
        reference: ArrayView2<'a, f32>,
        new_psf: &'a dyn PsfProvider,
        ref_psf: &'a dyn PsfProvider,
    ) -> Self {
        Self {
            new,
            reference,
            new_mask: None,
            ref_mask: None,
            new_noise: None,
            ref_noise: None,
            sigma_new: None,
            sigma_ref: None,
            new_psf,
            ref_psf,
            stars: &[],
        }
    }
}

impl std::fmt::Debug for ZogyInputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZogyInputs")
            .field("shape", &self.new.dim())
            .field("n_stars", &self.stars.len())
            .finish_non_exhaustive()
    }
}

/// Diagnostics of a ZOGY run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ZogyDiagnostics {
    /// Robust-fit iterations used for beta (0 when fixed).
    pub n_iter: usize,
    /// Stars that entered the beta fit (after the S/N and mask cuts).
    pub n_stars_used: usize,
    /// Stars kept with non-zero Tukey weight in the final iteration.
    pub n_stars_kept: usize,
    /// MAD standard deviation of Scorr over the unmasked pixels (1 for a correct noise model;
    /// from a regular subsample of about 2^18 of them on large images).
    pub scorr_robust_std: f64,
    /// Median of Scorr over the unmasked pixels (0 expected; same subsample).
    pub scorr_median: f64,
    /// Background RMS `sigma_n` used.
    pub sigma_new: f64,
    /// Background RMS `sigma_r` used.
    pub sigma_ref: f64,
    /// Number of tiles (1 for constant PSFs).
    pub n_tiles: usize,
    /// Tile cores along y, `[start, end)` rows: the seams are at their boundaries (blended
    /// over [`ZogyParams::tile_overlap`] pixels on each side). The end cores are wider than
    /// the inner ones, so that every tile fills its fast FFT length.
    pub tile_rows: Vec<(usize, usize)>,
    /// Tile cores along x, `[start, end)` columns.
    pub tile_cols: Vec<(usize, usize)>,
    /// FFT array shape `(ny, nx)` of one tile (padded to a fast size).
    pub pad_shape: (usize, usize),
    /// Full-size 2-D FFTs per tile (4 forward, two of them PSF stamps at half cost, + 2
    /// inverse; +5 with noise maps, two of them stamps; +1 with astrometric noise or the
    /// PSF-error term; +1 with the PSF-wing term). The PSF stamps' transforms are counted
    /// although constant PSFs share them between tiles.
    pub ffts_per_tile: usize,
    /// Pixels that were masked or non-finite in either input and inpainted.
    pub n_inpainted: usize,
    /// Astrometric noise `(sigma_x, sigma_y)` used, pixels (given or estimated).
    pub sigma_astrometric: (f64, f64),
}

/// Everything a ZOGY subtraction produces. Images have the input shape.
#[derive(Debug, Clone)]
pub struct ZogyResult {
    /// Proper difference image `D` (eq. 13), unit background variance.
    pub d: Array2<f32>,
    /// PSF of `D` at the image centre (eq. 14), unit sum, odd side.
    pub psf_d: Array2<f64>,
    /// Flux zero point of `D` (eq. 15), at the image centre's PSFs.
    pub f_d: f64,
    /// Matched-filtered difference `S = F_D D (x) P_D(-x)` (eq. 17), in flux units times `F_S`.
    pub s: Array2<f32>,
    /// Corrected significance `S / sqrt(V_Sn + V_Sr + V_ast)` (eqs. 25-33), N(0,1) on blank sky.
    pub scorr: Array2<f32>,
    /// PSF-photometry flux `S / F_S` (eqs. 41-43), in units where the *reference* zero point is
    /// `F_r` (= 1 by default): multiply by `beta` for counts in the new image.
    pub flux: Array2<f32>,
    /// One-sigma error of `flux`: `sqrt(V_S) / F_S` (source noise and astrometric terms included).
    pub flux_err: Array2<f32>,
    /// `F_S` (eq. 42) at the image centre's PSFs.
    pub f_s: f64,
    /// Flux ratio `beta = F_n / F_r` used (fitted or fixed).
    pub beta: f64,
    /// One-sigma error of the fitted beta (0 when fixed).
    pub beta_err: f64,
    /// Shift `(dx, dy)` in pixels applied to the reference (position in N minus position in R).
    pub shift: (f64, f64),
    /// Constant offset `gamma` removed from `N` (in `N` units).
    pub offset: f64,
    /// Output mask: bad or non-finite pixels of either input, dilated by the PSF half-size.
    /// `S`, `Scorr`, `flux` are set to 0 there.
    pub mask: Array2<bool>,
    /// Diagnostics.
    pub diagnostics: ZogyDiagnostics,
}

impl ZogyResult {
    /// PSF-photometry flux of a point source near `(x, y)`: the maximum of [`Self::flux`]
    /// within one pixel of the nearest pixel, refined by separable parabolic interpolation
    /// (recovers the peak of a source between pixel centres to ~0.5 %). `None` outside the
    /// image or on a masked pixel.
    pub fn flux_at(&self, x: f64, y: f64) -> Option<f64> {
        let (ny, nx) = self.flux.dim();
        let (xi, yi) = (x.round(), y.round());
        if !(xi >= 1.0 && yi >= 1.0 && xi < nx as f64 - 1.0 && yi < ny as f64 - 1.0) {
            return None;
        }
        let (mut by, mut bx) = (yi as usize, xi as usize);
        let c = (by, bx);
        for j in c.0 - 1..=c.0 + 1 {
            for i in c.1 - 1..=c.1 + 1 {
                if self.flux[[j, i]] > self.flux[[by, bx]] {
                    (by, bx) = (j, i);
                }
            }
        }
        if self.mask[[by, bx]] || by == 0 || bx == 0 || by + 1 >= ny || bx + 1 >= nx {
            return None;
        }
        let f = |j: usize, i: usize| self.flux[[j, i]] as f64;
        let v0 = f(by, bx);
        let corr = |m: f64, p: f64| {
            let den = m - 2.0 * v0 + p;
            if den < 0.0 {
                -(p - m).powi(2) / (8.0 * den)
            } else {
                0.0
            }
        };
        Some(v0 + corr(f(by, bx - 1), f(by, bx + 1)) + corr(f(by - 1, bx), f(by + 1, bx)))
    }
}
