//! `node.toml`: parsed once, checked completely, with errors that name the file, the key and
//! the reason. Relative paths are resolved against the directory of the configuration file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::transport::{Congestion, TransportSettings};
use crate::core::config::{AddressObjectives, CoreConfig, MediumConfig};
use crate::core::policy::{AddressPattern, Policy, Rule};
use crate::core::types::{Group, Medium, NodeId, Precedence, Role};
use crate::core::wire::compact::Dialect;
use crate::units::{parse_duration, parse_rate, parse_size};

/// A configuration problem: which file, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

/// One `[[listen]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub medium: Medium,
}

/// One `[[peer]]` entry: a link this node dials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub node: NodeId,
    pub addr: SocketAddr,
    pub medium: Medium,
    /// The federated deployment the peer belongs to (`deployment = "city"`), if not this one.
    pub deployment: Option<String>,
}

/// One `[[federation]]` entry's files and node ids (its policy is in `CoreConfig::federation`).
#[derive(Clone, Debug, PartialEq)]
pub struct FederationFiles {
    pub deployment: String,
    /// Its CA certificate.
    pub ca: PathBuf,
    /// Its revocation list, loaded at start and whenever the file changes.
    pub crl: Option<PathBuf>,
    pub nodes: Vec<crate::pki::NodePattern>,
    /// This node is one of its borders.
    pub border: bool,
}

/// Everything `relaymesh run` needs.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub core: CoreConfig,
    pub data_dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Revocation list to load at start and watch (default: `crl.pem` beside the CA
    /// certificate, where `relaymesh pki revoke` writes it).
    pub crl: Option<PathBuf>,
    /// How long a peer may leave a frame half-sent before it is cut off.
    pub stall_timeout: Duration,
    pub api: SocketAddr,
    /// Bearer token the local API requires (mandatory when `api` is not loopback, unless
    /// `api_users` is set).
    pub api_token: Option<String>,
    /// A file of per-user API tokens (`name token` a line), re-read when it changes.
    pub api_users: Option<PathBuf>,
    /// How long a console login lasts.
    pub api_session: Duration,
    /// Also serve the API and console over TLS: at this address, with this certificate chain
    /// and key (PEM).
    pub api_tls: Option<ApiTls>,
    pub listen: Vec<Listen>,
    pub peers: Vec<Peer>,
    pub transport: BTreeMap<Medium, TransportSettings>,
    /// Group commit: at most this many events per store commit.
    pub max_batch: usize,
    /// When batches are committed.
    pub commit: super::driver::CommitPolicy,
    /// Bytes of page cache for the store.
    pub store_cache: usize,
    /// The compact dialect announced (`[wire] compact_offers`, default on, and
    /// `[wire] compact_dialect`, default the newest): peers that announce it too get compact
    /// offers in the newest dialect both take. `None`: none announced.
    pub compact: Option<Dialect>,
    /// `[gateway.cap]`, `[gateway.mqtt]`.
    pub gateways: crate::gateway::config::Gateways,
    /// `[[federation]]`: the other deployments' CAs and revocation lists.
    pub federation: Vec<FederationFiles>,
}

