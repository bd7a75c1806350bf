//! Steering orders after they left: cancel, replace and latest-value keys.
//!
//! Three kinds of envelope act on others wherever they reach, at the origin as at every relay
//! and recipient on their way (`Node::steer`):
//!
//! - a **cancel** (`Body::Cancel`, naming its target in `Envelope::supersedes`) withdraws the
//!   target: a copy held here is dropped (`cancelled`, custody settled and the origin told, as
//!   for an expiry), a copy delivered here is marked cancelled in the inbox
//!   ([`Event::Withdrawn`]), and a tombstone makes sure a copy arriving later is neither held
//!   nor delivered. The cancel itself travels, at the target's precedence or higher and with
//!   custody like any message, to every node its origin knows of: a copy may wait at any
//!   relay and no node knows where. It is never shown as a message of its own;
//! - a **replacement** (`Body::Data` with `supersedes`) does the same to its target
//!   (`superseded`) and is delivered in its place;
//! - a **keyed** message (`Envelope::key`): of an origin's messages with the same key only the
//!   newest (by the origin's creation time, then id) is held and delivered; an older copy held
//!   here is dropped as `superseded` when a newer one arrives, an older one arriving after a
//!   newer is dropped on arrival, and the older inbox entry is marked superseded.
//!
//! Only an origin steers its own messages, unless its role is one of the policy's
//! `override_roles` (checked at every node, like the rest of the policy). A cancel of a
//! message this node has not seen is kept as a pending tombstone: when the target arrives, it
//! is dropped here and the cancel leaves for its destinations then.
//!
//! A replacement withdraws the old copies it meets on its way and at its destinations only: a
//! copy of the old message waiting elsewhere is marked superseded where it is delivered (the
//! replacement arrives too), or is dropped there if the replacement got there first. To
//! recall copies wherever they wait, cancel the old message as well.

use std::time::Duration;

use bytes::Bytes;

use super::frame::{InboxRecord, LatestKey, Tombstone, Withdrawal};
use super::node::{Event, Node, SubmitError};
use super::schema;
use super::store::{StoreError, Table};
use super::types::{
    Address, Body, Envelope, MessageId, NodeId, Outcome, Precedence, Supersedes, Time,
};
use crate::wire;

/// The content type of a cancel (it has no payload).
pub const CANCEL_CONTENT_TYPE: &str = "application/vnd.relaymesh.cancel";
/// A cancel lives at least this long, so it can still reach a target about to expire.
const MIN_CANCEL_LIFETIME: Duration = Duration::from_secs(60);
/// A key's newest message is remembered this long past its deadline.
const KEY_MARGIN: Duration = Duration::from_secs(600);

/// What became of a cancel request (`Node::handle_cancel`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelReceipt {
    /// The cancel's own id (its status shows where it reached).
    pub id: MessageId,
    /// The target is not known here yet: the cancel waits for it (a pending tombstone).
    pub pending: bool,
    /// The target's origin, when it is not this node (an override by role).
    pub overrode: Option<NodeId>,
}

/// Why an arriving envelope is neither held nor delivered.
pub(super) struct Steered {
    pub(super) outcome: Outcome,
    pub(super) reason: String,
    /// The cancel or newer message that withdrew it.
    pub(super) by: MessageId,
}

/// A message this node knows of and might steer: where it was going, and how long it lives.
struct Known {
    origin: NodeId,
    to: Address,
    precedence: Precedence,
    destinations: Vec<NodeId>,
    /// When its lifetime ends (by this node's clock).
    deadline: Time,
    /// Already cancelled from here, by this cancel.
    cancelled_by: Option<MessageId>,
    /// It is a cancel itself.
    is_cancel: bool,
}

impl Known {
    /// A message held or delivered here, whose lifetime ends at `deadline`.
    fn of(e: Envelope, deadline: Time) -> Known {
        Known {
            is_cancel: matches!(e.body, Body::Cancel { .. }),
            origin: e.origin,
            to: e.to,
            precedence: e.precedence,
            destinations: e.destinations,
            deadline,
            cancelled_by: None,
        }
    }
}

