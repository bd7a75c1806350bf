//! Writes the seed corpora under `fuzz/seeds/<target>/` from real traffic: three core nodes
//! (`peer-b`, `me`, `peer-c`) talk over in-memory wires for a few virtual seconds, and the
//! frames and store records they produce become the seeds. Run it again when the wire format
//! changes: `cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use relaymesh::core::frame::Frame;
use relaymesh::core::store::{MemStore, Store, Table};
use relaymesh::core::{
    Address, CoreConfig, LinkId, LinkInfo, Medium, Node, NodeId, Precedence, Role, Submission,
    Time, TrafficStatus,
};
use relaymesh::wire::{self, Hello};

fn id(s: &str) -> NodeId {
    NodeId::new(s).expect("valid node id")
}

struct Peer {
    node: Node,
    disk: MemStore,
}

/// (node, its link) <-> (node, its link)
type Wire = ((usize, LinkId), (usize, LinkId));

/// Frames delivered to `me` (node 1): (tick, link index in the fuzz target, frame).
type Recorded = Vec<(u64, u8, Frame)>;

const ME: usize = 1;
const TICK_MS: u64 = 10;

fn conversation() -> (Recorded, Vec<Frame>, Vec<MemStore>) {
    let now0 = Time(1_000_000_000);
    // `me` as the core_frames target opens it: role Relay and rng seed 3 (its first byte).
    let specs =
        [("peer-b", Role::Township, 11), ("me", Role::Relay, 3), ("peer-c", Role::Field, 12)];
    let mut nodes: Vec<Peer> = specs
        .iter()
        .map(|(name, role, seed)| {
            let mut cfg = CoreConfig::new(id(name), *role);
            if *name == "me" {
                cfg.groups = vec!["medical".into()];
            }
            let disk = MemStore::new();
            let node = Node::open(cfg, Box::new(disk.handle()), *seed, now0).expect("open");
            Peer { node, disk }
        })
        .collect();
    // me's links are LinkId(1) to peer-b (me probes) and LinkId(2) to peer-c (peer-c probes).
    let wires: Vec<Wire> =
        vec![((ME, LinkId(1)), (0, LinkId(11))), ((ME, LinkId(2)), (2, LinkId(12)))];
    let info = |peer: &str, role: Role, medium: Medium, prober: bool| LinkInfo {
        peer: id(peer),
        role,
        medium,
        prober,
        certificate: Bytes::new(),
        compact: medium == Medium::Satellite,
        lean_adverts: true,
    };
    let now = now0;
    nodes[ME].node.handle_link_up(
        now,
        LinkId(1),
        info("peer-b", Role::Township, Medium::Wireless, true),
    );
    nodes[ME].node.handle_link_up(
        now,
        LinkId(2),
        info("peer-c", Role::Field, Medium::Satellite, false),
    );
    nodes[0].node.handle_link_up(now, LinkId(11), info("me", Role::Relay, Medium::Wireless, false));
    nodes[2].node.handle_link_up(now, LinkId(12), info("me", Role::Relay, Medium::Satellite, true));

    let submit = |n: &mut Node, now: Time, to: &str, p: Precedence, text: &str| {
        let sub = Submission {
            to: Address::parse(to).expect("address"),
            precedence: p,
            lifetime: Duration::from_secs(600),
            content_type: "text/plain".into(),
            payload: Bytes::from(text.to_owned()),
            receipt: true,
            status: TrafficStatus::Actual,
            key: None,
            replaces: None,
        };
        let _ = n.handle_submit(now, sub);
    };

    let mut recorded = Recorded::new();
    let mut sent_by_me = Vec::new();
    let mut now = now0;
    for tick in 0..400u64 {
        now = now0 + Duration::from_millis(tick * TICK_MS);
        match tick {
            150 => {
                submit(&mut nodes[0].node, now, "node:me", Precedence::Flash, "evacuate sector 4");
                submit(&mut nodes[0].node, now, "node:peer-c", Precedence::Priority, "bring water");
                submit(&mut nodes[2].node, now, "group:all", Precedence::Routine, "status ok");
                submit(
                    &mut nodes[2].node,
                    now,
                    "group:medical",
                    Precedence::Immediate,
                    "need medic",
                );
            }
            250 => {
                submit(
                    &mut nodes[0].node,
                    now,
                    "topic:alerts/flood",
                    Precedence::Immediate,
                    "river up",
                );
                // No route: held at peer-b, so its store has a held-message record.
                submit(&mut nodes[0].node, now, "node:far-away", Precedence::Routine, "later");
            }
            _ => {}
        }
        for n in nodes.iter_mut() {
            if n.node.poll_timeout().is_some_and(|t| t <= now) {
                n.node.handle_timeout(now);
            }
        }
        // Deliver until quiet (zero delay on the wires).
        for _round in 0..8 {
            let mut flight = Vec::new();
            for (i, n) in nodes.iter_mut().enumerate() {
                n.node.schedule(now);
                let _ = n.node.commit(now);
                while let Some(t) = n.node.poll_transmit() {
                    flight.push((i, t));
                }
                while n.node.poll_event().is_some() {}
            }
            if flight.is_empty() {
                break;
            }
            for (from, t) in flight {
                let Some(&(a, b)) =
                    wires.iter().find(|(a, b)| *a == (from, t.link) || *b == (from, t.link))
                else {
                    continue;
                };
                let (to, link) = if a == (from, t.link) { b } else { a };
                if to == ME {
                    recorded.push((tick, if link == LinkId(1) { 0 } else { 1 }, t.frame.clone()));
                } else if from == ME {
                    sent_by_me.push(t.frame.clone());
                }
                nodes[to].node.handle_frame(now, link, t.frame);
            }
        }
    }
    let _ = now;
    (recorded, sent_by_me, nodes.into_iter().map(|n| n.disk).collect())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

/// A core_frames program replaying `frames` (delivered to `me` at their ticks).
fn program(frames: &[(u64, u8, Frame)], limit: usize) -> Vec<u8> {
    let mut p = vec![3u8]; // role Relay, rng seed 3
    let mut tick = 0u64;
    for (t, link, frame) in frames {
        let body = wire::encode_datagram(frame);
        if p.len() + body.len() + 8 > limit {
            break;
        }
        let mut ms = (t - tick) * TICK_MS;
        while ms > 0 {
            let step = ms.min(255);
            p.extend([1, step as u8]); // time, arg 0: `step` ms
            ms -= step;
        }
        if *t != tick {
            p.push(2); // flush
        }
        tick = *t;
        p.push(link << 3);
        p.extend((body.len() as u16).to_be_bytes());
        p.extend(&body[..]);
    }
    // Answer the first offers, echo something back, read the inbox, wait for expiry.
    p.extend([2, 3, 0, 3 | (1 << 3), 0, 6, 6 | (1 << 3), 7 | (5 << 3), 1 | (10 << 3), 200, 2]);
    p
}

fn main() {
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let _ = std::fs::remove_dir_all(&seeds);
    let (recorded, sent_by_me, disks) = conversation();
    eprintln!("{} frames delivered to me, {} sent by me", recorded.len(), sent_by_me.len());

    // core_frames: the conversation (as much as fits), only the offers, and one of each kind.
    let dir = seeds.join("core_frames");
    write(&dir, "conversation", &program(&recorded, 4000));
    let offers: Vec<_> =
        recorded.iter().filter(|(_, _, f)| matches!(f, Frame::Offer { .. })).cloned().collect();
    write(&dir, "offers", &program(&offers, 4000));
    let mut kinds: BTreeMap<&'static str, (u64, u8, Frame)> = BTreeMap::new();
    for r in &recorded {
        kinds.entry(r.2.kind()).or_insert_with(|| r.clone());
    }
    let mut one_each: Vec<_> = kinds.values().cloned().collect();
    one_each.sort_by_key(|r| r.0);
    write(&dir, "one_of_each_kind", &program(&one_each, 4000));
    write(&dir, "empty_program", &[0]);

    // envelope: one datagram per frame kind (plus a report offer), and the store's records.
    let dir = seeds.join("envelope");
    let mut by_kind: BTreeMap<String, Frame> = BTreeMap::new();
    for f in recorded.iter().map(|r| &r.2).chain(&sent_by_me) {
        let mut kind = f.kind().to_owned();
        if let Frame::Offer { envelope, .. } = f {
            kind = format!("offer_{}", if envelope.payload.is_empty() { "report" } else { "data" });
        }
        by_kind.entry(kind).or_insert_with(|| f.clone());
    }
    for (kind, f) in &by_kind {
        write(&dir, &format!("frame_{kind}"), &wire::encode_datagram(f));
    }
    let tables = [
        (Table::Messages, "stored"),
        (Table::Inbox, "inbox"),
        (Table::Status, "status"),
        (Table::Lsdb, "advert"),
    ];
    for (table, name) in tables {
        let mut value = None;
        for disk in &disks {
            let mut disk = disk.handle();
            let _ = disk.scan(table, b"", None, &mut |_, v| {
                value.get_or_insert_with(|| v.to_vec());
                false
            });
        }
        match value {
            Some(v) => write(&dir, &format!("record_{name}"), &v),
            None => eprintln!("no {name} record to seed from"),
        }
    }

    // frame_decoder: `[max selector] [chunk seed]` + hello + the conversation's frames.
    let dir = seeds.join("frame_decoder");
    let hello = Hello {
        version: wire::PROTOCOL_VERSION,
        node: id("peer-b"),
        role: Role::Township,
        capabilities: vec!["datagrams".into()],
        medium: Medium::Wireless,
    };
    let mut stream = BytesMut::new();
    wire::encode_hello(&hello, &mut stream);
    for f in by_kind.values() {
        wire::encode_frame(f, &mut stream);
    }
    for (name, sel, seed) in [("default_max", 0u8, 1u8), ("max_1000", 7, 2), ("max_127", 5, 77)] {
        let mut s = vec![sel, seed];
        s.extend(&stream[..stream.len().min(3000)]);
        write(&dir, name, &s);
    }
    write(
        &dir,
        "bad_length",
        &[0, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1],
    );

    // config: the README's and the config tests' examples, and every section at once.
    let dir = seeds.join("config");
    write(&dir, "readme", README_CONFIG.as_bytes());
    write(&dir, "full", FULL_CONFIG.as_bytes());

    // scenario: the built-in scenarios small enough to mutate quickly.
    let dir = seeds.join("scenario");
    for (name, text) in relaymesh_sim::scenario::BUILT_IN {
        if text.len() <= 4096 {
            write(&dir, name, text.as_bytes());
        }
    }
    write(&dir, "readme", README_SCENARIO.as_bytes());
    eprintln!("seeds written under {}", seeds.display());
}

const README_CONFIG: &str = r#"node = "county-hq"
role = "command"
data_dir = "data/county-hq"
ca = "pki/ca.crt"
cert = "pki/county-hq.crt"
key = "pki/county-hq.key"
api = "127.0.0.1:7480"

[[listen]]
addr = "0.0.0.0:7400"
medium = "public"

[[peer]]
node = "township-01"
addr = "192.0.2.1:7400"
medium = "public"
"#;

const FULL_CONFIG: &str = r#"node = "township-03"
role = "township"
data_dir = "data/township-03"
ca = "pki/ca.crt"
cert = "pki/township-03.crt"
key = "pki/township-03.key"
crl = "pki/ca.crl"
api = "10.0.0.3:7480"
api_token = "s3cret"
groups = ["medical", "north"]

[[listen]]
addr = "[::]:7400"
medium = "wireless"

[[peer]]
node = "county-hq"
addr = "203.0.113.7:7400"
medium = "satellite"

[media.satellite]
cost = 10
min_precedence = "priority"
probe_interval = "5s"
probe_misses = 4
window = "256KiB"
rate = "2Mbps"
ack_timeout = "30s"
bandwidth = "2Mbps"
initial_rtt = "600ms"
idle_timeout = "2m"
keep_alive = "10s"
congestion = "bbr"
initial_window = "64KiB"

[store]
max_bytes = "1GiB"
admit = { routine = 0.5, priority = 0.8 }
max_batch = 256
commit_after = "2ms"
commit_within = "10ms"
cache = "64MiB"

[limits]
max_payload = "1MiB"
max_lifetime = "7d"
max_hops = 16
inbox_keep = 1000
status_keep = "1d"
advert_lifetime = "30m"
peer_frame_rate = 1000
peer_store_share = 0.25
stall_timeout = "60s"

[policy]
defaults = true

[[policy.rule]]
action = "deny"
from_role = ["field"]
from_node = ["team-7"]
to = "topic:logistics/#"
precedence = "flash"
reason = "no"
"#;

const README_SCENARIO: &str = r#"name = "two-towns"
duration = "10m"
seed = 42

[[node]]
id = "county-hq"
role = "command"

[[node]]
id = "township-01"
role = "township"
groups = ["north"]
subscribe = ["alerts/#"]

[[link]]
a = "county-hq"
b = "township-01"
medium = "satellite"
delay = "300ms"
jitter = "20ms"
bandwidth = "1Mbps"
loss = 0.01
loss_burst = 3
mtu = 1400
queue = "128KB"

[[traffic]]
from = "county-hq"
to = "group:role:township"
precedence = "flash"
every = "1m"
size = 512
start = "1m"
stop = "8m"
lifetime = "5m"

[[traffic]]
from = "township-01"
to = "node:county-hq"
precedence = "routine"
rate = 2.0
size = 100
start = "0s"
stop = "9m"
lifetime = "5m"

[[event]]
at = "2m"
action = "link_down"
link = "county-hq~township-01/satellite"

[[event]]
at = "3m"
action = "link_up"
link = "county-hq~township-01/satellite"

[[event]]
at = "4m"
action = "degrade"
link = "county-hq~township-01/satellite"
delay = "600ms"
loss = 0.05
for = "1m"

[media.satellite]
congestion = "known-rate"

[expect]
lost = 0
duplicates = 0
starved = 0
delivery_ratio = { flash = 1.0 }
latency_p99 = { flash = "5s" }
"#;
