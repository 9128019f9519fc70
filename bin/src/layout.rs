//! The cluster directory `shoal init` writes, and adding a node's files to it later.
//!
//! ```text
//! DIR/cluster.toml            name and members (id, addr, client_addr)
//! DIR/ca.pem                  the cluster CA certificate
//! DIR/ca-key.pem              the CA private key (0600): signs nodes added later
//! DIR/client.pem              the client certificate the CLI uses
//! DIR/client-key.pem          its key (0600)
//! DIR/node-<id>/node.toml     the node's configuration
//! DIR/node-<id>/ca.pem        copy of the CA certificate
//! DIR/node-<id>/node.pem      the node's certificate (node-<id>, shoal-node, its host)
//! DIR/node-<id>/node-key.pem  its key (0600)
//! ```
//!
//! `cluster.toml` is written last, so a directory without it holds no usable cluster.

use std::io::Write;
use std::path::{Path, PathBuf};

use shoal_net::tls::{CertificatePem, ClusterCa, TlsError};

use crate::config::{
    CLUSTER_FILE, ClusterConfig, ConfigError, MAX_MEMBERS, MemberConfig, NODE_FILE, NodeConfig,
    validate_host_port,
};

/// The CA certificate's file name in the cluster directory (and in each node's).
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key's file name in the cluster directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The client certificate's file name in the cluster directory.
pub const CLIENT_CERT_FILE: &str = "client.pem";
/// The client key's file name in the cluster directory.
pub const CLIENT_KEY_FILE: &str = "client-key.pem";
/// The saved session token's file name in the cluster directory.
pub const SESSION_FILE: &str = ".session";

/// Why the cluster directory could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// There is already a cluster (or a node) there.
    #[error("{} already exists: refusing to overwrite an existing cluster", path.display())]
    Exists {
        /// What exists.
        path: PathBuf,
    },
    /// An argument cannot work.
    #[error("invalid {field}: {problem}")]
    Invalid {
        /// The argument.
        field: &'static str,
        /// Why.
        problem: String,
    },
    /// A file operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Certificates could not be made.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A configuration file could not be read or made.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// What `shoal init` is asked to make.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The cluster directory.
    pub dir: PathBuf,
    /// How many nodes (1 to 255); ids are 1..=nodes.
    pub nodes: u64,
    /// The host nodes listen on and are reached at.
    pub host: String,
    /// Node `i` listens on `base_port + i - 1`.
    pub base_port: u16,
    /// The cluster's name.
    pub name: String,
}

/// What `shoal init` made.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The cluster configuration written.
    pub cluster: ClusterConfig,
    /// Every file written.
    pub files: Vec<PathBuf>,
}

/// The data directory of node `id`: `DIR/node-<id>`.
pub fn node_dir(cluster_dir: &Path, id: u64) -> PathBuf {
    cluster_dir.join(format!("node-{id}"))
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError {
    let path = path.to_path_buf();
    move |source| LayoutError::Io { op, path, source }
}

/// Writes `contents` to a new file `path` (never overwriting), with mode `mode` on Unix.
fn write_new(
    path: &Path,
    contents: &str,
    mode: u32,
    files: &mut Vec<PathBuf>,
) -> Result<(), LayoutError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            LayoutError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            io("create", path)(e)
        }
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io("write", path))?;
    files.push(path.to_path_buf());
    Ok(())
}

const PUBLIC: u32 = 0o644;
const SECRET: u32 = 0o600;

fn cert_hosts(host: &str) -> Vec<String> {
    let mut hosts = vec![host.to_owned()];
    let loopback = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    if loopback || host == "localhost" {
        for extra in ["localhost", "127.0.0.1"] {
            if !hosts.iter().any(|h| h == extra) {
                hosts.push(extra.to_owned());
            }
        }
    }
    hosts
}

fn split_host(addr: &str) -> String {
    addr.rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .unwrap_or_else(|| addr.to_owned())
}

