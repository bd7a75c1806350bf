//! Who a group or topic message is for: membership that outlives reachability, and late
//! binding.
//!
//! Routing forgets a node whose adverts stop arriving (its links may be gone). Membership does
//! not: a node once seen as a member of a group (`all` and `role:<role>` included) or as a
//! subscriber of a topic stays an intended recipient until it says otherwise in a newer signed
//! advert, or its certificate is revoked (decommissioning is a revocation with the reason
//! "cessation of operation"). So an origin resolves `group:role:township` to every township it
//! has ever heard of, including one cut off for hours; the copy for the absent member waits in a
//! store like any message without a route, until the member returns or the lifetime ends (then
//! it is reported `expired` for that destination).
//!
//! **Late binding.** A node that becomes a member while a group or topic message is still
//! within its lifetime receives it. The origin does the binding: it keeps every group and topic
//! message it originated (signed, in `Table::Bindings`) until its lifetime ends, and when it
//! learns of a new member (a first advert, a newer advert that adds the group or subscription,
//! a new neighbour, its own join) it holds one more copy of each live message that the member
//! was not bound to, addressed to that member alone. The copy carries the original id and
//! signature, so dedup and verification work as for any copy. Reach: back to the oldest message
//! still within its lifetime (at most the configured maximum lifetime). Work: one pass over the
//! origin's live bindings (kept in memory: id, address, deadline, bound members) per membership
//! change; nothing when membership does not change. A member first learned of within
//! [`BINDING_GRACE`] after the lifetime ended is recorded `expired` for the message (and the
//! origin's applications see it in the status), so even a member that surfaces too late is
//! accounted for rather than silently missed.
//!
//! Membership is learned only from signed adverts, authenticated links and (with areas) the
//! signed summaries of the borders of a member's area (`Vouched`, replaced by the member's own
//! advert once that arrives), is stored
//! (`Table::Members`, the newest advert of each node), and is passed on when two nodes meet
//! (their summaries carry membership sequence numbers; an advert whose lifetime ran out travels
//! as membership only and never enters routing).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::frame::{Advert, AreaMember, StatusRecord, StatusReport, StoredMessage};
use super::node::{Event, Node};
use super::store::{StoreError, Table};
use super::types::{Address, Body, Group, MessageId, NodeId, Outcome, Role, Time};
use crate::wire;

/// The newest advert ever seen of every other node: what it is a member of. A node of another
/// area is known by what its area's borders say of it ([`Vouched`], in a fraction of an
/// advert's room); a newer summary overlays the node's own advert without dropping it, since
/// the certificate in it is what this node passes on ahead of the node's messages.
#[derive(Debug, Default)]
pub struct Membership {
    /// Shared with routing where it holds the same advert.
    members: BTreeMap<NodeId, Arc<Advert>>,
    /// What borders said, each newer than the node's own advert in `members` if there is one.
    vouched: BTreeMap<NodeId, Vouched>,
    /// Nodes in `vouched` without an entry in `members`.
    vouched_only: usize,
    /// The areas named in `vouched`, each once (`Vouched::area` is a position here).
    areas: Vec<Arc<str>>,
    /// Areas whose entries in `vouched` changed since their `Table::Vouched` rows were written
    /// (`Node::write_vouched`, as a batch is sealed).
    changed_areas: BTreeSet<u32>,
}

/// What a border's summary says of a member of its area: 24 bytes, a node of every other
/// area having one (the fields as they were made a 1,000-node simulated mesh 40 MB larger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouched {
    pub seq: u64,
    pub role: Role,
    /// The area of the border that said it: its position in `Membership::areas`.
    area: u32,
    /// Groups and subscriptions, if it has any (most members have none).
    facts: Option<Box<Facts>>,
}

type Facts = (Box<[String]>, Box<[super::types::TopicPattern]>);

