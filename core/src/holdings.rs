//! What a node holds, in numbers: messages per precedence, bytes, and bytes per neighbour they
//! came from. The store's `Messages` table is the truth; these are kept in step with it by
//! [`Holdings::added`] and [`Holdings::removed`] (and checked against it by
//! `Node::check_invariants`), and the totals persist in the `Meta` table with each commit.

use rustc_hash::FxHashMap;

use super::schema::{self, meta};
use super::store::{Store, StoreError, Table};
use super::types::{NodeId, Precedence};

#[derive(Debug, Default)]
pub(super) struct Holdings {
    bytes: u64,
    count: [u64; 4],
    /// Bytes held here that came from each neighbour, counted since this start (a restart does
    /// not read every held message back to rebuild it): the per-neighbour share of the store.
    from: FxHashMap<NodeId, u64>,
}

fn count_key(p: Precedence) -> Vec<u8> {
    format!("held_count_{}", p.as_str()).into_bytes()
}

impl Holdings {
    /// The totals as last committed.
    pub(super) fn load(store: &mut dyn Store) -> Result<Holdings, StoreError> {
        let mut get = |k: &[u8]| -> Result<u64, StoreError> {
            Ok(store.get(Table::Meta, k)?.as_deref().and_then(schema::read_u64).unwrap_or(0))
        };
        let mut h = Holdings { bytes: get(meta::HELD_BYTES)?, ..Holdings::default() };
        for p in Precedence::DESCENDING {
            h.count[p.index()] = get(&count_key(p))?;
        }
        Ok(h)
    }

    /// Writes the totals into the open batch.
    pub(super) fn write(&self, store: &mut dyn Store) -> Result<(), StoreError> {
        store.put(Table::Meta, meta::HELD_BYTES, &self.bytes.to_be_bytes())?;
        for p in Precedence::DESCENDING {
            store.put(Table::Meta, &count_key(p), &self.count[p.index()].to_be_bytes())?;
        }
        Ok(())
    }

    /// A message of precedence `p` and `weight` bytes is now held, from neighbour `from`.
    pub(super) fn added(&mut self, p: Precedence, weight: u64, from: Option<&NodeId>) {
        self.bytes += weight;
        self.count[p.index()] += 1;
        if let Some(peer) = from {
            *self.from.entry(peer.clone()).or_default() += weight;
        }
    }

    /// A held message is gone (handed on, delivered, expired or refused).
    pub(super) fn removed(&mut self, p: Precedence, weight: u64, from: Option<&NodeId>) {
        debug_assert!(self.bytes >= weight, "held bytes below a held message");
        debug_assert!(self.count[p.index()] >= 1, "held count below a held message");
        self.bytes = self.bytes.saturating_sub(weight);
        let c = &mut self.count[p.index()];
        *c = c.saturating_sub(1);
        if let Some(peer) = from
            && let Some(h) = self.from.get_mut(peer)
        {
            // Saturating on purpose: a message held before this start was never counted.
            *h = h.saturating_sub(weight);
        }
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Messages held, per precedence index.
    pub(super) fn counts(&self) -> [u64; 4] {
        self.count
    }

    pub(super) fn total(&self) -> u64 {
        self.count.iter().sum()
    }

    /// Bytes held that came from `peer` (since this start).
    pub(super) fn from(&self, peer: &NodeId) -> u64 {
        self.from.get(peer).copied().unwrap_or(0)
    }

    #[cfg(test)]
    pub(super) fn skew(&mut self, p: Precedence, count: i64, bytes: i64) {
        self.count[p.index()] = self.count[p.index()].saturating_add_signed(count);
        self.bytes = self.bytes.saturating_add_signed(bytes);
    }
}
