//! Embedding: a node with the embedder's own state machine, over QUIC with mutual TLS.
//!
//! [`QuicNode::start`] wires an engine [`NodeBuilder`] (data dir, id, voters, timing), a
//! [`PeerTransport`] bound with a [`TlsIdentity`], the [`QuicTransport`] adapter and the
//! inbound pump. [`InProcessCluster`] does it for N nodes in one process on 127.0.0.1 under a
//! freshly generated CA: the three-node example in `bin/examples/embedded.rs` is built on it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shoal_engine::driver::{NodeBuilder, NodeHandle};
use shoal_engine::{SnapshotImage, StateMachine};
use shoal_net::{ClusterCa, PeerTransport, PeerTransportConfig, TlsIdentity};

use super::transport::{PeerActivity, QuicTransport, pump_inbound};

/// Why an embedded node or cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// Certificates could not be made or loaded.
    #[error("tls: {0}")]
    Tls(#[from] shoal_net::TlsError),
    /// The QUIC endpoint could not be bound.
    #[error("transport: {0}")]
    Transport(#[from] shoal_net::PeerError),
    /// The engine refused to start (configuration, storage, recovery).
    #[error("node: {0}")]
    Node(#[from] shoal_engine::driver::Error),
    /// The address could not be read.
    #[error("address: {0}")]
    Address(String),
}

/// A snapshot image already in memory: enough for state machines whose state is small (the
/// engine writes it to a file and streams it to lagging peers in chunks).
#[derive(Debug, Clone)]
pub struct BytesImage {
    applied_index: u64,
    bytes: Vec<u8>,
}

impl BytesImage {
    /// The image of the state at `applied_index`.
    pub fn new(applied_index: u64, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            applied_index,
            bytes: bytes.into(),
        }
    }
}

impl SnapshotImage for BytesImage {
    fn applied_index(&self) -> u64 {
        self.applied_index
    }

    fn write_to(self: Box<Self>, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(&self.bytes)
    }
}

/// One running node over QUIC: the driver's handle plus the endpoint it talks through.
#[derive(Debug)]
pub struct QuicNode {
    handle: NodeHandle,
    peers: Arc<PeerTransport>,
    pump: tokio::task::JoinHandle<()>,
}

impl QuicNode {
    /// Binds the endpoint on `bind` with `identity` (its certificate must name node
    /// `builder.id()`), learns `peers` (id and address of every other member), and starts the
    /// node with `state_machine`.
    pub async fn start<S: StateMachine>(
        builder: NodeBuilder,
        state_machine: S,
        identity: TlsIdentity,
        bind: SocketAddr,
        peers: &[(u64, SocketAddr)],
    ) -> Result<Self, EmbedError> {
        let (transport, channels) =
            PeerTransport::bind(PeerTransportConfig::new(builder.id(), bind, identity)).await?;
        Self::start_on(
            builder,
            state_machine,
            transport,
            channels.peer_messages,
            peers,
        )
        .await
    }

    async fn start_on<S: StateMachine>(
        builder: NodeBuilder,
        state_machine: S,
        transport: PeerTransport,
        inbound: tokio::sync::mpsc::Receiver<shoal_net::InboundMessage>,
        peers: &[(u64, SocketAddr)],
    ) -> Result<Self, EmbedError> {
        for (id, addr) in peers {
            transport.set_peer(*id, *addr);
        }
        let peers = Arc::new(transport);
        let handle = builder
            .start(state_machine, Arc::new(QuicTransport::new(peers.clone())))
            .await?;
        let pump = tokio::spawn(pump_inbound(
            inbound,
            handle.clone(),
            Arc::new(PeerActivity::default()),
        ));
        Ok(Self {
            handle,
            peers,
            pump,
        })
    }

    /// The driver's handle: `propose`, `read`, `metrics`, membership, `snapshot`.
    pub fn handle(&self) -> &NodeHandle {
        &self.handle
    }

    /// The endpoint's address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.peers.local_addr().ok()
    }

    /// Stops cleanly: the WAL is flushed and closed, then the endpoint.
    pub async fn shutdown(self) {
        let _ = self.handle.shutdown().await;
        self.pump.abort();
        self.peers.shutdown().await;
    }
}

