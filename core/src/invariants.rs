//! What must hold between batches, checked: the core's accounting against itself and against
//! the store. A fuzzer or a seed sweep finds only what something asserts; this is what they
//! assert.

use std::collections::{BTreeMap, BTreeSet};

use super::node::Node;
use super::schema;
use super::store::{StoreError, Table};
use super::types::{MessageId, NodeId, Precedence};
use crate::wire;

/// The `Messages` rows `check_invariants` decoded, by sequence number: the row's bytes and
/// what was read from them. A row whose bytes are unchanged is not decoded again (a row is
/// written once, but a sequence number may come back after a rolled-back batch, so the
/// bytes, not the number, decide).
#[derive(Default)]
pub(super) struct CheckedRows {
    rows: BTreeMap<u64, (Vec<u8>, RowFacts)>,
    /// The last summary of the committed store, and the store generation it is of.
    summary: Option<(u64, StoreSummary)>,
}

/// What the invariants compare the in-memory accounting with.
#[derive(Debug)]
struct StoreSummary {
    counts: [u64; 4],
    bytes: u64,
    owed: BTreeSet<(u64, NodeId)>,
    members: usize,
    vouched: usize,
    bound: BTreeSet<MessageId>,
}

impl std::fmt::Debug for CheckedRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckedRows({} rows)", self.rows.len())
    }
}

/// What the invariants need of a held message: precedence, weight, destination count, id
/// and origin.
type RowFacts = (Precedence, u64, usize, MessageId, NodeId);

/// One broken invariant, with what was expected and found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant broken at {node}: {what}")]
pub struct Violation {
    pub node: NodeId,
    pub what: String,
}

impl Node {
    /// Checks every invariant of the core against itself and its store's committed state.
    /// Call it between batches (after [`Node::commit`] returned, before the next input); it
    /// reads the whole store after every commit that changed it (new message rows decoded), so it
    /// is for tests, fuzzing and simulations, not the hot path.
    ///
    /// - Offers in flight: the node's set of (seq, destination) pairs is exactly the union of
    ///   every link's offers, each link's in-flight bytes are the sum of its offers' weights,
    ///   and every pair in flight is still owed (its queue entry exists).
    /// - Held messages: the held counts per precedence and the held bytes equal what the
    ///   `Messages` table holds; every message has its expiry entry and at least one queue
    ///   entry; a message owed to several destinations has a reference count equal to its
    ///   queue entries; every queue and expiry entry names a held message.
    /// - Custody: no answer, acceptance or unsigned envelope waits once a batch is committed.
    /// - Membership and bindings: the in-memory views equal their tables.
    /// - The held-id index names exactly the held messages, by id, seq and origin.
    pub fn check_invariants(&mut self) -> Result<(), Violation> {
        if self.poisoned.is_some() {
            return Ok(()); // a doomed batch: the next commit rolls back and reloads
        }
        let found = match self
            .check_custody_buffers()
            .and_then(|()| self.check_inflight())
            .and_then(|()| self.routing.check())
        {
            Err(what) => Err(what),
            Ok(()) => {
                match self.check_store().and_then(|r| Ok(r.and(self.check_objectives_state()?))) {
                    Ok(result) => result,
                    Err(e) => Err(format!("store unreadable: {e}")),
                }
            }
        };
        found.map_err(|what| Violation { node: self.cfg.node.clone(), what })
    }

    /// The overdue counts match the alarms stored, and the earliest objective is scheduled.
    fn check_objectives_state(&mut self) -> Result<Result<(), String>, StoreError> {
        let stored = self.count_overdue()?;
        if stored != self.overdue {
            return Ok(Err(format!(
                "overdue counts {:?} in memory, {stored:?} in the store",
                self.overdue
            )));
        }
        if let Some(first) = self.peek_objective()?
            && self.next_objective.is_none_or(|t| t > first)
        {
            return Ok(Err(format!(
                "an objective due at {first:?} is not scheduled (next: {:?})",
                self.next_objective
            )));
        }
        Ok(Ok(()))
    }

