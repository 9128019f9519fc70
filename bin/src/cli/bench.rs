//! `shoal bench --workload put|get|checkout|mixed`: a load generator against a running
//! cluster (SPEC §6), found like every client command (cluster.toml or `--cluster`).
//!
//! `--clients N` tasks share `--connections` QUIC connections (one [`shoal_net::Client`]
//! each, by default one per 16 clients; concurrent requests on one client use separate
//! client-id lanes). Each task loops: pick an operation, time it, record it in its own
//! [`stats::Recorder`]. Operations that finish during `--warmup` are not counted; errors are
//! counted apart from latencies. At the end: a table (or `--json`, SPEC §3's fields) and,
//! with `--plot FILE.svg`, the latency percentile curve and the throughput of each second.
//!
//! Workloads (an *op* is what one latency sample times):
//! - `put`: one kv put, a random 16-byte key of `--keys`, a `--value-size` value;
//! - `get`: one kv get at `--consistency` (linearizable by default) of a key pre-loaded
//!   before the run;
//! - `checkout`: a cart add then a checkout (two writes); setup (outside the measurement)
//!   creates an owner, a store, [`workload::PRODUCTS`] products of maximal stock, and one
//!   logged-in customer per client (argon2 runs on the nodes, at their node.toml's cost);
//! - `mixed`: 50 % get, 40 % put, 10 % checkout.

pub mod plot;
pub mod stats;
pub mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_net::{Client, ClientOptions, ReadConsistency, RequestKind};

use super::client::{identity, targets};
use super::output::Output;
use super::{CliError, CliResult, Consistency, GlobalArgs};
use crate::api::ReadBody;
use stats::{OpKind, Recorder, RunInfo, Summary, Window};
use workload::{OpError, ShopSetup};

/// Clients one connection carries by default.
pub const CLIENTS_PER_CONNECTION: u32 = 16;
/// Most concurrent clients.
pub const MAX_CLIENTS: u32 = 4096;

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// kv puts.
    Put,
    /// kv gets (linearizable unless --consistency says otherwise) of pre-loaded keys.
    Get,
    /// cart add + checkout by logged-in customers.
    Checkout,
    /// 50% get, 40% put, 10% checkout.
    Mixed,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Checkout => "checkout",
            Workload::Mixed => "mixed",
        }
    }

    fn kinds(self) -> Vec<OpKind> {
        match self {
            Workload::Put => vec![OpKind::Put],
            Workload::Get => vec![OpKind::Get],
            Workload::Checkout => vec![OpKind::Checkout],
            Workload::Mixed => OpKind::ALL.to_vec(),
        }
    }

    fn pick(self, rng: &mut impl Rng) -> OpKind {
        match self {
            Workload::Put => OpKind::Put,
            Workload::Get => OpKind::Get,
            Workload::Checkout => OpKind::Checkout,
            Workload::Mixed => match rng.random_range(0..100u32) {
                0..50 => OpKind::Get,
                50..90 => OpKind::Put,
                _ => OpKind::Checkout,
            },
        }
    }
}

/// Arguments of `shoal bench --workload ...`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What to run.
    #[arg(long, value_enum, required = true)]
    pub workload: Option<Workload>,
    /// Concurrent clients (each with one request in flight).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CLIENTS)))]
    pub clients: u32,
    /// Seconds measured.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Seconds of load before measuring (not counted).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
    /// Bytes of each put's value.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=(shoal_shop::validate::MAX_VALUE_BYTES as i64)))]
    pub value_size: u32,
    /// QUIC connections the clients share (default: one per 16 clients).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CLIENTS)))]
    pub connections: Option<u32>,
    /// Keys that puts write and gets read (gets' keys are written before the run).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub keys: u64,
    /// Writes an SVG of the latency distribution and the throughput of each second.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Threads of the benchmark's own runtime (1: a single-threaded runtime).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
}

fn read_consistency(consistency: Consistency) -> ReadConsistency {
    match consistency {
        Consistency::Linearizable => ReadConsistency::Linearizable,
        Consistency::Lease => ReadConsistency::Lease,
        Consistency::Stale => ReadConsistency::Stale,
    }
}

/// The settings of one run, resolved from the arguments.
#[derive(Debug, Clone)]
struct Plan {
    workload: Workload,
    clients: u32,
    connections: u32,
    value_size: usize,
    keys: u64,
    warmup: Duration,
    duration: Duration,
    consistency: ReadConsistency,
    run: u64,
}

