//! Core tests: several [`Node`]s wired together in memory, driven step by step in explicit
//! time, like quinn-proto's test `Pair`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::frame::Frame;
use super::store::{Began, FaultPlan, FaultStore, MemStore, Table};
use super::types::Outcome;
use super::*;

const MS: Duration = Duration::from_millis(1);

fn n(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// One end of a wire between two nodes.
#[derive(Clone, Debug)]
struct End {
    node: String,
    link: LinkId,
}

#[derive(Debug)]
struct Wire {
    a: End,
    b: End,
    delay: Duration,
    cut: bool,
}

struct Harness {
    now: Time,
    nodes: BTreeMap<String, Node>,
    disks: BTreeMap<String, MemStore>,
    configs: BTreeMap<String, CoreConfig>,
    faults: BTreeMap<String, Arc<Mutex<FaultPlan>>>,
    wires: Vec<Wire>,
    /// (deliver at, sequence for stable order, receiving node, receiving link, frame)
    flight: Vec<(Time, u64, String, LinkId, Frame)>,
    sent: u64,
    next_link: u64,
    events: Vec<(String, Event)>,
    offers_seen: Vec<(String, Precedence)>,
    /// The origin seal of every offer sent, by sender.
    seals_seen: Vec<(String, Bytes)>,
    frames_seen: BTreeMap<&'static str, u64>,
    /// A node whose outgoing offers are altered on the wire (a compromised relay).
    tamper: Option<String>,
    /// Nodes whose disks sync in the background, taking this long per batch (split commits).
    disk_sync: BTreeMap<String, Duration>,
    /// When each such node's batch in flight lands.
    landing: BTreeMap<String, Time>,
    /// When each (node, message) delivery event came out.
    delivery_times: BTreeMap<(String, MessageId), Time>,
    /// How often each node was opened: part of its seed, as a restart draws new random bytes
    /// for its message ids (the same bytes again would repeat its ids).
    opens: BTreeMap<String, u64>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            now: Time(1_000_000),
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            configs: BTreeMap::new(),
            faults: BTreeMap::new(),
            wires: Vec::new(),
            flight: Vec::new(),
            sent: 0,
            next_link: 0,
            events: Vec::new(),
            offers_seen: Vec::new(),
            seals_seen: Vec::new(),
            frames_seen: BTreeMap::new(),
            tamper: None,
            disk_sync: BTreeMap::new(),
            landing: BTreeMap::new(),
            delivery_times: BTreeMap::new(),
            opens: BTreeMap::new(),
        }
    }

    /// From now on (and after restarts) `name`'s disk takes `sync` to land each batch.
    fn slow_disk(&mut self, name: &str, sync: Duration) {
        self.disk_sync.insert(name.to_owned(), sync);
        self.open(name);
    }

    fn add(&mut self, name: &str, role: Role) -> &mut Harness {
        let cfg = CoreConfig::new(n(name), role);
        self.add_with(cfg)
    }

    fn add_with(&mut self, cfg: CoreConfig) -> &mut Harness {
        let name = cfg.node.to_string();
        let disk = MemStore::new();
        self.disks.insert(name.clone(), disk.handle());
        self.configs.insert(name.clone(), cfg);
        self.open(&name);
        self
    }

    fn open(&mut self, name: &str) {
        let disk = match self.disk_sync.contains_key(name) {
            true => self.disks[name].split_commits(),
            false => self.disks[name].handle(),
        };
        self.landing.remove(name);
        let (store, plan) = FaultStore::new(disk);
        self.faults.insert(name.to_owned(), plan);
        // Every node its own seed, and every opening, as in production: equal seeds would
        // mean equal message ids.
        let opens = self.opens.entry(name.to_owned()).or_default();
        *opens += 1;
        let seed = name.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let seed = seed.wrapping_add(*opens << 32);
        let node = Node::open(self.configs[name].clone(), Box::new(store), seed, self.now).unwrap();
        self.nodes.insert(name.to_owned(), node);
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.nodes.get_mut(name).unwrap()
    }

    fn connect(&mut self, a: &str, b: &str, medium: Medium, delay: Duration) -> usize {
        self.next_link += 2;
        let (la, lb) = (LinkId(self.next_link), LinkId(self.next_link + 1));
        let wire = Wire {
            a: End { node: a.into(), link: la },
            b: End { node: b.into(), link: lb },
            delay,
            cut: false,
        };
        self.wires.push(wire);
        let (ra, rb) = (self.configs[a].role, self.configs[b].role);
        let cert = |c: &CoreConfig| c.trust.as_ref().map(|t| t.certificate()).unwrap_or_default();
        let (ca, cb) = (cert(&self.configs[a]), cert(&self.configs[b]));
        let now = self.now;
        // Compact custody acceptances on every medium but public: both kinds run in every test
        // with a public link beside another.
        let compact = medium != Medium::Public;
        self.node(a).handle_link_up(
            now,
            la,
            LinkInfo {
                peer: n(b),
                role: rb,
                medium,
                prober: true,
                certificate: cb,
                compact,
                lean_adverts: compact,
            },
        );
        self.node(b).handle_link_up(
            now,
            lb,
            LinkInfo {
                peer: n(a),
                role: ra,
                medium,
                prober: false,
                certificate: ca,
                compact,
                lean_adverts: compact,
            },
        );
        self.wires.len() - 1
    }

    /// The connection breaks: both ends learn it at once.
    fn disconnect(&mut self, wire: usize) {
        let w = &self.wires[wire];
        let (a, b) = (w.a.clone(), w.b.clone());
        self.wires[wire].cut = true;
        let now = self.now;
        if let Some(node) = self.nodes.get_mut(&a.node) {
            node.handle_link_down(now, a.link);
        }
        if let Some(node) = self.nodes.get_mut(&b.node) {
            node.handle_link_down(now, b.link);
        }
    }

    /// Packets vanish silently; the ends find out from missed probes.
    fn blackhole(&mut self, wire: usize) {
        self.wires[wire].cut = true;
    }

    fn crash(&mut self, name: &str) {
        self.nodes.remove(name);
        self.landing.remove(name);
        self.disks[name].crash();
        let links: Vec<(End, usize)> = self
            .wires
            .iter()
            .enumerate()
            .filter(|(_, w)| !w.cut && (w.a.node == name || w.b.node == name))
            .map(|(i, w)| (if w.a.node == name { w.b.clone() } else { w.a.clone() }, i))
            .collect();
        for (other, i) in links {
            self.wires[i].cut = true;
            let now = self.now;
            self.node(&other.node).handle_link_down(now, other.link);
        }
        self.flight.retain(|(_, _, to, _, _)| to != name);
    }

    fn submit(&mut self, from: &str, to: &str, p: Precedence, lifetime: Duration) -> MessageId {
        let now = self.now;
        let sub = Submission {
            to: Address::parse(to).unwrap(),
            precedence: p,
            lifetime,
            content_type: "text/plain".into(),
            payload: Bytes::from(format!("{p} order")),
            receipt: true,
            status: TrafficStatus::Actual,
            key: None,
            replaces: None,
        };
        let id = self.node(from).handle_submit(now, sub).unwrap();
        if !self.disk_sync.contains_key(from) {
            self.node(from).commit(now).unwrap();
        }
        id
    }

    /// Commits a node as the driver does; whether a batch was sealed (and the invariants
    /// may be checked). A node with a slow disk lands its batch in flight once it is due,
    /// then seals the next one.
    fn commit(&mut self, name: &str) -> bool {
        let now = self.now;
        let Some(&sync) = self.disk_sync.get(name) else {
            return self.node(name).commit(now).is_ok();
        };
        if self.landing.get(name).is_some_and(|t| *t <= now) {
            self.landing.remove(name);
            let _ = self.node(name).commit_landed(now, Ok(()));
        }
        if self.landing.contains_key(name) || !self.node(name).needs_commit() {
            return false;
        }
        match self.node(name).commit_begin(now) {
            Ok(Began::InFlight) => {
                self.landing.insert(name.to_owned(), now + sync);
                true
            }
            Ok(Began::Durable) => true,
            Err(_) => false,
        }
    }

    fn peer_of(&self, node: &str, link: LinkId) -> Option<(String, LinkId, Duration)> {
        self.wires.iter().filter(|w| !w.cut).find_map(|w| {
            if w.a.node == node && w.a.link == link {
                Some((w.b.node.clone(), w.b.link, w.delay))
            } else if w.b.node == node && w.b.link == link {
                Some((w.a.node.clone(), w.a.link, w.delay))
            } else {
                None
            }
        })
    }

    /// Commits every node and moves what they send onto the wires.
    fn flush(&mut self) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in names {
            let now = self.now;
            // As the driver does: offers may leave before the commit (cut-through).
            self.node(&name).schedule(now);
            let sealed = self.commit(&name);
            let node = self.nodes.get_mut(&name).unwrap();
            if sealed {
                // The check's reads are not the test's operations: no fault counts them.
                let plan = self.faults.get(&name).cloned();
                let held = plan.as_ref().map(|p| p.lock().unwrap().fail_after_ops.take());
                let checked = node.check_invariants();
                if let (Some(p), Some(ops)) = (plan, held) {
                    p.lock().unwrap().fail_after_ops = ops;
                }
                checked.unwrap();
            }
            let mut out = Vec::new();
            while let Some(t) = node.poll_transmit() {
                out.push(t);
            }
            while let Some(e) = node.poll_event() {
                if let Event::Delivered { id, .. } = &e {
                    self.delivery_times.entry((name.clone(), *id)).or_insert(now);
                }
                self.events.push((name.clone(), e));
            }
            for mut t in out {
                *self.frames_seen.entry(t.frame.kind()).or_default() += 1;
                if self.tamper.as_deref() == Some(name.as_str())
                    && let Frame::Offer { envelope, .. } = &mut t.frame
                    && envelope.origin.as_str() != name
                {
                    match &mut envelope.supersedes {
                        // A cancel turned on another message.
                        Some(target) => target.id = MessageId([9; 16]),
                        None => envelope.payload = Bytes::from_static(b"evacuate to the river"),
                    }
                }
                if let Frame::Offer { envelope, .. } = &t.frame {
                    self.offers_seen.push((name.clone(), envelope.precedence));
                    self.seals_seen.push((name.clone(), envelope.signature.clone()));
                }
                if let Some((to, link, delay)) = self.peer_of(&name, t.link) {
                    self.sent += 1;
                    self.flight.push((self.now + delay, self.sent, to, link, t.frame));
                }
            }
        }
    }

    /// Runs until `until`, jumping from event to event.
    fn run_until(&mut self, until: Time) {
        let mut steps = 0u32;
        loop {
            steps += 1;
            assert!(
                steps < 1_000_000,
                "no progress at {:?}: {:?}",
                self.now,
                self.nodes.values().map(Node::poll_timeout).collect::<Vec<_>>()
            );
            self.flush();
            let next_frame = self.flight.iter().map(|f| (f.0, f.1)).min();
            let next_timer = self
                .nodes
                .values()
                .filter_map(Node::poll_timeout)
                .chain(self.landing.values().copied())
                .min();
            let next = match (next_frame.map(|f| f.0), next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(until),
            };
            if next > until {
                self.now = until;
                self.flush();
                return;
            }
            self.now = next.max(self.now);
            let now = self.now;
            // Deliver every frame due now, in send order.
            let mut due: Vec<_> = Vec::new();
            self.flight.retain(|f| {
                if f.0 <= now {
                    due.push(f.clone());
                    false
                } else {
                    true
                }
            });
            due.sort_by_key(|f| (f.0, f.1));
            for (_, _, to, link, frame) in due {
                let cut = !self.wires.iter().any(|w| {
                    !w.cut
                        && ((w.a.node == to && w.a.link == link)
                            || (w.b.node == to && w.b.link == link))
                });
                if cut {
                    continue;
                }
                if let Some(node) = self.nodes.get_mut(&to) {
                    node.handle_frame(now, link, frame);
                }
            }
            for node in self.nodes.values_mut() {
                if node.poll_timeout().is_some_and(|t| t <= now) {
                    node.handle_timeout(now);
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn inbox(&mut self, name: &str) -> Vec<(NodeId, Precedence, String)> {
        self.node(name)
            .inbox(None, 1_000_000)
            .unwrap()
            .into_iter()
            .map(|i| {
                let e = i.record.envelope;
                (e.origin, e.precedence, String::from_utf8_lossy(&e.payload).into_owned())
            })
            .collect()
    }

    fn delivered_ids(&self, name: &str) -> Vec<MessageId> {
        self.events
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, e)| match e {
                Event::Delivered { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }
}

fn three_in_a_row() -> Harness {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Relay).add("c", Role::Field);
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.connect("b", "c", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(3));
    h
}

#[test]
fn a_message_to_a_neighbour_is_delivered_once_and_receipted() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    let id = h.submit("a", "node:b", Precedence::Flash, Duration::from_secs(60));
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.delivered_ids("b"), vec![id]);
    assert_eq!(h.inbox("b").len(), 1);
    let status = h.node("a").message_status(&id).unwrap().unwrap();
    assert_eq!(status.state, "delivered");
    assert_eq!(status.custody_at, Some(n("b")));
    assert_eq!(h.node("a").held_messages(), 0);
    assert_eq!(h.node("b").held_messages(), 0, "the report left b's store once a took it");
}

#[test]
fn compact_acceptances_settle_an_offer_only_when_their_two_id_bytes_match() {
    let now = Time(1_000_000);
    let mut node =
        Node::open(CoreConfig::new(n("a"), Role::Command), Box::new(MemStore::new()), 1, now)
            .unwrap();
    let info = LinkInfo {
        peer: n("b"),
        role: Role::Township,
        medium: Medium::Satellite,
        prober: true,
        certificate: Bytes::new(),
        compact: true,
        lean_adverts: true,
    };
    node.handle_link_up(now, LinkId(1), info);
    let sub = Submission {
        to: Address::parse("node:b").unwrap(),
        precedence: Precedence::Flash,
        lifetime: Duration::from_secs(60),
        content_type: "text/plain".into(),
        payload: Bytes::from_static(b"hold the bridge"),
        receipt: false,
        status: TrafficStatus::Actual,
        key: None,
        replaces: None,
    };
    let id = node.handle_submit(now, sub).unwrap();
    let offered = |node: &mut Node| {
        node.schedule(now);
        node.commit(now).unwrap();
        let mut offers = Vec::new();
        while let Some(t) = node.poll_transmit() {
            if let Frame::Offer { offer, envelope } = t.frame {
                offers.push((offer, envelope.id));
            }
        }
        offers
    };
    let [(number, offered_id)] = offered(&mut node)[..] else { panic!("one offer") };
    assert_eq!(offered_id, id);
    // Two bytes that are not the id's: a bad answer, and the message is offered again.
    let wrong = frame::Accepted { offer: number, fingerprint: [!id.0[0], id.0[1]] };
    node.handle_frame(now, LinkId(1), Frame::Accepted(vec![wrong]));
    assert_eq!(node.counters.bad_frames, 1);
    let [(again, _)] = offered(&mut node)[..] else { panic!("offered again") };
    // The right two bytes settle it: nothing held, forwarded once.
    let right = frame::Accepted { offer: again, fingerprint: [id.0[0], id.0[1]] };
    node.handle_frame(now, LinkId(1), Frame::Accepted(vec![right]));
    node.commit(now).unwrap();
    assert_eq!(node.held_messages(), 0);
    assert_eq!(node.counters.forwarded[Precedence::Flash.index()], 1);
    node.check_invariants().unwrap();
}

#[test]
fn a_message_crosses_two_hops_by_link_state_routing() {
    let mut h = three_in_a_row();
    let id = h.submit("a", "node:c", Precedence::Priority, Duration::from_secs(60));
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.delivered_ids("c"), vec![id]);
    let status = h.node("a").message_status(&id).unwrap().unwrap();
    assert_eq!(status.state, "delivered");
    for node in ["a", "b", "c"] {
        assert_eq!(h.node(node).held_messages(), 0, "{node} still holds something");
    }
}

