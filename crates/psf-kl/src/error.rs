//! The crate's error type and the per-reason rejection counts it carries.

use std::fmt;

/// How many catalogue objects were rejected by the star selection, per reason.
///
/// Each object is counted once, under the first cut it failed, in the order of the fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RejectionSummary {
    /// Objects in the input catalogue.
    pub candidates: usize,
    /// Saturated (flag `FLAG_SATURATED`, or peak above the saturation level).
    pub saturated: usize,
    /// Too close to the image edge for a full stamp (flag `FLAG_EDGE` or geometry).
    pub edge: usize,
    /// A masked (or non-finite) pixel inside the stamp, or flag `FLAG_MASKED`.
    pub masked: usize,
    /// Blended according to the detection (flag `FLAG_BLENDED`).
    pub blended: usize,
    /// Signal-to-noise ratio below the band.
    pub low_snr: usize,
    /// Signal-to-noise ratio above the band.
    pub high_snr: usize,
    /// A neighbour within the isolation radius.
    pub crowded: usize,
    /// FWHM or ellipticity a robust outlier (cosmic rays, galaxies).
    pub shape: usize,
    /// The stamp could not be used: non-positive flux after background subtraction,
    /// centroid failed or ran away, non-finite values.
    pub bad_stamp: usize,
    /// Dropped because more than `max_stars` stars passed (the faintest are dropped).
    pub over_limit: usize,
    /// Accepted stars.
    pub accepted: usize,
}

impl RejectionSummary {
    /// Total number of rejected objects.
    pub fn rejected(&self) -> usize {
        self.saturated
            + self.edge
            + self.masked
            + self.blended
            + self.low_snr
            + self.high_snr
            + self.crowded
            + self.shape
            + self.bad_stamp
            + self.over_limit
    }
}

impl fmt::Display for RejectionSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} candidates, {} accepted; rejected: saturated {}, edge {}, masked {}, blended {}, \
             low S/N {}, high S/N {}, crowded {}, shape outlier {}, bad stamp {}, over limit {}",
            self.candidates,
            self.accepted,
            self.saturated,
            self.edge,
            self.masked,
            self.blended,
            self.low_snr,
            self.high_snr,
            self.crowded,
            self.shape,
            self.bad_stamp,
            self.over_limit
        )
    }
}

/// Errors of the PSF crate. Bad data gives one of these, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum PsfError {
    /// No catalogue object survived the star selection.
    #[error("no usable PSF star ({rejections})")]
    NoUsableStars {
        /// Counts per rejection reason.
        rejections: RejectionSummary,
    },
    /// Every candidate that was otherwise usable is saturated.
    #[error("all {saturated} candidate PSF stars are saturated ({rejections})")]
    AllSaturated {
        /// Number of saturated candidates.
        saturated: usize,
        /// Counts per rejection reason.
        rejections: RejectionSummary,
    },
    /// Too few stars for the requested model (for example fewer stars than basis terms).
    #[error("too few PSF stars: found {found}, need at least {needed} for {what} ({rejections})")]
    TooFewStars {
        /// Stars available.
        found: usize,
        /// Stars needed.
        needed: usize,
        /// What needed them.
        what: &'static str,
        /// Counts per rejection reason (default when the stars did not come from a selection).
        rejections: RejectionSummary,
    },
    /// Two arrays that must have the same shape do not.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// Which input.
        what: &'static str,
        /// Expected `(rows, cols)`.
        expected: (usize, usize),
        /// Actual `(rows, cols)`.
        got: (usize, usize),
    },
    /// A parameter is out of its valid range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A serialised model is inconsistent (see [`crate::KlPsf::from_parts`]).
    #[error("invalid KL PSF model: {reason}")]
    InvalidModel {
        /// What is wrong.
        reason: String,
    },
    /// The symmetric eigendecomposition of the stamp Gram matrix failed.
    #[error("eigendecomposition of the {n}x{n} stamp Gram matrix failed")]
    Eigen {
        /// Matrix side.
        n: usize,
    },
    /// A profile fit did not converge to a valid profile.
    #[error("{profile} fit failed: {reason}")]
    FitFailed {
        /// Which profile.
        profile: &'static str,
        /// Why.
        reason: String,
    },
    /// Background estimation or source detection failed.
    #[error("source extraction failed: {0}")]
    Extract(#[from] source_extract::ExtractError),
}
