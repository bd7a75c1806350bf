//! Choosing what each link carries next: strict precedence, then oldest first, within the
//! link's window and rate (see `core::link` for why that never lets a lower class delay a
//! higher one).

use super::frame::Frame;
use super::link::{LinkId, Offer};
use super::node::{Node, Transmit};
use super::routing::edge_cost;
use super::store::StoreError;
use super::types::{NodeId, Precedence, Time};

/// Routes looked up during one `fill`.
type RouteCache = rustc_hash::FxHashMap<(NodeId, Precedence), Option<LinkId>>;

enum Offered {
    /// An offer went out; look for the next.
    Sent,
    /// The candidate is gone (expired or vanished); look again.
    Skipped,
    /// The link has no room for it; stop until an answer frees some.
    Blocked,
}

impl Node {
    /// The link to use towards neighbour `hop` for precedence `p`: the cheapest usable one.
    pub(super) fn link_for(&self, hop: &NodeId, p: Precedence) -> Option<LinkId> {
        self.links
            .values()
            .filter(|l| l.up && &l.info.peer == hop)
            .min_by_key(|l| {
                let rtt = l.srtt.unwrap_or_else(|| l.one_way_delay() * 2);
                (edge_cost(&l.cfg, rtt, (l.loss * 1e6) as u32, p), l.id)
            })
            .map(|l| l.id)
    }

    /// The link a message for `dest` of precedence `p` leaves on, if there is a route.
    pub(super) fn route(&mut self, dest: &NodeId, p: Precedence) -> Option<LinkId> {
        let hop = self.routing.next_hop(dest, p)?.clone();
        self.link_for(&hop, p)
    }

    /// Offers as much as every link has room for.
    pub(super) fn fill(&mut self, now: Time) -> Result<(), StoreError> {
        if self.queue.is_empty() {
            return Ok(());
        }
        // Routes cannot change while filling: look each one up once.
        let mut routes = RouteCache::default();
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        for id in ids {
            self.fill_link(now, id, &mut routes)?;
        }
        Ok(())
    }

    fn cached_route(
        &mut self,
        routes: &mut RouteCache,
        dest: &NodeId,
        p: Precedence,
    ) -> Option<LinkId> {
        if let Some(r) = routes.get(&(dest.clone(), p)) {
            return *r;
        }
        let r = self.route(dest, p);
        routes.insert((dest.clone(), p), r);
        r
    }

    fn fill_link(
        &mut self,
        now: Time,
        id: LinkId,
        routes: &mut RouteCache,
    ) -> Result<(), StoreError> {
        loop {
            let Some(link) = self.links.get_mut(&id) else { return Ok(()) };
            if !link.accepting(now) {
                return Ok(());
            }
            let Some((p, seq, dest)) = self.next_candidate(id, routes)? else { return Ok(()) };
            let has_room = self.links.get_mut(&id).is_some_and(|l| l.has_room(p, 0, now));
            if !has_room {
                return Ok(());
            }
            match self.offer(now, id, p, seq, dest, routes)? {
                Offered::Sent | Offered::Skipped => {}
                Offered::Blocked => return Ok(()),
            }
        }
    }

    /// The highest-precedence, oldest message routed over link `id`.
    fn next_candidate(
        &mut self,
        id: LinkId,
        routes: &mut RouteCache,
    ) -> Result<Option<(Precedence, u64, NodeId)>, StoreError> {
        for p in Precedence::DESCENDING {
            let dests: Vec<NodeId> = self.queue.destinations(p).cloned().collect();
            let mut best: Option<(u64, NodeId)> = None;
            for d in dests {
                if self.cached_route(routes, &d, p) != Some(id) {
                    continue;
                }
                let inflight = &self.inflight;
                let head = self.queue.head(self.store.as_mut(), &d, p, &|seq| {
                    inflight.contains(&(seq, d.clone()))
                })?;
                if let Some(seq) = head
                    && best.as_ref().is_none_or(|(s, _)| seq < *s)
                {
                    best = Some((seq, d));
                }
            }
            if let Some((seq, d)) = best {
                return Ok(Some((p, seq, d)));
            }
        }
        Ok(None)
    }

    /// Offers held message `seq` on link `id`, with every destination it owes that is routed
    /// the same way: one copy per outgoing link, not one per destination.
    fn offer(
        &mut self,
        now: Time,
        id: LinkId,
        p: Precedence,
        seq: u64,
        dest: NodeId,
        routes: &mut RouteCache,
    ) -> Result<Offered, StoreError> {
        let Some(stored) = self.load_message(seq)? else {
            // Settled or expired meanwhile; its queue entry is stale.
            self.queue.take(&dest, p, seq);
            self.store
                .delete(super::store::Table::Queue, &super::schema::queue_key(&dest, p, seq))?;
            return Ok(Offered::Skipped);
        };
        let env = &stored.envelope;
        let age = env.age + now.saturating_since(stored.received_at);
        let deadline = stored.deadline();
        if age >= env.lifetime {
            self.expire_one(now, deadline, seq)?;
            return Ok(Offered::Skipped);
        }
        let subset = if env.destinations.len() == 1 {
            vec![dest]
        } else {
            let mut subset = Vec::new();
            for d in env.destinations.clone() {
                let owed = d == dest
                    || (!self.inflight.contains(&(seq, d.clone()))
                        && self.cached_route(routes, &d, p) == Some(id)
                        && self
                            .store
                            .get(super::store::Table::Queue, &super::schema::queue_key(&d, p, seq))?
                            .is_some());
                if owed {
                    subset.push(d);
                }
            }
            subset
        };
        let Some(link) = self.links.get_mut(&id) else { return Ok(Offered::Blocked) };
        let mut copy = env.clone();
        copy.age = age + link.one_way_delay();
        copy.hop_count += 1;
        copy.destinations = subset.clone();
        let weight = copy.weight();
        if !link.has_room(p, weight, now) {
            return Ok(Offered::Blocked);
        }
        for d in &subset {
            self.queue.take(d, p, seq);
            self.inflight.insert((seq, d.clone()));
        }
        let number = link.record_offer(Offer {
            id: env.id,
            seq,
            precedence: p,
            dests: subset,
            weight,
            sent_at: now,
            deadline,
            held_weight: env.weight(),
            multi: env.destinations.len() > 1,
            local_origin: stored.from.is_none() && env.origin == self.cfg.node,
            from: stored.from.clone(),
        });
        self.transmits.push_back(Transmit {
            link: id,
            frame: Frame::Offer { offer: number, envelope: copy },
        });
        Ok(Offered::Sent)
    }
}
