//! Group commit: many concurrent appenders share syncs; every acknowledged record survives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::options;
use shoal_wal::conformance::entry;
use shoal_wal::{Entry, LogStore, Wal};

const THREADS: u64 = 8;
const PER_THREAD: u64 = 150;

/// Appenders take a lock only to pick their index and queue the entry (keeping the log
/// contiguous), then wait outside it, so many appends are in flight at once.
#[test]
fn concurrent_appenders_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(options(dir.path(), 64 * 1024)).unwrap();
    let next = Arc::new(Mutex::new(1u64));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (wal, next, acked) = (wal.clone(), Arc::clone(&next), Arc::clone(&acked));
            std::thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    if thread % 2 == 0 {
                        // Blocking style: the waiting thread may lead the write itself.
                        let (index, pending) = {
                            let mut next = next.lock().unwrap();
                            let index = *next;
                            *next += 1;
                            (index, wal.append_async(vec![entry(index, 1)]))
                        };
                        pending.wait().unwrap();
                        acked.lock().unwrap().push(index);
                    } else {
                        // Callback style.
                        let (sender, receiver) = mpsc::channel();
                        let index = {
                            let mut next = next.lock().unwrap();
                            let index = *next;
                            *next += 1;
                            wal.submit(vec![entry(index, 1)], move |result| {
                                sender.send(result).unwrap();
                            });
                            index
                        };
                        receiver.recv().unwrap().unwrap();
                        acked.lock().unwrap().push(index);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let total = THREADS * PER_THREAD;
    let stats = wal.stats();
    assert_eq!(stats.entries_appended, total);
    assert!(
        stats.syncs * 2 < total,
        "group commit should share syncs: {} syncs for {total} appends",
        stats.syncs
    );
    drop(wal);

    let wal = Wal::open(options(dir.path(), 64 * 1024)).unwrap();
    let mut acked = acked.lock().unwrap().clone();
    acked.sort_unstable();
    assert_eq!(acked, (1..=total).collect::<Vec<_>>());
    let expected: Vec<Entry> = (1..=total).map(|i| entry(i, 1)).collect();
    assert_eq!(wal.entries(1, total + 1).unwrap(), expected);
}

/// Pipelined submissions from one thread complete in order, each after its sync.
#[test]
fn pipelined_submissions_complete_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(options(dir.path(), 64 * 1024)).unwrap();
    let (sender, receiver) = mpsc::channel();
    for index in 1..=500u64 {
        let sender = sender.clone();
        let probe = wal.clone();
        wal.submit(vec![entry(index, 1)], move |result| {
            result.unwrap();
            // Durable means readable: the entry is in the index when the completion runs.
            assert!(probe.last_index() >= index);
            sender.send(index).unwrap();
        });
    }
    drop(sender);
    let order: Vec<u64> = receiver.iter().collect();
    assert_eq!(order, (1..=500).collect::<Vec<_>>());
    // A bad submission is refused through its completion, and the log is unharmed.
    let (sender, receiver) = mpsc::channel();
    wal.submit(vec![entry(900, 1)], move |result| {
        sender.send(result.is_err()).unwrap()
    });
    assert!(receiver.recv().unwrap());
    assert!(!wal.is_poisoned());
    assert_eq!(wal.last_index(), 500);
}