#[test]
fn the_sent_list_is_newest_first_and_the_topology_is_the_mesh_as_known_here() {
    let mut h = three_in_a_row();
    let first = h.submit("a", "node:c", Precedence::Priority, Duration::from_secs(60));
    h.run_for(Duration::from_millis(10));
    let second = h.submit("a", "node:b", Precedence::Flash, Duration::from_secs(60));
    h.run_for(Duration::from_secs(1));
    let now = h.now;
    let sent = h.node("a").sent_status(now, 10).unwrap();
    let ids: Vec<MessageId> = sent.iter().map(|v| v.id).collect();
    assert_eq!(ids, vec![second, first]);
    assert!(sent.iter().all(|v| v.state == "delivered"));
    assert_eq!(h.node("a").sent(now, 1).unwrap(), vec![second], "the limit keeps the newest");
    assert!(h.node("b").sent(now, 10).unwrap().is_empty(), "b sent nothing of its own");
    // Older than the last hour, or the last day: the scan widens to find them.
    for later in [Duration::from_secs(7200), Duration::from_secs(3 * 86_400)] {
        assert_eq!(h.node("a").sent(now + later, 10).unwrap(), vec![second, first]);
    }

    // a has its own link to b, and knows b's links (to a and c) and c's (to b) from adverts.
    let mut links: Vec<(String, String, bool)> = h
        .node("a")
        .topology()
        .into_iter()
        .map(|l| (l.from.to_string(), l.to.to_string(), l.up))
        .collect();
    links.sort();
    let want = [("a", "b"), ("b", "a"), ("b", "c"), ("c", "b")];
    let want: Vec<(String, String, bool)> =
        want.iter().map(|(f, t)| (f.to_string(), t.to_string(), true)).collect();
    assert_eq!(links, want);
}

#[test]
fn a_node_takes_its_own_advert_back_from_the_wire_without_advertising_again() {
    // RTTs are measured finer than the wire keeps them (microseconds): the copy that floods
    // back differs in its fields, not in what was signed, and must not count as stale.
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(3));
    let now = h.now;
    let a = h.node("a");
    a.originate_advert(now).unwrap();
    let mut mine = a.current_advert(now);
    mine.links[0].rtt = Duration::from_nanos(42_015_625);
    a.last_own_advert = Some(mine.clone());
    let back = crate::wire::decode_advert(&crate::wire::encode_advert(&mine)).unwrap();
    assert_ne!(back.links, mine.links, "the wire keeps microseconds");
    let seq = a.advert_seq;
    a.advert_wanted = false;
    a.receive_advert(now, LinkId(2), back);
    assert_eq!(a.advert_seq, seq);
    assert!(!a.advert_wanted, "its own advert, back from the wire, set off a new one");
}

#[test]
fn an_undelivered_flash_order_turns_overdue_at_its_objective_and_clears_when_it_arrives() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    let id = h.submit("a", "node:b", Precedence::Flash, Duration::from_secs(3600));
    // Without a receipt nobody could tell: such a message is never overdue.
    let quiet = Submission {
        to: Address::parse("node:b").unwrap(),
        precedence: Precedence::Flash,
        lifetime: Duration::from_secs(3600),
        content_type: "text/plain".into(),
        payload: Bytes::from_static(b"no receipt"),
        receipt: false,
        status: TrafficStatus::Actual,
        key: None,
        replaces: None,
    };
    let now = h.now;
    let quiet = h.node("a").handle_submit(now, quiet).unwrap();
    h.node("a").commit(now).unwrap();
    h.run_for(Duration::from_secs(599));
    assert_eq!(h.node("a").status().overdue, [0; 4], "overdue before its objective");
    h.run_for(Duration::from_secs(2));
    assert_eq!(h.node("a").status().overdue, [0, 0, 0, 1]);
    let raised: Vec<&Event> = h
        .events
        .iter()
        .filter(|(n, e)| n == "a" && matches!(e, Event::Overdue { .. }))
        .map(|(_, e)| e)
        .collect();
    assert!(
        matches!(raised.as_slice(), [Event::Overdue { of, precedence: Precedence::Flash, destinations, .. }]
            if *of == id && destinations == &vec![n("b")]),
        "{raised:?}"
    );
    let view = h.node("a").message_status(&id).unwrap().unwrap();
    assert!(view.destinations[0].overdue);
    assert!(!h.node("a").message_status(&quiet).unwrap().unwrap().destinations[0].overdue);
    let list = h.node("a").overdue_list(10).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].id, list[0].destination.clone()), (id, n("b")));

    // The alarm is durable: a restart raises it again from the store, not twice.
    h.crash("a");
    h.open("a");
    assert_eq!(h.node("a").status().overdue, [0, 0, 0, 1]);

    // b comes within reach: the order arrives and the alarm clears.
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.delivered_ids("b").len(), 2);
    assert_eq!(h.node("a").status().overdue, [0; 4]);
    assert!(!h.node("a").message_status(&id).unwrap().unwrap().destinations[0].overdue);
    assert!(h.node("a").overdue_list(10).unwrap().is_empty());
    assert!(
        h.events
            .iter()
            .any(|(n, e)| n == "a" && matches!(e, Event::OverdueCleared { of, .. } if *of == id))
    );
}

#[test]
fn an_overdue_alarm_is_sent_to_the_command_nodes_once_and_begets_no_other() {
    let mut h = Harness::new();
    h.add("hq", Role::Command).add("t1", Role::Township).add("t2", Role::Township);
    h.connect("hq", "t1", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(3));
    // t1's FLASH report to t2, which nobody can reach.
    let late = h.submit("t1", "node:t2", Precedence::Flash, Duration::from_secs(3600));
    h.run_for(Duration::from_secs(11 * 60));
    assert_eq!(h.node("t1").status().overdue, [0, 0, 0, 1]);
    let inbox = h.node("hq").inbox(Some(0), 10).unwrap();
    assert_eq!(inbox.len(), 1, "one notice at hq");
    let e = &inbox[0].record.envelope;
    assert_eq!((e.origin.as_str(), e.precedence), ("t1", Precedence::Flash));
    assert_eq!(e.content_type, crate::objectives::OVERDUE_CONTENT_TYPE);
    let text = String::from_utf8_lossy(&e.payload);
    assert!(
        text.contains(&late.to_string()) && text.contains("t2") && text.contains("10 min"),
        "{text}"
    );
    assert!(!e.receipt, "a notice that could turn overdue would beget another");
    assert_eq!(e.key.as_deref(), Some(format!("overdue/{late}").as_str()));
    // An hour later t1's report expires: its alarm clears, and hq is told so in a notice that
    // replaces the first (same key). hq's own alarms do not come back to it.
    let own = h.submit("hq", "node:t2", Precedence::Flash, Duration::from_secs(7200));
    h.run_for(Duration::from_secs(3600));
    assert_eq!(h.node("t1").status().overdue, [0; 4]);
    let inbox = h.node("hq").inbox(Some(0), 10).unwrap();
    assert_eq!(inbox.len(), 2, "the overdue notice, then the cleared one");
    let cleared = &inbox[1].record.envelope;
    let text = String::from_utf8_lossy(&cleared.payload);
    assert!(text.starts_with("CLEARED FLASH from t1") && text.contains("expired at t2"), "{text}");
    assert!(text.contains("after 1 h"), "{text}");
    assert_eq!((cleared.key.as_ref(), cleared.receipt), (e.key.as_ref(), false));
    let withdrawn = inbox[0].record.withdrawn.as_ref().expect("the overdue notice stands");
    assert_eq!((withdrawn.by, withdrawn.outcome), (cleared.id, Outcome::Superseded));
    assert_eq!(h.node("hq").status().overdue, [0, 0, 0, 1]);
    assert!(h.node("hq").message_status(&own).unwrap().unwrap().destinations[0].overdue);
    // hq is the only command node: its own alarm is sent to nobody, not even as a message
    // with no recipients in its Sent list.
    let now = h.now;
    let sent = h.node("hq").sent(now, 10).unwrap();
    assert_eq!(sent, vec![own], "a notice to nobody stands in hq's Sent list");
    assert_eq!(h.node("hq").counters.no_recipients, [0; 4]);
}

