//! [`LocalNetwork`]: an in-memory [`Transport`] connecting nodes of one process, for
//! in-process clusters and tests. It can cut nodes off to simulate partitions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use crate::StateMachine;
use crate::core::{Message, NodeId};

use super::{Error, NodeBuilder, NodeHandle, Transport};

/// An in-memory network. Cloning gives another handle to the same network.
#[derive(Clone, Default, Debug)]
pub struct LocalNetwork {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default, Debug)]
struct Inner {
    /// Inbound queues of the registered nodes.
    nodes: HashMap<NodeId, mpsc::Sender<Message>>,
    /// Nodes cut off from everyone (their messages are dropped both ways).
    isolated: HashSet<NodeId>,
    /// Drop every `n`th message (0: none), deterministically.
    drop_every: u64,
    /// Messages seen, for `drop_every`.
    sent: u64,
}

impl LocalNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The transport node `id` sends through.
    pub fn transport(&self, id: NodeId) -> Arc<dyn Transport> {
        Arc::new(LocalTransport {
            from: id,
            network: self.clone(),
        })
    }

    /// Makes a started node reachable (replacing an earlier registration of its id).
    pub fn register(&self, node: &NodeHandle) {
        self.lock().nodes.insert(node.id(), node.peer_sender());
    }

    /// Makes node `id` unreachable (for example after shutting it down).
    pub fn unregister(&self, id: NodeId) {
        self.lock().nodes.remove(&id);
    }

    /// Starts a node on this network and registers it.
    pub async fn start<S: StateMachine>(
        &self,
        builder: NodeBuilder,
        state_machine: S,
    ) -> Result<NodeHandle, Error> {
        let id = builder.id();
        let node = builder.start(state_machine, self.transport(id)).await?;
        self.register(&node);
        Ok(node)
    }

    /// Cuts node `id` off: messages from and to it are dropped until [`LocalNetwork::heal`].
    pub fn isolate(&self, id: NodeId) {
        self.lock().isolated.insert(id);
    }

    /// Loses every `n`th message from now on (0 stops losing), so tests exercise
    /// retransmission deterministically.
    pub fn drop_every(&self, n: u64) {
        self.lock().drop_every = n;
    }

    /// Reconnects node `id`.
    pub fn heal(&self, id: NodeId) {
        self.lock().isolated.remove(&id);
    }
}

/// One node's side of a [`LocalNetwork`].
#[derive(Debug)]
struct LocalTransport {
    from: NodeId,
    network: LocalNetwork,
}

impl Transport for LocalTransport {
    fn send(&self, messages: Vec<Message>) {
        let mut inner = self.network.lock();
        if inner.isolated.contains(&self.from) {
            return;
        }
        for message in messages {
            if inner.isolated.contains(&message.to) {
                continue;
            }
            inner.sent += 1;
            if inner.drop_every > 0 && inner.sent.is_multiple_of(inner.drop_every) {
                continue;
            }
            if let Some(inbound) = inner.nodes.get(&message.to) {
                // Best effort, like a network: a full or closed queue drops the message.
                let _ = inbound.try_send(message);
            }
        }
    }
}