    fn check_custody_buffers(&self) -> Result<(), String> {
        if self.store.dirty() {
            return Err("the store has uncommitted writes between batches".into());
        }
        if !self.answers.is_empty() || !self.unsealed.is_empty() {
            let (at_commit, awaiting, released) = self.answers.counts();
            return Err(format!(
                "left after the commit: {at_commit} answers for the commit, {awaiting} awaiting \
                 downstream, {released} released, {} unsigned envelopes",
                self.unsealed.len()
            ));
        }
        Ok(())
    }

    fn check_inflight(&self) -> Result<(), String> {
        let mut union = BTreeSet::new();
        for link in self.links.values() {
            link.check_inflight()?;
            for offer in link.inflight.values() {
                for d in &offer.dests {
                    if !union.insert((offer.seq, d.clone())) {
                        return Err(format!("({}, {d}) offered on two links at once", offer.seq));
                    }
                }
            }
        }
        let node: BTreeSet<(u64, NodeId)> = self.inflight.iter().cloned().collect();
        if node != union {
            let extra: Vec<_> = node.difference(&union).take(3).collect();
            let missing: Vec<_> = union.difference(&node).take(3).collect();
            return Err(format!(
                "in-flight pairs disagree: node only {extra:?}, links only {missing:?}"
            ));
        }
        Ok(())
    }

    fn check_store(&mut self) -> Result<Result<(), String>, StoreError> {
        // The committed store changes only at a commit that wrote something: between two
        // such commits its summary is the same, and only the in-memory side is compared again.
        let summary = match self.checked_rows.summary.take() {
            Some((generation, s)) if generation == self.store_generation => s,
            _ => match self.summarise_store()? {
                Ok(s) => s,
                Err(what) => return Ok(Err(what)),
            },
        };
        let found = self.compare_with(&summary);
        self.checked_rows.summary = Some((self.store_generation, summary));
        Ok(found)
    }

