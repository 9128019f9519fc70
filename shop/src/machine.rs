//! [`Shop`]: the [`StateMachine`] the node runs, its on-disk layout, snapshots and restore.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjall::{PersistMode, Readable};
use rkyv::{Archive, Deserialize, Serialize};
use shoal_engine::{Command, Dedup, SnapshotImage, StateMachine};

use crate::ShopError;
use crate::clients::ClientTable;
use crate::codec;
use crate::error::StoreError;
use crate::logic::{self, META_STATE_KEY, MetaRec};
use crate::store::{Ks, Store, Txn};
use crate::types::{Reply, encode_owned_reply};

/// When an applied batch reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Each batch is written to the OS (it survives a crash of the process, not of the
    /// machine); the disk is synced by [`Shop::sync`], before every snapshot and at drop.
    /// After a machine crash the state is that of an earlier batch, intact, and its applied
    /// index says so: the driver re-applies the committed entries after it from the Raft WAL,
    /// which is the durable source. Snapshots sync first, so the WAL never drops entries the
    /// state machine could still need.
    Buffered,
    /// Each batch is fsynced before `apply` returns (slower; for embedders without a log).
    SyncEachApply,
}

/// Options of [`Shop::open_with`].
#[derive(Debug, Clone)]
pub struct ShopConfig {
    /// How many clients the exactly-once table remembers. **Must be the same on every
    /// replica**: which client is forgotten decides whether a late retry is answered from the
    /// table or applied again, so replicas with different capacities can diverge.
    pub client_sessions_capacity: usize,
    /// When applied batches reach the disk.
    pub durability: Durability,
}

impl Default for ShopConfig {
    fn default() -> Self {
        ShopConfig {
            client_sessions_capacity: 20_000,
            durability: Durability::Buffered,
        }
    }
}

const CURRENT_FILE: &str = "CURRENT";
const GENERATION_PREFIX: &str = "state-";

/// The shop and chat state machine, its state in fjall under one directory:
///
/// ```text
/// DIR/CURRENT          names the live generation, e.g. "state-000001"
/// DIR/state-000001/    the fjall database (keyspaces meta, data, kv)
/// ```
///
/// A restore builds the next generation beside the live one and switches `CURRENT`
/// atomically (write, fsync, rename, fsync dir), so a crash during a restore leaves the
/// old state intact.
pub struct Shop {
    root: PathBuf,
    generation: u64,
    current: Arc<Store>,
    /// Earlier generations still read by a snapshot being written; removed when free.
    retired: Vec<Arc<Store>>,
    meta: MetaRec,
    sessions: ClientTable,
    config: ShopConfig,
    /// Set when a batch failed to commit: memory and disk may disagree, refuse everything.
    poisoned: bool,
}

impl std::fmt::Debug for Shop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shop")
            .field("root", &self.root)
            .field("generation", &self.generation)
            .field("applied_index", &self.meta.applied_index)
            .finish_non_exhaustive()
    }
}

fn generation_dir(root: &Path, generation: u64) -> PathBuf {
    root.join(format!("{GENERATION_PREFIX}{generation:06}"))
}

fn parse_generation(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(GENERATION_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io("sync directory", dir, e))
}

/// Points `CURRENT` at `generation`, durably.
fn write_current(root: &Path, generation: u64) -> Result<(), StoreError> {
    let tmp = root.join("CURRENT.tmp");
    let name = format!("{GENERATION_PREFIX}{generation:06}\n");
    let mut file = std::fs::File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
    file.write_all(name.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io("write", &tmp, e))?;
    let current = root.join(CURRENT_FILE);
    std::fs::rename(&tmp, &current).map_err(|e| StoreError::io("rename", &current, e))?;
    sync_dir(root)
}

fn load_state(store: &Store, capacity: usize) -> Result<(MetaRec, ClientTable), StoreError> {
    let txn = Txn::new(store);
    let meta = txn
        .get_rec::<MetaRec>(Ks::Meta, META_STATE_KEY)?
        .unwrap_or_else(MetaRec::fresh);
    let sessions = ClientTable::load(&txn, capacity)?;
    Ok((meta, sessions))
}

