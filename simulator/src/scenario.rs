//! Scenario files (the format is in the README, "Simulator"): parsed and checked completely before anything runs.
//! Every error names the file, the line and the reason.
//!
//! # Steering: keys, cancel and replace
//!
//! A flow may carry a latest-value key and a name, and events may cancel or replace what a
//! flow sent (see `relaymesh_core::steering`):
//!
//! ```toml
//! [[traffic]]
//! name = "positions"          # optional: events name the flow by it (else by its index,
//!                             # 0 for the first [[traffic]] of the file)
//! from = "team-01"
//! to = "node:county-hq"
//! every = "3s"
//! key = "pos/{from}"          # optional: every message of the flow carries this key ({from}
//!                             # is the sending node's id): only the newest travels
//!
//! [[event]]
//! at = "20m"
//! action = "cancel"           # the flow's origin recalls one of the flow's messages
//! flow = "positions"          # a flow's name, or its index (0 = the first [[traffic]])
//! message = "last"            # "last" (the default), "first", or an index among the messages
//!                             # the flow has sent so far: 0 the first, -1 the last, -2 the one
//!                             # before, ...
//! reason = "sent in error"    # optional
//!
//! [[event]]
//! at = "25m"
//! action = "replace"          # the origin sends a new message of the flow (same address,
//! flow = 0                    # precedence, size, lifetime and key) that replaces the one
//! message = -2                # chosen; it counts as one of the flow's messages from then on
//! ```
//!
//! The messages a flow "has sent" are those its origin accepted, replacements included, in
//! order. An event whose message does not exist yet, or whose origin is down or refuses, does
//! nothing but say so in the report's event list. `relaymesh-sim run --no-keys` runs a
//! scenario with every `key` removed, for comparison ([`Scenario::without_keys`]).
//!
//! In the accounting, a (message, intended recipient) pair that a node dropped for a cancel
//! is `cancelled`, one dropped for a replacement or a newer message with its key
//! `superseded` (`Event::Superseded`, checked against what the simulator sent: a withdrawal
//! without such a cause does not count, see [`crate::pairs`]). A pair delivered before its
//! withdrawal stays delivered.

use std::collections::BTreeMap;
use std::time::Duration;

use relaymesh::core::config::{AddressObjectives, CoreConfig, MediumConfig};
use relaymesh::core::types::{Group, check_key};
use relaymesh::core::{Address, Medium, NodeId, Precedence, Role, TopicPattern};
use relaymesh::shell::config::{MediumSection, ObjectivesSection, apply_objectives, medium_config};
use relaymesh::shell::transport::TransportSettings;
use relaymesh::units::{parse_duration, parse_rate, parse_size};
use serde::Deserialize;
use toml::Spanned;

use crate::fabric::LinkParams;
use crate::oracle::Change;

mod builtin;
pub use builtin::{BUILT_IN, built_in, city, city_built_in, mesh};

/// A scenario problem: file, line (when known) and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ScenarioError {
    pub file: String,
    pub line: Option<usize>,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct NodeDef {
    pub id: NodeId,
    pub role: Role,
    pub groups: Vec<String>,
    pub subscribe: Vec<TopicPattern>,
    /// Its deployment: an index into [`Scenario::deployments`].
    pub deployment: usize,
    /// Other deployments' nodes may link here (`border = true`).
    pub border: bool,
    /// Its area within its deployment (`""`: none).
    pub area: String,
}

/// One deployment of a scenario: its own CA, and the node ids it certifies.
#[derive(Clone, Debug)]
pub struct DeploymentDef {
    pub name: String,
    /// Its nodes' ids as the other deployments' `[[federation]] nodes` name them: `<name>-*`
    /// when every one of its ids starts so and no other deployment's does, else each id.
    pub nodes: Vec<relaymesh::pki::NodePattern>,
}

/// `[federation]`: what each deployment takes from every other (the same both ways).
#[derive(Clone, Debug)]
pub struct FederationDef {
    /// Address patterns, as in `[[federation]] to`.
    pub to: Vec<String>,
    pub precedences: [bool; 4],
    pub roles: BTreeMap<Role, Role>,
}

#[derive(Clone, Debug)]
pub struct LinkDef {
    /// `a~b/medium`
    pub id: String,
    pub a: usize,
    pub b: usize,
    pub medium: Medium,
    pub params: LinkParams,
}

#[derive(Clone, Debug)]
pub struct TrafficDef {
    /// `name`: what events call the flow (optional).
    pub name: Option<String>,
    pub from: usize,
    pub to: Address,
    pub precedence: Precedence,
    pub interval: Duration,
    pub size: usize,
    pub start: Duration,
    pub stop: Duration,
    pub lifetime: Duration,
    pub content: Content,
    /// The latest-value key every message of the flow carries (`{from}` already replaced).
    pub key: Option<String>,
}

impl TrafficDef {
    /// The flow as the report names it: its name, or `flow <index>`.
    pub fn label(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("flow {index}"))
    }
}

/// Which of a flow's messages (those sent so far) an event acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// The n-th message, from 0.
    From(usize),
    /// The n-th from the end, from 1 (`-1` is the last).
    Back(usize),
}

impl Pick {
    /// The index into a list of `n` messages, if there is such a message.
    pub fn resolve(self, n: usize) -> Option<usize> {
        match self {
            Pick::From(i) => (i < n).then_some(i),
            Pick::Back(k) => n.checked_sub(k),
        }
    }
}