    /// Reads what the invariants need of the store, checking what concerns the store alone:
    /// every row decodes, every queue and expiry entry names a held message, every held
    /// message is owed and expires, reference counts match queue entries.
    fn summarise_store(&mut self) -> Result<Result<StoreSummary, String>, StoreError> {
        // Messages: seq -> (precedence, weight, destination count).
        let mut messages: BTreeMap<u64, RowFacts> = BTreeMap::new();
        let mut bad = None;
        let mut previous = std::mem::take(&mut self.checked_rows.rows);
        let mut checked = BTreeMap::new();
        self.store.scan(Table::Messages, b"", None, &mut |k, v| {
            let Some(seq) = schema::read_u64(k) else {
                bad = Some(format!("message row with a bad key {k:?}"));
                return false;
            };
            let facts = match previous.remove(&seq) {
                Some((row, facts)) if row == v => Some((row, facts)),
                _ => wire::decode_stored(v).ok().map(|m| {
                    let e = &m.envelope;
                    let facts =
                        (e.precedence, e.weight(), e.destinations.len(), e.id, e.origin.clone());
                    (v.to_vec(), facts)
                }),
            };
            match facts {
                Some((row, facts)) => {
                    messages.insert(seq, facts.clone());
                    checked.insert(seq, (row, facts));
                }
                None => bad = Some(format!("undecodable message row {k:?}")),
            }
            bad.is_none()
        })?;
        self.checked_rows.rows = checked;
        if let Some(b) = bad {
            return Ok(Err(b));
        }
        let mut queued: BTreeMap<u64, usize> = BTreeMap::new();
        let mut owed: BTreeSet<(u64, NodeId)> = BTreeSet::new();
        let mut stray = None;
        self.store.scan(Table::Queue, b"", None, &mut |k, _| {
            match schema::parse_queue_key(k) {
                Some((d, p, seq)) if messages.get(&seq).is_some_and(|m| m.0 == p) => {
                    *queued.entry(seq).or_default() += 1;
                    owed.insert((seq, d));
                }
                _ => stray = Some(format!("queue entry {k:?} names no held message")),
            }
            stray.is_none()
        })?;
        if let Some(s) = stray {
            return Ok(Err(s));
        }
        let mut expiring: BTreeSet<u64> = BTreeSet::new();
        self.store.scan(Table::Expiry, b"", None, &mut |k, _| {
            if let Some(seq) = k.get(8..).and_then(schema::read_u64) {
                expiring.insert(seq);
            }
            true
        })?;
        let mut indexed = 0usize;
        let mut misindexed = None;
        self.store.scan(Table::HeldIds, b"", None, &mut |k, v| {
            indexed += 1;
            let seq = k.get(16..).and_then(schema::read_u64);
            let ok = seq
                .and_then(|seq| messages.get(&seq))
                .is_some_and(|m| k[..16] == m.3.0 && v == m.4.as_str().as_bytes());
            if !ok {
                misindexed = Some(format!("held-id entry {k:?} names no such held message"));
            }
            misindexed.is_none()
        })?;
        if let Some(m) = misindexed {
            return Ok(Err(m));
        }
        if indexed != messages.len() {
            return Ok(Err(format!("{} held messages, {indexed} held-id entries", messages.len())));
        }
        for (seq, (_, _, dests, _, _)) in &messages {
            let q = queued.get(seq).copied().unwrap_or(0);
            if q == 0 {
                return Ok(Err(format!("message {seq} is held but owed to no one")));
            }
            if !expiring.contains(seq) {
                return Ok(Err(format!("message {seq} has no expiry entry")));
            }
            if *dests > 1 {
                let refs = self.store.get(Table::Refs, &schema::seq_key(*seq))?;
                let refs = refs.as_deref().and_then(schema::read_u64).unwrap_or(0);
                if refs != q as u64 {
                    return Ok(Err(format!("message {seq}: {refs} references, {q} queue entries")));
                }
            }
        }
        if let Some(seq) = expiring.iter().find(|s| !messages.contains_key(s)) {
            return Ok(Err(format!("expiry entry for message {seq}, which is not held")));
        }
        let mut counts = [0u64; 4];
        let mut bytes = 0u64;
        for (p, w, ..) in messages.values() {
            counts[p.index()] += 1;
            bytes += w;
        }
        let mut members = 0usize;
        self.store.scan(Table::Members, b"", None, &mut |_, _| {
            members += 1;
            true
        })?;
        let mut vouched = 0usize;
        self.store.scan(Table::Vouched, b"", None, &mut |_, v| {
            vouched += crate::wire::decode_area_summary(v).map_or(0, |m| m.len());
            true
        })?;
        let mut bound: BTreeSet<MessageId> = BTreeSet::new();
        self.store.scan(Table::Bindings, b"", None, &mut |k, _| {
            if let Ok(id) = <[u8; 16]>::try_from(k) {
                bound.insert(MessageId(id));
            }
            true
        })?;
        Ok(Ok(StoreSummary { counts, bytes, owed, members, vouched, bound }))
    }

    /// The in-memory accounting against what the store holds.
    fn compare_with(&self, s: &StoreSummary) -> Result<(), String> {
        if s.counts != self.held.counts() || s.bytes != self.held.bytes() {
            return Err(format!(
                "held accounting: counters {:?} / {} bytes, store {:?} / {} bytes",
                self.held.counts(),
                self.held.bytes(),
                s.counts,
                s.bytes
            ));
        }
        if let Some(pair) = self.inflight.iter().find(|pair| !s.owed.contains(*pair)) {
            return Err(format!("{pair:?} is in flight but no longer owed"));
        }
        if s.members != self.membership.own_count() {
            return Err(format!(
                "{} members' own adverts in memory, {} in the store",
                self.membership.own_count(),
                s.members
            ));
        }
        if s.vouched != self.membership.vouched_count() {
            return Err(format!(
                "{} members vouched for in memory, {} in the store",
                self.membership.vouched_count(),
                s.vouched
            ));
        }
        let in_memory: BTreeSet<MessageId> = self.bindings.keys().copied().collect();
        if s.bound != in_memory {
            return Err(format!(
                "{} bindings in memory, {} in the store",
                in_memory.len(),
                s.bound.len()
            ));
        }
        Ok(())
    }
}