impl Shop {
    /// Opens (or creates) the state machine in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Shop, StoreError> {
        Shop::open_with(dir, ShopConfig::default())
    }

    /// Opens (or creates) the state machine in `dir`.
    pub fn open_with(dir: impl AsRef<Path>, config: ShopConfig) -> Result<Shop, StoreError> {
        let root = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(|e| StoreError::io("create", &root, e))?;
        let current_path = root.join(CURRENT_FILE);
        let generation = match std::fs::read_to_string(&current_path) {
            Ok(text) => parse_generation(text.trim()).ok_or_else(|| {
                StoreError::corrupt(format!("{} names no generation", current_path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_current(&root, 1)?;
                1
            }
            Err(e) => return Err(StoreError::io("read", &current_path, e)),
        };
        // Leftovers of an interrupted restore or of retired generations.
        let entries = std::fs::read_dir(&root).map_err(|e| StoreError::io("list", &root, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if parse_generation(&name).is_some_and(|g| g != generation) {
                let path = entry.path();
                tracing::info!(path = %path.display(), "removing stale shop generation");
                if let Err(error) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(path = %path.display(), %error, "could not remove stale generation");
                }
            }
        }
        let store = Store::open(&generation_dir(&root, generation))?;
        let (meta, sessions) = load_state(&store, config.client_sessions_capacity)?;
        tracing::info!(dir = %root.display(), generation, applied_index = meta.applied_index, "shop state opened");
        Ok(Shop {
            root,
            generation,
            current: Arc::new(store),
            retired: Vec::new(),
            meta,
            sessions,
            config,
            poisoned: false,
        })
    }

    /// The directory given to [`Shop::open`].
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Term of the last applied entry.
    pub fn applied_term(&self) -> u64 {
        self.meta.applied_term
    }

    /// How many clients the exactly-once table remembers.
    pub fn remembered_clients(&self) -> usize {
        self.sessions.len()
    }

    /// Forces every applied batch to disk (fsync).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.current.sync()
    }

    /// Answers a query already decoded (for in-process callers and tests).
    pub fn query_typed(&self, query: &crate::Query) -> Result<Reply, StoreError> {
        logic::answer_query(&Txn::new(&self.current), &query.encode())
    }

    fn check_poisoned(&self) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::corrupt(
                "an earlier batch failed to commit; reopen the state machine",
            ));
        }
        Ok(())
    }

    fn sweep_retired(&mut self) {
        let mut keep = Vec::new();
        for store in self.retired.drain(..) {
            match Arc::try_unwrap(store) {
                Ok(store) => {
                    let dir = store.dir.clone();
                    drop(store);
                    if let Err(error) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!(dir = %dir.display(), %error, "could not remove retired generation");
                    }
                }
                Err(still_used) => keep.push(still_used),
            }
        }
        self.retired = keep;
    }

    fn restore_into(
        &self,
        store: &Store,
        index: u64,
        input: &mut dyn Read,
    ) -> Result<(MetaRec, ClientTable), StoreError> {
        let mut reader = FrameReader::new(input);
        let header = reader.read_header()?;
        if header != SNAPSHOT_MAGIC {
            return Err(StoreError::Snapshot {
                offset: 0,
                reason: "not a shop snapshot (bad magic or version)".into(),
            });
        }
        let begin = reader.next_record()?;
        let (begin_index, _term) = match begin {
            Some(SnapRecord::Begin {
                applied_index,
                applied_term,
            }) => (applied_index, applied_term),
            _ => {
                return Err(StoreError::Snapshot {
                    offset: reader.offset,
                    reason: "missing begin record".into(),
                });
            }
        };
        if begin_index != index {
            return Err(StoreError::Snapshot {
                offset: reader.offset,
                reason: format!("image is at index {begin_index}, expected {index}"),
            });
        }
        let mut writes = Vec::new();
        let mut pending_bytes = 0usize;
        let mut count: u64 = 0;
        loop {
            let offset = reader.offset;
            match reader.next_record()? {
                Some(SnapRecord::Entry {
                    keyspace,
                    key,
                    value,
                }) => {
                    let ks = Ks::from_u8(keyspace).ok_or_else(|| StoreError::Snapshot {
                        offset,
                        reason: format!("unknown keyspace {keyspace}"),
                    })?;
                    pending_bytes += key.len() + value.len();
                    writes.push(((ks, key), Some(value)));
                    count += 1;
                    if pending_bytes >= 4 * 1024 * 1024 {
                        store.commit(std::mem::take(&mut writes), PersistMode::Buffer)?;
                        pending_bytes = 0;
                    }
                }
                Some(SnapRecord::End {
                    entries,
                    applied_index,
                }) => {
                    if entries != count || applied_index != index {
                        return Err(StoreError::Snapshot {
                            offset,
                            reason: format!(
                                "end record says {entries} entries at index {applied_index}, read {count} at {index}"
                            ),
                        });
                    }
                    break;
                }
                Some(SnapRecord::Begin { .. }) => {
                    return Err(StoreError::Snapshot {
                        offset,
                        reason: "second begin record".into(),
                    });
                }
                None => {
                    return Err(StoreError::Snapshot {
                        offset,
                        reason: "stream ended before the end record".into(),
                    });
                }
            }
        }
        reader.expect_eof()?;
        store.commit(writes, PersistMode::Buffer)?;
        store.sync()?;
        let (meta, sessions) = load_state(store, self.config.client_sessions_capacity)?;
        if meta.applied_index != index {
            return Err(StoreError::Snapshot {
                offset: reader.offset,
                reason: format!(
                    "image's state is at index {}, expected {index}",
                    meta.applied_index
                ),
            });
        }
        Ok((meta, sessions))
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        if let Err(error) = self.current.sync() {
            tracing::warn!(%error, "could not sync shop state at close");
        }
    }
}

