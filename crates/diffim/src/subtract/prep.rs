//! What every method needs from an image before it subtracts: the bad-pixel mask, the sky
//! background and a per-pixel noise map, and (for stamp placement and FWHMs) clean stars.

use diffim_core::mask::finite_mask;
use ndarray::{Array2, ArrayView2, Zip};
use source_extract::{
    Background, BackgroundParams, DetectParams, FLAG_BLENDED, FLAG_EDGE, FLAG_MASKED,
    FLAG_SATURATED, NoiseParams, Object, detect, estimate_background, noise_model,
};

use super::SubtractError;

/// An image's mask, background and noise.
pub(crate) struct Prepared {
    /// `true` = bad: given mask, non-finite, or at/above saturation.
    pub mask: Array2<bool>,
    /// Mesh background and RMS (source-extract).
    pub background: Background,
    /// Per-pixel noise RMS: the given map, or the noise model with `gain` (background-only
    /// when no gain is known).
    pub noise: Array2<f32>,
}

/// Masks non-finite and saturated pixels, estimates the background and the noise map.
/// An image with no usable pixel is [`SubtractError::NoData`].
pub(crate) fn prepare_image(
    image: &ArrayView2<f32>,
    mask: Option<&ArrayView2<bool>>,
    saturation: Option<f64>,
    gain: Option<f64>,
    noise: Option<&ArrayView2<f32>>,
) -> Result<Prepared, SubtractError> {
    let mut bad = finite_mask(image, mask);
    if let Some(sat) = saturation {
        Zip::from(&mut bad)
            .and(image)
            .for_each(|b, &v| *b |= f64::from(v) >= sat);
    }
    if bad.iter().all(|&b| b) {
        return Err(SubtractError::NoData(
            "every pixel is masked or non-finite".into(),
        ));
    }
    let background = estimate_background(image, Some(&bad.view()), &BackgroundParams::default())?;
    let noise = match noise {
        Some(n) => n.to_owned(),
        None => noise_model(
            image,
            &background,
            Some(&bad.view()),
            gain.unwrap_or(f64::INFINITY),
            &NoiseParams::default(),
        )?,
    };
    Ok(Prepared {
        mask: bad,
        background,
        noise,
    })
}

/// Detections above `threshold` sigma without any of the saturated, edge, masked or blended
/// flags: stars fit for stamps and FWHMs.
pub(crate) fn clean_stars(
    image: &ArrayView2<f32>,
    p: &Prepared,
    threshold: f64,
    gain: Option<f64>,
    saturation: Option<f64>,
) -> Result<Vec<Object>, SubtractError> {
    let dp = DetectParams {
        threshold,
        gain,
        saturation,
        ..DetectParams::default()
    };
    let flagged = FLAG_SATURATED | FLAG_EDGE | FLAG_MASKED | FLAG_BLENDED;
    Ok(detect(image, &p.background, Some(&p.mask.view()), &dp)?
        .into_iter()
        .filter(|o| o.flags & flagged == 0)
        .collect())
}