impl Membership {
    /// Whether `advert` says something newer about its node than what is held (a node's own
    /// advert is as new as what a border said of the same sequence number).
    pub fn wants(&self, advert: &Advert) -> bool {
        let own = self.members.get(&advert.node).map(|a| a.seq);
        let said = self.vouched.get(&advert.node).map(|v| v.seq);
        match vouched(advert) {
            true => own.max(said).is_none_or(|s| s < advert.seq),
            false => own.is_none_or(|s| s < advert.seq) && said.is_none_or(|s| s <= advert.seq),
        }
    }

    /// Keeps `advert` if it is newer; returns whether it was.
    pub fn learn(&mut self, advert: impl Into<Arc<Advert>>) -> bool {
        let advert = advert.into();
        if !self.wants(&advert) {
            return false;
        }
        if vouched(&advert) {
            let advert = Arc::unwrap_or_clone(advert);
            let area = match self.areas.iter().position(|a| **a == *advert.area) {
                Some(i) => i,
                None => {
                    self.areas.push(advert.area.as_str().into());
                    self.areas.len() - 1
                }
            };
            let facts = match advert.groups.is_empty() && advert.subscriptions.is_empty() {
                true => None,
                false => Some(Box::new((
                    advert.groups.into_boxed_slice(),
                    advert.subscriptions.into_boxed_slice(),
                ))),
            };
            let v = Vouched { seq: advert.seq, role: advert.role, area: area as u32, facts };
            self.changed_areas.insert(v.area);
            let only = !self.members.contains_key(&advert.node);
            match self.vouched.insert(advert.node, v) {
                // Vouched for by the borders of another area now (it moved).
                Some(old) => {
                    self.changed_areas.insert(old.area);
                }
                None if only => self.vouched_only += 1,
                None => {}
            }
        } else {
            if let Some(old) = self.vouched.remove(&advert.node) {
                self.changed_areas.insert(old.area);
                if !self.members.contains_key(&advert.node) {
                    self.vouched_only -= 1;
                }
            }
            self.members.insert(advert.node.clone(), advert);
        }
        true
    }

    /// Forgets `node` (revoked or decommissioned); returns whether it was a member.
    pub fn forget(&mut self, node: &NodeId) -> bool {
        let own = self.members.remove(node).is_some();
        let said =
            self.vouched.remove(node).map(|old| self.changed_areas.insert(old.area)).is_some();
        if said && !own {
            self.vouched_only -= 1;
        }
        own || said
    }

    /// The area whose borders vouch for `node`, if it is known by what they said.
    pub fn vouched_area(&self, node: &NodeId) -> Option<&Arc<str>> {
        self.vouched.get(node).map(|v| &self.areas[v.area as usize])
    }

    /// The areas whose vouched entries changed since this was last asked.
    pub fn take_changed_areas(&mut self) -> Vec<Arc<str>> {
        let changed = std::mem::take(&mut self.changed_areas);
        changed.into_iter().map(|a| self.areas[a as usize].clone()).collect()
    }

    /// Whether some area's vouched entries changed since [`Membership::take_changed_areas`].
    pub fn areas_changed(&self) -> bool {
        !self.changed_areas.is_empty()
    }

    /// Every node borders of `area` vouched for, as they said it (no costs): what
    /// `Table::Vouched` keeps of that area.
    pub fn vouched_in(&self, area: &str) -> Vec<AreaMember> {
        self.vouched
            .iter()
            .filter(|(_, v)| *self.areas[v.area as usize] == *area)
            .map(|(node, v)| AreaMember {
                node: node.clone(),
                role: v.role,
                seq: v.seq,
                groups: v.facts.as_ref().map_or(Vec::new(), |f| f.0.to_vec()),
                subscriptions: v.facts.as_ref().map_or(Vec::new(), |f| f.1.to_vec()),
                costs: [None; 5],
            })
            .collect()
    }

    /// How many own adverts are held (the rows of `Table::Members`).
    pub fn own_count(&self) -> usize {
        self.members.len()
    }

    /// How many nodes borders vouched for (the entries of `Table::Vouched`).
    pub fn vouched_count(&self) -> usize {
        self.vouched.len()
    }

    /// The node's own advert, if held (perhaps older than what a border said since).
    pub fn get(&self, node: &NodeId) -> Option<&Advert> {
        self.members.get(node).map(|a| &**a)
    }

