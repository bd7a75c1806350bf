//! The local API's documents as types: the server writes them, and the command line, the
//! tests and the benchmarks read them, with the same definitions, so a renamed or retyped
//! field is a compile error or a clear "bad answer from the node", never a silent fallback.

use serde::{Deserialize, Serialize};

use crate::core::{InboxItem, MessageView, Precedence};
use crate::shell::driver::Snapshot;

/// Any error answer: `{"error": "..."}` with a 4xx or 5xx status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDoc {
    pub error: String,
}

/// `GET /v1/messages/{id}`: a message this node originated, as far as it knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageDoc {
    /// 32 hex digits.
    pub id: String,
    pub to: String,
    pub precedence: String,
    /// `held`, `forwarded`, `delivered`, `partially_delivered`, `expired`, `refused`,
    /// `cancelled`, `superseded` or `no_recipients`.
    pub state: String,
    /// Every destination's fate is known.
    pub settled: bool,
    pub accepted_at_us: u64,
    pub custody_at: Option<String>,
    pub receipt: bool,
    pub destinations: Vec<DestinationDoc>,
    /// The cancel this node sent for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
    /// Its latest-value key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The message it replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// Set on a cancel: the message it recalls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancels: Option<String>,
    /// A newer message of this node took its place (a replacement, or newer with its key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
}

/// One destination of a [`MessageDoc`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DestinationDoc {
    pub node: String,
    /// `delivered`, `expired`, `refused`, `cancelled` or `superseded`; `None` while
    /// pending.
    pub outcome: Option<String>,
    pub age_ms: Option<f64>,
    pub reason: String,
    /// Past the message's delivery objective with no outcome yet.
    #[serde(default)]
    pub overdue: bool,
}

impl MessageDoc {
    /// The destinations whose outcome is `outcome`.
    pub fn with_outcome(&self, outcome: &str) -> Vec<&str> {
        self.destinations
            .iter()
            .filter(|d| d.outcome.as_deref() == Some(outcome))
            .map(|d| d.node.as_str())
            .collect()
    }
}

impl From<&MessageView> for MessageDoc {
    fn from(v: &MessageView) -> MessageDoc {
        MessageDoc {
            id: v.id.to_string(),
            to: v.to.clone(),
            precedence: v.precedence.as_str().to_owned(),
            state: v.state.to_owned(),
            settled: v.settled,
            accepted_at_us: v.accepted_at.as_micros(),
            custody_at: v.custody_at.as_ref().map(ToString::to_string),
            receipt: v.receipt,
            destinations: v
                .destinations
                .iter()
                .map(|d| DestinationDoc {
                    node: d.node.to_string(),
                    outcome: d.outcome.map(|o| o.as_str().to_owned()),
                    age_ms: d.age.map(|a| a.as_micros() as f64 / 1000.0),
                    reason: d.reason.clone(),
                    overdue: d.overdue,
                })
                .collect(),
            cancelled_by: v.cancelled_by.map(|i| i.to_string()),
            key: v.key.clone(),
            replaces: v.replaces.map(|i| i.to_string()),
            cancels: v.cancels.map(|i| i.to_string()),
            replaced_by: v.replaced_by.map(|i| i.to_string()),
        }
    }
}

/// `POST /v1/messages`: a message to send. Unknown fields are refused (400), so a misspelt
/// option is an error, not a silent default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// `node:<id>`, `group:<name>` (also `all`, `role:<role>`) or `topic:<path>`.
    pub to: String,
    /// Default `routine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precedence: Option<String>,
    /// `"1h"`, `"90s"`, ... (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The payload as text ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// ... or as base64 (not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_b64: Option<String>,
    /// A delivery receipt is wanted (default yes).
    #[serde(default = "yes")]
    pub receipt: bool,
    /// `actual` (default), `exercise`, `test` or `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Latest-value key (`pos/team-07`): of this node's messages with the same key, only the
    /// newest travels and is delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The id of a message this one replaces (32 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// `POST /v1/messages/{id}/cancel`: the body is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Shown to the recipients with the recalled message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The cancel travels at the target's precedence, or this one if higher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precedence: Option<String>,
}

