//! Client protocol over real QUIC on 127.0.0.1: round trips, redirects, retries, bounds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use shoal_net::protocol::codes;
use shoal_net::{
    Client, ClientError, ClientOptions, ClientRequest, ClientResponse, ClusterCa, IncomingRequest,
    PeerTransport, ReadConsistency, RequestKind,
};
use tokio::sync::mpsc;

type Seen = Arc<Mutex<Vec<(u64, u64, u32, RequestKind)>>>;
/// Bodies and attempt numbers a fake node saw.
type BodiesSeen = Arc<Mutex<Vec<(Vec<u8>, u32)>>>;

/// Runs a fake node: answers each request with `answer(request)` and records what it saw.
fn serve(
    mut requests: mpsc::Receiver<IncomingRequest>,
    answer: impl Fn(&ClientRequest) -> ClientResponse + Send + 'static,
) -> Seen {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Some(IncomingRequest {
            request, responder, ..
        }) = requests.recv().await
        {
            record.lock().unwrap().push((
                request.client_id,
                request.seq,
                request.attempt,
                request.kind,
            ));
            // A response that cannot be sent is the client's problem to report.
            let _ = responder.respond(&answer(&request)).await;
        }
    });
    seen
}

fn echo(request: &ClientRequest) -> ClientResponse {
    let mut body = request.body.clone();
    body.reverse();
    ClientResponse::Ok(body)
}

fn options(addrs: Vec<std::net::SocketAddr>) -> ClientOptions {
    let mut options = ClientOptions::new(addrs);
    options.attempt_timeout = Duration::from_secs(2);
    options.overall_timeout = Duration::from_secs(5);
    options.retry_backoff = Duration::from_millis(10);
    options
}

#[tokio::test]
async fn request_response_round_trip() {
    init_tracing();
    let ca = ClusterCa::generate("client").unwrap();
    let (node, channels) = start(&ca, 1).await;
    let seen = serve(channels.client_requests, echo);
    let client = Client::new(
        &client_identity(&ca),
        options(vec![node.local_addr().unwrap()]),
    )
    .unwrap();

    let answer = client
        .request(RequestKind::Write, b"abc".to_vec())
        .await
        .unwrap();
    assert_eq!(answer, b"cba");
    let read = RequestKind::Read(ReadConsistency::Lease);
    assert_eq!(client.request(read, b"xy".to_vec()).await.unwrap(), b"yx");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (client.client_id(), 1, 0, RequestKind::Write),
            (client.client_id(), 2, 0, read)
        ]
    );
    client.close().await;
    node.shutdown().await;
}

#[tokio::test]
async fn not_leader_redirect_is_followed() {
    init_tracing();
    let ca = ClusterCa::generate("redirect").unwrap();
    let (leader, leader_channels) = start(&ca, 2).await;
    let leader_addr = leader.local_addr().unwrap().to_string();
    let (follower, follower_channels) = start(&ca, 1).await;
    let follower_seen = serve(follower_channels.client_requests, move |_| {
        ClientResponse::NotLeader {
            leader_id: Some(2),
            leader_addr: Some(leader_addr.clone()),
        }
    });
    let leader_seen = serve(leader_channels.client_requests, echo);

    let client = Client::new(
        &client_identity(&ca),
        options(vec![follower.local_addr().unwrap()]),
    )
    .unwrap();
    assert_eq!(
        client
            .request(RequestKind::Write, b"12".to_vec())
            .await
            .unwrap(),
        b"21"
    );
    // Same (client_id, seq) at both nodes; the redirect is attempt 1.
    let id = client.client_id();
    assert_eq!(
        follower_seen.lock().unwrap().clone(),
        vec![(id, 1, 0, RequestKind::Write)]
    );
    assert_eq!(
        leader_seen.lock().unwrap().clone(),
        vec![(id, 1, 1, RequestKind::Write)]
    );

    // The client remembers the leader: the next request goes straight there.
    client
        .request(RequestKind::Write, b"3".to_vec())
        .await
        .unwrap();
    assert_eq!(follower_seen.lock().unwrap().len(), 1);
    assert_eq!(leader_seen.lock().unwrap().len(), 2);
    client.close().await;
    leader.shutdown().await;
    follower.shutdown().await;
}

