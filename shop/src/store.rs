//! The fjall side: one database per generation directory, three keyspaces, and [`Txn`], the
//! read-your-writes overlay an `apply` call accumulates before committing it as one batch.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::codec;
use crate::error::StoreError;

/// The keyspaces, in snapshot order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Ks {
    /// Applied index, id counters, client sessions.
    Meta = 0,
    /// Accounts, catalogue, carts, orders, sales, chat.
    Data = 1,
    /// The plain kv namespace, keys as the user gave them.
    Kv = 2,
}

impl Ks {
    pub(crate) const ALL: [Ks; 3] = [Ks::Meta, Ks::Data, Ks::Kv];

    pub(crate) fn from_u8(value: u8) -> Option<Ks> {
        match value {
            0 => Some(Ks::Meta),
            1 => Some(Ks::Data),
            2 => Some(Ks::Kv),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ks::Meta => "meta",
            Ks::Data => "data",
            Ks::Kv => "kv",
        }
    }
}

/// Largest memtable of a keyspace. fjall's default (64 MiB) makes every insert a deep,
/// cache-missing skiplist search; that search was most of the apply thread's time under load.
/// fjall records a keyspace's options when it creates it, so a state directory made before
/// this setting keeps 64 MiB until its next generation (a restored snapshot).
const MEMTABLE_BYTES: u64 = 4 * 1024 * 1024;

/// One generation of the state: a fjall database in its own directory.
pub(crate) struct Store {
    pub(crate) db: Database,
    meta: Keyspace,
    data: Keyspace,
    kv: Keyspace,
    pub(crate) dir: PathBuf,
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = Database::builder(dir).open()?;
        let options = || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
        let meta = db.keyspace(Ks::Meta.name(), options)?;
        let data = db.keyspace(Ks::Data.name(), options)?;
        let kv = db.keyspace(Ks::Kv.name(), options)?;
        Ok(Store {
            db,
            meta,
            data,
            kv,
            dir: dir.to_path_buf(),
        })
    }

    pub(crate) fn keyspace(&self, ks: Ks) -> &Keyspace {
        match ks {
            Ks::Meta => &self.meta,
            Ks::Data => &self.data,
            Ks::Kv => &self.kv,
        }
    }

    /// Writes `writes` in one atomic batch, flushed to the OS (not fsynced: see the crate docs).
    pub(crate) fn commit(
        &self,
        writes: impl IntoIterator<Item = ((Ks, Vec<u8>), Option<Vec<u8>>)>,
        durability: PersistMode,
    ) -> Result<(), StoreError> {
        let mut batch = self.db.batch().durability(Some(durability));
        for ((ks, key), value) in writes {
            match value {
                Some(value) => batch.insert(self.keyspace(ks), key, value),
                None => batch.remove(self.keyspace(ks), key),
            }
        }
        batch.commit()?;
        Ok(())
    }

    /// Forces everything committed so far to disk.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

type Overlay = BTreeMap<(Ks, Vec<u8>), Option<Vec<u8>>>;

/// A key and its value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// Reads through to the store, with the writes of the current `apply` call (`batch`) and of
/// the current command (`pending`) on top. A refused command's writes are dropped with
/// [`Txn::abort_command`], so every command is all-or-nothing inside the batch.
pub(crate) struct Txn<'s> {
    store: &'s Store,
    batch: Overlay,
    pending: Overlay,
}

impl<'s> Txn<'s> {
    pub(crate) fn new(store: &'s Store) -> Self {
        Txn {
            store,
            batch: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    pub(crate) fn get(&self, ks: Ks, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let probe = (ks, key.to_vec());
        if let Some(value) = self.pending.get(&probe).or_else(|| self.batch.get(&probe)) {
            return Ok(value.clone());
        }
        Ok(self.store.keyspace(ks).get(key)?.map(|v| v.to_vec()))
    }

    /// Reads and decodes an rkyv record.
    pub(crate) fn get_rec<T>(&self, ks: Ks, key: &[u8]) -> Result<Option<T>, StoreError>
    where
        T: rkyv::Archive,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        match self.get(ks, key)? {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes).map(Some).map_err(|e| {
                StoreError::corrupt(format!("record {} in {}: {e}", show_key(key), ks.name()))
            }),
        }
    }