/// `POST /v1/messages/{id}/cancel`: the cancel's own id (its status shows where it reached).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CancelDoc {
    pub id: String,
    /// The recalled message.
    pub target: String,
    /// `sent`, or `pending` when the target is not known here yet (it is dropped if it ever
    /// arrives, and the cancel leaves then).
    pub state: String,
    /// The target's origin, when it is another node (an override by role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrode: Option<String>,
}

/// Why a delivered message no longer stands (in an inbox entry, or a `withdrawn` event of
/// `/v1/inbox/stream` and `/v1/status/stream`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WithdrawnDoc {
    /// The inbox entry.
    pub cursor: u64,
    /// The withdrawn message.
    pub id: String,
    /// `cancelled` or `superseded`.
    pub outcome: String,
    /// The cancel, or the message that replaced it or is newer with its key.
    pub by: String,
    pub reason: String,
}

fn yes() -> bool {
    true
}

/// `POST/DELETE /v1/subscriptions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternRequest {
    pub pattern: String,
}

/// `POST/DELETE /v1/groups`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    pub group: String,
}

/// `POST /v1/inbox/read`: everything up to and including `cursor` is read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    pub cursor: u64,
}

/// `POST /v1/messages`: the new message's id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmitDoc {
    pub id: String,
}

/// `POST /v1/objects`: the object as it was taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectSubmitDoc {
    /// The object's id (32 hex digits), also its manifest message's: `GET /v1/messages/{id}`
    /// tells its delivery.
    pub id: String,
    pub name: String,
    /// Bytes of the object.
    pub size: u64,
    /// Bytes as it travels (compressed when `zstd`).
    pub encoded_size: u64,
    pub zstd: bool,
    pub chunks: u32,
    pub chunk_size: u32,
}

/// A delivered object, as its inbox item shows it (`GET /v1/objects/{id}` has its bytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectDoc {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    pub chunks: u32,
    pub zstd: bool,
}

impl From<&crate::core::objects::Manifest> for ObjectDoc {
    fn from(m: &crate::core::objects::Manifest) -> ObjectDoc {
        ObjectDoc {
            name: m.name.clone(),
            content_type: m.content_type.clone(),
            size: m.size,
            sha256: m.sha256.iter().map(|b| format!("{b:02x}")).collect(),
            chunks: m.chunks.len() as u32,
            zstd: m.zstd,
        }
    }
}

/// `GET /v1/objects/{id}/progress`: how far an object has got, as this node sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectProgressDoc {
    pub id: String,
    /// Once this node has its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectDoc>,
    /// As a destination: chunks here.
    pub received: u32,
    /// As a destination: delivered (its inbox cursor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    /// As a destination: refused, its chunks not matching its manifest.
    pub refused: bool,
    /// As the origin: chunks in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_chunks: Option<u32>,
    /// As the origin: chunks whose custody has passed on from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed_on: Option<u32>,
    /// As the origin: the object's state (as a message's: `delivered`, `expired`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// One line: `chunks 37/120 received`, `chunks 120/120 passed on, delivered`.
    pub summary: String,
}

/// `GET /v1/objects` (and the `objects` event of `/v1/status/stream`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectsDoc {
    pub objects: Vec<ObjectProgressDoc>,
}

/// `GET /v1/groups`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupsDoc {
    pub groups: Vec<String>,
}

/// `POST/DELETE /v1/groups`: what was asked, and whether it changed anything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupChangeDoc {
    pub group: String,
    pub changed: bool,
}

/// `GET /v1/subscriptions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionsDoc {
    pub subscriptions: Vec<String>,
}

/// `POST/DELETE /v1/subscriptions`: what was asked, and whether it changed anything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionChangeDoc {
    pub pattern: String,
    pub changed: bool,
}

/// `POST /v1/cap/alerts`: the messages an alert became (`201`), or had become (`200`,
/// `duplicate`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapIngestDoc {
    pub duplicate: bool,
    pub messages: Vec<CapMessageDoc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapMessageDoc {
    /// The address.
    pub to: String,
    /// The message's id (32 hex digits).
    pub id: String,
}

