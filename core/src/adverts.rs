//! Link-state adverts: originating this node's own and flooding everyone else's.
//!
//! A node re-advertises when one of its links comes up or goes down and when its
//! subscriptions change (at most every `ADVERT_MIN_INTERVAL`), and refreshes its advert at a
//! third of the advert lifetime. A received advert newer than the held one is stored and sent
//! on over every other link; an older or equal one stops there, which ends the flood.
//!
//! Certificates cross a link once per connection (with peers that announce
//! [`wire::LEAN_ADVERTS`]): an advert goes without its certificate to a peer known to hold it
//! (`Link::peer_certs`: the peer's own, and any certificate an advert carried either way on
//! this connection), and the receiver puts back the one it holds before checking the
//! signature. A receiver that holds none, or whose copy does not verify the signature, drops
//! the advert without blaming the sender and sends its link-state summary again (at most every
//! [`ASK_AGAIN_INTERVAL`]); a summary makes the sender forget what the peer holds and answer
//! with the newer adverts, certificates and all. More than half of an advert is its certificate.
//!
//! Adverts leave each link through its [`AdvertQueue`], within the medium's `control_share`
//! of its bandwidth; a message offered on the link takes its origin's waiting advert along
//! (`expedite_advert`), since the peer may need the key in it.

use std::time::Duration;

use bytes::Bytes;

use super::frame::{Advert, AdvertLink, AreaMember, Frame};
use super::link::LinkId;
use super::node::{Node, Transmit};
use super::routing::Routing;
use super::store::{StoreError, Table};
use super::types::Time;
use crate::wire;

impl Node {
    /// This node's advert as it stands.
    pub(super) fn own_advert(&self, now: Time) -> Advert {
        let mut advert = Advert {
            node: self.cfg.node.clone(),
            role: self.cfg.role,
            seq: self.advert_seq,
            lifetime: self.cfg.advert_lifetime,
            age: Duration::ZERO,
            links: self
                .links
                .values()
                .map(|l| AdvertLink {
                    neighbour: l.info.peer.clone(),
                    medium: l.info.medium,
                    rtt: l.srtt.unwrap_or_else(|| l.one_way_delay() * 2),
                    loss_ppm: (l.loss * 1e6) as u32,
                    bandwidth_bps: l.cfg.bandwidth_bps,
                    up: l.up,
                })
                .collect(),
            groups: self.groups.iter().cloned().collect(),
            subscriptions: self.subscriptions.iter().cloned().collect(),
            certificate: bytes::Bytes::new(),
            signature: bytes::Bytes::new(),
            previous_certificates: Vec::new(),
            area: self.cfg.area.clone(),
            summary: Bytes::new(),
        };
        if self.is_area_border() {
            advert.summary = wire::encode_area_summary(&self.area_summary());
        }
        self.seal_advert(now, &mut advert);
        advert
    }

    /// Whether this node is an area border: a link of its leads into another area.
    pub(super) fn is_area_border(&self) -> bool {
        self.links.values().any(|l| l.peer_area.as_ref().is_some_and(|a| *a != self.cfg.area))
    }

    /// What this node, a border, says of its area: itself first, then every node of the area
    /// it reaches inside it.
    fn area_summary(&self) -> Vec<AreaMember> {
        let me = AreaMember {
            node: self.cfg.node.clone(),
            role: self.cfg.role,
            seq: self.advert_seq,
            groups: self.groups.iter().cloned().collect(),
            subscriptions: self.subscriptions.iter().cloned().collect(),
            costs: [Some(0); 5],
        };
        std::iter::once(me).chain(self.routing.area_members()).collect()
    }

    /// A border looks again at its area (after `SUMMARY_INTERVAL`, so that a burst of changes
    /// makes one new advert): if what it summarises changed, it advertises anew.
    pub(super) fn check_summary(&mut self, now: Time) {
        if self.summary_check.is_some_and(|t| now >= t) {
            self.summary_check = None;
            if self.is_area_border() && summary_shape(&self.area_summary()) != self.advertised_shape
            {
                self.advert_wanted = true;
            }
        }
    }