/// What a flow's payloads hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// Random bytes (imagery, anything already compressed): compression cannot shrink them.
    Random,
    /// Situation-report text, varying per message like real reports (numbers, teams, places
    /// change; the wording repeats): what compression on a costly link is for.
    Text,
    /// CAP 1.2 warnings (`application/cap+xml`, status Exercise), as the CAP gateway sends
    /// them: urgency and severity to match the flow's precedence, expiring with the message.
    Cap,
    /// Objects (photos, imagery) of `size` random bytes, each sent as one object in chunks
    /// sized for the origin's narrowest medium (`core::objects`): the report counts an object
    /// once it is whole at a destination, and its latency is its completion time.
    Object,
}

/// What random failures may hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    Links,
    Nodes,
    All,
}

#[derive(Clone, Debug)]
pub enum Action {
    LinkDown(usize),
    LinkUp(usize),
    Degrade {
        link: usize,
        delay: Option<Duration>,
        jitter: Option<Duration>,
        bandwidth_bps: Option<u64>,
        loss: Option<f64>,
        /// Back to normal after this long (`None`: until a `link_up` of the link).
        lasting: Option<Duration>,
    },
    NodeCrash(usize),
    NodeRestart(usize),
    /// The nodes are cut off from everyone else.
    Partition(Vec<usize>),
    Heal,
    RandomFailures {
        mtbf: Duration,
        mttr: Duration,
        until: Duration,
        targets: Targets,
    },
    /// `join`, `leave`, `subscribe`, `unsubscribe`: the node's membership changes (applied
    /// when it next runs if it is down).
    Membership {
        node: usize,
        change: Change,
    },
    /// The origin of `flow` recalls one of the flow's messages.
    Cancel {
        flow: usize,
        message: Pick,
        reason: String,
    },
    /// The origin of `flow` sends a new message of the flow replacing one it sent.
    Replace {
        flow: usize,
        message: Pick,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::LinkDown(_) => "link_down",
            Action::LinkUp(_) => "link_up",
            Action::Degrade { .. } => "degrade",
            Action::NodeCrash(_) => "node_crash",
            Action::NodeRestart(_) => "node_restart",
            Action::Partition(_) => "partition",
            Action::Heal => "heal",
            Action::RandomFailures { .. } => "random_failures",
            Action::Membership { change, .. } => change.describe().0,
            Action::Cancel { .. } => "cancel",
            Action::Replace { .. } => "replace",
        }
    }
}

#[derive(Clone, Debug)]
pub struct EventDef {
    pub at: Duration,
    pub action: Action,
}

#[derive(Clone, Debug, Default)]
pub struct Expect {
    pub lost: Option<u64>,
    pub duplicates: Option<u64>,
    pub starved: Option<u64>,
    pub delivery_ratio: BTreeMap<Precedence, f64>,
    pub latency_p99: BTreeMap<Precedence, Duration>,
    /// At most this many (message, destination) pairs ever overdue, per precedence.
    pub overdue: BTreeMap<Precedence, u64>,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub duration: Duration,
    pub seed: u64,
    pub nodes: Vec<NodeDef>,
    pub links: Vec<LinkDef>,
    pub traffic: Vec<TrafficDef>,
    pub events: Vec<EventDef>,
    pub media: BTreeMap<Medium, (MediumConfig, TransportSettings)>,
    /// `[limits] advert_lifetime`: every node's (default: the relay's).
    pub advert_lifetime: Option<Duration>,
    /// `[limits] disk_sync`: how long every node's disk takes to make a batch durable. Nodes
    /// forward meanwhile and acknowledge when it has landed (default 0: at once).
    pub disk_sync: Duration,
    /// Every node checks its invariants after every commit (`--check-invariants`; slower):
    /// always in debug builds, so every simulation a test runs checks them.
    pub check_invariants: bool,
    pub expect: Expect,
    /// `[objectives]`: every node's delivery objectives, notices and escalation.
    pub objectives: Objectives,
    /// The deployments, in the order their first node appears; one (`main`) unless nodes
    /// name theirs.
    pub deployments: Vec<DeploymentDef>,
    /// Between every two deployments, when there are several.
    pub federation: Option<FederationDef>,
}

/// What `[objectives]` sets in every node's configuration (the relay's defaults where it
/// says nothing).
#[derive(Clone, Debug)]
pub struct Objectives {
    pub by_precedence: [Duration; 4],
    pub by_address: Vec<AddressObjectives>,
    pub notify: Option<Address>,
    pub escalate: bool,
}

impl Objectives {
    fn from(core: CoreConfig) -> Objectives {
        Objectives {
            by_precedence: core.objectives,
            by_address: core.address_objectives,
            notify: core.notify_overdue,
            escalate: core.escalate,
        }
    }

    pub fn apply(&self, core: &mut CoreConfig) {
        core.objectives = self.by_precedence;
        core.address_objectives = self.by_address.clone();
        core.notify_overdue = self.notify.clone();
        core.escalate = self.escalate;
    }
}

