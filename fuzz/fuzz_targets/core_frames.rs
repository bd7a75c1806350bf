//! The core's frame handling: a `relaymesh::core::Node` on an in-memory store with two links,
//! driven by a little program read from the input, most of whose steps are frames decoded
//! from arbitrary bytes (as `wire::decode_datagram` parses them) arriving on a link.
//!
//! Program: a sequence of steps; each step is one byte, `op = b & 7`, `arg = b >> 3`:
//! - 0 frame: a big-endian u16 length, then that many bytes of protobuf `Frame`, handed to
//!   the node on link `arg % 2` if it decodes;
//! - 1 time: the clock moves `next byte << (arg % 24)` ms on; due timers fire;
//! - 2 flush: `schedule`, `commit`, drain transmits and events (as the driver does); the
//!   node checks its invariants as each batch is sealed (a violation is a crash). With the seed's top bit set the store syncs
//!   in the background (split commits): a flush lands the batch in flight (every fifth landing
//!   fails if the seed's next bit is set), then seals the next; with its third bit set,
//!   satellite carries nothing below PRIORITY until it is late and objectives are seconds
//!   long, so late messages take the routes they otherwise avoid;
//! - 3 answer: the peer answers offer `arg` of those the node made, code from the next byte;
//! - 4 link: link `arg % 2` goes down, or up again;
//! - 5 submit: an application message, address `arg % 8`, precedence and size from the next
//!   byte; `arg / 8` steers: 1 a latest-value key (one of two), 2 replacing, 3 instead a cancel
//!   of, a message the node made or offered (or an id never seen);
//! - 6 echo: something the node sent (offer or advert) comes back on link `arg % 2`;
//! - 7 misc: inbox read, disk space, subscription or status queries, an object submitted
//!   (to one of the addresses, this node's own among them, so that it gathers the chunks
//!   itself) or objects' progress and chunks read.
//!
//! Checks: never panics; every frame the node sends decodes at its peer and fits the frame
//! limit; the node's timer never stays due once the due work has been done (no busy loop).
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use relaymesh::core::config::AddressObjectives;
use relaymesh::core::frame::{CustodyCode, CustodyResult, Frame};
use relaymesh::core::objects::{self, ObjectSubmission};
use relaymesh::core::policy::AddressPattern;
use relaymesh::core::store::{Began, MemStore};
use relaymesh::core::{
    Address, CoreConfig, Event, LinkId, LinkInfo, Medium, MessageId, Node, NodeId, Precedence,
    Role, Submission, Time, TopicPattern, TrafficStatus,
};
use relaymesh::wire;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

fn id(s: &str) -> NodeId {
    match NodeId::new(s) {
        Ok(n) => n,
        Err(e) => panic!("{e}"),
    }
}

const ADDRESSES: [&str; 8] = [
    "node:peer-b",
    "node:peer-c",
    "node:me",
    "node:far-away",
    "group:all",
    "group:role:field",
    "topic:alerts/flood",
    "group:medical",
];

struct Sim {
    node: Node,
    now: Time,
    links: [(LinkId, LinkInfo, bool); 2],
    /// Offers the node made: (link, offer number, message id).
    offers: Vec<(LinkId, u64, MessageId)>,
    /// Frames the node sent, to echo back.
    sent: Vec<Frame>,
    /// Messages submitted here.
    submitted: Vec<MessageId>,
    /// Split commits: whether a batch is in flight, landings so far, and whether some fail.
    split: bool,
    in_flight: bool,
    landings: u64,
    failing_landings: bool,
}

impl Sim {
    fn new(seed: u8) -> Sim {
        let role = Role::ALL[usize::from(seed) % 4];
        let mut cfg = CoreConfig::new(id("me"), role);
        cfg.groups = vec!["medical".into()];
        cfg.check_invariants = true;
        cfg.policy.override_roles = vec![Role::Command];
        if seed & 0x20 != 0 {
            // Escalation: below PRIORITY nothing rides satellite until it is late, and
            // messages turn late within the time a run covers.
            if let Some(sat) = cfg.media.get_mut(&Medium::Satellite) {
                sat.strict = true;
            }
            cfg.objectives = [30, 20, 10, 5].map(Duration::from_secs);
            cfg.address_objectives = vec![AddressObjectives {
                to: AddressPattern::parse("topic:alerts/#").expect("a valid pattern"),
                objectives: [Some(Duration::from_secs(3)), None, None, None],
            }];
        }
        let now = Time(1_000_000_000);
        let split = seed & 0x80 != 0;
        let store = if split { MemStore::new().split_commits() } else { MemStore::new() };
        let node = match Node::open(cfg, Box::new(store), u64::from(seed), now) {
            Ok(n) => n,
            Err(e) => panic!("a memory store failed: {e}"),
        };
        let b = LinkInfo {
            peer: id("peer-b"),
            role: Role::Township,
            medium: Medium::Wireless,
            prober: true,
            certificate: Bytes::new(),
            compact: false,
            lean_adverts: false,
        };
        let c = LinkInfo {
            peer: id("peer-c"),
            role: Role::Field,
            medium: Medium::Satellite,
            prober: false,
            certificate: Bytes::new(),
            compact: true,
            lean_adverts: true,
        };
        let mut sim = Sim {
            node,
            now,
            links: [(LinkId(1), b, false), (LinkId(2), c, false)],
            offers: Vec::new(),
            sent: Vec::new(),
            submitted: Vec::new(),
            split,
            in_flight: false,
            landings: 0,
            failing_landings: seed & 0x40 != 0,
        };
        sim.toggle(0);
        sim.toggle(1);
        sim
    }

