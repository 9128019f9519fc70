//! The node: assembles the crates into one running Raft member (`shoal node`).
//!
//! ```text
//!  client ──QUIC (ALPN shoal-client/1)──┐            ┌── peers (ALPN shoal-peer/1)
//!                                       ▼            ▼
//!                                  PeerTransport (net) ── peer_messages ──► pump_inbound ──► NodeHandle::deliver
//!                                       │ client_requests                                       │
//!                                       ▼                                                       ▼
//!                     server::serve ──► RaftNode (NodeApi) ──► NodeHandle ──► driver event loop ── WAL (fsync)
//!                                                                                 │        └──► apply thread ──► Shop (fjall)
//!                                                                                 ▼
//!                                                                         QuicTransport::send ──► PeerTransport
//! ```
//!
//! # Layout
//! - [`transport`]: [`QuicTransport`] (the engine's `Transport` over QUIC) and
//!   [`transport::pump_inbound`] (peer bytes → validated messages → the driver).
//! - [`raft`]: [`RaftNode`], the request handler's [`crate::server::NodeApi`] over the
//!   driver's handle.
//! - [`process`]: pid file and signals.
//! - [`embed`]: [`embed::QuicNode`] and [`embed::InProcessCluster`]: nodes with the
//!   embedder's own state machine over QUIC (the `embedded` example).
//! - [`run_node`]: `shoal node --data-dir DIR`.

pub mod embed;
pub mod process;
pub mod raft;
pub mod transport;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shoal_engine::driver::{NodeBuilder, NodeHandle, SnapshotPolicy};
use shoal_net::{PeerTransport, PeerTransportConfig, TlsIdentity};
use shoal_shop::Shop;
use tracing::{error, info, warn};

use crate::config::{ClusterConfig, NodeConfig};
use crate::server::{self, ServerContext};

pub use raft::RaftNode;
pub use transport::QuicTransport;

/// The state machine's directory inside a node's data directory.
pub const SHOP_DIR: &str = "shop";

/// The file, in a node's data directory and in the cluster directory, that holds the voters
/// the cluster was created with (the engine needs the same list on every node and at every
/// start, while cluster.toml grows with `member add`).
pub const INITIAL_VOTERS_FILE: &str = "initial-voters";

/// How far (in entries) a learner may lag behind the commit index and still be promoted.
pub const MAX_PROMOTION_LAG: u64 = 16;

/// Why a node could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeRunError {
    /// Its configuration is missing or invalid.
    #[error("{0}")]
    Config(String),
    /// It could not start or stopped on a failure.
    #[error("{0}")]
    Failed(String),
}

fn failed(what: &str) -> impl FnOnce(String) -> NodeRunError + '_ {
    move |error| NodeRunError::Failed(format!("{what}: {error}"))
}

/// The engine builder for `node` in `data_dir` with the timing, snapshot and WAL sizes of its
/// node.toml.
pub fn builder(node: &NodeConfig, data_dir: &Path, voters: &[u64]) -> NodeBuilder {
    let timing = &node.timing;
    NodeBuilder::new(node.id, data_dir)
        .voters(voters.iter().copied())
        // A learner is promoted only once it is within this many entries of the commit index.
        .raft_config(|raft| raft.max_promotion_lag = MAX_PROMOTION_LAG)
        .tick(Duration::from_millis(timing.tick_ms))
        .heartbeat_interval(Duration::from_millis(timing.heartbeat_ms))
        .election_timeout(
            Duration::from_millis(timing.election_timeout_min_ms),
            Duration::from_millis(timing.election_timeout_max_ms),
        )
        .lease(Duration::from_millis(timing.lease_ms))
        .snapshot_policy(SnapshotPolicy {
            max_log_entries: node.snapshot.max_log_entries,
            max_log_bytes: node.snapshot.max_log_bytes,
            keep: node.snapshot.keep,
        })
        .wal_segment_bytes(node.wal.segment_bytes)
        .wal_max_bytes(node.wal.max_bytes)
}

