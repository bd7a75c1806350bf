//! zenoh-bench-client: the zenoh side of bench/compare, with the line protocol of
//! bench/peers/peerbench.
//!
//! ```text
//! zenoh-bench-client pub URL KEY N FIRST SIZE RATE   # RATE 0: as fast as possible
//! zenoh-bench-client sub URL KEY                     # prints "seq send_ns recv_ns" per sample
//! ```
//! URL is a router endpoint (`tcp/127.0.0.1:7447`); the client runs in client mode, without
//! scouting. Payloads start with "<seq> <send unix ns> ". The subscriber prints "ready" on stderr
//! once declared, and flushes every 20 ms until SIGTERM.
//!
//! Keys ending in `/flash` are published at Zenoh's `RealTime` priority and `express` (not
//! batched), keys ending in `/routine` at `DataLow`, everything else at the default `Data`:
//! Zenoh's own QoS (`zenoh::qos::Priority`, one queue per priority on each link), as a
//! deployment that wanted urgent traffic first would set it.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use zenoh::qos::{CongestionControl, Priority};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

fn payload(seq: u64, size: usize) -> Vec<u8> {
    let mut b = format!("{seq} {} ", now_ns()).into_bytes();
    b.resize(b.len().max(size), b'x');
    b
}

async fn session(url: &str) -> Result<zenoh::Session> {
    let mut c = zenoh::Config::default();
    c.insert_json5("mode", "\"client\"")?;
    c.insert_json5("connect/endpoints", &format!("[\"{url}\"]"))?;
    c.insert_json5("scouting/multicast/enabled", "false")?;
    Ok(zenoh::open(c).await?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize| a.get(i).cloned().ok_or_else(|| format!("missing argument {i}"));
    match a.get(1).map(String::as_str) {
        Some("pub") => {
            let (url, key) = (arg(2)?, arg(3)?);
            let n: u64 = arg(4)?.parse()?;
            let first: u64 = arg(5)?.parse()?;
            let size: usize = arg(6)?.parse()?;
            let rate: f64 = arg(7)?.parse()?;
            let s = session(&url).await?;
            let (priority, express) = if key.ends_with("/flash") {
                (Priority::RealTime, true)
            } else if key.ends_with("/routine") {
                (Priority::DataLow, false)
            } else {
                (Priority::Data, false)
            };
            let p = s
                .declare_publisher(key)
                .congestion_control(CongestionControl::Block)
                .priority(priority)
                .express(express)
                .await?;
            let start = Instant::now();
            for i in 0..n {
                if rate > 0.0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                p.put(payload(first + i, size)).await?;
            }
            // Let the session drain before closing.
            tokio::time::sleep(Duration::from_millis(200)).await;
            s.close().await?;
        }
        Some("sub") => {
            let (url, key) = (arg(2)?, arg(3)?);
            let s = session(&url).await?;
            let sub = s.declare_subscriber(key).await?;
            eprintln!("ready");
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    r = sub.recv_async() => {
                        let Ok(sample) = r else { break };
                        let recv = now_ns();
                        let data = sample.payload().to_bytes();
                        let mut f = data.splitn(3, |b| *b == b' ');
                        if let (Some(seq), Some(sent)) = (f.next(), f.next()) {
                            out.write_all(seq)?;
                            out.write_all(b" ")?;
                            out.write_all(sent)?;
                            writeln!(out, " {recv}")?;
                        }
                    }
                    _ = tick.tick() => out.flush()?,
                    _ = term.recv() => break,
                }
            }
            out.flush()?;
        }
        _ => return Err("usage: zenoh-bench-client pub URL KEY N FIRST SIZE RATE | sub URL KEY".into()),
    }
    Ok(())
}
