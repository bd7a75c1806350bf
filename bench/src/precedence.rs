//! Precedence under load: FLASH latency through A -> B on a throttled link, idle and under a
//! saturating ROUTINE stream.
//!
//! The link is a veth pair: relay A runs in its own network namespace and B in this one, and
//! A's side of the pair has a `tbf` qdisc, so everything A sends to B crosses a token bucket of
//! the given rate (queueing at most `latency` before the kernel drops). The load sources reach
//! A over a second, unthrottled pair, as an application reaches its relay on the local network:
//! over the throttled pair, A's custody answers and acknowledgements to them would share the
//! bucket with the A -> B traffic (about 3 Mbit/s of 20 at full load), and fill its queue in
//! front of FLASH. B and the sink are on loopback.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use relaymesh::core::{NodeId, Precedence};

use crate::peer;

/// A network namespace joined to this one by two veth pairs (the throttled link, and the
/// local network its clients use), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
    /// This side's address on the throttled pair.
    pub host_ip: String,
    /// The namespace's address on the throttled pair.
    pub inner_ip: String,
    /// The namespace's address on the unthrottled pair.
    pub client_ip: String,
    /// This side's interface of the throttled pair.
    pub host_if: String,
    /// The namespace's interface of the throttled pair, the one with the token bucket.
    pub inner_if: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Netns {
    /// Creates the namespace and the pair, with a token bucket of `rate_kbit` on the
    /// namespace's side (`burst` and `latency` in tc syntax, e.g. `16kb`, `50ms`).
    pub fn create(rate_kbit: u64, burst: &str, latency: &str) -> Result<Netns> {
        let pid = std::process::id();
        let name = format!("rmb{pid}");
        let (host_if, inner_if) = (format!("rmb{pid}h"), format!("rmb{pid}n"));
        let (lan_host_if, lan_inner_if) = (format!("rmb{pid}c"), format!("rmb{pid}d"));
        let net = format!("10.213.{}", pid % 250);
        let lan = format!("10.215.{}", pid % 250);
        let ns = Netns {
            name,
            host_ip: format!("{net}.1"),
            inner_ip: format!("{net}.2"),
            client_ip: format!("{lan}.2"),
            host_if: host_if.clone(),
            inner_if: inner_if.clone(),
        };
        ip(&["netns", "add", &ns.name])?;
        // From here on, dropping `ns` cleans up.
        let x = |args: &[&str]| {
            let mut a = vec!["netns", "exec", &ns.name, "ip"];
            a.extend_from_slice(args);
            ip(&a)
        };
        for (h, i, host, inner) in [
            (&host_if, &inner_if, &ns.host_ip, &ns.inner_ip),
            (&lan_host_if, &lan_inner_if, &format!("{lan}.1"), &ns.client_ip),
        ] {
            ip(&["link", "add", h, "type", "veth", "peer", "name", i])?;
            ip(&["link", "set", i, "netns", &ns.name])?;
            ip(&["addr", "add", &format!("{host}/24"), "dev", h])?;
            ip(&["link", "set", h, "up"])?;
            x(&["addr", "add", &format!("{inner}/24"), "dev", i])?;
            x(&["link", "set", i, "up"])?;
        }
        x(&["link", "set", "lo", "up"])?;
        let rate = format!("{rate_kbit}kbit");
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.name, "tc", "qdisc", "add", "dev", &inner_if, "root"])
            .args(["tbf", "rate", &rate, "burst", burst, "latency", latency])
            .output()
            .context("running tc")?;
        if !out.status.success() {
            bail!("tc qdisc add tbf: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(ns)
    }
}

impl Netns {
    /// Bytes that crossed the throttled pair so far: (A -> B, B -> A).
    ///
    /// A -> B is what the token bucket sent, as it meters it: each packet's Ethernet frame,
    /// headers included once for every segment of a GSO or TSO aggregate. The interfaces' own
    /// counters count an aggregate's headers once (QUIC sends up to ten 1,452-byte datagrams
    /// as one, TCP up to 64 KiB), so they fall short of what the link carried by up to about 3%
    /// for QUIC and more for TCP. B -> A has no bucket: this side's interface counts it (small
    /// packets, custody answers and acknowledgements, seldom aggregated).
    pub fn link_bytes(&self) -> Result<LinkBytes> {
        let path = format!("/sys/class/net/{}/statistics/tx_bytes", self.host_if);
        let text = std::fs::read_to_string(&path).with_context(|| path.clone())?;
        let reverse = text.trim().parse().with_context(|| format!("{path}: {text:?}"))?;
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "tc", "-s", "qdisc", "show", "dev", &self.inner_if])
            .output()
            .context("running tc")?;
        if !out.status.success() {
            bail!("tc -s qdisc show: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let stats = String::from_utf8_lossy(&out.stdout);
        let forward = tbf_sent_bytes(&stats)
            .with_context(|| format!("no \"Sent N bytes\" in tc's statistics: {stats:?}"))?;
        Ok(LinkBytes { forward, reverse })
    }
}

/// The bytes a qdisc sent, from `tc -s qdisc show` (" Sent 1234 bytes 5 pkt ...").
pub fn tbf_sent_bytes(stats: &str) -> Option<u64> {
    let mut words = stats.split_whitespace();
    words.by_ref().find(|w| *w == "Sent")?;
    let n = words.next()?.parse().ok()?;
    (words.next()? == "bytes").then_some(n)
}

