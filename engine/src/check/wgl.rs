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
/// The head sentinel of the list of determinate operations' calls and returns.
const HEAD: usize = 0;
/// The head sentinel of the list of indeterminate operations' calls (they never return, so
/// they are kept apart, not to be stepped over by every scan of the determinate ones).
const INFO_HEAD: usize = 1;
/// An interned absent value.
const ABSENT: u32 = 0;
/// Every value that no operation compares against, interned as one.
const UNSEEN: u32 = 1;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
/// are dropped (they changed nothing), values are interned, and every value no operation
/// ever compares against (no read returned it, no compare-and-set expected it) becomes the
/// one value `UNSEEN`: the model cannot tell such values apart.
fn reduce<'a>(ops: &[&'a Op]) -> Vec<Entry> {
    let mut mentioned: HashSet<&'a [u8]> = HashSet::new();
    for op in ops {
        match (&op.call, &op.outcome) {
            (_, Outcome::Fail) => {}
            (Call::Read, Outcome::ReadOk(Some(value))) => {
                mentioned.insert(value);
            }
            (
                Call::Cas {
                    expected: Some(value),
                    ..
                },
                _,
            ) => {
                mentioned.insert(value);
            }
            _ => {}
        }
    }
    let mut interned: HashMap<&'a [u8], u32> = HashMap::new();
    let mut intern = |value: Option<&'a [u8]>| -> u32 {
        match value {
            None => ABSENT,
            Some(bytes) if !mentioned.contains(bytes) => UNSEEN,
            Some(bytes) => {
                let next = u32::try_from(interned.len() + 2).unwrap_or(u32::MAX);
                *interned.entry(bytes).or_insert(next)
            }
        }
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
///
/// An operation that requires the register to hold `v` (a read of `v`, a successful
/// compare-and-set from `v`) at a moment when it certainly cannot:
/// - `v` absent, but a write was acknowledged before the operation began (nothing writes
///   "absent");
/// - no operation invoked before it completed may write `v`;
/// - every operation that may write `v` completed before an acknowledged write of another
///   value began, and that write completed before the operation began (a stale read);
/// - `v` was observed, then another value, then `v` again, one after the other in real
///   time, and at most one operation may write `v` (see [`flip_flop`]).
fn refuted(entries: &[Entry]) -> bool {
    stale(entries) || flip_flop(entries)
}

/// A value that comes back: observers of `v`, then of `u`, then of `v` again, each
/// completing before the next begins, while at most one operation may write `v` (none, for
/// absent). The register held `v` after its writer, then `u`, written later than `v`'s
/// writer; for `v` to return, `v` must be written again: impossible.
fn flip_flop(entries: &[Entry]) -> bool {
    let mut writers: HashMap<u32, usize> = HashMap::new();
    for entry in entries {
        if let Some(value) = entry.kind.writes() {
            *writers.entry(value).or_insert(0) += 1;
        }
    }
    // Per value: the earliest completion and the latest invocation of its observers.
    let mut spans: HashMap<u32, (u64, u64)> = HashMap::new();
    let mut observers: Vec<(u64, u64, u32)> = Vec::new();
    for entry in entries.iter().filter(|entry| !entry.kind.is_info()) {
        if let Some(value) = entry.kind.observes() {
            observers.push((entry.invoke, entry.complete, value));
            let span = spans.entry(value).or_insert((u64::MAX, 0));
            span.0 = span.0.min(entry.complete);
            span.1 = span.1.max(entry.invoke);
        }
    }
    // Queries, latest first: is there an observer of another value invoked after `first`
    // completed and completed before `last` was invoked?
    let mut queries: Vec<(u64, u64, u32)> = spans
        .iter()
        .filter(|(value, _)| writers.get(value).copied().unwrap_or(0) <= 1)
        .filter(|(_, (first, last))| first < last)
        .map(|(&value, &(first, last))| (first, last, value))
        .collect();
    queries.sort_unstable_by(|a, b| b.cmp(a));
    observers.sort_unstable_by(|a, b| b.cmp(a));
    // Among observers invoked after the current query's `first`: the two earliest
    // completions of different values, (complete, value).
    let mut best: [Option<(u64, u32)>; 2] = [None, None];
    let mut next = 0;
    for (first, last, value) in queries {
        while let Some(&(invoke, complete, observed)) = observers.get(next) {
            if invoke <= first {
                break;
            }
            next += 1;
            insert_least_two(&mut best, (complete, observed));
        }
        let middle = best.iter().flatten().find(|(_, other)| *other != value);
        if middle.is_some_and(|(complete, _)| *complete < last) {
            return true;
        }
    }
    false
}

/// Keeps in `best` the two least `(time, value)` pairs with different values.
fn insert_least_two(best: &mut [Option<(u64, u32)>; 2], candidate: (u64, u32)) {
    match *best {
        [Some(first), _] if first.1 == candidate.1 => best[0] = Some(first.min(candidate)),
        [Some(first), _] if candidate < first => *best = [Some(candidate), Some(first)],
        [Some(_), Some(second)] if second.1 == candidate.1 => {
            best[1] = Some(second.min(candidate));
        }
        [Some(_), Some(second)] if candidate < second => best[1] = Some(candidate),
        [Some(_), None] => best[1] = Some(candidate),
        [None, _] => best[0] = Some(candidate),
        _ => {}
    }
}

/// The stale-read refutations of [`refuted`].
fn stale(entries: &[Entry]) -> bool {
    // For each value, the earliest invocation and latest completion of its possible writers.
    let mut writers: HashMap<u32, (u64, u64)> = HashMap::new();
    for entry in entries {
        if let Some(value) = entry.kind.writes() {
            let (first_invoke, last_complete) = writers.entry(value).or_insert((u64::MAX, 0));
            *first_invoke = (*first_invoke).min(entry.invoke);
            *last_complete = (*last_complete).max(entry.complete);
        }
    }
    // Acknowledged writes by completion, to find, for an operation, the latest-invoked one
    // completed before it began.
    let mut acknowledged: Vec<(u64, u64, u32)> = entries
        .iter()
        .filter(|entry| !entry.kind.is_info())
        .filter_map(|entry| {
            entry
                .kind
                .writes()
                .map(|value| (entry.complete, entry.invoke, value))
        })
        .collect();
    acknowledged.sort_unstable();
    let mut observers: Vec<(u64, u64, u32)> = entries
        .iter()
        .filter(|entry| !entry.kind.is_info())
        .filter_map(|entry| {
            entry
                .kind
                .observes()
                .map(|value| (entry.invoke, entry.complete, value))
        })
        .collect();
    observers.sort_unstable();
    // The two latest invocations, of different values, among acknowledged writes completed so
    // far: (invoke, value).
    let mut best: [Option<(u64, u32)>; 2] = [None, None];
    let mut next_ack = 0;
    for &(invoke, complete, value) in &observers {
        while let Some(&(ack_complete, ack_invoke, ack_value)) = acknowledged.get(next_ack) {
            if ack_complete >= invoke {
                break;
            }
            next_ack += 1;
            let candidate = (ack_invoke, ack_value);
            match best {
                [Some(first), _] if first.1 == ack_value => {
                    best[0] = Some(first.max(candidate));
                }
                [Some(first), _] if candidate > first => best = [Some(candidate), Some(first)],
                [Some(_), Some(second)] if second.1 == ack_value => {
                    best[1] = Some(second.max(candidate));
                }
                [Some(_), Some(second)] if candidate > second => best[1] = Some(candidate),
                [Some(_), None] => best[1] = Some(candidate),
                [None, _] => best[0] = Some(candidate),
                _ => {}
            }
        }
        if value == ABSENT {
            if best[0].is_some() {
                return true;
            }
            continue;
        }
        let Some(&(first_invoke, last_complete)) = writers.get(&value) else {
            return true;
        };
        if first_invoke > complete {
            return true;
        }
        let newer = best
            .iter()
            .flatten()
            .find(|(_, other)| *other != value)
            .map(|(other_invoke, _)| *other_invoke);
        if newer.is_some_and(|other_invoke| other_invoke > last_complete) {
            return true;
        }
    }
    false
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

/// The order in which the search tries the candidates of a configuration.
const CLASSES: usize = 5;
/// Determinate writes of unseen values: only the candidate that must complete first is tried.
const UNSEEN_WRITES: usize = 1;
/// Indeterminate operations: of identical ones, only the earliest-invoked is tried.
const INDETERMINATE: usize = 4;

/// An operation's trial class: operations that do not change the register first (when one
/// fits the current value, taking it next is never wrong, so it is forced); then writes of
/// values nobody observes (getting them out of the way); then other writes; indeterminate
/// operations last (a linearization needs them only where they were observed).
fn class(kind: Kind) -> usize {
    match kind {
        Kind::Read(_) | Kind::CasFail { .. } => 0,
        Kind::Write(UNSEEN) => UNSEEN_WRITES,
        Kind::CasOk { new: UNSEEN, .. } => 2,
        Kind::Write(_) | Kind::CasOk { .. } => 3,
        Kind::InfoWrite(_) | Kind::InfoCas { .. } => INDETERMINATE,
    }
}

/// A choice on the search path.
struct Choice {
    op: usize,
    /// The register value before it.
    state: u32,
    /// The class being tried when it was chosen.
    class: usize,
    /// Whether it was forced: then no other choice at its configuration needs trying.
    forced: bool,
    /// The configuration's [`Follow`] restriction, restored when the choice is undone.
    follow: Option<Follow>,
}

/// The restriction after an indeterminate operation is taken: the next operation must need
/// it, that is, fit the register's new value but not the value before.
///
/// The search only builds linearizations in which every indeterminate operation is followed
/// at once by an operation that needs it, and loses none by that: in any linearization, an
/// indeterminate operation that changes nothing, or is followed by a write or by nothing,
/// can be left out; one followed by an operation that does not need it can be swapped with
/// that operation (no real-time order ties an operation that never returned). Repeating
/// this ends with every remaining indeterminate operation followed by one that needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Follow {
    /// The indeterminate operation just taken.
    op: usize,
    /// The register's value before it.
    before: u32,
}

impl Follow {
    /// Whether `kind`, taken now in register value `after`, needs the operation.
    fn needed_by(self, kind: Kind, after: u32) -> bool {
        match kind {
            Kind::Read(value)
            | Kind::CasOk {
                expected: value, ..
            }
            | Kind::InfoCas {
                expected: value, ..
            } => value == after && value != self.before,
            Kind::CasFail { expected } => expected == self.before && expected != after,
            Kind::Write(_) | Kind::InfoWrite(_) => false,
        }
    }
}

/// The search state: Lowe's linked list of events, the linearized set and the cache.
struct Search {
    kinds: Vec<Kind>,
    classes: Vec<usize>,
    /// Per event node: the operation and whether it is the call (else the return).
    node_op: Vec<usize>,
    node_is_call: Vec<bool>,
    next: Vec<usize>,
    prev: Vec<usize>,
    call_node: Vec<usize>,
    /// `NIL` for indeterminate operations, which never return.
    return_node: Vec<usize>,
    determinate: usize,
    /// Derived orderings (see [`Precedence`]).
    precedence: Precedence,
    /// Per operation: its completion (`u64::MAX` if indeterminate).
    complete: Vec<u64>,
    /// Per indeterminate operation: its group of identical operations and its place in the
    /// group by invocation. Identical indeterminate operations are interchangeable, and the
    /// earliest-invoked can stand in for any later one, so a group is linearized in order.
    group: Vec<(usize, usize)>,
    /// Per value: whether at most one operation may write it (absent: none may).
    single_writer: Vec<bool>,
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
        // Nodes are numbered in time order after the two sentinels, so that comparing node
        // numbers compares times across the two lists.
        let nodes = events.len() + 2;
        let mut search = Search {
            kinds: entries.iter().map(|entry| entry.kind).collect(),
            classes: entries.iter().map(|entry| class(entry.kind)).collect(),
            node_op: vec![NIL; nodes],
            node_is_call: vec![false; nodes],
            next: vec![NIL; nodes],
            prev: vec![NIL; nodes],
            call_node: vec![NIL; entries.len()],
            return_node: vec![NIL; entries.len()],
            determinate: entries.iter().filter(|entry| !entry.kind.is_info()).count(),
            precedence: Precedence::new(entries),
            complete: entries.iter().map(|entry| entry.complete).collect(),
            group: vec![(NIL, 0); entries.len()],
            single_writer: Vec::new(),
        };
        let values = entries
            .iter()
            .flat_map(|entry| [entry.kind.writes(), entry.kind.observes()])
            .flatten()
            .max()
            .map_or(2, |max| max as usize + 1);
        let mut writers = vec![0usize; values];
        for entry in entries {
            if let Some(value) = entry.kind.writes() {
                writers[value as usize] += 1;
            }
        }
        search.single_writer = writers.iter().map(|&count| count <= 1).collect();
        let mut groups: HashMap<Kind, usize> = HashMap::new();
        let mut by_invoke: Vec<(u64, usize)> = entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.kind.is_info())
            .map(|(op, entry)| (entry.invoke, op))
            .collect();
        by_invoke.sort_unstable();
        let mut sizes: Vec<usize> = Vec::new();
        for (_, op) in by_invoke {
            let next = groups.len();
            let group = *groups.entry(entries[op].kind).or_insert(next);
            if group == sizes.len() {
                sizes.push(0);
            }
            search.group[op] = (group, sizes[group]);
            sizes[group] += 1;
        }
        let (mut last, mut last_info) = (HEAD, INFO_HEAD);
        for (position, &(_, which, op)) in events.iter().enumerate() {
            let node = position + 2;
            search.node_op[node] = op;
            search.node_is_call[node] = which == 0;
            if which == 0 {
                search.call_node[op] = node;
            } else {
                search.return_node[op] = node;
            }
            let tail = if entries[op].kind.is_info() {
                &mut last_info
            } else {
                &mut last
            };
            search.prev[node] = *tail;
            search.next[*tail] = node;
            *tail = node;
        }
        search
    }

    /// Of the unseen-value writes that may be linearized next, the one that completes first.
    /// Those writes are interchangeable but for their deadlines: in any linearization from
    /// here, the first of them taken can be swapped with the one due first (it is a candidate
    /// now, and whatever had to follow the other follows it too). So it alone is tried.
    fn earliest_unseen_write(&self) -> usize {
        let mut best = NIL;
        let mut cursor = self.next[HEAD];
        while cursor != NIL && self.node_is_call[cursor] {
            let op = self.node_op[cursor];
            if self.classes[op] == UNSEEN_WRITES
                && (best == NIL || (self.complete[op], op) < (self.complete[best], best))
            {
                best = op;
            }
            cursor = self.next[cursor];
        }
        best
    }

    /// Whether indeterminate `op`, taken now in register value `state` and leaving it at
    /// `after`, could be followed at once by a candidate that needs it (see [`Follow`]): only
    /// then is it worth trying. That follower is a candidate already: an indeterminate
    /// operation has no return, so taking it admits no new candidates.
    fn has_beneficiary(&self, op: usize, state: u32, after: u32, window_end: usize) -> bool {
        let follow = Follow { op, before: state };
        let determinate =
            std::iter::successors(Some(self.next[HEAD]), |&node| self.next.get(node).copied())
                .take_while(|&node| node != NIL && self.node_is_call[node]);
        let indeterminate = std::iter::successors(Some(self.next[INFO_HEAD]), |&node| {
            self.next.get(node).copied()
        })
        .take_while(|&node| node != NIL && node < window_end);
        determinate
            .chain(indeterminate)
            .map(|node| self.node_op[node])
            .any(|other| other != op && follow.needed_by(self.kinds[other], after))
    }

    /// The first return of a determinate operation not yet linearized (`NIL` if none): the
    /// candidates are the calls before it.
    fn window_end(&self) -> usize {
        let mut cursor = self.next[HEAD];
        while cursor != NIL && self.node_is_call[cursor] {
            cursor = self.next[cursor];
        }
        cursor
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

    /// The depth-first search. The candidates at a configuration are the calls before the
    /// first return of a not-yet-linearized operation, tried class by class (see [`class`]).
    ///
    /// A forced choice: if a candidate that leaves the register unchanged fits the current
    /// value, any linearization from this configuration can be rearranged to take it next
    /// (nothing linearized later has to precede it in real time, since it is a candidate,
    /// and no later result changes, since the value does not). So it is taken without
    /// trying the others, and if it fails, the configuration fails.
    fn run(mut self, budget: u64) -> (SearchResult, u64) {
        let words = self.kinds.len().div_ceil(64);
        // The linearized set's bits followed by the register state: one cache key.
        // (The restriction, if any, is part of the configuration: one more word.)
        let mut key: Vec<u64> = vec![0; words + 2];
        let mut follow: Option<Follow> = None;
        let mut cache: HashSet<Box<[u64]>, BuildHasherDefault<FxHasher>> = HashSet::default();
        let mut stack: Vec<Choice> = Vec::new();
        let mut left = [0usize; CLASSES];
        for &class in &self.classes {
            left[class] += 1;
        }
        // Per group of identical indeterminate operations: how many are linearized.
        let mut taken: Vec<usize> =
            vec![0; self.group.iter().filter(|(group, _)| *group != NIL).count()];
        // The one unseen-value write to try at this configuration.
        let mut pick = NIL;
        // While trying indeterminate operations: the end of the candidates' window.
        let mut window_end = NIL;
        // Per value: determinate operations not yet linearized that require it.
        let mut waiting = vec![0usize; self.single_writer.len()];
        for kind in &self.kinds {
            if let Some(value) = kind.observes()
                && !kind.is_info()
            {
                waiting[value as usize] += 1;
            }
        }
        let mut state = ABSENT;
        let mut done = 0usize;
        let mut class = 0usize;
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
            let class_done = cursor == NIL
                || !self.node_is_call[cursor]
                || (class == INDETERMINATE && cursor > window_end);
            let fails = if class_done {
                // This class is exhausted here: on to the next class that has operations left.
                match (class + 1..CLASSES).find(|&next| left[next] > 0) {
                    Some(next) => {
                        class = next;
                        cursor = self.next[HEAD];
                        if class == UNSEEN_WRITES {
                            pick = self.earliest_unseen_write();
                        } else if class == INDETERMINATE {
                            cursor = self.next[INFO_HEAD];
                            window_end = self.window_end();
                        }
                        continue;
                    }
                    None => true,
                }
            } else {
                let op = self.node_op[cursor];
                if self.classes[op] != class {
                    cursor = self.next[cursor];
                    continue;
                }
                let kind = self.kinds[op];
                let forced = class == 0;
                let eligible = match class {
                    UNSEEN_WRITES => op == pick && follow.is_none(),
                    INDETERMINATE => {
                        let (group, place) = self.group[op];
                        taken[group] == place
                            && self.precedence.ready(op)
                            && kind.step(state).is_some_and(|after| {
                                after != state && self.has_beneficiary(op, state, after, window_end)
                            })
                    }
                    _ => self.precedence.ready(op),
                } && follow.is_none_or(|follow| follow.needed_by(kind, state));
                if !eligible {
                    cursor = self.next[cursor];
                    continue;
                }
                // Leaving a value that only one operation writes (or absence, which none
                // does) for good while a determinate operation still requires it is a dead
                // end: that operation could never be linearized.
                let strands = |next_state: u32| {
                    next_state != state
                        && self.single_writer[state as usize]
                        && waiting[state as usize]
                            > usize::from(!kind.is_info() && kind.observes() == Some(state))
                };
                match kind.step(state).filter(|&next_state| !strands(next_state)) {
                    Some(next_state) => {
                        key[op / 64] |= 1 << (op % 64);
                        key[words] = u64::from(next_state);
                        let next_follow = kind.is_info().then_some(Follow { op, before: state });
                        key[words + 1] = next_follow.map_or(0, |follow| follow.op as u64 + 1);
                        if cache.contains(key.as_slice()) {
                            key[op / 64] &= !(1 << (op % 64));
                            // Explored before, and failed. A forced choice fails its
                            // configuration with it.
                            forced
                        } else {
                            cache.insert(key.as_slice().into());
                            stack.push(Choice {
                                follow,
                                op,
                                state,
                                class,
                                forced,
                            });
                            state = next_state;
                            self.lift(op);
                            left[self.classes[op]] -= 1;
                            self.precedence.linearized(op, true);
                            if kind.is_info() {
                                taken[self.group[op].0] += 1;
                            } else if let Some(value) = kind.observes() {
                                waiting[value as usize] -= 1;
                            }
                            if !kind.is_info() {
                                done += 1;
                            }
                            class = 0;
                            follow = next_follow;
                            cursor = self.next[HEAD];
                            continue;
                        }
                    }
                    None => false,
                }
            };
            if !fails {
                cursor = self.next[cursor];
                continue;
            }
            // Backtrack: undo choices until one that is not forced, and try the candidates
            // after it.
            loop {
                let Some(choice) = stack.pop() else {
                    return (SearchResult::NotLinearizable, steps);
                };
                let op = choice.op;
                key[op / 64] &= !(1 << (op % 64));
                state = choice.state;
                follow = choice.follow;
                self.unlift(op);
                left[self.classes[op]] += 1;
                self.precedence.linearized(op, false);
                if self.kinds[op].is_info() {
                    taken[self.group[op].0] -= 1;
                } else if let Some(value) = self.kinds[op].observes() {
                    waiting[value as usize] += 1;
                }
                if !self.kinds[op].is_info() {
                    done -= 1;
                }
                if !choice.forced {
                    class = choice.class;
                    cursor = self.next[self.call_node[op]];
                    pick = op;
                    if class == INDETERMINATE {
                        window_end = self.window_end();
                    }
                    break;
                }
            }
        }
    }
}

