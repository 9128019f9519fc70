//! The bodies the CLI sends inside [`shoal_net::ClientRequest::body`], and what nodes answer.
//!
//! | request kind | body | `ClientResponse::Ok` bytes |
//! |---|---|---|
//! | `Write` | [`WriteBody`] | a shop [`shoal_shop::Reply`] ([`shoal_shop::encode_reply`]) |
//! | `Read(consistency)` | [`ReadBody`] | a shop [`shoal_shop::Reply`] |
//! | `Admin` | [`AdminBody`] | an [`AdminReply`] |
//!
//! Shop refusals (validation, not found, conflict, auth) travel inside the reply as a
//! [`shoal_shop::ShopError`], so the client prints the shop's message and exits with its code.
//! Refusals outside the shop (an undecodable body, an admin request that cannot be done) are
//! `ClientResponse::Rejected` with one of [`codes`].
//!
//! Everything is rkyv and validated when decoded ([`decode`]): bytes from the network are
//! never trusted. After decoding, [`WriteBody::validate`], [`AdminBody::validate`] check the
//! bounds the types cannot express.

use rkyv::{Archive, Deserialize, Serialize};
use shoal_net::FaultCommand;
use shoal_shop::{Profile, Query, Request};

use crate::config::validate_host_port;

/// Largest body accepted, in bytes (the transport bounds frames too).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// `ClientResponse::Rejected` codes of the node (above `shoal_net::protocol::codes::NODE_BASE`).
pub mod codes {
    use shoal_net::protocol::codes::NODE_BASE;

    /// The body could not be decoded or failed validation (exit code 2).
    pub const BAD_BODY: u32 = NODE_BASE;
    /// The node failed (exit code 1).
    pub const FAILED: u32 = NODE_BASE + 1;
    /// An argument of an admin request is invalid (exit code 2).
    pub const INVALID: u32 = NODE_BASE + 2;
    /// Something named does not exist (exit code 3).
    pub const NOT_FOUND: u32 = NODE_BASE + 3;
    /// The request conflicts with the cluster's state, e.g. a membership change already
    /// running (exit code 4).
    pub const CONFLICT: u32 = NODE_BASE + 4;
    /// Not allowed, e.g. a fault command to a node whose fault hook is off (exit code 5).
    pub const FORBIDDEN: u32 = NODE_BASE + 5;

    /// The SPEC exit code for a rejection code (net's and the node's).
    pub fn exit_code(code: u32) -> u8 {
        match code {
            INVALID | BAD_BODY => 2,
            NOT_FOUND => 3,
            CONFLICT => 4,
            FORBIDDEN => 5,
            shoal_net::protocol::codes::MALFORMED | shoal_net::protocol::codes::TOO_LARGE => 2,
            _ => 1,
        }
    }

    /// The `--json` error kind for a rejection code.
    pub fn kind(code: u32) -> &'static str {
        match code {
            INVALID | BAD_BODY => "invalid",
            NOT_FOUND => "not_found",
            CONFLICT => "conflict",
            FORBIDDEN => "forbidden",
            shoal_net::protocol::codes::MALFORMED | shoal_net::protocol::codes::TOO_LARGE => {
                "invalid"
            }
            _ => "unavailable",
        }
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Larger than [`MAX_BODY_BYTES`].
    #[error("request body too large: {len} bytes, at most {MAX_BODY_BYTES}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Not a valid archive of the expected type.
    #[error("undecodable {what}: {message}")]
    Undecodable {
        /// What was expected.
        what: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// Decoded, but a field is out of bounds.
    #[error("invalid {field}: {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        problem: String,
    },
}

/// A write: goes through the Raft log (after the node's prepare step).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum WriteBody {
    /// A sign-up with the clear password (over mutual TLS): the node validates, hashes it with
    /// argon2 and a random salt, and proposes [`Request::Signup`] with the hash only.
    Signup {
        /// The email.
        email: String,
        /// The password, in clear; never stored or proposed.
        password: String,
        /// Role and names.
        profile: Profile,
    },
    /// A login: the node reads the account's hash, verifies the password with argon2, then
    /// proposes a new session (random token).
    Login {
        /// The email.
        email: String,
        /// The password, in clear.
        password: String,
    },
    /// Any other shop or kv request (kv put/del/cas, actions with a session token). The node
    /// refuses node-internal requests and sign-ups carrying a hash, and stamps its own time.
    Shop(Request),
}

