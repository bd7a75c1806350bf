//! Choosing what each link carries next: strict precedence, then oldest first, within the
//! link's window and rate (see `core::link` for why that never lets a lower class delay a
//! higher one).
//!
//! A message held past its delivery objective is *late* (`CoreConfig::escalate`): it takes the
//! route that avoids no medium (`Routing::next_hop_late`). Every hop can tell, from the age the
//! message carries, so the relays downstream escalate it too. Only where the two routes of a
//! lane differ does the scheduler look at how old the lane's messages are (those in its
//! in-memory window, up to `LATE_SCAN` of them: a late message that came back from a relay
//! has a newer seq than the on-time ones it must not wait behind), so lanes that escalation
//! would not move cost nothing extra.

use std::time::Duration;

use super::frame::Frame;
use super::link::{LinkId, Offer};
use super::node::{Node, Transmit};
use super::routing::edge_cost;
use super::store::StoreError;
use super::types::{Body, NodeId, Precedence, Time};

/// Routes looked up during one `fill`, by (destination, precedence, late).
type RouteCache = rustc_hash::FxHashMap<(NodeId, Precedence, bool), Option<LinkId>>;

/// When held messages become late, by seq, for lanes whose routes differ. Bounded: cleared
/// when it grows past this (it is only a cache of what the store says).
const LATE_CACHE: usize = 1 << 18;

/// How far into a lane `pick_in_lane` looks: its cost stays bounded with a deep backlog, at
/// the price of a late message further back waiting until those ahead of it have gone.
const LATE_SCAN: usize = 256;

enum Offered {
    /// An offer went out; look for the next.
    Sent,
    /// The candidate is gone (expired or vanished); look again.
    Skipped,
    /// The link has no room for it; stop until an answer frees some.
    Blocked,
}

impl Node {
    /// The link to use towards neighbour `hop` for precedence `p` (for a `late` message):
    /// the cheapest usable one that may carry it.
    pub(super) fn link_for(&self, hop: &NodeId, p: Precedence, late: bool) -> Option<LinkId> {
        self.links
            .values()
            .filter(|l| l.up && &l.info.peer == hop)
            .filter_map(|l| {
                let rtt = l.srtt.unwrap_or_else(|| l.one_way_delay() * 2);
                Some((edge_cost(&l.cfg, rtt, (l.loss * 1e6) as u32, p, late)?, l.id))
            })
            .min()
            .map(|(_, id)| id)
    }

    /// The link a message for `dest` of precedence `p` leaves on (a `late` one), if there is a
    /// route.
    pub(super) fn route(&mut self, dest: &NodeId, p: Precedence, late: bool) -> Option<LinkId> {
        let hop = if late {
            self.routing.next_hop_late(dest, p)?.clone()
        } else {
            self.routing.next_hop(dest, p)?.clone()
        };
        self.link_for(&hop, p, late)
    }

    /// Whether lateness can move a message of precedence `p` at all: escalation is on and
    /// some medium avoids `p` (none avoids FLASH). If not, its late route is its on-time one,
    /// and no lane of `p` pays for the late table or for reading how old its messages are.
    fn escalates(&self, p: Precedence) -> bool {
        self.cfg.escalate && self.cfg.media.values().any(|m| p < m.min_precedence)
    }