    /// Something in this node's area changed: a border will look at its summary again.
    pub(super) fn area_changed(&mut self, now: Time) {
        if self.summary_check.is_none() && self.is_area_border() {
            self.summary_check = Some(now + SUMMARY_INTERVAL);
        }
    }

    /// Issues a new advert (next sequence number) to every neighbour.
    pub(super) fn originate_advert(&mut self, now: Time) -> Result<(), StoreError> {
        self.advert_seq += 1;
        self.meta_dirty = true;
        let advert = self.own_advert(now);
        // A border's advert goes to every neighbour; so does the first after it stopped being
        // one (every area took the last); any other stays in the area.
        let was_border = self.last_own_advert.as_ref().is_some_and(Advert::is_border);
        // Read back from the advert: the area's five shortest-path trees were just grown for it.
        self.advertised_shape =
            wire::decode_area_summary(&advert.summary).map_or(0, |m| summary_shape(&m));
        self.last_own_advert = Some(advert.clone());
        let ids = self.flood_links(&advert, None, was_border);
        self.send_advert(now, &advert, &ids);
        self.advert_wanted = false;
        self.last_advert = Some(now);
        self.next_advert = now + self.cfg.advert_lifetime / 3;
        Ok(())
    }

    /// The advert last originated (signed once), or a fresh one if there is none.
    pub(super) fn current_advert(&self, now: Time) -> Advert {
        match &self.last_own_advert {
            Some(a) if a.seq == self.advert_seq => a.clone(),
            _ => self.own_advert(now),
        }
    }

    /// Sends `advert` on `links`, each copy aged by that link's one-way delay.
    fn send_advert(&mut self, now: Time, advert: &Advert, links: &[LinkId]) {
        for id in links {
            let Some(l) = self.links.get(id) else { continue };
            let mut a = advert.clone();
            a.age += l.one_way_delay();
            self.send_advert_to(now, *id, a);
        }
    }

    /// Queues one advert for one link under its control cap, and sends what the cap allows.
    pub(super) fn send_advert_to(&mut self, now: Time, link: LinkId, advert: Advert) {
        let Some(l) = self.links.get_mut(&link) else { return };
        l.adverts_out.push(advert, now);
        self.emit_adverts(now, link);
    }

    /// Sends the adverts waiting for `link` that its control cap has room for now, and asks
    /// the peer again for adverts if an ask was put off.
    pub(super) fn emit_adverts(&mut self, now: Time, link: LinkId) {
        while let Some(l) = self.links.get_mut(&link) {
            let Some((advert, queued)) = l.adverts_out.pop(now) else { break };
            self.emit_advert(now, link, advert, queued);
        }
        if self.links.get(&link).is_some_and(|l| l.ask_due(now)) {
            self.ask_adverts_now(now, link);
        }
    }

    /// Sends `origin`'s advert now if one waits for `link`, whatever the cap says (it counts
    /// against it): a message of `origin` is about to be offered there, and the peer may need
    /// the key the advert carries.
    ///
    /// With areas, a peer of another area than `origin`'s never had its advert flooded to it:
    /// the first message of `origin` on this connection takes the advert along (certificate
    /// included), which the peer keeps as membership and passes on the same way.
    pub(super) fn expedite_advert(&mut self, now: Time, link: LinkId, origin: &super::NodeId) {
        let Some(l) = self.links.get_mut(&link) else { return };
        if let Some((advert, queued)) = l.adverts_out.take(origin) {
            self.emit_advert(now, link, advert, queued);
            return;
        }
        let Some(trust) = &self.cfg.trust else { return };
        // Of this origin's area, the peer took its adverts as they flooded.
        let peer_area = l.peer_area.as_deref().unwrap_or(&self.cfg.area);
        let origin_area = match origin == &self.cfg.node {
            true => Some(self.cfg.area.as_str()),
            false => self
                .routing
                .area_of(origin)
                .or_else(|| self.membership.get(origin).map(|a| a.area.as_str())),
        };
        if origin_area.is_none_or(|a| a == peer_area) {
            return;
        }
        // The peer holds the certificate already (its newest: keys rotate).
        let cert = match origin == &self.cfg.node {
            true => trust.certificate(),
            false => self.keys.get(origin).map(|c| c.certificate.clone()).unwrap_or_default(),
        };
        if l.peer_certs.get(origin) == Some(&cert) {
            return;
        }
        let signed = if origin == &self.cfg.node {
            Some(self.current_advert(now))
        } else {
            self.routing.advert(origin, now).or_else(|| self.membership.get(origin).cloned())
        };
        if let Some(advert) = signed {
            self.emit_advert(now, link, advert, now);
            if let Some(l) = self.links.get_mut(&link) {
                l.peer_certs.insert(origin.clone(), cert);
            }
        }
    }

