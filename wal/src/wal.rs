//! [`Wal`]: the segmented, checksummed write-ahead log with group commit.
//!
//! # Concurrency
//! Every write (append, truncation, compaction) becomes a request in one queue. Whoever finds
//! the queue non-empty and nobody writing becomes the *leader*: it takes every queued request
//! (up to [`WalOptions::max_batch_bytes`]), encodes all appends into one buffer, issues one
//! write and one fdatasync, publishes the new entries to readers, and then completes every
//! request it took. A blocking caller leads by itself when the log is idle (no thread hop on
//! the single-writer path); requests made with [`Wal::submit`] are led by a background thread
//! when no blocking caller is around. Either way a request completes only after the sync that
//! covers it.
//!
//! Readers see only durable entries. Lock order: `writer` → `meta` → `state`; `state` is never
//! held while taking another lock.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::entry::{Entry, HardState};
use crate::error::{Error, Result};
use crate::format::{
    self, FrameRead, HEADER_BYTES, Record, SegmentHeader, encode_entry, encode_marker, read_frame,
    segment_file_name,
};
use crate::fsutil::{duplicate_error, files_with_suffix, io_error, sync_dir, write_zeros};
use crate::meta::{Meta, MetaFile};
use crate::recovery::{Loc, TornTail, verify_log};
use crate::store::LogStore;
use crate::terms::TermRuns;

/// Name of the WAL directory inside a node's data directory.
pub const WAL_DIR_NAME: &str = "wal";
/// Default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Largest segment size accepted: 1 GiB.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// The advisory lock file in the WAL directory.
const LOCK_FILE: &str = "LOCK";
/// Suffix of a preallocated spare segment waiting to be used.
const SPARE_SUFFIX: &str = ".spare";

/// How to open a [`Wal`].
///
/// Disk use up front: a new log writes its first segment and, in the background, one spare
/// segment, both zero-filled: `2 × segment_bytes` (128 MiB by default). Tests and simulations
/// that open many logs should use a small `segment_bytes` (say 1 MiB).
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// The WAL directory (segments and the meta file). Created when missing.
    pub dir: PathBuf,
    /// Size of each segment file; a segment rolls when the next record would not fit.
    pub segment_bytes: u64,
    /// Whether a background thread keeps one zero-filled spare segment ready, so rolling to a
    /// new segment never writes a whole segment of zeros on the append path.
    pub preallocate_in_background: bool,
    /// Upper bound of entry data one write round takes (the first request is always taken).
    pub max_batch_bytes: usize,
}

impl WalOptions {
    /// Defaults for the WAL directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            preallocate_in_background: true,
            max_batch_bytes: 16 << 20,
        }
    }

    /// Defaults for a node's data directory: the log lives in `<data_dir>/wal`.
    pub fn for_data_dir(data_dir: impl AsRef<Path>) -> Self {
        Self::new(data_dir.as_ref().join(WAL_DIR_NAME))
    }

    /// Checks the options.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes < 4096 || !self.segment_bytes.is_multiple_of(8) {
            return Err(Error::Invalid(format!(
                "segment size {} must be at least 4096 and a multiple of 8",
                self.segment_bytes
            )));
        }
        // Frame offsets are u32: a segment plus one oversized entry must stay below 4 GiB.
        if self.segment_bytes > MAX_SEGMENT_BYTES {
            return Err(Error::Invalid(format!(
                "segment size {} is above the limit of {MAX_SEGMENT_BYTES}",
                self.segment_bytes
            )));
        }
        if self.max_batch_bytes == 0 {
            return Err(Error::Invalid("max batch bytes must be positive".into()));
        }
        Ok(())
    }
}

/// What open found and repaired.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Segments in the log after open.
    pub segments: usize,
    /// First index held after open.
    pub first_index: u64,
    /// Last index held after open.
    pub last_index: u64,
    /// A torn tail that was truncated.
    pub torn_tail: Option<TornTail>,
    /// Segments deleted because a snapshot covers them (an interrupted compaction).
    pub removed_compacted: Vec<PathBuf>,
    /// Temporary files deleted.
    pub removed_temporary: Vec<PathBuf>,
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// fdatasync calls on segments (group commits, rolls, truncations).
    pub syncs: u64,
    /// Write rounds led (each at most one write + one sync of appends).
    pub write_rounds: u64,
    /// Entries appended since open.
    pub entries_appended: u64,
    /// Bytes written to segments since open.
    pub bytes_written: u64,
    /// Segments rolled since open.
    pub segment_rolls: u64,
    /// Rolls that found no spare ready and created a segment on the append path.
    pub spare_misses: u64,
    /// Segments currently held.
    pub segments: u64,
    /// Bytes of segment files on disk, the ready spare included (known without a system call).
    pub disk_bytes: u64,
}

/// A completion callback of [`Wal::submit`].
pub type Completion = Box<dyn FnOnce(Result<()>) + Send + 'static>;

/// Shoal's write-ahead log. Cloning gives another handle to the same log; the background
/// threads stop when the last handle is dropped (after finishing queued requests).
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.inner.shared.options.dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        {
            let mut state = lock(&self.shared.state);
            state.shutdown = true;
            self.shared.state_changed.notify_all();
        }
        {
            let mut spare = lock(&self.shared.spare);
            spare.shutdown = true;
            self.shared.spare_changed.notify_all();
        }
        let me = std::thread::current().id();
        for thread in self.threads.drain(..) {
            // The last handle may be dropped inside a completion running on a WAL thread.
            if thread.thread().id() == me {
                continue;
            }
            if thread.join().is_err() {
                tracing::error!("a wal background thread panicked");
            }
        }
    }
}

