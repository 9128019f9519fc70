//! End-to-end writes through a three-node cluster on loopback QUIC, fsync on: the nodes are
//! the real thing (`shoal::node::start_node`: QUIC peer transport, Raft driver, WAL with one
//! fdatasync per batch in a temporary directory, the shop state machine in fjall), run
//! in-process in one tokio runtime; the clients are [`shoal_net::Client`]s speaking the client
//! protocol over QUIC with mutual TLS, as `shoal kv put` does.
//!
//! `cluster_put/{1,16,64,256}`: that many concurrent clients, each with one 256-byte kv put in
//! flight, sharing one QUIC connection per 16 clients (as `shoal bench` does by default).
//! Throughput is in puts; a put is acknowledged after the leader and a quorum fsynced it.
//!
//! `cargo bench -p shoal-benches --bench cluster`. Runs in a temporary directory under
//! `SHOAL_BENCH_DIR` (default: the system temp dir, which should be on the disk you want to
//! measure). Nodes and benchmark clients share the machine's cores.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shoal::api::WriteBody;
use shoal::config::ClusterConfig;
use shoal::layout::{CA_CERT_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE, InitOptions};
use shoal::node::RunningNode;
use shoal_net::{Client, ClientOptions, RequestKind, TlsIdentity};
use shoal_shop::Request;

/// Concurrent clients measured.
const CLIENTS: [u64; 4] = [1, 16, 64, 256];
/// Clients per QUIC connection.
const CLIENTS_PER_CONNECTION: u64 = 16;
/// Bytes of each value.
const VALUE_BYTES: usize = 256;
/// Distinct keys written.
const KEYS: u64 = 10_000;

fn bench_root() -> tempfile::TempDir {
    match std::env::var_os("SHOAL_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(PathBuf::from(dir)),
        None => tempfile::tempdir(),
    }
    .unwrap_or_else(|e| panic!("cannot create a benchmark directory: {e}"))
}

/// A base port with `n` consecutive free UDP ports on 127.0.0.1 (free when checked).
fn free_base_port(n: u16) -> u16 {
    let seed = u64::from(std::process::id()) ^ Instant::now().elapsed().as_nanos() as u64;
    for attempt in 0..200u64 {
        let base = 20_000 + ((seed.wrapping_mul(7919) + attempt * 97) % 30_000) as u16;
        let all_free = (0..n).all(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no {n} consecutive free UDP ports on 127.0.0.1")
}

struct Cluster {
    _tmp: tempfile::TempDir,
    nodes: Vec<RunningNode>,
    clients: Vec<Arc<Client>>,
}

async fn start_cluster() -> Cluster {
    let tmp = bench_root();
    let dir = tmp.path().join("cluster");
    let base_port = free_base_port(3);
    shoal::layout::init_cluster(&InitOptions {
        dir: dir.clone(),
        nodes: 3,
        host: "127.0.0.1".into(),
        base_port,
        name: "bench".into(),
    })
    .unwrap_or_else(|e| panic!("cannot initialize the cluster: {e}"));
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let data_dir = dir.join(format!("node-{id}"));
        nodes.push(
            shoal::node::start_node(&data_dir)
                .await
                .unwrap_or_else(|e| panic!("node {id} does not start: {e}")),
        );
    }
    let cluster = ClusterConfig::load(&dir.join("cluster.toml"))
        .unwrap_or_else(|e| panic!("cannot read cluster.toml: {e}"));
    let addrs: Vec<SocketAddr> = cluster
        .members
        .iter()
        .map(|m| {
            m.client_address()
                .parse()
                .unwrap_or_else(|e| panic!("member address: {e}"))
        })
        .collect();
    let identity = client_identity(&dir);
    let connections = CLIENTS
        .iter()
        .max()
        .copied()
        .unwrap_or(1)
        .div_ceil(CLIENTS_PER_CONNECTION);
    let clients: Vec<Arc<Client>> = (0..connections)
        .map(|_| {
            Arc::new(
                Client::new(&identity, ClientOptions::new(addrs.clone()))
                    .unwrap_or_else(|e| panic!("client: {e}")),
            )
        })
        .collect();
    // Wait for a leader: a first put through every connection (also opens them).
    let deadline = Instant::now() + Duration::from_secs(60);
    for client in &clients {
        loop {
            match put(client, 0).await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("waiting for the cluster: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("the cluster does not serve writes: {e}"),
            }
        }
    }
    Cluster {
        _tmp: tmp,
        nodes,
        clients,
    }
}

fn client_identity(dir: &Path) -> TlsIdentity {
    TlsIdentity::from_files(
        &dir.join(CA_CERT_FILE),
        &dir.join(CLIENT_CERT_FILE),
        &dir.join(CLIENT_KEY_FILE),
    )
    .unwrap_or_else(|e| panic!("client identity: {e}"))
}

async fn put(client: &Client, i: u64) -> Result<(), String> {
    let body = WriteBody::Shop(Request::KvPut {
        key: format!("b{:015}", i % KEYS).into_bytes(),
        value: vec![b'v'; VALUE_BYTES],
    });
    let bytes = client
        .request(RequestKind::Write, body.to_bytes())
        .await
        .map_err(|e| e.to_string())?;
    match shoal_shop::decode_reply(&bytes) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) | Err(e) => Err(e.to_string()),
    }
}

/// `iters` puts by `concurrency` clients (each with one in flight); the time they took.
async fn puts(clients: &[Arc<Client>], concurrency: u64, iters: u64) -> Duration {
    let connections = concurrency.div_ceil(CLIENTS_PER_CONNECTION) as usize;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..concurrency.min(iters.max(1)) {
        let client = clients[c as usize % connections.clamp(1, clients.len())].clone();
        let next = next.clone();
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= iters {
                    break;
                }
                if let Err(e) = put(&client, i).await {
                    panic!("put failed during the benchmark: {e}");
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            panic!("a client task failed: {e}");
        }
    }
    started.elapsed()
}

fn cluster_put(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    shoal_net::ensure_crypto_provider();
    let cluster = runtime.block_on(start_cluster());
    let mut group = c.benchmark_group("cluster_put");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.warm_up_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    for clients in CLIENTS {
        group.bench_with_input(BenchmarkId::from_parameter(clients), &clients, |b, &n| {
            b.iter_custom(|iters| runtime.block_on(puts(&cluster.clients, n, iters)));
        });
    }
    group.finish();
    runtime.block_on(async move {
        for client in &cluster.clients {
            client.close().await;
        }
        for node in cluster.nodes {
            node.shutdown().await;
        }
    });
}

criterion_group!(benches, cluster_put);
criterion_main!(benches);
