//! The production store: the core's tables in one redb file.
//!
//! Writes of a batch collect in memory (an overlay over the last committed state) and reach
//! redb at `commit`, in key order, with each table opened once, in one write transaction
//! committed with `Durability::Immediate` (fsync): that is the group commit. Reads look at the
//! overlay first, then at the committed state through read-only tables kept open until the
//! next commit. A write that a later write of the same batch replaces never reaches the disk.
//! After an I/O error redb refuses further use of the handle; the store then reopens the file,
//! which runs redb's crash recovery, and carries on from the last committed state.
//!
//! In the background ([`RedbStore::in_background`]) a commit is split: `begin_commit` seals
//! the overlay and hands it to a writer thread, which writes and fsyncs it while the node goes
//! on; reads see the open overlay, then the sealed one, then the committed state. The writer
//! reports each landing on a channel the driver waits on, and `end_commit` then drops the
//! sealed overlay (or, if the write failed, the open one with it, and reopens the file).

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, TableDefinition};

use crate::core::store::{Began, Store, StoreError, Table, Visit};

fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

/// Maps any redb error; a full device becomes [`StoreError::Full`].
fn map(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    if let redb::Error::Io(io) = &e
        && (io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28))
    {
        return StoreError::Full;
    }
    if let redb::Error::Corrupted(why) = &e {
        return StoreError::Corrupt(why.clone());
    }
    StoreError::Io(e.to_string())
}

type Bytes = Vec<u8>;

/// An uncommitted write.
#[derive(Clone, Debug)]
enum Pending {
    /// The key holds this value; `fresh`: it was not on disk before this batch.
    Put {
        value: Bytes,
        fresh: bool,
    },
    Delete,
}

impl Pending {
    fn value(&self) -> Option<&Bytes> {
        match self {
            Pending::Put { value, .. } => Some(value),
            Pending::Delete => None,
        }
    }
}
type Reader = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// One batch of writes, per table (indexed by `Table as usize`).
type Writes = Vec<BTreeMap<Bytes, Pending>>;

/// Where a store in the background reports each commit's landing.
pub type Landings = tokio::sync::mpsc::UnboundedReceiver<Result<(), StoreError>>;

/// A batch for the writer thread.
struct Job {
    db: Arc<Database>,
    writes: Arc<Writes>,
}

/// A [`Store`] on a redb database file.
pub struct RedbStore {
    path: PathBuf,
    cache_bytes: usize,
    db: Option<Arc<Database>>,
    /// Writes since the last commit, per table (indexed by `Table as usize`).
    pending: Writes,
    /// The batch the writer thread is making durable (split commits).
    sealed: Option<Arc<Writes>>,
    /// The writer thread and its queue, once [`RedbStore::in_background`].
    writer: Option<(std::sync::mpsc::Sender<Job>, std::thread::JoinHandle<()>)>,
    /// Read-only views of the last committed state, opened on first use.
    readers: BTreeMap<Table, Reader>,
    stats: crate::core::store::StoreStats,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("pending", &self.pending.iter().map(BTreeMap::len).sum::<usize>())
            .finish()
    }
}

