//! Unit tests of the core, in openraft's style: feed events, assert state and output.
//! Cases from the Raft paper (Figures 7 and 8, vote rules, log matching) are table-driven.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::*;

fn cfg(id: NodeId) -> Config {
    let mut cfg = Config::new(id);
    cfg.heartbeat_ticks = 1;
    cfg.election_ticks_min = 10;
    cfg.election_ticks_max = 20;
    cfg.lease_ticks = 5;
    cfg.clock_drift_ticks = 2;
    cfg.max_transfer_lag = 2;
    cfg.max_promotion_lag = 2;
    cfg
}

fn entries_with_terms(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &term)| Entry {
            index: i as u64 + 1,
            term,
            kind: EntryKind::Normal,
            data: Bytes::from(format!("{}@{}", i + 1, term)),
        })
        .collect()
}

fn node_with_log(id: NodeId, voters: &[NodeId], terms: &[u64], term: u64) -> RawNode {
    let mut recovered = Recovered::bootstrap(voters.iter().copied());
    recovered.entries = entries_with_terms(terms);
    recovered.hard_state.term = term;
    // Without lease reads: a restarted node would otherwise ignore votes for an election
    // timeout (see `a_restarted_node_does_not_vote_within_an_election_timeout_of_starting`).
    let mut cfg = cfg(id);
    cfg.lease_reads = false;
    RawNode::new(cfg, recovered).unwrap()
}

/// A tiny in-memory cluster: persistence is instant, delivery is in order.
struct Net {
    nodes: BTreeMap<NodeId, RawNode>,
    cut: BTreeSet<NodeId>,
    queue: VecDeque<Message>,
    reads: BTreeMap<NodeId, Vec<ReadState>>,
}

impl Net {
    fn new(nodes: Vec<RawNode>) -> Self {
        Self {
            nodes: nodes.into_iter().map(|n| (n.id(), n)).collect(),
            cut: BTreeSet::new(),
            queue: VecDeque::new(),
            reads: BTreeMap::new(),
        }
    }

    fn fresh(n: u64) -> Self {
        let voters: Vec<NodeId> = (1..=n).collect();
        Self::new(
            voters
                .iter()
                .map(|&id| RawNode::new(cfg(id), Recovered::bootstrap(voters.clone())).unwrap())
                .collect(),
        )
    }

    fn node(&mut self, id: NodeId) -> &mut RawNode {
        self.nodes.get_mut(&id).unwrap()
    }

    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                let node = self.nodes.get_mut(&id).unwrap();
                if !node.has_ready() {
                    continue;
                }
                progressed = true;
                let ready = node.ready();
                node.on_persisted(ready.number);
                self.reads.entry(id).or_default().extend(ready.read_states);
                for m in ready.messages.into_iter().chain(ready.persisted_messages) {
                    if !self.cut.contains(&m.from) && !self.cut.contains(&m.to) {
                        self.queue.push_back(m);
                    }
                }
                for send in ready.snapshot_sends {
                    // A snapshot file of 10 bytes, sent in one chunk.
                    let m = send.into_message(Bytes::from_static(b"0123456789"), true);
                    if !self.cut.contains(&m.to) {
                        self.queue.push_back(m);
                    }
                }
            }
            while let Some(m) = self.queue.pop_front() {
                progressed = true;
                if let Some(node) = self.nodes.get_mut(&m.to) {
                    node.step(m);
                }
            }
            if !progressed {
                return;
            }
        }
        panic!("the cluster never went quiet");
    }

    fn tick(&mut self, ids: &[NodeId], times: usize) {
        for _ in 0..times {
            for id in ids {
                self.node(*id).tick();
            }
            self.pump();
        }
    }

    fn tick_all(&mut self, times: usize) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        self.tick(&ids, times);
    }

    /// Ticks only `id` until it leads.
    fn elect(&mut self, id: NodeId) {
        for _ in 0..100 {
            self.node(id).tick();
            self.pump();
            if self.node(id).role() == Role::Leader {
                return;
            }
        }
        panic!("node {id} was not elected");
    }

    fn log_terms(&mut self, id: NodeId) -> Vec<u64> {
        self.node(id).entries().map(|e| e.term).collect()
    }
}

fn vote_request(from: NodeId, to: NodeId, term: u64, last_index: u64, last_term: u64) -> Message {
    Message {
        from,
        to,
        term,
        body: MessageBody::RequestVote {
            pre_vote: false,
            last_index,
            last_term,
            transfer: false,
        },
    }
}

fn granted(ready: &Ready) -> Option<bool> {
    ready
        .messages
        .iter()
        .chain(&ready.persisted_messages)
        .find_map(|m| match m.body {
            MessageBody::VoteResponse { granted, .. } => Some(granted),
            _ => None,
        })
}