#[tokio::test]
async fn retries_keep_client_id_and_seq() {
    init_tracing();
    let ca = ClusterCa::generate("retry").unwrap();
    let (node, channels) = start(&ca, 1).await;
    let seen = serve(channels.client_requests, |request| {
        if request.attempt < 2 {
            ClientResponse::Unavailable("no quorum yet".into())
        } else {
            ClientResponse::Ok(Vec::new())
        }
    });
    let client = Client::new(
        &client_identity(&ca),
        options(vec![node.local_addr().unwrap()]),
    )
    .unwrap();
    client
        .request(RequestKind::Write, b"once".to_vec())
        .await
        .unwrap();
    let id = client.client_id();
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![
            (id, 1, 0, RequestKind::Write),
            (id, 1, 1, RequestKind::Write),
            (id, 1, 2, RequestKind::Write)
        ]
    );
    client.close().await;
    node.shutdown().await;
}

#[tokio::test]
async fn rejected_is_returned_without_retry() {
    init_tracing();
    let ca = ClusterCa::generate("rejected").unwrap();
    let (node, channels) = start(&ca, 1).await;
    let seen = serve(channels.client_requests, |_| ClientResponse::Rejected {
        code: codes::NODE_BASE + 4,
        message: "insufficient stock".into(),
    });
    let client = Client::new(
        &client_identity(&ca),
        options(vec![node.local_addr().unwrap()]),
    )
    .unwrap();
    let error = client
        .request(RequestKind::Write, Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Rejected { code, message } if *code == 104 && message == "insufficient stock"),
        "{error}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    client.close().await;
    node.shutdown().await;
}

#[tokio::test]
async fn unavailable_cluster_fails_within_the_bound() {
    init_tracing();
    let ca = ClusterCa::generate("down").unwrap();
    // One node that always says Unavailable, one address where nothing listens.
    let (node, channels) = start(&ca, 1).await;
    serve(channels.client_requests, |_| {
        ClientResponse::Unavailable("no leader".into())
    });
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut options = options(vec![
        node.local_addr().unwrap(),
        silent.local_addr().unwrap(),
    ]);
    options.attempt_timeout = Duration::from_millis(300);
    options.overall_timeout = Duration::from_millis(1500);
    let client = Client::new(&client_identity(&ca), options).unwrap();
    let started = Instant::now();
    let error = client
        .request(RequestKind::Write, Vec::new())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(error, ClientError::Unavailable { .. }), "{error}");
    client.close().await;
    node.shutdown().await;
}

#[tokio::test]
async fn full_request_queue_answers_unavailable_at_once() {
    init_tracing();
    let ca = ClusterCa::generate("shed").unwrap();
    let mut config = fast_config(1, node_identity(&ca, 1), loopback());
    config.client_request_capacity = 1;
    let (node, channels) = PeerTransport::bind(config).await.unwrap();
    // Nobody consumes the channel: the first request fills it, the second is shed.
    let client = Client::new(
        &client_identity(&ca),
        options(vec![node.local_addr().unwrap()]),
    )
    .unwrap();
    let addr = node.local_addr().unwrap();
    let request = |seq| ClientRequest {
        client_id: 9,
        seq,
        attempt: 0,
        kind: RequestKind::Write,
        body: Vec::new(),
    };
    let client = Arc::new(client);
    let first = tokio::spawn({
        let client = client.clone();
        let request = request(1);
        async move { client.send_once(addr, &request).await }
    });
    wait_until("first request queued", || {
        channels.client_requests.len() == 1
    })
    .await;
    assert!(
        !first.is_finished(),
        "the first request is queued, not answered"
    );
    let second = tokio::time::timeout(WAIT, client.send_once(addr, &request(2)))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(second, ClientResponse::Unavailable(ref m) if m.contains("overloaded")),
        "{second:?}"
    );
    assert_eq!(node.stats().client_requests_shed, 1);
    first.abort();
    client.close().await;
    node.shutdown().await;
}

