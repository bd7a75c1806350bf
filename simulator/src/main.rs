//! `relaymesh-sim`: rehearse failures and size links on a virtual network.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use relaymesh_sim::scenario::{self, BUILT_IN};

mod sweep;

#[derive(Parser, Debug)]
#[command(
    name = "relaymesh-sim",
    version,
    about = "Runs real relaymesh nodes over a virtual network in virtual time"
)]
struct Cli {
    /// Log lines (off unless RUST_LOG asks, stamped with virtual time) as text, or one JSON
    /// object per line.
    #[arg(long, global = true, env = "RELAYMESH_LOG_FORMAT", value_enum, default_value_t)]
    log_format: relaymesh::logging::LogFormat,
    /// Without a command: run the built-in county-flood scenario.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario (default: the built-in county-flood) and report.
    Run {
        /// A scenario file, or the name of a built-in scenario.
        scenario: Option<String>,
        /// Seed for every random choice (overrides the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Write report.txt, report.json and report.html here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the report as one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Every node checks its internal invariants after every commit (slower); a broken
        /// one fails the run. Always on in debug builds.
        #[arg(long)]
        check_invariants: bool,
        /// Drop every flow's latest-value key (`key = ...`): every message travels, for
        /// comparison with the keyed run.
        #[arg(long)]
        no_keys: bool,
        /// Drop every scripted event (cuts, crashes, degradations...): the same traffic on a
        /// network that never fails, for comparison.
        #[arg(long)]
        no_events: bool,
    },
    /// Run a scenario over a range of seeds, in parallel processes, every node checking its
    /// invariants; print each failing seed with the command that reproduces it (exit 1).
    Sweep {
        /// A scenario file, a built-in name, mesh:N[:idle][:D][:areas] or city:C:M[:D].
        scenario: String,
        /// The seeds: A..B (B excluded).
        #[arg(long)]
        seeds: String,
        /// Runs at once (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// List the built-in scenarios.
    List,
}

fn main() {
    std::process::exit(match Cli::try_parse() {
        Ok(cli) => match cli.command {
            None => run(None, None, None, Flags::default(), cli.log_format),
            Some(Command::List) => list(),
            Some(Command::Sweep { scenario, seeds, jobs }) => sweep::sweep(&scenario, &seeds, jobs),
            Some(Command::Run {
                scenario,
                seed,
                out,
                json,
                quiet,
                check_invariants,
                no_keys,
                no_events,
            }) => {
                let flags = Flags { json, quiet, check_invariants, no_keys, no_events };
                run(scenario, seed, out, flags, cli.log_format)
            }
        },
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() { 2 } else { 0 }
        }
    });
}

fn list() -> i32 {
    println!("{:<16} a generated mesh of N nodes (mesh:1000, say), 30 min or D", "mesh:N[:D]");
    println!(
        "{:<16} the same mesh split into areas of about 100 nodes or more (mesh:1000:30m:areas)",
        "mesh:N[:D]:areas"
    );
    println!(
        "{:<16} the same mesh at rest, for D (mesh:50:idle:40m): routing and probe traffic",
        "mesh:N:idle:D"
    );
    println!(
        "{:<16} a generated city: a centre and C counties of M nodes, each its own deployment, 30 min or D",
        "city:C:M[:D]"
    );
    let city = scenario::city_built_in();
    for (name, text) in BUILT_IN.iter().copied().chain([("city", city.as_str())]) {
        match scenario::parse(text, name) {
            Ok(s) => println!(
                "{name:<16} {} nodes, {} links, {}: {}",
                s.nodes.len(),
                s.links.len(),
                relaymesh::units::format_duration(s.duration),
                s.description
            ),
            Err(e) => println!("{name:<16} (broken: {e})"),
        }
    }
    0
}

/// The switches of `run`.
#[derive(Clone, Copy, Debug, Default)]
struct Flags {
    json: bool,
    quiet: bool,
    check_invariants: bool,
    no_keys: bool,
    no_events: bool,
}

