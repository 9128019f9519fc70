//! Real `shoal` processes on 127.0.0.1: the acceptance list of issue 4 (a real cluster).
//! Each test starts its own cluster on free ports; the harness kills every process it
//! started when the test ends, passed or failed. Tests run one at a time (two cores).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, serial, wait_until};

/// Bound on a leader being elected or replaced (issue 4: 3 s with default timing).
const ELECTION: Duration = Duration::from_secs(3);

/// Bound on a write succeeding once a leader is there (the client may first try a dead node).
const WRITE: Duration = Duration::from_secs(15);

/// Bound on a restarted node catching up.
const CATCH_UP: Duration = Duration::from_secs(30);

fn applied(rows: &std::collections::BTreeMap<u64, serde_json::Value>, id: u64) -> u64 {
    rows.get(&id)
        .and_then(|r| r["applied_index"].as_u64())
        .unwrap_or(0)
}

/// Issue 4, acceptance 1: three nodes elect exactly one leader within 3 s; kv round-trips.
#[test]
fn three_nodes_elect_one_leader_and_serve_kv() {
    let _serial = serial();
    let mut cluster = Cluster::init(3, 0, |_| {});
    let started = Instant::now();
    cluster.start_all(3);
    let leader = cluster.wait_for_leader(&[1, 2, 3], ELECTION + Duration::from_secs(2));
    let elapsed = started.elapsed();
    assert!(
        elapsed <= ELECTION + Duration::from_secs(2),
        "leader {leader} after {elapsed:?}"
    );
    let rows = cluster.status();
    assert_eq!(Cluster::leaders(&rows), vec![leader], "{rows:?}");
    for row in rows.values() {
        for field in [
            "term",
            "commit_index",
            "applied_index",
            "last_index",
            "snapshot_index",
            "wal_bytes",
        ] {
            assert!(row[field].is_u64(), "{field} in {row}");
        }
    }
    cluster
        .shoal(&["kv", "put", "greeting", "hello world"])
        .ok();
    assert_eq!(cluster.get("greeting").as_deref(), Some("hello world"));
    // Every node applies it.
    wait_until("every node applies the write", CATCH_UP, || {
        let rows = cluster.status();
        let target = applied(&rows, leader);
        if rows.len() == 3 && rows.keys().all(|id| applied(&rows, *id) == target) {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    });
    // A follower answers a stale read from its own state.
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let run = cluster
        .shoal_on(
            &[follower],
            &["kv", "get", "greeting", "--consistency", "stale", "--json"],
        )
        .ok();
    assert_eq!(run.json()["value"], "hello world");
    // SIGTERM stops a node cleanly and removes its pid file.
    assert_eq!(cluster.stop(follower), Some(0));
    assert!(!cluster.node_dir(follower).join("node.pid").exists());
    assert!(cluster.node_log(follower).contains("node stopped cleanly"));
}

/// Issue 4, acceptance 2: SIGKILL the leader; a new one serves writes; the killed node,
/// restarted, catches up.
#[test]
fn a_killed_leader_is_replaced_and_catches_up_after_restart() {
    let _serial = serial();
    let mut cluster = Cluster::init(3, 0, |_| {});
    cluster.start_all(3);
    let old = cluster.wait_for_leader(&[1, 2, 3], Duration::from_secs(10));
    cluster.put("before", "1", WRITE);
    cluster.kill(old);
    let killed_at = Instant::now();
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    let new = cluster.wait_for_leader(&survivors, Duration::from_secs(10));
    let elected_after = killed_at.elapsed();
    assert_ne!(new, old);
    assert!(
        elected_after <= ELECTION + Duration::from_millis(500),
        "new leader after {elected_after:?}"
    );
    // The new leader serves writes (asked directly, then through the cluster dir).
    cluster
        .shoal_on(&survivors, &["kv", "put", "after", "2"])
        .ok();
    let written_after = killed_at.elapsed();
    assert!(
        written_after <= Duration::from_secs(6),
        "first write after {written_after:?}"
    );
    for i in 0..5 {
        cluster.put(&format!("k{i}"), &format!("v{i}"), WRITE);
    }
    cluster.start(old);
    wait_until("the restarted node catches up", CATCH_UP, || {
        let rows = cluster.status();
        let leader = Cluster::leaders(&rows);
        match leader.as_slice() {
            [leader] if applied(&rows, old) >= applied(&rows, *leader) && rows.len() == 3 => Ok(()),
            _ => Err(format!("{rows:?}")),
        }
    });
    let run = cluster
        .shoal_on(
            &[old],
            &["kv", "get", "k4", "--consistency", "stale", "--json"],
        )
        .ok();
    assert_eq!(run.json()["value"], "v4");
}

/// Issue 4, acceptance 3: stop all three and start them again: every acknowledged key is
/// there.
#[test]
fn acknowledged_writes_survive_a_full_restart() {
    let _serial = serial();
    let mut cluster = Cluster::init(3, 0, |_| {});
    cluster.start_all(3);
    cluster.wait_for_leader(&[1, 2, 3], Duration::from_secs(10));
    let keys: Vec<(String, String)> = (0..20)
        .map(|i| (format!("key-{i}"), format!("value-{i}")))
        .collect();
    for (key, value) in &keys {
        cluster.shoal(&["kv", "put", key, value]).ok();
    }
    // One node is killed, the others stopped cleanly: both paths must keep the data.
    cluster.kill(3);
    assert_eq!(cluster.stop(1), Some(0));
    assert_eq!(cluster.stop(2), Some(0));
    cluster.start_all(3);
    cluster.wait_for_leader(&[1, 2, 3], Duration::from_secs(10));
    for (key, value) in &keys {
        assert_eq!(cluster.get(key).as_deref(), Some(value.as_str()), "{key}");
    }
    let run = cluster.shoal(&["kv", "scan", "key-", "--json"]).ok();
    let text = run.stdout;
    for (key, _) in &keys {
        assert!(text.contains(key), "{key} missing from the scan: {text}");
    }
}

/// Issue 4, acceptance 4: five nodes keep serving with two SIGKILLed; with three down a
/// write fails within 10 s, with exit code 1 and one clear line.
#[test]
fn five_nodes_survive_two_failures_and_refuse_writes_without_quorum() {
    let _serial = serial();
    let mut cluster = Cluster::init(5, 0, |_| {});
    cluster.start_all(5);
    let leader = cluster.wait_for_leader(&[1, 2, 3, 4, 5], Duration::from_secs(10));
    cluster.put("five", "1", WRITE);
    // Kill the leader and one follower.
    let follower = [1, 2, 3, 4, 5]
        .into_iter()
        .find(|id| *id != leader)
        .unwrap();
    cluster.kill(leader);
    cluster.kill(follower);
    let alive: Vec<u64> = [1, 2, 3, 4, 5]
        .into_iter()
        .filter(|id| *id != leader && *id != follower)
        .collect();
    cluster.wait_for_leader(&alive, Duration::from_secs(10));
    cluster
        .shoal_on(&alive, &["kv", "put", "three-left", "2"])
        .ok();
    let run = cluster
        .shoal_on(&alive, &["kv", "get", "three-left", "--json"])
        .ok();
    assert_eq!(run.json()["value"], "2");
    // A third failure: no quorum.
    cluster.kill(alive[0]);
    let run = cluster.shoal_with_timeout(&["kv", "put", "no-quorum", "3"], Duration::from_secs(20));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.elapsed <= Duration::from_secs(10),
        "the write failed only after {:?}",
        run.elapsed
    );
    assert_eq!(run.stderr.lines().count(), 1, "one line: {:?}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{:?}", run.stderr);
    let lower = run.stderr.to_lowercase();
    assert!(
        lower.contains("unavailable") || lower.contains("no leader") || lower.contains("quorum"),
        "a clear message: {:?}",
        run.stderr
    );
}