#[tokio::test]
async fn client_connections_beyond_the_limit_are_refused_with_a_reason() {
    init_tracing();
    let ca = ClusterCa::generate("limit").unwrap();
    let mut config = fast_config(1, node_identity(&ca, 1), loopback());
    config.max_client_connections = 1;
    let (node, channels) = PeerTransport::bind(config).await.unwrap();
    serve(channels.client_requests, echo);
    let addr = node.local_addr().unwrap();
    let first = Client::new(&client_identity(&ca), options(vec![addr])).unwrap();
    first
        .request(RequestKind::Write, b"1".to_vec())
        .await
        .unwrap();

    let mut limited = options(vec![addr]);
    limited.max_attempts = 2;
    let second = Client::new(&client_identity(&ca), limited).unwrap();
    let error = second
        .request(RequestKind::Write, b"2".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Unavailable { .. }), "{error}");
    assert!(
        error.to_string().contains("too many client connections"),
        "{error}"
    );

    // When the first client leaves, its slot is free again.
    first.close().await;
    let third = Client::new(&client_identity(&ca), options(vec![addr])).unwrap();
    third
        .request(RequestKind::Write, b"3".to_vec())
        .await
        .unwrap();
    second.close().await;
    third.close().await;
    node.shutdown().await;
}

/// The state machine keeps only each client id's latest `seq`: two requests of one client id in
/// flight at once could land out of order, and the older one (or its retry, after it was in fact
/// applied) would be refused as stale. Concurrent `request` calls must therefore never share a
/// client id while in flight, and lanes are reused once free.
#[tokio::test]
async fn concurrent_requests_never_share_a_client_id_in_flight() {
    init_tracing();
    let ca = ClusterCa::generate("lanes").unwrap();
    let (node, mut channels) = start(&ca, 1).await;
    let client = Arc::new(
        Client::new(
            &client_identity(&ca),
            options(vec![node.local_addr().unwrap()]),
        )
        .unwrap(),
    );
    const IN_FLIGHT: usize = 6;
    let calls: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .request(RequestKind::Write, vec![u8::try_from(i).unwrap()])
                    .await
            })
        })
        .collect();
    // Hold every request unanswered until all have arrived: they are all in flight together.
    let mut held = Vec::new();
    while held.len() < IN_FLIGHT {
        let incoming = tokio::time::timeout(WAIT, channels.client_requests.recv())
            .await
            .unwrap()
            .unwrap();
        held.push(incoming);
    }
    let mut ids: Vec<u64> = held.iter().map(|i| i.request.client_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), IN_FLIGHT, "requests in flight share a client id");
    assert!(
        ids.contains(&client.client_id()),
        "the first lane is client_id()"
    );
    assert!(!ids.contains(&0), "client id 0 means no deduplication");
    // Answer in reverse order of arrival.
    for incoming in held.into_iter().rev() {
        let body = incoming.request.body.clone();
        incoming
            .responder
            .respond(&ClientResponse::Ok(body))
            .await
            .unwrap();
    }
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), vec![u8::try_from(i).unwrap()]);
    }
    // Lanes are reused: a later request takes one of the ids already used, with a higher seq.
    let seen = serve(channels.client_requests, echo);
    client
        .request(RequestKind::Write, b"again".to_vec())
        .await
        .unwrap();
    let (id, seq, _, _) = seen.lock().unwrap()[0];
    assert!(
        ids.contains(&id),
        "a fresh client id was made for a lone request"
    );
    assert!(seq >= 2, "lane sequence restarted: seq {seq}");
    client.close().await;
    node.shutdown().await;
}

/// Both ends read each one-frame stream to its end instead of dropping it early: a stream
/// dropped unread makes quinn send STOP_SENDING, a datagram per request each way under load.
#[tokio::test]
async fn request_streams_are_read_to_the_end_not_stopped() {
    init_tracing();
    let ca = ClusterCa::generate("stop").unwrap();
    let (node, channels) = start(&ca, 1).await;
    let addr = node.local_addr().unwrap();
    serve(channels.client_requests, echo);
    let client = Client::new(&client_identity(&ca), options(vec![addr])).unwrap();
    for i in 0..20u8 {
        let answer = client
            .request(RequestKind::Write, vec![i; 100])
            .await
            .unwrap();
        assert_eq!(answer, vec![i; 100]);
    }
    let stats = client.connection_stats(addr).await.unwrap();
    assert_eq!(
        stats.frame_tx.stop_sending, 0,
        "the client stopped answer streams"
    );
    assert_eq!(
        stats.frame_rx.stop_sending, 0,
        "the node stopped request streams"
    );
    assert!(stats.frame_tx.stream >= 20, "{:?}", stats.frame_tx);
    client.close().await;
    node.shutdown().await;
}

