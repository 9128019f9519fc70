//! The checker: per-key verdicts, the overall verdict, and the shrunk counterexample.

use std::collections::BTreeMap;
use std::fmt;

use super::history::{Bytes, Call, History, HistoryError, Key, Op, Outcome, Value};
use super::wgl::{SearchResult, search};

/// Limits on the search. Expressed in steps (one step is one move of the search), never in
/// wall-clock time, so that a verdict is the same on every machine and every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckConfig {
    /// The most steps the search may spend on one key before that key's verdict is
    /// [`KeyVerdict::Unknown`]. Memory grows with the steps: about 50 bytes per step for keys
    /// of up to 64 operations, 8 bytes more per further 64 operations.
    pub max_steps_per_key: u64,
    /// The most steps, in total, spent shrinking a counterexample. When they run out the
    /// counterexample found so far (always verified non-linearizable) is reported.
    pub max_shrink_steps: u64,
}

impl CheckConfig {
    /// The default limits: 2,000,000 steps per key (a few seconds at worst in a debug build)
    /// and 5,000,000 for shrinking.
    pub const DEFAULT: CheckConfig = CheckConfig {
        max_steps_per_key: 2_000_000,
        max_shrink_steps: 5_000_000,
    };
}

impl Default for CheckConfig {
    fn default() -> CheckConfig {
        CheckConfig::DEFAULT
    }
}

/// The verdict on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyVerdict {
    /// The key's operations have a linearization.
    Linearizable,
    /// They have none.
    NotLinearizable,
    /// The search ran out of steps.
    Unknown,
}

/// What the checker found for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyReport {
    /// The key.
    pub key: Key,
    /// The key's operations, failed ones included.
    pub ops: usize,
    /// The verdict.
    pub verdict: KeyVerdict,
    /// The search steps spent.
    pub steps: u64,
}

/// The verdict on a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key is linearizable.
    Linearizable,
    /// A key (the first in key order, if several) is not linearizable.
    NotLinearizable {
        /// The key.
        key: Key,
        /// A small sub-history of that key that is not linearizable on its own, in
        /// invocation order: a cut of the key's history at the earliest completion that
        /// makes it non-linearizable (operations still running at the cut appear as
        /// [`Outcome::Pending`]; reads running at the cut are left out), then stripped of
        /// operations while it stays non-linearizable (see the [module docs](super)).
        ops: Vec<Op>,
    },
    /// No key is known non-linearizable, but the search ran out of steps on these keys.
    Unknown {
        /// The keys, in order.
        keys: Vec<Key>,
    },
}

/// The result of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The overall verdict.
    pub verdict: Verdict,
    /// One report per key, in key order.
    pub keys: Vec<KeyReport>,
    /// The operations checked (all of them, failed ones included).
    pub ops: usize,
    /// The search steps spent, shrinking included.
    pub steps: u64,
}

impl Report {
    /// Whether the verdict is [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        self.verdict == Verdict::Linearizable
    }
}

/// Checks that a history is linearizable, key by key.
///
/// Errors only when the history is malformed (see [`History::validate`]).
pub fn check(history: &History, config: &CheckConfig) -> Result<Report, HistoryError> {
    history.validate()?;
    let mut by_key: BTreeMap<&[u8], Vec<&Op>> = BTreeMap::new();
    for op in history.ops() {
        by_key.entry(op.key.as_slice()).or_default().push(op);
    }
    let mut keys = Vec::with_capacity(by_key.len());
    let mut steps = 0u64;
    let mut counterexample: Option<(Key, Vec<Op>)> = None;
    let mut unknown = Vec::new();
    for (key, ops) in &by_key {
        let (result, spent) = search(ops, config.max_steps_per_key);
        steps = steps.saturating_add(spent);
        let verdict = match result {
            SearchResult::Linearizable => KeyVerdict::Linearizable,
            SearchResult::NotLinearizable => {
                if counterexample.is_none() {
                    let (ops, spent) = shrink(ops, config);
                    steps = steps.saturating_add(spent);
                    counterexample = Some((key.to_vec(), ops));
                }
                KeyVerdict::NotLinearizable
            }
            SearchResult::Exhausted => {
                unknown.push(key.to_vec());
                KeyVerdict::Unknown
            }
        };
        keys.push(KeyReport {
            key: key.to_vec(),
            ops: ops.len(),
            verdict,
            steps: spent,
        });
    }
    let verdict = match counterexample {
        Some((key, ops)) => Verdict::NotLinearizable { key, ops },
        None if !unknown.is_empty() => Verdict::Unknown { keys: unknown },
        None => Verdict::Linearizable,
    };
    Ok(Report {
        verdict,
        keys,
        ops: history.len(),
        steps,
    })
}

