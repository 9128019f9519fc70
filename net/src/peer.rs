//! The peer transport: one QUIC endpoint per node that moves opaque payloads between nodes and
//! accepts client connections.
//!
//! # Connections
//! One connection per pair of nodes. The node with the **lower id dials**, eagerly, as soon as
//! the peer is in its address book, and redials with jittered exponential backoff while the
//! peer stays there. The higher id waits to be dialed; only if it has had no connection for
//! [`PeerTransportConfig::fallback_dial_after`] while holding traffic for the peer does it dial
//! itself (covers address books that disagree during membership changes). When a second
//! connection to the same peer is installed, the newest wins and the older is closed, so a
//! restarted peer's fresh connection replaces a dead one at once.
//!
//! The dialer asks TLS for the name `node-<id>` of the peer it means (rustls checks the
//! server's certificate), then sends a hello frame `{from, to}` on a bidirectional stream; the
//! accepting side checks `to` is itself and that the dialer's client certificate is valid for
//! `node-<from>`, then acknowledges. A payload's sender is therefore the authenticated identity
//! of its connection, never a claim inside the payload.
//!
//! # Streams
//! - **Ordered lane**: one long-lived unidirectional stream per direction, opened by the sender.
//!   Queued messages are coalesced into one write of many frames (up to
//!   [`PeerTransportConfig::max_batch_bytes`]). Delivered in order.
//! - **Bulk lane** ([`PeerTransport::send_bulk`]): one unidirectional stream per payload at a
//!   lower priority, for snapshot chunks, so large transfers never hold up heartbeats.
//!
//! Each unidirectional stream starts with one tag byte naming its lane, then frames
//! (see [`crate::frame`]). A stream that sends a bad frame is stopped (logged and counted); the
//! connection and every other stream go on.
//!
//! # Backpressure
//! [`PeerTransport::send`] never blocks: each peer has a queue bounded by message count and by
//! bytes. When full, the **oldest** queued message is dropped and counted
//! ([`TransportStats::dropped_queue_full`]): Raft tolerates loss, and the newest message carries
//! the freshest state. Inbound messages go to a bounded channel; when the node does not keep up,
//! reading stops and QUIC flow control pushes back on the sender, whose queue then drops.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::{Connection, Endpoint, VarInt};
use rand::Rng;
use rustls::pki_types::CertificateDer;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::codec::{self, CodecError};
use crate::fault::{Direction, FaultHook};
use crate::frame::{self, FrameError};
use crate::server::{self, ClientContext, IncomingRequest};
use crate::tls::{self, TlsError, TlsIdentity};

/// Tag byte opening a peer's ordered-lane unidirectional stream.
pub const STREAM_ORDERED: u8 = 0x01;
/// Tag byte opening a bulk-lane unidirectional stream.
pub const STREAM_BULK: u8 = 0x02;
const PRIORITY_ORDERED: i32 = 10;
const PRIORITY_BULK: i32 = -10;
/// A connection that carried traffic this long counts as a success for reconnect backoff.
const STABLE_AFTER: Duration = Duration::from_secs(1);

/// Most connection attempts quinn holds before they are accepted.
const MAX_INCOMING: usize = 1024;

/// Bound on a hello or hello-acknowledgement frame.
pub const HELLO_MAX_BYTES: usize = 4096;
/// Version of the peer protocol carried in [`PeerHello`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Application close and stop codes used on peer connections.
mod close_code {
    pub const SHUTDOWN: u32 = 0;
    pub const REPLACED: u32 = 1;
    pub const REMOVED: u32 = 2;
    pub const REFUSED: u32 = 3;
    pub const BAD_FRAME: u32 = 4;
    pub const BAD_STREAM: u32 = 5;
    pub const WRONG_ALPN: u32 = 6;
    pub const CHECK_DONE: u32 = 7;
    pub const TOO_MANY_CLIENTS: u32 = 8;
}

/// Settings of a [`PeerTransport`]. Build with [`PeerTransportConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct PeerTransportConfig {
    /// This node's id; must match the `node-<id>` name in `identity`'s certificate.
    pub node_id: u64,
    /// Address the endpoint binds (peers and clients both reach it here).
    pub bind_addr: SocketAddr,
    /// CA, node certificate and key.
    pub identity: TlsIdentity,
    /// Largest peer message payload, in bytes.
    pub max_frame_bytes: usize,
    /// Largest client request or response frame, in bytes.
    pub max_client_frame_bytes: usize,
    /// Per-peer outbound queue bound, in messages.
    pub queue_max_messages: usize,
    /// Per-peer outbound queue bound, in payload bytes.
    pub queue_max_bytes: usize,
    /// Most payload bytes coalesced into one stream write.
    pub max_batch_bytes: usize,
    /// Capacity of the inbound peer message channel.
    pub inbound_capacity: usize,
    /// Capacity of the incoming client request channel.
    pub client_request_capacity: usize,
    /// Most bytes of client request frames held at once, from the moment a request's header
    /// announces its size until it is answered (or dropped). A request that would exceed it is
    /// answered `Unavailable` at once, so clients cannot make a node buffer gigabytes (every
    /// client connection may carry many streams, each up to `max_client_frame_bytes`).
    pub max_client_request_bytes: usize,
    /// Most client connections served at once; more are closed at once with a reason.
    pub max_client_connections: usize,
    /// First reconnect delay; doubles per failure up to `reconnect_backoff_max`, with jitter.
    pub reconnect_backoff_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_backoff_max: Duration,
    /// Bound on one dial: QUIC handshake plus hello.
    pub connect_timeout: Duration,
    /// How long the higher-id side of a pair waits to be dialed before it dials itself.
    pub fallback_dial_after: Duration,
    /// A connection with no traffic for this long is considered dead.
    pub idle_timeout: Duration,
    /// Keep-alive interval (must be well below `idle_timeout`).
    pub keep_alive_interval: Duration,
    /// Bound on one [`PeerTransport::send_bulk`] once connected (opening the stream and
    /// handing the payload to QUIC).
    pub bulk_send_timeout: Duration,
    /// Whether [`PeerTransport::fault_hook`] acts (tests and chaos only).
    pub enable_fault_hook: bool,
    /// Seed of the fault hook's random drops.
    pub fault_seed: u64,
}

