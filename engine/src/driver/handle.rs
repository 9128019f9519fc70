//! [`NodeHandle`]: what an embedder holds to use a running node.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::core::{MembershipChange, Message, NodeId, Proposal};

use super::{Error, Metrics};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Linearizable through ReadIndex: leadership is confirmed by a heartbeat round (shared by
    /// every read waiting at the time) and the read is served once the state machine has
    /// applied the leader's commit index. Works on followers too (the request is forwarded).
    #[default]
    Linearizable,
    /// Served by a leader holding a valid lease without a round trip (falls back to
    /// ReadIndex otherwise). Linearizable as long as clocks drift less than the configured
    /// margin.
    Lease,
    /// Served at once from this node's state machine: may miss recent writes.
    Stale,
}

/// A reply channel from the event loop or the apply thread to a waiting caller.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// What a handle asks of the event loop.
pub(crate) enum Request {
    Propose {
        data: Bytes,
        reply: Reply<Vec<u8>>,
    },
    Read {
        query: Vec<u8>,
        consistency: Consistency,
        reply: Reply<Vec<u8>>,
    },
    ChangeMembership {
        change: MembershipChange,
        reply: Reply<u64>,
    },
    TransferLeader {
        target: NodeId,
        reply: Reply<()>,
    },
    Snapshot {
        reply: Reply<u64>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// Tests: stop like a crash (no flush, no final hard state save).
    #[cfg(test)]
    Crash {
        reply: oneshot::Sender<()>,
    },
}

fn is_lagging(error: &Error) -> bool {
    matches!(
        error,
        Error::Raft(crate::core::Error::LearnerLagging { .. })
    )
}

/// The text of [`Metrics::stopped`] after a clean shutdown.
pub(crate) const SHUT_DOWN: &str = "shut down";

/// A handle to a running node; cheap to clone and share between tasks.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: NodeId,
    requests: mpsc::Sender<Request>,
    peers: mpsc::Sender<Message>,
    metrics: watch::Receiver<Metrics>,
    request_timeout: Duration,
    max_proposal_bytes: usize,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Request::Propose { .. } => "Propose",
            Request::Read { .. } => "Read",
            Request::ChangeMembership { .. } => "ChangeMembership",
            Request::TransferLeader { .. } => "TransferLeader",
            Request::Snapshot { .. } => "Snapshot",
            Request::Shutdown { .. } => "Shutdown",
            #[cfg(test)]
            Request::Crash { .. } => "Crash",
        };
        f.write_str(name)
    }
}

