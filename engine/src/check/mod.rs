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
//! - `cas expected new` sets it to `new` if it holds `expected` ([`Outcome::CasOk`]`(true)`),
//!   else changes nothing and says so ([`Outcome::CasOk`]`(false)`). A mismatch is a result,
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
//! Per key, values are interned, and every value no operation compares against (no read
//! returned it, no compare-and-set expected it) is folded into one "unseen" value. Then:
//!
//! 1. Linear-time refutations (O(n log n)) settle the common violations without a search: a
//!    value read that no operation wrote, or wrote only later; an absent register read after
//!    a write was acknowledged; a stale read (every writer of the value completed before an
//!    acknowledged write of another value began, which completed before the read began);
//!    a value that comes back (observed, then another value, then it again, in real-time
//!    order, with a single writer).
//! 2. Indeterminate writes whose values nobody observes are dropped.
//! 3. Lowe's version of the Wing & Gong search: a depth-first search over the calls that may
//!    come next (those before the first return of an operation not yet linearized), with a
//!    cache of (linearized set, register value) configurations already explored. It is
//!    exact; these rules only cut branches that cannot lead to a linearization, or that are
//!    equivalent to one tried (each is argued where it is implemented, in `wgl.rs`):
//!    - a candidate that does not change the register (a read, a mismatching
//!      compare-and-set) and fits the current value is taken at once, without trying others;
//!    - a write may not strand a value with a single writer while a determinate operation
//!      still needs it, and must wait for the writes a later read of its value proves came
//!      earlier;
//!    - of the writes of unseen values, only the one due first is tried; of identical
//!      indeterminate operations, only the earliest invoked;
//!    - an indeterminate operation is taken only if the next operation taken needs it (fits
//!      the value it writes and not the value before): any linearization can be rearranged
//!      so, leaving out the indeterminate operations nothing needed.
//!
//! The search is exponential in the worst case, in the key's concurrency (the operations in
//! flight at once, indeterminate ones counting until the end of the history). On histories
//! like those of `shoal chaos` (20 clients, 100 to 300 operations per key, 5–15%
//! indeterminate, stalls, unique written values) the rules keep it near linear: the worst key
//! of 100 such runs of 10,000 operations took under 8,000 steps, and a run checks in about
//! 25 ms in a release build, 110 ms in a debug build. A single key of 5,000 operations from
//! 10 clients takes up to about 160,000 steps (15 ms). Its tests compare it with an exhaustive
//! search on thousands of small arbitrary histories (repeated and unique values, mismatches,
//! indeterminate and failed operations); 300,000 were compared during development.
//!
//! Every key's search is bounded by [`CheckConfig::max_steps_per_key`], a count of search
//! steps (not wall-clock time, so verdicts are deterministic; a step is roughly 50 ns in a
//! release build, ten times that in a debug build, and at most one cache entry of about 50
//! bytes). A key that exhausts it gets [`KeyVerdict::Unknown`], and the history
//! [`Verdict::Unknown`] unless another key is known non-linearizable; `Unknown` is not a
//! pass. The remedy is the one Jepsen's independent workloads use: keep the operations per
//! key and the clients per key bounded (tens to a few hundred operations, 5–20 clients),
//! moving to fresh keys; or raise the budget.
//!
//! When a key is not linearizable, [`Verdict::NotLinearizable`] carries a small sub-history:
//! the key's history cut at the earliest completion where it is already non-linearizable,
//! then stripped, delta-debugging style, of the operations it does not need. A removal takes
//! with it the operations that observed what it wrote, so it never creates a violation of
//! its own (the writers the remaining reads observe stay), and the counterexample shows the
//! original violation. Shrinking has its own budget, [`CheckConfig::max_shrink_steps`]; the
//! sub-history is always verified non-linearizable.
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
//! # JSON lines
//!
//! Each operation becomes an `invoke` row and, once completed, an `ok`, `fail` or `info` row:
//!
//! ```text
//! {"process":3,"type":"invoke","f":"write","key":"k1","value":"v7","time":1200}
//! {"process":3,"type":"ok","f":"write","key":"k1","value":"v7","time":1850}
//! {"process":4,"type":"invoke","f":"read","key":"k1","value":null,"time":1300}
//! {"process":4,"type":"ok","f":"read","key":"k1","value":"v7","time":1900}
//! {"process":5,"type":"invoke","f":"cas","key":"k1","value":["v6","v8"],"time":1400}
//! {"process":5,"type":"fail","f":"cas","key":"k1","value":["v6","v8"],"time":2000,"error":"cas-mismatch"}
//! ```
//!
//! Keys and values are JSON strings when they are UTF-8, else arrays of byte numbers; an
//! absent value is `null`; a compare-and-set's value is the pair `[expected, new]`. A
//! compare-and-set that found another value is written as Jepsen writes it, a `fail` (it
//! changed nothing), marked `"error":"cas-mismatch"` so that [`History::from_jsonl`] restores
//! it as [`Outcome::CasOk(false)`](Outcome::CasOk), an operation that observed the register.
//! Rows are in time order; at equal times completions come before invocations.
//! Blank lines, rows of other functions (`checkout`, say) and rows whose `process` is not a
//! number (a nemesis) are skipped by the parser; a number given for a key or value is read
//! as its decimal text.
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