    /// The same, to share.
    pub fn shared(&self, node: &NodeId) -> Option<&Arc<Advert>> {
        self.members.get(node)
    }

    pub fn contains(&self, node: &NodeId) -> bool {
        self.members.contains_key(node) || self.vouched.contains_key(node)
    }

    /// The sequence number of the newest that is held of `node`.
    pub fn seq(&self, node: &NodeId) -> Option<u64> {
        self.vouched.get(node).map(|v| v.seq).or_else(|| self.members.get(node).map(|a| a.seq))
    }

    /// Role, groups and subscriptions of `node`, as last heard.
    pub fn facts(&self, node: &NodeId) -> Option<(Role, &[String], &[super::types::TopicPattern])> {
        match (self.vouched.get(node), self.members.get(node)) {
            (Some(v), _) => match &v.facts {
                Some(f) => Some((v.role, &f.0, &f.1)),
                None => Some((v.role, &[], &[])),
            },
            (None, Some(a)) => Some((a.role, &a.groups, &a.subscriptions)),
            (None, None) => None,
        }
    }

    /// Every member, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.members.keys().chain(self.vouched.keys().filter(|n| !self.members.contains_key(*n)))
    }

    pub fn count(&self) -> usize {
        self.members.len() + self.vouched_only
    }

    /// Every member's (node, newest seq): what a neighbour compares against its own.
    pub fn summary(&self) -> Vec<(NodeId, u64)> {
        let mut all: Vec<(NodeId, u64)> =
            self.nodes().filter_map(|n| Some((n.clone(), self.seq(n)?))).collect();
        all.sort_unstable();
        all
    }

    /// Members whose own advert is held here and newer than (or missing from) a neighbour's
    /// summary.
    pub fn newer_than<'a>(&'a self, summary: &[(NodeId, u64)]) -> Vec<&'a Advert> {
        let theirs: BTreeMap<&NodeId, u64> = summary.iter().map(|(n, s)| (n, *s)).collect();
        self.members
            .values()
            .filter(|a| theirs.get(&a.node).is_none_or(|s| *s < a.seq))
            .map(|a| &**a)
            .collect()
    }

    /// Whether `node` is a member of `to` by what it last advertised.
    pub fn is_member(&self, node: &NodeId, to: &Address) -> bool {
        self.facts(node).is_some_and(|(role, groups, subs)| advert_matches(role, groups, subs, to))
    }
}

/// Whether `a` is not the node's own advert but what a border of its area said of it
/// ([`vouched_advert`]): no signature, no certificate, no links. Never sent on; replaced by
/// the node's own advert of the same sequence number if that arrives.
pub fn vouched(a: &Advert) -> bool {
    // (Only with areas: in a deployment without trust, as in tests, a node's own advert may
    // also come unsigned, and with no links before it has any.)
    !a.area.is_empty()
        && a.signature.is_empty()
        && a.certificate.is_empty()
        && a.links.is_empty()
        && !a.is_border()
}

/// Membership of a node of `area` as that area's borders state it: kept like an advert (by
/// the member's sequence number), vouched for by a border's signature, or read back from
/// `Table::Vouched`.
pub fn vouched_advert(area: &str, m: AreaMember) -> Advert {
    Advert {
        node: m.node,
        role: m.role,
        seq: m.seq,
        lifetime: std::time::Duration::ZERO,
        age: std::time::Duration::ZERO,
        links: Vec::new(),
        groups: m.groups,
        subscriptions: m.subscriptions,
        certificate: bytes::Bytes::new(),
        signature: bytes::Bytes::new(),
        previous_certificates: Vec::new(),
        area: area.to_owned(),
        summary: bytes::Bytes::new(),
    }
}

/// Whether a node with this role, these groups and these subscriptions is a member of `to`.
pub fn advert_matches(
    role: Role,
    groups: &[String],
    subscriptions: &[super::types::TopicPattern],
    to: &Address,
) -> bool {
    match to {
        Address::Node(_) => false,
        Address::Group(Group::All) => true,
        Address::Group(Group::Role(r)) => *r == role,
        Address::Group(Group::Named(g)) => groups.iter().any(|x| x == g),
        Address::Topic(t) => subscriptions.iter().any(|p| p.matches(t)),
    }
}

