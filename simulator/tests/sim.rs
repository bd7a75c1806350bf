//! The simulator end to end: determinism, the built-in scenarios' expectations, a sweep of
//! seeds under random failures, and the command line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use relaymesh_sim::scenario;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_relaymesh-sim");

fn built_in(name: &str) -> relaymesh_sim::Scenario {
    scenario::built_in(name).expect("built in").expect("parses")
}

/// The report without its wall-clock fields.
fn stable(mut j: Value) -> Value {
    let o = j.as_object_mut().unwrap();
    o.remove("wall_s");
    o.remove("speedup");
    j
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let sc = built_in("smoke");
    let a = relaymesh_sim::run(&sc, 5, &mut |_| {});
    let b = relaymesh_sim::run(&sc, 5, &mut |_| {});
    assert_eq!(stable(a.json.clone()), stable(b.json), "two runs with seed 5 differ");
    let c = relaymesh_sim::run(&sc, 6, &mut |_| {});
    assert_ne!(stable(a.json), stable(c.json), "another seed should change something");
}

#[test]
fn the_small_built_in_scenarios_meet_their_expectations() {
    for name in ["smoke", "satellite-bulk"] {
        let sc = built_in(name);
        let r = relaymesh_sim::run(&sc, sc.seed, &mut |_| {});
        assert!(r.failures.is_empty(), "{name}: {:?}\n{}", r.failures, r.text);
        let flash = &r.json["precedence"]["flash"];
        assert!(flash["delivered"].as_u64().unwrap() > 0, "{name}: no FLASH delivered");
    }
}

#[test]
fn satellite_bulk_fills_the_link_and_flash_still_gets_through_fast() {
    let sc = built_in("satellite-bulk");
    let r = relaymesh_sim::run(&sc, sc.seed, &mut |_| {});
    let link = &r.json["links"][0];
    let util = link["utilisation"].as_f64().unwrap();
    assert!(util >= 0.9, "the bulk transfer used {:.1}% of the satellite link", util * 100.0);
    let p50 = r.json["precedence"]["flash"]["latency_ms"]["p50"].as_f64().unwrap();
    // One-way delay 300 ms; a 1400-byte packet takes 11 ms to serialise at 1 Mbit/s.
    assert!(p50 < 300.0 + 10.0 * 11.2, "FLASH p50 {p50} ms behind the bulk transfer");
}

#[test]
fn a_sweep_of_seeds_under_random_failures_keeps_every_invariant() {
    const SEEDS: u64 = 200;
    let sc = built_in("chaos-10");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4) as u64;
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let sc = &sc;
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for seed in (t..SEEDS).step_by(threads as usize) {
                        let r = relaymesh_sim::run(sc, 1000 + seed, &mut |_| {});
                        let inv = &r.json["invariants"];
                        let sent: u64 = ["flash", "immediate", "priority", "routine"]
                            .iter()
                            .map(|p| r.json["precedence"][p]["sent"].as_u64().unwrap_or(0))
                            .sum();
                        if inv["lost"] != 0 || inv["duplicates"] != 0 || sent == 0 {
                            bad.push(format!(
                                "seed {}: {inv} (sent {sent})\n{}",
                                1000 + seed,
                                r.text
                            ));
                        }
                    }
                    bad
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {SEEDS} seeds broke an invariant:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn bad_scenarios_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let base = scenario::BUILT_IN.iter().find(|(n, _)| *n == "smoke").unwrap().1;
    let cases = [
        ("b = \"township-01\"", "b = \"township-99\"", "unknown node"),
        ("b = \"relay-1\"", "b = \"county-hq\"", "to itself"),
        ("delay = \"15ms\"", "delay = \"15 lightyears\"", "unknown unit"),
        ("action = \"link_down\"", "action = \"meteor\"", "unknown action"),
    ];
    for (from, to, why) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, base.replacen(from, to, 1)).unwrap();
        let out = sim(&["run", path.to_str().unwrap(), "--quiet"]);
        assert_eq!(out.status.code(), Some(2), "{why}");
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.split(':').nth(2).unwrap_or_default();
        assert!(err.contains("bad.toml:"), "{err}");
        assert!(line.trim().parse::<usize>().is_ok(), "no line number: {err}");
        assert!(err.contains(why), "{err}");
        assert!(out.stdout.is_empty(), "nothing ran");
    }
}

#[test]
fn a_failed_expectation_exits_1_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let base = scenario::BUILT_IN.iter().find(|(n, _)| *n == "smoke").unwrap().1;
    let path = dir.path().join("strict.toml");
    std::fs::write(
        &path,
        base.replace("latency_p99 = { flash = \"5s\" }", "latency_p99 = { flash = \"1ms\" }"),
    )
    .unwrap();
    let out = sim(&[
        "run",
        path.to_str().unwrap(),
        "--quiet",
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expect.latency_p99.flash"), "{err}");
    for f in ["report.txt", "report.json", "report.html"] {
        assert!(dir.path().join("out").join(f).exists(), "{f} written");
    }
    let html = std::fs::read_to_string(dir.path().join("out/report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Latency distribution"));
}

#[test]
fn json_output_has_the_documented_fields_and_list_shows_the_built_ins() {
    let out = sim(&["run", "smoke", "--json", "--quiet", "--seed", "9"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "scenario",
        "seed",
        "virtual_s",
        "wall_s",
        "speedup",
        "precedence",
        "links",
        "events",
        "invariants",
        "expect",
    ] {
        assert!(j.get(key).is_some(), "missing {key}");
    }
    assert_eq!(j["seed"], 9);
    for p in ["flash", "immediate", "priority", "routine"] {
        for k in
            ["sent", "delivered", "expired", "refused", "held", "lost", "duplicates", "latency_ms"]
        {
            assert!(j["precedence"][p].get(k).is_some(), "missing precedence.{p}.{k}");
        }
    }
    for k in ["id", "medium", "bytes", "utilisation", "down_s"] {
        assert!(j["links"][0].get(k).is_some(), "missing links[].{k}");
    }
    for k in ["at_s", "action", "target", "recovered_after_s"] {
        assert!(j["events"][0].get(k).is_some(), "missing events[].{k}");
    }
    let list = String::from_utf8(sim(&["list"]).stdout).unwrap();
    for (name, _) in scenario::BUILT_IN {
        assert!(list.contains(name), "{name} not listed");
    }
}
