//! Image subtraction with a common input and result shape for every method.
//!
//! Each method (ZOGY, SFFT, HOTPANTS) takes the same [`SubtractInputs`] and returns the same
//! [`Subtraction`], so the CLI, the pipeline and the demo treat them alike. The glue here
//! estimates what a method needs (background, noise maps, PSFs, star lists) with the member
//! crates; the algorithms themselves live in `zogy-core`, `sfft-core` and `hotpants-sys`.

use ndarray::{Array2, ArrayView2};
use serde::Serialize;

mod cross;
pub mod hotpants;
mod output;
mod prep;
pub mod sfft;
pub mod zogy;

pub use cross::CrossConvolution;
pub use output::{OutputError, plane_file_name, write_outputs};

/// Which subtraction method to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// ZOGY proper subtraction (Zackay, Ofek & Gal-Yam 2016).
    Zogy,
    /// SFFT delta-basis kernel fit (Hu et al. 2022).
    Sfft,
    /// An installed HOTPANTS executable (Becker 2015; Alard & Lupton 1998).
    Hotpants,
}

impl std::str::FromStr for Method {
    type Err = SubtractError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "zogy" => Ok(Self::Zogy),
            "sfft" => Ok(Self::Sfft),
            "hotpants" => Ok(Self::Hotpants),
            _ => Err(SubtractError::UnknownMethod(s.to_string())),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Zogy => "zogy",
            Self::Sfft => "sfft",
            Self::Hotpants => "hotpants",
        })
    }
}

/// The images (aligned, same shape) and what is known about them.
#[derive(Debug, Clone, Copy)]
pub struct SubtractInputs<'a> {
    /// Science ("new") image, ADU.
    pub science: ArrayView2<'a, f32>,
    /// Template ("reference") image on the same pixel grid, ADU.
    pub template: ArrayView2<'a, f32>,
    /// Science bad-pixel mask (`true` = bad); NaN/Inf pixels are masked in any case.
    pub science_mask: Option<ArrayView2<'a, bool>>,
    /// Template bad-pixel mask.
    pub template_mask: Option<ArrayView2<'a, bool>>,
    /// Science gain, e-/ADU (for the source-noise term of the noise model).
    pub science_gain: Option<f64>,
    /// Template gain, e-/ADU.
    pub template_gain: Option<f64>,
    /// Science per-pixel noise RMS, when known (otherwise estimated).
    pub science_noise: Option<ArrayView2<'a, f32>>,
    /// Template per-pixel noise RMS, when known.
    pub template_noise: Option<ArrayView2<'a, f32>>,
    /// Saturation level of the science image, ADU (pixels above are masked).
    pub science_saturation: Option<f64>,
    /// Saturation level of the template, ADU.
    pub template_saturation: Option<f64>,
}

impl<'a> SubtractInputs<'a> {
    /// Inputs with only the two images; everything else estimated.
    pub fn new(science: ArrayView2<'a, f32>, template: ArrayView2<'a, f32>) -> Self {
        Self {
            science,
            template,
            science_mask: None,
            template_mask: None,
            science_gain: None,
            template_gain: None,
            science_noise: None,
            template_noise: None,
            science_saturation: None,
            template_saturation: None,
        }
    }

    /// Inputs for a simulated pair: its images and masks, and the gains and saturation levels
    /// of its headers (`GAIN`, `SATURATE`), as a user's FITS pair would give them.
    pub fn from_sim(pair: &'a sky_sim::SimPair) -> Self {
        let card = |h: &fits_io::Header, key: &str| h.get_f64(key).ok();
        Self {
            science_mask: Some(pair.science_mask.view()),
            template_mask: Some(pair.template_mask.view()),
            science_gain: card(&pair.science_header, "GAIN"),
            template_gain: card(&pair.template_header, "GAIN"),
            science_saturation: card(&pair.science_header, "SATURATE"),
            template_saturation: card(&pair.template_header, "SATURATE"),
            ..Self::new(pair.science.view(), pair.template.view())
        }
    }

    /// Checks that every plane has the science image's shape.
    pub fn validate(&self) -> Result<(), SubtractError> {
        let want = self.science.dim();
        let check = |name: &'static str, got: (usize, usize)| {
            if got == want {
                Ok(())
            } else {
                Err(SubtractError::ShapeMismatch {
                    name,
                    expected: want,
                    got,
                })
            }
        };
        check("template", self.template.dim())?;
        if let Some(m) = &self.science_mask {
            check("science mask", m.dim())?;
        }
        if let Some(m) = &self.template_mask {
            check("template mask", m.dim())?;
        }
        if let Some(m) = &self.science_noise {
            check("science noise", m.dim())?;
        }
        if let Some(m) = &self.template_noise {
            check("template noise", m.dim())?;
        }
        Ok(())
    }
}

/// The common result of every method.
#[derive(Debug, Clone)]
pub struct Subtraction {
    /// The method that made it.
    pub method: Method,
    /// Difference image, science photometric units (ADU of the science image).
    pub diff: Array2<f32>,
    /// Significance image: ZOGY's Scorr, or diff/noise for SFFT and HOTPANTS.
    pub significance: Array2<f32>,
    /// Per-pixel noise RMS of `diff`.
    pub noise: Array2<f32>,
    /// Combined bad-pixel mask of the result (`true` = bad).
    pub mask: Array2<bool>,
    /// Method-specific planes by name (e.g. "convolved", "flux", "psf_d", "kernel_grid");
    /// shapes may differ from the image (PSF stamps, kernel mosaics).
    pub extra: Vec<(String, Array2<f32>)>,
    /// FWHM (pixels) of the science PSF as measured, when the method measured it.
    pub science_fwhm: Option<f64>,
    /// Method diagnostics (fit quality, flux ratio, iterations...), ready for summary.json.
    pub diagnostics: serde_json::Value,
    /// Wall-clock seconds per stage, in order.
    pub timings: Vec<(String, f64)>,
    /// ZOGY's inputs for local cross-convolution (the adjust fit of its candidates); `None`
    /// for SFFT and HOTPANTS, whose `"convolved"` extra plane serves instead.
    pub cross: Option<CrossConvolution>,
}

