//! [`RaftNode`]: the request handler's [`NodeApi`] over the engine driver's [`NodeHandle`]
//! and the node's [`PeerTransport`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_engine::core::{self, MembershipError, Role};
use shoal_engine::driver::{Consistency, Error, Metrics, NodeHandle};
use shoal_net::{FaultCommand, PeerTransport, ReadConsistency};
use tracing::{info, warn};

use crate::api::{MemberInfo, NodeRole, NodeStatus};
use crate::config::{ClusterConfig, resolve};
use crate::server::{NodeApi, NodeError};

use super::transport::PeerActivity;

/// How long a leader keeps trying to promote a learner it added (the learner's process may
/// be started well after `member add`).
const PROMOTION_TIMEOUT: Duration = Duration::from_secs(600);

/// How often the node looks for members it has no address for.
const ADDRESS_BOOK_INTERVAL: Duration = Duration::from_millis(500);

/// A Raft node as the request handler sees it.
#[derive(Debug, Clone)]
pub struct RaftNode {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handle: NodeHandle,
    peers: Arc<PeerTransport>,
    /// Peer addresses (`host:port`) by node id: cluster.toml's, plus members added since.
    addresses: Mutex<BTreeMap<u64, String>>,
    /// cluster.toml, re-read when a member appears whose address is unknown.
    cluster_file: Option<PathBuf>,
    /// Whether fault commands reach the transport's hook.
    fault_hook: bool,
    /// Failover: see [`RaftNode::with_failover`].
    failover: Option<Failover>,
}

/// How a follower answers a client while its leader has gone silent.
#[derive(Debug)]
struct Failover {
    activity: Arc<PeerActivity>,
    /// Silence after which the known leader is presumed gone.
    leader_silence: Duration,
    /// How long a request waits for a new leader (below the client's attempt timeout).
    wait: Duration,
}

/// Maps a driver error to what the request handler answers.
pub fn node_error(error: Error) -> NodeError {
    match error {
        Error::NotLeader { leader } => NodeError::NotLeader { leader },
        Error::ProposalTooLarge { .. } => NodeError::Invalid(error.to_string()),
        Error::Raft(core::Error::Membership(MembershipError::NotMember { id })) => {
            NodeError::NotFound(format!("node {id} is not a member"))
        }
        Error::Raft(core::Error::Membership(MembershipError::AlreadyMember { id })) => {
            NodeError::Conflict(format!("node {id} is already a member"))
        }
        Error::Raft(core::Error::Membership(MembershipError::InvalidId)) => {
            NodeError::Invalid("node id 0 is reserved".into())
        }
        ref retryable if retryable.is_retryable() => NodeError::Unavailable(error.to_string()),
        Error::Raft(_) => NodeError::Conflict(error.to_string()),
        Error::Shutdown
        | Error::Stopped { .. }
        | Error::Storage(_)
        | Error::StateMachine(_)
        | Error::Config(_)
        | Error::Recovery(_)
        | Error::Io { .. } => NodeError::Failed(error.to_string()),
        other => NodeError::Unavailable(other.to_string()),
    }
}

fn consistency(consistency: ReadConsistency) -> Consistency {
    match consistency {
        ReadConsistency::Linearizable => Consistency::Linearizable,
        ReadConsistency::Lease => Consistency::Lease,
        ReadConsistency::Stale => Consistency::Stale,
    }
}

/// The role `shoal status` shows for `metrics`.
pub fn role(metrics: &Metrics) -> NodeRole {
    match metrics.role {
        Role::Leader => NodeRole::Leader,
        Role::PreCandidate | Role::Candidate => NodeRole::Candidate,
        Role::Learner => NodeRole::Learner,
        Role::Follower if metrics.membership.is_voter(metrics.id) => NodeRole::Follower,
        Role::Follower => NodeRole::Learner,
    }
}

/// The status row of `metrics`.
pub fn status(metrics: &Metrics) -> NodeStatus {
    NodeStatus {
        id: metrics.id,
        role: role(metrics),
        term: metrics.term,
        leader: metrics.leader,
        commit_index: metrics.commit_index,
        applied_index: metrics.applied_index,
        last_index: metrics.last_index,
        snapshot_index: metrics.snapshot_index,
        wal_bytes: metrics.wal_bytes,
    }
}