    /// Puts one advert on `link`: aged by its wait, without its certificate if the peer holds
    /// that already, counted against the cap and in the counters.
    fn emit_advert(&mut self, now: Time, link: LinkId, mut advert: Advert, queued: Time) {
        let Some(l) = self.links.get_mut(&link) else { return };
        advert.age += now.saturating_since(queued);
        if l.info.lean_adverts && !advert.certificate.is_empty() {
            if l.peer_certs.get(&advert.node) == Some(&advert.certificate) {
                advert.certificate = Bytes::new();
            } else {
                l.peer_certs.insert(advert.node.clone(), advert.certificate.clone());
            }
        }
        let size = wire::encode_advert(&advert).len() as u64;
        l.adverts_out.spend(size);
        l.counters.adverts_sent += 1;
        l.counters.advert_bytes += size;
        self.counters.adverts_sent += 1;
        self.counters.advert_bytes += size;
        self.transmits.push_back(Transmit { link, frame: Frame::LinkState(advert) });
    }

    /// An advert from the neighbour on `link`.
    pub(super) fn receive_advert(&mut self, now: Time, link: LinkId, mut advert: Advert) {
        let carried = !advert.certificate.is_empty();
        // Only a peer that announced lean adverts may leave certificates out; from any other
        // an advert without one is checked as it stands (and dropped: no certificate).
        let lean = self.links.get(&link).is_some_and(|l| l.info.lean_adverts);
        if carried {
            if let Some(l) = self.links.get_mut(&link) {
                l.peer_certs.insert(advert.node.clone(), advert.certificate.clone());
            }
        } else if self.cfg.trust.is_some() && lean {
            // Left out by a peer that believes this node holds it: put it back.
            match self.keys.get(&advert.node) {
                Some(c) => advert.certificate = c.certificate.clone(),
                None => {
                    self.ask_adverts_again(now, link, &advert.node, "no certificate held");
                    return;
                }
            }
        }
        if advert.node == self.cfg.node {
            // Our own advert comes back around every cycle in the mesh; only one newer than
            // ours, or as new but saying something else (from before a restart that lost its
            // sequence number: a replaced terminal starts again at 1), needs an answer: jump
            // past it, or the others keep the old one for its whole lifetime. "Something else"
            // is judged on what was signed: the copy came through the wire, which keeps RTTs
            // to the microsecond (comparing the fields themselves set off an advert storm).
            let same = |mine: &Advert| {
                super::trust::advert_signed_bytes(mine)
                    == super::trust::advert_signed_bytes(&advert)
            };
            let stale = advert.seq == self.advert_seq
                && self.last_own_advert.as_ref().is_none_or(|mine| !same(mine));
            if advert.seq > self.advert_seq || stale {
                self.advert_seq = advert.seq;
                self.advert_wanted = true;
                self.meta_dirty = true;
            }
            return;
        }
        // Membership takes any newer advert, even one whose lifetime ran out on the way
        // (a member cut off for long is still a member); routing takes only live ones.
        let for_routing = self.routing.wants(&advert);
        // With areas an advert may come for its certificate alone (ahead of its node's first
        // message into another area, `expedite_advert`), older than what a border said.
        // Its certificate counts if none is held, or if it is another than the one held and
        // the advert newer than the node's own advert held here (a key rotated), never to
        // roll a key back.
        let new_key = self.cfg.trust.is_some()
            && self.keys.get(&advert.node).is_none_or(|c| {
                c.certificate != advert.certificate
                    && self.membership.get(&advert.node).is_none_or(|a| a.seq < advert.seq)
            });
        if !(for_routing || new_key || self.membership.wants(&advert))
            || !self.check_advert(now, link, &advert, carried)
        {
            return;
        }
        // One copy of each certificate: the one the key was learned with. What else is kept
        // gets bytes of its own: a slice of the frame would keep alive the buffer the frame
        // was cut from (mesh:1000:5m peaked 2.3% lower with this).
        if let Some(c) = self.keys.get(&advert.node)
            && c.certificate == advert.certificate
        {
            advert.certificate = c.certificate.clone();
        } else {
            advert.certificate = super::types::shared_bytes(&advert.certificate);
        }
        // Every node that holds this advert holds the same signature and summary: in one
        // process (the simulator) they share the bytes.
        advert.signature = super::types::shared_bytes(&advert.signature);
        if advert.is_border() {
            advert.summary = super::types::shared_bytes(&advert.summary);
        }
        for c in &mut advert.previous_certificates {
            *c = super::types::shared_bytes(c);
        }
        let advert = std::sync::Arc::new(advert);
        self.learn_member(now, &advert);
        let was_border = self.routing.holds_border(&advert.node);
        if !for_routing || !self.routing.accept(advert.clone(), now) {
            return;
        }
        if advert.area == self.cfg.area {
            self.area_changed(now);
        } else if advert.is_border() {
            self.learn_area(now, &advert);
        }
        self.store_routed(now, &advert.node);
        let others = self.flood_links(&advert, Some(link), was_border);
        self.send_advert(now, &advert, &others);
    }

