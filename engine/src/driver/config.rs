//! [`NodeBuilder`]: everything a node needs to start, and [`SnapshotPolicy`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::StateMachine;
use crate::core::{self, NodeId};

use super::transport::Transport;
use super::{Error, NodeHandle};

/// When the driver snapshots the state machine and compacts the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Take a snapshot once this many entries were applied since the last one.
    pub max_log_entries: u64,
    /// Take a snapshot once this many payload bytes were applied since the last one.
    pub max_log_bytes: u64,
    /// Snapshot files kept on disk (at least 1).
    pub keep: usize,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self {
            max_log_entries: 100_000,
            max_log_bytes: 256 << 20,
            keep: 2,
        }
    }
}

/// Timing given in wall-clock terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Timing {
    pub heartbeat: Option<Duration>,
    pub election: Option<(Duration, Duration)>,
    pub lease: Option<Duration>,
}

/// The configuration of one node, built with chained calls and started with
/// [`NodeBuilder::start`]. TLS material and addresses belong to the transport (the `bin`
/// crate's QUIC transport), not here.
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    /// This node's id (never 0).
    pub(crate) id: NodeId,
    /// The data directory: `wal/` and `snapshots/` live under it.
    pub(crate) data_dir: PathBuf,
    /// The voters the cluster was created with: the same list on every node, including nodes
    /// added later (a node not in it starts as a non-voting member waiting to be added).
    pub(crate) voters: Vec<NodeId>,
    /// Wall-clock length of one logical tick of the core.
    pub(crate) tick: Duration,
    /// The core's configuration (timing in ticks, flow control, features).
    pub(crate) raft: core::Config,
    /// Wall-clock timing, converted to ticks at start (overrides `raft`'s tick counts).
    pub(crate) timing: Timing,
    /// When to snapshot.
    pub(crate) snapshot: SnapshotPolicy,
    /// How long a handle waits for an answer before [`Error::Timeout`].
    pub(crate) request_timeout: Duration,
    /// Size of each WAL segment file.
    pub(crate) wal_segment_bytes: u64,
    /// Capacity of the queue of messages from peers (more are dropped, as a lossy network
    /// would).
    pub(crate) peer_queue: usize,
    /// Capacity of the queue of requests from handles (callers wait when it is full).
    pub(crate) request_queue: usize,
    /// Most committed entries handed to the apply thread and not yet applied; beyond it a
    /// leader refuses new proposals with [`Error::Busy`] until the state machine catches up.
    pub(crate) max_apply_lag: u64,
    /// Largest payload a proposal may carry.
    pub(crate) max_proposal_bytes: usize,
    /// Bound on the WAL's bytes on disk: past it the node snapshots (and so compacts).
    pub(crate) wal_max_bytes: u64,
}