impl RaftNode {
    /// A node over `handle` and `peers`. `cluster` seeds the address book (every member but
    /// this node is set as a peer); `cluster_file` is re-read when a member without a known
    /// address appears (added through another node).
    pub fn new(
        handle: NodeHandle,
        peers: Arc<PeerTransport>,
        cluster: &ClusterConfig,
        cluster_file: Option<PathBuf>,
        fault_hook: bool,
    ) -> Self {
        let node = Self {
            inner: Arc::new(Inner {
                handle,
                peers,
                addresses: Mutex::new(BTreeMap::new()),
                cluster_file,
                fault_hook,
                failover: None,
            }),
        };
        for member in &cluster.members {
            node.learn_address(member.id, &member.addr);
        }
        node
    }

    /// Makes a follower whose leader went silent (nothing heard from it for
    /// `leader_silence`, per `activity`) hold a client's request for up to `wait` while a new
    /// leader is elected, instead of redirecting the client to a dead node: the request is
    /// then served here (this node won) or redirected to the new leader. Must be called
    /// before the node is shared.
    pub fn with_failover(
        mut self,
        activity: Arc<PeerActivity>,
        leader_silence: Duration,
        wait: Duration,
    ) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.failover = Some(Failover {
                activity,
                leader_silence,
                wait,
            });
        }
        self
    }

    /// After `NotLeader { leader }` from the driver: when that leader is silent (or unknown),
    /// waits for another one. `Ok(true)`: this node now leads (try again here);
    /// `Err(NotLeader)`: redirect; `Err(Unavailable)`: no leader in time.
    async fn await_new_leader(&self, leader: Option<u64>) -> Result<bool, NodeError> {
        let me = self.node_id();
        let Some(failover) = &self.inner.failover else {
            return Err(NodeError::NotLeader { leader });
        };
        let silent = |id: u64| {
            failover
                .activity
                .silence(id)
                .is_none_or(|quiet| quiet >= failover.leader_silence)
        };
        if leader.is_some_and(|l| l == me || !silent(l)) {
            return Err(NodeError::NotLeader { leader });
        }
        let found = self
            .inner
            .handle
            .wait_for(failover.wait, |m| {
                m.leader.is_some_and(|l| l == me || !silent(l))
            })
            .await;
        match found {
            Ok(metrics) if metrics.leader == Some(me) => Ok(true),
            Ok(metrics) => Err(NodeError::NotLeader {
                leader: metrics.leader,
            }),
            Err(_) => Err(NodeError::Unavailable(format!(
                "node {me} knows no live leader (an election may be under way)"
            ))),
        }
    }

    /// The driver's handle.
    pub fn handle(&self) -> &NodeHandle {
        &self.inner.handle
    }

    fn addresses(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, String>> {
        self.inner
            .addresses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records `addr` for `id` and tells the transport. Returns false (and logs) when the
    /// address does not resolve.
    fn learn_address(&self, id: u64, addr: &str) -> bool {
        let resolved = resolve(addr).ok().and_then(|a| a.into_iter().next());
        let Some(socket) = resolved else {
            warn!(peer = id, addr, "cannot resolve the peer's address");
            return false;
        };
        self.addresses().insert(id, addr.to_owned());
        if id != self.inner.handle.id() {
            self.inner.peers.set_peer(id, socket);
        }
        true
    }

    /// Learns the addresses of members that appeared since (re-reading cluster.toml).
    fn refresh_addresses(&self) {
        let membership = self.inner.handle.metrics().membership;
        let unknown: Vec<u64> = {
            let addresses = self.addresses();
            membership
                .members()
                .filter(|id| !addresses.contains_key(id))
                .collect()
        };
        if unknown.is_empty() {
            return;
        }
        let Some(path) = &self.inner.cluster_file else {
            return;
        };
        match ClusterConfig::load(path) {
            Ok(cluster) => {
                for id in unknown {
                    if let Some(member) = cluster.member(id) {
                        info!(peer = id, addr = %member.addr, "learned a new member's address");
                        self.learn_address(id, &member.addr);
                    }
                }
            }
            Err(error) => warn!(%error, "cannot re-read the cluster configuration"),
        }
    }

    /// Keeps the address book in step with the membership until the node stops.
    pub async fn watch_membership(self) {
        loop {
            tokio::time::sleep(ADDRESS_BOOK_INTERVAL).await;
            if self.inner.handle.metrics().stopped.is_some() {
                return;
            }
            self.refresh_addresses();
        }
    }
}

impl NodeApi for RaftNode {
    fn node_id(&self) -> u64 {
        self.inner.handle.id()
    }

    async fn propose(
        &self,
        client_id: u64,
        seq: u64,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, NodeError> {
        let first = self
            .inner
            .handle
            .propose_with_session(client_id, seq, &payload)
            .await;
        match first {
            Err(Error::NotLeader { leader }) => {
                self.await_new_leader(leader).await?;
                // This node won the election: the same (client_id, seq) applies once.
                self.inner
                    .handle
                    .propose_with_session(client_id, seq, payload)
                    .await
                    .map_err(node_error)
            }
            other => other.map_err(node_error),
        }
    }

    async fn read(
        &self,
        query: Vec<u8>,
        read_consistency: ReadConsistency,
    ) -> Result<Vec<u8>, NodeError> {
        // The deliberate bug `shoal chaos` must catch (test-only feature): every read is
        // served from this node's local state.
        #[cfg(feature = "buggy-stale-reads")]
        let read_consistency = {
            let _ = read_consistency;
            ReadConsistency::Stale
        };
        let first = self
            .inner
            .handle
            .read(query.clone(), consistency(read_consistency))
            .await;
        match first {
            Err(Error::NotLeader { leader }) => {
                self.await_new_leader(leader).await?;
                self.inner
                    .handle
                    .read(query, consistency(read_consistency))
                    .await
                    .map_err(node_error)
            }
            other => other.map_err(node_error),
        }
    }

    fn status(&self) -> NodeStatus {
        status(&self.inner.handle.metrics())
    }

    fn members(&self) -> Vec<MemberInfo> {
        let membership = self.inner.handle.metrics().membership;
        let addresses = self.addresses();
        membership
            .voters
            .iter()
            .map(|id| (*id, true))
            .chain(membership.learners.iter().map(|id| (*id, false)))
            .map(|(id, voter)| MemberInfo {
                id,
                addr: addresses.get(&id).cloned(),
                voter,
            })
            .collect()
    }

    async fn add_member(&self, id: u64, addr: String) -> Result<(), NodeError> {
        let metrics = self.inner.handle.metrics();
        if !metrics.is_leader() {
            return Err(NodeError::NotLeader {
                leader: metrics.leader,
            });
        }
        if metrics.membership.is_voter(id) {
            return Err(NodeError::Conflict(format!(
                "node {id} is already a member"
            )));
        }
        if !self.learn_address(id, &addr) {
            return Err(NodeError::Invalid(format!(
                "the address {addr:?} of node {id} does not resolve"
            )));
        }
        if !metrics.membership.is_learner(id) {
            self.inner
                .handle
                .add_learner(id)
                .await
                .map_err(node_error)?;
            info!(peer = id, %addr, "learner added");
        }
        // Promotion waits for the learner to catch up, which may take long (its process may
        // not even be started yet): the client gets its answer now, and `status` shows the
        // node as a learner until it votes.
        let handle = self.inner.handle.clone();
        let peers = self.inner.peers.clone();
        tokio::spawn(async move {
            // The engine judges "caught up" by the learner's match index, which is 0 for a
            // node that never answered: wait until it is running and connected first.
            let deadline = tokio::time::Instant::now() + PROMOTION_TIMEOUT;
            while !peers.is_connected(id) {
                if tokio::time::Instant::now() >= deadline || !handle.metrics().is_leader() {
                    warn!(
                        peer = id,
                        "learner not promoted: not connected, or leadership lost"
                    );
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match handle.add_voter(id, left).await {
                Ok(_) => info!(peer = id, "learner promoted to voter"),
                Err(error) => warn!(peer = id, %error, "learner not promoted"),
            }
        });
        Ok(())
    }

    async fn remove_member(&self, id: u64) -> Result<(), NodeError> {
        self.inner
            .handle
            .remove_node(id)
            .await
            .map_err(node_error)?;
        info!(peer = id, "member removed");
        Ok(())
    }

    async fn transfer_leader(&self, to: u64) -> Result<(), NodeError> {
        let metrics = self.inner.handle.metrics();
        if metrics.is_leader() && !metrics.membership.is_voter(to) {
            return Err(NodeError::NotFound(format!("node {to} is not a voter")));
        }
        self.inner
            .handle
            .transfer_leader(to)
            .await
            .map_err(node_error)
    }

    async fn snapshot(&self) -> Result<u64, NodeError> {
        self.inner.handle.snapshot().await.map_err(node_error)
    }

    fn fault(&self, command: &FaultCommand) -> Result<(), NodeError> {
        if !self.inner.fault_hook || !self.inner.peers.fault_hook().apply(command) {
            return Err(NodeError::Invalid(format!(
                "the fault hook of node {} is disabled",
                self.node_id()
            )));
        }
        info!(?command, "fault hook changed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_engine::core::Membership;

    fn metrics(id: u64, role: Role, voters: &[u64], learners: &[u64]) -> Metrics {
        Metrics {
            id,
            role,
            term: 7,
            leader: Some(1),
            commit_index: 10,
            applied_index: 9,
            last_index: 11,
            snapshot_index: 5,
            wal_bytes: 4096,
            wal_syncs: 3,
            membership: Membership {
                voters: voters.to_vec(),
                learners: learners.to_vec(),
            },
            stopped: None,
        }
    }

    #[test]
    fn roles_as_status_shows_them() {
        assert_eq!(
            role(&metrics(1, Role::Leader, &[1, 2, 3], &[])),
            NodeRole::Leader
        );
        assert_eq!(
            role(&metrics(2, Role::Follower, &[1, 2, 3], &[])),
            NodeRole::Follower
        );
        assert_eq!(
            role(&metrics(2, Role::PreCandidate, &[1, 2], &[])),
            NodeRole::Candidate
        );
        assert_eq!(
            role(&metrics(2, Role::Candidate, &[1, 2], &[])),
            NodeRole::Candidate
        );
        assert_eq!(
            role(&metrics(4, Role::Learner, &[1, 2, 3], &[4])),
            NodeRole::Learner
        );
        // A follower outside the voters (a learner, or removed) shows as a learner.
        assert_eq!(
            role(&metrics(4, Role::Follower, &[1, 2, 3], &[4])),
            NodeRole::Learner
        );
    }

    #[test]
    fn status_carries_every_index() {
        let status = status(&metrics(2, Role::Follower, &[1, 2, 3], &[]));
        assert_eq!(
            (
                status.term,
                status.leader,
                status.commit_index,
                status.applied_index,
                status.last_index,
                status.snapshot_index,
                status.wal_bytes
            ),
            (7, Some(1), 10, 9, 11, 5, 4096)
        );
    }

    #[test]
    fn driver_errors_map_to_what_clients_act_on() {
        assert_eq!(
            node_error(Error::NotLeader { leader: Some(3) }),
            NodeError::NotLeader { leader: Some(3) }
        );
        for retryable in [
            Error::Busy,
            Error::Timeout(Duration::from_secs(5)),
            Error::Dropped { index: 4 },
            Error::Indeterminate { index: 4 },
            Error::ReadAborted,
        ] {
            assert!(matches!(node_error(retryable), NodeError::Unavailable(_)));
        }
        assert!(matches!(
            node_error(Error::Raft(core::Error::Membership(
                MembershipError::NotMember { id: 9 }
            ))),
            NodeError::NotFound(_)
        ));
        assert!(matches!(
            node_error(Error::Raft(core::Error::Membership(
                MembershipError::AlreadyMember { id: 2 }
            ))),
            NodeError::Conflict(_)
        ));
        assert!(matches!(
            node_error(Error::ProposalTooLarge { bytes: 9, max: 1 }),
            NodeError::Invalid(_)
        ));
        assert!(matches!(node_error(Error::Shutdown), NodeError::Failed(_)));
        assert!(matches!(
            node_error(Error::Stopped {
                reason: "poisoned".into()
            }),
            NodeError::Failed(_)
        ));
    }
}
