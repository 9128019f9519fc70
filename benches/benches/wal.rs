//! WAL benchmarks.
//!
//! - `wal_append/{wal,raw}/{100B,4KiB}/batch{1,16,256}`: durable appends (one write and one
//!   fdatasync per batch) through [`Wal::append_batch`], beside the raw baseline measured in
//!   the same run: the same payload bytes written to a preallocated, zero-filled file with one
//!   `write` + `fdatasync` per batch. Throughput is in records.
//! - `wal_recovery/open/{size}`: [`Wal::open`] of a log of 64 MiB (and of 1 GiB with
//!   `SHOAL_BENCH_BIG=1`), page cache warm. `SHOAL_BENCH_RECOVERY_RECORD_BYTES` sets the
//!   record size of that log (default 1024).
//!
//! Runs in a temporary directory under `SHOAL_BENCH_DIR` (default: the system temp dir, which
//! should be on the disk you want to measure).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shoal_wal::{Entry, EntryKind, LogStore, Wal, WalOptions};

fn bench_root() -> tempfile::TempDir {
    match std::env::var_os("SHOAL_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(PathBuf::from(dir)),
        None => tempfile::tempdir(),
    }
    .unwrap_or_else(|e| panic!("cannot create a benchmark directory: {e}"))
}

fn entries(first: u64, count: u64, record_bytes: usize) -> Vec<Entry> {
    (first..first + count)
        .map(|index| Entry {
            index,
            term: 1,
            kind: EntryKind::Normal,
            data: vec![0x5a; record_bytes],
        })
        .collect()
}

/// A zero-filled file overwritten in a ring, one fdatasync per batch.
struct Raw {
    file: File,
    len: u64,
    offset: u64,
    buffer: Vec<u8>,
}

impl Raw {
    fn new(dir: &std::path::Path, len: u64, max_batch_bytes: usize) -> Raw {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("raw-baseline"))
            .unwrap_or_else(|e| panic!("raw baseline file: {e}"));
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < len {
            file.write_all_at(&zeros, at)
                .unwrap_or_else(|e| panic!("preallocating the raw baseline: {e}"));
            at += zeros.len() as u64;
        }
        file.sync_all()
            .unwrap_or_else(|e| panic!("syncing the raw baseline: {e}"));
        Raw {
            file,
            len,
            offset: 0,
            buffer: vec![0x5a; max_batch_bytes],
        }
    }

    fn write_batch(&mut self, bytes: usize) {
        if self.offset + bytes as u64 > self.len {
            self.offset = 0;
        }
        self.file
            .write_all_at(&self.buffer[..bytes], self.offset)
            .unwrap_or_else(|e| panic!("raw write: {e}"));
        self.file
            .sync_data()
            .unwrap_or_else(|e| panic!("raw fdatasync: {e}"));
        self.offset += bytes as u64;
    }
}