/// Issue 4, acceptance 5: a node with certificates from another `shoal init` cannot join or
/// disrupt (the refusal is logged); a client with the wrong CA gets a TLS error, exit 1.
#[test]
fn foreign_certificates_are_refused() {
    let _serial = serial();
    let mut cluster = Cluster::init(3, 0, |_| {});
    cluster.start_all(3);
    let leader = cluster.wait_for_leader(&[1, 2, 3], Duration::from_secs(10));
    let term = cluster.status()[&leader]["term"].as_u64().unwrap();
    cluster.put("mine", "1", WRITE);

    // Another cluster's node 4, pointed at this cluster and believing it votes.
    let mut other = Cluster::init(4, 0, |_| {});
    let rogue_dir = other.node_dir(4);
    let mut members = std::fs::read_to_string(cluster.dir.join("cluster.toml")).unwrap();
    members.push_str(&format!(
        "\n[[member]]\nid = 4\naddr = \"{}\"\n",
        other.addr(4)
    ));
    std::fs::write(other.dir.join("cluster.toml"), members).unwrap();
    std::fs::write(rogue_dir.join("initial-voters"), "1,2,3,4\n").unwrap();
    other.start(4);
    wait_until(
        "a node of the cluster to log the refusal",
        Duration::from_secs(15),
        || {
            let refused = (1..=3).any(|id| {
                let log = cluster.node_log(id);
                log.contains("refused incoming connection") || log.contains("refused peer")
            });
            if refused {
                Ok(())
            } else {
                Err("no refusal logged yet".into())
            }
        },
    );
    // The cluster goes on: same leader, same term, writes served.
    cluster.put("still-mine", "2", WRITE);
    let rows = cluster.status();
    assert_eq!(Cluster::leaders(&rows), vec![leader], "{rows:?}");
    assert_eq!(rows[&leader]["term"].as_u64(), Some(term), "{rows:?}");
    assert!(
        other.is_running(4),
        "the rogue node should not crash either"
    );
    let members = cluster.shoal(&["member", "list", "--json"]).ok().json();
    assert!(!members.to_string().contains("\"id\":4"), "{members}");

    // A client holding the other cluster's CA and certificate.
    let addrs = (1..=3)
        .map(|id| cluster.addr(id).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let run = common::run_shoal(
        &[
            "--cluster",
            &addrs,
            "--ca",
            other.dir.join("ca.pem").to_str().unwrap(),
            "--cert",
            other.dir.join("client.pem").to_str().unwrap(),
            "--key",
            other.dir.join("client-key.pem").to_str().unwrap(),
            "kv",
            "get",
            "mine",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    let lower = run.stderr.to_lowercase();
    assert!(
        lower.contains("tls") || lower.contains("certificate"),
        "a TLS error: {:?}",
        run.stderr
    );
}

/// Issue 4, acceptance 6: add a 4th node (learner, caught up, promoted), remove a node,
/// transfer leadership; `status` and `member list` show each.
#[test]
fn membership_changes_and_leader_transfer_show_in_status() {
    let _serial = serial();
    let mut cluster = Cluster::init(3, 1, |_| {});
    cluster.start_all(3);
    cluster.wait_for_leader(&[1, 2, 3], Duration::from_secs(10));
    for i in 0..10 {
        cluster.put(&format!("m{i}"), "x", WRITE);
    }
    let addr4 = cluster.addr(4).to_string();
    cluster.shoal(&["member", "add", "4", &addr4]).ok();
    assert!(cluster.node_dir(4).join("node.toml").is_file());
    // Not started yet: a learner.
    let members = cluster.shoal(&["member", "list", "--json"]).ok().json();
    let four = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == 4)
        .cloned()
        .unwrap_or_else(|| panic!("node 4 missing: {members}"));
    assert_eq!(four["voter"], false, "{members}");
    cluster.start(4);
    wait_until("node 4 to catch up and be promoted", CATCH_UP, || {
        let rows = cluster.status();
        let leaders = Cluster::leaders(&rows);
        let caught_up = leaders
            .first()
            .is_some_and(|l| applied(&rows, 4) >= applied(&rows, *l));
        let role = rows.get(&4).map(|r| r["role"].clone());
        if caught_up && role.as_ref().is_some_and(|r| r == "follower") {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    });
    let members = cluster.shoal(&["member", "list", "--json"]).ok().json();
    assert!(
        members["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == 4 && m["voter"] == true),
        "{members}"
    );
    // Remove a follower other than node 4.
    let leader = Cluster::leaders(&cluster.status())[0];
    let removed = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    cluster
        .shoal(&["member", "remove", &removed.to_string()])
        .ok();
    let rows = cluster.status();
    assert!(!rows.contains_key(&removed), "{rows:?}");
    let members = cluster.shoal(&["member", "list", "--json"]).ok().json();
    assert!(
        !members["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == removed),
        "{members}"
    );
    cluster.kill(removed);
    // Hand leadership to node 4.
    let voters: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|id| *id != removed)
        .collect();
    cluster.shoal(&["leader", "transfer", "4"]).ok();
    wait_until("node 4 to lead", Duration::from_secs(10), || {
        let rows = cluster.status_of(&voters);
        if Cluster::leaders(&rows) == vec![4] {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    });
    cluster.put("after-transfer", "y", WRITE);
    assert_eq!(cluster.get("m3").as_deref(), Some("x"));
}

/// Writes `count` kv entries through one in-process client with `concurrency` requests in
/// flight (the CLI would start a process per write).
fn write_many(cluster: &Cluster, ids: &[u64], prefix: &str, count: usize, concurrency: usize) {
    use shoal::api::WriteBody;
    use shoal_net::{Client, ClientOptions, RequestKind, TlsIdentity};
    use shoal_shop::Request;
    use std::sync::Arc;

    let identity = TlsIdentity::from_files(
        &cluster.dir.join("ca.pem"),
        &cluster.dir.join("client.pem"),
        &cluster.dir.join("client-key.pem"),
    )
    .unwrap();
    let addrs = ids.iter().map(|id| cluster.addr(*id)).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Arc::new(Client::new(&identity, ClientOptions::new(addrs)).unwrap());
        let mut tasks = Vec::new();
        for worker in 0..concurrency {
            let client = client.clone();
            let prefix = prefix.to_owned();
            tasks.push(tokio::spawn(async move {
                for i in (worker..count).step_by(concurrency) {
                    let body = WriteBody::Shop(Request::KvPut {
                        key: format!("{prefix}{i:06}").into_bytes(),
                        value: vec![b'v'; 64],
                    })
                    .to_bytes();
                    client
                        .request(RequestKind::Write, body)
                        .await
                        .unwrap_or_else(|e| panic!("write {i}: {e}"));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        client.close().await;
    });
}

/// Issue 4, acceptance 7: a node stopped while the others write far past a snapshot catches
/// up through InstallSnapshot when restarted.
#[test]
fn a_lagging_node_catches_up_through_a_snapshot() {
    let _serial = serial();
    let mut cluster = Cluster::init(3, 0, |node| {
        node.snapshot.max_log_entries = 300;
        node.wal.segment_bytes = 64 * 1024;
        node.wal.max_bytes = 1024 * 1024;
    });
    cluster.start_all(3);
    cluster.wait_for_leader(&[1, 2, 3], Duration::from_secs(10));
    cluster.put("first", "1", WRITE);
    assert_eq!(cluster.stop(3), Some(0));
    let lagging_last = 3u64;
    write_many(&cluster, &[1, 2], "bulk-", 3000, 32);
    let rows = cluster.status_of(&[1, 2]);
    let leader = Cluster::leaders(&rows)[0];
    let snapshot_index = rows[&leader]["snapshot_index"].as_u64().unwrap();
    assert!(
        snapshot_index > 2000,
        "the leader compacted its log: {rows:?}"
    );
    let _ = lagging_last;
    cluster.start(3);
    wait_until("node 3 to catch up", CATCH_UP, || {
        let rows = cluster.status();
        let leaders = Cluster::leaders(&rows);
        match (leaders.first(), rows.get(&3)) {
            (Some(l), Some(row))
                if applied(&rows, 3) >= applied(&rows, *l)
                    && row["snapshot_index"].as_u64().unwrap_or(0) > 0 =>
            {
                Ok(())
            }
            _ => Err(format!("{rows:?}")),
        }
    });
    // Its state machine has the data written while it was down.
    let run = cluster
        .shoal_on(
            &[3],
            &[
                "kv",
                "get",
                "bulk-002999",
                "--consistency",
                "stale",
                "--json",
            ],
        )
        .ok();
    assert_eq!(run.json()["value"], "v".repeat(64));
    assert!(
        cluster.node_log(3).to_lowercase().contains("snapshot"),
        "node 3 logs the snapshot it installed"
    );
}

/// Issue 4, acceptance 8: random datagrams on a node's UDP port, and malformed or oversized
/// frames on a valid client connection, neither crash it nor stall the cluster.
#[test]
fn garbage_on_the_wire_does_not_hurt() {
    use rand::{Rng, SeedableRng};

    let _serial = serial();
    let mut cluster = Cluster::init(3, 0, |_| {});
    cluster.start_all(3);
    cluster.wait_for_leader(&[1, 2, 3], Duration::from_secs(10));
    cluster.put("before", "1", WRITE);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(8);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..3000 {
        let target = cluster.addr(rng.random_range(1..=3));
        let len = rng.random_range(0..1500);
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes[..]);
        // QUIC long-header initial packets too, not only noise.
        if len > 0 && rng.random_bool(0.5) {
            bytes[0] |= 0xc0;
        }
        let _ = socket.send_to(&bytes, target);
    }
    // Malformed frames on an authenticated client connection.
    let identity = shoal_net::TlsIdentity::from_files(
        &cluster.dir.join("ca.pem"),
        &cluster.dir.join("client.pem"),
        &cluster.dir.join("client-key.pem"),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use shoal_net::tls;
        let rustls = tls::client_client_config(&identity).unwrap();
        let config = tls::quic_client_config(rustls).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(config);
        let conn = endpoint
            .connect(cluster.addr(1), tls::NODE_SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let frames: Vec<Vec<u8>> = vec![
            // Random bytes.
            (0..200).map(|i| (i * 37 % 251) as u8).collect(),
            // A length far past the maximum frame.
            [u32::MAX.to_le_bytes(), 0u32.to_le_bytes()].concat(),
            [u32::MAX.to_be_bytes(), 0u32.to_be_bytes()].concat(),
            // A plausible length with a wrong checksum.
            [
                16u32.to_le_bytes().to_vec(),
                7u32.to_le_bytes().to_vec(),
                vec![1; 16],
            ]
            .concat(),
            // A valid-looking header and a truncated body.
            [
                1000u32.to_le_bytes().to_vec(),
                0u32.to_le_bytes().to_vec(),
                vec![2; 10],
            ]
            .concat(),
        ];
        for frame in frames {
            if let Ok((mut send, mut recv)) = conn.open_bi().await {
                let _ = send.write_all(&frame).await;
                let _ = send.finish();
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), recv.read_to_end(1 << 20)).await;
            }
        }
        conn.close(0u32.into(), b"done");

        // An authenticated peer connection (node 3's certificate, a valid hello) carrying
        // well-framed garbage, a message forging another sender with a huge term (accepted, it
        // would depose the leader), one for another node, then a frame with a bad checksum.
        use shoal_engine::core::{Message, MessageBody};
        use shoal_net::{codec, frame, peer};
        let node3 = shoal_net::TlsIdentity::from_files(
            &cluster.node_dir(3).join("ca.pem"),
            &cluster.node_dir(3).join("node.pem"),
            &cluster.node_dir(3).join("node-key.pem"),
        )
        .unwrap();
        let config = tls::quic_client_config(tls::peer_client_config(&node3).unwrap()).unwrap();
        let conn = endpoint
            .connect_with(config, cluster.addr(1), &tls::node_server_name(1))
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let hello = codec::encode(&peer::PeerHello {
            version: peer::PROTOCOL_VERSION,
            from: 3,
            to: 1,
            probe: false,
        })
        .unwrap();
        frame::write_frame(&mut send, &hello, peer::HELLO_MAX_BYTES)
            .await
            .unwrap();
        let _ = send.finish();
        let ack = frame::read_frame(&mut recv, peer::HELLO_MAX_BYTES)
            .await
            .unwrap()
            .unwrap();
        let ack: peer::PeerHelloAck = codec::decode(&ack).unwrap();
        assert!(ack.accepted, "{ack:?}");
        let vote = |from: u64, to: u64| {
            Message {
                from,
                to,
                term: 1_000_000,
                body: MessageBody::RequestVote {
                    pre_vote: false,
                    last_index: 1_000_000,
                    last_term: 1_000_000,
                    transfer: true,
                },
            }
            .encode()
            .unwrap()
            .into_vec()
        };
        let mut stream = conn.open_uni().await.unwrap();
        stream.write_all(&[peer::STREAM_ORDERED]).await.unwrap();
        let noise: Vec<u8> = (0..300).map(|i| (i * 91 % 253) as u8).collect();
        for payload in [noise, vote(2, 1), vote(3, 2), Vec::new()] {
            let framed = frame::frame_bytes(&payload, 1 << 20).unwrap();
            stream.write_all(&framed).await.unwrap();
        }
        stream
            .write_all(&[64u8, 0, 0, 0, 1, 2, 3, 4])
            .await
            .unwrap();
        stream.write_all(&[9u8; 64]).await.unwrap();
        let _ = stream.finish();
        tokio::time::sleep(Duration::from_millis(300)).await;
        conn.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
    });
    wait_until(
        "node 1 to log the forged sender",
        Duration::from_secs(10),
        || {
            let log = cluster.node_log(1);
            if log.contains("claiming another sender") {
                Ok(())
            } else {
                Err("not logged yet".into())
            }
        },
    );
    let rows = cluster.status();
    assert!(
        rows.values()
            .all(|r| r["term"].as_u64().unwrap_or(0) < 1_000_000),
        "a forged message changed a term: {rows:?}"
    );
    // Every node is alive and the cluster serves.
    for id in 1..=3 {
        assert!(cluster.is_running(id), "node {id} crashed");
    }
    cluster.put("after", "2", WRITE);
    assert_eq!(cluster.get("after").as_deref(), Some("2"));
    let rows = cluster.status();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(Cluster::leaders(&rows).len(), 1, "{rows:?}");
}

/// `cluster up --detach` starts every node in the background; `cluster down` stops them.
#[test]
fn cluster_up_detach_and_down() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let dir_arg = dir.to_str().unwrap();
    let port = common::free_ports(3).to_string();
    // Whatever happens, nothing is left running.
    struct Down(String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = common::run_shoal(
                &["--cluster-dir", &self.0, "cluster", "down"],
                Duration::from_secs(30),
            );
        }
    }
    let _down = Down(dir_arg.to_owned());
    let run = common::run_shoal(
        &[
            "--cluster-dir",
            dir_arg,
            "cluster",
            "up",
            "--detach",
            "--nodes",
            "3",
            "--base-port",
            &port,
            "--json",
        ],
        Duration::from_secs(60),
    )
    .ok();
    let nodes = run.json()["nodes"].as_array().cloned().unwrap();
    assert_eq!(nodes.len(), 3, "{run:?}");
    let pids: Vec<i32> = nodes
        .iter()
        .map(|n| n["pid"].as_i64().unwrap() as i32)
        .collect();
    wait_until("a leader", Duration::from_secs(10), || {
        let run = common::run_shoal(
            &["--cluster-dir", dir_arg, "status", "--json"],
            Duration::from_secs(30),
        );
        if run.code == 0 && run.stdout.contains("\"role\":\"leader\"") {
            Ok(())
        } else {
            Err(format!("{run:?}"))
        }
    });
    common::run_shoal(
        &["--cluster-dir", dir_arg, "kv", "put", "up", "yes"],
        Duration::from_secs(30),
    )
    .ok();
    let run = common::run_shoal(
        &["--cluster-dir", dir_arg, "cluster", "down", "--json"],
        Duration::from_secs(60),
    )
    .ok();
    assert_eq!(run.json()["nodes"].as_array().unwrap().len(), 3, "{run:?}");
    for pid in pids {
        assert!(
            !shoal::node::process::is_node_process(pid),
            "node pid {pid} still runs"
        );
    }
    for id in 1..=3 {
        assert!(!dir.join(format!("node-{id}/node.pid")).exists());
    }
}

/// Issue 4, acceptance 9 (the prompt): `cluster up` initialises a fresh directory, starts the
/// nodes and answers `list`, `leader`, `kill`, `start` and `exit` on stdin.
#[test]
fn cluster_up_prompt_kills_and_restarts_nodes() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let dir_arg = dir.to_str().unwrap().to_owned();
    let port = common::free_ports(3).to_string();
    let mut child = Command::new(common::shoal_bin())
        .args([
            "--cluster-dir",
            &dir_arg,
            "cluster",
            "up",
            "--base-port",
            &port,
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Whatever happens, nothing is left running.
    struct Guard(std::process::Child, String);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = common::run_shoal(
                &["--cluster-dir", &self.1, "cluster", "down"],
                Duration::from_secs(30),
            );
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut guard = Guard(child, dir_arg.clone());
    let (lines_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut expect = |needle: &str, timeout: Duration| {
        let deadline = Instant::now() + timeout;
        loop {
            if seen.contains(needle) {
                seen.clear();
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => panic!("no {needle:?} in the prompt's output: {seen}"),
            }
        }
    };
    expect("commands: list", Duration::from_secs(30));
    writeln!(stdin, "list").unwrap();
    expect("node 3 at", Duration::from_secs(5));
    let leader = wait_until(
        "the prompt to name a leader",
        Duration::from_secs(15),
        || {
            writeln!(stdin, "leader").map_err(|e| e.to_string())?;
            let line = lines
                .recv_timeout(Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            let id = line
                .split("node ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|id| id.parse::<u64>().ok());
            match id {
                Some(id) if line.contains("is the leader") => Ok(id),
                _ => Err(line),
            }
        },
    );
    writeln!(stdin, "kill {leader}").unwrap();
    expect(&format!("node {leader} killed"), Duration::from_secs(10));
    common::run_shoal(
        &["--cluster-dir", &dir_arg, "kv", "put", "prompt", "1"],
        Duration::from_secs(30),
    )
    .ok();
    writeln!(stdin, "start {leader}").unwrap();
    expect(&format!("node {leader} started"), Duration::from_secs(20));
    writeln!(stdin, "exit").unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    while guard.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "cluster up did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in 1..=3 {
        assert!(
            !dir.join(format!("node-{id}/node.pid")).exists(),
            "node {id} still has a pid file after exit"
        );
    }
}

/// `shoal node` refuses, with one line and the SPEC's exit code: a directory without
/// node.toml (2), a second process for a running node (1), a port already taken (1).
#[test]
fn node_start_failures_are_one_clear_line() {
    let _serial = serial();
    let mut cluster = Cluster::init(2, 0, |_| {});
    let empty = tempfile::tempdir().unwrap();
    let run = common::run_shoal(
        &["node", "--data-dir", empty.path().to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.contains("node.toml"), "{run:?}");

    cluster.start(1);
    let data_dir = cluster.node_dir(1);
    let run = common::run_shoal(
        &["node", "--data-dir", data_dir.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("already running"), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");

    // Node 2's port is taken by someone else.
    let _squatter = std::net::UdpSocket::bind(cluster.addr(2)).unwrap();
    let data_dir = cluster.node_dir(2);
    let run = common::run_shoal(
        &["node", "--data-dir", data_dir.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .lines()
            .last()
            .unwrap_or("")
            .contains(&cluster.addr(2).to_string()),
        "{run:?}"
    );
    assert!(!run.stderr.contains("panicked"), "{run:?}");
}
