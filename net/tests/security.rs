//! Security promises: mutual TLS under the cluster CA, authenticated peer ids, and bad bytes
//! rejected without harm to the endpoint or other peers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use rand::{Rng, SeedableRng};
use shoal_net::frame::{self, FRAME_HEADER_LEN};
use shoal_net::peer::{
    HELLO_MAX_BYTES, PROTOCOL_VERSION, PeerHello, PeerHelloAck, STREAM_BULK, STREAM_ORDERED,
};
use shoal_net::protocol::codes;
use shoal_net::{
    Client, ClientError, ClientOptions, ClientRequest, ClientResponse, ClusterCa, IncomingRequest,
    PeerError, PeerTransport, RequestKind, TlsIdentity, tls,
};

#[tokio::test]
async fn peer_with_certificate_from_another_ca_is_refused() {
    init_tracing();
    let ca = ClusterCa::generate("ours").unwrap();
    let other = ClusterCa::generate("theirs").unwrap();
    let (ours, mut ours_rx) = start(&ca, 2).await;
    // The intruder has the lower id, so it dials on its own, and a node-1 cert of another CA.
    let (intruder, _intruder_rx) = start(&other, 1).await;
    intruder.set_peer(2, ours.local_addr().unwrap());
    intruder.send(2, Bytes::from_static(b"let me in")).unwrap();
    wait_until("the intruder is refused", || {
        ours.stats().connections_refused >= 1
    })
    .await;
    match intruder.check_peer(2).await {
        Err(PeerError::Connect { message, .. }) => assert!(message.contains("TLS"), "{message}"),
        other => panic!("expected a TLS refusal, got {other:?}"),
    }
    // And the other way: our node refuses to talk to a server with a foreign certificate.
    ours.set_peer(1, intruder.local_addr().unwrap());
    match ours.check_peer(1).await {
        Err(PeerError::Connect { message, .. }) => assert!(message.contains("TLS"), "{message}"),
        other => panic!("expected a TLS refusal, got {other:?}"),
    }
    assert!(ours_rx.peer_messages.try_recv().is_err());
    assert!(!ours.is_connected(1));
    ours.shutdown().await;
    intruder.shutdown().await;
}

#[tokio::test]
async fn client_with_wrong_ca_gets_a_clear_tls_error() {
    init_tracing();
    let ca = ClusterCa::generate("ours").unwrap();
    let other = ClusterCa::generate("theirs").unwrap();
    let (node, _channels) = start(&ca, 1).await;
    let addr = node.local_addr().unwrap();
    let mut options = ClientOptions::new(vec![addr]);
    options.max_attempts = 2;
    options.retry_backoff = std::time::Duration::from_millis(10);

    // Entirely another cluster's material: our node's certificate is unknown to the client.
    let foreign = Client::new(&client_identity(&other), options.clone()).unwrap();
    let error = foreign
        .request(RequestKind::Write, Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Tls { .. }), "{error}");
    assert!(error.to_string().contains("TLS"), "{error}");

    // Our CA as root but a client certificate from another CA: the node refuses it.
    let other_client = other.issue_client_cert().unwrap();
    let mixed = TlsIdentity::from_pem(ca.cert_pem(), &other_client.cert_pem, &other_client.key_pem)
        .unwrap();
    let mixed = Client::new(&mixed, options).unwrap();
    let error = mixed
        .request(RequestKind::Write, Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Tls { .. }), "{error}");
    wait_until("the node counted the refusals", || {
        node.stats().connections_refused >= 2
    })
    .await;
    foreign.close().await;
    mixed.close().await;
    node.shutdown().await;
}

#[tokio::test]
async fn client_certificate_cannot_pass_as_a_node() {
    init_tracing();
    let ca = ClusterCa::generate("roles").unwrap();
    let (node, _channels) = start(&ca, 1).await;
    let (_endpoint, _conn, ack) = raw_hello(&client_identity(&ca), 2, &node).await;
    assert!(!ack.accepted);
    assert!(ack.reason.contains("node certificate"), "{}", ack.reason);
    // A node certificate claiming another node's id is refused too.
    let (_endpoint, _conn, ack) = raw_hello(&node_identity(&ca, 2), 3, &node).await;
    assert!(!ack.accepted);
    assert!(ack.reason.contains("node 3"), "{}", ack.reason);
    // So is a hello addressed to another node.
    let (_endpoint, _conn, ack) = raw_hello_to(&node_identity(&ca, 2), 2, 5, &node).await;
    assert!(!ack.accepted);
    assert!(ack.reason.contains("addressed to node 5"), "{}", ack.reason);
    wait_until("three refusals", || node.stats().connections_refused >= 3).await;
    assert!(!node.is_connected(2) && !node.is_connected(3));
    node.shutdown().await;
}

