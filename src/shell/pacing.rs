//! Pacing a link of known rate, so that FLASH never queues behind bulk at the bottleneck.
//!
//! A window-based controller cannot keep the bottleneck's queue short on a link whose round
//! trip is shorter than a few packets' transmission time: its window never falls below a few
//! packets, so the queue in front of the slowest hop is a few packets deep whatever the rate,
//! and a FLASH packet waits behind them (and for the window to open). On a 20 Mbit/s link with
//! a 0.3 ms round trip, that was 3 ms on top of a 1.4 ms idle latency.
//!
//! So on a link whose rate is known (`congestion = "known-rate"`), the offer writers hand QUIC
//! bulk (PRIORITY, ROUTINE) at no more than `pace` x `bandwidth`, in chunks of about 2 ms of
//! the link. What goes into QUIC then leaves at once and no queue builds at the bottleneck;
//! the bulk backlog waits in the writers, behind which nothing urgent stands: FLASH and
//! IMMEDIATE offers, custody answers and probes are never held back, only counted, so bulk
//! gives way to them.
//!
//! The bucket counts stream bytes plus an estimate of the headers of the packets that carry
//! them (IP, UDP and QUIC: [`PACKET_COST`] a packet), and while bulk flows it is set right, at
//! most every 50 ms, by what QUIC says it sent ([`Pacer::reconcile`]): acknowledgements,
//! retransmissions and probes are paid for too, so what the connection sends stays within
//! `pace` (default 0.98) x `bandwidth`, bulk taking what the rest leaves. A bulk chunk is a whole number of
//! full packets at the path's current MTU, so a chunk leaves as full packets and not as full
//! ones plus a short tail: a 2 ms chunk on a 20 Mbit/s link is about three and a half packets,
//! and its tail packet paid a whole packet's headers for a few hundred bytes. The bucket
//! holds a few milliseconds of the link, so a writer woken late by the timer catches up;
//! urgent traffic can put it in debt by at most [`MAX_DEBT`] of the link, so a bulk frame
//! half-sent is never held long enough for the peer to cut the link as stalled. PRIORITY goes
//! before ROUTINE: a ROUTINE writer waits while a PRIORITY writer has something to send
//! ([`Pacer::priority_busy`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::core::Precedence;

use tokio::time::Instant;

/// Default share of `bandwidth` that known-rate links are paced to.
pub const DEFAULT_PACE: f64 = 0.98;
/// UDP payload of a packet until path MTU discovery has measured the path (QUIC's minimum).
pub const INITIAL_MTU: u16 = 1_200;
/// QUIC bytes of a packet besides its stream data, at most: short header (1), the 8-byte
/// connection id relays use, packet number (up to 4), AEAD tag (16), STREAM frame header
/// (type, stream id, offset up to 8 bytes, length: up to 13). A chunk sized with it fits
/// its packets whatever the packet number and offset lengths are at the time.
const QUIC_OVERHEAD_MAX: usize = 42;
/// Room left in each chunk for an acknowledgement QUIC puts in the same packets. A chunk of
/// several packets has more beside it: QUIC's real overhead is about 10 bytes under
/// [`QUIC_OVERHEAD_MAX`] a packet.
const ACK_ROOM: usize = 16;
/// The same for a chunk of a single packet (a slow link), which has nothing beside it.
const ACK_ROOM_ONE_PACKET: usize = 32;
/// What a full packet costs the link besides its stream data, as usually sent: IP (20), UDP
/// (8), QUIC (short header, 8-byte connection id, 2-byte packet number, tag, STREAM frame
/// header with a 4-byte offset: 35). An estimate: [`Pacer::reconcile`] corrects it.
pub const PACKET_COST: usize = 63;
/// Bytes of a datagram besides its UDP payload: IPv4 (20) or IPv6 (40) and UDP (8).
/// `bandwidth` is the rate of IP packets across the link, as a modem's rate is given; a link
/// that frames them in Ethernet (a `tbf` on a veth pair) meters 14 bytes more a packet, about
/// 1% of a full one, which `pace` leaves room for.
pub const DATAGRAM_COST_V4: u64 = 28;
pub const DATAGRAM_COST_V6: u64 = 48;
/// How often at most the bucket is set right by what QUIC sent ([`Pacer::reconcile`]).
pub const RECONCILE_EVERY: Duration = Duration::from_millis(50);
/// Chunks carry about this much of the link's time.
const CHUNK_TIME: Duration = Duration::from_millis(2);
const MAX_CHUNK: usize = 16 * 1024;
/// The bucket holds at most this much of the link (and at least a chunk).
const BURST: Duration = Duration::from_millis(3);
/// Urgent sends put the bucket this far in debt at most.
pub const MAX_DEBT: Duration = Duration::from_secs(2);

