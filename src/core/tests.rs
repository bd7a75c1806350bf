//! Core tests: several [`Node`]s wired together in memory, driven step by step in explicit
//! time, like quinn-proto's test `Pair`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::frame::Frame;
use super::store::{FaultPlan, FaultStore, MemStore, Table};
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
    frames_seen: BTreeMap<&'static str, u64>,
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
            frames_seen: BTreeMap::new(),
        }
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
        let disk = self.disks[name].handle();
        let (store, plan) = FaultStore::new(disk);
        self.faults.insert(name.to_owned(), plan);
        // Every node its own seed, as in production: equal seeds would mean equal message ids.
        let seed = name.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
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
        let now = self.now;
        self.node(a).handle_link_up(
            now,
            la,
            LinkInfo { peer: n(b), role: rb, medium, prober: true },
        );
        self.node(b).handle_link_up(
            now,
            lb,
            LinkInfo { peer: n(a), role: ra, medium, prober: false },
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
        };
        let id = self.node(from).handle_submit(now, sub).unwrap();
        self.node(from).commit(now).unwrap();
        id
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
            let node = self.nodes.get_mut(&name).unwrap();
            // As the driver does: offers may leave before the commit (cut-through).
            node.schedule(now);
            let _ = node.commit(now);
            let mut out = Vec::new();
            while let Some(t) = node.poll_transmit() {
                out.push(t);
            }
            while let Some(e) = node.poll_event() {
                self.events.push((name.clone(), e));
            }
            for t in out {
                *self.frames_seen.entry(t.frame.kind()).or_default() += 1;
                if let Frame::Offer { envelope, .. } = &t.frame {
                    self.offers_seen.push((name.clone(), envelope.precedence));
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
            let next_timer = self.nodes.values().filter_map(Node::poll_timeout).min();
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
    assert!((14..=16).contains(&routine), "{routine} routine messages fit in 70% of 10 kB");
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
            },
        )
        .unwrap_err();
    assert_eq!(err, SubmitError::Refused("only command nodes may send FLASH to group:all".into()));

    // A node with a permissive configuration is still stopped at the next relay.
    let mut rogue = CoreConfig::new(n("rogue"), Role::Field);
    rogue.policy = policy::Policy { rules: vec![] };
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
    assert_eq!(view.state, "refused");
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
