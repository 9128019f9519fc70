//! The node's side of the client protocol: decode a request body ([`crate::api`]), run the
//! shop's prepare step (validation, argon2, session tokens, the node's clock), hand the result
//! to the Raft node through [`NodeApi`], and turn the outcome into a
//! [`ClientResponse`].
//!
//! [`NodeApi`] is the seam between this layer and the Raft engine: the node command implements
//! it over the engine driver's handle; [`memory::MemoryNode`] implements it over a shop state
//! machine applied directly (one node, no log), so everything above Raft is testable alone.
//!
//! ```text
//! let (transport, channels) = PeerTransport::bind(config).await?;
//! let context = ServerContext::new(node_id, cluster_config, node_config.fault_hook);
//! tokio::spawn(server::serve(channels.client_requests, Arc::new(node_api), Arc::new(context)));
//! ```

pub mod memory;

use std::future::Future;
use std::sync::Arc;

use shoal_net::{
    ClientRequest, ClientResponse, FaultCommand, IncomingRequest, ReadConsistency, RequestKind,
};
use shoal_shop::{PrepareConfig, Query, Reply, Request, ShopError, encode_reply, prepare};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use crate::api::{AdminBody, AdminReply, MemberInfo, NodeStatus, ReadBody, WriteBody, codes};
use crate::config::ClusterConfig;

/// Why the Raft node could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Only the leader does this; `leader` is the leader this node knows of.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's id, if known.
        leader: Option<u64>,
    },
    /// Cannot serve now (no quorum, busy, timed out, leadership changed, shutting down);
    /// retrying, possibly elsewhere, may help. Proposals are retried with the same client id
    /// and sequence number, so they apply at most once.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// An argument is invalid (e.g. a membership change naming a node that cannot be added).
    #[error("invalid: {0}")]
    Invalid(String),
    /// A node named does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request conflicts with the cluster's state (a membership change in progress, a
    /// transfer target that lags).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The node failed (storage error, stopped).
    #[error("node failed: {0}")]
    Failed(String),
}

/// What the request handler needs from a Raft node. The node command implements it over the
/// engine driver's handle; [`memory::MemoryNode`] over a state machine applied directly.
///
/// Payloads and replies are the shop's bytes ([`Request::encode`], [`Query::encode`],
/// [`shoal_shop::encode_reply`]): the node's state machine is [`shoal_shop::Shop`].
pub trait NodeApi: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> u64;

    /// Proposes `payload` for client `client_id` with sequence number `seq` and returns the
    /// state machine's reply once committed and applied. Retries of the same
    /// `(client_id, seq)` are applied once. On a follower: [`NodeError::NotLeader`].
    fn propose(
        &self,
        client_id: u64,
        seq: u64,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, NodeError>> + Send;

    /// Answers a query at the given consistency.
    fn read(
        &self,
        query: Vec<u8>,
        consistency: ReadConsistency,
    ) -> impl Future<Output = Result<Vec<u8>, NodeError>> + Send;

    /// This node's status.
    fn status(&self) -> NodeStatus;

    /// The configuration's members as this node knows them.
    fn members(&self) -> Vec<MemberInfo>;

    /// Adds node `id` at peer address `addr`: as a learner, promoted to voter once caught up.
    /// Leader only.
    fn add_member(
        &self,
        id: u64,
        addr: String,
    ) -> impl Future<Output = Result<(), NodeError>> + Send;

    /// Removes node `id`. Leader only.
    fn remove_member(&self, id: u64) -> impl Future<Output = Result<(), NodeError>> + Send;

    /// Hands leadership to `to`. Leader only.
    fn transfer_leader(&self, to: u64) -> impl Future<Output = Result<(), NodeError>> + Send;

    /// Takes a snapshot now; returns its index.
    fn snapshot(&self) -> impl Future<Output = Result<u64, NodeError>> + Send;

    /// Applies a fault-hook command to the node's transport. Called only when the node's
    /// configuration enables the hook ([`ServerContext::fault_hook`]).
    fn fault(&self, command: &FaultCommand) -> Result<(), NodeError>;
}

