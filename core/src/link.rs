//! One link (one QUIC connection to a neighbour over one medium), as the core sees it: its
//! health from probes, its custody offers in flight, and what it may carry next.
//!
//! Window rule: an offer of precedence `p` may go out while the unacknowledged bytes of
//! precedence `p` *and higher* stay under the medium's window. Lower classes never take window
//! from higher ones, and a class blocked by the window blocks every class below it, so the
//! scheduler can never send a lower class while a higher one waits.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use super::config::MediumConfig;
use super::types::{Medium, MessageId, NodeId, Precedence, Role, Time, wire_duration};

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
    /// This side dialled the link, so this side probes it; the other side learns the link's
    /// health from the probes it answers (half the probe traffic on every link).
    pub prober: bool,
    /// The certificate the peer presented in the TLS handshake (DER).
    pub certificate: bytes::Bytes,
    /// Both ends announced `compact-v1`: custody acceptances go as [`Frame::Accepted`]
    /// (offers as compact offers, which the shell encodes).
    ///
    /// [`Frame::Accepted`]: crate::frame::Frame::Accepted
    pub compact: bool,
    /// Both ends announced [`LEAN_ADVERTS`](crate::wire::LEAN_ADVERTS): an advert goes
    /// without its certificate to a peer known to hold that certificate already.
    pub lean_adverts: bool,
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
    /// The neighbour the held message came from (`None`: submitted here).
    pub from: Option<NodeId>,
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
    /// Link-state adverts sent on the link, and their encoded size (what its control cap
    /// counts).
    pub adverts_sent: u64,
    pub advert_bytes: u64,
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
    outstanding: VecDeque<Probe>,
    misses: u32,
    next_probe: Time,
    /// Last time anything arrived from the peer: a link that carries traffic is alive even
    /// when a probe is stuck behind that traffic.
    last_heard: Time,
    /// Answers in a row since the link went down.
    streak: u32,
    /// The loss estimate before the current run of misses (the run itself must not raise the
    /// bar it is measured against).
    baseline_loss: f64,
    /// When the link went down lately, for flap damping.
    downs: VecDeque<Time>,
    /// Offers awaiting an answer, by offer number: numbers grow with time, so the first
    /// entry is always the oldest offer.
    pub inflight: BTreeMap<u64, Offer>,
    pub(crate) inflight_bytes: [u64; 4],
    next_offer: u64,
    pub backoff_until: Option<Time>,
    busy_backoff: Duration,
    tokens: f64,
    tokens_at: Time,
    /// Frames the peer may still send now (see `CoreConfig::peer_frame_rate`).
    frame_tokens: f64,
    frame_tokens_at: Time,
    pub counters: LinkCounters,
    /// When the peer said which adverts it holds (its `LsdbSummary`), and their sequence
    /// numbers; `None` until it has said: a message whose origin the peer knows a newer
    /// advert of may be signed with a key this node has not learned yet.
    pub(crate) peer_adverts: Option<(Time, rustc_hash::FxHashMap<NodeId, u64>)>,
    /// The certificate of each origin the peer is known to hold, on this connection: it
    /// presented its own in the handshake, and holds any this node sent it or it sent this
    /// node in an advert. With `lean_adverts`, an advert of one of these origins goes without
    /// its certificate (`core::adverts`).
    pub(crate) peer_certs: rustc_hash::FxHashMap<NodeId, bytes::Bytes>,
    /// The peer's area, as its `LsdbSummary` said (`None` until then: taken to be this
    /// node's own).
    pub(crate) peer_area: Option<String>,
    /// When this node last asked the peer for its adverts again because one came without a
    /// certificate this node holds (see `Node::ask_adverts_again`).
    pub(crate) adverts_asked: Option<Time>,
    /// An ask wanted while the last was too recent: made once the interval has passed.
    pub(crate) ask_pending: bool,
    /// Adverts waiting for room under the link's control cap.
    pub(crate) adverts_out: crate::adverts::AdvertQueue,
}

