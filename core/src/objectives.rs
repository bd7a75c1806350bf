//! Delivery objectives: how long a message of each precedence may take to reach a destination
//! (ACP 121's defaults: FLASH 10 min, IMMEDIATE 30 min, PRIORITY 3 h, ROUTINE 6 h). The origin
//! watches them: a destination that has no outcome (delivered, expired, refused) when its
//! message's objective runs out is *overdue*, an alarm that stays raised until an outcome
//! arrives.
//!
//! Only the origin knows whether a destination was reached, and only if it asked for a
//! delivery receipt: objectives are watched for messages that want one (the default).
//!
//! When it raises one, the origin also tells `CoreConfig::notify_overdue` (the command nodes,
//! `group:role:command`, by default) in a message of the same precedence that asks for no
//! receipt, so a notice is never overdue itself and no alarm begets another.
//!
//! Two tables keep it durable: `Objectives` (deadline, id) holds the messages still to be
//! checked, in deadline order; `Overdue` (id, destination) holds the raised alarms, with the
//! message's precedence. The counts per precedence are rebuilt from it when the node opens.

use std::time::Duration;

use super::frame::StatusRecord;
use super::node::{Event, Node, Submission};
use super::schema;
use super::store::{StoreError, Table};
use super::types::{Address, MessageId, NodeId, Outcome, Precedence, Time, TrafficStatus};

/// The content type of the notice an overdue alarm sends to `CoreConfig::notify_overdue`.
pub const OVERDUE_CONTENT_TYPE: &str = "text/vnd.relaymesh.overdue";

/// ACP 121's delivery objectives, by `Precedence::index()` (ROUTINE first).
pub const DEFAULT_OBJECTIVES: [Duration; 4] = [
    Duration::from_secs(6 * 3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(30 * 60),
    Duration::from_secs(10 * 60),
];

/// A destination past its message's objective with no outcome yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverdueView {
    pub id: MessageId,
    pub to: String,
    pub precedence: Precedence,
    pub destination: NodeId,
    pub accepted_at: Time,
    /// When the objective ran out.
    pub due: Time,
}

fn overdue_key(id: &MessageId, node: &NodeId) -> Vec<u8> {
    let mut k = id.0.to_vec();
    k.extend_from_slice(node.as_str().as_bytes());
    k
}

fn overdue_value(p: Precedence, due: Time) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[0] = p.index() as u8;
    v[1..].copy_from_slice(&due.as_micros().to_be_bytes());
    v
}

fn parse_overdue_value(v: &[u8]) -> Option<(Precedence, Time)> {
    let p = Precedence::from_index(usize::from(*v.first()?))?;
    Some((p, Time(schema::read_u64(v.get(1..)?)?)))
}

impl Node {
    /// The objective of a message to `to` of precedence `p`: the first `address_objectives`
    /// rule that covers the address and names the precedence, else the node's.
    pub fn objective_for(&self, to: &Address, p: Precedence) -> Duration {
        self.cfg
            .address_objectives
            .iter()
            .filter(|r| r.to.matches(to))
            .find_map(|r| r.objectives[p.index()])
            .unwrap_or(self.cfg.objectives[p.index()])
    }

    /// Starts watching the objective of a message this node just accepted from an application.
    pub(super) fn watch_objective(
        &mut self,
        id: &MessageId,
        to: &Address,
        p: Precedence,
        accepted_at: Time,
    ) -> Result<(), StoreError> {
        let due = accepted_at + self.objective_for(to, p);
        self.store.put(Table::Objectives, &schema::time_id_key(due, id), b"")?;
        self.next_objective = Some(self.next_objective.map_or(due, |t| t.min(due)));
        Ok(())
    }

    /// The earliest objective still to check (from the store).
    pub(super) fn peek_objective(&mut self) -> Result<Option<Time>, StoreError> {
        self.first_time(Table::Objectives)
    }

    /// Counts the raised alarms per precedence (from the store).
    pub(super) fn count_overdue(&mut self) -> Result<[u64; 4], StoreError> {
        let mut counts = [0u64; 4];
        self.store.scan(Table::Overdue, b"", None, &mut |_, v| {
            if let Some((p, _)) = parse_overdue_value(v) {
                counts[p.index()] += 1;
            }
            true
        })?;
        Ok(counts)
    }

