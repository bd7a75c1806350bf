//! The storage contract, as tests every [`Store`] must pass (`MemStore` here, the redb store
//! in the `relaymesh` crate's `shell::redb_store`), and a differential run that applies the same seeded operations to
//! two stores and requires identical reads. The simulator's fidelity rests on the in-memory
//! store behaving like the one on disk: this is where that is checked.
//!
//! Test code (built for tests and with the `testkit` feature): a failed call is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::store::{Began, Store, StoreError, Table};

/// Opens the store under test again over the same backing, as after a crash: what was not
/// committed is gone. It is handed the old store (if any) to drop first.
pub type Reopen<'a> = &'a mut dyn FnMut(Option<Box<dyn Store>>) -> Box<dyn Store>;

fn keys(s: &mut dyn Store, t: Table, from: &[u8], to: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    s.scan(t, from, to, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        true
    })
    .unwrap();
    out
}

/// Runs every contract check on a store.
pub fn check_all(reopen: Reopen<'_>) {
    writes_are_visible_in_their_transaction(reopen);
    commit_keeps_and_rollback_drops(reopen);
    reopening_keeps_only_commits(reopen);
    scans_merge_pending_writes_in_key_order(reopen);
    fresh_keys_deleted_before_the_commit_vanish(reopen);
    tables_are_independent(reopen);
}

fn writes_are_visible_in_their_transaction(reopen: Reopen<'_>) {
    let mut s = reopen(None);
    assert!(!s.dirty());
    s.put(Table::Meta, b"k", b"v1").unwrap();
    assert!(s.dirty());
    assert_eq!(s.get(Table::Meta, b"k").unwrap(), Some(b"v1".to_vec()));
    s.put(Table::Meta, b"k", b"v2").unwrap();
    assert_eq!(s.get(Table::Meta, b"k").unwrap(), Some(b"v2".to_vec()));
    assert!(s.delete(Table::Meta, b"k").unwrap());
    assert!(!s.delete(Table::Meta, b"k").unwrap(), "a deleted key is gone");
    assert_eq!(s.get(Table::Meta, b"k").unwrap(), None);
    s.commit().unwrap();
    assert!(!s.dirty());
    reopen(Some(s));
}

fn commit_keeps_and_rollback_drops(reopen: Reopen<'_>) {
    let mut s = reopen(None);
    s.put(Table::Queue, b"a", b"1").unwrap();
    s.put(Table::Queue, b"b", b"2").unwrap();
    s.commit().unwrap();
    s.put(Table::Queue, b"a", b"changed").unwrap();
    assert!(s.delete(Table::Queue, b"b").unwrap());
    s.put(Table::Queue, b"c", b"new").unwrap();
    s.rollback();
    assert!(!s.dirty());
    assert_eq!(
        keys(s.as_mut(), Table::Queue, b"", None),
        vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]
    );
    // Clean up for the next check.
    s.delete(Table::Queue, b"a").unwrap();
    s.delete(Table::Queue, b"b").unwrap();
    s.commit().unwrap();
    reopen(Some(s));
}

fn reopening_keeps_only_commits(reopen: Reopen<'_>) {
    let mut s = reopen(None);
    s.put(Table::Inbox, b"kept", b"1").unwrap();
    s.commit().unwrap();
    s.put(Table::Inbox, b"lost", b"2").unwrap();
    s.delete(Table::Inbox, b"kept").unwrap();
    let mut s = reopen(Some(s));
    assert_eq!(keys(s.as_mut(), Table::Inbox, b"", None), vec![(b"kept".to_vec(), b"1".to_vec())]);
    s.delete(Table::Inbox, b"kept").unwrap();
    s.commit().unwrap();
    reopen(Some(s));
}

