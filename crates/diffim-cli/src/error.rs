//! The CLI's one error type: a message and an exit code.

use std::fmt;

/// Exit code for a failure caused by the data or the environment (bad file, no stars...).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code for bad command-line usage (also what clap uses).
pub const EXIT_USAGE: i32 = 2;

/// An error that ends a command: printed as one line, then the process exits with `code`.
#[derive(Debug)]
pub struct CliError {
    /// Process exit code.
    pub code: i32,
    /// One-line message (with the chain of causes joined by ": ").
    pub message: String,
}

impl CliError {
    /// A usage error (exit code 2).
    pub fn usage(msg: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: msg.into(),
        }
    }

    /// A data or environment failure (exit code 1).
    pub fn failure(msg: impl Into<String>) -> Self {
        Self {
            code: EXIT_FAILURE,
            message: msg.into(),
        }
    }

    /// Prefixes the message with context, e.g. the file being processed.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> Self {
        let mut message = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            let t = s.to_string();
            if !message.contains(&t) {
                message.push_str(": ");
                message.push_str(&t);
            }
            src = s.source();
        }
        Self {
            code: EXIT_FAILURE,
            message,
        }
    }
}

/// Adds context to any `Result` whose error converts into [`CliError`].
pub trait Context<T> {
    /// Prefixes the error message with `ctx`.
    fn context(self, ctx: impl fmt::Display) -> Result<T, CliError>;
}

impl<T, E: Into<CliError>> Context<T> for Result<T, E> {
    fn context(self, ctx: impl fmt::Display) -> Result<T, CliError> {
        self.map_err(|e| e.into().context(ctx))
    }
}
