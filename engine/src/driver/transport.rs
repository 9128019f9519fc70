//! The [`Transport`] trait: how a node's outbound messages leave.

use crate::core::Message;

/// Sends Raft messages to peers. Best effort and non-blocking: a message may be lost,
/// delayed or reordered (Raft tolerates all three), but `send` must never block the event
/// loop. Inbound messages are pushed into the receiving node with
/// [`super::NodeHandle::deliver`].
///
/// The `net` crate's QUIC transport implements it (encoding [`Message`] with rkyv);
/// [`super::LocalNetwork`] implements it in memory.
pub trait Transport: Send + Sync + 'static {
    /// Queues `messages` for their destinations (`Message::to`).
    fn send(&self, messages: Vec<Message>);
}
