//! Snapshot files: written through a checksummed streaming writer to a temporary name, synced,
//! renamed, the directory synced; read back through a reader that verifies the checksum.
//!
//! # File format
//! `{index:020}-{term:020}.snap` in the snapshot directory:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `SHOALSNP` |
//! | 8..12 | format version (u32 LE) |
//! | 12..16 | metadata length `m` (u32 LE) |
//! | 16..20 | crc32 of the metadata |
//! | 20..24 | crc32 of bytes 0..20 |
//! | 24..24+m | rkyv-archived [`SnapshotMeta`], padded to 8 |
//! | .. | body (the state machine's image), streamed |
//! | last 16 | body length (u64 LE), crc32 of the body (u32 LE), `SNPE` |

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{padded, read_u32, read_u64};
use crate::fsutil::{files_with_suffix, io_error, sync_dir};

const MAGIC: [u8; 8] = *b"SHOALSNP";
const VERSION: u32 = 1;
const PREFIX_BYTES: usize = 24;
const TRAILER_BYTES: u64 = 16;
const TRAILER_MAGIC: [u8; 4] = *b"SNPE";
const SUFFIX: &str = ".snap";
/// Name of the snapshot directory inside a node's data directory.
pub const SNAPSHOT_DIR_NAME: &str = "snapshots";

/// What a snapshot covers.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot includes.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// Opaque bytes for the engine (the membership at `index`).
    pub data: Vec<u8>,
}

/// A directory of snapshot files keeping the latest `keep`.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    keep: usize,
}

