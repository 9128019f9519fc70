//! Small file-system helpers with errors that name the path.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Maps an `io::Error` to [`Error::Io`] naming `path`.
pub fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// fsyncs a directory, so that creations, renames and unlinks in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Writes `len` zero bytes at `offset` in chunks (no sync).
pub fn write_zeros(file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK)).max(1)];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], offset + done)
            .map_err(io_error(path))?;
        done += n as u64;
    }
    Ok(())
}

/// A copy of `error` for one more waiter: io errors keep their kind and message.
pub fn duplicate_error(error: &Error) -> Error {
    match error {
        Error::Io { path, source } => Error::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        Error::Corrupt {
            path,
            offset,
            reason,
        } => Error::Corrupt {
            path: path.clone(),
            offset: *offset,
            reason: reason.clone(),
        },
        Error::Poisoned => Error::Poisoned,
        Error::Locked { path } => Error::Locked { path: path.clone() },
        Error::Invalid(message) => Error::Invalid(message.clone()),
        Error::Compacted { index, first } => Error::Compacted {
            index: *index,
            first: *first,
        },
    }
}

/// Paths in `dir` whose names end with `suffix`.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let item = item.map_err(io_error(dir))?;
        if item.file_name().to_string_lossy().ends_with(suffix) {
            found.push(item.path());
        }
    }
    found.sort();
    Ok(found)
}
