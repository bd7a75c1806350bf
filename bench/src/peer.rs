//! A lightweight load source and sink that speak the relay protocol directly: mutual TLS,
//! `Hello`, offers on a precedence stream, custody answers on the control stream, probes on
//! datagrams. They keep nothing on disk, so every cost measured is the relays'.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use bytes::{Bytes, BytesMut};
use quinn::{Connection, RecvStream, SendStream};
use relaymesh::core::frame::{Advert, AdvertLink, CustodyCode, CustodyResult, Frame};
use relaymesh::core::trust::{MAX_BATCH, seal_advert, seal_batch};
use relaymesh::core::types::{Body, Envelope};
use relaymesh::core::{Address, Medium, MessageId, NodeId, Precedence, Time, TrafficStatus};
use relaymesh::pki::PkiTrust;
use relaymesh::shell::clock::Clock;
use relaymesh::shell::tls::Credentials;
use relaymesh::shell::trust::pki_trust;
use relaymesh::wire::{self, FrameDecoder, Incoming};
use relaymesh_testkit::{Control, RawPeer};
use tokio::sync::{Mutex, mpsc};

/// One authenticated connection, after the `Hello` exchange.
pub struct RawLink {
    pub conn: Connection,
    /// Signs what this end originates (envelopes, its advert).
    pub trust: Arc<PkiTrust>,
    control_send: Arc<Mutex<SendStream>>,
    control_recv: RecvStream,
    decoder: FrameDecoder,
    _endpoint: quinn::Endpoint,
}

impl RawLink {
    /// A link on `peer`'s connection, after the `Hello` exchange on `control`.
    fn new(peer: RawPeer, control: Control, trust: PkiTrust) -> RawLink {
        RawLink {
            conn: peer.conn,
            trust: Arc::new(trust),
            control_send: Arc::new(Mutex::new(control.send)),
            control_recv: control.recv,
            decoder: control.decoder,
            _endpoint: peer.endpoint,
        }
    }
}

/// Dials `peer` at `addr` (this side probes).
pub async fn dial(
    creds: &Credentials,
    clock: Clock,
    peer: &str,
    addr: SocketAddr,
) -> Result<RawLink> {
    let raw = RawPeer::dial(creds, clock, peer, addr).await?;
    let control = raw.handshake().await?;
    let link = RawLink::new(raw, control, pki_trust(creds, clock)?);
    link.spawn_probes();
    // The relay learns this end's key from its advert, and floods it, so that every node on
    // the way can check the signatures of what this end originates.
    link.send_control(&[own_advert(&link.trust, creds, peer)?]).await?;
    Ok(link)
}

/// Accepts one link on `endpoint` (from `relaymesh_testkit::listen`; the other side probes,
/// we answer).
pub async fn accept(endpoint: quinn::Endpoint, creds: &Credentials) -> Result<RawLink> {
    let raw = RawPeer::accept(endpoint, creds).await?;
    let control = raw.answer_hello().await?;
    let link = RawLink::new(raw, control, pki_trust(creds, Clock::wall())?);
    link.spawn_probe_answers();
    Ok(link)
}

