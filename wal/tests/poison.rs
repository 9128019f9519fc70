//! A failed write poisons the log: nothing more is accepted, and what was acknowledged stays.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::mpsc;

use common::options;
use shoal_wal::conformance::{entries, entry};
use shoal_wal::{Error, HardState, LogStore, Wal};

#[test]
fn failed_write_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(options(dir.path(), 8192)).unwrap();
    wal.append(&entries(1, 5, 1)).unwrap();
    wal.inject_write_failure();
    let error = wal.append(&[entry(6, 1)]).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error}");
    assert!(wal.is_poisoned());
    assert!(matches!(wal.append(&[entry(6, 1)]), Err(Error::Poisoned)));
    assert!(matches!(wal.truncate_after(2), Err(Error::Poisoned)));
    assert!(matches!(wal.compact(2, 1), Err(Error::Poisoned)));
    assert!(matches!(
        wal.save_hard_state(&HardState::default()),
        Err(Error::Poisoned)
    ));
    let (sender, receiver) = mpsc::channel();
    wal.submit(vec![entry(6, 1)], move |result| {
        sender.send(result).unwrap()
    });
    assert!(matches!(receiver.recv().unwrap(), Err(Error::Poisoned)));
    assert!(Error::Poisoned.to_string().contains("poisoned"));
    // Reads still work; after a restart the acknowledged entries are all there.
    assert_eq!(wal.entries(1, 6).unwrap(), entries(1, 5, 1));
    drop(wal);
    let mut wal = Wal::open(options(dir.path(), 8192)).unwrap();
    assert!(!wal.is_poisoned());
    assert_eq!(wal.last_index(), 5);
    wal.append(&[entry(6, 1)]).unwrap();
}

#[test]
fn failure_fails_every_request_of_the_round() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(options(dir.path(), 8192)).unwrap();
    wal.inject_write_failure();
    let pending: Vec<_> = (1..=20)
        .map(|i| wal.append_async(vec![entry(i, 1)]))
        .collect();
    let results: Vec<_> = pending.into_iter().map(|p| p.wait()).collect();
    assert!(results.iter().all(|r| r.is_err()));
    assert!(matches!(results[0], Err(Error::Io { .. })));
}

#[test]
fn one_owner_per_directory_and_handles_are_shareable() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<Wal>();
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(options(dir.path(), 8192)).unwrap();
    assert!(matches!(
        Wal::open(options(dir.path(), 8192)),
        Err(Error::Locked { .. })
    ));
    drop(wal);
    Wal::open(options(dir.path(), 8192)).unwrap();
}
