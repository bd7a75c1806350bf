//! One link (one QUIC connection to a neighbour over one medium), as the core sees it: its
//! health from probes, its custody offers in flight, and what it may carry next.
//!
//! Window rule: an offer of precedence `p` may go out while the unacknowledged bytes of
//! precedence `p` *and higher* stay under the medium's window. Lower classes never take window
//! from higher ones, and a class blocked by the window blocks every class below it, so the
//! scheduler can never send a lower class while a higher one waits.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use super::config::MediumConfig;
use super::types::{Medium, MessageId, NodeId, Precedence, Role, Time};

/// Identifies one connection; assigned by the shell, never reused within a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link-{}", self.0)
    }
}

/// What the shell knows about a link once its handshake and `Hello` exchange succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub peer: NodeId,
    pub role: Role,
    pub medium: Medium,
}

/// A custody offer awaiting the neighbour's answer.
#[derive(Clone, Debug)]
pub(crate) struct Offer {
    pub id: MessageId,
    pub seq: u64,
    pub precedence: Precedence,
    pub dests: Vec<NodeId>,
    pub weight: u64,
    pub sent_at: Time,
    /// Local expiry deadline of the held message (its `Expiry` key).
    pub deadline: Time,
    /// Weight of the held message (all its destinations), for the store's accounting.
    pub held_weight: u64,
    /// The held message is owed to more than one destination.
    pub multi: bool,
    /// This node originated the message (its status follows custody).
    pub local_origin: bool,
}

/// Counters of one link, for status and metrics.
#[derive(Clone, Debug, Default)]
pub struct LinkCounters {
    pub offered: u64,
    pub accepted: u64,
    pub refused: u64,
    pub bytes_offered: u64,
    pub probes_sent: u64,
    pub probes_answered: u64,
    pub went_down: u64,
}

#[derive(Debug)]
pub(crate) struct Link {
    pub id: LinkId,
    pub info: LinkInfo,
    pub cfg: MediumConfig,
    /// Usable: probes are being answered.
    pub up: bool,
    pub since: Time,
    pub srtt: Option<Duration>,
    /// Smoothed probe loss ratio.
    pub loss: f64,
    probe_seq: u64,
    outstanding: VecDeque<(u64, Time)>,
    misses: u32,
    next_probe: Time,
    /// Offers awaiting an answer, by offer number.
    pub inflight: HashMap<u64, Offer>,
    inflight_bytes: [u64; 4],
    next_offer: u64,
    pub backoff_until: Option<Time>,
    busy_backoff: Duration,
    tokens: f64,
    tokens_at: Time,
    pub counters: LinkCounters,
}

/// What a probe tick asks of the node.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ProbeTick {
    pub send: Option<u64>,
    pub went_down: bool,
}

const PROBE_HISTORY: usize = 8;
const MAX_BUSY_BACKOFF: Duration = Duration::from_secs(30);

impl Link {
    pub fn new(id: LinkId, info: LinkInfo, cfg: MediumConfig, now: Time) -> Link {
        let burst = cfg.rate_bytes_per_s.map_or(0.0, burst_bytes);
        Link {
            id,
            info,
            cfg,
            up: true,
            since: now,
            srtt: None,
            loss: 0.0,
            probe_seq: 0,
            outstanding: VecDeque::new(),
            misses: 0,
            next_probe: now,
            inflight: HashMap::new(),
            inflight_bytes: [0; 4],
            next_offer: 0,
            backoff_until: None,
            busy_backoff: Duration::from_millis(500),
            tokens: burst,
            tokens_at: now,
            counters: LinkCounters::default(),
        }
    }

    /// Estimated one-way delay: half the smoothed probe RTT, or a medium default before the
    /// first sample.
    pub fn one_way_delay(&self) -> Duration {
        self.srtt.map_or_else(
            || match self.info.medium {
                Medium::Satellite => Duration::from_millis(300),
                Medium::Wireless => Duration::from_millis(20),
                Medium::Public => Duration::from_millis(30),
            },
            |rtt| rtt / 2,
        )
    }

    /// Whether the link takes offers now (up, not backing off).
    pub fn accepting(&self, now: Time) -> bool {
        self.up && self.backoff_until.is_none_or(|t| now >= t)
    }

    /// Whether an offer of `p` and `weight` bytes fits the window and the rate limit.
    pub fn has_room(&mut self, p: Precedence, weight: u64, now: Time) -> bool {
        let in_flight: u64 = self.inflight_bytes[p.index()..].iter().sum();
        if in_flight > 0 && in_flight + weight > self.cfg.window_bytes {
            return false;
        }
        match self.cfg.rate_bytes_per_s {
            None => true,
            Some(rate) => {
                self.refill(rate, now);
                self.tokens > 0.0
            }
        }
    }

