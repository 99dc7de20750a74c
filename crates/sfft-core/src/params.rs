//! Parameters, inputs and the error type.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

/// How the kernel sum (the photometric scale) may vary across the field.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum FluxModel {
    /// The kernel sum is the `(0,0)` part of the kernel polynomial (order
    /// [`SfftParams::kernel_poly_order`]); its monomials of total degree above `order` are
    /// pulled towards zero by a soft penalty `penalty` (relative to each coefficient's own
    /// data curvature: the penalty is added to the Jacobi-scaled normal matrix, whose diagonal
    /// is 1). STDPipe's `flux_poly_order` / `flux_penalty`.
    Polynomial {
        /// Polynomial order the kernel sum is tied to (STDPipe default 1).
        order: usize,
        /// Penalty weight (STDPipe default 1e3; 0 leaves the kernel sum free).
        penalty: f64,
    },
    /// The kernel sum is one constant over the field (SFFT's `ConstPhotRatio=True`): the
    /// varying `(0,0)` coefficients are dropped from the model.
    Constant,
}

/// Which image is convolved by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConvolveChoice {
    /// The sharper image (smaller FWHM, given or estimated); the template on a tie.
    Auto,
    /// Convolve the template (the usual case: the template is sharper).
    Template,
    /// Convolve the science image.
    Science,
}

/// Which image was convolved (in [`crate::SfftResult`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Convolved {
    /// `template` was convolved to match `science`.
    Template,
    /// `science` was convolved to match `template`.
    Science,
}

/// Which pixels enter the least-squares fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FitRegion {
    /// Stamps of side `obj_size` around stars (given in [`SfftParams::obj`] or found
    /// automatically) plus a grid of background patches (default; fast at any image size).
    Stamps,
    /// Every good pixel of the frame (exact; the normal equations are accumulated in chunks of
    /// rows, O(N_pixels * N_params^2): for small images and tests).
    FullFrame,
}

/// Parameters of [`crate::subtract`]. Defaults follow STDPipe's `run_sfft`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SfftParams {
    /// Kernel stamp shape `(ny, nx)`, both odd. Default `(7, 7)` (STDPipe's default; see
    /// [`Self::auto_kernel`]).
    pub kernel_shape: (usize, usize),
    /// Derive the kernel shape from the FWHMs (given or estimated) with
    /// [`auto_kernel_shape`] instead of using [`Self::kernel_shape`] (which remains the
    /// fallback when an FWHM is unknown). Default `false` (STDPipe's fixed 7x7); the diffim
    /// facade turns it on. On sky-sim `sfft_issue` (template FWHM 2.5, science 3.5-4.5 px,
    /// ellipticity up to 0.15) a 7x7 kernel truncates the matching kernel and biases the flux
    /// scale by up to 0.9% even without noise (1.2% with noise), 9x9 by 0.1% (0.3-0.9% with
    /// noise).
    pub auto_kernel: bool,
    /// Order of the polynomial spatial variation of the kernel. Default 2.
    pub kernel_poly_order: usize,
    /// Order of the polynomial differential background. Default 2.
    pub bg_poly_order: usize,
    /// Spatial model of the kernel sum. Default `Polynomial { order: 1, penalty: 1e3 }`.
    pub flux: FluxModel,
    /// Tikhonov term added to the diagonal of the Jacobi-scaled normal matrix. Default 1e-6.
    pub ridge: f64,
    /// Clipping threshold in robust standard deviations of the normalised residual. Default 3.
    pub sigma_clip: f64,
    /// Maximum number of fit / clip iterations. Default 5.
    pub max_iter: usize,
    /// Object positions `(x, y)` (pixels, our 0-based convention) for the fit stamps; found
    /// automatically in the convolved image when `None`.
    pub obj: Option<Vec<(f64, f64)>>,
    /// Stamp side (pixels); default `3 * max FWHM` (odd, at least kernel + 4), or 15 when no
    /// FWHM is known.
    pub obj_size: Option<usize>,
    /// Science FWHM (pixels); estimated from the stamps when `None`.
    pub fwhm_science: Option<f64>,
    /// Template FWHM (pixels); estimated from the stamps when `None`.
    pub fwhm_template: Option<f64>,
    /// Which image to convolve. Default [`ConvolveChoice::Auto`].
    pub convolve: ConvolveChoice,
    /// Pixels used by the fit. Default [`FitRegion::Stamps`].
    pub fit_region: FitRegion,
    /// Maximum number of star stamps (automatic selection spreads them over an 8x8 grid of
    /// cells, brightest first). Default 400.
    pub max_stamps: usize,
    /// Background patches on a `bg_grid x bg_grid` grid (side `obj_size`) constrain the
    /// background polynomial away from stars. Default 12; 0 disables them.
    pub bg_grid: usize,
    /// Peak significance (in noise RMS above the local background) of automatically selected
    /// stars. Default 10.
    pub detect_threshold: f64,
}