impl StateMachine for Shop {
    type Error = StoreError;

    fn applied_index(&self) -> u64 {
        self.meta.applied_index
    }

    fn apply(&mut self, commands: &[Command<'_>]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.check_poisoned()?;
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut meta = self.meta;
        let mut responses = Vec::with_capacity(commands.len());
        let store = Arc::clone(&self.current);
        let mut txn = Txn::new(&store);
        for command in commands {
            if command.index <= meta.applied_index {
                tracing::warn!(
                    index = command.index,
                    applied = meta.applied_index,
                    "command already applied, skipped"
                );
                responses.push(encode_owned_reply(Err(ShopError::Conflict {
                    message: format!("entry {} was already applied", command.index),
                })));
                continue;
            }
            let response = match self.sessions.check(command.client_id, command.seq) {
                Dedup::Duplicate(first) => first.to_vec(),
                Dedup::Stale => encode_owned_reply(Err(ShopError::Conflict {
                    message: format!(
                        "request {} of client {} is older than its latest; not applied",
                        command.seq, command.client_id
                    ),
                })),
                Dedup::Fresh => {
                    let reply = match logic::apply_payload(&mut txn, &mut meta, command.payload) {
                        Ok(reply) => reply,
                        Err(error) => {
                            // The session table may already hold this batch's records.
                            self.poisoned = true;
                            tracing::error!(%error, index = command.index, "shop apply failed");
                            return Err(error);
                        }
                    };
                    let bytes = encode_owned_reply(reply);
                    // Later commands of this batch must see the record (a retry in the
                    // same batch is a duplicate).
                    self.sessions.record(
                        &mut txn,
                        command.client_id,
                        command.seq,
                        command.index,
                        &bytes,
                    );
                    bytes
                }
            };
            meta.applied_index = command.index;
            meta.applied_term = command.term;
            responses.push(response);
        }
        let mut writes = txn.into_writes();
        writes.insert(
            (Ks::Meta, META_STATE_KEY.to_vec()),
            Some(codec::encode(&meta)),
        );
        let durability = match self.config.durability {
            Durability::Buffered => PersistMode::Buffer,
            Durability::SyncEachApply => PersistMode::SyncAll,
        };
        if let Err(error) = store.commit(writes, durability) {
            self.poisoned = true;
            tracing::error!(%error, "shop batch failed to commit");
            return Err(error);
        }
        self.meta = meta;
        Ok(responses)
    }

    fn query(&self, query: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.check_poisoned()?;
        let reply = logic::answer_query(&Txn::new(&self.current), query)?;
        Ok(encode_owned_reply(reply))
    }

    fn snapshot(&mut self) -> Result<Box<dyn SnapshotImage>, StoreError> {
        self.check_poisoned()?;
        self.sweep_retired();
        // Durable first: once the snapshot exists the WAL may drop what precedes it.
        self.current.sync()?;
        let snapshot = self.current.db.snapshot();
        Ok(Box::new(ShopImage {
            store: Arc::clone(&self.current),
            snapshot,
            applied_index: self.meta.applied_index,
            applied_term: self.meta.applied_term,
        }))
    }

    fn restore(&mut self, index: u64, input: &mut dyn Read) -> Result<(), StoreError> {
        self.sweep_retired();
        let generation = self.generation + 1;
        let dir = generation_dir(&self.root, generation);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| StoreError::io("remove", &dir, e))?;
        }
        let store = Store::open(&dir)?;
        let loaded = self.restore_into(&store, index, input);
        let (meta, sessions) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                drop(store);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove refused restore");
                }
                tracing::warn!(%error, index, "snapshot refused");
                return Err(error);
            }
        };
        write_current(&self.root, generation)?;
        let old = std::mem::replace(&mut self.current, Arc::new(store));
        self.retired.push(old);
        self.generation = generation;
        self.meta = meta;
        self.sessions = sessions;
        self.poisoned = false;
        self.sweep_retired();
        tracing::info!(index, generation, "shop state restored from snapshot");
        Ok(())
    }
}

