//! The storage contract the core relies on, with an in-memory implementation and a
//! fault-injecting wrapper.
//!
//! The core sees a handful of ordered byte-keyed tables and one open transaction: every `put` and
//! `delete` since the last `commit` is visible to reads at once and becomes durable at the next
//! `commit`, or disappears at `rollback` (or at a crash). That is exactly what redb gives the shell
//! (`crate::shell::redb_store`), what [`MemStore`] gives the core's tests and the simulator, and
//! what [`FaultStore`] breaks on purpose.
//!
//! A commit may also be split in two, so that the node goes on working while the disk syncs:
//! [`Store::begin_commit`] seals the open transaction (its writes stay readable) and opens a
//! new one on top of it; the store's owner learns when the sealed batch is on disk (redb's
//! writer thread says so, a simulated disk after a delay) and hands the outcome to
//! [`Store::end_commit`]. At most one batch is sealed at a time. If it fails, the open
//! transaction, built on it, is dropped with it; a crash before it lands loses both.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

/// The tables of a node's store. Key layouts live in `core::schema`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// seq -> StoredMessage: every envelope this node holds custody of.
    Messages,
    /// (destination, rank, seq) -> (): what is owed to whom, in drain order.
    Queue,
    /// (deadline, seq) -> (): held messages by local expiry deadline.
    Expiry,
    /// seq -> remaining destination count, for copies owed to more than one node.
    Refs,
    /// cursor -> InboxRecord: messages delivered to this node's applications.
    Inbox,
    /// (message id, origin) -> deadline: messages already delivered here (exactly-once).
    Delivered,
    /// (deadline, id, origin) -> (): `Delivered` entries by the time they may be forgotten.
    DeliveredExpiry,
    /// message id -> StatusRecord: messages this node originated.
    Status,
    /// (accepted_at, id) -> (): `Status` entries by age, for pruning.
    StatusAge,
    /// pattern -> (): this node's durable topic subscriptions.
    Subscriptions,
    /// node -> sequence number (u64 BE): which of the adverts in `Members` routing holds (the
    /// link-state database; each advert is stored once, there). Stores written before kept the
    /// whole advert here, and are still read.
    Lsdb,
    /// name -> value: counters and cursors.
    Meta,
    /// group name -> 1 (joined) or 0 (left): changes made at run time to the configured groups.
    Groups,
    /// node -> LinkState: the newest advert ever seen of every member, never aged out (only a
    /// newer advert, a revocation or a decommission changes it).
    Members,
    /// message id -> StoredMessage: group and topic messages this node originated, kept while
    /// their lifetime runs, to bind members that appear late.
    Bindings,
    /// (deadline, id) of messages whose delivery objective is still to be checked.
    Objectives,
    /// (id, destination) -> precedence and due time: destinations past their objective.
    Overdue,
    /// (message id, seq) -> origin: the held messages of `Messages` by id, to find a copy a
    /// cancel or a newer message withdraws.
    HeldIds,
    /// message id -> Tombstone: messages cancelled or replaced before they reached this node.
    Tombstones,
    /// (origin, 0x00, key) -> LatestKey: the newest message of each latest-value key seen here.
    Keys,
    /// (object id, index) -> chunk data: chunks of objects arriving or delivered here.
    ObjectChunks,
    /// (role, object id) -> ObjectRecord: objects arriving here (role 0) or sent (role 1).
    Objects,
    /// (deadline, object id) -> (): incomplete objects by the time they expire.
    ObjectExpiry,
    /// area -> AreaSummary (zstd, no costs): what the borders of another area said of each of
    /// its members, where this node holds no newer own advert of the member (areas only).
    Vouched,
}