    /// Checks the objectives that ran out by `now`: every destination of those messages still
    /// without an outcome becomes overdue.
    pub(super) fn check_objectives(&mut self, now: Time) -> Result<(), StoreError> {
        loop {
            let mut due = Vec::new();
            self.store.scan(
                Table::Objectives,
                b"",
                Some(&schema::time_bound(now)),
                &mut |k, _| {
                    due.push(k.to_vec());
                    due.len() < 1024
                },
            )?;
            if due.is_empty() {
                break;
            }
            for k in due {
                self.store.delete(Table::Objectives, &k)?;
                let (Some(t), Some(id)) =
                    (schema::read_u64(&k), k.get(8..).and_then(MessageId::from_slice))
                else {
                    continue;
                };
                self.raise_overdue(now, &id, Time(t))?;
            }
        }
        self.next_objective = self.peek_objective()?;
        Ok(())
    }

    fn raise_overdue(&mut self, now: Time, id: &MessageId, due: Time) -> Result<(), StoreError> {
        let Some(r) = self.status_record(id)? else { return Ok(()) };
        if r.cancelled_by.is_some() {
            return Ok(()); // recalled: nothing is owed any more
        }
        let p = r.precedence.unwrap_or(Precedence::Routine);
        let late: Vec<NodeId> = r
            .destinations
            .iter()
            .filter(|d| !r.reports.iter().any(|x| x.destinations.contains(d)))
            .cloned()
            .collect();
        if late.is_empty() {
            return Ok(());
        }
        for d in &late {
            self.store.put(Table::Overdue, &overdue_key(id, d), &overdue_value(p, due))?;
        }
        self.overdue[p.index()] += late.len() as u64;
        self.notify_overdue(now, id, &r, due, &late)?;
        let objective = due.saturating_since(r.accepted_at);
        self.pending_events.push(Event::Overdue {
            of: *id,
            precedence: p,
            destinations: late,
            objective,
        });
        Ok(())
    }

    /// Tells `notify_overdue` (the command nodes, by default) that `late` of message `id`
    /// were not reached in time.
    fn notify_overdue(
        &mut self,
        now: Time,
        id: &MessageId,
        r: &StatusRecord,
        due: Time,
        late: &[NodeId],
    ) -> Result<(), StoreError> {
        let p = r.precedence.unwrap_or(Precedence::Routine);
        let late: Vec<String> = late.iter().map(ToString::to_string).collect();
        let text = format!(
            "OVERDUE {} from {}: message {id} to {} not delivered to {} within its objective \
             of {}",
            p.as_str().to_uppercase(),
            self.cfg.node,
            r.to,
            late.join(", "),
            minutes(due.saturating_since(r.accepted_at)),
        );
        self.notice(now, id, p, text)
    }

    /// Tells `notify_overdue` that the alarms for `cleared` of message `id` cleared with
    /// `outcome`: the notice replaces the overdue one where that is still on its way or in an
    /// inbox (both carry the latest-value key `overdue/<id>`).
    fn notify_cleared(
        &mut self,
        now: Time,
        id: &MessageId,
        p: Precedence,
        outcome: Outcome,
        cleared: &[NodeId],
    ) -> Result<(), StoreError> {
        let Some(r) = self.status_record(id)? else { return Ok(()) };
        let cleared: Vec<String> = cleared.iter().map(ToString::to_string).collect();
        let text = format!(
            "CLEARED {} from {}: message {id} to {}: {} at {} after {}",
            p.as_str().to_uppercase(),
            self.cfg.node,
            r.to,
            outcome.as_str(),
            cleared.join(", "),
            minutes(now.saturating_since(r.accepted_at)),
        );
        self.notice(now, id, p, text)
    }

    /// A notice about message `id` to `notify_overdue`: a message of its precedence without a
    /// receipt (so it is never overdue itself: no loop), to every member known here but this
    /// node.
    fn notice(
        &mut self,
        now: Time,
        id: &MessageId,
        p: Precedence,
        text: String,
    ) -> Result<(), StoreError> {
        let Some(to) = self.cfg.notify_overdue.clone() else { return Ok(()) };
        let me = self.cfg.node.clone();
        let sub = Submission {
            to,
            precedence: p,
            lifetime: self.cfg.max_lifetime.min(Duration::from_secs(24 * 3600)),
            content_type: OVERDUE_CONTENT_TYPE.into(),
            payload: bytes::Bytes::from(text),
            receipt: false,
            status: TrafficStatus::Actual,
            key: Some(format!("overdue/{id}")),
            replaces: None,
        };
        match self.new_envelope(now, sub) {
            Ok(mut envelope) => {
                // This node has its own alarm: the notice is for the others, and with no
                // other member known it is not sent at all (it would only stand in this
                // node's own Sent list as `no_recipients`).
                envelope.destinations.retain(|d| d != &me);
                if envelope.destinations.is_empty() {
                    return Ok(());
                }
                self.accept_local(now, envelope, false)
            }
            Err(why) => {
                tracing::warn!(%id, "overdue notice not sent: {why}");
                Ok(())
            }
        }
    }