    /// The links `advert` is flooded on (but `from`): those whose peer takes it (its area's
    /// nodes, or everyone's for a border's), or all if the last advert of its node was a
    /// border's. A peer whose area is not known yet takes only borders'.
    fn flood_links(&self, advert: &Advert, from: Option<LinkId>, was_border: bool) -> Vec<LinkId> {
        self.links
            .iter()
            .filter(|(id, _)| Some(**id) != from)
            .filter(|(_, l)| {
                was_border
                    || match l.peer_area.as_deref() {
                        Some(area) => Routing::takes(area, advert),
                        // Not said yet (its summary is on the way): only what every area takes,
                        // unless this node is in no area. The answer to its summary brings it
                        // whatever else it lacks.
                        None if self.cfg.area.is_empty() => Routing::takes("", advert),
                        None => advert.is_border(),
                    }
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// A border of another area: the members its summary names, as membership (vouched for by
    /// its signature), so that groups and topics resolve to them.
    ///
    /// Not from a border of another deployment: a summary does not say which deployment each
    /// member is in, which `may_cross` needs (the shell refuses `area` beside federation).
    fn learn_area(&mut self, now: Time, border: &Advert) {
        if self.keys.get(&border.node).is_some_and(|c| c.deployment.is_some()) {
            return;
        }
        let Ok(members) = wire::decode_area_summary(&border.summary) else { return };
        for m in members {
            // Nodes whose adverts routing holds (this area's, borders') speak for themselves.
            if m.node == self.cfg.node || self.routing.holds(&m.node) {
                continue;
            }
            let vouched = super::membership::vouched_advert(&border.area, m);
            if self.membership.wants(&vouched) {
                self.learn_member(now, &std::sync::Arc::new(vouched));
            }
        }
    }

    /// Stores which advert of `node` routing holds (`Table::Lsdb`): its sequence number when
    /// membership holds the same advert (each advert is stored once, there), the whole advert
    /// when membership holds another (a newer one that ran out on its way, which routing did
    /// not take). A restart takes routing's adverts from this table.
    pub(super) fn store_routed(&mut self, now: Time, node: &super::NodeId) {
        let Some(routed) = self.routing.advert(node, now) else {
            // Taken in place of a border advert it removed (`Routing::accept`).
            let key = node.as_str().as_bytes().to_vec();
            self.guarded(|n| n.store.delete(Table::Lsdb, &key).map(|_| ()));
            return;
        };
        let row = match self.membership.get(node) {
            Some(m)
                if m.seq == routed.seq
                    && m.signature == routed.signature
                    && m.links == routed.links
                    && m.summary == routed.summary =>
            {
                routed.seq.to_be_bytes().to_vec()
            }
            _ => wire::encode_advert(&routed),
        };
        self.guarded(|n| n.store.put(Table::Lsdb, node.as_str().as_bytes(), &row));
    }

    /// An advert came without a certificate this node can check it with: nothing need be
    /// wrong with the sender (it believed this node held the certificate: one this node
    /// refused on a clock disagreement, say, or a renewal it has not seen), so the advert is
    /// dropped and the peer is sent this node's summary again, which makes it resend what is
    /// newer with the certificates.
    pub(super) fn ask_adverts_again(
        &mut self,
        now: Time,
        link: LinkId,
        node: &super::NodeId,
        why: &str,
    ) {
        self.counters.adverts_unchecked += 1;
        let Some(l) = self.links.get_mut(&link) else { return };
        tracing::info!(%link, %node, "advert without its certificate ({why}): asking for adverts again");
        // At most one ask an interval; one wanted sooner waits for the interval to end
        // (`Link::ask_due`), so the advert that set it off is not missed until the next one.
        l.ask_pending = true;
        if l.ask_due(now) {
            self.ask_adverts_now(now, link);
        }
    }

    /// Sends `link`'s peer this node's summary, which makes it resend what is newer with the
    /// certificates.
    fn ask_adverts_now(&mut self, now: Time, link: LinkId) {
        let Some(l) = self.links.get_mut(&link) else { return };
        l.ask_pending = false;
        l.adverts_asked = Some(now);
        let held = self.membership.summary();
        let area = self.cfg.area.clone();
        self.transmits.push_back(Transmit { link, frame: Frame::LsdbSummary { area, held } });
    }
}

/// What in a border's summary the rest of the deployment acts on when it changes: who is
/// reached for which precedence, and their roles, groups and subscriptions (not the costs,
/// which move with every RTT sample, nor sequence numbers: those go at the next refresh).
fn summary_shape(members: &[AreaMember]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    for m in members {
        (&m.node, m.role, &m.groups, &m.subscriptions).hash(&mut h);
        m.costs.map(|c| c.is_some()).hash(&mut h);
    }
    h.finish()
}

/// How long a border waits after a change in its area before it looks at its summary again.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(5);

/// How often a node asks one neighbour again for adverts it could not check.
pub const ASK_AGAIN_INTERVAL: Duration = Duration::from_secs(10);

/// Adverts waiting for room under one link's cap on link-state traffic
/// (`MediumConfig::control_share` of its bandwidth), oldest first. A newer advert of an origin
/// already waiting takes that one's place in the line: under a tight cap the link carries
/// each origin's newest state, not every step of it.
#[derive(Debug)]
pub(crate) struct AdvertQueue {
    order: std::collections::VecDeque<super::NodeId>,
    waiting: rustc_hash::FxHashMap<super::NodeId, (Advert, Time)>,
    /// Bytes a second (`None`: no cap), and the most that may go at once after a quiet spell.
    rate: Option<f64>,
    burst: f64,
    tokens: f64,
    at: Time,
}

impl AdvertQueue {
    /// A cap of `bytes_per_s` (`None`: none), starting with a full burst allowance.
    pub(crate) fn new(bytes_per_s: Option<f64>, now: Time) -> AdvertQueue {
        let burst = bytes_per_s.map_or(0.0, |r| (r * CONTROL_BURST.as_secs_f64()).max(4096.0));
        AdvertQueue {
            order: Default::default(),
            waiting: Default::default(),
            rate: bytes_per_s,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Adds `advert`, or puts it in place of an older one of its origin.
    pub(crate) fn push(&mut self, advert: Advert, now: Time) {
        match self.waiting.get_mut(&advert.node) {
            Some(held) if held.0.seq > advert.seq => {}
            Some(held) => *held = (advert, now),
            None => {
                self.order.push_back(advert.node.clone());
                self.waiting.insert(advert.node.clone(), (advert, now));
            }
        }
    }

    fn refill(&mut self, now: Time) {
        if let Some(rate) = self.rate {
            let secs = now.saturating_since(self.at).as_secs_f64();
            self.tokens = (self.tokens + secs * rate).min(self.burst);
        }
        self.at = self.at.max(now);
    }

    /// `origin`'s advert, if one waits, whatever the cap says.
    pub(crate) fn take(&mut self, origin: &super::NodeId) -> Option<(Advert, Time)> {
        let held = self.waiting.remove(origin)?;
        self.order.retain(|n| n != origin);
        Some(held)
    }

    /// The next advert, if the cap has room (it may then overdraw by one advert), with when
    /// it was queued.
    pub(crate) fn pop(&mut self, now: Time) -> Option<(Advert, Time)> {
        self.refill(now);
        if self.rate.is_some() && self.tokens < 0.0 {
            return None;
        }
        let node = self.order.pop_front()?;
        self.waiting.remove(&node)
    }

    /// Counts `bytes` sent against the cap.
    pub(crate) fn spend(&mut self, bytes: u64) {
        if self.rate.is_some() {
            self.tokens -= bytes as f64;
        }
    }

    /// When the cap has room for the next waiting advert (`None`: nothing waits, or it may
    /// go now).
    pub(crate) fn ready_at(&self) -> Option<Time> {
        let rate = self.rate?;
        if self.order.is_empty() || self.tokens >= 0.0 {
            return None;
        }
        // A rate of zero never refills: `control_rate` gives none (no cap) rather than that.
        let wait = Duration::try_from_secs_f64(-self.tokens / rate).unwrap_or(Duration::MAX / 2);
        Some(self.at + wait + Duration::from_micros(1))
    }

    /// Adverts waiting.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

/// How long a quiet link's cap lets link state flow at its full rate at once (at least 4 KiB).
pub const CONTROL_BURST: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{NodeId, Role};

    fn advert(node: &str, seq: u64) -> Advert {
        Advert {
            node: NodeId::new(node).unwrap(),
            role: Role::Relay,
            seq,
            lifetime: Duration::from_secs(1800),
            age: Duration::ZERO,
            links: vec![],
            groups: vec![],
            subscriptions: vec![],
            certificate: Bytes::new(),
            signature: Bytes::new(),
            previous_certificates: vec![],
            area: String::new(),
            summary: Bytes::new(),
        }
    }

    #[test]
    fn a_newer_advert_takes_the_waiting_ones_place_and_an_older_one_is_dropped() {
        let t = Time(1_000_000);
        let mut q = AdvertQueue::new(Some(1000.0), t);
        q.spend(10_000); // the burst spent: everything waits
        q.push(advert("a", 1), t);
        q.push(advert("b", 1), t);
        q.push(advert("a", 3), t + Duration::from_secs(1));
        q.push(advert("a", 2), t + Duration::from_secs(2));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(t), None, "the cap has no room yet");
        let later = t + Duration::from_secs(20);
        let (first, queued) = q.pop(later).unwrap();
        assert_eq!((first.node.as_str(), first.seq), ("a", 3), "in a's place in line, newest");
        assert_eq!(queued, t + Duration::from_secs(1));
        assert_eq!(q.pop(later).map(|(a, _)| a.seq), Some(1));
        assert_eq!(q.pop(later), None);
    }

    #[test]
    fn the_cap_lets_a_burst_go_then_one_advert_per_its_size_at_the_rate() {
        let t = Time(0);
        let mut q = AdvertQueue::new(Some(500.0), t); // burst: 4 KiB (2 s of 500 B/s is less)
        for i in 0..20 {
            q.push(advert(&format!("n{i:02}"), 1), t);
        }
        let mut sent = 0;
        while q.pop(t).is_some() {
            q.spend(1000);
            sent += 1;
        }
        assert_eq!(sent, 5, "4,096 B allow four of 1,000 B and a fifth that overdraws");
        assert_eq!(q.ready_at(), Some(t + Duration::from_micros(1_808_001)), "904 B at 500 B/s");
        assert_eq!(q.pop(t + Duration::from_millis(1800)), None);
        assert!(q.pop(q.ready_at().unwrap()).is_some());
        // A medium with no bandwidth configured has no cap (not one that never refills).
        let mut none = crate::config::MediumConfig::default_for(crate::types::Medium::Satellite);
        none.bandwidth_bps = 0;
        assert_eq!(none.control_rate(), None);
        // With no cap everything goes at once.
        let mut free = AdvertQueue::new(None, t);
        free.push(advert("x", 1), t);
        free.spend(1 << 30);
        assert!(free.pop(t).is_some());
        assert_eq!(free.ready_at(), None);
    }
}
