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