impl NodeBuilder {
    /// A node `id` keeping its state in `data_dir`, with defaults: a 10 ms tick, heartbeats
    /// every 100 ms, elections after 1–2 s, snapshots every 100,000 entries, 64 MiB WAL
    /// segments, 5 s request timeout.
    pub fn new(id: NodeId, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            id,
            data_dir: data_dir.into(),
            voters: Vec::new(),
            tick: Duration::from_millis(10),
            raft: core::Config::new(id),
            timing: Timing::default(),
            snapshot: SnapshotPolicy::default(),
            request_timeout: Duration::from_secs(5),
            wal_segment_bytes: 64 << 20,
            peer_queue: 16 * 1024,
            request_queue: 16 * 1024,
            max_apply_lag: 64 * 1024,
            max_proposal_bytes: 4 << 20,
            wal_max_bytes: 1 << 30,
        }
    }

    /// The voters of the cluster at creation: the same list on every node and at every start,
    /// including nodes added later (a node outside it starts as a non-member and waits to be
    /// added with [`NodeHandle::add_learner`] or [`NodeHandle::add_voter`]). Later changes
    /// live in the log, not here.
    pub fn voters(mut self, voters: impl IntoIterator<Item = NodeId>) -> Self {
        self.voters = voters.into_iter().collect();
        self
    }

    /// The wall-clock length of one tick (default 10 ms). Ticks missed while the loop was
    /// busy are caught up, so a leader's lease never outlasts its wall-clock length.
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// Adjusts the core's configuration (timing in ticks, flow control, pre-vote, lease
    /// reads). Its `id` is forced to the node's id and its seed drawn at start.
    pub fn raft_config(mut self, adjust: impl FnOnce(&mut core::Config)) -> Self {
        adjust(&mut self.raft);
        self
    }

    /// The leader's heartbeat interval (default 100 ms), rounded up to whole ticks.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.timing.heartbeat = Some(interval);
        self
    }

    /// The range of the randomized election timeout (default 1–2 s), rounded up to whole
    /// ticks.
    pub fn election_timeout(mut self, min: Duration, max: Duration) -> Self {
        self.timing.election = Some((min, max));
        self
    }

    /// The leader lease for lease reads (default 800 ms), rounded down to whole ticks; it
    /// must end before the shortest election timeout by the drift margin (100 ms by default).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.timing.lease = Some(lease);
        self
    }

    /// When to snapshot and how many snapshot files to keep.
    pub fn snapshot_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshot = policy;
        self
    }

    /// How long a handle waits for an answer (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Size of each WAL segment file (default 64 MiB; at least 4096 and a multiple of 8).
    pub fn wal_segment_bytes(mut self, bytes: u64) -> Self {
        self.wal_segment_bytes = bytes;
        self
    }

    /// Most committed entries waiting for the state machine before a leader refuses new
    /// proposals with [`Error::Busy`] (default 65,536): backpressure from a slow state machine.
    pub fn max_apply_lag(mut self, entries: u64) -> Self {
        self.max_apply_lag = entries;
        self
    }

    /// Bound on the WAL's bytes on disk (default 1 GiB; at least two segments): when the
    /// segments (checked about once a second) grow past it, the node takes a snapshot so the
    /// compaction that follows drops the oldest ones.
    pub fn wal_max_bytes(mut self, bytes: u64) -> Self {
        self.wal_max_bytes = bytes;
        self
    }

    /// Largest payload a proposal may carry (default 4 MiB); larger ones are refused with
    /// [`Error::ProposalTooLarge`]. An entry must fit in one message of the transport.
    pub fn max_proposal_bytes(mut self, bytes: usize) -> Self {
        self.max_proposal_bytes = bytes;
        self
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), Error> {
        if self.id == 0 {
            return Err(Error::Config("node id must not be 0".into()));
        }
        if self.voters.is_empty() {
            return Err(Error::Config(
                "the initial voters must be given (voters([...]))".into(),
            ));
        }
        if self.voters.contains(&0) {
            return Err(Error::Config("node id 0 is not a valid voter".into()));
        }
        if self.tick.is_zero() {
            return Err(Error::Config("tick must be positive".into()));
        }
        if self.request_timeout.is_zero() {
            return Err(Error::Config("request_timeout must be positive".into()));
        }
        if self.snapshot.max_log_entries == 0 || self.snapshot.max_log_bytes == 0 {
            return Err(Error::Config(
                "snapshot policy thresholds must be positive".into(),
            ));
        }
        if self.wal_max_bytes < self.wal_segment_bytes.saturating_mul(2) {
            return Err(Error::Config(format!(
                "wal_max_bytes ({}) must be at least two segments ({} bytes each)",
                self.wal_max_bytes, self.wal_segment_bytes
            )));
        }
        if self.max_proposal_bytes == 0 {
            return Err(Error::Config("max_proposal_bytes must be positive".into()));
        }
        if self.max_apply_lag == 0 {
            return Err(Error::Config("max_apply_lag must be positive".into()));
        }
        if self.peer_queue == 0 || self.request_queue == 0 {
            return Err(Error::Config("queue capacities must be positive".into()));
        }
        self.resolved_raft_config()?;
        let mut wal = shoal_wal::WalOptions::for_data_dir(&self.data_dir);
        wal.segment_bytes = self.wal_segment_bytes;
        wal.validate()?;
        Ok(())
    }

    /// The core's configuration with the node's id and the wall-clock timing in ticks,
    /// validated (the seed is drawn at start).
    pub(crate) fn resolved_raft_config(&self) -> Result<core::Config, Error> {
        let ticks = |d: Duration, round_up: bool| -> u32 {
            let tick = self.tick.as_nanos().max(1);
            let n =
                d.as_nanos() / tick + u128::from(round_up && !d.as_nanos().is_multiple_of(tick));
            u32::try_from(n).unwrap_or(u32::MAX)
        };
        let mut raft = self.raft.clone();
        raft.id = self.id;
        if let Some(heartbeat) = self.timing.heartbeat {
            raft.heartbeat_ticks = ticks(heartbeat, true);
        }
        if let Some((min, max)) = self.timing.election {
            raft.election_ticks_min = ticks(min, true);
            raft.election_ticks_max = ticks(max, true);
        }
        if let Some(lease) = self.timing.lease {
            raft.lease_ticks = ticks(lease, false);
        }
        raft.validate()
            .map_err(|e| Error::Config(format!("raft: {e}")))?;
        Ok(raft)
    }

    /// Opens (or creates) the node's storage, recovers it (latest snapshot, WAL, state
    /// machine), and starts the node. Inbound messages reach it through
    /// [`NodeHandle::deliver`]; outbound ones leave through `transport`.
    ///
    /// Must be called inside a tokio runtime (multi-threaded for best results: the event
    /// loop runs rare blocking steps, such as saving a new term, in place).
    #[tracing::instrument(skip_all, fields(node = self.id, data_dir = %self.data_dir.display()))]
    pub async fn start<S: StateMachine>(
        self,
        state_machine: S,
        transport: Arc<dyn Transport>,
    ) -> Result<NodeHandle, Error> {
        self.validate()?;
        super::event_loop::start(self, state_machine, transport).await
    }
}
