//! Domain types: identities, addresses, precedence, envelopes and the node clock.
//!
//! Everything here is parsed once at the edge ("parse, don't validate"): a `NodeId` is always a
//! valid id, an `Address` always well formed, so the rest of the core never re-checks.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;

/// A point on a node's clock, in microseconds.
///
/// The shell derives it from tokio's clock anchored to the wall clock at start, the simulator
/// from virtual time. The core never reads a clock itself; it is handed `now` on every call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    pub const ZERO: Time = Time(0);

    pub fn from_micros(us: u64) -> Time {
        Time(us)
    }

    pub fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, zero if `earlier` is later (a clock that stepped back).
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(duration_micros(d)))
    }
}

impl std::ops::Sub<Duration> for Time {
    type Output = Time;
    fn sub(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(duration_micros(d)))
    }
}

/// A duration as whole microseconds, saturating at `u64::MAX`.
pub fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `d` at the wire's resolution (whole microseconds, saturating): what a frame or the store
/// carries, so what is kept in memory reads back exactly.
pub fn wire_duration(d: Duration) -> Duration {
    Duration::from_micros(duration_micros(d))
}

/// Why a piece of input was not accepted as a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Node ids are `[a-z0-9][a-z0-9-]{0,62}`.
    #[error("invalid node id {0:?}: expected [a-z0-9][a-z0-9-]{{0,62}}")]
    NodeId(String),
    /// Roles are command, township, field or relay.
    #[error("invalid role {0:?}: expected command, township, field or relay")]
    Role(String),
    /// Media are satellite, wireless or public.
    #[error("invalid medium {0:?}: expected satellite, wireless or public")]
    Medium(String),
    /// Precedences are flash, immediate, priority or routine.
    #[error("invalid precedence {0:?}: expected flash, immediate, priority or routine")]
    Precedence(String),
    /// Addresses are `node:<id>`, `group:<name>` or `topic:<path>`.
    #[error("invalid address {0:?}: {1}")]
    Address(String, &'static str),
    /// Topic patterns use `+` for one level and a trailing `#` for the rest.
    #[error("invalid topic pattern {0:?}: {1}")]
    TopicPattern(String, &'static str),
    /// Message ids are 16 bytes, written as 32 hex digits.
    #[error("invalid message id {0:?}: expected 32 hex digits")]
    MessageId(String),
}

/// A node's identity: `[a-z0-9][a-z0-9-]{0,62}`, e.g. `county-hq`. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub fn new(s: &str) -> Result<NodeId, ParseError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if ok { Ok(NodeId(intern(s))) } else { Err(ParseError::NodeId(s.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Node ids are few and repeated everywhere: every advert names its node and each neighbour,
/// every summary its area's members, every envelope its origin and destinations. Decoded
/// separately, a 1,000-node simulated mesh held some 50 MB of copies of the same ids; here a
/// distinct id is one allocation shared by all its copies in the process.
fn intern(s: &str) -> Arc<str> {
    IDS.lock().unwrap_or_else(|e| e.into_inner()).get(s)
}

/// Bytes that many nodes of one process hold identical copies of: a node's certificate, an
/// advert's signature, a border's summary. In a 1,000-node simulated mesh every node kept its
/// own copy of each (a certificate per node it knows, a summary per border); here identical
/// contents share one allocation for as long as any copy is held. A node alone in its process
/// (a real deployment) pays a hash and a lookup per advert kept.
pub fn shared_bytes(b: &[u8]) -> Bytes {
    let shared = BYTES.lock().unwrap_or_else(|e| e.into_inner()).get(b);
    Bytes::from_owner(shared)
}

static IDS: LazyLock<Mutex<Interner<str>>> = LazyLock::new(Default::default);
static BYTES: LazyLock<Mutex<Interner<[u8]>>> = LazyLock::new(Default::default);

/// Identical values shared by everything in the process that holds one. Weak references by
/// hash, so a value nothing holds any more (a hostile frame's made-up id, say) is swept out
/// once the table has doubled since the last sweep.
struct Interner<T: ?Sized> {
    hasher: std::hash::RandomState,
    by_hash: HashMap<u64, Vec<Weak<T>>>,
    /// Entries at which the table is swept next.
    sweep_at: usize,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Interner { hasher: Default::default(), by_hash: HashMap::new(), sweep_at: 1024 }
    }
}