/// A read: answered from a node's applied state at the request's consistency.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ReadBody {
    /// A shop or kv query (node-internal queries are refused).
    Query(Query),
}

/// An operator request.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum AdminBody {
    /// This node's status (answered by any node, about itself).
    Status,
    /// The configuration's members as this node knows them.
    Members,
    /// Adds node `id` at `addr` (as a learner, promoted once caught up). Leader only.
    AddMember {
        /// The new node's id.
        id: u64,
        /// Its peer address, `host:port`.
        addr: String,
    },
    /// Removes node `id`. Leader only.
    RemoveMember {
        /// The node.
        id: u64,
    },
    /// Hands leadership to node `to`. Leader only.
    TransferLeader {
        /// The new leader.
        to: u64,
    },
    /// Takes a snapshot on this node now and compacts its log.
    Snapshot,
    /// Changes this node's transport fault hook; refused unless its `node.toml` sets
    /// `fault_hook = true`.
    Fault(FaultCommand),
}

/// A node's role, as `shoal status` prints it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// Replicates the log.
    Leader,
    /// Follows a leader.
    Follower,
    /// Campaigning (pre-vote or vote).
    Candidate,
    /// Receives the log without voting.
    Learner,
}

impl NodeRole {
    /// `"leader"`, `"follower"`, `"candidate"` or `"learner"` (SPEC §3).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Leader => "leader",
            NodeRole::Follower => "follower",
            NodeRole::Candidate => "candidate",
            NodeRole::Learner => "learner",
        }
    }
}

/// One node's status (`shoal status`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node's id.
    pub id: u64,
    /// Its role.
    pub role: NodeRole,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// Highest index known committed.
    pub commit_index: u64,
    /// Highest index applied to the state machine.
    pub applied_index: u64,
    /// Last index in its log.
    pub last_index: u64,
    /// Index of its latest snapshot (0: none).
    pub snapshot_index: u64,
    /// Bytes of WAL segment files on disk.
    pub wal_bytes: u64,
}

/// One member of the configuration.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The node's id.
    pub id: u64,
    /// Its address, when known.
    pub addr: Option<String>,
    /// Whether it votes (false: learner).
    pub voter: bool,
}

/// The answer to an [`AdminBody`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum AdminReply {
    /// Done.
    Done,
    /// The answering node's status.
    Status(NodeStatus),
    /// The members.
    Members(Vec<MemberInfo>),
    /// A snapshot was taken at this index.
    Snapshot {
        /// The snapshot's last included index.
        index: u64,
    },
}

/// Encodes a body or reply.
pub fn encode<T>(value: &T) -> Vec<u8>
where
    T: for<'a> rkyv::Serialize<
            rkyv::api::high::HighSerializer<
                rkyv::util::AlignedVec,
                rkyv::ser::allocator::ArenaHandle<'a>,
                rkyv::rancor::Error,
            >,
        >,
{
    // Encoding plain owned data into a growable buffer cannot fail; an empty body would be
    // refused by the node anyway.
    shoal_net::encode(value).map_or_else(|_| Vec::new(), |v| v.into_vec())
}

/// Validates and decodes a body or reply of type `T` (`what` names it in errors).
pub fn decode<T>(what: &'static str, bytes: &[u8]) -> Result<T, BodyError>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    if bytes.len() > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge { len: bytes.len() });
    }
    shoal_net::decode(bytes).map_err(|e| BodyError::Undecodable {
        what,
        message: e.to_string(),
    })
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<(), BodyError> {
    if value.len() > max {
        return Err(BodyError::Invalid {
            field,
            problem: format!("must be at most {max} bytes"),
        });
    }
    Ok(())
}

