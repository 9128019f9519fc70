//! A deterministic simulation of a Shoal cluster: Raft cores over an in-memory network with
//! seeded faults, a log store per node that keeps exactly what was persisted, a key-value
//! state machine, clients whose history is checked for linearizability, and invariants
//! checked after every tick.
//!
//! One seed derives the whole run; `run(seed, nodes)` returns `Err` with a description (and
//! the seed) on any violation.
#![allow(dead_code)]

pub mod kv;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shoal_engine::check::{Call, CheckConfig, History, OpId, Outcome, check_final_reads};
use shoal_engine::core::{
    Config, Entry, EntryKind, Error, HardState, Membership, MembershipChange, Message, NodeId,
    Proposal, RawNode, Recovered, Role, SnapshotMeta,
};
use shoal_wal::{LogStore, MemLogStore};

use kv::{Kv, KvOp};

/// The default runs: (cluster size, first seed, seed count). Sized so that the crate's tests
/// stay well under three minutes on two cores in the debug profile.
pub const DEFAULT_RUNS: [(usize, u64, u64); 3] =
    [(3, 0, 300), (5, 1_000_000, 120), (7, 2_000_000, 60)];

/// Ticks of the safety phase (faults on) of every run.
pub const SAFETY_TICKS: u64 = 1000;

/// Seeds to run: `SHOAL_SEED=n` runs only `n`; `SHOAL_SIM_SEEDS=k` runs `k` seeds from `base`.
pub fn seeds(base: u64, default_count: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("SHOAL_SEED")
        && let Ok(seed) = seed.trim().parse()
    {
        return vec![seed];
    }
    let count = std::env::var("SHOAL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default_count);
    (base..base + count).collect()
}

/// Knobs of one run, all derived from its seed.
#[derive(Debug, Clone)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    pub max_delay: u64,
    pub long_delay: f64,
    pub max_persist_delay: u64,
    pub crash: f64,
    pub pause: f64,
    pub partition: f64,
    pub membership: f64,
    pub transfer: f64,
    pub snapshot_every: u64,
    pub chunk_bytes: usize,
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub max_entries_per_msg: usize,
    pub max_inflight_msgs: usize,
    /// Crash a node right after it grants a vote (before the vote is durable).
    pub crash_after_vote: f64,
    /// Crash a node right after it becomes leader.
    pub crash_new_leader: f64,
    /// Crash a leader right after its commit index moves.
    pub crash_on_commit: f64,
    /// Share of restarts that come back at once.
    pub quick_restart: f64,
    /// Cut a node off right after it becomes leader (its entries stay uncommitted).
    pub isolate_new_leader: f64,
    /// Chance that a crash also loses the messages the node sent that are still in flight.
    pub crash_drops_outbox: f64,
    /// A crash keeps the hard state of every `Ready` not yet durable but none of its entries:
    /// the real driver syncs a new term or vote at once while entries wait for the WAL's group
    /// commit. Drawn from its own generator so the rest of a seed's run is unchanged.
    pub hard_state_ahead: bool,
}

impl Faults {
    fn derive(rng: &mut SmallRng) -> Self {
        let mut faults = Self {
            drop: rng.random_range(0.0..0.08),
            duplicate: rng.random_range(0.0..0.04),
            max_delay: rng.random_range(1..=4),
            long_delay: rng.random_range(0.0..0.03),
            max_persist_delay: rng.random_range(0..=4),
            crash: rng.random_range(0.002..0.01),
            pause: rng.random_range(0.0..0.005),
            partition: rng.random_range(0.0..0.006),
            membership: rng.random_range(0.0..0.01),
            transfer: rng.random_range(0.0..0.005),
            snapshot_every: rng.random_range(15..120),
            chunk_bytes: rng.random_range(64..600),
            pre_vote: rng.random_bool(0.8),
            check_quorum: rng.random_bool(0.8),
            max_entries_per_msg: rng.random_range(1..=8),
            max_inflight_msgs: rng.random_range(1..=4),
            crash_after_vote: rng.random_range(0.0..0.3),
            crash_new_leader: rng.random_range(0.0..0.5),
            crash_on_commit: rng.random_range(0.0..0.3),
            quick_restart: rng.random_range(0.0..0.8),
            isolate_new_leader: rng.random_range(0.0..0.5),
            crash_drops_outbox: rng.random_range(0.0..1.0),
            hard_state_ahead: false,
        };
        // Swarm testing: some seeds run an adversarial election schedule, where new leaders
        // are cut off or killed at once and leaders die as their commit index moves. That is
        // where logs of several terms diverge (the histories of Figure 8).
        if rng.random_bool(0.4) {
            faults.isolate_new_leader = rng.random_range(0.5..0.9);
            faults.crash_on_commit = rng.random_range(0.2..0.5);
            faults.crash_new_leader = rng.random_range(0.0..0.2);
            faults.max_entries_per_msg = rng.random_range(1..=2);
        }
        faults
    }
}

/// What a run did, for the test's summary.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub ticks: u64,
    pub ops_ok: u64,
    pub ops_info: u64,
    pub crashes: u64,
    pub elections: u64,
    pub snapshots_installed: u64,
    pub membership_changes: u64,
    pub transfers: u64,
    pub max_term: u64,
}

pub const HEARTBEAT: u32 = 3;
const RESUBMIT_TICKS: u64 = 40;
const FINAL_READ: u64 = u64::MAX;
pub const ELECTION_MIN: u32 = 20;
pub const ELECTION_MAX: u32 = 40;

enum WriteOp {
    Install(SnapshotMeta, Vec<u8>),
    Entries(Vec<Entry>),
    HardState(HardState),
    Compact(u64, u64),
}

struct PendingWrite {
    number: u64,
    due: u64,
    ops: Vec<WriteOp>,
    msgs: Vec<Message>,
}

/// What survives a crash.
struct Durable {
    store: MemLogStore,
    snapshot: SnapshotMeta,
    snapshot_data: Vec<u8>,
    lives: u64,
}

struct Live {
    core: RawNode,
    kv: Kv,
    writes: VecDeque<PendingWrite>,
    incoming: Vec<u8>,
    current_snapshot: (SnapshotMeta, Vec<u8>),
    paused_until: Option<u64>,
    paused_at: u64,
    last_term: u64,
    last_commit: u64,
    last_applied: u64,
    ready_reads: Vec<(u64, u64)>,
}