impl RedbStore {
    /// Opens (or creates) the store file, with `cache_bytes` of page cache.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<RedbStore, StoreError> {
        let mut s = RedbStore {
            path: path.to_owned(),
            cache_bytes,
            db: None,
            pending: Table::ALL.iter().map(|_| BTreeMap::new()).collect(),
            sealed: None,
            writer: None,
            readers: BTreeMap::new(),
            stats: Default::default(),
        };
        s.reopen()?;
        // Create every table up front so that reads of empty tables succeed.
        let db = s.db()?;
        let txn = db.begin_write().map_err(map)?;
        for t in Table::ALL {
            txn.open_table(def(t)).map_err(map)?;
        }
        txn.commit().map_err(map)?;
        Ok(s)
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        self.readers.clear();
        self.db = None;
        let db =
            Database::builder().set_cache_size(self.cache_bytes).create(&self.path).map_err(map)?;
        self.db = Some(Arc::new(db));
        Ok(())
    }

    fn db(&mut self) -> Result<&Arc<Database>, StoreError> {
        if self.db.is_none() {
            self.reopen()?;
        }
        self.db.as_ref().ok_or_else(|| StoreError::Io("database not open".into()))
    }

    /// Commits from now on are split: each batch is written and synced by a thread of its
    /// own while the node goes on, and lands on the returned channel (hand each landing to
    /// `Node::commit_landed`).
    pub fn in_background(&mut self) -> Result<Landings, StoreError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let (landed, landings) = tokio::sync::mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    let result = write(&job.db, &job.writes);
                    // Let go of the database first: after a failure the store reopens it.
                    drop(job);
                    if landed.send(result).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| StoreError::Io(format!("cannot start the store writer: {e}")))?;
        self.writer = Some((jobs, thread));
        Ok(landings)
    }

    fn reader(&mut self, t: Table) -> Result<&Reader, StoreError> {
        if !self.readers.contains_key(&t) {
            let table = self.db()?.begin_read().map_err(map)?.open_table(def(t)).map_err(map)?;
            self.readers.insert(t, table);
        }
        self.readers.get(&t).ok_or_else(|| StoreError::Io("reader vanished".into()))
    }

    fn committed(&mut self, t: Table, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let r = self.reader(t).and_then(|r| r.get(key).map_err(map));
        match r {
            Ok(v) => Ok(v.map(|v| v.value().to_vec())),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Whether the last committed state has `key`, without copying its value.
    fn committed_exists(&mut self, t: Table, key: &[u8]) -> Result<bool, StoreError> {
        let r = self.reader(t).and_then(|r| r.get(key).map(|v| v.is_some()).map_err(map));
        r.map_err(|e| self.failed(e))
    }

    /// Drops the handle after an I/O error so the next use reopens (and recovers) the file.
    fn failed(&mut self, e: StoreError) -> StoreError {
        if matches!(e, StoreError::Io(_) | StoreError::Full) {
            self.readers.clear();
            self.db = None;
        }
        e
    }

    /// Takes the overlay as one batch, counting it.
    fn take_batch(&mut self) -> Writes {
        let writes: Writes = self.pending.iter_mut().map(std::mem::take).collect();
        self.stats.commits += 1;
        self.stats.rows_written += writes.iter().map(|w| w.len() as u64).sum::<u64>();
        writes
    }

    fn apply(&mut self) -> Result<(), StoreError> {
        let writes = self.take_batch();
        write(self.db()?, &writes)
    }

    /// The newest write of this key not yet committed: the open batch's, else the sealed one's.
    fn uncommitted(&self, table: Table, key: &[u8]) -> Option<&Pending> {
        let t = table as usize;
        self.pending[t].get(key).or_else(|| self.sealed.as_ref().and_then(|s| s[t].get(key)))
    }

    /// Size of the database file in bytes.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

impl Drop for RedbStore {
    /// Waits for a batch in flight to finish (landed or not), so that the file can be opened
    /// again at once in this process.
    fn drop(&mut self) {
        if let Some((jobs, thread)) = self.writer.take() {
            drop(jobs);
            let _ = thread.join();
        }
    }
}

/// Writes one batch in one write transaction, in key order, and syncs it.
fn write(db: &Database, writes: &Writes) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(map)?;
    txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
    for (t, writes) in Table::ALL.iter().zip(writes) {
        if writes.is_empty() {
            continue;
        }
        let mut table = txn.open_table(def(*t)).map_err(map)?;
        for (k, v) in writes {
            match v {
                Pending::Put { value, .. } => {
                    table.insert(k.as_slice(), value.as_slice()).map_err(map)?;
                }
                Pending::Delete => {
                    table.remove(k.as_slice()).map_err(map)?;
                }
            }
        }
    }
    txn.commit().map_err(map)
}

/// Two key-ordered runs of uncommitted writes as one, the newer winning on equal keys.
struct Newest<'a, A: Iterator, B: Iterator> {
    newer: Peekable<A>,
    older: Peekable<B>,
    _keys: std::marker::PhantomData<&'a ()>,
}