/// Runs `shoal bench --workload ...` and prints the result.
pub fn run(global: &GlobalArgs, args: &BenchArgs) -> CliResult {
    let Some(workload) = args.workload else {
        return Err(CliError::usage(
            "shoal bench needs --workload put|get|checkout|mixed (or the `wal` subcommand)",
        ));
    };
    if let Some(plot) = &args.plot {
        let parent = plot
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !parent.is_dir() {
            return Err(CliError::invalid(format!(
                "--plot {}: directory {} does not exist",
                plot.display(),
                parent.display()
            )));
        }
    }
    let connections = args
        .connections
        .unwrap_or_else(|| args.clients.div_ceil(CLIENTS_PER_CONNECTION))
        .clamp(1, args.clients);
    let plan = Plan {
        workload,
        clients: args.clients,
        connections,
        value_size: args.value_size as usize,
        keys: args.keys,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
        consistency: read_consistency(global.consistency),
        run: rand::random::<u64>() & 0xffff_ffff,
    };
    let targets = targets(global)?;
    let addrs: Vec<SocketAddr> = targets.iter().filter_map(|t| t.socket).collect();
    if addrs.is_empty() {
        let names: Vec<&str> = targets.iter().map(|t| t.address.as_str()).collect();
        return Err(CliError::unavailable(format!(
            "cannot resolve any node address ({})",
            names.join(", ")
        )));
    }
    let identity = identity(global)?;
    shoal_net::ensure_crypto_provider();
    let mut builder = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.threads as usize);
        builder
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| CliError::io(format!("cannot start the async runtime: {e}")))?;
    let outcome = runtime.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..plan.connections {
            clients.push(Arc::new(Client::new(
                &identity,
                ClientOptions::new(addrs.clone()),
            )?));
        }
        let result = drive(&plan, &clients, global.json).await;
        for client in &clients {
            client.close().await;
        }
        result
    });
    report(global, args, &plan, &outcome?)
}

fn report(global: &GlobalArgs, args: &BenchArgs, plan: &Plan, outcome: &Outcome) -> CliResult {
    let summary = &outcome.summary;
    if summary.ops == 0 && summary.errors > 0 {
        return Err(CliError::unavailable(format!(
            "every operation failed ({} errors); first: {}",
            summary.errors,
            summary.first_error.as_deref().unwrap_or("unknown")
        )));
    }
    if let Some(path) = &args.plot {
        let title = format!("{} × {} clients", plan.workload.name(), plan.clients);
        plot::write(
            path,
            &plot::PlotData {
                title: &title,
                latency: &outcome.latency,
                per_second: &summary.per_second,
            },
        )
        .map_err(CliError::io)?;
    }
    let mut out = Output::new();
    if global.json {
        let mut document = summary.to_json();
        document["setup_seconds"] =
            serde_json::json!((outcome.setup_seconds * 1000.0).round() / 1000.0);
        document["load_before"] = serde_json::json!(outcome.load.0);
        document["load_after"] = serde_json::json!(outcome.load.1);
        document["plot"] = serde_json::json!(args.plot.as_ref().map(|p| p.display().to_string()));
        out.line(format_args!("{document}"));
    } else {
        out.line(format_args!("{}", summary.to_table()));
        if let (Some(before), Some(after)) = outcome.load {
            out.line(format_args!(
                "load average {before:.2} → {after:.2} (measurements share the machine)"
            ));
        }
        if let Some(path) = &args.plot {
            out.line(format_args!("plot written to {}", path.display()));
        }
    }
    out.finish()
}

/// What [`drive`] measured.
struct Outcome {
    summary: Summary,
    /// Every successful operation's latency (µs), for the plot.
    latency: hdrhistogram::Histogram<u64>,
    setup_seconds: f64,
    /// The machine's 1-minute load average when measuring began and ended (Linux).
    load: (Option<f64>, Option<f64>),
}

/// The 1-minute load average (`/proc/loadavg`), where there is one: measurements on a shared
/// machine carry their load conditions.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Progress counters every client task bumps (for the progress bar only).
#[derive(Debug, Default)]
struct Progress {
    ops: AtomicU64,
    errors: AtomicU64,
}

