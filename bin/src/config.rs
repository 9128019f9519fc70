//! The two configuration files `shoal init` writes and nodes and clients read:
//!
//! - [`ClusterConfig`], `DIR/cluster.toml`: the cluster's name and its members (id, peer
//!   address, client-facing address when different). Clients read it to find the cluster.
//! - [`NodeConfig`], `DIR/node-<id>/node.toml`: one node's id, listen address, TLS files,
//!   timing, snapshot policy, WAL bounds, fault hook and log level.
//!
//! Both are TOML with serde; unknown fields are refused (a typo must not be silently ignored).
//! Loading validates: errors name the file and the field.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// File name of the cluster configuration inside the cluster directory.
pub const CLUSTER_FILE: &str = "cluster.toml";
/// File name of a node's configuration inside its data directory.
pub const NODE_FILE: &str = "node.toml";
/// Largest configuration file accepted, in bytes.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Most members a cluster configuration may list.
pub const MAX_MEMBERS: usize = 255;

/// A configuration that cannot be used: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// The field (dotted path, e.g. `timing.election_timeout_min_ms` or `member[2].addr`).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ValidationError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Why a configuration file could not be loaded or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// `read` or `write`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("{} is too large ({len} bytes, at most {MAX_CONFIG_BYTES})", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The file is not valid TOML for this structure (the message names the field).
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, on one line.
        message: String,
    },
    /// A field has a value that cannot work.
    #[error("{}: invalid {}", path.display(), source)]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which field and why.
        source: ValidationError,
    },
    /// The structure could not be serialized.
    #[error("cannot serialize {what}: {message}")]
    Serialize {
        /// What was serialized.
        what: &'static str,
        /// toml's message.
        message: String,
    },
}

/// One member of the cluster as clients and peers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// The node's id (≥ 1, unique).
    pub id: u64,
    /// Where peers reach the node (`host:port`, UDP for QUIC).
    pub addr: String,
    /// Where clients reach the node, when different from `addr` (`host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
}

impl MemberConfig {
    /// The address clients use: `client_addr`, or `addr`.
    pub fn client_address(&self) -> &str {
        self.client_addr.as_deref().unwrap_or(&self.addr)
    }
}

/// `DIR/cluster.toml`: the cluster's name and members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// A name for the cluster (appears in the CA's common name).
    pub name: String,
    /// The members, one `[[member]]` table each.
    #[serde(rename = "member", default)]
    pub members: Vec<MemberConfig>,
}

/// Checks `host:port`: a non-empty host without spaces and a port from 1 to 65535.
pub fn validate_host_port(field: &str, value: &str) -> Result<(), ValidationError> {
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(ValidationError::new(
            field,
            format!("{value:?} is not host:port"),
        ));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace()) {
        return Err(ValidationError::new(
            field,
            format!("{value:?} has no valid host"),
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(ValidationError::new(
            field,
            format!("{value:?} has no valid port (1-65535)"),
        )),
    }
}

/// Resolves `host:port` to socket addresses (DNS for host names).
pub fn resolve(value: &str) -> std::io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    Ok(value.to_socket_addrs()?.collect())
}

impl ClusterConfig {
    /// Checks the name and every member: ids ≥ 1 and unique, addresses `host:port`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.name.trim().is_empty() || self.name.len() > 100 {
            return Err(ValidationError::new("name", "must be 1 to 100 characters"));
        }
        if self.members.is_empty() {
            return Err(ValidationError::new(
                "member",
                "the cluster needs at least one member",
            ));
        }
        if self.members.len() > MAX_MEMBERS {
            return Err(ValidationError::new(
                "member",
                format!("at most {MAX_MEMBERS} members"),
            ));
        }
        let mut ids = BTreeSet::new();
        for (i, member) in self.members.iter().enumerate() {
            if member.id == 0 {
                return Err(ValidationError::new(
                    format!("member[{i}].id"),
                    "must be at least 1",
                ));
            }
            if !ids.insert(member.id) {
                return Err(ValidationError::new(
                    format!("member[{i}].id"),
                    format!("node {} is listed twice", member.id),
                ));
            }
            validate_host_port(&format!("member[{i}].addr"), &member.addr)?;
            if let Some(client) = &member.client_addr {
                validate_host_port(&format!("member[{i}].client_addr"), client)?;
            }
        }
        Ok(())
    }

    /// The member with id `id`.
    pub fn member(&self, id: u64) -> Option<&MemberConfig> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The ids of every member, in file order.
    pub fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = load_toml(path)?;
        config.validate().map_err(|source| ConfigError::Invalid {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(config)
    }

    /// The TOML text of the configuration.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        to_toml("cluster configuration", self)
    }
}

