//! The embedding example (`bin/examples/embedded.rs`, SPEC §2) is built and run: three nodes in
//! one process over QUIC on 127.0.0.1 with a custom state machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_embedded_example_runs_a_three_node_cluster() {
    let example = common::cargo_build(&["--example", "embedded"])
        .join("examples")
        .join("embedded");
    let started = Instant::now();
    let mut child = Command::new(&example)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: kill it if it hangs.
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the example did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("alice -30 -> balance 70"), "{stdout}");
    for id in 1..=3 {
        assert!(
            stdout.contains(&format!("node {id} says alice has 70")),
            "{stdout}"
        );
    }
}
