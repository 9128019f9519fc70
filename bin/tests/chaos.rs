//! CI's short chaos run: `shoal chaos --nodes 3 --duration 25` against real node processes
//! must pass, with every fault kind injected at least once and operations checked.
//!
//! Not built with the deliberate bug (`buggy-stale-reads`), under which it must fail
//! instead (see `chaos_bug.rs`).
#![cfg(not(feature = "buggy-stale-reads"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const KINDS: [&str; 10] = [
    "kill",
    "kill_leader",
    "pause",
    "partition_halves",
    "partition_leader",
    "partition_bridge",
    "message_loss",
    "membership",
    "snapshot",
    "wal_tear",
];

#[test]
fn a_short_chaos_run_passes_with_every_fault_kind_injected() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "chaos",
            "--nodes",
            "3",
            "--duration",
            "25",
            "--seed",
            "7",
            "--json",
        ])
        .arg("--history")
        .arg(&history)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("chaos --json printed no JSON ({e}): {stdout}\n{stderr}"));
    assert_eq!(report["verdict"], "pass", "{report:#}\n{stderr}");
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["violations"], serde_json::json!([]));
    assert_eq!(report["seed"], 7);
    let checked = report["ops_checked"].as_u64().unwrap();
    assert!(
        checked >= 100,
        "only {checked} operations checked: {report:#}"
    );
    assert!(report["ops"].as_u64().unwrap() >= checked / 2);
    for kind in KINDS {
        let count = report["faults"][kind].as_u64().unwrap_or(0);
        assert!(count >= 1, "fault kind {kind} never injected: {report:#}");
    }
    // The history is Jepsen-shaped JSON lines that the checker's parser reads back.
    let text = std::fs::read_to_string(&history).unwrap();
    let parsed = shoal_engine::check::History::from_jsonl(&text).unwrap();
    assert!(parsed.len() >= 100);
    assert!(text.contains("\"f\":\"checkout\""));
    assert!(text.contains("\"process\":\"nemesis\""));
}

#[test]
fn chaos_refuses_invalid_node_counts() {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["chaos", "--nodes", "4", "--duration", "5"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nodes"), "{stderr}");
}
