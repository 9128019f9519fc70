//! What `shoal bench` measures: per-operation latency in an hdrhistogram (microseconds), errors
//! counted apart, completions per second of the measured window; and the summary printed as a
//! table or as SPEC §3's JSON document.
//!
//! Each client task owns a [`Recorder`] (no sharing on the hot path); they are merged once at
//! the end. Only operations that *complete* inside the measured window (after the warm-up,
//! before the end) count, so the throughput is `ops / window`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Lowest latency recorded, in microseconds.
const LOWEST_US: u64 = 1;
/// Highest latency recorded, in microseconds (longer ones saturate): one minute.
pub const HIGHEST_US: u64 = 60_000_000;
/// Significant figures of the histograms.
const SIGFIG: u8 = 3;

/// The kinds of operation a workload issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A kv put (one write through the log).
    Put,
    /// A kv get (a read at the chosen consistency).
    Get,
    /// A purchase: cart add then checkout (two writes), timed together.
    Checkout,
}

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 3] = [OpKind::Put, OpKind::Get, OpKind::Checkout];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
            OpKind::Checkout => "checkout",
        }
    }

    fn index(self) -> usize {
        match self {
            OpKind::Put => 0,
            OpKind::Get => 1,
            OpKind::Checkout => 2,
        }
    }
}

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG)
        .map_err(|e| format!("cannot make a latency histogram: {e}"))
}

/// The measured window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// When measuring starts (the end of the warm-up).
    pub start: Instant,
    /// When it ends.
    pub end: Instant,
}

impl Window {
    /// A window starting `warmup` after `now` and lasting `duration`.
    pub fn after(now: Instant, warmup: Duration, duration: Duration) -> Self {
        let start = now + warmup;
        Self {
            start,
            end: start + duration,
        }
    }

    /// Its length.
    pub fn length(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }

    /// Whole seconds (rounded up) it spans: the number of per-second buckets.
    pub fn buckets(&self) -> usize {
        let length = self.length();
        let whole = length.as_secs() as usize;
        if length.subsec_nanos() > 0 {
            whole + 1
        } else {
            whole.max(1)
        }
    }
}

/// One client task's measurements.
#[derive(Debug, Clone)]
pub struct Recorder {
    window: Window,
    kinds: [Histogram<u64>; 3],
    errors: [u64; 3],
    per_second: Vec<u64>,
}

impl Recorder {
    /// An empty recorder for `window`.
    pub fn new(window: Window) -> Result<Self, String> {
        let empty = histogram()?;
        Ok(Self {
            window,
            kinds: [empty.clone(), empty.clone(), empty],
            errors: [0; 3],
            per_second: vec![0; window.buckets()],
        })
    }

    /// Records one operation that ran from `started` to `finished`; `ok` false counts an error
    /// (its latency is not recorded). Ignored unless it finished inside the window.
    pub fn record(&mut self, kind: OpKind, started: Instant, finished: Instant, ok: bool) {
        if finished < self.window.start || finished > self.window.end {
            return;
        }
        if !ok {
            self.errors[kind.index()] += 1;
            return;
        }
        let micros = finished.saturating_duration_since(started).as_micros();
        let micros = u64::try_from(micros).unwrap_or(HIGHEST_US);
        self.kinds[kind.index()].saturating_record(micros.clamp(LOWEST_US, HIGHEST_US));
        let second = finished
            .saturating_duration_since(self.window.start)
            .as_secs() as usize;
        let last = self.per_second.len().saturating_sub(1);
        if let Some(bucket) = self.per_second.get_mut(second.min(last)) {
            *bucket += 1;
        }
    }

    /// Adds `other`'s measurements (same window) to these.
    pub fn merge(&mut self, other: &Recorder) {
        for (mine, theirs) in self.kinds.iter_mut().zip(&other.kinds) {
            // Same bounds on both sides: addition cannot fail; if it ever did, the samples
            // would be missing from the percentiles, not wrong.
            let _ = mine.add(theirs);
        }
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        for (mine, theirs) in self.per_second.iter_mut().zip(&other.per_second) {
            *mine += theirs;
        }
    }