/// What the handler knows besides the node.
#[derive(Debug, Clone)]
pub struct ServerContext {
    /// This node's id.
    pub node_id: u64,
    /// The cluster's members, to name the leader's client address in redirects.
    pub cluster: ClusterConfig,
    /// Password hashing costs and session lifetime.
    pub prepare: PrepareConfig,
    /// Whether admin fault commands are honoured (`fault_hook` in node.toml).
    pub fault_hook: bool,
    /// Most requests handled at once; more wait (and the transport sheds when its queue fills).
    pub max_in_flight: usize,
}

impl ServerContext {
    /// The context of the node `node` configures, in `cluster`; password costs come from its
    /// `[passwords]` section.
    pub fn for_node(node: &crate::config::NodeConfig, cluster: ClusterConfig) -> Self {
        let mut context = Self::new(node.id, cluster, node.fault_hook);
        context.prepare = node.passwords.prepare_config();
        context
    }

    /// A context with default prepare costs and 1024 requests in flight.
    pub fn new(node_id: u64, cluster: ClusterConfig, fault_hook: bool) -> Self {
        Self {
            node_id,
            cluster,
            prepare: PrepareConfig::default(),
            fault_hook,
            max_in_flight: 1024,
        }
    }
}

/// Serves client requests from the transport until its channel closes: each request is
/// handled in its own task (at most [`ServerContext::max_in_flight`] at once) and answered
/// through its responder.
pub async fn serve<N: NodeApi>(
    mut requests: mpsc::Receiver<IncomingRequest>,
    node: Arc<N>,
    context: Arc<ServerContext>,
) {
    let permits = Arc::new(Semaphore::new(context.max_in_flight.max(1)));
    while let Some(incoming) = requests.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let node = node.clone();
        let context = context.clone();
        tokio::spawn(async move {
            let IncomingRequest {
                request,
                responder,
                remote,
            } = incoming;
            let response = handle(request, &*node, &context).await;
            if let Err(error) = responder.respond(&response).await {
                debug!(%remote, %error, "cannot answer client");
            }
            drop(permit);
        });
    }
    debug!("client request channel closed");
}

fn shop_reply(reply: &Reply) -> ClientResponse {
    ClientResponse::Ok(encode_reply(reply))
}

fn rejected(code: u32, message: impl Into<String>) -> ClientResponse {
    ClientResponse::Rejected {
        code,
        message: message.into(),
    }
}

/// The client address of node `id`: from cluster.toml, else from the node's membership
/// (a node added after the cluster was configured).
fn member_address<N: NodeApi>(id: u64, node: &N, context: &ServerContext) -> Option<String> {
    context
        .cluster
        .member(id)
        .map(|m| m.client_address().to_owned())
        .or_else(|| {
            node.members()
                .into_iter()
                .find(|m| m.id == id)
                .and_then(|m| m.addr)
        })
}

/// Turns a node failure into the answer the client acts on.
fn node_error<N: NodeApi>(error: NodeError, node: &N, context: &ServerContext) -> ClientResponse {
    match error {
        NodeError::NotLeader { leader } => ClientResponse::NotLeader {
            leader_id: leader,
            leader_addr: leader.and_then(|id| member_address(id, node, context)),
        },
        NodeError::Unavailable(message) => ClientResponse::Unavailable(message),
        NodeError::Failed(message) => {
            ClientResponse::Unavailable(format!("node failed: {message}"))
        }
        NodeError::Invalid(message) => rejected(codes::INVALID, message),
        NodeError::NotFound(message) => rejected(codes::NOT_FOUND, message),
        NodeError::Conflict(message) => rejected(codes::CONFLICT, message),
    }
}

/// Handles one client request against `node`.
pub async fn handle<N: NodeApi>(
    request: ClientRequest,
    node: &N,
    context: &ServerContext,
) -> ClientResponse {
    let ClientRequest {
        client_id,
        seq,
        kind,
        body,
        ..
    } = request;
    match kind {
        RequestKind::Write => match WriteBody::from_bytes(&body) {
            Ok(body) => handle_write(client_id, seq, body, node, context).await,
            Err(error) => rejected(codes::BAD_BODY, error.to_string()),
        },
        RequestKind::Read(consistency) => match ReadBody::from_bytes(&body) {
            Ok(ReadBody::Query(query)) => handle_read(query, consistency, node, context).await,
            Err(error) => rejected(codes::BAD_BODY, error.to_string()),
        },
        RequestKind::Admin => match AdminBody::from_bytes(&body) {
            Ok(body) => handle_admin(body, node, context).await,
            Err(error) => rejected(codes::BAD_BODY, error.to_string()),
        },
    }
}

