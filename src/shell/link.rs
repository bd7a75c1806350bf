//! One QUIC connection to a neighbour: the `Hello` handshake and the tasks that move frames
//! between the connection and the driver.
//!
//! Authentication happens here, before the core hears of the link: the TLS handshake checks
//! the certificate chain (deployment CA, validity, and for the dialler the configured node id),
//! then each side sends `Hello` and checks the other's against its certificate. Only then is
//! the link announced to the driver.
//!
//! Streams: the dialler opens the control stream (highest priority); each side opens one
//! unidirectional stream per precedence when it first sends one, with a QUIC priority that
//! follows the precedence, so FLASH overtakes ROUTINE already buffered. Probes ride datagrams.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use super::driver::Command;
use super::pacing::{Pacer, link_bytes_sent};
use super::tls;
use super::traffic::{Channel, LinkBytes, Traffic};
use crate::core::frame::Frame;
use crate::core::link::{LinkId, LinkInfo};
use crate::core::types::{Medium, NodeId, Precedence, Role};
use crate::wire::{
    self, FrameDecoder, Hello, Incoming, PROTOCOL_VERSION, codes, compact, compress,
};

/// How long a peer has to complete the handshake and `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections one certificate may hold open at once (in the handshake or linked): a link per
/// medium and a few redials in flight. More is an attack (or a broken peer): refused `ABUSE`.
pub const MAX_CONNECTIONS_PER_PEER: usize = 8;
/// Refused connections logged at WARN per minute; the rest at DEBUG, counted in the next
/// WARN line (`status` keeps every refusal either way).
const REFUSALS_LOGGED_PER_MINUTE: u32 = 20;
/// Stream priority of the control stream (precedences use 0..=3).
const CONTROL_PRIORITY: i32 = 10;

/// Why a dial attempt did not produce a link.
enum DialError {
    /// Nobody answered (the peer or the path is down): try again later, quietly.
    Unreachable(String),
    /// The peer answered and one side refused the other: worth a line in `status`.
    Refused(String),
}

impl From<quinn::ConnectionError> for DialError {
    fn from(e: quinn::ConnectionError) -> DialError {
        use quinn::ConnectionError as E;
        match e {
            E::TimedOut | E::Reset | E::LocallyClosed => DialError::Unreachable(e.to_string()),
            other => DialError::Refused(format!("handshake failed: {other}")),
        }
    }
}

/// A refused connection attempt, kept for `status`.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub at: SystemTime,
    pub addr: SocketAddr,
    pub medium: Medium,
    /// Who it claimed or was expected to be, when known.
    pub peer: Option<NodeId>,
    pub reason: String,
}

/// What a node's link tasks share.
#[derive(Clone, Debug)]
pub struct LinkContext {
    pub node: NodeId,
    pub role: Role,
    pub driver: mpsc::UnboundedSender<Command>,
    /// Bulk offers (PRIORITY, ROUTINE): bounded, so a busy node slows the peer's bulk
    /// streams down instead of queueing without end (see `NodeHandle::bulk_sender`).
    pub bulk: mpsc::Sender<Command>,
    pub next_link: Arc<AtomicU64>,
    pub max_frame: usize,
    pub clock: super::clock::Clock,
    /// Serial numbers of revoked certificates (kept current by the driver).
    pub revoked: Revoked,
    /// How long a peer may leave a frame half-sent before it is cut off.
    pub stall_timeout: Duration,
    /// Connections per peer identity, and the budget of refusal log lines.
    pub admission: Arc<Admission>,
    /// Bytes each link carried.
    pub traffic: Traffic,
    /// The compact dialect this node announces (its offer streams take it and every older
    /// one); `None`: they take plain envelopes only.
    pub compact: Option<compact::Dialect>,
    /// Rates (bits per second) the links of paced media are held to (see `shell::pacing`).
    pub pacing: Arc<std::collections::BTreeMap<Medium, u64>>,
    /// Media whose offer streams are compressed to peers that announce `zstd-v1`.
    pub compress: Arc<std::collections::BTreeSet<Medium>>,
}

