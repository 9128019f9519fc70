//! The in-memory log: entries since the last snapshot, and the indexes that walk along it.
//!
//! Like etcd's `MemoryStorage`, the core keeps every entry after the snapshot point in memory;
//! the durable store is written through [`crate::core::Ready`] and read only at startup.

use std::collections::VecDeque;

use super::Entry;

/// The log since the last snapshot.
#[derive(Debug, Clone)]
pub(crate) struct RaftLog {
    /// Index of the last entry folded into the snapshot.
    snapshot_index: u64,
    /// Term of that entry.
    snapshot_term: u64,
    /// Entries `snapshot_index + 1 ..= last_index()`.
    entries: VecDeque<Entry>,
    /// Highest index known committed.
    pub commit: u64,
    /// Highest index handed out for application.
    pub applied: u64,
    /// Highest index known durable whose durable entry is the one in this log.
    pub persisted: u64,
    /// First index not yet handed out for persistence.
    pub unstable_from: u64,
}

impl RaftLog {
    /// A log after a snapshot at `(index, term)` holding `entries`, all of them durable.
    pub fn new(snapshot_index: u64, snapshot_term: u64, entries: Vec<Entry>) -> Self {
        let last = snapshot_index + entries.len() as u64;
        Self {
            snapshot_index,
            snapshot_term,
            entries: entries.into(),
            commit: snapshot_index,
            applied: snapshot_index,
            persisted: last,
            unstable_from: last + 1,
        }
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    pub fn first_index(&self) -> u64 {
        self.snapshot_index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    pub fn last_term(&self) -> u64 {
        self.entries.back().map_or(self.snapshot_term, |e| e.term)
    }

    /// Term of the entry at `index`: known for the snapshot point and every held entry.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.get(index).map(|e| e.term)
    }

    pub fn get(&self, index: u64) -> Option<&Entry> {
        let offset = index.checked_sub(self.snapshot_index + 1)?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// Whether a log ending at `(last_index, last_term)` is at least as up to date as this one
    /// (§5.4.1 of the Raft paper).
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    /// Entries in `lo..=hi`, at most `max_count` and `max_bytes` of them (at least one when
    /// the range is not empty). `lo` must be at least `first_index()`.
    pub fn slice(&self, lo: u64, hi: u64, max_count: usize, max_bytes: usize) -> Vec<Entry> {
        if lo > hi || lo < self.first_index() || hi > self.last_index() {
            return Vec::new();
        }
        let start = (lo - self.first_index()) as usize;
        let end = (hi - self.first_index()) as usize + 1;
        let mut out = Vec::with_capacity((end - start).min(max_count));
        let mut bytes = 0;
        for entry in self.entries.range(start..end) {
            if !out.is_empty() && (out.len() >= max_count || bytes + entry.size_hint() > max_bytes)
            {
                break;
            }
            bytes += entry.size_hint();
            out.push(entry.clone());
        }
        out
    }

    /// Appends entries a leader created (contiguous after the last index).
    pub fn append(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.entries.push_back(entry);
    }

    /// The last index holding a term at most `term`, at or before `index` (at least the
    /// snapshot index): where a leader resumes after a conflict hint.
    pub fn last_index_at_or_below_term(&self, index: u64, term: u64) -> u64 {
        let mut i = index.min(self.last_index());
        while i > self.snapshot_index {
            match self.term(i) {
                Some(t) if t <= term => return i,
                _ => i -= 1,
            }
        }
        self.snapshot_index
    }

    /// Follower side of AppendEntries after the consistency check passed at `prev_index`:
    /// skips entries already held, truncates at the first conflict, appends the rest.
    /// Returns the index of the first truncated entry, if any.
    pub fn merge(&mut self, prev_index: u64, entries: Vec<Entry>) -> Option<u64> {
        let mut truncated = None;
        for (offset, entry) in entries.into_iter().enumerate() {
            let index = prev_index + 1 + offset as u64;
            debug_assert_eq!(entry.index, index);
            if index <= self.snapshot_index {
                continue;
            }
            match self.term(index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    assert!(
                        index > self.commit,
                        "conflict at {index} at or below the commit index {}",
                        self.commit
                    );
                    let keep = (index - self.first_index()) as usize;
                    self.entries.truncate(keep);
                    self.persisted = self.persisted.min(index - 1);
                    self.unstable_from = self.unstable_from.min(index);
                    truncated.get_or_insert(index);
                    self.entries.push_back(entry);
                }
                None => {
                    self.entries.push_back(entry);
                }
            }
        }
        truncated
    }

    /// Entries not yet handed out for persistence; marks them handed out.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let last = self.last_index();
        if self.unstable_from > last {
            return Vec::new();
        }
        let out = self.slice(self.unstable_from, last, usize::MAX, usize::MAX);
        self.unstable_from = last + 1;
        out
    }

    /// Discards entries up to `index` (which must be held or be the snapshot point), keeping
    /// the ones after it.
    pub fn compact(&mut self, index: u64) {
        if index <= self.snapshot_index {
            return;
        }
        let Some(term) = self.term(index) else {
            return;
        };
        let drop = (index - self.snapshot_index) as usize;
        self.entries.drain(..drop);
        self.snapshot_index = index;
        self.snapshot_term = term;
        // Entries folded into the snapshot need no persisting any more.
        self.unstable_from = self.unstable_from.max(index + 1);
    }

    /// Replaces the whole log by a snapshot point (a snapshot installed from the leader whose
    /// last entry this log does not hold).
    pub fn reset(&mut self, index: u64, term: u64) {
        // Until the snapshot is durable, the store still holds the old log: only its committed
        // prefix is known to agree with the snapshot.
        self.persisted = self.persisted.min(self.commit);
        self.entries.clear();
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.commit = index;
        self.applied = index;
        self.unstable_from = index + 1;
    }

    /// Every held entry, for tests and invariant checks.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}