impl<T: ?Sized + Eq + std::hash::Hash> Interner<T>
where
    for<'a> Arc<T>: From<&'a T>,
{
    fn get(&mut self, value: &T) -> Arc<T> {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(value);
        if let Some(held) = self
            .by_hash
            .get(&hash)
            .into_iter()
            .flatten()
            .filter_map(Weak::upgrade)
            .find(|a| **a == *value)
        {
            return held;
        }
        if self.by_hash.len() >= self.sweep_at {
            self.by_hash.retain(|_, ws| {
                ws.retain(|w| w.strong_count() > 0);
                !ws.is_empty()
            });
            self.sweep_at = (self.by_hash.len() * 2).max(1024);
        }
        let new = Arc::from(value);
        let bucket = self.by_hash.entry(hash).or_default();
        bucket.retain(|w| w.strong_count() > 0);
        bucket.push(Arc::downgrade(&new));
        new
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_hash.len()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeId::new(s)
    }
}

/// What a node is for; carried in its certificate and used by groups and policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Command,
    Township,
    Field,
    Relay,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Command, Role::Township, Role::Field, Role::Relay];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Command => "command",
            Role::Township => "township",
            Role::Field => "field",
            Role::Relay => "relay",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ParseError::Role(s.to_owned()))
    }
}

/// The kind of network a link runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Medium {
    Satellite,
    Wireless,
    Public,
}

impl Medium {
    pub const ALL: [Medium; 3] = [Medium::Satellite, Medium::Wireless, Medium::Public];

    pub fn as_str(self) -> &'static str {
        match self {
            Medium::Satellite => "satellite",
            Medium::Wireless => "wireless",
            Medium::Public => "public",
        }
    }
}

impl fmt::Display for Medium {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Medium {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Medium::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseError::Medium(s.to_owned()))
    }
}

/// Message precedence; `Ord` puts FLASH highest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precedence {
    Routine = 0,
    Priority = 1,
    Immediate = 2,
    Flash = 3,
}

impl Precedence {
    /// Highest first: the order every queue drains in.
    pub const DESCENDING: [Precedence; 4] =
        [Precedence::Flash, Precedence::Immediate, Precedence::Priority, Precedence::Routine];

    pub fn as_str(self) -> &'static str {
        match self {
            Precedence::Flash => "flash",
            Precedence::Immediate => "immediate",
            Precedence::Priority => "priority",
            Precedence::Routine => "routine",
        }
    }

    /// 0 for FLASH .. 3 for ROUTINE: sorts highest first in byte-ordered keys.
    pub fn rank(self) -> u8 {
        3 - self as u8
    }

    /// Index 0..4 with ROUTINE = 0, for per-precedence arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Option<Precedence> {
        match i {
            0 => Some(Precedence::Routine),
            1 => Some(Precedence::Priority),
            2 => Some(Precedence::Immediate),
            3 => Some(Precedence::Flash),
            _ => None,
        }
    }

    pub fn from_rank(r: u8) -> Option<Precedence> {
        3u8.checked_sub(r).and_then(|i| Precedence::from_index(i as usize))
    }
}

impl fmt::Display for Precedence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Precedence {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precedence::DESCENDING
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ParseError::Precedence(s.to_owned()))
    }
}

/// A group: the built-in `all` and `role:<role>`, or a name from configuration.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    All,
    Role(Role),
    Named(String),
}