// ------------------------------------------------------------------ config

#[test]
fn config_validation_names_the_problem() {
    type Edit = fn(&mut Config);
    let cases: &[(Edit, ConfigError)] = &[
        (|c| c.id = 0, ConfigError::ZeroId),
        (
            |c| c.heartbeat_ticks = 0,
            ConfigError::Zero {
                field: "heartbeat_ticks",
            },
        ),
        (
            |c| c.election_ticks_min = 1,
            ConfigError::ElectionNotAboveHeartbeat {
                election_ticks_min: 1,
                heartbeat_ticks: 1,
            },
        ),
        (
            |c| c.election_ticks_max = 10,
            ConfigError::EmptyElectionRange { min: 10, max: 10 },
        ),
        (
            |c| c.check_quorum = false,
            ConfigError::LeaseWithoutCheckQuorum,
        ),
        (
            |c| c.lease_ticks = 9,
            ConfigError::LeaseTooLong {
                lease_ticks: 9,
                clock_drift_ticks: 2,
                election_ticks_min: 10,
            },
        ),
        (
            |c| c.max_inflight_msgs = 0,
            ConfigError::Zero {
                field: "max_inflight_msgs",
            },
        ),
    ];
    assert_eq!(cfg(1).validate(), Ok(()));
    assert_eq!(Config::new(1).validate(), Ok(()));
    for (edit, want) in cases {
        let mut c = cfg(1);
        edit(&mut c);
        assert_eq!(c.validate().as_ref(), Err(want));
        assert!(RawNode::new(c, Recovered::bootstrap([1])).is_err());
    }
}

// ------------------------------------------------------------------ votes

#[test]
fn vote_rules_follow_the_up_to_date_check() {
    // The voter's log ends at (index 3, term 2).
    let cases = [
        // (candidate last index, candidate last term, granted)
        (3, 2, true),  // equal
        (4, 2, true),  // longer, same term
        (2, 2, false), // shorter, same term
        (1, 3, true),  // higher last term wins even when shorter
        (5, 1, false), // lower last term loses even when longer
    ];
    for (last_index, last_term, want) in cases {
        let mut voter = node_with_log(1, &[1, 2, 3], &[1, 2, 2], 2);
        voter.step(vote_request(2, 1, 3, last_index, last_term));
        let ready = voter.ready();
        assert_eq!(
            granted(&ready),
            Some(want),
            "candidate ({last_index}, {last_term})"
        );
        assert_eq!(
            voter.term(),
            3,
            "a vote request of a higher term raises the term"
        );
        assert_eq!(voter.voted_for(), want.then_some(2));
    }
}

#[test]
fn one_vote_per_term_and_repeated_requests_are_answered_alike() {
    let mut voter = node_with_log(1, &[1, 2, 3], &[], 0);
    voter.step(vote_request(2, 1, 1, 0, 0));
    assert_eq!(granted(&voter.ready()), Some(true));
    voter.step(vote_request(3, 1, 1, 0, 0));
    assert_eq!(granted(&voter.ready()), Some(false), "already voted for 2");
    voter.step(vote_request(2, 1, 1, 0, 0));
    assert_eq!(granted(&voter.ready()), Some(true), "a retried request");
    voter.step(vote_request(3, 1, 2, 0, 0));
    assert_eq!(
        granted(&voter.ready()),
        Some(true),
        "a new term, a new vote"
    );
}

#[cfg(not(feature = "buggy-vote-before-persist"))]
#[test]
fn a_vote_leaves_only_after_the_term_and_vote_are_durable() {
    let mut voter = node_with_log(1, &[1, 2, 3], &[], 0);
    voter.step(vote_request(2, 1, 5, 0, 0));
    let ready = voter.ready();
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            term: 5,
            voted_for: Some(2),
            commit: 0
        })
    );
    assert!(ready.messages.is_empty());
    assert_eq!(ready.persisted_messages.len(), 1);
}

#[test]
fn a_candidate_asks_for_votes_only_after_its_own_vote_is_durable() {
    let mut cfg1 = cfg(1);
    cfg1.pre_vote = false;
    let mut node = RawNode::new(cfg1, Recovered::bootstrap([1, 2, 3])).unwrap();
    for _ in 0..20 {
        node.tick();
    }
    assert_eq!(node.role(), Role::Candidate);
    let ready = node.ready();
    assert_eq!(ready.hard_state.map(|h| h.voted_for), Some(Some(1)));
    assert!(ready.messages.is_empty());
    assert_eq!(ready.persisted_messages.len(), 2);
}

// ------------------------------------------------------------------ log matching