/// How long an origin keeps a group or topic message after its lifetime ended: a member first
/// learned of within this time is recorded `expired` for it (reported, not silently missed).
pub const BINDING_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// A live group or topic message this node originated, for late binding.
#[derive(Clone, Debug)]
pub(super) struct Binding {
    pub(super) to: Address,
    pub(super) deadline: Time,
    /// Every member a copy was made for (this node included when it delivered one itself).
    pub(super) bound: BTreeSet<NodeId>,
}

impl Node {
    /// The nodes other than this one that an address resolves to: every member, reachable or
    /// not, and every authenticated neighbour not yet advertised (for `all` and role groups).
    pub(super) fn resolve(&self, to: &Address) -> Vec<NodeId> {
        let me = &self.cfg.node;
        if let Address::Node(n) = to {
            return if n == me { Vec::new() } else { vec![n.clone()] };
        }
        let mut out: BTreeSet<NodeId> =
            self.membership.nodes().filter(|n| self.membership.is_member(n, to)).cloned().collect();
        if matches!(to, Address::Group(Group::All | Group::Role(_))) {
            for l in self.links.values() {
                if !self.membership.contains(&l.info.peer)
                    && self.trusted_neighbour(&l.info.peer)
                    && advert_matches(l.info.role, &[], &[], to)
                {
                    out.insert(l.info.peer.clone());
                }
            }
        }
        out.remove(me);
        out.into_iter().filter(|n| self.may_cross(n, to)).collect()
    }

    /// Whether a neighbour counts as a member of `all` and its role's group before its first
    /// advert: its certificate checked and not revoked (or no trust configured, in tests).
    pub(super) fn trusted_neighbour(&self, peer: &NodeId) -> bool {
        self.cfg.trust.is_none() || self.keys.get(peer).is_some_and(|c| !self.is_revoked(c))
    }

    /// Whether this node itself belongs to `to` (its own groups and subscriptions).
    pub(super) fn is_local_member(&self, to: &Address) -> bool {
        match to {
            Address::Node(n) => n == &self.cfg.node,
            Address::Topic(t) => self.subscriptions.iter().any(|p| p.matches(t)),
            Address::Group(Group::All) => true,
            Address::Group(Group::Role(r)) => *r == self.cfg.role,
            Address::Group(Group::Named(g)) => self.groups.contains(g),
        }
    }

    /// Keeps a (verified) advert as membership; returns whether it was newer. Membership it
    /// adds is bound to the live group and topic messages this node originated.
    pub(super) fn learn_member(&mut self, now: Time, advert: &Arc<Advert>) -> bool {
        if !self.membership.wants(advert) {
            return false;
        }
        let node = advert.node.clone();
        // Most adverts are refreshes that change no membership: binding is skipped for them.
        let grew = self.membership.facts(&node).is_none_or(|(role, groups, subscriptions)| {
            role != advert.role
                || advert.groups.iter().any(|g| !groups.contains(g))
                || advert.subscriptions.iter().any(|p| !subscriptions.contains(p))
        });
        let routed_other = self.routing.advert(&node, now).is_some_and(|r| r.seq != advert.seq);
        // A node's own advert is a row of `Table::Members`; what borders said of it is kept
        // with the rest of its area in `Table::Vouched`, one row an area written as the batch
        // is sealed (a row a member cost a 1,000-node simulated mesh a sixth of its memory).
        if !vouched(advert) {
            self.guarded(|n| {
                let row = wire::encode_advert(advert);
                n.store.put(Table::Members, node.as_str().as_bytes(), &row)
            });
        }
        self.membership.learn(advert.clone());
        // Routing holds another advert of the node, stored until now by this one's place.
        if routed_other {
            self.store_routed(now, &node);
        }
        if grew {
            self.bind_late(now, &node);
        }
        true
    }