impl Group {
    pub fn parse(s: &str) -> Result<Group, ParseError> {
        if s == "all" {
            return Ok(Group::All);
        }
        if let Some(r) = s.strip_prefix("role:") {
            return Ok(Group::Role(r.parse()?));
        }
        let valid = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
        if valid {
            Ok(Group::Named(s.to_owned()))
        } else {
            Err(ParseError::Address(
                format!("group:{s}"),
                "group names are [a-z0-9_-]{1,63}, `all` or `role:<role>`",
            ))
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::All => f.write_str("all"),
            Group::Role(r) => write!(f, "role:{r}"),
            Group::Named(n) => f.write_str(n),
        }
    }
}

/// Where a message is going.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Address {
    Node(NodeId),
    Group(Group),
    /// A concrete topic path (no wildcards), e.g. `alerts/flood/north`.
    Topic(String),
}

impl Address {
    pub fn parse(s: &str) -> Result<Address, ParseError> {
        if let Some(id) = s.strip_prefix("node:") {
            return NodeId::new(id)
                .map(Address::Node)
                .map_err(|_| ParseError::Address(s.to_owned(), "node:<id> needs a valid node id"));
        }
        if let Some(g) = s.strip_prefix("group:") {
            return Group::parse(g).map(Address::Group);
        }
        if let Some(t) = s.strip_prefix("topic:") {
            validate_topic(t, false).map_err(|why| ParseError::Address(s.to_owned(), why))?;
            return Ok(Address::Topic(t.to_owned()));
        }
        Err(ParseError::Address(s.to_owned(), "expected node:<id>, group:<name> or topic:<path>"))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Node(n) => write!(f, "node:{n}"),
            Address::Group(g) => write!(f, "group:{g}"),
            Address::Topic(t) => write!(f, "topic:{t}"),
        }
    }
}

impl FromStr for Address {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

/// Checks a topic path or (with `wildcards`) a subscription pattern.
fn validate_topic(t: &str, wildcards: bool) -> Result<(), &'static str> {
    if t.is_empty() || t.len() > 255 {
        return Err("topics are 1 to 255 bytes");
    }
    let levels: Vec<&str> = t.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.chars().any(|c| c.is_control()) {
            return Err("topics may not contain control characters");
        }
        let has_wild = level.contains('+') || level.contains('#');
        if !has_wild {
            continue;
        }
        if !wildcards {
            return Err("a published topic may not contain `+` or `#`");
        }
        match *level {
            "+" => {}
            "#" if i == levels.len() - 1 => {}
            "#" => return Err("`#` is only allowed as the last level"),
            _ => return Err("`+` and `#` must stand alone in their level"),
        }
    }
    Ok(())
}

/// A subscription pattern with MQTT-style wildcards: `+` one level, `#` the rest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPattern(String);

impl TopicPattern {
    pub fn new(s: &str) -> Result<TopicPattern, ParseError> {
        validate_topic(s, true).map_err(|why| ParseError::TopicPattern(s.to_owned(), why))?;
        Ok(TopicPattern(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the concrete `topic` matches this pattern.
    pub fn matches(&self, topic: &str) -> bool {
        let mut pat = self.0.split('/');
        let mut top = topic.split('/');
        loop {
            match (pat.next(), top.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(p), Some(t)) if p == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message id: 16 bytes, unique per origin, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    pub fn from_slice(b: &[u8]) -> Option<MessageId> {
        <[u8; 16]>::try_from(b).ok().map(MessageId)
    }

    pub fn parse_hex(s: &str) -> Result<MessageId, ParseError> {
        let err = || ParseError::MessageId(s.to_owned());
        if s.len() != 32 {
            return Err(err());
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(err)?, 16)
                .map_err(|_| err())?;
        }
        Ok(MessageId(out))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Application message, end-to-end report, or the recall of an earlier message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Data,
    Report(Report),
    /// Recalls the message named in `Envelope::supersedes` wherever this reaches: held copies
    /// are dropped, a delivered copy is marked cancelled, a copy arriving later is never
    /// delivered. `reason` is the operator's, for the recipients. With `replaced_by` it is
    /// the notice a replacement sends ahead of itself: the target is then superseded by that
    /// message, not cancelled.
    Cancel {
        reason: String,
        replaced_by: Option<MessageId>,
    },
}

/// The message an envelope cancels (`Body::Cancel`) or replaces (`Body::Data`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Supersedes {
    /// The target's origin: the envelope's own, or another's when its origin's role may
    /// override (`Policy::override_roles`).
    pub origin: NodeId,
    pub id: MessageId,
}

/// The longest latest-value key, in bytes.
pub const MAX_KEY: usize = 128;

/// Checks a latest-value key: 1 to 128 bytes of a topic-like path (no wildcards).
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(format!("a key is 1 to {MAX_KEY} bytes, not {}", key.len()));
    }
    validate_topic(key, false)
        .map_err(|why| format!("key {key:?}: {}", why.replace("a published topic", "a key")))
}

/// CAP-style message status; exercise and test traffic is never shown as actual.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TrafficStatus {
    #[default]
    Actual,
    Exercise,
    Test,
    /// For the alerting network itself (CAP's `System`: heartbeats, tests of the chain), not
    /// for the public.
    System,
}

impl TrafficStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficStatus::Actual => "actual",
            TrafficStatus::Exercise => "exercise",
            TrafficStatus::Test => "test",
            TrafficStatus::System => "system",
        }
    }
}

