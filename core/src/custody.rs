//! Custody: taking messages in (from applications and neighbours), holding them durably,
//! delivering them exactly once, settling them when a neighbour takes over, expiring them, and
//! reporting their fate to their origin.

use std::time::Duration;

use bytes::Bytes;

use super::frame::{
    Accepted, CustodyCode, CustodyResult, StatusRecord, StatusReport, StoredMessage,
};
use super::link::{LinkId, Offer};
use super::node::{Event, Node, Submission, SubmitError};
use super::schema;
use super::store::{StoreError, Table};
use super::types::{
    Address, Body, Envelope, MessageId, NodeId, Outcome, Precedence, Report, Time, wire_duration,
};
use crate::wire;

/// Free space kept back on the store's device for commits, the inbox and metadata.
pub const DISK_RESERVE: u64 = 16 * 1024 * 1024;
/// Dedup records outlive a message's remaining lifetime by this much, for clock slop.
const DEDUP_MARGIN: Duration = Duration::from_secs(600);
/// Content type of end-to-end reports.
pub const REPORT_CONTENT_TYPE: &str = "application/vnd.relaymesh.report";
/// Reports live at least this long, so a report about an expired message can still travel.
const MIN_REPORT_LIFETIME: Duration = Duration::from_secs(3600);

/// What is needed to delete a held message without reading it back.
struct HeldRef {
    seq: u64,
    id: MessageId,
    precedence: Precedence,
    deadline: Time,
    weight: u64,
    multi: bool,
    /// The neighbour it came from, for the per-neighbour share.
    from: Option<NodeId>,
}

impl HeldRef {
    /// A held message as read back from the store.
    fn of(seq: u64, m: &StoredMessage) -> HeldRef {
        let env = &m.envelope;
        HeldRef {
            seq,
            id: env.id,
            precedence: env.precedence,
            deadline: m.deadline(),
            weight: env.weight(),
            multi: env.destinations.len() > 1,
            from: m.from.clone(),
        }
    }
}

impl Node {
    /// An application's message. Accepted means durable once the batch commits. It is signed
    /// with the rest of the batch and held when the batch is scheduled or committed, so a
    /// storage failure then fails the commit (as every failure after acceptance does): `Ok` is
    /// not durable until [`Node::commit`] says so.
    pub fn handle_submit(&mut self, now: Time, sub: Submission) -> Result<MessageId, SubmitError> {
        if let Some(e) = &self.poisoned {
            return Err(SubmitError::Storage(e.clone()));
        }
        let envelope = self.new_envelope(now, sub)?;
        let local = self.is_local_member(&envelope.to);
        let id = envelope.id;
        let notice = envelope.supersedes.clone().map(|t| (envelope.clone(), t));
        let mut result = self.accept_local(now, envelope, local);
        if let (Ok(()), Some((replacement, target))) = (&result, notice) {
            result = self.replacement_notice(now, &replacement, &target);
        }
        if let Err(e) = result {
            self.poison(e.clone());
            return Err(SubmitError::Storage(e));
        }
        Ok(id)
    }

    /// A submission checked (size, lifetime, key, target, policy, quota) and made into this
    /// node's envelope, addressed to the members known now; nothing is stored yet.
    pub(super) fn new_envelope(
        &mut self,
        now: Time,
        sub: Submission,
    ) -> Result<Envelope, SubmitError> {
        if super::objects::is_reserved(&sub.content_type) {
            return Err(SubmitError::Invalid(format!(
                "content type {} is reserved for objects (send the file as an object)",
                sub.content_type
            )));
        }
        let envelope = self.build_envelope(now, sub)?;
        self.admit(envelope.precedence, envelope.weight()).map_err(SubmitError::Refused)?;
        Ok(envelope)
    }

