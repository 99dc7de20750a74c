//! The one error type of the crate: every way the HOTPANTS boundary can fail.

use std::path::PathBuf;

/// How many bytes of HOTPANTS's stderr an error carries (the end of it, where HOTPANTS
/// prints its fatal messages).
pub const STDERR_TAIL_BYTES: usize = 2048;

/// Why running HOTPANTS failed.
///
/// The process variants ([`ExitStatus`](Self::ExitStatus), [`Crashed`](Self::Crashed),
/// [`Timeout`](Self::Timeout), [`MissingOutput`](Self::MissingOutput),
/// [`BadOutput`](Self::BadOutput)) carry the last [`STDERR_TAIL_BYTES`] of HOTPANTS's stderr
/// and the kept working directory, if [`HotpantsParams::keep_dir`](crate::HotpantsParams::keep_dir)
/// was set.
#[derive(Debug, thiserror::Error)]
pub enum HotpantsError {
    /// No executable: the explicit path does not exist, or `$HOTPANTS` is unset and no
    /// `hotpants` is on `PATH`.
    #[error("HOTPANTS executable not found: {searched}")]
    NotFound {
        /// What was looked at (explicit path, `$HOTPANTS`, `PATH` directories).
        searched: String,
    },
    /// The executable exists but could not be started (not executable, bad interpreter...).
    #[error("cannot start HOTPANTS {path:?}: {source}")]
    Spawn {
        /// The executable.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
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
    /// An input value or parameter that HOTPANTS cannot use.
    #[error("invalid {name}: {reason}")]
    InvalidInput {
        /// Which value.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// An escape-hatch argument names a flag this crate manages itself (an input or output
    /// file) or is not a flag.
    #[error("extra argument {flag:?} is not allowed: {reason}")]
    ReservedFlag {
        /// The flag as given.
        flag: String,
        /// Why.
        reason: &'static str,
    },
    /// Creating the working directory or writing an input file failed.
    #[error("I/O on {path:?}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// Writing an input FITS file failed.
    #[error("writing {file}: {source}")]
    WriteInput {
        /// File name inside the working directory.
        file: String,
        /// The FITS error.
        source: fits_io::FitsError,
    },
    /// HOTPANTS exited with a non-zero status.
    #[error("HOTPANTS exited with status {code}; stderr ends with:\n{stderr_tail}")]
    ExitStatus {
        /// The exit code.
        code: i32,
        /// The last bytes of stderr.
        stderr_tail: String,
        /// The working directory, when kept.
        work_dir: Option<PathBuf>,
    },
    /// HOTPANTS was killed by a signal (segmentation fault, abort, out-of-memory killer...).
    #[error("HOTPANTS crashed (signal {signal:?}); stderr ends with:\n{stderr_tail}")]
    Crashed {
        /// The signal number, when known (Unix).
        signal: Option<i32>,
        /// The last bytes of stderr.
        stderr_tail: String,
        /// The working directory, when kept.
        work_dir: Option<PathBuf>,
    },
    /// HOTPANTS ran past [`HotpantsParams::timeout`](crate::HotpantsParams::timeout) and was
    /// killed.
    #[error(
        "HOTPANTS timed out after {seconds:.1} s and was killed; stderr ends with:\n{stderr_tail}"
    )]
    Timeout {
        /// The limit that was exceeded, seconds.
        seconds: f64,
        /// The last bytes of stderr.
        stderr_tail: String,
        /// The working directory, when kept.
        work_dir: Option<PathBuf>,
    },
    /// HOTPANTS exited successfully but an output file it was asked for is missing.
    #[error("HOTPANTS wrote no {file}; stderr ends with:\n{stderr_tail}")]
    MissingOutput {
        /// File name inside the working directory.
        file: String,
        /// The last bytes of stderr.
        stderr_tail: String,
        /// The working directory, when kept.
        work_dir: Option<PathBuf>,
    },
    /// An output file exists but cannot be read or has the wrong shape.
    #[error("HOTPANTS output {file} is unusable ({reason}); stderr ends with:\n{stderr_tail}")]
    BadOutput {
        /// File name inside the working directory.
        file: String,
        /// What is wrong with it.
        reason: String,
        /// The last bytes of stderr.
        stderr_tail: String,
        /// The working directory, when kept.
        work_dir: Option<PathBuf>,
    },
}

impl HotpantsError {
    /// The tail of HOTPANTS's stderr, for the variants that ran the process.
    pub fn stderr_tail(&self) -> Option<&str> {
        match self {
            Self::ExitStatus { stderr_tail, .. }
            | Self::Crashed { stderr_tail, .. }
            | Self::Timeout { stderr_tail, .. }
            | Self::MissingOutput { stderr_tail, .. }
            | Self::BadOutput { stderr_tail, .. } => Some(stderr_tail),
            _ => None,
        }
    }

    /// The kept working directory, for the variants that ran the process with
    /// [`HotpantsParams::keep_dir`](crate::HotpantsParams::keep_dir).
    pub fn work_dir(&self) -> Option<&std::path::Path> {
        match self {
            Self::ExitStatus { work_dir, .. }
            | Self::Crashed { work_dir, .. }
            | Self::Timeout { work_dir, .. }
            | Self::MissingOutput { work_dir, .. }
            | Self::BadOutput { work_dir, .. } => work_dir.as_deref(),
            _ => None,
        }
    }
}
