//! Reading a WAL directory back: verify every segment, rebuild the offset index, and decide
//! what is a torn tail (repairable) and what is corruption (refuse to open).
//!
//! The scan itself never writes: `shoal wal check` and `shoal wal dump` use it as is, and
//! [`Wal::open`](crate::Wal::open) applies the repairs it reports.
//!
//! # Rules
//! - Every segment header must verify and match the file's name.
//! - Records of a segment are read in order; each must verify (seeded crc, rkyv validation)
//!   and carry the next index (a truncation marker may rewind it within the segment).
//! - When reading stops at bytes that are not a valid record (or at zeros followed by
//!   non-zero bytes), the rest of the segment is searched for any valid record. If one exists,
//!   the log is corrupt at the stopping offset. If none exists and this is the last segment,
//!   the tail is torn: open truncates it there. In any other segment it is corruption.
//! - Segments wholly at or below the snapshot point are leftovers of a compaction and are
//!   deleted; the rest must be contiguous and start at or before `snapshot index + 1`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rkyv::util::AlignedVec;

use crate::error::{Error, Result};
use crate::format::{
    FrameRead, HEADER_BYTES, Record, SegmentHeader, first_valid_frame_after,
    parse_segment_file_name, read_frame,
};
use crate::fsutil::{files_with_suffix, io_error};
use crate::meta::{Meta, MetaFile};
use crate::terms::TermRuns;

/// Where one live entry sits in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// Byte offset of the frame.
    pub offset: u32,
    /// Length of the frame (header, payload and padding).
    pub len: u32,
}

/// Why the reading of a segment stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// At zeros (or the end of the file) with nothing but zeros after.
    Clean,
    /// At bytes that are not a valid record.
    Bad {
        /// What failed.
        reason: String,
    },
}

/// One segment as read from disk.
#[derive(Debug)]
pub struct SegmentScan {
    /// The segment file.
    pub path: PathBuf,
    /// Its verified header.
    pub header: SegmentHeader,
    /// Size of the file in bytes.
    pub file_len: u64,
    /// Live entries, `header.first_index + i` at `locs[i]`.
    pub locs: Vec<Loc>,
    /// Terms of the live entries.
    pub terms: TermRuns,
    /// Offset where the records end (where the next frame goes).
    pub end_offset: u64,
    /// Why reading stopped at `end_offset`.
    pub stop: Stop,
    /// A valid record found after the stopping point (which makes the stop corruption).
    pub valid_after: Option<u64>,
    /// Whether non-zero bytes follow the stopping point.
    pub dirty_after: bool,
    /// Number of frames read, markers and overwritten entries included.
    pub frames: u64,
}

impl SegmentScan {
    /// The index after the last live entry.
    pub fn next_index(&self) -> u64 {
        self.header.first_index + self.locs.len() as u64
    }
}

/// A record met while scanning, for `shoal wal dump`.
#[derive(Debug)]
pub struct VisitedRecord<'a> {
    /// The segment file.
    pub path: &'a Path,
    /// Byte offset of the frame.
    pub offset: u64,
    /// Frame length in bytes.
    pub frame_len: usize,
    /// The verified record.
    pub record: &'a Record<'a>,
}

/// Reads and verifies one segment file. Fails only on I/O or a bad header; record faults are
/// described in the result for the caller to judge.
pub fn scan_segment(path: &Path, visit: &mut dyn FnMut(&VisitedRecord<'_>)) -> Result<SegmentScan> {
    scan_segment_in(path, &mut AlignedVec::new(), visit)
}

/// [`scan_segment`] reading into `buffer` (reused across segments: no fresh page faults).
fn scan_segment_in(
    path: &Path,
    buffer: &mut AlignedVec<16>,
    visit: &mut dyn FnMut(&VisitedRecord<'_>),
) -> Result<SegmentScan> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let file_len = file.metadata().map_err(io_error(path))?.len();
    let len = usize::try_from(file_len).map_err(|_| Error::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: format!("segment of {file_len} bytes is too large"),
    })?;
    buffer.resize(len, 0);
    file.read_exact(&mut buffer[..]).map_err(io_error(path))?;
    let bytes = &buffer[..];
    let corrupt = |offset: u64, reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let header = SegmentHeader::decode(bytes).map_err(|reason| corrupt(0, reason))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    if name.as_deref().and_then(parse_segment_file_name) != Some(header.first_index) {
        return Err(corrupt(
            0,
            format!(
                "header says first index {} but the file name disagrees",
                header.first_index
            ),
        ));
    }
    let seed = header.seed();
    let first = header.first_index;
    let mut locs: Vec<Loc> = Vec::new();
    let mut terms = TermRuns::default();
    let mut frames = 0u64;
    let mut pos = HEADER_BYTES;
    let stop = loop {
        match read_frame(bytes, pos, seed) {
            FrameRead::End => break Stop::Clean,
            FrameRead::Bad(reason) => break Stop::Bad { reason },
            FrameRead::Record(record, frame_len) => {
                let next = first + locs.len() as u64;
                match &record {
                    Record::Entry(entry) => {
                        let index = entry.index.to_native();
                        if index != next {
                            break Stop::Bad {
                                reason: format!("entry index {index} where {next} was expected"),
                            };
                        }
                        terms.push(index, entry.term.to_native());
                        locs.push(Loc {
                            offset: pos as u32,
                            len: frame_len as u32,
                        });
                    }
                    Record::Marker { after } => {
                        if *after + 1 < first || *after >= next {
                            break Stop::Bad {
                                reason: format!(
                                    "truncation marker after {after} outside the segment's entries {first}..{next}"
                                ),
                            };
                        }
                        locs.truncate((*after + 1 - first) as usize);
                        terms.truncate_after(*after);
                    }
                }
                visit(&VisitedRecord {
                    path,
                    offset: pos as u64,
                    frame_len,
                    record: &record,
                });
                frames += 1;
                pos += frame_len;
            }
        }
    };
    let valid_after = first_valid_frame_after(bytes, pos + 1, seed).map(|p| p as u64);
    let dirty_after = bytes[pos.min(bytes.len())..].iter().any(|b| *b != 0);
    Ok(SegmentScan {
        path: path.to_path_buf(),
        header,
        file_len,
        locs,
        terms,
        end_offset: pos as u64,
        stop,
        valid_after,
        dirty_after,
        frames,
    })
}