struct Shared {
    options: WalOptions,
    state: Mutex<State>,
    state_changed: Condvar,
    writer: Mutex<Writer>,
    meta: Mutex<MetaFile>,
    spare: Mutex<SpareState>,
    spare_changed: Condvar,
    poisoned: AtomicBool,
    /// Test hook: the next segment write fails (feature `fault-injection`).
    fail_next_write: AtomicBool,
    counters: Counters,
    recovery: RecoveryReport,
    /// Holds the directory's advisory lock until the last handle is dropped.
    _lock: File,
}

#[derive(Default)]
struct Counters {
    syncs: AtomicU64,
    write_rounds: AtomicU64,
    entries_appended: AtomicU64,
    bytes_written: AtomicU64,
    segment_rolls: AtomicU64,
    spare_misses: AtomicU64,
}

struct SpareState {
    ready: Option<PathBuf>,
    wanted: bool,
    shutdown: bool,
}

/// A segment as readers see it.
struct Segment {
    first_index: u64,
    path: PathBuf,
    file: Arc<File>,
    seed: u32,
    /// Durable live entries: `first_index + i` at `locs[i]`.
    locs: Vec<Loc>,
    /// Where the next frame goes.
    write_end: u64,
    /// Size of the file on disk (its preallocated size, or more after oversized frames).
    file_len: u64,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first_index + self.locs.len() as u64
    }
}

struct State {
    segments: VecDeque<Segment>,
    terms: TermRuns,
    snapshot_index: u64,
    snapshot_term: u64,
    /// Last index once every queued request is done (validation of new requests).
    logical_last: u64,
    /// Snapshot index once every queued request is done.
    logical_snapshot: u64,
    queue: VecDeque<Request>,
    leading: bool,
    /// Blocking callers asleep on `state_changed`.
    waiting: usize,
    shutdown: bool,
}

impl State {
    fn last_index(&self) -> u64 {
        self.segments
            .back()
            .map_or(0, |s| s.next_index() - 1)
            .max(self.snapshot_index)
    }
}

struct Writer {
    active: Active,
    /// Frames encoded and not yet written.
    buf: Vec<u8>,
    /// Entries in `buf`: (index, term, location).
    pending: Vec<(u64, u64, Loc)>,
    /// The index after the last entry written or encoded.
    next_index: u64,
}

struct Active {
    first_index: u64,
    path: PathBuf,
    file: Arc<File>,
    seed: u32,
    /// Where `buf` goes.
    write_end: u64,
}

enum Op {
    Append(Vec<Entry>),
    TruncateAfter(u64),
    Compact { index: u64, term: u64 },
}

struct Request {
    op: Op,
    done: Done,
}

enum Done {
    Waiter(Arc<Waiter>),
    Callback(Completion),
}

