//! The client wire protocol: one [`ClientRequest`] and one [`ClientResponse`] per QUIC
//! bidirectional stream, each in one frame (see [`crate::frame`]), rkyv-encoded and validated on
//! read.
//!
//! `net` does not interpret [`ClientRequest::body`] or [`ClientResponse::Ok`]'s bytes: the node
//! does. What `net` does rely on is `(client_id, seq)`: a retry of a request carries the same
//! pair (only [`ClientRequest::attempt`] changes), so the state machine can apply a write once.

use crate::codec::{self, CodecError};

/// Default bound on one client request or response frame: 4 MiB.
pub const DEFAULT_MAX_CLIENT_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// How a request is to be executed.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A command that goes through the Raft log and is applied once per `(client_id, seq)`.
    Write,
    /// A query answered without a log entry, at the given consistency.
    Read(ReadConsistency),
    /// An operator request (status, membership, snapshot, fault injection...).
    Admin,
}

/// Consistency of a read.
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default,
)]
pub enum ReadConsistency {
    /// Linearizable through ReadIndex (the default).
    #[default]
    Linearizable,
    /// Served by the leader under its lease, without a quorum round.
    Lease,
    /// Served from any node's applied state: may be stale.
    Stale,
}

/// A request from a client to a node.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    /// The client's identity for deduplication; random per client process.
    pub client_id: u64,
    /// Sequence number, increasing per client; with `client_id` names the request across retries.
    pub seq: u64,
    /// Which try this is (0 first); informative only, never part of the dedup key.
    pub attempt: u32,
    /// How to execute the request.
    pub kind: RequestKind,
    /// The operation, encoded by the node's request type; opaque to `net`.
    pub body: Vec<u8>,
}

/// Reason codes for [`ClientResponse::Rejected`] defined by `net`; the node defines its own
/// above [`codes::NODE_BASE`].
pub mod codes {
    /// The request frame or its rkyv encoding was invalid.
    pub const MALFORMED: u32 = 1;
    /// The request exceeded the size bound.
    pub const TOO_LARGE: u32 = 2;
    /// The peer did not read a frame in time; its stream was reset.
    pub const UNREAD: u32 = 3;
    /// First code free for the node's own reasons.
    pub const NODE_BASE: u32 = 100;
}

/// A node's answer to a [`ClientRequest`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ClientResponse {
    /// Done; the bytes are the node's encoded result.
    Ok(Vec<u8>),
    /// This node is not the leader; try the one named, if known.
    NotLeader {
        /// The leader's id, when known.
        leader_id: Option<u64>,
        /// The leader's client address (`host:port`), when known.
        leader_addr: Option<String>,
    },
    /// The cluster cannot serve now (no quorum, shutting down, overloaded); retrying elsewhere
    /// or later may help.
    Unavailable(String),
    /// The request was refused for a reason retrying will not change.
    Rejected {
        /// Machine-readable reason; see [`codes`].
        code: u32,
        /// Human-readable reason.
        message: String,
    },
}

impl ClientRequest {
    /// Encodes the request with rkyv.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        Ok(codec::encode(self)?.into_vec())
    }

    /// Validates and decodes a request.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode(bytes)
    }
}

impl ClientResponse {
    /// Encodes the response with rkyv.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        Ok(codec::encode(self)?.into_vec())
    }

    /// Validates and decodes a response.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind_strategy() -> impl Strategy<Value = RequestKind> {
        prop_oneof![
            Just(RequestKind::Write),
            Just(RequestKind::Admin),
            Just(RequestKind::Read(ReadConsistency::Linearizable)),
            Just(RequestKind::Read(ReadConsistency::Lease)),
            Just(RequestKind::Read(ReadConsistency::Stale)),
        ]
    }

    fn response_strategy() -> impl Strategy<Value = ClientResponse> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(ClientResponse::Ok),
            (
                any::<Option<u64>>(),
                proptest::option::of("[a-z0-9.:]{0,30}")
            )
                .prop_map(|(leader_id, leader_addr)| ClientResponse::NotLeader {
                    leader_id,
                    leader_addr
                }),
            ".{0,40}".prop_map(ClientResponse::Unavailable),
            (any::<u32>(), ".{0,40}")
                .prop_map(|(code, message)| ClientResponse::Rejected { code, message }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn requests_round_trip(client_id in any::<u64>(), seq in any::<u64>(), attempt in any::<u32>(), kind in kind_strategy(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let request = ClientRequest { client_id, seq, attempt, kind, body };
            prop_assert_eq!(ClientRequest::from_bytes(&request.to_bytes().unwrap()).unwrap(), request);
        }

        #[test]
        fn responses_round_trip(response in response_strategy()) {
            prop_assert_eq!(ClientResponse::from_bytes(&response.to_bytes().unwrap()).unwrap(), response);
        }

        /// Fuzz: client request decoding never panics on arbitrary bytes.
        #[test]
        fn arbitrary_request_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ClientRequest::from_bytes(&bytes);
            let _ = ClientResponse::from_bytes(&bytes);
        }

        /// Fuzz: mutations of a valid request decode to something or fail cleanly.
        #[test]
        fn mutated_requests_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let request = ClientRequest { client_id: 1, seq: 2, attempt: 0, kind: RequestKind::Write, body };
            let mut bytes = request.to_bytes().unwrap();
            for (index, value) in flips {
                let i = index.index(bytes.len());
                bytes[i] = value;
            }
            let _ = ClientRequest::from_bytes(&bytes);
        }
    }
}
