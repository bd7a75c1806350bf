//! Read-only views of a node: its links, routes, queues and counters; a message's fate; the
//! inbox. Used by the local API, `relaymesh status` and the simulator's report.

use std::time::Duration;

use super::frame::{InboxRecord, StatusRecord};
use super::link::{LinkCounters, LinkId};
use super::node::{Counters, Node};
use super::schema;
use super::store::{StoreError, Table};
use super::types::{Medium, MessageId, NodeId, Outcome, Precedence, Role, Time};
use crate::wire;

/// One link's state.
#[derive(Clone, Debug)]
pub struct LinkView {
    pub id: LinkId,
    pub peer: NodeId,
    pub role: Role,
    pub medium: Medium,
    pub up: bool,
    pub since: Time,
    pub rtt: Option<Duration>,
    pub loss: f64,
    pub inflight: usize,
    /// Bytes of the offers in flight (what the window counts).
    pub inflight_bytes: u64,
    /// Link-state adverts waiting for room under the link's control cap.
    pub adverts_waiting: usize,
    pub counters: LinkCounters,
}

/// One link of the mesh, as its owner describes it (see [`Node::topology`]).
#[derive(Clone, Debug)]
pub struct TopologyLink {
    pub from: NodeId,
    pub from_role: Role,
    pub to: NodeId,
    pub medium: Medium,
    pub up: bool,
    pub rtt: Option<Duration>,
    pub loss: f64,
}

/// One route.
#[derive(Clone, Debug)]
pub struct RouteView {
    pub destination: NodeId,
    pub precedence: Precedence,
    pub next_hop: NodeId,
    pub link: Option<LinkId>,
    pub cost: u64,
}

/// A node at a glance.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    pub node: NodeId,
    pub role: Role,
    pub links: Vec<LinkView>,
    pub routes: Vec<RouteView>,
    /// Messages held, by `Precedence::index()`.
    pub held: [u64; 4],
    pub held_bytes: u64,
    pub capacity: u64,
    pub counters: Counters,
    pub subscriptions: Vec<String>,
    /// This node's named groups (configured, with run-time joins and leaves applied).
    pub groups: Vec<String>,
    /// Every node this node counts as a member of something, reachable or not.
    pub members: Vec<NodeId>,
    /// The first invariant found broken, when the node checks them (simulations).
    pub violation: Option<String>,
    /// Destinations of this node's messages past their delivery objective, by
    /// `Precedence::index()`.
    pub overdue: [u64; 4],
    pub known_nodes: Vec<NodeId>,
    pub inbox_next: u64,
    pub inbox_read: u64,
    pub store: super::store::StoreStats,
    /// Number of the revocation list in effect.
    pub revocation_list: Option<u64>,
    /// Origin signatures are made and checked (always, but in core unit tests).
    pub signatures: bool,
    /// The nodes known here that belong to another deployment (`[[federation]]`), with it.
    pub deployments: Vec<(NodeId, super::federation::Deployment)>,
    /// The number of each federated deployment's revocation list in effect.
    pub federated_revocation_lists: Vec<(super::federation::Deployment, u64)>,
}

/// What became of a message at one destination.
#[derive(Clone, Debug)]
pub struct DestinationView {
    pub node: NodeId,
    /// `None` until a report arrives.
    pub outcome: Option<Outcome>,
    pub age: Option<Duration>,
    pub reason: String,
    /// Past the message's delivery objective with no outcome yet.
    pub overdue: bool,
}

/// A message this node originated, as far as it knows.
#[derive(Clone, Debug)]
pub struct MessageView {
    pub id: MessageId,
    pub to: String,
    pub precedence: Precedence,
    /// `held` (not yet handed on), `forwarded`, `delivered`, `partially_delivered`,
    /// `expired`, `refused`, `cancelled` (recalled from here: the destinations say which it
    /// reached first), `superseded` (a newer message took its place everywhere), or
    /// `no_recipients` (the address had no member at all; a member that appears while the
    /// message is within its lifetime is still bound to it).
    pub state: &'static str,
    /// Every destination's fate is known: the state will not change any more.
    pub settled: bool,
    pub accepted_at: Time,
    pub custody_at: Option<NodeId>,
    pub receipt: bool,
    pub destinations: Vec<DestinationView>,
    /// The cancel this node sent for it.
    pub cancelled_by: Option<MessageId>,
    pub key: Option<String>,
    /// The message it replaces.
    pub replaces: Option<MessageId>,
    /// Set on a cancel: the message it recalls.
    pub cancels: Option<MessageId>,
    /// A newer message of this node took its place.
    pub replaced_by: Option<MessageId>,
}

/// A delivered message with its inbox position.
#[derive(Clone, Debug)]
pub struct InboxItem {
    pub cursor: u64,
    pub record: InboxRecord,
}