    /// An outcome arrived for `destinations` of message `id`: their alarms, if raised, clear,
    /// and `notify_overdue` is told (not when the alarm is only forgotten: `outcome` `None`).
    pub(super) fn clear_overdue(
        &mut self,
        now: Time,
        id: &MessageId,
        destinations: &[NodeId],
        outcome: Option<Outcome>,
    ) -> Result<(), StoreError> {
        // Every report at the origin comes here: with no alarm raised (the counts match the
        // store, `check_invariants`) there is nothing to look up.
        if self.overdue == [0; 4] {
            return Ok(());
        }
        let mut cleared = Vec::new();
        let mut precedence = None;
        for d in destinations {
            let k = overdue_key(id, d);
            if let Some(v) = self.store.get(Table::Overdue, &k)? {
                self.store.delete(Table::Overdue, &k)?;
                if let Some((p, _)) = parse_overdue_value(&v) {
                    debug_assert!(
                        self.overdue[p.index()] > 0,
                        "an overdue row {p} was not counted"
                    );
                    self.overdue[p.index()] = self.overdue[p.index()].saturating_sub(1);
                    precedence = Some(p);
                }
                cleared.push(d.clone());
            }
        }
        if let (Some(p), Some(outcome)) = (precedence, outcome) {
            self.notify_cleared(now, id, p, outcome, &cleared)?;
        }
        if let Some(p) = precedence {
            self.pending_events.push(Event::OverdueCleared {
                of: *id,
                precedence: p,
                destinations: cleared,
            });
        }
        Ok(())
    }

    /// The alarms of message `id` (destinations overdue now).
    pub(super) fn overdue_of(&mut self, id: &MessageId) -> Result<Vec<NodeId>, StoreError> {
        let mut out = Vec::new();
        let mut end = id.0.to_vec();
        end.push(0xff);
        self.store.scan(Table::Overdue, &id.0, Some(&end), &mut |k, _| {
            if let Some(n) = k.get(16..).and_then(|b| std::str::from_utf8(b).ok())
                && let Ok(n) = NodeId::new(n)
            {
                out.push(n);
            }
            true
        })?;
        Ok(out)
    }

    /// Forgets the alarms of a message whose status is no longer kept.
    pub(super) fn forget_overdue(&mut self, now: Time, id: &MessageId) -> Result<(), StoreError> {
        if self.overdue == [0; 4] {
            return Ok(());
        }
        let late = self.overdue_of(id)?;
        self.clear_overdue(now, id, &late, None)
    }

    /// Every raised alarm, most urgent precedence first, then oldest first; at most `limit`.
    pub fn overdue_list(&mut self, limit: usize) -> Result<Vec<OverdueView>, StoreError> {
        let mut raw = Vec::new();
        self.store.scan(Table::Overdue, b"", None, &mut |k, v| {
            let id = k.get(..16).and_then(MessageId::from_slice);
            let node = k.get(16..).and_then(|b| std::str::from_utf8(b).ok());
            if let (Some(id), Some(node), Some((p, due))) = (id, node, parse_overdue_value(v))
                && let Ok(node) = NodeId::new(node)
            {
                raw.push((p, due, id, node));
            }
            true
        })?;
        raw.sort_by(|a, b| (b.0.index(), a.1).cmp(&(a.0.index(), b.1)));
        raw.truncate(limit);
        let mut out = Vec::with_capacity(raw.len());
        for (precedence, due, id, destination) in raw {
            let Some(r) = self.status_record(&id)? else { continue };
            out.push(OverdueView {
                id,
                to: r.to,
                precedence,
                destination,
                accepted_at: r.accepted_at,
                due,
            });
        }
        Ok(out)
    }
}

/// A duration as a notice writes it: `10 min`, `3 h`, `90 s`.
fn minutes(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s if s >= 600 => format!("{} min", (s + 30) / 60),
        s => format!("{s} s"),
    }
}