impl FromStr for TrafficStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "actual" => Ok(TrafficStatus::Actual),
            "exercise" => Ok(TrafficStatus::Exercise),
            "test" => Ok(TrafficStatus::Test),
            "system" => Ok(TrafficStatus::System),
            _ => Err(format!("invalid status {s:?}: expected actual, exercise, test or system")),
        }
    }
}

/// The fate of a message, reported end to end back to its origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Delivered,
    Expired,
    Refused,
    /// Recalled by a cancel before it reached the destination.
    Cancelled,
    /// Dropped for a newer message: one that replaces it, or a newer one with its key.
    Superseded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Expired => "expired",
            Outcome::Refused => "refused",
            Outcome::Cancelled => "cancelled",
            Outcome::Superseded => "superseded",
        }
    }
}

/// An end-to-end report about message `of`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub of: MessageId,
    pub outcome: Outcome,
    pub at_node: NodeId,
    pub age: Duration,
    pub reason: String,
    /// The destinations this fate applies to.
    pub destinations: Vec<NodeId>,
}

/// A message in transit, as the core sees it.
///
/// `id` .. `created` and `signature` are fixed by the origin; `age`, `hop_count` and
/// `destinations` change at every hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub id: MessageId,
    pub origin: NodeId,
    pub to: Address,
    pub precedence: Precedence,
    pub lifetime: Duration,
    pub content_type: String,
    pub payload: Bytes,
    pub receipt: bool,
    pub body: Body,
    pub status: TrafficStatus,
    /// Origin's clock at submission: informative only, never used for expiry.
    pub created: Time,
    pub age: Duration,
    pub hop_count: u32,
    /// Nodes this copy still has to reach (sorted, no duplicates).
    pub destinations: Vec<NodeId>,
    /// The origin's seal: its signature over the batch this envelope was signed in, and the
    /// envelope's path to the batch's root (see `core::trust::seal_batch`).
    pub signature: Bytes,
    /// Latest-value key: of an origin's messages with the same key only the newest travels
    /// and is delivered (see `core::steering`).
    pub key: Option<String>,
    /// The message this one cancels or replaces.
    pub supersedes: Option<Supersedes>,
}