/// Runs CPU-heavy preparation (argon2) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ShopError> + Send + 'static,
) -> Result<T, ShopError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(ShopError::Internal {
            message: format!("preparation task failed: {e}"),
        })
    })
}

async fn propose<N: NodeApi>(
    client_id: u64,
    seq: u64,
    request: Request,
    node: &N,
    context: &ServerContext,
) -> ClientResponse {
    match node.propose(client_id, seq, request.encode()).await {
        Ok(bytes) => ClientResponse::Ok(bytes),
        Err(error) => node_error(error, node, context),
    }
}

async fn handle_write<N: NodeApi>(
    client_id: u64,
    seq: u64,
    body: WriteBody,
    node: &N,
    context: &ServerContext,
) -> ClientResponse {
    let now = prepare::now_ms();
    let prepared: Result<Request, ShopError> = match body {
        WriteBody::Signup {
            email,
            password,
            profile,
        } => {
            let config = context.prepare.clone();
            blocking(move || prepare::signup(&config, &email, &password, profile, now)).await
        }
        WriteBody::Login { email, password } => {
            // Followers redirect before the (slow) password check, and the credentials read
            // is linearizable so a just-created account is found.
            let query = match prepare::credentials_query(&email) {
                Ok(query) => query,
                Err(error) => return shop_reply(&Err(error)),
            };
            let bytes = match node
                .read(query.encode(), ReadConsistency::Linearizable)
                .await
            {
                Ok(bytes) => bytes,
                Err(error) => return node_error(error, node, context),
            };
            let credentials = match shoal_shop::decode_reply(&bytes) {
                Ok(reply) => reply,
                Err(error) => return shop_reply(&Err(error)),
            };
            let config = context.prepare.clone();
            blocking(move || prepare::login(&config, &password, credentials, now)).await
        }
        WriteBody::Shop(mut request) => {
            request.set_now(now);
            prepare::check(request)
        }
    };
    match prepared {
        Ok(request) => propose(client_id, seq, request, node, context).await,
        Err(error) => shop_reply(&Err(error)),
    }
}

async fn handle_read<N: NodeApi>(
    mut query: Query,
    consistency: ReadConsistency,
    node: &N,
    context: &ServerContext,
) -> ClientResponse {
    query.set_now(prepare::now_ms());
    match node.read(query.encode(), consistency).await {
        Ok(bytes) => ClientResponse::Ok(bytes),
        Err(error) => node_error(error, node, context),
    }
}

async fn handle_admin<N: NodeApi>(
    body: AdminBody,
    node: &N,
    context: &ServerContext,
) -> ClientResponse {
    let result = match body {
        AdminBody::Status => Ok(AdminReply::Status(node.status())),
        AdminBody::Members => {
            let mut members = node.members();
            for member in &mut members {
                if member.addr.is_none() {
                    member.addr = context
                        .cluster
                        .member(member.id)
                        .map(|m| m.client_address().to_owned());
                }
            }
            Ok(AdminReply::Members(members))
        }
        AdminBody::AddMember { id, addr } => {
            node.add_member(id, addr).await.map(|()| AdminReply::Done)
        }
        AdminBody::RemoveMember { id } => node.remove_member(id).await.map(|()| AdminReply::Done),
        AdminBody::TransferLeader { to } => {
            node.transfer_leader(to).await.map(|()| AdminReply::Done)
        }
        AdminBody::Snapshot => node
            .snapshot()
            .await
            .map(|index| AdminReply::Snapshot { index }),
        AdminBody::Fault(command) => {
            if !context.fault_hook {
                warn!(
                    node = context.node_id,
                    ?command,
                    "fault command refused: hook disabled"
                );
                return rejected(
                    codes::FORBIDDEN,
                    format!(
                        "the fault hook of node {} is disabled (set fault_hook = true in its node.toml)",
                        context.node_id
                    ),
                );
            }
            node.fault(&command).map(|()| AdminReply::Done)
        }
    };
    match result {
        Ok(reply) => ClientResponse::Ok(reply.to_bytes()),
        Err(error) => node_error(error, node, context),
    }
}

#[cfg(test)]
mod tests;