/// Connections held per peer identity, and how many refusals were logged lately.
#[derive(Debug, Default)]
pub struct Admission {
    per_peer: std::sync::Mutex<std::collections::HashMap<NodeId, usize>>,
    log: std::sync::Mutex<LogBudget>,
}

#[derive(Debug, Default)]
struct LogBudget {
    window: Option<tokio::time::Instant>,
    logged: u32,
    suppressed: u64,
}

/// One connection of a peer identity, counted until dropped.
#[derive(Debug)]
struct PeerSlot {
    admission: Arc<Admission>,
    peer: NodeId,
}

impl Admission {
    /// A slot for one more connection of `peer`, or `None` if it holds the most allowed.
    fn admit(self: &Arc<Self>, peer: &NodeId) -> Option<PeerSlot> {
        let mut per_peer = self.per_peer.lock().unwrap_or_else(|e| e.into_inner());
        let held = per_peer.entry(peer.clone()).or_insert(0);
        if *held >= MAX_CONNECTIONS_PER_PEER {
            return None;
        }
        *held += 1;
        Some(PeerSlot { admission: self.clone(), peer: peer.clone() })
    }

    /// Whether a refusal may be logged at WARN now; if so, how many were not since.
    fn may_log(&self) -> Option<u64> {
        let mut b = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        if b.window.is_none_or(|w| now.duration_since(w) >= Duration::from_secs(60)) {
            b.window = Some(now);
            b.logged = 0;
        }
        if b.logged >= REFUSALS_LOGGED_PER_MINUTE {
            b.suppressed += 1;
            return None;
        }
        b.logged += 1;
        Some(std::mem::take(&mut b.suppressed))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut per_peer = self.admission.per_peer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = per_peer.get_mut(&self.peer) {
            *held -= 1;
            if *held == 0 {
                per_peer.remove(&self.peer);
            }
        }
    }
}

/// Serial numbers of revoked certificates, shared by the driver and the link tasks.
pub type Revoked = Arc<std::sync::RwLock<std::collections::BTreeSet<bytes::Bytes>>>;

/// Refuses a peer whose certificate is on the revocation list.
fn check_revoked(ctx: &LinkContext, conn: &Connection) -> Result<(), (u32, String)> {
    let cert = tls::peer_certificate(conn).map_err(|e| (codes::BAD_HELLO, e))?;
    let serial = tls::serial_of(cert.as_ref());
    let revoked = ctx.revoked.read().map(|r| r.contains(&serial)).unwrap_or(false);
    if revoked {
        return Err((codes::REVOKED, "certificate revoked".into()));
    }
    Ok(())
}

impl LinkContext {
    fn refuse(&self, addr: SocketAddr, medium: Medium, peer: Option<NodeId>, reason: String) {
        match self.admission.may_log() {
            Some(0) => warn!(%addr, %medium, peer = ?peer, "refused link: {reason}"),
            Some(n) => warn!(
                %addr, %medium, peer = ?peer,
                "refused link: {reason} ({n} more refused before this were not logged)"
            ),
            None => debug!(%addr, %medium, peer = ?peer, "refused link: {reason}"),
        }
        let at = self.clock.system_time();
        let _ = self.driver.send(Command::Refused(Refusal { at, addr, medium, peer, reason }));
    }

    fn hello(&self, medium: Medium) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            node: self.node.clone(),
            role: self.role,
            capabilities: ["custody", "lsdb", crate::wire::LEAN_ADVERTS]
                .into_iter()
                .chain(self.compact.map_or(&[][..], compact::Dialect::capabilities).iter().copied())
                .chain(self.compact.is_some().then_some(compress::CAPABILITY))
                .map(String::from)
                .collect(),
            medium,
        }
    }
}

