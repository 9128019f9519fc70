//! Shoal's Raft engine.
//!
//! # Layout
//! - [`sessions`]: [`ClientSessions`], exactly-once machinery any state machine embeds.
//! - [`check`]: linearizability checking of recorded histories.
//! - [`core`]: the deterministic Raft core ([`core::RawNode`]): messages in, [`core::Ready`] out.
//! - [`driver`]: the async driver that runs a core against the WAL, a transport and a
//!   [`StateMachine`].
//! - [`state_machine`]: the [`StateMachine`] trait an embedder implements, and the
//!   [`Command`] it is handed.
//!
//! The core does no I/O and knows no tokio, wall clock or thread RNG; the driver does the I/O.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod check;
pub mod core;
pub mod driver;
pub mod sessions;
pub mod state_machine;

pub use sessions::{ClientSessions, Dedup};
pub use state_machine::{Command, SnapshotImage, StateMachine};