/// Bytes on the throttled link, each way.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkBytes {
    /// A -> B: messages and FLASH orders.
    pub forward: u64,
    /// B -> A: custody answers and acknowledgements.
    pub reverse: u64,
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and so the pair.
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// What a precedence run measured (latencies in milliseconds).
#[derive(Debug)]
pub struct Outcome {
    pub idle_p50: f64,
    pub idle_p99: f64,
    pub load_p50: f64,
    pub load_p99: f64,
    pub load_max: f64,
    pub flashes: usize,
    /// ROUTINE messages delivered per second while FLASH was measured under load.
    pub routine_per_s: f64,
    /// Bytes on the link per message delivered (ROUTINE and FLASH) while under load, each way.
    pub forward_bytes_per_msg: f64,
    pub reverse_bytes_per_msg: f64,
    /// Payload bits over link bits (A -> B) under load.
    pub payload_efficiency: f64,
}

/// Settings of a precedence run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub link_kbit: u64,
    pub burst: String,
    pub latency: String,
    pub seconds: u64,
    pub size: usize,
    /// ROUTINE messages offered per second.
    pub routine_rate: u64,
    /// The relays' congestion controller on the link; `known-rate` paces bulk at `pace`
    /// times the link's rate.
    pub congestion: String,
    /// `[media.public] pace` (the relays' default when `None`).
    pub pace: Option<f64>,
}

/// Offers one FLASH every 100 ms for `seconds` and returns the FLASH latencies; counts ROUTINE
/// deliveries meanwhile.
async fn flashes(
    p: &mut crate::Path2,
    id: &str,
    first: u64,
    seconds: u64,
    size: usize,
) -> Result<(Vec<f64>, u64)> {
    let link = p.dial_a(id).await?;
    let total = seconds * 10;
    let spec = peer::LoadSpec {
        first,
        pace: Some(Duration::from_millis(100)),
        precedence: Precedence::Flash,
        ..peer::LoadSpec::routine(total, size, 1024)
    };
    let loader =
        tokio::spawn(peer::load(link, NodeId::new(id)?, NodeId::new("sink")?, spec, p.clock));
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    let (mut lat, mut routine) = (Vec::new(), 0u64);
    while (lat.len() as u64) < total {
        let d =
            tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), p.ages.recv())
                .await
                .ok()
                .flatten()
                .with_context(|| format!("{} of {total} FLASH messages delivered", lat.len()))?;
        if d.precedence == Precedence::Flash && d.n >= first {
            lat.push(d.age_us as f64 / 1000.0);
        } else {
            routine += 1;
        }
    }
    loader.await??;
    lat.sort_by(f64::total_cmp);
    Ok((lat, routine))
}

pub async fn run(s: &Settings) -> Result<Outcome> {
    let netns = Netns::create(s.link_kbit, &s.burst, &s.latency).context("network namespace")?;
    // The relays know the link's rate; `known-rate` paces bulk under it (`pace`).
    let mut extra = format!(
        "\n[media.public]\nbandwidth = \"{}kbps\"\ncongestion = \"{}\"\n",
        s.link_kbit, s.congestion
    );
    if let Some(pace) = s.pace {
        extra.push_str(&format!("pace = {pace}\n"));
    }
    // Only A sends over the throttled link (B sends it custody answers, and the sink is on
    // loopback): A alone is configured for it.
    let layout = crate::Layout { netns: Some(netns), a_extra: extra, ..Default::default() };
    let mut p = crate::two_relays_with(layout).await?;
    // Idle link.
    let (idle, _) = flashes(&mut p, "flash-idle", 1 << 40, s.seconds, s.size).await?;
    // Saturating ROUTINE, then FLASH again once the queue has built.
    let link = p.load.take().context("load link")?;
    let pace = Duration::from_secs_f64(1.0 / s.routine_rate.max(1) as f64);
    let routine_total = s.routine_rate * (s.seconds + 60);
    let spec = peer::LoadSpec {
        pace: Some(pace),
        sign_ahead: true,
        ..peer::LoadSpec::routine(routine_total, s.size, 16_384)
    };
    let routine =
        tokio::spawn(peer::load(link, NodeId::new("load")?, NodeId::new("sink")?, spec, p.clock));
    let warm = Instant::now() + Duration::from_secs(2);
    while let Ok(Some(_)) =
        tokio::time::timeout(warm.saturating_duration_since(Instant::now()), p.ages.recv()).await
    {
    }
    let netns = p.netns().context("the namespace")?;
    let before = netns.link_bytes()?;
    let started = Instant::now();
    let (loaded, routine_n) = flashes(&mut p, "flash-load", 2 << 40, s.seconds, s.size).await?;
    let routine_per_s = routine_n as f64 / started.elapsed().as_secs_f64();
    let after = p.netns().context("the namespace")?.link_bytes()?;
    routine.abort();
    let delivered = (routine_n + loaded.len() as u64).max(1) as f64;
    let forward = after.forward.saturating_sub(before.forward) as f64;
    let reverse = after.reverse.saturating_sub(before.reverse) as f64;
    if idle.is_empty() || loaded.is_empty() {
        bail!("no FLASH latencies");
    }
    use crate::quantile;
    Ok(Outcome {
        idle_p50: quantile(&idle, 0.5),
        idle_p99: quantile(&idle, 0.99),
        load_p50: quantile(&loaded, 0.5),
        load_p99: quantile(&loaded, 0.99),
        load_max: *loaded.last().unwrap_or(&0.0),
        flashes: loaded.len(),
        routine_per_s,
        forward_bytes_per_msg: forward / delivered,
        reverse_bytes_per_msg: reverse / delivered,
        payload_efficiency: if forward > 0.0 { delivered * s.size as f64 / forward } else { 0.0 },
    })
}