    /// When held message `seq` becomes late (`None`: it is no longer held).
    fn late_at(&mut self, seq: u64) -> Result<Option<Time>, StoreError> {
        if let Some(t) = self.late_at.get(&seq) {
            return Ok(Some(*t));
        }
        let Some(stored) = self.load_message(seq)? else { return Ok(None) };
        let env = &stored.envelope;
        let objective = self.objective_for(&env.to, env.precedence);
        // Late once its age (carried from hop to hop, plus the time held here) reaches the
        // objective. A receipt counts the age of the message it reports too: it is what the
        // origin's alarm waits for, so a receipt for a late message is late from the start.
        let age = env.age
            + match &env.body {
                Body::Report(r) => r.age,
                _ => Duration::ZERO,
            };
        let at = stored.received_at + objective.saturating_sub(age);
        if self.late_at.len() >= LATE_CACHE {
            self.late_at.clear();
        }
        self.late_at.insert(seq, at);
        Ok(Some(at))
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
        late: bool,
    ) -> Option<LinkId> {
        let late = late && self.escalates(p);
        if let Some(r) = routes.get(&(dest.clone(), p, late)) {
            return *r;
        }
        let r = self.route(dest, p, late);
        routes.insert((dest.clone(), p, late), r);
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
            let Some((p, seq, dest, late)) = self.next_candidate(now, id, routes)? else {
                return Ok(());
            };
            let has_room = self.links.get_mut(&id).is_some_and(|l| l.has_room(p, 0, now));
            if !has_room {
                return Ok(());
            }
            match self.offer(now, id, p, seq, dest, late, routes)? {
                Offered::Sent | Offered::Skipped => {}
                Offered::Blocked => return Ok(()),
            }
        }
    }

    /// The highest-precedence, oldest message routed over link `id`, and whether it is late.
    fn next_candidate(
        &mut self,
        now: Time,
        id: LinkId,
        routes: &mut RouteCache,
    ) -> Result<Option<(Precedence, u64, NodeId, bool)>, StoreError> {
        for p in Precedence::DESCENDING {
            let dests: Vec<NodeId> = self.queue.destinations(p).cloned().collect();
            let mut best: Option<(u64, NodeId, bool)> = None;
            for d in dests {
                let on_time = self.cached_route(routes, &d, p, false);
                let late = self.cached_route(routes, &d, p, true);
                if on_time != Some(id) && late != Some(id) {
                    continue;
                }
                let inflight = &self.inflight;
                let head = self.queue.head(self.store.as_mut(), &d, p, &|seq| {
                    inflight.contains(&(seq, d.clone()))
                })?;
                let Some(head) = head else { continue };
                let pick = if on_time == late {
                    // The same link either way: no need to know how old it is.
                    Some((head, false))
                } else {
                    self.pick_in_lane(now, id, &d, p, on_time, late)?
                };
                if let Some((seq, is_late)) = pick
                    && best.as_ref().is_none_or(|(s, _, _)| seq < *s)
                {
                    best = Some((seq, d, is_late));
                }
            }
            if let Some((seq, d, is_late)) = best {
                return Ok(Some((p, seq, d, is_late)));
            }
        }
        Ok(None)
    }

    /// The first message of lane (`dest`, `p`) that leaves on link `id`, where on-time messages
    /// take `on_time` and late ones `late`; and whether it is late. Notes when the next of
    /// the others turns late (`next_late`).
    fn pick_in_lane(
        &mut self,
        now: Time,
        id: LinkId,
        dest: &NodeId,
        p: Precedence,
        on_time: Option<LinkId>,
        late: Option<LinkId>,
    ) -> Result<Option<(u64, bool)>, StoreError> {
        let window: Vec<u64> = self.queue.window(dest, p).take(LATE_SCAN).collect();
        for seq in window {
            let is_late = match self.late_at(seq)? {
                Some(at) if at <= now => true,
                Some(at) => {
                    self.next_late = Some(self.next_late.map_or(at, |t| t.min(at)));
                    false
                }
                // Settled meanwhile: offering it clears the stale entry (`offer`).
                None if on_time == Some(id) || late == Some(id) => return Ok(Some((seq, false))),
                None => continue,
            };
            if (if is_late { late } else { on_time }) == Some(id) {
                return Ok(Some((seq, is_late)));
            }
        }
        Ok(None)
    }

    /// Offers held message `seq` on link `id`, with every destination it owes that is routed
    /// the same way: one copy per outgoing link, not one per destination.
    #[allow(clippy::too_many_arguments)]
    fn offer(
        &mut self,
        now: Time,
        id: LinkId,
        p: Precedence,
        seq: u64,
        dest: NodeId,
        late: bool,
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
                        && self.cached_route(routes, &d, p, late) == Some(id)
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
        // The origin's advert, if it waits under the link's cap, goes first: the peer may need
        // its key (a new one, say) to take the message.
        let origin = env.origin.clone();
        self.expedite_advert(now, id, &origin);
        let Some(link) = self.links.get_mut(&id) else { return Ok(Offered::Blocked) };
        let mut copy = env.clone();
        copy.age = age + link.one_way_delay();
        copy.hop_count += 1;
        copy.destinations = subset.clone();
        let weight = copy.weight();
        if !link.has_room(p, weight, now) {
            return Ok(Offered::Blocked);
        }
        if late {
            self.counters.escalated[p.index()] += 1;
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
