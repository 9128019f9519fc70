//! Shoal's network layer: QUIC (quinn) between peers and from clients, mutual TLS under the
//! cluster CA, crc32-checked frames, and the client protocol.
//!
//! `net` knows nothing of Raft or the shop: it moves opaque payloads between nodes identified by
//! `u64` ids, and carries client requests whose bodies the node interprets.
//!
//! # Layout
//! - [`tls`]: the cluster CA and certificates (`shoal init`), loading PEM, rustls configs with
//!   ALPN `shoal-peer/1` and `shoal-client/1`, node-certificate checks.
//! - [`frame`]: `u32 length + u32 crc32 + payload` frames with a size bound.
//! - [`codec`]: rkyv encode and validated decode.
//! - [`peer`]: [`PeerTransport`], one endpoint per node: ordered and bulk lanes to peers, bounded
//!   queues, reconnects, and the intake of client connections.
//! - [`protocol`]: [`ClientRequest`] and [`ClientResponse`].
//! - [`server`]: [`IncomingRequest`] and [`Responder`], the node's side of a client request.
//! - [`client`]: [`Client`], which finds the leader and retries with the same `(client_id, seq)`.
//! - [`fault`]: [`FaultHook`], drops and delays peer traffic in tests and chaos runs.

pub mod client;
pub mod codec;
pub mod fault;
pub mod frame;
pub mod peer;
pub mod protocol;
pub mod server;
pub mod tls;

pub use client::{Client, ClientError, ClientOptions};
pub use codec::{CodecError, decode, encode};
pub use fault::{FaultCommand, FaultHook, FaultSettings};
pub use frame::{DEFAULT_MAX_FRAME_BYTES, FrameError};
pub use peer::{
    InboundMessage, Lane, PeerError, PeerStatus, PeerTransport, PeerTransportConfig, SendError,
    TransportChannels, TransportStats,
};
pub use protocol::{ClientRequest, ClientResponse, ReadConsistency, RequestKind};
pub use server::{IncomingRequest, RespondError, Responder};
pub use tls::{CertificatePem, ClusterCa, TlsError, TlsIdentity, ensure_crypto_provider};