/// Writes node `id`'s data directory: `node.toml`, the CA certificate, its certificate and key.
fn write_node_files(
    ca: &ClusterCa,
    cluster_dir: &Path,
    id: u64,
    addr: &str,
    files: &mut Vec<PathBuf>,
) -> Result<(), LayoutError> {
    let dir = node_dir(cluster_dir, id);
    if dir.join(NODE_FILE).exists() {
        return Err(LayoutError::Exists {
            path: dir.join(NODE_FILE),
        });
    }
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let node = NodeConfig::new(id, addr);
    node.validate().map_err(|e| LayoutError::Invalid {
        field: "address",
        problem: e.to_string(),
    })?;
    let issued: CertificatePem = ca.issue_node_cert(id, &cert_hosts(&split_host(addr)))?;
    write_new(&dir.join(&node.tls.ca), ca.cert_pem(), PUBLIC, files)?;
    write_new(&dir.join(&node.tls.cert), &issued.cert_pem, PUBLIC, files)?;
    write_new(&dir.join(&node.tls.key), &issued.key_pem, SECRET, files)?;
    write_new(&dir.join(NODE_FILE), &node.to_toml()?, PUBLIC, files)?;
    Ok(())
}

/// `shoal init`: a CA, client and node certificates, `node.toml` per node and `cluster.toml`.
/// Refuses ([`LayoutError::Exists`]) when `DIR` already holds a cluster.
pub fn init_cluster(options: &InitOptions) -> Result<InitReport, LayoutError> {
    let dir = &options.dir;
    if options.nodes == 0 || options.nodes > MAX_MEMBERS as u64 {
        return Err(LayoutError::Invalid {
            field: "nodes",
            problem: format!("must be between 1 and {MAX_MEMBERS}, got {}", options.nodes),
        });
    }
    let last_port = u64::from(options.base_port) + options.nodes - 1;
    if options.base_port == 0 || last_port > u64::from(u16::MAX) {
        return Err(LayoutError::Invalid {
            field: "base-port",
            problem: format!(
                "ports {}..={last_port} do not fit in 1..=65535",
                options.base_port
            ),
        });
    }
    validate_host_port("host", &format!("{}:1", options.host)).map_err(|e| {
        LayoutError::Invalid {
            field: "host",
            problem: e.problem,
        }
    })?;
    for existing in [CLUSTER_FILE, CA_CERT_FILE, CA_KEY_FILE] {
        let path = dir.join(existing);
        if path.exists() {
            return Err(LayoutError::Exists { path });
        }
    }
    for id in 1..=options.nodes {
        let path = node_dir(dir, id).join(NODE_FILE);
        if path.exists() {
            return Err(LayoutError::Exists { path });
        }
    }
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let host = if options.host.contains(':') {
        format!("[{}]", options.host)
    } else {
        options.host.clone()
    };
    let members: Vec<MemberConfig> = (1..=options.nodes)
        .map(|id| MemberConfig {
            id,
            addr: format!("{host}:{}", last_port - options.nodes + id),
            client_addr: None,
        })
        .collect();
    let cluster = ClusterConfig {
        name: options.name.clone(),
        members,
    };
    cluster.validate().map_err(|e| LayoutError::Invalid {
        field: "cluster",
        problem: e.to_string(),
    })?;
    let mut files = Vec::new();
    let ca = ClusterCa::generate(&options.name)?;
    write_new(&dir.join(CA_KEY_FILE), ca.key_pem(), SECRET, &mut files)?;
    write_new(&dir.join(CA_CERT_FILE), ca.cert_pem(), PUBLIC, &mut files)?;
    let client = ca.issue_client_cert()?;
    write_new(
        &dir.join(CLIENT_CERT_FILE),
        &client.cert_pem,
        PUBLIC,
        &mut files,
    )?;
    write_new(
        &dir.join(CLIENT_KEY_FILE),
        &client.key_pem,
        SECRET,
        &mut files,
    )?;
    for member in &cluster.members {
        write_node_files(&ca, dir, member.id, &member.addr, &mut files)?;
    }
    write_new(
        &dir.join(CLUSTER_FILE),
        &cluster.to_toml()?,
        PUBLIC,
        &mut files,
    )?;
    tracing::info!(dir = %dir.display(), nodes = options.nodes, "cluster initialised");
    Ok(InitReport { cluster, files })
}