/// First bytes of a snapshot stream: magic and format version 1.
const SNAPSHOT_MAGIC: [u8; 8] = *b"SHOPSNP1";
/// Largest frame accepted.
const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// One record of the snapshot stream. Frames are `len: u32 LE, crc32: u32 LE, payload`, the
/// payload an rkyv `SnapRecord`: one `Begin`, every key of every keyspace as an `Entry`, one
/// `End` with the count.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
enum SnapRecord {
    Begin {
        applied_index: u64,
        applied_term: u64,
    },
    Entry {
        keyspace: u8,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    End {
        entries: u64,
        applied_index: u64,
    },
}

fn write_frame(out: &mut dyn Write, record: &SnapRecord) -> std::io::Result<()> {
    let payload = codec::encode(record);
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME_BYTES)
        .ok_or_else(|| std::io::Error::other("snapshot record too large"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&crc32fast::hash(&payload).to_le_bytes())?;
    out.write_all(&payload)
}

struct ShopImage {
    store: Arc<Store>,
    snapshot: fjall::Snapshot,
    applied_index: u64,
    applied_term: u64,
}

impl SnapshotImage for ShopImage {
    fn applied_index(&self) -> u64 {
        self.applied_index
    }

    fn write_to(self: Box<Self>, out: &mut dyn Write) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(out);
        out.write_all(&SNAPSHOT_MAGIC)?;
        write_frame(
            &mut out,
            &SnapRecord::Begin {
                applied_index: self.applied_index,
                applied_term: self.applied_term,
            },
        )?;
        let mut entries: u64 = 0;
        for ks in Ks::ALL {
            for guard in self.snapshot.iter(self.store.keyspace(ks)) {
                let (key, value) = guard.into_inner().map_err(std::io::Error::other)?;
                write_frame(
                    &mut out,
                    &SnapRecord::Entry {
                        keyspace: ks as u8,
                        key: key.to_vec(),
                        value: value.to_vec(),
                    },
                )?;
                entries += 1;
            }
        }
        write_frame(
            &mut out,
            &SnapRecord::End {
                entries,
                applied_index: self.applied_index,
            },
        )?;
        out.flush()
    }
}

struct FrameReader<'a> {
    input: &'a mut dyn Read,
    offset: u64,
}

impl<'a> FrameReader<'a> {
    fn new(input: &'a mut dyn Read) -> Self {
        FrameReader { input, offset: 0 }
    }

    fn fault(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Snapshot {
            offset: self.offset,
            reason: reason.into(),
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean end before the first byte.
    fn read_exact_or_eof(&mut self, buf: &mut [u8]) -> Result<bool, StoreError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(self.fault("truncated")),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fault(format!("read failed: {e}"))),
            }
        }
        self.offset += buf.len() as u64;
        Ok(true)
    }

    fn read_header(&mut self) -> Result<[u8; 8], StoreError> {
        let mut header = [0u8; 8];
        if !self.read_exact_or_eof(&mut header)? {
            return Err(self.fault("empty stream"));
        }
        Ok(header)
    }

    fn next_record(&mut self) -> Result<Option<SnapRecord>, StoreError> {
        let start = self.offset;
        let mut head = [0u8; 8];
        if !self.read_exact_or_eof(&mut head)? {
            return Ok(None);
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len > MAX_FRAME_BYTES {
            return Err(StoreError::Snapshot {
                offset: start,
                reason: format!("frame length {len} out of range"),
            });
        }
        let mut payload = vec![0u8; len];
        if !self.read_exact_or_eof(&mut payload)? {
            return Err(self.fault("truncated frame"));
        }
        if crc32fast::hash(&payload) != crc {
            return Err(StoreError::Snapshot {
                offset: start,
                reason: "checksum mismatch".into(),
            });
        }
        codec::decode::<SnapRecord>(&payload)
            .map(Some)
            .map_err(|e| StoreError::Snapshot {
                offset: start,
                reason: format!("undecodable record: {e}"),
            })
    }

    fn expect_eof(&mut self) -> Result<(), StoreError> {
        let mut byte = [0u8; 1];
        if self.read_exact_or_eof(&mut byte)? {
            return Err(self.fault("bytes after the end record"));
        }
        Ok(())
    }
}