type Write<'a> = (&'a Bytes, Option<&'a Bytes>);

impl<'a, A: Iterator<Item = Write<'a>>, B: Iterator<Item = Write<'a>>> Iterator
    for Newest<'a, A, B>
{
    type Item = Write<'a>;

    fn next(&mut self) -> Option<Write<'a>> {
        match (self.newer.peek(), self.older.peek()) {
            (Some(n), Some(o)) if n.0 <= o.0 => {
                if n.0 == o.0 {
                    self.older.next();
                }
                self.newer.next()
            }
            (_, Some(_)) => self.older.next(),
            (Some(_), None) => self.newer.next(),
            (None, None) => None,
        }
    }
}

impl Store for RedbStore {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.uncommitted(table, key) {
            return Ok(v.value().cloned());
        }
        self.committed(table, key)
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let pending = &mut self.pending[table as usize];
        // Overwriting a write of this batch keeps its freshness.
        let fresh = matches!(pending.get(key), Some(Pending::Put { fresh: true, .. }));
        pending.insert(key.to_vec(), Pending::Put { value: value.to_vec(), fresh });
        Ok(())
    }

    fn insert_new(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.pending[table as usize]
            .insert(key.to_vec(), Pending::Put { value: value.to_vec(), fresh: true });
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        let pending = &mut self.pending[table as usize];
        // One search of the open batch for the common case, a row written and deleted within
        // the same batch (a message forwarded before its batch was sealed).
        match pending.remove_entry(key) {
            // Never reached the disk: forget it, and the disk never sees it.
            Some((_, Pending::Put { fresh: true, .. })) => {
                self.stats.rows_cancelled += 1;
                return Ok(true);
            }
            Some((key, Pending::Put { .. })) => {
                pending.insert(key, Pending::Delete);
                return Ok(true);
            }
            Some((key, Pending::Delete)) => {
                pending.insert(key, Pending::Delete);
                return Ok(false);
            }
            None => {}
        }
        let sealed = self.sealed.as_ref().and_then(|s| s[table as usize].get(key));
        let existed = match sealed {
            Some(p) => p.value().is_some(),
            None => self.committed_exists(table, key)?,
        };
        if existed {
            self.pending[table as usize].insert(key.to_vec(), Pending::Delete);
        }
        Ok(existed)
    }

    fn scan(
        &mut self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        if to.is_some_and(|to| to <= from) {
            return Ok(());
        }
        // Merge the committed range with the overlay's, the overlay winning on equal keys.
        if let Err(e) = self.reader(table) {
            return Err(self.failed(e));
        }
        let Some(reader) = self.readers.get(&table) else { return Ok(()) };
        let upper = match to {
            Some(to) => Bound::Excluded(to),
            None => Bound::Unbounded,
        };
        let bounds = (Bound::Included(from), upper);
        let no_writes = BTreeMap::new();
        let sealed = self.sealed.as_ref().map_or(&no_writes, |s| &s[table as usize]);
        let mut overlay = Newest {
            newer: self.pending[table as usize]
                .range::<[u8], _>(bounds)
                .map(|(k, v)| (k, v.value()))
                .peekable(),
            older: sealed.range::<[u8], _>(bounds).map(|(k, v)| (k, v.value())).peekable(),
            _keys: std::marker::PhantomData,
        }
        .peekable();
        let range = match to {
            Some(to) => reader.range::<&[u8]>(from..to),
            None => reader.range::<&[u8]>(from..),
        };
        let mut disk = range.map_err(map)?.peekable();
        loop {
            let next_disk = match disk.peek() {
                Some(Ok((k, _))) => Some(k.value().to_vec()),
                Some(Err(_)) => {
                    let Some(Err(e)) = disk.next() else { unreachable!("peeked an error") };
                    return Err(map(e));
                }
                None => None,
            };
            let next_over = overlay.peek().map(|(k, _)| (*k).clone());
            let (key, value) = match (next_disk, next_over) {
                (None, None) => return Ok(()),
                (Some(d), Some(o)) if o <= d => {
                    if o == d {
                        disk.next();
                    }
                    let Some((_, v)) = overlay.next() else { return Ok(()) };
                    (o, v.cloned())
                }
                (Some(d), _) => {
                    let Some(Ok((_, v))) = disk.next() else { return Ok(()) };
                    (d, Some(v.value().to_vec()))
                }
                (None, Some(o)) => {
                    let Some((_, v)) = overlay.next() else { return Ok(()) };
                    (o, v.cloned())
                }
            };
            if let Some(v) = value
                && !visit(&key, &v)
            {
                return Ok(());
            }
        }
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        if self.sealed.is_some() {
            return Err(StoreError::Io("a commit is in flight".into()));
        }
        if !self.dirty() {
            return Ok(());
        }
        let r = self.apply();
        // Committed or not, the readers' snapshot is stale now.
        self.readers.clear();
        r.map_err(|e| self.failed(e))
    }

    fn begin_commit(&mut self) -> Result<Began, StoreError> {
        let Some(writer) = self.writer.as_ref().map(|(jobs, _)| jobs.clone()) else {
            return self.commit().map(|()| Began::Durable);
        };
        if self.sealed.is_some() {
            return Err(StoreError::Io("a commit is already in flight".into()));
        }
        if !self.dirty() {
            return Ok(Began::Durable);
        }
        let db = match self.db() {
            Ok(db) => db.clone(),
            Err(e) => {
                self.rollback();
                return Err(self.failed(e));
            }
        };
        let writes = Arc::new(self.take_batch());
        if writer.send(Job { db, writes: writes.clone() }).is_err() {
            return Err(StoreError::Io("the store writer stopped".into()));
        }
        self.sealed = Some(writes);
        Ok(Began::InFlight)
    }

    fn end_commit(&mut self, landed: Result<(), StoreError>) -> Result<(), StoreError> {
        self.sealed = None;
        // Landed or not, the readers' snapshot is stale now.
        self.readers.clear();
        landed.map_err(|e| {
            self.rollback();
            self.failed(e)
        })
    }

    fn rollback(&mut self) {
        self.pending.iter_mut().for_each(BTreeMap::clear);
    }

    /// Whether the open batch has writes (a sealed batch does not count).
    fn dirty(&self) -> bool {
        self.pending.iter().any(|p| !p.is_empty())
    }

    fn stats(&self) -> crate::core::store::StoreStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::core::store::{MemStore, Store};
    use crate::core::store_contract;

    #[test]
    fn redb_keeps_the_storage_contract() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        store_contract::check_all(&mut |old| {
            drop(old);
            Box::new(RedbStore::open(&path, 1 << 20).unwrap())
        });
    }

    #[test]
    fn redb_in_the_background_keeps_the_contract_of_split_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let landings = std::cell::RefCell::new(None::<Landings>);
        store_contract::check_split(
            &mut |old| {
                drop(old);
                let mut s = RedbStore::open(&path, 1 << 20).unwrap();
                *landings.borrow_mut() = Some(s.in_background().unwrap());
                Box::new(s)
            },
            &mut || {
                let mut l = landings.borrow_mut();
                l.as_mut().unwrap().blocking_recv().unwrap()
            },
        );
    }

    #[test]
    fn a_failed_landing_drops_the_open_batch_and_the_store_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RedbStore::open(&dir.path().join("store.redb"), 1 << 20).unwrap();
        let mut landings = s.in_background().unwrap();
        s.put(Table::Queue, b"sealed", b"1").unwrap();
        assert_eq!(s.begin_commit().unwrap(), Began::InFlight);
        s.put(Table::Queue, b"open", b"2").unwrap();
        // Whatever the writer did, the store is told the batch failed (an I/O error as it
        // synced): the batch built on top of it goes, and the file is opened again.
        landings.blocking_recv().unwrap().unwrap();
        let failed = Err(StoreError::Io("injected".into()));
        assert!(s.end_commit(failed).is_err());
        assert!(!s.dirty());
        assert_eq!(s.get(Table::Queue, b"open").unwrap(), None, "the open batch went with it");
        s.put(Table::Queue, b"after", b"3").unwrap();
        assert_eq!(s.begin_commit().unwrap(), Began::InFlight);
        let landed = landings.blocking_recv().unwrap();
        s.end_commit(landed).unwrap();
        assert_eq!(s.get(Table::Queue, b"after").unwrap(), Some(b"3".to_vec()));
    }

    #[test]
    fn redb_and_the_memory_store_read_alike_under_the_same_operations() {
        for seed in 0..6 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("store.redb");
            let disk = MemStore::new();
            store_contract::differential(
                seed,
                1500,
                &mut |old| {
                    drop(old);
                    Box::new(RedbStore::open(&path, 1 << 20).unwrap()) as Box<dyn Store>
                },
                &mut |old| {
                    drop(old);
                    disk.crash();
                    Box::new(disk.handle())
                },
            );
        }
    }

    #[test]
    fn committed_writes_survive_reopening_and_rolled_back_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let mut s = RedbStore::open(&path, 1 << 20).unwrap();
            s.put(Table::Queue, b"kept", b"1").unwrap();
            s.commit().unwrap();
            s.put(Table::Queue, b"dropped", b"2").unwrap();
            assert_eq!(s.get(Table::Queue, b"dropped").unwrap(), Some(b"2".to_vec()));
            s.rollback();
            s.put(Table::Queue, b"uncommitted", b"3").unwrap();
            // Dropped without commit, as in a crash.
        }
        let mut s = RedbStore::open(&path, 1 << 20).unwrap();
        let mut keys = Vec::new();
        s.scan(Table::Queue, b"", None, &mut |k, _| {
            keys.push(k.to_vec());
            true
        })
        .unwrap();
        assert_eq!(keys, vec![b"kept".to_vec()]);
        assert!(s.delete(Table::Queue, b"kept").unwrap());
        assert!(!s.delete(Table::Queue, b"kept").unwrap());
        assert!(s.dirty());
    }

    #[test]
    fn a_fresh_key_deleted_before_the_commit_never_reaches_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RedbStore::open(&dir.path().join("s.redb"), 1 << 20).unwrap();
        s.insert_new(Table::Messages, b"seq-1", b"passing through").unwrap();
        assert!(s.delete(Table::Messages, b"seq-1").unwrap());
        assert!(!s.dirty(), "nothing left to write");
        s.put(Table::Messages, b"seq-2", b"stays").unwrap();
        s.commit().unwrap();
        assert!(s.delete(Table::Messages, b"seq-2").unwrap());
        assert!(s.dirty(), "a committed key needs a real deletion");
        s.commit().unwrap();
        assert_eq!(s.get(Table::Messages, b"seq-2").unwrap(), None);
    }

    #[test]
    fn the_core_runs_on_redb() {
        use crate::core::{CoreConfig, Node, NodeId, Role, Time};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let cfg = CoreConfig::new(NodeId::new("a").unwrap(), Role::Relay);
        let store = RedbStore::open(&path, 1 << 20).unwrap();
        let mut node = Node::open(cfg.clone(), Box::new(store), 1, Time(1)).unwrap();
        for _ in 0..10 {
            node.handle_submit(
                Time(2),
                crate::core::Submission {
                    to: crate::core::Address::parse("node:b").unwrap(),
                    precedence: crate::core::Precedence::Flash,
                    lifetime: std::time::Duration::from_secs(60),
                    content_type: "text/plain".into(),
                    payload: bytes::Bytes::from_static(b"hello"),
                    receipt: true,
                    status: crate::core::TrafficStatus::Actual,
                    key: None,
                    replaces: None,
                },
            )
            .unwrap();
        }
        node.commit(Time(2)).unwrap();
        drop(node);
        let store = RedbStore::open(&path, 1 << 20).unwrap();
        let node = Node::open(cfg, Box::new(store), 2, Time(3)).unwrap();
        assert_eq!(node.held_messages(), 10);
    }
}