#[tokio::test]
async fn a_transport_refuses_to_start_with_another_nodes_certificate() {
    let ca = ClusterCa::generate("mismatch").unwrap();
    let error = PeerTransport::bind(fast_config(3, node_identity(&ca, 2), loopback()))
        .await
        .unwrap_err();
    assert!(matches!(error, PeerError::Tls(_)), "{error}");
    assert!(error.to_string().contains("node 3"), "{error}");
    let error = PeerTransport::bind(fast_config(1, client_identity(&ca), loopback()))
        .await
        .unwrap_err();
    assert!(matches!(error, PeerError::Tls(_)), "{error}");
}

/// Connects to `target` with `identity`, claiming to be node `from`, and returns the answer to
/// the hello.
async fn raw_hello(
    identity: &TlsIdentity,
    from: u64,
    target: &PeerTransport,
) -> (quinn::Endpoint, quinn::Connection, PeerHelloAck) {
    raw_hello_to(identity, from, target.node_id(), target).await
}

async fn raw_hello_to(
    identity: &TlsIdentity,
    from: u64,
    to: u64,
    target: &PeerTransport,
) -> (quinn::Endpoint, quinn::Connection, PeerHelloAck) {
    let (endpoint, config) = raw_peer_endpoint(identity);
    let conn = endpoint
        .connect_with(
            config,
            target.local_addr().unwrap(),
            &tls::node_server_name(target.node_id()),
        )
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = shoal_net::encode(&PeerHello {
        version: PROTOCOL_VERSION,
        from,
        to,
        probe: false,
    })
    .unwrap();
    frame::write_frame(&mut send, &hello, HELLO_MAX_BYTES)
        .await
        .unwrap();
    send.finish().unwrap();
    let ack = frame::read_frame(&mut recv, HELLO_MAX_BYTES)
        .await
        .unwrap()
        .unwrap();
    let ack: PeerHelloAck = shoal_net::decode(&ack).unwrap();
    (endpoint, conn, ack)
}

/// Connects to `target` as node `id` with a raw quinn endpoint and completes the hello.
async fn raw_peer(
    ca: &ClusterCa,
    id: u64,
    target: &PeerTransport,
) -> (quinn::Endpoint, quinn::Connection) {
    let (endpoint, conn, ack) = raw_hello(&node_identity(ca, id), id, target).await;
    assert!(ack.accepted, "{}", ack.reason);
    (endpoint, conn)
}

async fn raw_stream(conn: &quinn::Connection, bytes: &[u8]) {
    let mut stream = conn.open_uni().await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream.finish().unwrap();
}

