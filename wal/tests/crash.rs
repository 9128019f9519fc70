//! Crash tests: the last segment cut at every byte offset across its last records.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{options, segments};
use shoal_wal::conformance::entry;
use shoal_wal::recovery::scan_segment;
use shoal_wal::{Entry, EntryKind, LogStore, Wal};

const SEGMENT_BYTES: u64 = 16 * 1024;

fn entry_of(index: u64) -> Entry {
    Entry {
        index,
        term: 1 + index / 10,
        kind: EntryKind::Normal,
        data: vec![index as u8; 40 + (index as usize * 13) % 90],
    }
}

/// Writes `count` entries (enough to fill one segment and start another) and returns the
/// directory and the frame boundaries `(offset, end, index)` of the last segment.
fn build(count: u64) -> (tempfile::TempDir, Vec<(u64, u64, u64)>) {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    for index in 1..=count {
        wal.append(&[entry_of(index)]).unwrap();
    }
    drop(wal);
    let last = segments(dir.path()).pop().unwrap();
    let mut frames = Vec::new();
    scan_segment(&last, &mut |record| {
        if let shoal_wal::format::Record::Entry(e) = record.record {
            frames.push((
                record.offset,
                record.offset + record.frame_len as u64,
                e.index.to_native(),
            ));
        }
    })
    .unwrap();
    (dir, frames)
}

fn copy_dir(from: &Path, to: &Path) {
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        std::fs::copy(item.path(), to.join(item.file_name())).unwrap();
    }
}

#[derive(Clone, Copy, Debug)]
enum Cut {
    /// The file ends at the cut (a crash before the file grew that far).
    Shorten,
    /// The bytes after the cut are zeros (preallocated space never written).
    Zero,
    /// The bytes after the cut are garbage that does not verify (a torn sector).
    Garbage,
}

fn cut_file(path: &Path, at: u64, end: u64, how: Cut) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    match how {
        Cut::Shorten => file.set_len(at).unwrap(),
        Cut::Zero => file
            .write_all_at(&vec![0u8; (end - at) as usize], at)
            .unwrap(),
        Cut::Garbage => file
            .write_all_at(&vec![0xa5u8; (end - at) as usize], at)
            .unwrap(),
    }
}

#[test]
fn cut_at_every_byte_of_the_last_records() {
    let (pristine, frames) = build(160);
    assert!(
        segments(pristine.path()).len() >= 2,
        "the log must span segments"
    );
    assert!(frames.len() >= 4);
    let last_segment = segments(pristine.path()).pop().unwrap();
    let name = last_segment.file_name().unwrap().to_owned();
    let tail = &frames[frames.len() - 3..];
    let (from, end) = (tail[0].0, tail[2].1);
    let last_index = tail[2].2;
    let pristine_bytes = std::fs::read(&last_segment).unwrap();
    for how in [Cut::Shorten, Cut::Zero, Cut::Garbage] {
        for at in from..=end {
            if matches!(how, Cut::Garbage) && (at == end || (at - from) % 3 != 0) {
                // Garbage right after a complete last record is a torn next record; garbage
                // is sampled at every third byte to keep the test quick on a busy disk.
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            copy_dir(pristine.path(), dir.path());
            cut_file(&dir.path().join(&name), at, end, how);
            // Zeroing a frame's zero padding changes nothing: such a frame stays complete.
            let intact = |frame_end: u64| {
                frame_end <= at
                    || (matches!(how, Cut::Zero)
                        && pristine_bytes[at as usize..frame_end as usize]
                            .iter()
                            .all(|b| *b == 0))
            };
            let complete = tail
                .iter()
                .filter(|(_, frame_end, _)| intact(*frame_end))
                .map(|(_, _, index)| *index)
                .max()
                .unwrap_or(tail[0].2 - 1);
            let mut wal = Wal::open(options(dir.path(), SEGMENT_BYTES))
                .unwrap_or_else(|e| panic!("{how:?} at {at}: open failed: {e}"));
            assert_eq!(wal.last_index(), complete, "{how:?} at {at}");
            let at_boundary = tail
                .iter()
                .all(|(offset, frame_end, _)| at <= *offset || intact(*frame_end));
            let torn = wal.recovery().torn_tail.clone();
            match how {
                Cut::Garbage => assert!(torn.is_some(), "{how:?} at {at}: torn tail not reported"),
                _ => assert_eq!(torn.is_some(), !at_boundary, "{how:?} at {at}: {torn:?}"),
            }
            if let Some(torn) = torn {
                assert_eq!(
                    torn.offset,
                    tail.iter().find(|f| f.2 == complete + 1).unwrap().0
                );
            }
            assert_eq!(
                wal.entries(complete - 5, complete + 1).unwrap(),
                (complete - 5..=complete).map(entry_of).collect::<Vec<_>>()
            );
            // Appends continue, and survive another reopen.
            wal.append(&[entry(complete + 1, 99)]).unwrap();
            drop(wal);
            if !matches!(how, Cut::Shorten) && at % 4 != 0 {
                continue;
            }
            let wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
            assert!(wal.recovery().torn_tail.is_none());
            assert_eq!(wal.last_index(), complete + 1);
            assert_eq!(
                wal.entries(complete + 1, complete + 2).unwrap(),
                vec![entry(complete + 1, 99)]
            );
            assert!(complete <= last_index);
        }
    }
}

#[test]
fn torn_truncation_marker_and_empty_last_segment() {
    // A truncation marker torn off: the log reads as before the truncation (never acknowledged).
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    for index in 1..=10 {
        wal.append(&[entry_of(index)]).unwrap();
    }
    wal.truncate_after(6).unwrap();
    drop(wal);
    let last = segments(dir.path()).pop().unwrap();
    let mut marker = None;
    scan_segment(&last, &mut |r| {
        if let shoal_wal::format::Record::Marker { .. } = r.record {
            marker = Some((r.offset, r.offset + r.frame_len as u64));
        }
    })
    .unwrap();
    let (at, end) = marker.unwrap();
    cut_file(&last, at + 3, end, Cut::Zero);
    let wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    assert_eq!(wal.last_index(), 10);
    assert!(wal.recovery().torn_tail.is_some());
}

#[test]
fn tear_last_record_helper() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    for index in 1..=20 {
        wal.append(&[entry_of(index)]).unwrap();
    }
    drop(wal);
    let (path, offset) = shoal_wal::recovery::tear_last_record(dir.path())
        .unwrap()
        .unwrap();
    let wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    let torn = wal.recovery().torn_tail.clone().unwrap();
    assert_eq!((torn.path, torn.offset), (path, offset));
    assert_eq!(wal.last_index(), 19);
}
