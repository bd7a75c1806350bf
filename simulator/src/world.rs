//! Runs a scenario: real relay nodes (core, quinn, rustls, store) on the virtual fabric, all in
//! one tokio runtime with a paused clock, driven by one loop that plays traffic and events in
//! virtual-time order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use relaymesh::core::federation::Federation;
use relaymesh::core::objects::{self, ObjectSubmission};
use relaymesh::core::policy::AddressPattern;
use relaymesh::core::status::held_entries;
use relaymesh::core::store::MemStore;
use relaymesh::core::{
    Address, CoreConfig, Event, Medium, MessageId, NodeId, Outcome, Precedence, Submission, Time,
    TrafficStatus,
};
use relaymesh::pki::{Ca, Validity};
use relaymesh::shell::clock::Clock;
use relaymesh::shell::driver::NodeHandle;
use relaymesh::shell::tls::{Credentials, FederatedCa};
use relaymesh::shell::traffic::{DirectionBytes, Traffic};
use relaymesh::shell::{Dial, Listener, Relay, RelaySpec};
use rustls::pki_types::PrivateKeyDer;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::fabric::{Cut, Fabric, LinkReport, RuleGuard, address};
use crate::oracle::{Change, Declared, Membership};

mod members;
use crate::scenario::{Action, Content, Pick, Scenario, Targets};

/// Virtual wall-clock time at which every simulation starts (2026-01-01T00:00:00Z).
pub const EPOCH: Duration = Duration::from_secs(1_767_225_600);

/// A message the simulator sent.
#[derive(Clone, Debug)]
pub struct Sent {
    pub flow: usize,
    pub origin: usize,
    pub to: Address,
    pub precedence: Precedence,
    pub at: Duration,
    pub lifetime: Duration,
    /// Its latest-value key, if the flow has one.
    pub key: Option<String>,
    /// The message it replaces (a `replace` event).
    pub replaces: Option<MessageId>,
    /// Intended recipients (node indexes, ascending), from the scenario's declared membership
    /// ([`crate::oracle`]), never from a node's view; filled in when the run ends.
    pub intended: Vec<usize>,
}

/// One failure or recovery as it happened.
#[derive(Clone, Debug)]
pub struct Happened {
    pub at: Duration,
    pub action: &'static str,
    pub target: String,
    pub random: bool,
}

/// Everything a run observed; the report is computed from it.
#[derive(Debug, Default)]
pub struct Observed {
    pub sent: HashMap<MessageId, Sent>,
    /// Invariants a node found broken (with `Scenario::check_invariants`), first per node run.
    pub violations: Vec<String>,
    /// Submissions a crashed or refusing origin did not accept, per flow.
    pub not_accepted: BTreeMap<usize, u64>,
    /// (message, destination node) -> delivery times (more than one is a duplicate).
    pub deliveries: HashMap<(MessageId, usize), Vec<Duration>>,
    /// (message, destination node) an `Expired` event named, at any node.
    pub expired: HashSet<(MessageId, usize)>,
    /// Refusals are per message (the event names no destination).
    pub refused: HashMap<MessageId, String>,
    /// (message, destination node) still owed by some store at the end.
    pub held: HashSet<(MessageId, usize)>,
    /// (message, destination node) a node dropped for a cancel or a newer message
    /// (`Event::Superseded`): the first outcome (`Cancelled` or `Superseded`) and what caused it.
    pub withdrawn: HashMap<(MessageId, usize), (Outcome, MessageId)>,
    /// (message, destination node) delivered there and later marked withdrawn in its inbox
    /// (`Event::Withdrawn`): still delivered.
    pub marked: HashSet<(MessageId, usize)>,
    /// The cancels the simulator had origins send: cancel id -> the message it recalls.
    pub cancels: HashMap<MessageId, MessageId>,
    /// (message, destination node) ever past its delivery objective at the origin, and
    /// whether it still is at the end.
    pub overdue: HashMap<(MessageId, usize), (Precedence, bool)>,
    /// Offers of late messages over routes their precedence avoids on time, by
    /// `Precedence::index()`, counted by the nodes running at the end (since their last start).
    pub escalated: [u64; 4],
    pub events: Vec<Happened>,
    pub links: Vec<LinkReport>,
    /// Per link (scenario id): what each end's relay sent on it, `[a -> b, b -> a]`, counted
    /// by the relays (payload, framing, control) across restarts.
    pub link_bytes: HashMap<String, [DirectionBytes; 2]>,
    /// Per node: (time, messages held), sampled.
    pub queue_depth: BTreeMap<String, Vec<(Duration, u64)>>,
    pub virtual_time: Duration,
    pub started: Option<Instant>,
    /// Control traffic counted by the nodes running at the end (since their last start).
    pub control: Control,
    /// Declared membership and its changes as applied: the oracle of intended recipients.
    pub declared: Declared,
}