/// TLS files of a node, relative to its data directory unless absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// The node's certificate (PEM).
    pub cert: PathBuf,
    /// The node's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl Default for TlsFiles {
    fn default() -> Self {
        Self {
            ca: PathBuf::from("ca.pem"),
            cert: PathBuf::from("node.pem"),
            key: PathBuf::from("node-key.pem"),
        }
    }
}

/// Raft timing, in milliseconds of wall clock (the driver converts to ticks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimingConfig {
    /// Length of one logical tick of the Raft core.
    pub tick_ms: u64,
    /// Interval between a leader's heartbeats.
    pub heartbeat_ms: u64,
    /// Lowest election timeout: a follower hearing no leader this long may start an election.
    pub election_timeout_min_ms: u64,
    /// Highest election timeout (each timeout is drawn in `[min, max)`).
    pub election_timeout_max_ms: u64,
    /// How long a leader may serve lease reads after a quorum heard it; below the minimum
    /// election timeout.
    pub lease_ms: u64,
}

impl Default for TimingConfig {
    /// A 10 ms tick, heartbeats every 100 ms, elections after 1–2 s, an 800 ms lease.
    fn default() -> Self {
        Self {
            tick_ms: 10,
            heartbeat_ms: 100,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            lease_ms: 800,
        }
    }
}

impl TimingConfig {
    /// The tick as a duration.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    /// The heartbeat interval as a duration.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// The election timeout range `[min, max)` as durations.
    pub fn election_timeout(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.election_timeout_min_ms),
            Duration::from_millis(self.election_timeout_max_ms),
        )
    }

    /// The leader lease as a duration.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    /// Checks the timing: positive, heartbeat < election timeout, lease plus the clock-drift
    /// margin < election timeout.
    pub fn validate(&self) -> Result<(), ValidationError> {
        const MAX_MS: u64 = 600_000;
        for (field, value) in [
            ("timing.tick_ms", self.tick_ms),
            ("timing.heartbeat_ms", self.heartbeat_ms),
            (
                "timing.election_timeout_min_ms",
                self.election_timeout_min_ms,
            ),
            (
                "timing.election_timeout_max_ms",
                self.election_timeout_max_ms,
            ),
            ("timing.lease_ms", self.lease_ms),
        ] {
            if value == 0 || value > MAX_MS {
                return Err(ValidationError::new(
                    field,
                    format!("must be between 1 and {MAX_MS} ms, got {value}"),
                ));
            }
        }
        if self.heartbeat_ms < self.tick_ms {
            return Err(ValidationError::new(
                "timing.heartbeat_ms",
                "must be at least one tick (tick_ms)",
            ));
        }
        if self.election_timeout_min_ms <= self.heartbeat_ms {
            return Err(ValidationError::new(
                "timing.election_timeout_min_ms",
                "must be greater than heartbeat_ms",
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(ValidationError::new(
                "timing.election_timeout_max_ms",
                "must be greater than election_timeout_min_ms",
            ));
        }
        if self.lease_ms < self.tick_ms {
            return Err(ValidationError::new(
                "timing.lease_ms",
                "must be at least one tick (tick_ms)",
            ));
        }
        if self.lease_ms >= self.election_timeout_min_ms {
            return Err(ValidationError::new(
                "timing.lease_ms",
                "must be less than election_timeout_min_ms",
            ));
        }
        // The engine keeps a margin for clock drift between the lease's end and the earliest
        // election (lease reads stay safe if a follower's clock runs fast): say so here, not
        // as a refusal when the node starts.
        let drift_ticks = shoal_engine::core::Config::new(1).clock_drift_ticks;
        let drift_ms = u64::from(drift_ticks).saturating_mul(self.tick_ms);
        if self.lease_ms.saturating_add(drift_ms) >= self.election_timeout_min_ms {
            return Err(ValidationError::new(
                "timing.lease_ms",
                format!(
                    "must leave {drift_ms} ms ({drift_ticks} ticks of tick_ms) for clock drift \
                     below election_timeout_min_ms: at most {} ms with these settings",
                    self.election_timeout_min_ms
                        .saturating_sub(drift_ms)
                        .saturating_sub(1)
                ),
            ));
        }
        Ok(())
    }
}

/// When the node snapshots its state machine and compacts its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Snapshot after this many entries applied since the last snapshot.
    pub max_log_entries: u64,
    /// Snapshot after this many payload bytes applied since the last snapshot.
    pub max_log_bytes: u64,
    /// Snapshot files kept on disk (at least 1).
    pub keep: usize,
}

