//! The contract of a durable Raft log store.
//!
//! # To keep Raft correct, every implementation guarantees
//! - **Durability on return.** When a mutating call returns `Ok`, what it did survives a crash
//!   (power loss included). An implementation that batches writes (group commit) acknowledges
//!   a caller only after the sync that covers its records.
//! - **No holes.** The log is the contiguous range `first_index()..=last_index()`; entries are
//!   appended in index order.
//! - **Atomic hard state.** [`LogStore::save_hard_state`] either replaces the whole hard state
//!   or leaves the old one; a crash never yields a mix.
//! - **Serialized writes.** Calls take `&mut self`; one writer at a time.
//! - **Poisoning.** After a failed write or sync the store refuses every later write with
//!   [`Error::Poisoned`](crate::Error::Poisoned): the disk may have lied once.
//!
//! Entries at or below the snapshot point are compacted: only their last index and term are
//! kept, so the consistency check of the first entry after them still works.

use crate::{Entry, HardState, Result};

/// A durable, contiguous Raft log with its hard state.
pub trait LogStore {
    /// Index and term of the last entry folded into a snapshot (`(0, 0)` when none is).
    fn snapshot_point(&self) -> (u64, u64);

    /// The first index still held: `snapshot_point().0 + 1`.
    fn first_index(&self) -> u64 {
        self.snapshot_point().0 + 1
    }

    /// The last index held, or the snapshot index when no entry follows it.
    fn last_index(&self) -> u64;

    /// The term of the entry at `index`: `Some` for the snapshot index and every held entry,
    /// `None` below the snapshot point or past the end.
    fn term(&self, index: u64) -> Result<Option<u64>>;

    /// Entries in `lo..hi` (half open). Fails with [`Error::Compacted`](crate::Error::Compacted)
    /// when `lo < first_index()` and [`Error::Invalid`](crate::Error::Invalid) when
    /// `hi > last_index() + 1` or `lo > hi`.
    fn entries(&self, lo: u64, hi: u64) -> Result<Vec<Entry>>;

    /// A prefix of the entries in `lo..hi`: as many as fit in about `max_bytes` (counted by
    /// [`Entry::size_hint`], or by the stored size where a store knows it), and always at
    /// least one when `lo < hi`: what a leader sends in one AppendEntries. Errors as
    /// [`LogStore::entries`].
    fn entries_up_to(&self, lo: u64, hi: u64, max_bytes: usize) -> Result<Vec<Entry>> {
        let mut entries = self.entries(lo, hi)?;
        let mut total = 0usize;
        let keep = entries
            .iter()
            .position(|entry| {
                total += entry.size_hint();
                total > max_bytes
            })
            .unwrap_or(entries.len())
            .max(1)
            .min(entries.len());
        entries.truncate(keep);
        Ok(entries)
    }

    /// Appends `entries` (contiguous, ascending, first index at most `last_index() + 1` and
    /// above the snapshot point). When the first index is at or below `last_index()`, every
    /// held entry from that index on is discarded first (a Raft conflict). Durable on return.
    fn append(&mut self, entries: &[Entry]) -> Result<()>;

    /// Discards every entry after `index` (`index >= snapshot_point().0`). Durable on return.
    fn truncate_after(&mut self, index: u64) -> Result<()>;

    /// Folds every entry at or below `index` into a snapshot whose last entry has `term`.
    /// When `index >= last_index()` the log becomes empty and continues at `index + 1`
    /// (a snapshot installed from the leader). Durable on return; compacting at or below the
    /// current snapshot point does nothing.
    fn compact(&mut self, index: u64, term: u64) -> Result<()>;

    /// The durable hard state (default when never saved).
    fn hard_state(&self) -> HardState;

    /// Replaces the hard state atomically. Durable on return.
    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<()>;
}
