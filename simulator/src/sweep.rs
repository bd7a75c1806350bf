//! `relaymesh-sim sweep`: one scenario over many seeds, each in a process of its own (so a
//! panic or a hang is one failed seed, not a lost sweep), every node checking its invariants.

use std::io::{IsTerminal, Write};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use serde_json::Value;

/// What one seed's run came to.
struct Outcome {
    seed: u64,
    /// Pairs counted, and lost.
    pairs: u64,
    lost: u64,
    /// Why it failed, if it did.
    failure: Option<String>,
}

fn parse_range(seeds: &str) -> Option<(u64, u64)> {
    let (a, b) = seeds.split_once("..")?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a < b).then_some((a, b))
}

fn run_seed(exe: &std::path::Path, scenario: &str, seed: u64) -> Outcome {
    let seed_arg = seed.to_string();
    let args = ["run", scenario, "--seed", &seed_arg, "--json", "--quiet", "--check-invariants"];
    let out = match Command::new(exe).args(args).output() {
        Ok(out) => out,
        Err(e) => {
            let failure = Some(format!("cannot start {}: {e}", exe.display()));
            return Outcome { seed, pairs: 0, lost: 0, failure };
        }
    };
    judge(seed, &out)
}

/// The figures a sweep sums from a report: pairs, pairs lost, and the unmet expectations. A
/// report without one is an error, not a zero: a renamed field would otherwise pass every seed
/// and count nothing.
fn figures(j: &Value) -> Result<(u64, u64, Vec<String>), String> {
    let count = |path: &[&str]| {
        let v = path.iter().fold(j, |v, k| &v[*k]);
        v.as_u64().ok_or_else(|| format!("the report has no {}", path.join(".")))
    };
    let mut pairs = 0;
    for p in ["flash", "immediate", "priority", "routine"] {
        pairs += count(&["precedence", p, "pairs"])?;
    }
    let lost = count(&["invariants", "lost"])?;
    let failures = j["expect"]["failures"]
        .as_array()
        .ok_or("the report has no expect.failures")?
        .iter()
        .map(|f| f.as_str().map_or_else(|| f.to_string(), str::to_owned))
        .collect();
    Ok((pairs, lost, failures))
}

/// What a seed's finished run came to, from its exit status and JSON report.
fn judge(seed: u64, out: &std::process::Output) -> Outcome {
    let report: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    let Some(j) = report else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        let failure = Some(format!("exit {:?}, no report: {last}", out.status.code()));
        return Outcome { seed, pairs: 0, lost: 0, failure };
    };
    let (pairs, lost, failures) = match figures(&j) {
        Ok(f) => f,
        Err(e) => {
            let failure = Some(format!("exit {:?}, {e}", out.status.code()));
            return Outcome { seed, pairs: 0, lost: 0, failure };
        }
    };
    let failure = (!out.status.success() || !failures.is_empty()).then(|| {
        if failures.is_empty() {
            format!("exit {:?}", out.status.code())
        } else {
            failures.join("; ")
        }
    });
    Outcome { seed, pairs, lost, failure }
}

/// Runs the sweep; returns the exit code (0 all passed, 1 some failed, 2 bad usage).
pub fn sweep(scenario: &str, seeds: &str, jobs: Option<usize>) -> i32 {
    let Some((first, end)) = parse_range(seeds) else {
        eprintln!("relaymesh-sim: --seeds {seeds:?}: expected A..B with A < B, e.g. 0..1000");
        return 2;
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("relaymesh-sim: cannot find this program: {e}");
            return 1;
        }
    };
    // A scenario that does not parse fails every seed the same way: say so once, up front.
    if let Err(why) = crate::load(scenario) {
        eprintln!("relaymesh-sim: {why}");
        return 2;
    }
    let jobs =
        jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1);
    let total = end - first;
    let next = AtomicU64::new(first);
    let (tx, rx) = mpsc::channel();
    let show = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut failed: Vec<Outcome> = Vec::new();
    let (mut done, mut pairs, mut lost) = (0u64, 0u64, 0u64);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            let (tx, next, exe) = (tx.clone(), &next, &exe);
            s.spawn(move || {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    if tx.send(run_seed(exe, scenario, seed)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for o in rx {
            done += 1;
            pairs += o.pairs;
            lost += o.lost;
            if let Some(why) = &o.failure {
                if show {
                    eprint!("\r\x1b[K");
                }
                eprintln!("seed {} failed: {why}", o.seed);
                eprintln!(
                    "  reproduce: relaymesh-sim run {scenario} --seed {} --check-invariants",
                    o.seed
                );
                failed.push(o);
            }
            if show {
                let filled = (done * 40 / total) as usize;
                eprint!(
                    "\r[{}{}] {done}/{total} seeds, {} failed, {:.1} seeds/s ",
                    "#".repeat(filled),
                    ".".repeat(40 - filled),
                    failed.len(),
                    done as f64 / started.elapsed().as_secs_f64().max(1e-9)
                );
                let _ = std::io::stderr().flush();
            }
        }
    });
    if show {
        eprintln!();
    }
    failed.sort_by_key(|o| o.seed);
    println!(
        "{scenario}: {done} seeds ({first}..{end}) in {:.0} s, {} failed; {pairs} (message, intended recipient) pairs, {lost} lost",
        started.elapsed().as_secs_f64(),
        failed.len()
    );
    for o in &failed {
        println!("  relaymesh-sim run {scenario} --seed {} --check-invariants", o.seed);
    }
    if failed.is_empty() { 0 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse_or_are_refused() {
        assert_eq!(parse_range("0..10"), Some((0, 10)));
        assert_eq!(parse_range(" 5 .. 6 "), Some((5, 6)));
        for bad in ["10..10", "10..2", "0-10", "..4", "a..b", ""] {
            assert_eq!(parse_range(bad), None, "{bad}");
        }
    }

    fn finished(code: i32, report: &str) -> std::process::Output {
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::ExitStatus::from_raw(code << 8);
        std::process::Output { status, stdout: report.as_bytes().to_vec(), stderr: Vec::new() }
    }

    #[test]
    fn a_report_is_summed_and_one_missing_a_figure_fails_its_seed() {
        let pairs = |n| format!(r#"{{"pairs": {n}}}"#);
        let report = |lost: &str| {
            format!(
                r#"{{"precedence": {{"flash": {}, "immediate": {}, "priority": {}, "routine": {}}}, "invariants": {{{lost}}}, "expect": {{"failures": []}}}}"#,
                pairs(1),
                pairs(2),
                pairs(3),
                pairs(4)
            )
        };
        let ok = judge(7, &finished(0, &report(r#""lost": 0"#)));
        assert_eq!((ok.seed, ok.pairs, ok.lost, ok.failure), (7, 10, 0, None));
        // A renamed figure is a failed seed, not a zero.
        let renamed = judge(8, &finished(0, &report(r#""missing": 0"#)));
        assert_eq!(
            renamed.failure.as_deref(),
            Some("exit Some(0), the report has no invariants.lost")
        );
        let failed = judge(9, &finished(1, &report(r#""lost": 2"#)));
        assert_eq!((failed.lost, failed.failure.as_deref()), (2, Some("exit Some(1)")));
        let failures = report(r#""lost": 0"#).replace("[]", r#"["flash p99 above 2s"]"#);
        let unmet = judge(10, &finished(1, &failures));
        assert_eq!(unmet.failure.as_deref(), Some("flash p99 above 2s"));
        let garbled = judge(11, &finished(101, "panicked"));
        assert!(garbled.failure.unwrap().starts_with("exit Some(101), no report"));
    }
}
