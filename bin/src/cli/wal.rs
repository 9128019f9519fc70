//! `shoal wal dump` and `shoal wal check`: read a node's WAL offline, changing nothing.
//!
//! `check` exits 0 when every record verifies (a torn tail that open would truncate is
//! reported and still exits 0) and 1 when open would refuse, naming file and byte offset.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Value, json};
use shoal_wal::format::Record;
use shoal_wal::recovery::{LogScan, VisitedRecord, scan_log, verify_log};
use shoal_wal::{EntryKind, SnapshotReader, WAL_DIR_NAME};

use super::output::Output;
use super::{CliError, CliResult, GlobalArgs};

/// Where the log is.
#[derive(Debug, Clone, Args)]
pub struct WalDirArgs {
    /// A node's data directory (the log is in its `wal/` subdirectory), or a WAL directory.
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// The WAL directory of `data_dir`: `<data_dir>/wal`, or `data_dir` itself when it holds
/// segments.
pub fn wal_dir(data_dir: &Path) -> CliResult<PathBuf> {
    let nested = data_dir.join(WAL_DIR_NAME);
    if nested.is_dir() {
        return Ok(nested);
    }
    if data_dir.join("meta").is_file() {
        return Ok(data_dir.to_path_buf());
    }
    if !data_dir.exists() {
        return Err(CliError::not_found(format!(
            "data directory {} does not exist",
            data_dir.display()
        )));
    }
    Err(CliError::not_found(format!(
        "no write-ahead log in {} (expected {})",
        data_dir.display(),
        nested.display()
    )))
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Blank => "blank",
        EntryKind::Normal => "normal",
        EntryKind::Config => "config",
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// `shoal wal dump`: every segment and record, in file order.
pub fn dump(global: &GlobalArgs, args: &WalDirArgs) -> CliResult {
    let dir = wal_dir(&args.data_dir)?;
    let mut current: Option<PathBuf> = None;
    let mut records: Vec<Value> = Vec::new();
    let mut segments_json: Vec<Value> = Vec::new();
    let json = global.json;
    let mut out = Output::new();
    let mut visit = |record: &VisitedRecord<'_>| {
        if current.as_deref() != Some(record.path) {
            if json {
                if let Some(path) = current.take() {
                    segments_json.push(json!({
                        "path": path.display().to_string(),
                        "records": std::mem::take(&mut records),
                    }));
                }
            } else {
                out.line(format_args!("segment {}", record.path.display()));
            }
            current = Some(record.path.to_path_buf());
        }
        match record.record {
            Record::Entry(entry) => {
                let kind = match entry.kind {
                    shoal_wal::entry::ArchivedEntryKind::Blank => EntryKind::Blank,
                    shoal_wal::entry::ArchivedEntryKind::Normal => EntryKind::Normal,
                    shoal_wal::entry::ArchivedEntryKind::Config => EntryKind::Config,
                };
                if json {
                    records.push(json!({
                        "offset": record.offset,
                        "index": entry.index.to_native(),
                        "term": entry.term.to_native(),
                        "kind": kind_name(kind),
                        "bytes": entry.data.len(),
                    }));
                } else {
                    out.line(format_args!(
                        "  offset {:>10}  index {:>10}  term {:>6}  {:<6}  {} bytes",
                        record.offset,
                        entry.index.to_native(),
                        entry.term.to_native(),
                        kind_name(kind),
                        entry.data.len()
                    ));
                }
            }
            Record::Marker { after } => {
                if json {
                    records.push(json!({ "offset": record.offset, "truncate_after": after }));
                } else {
                    out.line(format_args!(
                        "  offset {:>10}  truncate after index {after}",
                        record.offset
                    ));
                }
            }
        }
    };
    let scanned = scan_log(&dir, &mut visit);
    if json && let Some(path) = current.take() {
        segments_json.push(json!({
            "path": path.display().to_string(),
            "records": std::mem::take(&mut records),
        }));
    }
    let scan = scanned?;
    if json {
        let mut summary = summary_json(&scan);
        summary["segments"] = Value::Array(segments_json);
        out.line(format_args!("{summary}"));
    } else {
        print_summary(&mut out, &scan);
    }
    out.finish()
}

/// `shoal wal check`: verify every checksum of the log and of the snapshot files.
pub fn check(global: &GlobalArgs, args: &WalDirArgs) -> CliResult {
    let dir = wal_dir(&args.data_dir)?;
    let scan = verify_log(&dir)?;
    let snapshots = check_snapshots(&args.data_dir)?;
    let mut out = Output::new();
    if global.json {
        let mut summary = summary_json(&scan);
        summary["ok"] = json!(true);
        summary["snapshots"] = json!(snapshots);
        summary["segments"] = Value::Array(
            scan.segments
                .iter()
                .map(|s| {
                    json!({
                        "path": s.path.display().to_string(),
                        "first_index": s.header.first_index,
                        "entries": s.locs.len(),
                        "frames": s.frames,
                        "end_offset": s.end_offset,
                    })
                })
                .collect(),
        );
        out.line(format_args!("{summary}"));
    } else {
        for segment in &scan.segments {
            out.line(format_args!(
                "{}: entries {}..={}, {} records, data ends at byte {}: ok",
                file_name(&segment.path),
                segment.header.first_index,
                segment.next_index() - 1,
                segment.frames,
                segment.end_offset
            ));
        }
        for snapshot in &snapshots {
            out.line(format_args!("{snapshot}: ok"));
        }
        print_summary(&mut out, &scan);
        out.line(format_args!("ok: every record verifies"));
    }
    out.finish()
}

fn check_snapshots(data_dir: &Path) -> CliResult<Vec<String>> {
    let dir = data_dir.join(shoal_wal::snapshot::SNAPSHOT_DIR_NAME);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    // Listing only: SnapshotStore::open would delete temporary files, and check changes nothing.
    let mut verified = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| CliError::io(format!("cannot list {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    paths.sort();
    for path in paths {
        SnapshotReader::open(&path)?.read_body()?;
        verified.push(path.display().to_string());
    }
    Ok(verified)
}

fn summary_json(scan: &LogScan) -> Value {
    let meta = &scan.meta;
    json!({
        "first_index": meta.snapshot_index + 1,
        "last_index": scan.last_index(),
        "snapshot_index": meta.snapshot_index,
        "snapshot_term": meta.snapshot_term,
        "term": meta.hard_state.term,
        "voted_for": meta.hard_state.voted_for,
        "commit": meta.hard_state.commit,
        "torn_tail": scan.torn_tail.as_ref().map(|t| json!({
            "path": t.path.display().to_string(),
            "offset": t.offset,
            "reason": t.reason,
            "bytes_discarded": t.bytes_discarded,
        })),
        "compacted_segments": scan.compacted.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    })
}

fn print_summary(out: &mut Output, scan: &LogScan) {
    let meta = &scan.meta;
    out.line(format_args!(
        "log: {} segment(s), entries {}..={} (snapshot at index {} term {}); term {}, voted for {}, commit {}",
        scan.segments.len(),
        meta.snapshot_index + 1,
        scan.last_index(),
        meta.snapshot_index,
        meta.snapshot_term,
        meta.hard_state.term,
        meta.hard_state
            .voted_for
            .map_or_else(|| "none".to_string(), |v| v.to_string()),
        meta.hard_state.commit,
    ));
    for path in &scan.compacted {
        out.line(format_args!(
            "compacted: {} is covered by the snapshot; open deletes it",
            path.display()
        ));
    }
    if let Some(torn) = &scan.torn_tail {
        out.line(format_args!(
            "torn tail: {} at byte offset {}: {}; open truncates the last {} bytes",
            torn.path.display(),
            torn.offset,
            torn.reason,
            torn.bytes_discarded
        ));
    }
}
