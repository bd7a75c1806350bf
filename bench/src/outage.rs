//! The outage workload: messages sent while the A -> B link is cut, in three shapes of cut,
//! and the cuttable UDP proxy between A and B that makes the cuts.
//!
//! * `clean`: the proxy closes both its sockets, so datagrams to it are refused (ICMP port
//!   unreachable) and nothing comes back; it binds the same ports again when the link returns.
//! * `drop`: the proxy keeps its sockets and silently discards every datagram.
//! * `kill`: a clean cut, and relay A is killed with SIGKILL once it holds the messages, then
//!   started again on the same store, all before the link returns.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use relaymesh::api_model::{InboxDoc, StatusDoc};
use relaymesh::core::NodeId;

use crate::peer;

/// How the link is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The proxy closes its sockets (datagrams are refused).
    Clean,
    /// Datagrams vanish silently.
    Drop,
    /// A clean cut, and relay A is killed with SIGKILL during it and restarted.
    Kill,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Clean => "clean",
            Mode::Drop => "drop",
            Mode::Kill => "kill",
        }
    }
}

const OPEN: u8 = 0;
const DROPPING: u8 = 1;
const CLOSED: u8 = 2;

/// Forwards datagrams arriving on its port to a target, and the answers back to whoever sent
/// last. One thread, non-blocking sockets.
#[derive(Debug)]
pub struct UdpProxy {
    pub port: u16,
    state: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpProxy {
    pub fn start(target: SocketAddr) -> Result<UdpProxy> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        let port = front.local_addr()?.port();
        let state = Arc::new(AtomicU8::new(OPEN));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || forward(Some(front), port, target, &st, &sp));
        Ok(UdpProxy { port, state, stop, thread: Some(thread) })
    }

    /// Cuts the link: `silent` discards datagrams, otherwise the sockets are closed.
    pub fn cut(&self, silent: bool) {
        self.state.store(if silent { DROPPING } else { CLOSED }, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.state.store(OPEN, Ordering::SeqCst);
    }
}

/// Binds the proxy's sockets: the front on `port`, the back on `back_port` (0: any), so
/// that after a clean cut both ends see the same addresses as before.
fn sockets(
    front: Option<UdpSocket>,
    port: u16,
    back_port: u16,
    target: SocketAddr,
) -> Option<[UdpSocket; 2]> {
    let front = match front {
        Some(f) => f,
        None => UdpSocket::bind(("127.0.0.1", port)).ok()?,
    };
    let back = UdpSocket::bind(SocketAddr::new(target.ip(), back_port)).ok()?;
    front.set_nonblocking(true).ok()?;
    back.set_nonblocking(true).ok()?;
    Some([front, back])
}