impl Node {
    /// Whether `origin` may steer messages of `target_origin`: its own, or anyone's when its
    /// role may override.
    pub(super) fn may_steer(
        &self,
        origin: &NodeId,
        role: Option<super::types::Role>,
        target_origin: &NodeId,
    ) -> Result<(), String> {
        if origin == target_origin
            || role.is_some_and(|r| self.cfg.policy.override_roles.contains(&r))
        {
            return Ok(());
        }
        Err(format!(
            "only {target_origin}, its origin, may cancel or replace its messages (no \
             override for {origin}'s role)"
        ))
    }

    /// Recalls message `target` (a message this node sent, holds or delivered; or one it has
    /// not seen yet, pending). The cancel is signed and leaves with the batch, like a
    /// submission; `precedence` raises it above the target's.
    pub fn handle_cancel(
        &mut self,
        now: Time,
        target: MessageId,
        reason: String,
        precedence: Option<Precedence>,
    ) -> Result<CancelReceipt, SubmitError> {
        if let Some(e) = &self.poisoned {
            return Err(SubmitError::Storage(e.clone()));
        }
        if reason.len() > 1024 {
            return Err(SubmitError::Invalid("a reason is at most 1024 bytes".into()));
        }
        self.refuse_object_steering(&target)?;
        // Cancelled here already (by this node, pending, or by a cancel that came through):
        // that cancel is the answer, and nothing more is sent.
        let stone = self.store.get(Table::Tombstones, &target.0).map_err(SubmitError::Storage)?;
        if let Some(stone) = stone.and_then(|raw| wire::decode_tombstone(&raw).ok())
            && stone.outcome == Outcome::Cancelled
            && stone.until > now
        {
            return Ok(CancelReceipt {
                id: stone.by,
                pending: stone.origin.is_none(),
                overrode: None,
            });
        }
        let known = self.find_message(&target).map_err(SubmitError::Storage)?;
        let me = self.cfg.node.clone();
        let Some(known) = known else {
            // Not seen here: a pending tombstone, applied when it arrives.
            let id = self.new_id();
            let stone = Tombstone {
                origin: None,
                by: id,
                outcome: Outcome::Cancelled,
                reason,
                until: now + self.cfg.max_lifetime,
            };
            let put = self.store.put(Table::Tombstones, &target.0, &wire::encode_tombstone(&stone));
            if let Err(e) = put {
                self.poison(e.clone());
                return Err(SubmitError::Storage(e));
            }
            return Ok(CancelReceipt { id, pending: true, overrode: None });
        };
        if let Some(id) = known.cancelled_by {
            return Ok(CancelReceipt { id, pending: false, overrode: None });
        }
        if known.is_cancel {
            return Err(SubmitError::Invalid(format!(
                "message {target} is itself a cancel: it cannot be recalled"
            )));
        }
        self.may_steer(&me, Some(self.cfg.role), &known.origin).map_err(SubmitError::Forbidden)?;
        if known.deadline <= now {
            return Err(SubmitError::Invalid(format!(
                "message {target}'s lifetime has ended: there is nothing left to cancel"
            )));
        }
        let overrode = (known.origin != me).then(|| known.origin.clone());
        if let Some(o) = &overrode {
            tracing::warn!(%target, origin = %o, "cancelling another node's message (override by role)");
        }
        let id = self.new_id();
        let envelope = self.cancel_envelope(now, id, &target, known, reason, precedence);
        self.cfg
            .policy
            .check(&me, Some(self.cfg.role), &envelope.to, envelope.precedence)
            .map_err(SubmitError::Forbidden)?;
        let local = self.is_local_member(&envelope.to);
        if let Err(e) = self.accept_local(now, envelope, local) {
            self.poison(e.clone());
            return Err(SubmitError::Storage(e));
        }
        Ok(CancelReceipt { id, pending: false, overrode })
    }

