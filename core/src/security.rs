//! The node's side of origin signatures and revocation: signing what it originates, knowing
//! whose key is whose, refusing what is forged or revoked, and passing revocation lists on.

use bytes::Bytes;

use super::federation;
use super::frame::{Advert, CustodyCode, Frame};
use super::link::{LinkId, LinkInfo};
use super::node::{Event, Node, Transmit};
use super::store::{StoreError, Table};
use super::trust::{self, Credential, Revocations};
use super::types::{Envelope, NodeId, Time};

/// Meta key of the newest revocation list (DER).
const META_REVOCATIONS: &[u8] = b"revocations";
/// Meta key of the certificate this node last signed with (DER): a different one at start
/// means it was given a new key while stopped.
const META_OWN_CERTIFICATE: &[u8] = b"own_certificate";
/// Meta key of the certificates of keys this node signed with before, each with the time
/// until which its adverts carry it: `[until u64 BE][length u32 BE][DER]`, repeated.
const META_OWN_PREVIOUS: &[u8] = b"own_previous_certificates";

/// How long a peer's offers that no known key verifies are answered busy rather than judged
/// forged: after the link came up, while its summary (sent first thing, on another stream)
/// has not arrived; after the summary, while the newer advert it claimed may still be on its
/// way (it is sent in answer to this node's summary). A peer whose claim is not borne out in
/// this time is judged by what it sent, and a forger is cut off.
const NEWER_KEY_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// A key its node signed with before its current one, accepted until `until`: by then every
/// message signed with it has run out of lifetime.
#[derive(Clone, Debug)]
pub(super) struct PreviousKey {
    pub(super) cred: Credential,
    pub(super) until: Time,
}

