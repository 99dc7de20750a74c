//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while fetching a template.
///
/// Transient faults ([`FetchError::Timeout`], [`FetchError::Network`], [`FetchError::Truncated`]
/// and [`FetchError::HttpStatus`] / [`FetchError::Service`] with a 5xx code) are retried with
/// exponential backoff before they are returned; the others are returned at once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The request (connection, headers and body) took longer than the configured timeout.
    #[error("timed out after {timeout_ms} ms fetching {url}")]
    Timeout {
        /// The URL asked for.
        url: String,
        /// The timeout in milliseconds.
        timeout_ms: u64,
    },
    /// The server answered with a non-success status and no structured error body.
    #[error("HTTP {status} fetching {url}: {excerpt}")]
    HttpStatus {
        /// The URL asked for.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The first 200 characters of the body (lossy UTF-8).
        excerpt: String,
    },
    /// The service reported an error as JSON `{title, description}` (hips2fits does).
    #[error("service error (HTTP {status}) from {url}: {title}: {description}")]
    Service {
        /// The URL asked for.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The `title` field.
        title: String,
        /// The `description` field.
        description: String,
    },
    /// A FITS file was expected but the body is something else (an HTML error page, text...).
    #[error("not a FITS file from {url} ({content_type}): {reason}: {excerpt:?}")]
    NotFits {
        /// The URL asked for.
        url: String,
        /// The Content-Type header (empty when absent).
        content_type: String,
        /// Why the body was rejected (e.g. "HTML page", or the FITS parser's message).
        reason: String,
        /// The first 120 characters of the body (lossy UTF-8).
        excerpt: String,
    },
    /// The connection ended before the body was complete (fewer bytes than Content-Length).
    #[error("truncated body from {url}: received {received} of {expected:?} bytes")]
    Truncated {
        /// The URL asked for.
        url: String,
        /// Bytes received.
        received: u64,
        /// Bytes announced by Content-Length, when known.
        expected: Option<u64>,
    },
    /// The body is larger than [`crate::FetchOptions::max_body_bytes`].
    #[error("body from {url} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The URL asked for.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// Connection refused, reset, DNS failure, TLS failure...
    #[error("network error fetching {url}: {message}")]
    Network {
        /// The URL asked for.
        url: String,
        /// The transport's message.
        message: String,
    },
    /// Offline mode and the request is not in the cache.
    #[error("offline mode: {url} is not in the cache ({cache_dir:?})")]
    CacheMiss {
        /// The URL asked for.
        url: String,
        /// The cache directory searched (None when no cache is configured).
        cache_dir: Option<PathBuf>,
    },
    /// The service had no data for the field (no PS1 skycell, no HiPS tile...).
    #[error("no {what} found for the field")]
    EmptyResult {
        /// What was looked for, e.g. "Pan-STARRS stack images".
        what: String,
    },
    /// A text answer (PS1 file table, HiPS properties) could not be understood.
    #[error("malformed answer from {url}: {reason}")]
    Malformed {
        /// The URL (or path) involved.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// A `--survey` specification could not be parsed.
    #[error("bad survey specification {spec:?}: {reason}")]
    BadSpec {
        /// The text given.
        spec: String,
        /// What was wrong.
        reason: String,
    },
    /// An option is out of range (zero shape, non-positive scale...).
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The rule it breaks.
        reason: String,
    },
    /// The grid's or a downloaded image's WCS is unusable.
    #[error("WCS error: {0}")]
    Wcs(#[from] wcs_grid::WcsError),
    /// A downloaded or cached FITS file could not be read, or an output could not be written.
    #[error("FITS error: {0}")]
    Fits(#[from] fits_io::FitsError),
    /// A local file (cache, HiPS mirror, temporary file) could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client or its async runtime could not be built, or a blocking function was
    /// called from inside an async runtime (which would deadlock).
    #[error("HTTP client setup failed: {0}")]
    Client(String),
}

impl FetchError {
    /// True for faults worth retrying: timeouts, network errors, truncated bodies and 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Timeout { .. }
            | FetchError::Network { .. }
            | FetchError::Truncated { .. } => true,
            FetchError::HttpStatus { status, .. } | FetchError::Service { status, .. } => {
                *status >= 500
            }
            _ => false,
        }
    }

    /// The HTTP status of an HTTP or service error.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::HttpStatus { status, .. } | FetchError::Service { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}
