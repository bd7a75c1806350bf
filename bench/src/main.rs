//! `relaymesh-bench`: measures relaymesh on this machine, with real processes on loopback.
//!
//! * `throughput`: messages per second through two relays (A and B, separate `relaymesh run`
//!   processes with redb stores and fsync), custody at every hop. A load node dials A and a sink
//!   node dials B; both run in this process over real UDP and speak the relay protocol, so the
//!   client is not the bottleneck.
//! * `latency`: the same path at a fixed rate; p50, p99 and max from submission to delivery.
//! * `held`: a million messages held by a relay: its memory, and the time from starting it to
//!   forwarding again.
//! * `outage`: messages sent while the A -> B link is cut (B reaches A through a cuttable UDP
//!   proxy in this process): a clean cut, a silent drop, and A killed with SIGKILL during the
//!   cut; lost and duplicated as a real destination node's inbox sees them, and the time from
//!   the link's return to the last delivery. See `outage.rs`.
//! * `soak`: relay B killed with SIGKILL and restarted on its store again and again (100 times
//!   by default) while a paced load flows load -> A -> B -> dest; lost and duplicated as the
//!   destination's inbox sees them. See `soak.rs`.
//! * `precedence`: FLASH latency over a throttled link (A in a network namespace behind a veth
//!   pair with a `tbf` token bucket), idle and under saturating ROUTINE. Needs root. See
//!   `precedence.rs`.
//!
//! Every figure is printed as a JSON line too, for the comparison script (`bench/compare`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use relaymesh::api_model::StatusDoc;
use relaymesh::core::{Address, CoreConfig, NodeId, Precedence, Role, Submission, TrafficStatus};
use relaymesh::shell::clock::Clock;
use relaymesh::shell::tls::Credentials;
use relaymesh::shell::trust::pki_trust;
use relaymesh_testkit::{Pki, Tool, UdpProxy, free_tcp_port, free_udp_port};
use serde_json::json;

mod outage;
mod peer;
mod precedence;
mod soak;
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
#[command(name = "relaymesh-bench", about = "Benchmarks relaymesh with real processes on loopback")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// The newest compact dialect the relays announce (`[wire] compact_dialect`, 1 to 3;
    /// default: the newest), to measure one dialect against another on the same build.
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..=3))]
    compact_dialect: Option<u32>,
}