    pub(crate) fn put(&mut self, ks: Ks, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert((ks, key), Some(value));
    }

    /// Encodes and writes an rkyv record.
    pub(crate) fn put_rec<T>(&mut self, ks: Ks, key: Vec<u8>, value: &T)
    where
        T: for<'a> rkyv::Serialize<
                rkyv::api::high::HighSerializer<
                    rkyv::util::AlignedVec,
                    rkyv::ser::allocator::ArenaHandle<'a>,
                    rkyv::rancor::Error,
                >,
            >,
    {
        self.put(ks, key, codec::encode(value));
    }

    pub(crate) fn delete(&mut self, ks: Ks, key: Vec<u8>) {
        self.pending.insert((ks, key), None);
    }

    /// Keys with `prefix`, strictly after `after` (a full key) if given, in key order, at most
    /// `limit` of them, with this transaction's writes applied.
    pub(crate) fn scan(
        &self,
        ks: Ks,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let lower = match after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let in_range = |key: &[u8]| {
            key.starts_with(prefix)
                && match &lower {
                    Bound::Excluded(a) => key > a.as_slice(),
                    Bound::Included(a) => key >= a.as_slice(),
                    Bound::Unbounded => true,
                }
        };
        // Overlay entries in range, pending over batch.
        let mut overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for map in [&self.batch, &self.pending] {
            for ((k_ks, key), value) in map.range((ks, prefix.to_vec())..) {
                if *k_ks != ks || !key.starts_with(prefix) {
                    break;
                }
                if in_range(key) {
                    overlay.insert(key.clone(), value.clone());
                }
            }
        }
        let mut out = Vec::new();
        let mut db_iter = self
            .store
            .keyspace(ks)
            .range::<Vec<u8>, _>((lower.clone(), Bound::Unbounded));
        let mut next_db = || -> Result<Option<Entry>, StoreError> {
            match db_iter.next() {
                None => Ok(None),
                Some(guard) => {
                    let (key, value) = guard.into_inner()?;
                    if key.starts_with(prefix) {
                        Ok(Some((key.to_vec(), value.to_vec())))
                    } else {
                        Ok(None)
                    }
                }
            }
        };
        let mut db_head = next_db()?;
        let mut overlay_iter = overlay.into_iter().peekable();
        while out.len() < limit {
            let take_overlay = match (&db_head, overlay_iter.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((db_key, _)), Some((ov_key, _))) => ov_key <= db_key,
            };
            if take_overlay {
                let Some((key, value)) = overlay_iter.next() else {
                    break;
                };
                if db_head.as_ref().is_some_and(|(db_key, _)| *db_key == key) {
                    db_head = next_db()?;
                }
                if let Some(value) = value {
                    out.push((key, value));
                }
            } else if let Some(entry) = db_head.take() {
                out.push(entry);
                db_head = next_db()?;
            }
        }
        Ok(out)
    }

    /// Keeps the current command's writes.
    pub(crate) fn commit_command(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.batch.extend(pending);
    }

    /// Drops the current command's writes.
    pub(crate) fn abort_command(&mut self) {
        self.pending.clear();
    }

    /// The writes of every kept command, for one atomic batch.
    pub(crate) fn into_writes(mut self) -> Overlay {
        self.abort_command();
        self.batch
    }
}

/// A key for messages: printable bytes as text, others as hex.
pub(crate) fn show_key(key: &[u8]) -> String {
    key.iter()
        .take(64)
        .map(|&b| {
            if b.is_ascii_graphic() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}