struct SimNode {
    durable: Durable,
    live: Option<Live>,
    restart_at: u64,
}

#[derive(Debug, Clone)]
enum Waiting {
    /// Nothing sent yet (or to resend): try at `at`.
    Retry { at: u64 },
    /// Proposed at `node`, entry `(index, term)`, at tick `since`.
    Proposed {
        node: NodeId,
        index: u64,
        term: u64,
        since: u64,
    },
    /// Read requested at `node` with read id, at tick `since`.
    Reading {
        node: NodeId,
        read_id: u64,
        since: u64,
    },
}

struct ClientOp {
    op: OpId,
    call: Call,
    key: Vec<u8>,
    seq: u64,
    invoked: u64,
    deadline: u64,
    waiting: Waiting,
    proposed_once: bool,
    must_succeed: bool,
}

struct Client {
    id: u64,
    seq: u64,
    leader_guess: Option<NodeId>,
    current: Option<ClientOp>,
    idle_until: u64,
}

pub struct Sim {
    seed: u64,
    rng: SmallRng,
    pub faults: Faults,
    now: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    initial: Vec<NodeId>,
    spares: Vec<NodeId>,
    net: Vec<(u64, u64, Message)>,
    net_seq: u64,
    /// Blocked one-way links, each with the tick it heals.
    blocked: BTreeMap<(NodeId, NodeId), u64>,
    clients: Vec<Client>,
    history: History,
    key_base: u64,
    keys_used: BTreeSet<Vec<u8>>,
    next_read_id: u64,
    /// Read id → client index.
    reads: HashMap<u64, usize>,
    faulty: bool,
    // Invariant state.
    leaders: BTreeMap<u64, NodeId>,
    committed: BTreeMap<u64, (u64, u64)>,
    entries_seen: HashMap<(u64, u64), (u64, Option<u64>)>,
    pub stats: Stats,
    pending_change: Option<u64>,
    trace: bool,
    crash_soon: Vec<NodeId>,
    /// Crashes at the end of this tick that keep what the node already sent.
    crash_after_send: Vec<NodeId>,
    crash_later: Vec<(u64, NodeId)>,
}

fn hash_entry(entry: &Entry) -> u64 {
    let mut h = DefaultHasher::new();
    entry.kind.hash(&mut h);
    entry.data.hash(&mut h);
    h.finish()
}

fn config(id: NodeId, seed: u64, faults: &Faults) -> Config {
    let mut cfg = Config::new(id);
    cfg.heartbeat_ticks = HEARTBEAT;
    cfg.election_ticks_min = ELECTION_MIN;
    cfg.election_ticks_max = ELECTION_MAX;
    cfg.lease_ticks = 12;
    cfg.clock_drift_ticks = 4;
    cfg.max_inflight_msgs = faults.max_inflight_msgs;
    cfg.max_entries_per_msg = faults.max_entries_per_msg;
    cfg.max_msg_bytes = 1024;
    cfg.snapshot_chunk_bytes = faults.chunk_bytes;
    cfg.pre_vote = faults.pre_vote;
    cfg.check_quorum = faults.check_quorum;
    cfg.lease_reads = faults.check_quorum;
    cfg.max_transfer_lag = 5;
    cfg.max_promotion_lag = 5;
    cfg.seed = seed;
    cfg
}

macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.trace {
            eprintln!("[{:>5}] {}", $sim.now, format!($($arg)*));
        }
    };
}

macro_rules! fail {
    ($sim:expr, $($arg:tt)*) => {
        return Err(format!("seed {} tick {}: {}", $sim.seed, $sim.now, format!($($arg)*)))
    };
}