/// A [`PeerTransportConfig`] field out of range.
#[derive(Debug, thiserror::Error)]
#[error("invalid transport config: {field} {problem}")]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl PeerTransportConfig {
    /// Defaults suitable for a LAN cluster.
    pub fn new(node_id: u64, bind_addr: SocketAddr, identity: TlsIdentity) -> Self {
        Self {
            node_id,
            bind_addr,
            identity,
            max_frame_bytes: frame::DEFAULT_MAX_FRAME_BYTES,
            max_client_frame_bytes: crate::protocol::DEFAULT_MAX_CLIENT_FRAME_BYTES,
            queue_max_messages: 4096,
            queue_max_bytes: 64 * 1024 * 1024,
            max_batch_bytes: 1024 * 1024,
            inbound_capacity: 4096,
            client_request_capacity: 1024,
            max_client_request_bytes: 128 * 1024 * 1024,
            max_client_connections: 4096,
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            fallback_dial_after: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            keep_alive_interval: Duration::from_secs(2),
            bulk_send_timeout: Duration::from_secs(30),
            enable_fault_hook: false,
            fault_seed: 0,
        }
    }

    /// Checks every bound is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, problem: &str| {
            Err(ConfigError {
                field,
                problem: problem.to_owned(),
            })
        };
        if self.max_frame_bytes == 0 || self.max_frame_bytes > u32::MAX as usize {
            return fail("max_frame_bytes", "must be between 1 and u32::MAX");
        }
        if self.max_client_frame_bytes == 0 || self.max_client_frame_bytes > u32::MAX as usize {
            return fail("max_client_frame_bytes", "must be between 1 and u32::MAX");
        }
        if self.max_client_request_bytes < self.max_client_frame_bytes
            || self.max_client_request_bytes > tokio::sync::Semaphore::MAX_PERMITS
        {
            return fail(
                "max_client_request_bytes",
                "must hold at least one largest client frame (and be below 2^61)",
            );
        }
        if self.queue_max_messages == 0 || self.queue_max_bytes < self.max_frame_bytes {
            return fail(
                "queue_max_messages/queue_max_bytes",
                "must hold at least one largest frame",
            );
        }
        if self.max_batch_bytes == 0 {
            return fail("max_batch_bytes", "must be positive");
        }
        if self.inbound_capacity == 0
            || self.client_request_capacity == 0
            || self.max_client_connections == 0
        {
            return fail(
                "inbound_capacity/client_request_capacity/max_client_connections",
                "must be positive",
            );
        }
        if self.reconnect_backoff_min.is_zero()
            || self.reconnect_backoff_max < self.reconnect_backoff_min
        {
            return fail("reconnect_backoff_min/max", "need 0 < min <= max");
        }
        if self.connect_timeout.is_zero() || self.bulk_send_timeout.is_zero() {
            return fail("connect_timeout/bulk_send_timeout", "must be positive");
        }
        if self.keep_alive_interval.is_zero() || self.keep_alive_interval >= self.idle_timeout {
            return fail(
                "keep_alive_interval",
                "must be positive and below idle_timeout",
            );
        }
        if VarInt::from_u64(self.idle_timeout.as_millis().try_into().unwrap_or(u64::MAX)).is_err() {
            return fail("idle_timeout", "is too long");
        }
        Ok(())
    }
}

/// Errors of the peer transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS material or configuration failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The endpoint could not bind its UDP socket.
    #[error("cannot bind the QUIC endpoint to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No address is known for the peer.
    #[error("no address known for peer {peer}")]
    UnknownPeer {
        /// The peer id.
        peer: u64,
    },
    /// Dialing the peer failed (QUIC or TLS handshake).
    #[error("cannot connect to peer {peer} at {addr}: {message}")]
    Connect {
        /// The peer id.
        peer: u64,
        /// The address dialed.
        addr: SocketAddr,
        /// What failed.
        message: String,
    },
    /// The peer refused our hello (or we refused its).
    #[error("peer {peer} refused the connection: {reason}")]
    Refused {
        /// The peer id.
        peer: u64,
        /// The reason it gave.
        reason: String,
    },
    /// A hello exchange failed.
    #[error("hello with peer {peer} failed: {message}")]
    Hello {
        /// The peer id.
        peer: u64,
        /// What failed.
        message: String,
    },
}

/// Why a message could not be queued or sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The peer is neither in the address book nor connected.
    #[error("unknown peer {peer}")]
    UnknownPeer {
        /// The peer id.
        peer: u64,
    },
    /// The payload exceeds the maximum frame size.
    #[error("message of {len} bytes to peer {peer} exceeds the maximum frame of {max} bytes")]
    TooLarge {
        /// The peer id.
        peer: u64,
        /// Payload length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// No connection to the peer came up in time (bulk sends only).
    #[error("no connection to peer {peer} within {waited:?}")]
    NotConnected {
        /// The peer id.
        peer: u64,
        /// How long we waited.
        waited: Duration,
    },
    /// Writing the bulk stream failed.
    #[error("bulk transfer to peer {peer} failed: {message}")]
    Stream {
        /// The peer id.
        peer: u64,
        /// What failed.
        message: String,
    },
    /// Messages to ourselves are not sent over the network.
    #[error("cannot send to self (node {peer})")]
    ToSelf {
        /// Our id.
        peer: u64,
    },
}

/// Which lane a message travelled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The ordered stream ([`PeerTransport::send`]).
    Ordered,
    /// A bulk stream ([`PeerTransport::send_bulk`]); unordered.
    Bulk,
}

/// A message received from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The sender, as authenticated by its certificate.
    pub from: u64,
    /// The payload, as given to `send` or `send_bulk` on the other side.
    pub payload: Bytes,
    /// The lane it came on.
    pub lane: Lane,
}

/// The state of one peer link, for status views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer id.
    pub peer: u64,
    /// Its address, when in the address book.
    pub addr: Option<SocketAddr>,
    /// Whether a live connection exists.
    pub connected: bool,
    /// quinn's round-trip estimate on that connection.
    pub rtt: Option<Duration>,
    /// Messages waiting in its queue.
    pub queued_messages: usize,
    /// Payload bytes waiting in its queue.
    pub queued_bytes: usize,
}

