//! The parts of a node's configuration the core acts on. The shell builds it from `node.toml`
//! (`crate::shell::config`); the simulator builds it from a scenario.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::policy::{AddressPattern, Policy};
use super::trust::Trust;
use super::types::{Medium, NodeId, Precedence, Role};

/// Per-medium behaviour of links.
#[derive(Clone, Debug, PartialEq)]
pub struct MediumConfig {
    /// Routing cost of one hop over this medium (added to the measured delay, in milliseconds).
    pub cost: u32,
    /// Lowest precedence that may use this medium while another path exists.
    pub min_precedence: Precedence,
    /// Precedences below `min_precedence` never use this medium, not even as the only way,
    /// until they are late (past their delivery objective, with `CoreConfig::escalate`).
    pub strict: bool,
    /// Interval between link probes.
    pub probe_interval: Duration,
    /// Consecutive unanswered probes after which the link is declared down (more on a lossy
    /// link: see `Link::misses_needed`).
    pub probe_misses: u32,
    /// Unacknowledged custody bytes allowed in flight per precedence class (see `core::link`).
    pub window_bytes: u64,
    /// Rate at which held messages are offered on the link, bytes per second (`None`: no limit).
    pub rate_bytes_per_s: Option<u64>,
    /// An offer not answered within this time is offered again.
    pub ack_timeout: Duration,
    /// Nominal bandwidth, advertised in link state (bits per second).
    pub bandwidth_bps: u64,
    /// Share of `bandwidth_bps` that link-state adverts may take on a link (0: no cap). Over
    /// it they wait, a newer advert of an origin taking the older one's place
    /// (`core::adverts::AdvertQueue`); custody answers and probes are not held.
    pub control_share: f64,
}

impl MediumConfig {
    /// The cap on link-state traffic, bytes a second (`None`: none).
    pub fn control_rate(&self) -> Option<f64> {
        let rate = self.bandwidth_bps as f64 / 8.0 * self.control_share;
        // A medium configured with no bandwidth has no cap to take a share of.
        (rate > 0.0 && rate.is_finite()).then_some(rate)
    }
}

impl MediumConfig {
    /// Defaults for a medium, chosen for its usual delay and cost.
    pub fn default_for(medium: Medium) -> MediumConfig {
        match medium {
            Medium::Satellite => MediumConfig {
                cost: 50,
                min_precedence: Precedence::Priority,
                strict: false,
                probe_interval: Duration::from_secs(5),
                probe_misses: 2,
                window_bytes: 256 * 1024,
                rate_bytes_per_s: None,
                ack_timeout: Duration::from_secs(60),
                bandwidth_bps: 1_000_000,
                control_share: 0.05,
            },
            Medium::Wireless => MediumConfig {
                cost: 10,
                min_precedence: Precedence::Routine,
                strict: false,
                probe_interval: Duration::from_secs(1),
                probe_misses: 2,
                window_bytes: 512 * 1024,
                rate_bytes_per_s: None,
                ack_timeout: Duration::from_secs(30),
                bandwidth_bps: 10_000_000,
                control_share: 0.1,
            },
            Medium::Public => MediumConfig {
                cost: 5,
                min_precedence: Precedence::Routine,
                strict: false,
                probe_interval: Duration::from_secs(1),
                probe_misses: 2,
                window_bytes: 4 * 1024 * 1024,
                rate_bytes_per_s: None,
                ack_timeout: Duration::from_secs(30),
                bandwidth_bps: 50_000_000,
                control_share: 0.1,
            },
        }
    }
}

/// How full the store may get before each precedence is refused.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreLimits {
    /// Bytes of held and undelivered messages the node accepts at most.
    pub max_bytes: u64,
    /// Fraction of `max_bytes` up to which each precedence is admitted, indexed by
    /// `Precedence::index()` (ROUTINE first). FLASH is admitted until the store is full.
    pub admit_ratio: [f64; 4],
}

impl Default for StoreLimits {
    fn default() -> StoreLimits {
        StoreLimits { max_bytes: 4 << 30, admit_ratio: [0.70, 0.80, 0.90, 1.0] }
    }
}

/// Delivery objectives for the messages to some addresses (`[[objectives.address]]`).
#[derive(Clone, Debug, PartialEq)]
pub struct AddressObjectives {
    pub to: AddressPattern,
    /// By `Precedence::index()`; `None`: the node's objective for that precedence.
    pub objectives: [Option<Duration>; 4],
}

