//! One-call PSF estimation: background, detection, star selection and KL fit.

use crate::profile::measure_fwhm;
use crate::{KlParams, KlPsf, PsfError, PsfModel, SelectParams, StarSet, select_stars};
use ndarray::ArrayView2;
use source_extract::{
    Background, BackgroundParams, DetectParams, Object, detect, estimate_background,
};

/// Parameters of [`estimate_psf`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PsfEstimateParams {
    /// Background mesh parameters.
    pub background: BackgroundParams,
    /// Detection parameters.
    pub detect: DetectParams,
    /// Star selection parameters.
    pub select: SelectParams,
    /// KL model parameters.
    pub kl: KlParams,
    /// Saturation level (ADU, e.g. the `SATURATE` card): overrides the detection's and the
    /// selection's when set.
    pub saturation: Option<f64>,
    /// Gain (e-/ADU, the `GAIN` card): overrides the detection's and the selection's when set.
    pub gain: Option<f64>,
    /// Measure [`PsfEstimate::fwhm_stars`] (an elliptical-Gaussian fit per PSF star, about a
    /// fifth of the whole estimate's cost on a 1024x682 image with 75 stars). Default `true`;
    /// callers that do not report the per-star FWHM set `false` and get `NaN` there (nothing
    /// else changes).
    #[serde(default = "default_true")]
    pub measure_star_fwhm: bool,
}

impl Default for PsfEstimateParams {
    fn default() -> Self {
        Self {
            background: BackgroundParams::default(),
            detect: DetectParams::default(),
            select: SelectParams::default(),
            kl: KlParams::default(),
            saturation: None,
            gain: None,
            measure_star_fwhm: true,
        }
    }
}

fn default_true() -> bool {
    true
}

/// The result of [`estimate_psf`].
#[derive(Debug, Clone)]
pub struct PsfEstimate {
    /// The KL model.
    pub model: KlPsf,
    /// The full detection catalogue.
    pub objects: Vec<Object>,
    /// The PSF stars (stamps, positions, rejection counts).
    pub stars: StarSet,
    /// The background model.
    pub background: Background,
    /// FWHM (pixels) of the model at the image centre (see the crate conventions for the
    /// FWHM definition). The PSF may vary: use [`PsfModel::fwhm_at`] elsewhere.
    pub fwhm: f64,
    /// Median FWHM (pixels) of the individual star stamps, over the whole field; `NaN` when
    /// [`PsfEstimateParams::measure_star_fwhm`] is off.
    pub fwhm_stars: f64,
}

/// Runs background estimation, detection, star selection and the KL fit on an image.
///
/// # Errors
/// [`PsfError::Extract`] when background estimation or detection fails, and the errors of
/// [`select_stars`] and [`KlPsf::fit`].
pub fn estimate_psf(
    image: &ArrayView2<f32>,
    mask: Option<&ArrayView2<bool>>,
    params: &PsfEstimateParams,
) -> Result<PsfEstimate, PsfError> {
    let background = estimate_background(image, mask, &params.background)?;
    let mut dp = params.detect.clone();
    let mut sp = params.select.clone();
    if params.saturation.is_some() {
        dp.saturation = params.saturation;
        sp.saturation = params.saturation;
    }
    if params.gain.is_some() {
        dp.gain = params.gain;
        sp.gain = params.gain;
    }
    let objects = detect(image, &background, mask, &dp)?;
    let stars = select_stars(image, &background, mask, &objects, &sp)?;
    let model = KlPsf::fit(&stars, &params.kl)?;
    let (ny, nx) = image.dim();
    let fwhm = model.fwhm_at((nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0);
    let fwhm_stars = if params.measure_star_fwhm {
        diffim_core::stats::median(
            stars
                .stars
                .iter()
                .filter_map(|s| measure_fwhm(&s.stamp.view())),
        )
        .unwrap_or(f64::NAN)
    } else {
        f64::NAN
    };
    Ok(PsfEstimate {
        model,
        objects,
        stars,
        background,
        fwhm,
        fwhm_stars,
    })
}