impl RelayConfig {
    pub fn transport(&self, m: Medium) -> TransportSettings {
        self.transport.get(&m).cloned().unwrap_or_else(|| TransportSettings::default_for(m))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    node: String,
    role: String,
    data_dir: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    crl: Option<PathBuf>,
    #[serde(default = "default_api")]
    api: String,
    api_token: Option<String>,
    api_users: Option<PathBuf>,
    api_session: Option<String>,
    api_tls: Option<String>,
    api_tls_cert: Option<PathBuf>,
    api_tls_key: Option<PathBuf>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    area: String,
    #[serde(default)]
    listen: Vec<RawListen>,
    #[serde(default)]
    peer: Vec<RawPeer>,
    #[serde(default)]
    media: BTreeMap<String, MediumSection>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    wire: RawWire,
    #[serde(default)]
    objectives: ObjectivesSection,
    #[serde(default)]
    gateway: crate::gateway::config::RawGateways,
    #[serde(default)]
    federation: Vec<RawFederation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    deployment: String,
    ca: PathBuf,
    crl: Option<PathBuf>,
    nodes: Vec<String>,
    borders: Vec<String>,
    to: Vec<String>,
    precedences: Option<Vec<String>>,
    roles: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWire {
    compact_offers: Option<bool>,
    compact_dialect: Option<u32>,
}

/// The API and console over TLS (`api_tls`, `api_tls_cert`, `api_tls_key`).
#[derive(Clone, Debug)]
pub struct ApiTls {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How long a console login lasts unless `api_session` says otherwise.
pub const DEFAULT_API_SESSION: Duration = Duration::from_secs(8 * 3600);

fn default_api() -> String {
    "127.0.0.1:7480".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    addr: String,
    medium: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    node: String,
    addr: String,
    medium: String,
    deployment: Option<String>,
}

/// The `[objectives]` table, shared with the simulator's scenario files.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ObjectivesSection {
    flash: Option<String>,
    immediate: Option<String>,
    priority: Option<String>,
    routine: Option<String>,
    notify: Option<String>,
    escalate: Option<bool>,
    #[serde(default)]
    address: Vec<AddressObjectivesSection>,
}

/// One `[[objectives.address]]` entry: objectives for the messages to some addresses.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct AddressObjectivesSection {
    to: String,
    flash: Option<String>,
    immediate: Option<String>,
    priority: Option<String>,
    routine: Option<String>,
}

/// The objectives of each precedence named in a table (FLASH last, like `Precedence::index`).
fn by_precedence(
    key: &str,
    [routine, priority, immediate, flash]: [&Option<String>; 4],
    max_lifetime: Duration,
) -> Result<[Option<Duration>; 4], Fail> {
    let mut out = [None; 4];
    for (p, s) in
        Precedence::DESCENDING.into_iter().rev().zip([routine, priority, immediate, flash])
    {
        let Some(s) = s else { continue };
        let key = format!("{key}.{}", p.as_str());
        let d = field(&key, parse_duration(s))?;
        if d.is_zero() || d > max_lifetime {
            return Err((
                key,
                format!(
                    "{s}: an objective must be longer than 0s and at most limits.max_lifetime ({})",
                    humantime::format_duration(max_lifetime)
                ),
            ));
        }
        out[p.index()] = Some(d);
    }
    Ok(out)
}

/// Applies an `[objectives]` table (named `key` in errors) to a node's configuration; its
/// `max_lifetime` must be set already.
pub fn apply_objectives(
    key: &str,
    o: &ObjectivesSection,
    core: &mut CoreConfig,
) -> Result<(), (String, String)> {
    let own = [&o.routine, &o.priority, &o.immediate, &o.flash];
    for (i, d) in by_precedence(key, own, core.max_lifetime)?.into_iter().enumerate() {
        if let Some(d) = d {
            core.objectives[i] = d;
        }
    }
    if let Some(s) = &o.notify {
        core.notify_overdue = match s.as_str() {
            "" | "none" => None,
            a => Some(field(&format!("{key}.notify"), crate::core::Address::parse(a))?),
        };
    }
    if let Some(e) = o.escalate {
        core.escalate = e;
    }
    core.address_objectives = Vec::new();
    for (i, a) in o.address.iter().enumerate() {
        let key = format!("{key}.address[{i}]");
        let to = field(&format!("{key}.to"), AddressPattern::parse(&a.to))?;
        let named = [&a.routine, &a.priority, &a.immediate, &a.flash];
        let objectives = by_precedence(&key, named, core.max_lifetime)?;
        if objectives.iter().all(Option::is_none) {
            return Err((key, "names no precedence (flash, immediate, priority, routine)".into()));
        }
        core.address_objectives.push(AddressObjectives { to, objectives });
    }
    Ok(())
}

/// A `[media.<medium>]` table, shared with the simulator's scenario files.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct MediumSection {
    cost: Option<u32>,
    min_precedence: Option<String>,
    strict: Option<bool>,
    probe_interval: Option<String>,
    probe_misses: Option<u32>,
    window: Option<String>,
    rate: Option<String>,
    ack_timeout: Option<String>,
    bandwidth: Option<String>,
    initial_rtt: Option<String>,
    idle_timeout: Option<String>,
    keep_alive: Option<String>,
    congestion: Option<String>,
    initial_window: Option<String>,
    pace: Option<f64>,
    control_share: Option<f64>,
    compress: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    max_bytes: Option<String>,
    #[serde(default)]
    admit: BTreeMap<String, f64>,
    max_batch: Option<usize>,
    commit_after: Option<String>,
    cache: Option<String>,
    commit_within: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default = "yes")]
    defaults: bool,
    #[serde(default)]
    rule: Vec<RawRule>,
    /// Roles whose nodes may cancel and replace other nodes' messages.
    #[serde(default)]
    override_roles: Vec<String>,
}

impl Default for RawPolicy {
    fn default() -> RawPolicy {
        RawPolicy { defaults: true, rule: Vec::new(), override_roles: Vec::new() }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    action: String,
    #[serde(default)]
    from_role: Vec<String>,
    #[serde(default)]
    from_node: Vec<String>,
    to: String,
    precedence: Option<String>,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_payload: Option<String>,
    max_object: Option<String>,
    max_lifetime: Option<String>,
    max_hops: Option<u32>,
    inbox_keep: Option<u64>,
    status_keep: Option<String>,
    advert_lifetime: Option<String>,
    peer_frame_rate: Option<u32>,
    peer_store_share: Option<f64>,
    stall_timeout: Option<String>,
}

/// Default of `limits.stall_timeout`: a 1 MiB frame over 300 kbit/s satellite takes 28 s.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<RelayConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        key: "-".into(),
        reason: e.to_string(),
    })?;
    parse(&text, path)
}

/// Parses configuration text; `path` names the file in errors and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<RelayConfig, ConfigError> {
    let file = path.display().to_string();
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let err =
        |key: &str, reason: String| ConfigError { file: file.clone(), key: key.into(), reason };
    let de = toml::Deserializer::parse(text).map_err(|e| err("-", syntax(text, &e)))?;
    let raw: Raw = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        err(if key == "." { "-" } else { &key }, syntax(text, &inner))
    })?;
    build(raw, &base).map_err(|(key, reason)| err(&key, reason))
}

/// A toml error as one line, with its line number when known.
fn syntax(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{msg} (line {line})")
        }
        None => msg,
    }
}

type Fail = (String, String);

fn field<T, E: std::fmt::Display>(key: &str, r: Result<T, E>) -> Result<T, Fail> {
    r.map_err(|e| (key.to_owned(), e.to_string()))
}

