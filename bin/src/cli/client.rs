//! What every client command shares: finding the cluster (`cluster.toml` or `--cluster`),
//! the TLS identity, a [`Connection`] that sends [`crate::api`] bodies with
//! [`shoal_net::Client`] (redirects, retries with the same client id and sequence number),
//! the saved session token, and printing a result as text or JSON.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shoal_net::{
    Client, ClientOptions, ClientRequest, ClientResponse, ReadConsistency, RequestKind, TlsIdentity,
};
use shoal_shop::{Action, Auth, Query, Request, Response};

use super::output::Output;
use super::{CliError, CliResult, Consistency, GlobalArgs};
use crate::api::{AdminBody, AdminReply, NodeStatus, ReadBody, WriteBody};
use crate::config::{CLUSTER_FILE, ClusterConfig, resolve};
use crate::layout::{CA_CERT_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE, SESSION_FILE};

/// How long `status` and other per-node requests wait for one node.
pub const PER_NODE_TIMEOUT: Duration = Duration::from_secs(2);

/// A node the client may talk to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its id, when known from `cluster.toml`.
    pub id: Option<u64>,
    /// Its address as configured or given.
    pub address: String,
    /// The address resolved, when it resolves.
    pub socket: Option<SocketAddr>,
}

fn resolve_first(address: &str) -> Option<SocketAddr> {
    let addrs = resolve(address).ok()?;
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

/// The cluster's configuration from `DIR/cluster.toml`, if any.
pub fn cluster_config(global: &GlobalArgs) -> CliResult<Option<ClusterConfig>> {
    let path = global.cluster_dir.join(CLUSTER_FILE);
    if !path.exists() {
        return Ok(None);
    }
    ClusterConfig::load(&path)
        .map(Some)
        .map_err(|e| CliError::io(e.to_string()))
}

/// The nodes to talk to: `--cluster`, or every member of `cluster.toml`.
pub fn targets(global: &GlobalArgs) -> CliResult<Vec<Target>> {
    if !global.cluster.is_empty() {
        let mut targets = Vec::new();
        for address in global
            .cluster
            .iter()
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
        {
            if targets.iter().any(|t: &Target| t.address == address) {
                continue;
            }
            crate::config::validate_host_port("cluster", address)
                .map_err(|e| CliError::usage(format!("invalid --cluster: {}", e.problem)))?;
            targets.push(Target {
                id: None,
                address: address.to_owned(),
                socket: resolve_first(address),
            });
        }
        if targets.is_empty() {
            return Err(CliError::usage("--cluster names no address"));
        }
        return Ok(targets);
    }
    let Some(cluster) = cluster_config(global)? else {
        return Err(CliError::io(format!(
            "no cluster configuration: {} does not exist (run `shoal init`, or pass --cluster ADDR,... with --ca, --cert, --key)",
            global.cluster_dir.join(CLUSTER_FILE).display()
        )));
    };
    Ok(cluster
        .members
        .iter()
        .map(|m| Target {
            id: Some(m.id),
            address: m.client_address().to_owned(),
            socket: resolve_first(m.client_address()),
        })
        .collect())
}

fn tls_path(given: Option<&PathBuf>, dir: &Path, file: &str) -> PathBuf {
    given.cloned().unwrap_or_else(|| dir.join(file))
}

/// The client's TLS identity: `--ca`, `--cert`, `--key`, or the cluster directory's files.
pub fn identity(global: &GlobalArgs) -> CliResult<TlsIdentity> {
    let dir = &global.cluster_dir;
    let ca = tls_path(global.ca.as_ref(), dir, CA_CERT_FILE);
    let cert = tls_path(global.cert.as_ref(), dir, CLIENT_CERT_FILE);
    let key = tls_path(global.key.as_ref(), dir, CLIENT_KEY_FILE);
    TlsIdentity::from_files(&ca, &cert, &key).map_err(|e| CliError::io(e.to_string()))
}

fn read_consistency(consistency: Consistency) -> ReadConsistency {
    match consistency {
        Consistency::Linearizable => ReadConsistency::Linearizable,
        Consistency::Lease => ReadConsistency::Lease,
        Consistency::Stale => ReadConsistency::Stale,
    }
}

/// A client connected to a cluster (lazily: QUIC connections open on first use).
pub struct Connection {
    runtime: tokio::runtime::Runtime,
    client: Arc<Client>,
    targets: Vec<Target>,
    consistency: ReadConsistency,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let client = self.client.clone();
        self.runtime.block_on(async move { client.close().await });
    }
}