    fn refill(&mut self, rate: u64, now: Time) {
        let dt = now.saturating_since(self.tokens_at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate as f64).min(burst_bytes(rate));
        self.tokens_at = now;
    }

    /// Lets time pass: ends an elapsed backoff and refills the rate limiter.
    pub fn tick(&mut self, now: Time) {
        if self.backoff_until.is_some_and(|t| now >= t) {
            self.backoff_until = None;
        }
        if let Some(rate) = self.cfg.rate_bytes_per_s {
            self.refill(rate, now);
        }
    }

    /// When the rate limiter will have room again, if it is what holds offers back.
    pub fn rate_ready_at(&self) -> Option<Time> {
        let rate = self.cfg.rate_bytes_per_s?;
        if self.tokens > 0.0 {
            return None;
        }
        let wait = (-self.tokens + 1.0) / rate as f64;
        Some(self.tokens_at + Duration::from_secs_f64(wait))
    }

    /// Records an offer and returns its number, which the neighbour's answer echoes.
    pub fn record_offer(&mut self, offer: Offer) -> u64 {
        self.next_offer += 1;
        self.inflight_bytes[offer.precedence.index()] += offer.weight;
        self.tokens -= offer.weight as f64;
        self.counters.offered += 1;
        self.counters.bytes_offered += offer.weight;
        self.inflight.insert(self.next_offer, offer);
        self.next_offer
    }

    /// The offer a neighbour's answer is about, if it is still in flight here.
    pub fn complete(&mut self, number: u64) -> Option<Offer> {
        let offer = self.inflight.remove(&number)?;
        let slot = &mut self.inflight_bytes[offer.precedence.index()];
        *slot = slot.saturating_sub(offer.weight);
        Some(offer)
    }

    /// Every offer in flight, oldest message first: owed again (the link went down).
    pub fn take_inflight(&mut self) -> Vec<Offer> {
        self.inflight_bytes = [0; 4];
        let mut all: Vec<Offer> = self.inflight.drain().map(|(_, o)| o).collect();
        all.sort_by_key(|o| o.seq);
        all
    }

    /// Offers unanswered for longer than the ack timeout, oldest message first.
    pub fn timed_out(&mut self, now: Time) -> Vec<Offer> {
        let limit = self.ack_timeout();
        let late: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, o)| now.saturating_since(o.sent_at) >= limit)
            .map(|(n, _)| *n)
            .collect();
        let mut out: Vec<Offer> = late.into_iter().filter_map(|n| self.complete(n)).collect();
        out.sort_by_key(|o| o.seq);
        out
    }

    fn ack_timeout(&self) -> Duration {
        let rtt_based = self.srtt.map_or(Duration::ZERO, |r| r * 8);
        self.cfg.ack_timeout.max(rtt_based)
    }

    /// The neighbour refused an offer for now: pause offers with a growing backoff.
    pub fn busy(&mut self, now: Time) {
        self.backoff_until = Some(now + self.busy_backoff);
        self.busy_backoff = (self.busy_backoff * 2).min(MAX_BUSY_BACKOFF);
    }

    /// The neighbour accepted an offer: reset the busy backoff.
    pub fn accepted(&mut self) {
        self.counters.accepted += 1;
        self.busy_backoff = Duration::from_millis(500);
        self.backoff_until = None;
    }

    /// Probe timer: count a miss for an unanswered probe and send the next one.
    pub fn probe_tick(&mut self, now: Time) -> ProbeTick {
        let mut tick = ProbeTick::default();
        if now < self.next_probe {
            return tick;
        }
        if self.outstanding.back().is_some_and(|(_, sent)| *sent < now) {
            // The newest probe went a whole interval unanswered.
            self.misses += 1;
            self.loss = self.loss * 0.9 + 0.1;
            if self.up && self.misses >= self.cfg.probe_misses {
                self.up = false;
                self.since = now;
                self.counters.went_down += 1;
                tick.went_down = true;
            }
        }
        self.probe_seq += 1;
        self.outstanding.push_back((self.probe_seq, now));
        if self.outstanding.len() > PROBE_HISTORY {
            self.outstanding.pop_front();
        }
        self.counters.probes_sent += 1;
        self.next_probe = now + self.cfg.probe_interval;
        tick.send = Some(self.probe_seq);
        tick
    }

    /// A probe answer; returns whether the link came back up.
    pub fn probe_ack(&mut self, seq: u64, now: Time) -> bool {
        let Some(i) = self.outstanding.iter().position(|(s, _)| *s == seq) else {
            return false;
        };
        let (_, sent) = self.outstanding[i];
        // Older probes answered later are still RTT samples but no longer count as misses.
        self.outstanding.drain(..=i);
        let sample = now.saturating_since(sent);
        self.srtt = Some(match self.srtt {
            None => sample,
            Some(s) => (s * 7 + sample) / 8,
        });
        self.counters.probes_answered += 1;
        self.loss *= 0.9;
        self.misses = 0;
        if !self.up {
            self.up = true;
            self.since = now;
            return true;
        }
        false
    }

    /// The earliest time this link needs the node's attention.
    pub fn next_timeout(&self) -> Time {
        let mut t = self.next_probe;
        if let Some(b) = self.backoff_until {
            t = t.min(b);
        }
        if let Some(oldest) = self.inflight.values().map(|o| o.sent_at).min() {
            t = t.min(oldest + self.ack_timeout());
        }
        if let Some(r) = self.rate_ready_at() {
            t = t.min(r);
        }
        t
    }
}