/// `--compact-dialect`, for every pair of relays the run starts.
static COMPACT_DIALECT: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Messages per second through two durable relays.
    Throughput {
        #[arg(long, default_value_t = 200_000)]
        messages: usize,
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Runs; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Offers the load source keeps unanswered.
        #[arg(long, default_value_t = 2048)]
        window: u64,
        /// The relays' store page cache (`[store] cache`; the default is 16MiB).
        #[arg(long)]
        cache: Option<String>,
    },
    /// Latency through two durable relays at a fixed rate.
    Latency {
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 256)]
        size: usize,
    },
    /// The relay core alone, without network: microseconds per message.
    Core {
        #[arg(long, default_value_t = 200_000)]
        messages: usize,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Messages sent while the A -> B link is cut: lost, duplicated, and the time from the
    /// link's return to the last delivery.
    Outage {
        /// Cut modes to run (default: all three).
        #[arg(long, value_enum)]
        mode: Vec<outage::Mode>,
        #[arg(long, default_value_t = 7000)]
        messages: u64,
        /// Messages sent while the link is cut.
        #[arg(long, default_value_t = 5000)]
        during: u64,
        /// How long the link stays cut (seconds).
        #[arg(long, default_value_t = 10.0)]
        cut_seconds: f64,
        #[arg(long, default_value_t = 256)]
        size: usize,
    },
    /// Relay B killed with SIGKILL and restarted, `--cycles` times, under a steady load
    /// through A -> B -> dest: lost and duplicated.
    Soak {
        #[arg(long, default_value_t = 100)]
        cycles: u32,
        /// Messages the load source offers on one link before dialling again.
        #[arg(long, default_value_t = 500)]
        chunk: u64,
        /// Messages offered per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 256)]
        size: usize,
    },
    /// FLASH latency on a throttled link (tc tbf on a veth pair), idle and under saturating
    /// ROUTINE load. Needs root (network namespaces).
    Precedence {
        /// The link's rate in kbit/s.
        #[arg(long, default_value_t = 20_000)]
        link_kbit: u64,
        /// tbf burst (tc syntax).
        #[arg(long, default_value = "16kb")]
        burst: String,
        /// tbf queue limit as latency (tc syntax).
        #[arg(long, default_value = "50ms")]
        latency: String,
        /// Seconds of FLASH traffic (one every 100 ms), idle and then under load.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// ROUTINE messages offered per second (default: 1.5 times what the link carries).
        #[arg(long)]
        routine_rate: Option<u64>,
        /// The relays' congestion controller on the link (`known-rate` paces just under the
        /// link's rate; `cubic` fills the queue).
        #[arg(long, default_value = "known-rate")]
        congestion: String,
        /// Share of the link's rate bulk is paced to with `known-rate` (default: the relays'
        /// default, 0.98).
        #[arg(long)]
        pace: Option<f64>,
    },
    /// A relay holding many messages: memory, and time from start to forwarding.
    Held {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, default_value_t = 256)]
        size: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(n) = cli.compact_dialect {
        let _ = COMPACT_DIALECT.set(n);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match cli.command {
        Cmd::Throughput { messages, size, runs, window, cache } => {
            let mut rates = Vec::new();
            for run in 0..runs {
                let r = rt.block_on(throughput(messages, size, window, cache.clone()))?;
                eprintln!("run {}: {r:.0} msg/s", run + 1);
                rates.push(r);
            }
            rates.sort_by(f64::total_cmp);
            let median = rates[rates.len() / 2];
            println!(
                "throughput: median {median:.0} msg/s over {runs} runs of {messages} x {size} B"
            );
            println!(
                "{}",
                json!({"bench": "throughput", "msgs_per_s": median, "runs": rates, "messages": messages, "size": size})
            );
        }
        Cmd::Latency { rate, seconds, size } => {
            let (p50, p99, max, n, (stalls, stall_max)) =
                rt.block_on(latency(rate, seconds, size))?;
            let stalled = match stalls {
                0 => "the relays logged no commit of 50 ms or more".to_string(),
                n => format!(
                    "the relays logged {n} commits of 50 ms or more, the longest {stall_max} ms"
                ),
            };
            println!(
                "latency at {rate} msg/s for {seconds} s ({n} messages): p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms; {stalled}"
            );
            println!(
                "{}",
                json!({"bench": "latency", "rate": rate, "p50_ms": p50, "p99_ms": p99, "max_ms": max, "messages": n, "disk_stalls": stalls, "disk_stall_max_ms": stall_max})
            );
        }
        Cmd::Core { messages, batch } => {
            let mem = core_relay_cost(messages, batch, false, false)?;
            let disk = core_relay_cost(messages, batch, true, false)?;
            let through = core_relay_cost(messages, batch, true, true)?;
            println!(
                "relay core, batches of {batch}: {mem:.2} us/msg in memory; on redb {disk:.2} us/msg when the next hop answers after the commit, {through:.2} us/msg when it answers before"
            );
            println!(
                "{}",
                json!({"bench": "core", "us_per_msg_memory": mem, "us_per_msg_redb": disk, "us_per_msg_redb_cut_through": through, "batch": batch})
            );
        }
        Cmd::Outage { mode, messages, during, cut_seconds, size } => {
            let modes = if mode.is_empty() {
                vec![outage::Mode::Clean, outage::Mode::Drop, outage::Mode::Kill]
            } else {
                mode
            };
            for m in modes {
                let cut = Duration::from_secs_f64(cut_seconds);
                let r = rt.block_on(outage::run(m, messages, during, size, cut))?;
                println!(
                    "outage ({}): {messages} messages, {during} during a {:.1} s cut: {} lost, {} duplicated ({} copies absorbed by the destination's dedup), backlog delivered {:.3} s after the link returned",
                    m.name(),
                    r.cut_s,
                    r.lost,
                    r.duplicates,
                    r.absorbed,
                    r.backlog_s
                );
                println!(
                    "{}",
                    json!({"bench": "outage", "mode": m.name(), "messages": messages, "during_cut": during, "cut_s": r.cut_s, "lost": r.lost, "duplicates": r.duplicates, "absorbed_duplicates": r.absorbed, "backlog_s": r.backlog_s})
                );
            }
        }
        Cmd::Soak { cycles, chunk, rate, size } => {
            let pace = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
            let r = rt.block_on(soak::run(soak::Settings { cycles, chunk, pace, size }))?;
            let median = r.recoveries.get(r.recoveries.len() / 2).copied().unwrap_or(0.0);
            let max = r.recoveries.last().copied().unwrap_or(0.0);
            println!(
                "soak: {cycles} kill -9 cycles of relay-b in {:.0} s, {} messages accepted at about {rate}/s: {} lost, {} duplicated ({} copies absorbed by the destination's dedup); from kill to custody again median {median:.3} s, max {max:.3} s",
                r.elapsed_s, r.accepted, r.lost, r.duplicates, r.absorbed
            );
            println!(
                "{}",
                json!({"bench": "soak", "cycles": cycles, "rate": rate, "accepted": r.accepted, "lost": r.lost, "duplicates": r.duplicates, "absorbed_duplicates": r.absorbed, "recovery_median_s": median, "recovery_max_s": max, "elapsed_s": r.elapsed_s})
            );
            if r.lost > 0 || r.duplicates > 0 {
                bail!("{} lost and {} duplicated", r.lost, r.duplicates);
            }
        }
        Cmd::Precedence {
            link_kbit,
            burst,
            latency,
            seconds,
            size,
            routine_rate,
            congestion,
            pace,
        } => {
            // About 330 bytes on the wire per 256-byte message.
            let capacity = link_kbit * 1000 / 8 / (size as u64 + 74).max(1);
            let routine_rate = routine_rate.unwrap_or(capacity * 3 / 2);
            let settings = precedence::Settings {
                link_kbit,
                burst,
                latency,
                seconds,
                size,
                routine_rate,
                congestion: congestion.clone(),
                pace,
            };
            let r = rt.block_on(precedence::run(&settings))?;
            println!(
                "precedence on a {link_kbit} kbit/s link ({congestion}), ROUTINE offered at {routine_rate}/s: FLASH idle p50 {:.3} ms p99 {:.3} ms; under load p50 {:.3} ms p99 {:.3} ms max {:.3} ms ({} FLASH); ROUTINE delivered {:.0}/s; on the link per message {:.0} B forward, {:.0} B back, payload {:.1}% of the forward bytes",
                r.idle_p50,
                r.idle_p99,
                r.load_p50,
                r.load_p99,
                r.load_max,
                r.flashes,
                r.routine_per_s,
                r.forward_bytes_per_msg,
                r.reverse_bytes_per_msg,
                r.payload_efficiency * 100.0
            );
            println!(
                "{}",
                json!({"bench": "precedence", "link_kbit": link_kbit, "congestion": congestion, "routine_offered_per_s": routine_rate, "flash_idle_p50_ms": r.idle_p50, "flash_idle_p99_ms": r.idle_p99, "flash_p50_ms": r.load_p50, "flash_p99_ms": r.load_p99, "flash_max_ms": r.load_max, "flashes": r.flashes, "routine_msgs_per_s": r.routine_per_s, "forward_bytes_per_msg": r.forward_bytes_per_msg, "reverse_bytes_per_msg": r.reverse_bytes_per_msg, "payload_efficiency": r.payload_efficiency})
            );
        }
        Cmd::Held { messages, size } => {
            let r = rt.block_on(held(messages, size))?;
            println!(
                "held {messages} x {size} B: filled in {:.1} s, store {:.0} MiB; start to first forward {:.3} s; RSS {:.1} MiB (peak {:.1} MiB)",
                r.fill_s, r.store_mib, r.restart_s, r.rss_mib, r.peak_mib
            );
            println!(
                "{}",
                json!({"bench": "held", "messages": messages, "fill_s": r.fill_s, "store_mib": r.store_mib, "restart_to_forward_s": r.restart_s, "rss_mib": r.rss_mib, "peak_rss_mib": r.peak_mib})
            );
        }
    }
    Ok(())
}

