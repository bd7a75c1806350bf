//! The driver task: owns a node's [`Node`] and its store, and feeds it everything that happens.
//!
//! Each turn it takes every command waiting (up to `max_batch`), hands them to the core, then
//! commits once: one fsync for the whole batch (group commit). Only after the commit does it
//! answer submissions and release custody acknowledgements (but for a relayed message the
//! next hop accepted first, whose acknowledgement goes at once: `core::answers`), then it
//! sends what the core asks and publishes events. Timers come from tokio's clock, so under a
//! paused clock (the simulator) the driver runs in virtual time.
//!
//! With a store that syncs in the background ([`Landing`]), the commit is split: the driver
//! seals the batch (`Node::commit_begin`) and goes on forwarding while the disk syncs; the
//! batch's answers and replies leave when it lands (`Node::commit_landed`). One batch is in
//! flight at a time; the next one collects meanwhile and is sealed when it lands, so a slow
//! fsync delays acknowledgements, never forwarding.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, warn};

use super::clock::Clock;
use super::link::{LinkHandle, Refusal};
use crate::core::frame::Frame;
use crate::core::link::{LinkId, LinkInfo};
use crate::core::objects::{ObjectProgress, ObjectSubmission};
use crate::core::store::{Began, StoreError};
use crate::core::{
    Event, InboxItem, MessageId, MessageView, Node, NodeStatus, Submission, SubmitError, Time,
    TopicPattern,
};

/// Everything that reaches the driver.
#[derive(Debug)]
pub enum Command {
    LinkUp {
        link: LinkId,
        info: LinkInfo,
        handle: LinkHandle,
    },
    Frames {
        link: LinkId,
        frames: Vec<Frame>,
    },
    LinkDown {
        link: LinkId,
        reason: String,
    },
    BadFrame {
        link: LinkId,
        reason: String,
    },
    Refused(Refusal),
    /// A revocation list from a file or the API.
    Revocations {
        crl: Vec<u8>,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    Submit {
        sub: Submission,
        reply: oneshot::Sender<Result<MessageId, SubmitError>>,
    },
    /// An object, whole (`Node::handle_submit_object`).
    SubmitObject {
        sub: Box<ObjectSubmission>,
        reply: oneshot::Sender<Result<MessageId, SubmitError>>,
    },
    /// How far an object has got here.
    ObjectProgress {
        id: MessageId,
        reply: oneshot::Sender<Result<Option<ObjectProgress>, String>>,
    },
    /// Objects arriving or leaving.
    Objects {
        limit: usize,
        reply: oneshot::Sender<Result<Vec<(MessageId, ObjectProgress)>, String>>,
    },
    /// A delivered object's manifest (`chunks` none) or chunks (from, at most how many).
    ObjectRead {
        id: MessageId,
        chunks: Option<(u32, u32)>,
        reply: oneshot::Sender<Result<ObjectPart, String>>,
    },
    /// Recall a message (`Node::handle_cancel`).
    Cancel {
        target: MessageId,
        reason: String,
        precedence: Option<crate::core::Precedence>,
        reply: oneshot::Sender<Result<crate::core::CancelReceipt, SubmitError>>,
    },
    Subscribe {
        pattern: TopicPattern,
        subscribe: bool,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    /// Join (`true`) or leave a named group at run time.
    Group {
        name: String,
        join: bool,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    /// The node's credentials were replaced (certificate, key): announce the new ones.
    CredentialsChanged,
    /// New credentials were refused (the running ones stay): why, for `status`.
    CredentialsRefused(String),
    MarkRead {
        cursor: u64,
    },
    Status {
        reply: oneshot::Sender<Snapshot>,
    },
    /// Messages held, all precedences (what `Status` says of them, without its cost).
    Held {
        reply: oneshot::Sender<u64>,
    },
    Message {
        id: MessageId,
        reply: oneshot::Sender<Result<Option<MessageView>, String>>,
    },
    Inbox {
        from: Option<u64>,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<InboxItem>, String>>,
    },
    /// Destinations past their delivery objective.
    Overdue {
        limit: usize,
        reply: oneshot::Sender<Result<Vec<crate::core::OverdueView>, String>>,
    },
    /// This node's own messages, newest first.
    Sent {
        limit: usize,
        reply: oneshot::Sender<Result<Vec<MessageView>, String>>,
    },
    Stop {
        reply: oneshot::Sender<()>,
    },
}

/// What [`NodeHandle::object_read`] found.
#[derive(Debug)]
pub enum ObjectPart {
    /// The manifest of an object delivered here (`None`: not delivered here).
    Manifest(Option<crate::core::objects::Manifest>),
    /// Chunks in order from the one asked for, as many as asked or up to the first missing.
    Chunks(Vec<bytes::Bytes>),
}

/// The node's status plus what only the shell knows.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub node: NodeStatus,
    pub refusals: Vec<Refusal>,
    pub bad_frames: Vec<(LinkId, String)>,
    pub links: BTreeMap<LinkId, std::net::SocketAddr>,
    /// Bytes each link carried, by neighbour and medium (since the node started).
    pub wire: BTreeMap<(crate::core::NodeId, crate::core::Medium), super::traffic::WireBytes>,
    pub now: Time,
    pub started: Time,
    /// The node clock's wall time (what certificate validity is judged by).
    pub wall: std::time::SystemTime,
    /// When this node's certificate expires (the one it signs with now).
    pub certificate_expires: Option<std::time::SystemTime>,
    /// That certificate's serial number.
    pub certificate_serial: Option<Vec<u8>>,
    /// Why the latest attempt to reload the node's credentials failed, if it did (the
    /// running ones stay); cleared by a reload that works.
    pub credentials_error: Option<String>,
    /// When each link's peer certificate expires.
    pub peer_certificates: BTreeMap<LinkId, std::time::SystemTime>,
    /// The mesh as this node knows it.
    pub topology: Vec<crate::core::TopologyLink>,
    /// Named groups and topic patterns announced anywhere this node knows of.
    pub known_groups: Vec<String>,
    pub known_topics: Vec<String>,
}

/// A cheap, clonable way to talk to a running node.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    tx: mpsc::UnboundedSender<Command>,
    /// Bulk offers (PRIORITY and ROUTINE), bounded: see [`NodeHandle::bulk_sender`].
    bulk: mpsc::Sender<Command>,
    inbox: watch::Receiver<u64>,
    events: broadcast::Sender<Event>,
}

/// The driver stopped (the node is shutting down or crashed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the node is not running")]
pub struct Stopped;

impl NodeHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Submits a message; resolves once it is durable (or refused).
    pub async fn submit(&self, sub: Submission) -> Result<Result<MessageId, SubmitError>, Stopped> {
        self.ask(|reply| Command::Submit { sub, reply }).await
    }