/// The driver's way to send on a link.
#[derive(Clone, Debug)]
pub struct LinkHandle {
    /// Serial number of the peer's certificate.
    pub serial: bytes::Bytes,
    /// When the peer's certificate expires.
    pub not_after: Option<std::time::SystemTime>,
    /// This side dialled (and probes, and redials) the link.
    pub dialled: bool,
    conn: Connection,
    control: mpsc::UnboundedSender<Frame>,
    /// Each precedence's writer, started by the first offer of that precedence: most links
    /// never carry some precedences, and a writer's queue and compressor cost memory from the
    /// start (in a 1,000-node simulated mesh, four writers a link were a tenth of the peak).
    /// Shared by the handle's clones, so that a precedence has one writer.
    classes: Arc<[OnceLock<mpsc::UnboundedSender<Frame>>; 4]>,
    /// The compact dialect offers are written in, if the peer takes one.
    dialect: Option<compact::Dialect>,
    /// Whether offer streams are compressed.
    compressed: bool,
    /// The link's span, for writers started later.
    span: tracing::Span,
    /// The runtime the link's tasks run on. Writers are started from the driver, which may
    /// run on a runtime of its own (a dedicated thread): a writer spawned there would encode,
    /// compress and write every offer on the driver's thread, and throughput through two
    /// relays fell by a sixth until writers were spawned here.
    runtime: tokio::runtime::Handle,
    bytes: Arc<LinkBytes>,
    pacer: Option<Arc<Pacer>>,
}

impl LinkHandle {
    /// Queues a frame on the stream (or datagram) it belongs to.
    pub fn send(&self, frame: Frame) {
        match &frame {
            Frame::Offer { envelope, .. } => {
                let class = envelope.precedence.index();
                let _ = self.classes[class].get_or_init(|| self.start_writer(class)).send(frame);
            }
            Frame::Probe { .. } | Frame::ProbeAck { .. } => {
                // Datagrams may be dropped; that is what probes measure.
                let datagram = wire::encode_datagram(&frame);
                self.bytes.add(true, Channel::Datagram, datagram.len());
                if let Some(p) = &self.pacer {
                    p.urgent(datagram.len());
                }
                let _ = self.conn.send_datagram(datagram);
            }
            _ => {
                let _ = self.control.send(frame);
            }
        }
    }

    /// Starts the writer of precedence index `class`; returns its queue.
    fn start_writer(&self, class: usize) -> mpsc::UnboundedSender<Frame> {
        let (tx, rx) = mpsc::unbounded_channel();
        let out =
            Out { conn: self.conn.clone(), bytes: self.bytes.clone(), pacer: self.pacer.clone() };
        let encoder = self.dialect.map(compact::OfferEncoder::new);
        let compressor = self.compressed.then(compress::Compressor::new);
        let writer = class_writer(out, class as i32, rx, encoder, compressor);
        self.runtime.spawn(writer.instrument(self.span.clone()));
        tx
    }

    pub fn close(&self, code: u32, reason: &str) {
        self.conn.close(VarInt::from_u32(code), reason.as_bytes());
    }

    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Brings the link's UDP byte counts up to date with the connection's statistics.
    pub fn refresh_udp(&self) {
        let stats = self.conn.stats();
        self.bytes.udp(self.conn.stable_id(), stats.udp_tx.bytes, stats.udp_rx.bytes);
    }
}