#[derive(Default)]
struct Waiter {
    result: Mutex<Option<Result<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Wal {
    /// Opens the log in `options.dir`, creating it when missing, and recovers it: a torn tail
    /// of the last segment is truncated (see [`Wal::recovery`]); any other fault refuses with
    /// [`Error::Corrupt`] naming the file and byte offset.
    #[tracing::instrument(skip(options), fields(dir = %options.dir.display()))]
    pub fn open(options: WalOptions) -> Result<Wal> {
        options.validate()?;
        let dir = options.dir.clone();
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
            if let Some(parent) = dir.parent()
                && !parent.as_os_str().is_empty()
            {
                sync_dir(parent)?;
            }
        }
        // One owner per directory: an advisory lock held for the life of the Wal.
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked { path: lock_path });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(Error::Io {
                    path: lock_path,
                    source,
                });
            }
        }
        let meta = MetaFile::open(&dir)?;
        let scan = verify_log(&dir)?;
        let mut report = RecoveryReport::default();

        for path in &scan.temporary {
            std::fs::remove_file(path).map_err(io_error(path))?;
            report.removed_temporary.push(path.clone());
        }
        for path in &scan.compacted {
            std::fs::remove_file(path).map_err(io_error(path))?;
            report.removed_compacted.push(path.clone());
        }
        // A spare left by the previous run is kept when it has the right size.
        let mut ready_spare = None;
        for path in files_with_suffix(&dir, SPARE_SUFFIX)? {
            let len = std::fs::metadata(&path).map_err(io_error(&path))?.len();
            if len == options.segment_bytes && ready_spare.is_none() {
                ready_spare = Some(path);
            } else {
                std::fs::remove_file(&path).map_err(io_error(&path))?;
                report.removed_temporary.push(path);
            }
        }
        if let Some(torn) = &scan.torn_tail {
            tracing::warn!(
                segment = %torn.path.display(),
                offset = torn.offset,
                reason = %torn.reason,
                bytes = torn.bytes_discarded,
                "truncating a torn tail of the last wal segment"
            );
            let file = OpenOptions::new()
                .write(true)
                .open(&torn.path)
                .map_err(io_error(&torn.path))?;
            let len = file.metadata().map_err(io_error(&torn.path))?.len();
            write_zeros(
                &file,
                &torn.path,
                torn.offset,
                len.saturating_sub(torn.offset),
            )?;
            if len < options.segment_bytes {
                file.set_len(options.segment_bytes)
                    .map_err(io_error(&torn.path))?;
            }
            file.sync_all().map_err(io_error(&torn.path))?;
            report.torn_tail = Some(torn.clone());
        }
        if !report.removed_temporary.is_empty() || !report.removed_compacted.is_empty() {
            sync_dir(&dir)?;
        }

        let meta_now = meta.meta();
        let mut segments = VecDeque::with_capacity(scan.segments.len());
        let mut terms = TermRuns::default();
        for segment_scan in scan.segments {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&segment_scan.path)
                .map_err(io_error(&segment_scan.path))?;
            terms.extend(&segment_scan.terms);
            let repaired = report
                .torn_tail
                .as_ref()
                .is_some_and(|t| t.path == segment_scan.path);
            let file_len = if repaired {
                segment_scan.file_len.max(options.segment_bytes)
            } else {
                segment_scan.file_len
            };
            segments.push_back(Segment {
                first_index: segment_scan.header.first_index,
                path: segment_scan.path,
                file: Arc::new(file),
                seed: segment_scan.header.seed(),
                locs: segment_scan.locs,
                write_end: segment_scan.end_offset,
                file_len,
            });
        }
        terms.drop_before(meta_now.snapshot_index + 1);
        if segments.is_empty() {
            // The first segment of a new log is zero-filled like every spare, so the first
            // appends overwrite allocated blocks too.
            let first_index = meta_now.snapshot_index + 1;
            let spare = match ready_spare.take() {
                Some(spare) => spare,
                None => prepare_spare(&options)?,
            };
            let (segment, _) = create_segment(&options, first_index, Some(spare), false)?;
            segments.push_back(segment);
        }
        let Some(last) = segments.back() else {
            return Err(Error::Invalid("no segment after recovery".into()));
        };
        let writer = Writer {
            active: Active {
                first_index: last.first_index,
                path: last.path.clone(),
                file: Arc::clone(&last.file),
                seed: last.seed,
                write_end: last.write_end,
            },
            buf: Vec::with_capacity(1 << 20),
            pending: Vec::new(),
            next_index: last.next_index(),
        };
        let state = State {
            segments,
            terms,
            snapshot_index: meta_now.snapshot_index,
            snapshot_term: meta_now.snapshot_term,
            logical_last: 0,
            logical_snapshot: meta_now.snapshot_index,
            queue: VecDeque::new(),
            leading: false,
            waiting: 0,
            shutdown: false,
        };
        let last_index = state.last_index();
        let state = State {
            logical_last: last_index,
            ..state
        };
        report.segments = state.segments.len();
        report.first_index = meta_now.snapshot_index + 1;
        report.last_index = last_index;
        tracing::info!(
            segments = report.segments,
            first_index = report.first_index,
            last_index = report.last_index,
            "wal opened"
        );
        let preallocate = options.preallocate_in_background;
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(state),
            state_changed: Condvar::new(),
            writer: Mutex::new(writer),
            meta: Mutex::new(meta),
            spare: Mutex::new(SpareState {
                wanted: preallocate && ready_spare.is_none(),
                ready: ready_spare,
                shutdown: false,
            }),
            spare_changed: Condvar::new(),
            poisoned: AtomicBool::new(false),
            fail_next_write: AtomicBool::new(false),
            counters: Counters::default(),
            recovery: report,
            _lock: lock_file,
        });
        let mut threads = Vec::new();
        let driver = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("wal-commit".into())
                .spawn(move || driver.run_async_driver())
                .map_err(io_error(&shared.options.dir))?,
        );
        if preallocate {
            let preparer = Arc::clone(&shared);
            threads.push(
                std::thread::Builder::new()
                    .name("wal-prealloc".into())
                    .spawn(move || preparer.run_preparer())
                    .map_err(io_error(&shared.options.dir))?,
            );
        }
        Ok(Wal {
            inner: Arc::new(Inner { shared, threads }),
        })
    }

    /// Blocks until the background preallocator has a spare segment ready (returns at once
    /// when background preallocation is off). Benchmarks call it so that zero-filling does not
    /// compete with the appends they time.
    pub fn wait_until_preallocated(&self) {
        let shared = &self.inner.shared;
        if !shared.options.preallocate_in_background {
            return;
        }
        let mut spare = lock(&shared.spare);
        while spare.ready.is_none() && !spare.shutdown {
            spare = shared
                .spare_changed
                .wait(spare)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// What open found and repaired.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.inner.shared.recovery
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.options.dir
    }

    /// Whether an earlier write or sync failed (every later write fails with
    /// [`Error::Poisoned`]).
    pub fn is_poisoned(&self) -> bool {
        self.inner.shared.poisoned.load(Ordering::Acquire)
    }

    /// Makes the next segment write fail as if the disk had refused it (tests of poisoning).
    #[cfg(feature = "fault-injection")]
    pub fn inject_write_failure(&self) {
        self.inner
            .shared
            .fail_next_write
            .store(true, Ordering::Release);
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        let shared = &self.inner.shared;
        let counters = &shared.counters;
        // From what the log knows, without a system call: cheap enough to poll.
        let (segments, mut disk_bytes) = {
            let state = lock(&shared.state);
            let bytes = state.segments.iter().map(|s| s.file_len).sum::<u64>();
            (state.segments.len() as u64, bytes)
        };
        if lock(&shared.spare).ready.is_some() {
            disk_bytes += shared.options.segment_bytes;
        }
        WalStats {
            syncs: counters.syncs.load(Ordering::Relaxed),
            write_rounds: counters.write_rounds.load(Ordering::Relaxed),
            entries_appended: counters.entries_appended.load(Ordering::Relaxed),
            bytes_written: counters.bytes_written.load(Ordering::Relaxed),
            segment_rolls: counters.segment_rolls.load(Ordering::Relaxed),
            spare_misses: counters.spare_misses.load(Ordering::Relaxed),
            segments,
            disk_bytes,
        }
    }

    /// Appends `entries` (as [`LogStore::append`]: a first index at or below the last one
    /// truncates the conflicting suffix first) and returns once they are durable. Concurrent
    /// callers share writes and syncs.
    pub fn append_batch(&self, entries: Vec<Entry>) -> Result<()> {
        self.run_blocking(Op::Append(entries))
    }

    /// Queues `entries` for appending and returns at once; `on_durable` runs (on a WAL thread
    /// or a concurrent appender's thread) after the sync that covers them, or with the error.
    /// Submissions are written in the order they are made. Validation errors (a gap, an index
    /// below the snapshot, a poisoned log) are reported through `on_durable` too.
    pub fn submit(
        &self,
        entries: Vec<Entry>,
        on_durable: impl FnOnce(Result<()>) + Send + 'static,
    ) {
        let shared = &self.inner.shared;
        let done = Done::Callback(Box::new(on_durable));
        if let Err((Done::Callback(callback), error)) = shared.enqueue(Op::Append(entries), done) {
            callback(Err(error));
        }
    }

    /// Discards every entry after `index`; durable on return.
    pub fn truncate_suffix(&self, index: u64) -> Result<()> {
        self.run_blocking(Op::TruncateAfter(index))
    }

    /// Folds every entry at or below `index` into a snapshot with `term` and deletes the
    /// segments wholly covered; durable on return.
    pub fn compact_prefix(&self, index: u64, term: u64) -> Result<()> {
        self.run_blocking(Op::Compact { index, term })
    }

    /// Replaces the hard state atomically; durable on return.
    pub fn set_hard_state(&self, hard_state: &HardState) -> Result<()> {
        let shared = &self.inner.shared;
        shared.check_poisoned()?;
        let mut meta = lock(&shared.meta);
        let next = Meta {
            hard_state: *hard_state,
            ..meta.meta()
        };
        meta.save(&next).inspect_err(|error| shared.poison(error))
    }

    /// What holds the oldest segment back: the segments not yet deletable and the index a
    /// compaction must reach to delete the oldest one.
    pub fn retention(&self) -> Retention {
        let state = lock(&self.inner.shared.state);
        let deletable_after = state.segments.get(1).map(|s| s.first_index - 1);
        Retention {
            segments: state.segments.len(),
            snapshot_index: state.snapshot_index,
            oldest_segment_first_index: state.segments.front().map_or(0, |s| s.first_index),
            compact_to_free_oldest: deletable_after,
        }
    }

    /// Queues `entries` for appending and returns a handle whose [`PendingAppend::wait`]
    /// returns once they are durable (the waiting thread may lead the write itself). Lets a
    /// caller order its submissions under its own lock and wait outside it.
    pub fn append_async(&self, entries: Vec<Entry>) -> PendingAppend {
        let waiter = Arc::new(Waiter::default());
        let shared = &self.inner.shared;
        if let Err((_, error)) =
            shared.enqueue(Op::Append(entries), Done::Waiter(Arc::clone(&waiter)))
        {
            *lock(&waiter.result) = Some(Err(error));
        }
        PendingAppend {
            wal: self.clone(),
            waiter,
        }
    }

    fn run_blocking(&self, op: Op) -> Result<()> {
        let shared = &self.inner.shared;
        let waiter = Arc::new(Waiter::default());
        if let Err((_, error)) = shared.enqueue(op, Done::Waiter(Arc::clone(&waiter))) {
            return Err(error);
        }
        self.wait_for(&waiter)
    }

    fn wait_for(&self, waiter: &Waiter) -> Result<()> {
        let shared = &self.inner.shared;
        let mut state = lock(&shared.state);
        loop {
            if let Some(result) = lock(&waiter.result).take() {
                return result;
            }
            if !state.leading && !state.queue.is_empty() {
                state = shared.lead(state);
                continue;
            }
            state.waiting += 1;
            state = shared
                .state_changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting -= 1;
        }
    }
}