    /// Submits an object, whole; resolves once it is durable (or refused).
    pub async fn submit_object(
        &self,
        sub: ObjectSubmission,
    ) -> Result<Result<MessageId, SubmitError>, Stopped> {
        self.ask(|reply| Command::SubmitObject { sub: Box::new(sub), reply }).await
    }

    /// How far object `id` has got here (`None`: unknown here).
    pub async fn object_progress(
        &self,
        id: MessageId,
    ) -> Result<Result<Option<ObjectProgress>, String>, Stopped> {
        self.ask(|reply| Command::ObjectProgress { id, reply }).await
    }

    /// Objects arriving here incomplete or sent from here and not all passed on.
    pub async fn objects(
        &self,
        limit: usize,
    ) -> Result<Result<Vec<(MessageId, ObjectProgress)>, String>, Stopped> {
        self.ask(|reply| Command::Objects { limit, reply }).await
    }

    /// A delivered object's manifest (`chunks` none) or `(from, count)` of its chunks.
    pub async fn object_read(
        &self,
        id: MessageId,
        chunks: Option<(u32, u32)>,
    ) -> Result<Result<ObjectPart, String>, Stopped> {
        self.ask(|reply| Command::ObjectRead { id, chunks, reply }).await
    }

    /// Recalls message `target`; resolves once the cancel is durable (or refused).
    pub async fn cancel(
        &self,
        target: MessageId,
        reason: String,
        precedence: Option<crate::core::Precedence>,
    ) -> Result<Result<crate::core::CancelReceipt, SubmitError>, Stopped> {
        self.ask(|reply| Command::Cancel { target, reason, precedence, reply }).await
    }

    pub async fn subscribe(
        &self,
        pattern: TopicPattern,
        subscribe: bool,
    ) -> Result<Result<bool, String>, Stopped> {
        self.ask(|reply| Command::Subscribe { pattern, subscribe, reply }).await
    }

    /// Joins or leaves a named group (durably, advertised); whether anything changed.
    pub async fn group(&self, name: String, join: bool) -> Result<Result<bool, String>, Stopped> {
        self.ask(|reply| Command::Group { name, join, reply }).await
    }

    pub async fn status(&self) -> Result<Snapshot, Stopped> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// Messages held here, all precedences: one number, where `status` builds the whole
    /// route table (the simulator samples every node's queue depth with this).
    pub async fn held(&self) -> Result<u64, Stopped> {
        self.ask(|reply| Command::Held { reply }).await
    }