#[test]
fn an_alarm_goes_with_the_status_it_belongs_to_when_that_ages_out() {
    let mut h = Harness::new();
    let mut cfg = CoreConfig::new(n("a"), Role::Command);
    cfg.status_keep = Duration::from_secs(3600);
    h.add_with(cfg).add("b", Role::Township);
    let id = h.submit("a", "node:b", Precedence::Flash, Duration::from_secs(7200));
    h.run_for(Duration::from_secs(11 * 60));
    assert_eq!(h.node("a").status().overdue, [0, 0, 0, 1]);
    // Past status_keep (and the next housekeeping) the status, and with it the alarm, is gone.
    h.run_for(Duration::from_secs(3600));
    assert!(h.node("a").message_status(&id).unwrap().is_none());
    assert_eq!(h.node("a").status().overdue, [0; 4]);
    assert!(h.node("a").overdue_list(10).unwrap().is_empty());
}

#[test]
fn messages_wait_for_a_route_and_flow_when_it_appears() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    let ids: Vec<_> = (0..5)
        .map(|_| h.submit("a", "node:b", Precedence::Routine, Duration::from_secs(600)))
        .collect();
    h.run_for(Duration::from_secs(30));
    assert_eq!(h.node("a").held_messages(), 5);
    h.connect("a", "b", Medium::Public, 20 * MS);
    h.run_for(Duration::from_secs(2));
    assert_eq!(h.delivered_ids("b"), ids);
}

#[test]
fn flash_overtakes_queued_routine() {
    let mut h = Harness::new();
    let mut cfg = CoreConfig::new(n("a"), Role::Command);
    // A window of about three messages, so the ROUTINE backlog has to queue.
    cfg.media.get_mut(&Medium::Wireless).unwrap().window_bytes = 300;
    h.add_with(cfg).add("b", Role::Township);
    for _ in 0..50 {
        h.submit("a", "node:b", Precedence::Routine, Duration::from_secs(600));
    }
    h.connect("a", "b", Medium::Wireless, 50 * MS);
    h.flush();
    let flash = h.submit("a", "node:b", Precedence::Flash, Duration::from_secs(600));
    h.run_for(Duration::from_secs(10));
    let order = h.delivered_ids("b");
    assert_eq!(order.len(), 51);
    let at = order.iter().position(|id| *id == flash).unwrap();
    assert!(at <= 4, "FLASH delivered {at}th, behind at most the ROUTINE already in flight");
}

#[test]
fn backlog_drains_by_precedence_then_age() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    let mut sent = Vec::new();
    for p in [Precedence::Routine, Precedence::Flash, Precedence::Priority, Precedence::Immediate] {
        for _ in 0..3 {
            sent.push((p, h.submit("a", "node:b", p, Duration::from_secs(600))));
        }
    }
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(2));
    let got = h.delivered_ids("b");
    let mut want = sent.clone();
    // Stable sort: precedence descending, submission order within one precedence.
    want.sort_by_key(|(p, _)| std::cmp::Reverse(*p));
    assert_eq!(got, want.into_iter().map(|(_, id)| id).collect::<Vec<_>>());
}

#[test]
fn a_lost_acknowledgement_never_delivers_twice() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    let w = h.connect("a", "b", Medium::Wireless, 10 * MS);
    let id = h.submit("a", "node:b", Precedence::Immediate, Duration::from_secs(600));
    // Deliver the offer to b, then lose b's acknowledgement with the connection.
    h.flush();
    h.run_for(11 * MS);
    h.flush();
    h.disconnect(w);
    assert_eq!(h.node("a").held_messages(), 1, "a still holds it: no ack arrived");
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(2));
    assert_eq!(h.delivered_ids("b"), vec![id]);
    assert!(h
        .events
        .iter()
        .any(|(node, e)| node == "b" && matches!(e, Event::Duplicate { id: d, .. } if *d == id)));
    assert_eq!(h.node("a").held_messages(), 0);
}

#[test]
fn expired_messages_are_dropped_counted_and_reported() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    let id = h.submit("a", "node:b", Precedence::Priority, Duration::from_secs(5));
    h.run_for(Duration::from_secs(6));
    assert_eq!(h.node("a").held_messages(), 0);
    let st = h.node("a").status();
    assert_eq!(st.counters.expired[Precedence::Priority.index()], 1);
    let view = h.node("a").message_status(&id).unwrap().unwrap();
    assert_eq!(view.state, "expired");
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(2));
    assert!(h.delivered_ids("b").is_empty(), "an expired message is never delivered");
}

#[test]
fn a_message_expiring_at_a_relay_is_reported_to_its_origin() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Relay).add("c", Role::Field);
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    let bc = h.connect("b", "c", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(2));
    h.disconnect(bc);
    let id = h.submit("a", "node:c", Precedence::Routine, Duration::from_secs(20));
    h.run_for(Duration::from_secs(25));
    let view = h.node("a").message_status(&id).unwrap().unwrap();
    assert_eq!(view.state, "expired");
    assert_eq!(h.node("b").status().counters.expired[Precedence::Routine.index()], 1);
}

#[test]
fn age_accumulates_hop_by_hop() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Relay).add("c", Role::Field);
    h.connect("a", "b", Medium::Satellite, 300 * MS);
    h.connect("b", "c", Medium::Satellite, 300 * MS);
    h.run_for(Duration::from_secs(20));
    h.submit("a", "node:c", Precedence::Flash, Duration::from_secs(600));
    h.run_for(Duration::from_secs(5));
    let age = h
        .events
        .iter()
        .find_map(|(node, e)| match e {
            Event::Delivered { age, .. } if node == "c" => Some(*age),
            _ => None,
        })
        .unwrap();
    // Two 300 ms hops, estimated from probes: 600 ms give or take the estimate's error.
    assert!(age >= Duration::from_millis(550) && age <= Duration::from_millis(700), "{age:?}");
}

#[test]
fn a_failed_commit_loses_nothing_and_the_sender_retries() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(1));
    h.faults["b"].lock().unwrap().fail_commits = true;
    let ids: Vec<_> = (0..3)
        .map(|_| h.submit("a", "node:b", Precedence::Priority, Duration::from_secs(600)))
        .collect();
    h.run_for(Duration::from_secs(2));
    assert!(h.delivered_ids("b").is_empty());
    assert_eq!(h.node("a").held_messages(), 3, "busy answers leave the copies with the sender");
    h.faults["b"].lock().unwrap().fail_commits = false;
    h.run_for(Duration::from_secs(40));
    assert_eq!(h.delivered_ids("b"), ids);
    assert_eq!(h.node("a").held_messages(), 0);
}

/// When `name` delivered message `id` (the event's time is when the batch landed: events
/// wait for the commit).
fn delivered_at(h: &Harness, name: &str, id: MessageId) -> Option<Time> {
    h.delivery_times.get(&(name.to_owned(), id)).copied()
}

#[test]
fn a_relay_with_a_slow_disk_forwards_at_once_and_acknowledges_when_its_batch_lands() {
    let mut h = three_in_a_row();
    let sync = Duration::from_millis(300);
    h.slow_disk("b", sync);
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.connect("b", "c", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(2));
    // Through b: c has it two hops later, not a disk sync later; c's acceptance frees b's
    // answer to a early (rule 2), so a lets go of its copy well before b's batch lands.
    let sent = h.now;
    let through = h.submit("a", "node:c", Precedence::Flash, Duration::from_secs(600));
    h.run_for(Duration::from_millis(60));
    let at = delivered_at(&h, "c", through).expect("delivered through b before its disk synced");
    let took = at.saturating_since(sent);
    assert!(took < Duration::from_millis(60), "took {took:?}");
    assert_eq!(h.node("a").held_messages(), 0, "a's copy released once c had it");
    // To b itself: delivered (and acknowledged) only when b's batch is on its disk.
    let sent = h.now;
    let to_b = h.submit("a", "node:b", Precedence::Flash, Duration::from_secs(600));
    h.run_for(Duration::from_millis(200));
    assert_eq!(h.node("a").held_messages(), 1, "a keeps its copy while b's disk syncs");
    assert_eq!(delivered_at(&h, "b", to_b), None, "no delivery event before the batch lands");
    // Nor in the inbox an application reads: the batch could still fail and its cursor go to
    // another message.
    let next = h.node("b").inbox_next();
    assert!(h.node("b").inbox(Some(next), 10).unwrap().is_empty(), "undurable inbox row shown");
    assert!(h.inbox("b").is_empty());
    h.run_for(Duration::from_millis(400));
    let at = delivered_at(&h, "b", to_b).expect("delivered once the batch landed");
    assert_eq!(h.node("b").inbox_next(), next + 1);
    assert_eq!(h.inbox("b").len(), 1);
    let took = at.saturating_since(sent);
    assert!(took >= sync, "reported delivered after {took:?}, before the disk synced");
    assert_eq!(h.node("a").held_messages(), 0);
}

#[test]
fn flash_crosses_a_relay_whose_batch_is_on_its_way_to_a_slow_disk_without_waiting_for_it() {
    // The case the driver once blocked on: b has sealed a batch and its disk takes 300 ms to
    // sync it when a FLASH order for c arrives.
    let mut h = three_in_a_row();
    h.slow_disk("b", Duration::from_millis(300));
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.connect("b", "c", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(2));
    h.submit("a", "node:b", Precedence::Priority, Duration::from_secs(600));
    h.run_for(Duration::from_millis(100));
    assert!(h.landing.contains_key("b"), "b's batch is in flight");
    let sent = h.now;
    let flash = h.submit("a", "node:c", Precedence::Flash, Duration::from_secs(600));
    h.run_for(Duration::from_millis(60));
    assert!(h.landing.contains_key("b"), "b's disk is still syncing the first batch");
    let at = delivered_at(&h, "c", flash).expect("the FLASH order crossed b meanwhile");
    let took = at.saturating_since(sent);
    assert!(took < Duration::from_millis(60), "took {took:?}");
}

#[test]
fn a_batch_that_cannot_begin_after_one_in_flight_is_refused_alone_and_loses_nothing() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    h.slow_disk("b", Duration::from_millis(300));
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(1));
    let first = h.submit("a", "node:b", Precedence::Priority, Duration::from_secs(600));
    h.run_for(Duration::from_millis(100));
    assert!(h.landing.contains_key("b"), "the first batch is in flight");
    // The disk refuses the next write transaction before anything of it is written; the
    // first batch's landing is not affected.
    h.faults["b"].lock().unwrap().fail_commits = true;
    let second = h.submit("a", "node:b", Precedence::Priority, Duration::from_secs(600));
    h.run_for(Duration::from_secs(1));
    // (b may hold the second again in its open batch, offered anew: uncommitted, unanswered.)
    assert_eq!(h.delivered_ids("b"), vec![first], "the first landed and was delivered");
    assert_eq!(h.node("a").held_messages(), 1, "a keeps the second while b cannot take it");
    h.faults["b"].lock().unwrap().fail_commits = false;
    h.run_for(Duration::from_secs(40));
    assert_eq!(h.delivered_ids("b"), vec![first, second], "each once, in order");
    assert_eq!(h.node("a").held_messages(), 0);
}

#[test]
fn a_batch_that_fails_as_it_lands_takes_the_next_one_with_it_and_loses_nothing() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    h.slow_disk("b", Duration::from_millis(300));
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(1));
    h.faults["b"].lock().unwrap().fail_landings = true;
    // Two batches: the second arrives while the first is in flight, on top of it.
    let mut ids = vec![h.submit("a", "node:b", Precedence::Priority, Duration::from_secs(600))];
    h.run_for(Duration::from_millis(100));
    ids.push(h.submit("a", "node:b", Precedence::Priority, Duration::from_secs(600)));
    h.run_for(Duration::from_secs(1));
    assert!(h.delivered_ids("b").is_empty());
    assert_eq!(h.node("b").held_messages(), 0, "nothing of either batch is left at b");
    assert_eq!(h.node("a").held_messages(), 2, "busy answers leave the copies with the sender");
    h.faults["b"].lock().unwrap().fail_landings = false;
    h.run_for(Duration::from_secs(40));
    assert_eq!(h.delivered_ids("b"), ids, "each once, in order");
    assert_eq!(h.node("a").held_messages(), 0);
}