    /// [`Node::new_envelope`] but for the quota, which an object's caller checks for the
    /// whole object.
    pub(super) fn build_envelope(
        &mut self,
        now: Time,
        sub: Submission,
    ) -> Result<Envelope, SubmitError> {
        if sub.payload.len() > self.cfg.max_payload {
            return Err(SubmitError::Invalid(format!(
                "payload of {} bytes exceeds the limit of {}",
                sub.payload.len(),
                self.cfg.max_payload
            )));
        }
        if sub.lifetime.is_zero() || sub.lifetime > self.cfg.max_lifetime {
            return Err(SubmitError::Invalid(format!(
                "lifetime must be between 1 ms and {} s",
                self.cfg.max_lifetime.as_secs()
            )));
        }
        if sub.content_type.len() > 128 || sub.content_type.is_empty() {
            return Err(SubmitError::Invalid("content type must be 1 to 128 bytes".into()));
        }
        if let Some(key) = &sub.key {
            super::types::check_key(key).map_err(SubmitError::Invalid)?;
        }
        let supersedes = match sub.replaces {
            Some(target) => Some(self.replacement_target(target)?),
            None => None,
        };
        let me = self.cfg.node.clone();
        self.cfg
            .policy
            .check(&me, Some(self.cfg.role), &sub.to, sub.precedence)
            .map_err(SubmitError::Forbidden)?;
        let destinations = self.resolve(&sub.to);
        let envelope = Envelope {
            id: self.new_id(),
            origin: me.clone(),
            to: sub.to,
            precedence: sub.precedence,
            lifetime: sub.lifetime,
            content_type: sub.content_type,
            payload: sub.payload,
            receipt: sub.receipt,
            body: Body::Data,
            status: sub.status,
            created: now,
            age: Duration::ZERO,
            hop_count: 0,
            destinations,
            signature: Bytes::new(),
            key: sub.key,
            supersedes,
        };
        Ok(envelope)
    }

    pub(super) fn accept_local(
        &mut self,
        now: Time,
        envelope: Envelope,
        local: bool,
    ) -> Result<(), StoreError> {
        let p = envelope.precedence;
        // What it cancels or replaces, or older messages with its key, are withdrawn here
        // first (a newer message with its key cannot exist: the node's clock only moves on).
        self.steer(now, &envelope)?;
        let mut dests = envelope.destinations.clone();
        if local {
            dests.push(self.cfg.node.clone());
            dests.sort();
        }
        let no_recipients = dests.is_empty();
        if matches!(envelope.body, Body::Cancel { replaced_by: Some(_), .. }) {
            // A replacement's notice: the replacement's own status tells the story.
            self.originate(now, envelope);
            return Ok(());
        }
        let record = StatusRecord {
            id: envelope.id,
            to: envelope.to.to_string(),
            precedence: Some(p),
            accepted_at: now,
            lifetime: envelope.lifetime,
            receipt: envelope.receipt,
            destinations: dests,
            custody_at: Some(self.cfg.node.clone()),
            reports: Vec::new(),
            cancelled_by: None,
            key: envelope.key.clone(),
            replaces: match envelope.body {
                Body::Data => envelope.supersedes.as_ref().map(|t| t.id),
                _ => None,
            },
            cancels: match envelope.body {
                Body::Cancel { .. } => envelope.supersedes.as_ref().map(|t| t.id),
                _ => None,
            },
            replaced_by: None,
        };
        self.store.put(Table::Status, &envelope.id.0, &wire::encode_status(&record))?;
        self.store.put(Table::StatusAge, &schema::time_id_key(now, &envelope.id), b"")?;
        if envelope.receipt && !no_recipients && matches!(envelope.body, Body::Data) {
            self.watch_objective(&envelope.id, &envelope.to, p, now)?;
        }
        self.counters.submitted[p.index()] += 1;
        if no_recipients {
            self.counters.no_recipients[p.index()] += 1;
        }
        if local {
            self.deliver_here(now, &envelope, Duration::ZERO)?;
        }
        let bindable = matches!(envelope.to, Address::Group(_) | Address::Topic(_));
        if !envelope.destinations.is_empty() || bindable {
            // Held once signed; a group or topic message is also kept for late binding.
            self.originate(now, envelope);
        }
        Ok(())
    }

    /// Whether the store's disk has no more than [`DISK_RESERVE`] free: every offer and
    /// submission is refused (what neighbours offer stays with them) until space is freed.
    pub fn disk_nearly_full(&self) -> bool {
        self.disk_free.is_some_and(|free| free <= DISK_RESERVE)
    }

    /// Bytes the store may hold: the configured limit, or less if the disk is fuller.
    pub(super) fn capacity(&self) -> u64 {
        let by_disk = self
            .disk_free
            .map_or(u64::MAX, |free| self.held.bytes() + free.saturating_sub(DISK_RESERVE));
        self.cfg.limits.max_bytes.min(by_disk)
    }

    /// Quota check: a precedence is refused once the store is fuller than its share.
    pub(super) fn admit(&self, p: Precedence, weight: u64) -> Result<(), String> {
        let cap = self.capacity();
        let ratio = self.cfg.limits.admit_ratio[p.index()];
        let limit = (cap as f64 * ratio) as u64;
        // Counting what this batch originated and will hold once it is signed.
        let held = self.held.bytes() + self.unsealed.iter().map(Envelope::weight).sum::<u64>();
        if held.saturating_add(weight) <= limit {
            return Ok(());
        }
        let full = if cap == 0 { 100.0 } else { held as f64 * 100.0 / cap as f64 };
        Err(format!(
            "store {full:.0}% full ({} of {} bytes): {p} is refused above {:.0}%",
            held,
            cap,
            ratio * 100.0
        ))
    }

