//! [`Node`]: one relay's protocol state machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rustc_hash::FxHashSet;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::answers::Answers;
use super::config::CoreConfig;
use super::frame::{Accepted, Advert, CustodyCode, CustodyResult, Frame};
use super::holdings::Holdings;
use super::link::{FrameAllowance, Link, LinkId, LinkInfo};
use super::membership::{Binding, Membership};
use super::queue::QueueIndex;
use super::routing::{LocalLink, Routing};
use super::schema::{self, meta};
use super::store::{Began, Store, StoreError, Table};
use super::trust::{Credential, Revocations, SealCache};
use super::types::{
    Address, Envelope, MessageId, NodeId, Outcome, Precedence, Time, TopicPattern, TrafficStatus,
};

/// Something the shell must send to a neighbour.
#[derive(Clone, Debug, PartialEq)]
pub struct Transmit {
    pub link: LinkId,
    pub frame: Frame,
}

/// Something that happened, for applications, the shell and the simulator.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A message was delivered to this node's applications (durably, in the inbox).
    Delivered {
        cursor: u64,
        id: MessageId,
        origin: NodeId,
        to: Address,
        precedence: Precedence,
        age: Duration,
        status: TrafficStatus,
    },
    /// A copy of a message already delivered here arrived again and was suppressed.
    Duplicate { id: MessageId, origin: NodeId },
    /// The fate of a message this node originated became known.
    Reported { of: MessageId, node: NodeId, outcome: Outcome, reason: String },
    /// A held message's lifetime ran out here, for the destinations still owed (an offer that
    /// arrived already expired names every destination it carried).
    Expired { id: MessageId, origin: NodeId, precedence: Precedence, destinations: Vec<NodeId> },
    /// A held copy (or one arriving) was dropped here for a cancel or a newer message
    /// (`outcome` is `Cancelled` or `Superseded`), for the destinations still owed.
    Superseded {
        id: MessageId,
        origin: NodeId,
        precedence: Precedence,
        outcome: Outcome,
        by: MessageId,
        destinations: Vec<NodeId>,
    },
    /// A message delivered here (inbox `cursor`) was withdrawn by a cancel or a newer message.
    Withdrawn {
        cursor: u64,
        id: MessageId,
        origin: NodeId,
        by: MessageId,
        outcome: Outcome,
        reason: String,
    },
    /// A message was refused here or by a neighbour, for good.
    Refused { id: MessageId, origin: NodeId, precedence: Precedence, reason: String },
    /// Destinations of a message this node originated passed its delivery objective with no
    /// outcome (see `objectives`).
    Overdue {
        of: MessageId,
        precedence: Precedence,
        destinations: Vec<NodeId>,
        /// The objective it missed.
        objective: Duration,
    },
    /// Overdue destinations got their outcome at last.
    OverdueCleared { of: MessageId, precedence: Precedence, destinations: Vec<NodeId> },
    /// A link became usable or unusable.
    LinkChanged { link: LinkId, peer: NodeId, up: bool },
    /// The neighbour on `link` did what only a hostile or broken peer does (forged a message
    /// or an advert, flooded): the shell closes the link with `reason` and records it.
    Misbehaved { link: LinkId, peer: NodeId, reason: String },
    /// The node found one of its invariants broken (only with `CoreConfig::check_invariants`;
    /// once per node). A bug in relaymesh, never a peer's doing: simulations fail on it.
    InvariantBroken { what: String },
    /// A newer revocation list took effect (also at start, for the stored one): the shell
    /// closes links to the revoked certificates and refuses them from now on.
    Revoked { number: u64, serials: Vec<Bytes>, nodes: Vec<NodeId>, crl: Bytes },
}

impl Event {
    /// Whether the event tells of stored state, and so waits for its batch to be durable:
    /// deliveries and message fates do; link changes, misbehaviour, revocations and broken
    /// invariants go at once (the shell acts on them).
    pub fn waits_for_commit(&self) -> bool {
        matches!(
            self,
            Event::Delivered { .. }
                | Event::Duplicate { .. }
                | Event::Reported { .. }
                | Event::Overdue { .. }
                | Event::OverdueCleared { .. }
                | Event::Expired { .. }
                | Event::Superseded { .. }
                | Event::Withdrawn { .. }
                | Event::Refused { .. }
        )
    }
}

/// A message an application hands to its node.
#[derive(Clone, Debug)]
pub struct Submission {
    pub to: Address,
    pub precedence: Precedence,
    pub lifetime: Duration,
    pub content_type: String,
    pub payload: Bytes,
    /// Ask for end-to-end reports (delivered, expired, refused).
    pub receipt: bool,
    pub status: TrafficStatus,
    /// Latest-value key: only the newest of this node's messages with it travels.
    pub key: Option<String>,
    /// The message this one replaces (its own, or another's with an override by role).
    pub replaces: Option<MessageId>,
}

/// Why a submission was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The submission itself is wrong (bad address, lifetime, size): fix it and resend.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The node will not take it now (its store's share for the precedence is full).
    #[error("refused: {0}")]
    Refused(String),
    /// The policy forbids it: a sender rule (only `command` sends FLASH to everyone, say), or
    /// a cancel or replacement of another node's message by a role that may not override.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The store failed; nothing was kept.
    #[error("storage failure: {0}")]
    Storage(#[from] StoreError),
}