impl Table {
    pub const ALL: [Table; 24] = [
        Table::Messages,
        Table::Queue,
        Table::Expiry,
        Table::Refs,
        Table::Inbox,
        Table::Delivered,
        Table::DeliveredExpiry,
        Table::Status,
        Table::StatusAge,
        Table::Subscriptions,
        Table::Lsdb,
        Table::Meta,
        Table::Groups,
        Table::Members,
        Table::Bindings,
        Table::Objectives,
        Table::Overdue,
        Table::HeldIds,
        Table::Tombstones,
        Table::Keys,
        Table::ObjectChunks,
        Table::Objects,
        Table::ObjectExpiry,
        Table::Vouched,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Messages => "messages",
            Table::Queue => "queue",
            Table::Expiry => "expiry",
            Table::Refs => "refs",
            Table::Inbox => "inbox",
            Table::Delivered => "delivered",
            Table::DeliveredExpiry => "delivered_expiry",
            Table::Status => "status",
            Table::StatusAge => "status_age",
            Table::Subscriptions => "subscriptions",
            Table::Lsdb => "lsdb",
            Table::Meta => "meta",
            Table::Groups => "groups",
            Table::Members => "members",
            Table::Bindings => "bindings",
            Table::Objectives => "objectives",
            Table::Overdue => "overdue",
            Table::HeldIds => "held_ids",
            Table::Tombstones => "tombstones",
            Table::Keys => "keys",
            Table::ObjectChunks => "object_chunks",
            Table::Objects => "objects",
            Table::ObjectExpiry => "object_expiry",
            Table::Vouched => "vouched",
        }
    }
}

/// Why the store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The device reported an error; nothing of the open transaction was kept.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// No space left; nothing of the open transaction was kept, and what was stored is intact.
    #[error("storage is full")]
    Full,
    /// A stored record could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

/// What [`Store::begin_commit`] did with the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Began {
    /// The batch is durable already.
    Durable,
    /// The batch is on its way to the disk; [`Store::end_commit`] will say how it went.
    InFlight,
}

/// Visitor for [`Store::scan`]: return `false` to stop.
pub type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> bool;

/// Ordered byte-keyed tables with one open transaction (see the module docs).
pub trait Store: Send + fmt::Debug {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Like `put`, for a key the caller knows is not stored yet (a fresh sequence number). A
    /// store may then skip the disk entirely if the key is deleted again before the commit:
    /// a message handed on and accepted downstream within one batch never touches the disk.
    fn insert_new(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.put(table, key, value)
    }
    /// Deletes a key; returns whether it existed.
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError>;
    /// Visits the entries with `from <= key < to` (no upper bound when `to` is `None`) in key
    /// order, until `visit` returns `false`.
    fn scan(
        &mut self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError>;
    /// Makes every change since the last commit durable (fsync). On error nothing of them is
    /// kept and the store is as it was after the previous commit.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Drops every change since the last commit.
    fn rollback(&mut self);
    /// Seals the open transaction and starts making it durable; a new transaction opens on
    /// top of it. A store that syncs at once commits here and says [`Began::Durable`]; one
    /// that syncs in the background says [`Began::InFlight`], and [`Store::end_commit`]
    /// follows when it has landed. Never called while a batch is in flight.
    fn begin_commit(&mut self) -> Result<Began, StoreError> {
        self.commit().map(|()| Began::Durable)
    }
    /// The batch in flight landed with `landed` (`Ok`: it is durable). On failure, the sealed
    /// batch and everything written since are gone and the store is as after the previous
    /// durable commit. Returns the outcome (a store may still fail a landed batch).
    fn end_commit(&mut self, landed: Result<(), StoreError>) -> Result<(), StoreError> {
        landed
    }
    /// Whether there are changes since the last commit.
    fn dirty(&self) -> bool;
    /// Counters of the store's work, for metrics.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
}

/// What a store has done since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Commits that wrote something (each one fsync).
    pub commits: u64,
    /// Rows written or deleted on disk.
    pub rows_written: u64,
    /// Rows inserted and deleted again before a commit, which never reached the disk.
    pub rows_cancelled: u64,
}