/// Routing and probing traffic.
#[derive(Debug, Default, Clone, Copy)]
pub struct Control {
    pub adverts: u64,
    pub advert_bytes: u64,
    pub probes: u64,
}

struct SimNode {
    id: NodeId,
    index: usize,
    core: CoreConfig,
    disk: MemStore,
    creds: Credentials,
    media: Vec<Medium>,
    dials: Vec<Dial>,
    relay: Option<Relay>,
    handle: Option<NodeHandle>,
    /// Bytes its links carried, kept across its restarts.
    traffic: Traffic,
    starts: u64,
    crash_cuts: Vec<RuleGuard>,
    /// What the scenario declares this node a member of now (its file and the events so far).
    member: Membership,
    /// Every group and topic it was ever declared a member of (what a start re-asserts).
    ever: Membership,
    /// Changes declared while it was down, applied at its next start.
    pending: Vec<Change>,
}

#[derive(Clone, Debug)]
enum Step {
    Send(usize),
    Event(usize),
    /// Random failures: the next failure of event `n`.
    Chaos(usize),
    LinkUp(usize, bool),
    NodeRestart(usize, bool),
    Restore(usize),
    Sample,
}

struct World<'s> {
    sc: &'s Scenario,
    seed: u64,
    fabric: Fabric,
    clock: Clock,
    start: Instant,
    nodes: Vec<SimNode>,
    observer: mpsc::UnboundedSender<(NodeId, Time, Event)>,
    link_cuts: HashMap<usize, RuleGuard>,
    degraded: HashMap<usize, crate::fabric::LinkParams>,
    partition: Vec<RuleGuard>,
    chaos: ChaCha8Rng,
    queue: BinaryHeap<Reverse<(Duration, u64, StepKey)>>,
    steps: Vec<Step>,
    counter: u64,
    /// Per flow, the messages its origin accepted, in order (what cancel and replace pick from).
    flow_sent: Vec<Vec<MessageId>>,
    obs: Observed,
}

/// Steps are stored aside; the heap orders (time, insertion, index).
type StepKey = usize;

/// Mixes a seed with a label and a number, for per-node and per-purpose seeds.
pub fn sub_seed(seed: u64, label: &str, n: u64) -> u64 {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for b in label.bytes().chain(n.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        h ^= h >> 29;
    }
    h
}

/// A CAP 1.2 exercise warning from `origin`, sent `at` into the run (virtual time starts at
/// 2026-01-01T00:00:00+00:00), urgency and severity those the CAP gateway maps to the flow's
/// precedence, expiring with the message; padded to the flow's `size` with its description.
pub fn cap_alert(t: &crate::scenario::TrafficDef, origin: &str, at: Duration, seed: u64) -> Bytes {
    use relaymesh::gateway::cap::format_time;
    const EPOCH: i64 = 1_767_225_600;
    let (urgency, severity, event) = match t.precedence {
        Precedence::Flash => ("Immediate", "Extreme", "Flash Flood Warning"),
        Precedence::Immediate => ("Expected", "Severe", "Flood Warning"),
        Precedence::Priority => ("Future", "Severe", "Flood Watch"),
        Precedence::Routine => ("Past", "Minor", "Hydrologic Statement"),
    };
    let sent = EPOCH + at.as_secs() as i64;
    let expires = sent + t.lifetime.as_secs().max(1) as i64;
    let mut alert = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n\
         <identifier>SIM-{seed:016x}</identifier>\n<sender>{origin}@relaymesh-sim</sender>\n\
         <sent>{}</sent>\n<status>Exercise</status>\n<msgType>Alert</msgType>\n\
         <scope>Public</scope>\n<note>relaymesh-sim exercise</note>\n<info>\n\
         <category>Met</category>\n<event>{event}</event>\n<urgency>{urgency}</urgency>\n\
         <severity>{severity}</severity>\n<certainty>Likely</certainty>\n\
         <expires>{}</expires>\n<headline>{event} for the county</headline>\n<description>",
        format_time(sent),
        format_time(expires),
    );
    let tail =
        "</description>\n<area>\n<areaDesc>The county</areaDesc>\n</area>\n</info>\n</alert>\n";
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    alert.push_str(&format!(
        "River gauge {} reads {} cm and rising.",
        rng.random_range(1..40),
        rng.random_range(200..900)
    ));
    while alert.len() + tail.len() < t.size {
        alert.push_str(" Move to higher ground; avoid the river road.");
    }
    alert.push_str(tail);
    Bytes::from(alert)
}

