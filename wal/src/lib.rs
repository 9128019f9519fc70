//! Shoal's write-ahead log.
//!
//! # Layout
//! - [`entry`]: the records the log holds ([`Entry`], [`EntryKind`]) and the durable
//!   [`HardState`] (term, vote, commit).
//! - [`store`]: the [`LogStore`] trait, the contract every durable Raft log store keeps.
//! - [`mem`]: [`MemLogStore`], an in-memory store for the engine's deterministic simulation.
//! - [`error`]: the crate's typed [`Error`].
//!
//! Only this crate writes log files.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod entry;
pub mod error;
pub mod mem;
pub mod store;

pub use entry::{Entry, EntryKind, HardState};
pub use error::{Error, Result};
pub use mem::MemLogStore;
pub use store::LogStore;