/// Checks a history together with the values read back at the end of a run: "no
/// acknowledged write is lost".
///
/// This is [`check`] of [`History::with_final_reads`]: each final value becomes a read that
/// starts after every recorded operation. A final read returning anything but a value some
/// linearization leaves in the register is a violation: an acknowledged write that was lost
/// (the read returns an older value or none), or a value that appeared from nowhere.
/// Indeterminate writes may explain the final value or not matter. Keys of the history that
/// are missing from `final_values` are checked without a final read; keys only in
/// `final_values` must read back absent (`None`).
pub fn check_final_reads(
    history: &History,
    final_values: &BTreeMap<Key, Option<Value>>,
    config: &CheckConfig,
) -> Result<Report, HistoryError> {
    check(&history.with_final_reads(final_values), config)
}

/// Whether `ops` are certainly not linearizable, charging the steps to `spent`; `None`
/// when the budget is gone.
fn refutes(ops: &[Op], config: &CheckConfig, spent: &mut u64) -> Option<bool> {
    let left = config.max_shrink_steps.checked_sub(*spent)?;
    let refs: Vec<&Op> = ops.iter().collect();
    // A candidate that is hard to decide is kept out of the counterexample rather than let
    // it eat the whole shrinking budget.
    let per_candidate = (config.max_shrink_steps / 20).max(10_000);
    let budget = config.max_steps_per_key.min(per_candidate).min(left);
    let (result, steps) = search(&refs, budget);
    // Preparing a search costs about a step per operation: charge it too.
    *spent = spent.saturating_add(steps).saturating_add(ops.len() as u64);
    Some(result == SearchResult::NotLinearizable)
}

/// The history cut at `time`: operations invoked by then, those still running as pending,
/// reads still running left out.
fn cut(ops: &[&Op], time: u64) -> Vec<Op> {
    ops.iter()
        .filter(|op| op.invoke <= time)
        .filter_map(|op| match op.complete {
            _ if op.outcome.is_indeterminate() => Some((*op).clone()),
            Some(complete) if complete <= time => Some((*op).clone()),
            _ if op.call == Call::Read => None,
            _ => Some(Op {
                complete: None,
                outcome: Outcome::Pending,
                ..(*op).clone()
            }),
        })
        .collect()
}

/// The value an operation requires the register to hold, if any.
fn observed(op: &Op) -> Option<Option<&[u8]>> {
    match (&op.call, &op.outcome) {
        (Call::Read, Outcome::ReadOk(value)) => Some(value.as_deref()),
        (Call::Cas { expected, .. }, outcome)
            if *outcome == Outcome::CasOk(true) || outcome.is_indeterminate() =>
        {
            Some(expected.as_deref())
        }
        _ => None,
    }
}

/// The value an operation may have written, if any.
fn written_value(op: &Op) -> Option<&[u8]> {
    match (&op.call, &op.outcome) {
        (Call::Write(value), Outcome::WriteOk | Outcome::Info | Outcome::Pending) => Some(value),
        (Call::Cas { new, .. }, Outcome::CasOk(true) | Outcome::Info | Outcome::Pending) => {
            Some(new)
        }
        _ => None,
    }
}

