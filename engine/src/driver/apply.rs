//! The apply thread: owns the state machine, applies committed entries in log order,
//! answers proposers and readers, takes snapshot images and restores installed snapshots.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;
use tracing::{error, warn};

use crate::core::{Entry, EntryKind, NodeId, Proposal};
use crate::{Command, StateMachine};

use super::Error;
use super::event_loop::Event;
use super::handle::Reply;

/// Most entries merged into one [`StateMachine::apply`] call.
const MAX_BATCH_ENTRIES: usize = 16 * 1024;

/// Who waits for a log entry to be applied.
pub(crate) enum Waiter {
    /// A client proposal: answered with the state machine's response.
    Propose(Reply<Vec<u8>>),
    /// A membership change: answered with its index.
    Membership(Reply<u64>),
}

impl Waiter {
    pub(crate) fn fail(self, error: Error) {
        match self {
            Waiter::Propose(reply) => {
                let _ = reply.send(Err(error));
            }
            Waiter::Membership(reply) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Waiter::Propose(reply) => reply.is_closed(),
            Waiter::Membership(reply) => reply.is_closed(),
        }
    }

    fn answer(self, index: u64, response: Vec<u8>) {
        match self {
            Waiter::Propose(reply) => {
                let _ = reply.send(Ok(response));
            }
            Waiter::Membership(reply) => {
                let _ = reply.send(Ok(index));
            }
        }
    }
}

/// A read-only query waiting to be served.
pub(crate) struct Query {
    pub query: Vec<u8>,
    pub reply: Reply<Vec<u8>>,
}

/// Work for the apply thread, done in the order sent.
pub(crate) enum ApplyTask {
    /// Committed entries, ascending, and the waiters of some of them (ascending by index).
    Entries {
        entries: Vec<Entry>,
        waiters: Vec<(u64, Waiter)>,
    },
    /// Queries whose read index is applied once the tasks before this one are done.
    Queries(Vec<Query>),
    /// Take a snapshot image (answered with [`Event::SnapshotImage`]).
    Snapshot,
    /// Replace the state with the snapshot file at `path`, taken at `index`.
    Install {
        index: u64,
        path: PathBuf,
        done: std_mpsc::SyncSender<Result<(), String>>,
    },
}

/// Starts the apply thread of node `id`. It stops when the sender is dropped, after the tasks
/// already sent.
pub(crate) fn spawn<S: StateMachine>(
    id: NodeId,
    state_machine: S,
    events: mpsc::UnboundedSender<Event>,
) -> std::io::Result<(std_mpsc::Sender<ApplyTask>, JoinHandle<()>)> {
    let (tasks, inbox) = std_mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("shoal-apply-{id}"))
        .spawn(move || run(id, state_machine, &inbox, &events))?;
    Ok((tasks, thread))
}

