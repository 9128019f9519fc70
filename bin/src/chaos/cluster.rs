//! The local cluster a chaos run tortures: a fresh temporary cluster directory, `shoal node`
//! child processes, and the process-level faults (SIGKILL, SIGSTOP/SIGCONT, restart).
//!
//! Every child is killed (and reaped) when the [`LocalCluster`] is dropped, on every exit
//! path, and the temporary directory goes with it unless the run keeps it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::config::{NodeConfig, PasswordConfig, SnapshotConfig, TimingConfig, WalConfig};
use crate::layout::{self, InitOptions};
use crate::node::process::{self, Signal};

/// Node ids beyond the initial ones that membership changes may add, each with a port
/// reserved at the start.
pub const EXTRA_IDS: u64 = 24;

/// The node.toml settings of a chaos cluster: the fault hook on, fast timing (so that
/// elections and recoveries fit in a short run), small snapshot thresholds and WAL segments
/// (so that snapshots, compaction and segment rolls happen), and cheap argon2.
pub fn tune(node: &mut NodeConfig) {
    node.fault_hook = true;
    node.timing = TimingConfig {
        tick_ms: 10,
        heartbeat_ms: 50,
        election_timeout_min_ms: 250,
        election_timeout_max_ms: 500,
        lease_ms: 100,
    };
    node.snapshot = SnapshotConfig {
        max_log_entries: 2_000,
        max_log_bytes: 2 << 20,
        keep: 2,
    };
    node.wal = WalConfig {
        segment_bytes: 256 << 10,
        max_bytes: 64 << 20,
    };
    node.passwords = PasswordConfig {
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        argon2_lanes: 1,
        ..PasswordConfig::default()
    };
}

/// The lowest port the kernel hands out to sockets bound to port 0 (Linux), else 32768.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A range of `count` consecutive UDP ports on 127.0.0.1 that are free now, below the
/// ephemeral range: the run's own clients bind port 0 all the time, and one of them must
/// not take the port of a node that is down (its restart would fail to bind).
fn free_port_range(count: u16) -> Result<u16, String> {
    let low = ephemeral_low();
    let (from, to) = if low > 10_000 + count + 100 {
        (10_000, low - count)
    } else {
        (1_024, 60_000 - count)
    };
    for _ in 0..200 {
        let base: u16 = rand::random_range(from..to);
        let free = (0..count).all(|i| UdpSocket::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return Ok(base);
        }
    }
    Err(format!(
        "found no {count} consecutive free UDP ports on 127.0.0.1"
    ))
}

/// `line` without its terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A local cluster of `shoal node` child processes.
pub struct LocalCluster {
    /// The temporary directory (removed on drop); `None` when kept.
    temp: Option<tempfile::TempDir>,
    dir: PathBuf,
    base_port: u16,
    initial: u64,
    children: BTreeMap<u64, Child>,
    paused: BTreeSet<u64>,
    /// Ids that are members (voters or learners) as far as the run knows.
    members: BTreeSet<u64>,
    next_extra: u64,
}

impl LocalCluster {
    /// Initialises a cluster of `nodes` in a new temporary directory (ports chosen free),
    /// tunes every node.toml, and starts no process yet.
    pub fn create(nodes: u64) -> Result<LocalCluster, String> {
        let temp = tempfile::Builder::new()
            .prefix("shoal-chaos-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let dir = temp.path().join("cluster");
        let base_port = free_port_range((nodes + EXTRA_IDS) as u16)?;
        let report = layout::init_cluster(&InitOptions {
            dir: dir.clone(),
            nodes,
            host: "127.0.0.1".into(),
            base_port,
            name: "shoal-chaos".into(),
        })
        .map_err(|e| format!("cannot initialise the chaos cluster: {e}"))?;
        for member in &report.cluster.members {
            Self::tune_node(&dir, member.id)?;
        }
        Ok(LocalCluster {
            temp: Some(temp),
            dir,
            base_port,
            initial: nodes,
            children: BTreeMap::new(),
            paused: BTreeSet::new(),
            members: (1..=nodes).collect(),
            next_extra: nodes + 1,
        })
    }

    fn tune_node(dir: &Path, id: u64) -> Result<(), String> {
        let data_dir = layout::node_dir(dir, id);
        let mut node = NodeConfig::load_from_data_dir(&data_dir).map_err(|e| e.to_string())?;
        tune(&mut node);
        let text = node.to_toml().map_err(|e| e.to_string())?;
        let path = data_dir.join(crate::config::NODE_FILE);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Keeps the cluster directory after the run; returns where it is.
    pub fn keep(&mut self) -> PathBuf {
        if let Some(temp) = self.temp.take() {
            let _ = temp.keep();
        }
        self.dir.clone()
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many nodes the cluster was created with.
    pub fn initial_nodes(&self) -> u64 {
        self.initial
    }

    /// Node `id`'s address (peers and clients).
    pub fn addr(&self, id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base_port + (id - 1) as u16))
    }

    /// The addresses of the initial nodes (what clients are given).
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        (1..=self.initial).map(|id| self.addr(id)).collect()
    }