/// An append queued by [`Wal::append_async`].
#[must_use = "the entries are durable only once wait returns Ok"]
pub struct PendingAppend {
    wal: Wal,
    waiter: Arc<Waiter>,
}

impl std::fmt::Debug for PendingAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAppend").finish_non_exhaustive()
    }
}

impl PendingAppend {
    /// Blocks until the entries are durable (or their write failed).
    pub fn wait(self) -> Result<()> {
        self.wal.wait_for(&self.waiter)
    }
}

/// What keeps segments on disk (see [`Wal::retention`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Segments held.
    pub segments: usize,
    /// The snapshot point.
    pub snapshot_index: u64,
    /// First index of the oldest segment.
    pub oldest_segment_first_index: u64,
    /// Compacting at this index or above frees the oldest segment (`None`: it is the active
    /// segment, freed only by a compaction past the last index).
    pub compact_to_free_oldest: Option<u64>,
}

impl Shared {
    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    fn poison(&self, error: &Error) {
        if !self.poisoned.swap(true, Ordering::AcqRel) {
            tracing::error!(error = %error, "wal poisoned: no more writes are accepted");
        }
    }

    /// Validates `op` against the log as it will be once the queue is done, and queues it.
    fn enqueue(&self, op: Op, done: Done) -> std::result::Result<(), (Done, Error)> {
        if let Err(error) = self.check_poisoned() {
            return Err((done, error));
        }
        let mut state = lock(&self.state);
        if state.shutdown {
            return Err((done, Error::Invalid("the wal is shutting down".into())));
        }
        let checked = match &op {
            Op::Append(entries) => self.validate_append(&state, entries),
            Op::TruncateAfter(index) => {
                if *index < state.logical_snapshot {
                    Err(Error::Invalid(format!(
                        "truncate after {index} is below the snapshot index {}",
                        state.logical_snapshot
                    )))
                } else {
                    Ok(())
                }
            }
            Op::Compact { .. } => Ok(()),
        };
        if let Err(error) = checked {
            return Err((done, error));
        }
        match &op {
            Op::Append(entries) => {
                if let Some(last) = entries.last() {
                    state.logical_last = last.index;
                }
            }
            Op::TruncateAfter(index) => state.logical_last = state.logical_last.min(*index),
            Op::Compact { index, .. } => {
                if *index > state.logical_snapshot {
                    state.logical_snapshot = *index;
                    state.logical_last = state.logical_last.max(*index);
                }
            }
        }
        // A blocking caller leads or waits by itself; only a callback needs the driver.
        let wake_driver = matches!(done, Done::Callback(_)) && !state.leading;
        state.queue.push_back(Request { op, done });
        if wake_driver {
            self.state_changed.notify_all();
        }
        Ok(())
    }