/// Extends the set of operations marked in `removed` until removing it cannot create a
/// violation that was not there (if `ops` have a linearization, so do the rest): adds every
/// remaining operation that observes a value a removed operation may write, and every
/// remaining mismatching compare-and-set that may follow a removed writer. (A linearization
/// of `ops` minus the removed operations, and minus indeterminate compare-and-sets that
/// changed nothing, is then one of the rest: every remaining operation sees the value it
/// saw.) Shrinking removes only such closed sets, so the counterexample keeps the writers its
/// reads need and shows the original violation, not one made by removal.
fn close_removal(ops: &[Op], removed: &mut [bool]) {
    loop {
        let mut written: Vec<&[u8]> = Vec::new();
        let mut first_writer = u64::MAX;
        for (op, _) in ops
            .iter()
            .zip(removed.iter())
            .filter(|(_, removed)| **removed)
        {
            if let Some(value) = written_value(op) {
                written.push(value);
                first_writer = first_writer.min(op.invoke);
            }
        }
        let mut grew = false;
        for (op, removed) in ops.iter().zip(removed.iter_mut()) {
            if *removed {
                continue;
            }
            let observes_removed = observed(op)
                .flatten()
                .is_some_and(|value| written.contains(&value));
            let mismatch_after = op.outcome == Outcome::CasOk(false)
                && op.complete.is_none_or(|complete| complete >= first_writer);
            if observes_removed || mismatch_after {
                *removed = true;
                grew = true;
            }
        }
        if !grew {
            return;
        }
    }
}

/// Shrinks a non-linearizable key history to a small non-linearizable sub-history. Returns it
/// and the steps spent.
fn shrink(ops: &[&Op], config: &CheckConfig) -> (Vec<Op>, u64) {
    let mut spent = 0u64;
    // Failed operations and indeterminate reads never matter.
    let ops: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| {
            op.outcome != Outcome::Fail && !(op.call == Call::Read && op.outcome.is_indeterminate())
        })
        .collect();
    let mut current: Vec<Op> = ops.iter().map(|op| (*op).clone()).collect();

    // 1. The earliest cut that is already non-linearizable. Linearizability is closed under
    // cuts, so non-linearizability is monotone in the cut time: binary search.
    let mut cuts: Vec<u64> = ops
        .iter()
        .filter(|op| op.outcome.is_ok())
        .filter_map(|op| op.complete)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let (mut low, mut high) = (0usize, cuts.len());
    let mut best: Option<Vec<Op>> = None;
    while low < high {
        let middle = low + (high - low) / 2;
        let candidate = cut(&ops, cuts[middle]);
        match refutes(&candidate, config, &mut spent) {
            Some(true) => {
                best = Some(candidate);
                high = middle;
            }
            Some(false) => low = middle + 1,
            None => break,
        }
    }
    if let Some(best) = best {
        current = best;
    }

    // 2. Remove operations while the rest stays non-linearizable: runs of operations first
    // (halving the run length, as delta debugging does, so that the violation's few
    // operations are isolated in few checks), then single operations until a pass removes
    // nothing.
    let mut run = (current.len() / 2).max(1);
    'passes: loop {
        let mut removed_any = false;
        let mut end = current.len();
        while end > 0 {
            let start = end.saturating_sub(run);
            let mut removed: Vec<bool> = (0..current.len())
                .map(|i| (start..end).contains(&i))
                .collect();
            end = start;
            close_removal(&current, &mut removed);
            let candidate: Vec<Op> = current
                .iter()
                .zip(&removed)
                .filter(|(_, removed)| !**removed)
                .map(|(op, _)| op.clone())
                .collect();
            match refutes(&candidate, config, &mut spent) {
                Some(true) => {
                    current = candidate;
                    removed_any = true;
                }
                Some(false) => {}
                None => break 'passes,
            }
        }
        if run > 1 {
            run = (run / 2).max(1).min(current.len().max(1));
        } else if !removed_any {
            break;
        }
    }
    current.sort_by_key(|op| (op.invoke, op.process));
    (current, spent)
}

impl fmt::Display for Verdict {
    /// `linearizable`, `unknown (search budget exhausted on N keys: ...)`, or `not
    /// linearizable on key K` followed by the offending sub-history, one operation a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::Unknown { keys } => {
                write!(
                    f,
                    "unknown (search budget exhausted on {} keys:",
                    keys.len()
                )?;
                for key in keys.iter().take(10) {
                    write!(f, " {}", Bytes(key))?;
                }
                if keys.len() > 10 {
                    f.write_str(" ...")?;
                }
                f.write_str(")")
            }
            Verdict::NotLinearizable { key, ops } => {
                write!(
                    f,
                    "not linearizable on key {}; minimal offending sub-history ({} ops):",
                    Bytes(key),
                    ops.len()
                )?;
                for op in ops {
                    write!(f, "\n  {op}")?;
                }
                Ok(())
            }
        }
    }
}