    /// Hands the node a revocation list (from a file or the API); whether it was newer.
    pub async fn revocations(&self, crl: Vec<u8>) -> Result<Result<bool, String>, Stopped> {
        self.ask(|reply| Command::Revocations { crl, reply }).await
    }

    pub async fn message(
        &self,
        id: MessageId,
    ) -> Result<Result<Option<MessageView>, String>, Stopped> {
        self.ask(|reply| Command::Message { id, reply }).await
    }

    /// Inbox messages from cursor `from` on (`None`: the unread ones).
    pub async fn inbox(
        &self,
        from: Option<u64>,
        limit: usize,
    ) -> Result<Result<Vec<InboxItem>, String>, Stopped> {
        self.ask(|reply| Command::Inbox { from, limit, reply }).await
    }

    /// Destinations of this node's messages past their delivery objective, most urgent first.
    pub async fn overdue(
        &self,
        limit: usize,
    ) -> Result<Result<Vec<crate::core::OverdueView>, String>, Stopped> {
        self.ask(|reply| Command::Overdue { limit, reply }).await
    }

    /// This node's own messages whose status it keeps, newest first, at most `limit`.
    pub async fn sent(&self, limit: usize) -> Result<Result<Vec<MessageView>, String>, Stopped> {
        self.ask(|reply| Command::Sent { limit, reply }).await
    }

    /// Tells the node its credentials were replaced: it advertises the new certificate at
    /// once, and the old one too if the key changed (see `Node::credentials_changed`).
    pub fn credentials_changed(&self) -> Result<(), Stopped> {
        self.tx.send(Command::CredentialsChanged).map_err(|_| Stopped)
    }

    /// Tells the node that new credentials were refused and why (shown in `status` and
    /// `/metrics` until a reload works).
    pub fn credentials_refused(&self, why: String) -> Result<(), Stopped> {
        self.tx.send(Command::CredentialsRefused(why)).map_err(|_| Stopped)
    }

    pub fn mark_read(&self, cursor: u64) -> Result<(), Stopped> {
        self.tx.send(Command::MarkRead { cursor }).map_err(|_| Stopped)
    }

    /// Watches the inbox's next cursor: it changes whenever something is delivered.
    pub fn inbox_watch(&self) -> watch::Receiver<u64> {
        self.inbox.clone()
    }

    /// Every core event from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Asks the driver to commit and stop.
    pub async fn stop(&self) {
        let _ = self.ask(|reply| Command::Stop { reply }).await;
    }

    pub(crate) fn sender(&self) -> mpsc::UnboundedSender<Command> {
        self.tx.clone()
    }

    /// The channel for offers of PRIORITY and ROUTINE. It is bounded and the driver takes
    /// from it only after everything else (control frames, FLASH and IMMEDIATE offers, API
    /// calls), a turn's worth at a time: when the driver falls behind, the link readers wait,
    /// QUIC flow control holds the peer's bulk streams, and FLASH still goes straight in.
    pub(crate) fn bulk_sender(&self) -> mpsc::Sender<Command> {
        self.bulk.clone()
    }
}

/// Receives every event of every node that shares it, with the node and the time (the
/// simulator's observer).
pub type Observer = mpsc::UnboundedSender<(crate::core::NodeId, Time, Event)>;

/// When the driver commits a batch (group commit).
///
/// A batch is committed once it is `after` old and nothing it relayed still waits for the next
/// hop, or once it is `within` old whatever waits. Waiting for the next hop pays twice: a
/// message the next hop accepts before this node commits never touches this node's disk, and
/// fewer, larger commits mean fewer fsyncs. Nothing waits on it but custody answers to the
/// previous hop (and API submissions); messages are handed on before the commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitPolicy {
    pub after: std::time::Duration,
    pub within: std::time::Duration,
}

impl CommitPolicy {
    /// Commit after every turn (simulations with in-memory stores).
    pub const IMMEDIATE: CommitPolicy =
        CommitPolicy { after: std::time::Duration::ZERO, within: std::time::Duration::ZERO };
}

impl Default for CommitPolicy {
    fn default() -> CommitPolicy {
        CommitPolicy {
            after: std::time::Duration::from_millis(2),
            within: std::time::Duration::from_millis(100),
        }
    }
}

/// A commit this slow is logged (in the driver's thread every message waits for it; in the
/// background, acknowledgements do).
pub const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(50);

/// How such a commit's log line starts, before its duration in ms (`relaymesh-bench latency`
/// counts these lines in the relays' logs).
pub const SLOW_COMMIT_LOG: &str = "store commit took";