/// Dials `peer` at `addr` over `medium` and runs the link until it ends; returns why it ended
/// (or why it never started) and whether it was ever up.
pub async fn dial(
    ctx: LinkContext,
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    peer: NodeId,
    addr: SocketAddr,
    medium: Medium,
    attempt_timeout: Duration,
) -> (bool, String) {
    let attempt = async {
        let connecting = endpoint
            .connect_with(config, addr, peer.as_str())
            .map_err(|e| DialError::Refused(format!("cannot connect: {e}")))?;
        let conn = connecting.await.map_err(DialError::from)?;
        let (mut send, recv) = conn.open_bi().await.map_err(DialError::from)?;
        let mut buf = BytesMut::new();
        wire::encode_hello(&ctx.hello(medium), &mut buf);
        send.write_all(&buf).await.map_err(|e| match e {
            quinn::WriteError::ConnectionLost(c) => DialError::from(c),
            other => DialError::Refused(format!("handshake failed: {other}")),
        })?;
        // A server that refused our certificate closes the connection here.
        let (hello, decoder, recv) =
            read_hello(recv, ctx.max_frame).await.map_err(|(code, e)| {
                match conn.close_reason() {
                    Some(closed) => DialError::from(closed),
                    None => {
                        conn.close(VarInt::from_u32(code), e.as_bytes());
                        DialError::Refused(format!("handshake failed: {e}"))
                    }
                }
            })?;
        let identity = tls::peer_identity(&conn).map_err(DialError::Refused)?;
        check_revoked(&ctx, &conn)
            .and_then(|()| check_hello(&hello, &identity, Some(&peer)))
            .map_err(|(code, why)| {
                conn.close(VarInt::from_u32(code), why.as_bytes());
                DialError::Refused(why)
            })?;
        Ok::<_, DialError>((conn, send, recv, decoder, hello))
    };
    let result = match tokio::time::timeout(attempt_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(DialError::Unreachable("no answer to the handshake".into())),
    };
    match result {
        Ok((conn, send, recv, decoder, hello)) => {
            let reason = run(ctx, conn, send, recv, decoder, hello, medium, true).await;
            (true, reason)
        }
        Err(DialError::Unreachable(reason)) => (false, reason),
        Err(DialError::Refused(reason)) => {
            ctx.refuse(addr, medium, Some(peer), reason.clone());
            (false, reason)
        }
    }
}

/// Accepts connections on `endpoint` until it closes.
pub async fn accept_loop(ctx: LinkContext, endpoint: quinn::Endpoint, medium: Medium) {
    while let Some(incoming) = endpoint.accept().await {
        let ctx = ctx.clone();
        let addr = incoming.remote_address();
        tokio::spawn(
            async move {
                match accept_one(&ctx, incoming, medium).await {
                    Ok(((conn, send, recv, decoder, hello), _slot)) => {
                        // `_slot` counts the connection against its peer until the link ends.
                        let reason =
                            run(ctx, conn, send, recv, decoder, hello, medium, false).await;
                        debug!(%addr, "link ended: {reason}");
                    }
                    Err((peer, reason)) => ctx.refuse(addr, medium, peer, reason),
                }
            }
            .in_current_span(),
        );
    }
}

type Accepted = (Connection, SendStream, RecvStream, FrameDecoder, Hello);

/// The TLS handshake and the `Hello` exchange of an incoming connection, within
/// [`HELLO_TIMEOUT`]. A refused connection is closed with the code that says why (never left
/// to close with code 0), and no certificate holds more than [`MAX_CONNECTIONS_PER_PEER`].
async fn accept_one(
    ctx: &LinkContext,
    incoming: quinn::Incoming,
    medium: Medium,
) -> Result<(Accepted, PeerSlot), (Option<NodeId>, String)> {
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let conn = match tokio::time::timeout_at(deadline, incoming).await {
        Ok(c) => c.map_err(|e| (None, format!("handshake failed: {e}")))?,
        Err(_) => return Err((None, "handshake timed out".into())),
    };
    let identity = tls::peer_identity(&conn).map_err(|e| {
        conn.close(VarInt::from_u32(codes::BAD_HELLO), e.as_bytes());
        (None, e)
    })?;
    let claimed = Some(identity.node.clone());
    let Some(slot) = ctx.admission.admit(&identity.node) else {
        let why = format!(
            "too many connections from {} (at most {MAX_CONNECTIONS_PER_PEER} at once)",
            identity.node
        );
        conn.close(VarInt::from_u32(codes::ABUSE), why.as_bytes());
        return Err((claimed, why));
    };
    let hello_phase = async {
        let (mut send, recv) = conn
            .accept_bi()
            .await
            .map_err(|e| (codes::BAD_HELLO, format!("no control stream: {e}")))?;
        let (hello, decoder, recv) = read_hello(recv, ctx.max_frame).await?;
        check_revoked(ctx, &conn).and_then(|()| check_hello(&hello, &identity, None))?;
        let mut buf = BytesMut::new();
        wire::encode_hello(&ctx.hello(medium), &mut buf);
        send.write_all(&buf)
            .await
            .map_err(|e| (codes::CLOSE_NORMAL, format!("handshake failed: {e}")))?;
        Ok((send, recv, decoder, hello))
    };
    let outcome = match tokio::time::timeout_at(deadline, hello_phase).await {
        Ok(r) => r,
        Err(_) => Err((codes::BAD_HELLO, format!("no hello within {} s", HELLO_TIMEOUT.as_secs()))),
    };
    match outcome {
        Ok((send, recv, decoder, hello)) => Ok(((conn, send, recv, decoder, hello), slot)),
        Err((code, why)) => {
            conn.close(VarInt::from_u32(code), why.as_bytes());
            Err((claimed, why))
        }
    }
}