impl Sim {
    pub fn new(seed: u64, n: usize) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut faults = Faults::derive(&mut rng);
        faults.hard_state_ahead = SmallRng::seed_from_u64(seed ^ 0x4841_5244).random_bool(0.5);
        let initial: Vec<NodeId> = (1..=n as u64).collect();
        let spares: Vec<NodeId> = (n as u64 + 1..=n as u64 + 2).collect();
        let mut nodes = BTreeMap::new();
        for &id in initial.iter().chain(spares.iter()) {
            let membership = if initial.contains(&id) {
                Membership::new(initial.iter().copied())
            } else {
                Membership::default()
            };
            let snapshot = SnapshotMeta {
                index: 0,
                term: 0,
                membership,
            };
            nodes.insert(
                id,
                SimNode {
                    durable: Durable {
                        store: MemLogStore::new(),
                        snapshot,
                        snapshot_data: Kv::default().snapshot(),
                        lives: 0,
                    },
                    live: None,
                    restart_at: 0,
                },
            );
        }
        let clients = (0..5)
            .map(|i| Client {
                id: 100 + i,
                seq: 0,
                leader_guess: None,
                current: None,
                idle_until: 0,
            })
            .collect();
        let mut sim = Self {
            seed,
            rng,
            faults,
            now: 0,
            nodes,
            initial,
            spares,
            net: Vec::new(),
            net_seq: 0,
            blocked: BTreeMap::new(),
            clients,
            history: History::new(),
            key_base: 0,
            keys_used: BTreeSet::new(),
            next_read_id: 1,
            reads: HashMap::new(),
            faulty: true,
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            entries_seen: HashMap::new(),
            stats: Stats::default(),
            pending_change: None,
            trace: std::env::var("SHOAL_SIM_TRACE").is_ok(),
            crash_soon: Vec::new(),
            crash_after_send: Vec::new(),
            crash_later: Vec::new(),
        };
        let ids: Vec<NodeId> = sim.nodes.keys().copied().collect();
        for id in ids {
            sim.start(id)
                .unwrap_or_else(|e| panic!("seed {seed}: start {id}: {e}"));
        }
        sim
    }

    // ------------------------------------------------------------ node lifecycle

    fn start(&mut self, id: NodeId) -> Result<(), String> {
        let seed = self.seed;
        let faults = self.faults.clone();
        let node = self.nodes.get_mut(&id).ok_or("no node")?;
        let d = &mut node.durable;
        d.lives += 1;
        if d.store.snapshot_point().0 < d.snapshot.index {
            d.store
                .compact(d.snapshot.index, d.snapshot.term)
                .map_err(|e| e.to_string())?;
        }
        let kv = Kv::restore(&d.snapshot_data).ok_or("bad snapshot")?;
        let recovered = Recovered::from_store(&d.store, d.snapshot.clone(), kv.applied)
            .map_err(|e| e.to_string())?;
        let cfg = config(id, seed ^ (id << 48) ^ (d.lives << 32), &faults);
        let core = RawNode::new(cfg, recovered).map_err(|e| e.to_string())?;
        if self.trace {
            eprintln!("[{:>5}] start {id}", self.now);
        }
        node.live = Some(Live {
            last_term: core.term(),
            last_commit: core.commit_index(),
            last_applied: core.applied_index(),
            core,
            kv,
            writes: VecDeque::new(),
            incoming: Vec::new(),
            current_snapshot: (d.snapshot.clone(), d.snapshot_data.clone()),
            paused_until: None,
            paused_at: 0,
            ready_reads: Vec::new(),
        });
        Ok(())
    }

    fn crash(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id)
            && let Some(live) = node.live.take()
        {
            if self.faults.hard_state_ahead {
                for write in &live.writes {
                    for op in &write.ops {
                        if let WriteOp::HardState(hs) = op {
                            let _ = node.durable.store.save_hard_state(hs);
                        }
                    }
                }
            }
            node.restart_at = if self.rng.random_bool(self.faults.quick_restart) {
                self.now + self.rng.random_range(1..5)
            } else {
                self.now + self.rng.random_range(5..80)
            };
            trace!(self, "crash {id}");
            // What the process had not yet handed to the network dies with it.
            if self.rng.random_bool(self.faults.crash_drops_outbox) {
                self.net.retain(|(_, _, m)| m.from != id);
            }
            self.stats.crashes += 1;
        }
        for client in &mut self.clients {
            if let Some(op) = client.current.as_mut() {
                let on_node = match op.waiting {
                    Waiting::Proposed { node, .. } | Waiting::Reading { node, .. } => node == id,
                    Waiting::Retry { .. } => false,
                };
                if on_node {
                    op.waiting = Waiting::Retry { at: self.now + 1 };
                    client.leader_guess = None;
                }
            }
        }
    }

    fn is_up(&self, id: NodeId) -> bool {
        self.nodes
            .get(&id)
            .and_then(|n| n.live.as_ref())
            .is_some_and(|l| l.paused_until.is_none())
    }

    fn live_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.live.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn leader(&self) -> Option<NodeId> {
        let mut best: Option<(u64, NodeId)> = None;
        for (id, node) in &self.nodes {
            if let Some(live) = &node.live
                && live.paused_until.is_none()
                && live.core.role() == Role::Leader
                && best.is_none_or(|(t, _)| live.core.term() > t)
            {
                best = Some((live.core.term(), *id));
            }
        }
        best.map(|(_, id)| id)
    }

    // ------------------------------------------------------------ network

    fn send(&mut self, m: Message) {
        if self.faulty && self.rng.random_bool(self.faults.drop) {
            return;
        }
        let copies = if self.faulty && self.rng.random_bool(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if self.faulty && self.rng.random_bool(self.faults.long_delay) {
                self.rng.random_range(5..30)
            } else {
                self.rng.random_range(1..=self.faults.max_delay)
            };
            self.net_seq += 1;
            self.net.push((self.now + delay, self.net_seq, m.clone()));
        }
    }

    fn deliver(&mut self) -> Result<(), String> {
        let now = self.now;
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].0 <= now {
                due.push(self.net.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|(_, seq, _)| *seq);
        due.shuffle(&mut self.rng);
        for (_, seq, m) in due {
            if self.blocked.contains_key(&(m.from, m.to)) {
                continue;
            }
            let to = m.to;
            match self.nodes.get_mut(&to).and_then(|n| n.live.as_mut()) {
                None => {}
                Some(live) if live.paused_until.is_some() => {
                    self.net.push((now + 1, seq, m));
                }
                Some(live) => live.core.step(m),
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ ready processing

    fn process_ready(&mut self, id: NodeId) -> Result<(), String> {
        for _ in 0..64 {
            let Some(live) = self.nodes.get_mut(&id).and_then(|n| n.live.as_mut()) else {
                return Ok(());
            };
            if live.paused_until.is_some() || !live.core.has_ready() {
                return Ok(());
            }
            let rd = live.core.ready();
            let mut ops = Vec::new();
            if let Some(soft) = rd.soft_state {
                let last = live.core.last_index();
                let commit = live.core.commit_index();
                trace!(self, "node {id}: {soft:?} last {last} commit {commit}");
            }
            if let Some(soft) = rd.soft_state
                && soft.role == Role::Leader
            {
                self.stats.elections += 1;
                self.on_new_leader(id)?;
                if self.faulty && self.rng.random_bool(self.faults.crash_new_leader) {
                    let at = self.now + self.rng.random_range(0..12);
                    self.crash_later.push((at, id));
                }
                if self.faulty && self.rng.random_bool(self.faults.isolate_new_leader) {
                    let others: Vec<NodeId> =
                        self.nodes.keys().copied().filter(|&o| o != id).collect();
                    let until = self.now + self.rng.random_range(3..40);
                    for o in others {
                        self.blocked.insert((id, o), until);
                        self.blocked.insert((o, id), until);
                    }
                    trace!(self, "isolate new leader {id}");
                }
            }
            let granted = rd
                .messages
                .iter()
                .chain(rd.persisted_messages.iter())
                .any(|m| {
                    matches!(
                        m.body,
                        shoal_engine::core::MessageBody::VoteResponse {
                            pre_vote: false,
                            granted: true
                        }
                    )
                });
            if granted && self.faulty && self.rng.random_bool(self.faults.crash_after_vote) {
                // The answer is on the wire; the node dies before its disk write completes.
                self.crash_after_send.push(id);
            }
            // Entries replacing durable ones, with a hard state: under `hard_state_ahead`, a
            // crash now keeps the hard state (and its commit index) but the old entries.
            let overwrites = rd.hard_state.is_some()
                && rd
                    .entries
                    .first()
                    .is_some_and(|e| e.index <= self.nodes[&id].durable.store.last_index());
            if overwrites
                && self.faulty
                && self.faults.hard_state_ahead
                && self.rng.random_bool(0.5)
            {
                self.crash_after_send.push(id);
            }
            for m in rd.messages {
                self.send(m);
            }
            let (seed, trace, now) = (self.seed, self.trace, self.now);
            let live = self.live_mut(id)?;
            for chunk in &rd.snapshot_chunks {
                if chunk.offset == 0 {
                    live.incoming.clear();
                }
                if live.incoming.len() as u64 != chunk.offset {
                    return Err(format!(
                        "seed {}: node {id} chunk at {} but file has {} bytes",
                        seed,
                        chunk.offset,
                        live.incoming.len()
                    ));
                }
                live.incoming.extend_from_slice(&chunk.data);
                if trace {
                    eprintln!(
                        "[{now:>5}] node {id} chunk {} at {} +{} done {}",
                        chunk.meta.index,
                        chunk.offset,
                        chunk.data.len(),
                        chunk.done
                    );
                }
            }
            if let Some(meta) = rd.install_snapshot.clone() {
                let data = live.incoming.clone();
                let Some(kv) = Kv::restore(&data) else {
                    fail!(
                        self,
                        "node {id}: received snapshot {meta:?} does not decode ({} bytes)",
                        data.len()
                    );
                };
                if kv.applied != meta.index {
                    fail!(
                        self,
                        "node {id}: snapshot data at {} but meta at {}",
                        kv.applied,
                        meta.index
                    );
                }
                live.kv = kv;
                live.current_snapshot = (meta.clone(), data.clone());
                ops.push(WriteOp::Install(meta, data));
                self.stats.snapshots_installed += 1;
                let index = self.live_mut(id)?.current_snapshot.0.index;
                for client in &mut self.clients {
                    if let Some(op) = client.current.as_mut()
                        && let Waiting::Proposed { node, index: i, .. } = op.waiting
                        && node == id
                        && i <= index
                    {
                        op.waiting = Waiting::Retry { at: self.now + 1 };
                    }
                }
            }
            // Log matching, checked on every entry a node writes.
            if !rd.entries.is_empty() {
                let live = self.live_mut(id)?;
                let mut checks = Vec::new();
                for entry in &rd.entries {
                    let prev = live.core.log_term(entry.index - 1);
                    checks.push(((entry.index, entry.term), (hash_entry(entry), prev)));
                }
                for (key, (h, prev)) in checks {
                    match self.entries_seen.get(&key) {
                        Some(&(h0, prev0)) => {
                            if h0 != h {
                                fail!(self, "log matching: entry {key:?} has two contents");
                            }
                            if let (Some(a), Some(b)) = (prev0, prev)
                                && a != b
                            {
                                fail!(
                                    self,
                                    "log matching: entry {key:?} follows terms {a} and {b}"
                                );
                            }
                        }
                        None => {
                            self.entries_seen.insert(key, (h, prev));
                        }
                    }
                }
                ops.push(WriteOp::Entries(rd.entries));
            }
            if let Some(hs) = rd.hard_state {
                ops.push(WriteOp::HardState(hs));
            }
            if let Some((index, term)) = rd.compact_log_to {
                ops.push(WriteOp::Compact(index, term));
            }
            let delay = self.rng.random_range(0..=self.faults.max_persist_delay);
            let now = self.now;
            let live = self.live_mut(id)?;
            let due = live.writes.back().map_or(now, |w| w.due).max(now + delay);
            live.writes.push_back(PendingWrite {
                number: rd.number,
                due,
                ops,
                msgs: rd.persisted_messages,
            });
            for entry in rd.committed_entries {
                self.apply(id, entry)?;
            }
            let live = self.live_mut(id)?;
            for rs in rd.read_states {
                live.ready_reads.push((rs.id, rs.index));
            }
            for read_id in rd.aborted_reads {
                if let Some(c) = self.reads.remove(&read_id)
                    && let Some(op) = self.clients[c].current.as_mut()
                {
                    op.waiting = Waiting::Retry { at: self.now + 1 };
                }
            }
            for send in rd.snapshot_sends {
                let live = self.live_mut(id)?;
                let (meta, data) = &live.current_snapshot;
                if *meta != send.meta {
                    continue;
                }
                let start = (send.offset as usize).min(data.len());
                let end = (start + send.max_len).min(data.len());
                let chunk = Bytes::copy_from_slice(&data[start..end]);
                let done = end == data.len();
                let (trace_index, trace_len, trace_to) = (send.meta.index, data.len(), send.to);
                trace!(
                    self,
                    "node {id} sends chunk {trace_index} at {start}..{end} of {trace_len} to {trace_to}"
                );
                let m = send.into_message(chunk, done);
                self.send(m);
            }
        }
        Ok(())
    }

    fn live_mut(&mut self, id: NodeId) -> Result<&mut Live, String> {
        self.nodes
            .get_mut(&id)
            .and_then(|n| n.live.as_mut())
            .ok_or_else(|| format!("node {id} is down"))
    }

    fn on_new_leader(&mut self, id: NodeId) -> Result<(), String> {
        let live = self.live_mut(id)?;
        let term = live.core.term();
        let first = live.core.first_index();
        let last = live.core.last_index();
        let terms: Vec<(u64, Option<u64>)> = self
            .committed
            .range(first..)
            .map(|(&i, _)| {
                (
                    i,
                    self.nodes[&id]
                        .live
                        .as_ref()
                        .and_then(|l| l.core.log_term(i)),
                )
            })
            .collect();
        if let Some(&other) = self.leaders.get(&term)
            && other != id
        {
            fail!(
                self,
                "election safety: nodes {other} and {id} both lead term {term}"
            );
        }
        self.leaders.insert(term, id);
        for (index, have) in terms {
            let (want, _) = self.committed[&index];
            if have != Some(want) {
                fail!(
                    self,
                    "leader completeness: leader {id} of term {term} (last index {last}) has term {have:?} at committed index {index} (term {want})"
                );
            }
        }
        Ok(())
    }

    fn apply(&mut self, id: NodeId, entry: Entry) -> Result<(), String> {
        let h = hash_entry(&entry);
        match self.committed.get(&entry.index) {
            Some(&(term, h0)) => {
                if term != entry.term || h0 != h {
                    fail!(
                        self,
                        "state machine safety: node {id} applies ({}, term {}) where term {term} was applied",
                        entry.index,
                        entry.term
                    );
                }
            }
            None => {
                self.committed.insert(entry.index, (entry.term, h));
            }
        }
        let live = self.live_mut(id)?;
        let (proposal, response) = match entry.kind {
            EntryKind::Normal => match Proposal::decode(&entry.data) {
                Ok(p) => {
                    let response = live.kv.apply(entry.index, p.client_id, p.seq, &p.payload);
                    (Some((p.client_id, p.seq)), Some(response))
                }
                Err(e) => return Err(format!("node {id}: bad proposal: {e}")),
            },
            _ => {
                live.kv.skip(entry.index);
                (None, None)
            }
        };
        if entry.kind == EntryKind::Config && self.pending_change == Some(entry.index) {
            self.pending_change = None;
        }
        let now = self.now;
        for client in &mut self.clients {
            let Some(op) = client.current.as_mut() else {
                continue;
            };
            // The request is answered by (client id, sequence number): whichever of its
            // proposals (retries included) is applied first carries its one effect, and every
            // later one answers with the same response.
            if let (Some((client_id, seq)), Some(response)) = (proposal, &response)
                && client_id == client.id
                && seq == op.seq
            {
                if response.as_slice() == b"stale" {
                    return Err(format!(
                        "seed {}: client {} got a stale answer",
                        self.seed, client.id
                    ));
                }
                let outcome = match op.call {
                    Call::Write(_) => Outcome::WriteOk,
                    Call::Cas { .. } => Outcome::CasOk(response.as_slice() == [1]),
                    Call::Read => Outcome::Info,
                };
                self.history
                    .complete(op.op, outcome, now)
                    .map_err(|e| e.to_string())?;
                self.stats.ops_ok += 1;
                client.current = None;
                continue;
            }
            // The entry this client waits for was overwritten: propose again.
            if let Waiting::Proposed {
                node, index, term, ..
            } = op.waiting
                && node == id
                && index == entry.index
                && term != entry.term
            {
                op.waiting = Waiting::Retry { at: now + 1 };
            }
        }
        Ok(())
    }

    fn complete_writes(&mut self, id: NodeId) -> Result<(), String> {
        let now = self.now;
        loop {
            let Some(node) = self.nodes.get_mut(&id) else {
                return Ok(());
            };
            let Some(live) = node.live.as_mut() else {
                return Ok(());
            };
            if live.paused_until.is_some() {
                return Ok(());
            }
            let Some(front) = live.writes.front() else {
                return Ok(());
            };
            if front.due > now {
                return Ok(());
            }
            let Some(write) = live.writes.pop_front() else {
                return Ok(());
            };
            let d = &mut node.durable;
            for op in write.ops {
                match op {
                    WriteOp::Install(meta, data) => {
                        if d.store.term(meta.index).map_err(|e| e.to_string())? != Some(meta.term) {
                            let (point, _) = d.store.snapshot_point();
                            d.store.truncate_after(point).map_err(|e| e.to_string())?;
                        }
                        d.store
                            .compact(meta.index, meta.term)
                            .map_err(|e| e.to_string())?;
                        d.snapshot = meta;
                        d.snapshot_data = data;
                    }
                    WriteOp::Entries(entries) => {
                        let wal: Vec<shoal_wal::Entry> =
                            entries.iter().map(Entry::to_wal).collect();
                        d.store
                            .append(&wal)
                            .map_err(|e| format!("node {id}: {e}"))?;
                    }
                    WriteOp::HardState(hs) => {
                        d.store.save_hard_state(&hs).map_err(|e| e.to_string())?;
                    }
                    WriteOp::Compact(index, term) => {
                        if d.snapshot.index >= index {
                            d.store.compact(index, term).map_err(|e| e.to_string())?;
                        }
                    }
                }
            }
            live.core.on_persisted(write.number);
            for m in write.msgs {
                self.send(m);
            }
        }
    }

    fn maybe_snapshot(&mut self, id: NodeId) -> Result<(), String> {
        let every = self.faults.snapshot_every;
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let Some(live) = node.live.as_mut() else {
            return Ok(());
        };
        let applied = live.kv.applied;
        if applied < live.core.snapshot().index + every {
            return Ok(());
        }
        let meta = live
            .core
            .snapshot_meta(applied)
            .map_err(|e| e.to_string())?;
        let data = live.kv.snapshot();
        // The snapshot file is written and synced before the core hears of it.
        node.durable.snapshot = meta.clone();
        node.durable.snapshot_data = data.clone();
        live.current_snapshot = (meta, data);
        live.core
            .snapshot_taken(applied)
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    // ------------------------------------------------------------ clients

    fn client_keys(&self) -> Vec<Vec<u8>> {
        (self.key_base..self.key_base + 3)
            .map(|k| format!("k{k}").into_bytes())
            .collect()
    }

    fn clients_act(&mut self) -> Result<(), String> {
        let now = self.now;
        if now.is_multiple_of(150) {
            self.key_base += 3;
        }
        for c in 0..self.clients.len() {
            if self.clients[c].current.is_none() {
                if self.clients[c].idle_until > now || !self.rng.random_bool(0.3) {
                    continue;
                }
                self.invoke(c);
            }
            let Some(op) = self.clients[c].current.as_ref() else {
                continue;
            };
            if now >= op.deadline {
                let op = self.clients[c].current.take().ok_or("no op")?;
                if op.must_succeed {
                    fail!(
                        self,
                        "liveness: client {} op {:?} timed out",
                        self.clients[c].id,
                        op.call
                    );
                }
                self.history
                    .complete(op.op, Outcome::Info, now)
                    .map_err(|e| e.to_string())?;
                self.stats.ops_info += 1;
                self.clients[c].idle_until = now + 5;
                continue;
            }
            let resubmit = match op.waiting {
                Waiting::Retry { at } => at <= now,
                // A request may be lost (a deposed leader, a dropped message): ask again with
                // the same sequence number; the session table applies it at most once.
                Waiting::Proposed { since, .. } | Waiting::Reading { since, .. } => {
                    now >= since + RESUBMIT_TICKS
                }
            };
            if resubmit {
                match op.waiting {
                    Waiting::Reading { read_id, .. } => {
                        self.reads.remove(&read_id);
                        self.clients[c].leader_guess = None;
                    }
                    Waiting::Proposed { .. } => self.clients[c].leader_guess = None,
                    Waiting::Retry { .. } => {}
                }
                self.submit(c)?;
            }
        }
        Ok(())
    }

    fn invoke(&mut self, c: usize) {
        let keys = self.client_keys();
        let key = keys[self.rng.random_range(0..keys.len())].clone();
        self.keys_used.insert(key.clone());
        let client = &mut self.clients[c];
        client.seq += 1;
        let value = format!("c{}-{}", client.id, client.seq).into_bytes();
        let roll = self.rng.random_range(0..10);
        let call = match roll {
            0..=2 => Call::Read,
            3..=6 => Call::Write(value),
            _ => {
                let expected = if self.rng.random_bool(0.3) {
                    None
                } else {
                    let other = self.rng.random_range(0..self.clients.len());
                    let other = &self.clients[other];
                    Some(format!("c{}-{}", other.id, other.seq.saturating_sub(1)).into_bytes())
                };
                Call::Cas {
                    expected,
                    new: value,
                }
            }
        };
        let client = &mut self.clients[c];
        let op = self
            .history
            .invoke(client.id, key.clone(), call.clone(), self.now);
        let timeout = if self.faulty { 120 } else { 250 };
        client.current = Some(ClientOp {
            op,
            call,
            key,
            seq: client.seq,
            invoked: self.now,
            deadline: self.now + timeout,
            waiting: Waiting::Retry { at: self.now },
            proposed_once: false,
            must_succeed: !self.faulty,
        });
    }

    fn submit(&mut self, c: usize) -> Result<(), String> {
        let live = self.live_ids();
        if live.is_empty() {
            if let Some(op) = self.clients[c].current.as_mut() {
                op.waiting = Waiting::Retry { at: self.now + 1 };
            }
            return Ok(());
        }
        let target = match self.clients[c].leader_guess {
            Some(g) if self.rng.random_bool(0.9) => g,
            _ => live[self.rng.random_range(0..live.len())],
        };
        let now = self.now;
        let client_id = self.clients[c].id;
        let Some(op) = self.clients[c].current.as_ref() else {
            return Ok(());
        };
        let seq = op.seq;
        let call = op.call.clone();
        let key = op.key.clone();
        let up = self.is_up(target);
        let read_id = self.next_read_id;
        let lease = self.rng.random_bool(0.5);
        let result = match self.nodes.get_mut(&target).and_then(|n| n.live.as_mut()) {
            Some(live) if up => match &call {
                Call::Read => {
                    let r = if lease {
                        live.core.read_lease(read_id)
                    } else {
                        live.core.read_index(read_id)
                    };
                    r.map(|()| Waiting::Reading {
                        node: target,
                        read_id,
                        since: now,
                    })
                }
                Call::Write(value) => {
                    let payload = KvOp::Write {
                        key,
                        value: value.clone(),
                    }
                    .encode();
                    let term = live.core.term();
                    live.core
                        .propose(Proposal::encode(client_id, seq, &payload))
                        .map(|index| Waiting::Proposed {
                            node: target,
                            index,
                            term,
                            since: now,
                        })
                }
                Call::Cas { expected, new } => {
                    let payload = KvOp::Cas {
                        key,
                        expected: expected.clone(),
                        new: new.clone(),
                    }
                    .encode();
                    let term = live.core.term();
                    live.core
                        .propose(Proposal::encode(client_id, seq, &payload))
                        .map(|index| Waiting::Proposed {
                            node: target,
                            index,
                            term,
                            since: now,
                        })
                }
            },
            _ => Err(Error::NotLeader { leader: None }),
        };
        trace!(
            self,
            "client {client_id} seq {seq} -> node {target}: {result:?}"
        );
        let client = &mut self.clients[c];
        let Some(op) = client.current.as_mut() else {
            return Ok(());
        };
        match result {
            Ok(waiting) => {
                if let Waiting::Reading { read_id, .. } = waiting {
                    self.next_read_id += 1;
                    self.reads.insert(read_id, c);
                } else {
                    op.proposed_once = true;
                }
                client.leader_guess = Some(target);
                op.waiting = waiting;
            }
            Err(Error::NotLeader { leader }) => {
                client.leader_guess = leader;
                op.waiting = Waiting::Retry { at: now + 1 };
            }
            Err(_) => {
                op.waiting = Waiting::Retry { at: now + 2 };
            }
        }
        Ok(())
    }

    fn serve_reads(&mut self) -> Result<(), String> {
        let now = self.now;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let Some(live) = self.nodes.get_mut(&id).and_then(|n| n.live.as_mut()) else {
                continue;
            };
            if live.paused_until.is_some() {
                continue;
            }
            let applied = live.kv.applied;
            let mut served = Vec::new();
            live.ready_reads.retain(|&(read_id, index)| {
                if index <= applied && read_id != FINAL_READ {
                    served.push(read_id);
                    false
                } else {
                    true
                }
            });
            for read_id in served {
                let Some(c) = self.reads.remove(&read_id) else {
                    continue;
                };
                let Some(op) = self.clients[c].current.as_ref() else {
                    continue;
                };
                if !matches!(op.waiting, Waiting::Reading { read_id: r, .. } if r == read_id) {
                    continue;
                }
                let value = self.nodes[&id]
                    .live
                    .as_ref()
                    .and_then(|l| l.kv.map.get(&op.key).cloned());
                let opid = op.op;
                self.history
                    .complete(opid, Outcome::ReadOk(value), now)
                    .map_err(|e| e.to_string())?;
                self.stats.ops_ok += 1;
                self.clients[c].current = None;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ faults

    fn inject_faults(&mut self) -> Result<(), String> {
        let now = self.now;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        // Restarts and resumes.
        for &id in &ids {
            let node = &self.nodes[&id];
            if node.live.is_none() && node.restart_at <= now {
                self.start(id)?;
            }
            self.maybe_resume(id);
        }
        self.blocked.retain(|_, heal| *heal > now);
        let members: Vec<NodeId> = ids
            .iter()
            .copied()
            .filter(|id| self.nodes[id].live.is_some())
            .collect();
        if members.is_empty() {
            return Ok(());
        }
        if self.rng.random_bool(self.faults.crash) {
            // Prefer a node with writes in flight: that is where unpersisted state hides.
            let busy: Vec<NodeId> = members
                .iter()
                .copied()
                .filter(|id| {
                    self.nodes[id]
                        .live
                        .as_ref()
                        .is_some_and(|l| !l.writes.is_empty())
                })
                .collect();
            let pool = if !busy.is_empty() && self.rng.random_bool(0.7) {
                busy
            } else {
                members.clone()
            };
            let victim = pool[self.rng.random_range(0..pool.len())];
            self.crash(victim);
        }
        if self.rng.random_bool(self.faults.pause) {
            let victim = members[self.rng.random_range(0..members.len())];
            let until = now + self.rng.random_range(5..60);
            if let Some(live) = self.nodes.get_mut(&victim).and_then(|n| n.live.as_mut())
                && live.paused_until.is_none()
            {
                live.paused_until = Some(until);
                live.paused_at = now;
                trace!(self, "pause {victim} until {until}");
            }
        }
        if self.blocked.is_empty() && self.rng.random_bool(self.faults.partition) {
            let until = now + self.rng.random_range(20..150);
            let all: Vec<NodeId> = ids.clone();
            match self.rng.random_range(0..3) {
                0 => {
                    // Symmetric split.
                    let mut shuffled = all.clone();
                    shuffled.shuffle(&mut self.rng);
                    let cut = self.rng.random_range(1..shuffled.len());
                    let (a, b) = shuffled.split_at(cut);
                    for &x in a {
                        for &y in b {
                            self.blocked.insert((x, y), until);
                            self.blocked.insert((y, x), until);
                        }
                    }
                }
                1 => {
                    // One node cut off in one direction only.
                    let x = all[self.rng.random_range(0..all.len())];
                    let outgoing = self.rng.random_bool(0.5);
                    for &y in &all {
                        if y != x {
                            self.blocked
                                .insert(if outgoing { (x, y) } else { (y, x) }, until);
                        }
                    }
                }
                _ => {
                    // A few random one-way links.
                    for _ in 0..self.rng.random_range(1..=4) {
                        let x = all[self.rng.random_range(0..all.len())];
                        let y = all[self.rng.random_range(0..all.len())];
                        if x != y {
                            self.blocked.insert((x, y), until);
                        }
                    }
                }
            }
            trace!(self, "partition {:?}", self.blocked);
        }
        if self.rng.random_bool(self.faults.membership) {
            self.change_membership();
        }
        if self.rng.random_bool(self.faults.transfer)
            && let Some(leader) = self.leader()
        {
            let voters = self.nodes[&leader]
                .live
                .as_ref()
                .map(|l| l.core.membership().voters.clone())
                .unwrap_or_default();
            let target = voters[self.rng.random_range(0..voters.len())];
            if let Some(live) = self.nodes.get_mut(&leader).and_then(|n| n.live.as_mut())
                && live.core.transfer_leader(target).is_ok()
            {
                trace!(self, "transfer {leader} -> {target}");
                self.stats.transfers += 1;
            }
        }
        Ok(())
    }

    fn maybe_resume(&mut self, id: NodeId) {
        let now = self.now;
        let Some(live) = self.nodes.get_mut(&id).and_then(|n| n.live.as_mut()) else {
            return;
        };
        if let Some(until) = live.paused_until
            && (until <= now || !self.faulty)
        {
            live.paused_until = None;
            // The monotonic clock went on during the pause: catch up on the ticks missed.
            for _ in live.paused_at..now {
                live.core.tick();
            }
        }
    }

    fn change_membership(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let Some(live) = self.nodes.get(&leader).and_then(|n| n.live.as_ref()) else {
            return;
        };
        let membership = live.core.membership().clone();
        let n = self.initial.len();
        let change = if let Some(&learner) = membership.learners.first() {
            MembershipChange::PromoteLearner(learner)
        } else if membership.voters.len() > n {
            let voters = &membership.voters;
            MembershipChange::RemoveNode(voters[self.rng.random_range(0..voters.len())])
        } else if let Some(&spare) = self.spares.first() {
            MembershipChange::AddLearner(spare)
        } else {
            return;
        };
        let Some(live) = self.nodes.get_mut(&leader).and_then(|n| n.live.as_mut()) else {
            return;
        };
        if let Ok(index) = live.core.propose_membership(change) {
            if let MembershipChange::AddLearner(id) = change {
                self.spares.retain(|&s| s != id);
            }
            self.pending_change = Some(index);
            trace!(self, "leader {leader}: {change:?} at {index}");
            self.stats.membership_changes += 1;
        }
    }

    // ------------------------------------------------------------ invariants

    fn check_invariants(&mut self) -> Result<(), String> {
        let mut newly_committed = Vec::new();
        for (&id, node) in &mut self.nodes {
            let Some(live) = node.live.as_mut() else {
                continue;
            };
            let core = &live.core;
            let (term, commit, applied, last) = (
                core.term(),
                core.commit_index(),
                core.applied_index(),
                core.last_index(),
            );
            if term < live.last_term {
                return Err(format!(
                    "seed {}: node {id} term went back {} -> {term}",
                    self.seed, live.last_term
                ));
            }
            if commit < live.last_commit {
                return Err(format!(
                    "seed {}: node {id} commit went back {} -> {commit}",
                    self.seed, live.last_commit
                ));
            }
            if applied < live.last_applied {
                return Err(format!("seed {}: node {id} applied went back", self.seed));
            }
            if !(applied <= commit && commit <= last) {
                return Err(format!(
                    "seed {}: node {id} applied {applied} commit {commit} last {last}",
                    self.seed
                ));
            }
            if core.role() == Role::Leader {
                match self.leaders.get(&term) {
                    Some(&other) if other != id => {
                        return Err(format!(
                            "seed {} tick {}: election safety: {other} and {id} lead term {term}",
                            self.seed, self.now
                        ));
                    }
                    _ => {
                        self.leaders.insert(term, id);
                    }
                }
            }
            if core.role() == Role::Leader
                && commit > live.last_commit
                && self.faulty
                && self.rng.random_bool(self.faults.crash_on_commit)
            {
                self.crash_soon.push(id);
            }
            for index in (live.last_commit + 1).max(core.first_index())..=commit {
                if let Some(entry) = core.entry(index) {
                    newly_committed.push((id, index, entry.term, hash_entry(entry)));
                }
            }
            live.last_term = term;
            live.last_commit = commit;
            live.last_applied = applied;
            self.stats.max_term = self.stats.max_term.max(term);
        }
        for (id, index, term, h) in newly_committed {
            match self.committed.get(&index) {
                Some(&(t, h0)) if (t, h0) != (term, h) => {
                    fail!(
                        self,
                        "node {id} commits ({index}, term {term}) but term {t} was committed there"
                    );
                }
                Some(_) => {}
                None => {
                    self.committed.insert(index, (term, h));
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ the run

    fn step_tick(&mut self) -> Result<(), String> {
        self.now += 1;
        if self.trace && self.now.is_multiple_of(50) {
            for (id, node) in &self.nodes {
                if let Some(l) = &node.live {
                    let c = &l.core;
                    eprintln!(
                        "[{:>5}]   node {id}: {:?} t{} commit {} applied {} persisted {} last {} snap {} members {:?} writes {}",
                        self.now,
                        c.role(),
                        c.term(),
                        c.commit_index(),
                        c.applied_index(),
                        c.persisted_index(),
                        c.last_index(),
                        c.snapshot().index,
                        c.membership(),
                        l.writes.len()
                    );
                }
            }
        }
        if self.faulty {
            self.inject_faults()?;
        }
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &id in &ids {
            if self.is_up(id)
                && let Some(live) = self.nodes.get_mut(&id).and_then(|n| n.live.as_mut())
            {
                live.core.tick();
            }
        }
        self.deliver()?;
        for &id in &ids {
            self.complete_writes(id)?;
        }
        self.clients_act()?;
        for &id in &ids {
            self.process_ready(id)?;
            self.maybe_snapshot(id)?;
            self.process_ready(id)?;
        }
        self.serve_reads()?;
        self.check_invariants()?;
        let now = self.now;
        let mut due: Vec<NodeId> = std::mem::take(&mut self.crash_soon);
        self.crash_later.retain(|&(at, id)| {
            if at <= now {
                due.push(id);
                false
            } else {
                true
            }
        });
        if self.faulty {
            for id in due {
                // A targeted crash: the node dies right after deciding, before it flushed
                // what it decided to send.
                self.net.retain(|(_, _, m)| m.from != id);
                self.crash(id);
            }
            for id in std::mem::take(&mut self.crash_after_send) {
                self.crash(id);
            }
        }
        self.crash_after_send.clear();
        Ok(())
    }

    fn heal(&mut self) -> Result<(), String> {
        self.faulty = false;
        self.blocked.clear();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            if self.nodes[&id].live.is_none() {
                self.start(id)?;
            }
            self.maybe_resume(id);
        }
        Ok(())
    }

    /// Runs the safety phase, then the liveness phase, then the final linearizability check.
    pub fn run(&mut self, safety_ticks: u64) -> Result<(), String> {
        for _ in 0..safety_ticks {
            self.step_tick()?;
        }
        self.heal()?;
        let healed = self.now;
        // A leader within a bounded number of ticks.
        let bound = 10 * u64::from(ELECTION_MAX);
        loop {
            self.step_tick()?;
            if let Some(leader) = self.leader() {
                let term = self.nodes[&leader]
                    .live
                    .as_ref()
                    .map_or(0, |l| l.core.term());
                let voters = self.nodes[&leader]
                    .live
                    .as_ref()
                    .map(|l| l.core.membership().voters.clone())
                    .unwrap_or_default();
                let agreed = voters.iter().all(|v| {
                    self.nodes[v]
                        .live
                        .as_ref()
                        .is_some_and(|l| l.core.term() == term && l.core.leader() == Some(leader))
                });
                if agreed {
                    break;
                }
            }
            if self.now > healed + bound {
                fail!(
                    self,
                    "liveness: no stable leader {bound} ticks after healing"
                );
            }
        }
        // Operations issued now must succeed.
        for _ in 0..200 {
            self.step_tick()?;
        }
        // Then every pending operation completes.
        for client in &mut self.clients {
            client.idle_until = u64::MAX;
        }
        let deadline = self.now + 400;
        while self.clients.iter().any(|c| c.current.is_some()) {
            self.step_tick()?;
            if self.now > deadline {
                fail!(
                    self,
                    "liveness: operations still pending 400 ticks after a leader"
                );
            }
        }
        // Read every key back through the leader.
        let final_values = self.final_reads()?;
        let report = check_final_reads(&self.history, &final_values, &CheckConfig::default())
            .map_err(|e| format!("seed {}: malformed history: {e}", self.seed))?;
        if !report.is_linearizable() {
            fail!(self, "not linearizable: {}", report.verdict);
        }
        self.stats.ticks = self.now;
        Ok(())
    }

    fn final_reads(&mut self) -> Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>, String> {
        for _ in 0..200 {
            let Some(leader) = self.leader() else {
                self.step_tick()?;
                continue;
            };
            let read_id = FINAL_READ;
            let live = self.live_mut(leader)?;
            if live.core.read_index(read_id).is_err() {
                self.step_tick()?;
                continue;
            }
            for _ in 0..200 {
                self.step_tick()?;
                let Some(live) = self.nodes.get(&leader).and_then(|n| n.live.as_ref()) else {
                    break;
                };
                if let Some(&(_, index)) = live.ready_reads.iter().find(|(r, _)| *r == read_id)
                    && live.kv.applied >= index
                {
                    return Ok(self
                        .keys_used
                        .iter()
                        .map(|k| (k.clone(), live.kv.map.get(k).cloned()))
                        .collect());
                }
            }
        }
        fail!(self, "final read never served")
    }
}

/// Runs one seed on `nodes` nodes.
/// A panic inside the core (a failed assertion) is reported as a failure of the seed.
pub fn run(seed: u64, nodes: usize, safety_ticks: u64) -> Result<Stats, String> {
    let outcome = std::panic::catch_unwind(|| {
        let mut sim = Sim::new(seed, nodes);
        sim.run(safety_ticks)?;
        Ok(sim.stats.clone())
    });
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("seed {seed}: panic: {message}"))
        }
    }
}