impl NodeHandle {
    pub(crate) fn new(
        id: NodeId,
        requests: mpsc::Sender<Request>,
        peers: mpsc::Sender<Message>,
        metrics: watch::Receiver<Metrics>,
        request_timeout: Duration,
        max_proposal_bytes: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                id,
                requests,
                peers,
                metrics,
                request_timeout,
                max_proposal_bytes,
            }),
        }
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// Proposes an anonymous command (never deduplicated) and returns the state machine's
    /// response once it is committed and applied on this node. Fails with
    /// [`Error::NotLeader`] on a follower.
    pub async fn propose(&self, payload: impl AsRef<[u8]>) -> Result<Vec<u8>, Error> {
        self.propose_with_session(0, 0, payload).await
    }

    /// Proposes a command of client `client_id` with sequence number `seq`. Retrying after a
    /// timeout, a failover or a retryable error with the same `(client_id, seq)` is safe when
    /// the state machine deduplicates through [`crate::ClientSessions`]: the command applies
    /// once and the retry gets the first response.
    #[tracing::instrument(level = "debug", skip(self, payload), fields(node = self.inner.id))]
    pub async fn propose_with_session(
        &self,
        client_id: u64,
        seq: u64,
        payload: impl AsRef<[u8]>,
    ) -> Result<Vec<u8>, Error> {
        let payload = payload.as_ref();
        let max = self.inner.max_proposal_bytes;
        if payload.len() > max {
            return Err(Error::ProposalTooLarge {
                bytes: payload.len(),
                max,
            });
        }
        let data = Proposal::encode(client_id, seq, payload);
        self.call(|reply| Request::Propose { data, reply }).await
    }

    /// Runs a read-only query against the state machine with the given consistency.
    #[tracing::instrument(level = "debug", skip(self, query), fields(node = self.inner.id))]
    pub async fn read(
        &self,
        query: impl Into<Vec<u8>>,
        consistency: Consistency,
    ) -> Result<Vec<u8>, Error> {
        let query = query.into();
        self.call(|reply| Request::Read {
            query,
            consistency,
            reply,
        })
        .await
    }

    /// Adds `id` as a learner (leader only); returns once the change is applied here.
    pub async fn add_learner(&self, id: NodeId) -> Result<u64, Error> {
        self.change_membership(MembershipChange::AddLearner(id))
            .await
    }

    /// Promotes the caught-up learner `id` to voter (leader only).
    pub async fn promote_learner(&self, id: NodeId) -> Result<u64, Error> {
        self.change_membership(MembershipChange::PromoteLearner(id))
            .await
    }

    /// Adds `id` as a voter the safe way: as a learner first, promoted once it has caught up
    /// (retrying while it lags, at most `timeout`). Returns the promotion's index, or 0 when
    /// `id` already votes. Leader only.
    pub async fn add_voter(&self, id: NodeId, timeout: Duration) -> Result<u64, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let membership = self.metrics().membership;
        if membership.is_voter(id) {
            return Ok(0);
        }
        if !membership.is_learner(id) {
            self.add_learner(id).await?;
        }
        loop {
            match self.promote_learner(id).await {
                Err(e @ Error::Raft(_)) if e.is_retryable() || is_lagging(&e) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                    // Back off while the learner catches up.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// Removes the voter or learner `id` (leader only; the leader may remove itself).
    pub async fn remove_node(&self, id: NodeId) -> Result<u64, Error> {
        self.change_membership(MembershipChange::RemoveNode(id))
            .await
    }

    /// Proposes a single-server membership change and returns its log index once applied on
    /// this node.
    #[tracing::instrument(skip(self), fields(node = self.inner.id))]
    pub async fn change_membership(&self, change: MembershipChange) -> Result<u64, Error> {
        self.call(|reply| Request::ChangeMembership { change, reply })
            .await
    }

    /// Starts handing leadership to `target` (leader only). Returns once the transfer has
    /// started; watch [`NodeHandle::wait_for`] for `leader == Some(target)`.
    #[tracing::instrument(skip(self), fields(node = self.inner.id))]
    pub async fn transfer_leader(&self, target: NodeId) -> Result<(), Error> {
        self.call(|reply| Request::TransferLeader { target, reply })
            .await
    }

    /// Takes a snapshot now and compacts the log; returns the snapshot's index.
    #[tracing::instrument(skip(self), fields(node = self.inner.id))]
    pub async fn snapshot(&self) -> Result<u64, Error> {
        self.call(|reply| Request::Snapshot { reply }).await
    }

    /// Pushes a message from a peer into the node. Never blocks: when the node's inbound
    /// queue is full the message is dropped, as a lossy network would.
    pub fn deliver(&self, message: Message) {
        if let Err(error) = self.inner.peers.try_send(message) {
            tracing::debug!(node = self.inner.id, %error, "inbound message dropped");
        }
    }

    /// The node's current status.
    pub fn metrics(&self) -> Metrics {
        self.inner.metrics.borrow().clone()
    }

    /// Waits until the node's status satisfies `condition`, at most `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&Metrics) -> bool,
    ) -> Result<Metrics, Error> {
        let mut metrics = self.inner.metrics.clone();
        match tokio::time::timeout(timeout, metrics.wait_for(|m| condition(m))).await {
            Ok(Ok(found)) => Ok(found.clone()),
            Ok(Err(_)) => Err(self.stopped_error()),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    /// Waits until this node knows a leader (at most `timeout`) and returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, Error> {
        let metrics = self.wait_for(timeout, |m| m.leader.is_some()).await?;
        metrics.leader.ok_or(Error::NotLeader { leader: None })
    }

    /// Stops the node cleanly: in-flight WAL writes are flushed, the commit index saved,
    /// committed entries handed to the apply thread applied, the apply thread joined and the
    /// WAL closed. Requests still waiting fail with [`Error::Shutdown`] (a proposal among them
    /// may still have been committed). Returns at once when the node is already stopped.
    #[tracing::instrument(skip(self), fields(node = self.inner.id))]
    pub async fn shutdown(&self) -> Result<(), Error> {
        let (reply, done) = oneshot::channel();
        if self
            .inner
            .requests
            .send(Request::Shutdown { reply })
            .await
            .is_err()
        {
            return Ok(());
        }
        let _ = done.await;
        // The loop sets `stopped` before it answers; wait for it to finish closing.
        let _ = self
            .wait_for(Duration::from_secs(30), |m| m.stopped.is_some())
            .await;
        Ok(())
    }

    /// Tests: stops the node the way a crash would, without flushing or saving the commit
    /// index (what the apply thread was given is still applied).
    #[cfg(test)]
    pub(crate) async fn crash(&self) {
        let (reply, done) = oneshot::channel();
        if self
            .inner
            .requests
            .send(Request::Crash { reply })
            .await
            .is_ok()
        {
            let _ = done.await;
        }
    }

    pub(crate) fn peer_sender(&self) -> mpsc::Sender<Message> {
        self.inner.peers.clone()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, Error> {
        let timeout = self.inner.request_timeout;
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            if self.inner.requests.send(make(reply)).await.is_err() {
                return Err(self.stopped_error());
            }
            match answer.await {
                Ok(result) => result,
                Err(_) => Err(self.stopped_error()),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    fn stopped_error(&self) -> Error {
        match &self.inner.metrics.borrow().stopped {
            Some(reason) if reason != SHUT_DOWN => Error::Stopped {
                reason: reason.clone(),
            },
            _ => Error::Shutdown,
        }
    }
}