    fn toggle(&mut self, i: usize) {
        let (link, info, up) = &mut self.links[i];
        if *up {
            self.node.handle_link_down(self.now, *link);
        } else {
            self.node.handle_link_up(self.now, *link, info.clone());
        }
        *up = !*up;
    }

    fn frame(&mut self, i: usize, frame: Frame) {
        let link = self.links[i].0;
        self.node.handle_frame(self.now, link, frame);
    }

    /// As the driver does after a batch: schedule, commit, send.
    fn flush(&mut self) {
        self.node.schedule(self.now);
        self.drain();
        if self.split {
            if self.in_flight {
                self.in_flight = false;
                self.landings += 1;
                let landed = match self.failing_landings && self.landings % 5 == 0 {
                    true => Err(relaymesh::core::store::StoreError::Io("fuzzed".into())),
                    false => Ok(()),
                };
                let _ = self.node.commit_landed(self.now, landed);
                self.drain();
            }
            self.in_flight = matches!(self.node.commit_begin(self.now), Ok(Began::InFlight));
        } else {
            let _ = self.node.commit(self.now);
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(t) = self.node.poll_transmit() {
            let bytes = wire::encode_datagram(&t.frame);
            assert!(
                bytes.len() <= wire::DEFAULT_MAX_FRAME,
                "the node sent a {}-byte {} frame, over the frame limit",
                bytes.len(),
                t.frame.kind()
            );
            if let Err(e) = wire::decode_datagram(bytes) {
                panic!("the node sent a frame its peer refuses: {e}\n{:?}", t.frame);
            }
            if let Frame::Offer { offer, envelope } = &t.frame {
                if self.offers.len() < 256 {
                    self.offers.push((t.link, *offer, envelope.id));
                }
            }
            if matches!(t.frame, Frame::Offer { .. } | Frame::LinkState(_)) && self.sent.len() < 64
            {
                self.sent.push(t.frame);
            }
        }
        while let Some(e) = self.node.poll_event() {
            // The node checks itself once each batch is sealed, before it schedules the next
            // batch's work (`CoreConfig::check_invariants`).
            if let Event::InvariantBroken { what } = &e {
                panic!("invariant broken: {what}");
            }
            let _ = format!("{e:?}");
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        // The driver handles a due timer, schedules and commits; a timer still due after that
        // makes it spin.
        for _ in 0..16 {
            if !self.node.poll_timeout().is_some_and(|t| t <= self.now) {
                return;
            }
            self.node.handle_timeout(self.now);
            self.flush();
        }
        panic!(
            "the timer stays due: poll_timeout {:?} at now {:?}",
            self.node.poll_timeout(),
            self.now
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let Some(seed) = input.byte() else { return };
    let mut sim = Sim::new(seed);
    sim.flush();
    let mut steps = 0;
    let mut objects_made = 0u32;
    while let Some(b) = input.byte() {
        steps += 1;
        if steps > 512 {
            break;
        }
        let (op, arg) = (b & 7, usize::from(b >> 3));
        match op {
            0 => {
                let hi = input.byte().unwrap_or(0);
                let lo = input.byte().unwrap_or(0);
                let bytes = input.bytes(usize::from(u16::from_be_bytes([hi, lo])));
                if let Ok(frame) = wire::decode_datagram(Bytes::copy_from_slice(bytes)) {
                    sim.frame(arg % 2, frame);
                }
            }
            1 => {
                let x = u64::from(input.byte().unwrap_or(1));
                sim.advance(Duration::from_millis(x << (arg % 24)));
            }
            2 => sim.flush(),
            3 => {
                if sim.offers.is_empty() {
                    continue;
                }
                let (link, offer, id) = sim.offers[arg % sim.offers.len()];
                let c = input.byte().unwrap_or(0);
                let code = [
                    CustodyCode::Accepted,
                    CustodyCode::Busy,
                    CustodyCode::Policy,
                    CustodyCode::Expired,
                    CustodyCode::Invalid,
                ][usize::from(c) % 5];
                let reason = if c & 0x80 != 0 { "no".into() } else { String::new() };
                let r = CustodyResult { offer, id, code, reason };
                sim.node.handle_frame(sim.now, link, Frame::Custody(vec![r]));
            }
            4 => sim.toggle(arg % 2),
            5 => {
                let c = input.byte().unwrap_or(0);
                let Ok(to) = Address::parse(ADDRESSES[arg % ADDRESSES.len()]) else { continue };
                // A message the node made, one it was offered, or one never seen.
                let known: Vec<MessageId> = sim
                    .submitted
                    .iter()
                    .copied()
                    .chain(sim.offers.iter().map(|o| o.2))
                    .collect();
                let target = match known.len() {
                    0 => MessageId([c; 16]),
                    n => known[usize::from(c) % n],
                };
                let steer = arg / ADDRESSES.len();
                if steer == 3 {
                    let p = (c & 2 != 0).then_some(Precedence::Flash);
                    let _ = sim.node.handle_cancel(sim.now, target, "fuzzed".into(), p);
                    continue;
                }
                let sub = Submission {
                    to,
                    precedence: Precedence::DESCENDING[usize::from(c) % 4],
                    lifetime: Duration::from_secs(1 + u64::from(c >> 2) * 60),
                    content_type: "text/plain".into(),
                    payload: Bytes::from(vec![b'x'; usize::from(c) * 4]),
                    receipt: c & 1 == 1,
                    status: TrafficStatus::Actual,
                    key: (steer == 1).then(|| format!("pos/{}", c & 1)),
                    replaces: (steer == 2).then_some(target),
                };
                if let Ok(id) = sim.node.handle_submit(sim.now, sub)
                    && sim.submitted.len() < 64
                {
                    sim.submitted.push(id);
                }
            }
            6 => {
                if sim.sent.is_empty() {
                    continue;
                }
                let f = sim.sent[arg % sim.sent.len()].clone();
                sim.frame(arg % 2, f);
            }
            _ => match arg % 8 {
                0 => sim.node.handle_inbox_read(u64::from(input.byte().unwrap_or(0))),
                1 => sim.node.handle_disk_space(Some(u64::from(input.byte().unwrap_or(0)) << 12)),
                2 => sim.node.handle_disk_space(None),
                3 | 4 => {
                    let pattern = if arg % 8 == 3 { "alerts/#" } else { "alerts/+" };
                    if let Ok(p) = TopicPattern::new(pattern) {
                        let _ = sim.node.handle_subscription(p, input.byte().unwrap_or(0) & 1 == 0);
                    }
                }
                6 => {
                    // An object: to one of the addresses (this node among them, so that it
                    // gathers its own chunks), of up to 44 chunks of 256 bytes. At most 8 an
                    // input: the cost is in chunks and objects, not bytes, and a corpus left
                    // alone drifts towards inputs of dozens of objects, each run 1.6x slower
                    // with no new coverage (measured over a grown corpus: 8,805 edges with
                    // the cap, 8,791 without).
                    let (a, n) = (input.byte().unwrap_or(0), input.byte().unwrap_or(0));
                    if objects_made >= 8 {
                        continue;
                    }
                    objects_made += 1;
                    let Ok(to) = Address::parse(ADDRESSES[usize::from(a) % ADDRESSES.len()])
                    else {
                        continue;
                    };
                    let data = Bytes::from(vec![a; usize::from(n) * 44]);
                    let sub = ObjectSubmission {
                        to,
                        precedence: Precedence::DESCENDING[usize::from(a) % 4],
                        lifetime: Duration::from_secs(1 + u64::from(a >> 2) * 60),
                        receipt: a & 1 == 1,
                        status: TrafficStatus::Actual,
                        name: "fuzz.bin".into(),
                        content_type: "application/octet-stream".into(),
                        size: data.len() as u64,
                        zstd: false,
                        sha256: objects::sha256(&data),
                        chunk_size: 256,
                        chunks: objects::cut(&data, 256),
                    };
                    if let Ok(id) = sim.node.handle_submit_object(sim.now, sub)
                        && sim.submitted.len() < 64
                    {
                        sim.submitted.push(id);
                    }
                }
                7 => {
                    let _ = sim.node.objects_in_progress(16);
                    for id in sim.submitted.clone() {
                        let _ = sim.node.object_progress(&id);
                        let _ = sim.node.object_manifest(&id);
                        let _ = sim.node.object_chunk(&id, 0);
                    }
                }
                _ => {
                    let _ = format!("{:?}", sim.node.status());
                    let _ = sim.node.inbox(None, 100);
                    if let Some(&(_, _, id)) = sim.offers.last() {
                        let _ = sim.node.message_status(&id);
                    }
                }
            },
        }
    }
    sim.flush();
    sim.advance(Duration::from_secs(3600));
});
