//! A conformance suite any [`LogStore`] runs (in the spirit of openraft's log-storage suite).
//!
//! Implement [`Harness`] for a fresh store and a way to "reopen" it (for an in-memory store,
//! keep the same value), then call [`run_all`]; each case is also public on its own.
//! Cases panic with a message naming what broke.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use crate::snapshot::{SnapshotMeta, SnapshotStore};
use crate::{Entry, EntryKind, Error, HardState, LogStore};

/// A store under test and a way to reopen it.
pub trait Harness {
    /// The store type.
    type Store: LogStore;
    /// The current store.
    fn store(&mut self) -> &mut Self::Store;
    /// Closes and reopens the store, as after a clean restart.
    fn reopen(&mut self);
}

/// An entry with data derived from its index and term.
pub fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        kind: if index.is_multiple_of(7) {
            EntryKind::Config
        } else {
            EntryKind::Normal
        },
        data: format!("entry {index} of term {term}").into_bytes(),
    }
}

/// Entries `lo..=hi`, all of `term`.
pub fn entries(lo: u64, hi: u64, term: u64) -> Vec<Entry> {
    (lo..=hi).map(|i| entry(i, term)).collect()
}

/// Runs every case, each on a fresh harness from `new`.
pub fn run_all<H: Harness>(mut new: impl FnMut() -> H) {
    empty_store(&mut new());
    append_and_read_back(&mut new());
    append_rejects_gaps_and_bad_ranges(&mut new());
    conflicting_append_truncates(&mut new());
    truncate_suffix(&mut new());
    compact_prefix(&mut new());
    compact_past_the_end(&mut new());
    hard_state(&mut new());
    many_entries_survive_reopen(&mut new());
    bounded_reads(&mut new());
}

/// `entries_up_to` returns a non-empty prefix that respects the byte budget roughly.
pub fn bounded_reads<H: Harness>(h: &mut H) {
    let all: Vec<Entry> = (1..=50u64)
        .map(|index| Entry {
            index,
            term: 1,
            kind: EntryKind::Normal,
            data: vec![index as u8; 1000],
        })
        .collect();
    h.store().append(&all).unwrap();
    h.reopen();
    let s = h.store();
    assert_eq!(
        s.entries_up_to(5, 51, usize::MAX).unwrap(),
        all[4..].to_vec()
    );
    assert_eq!(s.entries_up_to(5, 51, 0).unwrap(), all[4..5].to_vec());
    let some = s.entries_up_to(5, 51, 10_000).unwrap();
    assert!(
        !some.is_empty() && some.len() <= 10,
        "{} entries",
        some.len()
    );
    assert_eq!(some, all[4..4 + some.len()].to_vec());
    assert_eq!(s.entries_up_to(7, 7, 0).unwrap(), vec![]);
    assert!(matches!(
        s.entries_up_to(5, 60, 100),
        Err(Error::Invalid(_))
    ));
    s.compact(10, 1).unwrap();
    assert!(matches!(
        s.entries_up_to(5, 20, 100),
        Err(Error::Compacted { .. })
    ));
}

/// A fresh store is empty at index 0.
pub fn empty_store<H: Harness>(h: &mut H) {
    for _ in 0..2 {
        let s = h.store();
        assert_eq!(s.snapshot_point(), (0, 0));
        assert_eq!(s.first_index(), 1);
        assert_eq!(s.last_index(), 0);
        assert_eq!(s.term(0).unwrap(), Some(0));
        assert_eq!(s.term(1).unwrap(), None);
        assert_eq!(s.entries(1, 1).unwrap(), vec![]);
        assert_eq!(s.hard_state(), HardState::default());
        h.reopen();
    }
}