/// `GET /v1/gateways`: which gateways run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewaysDoc {
    /// Whether the CAP gateway (`POST /v1/cap/alerts`, `GET /v1/cap/feed`) is configured.
    pub cap: bool,
    /// The MQTT bridge's counters, if it is configured.
    pub mqtt: Option<MqttDoc>,
}

/// What the MQTT bridge did since the node started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MqttDoc {
    /// Whether the bridge is connected to its broker now.
    pub connected: bool,
    /// Readings the node took.
    pub taken: u64,
    /// Readings that could not be taken: no valid address or key, or refused by the node.
    pub refused: u64,
    /// Connection failures.
    pub broker_errors: u64,
    /// Messages handed to the MQTT client for the broker.
    pub published: u64,
}

/// `GET /v1/inbox`: a page of the inbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxDoc {
    pub messages: Vec<InboxMessageDoc>,
    /// The cursor of the last message read for this page (shown or filtered out), if any.
    pub last: Option<u64>,
}

/// One delivered message: an inbox entry, an `/v1/inbox/stream` event, a `listen --json` line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxMessageDoc {
    /// 32 hex digits.
    pub id: String,
    pub origin: String,
    pub to: String,
    pub precedence: String,
    pub content_type: String,
    pub age_ms: f64,
    pub cursor: u64,
    /// The sender's traffic status: `actual`, `exercise`, `test` or `system`.
    pub status: String,
    /// The payload, when it is UTF-8 ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// ... or else base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_b64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The message this one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// Set once a cancel or a newer message withdrew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<WithdrawnDoc>,
    /// A delivered object (content type `application/vnd.relaymesh.object`; no body): its
    /// bytes are at `GET /v1/objects/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectDoc>,
}

impl From<&InboxItem> for InboxMessageDoc {
    fn from(item: &InboxItem) -> InboxMessageDoc {
        use base64::Engine;
        let e = &item.record.envelope;
        let object = (e.content_type == crate::core::objects::OBJECT_CONTENT_TYPE)
            .then(|| crate::core::wire::objects::decode_manifest(&e.payload).ok())
            .flatten();
        let (body, body_b64) = match std::str::from_utf8(&e.payload) {
            _ if object.is_some() => (None, None),
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&e.payload))),
        };
        InboxMessageDoc {
            id: e.id.to_string(),
            origin: e.origin.to_string(),
            to: e.to.to_string(),
            precedence: e.precedence.as_str().to_owned(),
            content_type: e.content_type.clone(),
            age_ms: item.record.age.as_micros() as f64 / 1000.0,
            cursor: item.cursor,
            status: e.status.as_str().to_owned(),
            body,
            body_b64,
            key: e.key.clone(),
            replaces: match e.body {
                crate::core::types::Body::Data => e.supersedes.as_ref().map(|t| t.id.to_string()),
                _ => None,
            },
            withdrawn: item.record.withdrawn.as_ref().map(|w| WithdrawnDoc {
                cursor: item.cursor,
                id: e.id.to_string(),
                outcome: w.outcome.as_str().to_owned(),
                by: w.by.to_string(),
                reason: w.reason.clone(),
            }),
            object: object.as_ref().map(ObjectDoc::from),
        }
    }
}

/// One value per precedence, keyed by its name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PerPrecedence<T> {
    pub flash: T,
    pub immediate: T,
    pub priority: T,
    pub routine: T,
}

impl<T> PerPrecedence<T> {
    /// Built from `f(precedence index)`.
    pub fn from_fn(mut f: impl FnMut(usize) -> T) -> PerPrecedence<T> {
        PerPrecedence {
            flash: f(Precedence::Flash.index()),
            immediate: f(Precedence::Immediate.index()),
            priority: f(Precedence::Priority.index()),
            routine: f(Precedence::Routine.index()),
        }
    }

    pub fn get(&self, p: Precedence) -> &T {
        match p {
            Precedence::Flash => &self.flash,
            Precedence::Immediate => &self.immediate,
            Precedence::Priority => &self.priority,
            Precedence::Routine => &self.routine,
        }
    }