fn append(c: &mut Criterion) {
    let root = bench_root();
    // Everything is set up lazily inside the routines, so a filter that skips a benchmark
    // also skips its setup (a zero-filled file or log of tens of MiB each).
    let mut raw: Option<Raw> = None;
    let mut group = c.benchmark_group("wal_append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (label, record_bytes) in [("100B", 100usize), ("4KiB", 4096)] {
        for batch in [1u64, 16, 256] {
            group.throughput(Throughput::Elements(batch));
            let name = format!("{label}/batch{batch}");
            let wal_dir = root.path().join(format!("wal-{label}-{batch}"));
            let mut wal: Option<Wal> = None;
            // Besides criterion's own raw run below, each WAL batch is followed by one raw
            // batch, so the printed ratio compares the two under the same disk conditions.
            let (mut wal_total, mut raw_total, mut batches) =
                (Duration::ZERO, Duration::ZERO, 0u64);
            group.bench_function(BenchmarkId::new("wal", &name), |b| {
                let wal = wal.get_or_insert_with(|| {
                    let wal = Wal::open(WalOptions::new(&wal_dir))
                        .unwrap_or_else(|e| panic!("opening the wal: {e}"));
                    wal.wait_until_preallocated();
                    wal
                });
                let raw = raw.get_or_insert_with(|| Raw::new(root.path(), 64 << 20, 256 * 4096));
                b.iter_custom(|iters| {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iters {
                        let batch_entries = entries(wal.last_index() + 1, batch, record_bytes);
                        let start = Instant::now();
                        wal.append_batch(batch_entries)
                            .unwrap_or_else(|e| panic!("append: {e}"));
                        elapsed += start.elapsed();
                        let start = Instant::now();
                        raw.write_batch(batch as usize * record_bytes);
                        raw_total += start.elapsed();
                    }
                    wal_total += elapsed;
                    batches += iters;
                    elapsed
                });
            });
            group.bench_function(BenchmarkId::new("raw", &name), |b| {
                let raw = raw.get_or_insert_with(|| Raw::new(root.path(), 64 << 20, 256 * 4096));
                b.iter(|| raw.write_batch(batch as usize * record_bytes));
            });
            if let Some(wal) = wal.take() {
                let records = (batches * batch) as f64;
                let wal_rate = records / wal_total.as_secs_f64().max(1e-9);
                let raw_rate = records / raw_total.as_secs_f64().max(1e-9);
                let stats = wal.stats();
                eprintln!(
                    "  {name} interleaved: wal {wal_rate:.0} records/s ({:.2} MB/s), raw {raw_rate:.0} records/s ({:.2} MB/s), ratio {:.3}; {} entries in {} syncs, {} rolls, {} spare misses",
                    wal_rate * record_bytes as f64 / 1e6,
                    raw_rate * record_bytes as f64 / 1e6,
                    wal_rate / raw_rate,
                    stats.entries_appended,
                    stats.syncs,
                    stats.segment_rolls,
                    stats.spare_misses
                );
                drop(wal);
                let _ = std::fs::remove_dir_all(&wal_dir);
            }
        }
    }
    group.finish();
}

fn recovery(c: &mut Criterion) {
    let root = bench_root();
    let record_bytes: usize = std::env::var("SHOAL_BENCH_RECOVERY_RECORD_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mut sizes = vec![("64MiB", 64u64 << 20)];
    if std::env::var_os("SHOAL_BENCH_BIG").is_some() {
        sizes.push(("1GiB", 1 << 30));
    }
    let mut group = c.benchmark_group("wal_recovery");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for (label, bytes) in sizes {
        let dir = root.path().join(label);
        let mut options = WalOptions::new(&dir);
        options.preallocate_in_background = false;
        let mut built = false;
        group.bench_function(BenchmarkId::new("open", label), |b| {
            if !built {
                build_log(&options, bytes, record_bytes, label);
                built = true;
            }
            b.iter(|| {
                let wal = Wal::open(options.clone()).unwrap_or_else(|e| panic!("open: {e}"));
                std::hint::black_box(wal.last_index());
            });
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

/// Appends about `bytes` of records of `record_bytes` (not timed).
fn build_log(options: &WalOptions, bytes: u64, record_bytes: usize, label: &str) {
    let wal = Wal::open(options.clone()).unwrap_or_else(|e| panic!("open: {e}"));
    let per_batch = ((4 << 20) / record_bytes).max(1) as u64;
    let records = bytes / (record_bytes as u64 + 40);
    let mut next = 1;
    while next <= records {
        let count = per_batch.min(records - next + 1);
        wal.append_batch(entries(next, count, record_bytes))
            .unwrap_or_else(|e| panic!("append: {e}"));
        next += count;
    }
    eprintln!(
        "  recovery log {label}: {records} records of {record_bytes} B, {} segments",
        wal.stats().segments
    );
}

criterion_group!(benches, append, recovery);
criterion_main!(benches);