impl Envelope {
    /// Bytes this envelope occupies for quota and window accounting (payload plus headers).
    pub fn weight(&self) -> u64 {
        self.payload.len() as u64
            + self.content_type.len() as u64
            // The seal at its largest, so the weight is the same before and after signing.
            + super::trust::MAX_SEAL as u64
            + self.destinations.iter().map(|d| d.as_str().len() as u64 + 2).sum::<u64>()
            + self.key.as_ref().map_or(0, |k| k.len() as u64 + 2)
            + self.supersedes.as_ref().map_or(0, |s| s.origin.as_str().len() as u64 + 20)
            + match &self.body {
                Body::Cancel { reason, .. } => reason.len() as u64 + 18,
                _ => 0,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_id_is_one_allocation_however_often_it_is_decoded_and_dead_ones_are_swept() {
        let a = NodeId::new("township-7").unwrap();
        let b = NodeId::new("township-7").unwrap();
        assert!(Arc::ptr_eq(&a.0, &b.0), "the same allocation");
        // A stream of ids nobody keeps (a hostile peer's) does not grow the table for ever.
        for i in 0..100_000 {
            NodeId::new(&format!("forged-{i}")).unwrap();
        }
        let held = IDS.lock().unwrap().len();
        assert!(held < 10_000, "{held} ids still in the table");
        assert!(Arc::ptr_eq(&a.0, &NodeId::new("township-7").unwrap().0), "live ids stay");
    }

    #[test]
    fn identical_bytes_kept_by_many_share_one_allocation_until_none_holds_them() {
        let cert = vec![7u8; 600];
        let a = shared_bytes(&cert);
        let b = shared_bytes(&cert);
        assert_eq!(a, b);
        assert_eq!(a.as_ptr(), b.as_ptr(), "one allocation");
        assert_ne!(shared_bytes(&[8u8; 600]).as_ptr(), a.as_ptr(), "other contents, other bytes");
        for i in 0u32..100_000 {
            shared_bytes(&i.to_be_bytes());
        }
        let held = BYTES.lock().unwrap().len();
        assert!(held < 10_000, "{held} contents still in the table");
        assert_eq!(shared_bytes(&cert).as_ptr(), a.as_ptr(), "held contents stay");
    }

    #[test]
    fn node_ids() {
        for ok in ["a", "county-hq", "team-rescue-7", "0", &"x".repeat(63)] {
            assert!(NodeId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a.b", &"x".repeat(64), "é"] {
            assert!(NodeId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_round_trip() {
        for s in [
            "node:county-hq",
            "group:all",
            "group:role:township",
            "group:medical",
            "topic:alerts/flood/north",
        ] {
            let a = Address::parse(s).unwrap();
            assert_eq!(a.to_string(), s);
        }
        for bad in ["county-hq", "node:", "group:role:mayor", "group:Bad", "topic:a/+/b", "topic:"]
        {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_patterns() {
        let check = |pat: &str, topic: &str, want: bool| {
            let p = TopicPattern::new(pat).unwrap();
            assert_eq!(p.matches(topic), want, "{pat} vs {topic}");
        };
        check("alerts/#", "alerts/flood/north", true);
        check("alerts/#", "alerts", true);
        check("alerts/+/north", "alerts/flood/north", true);
        check("alerts/+/north", "alerts/flood/south", false);
        check("alerts/+", "alerts/flood/north", false);
        check("#", "anything/at/all", true);
        check("a/b", "a/b", true);
        check("a/b", "a/b/c", false);
        for bad in ["a/#/b", "a/b+", "", "a/#x"] {
            assert!(TopicPattern::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn precedence_order_and_rank() {
        assert!(Precedence::Flash > Precedence::Routine);
        assert_eq!(Precedence::Flash.rank(), 0);
        assert_eq!(Precedence::Routine.rank(), 3);
        for p in Precedence::DESCENDING {
            assert_eq!(Precedence::from_rank(p.rank()), Some(p));
            assert_eq!(Precedence::from_index(p.index()), Some(p));
            assert_eq!(p.as_str().parse::<Precedence>(), Ok(p));
        }
    }

    #[test]
    fn message_id_hex() {
        let id = MessageId([0xab; 16]);
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(MessageId::parse_hex(&s), Ok(id));
        assert!(MessageId::parse_hex("zz").is_err());
        assert!(MessageId::parse_hex(&"g".repeat(32)).is_err());
    }
}