    /// Highest precedence first.
    pub fn iter(&self) -> impl Iterator<Item = (Precedence, &T)> {
        Precedence::DESCENDING.into_iter().map(move |p| (p, self.get(p)))
    }
}

/// `GET /v1/links`: every link with its counters and the bytes it carried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinksDoc {
    pub links: Vec<LinkDoc>,
}

/// `GET /v1/status` (and `relaymesh status --json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    pub node: String,
    pub role: String,
    pub uptime_s: f64,
    pub links: Vec<LinkDoc>,
    pub routes: Vec<RouteDoc>,
    /// Messages held.
    pub queues: PerPrecedence<u64>,
    /// Destinations of this node's messages past their delivery objective now.
    #[serde(default)]
    pub overdue: PerPrecedence<u64>,
    pub held_bytes: u64,
    pub capacity_bytes: u64,
    pub counters: PerPrecedence<CountersDoc>,
    pub store_failures: u64,
    pub security: SecurityDoc,
    pub store: StoreDoc,
    /// Recent connections refused at the handshake or `Hello`.
    pub refused_links: Vec<RefusedLinkDoc>,
    /// Recent frames that did not decode, per link.
    pub bad_frames: Vec<BadFrameDoc>,
    pub subscriptions: Vec<String>,
    pub groups: Vec<String>,
    /// The first invariant found broken, when the node checks them (simulations).
    pub invariant_violation: Option<String>,
    /// Every node counted as a member of some group or topic, reachable or not.
    pub members: Vec<String>,
    /// Every node with a route or a link.
    pub known_nodes: Vec<String>,
    /// The deployment of each known node that belongs to another one (`[[federation]]`);
    /// nodes not listed are this deployment's.
    #[serde(default)]
    pub deployments: std::collections::BTreeMap<String, String>,
    pub inbox: InboxCountsDoc,
    /// This node's certificate (the one it signs with now).
    #[serde(default)]
    pub certificate: Option<CertificateDoc>,
    /// The mesh as this node knows it: its own links and those its held adverts describe.
    #[serde(default)]
    pub topology: Vec<TopologyLinkDoc>,
    /// Named groups (`group:<name>`) and topic patterns announced by this node or in the
    /// adverts it holds.
    #[serde(default)]
    pub known_groups: Vec<String>,
    #[serde(default)]
    pub known_topics: Vec<String>,
}

/// One link of the mesh as its owner describes it (`GET /v1/status`, `topology`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopologyLinkDoc {
    pub from: String,
    pub from_role: String,
    pub to: String,
    pub medium: String,
    pub up: bool,
    pub rtt_ms: Option<f64>,
    pub loss: f64,
}

/// `GET /v1/overdue`: destinations of this node's messages past their delivery objective
/// with no outcome yet, most urgent precedence first, then longest overdue first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverdueDoc {
    pub overdue: Vec<OverdueItemDoc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverdueItemDoc {
    pub id: String,
    pub to: String,
    pub precedence: String,
    pub destination: String,
    pub accepted_at_us: u64,
    /// When the objective ran out (node clock, µs).
    pub due_at_us: u64,
}

impl From<&crate::core::OverdueView> for OverdueItemDoc {
    fn from(v: &crate::core::OverdueView) -> OverdueItemDoc {
        OverdueItemDoc {
            id: v.id.to_string(),
            to: v.to.clone(),
            precedence: v.precedence.as_str().to_owned(),
            destination: v.destination.to_string(),
            accepted_at_us: v.accepted_at.as_micros(),
            due_at_us: v.due.as_micros(),
        }
    }
}

/// `GET /v1/messages`: this node's own messages, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SentDoc {
    pub messages: Vec<MessageDoc>,
}

/// `POST /v1/login`'s answer (the session itself is an HttpOnly cookie), and `GET /v1/session`'s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionDoc {
    /// Who logged in: the token's user name (`node` for the node's own `api_token`).
    pub user: String,
    /// Send it back as `X-CSRF-Token` with every request that changes something.
    pub csrf: String,
    /// Seconds until the session ends (none: loopback, no login needed).
    pub expires_in_s: Option<f64>,
}

/// `POST /v1/login`'s body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub token: String,
}