fn build(raw: Raw, base: &Path) -> Result<RelayConfig, Fail> {
    let node = field("node", NodeId::new(&raw.node))?;
    let role: Role = field("role", raw.role.parse())?;
    let mut core = CoreConfig::new(node, role);
    for (i, g) in raw.groups.iter().enumerate() {
        match field(&format!("groups[{i}]"), Group::parse(g))? {
            Group::Named(_) => {}
            _ => {
                return Err((
                    format!("groups[{i}]"),
                    format!("{g:?} is built in, not a group to join"),
                ));
            }
        }
    }
    core.groups = raw.groups;
    if !raw.area.is_empty() {
        field(
            "area",
            NodeId::new(&raw.area).map_err(|_| {
                format!("{:?}: an area is named like a node: a-z, 0-9 and -, 1 to 63", raw.area)
            }),
        )?;
    }
    core.area = raw.area;
    let mut transport = BTreeMap::new();
    for (name, m) in raw.media {
        let key = format!("media.{name}");
        let medium: Medium = field(&key, name.parse())?;
        let (mc, ts) = medium_config(&key, medium, m)?;
        core.media.insert(medium, mc);
        transport.insert(medium, ts);
    }
    if let Some(s) = &raw.store.max_bytes {
        core.limits.max_bytes = field("store.max_bytes", parse_size(s))?;
    }
    for (p, ratio) in raw.store.admit {
        let key = format!("store.admit.{p}");
        let prec: Precedence = field(&key, p.parse())?;
        if !(0.0..=1.0).contains(&ratio) {
            return Err((key, format!("{ratio} is not between 0 and 1")));
        }
        core.limits.admit_ratio[prec.index()] = ratio;
    }
    let l = raw.limits;
    if let Some(s) = l.max_payload {
        core.max_payload = field("limits.max_payload", parse_size(&s))? as usize;
    }
    if let Some(s) = l.max_object {
        core.max_object = field("limits.max_object", parse_size(&s))?;
    }
    if let Some(s) = l.max_lifetime {
        core.max_lifetime = field("limits.max_lifetime", parse_duration(&s))?;
    }
    let gateways = crate::gateway::config::build(raw.gateway, base, &core)?;
    let dialect = match raw.wire.compact_dialect {
        None => Dialect::NEWEST,
        Some(n) => Dialect::from_number(n).ok_or_else(|| {
            ("wire.compact_dialect".to_owned(), format!("{n} is not a compact dialect (1 to 3)"))
        })?,
    };
    let compact = raw.wire.compact_offers.unwrap_or(true).then_some(dialect);
    if let Some(h) = l.max_hops {
        core.max_hops = h;
    }
    if let Some(k) = l.inbox_keep {
        core.inbox_keep = k;
    }
    if let Some(s) = l.status_keep {
        core.status_keep = field("limits.status_keep", parse_duration(&s))?;
    }
    if let Some(s) = l.advert_lifetime {
        core.advert_lifetime = field("limits.advert_lifetime", parse_duration(&s))?;
    }
    if let Some(r) = l.peer_frame_rate {
        if r == 0 {
            return Err(("limits.peer_frame_rate".into(), "must be at least 1".into()));
        }
        core.peer_frame_rate = r;
    }
    if let Some(s) = l.peer_store_share {
        if !(s > 0.0 && s <= 1.0) {
            return Err(("limits.peer_store_share".into(), format!("{s} is not in (0, 1]")));
        }
        core.peer_store_share = s;
    }
    apply_objectives("objectives", &raw.objectives, &mut core)?;
    let stall_timeout = match l.stall_timeout {
        Some(s) => field("limits.stall_timeout", parse_duration(&s))?,
        None => DEFAULT_STALL_TIMEOUT,
    };
    let mut rules = Vec::new();
    for (i, r) in raw.policy.rule.into_iter().enumerate() {
        rules.push(rule(&format!("policy.rule[{i}]"), r)?);
    }
    let override_roles = raw
        .policy
        .override_roles
        .iter()
        .map(|r| field("policy.override_roles", r.parse::<Role>()))
        .collect::<Result<Vec<_>, _>>()?;
    core.policy = if raw.policy.defaults {
        Policy::with_defaults(rules)
    } else {
        Policy { rules, override_roles: Vec::new() }
    };
    core.policy.override_roles = override_roles;

    let api: SocketAddr = field("api", raw.api.parse())?;
    if !api.ip().is_loopback() && raw.api_token.is_none() && raw.api_users.is_none() {
        return Err((
            "api".into(),
            format!(
                "{api} is not a loopback address: set api_token (or api_users) to protect the API"
            ),
        ));
    }
    let api_session = match &raw.api_session {
        Some(s) => field("api_session", parse_duration(s))?,
        None => DEFAULT_API_SESSION,
    };
    if api_session.is_zero() {
        return Err(("api_session".into(), "a console login must last longer than 0s".into()));
    }
    let api_tls = match (raw.api_tls, raw.api_tls_cert, raw.api_tls_key) {
        (Some(a), Some(c), Some(k)) => {
            let addr: SocketAddr = field("api_tls", a.parse())?;
            if !addr.ip().is_loopback() && raw.api_token.is_none() && raw.api_users.is_none() {
                return Err((
                    "api_tls".into(),
                    format!("{addr} is not a loopback address: set api_token or api_users"),
                ));
            }
            if addr == api {
                return Err(("api_tls".into(), format!("{addr} is the plain API's address")));
            }
            Some(ApiTls { addr, cert: base.join(c), key: base.join(k) })
        }
        (None, None, None) => None,
        (a, c, k) => {
            let missing = [("api_tls", a.is_none()), ("api_tls_cert", c.is_none())]
                .into_iter()
                .chain([("api_tls_key", k.is_none())])
                .filter(|(_, m)| *m)
                .map(|(n, _)| n)
                .collect::<Vec<_>>();
            return Err((
                missing[0].into(),
                "api_tls, api_tls_cert and api_tls_key go together".into(),
            ));
        }
    };
    let mut listen = Vec::new();
    for (i, l) in raw.listen.into_iter().enumerate() {
        let key = format!("listen[{i}]");
        listen.push(Listen {
            addr: field(&format!("{key}.addr"), l.addr.parse())?,
            medium: field(&format!("{key}.medium"), l.medium.parse())?,
        });
    }
    let federation = federation(raw.federation, &mut core, base)?;
    if !core.area.is_empty() && !federation.is_empty() {
        // Another deployment's nodes would learn this deployment's members of other areas
        // only from borders' summaries, which do not say whose deployment a member is in:
        // groups and topics could then resolve across where [[federation]] `to` forbids.
        return Err((
            "area".into(),
            "areas and [[federation]] together are not built yet: split the deployment into areas or federate it, not both".into(),
        ));
    }
    let mut peers = Vec::new();
    for (i, p) in raw.peer.into_iter().enumerate() {
        let key = format!("peer[{i}]");
        let peer = Peer {
            node: field(&format!("{key}.node"), NodeId::new(&p.node))?,
            addr: field(&format!("{key}.addr"), p.addr.parse::<SocketAddr>())?,
            medium: field(&format!("{key}.medium"), p.medium.parse())?,
            deployment: p.deployment,
        };
        check_peer_deployment(&key, &peer, &federation, &core)?;
        if peer.node == core.node {
            return Err((format!("{key}.node"), "a node cannot peer with itself".into()));
        }
        if peers.iter().any(|q: &Peer| q.node == peer.node && q.medium == peer.medium) {
            return Err((key, format!("{} over {} is configured twice", peer.node, peer.medium)));
        }
        peers.push(peer);
    }
    // A border with no way to link with the other deployment: it dials none of its nodes and
    // listens nowhere for them to dial.
    for (i, f) in federation.iter().enumerate() {
        let dials = peers.iter().any(|p| p.deployment.as_deref() == Some(f.deployment.as_str()));
        if f.border && !dials && listen.is_empty() {
            return Err((
                format!("federation[{i}].borders"),
                format!(
                    "{} is a border of {} but neither dials one of its nodes ([[peer]] with \
                     deployment = \"{}\") nor listens ([[listen]])",
                    core.node, f.deployment, f.deployment
                ),
            ));
        }
    }
    let max_batch = raw.store.max_batch.unwrap_or(64).max(1);
    let store_cache = match &raw.store.cache {
        Some(s) => field("store.cache", parse_size(s))? as usize,
        None => 16 << 20,
    };
    let mut commit = super::driver::CommitPolicy::default();
    if let Some(s) = &raw.store.commit_after {
        commit.after = field("store.commit_after", parse_duration(s))?;
    }
    if let Some(s) = &raw.store.commit_within {
        commit.within = field("store.commit_within", parse_duration(s))?;
    }
    if commit.within > Duration::from_secs(1) || commit.after > commit.within {
        return Err((
            "store.commit_within".into(),
            "commit_after <= commit_within <= 1s: custody answers wait for the commit".into(),
        ));
    }
    Ok(RelayConfig {
        core,
        data_dir: base.join(raw.data_dir),
        ca: base.join(raw.ca),
        cert: base.join(raw.cert),
        key: base.join(raw.key),
        crl: raw.crl.map(|c| base.join(c)),
        stall_timeout,
        compact,
        gateways,
        api,
        api_token: raw.api_token,
        api_users: raw.api_users.map(|u| base.join(u)),
        api_session,
        api_tls,
        listen,
        peers,
        transport,
        max_batch,
        commit,
        store_cache,
        federation,
    })
}