    /// A custody offer from a neighbour.
    pub(super) fn receive_offer(&mut self, now: Time, link: LinkId, offer: u64, env: Envelope) {
        let answer =
            |code: CustodyCode, reason: String| CustodyResult { offer, id: env.id, code, reason };
        let result = if self.poisoned.is_some() {
            answer(CustodyCode::Busy, "storage failure".into())
        } else {
            match self.judge_offer(now, link, &env) {
                Ok(()) => {
                    let from = self.links.get(&link).map(|l| l.info.peer.clone());
                    self.counters.received[env.precedence.index()] += 1;
                    let id = env.id;
                    let accepted = CustodyResult {
                        offer,
                        id,
                        code: CustodyCode::Accepted,
                        reason: String::new(),
                    };
                    let mut relayed_only = None;
                    self.guarded(|n| {
                        relayed_only = n.take_custody(now, env, from)?;
                        Ok(())
                    });
                    if let Some(seq) = relayed_only {
                        // Answered at the commit, or earlier if the next hop takes it first.
                        self.answers.await_downstream(seq, (link, accepted));
                        return;
                    }
                    accepted
                }
                Err((code, reason)) => answer(code, reason),
            }
        };
        self.answers.at_commit((link, result));
    }

    /// Whether to take custody of an offered envelope, and if not, why.
    fn judge_offer(
        &mut self,
        now: Time,
        link: LinkId,
        env: &Envelope,
    ) -> Result<(), (CustodyCode, String)> {
        let p = env.precedence;
        if env.destinations.is_empty() {
            self.counters.bad_frames += 1;
            return Err((CustodyCode::Invalid, "offer without destinations".into()));
        }
        self.check_origin(now, link, env)?;
        if let Err(why) = check_report(env) {
            self.counters.refused[p.index()] += 1;
            tracing::warn!(origin = %env.origin, id = %env.id, "report refused: {why}");
            return Err((CustodyCode::Policy, why));
        }
        if !matches!(env.body, Body::Report(_)) {
            let role = if let Some(c) = self.keys.get(&env.origin) {
                match self.federated_role(c, &env.to, p) {
                    Ok(role) => Some(role), // certified by a CA this deployment trusts
                    Err(reason) => {
                        tracing::info!(origin = %env.origin, id = %env.id, "refused: {reason}");
                        self.counters.federation_refused += 1;
                        self.counters.refused[p.index()] += 1;
                        return Err((CustodyCode::Policy, reason));
                    }
                }
            } else if self.links.get(&link).is_some_and(|l| l.info.peer == env.origin) {
                self.links.get(&link).map(|l| l.info.role)
            } else {
                self.routing.role_of(&env.origin)
            };
            let steering = match &env.supersedes {
                Some(t) => self.may_steer(&env.origin, role, &t.origin),
                None => Ok(()),
            };
            if let Err(reason) =
                steering.and_then(|()| self.cfg.policy.check(&env.origin, role, &env.to, p))
            {
                self.counters.refused[p.index()] += 1;
                return Err((CustodyCode::Policy, reason));
            }
        }
        if env.hop_count > self.cfg.max_hops {
            self.counters.refused[p.index()] += 1;
            return Err((
                CustodyCode::Policy,
                format!("hop limit of {} exceeded", self.cfg.max_hops),
            ));
        }
        if env.age >= env.lifetime {
            self.counters.expired[p.index()] += 1;
            self.pending_events.push(Event::Expired {
                id: env.id,
                origin: env.origin.clone(),
                precedence: p,
                destinations: env.destinations.clone(),
            });
            let age = env.age;
            let dests = env.destinations.clone();
            self.guarded(|n| n.report(now, env, Outcome::Expired, "arrived expired", age, &dests));
            return Err((CustodyCode::Expired, "lifetime ended in transit".into()));
        }
        self.admit(p, env.weight()).map_err(|why| (CustodyCode::Busy, why))?;
        self.admit_from(link, env.weight())
    }