fn run<S: StateMachine>(
    id: NodeId,
    mut state_machine: S,
    inbox: &std_mpsc::Receiver<ApplyTask>,
    events: &mpsc::UnboundedSender<Event>,
) {
    let mut failed: Option<String> = None;
    let mut next: Option<ApplyTask> = None;
    loop {
        let task = match next.take() {
            Some(task) => task,
            None => match inbox.recv() {
                Ok(task) => task,
                Err(_) => break,
            },
        };
        match task {
            ApplyTask::Entries {
                mut entries,
                mut waiters,
            } => {
                // Entries queued behind these go to the state machine in the same batch (one
                // atomic write for a persistent state machine).
                while entries.len() < MAX_BATCH_ENTRIES {
                    match inbox.try_recv() {
                        Ok(ApplyTask::Entries {
                            entries: more,
                            waiters: more_waiters,
                        }) => {
                            entries.extend(more);
                            waiters.extend(more_waiters);
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if let Some(reason) = &failed {
                    for (_, waiter) in waiters {
                        waiter.fail(Error::Stopped {
                            reason: reason.clone(),
                        });
                    }
                    continue;
                }
                match apply_entries(&mut state_machine, &entries, waiters) {
                    Ok(Some(index)) => {
                        let _ = events.send(Event::Applied { index });
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        error!(node = id, %reason, "state machine failed; stopping the node");
                        let _ = events.send(Event::Fatal(reason.clone()));
                        failed = Some(reason);
                    }
                }
            }
            ApplyTask::Queries(queries) => {
                for Query { query, reply } in queries {
                    let answer = match &failed {
                        Some(reason) => Err(Error::Stopped {
                            reason: reason.clone(),
                        }),
                        None => state_machine
                            .query(&query)
                            .map_err(|e| Error::StateMachine(e.to_string())),
                    };
                    let _ = reply.send(answer);
                }
            }
            ApplyTask::Snapshot => {
                let image = match &failed {
                    Some(reason) => Err(reason.clone()),
                    None => state_machine.snapshot().map_err(|e| e.to_string()),
                };
                let _ = events.send(Event::SnapshotImage(image));
            }
            ApplyTask::Install { index, path, done } => {
                let result = restore(&mut state_machine, index, &path);
                if result.is_ok() {
                    let _ = events.send(Event::Applied { index });
                }
                let _ = done.send(result);
            }
        }
    }
}

fn restore<S: StateMachine>(
    state_machine: &mut S,
    index: u64,
    path: &std::path::Path,
) -> Result<(), String> {
    let mut reader = shoal_wal::SnapshotReader::open(path).map_err(|e| e.to_string())?;
    state_machine
        .restore(index, &mut reader)
        .map_err(|e| format!("restoring snapshot {}: {e}", path.display()))
}

/// Applies `entries` and answers `waiters`; returns the last index handled. Blank and
/// configuration entries are not given to the state machine. On failure every waiter is
/// told why the node stops.
pub(super) fn apply_entries<S: StateMachine>(
    state_machine: &mut S,
    entries: &[Entry],
    waiters: Vec<(u64, Waiter)>,
) -> Result<Option<u64>, String> {
    let Some(last) = entries.last().map(|e| e.index) else {
        return Ok(None);
    };
    let responses = match run_batch(state_machine, entries, last) {
        Ok(responses) => responses,
        Err(reason) => {
            for (_, waiter) in waiters {
                waiter.fail(Error::Stopped {
                    reason: reason.clone(),
                });
            }
            return Err(reason);
        }
    };
    let mut answered = responses.into_iter();
    let mut next = answered.next();
    for (index, waiter) in waiters {
        while next.as_ref().is_some_and(|(i, _)| *i < index) {
            next = answered.next();
        }
        match next.take() {
            Some((i, response)) if i == index => {
                waiter.answer(index, response);
                next = answered.next();
            }
            other => {
                // A blank or configuration entry.
                next = other;
                waiter.answer(index, Vec::new());
            }
        }
    }
    Ok(Some(last))
}

/// Hands the `Normal` entries to the state machine as one batch; returns `(index, response)`
/// for each.
fn run_batch<S: StateMachine>(
    state_machine: &mut S,
    entries: &[Entry],
    last: u64,
) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let mut proposals: Vec<(u64, u64, Proposal)> = Vec::with_capacity(entries.len());
    for entry in entries.iter().filter(|e| e.kind == EntryKind::Normal) {
        let proposal = Proposal::decode(&entry.data).unwrap_or_else(|error| {
            // Every replica holds the same bytes, so handing them over raw is deterministic.
            warn!(index = entry.index, %error, "entry is not a proposal envelope; applying its raw bytes");
            Proposal {
                client_id: 0,
                seq: 0,
                payload: entry.data.to_vec(),
            }
        });
        proposals.push((entry.index, entry.term, proposal));
    }
    if proposals.is_empty() {
        return Ok(Vec::new());
    }
    let commands: Vec<Command<'_>> = proposals
        .iter()
        .map(|(index, term, p)| Command {
            index: *index,
            term: *term,
            client_id: p.client_id,
            seq: p.seq,
            payload: &p.payload,
        })
        .collect();
    let responses = state_machine
        .apply(&commands)
        .map_err(|e| format!("apply of entries up to {last} failed: {e}"))?;
    if responses.len() != commands.len() {
        return Err(format!(
            "state machine returned {} responses for {} commands",
            responses.len(),
            commands.len()
        ));
    }
    Ok(proposals
        .iter()
        .map(|(index, _, _)| *index)
        .zip(responses)
        .collect())
}
