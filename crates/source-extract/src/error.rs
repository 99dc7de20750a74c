//! The crate's error type.

/// Everything that can go wrong in source extraction. Bad data is an error, never a panic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtractError {
    /// The image has a zero dimension.
    #[error("image is empty ({ny} x {nx})")]
    EmptyImage {
        /// Rows.
        ny: usize,
        /// Columns.
        nx: usize,
    },
    /// A mask or noise map does not have the image's shape.
    #[error("{what} has shape {got:?}, the image has {expected:?}")]
    ShapeMismatch {
        /// Which array (`"mask"`, `"noise"`, `"background"`).
        what: &'static str,
        /// Shape of the image (ny, nx).
        expected: (usize, usize),
        /// Shape of the offending array (ny, nx).
        got: (usize, usize),
    },
    /// Every pixel is masked or non-finite.
    #[error("no usable pixel: all {npix} pixels are masked or non-finite")]
    NoGoodPixels {
        /// Number of pixels in the image.
        npix: usize,
    },
    /// No background box has enough good pixels to estimate the sky.
    #[error("no background box has at least {min_fraction} of good pixels")]
    NoGoodBoxes {
        /// Required fraction of good pixels per box.
        min_fraction: f64,
    },
    /// The gain is missing, zero, negative or not finite.
    #[error("invalid gain {gain} (e-/ADU): must be positive (infinite = no source noise)")]
    InvalidGain {
        /// The value given.
        gain: f64,
    },
    /// [`crate::estimate_gain`] could not measure a gain (values NaN where not measured).
    #[error(
        "cannot estimate the gain from the sky: {reason} (sky {sky:.3} ADU, sky RMS \
         {sky_rms:.3} ADU from {n_pixels} pixel pairs)"
    )]
    GainUnmeasurable {
        /// Sky level (ADU).
        sky: f64,
        /// Sky RMS (ADU).
        sky_rms: f64,
        /// Pixel differences the RMS was measured on.
        n_pixels: usize,
        /// Why no gain was returned.
        reason: &'static str,
    },
    /// A parameter is out of its documented range.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What is allowed.
        reason: &'static str,
    },
    /// No star qualified for an FWHM estimate (isolated, unsaturated, unflagged, S/N > min).
    #[error("no isolated unsaturated star with S/N > {min_snr} among {n_objects} objects")]
    NoStarsForFwhm {
        /// Number of objects given.
        n_objects: usize,
        /// S/N cut used.
        min_snr: f64,
    },
}
