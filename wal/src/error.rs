//! Errors of the write-ahead log.

use std::path::PathBuf;

/// Result with the WAL's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record or header failed verification somewhere other than a torn tail.
    #[error("corrupt log: {path} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The segment or file holding the fault.
        path: PathBuf,
        /// Byte offset of the faulty record or header inside the file.
        offset: u64,
        /// What failed to verify.
        reason: String,
    },
    /// An earlier write or fsync failed; the log accepts no more writes.
    #[error("log is poisoned after an earlier write or sync failure; restart to recover")]
    Poisoned,
    /// The caller broke the store's contract (a gap, an index out of range).
    #[error("invalid log operation: {0}")]
    Invalid(String),
    /// Another process (or another open `Wal`) holds the log directory.
    #[error("log directory {path} is in use by another process")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The requested entries were compacted into a snapshot.
    #[error("index {index} is compacted (first available index is {first})")]
    Compacted {
        /// The index asked for.
        index: u64,
        /// The first index still in the log.
        first: u64,
    },
}