/// A token bucket shared by one link's writers.
#[derive(Debug)]
pub struct Pacer {
    /// Bytes per second.
    rate: f64,
    /// The path's current MTU (UDP payload of a full packet).
    mtu: AtomicUsize,
    bucket: Mutex<Bucket>,
    /// PRIORITY writers with something to send.
    priority: AtomicUsize,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may go now; negative when sends are booked ahead.
    tokens: f64,
    at: Instant,
    /// Link bytes booked so far, in all.
    booked: f64,
    /// Where the last [`Pacer::reconcile`] left off.
    mark: Option<Mark>,
    /// Link bytes booked that QUIC had not sent at the last reconcile (see there).
    credit: f64,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    booked: f64,
    sent: u64,
}

impl Pacer {
    /// A pacer at `fraction` of `bandwidth_bps`, or `None` when that is not a rate.
    pub fn new(bandwidth_bps: u64, fraction: f64, now: Instant) -> Option<Pacer> {
        let rate = bandwidth_bps as f64 * fraction / 8.0;
        if !rate.is_finite() || rate < 1.0 {
            return None;
        }
        let pacer = Pacer {
            rate,
            mtu: AtomicUsize::new(usize::from(INITIAL_MTU)),
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                at: now,
                booked: 0.0,
                mark: None,
                credit: 0.0,
            }),
            priority: AtomicUsize::new(0),
        };
        pacer.bucket.lock().unwrap_or_else(|e| e.into_inner()).tokens = pacer.chunk() as f64;
        Some(pacer)
    }

    /// Tells the pacer the path's current MTU (QUIC's `current_mtu`: path MTU discovery
    /// raises it from 1,200 bytes once the path carries more).
    pub fn set_mtu(&self, mtu: u16) {
        self.mtu.store(usize::from(mtu.max(INITIAL_MTU)), Ordering::Relaxed);
    }

    /// Stream bytes a full packet carries at least.
    fn packet_payload(&self) -> usize {
        self.mtu.load(Ordering::Relaxed) - QUIC_OVERHEAD_MAX
    }

    /// How many stream bytes a writer should hand QUIC at once: the whole packets closest to
    /// 2 ms of the link (at least one, at most 16 KiB), less room for an acknowledgement.
    pub fn chunk(&self) -> usize {
        let packet = self.packet_payload();
        let packets = (self.rate * CHUNK_TIME.as_secs_f64() / packet as f64).round();
        let packets = (packets as usize).min(MAX_CHUNK / packet).max(1);
        let room = if packets == 1 { ACK_ROOM_ONE_PACKET } else { ACK_ROOM };
        packets * packet - room
    }

    /// Bytes the bucket holds at most: 3 ms of the link, and at least a chunk.
    fn burst(&self) -> f64 {
        (self.rate * BURST.as_secs_f64()).max(self.chunk() as f64)
    }

    /// Bytes of the link the bucket may owe at most ([`MAX_DEBT`]), and the most a credit
    /// holds.
    fn debt_limit(&self) -> f64 {
        self.rate * MAX_DEBT.as_secs_f64()
    }

    /// What `bytes` of stream data cost on the link, headers included.
    fn cost(&self, bytes: usize) -> f64 {
        (bytes + bytes.div_ceil(self.packet_payload()) * PACKET_COST) as f64
    }

    /// The bucket, with what it gained since it was last looked at.
    fn refilled(&self, now: Instant) -> std::sync::MutexGuard<'_, Bucket> {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        self.refill(&mut b, now);
        b
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst());
        b.at = b.at.max(now);
    }

    /// Books `bytes` to go and returns how long the sender must wait first. Urgent sends never
    /// wait: they only push later bulk back.
    pub fn book(&self, bytes: usize, urgent: bool, now: Instant) -> Duration {
        let mut b = self.refilled(now);
        let before = b.tokens;
        let cost = self.cost(bytes);
        b.booked += cost;
        b.tokens = (b.tokens - cost).max(-self.debt_limit());
        if urgent || before >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-before / self.rate)
        }
    }

    /// Whether [`Pacer::reconcile`] would do anything now (so that a writer reads QUIC's
    /// statistics only then).
    pub fn reconcile_due(&self, now: Instant) -> bool {
        let b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        b.mark.is_none_or(|m| now.saturating_duration_since(m.at) >= RECONCILE_EVERY)
    }

    /// Sets the bucket right by what the connection actually put on the link, at most every
    /// [`RECONCILE_EVERY`]: `sent` is the link bytes of every datagram it sent so far (see
    /// [`link_bytes_sent`]). What went beyond what was booked since the last call
    /// (acknowledgements, retransmissions, path MTU probes, the header estimate's error) is
    /// paid from the bucket, as of its last refill, so what went while it stood full (bulk
    /// idle) costs nothing. What was booked and has not gone yet (QUIC holds it: its window, or
    /// the peer's flow control) is kept as a credit against later sends, never given back to
    /// the bucket, so bytes are paid once; the credit is capped at [`MAX_DEBT`] of the link, so
    /// an estimate that runs high does not hide a lossy stretch for long.
    pub fn reconcile(&self, sent: u64, now: Instant) {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let booked = b.booked;
        match b.mark {
            Some(m) if now.saturating_duration_since(m.at) < RECONCILE_EVERY => return,
            Some(m) => {
                // A statistics snapshot older than the mark counts as the mark.
                let sent = sent.max(m.sent);
                let beyond = (sent - m.sent) as f64 - (booked - m.booked) - b.credit;
                let limit = self.debt_limit();
                if beyond > 0.0 {
                    b.tokens = (b.tokens - beyond).max(-limit);
                    b.credit = 0.0;
                } else {
                    b.credit = (-beyond).min(limit);
                }
                b.mark = Some(Mark { at: now, booked, sent });
            }
            None => b.mark = Some(Mark { at: now, booked, sent }),
        }
        self.refill(&mut b, now);
    }

    /// Waits until `bytes` of bulk of precedence `p` may go (and books them): ROUTINE first
    /// waits for PRIORITY writers to have nothing left to send.
    pub async fn bulk(&self, bytes: usize, p: Precedence) {
        while p == Precedence::Routine && self.priority.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(CHUNK_TIME).await;
        }
        let wait = self.book(bytes, false, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Marks a PRIORITY writer busy until the guard is dropped.
    pub fn priority_busy(&self) -> PriorityBusy<'_> {
        self.priority.fetch_add(1, Ordering::AcqRel);
        PriorityBusy(self)
    }

    /// Counts `bytes` that go now whatever the bucket holds.
    pub fn urgent(&self, bytes: usize) {
        self.book(bytes, true, Instant::now());
    }
}