    fn validate_append(&self, state: &State, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= state.logical_snapshot || first.index > state.logical_last + 1 {
            return Err(Error::Invalid(format!(
                "append at {} does not follow the log (snapshot index {}, last index {})",
                first.index, state.logical_snapshot, state.logical_last
            )));
        }
        let limit = format::MAX_PAYLOAD_BYTES - 64;
        for (position, entry) in entries.iter().enumerate() {
            if position > 0 && entry.index != entries[position - 1].index + 1 {
                return Err(Error::Invalid(format!(
                    "append is not contiguous: {} follows {}",
                    entry.index,
                    entries[position - 1].index
                )));
            }
            if entry.data.len() > limit {
                return Err(Error::Invalid(format!(
                    "entry {} carries {} bytes, above the limit of {limit}",
                    entry.index,
                    entry.data.len()
                )));
            }
        }
        Ok(())
    }

    /// Takes one round of requests, performs them as leader and completes them. Called with
    /// the state lock held and `leading` false; returns with it held again.
    fn lead<'a>(&'a self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        debug_assert!(!state.leading);
        state.leading = true;
        let mut taken = Vec::new();
        let mut bytes = 0usize;
        while let Some(request) = state.queue.front() {
            let cost = match &request.op {
                Op::Append(entries) => entries.iter().map(Entry::size_hint).sum(),
                _ => 0,
            };
            if !taken.is_empty() && bytes + cost > self.options.max_batch_bytes {
                break;
            }
            bytes += cost;
            if let Some(request) = state.queue.pop_front() {
                taken.push(request);
            }
        }
        drop(state);