/// Durations come from config files and flags: one too long to add to an `Instant` must not
/// panic the client.
#[tokio::test]
async fn huge_timeouts_do_not_panic() {
    init_tracing();
    let ca = ClusterCa::generate("huge").unwrap();
    let (node, channels) = start(&ca, 1).await;
    let seen = serve(channels.client_requests, |request| {
        if request.attempt == 0 {
            ClientResponse::Unavailable("not yet".into())
        } else {
            echo(request)
        }
    });
    let mut options = options(vec![node.local_addr().unwrap()]);
    options.overall_timeout = Duration::MAX;
    options.retry_backoff = Duration::from_millis(1);
    let client = Client::new(&client_identity(&ca), options).unwrap();
    let answer = tokio::time::timeout(WAIT, client.request(RequestKind::Write, b"ab".to_vec()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, b"ba");
    assert_eq!(seen.lock().unwrap().len(), 2);
    client.close().await;
    node.shutdown().await;
}

/// A request that times out on a node that is alive (it acknowledges, it answers others) must
/// not tear down the connection every other request to that node shares.
#[tokio::test]
async fn a_slow_answer_does_not_break_other_requests_on_the_connection() {
    init_tracing();
    let ca = ClusterCa::generate("slow").unwrap();
    let (node, mut channels) = start(&ca, 1).await;
    let mut options = options(vec![node.local_addr().unwrap()]);
    options.attempt_timeout = Duration::from_secs(1);
    options.overall_timeout = Duration::from_secs(10);
    let client = Arc::new(Client::new(&client_identity(&ca), options).unwrap());
    let seen: BodiesSeen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        let mut slow = None;
        while let Some(IncomingRequest {
            request, responder, ..
        }) = channels.client_requests.recv().await
        {
            record
                .lock()
                .unwrap()
                .push((request.body.clone(), request.attempt));
            match &request.body[..] {
                b"warm" => responder
                    .respond(&ClientResponse::Ok(Vec::new()))
                    .await
                    .unwrap(),
                // Held until the other request's first attempt has timed out.
                b"slow" => slow = Some(responder),
                // Never answered while the test runs; its retry proves its first attempt timed
                // out, and releases the slow answer.
                _ => {
                    held.push(responder);
                    if request.attempt > 0
                        && let Some(slow) = slow.take()
                    {
                        let _ = slow.respond(&ClientResponse::Ok(b"slow".to_vec())).await;
                    }
                }
            }
        }
    });
    // Open the connection first, so both requests share it.
    client
        .request(RequestKind::Write, b"warm".to_vec())
        .await
        .unwrap();
    let never = tokio::spawn({
        let client = client.clone();
        async move { client.request(RequestKind::Write, b"never".to_vec()).await }
    });
    // Half way through the first one's attempt.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let slow = client
        .request(RequestKind::Write, b"slow".to_vec())
        .await
        .unwrap();
    assert_eq!(slow, b"slow");
    let seen = seen.lock().unwrap().clone();
    let attempts = |body: &[u8]| -> Vec<u32> {
        seen.iter()
            .filter(|(b, _)| b == body)
            .map(|(_, attempt)| *attempt)
            .collect()
    };
    assert!(
        attempts(b"never").len() >= 2,
        "the unanswered request timed out and was retried meanwhile: {seen:?}"
    );
    assert_eq!(
        attempts(b"slow"),
        vec![0],
        "the slow request lost its connection to the other's timeout"
    );
    never.abort();
    client.close().await;
    node.shutdown().await;
}

/// Requests that find no connection to a node at the same moment (a fresh client under load,
/// or every request in flight after a failover) share one dial instead of each making its own
/// handshake.
#[tokio::test]
async fn concurrent_requests_share_one_dial() {
    init_tracing();
    let ca = ClusterCa::generate("one-dial").unwrap();
    let mut config = fast_config(1, node_identity(&ca, 1), loopback());
    // Any second connection from this client would be refused, and counted.
    config.max_client_connections = 1;
    let (node, channels) = PeerTransport::bind(config).await.unwrap();
    serve(channels.client_requests, echo);
    let client = Arc::new(
        Client::new(
            &client_identity(&ca),
            options(vec![node.local_addr().unwrap()]),
        )
        .unwrap(),
    );
    let calls: Vec<_> = (0..16u8)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.request(RequestKind::Write, vec![i]).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), vec![u8::try_from(i).unwrap()]);
    }
    assert_eq!(
        node.stats().connections_refused,
        0,
        "requests dialed the node separately"
    );
    client.close().await;
    node.shutdown().await;
}