/// Reads the `[[federation]]` entries into the core's policies (`core.federation`) and the
/// files and node ids the shell needs.
fn federation(
    raw: Vec<RawFederation>,
    core: &mut CoreConfig,
    base: &Path,
) -> Result<Vec<FederationFiles>, Fail> {
    use crate::core::federation::Federation;
    use crate::pki::NodePattern;
    let mut files: Vec<FederationFiles> = Vec::new();
    for (i, f) in raw.into_iter().enumerate() {
        let key = format!("federation[{i}]");
        let name = f.deployment.trim();
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err((
                format!("{key}.deployment"),
                format!("{:?}: a name of letters, digits, `-` and `_`", f.deployment),
            ));
        }
        if files.iter().any(|x| x.deployment == name) {
            return Err((format!("{key}.deployment"), format!("{name} is federated twice")));
        }
        if f.nodes.is_empty() {
            return Err((format!("{key}.nodes"), "name its nodes (e.g. [\"city-*\"])".into()));
        }
        let mut nodes = Vec::new();
        for (j, n) in f.nodes.iter().enumerate() {
            let pattern = field(&format!("{key}.nodes[{j}]"), NodePattern::parse(n))?;
            if pattern.matches(core.node.as_str()) {
                return Err((
                    format!("{key}.nodes[{j}]"),
                    format!(
                        "{n} takes in this node, {}: a node belongs to one deployment",
                        core.node
                    ),
                ));
            }
            if let Some(other) = files.iter().find(|x| x.nodes.iter().any(|p| p.overlaps(&pattern)))
            {
                return Err((
                    format!("{key}.nodes[{j}]"),
                    format!(
                        "{n} overlaps the nodes of {}: a node belongs to one deployment",
                        other.deployment
                    ),
                ));
            }
            nodes.push(pattern);
        }
        if f.borders.is_empty() {
            return Err((
                format!("{key}.borders"),
                "name this deployment's nodes where its nodes may link".into(),
            ));
        }
        let mut borders = Vec::new();
        for (j, b) in f.borders.iter().enumerate() {
            let node = field(&format!("{key}.borders[{j}]"), NodeId::new(b))?;
            if let Some(p) = nodes.iter().find(|p| p.matches(node.as_str())) {
                return Err((
                    format!("{key}.borders[{j}]"),
                    format!(
                        "{node} is one of {name}'s nodes ({}): borders are this deployment's",
                        p.as_str()
                    ),
                ));
            }
            borders.push(node);
        }
        if f.to.is_empty() {
            return Err((format!("{key}.to"), "name the addresses its nodes may send to".into()));
        }
        let to =
            f.to.iter()
                .enumerate()
                .map(|(j, t)| field(&format!("{key}.to[{j}]"), AddressPattern::parse(t)))
                .collect::<Result<Vec<_>, _>>()?;
        if f.precedences.as_ref().is_some_and(Vec::is_empty) {
            return Err((
                format!("{key}.precedences"),
                "name at least one precedence (leave it out for all four)".into(),
            ));
        }
        let mut precedences = [f.precedences.is_none(); 4];
        for (j, p) in f.precedences.iter().flatten().enumerate() {
            let p: Precedence = field(&format!("{key}.precedences[{j}]"), p.parse())?;
            precedences[p.index()] = true;
        }
        if f.roles.is_empty() {
            return Err((
                format!("{key}.roles"),
                "map its roles to this deployment's (e.g. { command = \"township\" })".into(),
            ));
        }
        let mut roles = BTreeMap::new();
        for (theirs, ours) in &f.roles {
            let k = format!("{key}.roles.{theirs}");
            roles.insert(field(&k, theirs.parse::<Role>())?, field(&k, ours.parse::<Role>())?);
        }
        let border = borders.contains(&core.node);
        core.federation.push(Federation {
            deployment: name.into(),
            borders,
            to,
            precedences,
            roles,
        });
        files.push(FederationFiles {
            deployment: name.to_owned(),
            ca: base.join(f.ca),
            crl: f.crl.map(|c| base.join(c)),
            nodes,
            border,
        });
    }
    Ok(files)
}