#[test]
fn figure_7_every_follower_log_converges_to_the_leaders() {
    let leader_log = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: [(&str, &[u64]); 6] = [
        ("a", &[1, 1, 1, 4, 4, 5, 5, 6, 6]),
        ("b", &[1, 1, 1, 4]),
        ("c", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        ("d", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        ("e", &[1, 1, 1, 4, 4, 4, 4]),
        ("f", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    for (name, follower_log) in followers {
        let mut net = Net::new(vec![
            node_with_log(1, &[1, 2, 3], &leader_log, 7),
            node_with_log(2, &[1, 2, 3], follower_log, 7),
            node_with_log(3, &[1, 2, 3], &[1], 7),
        ]);
        net.elect(1);
        net.tick(&[1], 3);
        let mut want = leader_log.to_vec();
        want.push(8);
        assert_eq!(net.log_terms(1), want, "leader, case {name}");
        assert_eq!(net.log_terms(2), want, "follower ({name})");
        let leader: Vec<Entry> = net.node(1).entries().cloned().collect();
        let follower: Vec<Entry> = net.node(2).entries().cloned().collect();
        assert_eq!(leader, follower, "entries match, case {name}");
        assert_eq!(net.node(2).commit_index(), 11, "case {name}");
    }
}

#[test]
fn a_rejection_hint_skips_a_whole_conflicting_term() {
    // Follower (f) of Figure 7: the leader's probe at 10 is refused with a hint that points at
    // the last entry of a term the leader can have (index 3), so the next probe lands there.
    let mut follower = node_with_log(2, &[1, 2], &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], 7);
    follower.step(Message {
        from: 1,
        to: 2,
        term: 8,
        body: MessageBody::Append {
            prev_index: 10,
            prev_term: 6,
            entries: Vec::new(),
            commit: 0,
        },
    });
    let ready = follower.ready();
    let hint = ready
        .messages
        .iter()
        .chain(&ready.persisted_messages)
        .find_map(|m| match m.body {
            MessageBody::AppendResponse { reject, .. } => reject,
            _ => None,
        })
        .unwrap();
    assert_eq!(hint.rejected_prev_index, 10);
    assert_eq!(hint.conflict_index, 10);
    assert_eq!(hint.conflict_term, Some(3));
}

// ------------------------------------------------------------------ commit rule

/// Figure 8: a leader does not commit an entry of an earlier term by counting replicas.
#[cfg(not(feature = "buggy-commit-previous-term"))]
#[test]
fn figure_8_an_earlier_term_entry_is_not_committed_by_counting() {
    // S1 leads term 4 with [1, 2]; entry 2 (term 2) is on S1 only.
    let mut net = Net::new(vec![
        node_with_log(1, &[1, 2, 3], &[1, 2], 3),
        node_with_log(2, &[1, 2, 3], &[1], 3),
        node_with_log(3, &[1, 2, 3], &[1], 3),
    ]);
    net.cut.insert(2);
    net.cut.insert(3);
    net.elect_without_pump(1);
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(net.node(1).term(), 4);
    let _ = net.node(1).ready();
    net.node(1).on_persisted(u64::MAX);
    // S2 acknowledges entry 2 but not yet 3 (the blank of term 4).
    net.node(1).step(Message {
        from: 2,
        to: 1,
        term: 4,
        body: MessageBody::AppendResponse {
            match_index: Some(2),
            reject: None,
        },
    });
    assert_eq!(
        net.node(1).commit_index(),
        0,
        "entry 2 is on a majority but is of term 2"
    );
    net.node(1).step(Message {
        from: 2,
        to: 1,
        term: 4,
        body: MessageBody::AppendResponse {
            match_index: Some(3),
            reject: None,
        },
    });
    assert_eq!(
        net.node(1).commit_index(),
        3,
        "the blank of term 4 commits it all"
    );
}

impl Net {
    /// Elects `id` by feeding it granted votes directly.
    fn elect_without_pump(&mut self, id: NodeId) {
        let node = self.node(id);
        for _ in 0..40 {
            node.tick();
            if node.role() == Role::PreCandidate || node.role() == Role::Candidate {
                break;
            }
        }
        for _ in 0..2 {
            let role = node.role();
            let voters: Vec<NodeId> = node.membership().voters.clone();
            let (pre_vote, term) = match role {
                Role::PreCandidate => (true, node.term() + 1),
                Role::Candidate => (false, node.term()),
                _ => break,
            };
            for voter in voters.into_iter().filter(|&v| v != id) {
                node.step(Message {
                    from: voter,
                    to: id,
                    term,
                    body: MessageBody::VoteResponse {
                        pre_vote,
                        granted: true,
                    },
                });
            }
        }
    }
}

#[test]
fn a_leader_counts_itself_only_for_what_it_persisted() {
    let mut net = Net::new(vec![node_with_log(1, &[1], &[], 0)]);
    net.elect_without_pump(1);
    assert_eq!(net.node(1).role(), Role::Leader);
    let index = net.node(1).propose(Bytes::from_static(b"x")).unwrap();
    let ready = net.node(1).ready();
    assert_eq!(ready.entries.last().map(|e| e.index), Some(index));
    assert_eq!(net.node(1).commit_index(), 0, "not durable yet");
    net.node(1).on_persisted(ready.number);
    assert_eq!(net.node(1).commit_index(), index);
    let ready = net.node(1).ready();
    assert_eq!(ready.committed_entries.len(), 2);
}

// ------------------------------------------------------------------ pre-vote, check-quorum

#[test]
fn a_node_that_comes_back_from_a_partition_does_not_depose_the_leader() {
    let mut net = Net::fresh(3);
    net.elect(1);
    let term = net.node(1).term();
    net.cut.insert(3);
    net.tick(&[1, 2, 3], 100);
    assert_eq!(net.node(3).term(), term, "pre-votes do not raise the term");
    net.cut.clear();
    net.tick(&[1, 2, 3], 30);
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(net.node(1).term(), term);
    assert_eq!(net.node(3).leader(), Some(1));
}

#[test]
fn a_leader_without_a_quorum_steps_down() {
    let mut net = Net::fresh(3);
    net.elect(1);
    net.cut.insert(1);
    net.tick(&[1], 25);
    assert_eq!(net.node(1).role(), Role::Follower);
}

#[test]
fn a_follower_in_its_leader_lease_ignores_vote_requests() {
    let mut net = Net::fresh(3);
    net.elect(1);
    let term = net.node(1).term();
    net.node(2)
        .step(vote_request(3, 2, term + 5, 100, term + 5));
    assert_eq!(
        net.node(2).term(),
        term,
        "ignored: the leader was heard recently"
    );
    let ready = net.node(2).ready();
    assert_eq!(granted(&ready), None);
}

// ------------------------------------------------------------------ reads

#[test]
fn read_index_waits_for_a_quorum_heartbeat_and_lease_reads_do_not() {
    let mut net = Net::fresh(3);
    net.elect(1);
    net.tick(&[1], 1);
    net.cut.insert(2);
    net.cut.insert(3);
    net.node(1).read_index(7).unwrap();
    net.pump();
    assert!(
        net.reads.get(&1).is_none_or(|r| r.is_empty()),
        "no quorum yet"
    );
    net.cut.clear();
    net.tick(&[1], 1);
    let reads = net.reads.remove(&1).unwrap_or_default();
    assert_eq!(
        reads.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![7],
        "confirmed by a heartbeat round"
    );
    // A lease read answers at once.
    net.node(1).read_lease(8).unwrap();
    net.cut.insert(2);
    net.cut.insert(3);
    net.pump();
    assert_eq!(net.reads.remove(&1).map(|r| r[0].id), Some(8));
}

#[test]
fn a_follower_forwards_read_index_to_its_leader() {
    let mut net = Net::fresh(3);
    net.elect(1);
    net.tick(&[1], 2);
    net.node(2).read_index(9).unwrap();
    net.tick(&[1], 1);
    let reads = net.reads.remove(&2).unwrap_or_default();
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].id, 9);
    assert_eq!(reads[0].index, net.node(1).commit_index());
}

// ------------------------------------------------------------------ snapshots

#[test]
fn a_lagging_follower_is_sent_the_snapshot_in_chunks_and_resumes() {
    let mut net = Net::fresh(3);
    net.elect(1);
    net.cut.insert(3);
    for i in 0..10 {
        net.node(1).propose(Bytes::from(format!("e{i}"))).unwrap();
    }
    net.pump();
    let applied = net.node(1).applied_index();
    net.node(1).snapshot_taken(applied).unwrap();
    assert_eq!(net.node(1).first_index(), applied + 1);
    let ready = net.node(1).ready();
    assert_eq!(ready.compact_log_to, Some((applied, net.node(1).term())));
    // Node 3 comes back: its probe is refused down to the compacted part, so a snapshot goes.
    net.cut.clear();
    net.tick(&[1], 3);
    assert_eq!(net.node(3).snapshot().index, applied);
    assert_eq!(net.node(3).commit_index(), net.node(1).commit_index());
    assert_eq!(net.node(3).last_index(), net.node(1).last_index());
}

fn wiped_follower_is_caught_up_by_snapshot(write_after_wipe: bool) {
    let mut net = Net::fresh(3);
    net.elect(1);
    for i in 0..10 {
        net.node(1).propose(Bytes::from(format!("e{i}"))).unwrap();
    }
    net.pump();
    assert_eq!(net.node(3).last_index(), net.node(1).last_index());
    let applied = net.node(1).applied_index();
    net.node(1).snapshot_taken(applied).unwrap();
    net.pump();
    // Node 3's data dir is deleted and re-created from the cluster files: it starts afresh.
    net.nodes.insert(
        3,
        RawNode::new(cfg(3), Recovered::bootstrap([1, 2, 3])).unwrap(),
    );
    if write_after_wipe {
        // The next append is refused: the refusal reveals the lost entries.
        net.node(1).propose(Bytes::from_static(b"after")).unwrap();
        net.pump();
    }
    // Otherwise heartbeats alone must reveal them (the follower reports its last index).
    net.tick(&[1], 30);
    assert_eq!(
        net.node(3).snapshot().index,
        applied,
        "node 3 got the snapshot"
    );
    assert_eq!(net.node(3).last_index(), net.node(1).last_index());
    assert_eq!(net.node(3).commit_index(), net.node(1).commit_index());
}

#[test]
fn a_follower_whose_state_was_wiped_is_caught_up_by_snapshot_after_a_write() {
    wiped_follower_is_caught_up_by_snapshot(true);
}

#[test]
fn a_follower_whose_state_was_wiped_is_caught_up_by_snapshot_on_heartbeats_alone() {
    wiped_follower_is_caught_up_by_snapshot(false);
}

#[test]
fn snapshot_chunks_out_of_order_are_refused_with_the_expected_offset() {
    let mut follower = node_with_log(2, &[1, 2], &[], 1);
    let meta = SnapshotMeta {
        index: 5,
        term: 1,
        membership: Membership::new([1, 2]),
    };
    let chunk = |offset: u64, data: &'static [u8], done: bool| Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::InstallSnapshot {
            meta: meta.clone(),
            offset,
            data: Bytes::from_static(data),
            done,
        },
    };
    let next_offset = |ready: &Ready| {
        ready
            .messages
            .iter()
            .chain(&ready.persisted_messages)
            .find_map(|m| match m.body {
                MessageBody::InstallSnapshotResponse {
                    next_offset, done, ..
                } => Some((next_offset, done)),
                _ => None,
            })
    };
    follower.step(chunk(4, b"4567", false));
    assert_eq!(
        next_offset(&follower.ready()),
        Some((0, false)),
        "start at 0"
    );
    follower.step(chunk(0, b"0123", false));
    let ready = follower.ready();
    assert_eq!(ready.snapshot_chunks.len(), 1);
    assert_eq!(next_offset(&ready), Some((4, false)));
    follower.step(chunk(0, b"0123", false));
    assert_eq!(
        next_offset(&follower.ready()),
        Some((4, false)),
        "a duplicate"
    );
    follower.step(chunk(4, b"45", true));
    let ready = follower.ready();
    assert_eq!(ready.install_snapshot.as_ref(), Some(&meta));
    assert_eq!(next_offset(&ready), Some((6, true)));
    assert_eq!(follower.commit_index(), 5);
    assert_eq!(follower.last_index(), 5);
    assert_eq!(follower.membership(), &meta.membership);
}