    /// Every kind's latencies together.
    pub fn all(&self) -> Histogram<u64> {
        let [first, rest @ ..] = &self.kinds;
        let mut all = first.clone();
        for kind in rest {
            let _ = all.add(kind);
        }
        all
    }

    /// The latencies of one kind.
    pub fn kind(&self, kind: OpKind) -> &Histogram<u64> {
        &self.kinds[kind.index()]
    }

    /// Errors of one kind.
    pub fn errors(&self, kind: OpKind) -> u64 {
        self.errors[kind.index()]
    }

    /// Successful operations completed in each second of the window.
    pub fn per_second(&self) -> &[u64] {
        &self.per_second
    }
}

/// Latency figures of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Latency {
    /// The figures of `histogram` (zeros when empty).
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self {
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                mean_ms: 0.0,
                max_ms: 0.0,
            };
        }
        Self {
            p50_ms: ms(histogram.value_at_quantile(0.5)),
            p90_ms: ms(histogram.value_at_quantile(0.9)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            mean_ms: histogram.mean() / 1000.0,
            max_ms: ms(histogram.max()),
        }
    }
}

/// One kind's line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct KindSummary {
    /// The kind.
    pub kind: OpKind,
    /// Successful operations.
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// Successful operations per second of the window.
    pub throughput_ops_s: f64,
    /// Its latencies.
    pub latency: Latency,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The workload's name.
    pub workload: String,
    /// Concurrent clients.
    pub clients: u32,
    /// QUIC connections they shared.
    pub connections: u32,
    /// Value size of puts, in bytes.
    pub value_size: u32,
    /// Length of the measured window, in seconds.
    pub seconds: f64,
    /// Warm-up before it, in seconds.
    pub warmup_seconds: f64,
    /// Successful operations in the window.
    pub ops: u64,
    /// Failed operations in the window.
    pub errors: u64,
    /// `ops / seconds`.
    pub throughput_ops_s: f64,
    /// Every kind's latencies together.
    pub latency: Latency,
    /// Per kind (only kinds the workload issued).
    pub kinds: Vec<KindSummary>,
    /// Successful operations completed in each second of the window.
    pub per_second: Vec<u64>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

/// What the run was, for [`Summary::new`].
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The workload's name.
    pub workload: String,
    /// Concurrent clients.
    pub clients: u32,
    /// QUIC connections.
    pub connections: u32,
    /// Value size of puts.
    pub value_size: u32,
    /// The warm-up.
    pub warmup: Duration,
    /// The kinds the workload issues.
    pub kinds: Vec<OpKind>,
}

impl Summary {
    /// Summarizes the merged recorder of a run.
    pub fn new(
        info: &RunInfo,
        window: &Window,
        recorder: &Recorder,
        first_error: Option<String>,
    ) -> Self {
        let seconds = window.length().as_secs_f64();
        let per_s = |ops: u64| {
            if seconds > 0.0 {
                ops as f64 / seconds
            } else {
                0.0
            }
        };
        let all = recorder.all();
        let kinds: Vec<KindSummary> = OpKind::ALL
            .into_iter()
            .filter(|k| info.kinds.contains(k))
            .map(|kind| {
                let histogram = recorder.kind(kind);
                KindSummary {
                    kind,
                    ops: histogram.len(),
                    errors: recorder.errors(kind),
                    throughput_ops_s: per_s(histogram.len()),
                    latency: Latency::of(histogram),
                }
            })
            .collect();
        let errors = OpKind::ALL.iter().map(|k| recorder.errors(*k)).sum();
        Self {
            workload: info.workload.clone(),
            clients: info.clients,
            connections: info.connections,
            value_size: info.value_size,
            seconds,
            warmup_seconds: info.warmup.as_secs_f64(),
            ops: all.len(),
            errors,
            throughput_ops_s: per_s(all.len()),
            latency: Latency::of(&all),
            kinds,
            per_second: recorder.per_second().to_vec(),
            first_error,
        }
    }

