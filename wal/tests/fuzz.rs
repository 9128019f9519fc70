//! Fuzzing (bounded proptest runs that CI executes) of the bytes the WAL reads back from disk:
//! segment recovery on mutated and arbitrary segment files, and snapshot files.
//!
//! Every case must end in one of the documented outcomes, never a panic: the log opens (and
//! then every entry it returns is one that was written, in order), or it refuses with
//! [`Error::Corrupt`]. Run longer with `SHOAL_FUZZ_CASES=100000 cargo test -p shoal-wal
//! --release --test fuzz`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::path::Path;

use common::{options, segments};
use proptest::prelude::*;
use shoal_wal::conformance::entries;
use shoal_wal::{Error, LogStore, SnapshotMeta, SnapshotReader, SnapshotStore, Wal};

const SEGMENT_BYTES: u64 = 4096;

/// Cases per property: `SHOAL_FUZZ_CASES`, else `default` (bounded for CI).
fn cases(default: u32) -> u32 {
    std::env::var("SHOAL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A WAL of `count` entries (term 1) in a fresh directory.
fn build(count: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    for chunk in entries(1, count, 1).chunks(7) {
        wal.append(chunk).unwrap();
    }
    drop(wal);
    dir
}

/// Opens the log in `dir`: it must open with only written entries, or refuse as corrupt.
fn open_checked(dir: &Path, written: u64) -> Result<(), TestCaseError> {
    match Wal::open(options(dir, SEGMENT_BYTES)) {
        Ok(wal) => {
            let first = wal.first_index();
            let last = wal.last_index();
            prop_assert!(last <= written, "recovered {last} entries of {written}");
            if last >= first && last > 0 {
                let got = wal.entries(first, last + 1).unwrap();
                let want = entries(first, last, 1);
                prop_assert_eq!(got, want);
            }
            Ok(())
        }
        Err(Error::Corrupt { .. }) => Ok(()),
        Err(other) => Err(TestCaseError::fail(format!(
            "neither opened nor refused as corrupt: {other}"
        ))),
    }
}

/// One mutation of a segment file.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR a byte at a fraction of the file's length.
    Flip { at: f64, mask: u8 },
    /// Cut the file at a fraction of its length.
    Truncate { at: f64 },
    /// Append bytes.
    Append(Vec<u8>),
    /// Overwrite a run of bytes.
    Overwrite { at: f64, bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (0.0..1.0f64, 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        2 => (0.0..1.0f64).prop_map(|at| Mutation::Truncate { at }),
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
        2 => (0.0..1.0f64, proptest::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
    ]
}

fn apply(path: &Path, mutation: &Mutation) {
    let mut bytes = std::fs::read(path).unwrap();
    let position = |at: f64, len: usize| ((at * len as f64) as usize).min(len.saturating_sub(1));
    match mutation {
        Mutation::Flip { at, mask } => {
            if !bytes.is_empty() {
                let i = position(*at, bytes.len());
                bytes[i] ^= mask;
            }
        }
        Mutation::Truncate { at } => {
            let keep = (at * bytes.len() as f64) as usize;
            bytes.truncate(keep);
        }
        Mutation::Append(extra) => bytes.extend_from_slice(extra),
        Mutation::Overwrite { at, bytes: run } => {
            if !bytes.is_empty() {
                let start = position(*at, bytes.len());
                for (i, b) in run.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(start + i) {
                        *slot = *b;
                    }
                }
            }
        }
    }
    std::fs::write(path, bytes).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    /// A valid log whose segments were mutated (bit flips, cuts, appended garbage,
    /// overwritten runs) opens with only written entries, or refuses as corrupt.
    #[test]
    fn mutated_segments_open_or_refuse_as_corrupt(
        count in 1u64..120,
        which in any::<prop::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let dir = build(count);
        let files = segments(dir.path());
        prop_assume!(!files.is_empty());
        let target = which.get(&files).clone();
        for m in &mutations {
            apply(&target, m);
        }
        open_checked(dir.path(), count)?;
    }

    /// A segment file of arbitrary bytes (alone, or after valid segments) never panics the
    /// recovery.
    #[test]
    fn arbitrary_segment_bytes_open_or_refuse_as_corrupt(
        bytes in proptest::collection::vec(any::<u8>(), 0..6000),
        after_valid in any::<bool>(),
    ) {
        let (dir, written) = if after_valid {
            (build(40), 40)
        } else {
            (tempfile::tempdir().unwrap(), 0)
        };
        let name = if after_valid {
            // After the last valid segment, as the next one would be named.
            let last = segments(dir.path()).last().cloned().unwrap();
            let stem: u64 = last.file_stem().unwrap().to_string_lossy().parse().unwrap();
            format!("{:020}.seg", stem + 1_000)
        } else {
            format!("{:020}.seg", 1)
        };
        std::fs::write(dir.path().join(name), &bytes).unwrap();
        open_checked(dir.path(), written)?;
    }

    /// A snapshot file with mutated bytes opens and reads back the body it was written
    /// with, or fails with an error (never a panic, never another body).
    #[test]
    fn mutated_snapshots_read_back_or_fail(
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        mutations in proptest::collection::vec(mutation(), 0..3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path(), 2).unwrap();
        let meta = SnapshotMeta { index: 7, term: 2, data: b"members".to_vec() };
        let mut writer = store.writer(&meta).unwrap();
        writer.write_all(&body).unwrap();
        let path = writer.finish().unwrap();
        for m in &mutations {
            apply(&path, m);
        }
        if let Ok(reader) = SnapshotReader::open(&path) {
            let same_meta = reader.meta() == &meta;
            if let Ok(read) = reader.read_body() {
                prop_assert!(same_meta);
                prop_assert_eq!(read, body);
            }
        }
        // The store skips what does not verify.
        let _ = store.open_latest();
    }

    /// A snapshot file of arbitrary bytes never panics the reader.
    #[test]
    fn arbitrary_snapshot_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot-garbage.snap");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(mut reader) = SnapshotReader::open(&path) {
            let mut out = Vec::new();
            let _ = reader.read_to_end(&mut out);
        }
    }
}
