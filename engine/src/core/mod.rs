//! The Raft core: a pure, deterministic state machine in the style of raft-rs's `RawNode`.
//!
//! # Architecture invariant
//! Nothing in this module tree imports tokio, `std::net`, `std::fs`, `std::time::Instant`,
//! `std::time::SystemTime` or a thread RNG. Time is logical ticks; randomness comes from a
//! generator seeded by [`Config::seed`]. The same inputs give the same outputs, which is what
//! lets the simulation in `engine/tests/` replay any run from its seed.
//!
//! # Protocol
//! - Build a node from what storage recovered: [`RawNode::new`] with a [`Recovered`]
//!   ([`Recovered::bootstrap`] for a new cluster, [`Recovered::from_store`] after a restart).
//! - Inputs: [`RawNode::tick`], [`RawNode::step`], [`RawNode::propose`] /
//!   [`RawNode::propose_batch`], [`RawNode::read_index`] / [`RawNode::read_lease`],
//!   [`RawNode::propose_membership`], [`RawNode::transfer_leader`],
//!   [`RawNode::snapshot_taken`], [`RawNode::on_persisted`].
//! - Output: [`RawNode::ready`] returns a [`Ready`]; its documentation gives the order in
//!   which the driver carries it out.
//!
//! # Layout
//! - [`config`]: [`Config`] and its validation.
//! - [`types`]: [`Entry`], [`Membership`], [`SnapshotMeta`], [`Role`].
//! - [`message`]: the wire [`Message`] (rkyv).
//! - [`codec`]: payloads of log entries ([`Proposal`], membership).
//! - [`ready`]: [`Ready`] and the core's [`Error`].
//! - `node`: [`RawNode`] itself; `log` and `progress`: its in-memory log and the leader's
//!   per-follower replication state.

pub mod codec;
pub mod config;
mod log;
pub mod message;
mod node;
mod progress;
pub mod ready;
pub mod types;

#[cfg(test)]
mod tests;

/// The payload type of [`Entry`], re-exported so users need not depend on `bytes`.
pub use bytes::Bytes;
pub use codec::{CodecError, Proposal};
pub use config::{Config, ConfigError};
pub use message::{DecodeError, Message, MessageBody, RejectHint};
pub use node::{RawNode, Recovered};
pub use ready::{Error, ReadState, Ready, SnapshotChunk, SnapshotSend};
pub use types::{
    Entry, EntryKind, HardState, Membership, MembershipChange, MembershipError, NodeId, Role,
    SnapshotMeta, SoftState,
};
