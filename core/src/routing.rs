//! The link-state database and the routes computed from it.
//!
//! Every node floods an [`Advert`] of its links, groups and subscriptions; each node keeps the
//! newest advert of every other node (by sequence number), ages it like an envelope, and forgets
//! it when its lifetime runs out. Routes are shortest paths (Dijkstra) over the links that both
//! ends advertise as up, with a cost per precedence:
//!
//! * FLASH: the measured round-trip time plus one per hop: the fastest path.
//! * Other precedences: the medium's configured cost plus the round-trip time in milliseconds,
//!   scaled up by loss. A medium whose `min_precedence` is above the message's precedence costs
//!   [`AVOID`] extra: it is used only when no other path exists (ROUTINE avoids satellite). A
//!   `strict` medium is not used below its `min_precedence` at all.
//! * A *late* message (held past its delivery objective, see `core::scheduler`) avoids nothing:
//!   medium cost plus round-trip time, for every precedence but FLASH (which avoids nothing
//!   anyway). One table serves all of them, computed only when a late message asks.
//!
//! Ties break on node id, so every node computes the same routes from the same database.
//!
//! **Areas.** A deployment may be split into areas (`CoreConfig::area`). A node holds the
//! adverts of its own area and those of every *border* (a node with a link into another area);
//! a border's advert carries a summary of its area: each member it reaches inside the area,
//! with the path cost per precedence, role, groups and subscriptions. Routes to a node of
//! another area run over the held adverts to some border, border-to-border links, and a last
//! edge from a border of the destination's area at the cost its summary states. The summary
//! costs are the area's own shortest paths, so every node's distance to a destination is the
//! true one (as far as the summaries are fresh) and next hops stay loop-free, as in OSPF's
//! inter-area routes. A link that fails inside an area changes adverts held only in that area;
//! the rest of the deployment sees a summary change only when reachability or membership does,
//! or at the border's refresh.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use super::config::MediumConfig;
use super::frame::{Advert, AdvertLink, AreaMember};
use super::types::{Address, Group, Medium, NodeId, Precedence, Role, Time, TopicPattern};

/// Extra cost of a hop over a medium the precedence should avoid.
pub const AVOID: u64 = 1_000_000;

/// Cost of one hop over a link for precedence `p` (for a `late` message, if it is one); `None`:
/// the link may not carry it.
pub fn edge_cost(
    cfg: &MediumConfig,
    rtt: Duration,
    loss_ppm: u32,
    p: Precedence,
    late: bool,
) -> Option<u64> {
    let rtt_ms = (rtt.as_micros() / 1000) as u64;
    let base = if p == Precedence::Flash { rtt_ms + 1 } else { u64::from(cfg.cost) + rtt_ms };
    // Loss inflates the cost: at 50% loss a hop costs about twice as much.
    let loss = u64::from(loss_ppm.min(900_000));
    let cost = base * 1_000_000 / (1_000_000 - loss);
    match () {
        _ if late || p >= cfg.min_precedence => Some(cost),
        _ if cfg.strict => None,
        _ => Some(cost + AVOID),
    }
}

/// What of an advert the route computation reads: each link's far end, medium, whether it
/// is up, and its cost inputs at the resolution `edge_cost` uses (whole milliseconds of RTT).
fn edges(a: &Advert) -> impl Iterator<Item = (&NodeId, Medium, bool, u128, u32)> {
    a.links.iter().map(|l| (&l.neighbour, l.medium, l.up, l.rtt.as_micros() / 1000, l.loss_ppm))
}

/// One of this node's own links, as routing sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalLink {
    pub neighbour: NodeId,
    pub role: Role,
    pub medium: Medium,
    pub rtt: Duration,
    pub loss_ppm: u32,
    /// Usable for traffic (up and past any hold-down).
    pub usable: bool,
}

/// An edge of the graph routes are computed over.
#[derive(Clone, Debug)]
enum Edge {
    /// A link both ends advertise as up: its cost follows the medium.
    Link(Medium, Duration, u32),
    /// From a border to a member of its area, at the cost its summary states (per precedence
    /// index, then late).
    Summary([Option<u64>; 5]),
}

type Graph = BTreeMap<NodeId, Vec<(NodeId, Edge)>>;

/// No route for this precedence.
const NO_HOP: u16 = u16::MAX;