/// Counters of a transport, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages written to peers (both lanes).
    pub messages_sent: u64,
    /// Messages delivered to the inbound channel.
    pub messages_received: u64,
    /// Messages dropped because a peer's queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped by the fault hook.
    pub dropped_by_fault: u64,
    /// Peer or client frames rejected (bad checksum, too large, bad encoding, bad stream tag).
    pub frames_rejected: u64,
    /// Incoming connections refused (TLS handshake failed, wrong ALPN, bad hello).
    pub connections_refused: u64,
    /// Dials that failed.
    pub dials_failed: u64,
    /// Peer connections established (dialed or accepted).
    pub peer_connections: u64,
    /// Client requests answered `Unavailable` because the node's channel was full.
    pub client_requests_shed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) messages_sent: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) frames_rejected: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) dials_failed: AtomicU64,
    pub(crate) peer_connections: AtomicU64,
    pub(crate) client_requests_shed: AtomicU64,
}

/// The receiving ends of a bound transport.
#[derive(Debug)]
pub struct TransportChannels {
    /// Messages from peers, in order per peer and lane.
    pub peer_messages: mpsc::Receiver<InboundMessage>,
    /// Validated client requests to answer.
    pub client_requests: mpsc::Receiver<IncomingRequest>,
}

/// The first frame a dialing node sends, on a bidirectional stream, after the TLS handshake.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PeerHello {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The dialer's id; its certificate must be valid for `node-<from>`.
    pub from: u64,
    /// The id the dialer means to reach; must be the acceptor's.
    pub to: u64,
    /// A reachability check ([`PeerTransport::check_peer`]): answered, never used for traffic.
    pub probe: bool,
}

/// The acceptor's answer to a [`PeerHello`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PeerHelloAck {
    /// Whether the connection is accepted.
    pub accepted: bool,
    /// Why not, when refused.
    pub reason: String,
}

#[derive(Debug, Default)]
struct OutQueue {
    messages: VecDeque<Bytes>,
    bytes: usize,
}

struct Link {
    peer_id: u64,
    addr: Mutex<Option<SocketAddr>>,
    queue: Mutex<OutQueue>,
    queue_notify: Notify,
    conn: watch::Sender<Option<Connection>>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a few plain assignments: a panic inside one cannot leave
    // the data half-updated, so a poisoned lock is still safe to use.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Link {
    fn addr(&self) -> Option<SocketAddr> {
        *lock(&self.addr)
    }

    fn live_connection(&self) -> Option<Connection> {
        self.conn
            .borrow()
            .as_ref()
            .filter(|c| c.close_reason().is_none())
            .cloned()
    }

    fn queue_is_empty(&self) -> bool {
        lock(&self.queue).messages.is_empty()
    }

    /// Takes queued messages up to `max_bytes` (at least one).
    fn take_batch(&self, max_bytes: usize) -> Vec<Bytes> {
        let mut queue = lock(&self.queue);
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(front) = queue.messages.front() {
            if !batch.is_empty() && bytes + front.len() > max_bytes {
                break;
            }
            bytes += front.len();
            if let Some(message) = queue.messages.pop_front() {
                batch.push(message);
            }
        }
        queue.bytes -= bytes;
        batch
    }

    /// Replaces the current connection with `conn` (newest wins), closing the older one.
    fn install(&self, conn: Connection) {
        let old = self.conn.send_replace(Some(conn.clone()));
        if let Some(old) = old
            && old.stable_id() != conn.stable_id()
        {
            old.close(
                VarInt::from_u32(close_code::REPLACED),
                b"replaced by a newer connection",
            );
        }
    }

    /// Forgets `conn` if it is still the current connection.
    fn clear_if_current(&self, conn: &Connection) {
        self.conn.send_if_modified(|current| {
            if current
                .as_ref()
                .is_some_and(|c| c.stable_id() == conn.stable_id())
            {
                *current = None;
                true
            } else {
                false
            }
        });
    }
}

struct Shared {
    config: PeerTransportConfig,
    endpoint: Endpoint,
    peer_client_config: quinn::ClientConfig,
    links: Mutex<HashMap<u64, Arc<Link>>>,
    inbound: mpsc::Sender<InboundMessage>,
    client: ClientContext,
    fault: FaultHook,
    stats: Arc<Stats>,
    tasks: Mutex<JoinSet<()>>,
    runtime: tokio::runtime::Handle,
    client_slots: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    fn spawn<F>(&self, future: F) -> tokio::task::AbortHandle
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut tasks = lock(&self.tasks);
        // Reap finished tasks so the set stays as small as the live work.
        while tasks.try_join_next().is_some() {}
        // Spawn on the runtime captured at bind, so sync methods work from any thread.
        tasks.spawn_on(future, &self.runtime)
    }

    fn link(&self, peer: u64) -> Option<Arc<Link>> {
        lock(&self.links).get(&peer).cloned()
    }
}

/// A node's QUIC endpoint: peer messaging and client request intake. See the module docs.
///
/// Dropping it aborts its tasks and closes the endpoint; [`PeerTransport::shutdown`] does the
/// same and waits for connections to close.
pub struct PeerTransport {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PeerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTransport")
            .field("node_id", &self.shared.config.node_id)
            .field("local_addr", &self.shared.endpoint.local_addr().ok())
            .finish()
    }
}

fn transport_config(config: &PeerTransportConfig) -> Result<quinn::TransportConfig, ConfigError> {
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|_| ConfigError {
        field: "idle_timeout",
        problem: "is too long".into(),
    })?;
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(config.keep_alive_interval))
        .max_concurrent_uni_streams(VarInt::from_u32(32))
        .max_concurrent_bidi_streams(VarInt::from_u32(256));
    Ok(transport)
}