/// An answer too large for the client frame bound can never be sent: the client is told so
/// once, instead of retrying (and the node re-executing) until it gives up as "unavailable".
#[tokio::test]
async fn an_oversized_answer_is_refused_once_not_retried() {
    init_tracing();
    let ca = ClusterCa::generate("big-answer").unwrap();
    let mut config = fast_config(1, node_identity(&ca, 1), loopback());
    config.max_client_frame_bytes = 1024;
    let (node, channels) = PeerTransport::bind(config).await.unwrap();
    let seen = serve(channels.client_requests, |_| {
        ClientResponse::Ok(vec![7; 4096])
    });
    let client = Client::new(
        &client_identity(&ca),
        options(vec![node.local_addr().unwrap()]),
    )
    .unwrap();
    let error = client
        .request(RequestKind::Read(ReadConsistency::Linearizable), Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Rejected { code, message } if *code == codes::TOO_LARGE && message.contains("too large")),
        "{error}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "the request was retried");
    client.close().await;
    node.shutdown().await;
}

/// Client requests held by a node (read, queued or being answered) are bounded in bytes, not
/// only in number: past the budget a request is answered `Unavailable` at once, and the budget
/// comes back when a request is answered.
#[tokio::test]
async fn request_bytes_held_by_a_node_are_bounded() {
    init_tracing();
    let ca = ClusterCa::generate("request-bytes").unwrap();
    let mut config = fast_config(1, node_identity(&ca, 1), loopback());
    config.max_client_frame_bytes = 4096;
    config.max_client_request_bytes = 4096;
    let (node, mut channels) = PeerTransport::bind(config).await.unwrap();
    let addr = node.local_addr().unwrap();
    let client = Arc::new(Client::new(&client_identity(&ca), options(vec![addr])).unwrap());
    let request = |seq, len| ClientRequest {
        client_id: 5,
        seq,
        attempt: 0,
        kind: RequestKind::Write,
        body: vec![1; len],
    };
    // A 3 KiB request, held by the node without an answer.
    let first = tokio::spawn({
        let client = client.clone();
        let request = request(1, 3000);
        async move { client.send_once(addr, &request).await }
    });
    let held = tokio::time::timeout(WAIT, channels.client_requests.recv())
        .await
        .unwrap()
        .unwrap();
    // Another 3 KiB would exceed the 4 KiB budget: shed at once.
    let second = tokio::time::timeout(WAIT, client.send_once(addr, &request(2, 3000)))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&second, ClientResponse::Unavailable(m) if m.contains("request bytes")),
        "{second:?}"
    );
    assert!(channels.client_requests.try_recv().is_err());
    // Once the first is answered, its bytes are free again.
    held.responder
        .respond(&ClientResponse::Ok(Vec::new()))
        .await
        .unwrap();
    assert_eq!(
        first.await.unwrap().unwrap(),
        ClientResponse::Ok(Vec::new())
    );
    let third = tokio::spawn({
        let client = client.clone();
        let request = request(3, 3000);
        async move { client.send_once(addr, &request).await }
    });
    let incoming = tokio::time::timeout(WAIT, channels.client_requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(incoming.request.seq, 3);
    incoming
        .responder
        .respond(&ClientResponse::Ok(Vec::new()))
        .await
        .unwrap();
    assert_eq!(
        third.await.unwrap().unwrap(),
        ClientResponse::Ok(Vec::new())
    );
    client.close().await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_silent_node_is_passed_over_by_the_connect_timeout() {
    init_tracing();
    let ca = ClusterCa::generate("failover").unwrap();
    let (node, channels) = start(&ca, 1).await;
    serve(channels.client_requests, echo);
    // A socket that receives datagrams but never answers: a killed or paused node.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut options = options(vec![
        silent.local_addr().unwrap(),
        node.local_addr().unwrap(),
    ]);
    // An attempt timeout longer than the whole request's bound: only the handshake bound can
    // move the client from the silent address to the live node in time.
    options.attempt_timeout = Duration::from_secs(60);
    options.overall_timeout = Duration::from_secs(4);
    options.connect_timeout = Duration::from_millis(200);
    let client = Client::new(&client_identity(&ca), options).unwrap();
    let answer = client
        .request(RequestKind::Write, b"xyz".to_vec())
        .await
        .expect("the live node answers after the silent one times out");
    assert_eq!(answer, b"zyx");
    client.close().await;
    node.shutdown().await;
}
