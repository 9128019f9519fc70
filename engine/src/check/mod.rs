//! History checking: linearizability of key-value histories (per-key Wing–Gong–Lowe search).
//! Pure code, shared by the simulation and by `shoal chaos`.
//!
//! # The model
//!
//! Every key names an independent register, absent (`None`) until first written. Clients
//! issue three operations, each recorded as an [`Op`] with the client's process id, the
//! key, the [`Call`], its invocation time and its completion time and [`Outcome`]:
//!
//! - `read` returns the register's value ([`Outcome::ReadOk`]);
//! - `write v` sets it ([`Outcome::WriteOk`]);
//! - `cas expected new` sets it to `new` if it holds `expected` ([`Outcome::CasOk(true)`]),
//!   else changes nothing and says so ([`Outcome::CasOk(false)`]). A mismatch is a result,
//!   not a failure: it tells that the register did not hold `expected` at that moment.
//!
//! The history is linearizable if there is one total order of the operations that respects
//! real time (when A completed before B was invoked, A comes first; equal times count as
//! concurrent), in which each operation's result is the one the sequential register gives.
//! Two other outcomes loosen this:
//!
//! - [`Outcome::Fail`]: the operation definitely did not happen (refused before it was
//!   proposed; not leader and not forwarded). It is ignored. A client must only report
//!   `Fail` when it knows; when in doubt it is `Info`.
//! - [`Outcome::Info`] (and [`Outcome::Pending`], an operation still in flight when the run
//!   stopped): indeterminate, a timeout or a lost connection. The operation may have taken
//!   effect at any moment after its invocation, even long after the client gave up (a
//!   proposal can sit in a leader's log and commit later), or never. Its completion is
//!   +infinity: the search may place it anywhere after its invocation, or leave it out. An
//!   indeterminate read tells nothing and is dropped.
//!
//! A register map is P-compositional: the history is linearizable if and only if each key's
//! sub-history is, so the checker splits the history by key and searches each key alone
//! (in key order, so verdicts and counterexamples do not depend on hashing).
//!
//! # The search and its bound
//!
//! Per key: Lowe's version of the Wing & Gong search, a depth-first search over the calls
//! that may come next, with a cache of (linearized set, register value) configurations
//! already explored. Its cost is exponential in the worst case, in the key's concurrency
//! (the operations in flight at once, indeterminate ones counting until the end of the
//! history): with c concurrent operations it can meet up to about 2^c linearized sets at
//! each point. On real histories the cache and the order of trial (determinate operations
//! first, indeterminate ones only where a linearization needs them) keep it near linear.
//! Before searching, linear-time refutations settle the common violations (a value read that
//! no operation wrote, or wrote only later; an absent register read after a write was
//! acknowledged), and indeterminate writes whose values nobody observed are dropped.
//!
//! Every key's search is bounded by [`CheckConfig::max_steps_per_key`], a count of search
//! steps (not wall-clock time, so verdicts are deterministic). A key that exhausts it gets
//! [`KeyVerdict::Unknown`], and the history [`Verdict::Unknown`] unless another key is
//! known non-linearizable; `Unknown` is not a pass. The remedy is the one Jepsen's
//! independent workloads use: keep the operations per key and the clients per key bounded
//! (tens to a few hundred operations, 5–20 clients), moving to fresh keys.
//!
//! When a key is not linearizable, [`Verdict::NotLinearizable`] carries a small sub-history:
//! the key's history cut at the earliest completion where it is already non-linearizable,
//! then greedily stripped of every operation it does not need. Shrinking has its own budget,
//! [`CheckConfig::max_shrink_steps`]; the sub-history is always verified non-linearizable.
//!
//! # No acknowledged write lost
//!
//! After healing, read back every key and call [`check_final_reads`]: the final values become
//! reads placed after every recorded operation, and the whole is checked for
//! linearizability. A lost acknowledged write shows as a final read of an older value.
//!
//! # Recording
//!
//! A [`History`] records with [`History::invoke`] and [`History::complete`] (times are the
//! caller's: logical ticks in the simulation, monotonic nanoseconds since the start in
//! `shoal chaos`); [`SharedHistory`] is the same behind a mutex, for concurrent clients. A
//! process has at most one operation in flight: complete each one (as `Info` if unsure)
//! before the process invokes again. [`History::to_jsonl`] writes the Jepsen-shaped JSON
//! lines `shoal chaos --history` saves, and [`History::from_jsonl`] reads them back for an
//! independent re-check.
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use shoal_engine::check::{check_final_reads, Call, CheckConfig, Outcome, SharedHistory, Verdict};
//!
//! let history = SharedHistory::new();
//! // In each client task (process ids are the clients'; times from one monotonic clock):
//! let write = history.invoke(1, "k1", Call::write("v1"), 100);
//! let read = history.invoke(2, "k1", Call::Read, 110);
//! history.complete(write, Outcome::WriteOk, 150)?;
//! history.complete(read, Outcome::ReadOk(Some(b"v1".to_vec())), 160)?;
//! // A timeout: the write may or may not have happened.
//! let lost = history.invoke(1, "k1", Call::cas(Some("v1"), "v2"), 200);
//! history.complete(lost, Outcome::Info, 5_000)?;
//!
//! // At the end, after healing the cluster and reading every key back:
//! let history = history.into_history();
//! let final_values = BTreeMap::from([(b"k1".to_vec(), Some(b"v2".to_vec()))]);
//! let report = check_final_reads(&history, &final_values, &CheckConfig::default())?;
//! assert_eq!(report.verdict, Verdict::Linearizable);
//! if !report.is_linearizable() {
//!     // Print the seed and the counterexample (Display: one operation a line).
//!     eprintln!("{}", report.verdict);
//! }
//! // `shoal chaos --history FILE`:
//! let jsonl = history.to_jsonl();
//! assert_eq!(shoal_engine::check::History::from_jsonl(&jsonl).map(|h| h.len()), Ok(3));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! In the simulation, the client oracle records with a plain [`History`] (single-threaded),
//! stamping logical ticks; it completes an operation `Info` when its request is dropped or
//! its node crashes without answering, and `Fail` only for refusals that are certain (no
//! proposal made). At the end of the liveness phase it reads every key back through the
//! cluster and calls [`check_final_reads`], failing the seed on anything but `Linearizable`.

mod checker;
mod history;
mod json;
mod wgl;

#[cfg(test)]
mod tests;

pub use checker::{CheckConfig, KeyReport, KeyVerdict, Report, Verdict, check, check_final_reads};
pub use history::{
    Call, FINAL_READ_PROCESS, History, HistoryError, Key, Op, OpId, Outcome, SharedHistory, Value,
};
pub use json::{CAS_MISMATCH, JsonRow, ParseError, push_json_bytes, push_json_string};
