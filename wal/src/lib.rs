//! Shoal's write-ahead log.
//!
//! # Layout
//! - [`entry`]: the records the log holds ([`Entry`], [`EntryKind`]) and the durable
//!   [`HardState`] (term, vote, commit).
//! - [`store`]: the [`LogStore`] trait, the contract every durable Raft log store keeps.
//! - [`mem`]: [`MemLogStore`], an in-memory store for the engine's deterministic simulation.
//! - [`wal`]: [`Wal`], the segmented on-disk log with group commit ([`Wal::open`],
//!   [`Wal::append_batch`], [`Wal::submit`]).
//! - [`format`]: segment headers and record frames; [`recovery`]: reading a log directory
//!   back and judging torn tails against corruption ([`recovery::scan_log`], used by
//!   `shoal wal check`).
//! - [`meta`]: the two-slot meta file holding hard state and snapshot point.
//! - [`snapshot`]: snapshot files written through a checksummed streaming writer.
//! - [`error`]: the crate's typed [`Error`].
//! - `conformance` (feature `conformance`): the reusable [`LogStore`] test suite.
//!
//! Only this crate writes log files.
//!
//! # Example
//! ```
//! use shoal_wal::{Entry, EntryKind, HardState, LogStore, SnapshotMeta, SnapshotStore, Wal, WalOptions};
//! use std::io::Write;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data_dir = tempfile::tempdir()?;
//! let mut options = WalOptions::for_data_dir(data_dir.path()); // the log goes in <data_dir>/wal
//! options.segment_bytes = 1 << 20;
//! let mut wal = Wal::open(options)?;
//! assert!(wal.recovery().torn_tail.is_none());
//!
//! let entry = |index| Entry { index, term: 1, kind: EntryKind::Normal, data: b"x".to_vec() };
//! // Durable on return (a group commit shared with concurrent appenders).
//! wal.append(&[entry(1), entry(2)])?;
//! // Pipelined: the callback runs after the sync that covers the entries.
//! let (sender, receiver) = std::sync::mpsc::channel();
//! wal.submit(vec![entry(3)], move |result| sender.send(result).unwrap());
//! receiver.recv()??;
//! assert_eq!(wal.entries(2, 4)?, vec![entry(2), entry(3)]);
//! assert_eq!(wal.term(3)?, Some(1));
//!
//! wal.save_hard_state(&HardState { term: 1, voted_for: Some(1), commit: 3 })?;
//! // A snapshot at index 2: write the file, then compact the log behind it.
//! let snapshots = SnapshotStore::for_data_dir(data_dir.path(), 2)?;
//! let mut writer = snapshots.writer(&SnapshotMeta { index: 2, term: 1, data: vec![] })?;
//! writer.write_all(b"state machine image")?;
//! writer.finish()?;
//! wal.compact(2, 1)?;
//! assert_eq!(wal.first_index(), 3);
//! let reader = snapshots.open_latest()?.expect("a snapshot");
//! assert_eq!(reader.read_body()?, b"state machine image");
//! # Ok(())
//! # }
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod entry;
pub mod error;
pub mod format;
mod fsutil;
pub mod mem;
pub mod meta;
pub mod recovery;
pub mod snapshot;
pub mod store;
mod terms;
pub mod wal;

pub use entry::{Entry, EntryKind, HardState};
pub use error::{Error, Result};
pub use mem::MemLogStore;
pub use recovery::TornTail;
pub use snapshot::{SnapshotMeta, SnapshotReader, SnapshotStore, SnapshotWriter};
pub use store::LogStore;
pub use wal::{
    Completion, PendingAppend, RecoveryReport, Retention, WAL_DIR_NAME, Wal, WalOptions, WalStats,
};