/// Reads the peer's `Hello`; `Err` carries the close code that says what was wrong.
async fn read_hello(
    mut recv: RecvStream,
    max_frame: usize,
) -> Result<(Hello, FrameDecoder, RecvStream), (u32, String)> {
    let mut decoder = FrameDecoder::new(max_frame);
    loop {
        match decoder.next_frame() {
            Ok(Some(Incoming::Hello(h))) => return Ok((h, decoder, recv)),
            Ok(Some(Incoming::Frame(f))) => {
                let _ = recv.stop(VarInt::from_u32(codes::BAD_HELLO));
                return Err((codes::BAD_HELLO, format!("expected hello, got {}", f.kind())));
            }
            Ok(None) => {}
            Err(e) => {
                let _ = recv.stop(VarInt::from_u32(e.code()));
                return Err((e.code(), format!("bad hello: {e}")));
            }
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => decoder.extend(&chunk.bytes),
            Ok(None) => {
                return Err((codes::BAD_HELLO, "control stream closed before hello".into()));
            }
            Err(e) => return Err((codes::BAD_HELLO, e.to_string())),
        }
    }
}

/// Checks a peer's `Hello` against its certificate (and the node we meant to reach).
fn check_hello(
    hello: &Hello,
    cert: &crate::pki::Identity,
    expected: Option<&NodeId>,
) -> Result<(), (u32, String)> {
    if hello.version != PROTOCOL_VERSION {
        return Err((
            codes::BAD_VERSION,
            format!(
                "unsupported protocol version {} (this node speaks {PROTOCOL_VERSION})",
                hello.version
            ),
        ));
    }
    if let Some(expected) = expected
        && &cert.node != expected
    {
        return Err((
            codes::WRONG_PEER,
            format!("expected {expected} but the certificate is for {}", cert.node),
        ));
    }
    if hello.node != cert.node || hello.role != cert.role {
        return Err((
            codes::BAD_HELLO,
            format!(
                "hello claims {} ({}) but the certificate is for {} ({})",
                hello.node, hello.role, cert.node, cert.role
            ),
        ));
    }
    Ok(())
}

