//! The async driver: runs a [`crate::core::RawNode`] against Shoal's WAL, a snapshot store, a
//! [`Transport`] and an embedder's [`crate::StateMachine`], and gives the embedder a
//! [`NodeHandle`] to propose, read, watch and stop the node.
//!
//! # Embedding in a few lines
//! ```ignore
//! let net = LocalNetwork::new();
//! let node = NodeBuilder::new(1, "/var/lib/app/node-1")
//!     .voters([1, 2, 3])
//!     .start(MyStateMachine::open(..)?, net.transport(1))
//!     .await?;
//! net.register(&node);
//! let response = node.propose(b"increment".to_vec()).await?;
//! let value = node.read(b"get".to_vec(), Consistency::Linearizable).await?;
//! node.shutdown().await?;
//! ```
//! Durability (group-committed WAL), snapshots (by log size), log compaction, crash recovery
//! and exactly-once delivery of retried requests (through [`crate::ClientSessions`] in the
//! state machine and [`NodeHandle::propose_with_session`]) come by default.
//!
//! # Layout
//! - [`config`]: [`NodeBuilder`] (data dir, id, initial voters, timing, snapshot policy).
//! - [`handle`]: [`NodeHandle`], what the embedder holds: `propose`, `read`, `metrics`,
//!   membership, leader transfer, manual snapshots, `shutdown`.
//! - [`transport`]: the [`Transport`] trait the network layer implements.
//! - [`local`]: [`LocalNetwork`], an in-memory transport for in-process clusters and tests.
//! - [`metrics`]: [`Metrics`], the status view.
//! - [`error`]: the driver's [`Error`] enum.
//! - `event_loop`: the task that owns the core; `apply`: the thread that owns the state
//!   machine; `storage`: recovery at startup and snapshot-file I/O.
//!
//! # Tasks and threads
//! - **The event loop** (one tokio task) owns the [`crate::core::RawNode`]. It wakes on a
//!   tick, a request from a handle, a message from a peer or a completion from storage or the
//!   apply thread; it then drains every pending input (so concurrent proposals become one
//!   `propose_batch` and concurrent linearizable reads one ReadIndex round) before it takes a
//!   single [`crate::core::Ready`] and carries it out in the order the `Ready` documents.
//! - **The WAL's commit thread** (inside `shoal_wal`) writes each batch of submitted entries
//!   with one write and one fdatasync; its completion comes back into the loop as an event.
//!   The loop never waits for it: messages to followers leave before the leader's own fsync
//!   (Raft thesis §10.2.1), and `persisted_messages` wait in a queue until their `Ready` is
//!   durable.
//! - **The apply thread** owns the state machine: it applies committed entries in batches,
//!   answers proposers, serves queries once their read index is applied, takes snapshot
//!   images and restores installed snapshots. A state machine may block on its disk there
//!   without stalling Raft.
//! - **Blocking tasks** (`spawn_blocking`) write snapshot images to files, read snapshot
//!   chunks for lagging followers and compact the WAL.
//!
//! # Durability
//! Entries are acknowledged (to peers and to proposers) only after the fdatasync that covers
//! them. Term and vote are saved synchronously before any message that depends on them
//! leaves. The commit index is *not* saved on every change: on disk it may lag behind, which
//! is safe (a restarted node learns the commit index again from the leader, and never applies
//! beyond what it knows to be committed; entries below the state machine's own applied index
//! are never re-applied). A clean shutdown saves the latest commit index.
//!
//! A failed WAL write or sync poisons the log (the disk may have lied once): the node stops,
//! every waiting request fails with [`Error::Stopped`] naming the cause, and
//! [`Metrics::stopped`] says why.

pub mod config;
pub mod error;
mod event_loop;
pub mod handle;
pub mod local;
pub mod metrics;
pub mod transport;

mod apply;
mod storage;

#[cfg(test)]
mod tests;

pub use config::{NodeBuilder, SnapshotPolicy};
pub use error::Error;
pub use handle::{Consistency, NodeHandle};
pub use local::LocalNetwork;
pub use metrics::Metrics;
pub use transport::Transport;