impl WriteBody {
    /// Decodes and checks a write body.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BodyError> {
        let body: Self = decode("write body", bytes)?;
        body.validate()?;
        Ok(body)
    }

    /// Checks the bounds the shop's own validation does not cover (it runs next, on the node).
    pub fn validate(&self) -> Result<(), BodyError> {
        match self {
            WriteBody::Signup {
                email, password, ..
            }
            | WriteBody::Login { email, password } => {
                bounded("email", email, shoal_shop::validate::MAX_EMAIL_BYTES)?;
                bounded(
                    "password",
                    password,
                    shoal_shop::validate::MAX_PASSWORD_BYTES,
                )
            }
            WriteBody::Shop(request) => {
                if request.is_internal() || matches!(request, Request::Signup { .. }) {
                    return Err(BodyError::Invalid {
                        field: "request",
                        problem: "only a node may propose this request".into(),
                    });
                }
                Ok(())
            }
        }
    }

    /// Encodes the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }
}

impl ReadBody {
    /// Decodes and checks a read body.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BodyError> {
        let body: Self = decode("read body", bytes)?;
        let ReadBody::Query(query) = &body;
        if query.is_internal() {
            return Err(BodyError::Invalid {
                field: "query",
                problem: "node-internal query".into(),
            });
        }
        Ok(body)
    }

    /// Encodes the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }
}

