//! The meta file: hard state and snapshot point, replaced atomically.
//!
//! `<wal dir>/meta` holds two slots of [`SLOT_BYTES`] each. A save writes the slot the
//! previous save did not use, with a sequence number one higher and a crc, then fdatasyncs.
//! Opening reads both and takes the valid slot with the higher sequence: a torn save leaves
//! the other slot, so a crash yields either the old or the new state, never a mix.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::HardState;
use crate::error::{Error, Result};
use crate::format::{read_u32, read_u64};
use crate::fsutil::{io_error, sync_dir};

/// Name of the meta file inside the WAL directory.
pub const META_FILE: &str = "meta";
/// Bytes per slot (a page, so the two slots never share one).
pub const SLOT_BYTES: u64 = 4096;
const SLOT_MAGIC: [u8; 8] = *b"SHOALMTA";
const SLOT_LEN: usize = 76;

/// What the meta file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// The Raft hard state.
    pub hard_state: HardState,
    /// Index of the last entry folded into a snapshot.
    pub snapshot_index: u64,
    /// Term of that entry.
    pub snapshot_term: u64,
}

/// The open meta file.
#[derive(Debug)]
pub struct MetaFile {
    file: File,
    path: PathBuf,
    sequence: u64,
    meta: Meta,
}

impl MetaFile {
    /// Opens (or creates, durably) the meta file in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(META_FILE);
        if !path.exists() {
            let temp = dir.join(format!("{META_FILE}.tmp"));
            let file = File::create(&temp).map_err(io_error(&temp))?;
            file.set_len(2 * SLOT_BYTES).map_err(io_error(&temp))?;
            file.write_all_at(&encode_slot(1, &Meta::default()), SLOT_BYTES)
                .map_err(io_error(&temp))?;
            file.sync_all().map_err(io_error(&temp))?;
            std::fs::rename(&temp, &path).map_err(io_error(&path))?;
            sync_dir(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let (sequence, meta) = read_slots(&file, &path)?;
        Ok(Self {
            file,
            path,
            sequence,
            meta,
        })
    }

    /// Reads the meta file in `dir` without creating or changing anything; `None` if absent.
    pub fn read_only(dir: &Path) -> Result<Option<Meta>> {
        let path = dir.join(META_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let file = File::open(&path).map_err(io_error(&path))?;
        Ok(Some(read_slots(&file, &path)?.1))
    }

    /// The current contents.
    pub fn meta(&self) -> Meta {
        self.meta
    }

    /// Replaces the contents atomically and durably.
    pub fn save(&mut self, meta: &Meta) -> Result<()> {
        let sequence = self.sequence + 1;
        let slot = sequence % 2;
        self.file
            .write_all_at(&encode_slot(sequence, meta), slot * SLOT_BYTES)
            .map_err(io_error(&self.path))?;
        self.file.sync_data().map_err(io_error(&self.path))?;
        self.sequence = sequence;
        self.meta = *meta;
        Ok(())
    }
}

fn encode_slot(sequence: u64, meta: &Meta) -> [u8; SLOT_LEN] {
    let mut bytes = [0u8; SLOT_LEN];
    let fields = [
        sequence,
        meta.hard_state.term,
        u64::from(meta.hard_state.voted_for.is_some()),
        meta.hard_state.voted_for.unwrap_or(0),
        meta.hard_state.commit,
        meta.snapshot_index,
        meta.snapshot_term,
        0,
    ];
    bytes[0..8].copy_from_slice(&SLOT_MAGIC);
    for (i, field) in fields.iter().enumerate() {
        bytes[8 + i * 8..16 + i * 8].copy_from_slice(&field.to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes[..SLOT_LEN - 4]);
    bytes[SLOT_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode_slot(bytes: &[u8]) -> Option<(u64, Meta)> {
    if bytes[0..8] != SLOT_MAGIC
        || read_u32(bytes, SLOT_LEN - 4) != crc32fast::hash(&bytes[..SLOT_LEN - 4])
    {
        return None;
    }
    let field = |i: usize| read_u64(bytes, 8 + i * 8);
    let voted_for = (field(2) == 1).then(|| field(3));
    Some((
        field(0),
        Meta {
            hard_state: HardState {
                term: field(1),
                voted_for,
                commit: field(4),
            },
            snapshot_index: field(5),
            snapshot_term: field(6),
        },
    ))
}

fn read_slots(file: &File, path: &Path) -> Result<(u64, Meta)> {
    let mut best: Option<(u64, Meta)> = None;
    for slot in 0..2u64 {
        let mut bytes = [0u8; SLOT_LEN];
        let read = file
            .read_at(&mut bytes, slot * SLOT_BYTES)
            .map_err(io_error(path))?;
        if read < SLOT_LEN {
            continue;
        }
        if let Some((sequence, meta)) = decode_slot(&bytes)
            && best.is_none_or(|(best_sequence, _)| sequence > best_sequence)
        {
            best = Some((sequence, meta));
        }
    }
    best.ok_or_else(|| Error::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: "neither meta slot verifies".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_reopen_and_torn_slot() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = MetaFile::open(dir.path()).unwrap();
        assert_eq!(file.meta(), Meta::default());
        let first = Meta {
            hard_state: HardState {
                term: 3,
                voted_for: Some(2),
                commit: 9,
            },
            snapshot_index: 4,
            snapshot_term: 2,
        };
        file.save(&first).unwrap();
        let mut second = first;
        second.hard_state.term = 4;
        second.hard_state.voted_for = None;
        file.save(&second).unwrap();
        drop(file);
        assert_eq!(MetaFile::open(dir.path()).unwrap().meta(), second);
        // Tear the newest slot (sequence 3 lives in slot 1): the previous state comes back.
        let raw = OpenOptions::new()
            .write(true)
            .open(dir.path().join(META_FILE))
            .unwrap();
        raw.write_all_at(&[0xff; 8], SLOT_BYTES + 20).unwrap();
        assert_eq!(MetaFile::open(dir.path()).unwrap().meta(), first);
    }
}