fn run(
    name: Option<String>,
    seed: Option<u64>,
    out: Option<PathBuf>,
    flags: Flags,
    log_format: relaymesh::logging::LogFormat,
) -> i32 {
    let Flags { json, quiet, check_invariants, no_keys, no_events } = flags;
    let name = name.unwrap_or_else(|| "county-flood".into());
    let mut sc = match load(&name) {
        Ok(sc) => sc,
        Err(why) => {
            eprintln!("relaymesh-sim: {why}");
            return 2;
        }
    };
    sc.check_invariants |= check_invariants;
    if no_keys {
        if !sc.without_keys() {
            eprintln!("relaymesh-sim: --no-keys: no flow of {} has a key", sc.name);
            return 2;
        }
        sc.name.push_str(" (--no-keys)");
    }
    if no_events {
        if sc.events.is_empty() {
            eprintln!("relaymesh-sim: --no-events: {} has no scripted events", sc.name);
            return 2;
        }
        sc.events.clear();
        sc.name.push_str(" (--no-events)");
    }
    init_tracing(log_format);
    let seed = seed.unwrap_or(sc.seed);
    let show = !quiet && std::io::stderr().is_terminal();
    let total = sc.duration;
    let started = Instant::now();
    let mut last = Instant::now() - Duration::from_secs(1);
    let mut progress = |at: Duration| {
        if show && (last.elapsed() >= Duration::from_millis(100) || at >= total) {
            last = Instant::now();
            let frac = (at.as_secs_f64() / total.as_secs_f64()).min(1.0);
            let filled = (frac * 40.0) as usize;
            eprint!(
                "\r[{}{}] {:>5.1}%  virtual {}  wall {:.1}s ",
                "#".repeat(filled),
                ".".repeat(40 - filled),
                frac * 100.0,
                relaymesh::units::format_duration(at),
                started.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
    };
    let report = relaymesh_sim::run(&sc, seed, &mut progress);
    if show {
        eprintln!();
    }
    if json {
        println!("{}", report.json);
    } else {
        print!("{}", report.text);
    }
    if let Some(dir) = out {
        let written = std::fs::create_dir_all(&dir).and_then(|_| {
            std::fs::write(dir.join("report.txt"), &report.text)?;
            std::fs::write(dir.join("report.json"), format!("{:#}\n", report.json))?;
            std::fs::write(dir.join("report.html"), &report.html)
        });
        if let Err(e) = written {
            eprintln!("relaymesh-sim: {}: {e}", dir.display());
            return 1;
        }
        if !json {
            println!("report written to {}", dir.join("report.html").display());
        }
    }
    if report.failures.is_empty() {
        0
    } else {
        for f in &report.failures {
            eprintln!("relaymesh-sim: failed: {f}");
        }
        1
    }
}

/// A scenario file, a built-in scenario, or a generated mesh, parsed and checked.
pub(crate) fn load(name: &str) -> Result<scenario::Scenario, String> {
    let path = PathBuf::from(name);
    if path.exists() {
        return scenario::load(&path).map_err(|e| e.to_string());
    }
    if let Some(spec) = name.strip_prefix("mesh:") {
        let mut parts = spec.split(':');
        let n = parts.next().and_then(|n| n.parse::<usize>().ok()).filter(|n| *n >= 3);
        let (mut traffic, mut duration, mut areas, mut bad) = (true, None, false, false);
        for p in parts {
            match p {
                "idle" if traffic && duration.is_none() => traffic = false,
                "areas" if !areas => areas = true,
                d if duration.is_none() && !areas && !d.is_empty() => duration = Some(d),
                _ => bad = true,
            }
        }
        return match n {
            Some(n) if !bad => {
                scenario::parse(&scenario::mesh(n, traffic, duration.unwrap_or("30m"), areas), name)
                    .map_err(|e| e.to_string())
            }
            _ => Err(format!(
                "{name}: expected mesh:<nodes>[:idle][:<duration>][:areas], at least 3 nodes"
            )),
        };
    }
    if let Some(spec) = name.strip_prefix("city:") {
        let parts: Vec<&str> = spec.split(':').collect();
        let count = |s: Option<&&str>| s.and_then(|n| n.parse::<usize>().ok());
        return match (count(parts.first()), count(parts.get(1)), parts.len()) {
            (Some(c), Some(m), 2 | 3) if c >= 1 && m >= 3 => {
                let duration = parts.get(2).copied().unwrap_or("30m");
                scenario::parse(&scenario::city(c, m, duration, false), name)
                    .map_err(|e| e.to_string())
            }
            _ => Err(format!(
                "{name}: expected city:<counties>:<nodes per county>[:<duration>], at least 1 county of 3 nodes"
            )),
        };
    }
    match scenario::built_in(name) {
        Some(s) => s.map_err(|e| e.to_string()),
        None => Err(format!("{name}: no such file or built-in scenario (see relaymesh-sim list)")),
    }
}

/// Logs (off unless RUST_LOG asks) stamped with virtual time.
fn init_tracing(format: relaymesh::logging::LogFormat) {
    use std::sync::OnceLock;
    use tracing_subscriber::fmt::format::Writer;
    struct Virtual(OnceLock<tokio::time::Instant>);
    impl tracing_subscriber::fmt::time::FormatTime for Virtual {
        fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
            // tokio's clock inside the simulation runtime: paused, virtual. The first log line
            // comes from inside the run, so that is where the count starts.
            let start = *self.0.get_or_init(tokio::time::Instant::now);
            write!(w, "{:>12.6}s", (tokio::time::Instant::now() - start).as_secs_f64())
        }
    }
    relaymesh::logging::init(format, "error", Virtual(OnceLock::new()));
}