// ------------------------------------------------------------------ membership

fn commit_all(net: &mut Net, leader: NodeId) {
    net.tick(&[leader], 2);
}

#[test]
fn a_learner_catches_up_before_it_is_promoted() {
    let mut net = Net::fresh(3);
    net.nodes.insert(
        4,
        RawNode::new(cfg(4), Recovered::bootstrap(Vec::<NodeId>::new())).unwrap(),
    );
    net.elect(1);
    net.cut.insert(4);
    for i in 0..10 {
        net.node(1).propose(Bytes::from(format!("e{i}"))).unwrap();
    }
    net.pump();
    net.node(1)
        .propose_membership(MembershipChange::AddLearner(4))
        .unwrap();
    commit_all(&mut net, 1);
    assert!(matches!(
        net.node(1)
            .propose_membership(MembershipChange::PromoteLearner(4)),
        Err(Error::LearnerLagging { id: 4, .. })
    ));
    net.cut.clear();
    commit_all(&mut net, 1);
    assert_eq!(net.node(4).role(), Role::Learner);
    net.node(1)
        .propose_membership(MembershipChange::PromoteLearner(4))
        .unwrap();
    commit_all(&mut net, 1);
    assert_eq!(net.node(4).role(), Role::Follower);
    assert!(net.node(2).membership().is_voter(4));
}