/// A payload of `size` bytes, the same for the same seed.
fn payload(content: Content, size: usize, seed: u64) -> Bytes {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    match content {
        Content::Random => {
            let mut b = vec![0u8; size];
            rng.fill(&mut b[..]);
            Bytes::from(b)
        }
        Content::Text => {
            const PLACES: [&str; 6] =
                ["north bank", "mill road", "school", "bridge 4", "clinic", "depot"];
            const STATES: [&str; 4] = ["passable", "flooded", "blocked by debris", "closed"];
            let mut s = String::with_capacity(size + 160);
            while s.len() < size {
                let team = rng.random_range(1..40);
                let (x, y) = (rng.random_range(1000..9999), rng.random_range(1000..9999));
                s.push_str(&format!(
                    "SITREP team-{team:02} grid {x} {y}: {} evacuated, {} injured; road at {} {}; \
                     water level {} cm, {}.\n",
                    rng.random_range(0..300),
                    rng.random_range(0..20),
                    PLACES[rng.random_range(0..PLACES.len())],
                    STATES[rng.random_range(0..STATES.len())],
                    rng.random_range(20..400),
                    if rng.random_bool(0.5) { "rising" } else { "falling" },
                ));
            }
            s.truncate(size);
            Bytes::from(s)
        }
        Content::Cap => unreachable!("CAP payloads are made by cap_alert"),
        Content::Object => payload(Content::Random, size, seed),
    }
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = [0u8; 32];
    rng.fill(&mut out);
    out
}

/// Runs `sc` with `seed` to the end; must run in a current-thread runtime with a paused clock.
/// `progress` is called with the virtual time reached, now and then.
pub async fn run(sc: &Scenario, seed: u64, progress: &mut dyn FnMut(Duration)) -> Observed {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut w = World::new(sc, seed, tx);
    w.obs.started = Some(w.start);
    for i in 0..w.nodes.len() {
        w.start_node(i);
        w.assert_membership(i).await;
    }
    w.schedule_all();
    let end = sc.duration;
    let mut last_progress = Duration::ZERO;
    while let Some(Reverse((at, _, key))) = w.queue.pop() {
        if at > end {
            break;
        }
        tokio::time::sleep_until(w.start + at).await;
        drain(&mut rx, &mut w);
        let step = w.steps[key].clone();
        w.step(step, at).await;
        if at >= last_progress + Duration::from_secs(10) {
            last_progress = at;
            progress(at);
        }
    }
    tokio::time::sleep_until(w.start + end).await;
    drain(&mut rx, &mut w);
    progress(end);
    w.finish(&mut rx).await
}

fn drain(rx: &mut mpsc::UnboundedReceiver<(NodeId, Time, Event)>, w: &mut World<'_>) {
    while let Ok((node, at, event)) = rx.try_recv() {
        w.observe(node, at, event);
    }
}