/// Orderings every linearization obeys, derived from reads: if `w` is the only operation that
/// may write `v`, and a determinate operation observing `v` begins after a determinate write
/// `x` of another value completed, then `x` precedes `w` (both precede the observer, and no
/// other value may be written between `w` and it). Taking the latest-invoked observer of each
/// value gives, for `w`, a prefix (by completion) of the determinate writes, which must all be
/// linearized before `w` may be.
struct Precedence {
    /// Per operation: its position among determinate writes ordered by completion, or `NIL`.
    rank: Vec<usize>,
    /// Per operation: how many determinate writes (by that order) must precede it, and how
    /// many of those are itself (0 or 1).
    required: Vec<Option<(usize, usize)>>,
    /// A Fenwick tree counting linearized determinate writes by rank.
    tree: Vec<usize>,
}

impl Precedence {
    fn new(entries: &[Entry]) -> Precedence {
        let mut writes: Vec<(u64, usize)> = entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| !entry.kind.is_info() && entry.kind.writes().is_some())
            .map(|(op, entry)| (entry.complete, op))
            .collect();
        writes.sort_unstable();
        let mut rank = vec![NIL; entries.len()];
        for (position, &(_, op)) in writes.iter().enumerate() {
            rank[op] = position;
        }
        let mut writers: HashMap<u32, (usize, usize)> = HashMap::new();
        let mut latest_observer: HashMap<u32, u64> = HashMap::new();
        for (op, entry) in entries.iter().enumerate() {
            if let Some(value) = entry.kind.writes() {
                let (count, _) = writers.entry(value).or_insert((0, op));
                *count += 1;
            }
            if let Some(value) = entry.kind.observes()
                && !entry.kind.is_info()
            {
                let latest = latest_observer.entry(value).or_insert(0);
                *latest = (*latest).max(entry.invoke);
            }
        }
        let mut required = vec![None; entries.len()];
        for (value, &(count, op)) in &writers {
            if count != 1 || *value == UNSEEN || *value == ABSENT {
                continue;
            }
            let Some(&observer_invoke) = latest_observer.get(value) else {
                continue;
            };
            let before = writes.partition_point(|&(complete, _)| complete < observer_invoke);
            let itself = usize::from(rank[op] < before);
            if before > itself {
                required[op] = Some((before, itself));
            }
        }
        Precedence {
            rank,
            required,
            tree: vec![0; writes.len() + 1],
        }
    }

    /// Whether every write that must precede `op` is linearized.
    fn ready(&self, op: usize) -> bool {
        let Some((before, itself)) = self.required[op] else {
            return true;
        };
        let mut index = before;
        let mut done = 0;
        while index > 0 {
            done += self.tree[index];
            index &= index - 1;
        }
        done + itself == before
    }

    /// Records that `op` was linearized (or undone).
    fn linearized(&mut self, op: usize, added: bool) {
        if self.rank[op] == NIL {
            return;
        }
        let mut index = self.rank[op] + 1;
        while index < self.tree.len() {
            if added {
                self.tree[index] += 1;
            } else {
                self.tree[index] -= 1;
            }
            index += index & index.wrapping_neg();
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
