//! Errors of the cutout crate.

/// Why a cutout could not be made, saved, loaded, adjusted or plotted.
#[derive(Debug, thiserror::Error)]
pub enum CutoutError {
    /// The candidate's coordinates are NaN or infinite.
    #[error("candidate coordinates are not finite: x = {x}, y = {y}")]
    InvalidCoordinates {
        /// x (column), 0-based.
        x: f64,
        /// y (row), 0-based.
        y: f64,
    },
    /// The candidate's central pixel is outside the image.
    #[error("candidate at ({x:.2}, {y:.2}) is outside the {nx}x{ny} image")]
    CandidateOutside {
        /// x (column), 0-based.
        x: f64,
        /// y (row), 0-based.
        y: f64,
        /// Image width.
        nx: usize,
        /// Image height.
        ny: usize,
    },
    /// The radius is not a positive finite number of reasonable size.
    #[error("cutout radius must be positive and at most {max}, got {radius}")]
    InvalidRadius {
        /// The radius asked for.
        radius: f64,
        /// The largest radius allowed.
        max: f64,
    },
    /// A plane has a different shape from the image.
    #[error("plane {name:?} has shape {got:?}, the image has {expected:?}")]
    ShapeMismatch {
        /// The plane's name.
        name: String,
        /// The image's shape.
        expected: (usize, usize),
        /// The plane's shape.
        got: (usize, usize),
    },
    /// A plane the operation needs is absent.
    #[error("the cutout has no {0:?} plane (needed here)")]
    MissingPlane(String),
    /// A plane name is used twice or is reserved.
    #[error("invalid plane name {0:?} (empty, duplicated, or reserved)")]
    InvalidPlaneName(String),
    /// The adjust fit had nothing to fit (all pixels masked or zero error).
    #[error("nothing to fit: {0}")]
    NoData(String),
    /// A FITS error while saving or loading.
    #[error(transparent)]
    Fits(#[from] fits_io::FitsError),
    /// A header value of the wrong type while loading.
    #[error(transparent)]
    Header(#[from] fits_io::HeaderError),
    /// The file is not a cutout written by [`crate::write_cutout`].
    #[error("not a diffim cutout file: {0}")]
    NotACutout(String),
    /// The plot could not be encoded or written.
    #[error("cannot write PNG {path}: {message}")]
    Png {
        /// Target path.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}
