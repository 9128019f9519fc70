//! Helpers shared by the integration tests: certificates, fast transport settings, bounded waits.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_net::tls;
use shoal_net::{
    ClusterCa, InboundMessage, PeerTransport, PeerTransportConfig, TlsIdentity, TransportChannels,
};
use tokio::sync::mpsc;

/// Bound on any single wait in these tests: a failure fails, it never hangs.
pub const WAIT: Duration = Duration::from_secs(15);

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn node_identity(ca: &ClusterCa, id: u64) -> TlsIdentity {
    let issued = ca.issue_node_cert(id, &["127.0.0.1".into()]).unwrap();
    TlsIdentity::from_issued(ca.cert_pem(), &issued).unwrap()
}

pub fn client_identity(ca: &ClusterCa) -> TlsIdentity {
    let issued = ca.issue_client_cert().unwrap();
    TlsIdentity::from_issued(ca.cert_pem(), &issued).unwrap()
}

/// Short timeouts so reconnect tests run quickly.
pub fn fast_config(id: u64, identity: TlsIdentity, bind: SocketAddr) -> PeerTransportConfig {
    let mut config = PeerTransportConfig::new(id, bind, identity);
    config.reconnect_backoff_min = Duration::from_millis(20);
    config.reconnect_backoff_max = Duration::from_millis(200);
    config.connect_timeout = Duration::from_secs(2);
    config.fallback_dial_after = Duration::from_millis(500);
    config.idle_timeout = Duration::from_secs(3);
    config.keep_alive_interval = Duration::from_millis(500);
    config.enable_fault_hook = true;
    config
}

pub async fn start(ca: &ClusterCa, id: u64) -> (PeerTransport, TransportChannels) {
    PeerTransport::bind(fast_config(id, node_identity(ca, id), loopback()))
        .await
        .unwrap()
}

/// Starts `n` transports with ids 1..=n, each knowing every other's address.
pub async fn mesh(ca: &ClusterCa, n: u64) -> Vec<(PeerTransport, TransportChannels)> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        nodes.push(start(ca, id).await);
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|(t, _)| t.local_addr().unwrap()).collect();
    for (transport, _) in &nodes {
        for (index, addr) in addrs.iter().enumerate() {
            transport.set_peer(index as u64 + 1, *addr);
        }
    }
    nodes
}

pub async fn recv(rx: &mut mpsc::Receiver<InboundMessage>) -> InboundMessage {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a peer message")
        .expect("inbound channel closed")
}

/// Sends `payload` repeatedly until the receiver gets a message equal to it (the first sends may
/// be lost while connections come up or faults heal). Returns how many sends it took.
pub async fn send_until_received(
    from: &PeerTransport,
    to_id: u64,
    rx: &mut mpsc::Receiver<InboundMessage>,
    payload: &'static [u8],
) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut sends = 0;
    loop {
        from.send(to_id, Bytes::from_static(payload)).unwrap();
        sends += 1;
        let wait = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
        if let Ok(Some(message)) = wait
            && message.payload == payload
        {
            assert_eq!(message.from, from.node_id());
            return sends;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message never arrived"
        );
    }
}

/// Polls `condition` every 10 ms until it holds, failing after [`WAIT`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A raw quinn endpoint speaking as node `id` (for protocol-abuse tests).
pub fn raw_peer_endpoint(identity: &TlsIdentity) -> (quinn::Endpoint, quinn::ClientConfig) {
    let endpoint = quinn::Endpoint::client(loopback()).unwrap();
    let config = tls::quic_client_config(tls::peer_client_config(identity).unwrap()).unwrap();
    (endpoint, config)
}

pub fn arc<T>(value: T) -> Arc<T> {
    Arc::new(value)
}

/// Drains what has arrived and fails on any payload not in `allowed` (extra copies of a
/// payload `send_until_received` resent may still arrive late).
pub fn assert_nothing_but(rx: &mut mpsc::Receiver<InboundMessage>, allowed: &[&[u8]]) {
    while let Ok(message) = rx.try_recv() {
        assert!(
            allowed.iter().any(|a| *a == &message.payload[..]),
            "unexpected message {:?} from {}",
            message.payload,
            message.from
        );
    }
}

/// Receives the next message whose payload is not in `skip`.
pub async fn recv_skipping(
    rx: &mut mpsc::Receiver<InboundMessage>,
    skip: &[&[u8]],
) -> InboundMessage {
    loop {
        let message = recv(rx).await;
        if !skip.iter().any(|s| *s == &message.payload[..]) {
            return message;
        }
    }
}