#[test]
fn a_crash_while_a_batch_is_in_flight_loses_nothing_and_delivers_once() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    h.slow_disk("b", Duration::from_millis(300));
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(1));
    let ids: Vec<_> = (0..5)
        .map(|_| h.submit("a", "node:b", Precedence::Immediate, Duration::from_secs(600)))
        .collect();
    h.run_for(Duration::from_millis(100));
    assert!(h.landing.contains_key("b"), "b's batch is in flight");
    h.crash("b");
    h.open("b");
    assert_eq!(h.node("b").held_messages(), 0, "the batch in flight was lost with the power");
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(40));
    assert_eq!(h.delivered_ids("b"), ids);
    assert_eq!(h.node("a").held_messages(), 0);
}

#[test]
fn io_errors_mid_batch_roll_back_the_whole_batch() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(1));
    for ops in [1, 3, 5, 8, 13] {
        h.faults["b"].lock().unwrap().fail_after_ops = Some(ops);
        h.submit("a", "node:b", Precedence::Immediate, Duration::from_secs(600));
        h.run_for(Duration::from_millis(100));
        h.faults["b"].lock().unwrap().fail_after_ops = None;
    }
    h.run_for(Duration::from_secs(60));
    let got = h.delivered_ids("b");
    assert_eq!(got.len(), 5);
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 5, "no duplicates");
}

#[test]
fn a_crashed_relay_resumes_from_its_store() {
    let mut h = three_in_a_row();
    let bc = 1;
    h.disconnect(bc);
    let ids: Vec<_> = (0..20)
        .map(|i| {
            let p = if i % 4 == 0 { Precedence::Flash } else { Precedence::Routine };
            h.submit("a", "node:c", p, Duration::from_secs(600))
        })
        .collect();
    h.run_for(Duration::from_secs(2));
    assert_eq!(h.node("b").held_messages(), 20);
    h.crash("b");
    h.open("b");
    assert_eq!(h.node("b").held_messages(), 20, "custody survives the crash");
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.connect("b", "c", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(5));
    let got = h.delivered_ids("c");
    assert_eq!(got.iter().collect::<BTreeSet<_>>(), ids.iter().collect::<BTreeSet<_>>());
    assert_eq!(got.len(), 20);
    // FLASH drained first.
    assert!(got[..5].iter().all(|id| ids.iter().position(|x| x == id).unwrap() % 4 == 0));
}

#[test]
fn a_relay_settles_what_it_held_across_a_restart_whatever_the_age_resolution() {
    // An envelope handed over in memory may carry an age finer than the store keeps (the
    // fuzzer found one: half a microsecond of link delay). The message's expiry entry must
    // still go when it is delivered after a restart, which reads the record back.
    let mut h = three_in_a_row();
    h.disconnect(1);
    let id = h.submit("a", "node:c", Precedence::Priority, Duration::from_secs(600));
    h.flush();
    let mut touched = 0;
    for (_, _, to, _, frame) in &mut h.flight {
        if let Frame::Offer { envelope, .. } = frame
            && to == "b"
        {
            envelope.age += Duration::from_nanos(500);
            touched += 1;
        }
    }
    assert_eq!(touched, 1);
    h.run_for(Duration::from_secs(2));
    assert_eq!(h.node("b").held_messages(), 1);
    h.crash("b");
    h.open("b");
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.connect("b", "c", Medium::Wireless, 10 * MS);
    // Every flush checks b's invariants, among them that no expiry entry outlives its message.
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.delivered_ids("c"), vec![id]);
    assert_eq!(h.node("b").held_messages(), 0);
}

#[test]
fn uncommitted_work_is_lost_in_a_crash_but_nothing_accepted_is() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(1));
    let id = h.submit("a", "node:b", Precedence::Flash, Duration::from_secs(600));
    h.flush();
    // b receives the offer but crashes before committing.
    let now = h.now + 10 * MS;
    h.now = now;
    let due: Vec<_> = std::mem::take(&mut h.flight);
    for (_, _, to, link, frame) in due {
        if to == "b" {
            h.node("b").handle_frame(now, link, frame);
        }
    }
    h.crash("b");
    h.open("b");
    assert_eq!(h.node("b").held_messages(), 0);
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(2));
    assert_eq!(h.delivered_ids("b"), vec![id]);
}

#[test]
fn quotas_refuse_routine_first() {
    let mut h = Harness::new();
    let mut cfg = CoreConfig::new(n("a"), Role::Command);
    cfg.limits.max_bytes = 10_000;
    h.add_with(cfg);
    let sub = |p: Precedence| Submission {
        to: Address::parse("node:b").unwrap(),
        precedence: p,
        lifetime: Duration::from_secs(600),
        content_type: "text/plain".into(),
        payload: Bytes::from(vec![b'x'; 400]),
        receipt: false,
        status: TrafficStatus::Actual,
        key: None,
        replaces: None,
    };
    let now = h.now;
    let mut routine = 0;
    while h.node("a").handle_submit(now, sub(Precedence::Routine)).is_ok() {
        routine += 1;
    }
    let err = h.node("a").handle_submit(now, sub(Precedence::Routine)).unwrap_err();
    assert!(
        matches!(&err, SubmitError::Refused(why) if why.contains("routine is refused above 70%")),
        "{err}"
    );
    assert!(h.node("a").handle_submit(now, sub(Precedence::Flash)).is_ok());
    assert!(h.node("a").handle_submit(now, sub(Precedence::Immediate)).is_ok());
    // About 545 bytes each (400 of payload, the seal counted at its largest).
    assert!((12..=13).contains(&routine), "{routine} routine messages fit in 70% of 10 kB");
    h.node("a").commit(now).unwrap();
    // A full disk counts too.
    h.node("a").handle_disk_space(Some(0));
    assert!(h.node("a").handle_submit(now, sub(Precedence::Flash)).is_err());
}

#[test]
fn a_full_disk_refuses_new_messages_and_keeps_the_old() {
    let mut h = Harness::new();
    h.add("a", Role::Command);
    h.submit("a", "node:b", Precedence::Flash, Duration::from_secs(600));
    h.faults["a"].lock().unwrap().full = true;
    let now = h.now;
    let sub = Submission {
        to: Address::parse("node:b").unwrap(),
        precedence: Precedence::Flash,
        lifetime: Duration::from_secs(600),
        content_type: "text/plain".into(),
        payload: Bytes::from_static(b"x"),
        receipt: false,
        status: TrafficStatus::Actual,
        key: None,
        replaces: None,
    };
    let err = h.node("a").handle_submit(now, sub).unwrap_err();
    assert_eq!(err, SubmitError::Storage(super::store::StoreError::Full));
    assert!(h.node("a").commit(now).is_err());
    h.faults["a"].lock().unwrap().full = false;
    h.crash("a");
    h.open("a");
    assert_eq!(h.node("a").held_messages(), 1);
}

#[test]
fn a_silent_link_is_declared_down_and_traffic_takes_the_other_medium() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    let fast = h.connect("a", "b", Medium::Public, 20 * MS);
    h.connect("a", "b", Medium::Satellite, 300 * MS);
    h.run_for(Duration::from_secs(20));
    h.blackhole(fast);
    let id = h.submit("a", "node:b", Precedence::Flash, Duration::from_secs(600));
    h.run_for(Duration::from_secs(10));
    assert_eq!(h.delivered_ids("b"), vec![id]);
    let sat =
        h.node("a").status().links.into_iter().find(|l| l.medium == Medium::Satellite).unwrap();
    assert!(sat.counters.accepted >= 1, "the satellite link carried it");
}

#[test]
fn routine_avoids_satellite_unless_it_is_the_only_way() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Relay).add("c", Role::Township);
    h.connect("a", "c", Medium::Satellite, 300 * MS);
    h.connect("a", "b", Medium::Wireless, 30 * MS);
    let bc = h.connect("b", "c", Medium::Wireless, 30 * MS);
    h.run_for(Duration::from_secs(30));
    assert_eq!(h.node("a").routing.next_hop(&n("c"), Precedence::Routine), Some(&n("b")));
    // FLASH takes the fastest: two wireless hops (60 ms) beat one satellite hop (600 ms RTT).
    assert_eq!(h.node("a").routing.next_hop(&n("c"), Precedence::Flash), Some(&n("b")));
    h.disconnect(bc);
    h.run_for(Duration::from_secs(2));
    assert_eq!(h.node("a").routing.next_hop(&n("c"), Precedence::Routine), Some(&n("c")));
    let id = h.submit("a", "node:c", Precedence::Routine, Duration::from_secs(600));
    h.run_for(Duration::from_secs(3));
    assert_eq!(h.delivered_ids("c"), vec![id]);
}

#[test]
fn group_fan_out_sends_one_copy_per_outgoing_link() {
    let mut h = Harness::new();
    h.add("hq", Role::Command).add("relay", Role::Relay);
    for t in ["t1", "t2", "t3"] {
        h.add(t, Role::Township);
    }
    h.connect("hq", "relay", Medium::Wireless, 10 * MS);
    for t in ["t1", "t2", "t3"] {
        h.connect("relay", t, Medium::Wireless, 10 * MS);
    }
    h.run_for(Duration::from_secs(3));
    h.offers_seen.clear();
    let id = h.submit("hq", "group:role:township", Precedence::Flash, Duration::from_secs(600));
    h.run_for(Duration::from_secs(2));
    for t in ["t1", "t2", "t3"] {
        assert_eq!(h.delivered_ids(t), vec![id], "{t}");
    }
    let from_hq =
        h.offers_seen.iter().filter(|(n, p)| n == "hq" && *p == Precedence::Flash).count();
    assert_eq!(from_hq, 1, "one copy crosses hq -> relay for three townships");
    let view = h.node("hq").message_status(&id).unwrap().unwrap();
    assert_eq!(view.state, "delivered", "{view:#?}");
    assert_eq!(view.destinations.len(), 3);
}

#[test]
fn topic_publish_reaches_subscribers_three_hops_away() {
    let mut h = Harness::new();
    for (name, role) in [
        ("a", Role::Command),
        ("b", Role::Relay),
        ("c", Role::Relay),
        ("d", Role::Field),
        ("e", Role::Field),
    ] {
        h.add(name, role);
    }
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.connect("b", "c", Medium::Wireless, 10 * MS);
    h.connect("c", "d", Medium::Wireless, 10 * MS);
    h.connect("c", "e", Medium::Wireless, 10 * MS);
    h.node("d").handle_subscription(TopicPattern::new("weather/+/rain").unwrap(), true).unwrap();
    h.node("e").handle_subscription(TopicPattern::new("traffic/#").unwrap(), true).unwrap();
    h.run_for(Duration::from_secs(3));
    let id =
        h.submit("a", "topic:weather/north/rain", Precedence::Priority, Duration::from_secs(600));
    h.run_for(Duration::from_secs(2));
    assert_eq!(h.delivered_ids("d"), vec![id]);
    assert!(h.delivered_ids("e").is_empty());
}

