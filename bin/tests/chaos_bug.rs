//! The chaos harness proves itself: built with the deliberate bug `buggy-stale-reads` (nodes
//! serve linearizable reads from their local state), `shoal chaos --duration 30` fails, names
//! the violation and prints the seed. Run with
//! `cargo test -p shoal --features buggy-stale-reads --test chaos_bug`.
#![cfg(feature = "buggy-stale-reads")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn stale_reads_make_a_chaos_run_fail() {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "chaos",
            "--nodes",
            "3",
            "--duration",
            "30",
            "--seed",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("chaos --json printed no JSON ({e}): {stdout}\n{stderr}"));
    assert_eq!(report["verdict"], "fail", "{report:#}");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(report["seed"], 1);
    let violations = report["violations"].as_array().unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v.as_str().unwrap_or_default().contains("not linearizable")),
        "{report:#}"
    );

    // The text report shows the minimal offending sub-history and the seed.
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["chaos", "--nodes", "3", "--duration", "30", "--seed", "1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("minimal offending sub-history"), "{text}");
    assert!(text.contains("--seed 1"), "{text}");
    assert!(text.contains("verdict: FAIL"), "{text}");
}