impl Default for SnapshotConfig {
    /// Every 100,000 entries or 256 MiB, keeping 2 snapshots.
    fn default() -> Self {
        Self {
            max_log_entries: 100_000,
            max_log_bytes: 256 << 20,
            keep: 2,
        }
    }
}

/// The write-ahead log's sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    /// Size of each segment file (at least 4096 and a multiple of 8).
    pub segment_bytes: u64,
    /// Bound on the WAL's bytes on disk (segment files count whole, as preallocated): once a
    /// second the node checks it and, when the log is past it, snapshots and so compacts.
    /// Under steady writes the WAL stays within this plus about two segments (the one that
    /// crossed it and one opened while the snapshot runs). At least two segments.
    pub max_bytes: u64,
}

impl Default for WalConfig {
    /// 64 MiB segments, at most 1 GiB on disk.
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            max_bytes: 1 << 30,
        }
    }
}

/// Password hashing costs and session lifetime (argon2id). Lower costs only for test
/// clusters: hashes keep the costs they were made with, and verification refuses hashes far
/// costlier than the configured (or default) costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    /// argon2 memory cost, in KiB (at least 8 × lanes).
    pub argon2_memory_kib: u32,
    /// argon2 passes.
    pub argon2_iterations: u32,
    /// argon2 lanes.
    pub argon2_lanes: u32,
    /// How long a login session lasts, in seconds.
    pub session_ttl_secs: u64,
}

impl Default for PasswordConfig {
    /// The shop's defaults: argon2id with the crate's recommended costs, 24-hour sessions.
    fn default() -> Self {
        let prepare = shoal_shop::PrepareConfig::default();
        Self {
            argon2_memory_kib: prepare.argon2_memory_kib,
            argon2_iterations: prepare.argon2_iterations,
            argon2_lanes: prepare.argon2_lanes,
            session_ttl_secs: prepare.session_ttl_ms / 1000,
        }
    }
}

impl PasswordConfig {
    /// Checks the costs and the lifetime.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.argon2_lanes == 0 || self.argon2_lanes > 16 {
            return Err(ValidationError::new(
                "passwords.argon2_lanes",
                "must be between 1 and 16",
            ));
        }
        if self.argon2_memory_kib < 8 * self.argon2_lanes || self.argon2_memory_kib > (1 << 20) {
            return Err(ValidationError::new(
                "passwords.argon2_memory_kib",
                "must be between 8 × argon2_lanes and 1048576 (1 GiB)",
            ));
        }
        if self.argon2_iterations == 0 || self.argon2_iterations > 10 {
            return Err(ValidationError::new(
                "passwords.argon2_iterations",
                "must be between 1 and 10",
            ));
        }
        if self.session_ttl_secs == 0 || self.session_ttl_secs > 366 * 24 * 3600 {
            return Err(ValidationError::new(
                "passwords.session_ttl_secs",
                "must be between 1 second and a year",
            ));
        }
        Ok(())
    }

    /// The shop's prepare configuration with these costs.
    pub fn prepare_config(&self) -> shoal_shop::PrepareConfig {
        shoal_shop::PrepareConfig {
            argon2_memory_kib: self.argon2_memory_kib,
            argon2_iterations: self.argon2_iterations,
            argon2_lanes: self.argon2_lanes,
            session_ttl_ms: self.session_ttl_secs.saturating_mul(1000),
        }
    }
}

