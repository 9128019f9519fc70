//! The CLI's error: a kind that maps to an exit code, and one clear message.

use std::io::Write;
use std::process::ExitCode;

/// Result of a subcommand.
pub type CliResult<T = ()> = Result<T, CliError>;

/// A failure to report to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    /// Machine-readable kind: `unavailable`, `io`, `corrupt`, `usage`, `invalid`,
    /// `not_found`, `conflict`, `unauthorized`.
    pub kind: &'static str,
    /// Exit code (SPEC §3).
    pub code: u8,
    /// One line naming what was wrong.
    pub message: String,
}

impl CliError {
    /// An I/O failure (exit 1).
    pub fn io(message: impl Into<String>) -> Self {
        Self::new("io", 1, message)
    }
    /// A corrupt file (exit 1: an I/O failure in the SPEC's terms).
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new("corrupt", 1, message)
    }
    /// Invalid usage (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new("usage", 2, message)
    }
    /// Invalid input (exit 2).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid", 2, message)
    }
    /// Something asked for does not exist (exit 3).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("not_found", 3, message)
    }
    /// A conflict with existing state (exit 4).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new("conflict", 4, message)
    }

    /// The cluster could not be reached or could not serve (exit 1).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new("unavailable", 1, message)
    }
    /// Not authenticated (exit 5).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new("unauthorized", 5, message)
    }

    /// An error of any kind and exit code.
    pub fn new(kind: &'static str, code: u8, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
        }
    }

    /// Prints the error (one line on stderr; the JSON document on stdout under `json`) and
    /// returns its exit code.
    pub fn report(&self, json: bool) -> ExitCode {
        let line = self.message.lines().next().unwrap_or_default();
        let _ = writeln!(std::io::stderr(), "shoal: error: {line}");
        if json {
            let document = serde_json::json!({
                "error": { "kind": self.kind, "message": self.message }
            });
            let _ = writeln!(std::io::stdout(), "{document}");
        }
        ExitCode::from(self.code)
    }
}

impl From<shoal_wal::Error> for CliError {
    fn from(error: shoal_wal::Error) -> Self {
        match error {
            shoal_wal::Error::Corrupt { .. } => Self::corrupt(error.to_string()),
            shoal_wal::Error::Invalid(_) => Self::invalid(error.to_string()),
            _ => Self::io(error.to_string()),
        }
    }
}

impl From<shoal_shop::ShopError> for CliError {
    fn from(error: shoal_shop::ShopError) -> Self {
        let code = u8::try_from(error.exit_code()).unwrap_or(1);
        Self::new(error.kind(), code, error.to_string())
    }
}

impl From<shoal_net::ClientError> for CliError {
    fn from(error: shoal_net::ClientError) -> Self {
        match error {
            shoal_net::ClientError::Rejected { code, message } => Self::new(
                crate::api::codes::kind(code),
                crate::api::codes::exit_code(code),
                message,
            ),
            other => Self::unavailable(other.to_string()),
        }
    }
}
