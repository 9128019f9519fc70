//! The `shoal` binary's library: assembles nodes from the crates and implements each
//! subcommand in its own module.
//!
//! # Layout
//! - [`cli`]: argument definitions ([`cli::Cli`]), dispatch, and the error type that maps to
//!   the exit codes of SPEC §3.
//!   - [`cli::wal`]: `shoal wal dump` and `shoal wal check` (offline log inspection).
//!   - [`cli::bench_wal`]: `shoal bench wal` (the WAL against this disk's raw limit).

pub mod cli;
