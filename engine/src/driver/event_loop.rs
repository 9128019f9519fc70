//! The event loop: the one task that owns the [`RawNode`] and carries out its [`Ready`]s.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use shoal_wal::{HardState, SnapshotStore, SnapshotWriter, Wal};
use tokio::runtime::RuntimeFlavor;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, warn};

use crate::core::{
    Entry, Message, RawNode, Ready, Role, SnapshotChunk, SnapshotMeta, SnapshotSend,
};
use crate::{SnapshotImage, StateMachine};

use super::apply::{self, ApplyTask, Query, Waiter};
use super::handle::{Consistency, Reply, Request, SHUT_DOWN};
use super::storage;
use super::{Error, Metrics, NodeBuilder, NodeHandle, Transport};

/// Most inputs of one kind taken in one turn of the loop before a `Ready` is taken.
const DRAIN_LIMIT: usize = 4096;
/// Most `Ready`s carried out in one turn of the loop.
const READY_ROUNDS: usize = 8;
/// How long shutdown waits for in-flight WAL writes.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Completions coming back into the loop from the WAL, the apply thread and blocking tasks.
pub(crate) enum Event {
    /// The WAL write of `Ready` number `number` is durable (or failed).
    Persisted {
        number: u64,
        result: Result<(), shoal_wal::Error>,
    },
    /// The state machine has applied everything up to `index`.
    Applied { index: u64 },
    /// The state machine failed: the node must stop.
    Fatal(String),
    /// The state machine took an image for a snapshot.
    SnapshotImage(Result<Box<dyn SnapshotImage>, String>),
    /// A snapshot image was written to its file.
    SnapshotWritten {
        index: u64,
        result: Result<(), Error>,
    },
    /// A log compaction finished.
    Compacted(Result<(), shoal_wal::Error>),
}

/// A `Ready` whose writes may not be durable yet, with the messages that wait for them.
struct PendingReady {
    number: u64,
    messages: Vec<Message>,
    durable: bool,
}

/// An incoming snapshot being written, chunk by chunk.
struct Incoming {
    meta: SnapshotMeta,
    writer: SnapshotWriter,
    next_offset: u64,
}

struct Driver {
    id: u64,
    raw: RawNode,
    wal: Wal,
    snapshots: SnapshotStore,
    transport: Arc<dyn Transport>,
    apply_tx: Option<std_mpsc::Sender<ApplyTask>>,
    apply_thread: Option<JoinHandle<()>>,
    events_tx: mpsc::UnboundedSender<Event>,
    metrics_tx: watch::Sender<Metrics>,
    policy: super::SnapshotPolicy,
    tick: Duration,
    max_apply_lag: u64,
    wal_max_bytes: u64,

    /// Proposals and membership changes waiting for their entry: index → (term, waiter).
    waiters: BTreeMap<u64, (u64, Waiter)>,
    /// Proposals gathered in this turn, proposed together.
    proposals: Vec<(Bytes, Reply<Vec<u8>>)>,
    /// Linearizable and lease reads gathered in this turn, each kind one read request.
    linearizable_reads: Vec<Query>,
    lease_reads: Vec<Query>,
    next_read_id: u64,
    /// Reads waiting for their read index: read id → queries.
    reads: HashMap<u64, Vec<Query>>,
    /// Reads whose read index is known but not yet handed to the apply thread.
    parked_reads: BTreeMap<u64, Vec<Query>>,

    /// `Ready`s in order, until durable.
    persist_queue: VecDeque<PendingReady>,
    /// Term and vote last saved.
    saved_hard_state: HardState,
    /// Everything up to this index is handed to the apply thread (entries or a snapshot).
    handed_out: u64,
    /// The apply thread's progress.
    applied: u64,

    incoming: Option<Incoming>,
    received: Option<(SnapshotMeta, std::path::PathBuf)>,
    snapshot_running: bool,
    snapshot_waiters: Vec<Reply<u64>>,
    entries_since_snapshot: u64,
    bytes_since_snapshot: u64,

    wal_stats: shoal_wal::WalStats,
    /// Snapshot writes and compactions running on blocking threads; shutdown waits for
    /// them, so no file of this node is touched after it returns.
    background: usize,
    ticks: u64,
    stopping: bool,
    /// Tests: stop without flushing (see `NodeHandle::crash`).
    crashed: bool,
    shutdown_replies: Vec<oneshot::Sender<()>>,
    fatal: Option<String>,
}

