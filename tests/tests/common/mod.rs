//! A harness for real `shoal` processes on 127.0.0.1, shared by `tests/tests/` and
//! `bin/tests/` (which includes this file by path): finds (or builds) the binary, picks free
//! ports, runs `shoal init`, starts and signals `shoal node` processes, runs CLI commands with
//! a bound, and polls until a condition holds. Every process it starts is killed when the
//! [`Cluster`] drops, even when the test fails.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal::api::NodeStatus;
use shoal::cli::client::Connection;
use shoal::cli::{Consistency, GlobalArgs};
use shoal::config::NodeConfig;
use shoal::node::process::{self, Signal};

/// Bound on one CLI invocation.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Real clusters share two cores with everything else: one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// `cargo build -p shoal ARGS` into this test's target directory (a no-op when up to date);
/// returns `target/<profile>`.
pub fn cargo_build(args: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("target directory")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "-p", "shoal"])
        .args(args)
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build -p shoal");
    assert!(status.success(), "cargo build -p shoal {args:?} failed");
    profile_dir
}

/// The `shoal` binary: the one cargo built for this crate's tests when it has one (the
/// `shoal` crate's own tests), else built into this test's target directory (once per test
/// process).
pub fn shoal_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = match option_env!("CARGO_BIN_EXE_shoal") {
            Some(path) => PathBuf::from(path),
            None => cargo_build(&["--bin", "shoal"]).join("shoal"),
        };
        assert!(bin.is_file(), "no shoal binary at {}", bin.display());
        bin
    })
}

/// `count` consecutive free UDP ports on 127.0.0.1; returns the first.
pub fn free_ports(count: u16) -> u16 {
    for _ in 0..200 {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if base < 20_000 || base > 65_000 - count {
            continue;
        }
        let all_free = (base..base + count).all(|port| {
            UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        if all_free {
            return base;
        }
    }
    panic!("no {count} consecutive free ports on 127.0.0.1");
}

/// The outcome of one CLI run.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal or the timeout).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// How long it took.
    pub elapsed: Duration,
}

impl Run {
    /// The JSON document on stdout.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }

    /// Asserts exit code 0.
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self
    }
}

