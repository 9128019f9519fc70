//! [`RawNode`]: the Raft state machine. Inputs are method calls; outputs collect until
//! [`RawNode::ready`] hands them out.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::log::RaftLog;
use super::progress::{Progress, ProgressState};
use super::{
    Config, Entry, EntryKind, Error, HardState, Membership, MembershipChange, Message, MessageBody,
    NodeId, ReadState, Ready, RejectHint, Role, SnapshotChunk, SnapshotMeta, SnapshotSend,
    SoftState,
};

/// What a node recovered from durable storage at startup.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The durable hard state.
    pub hard_state: HardState,
    /// The node's latest snapshot (index 0 and the initial configuration for a fresh node of a
    /// new cluster; index 0 and an empty configuration for a node about to be added).
    pub snapshot: SnapshotMeta,
    /// Every durable entry after the snapshot, contiguous.
    pub entries: Vec<Entry>,
    /// The state machine's applied index (at least the snapshot index).
    pub applied: u64,
}

impl Recovered {
    /// A fresh node of a new cluster whose voters are `voters`.
    pub fn bootstrap(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Self {
            snapshot: SnapshotMeta {
                index: 0,
                term: 0,
                membership: Membership::new(voters),
            },
            ..Self::default()
        }
    }

    /// Reads the hard state and the entries after the snapshot point from a log store.
    /// `snapshot` is the metadata of the node's snapshot file (its index must be the store's
    /// snapshot point).
    pub fn from_store(
        store: &impl shoal_wal::LogStore,
        snapshot: SnapshotMeta,
        applied: u64,
    ) -> Result<Self, Error> {
        let (index, term) = store.snapshot_point();
        if (index, term) != (snapshot.index, snapshot.term) {
            return Err(Error::Recovery(format!(
                "store snapshot point ({index}, {term}) differs from snapshot ({}, {})",
                snapshot.index, snapshot.term
            )));
        }
        let entries = store
            .entries(store.first_index(), store.last_index() + 1)
            .map_err(|e| Error::Recovery(e.to_string()))?
            .into_iter()
            .map(Entry::from_wal)
            .collect();
        Ok(Self {
            hard_state: store.hard_state(),
            snapshot,
            entries,
            applied,
        })
    }
}

/// A read waiting for its heartbeat round.
#[derive(Debug, Clone, Copy)]
struct PendingRead {
    id: u64,
    index: u64,
    round: u64,
    /// `Some(follower)` for a forwarded request.
    from: Option<NodeId>,
}

/// Writes handed out in one `Ready`, waiting for [`RawNode::on_persisted`].
#[derive(Debug, Clone, Copy)]
struct PendingPersist {
    number: u64,
    hard_state: Option<HardState>,
    last_written: Option<(u64, u64)>,
}

/// A small deterministic generator (splitmix64) for election timeouts.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The Raft core of one node: pure and deterministic (no I/O, no clock, seeded randomness).
///
/// Feed it [`tick`](Self::tick), [`step`](Self::step), [`propose`](Self::propose) and the
/// other inputs; take its outputs with [`ready`](Self::ready); acknowledge durable writes with
/// [`on_persisted`](Self::on_persisted).
#[derive(Debug)]
pub struct RawNode {
    cfg: Config,
    id: NodeId,
    term: u64,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    /// Configurations in the log, ascending by index; the first is the snapshot's.
    configs: Vec<(u64, Membership)>,
    snapshot: SnapshotMeta,
    progress: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_timeout: u32,
    rng: SplitMix,
    now: u64,
    // Leader state.
    need_broadcast: bool,
    commit_broadcast: bool,
    transfer: Option<(NodeId, u32)>,
    round: u64,
    round_ticks: VecDeque<(u64, u64)>,
    need_round: bool,
    pending_reads: VecDeque<PendingRead>,
    reads_before_commit: Vec<(u64, Option<NodeId>)>,
    lease_until: u64,
    /// A TimeoutNow left in this term: it may still arrive (delayed) and get its target
    /// elected past the voters' leases, so no lease is trusted again in this term.
    lease_forfeited: bool,
    scratch: Vec<u64>,
    // Follower state.
    receiving: Option<(SnapshotMeta, u64)>,
    // Outputs.
    msgs: Vec<Message>,
    msgs_after_persist: Vec<Message>,
    read_states: Vec<ReadState>,
    aborted_reads: Vec<u64>,
    snapshot_sends: Vec<SnapshotSend>,
    snapshot_chunks: Vec<SnapshotChunk>,
    install: Option<SnapshotMeta>,
    compact_to: Option<(u64, u64)>,
    // Persistence bookkeeping.
    hs_handed_out: HardState,
    durable_hs: HardState,
    next_ready: u64,
    pending_persists: VecDeque<PendingPersist>,
    last_soft: SoftState,
}

impl RawNode {
    /// A node from what it recovered at startup.
    pub fn new(cfg: Config, recovered: Recovered) -> Result<Self, Error> {
        cfg.validate()?;
        let Recovered {
            hard_state,
            snapshot,
            entries,
            applied,
        } = recovered;
        for (offset, entry) in entries.iter().enumerate() {
            if entry.index != snapshot.index + 1 + offset as u64 {
                return Err(Error::Recovery(format!(
                    "entry {} out of place after snapshot {}",
                    entry.index, snapshot.index
                )));
            }
        }
        let mut configs = vec![(snapshot.index, snapshot.membership.clone())];
        for entry in entries.iter().filter(|e| e.kind == EntryKind::Config) {
            let membership =
                Membership::decode(&entry.data).map_err(|e| Error::Recovery(e.to_string()))?;
            configs.push((entry.index, membership));
        }
        let mut log = RaftLog::new(snapshot.index, snapshot.term, entries);
        let applied = applied.max(snapshot.index);
        if applied > log.last_index() {
            return Err(Error::Recovery(format!(
                "applied index {applied} beyond the last log index {}",
                log.last_index()
            )));
        }
        log.applied = applied;
        log.commit = hard_state.commit.min(log.last_index()).max(applied);
        let mut rng = SplitMix(cfg.seed ^ cfg.id.rotate_left(32));
        let _ = rng.next_u64();
        let id = cfg.id;
        let mut node = Self {
            id,
            term: hard_state.term,
            vote: hard_state.voted_for,
            role: Role::Follower,
            leader: None,
            log,
            configs,
            snapshot,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: cfg.election_ticks_min,
            rng,
            now: 0,
            need_broadcast: false,
            commit_broadcast: false,
            transfer: None,
            round: 0,
            round_ticks: VecDeque::new(),
            need_round: false,
            pending_reads: VecDeque::new(),
            reads_before_commit: Vec::new(),
            lease_until: 0,
            lease_forfeited: false,
            scratch: Vec::new(),
            receiving: None,
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            read_states: Vec::new(),
            aborted_reads: Vec::new(),
            snapshot_sends: Vec::new(),
            snapshot_chunks: Vec::new(),
            install: None,
            compact_to: None,
            hs_handed_out: hard_state,
            durable_hs: hard_state,
            next_ready: 1,
            pending_persists: VecDeque::new(),
            last_soft: SoftState {
                role: Role::Follower,
                term: hard_state.term,
                leader: None,
            },
            cfg,
        };
        node.hs_handed_out = node.hard_state();
        node.reset_randomized_timeout();
        node.refresh_role();
        node.last_soft = node.soft_state();
        Ok(node)
    }