#[test]
fn policy_refuses_at_submission_and_at_relays() {
    let mut h = Harness::new();
    h.add("t1", Role::Township).add("hq", Role::Command);
    let now = h.now;
    let err = h
        .node("t1")
        .handle_submit(
            now,
            Submission {
                to: Address::parse("group:all").unwrap(),
                precedence: Precedence::Flash,
                lifetime: Duration::from_secs(60),
                content_type: "text/plain".into(),
                payload: Bytes::new(),
                receipt: true,
                status: TrafficStatus::Actual,
                key: None,
                replaces: None,
            },
        )
        .unwrap_err();
    assert_eq!(
        err,
        SubmitError::Forbidden("only command nodes may send FLASH to group:all".into())
    );

    // A node with a permissive configuration is still stopped at the next relay.
    let mut rogue = CoreConfig::new(n("rogue"), Role::Field);
    rogue.policy = policy::Policy { rules: vec![], override_roles: vec![] };
    h.add_with(rogue);
    h.connect("rogue", "hq", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(2));
    let id = h.submit("rogue", "topic:alerts/evacuate", Precedence::Flash, Duration::from_secs(60));
    h.run_for(Duration::from_secs(2));
    // hq resolves no subscriber, so nothing is sent for the topic; address hq directly.
    let _ = id;
    let id = h.submit("rogue", "group:all", Precedence::Flash, Duration::from_secs(60));
    h.run_for(Duration::from_secs(2));
    assert!(h.delivered_ids("hq").is_empty());
    let view = h.node("rogue").message_status(&id).unwrap().unwrap();
    // The sender belongs to `all` itself and delivers its own copy; hq refuses the other.
    let hq = view.destinations.iter().find(|d| d.node == n("hq")).unwrap();
    assert_eq!(hq.outcome, Some(Outcome::Refused));
    assert_eq!(view.state, "partially_delivered");
}

#[test]
fn a_restart_resumes_forwarding_from_a_large_backlog_quickly() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Township);
    for _ in 0..2000 {
        h.submit("a", "node:b", Precedence::Routine, Duration::from_secs(3600));
    }
    h.crash("a");
    h.open("a");
    assert_eq!(h.node("a").held_messages(), 2000);
    h.connect("a", "b", Medium::Public, MS);
    h.run_for(Duration::from_secs(30));
    assert_eq!(h.delivered_ids("b").len(), 2000);
    assert_eq!(h.disks["a"].len(Table::Messages), 0);
    assert_eq!(h.disks["a"].len(Table::Queue), 0);
    assert_eq!(h.disks["a"].len(Table::Expiry), 0);
}

#[test]
fn link_state_floods_end_instead_of_circulating_in_a_cycle() {
    let mut h = Harness::new();
    h.add("a", Role::Command).add("b", Role::Relay).add("c", Role::Township);
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.connect("b", "c", Medium::Wireless, 10 * MS);
    h.connect("c", "a", Medium::Satellite, 300 * MS);
    h.run_for(Duration::from_secs(60));
    let before = h.frames_seen.get("link_state").copied().unwrap_or(0);
    h.run_for(Duration::from_secs(600));
    let adverts = h.frames_seen.get("link_state").copied().unwrap_or(0) - before;
    // At rest each node refreshes once in ten minutes, and each refresh crosses each of the
    // three links at most twice.
    assert!(adverts <= 3 * 3 * 2, "{adverts} adverts in ten quiet minutes");
}

/// a reaches a relay b with 24 field teams behind it over a 64 kbit/s satellite link: 5% of
/// it is 400 B/s for link state. b's first sync to a (25 signed adverts with their
/// certificates, about 15 KB) would fill the link for two seconds; under the cap it takes half
/// a minute and leaves the rest of the link to traffic. Returns the harness just as a and b
/// connect, and the satellite medium's configuration.
fn narrow_satellite_star() -> (Harness, MediumConfig) {
    let mut h = Harness::new();
    let mut pki = security::Pki::new();
    let mut narrow = MediumConfig::default_for(Medium::Satellite);
    narrow.bandwidth_bps = 64_000;
    let mut cfg = pki.config("a", Role::Command);
    cfg.media.insert(Medium::Satellite, narrow.clone());
    h.add_with(cfg);
    let mut cfg = pki.config("b", Role::Relay);
    cfg.media.insert(Medium::Satellite, narrow.clone());
    h.add_with(cfg);
    let teams: Vec<String> = (0..24).map(|i| format!("team-{i:02}")).collect();
    for t in &teams {
        pki.add(&mut h, t, Role::Field);
        h.connect("b", t, Medium::Wireless, 5 * MS);
    }
    h.run_for(Duration::from_secs(2));
    h.connect("a", "b", Medium::Satellite, 300 * MS);
    (h, narrow)
}

/// b's link to a: advert bytes sent on it, and adverts waiting for its cap.
fn adverts_to_a(h: &mut Harness) -> (u64, usize) {
    let l = h.node("b").links.values().find(|l| l.info.peer == n("a")).unwrap();
    (l.counters.advert_bytes, l.adverts_out.len())
}

#[test]
fn link_state_keeps_within_a_narrow_satellite_links_cap_and_all_of_it_arrives() {
    let (mut h, narrow) = narrow_satellite_star();
    let rate = narrow.control_rate().unwrap();
    assert_eq!(rate, 400.0);
    let start = h.now;
    let to_a = adverts_to_a;
    let mut waited = false;
    for _ in 0..90 {
        h.run_for(Duration::from_secs(1));
        let (bytes, waiting) = to_a(&mut h);
        waited |= waiting > 0;
        // The burst, the rate since, and one advert's overdraft (b's own, with its 25 links
        // and certificate, is the largest: about 1.4 KB).
        let allowed = 4096.0 + rate * h.now.saturating_since(start).as_secs_f64() + 1500.0;
        assert!(bytes as f64 <= allowed, "{bytes} B of adverts to a, cap allows {allowed:.0}");
    }
    assert!(waited, "the cap held adverts back");
    assert_eq!(to_a(&mut h).1, 0, "none still waiting");
    let known = h.node("a").routing.summary().len();
    assert_eq!(known, 25, "a knows b and every team");
    let id = h.submit("a", "node:team-07", Precedence::Flash, Duration::from_secs(600));
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.delivered_ids("team-07"), vec![id]);
}

#[test]
fn a_message_takes_its_origins_waiting_advert_with_it_past_the_cap() {
    // team-23's advert is last in b's sync to a; a message of team-23 offered on that link
    // takes it along at once (a needs its key), not half a minute later.
    let (mut h, _) = narrow_satellite_star();
    let id = h.submit("team-23", "node:a", Precedence::Flash, Duration::from_secs(600));
    h.run_for(Duration::from_secs(3));
    assert_eq!(h.delivered_ids("a"), vec![id], "delivered while the sync still waits");
    assert!(adverts_to_a(&mut h).1 > 0, "the rest of the sync still waits for the cap");
    assert_eq!(h.node("a").counters.unknown_origin, 0, "never answered busy for the key");
}

mod areas;
/// Origin signatures, certificates and revocation, with a real deployment CA.
mod escalation;
mod federation;
mod membership;
mod objects;
mod steering;

mod security {
    use super::*;
    use crate::pki::{Ca, PkiTrust, Validity};
    use crate::trust::Trust;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// A fixed issue date (November 2023): certificates valid for twenty years from it.
    fn issued() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    pub(super) struct Pki {
        ca: Ca,
        validity: Validity,
        certs: BTreeMap<String, Vec<u8>>,
    }

    impl Pki {
        pub(super) fn new() -> Pki {
            Pki::with_seed(7)
        }

        /// Another deployment's CA (a `seed` other than 7).
        pub(super) fn with_seed(seed: u8) -> Pki {
            let validity = Validity::days_from(issued(), 20 * 365);
            Pki {
                ca: Ca::generate([seed; 32], validity).unwrap(),
                validity,
                certs: BTreeMap::new(),
            }
        }

        /// This CA's certificate (DER).
        pub(super) fn ca_der(&self) -> Vec<u8> {
            self.ca.cert_der.to_vec()
        }

        /// A node with a certificate from this CA (and its trust) in the harness.
        pub(super) fn add(&mut self, h: &mut Harness, name: &str, role: Role) {
            let cfg = self.config(name, role);
            h.add_with(cfg);
        }

        /// The configuration of a node with a certificate from this CA, to adjust and add.
        pub(super) fn config(&mut self, name: &str, role: Role) -> CoreConfig {
            let mut cfg = CoreConfig::new(n(name), role);
            cfg.trust = Some(self.trust(name, role, 0));
            cfg
        }

        /// `name`'s credentials with key number `generation` (a new key per generation); the
        /// certificate is remembered as `name` and as `name#generation`.
        pub(super) fn trust(&mut self, name: &str, role: Role, generation: u8) -> Arc<PkiTrust> {
            Arc::new(self.pki_trust(name, role, generation))
        }

        /// As [`Pki::trust`], before it is shared (to federate it).
        pub(super) fn pki_trust(&mut self, name: &str, role: Role, generation: u8) -> PkiTrust {
            // Distinct halves: the serial number is derived from them.
            let mut seed = [0u8; 32];
            for (i, b) in seed.iter_mut().enumerate() {
                *b = name.bytes().fold(i as u8, |h, c| h.wrapping_mul(31).wrapping_add(c));
                if i < 16 {
                    *b ^= generation.wrapping_mul(0x9d); // one half: a new serial too
                }
            }
            let cert = self.ca.issue(&n(name), role, seed, self.validity).unwrap();
            self.certs.insert(name.into(), cert.cert_der.to_vec());
            self.certs.insert(format!("{name}#{generation}"), cert.cert_der.to_vec());
            // The node clock a day after the certificates were issued, not the wall clock:
            // these tests must not start failing the day the certificates would expire.
            let clock = Arc::new(|| issued() + Duration::from_secs(86_400));
            let trust = PkiTrust::new(
                &self.ca.cert_der,
                &cert.cert_der,
                cert.key_der.secret_pkcs8_der(),
                clock,
            );
            trust.unwrap()
        }

        pub(super) fn revoke(&self, names: &[&str], number: u64) -> Vec<u8> {
            use x509_parser::prelude::{FromDer, X509Certificate};
            let serials: Vec<Vec<u8>> = names
                .iter()
                .map(|n| {
                    X509Certificate::from_der(&self.certs[*n]).unwrap().1.raw_serial().to_vec()
                })
                .collect();
            self.ca.revocation_list(number, &serials, issued()).unwrap()
        }
    }

    pub(super) fn secure_chain(names: &[(&str, Role)]) -> (Harness, Pki) {
        let mut h = Harness::new();
        let mut pki = Pki::new();
        for (name, role) in names {
            pki.add(&mut h, name, *role);
        }
        for pair in names.windows(2) {
            h.connect(pair[0].0, pair[1].0, Medium::Wireless, 5 * MS);
        }
        h.run_for(Duration::from_secs(3));
        (h, pki)
    }