/// The routes of one node: for each destination reachable for some precedence, per
/// precedence the next-hop neighbour and the path cost. Sorted arrays with the next hops
/// numbered, rather than a map per precedence: in a 1,000-node mesh the five maps of every
/// node were a ninth of the simulator's peak memory (heaptrack, `mesh:1000:3m:areas`: 169 MB
/// of 1.51 GB); this is 40 bytes a destination.
#[derive(Clone, Debug, Default)]
struct Table {
    /// Destinations, sorted.
    dests: Vec<NodeId>,
    /// The distinct next hops (this node's neighbours), numbered by position.
    hops: Vec<NodeId>,
    /// Per destination and precedence index: the next hop's number, or [`NO_HOP`].
    via: Vec<[u16; 4]>,
    /// Per destination and precedence index: the path cost, at most `u32::MAX` (only reports
    /// read it; a link path costs far less, and a summary's word beyond it is as good as
    /// unreachable).
    costs: Vec<[u32; 4]>,
}

impl Table {
    fn get(&self, dest: &NodeId, p: usize) -> Option<(&NodeId, u64)> {
        self.at(self.dests.binary_search(dest).ok()?, p)
    }

    fn at(&self, i: usize, p: usize) -> Option<(&NodeId, u64)> {
        let hop = self.via[i][p];
        (hop != NO_HOP).then(|| (&self.hops[usize::from(hop)], u64::from(self.costs[i][p])))
    }

    /// Sets precedence index `p`'s routes (destination -> (next hop, cost)), on a table
    /// rebuilt from empty.
    fn set(&mut self, p: usize, routes: BTreeMap<NodeId, (NodeId, u64)>) {
        for (dest, (hop, cost)) in routes {
            let hop = match self.hops.iter().position(|h| *h == hop) {
                Some(n) => n,
                None => {
                    self.hops.push(hop);
                    self.hops.len() - 1
                }
            };
            // Next hops are this node's neighbours: far fewer than `NO_HOP`.
            let Ok(hop) = u16::try_from(hop) else { continue };
            // Destinations come sorted: after the first precedence, each is found or appended.
            let i = match self.dests.binary_search(&dest) {
                Ok(i) => i,
                Err(i) => {
                    self.dests.insert(i, dest);
                    self.via.insert(i, [NO_HOP; 4]);
                    self.costs.insert(i, [0; 4]);
                    i
                }
            };
            self.via[i][p] = hop;
            self.costs[i][p] = u32::try_from(cost).unwrap_or(u32::MAX);
        }
    }
}

#[derive(Clone, Debug)]
struct Held {
    /// Shared with membership, which holds the same advert (most of them, at rest).
    advert: Arc<Advert>,
    received_at: Time,
}

impl Held {
    fn expires_at(&self) -> Time {
        self.received_at + self.advert.lifetime.saturating_sub(self.advert.age)
    }
}

/// The link-state database and route table of one node.
#[derive(Debug)]
pub struct Routing {
    me: NodeId,
    /// This node's area (`""`: none).
    area: String,
    media: BTreeMap<Medium, MediumConfig>,
    local: Vec<LocalLink>,
    adverts: BTreeMap<NodeId, Held>,
    /// When each held advert runs out: the same entries as `adverts`, by time (a node in a
    /// large mesh asks for the next expiry at every turn).
    expiries: BTreeSet<(Time, NodeId)>,
    /// Per precedence index: destination -> (next-hop neighbour, path cost).
    table: Table,
    /// The same for late messages below FLASH (`None`: not computed since the last change;
    /// only a late message asks).
    late: Option<BTreeMap<NodeId, (NodeId, u64)>>,
    dirty: bool,
}

impl Routing {
    pub fn new(me: NodeId, media: BTreeMap<Medium, MediumConfig>) -> Routing {
        Routing {
            me,
            area: String::new(),
            media,
            local: Vec::new(),
            adverts: BTreeMap::new(),
            expiries: BTreeSet::new(),
            table: Table::default(),
            late: None,
            dirty: true,
        }
    }

    /// Puts this node in `area` (before any advert is taken).
    pub fn set_area(&mut self, area: &str) {
        self.area = area.to_owned();
        self.dirty = true;
    }

    pub fn area(&self) -> &str {
        &self.area
    }

