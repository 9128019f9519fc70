//! [`Metrics`]: what a node shows of itself (`shoal status`).

use crate::core::{Membership, NodeId, Role};

/// A node's status. Fields match `shoal status --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// The node's id.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of in `term`.
    pub leader: Option<NodeId>,
    /// The highest index known committed.
    pub commit_index: u64,
    /// The highest index the state machine has applied (blank and configuration entries
    /// count as applied).
    pub applied_index: u64,
    /// The last index in the node's log.
    pub last_index: u64,
    /// The index of the node's latest snapshot (0: none).
    pub snapshot_index: u64,
    /// Bytes of WAL segment files on disk (refreshed about once a second and after each
    /// compaction).
    pub wal_bytes: u64,
    /// fdatasync calls of the WAL since the node started (group commit: far fewer than
    /// entries under concurrent load); refreshed with `wal_bytes`.
    pub wal_syncs: u64,
    /// The configuration in force (the latest in the log).
    pub membership: Membership,
    /// Set when the node has stopped: `"shut down"` after a clean shutdown, otherwise the
    /// fatal error that stopped it.
    pub stopped: Option<String>,
}

impl Metrics {
    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
}
