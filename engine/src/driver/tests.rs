//! Tests of the driver: in-process clusters over [`LocalNetwork`], with real WAL and snapshot
//! files in temporary directories. Every wait is bounded; conditions are awaited (metrics
//! watches, polling under a deadline), never assumed after a sleep.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::Role;
use crate::{ClientSessions, Command, Dedup, SnapshotImage, StateMachine};

use super::{Consistency, Error, LocalNetwork, Metrics, NodeBuilder, NodeHandle, SnapshotPolicy};

/// Generous bound for anything to happen on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------- the embedding example

/// The user's side of a 3-node in-process cluster with a custom state machine (what
/// issue 4 wants to fit in about 60 lines): an in-memory counter, three nodes, a write, a
/// linearizable read, shutdown.
mod embedding_example {
    use std::io::{Read, Write};

    use crate::driver::{Consistency, LocalNetwork, NodeBuilder};
    use crate::{Command, SnapshotImage, StateMachine};

    #[derive(Default)]
    struct Counter {
        value: i64,
        applied: u64,
    }

    struct Image(i64, u64);

    impl SnapshotImage for Image {
        fn applied_index(&self) -> u64 {
            self.1
        }
        fn write_to(self: Box<Self>, out: &mut dyn Write) -> std::io::Result<()> {
            out.write_all(&self.0.to_le_bytes())
        }
    }