    /// The `--json` document: SPEC §3's fields (`workload`, `clients`, `seconds`, `ops`,
    /// `errors`, `throughput_ops_s`, `p50_ms`, `p99_ms`, `p999_ms`) and more.
    pub fn to_json(&self) -> Value {
        let kinds: serde_json::Map<String, Value> = self
            .kinds
            .iter()
            .map(|k| {
                (
                    k.kind.name().to_owned(),
                    json!({
                        "ops": k.ops,
                        "errors": k.errors,
                        "throughput_ops_s": round(k.throughput_ops_s, 1),
                        "p50_ms": round(k.latency.p50_ms, 3),
                        "p99_ms": round(k.latency.p99_ms, 3),
                        "p999_ms": round(k.latency.p999_ms, 3),
                    }),
                )
            })
            .collect();
        json!({
            "workload": self.workload,
            "clients": self.clients,
            "seconds": round(self.seconds, 3),
            "ops": self.ops,
            "errors": self.errors,
            "throughput_ops_s": round(self.throughput_ops_s, 1),
            "p50_ms": round(self.latency.p50_ms, 3),
            "p99_ms": round(self.latency.p99_ms, 3),
            "p999_ms": round(self.latency.p999_ms, 3),
            "p90_ms": round(self.latency.p90_ms, 3),
            "mean_ms": round(self.latency.mean_ms, 3),
            "max_ms": round(self.latency.max_ms, 3),
            "connections": self.connections,
            "value_size": self.value_size,
            "warmup_seconds": round(self.warmup_seconds, 3),
            "kinds": kinds,
            "per_second": self.per_second,
            "first_error": self.first_error,
        })
    }