impl<'s> World<'s> {
    fn new(
        sc: &'s Scenario,
        seed: u64,
        observer: mpsc::UnboundedSender<(NodeId, Time, Event)>,
    ) -> World<'s> {
        let fabric = Fabric::new(sub_seed(seed, "fabric", 0));
        let clock = Clock::anchored(EPOCH);
        let start = Instant::now();
        let epoch = UNIX_EPOCH + EPOCH;
        let validity = Validity {
            not_before: epoch - Duration::from_secs(86_400),
            not_after: epoch + Duration::from_secs(10 * 365 * 86_400),
        };
        // A CA per deployment (the first one's seed as before there were several).
        let cas: Vec<Ca> = (0..sc.deployments.len())
            .map(|d| {
                Ca::generate(seed_bytes(sub_seed(seed, "ca", d as u64)), validity)
                    .unwrap_or_else(|e| unreachable!("a seeded CA always generates: {e}"))
            })
            .collect();
        let mut nodes = Vec::new();
        for (index, def) in sc.nodes.iter().enumerate() {
            let key_seed = seed_bytes(sub_seed(seed, "key", index as u64));
            let ca = &cas[def.deployment];
            let cert = ca
                .issue(&def.id, def.role, key_seed, validity)
                .unwrap_or_else(|e| unreachable!("a seeded certificate always generates: {e}"));
            let (trusted, policies) = federated(sc, &cas, def);
            let creds = Credentials {
                ca: ca.cert_der.clone(),
                chain: vec![cert.cert_der],
                key: Arc::new(PrivateKeyDer::Pkcs8(cert.key_der)),
                identity: relaymesh::pki::Identity { node: def.id.clone(), role: def.role },
                federated: trusted,
            };
            let mut core = CoreConfig::new(def.id.clone(), def.role);
            core.federation = policies;
            core.groups = def.groups.clone();
            core.area = def.area.clone();
            core.check_invariants = sc.check_invariants;
            if let Some(l) = sc.advert_lifetime {
                core.advert_lifetime = l;
            }
            sc.objectives.apply(&mut core);
            let member = Membership {
                groups: def.groups.iter().cloned().collect(),
                topics: def.subscribe.iter().map(|p| p.as_str().to_owned()).collect(),
            };
            for (m, (mc, _)) in &sc.media {
                core.media.insert(*m, mc.clone());
            }
            let mut media: Vec<Medium> = Vec::new();
            let mut dials = Vec::new();
            for l in &sc.links {
                if (l.a == index || l.b == index) && !media.contains(&l.medium) {
                    media.push(l.medium);
                }
                if l.a == index {
                    dials.push(Dial {
                        node: sc.nodes[l.b].id.clone(),
                        addr: address(l.b, l.medium),
                        medium: l.medium,
                    });
                }
            }
            nodes.push(SimNode {
                id: def.id.clone(),
                index,
                core,
                disk: MemStore::new(),
                creds,
                media,
                dials,
                relay: None,
                handle: None,
                traffic: Traffic::default(),
                starts: 0,
                crash_cuts: Vec::new(),
                ever: member.clone(),
                member,
                pending: Vec::new(),
            });
        }
        for l in &sc.links {
            fabric.add_link(
                &l.id,
                l.medium,
                address(l.a, l.medium),
                address(l.b, l.medium),
                l.params.clone(),
            );
        }
        World {
            sc,
            seed,
            fabric,
            clock,
            start,
            nodes,
            observer,
            link_cuts: HashMap::new(),
            degraded: HashMap::new(),
            partition: Vec::new(),
            chaos: ChaCha8Rng::seed_from_u64(sub_seed(seed, "chaos", 0)),
            queue: BinaryHeap::new(),
            steps: Vec::new(),
            counter: 0,
            flow_sent: vec![Vec::new(); sc.traffic.len()],
            obs: Observed { declared: Declared::new(sc), ..Observed::default() },
        }
    }

    fn at(&mut self, at: Duration, step: Step) {
        self.counter += 1;
        self.steps.push(step);
        self.queue.push(Reverse((at, self.counter, self.steps.len() - 1)));
    }

    fn schedule_all(&mut self) {
        for (i, t) in self.sc.traffic.iter().enumerate() {
            if t.start <= t.stop {
                self.at(t.start, Step::Send(i));
            }
        }
        for (i, e) in self.sc.events.iter().enumerate() {
            self.at(e.at, Step::Event(i));
        }
        self.at(Duration::ZERO, Step::Sample);
    }

    fn start_node(&mut self, i: usize) {
        let transport = self.sc.media.iter().map(|(m, (_, t))| (*m, t.clone())).collect();
        let disk_sync = self.sc.disk_sync;
        let node = &mut self.nodes[i];
        let listeners = node
            .media
            .iter()
            .map(|m| Listener { medium: *m, socket: self.fabric.bind(address(node.index, *m)) })
            .collect();
        let spec = RelaySpec {
            core: node.core.clone(),
            creds: node.creds.clone(),
            transport,
            listeners,
            dials: node.dials.clone(),
            store: match disk_sync {
                Duration::ZERO => Box::new(node.disk.handle()),
                _ => Box::new(node.disk.split_commits()),
            },
            landing: match disk_sync {
                Duration::ZERO => relaymesh::shell::driver::Landing::AtOnce,
                d => relaymesh::shell::driver::Landing::After(d),
            },
            clock: self.clock,
            seed: sub_seed(self.seed, node.id.as_str(), node.starts),
            max_batch: 4096,
            commit: relaymesh::shell::driver::CommitPolicy::IMMEDIATE,
            data_dir: None,
            observer: Some(self.observer.clone()),
            dedicated_driver_thread: false,
            client_socket: None,
            stall_timeout: relaymesh::shell::config::DEFAULT_STALL_TIMEOUT,
            traffic: node.traffic.clone(),
            compact: Some(relaymesh::core::wire::compact::Dialect::NEWEST),
        };
        node.starts += 1;
        match Relay::start(spec) {
            Ok(relay) => {
                node.handle = Some(relay.handle().clone());
                node.relay = Some(relay);
            }
            Err(e) => tracing::error!(node = %node.id, "cannot start: {e}"),
        }
    }

    fn crash_node(&mut self, i: usize) -> bool {
        let Some(relay) = self.nodes[i].relay.take() else { return false };
        relay.abort();
        self.nodes[i].handle = None;
        self.nodes[i].disk.crash();
        let (index, media) = (self.nodes[i].index, self.nodes[i].media.clone());
        for m in media {
            self.fabric.unbind(address(index, m));
        }
        let cuts: Vec<RuleGuard> = self
            .sc
            .links
            .iter()
            .filter(|l| l.a == i || l.b == i)
            .filter_map(|l| self.fabric.add_rule(&l.id, Box::new(Cut)))
            .collect();
        self.nodes[i].crash_cuts = cuts;
        true
    }

    /// Starts node `i` at `at` and asserts its declared membership (changes declared while it
    /// was down take effect now).
    async fn restart_node(&mut self, i: usize, at: Duration) -> bool {
        if self.nodes[i].relay.is_some() {
            return false;
        }
        self.nodes[i].crash_cuts.clear();
        self.start_node(i);
        self.assert_membership(i).await;
        for change in std::mem::take(&mut self.nodes[i].pending) {
            self.obs.declared.record(at, i, change);
        }
        true
    }

    fn log(&mut self, at: Duration, action: &'static str, target: String, random: bool) {
        self.obs.events.push(Happened { at, action, target, random });
    }

    async fn step(&mut self, step: Step, at: Duration) {
        match step {
            Step::Send(flow) => self.send(flow, at).await,
            Step::Event(i) => self.event(i, at).await,
            Step::Chaos(i) => self.chaos(i, at),
            Step::LinkUp(l, random) => {
                if self.link_cuts.remove(&l).is_some() {
                    let id = self.sc.links[l].id.clone();
                    self.log(at, "link_up", id, random);
                }
            }
            Step::NodeRestart(n, random) => {
                if self.restart_node(n, at).await {
                    let id = self.nodes[n].id.to_string();
                    self.log(at, "node_restart", id, random);
                }
            }
            Step::Restore(l) => {
                if let Some(p) = self.degraded.remove(&l) {
                    self.fabric.set_params(&self.sc.links[l].id, p);
                }
            }
            Step::Sample => {
                for n in 0..self.nodes.len() {
                    let depth = match &self.nodes[n].handle {
                        Some(h) => h.held().await.unwrap_or(0),
                        None => 0,
                    };
                    self.obs
                        .queue_depth
                        .entry(self.nodes[n].id.to_string())
                        .or_default()
                        .push((at, depth));
                }
                let every = (self.sc.duration / 120).max(Duration::from_secs(1));
                self.at(at + every, Step::Sample);
            }
        }
    }

    async fn send(&mut self, flow: usize, at: Duration) {
        let t = &self.sc.traffic[flow];
        let next = at + t.interval;
        if next <= t.stop {
            self.at(next, Step::Send(flow));
        }
        if self.submit(flow, at, None).await.is_err() {
            *self.obs.not_accepted.entry(flow).or_default() += 1;
        }
    }

    /// Submits one message of `flow` at its origin (replacing `replaces`, if given) and records
    /// it as sent; why not, if the origin is down or does not accept it.
    async fn submit(
        &mut self,
        flow: usize,
        at: Duration,
        replaces: Option<MessageId>,
    ) -> Result<MessageId, String> {
        let t = &self.sc.traffic[flow];
        let Some(handle) = self.nodes[t.from].handle.clone() else {
            return Err("origin down".into());
        };
        let mut seed = sub_seed(self.seed, "payload", flow as u64) ^ at.as_micros() as u64;
        if replaces.is_some() {
            seed = sub_seed(seed, "replacement", 0);
        }
        let sub = Submission {
            to: t.to.clone(),
            precedence: t.precedence,
            lifetime: t.lifetime,
            content_type: match t.content {
                Content::Random | Content::Object => "application/octet-stream".into(),
                Content::Text => "text/plain".into(),
                Content::Cap => relaymesh::gateway::cap::CONTENT_TYPE.into(),
            },
            payload: match t.content {
                Content::Cap => cap_alert(t, self.sc.nodes[t.from].id.as_str(), at, seed),
                c => payload(c, t.size, seed),
            },
            receipt: true,
            status: TrafficStatus::Exercise,
            key: t.key.clone(),
            replaces,
        };
        let accepted = match t.content {
            Content::Object => handle.submit_object(self.object(flow, sub)).await,
            _ => handle.submit(sub).await,
        };
        let id = match accepted {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(e.to_string()),
        };
        self.flow_sent[flow].push(id);
        self.obs.sent.insert(
            id,
            Sent {
                flow,
                origin: t.from,
                to: t.to.clone(),
                precedence: t.precedence,
                at,
                lifetime: t.lifetime,
                key: t.key.clone(),
                replaces,
                intended: Vec::new(),
            },
        );
        Ok(id)
    }

    /// Message `sub` of object flow `flow` as an object: its payload cut into chunks for the
    /// narrowest medium of the origin's links.
    fn object(&self, flow: usize, sub: Submission) -> ObjectSubmission {
        let from = self.sc.traffic[flow].from;
        let media = self.sc.links.iter().filter(|l| l.a == from || l.b == from).map(|l| l.medium);
        let chunk_size = objects::chunk_size_for(media);
        let data = sub.payload;
        let chunks = objects::cut(&data, chunk_size);
        ObjectSubmission {
            to: sub.to,
            precedence: sub.precedence,
            lifetime: sub.lifetime,
            receipt: sub.receipt,
            status: sub.status,
            name: format!("flow-{flow}-{}.bin", self.flow_sent[flow].len()),
            content_type: sub.content_type,
            size: data.len() as u64,
            zstd: false,
            sha256: objects::sha256(&data),
            chunk_size,
            chunks,
        }
    }

    /// A cancel or replace event: the flow's origin steers message `pick` of the flow. The
    /// event log says which message, and why nothing happened if nothing did.
    async fn steer(&mut self, at: Duration, flow: usize, pick: Pick, cancel: Option<String>) {
        let sent = &self.flow_sent[flow];
        let label = self.sc.traffic[flow].label(flow);
        let action = if cancel.is_some() { "cancel" } else { "replace" };
        let Some(index) = pick.resolve(sent.len()) else {
            let target = format!("{label}: no such message ({} sent so far)", sent.len());
            self.log(at, action, target, false);
            return;
        };
        let target = sent[index];
        let result = match cancel {
            Some(reason) => match self.nodes[self.sc.traffic[flow].from].handle.clone() {
                None => Err("origin down".to_owned()),
                Some(h) => match h.cancel(target, reason, None).await {
                    Ok(Ok(receipt)) => {
                        self.obs.cancels.insert(receipt.id, target);
                        Ok(String::new())
                    }
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
            },
            None => self
                .submit(flow, at, Some(target))
                .await
                .map(|_| format!(" by message {}", self.flow_sent[flow].len() - 1)),
        };
        let target = match result {
            Ok(by) => format!("{label} message {index}{by}"),
            Err(why) => format!("{label} message {index}: not done, {why}"),
        };
        self.log(at, action, target, false);
    }

    async fn event(&mut self, i: usize, at: Duration) {
        let action = self.sc.events[i].action.clone();
        match action {
            Action::LinkDown(l) => {
                if let std::collections::hash_map::Entry::Vacant(e) = self.link_cuts.entry(l)
                    && let Some(g) = self.fabric.add_rule(&self.sc.links[l].id, Box::new(Cut))
                {
                    e.insert(g);
                }
                self.log(at, "link_down", self.sc.links[l].id.clone(), false);
            }
            Action::LinkUp(l) => {
                self.link_cuts.remove(&l);
                if let Some(p) = self.degraded.remove(&l) {
                    self.fabric.set_params(&self.sc.links[l].id, p);
                }
                self.log(at, "link_up", self.sc.links[l].id.clone(), false);
            }
            Action::Degrade { link, delay, jitter, bandwidth_bps, loss, lasting } => {
                let id = self.sc.links[link].id.clone();
                if let Some(old) = self.fabric.params(&id) {
                    let mut new = old.clone();
                    if let Some(d) = delay {
                        new.delay = d;
                    }
                    if let Some(j) = jitter {
                        new.jitter = j;
                    }
                    if let Some(b) = bandwidth_bps {
                        new.bandwidth_bps = b;
                    }
                    if let Some(l) = loss {
                        new.loss = l;
                    }
                    self.fabric.set_params(&id, new);
                    self.degraded.entry(link).or_insert(old);
                    if let Some(d) = lasting {
                        self.at(at + d, Step::Restore(link));
                    }
                }
                self.log(at, "degrade", id, false);
            }
            Action::NodeCrash(n) => {
                self.crash_node(n);
                self.log(at, "node_crash", self.nodes[n].id.to_string(), false);
            }
            Action::NodeRestart(n) => {
                self.restart_node(n, at).await;
                self.log(at, "node_restart", self.nodes[n].id.to_string(), false);
            }
            Action::Partition(set) => {
                let inside: HashSet<usize> = set.iter().copied().collect();
                for l in &self.sc.links {
                    if inside.contains(&l.a) != inside.contains(&l.b)
                        && let Some(g) = self.fabric.add_rule(&l.id, Box::new(Cut))
                    {
                        self.partition.push(g);
                    }
                }
                let names: Vec<String> =
                    set.iter().map(|n| self.nodes[*n].id.to_string()).collect();
                self.log(at, "partition", names.join(","), false);
            }
            Action::Heal => {
                self.partition.clear();
                self.log(at, "heal", String::new(), false);
            }
            Action::RandomFailures { mtbf, .. } => {
                let first = at + exponential(&mut self.chaos, mtbf);
                self.at(first, Step::Chaos(i));
            }
            Action::Membership { node, change } => {
                let (action, target) = change.describe();
                let target = format!("{} {target}", self.nodes[node].id);
                self.log(at, action, target, false);
                self.change_membership(node, change, at).await;
            }
            Action::Cancel { flow, message, reason } => {
                self.steer(at, flow, message, Some(reason)).await;
            }
            Action::Replace { flow, message } => self.steer(at, flow, message, None).await,
        }
    }

    fn chaos(&mut self, i: usize, at: Duration) {
        let Action::RandomFailures { mtbf, mttr, until, targets } =
            self.sc.events[i].action.clone()
        else {
            return;
        };
        if at > until {
            return;
        }
        let links = self.sc.links.len();
        let nodes = self.nodes.len();
        let pool = match targets {
            Targets::Links => links,
            Targets::Nodes => nodes,
            Targets::All => links + nodes,
        };
        if pool > 0 {
            let pick = self.chaos.random_range(0..pool);
            let repair = at + exponential(&mut self.chaos, mttr);
            let link = match targets {
                Targets::Links => Some(pick),
                Targets::Nodes => None,
                Targets::All => (pick < links).then_some(pick),
            };
            match link {
                Some(l) => {
                    if !self.link_cuts.contains_key(&l)
                        && let Some(g) = self.fabric.add_rule(&self.sc.links[l].id, Box::new(Cut))
                    {
                        self.link_cuts.insert(l, g);
                        self.log(at, "link_down", self.sc.links[l].id.clone(), true);
                        self.at(repair, Step::LinkUp(l, true));
                    }
                }
                None => {
                    let n = if targets == Targets::Nodes { pick } else { pick - links };
                    if self.crash_node(n) {
                        self.log(at, "node_crash", self.nodes[n].id.to_string(), true);
                        self.at(repair, Step::NodeRestart(n, true));
                    }
                }
            }
        }
        let next = at + exponential(&mut self.chaos, mtbf);
        self.at(next, Step::Chaos(i));
    }

    fn observe(&mut self, node: NodeId, at: Time, event: Event) {
        let when = Duration::from_micros(
            at.as_micros().saturating_sub(relaymesh::core::types::duration_micros(EPOCH)),
        );
        match event {
            Event::Delivered { id, .. } => {
                if let Some(n) = self.sc.node_index(node.as_str()) {
                    self.obs.deliveries.entry((id, n)).or_default().push(when);
                }
            }
            Event::Expired { id, destinations, .. } => {
                for d in destinations {
                    if let Some(n) = self.sc.node_index(d.as_str()) {
                        self.obs.expired.insert((id, n));
                    }
                }
            }
            Event::Superseded { id, outcome, by, destinations, .. } => {
                for d in destinations {
                    if let Some(n) = self.sc.node_index(d.as_str()) {
                        self.obs.withdrawn.entry((id, n)).or_insert((outcome, by));
                    }
                }
            }
            Event::Withdrawn { id, .. } => {
                if let Some(n) = self.sc.node_index(node.as_str()) {
                    self.obs.marked.insert((id, n));
                }
            }
            Event::InvariantBroken { what } => {
                self.obs.violations.push(format!("{node} at {:.3} s: {what}", when.as_secs_f64()));
            }
            Event::Refused { id, reason, .. } => {
                self.obs.refused.insert(id, reason);
            }
            Event::Overdue { of, precedence, destinations, .. } => {
                for d in destinations {
                    if let Some(n) = self.sc.node_index(d.as_str()) {
                        self.obs.overdue.insert((of, n), (precedence, true));
                    }
                }
            }
            Event::OverdueCleared { of, destinations, .. } => {
                for d in destinations {
                    if let Some(n) = self.sc.node_index(d.as_str())
                        && let Some(o) = self.obs.overdue.get_mut(&(of, n))
                    {
                        o.1 = false;
                    }
                }
            }
            _ => {}
        }
    }

    async fn finish(mut self, rx: &mut mpsc::UnboundedReceiver<(NodeId, Time, Event)>) -> Observed {
        for n in &self.nodes {
            if let Some(h) = &n.handle
                && let Ok(s) = h.status().await
            {
                for (sum, n) in self.obs.escalated.iter_mut().zip(s.node.counters.escalated) {
                    *sum += n;
                }
                self.obs.control.adverts += s.node.counters.adverts_sent;
                self.obs.control.advert_bytes += s.node.counters.advert_bytes;
                self.obs.control.probes +=
                    s.node.links.iter().map(|l| l.counters.probes_sent).sum::<u64>();
            }
        }
        // Stop every node as if the power went: what is committed is what counts.
        for i in 0..self.nodes.len() {
            if let Some(relay) = self.nodes[i].relay.take() {
                relay.abort();
            }
            self.nodes[i].handle = None;
        }
        tokio::task::yield_now().await;
        drain(rx, &mut self);
        for n in &self.nodes {
            let mut disk = n.disk.handle();
            disk.crash();
            if let Ok(entries) = held_entries(&mut disk) {
                for e in entries {
                    if let Some(d) = self.sc.node_index(e.destination.as_str()) {
                        self.obs.held.insert((e.id, d));
                    }
                }
            }
        }
        // Deliveries of messages the simulator did not send (reports travel as messages but
        // are not delivered to applications) are not part of the accounting.
        let sent = &self.obs.sent;
        self.obs.deliveries.retain(|(id, _), _| sent.contains_key(id));
        let declared = &self.obs.declared;
        for s in self.obs.sent.values_mut() {
            s.intended = declared.intended(s.origin, &s.to, s.at, s.lifetime);
        }
        self.obs.links = self.fabric.link_report();
        for l in &self.sc.links {
            let sent = |from: usize, to: usize| {
                let key = (self.nodes[to].id.clone(), l.medium);
                self.nodes[from].traffic.totals().get(&key).map(|w| w.sent).unwrap_or_default()
            };
            self.obs.link_bytes.insert(l.id.clone(), [sent(l.a, l.b), sent(l.b, l.a)]);
        }
        self.obs.virtual_time = Instant::now() - self.start;
        self.obs
    }
}

