//! Corruption tests: a flipped byte anywhere but the tail refuses to open, naming file and offset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{options, segments};
use shoal_wal::conformance::entries;
use shoal_wal::recovery::scan_segment;
use shoal_wal::{Error, LogStore, Wal};

const SEGMENT_BYTES: u64 = 8192;

fn build() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    for chunk in entries(1, 300, 1).chunks(10) {
        wal.append(chunk).unwrap();
    }
    drop(wal);
    assert!(segments(dir.path()).len() >= 3);
    dir
}

fn frames(path: &Path) -> Vec<(u64, usize)> {
    let mut found = Vec::new();
    scan_segment(path, &mut |r| found.push((r.offset, r.frame_len))).unwrap();
    found
}

fn flip(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= 0x40;
    file.write_all_at(&byte, offset).unwrap();
}

fn expect_corrupt(dir: &Path, path: &PathBuf, offset: u64) {
    match Wal::open(options(dir, SEGMENT_BYTES)) {
        Err(Error::Corrupt {
            path: p,
            offset: o,
            reason,
        }) => {
            assert_eq!(&p, path, "{reason}");
            assert_eq!(o, offset, "{reason}");
            let message = Error::Corrupt {
                path: p,
                offset: o,
                reason,
            }
            .to_string();
            assert!(
                message.contains(&path.display().to_string())
                    && message.contains(&offset.to_string())
            );
        }
        Err(other) => panic!("expected corruption at {offset}, got {other}"),
        Ok(_) => panic!("opened a log corrupt at {} offset {offset}", path.display()),
    }
}

#[test]
fn flipped_record_bytes_refuse_open() {
    // (segment position, record position, byte within the frame, what it hits)
    let cases = [
        (0usize, 3usize, 0u64, "length"),
        (0, 3, 3, "length high byte"),
        (0, 5, 5, "crc"),
        (0, 7, 8, "payload start"),
        (1, 2, 40, "payload middle"),
        (1, 0, 9, "first record of a segment"),
        (2, 1, 20, "last segment, non-tail record"),
    ];
    for (segment, record, byte, what) in cases {
        let dir = build();
        let path = segments(dir.path())[segment].clone();
        let frame = frames(&path)[record];
        assert!((byte as usize) < frame.1);
        flip(&path, frame.0 + byte);
        eprintln!("case: {what}");
        expect_corrupt(dir.path(), &path, frame.0);
    }
}

#[test]
fn flipped_header_refuses_open() {
    for byte in [0u64, 9, 17, 25, 61] {
        let dir = build();
        let path = segments(dir.path())[1].clone();
        flip(&path, byte);
        expect_corrupt(dir.path(), &path, 0);
    }
}

#[test]
fn last_record_of_a_sealed_segment_is_not_a_torn_tail() {
    let dir = build();
    let path = segments(dir.path())[0].clone();
    let last = *frames(&path).last().unwrap();
    flip(&path, last.0 + 12);
    expect_corrupt(dir.path(), &path, last.0);
}

#[test]
fn missing_segment_is_a_gap() {
    let dir = build();
    let all = segments(dir.path());
    std::fs::remove_file(&all[1]).unwrap();
    expect_corrupt(dir.path(), &all[2], 0);
}

#[test]
fn zeroed_record_followed_by_valid_ones_is_corruption() {
    let dir = build();
    let path = segments(dir.path()).pop().unwrap();
    let frame = frames(&path)[1];
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&vec![0u8; frame.1], frame.0).unwrap();
    expect_corrupt(dir.path(), &path, frame.0);
}

#[test]
fn corrupt_log_can_still_be_read_by_nothing_else() {
    // After a refused open nothing was changed: the same error again.
    let dir = build();
    let path = segments(dir.path())[0].clone();
    let frame = frames(&path)[2];
    flip(&path, frame.0 + 10);
    expect_corrupt(dir.path(), &path, frame.0);
    expect_corrupt(dir.path(), &path, frame.0);
    // And a reader that trusts the index notices a flip made after open.
    let dir = build();
    let wal = Wal::open(options(dir.path(), SEGMENT_BYTES)).unwrap();
    let path = segments(dir.path())[0].clone();
    let frame = frames(&path)[2];
    flip(&path, frame.0 + 10);
    assert!(matches!(wal.entries(1, 10), Err(Error::Corrupt { .. })));
}
