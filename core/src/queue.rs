//! An in-memory window over the durable queue.
//!
//! The `Queue` table holds one entry per (destination, precedence, seq) a node still owes. It
//! can hold millions of entries, so memory holds only a window: for each *lane* (destination,
//! precedence) the first few sequence numbers in store order. Choosing what to send next reads
//! lane heads and never touches the disk; a lane refills from the store when it runs dry.
//!
//! Lane invariant: every stored entry of a lane with `seq <= cursor` is in `buf`, in flight on
//! some link (the caller's `in_flight` predicate), or already deleted; entries above `cursor`
//! exist in the store only if `more` is set.

use std::collections::{BTreeMap, VecDeque};

use super::schema;
use super::store::{Store, StoreError, Table};
use super::types::{NodeId, Precedence};

/// Entries kept in memory per lane.
const LANE_WINDOW: usize = 1024;

#[derive(Debug, Default)]
struct Lane {
    buf: VecDeque<u64>,
    cursor: Option<u64>,
    more: bool,
}

impl Lane {
    fn is_exhausted(&self) -> bool {
        self.buf.is_empty() && !self.more
    }

    fn insert_sorted(&mut self, seq: u64) {
        if let Err(at) = self.buf.binary_search(&seq) {
            self.buf.insert(at, seq);
        }
        if self.buf.len() > LANE_WINDOW {
            self.buf.pop_back();
            self.cursor = self.buf.back().copied();
            self.more = true;
        }
    }
}

/// The lanes of one node, indexed by precedence rank (FLASH first) then destination.
#[derive(Debug, Default)]
pub struct QueueIndex {
    lanes: [BTreeMap<NodeId, Lane>; 4],
}

impl QueueIndex {
    /// Finds every non-empty lane in the store, without loading their entries: one short scan
    /// per lane, so a restart with a million held messages is still quick.
    pub fn load(store: &mut dyn Store) -> Result<QueueIndex, StoreError> {
        let mut index = QueueIndex::default();
        let mut from: Vec<u8> = Vec::new();
        loop {
            let mut found = None;
            store.scan(Table::Queue, &from, None, &mut |k, _| {
                found = schema::parse_queue_key(k);
                false
            })?;
            let Some((dest, p, _)) = found else { break };
            // Skip to the first key after this lane.
            from = schema::queue_lane_prefix(&dest, p);
            if let Some(last) = from.last_mut() {
                *last += 1;
            }
            index.lanes[p.rank() as usize]
                .insert(dest, Lane { buf: VecDeque::new(), cursor: None, more: true });
        }
        Ok(index)
    }

    fn lane(&mut self, dest: &NodeId, p: Precedence) -> Option<&mut Lane> {
        self.lanes[p.rank() as usize].get_mut(dest)
    }

    /// A new entry, with a seq above every other of its lane.
    pub fn push(&mut self, dest: &NodeId, p: Precedence, seq: u64) {
        let lane = self.lanes[p.rank() as usize].entry(dest.clone()).or_default();
        if lane.more || lane.buf.len() >= LANE_WINDOW {
            lane.more = true;
        } else {
            lane.buf.push_back(seq);
            lane.cursor = Some(seq);
        }
    }

    /// An entry that was in flight and is owed again.
    pub fn restore(&mut self, dest: &NodeId, p: Precedence, seq: u64) {
        let lane = self.lanes[p.rank() as usize].entry(dest.clone()).or_default();
        if lane.cursor.is_none_or(|c| seq > c) {
            // Above the window: the store still has it, and a refill will find it.
            lane.more = true;
        } else {
            lane.insert_sorted(seq);
        }
    }

    /// An entry leaves the window: offered, delivered, expired or refused.
    pub fn take(&mut self, dest: &NodeId, p: Precedence, seq: u64) {
        if let Some(lane) = self.lane(dest, p)
            && let Ok(i) = lane.buf.binary_search(&seq)
        {
            lane.buf.remove(i);
        }
    }

    /// The oldest entry of a lane that is not in flight, refilling from the store if needed.
    pub fn head(
        &mut self,
        store: &mut dyn Store,
        dest: &NodeId,
        p: Precedence,
        in_flight: &dyn Fn(u64) -> bool,
    ) -> Result<Option<u64>, StoreError> {
        let rank = p.rank() as usize;
        let Some(lane) = self.lanes[rank].get_mut(dest) else {
            return Ok(None);
        };
        if lane.buf.is_empty() && lane.more {
            refill(store, dest, p, lane, in_flight)?;
        }
        let head = lane.buf.front().copied();
        if lane.is_exhausted() {
            self.lanes[rank].remove(dest);
        }
        Ok(head)
    }