/// Per-precedence counters since start.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub submitted: [u64; 4],
    pub received: [u64; 4],
    pub forwarded: [u64; 4],
    pub delivered: [u64; 4],
    pub duplicates: [u64; 4],
    pub expired: [u64; 4],
    pub refused: [u64; 4],
    /// Held or arriving copies dropped here for a cancel, and for a newer message.
    pub cancelled: [u64; 4],
    pub superseded: [u64; 4],
    /// Offers of late messages over a route their precedence would have avoided on time
    /// (`CoreConfig::escalate`).
    pub escalated: [u64; 4],
    /// Messages submitted here whose address had no member at all (kept for late binding).
    pub no_recipients: [u64; 4],
    pub store_failures: u64,
    pub bad_frames: u64,
    /// Link-state adverts sent (own and flooded), and their encoded size.
    pub adverts_sent: u64,
    pub advert_bytes: u64,
    /// Messages and adverts refused for a bad signature (forged or altered on the way).
    pub forged: u64,
    /// Messages refused because their origin's certificate is revoked.
    pub revoked: u64,
    /// Offers answered "busy" because the origin's certificate is not known here yet.
    pub unknown_origin: u64,
    /// Frames shed because a neighbour sent faster than `peer_frame_rate`.
    pub shed_frames: u64,
    /// Adverts dropped because they came without a certificate this node could check them
    /// with (the neighbour believed it held one; it is asked for them again).
    pub adverts_unchecked: u64,
    /// Messages from other deployments' nodes refused by their `[[federation]]` policy (also
    /// counted in `refused`).
    pub federation_refused: u64,
}

/// One relay's protocol state machine: routing, queues, custody, dedup, expiry, policy.
///
/// It does no I/O and reads no clock: the shell (or the simulator, or a test) feeds it events
/// with the current time and carries out what it asks for.
///
/// # Calling contract
///
/// 1. Create it with [`Node::open`] on a store; it resumes whatever the store holds.
/// 2. Feed it any number of inputs: `handle_link_up`, `handle_link_down`, `handle_frame`,
///    `handle_submit`, `handle_subscription`, `handle_inbox_read`, `handle_disk_space`, and
///    `handle_timeout` once `now` reaches [`Node::poll_timeout`].
/// 3. Call [`Node::commit`]. It makes the batch durable (one fsync for the whole batch: group
///    commit), and only then releases custody acknowledgements and events, and schedules new
///    offers. If it fails, the batch is rolled back as a whole: offers received in it are
///    answered "busy" (their senders keep them), submissions in it must be reported failed.
///    With a store that syncs in the background, call [`Node::commit_begin`] instead, go on
///    with step 2 while the batch is in flight, and hand its outcome to
///    [`Node::commit_landed`] when the store reports it; seal the next batch after that.
/// 4. Drain [`Node::poll_transmit`] and [`Node::poll_event`], read [`Node::poll_timeout`],
///    and go back to 2.
///
/// Between 2 and 3 the shell may call [`Node::schedule`] and send what it produces at once:
/// offers then leave while the store is still syncing (cut-through), which takes the fsync
/// off the forwarding path. Custody answers still wait for the commit, except the acceptance
/// of a relayed message whose next hop accepted it first (see `core::answers`, rule 2).
///
/// Queries (`message_status`, `inbox`, `status`, ...) may be made between batches; the inbox
/// shows only deliveries whose batch is durable (with a batch in flight, `inbox` and
/// `inbox_next` stop where the last landed batch ended).
#[derive(Debug)]
pub struct Node {
    pub(super) cfg: CoreConfig,
    pub(super) store: Box<dyn Store>,
    pub(super) rng: ChaCha8Rng,
    /// The random half of this run's message ids, and the counter of the other half.
    pub(super) id_run: [u8; 8],
    pub(super) id_counter: u64,
    pub(super) next_seq: u64,
    pub(super) next_cursor: u64,
    pub(super) read_cursor: u64,
    /// Messages and bytes held, per precedence and per neighbour they came from.
    pub(super) held: Holdings,
    pub(super) advert_seq: u64,
    pub(super) links: BTreeMap<LinkId, Link>,
    pub(super) queue: QueueIndex,
    /// (seq, destination) pairs currently offered on some link.
    pub(super) inflight: FxHashSet<(u64, NodeId)>,
    pub(super) routing: Routing,
    /// Every node ever seen as a member of something, by its newest advert: never aged out.
    pub(super) membership: Membership,
    /// This node's named groups: the configured ones with run-time joins and leaves applied.
    pub(super) groups: BTreeSet<String>,
    /// Live group and topic messages this node originated, for late binding.
    pub(super) bindings: BTreeMap<MessageId, Binding>,
    pub(super) subscriptions: BTreeSet<TopicPattern>,
    pub(super) transmits: VecDeque<Transmit>,
    pub(super) events: VecDeque<Event>,
    /// Custody answers owed upstream, by the rule that releases them (see `core::answers`).
    pub(super) answers: Answers,
    pub(super) pending_events: Vec<Event>,
    /// The events of the batch in flight, released when it lands.
    pub(super) sealed_events: Vec<Event>,
    /// Inbox cursors below this are durable: what the inbox shows (a delivery in a batch not
    /// yet on disk could still be rolled back, and its cursor given to another message).
    pub(super) inbox_landed: u64,
    /// `next_cursor` when the batch in flight was sealed.
    pub(super) inbox_sealed: u64,
    /// The first store error of the open batch; the batch will be rolled back.
    pub(super) poisoned: Option<StoreError>,
    pub(super) meta_dirty: bool,
    pub(super) counters: Counters,
    pub(super) disk_free: Option<u64>,
    pub(super) next_expiry: Option<Time>,
    /// When the first incomplete object gathering here expires (`objects`).
    pub(super) next_object_expiry: Option<Time>,
    /// Objects this node sent whose chunks it still holds: chunk -> object, and per object
    /// how many (so progress is a lookup, not a scan per chunk on the driver's thread).
    pub(super) sending: super::objects::Sending,
    /// The earliest delivery objective still to check (`objectives`).
    pub(super) next_objective: Option<Time>,
    /// Destinations overdue now, by `Precedence::index()`.
    pub(super) overdue: [u64; 4],
    /// When held messages become late, by seq (`core::scheduler`; a cache).
    pub(super) late_at: rustc_hash::FxHashMap<u64, Time>,
    /// The earliest time a lane head waiting for it becomes late: fill again then.
    pub(super) next_late: Option<Time>,
    pub(super) next_housekeeping: Time,
    pub(super) next_advert: Time,
    pub(super) advert_wanted: bool,
    pub(super) last_advert: Option<Time>,
    /// A border looks at its area summary again then (`Node::check_summary`).
    pub(super) summary_check: Option<Time>,
    /// The shape of the summary last advertised (`adverts::summary_shape`; 0: none).
    pub(super) advertised_shape: u64,
    /// Recently held messages, so offering them does not read them back from the store.
    pub(super) recent: RecentMessages,
    /// Certified signing keys of the nodes this node has heard of (itself included).
    pub(super) keys: rustc_hash::FxHashMap<NodeId, Credential>,
    /// Keys nodes signed with before their current one (key rotation), while messages signed
    /// with them may still be alive.
    pub(super) previous_keys: rustc_hash::FxHashMap<NodeId, Vec<super::security::PreviousKey>>,
    /// Certificates of this node's own previous keys, each with the time until which its
    /// adverts carry it.
    pub(super) own_previous: Vec<(bytes::Bytes, Time)>,
    /// The newest revocation list this node has seen of each deployment's CA (`None`: its
    /// own): a list names the certificates of the CA that signed it, and no others.
    pub(super) revocations:
        std::collections::BTreeMap<Option<super::federation::Deployment>, Revocations>,
    /// This node's last advert as sent (signing it again for every resync costs 25 us).
    pub(super) last_own_advert: Option<super::frame::Advert>,
    /// Envelopes this node originated in the open batch, signed together (one signature for
    /// up to `trust::MAX_BATCH`) and held when the batch is scheduled or committed.
    pub(super) unsealed: Vec<Envelope>,
    /// Origin batch signatures already checked.
    pub(super) seals: SealCache,
    /// Nodes whose certificates were withdrawn since the last batch: their held copies are
    /// refused at the next `schedule` or `commit` (`Node::settle_withdrawn`).
    pub(super) withdrawn: Vec<NodeId>,
    /// The first invariant found broken (with `CoreConfig::check_invariants`).
    pub(super) violation: Option<super::invariants::Violation>,
    /// What `check_invariants` decoded of each held row last time, so it decodes only new rows.
    pub(super) checked_rows: super::invariants::CheckedRows,
    /// Commits that changed the store (and reloads after a failed one) since the node opened:
    /// while it stays the same, so does the committed store.
    pub(super) store_generation: u64,
}