/// The `relaymesh` binary next to this one (built by `cargo build --release --workspace`).
fn relay_binary() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("relaymesh");
    if !bin.exists() {
        bail!("{} not found: build it first (cargo build --release --workspace)", bin.display());
    }
    Ok(bin)
}

/// A PKI and data directories in a temporary directory.
struct Deployment {
    pki: Pki,
    children: Vec<Child>,
    /// TOML appended to every relay configuration.
    extra: String,
}

impl Deployment {
    fn new() -> Result<Deployment> {
        let pki = Pki::new("relaymesh-bench", Tool::Library { days: 30 })?;
        Ok(Deployment { pki, children: Vec::new(), extra: String::new() })
    }

    /// The temporary directory.
    fn dir(&self) -> &Path {
        self.pki.root()
    }

    fn pki(&self) -> PathBuf {
        self.pki.pki_dir()
    }

    fn issue(&self, id: &str, role: Role) -> Result<Credentials> {
        self.pki.issue_credentials(id, role)
    }

    /// Writes a node configuration; `peers` are (node, port) this node dials over `public`.
    fn config(&self, id: &str, role: &str, port: u16, api: u16, peers: &[(&str, u16)]) -> PathBuf {
        let peers: Vec<_> =
            peers.iter().map(|(p, port)| (*p, format!("127.0.0.1:{port}"))).collect();
        self.config_at(
            id,
            role,
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{api}"),
            &peers,
            "",
        )
    }

