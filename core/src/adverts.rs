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
//! with the newer adverts, certificates and all. About 60% of an advert is its certificate.

use std::time::Duration;

use bytes::Bytes;

use super::frame::{Advert, AdvertLink, Frame};
use super::link::LinkId;
use super::node::{Node, Transmit};
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
        };
        self.seal_advert(now, &mut advert);
        advert
    }

    /// Issues a new advert (next sequence number) to every neighbour.
    pub(super) fn originate_advert(&mut self, now: Time) -> Result<(), StoreError> {
        self.advert_seq += 1;
        self.meta_dirty = true;
        let advert = self.own_advert(now);
        self.last_own_advert = Some(advert.clone());
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        self.send_advert(&advert, &ids);
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
    fn send_advert(&mut self, advert: &Advert, links: &[LinkId]) {
        for id in links {
            let Some(l) = self.links.get(id) else { continue };
            let mut a = advert.clone();
            a.age += l.one_way_delay();
            self.send_advert_to(*id, a);
        }
    }

    /// Queues one advert for one link, counting it; without its certificate if the peer
    /// holds that already.
    pub(super) fn send_advert_to(&mut self, link: LinkId, mut advert: Advert) {
        if let Some(l) = self.links.get_mut(&link)
            && l.info.lean_adverts
            && !advert.certificate.is_empty()
        {
            if l.peer_certs.get(&advert.node) == Some(&advert.certificate) {
                advert.certificate = Bytes::new();
            } else {
                l.peer_certs.insert(advert.node.clone(), advert.certificate.clone());
            }
        }
        self.counters.adverts_sent += 1;
        self.counters.advert_bytes += wire::encode_advert(&advert).len() as u64;
        self.transmits.push_back(Transmit { link, frame: Frame::LinkState(advert) });
    }

    /// An advert from the neighbour on `link`.
    pub(super) fn receive_advert(&mut self, now: Time, link: LinkId, mut advert: Advert) {
        let carried = !advert.certificate.is_empty();
        if carried {
            if let Some(l) = self.links.get_mut(&link) {
                l.peer_certs.insert(advert.node.clone(), advert.certificate.clone());
            }
        } else if self.cfg.trust.is_some() {
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
        if !(for_routing || self.membership.wants(&advert))
            || !self.check_advert(now, link, &advert, carried)
        {
            return;
        }
        // One copy of each certificate: the one the key was learned with (a carried one is a
        // slice of the frame it came in, which would keep that whole frame alive).
        if let Some(c) = self.keys.get(&advert.node)
            && c.certificate == advert.certificate
        {
            advert.certificate = c.certificate.clone();
        }
        self.learn_member(now, &advert);
        if !for_routing || !self.routing.accept(advert.clone(), now) {
            return;
        }
        let node = advert.node.clone();
        self.guarded(|n| {
            n.store.put(Table::Lsdb, node.as_str().as_bytes(), &wire::encode_advert(&advert))
        });
        let others: Vec<LinkId> = self.links.keys().copied().filter(|id| *id != link).collect();
        self.send_advert(&advert, &others);
    }

    /// An advert came without a certificate this node can check it with: nothing is wrong
    /// with the sender (it believed this node held the certificate: a restart here, or a
    /// certificate this node refused, say), so the advert is dropped and the peer is sent this
    /// node's summary again, which makes it resend what is newer with the certificates.
    pub(super) fn ask_adverts_again(
        &mut self,
        now: Time,
        link: LinkId,
        node: &super::NodeId,
        why: &str,
    ) {
        self.counters.adverts_unchecked += 1;
        let Some(l) = self.links.get_mut(&link) else { return };
        if l.adverts_asked.is_some_and(|t| now.saturating_since(t) < ASK_AGAIN_INTERVAL) {
            return;
        }
        l.adverts_asked = Some(now);
        tracing::info!(%link, %node, "advert without its certificate ({why}): asking for adverts again");
        let summary = self.membership.summary();
        self.transmits.push_back(Transmit { link, frame: Frame::LsdbSummary(summary) });
    }
}

/// How often a node asks one neighbour again for adverts it could not check.
pub const ASK_AGAIN_INTERVAL: Duration = Duration::from_secs(10);
