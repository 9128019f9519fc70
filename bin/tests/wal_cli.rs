//! `shoal bench wal --keep`, `shoal wal check` and `shoal wal dump` run as real processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shoal_wal::recovery::scan_segment;

fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn bench_keep(dir: &Path, records: &str) {
    let out = shoal(&[
        "bench",
        "wal",
        "--dir",
        dir.to_str().unwrap(),
        "--records",
        records,
        "--batch",
        "16",
        "--record-bytes",
        "64",
        "--segment-bytes",
        "65536",
        "--keep",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "records",
        "record_bytes",
        "batch",
        "wal_records_s",
        "wal_mb_s",
        "raw_records_s",
        "raw_mb_s",
        "ratio",
    ] {
        assert!(doc.get(field).is_some(), "missing {field} in {doc}");
    }
    assert_eq!(doc["records"], records.parse::<u64>().unwrap());
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    found.sort();
    found
}

/// (offset, frame length) of every record of a segment.
fn frames(path: &Path) -> Vec<(u64, u64)> {
    let mut found = Vec::new();
    scan_segment(path, &mut |r| found.push((r.offset, r.frame_len as u64))).unwrap();
    found
}

#[test]
fn check_passes_then_names_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    bench_keep(dir.path(), "1000");
    let out = shoal(&["wal", "check", "--data-dir", data]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok"));
    assert!(
        segments(dir.path()).len() >= 2,
        "the bench log should span segments"
    );

    // Flip one byte inside an early record of the first segment.
    let first = segments(dir.path())[0].clone();
    let (offset, _) = frames(&first)[3];
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&first)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset + 20).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], offset + 20).unwrap();

    let out = shoal(&["wal", "check", "--data-dir", data]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&first.display().to_string()), "{stderr}");
    assert!(
        stderr.contains(&format!("byte offset {offset}")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");

    let out = shoal(&["wal", "check", "--data-dir", data, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "corrupt");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&offset.to_string())
    );
}

#[test]
fn torn_tail_is_reported_and_dump_lists_the_survivors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    bench_keep(dir.path(), "200");
    let last = segments(dir.path()).pop().unwrap();
    let all = frames(&last);
    let (offset, len) = *all.last().unwrap();
    // The last segment loses its final few bytes (the end of its last record).
    let file = OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len(offset + len - 5).unwrap();

    let out = shoal(&["wal", "check", "--data-dir", data]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("torn tail"), "{stdout}");
    assert!(
        stdout.contains(&format!("byte offset {offset}")),
        "{stdout}"
    );

    let out = shoal(&["wal", "check", "--data-dir", data, "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["torn_tail"]["offset"], offset);
    assert_eq!(doc["last_index"], 199);

    let out = shoal(&["wal", "dump", "--data-dir", data]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("index        199 "), "{stdout}");
    assert!(!stdout.contains("index        200 "), "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("offset"))
            .count(),
        199
    );
}

#[test]
fn errors_map_to_exit_codes() {
    let out = shoal(&["wal", "check", "--data-dir", "/nonexistent/shoal"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("/nonexistent/shoal"));

    let out = shoal(&["wal", "check"]);
    assert_eq!(out.status.code(), Some(2));

    let out = shoal(&["--json", "bench", "wal", "--dir", "/tmp", "--batch", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "usage");

    // Global flags are accepted after the subcommand too.
    let out = shoal(&["wal", "check", "--data-dir", "/nonexistent/shoal", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "not_found");
}
