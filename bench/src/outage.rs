//! The outage workload: messages sent while the A -> B link is cut, in three shapes of cut,
//! made by the cuttable UDP proxy between A and B (`relaymesh_testkit::UdpProxy`).
//!
//! * `clean`: the proxy closes both its sockets, so datagrams to it are refused (ICMP port
//!   unreachable) and nothing comes back; it binds the same ports again when the link returns.
//! * `drop`: the proxy keeps its sockets and silently discards every datagram.
//! * `kill`: a clean cut, and relay A is killed with SIGKILL once it holds the messages, then
//!   started again on the same store, all before the link returns.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use relaymesh::api_model::InboxDoc;
use relaymesh::core::NodeId;
use relaymesh_testkit::Cut;

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

    /// How the proxy cuts the link.
    fn cut(self) -> Cut {
        match self {
            Mode::Drop => Cut::Drop,
            Mode::Clean | Mode::Kill => Cut::Close,
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
    Ok(crate::status(http, api).await?.inbox.next)
}

/// Polls until `n` messages are delivered or `timeout` passes; returns when the count last
/// grew and the count.
pub(crate) async fn wait_delivered(
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
            // The id's first 8 bytes are the load source's counter, little-endian
            // (`peer::envelope`), and the hex shows them in order.
            let n = m.id.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok());
            out.push(n.map_or(0, u64::swap_bytes));
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
    proxy.cut(mode.cut());
    let cut_at = Instant::now();
    let link = p.dial_a("load-2").await?;
    let spec = peer::LoadSpec { first: before + 1, ..peer::LoadSpec::routine(during, size, 2048) };
    peer::load(link, NodeId::new("load-2")?, to, spec, p.clock).await?;
    if mode == Mode::Kill {
        let config = p.a_config.clone();
        p.a_child = p.dep.restart(p.a_child, &config)?;
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
    let t = tally(&http, dest_api, total).await?;
    if early > before {
        eprintln!("  note: {} delivered while the link was cut", early - before);
    }
    Ok(Outcome {
        lost: t.lost,
        duplicates: t.duplicates,
        absorbed: t.absorbed,
        backlog_s: last.saturating_duration_since(healed).as_secs_f64(),
        cut_s,
    })
}

/// Messages `1..=total` as the destination's inbox holds them.
pub(crate) struct Tally {
    /// Not in the inbox.
    pub lost: u64,
    /// In the inbox more than once.
    pub duplicates: u64,
    /// Copies that reached the destination again and that its dedup absorbed.
    pub absorbed: u64,
}

/// Counts, after a grace period for late copies, which of messages `1..=total` the
/// destination (API port `api`) holds, and how often.
pub(crate) async fn tally(http: &reqwest::Client, api: u16, total: u64) -> Result<Tally> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let numbers = inbox_numbers(http, api).await?;
    let s = crate::status(http, api).await?;
    let (lost, duplicates) = count(&numbers, total);
    Ok(Tally { lost, duplicates, absorbed: s.total(|c| c.duplicates) })
}

/// Of messages `1..=total`, given the numbers in an inbox (repeats included): how many are
/// missing, and how many entries are extra copies (or numbers never sent).
fn count(numbers: &[u64], total: u64) -> (u64, u64) {
    let unique: HashSet<u64> =
        numbers.iter().copied().filter(|n| (1..=total).contains(n)).collect();
    (total - unique.len() as u64, numbers.len() as u64 - unique.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn missing_and_repeated_messages_are_counted() {
        assert_eq!(count(&[1, 2, 3], 3), (0, 0));
        assert_eq!(count(&[3, 1], 3), (1, 0));
        assert_eq!(count(&[1, 2, 2, 3, 3, 3], 3), (0, 3));
        // A number never sent is an entry too many, and sent ones still missing are lost.
        assert_eq!(count(&[1, 9], 3), (2, 1));
        assert_eq!(count(&[], 2), (2, 0));
    }
}