    /// [`Deployment::config`] with full addresses, and more TOML for this node alone.
    fn config_at(
        &self,
        id: &str,
        role: &str,
        listen: &str,
        api: &str,
        peers: &[(&str, String)],
        extra: &str,
    ) -> PathBuf {
        let pki = self.pki();
        let mut t = format!(
            "node = \"{id}\"\nrole = \"{role}\"\ndata_dir = \"data/{id}\"\nca = \"{p}/ca.crt\"\ncert = \"{p}/{id}.crt\"\n\
             key = \"{p}/{id}.key\"\napi = \"{api}\"\n{extra}\n[[listen]]\naddr = \"{listen}\"\nmedium = \"public\"\n",
            p = pki.display()
        );
        for (peer, addr) in peers {
            t.push_str(&format!(
                "\n[[peer]]\nnode = \"{peer}\"\naddr = \"{addr}\"\nmedium = \"public\"\n"
            ));
        }
        t.push('\n');
        t.push_str(&self.extra);
        let path = self.dir().join(format!("{id}.toml"));
        let _ = std::fs::write(&path, t);
        path
    }

    /// Kills the relay `children[index]` with SIGKILL and starts it again on `config` (its
    /// store kept); returns its new index.
    fn restart(&mut self, index: usize, config: &Path) -> Result<usize> {
        let mut child = self.children.remove(index);
        let killed = child.kill(); // SIGKILL
        let _ = child.wait();
        killed.with_context(|| format!("killing the relay of {}", config.display()))?;
        self.spawn(config)?;
        Ok(self.children.len() - 1)
    }

    fn spawn(&mut self, config: &Path) -> Result<u32> {
        self.spawn_in(config, None)
    }

    /// Starts `relaymesh run` on `config`, inside network namespace `netns` when given.
    fn spawn_in(&mut self, config: &Path, netns: Option<&str>) -> Result<u32> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.with_extension("log"))?;
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(relay_binary()?);
                c
            }
            None => Command::new(relay_binary()?),
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", std::env::var("RELAY_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("RELAYMESH_BENCH_KEEP").is_some() {
            eprintln!("kept {}", self.pki.keep().display());
        }
    }
}

fn submission(size: usize, receipt: bool) -> Submission {
    Submission {
        to: Address::Node(NodeId::new("sink").unwrap_or_else(|_| unreachable!("a valid id"))),
        precedence: Precedence::Routine,
        lifetime: Duration::from_secs(3600),
        content_type: "application/octet-stream".into(),
        payload: Bytes::from(vec![0x42; size]),
        receipt,
        status: TrafficStatus::Actual,
        key: None,
        replaces: None,
    }
}

/// Two relay processes, with a protocol-level load source dialling A and sink dialled by B.
struct Path2 {
    dep: Deployment,
    apis: [u16; 3],
    load: Option<peer::RawLink>,
    ages: mpsc::UnboundedReceiver<peer::Delivery>,
    clock: Clock,
    /// A's configuration, to start it again.
    a_config: PathBuf,
    /// A's process in `dep.children`.
    a_child: usize,
    /// Where load sources dial A (A's address on the unthrottled pair, if in a namespace).
    a_clients: std::net::SocketAddr,
    /// The proxy B reaches A through, if any.
    proxy: Option<UdpProxy>,
    /// The namespace A runs in, if any (deleted after the relays stop).
    netns: Option<precedence::Netns>,
}

impl Path2 {
    /// The namespace A runs in, if any.
    fn netns(&self) -> Option<&precedence::Netns> {
        self.netns.as_ref()
    }
}

