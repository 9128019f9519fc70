//! Payload formats the engine puts in log entries: the client envelope of `Normal` entries
//! and the configuration of `Config` entries. Both are rkyv, validated on decode.

use bytes::Bytes;
use rkyv::{Archive, Deserialize, Serialize, rancor};

use super::Membership;

/// The client envelope inside a `Normal` entry: who asked, which request, what.
/// The driver decodes it into a [`crate::Command`]; retries reuse `(client_id, seq)` so
/// [`crate::ClientSessions`] can deduplicate them.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The client (0: anonymous, never deduplicated).
    pub client_id: u64,
    /// The client's sequence number for this request.
    pub seq: u64,
    /// The application's bytes.
    pub payload: Vec<u8>,
}

/// Bytes that are not a valid payload.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what}: {message}")]
pub struct CodecError {
    /// What was being decoded.
    pub what: &'static str,
    /// Why it failed.
    pub message: String,
}

fn decode<T>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rancor::Error>>,
{
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|e| CodecError {
        what,
        message: e.to_string(),
    })
}

impl Proposal {
    /// Encodes a client request as the data of a `Normal` entry.
    pub fn encode(client_id: u64, seq: u64, payload: &[u8]) -> Bytes {
        let proposal = Proposal {
            client_id,
            seq,
            payload: payload.to_vec(),
        };
        match rkyv::to_bytes::<rancor::Error>(&proposal) {
            Ok(bytes) => Bytes::from(bytes.into_vec()),
            // Serializing integers and a byte vector into memory cannot fail.
            Err(_) => Bytes::new(),
        }
    }

    /// Decodes and validates the data of a `Normal` entry.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        decode("proposal", bytes)
    }
}

impl Membership {
    /// Encodes the configuration as the data of a `Config` entry.
    pub fn encode(&self) -> Bytes {
        match rkyv::to_bytes::<rancor::Error>(self) {
            Ok(bytes) => Bytes::from(bytes.into_vec()),
            // Serializing integer vectors into memory cannot fail.
            Err(_) => Bytes::new(),
        }
    }

    /// Decodes and validates the data of a `Config` entry.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut membership: Membership = decode("membership", bytes)?;
        membership.voters.sort_unstable();
        membership.voters.dedup();
        membership.learners.sort_unstable();
        membership.learners.dedup();
        let voters = membership.voters.clone();
        membership.learners.retain(|l| !voters.contains(l));
        Ok(membership)
    }
}
