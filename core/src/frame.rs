//! What relays say to each other, as domain values, and what the core keeps in its store.
//!
//! `crate::wire` turns these into protobuf and back; nothing else sees the generated types.

use std::time::Duration;

use super::types::{Envelope, Medium, MessageId, NodeId, Role, Time, TopicPattern};

/// A frame exchanged with a neighbour after the `Hello` handshake.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// A custody offer: the sender keeps its copy until the receiver answers offer number
    /// `offer` (unique per link and direction) with a [`CustodyResult`].
    Offer { offer: u64, envelope: Envelope },
    /// The receiver's answers to custody offers.
    Custody(Vec<CustodyResult>),
    /// Link probe (sent as a datagram by the dialling side), with the prober's measurements.
    Probe { seq: u64, rtt_us: u32, loss_ppm: u32 },
    /// Answer to a probe.
    ProbeAck { seq: u64 },
    /// A node's link-state advert, flooded hop by hop.
    LinkState(Advert),
    /// What the sender holds: the (node, seq) pairs of its adverts and membership, and its
    /// area (`""`: none), which says what adverts it takes.
    LsdbSummary { area: String, held: Vec<(NodeId, u64)> },
    /// The deployment CA's revocation list (X.509 CRL, DER), flooded like an advert.
    Revocations(bytes::Bytes),
    /// Custody acceptances in little room (to a neighbour that announced `compact-v1`): the
    /// offer numbers accepted, each with the first two bytes of its message id.
    Accepted(Vec<Accepted>),
}

/// One acceptance of an [`Frame::Accepted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub offer: u64,
    /// The first two bytes of the accepted message's id.
    pub fingerprint: [u8; 2],
}

impl Frame {
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Offer { .. } => "offer",
            Frame::Custody(_) => "custody",
            Frame::Probe { .. } => "probe",
            Frame::ProbeAck { .. } => "probe_ack",
            Frame::LinkState(_) => "link_state",
            Frame::LsdbSummary { .. } => "lsdb_summary",
            Frame::Revocations(_) => "revocations",
            Frame::Accepted(_) => "accepted",
        }
    }
}

/// The receiver's answer to one custody offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustodyResult {
    pub offer: u64,
    pub id: MessageId,
    pub code: CustodyCode,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustodyCode {
    /// Stored durably: the sender may delete its copy.
    Accepted,
    /// Temporarily refused (storage full or failing): try later or elsewhere.
    Busy,
    /// Refused by policy, permanently.
    Policy,
    /// Arrived expired; the receiver counted and dropped it.
    Expired,
    /// Malformed or not acceptable from this sender.
    Invalid,
}

/// One node's advert in the link-state database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub node: NodeId,
    pub role: Role,
    pub seq: u64,
    /// How long the advert is valid without a refresh.
    pub lifetime: Duration,
    /// Accumulated age in the network.
    pub age: Duration,
    pub links: Vec<AdvertLink>,
    pub groups: Vec<String>,
    pub subscriptions: Vec<TopicPattern>,
    /// The node's CA-issued certificate (DER), which carries its signing key.
    pub certificate: bytes::Bytes,
    /// The node's signature over everything but `age` and `previous_certificates` (see
    /// `core::trust::advert_signed_bytes`).
    pub signature: bytes::Bytes,
    /// Certificates of keys the node signed with before its current one, while messages it
    /// signed with them may still be alive (key rotation). Each proves itself: the CA signed
    /// it for this node.
    pub previous_certificates: Vec<bytes::Bytes>,
    /// The node's area (`""` when the deployment is not split into areas).
    pub area: String,
    /// Set by an area border only: its [`AreaMember`]s, encoded as they were signed
    /// (`wire::decode_area_summary` reads them). Kept as bytes: a border advert crosses every
    /// area and every node holds one of each border, so it is read when routes are computed
    /// and otherwise only stored.
    pub summary: bytes::Bytes,
}

impl Advert {
    /// Whether it is an area border's, which every area takes.
    pub fn is_border(&self) -> bool {
        !self.summary.is_empty()
    }
}

/// A member of an area, as a border of the area summarises it for the rest of the deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AreaMember {
    pub node: NodeId,
    pub role: Role,
    /// The sequence number of the member's advert the border read this from.
    pub seq: u64,
    pub groups: Vec<String>,
    pub subscriptions: Vec<TopicPattern>,
    /// Path cost from the border inside the area, per precedence index, then for late
    /// messages below FLASH; `None`: no path.
    pub costs: [Option<u64>; 5],
}

/// One of the advertising node's links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvertLink {
    pub neighbour: NodeId,
    pub medium: Medium,
    pub rtt: Duration,
    /// Loss ratio in parts per million.
    pub loss_ppm: u32,
    pub bandwidth_bps: u64,
    pub up: bool,
}

/// A held envelope as stored: `envelope.destinations` are the nodes this node still owes it to.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    pub envelope: Envelope,
    pub received_at: Time,
    /// Previous hop; `None` when it was submitted here.
    pub from: Option<NodeId>,
}

impl StoredMessage {
    /// When its lifetime runs out here (the time of its `Expiry` key).
    pub fn deadline(&self) -> Time {
        self.received_at + self.envelope.lifetime.saturating_sub(self.envelope.age)
    }
}

/// A message delivered to this node's applications.
#[derive(Clone, Debug, PartialEq)]
pub struct InboxRecord {
    pub envelope: Envelope,
    pub delivered_at: Time,
    pub age: Duration,
    /// Set once a cancel or a newer message withdrew it.
    pub withdrawn: Option<Withdrawal>,
}

/// Why a delivered message no longer stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withdrawal {
    /// The cancel, or the newer message (a replacement or a newer one with the same key).
    pub by: MessageId,
    /// `Cancelled` or `Superseded`.
    pub outcome: super::types::Outcome,
    pub reason: String,
    pub at: Time,
}

/// A message recalled or replaced before it reached this node: when it arrives, it is
/// neither held nor delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// The target's origin; `None` while only its id is known (a local cancel of a message
    /// not seen here yet).
    pub origin: Option<NodeId>,
    pub by: MessageId,
    pub outcome: super::types::Outcome,
    pub reason: String,
    pub until: Time,
}

/// The newest message seen at this node of one (origin, key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatestKey {
    pub id: MessageId,
    pub created: Time,
    pub until: Time,
}

/// What the origin knows about a message it sent.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct StatusRecord {
    pub id: MessageId,
    pub to: String,
    pub precedence: Option<super::types::Precedence>,
    pub accepted_at: Time,
    pub lifetime: Duration,
    pub receipt: bool,
    /// The nodes the address resolved to when it was accepted.
    pub destinations: Vec<NodeId>,
    /// The last node known to hold custody of it (this node until a neighbour accepts it).
    pub custody_at: Option<NodeId>,
    pub reports: Vec<StatusReport>,
    /// The cancel this node sent for it.
    pub cancelled_by: Option<MessageId>,
    pub key: Option<String>,
    pub replaces: Option<MessageId>,
    /// Set on a cancel: the message it recalls.
    pub cancels: Option<MessageId>,
    /// A newer message of this node took its place (a replacement, or newer with its key).
    pub replaced_by: Option<MessageId>,
}

/// One end-to-end report received (or produced locally) about a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusReport {
    /// Where the message's fate was decided.
    pub node: NodeId,
    pub outcome: super::types::Outcome,
    pub age: Duration,
    pub reason: String,
    pub at: Time,
    /// The destinations this fate applies to.
    pub destinations: Vec<NodeId>,
}
