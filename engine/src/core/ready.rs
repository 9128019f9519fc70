//! What the core hands the driver: [`Ready`], and the errors of its inputs.

use bytes::Bytes;

use super::{
    ConfigError, Entry, HardState, MembershipError, Message, MessageBody, NodeId, SnapshotMeta,
    SoftState,
};

/// A read whose linearization point is known: serve it once the state machine has applied
/// `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    /// The id given to [`crate::core::RawNode::read_index`].
    pub id: u64,
    /// The index the state machine must have applied before the read is answered.
    pub index: u64,
}

/// Leader side of a snapshot transfer: send the chunk of the current snapshot file that starts
/// at `offset` to `to`. The driver reads at most `max_len` bytes there and builds the message
/// with [`SnapshotSend::into_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSend {
    /// Sender (this node).
    pub from: NodeId,
    /// The follower.
    pub to: NodeId,
    /// The leader's term.
    pub term: u64,
    /// The snapshot to send (the leader's current one).
    pub meta: SnapshotMeta,
    /// Where the chunk starts in the snapshot file.
    pub offset: u64,
    /// Most bytes to put in the chunk.
    pub max_len: usize,
}

impl SnapshotSend {
    /// The InstallSnapshot message carrying `data` (read at `offset`); `done` when the chunk
    /// reaches the end of the file.
    pub fn into_message(self, data: Bytes, done: bool) -> Message {
        Message {
            from: self.from,
            to: self.to,
            term: self.term,
            body: MessageBody::InstallSnapshot {
                meta: self.meta,
                offset: self.offset,
                data,
                done,
            },
        }
    }
}

/// Follower side of a snapshot transfer: write `data` at `offset` of the incoming snapshot
/// file for `meta` (offset 0 starts a new file). Chunks come in order, without gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The snapshot being received.
    pub meta: SnapshotMeta,
    /// Where `data` goes.
    pub offset: u64,
    /// The bytes.
    pub data: Bytes,
    /// The file is complete: [`Ready::install_snapshot`] names it in the same `Ready`.
    pub done: bool,
}

/// Everything the core wants done, in the order the driver does it.
///
/// 1. `messages` may be sent at once (a leader replicates before its own fsync, Raft thesis
///    §10.2.1).
/// 2. `snapshot_chunks` are written to the incoming snapshot file; then, if
///    `install_snapshot` is set, the state machine is restored from that file, it becomes the
///    node's snapshot, and the log store is compacted to its point (discarding the whole log
///    when the store's entry at that index has another term).
/// 3. `entries` are appended to the log store (an entry at or below the store's last index
///    replaces it and everything after: a conflict), and `hard_state` is saved (in either
///    order: its commit index never exceeds what earlier `Ready`s made durable), then the
///    log store is compacted to `compact_log_to`.
/// 4. Once steps 2–3 of this and every earlier `Ready` are durable, `persisted_messages` may be
///    sent and [`crate::core::RawNode::on_persisted`] is called with `number`.
/// 5. `committed_entries` are applied in order (they are already durable on this node), after
///    any snapshot install of this `Ready`.
/// 6. `read_states` are answered once the state machine has applied their index;
///    `aborted_reads` are answered with an error (leadership lost; retry).
/// 7. `snapshot_sends` are served by reading the snapshot file.
#[derive(Debug, Default)]
pub struct Ready {
    /// Sequence number of this `Ready`, for [`crate::core::RawNode::on_persisted`].
    pub number: u64,
    /// Role, term or leader changed.
    pub soft_state: Option<SoftState>,
    /// Term, vote or commit changed: save it.
    pub hard_state: Option<HardState>,
    /// Chunks of an incoming snapshot to write.
    pub snapshot_chunks: Vec<SnapshotChunk>,
    /// An incoming snapshot is complete: install it. When set, it is the last thing
    /// `snapshot_chunks` wrote (the core takes no chunk of another snapshot in the same
    /// `Ready`).
    pub install_snapshot: Option<SnapshotMeta>,
    /// Entries to append durably (possibly replacing a conflicting suffix).
    pub entries: Vec<Entry>,
    /// A local snapshot was taken: compact the log store to `(index, term)`.
    pub compact_log_to: Option<(u64, u64)>,
    /// Messages that may leave now.
    pub messages: Vec<Message>,
    /// Messages that may leave only after this `Ready`'s writes are durable (votes, append
    /// acknowledgements, responses carrying a term not yet durable).
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply, in log order.
    pub committed_entries: Vec<Entry>,
    /// Reads ready to serve.
    pub read_states: Vec<ReadState>,
    /// Read requests that failed (leadership lost): the client retries.
    pub aborted_reads: Vec<u64>,
    /// Snapshot chunks to send to followers.
    pub snapshot_sends: Vec<SnapshotSend>,
}

impl Ready {
    /// Whether this `Ready` asks for any durable write.
    pub fn needs_persistence(&self) -> bool {
        self.hard_state.is_some()
            || !self.entries.is_empty()
            || !self.snapshot_chunks.is_empty()
            || self.install_snapshot.is_some()
            || self.compact_log_to.is_some()
    }
}

/// Why the core refused an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// Recovered state that cannot be right.
    #[error("invalid recovered state: {0}")]
    Recovery(String),
    /// Only the leader does this; `leader` is the one this node knows of.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The known leader, if any.
        leader: Option<NodeId>,
    },
    /// Too many uncommitted entries: retry later.
    #[error("too many uncommitted entries")]
    Busy,
    /// A leadership transfer is under way.
    #[error("leadership transfer to node {target} in progress")]
    TransferInProgress {
        /// The transfer's target.
        target: NodeId,
    },
    /// The leader has not yet committed an entry of its term (it must before serving reads
    /// or changing membership).
    #[error("the leader has not yet committed an entry of its term")]
    NotYetCommittedInTerm,
    /// Another membership change is not yet committed.
    #[error("membership change at index {index} is not yet committed")]
    MembershipChangePending {
        /// The pending change's index.
        index: u64,
    },
    /// The membership change is not valid.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// A learner is promoted only once caught up.
    #[error("learner {id} lags: matched {matched}, commit {commit}")]
    LearnerLagging {
        /// The learner.
        id: NodeId,
        /// Its match index.
        matched: u64,
        /// The leader's commit index.
        commit: u64,
    },
    /// The transfer target is not a voter.
    #[error("node {id} is not a voter")]
    NotVoter {
        /// The node.
        id: NodeId,
    },
    /// The transfer target's log lags too far behind.
    #[error("transfer target {id} lags: matched {matched}, last index {last_index}")]
    TargetLags {
        /// The target.
        id: NodeId,
        /// Its match index.
        matched: u64,
        /// The leader's last index.
        last_index: u64,
    },
    /// A snapshot point that is not applied or not in the log.
    #[error("cannot snapshot at {index}: {reason}")]
    InvalidSnapshot {
        /// The index asked for.
        index: u64,
        /// Why not.
        reason: &'static str,
    },
}