    fn cancel_envelope(
        &mut self,
        now: Time,
        id: MessageId,
        target: &MessageId,
        known: Known,
        reason: String,
        precedence: Option<Precedence>,
    ) -> Envelope {
        let me = self.cfg.node.clone();
        // Every node known here, not only the target's destinations: a copy may wait at any
        // relay, and no node knows where (a cancel is small and rare).
        let mut all = self.routing.known_nodes();
        all.extend(self.membership.nodes().cloned());
        all.extend(self.resolve(&known.to));
        all.extend(known.destinations);
        all.remove(&me);
        let destinations: Vec<NodeId> = all.into_iter().collect();
        let lifetime = known
            .deadline
            .saturating_since(now)
            .max(MIN_CANCEL_LIFETIME)
            .min(self.cfg.max_lifetime);
        Envelope {
            id,
            origin: me,
            to: known.to,
            precedence: precedence.map_or(known.precedence, |p| p.max(known.precedence)),
            lifetime,
            content_type: CANCEL_CONTENT_TYPE.into(),
            payload: Bytes::new(),
            receipt: true,
            body: Body::Cancel { reason, replaced_by: None },
            status: super::types::TrafficStatus::Actual,
            created: now,
            age: Duration::ZERO,
            hop_count: 0,
            destinations,
            signature: Bytes::new(),
            key: None,
            supersedes: Some(Supersedes { origin: known.origin, id: *target }),
        }
    }

    /// The target of a replacement submitted here: a message this node sent, holds or
    /// delivered. An id not known here is refused: its origin is unknown, and a replacement
    /// that named a wrong one would arrive beside the message it was meant to replace.
    pub(super) fn replacement_target(
        &mut self,
        target: MessageId,
    ) -> Result<Supersedes, SubmitError> {
        self.refuse_object_steering(&target)?;
        let Some(known) = self.find_message(&target).map_err(SubmitError::Storage)? else {
            return Err(SubmitError::Invalid(format!(
                "message {target} is not known here (not sent, held or delivered here): \
                 send the replacement from its origin or from a node that has it"
            )));
        };
        let me = self.cfg.node.clone();
        let origin = known.origin;
        self.may_steer(&me, Some(self.cfg.role), &origin).map_err(SubmitError::Forbidden)?;
        if origin != me {
            tracing::warn!(%target, %origin, "replacing another node's message (override by role)");
        }
        Ok(Supersedes { origin, id: target })
    }

    /// The notice a replacement sends ahead of itself to every node known here, so that the
    /// old message is dropped wherever it waits, not only on the replacement's way.
    pub(super) fn replacement_notice(
        &mut self,
        now: Time,
        replacement: &Envelope,
        target: &Supersedes,
    ) -> Result<(), StoreError> {
        let known = match self.find_message(&target.id)? {
            Some(k) => k,
            None => Known {
                origin: target.origin.clone(),
                to: replacement.to.clone(),
                precedence: replacement.precedence,
                destinations: Vec::new(),
                deadline: now + replacement.lifetime,
                cancelled_by: None,
                is_cancel: false,
            },
        };
        let id = self.new_id();
        let mut notice = self.cancel_envelope(now, id, &target.id, known, String::new(), None);
        notice.precedence = notice.precedence.max(replacement.precedence);
        notice.receipt = false;
        notice.body = Body::Cancel { reason: String::new(), replaced_by: Some(replacement.id) };
        // Its work here was done by the replacement itself (`steer`).
        notice.destinations.retain(|d| d != &self.cfg.node);
        if notice.destinations.is_empty() {
            return Ok(());
        }
        self.originate(now, notice);
        Ok(())
    }