/// A torn tail found at the end of the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The last segment.
    pub path: PathBuf,
    /// Offset where the valid records end; everything from here on is discarded.
    pub offset: u64,
    /// What was found there.
    pub reason: String,
    /// Bytes from `offset` to the end of the file.
    pub bytes_discarded: u64,
}

/// The verified contents of a WAL directory.
#[derive(Debug)]
pub struct LogScan {
    /// The meta file's contents (default when it does not exist).
    pub meta: Meta,
    /// Whether the meta file exists.
    pub meta_exists: bool,
    /// The live segments, in order.
    pub segments: Vec<SegmentScan>,
    /// Segments wholly at or below the snapshot point, to delete.
    pub compacted: Vec<PathBuf>,
    /// The torn tail of the last segment, if any.
    pub torn_tail: Option<TornTail>,
    /// Leftover temporary files (interrupted segment preparation or meta creation).
    pub temporary: Vec<PathBuf>,
}

impl LogScan {
    /// The last index held (the snapshot index when no entry follows it).
    pub fn last_index(&self) -> u64 {
        self.segments
            .last()
            .map_or(0, |s| s.next_index() - 1)
            .max(self.meta.snapshot_index)
    }
}

/// Reads every segment of the WAL directory `dir` and verifies the whole log, changing
/// nothing. `visit` sees every verified record in file order.
pub fn scan_log(dir: &Path, visit: &mut dyn FnMut(&VisitedRecord<'_>)) -> Result<LogScan> {
    scan_log_with(dir, Some(visit))
}

/// [`scan_log`] without a visitor, reading segments on several threads: what open and
/// `shoal wal check` use.
pub fn verify_log(dir: &Path) -> Result<LogScan> {
    scan_log_with(dir, None)
}

/// Scans `paths` on up to four threads; results in the order of `paths`.
fn scan_parallel(paths: &[PathBuf]) -> Vec<Result<SegmentScan>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(paths.len().max(1));
    if threads <= 1 {
        let mut buffer = AlignedVec::new();
        return paths
            .iter()
            .map(|path| scan_segment_in(path, &mut buffer, &mut |_| {}))
            .collect();
    }
    let mut slots: Vec<Option<Result<SegmentScan>>> = paths.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                scope.spawn(move || {
                    let mut buffer = AlignedVec::new();
                    paths
                        .iter()
                        .enumerate()
                        .skip(worker)
                        .step_by(threads)
                        .map(|(position, path)| {
                            (position, scan_segment_in(path, &mut buffer, &mut |_| {}))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(results) => {
                    for (position, result) in results {
                        slots[position] = Some(result);
                    }
                }
                Err(_) => tracing::error!("a wal scan thread panicked"),
            }
        }
    });
    slots
        .into_iter()
        .zip(paths)
        .map(|(slot, path)| {
            slot.unwrap_or_else(|| {
                Err(Error::Invalid(format!(
                    "scanning {} did not complete",
                    path.display()
                )))
            })
        })
        .collect()
}

