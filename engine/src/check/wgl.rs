//! The Wing–Gong–Lowe search for one register's history.
//!
//! Lowe's variant ("Testing for linearizability", 2017) of the Wing & Gong algorithm: the
//! operations' call and return events sit in one doubly linked list in time order; the
//! search linearizes a call it meets before the first pending return, lifting the operation
//! out of the list, and backtracks when it meets a return whose operation is not yet
//! linearized. A cache of (set of linearized operations, register value) pairs already
//! explored cuts every repeated configuration.
//!
//! Before searching, cheap sound refutations (a value read that nobody wrote in time; an
//! absent register read after a write was acknowledged) settle the common violations in
//! linear time, and indeterminate writes that nobody could have observed are dropped, which
//! keeps the search from branching on every timed-out write of a faulty run.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use super::history::{Call, Op, Outcome};

/// The end of the event list.
const NIL: usize = usize::MAX;
/// The list's head sentinel.
const HEAD: usize = 0;
/// An interned absent value.
const ABSENT: u32 = 0;

/// What the search concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SearchResult {
    /// A linearization exists.
    Linearizable,
    /// No linearization exists.
    NotLinearizable,
    /// The step budget ran out first.
    Exhausted,
}

/// An operation reduced to what the model needs, values interned (`ABSENT` is 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Read(u32),
    Write(u32),
    CasOk { expected: u32, new: u32 },
    CasFail { expected: u32 },
    InfoWrite(u32),
    InfoCas { expected: u32, new: u32 },
}

impl Kind {
    fn is_info(self) -> bool {
        matches!(self, Kind::InfoWrite(_) | Kind::InfoCas { .. })
    }

    /// The register model: the state after this operation, or `None` if it cannot happen in
    /// this state.
    fn step(self, state: u32) -> Option<u32> {
        match self {
            Kind::Read(value) => (state == value).then_some(state),
            Kind::Write(value) | Kind::InfoWrite(value) => Some(value),
            Kind::CasOk { expected, new } => (state == expected).then_some(new),
            Kind::CasFail { expected } => (state != expected).then_some(state),
            // An indeterminate compare-and-set that took effect at this point swapped only if
            // the register held the expected value.
            Kind::InfoCas { expected, new } => Some(if state == expected { new } else { state }),
        }
    }

    /// The value this operation requires the register to hold, if any.
    fn observes(self) -> Option<u32> {
        match self {
            Kind::Read(value)
            | Kind::CasOk {
                expected: value, ..
            } => Some(value),
            Kind::InfoCas { expected, .. } => Some(expected),
            Kind::Write(_) | Kind::CasFail { .. } | Kind::InfoWrite(_) => None,
        }
    }

    /// The value this operation may write, if any.
    fn writes(self) -> Option<u32> {
        match self {
            Kind::Write(value) | Kind::InfoWrite(value) => Some(value),
            Kind::CasOk { new, .. } | Kind::InfoCas { new, .. } => Some(new),
            Kind::Read(_) | Kind::CasFail { .. } => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    invoke: u64,
    /// `u64::MAX` for indeterminate operations: they may take effect at any later time.
    complete: u64,
    kind: Kind,
}

/// Reduces one key's operations to search entries: failed operations and indeterminate reads
/// are dropped (they changed nothing), values are interned.
fn reduce<'a>(ops: &[&'a Op]) -> Vec<Entry> {
    let mut interned: HashMap<&'a [u8], u32> = HashMap::new();
    let mut intern = |value: Option<&'a [u8]>| -> u32 {
        let Some(bytes) = value else {
            return ABSENT;
        };
        let next = u32::try_from(interned.len() + 1).unwrap_or(u32::MAX);
        *interned.entry(bytes).or_insert(next)
    };
    let mut entries = Vec::with_capacity(ops.len());
    for op in ops {
        let indeterminate = op.outcome.is_indeterminate();
        let kind = match (&op.call, &op.outcome) {
            (_, Outcome::Fail) | (Call::Read, Outcome::Pending | Outcome::Info) => continue,
            (Call::Read, Outcome::ReadOk(value)) => Kind::Read(intern(value.as_deref())),
            (Call::Write(value), Outcome::WriteOk) => Kind::Write(intern(Some(value))),
            (Call::Write(value), _) if indeterminate => Kind::InfoWrite(intern(Some(value))),
            (Call::Cas { expected, new }, Outcome::CasOk(true)) => Kind::CasOk {
                expected: intern(expected.as_deref()),
                new: intern(Some(new)),
            },
            (Call::Cas { expected, .. }, Outcome::CasOk(false)) => Kind::CasFail {
                expected: intern(expected.as_deref()),
            },
            (Call::Cas { expected, new }, _) if indeterminate => Kind::InfoCas {
                expected: intern(expected.as_deref()),
                new: intern(Some(new)),
            },
            // Malformed (validated away before the search): ignore.
            _ => continue,
        };
        let complete = match op.complete {
            Some(complete) if !indeterminate => complete,
            _ => u64::MAX,
        };
        entries.push(Entry {
            invoke: op.invoke,
            complete,
            kind,
        });
    }
    entries
}

