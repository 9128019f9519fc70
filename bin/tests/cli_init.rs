//! `shoal init` as a user runs it: the files it writes, and its refusal to overwrite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .env_remove("SHOAL_DIR")
        .env_remove("SHOAL_TOKEN")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `shoal init --nodes 3` into `dir`, ports from `base_port`; asserts it succeeded.
fn init_three(dir: &str, base_port: &str) -> Output {
    let out = shoal(&[
        "init",
        "--nodes",
        "3",
        "--cluster-dir",
        dir,
        "--base-port",
        base_port,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    out
}

#[test]
fn init_writes_the_cluster_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let d = dir.to_str().unwrap();
    let out = init_three(d, "17001");
    assert!(text(&out.stdout).contains("3 node(s)"));
    for file in [
        "cluster.toml",
        "ca.pem",
        "ca-key.pem",
        "client.pem",
        "client-key.pem",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    for id in 1..=3 {
        let node = dir.join(format!("node-{id}"));
        for file in ["node.toml", "ca.pem", "node.pem", "node-key.pem"] {
            assert!(node.join(file).is_file(), "node-{id}/{file}");
        }
        let toml = std::fs::read_to_string(node.join("node.toml")).unwrap();
        assert!(
            toml.contains(&format!("listen = \"127.0.0.1:{}\"", 17000 + id)),
            "{toml}"
        );
        assert!(toml.contains("fault_hook = false"), "{toml}");
    }
    let cluster = std::fs::read_to_string(dir.join("cluster.toml")).unwrap();
    assert_eq!(cluster.matches("[[member]]").count(), 3, "{cluster}");
    assert!(cluster.contains("127.0.0.1:17003"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn init_refuses_to_overwrite_with_exit_4() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    assert!(
        shoal(&["init", "--nodes", "1", "--cluster-dir", d])
            .status
            .success()
    );
    let key = std::fs::read(Path::new(d).join("ca-key.pem")).unwrap();
    let out = shoal(&["init", "--nodes", "3", "--cluster-dir", d]);
    assert_eq!(out.status.code(), Some(4));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(Path::new(d).join("ca-key.pem")).unwrap(), key);
    // --json: one error document on stdout, same exit code.
    let out = shoal(&["--json", "init", "--nodes", "1", "--cluster-dir", d]);
    assert_eq!(out.status.code(), Some(4));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "conflict");
}

#[test]
fn init_cluster_dir_comes_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("from-env");
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["init", "--nodes", "1", "--json"])
        .env("SHOAL_DIR", &dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["nodes"][0]["id"], 1);
    assert!(dir.join("cluster.toml").is_file());
}

#[test]
fn init_refuses_bad_arguments_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    for args in [
        vec!["init", "--nodes", "0", "--cluster-dir", d],
        vec![
            "init",
            "--nodes",
            "3",
            "--base-port",
            "65535",
            "--cluster-dir",
            d,
        ],
        vec!["init", "--nodes", "x", "--cluster-dir", d],
        vec!["init", "--cluster-dir", d],
    ] {
        let out = shoal(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"));
        assert_eq!(err.lines().count(), 1, "one line on stderr: {err:?}");
    }
    assert!(!tmp.path().join("cluster.toml").exists());
}

#[test]
fn client_commands_without_a_cluster_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let out = shoal(&["kv", "get", "k", "--cluster-dir", d]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cluster.toml") && err.contains("shoal init"),
        "{err}"
    );
    // Input errors are found before any network traffic.
    let out = shoal(&[
        "signup",
        "--role",
        "customer",
        "--name",
        "A",
        "--address",
        "x",
        "--email",
        "a@b.io",
        "--password",
        "p",
        "--contact",
        "12",
        "--cluster-dir",
        d,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("contact"));
    let out = shoal(&["cart", "--cluster-dir", d]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
}

/// `cluster up --nodes N` on a directory that already holds a cluster of another size is
/// refused (exit 2), instead of silently starting the existing members; no node starts.
#[test]
fn cluster_up_refuses_another_node_count_for_an_existing_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let d = dir.to_str().unwrap();
    init_three(d, "17101");
    let out = shoal(&[
        "cluster",
        "up",
        "--nodes",
        "5",
        "--detach",
        "--cluster-dir",
        d,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("already holds a cluster of 3 node(s)") && stderr.contains("--nodes 5"),
        "{stderr}"
    );
    for id in 1..=3 {
        let logs = dir.join(format!("node-{id}")).join("logs");
        assert!(!logs.exists(), "node {id} was started");
    }
}
