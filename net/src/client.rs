//! The client side of the client protocol: [`Client`] sends [`ClientRequest`]s to a cluster,
//! following leader redirects and retrying across nodes within bounds.
//!
//! Retries keep the request's `(client_id, seq)` (only `attempt` changes), so a write that
//! reached the state machine before a timeout is deduplicated, not applied twice.
//!
//! The state machine remembers only the latest `seq` of each client id: a request whose `seq` is
//! below the latest applied one is refused as stale, and its answer is gone. So one client id
//! must never have two requests in flight, or a retry of the older one (already applied) would
//! come back "not applied" once the newer one lands. [`Client::request`] therefore runs each
//! concurrent request on its own *lane*: a client id with its own sequence, held by one request
//! at a time. The first lane is [`Client::client_id`]; more are made (with fresh random ids) only
//! when requests overlap, and are reused afterwards, so a client uses as many ids as its peak
//! number of requests in flight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, Endpoint, VarInt};
use tokio::time::Instant;
use tracing::debug;

use crate::coalesce::{self, Outgoing};
use crate::frame;
use crate::peer::{deadline_after, describe_connection_error, is_tls_error};
use crate::protocol::{ClientRequest, ClientResponse, DEFAULT_MAX_CLIENT_FRAME_BYTES, RequestKind};
use crate::tls::{self, TlsError, TlsIdentity};

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Nodes to try, in order (any node will do: non-leaders redirect).
    pub addrs: Vec<SocketAddr>,
    /// The client id used for deduplication; random when `None`.
    pub client_id: Option<u64>,
    /// Bound on one attempt: connect, send, and wait for the answer.
    pub attempt_timeout: Duration,
    /// Bound on the QUIC handshake with one node. Much shorter than `attempt_timeout`: a live
    /// node completes a handshake in milliseconds, while a dead or paused one never answers, and
    /// a client that tried it first must move on to the others quickly (failover).
    pub connect_timeout: Duration,
    /// Bound on a whole request, retries included.
    pub overall_timeout: Duration,
    /// Most attempts per request.
    pub max_attempts: u32,
    /// First pause before retrying after `Unavailable` or a failed attempt; each further pause
    /// doubles, up to `max_retry_backoff`.
    pub retry_backoff: Duration,
    /// Longest pause between attempts.
    pub max_retry_backoff: Duration,
    /// Largest request or response frame.
    pub max_frame_bytes: usize,
    /// Local address to bind; by default the unspecified address (or loopback when every
    /// target is loopback) of the first target's family, port 0.
    pub bind_addr: Option<SocketAddr>,
}

impl ClientOptions {
    /// Defaults: 3 s per attempt, 500 ms per handshake, 8 s overall, 32 attempts, backoff
    /// from 50 ms doubling to 500 ms (so an election of a second or two is ridden out within
    /// the overall bound, not cut short by the attempt count).
    pub fn new(addrs: Vec<SocketAddr>) -> Self {
        Self {
            addrs,
            client_id: None,
            attempt_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_millis(500),
            overall_timeout: Duration::from_secs(8),
            max_attempts: 32,
            retry_backoff: Duration::from_millis(50),
            max_retry_backoff: Duration::from_millis(500),
            max_frame_bytes: DEFAULT_MAX_CLIENT_FRAME_BYTES,
            bind_addr: None,
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No node address was given.
    #[error("no node addresses to connect to")]
    NoAddresses,
    /// TLS material could not be loaded or configured.
    #[error(transparent)]
    Config(#[from] TlsError),
    /// The local endpoint could not bind.
    #[error("cannot bind the client endpoint to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS handshake with a node failed: wrong CA, or a certificate the node refused.
    #[error(
        "TLS handshake with {addr} failed (is the CA/certificate from this cluster?): {message}"
    )]
    Tls {
        /// The node address.
        addr: SocketAddr,
        /// The handshake error.
        message: String,
    },
    /// Connecting to or talking with a node failed.
    #[error("request to {addr} failed: {message}")]
    Transport {
        /// The node address.
        addr: SocketAddr,
        /// What failed.
        message: String,
    },
    /// A node did not answer within the attempt timeout.
    #[error("no answer from {addr} within {after:?}")]
    Timeout {
        /// The node address.
        addr: SocketAddr,
        /// The timeout.
        after: Duration,
    },
    /// The node refused the request (not retried).
    #[error("request rejected (code {code}): {message}")]
    Rejected {
        /// The reason code.
        code: u32,
        /// The reason.
        message: String,
    },
    /// Every attempt failed or the overall timeout passed.
    #[error("cluster unavailable after {attempts} attempts in {elapsed:?}: {last_error}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last failure seen.
        last_error: String,
    },
}