/// Sound refutations in O(n log n): `true` if the entries certainly have no linearization.
fn refuted(entries: &[Entry]) -> bool {
    // For each value, the earliest invocation of an operation that may write it.
    let mut first_writer: HashMap<u32, u64> = HashMap::new();
    // The earliest completion of an acknowledged write: no operation writes `ABSENT`, so the
    // register is never absent after it.
    let mut first_ack = u64::MAX;
    for entry in entries {
        if let Some(value) = entry.kind.writes() {
            let first = first_writer.entry(value).or_insert(u64::MAX);
            *first = (*first).min(entry.invoke);
            if !entry.kind.is_info() {
                first_ack = first_ack.min(entry.complete);
            }
        }
    }
    entries.iter().any(|entry| {
        if entry.kind.is_info() {
            return false;
        }
        match entry.kind.observes() {
            Some(ABSENT) => first_ack < entry.invoke,
            Some(value) => first_writer
                .get(&value)
                .is_none_or(|&invoke| invoke > entry.complete),
            None => false,
        }
    })
}

/// Drops indeterminate operations that no linearization needs.
///
/// An indeterminate operation writing `v` can be left out of any linearization (the register
/// then keeps its previous value until the next write) when no operation could tell: no
/// read or compare-and-set requires the register to hold `v`, and no compare-and-set that
/// reported a mismatch completes after it was invoked (a mismatch can be explained by any
/// foreign value). Dropping one can make another droppable, hence the loop.
fn drop_unobserved(entries: &mut Vec<Entry>) {
    let latest_mismatch = entries
        .iter()
        .filter(|entry| matches!(entry.kind, Kind::CasFail { .. }))
        .map(|entry| entry.complete)
        .max();
    loop {
        let mut observed: HashSet<u32> = HashSet::new();
        for entry in entries.iter() {
            if let Some(value) = entry.kind.observes() {
                observed.insert(value);
            }
        }
        let before = entries.len();
        entries.retain(|entry| {
            let Some(value) = entry.kind.writes() else {
                return true;
            };
            !entry.kind.is_info()
                || observed.contains(&value)
                || latest_mismatch.is_some_and(|complete| complete >= entry.invoke)
        });
        if entries.len() == before {
            return;
        }
    }
}

/// Searches for a linearization of one register's operations, spending at most `budget`
/// steps. Returns the result and the steps spent.
pub(crate) fn search(ops: &[&Op], budget: u64) -> (SearchResult, u64) {
    let mut entries = reduce(ops);
    if refuted(&entries) {
        return (SearchResult::NotLinearizable, 1);
    }
    drop_unobserved(&mut entries);
    Search::new(&entries).run(budget)
}

/// The search state: Lowe's linked list of events, the linearized set and the cache.
struct Search {
    kinds: Vec<Kind>,
    /// Per event node: the operation and whether it is the call (else the return).
    node_op: Vec<usize>,
    node_is_call: Vec<bool>,
    next: Vec<usize>,
    prev: Vec<usize>,
    call_node: Vec<usize>,
    /// `NIL` for indeterminate operations, which never return.
    return_node: Vec<usize>,
    determinate: usize,
}

