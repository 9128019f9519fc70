//! Helpers shared by the WAL's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use shoal_wal::conformance::Harness;
use shoal_wal::{Wal, WalOptions};

/// Small segments so tests roll often; no background preallocation unless asked.
pub fn options(dir: &Path, segment_bytes: u64) -> WalOptions {
    let mut options = WalOptions::new(dir);
    options.segment_bytes = segment_bytes;
    options.preallocate_in_background = false;
    options
}

/// A WAL in a temporary directory, reopened on demand.
pub struct WalHarness {
    pub dir: tempfile::TempDir,
    pub segment_bytes: u64,
    pub wal: Option<Wal>,
}

impl WalHarness {
    pub fn new(segment_bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(options(dir.path(), segment_bytes)).unwrap();
        Self {
            dir,
            segment_bytes,
            wal: Some(wal),
        }
    }
}

impl Harness for WalHarness {
    type Store = Wal;
    fn store(&mut self) -> &mut Wal {
        self.wal.as_mut().unwrap()
    }
    fn reopen(&mut self) {
        self.wal = None;
        self.wal = Some(Wal::open(options(self.dir.path(), self.segment_bytes)).unwrap());
    }
}

/// Segment files of a WAL directory, in order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    found.sort();
    found
}
