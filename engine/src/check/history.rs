//! The history model: operations on registers, their outcomes, and the recorders that
//! collect them from concurrent clients.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// A register's name. Registers with different keys are independent.
pub type Key = Vec<u8>;

/// A value written to a register. A register that was never written holds no value (`None`).
pub type Value = Vec<u8>;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Call {
    /// Read the register.
    Read,
    /// Overwrite the register with a value.
    Write(Value),
    /// Compare-and-set: if the register holds `expected` (`None`: the register is absent),
    /// replace it with `new`; otherwise change nothing.
    Cas {
        /// The value the register must hold for the swap to happen.
        expected: Option<Value>,
        /// The value written when it does.
        new: Value,
    },
}

impl Call {
    /// A write of `value`.
    pub fn write(value: impl Into<Value>) -> Call {
        Call::Write(value.into())
    }

    /// A compare-and-set from `expected` to `new`.
    pub fn cas(expected: Option<impl Into<Value>>, new: impl Into<Value>) -> Call {
        Call::Cas {
            expected: expected.map(Into::into),
            new: new.into(),
        }
    }

    /// The Jepsen function name: `read`, `write` or `cas`.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Read => "read",
            Call::Write(_) => "write",
            Call::Cas { .. } => "cas",
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Not completed (yet): treated exactly like [`Outcome::Info`].
    Pending,
    /// A read completed and returned this value (`None`: the register was absent).
    ReadOk(Option<Value>),
    /// A write was acknowledged: it took effect, once, between invocation and completion.
    WriteOk,
    /// A compare-and-set completed: `true` if it swapped, `false` if the register did not
    /// hold the expected value (it then changed nothing, but it did observe the register).
    CasOk(bool),
    /// The operation definitely did not take effect (for example, refused before it was
    /// proposed). Failed operations are ignored by the checker.
    Fail,
    /// Indeterminate: timed out or failed in an unknown way. It may have taken effect, at any
    /// moment after its invocation (even after its recorded completion), or not at all.
    Info,
}

impl Outcome {
    /// Whether the operation has a known result (`ReadOk`, `WriteOk` or `CasOk`).
    pub fn is_ok(&self) -> bool {
        matches!(
            self,
            Outcome::ReadOk(_) | Outcome::WriteOk | Outcome::CasOk(_)
        )
    }

    /// Whether the operation may or may not have taken effect (`Info` or `Pending`).
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Outcome::Info | Outcome::Pending)
    }

    /// Whether this outcome can end an operation of this kind.
    pub fn fits(&self, call: &Call) -> bool {
        match self {
            Outcome::ReadOk(_) => matches!(call, Call::Read),
            Outcome::WriteOk => matches!(call, Call::Write(_)),
            Outcome::CasOk(_) => matches!(call, Call::Cas { .. }),
            Outcome::Pending | Outcome::Fail | Outcome::Info => true,
        }
    }
}

/// The handle [`History::invoke`] returns, to complete the operation later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub usize);

/// One operation: who asked what of which register, when, and how it ended.
///
/// Times are `u64` in any unit that is the same for the whole history and monotonic (logical
/// ticks in the simulation, nanoseconds since the start of the run in `shoal chaos`). An
/// operation A precedes B in real time only if `A.complete < B.invoke`; equal times count as
/// concurrent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    /// The client (Jepsen's process) that issued the operation.
    pub process: u64,
    /// The register.
    pub key: Key,
    /// What was asked.
    pub call: Call,
    /// When the client sent the request.
    pub invoke: u64,
    /// When the client learned the outcome; `None` while pending. For `Info` this is when the
    /// client gave up, which the checker ignores (the operation may take effect later).
    pub complete: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

impl Op {
    /// Checks that the outcome fits the call and that the times are consistent.
    pub fn validate(&self, id: OpId) -> Result<(), HistoryError> {
        if !self.outcome.fits(&self.call) {
            return Err(HistoryError::OutcomeMismatch {
                op: id,
                call: self.call.name(),
            });
        }
        match (self.complete, &self.outcome) {
            (Some(_), Outcome::Pending) => Err(HistoryError::PendingCompleted { op: id }),
            (None, Outcome::Pending | Outcome::Info) => Ok(()),
            (None, _) => Err(HistoryError::MissingCompletion { op: id }),
            (Some(complete), _) if complete < self.invoke => {
                Err(HistoryError::CompletedBeforeInvoked {
                    op: id,
                    invoke: self.invoke,
                    complete,
                })
            }
            (Some(_), _) => Ok(()),
        }
    }
}

