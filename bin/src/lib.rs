//! The `shoal` binary's library: assembles nodes from the crates and implements each
//! subcommand in its own module.
//!
//! # Layout
//! - [`config`]: `cluster.toml` ([`config::ClusterConfig`]) and `node.toml`
//!   ([`config::NodeConfig`]), with validation naming the file and the field.
//! - [`layout`]: the cluster directory `shoal init` writes (CA, certificates, node dirs), and
//!   adding a node's files later.
//! - [`api`]: the request bodies the CLI sends and nodes answer (rkyv, validated on decode).
//! - [`server`]: the node-side request handler over the [`server::NodeApi`] seam, and
//!   [`server::memory::MemoryNode`], a Raft-less node for tests.
//! - [`node`]: the running node (`shoal node`): the QUIC transport adapter, the
//!   [`server::NodeApi`] over the engine driver, pid file and signals.
//! - [`cli`]: argument definitions ([`cli::Cli`]), dispatch, and the error type that maps to
//!   the exit codes of SPEC §3; one module per command group.
//!   - [`cli::wal`]: `shoal wal dump` and `shoal wal check` (offline log inspection).
//!   - [`cli::bench_wal`]: `shoal bench wal` (the WAL against this disk's raw limit).
//!   - [`cli::bench`]: `shoal bench --workload put|get|checkout|mixed` (load against a
//!     running cluster: throughput, latency percentiles, `--json`, `--plot FILE.svg`).
//!   - [`cli::chaos`]: `shoal chaos` (arguments and printing).
//! - [`chaos`]: the chaos run: a local cluster of node processes, register and checkout
//!   clients, a seeded nemesis, and the checks (linearizability, stock, recovery).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod chaos;
pub mod cli;
pub mod config;
pub mod layout;
pub mod node;
pub mod server;
