//! Values the core works with: log entries, membership, snapshot metadata, roles.

use bytes::Bytes;
use rkyv::{Archive, Deserialize, Serialize};
pub use shoal_wal::{EntryKind, HardState};

/// Node identifier. `0` is never a valid id ("none").
pub type NodeId = u64;

/// One Raft log entry as the core holds it in memory and sends it on the wire.
///
/// The payload is a reference-counted [`Bytes`], so replicating an entry to several followers
/// and handing it out for persistence and application never copies it. Convert to and from the
/// WAL's [`shoal_wal::Entry`] at the persistence boundary with [`Entry::to_wal`] and
/// [`Entry::from_wal`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, starting at 1.
    pub index: u64,
    /// Term of the leader that created the entry.
    pub term: u64,
    /// How the engine interprets `data`.
    pub kind: EntryKind,
    /// The payload: a [`crate::core::Proposal`] for `Normal`, a [`Membership`] for `Config`,
    /// empty for `Blank`.
    pub data: Bytes,
}

impl Entry {
    /// Bytes this entry costs in memory and on the wire, roughly: used for flow control.
    pub fn size_hint(&self) -> usize {
        self.data.len() + 24
    }

    /// The WAL's form of this entry (copies the payload).
    pub fn to_wal(&self) -> shoal_wal::Entry {
        shoal_wal::Entry {
            index: self.index,
            term: self.term,
            kind: self.kind,
            data: self.data.to_vec(),
        }
    }

    /// The core's form of an entry read back from the WAL (takes the payload without copying).
    pub fn from_wal(entry: shoal_wal::Entry) -> Self {
        Self {
            index: entry.index,
            term: entry.term,
            kind: entry.kind,
            data: Bytes::from(entry.data),
        }
    }
}

/// A cluster configuration: who votes and who only receives the log.
///
/// Shoal changes membership one server at a time (see ARCHITECTURE.md): every `Config` entry
/// carries the whole new configuration, which takes effect on every node as soon as the entry
/// is in its log (committed or not), and reverts if the entry is truncated.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Membership {
    /// Voting members, sorted, no duplicates.
    pub voters: Vec<NodeId>,
    /// Non-voting members that receive the log (catching up before promotion), sorted,
    /// disjoint from `voters`.
    pub learners: Vec<NodeId>,
}

impl Membership {
    /// A configuration of the given voters and no learners.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        let mut voters: Vec<NodeId> = voters.into_iter().collect();
        voters.sort_unstable();
        voters.dedup();
        Self {
            voters,
            learners: Vec::new(),
        }
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok()
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Voters then learners.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// How many votes make a majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The configuration after `change`, or why it is not a valid single-server change.
    pub fn apply_change(&self, change: MembershipChange) -> Result<Self, MembershipError> {
        let mut next = self.clone();
        match change {
            MembershipChange::AddLearner(id) => {
                if id == 0 {
                    return Err(MembershipError::InvalidId);
                }
                if self.contains(id) {
                    return Err(MembershipError::AlreadyMember { id });
                }
                next.learners.push(id);
                next.learners.sort_unstable();
            }
            MembershipChange::PromoteLearner(id) => {
                if !self.is_learner(id) {
                    return Err(MembershipError::NotLearner { id });
                }
                next.learners.retain(|&l| l != id);
                next.voters.push(id);
                next.voters.sort_unstable();
            }
            MembershipChange::RemoveNode(id) => {
                if !self.contains(id) {
                    return Err(MembershipError::NotMember { id });
                }
                if self.is_voter(id) && self.voters.len() == 1 {
                    return Err(MembershipError::LastVoter { id });
                }
                next.voters.retain(|&v| v != id);
                next.learners.retain(|&l| l != id);
            }
        }
        Ok(next)
    }
}

/// One single-server membership change.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a non-voting member that starts receiving the log.
    AddLearner(NodeId),
    /// Make a caught-up learner a voter.
    PromoteLearner(NodeId),
    /// Remove a voter (the leader included) or a learner.
    RemoveNode(NodeId),
}

/// A membership change that is not valid against the current configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Node id 0 is reserved.
    #[error("node id 0 is reserved")]
    InvalidId,
    /// The node is already a voter or learner.
    #[error("node {id} is already a member")]
    AlreadyMember {
        /// The node.
        id: NodeId,
    },
    /// Only learners can be promoted.
    #[error("node {id} is not a learner")]
    NotLearner {
        /// The node.
        id: NodeId,
    },
    /// The node is not in the configuration.
    #[error("node {id} is not a member")]
    NotMember {
        /// The node.
        id: NodeId,
    },
    /// A cluster needs at least one voter.
    #[error("node {id} is the last voter")]
    LastVoter {
        /// The node.
        id: NodeId,
    },
}

/// What a snapshot covers: the last entry folded into it and the configuration at that point.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot reflects.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// The configuration in force at `index`.
    pub membership: Membership,
}

/// A node's role.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one); may campaign.
    Follower,
    /// Asking for pre-votes, without raising its term.
    PreCandidate,
    /// Asking for votes in a new term.
    Candidate,
    /// Replicates the log.
    Leader,
    /// Receives the log but does not vote or campaign: a learner, or a node outside the
    /// configuration (removed, or not yet added).
    Learner,
}

impl Role {
    /// Lower-case name, as `shoal status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Learner => "learner",
        }
    }
}

/// The volatile state a driver shows: role, term and leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftState {
    /// This node's role.
    pub role: Role,
    /// The current term.
    pub term: u64,
    /// The leader this node knows of in `term`.
    pub leader: Option<NodeId>,
}