/// Recovers the node's storage and starts its event loop and apply thread.
pub(crate) async fn start<S: StateMachine>(
    builder: NodeBuilder,
    state_machine: S,
    transport: Arc<dyn Transport>,
) -> Result<NodeHandle, Error> {
    let for_recovery = builder.clone();
    let opened = tokio::task::spawn_blocking(move || storage::open(&for_recovery, state_machine))
        .await
        .map_err(|e| Error::Recovery(format!("recovery task failed: {e}")))??;
    let id = builder.id;
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (apply_tx, apply_thread) = apply::spawn(id, opened.state_machine, events_tx.clone())
        .map_err(|source| Error::Io {
            path: builder.data_dir.clone(),
            source,
        })?;
    let (requests_tx, requests_rx) = mpsc::channel(builder.request_queue);
    let (peers_tx, peers_rx) = mpsc::channel(builder.peer_queue);
    let raw = opened.raw;
    let wal_stats = opened.wal.stats();
    let applied = raw.applied_index();
    let saved_hard_state = raw.hard_state();
    let mut driver = Driver {
        id,
        raw,
        wal: opened.wal,
        snapshots: opened.snapshots,
        transport,
        apply_tx: Some(apply_tx),
        apply_thread: Some(apply_thread),
        events_tx,
        metrics_tx: watch::channel(placeholder_metrics(id)).0,
        policy: builder.snapshot.clone(),
        tick: builder.tick,
        max_apply_lag: builder.max_apply_lag,
        wal_max_bytes: builder.wal_max_bytes,
        waiters: BTreeMap::new(),
        proposals: Vec::new(),
        linearizable_reads: Vec::new(),
        lease_reads: Vec::new(),
        // Read ids differ between incarnations: a ReadIndexResponse to a read of a previous
        // run of this node, still in flight, must not answer a new read with its older index.
        next_read_id: (rand::random::<u64>() >> 2) | 1,
        reads: HashMap::new(),
        parked_reads: BTreeMap::new(),
        persist_queue: VecDeque::new(),
        saved_hard_state,
        handed_out: applied,
        applied,
        incoming: None,
        received: None,
        snapshot_running: false,
        snapshot_waiters: Vec::new(),
        entries_since_snapshot: 0,
        bytes_since_snapshot: 0,
        wal_stats,
        background: 0,
        ticks: 0,
        stopping: false,
        crashed: false,
        shutdown_replies: Vec::new(),
        fatal: None,
    };
    let (metrics_tx, metrics_rx) = watch::channel(driver.current_metrics(None));
    driver.metrics_tx = metrics_tx;
    tokio::spawn(driver.run(requests_rx, peers_rx, events_rx));
    Ok(NodeHandle::new(
        id,
        requests_tx,
        peers_tx,
        metrics_rx,
        builder.request_timeout,
        builder.max_proposal_bytes,
    ))
}

fn placeholder_metrics(id: u64) -> Metrics {
    Metrics {
        id,
        role: Role::Follower,
        term: 0,
        leader: None,
        commit_index: 0,
        applied_index: 0,
        last_index: 0,
        snapshot_index: 0,
        wal_bytes: 0,
        wal_syncs: 0,
        membership: Default::default(),
        stopped: None,
    }
}