/// A bounded cache of held messages by seq, oldest evicted first.
#[derive(Debug, Default)]
pub(super) struct RecentMessages {
    by_seq: rustc_hash::FxHashMap<u64, super::frame::StoredMessage>,
    order: VecDeque<u64>,
}

impl RecentMessages {
    const CAPACITY: usize = 16 * 1024;

    pub(super) fn insert(&mut self, seq: u64, m: super::frame::StoredMessage) {
        self.by_seq.insert(seq, m);
        self.order.push_back(seq);
        while self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.by_seq.remove(&old);
            }
        }
    }

    pub(super) fn get(&self, seq: u64) -> Option<&super::frame::StoredMessage> {
        self.by_seq.get(&seq)
    }

    pub(super) fn remove(&mut self, seq: u64) {
        self.by_seq.remove(&seq);
    }

    pub(super) fn clear(&mut self) {
        self.by_seq.clear();
        self.order.clear();
    }
}

/// Interval of the housekeeping sweep (dedup records, inbox and status pruning).
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// Minimum spacing of link-state adverts triggered by changes.
const ADVERT_MIN_INTERVAL: Duration = Duration::from_millis(500);

impl Node {
    /// Opens a node on `store`, resuming what it holds. `seed` seeds message ids and any
    /// other randomness; the shell draws it from the OS, the simulator from the scenario seed.
    pub fn open(
        cfg: CoreConfig,
        store: Box<dyn Store>,
        seed: u64,
        now: Time,
    ) -> Result<Node, StoreError> {
        let mut routing = Routing::new(cfg.node.clone(), cfg.media.clone());
        routing.set_area(&cfg.area);
        let mut node = Node {
            cfg,
            store,
            rng: ChaCha8Rng::seed_from_u64(seed),
            id_run: [0; 8],
            id_counter: 0,
            next_seq: 0,
            next_cursor: 0,
            read_cursor: 0,
            held: Holdings::default(),
            advert_seq: 0,
            links: BTreeMap::new(),
            queue: QueueIndex::default(),
            inflight: FxHashSet::default(),
            routing,
            membership: Membership::default(),
            groups: BTreeSet::new(),
            bindings: BTreeMap::new(),
            subscriptions: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            answers: Answers::default(),
            pending_events: Vec::new(),
            sealed_events: Vec::new(),
            inbox_landed: 0,
            inbox_sealed: 0,
            poisoned: None,
            meta_dirty: false,
            counters: Counters::default(),
            disk_free: None,
            next_expiry: None,
            next_object_expiry: None,
            sending: Default::default(),
            next_objective: None,
            late_at: Default::default(),
            next_late: None,
            overdue: [0; 4],
            next_housekeeping: now,
            next_advert: now,
            advert_wanted: true,
            summary_check: None,
            advertised_shape: 0,
            last_advert: None,
            recent: RecentMessages::default(),
            keys: Default::default(),
            previous_keys: Default::default(),
            own_previous: Vec::new(),
            revocations: std::collections::BTreeMap::new(),
            last_own_advert: None,
            unsealed: Vec::new(),
            seals: SealCache::default(),
            violation: None,
            checked_rows: Default::default(),
            store_generation: 0,
            withdrawn: Vec::new(),
        };
        (node.id_run, node.id_counter) = (node.rng.random(), node.rng.random());
        node.load(now)?;
        node.index_held()?;
        node.load_trust(now)?;
        Ok(node)
    }