/// Runs an authenticated link until the connection ends; returns why it ended.
async fn run(
    ctx: LinkContext,
    conn: Connection,
    control_send: SendStream,
    control_recv: RecvStream,
    decoder: FrameDecoder,
    hello: Hello,
    medium: Medium,
    dialled: bool,
) -> String {
    let link = LinkId(ctx.next_link.fetch_add(1, Ordering::Relaxed));
    let span = info_span!("link", %link, peer = %hello.node, %medium);
    async move {
        let bytes = ctx.traffic.link(&hello.node, medium);
        // Compact offers only to a peer that takes them (an older one gets plain envelopes).
        let announced = |what: &str| hello.capabilities.iter().any(|c| c == what);
        let dialect = ctx.compact.and_then(|ours| {
            compact::Dialect::agreed(ours, hello.capabilities.iter().map(String::as_str))
        });
        // Only compact streams are compressed (a node announces `zstd-v1` with them).
        let compressed =
            ctx.compress.contains(&medium) && announced(compress::CAPABILITY) && dialect.is_some();
        // A compressed stream stays at `compact-v2`: zstd all but erases the fields
        // `compact-v3` leaves out, and without them it matched less of what follows (40
        // reports sent one by one: 4,631 B compressed in `compact-v2`, 4,842 in `compact-v3`;
        // README, "Compression").
        let dialect =
            if compressed { dialect.map(|d| d.min(compact::Dialect::V2)) } else { dialect };
        let pacer = ctx
            .pacing
            .get(&medium)
            .and_then(|&bps| Pacer::new(bps, 1.0, tokio::time::Instant::now()))
            .map(Arc::new);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let certificate = tls::peer_certificate(&conn)
            .map(|c| bytes::Bytes::copy_from_slice(c.as_ref()))
            .unwrap_or_default();
        let serial = tls::serial_of(&certificate);
        let not_after =
            crate::pki::not_after(&rustls::pki_types::CertificateDer::from(certificate.as_ref()))
                .ok();
        if let Some(left) = not_after.and_then(|t| t.duration_since(ctx.clock.system_time()).ok())
            && left < crate::pki::EXPIRY_WARNING
        {
            tracing::warn!(
                peer = %hello.node,
                "the neighbour's certificate expires in {}",
                crate::units::format_duration(left)
            );
        }
        let handle = LinkHandle {
            serial,
            not_after,
            dialled,
            conn: conn.clone(),
            control: control_tx,
            classes: Default::default(),
            dialect,
            compressed,
            span: tracing::Span::current(),
            runtime: tokio::runtime::Handle::current(),
            bytes: bytes.clone(),
            pacer: pacer.clone(),
        };
        let info = LinkInfo {
            peer: hello.node.clone(),
            role: hello.role,
            medium,
            prober: dialled,
            certificate,
            compact: dialect.is_some(),
            lean_adverts: announced(crate::wire::LEAN_ADVERTS),
        };
        info!(addr = %conn.remote_address(), "link up");
        if ctx.driver.send(Command::LinkUp { link, info, handle }).is_err() {
            conn.close(VarInt::from_u32(codes::CLOSE_NORMAL), b"node stopping");
            return "node stopping".into();
        }
        let out = Out { conn: conn.clone(), bytes: bytes.clone(), pacer };
        tokio::spawn(control_writer(out, control_send, control_rx).in_current_span());
        let reader = Reader { ctx: ctx.clone(), conn: conn.clone(), link, bytes: bytes.clone() };
        tokio::spawn(reader.clone().read_stream(control_recv, decoder, true).in_current_span());
        tokio::spawn(reader.clone().accept_streams().in_current_span());
        tokio::spawn(reader.read_datagrams().in_current_span());
        let reason = conn.closed().await.to_string();
        let stats = conn.stats();
        bytes.udp_closed(conn.stable_id(), stats.udp_tx.bytes, stats.udp_rx.bytes);
        info!("link down: {reason}");
        let _ = ctx.driver.send(Command::LinkDown { link, reason: reason.clone() });
        reason
    }
    .instrument(span)
    .await
}

/// What a link's writers share: the connection, its byte counts and its pacer.
struct Out {
    conn: Connection,
    bytes: Arc<LinkBytes>,
    pacer: Option<Arc<Pacer>>,
}

/// Writes custody answers and link-state frames on the control stream. They are small and
/// urgent: a paced link counts them but never holds them back.
async fn control_writer(out: Out, mut send: SendStream, mut rx: mpsc::UnboundedReceiver<Frame>) {
    let Out { conn, bytes, pacer } = out;
    let _ = send.set_priority(CONTROL_PRIORITY);
    let mut batch = Vec::new();
    let mut buf = BytesMut::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        for f in batch.drain(..) {
            wire::encode_frame(&f, &mut buf);
        }
        bytes.add(true, Channel::Control, buf.len());
        if let Some(p) = &pacer {
            p.urgent(buf.len());
        }
        if let Err(e) = send.write_chunk(buf.split().freeze()).await {
            conn.close(
                VarInt::from_u32(codes::CLOSE_NORMAL),
                format!("control stream: {e}").as_bytes(),
            );
            return;
        }
    }
}