    /// The members as the run knows them.
    pub fn members(&self) -> Vec<u64> {
        self.members.iter().copied().collect()
    }

    /// Members whose process runs and is not paused.
    pub fn running(&self) -> Vec<u64> {
        self.members
            .iter()
            .copied()
            .filter(|id| self.children.contains_key(id) && !self.paused.contains(id))
            .collect()
    }

    /// Whether node `id`'s process is running (paused or not).
    pub fn is_up(&self, id: u64) -> bool {
        self.children.contains_key(&id)
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        layout::node_dir(&self.dir, id)
    }

    /// Starts node `id`'s process (output appended to `DATA/logs/stdout.log`).
    pub fn start(&mut self, id: u64) -> Result<(), String> {
        if self.children.contains_key(&id) {
            return Ok(());
        }
        let data_dir = self.data_dir(id);
        let logs = data_dir.join(process::LOGS_DIR);
        std::fs::create_dir_all(&logs)
            .map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
        let log_path = logs.join("stdout.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find the shoal executable: {e}"))?;
        let child = std::process::Command::new(exe)
            .arg("node")
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("cannot start node {id}: {e}"))?;
        self.children.insert(id, child);
        Ok(())
    }

    /// Whether node `id`'s process exited on its own (it should not); reaps it if so.
    pub fn exited(&mut self, id: u64) -> Option<String> {
        let child = self.children.get_mut(&id)?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.children.remove(&id);
                self.paused.remove(&id);
                let log = self.data_dir(id).join(process::LOGS_DIR).join("stdout.log");
                // The node's last error line says why (the directory may not be kept).
                let last_error = std::fs::read(&log)
                    .ok()
                    .and_then(|bytes| {
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        text.lines()
                            .rev()
                            .find(|l| l.contains("error") || l.contains("ERROR"))
                            .map(|l| strip_ansi(l).chars().take(400).collect::<String>())
                    })
                    .unwrap_or_default();
                Some(format!(
                    "node {id} exited ({status}): {last_error} (log: {})",
                    log.display()
                ))
            }
            _ => None,
        }
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused.remove(&id);
    }

    /// SIGSTOPs node `id`.
    pub fn pause(&mut self, id: u64) -> Result<(), String> {
        let child = self
            .children
            .get(&id)
            .ok_or_else(|| format!("node {id} is not running"))?;
        process::signal(child.id() as i32, Signal::Stop)
            .map_err(|e| format!("cannot pause node {id}: {e}"))?;
        self.paused.insert(id);
        Ok(())
    }

    /// SIGCONTs every paused node.
    pub fn resume_all(&mut self) {
        for id in std::mem::take(&mut self.paused) {
            if let Some(child) = self.children.get(&id) {
                let _ = process::signal(child.id() as i32, Signal::Continue);
            }
        }
    }

    /// Writes a new node's files (the next extra id) and records it as a member; returns its
    /// id and address. `None` when every reserved id was used.
    pub fn prepare_extra(&mut self) -> Result<Option<(u64, SocketAddr)>, String> {
        if self.next_extra > self.initial + EXTRA_IDS {
            return Ok(None);
        }
        let id = self.next_extra;
        self.next_extra += 1;
        let addr = self.addr(id);
        layout::add_node(&self.dir, id, &addr.to_string())
            .map_err(|e| format!("cannot add node {id}'s files: {e}"))?;
        Self::tune_node(&self.dir, id)?;
        self.members.insert(id);
        Ok(Some((id, addr)))
    }

    /// Forgets a removed member: kills its process and drops it from cluster.toml.
    pub fn forget(&mut self, id: u64) {
        self.kill(id);
        self.members.remove(&id);
        let _ = layout::remove_member(&self.dir, id);
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // SIGKILL works on stopped processes too; reap every child so none is left behind.
        let ids: Vec<u64> = self.children.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

/// Whether the last WAL record of a stopped node lies beyond what its state machine has
/// durably applied, as an unsynced tail would (a record the state machine applied was synced
/// before, and a lost synced record is a disk that lies, which Raft does not survive). Opens
/// the node's state machine and log read-only in effect (both recover as the node would at
/// its next start) and returns `(last log index, applied index)`.
pub fn wal_tail_beyond_applied(data_dir: &Path) -> Result<(u64, u64, bool), String> {
    use shoal_engine::StateMachine;
    use shoal_wal::LogStore;
    let applied = {
        let shop = shoal_shop::Shop::open(data_dir.join(crate::node::SHOP_DIR))
            .map_err(|e| format!("cannot open the state machine: {e}"))?;
        shop.applied_index()
    };
    let last = {
        let mut options = shoal_wal::WalOptions::for_data_dir(data_dir);
        options.segment_bytes = 256 << 10;
        options.preallocate_in_background = false;
        let wal = shoal_wal::Wal::open(options).map_err(|e| format!("cannot open the WAL: {e}"))?;
        wal.last_index()
    };
    Ok((last, applied, last > applied))
}