fn scans_merge_pending_writes_in_key_order(reopen: Reopen<'_>) {
    let mut s = reopen(None);
    for k in [b"b", b"d", b"f", b"h"] {
        s.put(Table::Expiry, k, b"old").unwrap();
    }
    s.commit().unwrap();
    s.put(Table::Expiry, b"a", b"new").unwrap();
    s.put(Table::Expiry, b"d", b"changed").unwrap();
    s.delete(Table::Expiry, b"f").unwrap();
    s.put(Table::Expiry, b"g", b"new").unwrap();
    let all = keys(s.as_mut(), Table::Expiry, b"", None);
    let want: Vec<(Vec<u8>, Vec<u8>)> =
        [("a", "new"), ("b", "old"), ("d", "changed"), ("g", "new"), ("h", "old")]
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
    assert_eq!(all, want);
    assert_eq!(keys(s.as_mut(), Table::Expiry, b"b", Some(b"g")), want[1..3].to_vec(), "bounds");
    let mut first = Vec::new();
    s.scan(Table::Expiry, b"", None, &mut |k, _| {
        first.push(k.to_vec());
        false
    })
    .unwrap();
    assert_eq!(first, vec![b"a".to_vec()], "a visitor's false stops the scan");
    s.rollback();
    for k in [b"b", b"d", b"f", b"h"] {
        s.delete(Table::Expiry, k).unwrap();
    }
    s.commit().unwrap();
    reopen(Some(s));
}

fn fresh_keys_deleted_before_the_commit_vanish(reopen: Reopen<'_>) {
    let mut s = reopen(None);
    s.insert_new(Table::Messages, b"seq-1", b"passing through").unwrap();
    assert_eq!(s.get(Table::Messages, b"seq-1").unwrap(), Some(b"passing through".to_vec()));
    assert!(s.delete(Table::Messages, b"seq-1").unwrap());
    s.insert_new(Table::Messages, b"seq-2", b"held").unwrap();
    s.commit().unwrap();
    let mut s = reopen(Some(s));
    assert_eq!(
        keys(s.as_mut(), Table::Messages, b"", None),
        vec![(b"seq-2".to_vec(), b"held".to_vec())]
    );
    s.delete(Table::Messages, b"seq-2").unwrap();
    s.commit().unwrap();
    reopen(Some(s));
}

fn tables_are_independent(reopen: Reopen<'_>) {
    let mut s = reopen(None);
    for (i, t) in Table::ALL.iter().enumerate() {
        s.put(*t, b"same-key", &[i as u8]).unwrap();
    }
    s.commit().unwrap();
    let mut s = reopen(Some(s));
    for (i, t) in Table::ALL.iter().enumerate() {
        assert_eq!(s.get(*t, b"same-key").unwrap(), Some(vec![i as u8]), "{}", t.name());
        s.delete(*t, b"same-key").unwrap();
    }
    s.commit().unwrap();
    reopen(Some(s));
}

/// Waits until the batch in flight of a store in the background has landed and returns how
/// (what the store's owner would hand to `end_commit`).
pub type Land<'a> = &'a mut dyn FnMut() -> Result<(), StoreError>;

/// The contract of split commits, for a store whose `begin_commit` leaves batches in flight.
pub fn check_split(reopen: Reopen<'_>, land: Land<'_>) {
    sealed_writes_stay_readable_and_land(reopen, land);
    a_crash_in_flight_keeps_all_or_nothing_of_the_sealed_batch(reopen, land);
}

fn sealed_writes_stay_readable_and_land(reopen: Reopen<'_>, land: Land<'_>) {
    let mut s = reopen(None);
    s.put(Table::Queue, b"a", b"1").unwrap();
    s.put(Table::Queue, b"b", b"2").unwrap();
    s.insert_new(Table::Queue, b"d", b"4").unwrap();
    assert_eq!(s.begin_commit().unwrap(), Began::InFlight);
    assert!(!s.dirty(), "a sealed batch is not the open one");
    assert_eq!(s.get(Table::Queue, b"a").unwrap(), Some(b"1".to_vec()));
    // A new batch on top of the sealed one.
    s.put(Table::Queue, b"c", b"3").unwrap();
    assert!(s.delete(Table::Queue, b"a").unwrap(), "the sealed write is there to delete");
    assert!(!s.delete(Table::Queue, b"a").unwrap());
    assert!(s.delete(Table::Queue, b"d").unwrap(), "a fresh key sealed is not fresh any more");
    s.put(Table::Queue, b"b", b"22").unwrap();
    let open = vec![(b"b".to_vec(), b"22".to_vec()), (b"c".to_vec(), b"3".to_vec())];
    assert_eq!(keys(s.as_mut(), Table::Queue, b"", None), open);
    assert_eq!(keys(s.as_mut(), Table::Queue, b"b", Some(b"c")), open[..1].to_vec());
    assert!(s.dirty());
    let landed = land();
    s.end_commit(landed).unwrap();
    assert_eq!(keys(s.as_mut(), Table::Queue, b"", None), open, "the open batch survives");
    assert_eq!(s.begin_commit().unwrap(), Began::InFlight);
    let landed = land();
    s.end_commit(landed).unwrap();
    assert!(!s.dirty());
    let mut s = reopen(Some(s));
    assert_eq!(keys(s.as_mut(), Table::Queue, b"", None), open);
    s.delete(Table::Queue, b"b").unwrap();
    s.delete(Table::Queue, b"c").unwrap();
    assert_eq!(s.begin_commit().unwrap(), Began::InFlight);
    let landed = land();
    s.end_commit(landed).unwrap();
    reopen(Some(s));
}