    /// (Re)builds every in-memory index from the store's committed state.
    fn load(&mut self, now: Time) -> Result<(), StoreError> {
        self.store.rollback();
        self.unsealed.clear();
        let get = |s: &mut dyn Store, k: &[u8]| -> Result<u64, StoreError> {
            Ok(s.get(Table::Meta, k)?.as_deref().and_then(schema::read_u64).unwrap_or(0))
        };
        self.next_seq = get(self.store.as_mut(), meta::NEXT_SEQ)?;
        self.next_cursor = get(self.store.as_mut(), meta::NEXT_CURSOR)?;
        self.inbox_landed = self.next_cursor;
        self.read_cursor = get(self.store.as_mut(), meta::READ_CURSOR)?;
        self.held = Holdings::load(self.store.as_mut())?;
        self.advert_seq = get(self.store.as_mut(), meta::ADVERT_SEQ)?;
        self.queue = QueueIndex::load(self.store.as_mut())?;
        self.recent.clear();
        // Both caches are by seq, and a rolled-back batch's seqs are given out again.
        self.late_at.clear();
        self.next_late = None;
        self.inflight.clear();
        for link in self.links.values_mut() {
            link.take_inflight();
        }
        self.transmits.retain(|t| !matches!(t.frame, Frame::Offer { .. }));
        let mut subs = BTreeSet::new();
        self.store.scan(Table::Subscriptions, b"", None, &mut |k, _| {
            if let Some(p) = std::str::from_utf8(k).ok().and_then(|s| TopicPattern::new(s).ok()) {
                subs.insert(p);
            }
            true
        })?;
        self.subscriptions = subs;
        self.load_membership()?;
        let mut adverts = Vec::new();
        let members = &self.membership;
        self.store.scan(Table::Lsdb, b"", None, &mut |k, v| {
            let held = match <[u8; 8]>::try_from(v) {
                // The advert of that sequence number, as membership holds it.
                Ok(seq) => NodeId::new(String::from_utf8_lossy(k).as_ref())
                    .ok()
                    .and_then(|node| members.shared(&node))
                    .filter(|a| a.seq == u64::from_be_bytes(seq))
                    .cloned(),
                // A store written before kept the whole advert here.
                Err(_) => crate::wire::decode_advert(v).ok().map(std::sync::Arc::new),
            };
            adverts.extend(held);
            true
        })?;
        for a in adverts {
            // Stored adverts are as old as they were when stored plus however long this node
            // was down, which it cannot know: they age from now and are replaced by fresh ones.
            self.routing.accept(a, now);
        }
        self.next_expiry = self.peek_expiry()?;
        self.next_object_expiry = self.peek_object_expiry()?;
        self.sending = self.load_sending()?;
        self.next_objective = self.peek_objective()?;
        self.overdue = self.count_overdue()?;
        self.meta_dirty = false;
        Ok(())
    }