    pub(super) fn misbehaved(h: &Harness, at: &str) -> Vec<(NodeId, String)> {
        h.events
            .iter()
            .filter(|(n, _)| n == at)
            .filter_map(|(_, e)| match e {
                Event::Misbehaved { peer, reason, .. } => Some((peer.clone(), reason.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn signed_messages_cross_two_relays_and_verify_everywhere() {
        let (mut h, _pki) =
            secure_chain(&[("a", Role::Command), ("b", Role::Relay), ("c", Role::Township)]);
        let id = h.submit("a", "node:c", Precedence::Flash, Duration::from_secs(60));
        h.run_for(Duration::from_secs(2));
        assert_eq!(h.delivered_ids("c"), vec![id]);
        assert_eq!(h.node("c").counters.forged, 0);
        // The end-to-end receipt is signed by c and verified on its way back.
        let status = h.node("a").message_status(&id).unwrap().unwrap();
        assert_eq!(status.state, "delivered", "{status:?}");
    }

    #[test]
    fn a_burst_is_signed_in_batches_and_every_message_verifies_at_every_node() {
        let (mut h, _pki) =
            secure_chain(&[("a", Role::Command), ("b", Role::Relay), ("c", Role::Township)]);
        h.run_for(Duration::from_secs(2));
        // 20 submissions before the node's next commit: one batch of 16 and one of 4.
        let now = h.now;
        let ids: BTreeSet<MessageId> = (0..20)
            .map(|i| {
                let sub = Submission {
                    to: Address::parse("node:c").unwrap(),
                    precedence: Precedence::Routine,
                    lifetime: Duration::from_secs(60),
                    content_type: "text/plain".into(),
                    payload: Bytes::from(format!("situation report {i}")),
                    receipt: true,
                    status: TrafficStatus::Actual,
                    key: None,
                    replaces: None,
                };
                h.node("a").handle_submit(now, sub).unwrap()
            })
            .collect();
        h.run_for(Duration::from_secs(2));
        assert_eq!(h.delivered_ids("c").into_iter().collect::<BTreeSet<_>>(), ids);
        for node in ["b", "c"] {
            assert_eq!(h.node(node).counters.forged, 0, "{node} refused a good seal");
        }
        let signatures: BTreeSet<Bytes> = h
            .seals_seen
            .iter()
            .filter(|(from, seal)| from == "a" && seal.len() > trust::SEAL_HEADER)
            .map(|(_, seal)| seal.slice(..64))
            .collect();
        assert_eq!(signatures.len(), 2, "20 messages, {} batch signatures", signatures.len());
        // Every receipt came back and verified at b and a.
        for id in &ids {
            let status = h.node("a").message_status(id).unwrap().unwrap();
            assert_eq!(status.state, "delivered", "{status:?}");
        }
    }

    #[test]
    fn a_relay_that_alters_a_payload_is_caught_at_the_next_node_and_cut_off() {
        let (mut h, _pki) =
            secure_chain(&[("a", Role::Command), ("b", Role::Relay), ("c", Role::Township)]);
        h.tamper = Some("b".into());
        let id = h.submit("a", "node:c", Precedence::Flash, Duration::from_secs(60));
        h.run_for(Duration::from_secs(2));
        assert!(h.delivered_ids("c").is_empty(), "an altered message was delivered");
        assert!(h.inbox("c").is_empty());
        assert!(h.node("c").counters.forged >= 1);
        let cut = misbehaved(&h, "c");
        assert!(
            cut.iter().any(|(peer, why)| peer == &n("b") && why.contains("bad signature")),
            "{cut:?}"
        );
        // The origin hears that its message was refused, and why.
        let status = h.node("a").message_status(&id).unwrap().unwrap();
        assert_eq!(status.state, "refused", "{status:?}");
        assert!(
            status.destinations.iter().any(|d| d.reason.contains("bad origin signature")),
            "{status:?}"
        );
    }

    #[test]
    fn a_cancel_turned_on_another_message_is_a_forgery_and_its_relay_is_cut_off() {
        let (mut h, _pki) =
            secure_chain(&[("a", Role::Command), ("b", Role::Relay), ("c", Role::Township)]);
        let order = h.submit("a", "node:c", Precedence::Flash, Duration::from_secs(600));
        h.run_for(Duration::from_secs(2));
        assert_eq!(h.delivered_ids("c"), vec![order]);
        h.tamper = Some("b".into());
        let now = h.now;
        h.node("a").handle_cancel(now, order, "recalled".into(), None).unwrap();
        h.node("a").commit(now).unwrap();
        h.run_for(Duration::from_secs(2));
        assert!(h.node("c").counters.forged >= 1);
        assert!(
            misbehaved(&h, "c")
                .iter()
                .any(|(p, why)| p == &n("b") && why.contains("bad signature")),
            "{:?}",
            misbehaved(&h, "c")
        );
        let inbox = h.node("c").inbox(Some(0), 10).unwrap();
        assert!(inbox[0].record.withdrawn.is_none(), "a forged cancel withdrew a message");
    }

    /// b's advert with a subscription b did not sign, handed to a by b (with its certificate
    /// or without it, as a lean advert goes).
    fn altered_advert_from_b(with_certificate: bool) -> Harness {
        let (mut h, _pki) = secure_chain(&[("a", Role::Command), ("b", Role::Relay)]);
        let now = h.now;
        let mut advert = h.node("b").own_advert(now);
        advert.seq += 100;
        advert.subscriptions.push(TopicPattern::new("alerts/#").unwrap()); // not what b signed
        if !with_certificate {
            advert.certificate = Bytes::new();
        }
        let link = *h.node("a").links.keys().next().unwrap();
        h.node("a").handle_frame(now, link, Frame::LinkState(advert));
        h.flush();
        h
    }

    #[test]
    fn a_forged_advert_is_dropped_and_its_sender_cut_off() {
        let mut h = altered_advert_from_b(true);
        assert_eq!(h.node("a").counters.forged, 1);
        assert!(
            misbehaved(&h, "a")
                .iter()
                .any(|(p, why)| p == &n("b") && why.contains("forged advert"))
        );
        assert!(!h.node("a").routing.subscribes(&n("b"), "alerts/x"));
        let alerts = Address::parse("topic:alerts/x").unwrap();
        assert!(!h.node("a").membership.is_member(&n("b"), &alerts), "nor in membership");
    }

    /// Advert bytes `b` sends while `c` re-advertises (a new subscription) and the advert
    /// floods a-b-c over `medium`; and whether `a` took it.
    fn readvert_bytes(medium: Medium) -> (u64, bool, Harness) {
        let mut h = Harness::new();
        let mut pki = Pki::new();
        for (name, role) in [("a", Role::Command), ("b", Role::Relay), ("c", Role::Field)] {
            pki.add(&mut h, name, role);
        }
        h.connect("a", "b", medium, 5 * MS);
        h.connect("b", "c", medium, 5 * MS);
        h.run_for(Duration::from_secs(3));
        let before = h.node("b").counters.advert_bytes;
        let sent = h.node("b").counters.adverts_sent;
        h.node("c").handle_subscription(TopicPattern::new("alerts/#").unwrap(), true).unwrap();
        h.run_for(Duration::from_secs(3));
        assert_eq!(h.node("b").counters.adverts_sent, sent + 1, "b passes c's advert on to a");
        let bytes = h.node("b").counters.advert_bytes - before;
        let took = h.node("a").routing.subscribes(&n("c"), "alerts/x");
        (bytes, took, h)
    }

    #[test]
    fn a_certificate_crosses_a_link_once_and_adverts_after_it_go_without() {
        let (lean, took, mut h) = readvert_bytes(Medium::Wireless);
        assert!(took, "a took c's advert with the certificate it held put back");
        let cert = h.node("c").keys[&n("c")].certificate.len() as u64;
        assert!(cert > 300, "a real certificate: {cert} B");
        // Public links here are set up without `lean-adverts` (as with an older peer).
        let (full, took_full, _) = readvert_bytes(Medium::Public);
        assert!(took_full);
        assert!(full >= lean + cert, "without it: {full} B, with: {lean} B, certificate {cert} B");
        for name in ["a", "b", "c"] {
            assert_eq!(h.node(name).counters.forged, 0);
            assert_eq!(h.node(name).counters.adverts_unchecked, 0);
            assert!(misbehaved(&h, name).is_empty());
        }
    }

    #[test]
    fn an_advert_without_a_certificate_the_node_lacks_is_asked_for_again_and_taken() {
        let (mut h, _pki) =
            secure_chain(&[("a", Role::Command), ("b", Role::Relay), ("c", Role::Field)]);
        // a forgets c's certificate and advert (as after losing them); b still believes a
        // holds the certificate, so c's next advert reaches a without it.
        h.node("a").keys.remove(&n("c"));
        h.node("a").routing.forget(&n("c"));
        h.node("c").handle_subscription(TopicPattern::new("alerts/#").unwrap(), true).unwrap();
        h.run_for(Duration::from_secs(3));
        assert!(h.node("a").counters.adverts_unchecked >= 1, "the first copy was unchecked");
        assert!(misbehaved(&h, "a").is_empty(), "b did nothing wrong: {:?}", misbehaved(&h, "a"));
        assert_eq!(h.node("a").counters.forged, 0);
        // a asked again; b answered with the advert and its certificate.
        assert!(h.node("a").routing.subscribes(&n("c"), "alerts/x"));
        assert!(h.node("a").keys.contains_key(&n("c")));
    }

    #[test]
    fn an_altered_advert_without_its_certificate_is_dropped_but_proves_no_forgery() {
        // The held certificate not verifying a stripped advert is what a renewal this node
        // has not seen looks like: dropped and asked for again, nobody cut off. With the
        // certificate carried the same advert is a forgery (the test above).
        let mut h = altered_advert_from_b(false);
        assert_eq!(h.node("a").counters.forged, 0);
        assert_eq!(h.node("a").counters.adverts_unchecked, 1);
        assert!(misbehaved(&h, "a").is_empty());
        assert!(!h.node("a").routing.subscribes(&n("b"), "alerts/x"));
    }

    #[test]
    fn a_restarted_node_routes_from_the_adverts_it_stored_once_and_reads_older_stores() {
        let (mut h, _pki) =
            secure_chain(&[("a", Role::Command), ("b", Role::Relay), ("c", Role::Field)]);
        let held = h.node("a").routing.summary();
        assert!(held.iter().any(|(n, _)| n.as_str() == "c"), "{held:?}");
        // Each advert once, as membership; the link-state table names its sequence number.
        let lsdb = h.node("a").store.get(Table::Lsdb, b"c").unwrap().unwrap();
        assert_eq!(lsdb.len(), 8);
        h.crash("a");
        h.open("a");
        assert_eq!(h.node("a").routing.summary(), held, "routing resumes from the store");
        // A store written before this change kept the whole advert in the table.
        let advert = h.node("a").membership.get(&n("c")).cloned().unwrap();
        h.node("a").store.put(Table::Lsdb, b"c", &crate::wire::encode_advert(&advert)).unwrap();
        h.node("a").store.commit().unwrap();
        h.crash("a");
        h.open("a");
        assert_eq!(h.node("a").routing.summary(), held, "and from one written before");
    }

    #[test]
    fn an_advert_without_its_certificate_from_a_peer_that_never_announced_lean_adverts_is_dropped()
    {
        // Public links in this harness are set up without `lean-adverts`.
        let mut h = Harness::new();
        let mut pki = Pki::new();
        pki.add(&mut h, "a", Role::Command);
        pki.add(&mut h, "b", Role::Relay);
        h.connect("a", "b", Medium::Public, 5 * MS);
        h.run_for(Duration::from_secs(3));
        let now = h.now;
        let mut advert = h.node("b").own_advert(now);
        advert.seq += 100;
        advert.certificate = Bytes::new();
        let summaries = h.frames_seen.get("lsdb_summary").copied().unwrap_or(0);
        let link = *h.node("a").links.keys().next().unwrap();
        h.node("a").handle_frame(now, link, Frame::LinkState(advert));
        h.run_for(Duration::from_secs(20));
        assert!(h.node("a").routing.summary().iter().all(|(_, seq)| *seq < 100), "not taken");
        assert_eq!(h.node("a").counters.adverts_unchecked, 0, "not taken for a lean one");
        assert_eq!(h.frames_seen.get("lsdb_summary").copied().unwrap_or(0), summaries, "no ask");
        assert!(misbehaved(&h, "a").is_empty());
    }

    #[test]
    fn an_ask_for_adverts_wanted_too_soon_after_the_last_is_made_when_the_interval_ends() {
        let mut h = altered_advert_from_b(false);
        let asked = |h: &Harness| h.frames_seen.get("lsdb_summary").copied().unwrap_or(0);
        h.run_for(Duration::from_secs(1));
        let first = asked(&h);
        // A second stripped advert that does not check, within the interval: no ask yet...
        let now = h.now;
        let mut advert = h.node("b").own_advert(now);
        advert.seq += 200;
        advert.groups.push("medical".into()); // not what b signed
        advert.certificate = Bytes::new();
        let link = *h.node("a").links.keys().next().unwrap();
        h.node("a").handle_frame(now, link, Frame::LinkState(advert));
        h.run_for(Duration::from_secs(2));
        assert_eq!(asked(&h), first, "not within the interval");
        // ...but once it ends, without anything else arriving.
        h.run_for(crate::adverts::ASK_AGAIN_INTERVAL);
        assert_eq!(asked(&h), first + 1, "the put-off ask went");
        assert_eq!(h.node("a").counters.adverts_unchecked, 2);
        assert!(misbehaved(&h, "a").is_empty());
    }

    #[test]
    fn an_advert_signed_by_its_node_but_claiming_another_role_is_a_forgery() {
        let (mut h, _pki) = secure_chain(&[("a", Role::Command), ("b", Role::Field)]);
        let now = h.now;
        let mut advert = h.node("b").own_advert(now);
        advert.seq += 100;
        advert.role = Role::Command; // b's certificate says field
        let trust = h.configs["b"].trust.clone().unwrap();
        crate::trust::seal_advert(&*trust, &mut advert);
        let link = *h.node("a").links.keys().next().unwrap();
        h.node("a").handle_frame(now, link, Frame::LinkState(advert));
        h.flush();
        assert_eq!(h.node("a").counters.forged, 1);
        let why = "advert of b (command) carries the certificate of b (field)";
        assert!(misbehaved(&h, "a").iter().any(|(_, w)| w == why), "{:?}", misbehaved(&h, "a"));
        let commanders = Address::parse("group:role:command").unwrap();
        assert!(!h.node("a").membership.is_member(&n("b"), &commanders));
    }

    #[test]
    fn a_routed_advert_outlived_in_membership_by_a_newer_lapsed_one_survives_a_restart() {
        let (mut h, _pki) =
            secure_chain(&[("a", Role::Command), ("b", Role::Relay), ("c", Role::Field)]);
        let routed = h.node("a").routing.summary();
        let c_seq = routed.iter().find(|(n, _)| n.as_str() == "c").unwrap().1;
        // A newer advert of c that ran out on its way: membership takes it, routing does not.
        let now = h.now;
        let mut lapsed = h.node("c").own_advert(now);
        lapsed.seq = c_seq + 1;
        let trust = h.configs["c"].trust.clone().unwrap();
        crate::trust::seal_advert(&*trust, &mut lapsed);
        lapsed.age = lapsed.lifetime;
        let link = *h.node("a").links.iter().find(|(_, l)| l.info.peer == n("b")).unwrap().0;
        h.node("a").handle_frame(now, link, Frame::LinkState(lapsed));
        h.flush();
        assert_eq!(h.node("a").membership.get(&n("c")).unwrap().seq, c_seq + 1);
        h.crash("a");
        h.open("a");
        assert_eq!(h.node("a").routing.summary(), routed, "routing's own advert of c kept");
    }

    #[test]
    fn a_held_advert_altered_under_its_own_signature_is_still_caught() {
        // A node skips the signature check for an advert it already holds as membership
        // (same signed bytes, same signature): the skip must not extend to an altered copy.
        let (mut h, _pki) = secure_chain(&[("a", Role::Command), ("b", Role::Relay)]);
        let held = h.node("a").membership.get(&n("b")).cloned().expect("a knows b");
        // Routing lets it age out; the same advert arriving again is taken without a fault.
        h.node("a").routing.forget(&n("b"));
        let now = h.now;
        let link = *h.node("a").links.keys().next().unwrap();
        h.node("a").handle_frame(now, link, Frame::LinkState(held.clone()));
        h.flush();
        assert_eq!(h.node("a").counters.forged, 0);
        assert!(!h.node("a").routing.wants(&held), "routing holds it again");
        // The same signature over an altered body: checked, and caught.
        h.node("a").routing.forget(&n("b"));
        let mut altered = held.clone();
        altered.subscriptions.push(TopicPattern::new("alerts/#").unwrap());
        h.node("a").handle_frame(now, link, Frame::LinkState(altered));
        h.flush();
        assert_eq!(h.node("a").counters.forged, 1);
        assert!(!h.node("a").routing.subscribes(&n("b"), "alerts/x"));
    }

    #[test]
    fn an_advert_with_another_nodes_certificate_is_refused() {
        let (mut h, pki) = secure_chain(&[("a", Role::Command), ("b", Role::Relay)]);
        let now = h.now;
        let mut advert = h.node("b").own_advert(now);
        advert.node = n("a-impostor");
        advert.certificate = Bytes::from(pki.certs["a"].clone());
        let link = *h.node("a").links.keys().next().unwrap();
        h.node("a").handle_frame(now, link, Frame::LinkState(advert));
        h.flush();
        assert!(
            misbehaved(&h, "a").iter().any(|(_, why)| why.contains("carries the certificate of a"))
        );
    }

    #[test]
    fn revocation_reaches_a_node_two_hops_away_without_the_county_and_shuts_the_thief_out() {
        // The county (CA holder) is not even in this mesh: a township got the list on a stick.
        let (mut h, pki) = secure_chain(&[
            ("township", Role::Township),
            ("relay", Role::Relay),
            ("field", Role::Field),
            ("stolen", Role::Field),
        ]);
        let before =
            h.submit("stolen", "node:township", Precedence::Routine, Duration::from_secs(600));
        h.run_for(Duration::from_secs(2));
        assert_eq!(h.delivered_ids("township"), vec![before]);

        let crl = pki.revoke(&["stolen"], 1);
        assert_eq!(h.node("township").handle_revocations(None, &crl), Ok(true));
        h.run_for(Duration::from_secs(2));
        for node in ["relay", "field"] {
            assert_eq!(h.node(node).revocation_number(), Some(1), "{node}");
            let revoked = h.events.iter().any(|(at, e)| {
                at == node
                    && matches!(e, Event::Revoked { nodes, .. } if nodes.contains(&n("stolen")))
            });
            assert!(revoked, "{node} did not learn of the revocation");
        }
        // field is the stolen terminal's neighbour: its link is cut off by the shell on the
        // Revoked event; in this harness the wire stays, so its messages must be refused.
        let after =
            h.submit("stolen", "node:township", Precedence::Flash, Duration::from_secs(600));
        h.run_for(Duration::from_secs(5));
        assert!(!h.delivered_ids("township").contains(&after));
        let st = h.node("stolen").message_status(&after).unwrap();
        let c = h.node("field").counters.clone();
        assert!(c.revoked >= 1, "{c:?} {st:?}");
        // An older list changes nothing; a list the CA did not sign is refused.
        assert_eq!(h.node("field").handle_revocations(None, &crl), Ok(false));
        let mut forged = crl.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(h.node("field").handle_revocations(None, &forged).is_err());
        // The list survives a restart.
        h.crash("relay");
        h.open("relay");
        assert_eq!(h.node("relay").revocation_number(), Some(1));
    }

    /// A node's credentials, replaced while it runs (as the shell's reload does).
    #[derive(Debug)]
    struct Swappable(Mutex<Arc<dyn Trust>>);

    impl Swappable {
        fn current(&self) -> Arc<dyn Trust> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Trust for Swappable {
        fn certificate(&self) -> Bytes {
            self.current().certificate()
        }
        fn sign(&self, data: &[u8]) -> Bytes {
            self.current().sign(data)
        }
        fn check_certificate(&self, der: &[u8]) -> Result<trust::Credential, String> {
            self.current().check_certificate(der)
        }
        fn check_revocations(&self, der: &[u8]) -> Result<trust::Revocations, String> {
            self.current().check_revocations(der)
        }
    }

    /// `name` restarts with key number `generation` (its key and certificate files were
    /// replaced while it was down).
    fn restart_with_key(h: &mut Harness, pki: &mut Pki, name: &str, role: Role, generation: u8) {
        h.crash(name);
        let mut cfg = h.configs[name].clone();
        cfg.trust = Some(pki.trust(name, role, generation));
        h.configs.insert(name.into(), cfg);
        h.open(name);
    }

    fn submit_n(h: &mut Harness, from: &str, to: &str, count: usize) -> BTreeSet<MessageId> {
        (0..count)
            .map(|_| h.submit(from, to, Precedence::Routine, Duration::from_secs(3600)))
            .collect()
    }

    fn delivered(h: &Harness, at: &str) -> BTreeSet<MessageId> {
        h.delivered_ids(at).into_iter().collect()
    }

    #[test]
    fn a_new_key_while_running_leaves_what_the_old_one_signed_acceptable_downstream() {
        let mut h = Harness::new();
        let mut pki = Pki::new();
        let first: Arc<dyn Trust> = pki.trust("a", Role::Command, 0);
        let swap = Arc::new(Swappable(Mutex::new(first)));
        let mut cfg = CoreConfig::new(n("a"), Role::Command);
        cfg.trust = Some(swap.clone());
        h.add_with(cfg);
        pki.add(&mut h, "b", Role::Relay);
        pki.add(&mut h, "c", Role::Township);
        h.connect("a", "b", Medium::Wireless, 5 * MS);
        let bc = h.connect("b", "c", Medium::Satellite, 300 * MS);
        h.run_for(Duration::from_secs(3));
        // The township is cut off: what the county signs with its first key waits at b.
        h.disconnect(bc);
        let before = submit_n(&mut h, "a", "node:c", 5);
        h.run_for(Duration::from_secs(2));
        // The county is given a new key while it runs.
        *swap.0.lock().unwrap() = pki.trust("a", Role::Command, 1);
        let now = h.now;
        h.node("a").credentials_changed(now);
        h.run_for(Duration::from_secs(2));
        let advert = h.node("b").membership.get(&n("a")).cloned().unwrap();
        assert_eq!(
            advert.certificate.as_ref(),
            pki.certs["a#1"].as_slice(),
            "b has a's new advert"
        );
        assert_eq!(advert.previous_certificates, vec![Bytes::from(pki.certs["a#0"].clone())]);
        let after = submit_n(&mut h, "a", "node:c", 5);
        h.run_for(Duration::from_secs(2));
        // The link comes back: c gets both kinds, from b, whose key for a is the new one.
        h.connect("b", "c", Medium::Satellite, 300 * MS);
        h.run_for(Duration::from_secs(20));
        let all: BTreeSet<MessageId> = before.union(&after).copied().collect();
        assert_eq!(delivered(&h, "c"), all, "every message delivered once");
        assert_eq!(h.delivered_ids("c").len(), 10);
        for node in ["b", "c"] {
            assert_eq!(h.node(node).counters.forged, 0, "{node} took an old signature for forged");
            assert!(misbehaved(&h, node).is_empty(), "{node} cut somebody off");
        }
        for id in &all {
            let status = h.node("a").message_status(id).unwrap().unwrap();
            assert_eq!(status.state, "delivered", "{status:?}");
        }
    }

    #[test]
    fn a_node_that_never_saw_the_old_key_learns_it_from_the_origins_advert() {
        let (mut h, mut pki) =
            secure_chain(&[("a", Role::Command), ("b", Role::Relay), ("c", Role::Township)]);
        let bc = h.wires.iter().position(|w| w.a.node == "b" && w.b.node == "c").unwrap();
        h.disconnect(bc);
        let before = submit_n(&mut h, "a", "node:c", 4);
        h.run_for(Duration::from_secs(2));
        // The county restarts with a new key (its key file was replaced while it was down).
        restart_with_key(&mut h, &mut pki, "a", Role::Command, 1);
        h.connect("a", "b", Medium::Wireless, 5 * MS);
        h.run_for(Duration::from_secs(2));
        let after = submit_n(&mut h, "a", "node:c", 4);
        h.run_for(Duration::from_secs(2));
        // The township's terminal was replaced meanwhile: it has never heard of a at all.
        h.crash("c");
        h.disks.insert("c".into(), MemStore::new());
        h.open("c");
        assert!(!h.node("c").keys.contains_key(&n("a")));
        h.connect("b", "c", Medium::Satellite, 300 * MS);
        h.run_for(Duration::from_secs(20));
        let all: BTreeSet<MessageId> = before.union(&after).copied().collect();
        assert_eq!(delivered(&h, "c"), all);
        assert_eq!(h.node("c").counters.forged, 0);
        assert!(misbehaved(&h, "c").is_empty(), "{:?}", misbehaved(&h, "c"));
        // It knows the new key as a's, and the old one as a's previous.
        let old = pki.certs["a#0"].as_slice();
        assert_eq!(h.node("c").keys[&n("a")].certificate.as_ref(), pki.certs["a#1"].as_slice());
        assert!(h.node("c").previous_keys[&n("a")].iter().any(|k| k.cred.certificate == old));
    }

    #[test]
    fn an_old_key_is_carried_and_accepted_for_the_longest_lifetime_and_no_longer() {
        // Messages live at most 10 minutes here.
        let mut h = Harness::new();
        let mut pki = Pki::new();
        for (name, role) in [("a", Role::Command), ("b", Role::Relay)] {
            let mut cfg = pki.config(name, role);
            cfg.max_lifetime = Duration::from_secs(600);
            h.add_with(cfg);
        }
        h.connect("a", "b", Medium::Wireless, 5 * MS);
        h.run_for(Duration::from_secs(3));
        let old = signed_by(&mut h, "a", "b", 10);
        restart_with_key(&mut h, &mut pki, "a", Role::Command, 1);
        h.connect("a", "b", Medium::Wireless, 5 * MS);
        h.run_for(Duration::from_secs(2));
        let now = h.now;
        assert_eq!(h.node("a").own_advert(now).previous_certificates.len(), 1);
        assert_eq!(offer(&mut h, "b", old.clone()).code, frame::CustodyCode::Accepted);
        // A restart remembers what it carries.
        h.crash("a");
        h.open("a");
        let now = h.now;
        assert_eq!(h.node("a").own_advert(now).previous_certificates.len(), 1);
        // Adverts carrying the old certificate keep arriving at b; they do not extend its time.
        h.connect("a", "b", Medium::Wireless, 5 * MS);
        h.run_for(Duration::from_secs(590));
        let mut late = old.clone();
        late.id = MessageId([99; 16]);
        trust::seal_envelope(pki.trust("a", Role::Command, 0).as_ref(), &mut late);
        assert_eq!(offer(&mut h, "b", late.clone()).code, frame::CustodyCode::Accepted);
        // The longest lifetime after the change, nobody needs the old key any more: a does
        // not carry it, and b takes a message under it for what it is, a forgery.
        h.run_for(Duration::from_secs(15));
        let now = h.now;
        assert!(h.node("a").own_advert(now).previous_certificates.is_empty());
        late.id = MessageId([98; 16]);
        trust::seal_envelope(pki.trust("a", Role::Command, 0).as_ref(), &mut late);
        let answer = offer(&mut h, "b", late);
        assert_eq!(answer.code, frame::CustodyCode::Invalid, "{answer:?}");
    }

    #[test]
    fn a_claim_of_a_newer_advert_buys_a_forger_thirty_seconds_and_no_more() {
        let (mut h, mut pki) = secure_chain(&[("a", Role::Relay), ("b", Role::Relay)]);
        pki.add(&mut h, "c", Role::Command);
        // An order "from a", signed with c's key: no key of a's verifies it.
        let mut forged = signed_by(&mut h, "c", "b", 10);
        forged.origin = n("a");
        // a says it holds a far newer advert of itself than b does.
        let now = h.now;
        let link = *h.node("b").links.keys().next().unwrap();
        h.node("b").handle_frame(
            now,
            link,
            Frame::LsdbSummary { area: String::new(), held: vec![(n("a"), u64::MAX)] },
        );
        let answer = offer(&mut h, "b", forged.clone());
        assert_eq!(answer.code, frame::CustodyCode::Busy, "{answer:?}");
        assert!(answer.reason.contains("key may have changed"), "{answer:?}");
        assert!(misbehaved(&h, "b").is_empty());
        // The advert never comes: half a minute later the claim counts for nothing.
        h.run_for(Duration::from_secs(31));
        let answer = offer(&mut h, "b", forged);
        assert_eq!(answer.code, frame::CustodyCode::Invalid, "{answer:?}");
        assert_eq!(h.node("b").counters.forged, 1, "judged a forgery, and its sender cut off");
    }

    #[test]
    fn a_message_signed_with_a_revoked_old_key_is_refused_but_nobody_is_cut_off() {
        let (mut h, mut pki) = secure_chain(&[("a", Role::Command), ("b", Role::Relay)]);
        let old = signed_by(&mut h, "a", "b", 10);
        restart_with_key(&mut h, &mut pki, "a", Role::Command, 1);
        h.connect("a", "b", Medium::Wireless, 5 * MS);
        h.run_for(Duration::from_secs(2));
        // The old key was stolen: only its certificate is revoked.
        let crl = pki.revoke(&["a#0"], 1);
        assert!(h.node("b").handle_revocations(None, &crl).unwrap());
        let answer = offer(&mut h, "b", old);
        assert_eq!(answer.code, frame::CustodyCode::Policy, "{answer:?}");
        assert!(answer.reason.contains("revoked key of a"), "{answer:?}");
        assert!(misbehaved(&h, "b").is_empty());
        // a itself, on its new key, is not revoked.
        let id = h.submit("a", "node:b", Precedence::Flash, Duration::from_secs(60));
        h.run_for(Duration::from_secs(2));
        assert!(h.delivered_ids("b").contains(&id));
    }

    /// Offers `env` to `to` over its first link and returns the custody answer.
    fn offer(h: &mut Harness, to: &str, env: Envelope) -> frame::CustodyResult {
        let now = h.now;
        let link = *h.node(to).links.keys().next().unwrap();
        let id = env.id;
        h.node(to).handle_frame(now, link, Frame::Offer { offer: 77, envelope: env });
        h.node(to).commit(now).unwrap();
        let mut answers = Vec::new();
        while let Some(t) = h.node(to).poll_transmit() {
            match t.frame {
                Frame::Custody(r) => answers.extend(r.into_iter().filter(|r| r.offer == 77)),
                Frame::Accepted(list) => {
                    for a in list.into_iter().filter(|a| a.offer == 77) {
                        assert_eq!(a.fingerprint, [id.0[0], id.0[1]]);
                        let (code, reason) = (frame::CustodyCode::Accepted, String::new());
                        answers.push(frame::CustodyResult { offer: 77, id, code, reason });
                    }
                }
                _ => {}
            }
        }
        answers.pop().expect("an answer to the offer")
    }

    fn signed_by(h: &mut Harness, origin: &str, to: &str, size: usize) -> Envelope {
        let trust = h.configs[origin].trust.clone().unwrap();
        let mut env = Envelope {
            id: MessageId([size as u8; 16]),
            origin: n(origin),
            to: Address::parse(&format!("node:{to}")).unwrap(),
            precedence: Precedence::Routine,
            lifetime: Duration::from_secs(600),
            content_type: "text/plain".into(),
            payload: Bytes::from(vec![b'x'; size]),
            receipt: false,
            body: types::Body::Data,
            status: TrafficStatus::Actual,
            created: h.now,
            age: Duration::ZERO,
            hop_count: 1,
            destinations: vec![n(to)],
            signature: Bytes::new(),
            key: None,
            supersedes: None,
        };
        trust::seal_envelope(trust.as_ref(), &mut env);
        env
    }

    #[test]
    fn a_message_from_an_origin_not_yet_known_is_answered_busy() {
        let (mut h, mut pki) = secure_chain(&[("a", Role::Relay), ("b", Role::Relay)]);
        pki.add(&mut h, "far", Role::Field); // never linked: a has not heard of it
        let env = signed_by(&mut h, "far", "a", 10);
        let answer = offer(&mut h, "a", env);
        assert_eq!(answer.code, frame::CustodyCode::Busy, "{answer:?}");
        assert!(answer.reason.contains("no certificate known for far"), "{answer:?}");
        assert_eq!(h.node("a").counters.unknown_origin, 1);
        assert!(misbehaved(&h, "a").is_empty(), "not knowing a key yet is no offence");
    }

    #[test]
    fn one_neighbour_cannot_fill_more_than_its_share_of_the_store() {
        let (mut h, _pki) = secure_chain(&[("a", Role::Relay), ("b", Role::Relay)]);
        let node = h.node("a");
        node.cfg.limits.max_bytes = 10_000;
        node.cfg.peer_store_share = 0.3;
        // b's messages for a destination a cannot reach yet pile up at a.
        let mut answers = Vec::new();
        for i in 0..8 {
            let mut env = signed_by(&mut h, "b", "a", 800);
            env.id = MessageId([i; 16]);
            env.destinations = vec![n("nowhere")];
            env.to = Address::parse("node:nowhere").unwrap();
            trust::seal_envelope(h.configs["b"].trust.clone().unwrap().as_ref(), &mut env);
            answers.push(offer(&mut h, "a", env).code);
        }
        let taken = answers.iter().filter(|c| **c == frame::CustodyCode::Accepted).count();
        assert_eq!(taken, 3, "{answers:?}"); // 3 x ~950 bytes fit in 30% of 10,000
        assert!(answers[3..].iter().all(|c| *c == frame::CustodyCode::Busy), "{answers:?}");
    }

    #[test]
    fn a_flooding_neighbour_is_shed_then_cut_off() {
        let mut h = Harness::new();
        let mut pki = Pki::new();
        pki.add(&mut h, "a", Role::Relay);
        pki.add(&mut h, "b", Role::Relay);
        h.configs.get_mut("a").unwrap().peer_frame_rate = 10;
        h.crash("a");
        h.open("a"); // with the new configuration
        h.connect("a", "b", Medium::Public, MS);
        let now = h.now;
        let link = *h.node("a").links.keys().next().unwrap();
        for seq in 0..25 {
            h.node("a").handle_frame(now, link, Frame::Probe { seq, rtt_us: 0, loss_ppm: 0 });
        }
        h.flush();
        assert!(h.node("a").counters.shed_frames >= 15);
        assert!(
            misbehaved(&h, "a").iter().any(|(p, why)| p == &n("b") && why.contains("flooding"))
        );
    }
}

#[test]
fn the_invariant_check_catches_broken_accounting() {
    let mut h = three_in_a_row();
    let bc = 1;
    h.disconnect(bc);
    h.submit("a", "node:c", Precedence::Routine, Duration::from_secs(600));
    h.run_for(Duration::from_secs(2));
    assert!(h.node("b").check_invariants().is_ok());
    h.node("b").held.skew(Precedence::Routine, 1, 0);
    let v = h.node("b").check_invariants().unwrap_err();
    assert!(v.what.contains("held accounting"), "{v}");
    h.node("b").held.skew(Precedence::Routine, -1, 1);
    assert!(h.node("b").check_invariants().is_err());
    h.node("b").held.skew(Precedence::Routine, 0, -1);
    h.node("b").inflight.insert((99, n("c")));
    let v = h.node("b").check_invariants().unwrap_err();
    assert!(v.what.contains("in-flight pairs disagree"), "{v}");
}

#[test]
fn a_node_that_checks_itself_records_the_first_violation() {
    let mut h = Harness::new();
    let mut cfg = CoreConfig::new(n("a"), Role::Command);
    cfg.check_invariants = true;
    h.add_with(cfg);
    h.submit("a", "node:b", Precedence::Routine, Duration::from_secs(600));
    assert_eq!(h.node("a").status().violation, None);
    h.node("a").held.skew(Precedence::Routine, 0, 5);
    h.submit("a", "node:b", Precedence::Routine, Duration::from_secs(600));
    let v = h.node("a").status().violation.unwrap();
    assert!(v.contains("held accounting"), "{v}");
}

#[test]
fn a_message_that_expires_while_offered_leaves_no_offer_behind() {
    // Found by the core_frames fuzz target once it checked invariants: the node forgot the
    // pair in flight at expiry, its link kept the offer (and its window bytes).
    let mut h = three_in_a_row();
    let bc = 1;
    h.blackhole(bc);
    let id = h.submit("a", "node:c", Precedence::Flash, Duration::from_millis(800));
    // b takes it, offers it to c into the void, and it expires there while offered; every
    // flush checks the invariants.
    h.run_for(Duration::from_millis(1500));
    assert!(
        h.events
            .iter()
            .any(|(at, e)| at == "b" && matches!(e, Event::Expired { id: x, .. } if *x == id))
    );
    assert!(h.node("b").links.values().all(|l| l.inflight.is_empty()));
}
