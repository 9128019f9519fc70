//! Shoal's replicated state machine: a shop (accounts, stores, a catalogue browsed with
//! filters, carts, atomic checkout, orders, sales) with a chat between its users, and a plain
//! key-value namespace, its state kept in fjall.
//!
//! # Layout
//! - [`types`]: the wire types. [`Request`] (writes, proposed through Raft), [`Query`]
//!   (reads) and the [`Reply`] to either (`Result<`[`Response`]`, `[`ShopError`]`>`), all rkyv,
//!   validated when decoded.
//! - [`prepare`]: what the node receiving a client request does before proposing it
//!   (validation, argon2 hashing and verification, session tokens, timestamps).
//! - [`Shop`] ([`machine`]): the [`shoal_engine::StateMachine`] implementation, its
//!   on-disk layout, snapshots and restore.
//! - [`json`]: the `--json` documents of SPEC §3 for every reply.
//! - [`render`]: the human-readable text of every reply.
//! - [`money`]: `12.34` ⇄ cents. [`validate`]: the field rules and the bounds.
//! - `logic` (private): what each request does; `store` (private): fjall and the
//!   read-your-writes overlay of an apply batch; `keys` (private): the key layout.
//!
//! # Determinism
//! Apply is a pure function of the state and the entry: no clock, no randomness, no hashing.
//! Timestamps, salts, hashes and tokens are produced by [`prepare`] and carried in the entry.
//!
//! # Durability
//! One fjall batch per `apply` call holds the changes, the applied index and the
//! exactly-once records of the clients it served (one key per client). It is written to the
//! OS, not fsynced (see [`Durability`]): the Raft WAL is the durable source, and the driver
//! re-applies the entries after [`shoal_engine::StateMachine::applied_index`] at start-up.
//!
//! # Wiring it into a node
//! ```text
//! let mut sm = Shop::open(data_dir.join("shop"))?;                // StateMachine
//! // client write: build the Request (prepare::* for signup and login), then
//! request.set_now(prepare::now_ms()); refuse request.is_internal() from clients;
//! propose(request.encode()) -> apply -> bytes; decode_reply(&bytes) -> Reply
//! // client read: refuse query.is_internal(); query.set_now(..); sm.query(&query.encode())
//! // output: json::reply(&reply) or render::text(&reply); exit code: ShopError::exit_code
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod clients;
mod codec;
pub mod error;
pub mod json;
mod keys;
mod logic;
pub mod machine;
pub mod money;
pub mod prepare;
pub mod render;
mod store;
pub mod types;
pub mod validate;

pub use codec::MAX_ENCODED_BYTES;
pub use error::{ShopError, StoreError};
pub use logic::{MAX_SCAN_PER_PAGE, MAX_SESSIONS_PER_ACCOUNT};
pub use machine::{Durability, Shop, ShopConfig};
pub use money::{MoneyError, format_money, parse_money};
pub use prepare::PrepareConfig;
pub use types::{
    AccountView, Action, Auth, CartLine, Cursor, KvEntry, MessageView, OrderLine, OrderView,
    ProductFilter, ProductView, Profile, Query, Reply, Request, Response, Role, SalesRow,
    decode_reply, encode_reply,
};