/// Probes every connection, sets up, runs the clients and merges their measurements.
async fn drive(plan: &Plan, clients: &[Arc<Client>], quiet: bool) -> CliResult<Outcome> {
    probe(clients, plan.consistency).await?;
    let setup_started = Instant::now();
    let shop = match plan.workload {
        Workload::Checkout | Workload::Mixed => Some(Arc::new(
            workload::setup_shop(clients, plan.run, plan.clients as usize)
                .await
                .map_err(|e| CliError::unavailable(format!("benchmark setup failed: {e}")))?,
        )),
        Workload::Put | Workload::Get => None,
    };
    if matches!(plan.workload, Workload::Get | Workload::Mixed) {
        workload::preload(clients, plan.keys, plan.value_size, plan.clients as usize)
            .await
            .map_err(|e| CliError::unavailable(format!("benchmark setup failed: {e}")))?;
    }
    let setup_seconds = setup_started.elapsed().as_secs_f64();

    let load_before = load_average();
    let window = Window::after(Instant::now(), plan.warmup, plan.duration);
    let progress = Arc::new(Progress::default());
    let bar = progress_bar(plan, quiet);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..plan.clients {
        let client = clients[i as usize % clients.len()].clone();
        let recorder = Recorder::new(window).map_err(CliError::io)?;
        let task = ClientTask {
            plan: plan.clone(),
            index: i as usize,
            client,
            shop: shop.clone(),
            window,
            progress: progress.clone(),
        };
        tasks.spawn(task.run(recorder));
    }
    let ticker = tokio::spawn(tick(bar.clone(), progress.clone(), window));
    let mut merged = Recorder::new(window).map_err(CliError::io)?;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let (recorder, error) =
            joined.map_err(|e| CliError::io(format!("a client task failed: {e}")))?;
        merged.merge(&recorder);
        if first_error.is_none() {
            first_error = error;
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    let info = RunInfo {
        workload: plan.workload.name().to_owned(),
        clients: plan.clients,
        connections: plan.connections,
        value_size: plan.value_size as u32,
        warmup: plan.warmup,
        kinds: plan.workload.kinds(),
    };
    Ok(Outcome {
        summary: Summary::new(&info, &window, &merged, first_error),
        latency: merged.all(),
        setup_seconds,
        load: (load_before, load_average()),
    })
}

/// One request on each connection, so that an unreachable cluster is one clear error before
/// anything else (and handshakes happen before the warm-up).
async fn probe(clients: &[Arc<Client>], consistency: ReadConsistency) -> CliResult {
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        let client = client.clone();
        tasks.spawn(async move {
            let body = ReadBody::Query(shoal_shop::Query::KvGet {
                key: b"bench-probe".to_vec(),
            })
            .to_bytes();
            client.request(RequestKind::Read(consistency), body).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                let error = CliError::from(error);
                return Err(CliError::new(
                    error.kind,
                    error.code,
                    format!("cannot reach the cluster: {}", error.message),
                ));
            }
            Err(e) => return Err(CliError::io(format!("probe task failed: {e}"))),
        }
    }
    Ok(())
}

fn progress_bar(plan: &Plan, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let total = (plan.warmup + plan.duration).as_secs().max(1);
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} s  {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn tick(bar: ProgressBar, progress: Arc<Progress>, window: Window) {
    let mut interval = tokio::time::interval(Duration::from_millis(250));
    let started = Instant::now();
    let (mut last_ops, mut last_at) = (0u64, Instant::now());
    let mut rate = 0.0;
    loop {
        interval.tick().await;
        let now = Instant::now();
        let ops = progress.ops.load(Ordering::Relaxed);
        let errors = progress.errors.load(Ordering::Relaxed);
        let dt = now.duration_since(last_at).as_secs_f64();
        if dt >= 1.0 {
            rate = (ops - last_ops) as f64 / dt;
            (last_ops, last_at) = (ops, now);
        }
        let phase = if now < window.start {
            "warm-up"
        } else {
            "measuring"
        };
        bar.set_position(now.duration_since(started).as_secs());
        bar.set_message(format!(
            "{phase}: {ops} ops, {errors} errors, {rate:.0} ops/s"
        ));
    }
}

/// One benchmark client.
struct ClientTask {
    plan: Plan,
    index: usize,
    client: Arc<Client>,
    shop: Option<Arc<ShopSetup>>,
    window: Window,
    progress: Arc<Progress>,
}

impl ClientTask {
    async fn run(self, mut recorder: Recorder) -> (Recorder, Option<String>) {
        let mut rng = SmallRng::seed_from_u64(
            self.plan.run ^ (self.index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let mut first_error = None;
        let mut n = 0u64;
        while Instant::now() < self.window.end {
            let kind = self.plan.workload.pick(&mut rng);
            let started = Instant::now();
            let result = self.op(kind, &mut rng, n).await;
            let finished = Instant::now();
            n += 1;
            recorder.record(kind, started, finished, result.is_ok());
            match result {
                Ok(()) => {
                    self.progress.ops.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    self.progress.errors.fetch_add(1, Ordering::Relaxed);
                    if first_error.is_none() {
                        first_error = Some(format!("{}: {error}", kind.name()));
                    }
                }
            }
        }
        (recorder, first_error)
    }

    async fn op(&self, kind: OpKind, rng: &mut SmallRng, n: u64) -> Result<(), OpError> {
        match kind {
            OpKind::Put => {
                let key = workload::key(rng.random_range(0..self.plan.keys));
                let value = workload::value(self.plan.value_size, n);
                workload::put(&self.client, key, value).await
            }
            OpKind::Get => {
                let key = workload::key(rng.random_range(0..self.plan.keys));
                workload::get(&self.client, self.plan.consistency, key).await
            }
            OpKind::Checkout => {
                let Some(shop) = &self.shop else {
                    return Err("no shop setup".into());
                };
                let Some(session) = shop.sessions.get(self.index) else {
                    return Err("no customer session".into());
                };
                let product = shop.product(rng);
                workload::checkout(&self.client, session, product).await
            }
        }
    }
}
