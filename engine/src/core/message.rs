//! Messages between Raft peers. They derive rkyv for the wire; bytes received are validated
//! with [`Message::decode`] before the core sees them.

use bytes::Bytes;
use rkyv::{Archive, Deserialize, Serialize, rancor};

use super::{Entry, NodeId, SnapshotMeta};

/// One message between two peers.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request and its grant: the term the candidate would
    /// campaign in).
    pub term: u64,
    /// What the message says.
    pub body: MessageBody,
}

/// Why a follower refused an AppendEntries, so the leader can skip back a whole term at once.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectHint {
    /// The `prev_index` of the refused message.
    pub rejected_prev_index: u64,
    /// The term of the follower's entry at `prev_index`, when it has one.
    pub conflict_term: Option<u64>,
    /// The first index of `conflict_term` in the follower's log, or its last index + 1 when its
    /// log is too short.
    pub conflict_index: u64,
}

/// The content of a [`Message`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum MessageBody {
    /// Leader → follower: entries following `prev_index`, and the leader's commit index.
    Append {
        /// Index of the entry before `entries`.
        prev_index: u64,
        /// Term of that entry.
        prev_term: u64,
        /// Contiguous entries from `prev_index + 1`; may be empty (a probe).
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: u64,
    },
    /// Follower → leader: the answer to `Append`.
    AppendResponse {
        /// On success, the follower's log matches the leader's up to this index.
        match_index: Option<u64>,
        /// On refusal, where the logs diverge.
        reject: Option<RejectHint>,
    },
    /// Leader → follower: "I am still the leader"; carries the commit index (at most the
    /// follower's match index) and the read round being confirmed.
    Heartbeat {
        /// Commit index the follower may adopt.
        commit: u64,
        /// Sequence number of the leader's heartbeat round (ReadIndex and lease).
        round: u64,
    },
    /// Follower → leader: acknowledges a heartbeat round.
    HeartbeatResponse {
        /// The round acknowledged.
        round: u64,
        /// The follower's last log index: a leader learns from it that a follower lost entries
        /// it had acknowledged (a wiped data dir) even when no append is under way.
        last_index: u64,
    },
    /// Candidate or pre-candidate → voter.
    RequestVote {
        /// A pre-vote: grant changes nothing on the voter.
        pre_vote: bool,
        /// The candidate's last log index.
        last_index: u64,
        /// The candidate's last log term.
        last_term: u64,
        /// Campaign started by a leadership transfer: voters ignore their leader lease.
        transfer: bool,
    },
    /// Voter → candidate.
    VoteResponse {
        /// Answer to a pre-vote.
        pre_vote: bool,
        /// Whether the vote is granted.
        granted: bool,
    },
    /// Leader → follower: one chunk of a snapshot file.
    InstallSnapshot {
        /// Which snapshot.
        meta: SnapshotMeta,
        /// Byte offset of `data` in the snapshot file.
        offset: u64,
        /// The chunk.
        data: Bytes,
        /// Whether this chunk ends the file.
        done: bool,
    },
    /// Follower → leader: progress of a snapshot transfer.
    InstallSnapshotResponse {
        /// Index of the snapshot concerned.
        index: u64,
        /// Term of the snapshot concerned.
        snapshot_term: u64,
        /// The byte offset the follower expects next.
        next_offset: u64,
        /// The whole snapshot is received and installed.
        done: bool,
    },
    /// Leader → transfer target: campaign now.
    TimeoutNow,
    /// Follower → leader: a forwarded read-index request.
    ReadIndex {
        /// The follower's request id.
        id: u64,
    },
    /// Leader → follower: the read index for a forwarded request (`None`: refused).
    ReadIndexResponse {
        /// The follower's request id.
        id: u64,
        /// The index to wait for, or `None` when the leader could not serve it.
        index: Option<u64>,
    },
}

/// Bytes that are not a valid message.
#[derive(Debug, thiserror::Error)]
#[error("invalid message: {0}")]
pub struct DecodeError(pub String);

impl Message {
    /// The message as rkyv bytes.
    pub fn encode(&self) -> Result<rkyv::util::AlignedVec, DecodeError> {
        rkyv::to_bytes::<rancor::Error>(self).map_err(|e| DecodeError(e.to_string()))
    }

    /// Decodes and validates bytes from the network (any alignment).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<Message, rancor::Error>(&aligned).map_err(|e| DecodeError(e.to_string()))
    }

    /// Payload bytes the message carries, roughly.
    pub fn size_hint(&self) -> usize {
        match &self.body {
            MessageBody::Append { entries, .. } => {
                entries.iter().map(Entry::size_hint).sum::<usize>() + 48
            }
            MessageBody::InstallSnapshot { data, .. } => data.len() + 64,
            _ => 48,
        }
    }
}