    /// The entries of a lane's window in seq order (what `head` refilled), not in flight.
    pub fn window(&self, dest: &NodeId, p: Precedence) -> impl Iterator<Item = u64> + '_ {
        self.lanes[p.rank() as usize].get(dest).into_iter().flat_map(|l| l.buf.iter().copied())
    }

    /// Destinations with a lane of precedence `p` (possibly exhausted until the next `head`).
    pub fn destinations(&self, p: Precedence) -> impl Iterator<Item = &NodeId> {
        self.lanes[p.rank() as usize].keys()
    }

    /// Whether any lane may still hold entries.
    pub fn is_empty(&self) -> bool {
        self.lanes.iter().all(BTreeMap::is_empty)
    }
}

fn refill(
    store: &mut dyn Store,
    dest: &NodeId,
    p: Precedence,
    lane: &mut Lane,
    in_flight: &dyn Fn(u64) -> bool,
) -> Result<(), StoreError> {
    let prefix = schema::queue_lane_prefix(dest, p);
    let from = match lane.cursor {
        Some(c) => schema::queue_key(dest, p, c.saturating_add(1)),
        None => prefix.clone(),
    };
    let mut end = prefix;
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let mut found = Vec::new();
    let mut last = None;
    let mut full = false;
    store.scan(Table::Queue, &from, Some(&end), &mut |k, _| {
        let Some(seq) = k.len().checked_sub(8).and_then(|i| schema::read_u64(&k[i..])) else {
            return true;
        };
        last = Some(seq);
        if !in_flight(seq) {
            found.push(seq);
        }
        full = found.len() >= LANE_WINDOW;
        !full
    })?;
    if let Some(l) = last {
        lane.cursor = Some(l);
    }
    lane.buf.extend(found);
    lane.more = full;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    fn n(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn stored(store: &mut MemStore, dest: &NodeId, p: Precedence, seq: u64) {
        store.put(Table::Queue, &schema::queue_key(dest, p, seq), b"").unwrap();
    }

    fn drain(q: &mut QueueIndex, store: &mut MemStore, dest: &NodeId, p: Precedence) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(seq) = q.head(store, dest, p, &|_| false).unwrap() {
            q.take(dest, p, seq);
            store.delete(Table::Queue, &schema::queue_key(dest, p, seq)).unwrap();
            out.push(seq);
        }
        out
    }

    #[test]
    fn pushes_beyond_the_window_come_back_from_the_store_in_order() {
        let mut store = MemStore::new();
        let mut q = QueueIndex::default();
        let d = n("township-01");
        for seq in 0..1000 {
            stored(&mut store, &d, Precedence::Routine, seq);
            q.push(&d, Precedence::Routine, seq);
        }
        assert_eq!(
            drain(&mut q, &mut store, &d, Precedence::Routine),
            (0..1000).collect::<Vec<_>>()
        );
        assert!(q.is_empty());
    }

    #[test]
    fn load_finds_every_lane_and_skips_in_flight_entries() {
        let mut store = MemStore::new();
        let (a, b) = (n("a"), n("b"));
        for seq in 0..600 {
            stored(&mut store, &a, Precedence::Flash, seq);
        }
        stored(&mut store, &b, Precedence::Routine, 7);
        stored(&mut store, &a, Precedence::Routine, 3);
        let mut q = QueueIndex::load(&mut store).unwrap();
        assert_eq!(q.destinations(Precedence::Flash).collect::<Vec<_>>(), vec![&a]);
        assert_eq!(q.destinations(Precedence::Routine).collect::<Vec<_>>(), vec![&a, &b]);
        let in_flight = |seq: u64| seq.is_multiple_of(2);
        assert_eq!(q.head(&mut store, &a, Precedence::Flash, &in_flight).unwrap(), Some(1));
    }

    #[test]
    fn restored_entries_keep_their_place() {
        let mut store = MemStore::new();
        let mut q = QueueIndex::default();
        let d = n("d");
        for seq in 1..=5 {
            stored(&mut store, &d, Precedence::Priority, seq);
            q.push(&d, Precedence::Priority, seq);
        }
        // Offer 1 and 2, then the link fails and they are owed again.
        q.take(&d, Precedence::Priority, 1);
        q.take(&d, Precedence::Priority, 2);
        q.restore(&d, Precedence::Priority, 2);
        q.restore(&d, Precedence::Priority, 1);
        assert_eq!(drain(&mut q, &mut store, &d, Precedence::Priority), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_full_window_that_gets_a_restore_spills_to_the_store() {
        let mut store = MemStore::new();
        let mut q = QueueIndex::default();
        let d = n("d");
        for seq in 0..(LANE_WINDOW as u64 + 10) {
            stored(&mut store, &d, Precedence::Flash, seq);
            q.push(&d, Precedence::Flash, seq);
        }
        let head = q.head(&mut store, &d, Precedence::Flash, &|_| false).unwrap();
        assert_eq!(head, Some(0));
        q.take(&d, Precedence::Flash, 0);
        q.restore(&d, Precedence::Flash, 0);
        let all = drain(&mut q, &mut store, &d, Precedence::Flash);
        assert_eq!(all, (0..(LANE_WINDOW as u64 + 10)).collect::<Vec<_>>());
    }
}