impl Node {
    /// Learns this node's own key, the revocation list it stored, and the keys of the nodes
    /// whose adverts it stored. Called once the store is loaded.
    pub(super) fn load_trust(&mut self, now: Time) -> Result<(), StoreError> {
        let Some(trust) = self.cfg.trust.clone() else { return Ok(()) };
        if let Some(v) = self.store.get(Table::Meta, META_OWN_PREVIOUS)? {
            self.own_previous = decode_previous(&v);
        }
        let stored = self.store.get(Table::Meta, META_OWN_CERTIFICATE)?;
        self.own_certificate_in_use(now, stored.map(Bytes::from));
        let deployments = std::iter::once(None)
            .chain(self.cfg.federation.iter().map(|f| Some(f.deployment.clone())))
            .collect::<Vec<_>>();
        for deployment in deployments {
            let Some(der) = self.store.get(Table::Meta, &revocations_key(&deployment))? else {
                continue;
            };
            match trust.check_revocations(&der) {
                Ok(r) if r.deployment == deployment => self.adopt(None, r),
                Ok(_) => tracing::warn!("stored revocation list ignored: another CA signed it"),
                Err(e) => tracing::warn!("stored revocation list ignored: {e}"),
            }
        }
        let members: Vec<NodeId> = self.membership.nodes().cloned().collect();
        for node in members {
            let Some(a) = self.membership.get(&node) else { continue };
            let previous = a.previous_certificates.clone();
            match trust.check_certificate(&a.certificate) {
                Ok(c) if c.node == a.node && !self.is_revoked(&c) => {
                    self.learn_key(now, c, false);
                    self.learn_previous(now, &node, &previous);
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
                        self.learn_key(now, c, false);
                        self.learn_previous(now, &node, &a.previous_certificates);
                    }
                    _ => {
                        self.routing.forget(&node);
                    }
                }
            }
        }
        Ok(())
    }

    /// Takes note of the certificate this node signs with now (at start, with the one it
    /// signed with before, `stored`; while running, after its credentials were reloaded). A
    /// certificate with another key makes the old one a previous key: its adverts carry the
    /// old certificate until every message signed with it has run out of lifetime, so that
    /// nodes that never saw it can still check those messages.
    pub(super) fn own_certificate_in_use(&mut self, now: Time, stored: Option<Bytes>) {
        let Some(trust) = self.cfg.trust.clone() else { return };
        let current = trust.certificate();
        let own = match trust.check_certificate(&current) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("this node's own certificate does not check: {e}");
                return;
            }
        };
        let before =
            stored.or_else(|| self.keys.get(&self.cfg.node).map(|c| c.certificate.clone()));
        if before.as_ref() == Some(&current) {
            self.keys.insert(own.node.clone(), own);
            return;
        }
        let until = now + self.cfg.max_lifetime;
        if let Some(old) = before.and_then(|der| trust.check_certificate(&der).ok())
            && old.node == own.node
            && old.public_key != own.public_key
        {
            tracing::warn!(
                node = %own.node,
                hours = self.cfg.max_lifetime.as_secs() / 3600,
                "this node signs with a new key: its adverts carry the previous certificate for \
                 the longest message lifetime, so that what it signed before is still accepted"
            );
            self.own_previous.retain(|(der, u)| *u > now && *der != old.certificate);
            self.own_previous.push((old.certificate.clone(), until));
            while self.own_previous.len() > trust::MAX_PREVIOUS_KEYS {
                self.own_previous.remove(0);
            }
        }
        self.own_previous.retain(|(der, _)| *der != current);
        let previous = encode_previous(&self.own_previous);
        self.keys.insert(own.node.clone(), own);
        self.guarded(|n| {
            n.store.put(Table::Meta, META_OWN_CERTIFICATE, &current)?;
            n.store.put(Table::Meta, META_OWN_PREVIOUS, &previous)
        });
        self.advert_wanted = true;
    }

    /// The node's credentials were replaced while it runs (a renewed certificate, a new key):
    /// what it signs from now on carries the new certificate, announced at once.
    pub fn credentials_changed(&mut self, now: Time) {
        self.own_certificate_in_use(now, None);
    }

    /// The certificate this node holds for the peer on `link`: the one its latest advert or
    /// handshake carried (a renewal reaches neighbours through adverts, before any new link).
    pub fn peer_certificate(&self, link: LinkId) -> Option<Bytes> {
        let peer = &self.links.get(&link)?.info.peer;
        self.keys.get(peer).map(|c| c.certificate.clone())
    }

    /// Certificates of this node's previous keys that its adverts still carry.
    pub(super) fn own_previous_certificates(&self, now: Time) -> Vec<Bytes> {
        self.own_previous.iter().filter(|(_, u)| *u > now).map(|(der, _)| der.clone()).collect()
    }

    /// Takes `c` as its node's current key (`replace`), or as a previous one if the node has
    /// another current key already. A current key replaced by a different one stays
    /// acceptable as a previous key for as long as messages signed with it may live.
    fn learn_key(&mut self, now: Time, c: Credential, replace: bool) {
        let until = now + self.cfg.max_lifetime;
        match self.keys.get(&c.node) {
            Some(held) if held.public_key == c.public_key => {
                if replace {
                    self.keys.insert(c.node.clone(), c);
                }
            }
            Some(_) if !replace => self.keep_previous(now, c, until),
            _ => {
                if let Some(p) = self.previous_keys.get_mut(&c.node) {
                    p.retain(|k| k.cred.public_key != c.public_key);
                }
                if let Some(old) = self.keys.insert(c.node.clone(), c) {
                    self.keep_previous(now, old, until);
                }
            }
        }
    }

    /// Keeps `cred` as a previous key of its node until `until` (at most
    /// [`trust::MAX_PREVIOUS_KEYS`] a node: the one that runs out first goes).
    fn keep_previous(&mut self, now: Time, cred: Credential, until: Time) {
        if self.keys.get(&cred.node).is_some_and(|c| c.public_key == cred.public_key) {
            return;
        }
        let list = self.previous_keys.entry(cred.node.clone()).or_default();
        list.retain(|k| k.until > now);
        // Learned again (every advert of its node carries it): the time runs from when this
        // node first learned that the key was replaced, not from the latest advert.
        if list.iter().any(|k| k.cred.public_key == cred.public_key) {
            return;
        }
        if list.len() >= trust::MAX_PREVIOUS_KEYS
            && let Some(first) =
                list.iter().enumerate().min_by_key(|(_, k)| k.until).map(|(i, _)| i)
        {
            list.remove(first);
        }
        list.push(PreviousKey { cred, until });
    }

    /// Learns the previous keys an advert of `node` carries. Each certificate proves itself
    /// (the CA issued it to `node`); one that does not is ignored, as an advert's unsigned
    /// part may have been changed on the way.
    fn learn_previous(&mut self, now: Time, node: &NodeId, certificates: &[Bytes]) {
        let Some(trust) = self.cfg.trust.clone() else { return };
        let until = now + self.cfg.max_lifetime;
        for der in certificates.iter().take(trust::MAX_PREVIOUS_KEYS) {
            let known = self
                .previous_keys
                .get(node)
                .and_then(|p| p.iter().find(|k| k.cred.certificate == *der))
                .map(|k| k.cred.clone());
            let cred = match known {
                Some(c) => c,
                None => match trust.check_certificate(der) {
                    Ok(c) if c.node == *node && !self.is_revoked(&c) => c,
                    Ok(c) if c.node != *node => {
                        tracing::info!(%node, "previous certificate ignored: it is {}'s", c.node);
                        continue;
                    }
                    Ok(_) => {
                        tracing::info!(%node, "previous certificate ignored: it is revoked");
                        continue;
                    }
                    Err(e) => {
                        tracing::info!(%node, "previous certificate ignored: {e}");
                        continue;
                    }
                },
            };
            self.keep_previous(now, cred, until);
        }
    }

    /// Whether `c` is on the revocation list.
    pub(super) fn is_revoked(&self, c: &Credential) -> bool {
        self.revocations.get(&c.deployment).is_some_and(|r| r.serials.contains(&c.serial))
    }

    /// Learns a new neighbour's key from the certificate it presented in the handshake.
    pub(super) fn learn_neighbour(&mut self, now: Time, link: LinkId, info: &LinkInfo) {
        let Some(trust) = self.cfg.trust.clone() else { return };
        match trust.check_certificate(&info.certificate) {
            Ok(c) if c.node == info.peer && !self.is_revoked(&c) => {
                if let Err(why) = self.may_link(&c) {
                    self.pending_misbehaved(link, &info.peer, why);
                    return;
                }
                self.learn_key(now, c, true);
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

    /// Whether a neighbour with this credential may link here: one of another deployment
    /// only at that federation's borders.
    fn may_link(&self, c: &Credential) -> Result<(), String> {
        let Some(d) = &c.deployment else { return Ok(()) };
        match federation::find(&self.cfg.federation, d) {
            Some(f) if f.is_border(&self.cfg.node) => Ok(()),
            Some(f) => Err(format!(
                "a node of {d} may link only at its borders ({}), not at {}",
                f.borders.iter().map(NodeId::as_str).collect::<Vec<_>>().join(", "),
                self.cfg.node
            )),
            None => Err(format!("{d} is not a federated deployment here")),
        }
    }

    /// The role a message's origin acts as here: its certified role in this deployment; for
    /// a node of another, the local role its federation maps it to, if the federation lets
    /// it send `p` to `to`.
    pub(super) fn federated_role(
        &self,
        origin: &Credential,
        to: &super::types::Address,
        p: super::types::Precedence,
    ) -> Result<super::types::Role, String> {
        let Some(d) = &origin.deployment else { return Ok(origin.role) };
        match federation::find(&self.cfg.federation, d) {
            Some(f) => f.admit(origin.role, to, p),
            None => Err(format!("{d} is not a federated deployment here")),
        }
    }

    /// Whether `node` may receive messages to `to`: a node of another deployment only those
    /// its federation lets cross. Nodes whose certificate is not known here count as this
    /// deployment's.
    pub(super) fn may_cross(&self, node: &NodeId, to: &super::types::Address) -> bool {
        let Some(d) = self.keys.get(node).and_then(|c| c.deployment.as_ref()) else {
            return true;
        };
        federation::find(&self.cfg.federation, d).is_some_and(|f| f.carries(to))
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
    pub(super) fn seal_advert(&self, now: Time, a: &mut Advert) {
        if let Some(trust) = &self.cfg.trust {
            trust::seal_advert(trust.as_ref(), a);
            a.previous_certificates = self.own_previous_certificates(now);
        }
    }

    /// Checks an offered envelope's origin signature. `Err` carries the custody answer; a
    /// forgery also cuts the neighbour off, since every honest node checks before it forwards.
    pub(super) fn check_origin(
        &mut self,
        now: Time,
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
        if self.seals.check_envelope(&c.public_key, env) {
            return Ok(());
        }
        // Signed before the origin's key changed?
        let seals = &mut self.seals;
        let previous = self
            .previous_keys
            .get(&env.origin)
            .into_iter()
            .flatten()
            .filter(|k| k.until > now)
            .find(|k| seals.check_envelope(&k.cred.public_key, env))
            .map(|k| k.cred.clone());
        if let Some(old) = previous {
            if self.is_revoked(&old) {
                self.counters.revoked += 1;
                return Err((
                    CustodyCode::Policy,
                    format!("signed with a revoked key of {}", env.origin),
                ));
            }
            return Ok(());
        }
        if self.may_have_a_newer_key(now, link, &env.origin) {
            self.counters.unknown_origin += 1;
            return Err((
                CustodyCode::Busy,
                format!("{}'s key may have changed: waiting for its newer advert", env.origin),
            ));
        }
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
        Err((CustodyCode::Invalid, "bad origin signature".into()))
    }

    /// Whether a message from `origin` that no key of `origin` known here verifies may be
    /// signed with a key this node has not learned yet, rather than forged: the neighbour on
    /// `link` said in its summary that it holds a newer advert of `origin` than this node
    /// (and sends it in answer to this node's summary), or it came up moments ago and has not
    /// said yet. Such an offer is answered busy and retried, and nobody is cut off, for
    /// [`NEWER_KEY_GRACE`] at most: a claim not borne out by then counts for nothing, and a
    /// neighbour that never sends its summary is judged as one that holds nothing.
    fn may_have_a_newer_key(&self, now: Time, link: LinkId, origin: &NodeId) -> bool {
        let Some(l) = self.links.get(&link) else { return false };
        let Some((said, held)) = &l.peer_adverts else {
            return now < l.since + NEWER_KEY_GRACE;
        };
        let ours = self.membership.seq(origin).unwrap_or(0);
        now < *said + NEWER_KEY_GRACE && held.get(origin).is_some_and(|seq| *seq > ours)
    }

    /// Checks an advert's certificate and signature; learns the key. `false`: drop it.
    /// `carried`: the certificate came with the advert (otherwise this node put back the one
    /// it holds, and a signature that does not verify with it is no proof of forgery).
    pub(super) fn check_advert(
        &mut self,
        now: Time,
        link: LinkId,
        a: &Advert,
        carried: bool,
    ) -> bool {
        let Some(trust) = self.cfg.trust.clone() else { return true };
        let known = self.keys.get(&a.node).filter(|c| c.certificate == a.certificate).cloned();
        let cred = match known {
            Some(c) => c,
            None => match trust.check_certificate(&a.certificate) {
                Ok(c) => c,
                Err(e) => {
                    // Possibly an honest clock disagreement about validity: drop, do not cut.
                    tracing::info!(%link, node = %a.node, "advert dropped: certificate {e}");
                    return false;
                }
            },
        };
        // Node and role are the certificate's, whether or not the certificate is new here.
        if cred.node != a.node || cred.role != a.role {
            self.counters.forged += 1;
            let (node, role) = (&a.node, a.role);
            let why = format!(
                "advert of {node} ({role}) carries the certificate of {} ({})",
                cred.node, cred.role
            );
            self.misbehaved(link, why);
            return false;
        }
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
            if !carried {
                self.ask_adverts_again(
                    now,
                    link,
                    &a.node,
                    "the certificate held does not verify it",
                );
                return false;
            }
            self.counters.forged += 1;
            self.misbehaved(link, format!("forged advert of {}", a.node));
            return false;
        }
        self.learn_key(now, cred, true);
        if !a.previous_certificates.is_empty() {
            self.learn_previous(now, &a.node, &a.previous_certificates);
        }
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
        if self.revocations.get(&r.deployment).is_some_and(|held| held.number >= r.number) {
            return Ok(false);
        }
        let der = r.der.clone();
        let key = revocations_key(&r.deployment);
        self.guarded(|n| n.store.put(Table::Meta, &key, &der));
        self.adopt(link, r);
        Ok(true)
    }

    fn adopt(&mut self, from: Option<LinkId>, r: Revocations) {
        let revoked: Vec<NodeId> = self
            .keys
            .values()
            .filter(|c| c.deployment == r.deployment && r.serials.contains(&c.serial))
            .map(|c| c.node.clone())
            .collect();
        let of = r.deployment.as_deref().unwrap_or("this deployment");
        tracing::warn!(number = r.number, revoked = ?revoked, "revocation list {} of {of} in effect", r.number);
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
        self.revocations.insert(r.deployment.clone(), r);
        self.advert_wanted = true;
    }

    /// Serial numbers on this deployment's revocation list in effect.
    pub fn revoked_serials(&self) -> Vec<Bytes> {
        self.revocations.get(&None).map(|r| r.serials.iter().cloned().collect()).unwrap_or_default()
    }

    /// The number of this deployment's revocation list in effect, if any.
    pub fn revocation_number(&self) -> Option<u64> {
        self.revocations.get(&None).map(|r| r.number)
    }

    /// The number of each federated deployment's revocation list in effect.
    pub fn federated_revocation_numbers(&self) -> Vec<(super::federation::Deployment, u64)> {
        self.revocations.iter().filter_map(|(d, r)| Some((d.clone()?, r.number))).collect()
    }
}

/// Meta key of the newest revocation list of `deployment`'s CA (`None`: this one's).
fn revocations_key(deployment: &Option<super::federation::Deployment>) -> Vec<u8> {
    match deployment {
        None => META_REVOCATIONS.to_vec(),
        Some(d) => [META_REVOCATIONS, b"/", d.as_bytes()].concat(),
    }
}

fn encode_previous(list: &[(Bytes, Time)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (der, until) in list {
        v.extend_from_slice(&until.as_micros().to_be_bytes());
        v.extend_from_slice(&(der.len() as u32).to_be_bytes());
        v.extend_from_slice(der);
    }
    v
}

/// The inverse of [`encode_previous`]; a damaged tail is dropped.
fn decode_previous(mut v: &[u8]) -> Vec<(Bytes, Time)> {
    let mut list = Vec::new();
    while let Some((until, rest)) = v.split_first_chunk::<8>()
        && let Some((len, rest)) = rest.split_first_chunk::<4>()
        && let Some(der) = rest.get(..u32::from_be_bytes(*len) as usize)
    {
        list.push((Bytes::copy_from_slice(der), Time::from_micros(u64::from_be_bytes(*until))));
        v = &rest[der.len()..];
    }
    list.truncate(trust::MAX_PREVIOUS_KEYS);
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_certificates_survive_the_store_and_a_damaged_tail_is_dropped() {
        let list = vec![
            (Bytes::from_static(b"first certificate"), Time::from_micros(7)),
            (Bytes::from_static(b""), Time::from_micros(u64::MAX)),
            (Bytes::from(vec![0xab; 400]), Time::from_micros(1 << 40)),
        ];
        let v = encode_previous(&list);
        assert_eq!(decode_previous(&v), list);
        for cut in 0..v.len() {
            let got = decode_previous(&v[..cut]);
            assert!(list.starts_with(&got), "a prefix of what was stored, cut at {cut}");
        }
        let long: Vec<_> =
            (0..9).map(|i| (Bytes::from(vec![i; 3]), Time::from_micros(1))).collect();
        assert_eq!(decode_previous(&encode_previous(&long)).len(), trust::MAX_PREVIOUS_KEYS);
    }
}