    /// The human table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} clients over {} connection{}, {:.1} s measured after {:.1} s warm-up{}",
            self.clients,
            self.connections,
            if self.connections == 1 { "" } else { "s" },
            self.seconds,
            self.warmup_seconds,
            if self.kinds.iter().any(|k| k.kind == OpKind::Put) {
                format!(", {} B values", self.value_size)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "{:<10} {:>10} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9}",
            "op", "ops", "errors", "ops/s", "p50 ms", "p99 ms", "p999 ms", "max ms"
        );
        let mut row = |name: &str, ops: u64, errors: u64, throughput: f64, l: &Latency| {
            let _ = writeln!(
                out,
                "{name:<10} {ops:>10} {errors:>8} {throughput:>12.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        };
        if self.kinds.len() > 1 {
            for k in &self.kinds {
                row(
                    k.kind.name(),
                    k.ops,
                    k.errors,
                    k.throughput_ops_s,
                    &k.latency,
                );
            }
        }
        row(
            if self.kinds.len() > 1 {
                "all"
            } else {
                &self.workload
            },
            self.ops,
            self.errors,
            self.throughput_ops_s,
            &self.latency,
        );
        if let Some(error) = &self.first_error {
            let _ = writeln!(out, "first error: {error}");
        }
        out.trim_end().to_owned()
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(seconds: u64) -> (Instant, Window) {
        let now = Instant::now();
        (
            now,
            Window::after(now, Duration::from_secs(1), Duration::from_secs(seconds)),
        )
    }

    #[test]
    fn only_operations_finishing_inside_the_window_count() {
        let (t0, w) = window(2);
        let mut r = Recorder::new(w).unwrap();
        let ms = Duration::from_millis;
        // During the warm-up: ignored.
        r.record(OpKind::Put, t0, t0 + ms(500), true);
        r.record(OpKind::Put, t0, t0 + ms(600), false);
        // Inside: counted, latency from start to finish even if it started in the warm-up.
        r.record(OpKind::Put, t0 + ms(900), t0 + ms(1100), true);
        r.record(OpKind::Put, t0 + ms(2000), t0 + ms(2002), true);
        r.record(OpKind::Get, t0 + ms(2000), t0 + ms(2001), false);
        // After the end: ignored.
        r.record(OpKind::Put, t0 + ms(2900), t0 + ms(3100), true);
        assert_eq!(r.kind(OpKind::Put).len(), 2);
        assert_eq!(r.errors(OpKind::Put), 0);
        assert_eq!(r.errors(OpKind::Get), 1);
        assert_eq!(r.per_second(), &[1, 1]);
        assert_eq!(r.kind(OpKind::Put).max() / 1000, 200);
    }

    #[test]
    fn merging_adds_everything() {
        let (t0, w) = window(3);
        let mut a = Recorder::new(w).unwrap();
        let mut b = Recorder::new(w).unwrap();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for i in 0..100 {
            a.record(OpKind::Put, at(1500), at(1500 + i), true);
            b.record(OpKind::Checkout, at(2500), at(2510 + i), true);
        }
        b.record(OpKind::Checkout, at(2500), at(2600), false);
        a.merge(&b);
        assert_eq!(a.all().len(), 200);
        assert_eq!(a.per_second(), &[100, 100, 0]);
        assert_eq!(a.errors(OpKind::Checkout), 1);
    }

    #[test]
    fn the_summary_has_the_spec_fields_and_sane_figures() {
        let (t0, w) = window(2);
        let mut r = Recorder::new(w).unwrap();
        // 1000 operations of 1 ms..1000 ms → p50 ≈ 500 ms, p99 ≈ 990 ms.
        for i in 1..=1000u64 {
            let finished = t0 + Duration::from_millis(1000 + i);
            r.record(
                OpKind::Put,
                finished - Duration::from_millis(i),
                finished,
                true,
            );
        }
        r.record(
            OpKind::Put,
            t0 + Duration::from_millis(1500),
            t0 + Duration::from_millis(1501),
            false,
        );
        let info = RunInfo {
            workload: "put".into(),
            clients: 4,
            connections: 1,
            value_size: 256,
            warmup: Duration::from_secs(1),
            kinds: vec![OpKind::Put],
        };
        let s = Summary::new(&info, &w, &r, Some("boom".into()));
        assert_eq!(s.ops, 1000);
        assert_eq!(s.errors, 1);
        assert!((s.throughput_ops_s - 500.0).abs() < 1e-9);
        assert!((s.latency.p50_ms - 500.0).abs() < 1.0, "{:?}", s.latency);
        assert!((s.latency.p99_ms - 990.0).abs() < 2.0, "{:?}", s.latency);
        assert!(s.latency.p50_ms <= s.latency.p99_ms && s.latency.p99_ms <= s.latency.p999_ms);
        let json = s.to_json();
        for field in [
            "workload",
            "clients",
            "seconds",
            "ops",
            "errors",
            "throughput_ops_s",
            "p50_ms",
            "p99_ms",
            "p999_ms",
        ] {
            assert!(json.get(field).is_some(), "missing {field}: {json}");
        }
        assert_eq!(json["workload"], "put");
        assert_eq!(json["clients"], 4);
        assert_eq!(json["ops"], 1000);
        assert_eq!(json["per_second"].as_array().unwrap().len(), 2);
        let table = s.to_table();
        assert!(
            table.contains("put") && table.contains("first error: boom"),
            "{table}"
        );
    }

    #[test]
    fn an_empty_run_reports_zeros() {
        let (_, w) = window(1);
        let r = Recorder::new(w).unwrap();
        let info = RunInfo {
            workload: "get".into(),
            clients: 1,
            connections: 1,
            value_size: 256,
            warmup: Duration::ZERO,
            kinds: vec![OpKind::Get],
        };
        let s = Summary::new(&info, &w, &r, None);
        assert_eq!((s.ops, s.errors), (0, 0));
        assert_eq!(s.latency.p99_ms, 0.0);
        assert_eq!(w.buckets(), 1);
    }

    #[test]
    fn huge_latencies_saturate() {
        let (t0, w) = window(1);
        let mut r = Recorder::new(Window {
            start: w.start,
            end: w.start + Duration::from_secs(3600),
        })
        .unwrap();
        r.record(OpKind::Get, t0, t0 + Duration::from_secs(3000), true);
        assert!(r.kind(OpKind::Get).max() <= HIGHEST_US * 2);
    }
}