type Tables = BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>;

/// Undo entries whose room a [`MemStore`] keeps between batches.
const UNDO_KEPT: usize = 256;

#[derive(Default)]
struct MemDisk {
    tables: Tables,
    /// Previous values of everything written since the last commit, oldest first.
    undo: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
    /// How many of the `undo` entries belong to the batch in flight (split commits).
    sealed: Option<usize>,
}

impl MemDisk {
    fn table(&mut self, t: Table) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        self.tables.entry(t).or_default()
    }

    /// Lets go of the room one large batch (a first link-state sync) grew the undo log to: kept,
    /// it stayed with every simulated node for the whole run.
    fn shrink_undo(&mut self) {
        if self.undo.capacity() > UNDO_KEPT && self.undo.len() <= UNDO_KEPT / 2 {
            self.undo.shrink_to(UNDO_KEPT / 2);
        }
    }

    /// Drops every write not yet durable: the open batch and the one in flight.
    fn rollback(&mut self) {
        self.sealed = None;
        while let Some((t, k, old)) = self.undo.pop() {
            match old {
                Some(v) => {
                    self.table(t).insert(k, v);
                }
                None => {
                    self.table(t).remove(&k);
                }
            }
        }
    }
}

/// An in-memory store with real transaction semantics.
///
/// Handles made with [`MemStore::handle`] share one "disk": a simulator keeps a handle, drops
/// the node on a crash (which loses what was not committed, see [`MemStore::crash`]) and
/// reopens the node on the same disk.
#[derive(Clone, Default)]
pub struct MemStore {
    disk: Arc<Mutex<MemDisk>>,
    /// Commits are split ([`MemStore::split_commits`]).
    split: bool,
}