/// What to do with a frame from the peer, by its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameAllowance {
    Take,
    /// Over the rate: answer offers "busy", drop the rest.
    Shed,
    /// Over the rate for a further second: cut the peer off.
    CutOff,
}

/// What a probe tick asks of the node.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ProbeTick {
    pub send: Option<u64>,
    pub went_down: bool,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    seq: u64,
    sent: Time,
    /// Already judged (answered in time, or counted as a miss or as covered by traffic).
    judged: bool,
}

const PROBE_HISTORY: usize = 8;
/// Flaps remembered for damping.
const FLAP_WINDOW: Duration = Duration::from_secs(120);
/// Target false-alarm probability per probe: the miss threshold grows with measured loss.
const FALSE_DOWN: f64 = 1e-4;
const MAX_BUSY_BACKOFF: Duration = Duration::from_secs(30);

impl Link {
    pub fn new(id: LinkId, info: LinkInfo, cfg: MediumConfig, now: Time) -> Link {
        let burst = cfg.rate_bytes_per_s.map_or(0.0, burst_bytes);
        let mut peer_certs = rustc_hash::FxHashMap::default();
        if !info.certificate.is_empty() {
            peer_certs.insert(info.peer.clone(), info.certificate.clone());
        }
        let adverts_out = crate::adverts::AdvertQueue::new(cfg.control_rate(), now);
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
            last_heard: now,
            streak: 0,
            baseline_loss: 0.0,
            downs: VecDeque::new(),
            inflight: BTreeMap::new(),
            inflight_bytes: [0; 4],
            next_offer: 0,
            backoff_until: None,
            busy_backoff: Duration::from_millis(500),
            tokens: burst,
            tokens_at: now,
            frame_tokens: f64::MAX,
            frame_tokens_at: now,
            counters: LinkCounters::default(),
            peer_adverts: None,
            peer_certs,
            peer_area: None,
            adverts_asked: None,
            ask_pending: false,
            adverts_out,
        }
    }

    /// When a put-off ask for adverts may go (`None`: none is put off).
    pub(crate) fn ask_at(&self) -> Option<Time> {
        if !self.ask_pending {
            return None;
        }
        Some(self.adverts_asked.map_or(Time::ZERO, |t| t + crate::adverts::ASK_AGAIN_INTERVAL))
    }

    /// Whether a put-off ask may go now.
    pub(crate) fn ask_due(&self, now: Time) -> bool {
        self.ask_at().is_some_and(|t| now >= t)
    }

    /// Forgets which certificates the peer holds but its own (it asked for adverts again:
    /// whatever it lacks goes with its certificate).
    pub(crate) fn forget_peer_certs(&mut self) {
        let peer = &self.info.peer;
        self.peer_certs.retain(|node, _| node == peer);
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
            // In the wire's unit: the age an offer carries is what its receiver reads.
            |rtt| wire_duration(rtt / 2),
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
        debug_assert!(*slot >= offer.weight, "in-flight bytes below an offer in flight");
        *slot = slot.saturating_sub(offer.weight);
        Some(offer)
    }

    /// Whether the in-flight bytes per precedence are the sum of the offers in flight.
    pub fn check_inflight(&self) -> Result<(), String> {
        let mut bytes = [0u64; 4];
        for o in self.inflight.values() {
            bytes[o.precedence.index()] += o.weight;
        }
        if bytes != self.inflight_bytes {
            return Err(format!(
                "link {}: in-flight bytes {:?}, offers add up to {bytes:?}",
                self.id, self.inflight_bytes
            ));
        }
        Ok(())
    }

    /// Forgets every offer in flight of held message `seq` (it expired here while offered):
    /// its bytes leave the window, and a late answer to it is ignored.
    pub fn withdraw(&mut self, seq: u64) -> Vec<Offer> {
        let numbers: Vec<u64> =
            self.inflight.iter().filter(|(_, o)| o.seq == seq).map(|(n, _)| *n).collect();
        numbers.into_iter().filter_map(|n| self.complete(n)).collect()
    }

    /// Every offer in flight, oldest message first: owed again (the link went down).
    pub fn take_inflight(&mut self) -> Vec<Offer> {
        self.inflight_bytes = [0; 4];
        let mut all: Vec<Offer> = std::mem::take(&mut self.inflight).into_values().collect();
        all.sort_by_key(|o| o.seq);
        all
    }

    /// Offers unanswered for longer than the ack timeout, oldest message first.
    pub fn timed_out(&mut self, now: Time) -> Vec<Offer> {
        let limit = self.ack_timeout();
        let late: Vec<u64> = self
            .inflight
            .iter()
            .take_while(|(_, o)| now.saturating_since(o.sent_at) >= limit)
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
    ///
    /// The backoff grows once per pause, not once per refusal: a window of offers refused
    /// together (their origin's advert had not reached the neighbour yet, after a link came
    /// back) would otherwise double it hundreds of times, to the 30 s maximum, in one go.
    pub fn busy(&mut self, now: Time) {
        if self.backoff_until.is_some_and(|t| t > now) {
            return;
        }
        self.backoff_until = Some(now + self.busy_backoff);
        self.busy_backoff = (self.busy_backoff * 2).min(MAX_BUSY_BACKOFF);
    }

    /// The neighbour accepted an offer: reset the busy backoff.
    pub fn accepted(&mut self) {
        self.counters.accepted += 1;
        self.busy_backoff = Duration::from_millis(500);
        self.backoff_until = None;
    }

    /// Something arrived from the peer.
    pub fn heard(&mut self, now: Time) {
        self.last_heard = now;
    }

    /// Accounts one frame from the peer against `rate` frames per second: a second's worth
    /// may come at once; past that the frame is shed; a further second's worth cuts it off.
    pub(crate) fn allow_frame(&mut self, now: Time, rate: u32) -> FrameAllowance {
        let rate = f64::from(rate.max(1));
        let elapsed = now.saturating_since(self.frame_tokens_at).as_secs_f64();
        self.frame_tokens = (self.frame_tokens.min(rate) + elapsed * rate).min(rate);
        self.frame_tokens_at = now;
        self.frame_tokens -= 1.0;
        if self.frame_tokens >= 0.0 {
            FrameAllowance::Take
        } else if self.frame_tokens >= -rate {
            FrameAllowance::Shed
        } else {
            FrameAllowance::CutOff
        }
    }

    /// How long a probe may go unanswered before it counts as missed: four round trips,
    /// between 50 ms and the probe interval.
    pub fn probe_timeout(&self) -> Duration {
        let rtt = self.srtt.unwrap_or_else(|| self.one_way_delay() * 2);
        (rtt * 4).clamp(Duration::from_millis(50), self.cfg.probe_interval)
    }

    /// Misses in a row that take the link down: the configured number, more on a lossy link,
    /// so that a false alarm stays rarer than [`FALSE_DOWN`] per probe.
    pub fn misses_needed(&self) -> u32 {
        let q = self.baseline_loss.clamp(1e-9, 0.9);
        let by_loss = (FALSE_DOWN.ln() / q.ln()).ceil() as u32;
        self.cfg.probe_misses.max(by_loss.min(8))
    }

    /// Answers in a row a down link needs before it is used again: 1, doubling with every
    /// recent flap (up to 16), so a flapping link does not make routes flap with it.
    fn answers_needed(&self) -> u32 {
        1 << self.downs.len().saturating_sub(1).min(4)
    }

    /// Probe timer: judge the newest probe once its time is up, and send the next one. On
    /// the answering side, judge the silence since the last probe instead.
    pub fn probe_tick(&mut self, now: Time) -> ProbeTick {
        if !self.info.prober {
            return self.silence_tick(now);
        }
        let mut tick = ProbeTick::default();
        let timeout = self.probe_timeout();
        let last_heard = self.last_heard;
        if let Some(p) =
            self.outstanding.back_mut().filter(|p| !p.judged && now >= p.sent + timeout)
        {
            p.judged = true;
            if last_heard > p.sent {
                // The probe is late but the peer is talking: not a miss.
            } else {
                if self.misses == 0 {
                    self.baseline_loss = self.loss;
                }
                self.misses += 1;
                self.loss = self.loss * 0.9 + 0.1;
                self.streak = 0;
                if self.up && self.misses >= self.misses_needed() {
                    self.up = false;
                    self.since = now;
                    self.counters.went_down += 1;
                    self.downs.push_back(now);
                    tick.went_down = true;
                }
            }
        }
        while self.downs.front().is_some_and(|t| now.saturating_since(*t) > FLAP_WINDOW) {
            self.downs.pop_front();
        }
        if now >= self.next_probe {
            self.probe_seq += 1;
            self.outstanding.push_back(Probe { seq: self.probe_seq, sent: now, judged: false });
            if self.outstanding.len() > PROBE_HISTORY {
                self.outstanding.pop_front();
            }
            self.counters.probes_sent += 1;
            self.next_probe = now + self.cfg.probe_interval;
            tick.send = Some(self.probe_seq);
        }
        tick
    }

    /// The answering side: every probe interval without a word from the prober is a miss.
    fn silence_tick(&mut self, now: Time) -> ProbeTick {
        let mut tick = ProbeTick::default();
        let silent = now.saturating_since(self.last_heard);
        let grace = self.cfg.probe_interval + self.probe_timeout();
        let misses = if silent >= grace {
            1 + ((silent - grace).as_micros() / self.cfg.probe_interval.as_micros().max(1)) as u32
        } else {
            0
        };
        if misses > 0 && self.misses == 0 {
            self.baseline_loss = self.loss;
        }
        if misses > self.misses {
            self.streak = 0;
        }
        self.misses = misses;
        while self.downs.front().is_some_and(|t| now.saturating_since(*t) > FLAP_WINDOW) {
            self.downs.pop_front();
        }
        if self.up && misses >= self.misses_needed() {
            self.up = false;
            self.since = now;
            self.counters.went_down += 1;
            self.downs.push_back(now);
            tick.went_down = true;
        }
        tick
    }

    /// A probe from the prober (answering side): the link is alive, and here is its view.
    /// Returns whether the link came back up.
    pub fn probed(&mut self, rtt_us: u32, loss_ppm: u32, now: Time) -> bool {
        self.last_heard = now;
        self.misses = 0;
        if rtt_us > 0 {
            self.srtt = Some(Duration::from_micros(u64::from(rtt_us)));
        }
        self.loss = f64::from(loss_ppm) / 1e6;
        self.counters.probes_answered += 1;
        if !self.up {
            self.streak += 1;
            if self.streak >= self.answers_needed() {
                self.up = true;
                self.since = now;
                self.streak = 0;
                return true;
            }
        }
        false
    }

    /// What this side's probes carry: its smoothed RTT and loss.
    pub fn view(&self) -> (u32, u32) {
        let rtt = self.srtt.map_or(0, |r| u32::try_from(r.as_micros()).unwrap_or(u32::MAX));
        (rtt, (self.loss * 1e6) as u32)
    }

    /// A probe answer; returns whether the link came back up.
    pub fn probe_ack(&mut self, seq: u64, now: Time) -> bool {
        let Some(i) = self.outstanding.iter().position(|p| p.seq == seq) else {
            return false;
        };
        let probe = self.outstanding[i];
        // Older probes answered later are still RTT samples but no longer count as misses.
        self.outstanding.drain(..=i);
        let sample = now.saturating_since(probe.sent);
        self.srtt = Some(match self.srtt {
            None => sample,
            Some(s) => (s * 7 + sample) / 8,
        });
        self.counters.probes_answered += 1;
        self.last_heard = now;
        if !probe.judged {
            self.loss *= 0.9;
        }
        self.misses = 0;
        if !self.up {
            self.streak += 1;
            if self.streak >= self.answers_needed() {
                self.up = true;
                self.since = now;
                self.streak = 0;
                return true;
            }
        }
        false
    }

    /// The earliest time this link needs the node's attention.
    pub fn next_timeout(&self) -> Time {
        let mut t = if self.info.prober {
            let mut t = self.next_probe;
            if let Some(p) = self.outstanding.back().filter(|p| !p.judged) {
                t = t.min(p.sent + self.probe_timeout());
            }
            t
        } else {
            // The next moment the silence counts one more miss.
            self.last_heard
                + self.cfg.probe_interval
                + self.probe_timeout()
                + self.cfg.probe_interval * self.misses
        };
        if let Some(b) = self.backoff_until {
            t = t.min(b);
        }
        if let Some((_, oldest)) = self.inflight.first_key_value() {
            let oldest = oldest.sent_at;
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
            prober: true,
            certificate: Default::default(),
            compact: false,
            lean_adverts: false,
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
            from: None,
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

    /// Runs probe ticks from `now` until `until`, answering none; returns when it went down.
    fn silence(l: &mut Link, mut now: Time, until: Time) -> Option<Time> {
        let mut down = None;
        while now < until {
            if l.probe_tick(now).went_down && down.is_none() {
                down = Some(now);
            }
            now = l.next_timeout().max(now + Duration::from_micros(1));
        }
        down
    }

    #[test]
    fn missed_probes_take_a_clean_link_down_within_two_intervals() {
        let mut l = link(1000, None);
        let interval = l.cfg.probe_interval;
        // A healthy link with a 20 ms round trip.
        let mut now = Time(0);
        for _ in 0..20 {
            let seq = l.probe_tick(now).send.unwrap();
            l.probe_ack(seq, now + Duration::from_millis(20));
            now = now + interval;
        }
        assert_eq!(l.misses_needed(), l.cfg.probe_misses);
        // The link goes silent just after a probe went out.
        l.probe_tick(now);
        let down = silence(&mut l, now, now + interval * 10).unwrap();
        assert!(
            down.saturating_since(now) <= interval * l.cfg.probe_misses,
            "{:?}",
            down.saturating_since(now)
        );
        assert!(!l.up);
        let last = l.outstanding.back().unwrap().seq;
        assert!(l.probe_ack(last, down + Duration::from_millis(40)));
        assert!(l.up);
    }

    #[test]
    fn traffic_from_the_peer_keeps_a_link_with_late_probes_up() {
        let mut l = link(1000, None);
        let mut now = Time(0);
        for _ in 0..10 {
            l.probe_tick(now);
            l.heard(now + Duration::from_millis(500));
            now = l.next_timeout();
            l.probe_tick(now);
            now = now + l.cfg.probe_interval;
        }
        assert!(l.up, "probes stuck behind data do not take the link down");
    }

    #[test]
    fn a_lossy_link_needs_more_misses_and_a_flapping_link_more_answers() {
        let mut l = link(1000, None);
        l.baseline_loss = 0.2;
        assert!(l.misses_needed() >= 5, "{}", l.misses_needed());
        let mut l = link(1000, None);
        let mut now = Time(0);
        for flap in 0..3u32 {
            let down = silence(&mut l, now, now + Duration::from_secs(30)).unwrap();
            let mut answers = 0;
            now = down;
            while !l.up {
                now = l.next_timeout().max(now + Duration::from_micros(1));
                if let Some(seq) = l.probe_tick(now).send {
                    l.probe_ack(seq, now + Duration::from_millis(10));
                    answers += 1;
                }
            }
            assert_eq!(answers, 1 << flap, "flap {flap}");
        }
    }

    #[test]
    fn busy_backoff_grows_and_resets() {
        let mut l = link(1000, None);
        l.busy(Time(0));
        assert!(!l.accepting(Time(100)));
        assert!(l.accepting(Time(500_000)));
        l.busy(Time(500_000));
        assert_eq!(l.backoff_until, Some(Time(1_500_000)));
        // A window of refusals during the pause does not grow it further.
        for _ in 0..300 {
            l.busy(Time(600_000));
        }
        assert_eq!(l.backoff_until, Some(Time(1_500_000)));
        l.busy(Time(1_500_000));
        assert_eq!(l.backoff_until, Some(Time(3_500_000)), "the next pause: 2 s");
        l.accepted();
        assert!(l.accepting(Time(500_001)));
    }
}
