//! Open finishes what a crash interrupted: compactions whose segments were not yet deleted,
//! truncations that deleted only some segments, leftover temporary files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{options, segments};
use shoal_wal::conformance::entries;
use shoal_wal::{LogStore, Wal};

const SEGMENT_BYTES: u64 = 8192;

fn stash(files: &[std::path::PathBuf], to: &Path) {
    for file in files {
        std::fs::copy(file, to.join(file.file_name().unwrap())).unwrap();
    }
}

fn restore(from: &Path, to: &Path) {
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if !target.exists() {
            std::fs::copy(item.path(), target).unwrap();
        }
    }
}

#[test]
fn compaction_interrupted_before_deleting_segments() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    wal.append(&entries(1, 300, 1)).unwrap();
    stash(&segments(dir.path()), saved.path());
    wal.compact(200, 1).unwrap();
    let kept = segments(dir.path()).len();
    drop(wal);
    // As if the crash came after the snapshot point was saved, before the unlinks.
    restore(saved.path(), dir.path());
    assert!(segments(dir.path()).len() > kept);
    let wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    assert!(!wal.recovery().removed_compacted.is_empty());
    assert_eq!(segments(dir.path()).len(), kept);
    assert_eq!(wal.snapshot_point(), (200, 1));
    assert_eq!(wal.entries(201, 301).unwrap(), entries(201, 300, 1));
}

#[test]
fn compaction_past_the_end_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    wal.append(&entries(1, 100, 1)).unwrap();
    stash(&segments(dir.path()), saved.path());
    wal.compact(150, 2).unwrap();
    drop(wal);
    // The crash came after the snapshot point was saved, before the new segment existed.
    for segment in segments(dir.path()) {
        std::fs::remove_file(segment).unwrap();
    }
    restore(saved.path(), dir.path());
    let mut wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    assert_eq!(wal.snapshot_point(), (150, 2));
    assert_eq!(wal.last_index(), 150);
    wal.append(&entries(151, 160, 2)).unwrap();
    drop(wal);
    let wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    assert_eq!(wal.entries(151, 161).unwrap(), entries(151, 160, 2));
    assert_eq!(segments(dir.path()).len(), 1);
}

#[test]
fn truncation_interrupted_after_some_unlinks() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    wal.append(&entries(1, 300, 1)).unwrap();
    drop(wal);
    // Truncation unlinks from the newest segment back: a crash leaves a prefix.
    let all = segments(dir.path());
    std::fs::remove_file(all.last().unwrap()).unwrap();
    let mut wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    let last = wal.last_index();
    assert!(last < 300);
    assert_eq!(wal.entries(1, last + 1).unwrap(), entries(1, last, 1));
    wal.append(&entries(last + 1, last + 5, 2)).unwrap();
}

#[test]
fn leftover_temporary_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    wal.append(&entries(1, 10, 1)).unwrap();
    drop(wal);
    std::fs::write(
        dir.path().join("00000000000000000011.seg.1234.tmp"),
        b"half",
    )
    .unwrap();
    std::fs::write(dir.path().join("deadbeef.spare.tmp"), b"half").unwrap();
    let wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    assert_eq!(wal.recovery().removed_temporary.len(), 2);
    assert_eq!(wal.last_index(), 10);
}

#[test]
fn compaction_gives_disk_space_back_and_reports_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    wal.append(&entries(1, 400, 1)).unwrap();
    let before = wal.stats();
    let retention = wal.retention();
    assert_eq!(retention.segments as u64, before.segments);
    let free_oldest = retention.compact_to_free_oldest.unwrap();
    // Compacting just below what the oldest segment holds frees nothing.
    wal.compact(free_oldest - 1, 1).unwrap();
    assert_eq!(wal.stats().segments, before.segments);
    wal.compact(free_oldest, 1).unwrap();
    assert_eq!(wal.stats().segments, before.segments - 1);
    wal.compact(350, 1).unwrap();
    let after = wal.stats();
    assert!(
        after.disk_bytes <= before.disk_bytes / 2,
        "{before:?} -> {after:?}"
    );
    assert_eq!(segments(dir.path()).len() as u64, after.segments);
    assert_eq!(wal.entries(351, 401).unwrap(), entries(351, 400, 1));
}
