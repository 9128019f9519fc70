//! An in-memory [`LogStore`], for the engine's deterministic simulation and for tests.
//!
//! "Durable" here means "survives a simulated crash": the simulation drops a node's core and
//! rebuilds it from this store, which keeps exactly what was acknowledged.

use std::collections::VecDeque;

use crate::{Entry, Error, HardState, LogStore, Result};

/// A log store held in memory. Cloning it copies the whole log.
#[derive(Debug, Clone, Default)]
pub struct MemLogStore {
    snapshot_index: u64,
    snapshot_term: u64,
    entries: VecDeque<Entry>,
    hard_state: HardState,
}

impl MemLogStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn offset(&self, index: u64) -> Option<usize> {
        let offset = index.checked_sub(self.snapshot_index + 1)?;
        let offset = usize::try_from(offset).ok()?;
        (offset < self.entries.len()).then_some(offset)
    }
}

impl LogStore for MemLogStore {
    fn snapshot_point(&self) -> (u64, u64) {
        (self.snapshot_index, self.snapshot_term)
    }

    fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    fn term(&self, index: u64) -> Result<Option<u64>> {
        if index == self.snapshot_index {
            return Ok(Some(self.snapshot_term));
        }
        Ok(self.offset(index).map(|offset| self.entries[offset].term))
    }

    fn entries(&self, lo: u64, hi: u64) -> Result<Vec<Entry>> {
        if lo < self.first_index() {
            return Err(Error::Compacted {
                index: lo,
                first: self.first_index(),
            });
        }
        if lo > hi || hi > self.last_index() + 1 {
            return Err(Error::Invalid(format!(
                "entries {lo}..{hi} outside the log (last index {})",
                self.last_index()
            )));
        }
        let start = (lo - self.first_index()) as usize;
        let end = (hi - self.first_index()) as usize;
        Ok(self.entries.range(start..end).cloned().collect())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.snapshot_index || first.index > self.last_index() + 1 {
            return Err(Error::Invalid(format!(
                "append at {} does not follow the log (snapshot index {}, last index {})",
                first.index,
                self.snapshot_index,
                self.last_index()
            )));
        }
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index + 1 {
                return Err(Error::Invalid(format!(
                    "append is not contiguous: {} follows {}",
                    pair[1].index, pair[0].index
                )));
            }
        }
        self.truncate_after(first.index - 1)?;
        self.entries.extend(entries.iter().cloned());
        Ok(())
    }

    fn truncate_after(&mut self, index: u64) -> Result<()> {
        if index < self.snapshot_index {
            return Err(Error::Invalid(format!(
                "truncate after {index} is below the snapshot index {}",
                self.snapshot_index
            )));
        }
        let keep = (index - self.snapshot_index) as usize;
        self.entries.truncate(keep);
        Ok(())
    }

    fn compact(&mut self, index: u64, term: u64) -> Result<()> {
        if index <= self.snapshot_index {
            return Ok(());
        }
        if index >= self.last_index() {
            self.entries.clear();
        } else {
            let drop = (index - self.snapshot_index) as usize;
            self.entries.drain(..drop);
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
        Ok(())
    }

    fn hard_state(&self) -> HardState {
        self.hard_state
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<()> {
        self.hard_state = *hard_state;
        Ok(())
    }
}
