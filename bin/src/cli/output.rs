//! Writing to stdout without panicking: a closed pipe (`shoal wal dump | head`) ends the
//! output quietly, other write errors become a [`CliError`].

use std::io::{BufWriter, ErrorKind, StdoutLock, Write};

use super::{CliError, CliResult};

/// Buffered stdout that remembers the first write error instead of panicking.
pub struct Output {
    out: BufWriter<StdoutLock<'static>>,
    failed: Option<std::io::Error>,
}

impl Default for Output {
    fn default() -> Self {
        Self::new()
    }
}

impl Output {
    /// Locks stdout.
    pub fn new() -> Self {
        Self {
            out: BufWriter::with_capacity(1 << 16, std::io::stdout().lock()),
            failed: None,
        }
    }

    /// Writes one line (skipped after a failure).
    pub fn line(&mut self, line: std::fmt::Arguments<'_>) {
        if self.failed.is_none()
            && let Err(error) = self
                .out
                .write_fmt(line)
                .and_then(|()| self.out.write_all(b"\n"))
        {
            self.failed = Some(error);
        }
    }

    /// Flushes; a closed pipe is not an error.
    pub fn finish(mut self) -> CliResult {
        if self.failed.is_none()
            && let Err(error) = self.out.flush()
        {
            self.failed = Some(error);
        }
        match self.failed {
            None => Ok(()),
            Some(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
            Some(error) => Err(CliError::io(format!("cannot write to stdout: {error}"))),
        }
    }
}