impl Node {
    pub fn status(&mut self) -> NodeStatus {
        let links = self
            .links
            .values()
            .map(|l| LinkView {
                id: l.id,
                peer: l.info.peer.clone(),
                role: l.info.role,
                medium: l.info.medium,
                up: l.up,
                since: l.since,
                rtt: l.srtt,
                loss: l.loss,
                inflight: l.inflight.len(),
                inflight_bytes: l.inflight_bytes.iter().sum(),
                adverts_waiting: l.adverts_out.len(),
                counters: l.counters.clone(),
            })
            .collect();
        let mut routes = Vec::new();
        for p in Precedence::DESCENDING {
            for (destination, next_hop, cost) in self.routing.routes(p) {
                let link = self.link_for(&next_hop, p, false);
                routes.push(RouteView { destination, precedence: p, next_hop, link, cost });
            }
        }
        let mut deployments: Vec<(NodeId, super::federation::Deployment)> = self
            .keys
            .values()
            .filter_map(|c| Some((c.node.clone(), c.deployment.clone()?)))
            .collect();
        deployments.sort();
        NodeStatus {
            node: self.cfg.node.clone(),
            role: self.cfg.role,
            links,
            routes,
            held: self.held.counts(),
            held_bytes: self.held.bytes(),
            capacity: self.capacity(),
            counters: self.counters.clone(),
            subscriptions: self.subscriptions.iter().map(|s| s.as_str().to_owned()).collect(),
            groups: self.groups.iter().cloned().collect(),
            members: self
                .membership
                .nodes()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            violation: self.violation.as_ref().map(ToString::to_string),
            overdue: self.overdue,
            known_nodes: self.routing.known_nodes().into_iter().collect(),
            inbox_next: self.inbox_landed,
            inbox_read: self.read_cursor,
            store: self.store.stats(),
            revocation_list: self.revocation_number(),
            signatures: self.cfg.trust.is_some(),
            deployments,
            federated_revocation_lists: self.federated_revocation_numbers(),
        }
    }

    /// Messages held here, all precedences.
    pub fn held_messages(&self) -> u64 {
        self.held.total()
    }