impl fmt::Debug for MemStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemStore").finish_non_exhaustive()
    }
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Another handle on the same disk.
    pub fn handle(&self) -> MemStore {
        self.clone()
    }

    /// A handle whose [`Store::begin_commit`] leaves the batch in flight until
    /// [`Store::end_commit`] (a disk that syncs in the background, for simulations).
    pub fn split_commits(&self) -> MemStore {
        MemStore { disk: self.disk.clone(), split: true }
    }

    /// What survives power loss: the disk as of the last durable commit (a batch in flight
    /// is lost too).
    pub fn crash(&self) {
        self.lock().rollback();
    }

    /// Number of entries in `table` (committed or not), for tests and reports.
    pub fn len(&self, table: Table) -> usize {
        self.lock().tables.get(&table).map_or(0, BTreeMap::len)
    }

    pub fn is_empty(&self) -> bool {
        self.lock().tables.values().all(BTreeMap::is_empty)
    }

    fn lock(&self) -> MutexGuard<'_, MemDisk> {
        // A poisoned lock only means another thread panicked mid-operation in a test; the
        // tables themselves are always consistent between calls.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemStore {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().tables.get(&table).and_then(|t| t.get(key)).cloned())
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut d = self.lock();
        let old = d.table(table).insert(key.to_vec(), value.to_vec());
        d.undo.push((table, key.to_vec(), old));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        let mut d = self.lock();
        match d.table(table).remove(key) {
            Some(old) => {
                d.undo.push((table, key.to_vec(), Some(old)));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn scan(
        &mut self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        let d = self.lock();
        let Some(t) = d.tables.get(&table) else {
            return Ok(());
        };
        let upper = match to {
            Some(to) => Bound::Excluded(to),
            None => Bound::Unbounded,
        };
        if to.is_some_and(|to| to <= from) {
            return Ok(());
        }
        for (k, v) in t.range::<[u8], _>((Bound::Included(from), upper)) {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        let mut d = self.lock();
        d.undo.clear();
        d.shrink_undo();
        d.sealed = None;
        Ok(())
    }

    /// Drops the open batch only; a batch in flight stays.
    fn rollback(&mut self) {
        let mut d = self.lock();
        let keep = d.sealed.unwrap_or(0);
        while d.undo.len() > keep {
            let Some((t, k, old)) = d.undo.pop() else { break };
            match old {
                Some(v) => d.table(t).insert(k, v),
                None => d.table(t).remove(&k),
            };
        }
    }

    fn dirty(&self) -> bool {
        let d = self.lock();
        d.undo.len() > d.sealed.unwrap_or(0)
    }

    fn begin_commit(&mut self) -> Result<Began, StoreError> {
        if !self.split {
            return self.commit().map(|()| Began::Durable);
        }
        let mut d = self.lock();
        if d.sealed.is_some() {
            return Err(StoreError::Io("a commit is already in flight".into()));
        }
        d.sealed = Some(d.undo.len());
        Ok(Began::InFlight)
    }

    fn end_commit(&mut self, landed: Result<(), StoreError>) -> Result<(), StoreError> {
        let mut d = self.lock();
        let Some(n) = d.sealed.take() else { return landed };
        match landed {
            Ok(()) => {
                d.undo.drain(..n);
                d.shrink_undo();
                Ok(())
            }
            Err(e) => {
                d.rollback();
                Err(e)
            }
        }
    }
}

/// What a [`FaultStore`] does wrong, changeable while the node runs.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Fail every operation after this many more have succeeded.
    pub fail_after_ops: Option<u64>,
    /// Refuse every `put` with [`StoreError::Full`] (deletes still work, as on a full disk).
    pub full: bool,
    /// Fail every commit with an I/O error (before anything is written).
    pub fail_commits: bool,
    /// Fail every split commit as it lands (after the batch was sealed and the node went on).
    pub fail_landings: bool,
}

/// Wraps a store and injects the faults of a shared [`FaultPlan`].
///
/// A failed operation leaves the transaction poisoned: the next commit fails and rolls back,
/// as a real database does after a write error.
#[derive(Debug)]
pub struct FaultStore<S> {
    inner: S,
    plan: Arc<Mutex<FaultPlan>>,
    poisoned: bool,
}

impl<S: Store> FaultStore<S> {
    pub fn new(inner: S) -> (FaultStore<S>, Arc<Mutex<FaultPlan>>) {
        let plan = Arc::new(Mutex::new(FaultPlan::default()));
        let store = FaultStore { inner, plan: plan.clone(), poisoned: false };
        (store, plan)
    }

    fn plan(&self) -> MutexGuard<'_, FaultPlan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the commit about to start fails, and how (the transaction is reset either way).
    fn commit_failure(&mut self) -> Option<StoreError> {
        let failure = if self.poisoned {
            Some(if self.plan().full {
                StoreError::Full
            } else {
                StoreError::Io("transaction failed earlier".into())
            })
        } else if self.plan().fail_commits {
            Some(StoreError::Io("injected commit failure".into()))
        } else {
            self.tick().err()
        };
        self.poisoned = false;
        failure
    }

    fn tick(&mut self) -> Result<(), StoreError> {
        let mut plan = self.plan();
        match plan.fail_after_ops {
            Some(0) => {
                drop(plan);
                self.poisoned = true;
                Err(StoreError::Io("injected I/O error".into()))
            }
            Some(ref mut n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl<S: Store> Store for FaultStore<S> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.tick()?;
        self.inner.get(table, key)
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tick()?;
        if self.plan().full {
            self.poisoned = true;
            return Err(StoreError::Full);
        }
        self.inner.put(table, key, value)
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        self.tick()?;
        self.inner.delete(table, key)
    }

    fn scan(
        &mut self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        self.tick()?;
        self.inner.scan(table, from, to, visit)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        let failure = self.commit_failure();
        match failure {
            Some(e) => {
                self.inner.rollback();
                Err(e)
            }
            None => self.inner.commit(),
        }
    }

    fn rollback(&mut self) {
        self.poisoned = false;
        self.inner.rollback();
    }

    fn dirty(&self) -> bool {
        self.inner.dirty()
    }

    fn begin_commit(&mut self) -> Result<Began, StoreError> {
        let failure = self.commit_failure();
        if let Some(e) = failure {
            self.inner.rollback();
            return Err(e);
        }
        self.inner.begin_commit()
    }

    fn end_commit(&mut self, landed: Result<(), StoreError>) -> Result<(), StoreError> {
        let landed = match landed {
            Ok(()) if self.plan().fail_landings => {
                Err(StoreError::Io("injected failure as the commit landed".into()))
            }
            other => other,
        };
        // A write that failed meanwhile belongs to the open batch, which a failure drops.
        if landed.is_err() {
            self.poisoned = false;
        }
        self.inner.end_commit(landed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_batch_leaves_no_undo_room_behind_and_a_rollback_still_undoes() {
        let mut s = MemStore::new();
        for i in 0u32..10_000 {
            s.put(Table::Messages, &i.to_be_bytes(), b"row").unwrap();
        }
        s.commit().unwrap();
        assert!(s.lock().undo.capacity() <= UNDO_KEPT / 2, "{}", s.lock().undo.capacity());
        // The next batch still rolls back whole.
        for i in 0u32..1_000 {
            s.delete(Table::Messages, &i.to_be_bytes()).unwrap();
        }
        s.rollback();
        assert_eq!(s.len(Table::Messages), 10_000);
        // And so does a batch that landed in the background, then one on top of it that failed.
        let mut split = MemStore::new().split_commits();
        for i in 0u32..1_000 {
            split.put(Table::Messages, &i.to_be_bytes(), b"row").unwrap();
        }
        assert_eq!(split.begin_commit().unwrap(), Began::InFlight);
        split.end_commit(Ok(())).unwrap();
        assert!(split.lock().undo.capacity() <= UNDO_KEPT / 2);
        split.put(Table::Messages, b"later", b"row").unwrap();
        split.rollback();
        assert_eq!(split.len(Table::Messages), 1_000);
    }

    fn keys(s: &mut dyn Store, t: Table) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        s.scan(t, b"", None, &mut |k, _| {
            out.push(k.to_vec());
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn the_memory_store_keeps_the_storage_contract() {
        let disk = MemStore::new();
        crate::store_contract::check_all(&mut |old| {
            drop(old);
            disk.crash();
            Box::new(disk.handle())
        });
    }

    #[test]
    fn the_memory_store_keeps_the_contract_of_split_commits() {
        let disk = MemStore::new();
        crate::store_contract::check_split(
            &mut |old| {
                drop(old);
                disk.crash();
                Box::new(disk.split_commits())
            },
            &mut || Ok(()),
        );
    }

    #[test]
    fn a_failed_landing_drops_the_sealed_batch_and_the_open_one() {
        let (mut s, plan) = FaultStore::new(MemStore::new().split_commits());
        s.put(Table::Meta, b"kept", b"1").unwrap();
        s.commit().unwrap();
        s.put(Table::Meta, b"sealed", b"2").unwrap();
        assert_eq!(s.begin_commit(), Ok(Began::InFlight));
        s.put(Table::Meta, b"open", b"3").unwrap();
        s.put(Table::Meta, b"kept", b"changed").unwrap();
        plan.lock().unwrap().fail_landings = true;
        assert!(matches!(s.end_commit(Ok(())), Err(StoreError::Io(_))));
        plan.lock().unwrap().fail_landings = false;
        assert!(!s.dirty());
        assert_eq!(keys(&mut s, Table::Meta), vec![b"kept".to_vec()]);
        assert_eq!(s.get(Table::Meta, b"kept").unwrap(), Some(b"1".to_vec()));
        // And the store goes on.
        s.put(Table::Meta, b"after", b"4").unwrap();
        assert_eq!(s.begin_commit(), Ok(Began::InFlight));
        assert_eq!(s.end_commit(Ok(())), Ok(()));
        assert_eq!(keys(&mut s, Table::Meta), vec![b"after".to_vec(), b"kept".to_vec()]);
    }

    #[test]
    fn rolling_back_the_open_batch_keeps_the_one_in_flight() {
        let mut s = MemStore::new().split_commits();
        s.put(Table::Meta, b"sealed", b"1").unwrap();
        assert_eq!(s.begin_commit(), Ok(Began::InFlight));
        assert!(s.begin_commit().is_err(), "one batch in flight at a time");
        s.put(Table::Meta, b"open", b"2").unwrap();
        s.rollback();
        assert_eq!(s.end_commit(Ok(())), Ok(()));
        assert_eq!(keys(&mut s, Table::Meta), vec![b"sealed".to_vec()]);
    }

    #[test]
    fn rollback_restores_the_last_commit() {
        let mut s = MemStore::new();
        s.put(Table::Meta, b"a", b"1").unwrap();
        s.commit().unwrap();
        s.put(Table::Meta, b"a", b"2").unwrap();
        s.put(Table::Meta, b"b", b"3").unwrap();
        s.delete(Table::Meta, b"a").unwrap();
        assert!(s.dirty());
        s.rollback();
        assert_eq!(s.get(Table::Meta, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get(Table::Meta, b"b").unwrap(), None);
    }

    #[test]
    fn crash_keeps_only_committed_writes_on_the_shared_disk() {
        let mut s = MemStore::new();
        let disk = s.handle();
        s.put(Table::Queue, b"k1", b"").unwrap();
        s.commit().unwrap();
        s.put(Table::Queue, b"k2", b"").unwrap();
        drop(s);
        disk.crash();
        let mut reopened = disk.handle();
        assert_eq!(keys(&mut reopened, Table::Queue), vec![b"k1".to_vec()]);
    }

    #[test]
    fn scan_respects_bounds_and_stops() {
        let mut s = MemStore::new();
        for k in [b"a", b"b", b"c", b"d"] {
            s.put(Table::Meta, k, b"").unwrap();
        }
        let mut seen = Vec::new();
        s.scan(Table::Meta, b"b", Some(b"d"), &mut |k, _| {
            seen.push(k.to_vec());
            true
        })
        .unwrap();
        assert_eq!(seen, vec![b"b".to_vec(), b"c".to_vec()]);
        let mut first = None;
        s.scan(Table::Meta, b"", None, &mut |k, _| {
            first = Some(k.to_vec());
            false
        })
        .unwrap();
        assert_eq!(first, Some(b"a".to_vec()));
    }

    #[test]
    fn full_disk_refuses_puts_and_keeps_what_was_committed() {
        let (mut s, plan) = FaultStore::new(MemStore::new());
        s.put(Table::Meta, b"kept", b"1").unwrap();
        s.commit().unwrap();
        plan.lock().unwrap().full = true;
        assert_eq!(s.put(Table::Meta, b"new", b"2"), Err(StoreError::Full));
        assert_eq!(s.commit(), Err(StoreError::Full));
        plan.lock().unwrap().full = false;
        assert_eq!(s.get(Table::Meta, b"kept").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get(Table::Meta, b"new").unwrap(), None);
    }

    #[test]
    fn io_error_after_n_ops_poisons_the_transaction() {
        let (mut s, plan) = FaultStore::new(MemStore::new());
        plan.lock().unwrap().fail_after_ops = Some(2);
        s.put(Table::Meta, b"a", b"1").unwrap();
        s.put(Table::Meta, b"b", b"1").unwrap();
        assert!(matches!(s.put(Table::Meta, b"c", b"1"), Err(StoreError::Io(_))));
        plan.lock().unwrap().fail_after_ops = None;
        assert!(s.commit().is_err());
        assert_eq!(s.get(Table::Meta, b"a").unwrap(), None);
    }
}