#[tokio::test]
async fn malformed_and_oversized_peer_frames_are_rejected_without_harm() {
    init_tracing();
    let ca = ClusterCa::generate("frames").unwrap();
    let mut nodes = mesh(&ca, 3).await;
    let (c, mut c_rx) = nodes.pop().unwrap();
    let (_b, _b_rx) = nodes.pop().unwrap();
    let (a, mut a_rx) = nodes.pop().unwrap();
    let (_endpoint, raw) = raw_peer(&ca, 2, &a).await;

    // 1. A header announcing 4 GiB - 1 bytes.
    let mut oversized = vec![STREAM_ORDERED];
    oversized.extend_from_slice(&u32::MAX.to_le_bytes());
    oversized.extend_from_slice(&0u32.to_le_bytes());
    raw_stream(&raw, &oversized).await;
    // 2. A frame whose checksum does not match.
    let mut corrupt = vec![STREAM_BULK];
    corrupt.extend_from_slice(&frame::frame_bytes(b"payload", 1024).unwrap());
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    raw_stream(&raw, &corrupt).await;
    // 3. An unknown stream tag, 4. a frame cut short.
    raw_stream(&raw, &[0x7f, 1, 2, 3]).await;
    let mut cut = vec![STREAM_ORDERED];
    cut.extend_from_slice(&frame::frame_bytes(b"cut short", 1024).unwrap()[..FRAME_HEADER_LEN + 2]);
    raw_stream(&raw, &cut).await;
    wait_until("all four streams rejected", || {
        a.stats().frames_rejected >= 4
    })
    .await;

    // The same connection still carries good frames.
    let mut good = vec![STREAM_ORDERED];
    good.extend_from_slice(&frame::frame_bytes(b"good frame", 1024).unwrap());
    raw_stream(&raw, &good).await;
    let message = recv(&mut a_rx.peer_messages).await;
    assert_eq!(
        (message.from, &message.payload[..]),
        (2, &b"good frame"[..])
    );

    // And other peers are unaffected.
    send_until_received(&a, 3, &mut c_rx.peer_messages, b"still here").await;
    send_until_received(&c, 1, &mut a_rx.peer_messages, b"me too").await;
    a.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn malformed_client_requests_are_answered_and_the_connection_goes_on() {
    init_tracing();
    let ca = ClusterCa::generate("bad-requests").unwrap();
    let (node, channels) = start(&ca, 1).await;
    let mut requests = channels.client_requests;
    tokio::spawn(async move {
        while let Some(IncomingRequest { responder, .. }) = requests.recv().await {
            responder
                .respond(&ClientResponse::Ok(b"fine".to_vec()))
                .await
                .unwrap();
        }
    });
    let endpoint = quinn::Endpoint::client(loopback()).unwrap();
    let config =
        tls::quic_client_config(tls::client_client_config(&client_identity(&ca)).unwrap()).unwrap();
    let conn = endpoint
        .connect_with(config, node.local_addr().unwrap(), tls::NODE_SERVER_NAME)
        .unwrap()
        .await
        .unwrap();

    async fn exchange(conn: &quinn::Connection, bytes: &[u8]) -> ClientResponse {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        // The server may stop reading early (oversized); ignore write errors.
        let _ = send.write_all(bytes).await;
        let _ = send.finish();
        let payload = frame::read_frame(&mut recv, 1 << 20)
            .await
            .unwrap()
            .unwrap();
        ClientResponse::from_bytes(&payload).unwrap()
    }

    let garbage = frame::frame_bytes(&[0xAB; 37], 1024).unwrap();
    match exchange(&conn, &garbage).await {
        ClientResponse::Rejected { code, .. } => assert_eq!(code, codes::MALFORMED),
        other => panic!("{other:?}"),
    }
    let mut oversized = Vec::new();
    oversized.extend_from_slice(&(64u32 << 20).to_le_bytes());
    oversized.extend_from_slice(&0u32.to_le_bytes());
    match exchange(&conn, &oversized).await {
        ClientResponse::Rejected { code, .. } => assert_eq!(code, codes::TOO_LARGE),
        other => panic!("{other:?}"),
    }
    let mut bad_crc = frame::frame_bytes(b"xyz", 1024).unwrap().to_vec();
    bad_crc[4] ^= 1;
    match exchange(&conn, &bad_crc).await {
        ClientResponse::Rejected { code, message } => {
            assert_eq!(code, codes::MALFORMED);
            assert!(message.contains("checksum"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let valid = ClientRequest {
        client_id: 1,
        seq: 1,
        attempt: 0,
        kind: RequestKind::Write,
        body: vec![1],
    };
    let valid = frame::frame_bytes(&valid.to_bytes().unwrap(), 1024).unwrap();
    // A stream carries one request: a second frame after it is refused, not ignored.
    let twice = [valid.as_ref(), valid.as_ref()].concat();
    match exchange(&conn, &twice).await {
        ClientResponse::Rejected { code, message } => {
            assert_eq!(code, codes::MALFORMED);
            assert!(message.contains("only frame"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        exchange(&conn, &valid).await,
        ClientResponse::Ok(b"fine".to_vec())
    );
    assert!(node.stats().frames_rejected >= 4);
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    node.shutdown().await;
}

#[tokio::test]
async fn random_udp_datagrams_do_not_hurt_the_endpoint() {
    init_tracing();
    let ca = ClusterCa::generate("noise").unwrap();
    let mut nodes = mesh(&ca, 2).await;
    let (b, mut b_rx) = nodes.pop().unwrap();
    let (a, a_channels) = nodes.pop().unwrap();
    let mut requests = a_channels.client_requests;
    tokio::spawn(async move {
        while let Some(IncomingRequest { responder, .. }) = requests.recv().await {
            responder
                .respond(&ClientResponse::Ok(Vec::new()))
                .await
                .unwrap();
        }
    });
    send_until_received(&a, 2, &mut b_rx.peer_messages, b"before noise").await;

    let socket = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let target = a.local_addr().unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    for i in 0..2000 {
        let len = rng.random_range(0..1500);
        let mut datagram: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if i % 3 == 0 && !datagram.is_empty() {
            // Look like a QUIC long header (initial packet) to reach deeper parsing.
            datagram[0] = 0xc0 | (datagram[0] & 0x0f);
            if datagram.len() > 5 {
                datagram[1..5].copy_from_slice(&1u32.to_be_bytes());
            }
        }
        socket.send_to(&datagram, target).await.unwrap();
    }

    send_until_received(&a, 2, &mut b_rx.peer_messages, b"after noise").await;
    let client = Client::new(&client_identity(&ca), ClientOptions::new(vec![target])).unwrap();
    client
        .request(RequestKind::Write, Vec::new())
        .await
        .unwrap();
    client.close().await;
    a.shutdown().await;
    b.shutdown().await;
}

/// A holder of a client certificate (signed by the cluster CA) cannot pose as a node to other
/// clients: client certificates are not valid for the name `shoal-node` nor for server auth.
#[tokio::test]
async fn client_certificate_cannot_serve_as_a_node() {
    init_tracing();
    let ca = ClusterCa::generate("impostor").unwrap();
    let impostor_identity = client_identity(&ca);
    let server = tls::quic_server_config(tls::server_config(&impostor_identity).unwrap()).unwrap();
    let impostor = quinn::Endpoint::server(server, loopback()).unwrap();
    let addr = impostor.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = impostor.accept().await {
            let _ = incoming.await;
        }
    });
    let mut options = ClientOptions::new(vec![addr]);
    options.max_attempts = 2;
    options.retry_backoff = std::time::Duration::from_millis(10);
    let client = Client::new(&client_identity(&ca), options).unwrap();
    let error = client
        .request(RequestKind::Write, Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Tls { .. }), "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");
    client.close().await;
}