        let results = {
            let mut writer = lock(&self.writer);
            self.process(&mut writer, taken)
        };
        self.counters.write_rounds.fetch_add(1, Ordering::Relaxed);
        let mut callbacks = Vec::new();
        for (done, result) in results {
            match done {
                Done::Waiter(waiter) => *lock(&waiter.result) = Some(result),
                Done::Callback(callback) => callbacks.push((callback, result)),
            }
        }
        let mut state = lock(&self.state);
        state.leading = false;
        // Wake sleepers only when someone sleeps or work is left (the driver then leads it):
        // the lone blocking appender pays no wake-up per append.
        if state.waiting > 0 || !state.queue.is_empty() {
            self.state_changed.notify_all();
        }
        drop(state);
        for (callback, result) in callbacks {
            callback(result);
        }
        lock(&self.state)
    }

    /// Leads rounds for requests made with [`Wal::submit`] when no blocking caller does.
    fn run_async_driver(&self) {
        let mut state = lock(&self.state);
        loop {
            if !state.leading && !state.queue.is_empty() {
                state = self.lead(state);
                continue;
            }
            if state.shutdown && state.queue.is_empty() && !state.leading {
                return;
            }
            state = self
                .state_changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Performs a round of requests in order: appends batched into one write and one sync.
    fn process(&self, writer: &mut Writer, requests: Vec<Request>) -> Vec<(Done, Result<()>)> {
        let mut completed = Vec::with_capacity(requests.len());
        let mut batch: Vec<Done> = Vec::new();
        for Request { op, done } in requests {
            if self.poisoned.load(Ordering::Acquire) {
                completed.push((done, Err(Error::Poisoned)));
                continue;
            }
            let result = match op {
                Op::Append(entries) => {
                    match self.encode_appends(writer, &entries, &mut batch, &mut completed) {
                        Ok(()) => {
                            batch.push(done);
                            continue;
                        }
                        Err(error) => Err(error),
                    }
                }
                Op::TruncateAfter(index) => self
                    .flush_batch(writer, &mut batch, &mut completed)
                    .and_then(|()| self.truncate_after(writer, index)),
                Op::Compact { index, term } => self
                    .flush_batch(writer, &mut batch, &mut completed)
                    .and_then(|()| self.compact(writer, index, term)),
            };
            if let Err(error) = &result {
                // Any failure mid-round leaves the buffer or the files in an unknown state.
                self.poison(error);
                for earlier in batch.drain(..) {
                    completed.push((earlier, Err(duplicate_error(error))));
                }
            }
            completed.push((done, result));
        }
        // A failed flush completes the batch with its error inside flush_batch.
        let _ = self.flush_batch(writer, &mut batch, &mut completed);
        completed
    }

    /// Writes and syncs what is buffered, then completes `batch` (with the error on failure).
    fn flush_batch(
        &self,
        writer: &mut Writer,
        batch: &mut Vec<Done>,
        completed: &mut Vec<(Done, Result<()>)>,
    ) -> Result<()> {
        match self.flush(writer) {
            Ok(()) => {
                completed.extend(batch.drain(..).map(|done| (done, Ok(()))));
                Ok(())
            }
            Err(error) => {
                self.poison(&error);
                for done in batch.drain(..) {
                    completed.push((done, Err(duplicate_error(&error))));
                }
                Err(error)
            }
        }
    }

    /// Encodes one append request's entries into the buffer, truncating a conflicting suffix
    /// first and rolling segments as they fill.
    fn encode_appends(
        &self,
        writer: &mut Writer,
        entries: &[Entry],
        batch: &mut Vec<Done>,
        completed: &mut Vec<(Done, Result<()>)>,
    ) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index < writer.next_index {
            self.flush_batch(writer, batch, completed)?;
            self.truncate_after(writer, first.index - 1)?;
        }
        if first.index != writer.next_index {
            return Err(Error::Invalid(format!(
                "append at {} does not follow the log's next index {}",
                first.index, writer.next_index
            )));
        }
        let segment_bytes = self.options.segment_bytes;
        for entry in entries {
            debug_assert_eq!(entry.index, writer.next_index);
            let start = writer.buf.len();
            let frame_len =
                encode_entry(&mut writer.buf, writer.active.seed, entry).map_err(Error::Invalid)?;
            let offset = writer.active.write_end + start as u64;
            let segment_has_entries = offset > HEADER_BYTES as u64;
            if offset + frame_len as u64 > segment_bytes && segment_has_entries {
                // Does not fit: seal this segment and re-encode with the next one's seed.
                writer.buf.truncate(start);
                self.flush(writer)?;
                self.roll(writer, entry.index)?;
                let frame_len = encode_entry(&mut writer.buf, writer.active.seed, entry)
                    .map_err(Error::Invalid)?;
                self.push_pending(writer, entry, 0, frame_len);
            } else {
                self.push_pending(writer, entry, start, frame_len);
            }
        }
        Ok(())
    }

    fn push_pending(&self, writer: &mut Writer, entry: &Entry, start: usize, frame_len: usize) {
        let offset = writer.active.write_end + start as u64;
        debug_assert_eq!(offset % 8, 0);
        debug_assert!(offset + frame_len as u64 <= u64::from(u32::MAX));
        writer.pending.push((
            entry.index,
            entry.term,
            Loc {
                offset: offset as u32,
                len: frame_len as u32,
            },
        ));
        writer.next_index = entry.index + 1;
    }

    /// Writes the buffer at the active segment's end with one write and one fdatasync, then
    /// publishes the pending entries to readers.
    fn flush(&self, writer: &mut Writer) -> Result<()> {
        if writer.buf.is_empty() {
            debug_assert!(writer.pending.is_empty());
            return Ok(());
        }
        let active = &writer.active;
        if self.fail_next_write.swap(false, Ordering::AcqRel) {
            return Err(Error::Io {
                path: active.path.clone(),
                source: std::io::Error::other("injected write failure"),
            });
        }
        active
            .file
            .write_all_at(&writer.buf, active.write_end)
            .map_err(io_error(&active.path))?;
        active.file.sync_data().map_err(io_error(&active.path))?;
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_written
            .fetch_add(writer.buf.len() as u64, Ordering::Relaxed);
        self.counters
            .entries_appended
            .fetch_add(writer.pending.len() as u64, Ordering::Relaxed);
        let write_end = active.write_end + writer.buf.len() as u64;
        writer.active.write_end = write_end;
        writer.buf.clear();
        let mut state = lock(&self.state);
        let State {
            segments, terms, ..
        } = &mut *state;
        let Some(segment) = segments.back_mut() else {
            return Err(Error::Invalid("no active segment".into()));
        };
        debug_assert_eq!(segment.first_index, writer.active.first_index);
        for (index, term, loc) in writer.pending.drain(..) {
            debug_assert_eq!(index, segment.next_index());
            terms.push(index, term);
            segment.locs.push(loc);
        }
        segment.write_end = write_end;
        segment.file_len = segment.file_len.max(write_end);
        Ok(())
    }

    /// Seals the active segment (already flushed) and starts a new one at `first_index`.
    fn roll(&self, writer: &mut Writer, first_index: u64) -> Result<()> {
        debug_assert!(writer.buf.is_empty());
        let spare = {
            let mut spare = lock(&self.spare);
            let ready = spare.ready.take();
            if self.options.preallocate_in_background {
                spare.wanted = true;
                self.spare_changed.notify_all();
            }
            ready
        };
        if spare.is_none() {
            self.counters.spare_misses.fetch_add(1, Ordering::Relaxed);
        }
        // A segment left without live entries by a truncation is replaced under its name.
        let replace = writer.active.first_index == first_index;
        debug_assert!(!replace || writer.next_index == first_index);
        let (segment, syncs) = create_segment(&self.options, first_index, spare, replace)?;
        self.counters.syncs.fetch_add(syncs, Ordering::Relaxed);
        self.counters.segment_rolls.fetch_add(1, Ordering::Relaxed);
        writer.active = Active {
            first_index,
            path: segment.path.clone(),
            file: Arc::clone(&segment.file),
            seed: segment.seed,
            write_end: segment.write_end,
        };
        writer.next_index = first_index;
        let mut state = lock(&self.state);
        if replace {
            state.segments.pop_back();
        }
        state.segments.push_back(segment);
        drop(state);
        tracing::debug!(first_index, "wal segment rolled");
        Ok(())
    }

    /// Discards every entry after `index`, durably (see the module docs of [`crate::wal`]):
    /// whole segments after it are unlinked from the last one back, then a truncation marker
    /// is written and synced in the segment that now ends the log.
    fn truncate_after(&self, writer: &mut Writer, index: u64) -> Result<()> {
        debug_assert!(writer.buf.is_empty() && writer.pending.is_empty());
        if index + 1 >= writer.next_index {
            return Ok(());
        }
        loop {
            let doomed = {
                let mut state = lock(&self.state);
                if index < state.snapshot_index {
                    return Err(Error::Invalid(format!(
                        "truncate after {index} is below the snapshot index {}",
                        state.snapshot_index
                    )));
                }
                match state.segments.back() {
                    Some(last) if state.segments.len() > 1 && last.first_index > index => {
                        state.segments.pop_back()
                    }
                    _ => None,
                }
            };
            let Some(doomed) = doomed else { break };
            std::fs::remove_file(&doomed.path).map_err(io_error(&doomed.path))?;
            sync_dir(&self.options.dir)?;
            tracing::debug!(segment = %doomed.path.display(), "wal segment removed by truncation");
        }
        let needs_marker = {
            let state = lock(&self.state);
            let Some(last) = state.segments.back() else {
                return Err(Error::Invalid("no segment left".into()));
            };
            if last.first_index != writer.active.first_index {
                writer.active = Active {
                    first_index: last.first_index,
                    path: last.path.clone(),
                    file: Arc::clone(&last.file),
                    seed: last.seed,
                    write_end: last.write_end,
                };
            }
            last.next_index() > index + 1
        };
        if needs_marker {
            encode_marker(&mut writer.buf, writer.active.seed, index);
            self.flush(writer)?;
            let mut state = lock(&self.state);
            if let Some(last) = state.segments.back_mut() {
                let keep = (index + 1 - last.first_index) as usize;
                last.locs.truncate(keep);
            }
        }
        lock(&self.state).terms.truncate_after(index);
        writer.next_index = index + 1;
        debug_assert_eq!(writer.next_index - 1, lock(&self.state).last_index());
        Ok(())
    }

    fn snapshot_index(&self) -> u64 {
        lock(&self.state).snapshot_index
    }

    /// Records the snapshot point durably, then deletes the segments it covers wholly.
    fn compact(&self, writer: &mut Writer, index: u64, term: u64) -> Result<()> {
        debug_assert!(writer.buf.is_empty() && writer.pending.is_empty());
        if index <= self.snapshot_index() {
            return Ok(());
        }
        {
            let mut meta = lock(&self.meta);
            let next = Meta {
                snapshot_index: index,
                snapshot_term: term,
                ..meta.meta()
            };
            meta.save(&next)?;
        }
        {
            let mut state = lock(&self.state);
            state.snapshot_index = index;
            state.snapshot_term = term;
        }
        let mut doomed = Vec::new();
        if index + 1 >= writer.next_index {
            // The snapshot covers the whole log: it continues at index + 1 in a fresh segment.
            let empty_at_next = writer.active.first_index == index + 1
                && writer.next_index == writer.active.first_index;
            if !empty_at_next {
                self.roll(writer, index + 1)?;
            }
            let mut state = lock(&self.state);
            while state.segments.len() > 1 {
                if let Some(segment) = state.segments.pop_front() {
                    doomed.push(segment.path);
                }
            }
            state.terms.clear();
            writer.next_index = index + 1;
        } else {
            let mut state = lock(&self.state);
            while state.segments.len() > 1 && state.segments[1].first_index <= index + 1 {
                if let Some(segment) = state.segments.pop_front() {
                    doomed.push(segment.path);
                }
            }
            state.terms.drop_before(index + 1);
        }
        for path in &doomed {
            std::fs::remove_file(path).map_err(io_error(path))?;
        }
        if !doomed.is_empty() {
            sync_dir(&self.options.dir)?;
            tracing::debug!(
                segments = doomed.len(),
                index,
                "wal segments removed by compaction"
            );
        }
        Ok(())
    }

    /// Keeps one zero-filled spare segment ready.
    fn run_preparer(&self) {
        loop {
            {
                let mut spare = lock(&self.spare);
                while !(spare.shutdown || spare.wanted && spare.ready.is_none()) {
                    spare = self
                        .spare_changed
                        .wait(spare)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if spare.shutdown {
                    return;
                }
                spare.wanted = false;
            }
            match prepare_spare(&self.options) {
                Ok(path) => {
                    let mut spare = lock(&self.spare);
                    if spare.ready.is_none() {
                        spare.ready = Some(path);
                    } else {
                        let _ = std::fs::remove_file(&path);
                    }
                    self.spare_changed.notify_all();
                }
                Err(error) => {
                    tracing::warn!(error = %error, "cannot prepare a spare wal segment");
                    // Rolls fall back to creating segments on the append path; waiters of
                    // wait_until_preallocated must not hang.
                    let mut spare = lock(&self.spare);
                    spare.shutdown = true;
                    self.spare_changed.notify_all();
                    return;
                }
            }
        }
    }

    fn entries(&self, lo: u64, hi: u64, max_bytes: usize) -> Result<Vec<Entry>> {
        struct Chunk {
            path: PathBuf,
            file: Arc<File>,
            seed: u32,
            first_wanted: u64,
            locs: Vec<Loc>,
        }
        let mut chunks = Vec::new();
        {
            let state = lock(&self.state);
            let first = state.snapshot_index + 1;
            let last = state.last_index();
            if lo < first {
                return Err(Error::Compacted { index: lo, first });
            }
            if lo > hi || hi > last + 1 {
                return Err(Error::Invalid(format!(
                    "entries {lo}..{hi} outside the log (last index {last})"
                )));
            }
            if lo == hi {
                return Ok(Vec::new());
            }
            // Frame lengths bound the bytes to read; the first entry is always taken.
            let mut budget = max_bytes;
            let mut taken = 0u64;
            'segments: for segment in &state.segments {
                let seg_lo = segment.first_index.max(lo);
                let seg_hi = segment.next_index().min(hi);
                if seg_lo >= seg_hi {
                    continue;
                }
                let from = (seg_lo - segment.first_index) as usize;
                let mut to = (seg_hi - segment.first_index) as usize;
                let mut stop = false;
                for (position, loc) in segment.locs[from..to].iter().enumerate() {
                    let cost = loc.len as usize;
                    if taken > 0 && cost > budget {
                        to = from + position;
                        stop = true;
                        break;
                    }
                    budget = budget.saturating_sub(cost);
                    taken += 1;
                }
                if to > from {
                    chunks.push(Chunk {
                        path: segment.path.clone(),
                        file: Arc::clone(&segment.file),
                        seed: segment.seed,
                        first_wanted: seg_lo,
                        locs: segment.locs[from..to].to_vec(),
                    });
                }
                if stop {
                    break 'segments;
                }
            }
        }
        let mut entries = Vec::with_capacity(chunks.iter().map(|c| c.locs.len()).sum());
        let mut buf = AlignedVec::<16>::new();
        for chunk in chunks {
            let (Some(first), Some(last)) = (chunk.locs.first(), chunk.locs.last()) else {
                continue;
            };
            let base = u64::from(first.offset);
            let end = u64::from(last.offset) + u64::from(last.len);
            buf.clear();
            buf.resize((end - base) as usize, 0);
            chunk
                .file
                .read_exact_at(&mut buf, base)
                .map_err(io_error(&chunk.path))?;
            for (position, loc) in chunk.locs.iter().enumerate() {
                let expected = chunk.first_wanted + position as u64;
                let at = (u64::from(loc.offset) - base) as usize;
                let corrupt = |reason: String| Error::Corrupt {
                    path: chunk.path.clone(),
                    offset: u64::from(loc.offset),
                    reason,
                };
                match read_frame(&buf, at, chunk.seed) {
                    FrameRead::Record(Record::Entry(archived), _)
                        if archived.index.to_native() == expected =>
                    {
                        let entry = rkyv::deserialize::<Entry, rancor::Error>(archived)
                            .map_err(|e| corrupt(format!("cannot decode entry: {e}")))?;
                        entries.push(entry);
                    }
                    FrameRead::Bad(reason) => return Err(corrupt(reason)),
                    _ => {
                        return Err(corrupt(format!(
                            "entry {expected} is not where the index says"
                        )));
                    }
                }
            }
        }
        debug_assert!(entries.len() as u64 <= hi - lo);
        debug_assert!(max_bytes < usize::MAX || entries.len() as u64 == hi - lo);
        Ok(entries)
    }
}

