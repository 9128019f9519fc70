//! The log-store conformance suite, run against the in-memory store and the real WAL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::WalHarness;
use shoal_wal::MemLogStore;
use shoal_wal::conformance::{Harness, run_all, snapshot_files};

struct MemHarness(MemLogStore);

impl Harness for MemHarness {
    type Store = MemLogStore;
    fn store(&mut self) -> &mut MemLogStore {
        &mut self.0
    }
    fn reopen(&mut self) {}
}

#[test]
fn mem_log_store_conforms() {
    run_all(|| MemHarness(MemLogStore::new()));
}

#[test]
fn wal_conforms_with_small_segments() {
    run_all(|| WalHarness::new(4096));
}

#[test]
fn wal_conforms_with_default_like_segments() {
    run_all(|| WalHarness::new(1 << 20));
}

#[test]
fn snapshot_files_conform() {
    let dir = tempfile::tempdir().unwrap();
    snapshot_files(dir.path());
}