    /// Per-neighbour share of the store: one neighbour cannot fill it for everyone.
    fn admit_from(&self, link: LinkId, weight: u64) -> Result<(), (CustodyCode, String)> {
        let Some(peer) = self.links.get(&link).map(|l| &l.info.peer) else { return Ok(()) };
        let held = self.held.from(peer);
        let share = (self.capacity() as f64 * self.cfg.peer_store_share) as u64;
        if held.saturating_add(weight) <= share {
            return Ok(());
        }
        Err((
            CustodyCode::Busy,
            format!("{held} bytes from {peer} already held here, its share is {share}"),
        ))
    }

    /// Delivers what is for this node and holds the rest. Returns the held seq when the
    /// message is only relayed (nothing delivered here): its upstream answer may then go as
    /// soon as the next hop accepts it, before this node's own commit.
    fn take_custody(
        &mut self,
        now: Time,
        mut env: Envelope,
        from: Option<NodeId>,
    ) -> Result<Option<u64>, StoreError> {
        if let Some(s) = self.steer(now, &env)? {
            // Withdrawn before it got here: custody is taken (the sender may let go) and the
            // copy dropped.
            let age = env.age;
            let dests = env.destinations.clone();
            self.count_withdrawn(&env, s.outcome, s.by, dests.clone());
            self.report(now, &env, s.outcome, &s.reason, age, &dests)?;
            return Ok(None);
        }
        let me = self.cfg.node.clone();
        let mut local = false;
        if let Ok(i) = env.destinations.binary_search(&me) {
            env.destinations.remove(i);
            let age = env.age;
            self.deliver_here(now, &env, age)?;
            local = true;
        }
        if env.destinations.is_empty() {
            return Ok(None);
        }
        let seq = self.hold(now, env, from)?;
        Ok((!local).then_some(seq))
    }

    /// Delivers to this node's applications (data) or status (reports), exactly once.
    pub(super) fn deliver_here(
        &mut self,
        now: Time,
        env: &Envelope,
        age: Duration,
    ) -> Result<(), StoreError> {
        let p = env.precedence;
        let key = schema::delivered_key(&env.id, &env.origin);
        if self.store.get(Table::Delivered, &key)?.is_some() {
            self.counters.duplicates[p.index()] += 1;
            self.pending_events.push(Event::Duplicate { id: env.id, origin: env.origin.clone() });
            return Ok(());
        }
        let remaining = env.lifetime.saturating_sub(age);
        let forget_at = now + remaining + DEDUP_MARGIN.max(remaining / 10);
        let object_part = matches!(env.body, Body::Data)
            && (env.content_type == super::objects::MANIFEST_CONTENT_TYPE
                || env.content_type == super::objects::CHUNK_CONTENT_TYPE);
        // With the inbox cursor of a data message, so a cancel can find it.
        let mut delivered = forget_at.as_micros().to_be_bytes().to_vec();
        if matches!(env.body, Body::Data) && !object_part {
            delivered.extend_from_slice(&self.next_cursor.to_be_bytes());
        }
        self.store.put(Table::Delivered, &key, &delivered)?;
        self.store.put(Table::DeliveredExpiry, &schema::time_prefixed(forget_at, &key), b"")?;
        if object_part {
            return self.deliver_object_part(now, env, age);
        }
        match &env.body {
            // Checked on arrival (`judge_offer`); checked again before it counts, since a
            // delivery cleared by a forged report is an order that silently never arrived.
            Body::Report(r) => match check_report(env) {
                Ok(()) => self.apply_report(now, r),
                Err(why) => {
                    tracing::warn!(origin = %env.origin, "report ignored: {why}");
                    Ok(())
                }
            },
            // Its work was done on arrival (`steer`); the origin learns it got here.
            Body::Cancel { .. } => {
                let me = [self.cfg.node.clone()];
                self.report(now, env, Outcome::Delivered, "", age, &me)
            }
            Body::Data => {
                let cursor = self.next_cursor;
                self.next_cursor += 1;
                self.meta_dirty = true;
                let record = super::frame::InboxRecord {
                    envelope: env.clone(),
                    delivered_at: now,
                    age,
                    withdrawn: None,
                };
                self.store.put(
                    Table::Inbox,
                    &cursor.to_be_bytes(),
                    &wire::encode_inbox(&record),
                )?;
                self.counters.delivered[p.index()] += 1;
                self.pending_events.push(Event::Delivered {
                    cursor,
                    id: env.id,
                    origin: env.origin.clone(),
                    to: env.to.clone(),
                    precedence: p,
                    age,
                    status: env.status,
                });
                let me = [self.cfg.node.clone()];
                self.report(now, env, Outcome::Delivered, "", age, &me)
            }
        }
    }