/// Adds node `id` at `addr` to the cluster directory: signs its certificate with the CA key
/// kept there, writes `DIR/node-<id>/` and appends it to `cluster.toml`. Refuses when the id
/// is already a member or its directory exists. Returns the updated cluster configuration.
pub fn add_node(cluster_dir: &Path, id: u64, addr: &str) -> Result<InitReport, LayoutError> {
    if id == 0 {
        return Err(LayoutError::Invalid {
            field: "id",
            problem: "must be at least 1".into(),
        });
    }
    validate_host_port("address", addr).map_err(|e| LayoutError::Invalid {
        field: "address",
        problem: e.problem,
    })?;
    let cluster_path = cluster_dir.join(CLUSTER_FILE);
    let mut cluster = ClusterConfig::load(&cluster_path)?;
    if cluster.member(id).is_some() {
        return Err(LayoutError::Exists {
            path: node_dir(cluster_dir, id),
        });
    }
    let ca_path = cluster_dir.join(CA_CERT_FILE);
    let key_path = cluster_dir.join(CA_KEY_FILE);
    let ca_pem = std::fs::read_to_string(&ca_path).map_err(io("read", &ca_path))?;
    let key_pem = std::fs::read_to_string(&key_path).map_err(io("read", &key_path))?;
    let ca = ClusterCa::from_pem(&ca_pem, &key_pem)?;
    let mut files = Vec::new();
    write_node_files(&ca, cluster_dir, id, addr, &mut files)?;
    cluster.members.push(MemberConfig {
        id,
        addr: addr.to_owned(),
        client_addr: None,
    });
    cluster.validate().map_err(|e| LayoutError::Invalid {
        field: "cluster",
        problem: e.to_string(),
    })?;
    replace_cluster_file(cluster_dir, &cluster)?;
    files.push(cluster_path);
    Ok(InitReport { cluster, files })
}

/// Removes node `id` from `DIR/cluster.toml` (after `member remove`), atomically. Returns
/// whether it was listed; its data directory is left alone.
pub fn remove_member(cluster_dir: &Path, id: u64) -> Result<bool, LayoutError> {
    let cluster_path = cluster_dir.join(CLUSTER_FILE);
    let mut cluster = ClusterConfig::load(&cluster_path)?;
    let before = cluster.members.len();
    cluster.members.retain(|m| m.id != id);
    if cluster.members.len() == before || cluster.members.is_empty() {
        return Ok(false);
    }
    replace_cluster_file(cluster_dir, &cluster)?;
    Ok(true)
}

