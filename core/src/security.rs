//! The node's side of origin signatures and revocation: signing what it originates, knowing
//! whose key is whose, refusing what is forged or revoked, and passing revocation lists on.

use bytes::Bytes;

use super::frame::{Advert, CustodyCode, Frame};
use super::link::{LinkId, LinkInfo};
use super::node::{Event, Node, Transmit};
use super::store::{StoreError, Table};
use super::trust::{self, Credential, Revocations};
use super::types::{Envelope, NodeId, Time};

/// Meta key of the newest revocation list (DER).
const META_REVOCATIONS: &[u8] = b"revocations";

impl Node {
    /// Learns this node's own key, the revocation list it stored, and the keys of the nodes
    /// whose adverts it stored. Called once the store is loaded.
    pub(super) fn load_trust(&mut self) -> Result<(), StoreError> {
        let Some(trust) = self.cfg.trust.clone() else { return Ok(()) };
        match trust.check_certificate(&trust.certificate()) {
            Ok(c) => {
                self.keys.insert(c.node.clone(), c);
            }
            Err(e) => tracing::warn!("this node's own certificate does not check: {e}"),
        }
        if let Some(der) = self.store.get(Table::Meta, META_REVOCATIONS)? {
            match trust.check_revocations(&der) {
                Ok(r) => self.adopt(None, r),
                Err(e) => tracing::warn!("stored revocation list ignored: {e}"),
            }
        }
        let members: Vec<NodeId> = self.membership.nodes().cloned().collect();
        for node in members {
            let Some(a) = self.membership.get(&node) else { continue };
            match trust.check_certificate(&a.certificate) {
                Ok(c) if c.node == a.node && !self.is_revoked(&c) => {
                    self.keys.entry(c.node.clone()).or_insert(c);
                }
                Ok(c) if c.node == a.node => self.forget_member(&node),
                _ => {}
            }
        }
        let nodes = self.routing.known_nodes();
        for node in nodes {
            if let Some(a) = self.routing.advert(&node, super::types::Time::ZERO) {
                match trust.check_certificate(&a.certificate) {
                    Ok(c) if c.node == a.node && !self.is_revoked(&c) => {
                        self.keys.insert(c.node.clone(), c);
                    }
                    _ => {
                        self.routing.forget(&node);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `c` is on the revocation list.
    pub(super) fn is_revoked(&self, c: &Credential) -> bool {
        self.revocations.as_ref().is_some_and(|r| r.serials.contains(&c.serial))
    }

    /// Learns a new neighbour's key from the certificate it presented in the handshake.
    pub(super) fn learn_neighbour(&mut self, link: LinkId, info: &LinkInfo) {
        let Some(trust) = self.cfg.trust.clone() else { return };
        match trust.check_certificate(&info.certificate) {
            Ok(c) if c.node == info.peer && !self.is_revoked(&c) => {
                self.keys.insert(c.node.clone(), c);
            }
            Ok(c) if c.node == info.peer => {
                self.pending_misbehaved(link, &info.peer, "certificate revoked".into());
            }
            Ok(c) => self.pending_misbehaved(
                link,
                &info.peer,
                format!("presented the certificate of {}", c.node),
            ),
            Err(e) => self.pending_misbehaved(link, &info.peer, format!("certificate: {e}")),
        }
    }

    fn pending_misbehaved(&mut self, link: LinkId, peer: &NodeId, reason: String) {
        tracing::warn!(%link, %peer, "cutting off: {reason}");
        self.events.push_back(Event::Misbehaved { link, peer: peer.clone(), reason });
    }

    /// The neighbour on `link` misbehaved: it is cut off (by the shell) and reported.
    pub(super) fn misbehaved(&mut self, link: LinkId, reason: String) {
        let Some(peer) = self.links.get(&link).map(|l| l.info.peer.clone()) else { return };
        self.pending_misbehaved(link, &peer, reason);
    }

    /// Takes an envelope this node originates: it is signed with the rest of the open batch
    /// and held then ([`Node::seal_pending`]), at once if the batch is full.
    pub(super) fn originate(&mut self, now: Time, env: Envelope) {
        self.unsealed.push(env);
        if self.unsealed.len() >= trust::MAX_BATCH {
            self.seal_pending(now);
        }
    }

    /// Signs the envelopes this node originated in the open batch, together, and holds them.
    pub(super) fn seal_pending(&mut self, now: Time) {
        if self.unsealed.is_empty() || self.poisoned.is_some() {
            return;
        }
        let mut batch = std::mem::take(&mut self.unsealed);
        if let Some(trust) = &self.cfg.trust {
            trust::seal_batch(trust.as_ref(), &mut batch);
        }
        self.guarded(|n| {
            for env in batch {
                if env.origin == n.cfg.node {
                    let mut bound = env.destinations.clone();
                    if n.is_local_member(&env.to) {
                        bound.push(n.cfg.node.clone());
                    }
                    n.keep_binding(now, &env, &bound)?;
                }
                // A group or topic message with no member yet is kept only for binding.
                if !env.destinations.is_empty() {
                    n.hold(now, env, None)?;
                }
            }
            Ok(())
        });
    }

    /// Signs this node's advert and attaches its certificate.
    pub(super) fn seal_advert(&self, a: &mut Advert) {
        if let Some(trust) = &self.cfg.trust {
            trust::seal_advert(trust.as_ref(), a);
        }
    }

    /// Checks an offered envelope's origin signature. `Err` carries the custody answer; a
    /// forgery also cuts the neighbour off, since every honest node checks before it forwards.
    pub(super) fn check_origin(
        &mut self,
        link: LinkId,
        env: &Envelope,
    ) -> Result<(), (CustodyCode, String)> {
        if self.cfg.trust.is_none() {
            return Ok(());
        }
        let Some(c) = self.keys.get(&env.origin) else {
            self.counters.unknown_origin += 1;
            return Err((
                CustodyCode::Busy,
                format!("no certificate known for {} yet (its advert has not arrived)", env.origin),
            ));
        };
        if self.is_revoked(c) {
            self.counters.revoked += 1;
            return Err((CustodyCode::Policy, format!("{}'s certificate is revoked", env.origin)));
        }
        if !self.seals.check_envelope(&c.public_key, env) {
            self.counters.forged += 1;
            let from = self.links.get(&link).map(|l| l.info.peer.to_string()).unwrap_or_default();
            tracing::warn!(
                %link, %from, id = %env.id, origin = %env.origin,
                "refused a forged or altered message: the origin's signature does not match"
            );
            self.misbehaved(
                link,
                format!("sent message {} with a bad signature of {}", env.id, env.origin),
            );
            return Err((CustodyCode::Invalid, "bad origin signature".into()));
        }
        Ok(())
    }

    /// Checks an advert's certificate and signature; learns the key. `false`: drop it.
    pub(super) fn check_advert(&mut self, link: LinkId, a: &Advert) -> bool {
        let Some(trust) = self.cfg.trust.clone() else { return true };
        let known = self.keys.get(&a.node).filter(|c| c.certificate == a.certificate).cloned();
        let cred = match known {
            Some(c) => c,
            None => match trust.check_certificate(&a.certificate) {
                Ok(c) if c.node == a.node && c.role == a.role => c,
                Ok(c) => {
                    self.counters.forged += 1;
                    self.misbehaved(
                        link,
                        format!(
                            "advert of {} carries the certificate of {} ({})",
                            a.node, c.node, c.role
                        ),
                    );
                    return false;
                }
                Err(e) => {
                    // Possibly an honest clock disagreement about validity: drop, do not cut.
                    tracing::info!(%link, node = %a.node, "advert dropped: certificate {e}");
                    return false;
                }
            },
        };
        if self.is_revoked(&cred) {
            return false;
        }
        // An advert already held as membership, arriving again once routing has let it age
        // out, was checked when it was first taken: the same signed bytes under the same
        // signature need no second signature check.
        let signed = trust::advert_signed_bytes(a);
        let held = self
            .membership
            .get(&a.node)
            .is_some_and(|m| m.signature == a.signature && trust::advert_signed_bytes(m) == signed);
        if !held && !trust::verify(&cred.public_key, &signed, &a.signature) {
            self.counters.forged += 1;
            self.misbehaved(link, format!("forged advert of {}", a.node));
            return false;
        }
        self.keys.insert(cred.node.clone(), cred);
        true
    }

    /// A revocation list, from the shell (`link` = `None`: loaded from a file or the API) or
    /// from a neighbour. A newer one than held takes effect at once, is stored, and is passed
    /// on to every other neighbour. Returns whether it was newer; `Err` if the CA did not sign
    /// it.
    pub fn handle_revocations(&mut self, link: Option<LinkId>, der: &[u8]) -> Result<bool, String> {
        let Some(trust) = self.cfg.trust.clone() else {
            return Err("this node has no trust configured".into());
        };
        let r = trust.check_revocations(der)?;
        if self.revocations.as_ref().is_some_and(|held| held.number >= r.number) {
            return Ok(false);
        }
        let der = r.der.clone();
        self.guarded(|n| n.store.put(Table::Meta, META_REVOCATIONS, &der));
        self.adopt(link, r);
        Ok(true)
    }

    fn adopt(&mut self, from: Option<LinkId>, r: Revocations) {
        let revoked: Vec<NodeId> = self
            .keys
            .values()
            .filter(|c| r.serials.contains(&c.serial))
            .map(|c| c.node.clone())
            .collect();
        tracing::warn!(number = r.number, revoked = ?revoked, "revocation list {} in effect", r.number);
        // Their keys stay known, so that what they sign is refused as revoked, not retried.
        for node in &revoked {
            self.seals.forget(node);
            if self.routing.forget(node) {
                let key = node.as_str().as_bytes().to_vec();
                self.guarded(|n| n.store.delete(Table::Lsdb, &key).map(|_| ()));
            }
            // Revoked or decommissioned: no longer an intended recipient of anything, and what
            // is held for it is refused at the next batch.
            self.forget_member(node);
            self.withdrawn.push(node.clone());
        }
        let others: Vec<LinkId> = self.links.keys().copied().filter(|l| Some(*l) != from).collect();
        for link in others {
            self.transmits.push_back(Transmit { link, frame: Frame::Revocations(r.der.clone()) });
        }
        self.events.push_back(Event::Revoked {
            number: r.number,
            serials: r.serials.iter().cloned().collect::<Vec<Bytes>>(),
            nodes: revoked,
            crl: r.der.clone(),
        });
        self.revocations = Some(r);
        self.advert_wanted = true;
    }

    /// Serial numbers on the revocation list in effect.
    pub fn revoked_serials(&self) -> Vec<Bytes> {
        self.revocations.as_ref().map(|r| r.serials.iter().cloned().collect()).unwrap_or_default()
    }

    /// The number of the revocation list in effect, if any.
    pub fn revocation_number(&self) -> Option<u64> {
        self.revocations.as_ref().map(|r| r.number)
    }
}
