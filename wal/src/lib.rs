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