    /// What this node knows of message `id`: sent from here, held here, or delivered here.
    fn find_message(&mut self, id: &MessageId) -> Result<Option<Known>, StoreError> {
        if let Some(s) = self.status_record(id)? {
            let to = Address::parse(&s.to)
                .map_err(|e| StoreError::Corrupt(format!("status of {id}: {e}")))?;
            return Ok(Some(Known {
                origin: self.cfg.node.clone(),
                to,
                precedence: s.precedence.unwrap_or(Precedence::Routine),
                destinations: s.destinations,
                deadline: s.accepted_at + s.lifetime,
                cancelled_by: s.cancelled_by,
                is_cancel: s.cancels.is_some(),
            }));
        }
        let (from, to) = schema::id_range(id);
        let mut held = None;
        self.store.scan(Table::HeldIds, &from, Some(&to), &mut |k, _| {
            held = k.get(16..).and_then(schema::read_u64);
            false
        })?;
        if let Some(seq) = held
            && let Some(m) = self.load_message(seq)?
        {
            let deadline = m.deadline();
            return Ok(Some(Known::of(m.envelope, deadline)));
        }
        let mut cursor = None;
        self.store.scan(Table::Delivered, &from, Some(&to), &mut |_, v| {
            cursor = v.get(8..).and_then(schema::read_u64);
            false
        })?;
        if let Some(cursor) = cursor
            && let Some(r) = self.inbox_record(cursor)?
        {
            let deadline = r.delivered_at + r.envelope.lifetime.saturating_sub(r.age);
            return Ok(Some(Known::of(r.envelope, deadline)));
        }
        Ok(None)
    }

