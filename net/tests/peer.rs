//! Peer transport over real QUIC on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use shoal_net::{ClusterCa, Lane, PeerTransport, SendError};

#[tokio::test]
async fn two_transports_exchange_messages_in_order() {
    init_tracing();
    let ca = ClusterCa::generate("two").unwrap();
    let mut nodes = mesh(&ca, 2).await;
    let (b, mut b_rx) = nodes.pop().unwrap();
    let (a, mut a_rx) = nodes.pop().unwrap();

    for i in 0u32..500 {
        a.send(2, Bytes::from(i.to_le_bytes().to_vec())).unwrap();
    }
    for i in 0u32..500 {
        let message = recv(&mut b_rx.peer_messages).await;
        assert_eq!(message.from, 1);
        assert_eq!(message.lane, Lane::Ordered);
        assert_eq!(
            message.payload,
            &i.to_le_bytes()[..],
            "message {i} out of order"
        );
    }

    // The other direction reuses the same connection (node 2 never dials node 1).
    for i in 0u32..100 {
        b.send(1, Bytes::from(i.to_le_bytes().to_vec())).unwrap();
    }
    for i in 0u32..100 {
        let message = recv(&mut a_rx.peer_messages).await;
        assert_eq!(
            (message.from, message.payload),
            (2, Bytes::from(i.to_le_bytes().to_vec()))
        );
    }
    assert_eq!(a.stats().peer_connections, 1);
    assert_eq!(b.stats().peer_connections, 1);
    assert_eq!(a.stats().dropped_queue_full, 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn three_transports_exchange_between_every_pair() {
    init_tracing();
    let ca = ClusterCa::generate("three").unwrap();
    let mut nodes = mesh(&ca, 3).await;
    for from in 1..=3u64 {
        for to in 1..=3u64 {
            if from != to {
                let payload = format!("{from}->{to}");
                nodes[from as usize - 1]
                    .0
                    .send(to, Bytes::from(payload))
                    .unwrap();
            }
        }
    }
    for to in 1..=3u64 {
        let mut got = Vec::new();
        for _ in 0..2 {
            let message = recv(&mut nodes[to as usize - 1].1.peer_messages).await;
            assert_eq!(
                message.payload,
                format!("{}->{to}", message.from).as_bytes()
            );
            got.push(message.from);
        }
        got.sort_unstable();
        let expected: Vec<u64> = (1..=3).filter(|id| *id != to).collect();
        assert_eq!(got, expected);
    }
    for (transport, _) in &nodes {
        assert_eq!(
            transport.stats().peer_connections,
            2,
            "node {}",
            transport.node_id()
        );
        transport.shutdown().await;
    }
}

#[tokio::test]
async fn bulk_lane_carries_large_payloads_beside_the_ordered_lane() {
    init_tracing();
    let ca = ClusterCa::generate("bulk").unwrap();
    let mut nodes = mesh(&ca, 2).await;
    let (b, mut b_rx) = nodes.pop().unwrap();
    let (a, _a_rx) = nodes.pop().unwrap();
    let a = arc(a);
    send_until_received(&a, 2, &mut b_rx.peer_messages, b"warm-up").await;

    let chunk = Bytes::from(
        (0..4 * 1024 * 1024)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let bulk = tokio::spawn({
        let a = a.clone();
        let chunk = chunk.clone();
        async move { a.send_bulk(2, chunk).await }
    });
    // Heartbeats keep flowing on the ordered lane while the chunk is in flight.
    for i in 0u32..20 {
        a.send(2, Bytes::from(i.to_le_bytes().to_vec())).unwrap();
    }
    let mut heartbeats = 0u32;
    let mut got_chunk = false;
    while heartbeats < 20 || !got_chunk {
        let message = recv_skipping(&mut b_rx.peer_messages, &[b"warm-up"]).await;
        match message.lane {
            Lane::Bulk => {
                assert!(message.payload == chunk, "bulk payload corrupted");
                got_chunk = true;
            }
            Lane::Ordered => {
                assert_eq!(message.payload, &heartbeats.to_le_bytes()[..]);
                heartbeats += 1;
            }
        }
    }
    tokio::time::timeout(WAIT, bulk)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_a_peer_restarts_on_the_same_port() {
    init_tracing();
    let ca = ClusterCa::generate("restart").unwrap();
    for restarted in [1u64, 2] {
        // Restart the dialer (1) in one round and the acceptor (2) in the other.
        let mut nodes = mesh(&ca, 2).await;
        let (b, mut b_rx) = nodes.pop().unwrap();
        let (a, mut a_rx) = nodes.pop().unwrap();
        send_until_received(&a, 2, &mut b_rx.peer_messages, b"before").await;
        send_until_received(&b, 1, &mut a_rx.peer_messages, b"before-back").await;

        let (survivor, mut survivor_rx, victim) = if restarted == 1 {
            (b, b_rx, a)
        } else {
            (a, a_rx, b)
        };
        let victim_id = victim.node_id();
        let survivor_id = survivor.node_id();
        let victim_addr = victim.local_addr().unwrap();
        victim.shutdown().await;
        drop(victim);

        // Rebind the same port (the old socket may take a moment to be released).
        let mut rebound = None;
        for _ in 0..100 {
            let config = fast_config(victim_id, node_identity(&ca, victim_id), victim_addr);
            match PeerTransport::bind(config).await {
                Ok(bound) => {
                    rebound = Some(bound);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let (victim, mut victim_rx) = rebound.expect("could not rebind the port");
        victim.set_peer(survivor_id, survivor.local_addr().unwrap());

        send_until_received(&survivor, victim_id, &mut victim_rx.peer_messages, b"after").await;
        send_until_received(
            &victim,
            survivor_id,
            &mut survivor_rx.peer_messages,
            b"after-back",
        )
        .await;
        survivor.shutdown().await;
        victim.shutdown().await;
    }
}

#[tokio::test]
async fn full_queue_drops_oldest_and_counts() {
    init_tracing();
    let ca = ClusterCa::generate("queue").unwrap();
    let mut config = fast_config(1, node_identity(&ca, 1), loopback());
    config.queue_max_messages = 10;
    let (a, _rx) = PeerTransport::bind(config).await.unwrap();
    // Peer 2's address is a port nobody listens on: nothing drains the queue.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    a.set_peer(2, dead.local_addr().unwrap());
    for i in 0u32..25 {
        a.send(2, Bytes::from(i.to_le_bytes().to_vec())).unwrap();
    }
    assert_eq!(a.stats().dropped_queue_full, 15);
    assert!(matches!(
        a.send(3, Bytes::from_static(b"x")),
        Err(SendError::UnknownPeer { peer: 3 })
    ));
    assert!(matches!(
        a.send(1, Bytes::from_static(b"x")),
        Err(SendError::ToSelf { .. })
    ));
    let status = a.peer_status();
    assert_eq!(status.len(), 1);
    assert_eq!(
        (
            status[0].peer,
            status[0].connected,
            status[0].queued_messages
        ),
        (2, false, 10)
    );
    assert_eq!(status[0].queued_bytes, 40);
    let too_big = Bytes::from(vec![0u8; shoal_net::DEFAULT_MAX_FRAME_BYTES + 1]);
    assert!(matches!(
        a.send(2, too_big),
        Err(SendError::TooLarge { .. })
    ));
    a.shutdown().await;
}

#[tokio::test]
async fn address_book_changes_at_runtime() {
    init_tracing();
    let ca = ClusterCa::generate("membership").unwrap();
    let mut nodes = mesh(&ca, 2).await;
    let (b, mut b_rx) = nodes.pop().unwrap();
    let (a, _a_rx) = nodes.pop().unwrap();
    send_until_received(&a, 2, &mut b_rx.peer_messages, b"hello").await;

    // A third node joins: added to the book at runtime.
    let (c, mut c_rx) = start(&ca, 3).await;
    a.set_peer(3, c.local_addr().unwrap());
    c.set_peer(1, a.local_addr().unwrap());
    send_until_received(&a, 3, &mut c_rx.peer_messages, b"welcome").await;

    // Node 2 is removed: sends fail fast, the connection is closed.
    a.remove_peer(2);
    assert!(matches!(
        a.send(2, Bytes::from_static(b"x")),
        Err(SendError::UnknownPeer { peer: 2 })
    ));
    assert!(!a.is_connected(2));
    assert_eq!(
        a.peers().iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![3]
    );
    for transport in [a, b, c] {
        transport.shutdown().await;
    }
}

#[tokio::test]
async fn fault_hook_partitions_and_heals() {
    init_tracing();
    let ca = ClusterCa::generate("faults").unwrap();
    let mut nodes = mesh(&ca, 2).await;
    let (b, mut b_rx) = nodes.pop().unwrap();
    let (a, mut a_rx) = nodes.pop().unwrap();
    send_until_received(&a, 2, &mut b_rx.peer_messages, b"up").await;

    // Asymmetric: a drops what it sends to b; b -> a still flows.
    let hook = a.fault_hook();
    hook.block_outbound(2);
    a.send(2, Bytes::from_static(b"lost")).unwrap();
    b.send(1, Bytes::from_static(b"still flows")).unwrap();
    assert_eq!(
        recv(&mut a_rx.peer_messages).await.payload,
        &b"still flows"[..]
    );
    // A marker sent after the lost message on b's side proves nothing from a arrived.
    wait_until("the hook dropped the message", || {
        hook.settings().dropped >= 1
    })
    .await;

    // Symmetric partition on b's side: inbound from a dropped too.
    hook.heal();
    b.fault_hook().isolate(&[1]);
    a.send(2, Bytes::from_static(b"dropped on receive"))
        .unwrap();
    wait_until("b dropped the inbound message", || {
        b.fault_hook().settings().dropped >= 1
    })
    .await;
    assert_nothing_but(&mut b_rx.peer_messages, &[b"up"]);

    // Heal: traffic flows again, in order.
    b.fault_hook().heal();
    send_until_received(&a, 2, &mut b_rx.peer_messages, b"healed").await;
    assert!(a.stats().dropped_by_fault >= 1);

    // Random loss at 100% then 0%.
    hook.set_drop_probability(1.0);
    a.send(2, Bytes::from_static(b"coin")).unwrap();
    wait_until("random drop", || hook.settings().dropped >= 2).await;
    hook.set_drop_probability(0.0);
    hook.set_delay(Duration::from_millis(50));
    send_until_received(&a, 2, &mut b_rx.peer_messages, b"delayed").await;
    a.shutdown().await;
    b.shutdown().await;
}

/// The fault hook's delay is a latency added to each message, as a slow link would add: a
/// burst arrives about one delay late, in order, not one delay per message.
#[tokio::test]
async fn fault_hook_delay_is_a_latency_not_a_throttle() {
    init_tracing();
    let ca = ClusterCa::generate("delay").unwrap();
    let mut nodes = mesh(&ca, 2).await;
    let (b, mut b_rx) = nodes.pop().unwrap();
    let (a, _a_rx) = nodes.pop().unwrap();
    send_until_received(&a, 2, &mut b_rx.peer_messages, b"up").await;
    assert_nothing_but(&mut b_rx.peer_messages, &[b"up"]);

    const DELAY: Duration = Duration::from_millis(200);
    const BURST: usize = 30;
    b.fault_hook().set_delay(DELAY);
    let started = Instant::now();
    for i in 0..BURST {
        a.send(2, Bytes::from(format!("m{i}"))).unwrap();
    }
    let mut first_at = None;
    for i in 0..BURST {
        let message = recv_skipping(&mut b_rx.peer_messages, &[b"up"]).await;
        first_at.get_or_insert_with(|| started.elapsed());
        assert_eq!(message.payload, format!("m{i}").as_bytes(), "out of order");
    }
    let first_at = first_at.unwrap();
    let elapsed = started.elapsed();
    assert!(
        first_at >= DELAY,
        "the first message came after {first_at:?}"
    );
    // Serially it would take BURST x DELAY = 6 s; as a latency, about 0.2 s.
    assert!(
        elapsed < DELAY * (BURST as u32) / 2,
        "a burst of {BURST} took {elapsed:?} with a {DELAY:?} delay"
    );

    // Healing releases nothing early and keeps order with what is still delayed.
    b.fault_hook().heal();
    a.send(2, Bytes::from_static(b"after heal")).unwrap();
    let message = recv_skipping(&mut b_rx.peer_messages, &[b"up"]).await;
    assert_eq!(&message.payload[..], b"after heal");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn fault_hook_is_inert_unless_enabled() {
    init_tracing();
    let ca = ClusterCa::generate("inert").unwrap();
    let mut config_a = fast_config(1, node_identity(&ca, 1), loopback());
    config_a.enable_fault_hook = false;
    let (a, _a_rx) = PeerTransport::bind(config_a).await.unwrap();
    let (b, mut b_rx) = start(&ca, 2).await;
    a.set_peer(2, b.local_addr().unwrap());
    let hook = a.fault_hook();
    assert!(!hook.is_enabled());
    hook.isolate(&[2]);
    send_until_received(&a, 2, &mut b_rx.peer_messages, b"not partitioned").await;
    assert_eq!(hook.settings().dropped, 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn higher_id_dials_when_the_lower_does_not_know_it() {
    init_tracing();
    let ca = ClusterCa::generate("fallback").unwrap();
    let (a, mut a_rx) = start(&ca, 1).await;
    let (b, mut b_rx) = start(&ca, 2).await;
    // Only node 2 knows node 1's address.
    b.set_peer(1, a.local_addr().unwrap());
    send_until_received(&b, 1, &mut a_rx.peer_messages, b"from the higher id").await;
    // Node 1 answers over the connection node 2 made, without an address for node 2.
    send_until_received(&a, 2, &mut b_rx.peer_messages, b"answer").await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn slow_consumer_pushes_back_without_loss_within_the_queue_bound() {
    init_tracing();
    let ca = ClusterCa::generate("slow").unwrap();
    let (a, _a_rx) = start(&ca, 1).await;
    let mut config = fast_config(2, node_identity(&ca, 2), loopback());
    config.inbound_capacity = 4;
    let (b, mut b_rx) = PeerTransport::bind(config).await.unwrap();
    a.set_peer(2, b.local_addr().unwrap());
    b.set_peer(1, a.local_addr().unwrap());
    // 2000 messages of 1 KiB, queued at once; the receiver's channel holds only 4.
    for i in 0u32..2000 {
        let mut payload = vec![0u8; 1024];
        payload[..4].copy_from_slice(&i.to_le_bytes());
        a.send(2, Bytes::from(payload)).unwrap();
    }
    for i in 0u32..2000 {
        let message = recv(&mut b_rx.peer_messages).await;
        assert_eq!(&message.payload[..4], &i.to_le_bytes()[..], "message {i}");
    }
    assert_eq!(a.stats().dropped_queue_full, 0);
    assert_eq!(b.stats().messages_received, 2000);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn check_peer_probes_without_disturbing_the_connection() {
    init_tracing();
    let ca = ClusterCa::generate("probe").unwrap();
    let mut nodes = mesh(&ca, 2).await;
    let (b, mut b_rx) = nodes.pop().unwrap();
    let (a, mut a_rx) = nodes.pop().unwrap();
    send_until_received(&a, 2, &mut b_rx.peer_messages, b"connected").await;
    a.check_peer(2).await.unwrap();
    b.check_peer(1).await.unwrap();
    // The probes were answered and closed; the pair still has its one connection.
    for i in 0u32..50 {
        b.send(1, Bytes::from(i.to_le_bytes().to_vec())).unwrap();
    }
    for i in 0u32..50 {
        assert_eq!(
            recv(&mut a_rx.peer_messages).await.payload,
            &i.to_le_bytes()[..]
        );
    }
    assert_eq!(a.stats().peer_connections, 1);
    assert_eq!(b.stats().peer_connections, 1);
    assert!(a.is_connected(2) && b.is_connected(1));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn isolated_node_is_cut_off_while_the_majority_talks_then_heals() {
    init_tracing();
    let ca = ClusterCa::generate("minority").unwrap();
    let mut nodes = mesh(&ca, 3).await;
    let (c, mut c_rx) = nodes.pop().unwrap();
    let (b, mut b_rx) = nodes.pop().unwrap();
    let (a, mut a_rx) = nodes.pop().unwrap();
    send_until_received(&a, 3, &mut c_rx.peer_messages, b"c up").await;
    send_until_received(&c, 2, &mut b_rx.peer_messages, b"c to b").await;

    // Node 3 isolates itself from both others (its hook acts on its sends and receives).
    let hook = c.fault_hook();
    hook.isolate(&[1, 2]);
    a.send(3, Bytes::from_static(b"to the minority")).unwrap();
    b.send(3, Bytes::from_static(b"to the minority")).unwrap();
    c.send(1, Bytes::from_static(b"from the minority")).unwrap();
    wait_until("node 3 dropped all three", || hook.settings().dropped >= 3).await;
    // The majority still talks.
    send_until_received(&a, 2, &mut b_rx.peer_messages, b"majority").await;
    send_until_received(&b, 1, &mut a_rx.peer_messages, b"majority back").await;
    assert_nothing_but(&mut c_rx.peer_messages, &[b"c up"]);

    hook.heal();
    send_until_received(&a, 3, &mut c_rx.peer_messages, b"healed").await;
    send_until_received(&c, 1, &mut a_rx.peer_messages, b"healed back").await;
    for transport in [a, b, c] {
        transport.shutdown().await;
    }
}
