//! The exactly-once table, persisted one client per key.
//!
//! [`ClientSessions`] decides (fresh, duplicate, stale) in memory. Its whole-table encoding
//! costs O(clients) per write, too much to put in every apply batch when every CLI
//! invocation is a new client, so each client's latest request is stored under its own key
//! (`meta/client/<id>`) in the batch that applied it, and the table is rebuilt from those
//! keys at open and after a restore. Eviction of the oldest client (by log index, the same on
//! every replica) is done here, one below the in-memory table's own capacity, so the two
//! never disagree.

use std::collections::{BTreeSet, HashMap};

use rkyv::{Archive, Deserialize, Serialize};
use shoal_engine::{ClientSessions, Dedup};

use crate::codec;
use crate::error::StoreError;
use crate::store::{Ks, Txn};

/// Key prefix of client records in the meta keyspace.
const CLIENT_PREFIX: &[u8] = b"client/";

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct ClientRec {
    seq: u64,
    last_index: u64,
    response: Vec<u8>,
}

fn client_key(client_id: u64) -> Vec<u8> {
    let mut key = CLIENT_PREFIX.to_vec();
    key.extend_from_slice(&client_id.to_be_bytes());
    key
}

/// The persisted exactly-once table.
pub(crate) struct ClientTable {
    sessions: ClientSessions,
    capacity: usize,
    last_index: HashMap<u64, u64>,
    by_age: BTreeSet<(u64, u64)>,
}

impl ClientTable {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        ClientTable {
            sessions: ClientSessions::new(capacity.saturating_add(1)),
            capacity,
            last_index: HashMap::new(),
            by_age: BTreeSet::new(),
        }
    }

    /// Rebuilds the table from the client records in the store.
    pub(crate) fn load(txn: &Txn<'_>, capacity: usize) -> Result<Self, StoreError> {
        let mut records = Vec::new();
        for (key, value) in txn.scan(Ks::Meta, CLIENT_PREFIX, None, usize::MAX)? {
            let client_id = crate::keys::read_u64(&key, CLIENT_PREFIX.len())
                .ok_or_else(|| StoreError::corrupt("client record key too short"))?;
            let record: ClientRec = codec::decode(&value)
                .map_err(|e| StoreError::corrupt(format!("client record {client_id}: {e}")))?;
            records.push((record.last_index, client_id, record));
        }
        records.sort_by_key(|(index, id, _)| (*index, *id));
        let mut table = ClientTable::new(capacity);
        for (index, client_id, record) in records {
            table
                .sessions
                .record(client_id, record.seq, index, &record.response);
            table.last_index.insert(client_id, index);
            table.by_age.insert((index, client_id));
        }
        Ok(table)
    }

    pub(crate) fn check(&self, client_id: u64, seq: u64) -> Dedup<'_> {
        self.sessions.check(client_id, seq)
    }

    /// Records the response of a fresh command, in memory and as writes in `txn` (kept:
    /// the caller commits them with the batch).
    pub(crate) fn record(
        &mut self,
        txn: &mut Txn<'_>,
        client_id: u64,
        seq: u64,
        index: u64,
        response: &[u8],
    ) {
        if client_id == 0 {
            return;
        }
        if let Some(old) = self.last_index.insert(client_id, index) {
            self.by_age.remove(&(old, client_id));
        }
        self.by_age.insert((index, client_id));
        self.sessions.record(client_id, seq, index, response);
        txn.put_rec(
            Ks::Meta,
            client_key(client_id),
            &ClientRec {
                seq,
                last_index: index,
                response: response.to_vec(),
            },
        );
        while self.last_index.len() > self.capacity {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.last_index.remove(&oldest);
            self.sessions.forget(oldest);
            txn.delete(Ks::Meta, client_key(oldest));
        }
        txn.commit_command();
    }

    /// How many clients are remembered.
    pub(crate) fn len(&self) -> usize {
        self.last_index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn persisted_table_round_trips_and_evicts_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut txn = Txn::new(&store);
        let mut table = ClientTable::new(2);
        table.record(&mut txn, 1, 1, 10, b"a");
        table.record(&mut txn, 2, 1, 11, b"b");
        table.record(&mut txn, 1, 2, 12, b"c");
        table.record(&mut txn, 3, 1, 13, b"d");
        assert_eq!(table.len(), 2);
        assert_eq!(table.check(2, 1), Dedup::Fresh, "client 2 was the oldest");
        store
            .commit(txn.into_writes(), fjall::PersistMode::Buffer)
            .unwrap();
        let loaded = ClientTable::load(&Txn::new(&store), 2).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded.check(1, 2), Dedup::Duplicate(b"c"));
        assert_eq!(loaded.check(3, 1), Dedup::Duplicate(b"d"));
        assert_eq!(loaded.check(2, 1), Dedup::Fresh);
        assert_eq!(loaded.check(1, 1), Dedup::Stale);
    }
}