impl SnapshotStore {
    /// Opens (creating) the snapshot directory `dir`, keeping the latest `keep` snapshots
    /// (at least one). Leftover temporary files of interrupted writes are deleted.
    pub fn open(dir: impl Into<PathBuf>, keep: usize) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        for temp in files_with_suffix(&dir, ".tmp")? {
            std::fs::remove_file(&temp).map_err(io_error(&temp))?;
        }
        Ok(Self {
            dir,
            keep: keep.max(1),
        })
    }

    /// Opens `<data_dir>/snapshots`.
    pub fn for_data_dir(data_dir: impl AsRef<Path>, keep: usize) -> Result<Self> {
        Self::open(data_dir.as_ref().join(SNAPSHOT_DIR_NAME), keep)
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Snapshot files present, oldest first, as `(index, term, path)`.
    pub fn list(&self) -> Result<Vec<(u64, u64, PathBuf)>> {
        let mut found: Vec<(u64, u64, PathBuf)> = files_with_suffix(&self.dir, SUFFIX)?
            .into_iter()
            .filter_map(|path| {
                let name = path.file_name()?.to_str()?.strip_suffix(SUFFIX)?.to_owned();
                let (index, term) = name.split_once('-')?;
                Some((index.parse().ok()?, term.parse().ok()?, path))
            })
            .collect();
        found.sort();
        Ok(found)
    }

    /// Starts writing a snapshot described by `meta`.
    pub fn writer(&self, meta: &SnapshotMeta) -> Result<SnapshotWriter> {
        let final_path = self
            .dir
            .join(format!("{:020}-{:020}{SUFFIX}", meta.index, meta.term));
        let temp_path = self.dir.join(format!(
            "{:020}-{:020}{SUFFIX}.{:08x}.tmp",
            meta.index,
            meta.term,
            crate::format::random_u64(meta.index) as u32
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .map_err(io_error(&temp_path))?;
        let meta_bytes = rkyv::to_bytes::<rancor::Error>(meta)
            .map_err(|e| Error::Invalid(format!("cannot encode snapshot metadata: {e}")))?;
        let mut prefix = [0u8; PREFIX_BYTES];
        prefix[0..8].copy_from_slice(&MAGIC);
        prefix[8..12].copy_from_slice(&VERSION.to_le_bytes());
        prefix[12..16].copy_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
        prefix[16..20].copy_from_slice(&crc32fast::hash(&meta_bytes).to_le_bytes());
        let prefix_crc = crc32fast::hash(&prefix[0..20]);
        prefix[20..24].copy_from_slice(&prefix_crc.to_le_bytes());
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let padding = padded(meta_bytes.len()) - meta_bytes.len();
        out.write_all(&prefix)
            .and_then(|()| out.write_all(&meta_bytes))
            .and_then(|()| out.write_all(&[0u8; 8][..padding]))
            .map_err(io_error(&temp_path))?;
        Ok(SnapshotWriter {
            out: Some(out),
            hasher: crc32fast::Hasher::new(),
            body_len: 0,
            temp_path,
            final_path,
            store: self.clone(),
        })
    }

    /// Opens the newest snapshot that has a valid header, if any.
    pub fn open_latest(&self) -> Result<Option<SnapshotReader>> {
        for (_, _, path) in self.list()?.into_iter().rev() {
            match SnapshotReader::open(&path) {
                Ok(reader) => return Ok(Some(reader)),
                Err(error) => {
                    tracing::warn!(snapshot = %path.display(), error = %error, "skipping unreadable snapshot");
                }
            }
        }
        Ok(None)
    }

    fn prune(&self) -> Result<()> {
        let all = self.list()?;
        if all.len() <= self.keep {
            return Ok(());
        }
        for (_, _, path) in &all[..all.len() - self.keep] {
            std::fs::remove_file(path).map_err(io_error(path))?;
        }
        sync_dir(&self.dir)
    }
}

/// Streams a snapshot body to a temporary file; [`SnapshotWriter::finish`] makes it durable
/// and visible. Dropping it unfinished deletes the temporary file.
#[derive(Debug)]
pub struct SnapshotWriter {
    out: Option<BufWriter<File>>,
    hasher: crc32fast::Hasher,
    body_len: u64,
    temp_path: PathBuf,
    final_path: PathBuf,
    store: SnapshotStore,
}

impl Write for SnapshotWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let Some(out) = self.out.as_mut() else {
            return Err(std::io::Error::other("snapshot writer already finished"));
        };
        let written = out.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        self.body_len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

impl SnapshotWriter {
    /// Writes the trailer, syncs, renames into place, syncs the directory and deletes
    /// snapshots beyond the store's `keep`. Returns the final path.
    pub fn finish(mut self) -> Result<PathBuf> {
        let Some(mut out) = self.out.take() else {
            return Err(Error::Invalid("snapshot writer already finished".into()));
        };
        let mut trailer = [0u8; TRAILER_BYTES as usize];
        trailer[0..8].copy_from_slice(&self.body_len.to_le_bytes());
        trailer[8..12].copy_from_slice(&self.hasher.clone().finalize().to_le_bytes());
        trailer[12..16].copy_from_slice(&TRAILER_MAGIC);
        let temp = self.temp_path.clone();
        out.write_all(&trailer)
            .and_then(|()| out.flush())
            .map_err(io_error(&temp))?;
        let file = out
            .into_inner()
            .map_err(|e| io_error(&temp)(e.into_error()))?;
        file.sync_all().map_err(io_error(&temp))?;
        drop(file);
        std::fs::rename(&temp, &self.final_path).map_err(io_error(&self.final_path))?;
        sync_dir(&self.store.dir)?;
        tracing::info!(snapshot = %self.final_path.display(), bytes = self.body_len, "snapshot written");
        self.store.prune()?;
        Ok(self.final_path.clone())
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

/// Reads a snapshot body; the checksum is verified when the body has been read to its end
/// (a mismatch is an `InvalidData` error from `read`).
#[derive(Debug)]
pub struct SnapshotReader {
    meta: SnapshotMeta,
    path: PathBuf,
    input: std::io::Take<BufReader<File>>,
    hasher: crc32fast::Hasher,
    expected_crc: u32,
    body_len: u64,
    verified: bool,
}

impl SnapshotReader {
    /// Opens a snapshot file, verifying its header, metadata and trailer.
    pub fn open(path: &Path) -> Result<Self> {
        let corrupt = |offset: u64, reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        let mut file = File::open(path).map_err(io_error(path))?;
        let file_len = file.metadata().map_err(io_error(path))?.len();
        let mut prefix = [0u8; PREFIX_BYTES];
        file.read_exact(&mut prefix)
            .map_err(|_| corrupt(0, "snapshot shorter than its header".into()))?;
        if prefix[0..8] != MAGIC {
            return Err(corrupt(0, "bad snapshot magic".into()));
        }
        if read_u32(&prefix, 20) != crc32fast::hash(&prefix[0..20]) {
            return Err(corrupt(0, "snapshot header checksum mismatch".into()));
        }
        if read_u32(&prefix, 8) != VERSION {
            return Err(corrupt(8, "unsupported snapshot version".into()));
        }
        let meta_len = read_u32(&prefix, 12) as usize;
        let body_start = (PREFIX_BYTES + padded(meta_len)) as u64;
        if body_start + TRAILER_BYTES > file_len {
            return Err(corrupt(12, "snapshot metadata runs past the file".into()));
        }
        let mut meta_bytes = AlignedVec::<16>::new();
        meta_bytes.resize(meta_len, 0);
        file.read_exact(&mut meta_bytes).map_err(io_error(path))?;
        if crc32fast::hash(&meta_bytes) != read_u32(&prefix, 16) {
            return Err(corrupt(
                PREFIX_BYTES as u64,
                "snapshot metadata checksum mismatch".into(),
            ));
        }
        let archived =
            rkyv::access::<ArchivedSnapshotMeta, rancor::Error>(&meta_bytes).map_err(|e| {
                corrupt(
                    PREFIX_BYTES as u64,
                    format!("snapshot metadata invalid: {e}"),
                )
            })?;
        let meta = rkyv::deserialize::<SnapshotMeta, rancor::Error>(archived).map_err(|e| {
            corrupt(
                PREFIX_BYTES as u64,
                format!("snapshot metadata invalid: {e}"),
            )
        })?;
        let mut trailer = [0u8; TRAILER_BYTES as usize];
        file.seek(SeekFrom::Start(file_len - TRAILER_BYTES))
            .and_then(|_| file.read_exact(&mut trailer))
            .map_err(io_error(path))?;
        let body_len = read_u64(&trailer, 0);
        if trailer[12..16] != TRAILER_MAGIC || body_start + body_len + TRAILER_BYTES != file_len {
            return Err(corrupt(
                file_len - TRAILER_BYTES,
                "snapshot trailer missing or inconsistent (incomplete file?)".into(),
            ));
        }
        file.seek(SeekFrom::Start(body_start))
            .map_err(io_error(path))?;
        Ok(Self {
            meta,
            path: path.to_path_buf(),
            input: BufReader::with_capacity(1 << 20, file).take(body_len),
            hasher: crc32fast::Hasher::new(),
            expected_crc: read_u32(&trailer, 8),
            body_len,
            verified: false,
        })
    }

    /// The snapshot's metadata.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length of the body in bytes.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Reads the whole body, verifying the checksum.
    pub fn read_body(mut self) -> Result<Vec<u8>> {
        let mut body = Vec::with_capacity(usize::try_from(self.body_len).unwrap_or(0));
        let path = self.path.clone();
        self.read_to_end(&mut body).map_err(|source| {
            if source.kind() == std::io::ErrorKind::InvalidData {
                Error::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    reason: source.to_string(),
                }
            } else {
                Error::Io {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        Ok(body)
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() && !self.verified {
            if self.input.limit() != 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("snapshot {} body ends early", self.path.display()),
                ));
            }
            let crc = self.hasher.clone().finalize();
            if crc != self.expected_crc {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "snapshot {} body checksum mismatch (stored {:#010x}, computed {crc:#010x})",
                        self.path.display(),
                        self.expected_crc
                    ),
                ));
            }
            self.verified = true;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(store: &SnapshotStore, index: u64, body: &[u8]) -> PathBuf {
        let meta = SnapshotMeta {
            index,
            term: 2,
            data: b"members".to_vec(),
        };
        let mut writer = store.writer(&meta).unwrap();
        for chunk in body.chunks(1000) {
            writer.write_all(chunk).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn write_read_keep_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path(), 2).unwrap();
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        write(&store, 5, &body);
        write(&store, 9, &body);
        let last = write(&store, 12, &body[..77]);
        assert_eq!(
            store
                .list()
                .unwrap()
                .iter()
                .map(|s| s.0)
                .collect::<Vec<_>>(),
            vec![9, 12]
        );
        let reader = store.open_latest().unwrap().unwrap();
        assert_eq!(reader.meta().index, 12);
        assert_eq!(reader.meta().data, b"members");
        assert_eq!(reader.read_body().unwrap(), &body[..77]);

        // Flip one body byte: reading to the end fails the checksum.
        let mut bytes = std::fs::read(&last).unwrap();
        let at = bytes.len() - 20;
        bytes[at] ^= 1;
        std::fs::write(&last, &bytes).unwrap();
        let error = SnapshotReader::open(&last)
            .unwrap()
            .read_body()
            .unwrap_err();
        assert!(matches!(error, Error::Corrupt { .. }), "{error}");

        // An unfinished writer leaves nothing behind.
        let writer = store
            .writer(&SnapshotMeta {
                index: 20,
                term: 3,
                data: vec![],
            })
            .unwrap();
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