/// A malformed history or a misuse of the recorder.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// `complete` was called with an id this history never handed out.
    #[error("operation {op:?} does not exist")]
    UnknownOp {
        /// The id.
        op: OpId,
    },
    /// `complete` was called twice for the same operation.
    #[error("operation {op:?} is already completed")]
    AlreadyCompleted {
        /// The id.
        op: OpId,
    },
    /// `complete` was called with [`Outcome::Pending`].
    #[error("operation {op:?} cannot be completed as pending")]
    CompletedAsPending {
        /// The id.
        op: OpId,
    },
    /// The outcome is of another kind than the call (a `ReadOk` for a write, say).
    #[error("operation {op:?} is a {call} with an outcome of another kind")]
    OutcomeMismatch {
        /// The id.
        op: OpId,
        /// The call's name.
        call: &'static str,
    },
    /// A pending operation carries a completion time.
    #[error("operation {op:?} is pending but has a completion time")]
    PendingCompleted {
        /// The id.
        op: OpId,
    },
    /// An `ok` or `fail` operation has no completion time.
    #[error("operation {op:?} has an outcome but no completion time")]
    MissingCompletion {
        /// The id.
        op: OpId,
    },
    /// The completion time is before the invocation time.
    #[error("operation {op:?} completed at {complete} before it was invoked at {invoke}")]
    CompletedBeforeInvoked {
        /// The id.
        op: OpId,
        /// Its invocation time.
        invoke: u64,
        /// Its completion time.
        complete: u64,
    },
}

/// A recorded history: every operation in invocation order of the calls to
/// [`History::invoke`] (or [`History::push`]).
///
/// One client (process) must have at most one operation in flight: complete each operation
/// (with [`Outcome::Info`] if its outcome is unknown) before the same process invokes the
/// next. Operations left [`Outcome::Pending`] are those in flight when recording stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Op>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Records the invocation of `call` on `key` by `process` at `time`; the operation is
    /// pending until [`History::complete`].
    pub fn invoke(&mut self, process: u64, key: impl Into<Key>, call: Call, time: u64) -> OpId {
        self.push(Op {
            process,
            key: key.into(),
            call,
            invoke: time,
            complete: None,
            outcome: Outcome::Pending,
        })
    }

    /// Records the outcome of a pending operation at `time`.
    pub fn complete(&mut self, id: OpId, outcome: Outcome, time: u64) -> Result<(), HistoryError> {
        let op = self
            .ops
            .get_mut(id.0)
            .ok_or(HistoryError::UnknownOp { op: id })?;
        if op.outcome != Outcome::Pending {
            return Err(HistoryError::AlreadyCompleted { op: id });
        }
        if outcome == Outcome::Pending {
            return Err(HistoryError::CompletedAsPending { op: id });
        }
        if !outcome.fits(&op.call) {
            return Err(HistoryError::OutcomeMismatch {
                op: id,
                call: op.call.name(),
            });
        }
        if time < op.invoke {
            return Err(HistoryError::CompletedBeforeInvoked {
                op: id,
                invoke: op.invoke,
                complete: time,
            });
        }
        op.outcome = outcome;
        op.complete = Some(time);
        Ok(())
    }

    /// Appends a whole operation (for tests, parsers and replays). It is validated when the
    /// history is checked.
    pub fn push(&mut self, op: Op) -> OpId {
        self.ops.push(op);
        OpId(self.ops.len() - 1)
    }

    /// Every operation, indexed by [`OpId`].
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// One operation.
    pub fn op(&self, id: OpId) -> Option<&Op> {
        self.ops.get(id.0)
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Checks every operation with [`Op::validate`].
    pub fn validate(&self) -> Result<(), HistoryError> {
        self.ops
            .iter()
            .enumerate()
            .try_for_each(|(index, op)| op.validate(OpId(index)))
    }

    /// The latest time mentioned by any operation (0 for an empty history).
    pub fn max_time(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| op.complete.unwrap_or(op.invoke).max(op.invoke))
            .max()
            .unwrap_or(0)
    }

    /// A copy of this history with, for each key of `final_values`, a read by process
    /// [`FINAL_READ_PROCESS`] that starts after every recorded time and returned that value
    /// (`None`: the key was absent). See
    /// [`check_final_reads`](super::check_final_reads).
    pub fn with_final_reads(&self, final_values: &BTreeMap<Key, Option<Value>>) -> History {
        let mut history = self.clone();
        // One after the other, so that the reads form a well-formed process of their own.
        let mut time = self.max_time().saturating_add(1);
        for (key, value) in final_values {
            history.push(Op {
                process: FINAL_READ_PROCESS,
                key: key.clone(),
                call: Call::Read,
                invoke: time,
                complete: Some(time.saturating_add(1)),
                outcome: Outcome::ReadOk(value.clone()),
            });
            time = time.saturating_add(2);
        }
        history
    }
}

