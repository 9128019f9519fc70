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
//!
//! # Example
//! ```no_run
//! use bytes::Bytes;
//! use shoal_net::{
//!     Client, ClientOptions, ClientResponse, ClusterCa, PeerTransport, PeerTransportConfig,
//!     RequestKind, TlsIdentity,
//! };
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // `shoal init`: a CA, one certificate per node, one for clients (PEM strings to write out).
//! let ca = ClusterCa::generate("demo")?;
//! let node_pem = ca.issue_node_cert(1, &["127.0.0.1".to_owned()])?;
//! let client_pem = ca.issue_client_cert()?;
//!
//! // A node: bind, learn peers, send opaque payloads, receive from authenticated peers.
//! let identity = TlsIdentity::from_issued(ca.cert_pem(), &node_pem)?;
//! let config = PeerTransportConfig::new(1, "127.0.0.1:7001".parse()?, identity);
//! let (transport, mut channels) = PeerTransport::bind(config).await?;
//! transport.set_peer(2, "127.0.0.1:7002".parse()?);
//! transport.send(2, Bytes::from_static(b"raft message bytes"))?;
//! if let Some(message) = channels.peer_messages.recv().await {
//!     println!("from node {}: {} bytes", message.from, message.payload.len());
//! }
//! // Client requests arrive on the same endpoint; answer each through its responder.
//! if let Some(incoming) = channels.client_requests.recv().await {
//!     incoming.responder.respond(&ClientResponse::Ok(b"done".to_vec())).await?;
//! }
//!
//! // A client: any node's address will do; redirects and retries are handled.
//! let client_identity = TlsIdentity::from_issued(ca.cert_pem(), &client_pem)?;
//! let client = Client::new(&client_identity, ClientOptions::new(vec!["127.0.0.1:7001".parse()?]))?;
//! let answer = client.request(RequestKind::Write, b"put k v".to_vec()).await?;
//! # let _ = answer;
//! client.close().await;
//! transport.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod client;
mod coalesce;
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
