//! The driver's [`Error`].

use std::path::PathBuf;
use std::time::Duration;

use crate::core::{self, NodeId};

/// Why a request to a node failed, or why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Only the leader does this. `leader` is the one this node knows of: a client layer
    /// redirects there.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// Too many proposals are in flight (backpressure): retry later.
    #[error("too many uncommitted proposals; retry later")]
    Busy,
    /// The proposal's payload is larger than the node accepts.
    #[error("proposal of {bytes} bytes exceeds the limit of {max} bytes")]
    ProposalTooLarge {
        /// The payload's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The proposal's log position was taken by another leader's entry: it was not applied.
    #[error("proposal at index {index} was replaced by another leader's entry; retry")]
    Dropped {
        /// The index the proposal had.
        index: u64,
    },
    /// The proposal may or may not have been applied (a snapshot from the leader covered its
    /// index, or the node stopped first). Retrying with the same client id and sequence
    /// number is safe.
    #[error(
        "outcome of the proposal at index {index} is unknown; retry with the same client id and sequence number"
    )]
    Indeterminate {
        /// The index the proposal had.
        index: u64,
    },
    /// Leadership was lost while a read waited for its read index: retry.
    #[error("leadership changed while the read was pending; retry")]
    ReadAborted,
    /// No answer in time. A proposal may still be applied later.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The node is shut down.
    #[error("node is shut down")]
    Shutdown,
    /// The node stopped after a fatal error (a poisoned WAL, a failing state machine).
    #[error("node stopped: {reason}")]
    Stopped {
        /// What stopped it.
        reason: String,
    },
    /// The WAL or a snapshot file failed.
    #[error("storage: {0}")]
    Storage(#[from] shoal_wal::Error),
    /// The state machine returned an error.
    #[error("state machine: {0}")]
    StateMachine(String),
    /// The Raft core refused the request (invalid membership change, transfer target lags,
    /// ...).
    #[error("refused: {0}")]
    Raft(core::Error),
    /// The node's configuration is invalid.
    #[error("invalid node configuration: {0}")]
    Config(String),
    /// What was found on disk at startup cannot be right.
    #[error("recovery failed: {0}")]
    Recovery(String),
    /// A file operation of the driver failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether retrying the same request (with the same client id and sequence number, for
    /// proposals), possibly on another node, may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. }
                | Error::Busy
                | Error::Dropped { .. }
                | Error::Indeterminate { .. }
                | Error::ReadAborted
                | Error::Timeout(_)
                | Error::Raft(core::Error::TransferInProgress { .. })
                | Error::Raft(core::Error::NotYetCommittedInTerm)
                | Error::Raft(core::Error::MembershipChangePending { .. })
        )
    }
}

impl From<core::Error> for Error {
    fn from(error: core::Error) -> Self {
        match error {
            core::Error::NotLeader { leader } => Error::NotLeader { leader },
            core::Error::Busy => Error::Busy,
            other => Error::Raft(other),
        }
    }
}