    /// Stores an envelope this node now owes to `env.destinations`.
    pub(super) fn hold(
        &mut self,
        now: Time,
        mut env: Envelope,
        from: Option<NodeId>,
    ) -> Result<u64, StoreError> {
        // The `Expiry` key is computed from the record as it reads back: a finer age or
        // lifetime than the store keeps (an envelope handed over in memory) would leave it
        // behind when the message is settled.
        env.age = wire_duration(env.age);
        env.lifetime = wire_duration(env.lifetime);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.meta_dirty = true;
        let p = env.precedence;
        let weight = env.weight();
        let deadline = now + env.lifetime.saturating_sub(env.age);
        for d in &env.destinations {
            self.store.insert_new(Table::Queue, &schema::queue_key(d, p, seq), b"")?;
            self.queue.push(d, p, seq);
        }
        if env.destinations.len() > 1 {
            let n = env.destinations.len() as u64;
            self.store.insert_new(Table::Refs, &schema::seq_key(seq), &n.to_be_bytes())?;
        }
        self.store.insert_new(Table::Expiry, &schema::expiry_key(deadline, seq), b"")?;
        self.held.added(p, weight, from.as_ref());
        let id_key = schema::held_id_key(&env.id, seq);
        self.store.insert_new(Table::HeldIds, &id_key, env.origin.as_str().as_bytes())?;
        let stored = StoredMessage { envelope: env, received_at: now, from };
        let record = wire::encode_stored(&stored);
        self.store.insert_new(Table::Messages, &schema::seq_key(seq), &record)?;
        self.recent.insert(seq, stored);
        self.next_expiry = Some(self.next_expiry.map_or(deadline, |t| t.min(deadline)));
        Ok(seq)
    }

    /// Removes what this node owes `dests` of a held message, and the message once nothing
    /// is owed. Tolerates a message that is already gone (expired while an offer was out).
    ///
    /// Only destinations whose queue entry still exists count, so an answer that arrives twice
    /// (an offer made again after a timeout, both accepted) cannot release a copy still owed
    /// to someone else. `force` deletes the message whatever is still owed (expiry).
    fn settle(&mut self, held: &HeldRef, dests: &[NodeId], force: bool) -> Result<(), StoreError> {
        let p = held.precedence;
        let mut settled = 0u64;
        for d in dests {
            if self.store.delete(Table::Queue, &schema::queue_key(d, p, held.seq))? {
                settled += 1;
            }
            self.queue.take(d, p, held.seq);
            self.inflight.remove(&(held.seq, d.clone()));
        }
        if settled == 0 && !force {
            return Ok(());
        }
        if held.multi {
            let key = schema::seq_key(held.seq);
            let left = self.store.get(Table::Refs, &key)?.as_deref().and_then(schema::read_u64);
            debug_assert!(left.is_some_and(|l| l >= settled), "settled more copies than owed");
            let left = left.unwrap_or(0).saturating_sub(settled);
            if left > 0 && !force {
                self.store.put(Table::Refs, &key, &left.to_be_bytes())?;
                return Ok(());
            }
            self.store.delete(Table::Refs, &key)?;
        }
        self.recent.remove(held.seq);
        // Durable downstream before it was durable here: the upstream may let go now.
        self.answers.downstream_took(held.seq);
        if self.store.delete(Table::Messages, &schema::seq_key(held.seq))? {
            self.store.delete(Table::Expiry, &schema::expiry_key(held.deadline, held.seq))?;
            self.store.delete(Table::HeldIds, &schema::held_id_key(&held.id, held.seq))?;
            self.held.removed(p, held.weight, held.from.as_ref());
            self.sending.passed(&held.id);
            self.meta_dirty = true;
        }
        Ok(())
    }

    /// A neighbour's answer to one of this node's offers.
    pub(super) fn custody_result(&mut self, now: Time, link: LinkId, r: CustodyResult) {
        let id = r.id;
        self.custody_answer(now, link, r, |offered| *offered == id);
    }

    /// A compact acceptance: the offer's message id must begin with `fingerprint`.
    pub(super) fn custody_accepted(&mut self, now: Time, link: LinkId, a: Accepted) {
        let r = CustodyResult {
            offer: a.offer,
            id: MessageId::default(),
            code: CustodyCode::Accepted,
            reason: String::new(),
        };
        self.custody_answer(now, link, r, |offered| offered.0[..2] == a.fingerprint);
    }