impl Search {
    fn new(entries: &[Entry]) -> Search {
        // (time, 0 = call / 1 = return, operation): at equal times calls come first, so that
        // equal times count as concurrent.
        let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(entries.len() * 2);
        for (index, entry) in entries.iter().enumerate() {
            events.push((entry.invoke, 0, index));
            if !entry.kind.is_info() {
                events.push((entry.complete, 1, index));
            }
        }
        events.sort_unstable();
        let nodes = events.len() + 1;
        let mut search = Search {
            kinds: entries.iter().map(|entry| entry.kind).collect(),
            node_op: vec![NIL; nodes],
            node_is_call: vec![false; nodes],
            next: vec![NIL; nodes],
            prev: vec![NIL; nodes],
            call_node: vec![NIL; entries.len()],
            return_node: vec![NIL; entries.len()],
            determinate: entries.iter().filter(|entry| !entry.kind.is_info()).count(),
        };
        for (position, &(_, which, op)) in events.iter().enumerate() {
            let node = position + 1;
            search.node_op[node] = op;
            search.node_is_call[node] = which == 0;
            if which == 0 {
                search.call_node[op] = node;
            } else {
                search.return_node[op] = node;
            }
            search.prev[node] = node - 1;
            search.next[node - 1] = node;
        }
        search
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_node[op]);
        if self.return_node[op] != NIL {
            self.unlink(self.return_node[op]);
        }
    }

    fn unlift(&mut self, op: usize) {
        if self.return_node[op] != NIL {
            self.relink(self.return_node[op]);
        }
        self.relink(self.call_node[op]);
    }

    /// The depth-first search. Candidates at each configuration are the calls before the
    /// first return of a not-yet-linearized operation; determinate ones are tried first, then
    /// indeterminate ones (which a linearization needs only where they were observed).
    fn run(mut self, budget: u64) -> (SearchResult, u64) {
        let words = self.kinds.len().div_ceil(64);
        // The linearized set's bits followed by the register state: one cache key.
        let mut key: Vec<u64> = vec![0; words + 1];
        let mut cache: HashSet<Vec<u64>, BuildHasherDefault<FxHasher>> = HashSet::default();
        // (operation, state before it, whether it was tried in the indeterminate phase).
        let mut stack: Vec<(usize, u32, bool)> = Vec::new();
        let mut state = ABSENT;
        let mut done = 0usize;
        let mut info_left = self.kinds.len() - self.determinate;
        let mut info_phase = false;
        let mut cursor = self.next[HEAD];
        let mut steps = 0u64;
        loop {
            if done == self.determinate {
                return (SearchResult::Linearizable, steps);
            }
            steps += 1;
            if steps > budget {
                return (SearchResult::Exhausted, steps);
            }
            if cursor == NIL || !self.node_is_call[cursor] {
                if !info_phase && info_left > 0 {
                    info_phase = true;
                    cursor = self.next[HEAD];
                    continue;
                }
                let Some((op, previous, phase)) = stack.pop() else {
                    return (SearchResult::NotLinearizable, steps);
                };
                key[op / 64] &= !(1 << (op % 64));
                state = previous;
                self.unlift(op);
                if self.kinds[op].is_info() {
                    info_left += 1;
                } else {
                    done -= 1;
                }
                info_phase = phase;
                cursor = self.next[self.call_node[op]];
                continue;
            }
            let op = self.node_op[cursor];
            let kind = self.kinds[op];
            if kind.is_info() != info_phase {
                cursor = self.next[cursor];
                continue;
            }
            if let Some(next_state) = kind.step(state) {
                key[op / 64] |= 1 << (op % 64);
                key[words] = u64::from(next_state);
                if !cache.contains(key.as_slice()) {
                    cache.insert(key.clone());
                    stack.push((op, state, info_phase));
                    state = next_state;
                    self.lift(op);
                    if kind.is_info() {
                        info_left -= 1;
                    } else {
                        done += 1;
                    }
                    info_phase = false;
                    cursor = self.next[HEAD];
                    continue;
                }
                key[op / 64] &= !(1 << (op % 64));
            }
            cursor = self.next[cursor];
        }
    }
}

/// A small, fast, deterministic hasher (the Firefox/rustc "Fx" hash) for the cache.
#[derive(Default)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        for &byte in chunks.remainder() {
            self.add(u64::from(byte));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn write_usize(&mut self, word: usize) {
        self.add(word as u64);
    }
}
