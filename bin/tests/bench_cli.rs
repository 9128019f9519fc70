//! The built `shoal bench` against a real QUIC endpoint: a `PeerTransport` on 127.0.0.1:0
//! with certificates from `shoal init`, its client requests served by the request handler
//! over the in-memory node (a real shop state machine, no Raft) — the pattern of
//! `cli_client.rs`. Checks the `--json` fields of SPEC §3 and that `--plot` writes an SVG;
//! never asserts on timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shoal::config::{ClusterConfig, MemberConfig};
use shoal::server::memory::MemoryNode;
use shoal::server::{self, ServerContext};
use shoal_net::{PeerTransport, PeerTransportConfig, TlsIdentity, TransportChannels};
use shoal_shop::PrepareConfig;

/// Bound on one CLI invocation.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// SPEC §3's fields of `bench --json`.
const SPEC_FIELDS: [&str; 9] = [
    "workload",
    "clients",
    "seconds",
    "ops",
    "errors",
    "throughput_ops_s",
    "p50_ms",
    "p99_ms",
    "p999_ms",
];

struct Harness {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    addr: SocketAddr,
    transport: PeerTransport,
    _peer_messages: tokio::sync::mpsc::Receiver<shoal_net::InboundMessage>,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn start() -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let init = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["init", "--nodes", "1", "--cluster-dir"])
        .arg(&dir)
        .env_remove("SHOAL_DIR")
        .output()
        .await
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let node_dir = dir.join("node-1");
    let identity = TlsIdentity::from_files(
        &node_dir.join("ca.pem"),
        &node_dir.join("node.pem"),
        &node_dir.join("node-key.pem"),
    )
    .unwrap();
    let config = PeerTransportConfig::new(1, "127.0.0.1:0".parse().unwrap(), identity);
    let (transport, channels) = PeerTransport::bind(config).await.unwrap();
    let TransportChannels {
        peer_messages,
        client_requests,
        ..
    } = channels;
    let addr = transport.local_addr().unwrap();
    let node =
        Arc::new(MemoryNode::open(1, Some(addr.to_string()), &tmp.path().join("shop")).unwrap());
    let cluster = ClusterConfig {
        name: "test".into(),
        members: vec![MemberConfig {
            id: 1,
            addr: addr.to_string(),
            client_addr: None,
        }],
    };
    let mut context = ServerContext::new(1, cluster, false);
    context.prepare = PrepareConfig::fast_for_tests();
    tokio::spawn(server::serve(client_requests, node, Arc::new(context)));
    Harness {
        tmp,
        dir,
        addr,
        transport,
        _peer_messages: peer_messages,
    }
}

fn tls_args(dir: &Path, cluster: &str) -> Vec<String> {
    let s = |p: &Path| p.display().to_string();
    vec![
        "--cluster".into(),
        cluster.into(),
        "--ca".into(),
        s(&dir.join("ca.pem")),
        "--cert".into(),
        s(&dir.join("client.pem")),
        "--key".into(),
        s(&dir.join("client-key.pem")),
        "--cluster-dir".into(),
        s(dir),
    ]
}

async fn shoal(args: &[&str], tls: Vec<String>) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
    command
        .args(args)
        .args(tls)
        .env_remove("SHOAL_DIR")
        .env_remove("SHOAL_TOKEN")
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    let out = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("shoal {args:?} did not finish within {RUN_TIMEOUT:?}"))
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Harness {
    async fn bench(&self, args: &[&str]) -> Run {
        shoal(args, tls_args(&self.dir, &self.addr.to_string())).await
    }
}

fn json(run: &Run) -> Value {
    assert_eq!(
        run.code, 0,
        "stderr: {}\nstdout: {}",
        run.stderr, run.stdout
    );
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {:?}", run.stdout))
}