fn scan_log_with(
    dir: &Path,
    mut visit: Option<&mut dyn FnMut(&VisitedRecord<'_>)>,
) -> Result<LogScan> {
    let meta_found = MetaFile::read_only(dir)?;
    let meta_exists = meta_found.is_some();
    let meta = meta_found.unwrap_or_default();
    let temporary = files_with_suffix(dir, ".tmp")?;
    let mut paths: Vec<(u64, PathBuf)> = files_with_suffix(dir, crate::format::SEGMENT_SUFFIX)?
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            parse_segment_file_name(&name).map(|first| (first, path))
        })
        .collect();
    paths.sort();

    let paths: Vec<PathBuf> = paths.into_iter().map(|(_, path)| path).collect();
    let mut parallel = match visit {
        Some(_) => Vec::new(),
        None => scan_parallel(&paths),
    }
    .into_iter();
    let mut buffer = AlignedVec::new();
    let mut scans = Vec::with_capacity(paths.len());
    let count = paths.len();
    let mut torn_tail = None;
    for (position, path) in paths.into_iter().enumerate() {
        let scan = match visit.as_mut() {
            Some(visit) => scan_segment_in(&path, &mut buffer, *visit)?,
            None => parallel
                .next()
                .unwrap_or_else(|| Err(Error::Invalid(format!("no scan of {}", path.display()))))?,
        };
        let is_last = position + 1 == count;
        let faulty = matches!(scan.stop, Stop::Bad { .. }) || scan.dirty_after;
        if let Some(valid) = scan.valid_after {
            return Err(Error::Corrupt {
                path,
                offset: scan.end_offset,
                reason: format!(
                    "{}, yet a valid record follows at offset {valid}",
                    stop_reason(&scan.stop)
                ),
            });
        }
        if faulty {
            let reason = match &scan.stop {
                Stop::Bad { reason } => reason.clone(),
                Stop::Clean => "non-zero bytes after the last record".to_string(),
            };
            if !is_last {
                return Err(Error::Corrupt {
                    path,
                    offset: scan.end_offset,
                    reason: format!("{reason} in a segment that is not the last"),
                });
            }
            torn_tail = Some(TornTail {
                path: path.clone(),
                offset: scan.end_offset,
                reason,
                bytes_discarded: scan.file_len.saturating_sub(scan.end_offset),
            });
        }
        scans.push(scan);
    }

    // Drop the leftovers of a compaction: segments whose entries all lie at or below the
    // snapshot point.
    let snapshot_index = meta.snapshot_index;
    let mut compacted = Vec::new();
    while let Some(first) = scans.first() {
        let wholly_compacted =
            first.header.first_index <= snapshot_index && first.next_index() <= snapshot_index + 1;
        if !wholly_compacted {
            break;
        }
        compacted.push(scans.remove(0).path);
    }
    if torn_tail
        .as_ref()
        .is_some_and(|t| compacted.contains(&t.path))
    {
        torn_tail = None;
    }
    if let Some(first) = scans.first()
        && first.header.first_index > snapshot_index + 1
    {
        return Err(Error::Corrupt {
            path: first.path.clone(),
            offset: 0,
            reason: format!(
                "log starts at index {} but the snapshot ends at {snapshot_index}: entries are missing",
                first.header.first_index
            ),
        });
    }
    for pair in scans.windows(2) {
        if pair[1].header.first_index != pair[0].next_index() {
            return Err(Error::Corrupt {
                path: pair[1].path.clone(),
                offset: 0,
                reason: format!(
                    "segment starts at index {} but the previous segment ends at {}",
                    pair[1].header.first_index,
                    pair[0].next_index() - 1
                ),
            });
        }
    }
    Ok(LogScan {
        meta,
        meta_exists,
        segments: scans,
        compacted,
        torn_tail,
        temporary,
    })
}

fn stop_reason(stop: &Stop) -> String {
    match stop {
        Stop::Clean => "zeroed bytes where a record was expected".to_string(),
        Stop::Bad { reason } => reason.clone(),
    }
}

/// Fault injection for crash tests and `shoal chaos`: tears the last record of the log in the
/// WAL directory `dir` (of a stopped node) as a crash mid-write would, zeroing the second half
/// of its frame. Returns the segment and the frame's offset, or `None` when the last segment
/// holds no record. The next open reports a torn tail there and drops that record.
pub fn tear_last_record(dir: &Path) -> Result<Option<(PathBuf, u64)>> {
    let scan = verify_log(dir)?;
    let Some(last) = scan.segments.last() else {
        return Ok(None);
    };
    let mut frames = Vec::new();
    scan_segment(&last.path, &mut |record| {
        frames.push((record.offset, record.frame_len as u64));
    })?;
    let Some(&(offset, frame_len)) = frames.last() else {
        return Ok(None);
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&last.path)
        .map_err(io_error(&last.path))?;
    let from = offset + frame_len / 2;
    crate::fsutil::write_zeros(&file, &last.path, from, offset + frame_len - from)?;
    file.sync_data().map_err(io_error(&last.path))?;
    Ok(Some((last.path.clone(), offset)))
}