fn burst_bytes(rate: u64) -> f64 {
    (rate as f64 / 4.0).max(16.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(window: u64, rate: Option<u64>) -> Link {
        let mut cfg = MediumConfig::default_for(Medium::Wireless);
        cfg.window_bytes = window;
        cfg.rate_bytes_per_s = rate;
        let info = LinkInfo {
            peer: NodeId::new("b").unwrap(),
            role: Role::Relay,
            medium: Medium::Wireless,
        };
        Link::new(LinkId(1), info, cfg, Time(0))
    }

    fn offer(l: &mut Link, id: u8, p: Precedence, weight: u64) -> u64 {
        let o = Offer {
            id: MessageId([id; 16]),
            seq: u64::from(id),
            precedence: p,
            dests: vec![],
            weight,
            sent_at: Time(0),
            deadline: Time(0),
            held_weight: weight,
            multi: false,
            local_origin: false,
        };
        l.record_offer(o)
    }

    #[test]
    fn lower_classes_never_take_window_from_higher_ones() {
        let mut l = link(1000, None);
        offer(&mut l, 1, Precedence::Routine, 1000);
        assert!(!l.has_room(Precedence::Routine, 10, Time(0)));
        assert!(
            l.has_room(Precedence::Priority, 10, Time(0)),
            "routine bytes never block priority"
        );
        assert!(l.has_room(Precedence::Flash, 500, Time(0)));
        let n = offer(&mut l, 2, Precedence::Flash, 1000);
        assert!(!l.has_room(Precedence::Flash, 10, Time(0)));
        l.complete(n);
        assert!(l.has_room(Precedence::Flash, 10, Time(0)));
    }

    #[test]
    fn an_oversized_message_still_goes_through_an_empty_window() {
        let mut l = link(1000, None);
        assert!(l.has_room(Precedence::Routine, 5000, Time(0)));
    }

    #[test]
    fn rate_limit_spaces_offers() {
        let mut l = link(u64::MAX, Some(100_000));
        let mut now = Time(0);
        let mut sent = 0u64;
        while now < Time(10_000_000) {
            if l.has_room(Precedence::Routine, 1000, now) {
                let n = offer(&mut l, (sent % 200) as u8, Precedence::Routine, 1000);
                l.complete(n);
                sent += 1;
            } else {
                now = l.rate_ready_at().unwrap().max(now + Duration::from_micros(1));
            }
        }
        // 10 s at 100 kB/s, plus the initial burst of 25 kB.
        assert!((1000..=1030).contains(&sent), "sent {sent}");
    }

    #[test]
    fn missed_probes_take_the_link_down_and_an_answer_brings_it_back() {
        let mut l = link(1000, None);
        let interval = l.cfg.probe_interval;
        let mut now = Time(0);
        let first = l.probe_tick(now);
        assert_eq!(first.send, Some(1));
        for i in 0..l.cfg.probe_misses {
            now = now + interval;
            let t = l.probe_tick(now);
            assert_eq!(t.went_down, i + 1 == l.cfg.probe_misses);
        }
        assert!(!l.up);
        let last = l.outstanding.back().unwrap().0;
        assert!(l.probe_ack(last, now + Duration::from_millis(40)));
        assert!(l.up);
        assert_eq!(l.srtt, Some(Duration::from_millis(40)));
    }

    #[test]
    fn busy_backoff_grows_and_resets() {
        let mut l = link(1000, None);
        l.busy(Time(0));
        assert!(!l.accepting(Time(100)));
        assert!(l.accepting(Time(500_000)));
        l.busy(Time(500_000));
        assert_eq!(l.backoff_until, Some(Time(1_500_000)));
        l.accepted();
        assert!(l.accepting(Time(500_001)));
    }
}
