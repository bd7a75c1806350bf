//! The virtual UDP network: sockets that implement quinn's `AsyncUdpSocket`, joined by links
//! that delay, throttle, queue, lose and cut packets, in tokio's (paused, virtual) time.
//!
//! Each link joins two nodes over one medium and has, per direction, a serialisation queue
//! (bandwidth with a finite, tail-dropping buffer), a one-way delay with jitter (FIFO: jitter
//! never reorders), random loss (independent, or bursty as a Gilbert-Elliott chain) and an MTU.
//! Faults are [`Rule`]s that return a [`Verdict`]; they compose (the first drop wins, delays
//! add up) and are removed when their [`RuleGuard`] is dropped.
//!
//! All randomness comes from one seeded RNG drawn in event order, so a run is reproducible.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use relaymesh::core::Medium;
use tokio::time::{Instant, Sleep};

/// What a rule decides for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Deliver, this much later.
    Delay(Duration),
    Drop,
}

/// A fault: looks at each packet crossing a link and returns a verdict.
pub trait Rule: Send {
    fn verdict(&mut self, now: Instant, rng: &mut ChaCha8Rng) -> Verdict;
    /// Whether this rule drops everything (counts as the link being down).
    fn cuts(&self) -> bool {
        false
    }
}

/// The link is down: every packet is lost.
#[derive(Debug)]
pub struct Cut;

impl Rule for Cut {
    fn verdict(&mut self, _: Instant, _: &mut ChaCha8Rng) -> Verdict {
        Verdict::Drop
    }
    fn cuts(&self) -> bool {
        true
    }
}

/// Extra delay and loss on top of the link's own.
#[derive(Debug)]
pub struct Impair {
    pub delay: Duration,
    pub loss: f64,
}

impl Rule for Impair {
    fn verdict(&mut self, _: Instant, rng: &mut ChaCha8Rng) -> Verdict {
        if self.loss > 0.0 && rng.random::<f64>() < self.loss {
            Verdict::Drop
        } else if self.delay.is_zero() {
            Verdict::Pass
        } else {
            Verdict::Delay(self.delay)
        }
    }
}

/// A link's physical parameters (the same in both directions).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkParams {
    pub delay: Duration,
    pub jitter: Duration,
    /// Bits per second, each direction.
    pub bandwidth_bps: u64,
    /// Packet loss ratio.
    pub loss: f64,
    /// Mean length of a loss burst, in packets; 1 means independent losses.
    pub burst: f64,
    pub mtu: usize,
    /// Bytes the sending queue holds before it drops (tail drop).
    pub queue_bytes: u64,
}

impl LinkParams {
    fn serialisation(&self, bytes: usize) -> Duration {
        Duration::from_secs_f64(bytes as f64 * 8.0 / self.bandwidth_bps.max(1) as f64)
    }
}

/// Counters of one direction of a link.
#[derive(Clone, Debug, Default)]
pub struct DirectionStats {
    pub packets: u64,
    pub bytes: u64,
    pub dropped_loss: u64,
    pub dropped_queue: u64,
    pub dropped_cut: u64,
    pub dropped_mtu: u64,
}

#[derive(Debug)]
struct Direction {
    busy_until: Instant,
    last_arrival: Instant,
    bad: bool,
    stats: DirectionStats,
}

struct Link {
    id: String,
    medium: Medium,
    ends: [SocketAddr; 2],
    params: LinkParams,
    dirs: [Direction; 2],
    rules: Vec<(u64, Box<dyn Rule>)>,
    down_since: Option<Instant>,
    down_total: Duration,
    /// (time, up) whenever the link's state changed, for the report's timeline.
    changes: Vec<(Instant, bool)>,
}

impl Link {
    fn is_cut(&self) -> bool {
        self.rules.iter().any(|(_, r)| r.cuts())
    }

    fn note_state(&mut self, now: Instant) {
        let cut = self.is_cut();
        match (cut, self.down_since) {
            (true, None) => {
                self.down_since = Some(now);
                self.changes.push((now, false));
            }
            (false, Some(since)) => {
                self.down_total += now - since;
                self.down_since = None;
                self.changes.push((now, true));
            }
            _ => {}
        }
    }
}

struct Packet {
    from: SocketAddr,
    data: Bytes,
}

#[derive(Default)]
struct Inbox {
    /// The socket bound to this address now: one left over from before a crash (its quinn
    /// endpoint lives on while connection tasks hold it) neither reads here nor sends.
    owner: u64,
    /// (arrival, sequence) -> packet; the sequence keeps equal arrival times in send order.
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    packets: HashMap<usize, Packet>,
    next_slot: usize,
    waker: Option<Waker>,
}