/// Everything the core needs to know about its node.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub node: NodeId,
    pub role: Role,
    /// Named groups this node belongs to (besides `all` and `role:<role>`).
    pub groups: Vec<String>,
    /// The area this node belongs to (`""`: the deployment is not split into areas). Full
    /// link state stays inside an area; borders summarise it for the others (`core::routing`).
    pub area: String,
    pub media: BTreeMap<Medium, MediumConfig>,
    pub limits: StoreLimits,
    /// Largest payload accepted, in bytes.
    pub max_payload: usize,
    /// Largest object accepted (`Node::handle_submit_object`), in bytes as chunked.
    pub max_object: u64,
    /// Longest lifetime accepted.
    pub max_lifetime: Duration,
    /// Hops after which a message is refused (a routing loop that did not converge).
    pub max_hops: u32,
    /// Read inbox messages kept; older read ones are pruned.
    pub inbox_keep: u64,
    /// How long the origin keeps the status of a message after accepting it.
    pub status_keep: Duration,
    /// Delivery objectives by `Precedence::index()`: a destination not reached within it is
    /// overdue (`objectives`).
    pub objectives: [Duration; 4],
    /// Objectives for messages to some addresses, checked in order; the first rule that
    /// matches the message's address and names its precedence wins over `objectives`.
    pub address_objectives: Vec<AddressObjectives>,
    /// A message held past its objective (its age says so, at every hop) may use media its
    /// precedence otherwise avoids (`MediumConfig::min_precedence`, `strict`).
    pub escalate: bool,
    /// Where an overdue alarm is also sent, as a message (`group:role:command` by default;
    /// `None`: nowhere). The notice asks for no receipt, so it is never overdue itself.
    pub notify_overdue: Option<super::types::Address>,
    /// Check every invariant after each successful commit (`Node::check_invariants`; it
    /// reads the whole store): on in debug builds, so that every test that runs a node checks
    /// it; in release builds for simulations and soak runs (`--check-invariants`), not
    /// production.
    pub check_invariants: bool,
    /// How long a link-state advert stays valid without refresh; refreshed at a third of it.
    pub advert_lifetime: Duration,
    /// Who may send what to where.
    pub policy: Policy,
    /// Other deployments whose nodes this one accepts, where, and what they may send.
    pub federation: Vec<super::federation::Federation>,
    /// The deployment's trust and this node's signing key. `None` only in core unit tests
    /// that are not about signatures: every relay the shell starts has one.
    pub trust: Option<Arc<dyn Trust>>,
    /// Frames per second a neighbour may send on one link (a second's worth may come at once).
    /// Beyond that offers are answered "busy"; a neighbour that keeps going for another second
    /// is cut off.
    pub peer_frame_rate: u32,
    /// Share of the store one neighbour's messages may fill.
    pub peer_store_share: f64,
}

impl CoreConfig {
    pub fn new(node: NodeId, role: Role) -> CoreConfig {
        CoreConfig {
            node,
            role,
            groups: Vec::new(),
            area: String::new(),
            media: Medium::ALL.into_iter().map(|m| (m, MediumConfig::default_for(m))).collect(),
            limits: StoreLimits::default(),
            max_payload: 1024 * 1024,
            max_object: 256 * 1024 * 1024,
            max_lifetime: Duration::from_secs(30 * 24 * 3600),
            max_hops: 32,
            inbox_keep: 100_000,
            status_keep: Duration::from_secs(7 * 24 * 3600),
            objectives: super::objectives::DEFAULT_OBJECTIVES,
            address_objectives: Vec::new(),
            escalate: true,
            notify_overdue: Some(super::types::Address::Group(super::types::Group::Role(
                Role::Command,
            ))),
            advert_lifetime: Duration::from_secs(30 * 60),
            check_invariants: cfg!(debug_assertions),
            policy: Policy::default(),
            federation: Vec::new(),
            trust: None,
            peer_frame_rate: 250_000,
            peer_store_share: 0.5,
        }
    }

    pub fn medium(&self, m: Medium) -> MediumConfig {
        self.media.get(&m).cloned().unwrap_or_else(|| MediumConfig::default_for(m))
    }
}
