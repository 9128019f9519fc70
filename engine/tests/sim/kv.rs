//! The simulation's state machine: a key-value map with compare-and-set, deduplicated through
//! `ClientSessions`, snapshotted into bytes.

use std::collections::BTreeMap;

use shoal_engine::{ClientSessions, Dedup};

/// A client operation, as the payload of a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    Write {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    if input.len() < 4 {
        return None;
    }
    let len = u32::from_le_bytes(input[..4].try_into().ok()?) as usize;
    let rest = &input[4..];
    if rest.len() < len {
        return None;
    }
    let (head, tail) = rest.split_at(len);
    *input = tail;
    Some(head)
}

fn take_u64(input: &mut &[u8]) -> Option<u64> {
    if input.len() < 8 {
        return None;
    }
    let value = u64::from_le_bytes(input[..8].try_into().ok()?);
    *input = &input[8..];
    Some(value)
}

impl KvOp {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            KvOp::Write { key, value } => {
                out.push(1);
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            KvOp::Cas { key, expected, new } => {
                out.push(2);
                put_bytes(&mut out, key);
                match expected {
                    Some(e) => {
                        out.push(1);
                        put_bytes(&mut out, e);
                    }
                    None => out.push(0),
                }
                put_bytes(&mut out, new);
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&tag, mut rest) = bytes.split_first()?;
        match tag {
            1 => {
                let key = take_bytes(&mut rest)?.to_vec();
                let value = take_bytes(&mut rest)?.to_vec();
                Some(KvOp::Write { key, value })
            }
            2 => {
                let key = take_bytes(&mut rest)?.to_vec();
                let (&has, mut rest2) = rest.split_first()?;
                let expected = if has == 1 {
                    Some(take_bytes(&mut rest2)?.to_vec())
                } else {
                    None
                };
                let new = take_bytes(&mut rest2)?.to_vec();
                Some(KvOp::Cas { key, expected, new })
            }
            _ => None,
        }
    }
}

/// The replicated map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
    pub sessions: ClientSessions,
    pub applied: u64,
}

impl Default for Kv {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            sessions: ClientSessions::new(1000),
            applied: 0,
        }
    }
}

impl Kv {
    /// Applies a normal entry's proposal; returns the response.
    pub fn apply(&mut self, index: u64, client_id: u64, seq: u64, payload: &[u8]) -> Vec<u8> {
        assert!(index > self.applied, "apply {index} after {}", self.applied);
        self.applied = index;
        match self.sessions.check(client_id, seq) {
            Dedup::Duplicate(first) => return first.to_vec(),
            Dedup::Stale => return b"stale".to_vec(),
            Dedup::Fresh => {}
        }
        let response = match KvOp::decode(payload) {
            Some(KvOp::Write { key, value }) => {
                self.map.insert(key, value);
                vec![1]
            }
            Some(KvOp::Cas { key, expected, new }) => {
                if self.map.get(&key) == expected.as_ref() {
                    self.map.insert(key, new);
                    vec![1]
                } else {
                    vec![0]
                }
            }
            None => b"bad".to_vec(),
        };
        self.sessions.record(client_id, seq, index, &response);
        response
    }

    pub fn skip(&mut self, index: u64) {
        assert!(index > self.applied);
        self.applied = index;
    }

    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.applied.to_le_bytes());
        out.extend_from_slice(&(self.map.len() as u64).to_le_bytes());
        for (k, v) in &self.map {
            put_bytes(&mut out, k);
            put_bytes(&mut out, v);
        }
        put_bytes(&mut out, &self.sessions.encode());
        out
    }

    pub fn restore(bytes: &[u8]) -> Option<Self> {
        let mut input = bytes;
        let applied = take_u64(&mut input)?;
        let count = take_u64(&mut input)?;
        let mut map = BTreeMap::new();
        for _ in 0..count {
            let k = take_bytes(&mut input)?.to_vec();
            let v = take_bytes(&mut input)?.to_vec();
            map.insert(k, v);
        }
        let sessions = ClientSessions::decode(take_bytes(&mut input)?).ok()?;
        Some(Self {
            map,
            sessions,
            applied,
        })
    }
}