    /// The stored status record of a message this node originated, if still kept.
    pub(super) fn status_record(
        &mut self,
        id: &MessageId,
    ) -> Result<Option<StatusRecord>, StoreError> {
        let Some(raw) = self.store.get(Table::Status, &id.0)? else { return Ok(None) };
        wire::decode_status(&raw)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("status of {id}: {e}")))
    }

    /// The status of a message this node originated.
    pub fn message_status(&mut self, id: &MessageId) -> Result<Option<MessageView>, StoreError> {
        let Some(r) = self.status_record(id)? else { return Ok(None) };
        let late = self.overdue_of(id)?;
        let destinations: Vec<DestinationView> = r
            .destinations
            .iter()
            .map(|d| {
                // A delivery report wins over an expiry reported for the same copy elsewhere,
                // and the destination's own word over a relay's (an object's says how much of
                // it arrived).
                let report = r
                    .reports
                    .iter()
                    .filter(|x| x.destinations.contains(d))
                    .min_by_key(|x| (x.outcome != Outcome::Delivered, &x.node != d));
                DestinationView {
                    node: d.clone(),
                    outcome: report.map(|x| x.outcome),
                    age: report.map(|x| x.age),
                    reason: report.map(|x| x.reason.clone()).unwrap_or_default(),
                    overdue: report.is_none() && late.contains(d),
                }
            })
            .collect();
        let count = |o: Outcome| destinations.iter().filter(|d| d.outcome == Some(o)).count();
        let (delivered, expired, refused) =
            (count(Outcome::Delivered), count(Outcome::Expired), count(Outcome::Refused));
        let withdrawn = count(Outcome::Cancelled) + count(Outcome::Superseded);
        let known = destinations.iter().filter(|d| d.outcome.is_some()).count();
        let all = destinations.len();
        let state = if all == 0 {
            // Nobody to deliver to (yet): a member that appears within the lifetime is bound late.
            "no_recipients"
        } else if r.cancelled_by.is_some() {
            "cancelled"
        } else if delivered == all {
            "delivered"
        } else if expired == all {
            "expired"
        } else if withdrawn > 0 && delivered == 0 && known == all {
            "superseded"
        } else if refused == all || expired + refused == all {
            "refused"
        } else if known > 0 {
            "partially_delivered"
        } else if r.custody_at.as_ref() == Some(&self.cfg.node) {
            "held"
        } else {
            "forwarded"
        };
        Ok(Some(MessageView {
            id: r.id,
            to: r.to,
            precedence: r.precedence.unwrap_or(Precedence::Routine),
            state,
            settled: all > 0 && known == all,
            accepted_at: r.accepted_at,
            custody_at: r.custody_at,
            receipt: r.receipt,
            destinations,
            cancelled_by: r.cancelled_by,
            key: r.key,
            replaces: r.replaces,
            cancels: r.cancels,
            replaced_by: r.replaced_by,
        }))
    }

    /// This node's own messages whose status it still keeps, newest first, at most `limit`.
    ///
    /// Status records are kept in acceptance order (`StatusAge`), for `status_keep` (days):
    /// the newest are the last. The scan looks at the last hour first and widens only if that
    /// holds fewer than `limit`, so a console refreshing its list does not read a week of
    /// records each time.
    pub fn sent(&mut self, now: Time, limit: usize) -> Result<Vec<MessageId>, StoreError> {
        let mut ids = std::collections::VecDeque::with_capacity(limit.min(1024));
        for window in [Duration::from_secs(3600), Duration::from_secs(86_400), Duration::MAX] {
            ids.clear();
            let from = schema::time_bound(Time(now.0.saturating_sub(window.as_micros() as u64)));
            let from: &[u8] = if window == Duration::MAX { b"" } else { &from };
            self.store.scan(Table::StatusAge, from, None, &mut |k, _| {
                if let Some(id) = k.get(8..).and_then(MessageId::from_slice) {
                    if ids.len() == limit {
                        ids.pop_front();
                    }
                    ids.push_back(id);
                }
                limit > 0
            })?;
            if ids.len() >= limit {
                break;
            }
        }
        Ok(ids.into_iter().rev().collect())
    }

    /// [`Node::sent`] with each message's status.
    pub fn sent_status(&mut self, now: Time, limit: usize) -> Result<Vec<MessageView>, StoreError> {
        let ids = self.sent(now, limit)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(v) = self.message_status(id)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The named groups and topic patterns known here (this node's and its held adverts'),
    /// for operators' address completion.
    pub fn known_addresses(&self) -> (Vec<String>, Vec<String>) {
        let (mut groups, mut topics) = self.routing.advertised_addresses();
        groups.extend(self.cfg.groups.iter().cloned());
        topics.extend(self.subscriptions.iter().map(|t| t.as_str().to_owned()));
        (groups.into_iter().collect(), topics.into_iter().collect())
    }

    /// The mesh as this node knows it: its own links and every link in the adverts it holds.
    pub fn topology(&self) -> Vec<TopologyLink> {
        let mut out: Vec<TopologyLink> = self
            .links
            .values()
            .map(|l| TopologyLink {
                from: self.cfg.node.clone(),
                from_role: self.cfg.role,
                to: l.info.peer.clone(),
                medium: l.info.medium,
                up: l.up,
                rtt: l.srtt,
                loss: l.loss,
            })
            .collect();
        for (node, role, l) in self.routing.topology() {
            out.push(TopologyLink {
                from: node,
                from_role: role,
                to: l.neighbour,
                medium: l.medium,
                up: l.up,
                rtt: Some(l.rtt).filter(|r| !r.is_zero()),
                loss: f64::from(l.loss_ppm) / 1e6,
            });
        }
        out
    }

    /// Up to `limit` inbox messages from cursor `from` on (`None`: the unread ones).
    pub fn inbox(&mut self, from: Option<u64>, limit: usize) -> Result<Vec<InboxItem>, StoreError> {
        let from = from.unwrap_or(self.read_cursor);
        let mut raw = Vec::new();
        // Only what is durable: a delivery of the open batch (or of one in flight) could still
        // be rolled back and its cursor given to another message.
        let to = self.inbox_landed.to_be_bytes();
        self.store.scan(Table::Inbox, &from.to_be_bytes(), Some(&to), &mut |k, v| {
            if let Some(c) = schema::read_u64(k) {
                raw.push((c, v.to_vec()));
            }
            raw.len() < limit
        })?;
        raw.into_iter()
            .map(|(cursor, v)| {
                wire::decode_inbox(&v)
                    .map(|record| InboxItem { cursor, record })
                    .map_err(|e| StoreError::Corrupt(format!("inbox {cursor}: {e}")))
            })
            .collect()
    }

    /// The first inbox cursor not yet marked read.
    pub fn read_cursor(&self) -> u64 {
        self.read_cursor
    }

    /// The cursor the next durable delivery will get: everything below it is on disk.
    pub fn inbox_next(&self) -> u64 {
        self.inbox_landed
    }
}

/// One (message, destination) pair a store still owes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldEntry {
    pub id: MessageId,
    pub origin: NodeId,
    pub destination: NodeId,
    pub precedence: Precedence,
}

/// Everything a store still owes, read straight from its tables: for audits (the simulator
/// checks after a run that every message is delivered, expired, refused or held somewhere).
pub fn held_entries(store: &mut dyn super::store::Store) -> Result<Vec<HeldEntry>, StoreError> {
    let mut owed = Vec::new();
    store.scan(Table::Queue, b"", None, &mut |k, _| {
        if let Some(e) = schema::parse_queue_key(k) {
            owed.push(e);
        }
        true
    })?;
    let mut out = Vec::with_capacity(owed.len());
    for (destination, precedence, seq) in owed {
        let Some(raw) = store.get(Table::Messages, &schema::seq_key(seq))? else { continue };
        let m = wire::decode_stored(&raw)
            .map_err(|e| StoreError::Corrupt(format!("message {seq}: {e}")))?;
        out.push(HeldEntry {
            id: m.envelope.id,
            origin: m.envelope.origin,
            destination,
            precedence,
        });
    }
    Ok(out)
}