    impl StateMachine for Counter {
        type Error = std::io::Error;
        fn applied_index(&self) -> u64 {
            self.applied
        }
        fn apply(&mut self, commands: &[Command<'_>]) -> Result<Vec<Vec<u8>>, Self::Error> {
            let mut responses = Vec::new();
            for command in commands {
                self.value += i64::from(command.payload.first().copied().unwrap_or(0));
                self.applied = command.index;
                responses.push(self.value.to_le_bytes().to_vec());
            }
            Ok(responses)
        }
        fn query(&self, _query: &[u8]) -> Result<Vec<u8>, Self::Error> {
            Ok(self.value.to_le_bytes().to_vec())
        }
        fn snapshot(&mut self) -> Result<Box<dyn SnapshotImage>, Self::Error> {
            Ok(Box::new(Image(self.value, self.applied)))
        }
        fn restore(&mut self, index: u64, input: &mut dyn Read) -> Result<(), Self::Error> {
            let mut bytes = [0u8; 8];
            input.read_exact(&mut bytes)?;
            (self.value, self.applied) = (i64::from_le_bytes(bytes), index);
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_node_cluster_in_about_sixty_lines() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let net = LocalNetwork::new();
        let mut nodes = Vec::new();
        for id in 1..=3 {
            let builder =
                NodeBuilder::new(id, dir.path().join(format!("node-{id}"))).voters([1, 2, 3]);
            nodes.push(net.start(builder, Counter::default()).await?);
        }
        let timeout = std::time::Duration::from_secs(30);
        let leader_id = nodes[0].wait_for_leader(timeout).await?;
        let leader = &nodes[leader_id as usize - 1];
        leader.wait_for(timeout, |m| m.is_leader()).await?;
        assert_eq!(leader.propose([5]).await?, 5i64.to_le_bytes());
        assert_eq!(leader.propose([2]).await?, 7i64.to_le_bytes());
        let value = nodes[0].read(Vec::new(), Consistency::Linearizable).await?;
        assert_eq!(value, 7i64.to_le_bytes());
        for node in &nodes {
            node.shutdown().await?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------- a persistent counter

/// How often each `(node, index)` was applied, across restarts.
type ApplyLog = Arc<Mutex<HashMap<(u64, u64), u32>>>;

#[derive(Debug, thiserror::Error)]
#[error("counter: {0}")]
struct CounterError(String);

/// A counter with exactly-once sessions; persisted to a file after every batch when given
/// one (its applied index survives restarts, so nothing is applied twice), in memory
/// otherwise (restored from the latest snapshot at restart).
struct Counter {
    node: u64,
    value: i64,
    applied: u64,
    sessions: ClientSessions,
    file: Option<PathBuf>,
    log: ApplyLog,
    /// A delta whose application fails (a state machine whose disk broke).
    poison: Option<i64>,
}

struct CounterImage {
    applied: u64,
    bytes: Vec<u8>,
}

impl SnapshotImage for CounterImage {
    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn write_to(self: Box<Self>, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(&self.bytes)
    }
}

impl Counter {
    fn open(node: u64, file: Option<PathBuf>, log: ApplyLog) -> Self {
        let mut counter = Self {
            node,
            value: 0,
            applied: 0,
            sessions: ClientSessions::new(1024),
            file,
            log,
            poison: None,
        };
        if let Some(path) = &counter.file
            && let Ok(bytes) = std::fs::read(path)
        {
            counter.load(&bytes).unwrap();
        }
        counter
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.value.to_le_bytes());
        out.extend_from_slice(&self.applied.to_le_bytes());
        out.extend_from_slice(&self.sessions.encode());
        out
    }

    fn load(&mut self, bytes: &[u8]) -> Result<(), CounterError> {
        if bytes.len() < 16 {
            return Err(CounterError("short state".into()));
        }
        self.value = i64::from_le_bytes(bytes[0..8].try_into().unwrap());
        self.applied = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        self.sessions =
            ClientSessions::decode(&bytes[16..]).map_err(|e| CounterError(e.to_string()))?;
        Ok(())
    }

    fn persist(&self) -> Result<(), CounterError> {
        if let Some(path) = &self.file {
            let temp = path.with_extension("tmp");
            std::fs::write(&temp, self.encode())
                .and_then(|()| std::fs::rename(&temp, path))
                .map_err(|e| CounterError(e.to_string()))?;
        }
        Ok(())
    }
}

impl StateMachine for Counter {
    type Error = CounterError;

    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn apply(&mut self, commands: &[Command<'_>]) -> Result<Vec<Vec<u8>>, Self::Error> {
        let mut responses = Vec::with_capacity(commands.len());
        for command in commands {
            *self
                .log
                .lock()
                .unwrap()
                .entry((self.node, command.index))
                .or_default() += 1;
            let response = match self.sessions.check(command.client_id, command.seq) {
                Dedup::Duplicate(first) => first.to_vec(),
                Dedup::Stale => Vec::new(),
                Dedup::Fresh => {
                    let delta = command
                        .payload
                        .try_into()
                        .map(i64::from_le_bytes)
                        .unwrap_or(0);
                    if self.poison == Some(delta) {
                        return Err(CounterError(format!("cannot apply {delta}")));
                    }
                    self.value += delta;
                    let response = self.value.to_le_bytes().to_vec();
                    self.sessions
                        .record(command.client_id, command.seq, command.index, &response);
                    response
                }
            };
            self.applied = command.index;
            responses.push(response);
        }
        self.persist()?;
        Ok(responses)
    }

    fn query(&self, _query: &[u8]) -> Result<Vec<u8>, Self::Error> {
        Ok(self.value.to_le_bytes().to_vec())
    }

    fn snapshot(&mut self) -> Result<Box<dyn SnapshotImage>, Self::Error> {
        Ok(Box::new(CounterImage {
            applied: self.applied,
            bytes: self.encode(),
        }))
    }

    fn restore(&mut self, index: u64, input: &mut dyn Read) -> Result<(), Self::Error> {
        let mut bytes = Vec::new();
        input
            .read_to_end(&mut bytes)
            .map_err(|e| CounterError(e.to_string()))?;
        self.load(&bytes)?;
        self.applied = index;
        self.persist()
    }
}

fn value(bytes: &[u8]) -> i64 {
    i64::from_le_bytes(bytes.try_into().unwrap())
}

// ---------------------------------------------------------------------- the cluster harness

struct Cluster {
    net: LocalNetwork,
    root: tempfile::TempDir,
    voters: Vec<u64>,
    nodes: HashMap<u64, NodeHandle>,
    log: ApplyLog,
    policy: SnapshotPolicy,
    persistent: bool,
}

impl Cluster {
    async fn new(voters: &[u64], policy: SnapshotPolicy, persistent: bool) -> Self {
        let mut cluster = Self {
            net: LocalNetwork::new(),
            root: tempfile::tempdir().unwrap(),
            voters: voters.to_vec(),
            nodes: HashMap::new(),
            log: ApplyLog::default(),
            policy,
            persistent,
        };
        for &id in voters {
            cluster.start(id).await;
        }
        cluster
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("node-{id}"))
    }

    fn builder(&self, id: u64) -> NodeBuilder {
        NodeBuilder::new(id, self.dir(id))
            .voters(self.voters.iter().copied())
            .tick(Duration::from_millis(5))
            .raft_config(|c| {
                c.heartbeat_ticks = 4;
                c.election_ticks_min = 60;
                c.election_ticks_max = 120;
                c.lease_ticks = 40;
                c.clock_drift_ticks = 10;
                c.snapshot_chunk_bytes = 1024;
            })
            .snapshot_policy(self.policy.clone())
            .wal_segment_bytes(8192)
            .request_timeout(Duration::from_secs(10))
    }

    async fn start(&mut self, id: u64) -> NodeHandle {
        std::fs::create_dir_all(self.dir(id)).unwrap();
        let file = self.persistent.then(|| self.dir(id).join("counter.state"));
        let counter = Counter::open(id, file, Arc::clone(&self.log));
        let node = self.net.start(self.builder(id), counter).await.unwrap();
        self.nodes.insert(id, node.clone());
        node
    }

    async fn stop(&mut self, id: u64) {
        if let Some(node) = self.nodes.remove(&id) {
            self.net.unregister(id);
            node.shutdown().await.unwrap();
            assert_eq!(node.metrics().stopped.as_deref(), Some("shut down"));
        }
    }

    fn node(&self, id: u64) -> &NodeHandle {
        &self.nodes[&id]
    }

    /// Waits until the running voters agree on one leader that is running.
    async fn leader(&self) -> NodeHandle {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let metrics: Vec<Metrics> = self.nodes.values().map(NodeHandle::metrics).collect();
            let leaders: Vec<&Metrics> = metrics.iter().filter(|m| m.is_leader()).collect();
            if let [leader] = leaders.as_slice() {
                let agreeing = metrics
                    .iter()
                    .filter(|m| m.membership.is_voter(m.id))
                    .filter(|m| m.leader == Some(leader.id) && m.term == leader.term)
                    .count();
                let voters_up = metrics
                    .iter()
                    .filter(|m| m.membership.is_voter(m.id))
                    .count();
                if agreeing == voters_up {
                    return self.node(leader.id).clone();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader: {metrics:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Proposes through whoever leads, retrying retryable errors under a deadline.
    async fn propose(&self, client_id: u64, seq: u64, delta: i64) -> i64 {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let leader = self.leader().await;
            match leader
                .propose_with_session(client_id, seq, delta.to_le_bytes())
                .await
            {
                Ok(response) => return value(&response),
                Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("proposal failed: {e}"),
            }
        }
    }

    /// Proposes `count` increments of 1 concurrently from `count` clients (ids from
    /// `first_client`).
    async fn increments(&self, first_client: u64, count: u64) {
        let leader = self.leader().await;
        let mut tasks = Vec::new();
        for client in first_client..first_client + count {
            let leader = leader.clone();
            tasks.push(tokio::spawn(async move {
                leader
                    .propose_with_session(client, 1, 1i64.to_le_bytes())
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }

    async fn wait_applied(&self, id: u64, index: u64) -> Metrics {
        self.node(id)
            .wait_for(DEADLINE, |m| m.applied_index >= index)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "node {id} did not apply {index}: {e}; {:?}",
                    self.node(id).metrics()
                )
            })
    }

    async fn read(&self, id: u64, consistency: Consistency) -> i64 {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            // A lost forwarded read is retried after two seconds, not the handle's timeout.
            let attempt = tokio::time::timeout(
                Duration::from_secs(2),
                self.node(id).read(Vec::new(), consistency),
            )
            .await
            .unwrap_or(Err(Error::Timeout(Duration::from_secs(2))));
            match attempt {
                Ok(bytes) => return value(&bytes),
                Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("read on {id} failed: {e}"),
            }
        }
    }

    fn assert_nothing_applied_twice(&self) {
        let log = self.log.lock().unwrap();
        let twice: Vec<_> = log.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "applied more than once: {twice:?}");
    }

    async fn shutdown(mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

fn policy(max_log_entries: u64) -> SnapshotPolicy {
    SnapshotPolicy {
        max_log_entries,
        ..SnapshotPolicy::default()
    }
}

// ---------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader_replicate_and_read() {
    let cluster = Cluster::new(&[1, 2, 3], policy(100_000), true).await;
    let leader = cluster.leader().await;
    cluster.increments(100, 20).await;
    let commit = leader.metrics().commit_index;
    for id in 1..=3 {
        cluster.wait_applied(id, commit).await;
    }
    // Linearizable reads on the leader and through a follower (forwarded ReadIndex).
    let follower = (1..=3).find(|&id| id != leader.id()).unwrap();
    assert_eq!(
        cluster.read(leader.id(), Consistency::Linearizable).await,
        20
    );
    assert_eq!(cluster.read(follower, Consistency::Linearizable).await, 20);
    assert_eq!(cluster.read(leader.id(), Consistency::Lease).await, 20);
    assert_eq!(cluster.read(follower, Consistency::Stale).await, 20);
    // Exactly one leader in its term.
    let term = leader.metrics().term;
    let leaders = (1..=3)
        .map(|id| cluster.node(id).metrics())
        .filter(|m| m.is_leader() && m.term == term)
        .count();
    assert_eq!(leaders, 1);
    // A follower refuses proposals and names the leader.
    match cluster.node(follower).propose(1i64.to_le_bytes()).await {
        Err(Error::NotLeader { leader: Some(id) }) => assert_eq!(id, leader.id()),
        other => panic!("expected NotLeader, got {other:?}"),
    }
    assert!(matches!(
        leader.propose(vec![0u8; 5 << 20]).await,
        Err(Error::ProposalTooLarge { .. })
    ));
    let metrics = leader.metrics();
    assert!(metrics.wal_bytes > 0 || metrics.last_index > 0);
    assert_eq!(metrics.membership.voters, vec![1, 2, 3]);
    cluster.assert_nothing_applied_twice();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_serves_writes_after_the_leader_shuts_down() {
    let mut cluster = Cluster::new(&[1, 2, 3], policy(100_000), true).await;
    assert_eq!(cluster.propose(1, 1, 5).await, 5);
    let old = cluster.leader().await.id();
    cluster.stop(old).await;
    let new = cluster.leader().await;
    assert_ne!(new.id(), old);
    assert_eq!(cluster.propose(1, 2, 5).await, 10);
    assert_eq!(cluster.read(new.id(), Consistency::Linearizable).await, 10);
    // The old leader comes back as a follower and catches up.
    cluster.start(old).await;
    let commit = cluster.leader().await.metrics().commit_index;
    cluster.wait_applied(old, commit).await;
    assert_eq!(cluster.read(old, Consistency::Stale).await, 10);
    cluster.assert_nothing_applied_twice();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_nodes_recover_every_acknowledged_write_without_reapplying() {
    let mut cluster = Cluster::new(&[1, 2, 3], policy(100_000), true).await;
    cluster.increments(1, 30).await;
    let commit = cluster.leader().await.metrics().commit_index;
    for id in 1..=3 {
        cluster.wait_applied(id, commit).await;
    }
    // One node restarted alone, then the whole cluster.
    let leader = cluster.leader().await.id();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    cluster.stop(follower).await;
    cluster.start(follower).await;
    assert_eq!(cluster.read(follower, Consistency::Linearizable).await, 30);
    for id in 1..=3 {
        cluster.stop(id).await;
    }
    for id in 1..=3 {
        cluster.start(id).await;
    }
    assert_eq!(cluster.read(leader, Consistency::Linearizable).await, 30);
    assert_eq!(cluster.propose(999, 1, 1).await, 31);
    let commit = cluster.leader().await.metrics().commit_index;
    for id in 1..=3 {
        cluster.wait_applied(id, commit).await;
        assert_eq!(cluster.read(id, Consistency::Stale).await, 31);
    }
    cluster.assert_nothing_applied_twice();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_catches_up_through_install_snapshot() {
    let mut cluster = Cluster::new(&[1, 2, 3], policy(50), true).await;
    cluster.increments(1, 10).await;
    let leader = cluster.leader().await.id();
    let lagging = (1..=3).find(|&id| id != leader).unwrap();
    let commit = cluster.node(leader).metrics().commit_index;
    cluster.wait_applied(lagging, commit).await;
    cluster.stop(lagging).await;
    for round in 0..8 {
        cluster.increments(1000 + round * 50, 50).await;
    }
    // The leader has snapshotted and dropped the log the lagging node would need.
    let leader_metrics = cluster
        .node(leader)
        .wait_for(DEADLINE, |m| m.snapshot_index > commit + 100)
        .await
        .unwrap();
    cluster.start(lagging).await;
    let caught_up = cluster
        .wait_applied(lagging, leader_metrics.snapshot_index)
        .await;
    assert!(caught_up.snapshot_index > commit, "{caught_up:?}");
    assert_eq!(cluster.read(lagging, Consistency::Linearizable).await, 410);
    // Entries covered by the installed snapshot were never applied one by one there.
    let log = cluster.log.lock().unwrap().clone();
    let applied_there = log.keys().filter(|(node, _)| *node == lagging).count() as u64;
    assert!(
        applied_there < 410,
        "applied {applied_there} entries one by one"
    );
    // The lagging node keeps up with new writes afterwards.
    assert_eq!(cluster.propose(5000, 1, 1).await, 411);
    let commit = cluster.node(leader).metrics().commit_index;
    cluster.wait_applied(lagging, commit).await;
    cluster.assert_nothing_applied_twice();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_is_added_catches_up_and_is_promoted() {
    let mut cluster = Cluster::new(&[1, 2, 3], policy(100_000), true).await;
    cluster.increments(1, 20).await;
    let learner = cluster.start(4).await;
    assert_eq!(learner.metrics().role, Role::Learner);
    let leader = cluster.leader().await;
    leader.add_learner(4).await.unwrap();
    let commit = leader.metrics().commit_index;
    cluster.wait_applied(4, commit).await;
    assert_eq!(cluster.read(4, Consistency::Stale).await, 20);
    // Promotion, retried while the learner is still catching up.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match cluster.leader().await.promote_learner(4).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "promotion refused; retrying");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("promotion failed: {e}"),
        }
    }
    let metrics = learner
        .wait_for(DEADLINE, |m| {
            m.membership.is_voter(4) && m.role != Role::Learner
        })
        .await
        .unwrap();
    assert_eq!(metrics.membership.voters, vec![1, 2, 3, 4]);
    assert_eq!(cluster.propose(77, 1, 1).await, 21);
    assert_eq!(cluster.read(4, Consistency::Linearizable).await, 21);
    // Remove it again.
    cluster.leader().await.remove_node(4).await.unwrap();
    cluster
        .leader()
        .await
        .wait_for(DEADLINE, |m| !m.membership.contains(4))
        .await
        .unwrap();
    // A fifth node joins as a voter in one call (learner, catch-up, promotion).
    cluster.start(5).await;
    cluster.leader().await.add_voter(5, DEADLINE).await.unwrap();
    let metrics = cluster
        .node(5)
        .wait_for(DEADLINE, |m| m.membership.is_voter(5))
        .await
        .unwrap();
    assert_eq!(metrics.membership.voters, vec![1, 2, 3, 5]);
    assert_eq!(cluster.propose(78, 1, 1).await, 22);
    cluster.assert_nothing_applied_twice();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_is_transferred() {
    let cluster = Cluster::new(&[1, 2, 3], policy(100_000), true).await;
    assert_eq!(cluster.propose(1, 1, 1).await, 1);
    let leader = cluster.leader().await;
    let target = (1..=3).find(|&id| id != leader.id()).unwrap();
    let commit = leader.metrics().commit_index;
    cluster.wait_applied(target, commit).await;
    leader.transfer_leader(target).await.unwrap();
    cluster
        .node(target)
        .wait_for(DEADLINE, |m| m.is_leader())
        .await
        .unwrap();
    assert_eq!(cluster.leader().await.id(), target);
    assert_eq!(cluster.propose(1, 2, 1).await, 2);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_applies_once() {
    let cluster = Cluster::new(&[1, 2, 3], policy(100_000), true).await;
    assert_eq!(cluster.propose(7, 1, 5).await, 5);
    // The same (client, seq) again: the first response, no second increment.
    assert_eq!(cluster.propose(7, 1, 5).await, 5);
    assert_eq!(cluster.propose(7, 2, 1).await, 6);
    let leader = cluster.leader().await;
    assert_eq!(
        cluster.read(leader.id(), Consistency::Linearizable).await,
        6
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_snapshot_compacts_and_an_in_memory_state_machine_restores_from_it() {
    let mut cluster = Cluster::new(&[1], policy(100_000), false).await;
    cluster.increments(1, 200).await;
    assert_eq!(cluster.propose(4242, 1, 0).await, 200);
    let node = cluster.node(1).clone();
    let before = node.metrics();
    let index = node.snapshot().await.unwrap();
    assert!(index >= 200, "snapshot at {index}");
    let after = node
        .wait_for(DEADLINE, |m| m.snapshot_index == index)
        .await
        .unwrap();
    assert!(after.snapshot_index > before.snapshot_index);
    let snapshots = std::fs::read_dir(cluster.dir(1).join("snapshots"))
        .unwrap()
        .count();
    assert!(snapshots >= 1);
    cluster.stop(1).await;
    // The in-memory counter starts at 0: it is restored from the snapshot, then the entries
    // after it are re-applied.
    cluster.start(1).await;
    assert_eq!(cluster.read(1, Consistency::Linearizable).await, 200);
    assert_eq!(cluster.propose(9999, 1, 1).await, 201);
    // A client's retry is still recognised after the restore.
    assert_eq!(cluster.propose(4242, 1, 0).await, 200);
    assert!(cluster.dir(1).join("wal").is_dir());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_after_shutdown_fail_cleanly() {
    let mut cluster = Cluster::new(&[1], policy(100_000), true).await;
    assert_eq!(cluster.propose(1, 1, 1).await, 1);
    let node = cluster.node(1).clone();
    cluster.stop(1).await;
    assert!(matches!(node.propose([1]).await, Err(Error::Shutdown)));
    assert!(matches!(
        node.read(Vec::new(), Consistency::Stale).await,
        Err(Error::Shutdown)
    ));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = LocalNetwork::new();
    let counter = Counter::open(1, None, ApplyLog::default());
    let refused = NodeBuilder::new(1, dir.path())
        .start(counter, net.transport(1))
        .await;
    assert!(matches!(refused, Err(Error::Config(_))), "{refused:?}");
    let counter = Counter::open(0, None, ApplyLog::default());
    let refused = NodeBuilder::new(0, dir.path())
        .voters([1])
        .start(counter, net.transport(0))
        .await;
    assert!(matches!(refused, Err(Error::Config(_))), "{refused:?}");
    // Wall-clock timing is converted to ticks and validated.
    let builder = NodeBuilder::new(1, dir.path())
        .voters([1])
        .tick(Duration::from_millis(10))
        .heartbeat_interval(Duration::from_millis(50))
        .election_timeout(Duration::from_millis(500), Duration::from_millis(1000))
        .lease(Duration::from_millis(300));
    let raft = builder.resolved_raft_config().unwrap();
    assert_eq!(
        (
            raft.heartbeat_ticks,
            raft.election_ticks_min,
            raft.election_ticks_max,
            raft.lease_ticks
        ),
        (5, 50, 100, 30)
    );
    let too_long_lease = builder.lease(Duration::from_millis(450));
    assert!(matches!(too_long_lease.validate(), Err(Error::Config(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_state_machine_stops_the_node_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let net = LocalNetwork::new();
    let mut counter = Counter::open(1, None, ApplyLog::default());
    counter.poison = Some(13);
    let builder = NodeBuilder::new(1, dir.path())
        .voters([1])
        .tick(Duration::from_millis(5));
    let node = net.start(builder, counter).await.unwrap();
    node.wait_for(DEADLINE, Metrics::is_leader).await.unwrap();
    assert_eq!(value(&node.propose(1i64.to_le_bytes()).await.unwrap()), 1);
    match node.propose(13i64.to_le_bytes()).await {
        Err(Error::Stopped { reason }) => assert!(reason.contains("cannot apply 13"), "{reason}"),
        other => panic!("expected Stopped, got {other:?}"),
    }
    let metrics = node
        .wait_for(DEADLINE, |m| m.stopped.is_some())
        .await
        .unwrap();
    assert!(metrics.stopped.unwrap().contains("cannot apply 13"));
    assert!(matches!(
        node.propose(1i64.to_le_bytes()).await,
        Err(Error::Stopped { .. })
    ));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_steps_down_and_rejoins() {
    let cluster = Cluster::new(&[1, 2, 3], policy(100_000), true).await;
    assert_eq!(cluster.propose(1, 1, 1).await, 1);
    let old = cluster.leader().await;
    cluster.net.isolate(old.id());
    // Check-quorum: the cut-off leader steps down; the majority elects another.
    old.wait_for(DEADLINE, |m| !m.is_leader()).await.unwrap();
    let others: Vec<u64> = (1..=3).filter(|&id| id != old.id()).collect();
    let new = cluster
        .node(others[0])
        .wait_for(DEADLINE, |m| m.leader.is_some_and(|l| l != old.id()))
        .await
        .unwrap()
        .leader
        .unwrap();
    let new = cluster.node(new).clone();
    let mut answer = Err(Error::Busy);
    for _ in 0..100 {
        answer = new.propose_with_session(1, 2, 1i64.to_le_bytes()).await;
        if answer.as_ref().is_ok_and(|r| value(r) == 2) {
            break;
        }
    }
    assert_eq!(value(&answer.unwrap()), 2);
    // A read on the cut-off node cannot be served linearizably.
    assert!(
        old.read(Vec::new(), Consistency::Linearizable)
            .await
            .is_err()
    );
    cluster.net.heal(old.id());
    let commit = new.metrics().commit_index;
    cluster.wait_applied(old.id(), commit).await;
    assert_eq!(cluster.read(old.id(), Consistency::Linearizable).await, 2);
    cluster.assert_nothing_applied_twice();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclean_stop_loses_no_acknowledged_write() {
    let mut cluster = Cluster::new(&[1, 2, 3], policy(16), true).await;
    cluster.increments(1, 40).await;
    for id in 1..=3 {
        let node = cluster.nodes.remove(&id).unwrap();
        cluster.net.unregister(id);
        node.crash().await;
    }
    for id in 1..=3 {
        cluster.start(id).await;
    }
    let commit = cluster.leader().await.metrics().commit_index;
    for id in 1..=3 {
        cluster.wait_applied(id, commit).await;
        assert_eq!(cluster.read(id, Consistency::Stale).await, 40);
    }
    assert_eq!(cluster.propose(500, 1, 1).await, 41);
    cluster.assert_nothing_applied_twice();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_share_wal_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let net = LocalNetwork::new();
    let counter = Counter::open(1, None, ApplyLog::default());
    let builder = NodeBuilder::new(1, dir.path())
        .voters([1])
        .tick(Duration::from_millis(5));
    let node = net.start(builder, counter).await.unwrap();
    node.wait_for(DEADLINE, Metrics::is_leader).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            node.propose(1i64.to_le_bytes()).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    node.shutdown().await.unwrap();
    let metrics = node.metrics();
    assert!(metrics.applied_index >= 500, "{metrics:?}");
    // Group commit: 500 concurrent proposals never cost one fdatasync each.
    assert!(
        metrics.wal_syncs < 250,
        "{} syncs for 500 entries",
        metrics.wal_syncs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_over_its_bound_is_snapshotted_and_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let net = LocalNetwork::new();
    let counter = Counter::open(1, None, ApplyLog::default());
    let builder = NodeBuilder::new(1, dir.path())
        .voters([1])
        .tick(Duration::from_millis(5))
        .snapshot_policy(policy(u64::MAX))
        .wal_segment_bytes(8192)
        .wal_max_bytes(32 * 1024);
    let node = net.start(builder, counter).await.unwrap();
    node.wait_for(DEADLINE, Metrics::is_leader).await.unwrap();
    for _ in 0..10 {
        let mut tasks = Vec::new();
        for _ in 0..60 {
            let node = node.clone();
            tasks.push(tokio::spawn(async move { node.propose([7u8; 200]).await }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }
    let metrics = node
        .wait_for(DEADLINE, |m| {
            m.snapshot_index > 0 && m.wal_bytes <= 32 * 1024 + 2 * 8192
        })
        .await
        .unwrap();
    assert!(metrics.last_index >= 600, "{metrics:?}");
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_network_loses_no_write() {
    let mut cluster = Cluster::new(&[1, 2, 3], policy(40), true).await;
    cluster.leader().await;
    cluster.net.drop_every(7);
    let leader = cluster.leader().await.id();
    let lagging = (1..=3).find(|&id| id != leader).unwrap();
    cluster.stop(lagging).await;
    for round in 0..4 {
        cluster.increments(100 * round, 30).await;
    }
    // The stopped node catches up (through a snapshot sent in lossy chunks).
    cluster.start(lagging).await;
    let mut total = 0;
    for id in 1..=3 {
        total = cluster.read(id, Consistency::Linearizable).await;
        assert_eq!(total, 120, "node {id}");
    }
    cluster.net.drop_every(0);
    assert_eq!(cluster.propose(9000, 1, 1).await, total + 1);
    cluster.assert_nothing_applied_twice();
    cluster.shutdown().await;
}

#[test]
fn waiters_get_the_response_of_their_own_entry() {
    use super::apply::{Waiter, apply_entries};
    use crate::core::{Entry, EntryKind, Proposal};
    let entry = |index, kind, data: bytes::Bytes| Entry {
        index,
        term: 1,
        kind,
        data,
    };
    let entries = vec![
        entry(1, EntryKind::Blank, bytes::Bytes::new()),
        entry(
            2,
            EntryKind::Normal,
            Proposal::encode(0, 0, &2i64.to_le_bytes()),
        ),
        entry(3, EntryKind::Config, bytes::Bytes::new()),
        entry(
            4,
            EntryKind::Normal,
            Proposal::encode(0, 0, &3i64.to_le_bytes()),
        ),
    ];
    let (two, two_rx) = tokio::sync::oneshot::channel();
    let (three, three_rx) = tokio::sync::oneshot::channel();
    let (four, four_rx) = tokio::sync::oneshot::channel();
    let waiters = vec![
        (2, Waiter::Propose(two)),
        (3, Waiter::Membership(three)),
        (4, Waiter::Propose(four)),
    ];
    let log = ApplyLog::default();
    let mut counter = Counter::open(1, None, Arc::clone(&log));
    let last = apply_entries(&mut counter, &entries, waiters).unwrap();
    assert_eq!(last, Some(4));
    assert_eq!(value(&two_rx.blocking_recv().unwrap().unwrap()), 2);
    assert_eq!(three_rx.blocking_recv().unwrap().unwrap(), 3);
    assert_eq!(value(&four_rx.blocking_recv().unwrap().unwrap()), 5);
    // Only the two normal entries reached the state machine.
    let mut applied: Vec<u64> = log.lock().unwrap().keys().map(|(_, i)| *i).collect();
    applied.sort_unstable();
    assert_eq!(applied, vec![2, 4]);
    assert_eq!(counter.applied_index(), 4);
}