impl RawLink {
    fn spawn_probes(&self) {
        let conn = self.conn.clone();
        tokio::spawn(async move {
            let mut seq = 0;
            loop {
                seq += 1;
                let frame = Frame::Probe { seq, rtt_us: 0, loss_ppm: 0 };
                if conn.send_datagram(wire::encode_datagram(&frame)).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        // Answers are read and dropped.
        let conn = self.conn.clone();
        tokio::spawn(async move { while conn.read_datagram().await.is_ok() {} });
    }

    fn spawn_probe_answers(&self) {
        let conn = self.conn.clone();
        tokio::spawn(async move {
            while let Ok(d) = conn.read_datagram().await {
                if let Ok(Frame::Probe { seq, .. }) = wire::decode_datagram(d) {
                    let _ = conn.send_datagram(wire::encode_datagram(&Frame::ProbeAck { seq }));
                }
            }
        });
    }

    pub async fn send_control(&self, frames: &[Frame]) -> Result<()> {
        let mut buf = BytesMut::new();
        for f in frames {
            wire::encode_frame(f, &mut buf);
        }
        self.control_send.lock().await.write_all(&buf).await?;
        Ok(())
    }

    /// Reads control frames until the next custody answers arrive.
    pub async fn next_custody(&mut self) -> Result<Vec<CustodyResult>> {
        loop {
            while let Some(incoming) = self.decoder.next_frame()? {
                if let Incoming::Frame(Frame::Custody(r)) = incoming {
                    return Ok(r);
                }
            }
            match self.control_recv.read_chunk(65536, true).await? {
                Some(c) => self.decoder.extend(&c.bytes),
                None => bail!("control stream closed"),
            }
        }
    }
}

/// The sink's advert: it is linked to `relay`, so link-state routing can reach it.
pub fn sink_advert(link: &RawLink, creds: &Credentials, relay: &str) -> Result<Frame> {
    own_advert(&link.trust, creds, relay)
}

/// This end's signed advert, with one link to `relay`.
fn own_advert(trust: &PkiTrust, creds: &Credentials, relay: &str) -> Result<Frame> {
    let mut advert = Advert {
        node: creds.identity.node.clone(),
        role: creds.identity.role,
        seq: 1,
        lifetime: Duration::from_secs(3600),
        age: Duration::ZERO,
        links: vec![AdvertLink {
            neighbour: NodeId::new(relay)?,
            medium: Medium::Public,
            rtt: Duration::from_millis(1),
            loss_ppm: 0,
            bandwidth_bps: 1_000_000_000,
            up: true,
        }],
        groups: vec![],
        subscriptions: vec![],
        certificate: Bytes::new(),
        signature: Bytes::new(),
        previous_certificates: vec![],
        area: String::new(),
        summary: Bytes::new(),
    };
    seal_advert(trust, &mut advert);
    Ok(Frame::LinkState(advert))
}

/// What a load source offers: messages `first..first + total`, numbered in their ids.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    pub first: u64,
    pub total: u64,
    pub size: usize,
    /// Offers kept unanswered at most.
    pub window: u64,
    /// One offer per `pace` when set; otherwise as fast as the window allows.
    pub pace: Option<Duration>,
    pub precedence: Precedence,
    /// A paced source signs `trust::MAX_BATCH` messages ahead, together, as an origin with a
    /// backlog does; otherwise it signs each as it sends it (its age starts then). Unpaced
    /// sources always sign what they send at once together.
    pub sign_ahead: bool,
}

impl LoadSpec {
    /// `total` ROUTINE messages from number 1, unpaced.
    pub fn routine(total: u64, size: usize, window: u64) -> LoadSpec {
        LoadSpec {
            first: 1,
            total,
            size,
            window,
            pace: None,
            precedence: Precedence::Routine,
            sign_ahead: false,
        }
    }
}

/// Offers `spec.total` messages to `to` and returns once the relay has accepted custody of
/// all of them; then closes the link.
pub async fn load(
    link: RawLink,
    origin: NodeId,
    to: NodeId,
    spec: LoadSpec,
    clock: Clock,
) -> Result<()> {
    load_signed(link, origin, to, spec, clock, None).await
}

/// Signs the messages `load` would offer, ahead of time (the origin's signing cost is not the
/// relays'), in batches of `trust::MAX_BATCH` as a busy origin node signs them. Hand them to
/// [`load_signed`].
pub fn presign(
    trust: &PkiTrust,
    origin: &NodeId,
    to: &NodeId,
    spec: LoadSpec,
    clock: Clock,
) -> Vec<Envelope> {
    let payload = Bytes::from(vec![0x42; spec.size]);
    let numbers = spec.first..spec.first + spec.total;
    signed(trust, origin, to, numbers, spec.precedence, &payload, clock)
}

/// Messages `numbers` from `origin` to `to`, signed together (in batches of
/// `trust::MAX_BATCH`).
fn signed(
    trust: &PkiTrust,
    origin: &NodeId,
    to: &NodeId,
    numbers: std::ops::Range<u64>,
    precedence: Precedence,
    payload: &Bytes,
    clock: Clock,
) -> Vec<Envelope> {
    let mut envs: Vec<Envelope> = numbers
        .map(|n| envelope(origin, to, n, precedence, payload.clone(), clock.now()))
        .collect();
    seal_batch(trust, &mut envs);
    envs
}

/// As [`load`], with the envelopes signed beforehand by [`presign`] when given.
pub async fn load_signed(
    mut link: RawLink,
    origin: NodeId,
    to: NodeId,
    spec: LoadSpec,
    clock: Clock,
    presigned: Option<Vec<Envelope>>,
) -> Result<()> {
    let LoadSpec { first, total, size, window, pace, precedence, sign_ahead } = spec;
    let mut presigned = presigned.map(Vec::into_iter);
    let trust = link.trust.clone();
    let conn = link.conn.clone();
    let mut stream = link.conn.open_uni().await?;
    let payload = Bytes::from(vec![0x42; size]);
    let accepted = Arc::new(AtomicU64::new(0));
    let acks = accepted.clone();
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        loop {
            match link.next_custody().await {
                Ok(results) => {
                    let ok = results.iter().filter(|r| r.code == CustodyCode::Accepted).count();
                    acks.fetch_add(ok as u64, Ordering::Relaxed);
                    let _ = done_tx.try_send(());
                }
                Err(_) => return,
            }
        }
    });
    let mut next = 0u64;
    let mut ahead = std::collections::VecDeque::new();
    let mut buf = BytesMut::new();
    let mut tick = pace.map(|p| {
        let mut i = tokio::time::interval(p);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        i
    });
    while next < total {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        while next - accepted.load(Ordering::Relaxed) >= window {
            // `None`: the custody reader is gone (the link closed); nothing more will come.
            if done_rx.recv().await.is_none() && next - accepted.load(Ordering::Relaxed) >= window {
                let done = accepted.load(Ordering::Relaxed);
                bail!("the link closed with {done} of {total} accepted");
            }
        }
        let room = window - (next - accepted.load(Ordering::Relaxed));
        let batch = if tick.is_some() { 1 } else { room.min(total - next).min(512) };
        let envs: Vec<Envelope> = match presigned.as_mut() {
            Some(signed) => signed.take(batch as usize).collect(),
            None if sign_ahead => {
                if ahead.is_empty() {
                    let n = (total - next).min(MAX_BATCH as u64);
                    let numbers = first + next..first + next + n;
                    ahead
                        .extend(signed(&trust, &origin, &to, numbers, precedence, &payload, clock));
                }
                ahead.pop_front().into_iter().collect()
            }
            // Signed together, as an origin node signs what it has to send at once.
            None => {
                let numbers = first + next..first + next + batch;
                signed(&trust, &origin, &to, numbers, precedence, &payload, clock)
            }
        };
        for env in envs {
            next += 1;
            wire::encode_frame(&Frame::Offer { offer: next, envelope: env }, &mut buf);
        }
        stream.write_chunk(buf.split().freeze()).await?;
    }
    while accepted.load(Ordering::Relaxed) < total {
        let answer = tokio::time::timeout(Duration::from_secs(60), done_rx.recv()).await;
        let done = accepted.load(Ordering::Relaxed);
        match answer {
            Err(_) => bail!("custody answers stalled at {done} of {total}"),
            Ok(None) if done < total => bail!("the link closed with {done} of {total} accepted"),
            Ok(_) => {}
        }
    }
    conn.close(0u32.into(), b"done");
    Ok(())
}

