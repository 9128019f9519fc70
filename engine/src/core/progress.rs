//! The leader's view of each follower: how far it matches, what is in flight.

use std::collections::VecDeque;

/// How the leader is currently sending to a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgressState {
    /// Unknown match: one message at a time until the follower accepts one.
    Probe,
    /// Known match: pipelined messages within the in-flight window.
    Replicate,
    /// Receiving a snapshot: `offset` is the byte it acknowledged last.
    Snapshot {
        /// Index of the snapshot being sent.
        index: u64,
        /// Term of the snapshot being sent.
        term: u64,
        /// Next byte to send.
        offset: u64,
    },
}

/// Replication state of one peer, kept by the leader.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    /// Highest index known to match the leader's log.
    pub match_index: u64,
    /// Next index to send.
    pub next_index: u64,
    pub state: ProgressState,
    /// In `Probe` and `Snapshot`: a message is out; wait for an answer or the next heartbeat.
    pub paused: bool,
    /// Messages in flight in `Replicate`: the last index and the bytes of each.
    pub inflight: VecDeque<(u64, usize)>,
    pub inflight_bytes: usize,
    /// Heard from since the last check-quorum.
    pub recent_active: bool,
    /// Highest heartbeat round acknowledged.
    pub acked_round: u64,
    /// Ticks since the last snapshot chunk was sent (for retransmission).
    pub snapshot_idle_ticks: u32,
    /// Match index when the previous heartbeat round left: a follower in `Replicate` whose
    /// match did not move over a whole round while messages were in flight lost some of them.
    pub match_at_heartbeat: u64,
}

impl Progress {
    pub fn new(next_index: u64) -> Self {
        Self {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            paused: false,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            recent_active: true,
            acked_round: 0,
            snapshot_idle_ticks: 0,
            match_at_heartbeat: 0,
        }
    }

    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.next_index = self.match_index + 1;
        self.paused = false;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.paused = false;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    /// Whether another message may be sent now.
    pub fn can_send(&self, max_msgs: usize, max_bytes: usize) -> bool {
        match self.state {
            ProgressState::Probe => !self.paused,
            ProgressState::Replicate => {
                self.inflight.len() < max_msgs && self.inflight_bytes < max_bytes
            }
            ProgressState::Snapshot { .. } => false,
        }
    }

    /// Records a sent append ending at `last_index`.
    pub fn sent(&mut self, last_index: u64, bytes: usize) {
        match self.state {
            ProgressState::Replicate => {
                if last_index >= self.next_index {
                    self.next_index = last_index + 1;
                    self.inflight.push_back((last_index, bytes));
                    self.inflight_bytes += bytes;
                }
            }
            ProgressState::Probe => self.paused = true,
            ProgressState::Snapshot { .. } => {}
        }
    }

    /// Records an acknowledged match; returns whether it advanced.
    pub fn matched(&mut self, index: u64) -> bool {
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
        }
        if self.next_index <= index {
            self.next_index = index + 1;
        }
        while let Some(&(last, bytes)) = self.inflight.front() {
            if last > index {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
        self.paused = false;
        advanced
    }
}