/// When a certificate expires, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertificateDoc {
    /// Seconds since the Unix epoch.
    pub not_after: u64,
    /// Seconds left (negative once expired), by the node's clock.
    pub expires_in_s: f64,
    /// Less than 30 days left: renew it (`relaymesh pki renew`).
    pub renew_soon: bool,
    /// The certificate's serial number (hex), as `pki` ledgers and revocation lists name it;
    /// shown for the node's own certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serial: String,
    /// Why the latest reload of the node's credentials failed (the running ones stay), until
    /// one works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_error: Option<String>,
}

impl CertificateDoc {
    pub fn new(not_after: std::time::SystemTime, now: std::time::SystemTime) -> CertificateDoc {
        let left = match not_after.duration_since(now) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        CertificateDoc {
            not_after: not_after.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            expires_in_s: left,
            renew_soon: left < crate::pki::EXPIRY_WARNING.as_secs_f64(),
            serial: String::new(),
            reload_error: None,
        }
    }
}

/// One link of a [`StatusDoc`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkDoc {
    pub id: u64,
    pub peer: String,
    pub role: String,
    pub medium: String,
    pub up: bool,
    pub addr: Option<String>,
    pub since_s: f64,
    pub rtt_ms: Option<f64>,
    pub loss: f64,
    pub inflight: u64,
    /// Bytes of those offers.
    #[serde(default)]
    pub inflight_bytes: u64,
    /// Link-state adverts waiting for room under the medium's `control_share`.
    #[serde(default)]
    pub adverts_waiting: u64,
    pub offered: u64,
    pub accepted: u64,
    pub refused: u64,
    pub bytes_offered: u64,
    pub probes_sent: u64,
    pub probes_answered: u64,
    /// Bytes the link carried in each direction: offers and their payload, relaymesh's
    /// framing, control frames, probes and QUIC's UDP bytes (see `shell::traffic`). Counted
    /// per neighbour and medium since the node started; zero for a link never connected.
    #[serde(default)]
    pub bytes: crate::shell::traffic::WireBytes,
    /// The certificate the peer presented on this link.
    #[serde(default)]
    pub certificate: Option<CertificateDoc>,
}

/// One route of a [`StatusDoc`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteDoc {
    pub destination: String,
    pub precedence: String,
    pub next_hop: String,
    pub cost: u64,
}

/// Message counts of one precedence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CountersDoc {
    pub submitted: u64,
    pub received: u64,
    pub forwarded: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub expired: u64,
    pub refused: u64,
    pub no_recipients: u64,
    /// Copies dropped here for a cancel, and for a newer message.
    #[serde(default)]
    pub cancelled: u64,
    #[serde(default)]
    pub superseded: u64,
    /// Late messages offered over a route their precedence avoids on time.
    #[serde(default)]
    pub escalated: u64,
}

/// Signatures and what was refused for them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecurityDoc {
    pub signatures: bool,
    /// Number of the revocation list in effect.
    pub revocation_list: Option<u64>,
    pub forged: u64,
    pub revoked: u64,
    pub unknown_origin: u64,
    pub shed_frames: u64,
    /// Adverts that came without a certificate this node could check them with (dropped,
    /// the neighbour asked again; see "Link state at scale").
    #[serde(default)]
    pub adverts_unchecked: u64,
    /// Messages from other deployments' nodes their `[[federation]]` policy refused.
    #[serde(default)]
    pub federation_refused: u64,
    /// The revocation list in effect of each federated deployment, by its name.
    #[serde(default)]
    pub federated_revocation_lists: std::collections::BTreeMap<String, u64>,
}

/// The store's work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreDoc {
    pub commits: u64,
    pub rows_written: u64,
    pub rows_cancelled: u64,
}

/// A connection refused at the handshake or `Hello`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefusedLinkDoc {
    pub at_unix_s: f64,
    pub addr: String,
    pub medium: String,
    /// Who it claimed or was expected to be, when known.
    pub peer: Option<String>,
    pub reason: String,
}

/// A frame that did not decode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BadFrameDoc {
    pub link: u64,
    pub reason: String,
}