/// Appended entries read back exactly, before and after reopen.
pub fn append_and_read_back<H: Harness>(h: &mut H) {
    let first = entries(1, 5, 1);
    let second = entries(6, 9, 2);
    h.store().append(&first).unwrap();
    h.store().append(&second).unwrap();
    h.store().append(&[]).unwrap();
    for _ in 0..2 {
        let s = h.store();
        assert_eq!(s.last_index(), 9);
        assert_eq!(
            s.entries(1, 10).unwrap(),
            [first.clone(), second.clone()].concat()
        );
        assert_eq!(
            s.entries(3, 7).unwrap(),
            entries(3, 5, 1)
                .into_iter()
                .chain(entries(6, 6, 2))
                .collect::<Vec<_>>()
        );
        assert_eq!(s.term(5).unwrap(), Some(1));
        assert_eq!(s.term(6).unwrap(), Some(2));
        assert_eq!(s.term(10).unwrap(), None);
        h.reopen();
    }
}

/// Gaps, non-contiguous batches and ranges outside the log are refused; nothing changes.
pub fn append_rejects_gaps_and_bad_ranges<H: Harness>(h: &mut H) {
    h.store().append(&entries(1, 3, 1)).unwrap();
    let s = h.store();
    assert!(matches!(
        s.append(&entries(5, 6, 1)),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        s.append(&[entry(4, 1), entry(6, 1)]),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(s.append(&[entry(0, 1)]), Err(Error::Invalid(_))));
    assert!(matches!(s.entries(2, 5), Err(Error::Invalid(_))));
    assert!(matches!(s.entries(3, 2), Err(Error::Invalid(_))));
    s.truncate_after(0).unwrap();
    h.reopen();
    let s = h.store();
    assert_eq!(s.last_index(), 0, "truncate_after(0) empties the log");
    s.append(&entries(1, 2, 1)).unwrap();
    assert_eq!(s.entries(1, 3).unwrap(), entries(1, 2, 1));
}

/// An append whose first index is held replaces the suffix from there (a Raft conflict).
pub fn conflicting_append_truncates<H: Harness>(h: &mut H) {
    h.store().append(&entries(1, 10, 1)).unwrap();
    h.store().append(&entries(6, 7, 3)).unwrap();
    for _ in 0..2 {
        let s = h.store();
        assert_eq!(s.last_index(), 7);
        assert_eq!(s.term(5).unwrap(), Some(1));
        assert_eq!(s.term(6).unwrap(), Some(3));
        assert_eq!(s.term(8).unwrap(), None);
        assert_eq!(s.entries(5, 8).unwrap()[1], entry(6, 3));
        h.reopen();
    }
    h.store().append(&entries(1, 2, 4)).unwrap();
    h.reopen();
    assert_eq!(h.store().entries(1, 3).unwrap(), entries(1, 2, 4));
}

/// `truncate_after` drops the suffix durably; appends continue after it.
pub fn truncate_suffix<H: Harness>(h: &mut H) {
    h.store().append(&entries(1, 20, 1)).unwrap();
    h.store().truncate_after(12).unwrap();
    h.store().truncate_after(15).unwrap(); // past the end: nothing to do
    h.reopen();
    assert_eq!(h.store().last_index(), 12);
    h.store().append(&entries(13, 14, 2)).unwrap();
    h.store().truncate_after(13).unwrap();
    h.reopen();
    let s = h.store();
    assert_eq!(s.last_index(), 13);
    assert_eq!(
        s.entries(11, 14).unwrap(),
        vec![entry(11, 1), entry(12, 1), entry(13, 2)]
    );
    assert_eq!(s.term(14).unwrap(), None);
}

/// `compact` moves the snapshot point; compacted entries are gone, later ones stay.
pub fn compact_prefix<H: Harness>(h: &mut H) {
    h.store().append(&entries(1, 30, 2)).unwrap();
    h.store().compact(10, 2).unwrap();
    h.store().compact(5, 1).unwrap(); // below the snapshot point: nothing to do
    for _ in 0..2 {
        let s = h.store();
        assert_eq!(s.snapshot_point(), (10, 2));
        assert_eq!(s.first_index(), 11);
        assert_eq!(s.last_index(), 30);
        assert_eq!(s.term(10).unwrap(), Some(2));
        assert_eq!(s.term(9).unwrap(), None);
        assert!(matches!(
            s.entries(9, 12),
            Err(Error::Compacted {
                index: 9,
                first: 11
            })
        ));
        assert_eq!(s.entries(11, 31).unwrap(), entries(11, 30, 2));
        assert!(matches!(s.truncate_after(9), Err(Error::Invalid(_))));
        assert!(matches!(s.append(&[entry(10, 2)]), Err(Error::Invalid(_))));
        h.reopen();
    }
    h.store().truncate_after(10).unwrap();
    h.reopen();
    assert_eq!(h.store().last_index(), 10);
    h.store().append(&entries(11, 12, 3)).unwrap();
    assert_eq!(h.store().entries(11, 13).unwrap(), entries(11, 12, 3));
}

/// Compacting at or beyond the last index empties the log, which continues after it.
pub fn compact_past_the_end<H: Harness>(h: &mut H) {
    h.store().append(&entries(1, 5, 1)).unwrap();
    h.store().compact(8, 3).unwrap();
    for _ in 0..2 {
        let s = h.store();
        assert_eq!(s.snapshot_point(), (8, 3));
        assert_eq!(s.last_index(), 8);
        assert_eq!(s.term(8).unwrap(), Some(3));
        assert_eq!(s.term(5).unwrap(), None);
        assert_eq!(s.entries(9, 9).unwrap(), vec![]);
        h.reopen();
    }
    h.store().append(&entries(9, 11, 3)).unwrap();
    h.store().compact(11, 3).unwrap();
    h.store().append(&entries(12, 12, 4)).unwrap();
    h.reopen();
    let s = h.store();
    assert_eq!(s.snapshot_point(), (11, 3));
    assert_eq!(s.entries(12, 13).unwrap(), vec![entry(12, 4)]);
}

/// The hard state is replaced whole and survives reopen, independently of the log.
pub fn hard_state<H: Harness>(h: &mut H) {
    let first = HardState {
        term: 3,
        voted_for: Some(2),
        commit: 0,
    };
    let second = HardState {
        term: 4,
        voted_for: None,
        commit: 2,
    };
    h.store().save_hard_state(&first).unwrap();
    h.reopen();
    assert_eq!(h.store().hard_state(), first);
    h.store().append(&entries(1, 2, 4)).unwrap();
    h.store().save_hard_state(&second).unwrap();
    h.store().compact(1, 4).unwrap();
    h.reopen();
    assert_eq!(h.store().hard_state(), second);
    assert_eq!(h.store().snapshot_point(), (1, 4));
}

/// Thousands of entries with mixed sizes (enough to roll small segments) read back after reopen.
pub fn many_entries_survive_reopen<H: Harness>(h: &mut H) {
    let all: Vec<Entry> = (1..=3000u64)
        .map(|i| Entry {
            index: i,
            term: 1 + i / 1000,
            kind: EntryKind::Normal,
            data: vec![(i % 251) as u8; (i % 300) as usize],
        })
        .collect();
    for chunk in all.chunks(97) {
        h.store().append(chunk).unwrap();
    }
    h.reopen();
    let s = h.store();
    assert_eq!(s.last_index(), 3000);
    assert_eq!(s.entries(1, 3001).unwrap(), all);
    assert_eq!(s.term(1999).unwrap(), Some(2));
    s.truncate_after(1500).unwrap();
    s.compact(700, 1).unwrap();
    h.reopen();
    let s = h.store();
    assert_eq!(s.entries(701, 1501).unwrap(), all[700..1500].to_vec());
}

/// Snapshot files: the latest `keep` are kept, metadata and body read back verified.
pub fn snapshot_files(dir: &std::path::Path) {
    let store = SnapshotStore::open(dir, 2).unwrap();
    assert!(store.open_latest().unwrap().is_none());
    for index in [3u64, 6, 9] {
        let meta = SnapshotMeta {
            index,
            term: 1,
            data: vec![index as u8],
        };
        let mut writer = store.writer(&meta).unwrap();
        writer.write_all(&vec![index as u8; 5000]).unwrap();
        writer.finish().unwrap();
    }
    let store = SnapshotStore::open(dir, 2).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
    let reader = store.open_latest().unwrap().unwrap();
    assert_eq!(reader.meta().index, 9);
    assert_eq!(reader.read_body().unwrap(), vec![9u8; 5000]);
}