fn check_spec_fields(doc: &Value, workload: &str, clients: u64) {
    for field in SPEC_FIELDS {
        assert!(doc.get(field).is_some(), "missing {field}: {doc}");
    }
    assert_eq!(doc["workload"], workload);
    assert_eq!(doc["clients"].as_u64(), Some(clients));
    assert!(doc["seconds"].as_f64().unwrap() > 0.0);
    for field in ["throughput_ops_s", "p50_ms", "p99_ms", "p999_ms"] {
        assert!(doc[field].as_f64().unwrap() >= 0.0, "{field}: {doc}");
    }
    let ops = doc["ops"].as_u64().unwrap();
    assert!(ops > 0, "some operation succeeded: {doc}");
    assert_eq!(doc["errors"].as_u64(), Some(0), "{doc}");
    assert!(doc["p50_ms"].as_f64() <= doc["p99_ms"].as_f64());
    assert!(doc["p99_ms"].as_f64() <= doc["p999_ms"].as_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_workload_prints_the_spec_fields_and_plots() {
    let h = start().await;
    let plot = h.tmp.path().join("mixed.svg");
    let plot_arg = plot.display().to_string();
    let run = h
        .bench(&[
            "bench",
            "--workload",
            "mixed",
            "--clients",
            "4",
            "--duration",
            "2",
            "--warmup",
            "0",
            "--keys",
            "50",
            "--json",
            "--plot",
            &plot_arg,
        ])
        .await;
    let doc = json(&run);
    check_spec_fields(&doc, "mixed", 4);
    // Every kind of the mix ran (50/40/10 over hundreds of operations).
    for kind in ["get", "put", "checkout"] {
        assert!(doc["kinds"][kind]["ops"].as_u64().unwrap() > 0, "{doc}");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.trim_end().ends_with("</svg>"), "a complete SVG");
    assert!(svg.contains("latency by percentile") && svg.contains("throughput per second"));
    h.transport.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_workload_in_text_and_json() {
    let h = start().await;
    let run = h
        .bench(&[
            "bench",
            "--workload",
            "put",
            "--clients",
            "8",
            "--connections",
            "2",
            "--duration",
            "1",
            "--warmup",
            "1",
            "--value-size",
            "64",
            "--json",
        ])
        .await;
    let doc = json(&run);
    check_spec_fields(&doc, "put", 8);
    assert_eq!(doc["connections"], 2);
    assert!(doc.get("load_before").is_some() && doc.get("setup_seconds").is_some());
    assert_eq!(doc["value_size"], 64);

    // The human table, and `bench wal` still a subcommand beside the flags.
    let run = h
        .bench(&[
            "bench",
            "--workload",
            "get",
            "--clients",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0",
        ])
        .await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert!(
        run.stdout.contains("p99 ms") && run.stdout.contains("get"),
        "{}",
        run.stdout
    );
    let wal_dir = h.tmp.path().join("walbench");
    let wal_arg = wal_dir.display().to_string();
    let run = h
        .bench(&[
            "bench",
            "wal",
            "--dir",
            &wal_arg,
            "--records",
            "20",
            "--json",
        ])
        .await;
    let doc = json(&run);
    assert!(doc.get("wal_records_s").is_some(), "{doc}");
    h.transport.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_and_an_unreachable_cluster() {
    let h = start().await;
    // No workload and no subcommand: usage (2).
    let run = h.bench(&["bench", "--clients", "2"]).await;
    assert_eq!(run.code, 2, "stderr: {}", run.stderr);
    // A workload with the wal subcommand's flags: usage (2).
    let run = h.bench(&["bench", "--workload", "nope"]).await;
    assert_eq!(run.code, 2, "stderr: {}", run.stderr);
    // Nobody listens there: exit 1 with one clear line.
    let dead = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().to_string()
    };
    let run = shoal(
        &[
            "bench",
            "--workload",
            "put",
            "--duration",
            "1",
            "--clients",
            "1",
        ],
        tls_args(&h.dir, &dead),
    )
    .await;
    assert_eq!(
        run.code, 1,
        "stderr: {}\nstdout: {}",
        run.stderr, run.stdout
    );
    assert_eq!(run.stderr.lines().count(), 1, "{:?}", run.stderr);
    assert!(
        run.stderr.contains("cannot reach the cluster"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"));
    h.transport.shutdown().await;
}