    /// Whether a node in `area` takes `advert` into its database: one of its own area's, or a
    /// border's. (Everything, when the deployment has no areas.)
    pub fn takes(area: &str, advert: &Advert) -> bool {
        advert.area == area || advert.is_border()
    }

    /// Whether this node holds `node`'s advert as a border's of another area: a newer advert
    /// that is no longer a border's must still replace it everywhere it went.
    pub fn holds_border_of_other_area(&self, node: &NodeId) -> bool {
        self.adverts.get(node).is_some_and(|h| h.advert.area != self.area && h.advert.is_border())
    }

    /// Whether an advert of `node` is held.
    pub fn holds(&self, node: &NodeId) -> bool {
        self.adverts.contains_key(node)
    }

    /// The area of `node`, if its advert is held.
    pub fn area_of(&self, node: &NodeId) -> Option<&str> {
        self.adverts.get(node).map(|h| h.advert.area.as_str())
    }

    /// Whether the advert held of `node` is a border's.
    pub fn holds_border(&self, node: &NodeId) -> bool {
        self.adverts.get(node).is_some_and(|h| h.advert.is_border())
    }

    fn medium(&self, m: Medium) -> MediumConfig {
        self.media.get(&m).cloned().unwrap_or_else(|| MediumConfig::default_for(m))
    }

    /// The mesh as this node knows it: every link its held adverts describe (each as its
    /// owner advertised it), with the owner's role. Read-only; for operators' views.
    pub fn topology(&self) -> Vec<(NodeId, Role, AdvertLink)> {
        let mut out = Vec::new();
        for (node, held) in &self.adverts {
            for l in &held.advert.links {
                out.push((node.clone(), held.advert.role, l.clone()));
            }
        }
        out
    }

    /// The named groups and topic subscriptions the held adverts announce (for operators'
    /// address completion).
    pub fn advertised_addresses(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let (mut groups, mut topics) = (BTreeSet::new(), BTreeSet::new());
        for held in self.adverts.values() {
            groups.extend(held.advert.groups.iter().cloned());
            topics.extend(held.advert.subscriptions.iter().map(|t| t.as_str().to_owned()));
        }
        (groups, topics)
    }

    /// Replaces this node's own links (called whenever one changes).
    pub fn set_local_links(&mut self, mut links: Vec<LocalLink>) {
        links.sort_by(|a, b| (&a.neighbour, a.medium).cmp(&(&b.neighbour, b.medium)));
        if links != self.local {
            self.local = links;
            self.dirty = true;
        }
    }

    /// Whether `advert` would replace what is held (before checking its signature).
    pub fn wants(&self, advert: &Advert) -> bool {
        advert.node != self.me
            && advert.age < advert.lifetime
            && (Routing::takes(&self.area, advert) || self.holds_border_of_other_area(&advert.node))
            && self.adverts.get(&advert.node).is_none_or(|h| h.advert.seq < advert.seq)
    }

    /// Stores `advert` if it is newer than what is held; returns whether it was.
    /// An advert of another area that is not a border's is taken only in place of that node's
    /// border advert, which it removes (the database holds no advert of the node then).
    pub fn accept(&mut self, advert: impl Into<Arc<Advert>>, now: Time) -> bool {
        let advert = advert.into();
        if advert.node == self.me || advert.age >= advert.lifetime {
            return false;
        }
        if self.adverts.get(&advert.node).is_some_and(|h| h.advert.seq >= advert.seq) {
            return false;
        }
        if !Routing::takes(&self.area, &advert) {
            // A border of another area that is a border no more: what it said goes (the
            // caller passes this advert on, as far as the border's went).
            return self.forget(&advert.node);
        }
        let node = advert.node.clone();
        let held = Held { advert, received_at: now };
        let expires = held.expires_at();
        let old = self.adverts.insert(node.clone(), held);
        // The old entry out before the new one in: both may run out at the same moment.
        if let Some(old) = &old {
            self.expiries.remove(&(old.expires_at(), node.clone()));
        }
        self.expiries.insert((expires, node.clone()));
        match old {
            Some(old) => {
                // A refresh that moves no edge (most of them, at rest) leaves every route as
                // it was: in a mesh of N nodes each refresh would otherwise cost every node
                // its four shortest-path trees.
                let new = &self.adverts[&node].advert;
                if !edges(&old.advert).eq(edges(new)) || old.advert.summary != new.summary {
                    self.dirty = true;
                }
            }
            None => self.dirty = true,
        }
        true
    }