impl Default for SfftParams {
    fn default() -> Self {
        Self {
            kernel_shape: (7, 7),
            auto_kernel: false,
            kernel_poly_order: 2,
            bg_poly_order: 2,
            flux: FluxModel::Polynomial {
                order: 1,
                penalty: 1e3,
            },
            ridge: 1e-6,
            sigma_clip: 3.0,
            max_iter: 5,
            obj: None,
            obj_size: None,
            fwhm_science: None,
            fwhm_template: None,
            convolve: ConvolveChoice::Auto,
            fit_region: FitRegion::Stamps,
            max_stamps: 400,
            bg_grid: 12,
            detect_threshold: 10.0,
        }
    }
}

/// Kernel shape from the FWHMs (pixels) of the two images: half-width
/// `h = clamp(ceil(3 sigma_m), 3, 10)` with `sigma_m = sqrt(|fwhm_s^2 - fwhm_t^2|) / 2.3548` the
/// width of the Gaussian matching kernel, shape `(2h+1, 2h+1)`. The kernel then holds the
/// matching kernel to +-3 sigma (99.5% of its flux in 2-D for a round Gaussian, and room for
/// moderate ellipticity). SFFT's own default, `clip(2 max FWHM, 2, 20)`, is far larger (its
/// GPU cost does not grow with the kernel); here the cost grows as the square of the number
/// of kernel pixels. Non-finite or non-positive FWHMs give the STDPipe default `(7, 7)`.
pub fn auto_kernel_shape(fwhm_science: f64, fwhm_template: f64) -> (usize, usize) {
    if !(fwhm_science > 0.0 && fwhm_template > 0.0 && (fwhm_science + fwhm_template).is_finite()) {
        return (7, 7);
    }
    let sm = (fwhm_science * fwhm_science - fwhm_template * fwhm_template)
        .abs()
        .sqrt()
        / (8.0 * 2f64.ln()).sqrt();
    let h = ((3.0 * sm).ceil() as usize).clamp(3, 10);
    (2 * h + 1, 2 * h + 1)
}

/// Images for [`crate::subtract`]: registered science and template on the same pixel grid.
#[derive(Debug, Clone)]
pub struct SfftInputs<'a> {
    /// Science ("new") image.
    pub science: ArrayView2<'a, f32>,
    /// Template (reference) image.
    pub template: ArrayView2<'a, f32>,
    /// Bad pixels of the science image (`true` = bad). NaN/Inf pixels are always masked.
    pub science_mask: Option<ArrayView2<'a, bool>>,
    /// Bad pixels of the template.
    pub template_mask: Option<ArrayView2<'a, bool>>,
    /// Per-pixel RMS noise of the science image; a constant estimated from pixel-to-pixel
    /// differences when `None`.
    pub science_noise: Option<ArrayView2<'a, f32>>,
    /// Per-pixel RMS noise of the template.
    pub template_noise: Option<ArrayView2<'a, f32>>,
    /// Pixels excluded from the fit only (`true` = do not fit; e.g. the complement of SFFT's
    /// `mask4sfft`, which marks the pixels to use). Unlike the image masks they are still
    /// subtracted and kept in the outputs.
    pub fit_mask: Option<ArrayView2<'a, bool>>,
}

impl<'a> SfftInputs<'a> {
    /// Inputs with no masks and no noise maps.
    pub fn new(science: ArrayView2<'a, f32>, template: ArrayView2<'a, f32>) -> Self {
        Self {
            science,
            template,
            science_mask: None,
            template_mask: None,
            science_noise: None,
            template_noise: None,
            fit_mask: None,
        }
    }
}

/// Errors of sfft-core.
#[derive(Debug, thiserror::Error)]
pub enum SfftError {
    /// An input array has a different shape from the science image.
    #[error("{what} has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Which input.
        what: &'static str,
        /// Science image shape `(ny, nx)`.
        expected: (usize, usize),
        /// Shape found.
        got: (usize, usize),
    },
    /// A parameter is out of range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParam {
        /// Parameter name.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The image is smaller than the kernel.
    #[error("image {ny}x{nx} is too small for kernel {ky}x{kx}")]
    ImageTooSmall {
        /// Image rows.
        ny: usize,
        /// Image columns.
        nx: usize,
        /// Kernel rows.
        ky: usize,
        /// Kernel columns.
        kx: usize,
    },
    /// Not enough good pixels to constrain the model.
    #[error("only {n_good} good pixels for {n_params} parameters")]
    TooFewPixels {
        /// Pixels available.
        n_good: usize,
        /// Parameters of the model.
        n_params: usize,
    },
    /// The normal equations could not be solved (non-finite values).
    #[error("the normal equations are singular or not finite")]
    SolveFailed,
}