/// How the driver learns that a batch in flight is durable.
#[derive(Debug, Default)]
pub enum Landing {
    /// The store commits in `begin_commit`: nothing is ever in flight.
    #[default]
    AtOnce,
    /// The store's writer thread reports each landing (`RedbStore::in_background`).
    Reported(super::redb_store::Landings),
    /// A simulated disk: each batch lands this long after it was sealed, on the driver's
    /// clock (a `MemStore::split_commits` handle in the simulator).
    After(Duration),
}

/// How the driver runs.
#[derive(Debug)]
pub struct DriverOptions {
    pub clock: Clock,
    pub max_batch: usize,
    /// When a batch is committed.
    pub commit: CommitPolicy,
    /// Directory whose free space limits the store (`None`: unlimited, as in simulations).
    pub data_dir: Option<PathBuf>,
    pub observer: Option<Observer>,
    /// Revoked certificate serials, shared with the link tasks' handshake checks.
    pub revoked: super::link::Revoked,
    /// The links' byte counts, which the link tasks add to.
    pub traffic: super::traffic::Traffic,
    /// How batches in flight land (split commits).
    pub landing: Landing,
}

/// Creates the driver's channels; run the returned future to drive the node.
pub fn driver(
    node: Node,
    opts: DriverOptions,
) -> (NodeHandle, impl std::future::Future<Output = ()> + Send + 'static) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (bulk, bulk_rx) = mpsc::channel(BULK_QUEUE);
    let (inbox_tx, inbox_rx) = watch::channel(0);
    // The broadcast serves API subscribers (`/v1/events`, the console); a simulated node
    // hands every event to its observer and has none, so it keeps a small buffer (4,096
    // events are about 0.5 MB a node, 0.5 GB in a 1,000-node simulation).
    let events_buffer = if opts.observer.is_some() { 64 } else { 4096 };
    let (events_tx, _) = broadcast::channel(events_buffer);
    let handle = NodeHandle { tx, bulk, inbox: inbox_rx, events: events_tx.clone() };
    let started = opts.clock.now();
    let d = Driver {
        node,
        credentials_error: None,
        disk_full: false,
        links: BTreeMap::new(),
        refusals: VecDeque::new(),
        bad_frames: VecDeque::new(),
        inbox: inbox_tx,
        events: events_tx,
        started,
        opts,
    };
    (handle, d.run(rx, bulk_rx))
}

struct Driver {
    node: Node,
    /// Why the latest credentials reload failed (see [`Snapshot::credentials_error`]).
    credentials_error: Option<String>,
    /// The store's disk was full at the last check (logged when it changes).
    disk_full: bool,
    links: BTreeMap<LinkId, LinkHandle>,
    refusals: VecDeque<Refusal>,
    bad_frames: VecDeque<(LinkId, String)>,
    inbox: watch::Sender<u64>,
    events: broadcast::Sender<Event>,
    started: Time,
    opts: DriverOptions,
}

/// A batch sealed and on its way to the disk, with what waits for it.
struct InFlight {
    after: AfterCommit,
    /// When it was sealed, on the driver's clock (a simulated disk lands after a delay).
    sealed_at: tokio::time::Instant,
    /// When, in real time (for the slow-commit log).
    started: std::time::Instant,
}

/// A reply and the answer it will get once the batch is committed.
type Deferred<T> = (oneshot::Sender<T>, T);

/// Replies that wait for the batch's commit.
#[derive(Default)]
struct AfterCommit {
    submits: Vec<Deferred<Result<MessageId, SubmitError>>>,
    cancels: Vec<Deferred<Result<crate::core::CancelReceipt, SubmitError>>>,
    subscribes: Vec<Deferred<Result<bool, String>>>,
    queries: Vec<Command>,
    stop: Option<oneshot::Sender<()>>,
}

impl AfterCommit {
    fn is_empty(&self) -> bool {
        self.submits.is_empty()
            && self.cancels.is_empty()
            && self.subscribes.is_empty()
            && self.queries.is_empty()
            && self.stop.is_none()
    }
}

const KEEP_REFUSALS: usize = 64;
/// Batches of bulk offers waiting for the driver, at most.
const BULK_QUEUE: usize = 64;
const DISK_CHECK: Duration = Duration::from_secs(10);