    pub fn id(&self) -> &NodeId {
        &self.cfg.node
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Records the first store error of the batch; the batch will be rolled back.
    pub(super) fn poison(&mut self, e: StoreError) {
        if self.poisoned.is_none() {
            self.counters.store_failures += 1;
            self.poisoned = Some(e);
        }
    }

    /// Runs `f` unless the batch is already doomed; a store error dooms it.
    pub(super) fn guarded(&mut self, f: impl FnOnce(&mut Node) -> Result<(), StoreError>) {
        if self.poisoned.is_some() {
            return;
        }
        if let Err(e) = f(self) {
            self.poison(e);
        }
    }

    /// A link finished its handshake and `Hello` exchange and may carry traffic.
    pub fn handle_link_up(&mut self, now: Time, link: LinkId, info: LinkInfo) {
        let cfg = self.cfg.medium(info.medium);
        let peer = info.peer.clone();
        self.learn_neighbour(now, link, &info);
        let mut l = Link::new(link, info, cfg, now);
        // The peer learned this node's certificate from the handshake, as this node learned
        // its (`learn_neighbour`).
        if let Some(trust) = &self.cfg.trust {
            l.peer_certs.insert(self.cfg.node.clone(), trust.certificate());
        }
        self.links.insert(link, l);
        self.pending_events.push(Event::LinkChanged { link, peer: peer.clone(), up: true });
        self.links_changed(now);
        // Tell the new neighbour what this node knows (membership covers every advert held
        // for routing too); it answers with what is newer.
        let held = self.membership.summary();
        let area = self.cfg.area.clone();
        self.transmits.push_back(Transmit { link, frame: Frame::LsdbSummary { area, held } });
        // An authenticated neighbour belongs to `all` and its role's group from now on.
        let trusted = self.trusted_neighbour(&peer);
        if trusted && !self.membership.contains(&peer) {
            self.bind_late(now, &peer);
        }
        for r in self.revocations.values() {
            self.transmits.push_back(Transmit { link, frame: Frame::Revocations(r.der.clone()) });
        }
        self.advert_wanted = true;
    }

    /// A link's connection is gone. Whatever was offered on it and not accepted is owed again.
    pub fn handle_link_down(&mut self, now: Time, link: LinkId) {
        let Some(mut l) = self.links.remove(&link) else { return };
        self.requeue(l.take_inflight());
        self.pending_events.push(Event::LinkChanged { link, peer: l.info.peer, up: false });
        self.links_changed(now);
        self.advert_wanted = true;
    }

    /// Puts offers that will not be answered back into their lanes.
    pub(super) fn requeue(&mut self, offers: Vec<super::link::Offer>) {
        for o in offers {
            for d in &o.dests {
                self.inflight.remove(&(o.seq, d.clone()));
                self.queue.restore(d, o.precedence, o.seq);
            }
        }
    }

    /// Tells routing about this node's links after any change.
    pub(super) fn links_changed(&mut self, now: Time) {
        let local = self
            .links
            .values()
            .map(|l| LocalLink {
                neighbour: l.info.peer.clone(),
                role: l.info.role,
                medium: l.info.medium,
                rtt: l.srtt.unwrap_or_else(|| l.one_way_delay() * 2),
                loss_ppm: (l.loss * 1e6) as u32,
                usable: l.up,
            })
            .collect();
        self.routing.set_local_links(local);
        if self.summary_check.is_none() && self.is_area_border() {
            self.summary_check = Some(now + super::adverts::SUMMARY_INTERVAL);
        }
    }

    /// A frame from the neighbour on `link` (already decoded and authenticated by the shell).
    pub fn handle_frame(&mut self, now: Time, link: LinkId, frame: Frame) {
        let Some(l) = self.links.get_mut(&link) else { return };
        l.heard(now);
        match l.allow_frame(now, self.cfg.peer_frame_rate) {
            FrameAllowance::Take => {}
            FrameAllowance::Shed => {
                self.counters.shed_frames += 1;
                if let Frame::Offer { offer, envelope } = frame {
                    let reason = "sending faster than this node accepts".to_owned();
                    let r =
                        CustodyResult { offer, id: envelope.id, code: CustodyCode::Busy, reason };
                    self.transmits.push_back(Transmit { link, frame: Frame::Custody(vec![r]) });
                }
                return;
            }
            FrameAllowance::CutOff => {
                self.counters.shed_frames += 1;
                let rate = self.cfg.peer_frame_rate;
                self.misbehaved(link, format!("flooding: over {rate} frames/s for 2 s"));
                return;
            }
        }
        match frame {
            Frame::Offer { offer, envelope } => self.receive_offer(now, link, offer, envelope),
            Frame::Accepted(list) => {
                for a in list {
                    self.custody_accepted(now, link, a);
                }
            }
            Frame::Custody(results) => {
                for r in results {
                    self.custody_result(now, link, r);
                }
            }
            Frame::Probe { seq, rtt_us, loss_ppm } => {
                self.transmits.push_back(Transmit { link, frame: Frame::ProbeAck { seq } });
                let Some(l) = self.links.get_mut(&link) else { return };
                if l.info.prober {
                    return; // both sides dialled: each probes its own connection
                }
                let had_rtt = l.srtt;
                let came_up = l.probed(rtt_us, loss_ppm, now);
                self.link_measured(now, link, had_rtt, came_up);
            }
            Frame::ProbeAck { seq } => {
                let Some(l) = self.links.get_mut(&link) else { return };
                let had_rtt = l.srtt;
                let came_up = l.probe_ack(seq, now);
                self.link_measured(now, link, had_rtt, came_up);
            }
            Frame::LinkState(advert) => self.receive_advert(now, link, advert),
            Frame::Revocations(crl) => {
                if let Err(why) = self.handle_revocations(Some(link), &crl) {
                    self.misbehaved(link, format!("revocation list: {why}"));
                }
            }
            Frame::LsdbSummary { area, held: summary } => {
                let was_border = self.is_area_border();
                if let Some(l) = self.links.get_mut(&link) {
                    l.peer_adverts = Some((now, summary.iter().cloned().collect()));
                    // It (re)starts from what it holds: what it lacks goes with certificates.
                    l.forget_peer_certs();
                    l.peer_area = Some(area.clone());
                }
                if self.is_area_border() != was_border {
                    // This link crosses into another area: this node's advert now summarises
                    // its area (or, the last such link gone, no longer does).
                    self.advert_wanted = true;
                }
                // What it takes: its own area's adverts and borders'.
                let live: Vec<Advert> = self
                    .routing
                    .newer_than(&summary, now)
                    .into_iter()
                    .filter(|a| Routing::takes(&area, a))
                    .collect();
                let live_nodes: BTreeSet<NodeId> = live.iter().map(|a| a.node.clone()).collect();
                for a in live {
                    self.send_advert_to(now, link, a);
                }
                // Members whose adverts ran out here travel as membership only: marked with
                // their whole lifetime as age, so no routing table takes them.
                let lapsed: Vec<_> = self
                    .membership
                    .newer_than(&summary)
                    .into_iter()
                    .filter(|a| !live_nodes.contains(&a.node))
                    .filter(|a| Routing::takes(&area, a))
                    .map(|a| {
                        let mut a = a.clone();
                        a.age = a.age.max(a.lifetime);
                        a
                    })
                    .collect();
                for a in lapsed {
                    self.send_advert_to(now, link, a);
                }
                // Our own advert is never in our database; send it if theirs is older.
                let ours = summary.iter().find(|(n, _)| n == &self.cfg.node).map(|(_, s)| *s);
                if ours.is_none_or(|s| s < self.advert_seq) && self.advert_seq > 0 {
                    let a = self.current_advert(now);
                    self.send_advert_to(now, link, a);
                }
            }
        }
    }

    /// After a probe measurement: a link that came back up is announced and advertised; a
    /// moved RTT is passed to routing.
    fn link_measured(&mut self, now: Time, link: LinkId, had_rtt: Option<Duration>, came_up: bool) {
        let Some(l) = self.links.get(&link) else { return };
        if came_up {
            let peer = l.info.peer.clone();
            self.pending_events.push(Event::LinkChanged { link, peer, up: true });
            self.advert_wanted = true;
            self.links_changed(now);
        } else if had_rtt.is_none() || rtt_moved(had_rtt, l.srtt) {
            self.links_changed(now);
        }
    }

    /// Free space on the store's device, as last measured by the shell (`None`: unknown).
    pub fn handle_disk_space(&mut self, free_bytes: Option<u64>) {
        self.disk_free = free_bytes;
    }

    /// Adds or removes a durable topic subscription; returns whether anything changed.
    pub fn handle_subscription(
        &mut self,
        pattern: TopicPattern,
        subscribe: bool,
    ) -> Result<bool, StoreError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let result = self.change_subscription(pattern, subscribe);
        if let Err(e) = &result {
            self.poison(e.clone());
        }
        result
    }