/// Writes one precedence's offers on its own stream, opened when first needed. On a paced
/// link, bulk goes in chunks at the pacer's rate and FLASH and IMMEDIATE go at once.
async fn class_writer(
    out: Out,
    priority: i32,
    mut rx: mpsc::UnboundedReceiver<Frame>,
    mut encoder: Option<compact::OfferEncoder>,
    mut compressor: Option<compress::Compressor>,
) {
    let Out { conn, bytes, pacer } = out;
    let class = Precedence::from_index(priority as usize).unwrap_or(Precedence::Routine);
    let urgent = class >= Precedence::Immediate;
    let mut stream: Option<SendStream> = None;
    // Grown as bursts need: a frame is about 400 bytes, and four writers a link each
    // reserving 256 of them cost a node 1 MB or more before it sent anything.
    let mut batch = Vec::new();
    let mut buf = BytesMut::new();
    while rx.recv_many(&mut batch, 1024).await > 0 {
        for f in &batch {
            if let Frame::Offer { envelope, .. } = f {
                bytes.offer(true, envelope.payload.len());
            }
        }
        match encoder.as_mut() {
            Some(e) => e.encode(&batch, &mut buf),
            None => batch.iter().for_each(|f| wire::encode_frame(f, &mut buf)),
        }
        batch.clear();
        if let Some(c) = compressor.as_mut() {
            let frames = buf.split();
            c.compress(&frames, &mut buf);
        }
        bytes.add(true, Channel::Offers, buf.len());
        if stream.is_none() {
            match conn.open_uni().await {
                Ok(s) => {
                    let _ = s.set_priority(priority);
                    stream = Some(s);
                }
                Err(_) => return,
            }
        }
        let Some(s) = stream.as_mut() else { return };
        let data = buf.split().freeze();
        // While this PRIORITY writer has something to send, ROUTINE waits.
        let _busy = match &pacer {
            Some(p) if priority == Precedence::Priority.index() as i32 => Some(p.priority_busy()),
            _ => None,
        };
        // A paced link takes bulk a chunk at a time (the stream is a byte stream: a chunk may
        // end inside a frame); urgent offers and unpaced links take it all at once.
        let step = match &pacer {
            Some(p) if !urgent => {
                p.set_mtu(conn.stats().path.current_mtu);
                p.chunk()
            }
            _ => data.len().max(1),
        };
        for start in (0..data.len()).step_by(step) {
            let piece = data.slice(start..(start + step).min(data.len()));
            match &pacer {
                Some(p) if urgent => p.urgent(piece.len()),
                Some(p) => {
                    let now = tokio::time::Instant::now();
                    if p.reconcile_due(now) {
                        let sent = link_bytes_sent(&conn.stats().udp_tx, conn.remote_address());
                        p.reconcile(sent, now);
                    }
                    p.bulk(piece.len(), class).await
                }
                None => {}
            }
            if let Err(e) = s.write_chunk(piece).await {
                // The peer stopped the stream (it found a frame malformed) or the connection
                // is gone. Close the link: whatever was not acknowledged is offered again.
                conn.close(
                    VarInt::from_u32(codes::MALFORMED),
                    format!("offer stream: {e}").as_bytes(),
                );
                return;
            }
        }
    }
}

/// What the tasks reading one link share.
#[derive(Clone)]
struct Reader {
    ctx: LinkContext,
    conn: Connection,
    link: LinkId,
    bytes: Arc<LinkBytes>,
}

impl Reader {
    /// Accepts the peer's offer streams.
    async fn accept_streams(self) {
        while let Ok(recv) = self.conn.accept_uni().await {
            let decoder = if let Some(dialect) = self.ctx.compact {
                FrameDecoder::with_compressed(self.ctx.max_frame, dialect)
            } else {
                FrameDecoder::new(self.ctx.max_frame)
            };
            tokio::spawn(self.clone().read_stream(recv, decoder, false).in_current_span());
        }
    }