struct State {
    rng: ChaCha8Rng,
    sent: u64,
    next_rule: u64,
    next_socket: u64,
    inboxes: HashMap<SocketAddr, Inbox>,
    links: Vec<Link>,
    /// (lower address, higher address) -> link index.
    by_ends: HashMap<(SocketAddr, SocketAddr), usize>,
    by_id: BTreeMap<String, usize>,
}

/// The virtual network. Cheap to clone; all clones share it.
#[derive(Clone)]
pub struct Fabric {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for Fabric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fabric").finish_non_exhaustive()
    }
}

/// The address of node number `index` on `medium`.
pub fn address(index: usize, medium: Medium) -> SocketAddr {
    let m = match medium {
        Medium::Satellite => 1,
        Medium::Wireless => 2,
        Medium::Public => 3,
    };
    let ip = Ipv4Addr::new(10, m, ((index >> 8) & 0xff) as u8, (index & 0xff) as u8);
    SocketAddr::new(IpAddr::V4(ip), 7400)
}

impl Fabric {
    pub fn new(seed: u64) -> Fabric {
        Fabric {
            state: Arc::new(Mutex::new(State {
                rng: ChaCha8Rng::seed_from_u64(seed),
                sent: 0,
                next_rule: 0,
                next_socket: 0,
                inboxes: HashMap::new(),
                links: Vec::new(),
                by_ends: HashMap::new(),
                by_id: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // One thread runs the whole simulation; a poisoned lock means a panic already ended it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a link between two socket addresses.
    pub fn add_link(
        &self,
        id: &str,
        medium: Medium,
        a: SocketAddr,
        b: SocketAddr,
        params: LinkParams,
    ) {
        let now = Instant::now();
        let mut s = self.lock();
        let idx = s.links.len();
        let dir = || Direction {
            busy_until: now,
            last_arrival: now,
            bad: false,
            stats: DirectionStats::default(),
        };
        s.links.push(Link {
            id: id.to_owned(),
            medium,
            ends: [a, b],
            params,
            dirs: [dir(), dir()],
            rules: Vec::new(),
            down_since: None,
            down_total: Duration::ZERO,
            changes: vec![(now, true)],
        });
        s.by_ends.insert(key(a, b), idx);
        s.by_id.insert(id.to_owned(), idx);
    }

    /// A socket bound at `addr`; packets to it are queued from now on.
    pub fn bind(&self, addr: SocketAddr) -> Arc<VirtualSocket> {
        let id = {
            let mut s = self.lock();
            s.next_socket += 1;
            let id = s.next_socket;
            s.inboxes.insert(addr, Inbox { owner: id, ..Inbox::default() });
            id
        };
        Arc::new(VirtualSocket { fabric: self.clone(), addr, id, timer: Mutex::new(None) })
    }

    /// Removes a socket: what was queued for it is lost, and so is what comes later.
    pub fn unbind(&self, addr: SocketAddr) {
        let inbox = self.lock().inboxes.remove(&addr);
        if let Some(w) = inbox.and_then(|i| i.waker) {
            w.wake();
        }
    }

    /// Adds a fault rule to a link; it stays until the guard is dropped.
    pub fn add_rule(&self, link: &str, rule: Box<dyn Rule>) -> Option<RuleGuard> {
        let now = Instant::now();
        let mut s = self.lock();
        let idx = *s.by_id.get(link)?;
        s.next_rule += 1;
        let id = s.next_rule;
        s.links[idx].rules.push((id, rule));
        s.links[idx].note_state(now);
        Some(RuleGuard { fabric: self.clone(), link: idx, id })
    }

    fn remove_rule(&self, link: usize, id: u64) {
        let now = Instant::now();
        let mut s = self.lock();
        if let Some(l) = s.links.get_mut(link) {
            l.rules.retain(|(r, _)| *r != id);
            l.note_state(now);
        }
    }

    /// Replaces a link's parameters (degradation); returns the old ones.
    pub fn set_params(&self, link: &str, params: LinkParams) -> Option<LinkParams> {
        let mut s = self.lock();
        let idx = *s.by_id.get(link)?;
        Some(std::mem::replace(&mut s.links[idx].params, params))
    }

    pub fn params(&self, link: &str) -> Option<LinkParams> {
        let s = self.lock();
        s.by_id.get(link).map(|i| s.links[*i].params.clone())
    }

    /// Per link: id, medium, bandwidth, stats of both directions, time down, state changes.
    pub fn link_report(&self) -> Vec<LinkReport> {
        let now = Instant::now();
        let s = self.lock();
        s.links
            .iter()
            .map(|l| LinkReport {
                id: l.id.clone(),
                medium: l.medium,
                bandwidth_bps: l.params.bandwidth_bps,
                directions: [l.dirs[0].stats.clone(), l.dirs[1].stats.clone()],
                down: l.down_total + l.down_since.map_or(Duration::ZERO, |t| now - t),
                changes: l.changes.clone(),
            })
            .collect()
    }

    fn send(&self, socket: u64, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let now = Instant::now();
        let mut guard = self.lock();
        let s = &mut *guard;
        // A crashed node sends nothing, even from connection tasks that outlive it.
        if s.inboxes.get(&from).is_none_or(|i| i.owner != socket) {
            return;
        }
        let Some(&idx) = s.by_ends.get(&key(from, to)) else { return };
        let link = &mut s.links[idx];
        let d = usize::from(link.ends[0] != from);
        let p = link.params.clone();
        let dir = &mut link.dirs[d];
        if data.len() > p.mtu {
            dir.stats.dropped_mtu += 1;
            return;
        }
        // Rules first: a cut link carries nothing.
        let mut extra = Duration::ZERO;
        for (_, rule) in link.rules.iter_mut() {
            match rule.verdict(now, &mut s.rng) {
                Verdict::Pass => {}
                Verdict::Delay(d) => extra += d,
                Verdict::Drop => {
                    link.dirs[d].stats.dropped_cut += 1;
                    return;
                }
            }
        }
        let dir = &mut link.dirs[d];
        // The serialisation queue: drop at the tail when it holds more than its buffer.
        let start = dir.busy_until.max(now);
        let backlog = start - now;
        if backlog.as_secs_f64() * p.bandwidth_bps as f64 / 8.0 > p.queue_bytes as f64 {
            dir.stats.dropped_queue += 1;
            return;
        }
        dir.busy_until = start + p.serialisation(data.len());
        dir.stats.packets += 1;
        dir.stats.bytes += data.len() as u64;
        // Loss on the wire: the packet used the link, then vanished.
        if lost(&p, &mut dir.bad, &mut s.rng) {
            dir.stats.dropped_loss += 1;
            return;
        }
        let jitter = if p.jitter.is_zero() {
            Duration::ZERO
        } else {
            p.jitter.mul_f64(s.rng.random::<f64>())
        };
        let arrival = (dir.busy_until + p.delay + jitter + extra).max(dir.last_arrival);
        dir.last_arrival = arrival;
        s.sent += 1;
        let seq = s.sent;
        let Some(inbox) = s.inboxes.get_mut(&to) else { return };
        let slot = inbox.next_slot;
        inbox.next_slot += 1;
        inbox.packets.insert(slot, Packet { from, data: Bytes::copy_from_slice(data) });
        inbox.queue.push(Reverse((arrival, seq, slot)));
        if let Some(w) = inbox.waker.take() {
            w.wake();
        }
    }
}

fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

/// Independent loss, or a two-state Gilbert-Elliott chain when bursts are longer than one.
fn lost(p: &LinkParams, bad: &mut bool, rng: &mut ChaCha8Rng) -> bool {
    if p.loss <= 0.0 {
        return false;
    }
    if p.burst <= 1.0 {
        return rng.random::<f64>() < p.loss;
    }
    // In the bad state every packet is lost; bursts last `burst` packets on average and the
    // long-run loss ratio is `loss`.
    let leave_bad = 1.0 / p.burst;
    let enter_bad = (p.loss * leave_bad / (1.0 - p.loss).max(1e-9)).min(1.0);
    *bad = if *bad { rng.random::<f64>() >= leave_bad } else { rng.random::<f64>() < enter_bad };
    *bad
}

/// Keeps a rule on its link; dropping it removes the rule.
pub struct RuleGuard {
    fabric: Fabric,
    link: usize,
    id: u64,
}

impl fmt::Debug for RuleGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleGuard").field("link", &self.link).field("id", &self.id).finish()
    }
}

impl Drop for RuleGuard {
    fn drop(&mut self) {
        self.fabric.remove_rule(self.link, self.id);
    }
}

/// What the report needs of a link.
#[derive(Clone, Debug)]
pub struct LinkReport {
    pub id: String,
    pub medium: Medium,
    pub bandwidth_bps: u64,
    pub directions: [DirectionStats; 2],
    pub down: Duration,
    pub changes: Vec<(Instant, bool)>,
}

/// A socket on the fabric.
pub struct VirtualSocket {
    fabric: Fabric,
    addr: SocketAddr,
    /// Which binding of `addr` this is (see `Inbox::owner`).
    id: u64,
    timer: Mutex<Option<Pin<Box<Sleep>>>>,
}

impl fmt::Debug for VirtualSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualSocket").field("addr", &self.addr).finish()
    }
}

#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for VirtualSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, t: &Transmit) -> io::Result<()> {
        match t.segment_size {
            Some(size) if size > 0 => {
                for chunk in t.contents.chunks(size) {
                    self.fabric.send(self.id, self.addr, t.destination, chunk);
                }
            }
            _ => self.fabric.send(self.id, self.addr, t.destination, t.contents),
        }
        // A dropped packet is still "sent", as with a real socket.
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let now = Instant::now();
        let next_arrival = {
            let mut s = self.fabric.lock();
            let Some(inbox) = s.inboxes.get_mut(&self.addr).filter(|i| i.owner == self.id) else {
                // Unbound (the node was crashed), or bound again by the restarted node: for
                // this socket nothing will ever arrive, and it must not take the new one's
                // packets or its waker (which left the restarted node deaf).
                return Poll::Pending;
            };
            let mut n = 0;
            while n < bufs.len().min(meta.len()) {
                let Some(Reverse((arrival, _, slot))) = inbox.queue.peek().copied() else { break };
                if arrival > now {
                    break;
                }
                inbox.queue.pop();
                let Some(p) = inbox.packets.remove(&slot) else { continue };
                let len = p.data.len().min(bufs[n].len());
                bufs[n][..len].copy_from_slice(&p.data[..len]);
                meta[n] = RecvMeta {
                    addr: p.from,
                    len,
                    stride: len,
                    ecn: None,
                    dst_ip: Some(self.addr.ip()),
                };
                n += 1;
            }
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            inbox.waker = Some(cx.waker().clone());
            inbox.queue.peek().map(|Reverse((t, _, _))| *t)
        };
        // Wake up when the next packet is due (arrivals before then wake us through the waker).
        let mut timer = self.timer.lock().unwrap_or_else(|e| e.into_inner());
        match next_arrival {
            Some(t) => {
                match timer.as_mut() {
                    Some(sleep) => sleep.as_mut().reset(t),
                    None => *timer = Some(Box::pin(tokio::time::sleep_until(t))),
                }
                if let Some(sleep) = timer.as_mut()
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    cx.waker().wake_by_ref();
                }
            }
            None => *timer = None,
        }
        Poll::Pending
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }

    fn may_fragment(&self) -> bool {
        // Path-MTU discovery only runs on sockets that do not fragment; the fabric drops
        // datagrams larger than the link MTU, as a real network with DF set would.
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> LinkParams {
        LinkParams {
            delay: Duration::from_millis(100),
            jitter: Duration::ZERO,
            bandwidth_bps: 1_000_000,
            loss: 0.0,
            burst: 1.0,
            mtu: 1400,
            queue_bytes: 10_000,
        }
    }

    async fn recv_one(sock: &VirtualSocket) -> (SocketAddr, Vec<u8>, Instant) {
        let mut buf = [0u8; 2000];
        std::future::poll_fn(|cx| {
            let mut bufs = [IoSliceMut::new(&mut buf)];
            let mut meta = [RecvMeta::default()];
            match sock.poll_recv(cx, &mut bufs, &mut meta) {
                Poll::Ready(Ok(n)) => {
                    assert_eq!(n, 1);
                    Poll::Ready((meta[0].addr, meta[0].len))
                }
                Poll::Ready(Err(e)) => panic!("{e}"),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
        .pipe(|(from, len)| (from, buf[..len].to_vec(), Instant::now()))
    }

    trait Pipe: Sized {
        fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
            f(self)
        }
    }
    impl<T> Pipe for T {}

    fn transmit(to: SocketAddr, data: &[u8]) -> Transmit<'_> {
        Transmit { destination: to, ecn: None, contents: data, segment_size: None, src_ip: None }
    }

    #[tokio::test(start_paused = true)]
    async fn packets_take_delay_plus_serialisation() {
        let f = Fabric::new(1);
        let (a, b) = (address(0, Medium::Satellite), address(1, Medium::Satellite));
        f.add_link("a~b/satellite", Medium::Satellite, a, b, params());
        let (sa, sb) = (f.bind(a), f.bind(b));
        let start = Instant::now();
        sa.try_send(&transmit(b, &[7u8; 1250])).unwrap(); // 10 ms at 1 Mbit/s
        let (from, data, at) = recv_one(&sb).await;
        assert_eq!(from, a);
        assert_eq!(data.len(), 1250);
        assert_eq!(at - start, Duration::from_millis(110));
        // Back-to-back packets queue behind each other.
        sa.try_send(&transmit(b, &[1u8; 1250])).unwrap();
        sa.try_send(&transmit(b, &[2u8; 1250])).unwrap();
        let t0 = Instant::now();
        let _ = recv_one(&sb).await;
        let (_, second, at) = recv_one(&sb).await;
        assert_eq!(second[0], 2);
        assert_eq!(at - t0, Duration::from_millis(120));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_at_the_tail_and_oversized_packets_are_dropped() {
        let f = Fabric::new(1);
        let (a, b) = (address(0, Medium::Wireless), address(1, Medium::Wireless));
        f.add_link("a~b/wireless", Medium::Wireless, a, b, params());
        let sa = f.bind(a);
        let _sb = f.bind(b);
        for _ in 0..20 {
            sa.try_send(&transmit(b, &[0u8; 1000])).unwrap();
        }
        sa.try_send(&transmit(b, &[0u8; 1500])).unwrap();
        let r = &f.link_report()[0].directions[0];
        assert_eq!(r.packets, 11, "10 kB of buffer: the first packet on the wire, ten queued");
        assert_eq!(r.dropped_queue, 9);
        assert_eq!(r.dropped_mtu, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn cut_rules_drop_until_their_guard_goes_and_count_down_time() {
        let f = Fabric::new(1);
        let (a, b) = (address(0, Medium::Public), address(1, Medium::Public));
        f.add_link("a~b/public", Medium::Public, a, b, params());
        let (sa, sb) = (f.bind(a), f.bind(b));
        let guard = f.add_rule("a~b/public", Box::new(Cut)).unwrap();
        sa.try_send(&transmit(b, b"lost")).unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(guard);
        sa.try_send(&transmit(b, b"through")).unwrap();
        let (_, data, _) = recv_one(&sb).await;
        assert_eq!(data, b"through");
        let r = &f.link_report()[0];
        assert_eq!(r.down, Duration::from_secs(5));
        assert_eq!(r.directions[0].dropped_cut, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_left_from_before_a_crash_neither_reads_nor_sends() {
        // chaos-30 seed 30035: a crashed node's quinn endpoint lived on in its connection
        // tasks, read the restarted node's packets and took its waker: the node stayed deaf.
        let f = Fabric::new(1);
        let (a, b) = (address(0, Medium::Wireless), address(1, Medium::Wireless));
        f.add_link("a~b/wireless", Medium::Wireless, a, b, params());
        let (sa, old_b) = (f.bind(a), f.bind(b));
        f.unbind(b); // b crashes
        let new_b = f.bind(b); // and restarts
        sa.try_send(&transmit(b, b"for the new b")).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut buf = [0u8; 2000];
        let polled = std::future::poll_fn(|cx| {
            let mut bufs = [IoSliceMut::new(&mut buf)];
            let mut meta = [RecvMeta::default()];
            Poll::Ready(old_b.poll_recv(cx, &mut bufs, &mut meta).is_pending())
        })
        .await;
        assert!(polled, "the old socket read the new one's packet");
        let (_, data, _) = recv_one(&new_b).await;
        assert_eq!(data, b"for the new b");
        old_b.try_send(&transmit(a, b"from the dead")).unwrap();
        new_b.try_send(&transmit(a, b"alive")).unwrap();
        let (_, data, _) = recv_one(&sa).await;
        assert_eq!(data, b"alive");
        assert_eq!(f.link_report()[0].directions[1].packets, 1, "nothing sent from the dead");
    }

    #[test]
    fn gilbert_elliott_keeps_the_long_run_loss_ratio_and_makes_bursts() {
        let p = LinkParams { loss: 0.05, burst: 4.0, ..params() };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut bad = false;
        let (mut lost_n, mut bursts, mut prev) = (0u32, 0u32, false);
        let n = 200_000;
        for _ in 0..n {
            let l = lost(&p, &mut bad, &mut rng);
            lost_n += u32::from(l);
            bursts += u32::from(l && !prev);
            prev = l;
        }
        let ratio = f64::from(lost_n) / f64::from(n);
        let mean_burst = f64::from(lost_n) / f64::from(bursts);
        assert!((0.045..0.055).contains(&ratio), "{ratio}");
        assert!((3.5..4.5).contains(&mean_burst), "{mean_burst}");
    }
}
