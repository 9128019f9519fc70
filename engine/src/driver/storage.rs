//! Recovery at startup, and the snapshot-file I/O of the driver.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use bytes::Bytes;
use shoal_wal::{LogStore, SnapshotReader, SnapshotStore, Wal, WalOptions};
use tracing::{info, warn};

use crate::core::{self, Membership, RawNode, Recovered};
use crate::{SnapshotImage, StateMachine};

use super::{Error, NodeBuilder};

/// Bytes after a snapshot file's body: body length (8), crc32 (4), magic (4). See the file
/// format in `shoal_wal::snapshot`.
const SNAPSHOT_TRAILER_BYTES: u64 = 16;

/// What startup recovered.
pub(crate) struct Opened<S> {
    pub raw: RawNode,
    pub wal: Wal,
    pub snapshots: SnapshotStore,
    pub state_machine: S,
}

/// The WAL's form of the core's snapshot metadata (the membership goes in `data`).
pub(crate) fn wal_snapshot_meta(meta: &core::SnapshotMeta) -> shoal_wal::SnapshotMeta {
    shoal_wal::SnapshotMeta {
        index: meta.index,
        term: meta.term,
        data: meta.membership.encode().to_vec(),
    }
}

/// The core's form of a snapshot file's metadata.
pub(crate) fn core_snapshot_meta(
    meta: &shoal_wal::SnapshotMeta,
) -> Result<core::SnapshotMeta, Error> {
    let membership = Membership::decode(&meta.data).map_err(|e| {
        Error::Recovery(format!(
            "snapshot {}-{} has invalid membership: {e}",
            meta.index, meta.term
        ))
    })?;
    Ok(core::SnapshotMeta {
        index: meta.index,
        term: meta.term,
        membership,
    })
}

fn state_machine_error(error: impl std::fmt::Display) -> Error {
    Error::StateMachine(error.to_string())
}

/// Opens the WAL and the snapshot store of `builder`'s data dir, brings the state machine up
/// to the latest snapshot when it is behind it, and builds the core from what is durable.
pub(crate) fn open<S: StateMachine>(
    builder: &NodeBuilder,
    mut state_machine: S,
) -> Result<Opened<S>, Error> {
    std::fs::create_dir_all(&builder.data_dir).map_err(|source| Error::Io {
        path: builder.data_dir.clone(),
        source,
    })?;
    let mut options = WalOptions::for_data_dir(&builder.data_dir);
    options.segment_bytes = builder.wal_segment_bytes;
    let wal = Wal::open(options)?;
    if let Some(torn) = &wal.recovery().torn_tail {
        warn!(
            segment = %torn.path.display(),
            offset = torn.offset,
            "a torn wal tail was truncated at startup"
        );
    }
    let snapshots = SnapshotStore::for_data_dir(&builder.data_dir, builder.snapshot.keep)?;
    let mut latest = snapshots.open_latest()?;
    let snapshot = match &latest {
        Some(reader) => core_snapshot_meta(reader.meta())?,
        None => core::SnapshotMeta {
            index: 0,
            term: 0,
            membership: Membership::new(builder.voters.iter().copied()),
        },
    };
    let (point, point_term) = wal.snapshot_point();
    if point < snapshot.index {
        // The snapshot file was written but the compaction that follows it did not happen
        // (a crash in between): do it now.
        info!(
            snapshot = snapshot.index,
            wal_point = point,
            "finishing an interrupted log compaction"
        );
        reset_wal_to_snapshot(&wal, snapshot.index, snapshot.term)?;
    } else if (point, point_term) != (snapshot.index, snapshot.term) {
        return Err(Error::Recovery(format!(
            "the wal in {} is compacted to ({point}, {point_term}) but the newest snapshot in {} is ({}, {})",
            wal.dir().display(),
            snapshots.dir().display(),
            snapshot.index,
            snapshot.term
        )));
    }
    let mut applied = state_machine.applied_index();
    if applied < snapshot.index
        && let Some(reader) = latest.as_mut()
    {
        info!(
            index = snapshot.index,
            state_machine_applied = applied,
            "restoring the state machine from the latest snapshot"
        );
        state_machine
            .restore(snapshot.index, reader)
            .map_err(state_machine_error)?;
        applied = snapshot.index;
    }
    if applied > wal.last_index() {
        return Err(Error::Recovery(format!(
            "the state machine has applied index {applied} but the wal in {} ends at {}",
            wal.dir().display(),
            wal.last_index()
        )));
    }
    let recovered = Recovered::from_store(&wal, snapshot, applied)?;
    let mut config = builder.resolved_raft_config()?;
    config.seed = seed(builder.id);
    let raw = RawNode::new(config, recovered)?;
    info!(
        term = raw.term(),
        commit = raw.commit_index(),
        applied,
        last_index = raw.last_index(),
        snapshot = raw.snapshot().index,
        "node recovered"
    );
    Ok(Opened {
        raw,
        wal,
        snapshots,
        state_machine,
    })
}