#[test]
fn one_membership_change_at_a_time() {
    let mut net = Net::fresh(3);
    net.elect(1);
    net.cut.insert(2);
    net.cut.insert(3);
    let index = net
        .node(1)
        .propose_membership(MembershipChange::AddLearner(4))
        .unwrap();
    assert_eq!(
        net.node(1)
            .propose_membership(MembershipChange::AddLearner(5)),
        Err(Error::MembershipChangePending { index })
    );
}

#[test]
fn a_removed_leader_steps_down_once_the_removal_commits_and_never_campaigns() {
    let mut net = Net::fresh(3);
    net.elect(1);
    net.node(1)
        .propose_membership(MembershipChange::RemoveNode(1))
        .unwrap();
    assert_eq!(
        net.node(1).role(),
        Role::Leader,
        "leads until the removal commits"
    );
    commit_all(&mut net, 1);
    net.pump();
    assert_eq!(net.node(1).role(), Role::Learner);
    net.tick_all(60);
    let leader = net.node(2).leader().unwrap();
    assert!(leader == 2 || leader == 3);
    assert_eq!(
        net.node(1).role(),
        Role::Learner,
        "a removed node does not campaign"
    );
    assert_eq!(net.node(leader).membership().voters, vec![2, 3]);
}

#[test]
fn a_partitioned_node_is_removed_and_cannot_disrupt() {
    let mut net = Net::fresh(5);
    net.elect(1);
    net.cut.insert(5);
    net.node(1)
        .propose_membership(MembershipChange::RemoveNode(5))
        .unwrap();
    commit_all(&mut net, 1);
    assert_eq!(net.node(1).membership().voters, vec![1, 2, 3, 4]);
    let term = net.node(1).term();
    net.tick_all(100);
    net.cut.clear();
    net.tick_all(100);
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(
        net.node(1).term(),
        term,
        "the removed node did not raise the term"
    );
}