    /// Forgets `node`'s advert (its certificate was revoked); returns whether one was held.
    pub fn forget(&mut self, node: &NodeId) -> bool {
        let Some(old) = self.adverts.remove(node) else { return false };
        self.expiries.remove(&(old.expires_at(), node.clone()));
        self.dirty = true;
        true
    }

    /// Forgets adverts whose lifetime ran out; returns the nodes forgotten.
    pub fn expire(&mut self, now: Time) -> Vec<NodeId> {
        let mut gone = Vec::new();
        while let Some((at, node)) = self.expiries.first().cloned() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            self.adverts.remove(&node);
            self.dirty = true;
            gone.push(node);
        }
        gone
    }

    /// The expiry index holds exactly the held adverts, each at the time it runs out.
    pub(crate) fn check(&self) -> Result<(), String> {
        let indexed: BTreeSet<(Time, NodeId)> =
            self.adverts.iter().map(|(n, h)| (h.expires_at(), n.clone())).collect();
        if indexed != self.expiries {
            return Err(format!(
                "routing: {} adverts held, {} expiries indexed, differing",
                self.adverts.len(),
                self.expiries.len()
            ));
        }
        Ok(())
    }

    /// When the next advert expires.
    pub fn next_expiry(&self) -> Option<Time> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// The held advert of `node`, aged to `now`.
    pub fn advert(&self, node: &NodeId, now: Time) -> Option<Advert> {
        let h = self.adverts.get(node)?;
        let mut a = Advert::clone(&h.advert);
        a.age += now.saturating_since(h.received_at);
        Some(a)
    }

    /// Every held advert's (node, seq).
    pub fn summary(&self) -> Vec<(NodeId, u64)> {
        self.adverts.iter().map(|(n, h)| (n.clone(), h.advert.seq)).collect()
    }

    /// Adverts held here that are newer than (or missing from) a neighbour's summary.
    pub fn newer_than(&self, summary: &[(NodeId, u64)], now: Time) -> Vec<Advert> {
        let theirs: BTreeMap<&NodeId, u64> = summary.iter().map(|(n, s)| (n, *s)).collect();
        self.adverts
            .keys()
            .filter(|n| theirs.get(n).is_none_or(|s| *s < self.adverts[*n].advert.seq))
            .filter_map(|n| self.advert(n, now))
            .collect()
    }

    pub fn role_of(&self, node: &NodeId) -> Option<Role> {
        if let Some(h) = self.adverts.get(node) {
            return Some(h.advert.role);
        }
        if let Some(l) = self.local.iter().find(|l| &l.neighbour == node) {
            return Some(l.role);
        }
        self.summaries().flat_map(|(_, members)| members).find(|m| &m.node == node).map(|m| m.role)
    }

    /// The summaries of other areas' borders held here, read: (border, its members).
    fn summaries(&self) -> impl Iterator<Item = (&NodeId, Vec<AreaMember>)> {
        self.adverts.iter().filter(|(_, h)| h.advert.is_border() && h.advert.area != self.area).map(
            |(n, h)| (n, crate::wire::decode_area_summary(&h.advert.summary).unwrap_or_default()),
        )
    }

    /// Every node this node knows of (itself excluded), from adverts, borders' summaries and
    /// its own links.
    pub fn known_nodes(&self) -> BTreeSet<NodeId> {
        let mut all: BTreeSet<NodeId> = self.adverts.keys().cloned().collect();
        all.extend(self.local.iter().map(|l| l.neighbour.clone()));
        for (_, members) in self.summaries() {
            all.extend(members.into_iter().map(|m| m.node));
        }
        all.remove(&self.me);
        all
    }

    /// The nodes (other than this one) an address resolves to in the current database.
    pub fn resolve(&self, to: &Address) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = match to {
            Address::Node(n) if n == &self.me => vec![],
            Address::Node(n) => vec![n.clone()],
            Address::Group(Group::All) => self.known_nodes().into_iter().collect(),
            Address::Group(Group::Role(r)) => {
                self.known_nodes().into_iter().filter(|n| self.role_of(n) == Some(*r)).collect()
            }
            Address::Group(Group::Named(g)) => self
                .adverts
                .iter()
                .filter(|(_, h)| h.advert.groups.iter().any(|x| x == g))
                .map(|(n, _)| n.clone())
                .chain(self.summaries().flat_map(|(_, members)| {
                    members.into_iter().filter(|m| m.groups.iter().any(|x| x == g)).map(|m| m.node)
                }))
                .collect(),
            Address::Topic(t) => self
                .adverts
                .iter()
                .filter(|(_, h)| h.advert.subscriptions.iter().any(|p| p.matches(t)))
                .map(|(n, _)| n.clone())
                .chain(self.summaries().flat_map(|(_, members)| {
                    members
                        .into_iter()
                        .filter(|m| m.subscriptions.iter().any(|p| p.matches(t)))
                        .map(|m| m.node)
                }))
                .collect(),
        };
        out.retain(|n| n != &self.me);
        out.sort();
        out.dedup();
        out
    }

    /// Whether `node` subscribes to a pattern matching `topic`, per its advert.
    pub fn subscribes(&self, node: &NodeId, topic: &str) -> bool {
        self.adverts
            .get(node)
            .is_some_and(|h| h.advert.subscriptions.iter().any(|p: &TopicPattern| p.matches(topic)))
    }

    /// The neighbour to hand a message for `dest` of precedence `p` to.
    pub fn next_hop(&mut self, dest: &NodeId, p: Precedence) -> Option<&NodeId> {
        self.recompute_if_dirty();
        self.table.get(dest, p.index()).map(|(hop, _)| hop)
    }

    /// The neighbour to hand a *late* message for `dest` of precedence `p` to: one that is
    /// past its delivery objective and so avoids no medium.
    pub fn next_hop_late(&mut self, dest: &NodeId, p: Precedence) -> Option<&NodeId> {
        self.recompute_if_dirty();
        if p == Precedence::Flash {
            return self.table.get(dest, p.index()).map(|(hop, _)| hop);
        }
        if self.late.is_none() {
            let graph = self.graph(false);
            self.late = Some(self.dijkstra(&graph, Precedence::Routine, true));
        }
        self.late.as_ref().and_then(|t| t.get(dest)).map(|(hop, _)| hop)
    }

    /// Path cost to `dest` for `p`, if reachable.
    pub fn cost(&mut self, dest: &NodeId, p: Precedence) -> Option<u64> {
        self.recompute_if_dirty();
        self.table.get(dest, p.index()).map(|(_, c)| c)
    }

    /// The whole table for `p`: (destination, next hop, cost), by destination.
    pub fn routes(&mut self, p: Precedence) -> Vec<(NodeId, NodeId, u64)> {
        self.recompute_if_dirty();
        let t = &self.table;
        (0..t.dests.len())
            .filter_map(|i| {
                let (hop, cost) = t.at(i, p.index())?;
                Some((t.dests[i].clone(), hop.clone(), cost))
            })
            .collect()
    }

    /// Marks the routes stale (e.g. after a link metric changed).
    pub fn invalidate(&mut self) {
        self.dirty = true;
    }

    fn recompute_if_dirty(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.late = None;
        let graph = self.graph(false);
        self.table = Table::default();
        for p in Precedence::DESCENDING {
            let routes = self.dijkstra(&graph, p, false);
            self.table.set(p.index(), routes);
        }
    }

    /// Adjacency: node -> [(neighbour, edge)]: the links both ends report up, and from each
    /// border of another area an edge to each member its summary names (but none into this
    /// node's own area, whose adverts are all here). `area_only`: only the links between
    /// nodes of this node's area (what a border summarises).
    fn graph(&self, area_only: bool) -> Graph {
        let mut g: Graph = BTreeMap::new();
        let in_area = |n: &NodeId| {
            n == &self.me || self.adverts.get(n).is_some_and(|h| h.advert.area == self.area)
        };
        for l in self.local.iter().filter(|l| l.usable) {
            if area_only && !in_area(&l.neighbour) {
                continue;
            }
            g.entry(self.me.clone())
                .or_default()
                .push((l.neighbour.clone(), Edge::Link(l.medium, l.rtt, l.loss_ppm)));
        }
        let reports_up = |from: &NodeId, to: &NodeId, m: Medium| -> bool {
            if from == &self.me {
                return self.local.iter().any(|l| l.usable && &l.neighbour == to && l.medium == m);
            }
            self.adverts.get(from).is_some_and(|h| {
                h.advert.links.iter().any(|l| l.up && &l.neighbour == to && l.medium == m)
            })
        };
        for (node, h) in &self.adverts {
            if area_only && !(in_area(node)) {
                continue;
            }
            for AdvertLink { neighbour, medium, rtt, loss_ppm, up, .. } in &h.advert.links {
                if *up && reports_up(neighbour, node, *medium) && (!area_only || in_area(neighbour))
                {
                    g.entry(node.clone())
                        .or_default()
                        .push((neighbour.clone(), Edge::Link(*medium, *rtt, *loss_ppm)));
                }
            }
        }
        if !area_only {
            for (border, members) in self.summaries() {
                for m in members {
                    if m.node == *border || in_area(&m.node) {
                        continue;
                    }
                    g.entry(border.clone()).or_default().push((m.node, Edge::Summary(m.costs)));
                }
            }
        }
        g
    }

    /// What this node, a border, says of its area: each node of the area it reaches without
    /// leaving it (itself excluded), with the path costs and what its advert announces.
    pub fn area_members(&self) -> Vec<AreaMember> {
        let graph = self.graph(true);
        let mut tables: Vec<BTreeMap<NodeId, (NodeId, u64)>> = vec![BTreeMap::new(); 4];
        for p in Precedence::DESCENDING {
            tables[p.index()] = self.dijkstra(&graph, p, false);
        }
        tables.push(self.dijkstra(&graph, Precedence::Routine, true));
        let reached: BTreeSet<&NodeId> = tables.iter().flat_map(|t| t.keys()).collect();
        reached
            .into_iter()
            .filter_map(|node| {
                let a = &self.adverts.get(node)?.advert;
                let mut costs = [None; 5];
                for (c, t) in costs.iter_mut().zip(&tables) {
                    *c = t.get(node).map(|(_, cost)| *cost);
                }
                Some(AreaMember {
                    node: node.clone(),
                    role: a.role,
                    seq: a.seq,
                    groups: a.groups.clone(),
                    subscriptions: a.subscriptions.clone(),
                    costs,
                })
            })
            .collect()
    }

    fn dijkstra(
        &self,
        graph: &Graph,
        p: Precedence,
        late: bool,
    ) -> BTreeMap<NodeId, (NodeId, u64)> {
        let media: BTreeMap<Medium, MediumConfig> =
            Medium::ALL.into_iter().map(|m| (m, self.medium(m))).collect();
        let mut best: BTreeMap<NodeId, (u64, NodeId)> = BTreeMap::new();
        let mut dist: BTreeMap<NodeId, u64> = BTreeMap::new();
        let mut done: BTreeSet<NodeId> = BTreeSet::new();
        // (cost, node, first hop); Reverse makes the max-heap a min-heap, ties by id.
        let mut heap = BinaryHeap::new();
        heap.push(Reverse((0u64, self.me.clone(), None::<NodeId>)));
        while let Some(Reverse((cost, node, first))) = heap.pop() {
            if !done.insert(node.clone()) {
                continue;
            }
            if let Some(hop) = &first {
                best.insert(node.clone(), (cost, hop.clone()));
            }
            for (next, e) in graph.get(&node).into_iter().flatten() {
                if done.contains(next) {
                    continue;
                }
                let edge = match e {
                    Edge::Link(medium, rtt, loss) => {
                        edge_cost(&media[medium], *rtt, *loss, p, late)
                    }
                    Edge::Summary(costs) if late && p != Precedence::Flash => costs[4],
                    Edge::Summary(costs) => costs[p.index()],
                };
                let Some(edge) = edge else { continue };
                // A summary's cost is a border's word: it cannot wrap a path's cost around.
                let c = cost.saturating_add(edge);
                if dist.get(next).is_some_and(|d| c > *d) {
                    continue;
                }
                dist.insert(next.clone(), c);
                let hop = first.clone().unwrap_or_else(|| next.clone());
                heap.push(Reverse((c, next.clone(), Some(hop))));
            }
        }
        best.into_iter().map(|(dest, (cost, hop))| (dest, (hop, cost))).collect()
    }
}

#[cfg(test)]
mod tests;
