//! `shoal demo` as a new user runs it: the built binary, a fresh temporary 3-node cluster of
//! real processes, the whole tour; exit 0, the key lines printed, nothing left behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on the whole demo (it takes about 10–20 s on a busy machine).
const DEMO_TIMEOUT: Duration = Duration::from_secs(180);

fn run_demo(args: &[&str]) -> (i32, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("stdout");
    let err_path = tmp.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("demo")
        .args(args)
        .env_remove("SHOAL_DIR")
        .env_remove("SHOAL_TOKEN")
        .env_remove("RUST_LOG")
        // The demo's temporary directory goes here, so the test can see it was removed.
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if started.elapsed() > DEMO_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shoal demo did not finish within {DEMO_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    // Nothing left: no demo directory under TMPDIR (only the two capture files).
    let left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("shoal-demo-"))
        .collect();
    assert!(left.is_empty(), "the demo left {left:?} behind");
    (code, stdout, stderr)
}

#[test]
fn the_demo_runs_the_whole_tour_and_exits_0() {
    let (code, stdout, stderr) = run_demo(&[]);
    assert_eq!(code, 0, "stderr: {stderr}\nstdout: {stdout}");
    for needle in [
        "== 1. a fresh 3-node cluster ==",
        "was elected leader (term 1)",
        "account 1 created",
        "refused (exit 4): email alice@example.com is already registered",
        "logged in as account 5",
        "store 2 created",
        "24 products in",
        "shoal products --category footwear --brand Kestrel --size 42 --min-price 100.00 --max-price 200.00",
        "Trail Blazer sneaker  [footwear / Kestrel / size 42]  119.99",
        "each of the 18 pairs of footwear exactly once",
        "order 1 placed, total 357.98",
        "refused (exit 4): insufficient stock for product 18",
        "Tassel loafer, limited edition  [footwear / Milano / size 42]  210.00  stock 0",
        "Merino crew socks  units 6  revenue 87.00",
        "*[1] alice@example.com: Hi! Do the Chelsea boots run true to size?",
        "killing it with SIGKILL",
        "order 5 placed, total 49.00",
        "caught up in",
        "the write made while it was down is in its own copy of the state",
        "all 24 products are listed",
        "all 5 orders are there",
        "all 3 messages to Olivia are there, and the deleted one is gone",
        "stopped cleanly",
        "nothing is left running",
        "demo finished in",
    ] {
        assert!(
            stdout.contains(needle),
            "no {needle:?} in the demo's output:\n{stdout}"
        );
    }
    // The leader changed: the new one's term is 2 or more.
    let elected = stdout
        .lines()
        .find(|l| l.contains("s after the kill"))
        .unwrap_or_else(|| panic!("no new leader line:\n{stdout}"));
    assert!(elected.contains("was elected leader (term "), "{elected}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_demo_prints_a_json_summary() {
    let (code, stdout, stderr) = run_demo(&["--json"]);
    assert_eq!(code, 0, "stderr: {stderr}\nstdout: {stdout}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout}"));
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["nodes"], 3);
    assert_eq!(summary["accounts"], 5);
    assert_eq!(summary["products"], 24);
    assert_eq!(summary["orders"], 5);
    assert_eq!(summary["refused_checkouts"], 1);
    assert_eq!(summary["units_sold"], 13);
    let failover = &summary["failover"];
    assert_ne!(failover["killed_leader"], failover["new_leader"]);
    assert!(failover["new_term"].as_u64() > failover["killed_term"].as_u64());
    assert!(
        summary["catch_up"]["applied_index"].as_u64().unwrap()
            >= summary["catch_up"]["leader_commit_index"].as_u64().unwrap()
    );
}