/// A peer of another deployment is dialled only from one of that federation's borders, and
/// only if its id is one of that deployment's; a peer whose id is one of a federated
/// deployment's must say so.
fn check_peer_deployment(
    key: &str,
    peer: &Peer,
    federation: &[FederationFiles],
    core: &CoreConfig,
) -> Result<(), Fail> {
    let owner = federation.iter().find(|f| f.nodes.iter().any(|p| p.matches(peer.node.as_str())));
    let Some(d) = &peer.deployment else {
        return match owner {
            Some(f) => Err((
                format!("{key}.deployment"),
                format!(
                    "{} is a node of {}: say deployment = \"{}\"",
                    peer.node, f.deployment, f.deployment
                ),
            )),
            None => Ok(()),
        };
    };
    let Some(f) = federation.iter().find(|f| &f.deployment == d) else {
        return Err((format!("{key}.deployment"), format!("no [[federation]] names {d:?}")));
    };
    if !f.border {
        return Err((
            format!("{key}.deployment"),
            format!(
                "{} is not a border of {d} (its `borders`): its nodes may not link here",
                core.node
            ),
        ));
    }
    if owner.is_none_or(|o| o.deployment != *d) {
        return Err((
            format!("{key}.node"),
            format!("{} is not one of {d}'s nodes (its `nodes`)", peer.node),
        ));
    }
    Ok(())
}

/// Applies a `[media.<medium>]` table (named `key` in errors) to the medium's defaults.
pub fn medium_config(
    key: &str,
    medium: Medium,
    m: MediumSection,
) -> Result<(MediumConfig, TransportSettings), (String, String)> {
    let k = |f: &str| format!("{key}.{f}");
    let mut c = MediumConfig::default_for(medium);
    let mut t = TransportSettings::default_for(medium);
    let dur = |f: &str, v: &Option<String>| -> Result<Option<Duration>, Fail> {
        v.as_deref().map(|s| field(&k(f), parse_duration(s))).transpose()
    };
    if let Some(cost) = m.cost {
        c.cost = cost;
    }
    if let Some(p) = &m.min_precedence {
        c.min_precedence = field(&k("min_precedence"), p.parse())?;
    }
    if let Some(s) = m.strict {
        c.strict = s;
    }
    if let Some(d) = dur("probe_interval", &m.probe_interval)? {
        if d < Duration::from_millis(10) {
            return Err((k("probe_interval"), "must be at least 10ms".into()));
        }
        c.probe_interval = d;
    }
    if let Some(n) = m.probe_misses {
        if n == 0 {
            return Err((k("probe_misses"), "must be at least 1".into()));
        }
        c.probe_misses = n;
    }
    if let Some(w) = &m.window {
        c.window_bytes = field(&k("window"), parse_size(w))?.max(1);
    }
    if let Some(r) = &m.rate {
        c.rate_bytes_per_s = Some(field(&k("rate"), parse_rate(r))? / 8);
    }
    if let Some(d) = dur("ack_timeout", &m.ack_timeout)? {
        c.ack_timeout = d;
    }
    if let Some(b) = &m.bandwidth {
        c.bandwidth_bps = field(&k("bandwidth"), parse_rate(b))?;
        t.bandwidth_bps = c.bandwidth_bps;
    }
    if let Some(d) = dur("initial_rtt", &m.initial_rtt)? {
        t.initial_rtt = d;
    }
    if let Some(d) = dur("idle_timeout", &m.idle_timeout)? {
        t.idle_timeout = d;
    }
    if let Some(d) = dur("keep_alive", &m.keep_alive)? {
        t.keep_alive = Some(d).filter(|d| !d.is_zero());
    }
    if let Some(cc) = &m.congestion {
        t.congestion = field(&k("congestion"), cc.parse::<Congestion>())?;
    }
    if let Some(w) = &m.initial_window {
        t.initial_window = Some(field(&k("initial_window"), parse_size(w))?);
    }
    if let Some(share) = m.control_share {
        if !(0.0..=1.0).contains(&share) {
            return Err((
                k("control_share"),
                format!("{share}: expected a share of the bandwidth, 0 (no cap) to 1"),
            ));
        }
        c.control_share = share;
    }
    if let Some(p) = m.pace {
        if !(0.0..=1.0).contains(&p) {
            return Err((k("pace"), format!("{p}: expected a share of the bandwidth, 0 to 1")));
        }
        t.pace = p;
    }
    if let Some(on) = m.compress {
        t.compress = on;
    }
    Ok((c, t))
}