impl PeerTransport {
    /// Binds the endpoint and starts accepting peers and clients. Returns the transport and the
    /// channels on which inbound peer messages and client requests arrive.
    pub async fn bind(config: PeerTransportConfig) -> Result<(Self, TransportChannels), PeerError> {
        config.validate()?;
        tls::ensure_crypto_provider();
        // A node presenting another node's certificate would be refused by every peer: say so
        // now, naming the mismatch, rather than through refusals later.
        let leaf = config
            .identity
            .cert_chain()
            .first()
            .ok_or(TlsError::Missing {
                what: "node identity".into(),
                kind: "certificate",
            })?;
        tls::verify_node_certificate(leaf, config.node_id)?;
        let transport = Arc::new(transport_config(&config)?);
        let mut server_config = tls::quic_server_config(tls::server_config(&config.identity)?)?;
        server_config
            .transport_config(transport.clone())
            .max_incoming(MAX_INCOMING);
        let mut peer_client_config =
            tls::quic_client_config(tls::peer_client_config(&config.identity)?)?;
        peer_client_config.transport_config(transport);
        let endpoint = Endpoint::server(server_config, config.bind_addr).map_err(|source| {
            PeerError::Bind {
                addr: config.bind_addr,
                source,
            }
        })?;
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_capacity);
        let (client_tx, client_rx) = mpsc::channel(config.client_request_capacity);
        let stats = Arc::new(Stats::default());
        let fault = if config.enable_fault_hook {
            FaultHook::enabled(config.fault_seed)
        } else {
            FaultHook::disabled()
        };
        let config_max_clients = config.max_client_connections;
        let shared = Arc::new(Shared {
            client: ClientContext {
                requests: client_tx,
                max_frame_bytes: config.max_client_frame_bytes,
                request_bytes: Arc::new(tokio::sync::Semaphore::new(
                    config.max_client_request_bytes,
                )),
                stats: stats.clone(),
            },
            config,
            endpoint,
            peer_client_config,
            links: Mutex::new(HashMap::new()),
            inbound: inbound_tx,
            fault,
            stats,
            tasks: Mutex::new(JoinSet::new()),
            runtime: tokio::runtime::Handle::current(),
            client_slots: Arc::new(tokio::sync::Semaphore::new(config_max_clients)),
        });
        shared.spawn(accept_loop(shared.clone()));
        info!(node = shared.config.node_id, addr = ?shared.endpoint.local_addr().ok(), "peer transport listening");
        Ok((
            Self { shared },
            TransportChannels {
                peer_messages: inbound_rx,
                client_requests: client_rx,
            },
        ))
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.shared.config.node_id
    }

    /// The largest payload [`PeerTransport::send`] and [`PeerTransport::send_bulk`] accept.
    pub fn max_frame_bytes(&self) -> usize {
        self.shared.config.max_frame_bytes
    }

    /// The address the endpoint is bound to (with the OS-chosen port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    /// Adds `peer` to the address book or changes its address. A changed address closes the
    /// current connection so the next one goes to the new address.
    pub fn set_peer(&self, peer: u64, addr: SocketAddr) {
        if peer == self.shared.config.node_id {
            return;
        }
        let link = ensure_link(&self.shared, peer);
        let previous = lock(&link.addr).replace(addr);
        if previous.is_some_and(|previous| previous != addr)
            && let Some(conn) = link.conn.send_replace(None)
        {
            conn.close(
                VarInt::from_u32(close_code::REPLACED),
                b"peer address changed",
            );
        }
        debug!(node = self.shared.config.node_id, peer, %addr, "peer address set");
    }

    /// Removes `peer`: drops its queue, stops reconnecting and closes its connection.
    ///
    /// A removed node that dials again is still accepted (it holds a certificate of the cluster
    /// CA) and its messages delivered: membership is the node's business, which should ignore
    /// messages from non-members.
    pub fn remove_peer(&self, peer: u64) {
        let link = lock(&self.shared.links).remove(&peer);
        if let Some(link) = link {
            if let Some(task) = lock(&link.task).take() {
                task.abort();
            }
            if let Some(conn) = link.conn.send_replace(None) {
                conn.close(VarInt::from_u32(close_code::REMOVED), b"peer removed");
            }
            debug!(node = self.shared.config.node_id, peer, "peer removed");
        }
    }

    /// The peers in the address book (or connected to us), with their addresses when known.
    pub fn peers(&self) -> Vec<(u64, Option<SocketAddr>)> {
        let mut peers: Vec<_> = lock(&self.shared.links)
            .iter()
            .map(|(id, link)| (*id, link.addr()))
            .collect();
        peers.sort_unstable_by_key(|(id, _)| *id);
        peers
    }

    /// One row per known peer: address, connection, queue depth. Sorted by id.
    pub fn peer_status(&self) -> Vec<PeerStatus> {
        let links: Vec<Arc<Link>> = lock(&self.shared.links).values().cloned().collect();
        let mut rows: Vec<PeerStatus> = links
            .iter()
            .map(|link| {
                let (queued_messages, queued_bytes) = {
                    let queue = lock(&link.queue);
                    (queue.messages.len(), queue.bytes)
                };
                let conn = link.live_connection();
                PeerStatus {
                    peer: link.peer_id,
                    addr: link.addr(),
                    connected: conn.is_some(),
                    rtt: conn.map(|c| c.rtt()),
                    queued_messages,
                    queued_bytes,
                }
            })
            .collect();
        rows.sort_unstable_by_key(|row| row.peer);
        rows
    }

    /// Whether a live connection to `peer` exists now.
    pub fn is_connected(&self, peer: u64) -> bool {
        self.shared
            .link(peer)
            .is_some_and(|link| link.live_connection().is_some())
    }

    /// Queues `payload` for `peer` on the ordered lane. Never blocks: a full queue drops its
    /// oldest message (counted in [`TransportStats::dropped_queue_full`]).
    pub fn send(&self, peer: u64, payload: Bytes) -> Result<(), SendError> {
        let config = &self.shared.config;
        if peer == config.node_id {
            return Err(SendError::ToSelf { peer });
        }
        if payload.len() > config.max_frame_bytes {
            return Err(SendError::TooLarge {
                peer,
                len: payload.len(),
                max: config.max_frame_bytes,
            });
        }
        let link = self
            .shared
            .link(peer)
            .ok_or(SendError::UnknownPeer { peer })?;
        {
            let mut queue = lock(&link.queue);
            let mut dropped = 0u64;
            while !queue.messages.is_empty()
                && (queue.messages.len() >= config.queue_max_messages
                    || queue.bytes + payload.len() > config.queue_max_bytes)
            {
                if let Some(oldest) = queue.messages.pop_front() {
                    queue.bytes -= oldest.len();
                    dropped += 1;
                }
            }
            queue.bytes += payload.len();
            queue.messages.push_back(payload);
            if dropped > 0 {
                self.shared
                    .stats
                    .dropped_queue_full
                    .fetch_add(dropped, Ordering::Relaxed);
                debug!(
                    node = config.node_id,
                    peer, dropped, "peer queue full: dropped oldest messages"
                );
            }
        }
        link.queue_notify.notify_one();
        Ok(())
    }

    /// Sends `payload` to `peer` on its own low-priority stream (snapshot chunks and other large
    /// transfers). Waits up to `connect_timeout` for a connection; returns once the payload is
    /// handed to QUIC (bounded by `bulk_send_timeout`), so awaiting each call paces a sender to
    /// the link.
    ///
    /// Bulk payloads are **not ordered** among themselves nor against the ordered lane, and may be
    /// lost like any message: each chunk must say where it belongs (snapshot id, offset).
    pub async fn send_bulk(&self, peer: u64, payload: Bytes) -> Result<(), SendError> {
        let shared = &self.shared;
        let config = &shared.config;
        if peer == config.node_id {
            return Err(SendError::ToSelf { peer });
        }
        let frame = frame::frame_bytes(&payload, config.max_frame_bytes).map_err(|_| {
            SendError::TooLarge {
                peer,
                len: payload.len(),
                max: config.max_frame_bytes,
            }
        })?;
        let link = shared.link(peer).ok_or(SendError::UnknownPeer { peer })?;
        let waited = config.connect_timeout;
        let conn = wait_for_connection(&link, waited)
            .await
            .ok_or(SendError::NotConnected { peer, waited })?;
        if shared.fault.should_drop(peer, Direction::Outbound) {
            return Ok(());
        }
        let delay = shared.fault.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let stream_error = |message: String| SendError::Stream { peer, message };
        let transfer = async {
            let mut stream = conn
                .open_uni()
                .await
                .map_err(|e| stream_error(e.to_string()))?;
            let _ = stream.set_priority(PRIORITY_BULK);
            stream
                .write_all(&[STREAM_BULK])
                .await
                .map_err(|e| stream_error(e.to_string()))?;
            stream
                .write_all(&frame)
                .await
                .map_err(|e| stream_error(e.to_string()))?;
            stream.finish().map_err(|e| stream_error(e.to_string()))
        };
        tokio::time::timeout(config.bulk_send_timeout, transfer)
            .await
            .map_err(|_| {
                stream_error(format!("timed out after {:?}", config.bulk_send_timeout))
            })??;
        shared.stats.messages_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Dials `peer` on a fresh connection, runs the hello, and closes it: reports whether the
    /// peer is reachable and accepts us (for diagnostics; normal traffic never needs it).
    pub async fn check_peer(&self, peer: u64) -> Result<(), PeerError> {
        let link = self
            .shared
            .link(peer)
            .ok_or(PeerError::UnknownPeer { peer })?;
        let addr = link.addr().ok_or(PeerError::UnknownPeer { peer })?;
        let conn = dial(&self.shared, peer, addr, true).await?;
        conn.close(VarInt::from_u32(close_code::CHECK_DONE), b"check done");
        Ok(())
    }

    /// The fault hook (a no-op unless the config enabled it).
    pub fn fault_hook(&self) -> FaultHook {
        self.shared.fault.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TransportStats {
        let s = &self.shared.stats;
        TransportStats {
            messages_sent: s.messages_sent.load(Ordering::Relaxed),
            messages_received: s.messages_received.load(Ordering::Relaxed),
            dropped_queue_full: s.dropped_queue_full.load(Ordering::Relaxed),
            dropped_by_fault: self.shared.fault.settings().dropped,
            frames_rejected: s.frames_rejected.load(Ordering::Relaxed),
            connections_refused: s.connections_refused.load(Ordering::Relaxed),
            dials_failed: s.dials_failed.load(Ordering::Relaxed),
            peer_connections: s.peer_connections.load(Ordering::Relaxed),
            client_requests_shed: s.client_requests_shed.load(Ordering::Relaxed),
        }
    }

    /// Stops every task, closes every connection and waits (bounded) for the endpoint to go
    /// idle, so the port can be bound again.
    pub async fn shutdown(&self) {
        self.stop();
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.shared.endpoint.wait_idle()).await;
        info!(
            node = self.shared.config.node_id,
            "peer transport shut down"
        );
    }

    fn stop(&self) {
        lock(&self.shared.tasks).abort_all();
        let links: Vec<_> = lock(&self.shared.links)
            .drain()
            .map(|(_, link)| link)
            .collect();
        for link in links {
            if let Some(conn) = link.conn.send_replace(None) {
                conn.close(VarInt::from_u32(close_code::SHUTDOWN), b"shutdown");
            }
        }
        self.shared
            .endpoint
            .close(VarInt::from_u32(close_code::SHUTDOWN), b"shutdown");
    }
}

