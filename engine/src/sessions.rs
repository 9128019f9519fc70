//! Exactly-once application of client requests, for any state machine.
//!
//! Every proposed command carries a client id and a sequence number. A client retries a
//! request with the same sequence number after a timeout or a failover, so the same command
//! may be committed twice. [`ClientSessions`] remembers, per client, the highest sequence
//! number applied and its response: a retried command returns the first response and changes
//! nothing.
//!
//! A persistent state machine stores the table (see [`ClientSessions::encode`]) in the same
//! atomic batch as the changes it describes, and in its snapshots, so that deduplication
//! survives restarts and reaches followers.
//!
//! The table is bounded: when more than `capacity` clients are remembered, the one whose last
//! request is oldest (by log index, so every replica evicts the same one) is forgotten.

use std::collections::{BTreeMap, HashMap};

use rkyv::{Archive, Deserialize, Serialize, rancor};

/// What to do with a command, according to the session table.
#[derive(Debug, PartialEq, Eq)]
pub enum Dedup<'a> {
    /// A new request: apply it and [`ClientSessions::record`] its response.
    Fresh,
    /// The latest request of this client, applied before: answer with its first response.
    Duplicate(&'a [u8]),
    /// Older than the latest request of this client: its response is gone; do not apply.
    Stale,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Session {
    seq: u64,
    last_index: u64,
    response: Vec<u8>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Encoded {
    capacity: u64,
    sessions: Vec<(u64, Session)>,
}

/// The per-client table of the last applied request and its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSessions {
    capacity: usize,
    sessions: HashMap<u64, Session>,
    /// `(last_index, client_id)` of every session, for deterministic eviction of the oldest.
    by_age: BTreeMap<(u64, u64), ()>,
}

/// The encoded table could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("invalid client session table: {0}")]
pub struct DecodeError(String);

impl ClientSessions {
    /// An empty table remembering at most `capacity` clients (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            sessions: HashMap::new(),
            by_age: BTreeMap::new(),
        }
    }

    /// How many clients are remembered.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Classifies a command from `client_id` with sequence number `seq`. Client id 0 is
    /// anonymous and always fresh.
    pub fn check(&self, client_id: u64, seq: u64) -> Dedup<'_> {
        if client_id == 0 {
            return Dedup::Fresh;
        }
        match self.sessions.get(&client_id) {
            None => Dedup::Fresh,
            Some(session) if seq > session.seq => Dedup::Fresh,
            Some(session) if seq == session.seq => Dedup::Duplicate(&session.response),
            Some(_) => Dedup::Stale,
        }
    }

    /// Records the response of a fresh command applied at log `index`.
    pub fn record(&mut self, client_id: u64, seq: u64, index: u64, response: &[u8]) {
        if client_id == 0 {
            return;
        }
        if let Some(old) = self.sessions.get(&client_id) {
            self.by_age.remove(&(old.last_index, client_id));
        }
        self.sessions.insert(
            client_id,
            Session {
                seq,
                last_index: index,
                response: response.to_vec(),
            },
        );
        self.by_age.insert((index, client_id), ());
        while self.sessions.len() > self.capacity {
            let Some(((_, oldest), ())) = self.by_age.pop_first() else {
                break;
            };
            self.sessions.remove(&oldest);
        }
    }

    /// Forgets a client (for example when its account is deleted).
    pub fn forget(&mut self, client_id: u64) {
        if let Some(old) = self.sessions.remove(&client_id) {
            self.by_age.remove(&(old.last_index, client_id));
        }
    }

    /// The table as bytes, for the state machine's atomic batch and its snapshots.
    pub fn encode(&self) -> Vec<u8> {
        let mut sessions: Vec<(u64, Session)> = self
            .sessions
            .iter()
            .map(|(id, session)| (*id, session.clone()))
            .collect();
        sessions.sort_by_key(|(id, _)| *id);
        let encoded = Encoded {
            capacity: self.capacity as u64,
            sessions,
        };
        match rkyv::to_bytes::<rancor::Error>(&encoded) {
            Ok(bytes) => bytes.into_vec(),
            // Serializing plain integers and byte vectors into memory cannot fail.
            Err(_) => Vec::new(),
        }
    }

    /// Decodes a table written by [`ClientSessions::encode`], validating every byte.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        let encoded = rkyv::from_bytes::<Encoded, rancor::Error>(&aligned)
            .map_err(|e| DecodeError(e.to_string()))?;
        let mut table = Self::new(usize::try_from(encoded.capacity).unwrap_or(usize::MAX));
        for (id, session) in encoded.sessions {
            table.by_age.insert((session.last_index, id), ());
            table.sessions.insert(id, session);
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retried_request_returns_first_response() {
        let mut table = ClientSessions::new(10);
        assert_eq!(table.check(7, 1), Dedup::Fresh);
        table.record(7, 1, 100, b"first");
        assert_eq!(table.check(7, 1), Dedup::Duplicate(b"first"));
        assert_eq!(table.check(7, 2), Dedup::Fresh);
        table.record(7, 2, 101, b"second");
        assert_eq!(table.check(7, 1), Dedup::Stale);
        assert_eq!(table.check(7, 2), Dedup::Duplicate(b"second"));
    }

    #[test]
    fn anonymous_client_is_never_deduplicated() {
        let mut table = ClientSessions::new(10);
        table.record(0, 1, 5, b"x");
        assert_eq!(table.check(0, 1), Dedup::Fresh);
        assert!(table.is_empty());
    }

    #[test]
    fn eviction_drops_the_client_with_the_oldest_request() {
        let mut table = ClientSessions::new(2);
        table.record(1, 1, 10, b"a");
        table.record(2, 1, 11, b"b");
        table.record(1, 2, 12, b"c");
        table.record(3, 1, 13, b"d");
        assert_eq!(table.len(), 2);
        assert_eq!(table.check(2, 1), Dedup::Fresh, "client 2 was the oldest");
        assert_eq!(table.check(1, 2), Dedup::Duplicate(b"c"));
        assert_eq!(table.check(3, 1), Dedup::Duplicate(b"d"));
    }

    #[test]
    fn encode_decode_round_trip_and_rejects_garbage() {
        let mut table = ClientSessions::new(5);
        table.record(1, 3, 10, b"r1");
        table.record(9, 1, 11, b"r9");
        let decoded = ClientSessions::decode(&table.encode()).unwrap();
        assert_eq!(decoded, table);
        assert!(ClientSessions::decode(&[0xff; 7]).is_err());
    }
}