    fn change_subscription(
        &mut self,
        pattern: TopicPattern,
        subscribe: bool,
    ) -> Result<bool, StoreError> {
        let key = pattern.as_str().as_bytes().to_vec();
        let changed = if subscribe {
            let new = self.subscriptions.insert(pattern);
            if new {
                self.store.put(Table::Subscriptions, &key, b"")?;
            }
            new
        } else {
            let had = self.subscriptions.remove(&pattern);
            if had {
                self.store.delete(Table::Subscriptions, &key)?;
            }
            had
        };
        if changed {
            self.advert_wanted = true;
        }
        Ok(changed)
    }

    /// Marks every inbox message up to and including `cursor` as read.
    pub fn handle_inbox_read(&mut self, cursor: u64) {
        let next = cursor.saturating_add(1).min(self.inbox_landed);
        if next > self.read_cursor {
            self.read_cursor = next;
            self.meta_dirty = true;
        }
    }

    /// Timers: probes, ack timeouts, expiry, housekeeping, adverts.
    pub fn handle_timeout(&mut self, now: Time) {
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        let mut changed = false;
        for id in ids {
            let Some(l) = self.links.get_mut(&id) else { continue };
            l.tick(now);
            let tick = l.probe_tick(now);
            let late = l.timed_out(now);
            let peer = l.info.peer.clone();
            if let Some(seq) = tick.send {
                let (rtt_us, loss_ppm) = l.view();
                let frame = Frame::Probe { seq, rtt_us, loss_ppm };
                self.transmits.push_back(Transmit { link: id, frame });
            }
            if tick.went_down {
                let offers = l.take_inflight();
                self.requeue(offers);
                self.pending_events.push(Event::LinkChanged { link: id, peer, up: false });
                changed = true;
            }
            self.requeue(late);
            self.emit_adverts(now, id);
        }
        if changed {
            self.links_changed(now);
            self.advert_wanted = true;
        }
        if self.next_expiry.is_some_and(|t| t <= now) {
            self.guarded(|n| n.expire_held(now));
        }
        if self.next_object_expiry.is_some_and(|t| t <= now) {
            self.guarded(|n| n.expire_objects(now));
        }
        if self.next_objective.is_some_and(|t| t <= now) {
            self.guarded(|n| n.check_objectives(now));
        }
        if self.next_late.is_some_and(|t| t <= now) {
            // A lane head became late; the next `schedule` routes it around what it avoided.
            self.next_late = None;
        }
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
            self.guarded(|n| n.housekeeping(now));
        }
        let forgotten = self.routing.expire(now);
        if !forgotten.is_empty() {
            self.advert_wanted = true;
            self.guarded(|n| {
                for node in &forgotten {
                    n.store.delete(Table::Lsdb, node.as_str().as_bytes())?;
                }
                Ok(())
            });
        }
        self.check_summary(now);
        if now >= self.next_advert {
            self.advert_wanted = true;
        }
    }

    /// Offers what the links have room for, before the batch is committed (optional; see the
    /// calling contract). Handing a message on does not wait for this node's own fsync: the
    /// next hop stores it durably before it answers, and this node acknowledges its upstream
    /// only once the message is durable somewhere: after its own commit, or as soon as the
    /// next hop accepted it (`core::answers`, rule 2). If the commit fails, the upstream offers
    /// any message not yet acknowledged again, and a copy offered early becomes a duplicate
    /// that the destination's dedup absorbs.
    pub fn schedule(&mut self, now: Time) {
        self.seal_pending(now);
        if !self.withdrawn.is_empty() {
            self.guarded(|n| n.settle_withdrawn(now));
        }
        if self.poisoned.is_none() && self.advert_wanted && self.advert_due(now) {
            self.guarded(|n| n.originate_advert(now));
        }
        if self.poisoned.is_none()
            && let Err(e) = self.fill(now)
        {
            self.poison(e);
        }
        let released = self.answers.take_released();
        self.send_custody(released, None);
    }

    /// Makes the batch durable, then releases custody answers and events and schedules offers.
    /// See the calling contract on [`Node`]. For a store that syncs in the background, use
    /// [`Node::commit_begin`] and [`Node::commit_landed`].
    pub fn commit(&mut self, now: Time) -> Result<(), StoreError> {
        match self.commit_begin(now)? {
            Began::Durable => Ok(()),
            Began::InFlight => Err(StoreError::Io(
                "the store commits in the background: use commit_begin and commit_landed".into(),
            )),
        }
    }

    /// Seals the batch and starts making it durable (step 3 of the calling contract, split).
    ///
    /// If the store commits at once ([`Began::Durable`]) this is [`Node::commit`]. If it syncs
    /// in the background ([`Began::InFlight`]), the node goes on at once: the batch's offers
    /// are scheduled, a new batch opens on top of it, and the sealed batch's custody answers
    /// and events wait for [`Node::commit_landed`] (but for acceptances released earlier by
    /// the next hop, rule 2 of `core::answers`). Only one batch is in flight at a time: call
    /// this again only after it landed. Errors are those of [`Node::commit`].
    pub fn commit_begin(&mut self, now: Time) -> Result<Began, StoreError> {
        if self.answers.sealed() {
            return Err(StoreError::Io("a commit is already in flight".into()));
        }
        self.seal_pending(now);
        if !self.withdrawn.is_empty() {
            self.guarded(|n| n.settle_withdrawn(now));
        }
        if self.poisoned.is_none() && self.advert_wanted && self.advert_due(now) {
            self.guarded(|n| n.originate_advert(now));
        }
        if self.poisoned.is_none() && self.meta_dirty {
            self.guarded(Node::write_meta);
        }
        if self.poisoned.is_none() && self.membership.areas_changed() {
            self.guarded(Node::write_vouched);
        }
        let wrote = self.store.dirty();
        let began = match self.poisoned.take() {
            Some(e) => Err(e),
            None if wrote => self.store.begin_commit(),
            None => Ok(Began::Durable),
        };
        // Conservatively, on failure too: the store is reloaded.
        self.store_generation += u64::from(wrote || began.is_err());
        match began {
            Ok(Began::Durable) => {
                self.release_custody(None);
                self.events.extend(self.pending_events.drain(..));
                self.inbox_landed = self.next_cursor;
            }
            Ok(Began::InFlight) => {
                let released = self.answers.take_released();
                self.send_custody(released, None);
                self.answers.seal();
                let (wait, now): (Vec<Event>, Vec<Event>) =
                    self.pending_events.drain(..).partition(Event::waits_for_commit);
                self.events.extend(now);
                self.sealed_events = wait;
                self.inbox_sealed = self.next_cursor;
            }
            Err(e) => {
                self.fail_batches(now, &e);
                return Err(e);
            }
        }
        self.check_after_commit();
        // The batch is sealed whatever happens now. A store error while scheduling dooms the
        // next batch instead, which rolls back and reloads.
        if let Err(e) = self.fill(now) {
            self.poison(e);
        }
        began
    }

    /// The batch in flight has landed with `landed` (what the store's background commit
    /// reported). On success its custody answers and events are released. On failure it is
    /// gone, and so is the batch opened on top of it: the answers of both go as "busy", their
    /// submissions must be reported failed, and the node reloads from the last durable
    /// commit. Returns the outcome.
    pub fn commit_landed(
        &mut self,
        now: Time,
        landed: Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if !self.answers.sealed() {
            return Err(StoreError::Io("no commit in flight".into()));
        }
        match self.store.end_commit(landed) {
            Ok(()) => {
                let answers = self.answers.take_sealed();
                self.send_custody(answers, None);
                self.events.extend(self.sealed_events.drain(..));
                self.inbox_landed = self.inbox_sealed;
                Ok(())
            }
            Err(e) => {
                self.store_generation += 1;
                let answers = self.answers.take_sealed();
                self.send_custody(answers, Some(&e));
                self.sealed_events.clear();
                self.poisoned = None;
                self.fail_batches(now, &e);
                Err(e)
            }
        }
    }

    /// A commit failed: the open batch is rolled back, its answers go as "busy", and every
    /// in-memory index is rebuilt from the store.
    fn fail_batches(&mut self, now: Time, e: &StoreError) {
        self.counters.store_failures += 1;
        self.pending_events.clear();
        self.release_custody(Some(e));
        if let Err(reload) = self.load(now) {
            self.poisoned = Some(reload);
        }
    }

    /// With `CoreConfig::check_invariants`, checks them once a batch is sealed; the first
    /// violation is kept (and logged) and the node runs on.
    fn check_after_commit(&mut self) {
        if self.cfg.check_invariants
            && self.violation.is_none()
            && let Err(v) = self.check_invariants()
        {
            tracing::error!("{v}");
            self.events.push_back(Event::InvariantBroken { what: v.what.clone() });
            self.violation = Some(v);
        }
    }

    /// Sends the batch's custody answers, turned into "busy" refusals if the batch failed.
    /// Answers released early (the next hop accepted first) always go as they are.
    fn release_custody(&mut self, failure: Option<&StoreError>) {
        let (released, batch) = self.answers.take_for_commit();
        self.send_custody(released, None);
        self.send_custody(batch, failure);
    }

    fn send_custody(
        &mut self,
        answers: Vec<(LinkId, CustodyResult)>,
        failure: Option<&StoreError>,
    ) {
        let mut by_link: BTreeMap<LinkId, Vec<CustodyResult>> = BTreeMap::new();
        for (link, mut r) in answers {
            if let Some(e) = failure {
                r.code = CustodyCode::Busy;
                r.reason = format!("storage failure: {e}");
            }
            by_link.entry(link).or_default().push(r);
        }
        for (link, mut results) in by_link {
            let Some(l) = self.links.get(&link) else { continue };
            if l.info.compact {
                // Plain acceptances in little room; refusals (with their reasons) as they are.
                let accepted: Vec<Accepted> = results
                    .iter()
                    .filter(|r| r.code == CustodyCode::Accepted && r.reason.is_empty())
                    .map(|r| Accepted { offer: r.offer, fingerprint: [r.id.0[0], r.id.0[1]] })
                    .collect();
                results.retain(|r| r.code != CustodyCode::Accepted || !r.reason.is_empty());
                for chunk in accepted.chunks(4096) {
                    let frame = Frame::Accepted(chunk.to_vec());
                    self.transmits.push_back(Transmit { link, frame });
                }
            }
            for chunk in results.chunks(4096) {
                let frame = Frame::Custody(chunk.to_vec());
                self.transmits.push_back(Transmit { link, frame });
            }
        }
    }

    fn write_meta(&mut self) -> Result<(), StoreError> {
        let s = self.store.as_mut();
        s.put(Table::Meta, meta::NEXT_SEQ, &self.next_seq.to_be_bytes())?;
        s.put(Table::Meta, meta::NEXT_CURSOR, &self.next_cursor.to_be_bytes())?;
        s.put(Table::Meta, meta::READ_CURSOR, &self.read_cursor.to_be_bytes())?;
        self.held.write(s)?;
        s.put(Table::Meta, meta::ADVERT_SEQ, &self.advert_seq.to_be_bytes())?;
        self.meta_dirty = false;
        Ok(())
    }

    /// Relayed messages of the open batch that the next hop has not accepted yet.
    pub fn relayed_uncommitted(&self) -> usize {
        self.answers.awaiting_downstream()
    }

    /// Whether [`Node::commit`] has anything to do.
    pub fn needs_commit(&self) -> bool {
        self.store.dirty()
            || self.meta_dirty
            || self.membership.areas_changed()
            || self.poisoned.is_some()
            || !self.answers.is_empty()
            || !self.pending_events.is_empty()
            || !self.unsealed.is_empty()
            || !self.withdrawn.is_empty()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut t = Some(self.next_housekeeping.min(self.next_advert));
        let mut earliest = |x: Option<Time>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        earliest(self.next_expiry);
        earliest(self.next_object_expiry);
        earliest(self.next_objective);
        earliest(self.next_late);
        earliest(self.routing.next_expiry());
        earliest(self.summary_check);
        for l in self.links.values() {
            earliest(Some(l.next_timeout()));
            earliest(l.adverts_out.ready_at());
            earliest(l.ask_at());
        }
        if self.advert_wanted {
            earliest(self.last_advert.map(|t| t + ADVERT_MIN_INTERVAL));
        }
        t
    }

    pub(super) fn advert_due(&self, now: Time) -> bool {
        self.last_advert.is_none_or(|t| now >= t + ADVERT_MIN_INTERVAL)
    }

    /// The next message id: a counter (the first 8 bytes, little-endian) and 8 random bytes
    /// drawn when the node opened, so ids stay unique across restarts and nodes, and each
    /// one on a link costs two bytes after the one before (`CompactEnvelope.id_delta`). The
    /// counter's low bytes come first, where compact acceptances take their fingerprint.
    pub(super) fn new_id(&mut self) -> MessageId {
        self.id_counter = self.id_counter.wrapping_add(1);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.id_counter.to_le_bytes());
        id[8..].copy_from_slice(&self.id_run);
        MessageId(id)
    }
}

/// Whether the smoothed RTT moved enough (25%) to matter for routing.
fn rtt_moved(before: Option<Duration>, after: Option<Duration>) -> bool {
    match (before, after) {
        (Some(b), Some(a)) => {
            let (b, a) = (b.as_micros() as f64, a.as_micros() as f64);
            (a - b).abs() > 0.25 * b.max(1000.0)
        }
        _ => true,
    }
}