/// Runs `f`, a short blocking step of the loop, telling a multi-threaded runtime to move
/// other tasks off this worker meanwhile.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl Driver {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut peers: mpsc::Receiver<Message>,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) {
        let mut ticker = tokio::time::interval(self.tick);
        // Missed ticks are caught up: logical time must not run slower than the wall clock, or
        // a leader's lease would outlast the followers' election timeouts.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        info!(node = self.id, "node started");
        loop {
            // The tick comes first: under a steady flood of messages it must still run, or a
            // leader would stop sending heartbeats.
            tokio::select! {
                biased;
                _ = ticker.tick() => self.on_tick(),
                Some(event) = events.recv() => self.on_event(event),
                request = requests.recv() => match request {
                    Some(request) => self.on_request(request),
                    None => self.stopping = true,
                },
                Some(message) = peers.recv() => self.raw.step(message),
            }
            // Take everything else already waiting, so one `Ready` covers it all.
            for _ in 0..DRAIN_LIMIT {
                match events.try_recv() {
                    Ok(event) => self.on_event(event),
                    Err(_) => break,
                }
            }
            for _ in 0..DRAIN_LIMIT {
                match requests.try_recv() {
                    Ok(request) => self.on_request(request),
                    Err(_) => break,
                }
            }
            for _ in 0..DRAIN_LIMIT {
                match peers.try_recv() {
                    Ok(message) => self.raw.step(message),
                    Err(_) => break,
                }
            }
            if self.fatal.is_none() {
                self.flush_batches();
                self.process_ready();
            }
            self.publish_metrics(None);
            if self.fatal.is_some() || self.stopping {
                break;
            }
        }
        self.close(requests, events).await;
    }

    // ------------------------------------------------------------------ inputs

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Propose { data, reply } => self.proposals.push((data, reply)),
            Request::Read {
                query,
                consistency,
                reply,
            } => {
                let query = Query { query, reply };
                match consistency {
                    Consistency::Linearizable => self.linearizable_reads.push(query),
                    Consistency::Lease => self.lease_reads.push(query),
                    Consistency::Stale => self.send_apply(ApplyTask::Queries(vec![query])),
                }
            }
            Request::ChangeMembership { change, reply } => {
                match self.raw.propose_membership(change) {
                    Ok(index) => {
                        let term = self.raw.term();
                        self.waiters
                            .insert(index, (term, Waiter::Membership(reply)));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Request::TransferLeader { target, reply } => {
                let _ = reply.send(self.raw.transfer_leader(target).map_err(Error::from));
            }
            Request::Snapshot { reply } => {
                self.snapshot_waiters.push(reply);
                if !self.snapshot_running {
                    self.begin_snapshot();
                }
            }
            Request::Shutdown { reply } => {
                self.shutdown_replies.push(reply);
                self.stopping = true;
            }
            #[cfg(test)]
            Request::Crash { reply } => {
                self.shutdown_replies.push(reply);
                self.stopping = true;
                self.crashed = true;
            }
        }
    }

    fn on_tick(&mut self) {
        self.raw.tick();
        self.ticks += 1;
        let per_second = (1000 / self.tick.as_millis().max(1)).max(1) as u64;
        if self.ticks.is_multiple_of(per_second) {
            self.wal_stats = self.wal.stats();
            self.prune_abandoned();
            if self.wal_stats.disk_bytes > self.wal_max_bytes
                && self.entries_since_snapshot > 0
                && !self.snapshot_running
            {
                info!(
                    node = self.id,
                    wal_bytes = self.wal_stats.disk_bytes,
                    "wal over its bound; taking a snapshot"
                );
                self.begin_snapshot();
            }
        }
    }

    /// Forgets requests whose callers gave up (timed out), so nothing grows without bound
    /// when, for example, forwarded read requests are lost.
    fn prune_abandoned(&mut self) {
        self.waiters.retain(|_, (_, waiter)| !waiter.is_closed());
        self.reads.retain(|_, queries| {
            queries.retain(|q| !q.reply.is_closed());
            !queries.is_empty()
        });
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Persisted { number, result } => match result {
                Ok(()) => {
                    if let Some(pending) =
                        self.persist_queue.iter_mut().find(|p| p.number == number)
                    {
                        pending.durable = true;
                    }
                    self.release_durable();
                }
                Err(e) => self.fail(format!("wal write failed: {e}")),
            },
            Event::Applied { index } => self.applied = self.applied.max(index),
            Event::Fatal(reason) => self.fail(reason),
            Event::SnapshotImage(Ok(image)) => self.write_snapshot(image),
            Event::SnapshotImage(Err(reason)) => {
                self.finish_snapshot(Err(Error::StateMachine(reason)));
            }
            Event::SnapshotWritten { index, result } => {
                self.background = self.background.saturating_sub(1);
                match result {
                    Ok(()) => match self.raw.snapshot_taken(index) {
                        Ok(()) => {
                            info!(node = self.id, index, "snapshot taken");
                            self.finish_snapshot(Ok(index));
                        }
                        Err(e) => self.finish_snapshot(Err(e.into())),
                    },
                    Err(e) => {
                        warn!(node = self.id, index, error = %e, "snapshot write failed");
                        self.finish_snapshot(Err(e));
                    }
                }
            }
            Event::Compacted(result) => {
                self.background = self.background.saturating_sub(1);
                if let Err(e) = result {
                    if self.wal.is_poisoned() {
                        self.fail(format!("wal compaction failed: {e}"));
                    } else {
                        warn!(node = self.id, error = %e, "wal compaction failed");
                    }
                }
                self.wal_stats = self.wal.stats();
            }
        }
    }

    fn fail(&mut self, reason: String) {
        if self.fatal.is_none() {
            error!(node = self.id, %reason, "stopping the node after a fatal error");
            self.fatal = Some(reason);
        }
    }

    /// Proposes the proposals gathered in this turn as one batch, and asks for one read
    /// index for all the linearizable reads (and one for the lease reads).
    fn flush_batches(&mut self) {
        if !self.proposals.is_empty()
            && self.handed_out - self.applied.min(self.handed_out) > self.max_apply_lag
        {
            // The state machine is far behind: refuse rather than queue without bound.
            for (_, reply) in std::mem::take(&mut self.proposals) {
                let _ = reply.send(Err(Error::Busy));
            }
        }
        if !self.proposals.is_empty() {
            let batch = std::mem::take(&mut self.proposals);
            let data: Vec<Bytes> = batch.iter().map(|(data, _)| data.clone()).collect();
            match self.raw.propose_batch(data) {
                Ok(first) => {
                    let term = self.raw.term();
                    for (index, (_, reply)) in (first..).zip(batch) {
                        self.waiters.insert(index, (term, Waiter::Propose(reply)));
                    }
                }
                Err(e) => {
                    for (_, reply) in batch {
                        let _ = reply.send(Err(e.clone().into()));
                    }
                }
            }
        }
        for lease in [false, true] {
            let queries = if lease {
                std::mem::take(&mut self.lease_reads)
            } else {
                std::mem::take(&mut self.linearizable_reads)
            };
            if queries.is_empty() {
                continue;
            }
            let id = self.next_read_id;
            self.next_read_id += 1;
            let asked = if lease {
                self.raw.read_lease(id)
            } else {
                self.raw.read_index(id)
            };
            match asked {
                Ok(()) => {
                    self.reads.insert(id, queries);
                }
                Err(e) => {
                    for query in queries {
                        let _ = query.reply.send(Err(e.clone().into()));
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ Ready

    fn process_ready(&mut self) {
        for _ in 0..READY_ROUNDS {
            if self.fatal.is_some() || !self.raw.has_ready() {
                break;
            }
            let ready = self.raw.ready();
            if let Err(e) = self.handle_ready(ready) {
                self.fail(e.to_string());
            }
        }
    }

    /// Carries out one `Ready` in the order its documentation gives.
    fn handle_ready(&mut self, ready: Ready) -> Result<(), Error> {
        let needs_persistence = ready.needs_persistence();
        let Ready {
            number,
            soft_state,
            hard_state,
            snapshot_chunks,
            install_snapshot,
            entries,
            compact_log_to,
            messages,
            persisted_messages,
            committed_entries,
            read_states,
            aborted_reads,
            snapshot_sends,
        } = ready;
        if let Some(soft) = soft_state {
            info!(
                node = self.id,
                role = soft.role.as_str(),
                term = soft.term,
                leader = ?soft.leader,
                "raft state changed"
            );
        }
        // 1. Messages that need not wait: a leader replicates before its own fsync.
        if !messages.is_empty() {
            self.transport.send(messages);
        }
        // 2. An incoming snapshot.
        if !snapshot_chunks.is_empty() || install_snapshot.is_some() {
            blocking(|| self.receive_snapshot(snapshot_chunks, install_snapshot))?;
        }
        // 3. Entries go to the WAL's group commit; the completion comes back as an event.
        let mut waiting_for_disk = false;
        if !entries.is_empty() {
            let batch: Vec<shoal_wal::Entry> = entries.iter().map(Entry::to_wal).collect();
            let events = self.events_tx.clone();
            self.wal.submit(batch, move |result| {
                let _ = events.send(Event::Persisted { number, result });
            });
            waiting_for_disk = true;
        }
        if let Some(hard_state) = hard_state
            && (hard_state.term, hard_state.voted_for)
                != (self.saved_hard_state.term, self.saved_hard_state.voted_for)
        {
            // Term and vote must be durable before any message depending on them leaves.
            // The commit index alone is not worth a sync: it may lag on disk.
            blocking(|| self.wal.set_hard_state(&hard_state))?;
            self.saved_hard_state = hard_state;
        }
        if let Some((index, term)) = compact_log_to {
            self.compact_in_background(index, term);
        }
        // 4. Messages that wait for this and every earlier `Ready` to be durable.
        if needs_persistence || !persisted_messages.is_empty() {
            self.persist_queue.push_back(PendingReady {
                number,
                messages: persisted_messages,
                durable: !waiting_for_disk,
            });
            self.release_durable();
        }
        // 5. Committed entries to the apply thread.
        self.apply_committed(committed_entries);
        // 6. Reads.
        for read in read_states {
            if let Some(queries) = self.reads.remove(&read.id) {
                if read.index <= self.handed_out {
                    self.send_apply(ApplyTask::Queries(queries));
                } else {
                    self.parked_reads
                        .entry(read.index)
                        .or_default()
                        .extend(queries);
                }
            }
        }
        for id in aborted_reads {
            for query in self.reads.remove(&id).unwrap_or_default() {
                let _ = query.reply.send(Err(Error::ReadAborted));
            }
        }
        // 7. Snapshot chunks for lagging followers, read on blocking threads.
        for send in snapshot_sends {
            self.send_snapshot_chunk(send);
        }
        Ok(())
    }

    /// Sends the messages of every durable `Ready` at the front of the queue and tells the
    /// core.
    fn release_durable(&mut self) {
        let mut last = None;
        while self.persist_queue.front().is_some_and(|p| p.durable) {
            if let Some(done) = self.persist_queue.pop_front() {
                if !done.messages.is_empty() {
                    self.transport.send(done.messages);
                }
                last = Some(done.number);
            }
        }
        if let Some(number) = last {
            self.raw.on_persisted(number);
        }
    }

    fn apply_committed(&mut self, entries: Vec<Entry>) {
        let Some(last) = entries.last().map(|e| e.index) else {
            return;
        };
        let mut waiters = Vec::new();
        for entry in &entries {
            self.entries_since_snapshot += 1;
            self.bytes_since_snapshot += entry.data.len() as u64;
            if let Some((term, waiter)) = self.waiters.remove(&entry.index) {
                if term == entry.term {
                    waiters.push((entry.index, waiter));
                } else {
                    waiter.fail(Error::Dropped { index: entry.index });
                }
            }
        }
        self.handed_out = self.handed_out.max(last);
        self.send_apply(ApplyTask::Entries { entries, waiters });
        self.release_parked_reads();
        if !self.snapshot_running
            && (self.entries_since_snapshot >= self.policy.max_log_entries
                || self.bytes_since_snapshot >= self.policy.max_log_bytes)
        {
            self.begin_snapshot();
        }
    }

    fn release_parked_reads(&mut self) {
        while let Some(entry) = self.parked_reads.first_entry() {
            if *entry.key() > self.handed_out {
                break;
            }
            let queries = entry.remove();
            self.send_apply(ApplyTask::Queries(queries));
        }
    }

    fn send_apply(&mut self, task: ApplyTask) {
        let sent = match &self.apply_tx {
            Some(tx) => tx.send(task).is_ok(),
            None => false,
        };
        if !sent {
            self.fail("the apply thread stopped".into());
        }
    }

    // ------------------------------------------------------------------ snapshots

    fn begin_snapshot(&mut self) {
        self.snapshot_running = true;
        self.entries_since_snapshot = 0;
        self.bytes_since_snapshot = 0;
        self.send_apply(ApplyTask::Snapshot);
    }

    fn write_snapshot(&mut self, image: Box<dyn SnapshotImage>) {
        let index = image.applied_index();
        let current = self.raw.snapshot().index;
        if index <= current {
            self.finish_snapshot(Ok(current));
            return;
        }
        let meta = match self.raw.snapshot_meta(index) {
            Ok(meta) => meta,
            Err(e) => {
                self.finish_snapshot(Err(e.into()));
                return;
            }
        };
        let store = self.snapshots.clone();
        let events = self.events_tx.clone();
        self.background += 1;
        tokio::task::spawn_blocking(move || {
            let result = storage::write_image(&store, &meta, image).map(|_| ());
            let _ = events.send(Event::SnapshotWritten { index, result });
        });
    }

    fn finish_snapshot(&mut self, result: Result<u64, Error>) {
        self.snapshot_running = false;
        let waiters = std::mem::take(&mut self.snapshot_waiters);
        match result {
            Ok(index) => {
                for reply in waiters {
                    let _ = reply.send(Ok(index));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for reply in waiters {
                    let _ = reply.send(Err(Error::StateMachine(reason.clone())));
                }
            }
        }
    }

    fn compact_in_background(&mut self, index: u64, term: u64) {
        let wal = self.wal.clone();
        let events = self.events_tx.clone();
        self.background += 1;
        tokio::task::spawn_blocking(move || {
            let result = wal.compact_prefix(index, term);
            let _ = events.send(Event::Compacted(result));
        });
    }

    fn send_snapshot_chunk(&self, send: SnapshotSend) {
        let store = self.snapshots.clone();
        let transport = Arc::clone(&self.transport);
        let id = self.id;
        tokio::task::spawn_blocking(move || {
            match storage::read_chunk(
                &store,
                send.meta.index,
                send.meta.term,
                send.offset,
                send.max_len,
            ) {
                Ok((data, done)) => transport.send(vec![send.into_message(data, done)]),
                Err(e) => warn!(node = id, to = send.to, error = %e, "cannot read snapshot chunk"),
            }
        });
    }

    /// Writes incoming chunks to the snapshot file and, when the core says so, restores the
    /// state machine from it and resets the WAL to its point.
    fn receive_snapshot(
        &mut self,
        chunks: Vec<SnapshotChunk>,
        install: Option<SnapshotMeta>,
    ) -> Result<(), Error> {
        use std::io::Write;
        for chunk in chunks {
            if chunk.offset == 0 {
                // Dropping an unfinished writer deletes its temporary file.
                self.incoming = None;
                let writer = self
                    .snapshots
                    .writer(&storage::wal_snapshot_meta(&chunk.meta))?;
                self.incoming = Some(Incoming {
                    meta: chunk.meta.clone(),
                    writer,
                    next_offset: 0,
                });
            }
            let Some(incoming) = self.incoming.as_mut() else {
                warn!(
                    node = self.id,
                    offset = chunk.offset,
                    "snapshot chunk without a start; ignored"
                );
                continue;
            };
            if incoming.meta != chunk.meta || incoming.next_offset != chunk.offset {
                warn!(
                    node = self.id,
                    offset = chunk.offset,
                    "out-of-order snapshot chunk; ignored"
                );
                continue;
            }
            incoming
                .writer
                .write_all(&chunk.data)
                .map_err(|source| Error::Io {
                    path: self.snapshots.dir().to_path_buf(),
                    source,
                })?;
            incoming.next_offset += chunk.data.len() as u64;
            if chunk.done
                && let Some(done) = self.incoming.take()
            {
                let path = done.writer.finish()?;
                debug!(node = self.id, index = done.meta.index, "snapshot received");
                self.received = Some((done.meta, path));
            }
        }
        let Some(meta) = install else {
            return Ok(());
        };
        let path = match self.received.take() {
            Some((received, path)) if received == meta => path,
            _ => {
                return Err(Error::Recovery(format!(
                    "snapshot {} to install was not received whole",
                    meta.index
                )));
            }
        };
        let (done, outcome) = std_mpsc::sync_channel(1);
        self.send_apply(ApplyTask::Install {
            index: meta.index,
            path,
            done,
        });
        match outcome.recv() {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(Error::StateMachine(reason)),
            Err(_) => return Err(Error::StateMachine("the apply thread stopped".into())),
        }
        storage::reset_wal_to_snapshot(&self.wal, meta.index, meta.term)?;
        info!(
            node = self.id,
            index = meta.index,
            term = meta.term,
            "snapshot installed"
        );
        self.handed_out = self.handed_out.max(meta.index);
        self.applied = self.applied.max(meta.index);
        // Proposals whose positions the snapshot covers: their fate is unknown here.
        let above = self.waiters.split_off(&meta.index.saturating_add(1));
        for (index, (_, waiter)) in std::mem::replace(&mut self.waiters, above) {
            waiter.fail(Error::Indeterminate { index });
        }
        self.entries_since_snapshot = 0;
        self.bytes_since_snapshot = 0;
        self.wal_stats = self.wal.stats();
        self.release_parked_reads();
        Ok(())
    }

    // ------------------------------------------------------------------ status

    fn current_metrics(&self, stopped: Option<String>) -> Metrics {
        Metrics {
            id: self.id,
            role: self.raw.role(),
            term: self.raw.term(),
            leader: self.raw.leader(),
            commit_index: self.raw.commit_index(),
            applied_index: self.applied,
            last_index: self.raw.last_index(),
            snapshot_index: self.raw.snapshot().index,
            wal_bytes: self.wal_stats.disk_bytes,
            wal_syncs: self.wal_stats.syncs,
            membership: self.raw.membership().clone(),
            stopped,
        }
    }

    fn publish_metrics(&self, stopped: Option<String>) {
        let metrics = self.current_metrics(stopped);
        self.metrics_tx.send_if_modified(|current| {
            if *current == metrics {
                false
            } else {
                *current = metrics;
                true
            }
        });
    }

    // ------------------------------------------------------------------ shutdown

    /// While closing: handles completions until `busy` turns false (bounded by
    /// [`FLUSH_TIMEOUT`]). Starts no new work.
    async fn wait_in_flight(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        busy: impl Fn(&Self) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + FLUSH_TIMEOUT;
        while busy(self) {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::SnapshotImage(_))) => {
                    self.finish_snapshot(Err(Error::Shutdown));
                }
                Ok(Some(event)) => self.on_event(event),
                Ok(None) | Err(_) => {
                    warn!(node = self.id, "gave up waiting for in-flight storage work");
                    break;
                }
            }
        }
    }

    async fn close(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) {
        requests.close();
        if self.fatal.is_none() && !self.crashed {
            // Flush: wait for the WAL writes in flight, then save the latest commit index.
            self.wait_in_flight(&mut events, |d| d.persist_queue.iter().any(|p| !p.durable))
                .await;
            if self.fatal.is_none() && !self.wal.is_poisoned() {
                let hard_state = self.raw.hard_state();
                if let Err(e) = blocking(|| self.wal.set_hard_state(&hard_state)) {
                    warn!(node = self.id, error = %e, "could not save the final hard state");
                }
            }
        }
        // Snapshot writes and compactions still running touch this node's files: wait for
        // them (a compaction they leave undone is finished at the next start).
        self.wait_in_flight(&mut events, |d| d.background > 0).await;
        // The apply thread finishes the entries already handed to it, then stops.
        self.apply_tx = None;
        if let Some(thread) = self.apply_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        while let Ok(event) = events.try_recv() {
            if let Event::Applied { index } = event {
                self.applied = self.applied.max(index);
            }
        }
        self.wal_stats = self.wal.stats();
        let stopped = self.fatal.clone().unwrap_or_else(|| SHUT_DOWN.to_string());
        // Publish why before failing waiters, so handles report the right error.
        self.publish_metrics(Some(stopped));
        let error = || match &self.fatal {
            Some(reason) => Error::Stopped {
                reason: reason.clone(),
            },
            None => Error::Shutdown,
        };
        for (_, (_, waiter)) in std::mem::take(&mut self.waiters) {
            waiter.fail(error());
        }
        for (_, reply) in std::mem::take(&mut self.proposals) {
            let _ = reply.send(Err(error()));
        }
        let reads = std::mem::take(&mut self.reads).into_values().flatten();
        let parked = std::mem::take(&mut self.parked_reads)
            .into_values()
            .flatten();
        let gathered = std::mem::take(&mut self.linearizable_reads)
            .into_iter()
            .chain(std::mem::take(&mut self.lease_reads));
        for query in reads.chain(parked).chain(gathered) {
            let _ = query.reply.send(Err(error()));
        }
        for reply in std::mem::take(&mut self.snapshot_waiters) {
            let _ = reply.send(Err(error()));
        }
        while let Ok(request) = requests.try_recv() {
            match request {
                Request::Propose { reply, .. } | Request::Read { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Request::ChangeMembership { reply, .. } | Request::Snapshot { reply } => {
                    let _ = reply.send(Err(error()));
                }
                Request::TransferLeader { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Request::Shutdown { reply } => self.shutdown_replies.push(reply),
                #[cfg(test)]
                Request::Crash { reply } => self.shutdown_replies.push(reply),
            }
        }
        // Close the WAL: the last handle's drop joins its threads (compactions still running
        // on blocking threads hold their own handles and finish first).
        let replies = std::mem::take(&mut self.shutdown_replies);
        let id = self.id;
        let Driver { wal, incoming, .. } = self;
        let _ = tokio::task::spawn_blocking(move || {
            drop(incoming);
            drop(wal);
        })
        .await;
        info!(node = id, "node stopped");
        for reply in replies {
            let _ = reply.send(());
        }
    }
}