/// The inbox's cursors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxCountsDoc {
    /// The cursor the next delivery gets.
    pub next: u64,
    pub unread: u64,
}

impl StatusDoc {
    /// The link to `peer` on `medium`, if there is one.
    pub fn link(&self, peer: &str, medium: &str) -> Option<&LinkDoc> {
        self.links.iter().find(|l| l.peer == peer && l.medium == medium)
    }

    /// Whether a link to `peer` is up (on any medium).
    pub fn link_up(&self, peer: &str) -> bool {
        self.links.iter().any(|l| l.peer == peer && l.up)
    }

    /// Whether there is a route to `node` (at any precedence).
    pub fn has_route(&self, node: &str) -> bool {
        self.routes.iter().any(|r| r.destination == node)
    }

    /// A counter summed over the precedences.
    pub fn total(&self, f: impl Fn(&CountersDoc) -> u64) -> u64 {
        self.counters.iter().map(|(_, c)| f(c)).sum()
    }
}

impl From<&Snapshot> for StatusDoc {
    fn from(s: &Snapshot) -> StatusDoc {
        let n = &s.node;
        let c = &n.counters;
        let names = |v: &[crate::core::NodeId]| v.iter().map(ToString::to_string).collect();
        StatusDoc {
            node: n.node.to_string(),
            role: n.role.as_str().to_owned(),
            uptime_s: s.now.saturating_since(s.started).as_secs_f64(),
            links: n
                .links
                .iter()
                .map(|l| LinkDoc {
                    id: l.id.0,
                    peer: l.peer.to_string(),
                    role: l.role.as_str().to_owned(),
                    medium: l.medium.as_str().to_owned(),
                    up: l.up,
                    addr: s.links.get(&l.id).map(ToString::to_string),
                    since_s: s.now.saturating_since(l.since).as_secs_f64(),
                    rtt_ms: l.rtt.map(|r| r.as_micros() as f64 / 1000.0),
                    loss: l.loss,
                    inflight: l.inflight as u64,
                    inflight_bytes: l.inflight_bytes,
                    adverts_waiting: l.adverts_waiting as u64,
                    offered: l.counters.offered,
                    accepted: l.counters.accepted,
                    refused: l.counters.refused,
                    bytes_offered: l.counters.bytes_offered,
                    probes_sent: l.counters.probes_sent,
                    probes_answered: l.counters.probes_answered,
                    bytes: s.wire.get(&(l.peer.clone(), l.medium)).copied().unwrap_or_default(),
                    certificate: s
                        .peer_certificates
                        .get(&l.id)
                        .map(|t| CertificateDoc::new(*t, s.wall)),
                })
                .collect(),
            routes: n
                .routes
                .iter()
                .map(|r| RouteDoc {
                    destination: r.destination.to_string(),
                    precedence: r.precedence.as_str().to_owned(),
                    next_hop: r.next_hop.to_string(),
                    cost: r.cost,
                })
                .collect(),
            queues: PerPrecedence::from_fn(|i| n.held[i]),
            overdue: PerPrecedence::from_fn(|i| n.overdue[i]),
            held_bytes: n.held_bytes,
            capacity_bytes: n.capacity,
            counters: PerPrecedence::from_fn(|i| CountersDoc {
                submitted: c.submitted[i],
                received: c.received[i],
                forwarded: c.forwarded[i],
                delivered: c.delivered[i],
                duplicates: c.duplicates[i],
                expired: c.expired[i],
                refused: c.refused[i],
                no_recipients: c.no_recipients[i],
                cancelled: c.cancelled[i],
                superseded: c.superseded[i],
                escalated: c.escalated[i],
            }),
            store_failures: c.store_failures,
            security: SecurityDoc {
                signatures: n.signatures,
                revocation_list: n.revocation_list,
                forged: c.forged,
                revoked: c.revoked,
                unknown_origin: c.unknown_origin,
                shed_frames: c.shed_frames,
                adverts_unchecked: c.adverts_unchecked,
                federation_refused: c.federation_refused,
                federated_revocation_lists: n
                    .federated_revocation_lists
                    .iter()
                    .map(|(d, number)| (d.to_string(), *number))
                    .collect(),
            },
            store: StoreDoc {
                commits: n.store.commits,
                rows_written: n.store.rows_written,
                rows_cancelled: n.store.rows_cancelled,
            },
            refused_links: s
                .refusals
                .iter()
                .map(|r| RefusedLinkDoc {
                    at_unix_s: r
                        .at
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0),
                    addr: r.addr.to_string(),
                    medium: r.medium.as_str().to_owned(),
                    peer: r.peer.as_ref().map(ToString::to_string),
                    reason: r.reason.clone(),
                })
                .collect(),
            bad_frames: s
                .bad_frames
                .iter()
                .map(|(l, why)| BadFrameDoc { link: l.0, reason: why.clone() })
                .collect(),
            subscriptions: n.subscriptions.clone(),
            groups: n.groups.clone(),
            invariant_violation: n.violation.clone(),
            members: names(&n.members),
            known_nodes: names(&n.known_nodes),
            deployments: n
                .deployments
                .iter()
                .map(|(node, d)| (node.to_string(), d.to_string()))
                .collect(),
            known_groups: s.known_groups.clone(),
            known_topics: s.known_topics.clone(),
            topology: s
                .topology
                .iter()
                .map(|l| TopologyLinkDoc {
                    from: l.from.to_string(),
                    from_role: l.from_role.to_string(),
                    to: l.to.to_string(),
                    medium: l.medium.to_string(),
                    up: l.up,
                    rtt_ms: l.rtt.map(|r| r.as_micros() as f64 / 1000.0),
                    loss: l.loss,
                })
                .collect(),
            inbox: InboxCountsDoc {
                next: n.inbox_next,
                unread: n.inbox_next.saturating_sub(n.inbox_read),
            },
            certificate: s.certificate_expires.map(|t| CertificateDoc {
                serial: s
                    .certificate_serial
                    .as_ref()
                    .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
                    .unwrap_or_default(),
                reload_error: s.credentials_error.clone(),
                ..CertificateDoc::new(t, s.wall)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_and_a_missing_field_is_an_error() {
        let doc = MessageDoc {
            id: "0".repeat(32),
            to: "group:medical".into(),
            precedence: "flash".into(),
            state: "partially_delivered".into(),
            settled: true,
            accepted_at_us: 7,
            custody_at: None,
            receipt: true,
            destinations: vec![DestinationDoc {
                node: "t1".into(),
                outcome: Some("expired".into()),
                age_ms: Some(1.5),
                reason: "lifetime ended".into(),
                overdue: false,
            }],
            cancelled_by: None,
            key: Some("pos/team-07".into()),
            replaces: Some("1".repeat(32)),
            cancels: None,
            replaced_by: None,
        };
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(serde_json::from_str::<MessageDoc>(&text).unwrap(), doc);
        assert_eq!(doc.with_outcome("expired"), vec!["t1"]);
        let renamed = text.replace("\"state\"", "\"status\"");
        assert!(serde_json::from_str::<MessageDoc>(&renamed).is_err());
    }

    #[test]
    fn a_request_with_an_unknown_field_is_refused_and_defaults_are_the_documented_ones() {
        let r: SubmitRequest = serde_json::from_str(r#"{"to": "node:t1"}"#).unwrap();
        assert!(r.receipt, "a receipt unless declined");
        assert_eq!(r.precedence, None);
        let typo = r#"{"to": "node:t1", "lifetme": "5m"}"#;
        let e = serde_json::from_str::<SubmitRequest>(typo).unwrap_err().to_string();
        assert!(e.contains("lifetme"), "{e}");
    }

    #[test]
    fn per_precedence_values_are_keyed_by_name_highest_first() {
        let p = PerPrecedence::from_fn(|i| i as u64);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["flash"], Precedence::Flash.index() as u64);
        assert_eq!(v["routine"], Precedence::Routine.index() as u64);
        let order: Vec<Precedence> = p.iter().map(|(p, _)| p).collect();
        assert_eq!(order, Precedence::DESCENDING.to_vec());
        assert_eq!(serde_json::from_value::<PerPrecedence<u64>>(v).unwrap(), p);
    }
}
