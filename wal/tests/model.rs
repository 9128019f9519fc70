//! Property test: the WAL against a `Vec` model over random append, conflicting append,
//! truncate, compact and reopen sequences (small segments, so rolls and deletions happen).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::options;
use proptest::prelude::*;
use shoal_wal::{Entry, EntryKind, LogStore, Wal};

#[derive(Debug, Clone)]
enum Op {
    /// Append `count` entries of `size` bytes after the end.
    Append {
        count: u64,
        size: usize,
    },
    /// Append `count` entries starting `back` entries before the end (a conflict).
    Conflict {
        back: u64,
        count: u64,
    },
    /// Truncate after `back` entries before the end.
    Truncate {
        back: u64,
    },
    /// Compact at `fraction`/8 of the held range, or `past` entries beyond the end.
    Compact {
        fraction: u64,
        past: u64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..20u64, 0..600usize).prop_map(|(count, size)| Op::Append { count, size }),
        1 => (0..10u64, 1..5u64).prop_map(|(back, count)| Op::Conflict { back, count }),
        1 => (0..15u64).prop_map(|back| Op::Truncate { back }),
        1 => (0..9u64, 0..3u64).prop_map(|(fraction, past)| Op::Compact { fraction, past }),
        1 => Just(Op::Reopen),
    ]
}

/// The model: a snapshot point and the entries after it.
#[derive(Default)]
struct Model {
    snapshot: (u64, u64),
    entries: Vec<Entry>,
    term: u64,
}

impl Model {
    fn last(&self) -> u64 {
        self.snapshot.0 + self.entries.len() as u64
    }
    fn truncate_after(&mut self, index: u64) {
        self.entries.truncate((index - self.snapshot.0) as usize);
    }
    fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.snapshot.0 {
            return Some(self.snapshot.1);
        }
        if index < self.snapshot.0 || index > self.last() {
            return None;
        }
        Some(self.entries[(index - self.snapshot.0 - 1) as usize].term)
    }
}

fn make(index: u64, term: u64, size: usize) -> Entry {
    Entry {
        index,
        term,
        kind: EntryKind::Normal,
        data: (0..size).map(|i| (index as usize + i) as u8).collect(),
    }
}

fn check(wal: &Wal, model: &Model) {
    assert_eq!(wal.snapshot_point(), model.snapshot);
    assert_eq!(wal.last_index(), model.last());
    assert_eq!(
        wal.entries(model.snapshot.0 + 1, model.last() + 1).unwrap(),
        model.entries
    );
    for index in model.snapshot.0.saturating_sub(1)..=model.last() + 1 {
        assert_eq!(
            wal.term(index).unwrap(),
            model.term_of(index),
            "term of {index}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn wal_matches_vec_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let open = || Wal::open(options(dir.path(), 4096)).unwrap();
        let mut wal = open();
        let mut model = Model { term: 1, ..Model::default() };
        for op in ops {
            match op {
                Op::Append { count, size } => {
                    let start = model.last() + 1;
                    let batch: Vec<Entry> =
                        (start..start + count).map(|i| make(i, model.term, size)).collect();
                    wal.append(&batch).unwrap();
                    model.entries.extend(batch);
                }
                Op::Conflict { back, count } => {
                    let start = model.last().saturating_sub(back).max(model.snapshot.0) + 1;
                    model.term += 1;
                    let batch: Vec<Entry> =
                        (start..start + count).map(|i| make(i, model.term, 10)).collect();
                    wal.append(&batch).unwrap();
                    model.truncate_after(start - 1);
                    model.entries.extend(batch);
                }
                Op::Truncate { back } => {
                    let index = model.last().saturating_sub(back).max(model.snapshot.0);
                    wal.truncate_after(index).unwrap();
                    model.truncate_after(index);
                }
                Op::Compact { fraction, past } => {
                    let held = model.entries.len() as u64;
                    let index = if past > 0 {
                        model.last() + past
                    } else {
                        model.snapshot.0 + held * fraction / 8
                    };
                    if index > model.snapshot.0 {
                        let term = model.term_of(index).unwrap_or(model.term);
                        wal.compact(index, term).unwrap();
                        let drop = (index - model.snapshot.0).min(held) as usize;
                        model.entries.drain(..drop);
                        model.snapshot = (index, term);
                    }
                }
                Op::Reopen => {
                    drop(wal);
                    wal = open();
                }
            }
            check(&wal, &model);
        }
        drop(wal);
        check(&open(), &model);
    }
}