/// Creates the segment starting at `first_index` (from `spare` when given), writes its header,
/// syncs it, and syncs the directory. Returns the segment and the number of syncs issued.
///
/// With `replace`, an existing segment of that name (one holding no live entry) is replaced
/// atomically by the rename.
fn create_segment(
    options: &WalOptions,
    first_index: u64,
    spare: Option<PathBuf>,
    replace: bool,
) -> Result<(Segment, u64)> {
    let dir = &options.dir;
    let path = dir.join(segment_file_name(first_index));
    if path.exists() && !replace {
        return Err(Error::Invalid(format!(
            "segment {} already exists",
            path.display()
        )));
    }
    let header = SegmentHeader::new(first_index);
    let (file, temp) = match spare {
        Some(spare) => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&spare)
                .map_err(io_error(&spare))?;
            (file, spare)
        }
        None => {
            let temp = dir.join(format!(
                "{}.{:08x}.tmp",
                segment_file_name(first_index),
                format::random_u64(first_index) as u32
            ));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&temp)
                .map_err(io_error(&temp))?;
            file.set_len(options.segment_bytes)
                .map_err(io_error(&temp))?;
            (file, temp)
        }
    };
    file.write_all_at(&header.encode(), 0)
        .map_err(io_error(&temp))?;
    file.sync_all().map_err(io_error(&temp))?;
    std::fs::rename(&temp, &path).map_err(io_error(&path))?;
    sync_dir(dir)?;
    Ok((
        Segment {
            first_index,
            path,
            file: Arc::new(file),
            seed: header.seed(),
            locs: Vec::new(),
            write_end: HEADER_BYTES as u64,
            file_len: options.segment_bytes,
        },
        2,
    ))
}