    fn inbox_record(&mut self, cursor: u64) -> Result<Option<InboxRecord>, StoreError> {
        match self.store.get(Table::Inbox, &cursor.to_be_bytes())? {
            None => Ok(None),
            Some(raw) => wire::decode_inbox(&raw)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("inbox {cursor}: {e}"))),
        }
    }

    /// An envelope arrives here (a relay taking custody of it, or its origin accepting it):
    /// what it steers is steered, and if it is itself withdrawn (a tombstone, a newer message
    /// with its key) the outcome and why: it is then neither held nor delivered.
    pub(super) fn steer(
        &mut self,
        now: Time,
        env: &Envelope,
    ) -> Result<Option<Steered>, StoreError> {
        if let Some(raw) = self.store.get(Table::Tombstones, &env.id.0)? {
            let stone = wire::decode_tombstone(&raw)
                .map_err(|e| StoreError::Corrupt(format!("tombstone of {}: {e}", env.id)))?;
            match &stone.origin {
                Some(o) if o == &env.origin => {
                    let what = match stone.outcome {
                        Outcome::Cancelled => "cancelled",
                        _ => "replaced",
                    };
                    let reason = match stone.reason.as_str() {
                        "" => format!("{what} by {} before it arrived", stone.by),
                        r => format!("{what} by {} before it arrived: {r}", stone.by),
                    };
                    return Ok(Some(Steered { outcome: stone.outcome, reason, by: stone.by }));
                }
                Some(_) => {} // another origin's message with the same id
                None => {
                    let me = self.cfg.node.clone();
                    if self.may_steer(&me, Some(self.cfg.role), &env.origin).is_ok() {
                        self.store.delete(Table::Tombstones, &env.id.0)?;
                        let by = stone.by;
                        self.cancel_on_arrival(now, env, stone)?;
                        let reason = "cancelled here before it arrived".into();
                        return Ok(Some(Steered { outcome: Outcome::Cancelled, reason, by }));
                    }
                }
            }
        }
        if let Some(key) = &env.key
            && let Some((reason, by)) = self.keyed_arrival(now, env, key)?
        {
            return Ok(Some(Steered { outcome: Outcome::Superseded, reason, by }));
        }
        if let Some(target) = &env.supersedes {
            let (outcome, reason, by) = match &env.body {
                Body::Cancel { reason, replaced_by: None } => {
                    (Outcome::Cancelled, reason.clone(), env.id)
                }
                Body::Cancel { replaced_by: Some(by), .. } => {
                    (Outcome::Superseded, String::new(), *by)
                }
                _ => (Outcome::Superseded, String::new(), env.id),
            };
            self.withdraw(now, target, by, outcome, &reason)?;
            let stone = Tombstone {
                origin: Some(target.origin.clone()),
                by,
                outcome,
                reason,
                until: now + self.cfg.max_lifetime,
            };
            self.store.put(Table::Tombstones, &target.id.0, &wire::encode_tombstone(&stone))?;
        }
        Ok(None)
    }

    /// A keyed envelope against the newest of its key seen here: `Some(why)` if it is older;
    /// otherwise it becomes the newest and withdraws the one before.
    fn keyed_arrival(
        &mut self,
        now: Time,
        env: &Envelope,
        key: &str,
    ) -> Result<Option<(String, MessageId)>, StoreError> {
        let k = schema::latest_key(&env.origin, key);
        let deadline = now + env.lifetime.saturating_sub(env.age) + KEY_MARGIN;
        let mut until = deadline;
        if let Some(raw) = self.store.get(Table::Keys, &k)? {
            let latest = wire::decode_latest_key(&raw)
                .map_err(|e| StoreError::Corrupt(format!("key {key}: {e}")))?;
            if latest.id == env.id {
                return Ok(None); // the same message again: dedup's business
            }
            if (latest.created, latest.id) > (env.created, env.id) {
                let why = format!("superseded by {}, newer with key {key}", latest.id);
                return Ok(Some((why, latest.id)));
            }
            until = until.max(latest.until);
            let older = Supersedes { origin: env.origin.clone(), id: latest.id };
            let reason = format!("a newer message with key {key}");
            self.withdraw(now, &older, env.id, Outcome::Superseded, &reason)?;
        }
        let latest = LatestKey { id: env.id, created: env.created, until };
        self.store.put(Table::Keys, &k, &wire::encode_latest_key(&latest))?;
        Ok(None)
    }

    /// Withdraws message `target` here, for `by`: a held copy is dropped, a delivered one
    /// marked, and at its origin its alarms clear and it binds no late member.
    fn withdraw(
        &mut self,
        now: Time,
        target: &Supersedes,
        by: MessageId,
        outcome: Outcome,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut held = Vec::new();
        let (from, to) = schema::id_range(&target.id);
        self.store.scan(Table::HeldIds, &from, Some(&to), &mut |k, v| {
            if v == target.origin.as_str().as_bytes()
                && let Some(seq) = k.get(16..).and_then(schema::read_u64)
            {
                held.push(seq);
            }
            true
        })?;
        let why = match reason {
            "" => format!("{} by {by}", outcome.as_str()),
            r => format!("{} by {by}: {r}", outcome.as_str()),
        };
        for seq in held {
            self.drop_held(now, seq, outcome, &why, by)?;
        }
        let key = schema::delivered_key(&target.id, &target.origin);
        if let Some(cursor) = self
            .store
            .get(Table::Delivered, &key)?
            .as_deref()
            .and_then(|v| v.get(8..))
            .and_then(schema::read_u64)
            && let Some(mut record) = self.inbox_record(cursor)?
            && record.withdrawn.is_none()
        {
            record.withdrawn = Some(Withdrawal { by, outcome, reason: reason.to_owned(), at: now });
            self.store.put(Table::Inbox, &cursor.to_be_bytes(), &wire::encode_inbox(&record))?;
            self.pending_events.push(Event::Withdrawn {
                cursor,
                id: target.id,
                origin: target.origin.clone(),
                by,
                outcome,
                reason: reason.to_owned(),
            });
        }
        if target.origin == self.cfg.node {
            self.update_status(&target.id, |s| match outcome {
                Outcome::Cancelled => s.cancelled_by = Some(by),
                _ => s.replaced_by = Some(by),
            })?;
            let destinations =
                self.status_record(&target.id)?.map(|r| r.destinations).unwrap_or_default();
            self.clear_overdue(now, &target.id, &destinations, Some(outcome))?;
            self.unbind(&target.id)?;
        }
        Ok(())
    }

    /// Drops held message `seq` for good (cancelled or superseded): every destination still
    /// owed is settled, the origin told.
    fn drop_held(
        &mut self,
        now: Time,
        seq: u64,
        outcome: Outcome,
        reason: &str,
        by: MessageId,
    ) -> Result<(), StoreError> {
        let Some(m) = self.load_message(seq)? else { return Ok(()) };
        let owed = self.settle_for_good(seq, &m, m.deadline())?;
        let env = &m.envelope;
        let age = env.age + now.saturating_since(m.received_at);
        self.count_withdrawn(env, outcome, by, owed.clone());
        self.report(now, env, outcome, reason, age, &owed)
    }

    pub(super) fn count_withdrawn(
        &mut self,
        env: &Envelope,
        outcome: Outcome,
        by: MessageId,
        destinations: Vec<NodeId>,
    ) {
        let p = env.precedence.index();
        match outcome {
            Outcome::Cancelled => self.counters.cancelled[p] += 1,
            _ => self.counters.superseded[p] += 1,
        }
        self.pending_events.push(Event::Superseded {
            id: env.id,
            origin: env.origin.clone(),
            precedence: env.precedence,
            outcome,
            by,
            destinations,
        });
    }

    /// A message this node cancelled before it was seen here has arrived: the cancel leaves
    /// now, for the destinations it was going to.
    fn cancel_on_arrival(
        &mut self,
        now: Time,
        env: &Envelope,
        stone: Tombstone,
    ) -> Result<(), StoreError> {
        let known = Known::of(env.clone(), now + env.lifetime.saturating_sub(env.age));
        let cancel =
            self.cancel_envelope(now, stone.by, &env.id, known, stone.reason.clone(), None);
        let local = self.is_local_member(&cancel.to);
        let record = Tombstone { origin: Some(env.origin.clone()), ..stone };
        self.store.put(Table::Tombstones, &env.id.0, &wire::encode_tombstone(&record))?;
        self.accept_local(now, cancel, local)
    }

    /// Indexes held messages by id in a store written before the index existed (protocol 3).
    pub(super) fn index_held(&mut self) -> Result<(), StoreError> {
        let mut indexed = false;
        self.store.scan(Table::HeldIds, b"", None, &mut |_, _| {
            indexed = true;
            false
        })?;
        if indexed {
            return Ok(());
        }
        let mut rows = Vec::new();
        self.store.scan(Table::Messages, b"", None, &mut |k, v| {
            if let (Some(seq), Ok(m)) = (schema::read_u64(k), wire::decode_stored(v)) {
                rows.push((seq, m.envelope.id, m.envelope.origin));
            }
            true
        })?;
        if rows.is_empty() {
            return Ok(());
        }
        for (seq, id, origin) in rows {
            self.store.put(
                Table::HeldIds,
                &schema::held_id_key(&id, seq),
                origin.as_str().as_bytes(),
            )?;
        }
        self.store.commit()
    }

    /// Forgets tombstones and keys past their time.
    pub(super) fn sweep_steering(&mut self, now: Time) -> Result<(), StoreError> {
        let mut old = Vec::new();
        self.store.scan(Table::Tombstones, b"", None, &mut |k, v| {
            if wire::decode_tombstone(v).map_or(true, |t| t.until <= now) {
                old.push(k.to_vec());
            }
            old.len() < 10_000
        })?;
        for k in old.drain(..) {
            self.store.delete(Table::Tombstones, &k)?;
        }
        self.store.scan(Table::Keys, b"", None, &mut |k, v| {
            if wire::decode_latest_key(v).map_or(true, |l| l.until <= now) {
                old.push(k.to_vec());
            }
            old.len() < 10_000
        })?;
        for k in old {
            self.store.delete(Table::Keys, &k)?;
        }
        Ok(())
    }
}