fn forward(
    front: Option<UdpSocket>,
    port: u16,
    target: SocketAddr,
    state: &AtomicU8,
    stop: &AtomicBool,
) {
    let mut socks = sockets(front, port, 0, target);
    let back_port = socks.as_ref().and_then(|[_, b]| b.local_addr().ok()).map_or(0, |a| a.port());
    let mut client: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let s = state.load(Ordering::SeqCst);
        if s == CLOSED {
            socks = None;
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if socks.is_none() {
            socks = sockets(None, port, back_port, target);
            if socks.is_none() {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        }
        let Some([front, back]) = socks.as_ref() else { continue };
        let mut idle = true;
        for _ in 0..256 {
            let Ok((n, from)) = front.recv_from(&mut buf) else { break };
            idle = false;
            client = Some(from);
            if s == OPEN {
                let _ = back.send_to(&buf[..n], target);
            }
        }
        for _ in 0..256 {
            let Ok((n, _)) = back.recv_from(&mut buf) else { break };
            idle = false;
            if let (Some(to), OPEN) = (client, s) {
                let _ = front.send_to(&buf[..n], to);
            }
        }
        if idle {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What an outage run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Messages sent and not in the destination's inbox.
    pub lost: u64,
    /// Messages in the destination's inbox more than once.
    pub duplicates: u64,
    /// Copies that reached the destination again and that its dedup absorbed.
    pub absorbed: u64,
    /// From the link's return to the last message delivered.
    pub backlog_s: f64,
    /// How long the link was cut.
    pub cut_s: f64,
}

/// The destination's inbox cursor (messages delivered so far).
async fn delivered(http: &reqwest::Client, api: u16) -> Result<u64> {
    let s: StatusDoc =
        http.get(format!("http://127.0.0.1:{api}/v1/status")).send().await?.json().await?;
    Ok(s.inbox.next)
}

/// Polls until `n` messages are delivered or `timeout` passes; returns when the count last
/// grew and the count.
async fn wait_delivered(
    http: &reqwest::Client,
    api: u16,
    n: u64,
    timeout: Duration,
) -> Result<(Instant, u64)> {
    let start = Instant::now();
    let (mut last, mut count) = (start, delivered(http, api).await?);
    while count < n && start.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let c = delivered(http, api).await?;
        if c > count {
            (last, count) = (Instant::now(), c);
        }
    }
    Ok((last, count))
}

/// The message numbers in the destination's inbox (with repeats, if any).
async fn inbox_numbers(http: &reqwest::Client, api: u16) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let mut from = 0u64;
    loop {
        let url = format!("http://127.0.0.1:{api}/v1/inbox?from={from}&limit=10000");
        let page: InboxDoc = http.get(url).send().await?.json().await?;
        for m in &page.messages {
            out.push(m.id.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or(0));
        }
        match page.last {
            Some(last) if !page.messages.is_empty() => from = last + 1,
            _ => return Ok(out),
        }
    }
}

/// `total` messages through A -> B to a real destination node; `during` of them are sent
/// while the link is cut, which lasts `cut` (at least until A holds them all).
pub async fn run(
    mode: Mode,
    total: u64,
    during: u64,
    size: usize,
    cut: Duration,
) -> Result<Outcome> {
    let layout = crate::Layout { proxy: true, dest: true, ..Default::default() };
    let mut p = crate::two_relays_with(layout).await?;
    crate::wait_route(&format!("127.0.0.1:{}", p.apis[0]), "dest").await?;
    let http = reqwest::Client::new();
    let dest_api = p.apis[2];
    let to = NodeId::new("dest")?;
    let before = total.saturating_sub(during);
    // Before the cut: delivered end to end.
    let link = p.load.take().context("load link")?;
    let spec = peer::LoadSpec::routine(before, size, 2048);
    peer::load(link, NodeId::new("load")?, to.clone(), spec, p.clock).await?;
    let (_, n) = wait_delivered(&http, dest_api, before, Duration::from_secs(30)).await?;
    if n < before {
        bail!("{n} of {before} delivered before the cut");
    }
    // The cut; A takes custody of the rest.
    let proxy = p.proxy.as_ref().context("proxy")?;
    proxy.cut(mode == Mode::Drop);
    let cut_at = Instant::now();
    let link = p.dial_a("load-2").await?;
    let spec = peer::LoadSpec { first: before + 1, ..peer::LoadSpec::routine(during, size, 2048) };
    peer::load(link, NodeId::new("load-2")?, to, spec, p.clock).await?;
    if mode == Mode::Kill {
        let mut a = p.dep.children.remove(p.a_child);
        let killed = a.kill(); // SIGKILL
        let _ = a.wait();
        killed.context("killing relay-a")?;
        let config = p.a_config.clone();
        p.dep.spawn(&config)?;
        p.a_child = p.dep.children.len() - 1;
        crate::wait_api(p.apis[0]).await.context("relay-a after its restart")?;
    }
    if let Some(rest) = cut.checked_sub(cut_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let cut_s = cut_at.elapsed().as_secs_f64();
    let early = delivered(&http, dest_api).await?;
    p.proxy.as_ref().context("proxy")?.heal();
    let healed = Instant::now();
    let (last, _) = wait_delivered(&http, dest_api, total, Duration::from_secs(90)).await?;
    // A grace period for late copies.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let numbers = inbox_numbers(&http, dest_api).await?;
    let unique: HashSet<u64> =
        numbers.iter().copied().filter(|n| (1..=total).contains(n)).collect();
    let s: StatusDoc =
        http.get(format!("http://127.0.0.1:{dest_api}/v1/status")).send().await?.json().await?;
    let absorbed = s.counters.routine.duplicates;
    if early > before {
        eprintln!("  note: {} delivered while the link was cut", early - before);
    }
    Ok(Outcome {
        lost: total.saturating_sub(unique.len() as u64),
        duplicates: numbers.len() as u64 - unique.len() as u64,
        absorbed,
        backlog_s: last.saturating_duration_since(healed).as_secs_f64(),
        cut_s,
    })
}