/// A connection pool to a cluster's nodes. Cheap to share behind an `Arc`; every method takes
/// `&self`.
#[derive(Debug)]
pub struct Client {
    endpoint: Endpoint,
    config: quinn::ClientConfig,
    options: ClientOptions,
    client_id: u64,
    next_seq: AtomicU64,
    /// Lanes not held by a request in flight (see the module docs).
    free_lanes: Mutex<Vec<Lane>>,
    connections: tokio::sync::Mutex<HashMap<SocketAddr, Link>>,
    /// One gate per node address: held by the request dialing it.
    dialing: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<()>>>>,
    leader_hint: Mutex<Option<SocketAddr>>,
}

/// A client id and its sequence, held by one request at a time.
#[derive(Debug)]
struct Lane {
    client_id: u64,
    /// The next `seq` of this lane; `None` for the first lane, whose sequence is
    /// [`Client::next_seq`].
    next_seq: Option<u64>,
}

/// Gives its lane back to the client when the request ends (or is cancelled).
struct LaneGuard<'a> {
    free_lanes: &'a Mutex<Vec<Lane>>,
    lane: Option<Lane>,
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        if let Some(lane) = self.lane.take() {
            self.free_lanes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(lane);
        }
    }
}

/// Where an attempt goes next.
enum Next {
    Address(SocketAddr),
    Rotate,
}