impl Scenario {
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id.as_str() == id)
    }

    /// The same scenario with no latest-value key on any flow (`--no-keys`): every message
    /// travels, for comparison. Whether any flow had one.
    pub fn without_keys(&mut self) -> bool {
        let mut had = false;
        for t in &mut self.traffic {
            had |= t.key.take().is_some();
        }
        had
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    #[serde(default)]
    description: String,
    duration: Spanned<String>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    node: Vec<RawNode>,
    #[serde(default)]
    link: Vec<RawLink>,
    #[serde(default)]
    traffic: Vec<RawTraffic>,
    #[serde(default)]
    event: Vec<RawEvent>,
    #[serde(default)]
    media: BTreeMap<String, Spanned<MediumSection>>,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    expect: Option<RawExpect>,
    /// Delivery objectives of every node, as in `node.toml` (`flash = "10m"`).
    #[serde(default)]
    objectives: Option<Spanned<ObjectivesSection>>,
    #[serde(default)]
    federation: Option<Spanned<RawFederation>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    to: Vec<Spanned<String>>,
    precedences: Option<Vec<Spanned<String>>>,
    roles: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    advert_lifetime: Option<Spanned<String>>,
    disk_sync: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: Spanned<String>,
    role: Spanned<String>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    #[serde(default)]
    subscribe: Vec<Spanned<String>>,
    deployment: Option<Spanned<String>>,
    #[serde(default)]
    border: bool,
    area: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    a: Spanned<String>,
    b: Spanned<String>,
    medium: Spanned<String>,
    delay: Option<Spanned<String>>,
    jitter: Option<Spanned<String>>,
    bandwidth: Option<Spanned<String>>,
    loss: Option<Spanned<f64>>,
    loss_burst: Option<Spanned<f64>>,
    mtu: Option<Spanned<usize>>,
    queue: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTraffic {
    name: Option<Spanned<String>>,
    from: Spanned<String>,
    to: Spanned<String>,
    #[serde(default)]
    precedence: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
    rate: Option<Spanned<f64>>,
    #[serde(default)]
    size: Option<Spanned<Size>>,
    start: Option<Spanned<String>>,
    stop: Option<Spanned<String>>,
    lifetime: Option<Spanned<String>>,
    content: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
}

/// A size: bytes, or a string with a unit (`"20MB"`, `"64KiB"`).
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// A flow's name or index, a message's index or "first"/"last".
enum RawRef {
    Index(i64),
    Name(String),
}

impl<'de> Deserialize<'de> for RawRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawRef, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawRef;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a name (a string) or an index (an integer)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawRef, E> {
                Ok(RawRef::Index(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawRef, E> {
                i64::try_from(v).map(RawRef::Index).map_err(|_| E::custom("index out of range"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawRef, E> {
                Ok(RawRef::Name(v.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at: Spanned<String>,
    action: Spanned<String>,
    link: Option<Spanned<String>>,
    node: Option<Spanned<String>>,
    nodes: Option<Vec<Spanned<String>>>,
    delay: Option<Spanned<String>>,
    jitter: Option<Spanned<String>>,
    bandwidth: Option<Spanned<String>>,
    loss: Option<Spanned<f64>>,
    #[serde(rename = "for")]
    lasting: Option<Spanned<String>>,
    mtbf: Option<Spanned<String>>,
    mttr: Option<Spanned<String>>,
    until: Option<Spanned<String>>,
    targets: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
    flow: Option<Spanned<RawRef>>,
    message: Option<Spanned<RawRef>>,
    reason: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    lost: Option<u64>,
    duplicates: Option<u64>,
    starved: Option<u64>,
    #[serde(default)]
    delivery_ratio: BTreeMap<String, f64>,
    #[serde(default)]
    latency_p99: BTreeMap<String, String>,
    #[serde(default)]
    overdue: BTreeMap<String, u64>,
}

/// Parses scenario text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let fail = |span: Option<std::ops::Range<usize>>, reason: String| ScenarioError {
        file: file.to_owned(),
        line: span.map(|s| line_of(s.start)),
        reason,
    };
    let de = toml::Deserializer::parse(text)
        .map_err(|e| fail(e.span(), e.message().trim().to_owned()))?;
    let raw: Raw = serde_path_to_error::deserialize(de).map_err(|e| {
        // `Spanned` tables add a serde-internal segment to the path: not for the reader.
        let path = e.path().to_string().replace(".$__serde_spanned_private_value", "");
        let inner = e.into_inner();
        fail(inner.span(), format!("{path}: {}", inner.message().trim()))
    })?;
    Checker { fail: &fail }.build(raw)
}

/// Loads a scenario file.
pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        line: None,
        reason: e.to_string(),
    })?;
    parse(&text, &file)
}

type Fail<'a> = &'a dyn Fn(Option<std::ops::Range<usize>>, String) -> ScenarioError;

struct Checker<'a> {
    fail: Fail<'a>,
}

impl Checker<'_> {
    fn err<T>(&self, s: &Spanned<T>, reason: impl std::fmt::Display) -> ScenarioError {
        (self.fail)(Some(s.span()), reason.to_string())
    }

    fn duration(&self, s: &Spanned<String>) -> Result<Duration, ScenarioError> {
        parse_duration(s.get_ref()).map_err(|e| self.err(s, e))
    }

    fn opt_duration(&self, s: &Option<Spanned<String>>) -> Result<Option<Duration>, ScenarioError> {
        s.as_ref().map(|s| self.duration(s)).transpose()
    }

    fn node(&self, nodes: &[NodeDef], s: &Spanned<String>) -> Result<usize, ScenarioError> {
        nodes
            .iter()
            .position(|n| n.id.as_str() == s.get_ref())
            .ok_or_else(|| self.err(s, format!("unknown node {:?}", s.get_ref())))
    }

    /// The flow a cancel or replace event names (`flow = "<name>"` or its index).
    fn flow(&self, traffic: &[TrafficDef], e: &RawEvent) -> Result<usize, ScenarioError> {
        let f = e.flow.as_ref().ok_or_else(|| {
            self.err(&e.action, "this action needs flow = \"<name>\" or the flow's index")
        })?;
        match f.get_ref() {
            RawRef::Index(i) => {
                usize::try_from(*i).ok().filter(|i| *i < traffic.len()).ok_or_else(|| {
                    self.err(
                        f,
                        format!(
                            "no flow {i}: there are {} [[traffic]] (0 is the first)",
                            traffic.len()
                        ),
                    )
                })
            }
            RawRef::Name(n) => {
                traffic.iter().position(|t| t.name.as_ref() == Some(n)).ok_or_else(|| {
                    self.err(f, format!("unknown flow {n:?} (name it in its [[traffic]])"))
                })
            }
        }
    }

    /// Which of the flow's messages: `message = "last"` (the default), `"first"`, or an index
    /// (negative from the end).
    fn pick(&self, e: &RawEvent) -> Result<Pick, ScenarioError> {
        let Some(m) = &e.message else { return Ok(Pick::Back(1)) };
        match m.get_ref() {
            RawRef::Name(n) if n == "last" => Ok(Pick::Back(1)),
            RawRef::Name(n) if n == "first" => Ok(Pick::From(0)),
            RawRef::Name(n) => Err(self.err(
                m,
                format!("message {n:?}: expected \"last\", \"first\" or an index (0 the first, -1 the last)"),
            )),
            RawRef::Index(i) if *i >= 0 => Ok(Pick::From(*i as usize)),
            RawRef::Index(i) => Ok(Pick::Back(i.unsigned_abs() as usize)),
        }
    }

    fn ratio(&self, s: &Spanned<f64>, what: &str) -> Result<f64, ScenarioError> {
        let v = *s.get_ref();
        if (0.0..1.0).contains(&v) {
            Ok(v)
        } else {
            Err(self.err(s, format!("{what} {v} is not in [0, 1)")))
        }
    }

    fn build(&self, raw: Raw) -> Result<Scenario, ScenarioError> {
        let duration = self.duration(&raw.duration)?;
        if duration.is_zero() {
            return Err(self.err(&raw.duration, "duration must be positive"));
        }
        let mut nodes: Vec<NodeDef> = Vec::new();
        let mut deployments: Vec<String> = Vec::new();
        for n in &raw.node {
            let id = NodeId::new(n.id.get_ref()).map_err(|e| self.err(&n.id, e))?;
            if nodes.iter().any(|x| x.id == id) {
                return Err(self.err(&n.id, format!("node {id} is defined twice")));
            }
            let role = n.role.get_ref().parse::<Role>().map_err(|e| self.err(&n.role, e))?;
            let mut groups = Vec::new();
            for g in &n.groups {
                match Group::parse(g.get_ref()) {
                    Ok(Group::Named(name)) => groups.push(name),
                    Ok(_) => return Err(self.err(g, "built-in groups cannot be joined")),
                    Err(e) => return Err(self.err(g, e)),
                }
            }
            let subscribe = n
                .subscribe
                .iter()
                .map(|s| TopicPattern::new(s.get_ref()).map_err(|e| self.err(s, e)))
                .collect::<Result<_, _>>()?;
            let deployment = match &n.deployment {
                Some(d) => {
                    let name = d.get_ref();
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    {
                        return Err(
                            self.err(d, "a deployment's name is letters, digits, `-` and `_`")
                        );
                    }
                    match deployments.iter().position(|x: &String| x == name) {
                        Some(i) => i,
                        None => {
                            deployments.push(name.clone());
                            deployments.len() - 1
                        }
                    }
                }
                None => match deployments.iter().position(|x| x == "main") {
                    Some(i) => i,
                    None => {
                        deployments.push("main".into());
                        deployments.len() - 1
                    }
                },
            };
            let area = match &n.area {
                Some(a) => {
                    NodeId::new(a.get_ref()).map_err(|_| {
                        self.err(a, "an area is named like a node: a-z, 0-9 and -, 1 to 63")
                    })?;
                    a.get_ref().clone()
                }
                None => String::new(),
            };
            nodes.push(NodeDef { id, role, groups, subscribe, deployment, border: n.border, area });
        }
        if nodes.is_empty() {
            return Err((self.fail)(None, "a scenario needs at least one [[node]]".into()));
        }
        if deployments.len() > 1
            && let Some(a) = raw.node.iter().find_map(|n| n.area.as_ref())
        {
            return Err(self.err(
                a,
                "areas and several deployments together are not built yet (relaymesh refuses `area` beside [[federation]])",
            ));
        }
        let federation = self.federation(&raw, deployments.len())?;
        let deployments = deployment_defs(&deployments, &nodes);

        let mut links: Vec<LinkDef> = Vec::new();
        for l in &raw.link {
            let a = self.node(&nodes, &l.a)?;
            let b = self.node(&nodes, &l.b)?;
            if a == b {
                return Err(self.err(&l.b, format!("a link from {} to itself", nodes[a].id)));
            }
            let medium =
                l.medium.get_ref().parse::<Medium>().map_err(|e| self.err(&l.medium, e))?;
            let (da, db) = (nodes[a].deployment, nodes[b].deployment);
            if da != db
                && let Some(x) = [a, b].into_iter().find(|x| !nodes[*x].border)
            {
                return Err(self.err(
                    &l.a,
                    format!(
                        "a link between deployments {} and {}: {} is not a border (border = true)",
                        deployments[da].name, deployments[db].name, nodes[x].id
                    ),
                ));
            }
            let id = format!("{}~{}/{}", nodes[a].id, nodes[b].id, medium);
            let twin = format!("{}~{}/{}", nodes[b].id, nodes[a].id, medium);
            if links.iter().any(|x| x.id == id || x.id == twin) {
                return Err(self.err(&l.a, format!("link {id} is defined twice")));
            }
            let bandwidth_bps = match &l.bandwidth {
                Some(s) => parse_rate(s.get_ref()).map_err(|e| self.err(s, e))?,
                None => default_bandwidth(medium),
            };
            if bandwidth_bps == 0 {
                return Err(self
                    .err(l.bandwidth.as_ref().unwrap_or(&l.medium), "bandwidth must be positive"));
            }
            let loss = l.loss.as_ref().map(|s| self.ratio(s, "loss")).transpose()?.unwrap_or(0.0);
            let burst = match &l.loss_burst {
                Some(s) if *s.get_ref() < 1.0 => {
                    return Err(self.err(s, "loss_burst is a mean burst length, at least 1"));
                }
                Some(s) => *s.get_ref(),
                None => 1.0,
            };
            let mtu = match &l.mtu {
                Some(s) if *s.get_ref() < 1200 => {
                    return Err(self.err(s, "QUIC needs an MTU of at least 1200"));
                }
                Some(s) => *s.get_ref(),
                None => 1400,
            };
            let queue_bytes = match &l.queue {
                Some(s) => parse_size(s.get_ref()).map_err(|e| self.err(s, e))?,
                None => (bandwidth_bps / 8).max(64 * 1024),
            };
            let params = LinkParams {
                delay: self.opt_duration(&l.delay)?.unwrap_or_else(|| default_delay(medium)),
                jitter: self.opt_duration(&l.jitter)?.unwrap_or_default(),
                bandwidth_bps,
                loss,
                burst,
                mtu,
                queue_bytes,
            };
            links.push(LinkDef { id, a, b, medium, params });
        }

        let mut traffic = Vec::new();
        for t in &raw.traffic {
            let from = self.node(&nodes, &t.from)?;
            let to = Address::parse(t.to.get_ref()).map_err(|e| self.err(&t.to, e))?;
            if let Address::Node(n) = &to
                && !nodes.iter().any(|x| &x.id == n)
            {
                return Err(self.err(&t.to, format!("unknown node {n}")));
            }
            let precedence = match &t.precedence {
                Some(p) => p.get_ref().parse().map_err(|e| self.err(p, e))?,
                None => Precedence::Routine,
            };
            let interval = match (&t.every, &t.rate) {
                (Some(e), None) => self.duration(e)?,
                (None, Some(r)) if *r.get_ref() > 0.0 => Duration::from_secs_f64(1.0 / r.get_ref()),
                (None, Some(r)) => return Err(self.err(r, "rate must be positive")),
                (Some(e), Some(_)) => return Err(self.err(e, "give every or rate, not both")),
                (None, None) => return Err(self.err(&t.from, "traffic needs every or rate")),
            };
            if interval.is_zero() {
                return Err(
                    self.err(t.every.as_ref().unwrap_or(&t.from), "interval must be positive")
                );
            }
            let start = self.opt_duration(&t.start)?.unwrap_or_default();
            let stop = self.opt_duration(&t.stop)?.unwrap_or(duration);
            let content = match &t.content {
                None => Content::Random,
                Some(c) => match c.get_ref().as_str() {
                    "random" => Content::Random,
                    "text" => Content::Text,
                    "cap" => Content::Cap,
                    "object" => Content::Object,
                    other => {
                        return Err(
                            self.err(c, format!("content {other:?}: random, text, cap or object"))
                        );
                    }
                },
            };
            let size = match &t.size {
                None => 256,
                Some(sz) => {
                    let n = match sz.get_ref() {
                        Size::Bytes(n) => *n,
                        Size::Text(text) => parse_size(text).map_err(|e| self.err(sz, e))?,
                    };
                    if n > 1 << 30 {
                        return Err(self.err(sz, format!("size {n}: at most 1 GiB")));
                    }
                    n
                }
            };
            if let (Content::Object, Some(k)) = (content, &t.key) {
                return Err(self.err(k, "objects carry no latest-value key"));
            }
            let name = match &t.name {
                None => None,
                Some(n) if n.get_ref().is_empty() => {
                    return Err(self.err(n, "a flow's name may not be empty"));
                }
                Some(n)
                    if traffic
                        .iter()
                        .any(|x: &TrafficDef| x.name.as_ref() == Some(n.get_ref())) =>
                {
                    return Err(self.err(n, format!("two flows are named {:?}", n.get_ref())));
                }
                Some(n) => Some(n.get_ref().clone()),
            };
            let key = match &t.key {
                None => None,
                Some(k) => {
                    let key = k.get_ref().replace("{from}", nodes[from].id.as_str());
                    if key.contains('{') || key.contains('}') {
                        return Err(self.err(
                            k,
                            format!("key {:?}: the only placeholder is {{from}}", k.get_ref()),
                        ));
                    }
                    check_key(&key).map_err(|e| self.err(k, e))?;
                    Some(key)
                }
            };
            traffic.push(TrafficDef {
                name,
                from,
                to,
                precedence,
                interval,
                size: size as usize,
                start,
                stop: stop.min(duration),
                lifetime: self.opt_duration(&t.lifetime)?.unwrap_or(Duration::from_secs(3600)),
                content,
                key,
            });
        }

        let mut events = Vec::new();
        for e in &raw.event {
            let at = self.duration(&e.at)?;
            let link = |this: &Self| -> Result<usize, ScenarioError> {
                let l = e.link.as_ref().ok_or_else(|| {
                    this.err(&e.action, "this action needs link = \"a~b/medium\"")
                })?;
                links
                    .iter()
                    .position(|x| {
                        &x.id == l.get_ref() || reversed(&x.id).as_deref() == Some(l.get_ref())
                    })
                    .ok_or_else(|| {
                        this.err(
                            l,
                            format!("unknown link {:?} (links are named a~b/medium)", l.get_ref()),
                        )
                    })
            };
            let node = |this: &Self| -> Result<usize, ScenarioError> {
                let n = e
                    .node
                    .as_ref()
                    .ok_or_else(|| this.err(&e.action, "this action needs node = \"<id>\""))?;
                this.node(&nodes, n)
            };
            let action = match e.action.get_ref().as_str() {
                "link_down" => Action::LinkDown(link(self)?),
                "link_up" => Action::LinkUp(link(self)?),
                "degrade" => Action::Degrade {
                    link: link(self)?,
                    delay: self.opt_duration(&e.delay)?,
                    jitter: self.opt_duration(&e.jitter)?,
                    bandwidth_bps: e
                        .bandwidth
                        .as_ref()
                        .map(|s| parse_rate(s.get_ref()).map_err(|x| self.err(s, x)))
                        .transpose()?,
                    loss: e.loss.as_ref().map(|s| self.ratio(s, "loss")).transpose()?,
                    lasting: self.opt_duration(&e.lasting)?,
                },
                "node_crash" => Action::NodeCrash(node(self)?),
                "node_restart" => Action::NodeRestart(node(self)?),
                "partition" => {
                    let list = e
                        .nodes
                        .as_ref()
                        .ok_or_else(|| self.err(&e.action, "partition needs nodes = [...]"))?;
                    Action::Partition(
                        list.iter().map(|n| self.node(&nodes, n)).collect::<Result<_, _>>()?,
                    )
                }
                "heal" => Action::Heal,
                "random_failures" => {
                    let need = |s: &Option<Spanned<String>>, what: &str| {
                        s.as_ref()
                            .ok_or_else(|| {
                                self.err(&e.action, format!("random_failures needs {what}"))
                            })
                            .and_then(|s| self.duration(s))
                    };
                    let targets = match e.targets.as_ref().map(|t| t.get_ref().as_str()) {
                        None | Some("all") => Targets::All,
                        Some("links") => Targets::Links,
                        Some("nodes") => Targets::Nodes,
                        Some(other) => {
                            let t = e.targets.as_ref().unwrap_or(&e.action);
                            return Err(self.err(
                                t,
                                format!("targets {other:?}: expected links, nodes or all"),
                            ));
                        }
                    };
                    Action::RandomFailures {
                        mtbf: need(&e.mtbf, "mtbf")?,
                        mttr: need(&e.mttr, "mttr")?,
                        until: self.opt_duration(&e.until)?.unwrap_or(duration),
                        targets,
                    }
                }
                "join" | "leave" => {
                    let g = e.group.as_ref().ok_or_else(|| {
                        self.err(&e.action, "this action needs group = \"<name>\"")
                    })?;
                    let name = match Group::parse(g.get_ref()) {
                        Ok(Group::Named(name)) => name,
                        Ok(_) => {
                            return Err(self.err(g, "built-in groups cannot be joined or left"));
                        }
                        Err(x) => return Err(self.err(g, x)),
                    };
                    let declared = nodes.iter().any(|n| n.groups.contains(&name));
                    let addressed = traffic
                        .iter()
                        .any(|t| matches!(&t.to, Address::Group(Group::Named(x)) if *x == name));
                    if !declared && !addressed {
                        return Err(self.err(
                            g,
                            format!("unknown group {name:?}: no node declares it and no traffic addresses it"),
                        ));
                    }
                    let node = node(self)?;
                    let change = if e.action.get_ref() == "join" {
                        Change::Join(name)
                    } else {
                        Change::Leave(name)
                    };
                    Action::Membership { node, change }
                }
                "subscribe" | "unsubscribe" => {
                    let t = e.topic.as_ref().ok_or_else(|| {
                        self.err(&e.action, "this action needs topic = \"<pattern>\"")
                    })?;
                    let pattern = TopicPattern::new(t.get_ref()).map_err(|x| self.err(t, x))?;
                    let node = node(self)?;
                    let pattern = pattern.as_str().to_owned();
                    let change = if e.action.get_ref() == "subscribe" {
                        Change::Subscribe(pattern)
                    } else {
                        Change::Unsubscribe(pattern)
                    };
                    Action::Membership { node, change }
                }
                "cancel" => {
                    if let Some(r) = e.reason.as_ref().filter(|r| r.get_ref().len() > 1024) {
                        return Err(self.err(r, "a reason is at most 1024 bytes"));
                    }
                    Action::Cancel {
                        flow: self.flow(&traffic, e)?,
                        message: self.pick(e)?,
                        reason: e.reason.as_ref().map(|r| r.get_ref().clone()).unwrap_or_default(),
                    }
                }
                "replace" => {
                    if let Some(r) = &e.reason {
                        return Err(self.err(r, "a replacement takes no reason (cancel does)"));
                    }
                    Action::Replace { flow: self.flow(&traffic, e)?, message: self.pick(e)? }
                }
                other => {
                    return Err(self.err(
                        &e.action,
                        format!("unknown action {other:?}: expected link_down, link_up, degrade, node_crash, node_restart, partition, heal, random_failures, join, leave, subscribe, unsubscribe, cancel or replace"),
                    ));
                }
            };
            events.push(EventDef { at, action });
        }
        events.sort_by_key(|e| e.at);

        let mut media = BTreeMap::new();
        for (name, section) in raw.media {
            let medium: Medium = name.parse().map_err(|e| self.err(&section, e))?;
            let cfg = medium_config(&format!("media.{name}"), medium, section.get_ref().clone())
                .map_err(|(key, why)| self.err(&section, format!("{key}: {why}")))?;
            media.insert(medium, cfg);
        }

        let advert_lifetime = match raw.limits.as_ref().and_then(|l| l.advert_lifetime.as_ref()) {
            Some(s) => match self.duration(s)? {
                d if d < Duration::from_secs(3) => {
                    return Err(self.err(s, "advert_lifetime must be at least 3s"));
                }
                d => Some(d),
            },
            None => None,
        };

        let disk_sync = match raw.limits.as_ref().and_then(|l| l.disk_sync.as_ref()) {
            Some(s) => match self.duration(s)? {
                d if d > Duration::from_secs(10) => {
                    return Err(self.err(s, "disk_sync must be at most 10s"));
                }
                d => d,
            },
            None => Duration::ZERO,
        };

        let mut expect = Expect::default();
        if let Some(x) = raw.expect {
            expect.lost = x.lost;
            expect.duplicates = x.duplicates;
            expect.starved = x.starved;
            for (p, r) in x.delivery_ratio {
                let prec: Precedence = p
                    .parse()
                    .map_err(|e| (self.fail)(None, format!("expect.delivery_ratio: {e}")))?;
                expect.delivery_ratio.insert(prec, r);
            }
            for (p, d) in x.latency_p99 {
                let prec: Precedence =
                    p.parse().map_err(|e| (self.fail)(None, format!("expect.latency_p99: {e}")))?;
                let d = parse_duration(&d)
                    .map_err(|e| (self.fail)(None, format!("expect.latency_p99.{p}: {e}")))?;
                expect.latency_p99.insert(prec, d);
            }
            for (p, n) in x.overdue {
                let prec: Precedence =
                    p.parse().map_err(|e| (self.fail)(None, format!("expect.overdue: {e}")))?;
                expect.overdue.insert(prec, n);
            }
        }
        // Applied to a relay's defaults (its `max_lifetime` among them), as a node would.
        let me = NodeId::new("scenario").map_err(|e| (self.fail)(None, e.to_string()))?;
        let mut defaults = CoreConfig::new(me, Role::Relay);
        if let Some(section) = raw.objectives {
            apply_objectives("objectives", section.get_ref(), &mut defaults)
                .map_err(|(key, why)| self.err(&section, format!("{key}: {why}")))?;
        }
        let objectives = Objectives::from(defaults);

        Ok(Scenario {
            name: raw.name,
            description: raw.description,
            duration,
            seed: raw.seed,
            nodes,
            links,
            traffic,
            events,
            media,
            advert_lifetime,
            disk_sync,
            check_invariants: cfg!(debug_assertions),
            expect,
            objectives,
            deployments,
            federation,
        })
    }

    /// `[federation]`: required when nodes belong to several deployments.
    fn federation(
        &self,
        raw: &Raw,
        deployments: usize,
    ) -> Result<Option<FederationDef>, ScenarioError> {
        let Some(f) = &raw.federation else {
            if deployments > 1 {
                return Err((self.fail)(
                    None,
                    "nodes of several deployments: say in [federation] what crosses between them"
                        .into(),
                ));
            }
            return Ok(None);
        };
        let inner = f.get_ref();
        if inner.to.is_empty() {
            return Err(self.err(f, "[federation] to: name the addresses that may cross"));
        }
        for t in &inner.to {
            relaymesh::core::policy::AddressPattern::parse(t.get_ref())
                .map_err(|e| self.err(t, e))?;
        }
        let mut precedences = [inner.precedences.is_none(); 4];
        for p in inner.precedences.iter().flatten() {
            let prec: Precedence = p.get_ref().parse().map_err(|e| self.err(p, e))?;
            precedences[prec.index()] = true;
        }
        let mut roles = BTreeMap::new();
        for (theirs, ours) in &inner.roles {
            let t: Role = theirs.parse().map_err(|e| self.err(ours, format!("{theirs}: {e}")))?;
            roles.insert(t, ours.get_ref().parse::<Role>().map_err(|e| self.err(ours, e))?);
        }
        if roles.is_empty() {
            return Err(self.err(f, "[federation] roles: map the roles that may send across"));
        }
        Ok(Some(FederationDef {
            to: inner.to.iter().map(|t| t.get_ref().clone()).collect(),
            precedences,
            roles,
        }))
    }
}

/// Each deployment with the ids of its nodes, as patterns.
fn deployment_defs(names: &[String], nodes: &[NodeDef]) -> Vec<DeploymentDef> {
    use relaymesh::pki::NodePattern;
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let prefix = format!("{name}-");
            let own = nodes.iter().filter(|n| n.deployment == i);
            let others = nodes.iter().filter(|n| n.deployment != i);
            let nodes = if own.clone().all(|n| n.id.as_str().starts_with(&prefix))
                && !others.clone().any(|n| n.id.as_str().starts_with(&prefix))
            {
                vec![NodePattern::parse(&format!("{prefix}*"))]
            } else {
                own.map(|n| NodePattern::parse(n.id.as_str())).collect()
            };
            let nodes = nodes
                .into_iter()
                .map(|p| p.unwrap_or_else(|e| unreachable!("a node id is a pattern: {e}")))
                .collect();
            DeploymentDef { name: name.clone(), nodes }
        })
        .collect()
}

