//! What the log stores: Raft entries and the hard state.

use rkyv::{Archive, Deserialize, Serialize};

/// What an entry carries; the engine gives each kind its meaning.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
#[repr(u8)]
pub enum EntryKind {
    /// An empty entry a new leader appends to commit entries of earlier terms.
    Blank = 0,
    /// An application command, applied to the state machine.
    Normal = 1,
    /// A membership change, interpreted by the engine.
    Config = 2,
}

/// One Raft log entry.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Entry {
    /// Position in the log, starting at 1.
    pub index: u64,
    /// Term of the leader that created the entry.
    pub term: u64,
    /// How the engine interprets `data`.
    pub kind: EntryKind,
    /// Opaque payload.
    pub data: Vec<u8>,
}

impl Entry {
    /// Bytes this entry costs in memory and on the wire, roughly: used for flow control.
    pub fn size_hint(&self) -> usize {
        self.data.len() + 24
    }
}

/// The part of Raft state that must be durable before a vote or an append is answered.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: u64,
    /// The candidate this node voted for in `term`, if any.
    pub voted_for: Option<u64>,
    /// The highest index known to be committed (may lag; never ahead of the truth).
    pub commit: u64,
}