impl Client {
    /// Builds a client from its TLS identity (cluster CA, client certificate and key).
    pub fn new(identity: &TlsIdentity, options: ClientOptions) -> Result<Self, ClientError> {
        let first = *options.addrs.first().ok_or(ClientError::NoAddresses)?;
        let mut config = tls::quic_client_config(tls::client_client_config(identity)?)?;
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(2)));
        config.transport_config(Arc::new(transport));
        let bind_addr = options.bind_addr.unwrap_or_else(|| {
            let all_loopback = options.addrs.iter().all(|a| a.ip().is_loopback());
            let ip: std::net::IpAddr = match (first.is_ipv4(), all_loopback) {
                (true, true) => std::net::Ipv4Addr::LOCALHOST.into(),
                (true, false) => std::net::Ipv4Addr::UNSPECIFIED.into(),
                (false, true) => std::net::Ipv6Addr::LOCALHOST.into(),
                (false, false) => std::net::Ipv6Addr::UNSPECIFIED.into(),
            };
            SocketAddr::new(ip, 0)
        });
        let endpoint = Endpoint::client(bind_addr).map_err(|source| ClientError::Bind {
            addr: bind_addr,
            source,
        })?;
        let client_id = options.client_id.unwrap_or_else(random_client_id);
        Ok(Self {
            endpoint,
            config,
            options,
            client_id,
            next_seq: AtomicU64::new(1),
            free_lanes: Mutex::new(vec![Lane {
                client_id,
                next_seq: None,
            }]),
            connections: tokio::sync::Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashMap::new()),
            leader_hint: Mutex::new(None),
        })
    }

    /// This client's id (that of its first lane; see the module docs).
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// Takes the next sequence number of [`Client::client_id`] (starting at 1).
    ///
    /// For requests built by hand and given to [`Client::send`]: such requests must not be in
    /// flight at the same time as another one of the same client id (including one of
    /// [`Client::request`]'s first lane), or the older may be refused as stale. Prefer
    /// [`Client::request`], which is safe to call concurrently.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes a free lane (or makes one) and the next `(client_id, seq)` on it.
    fn take_lane(&self) -> (u64, u64, LaneGuard<'_>) {
        let free = self
            .free_lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let mut lane = free.unwrap_or_else(|| Lane {
            client_id: random_client_id(),
            next_seq: Some(1),
        });
        let seq = match &mut lane.next_seq {
            None => self.next_seq(),
            Some(next) => {
                let seq = *next;
                *next += 1;
                seq
            }
        };
        let client_id = lane.client_id;
        let guard = LaneGuard {
            free_lanes: &self.free_lanes,
            lane: Some(lane),
        };
        (client_id, seq, guard)
    }

    /// Sends a new request (fresh `seq`) and returns the `Ok` payload; a `Rejected` answer
    /// becomes [`ClientError::Rejected`]. Safe to call concurrently: overlapping requests go
    /// out under different client ids (see the module docs), so none of them can be refused
    /// as stale because of another.
    pub async fn request(&self, kind: RequestKind, body: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let (client_id, seq, _lane) = self.take_lane();
        let request = ClientRequest {
            client_id,
            seq,
            attempt: 0,
            kind,
            body,
        };
        match self.send(request).await? {
            ClientResponse::Ok(bytes) => Ok(bytes),
            ClientResponse::Rejected { code, message } => {
                Err(ClientError::Rejected { code, message })
            }
            // `send` retries these and never returns them.
            ClientResponse::NotLeader { .. } | ClientResponse::Unavailable(_) => {
                Err(ClientError::Unavailable {
                    attempts: 0,
                    elapsed: Duration::ZERO,
                    last_error: "unexpected retryable answer".into(),
                })
            }
        }
    }

    /// Sends `request` until a node answers `Ok` or `Rejected`: follows `NotLeader` redirects,
    /// retries `Unavailable` and transport failures on other nodes, within
    /// [`ClientOptions::max_attempts`] and [`ClientOptions::overall_timeout`]. Every attempt
    /// carries the same `(client_id, seq)`.
    pub async fn send(&self, mut request: ClientRequest) -> Result<ClientResponse, ClientError> {
        let started = Instant::now();
        let deadline = deadline_after(started, self.options.overall_timeout);
        let addrs = &self.options.addrs;
        let hint = *self.leader_hint.lock().unwrap_or_else(|p| p.into_inner());
        let mut rotation = hint
            .and_then(|h| addrs.iter().position(|a| *a == h))
            .unwrap_or(0);
        let mut target = hint.unwrap_or(addrs[rotation % addrs.len()]);
        let mut last_error: Option<ClientError> = None;
        let mut tls_failures = 0u32;
        let mut attempts = 0u32;
        let mut backoff = self.options.retry_backoff;
        while attempts < self.options.max_attempts && Instant::now() < deadline {
            request.attempt = attempts;
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = self.options.attempt_timeout.min(remaining);
            let heard_before = self.datagrams_received(target).await;
            let outcome =
                match tokio::time::timeout(timeout, self.send_once(target, &request)).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        // The connection is shared by every request to this node. A node that
                        // answered nothing at all (not even QUIC acknowledgements of the request
                        // or of keep-alives) is gone or paused: drop the connection so the next
                        // attempt dials afresh. A node that is alive but slow to answer this one
                        // request keeps it, and the other requests in flight on it go on.
                        let heard_after = self.datagrams_received(target).await;
                        if heard_after.unwrap_or(0) <= heard_before.unwrap_or(0) {
                            self.forget_connection(target).await;
                        }
                        Err(ClientError::Timeout {
                            addr: target,
                            after: timeout,
                        })
                    }
                };
            let next = match outcome {
                Ok(response @ (ClientResponse::Ok(_) | ClientResponse::Rejected { .. })) => {
                    *self.leader_hint.lock().unwrap_or_else(|p| p.into_inner()) = Some(target);
                    return Ok(response);
                }
                Ok(ClientResponse::NotLeader {
                    leader_id,
                    leader_addr,
                }) => {
                    debug!(%target, ?leader_id, ?leader_addr, "redirected");
                    last_error = Some(ClientError::Transport {
                        addr: target,
                        message: format!(
                            "not the leader (leader {leader_id:?} at {leader_addr:?})"
                        ),
                    });
                    match resolve(leader_addr.as_deref()).await {
                        Some(addr) if addr != target => Next::Address(addr),
                        _ => {
                            self.pause(&mut backoff, deadline).await;
                            Next::Rotate
                        }
                    }
                }
                Ok(ClientResponse::Unavailable(message)) => {
                    debug!(%target, %message, "node unavailable");
                    last_error = Some(ClientError::Transport {
                        addr: target,
                        message,
                    });
                    self.pause(&mut backoff, deadline).await;
                    Next::Rotate
                }
                Err(error) => {
                    debug!(%target, %error, "attempt failed");
                    if matches!(error, ClientError::Tls { .. }) {
                        tls_failures += 1;
                        // Every node tried refused our certificate (or we refused theirs):
                        // retrying will not change that, so say so at once.
                        if tls_failures == attempts && tls_failures as usize >= addrs.len() {
                            return Err(error);
                        }
                    }
                    last_error = Some(error);
                    self.pause(&mut backoff, deadline).await;
                    Next::Rotate
                }
            };
            target = match next {
                Next::Address(addr) => addr,
                Next::Rotate => {
                    rotation += 1;
                    addrs[rotation % addrs.len()]
                }
            };
        }
        if tls_failures == attempts
            && let Some(error @ ClientError::Tls { .. }) = last_error
        {
            // Every attempt failed in the TLS handshake: say so plainly rather than "unavailable".
            return Err(error);
        }
        Err(ClientError::Unavailable {
            attempts,
            elapsed: started.elapsed(),
            last_error: last_error.map_or_else(
                || "overall timeout before any attempt".to_owned(),
                |e| e.to_string(),
            ),
        })
    }

    /// Sleeps for `backoff` (never past `deadline`) and doubles it, up to the configured most.
    async fn pause(&self, backoff: &mut Duration, deadline: Instant) {
        let until = deadline_after(Instant::now(), *backoff).min(deadline);
        tokio::time::sleep_until(until).await;
        *backoff = backoff.saturating_mul(2).min(
            self.options
                .max_retry_backoff
                .max(self.options.retry_backoff),
        );
    }

    /// One attempt at `addr`: no retry, no timeout (wrap it in one).
    pub async fn send_once(
        &self,
        addr: SocketAddr,
        request: &ClientRequest,
    ) -> Result<ClientResponse, ClientError> {
        let link = self.connection(addr).await?;
        let conn = &link.conn;
        let result = self.exchange(&link, addr, request).await;
        if result.is_err()
            && let Some(reason) = conn.close_reason()
        {
            self.forget_connection(addr).await;
            // In TLS 1.3 the client finishes its handshake before the server has checked the
            // client certificate: a refusal arrives as the connection closing right after.
            if is_tls_error(&reason) {
                return Err(ClientError::Tls {
                    addr,
                    message: reason.to_string(),
                });
            }
            // Stream errors only say "connection lost": name why it was lost.
            return Err(ClientError::Transport {
                addr,
                message: format!("connection closed: {reason}"),
            });
        }
        result
    }

    async fn exchange(
        &self,
        link: &Link,
        addr: SocketAddr,
        request: &ClientRequest,
    ) -> Result<ClientResponse, ClientError> {
        let transport = |message: String| ClientError::Transport { addr, message };
        let bytes = request.to_bytes().map_err(|e| transport(e.to_string()))?;
        let frame = frame::frame_bytes(&bytes, self.options.max_frame_bytes)
            .map_err(|e| transport(e.to_string()))?;
        let (send, mut recv) = link
            .conn
            .open_bi()
            .await
            .map_err(|e| transport(e.to_string()))?;
        // Written by the connection's writer, together with other requests ready now; a
        // failed write shows as the answer's stream failing below.
        link.outbox
            .send(Outgoing {
                send,
                frame,
                timeout: self.options.attempt_timeout,
            })
            .map_err(|_| transport("the connection's writer stopped".into()))?;
        let payload = frame::read_frame(&mut recv, self.options.max_frame_bytes)
            .await
            .map_err(|e| transport(format!("bad response: {e}")))?
            .ok_or_else(|| transport("stream closed without a response".into()))?;
        frame::read_end(&mut recv)
            .await
            .map_err(|e| transport(format!("bad response: {e}")))?;
        ClientResponse::from_bytes(&payload).map_err(|e| transport(format!("bad response: {e}")))
    }

    async fn connection(&self, addr: SocketAddr) -> Result<Link, ClientError> {
        if let Some(conn) = self.cached_connection(addr).await {
            return Ok(conn);
        }
        // One dial per node at a time: requests that find no connection together (a fresh
        // client under load, or everything in flight after a failover) wait for that dial
        // rather than each making a handshake. The gate is per node, and `connections` is not
        // held meanwhile, so a dead node never stalls requests to others.
        let gate = self
            .dialing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(addr)
            .or_default()
            .clone();
        let _turn = gate.lock().await;
        if let Some(conn) = self.cached_connection(addr).await {
            return Ok(conn);
        }
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), addr, tls::NODE_SERVER_NAME)
            .map_err(|e| ClientError::Transport {
                addr,
                message: e.to_string(),
            })?;
        let handshake = tokio::time::timeout(self.options.connect_timeout, connecting)
            .await
            .map_err(|_| ClientError::Timeout {
                addr,
                after: self.options.connect_timeout,
            })?;
        let conn = handshake.map_err(|e| {
            if is_tls_error(&e) {
                ClientError::Tls {
                    addr,
                    message: e.to_string(),
                }
            } else {
                ClientError::Transport {
                    addr,
                    message: describe_connection_error(&e),
                }
            }
        })?;
        let link = Link {
            conn,
            outbox: coalesce::spawn_writer(),
        };
        self.connections.lock().await.insert(addr, link.clone());
        Ok(link)
    }

    /// The cached connection to `addr`, if it is still open.
    async fn cached_connection(&self, addr: SocketAddr) -> Option<Link> {
        self.connections
            .lock()
            .await
            .get(&addr)
            .filter(|link| link.conn.close_reason().is_none())
            .cloned()
    }

    /// UDP datagrams received so far on the cached connection to `addr`, if there is one.
    async fn datagrams_received(&self, addr: SocketAddr) -> Option<u64> {
        self.connection_stats(addr)
            .await
            .map(|stats| stats.udp_rx.datagrams)
    }

    /// QUIC statistics of the open connection to `addr`, if there is one: datagrams and frames
    /// each way, the path's MTU and round-trip time. For diagnostics.
    pub async fn connection_stats(&self, addr: SocketAddr) -> Option<quinn::ConnectionStats> {
        self.connections
            .lock()
            .await
            .get(&addr)
            .map(|link| link.conn.stats())
    }

    async fn forget_connection(&self, addr: SocketAddr) {
        if let Some(link) = self.connections.lock().await.remove(&addr) {
            link.conn.close(VarInt::from_u32(0), b"abandoned");
        }
    }

    /// Closes every connection and waits (bounded) for the closes to be sent.
    pub async fn close(&self) {
        self.connections.lock().await.clear();
        self.endpoint.close(VarInt::from_u32(0), b"client closed");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// An open connection to a node and its writer (requests are written together, see
/// [`crate::coalesce`]).
#[derive(Clone, Debug)]
struct Link {
    conn: Connection,
    outbox: tokio::sync::mpsc::UnboundedSender<Outgoing>,
}

/// A random client id; never 0, which the state machine treats as anonymous (no
/// deduplication).
fn random_client_id() -> u64 {
    rand::random::<u64>().max(1)
}

/// Resolves a redirect address (`ip:port` or `host:port`), bounded to one second.
async fn resolve(addr: Option<&str>) -> Option<SocketAddr> {
    let addr = addr?;
    if let Ok(parsed) = addr.parse() {
        return Some(parsed);
    }
    let lookup = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::lookup_host(addr.to_owned()),
    )
    .await;
    lookup.ok()?.ok()?.next()
}