    /// Forgets a revoked or decommissioned node's membership.
    pub(super) fn forget_member(&mut self, node: &NodeId) {
        if self.membership.forget(node) {
            let key = node.as_str().as_bytes().to_vec();
            self.guarded(|n| n.store.delete(Table::Members, &key).map(|_| ()));
        }
    }

    /// Writes the `Table::Vouched` row of each area whose vouched entries changed in this
    /// batch (one row an area, as a summary without costs; none for an area with none).
    pub(super) fn write_vouched(&mut self) -> Result<(), StoreError> {
        for area in self.membership.take_changed_areas() {
            let members = self.membership.vouched_in(&area);
            match members.is_empty() {
                true => self.store.delete(Table::Vouched, area.as_bytes()).map(|_| ())?,
                false => {
                    let row = wire::encode_vouched(&members);
                    self.store.put(Table::Vouched, area.as_bytes(), &row)?
                }
            }
        }
        Ok(())
    }

    /// Joins or leaves a named group at run time (durably; the configured groups are where it
    /// starts). Returns whether anything changed; a change is advertised, signed, so the rest
    /// of the mesh learns of a leave as surely as of a join.
    pub fn handle_group(&mut self, now: Time, name: &str, join: bool) -> Result<bool, StoreError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let changed =
            if join { self.groups.insert(name.to_owned()) } else { self.groups.remove(name) };
        if !changed {
            return Ok(false);
        }
        let result = self.store.put(Table::Groups, name.as_bytes(), &[u8::from(join)]);
        if let Err(e) = &result {
            self.poison(e.clone());
            return Err(e.clone());
        }
        self.advert_wanted = true;
        if join {
            let me = self.cfg.node.clone();
            self.bind_late(now, &me);
        }
        Ok(true)
    }

    /// Makes a copy of every live group or topic message this node originated for `member`,
    /// if it now belongs to the message's address and has no copy yet.
    pub(super) fn bind_late(&mut self, now: Time, member: &NodeId) {
        if self.bindings.is_empty() {
            return;
        }
        let me = self.cfg.node.clone();
        let due: Vec<MessageId> = self
            .bindings
            .iter()
            .filter(|(_, b)| b.deadline + BINDING_GRACE > now && !b.bound.contains(member))
            .filter(|(_, b)| self.may_cross(member, &b.to))
            .filter(|(_, b)| {
                if member == &me {
                    self.is_local_member(&b.to)
                } else {
                    self.membership.is_member(member, &b.to)
                        || (matches!(b.to, Address::Group(Group::All | Group::Role(_)))
                            && self.links.values().any(|l| {
                                &l.info.peer == member
                                    && advert_matches(l.info.role, &[], &[], &b.to)
                            }))
                }
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let member = member.clone();
            self.guarded(|n| n.bind_one(now, id, member));
        }
    }

    fn bind_one(&mut self, now: Time, id: MessageId, member: NodeId) -> Result<(), StoreError> {
        let Some(raw) = self.store.get(Table::Bindings, &id.0)? else {
            self.bindings.remove(&id);
            return Ok(());
        };
        let stored = wire::decode_stored(&raw)
            .map_err(|e| StoreError::Corrupt(format!("binding of {id}: {e}")))?;
        let mut env = stored.envelope;
        // The origin's own clock made `created`: the age is exact here.
        env.age = now.saturating_since(env.created);
        let late = env.age >= env.lifetime;
        if let Some(b) = self.bindings.get_mut(&id) {
            b.bound.insert(member.clone());
        }
        let mut record = StoredMessage { envelope: env.clone(), received_at: now, from: None };
        record.envelope.destinations.push(member.clone());
        record.envelope.destinations.sort();
        self.store.put(Table::Bindings, &id.0, &wire::encode_stored(&record))?;
        let me = self.cfg.node.clone();
        let reason = format!("the lifetime ended before {member} was known here as a member");
        self.update_status(&id, |s: &mut StatusRecord| {
            if !s.destinations.contains(&member) {
                s.destinations.push(member.clone());
                s.destinations.sort();
            }
            if late {
                s.reports.push(StatusReport {
                    node: me.clone(),
                    outcome: Outcome::Expired,
                    age: env.age,
                    reason: reason.clone(),
                    at: now,
                    destinations: vec![member.clone()],
                });
            }
        })?;
        if late {
            // Too late to deliver, not too late to say so: the pair is accounted `expired`.
            tracing::info!(%id, %member, "{reason}");
            self.pending_events.push(Event::Expired {
                id,
                origin: me,
                precedence: env.precedence,
                destinations: vec![member],
            });
            return Ok(());
        }
        tracing::debug!(%id, %member, "bound late");
        if member == self.cfg.node {
            let age = env.age;
            return self.deliver_here(now, &env, age);
        }
        env.destinations = vec![member];
        self.hold(now, env, None).map(|_| ())
    }

    /// Keeps a just-signed group or topic message for late binding.
    pub(super) fn keep_binding(
        &mut self,
        now: Time,
        env: &super::types::Envelope,
        bound: &[NodeId],
    ) -> Result<(), StoreError> {
        if !matches!(env.to, Address::Group(_) | Address::Topic(_))
            || !matches!(env.body, Body::Data)
        {
            return Ok(());
        }
        let deadline = env.created + env.lifetime;
        let mut kept = env.clone();
        kept.destinations = bound.to_vec();
        let record = StoredMessage { envelope: kept, received_at: now, from: None };
        self.store.put(Table::Bindings, &env.id.0, &wire::encode_stored(&record))?;
        self.bindings.insert(
            env.id,
            Binding { to: env.to.clone(), deadline, bound: bound.iter().cloned().collect() },
        );
        Ok(())
    }

    /// Stops binding message `id` (cancelled or replaced): no late member gets it.
    pub(super) fn unbind(&mut self, id: &MessageId) -> Result<(), StoreError> {
        if self.bindings.remove(id).is_some() {
            self.store.delete(Table::Bindings, &id.0)?;
        }
        Ok(())
    }

    /// Drops bindings whose lifetime has ended.
    pub(super) fn sweep_bindings(&mut self, now: Time) -> Result<(), StoreError> {
        let done: Vec<MessageId> = self
            .bindings
            .iter()
            .filter(|(_, b)| b.deadline + BINDING_GRACE <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            self.store.delete(Table::Bindings, &id.0)?;
            self.bindings.remove(&id);
        }
        Ok(())
    }

    /// Loads membership, run-time group changes and live bindings from the store.
    pub(super) fn load_membership(&mut self) -> Result<(), StoreError> {
        let mut members = Membership::default();
        self.store.scan(Table::Members, b"", None, &mut |_, v| {
            if let Ok(a) = wire::decode_advert(v) {
                members.learn(a);
            }
            true
        })?;
        self.store.scan(Table::Vouched, b"", None, &mut |k, v| {
            let area = String::from_utf8_lossy(k);
            for m in wire::decode_area_summary(v).into_iter().flatten() {
                members.learn(vouched_advert(&area, m));
            }
            true
        })?;
        // Read from the rows themselves: nothing to write back.
        members.take_changed_areas();
        self.membership = members;
        let mut groups: BTreeSet<String> = self.cfg.groups.iter().cloned().collect();
        self.store.scan(Table::Groups, b"", None, &mut |k, v| {
            if let Ok(name) = std::str::from_utf8(k) {
                if v.first() == Some(&1) {
                    groups.insert(name.to_owned());
                } else {
                    groups.remove(name);
                }
            }
            true
        })?;
        self.groups = groups;
        let mut bindings = BTreeMap::new();
        self.store.scan(Table::Bindings, b"", None, &mut |_, v| {
            if let Ok(m) = wire::decode_stored(v) {
                let env = &m.envelope;
                let deadline = env.created + env.lifetime;
                bindings.insert(
                    env.id,
                    Binding {
                        to: env.to.clone(),
                        deadline,
                        bound: env.destinations.iter().cloned().collect(),
                    },
                );
            }
            true
        })?;
        self.bindings = bindings;
        Ok(())
    }
}
