//! The error type of zogy-core.

/// Why a ZOGY subtraction or coaddition could not be made from the given data.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ZogyError {
    /// Two arrays that must share a shape do not.
    #[error("{what}: shape {got:?} differs from the image shape {expected:?}")]
    ShapeMismatch {
        /// Which input.
        what: &'static str,
        /// The image shape.
        expected: (usize, usize),
        /// The shape found.
        got: (usize, usize),
    },
    /// The image is empty or smaller than the PSF stamp.
    #[error("image {shape:?} is too small for PSF stamps of side {stamp}")]
    ImageTooSmall {
        /// Image shape.
        shape: (usize, usize),
        /// Largest PSF stamp side.
        stamp: usize,
    },
    /// A PSF stamp is even-sized, non-finite or has a non-positive sum.
    #[error("{which} PSF at ({x:.1}, {y:.1}) is invalid: {reason}")]
    BadPsf {
        /// `"new"`, `"reference"` or `"image j"`.
        which: String,
        /// Where the PSF was asked for.
        x: f64,
        /// Where the PSF was asked for.
        y: f64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Every pixel is masked or non-finite.
    #[error("no good pixel left in the {which} image")]
    NoGoodPixels {
        /// Which image.
        which: &'static str,
    },
    /// A background RMS is non-finite or not positive.
    #[error("background RMS of the {which} image is {value} (must be finite and > 0)")]
    BadSigma {
        /// Which image.
        which: &'static str,
        /// The value found.
        value: f64,
    },
    /// Too few usable stars to fit the flux ratio.
    #[error(
        "flux-ratio fit needs at least {needed} usable stars, found {found} (of {given} given)"
    )]
    TooFewStars {
        /// Minimum required ([`crate::ZogyParams::min_stars`]).
        needed: usize,
        /// Stars that passed the cuts.
        found: usize,
        /// Stars given.
        given: usize,
    },
    /// A parameter is out of its valid range.
    #[error("parameter {name} = {value} is invalid: {reason}")]
    BadParam {
        /// Parameter name.
        name: &'static str,
        /// Its value.
        value: f64,
        /// The valid range.
        reason: &'static str,
    },
    /// Coaddition was called with no image.
    #[error("coaddition needs at least one image")]
    NoImages,
}