fn reversed(id: &str) -> Option<String> {
    let (pair, medium) = id.split_once('/')?;
    let (a, b) = pair.split_once('~')?;
    Some(format!("{b}~{a}/{medium}"))
}

fn default_bandwidth(m: Medium) -> u64 {
    match m {
        Medium::Satellite => 1_000_000,
        Medium::Wireless => 10_000_000,
        Medium::Public => 50_000_000,
    }
}

fn default_delay(m: Medium) -> Duration {
    match m {
        Medium::Satellite => Duration::from_millis(300),
        Medium::Wireless => Duration::from_millis(10),
        Medium::Public => Duration::from_millis(20),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
name = "t"
duration = "10m"

[[node]]
id = "a"
role = "command"

[[node]]
id = "b"
role = "township"

[[link]]
a = "a"
b = "b"
medium = "wireless"

[[event]]
at = "1m"
action = "link_down"
link = "a~b/wireless"
"#;

    fn check(text: &str, line: usize, reason: &str) {
        let e = parse(text, "s.toml").unwrap_err();
        assert_eq!(e.file, "s.toml");
        assert_eq!(e.line, Some(line), "{e}");
        assert!(e.reason.contains(reason), "{e}");
    }

    #[test]
    fn deployments_need_a_federation_and_links_between_them_need_borders() {
        let two =
            SMALL.replace("role = \"township\"", "role = \"township\"\ndeployment = \"city\"");
        let e = parse(&two, "s.toml").unwrap_err();
        assert!(e.reason.contains("say in [federation] what crosses"), "{e}");
        let fed = format!(
            "{two}\n[federation]\nto = [\"node:*\"]\nroles = {{ command = \"township\" }}\n"
        );
        check(&fed, 15, "a link between deployments main and city: a is not a border");
        let borders = fed
            .replace("role = \"command\"", "role = \"command\"\nborder = true")
            .replace("deployment = \"city\"", "deployment = \"city\"\nborder = true");
        let s = parse(&borders, "s.toml").unwrap();
        let names: Vec<&str> = s.deployments.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["main", "city"]);
        // Ids that do not start with the deployment's name are named one by one.
        assert_eq!(s.deployments[1].nodes, vec![relaymesh::pki::NodePattern::parse("b").unwrap()]);
        let f = s.federation.unwrap();
        assert_eq!(f.precedences, [true; 4]);
        assert_eq!(f.roles.get(&Role::Command), Some(&Role::Township));
        check(&borders.replace("to = [\"node:*\"]", "to = [\"nowhere\"]"), 27, "invalid address");
    }

    #[test]
    fn a_small_scenario_parses() {
        let s = parse(SMALL, "s.toml").unwrap();
        assert_eq!(s.nodes.len(), 2);
        assert_eq!(s.links[0].id, "a~b/wireless");
        assert!(matches!(s.events[0].action, Action::LinkDown(0)));
    }

    #[test]
    fn bad_scenarios_are_refused_with_file_line_and_reason() {
        check(&SMALL.replace("b = \"b\"", "b = \"c\""), 15, "unknown node \"c\"");
        check(&SMALL.replace("b = \"b\"", "b = \"a\""), 15, "link from a to itself");
        check(&SMALL.replace("at = \"1m\"", "at = \"1 fortnight\""), 19, "unknown time unit");
        check(
            &SMALL.replace("action = \"link_down\"", "action = \"explode\""),
            20,
            "unknown action \"explode\"",
        );
        check(
            &SMALL.replace("link = \"a~b/wireless\"", "link = \"a~b/satellite\""),
            21,
            "unknown link",
        );
        check(&SMALL.replace("duration = \"10m\"", "duration = \"ten\""), 3, "expected a number");
        check(&SMALL.replace("medium = \"wireless\"", "medium = \"pigeon\""), 16, "invalid medium");
    }

    #[test]
    fn every_built_in_scenario_parses() {
        for (name, _) in BUILT_IN {
            built_in(name).unwrap().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
