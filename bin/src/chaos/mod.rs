//! `shoal chaos`: a Jepsen-style run in a box against real `shoal node` processes.
//!
//! # A run
//! 1. [`cluster::LocalCluster`] initialises a fresh temporary cluster directory (ports chosen
//!    free, the fault hook on, fast timing, small snapshot thresholds, cheap argon2) and
//!    starts one `shoal node` child per node, from this very executable.
//! 2. [`workload`] clients run concurrently: register clients (kv read, write,
//!    compare-and-set; unique written values; groups of [`workload::CLIENTS_PER_KEY`]
//!    clients share a key for [`workload::OPS_PER_KEY`] operations, then move to a fresh one,
//!    as Jepsen's independent workloads do) and checkout clients (cart add + checkout against
//!    limited stock). Every operation's invocation and completion is recorded; timeouts and
//!    unknown failures are indeterminate (`Info`).
//! 3. [`nemesis::Nemesis`] injects seeded rounds of faults ([`nemesis::FaultKind`]): SIGKILL
//!    and restart of a random node and of the leader, SIGSTOP/SIGCONT, partitions (majority
//!    and minority, isolated leader, bridge) and message loss through the fault hook, a node
//!    added and removed, forced snapshots, and a stopped node's WAL tail torn. The first
//!    cycle (every kind once) always completes, even past `--duration`.
//! 4. At the end: heal everything, wait until the cluster serves again, read every key back
//!    linearizably, and check the register history with the final reads
//!    ([`shoal_engine::check::check_final_reads`]: linearizable per key, and no acknowledged
//!    write lost), and the shop (stock conserved, every acknowledged order present).
//!
//! Every child process is killed when the cluster is dropped, on every exit path; the
//! temporary directory goes too unless kept.

pub mod cluster;
pub mod nemesis;
pub mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use shoal_engine::check::{CheckConfig, Key, Report, SharedHistory, Value, Verdict};
use shoal_net::TlsIdentity;
use shoal_shop::{Query, Request, Response};

use crate::api::WriteBody;
use crate::layout::{CA_CERT_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE};
use cluster::LocalCluster;
use nemesis::{FaultKind, Nemesis};
use workload::{CheckoutOp, KeyGroup, Shared, ShopSummary};

/// Most operations one run records (the history's bound).
pub const MAX_OPS: u64 = 1_000_000;
/// How long the cluster gets to serve again after healing.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// Nodes (3 or 5).
    pub nodes: u64,
    /// Seconds of faults and load (the first cycle of faults always completes).
    pub duration: Duration,
    /// The seed of the nemesis schedule and the clients' choices.
    pub seed: u64,
    /// Keep the cluster directory after the run.
    pub keep: bool,
    /// Hide the progress bar.
    pub quiet: bool,
    /// Register clients (a multiple of [`workload::CLIENTS_PER_KEY`] is best).
    pub register_clients: u64,
    /// Checkout clients.
    pub checkout_clients: u64,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: u64,
    /// Seconds asked for.
    pub duration_s: u64,
    /// Seconds the whole run took.
    pub elapsed_s: f64,
    /// Operations recorded (register and checkout).
    pub ops: u64,
    /// Register operations.
    pub register_ops: u64,
    /// Register operations with an indeterminate outcome.
    pub indeterminate: u64,
    /// Operations the linearizability checker checked (final reads included).
    pub ops_checked: u64,
    /// Keys checked.
    pub keys: u64,
    /// Faults injected, by kind name.
    pub faults: BTreeMap<&'static str, u64>,
    /// Checkout and stock figures.
    pub shop: ShopSummary,
    /// Everything that went wrong (empty: pass).
    pub violations: Vec<String>,
    /// The linearizability verdict, as text (with the minimal sub-history when violated).
    pub verdict_text: String,
    /// The cluster directory, when kept.
    pub kept: Option<PathBuf>,
    /// The nemesis's log.
    pub events: Vec<(u64, String)>,
    /// The history as JSON lines (register, checkout and nemesis rows, in time order).
    pub jsonl: String,
}

impl ChaosReport {
    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// `chaos --json`'s document (SPEC §3 fields, then extras).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "verdict": if self.passed() { "pass" } else { "fail" },
            "ops": self.ops,
            "ops_checked": self.ops_checked,
            "faults": self.faults,
            "violations": self.violations,
            "seed": self.seed,
            "nodes": self.nodes,
            "duration_s": self.duration_s,
            "elapsed_s": (self.elapsed_s * 10.0).round() / 10.0,
            "register_ops": self.register_ops,
            "indeterminate": self.indeterminate,
            "keys": self.keys,
            "checkouts": {
                "acknowledged": self.shop.acknowledged,
                "refused": self.shop.refused,
                "unknown": self.shop.unknown,
            },
            "stock": {
                "initial": self.shop.initial,
                "remaining": self.shop.remaining,
                "sold": self.shop.sold,
            },
            "cluster_dir": self.kept.as_ref().map(|p| p.display().to_string()),
        })
    }
}

