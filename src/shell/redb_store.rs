//! The production store: the core's tables in one redb file.
//!
//! One write transaction stays open across a batch of core events and commits with
//! `Durability::Immediate` (fsync) when the driver commits the batch: that is the group commit.
//! A batch that only read is aborted instead, so reads never cost an fsync. After an I/O error
//! redb refuses further use of the handle; the store then reopens the file, which runs redb's
//! crash recovery, and carries on from the last committed state.

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};

use crate::core::store::{Store, StoreError, Table, Visit};

fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

/// Maps any redb error; a full device becomes [`StoreError::Full`].
fn map(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    if let redb::Error::Io(io) = &e {
        if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) {
            return StoreError::Full;
        }
    }
    if let redb::Error::Corrupted(why) = &e {
        return StoreError::Corrupt(why.clone());
    }
    StoreError::Io(e.to_string())
}

/// A [`Store`] on a redb database file.
pub struct RedbStore {
    path: PathBuf,
    cache_bytes: usize,
    db: Option<Database>,
    txn: Option<WriteTransaction>,
    wrote: bool,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("path", &self.path).field("wrote", &self.wrote).finish()
    }
}

impl RedbStore {
    /// Opens (or creates) the store file, with `cache_bytes` of page cache.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<RedbStore, StoreError> {
        let mut s =
            RedbStore { path: path.to_owned(), cache_bytes, db: None, txn: None, wrote: false };
        s.reopen()?;
        // Create every table up front so that reads of empty tables succeed.
        {
            let txn = s.txn()?;
            for t in Table::ALL {
                txn.open_table(def(t)).map_err(map)?;
            }
        }
        s.wrote = true;
        s.commit()?;
        Ok(s)
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        self.txn = None;
        self.db = None;
        let db =
            Database::builder().set_cache_size(self.cache_bytes).create(&self.path).map_err(map)?;
        self.db = Some(db);
        Ok(())
    }

    fn txn(&mut self) -> Result<&WriteTransaction, StoreError> {
        if self.db.is_none() {
            self.reopen()?;
        }
        if self.txn.is_none() {
            let db = self.db.as_ref().ok_or_else(|| StoreError::Io("database not open".into()))?;
            let mut txn = db.begin_write().map_err(map)?;
            txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
            self.txn = Some(txn);
        }
        self.txn.as_ref().ok_or_else(|| StoreError::Io("no transaction".into()))
    }

    /// Drops the handle after an I/O error so the next use reopens (and recovers) the file.
    fn failed(&mut self, e: StoreError) -> StoreError {
        if matches!(e, StoreError::Io(_) | StoreError::Full) {
            self.txn = None;
            self.db = None;
            self.wrote = false;
        }
        e
    }

    /// Size of the database file in bytes.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

impl Store for RedbStore {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let r = (|| {
            let t = self.txn()?.open_table(def(table)).map_err(map)?;
            let v = t.get(key).map_err(map)?;
            Ok(v.map(|v| v.value().to_vec()))
        })();
        r.map_err(|e| self.failed(e))
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.wrote = true;
        let r = (|| {
            let mut t = self.txn()?.open_table(def(table)).map_err(map)?;
            t.insert(key, value).map_err(map)?;
            Ok(())
        })();
        r.map_err(|e| self.failed(e))
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        let r = (|| {
            let mut t = self.txn()?.open_table(def(table)).map_err(map)?;
            let existed = t.remove(key).map_err(map)?.is_some();
            Ok(existed)
        })();
        match r {
            Ok(true) => {
                self.wrote = true;
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => Err(self.failed(e)),
        }
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
        let r = (|| {
            let t = self.txn()?.open_table(def(table)).map_err(map)?;
            let range = match to {
                Some(to) => t.range::<&[u8]>(from..to).map_err(map)?,
                None => t.range::<&[u8]>(from..).map_err(map)?,
            };
            for entry in range {
                let (k, v) = entry.map_err(map)?;
                if !visit(k.value(), v.value()) {
                    break;
                }
            }
            Ok(())
        })();
        r.map_err(|e| self.failed(e))
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        let Some(txn) = self.txn.take() else { return Ok(()) };
        let wrote = std::mem::replace(&mut self.wrote, false);
        let r = if wrote { txn.commit().map_err(map) } else { txn.abort().map_err(map) };
        r.map_err(|e| self.failed(e))
    }

    fn rollback(&mut self) {
        if let Some(txn) = self.txn.take() {
            let _ = txn.abort();
        }
        self.wrote = false;
    }

    fn dirty(&self) -> bool {
        self.wrote
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