    /// An answer to one of this node's offers; `names` says whether it is about the message
    /// offered (the answer's `id` is not read).
    fn custody_answer(
        &mut self,
        now: Time,
        link: LinkId,
        r: CustodyResult,
        names: impl Fn(&MessageId) -> bool,
    ) {
        let Some(l) = self.links.get_mut(&link) else { return };
        let Some(offer) = l.complete(r.offer) else { return };
        let peer = l.info.peer.clone();
        if !names(&offer.id) {
            // A confused or hostile neighbour: keep the message and offer it again.
            self.counters.bad_frames += 1;
            self.requeue(vec![offer]);
            return;
        }
        for d in &offer.dests {
            self.inflight.remove(&(offer.seq, d.clone()));
        }
        let p = offer.precedence;
        match r.code {
            CustodyCode::Accepted => {
                l.accepted();
                self.counters.forwarded[p.index()] += 1;
                self.guarded(|n| {
                    n.settle(&held_ref(&offer), &offer.dests, false)?;
                    if offer.local_origin {
                        n.update_status(&offer.id, |s| s.custody_at = Some(peer.clone()))?;
                    }
                    Ok(())
                });
            }
            CustodyCode::Expired => {
                // The neighbour counted and reported it.
                self.guarded(|n| n.settle(&held_ref(&offer), &offer.dests, false));
            }
            CustodyCode::Busy => {
                l.busy(now);
                self.requeue(vec![offer]);
            }
            CustodyCode::Policy | CustodyCode::Invalid => {
                self.counters.refused[p.index()] += 1;
                let reason = format!("refused by {peer}: {}", r.reason);
                self.guarded(|n| n.refuse_held(now, &offer, &reason));
            }
        }
    }

    /// Refuses, with a report to each origin, every copy held here for a destination whose
    /// certificate was withdrawn (revoked or decommissioned) since the last batch: it will
    /// never take them, so they are settled now instead of waiting out their lifetime. A copy
    /// in flight to it is left to its answer.
    pub(super) fn settle_withdrawn(&mut self, now: Time) -> Result<(), StoreError> {
        for node in std::mem::take(&mut self.withdrawn) {
            let mut owed = Vec::new();
            let (from, to) = schema::queue_destination_range(&node);
            self.store.scan(Table::Queue, &from, Some(&to), &mut |k, _| {
                if let Some((d, p, seq)) = schema::parse_queue_key(k)
                    && d == node
                {
                    owed.push((p, seq));
                }
                true
            })?;
            let reason = format!("{node} was withdrawn by the CA (revoked or decommissioned)");
            for (p, seq) in owed {
                if self.inflight.contains(&(seq, node.clone())) {
                    continue;
                }
                let Some(m) = self.load_message(seq)? else { continue };
                let env = &m.envelope;
                let dests = [node.clone()];
                self.settle(&HeldRef::of(seq, &m), &dests, false)?;
                self.counters.refused[p.index()] += 1;
                self.pending_events.push(Event::Refused {
                    id: env.id,
                    origin: env.origin.clone(),
                    precedence: p,
                    reason: reason.clone(),
                });
                let age = env.age + now.saturating_since(m.received_at);
                self.report(now, env, Outcome::Refused, &reason, age, &dests)?;
            }
        }
        Ok(())
    }

    fn refuse_held(&mut self, now: Time, offer: &Offer, reason: &str) -> Result<(), StoreError> {
        let stored = self.load_message(offer.seq)?;
        self.settle(&held_ref(offer), &offer.dests, false)?;
        if let Some(m) = stored {
            let age = m.envelope.age + now.saturating_since(m.received_at);
            self.pending_events.push(Event::Refused {
                id: m.envelope.id,
                origin: m.envelope.origin.clone(),
                precedence: m.envelope.precedence,
                reason: reason.to_owned(),
            });
            self.report(now, &m.envelope, Outcome::Refused, reason, age, &offer.dests)?;
        }
        Ok(())
    }