fn envelope(
    origin: &NodeId,
    to: &NodeId,
    n: u64,
    precedence: Precedence,
    payload: Bytes,
    now: Time,
) -> Envelope {
    // As a node numbers its own messages (`Node::new_id`): the counter, little-endian, then
    // eight bytes that are this run's.
    static RUN: std::sync::OnceLock<[u8; 8]> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        (t.map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id())).to_le_bytes()
    });
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_le_bytes());
    id[8..].copy_from_slice(run);
    Envelope {
        id: MessageId(id),
        origin: origin.clone(),
        to: Address::Node(to.clone()),
        precedence,
        lifetime: Duration::from_secs(3600),
        content_type: "application/octet-stream".into(),
        payload,
        receipt: false,
        body: Body::Data,
        status: TrafficStatus::Actual,
        created: now,
        age: Duration::ZERO,
        hop_count: 0,
        destinations: vec![to.clone()],
        signature: Bytes::new(),
        key: None,
        supersedes: None,
    }
}

/// One message as the sink received it.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// The number the load source gave it (the first 8 bytes of its id).
    pub n: u64,
    /// Microseconds from its creation to its arrival, on this machine's clock.
    pub age_us: u64,
    pub precedence: Precedence,
}

/// Takes every offer on `link`, answers it, and reports each delivery to `out`.
pub async fn sink(link: RawLink, clock: Clock, out: mpsc::UnboundedSender<Delivery>) -> Result<()> {
    let control = link.control_send.clone();
    let conn = link.conn.clone();
    while let Ok(mut recv) = conn.accept_uni().await {
        let control = control.clone();
        let out = out.clone();
        tokio::spawn(async move {
            let mut decoder = FrameDecoder::new(wire::DEFAULT_MAX_FRAME);
            let mut buf = BytesMut::new();
            loop {
                let mut results = Vec::new();
                while let Ok(Some(Incoming::Frame(Frame::Offer { offer, envelope }))) =
                    decoder.next_frame()
                {
                    let age_us = clock.now().saturating_since(envelope.created).as_micros() as u64;
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&envelope.id.0[..8]);
                    let n = u64::from_le_bytes(n);
                    let _ = out.send(Delivery { n, age_us, precedence: envelope.precedence });
                    results.push(CustodyResult {
                        offer,
                        id: envelope.id,
                        code: CustodyCode::Accepted,
                        reason: String::new(),
                    });
                }
                if !results.is_empty() {
                    wire::encode_frame(&Frame::Custody(results), &mut buf);
                    if control.lock().await.write_all(&buf).await.is_err() {
                        return;
                    }
                    buf.clear();
                }
                match recv.read_chunk(65536, true).await {
                    Ok(Some(c)) => decoder.extend(&c.bytes),
                    _ => return,
                }
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaymesh::core::Role;
    use relaymesh_testkit::{Pki, Tool};

    /// The relay takes the load's offer stream and then goes away without a custody answer:
    /// the load fails, rather than waiting on a reader that is gone.
    #[tokio::test]
    async fn a_load_whose_link_closes_fails_instead_of_waiting_for_ever() {
        let pki = Pki::new("relaymesh-bench-test", Tool::Library { days: 1 }).unwrap();
        let relay = pki.issue_credentials("relay-a", Role::Relay).unwrap();
        let load_creds = pki.issue_credentials("load", Role::Command).unwrap();
        let clock = Clock::wall();
        let (endpoint, addr) =
            relaymesh_testkit::listen(&relay, clock, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let relay_side = tokio::spawn(async move {
            let link = accept(endpoint, &relay).await.unwrap();
            let _offers = link.conn.accept_uni().await.unwrap();
            link.conn.close(0u32.into(), b"gone");
            link
        });
        let link = dial(&load_creds, clock, "relay-a", addr).await.unwrap();
        let (origin, to) = (NodeId::new("load").unwrap(), NodeId::new("sink").unwrap());
        let spec = LoadSpec::routine(1000, 64, 8);
        let outcome =
            tokio::time::timeout(Duration::from_secs(30), load(link, origin, to, spec, clock))
                .await
                .expect("the load returned once its link closed");
        assert!(outcome.is_err(), "a load without custody answers cannot succeed");
        drop(relay_side.await.unwrap());
    }
}