/// What `def` takes from each other deployment: its CA (for the node ids it certifies; at the
/// handshake too if `def` is a border) and the scenario's `[federation]`, with `def`'s own
/// deployment's borders.
fn federated(
    sc: &Scenario,
    cas: &[Ca],
    def: &crate::scenario::NodeDef,
) -> (Vec<FederatedCa>, Vec<Federation>) {
    let borders: Vec<NodeId> = sc
        .nodes
        .iter()
        .filter(|n| n.deployment == def.deployment && n.border)
        .map(|n| n.id.clone())
        .collect();
    let others = sc.deployments.iter().enumerate().filter(|(d, _)| *d != def.deployment);
    let mut trusted = Vec::new();
    let mut policies = Vec::new();
    for (d, dep) in others {
        trusted.push(FederatedCa {
            deployment: dep.name.as_str().into(),
            ca: cas[d].cert_der.clone(),
            nodes: dep.nodes.clone(),
            border: def.border,
        });
        if let Some(f) = &sc.federation {
            policies.push(Federation {
                deployment: dep.name.as_str().into(),
                borders: borders.clone(),
                to: f.to.iter().map(|t| checked_pattern(t)).collect(),
                precedences: f.precedences,
                roles: f.roles.clone(),
            });
        }
    }
    (trusted, policies)
}

/// A `[federation] to` pattern, checked when the scenario was read.
fn checked_pattern(t: &str) -> AddressPattern {
    AddressPattern::parse(t).unwrap_or_else(|e| unreachable!("checked: {e}"))
}

fn exponential(rng: &mut ChaCha8Rng, mean: Duration) -> Duration {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    mean.mul_f64(-u.ln()).max(Duration::from_millis(1))
}