/// A different seed for every node and every start.
fn seed(id: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    id.rotate_left(40) ^ nanos ^ u64::from(std::process::id())
}

/// Makes `(index, term)` the WAL's snapshot point, as the core does on installing a
/// snapshot: entries after it are kept when the WAL's entry at `index` has `term`, and the
/// whole log is discarded otherwise.
pub(crate) fn reset_wal_to_snapshot(wal: &Wal, index: u64, term: u64) -> Result<(), Error> {
    // A compaction at the current point changes nothing but waits for every write queued
    // before it, so the terms read below are those of the whole handed-out log.
    let (point, point_term) = wal.snapshot_point();
    wal.compact_prefix(point, point_term)?;
    if wal.term(index)? != Some(term) {
        let (point, _) = wal.snapshot_point();
        wal.truncate_suffix(point)?;
    }
    wal.compact_prefix(index, term)?;
    Ok(())
}

/// Writes a state machine image as the snapshot `meta` and returns its path.
pub(crate) fn write_image(
    store: &SnapshotStore,
    meta: &core::SnapshotMeta,
    image: Box<dyn SnapshotImage>,
) -> Result<PathBuf, Error> {
    let mut writer = store.writer(&wal_snapshot_meta(meta))?;
    image.write_to(&mut writer).map_err(|source| Error::Io {
        path: store.dir().to_path_buf(),
        source,
    })?;
    writer.flush().map_err(|source| Error::Io {
        path: store.dir().to_path_buf(),
        source,
    })?;
    Ok(writer.finish()?)
}

/// Reads at most `max_len` bytes of the body of snapshot `(index, term)` from `offset`;
/// returns them and whether they reach the end of the body.
pub(crate) fn read_chunk(
    store: &SnapshotStore,
    index: u64,
    term: u64,
    offset: u64,
    max_len: usize,
) -> Result<(Bytes, bool), Error> {
    let Some((_, _, path)) = store
        .list()?
        .into_iter()
        .find(|(i, t, _)| (*i, *t) == (index, term))
    else {
        return Err(Error::Io {
            path: store.dir().to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("snapshot {index}-{term} is gone"),
            ),
        });
    };
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    // Opening through the reader verifies the header, metadata and trailer.
    let body_len = SnapshotReader::open(&path)?.body_len();
    let mut file = File::open(&path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let body_start = file_len
        .checked_sub(SNAPSHOT_TRAILER_BYTES + body_len)
        .ok_or_else(|| Error::Recovery(format!("snapshot {} is inconsistent", path.display())))?;
    let offset = offset.min(body_len);
    let len = (body_len - offset).min(max_len as u64);
    file.seek(SeekFrom::Start(body_start + offset))
        .map_err(io)?;
    let mut data = vec![0u8; len as usize];
    file.read_exact(&mut data).map_err(io)?;
    Ok((Bytes::from(data), offset + len >= body_len))
}