    /// Reads frames from a stream and hands them to the driver in batches. The control stream
    /// carries everything but offers; offer streams carry only offers.
    async fn read_stream(self, mut recv: RecvStream, mut decoder: FrameDecoder, control: bool) {
        let Reader { ctx, conn, link, bytes } = self;
        let channel = if control { Channel::Control } else { Channel::Offers };
        loop {
            let mut frames = Vec::new();
            let mut failure = None;
            loop {
                match decoder.next_frame() {
                    Ok(Some(Incoming::Frame(f))) => {
                        let allowed = matches!(f, Frame::Offer { .. }) != control
                            && !matches!(f, Frame::Probe { .. } | Frame::ProbeAck { .. });
                        if allowed {
                            if let Frame::Offer { envelope, .. } = &f {
                                bytes.offer(false, envelope.payload.len());
                            }
                            frames.push(f);
                        } else {
                            failure =
                                Some((codes::UNEXPECTED, format!("unexpected {} frame", f.kind())));
                            break;
                        }
                    }
                    Ok(Some(Incoming::Hello(_))) => {
                        failure = Some((codes::UNEXPECTED, "hello after the handshake".into()));
                        break;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        failure = Some((e.code(), e.to_string()));
                        break;
                    }
                }
            }
            if !frames.is_empty() {
                let bulk = frames.iter().all(|f| {
                    matches!(f, Frame::Offer { envelope, .. } if envelope.precedence <= Precedence::Priority)
                });
                let sent = if bulk {
                    ctx.bulk.send(Command::Frames { link, frames }).await.is_ok()
                } else {
                    ctx.driver.send(Command::Frames { link, frames }).is_ok()
                };
                if !sent {
                    return;
                }
            }
            if let Some((code, reason)) = failure {
                warn!(code, "resetting stream: {reason}");
                let _ = ctx.driver.send(Command::BadFrame { link, reason: reason.clone() });
                let _ = recv.stop(VarInt::from_u32(code));
                // A peer that speaks the protocol badly is cut off (it may dial again; what it
                // had offered and was not accepted stays with it).
                conn.close(VarInt::from_u32(code), reason.as_bytes());
                return;
            }
            // A stream may idle between frames for ever, but not in the middle of one.
            let read = recv.read_chunk(64 * 1024, true);
            let chunk = if decoder.buffered() > 0 {
                match tokio::time::timeout(ctx.stall_timeout, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        let reason = format!(
                            "stalled: a frame left half-sent for {} s",
                            ctx.stall_timeout.as_secs()
                        );
                        warn!("cutting off: {reason}");
                        let _ = ctx.driver.send(Command::BadFrame { link, reason: reason.clone() });
                        conn.close(VarInt::from_u32(codes::ABUSE), reason.as_bytes());
                        return;
                    }
                }
            } else {
                read.await
            };
            match chunk {
                Ok(Some(chunk)) => {
                    bytes.add(false, channel, chunk.bytes.len());
                    decoder.extend(&chunk.bytes);
                }
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// Reads probe datagrams.
    async fn read_datagrams(self) {
        let Reader { ctx, conn, link, bytes } = self;
        while let Ok(datagram) = conn.read_datagram().await {
            bytes.add(false, Channel::Datagram, datagram.len());
            match wire::decode_datagram(datagram) {
                Ok(f @ (Frame::Probe { .. } | Frame::ProbeAck { .. })) => {
                    if ctx.driver.send(Command::Frames { link, frames: vec![f] }).is_err() {
                        return;
                    }
                }
                Ok(other) => {
                    let _ = ctx.driver.send(Command::BadFrame {
                        link,
                        reason: format!("unexpected {} datagram", other.kind()),
                    });
                }
                Err(e) => {
                    let _ = ctx
                        .driver
                        .send(Command::BadFrame { link, reason: format!("datagram: {e}") });
                }
            }
        }
    }
}