/// How [`two_relays`] lays out A and B.
#[derive(Debug, Default)]
struct Layout {
    /// The relays' store page cache.
    cache: Option<String>,
    /// B reaches A through a cuttable UDP proxy in this process.
    proxy: bool,
    /// A runs in this network namespace, reached over its veth pair.
    netns: Option<precedence::Netns>,
    /// TOML added to both relays' configurations.
    extra: String,
    /// TOML added to relay A's only (the sender on the throttled link).
    a_extra: String,
    /// B also links to a real destination node, `dest` (a township with a durable inbox
    /// and dedup), whose API port is `Path2::apis[2]`.
    dest: bool,
}

impl Path2 {
    /// A new load source dialling A, as node `id` (issued as a command node).
    async fn dial_a(&self, id: &str) -> Result<peer::RawLink> {
        let creds = self.dep.issue(id, Role::Command)?;
        peer::dial(&creds, self.clock, "relay-a", self.a_clients).await
    }
}

const API_TOKEN: &str = "relaymesh-bench";

/// Waits until the API on `port` answers.
async fn wait_api(port: u16) -> Result<()> {
    let http = reqwest::Client::new();
    let start = Instant::now();
    while http.get(format!("http://127.0.0.1:{port}/v1/status")).send().await.is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("no API on port {port} in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn wait_route(api: &str, to: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        let req = http.get(format!("http://{api}/v1/status")).bearer_auth(API_TOKEN);
        if let Ok(r) = req.send().await
            && let Ok(s) = r.json::<StatusDoc>().await
            && s.has_route(to)
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("relay-a found no route to {to} in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn two_relays(cache: Option<String>) -> Result<Path2> {
    two_relays_with(Layout { cache, ..Layout::default() }).await
}

async fn two_relays_with(layout: Layout) -> Result<Path2> {
    let mut dep = Deployment::new()?;
    dep.extra = layout.cache.map(|c| format!("[store]\ncache = \"{c}\"\n")).unwrap_or_default();
    dep.extra.push_str(&layout.extra);
    if let Some(n) = COMPACT_DIALECT.get() {
        dep.extra.push_str(&format!("[wire]\ncompact_dialect = {n}\n"));
    }
    dep.issue("relay-a", Role::Relay)?;
    dep.issue("relay-b", Role::Relay)?;
    let load_creds = dep.issue("load", Role::Command)?;
    let sink_creds = dep.issue("sink", Role::Township)?;
    let clock = Clock::wall();
    let (sink_ep, sink_addr) =
        relaymesh_testkit::listen(&sink_creds, clock, "127.0.0.1:0".parse()?).await?;
    let (pa, pb) = (free_udp_port()?, free_udp_port()?);
    let (api_a, api_b) = (free_tcp_port()?, free_tcp_port()?);
    let (pd, api_d) = (free_udp_port()?, free_tcp_port()?);
    let mut b_peers = vec![("sink", sink_addr.to_string())];
    if layout.dest {
        dep.issue("dest", Role::Township)?;
        let d = dep.config("dest", "township", pd, api_d, &[]);
        dep.spawn(&d)?;
        b_peers.push(("dest", format!("127.0.0.1:{pd}")));
    }
    // A listens on loopback, or on its side of the veth pair in its namespace (where its API
    // is not on loopback and so needs a token).
    let a_host = layout.netns.as_ref().map_or("127.0.0.1".to_string(), |n| n.inner_ip.clone());
    let a_addr: std::net::SocketAddr = format!("{a_host}:{pa}").parse()?;
    let a_api = format!("{a_host}:{api_a}");
    let mut a_extra = if layout.netns.is_some() {
        format!("api_token = \"{API_TOKEN}\"\n")
    } else {
        String::new()
    };
    a_extra.push_str(&layout.a_extra);
    // In a namespace A listens on both pairs: B dials the throttled one, the load sources the
    // other.
    let a_listen =
        if layout.netns.is_some() { format!("0.0.0.0:{pa}") } else { a_addr.to_string() };
    let a_clients: std::net::SocketAddr = match &layout.netns {
        Some(n) => format!("{}:{pa}", n.client_ip).parse()?,
        None => a_addr,
    };
    let a = dep.config_at("relay-a", "relay", &a_listen, &a_api, &[], &a_extra);
    let proxy = if layout.proxy { Some(UdpProxy::start(a_addr)?) } else { None };
    let b_to_a = proxy.as_ref().map_or(a_addr.to_string(), |p| format!("127.0.0.1:{}", p.port));
    b_peers.insert(0, ("relay-a", b_to_a));
    // B dials A from its listening socket: over the veth pair that is not loopback.
    let b_host = if layout.netns.is_some() { "0.0.0.0" } else { "127.0.0.1" };
    let b = dep.config_at(
        "relay-b",
        "relay",
        &format!("{b_host}:{pb}"),
        &format!("127.0.0.1:{api_b}"),
        &b_peers,
        "",
    );
    let a_child = dep.children.len();
    dep.spawn_in(&a, layout.netns.as_ref().map(|n| n.name.as_str()))?;
    dep.spawn(&b)?;
    let sink_link = peer::accept(sink_ep, &sink_creds).await.context("relay-b -> sink")?;
    sink_link.send_control(&[peer::sink_advert(&sink_link, &sink_creds, "relay-b")?]).await?;
    let (tx, ages) = mpsc::unbounded_channel();
    tokio::spawn(peer::sink(sink_link, clock, tx));
    wait_route(&a_api, "sink").await?;
    let load = peer::dial(&load_creds, clock, "relay-a", a_clients).await?;
    Ok(Path2 {
        dep,
        apis: [api_a, api_b, api_d],
        load: Some(load),
        ages,
        clock,
        a_config: a,
        a_child,
        a_clients,
        proxy,
        netns: layout.netns,
    })
}

async fn throughput(
    messages: usize,
    size: usize,
    window: u64,
    cache: Option<String>,
) -> Result<f64> {
    let mut p = two_relays(cache).await?;
    let link = p.load.take().context("load link")?;
    let (origin, to) = (NodeId::new("load")?, NodeId::new("sink")?);
    let spec = peer::LoadSpec::routine(messages as u64, size, window);
    let signed = peer::presign(&link.trust, &origin, &to, spec, p.clock);
    let start = Instant::now();
    let loader = tokio::spawn(peer::load_signed(link, origin, to, spec, p.clock, Some(signed)));
    for i in 0..messages {
        if tokio::time::timeout(Duration::from_secs(60), p.ages.recv())
            .await
            .ok()
            .flatten()
            .is_none()
        {
            bail!("stalled after {i} of {messages} deliveries");
        }
    }
    let elapsed = start.elapsed();
    loader.await??;
    let http = reqwest::Client::new();
    for (name, api) in ["relay-a", "relay-b"].iter().zip(p.apis) {
        let s = status(&http, api).await?;
        eprintln!(
            "  {name}: store {} commits, {} rows written, {} cancelled",
            s.store.commits, s.store.rows_written, s.store.rows_cancelled
        );
    }
    Ok(messages as f64 / elapsed.as_secs_f64())
}

/// What the relays' logs say of their store's commits that took `SLOW_COMMIT` or more (each
/// relay logs them: "store commit took N ms"): how many, and the longest in ms.
fn disk_stalls(dir: &Path) -> (usize, u64) {
    let mut stalls = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log")
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            stalls.extend(text.lines().filter_map(|l| {
                let rest = l.split(relaymesh::shell::driver::SLOW_COMMIT_LOG).nth(1)?;
                rest.split(" ms").next()?.trim().parse::<u64>().ok()
            }));
        }
    }
    (stalls.len(), stalls.iter().copied().max().unwrap_or(0))
}