fn identity(cluster: &LocalCluster) -> Result<TlsIdentity, String> {
    let dir = cluster.dir();
    TlsIdentity::from_files(
        &dir.join(CA_CERT_FILE),
        &dir.join(CLIENT_CERT_FILE),
        &dir.join(CLIENT_KEY_FILE),
    )
    .map_err(|e| format!("cannot load the chaos cluster's client identity: {e}"))
}

fn progress_bar(options: &ChaosOptions) -> ProgressBar {
    if options.quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(options.duration.as_secs().max(1));
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} s  {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Runs a chaos run and returns its report. Errors are failures of the harness itself (the
/// cluster could not be set up), not verdicts.
pub async fn run(options: &ChaosOptions) -> Result<ChaosReport, String> {
    shoal_net::ensure_crypto_provider();
    let started = Instant::now();
    let mut local = LocalCluster::create(options.nodes)?;
    let kept = options.keep.then(|| local.keep());
    let identity = identity(&local)?;
    let addrs = local.client_addrs();
    for id in local.members() {
        local.start(id)?;
    }
    let cluster = Arc::new(Mutex::new(local));
    let identity = Arc::new(identity);
    let make_client: nemesis::ClientFactory = {
        let identity = identity.clone();
        let addrs = addrs.clone();
        Arc::new(move || workload::new_client(&identity, addrs.clone()))
    };
    let mut nemesis = Nemesis::new(cluster.clone(), make_client, options.seed, started)?;
    let bar = progress_bar(options);
    bar.set_message("starting the cluster");
    let deadline = Instant::now() + Duration::from_secs(30);
    while nemesis.leader().await.is_none() {
        let exited: Vec<String> = {
            let mut cluster = cluster.lock().unwrap_or_else(|p| p.into_inner());
            cluster
                .members()
                .into_iter()
                .filter_map(|id| cluster.exited(id))
                .collect()
        };
        if let Some(first) = exited.first() {
            return Err(first.clone());
        }
        if Instant::now() >= deadline {
            return Err("the chaos cluster elected no leader within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.set_message("setting up the shop");
    let setup_client = workload::new_client(&identity, addrs.clone())?;
    let stock = (options.duration.as_secs() as i64 * 2).clamp(20, 5_000);
    let setup = Arc::new(
        workload::setup_shop(&setup_client, options.checkout_clients, stock)
            .await
            .map_err(|e| format!("chaos setup failed: {e}"))?,
    );

    let run_start = Instant::now();
    let shared = Arc::new(Shared {
        start: started,
        history: SharedHistory::new(),
        checkouts: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        invoked: AtomicU64::new(0),
        max_ops: MAX_OPS,
        addrs: addrs.clone(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    let groups = options
        .register_clients
        .div_ceil(workload::CLIENTS_PER_KEY)
        .max(1);
    let groups: Vec<Arc<KeyGroup>> = (0..groups).map(|g| Arc::new(KeyGroup::new(g))).collect();
    for i in 0..options.register_clients {
        let client = workload::new_client(&identity, addrs.clone())?;
        let group = groups[(i / workload::CLIENTS_PER_KEY) as usize % groups.len()].clone();
        let seed = options.seed.wrapping_mul(1_000_003).wrapping_add(i);
        tasks.spawn(workload::register_client(
            shared.clone(),
            group,
            i + 1,
            client,
            seed,
        ));
    }
    for c in 0..options.checkout_clients {
        let client = workload::new_client(&identity, addrs.clone())?;
        let seed = options.seed.wrapping_mul(7_919).wrapping_add(c);
        tasks.spawn(workload::checkout_client(
            shared.clone(),
            setup.clone(),
            c as usize,
            client,
            seed,
        ));
    }
    let ticker = {
        let bar = bar.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                bar.set_position(run_start.elapsed().as_secs());
                bar.set_message(format!("{} ops", shared.invoked.load(Ordering::Relaxed)));
            }
        })
    };

    // Faults: rounds until the end of the duration (and at least one full cycle).
    let secs = options.duration.as_secs_f64();
    let hold = Duration::from_secs_f64((secs / 25.0).clamp(0.8, 4.0));
    let settle = hold / 2;
    nemesis
        .run(run_start + options.duration, hold, settle)
        .await;
    bar.set_message("healing");
    nemesis.heal_everything().await;
    shared.stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    ticker.abort();

    let mut violations = Vec::new();
    for (_, event) in &nemesis.events {
        if event.starts_with("unexpected:") {
            violations.push(event.clone());
        }
    }

    // The cluster serves again: a write and a read within the recovery timeout.
    bar.set_message("waiting for the cluster to serve again");
    let check_client = workload::new_client(&identity, addrs.clone())?;
    let recovery_deadline = Instant::now() + RECOVERY_TIMEOUT;
    let mut serving = false;
    while Instant::now() < recovery_deadline {
        let put = WriteBody::Shop(Request::KvPut {
            key: b"chaos-probe".to_vec(),
            value: b"after-healing".to_vec(),
        });
        if let Ok(Ok(_)) = workload::write(&check_client, put).await
            && let Ok(Ok(Response::KvValue { value: Some(v), .. })) = workload::read(
                &check_client,
                Query::KvGet {
                    key: b"chaos-probe".to_vec(),
                },
            )
            .await
            && v == b"after-healing"
        {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if !serving {
        violations.push(format!(
            "the cluster did not serve again within {RECOVERY_TIMEOUT:?} of healing"
        ));
    }

    // Read every key back.
    bar.set_message("reading every key back");
    let history = shared.history.snapshot();
    let keys: std::collections::BTreeSet<Key> =
        history.ops().iter().map(|op| op.key.clone()).collect();
    let mut finals: BTreeMap<Key, Option<Value>> = BTreeMap::new();
    let read_deadline = Instant::now() + RECOVERY_TIMEOUT;
    for key in &keys {
        match workload::read_until(
            &check_client,
            Query::KvGet { key: key.clone() },
            read_deadline,
        )
        .await
        {
            Ok(Ok(Response::KvValue { value, .. })) => {
                finals.insert(key.clone(), value);
            }
            other => violations.push(format!(
                "cannot read key {} back: {other:?}",
                String::from_utf8_lossy(key)
            )),
        }
    }
    bar.set_message("checking the shop");
    let checkouts: Vec<CheckoutOp> = shared
        .checkouts
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    let (shop, shop_violations) =
        workload::verify_shop(&check_client, &setup, &checkouts, read_deadline).await;
    violations.extend(shop_violations);
    check_client.close().await;
    setup_client.close().await;

    bar.set_message("checking linearizability");
    let checked = {
        let history = history.clone();
        tokio::task::spawn_blocking(move || {
            shoal_engine::check::check_final_reads(&history, &finals, &CheckConfig::default())
        })
        .await
        .map_err(|e| format!("the checker failed: {e}"))?
        .map_err(|e| format!("the recorded history is malformed: {e}"))?
    };
    bar.finish_and_clear();
    let Report {
        verdict,
        keys: key_reports,
        ops: ops_checked,
        ..
    } = checked;
    match &verdict {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable { key, ops } => {
            // Name the anomaly: a final read (after healing) that misses an acknowledged
            // write is a lost write; otherwise a read during the run saw a stale value.
            let lost = ops
                .iter()
                .any(|op| op.process == shoal_engine::check::FINAL_READ_PROCESS);
            let what = if lost {
                "an acknowledged write lost (the read-back after healing does not see it)"
            } else {
                "a stale read (a read inconsistent with the writes acknowledged before it began)"
            };
            violations.insert(
                0,
                format!(
                    "not linearizable on key {}: {what}; minimal sub-history of {} ops",
                    String::from_utf8_lossy(key),
                    ops.len()
                ),
            )
        }
        Verdict::Unknown { keys } => violations.push(format!(
            "linearizability unknown on {} keys (search budget exhausted)",
            keys.len()
        )),
    }

    // The history file's rows: register, checkout and nemesis, in time order.
    let mut rows: Vec<(u64, String)> = history
        .jsonl_rows()
        .into_iter()
        .map(|row| (row.time, row.line))
        .collect();
    for op in &checkouts {
        rows.extend(op.json_rows());
    }
    for (time, text) in &nemesis.events {
        let kind = text
            .split(':')
            .next()
            .filter(|k| FaultKind::ALL.iter().any(|f| f.name() == *k))
            .unwrap_or("nemesis");
        rows.push((
            *time,
            serde_json::json!({"process": "nemesis", "type": "info", "f": kind, "value": text, "time": time})
                .to_string(),
        ));
    }
    rows.sort_by_key(|(time, _)| *time);
    let mut jsonl = String::new();
    for (_, line) in rows {
        jsonl.push_str(&line);
        jsonl.push('\n');
    }

    let mut faults: BTreeMap<&'static str, u64> =
        FaultKind::ALL.iter().map(|k| (k.name(), 0)).collect();
    for (kind, count) in &nemesis.counts {
        faults.insert(kind.name(), *count);
    }
    let register_ops = history.len() as u64;
    let indeterminate = history
        .ops()
        .iter()
        .filter(|op| op.outcome.is_indeterminate())
        .count() as u64;
    let events = std::mem::take(&mut nemesis.events);
    drop(nemesis);
    drop(cluster);
    Ok(ChaosReport {
        seed: options.seed,
        nodes: options.nodes,
        duration_s: options.duration.as_secs(),
        elapsed_s: started.elapsed().as_secs_f64(),
        ops: register_ops + checkouts.len() as u64,
        register_ops,
        indeterminate,
        ops_checked: ops_checked as u64,
        keys: key_reports.len() as u64,
        faults,
        shop,
        violations,
        verdict_text: verdict.to_string(),
        kept,
        events,
        jsonl,
    })
}
