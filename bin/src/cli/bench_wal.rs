//! `shoal bench wal`: the WAL's durable append throughput against this disk's raw limit,
//! measured in the same run.
//!
//! The raw baseline writes the same payload bytes (`--record-bytes` × `--batch` per write) to
//! a preallocated, zero-filled file with one `write` and one `fdatasync` per batch: what any
//! log could at best do on this disk. The WAL run appends `--records` entries of
//! `--record-bytes` in batches of `--batch` through [`Wal::append_batch`] (one durable group
//! commit per batch). With `--keep` the log stays in `DIR/wal`, laid out as in a node's data
//! directory, so `shoal wal dump/check --data-dir DIR` read it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use shoal_wal::{Entry, EntryKind, LogStore, Wal, WalOptions};

use super::output::Output;
use super::{CliError, CliResult, GlobalArgs};

/// Largest batch (`--batch` × `--record-bytes`) accepted, in bytes.
pub const MAX_BATCH_BYTES: u64 = 1 << 30;

/// Arguments of `shoal bench wal`.
#[derive(Debug, Clone, Args)]
pub struct BenchWalArgs {
    /// Directory to run in (created when missing; its `wal/` must not hold a log).
    #[arg(long)]
    pub dir: PathBuf,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    pub record_bytes: u64,
    /// Records per durable batch (one write and one fdatasync each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch: u64,
    /// Records to append in total.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub records: u64,
    /// Segment size of the WAL, in bytes.
    #[arg(long, default_value_t = shoal_wal::wal::DEFAULT_SEGMENT_BYTES)]
    pub segment_bytes: u64,
    /// Leave the log in DIR/wal (for `shoal wal dump/check --data-dir DIR`).
    #[arg(long)]
    pub keep: bool,
}

/// One side of the comparison.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Records per second.
    pub records_s: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_s: f64,
}

impl Throughput {
    fn new(records: u64, record_bytes: u64, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Self {
            records_s: records as f64 / seconds,
            mb_s: (records * record_bytes) as f64 / seconds / 1e6,
        }
    }
}

/// Runs the benchmark and prints the result.
pub fn run(global: &GlobalArgs, args: &BenchWalArgs) -> CliResult {
    let wal_dir = args.dir.join(shoal_wal::WAL_DIR_NAME);
    if wal_dir.exists() {
        let holds_log = std::fs::read_dir(&wal_dir)
            .map_err(|e| CliError::io(format!("cannot list {}: {e}", wal_dir.display())))?
            .next()
            .is_some();
        if holds_log {
            return Err(CliError::conflict(format!(
                "{} already holds a log; point --dir at an empty or new directory",
                wal_dir.display()
            )));
        }
    }
    if args.batch * args.record_bytes > MAX_BATCH_BYTES {
        return Err(CliError::invalid(format!(
            "--batch {} × --record-bytes {} is above the {MAX_BATCH_BYTES}-byte limit of one batch",
            args.batch, args.record_bytes
        )));
    }
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| CliError::io(format!("cannot create {}: {e}", args.dir.display())))?;
    if !global.json {
        let _ = writeln!(
            std::io::stderr(),
            "bench wal: {} records of {} B in batches of {} in {}",
            args.records,
            args.record_bytes,
            args.batch,
            args.dir.display()
        );
    }
    let measured = measure(&args.dir, &wal_dir, args);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&wal_dir);
    }
    let (wal, raw) = measured?;
    let ratio = wal.records_s / raw.records_s;
    let mut out = Output::new();
    if global.json {
        out.line(format_args!(
            "{}",
            json!({
                "records": args.records,
                "record_bytes": args.record_bytes,
                "batch": args.batch,
                "wal_records_s": round(wal.records_s),
                "wal_mb_s": round(wal.mb_s),
                "raw_records_s": round(raw.records_s),
                "raw_mb_s": round(raw.mb_s),
                "ratio": (ratio * 1000.0).round() / 1000.0,
            })
        ));
    } else {
        out.line(format_args!(
            "wal: {:>12.0} records/s {:>9.2} MB/s",
            wal.records_s, wal.mb_s
        ));
        out.line(format_args!(
            "raw: {:>12.0} records/s {:>9.2} MB/s  (same bytes, one write + fdatasync per batch, preallocated file)",
            raw.records_s, raw.mb_s
        ));
        out.line(format_args!("ratio (wal/raw): {ratio:.3}"));
        if args.keep {
            out.line(format_args!("log kept in {}", wal_dir.display()));
        }
    }
    out.finish()
}