fn replace_cluster_file(cluster_dir: &Path, cluster: &ClusterConfig) -> Result<(), LayoutError> {
    let cluster_path = cluster_dir.join(CLUSTER_FILE);
    // Write a temporary file, then rename it over the old one.
    let tmp = cluster_dir.join(format!("{CLUSTER_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut ignored = Vec::new();
    write_new(&tmp, &cluster.to_toml()?, PUBLIC, &mut ignored)?;
    std::fs::rename(&tmp, &cluster_path).map_err(io("replace", &cluster_path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn options(dir: &Path, nodes: u64) -> InitOptions {
        InitOptions {
            dir: dir.to_path_buf(),
            nodes,
            host: "127.0.0.1".into(),
            base_port: 7001,
            name: "test".into(),
        }
    }

    #[test]
    fn init_writes_the_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let report = init_cluster(&options(&dir, 3)).unwrap();
        assert_eq!(report.cluster.ids(), vec![1, 2, 3]);
        assert_eq!(report.cluster.member(3).unwrap().addr, "127.0.0.1:7003");
        for file in [
            CLUSTER_FILE,
            CA_CERT_FILE,
            CA_KEY_FILE,
            CLIENT_CERT_FILE,
            CLIENT_KEY_FILE,
        ] {
            assert!(dir.join(file).is_file(), "{file}");
        }
        for id in 1..=3 {
            let node = NodeConfig::load_from_data_dir(&node_dir(&dir, id)).unwrap();
            assert_eq!(node.id, id);
            assert_eq!(node.listen, format!("127.0.0.1:{}", 7000 + id));
            for f in [&node.tls.ca, &node.tls.cert, &node.tls.key] {
                assert!(node_dir(&dir, id).join(f).is_file());
            }
            // The node can load its identity.
            let nd = node_dir(&dir, id);
            shoal_net::TlsIdentity::from_files(
                &nd.join(&node.tls.ca),
                &nd.join(&node.tls.cert),
                &nd.join(&node.tls.key),
            )
            .unwrap();
        }
        assert_eq!(
            ClusterConfig::load(&dir.join(CLUSTER_FILE)).unwrap(),
            report.cluster
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for secret in [
                dir.join(CA_KEY_FILE),
                dir.join(CLIENT_KEY_FILE),
                node_dir(&dir, 1).join("node-key.pem"),
            ] {
                let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
                assert_eq!(
                    mode & 0o077,
                    0,
                    "{} is readable by others",
                    secret.display()
                );
            }
        }
    }

    #[test]
    fn init_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        init_cluster(&options(tmp.path(), 1)).unwrap();
        let before = std::fs::read(tmp.path().join(CA_KEY_FILE)).unwrap();
        let e = init_cluster(&options(tmp.path(), 2)).unwrap_err();
        assert!(matches!(e, LayoutError::Exists { .. }), "{e}");
        assert!(e.to_string().contains("already exists"));
        assert_eq!(std::fs::read(tmp.path().join(CA_KEY_FILE)).unwrap(), before);
    }

    #[test]
    fn init_refuses_bad_arguments() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = options(tmp.path(), 0);
        assert!(matches!(
            init_cluster(&o),
            Err(LayoutError::Invalid { field: "nodes", .. })
        ));
        o.nodes = 3;
        o.base_port = 65534;
        assert!(matches!(
            init_cluster(&o),
            Err(LayoutError::Invalid {
                field: "base-port",
                ..
            })
        ));
        o.base_port = 7001;
        o.host = "bad host".into();
        assert!(matches!(
            init_cluster(&o),
            Err(LayoutError::Invalid { field: "host", .. })
        ));
        assert!(!tmp.path().join(CLUSTER_FILE).exists());
    }

    #[test]
    fn add_node_signs_with_the_kept_ca() {
        let tmp = tempfile::tempdir().unwrap();
        init_cluster(&options(tmp.path(), 2)).unwrap();
        let report = add_node(tmp.path(), 4, "127.0.0.1:7004").unwrap();
        assert_eq!(report.cluster.ids(), vec![1, 2, 4]);
        let reloaded = ClusterConfig::load(&tmp.path().join(CLUSTER_FILE)).unwrap();
        assert_eq!(reloaded, report.cluster);
        let nd = node_dir(tmp.path(), 4);
        shoal_net::TlsIdentity::from_files(
            &nd.join("ca.pem"),
            &nd.join("node.pem"),
            &nd.join("node-key.pem"),
        )
        .unwrap();
        assert!(matches!(
            add_node(tmp.path(), 4, "127.0.0.1:7005"),
            Err(LayoutError::Exists { .. })
        ));
        assert!(matches!(
            add_node(tmp.path(), 5, "nope"),
            Err(LayoutError::Invalid { .. })
        ));
        assert!(remove_member(tmp.path(), 4).unwrap());
        assert!(!remove_member(tmp.path(), 4).unwrap());
        let reloaded = ClusterConfig::load(&tmp.path().join(CLUSTER_FILE)).unwrap();
        assert_eq!(reloaded.ids(), vec![1, 2]);
    }
}