/// The link bytes of every datagram a connection to `peer` sent so far, from QUIC's
/// statistics: UDP payloads plus their IP and UDP headers ([`DATAGRAM_COST_V4`] or
/// [`DATAGRAM_COST_V6`] each; QUIC counts the segments of a GSO batch one by one).
pub fn link_bytes_sent(udp_tx: &quinn::UdpStats, peer: std::net::SocketAddr) -> u64 {
    let v6 = peer.ip().to_canonical().is_ipv6();
    udp_tx.bytes + udp_tx.datagrams * if v6 { DATAGRAM_COST_V6 } else { DATAGRAM_COST_V4 }
}

/// See [`Pacer::priority_busy`].
#[derive(Debug)]
pub struct PriorityBusy<'a>(&'a Pacer);

impl Drop for PriorityBusy<'_> {
    fn drop(&mut self) {
        self.0.priority.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(bps: u64) -> (Pacer, Instant) {
        let now = Instant::now();
        (Pacer::new(bps, 1.0, now).expect("a rate"), now)
    }

    #[test]
    fn bulk_goes_at_the_rate() {
        // 8 Mbit/s: 1,000,000 bytes a second; 2 ms is 2,000 bytes, two packets of 1,158 stream
        // bytes at the initial MTU.
        let (p, t0) = pacer(8_000_000);
        assert_eq!(p.chunk(), 2 * 1_158 - ACK_ROOM);
        let mut now = t0;
        let mut sent = 0.0;
        // Send chunks back to back for a simulated second.
        while now < t0 + Duration::from_secs(1) {
            now += p.book(p.chunk(), false, now);
            sent += p.cost(p.chunk());
        }
        // One second's worth, plus the first chunk's burst and the send booked last (which
        // would have waited past the second).
        let slack = 3.0 * p.cost(p.chunk());
        assert!((1e6..=1e6 + slack).contains(&sent), "{sent} bytes");
    }

    #[test]
    fn chunks_are_whole_packets_at_the_paths_mtu() {
        let now = Instant::now();
        let p = Pacer::new(20_000_000, 1.0, now).expect("a rate");
        // 2 ms of 20 Mbit/s is 5,000 bytes: four packets of 1,158 stream bytes at QUIC's
        // initial MTU, less room for an acknowledgement; the headers of four packets.
        assert_eq!(p.chunk(), 4 * 1_158 - ACK_ROOM);
        assert_eq!(p.cost(p.chunk()), (p.chunk() + 4 * PACKET_COST) as f64);
        // Once path MTU discovery reaches 1,452 bytes (Ethernet), the same in larger packets.
        p.set_mtu(1_452);
        assert_eq!(p.chunk(), 4 * 1_410 - ACK_ROOM);
        assert_eq!(p.cost(p.chunk()), (p.chunk() + 4 * PACKET_COST) as f64);
        let five = p.chunk() + ACK_ROOM + 1;
        assert_eq!(p.cost(five), (five + 5 * PACKET_COST) as f64);
        // A slow link still gets a packet a chunk, a fast one at most 16 KiB.
        let slow = Pacer::new(1_000_000, 1.0, now).expect("a rate");
        slow.set_mtu(1_452);
        assert_eq!(slow.chunk(), 1_410 - ACK_ROOM_ONE_PACKET);
        let fast = Pacer::new(1_000_000_000, 1.0, now).expect("a rate");
        fast.set_mtu(1_452);
        assert_eq!(fast.chunk(), 11 * 1_410 - ACK_ROOM);
        // An MTU below QUIC's minimum is not one: it is read as the minimum.
        fast.set_mtu(576);
        assert_eq!(fast.chunk(), 14 * 1_158 - ACK_ROOM);
    }

    #[test]
    fn urgent_never_waits_and_pushes_bulk_back() {
        let (p, t0) = pacer(8_000_000);
        // Nearly empty the bucket (it starts with a chunk: 2,300 bytes) with bulk: 1,800 bytes
        // cost 1,926 of them.
        assert_eq!(p.book(1_800, false, t0), Duration::ZERO);
        let wait = p.book(1_000, false, t0);
        assert!(wait.is_zero(), "the bucket held some tokens: {wait:?}");
        // Now it is in debt: bulk waits, urgent does not.
        assert!(!p.book(100, false, t0).is_zero());
        assert_eq!(p.book(10_000, true, t0), Duration::ZERO);
        // The urgent bytes are paid for by later bulk: about 10 ms more at 1 MB/s.
        let after = p.book(100, false, t0);
        assert!(after >= Duration::from_millis(11), "{after:?}");
    }

    #[test]
    fn idle_time_buys_a_few_milliseconds_of_the_link() {
        // 1,000,000 bytes a second: 3,000 bytes of burst.
        let (p, t0) = pacer(8_000_000);
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(p.book(1_000, false, later).is_zero());
        }
        // 3,189 bytes booked of 3,000 (each 1,000 bytes in a packet of their own): the
        // fourth waits.
        assert!(!p.book(1_000, false, later).is_zero());
    }

    #[test]
    fn a_fast_link_is_not_held_to_a_chunk_a_timer_tick() {
        // 1 Gbit/s: 125 MB/s, 16 KiB chunks; the writer's timer fires 1.1 ms late each time.
        let (p, t0) = pacer(1_000_000_000);
        let mut now = t0;
        let mut sent = 0usize;
        while now < t0 + Duration::from_millis(100) {
            let wait = p.book(p.chunk(), false, now);
            sent += p.chunk();
            if !wait.is_zero() {
                now += wait.max(Duration::from_micros(1_100));
            }
        }
        // Stream bytes: the rest of the bucket went on headers.
        let expected = 125_000_000.0 * 0.1 * p.chunk() as f64 / p.cost(p.chunk());
        assert!(sent as f64 > 0.97 * expected, "{sent} bytes in 100 ms");
    }

    #[test]
    fn what_went_beyond_the_booking_is_paid_once_and_what_is_still_to_go_is_not_paid_twice() {
        // Two pacers booked alike, one of them reconciled; both deep in debt, so that the
        // burst does not clip the difference.
        let (p, t0) = pacer(8_000_000);
        let twin = Pacer::new(8_000_000, 1.0, t0).expect("a rate");
        let tokens = |p: &Pacer, now| p.refilled(now).tokens;
        let book = |bytes: usize, now| {
            p.book(bytes, true, now);
            twin.book(bytes, true, now);
        };
        book(1_000_000, t0);
        // The first call only marks where the link stands.
        p.reconcile(7_000, t0);
        assert_eq!(tokens(&p, t0), tokens(&twin, t0));
        // 1,000 bytes booked; the link carried 1,500 (acknowledgements, a retransmission).
        assert_eq!(p.cost(1_000 - PACKET_COST), 1_000.0);
        book(1_000 - PACKET_COST, t0);
        // Too soon: nothing changes.
        let t = t0 + RECONCILE_EVERY / 2;
        assert!(!p.reconcile_due(t));
        p.reconcile(8_500, t);
        assert_eq!(tokens(&p, t), tokens(&twin, t));
        // The 500 bytes the bucket had not counted are paid.
        let t = t0 + RECONCILE_EVERY;
        assert!(p.reconcile_due(t));
        p.reconcile(8_500, t);
        assert_eq!(tokens(&p, t), tokens(&twin, t) - 500.0);
        // 2,000 bytes booked of which QUIC has sent 1,200 so far: nothing given back...
        book(2_000 - 2 * PACKET_COST, t);
        let t = t + RECONCILE_EVERY;
        p.reconcile(9_700, t);
        assert_eq!(tokens(&p, t), tokens(&twin, t) - 500.0);
        // ... and when the other 800 go, with 100 more than was booked, only the 100 are paid.
        let t = t + RECONCILE_EVERY;
        p.reconcile(10_600, t);
        assert_eq!(tokens(&p, t), tokens(&twin, t) - 600.0);
        // A statistics snapshot older than the last one is read as the last one.
        let t = t + RECONCILE_EVERY;
        p.reconcile(9_000, t);
        assert_eq!(tokens(&p, t), tokens(&twin, t) - 600.0);
    }

    #[test]
    fn a_credit_for_bytes_still_to_go_is_capped() {
        // 8 Mbit/s: the credit holds at most 2 s of the link, 2,000,000 bytes.
        let (p, t0) = pacer(8_000_000);
        let credit = |p: &Pacer| p.bucket.lock().unwrap().credit;
        p.reconcile(0, t0);
        // 1.5 MB booked that QUIC holds (the peer's flow control): a credit of all of it.
        p.book(1_500_000 - 2 * PACKET_COST, true, t0);
        let t = t0 + RECONCILE_EVERY;
        p.reconcile(0, t);
        assert_eq!(credit(&p), p.cost(1_500_000 - 2 * PACKET_COST));
        // 1.5 MB more: the credit stops at 2 MB.
        p.book(1_500_000, true, t);
        let t = t + RECONCILE_EVERY;
        p.reconcile(0, t);
        assert_eq!(credit(&p), 2_000_000.0);
        // Sent at last: the credit is spent, and it covered 2 MB of the 3 MB.
        let t = t + RECONCILE_EVERY;
        let sent = (p.cost(1_500_000 - 2 * PACKET_COST) + p.cost(1_500_000)) as u64;
        p.reconcile(sent, t);
        assert_eq!(credit(&p), 0.0);
    }

    #[test]
    fn what_the_link_carried_while_bulk_was_idle_is_not_charged() {
        let (p, t0) = pacer(8_000_000);
        p.reconcile(0, t0);
        // An hour of probes, acknowledgements and FLASH orders, none of it booked; then bulk.
        let later = t0 + Duration::from_secs(3_600);
        p.reconcile(5_000_000, later);
        assert_eq!(p.book(p.chunk(), false, later), Duration::ZERO);
        // A short gap is absorbed as far as the bucket refilled meanwhile: 100 ms at 1 MB/s.
        let t = later + Duration::from_millis(100);
        p.reconcile(5_090_000 + p.cost(p.chunk()) as u64, t);
        assert_eq!(p.book(p.chunk(), false, t), Duration::ZERO);
    }

    #[test]
    fn a_lossy_link_is_paced_by_the_bytes_it_carried() {
        // Bulk sent back to back for a simulated second; each chunk costs the link 10% more
        // than booked (retransmissions): the bulk goes about 10% slower, not the link 10%
        // over its rate.
        let (p, t0) = pacer(8_000_000);
        let (mut now, mut sent, mut bulk) = (t0, 0u64, 0.0);
        while now < t0 + Duration::from_secs(1) {
            p.reconcile(sent, now);
            now += p.book(p.chunk(), false, now);
            sent += (p.cost(p.chunk()) * 1.1) as u64;
            bulk += p.cost(p.chunk());
        }
        assert!((1e6..1.02e6).contains(&(sent as f64)), "{sent} bytes on the link in 1 s");
        assert!((0.89e6..0.92e6).contains(&bulk), "{bulk} bytes of bulk in 1 s");
    }

    #[test]
    fn urgent_debt_holds_bulk_back_two_seconds_at_most() {
        let (p, t0) = pacer(8_000_000);
        p.book(100_000_000, true, t0);
        let wait = p.book(1_000, false, t0);
        assert!(wait <= MAX_DEBT + Duration::from_millis(5), "{wait:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn routine_waits_while_priority_has_something_to_send() {
        let p = std::sync::Arc::new(Pacer::new(8_000_000, 1.0, Instant::now()).expect("a rate"));
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let busy = p.priority_busy();
        let routine = {
            let (p, order) = (p.clone(), order.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    p.bulk(1_400, Precedence::Routine).await;
                    order.lock().unwrap().push("routine");
                }
            })
        };
        for _ in 0..5 {
            p.bulk(1_400, Precedence::Priority).await;
            order.lock().unwrap().push("priority");
        }
        drop(busy);
        routine.await.expect("the routine writer");
        let order = order.lock().unwrap().clone();
        assert_eq!(order, [["priority"; 5].as_slice(), &["routine"; 3]].concat(), "{order:?}");
    }

    #[test]
    fn no_rate_no_pacer() {
        let now = Instant::now();
        assert!(Pacer::new(0, 0.95, now).is_none());
        assert!(Pacer::new(1_000_000, 0.0, now).is_none());
        assert!(Pacer::new(1_000_000, f64::NAN, now).is_none());
    }
}
