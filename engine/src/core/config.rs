//! The core's configuration: timing in logical ticks, flow control, features.

use super::NodeId;

/// Configuration of one Raft core. Timing is in logical ticks: the driver calls
/// [`crate::core::RawNode::tick`] at a fixed interval (for example every 10 ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This node's id; never 0.
    pub id: NodeId,
    /// Ticks between a leader's heartbeats. Must be below `election_ticks_min`.
    pub heartbeat_ticks: u32,
    /// Lower bound (inclusive) of the randomized election timeout, in ticks. Also the period
    /// of the leader's check-quorum and the window in which a follower that heard from a leader
    /// ignores vote requests.
    pub election_ticks_min: u32,
    /// Upper bound (exclusive) of the randomized election timeout, in ticks; above
    /// `election_ticks_min`.
    pub election_ticks_max: u32,
    /// Run a pre-vote round before raising the term, so a node that was partitioned away cannot
    /// depose a healthy leader when it comes back.
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum within `election_ticks_min`
    /// ticks, and followers that heard from a leader within that window ignore vote requests.
    pub check_quorum: bool,
    /// Serve lease reads: a leader that heard from a quorum answers reads without a round
    /// trip for `lease_ticks` after the heartbeat round that confirmed it. Requires
    /// `check_quorum`.
    pub lease_reads: bool,
    /// Length of the leader lease, in ticks. Must be below `election_ticks_min` by at least
    /// `clock_drift_ticks`.
    pub lease_ticks: u32,
    /// Margin for clock drift between nodes, in ticks.
    pub clock_drift_ticks: u32,
    /// Most AppendEntries messages in flight (sent, unacknowledged) to one follower.
    pub max_inflight_msgs: usize,
    /// Most payload bytes in flight to one follower.
    pub max_inflight_bytes: usize,
    /// Most entries in one AppendEntries message.
    pub max_entries_per_msg: usize,
    /// Most payload bytes in one AppendEntries message (at least one entry is always sent).
    pub max_msg_bytes: usize,
    /// Most payload bytes of committed entries handed out in one `Ready` (at least one).
    pub max_apply_bytes: usize,
    /// Most bytes of a snapshot chunk; the driver reads at most this much per chunk.
    pub snapshot_chunk_bytes: usize,
    /// Most proposals accepted but not yet committed; more are refused with
    /// [`crate::core::ProposeError::Busy`] (backpressure).
    pub max_uncommitted_entries: usize,
    /// A leadership transfer is refused when the target lags the leader's last index by more
    /// than this many entries.
    pub max_transfer_lag: u64,
    /// A learner is promoted only when it lags the leader's commit index by at most this many
    /// entries.
    pub max_promotion_lag: u64,
    /// Seed of the core's random number generator (election timeouts). Give every node and
    /// every restart a different seed.
    pub seed: u64,
}

impl Config {
    /// Defaults for the given node id, tuned for a 10 ms tick: heartbeats every 100 ms,
    /// elections after 1–2 s, leases of 800 ms.
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            heartbeat_ticks: 10,
            election_ticks_min: 100,
            election_ticks_max: 200,
            pre_vote: true,
            check_quorum: true,
            lease_reads: true,
            lease_ticks: 80,
            clock_drift_ticks: 10,
            max_inflight_msgs: 256,
            max_inflight_bytes: 64 << 20,
            max_entries_per_msg: 4096,
            max_msg_bytes: 4 << 20,
            max_apply_bytes: 16 << 20,
            snapshot_chunk_bytes: 1 << 20,
            max_uncommitted_entries: 1 << 20,
            max_transfer_lag: 1000,
            max_promotion_lag: 1000,
            seed: id,
        }
    }

    /// Checks every field and their relations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        if self.heartbeat_ticks == 0 {
            return Err(ConfigError::Zero {
                field: "heartbeat_ticks",
            });
        }
        if self.election_ticks_min <= self.heartbeat_ticks {
            return Err(ConfigError::ElectionNotAboveHeartbeat {
                election_ticks_min: self.election_ticks_min,
                heartbeat_ticks: self.heartbeat_ticks,
            });
        }
        if self.election_ticks_max <= self.election_ticks_min {
            return Err(ConfigError::EmptyElectionRange {
                min: self.election_ticks_min,
                max: self.election_ticks_max,
            });
        }
        if self.lease_reads {
            if !self.check_quorum {
                return Err(ConfigError::LeaseWithoutCheckQuorum);
            }
            if self.lease_ticks == 0 {
                return Err(ConfigError::Zero {
                    field: "lease_ticks",
                });
            }
            if u64::from(self.lease_ticks) + u64::from(self.clock_drift_ticks)
                >= u64::from(self.election_ticks_min)
            {
                return Err(ConfigError::LeaseTooLong {
                    lease_ticks: self.lease_ticks,
                    clock_drift_ticks: self.clock_drift_ticks,
                    election_ticks_min: self.election_ticks_min,
                });
            }
        }
        for (field, value) in [
            ("max_inflight_msgs", self.max_inflight_msgs),
            ("max_inflight_bytes", self.max_inflight_bytes),
            ("max_entries_per_msg", self.max_entries_per_msg),
            ("max_msg_bytes", self.max_msg_bytes),
            ("max_apply_bytes", self.max_apply_bytes),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            ("max_uncommitted_entries", self.max_uncommitted_entries),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        Ok(())
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Node id 0 is reserved for "none".
    #[error("node id must not be 0")]
    ZeroId,
    /// A field that must be positive is 0.
    #[error("{field} must be positive")]
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// Heartbeats must come more often than elections.
    #[error(
        "election_ticks_min ({election_ticks_min}) must exceed heartbeat_ticks ({heartbeat_ticks})"
    )]
    ElectionNotAboveHeartbeat {
        /// The configured lower bound of the election timeout.
        election_ticks_min: u32,
        /// The configured heartbeat interval.
        heartbeat_ticks: u32,
    },
    /// The randomized election timeout needs a range.
    #[error("election_ticks_max ({max}) must exceed election_ticks_min ({min})")]
    EmptyElectionRange {
        /// Lower bound.
        min: u32,
        /// Upper bound.
        max: u32,
    },
    /// Lease reads are only safe when leaders step down on losing their quorum.
    #[error("lease_reads requires check_quorum")]
    LeaseWithoutCheckQuorum,
    /// The lease must end before any other node can be elected.
    #[error(
        "lease_ticks ({lease_ticks}) plus clock_drift_ticks ({clock_drift_ticks}) must be below election_ticks_min ({election_ticks_min})"
    )]
    LeaseTooLong {
        /// The configured lease.
        lease_ticks: u32,
        /// The configured drift margin.
        clock_drift_ticks: u32,
        /// The configured lower bound of the election timeout.
        election_ticks_min: u32,
    },
}