/// The process id of the reads [`History::with_final_reads`] appends.
pub const FINAL_READ_PROCESS: u64 = u64::MAX;

impl FromIterator<Op> for History {
    fn from_iter<I: IntoIterator<Item = Op>>(iter: I) -> History {
        History {
            ops: iter.into_iter().collect(),
        }
    }
}

/// A [`History`] that many client tasks or threads record into at once (cheap to clone; every
/// clone records into the same history).
#[derive(Clone, Debug, Default)]
pub struct SharedHistory {
    inner: Arc<Mutex<History>>,
}

impl SharedHistory {
    /// An empty shared history.
    pub fn new() -> SharedHistory {
        SharedHistory::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        // The history stays consistent even if a recording thread panicked: every update is a
        // single assignment.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`History::invoke`].
    pub fn invoke(&self, process: u64, key: impl Into<Key>, call: Call, time: u64) -> OpId {
        self.lock().invoke(process, key, call, time)
    }

    /// See [`History::complete`].
    pub fn complete(&self, id: OpId, outcome: Outcome, time: u64) -> Result<(), HistoryError> {
        self.lock().complete(id, outcome, time)
    }

    /// A copy of the history recorded so far.
    pub fn snapshot(&self) -> History {
        self.lock().clone()
    }

    /// The history; a copy if other clones of this handle are still alive.
    pub fn into_history(self) -> History {
        match Arc::try_unwrap(self.inner) {
            Ok(mutex) => mutex.into_inner().unwrap_or_else(PoisonError::into_inner),
            Err(shared) => shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// Writes bytes as text if they are printable UTF-8, else as hex.
pub(crate) struct Bytes<'a>(pub &'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.0) {
            Ok(text) => write!(f, "{text:?}"),
            Err(_) => {
                f.write_str("0x")?;
                self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
            }
        }
    }
}

/// Writes an optional value: `nil` when absent.
pub(crate) struct OptBytes<'a>(pub Option<&'a [u8]>);

impl fmt::Display for OptBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(bytes) => Bytes(bytes).fmt(f),
            None => f.write_str("nil"),
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Read => f.write_str("read"),
            Call::Write(value) => write!(f, "write {}", Bytes(value)),
            Call::Cas { expected, new } => {
                write!(f, "cas {} -> {}", OptBytes(expected.as_deref()), Bytes(new))
            }
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pending => f.write_str("pending"),
            Outcome::ReadOk(value) => write!(f, "ok {}", OptBytes(value.as_deref())),
            Outcome::WriteOk => f.write_str("ok"),
            Outcome::CasOk(true) => f.write_str("ok (swapped)"),
            Outcome::CasOk(false) => f.write_str("ok (mismatch)"),
            Outcome::Fail => f.write_str("fail"),
            Outcome::Info => f.write_str("info (indeterminate)"),
        }
    }
}

impl fmt::Display for Op {
    /// One line: `process 3 key "k" [120, 180] write "v1" -> ok`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "process {} key {} [{}, ",
            self.process,
            Bytes(&self.key),
            self.invoke
        )?;
        match (self.complete, &self.outcome) {
            (Some(complete), outcome) if !outcome.is_indeterminate() => write!(f, "{complete}]")?,
            _ => f.write_str("inf]")?,
        }
        write!(f, " {} -> {}", self.call, self.outcome)
    }
}