/// Connects to the cluster the global flags name.
pub fn connect(global: &GlobalArgs) -> CliResult<Connection> {
    let targets = targets(global)?;
    let addrs: Vec<SocketAddr> = targets.iter().filter_map(|t| t.socket).collect();
    if addrs.is_empty() {
        let names: Vec<&str> = targets.iter().map(|t| t.address.as_str()).collect();
        return Err(CliError::unavailable(format!(
            "cannot resolve any node address ({})",
            names.join(", ")
        )));
    }
    let identity = identity(global)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io(format!("cannot start the async runtime: {e}")))?;
    shoal_net::ensure_crypto_provider();
    let options = ClientOptions::new(addrs);
    let client = runtime.block_on(async { Client::new(&identity, options) })?;
    tracing::debug!(client_id = client.client_id(), "client ready");
    Ok(Connection {
        runtime,
        client: Arc::new(client),
        targets,
        consistency: read_consistency(global.consistency),
    })
}

impl Connection {
    /// The nodes this connection knows.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    fn request(&self, kind: RequestKind, body: Vec<u8>) -> CliResult<Vec<u8>> {
        let client = self.client.clone();
        Ok(self
            .runtime
            .block_on(async move { client.request(kind, body).await })?)
    }

    /// Sends a write and returns the shop's response (a shop refusal becomes the error).
    pub fn write(&self, body: WriteBody) -> CliResult<Response> {
        let bytes = self.request(RequestKind::Write, body.to_bytes())?;
        Ok(shoal_shop::decode_reply(&bytes)??)
    }

    /// Sends a shop request as a write.
    pub fn shop(&self, request: Request) -> CliResult<Response> {
        request.validate()?;
        self.write(WriteBody::Shop(request))
    }

    /// Sends a read at the connection's consistency.
    pub fn read(&self, query: Query) -> CliResult<Response> {
        let bytes = self.request(
            RequestKind::Read(self.consistency),
            ReadBody::Query(query).to_bytes(),
        )?;
        Ok(shoal_shop::decode_reply(&bytes)??)
    }

    /// Sends an admin request to the cluster (redirected to the leader when needed).
    pub fn admin(&self, body: AdminBody) -> CliResult<AdminReply> {
        let bytes = self.request(RequestKind::Admin, body.to_bytes())?;
        AdminReply::from_bytes(&bytes).map_err(|e| CliError::io(e.to_string()))
    }

    /// Each target's status by node id (0 when the target has no id), `None` where the node
    /// did not answer.
    pub fn statuses_of(&self, targets: &[Target]) -> Vec<(u64, Option<NodeStatus>)> {
        let results = self.admin_each(targets, &AdminBody::Status);
        targets
            .iter()
            .zip(results)
            .map(|(target, result)| {
                let status = match result {
                    Ok(AdminReply::Status(status)) => Some(status),
                    _ => None,
                };
                (target.id.unwrap_or(0), status)
            })
            .collect()
    }

    /// Sends an admin request to each of `targets` (no redirects), at most
    /// [`PER_NODE_TIMEOUT`] each, concurrently; one result per target, in order.
    pub fn admin_each(&self, targets: &[Target], body: &AdminBody) -> Vec<CliResult<AdminReply>> {
        let client = self.client.clone();
        let bytes = body.to_bytes();
        let jobs: Vec<(Option<SocketAddr>, String)> = targets
            .iter()
            .map(|t| (t.socket, t.address.clone()))
            .collect();
        self.runtime.block_on(async move {
            let mut handles = Vec::new();
            for (socket, address) in jobs {
                let client = client.clone();
                let body = bytes.clone();
                handles.push(tokio::spawn(async move {
                    let Some(addr) = socket else {
                        return Err(CliError::unavailable(format!("cannot resolve {address}")));
                    };
                    // Admin requests are not proposed: anonymous (client id 0), so they take
                    // no sequence number of the client's lanes and can run side by side.
                    let request = ClientRequest {
                        client_id: 0,
                        seq: 0,
                        attempt: 0,
                        kind: RequestKind::Admin,
                        body,
                    };
                    match tokio::time::timeout(PER_NODE_TIMEOUT, client.send_once(addr, &request))
                        .await
                    {
                        Err(_) => Err(CliError::unavailable(format!(
                            "node at {address} did not answer within {PER_NODE_TIMEOUT:?}"
                        ))),
                        Ok(Err(error)) => Err(CliError::from(error)),
                        Ok(Ok(ClientResponse::Ok(bytes))) => {
                            AdminReply::from_bytes(&bytes).map_err(|e| CliError::io(e.to_string()))
                        }
                        Ok(Ok(ClientResponse::Rejected { code, message })) => {
                            Err(CliError::from(shoal_net::ClientError::Rejected {
                                code,
                                message,
                            }))
                        }
                        Ok(Ok(ClientResponse::NotLeader { leader_id, .. })) => {
                            Err(CliError::unavailable(format!(
                                "node at {address} is not the leader (leader: {leader_id:?})"
                            )))
                        }
                        Ok(Ok(ClientResponse::Unavailable(message))) => Err(CliError::unavailable(
                            format!("node at {address} is unavailable: {message}"),
                        )),
                    }
                }));
            }
            let mut results = Vec::new();
            for handle in handles {
                results.push(
                    handle
                        .await
                        .unwrap_or_else(|e| Err(CliError::io(format!("request task failed: {e}")))),
                );
            }
            results
        })
    }
}