/// Creates a zero-filled spare segment (written, not sparse, so later overwrites need no
/// block allocation) under a temporary name, syncs it and renames it ready.
fn prepare_spare(options: &WalOptions) -> Result<PathBuf> {
    let dir = &options.dir;
    let name = format!("{:016x}", format::random_u64(0));
    let temp = dir.join(format!("{name}{SPARE_SUFFIX}.tmp"));
    let ready = dir.join(format!("{name}{SPARE_SUFFIX}"));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(io_error(&temp))?;
    let result = write_zeros(&file, &temp, 0, options.segment_bytes)
        .and_then(|()| file.sync_all().map_err(io_error(&temp)))
        .and_then(|()| std::fs::rename(&temp, &ready).map_err(io_error(&ready)))
        .and_then(|()| sync_dir(dir));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map(|()| ready)
}

impl LogStore for Wal {
    fn snapshot_point(&self) -> (u64, u64) {
        let state = lock(&self.inner.shared.state);
        (state.snapshot_index, state.snapshot_term)
    }

    fn last_index(&self) -> u64 {
        lock(&self.inner.shared.state).last_index()
    }

    fn term(&self, index: u64) -> Result<Option<u64>> {
        let state = lock(&self.inner.shared.state);
        if index == state.snapshot_index {
            return Ok(Some(state.snapshot_term));
        }
        if index < state.snapshot_index || index > state.last_index() {
            return Ok(None);
        }
        Ok(state.terms.get(index))
    }

    fn entries(&self, lo: u64, hi: u64) -> Result<Vec<Entry>> {
        self.inner.shared.entries(lo, hi, usize::MAX)
    }

    /// Reads only the frames that fit: the budget counts on-disk frame bytes.
    fn entries_up_to(&self, lo: u64, hi: u64, max_bytes: usize) -> Result<Vec<Entry>> {
        self.inner.shared.entries(lo, hi, max_bytes)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<()> {
        self.append_batch(entries.to_vec())
    }

    fn truncate_after(&mut self, index: u64) -> Result<()> {
        self.truncate_suffix(index)
    }

    fn compact(&mut self, index: u64, term: u64) -> Result<()> {
        self.compact_prefix(index, term)
    }

    fn hard_state(&self) -> HardState {
        lock(&self.inner.shared.meta).meta().hard_state
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<()> {
        self.set_hard_state(hard_state)
    }
}