/// N nodes in one process, over QUIC on 127.0.0.1 (OS-chosen ports), under a CA generated
/// for the occasion. Each node keeps its WAL and snapshots in `DIR/node-<id>`.
#[derive(Debug)]
pub struct InProcessCluster {
    nodes: Vec<QuicNode>,
}

impl InProcessCluster {
    /// Starts nodes 1..=n in `dir`, node `id` with the state machine `make(id)` and the
    /// engine's default timing (`adjust` may change each builder).
    pub async fn start<S: StateMachine>(
        dir: &Path,
        n: u64,
        make: impl FnMut(u64) -> S,
    ) -> Result<Self, EmbedError> {
        Self::start_with(dir, n, make, |builder| builder).await
    }

    /// [`InProcessCluster::start`] with a hook to adjust each node's builder (timing,
    /// snapshot policy).
    pub async fn start_with<S: StateMachine>(
        dir: &Path,
        n: u64,
        mut make: impl FnMut(u64) -> S,
        adjust: impl Fn(NodeBuilder) -> NodeBuilder,
    ) -> Result<Self, EmbedError> {
        let ca = ClusterCa::generate("in-process")?;
        let localhost: SocketAddr = "127.0.0.1:0"
            .parse()
            .map_err(|e: std::net::AddrParseError| EmbedError::Address(e.to_string()))?;
        // Bind every endpoint first: each node must know the others' ports.
        let mut bound = Vec::new();
        for id in 1..=n {
            let issued = ca.issue_node_cert(id, &["127.0.0.1".to_owned()])?;
            let identity = TlsIdentity::from_issued(ca.cert_pem(), &issued)?;
            let (transport, channels) =
                PeerTransport::bind(PeerTransportConfig::new(id, localhost, identity)).await?;
            let addr = transport
                .local_addr()
                .map_err(|e| EmbedError::Address(e.to_string()))?;
            bound.push((id, addr, transport, channels.peer_messages));
        }
        let addresses: Vec<(u64, SocketAddr)> =
            bound.iter().map(|(id, addr, _, _)| (*id, *addr)).collect();
        let mut nodes = Vec::new();
        for (id, _, transport, inbound) in bound {
            let builder =
                adjust(NodeBuilder::new(id, dir.join(format!("node-{id}"))).voters(1..=n));
            let peers: Vec<_> = addresses
                .iter()
                .filter(|(p, _)| *p != id)
                .copied()
                .collect();
            nodes.push(QuicNode::start_on(builder, make(id), transport, inbound, &peers).await?);
        }
        Ok(Self { nodes })
    }

    /// Node `id`'s handle (ids start at 1).
    pub fn node(&self, id: u64) -> Option<&NodeHandle> {
        self.nodes
            .iter()
            .map(QuicNode::handle)
            .find(|h| h.id() == id)
    }

    /// Every node's handle.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeHandle> {
        self.nodes.iter().map(QuicNode::handle)
    }

    /// Waits (at most `timeout`) until a leader is elected and returns its handle.
    pub async fn leader(&self, timeout: Duration) -> Result<NodeHandle, EmbedError> {
        let first = self
            .nodes
            .first()
            .ok_or(shoal_engine::driver::Error::Shutdown)?;
        let leader = first.handle().wait_for_leader(timeout).await?;
        self.node(leader)
            .cloned()
            .ok_or(EmbedError::Node(shoal_engine::driver::Error::NotLeader {
                leader: Some(leader),
            }))
    }

    /// Stops every node cleanly.
    pub async fn shutdown(self) {
        for node in self.nodes {
            node.shutdown().await;
        }
    }
}