/// The session token: `--token` / `SHOAL_TOKEN`, or the one `shoal login` saved in
/// `DIR/.session`. Without one: exit 5.
pub fn token(global: &GlobalArgs) -> CliResult<String> {
    if let Some(token) = &global.token {
        let token = token.trim();
        if !token.is_empty() {
            return Ok(token.to_owned());
        }
    }
    let path = global.cluster_dir.join(SESSION_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() && text.len() <= 1024 => Ok(text.trim().to_owned()),
        Ok(_) => Err(CliError::unauthorized(format!(
            "not logged in: {} holds no token (run `shoal login`)",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CliError::unauthorized(
            "not logged in: run `shoal login --email E --password P` (or pass --token)",
        )),
        Err(e) => Err(CliError::io(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Saves `token` in `DIR/.session`, readable by the owner only.
pub fn save_token(global: &GlobalArgs, token: &str) -> CliResult {
    use std::io::Write;
    let dir = &global.cluster_dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::io(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(SESSION_FILE);
    let tmp = dir.join(format!("{SESSION_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let write = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(format!("{token}\n").as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, &path));
    write.map_err(|e| {
        CliError::io(format!(
            "cannot save the session in {}: {e}",
            path.display()
        ))
    })
}

/// Removes the saved session if it holds `token` (or whatever it holds, when `token` is None).
pub fn forget_token(global: &GlobalArgs, token: Option<&str>) {
    let path = global.cluster_dir.join(SESSION_FILE);
    let matches = match (token, std::fs::read_to_string(&path)) {
        (_, Err(_)) => false,
        (None, Ok(_)) => true,
        (Some(token), Ok(saved)) => saved.trim() == token,
    };
    if matches && let Err(error) = std::fs::remove_file(&path) {
        tracing::warn!(path = %path.display(), %error, "cannot remove the saved session");
    }
}

/// The `Authed` request for `action` with the caller's token (the node stamps the time).
pub fn authed(global: &GlobalArgs, action: Action) -> CliResult<Request> {
    let request = Request::Authed {
        auth: Auth::new(token(global)?, 0),
        action,
    };
    request.validate()?;
    Ok(request)
}

/// The caller's [`Auth`] for a query.
pub fn auth(global: &GlobalArgs) -> CliResult<Auth> {
    let auth = Auth::new(token(global)?, 0);
    shoal_shop::validate::token(&auth.token)?;
    Ok(auth)
}

/// Prints a result: `document` under `--json`, else `text` (when non-empty).
pub fn print(global: &GlobalArgs, document: &Value, text: &str) -> CliResult {
    let mut out = Output::new();
    if global.json {
        out.line(format_args!("{document}"));
    } else if !text.is_empty() {
        out.line(format_args!("{text}"));
    }
    out.finish()
}

/// Prints a shop response with the shop's JSON and text renderings.
pub fn print_response(global: &GlobalArgs, response: &Response) -> CliResult {
    print(
        global,
        &shoal_shop::json::response(response),
        &shoal_shop::render::response_text(response),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_shop::ShopError;

    fn global(dir: &Path) -> GlobalArgs {
        GlobalArgs {
            cluster_dir: dir.to_path_buf(),
            cluster: Vec::new(),
            ca: None,
            cert: None,
            key: None,
            token: None,
            json: false,
            consistency: Consistency::Linearizable,
        }
    }

    #[test]
    fn errors_map_to_the_spec_exit_codes() {
        let cases = [
            (
                CliError::from(ShopError::invalid("email", "bad")),
                2,
                "invalid",
            ),
            (
                CliError::from(ShopError::not_found("product", 3)),
                3,
                "not_found",
            ),
            (
                CliError::from(ShopError::DuplicateEmail {
                    email: "a@b.c".into(),
                }),
                4,
                "duplicate_email",
            ),
            (
                CliError::from(ShopError::unauthorized("x")),
                5,
                "unauthorized",
            ),
            (CliError::from(ShopError::forbidden("x")), 5, "forbidden"),
            (
                CliError::from(shoal_net::ClientError::Rejected {
                    code: crate::api::codes::CONFLICT,
                    message: "busy".into(),
                }),
                4,
                "conflict",
            ),
            (
                CliError::from(shoal_net::ClientError::NoAddresses),
                1,
                "unavailable",
            ),
            (CliError::unauthorized("x"), 5, "unauthorized"),
        ];
        for (error, code, kind) in cases {
            assert_eq!((error.code, error.kind), (code, kind), "{error}");
        }
        assert!(
            CliError::from(ShopError::invalid("contact", "7 to 15 digits"))
                .message
                .contains("contact")
        );
    }

    #[test]
    fn token_comes_from_the_flag_then_the_session_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut g = global(tmp.path());
        let e = token(&g).unwrap_err();
        assert_eq!(e.code, 5);
        save_token(&g, "abc").unwrap();
        assert_eq!(token(&g).unwrap(), "abc");
        g.token = Some("flag".into());
        assert_eq!(token(&g).unwrap(), "flag");
        forget_token(&g, Some("other"));
        assert!(
            tmp.path().join(SESSION_FILE).exists(),
            "another token's file is kept"
        );
        forget_token(&g, Some("abc"));
        assert!(!tmp.path().join(SESSION_FILE).exists());
    }

    #[test]
    fn targets_come_from_the_flag_or_cluster_toml() {
        let tmp = tempfile::tempdir().unwrap();
        let mut g = global(tmp.path());
        assert_eq!(targets(&g).unwrap_err().code, 1);
        crate::layout::init_cluster(&crate::layout::InitOptions {
            dir: tmp.path().to_path_buf(),
            nodes: 2,
            host: "127.0.0.1".into(),
            base_port: 7001,
            name: "t".into(),
        })
        .unwrap();
        let t = targets(&g).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].id, Some(2));
        assert_eq!(t[1].socket, Some("127.0.0.1:7002".parse().unwrap()));
        g.cluster = vec!["127.0.0.1:9000".into(), "127.0.0.1:9000".into()];
        assert_eq!(targets(&g).unwrap().len(), 1);
        g.cluster = vec!["nonsense".into()];
        assert_eq!(targets(&g).unwrap_err().code, 2);
    }
}