fn parse_voters(text: &str) -> Option<Vec<u64>> {
    let voters: Vec<u64> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().ok().filter(|id| *id > 0))
        .collect::<Option<_>>()?;
    (!voters.is_empty()).then_some(voters)
}

fn read_voters(path: &Path) -> Result<Option<Vec<u64>>, NodeRunError> {
    match std::fs::read_to_string(path) {
        // Created but not yet written by the node that won the race to create it.
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => parse_voters(&text).map(Some).ok_or_else(|| {
            NodeRunError::Config(format!(
                "invalid {}: expected node ids separated by commas",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NodeRunError::Failed(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn voters_text(voters: &[u64]) -> String {
    let ids: Vec<String> = voters.iter().map(u64::to_string).collect();
    format!("{}\n", ids.join(","))
}

fn write_voters(path: &Path, voters: &[u64]) -> Result<(), NodeRunError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, voters_text(voters))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| NodeRunError::Failed(format!("cannot write {}: {e}", path.display())))
}

/// The voters the cluster was created with: from the node's data dir, else from the cluster
/// dir, else (the cluster's first start) cluster.toml's members, recorded in both places.
pub fn initial_voters(
    data_dir: &Path,
    cluster_dir: Option<&Path>,
    cluster: &ClusterConfig,
) -> Result<Vec<u64>, NodeRunError> {
    let own = data_dir.join(INITIAL_VOTERS_FILE);
    if let Some(voters) = read_voters(&own)? {
        return Ok(voters);
    }
    let shared = cluster_dir.map(|dir| dir.join(INITIAL_VOTERS_FILE));
    let voters = match &shared {
        Some(path) => match read_voters(path)? {
            Some(voters) => voters,
            None => {
                let voters = cluster.ids();
                // Nodes of a new cluster start together: the first to write wins, the others
                // read what it wrote (the same list anyway).
                let created = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path);
                match created {
                    Ok(mut file) => {
                        use std::io::Write;
                        file.write_all(voters_text(&voters).as_bytes())
                            .and_then(|()| file.sync_all())
                            .map_err(|e| {
                                NodeRunError::Failed(format!(
                                    "cannot write {}: {e}",
                                    path.display()
                                ))
                            })?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "cannot record the initial voters")
                    }
                }
                // Another node may be writing it right now: wait for its content briefly.
                let mut found = read_voters(path).ok().flatten();
                for _ in 0..50 {
                    if found.is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    found = read_voters(path).ok().flatten();
                }
                found.unwrap_or(voters)
            }
        },
        None => cluster.ids(),
    };
    write_voters(&own, &voters)?;
    Ok(voters)
}

/// A node that is running: its handle, its transport and the tasks serving it.
#[derive(Debug)]
pub struct RunningNode {
    /// The node as the request handler sees it.
    pub node: RaftNode,
    /// The QUIC endpoint.
    pub peers: Arc<PeerTransport>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// The driver's handle.
    pub fn handle(&self) -> &NodeHandle {
        self.node.handle()
    }

    /// Stops cleanly: the driver flushes and closes its WAL, then the endpoint closes.
    pub async fn shutdown(self) {
        if let Err(error) = self.node.handle().shutdown().await {
            warn!(%error, "driver shutdown failed");
        }
        for task in &self.tasks {
            task.abort();
        }
        self.peers.shutdown().await;
    }
}

/// Loads `DATA/node.toml` and its cluster.toml and starts the node (shop state machine,
/// driver, QUIC endpoint, client request handler). Returns once it runs.
pub async fn start_node(data_dir: &Path) -> Result<RunningNode, NodeRunError> {
    let node = NodeConfig::load_from_data_dir(data_dir)
        .map_err(|e| NodeRunError::Config(e.to_string()))?;
    let cluster = node
        .load_cluster(data_dir)
        .map_err(|e| NodeRunError::Config(e.to_string()))?;
    let cluster_file = NodeConfig::resolve_path(data_dir, &node.cluster_file);
    let listen = node
        .listen_addr()
        .map_err(|e| NodeRunError::Config(format!("invalid node.toml: {e}")))?;
    if let Some(pid) = process::read_pid(data_dir)
        && pid != std::process::id() as i32
        && process::is_node_process(pid)
    {
        return Err(NodeRunError::Failed(format!(
            "node {} is already running (pid {pid}, see {})",
            node.id,
            process::pid_file(data_dir).display()
        )));
    }
    let (ca, cert, key) = node.tls_paths(data_dir);
    let identity = TlsIdentity::from_files(&ca, &cert, &key)
        .map_err(|e| NodeRunError::Config(format!("node {} tls identity: {e}", node.id)))?;
    let mut peer_config = PeerTransportConfig::new(node.id, listen, identity);
    peer_config.enable_fault_hook = node.fault_hook;
    peer_config.fault_seed = node.id;
    let (peers, channels) = PeerTransport::bind(peer_config)
        .await
        .map_err(|e| NodeRunError::Failed(format!("node {}: {e}", node.id)))?;
    let peers = Arc::new(peers);

    let voters = initial_voters(data_dir, cluster_file.parent(), &cluster)?;
    let shop_dir = data_dir.join(SHOP_DIR);
    let shop = tokio::task::spawn_blocking(move || Shop::open(&shop_dir))
        .await
        .map_err(|e| failed("state machine")(e.to_string()))?
        .map_err(|e| failed("cannot open the state machine")(e.to_string()))?;
    let transport = Arc::new(QuicTransport::new(peers.clone()));
    let handle = builder(&node, data_dir, &voters)
        .start(shop, transport)
        .await
        .map_err(|e| NodeRunError::Failed(format!("node {} cannot start: {e}", node.id)))?;

    let activity = Arc::new(transport::PeerActivity::default());
    let raft = RaftNode::new(
        handle.clone(),
        peers.clone(),
        &cluster,
        Some(cluster_file),
        node.fault_hook,
    )
    .with_failover(
        activity.clone(),
        // Three missed heartbeats: the leader is presumed gone.
        Duration::from_millis(node.timing.heartbeat_ms.saturating_mul(3).max(300)),
        Duration::from_millis(node.timing.election_timeout_max_ms.saturating_mul(2))
            .min(Duration::from_millis(2500)),
    );
    let context = Arc::new(ServerContext::for_node(&node, cluster));
    let tasks = vec![
        tokio::spawn(transport::pump_inbound(
            channels.peer_messages,
            handle,
            activity,
        )),
        tokio::spawn(server::serve(
            channels.client_requests,
            Arc::new(raft.clone()),
            context,
        )),
        tokio::spawn(raft.clone().watch_membership()),
    ];
    info!(node = node.id, %listen, voters = ?voters, "node started");
    Ok(RunningNode {
        node: raft,
        peers,
        tasks,
    })
}

fn write_pid_file(data_dir: &Path) -> Result<PathBuf, NodeRunError> {
    let path = process::pid_file(data_dir);
    let tmp = data_dir.join(format!("{}.tmp", process::PID_FILE));
    std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| NodeRunError::Failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// `shoal node`: starts the node in `data_dir`, writes `node.pid`, runs until `shutdown`
/// completes (SIGINT/SIGTERM in the binary) or the node stops on a fatal error, then shuts
/// down cleanly and removes the pid file.
pub async fn run_node(
    data_dir: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeRunError> {
    let running = start_node(data_dir).await?;
    let pid_path = write_pid_file(data_dir)?;
    let handle = running.handle().clone();
    let stopped = async {
        loop {
            // The node stops on its own only after a fatal error (a poisoned WAL, a failing
            // state machine).
            if let Ok(metrics) = handle
                .wait_for(Duration::from_secs(3600), |m| m.stopped.is_some())
                .await
            {
                return metrics.stopped.unwrap_or_default();
            }
        }
    };
    let outcome = tokio::select! {
        () = shutdown => {
            info!("shutting down");
            Ok(())
        }
        reason = stopped => {
            error!(%reason, "node stopped");
            Err(NodeRunError::Failed(format!("node {} stopped: {reason}", handle.id())))
        }
    };
    running.shutdown().await;
    let _ = std::fs::remove_file(&pid_path);
    info!("node stopped cleanly");
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MemberConfig;

    fn cluster(ids: &[u64]) -> ClusterConfig {
        ClusterConfig {
            name: "t".into(),
            members: ids
                .iter()
                .map(|id| MemberConfig {
                    id: *id,
                    addr: format!("127.0.0.1:{}", 7000 + id),
                    client_addr: None,
                })
                .collect(),
        }
    }

    /// Timing that node.toml validation accepts is timing the engine accepts: a node never
    /// passes `shoal init` and then refuses to start over its lease.
    #[test]
    fn accepted_timing_is_accepted_by_the_engine() {
        let tmp = tempfile::tempdir().unwrap();
        let mut accepted = 0;
        for tick_ms in [1u64, 7, 10, 25] {
            for election_timeout_min_ms in [100u64, 333, 1000] {
                for lease_ms in (1..election_timeout_min_ms).step_by(7) {
                    let mut node = NodeConfig::new(1, "127.0.0.1:7001");
                    node.timing.tick_ms = tick_ms;
                    node.timing.heartbeat_ms = tick_ms.max(election_timeout_min_ms / 10);
                    node.timing.election_timeout_min_ms = election_timeout_min_ms;
                    node.timing.election_timeout_max_ms = 2 * election_timeout_min_ms;
                    node.timing.lease_ms = lease_ms;
                    if node.validate().is_err() {
                        continue;
                    }
                    accepted += 1;
                    let engine = builder(&node, tmp.path(), &[1]).validate();
                    assert!(
                        engine.is_ok(),
                        "tick {tick_ms} election {election_timeout_min_ms} lease {lease_ms}: {engine:?}"
                    );
                }
            }
        }
        assert!(accepted > 100, "only {accepted} timings accepted");
    }

    #[test]
    fn initial_voters_are_fixed_at_the_first_start() {
        let tmp = tempfile::tempdir().unwrap();
        let cluster_dir = tmp.path();
        for id in 1..=3 {
            std::fs::create_dir_all(cluster_dir.join(format!("node-{id}"))).unwrap();
        }
        let first = initial_voters(
            &cluster_dir.join("node-1"),
            Some(cluster_dir),
            &cluster(&[1, 2, 3]),
        )
        .unwrap();
        assert_eq!(first, vec![1, 2, 3]);
        // A node added later sees cluster.toml with itself in it, but the recorded list.
        std::fs::create_dir_all(cluster_dir.join("node-4")).unwrap();
        let added = initial_voters(
            &cluster_dir.join("node-4"),
            Some(cluster_dir),
            &cluster(&[1, 2, 3, 4]),
        )
        .unwrap();
        assert_eq!(added, vec![1, 2, 3]);
        // A restart keeps its own list even if cluster.toml changed.
        let again = initial_voters(
            &cluster_dir.join("node-1"),
            Some(cluster_dir),
            &cluster(&[1, 3]),
        )
        .unwrap();
        assert_eq!(again, vec![1, 2, 3]);
    }

    #[test]
    fn a_corrupt_voters_file_is_a_config_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(INITIAL_VOTERS_FILE), "1,x").unwrap();
        assert!(matches!(
            initial_voters(tmp.path(), None, &cluster(&[1])),
            Err(NodeRunError::Config(_))
        ));
    }
}