/// p50, p99 and max in ms, the messages measured, and the disk stalls the relays logged.
async fn latency(
    rate: u64,
    seconds: u64,
    size: usize,
) -> Result<(f64, f64, f64, usize, (usize, u64))> {
    let mut p = two_relays(None).await?;
    let link = p.load.take().context("load link")?;
    let total = rate * seconds;
    let (origin, to) = (NodeId::new("load")?, NodeId::new("sink")?);
    let pace = Duration::from_secs_f64(1.0 / rate as f64);
    let spec = peer::LoadSpec { pace: Some(pace), ..peer::LoadSpec::routine(total, size, 16_384) };
    let loader = tokio::spawn(peer::load(link, origin, to, spec, p.clock));
    let mut lat = Vec::with_capacity(total as usize);
    while (lat.len() as u64) < total {
        match tokio::time::timeout(Duration::from_secs(30), p.ages.recv()).await {
            Ok(Some(d)) => lat.push(d.age_us as f64 / 1000.0),
            _ => bail!("stalled after {} of {total} deliveries", lat.len()),
        }
    }
    loader.await??;
    lat.sort_by(f64::total_cmp);
    let stalls = disk_stalls(p.dep.dir());
    Ok((quantile(&lat, 0.5), quantile(&lat, 0.99), *lat.last().unwrap_or(&0.0), lat.len(), stalls))
}