/// Log verbosity of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Lifecycle events (the default).
    #[default]
    Info,
    /// Details for debugging.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The `tracing` filter directive (`RUST_LOG` still wins when set).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// `DIR/node-<id>/node.toml`: everything one node needs besides the cluster's member list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id (≥ 1; matches its `[[member]]` in cluster.toml).
    pub id: u64,
    /// The UDP address the node's QUIC endpoint binds (peers and clients), `host:port`.
    pub listen: String,
    /// The cluster configuration file, relative to the node's data directory unless
    /// absolute (`../cluster.toml` as written by `shoal init`).
    #[serde(default = "default_cluster_file")]
    pub cluster_file: PathBuf,
    /// TLS files.
    #[serde(default)]
    pub tls: TlsFiles,
    /// Raft timing.
    #[serde(default)]
    pub timing: TimingConfig,
    /// Snapshot policy.
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    /// WAL sizes.
    #[serde(default)]
    pub wal: WalConfig,
    /// Password hashing costs and session lifetime.
    #[serde(default)]
    pub passwords: PasswordConfig,
    /// Whether the transport's fault hook (drop/delay peer traffic) obeys admin fault
    /// commands. Off by default: only test and chaos clusters turn it on.
    #[serde(default)]
    pub fault_hook: bool,
    /// Log verbosity.
    #[serde(default)]
    pub log_level: LogLevel,
}

fn default_cluster_file() -> PathBuf {
    PathBuf::from("..").join(CLUSTER_FILE)
}

impl NodeConfig {
    /// A node with default timing, snapshot and WAL settings and the TLS file names
    /// `shoal init` writes.
    pub fn new(id: u64, listen: impl Into<String>) -> Self {
        Self {
            id,
            listen: listen.into(),
            cluster_file: default_cluster_file(),
            tls: TlsFiles::default(),
            timing: TimingConfig::default(),
            snapshot: SnapshotConfig::default(),
            wal: WalConfig::default(),
            passwords: PasswordConfig::default(),
            fault_hook: false,
            log_level: LogLevel::default(),
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.id == 0 {
            return Err(ValidationError::new("id", "must be at least 1"));
        }
        validate_host_port("listen", &self.listen)?;
        for (field, path) in [
            ("tls.ca", &self.tls.ca),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("cluster_file", &self.cluster_file),
        ] {
            if path.as_os_str().is_empty() {
                return Err(ValidationError::new(field, "must not be empty"));
            }
        }
        self.timing.validate()?;
        if self.snapshot.max_log_entries == 0 {
            return Err(ValidationError::new(
                "snapshot.max_log_entries",
                "must be at least 1",
            ));
        }
        if self.snapshot.max_log_bytes == 0 {
            return Err(ValidationError::new(
                "snapshot.max_log_bytes",
                "must be at least 1",
            ));
        }
        if self.snapshot.keep == 0 || self.snapshot.keep > 100 {
            return Err(ValidationError::new(
                "snapshot.keep",
                "must be between 1 and 100",
            ));
        }
        if self.wal.segment_bytes < 4096
            || !self.wal.segment_bytes.is_multiple_of(8)
            || self.wal.segment_bytes > (4 << 30)
        {
            return Err(ValidationError::new(
                "wal.segment_bytes",
                "must be a multiple of 8 between 4096 and 4 GiB",
            ));
        }
        self.passwords.validate()?;
        if self.wal.max_bytes < self.wal.segment_bytes.saturating_mul(2) {
            return Err(ValidationError::new(
                "wal.max_bytes",
                "must be at least two segments (2 × wal.segment_bytes)",
            ));
        }
        Ok(())
    }

    /// `path` resolved against the node's data directory `data_dir`.
    pub fn resolve_path(data_dir: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            data_dir.join(path)
        }
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = load_toml(path)?;
        config.validate().map_err(|source| ConfigError::Invalid {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(config)
    }

    /// The CA certificate, node certificate and key files, resolved against `data_dir`.
    pub fn tls_paths(&self, data_dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        (
            Self::resolve_path(data_dir, &self.tls.ca),
            Self::resolve_path(data_dir, &self.tls.cert),
            Self::resolve_path(data_dir, &self.tls.key),
        )
    }

    /// The cluster configuration this node belongs to (`cluster_file`, resolved against
    /// `data_dir`), checked to list this node.
    pub fn load_cluster(&self, data_dir: &Path) -> Result<ClusterConfig, ConfigError> {
        let path = Self::resolve_path(data_dir, &self.cluster_file);
        let cluster = ClusterConfig::load(&path)?;
        if cluster.member(self.id).is_none() {
            return Err(ConfigError::Invalid {
                path,
                source: ValidationError::new(
                    "member",
                    format!("node {} (from its node.toml) is not a member", self.id),
                ),
            });
        }
        Ok(cluster)
    }

    /// The listen address resolved to a socket address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ValidationError> {
        resolve(&self.listen)
            .ok()
            .and_then(|addrs| addrs.into_iter().next())
            .ok_or_else(|| {
                ValidationError::new("listen", format!("cannot resolve {:?}", self.listen))
            })
    }

    /// Reads `DATA_DIR/node.toml`.
    pub fn load_from_data_dir(data_dir: &Path) -> Result<Self, ConfigError> {
        Self::load(&data_dir.join(NODE_FILE))
    }

    /// The TOML text of the configuration.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        to_toml("node configuration", self)
    }
}