fn a_crash_in_flight_keeps_all_or_nothing_of_the_sealed_batch(reopen: Reopen<'_>, land: Land<'_>) {
    let mut s = reopen(None);
    s.put(Table::Inbox, b"x", b"1").unwrap();
    s.put(Table::Inbox, b"y", b"2").unwrap();
    assert_eq!(s.begin_commit().unwrap(), Began::InFlight);
    s.put(Table::Inbox, b"z", b"open").unwrap();
    // Power fails before the store says whether the batch landed: it may have or not.
    let mut s = reopen(Some(s));
    let found = keys(s.as_mut(), Table::Inbox, b"", None);
    let sealed = vec![(b"x".to_vec(), b"1".to_vec()), (b"y".to_vec(), b"2".to_vec())];
    assert!(found.is_empty() || found == sealed, "half a batch or the open one: {found:?}");
    for (k, _) in found {
        s.delete(Table::Inbox, &k).unwrap();
    }
    if s.begin_commit().unwrap() == Began::InFlight {
        let landed = land();
        s.end_commit(landed).unwrap();
    }
    reopen(Some(s));
}

/// Applies `ops` seeded random operations to both stores and requires every read to agree,
/// and the committed state to agree after both are reopened.
pub fn differential(seed: u64, ops: usize, a: Reopen<'_>, b: Reopen<'_>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut x, mut y) = (a(None), b(None));
    let tables = [Table::Queue, Table::Messages, Table::Meta];
    for step in 0..ops {
        let t = tables[rng.random_range(0..tables.len())];
        let key = [rng.random_range(0..24u8)];
        let value = [rng.random::<u8>(); 3];
        let ctx = || format!("seed {seed}, step {step}");
        match rng.random_range(0..100) {
            0..30 => {
                x.put(t, &key, &value).unwrap();
                y.put(t, &key, &value).unwrap();
            }
            30..40 => {
                // Only for keys known to be absent, as the contract requires.
                if x.get(t, &key).unwrap().is_none() {
                    x.insert_new(t, &key, &value).unwrap();
                    y.insert_new(t, &key, &value).unwrap();
                }
            }
            40..60 => {
                assert_eq!(x.delete(t, &key).unwrap(), y.delete(t, &key).unwrap(), "{}", ctx());
            }
            60..72 => assert_eq!(x.get(t, &key).unwrap(), y.get(t, &key).unwrap(), "{}", ctx()),
            72..84 => {
                let to = [key[0].saturating_add(rng.random_range(0..8))];
                let bound = rng.random_bool(0.5).then_some(&to[..]);
                assert_eq!(
                    keys(x.as_mut(), t, &key, bound),
                    keys(y.as_mut(), t, &key, bound),
                    "{}",
                    ctx()
                );
            }
            84..92 => {
                x.commit().unwrap();
                y.commit().unwrap();
            }
            92..97 => {
                x.rollback();
                y.rollback();
            }
            _ => {
                x = a(Some(x));
                y = b(Some(y));
            }
        }
        // `dirty` is not compared: a store may call itself clean when the writes since the
        // commit cancel out (redb drops a fresh key deleted again), which the reads after the
        // final reopen below cover.
    }
    x.commit().unwrap();
    y.commit().unwrap();
    let (mut x, mut y) = (a(Some(x)), b(Some(y)));
    for t in Table::ALL {
        assert_eq!(keys(x.as_mut(), t, b"", None), keys(y.as_mut(), t, b"", None), "{}", t.name());
    }
}