impl Driver {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Command>,
        mut bulk: mpsc::Receiver<Command>,
    ) {
        // Grown as a turn needs (up to `max_batch` commands of about 200 bytes: the simulator
        // takes 4,096 a turn, and reserving that for every node cost 1.5 MB each).
        let mut batch = Vec::new();
        let mut bulk_batch = Vec::new();
        let mut next_disk_check = tokio::time::Instant::now();
        let mut after = AfterCommit::default();
        let mut landing = std::mem::take(&mut self.opts.landing);
        let mut in_flight: Option<InFlight> = None;
        // When the driver last handled the node's due timers.
        let mut timers_handled: Option<tokio::time::Instant> = None;
        // When the open batch got its first change (see `CommitPolicy`).
        let mut batch_started: Option<tokio::time::Instant> = None;
        loop {
            let clock = self.opts.clock;
            // A timer still due after this turn handled it means the open batch is doomed
            // (its expiries and adverts wait for the rollback): with a batch in flight that
            // waits for the landing, not in a loop.
            let timer = self
                .node
                .poll_timeout()
                .map(|t| clock.instant(t))
                .filter(|t| in_flight.is_none() || timers_handled.is_none_or(|h| *t > h));
            if batch_started.is_none() && (self.node.needs_commit() || !after.is_empty()) {
                batch_started = Some(tokio::time::Instant::now());
            }
            let policy = self.opts.commit;
            let wait =
                if self.node.relayed_uncommitted() > 0 { policy.within } else { policy.after };
            // The next batch is sealed only once the one in flight has landed.
            let commit_at = batch_started.filter(|_| in_flight.is_none()).map(|t| t + wait);
            let sealed_at = in_flight.as_ref().map(|f| f.sealed_at);
            let mut landed = None;
            tokio::select! {
                biased;
                r = land(&mut landing, sealed_at), if sealed_at.is_some() => landed = Some(r),
                n = rx.recv_many(&mut batch, self.opts.max_batch) => {
                    if n == 0 {
                        break;
                    }
                }
                _ = bulk.recv_many(&mut bulk_batch, self.opts.max_batch) => {}
                _ = sleep_until(commit_at), if commit_at.is_some() => {}
                _ = sleep_until(timer), if timer.is_some() => {}
            }
            if let Some(result) = landed
                && let Some(flight) = in_flight.take()
            {
                let now = clock.now();
                let failed = result.is_err();
                if self.land(now, result, flight, &mut after) {
                    break;
                }
                if failed {
                    // The open batch went with the one in flight.
                    batch_started = None;
                }
            }
            // Whatever urgent arrived meanwhile joins this turn, ahead of bulk (sorted below).
            while batch.len() < 4 * self.opts.max_batch {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            // And a turn's worth of bulk, so that a steady stream of urgent work (custody
            // answers, say) cannot starve it: FLASH waits at most one such turn.
            while bulk_batch.len() < self.opts.max_batch {
                match bulk.try_recv() {
                    Ok(cmd) => bulk_batch.push(cmd),
                    Err(_) => break,
                }
            }
            batch.append(&mut bulk_batch);
            let now = clock.now();
            if tokio::time::Instant::now() >= next_disk_check {
                next_disk_check = tokio::time::Instant::now() + DISK_CHECK;
                self.check_disk();
            }
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
                timers_handled = Some(clock.instant(now));
            }
            // Offers that arrived together are taken in precedence order: frames from the
            // different precedence streams of a link reach the driver in whatever order their
            // reader tasks ran, and FLASH should not lose that race. The sort is stable, so
            // each stream keeps its own order; everything else is taken in arrival order.
            let mut offers = Vec::new();
            for cmd in batch.drain(..) {
                match cmd {
                    Command::Frames { link, mut frames } => {
                        for f in frames.extract_if(.., |f| precedence_of(f).is_some()) {
                            if let Some(p) = precedence_of(&f) {
                                offers.push((p, link, f));
                            }
                        }
                        // The rest (answers, probes, adverts) in arrival order, now.
                        if !frames.is_empty() {
                            self.apply(Command::Frames { link, frames }, now, &mut after);
                        }
                    }
                    other => self.apply(other, now, &mut after),
                }
            }
            offers.sort_by_key(|(p, _, _)| std::cmp::Reverse(*p));
            for (_, link, f) in offers {
                self.node.handle_frame(now, link, f);
            }
            // Cut-through: hand on what can go before this node's own fsync.
            self.node.schedule(now);
            self.send_transmits();
            if in_flight.is_some() || (!self.node.needs_commit() && after.is_empty()) {
                continue;
            }
            let started = *batch_started.get_or_insert_with(tokio::time::Instant::now);
            let age = tokio::time::Instant::now() - started;
            let due = age >= policy.within
                || (age >= policy.after && self.node.relayed_uncommitted() == 0);
            if !(due || after.stop.is_some()) {
                continue;
            }
            batch_started = None;
            tracing::trace!("commit");
            let commit_started = std::time::Instant::now();
            let committed = match self.node.commit_begin(now) {
                Ok(Began::InFlight) if matches!(landing, Landing::AtOnce) => {
                    // A store in the background with nobody to say when it lands.
                    let e = StoreError::Io("the store commits in the background, unasked".into());
                    self.node.commit_landed(now, Err(e))
                }
                Ok(Began::InFlight) => {
                    let sealed_at = tokio::time::Instant::now();
                    let after = std::mem::take(&mut after);
                    in_flight = Some(InFlight { after, sealed_at, started: commit_started });
                    // What the sealed batch freed goes now: its offers, released answers.
                    self.flush(now);
                    continue;
                }
                Ok(Began::Durable) => Ok(()),
                Err(e) => Err(e),
            };
            slow_commit(commit_started, "");
            if self.finish(now, std::mem::take(&mut after), &committed) {
                break;
            }
        }
        for l in self.links.values() {
            l.close(crate::wire::codes::CLOSE_NORMAL, "node stopping");
        }
    }

    /// The batch in flight landed: its replies go, and if it failed, those of the batch
    /// opened on top of it (`open`) go failed too. Whether the driver is to stop.
    fn land(
        &mut self,
        now: Time,
        result: Result<(), StoreError>,
        flight: InFlight,
        open: &mut AfterCommit,
    ) -> bool {
        slow_commit(flight.started, " (in the background; forwarding went on)");
        let landed = self.node.commit_landed(now, result);
        let mut stop = self.finish(now, flight.after, &landed);
        if landed.is_err() {
            // The open batch is rolled back with the one that failed.
            stop |= self.finish(now, std::mem::take(open), &landed);
        }
        stop
    }

    /// Answers what waited for a commit (failed if it failed); whether the driver is to stop.
    fn finish(&mut self, now: Time, done: AfterCommit, committed: &Result<(), StoreError>) -> bool {
        if let Err(e) = committed {
            warn!("store commit failed, batch rolled back: {e}");
        }
        for (reply, result) in done.submits {
            let result = match (committed, result) {
                (Err(e), Ok(_)) => Err(SubmitError::Storage(e.clone())),
                (_, r) => r,
            };
            let _ = reply.send(result);
        }
        for (reply, result) in done.cancels {
            let result = match (committed, result) {
                (Err(e), Ok(_)) => Err(SubmitError::Storage(e.clone())),
                (_, r) => r,
            };
            let _ = reply.send(result);
        }
        for (reply, result) in done.subscribes {
            let result = match (committed, result) {
                (Err(e), Ok(_)) => Err(e.to_string()),
                (_, r) => r,
            };
            let _ = reply.send(result);
        }
        self.flush(now);
        for q in done.queries {
            self.answer(q, now);
        }
        match done.stop {
            Some(stop) => {
                let _ = stop.send(());
                true
            }
            None => false,
        }
    }

    fn check_disk(&mut self) {
        if let Some(dir) = &self.opts.data_dir {
            let free = fs4::available_space(dir).ok();
            self.node.handle_disk_space(free);
            let full = self.node.disk_nearly_full();
            if full && !self.disk_full {
                warn!(
                    free = free.unwrap_or(0),
                    reserve = crate::core::DISK_RESERVE,
                    dir = %dir.display(),
                    "the store's disk is full: offers and submissions are refused until space \
                     is freed (neighbours keep what they offer; nothing is lost)"
                );
            } else if !full && self.disk_full {
                tracing::info!(free = free.unwrap_or(0), "the store's disk has room again");
            }
            self.disk_full = full;
        }
    }

    fn apply(&mut self, cmd: Command, now: Time, after: &mut AfterCommit) {
        match cmd {
            Command::LinkUp { link, info, handle } => {
                self.links.insert(link, handle);
                self.node.handle_link_up(now, link, info);
            }
            Command::Frames { link, frames } => {
                for f in frames {
                    self.node.handle_frame(now, link, f);
                }
            }
            Command::LinkDown { link, reason } => {
                debug!(%link, "link down: {reason}");
                self.links.remove(&link);
                self.node.handle_link_down(now, link);
            }
            Command::BadFrame { link, reason } => {
                self.bad_frames.push_back((link, reason));
                while self.bad_frames.len() > KEEP_REFUSALS {
                    self.bad_frames.pop_front();
                }
            }
            Command::Refused(r) => {
                self.refusals.push_back(r);
                while self.refusals.len() > KEEP_REFUSALS {
                    self.refusals.pop_front();
                }
            }
            Command::Submit { sub, reply } => {
                let r = self.node.handle_submit(now, sub);
                after.submits.push((reply, r));
            }
            Command::SubmitObject { sub, reply } => {
                let r = self.node.handle_submit_object(now, *sub);
                after.submits.push((reply, r));
            }
            Command::Cancel { target, reason, precedence, reply } => {
                let r = self.node.handle_cancel(now, target, reason, precedence);
                after.cancels.push((reply, r));
            }
            Command::Subscribe { pattern, subscribe, reply } => {
                let r =
                    self.node.handle_subscription(pattern, subscribe).map_err(|e| e.to_string());
                after.subscribes.push((reply, r));
            }
            Command::Group { name, join, reply } => {
                let r = self.node.handle_group(now, &name, join).map_err(|e| e.to_string());
                after.subscribes.push((reply, r));
            }
            Command::Revocations { crl, reply } => {
                let _ = reply.send(self.node.handle_revocations(None, &crl));
            }
            Command::MarkRead { cursor } => self.node.handle_inbox_read(cursor),
            Command::CredentialsChanged => {
                self.credentials_error = None;
                self.node.credentials_changed(now);
            }
            Command::CredentialsRefused(why) => self.credentials_error = Some(why),
            Command::Stop { reply } => after.stop = Some(reply),
            q @ (Command::Status { .. }
            | Command::Held { .. }
            | Command::Message { .. }
            | Command::Inbox { .. }
            | Command::ObjectProgress { .. }
            | Command::Objects { .. }
            | Command::ObjectRead { .. }
            | Command::Sent { .. }
            | Command::Overdue { .. }) => {
                after.queries.push(q);
            }
        }
    }

    /// Sends what the core asks and publishes its events.
    fn flush(&mut self, now: Time) {
        self.send_transmits();
        self.publish(now);
    }

    fn send_transmits(&mut self) {
        while let Some(t) = self.node.poll_transmit() {
            if let Some(l) = self.links.get(&t.link) {
                if tracing::enabled!(tracing::Level::TRACE) {
                    match &t.frame {
                        Frame::Offer { offer, envelope } => tracing::trace!(
                            link = %t.link, addr = %l.remote_address(), offer, id = %envelope.id, precedence = %envelope.precedence,
                            to = ?envelope.destinations, "offer"
                        ),
                        other => {
                            tracing::trace!(link = %t.link, addr = %l.remote_address(), kind = other.kind(), "send")
                        }
                    }
                }
                l.send(t.frame);
            }
        }
    }

    fn publish(&mut self, now: Time) {
        let mut delivered = false;
        while let Some(e) = self.node.poll_event() {
            delivered |= matches!(e, Event::Delivered { .. });
            match &e {
                Event::Misbehaved { link, peer, reason } => {
                    if let Some(l) = self.links.get(link) {
                        l.close(crate::wire::codes::ABUSE, reason);
                    }
                    self.bad_frames.push_back((*link, format!("{peer} cut off: {reason}")));
                    while self.bad_frames.len() > KEEP_REFUSALS {
                        self.bad_frames.pop_front();
                    }
                }
                Event::LinkChanged { link, up: false, .. } => {
                    // The probes of a link this side dialled went unanswered. Its QUIC
                    // connection would linger until the idle timeout, sending only on its
                    // exponentially backed-off loss timer, so it would notice a returning path
                    // (or a restarted peer's stateless reset) many seconds late: close it and
                    // let the redial loop find the path again at once.
                    if let Some(l) = self.links.get(link).filter(|l| l.dialled) {
                        l.close(crate::wire::codes::CLOSE_NORMAL, "link down: probes unanswered");
                    }
                }
                Event::Overdue { of, precedence, destinations, objective } => {
                    let to: Vec<&str> = destinations.iter().map(|d| d.as_str()).collect();
                    tracing::warn!(
                        id = %of,
                        %precedence,
                        destinations = %to.join(","),
                        objective = %humantime::format_duration(*objective),
                        "overdue: not delivered within its objective"
                    );
                }
                Event::OverdueCleared { of, precedence, destinations } => {
                    let to: Vec<&str> = destinations.iter().map(|d| d.as_str()).collect();
                    tracing::info!(id = %of, %precedence, destinations = %to.join(","), "no longer overdue");
                }
                Event::InvariantBroken { what } if self.opts.observer.is_none() => {
                    // Checked only in debug builds (every test that runs a relay process): such
                    // a relay stops at the first broken invariant, as a failed `debug_assert!`
                    // would, so the test that started it fails where it broke. The simulator
                    // (the one driver with an observer) reports it in its run instead.
                    tracing::error!("invariant broken: {what}");
                    if cfg!(debug_assertions) {
                        eprintln!("relaymesh: invariant broken: {what}");
                        std::process::abort();
                    }
                }
                Event::Revoked { serials, .. } => {
                    if let Ok(mut r) = self.opts.revoked.write() {
                        r.extend(serials.iter().cloned());
                    }
                    for l in self.links.values() {
                        if serials.contains(&l.serial) {
                            l.close(crate::wire::codes::REVOKED, "certificate revoked");
                        }
                    }
                }
                _ => {}
            }
            if let Some(obs) = &self.opts.observer {
                let _ = obs.send((self.node.id().clone(), now, e.clone()));
            }
            let _ = self.events.send(e);
        }
        if delivered {
            let next = self.node.inbox_next();
            self.inbox.send_replace(next);
        }
    }

    fn answer(&mut self, q: Command, now: Time) {
        match q {
            Command::Held { reply } => {
                let _ = reply.send(self.node.held_messages());
            }
            Command::Status { reply } => {
                let own = self
                    .node
                    .config()
                    .trust
                    .as_ref()
                    .map(|t| rustls::pki_types::CertificateDer::from(t.certificate().to_vec()));
                let (known_groups, known_topics) = self.node.known_addresses();
                let snapshot = Snapshot {
                    node: self.node.status(),
                    refusals: self.refusals.iter().cloned().collect(),
                    bad_frames: self.bad_frames.iter().cloned().collect(),
                    links: self.links.iter().map(|(id, l)| (*id, l.remote_address())).collect(),
                    wire: {
                        // Brings the live connections' UDP counts up to date.
                        self.links.values().for_each(|l| l.refresh_udp());
                        self.opts.traffic.totals()
                    },
                    now,
                    started: self.started,
                    wall: self.opts.clock.system_time(),
                    certificate_expires: own.as_ref().and_then(|c| crate::pki::not_after(c).ok()),
                    certificate_serial: own.as_ref().and_then(|c| crate::pki::serial_of(c).ok()),
                    credentials_error: self.credentials_error.clone(),
                    peer_certificates: self
                        .links
                        .iter()
                        .filter_map(|(id, l)| {
                            let renewed = self
                                .node
                                .peer_certificate(*id)
                                .and_then(|der| crate::pki::not_after(&der.to_vec().into()).ok());
                            Some((*id, renewed.or(l.not_after)?))
                        })
                        .collect(),
                    topology: self.node.topology(),
                    known_groups,
                    known_topics,
                };
                let _ = reply.send(snapshot);
            }
            Command::Message { id, reply } => {
                let _ = reply.send(self.node.message_status(&id).map_err(|e| e.to_string()));
            }
            Command::Inbox { from, limit, reply } => {
                let _ = reply.send(self.node.inbox(from, limit).map_err(|e| e.to_string()));
            }
            Command::Overdue { limit, reply } => {
                let _ = reply.send(self.node.overdue_list(limit).map_err(|e| e.to_string()));
            }
            Command::ObjectProgress { id, reply } => {
                let _ = reply.send(self.node.object_progress(&id).map_err(|e| e.to_string()));
            }
            Command::Objects { limit, reply } => {
                let _ = reply.send(self.node.objects_in_progress(limit).map_err(|e| e.to_string()));
            }
            Command::ObjectRead { id, chunks, reply } => {
                let r = match chunks {
                    None => self.node.object_manifest(&id).map(ObjectPart::Manifest),
                    Some((from, count)) => {
                        let mut out = Vec::new();
                        let mut result = Ok(());
                        for i in from..from.saturating_add(count) {
                            match self.node.object_chunk(&id, i) {
                                Ok(Some(c)) => out.push(c),
                                Ok(None) => break,
                                Err(e) => {
                                    result = Err(e);
                                    break;
                                }
                            }
                        }
                        result.map(|()| ObjectPart::Chunks(out))
                    }
                };
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
            Command::Sent { limit, reply } => {
                let _ = reply.send(self.node.sent_status(now, limit).map_err(|e| e.to_string()));
            }
            _ => {}
        }
    }
}

fn precedence_of(f: &Frame) -> Option<crate::core::Precedence> {
    match f {
        Frame::Offer { envelope, .. } => Some(envelope.precedence),
        _ => None,
    }
}

/// Logs a commit that took long.
fn slow_commit(started: std::time::Instant, how: &str) {
    let took = started.elapsed();
    if took >= SLOW_COMMIT {
        warn!("{SLOW_COMMIT_LOG} {} ms{how}", took.as_millis());
    }
}

/// Waits for the batch sealed at `sealed_at` to land.
async fn land(
    landing: &mut Landing,
    sealed_at: Option<tokio::time::Instant>,
) -> Result<(), StoreError> {
    match landing {
        Landing::AtOnce => std::future::pending().await,
        Landing::Reported(landings) => landings
            .recv()
            .await
            .unwrap_or_else(|| Err(StoreError::Io("the store writer stopped".into()))),
        Landing::After(delay) => {
            sleep_until(sealed_at.map(|t| t + *delay)).await;
            Ok(())
        }
    }
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