    pub(super) fn load_message(&mut self, seq: u64) -> Result<Option<StoredMessage>, StoreError> {
        if let Some(m) = self.recent.get(seq) {
            return Ok(Some(m.clone()));
        }
        match self.store.get(Table::Messages, &schema::seq_key(seq))? {
            None => Ok(None),
            Some(raw) => wire::decode_stored(&raw)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("message {seq}: {e}"))),
        }
    }

    /// Tells the origin what became of `original` (if it asked), or records it if that is us.
    pub(super) fn report(
        &mut self,
        now: Time,
        original: &Envelope,
        outcome: Outcome,
        reason: &str,
        age: Duration,
        destinations: &[NodeId],
    ) -> Result<(), StoreError> {
        if !original.receipt || matches!(original.body, Body::Report(_)) {
            return Ok(());
        }
        let report = Report {
            of: original.id,
            outcome,
            at_node: self.cfg.node.clone(),
            age,
            reason: reason.to_owned(),
            destinations: destinations.to_vec(),
        };
        if original.origin == self.cfg.node {
            return self.apply_report(now, &report);
        }
        let env = Envelope {
            id: self.new_id(),
            origin: self.cfg.node.clone(),
            to: Address::Node(original.origin.clone()),
            precedence: original.precedence,
            lifetime: original.lifetime.max(MIN_REPORT_LIFETIME),
            content_type: REPORT_CONTENT_TYPE.into(),
            payload: Bytes::new(),
            receipt: false,
            body: Body::Report(report),
            status: original.status,
            created: now,
            age: Duration::ZERO,
            hop_count: 0,
            destinations: vec![original.origin.clone()],
            signature: Bytes::new(),
            key: None,
            supersedes: None,
        };
        self.originate(now, env);
        Ok(())
    }

    /// Records a report about a message this node originated (one that passed
    /// [`check_report`], or this node's own).
    fn apply_report(&mut self, now: Time, r: &Report) -> Result<(), StoreError> {
        let mut fresh = false;
        self.update_status(&r.of, |s| {
            let known =
                s.reports.iter().any(|x| x.node == r.at_node && x.destinations == r.destinations);
            if !known {
                s.reports.push(StatusReport {
                    node: r.at_node.clone(),
                    outcome: r.outcome,
                    age: r.age,
                    reason: r.reason.clone(),
                    at: now,
                    destinations: r.destinations.clone(),
                });
                fresh = true;
            }
        })?;
        if fresh {
            self.clear_overdue(now, &r.of, &r.destinations, Some(r.outcome))?;
            self.pending_events.push(Event::Reported {
                of: r.of,
                node: r.at_node.clone(),
                outcome: r.outcome,
                reason: r.reason.clone(),
            });
        }
        Ok(())
    }

    pub(super) fn update_status(
        &mut self,
        id: &MessageId,
        f: impl FnOnce(&mut StatusRecord),
    ) -> Result<(), StoreError> {
        let Some(mut record) = self.status_record(id)? else { return Ok(()) };
        f(&mut record);
        self.store.put(Table::Status, &id.0, &wire::encode_status(&record))
    }

    /// Drops every held message whose lifetime has run out.
    pub(super) fn expire_held(&mut self, now: Time) -> Result<(), StoreError> {
        loop {
            let mut due = Vec::new();
            self.store.scan(Table::Expiry, b"", Some(&schema::time_bound(now)), &mut |k, _| {
                if let (Some(t), Some(seq)) = (schema::read_u64(k), schema::read_u64(&k[8..])) {
                    due.push((Time(t), seq));
                }
                due.len() < 1024
            })?;
            if due.is_empty() {
                break;
            }
            for (deadline, seq) in due {
                self.expire_one(now, deadline, seq)?;
            }
        }
        self.next_expiry = self.peek_expiry()?;
        Ok(())
    }

    pub(super) fn expire_one(
        &mut self,
        now: Time,
        deadline: Time,
        seq: u64,
    ) -> Result<(), StoreError> {
        let Some(m) = self.load_message(seq)? else {
            self.store.delete(Table::Expiry, &schema::expiry_key(deadline, seq))?;
            return Ok(());
        };
        let owed = self.settle_for_good(seq, &m, deadline)?;
        let env = &m.envelope;
        let p = env.precedence;
        self.counters.expired[p.index()] += 1;
        self.pending_events.push(Event::Expired {
            id: env.id,
            origin: env.origin.clone(),
            precedence: p,
            destinations: owed.clone(),
        });
        let age = env.age + now.saturating_since(m.received_at);
        let reason = format!("lifetime ended while held at {}", self.cfg.node);
        self.report(now, env, Outcome::Expired, &reason, age, &owed)
    }

    /// Settles held message `seq` (expiring at `deadline`) for every destination, whatever is
    /// still owed; returns the destinations that were.
    pub(super) fn settle_for_good(
        &mut self,
        seq: u64,
        m: &StoredMessage,
        deadline: Time,
    ) -> Result<Vec<NodeId>, StoreError> {
        // An offer of it still in flight is withdrawn: the node's and the links' views of what
        // is in flight stay the same (a late "accepted" is ignored; the neighbour then holds a
        // copy of its own, which it delivers or expires and reports).
        let offered =
            m.envelope.destinations.iter().any(|d| self.inflight.contains(&(seq, d.clone())));
        if offered {
            for link in self.links.values_mut() {
                link.withdraw(seq);
            }
        }
        let env = &m.envelope;
        let p = env.precedence;
        // Only the destinations still owed: others were settled already.
        let mut owed = Vec::new();
        for d in &env.destinations {
            if self.store.get(Table::Queue, &schema::queue_key(d, p, seq))?.is_some() {
                owed.push(d.clone());
            }
        }
        let held = HeldRef { deadline, ..HeldRef::of(seq, m) };
        let all = env.destinations.clone();
        self.settle(&held, &all, true)?;
        Ok(owed)
    }

    pub(super) fn peek_expiry(&mut self) -> Result<Option<Time>, StoreError> {
        self.first_time(Table::Expiry)
    }

    /// Keys of a table keyed by (time, ...) whose time is `now` or earlier, at most `limit`.
    pub(super) fn due_keys(
        &mut self,
        table: Table,
        now: Time,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut due = Vec::new();
        self.store.scan(table, b"", Some(&schema::time_bound(now)), &mut |k, _| {
            due.push(k.to_vec());
            due.len() < limit
        })?;
        Ok(due)
    }

    /// The time the first key of a table keyed by (time, ...) begins with.
    pub(super) fn first_time(&mut self, table: Table) -> Result<Option<Time>, StoreError> {
        let mut first = None;
        self.store.scan(table, b"", None, &mut |k, _| {
            first = schema::read_u64(k).map(Time);
            false
        })?;
        Ok(first)
    }

    /// Forgets dedup records past their time, prunes read inbox messages and old statuses.
    pub(super) fn housekeeping(&mut self, now: Time) -> Result<(), StoreError> {
        self.sweep_bindings(now)?;
        self.sweep_steering(now)?;
        for k in self.due_keys(Table::DeliveredExpiry, now, 10_000)? {
            self.store.delete(Table::DeliveredExpiry, &k)?;
            self.store.delete(Table::Delivered, &k[8..])?;
        }
        let keep_from = self.next_cursor.saturating_sub(self.cfg.inbox_keep).min(self.read_cursor);
        let mut inbox = Vec::new();
        self.store.scan(Table::Inbox, b"", Some(&keep_from.to_be_bytes()), &mut |k, v| {
            // An object's chunks go with its item.
            let object = wire::decode_inbox(v)
                .ok()
                .filter(|r| r.envelope.content_type == super::objects::OBJECT_CONTENT_TYPE)
                .map(|r| r.envelope.id);
            inbox.push((k.to_vec(), object));
            inbox.len() < 10_000
        })?;
        for (k, object) in inbox {
            self.store.delete(Table::Inbox, &k)?;
            if let Some(id) = object {
                self.forget_object(&id)?;
            }
        }
        self.expire_objects(now)?;
        let cutoff = Time(now.as_micros().saturating_sub(self.cfg.status_keep.as_micros() as u64));
        for k in self.due_keys(Table::StatusAge, cutoff, 10_000)? {
            self.store.delete(Table::StatusAge, &k)?;
            self.store.delete(Table::Status, &k[8..])?;
            if let Some(id) = MessageId::from_slice(&k[8..]) {
                self.forget_overdue(now, &id)?;
                self.forget_sent_object(&id)?;
            }
        }
        Ok(())
    }
}

fn held_ref(o: &Offer) -> HeldRef {
    HeldRef {
        seq: o.seq,
        id: o.id,
        precedence: o.precedence,
        deadline: o.deadline,
        weight: o.held_weight,
        multi: o.multi,
        from: o.from.clone(),
    }
}

/// Whether a report is one an honest node makes: it speaks only for the node that signed it
/// (`at_node` is its origin; a delivery, for that node alone), goes to one node and carries no
/// payload. Reports are exempt from policy and federation rules (a receipt must always get
/// back), so nothing else may travel as one; and a report that spoke for another node would
/// let any node mark an order delivered that never arrived.
pub(super) fn check_report(env: &Envelope) -> Result<(), String> {
    let Body::Report(r) = &env.body else { return Ok(()) };
    if r.at_node != env.origin {
        return Err(format!("a report signed by {} speaks for {}", env.origin, r.at_node));
    }
    if r.outcome == Outcome::Delivered && r.destinations.as_slice() != [r.at_node.clone()] {
        return Err(format!("a delivery report from {} names other destinations", r.at_node));
    }
    if !matches!(env.to, Address::Node(_)) || !env.payload.is_empty() {
        return Err("a report goes to one node and carries no payload".into());
    }
    Ok(())
}