/// Runs `shoal ARGS` with a bound; never hangs.
pub fn run_shoal(args: &[&str], timeout: Duration) -> Run {
    // Build (or find) the binary before the clock starts.
    let bin = shoal_bin();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("stdout");
    let err_path = tmp.path().join("stderr");
    let mut child = Command::new(bin)
        .args(args)
        .env_remove("SHOAL_DIR")
        .env_remove("SHOAL_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn shoal");
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// Polls `condition` every 50 ms until it returns `Some`, at most `timeout`; panics naming
/// `what` (and the last observation) otherwise.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match condition() {
            Ok(value) => return value,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A cluster directory made by `shoal init` and the node processes started from it.
pub struct Cluster {
    _tmp: tempfile::TempDir,
    /// The cluster directory.
    pub dir: PathBuf,
    /// The first node's port (node N listens on `base_port + N - 1`).
    pub base_port: u16,
    nodes: BTreeMap<u64, Child>,
}

impl Cluster {
    /// `shoal init --nodes N` on free ports (with `spare` more ports kept free for nodes
    /// added later); `adjust` edits every node.toml before any node starts.
    pub fn init(nodes: u64, spare: u16, adjust: impl Fn(&mut NodeConfig)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cluster");
        let base_port = free_ports(nodes as u16 + spare);
        let dir_arg = dir.to_str().unwrap().to_owned();
        run_shoal(
            &[
                "init",
                "--nodes",
                &nodes.to_string(),
                "--cluster-dir",
                &dir_arg,
                "--base-port",
                &base_port.to_string(),
            ],
            RUN_TIMEOUT,
        )
        .ok();
        let cluster = Self {
            _tmp: tmp,
            dir,
            base_port,
            nodes: BTreeMap::new(),
        };
        for id in 1..=nodes {
            cluster.edit_node(id, &adjust);
        }
        cluster
    }

    /// Edits `node-<id>/node.toml`.
    pub fn edit_node(&self, id: u64, adjust: impl Fn(&mut NodeConfig)) {
        let path = self.node_dir(id).join("node.toml");
        let mut config = NodeConfig::load(&path).unwrap();
        adjust(&mut config);
        std::fs::write(&path, config.to_toml().unwrap()).unwrap();
    }

    /// `DIR/node-<id>`.
    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    /// Node `id`'s address.
    pub fn addr(&self, id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base_port + id as u16 - 1))
    }

    /// Starts `shoal node --data-dir DIR/node-<id>` (output to its logs dir) and waits for its
    /// pid file.
    pub fn start(&mut self, id: u64) {
        let data_dir = self.node_dir(id);
        let logs = data_dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join("stdout.log"))
            .unwrap();
        let child = Command::new(shoal_bin())
            .arg("node")
            .arg("--data-dir")
            .arg(&data_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn shoal node");
        let pid = child.id() as i32;
        self.nodes.insert(id, child);
        wait_until(
            &format!("node {id} to write its pid file"),
            Duration::from_secs(20),
            || {
                if process::read_pid(&data_dir) == Some(pid) {
                    return Ok(());
                }
                let child = self.nodes.get_mut(&id).unwrap();
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "node {id} exited at start ({status}):\n{}",
                        self.log_tail(id, 30)
                    );
                }
                Err("no pid file yet".into())
            },
        );
    }

    /// Starts every node 1..=n.
    pub fn start_all(&mut self, n: u64) {
        for id in 1..=n {
            self.start(id);
        }
    }

    /// Whether node `id`'s process runs.
    pub fn is_running(&mut self, id: u64) -> bool {
        self.nodes
            .get_mut(&id)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs node `id` and waits (bounded) for a clean exit; returns its exit code.
    pub fn stop(&mut self, id: u64) -> Option<i32> {
        let mut child = self.nodes.remove(&id)?;
        process::signal(child.id() as i32, Signal::Term).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node {id} did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `shoal --cluster-dir DIR ARGS`.
    pub fn shoal(&self, args: &[&str]) -> Run {
        self.shoal_with_timeout(args, RUN_TIMEOUT)
    }

    /// Runs `shoal --cluster-dir DIR ARGS` with a bound.
    pub fn shoal_with_timeout(&self, args: &[&str], timeout: Duration) -> Run {
        let mut all = vec!["--cluster-dir", self.dir.to_str().unwrap()];
        all.extend_from_slice(args);
        run_shoal(&all, timeout)
    }

    /// Runs a CLI command against the given nodes only (`--cluster` with the cluster's client
    /// certificate).
    pub fn shoal_on(&self, ids: &[u64], args: &[&str]) -> Run {
        let addrs = ids
            .iter()
            .map(|id| self.addr(*id).to_string())
            .collect::<Vec<_>>()
            .join(",");
        let ca = self.dir.join("ca.pem");
        let cert = self.dir.join("client.pem");
        let key = self.dir.join("client-key.pem");
        let mut all = vec![
            "--cluster",
            &addrs,
            "--ca",
            ca.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        run_shoal(&all, RUN_TIMEOUT)
    }

    /// `status --json` rows by node id (reachable nodes only).
    pub fn status(&self) -> BTreeMap<u64, Value> {
        self.status_rows(self.shoal(&["status", "--json"]))
    }

    /// `status --json` asked of the given nodes only.
    pub fn status_of(&self, ids: &[u64]) -> BTreeMap<u64, Value> {
        self.status_rows(self.shoal_on(ids, &["status", "--json"]))
    }

    fn status_rows(&self, run: Run) -> BTreeMap<u64, Value> {
        if run.code != 0 {
            return BTreeMap::new();
        }
        run.json()
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|row| row["reachable"] == Value::Bool(true))
            .filter_map(|row| row["id"].as_u64().map(|id| (id, row)))
            .collect()
    }

    /// The leaders among `rows`.
    pub fn leaders(rows: &BTreeMap<u64, Value>) -> Vec<u64> {
        rows.iter()
            .filter(|(_, row)| row["role"] == "leader")
            .map(|(id, _)| *id)
            .collect()
    }

    /// Waits until exactly one of `ids` is the leader and every one of them names it; returns
    /// it.
    pub fn wait_for_leader(&self, ids: &[u64], timeout: Duration) -> u64 {
        wait_until("one leader", timeout, || {
            let rows = self.status_of(ids);
            let leaders = Self::leaders(&rows);
            if rows.len() == ids.len()
                && leaders.len() == 1
                && rows
                    .values()
                    .all(|r| r["leader"].as_u64() == Some(leaders[0]))
            {
                Ok(leaders[0])
            } else {
                Err(format!("{rows:?}"))
            }
        })
    }

    /// `kv put K V`, retried while the cluster is unavailable, within `timeout`.
    pub fn put(&self, key: &str, value: &str, timeout: Duration) {
        wait_until(&format!("kv put {key}"), timeout, || {
            let run = self.shoal(&["kv", "put", key, value]);
            if run.code == 0 {
                Ok(())
            } else {
                Err(format!("{run:?}"))
            }
        });
    }

    /// `kv get K` (linearizable) through the cluster dir.
    pub fn get(&self, key: &str) -> Option<String> {
        let run = self.shoal(&["kv", "get", key, "--json"]).ok();
        run.json()["value"].as_str().map(str::to_owned)
    }

    /// The last `lines` lines of node `id`'s output.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let text = std::fs::read_to_string(self.node_dir(id).join("logs").join("stdout.log"))
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The node's log file (`DATA/logs/node.log`).
    pub fn node_log(&self, id: u64) -> String {
        std::fs::read_to_string(self.node_dir(id).join("logs").join("node.log")).unwrap_or_default()
    }

    /// Global flags for in-process clients of this cluster (the lib's `cli::client`).
    pub fn global(&self) -> GlobalArgs {
        GlobalArgs {
            cluster_dir: self.dir.clone(),
            cluster: Vec::new(),
            ca: None,
            cert: None,
            key: None,
            token: None,
            json: false,
            consistency: Consistency::Linearizable,
        }
    }

    /// Every node's status asked in-process (None: unreachable), by id.
    pub fn statuses(&self, conn: &Connection) -> BTreeMap<u64, Option<NodeStatus>> {
        let targets = conn.targets().to_vec();
        conn.statuses_of(&targets).into_iter().collect()
    }

    /// The ids of the node processes this harness runs.
    pub fn running(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        if std::thread::panicking() {
            for id in &ids {
                eprintln!("--- node {id} (last lines) ---\n{}", self.log_tail(*id, 40));
            }
        }
        for (_, mut child) in std::mem::take(&mut self.nodes) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