fn rule(key: &str, r: RawRule) -> Result<Rule, Fail> {
    let allow = match r.action.as_str() {
        "allow" => true,
        "deny" => false,
        other => {
            return Err((format!("{key}.action"), format!("{other:?}: expected allow or deny")));
        }
    };
    let from_roles = r
        .from_role
        .iter()
        .map(|s| field(&format!("{key}.from_role"), s.parse::<Role>()))
        .collect::<Result<_, _>>()?;
    let from_nodes = r
        .from_node
        .iter()
        .map(|s| field(&format!("{key}.from_node"), NodeId::new(s)))
        .collect::<Result<_, _>>()?;
    Ok(Rule {
        allow,
        from_roles,
        from_nodes,
        to: field(&format!("{key}.to"), AddressPattern::parse(&r.to))?,
        min_precedence: r
            .precedence
            .map(|p| field(&format!("{key}.precedence"), p.parse::<Precedence>()))
            .transpose()?,
        reason: r.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node = "township-03"
role = "township"
data_dir = "data/township-03"
ca = "pki/ca.crt"
cert = "pki/township-03.crt"
key = "pki/township-03.key"
api = "127.0.0.1:7480"
groups = ["medical"]

[[listen]]
addr = "0.0.0.0:7400"
medium = "wireless"

[[peer]]
node = "county-hq"
addr = "203.0.113.7:7400"
medium = "satellite"

[media.satellite]
cost = 10
min_precedence = "priority"
strict = true
rate = "2Mbps"
congestion = "bbr"

[store]
max_bytes = "1GiB"
admit = { routine = 0.5 }

[[policy.rule]]
action = "deny"
from_role = ["field"]
to = "topic:logistics/#"
reason = "no"
"#;

    #[test]
    fn the_documented_example_parses() {
        let c = parse(GOOD, Path::new("/etc/relaymesh/node.toml")).unwrap();
        assert_eq!(c.core.node.as_str(), "township-03");
        assert_eq!(c.data_dir, PathBuf::from("/etc/relaymesh/data/township-03"));
        assert_eq!(c.peers[0].medium, Medium::Satellite);
        assert_eq!(c.core.medium(Medium::Satellite).cost, 10);
        assert!(c.core.medium(Medium::Satellite).strict);
        assert!(!c.core.medium(Medium::Wireless).strict);
        assert_eq!(c.core.medium(Medium::Satellite).rate_bytes_per_s, Some(250_000));
        assert_eq!(c.transport(Medium::Satellite).congestion, Congestion::Bbr);
        assert_eq!(c.core.limits.max_bytes, 1 << 30);
        assert_eq!(c.core.limits.admit_ratio[Precedence::Routine.index()], 0.5);
        assert_eq!(c.core.policy.rules.len(), 1 + Policy::safe_defaults().len());
        // A debug build's relay (every test's) checks its invariants after each commit and
        // stops at the first broken one; a release build's does not pay for it.
        assert_eq!(c.core.check_invariants, cfg!(debug_assertions));
    }

    #[test]
    fn known_rate_links_are_paced_unless_told_not_to() {
        let c = parse(GOOD, Path::new("node.toml")).unwrap();
        // BBR: not paced by relaymesh.
        assert_eq!(c.transport(Medium::Satellite).pacing_bps(), None);
        let text = GOOD.replacen(r#"congestion = "bbr""#, "bandwidth = \"2Mbps\"", 1);
        let c = parse(&text, Path::new("node.toml")).unwrap();
        assert_eq!(c.transport(Medium::Satellite).pacing_bps(), Some(1_960_000));
        let c = parse(&text.replacen("cost = 10", "pace = 0.5", 1), Path::new("n")).unwrap();
        assert_eq!(c.transport(Medium::Satellite).pacing_bps(), Some(1_000_000));
        let c = parse(&text.replacen("cost = 10", "pace = 0", 1), Path::new("n")).unwrap();
        assert_eq!(c.transport(Medium::Satellite).pacing_bps(), None);
        // Cubic media are not paced.
        assert_eq!(c.transport(Medium::Wireless).pacing_bps(), None);
    }

    #[test]
    fn link_state_takes_its_share_of_each_medium_unless_told_otherwise() {
        let c = parse(GOOD, Path::new("node.toml")).unwrap();
        let sat = c.core.medium(Medium::Satellite);
        assert_eq!(sat.control_rate(), Some(sat.bandwidth_bps as f64 / 8.0 * 0.05));
        let text = GOOD.replacen("cost = 10", "control_share = 0", 1);
        let c = parse(&text, Path::new("node.toml")).unwrap();
        assert_eq!(c.core.medium(Medium::Satellite).control_rate(), None, "0: no cap");
        let text = GOOD.replacen("cost = 10", "control_share = 0.2", 1);
        let c = parse(&text, Path::new("node.toml")).unwrap();
        assert_eq!(c.core.medium(Medium::Satellite).control_share, 0.2);
    }

    #[test]
    fn compact_offers_announce_the_newest_dialect_unless_told_an_older_one_or_none() {
        let with = |wire: &str| parse(&format!("{GOOD}\n[wire]\n{wire}\n"), Path::new("n"));
        assert_eq!(parse(GOOD, Path::new("n")).unwrap().compact, Some(Dialect::V3));
        assert_eq!(with("compact_dialect = 2").unwrap().compact, Some(Dialect::V2));
        assert_eq!(with("compact_dialect = 1").unwrap().compact, Some(Dialect::V1));
        assert_eq!(with("compact_offers = false").unwrap().compact, None);
        for bad in ["compact_dialect = 0", "compact_dialect = 4"] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.key, "wire.compact_dialect", "{e}");
            assert!(e.reason.contains("is not a compact dialect (1 to 3)"), "{e}");
        }
    }

    fn check(text: &str, key: &str, reason: &str) {
        let e = parse(text, Path::new("node.toml")).unwrap_err();
        assert_eq!(e.file, "node.toml");
        assert_eq!(e.key, key, "{e}");
        assert!(e.reason.contains(reason), "{e}");
    }

    #[test]
    fn an_area_is_named_like_a_node() {
        assert_eq!(parse(GOOD, Path::new("n")).unwrap().core.area, "", "none by default");
        let text = GOOD.replacen("groups = [", "area = \"north-5\"\ngroups = [", 1);
        assert_eq!(parse(&text, Path::new("n")).unwrap().core.area, "north-5");
        let text = GOOD.replacen("groups = [", "area = \"North 5\"\ngroups = [", 1);
        check(&text, "area", "an area is named like a node");
        let text = GOOD.replacen("groups = [", "area = \"north\"\ngroups = [", 1)
            + "\n[[federation]]\ndeployment = \"city\"\nca = \"pki/ca.crt\"\nnodes = [\"city-*\"]\nborders = [\"county-hq\"]\nto = [\"node:*\"]\nroles = { command = \"command\" }\n";
        check(&text, "area", "areas and [[federation]] together are not built yet");
    }

    #[test]
    fn a_federation_parses_into_its_policy_and_bad_ones_name_the_key() {
        let fed = |body: &str| {
            format!(
                "{GOOD}\n[[federation]]\ndeployment = \"city\"\nca = \"pki/city-ca.crt\"\n\
                 nodes = [\"city-*\"]\nborders = [\"township-03\"]\nto = [\"node:*\"]\n\
                 roles = {{ command = \"township\" }}\n{body}"
            )
        };
        let c = parse(&fed("precedences = [\"routine\"]"), Path::new("/n/node.toml")).unwrap();
        let f = &c.core.federation[0];
        assert_eq!((&*f.deployment, f.precedences), ("city", [true, false, false, false]));
        assert_eq!(f.roles.get(&Role::Command), Some(&Role::Township));
        assert_eq!(c.federation[0].ca, PathBuf::from("/n/pki/city-ca.crt"));
        assert!(c.federation[0].border);
        check(&fed("precedences = []"), "federation[0].precedences", "at least one");
        check(&fed("").replace("city-*", "township-*"), "federation[0].nodes[0]", "this node");
        check(&fed("").replace("\"city-*\"", "\"*\""), "federation[0].nodes[0]", "names no node");
        check(&fed("").replace("node:*", "nowhere"), "federation[0].to[0]", "");
        check(&fed("").replace("\"township\" }", "\"mayor\" }"), "federation[0].roles.command", "");
        let peer = "[[peer]]\nnode = \"city-hq\"\naddr = \"203.0.113.9:7400\"\nmedium = \"public\"";
        check(&fed(peer), "peer[1].deployment", "say deployment = \"city\"");
        let not_border = fed(&format!("{peer}\ndeployment = \"city\""))
            .replace("borders = [\"township-03\"]", "borders = [\"county-hq\"]");
        check(&not_border, "peer[1].deployment", "township-03 is not a border of city");
        // A border that neither dials the other deployment nor listens has no way to link.
        let no_link =
            fed("").replace("[[listen]]\naddr = \"0.0.0.0:7400\"\nmedium = \"wireless\"\n", "");
        check(&no_link, "federation[0].borders", "neither dials one of its nodes");
        let dials = fed(&format!("{peer}\ndeployment = \"city\""))
            .replace("[[listen]]\naddr = \"0.0.0.0:7400\"\nmedium = \"wireless\"\n", "");
        assert!(parse(&dials, Path::new("n")).is_ok());
    }

    #[test]
    fn errors_name_the_key_and_the_reason() {
        let replace = |from: &str, to: &str| GOOD.replacen(from, to, 1);
        check(
            &replace(r#"node = "township-03""#, r#"node = "Township 3""#),
            "node",
            "invalid node id",
        );
        check(&replace(r#"role = "township""#, r#"role = "mayor""#), "role", "invalid role");
        check(&replace("cost = 10", r#"cost = "cheap""#), "media.satellite.cost", "invalid type");
        check(
            &replace("cost = 10", "colour = 10"),
            "media.satellite.colour",
            "unknown field `colour`",
        );
        check(
            &replace(r#"rate = "2Mbps""#, r#"rate = "2MB""#),
            "media.satellite.rate",
            "expected a unit",
        );
        check(
            &replace(r#"addr = "203.0.113.7:7400""#, r#"addr = "nowhere""#),
            "peer[0].addr",
            "invalid socket address",
        );
        check(
            &replace("[media.satellite]", "[media.carrier-pigeon]"),
            "media.carrier-pigeon",
            "invalid medium",
        );
        check(&replace(r#"api = "127.0.0.1:7480""#, r#"api = "0.0.0.0:7480""#), "api", "api_token");
        let api = r#"api = "127.0.0.1:7480""#;
        check(&replace(api, &format!("{api}\napi_session = \"0s\"")), "api_session", "0s");
        let objectives = |body: &str| format!("{GOOD}\n[objectives]\n{body}\n");
        check(&objectives("flash = \"0s\""), "objectives.flash", "longer than 0s");
        check(&objectives("flash = \"31d\""), "objectives.flash", "max_lifetime");
        check(&objectives("urgent = \"5m\""), "objectives.urgent", "");
        check(&objectives("notify = \"nowhere\""), "objectives.notify", "");
        let c = parse(&objectives("notify = \"none\""), Path::new("n")).unwrap();
        assert_eq!(c.core.notify_overdue, None);
        let c = parse(&objectives("notify = \"group:duty-officers\""), Path::new("n")).unwrap();
        assert_eq!(
            c.core.notify_overdue,
            Some(crate::core::Address::parse("group:duty-officers").unwrap())
        );
        let c = parse(&objectives("flash = \"5m\"\nroutine = \"1h\""), Path::new("n")).unwrap();
        assert_eq!(c.core.objectives[Precedence::Flash.index()], Duration::from_secs(300));
        assert_eq!(c.core.objectives[Precedence::Routine.index()], Duration::from_secs(3600));
        assert_eq!(c.core.objectives[Precedence::Immediate.index()], Duration::from_secs(1800));
        assert!(c.core.escalate && c.core.address_objectives.is_empty());
        let per_address = "escalate = false\n[[objectives.address]]\nto = \"topic:alerts/#\"\n\
                           flash = \"2m\"\n[[objectives.address]]\nto = \"node:county-hq\"\n\
                           routine = \"1h\"";
        let c = parse(&objectives(per_address), Path::new("n")).unwrap();
        assert!(!c.core.escalate);
        let rules = &c.core.address_objectives;
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].to, AddressPattern::parse("topic:alerts/#").unwrap());
        assert_eq!(rules[0].objectives, [None, None, None, Some(Duration::from_secs(120))]);
        assert_eq!(
            rules[1].objectives[Precedence::Routine.index()],
            Some(Duration::from_secs(3600))
        );
        let bad = |entry: &str| objectives(&format!("[[objectives.address]]\n{entry}"));
        check(&bad("to = \"topic:a/#/b\"\nflash = \"1m\""), "objectives.address[0].to", "`#`");
        check(&bad("to = \"node:a\"\nflash = \"0s\""), "objectives.address[0].flash", "0s");
        check(
            &bad("to = \"node:a\"\nflash = \"40d\""),
            "objectives.address[0].flash",
            "max_lifetime",
        );
        check(&bad("to = \"node:a\""), "objectives.address[0]", "names no precedence");
        check(&bad("flash = \"1m\""), "objectives.address[0]", "to");
        check(&objectives("escalate = \"yes\""), "objectives.escalate", "");
        check(&replace(api, &format!("{api}\napi_session = \"soon\"")), "api_session", "");
        check(&replace(api, &format!("{api}\napi_tls_cert = \"c.pem\"")), "api_tls", "together");
        check(&replace(api, &format!("{api}\napi_tls_key = \"k.pem\"")), "api_tls", "together");
        let tls = "api_tls_cert = \"c.pem\"\napi_tls_key = \"k.pem\"";
        check(
            &replace(api, &format!("{api}\n{tls}\napi_tls = \"0.0.0.0:7443\"")),
            "api_tls",
            "api_token",
        );
        let c = parse(
            &replace(api, &format!("{api}\n{tls}\napi_tls = \"127.0.0.1:7443\"")),
            Path::new("n"),
        )
        .unwrap();
        assert_eq!(c.api_tls.unwrap().addr.port(), 7443);
        check(
            &replace(r#"action = "deny""#, r#"action = "maybe""#),
            "policy.rule[0].action",
            "allow or deny",
        );
        check(
            &replace("cost = 10", "pace = 1.5"),
            "media.satellite.pace",
            "share of the bandwidth",
        );
        check(
            &replace("cost = 10", "control_share = -0.1"),
            "media.satellite.control_share",
            "0 (no cap) to 1",
        );
        check("node = ", "-", "line 1");
        let e = parse(&replace("ca = ", "# ca = "), Path::new("node.toml")).unwrap_err();
        assert!(e.reason.contains("missing field `ca`"), "{e}");
    }
}