/// The `f` quantile of sorted `v` (nearest rank); 0 when empty.
fn quantile(v: &[f64], f: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((f * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

struct Held {
    fill_s: f64,
    store_mib: f64,
    restart_s: f64,
    rss_mib: f64,
    peak_mib: f64,
}

fn proc_kib(pid: u32, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn held(messages: usize, size: usize) -> Result<Held> {
    let mut dep = Deployment::new()?;
    let creds = dep.issue("relay-a", Role::Relay)?;
    dep.issue("sink", Role::Township)?;
    // Fill relay-a's store with messages for a node that is not there, as the relay itself
    // would: through its core, in committed batches, sealed with relay-a's key (unsealed,
    // the next hop would refuse every one of them).
    let data = dep.dir().join("data/relay-a");
    std::fs::create_dir_all(&data)?;
    let fill = Instant::now();
    {
        let store =
            relaymesh::shell::redb_store::RedbStore::open(&data.join("store.redb"), 64 << 20)?;
        let mut cfg = CoreConfig::new(NodeId::new("relay-a")?, Role::Relay);
        cfg.limits.max_bytes = 64 << 30;
        let clock = Clock::wall();
        cfg.trust = Some(std::sync::Arc::new(pki_trust(&creds, clock)?));
        let mut node = relaymesh::core::Node::open(cfg, Box::new(store), 1, clock.now())?;
        for i in 0..messages {
            node.handle_submit(clock.now(), submission(size, false))
                .map_err(|e| anyhow::anyhow!("submit {i}: {e}"))?;
            if i % 20_000 == 19_999 {
                node.commit(clock.now())?;
            }
        }
        node.commit(clock.now())?;
    }
    let fill_s = fill.elapsed().as_secs_f64();
    let store_mib = std::fs::metadata(data.join("store.redb"))?.len() as f64 / (1 << 20) as f64;
    // The sink listens; relay-a starts and dials it.
    let (pa, ps) = (free_udp_port()?, free_udp_port()?);
    let (api_a, api_s) = (free_tcp_port()?, free_tcp_port()?);
    let sink = dep.config("sink", "township", ps, api_s, &[]);
    dep.spawn(&sink)?;
    let http = reqwest::Client::new();
    let a = dep.config("relay-a", "relay", pa, api_a, &[("sink", ps)]);
    let started = Instant::now();
    let pid = dep.spawn(&a)?;
    let restart_s = loop {
        let next = inbox_next(&http, api_s).await;
        if next > 0 {
            break started.elapsed().as_secs_f64();
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("nothing forwarded within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Memory once it is forwarding the backlog.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_mib = proc_kib(pid, "VmRSS:").unwrap_or(0.0) / 1024.0;
    let peak_mib = proc_kib(pid, "VmHWM:").unwrap_or(0.0) / 1024.0;
    Ok(Held { fill_s, store_mib, restart_s, rss_mib, peak_mib })
}

/// `GET /v1/status` of the node whose API is on loopback port `api`.
async fn status(http: &reqwest::Client, api: u16) -> Result<StatusDoc> {
    let url = format!("http://127.0.0.1:{api}/v1/status");
    Ok(http.get(url).send().await?.json().await?)
}

/// The sink's next inbox cursor, read over its API (0 until something arrives).
async fn inbox_next(http: &reqwest::Client, api: u16) -> u64 {
    status(http, api).await.map_or(0, |s| s.inbox.next)
}

/// Plays the next hop: accepts every offer the node sent.
fn accept_offers(
    node: &mut relaymesh::core::Node,
    answers: &mut Vec<relaymesh::core::frame::CustodyResult>,
) {
    use relaymesh::core::frame::{CustodyCode, CustodyResult, Frame};
    while let Some(tx) = node.poll_transmit() {
        if let Frame::Offer { offer, envelope } = tx.frame {
            answers.push(CustodyResult {
                offer,
                id: envelope.id,
                code: CustodyCode::Accepted,
                reason: String::new(),
            });
        }
    }
}

/// Drives one relay core without any network: offers in, forwarded, answered. Returns
/// microseconds per message.
pub fn core_relay_cost(
    messages: usize,
    batch: usize,
    on_disk: bool,
    early_answers: bool,
) -> Result<f64> {
    use relaymesh::core::frame::Frame;
    use relaymesh::core::{LinkId, LinkInfo, Node};
    let dir = tempfile::tempdir()?;
    let store: Box<dyn relaymesh::core::store::Store> = if on_disk {
        Box::new(relaymesh::shell::redb_store::RedbStore::open(
            &dir.path().join("s.redb"),
            64 << 20,
        )?)
    } else {
        Box::new(relaymesh::core::store::MemStore::new())
    };
    let mut cfg = CoreConfig::new(NodeId::new("relay")?, Role::Relay);
    cfg.limits.max_bytes = 64 << 30;
    let mut t = relaymesh::core::Time(1_000_000);
    let mut node = Node::open(cfg, store, 1, t)?;
    let (up, down) = (LinkId(1), LinkId(2));
    #[allow(clippy::expect_used)] // "load" and "sink" are valid node ids
    let info = |p: &str, prober| LinkInfo {
        peer: NodeId::new(p).expect("id"),
        role: Role::Relay,
        medium: relaymesh::core::Medium::Public,
        prober,
        certificate: Default::default(),
        compact: false,
        lean_adverts: false,
    };
    node.handle_link_up(t, up, info("load", false));
    node.handle_link_up(t, down, info("sink", true));
    node.commit(t)?;
    while node.poll_transmit().is_some() {}
    let payload = Bytes::from(vec![0x42; 256]);
    let (load, sink) = (NodeId::new("load")?, NodeId::new("sink")?);
    let start = Instant::now();
    let mut n = 0u64;
    while (n as usize) < messages {
        t = t + Duration::from_micros(100);
        for _ in 0..batch {
            n += 1;
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&n.to_be_bytes());
            let env = relaymesh::core::Envelope {
                id: relaymesh::core::MessageId(id),
                origin: load.clone(),
                to: Address::Node(sink.clone()),
                precedence: Precedence::Routine,
                lifetime: Duration::from_secs(3600),
                content_type: "application/octet-stream".into(),
                payload: payload.clone(),
                receipt: false,
                body: relaymesh::core::types::Body::Data,
                status: TrafficStatus::Actual,
                created: t,
                age: Duration::ZERO,
                hop_count: 0,
                destinations: vec![sink.clone()],
                signature: Bytes::new(),
                key: None,
                supersedes: None,
            };
            node.handle_frame(t, up, Frame::Offer { offer: n, envelope: env });
        }
        node.schedule(t);
        let mut answers = Vec::new();
        accept_offers(&mut node, &mut answers);
        if early_answers {
            // The next hop answers before this node commits: cut-through custody.
            node.handle_frame(t, down, Frame::Custody(std::mem::take(&mut answers)));
        }
        node.commit(t)?;
        accept_offers(&mut node, &mut answers);
        node.handle_frame(t, down, Frame::Custody(answers));
        node.commit(t)?;
        while node.poll_transmit().is_some() {}
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / messages as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaymesh::shell::driver::SLOW_COMMIT_LOG;

    #[test]
    fn disk_stalls_are_read_from_every_relay_log_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("relay-a.log"),
            format!(
                "2026-12-05T07:00:00Z  WARN relay{{node=relay-a}}: {SLOW_COMMIT_LOG} 73 ms (in \
                 the background; forwarding went on)\n\
                 2026-12-05T07:00:01Z  WARN relay{{node=relay-a}}: link to relay-b lost\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("relay-b.log"),
            format!("2026-12-05T07:00:02Z  WARN relay{{node=relay-b}}: {SLOW_COMMIT_LOG} 312 ms\n"),
        )
        .unwrap();
        // Not a log: a configuration that happens to contain the words.
        std::fs::write(dir.path().join("relay-c.toml"), "# store commit took 999 ms\n").unwrap();
        assert_eq!(disk_stalls(dir.path()), (2, 312));
        assert_eq!(disk_stalls(&dir.path().join("missing")), (0, 0));
    }

    #[test]
    fn the_token_buckets_sent_bytes_are_read_from_tcs_statistics() {
        use crate::precedence::tbf_sent_bytes;
        let stats = "qdisc tbf 8004: root refcnt 3 rate 20Mbit burst 16Kb lat 50ms \n \
                     Sent 7225881 bytes 5032 pkt (dropped 3, overlimits 912 requeues 0) \n \
                     backlog 0b 0p requeues 0\n";
        assert_eq!(tbf_sent_bytes(stats), Some(7_225_881));
        assert_eq!(tbf_sent_bytes("qdisc noqueue 0: root refcnt 2\n"), None);
        assert_eq!(tbf_sent_bytes(" Sent many bytes"), None);
        assert_eq!(tbf_sent_bytes(" Sent 12 packets"), None);
    }
}
