//! Error types of the crate: [`FitsError`] for files, [`HeaderError`] for header look-ups.

use std::path::PathBuf;

/// Why a header look-up failed (typed getters of [`crate::Header`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeaderError {
    /// No card with this keyword.
    #[error("header keyword {key} is missing")]
    Missing {
        /// The keyword asked for.
        key: String,
    },
    /// The keyword exists but its value has another type (or no value at all).
    #[error("header keyword {key} is {found}, expected {expected}")]
    WrongType {
        /// The keyword asked for.
        key: String,
        /// The type the getter wanted (`"float"`, `"integer"`, `"logical"`, `"string"`).
        expected: &'static str,
        /// The type found (`"float"`, `"integer"`, `"logical"`, `"string"`, `"undefined"`).
        found: &'static str,
    },
}

/// Everything that can go wrong reading or writing a FITS file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FitsError {
    /// The file does not exist.
    #[error("FITS file not found: {path}")]
    NotFound {
        /// The path asked for.
        path: PathBuf,
    },
    /// Any other operating-system error while reading or writing `path`.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not FITS at all (empty, or does not start with `SIMPLE  =`).
    #[error("{path} is not a FITS file: {reason}")]
    NotFits {
        /// The file involved.
        path: PathBuf,
        /// What was wrong with its first bytes.
        reason: &'static str,
    },
    /// The file ends before the end of a header or data unit it declares.
    #[error("{path} is truncated: {what} needs {needed} bytes, the file has {actual}")]
    Truncated {
        /// The file involved.
        path: PathBuf,
        /// `"header"` or `"data"`.
        what: &'static str,
        /// Bytes the file would need: exact for data (offset of the end of the data unit,
        /// without padding); for a cut header, the next whole block (a lower bound).
        needed: u64,
        /// Bytes the file has.
        actual: u64,
    },
    /// A header has no `END` card although the file is padded to whole 2880-byte blocks.
    #[error("{path}: header of HDU {hdu} has no END card")]
    MissingEnd {
        /// The file involved.
        path: PathBuf,
        /// 0-based HDU number.
        hdu: usize,
    },
    /// A structural keyword is invalid (BITPIX, NAXIS, NAXISn...): cfitsio refused the header.
    #[error("{path}: malformed header ({keyword}): cfitsio status {code}: {message}")]
    BadHeader {
        /// The file involved.
        path: PathBuf,
        /// The keyword at fault, as far as known (e.g. `"NAXISn"`).
        keyword: &'static str,
        /// cfitsio status code.
        code: i32,
        /// cfitsio's message.
        message: String,
    },
    /// The requested HDU does not exist.
    #[error("{path}: HDU {hdu} not found")]
    HduNotFound {
        /// The file involved.
        path: PathBuf,
        /// The HDU asked for, as text (`"Primary"`, `"Index(3)"`, `"Name(\"MASK\")"`).
        hdu: String,
    },
    /// The HDU exists but is not an image (a binary or ASCII table).
    #[error("{path}: HDU {hdu} is a {kind}, not an image")]
    NotAnImage {
        /// The file involved.
        path: PathBuf,
        /// The HDU asked for.
        hdu: String,
        /// `"binary table"` or `"ASCII table"`.
        kind: &'static str,
    },
    /// The image does not have the dimensionality asked for (e.g. a 3-D cube read as 2-D, or an
    /// empty primary HDU). `shape` is in FITS order (NAXIS1, NAXIS2, ...).
    #[error("{path}: HDU {hdu} has shape {shape:?} (FITS order NAXIS1..), expected {expected}")]
    WrongDimensions {
        /// The file involved.
        path: PathBuf,
        /// The HDU asked for.
        hdu: String,
        /// NAXISn values in FITS order.
        shape: Vec<u64>,
        /// What was expected, e.g. `"2-D image"` or `"plane < 4"`.
        expected: String,
    },
    /// BITPIX is not one of 8, 16, 32, 64, -32, -64.
    #[error("{path}: unsupported BITPIX {bitpix}")]
    UnsupportedBitpix {
        /// The file involved.
        path: PathBuf,
        /// The value found.
        bitpix: i64,
    },
    /// The image is larger than [`crate::MAX_PIXELS`] pixels (or its size overflows).
    #[error("{path}: image of {pixels} pixels exceeds the limit of {limit}")]
    TooLarge {
        /// The file involved.
        path: PathBuf,
        /// Number of pixels claimed by the header (saturated at `u64::MAX`).
        pixels: u64,
        /// The limit.
        limit: u64,
    },
    /// Two arrays that must have the same shape do not (e.g. a mask and its image), or a
    /// write was asked for an empty array.
    #[error("shape mismatch for {what}: expected {expected:?}, got {actual:?}")]
    ShapeMismatch {
        /// What was being compared.
        what: String,
        /// Expected shape [rows, cols].
        expected: Vec<usize>,
        /// Actual shape [rows, cols].
        actual: Vec<usize>,
    },
    /// The output exists and [`crate::WriteOptions::overwrite`] is false.
    #[error("{path} already exists (set overwrite to replace it)")]
    AlreadyExists {
        /// The output path.
        path: PathBuf,
    },
    /// A header card cannot be written (NaN value, non-ASCII text, key or value too long).
    #[error("header card {key} cannot be written: {reason}")]
    InvalidCard {
        /// The keyword.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// A header value needed to read the file has the wrong type.
    #[error("{path}: {source}")]
    Header {
        /// The file involved.
        path: PathBuf,
        /// The header error.
        #[source]
        source: HeaderError,
    },
    /// Any other error reported by cfitsio.
    #[error("cfitsio error {code} ({status_text}) in {context}: {message}")]
    Cfitsio {
        /// cfitsio status code.
        code: i32,
        /// cfitsio's short text for the code.
        status_text: String,
        /// cfitsio's error-message stack (may be empty).
        message: String,
        /// The operation that failed (e.g. `"ffgpv"` with the file name).
        context: String,
    },
}