#[test]
fn an_uncommitted_configuration_survives_a_restart_and_reverts_when_truncated() {
    // Node 2 has the leader's AddLearner(4) entry (index 2, term 1), not yet committed.
    let added = Membership::new([1, 2, 3])
        .apply_change(MembershipChange::AddLearner(4))
        .unwrap();
    let mut recovered = Recovered::bootstrap([1, 2, 3]);
    recovered.hard_state.term = 1;
    recovered.entries = entries_with_terms(&[1]);
    recovered.entries.push(Entry {
        index: 2,
        term: 1,
        kind: EntryKind::Config,
        data: added.encode(),
    });
    // "Crash" and restart from what was durable: the configuration is back.
    let mut restart_cfg = cfg(2);
    restart_cfg.lease_reads = false;
    let restarted = RawNode::new(restart_cfg, recovered).unwrap();
    assert!(restarted.membership().is_learner(4));
    // Node 3 never got it and has an entry of term 2 there: it is elected, its log wins and
    // the change reverts.
    let mut net = Net::new(vec![
        node_with_log(1, &[1, 2, 3], &[1], 1),
        restarted,
        node_with_log(3, &[1, 2, 3], &[1, 2], 2),
    ]);
    net.cut.insert(1);
    net.elect(3);
    net.node(3).propose(Bytes::from_static(b"x")).unwrap();
    net.tick(&[3], 2);
    assert_eq!(net.node(2).log_term(2), Some(2));
    assert!(!net.node(2).membership().contains(4));
}

// ------------------------------------------------------------------ leader transfer

#[test]
fn leadership_transfer_refuses_a_lagging_target_and_moves_to_a_caught_up_one() {
    let mut net = Net::fresh(3);
    net.elect(1);
    net.cut.insert(3);
    for i in 0..5 {
        net.node(1).propose(Bytes::from(format!("e{i}"))).unwrap();
    }
    net.pump();
    assert!(matches!(
        net.node(1).transfer_leader(3),
        Err(Error::TargetLags { id: 3, .. })
    ));
    net.node(1).transfer_leader(2).unwrap();
    assert!(matches!(
        net.node(1).propose(Bytes::from_static(b"y")),
        Err(Error::TransferInProgress { target: 2 })
    ));
    net.pump();
    assert_eq!(net.node(2).role(), Role::Leader);
    assert_eq!(net.node(1).leader(), Some(2));
}

#[test]
fn proposals_to_a_follower_name_the_leader() {
    let mut net = Net::fresh(3);
    net.elect(1);
    assert_eq!(
        net.node(2).propose(Bytes::from_static(b"x")),
        Err(Error::NotLeader { leader: Some(1) })
    );
}

// ------------------------------------------------------------------ codecs

#[test]
fn messages_and_payloads_round_trip_and_garbage_is_refused() {
    let m = Message {
        from: 1,
        to: 2,
        term: 3,
        body: MessageBody::Append {
            prev_index: 4,
            prev_term: 2,
            entries: entries_with_terms(&[1, 2]),
            commit: 1,
        },
    };
    let bytes = m.encode().unwrap();
    assert_eq!(Message::decode(&bytes).unwrap(), m);
    assert!(Message::decode(&bytes[..bytes.len() / 2]).is_err());
    assert!(Message::decode(&[0xAB; 64]).is_err());
    let p = Proposal::encode(7, 9, b"payload");
    let decoded = Proposal::decode(&p).unwrap();
    assert_eq!((decoded.client_id, decoded.seq), (7, 9));
    assert_eq!(decoded.payload, b"payload");
    let membership = Membership::new([3, 1, 2]);
    assert_eq!(
        Membership::decode(&membership.encode()).unwrap(),
        membership
    );
}

