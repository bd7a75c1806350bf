//! The soak workload: relay B, in the middle of the chain load -> A -> B -> dest, is killed
//! with SIGKILL again and again while the load keeps flowing, and started again on the same
//! store each time; at the end every message the load source handed over must be in the
//! destination's inbox exactly once.
//!
//! The load source offers the messages in chunks, each on a fresh link to A, paced, until the
//! last cycle is done; a chunk ends when A has taken custody of all of it, so the count of
//! messages handed over is exact. A cycle waits until the restarted B has taken custody of
//! something new (it is forwarding again), then pulls the plug.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use relaymesh::core::{NodeId, Role};

use crate::outage::{tally, wait_delivered};
use crate::peer;

/// What the soak asks for.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `kill -9` cycles of relay B.
    pub cycles: u32,
    /// Messages in one chunk of load.
    pub chunk: u64,
    /// One message offered per `pace`.
    pub pace: Duration,
    pub size: usize,
}

/// What a soak run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Messages relay A took custody of.
    pub accepted: u64,
    /// Of them, not in the destination's inbox.
    pub lost: u64,
    /// Messages in the destination's inbox more than once.
    pub duplicates: u64,
    /// Copies that reached the destination again and that its dedup absorbed.
    pub absorbed: u64,
    /// Time from each kill of B to B taking custody again (seconds), sorted.
    pub recoveries: Vec<f64>,
    /// Wall time of the whole run (seconds).
    pub elapsed_s: f64,
}

/// Relay B's custody count since it started, or `None` while its API is not up.
async fn taken(http: &reqwest::Client, api: u16) -> Option<u64> {
    Some(crate::status(http, api).await.ok()?.total(|c| c.received))
}

/// Waits until relay B has taken custody of something since it (re)started; fails if the
/// load stopped or B took nothing for a minute.
async fn wait_custody(
    http: &reqwest::Client,
    api_b: u16,
    loader: &mut tokio::task::JoinHandle<Result<()>>,
    cycle: u32,
) -> Result<()> {
    let since = Instant::now();
    loop {
        if loader.is_finished() {
            let why = loader.await;
            bail!("the load stopped before cycle {cycle}'s custody at relay-b: {why:?}");
        }
        if taken(http, api_b).await.unwrap_or(0) > 0 {
            return Ok(());
        }
        if since.elapsed() > Duration::from_secs(60) {
            bail!("relay-b took no custody for 60 s in cycle {cycle}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run(s: Settings) -> Result<Outcome> {
    let started = Instant::now();
    let layout = crate::Layout { dest: true, ..Default::default() };
    let mut p = crate::two_relays_with(layout).await?;
    crate::wait_route(&format!("127.0.0.1:{}", p.apis[0]), "dest").await?;
    // The path's own load link is not used: each chunk dials afresh.
    drop(p.load.take());
    let http = reqwest::Client::new();
    let (api_b, dest_api) = (p.apis[1], p.apis[2]);
    let creds = p.dep.issue("soak-load", Role::Command)?;

    // The load: chunks until told to stop; `next` is the first number not yet handed over.
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(1));
    let mut loader = {
        let (stop, next, clock, at) = (stop.clone(), next.clone(), p.clock, p.a_clients);
        tokio::spawn(async move {
            let (origin, to) = (NodeId::new("soak-load")?, NodeId::new("dest")?);
            while !stop.load(Ordering::Relaxed) {
                let link = peer::dial(&creds, clock, "relay-a", at).await?;
                let first = next.load(Ordering::Relaxed);
                let spec = peer::LoadSpec {
                    first,
                    pace: Some(s.pace),
                    ..peer::LoadSpec::routine(s.chunk, s.size, 256)
                };
                peer::load(link, origin.clone(), to.clone(), spec, clock).await?;
                next.store(first + s.chunk, Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    };

    // B was started last (`two_relays_with`), and is again after each restart.
    let mut b_child = p.dep.children.len() - 1;
    let b_config = p.dep.dir().join("relay-b.toml");
    let (mut recoveries, mut killed_at) = (Vec::new(), None::<Instant>);
    for cycle in 1..=s.cycles {
        // B is forwarding: it has taken custody of something since it started.
        wait_custody(&http, api_b, &mut loader, cycle).await?;
        if let Some(killed) = killed_at.take() {
            recoveries.push(killed.elapsed().as_secs_f64());
        }
        killed_at = Some(Instant::now());
        b_child = p.dep.restart(b_child, &b_config)?;
        if cycle % 10 == 0 || cycle == s.cycles {
            eprintln!(
                "  cycle {cycle}: {} messages handed over, {:.0} s",
                next.load(Ordering::Relaxed) - 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    // The last restart: B forwarding again.
    wait_custody(&http, api_b, &mut loader, s.cycles + 1).await?;
    if let Some(killed) = killed_at {
        recoveries.push(killed.elapsed().as_secs_f64());
    }
    stop.store(true, Ordering::Relaxed);
    // The chunk in flight ends once A has taken it all (or fails, and so does the run).
    let chunk_s = s.chunk as f64 * s.pace.as_secs_f64();
    let load_left = Duration::from_secs_f64(chunk_s + 120.0);
    tokio::time::timeout(load_left, loader)
        .await
        .context("the load did not finish its last chunk")?
        .context("the load task")??;
    let accepted = next.load(Ordering::Relaxed) - 1;

    let (_, n) = wait_delivered(&http, dest_api, accepted, Duration::from_secs(180)).await?;
    if n < accepted {
        eprintln!("  {n} of {accepted} delivered after 180 s");
    }
    let t = tally(&http, dest_api, accepted).await?;
    recoveries.sort_by(f64::total_cmp);
    Ok(Outcome {
        accepted,
        lost: t.lost,
        duplicates: t.duplicates,
        absorbed: t.absorbed,
        recoveries,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}