/// Runs the raw baseline and the WAL interleaved in rounds (alternating which goes first), so
/// that other load on a shared disk weighs on both alike.
fn measure(dir: &Path, wal_dir: &Path, args: &BenchWalArgs) -> CliResult<(Throughput, Throughput)> {
    let all: Vec<u64> = batches(args).collect();
    let rounds = all.len().clamp(1, 10);
    let per_round = all.len().div_ceil(rounds);
    let mut raw = RawBaseline::new(dir, args)?;
    let result = (|| {
        let mut options = WalOptions::new(wal_dir);
        options.segment_bytes = args.segment_bytes;
        options.validate()?;
        let wal = Wal::open(options)?;
        wal.wait_until_preallocated();
        let payload = vec![0x5au8; args.record_bytes as usize];
        let mut next = wal.last_index() + 1;
        let (mut wal_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
        for (round, chunk) in all.chunks(per_round).enumerate() {
            let raw_first = round % 2 == 0;
            if raw_first {
                raw_time += raw.run(chunk)?;
            }
            for &batch in chunk {
                let entries: Vec<Entry> = (next..next + batch)
                    .map(|index| Entry {
                        index,
                        term: 1,
                        kind: EntryKind::Normal,
                        data: payload.clone(),
                    })
                    .collect();
                let start = Instant::now();
                wal.append_batch(entries)?;
                wal_time += start.elapsed();
                next += batch;
            }
            if !raw_first {
                raw_time += raw.run(chunk)?;
            }
        }
        let stats = wal.stats();
        tracing::info!(
            syncs = stats.syncs,
            rolls = stats.segment_rolls,
            spare_misses = stats.spare_misses,
            "wal bench done"
        );
        Ok((
            Throughput::new(args.records, args.record_bytes, wal_time),
            Throughput::new(args.records, args.record_bytes, raw_time),
        ))
    })();
    raw.remove();
    result
}

/// Plain writes of the same payload bytes to a zero-filled file, one fdatasync per batch.
struct RawBaseline {
    path: PathBuf,
    file: std::fs::File,
    buffer: Vec<u8>,
    record_bytes: u64,
    offset: u64,
    /// Size of the preallocated ring.
    len: u64,
}

impl RawBaseline {
    fn new(dir: &Path, args: &BenchWalArgs) -> CliResult<Self> {
        let path = dir.join("raw-baseline.tmp");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| CliError::io(format!("raw baseline on {}: {e}", path.display())))?;
        let mut baseline = Self {
            buffer: vec![0x5au8; (args.batch * args.record_bytes) as usize],
            path,
            file,
            record_bytes: args.record_bytes,
            offset: 0,
            len: 0,
        };
        // Preallocate with real zeros, as the WAL's segments are: a ring of at most 256 MiB
        // (or one batch), rewritten from the start when full.
        let total = (args.records * args.record_bytes)
            .min((256 << 20u64).max(args.batch * args.record_bytes));
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0;
        while written < total {
            let n = (total - written).min(chunk.len() as u64) as usize;
            baseline
                .file
                .write_all_at(&chunk[..n], written)
                .map_err(|e| baseline.error(e))?;
            written += n as u64;
        }
        baseline.file.sync_all().map_err(|e| baseline.error(e))?;
        baseline.len = total;
        Ok(baseline)
    }

    fn error(&self, error: std::io::Error) -> CliError {
        CliError::io(format!("raw baseline on {}: {error}", self.path.display()))
    }

    /// Writes and syncs `batches`; returns the time taken.
    fn run(&mut self, batches: &[u64]) -> CliResult<Duration> {
        let start = Instant::now();
        for &batch in batches {
            let bytes = &self.buffer[..(batch * self.record_bytes) as usize];
            if self.offset + bytes.len() as u64 > self.len {
                self.offset = 0;
            }
            self.file
                .write_all_at(bytes, self.offset)
                .map_err(|e| self.error(e))?;
            self.file.sync_data().map_err(|e| self.error(e))?;
            self.offset += bytes.len() as u64;
        }
        Ok(start.elapsed())
    }

    fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn batches(args: &BenchWalArgs) -> impl Iterator<Item = u64> + '_ {
    let full = args.records / args.batch;
    let rest = args.records % args.batch;
    std::iter::repeat_n(args.batch, full as usize).chain((rest > 0).then_some(rest))
}
