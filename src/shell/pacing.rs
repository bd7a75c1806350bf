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
//! The bucket counts stream bytes plus an estimate of the packet headers QUIC, UDP and IP add
//! ([`HEADER_BYTES`] per [`PACKET_BYTES`]); `pace` (default 0.95) leaves room for what the
//! estimate misses (acknowledgements, retransmissions, link-layer framing). It holds a few
//! milliseconds of the link, so a writer woken late by the timer catches up; urgent traffic can
//! put it in debt by at most [`MAX_DEBT`] of the link, so a bulk frame half-sent is never held
//! long enough for the peer to cut the link as stalled. PRIORITY goes before ROUTINE: a ROUTINE
//! writer waits while a PRIORITY writer has something to send ([`Pacer::priority_busy`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::core::Precedence;

use tokio::time::Instant;

/// Default share of `bandwidth` that known-rate links are paced to.
pub const DEFAULT_PACE: f64 = 0.95;
/// Stream bytes in a full packet, for the header estimate.
pub const PACKET_BYTES: usize = 1_400;
/// IP (20), UDP (8) and QUIC (short header, packet number, AEAD tag, stream frame) bytes per
/// packet, about.
pub const HEADER_BYTES: usize = 60;
/// Chunks carry about this much of the link's time.
const CHUNK_TIME: Duration = Duration::from_millis(2);
const MIN_CHUNK: usize = PACKET_BYTES;
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
    chunk: usize,
    /// Bytes the bucket holds at most.
    burst: f64,
    bucket: Mutex<Bucket>,
    /// PRIORITY writers with something to send.
    priority: AtomicUsize,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may go now; negative when sends are booked ahead.
    tokens: f64,
    at: Instant,
}

impl Pacer {
    /// A pacer at `fraction` of `bandwidth_bps`, or `None` when that is not a rate.
    pub fn new(bandwidth_bps: u64, fraction: f64, now: Instant) -> Option<Pacer> {
        let rate = bandwidth_bps as f64 * fraction / 8.0;
        if !rate.is_finite() || rate < 1.0 {
            return None;
        }
        let chunk = ((rate * CHUNK_TIME.as_secs_f64()) as usize).clamp(MIN_CHUNK, MAX_CHUNK);
        let burst = (rate * BURST.as_secs_f64()).max(chunk as f64);
        Some(Pacer {
            rate,
            chunk,
            burst,
            bucket: Mutex::new(Bucket { tokens: chunk as f64, at: now }),
            priority: AtomicUsize::new(0),
        })
    }

    /// About how many stream bytes a writer should hand QUIC at once.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// What `bytes` of stream data cost on the link, headers included.
    fn cost(bytes: usize) -> f64 {
        (bytes + bytes.div_ceil(PACKET_BYTES) * HEADER_BYTES) as f64
    }

    /// Books `bytes` to go and returns how long the sender must wait first. Urgent sends never
    /// wait: they only push later bulk back.
    pub fn book(&self, bytes: usize, urgent: bool, now: Instant) -> Duration {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        let before = b.tokens;
        b.tokens = (b.tokens - Self::cost(bytes)).max(-self.rate * MAX_DEBT.as_secs_f64());
        if urgent || before >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-before / self.rate)
        }
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
        // 8 Mbit/s: 1,000,000 bytes a second; chunks of 2 ms = 2,000 bytes.
        let (p, t0) = pacer(8_000_000);
        assert_eq!(p.chunk(), 2_000);
        let mut now = t0;
        let mut sent = 0usize;
        // Send 1,400-byte chunks back to back for a simulated second.
        while now < t0 + Duration::from_secs(1) {
            now += p.book(1_400, false, now);
            sent += 1_400 + HEADER_BYTES;
        }
        // One second's worth, plus the first chunk's burst and the send booked last (which
        // would have waited past the second).
        assert!((1_000_000..=1_000_000 + 2_000 + 2 * 1_460).contains(&sent), "{sent} bytes");
    }

    #[test]
    fn urgent_never_waits_and_pushes_bulk_back() {
        let (p, t0) = pacer(8_000_000);
        // Nearly empty the bucket with bulk (1,800 bytes cost 1,920 of its 2,000).
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
        // 1,000,000 bytes a second: 2,000-byte chunks, 3,000 bytes of burst.
        let (p, t0) = pacer(8_000_000);
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(p.book(1_000, false, later).is_zero());
        }
        // 3,180 bytes booked of 3,000: the fourth waits.
        assert!(!p.book(1_000, false, later).is_zero());
    }

    #[test]
    fn a_fast_link_is_not_held_to_a_chunk_a_timer_tick() {
        // 1 Gbit/s: 125 MB/s, 16 KiB chunks; the writer's timer fires 1.1 ms late each time.
        let (p, t0) = pacer(1_000_000_000);
        let mut now = t0;
        let mut sent = 0usize;
        while now < t0 + Duration::from_millis(100) {
            let wait = p.book(16_384, false, now);
            sent += 16_384;
            if !wait.is_zero() {
                now += wait.max(Duration::from_micros(1_100));
            }
        }
        // Stream bytes: the rest of the bucket went on headers.
        let expected = 125_000_000.0 * 0.1 * 1_400.0 / 1_460.0;
        assert!(sent as f64 > 0.97 * expected, "{sent} bytes in 100 ms");
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