proptest::proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = Message::decode(&bytes);
        let _ = Proposal::decode(&bytes);
        let _ = Membership::decode(&bytes);
    }
}

// ------------------------------------------------------------------ review regressions

#[test]
fn a_hard_state_never_claims_a_commit_beyond_entries_durable_in_earlier_readies() {
    // Follower 2 holds durable entries of term 2 that the term-3 leader overwrites. The
    // driver may save the hard state (new term, so synced at once) before the WAL has the
    // replacing entries: a commit index covering them would make a restart apply the old
    // term-2 entries as committed.
    let mut node = node_with_log(2, &[1, 2, 3], &[1, 2, 2], 2);
    node.step(Message {
        from: 1,
        to: 2,
        term: 3,
        body: MessageBody::Append {
            prev_index: 1,
            prev_term: 1,
            entries: vec![
                Entry {
                    index: 2,
                    term: 3,
                    kind: EntryKind::Normal,
                    data: Bytes::from_static(b"new2"),
                },
                Entry {
                    index: 3,
                    term: 3,
                    kind: EntryKind::Normal,
                    data: Bytes::from_static(b"new3"),
                },
            ],
            commit: 3,
        },
    });
    assert_eq!(node.commit_index(), 3);
    let ready = node.ready();
    let hs = ready.hard_state.expect("the term changed");
    assert_eq!(hs.term, 3);
    assert!(
        hs.commit <= 1,
        "commit {} saved while only index 1 is durable as this log has it",
        hs.commit
    );
    node.on_persisted(ready.number);
    assert!(node.has_ready(), "the durable commit index moved");
    let ready = node.ready();
    assert_eq!(ready.hard_state.map(|h| h.commit), Some(3));
}

#[test]
fn a_restarted_node_does_not_vote_within_an_election_timeout_of_starting() {
    // Node 2 acknowledged the leader's heartbeat (extending the leader's lease), crashed and
    // came back at once: it no longer remembers the leader, but the lease it helped build
    // still stands. Voting now would let a new leader commit writes the old leader's lease
    // reads miss.
    let mut recovered = Recovered::bootstrap([1, 2, 3]);
    recovered.entries = entries_with_terms(&[1, 1]);
    recovered.hard_state.term = 1;
    let mut node = RawNode::new(cfg(2), recovered).unwrap();
    node.step(vote_request(3, 2, 2, 2, 1));
    assert_eq!(node.term(), 1, "ignored during the restart quiet period");
    assert_eq!(granted(&node.ready()), None);
    for _ in 0..10 {
        node.tick();
    }
    node.step(vote_request(3, 2, 5, 2, 1));
    assert_eq!(node.term(), 5);
    assert_eq!(granted(&node.ready()), Some(true));
}

#[test]
fn a_leader_that_sent_timeout_now_serves_no_lease_read_for_the_rest_of_its_term() {
    let mut net = Net::fresh(3);
    net.elect(1);
    net.tick(&[1], 2);
    // The TimeoutNow to 2 is delayed in the network (captured here).
    net.node(1).transfer_leader(2).unwrap();
    let ready = net.node(1).ready();
    net.node(1).on_persisted(ready.number);
    let timeout_now: Vec<Message> = ready
        .messages
        .into_iter()
        .filter(|m| matches!(m.body, MessageBody::TimeoutNow))
        .collect();
    assert_eq!(timeout_now.len(), 1);
    net.cut.insert(2);
    // The transfer is abandoned after an election timeout; 3 keeps acknowledging rounds.
    net.tick(&[1, 3], 12);
    assert_eq!(net.node(1).role(), Role::Leader);
    // No round trip possible: only a lease could answer.
    net.cut.insert(3);
    net.node(1).read_lease(9).unwrap();
    net.pump();
    assert!(
        net.reads
            .get(&1)
            .is_none_or(|r| r.iter().all(|r| r.id != 9)),
        "a lease read answered at once"
    );
    // The delayed TimeoutNow arrives: 2 is elected with 3's vote, lease or not.
    net.cut.clear();
    let term = net.node(1).term();
    for m in timeout_now {
        net.node(2).step(m);
    }
    net.cut.insert(1);
    net.pump();
    assert_eq!(net.node(2).role(), Role::Leader);
    assert!(net.node(2).term() > term);
}