fn load_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let io = |source| ConfigError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            len,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: one_line(&e.to_string()),
    })
}

/// toml's messages span lines (with a source excerpt); keep the gist on one line.
fn one_line(message: &str) -> String {
    let mut parts: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.chars().all(|c| c == '^'))
        .collect();
    parts.dedup();
    parts.join(": ")
}

fn to_toml<T: Serialize>(what: &'static str, value: &T) -> Result<String, ConfigError> {
    toml::to_string_pretty(value).map_err(|e| ConfigError::Serialize {
        what,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn cluster() -> ClusterConfig {
        ClusterConfig {
            name: "test".into(),
            members: vec![
                MemberConfig {
                    id: 1,
                    addr: "127.0.0.1:7001".into(),
                    client_addr: None,
                },
                MemberConfig {
                    id: 2,
                    addr: "127.0.0.1:7002".into(),
                    client_addr: Some("localhost:8002".into()),
                },
            ],
        }
    }

    #[test]
    fn cluster_round_trips_through_toml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CLUSTER_FILE);
        let text = cluster().to_toml().unwrap();
        assert!(text.contains("[[member]]"), "{text}");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(ClusterConfig::load(&path).unwrap(), cluster());
        assert_eq!(
            cluster().member(2).unwrap().client_address(),
            "localhost:8002"
        );
        assert_eq!(
            cluster().member(1).unwrap().client_address(),
            "127.0.0.1:7001"
        );
    }

    #[test]
    fn node_round_trips_and_defaults_fill_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NODE_FILE);
        let mut node = NodeConfig::new(3, "127.0.0.1:7003");
        node.fault_hook = true;
        node.log_level = LogLevel::Debug;
        std::fs::write(&path, node.to_toml().unwrap()).unwrap();
        assert_eq!(NodeConfig::load(&path).unwrap(), node);
        std::fs::write(&path, "id = 4\nlisten = \"h:1\"\n").unwrap();
        let minimal = NodeConfig::load(&path).unwrap();
        assert_eq!(minimal.timing, TimingConfig::default());
        assert!(!minimal.fault_hook, "the fault hook is off by default");
    }

    #[test]
    fn cluster_validation_names_the_field() {
        let mut c = cluster();
        c.members[1].id = 1;
        assert_eq!(c.validate().unwrap_err().field, "member[1].id");
        let mut c = cluster();
        c.members[0].addr = "nohost".into();
        assert_eq!(c.validate().unwrap_err().field, "member[0].addr");
        let mut c = cluster();
        c.members[1].client_addr = Some("h:0".into());
        assert_eq!(c.validate().unwrap_err().field, "member[1].client_addr");
        let mut c = cluster();
        c.members.clear();
        assert_eq!(c.validate().unwrap_err().field, "member");
        let mut c = cluster();
        c.members[0].id = 0;
        assert_eq!(c.validate().unwrap_err().field, "member[0].id");
    }

    #[test]
    fn node_validation_names_the_field() {
        let ok = NodeConfig::new(1, "127.0.0.1:7001");
        assert!(ok.validate().is_ok());
        type Change = Box<dyn Fn(&mut NodeConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            ("id", Box::new(|n| n.id = 0)),
            ("listen", Box::new(|n| n.listen = "127.0.0.1".into())),
            ("timing.tick_ms", Box::new(|n| n.timing.tick_ms = 0)),
            (
                "timing.election_timeout_max_ms",
                Box::new(|n| n.timing.election_timeout_max_ms = 500),
            ),
            ("timing.lease_ms", Box::new(|n| n.timing.lease_ms = 5000)),
            // Below the election timeout, but without the clock-drift margin (10 ticks).
            ("timing.lease_ms", Box::new(|n| n.timing.lease_ms = 950)),
            (
                "timing.election_timeout_min_ms",
                Box::new(|n| n.timing.election_timeout_min_ms = 50),
            ),
            ("snapshot.keep", Box::new(|n| n.snapshot.keep = 0)),
            (
                "wal.segment_bytes",
                Box::new(|n| n.wal.segment_bytes = 4097),
            ),
            ("wal.max_bytes", Box::new(|n| n.wal.max_bytes = 4096)),
            ("tls.key", Box::new(|n| n.tls.key = PathBuf::new())),
            (
                "passwords.argon2_memory_kib",
                Box::new(|n| n.passwords.argon2_memory_kib = 4),
            ),
            (
                "passwords.session_ttl_secs",
                Box::new(|n| n.passwords.session_ttl_secs = 0),
            ),
        ];
        for (field, change) in cases {
            let mut n = ok.clone();
            change(&mut n);
            assert_eq!(n.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn a_node_finds_its_cluster_and_tls_files() {
        let dir = tempfile::tempdir().unwrap();
        let node_dir = dir.path().join("node-1");
        std::fs::create_dir_all(&node_dir).unwrap();
        std::fs::write(dir.path().join(CLUSTER_FILE), cluster().to_toml().unwrap()).unwrap();
        let node = NodeConfig::new(1, "127.0.0.1:7001");
        assert_eq!(node.load_cluster(&node_dir).unwrap(), cluster());
        assert_eq!(node.tls_paths(&node_dir).2, node_dir.join("node-key.pem"));
        assert_eq!(
            node.listen_addr().unwrap(),
            "127.0.0.1:7001".parse::<SocketAddr>().unwrap()
        );
        let stranger = NodeConfig::new(9, "127.0.0.1:7009");
        let e = stranger.load_cluster(&node_dir).unwrap_err().to_string();
        assert!(e.contains("cluster.toml") && e.contains("node 9"), "{e}");
    }

    #[test]
    fn load_errors_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NODE_FILE);
        std::fs::write(
            &path,
            "id = 1\nlisten = \"h:1\"\n[timing]\ntick_ms = \"fast\"\n",
        )
        .unwrap();
        let e = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("node.toml") && e.contains("tick_ms"), "{e}");
        std::fs::write(&path, "id = 1\nlisten = \"h:1\"\nbogus = 3\n").unwrap();
        let e = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        std::fs::write(&path, "id = 0\nlisten = \"h:1\"\n").unwrap();
        let e = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("node.toml") && e.contains("invalid id"), "{e}");
        let e = ClusterConfig::load(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.toml"), "{e}");
        assert!(!e.contains('\n'));
    }
}