impl Subtraction {
    /// An extra plane by name.
    pub fn extra(&self, name: &str) -> Option<&Array2<f32>> {
        self.extra.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }
}

/// Why a subtraction failed.
#[derive(Debug, thiserror::Error)]
pub enum SubtractError {
    /// A plane does not have the science image's shape.
    #[error("{name} has shape {got:?}, expected {expected:?} (the science image's)")]
    ShapeMismatch {
        /// Which plane.
        name: &'static str,
        /// The science image's shape (rows, columns).
        expected: (usize, usize),
        /// The plane's shape.
        got: (usize, usize),
    },
    /// An unknown method name.
    #[error("unknown subtraction method {0:?} (expected zogy, sfft or hotpants)")]
    UnknownMethod(String),
    /// Every pixel is masked or non-finite.
    #[error("no usable pixels: {0}")]
    NoData(String),
    /// Background, noise or detection failed.
    #[error("source extraction: {0}")]
    Extract(#[from] source_extract::ExtractError),
    /// PSF estimation failed (boxed: the PSF error carries rejection statistics).
    #[error("PSF estimation: {0}")]
    Psf(Box<psf_kl::PsfError>),
    /// ZOGY failed.
    #[error("ZOGY: {0}")]
    Zogy(#[from] zogy_core::ZogyError),
    /// SFFT failed.
    #[error("SFFT: {0}")]
    Sfft(#[from] sfft_core::SfftError),
    /// Running HOTPANTS failed (not found, exit status, crash, timeout, bad outputs).
    #[error("HOTPANTS: {0}")]
    Hotpants(#[from] hotpants_sys::HotpantsError),
}

impl From<psf_kl::PsfError> for SubtractError {
    fn from(e: psf_kl::PsfError) -> Self {
        Self::Psf(Box::new(e))
    }
}

/// Where the gain of an image came from (see [`resolve_gain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GainSource {
    /// Given by the caller (an option or a header keyword).
    Given,
    /// Estimated from the image's sky ([`source_extract::estimate_gain`]).
    Estimated,
    /// Neither given nor measurable: the methods' noise maps hold the background noise only
    /// (no source Poisson term).
    Unknown,
}

impl GainSource {
    /// `"given"`, `"estimated"` or `"unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Given => "given",
            Self::Estimated => "estimated",
            Self::Unknown => "unknown",
        }
    }
}

/// The gain of one image and where it came from ([`resolve_gain`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedGain {
    /// Gain, e-/ADU (`None` when unknown): what goes into [`SubtractInputs`].
    pub gain: Option<f64>,
    /// Where it came from.
    pub source: GainSource,
    /// The sky measurement, when the gain was estimated.
    pub estimate: Option<source_extract::GainEstimate>,
    /// Why the estimate failed, when the gain is unknown (e.g. a background-subtracted image).
    pub failure: Option<source_extract::ExtractError>,
}

impl ResolvedGain {
    /// `{"gain": .., "source": ..}` for a method's diagnostics.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({ "gain": self.gain, "source": self.source.as_str() })
    }
}

/// The gain to use for `image`: `given` when it is finite and positive, else an estimate from
/// the sky ([`source_extract::estimate_gain`]: `sky / sky_rms^2` over the pixels `mask` leaves,
/// which assumes a raw image with the pedestal removed, Poisson-limited sky and white noise),
/// else unknown. Every caller that builds [`SubtractInputs`] from files without a gain should
/// use it, so that the source-noise term of the noise model is not off by the unknown gain.
pub fn resolve_gain(
    image: &ArrayView2<f32>,
    mask: Option<&ArrayView2<bool>>,
    given: Option<f64>,
) -> ResolvedGain {
    if let Some(g) = given.filter(|g| g.is_finite() && *g > 0.0) {
        return ResolvedGain {
            gain: Some(g),
            source: GainSource::Given,
            estimate: None,
            failure: None,
        };
    }
    match source_extract::estimate_gain(image, mask) {
        Ok(e) => ResolvedGain {
            gain: Some(e.gain),
            source: GainSource::Estimated,
            estimate: Some(e),
            failure: None,
        },
        Err(e) => ResolvedGain {
            gain: None,
            source: GainSource::Unknown,
            estimate: None,
            failure: Some(e),
        },
    }
}

/// Seconds since `t0`, for [`Subtraction::timings`].
pub fn seconds_since(t0: std::time::Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

/// Runs `method` with its default options (`hotpants`: the executable to use, else
/// `$HOTPANTS`, then `PATH`).
pub fn subtract(
    method: Method,
    inputs: &SubtractInputs,
    hotpants: Option<&std::path::Path>,
) -> Result<Subtraction, SubtractError> {
    match method {
        Method::Zogy => zogy::subtract_zogy(inputs, &zogy::ZogyOptions::default()),
        Method::Sfft => sfft::subtract_sfft(inputs, &sfft::SfftOptions::default()),
        Method::Hotpants => {
            let mut opts = hotpants::HotpantsOptions::default();
            if let Some(p) = hotpants {
                opts.params.executable = Some(p.to_path_buf());
            }
            hotpants::subtract_hotpants(inputs, &opts)
        }
    }
}