    // ---------------------------------------------------------------- observers

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The vote cast in the current term.
    pub fn voted_for(&self) -> Option<NodeId> {
        self.vote
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader known in the current term.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// Role, term and leader.
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            term: self.term,
            leader: self.leader,
        }
    }

    /// Term, vote and commit index as they stand (not necessarily durable yet). The commit
    /// index here is capped at [`persisted_index`](Self::persisted_index): a driver may save
    /// the hard state before the entries of the same `Ready` are durable, and a saved commit
    /// index must never cover older, different entries still in the store at restart.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.vote,
            commit: self.log.commit.min(self.log.persisted),
        }
    }

    /// The highest index known committed.
    pub fn commit_index(&self) -> u64 {
        self.log.commit
    }

    /// The highest index handed out for application.
    pub fn applied_index(&self) -> u64 {
        self.log.applied
    }

    /// The last index in the log.
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }

    /// The term of the last entry.
    pub fn last_term(&self) -> u64 {
        self.log.last_term()
    }

    /// The first index still in the log (snapshot index + 1).
    pub fn first_index(&self) -> u64 {
        self.log.first_index()
    }

    /// The highest index known durable on this node.
    pub fn persisted_index(&self) -> u64 {
        self.log.persisted
    }

    /// The term of the entry at `index`, when known.
    pub fn log_term(&self, index: u64) -> Option<u64> {
        self.log.term(index)
    }

    /// The entry at `index`, when held.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        self.log.get(index)
    }

    /// Every entry held (after the snapshot).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.log.iter()
    }

    /// The latest snapshot (taken locally or installed).
    pub fn snapshot(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// The configuration in force (the latest in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        &self.configs[self.configs.len() - 1].1
    }

    /// The configuration in force at `index` (at least the snapshot index).
    pub fn membership_at(&self, index: u64) -> Option<&Membership> {
        if index < self.log.snapshot_index() {
            return None;
        }
        self.configs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, m)| m)
    }

    /// The leader's match index for `peer` (leader only).
    pub fn match_index(&self, peer: NodeId) -> Option<u64> {
        self.progress.get(&peer).map(|p| p.match_index)
    }

    /// Logical ticks since this node started.
    pub fn now(&self) -> u64 {
        self.now
    }

    // ---------------------------------------------------------------- inputs

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.now += 1;
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.election_elapsed = self.election_elapsed.saturating_add(1);
            if self.promotable() && self.election_elapsed >= self.randomized_timeout {
                self.election_elapsed = 0;
                self.campaign(self.cfg.pre_vote, false);
            }
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if let Some((target, elapsed)) = self.transfer.as_mut() {
            *elapsed += 1;
            if *elapsed >= self.cfg.election_ticks_min {
                debug!(
                    node = self.id,
                    target = *target,
                    "leadership transfer timed out"
                );
                self.transfer = None;
            }
        }
        if self.election_elapsed >= self.cfg.election_ticks_min {
            self.election_elapsed = 0;
            if self.cfg.check_quorum {
                if !self.quorum_active() {
                    info!(
                        node = self.id,
                        term = self.term,
                        "no quorum heard; stepping down"
                    );
                    self.become_follower(self.term, None);
                    return;
                }
                for pr in self.progress.values_mut() {
                    pr.recent_active = false;
                }
            }
        }
        let retransmit = (self.cfg.election_ticks_min / 2).max(1);
        let mut resend = Vec::new();
        for (&peer, pr) in self.progress.iter_mut() {
            if let ProgressState::Snapshot { .. } = pr.state {
                pr.snapshot_idle_ticks += 1;
                if pr.snapshot_idle_ticks >= retransmit {
                    resend.push(peer);
                }
            }
        }
        for peer in resend {
            self.send_snapshot_chunk(peer);
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// Proposes one application entry (the data of a `Normal` entry, usually a
    /// [`crate::core::Proposal`]). Returns its index; the entry is committed when a `Ready`
    /// hands it out with this index and the current term.
    pub fn propose(&mut self, data: Bytes) -> Result<u64, Error> {
        self.check_can_propose(1)?;
        Ok(self.append_local(EntryKind::Normal, data))
    }

    /// Proposes several entries at once; returns the index of the first.
    pub fn propose_batch(&mut self, batch: impl IntoIterator<Item = Bytes>) -> Result<u64, Error> {
        self.check_can_propose(1)?;
        let first = self.log.last_index() + 1;
        for data in batch {
            self.append_local(EntryKind::Normal, data);
        }
        Ok(first)
    }

    fn check_can_propose(&self, count: u64) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if let Some((target, _)) = self.transfer {
            return Err(Error::TransferInProgress { target });
        }
        let uncommitted = self.log.last_index() - self.log.commit;
        if uncommitted + count > self.cfg.max_uncommitted_entries as u64 {
            return Err(Error::Busy);
        }
        Ok(())
    }

    fn append_local(&mut self, kind: EntryKind, data: Bytes) -> u64 {
        let index = self.log.last_index() + 1;
        self.log.append(Entry {
            index,
            term: self.term,
            kind,
            data,
        });
        self.need_broadcast = true;
        index
    }

    /// Proposes a single-server membership change (leader only). The new configuration takes
    /// effect at once; another change is accepted once it commits.
    pub fn propose_membership(&mut self, change: MembershipChange) -> Result<u64, Error> {
        self.check_can_propose(1)?;
        if !self.committed_in_term() {
            return Err(Error::NotYetCommittedInTerm);
        }
        let (last_config, _) = self.configs[self.configs.len() - 1];
        if last_config > self.log.commit {
            return Err(Error::MembershipChangePending { index: last_config });
        }
        let next = self.membership().apply_change(change)?;
        if let MembershipChange::PromoteLearner(id) = change {
            let matched = self.progress.get(&id).map_or(0, |p| p.match_index);
            if matched + self.cfg.max_promotion_lag < self.log.commit {
                return Err(Error::LearnerLagging {
                    id,
                    matched,
                    commit: self.log.commit,
                });
            }
        }
        let index = self.append_local(EntryKind::Config, next.encode());
        info!(node = self.id, index, ?change, "membership change proposed");
        self.configs.push((index, next));
        self.on_membership_changed();
        Ok(index)
    }

    /// Asks for the read index of a linearizable read `id`. The answer comes in
    /// [`Ready::read_states`] (or [`Ready::aborted_reads`]); a follower forwards the request
    /// to its leader.
    pub fn read_index(&mut self, id: u64) -> Result<(), Error> {
        self.read(id, false)
    }

    /// Like [`read_index`](Self::read_index), but a leader holding a valid lease answers at
    /// once. Only with [`Config::lease_reads`]; otherwise the same as `read_index`.
    pub fn read_lease(&mut self, id: u64) -> Result<(), Error> {
        self.read(id, self.cfg.lease_reads)
    }

    fn read(&mut self, id: u64, lease: bool) -> Result<(), Error> {
        match self.role {
            Role::Leader => {
                if lease
                    && self.transfer.is_none()
                    && self.now < self.lease_until
                    && self.committed_in_term()
                {
                    self.read_states.push(ReadState {
                        id,
                        index: self.log.commit,
                    });
                } else {
                    self.leader_read(id, None);
                }
                Ok(())
            }
            _ => match self.leader {
                Some(leader) => {
                    self.msgs.push(Message {
                        from: self.id,
                        to: leader,
                        term: self.term,
                        body: MessageBody::ReadIndex { id },
                    });
                    Ok(())
                }
                None => Err(Error::NotLeader { leader: None }),
            },
        }
    }

    fn leader_read(&mut self, id: u64, from: Option<NodeId>) {
        if !self.committed_in_term() {
            self.reads_before_commit.push((id, from));
            return;
        }
        let index = self.log.commit;
        if self.membership().voters == [self.id] {
            self.finish_read(id, index, from);
            return;
        }
        self.pending_reads.push_back(PendingRead {
            id,
            index,
            round: self.round + 1,
            from,
        });
        self.need_round = true;
    }

    fn finish_read(&mut self, id: u64, index: u64, from: Option<NodeId>) {
        match from {
            None => self.read_states.push(ReadState { id, index }),
            Some(to) => self.msgs.push(Message {
                from: self.id,
                to,
                term: self.term,
                body: MessageBody::ReadIndexResponse {
                    id,
                    index: Some(index),
                },
            }),
        }
    }

    /// Starts handing leadership to `target` (leader only). Refused when the target is not a
    /// voter or lags by more than [`Config::max_transfer_lag`]; proposals are refused while it
    /// runs; it is abandoned after an election timeout.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if target == self.id {
            return Ok(());
        }
        if !self.membership().is_voter(target) {
            return Err(Error::NotVoter { id: target });
        }
        let matched = self.progress.get(&target).map_or(0, |p| p.match_index);
        let last_index = self.log.last_index();
        if matched + self.cfg.max_transfer_lag < last_index {
            return Err(Error::TargetLags {
                id: target,
                matched,
                last_index,
            });
        }
        info!(node = self.id, target, "leadership transfer started");
        self.transfer = Some((target, 0));
        if matched == last_index {
            self.send_timeout_now(target);
        } else {
            self.send_appends(target, false);
        }
        Ok(())
    }

    fn send_timeout_now(&mut self, to: NodeId) {
        // The target may be elected at once (its voters ignore their own leases for it), so
        // this node's lease can no longer be trusted, for the rest of the term: the message
        // may be delayed past the transfer's abandonment.
        self.lease_until = 0;
        self.lease_forfeited = true;
        self.msgs.push(Message {
            from: self.id,
            to,
            term: self.term,
            body: MessageBody::TimeoutNow,
        });
    }

    /// The metadata a snapshot at `index` must carry (term and configuration there).
    pub fn snapshot_meta(&self, index: u64) -> Result<SnapshotMeta, Error> {
        if index > self.log.applied {
            return Err(Error::InvalidSnapshot {
                index,
                reason: "not yet applied",
            });
        }
        let term = self.log.term(index).ok_or(Error::InvalidSnapshot {
            index,
            reason: "not in the log",
        })?;
        let membership = self
            .membership_at(index)
            .cloned()
            .ok_or(Error::InvalidSnapshot {
                index,
                reason: "not in the log",
            })?;
        Ok(SnapshotMeta {
            index,
            term,
            membership,
        })
    }

    /// The application has durably written a snapshot of its state at `index` (see
    /// [`snapshot_meta`](Self::snapshot_meta)): the core compacts its log there and asks the
    /// driver (through [`Ready::compact_log_to`]) to compact the store. Lagging followers are
    /// sent this snapshot from now on.
    pub fn snapshot_taken(&mut self, index: u64) -> Result<(), Error> {
        if index <= self.log.snapshot_index() {
            return Ok(());
        }
        let meta = self.snapshot_meta(index)?;
        self.log.compact(index);
        let keep_from = self
            .configs
            .iter()
            .rposition(|(i, _)| *i <= index)
            .unwrap_or(0);
        self.configs.drain(..keep_from);
        self.configs[0].0 = index;
        self.compact_to = Some((meta.index, meta.term));
        self.snapshot = meta;
        // Transfers of an older snapshot restart with this one.
        let peers: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|(_, p)| matches!(p.state, ProgressState::Snapshot { .. }))
            .map(|(id, _)| *id)
            .collect();
        for peer in peers {
            self.start_snapshot(peer);
        }
        Ok(())
    }

    /// Every write of every `Ready` numbered up to `number` is durable.
    pub fn on_persisted(&mut self, number: u64) {
        while let Some(front) = self.pending_persists.front() {
            if front.number > number {
                break;
            }
            let done = *front;
            self.pending_persists.pop_front();
            if let Some(hs) = done.hard_state {
                self.durable_hs = hs;
            }
            if let Some((index, term)) = done.last_written
                && self.log.term(index) == Some(term)
                && index > self.log.persisted
            {
                self.log.persisted = index;
            }
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// Handles a message from a peer.
    pub fn step(&mut self, m: Message) {
        if m.to != self.id || m.from == self.id {
            return;
        }
        if !Self::well_formed(&m) {
            debug!(node = self.id, from = m.from, "malformed message dropped");
            return;
        }
        if m.term > self.term {
            match m.body {
                MessageBody::RequestVote { transfer, .. } if self.in_lease() && !transfer => {
                    debug!(
                        node = self.id,
                        from = m.from,
                        "vote request ignored: leader lease"
                    );
                    return;
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {}
                MessageBody::VoteResponse { pre_vote: true, .. } if m.term == self.term + 1 => {}
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    self.become_follower(m.term, Some(m.from));
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match m.body {
                MessageBody::Append { .. } | MessageBody::Heartbeat { .. } => {
                    // Tell a stale leader about the newer term so it steps down.
                    self.respond(
                        m.from,
                        MessageBody::AppendResponse {
                            match_index: None,
                            reject: None,
                        },
                        false,
                    );
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {
                    self.respond(
                        m.from,
                        MessageBody::VoteResponse {
                            pre_vote: true,
                            granted: false,
                        },
                        false,
                    );
                }
                // The answer to a read forwarded in an older term: fail it so the client
                // retries now instead of waiting out its timeout.
                MessageBody::ReadIndexResponse { id, .. } => self.aborted_reads.push(id),
                _ => {}
            }
            return;
        }
        let from = m.from;
        let msg_term = m.term;
        match m.body {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                if self.role == Role::Leader {
                    return;
                }
                self.follow(from);
                self.handle_append(from, prev_index, prev_term, entries, commit);
            }
            MessageBody::Heartbeat { commit, round } => {
                if self.role == Role::Leader {
                    return;
                }
                self.follow(from);
                if commit > self.log.commit && commit <= self.log.last_index() {
                    self.log.commit = commit;
                }
                let last_index = self.log.last_index();
                self.respond(
                    from,
                    MessageBody::HeartbeatResponse { round, last_index },
                    false,
                );
            }
            MessageBody::InstallSnapshot {
                meta,
                offset,
                data,
                done,
            } => {
                if self.role == Role::Leader {
                    return;
                }
                self.follow(from);
                self.handle_snapshot_chunk(from, meta, offset, data, done);
            }
            MessageBody::AppendResponse {
                match_index,
                reject,
            } => self.handle_append_response(from, match_index, reject),
            MessageBody::HeartbeatResponse { round, last_index } => {
                self.handle_heartbeat_response(from, round, last_index)
            }
            MessageBody::InstallSnapshotResponse {
                index,
                snapshot_term,
                next_offset,
                done,
            } => self.handle_snapshot_response(from, index, snapshot_term, next_offset, done),
            MessageBody::RequestVote {
                pre_vote,
                last_index,
                last_term,
                ..
            } => self.handle_vote_request(from, msg_term, pre_vote, last_index, last_term),
            MessageBody::VoteResponse { pre_vote, granted } => {
                self.handle_vote_response(from, msg_term, pre_vote, granted)
            }
            MessageBody::TimeoutNow => {
                if self.role != Role::Leader && self.promotable() {
                    info!(node = self.id, term = self.term, "timeout-now: campaigning");
                    self.campaign(false, true);
                }
            }
            MessageBody::ReadIndex { id } => {
                if self.role == Role::Leader {
                    self.leader_read(id, Some(from));
                } else {
                    self.respond(
                        from,
                        MessageBody::ReadIndexResponse { id, index: None },
                        false,
                    );
                }
            }
            MessageBody::ReadIndexResponse { id, index } => match index {
                Some(index) => self.read_states.push(ReadState { id, index }),
                None => self.aborted_reads.push(id),
            },
        }
    }

    /// Whether a message's indexes are consistent (a peer's bug or a corrupted frame must not
    /// corrupt the log or panic this node): entries contiguous from `prev_index + 1`, terms
    /// non-decreasing and at most the message's, no index arithmetic overflowing.
    fn well_formed(m: &Message) -> bool {
        match &m.body {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                ..
            } => {
                let mut last_term = *prev_term;
                for (offset, e) in entries.iter().enumerate() {
                    let expected = prev_index
                        .checked_add(1)
                        .and_then(|i| i.checked_add(offset as u64));
                    if expected != Some(e.index) || e.term < last_term || e.term > m.term {
                        return false;
                    }
                    last_term = e.term;
                }
                *prev_term <= m.term
            }
            MessageBody::InstallSnapshot {
                meta, offset, data, ..
            } => meta.term <= m.term && offset.checked_add(data.len() as u64).is_some(),
            _ => true,
        }
    }

    // ---------------------------------------------------------------- output

    /// Whether [`ready`](Self::ready) has anything to hand out.
    pub fn has_ready(&self) -> bool {
        self.need_broadcast
            || self.need_round
            || !self.msgs.is_empty()
            || !self.msgs_after_persist.is_empty()
            || self.log.unstable_from <= self.log.last_index()
            || self.hard_state() != self.hs_handed_out
            || self.soft_state() != self.last_soft
            || self.log.applied < self.log.commit.min(self.log.persisted)
            || !self.read_states.is_empty()
            || !self.aborted_reads.is_empty()
            || !self.snapshot_sends.is_empty()
            || !self.snapshot_chunks.is_empty()
            || self.install.is_some()
            || self.compact_to.is_some()
    }

    /// Hands out everything to do (see [`Ready`] for the order).
    pub fn ready(&mut self) -> Ready {
        self.flush_broadcasts();
        let number = self.next_ready;
        self.next_ready += 1;
        let entries = self.log.take_unstable();
        let hs = self.hard_state();
        let hard_state = (hs != self.hs_handed_out).then_some(hs);
        self.hs_handed_out = hs;
        let soft = self.soft_state();
        let soft_state = (soft != self.last_soft).then_some(soft);
        self.last_soft = soft;
        let install_snapshot = self.install.take();
        let snapshot_chunks = std::mem::take(&mut self.snapshot_chunks);
        let last_written = entries
            .last()
            .map(|e| (e.index, e.term))
            .or_else(|| install_snapshot.as_ref().map(|m| (m.index, m.term)));
        if hard_state.is_some() || last_written.is_some() || !snapshot_chunks.is_empty() {
            self.pending_persists.push_back(PendingPersist {
                number,
                hard_state,
                last_written,
            });
        }
        let apply_to = self.log.commit.min(self.log.persisted);
        let committed_entries = if apply_to > self.log.applied {
            let out = self.log.slice(
                self.log.applied + 1,
                apply_to,
                usize::MAX,
                self.cfg.max_apply_bytes,
            );
            if let Some(last) = out.last() {
                self.log.applied = last.index;
            }
            out
        } else {
            Vec::new()
        };
        Ready {
            number,
            soft_state,
            hard_state,
            snapshot_chunks,
            install_snapshot,
            entries,
            compact_log_to: self.compact_to.take(),
            messages: std::mem::take(&mut self.msgs),
            persisted_messages: std::mem::take(&mut self.msgs_after_persist),
            committed_entries,
            read_states: std::mem::take(&mut self.read_states),
            aborted_reads: std::mem::take(&mut self.aborted_reads),
            snapshot_sends: std::mem::take(&mut self.snapshot_sends),
        }
    }

    fn flush_broadcasts(&mut self) {
        if self.role != Role::Leader {
            self.need_broadcast = false;
            self.need_round = false;
            self.commit_broadcast = false;
            return;
        }
        if self.need_round {
            self.need_round = false;
            self.broadcast_heartbeat();
        }
        if self.need_broadcast {
            let allow_empty = self.commit_broadcast;
            self.need_broadcast = false;
            self.commit_broadcast = false;
            let peers: Vec<NodeId> = self.progress.keys().copied().collect();
            for peer in peers {
                self.send_appends(peer, allow_empty);
            }
        }
        // A single-voter leader commits as soon as its own write is durable.
        self.maybe_commit();
    }

    // ---------------------------------------------------------------- roles

    fn promotable(&self) -> bool {
        self.membership().is_voter(self.id)
    }

    fn in_lease(&self) -> bool {
        self.cfg.check_quorum
            && (self.leader.is_some() || self.restart_quiet())
            && self.election_elapsed < self.cfg.election_ticks_min
    }

    /// With lease reads, a node that restarted (term above 0) may have extended a leader's
    /// lease just before it crashed, and has forgotten that leader: it votes for no one (but
    /// a leadership transfer) until an election timeout has passed since it started.
    fn restart_quiet(&self) -> bool {
        self.cfg.lease_reads && self.term > 0 && self.now < u64::from(self.cfg.election_ticks_min)
    }

    fn committed_in_term(&self) -> bool {
        self.log.term(self.log.commit) == Some(self.term)
    }

    fn reset_randomized_timeout(&mut self) {
        let span = u64::from(self.cfg.election_ticks_max - self.cfg.election_ticks_min);
        let extra = self.rng.next_u64() % span.max(1);
        self.randomized_timeout = self.cfg.election_ticks_min + extra as u32;
    }

    fn refresh_role(&mut self) {
        match self.role {
            Role::Leader => {}
            Role::Follower | Role::Learner => {
                self.role = if self.promotable() {
                    Role::Follower
                } else {
                    Role::Learner
                };
            }
            Role::PreCandidate | Role::Candidate => {
                if !self.promotable() {
                    self.role = Role::Learner;
                }
            }
        }
    }

    fn follow(&mut self, leader: NodeId) {
        if self.role != Role::Follower && self.role != Role::Learner {
            self.become_follower(self.term, Some(leader));
        }
        self.leader = Some(leader);
        self.election_elapsed = 0;
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        if self.role == Role::Leader {
            self.abort_leader_state();
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.election_elapsed = 0;
        self.reset_randomized_timeout();
        self.refresh_role();
    }

    fn abort_leader_state(&mut self) {
        self.progress.clear();
        self.transfer = None;
        self.need_broadcast = false;
        self.need_round = false;
        self.lease_until = 0;
        let reads: Vec<(u64, Option<NodeId>)> = self
            .pending_reads
            .drain(..)
            .map(|r| (r.id, r.from))
            .chain(self.reads_before_commit.drain(..))
            .collect();
        for (id, from) in reads {
            match from {
                None => self.aborted_reads.push(id),
                Some(to) => self.msgs.push(Message {
                    from: self.id,
                    to,
                    term: self.term,
                    body: MessageBody::ReadIndexResponse { id, index: None },
                }),
            }
        }
    }

    fn campaign(&mut self, pre_vote: bool, transfer: bool) {
        let request_term;
        if pre_vote {
            self.role = Role::PreCandidate;
            request_term = self.term + 1;
        } else {
            self.term += 1;
            self.vote = Some(self.id);
            self.role = Role::Candidate;
            request_term = self.term;
        }
        debug!(node = self.id, term = request_term, pre_vote, "campaign");
        self.leader = None;
        self.votes.clear();
        self.election_elapsed = 0;
        self.reset_randomized_timeout();
        self.votes.insert(self.id, true);
        if self.tally() == Some(true) {
            if pre_vote {
                self.campaign(false, transfer);
            } else {
                self.become_leader();
            }
            return;
        }
        let voters: Vec<NodeId> = self.membership().voters.clone();
        for voter in voters.into_iter().filter(|&v| v != self.id) {
            let m = Message {
                from: self.id,
                to: voter,
                term: request_term,
                body: MessageBody::RequestVote {
                    pre_vote,
                    last_index: self.log.last_index(),
                    last_term: self.log.last_term(),
                    transfer,
                },
            };
            if pre_vote {
                self.msgs.push(m);
            } else {
                // The candidate's own term and vote are durable before it asks for votes.
                self.msgs_after_persist.push(m);
            }
        }
    }

    /// `Some(true)` won, `Some(false)` lost, `None` undecided.
    fn tally(&self) -> Option<bool> {
        let membership = self.membership();
        let quorum = membership.quorum();
        let granted = membership
            .voters
            .iter()
            .filter(|v| self.votes.get(v) == Some(&true))
            .count();
        let rejected = membership
            .voters
            .iter()
            .filter(|v| self.votes.get(v) == Some(&false))
            .count();
        if granted >= quorum {
            Some(true)
        } else if rejected > membership.voters.len() - quorum {
            Some(false)
        } else {
            None
        }
    }

    fn become_leader(&mut self) {
        info!(node = self.id, term = self.term, "became leader");
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.transfer = None;
        self.lease_until = 0;
        self.lease_forfeited = false;
        self.progress.clear();
        self.sync_progress();
        // A blank entry of the new term commits every earlier entry (Figure 8).
        self.append_local(EntryKind::Blank, Bytes::new());
    }

    fn sync_progress(&mut self) {
        let members: Vec<NodeId> = self
            .membership()
            .members()
            .filter(|&m| m != self.id)
            .collect();
        self.progress.retain(|id, _| members.contains(id));
        let next = self.log.last_index() + 1;
        for member in members {
            self.progress
                .entry(member)
                .or_insert_with(|| Progress::new(next));
        }
    }

    fn on_membership_changed(&mut self) {
        if self.role == Role::Leader {
            self.sync_progress();
            if let Some((target, _)) = self.transfer
                && !self.membership().is_voter(target)
            {
                self.transfer = None;
            }
        } else {
            self.refresh_role();
        }
    }

    fn quorum_active(&self) -> bool {
        let membership = self.membership();
        let active = membership
            .voters
            .iter()
            .filter(|&&v| v == self.id || self.progress.get(&v).is_some_and(|p| p.recent_active))
            .count();
        active >= membership.quorum()
    }

    // ---------------------------------------------------------------- responses

    /// Queues a response: after persistence when it acknowledges entries or when this node's
    /// term or vote is not yet durable (it must never be forgotten after being answered).
    fn respond(&mut self, to: NodeId, body: MessageBody, acks_writes: bool) {
        let m = Message {
            from: self.id,
            to,
            term: self.term,
            body,
        };
        let term_durable =
            self.durable_hs.term == self.term && self.durable_hs.voted_for == self.vote;
        if acks_writes || !term_durable {
            self.msgs_after_persist.push(m);
        } else {
            self.msgs.push(m);
        }
    }

    // ---------------------------------------------------------------- follower

    fn handle_append(
        &mut self,
        from: NodeId,
        mut prev_index: u64,
        mut prev_term: u64,
        mut entries: Vec<Entry>,
        leader_commit: u64,
    ) {
        let original_last = prev_index + entries.len() as u64;
        if prev_index < self.log.commit {
            // Entries at or below our commit index are committed, hence already ours.
            let skip = (self.log.commit - prev_index) as usize;
            if skip >= entries.len() {
                self.respond(
                    from,
                    MessageBody::AppendResponse {
                        match_index: Some(original_last.min(self.log.commit)),
                        reject: None,
                    },
                    true,
                );
                return;
            }
            entries.drain(..skip);
            prev_index = self.log.commit;
            prev_term = self.log.term(prev_index).unwrap_or(0);
        }
        match self.log.term(prev_index) {
            Some(term) if term == prev_term => {
                let last_new = prev_index + entries.len() as u64;
                let new_configs: Vec<(u64, Membership)> = entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::Config)
                    .filter_map(|e| Membership::decode(&e.data).ok().map(|m| (e.index, m)))
                    .collect();
                let truncated = self.log.merge(prev_index, entries);
                let mut changed = false;
                if let Some(at) = truncated {
                    let before = self.configs.len();
                    self.configs.retain(|(i, _)| *i < at);
                    changed |= self.configs.len() != before;
                }
                for (index, membership) in new_configs {
                    if index > self.configs[self.configs.len() - 1].0 {
                        self.configs.push((index, membership));
                        changed = true;
                    }
                }
                if changed {
                    self.on_membership_changed();
                }
                let commit = leader_commit.min(last_new);
                if commit > self.log.commit {
                    self.log.commit = commit;
                }
                self.respond(
                    from,
                    MessageBody::AppendResponse {
                        match_index: Some(last_new),
                        reject: None,
                    },
                    true,
                );
            }
            _ => {
                // Point the leader at the last entry that could match: the last one at or
                // before `prev_index` whose term is at most the leader's `prev_term`.
                let hint_index = prev_index.min(self.log.last_index());
                let conflict_index = self
                    .log
                    .last_index_at_or_below_term(hint_index, prev_term)
                    .max(self.log.commit);
                let conflict_term = self.log.term(conflict_index);
                self.respond(
                    from,
                    MessageBody::AppendResponse {
                        match_index: None,
                        reject: Some(RejectHint {
                            rejected_prev_index: prev_index,
                            conflict_term,
                            conflict_index,
                        }),
                    },
                    false,
                );
            }
        }
    }

    fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    ) {
        let respond = |node: &mut Self, next_offset: u64, done: bool, acks: bool| {
            node.respond(
                from,
                MessageBody::InstallSnapshotResponse {
                    index: meta.index,
                    snapshot_term: meta.term,
                    next_offset,
                    done,
                },
                acks,
            );
        };
        if self.install.is_some() {
            // One snapshot install per `Ready`: the driver installs it from the file it has
            // just written. Later chunks wait (the leader retransmits).
            return;
        }
        if meta.index <= self.log.commit {
            // Everything it covers is already here.
            self.receiving = None;
            respond(self, offset + data.len() as u64, true, false);
            return;
        }
        let expected = match &self.receiving {
            Some((receiving, next)) if *receiving == meta => *next,
            _ => {
                if offset != 0 {
                    respond(self, 0, false, false);
                    return;
                }
                self.receiving = Some((meta.clone(), 0));
                0
            }
        };
        if offset != expected {
            respond(self, expected, false, false);
            return;
        }
        let next = offset + data.len() as u64;
        self.snapshot_chunks.push(SnapshotChunk {
            meta: meta.clone(),
            offset,
            data,
            done,
        });
        if done {
            self.receiving = None;
            self.install_snapshot(meta.clone());
        } else if let Some((_, next_offset)) = self.receiving.as_mut() {
            *next_offset = next;
        }
        respond(self, next, done, true);
    }

    fn install_snapshot(&mut self, meta: SnapshotMeta) {
        info!(
            node = self.id,
            index = meta.index,
            term = meta.term,
            "installing snapshot"
        );
        if self.log.term(meta.index) == Some(meta.term) {
            self.log.compact(meta.index);
            self.log.commit = self.log.commit.max(meta.index);
            self.log.applied = self.log.applied.max(meta.index);
            self.configs.retain(|(i, _)| *i > meta.index);
        } else {
            self.log.reset(meta.index, meta.term);
            self.configs.clear();
        }
        self.configs
            .insert(0, (meta.index, meta.membership.clone()));
        self.snapshot = meta.clone();
        self.install = Some(meta);
        self.on_membership_changed();
    }

    fn handle_vote_request(
        &mut self,
        from: NodeId,
        msg_term: u64,
        pre_vote: bool,
        last_index: u64,
        last_term: u64,
    ) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && msg_term > self.term);
        let granted = can_vote && self.log.is_up_to_date(last_index, last_term);
        if pre_vote {
            let m = Message {
                from: self.id,
                to: from,
                term: if granted {
                    msg_term
                } else {
                    self.term.max(msg_term)
                },
                body: MessageBody::VoteResponse {
                    pre_vote: true,
                    granted,
                },
            };
            self.msgs.push(m);
            return;
        }
        if granted {
            self.vote = Some(from);
            self.election_elapsed = 0;
        }
        let body = MessageBody::VoteResponse {
            pre_vote: false,
            granted,
        };
        if cfg!(feature = "buggy-vote-before-persist") {
            // Deliberate bug: answer before the vote is durable.
            self.msgs.push(Message {
                from: self.id,
                to: from,
                term: self.term,
                body,
            });
        } else {
            self.respond(from, body, true);
        }
    }

    fn handle_vote_response(&mut self, from: NodeId, msg_term: u64, pre_vote: bool, granted: bool) {
        match (self.role, pre_vote) {
            (Role::PreCandidate, true) if msg_term == self.term + 1 => {}
            (Role::Candidate, false) if msg_term == self.term => {}
            _ => return,
        }
        self.votes.entry(from).or_insert(granted);
        match self.tally() {
            Some(true) if pre_vote => self.campaign(false, false),
            Some(true) => self.become_leader(),
            Some(false) => self.become_follower(self.term, None),
            None => {}
        }
    }

    // ---------------------------------------------------------------- leader

    fn send_appends(&mut self, to: NodeId, allow_empty: bool) {
        let mut first = true;
        while self.send_append(to, allow_empty && first) {
            first = false;
        }
    }

    /// Sends one AppendEntries to `to` if the window allows; returns whether one left.
    fn send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let last_index = self.log.last_index();
        let Some(pr) = self.progress.get(&to) else {
            return false;
        };
        if !pr.can_send(self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes) {
            return false;
        }
        let next = pr.next_index;
        let is_probe = pr.state == ProgressState::Probe;
        let prev_index = next - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            self.start_snapshot(to);
            return false;
        };
        let entries = if next <= last_index {
            self.log.slice(
                next,
                last_index,
                self.cfg.max_entries_per_msg,
                self.cfg.max_msg_bytes,
            )
        } else {
            Vec::new()
        };
        if entries.is_empty() && !allow_empty && !is_probe {
            return false;
        }
        let sent_last = prev_index + entries.len() as u64;
        let bytes: usize = entries.iter().map(Entry::size_hint).sum();
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.sent(sent_last, bytes);
        }
        self.msgs.push(Message {
            from: self.id,
            to,
            term: self.term,
            body: MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit: self.log.commit,
            },
        });
        !is_probe && sent_last < last_index
    }

    fn broadcast_heartbeat(&mut self) {
        self.round += 1;
        self.round_ticks.push_back((self.round, self.now));
        while self.round_ticks.len() > 64 {
            self.round_ticks.pop_front();
        }
        let commit = self.log.commit;
        let round = self.round;
        for pr in self.progress.values_mut() {
            if pr.state == ProgressState::Replicate
                && !pr.inflight.is_empty()
                && pr.match_index == pr.match_at_heartbeat
            {
                // Nothing acknowledged for a whole heartbeat interval: messages were lost.
                // Probe again from the match index.
                pr.become_probe();
            }
            pr.match_at_heartbeat = pr.match_index;
        }
        for (&peer, pr) in self.progress.iter() {
            self.msgs.push(Message {
                from: self.id,
                to: peer,
                term: self.term,
                body: MessageBody::Heartbeat {
                    commit: commit.min(pr.match_index),
                    round,
                },
            });
        }
        // With no other voter the round is confirmed at once.
        self.advance_reads();
    }

    fn start_snapshot(&mut self, to: NodeId) {
        let Some(pr) = self.progress.get_mut(&to) else {
            return;
        };
        pr.state = ProgressState::Snapshot {
            index: self.snapshot.index,
            term: self.snapshot.term,
            offset: 0,
        };
        pr.inflight.clear();
        pr.inflight_bytes = 0;
        debug!(
            node = self.id,
            to,
            index = self.snapshot.index,
            "sending snapshot"
        );
        self.send_snapshot_chunk(to);
    }

    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Some(pr) = self.progress.get_mut(&to) else {
            return;
        };
        let ProgressState::Snapshot { offset, .. } = pr.state else {
            return;
        };
        pr.snapshot_idle_ticks = 0;
        self.snapshot_sends.push(SnapshotSend {
            from: self.id,
            to,
            term: self.term,
            meta: self.snapshot.clone(),
            offset,
            max_len: self.cfg.snapshot_chunk_bytes,
        });
    }

    fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        index: u64,
        snapshot_term: u64,
        next_offset: u64,
        done: bool,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        let ProgressState::Snapshot {
            index: sending,
            term: sending_term,
            ..
        } = pr.state
        else {
            return;
        };
        if sending != index || sending_term != snapshot_term {
            return;
        }
        if done {
            pr.matched(index);
            pr.become_probe();
            self.send_appends(from, false);
        } else {
            pr.state = ProgressState::Snapshot {
                index,
                term: snapshot_term,
                offset: next_offset,
            };
            self.send_snapshot_chunk(from);
        }
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        match_index: Option<u64>,
        reject: Option<RejectHint>,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        if let Some(matched) = match_index {
            // A follower cannot match beyond what this leader holds (a peer's bug otherwise).
            if matches!(pr.state, ProgressState::Snapshot { .. }) || matched > last_index {
                return;
            }
            let advanced = pr.matched(matched);
            if pr.state == ProgressState::Probe {
                pr.become_replicate();
            }
            let caught_up = pr.match_index == last_index;
            if advanced {
                self.maybe_commit();
            }
            if caught_up && self.transfer.is_some_and(|(t, _)| t == from) {
                self.send_timeout_now(from);
            }
            self.send_appends(from, false);
        } else if let Some(hint) = reject {
            if hint.rejected_prev_index > last_index {
                // This leader never sent such a prev_index.
                return;
            }
            // A follower whose log matched up to `match_index` always points at or above it
            // (its entries there match ours, and terms only grow along a log). A refusal of a
            // message sent after that match that points below it means the follower lost
            // entries it had acknowledged: its data dir was wiped and re-created. Start over
            // from what it holds now (by snapshot when our log no longer reaches back there);
            // the commit index never moves back, so this costs only re-sending.
            if hint.rejected_prev_index >= pr.match_index
                && hint.conflict_index < pr.match_index
                && !matches!(pr.state, ProgressState::Snapshot { .. })
            {
                warn!(
                    peer = from,
                    acknowledged = pr.match_index,
                    holds = hint.conflict_index,
                    "follower lost entries it had acknowledged; replicating to it afresh"
                );
                pr.match_index = hint.conflict_index;
                pr.become_probe();
                self.send_appends(from, false);
                return;
            }
            match pr.state {
                ProgressState::Probe => {
                    if hint.rejected_prev_index.checked_add(1) != Some(pr.next_index) {
                        return;
                    }
                }
                ProgressState::Replicate => {
                    if hint.rejected_prev_index <= pr.match_index {
                        return;
                    }
                }
                ProgressState::Snapshot { .. } => return,
            }
            let mut probe = hint.conflict_index;
            if let Some(term) = hint.conflict_term {
                probe = self.log.last_index_at_or_below_term(probe, term);
            }
            let Some(pr) = self.progress.get_mut(&from) else {
                return;
            };
            pr.become_probe();
            pr.next_index = probe
                .saturating_add(1)
                .min(hint.rejected_prev_index)
                .max(pr.match_index + 1);
            self.send_appends(from, false);
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, round: u64, follower_last: u64) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        let fresh = round >= pr.acked_round;
        pr.acked_round = pr.acked_round.max(round);
        if fresh
            && follower_last < pr.match_index
            && !matches!(pr.state, ProgressState::Snapshot { .. })
        {
            // The follower holds less than it acknowledged: it lost its state (see
            // `handle_append_response`). Replicate to it afresh; commit never moves back.
            warn!(
                peer = from,
                acknowledged = pr.match_index,
                holds = follower_last,
                "follower lost entries it had acknowledged; replicating to it afresh"
            );
            pr.match_index = follower_last;
            pr.become_probe();
        }
        if pr.match_index < last_index && pr.state == ProgressState::Probe {
            pr.paused = false;
        }
        if pr.match_index < last_index || pr.match_index < self.log.commit {
            self.send_appends(from, false);
        }
        self.advance_reads();
    }

    /// Releases the reads whose heartbeat round a quorum acknowledged, and extends the lease.
    fn advance_reads(&mut self) {
        let membership = &self.configs[self.configs.len() - 1].1;
        let quorum = membership.quorum();
        self.scratch.clear();
        for &voter in &membership.voters {
            let acked = if voter == self.id {
                self.round
            } else {
                self.progress.get(&voter).map_or(0, |p| p.acked_round)
            };
            self.scratch.push(acked);
        }
        if self.scratch.len() < quorum {
            return;
        }
        self.scratch.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = self.scratch[quorum - 1];
        if let Some(&(_, sent)) = self.round_ticks.iter().find(|(r, _)| *r == confirmed) {
            let until = sent + u64::from(self.cfg.lease_ticks);
            if self.cfg.lease_reads
                && self.transfer.is_none()
                && !self.lease_forfeited
                && until > self.lease_until
            {
                self.lease_until = until;
            }
        }
        while let Some(read) = self.pending_reads.front() {
            if read.round > confirmed {
                break;
            }
            let read = *read;
            self.pending_reads.pop_front();
            self.finish_read(read.id, read.index, read.from);
        }
    }

    fn maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let membership = &self.configs[self.configs.len() - 1].1;
        let quorum = membership.quorum();
        self.scratch.clear();
        for &voter in &membership.voters {
            let matched = if voter == self.id {
                self.log.persisted
            } else {
                self.progress.get(&voter).map_or(0, |p| p.match_index)
            };
            self.scratch.push(matched);
        }
        if self.scratch.len() < quorum {
            return;
        }
        self.scratch.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = self.scratch[quorum - 1];
        if candidate <= self.log.commit {
            return;
        }
        // Figure 8: only an entry of the current term is committed by counting replicas.
        let counted_term_ok = cfg!(feature = "buggy-commit-previous-term")
            || self.log.term(candidate) == Some(self.term);
        if !counted_term_ok {
            return;
        }
        let was_committed_in_term = self.committed_in_term();
        self.log.commit = candidate;
        self.need_broadcast = true;
        self.commit_broadcast = true;
        if !was_committed_in_term && self.committed_in_term() {
            let waiting = std::mem::take(&mut self.reads_before_commit);
            for (id, from) in waiting {
                self.leader_read(id, from);
            }
        }
        // A leader that removed itself steps down once the removal commits.
        if !self.membership().is_voter(self.id) {
            let (config_index, _) = self.configs[self.configs.len() - 1];
            if config_index <= self.log.commit {
                info!(
                    node = self.id,
                    "removed from the configuration; stepping down"
                );
                let best = self
                    .progress
                    .iter()
                    .filter(|(id, _)| self.membership().is_voter(**id))
                    .max_by_key(|(_, p)| p.match_index)
                    .map(|(id, p)| (*id, p.match_index));
                let last = self.log.last_index();
                self.flush_broadcasts_now();
                if let Some((id, matched)) = best
                    && matched == last
                {
                    self.send_timeout_now(id);
                }
                self.become_follower(self.term, None);
            }
        }
    }

    /// Sends the commit to every follower before stepping down.
    fn flush_broadcasts_now(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            self.send_appends(peer, true);
        }
        self.need_broadcast = false;
        self.commit_broadcast = false;
    }
}