impl AdminBody {
    /// Decodes and checks an admin body.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BodyError> {
        let body: Self = decode("admin body", bytes)?;
        body.validate()?;
        Ok(body)
    }

    /// Checks ids and addresses.
    pub fn validate(&self) -> Result<(), BodyError> {
        let id_ok = |field: &'static str, id: u64| {
            if id == 0 {
                Err(BodyError::Invalid {
                    field,
                    problem: "node ids start at 1".into(),
                })
            } else {
                Ok(())
            }
        };
        match self {
            AdminBody::AddMember { id, addr } => {
                id_ok("id", *id)?;
                bounded("addr", addr, 300)?;
                validate_host_port("addr", addr).map_err(|e| BodyError::Invalid {
                    field: "addr",
                    problem: e.problem,
                })
            }
            AdminBody::RemoveMember { id } => id_ok("id", *id),
            AdminBody::TransferLeader { to } => id_ok("to", *to),
            AdminBody::Fault(FaultCommand::SetDropProbability(p)) if !(0.0..=1.0).contains(p) => {
                Err(BodyError::Invalid {
                    field: "drop probability",
                    problem: "must be between 0 and 1".into(),
                })
            }
            AdminBody::Fault(FaultCommand::Isolate(peers)) if peers.len() > 1024 => {
                Err(BodyError::Invalid {
                    field: "peers",
                    problem: "at most 1024".into(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Encodes the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }
}

impl AdminReply {
    /// Decodes an admin reply.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BodyError> {
        decode("admin reply", bytes)
    }

    /// Encodes the reply.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use shoal_shop::{Action, Auth};

    #[test]
    fn bodies_round_trip() {
        let writes = vec![
            WriteBody::Signup {
                email: "a@b.io".into(),
                password: "pw".into(),
                profile: Profile::Customer {
                    name: "A".into(),
                    address: "1 Road".into(),
                    contact: "1234567".into(),
                },
            },
            WriteBody::Login {
                email: "a@b.io".into(),
                password: "pw".into(),
            },
            WriteBody::Shop(Request::KvPut {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }),
            WriteBody::Shop(Request::Authed {
                auth: Auth::new("t", 0),
                action: Action::Checkout,
            }),
        ];
        for w in writes {
            assert_eq!(WriteBody::from_bytes(&w.to_bytes()).unwrap(), w);
        }
        let r = ReadBody::Query(Query::KvGet { key: b"k".to_vec() });
        assert_eq!(ReadBody::from_bytes(&r.to_bytes()).unwrap(), r);
        for a in [
            AdminBody::Status,
            AdminBody::Members,
            AdminBody::AddMember {
                id: 4,
                addr: "127.0.0.1:7004".into(),
            },
            AdminBody::RemoveMember { id: 2 },
            AdminBody::TransferLeader { to: 3 },
            AdminBody::Snapshot,
            AdminBody::Fault(FaultCommand::Isolate(vec![1, 2])),
        ] {
            assert_eq!(AdminBody::from_bytes(&a.to_bytes()).unwrap(), a);
        }
        let reply = AdminReply::Status(NodeStatus {
            id: 1,
            role: NodeRole::Leader,
            term: 2,
            leader: Some(1),
            commit_index: 3,
            applied_index: 3,
            last_index: 4,
            snapshot_index: 0,
            wal_bytes: 100,
        });
        assert_eq!(AdminReply::from_bytes(&reply.to_bytes()).unwrap(), reply);
    }

    #[test]
    fn garbage_is_rejected() {
        for bytes in [&[][..], &[0xff; 3][..], &[0xab; 200][..]] {
            assert!(WriteBody::from_bytes(bytes).is_err());
            assert!(ReadBody::from_bytes(bytes).is_err());
            assert!(AdminBody::from_bytes(bytes).is_err());
            assert!(AdminReply::from_bytes(bytes).is_err());
        }
        // All-zero bytes are a valid archive of the first variant: decoding must not panic.
        let _ = AdminBody::from_bytes(&[0u8; 64]);
        let big = vec![0u8; MAX_BODY_BYTES + 1];
        assert!(matches!(
            WriteBody::from_bytes(&big),
            Err(BodyError::TooLarge { .. })
        ));
        // A body of another type does not pass for this one (or fails validation).
        let admin = AdminBody::TransferLeader { to: 3 }.to_bytes();
        assert!(WriteBody::from_bytes(&admin).is_err() || ReadBody::from_bytes(&admin).is_err());
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let valid = WriteBody::Login {
            email: "a@b.io".into(),
            password: "pw".into(),
        }
        .to_bytes();
        for _ in 0..2000 {
            let mut bytes = valid.clone();
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            let _ = WriteBody::from_bytes(&bytes);
            let len = rng.random_range(0..128);
            let noise: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let _ = WriteBody::from_bytes(&noise);
            let _ = ReadBody::from_bytes(&noise);
            let _ = AdminBody::from_bytes(&noise);
            let _ = AdminReply::from_bytes(&noise);
        }
    }

    #[test]
    fn node_only_requests_and_bad_admin_arguments_are_refused() {
        let internal = WriteBody::Shop(Request::CreateSession {
            account_id: 1,
            password_hash: "$argon2id$v=19$m=8,t=1,p=1$x$y".into(),
            token: "0".repeat(64),
            now_ms: 1,
            expires_at_ms: 2,
        });
        assert!(WriteBody::from_bytes(&internal.to_bytes()).is_err());
        let hashed = WriteBody::Shop(Request::Signup {
            email: "a@b.io".into(),
            profile: Profile::Customer {
                name: "A".into(),
                address: "x".into(),
                contact: "1234567".into(),
            },
            password_hash: "$argon2id$v=19$m=8,t=1,p=1$x$y".into(),
            now_ms: 0,
        });
        assert!(WriteBody::from_bytes(&hashed.to_bytes()).is_err());
        let creds = ReadBody::Query(Query::Credentials {
            email: "a@b.io".into(),
        });
        assert!(ReadBody::from_bytes(&creds.to_bytes()).is_err());
        for bad in [
            AdminBody::AddMember {
                id: 0,
                addr: "h:1".into(),
            },
            AdminBody::AddMember {
                id: 4,
                addr: "nope".into(),
            },
            AdminBody::TransferLeader { to: 0 },
            AdminBody::Fault(FaultCommand::SetDropProbability(2.0)),
        ] {
            assert!(AdminBody::from_bytes(&bad.to_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejection_codes_map_to_exit_codes() {
        assert_eq!(codes::exit_code(codes::INVALID), 2);
        assert_eq!(codes::exit_code(codes::BAD_BODY), 2);
        assert_eq!(codes::exit_code(codes::NOT_FOUND), 3);
        assert_eq!(codes::exit_code(codes::CONFLICT), 4);
        assert_eq!(codes::exit_code(codes::FORBIDDEN), 5);
        assert_eq!(codes::exit_code(codes::FAILED), 1);
        assert_eq!(codes::exit_code(shoal_net::protocol::codes::MALFORMED), 2);
    }
}