impl Drop for PeerTransport {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ensure_link(shared: &Arc<Shared>, peer: u64) -> Arc<Link> {
    let mut links = lock(&shared.links);
    if let Some(link) = links.get(&peer) {
        return link.clone();
    }
    let (conn, _) = watch::channel(None);
    let link = Arc::new(Link {
        peer_id: peer,
        addr: Mutex::new(None),
        queue: Mutex::new(OutQueue::default()),
        queue_notify: Notify::new(),
        conn,
        task: Mutex::new(None),
    });
    links.insert(peer, link.clone());
    drop(links);
    let task = shared.spawn(run_link(shared.clone(), link.clone()));
    *lock(&link.task) = Some(task);
    link
}

/// `now + after`, saturating far in the future instead of panicking when a configured duration
/// is too long to add to an `Instant`.
pub(crate) fn deadline_after(now: Instant, after: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(after.min(FAR))
        .unwrap_or_else(|| now + Duration::from_secs(24 * 3600))
}

async fn wait_for_connection(link: &Link, timeout: Duration) -> Option<Connection> {
    let mut rx = link.conn.subscribe();
    let deadline = deadline_after(Instant::now(), timeout);
    loop {
        if let Some(conn) = link.live_connection() {
            return Some(conn);
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}

struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The next delay: uniformly drawn from `[d/2, d]` where `d` doubles each call up to max.
    fn next_delay(&mut self) -> Duration {
        let current = self.next;
        self.next = current.saturating_mul(2).min(self.max);
        let half = current / 2;
        let jitter_ms =
            rand::rng().random_range(0..=half.as_millis().try_into().unwrap_or(u64::MAX));
        half + Duration::from_millis(jitter_ms)
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Keeps one connection to the link's peer and pumps its queue into the ordered stream.
async fn run_link(shared: Arc<Shared>, link: Arc<Link>) {
    let node = shared.config.node_id;
    let peer = link.peer_id;
    let mut backoff = Backoff::new(
        shared.config.reconnect_backoff_min,
        shared.config.reconnect_backoff_max,
    );
    loop {
        let conn = obtain_connection(&shared, &link, &mut backoff).await;
        let started = Instant::now();
        let result = pump(&shared, &link, &conn).await;
        // A connection or stream that lived a while resets the backoff; one that failed at once
        // keeps growing it, so a peer that accepts and then drops us is not redialed in a loop.
        if started.elapsed() >= STABLE_AFTER {
            backoff.reset();
        }
        match result {
            Ok(()) => {}
            Err(error) => {
                debug!(node, peer, %error, "ordered stream ended");
                if conn.close_reason().is_some() {
                    link.clear_if_current(&conn);
                }
                if started.elapsed() < STABLE_AFTER || conn.close_reason().is_none() {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

async fn obtain_connection(
    shared: &Arc<Shared>,
    link: &Arc<Link>,
    backoff: &mut Backoff,
) -> Connection {
    let node = shared.config.node_id;
    let peer = link.peer_id;
    let dialer = node < peer;
    let mut rx = link.conn.subscribe();
    let mut alone_since = Instant::now();
    let mut failures = 0u64;
    loop {
        if let Some(conn) = link.live_connection() {
            return conn;
        }
        let addr = link.addr();
        let fallback_due =
            alone_since.elapsed() >= shared.config.fallback_dial_after && !link.queue_is_empty();
        if let Some(addr) = addr.filter(|_| dialer || fallback_due) {
            match dial(shared, peer, addr, false).await {
                Ok(conn) => {
                    if failures > 0 {
                        info!(node, peer, %addr, failures, "reconnected to peer");
                    }
                    install_connection(shared, link, conn.clone());
                    return conn;
                }
                Err(error) => {
                    shared.stats.dials_failed.fetch_add(1, Ordering::Relaxed);
                    failures += 1;
                    let delay = backoff.next_delay();
                    let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                    // A peer that is down fails every dial: warn on the first and then rarely.
                    if failures == 1 || failures.is_multiple_of(50) {
                        warn!(node, peer, %addr, %error, failures, retry_in_ms, "dial failed");
                    } else {
                        debug!(node, peer, %addr, %error, failures, retry_in_ms, "dial failed");
                    }
                    // Wake early if the peer dials us meanwhile.
                    let _ = tokio::time::timeout(delay, rx.changed()).await;
                    alone_since = Instant::now();
                }
            }
        } else {
            let poll = shared
                .config
                .fallback_dial_after
                .min(Duration::from_millis(250));
            let _ = tokio::time::timeout(poll, rx.changed()).await;
        }
    }
}

fn install_connection(shared: &Arc<Shared>, link: &Arc<Link>, conn: Connection) {
    shared
        .stats
        .peer_connections
        .fetch_add(1, Ordering::Relaxed);
    link.install(conn.clone());
    shared.spawn(read_connection(shared.clone(), link.clone(), conn));
}

#[derive(Debug, thiserror::Error)]
enum PumpError {
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("write failed: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("cannot frame a message: {0}")]
    Frame(#[from] FrameError),
}

/// Writes the link's queue to one ordered stream on `conn` until the stream or connection fails
/// or another connection replaces `conn`.
async fn pump(shared: &Arc<Shared>, link: &Arc<Link>, conn: &Connection) -> Result<(), PumpError> {
    let peer = link.peer_id;
    let mut rx = link.conn.subscribe();
    let mut stream = conn.open_uni().await?;
    let _ = stream.set_priority(PRIORITY_ORDERED);
    stream.write_all(&[STREAM_ORDERED]).await?;
    let mut buffer = BytesMut::new();
    loop {
        let batch = loop {
            let notified = link.queue_notify.notified();
            let batch = link.take_batch(shared.config.max_batch_bytes);
            if !batch.is_empty() {
                break batch;
            }
            tokio::select! {
                () = notified => {}
                changed = rx.changed() => {
                    let replaced = changed.is_err()
                        || rx.borrow_and_update().as_ref().is_none_or(|c| c.stable_id() != conn.stable_id());
                    if replaced {
                        return Ok(());
                    }
                }
                reason = conn.closed() => return Err(reason.into()),
            }
        };
        let delay = shared.fault.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        buffer.clear();
        let mut count = 0u64;
        for message in &batch {
            if shared.fault.should_drop(peer, Direction::Outbound) {
                continue;
            }
            frame::encode_frame(message, shared.config.max_frame_bytes, &mut buffer)?;
            count += 1;
        }
        if count == 0 {
            continue;
        }
        stream.write_all(&buffer).await?;
        shared
            .stats
            .messages_sent
            .fetch_add(count, Ordering::Relaxed);
    }
}

/// Dials `peer` at `addr` and runs the hello. Bounded by `connect_timeout`.
async fn dial(
    shared: &Arc<Shared>,
    peer: u64,
    addr: SocketAddr,
    probe: bool,
) -> Result<Connection, PeerError> {
    let timeout = shared.config.connect_timeout;
    match tokio::time::timeout(timeout, dial_inner(shared, peer, addr, probe)).await {
        Ok(result) => result,
        Err(_) => Err(PeerError::Connect {
            peer,
            addr,
            message: format!("timed out after {timeout:?}"),
        }),
    }
}

async fn dial_inner(
    shared: &Arc<Shared>,
    peer: u64,
    addr: SocketAddr,
    probe: bool,
) -> Result<Connection, PeerError> {
    let node = shared.config.node_id;
    let connect_error = |message: String| PeerError::Connect {
        peer,
        addr,
        message,
    };
    let connecting = shared
        .endpoint
        .connect_with(
            shared.peer_client_config.clone(),
            addr,
            &tls::node_server_name(peer),
        )
        .map_err(|e| connect_error(e.to_string()))?;
    let conn = connecting
        .await
        .map_err(|e| connect_error(describe_connection_error(&e)))?;
    match send_hello(&conn, node, peer, probe).await {
        Ok(()) => {}
        Err(error) => {
            // In TLS 1.3 the dialer's handshake completes before the acceptor has checked the
            // dialer's certificate: a refusal shows up as the connection closing during the hello.
            if let Some(reason) = conn.close_reason()
                && is_tls_error(&reason)
            {
                return Err(connect_error(describe_connection_error(&reason)));
            }
            return Err(error);
        }
    }
    debug!(node, peer, %addr, "dialed peer");
    Ok(conn)
}

async fn send_hello(conn: &Connection, node: u64, peer: u64, probe: bool) -> Result<(), PeerError> {
    let hello_error = |message: String| PeerError::Hello { peer, message };
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| hello_error(e.to_string()))?;
    let hello = codec::encode(&PeerHello {
        version: PROTOCOL_VERSION,
        from: node,
        to: peer,
        probe,
    })
    .map_err(|e| hello_error(e.to_string()))?;
    frame::write_frame(&mut send, &hello, HELLO_MAX_BYTES)
        .await
        .map_err(|e| hello_error(e.to_string()))?;
    send.finish().map_err(|e| hello_error(e.to_string()))?;
    let ack = frame::read_frame(&mut recv, HELLO_MAX_BYTES)
        .await
        .map_err(|e| hello_error(e.to_string()))?
        .ok_or_else(|| hello_error("stream closed before the hello was acknowledged".into()))?;
    let ack: PeerHelloAck =
        codec::decode(&ack).map_err(|e: CodecError| hello_error(e.to_string()))?;
    if !ack.accepted {
        conn.close(VarInt::from_u32(close_code::REFUSED), b"hello refused");
        return Err(PeerError::Refused {
            peer,
            reason: ack.reason,
        });
    }
    Ok(())
}

/// Describes a connection error, naming TLS failures as such.
pub(crate) fn describe_connection_error(error: &quinn::ConnectionError) -> String {
    if is_tls_error(error) {
        format!("TLS handshake failed: {error}")
    } else {
        error.to_string()
    }
}

/// Whether a connection failed in the TLS handshake (ours or the peer's verdict).
pub(crate) fn is_tls_error(error: &quinn::ConnectionError) -> bool {
    let is_crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
    match error {
        quinn::ConnectionError::TransportError(e) => is_crypto(e.code),
        quinn::ConnectionError::ConnectionClosed(close) => is_crypto(close.error_code),
        _ => false,
    }
}

async fn accept_loop(shared: Arc<Shared>) {
    while let Some(incoming) = shared.endpoint.accept().await {
        let shared_for_task = shared.clone();
        shared.spawn(async move {
            let remote = incoming.remote_address();
            let timeout = shared_for_task.config.connect_timeout;
            match tokio::time::timeout(timeout, incoming).await {
                Ok(Ok(conn)) => handle_connection(shared_for_task, conn).await,
                Ok(Err(error)) => {
                    shared_for_task.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                    warn!(node = shared_for_task.config.node_id, %remote, error = %describe_connection_error(&error), "refused incoming connection");
                }
                Err(_) => {
                    shared_for_task.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                    warn!(node = shared_for_task.config.node_id, %remote, "incoming handshake timed out");
                }
            }
        });
    }
}

fn negotiated_alpn(conn: &Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

fn peer_leaf_certificate(conn: &Connection) -> Option<CertificateDer<'static>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?
        .into_iter()
        .next()
}

async fn handle_connection(shared: Arc<Shared>, conn: Connection) {
    let node = shared.config.node_id;
    let remote = conn.remote_address();
    match negotiated_alpn(&conn).as_deref() {
        Some(tls::ALPN_CLIENT) => match shared.client_slots.clone().try_acquire_owned() {
            Ok(_slot) => server::serve_client_connection(shared.client.clone(), conn).await,
            Err(_) => {
                shared
                    .stats
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                warn!(node, %remote, limit = shared.config.max_client_connections, "refused client: too many client connections");
                conn.close(
                    VarInt::from_u32(close_code::TOO_MANY_CLIENTS),
                    b"too many client connections",
                );
            }
        },
        Some(tls::ALPN_PEER) => {
            match tokio::time::timeout(shared.config.connect_timeout, accept_hello(&shared, &conn))
                .await
            {
                Ok(Ok((peer, true))) => {
                    debug!(node, peer, %remote, "answered a peer probe");
                    // Keep the connection until the prober has read the answer and closed it.
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
                }
                Ok(Ok((peer, false))) => {
                    info!(node, peer, %remote, "accepted peer connection");
                    let link = ensure_link(&shared, peer);
                    install_connection(&shared, &link, conn);
                }
                Ok(Err(reason)) => {
                    shared
                        .stats
                        .connections_refused
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(node, %remote, %reason, "refused peer connection");
                    conn.close(VarInt::from_u32(close_code::REFUSED), reason.as_bytes());
                }
                Err(_) => {
                    shared
                        .stats
                        .connections_refused
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(node, %remote, "peer hello timed out");
                    conn.close(VarInt::from_u32(close_code::REFUSED), b"hello timed out");
                }
            }
        }
        other => {
            shared
                .stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            warn!(node, %remote, alpn = ?other, "refused connection with unknown ALPN");
            conn.close(
                VarInt::from_u32(close_code::WRONG_ALPN),
                b"unknown application protocol",
            );
        }
    }
}

/// Reads and checks the dialer's hello, answers it, and returns the authenticated peer id.
/// On refusal the refusal is sent to the dialer and the reason returned.
async fn accept_hello(shared: &Arc<Shared>, conn: &Connection) -> Result<(u64, bool), String> {
    let node = shared.config.node_id;
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| format!("no hello stream: {e}"))?;
    let hello = frame::read_frame(&mut recv, HELLO_MAX_BYTES)
        .await
        .map_err(|e| format!("bad hello frame: {e}"))?
        .ok_or_else(|| "hello stream closed without a hello".to_owned())?;
    let hello: PeerHello = codec::decode(&hello).map_err(|e| format!("bad hello: {e}"))?;
    let verdict = if hello.version != PROTOCOL_VERSION {
        Err(format!(
            "protocol version {} not supported (want {PROTOCOL_VERSION})",
            hello.version
        ))
    } else if hello.to != node {
        Err(format!(
            "hello addressed to node {} but this is node {node}",
            hello.to
        ))
    } else if hello.from == node {
        Err(format!("peer claims this node's own id {node}"))
    } else {
        match peer_leaf_certificate(conn) {
            None => Err("no client certificate".to_owned()),
            Some(cert) => {
                tls::verify_node_certificate(&cert, hello.from).map_err(|e| e.to_string())
            }
        }
    };
    let ack = PeerHelloAck {
        accepted: verdict.is_ok(),
        reason: verdict.as_ref().err().cloned().unwrap_or_default(),
    };
    let ack = codec::encode(&ack).map_err(|e| e.to_string())?;
    frame::write_frame(&mut send, &ack, HELLO_MAX_BYTES)
        .await
        .map_err(|e| format!("cannot answer hello: {e}"))?;
    let _ = send.finish();
    if let Err(reason) = verdict {
        // Let the dialer read the refusal before the connection goes (it closes on reading it).
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
        return Err(format!("peer claiming node {}: {reason}", hello.from));
    }
    Ok((hello.from, hello.probe))
}

/// Accepts the peer's unidirectional streams on `conn` and reads each.
async fn read_connection(shared: Arc<Shared>, link: Arc<Link>, conn: Connection) {
    let node = shared.config.node_id;
    let peer = link.peer_id;
    loop {
        match conn.accept_uni().await {
            Ok(recv) => {
                shared.spawn(read_stream(shared.clone(), peer, recv));
            }
            Err(error) => {
                debug!(node, peer, %error, "peer connection closed");
                break;
            }
        }
    }
    link.clear_if_current(&conn);
}

async fn read_stream(shared: Arc<Shared>, peer: u64, mut recv: quinn::RecvStream) {
    let node = shared.config.node_id;
    let mut tag = [0u8; 1];
    let lane = match recv.read_exact(&mut tag).await {
        Ok(()) => match tag[0] {
            STREAM_ORDERED => Lane::Ordered,
            STREAM_BULK => Lane::Bulk,
            other => {
                shared.stats.frames_rejected.fetch_add(1, Ordering::Relaxed);
                warn!(
                    node,
                    peer,
                    tag = other,
                    "rejecting peer stream with unknown tag"
                );
                let _ = recv.stop(VarInt::from_u32(close_code::BAD_STREAM));
                return;
            }
        },
        Err(error) => {
            debug!(node, peer, %error, "peer stream ended before its tag");
            return;
        }
    };
    let mut delayed: Option<mpsc::Sender<(Instant, InboundMessage)>> = None;
    loop {
        match frame::read_frame(&mut recv, shared.config.max_frame_bytes).await {
            Ok(Some(payload)) => {
                if shared.fault.should_drop(peer, Direction::Inbound) {
                    continue;
                }
                let message = InboundMessage {
                    from: peer,
                    payload,
                    lane,
                };
                let delay = shared.fault.delay();
                if delay.is_zero() && delayed.is_none() {
                    if !deliver(&shared, message).await {
                        return;
                    }
                } else {
                    // Once a message of this stream was delayed, every later one goes the same
                    // way, so none overtakes it.
                    let queue = delayed.get_or_insert_with(|| spawn_delayed_delivery(&shared));
                    let release_at = deadline_after(Instant::now(), delay);
                    if queue.send((release_at, message)).await.is_err() {
                        return;
                    }
                }
            }
            Ok(None) => return,
            Err(FrameError::Io(error)) => {
                debug!(node, peer, %error, "peer stream read failed");
                return;
            }
            Err(error) => {
                shared.stats.frames_rejected.fetch_add(1, Ordering::Relaxed);
                warn!(node, peer, ?lane, %error, "rejecting peer stream: bad frame");
                let _ = recv.stop(VarInt::from_u32(close_code::BAD_FRAME));
                return;
            }
        }
    }
}

/// Hands `message` to the node; false when the node stopped listening.
async fn deliver(shared: &Shared, message: InboundMessage) -> bool {
    if shared.inbound.send(message).await.is_err() {
        return false;
    }
    shared
        .stats
        .messages_received
        .fetch_add(1, Ordering::Relaxed);
    true
}

/// Most messages of one stream held back by the fault hook's delay at once; beyond it the
/// stream stops being read and QUIC flow control pushes back on the sender.
const DELAY_QUEUE_MESSAGES: usize = 1024;

/// Starts the task that delivers one stream's delayed messages, each at its own release time.
///
/// Reading goes on while earlier messages wait, so the fault hook's delay is a latency added to
/// every message, as a slow link would add, not a pause between messages that would throttle a
/// busy stream to one message per delay.
fn spawn_delayed_delivery(shared: &Arc<Shared>) -> mpsc::Sender<(Instant, InboundMessage)> {
    let (queue, mut pending) = mpsc::channel::<(Instant, InboundMessage)>(DELAY_QUEUE_MESSAGES);
    let task_shared = shared.clone();
    shared.spawn(async move {
        // Release times never go backwards (the delay may shrink meanwhile): order is kept.
        let mut release = Instant::now();
        while let Some((release_at, message)) = pending.recv().await {
            release = release.max(release_at);
            tokio::time::sleep_until(release).await;
            if !deliver(&task_shared, message).await {
                return;
            }
        }
    });
    queue
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backoff_grows_with_jitter_and_stays_bounded() {
        let min = Duration::from_millis(40);
        let max = Duration::from_millis(1000);
        let mut backoff = Backoff::new(min, max);
        let mut ceiling = min;
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} not in [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(max);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= min);

        // A huge configured maximum saturates instead of overflowing.
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::MAX);
        for _ in 0..200 {
            backoff.next_delay();
        }
        let now = Instant::now();
        assert!(deadline_after(now, Duration::MAX) > now);
    }

    #[test]
    fn config_validation_names_the_field() {
        let ca = crate::ClusterCa::generate("cfg").unwrap();
        let issued = ca.issue_node_cert(1, &[]).unwrap();
        let identity = TlsIdentity::from_issued(ca.cert_pem(), &issued).unwrap();
        let mut config = PeerTransportConfig::new(1, "127.0.0.1:0".parse().unwrap(), identity);
        config.validate().unwrap();
        config.keep_alive_interval = config.idle_timeout;
        let error = config.validate().unwrap_err();
        assert_eq!(error.field, "keep_alive_interval");
        config.keep_alive_interval = Duration::from_secs(1);
        config.max_client_request_bytes = config.max_client_frame_bytes - 1;
        assert_eq!(
            config.validate().unwrap_err().field,
            "max_client_request_bytes"
        );
        config.max_client_request_bytes = usize::MAX;
        assert!(config.validate().is_err());
        config.max_client_request_bytes = config.max_client_frame_bytes;
        config.queue_max_bytes = config.max_frame_bytes - 1;
        assert!(config.validate().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Fuzz: hello decoding never panics on arbitrary bytes.
        #[test]
        fn arbitrary_hello_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = codec::decode::<PeerHello>(&bytes);
            let _ = codec::decode::<PeerHelloAck>(&bytes);
        }

        #[test]
        fn hello_round_trips(version in any::<u32>(), from in any::<u64>(), to in any::<u64>(), probe in any::<bool>()) {
            let hello = PeerHello { version, from, to, probe };
            prop_assert_eq!(codec::decode::<PeerHello>(&codec::encode(&hello).unwrap()).unwrap(), hello);
        }
    }
}