#[test]
fn a_malformed_append_from_a_peer_is_dropped_without_touching_the_log() {
    let mut node = node_with_log(2, &[1, 2, 3], &[1, 1], 1);
    let entry = |index, term| Entry {
        index,
        term,
        kind: EntryKind::Normal,
        data: Bytes::from_static(b"x"),
    };
    for (prev_index, entries) in [
        // Not contiguous from prev_index + 1.
        (2, vec![entry(5, 1)]),
        (2, vec![entry(3, 1), entry(3, 1)]),
        // A term above the message's.
        (2, vec![entry(3, 9)]),
        // Terms going down.
        (
            1,
            vec![entry(2, 1), entry(3, 1)].into_iter().rev().collect(),
        ),
        // Index arithmetic overflowing.
        (u64::MAX, vec![entry(0, 1)]),
    ] {
        node.step(Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::Append {
                prev_index,
                prev_term: 1,
                entries,
                commit: 0,
            },
        });
        assert_eq!(node.last_index(), 2);
    }
    node.step(Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                index: 10,
                term: 1,
                membership: Membership::new([1, 2, 3]),
            },
            offset: u64::MAX,
            data: Bytes::from_static(b"xy"),
            done: false,
        },
    });
}

#[test]
fn a_read_index_answer_from_an_older_term_aborts_the_read_instead_of_losing_it() {
    let mut net = Net::fresh(3);
    net.elect(1);
    let term = net.node(1).term();
    net.node(2).read_index(5).unwrap();
    let forwarded = net.node(2).ready().messages;
    assert!(
        forwarded
            .iter()
            .any(|m| matches!(m.body, MessageBody::ReadIndex { id: 5 }))
    );
    // Node 2 moves to a newer term before the old leader's answer arrives.
    net.node(2).step(Message {
        from: 3,
        to: 2,
        term: term + 1,
        body: MessageBody::Heartbeat {
            commit: 0,
            round: 1,
        },
    });
    assert_eq!(net.node(2).term(), term + 1);
    let _ = net.node(2).ready();
    net.node(2).step(Message {
        from: 1,
        to: 2,
        term,
        body: MessageBody::ReadIndexResponse {
            id: 5,
            index: Some(1),
        },
    });
    let ready = net.node(2).ready();
    assert_eq!(ready.aborted_reads, vec![5], "the client retries at once");
}

#[test]
fn an_installed_snapshot_replacing_the_log_claims_no_commit_over_old_entries_until_durable() {
    // Node 2 holds durable entries 2..=4, uncommitted; the leader's snapshot at 3 has another
    // term there, so the log is discarded. Until the snapshot is durable, the store still
    // holds the old entries: a saved commit index above 1 would make a restart apply them.
    let mut recovered = Recovered::bootstrap([1, 2, 3]);
    recovered.entries = entries_with_terms(&[1, 1, 2, 2]);
    recovered.hard_state.term = 3;
    recovered.hard_state.commit = 1;
    let mut cfg = cfg(2);
    cfg.lease_reads = false;
    let mut node = RawNode::new(cfg, recovered).unwrap();
    node.step(Message {
        from: 1,
        to: 2,
        term: 3,
        body: MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                index: 3,
                term: 3,
                membership: Membership::new([1, 2, 3]),
            },
            offset: 0,
            data: Bytes::from_static(b"snap"),
            done: true,
        },
    });
    assert_eq!(node.commit_index(), 3);
    let ready = node.ready();
    assert!(ready.install_snapshot.is_some());
    let commit = ready.hard_state.map_or(1, |h| h.commit);
    assert!(
        commit <= 1,
        "commit {commit} saved before the snapshot is durable"
    );
    node.on_persisted(ready.number);
    assert_eq!(node.ready().hard_state.map(|h| h.commit), Some(3));
}

#[test]
fn absurd_append_responses_from_a_peer_neither_panic_nor_move_the_commit() {
    let mut net = Net::fresh(3);
    net.elect(1);
    let commit = net.node(1).commit_index();
    net.node(1).propose(Bytes::from_static(b"x")).unwrap();
    let _ = net.node(1).ready();
    let term = net.node(1).term();
    for body in [
        MessageBody::AppendResponse {
            match_index: Some(u64::MAX),
            reject: None,
        },
        MessageBody::AppendResponse {
            match_index: None,
            reject: Some(RejectHint {
                rejected_prev_index: u64::MAX,
                conflict_term: None,
                conflict_index: u64::MAX,
            }),
        },
    ] {
        for from in [2, 3] {
            net.node(1).step(Message {
                from,
                to: 1,
                term,
                body: body.clone(),
            });
        }
    }
    assert_eq!(net.node(1).commit_index(), commit);
    assert_eq!(net.node(1).match_index(2), Some(commit));
    // Replication goes on as usual.
    net.pump();
    net.tick(&[1], 2);
    assert!(net.node(1).commit_index() > commit);
    assert_eq!(net.node(2).commit_index(), net.node(1).commit_index());
}
