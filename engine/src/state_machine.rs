//! The application side of Raft: what an embedder implements.

use std::io::{Read, Write};

/// A committed command, handed to [`StateMachine::apply`] in log order.
#[derive(Debug, Clone, Copy)]
pub struct Command<'a> {
    /// Log index of the entry that carried the command.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// The client that proposed it (0: anonymous, no deduplication).
    pub client_id: u64,
    /// The client's sequence number for this request; retries reuse it.
    pub seq: u64,
    /// The application's bytes.
    pub payload: &'a [u8],
}

/// A point-in-time image of a state machine, written out possibly on another thread while
/// the state machine goes on applying.
pub trait SnapshotImage: Send {
    /// The last applied index the image reflects.
    fn applied_index(&self) -> u64;
    /// Streams the image into `out`.
    fn write_to(self: Box<Self>, out: &mut dyn Write) -> std::io::Result<()>;
}

/// A replicated state machine.
///
/// Apply must be deterministic: the same commands in the same order give the same state and
/// responses on every node. Anything random or time-dependent is decided before proposing and
/// carried in the payload.
pub trait StateMachine: Send + 'static {
    /// The state machine's own error; an error from `apply` stops the node (the state machine
    /// can no longer be trusted to match its peers), so reserve it for storage failures and
    /// answer invalid requests with a response instead.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The last index whose effects are durable in this state machine (0 when fresh). After a
    /// restart the driver re-applies committed entries after it.
    fn applied_index(&self) -> u64;

    /// Applies committed commands in log order and returns one response per command.
    /// A persistent implementation writes the changes and the new applied index in one atomic
    /// batch, so a crash neither loses nor repeats a command.
    fn apply(&mut self, commands: &[Command<'_>]) -> Result<Vec<Vec<u8>>, Self::Error>;

    /// Answers a read-only query against the current state. The driver calls it only once the
    /// read's linearization point has been applied (or, for stale reads, at once).
    fn query(&self, query: &[u8]) -> Result<Vec<u8>, Self::Error>;

    /// Takes a consistent point-in-time image of the applied state.
    fn snapshot(&mut self) -> Result<Box<dyn SnapshotImage>, Self::Error>;

    /// Replaces the whole state with an image taken at `index` (read from `input`), durably.
    fn restore(&mut self, index: u64, input: &mut dyn Read) -> Result<(), Self::Error>;
}
