//! The simulator end to end: determinism, the built-in scenarios' expectations, a sweep of
//! seeds under random failures, and the command line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use relaymesh::core::Outcome;
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
        // Tests run debug builds, whose nodes check their invariants unasked.
        assert_eq!(r.json["invariants"]["checked"], cfg!(debug_assertions), "{name}");
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
    // The relays' own count of what they sent: most of the link is payload, and what is not
    // (QUIC, relaymesh framing and control) adds up with it to the bytes the fabric carried.
    let payload = link["payload_bytes"].as_u64().unwrap();
    let bytes = link["bytes"].as_u64().unwrap();
    let own =
        payload + link["framing_bytes"].as_u64().unwrap() + link["control_bytes"].as_u64().unwrap();
    assert!(payload > 0 && own < bytes, "payload {payload}, relaymesh {own}, link {bytes}");
    let efficiency = link["payload_efficiency"].as_f64().unwrap();
    assert!((0.9..1.0).contains(&efficiency), "payload efficiency {efficiency}");
    let media = &r.json["media"]["satellite"];
    assert_eq!(media["payload_bytes"].as_u64(), Some(payload));
    let framing = media["framing_per_offer"].as_f64().unwrap();
    assert!(framing > 50.0 && framing < 1000.0, "framing per offer {framing} B");
    let p50 = r.json["precedence"]["flash"]["latency_ms"]["p50"].as_f64().unwrap();
    // One-way delay 300 ms; a 1400-byte packet takes 11 ms to serialise at 1 Mbit/s. The link
    // is paced (known-rate), so no queue builds at the bottleneck: a FLASH waits for about the
    // chunk of bulk ahead of it, not for a window of it (unpaced, p50 was 353 ms).
    assert!(p50 < 300.0 + 3.0 * 11.2, "FLASH p50 {p50} ms behind the bulk transfer");
}

#[test]
fn a_20_mb_object_over_satellite_survives_a_cut_resending_only_what_was_in_flight() {
    let sc = built_in("satellite-object");
    let cut = relaymesh_sim::run(&sc, sc.seed, &mut |_| {});
    assert!(cut.failures.is_empty(), "{:?}\n{}", cut.failures, cut.text);
    let routine = &cut.json["precedence"]["routine"];
    assert_eq!(routine["delivered"].as_u64(), Some(1), "the object, once");
    // Sent at 5 s; the link was down from 90 s to 210 s.
    let done = routine["latency_ms"]["p50"].as_f64().unwrap() / 1e3 + 5.0;
    assert!(done > 210.0, "complete at {done} s, before the link came back");

    let mut whole = sc.clone();
    whole.events.clear();
    let uncut = relaymesh_sim::run(&whole, sc.seed, &mut |_| {});
    let bytes = |r: &relaymesh_sim::Report| r.json["links"][0]["bytes"].as_u64().unwrap();
    // What the cut cost: the chunks in flight when it came (the satellite window is 256 KiB
    // a precedence), not the 45% of the object already across.
    let extra = bytes(&cut) - bytes(&uncut);
    assert!(extra < 512 * 1024, "the cut cost {extra} bytes more");
    let ratio = bytes(&cut) as f64 / 20e6;
    assert!(ratio < 1.12, "{ratio} link bytes an object byte");
    // FLASH reports from the team share the link with the upload: they wait for at most the
    // chunk on the wire (16 KiB, 131 ms at 1 Mbit/s) beyond the 300 ms one way.
    let flash = uncut.json["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["node"] == "county-hq" && d["precedence"] == "flash")
        .unwrap()
        .clone();
    let p50 = flash["latency_ms"]["p50"].as_f64().unwrap();
    assert!(p50 < 300.0 + 131.0, "FLASH p50 {p50} ms behind the object");
}

#[test]
fn a_slow_disk_delays_acknowledgements_but_never_forwarding() {
    let mut sc = built_in("smoke");
    sc.check_invariants = true;
    let fast = relaymesh_sim::run(&sc, sc.seed, &mut |_| {});
    // Every node's disk takes 300 ms to make a batch durable.
    sc.disk_sync = std::time::Duration::from_millis(300);
    let slow = relaymesh_sim::run(&sc, sc.seed, &mut |_| {});
    for (name, r) in [("fast", &fast), ("slow", &slow)] {
        assert!(r.failures.is_empty(), "{name} disks: {:?}\n{}", r.failures, r.text);
        assert_eq!(r.json["invariants"]["lost"], 0, "{name}");
        assert_eq!(r.json["invariants"]["duplicates"], 0, "{name}");
        assert_eq!(r.json["invariants"]["broken"].as_array().map_or(0, Vec::len), 0, "{name}");
    }
    // FLASH crosses two relays' worth of hops (15 ms each); were forwarding to wait for each
    // hop's disk, it would take 300 ms more a hop. Latency is measured to the delivery event,
    // which waits for the destination's own commit: one sync, once.
    let p50 = |r: &relaymesh_sim::Report| {
        r.json["precedence"]["flash"]["latency_ms"]["p50"].as_f64().unwrap()
    };
    let (fast50, slow50) = (p50(&fast), p50(&slow));
    assert!(
        slow50 < fast50 + 300.0 + 50.0,
        "FLASH p50 {slow50} ms on slow disks against {fast50} ms on fast ones"
    );
}

/// Whether a node crashed for longer than `limit` (or until the end of the run).
fn a_crash_outlasted(events: &Value, limit: f64) -> bool {
    let events = events.as_array().unwrap();
    events.iter().enumerate().any(|(i, e)| {
        e["action"] == "node_crash"
            && events[i + 1..]
                .iter()
                .find(|x| x["action"] == "node_restart" && x["target"] == e["target"])
                .is_none_or(|x| x["at_s"].as_f64().unwrap() - e["at_s"].as_f64().unwrap() > limit)
    })
}

#[test]
fn a_sweep_of_seeds_under_random_failures_keeps_every_invariant() {
    // 120 seeds (200 before) keep this test near the few minutes it took on two cores in debug:
    // chaos-10's 90 s adverts cost a quarter more time per run than the default 30 min.
    const SEEDS: u64 = 120;
    let mut sc = built_in("chaos-10");
    // Every node checks its own accounting after every commit, too.
    sc.check_invariants = true;
    // Every other seed on disks that take 40 ms to sync a batch: commits are split, nodes
    // forward while a batch is in flight, and crashes land between sealing and landing.
    let mut slow = sc.clone();
    slow.disk_sync = std::time::Duration::from_millis(40);
    let advert_lifetime = sc.advert_lifetime.expect("chaos-10 shortens the advert lifetime");
    let long_crashes = std::sync::atomic::AtomicU64::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4) as u64;
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (sc, slow, long_crashes) = (&sc, &slow, &long_crashes);
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for seed in (t..SEEDS).step_by(threads as usize) {
                        let sc = if seed % 2 == 1 { slow } else { sc };
                        let r = relaymesh_sim::run(sc, 1000 + seed, &mut |_| {});
                        let inv = &r.json["invariants"];
                        // (message, intended recipient) pairs, from the scenario's membership.
                        let sent: u64 = ["flash", "immediate", "priority", "routine"]
                            .iter()
                            .map(|p| r.json["precedence"][p]["pairs"].as_u64().unwrap_or(0))
                            .sum();
                        if a_crash_outlasted(&r.json["events"], advert_lifetime.as_secs_f64()) {
                            long_crashes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        let broken = inv["broken"].as_array().map_or(0, Vec::len);
                        if inv["lost"] != 0 || inv["duplicates"] != 0 || broken > 0 || sent == 0 {
                            bad.push(format!(
                                "seed {} (disk sync {:?}): {inv} (sent {sent})\n{}",
                                1000 + seed,
                                sc.disk_sync,
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
    let long = long_crashes.into_inner();
    assert!(
        long >= 6,
        "only {long} of {SEEDS} seeds crashed a node for longer than its adverts live"
    );
}

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn a_sweep_runs_every_seed_and_names_how_to_reproduce_each_failure() {
    let out = sim(&["sweep", "smoke", "--seeds", "0..3", "--jobs", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("smoke: 3 seeds (0..3)") && stdout.contains("0 failed"), "{stdout}");
    // An expectation no run can meet fails every seed, each with its command.
    let dir = tempfile::tempdir().unwrap();
    let base = scenario::BUILT_IN.iter().find(|(n, _)| *n == "smoke").unwrap().1;
    let path = dir.path().join("strict.toml");
    std::fs::write(
        &path,
        base.replace(r#"latency_p99 = { flash = "5s" }"#, r#"latency_p99 = { flash = "1us" }"#),
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let out = sim(&["sweep", file, "--seeds", "7..9", "--jobs", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for seed in [7, 8] {
        let line = format!("relaymesh-sim run {file} --seed {seed} --check-invariants");
        assert!(stdout.contains(&line), "{stdout}");
    }
    let out = sim(&["sweep", "smoke", "--seeds", "3..1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_scenarios_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let base = scenario::BUILT_IN.iter().find(|(n, _)| *n == "smoke").unwrap().1;
    let cases = [
        ("b = \"township-01\"", "b = \"township-99\"", "unknown node"),
        ("b = \"relay-1\"", "b = \"county-hq\"", "to itself"),
        ("delay = \"15ms\"", "delay = \"15 lightyears\"", "unknown time unit"),
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
fn a_township_cut_off_past_the_flash_objective_is_reported_overdue_and_can_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let base = scenario::BUILT_IN.iter().find(|(n, _)| *n == "smoke").unwrap().1;
    // township-02 loses both its links for two minutes; FLASH must arrive within 20 s.
    let text = base.replace("latency_p99 = { flash = \"5s\" }", "overdue = { flash = 0 }")
        + "\n[objectives]\nflash = \"20s\"\n\n"
        + "[[event]]\nat = \"3m\"\naction = \"link_down\"\nlink = \"county-hq~township-02/satellite\"\n\n"
        + "[[event]]\nat = \"5m\"\naction = \"link_up\"\nlink = \"county-hq~township-02/satellite\"\n";
    let path = dir.path().join("late.toml");
    std::fs::write(&path, &text).unwrap();
    let out = sim(&["run", path.to_str().unwrap(), "--quiet", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expect.overdue.flash"), "{err}");
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    let flash = &j["precedence"]["flash"];
    // A FLASH every 30 s, two minutes cut off: about four orders late, every one delivered
    // once the links return, so none is still overdue at the end.
    let late = flash["overdue"].as_u64().unwrap();
    assert!((2..=6).contains(&late), "{flash}");
    assert_eq!(flash["overdue_open"], 0, "{flash}");
    assert_eq!(flash["lost"], 0);
    assert_eq!(j["precedence"]["routine"]["overdue"], 0);
    // Without the cut, nothing is late.
    let calm = base.replace("latency_p99 = { flash = \"5s\" }", "overdue = { flash = 0 }")
        + "\n[objectives]\nflash = \"20s\"\n";
    std::fs::write(&path, &calm).unwrap();
    let out = sim(&["run", path.to_str().unwrap(), "--quiet", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_late_routine_message_may_cross_a_strict_satellite_link_and_objectives_are_checked() {
    // late-routine: ROUTINE to township-02 every 10 s; its mesh link is down from 3 to 5
    // minutes, and ROUTINE may not ride satellite until it is a minute late.
    let out = sim(&["run", "late-routine", "--quiet", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    let escalated = &j["precedence"]["routine"];
    let max = |r: &Value| r["latency_ms"]["max"].as_f64().unwrap();
    assert_eq!(
        (escalated["lost"].as_u64(), escalated["overdue_open"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(escalated["overdue"].as_u64().unwrap() >= 5, "{escalated}");
    // Late after a minute, then across at once: nothing waits for the mesh link.
    assert!((60_000.0..62_000.0).contains(&max(escalated)), "{escalated}");
    // One offer at county-hq for each message late there (relay-1 may bounce more back).
    assert!(escalated["escalated"].as_u64().unwrap() >= 5, "{escalated}");
    let text = sim(&["run", "late-routine", "--quiet"]);
    let text = String::from_utf8_lossy(&text.stdout);
    for line in [
        "overdue (pairs past their delivery objective at the origin): routine 7 (0 still at the end)",
        "escalated (offers of late messages on routes their precedence avoids): routine ",
    ] {
        assert!(text.contains(line), "{line} missing: {text}");
    }

    let dir = tempfile::tempdir().unwrap();
    let base = scenario::BUILT_IN.iter().find(|(n, _)| *n == "late-routine").unwrap().1;
    let path = dir.path().join("late.toml");
    let run = |text: String| {
        std::fs::write(&path, text).unwrap();
        sim(&["run", path.to_str().unwrap(), "--quiet", "--json"])
    };
    // Without escalation the first of them waits the whole two minutes, and the scenario's
    // expectation on ROUTINE latency fails the run.
    let out = run(base.replace("escalate = true", "escalate = false"));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expect.latency_p99.routine"));
    let held: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(held["precedence"]["routine"]["lost"].as_u64(), Some(0));
    assert!(max(&held["precedence"]["routine"]) > 110_000.0, "{held}");
    assert_eq!(held["precedence"]["routine"]["escalated"], 0);

    // An objective beyond the relay's max_lifetime, or a rule naming no precedence: refused.
    let too_long = base.replace("routine = \"1m\"", "flash = \"40d\"");
    let no_precedence = format!("{base}\n[[objectives.address]]\nto = \"node:township-02\"\n");
    let no_to = format!("{base}\n[[objectives.address]]\nflash = \"1m\"\n");
    let bad_medium = base.replace("strict = true ", "strict = 3 ");
    for (text, why) in [
        (too_long, "objectives.flash"),
        (no_precedence, "names no precedence"),
        (no_to, "objectives.address[0]: missing field `to`"),
        (bad_medium, "media.satellite.strict: invalid type"),
    ] {
        let out = run(text);
        assert_eq!(out.status.code(), Some(2), "{why}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn json_output_has_the_documented_fields_and_list_shows_the_built_ins() {
    let out = sim(&["run", "smoke", "--json", "--quiet", "--seed", "9"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Four nodes, one link down and up in ten minutes: a handful of adverts a minute (about
    // 7). A node that takes its own advert back for a stale one floods them (180 a minute
    // here, 65,000 in county-flood, when RTTs were compared finer than the wire keeps them).
    let adverts = j["control"]["adverts_per_min"].as_f64().unwrap();
    assert!(adverts < 30.0, "an advert storm: {adverts} a minute");
    // Certificates cross each link once (`lean-adverts-v1`): 250 B an advert here, 521 B when
    // every advert carried its certificate.
    let mean = j["control"]["advert_bytes_per_min"].as_f64().unwrap() / adverts;
    assert!(mean < 350.0, "adverts carry their certificates again: {mean:.0} B each");
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
        for k in [
            "messages",
            "sent",
            "pairs",
            "delivered",
            "expired",
            "refused",
            "held",
            "lost",
            "duplicates",
            "unintended",
            "latency_ms",
        ] {
            assert!(j["precedence"][p].get(k).is_some(), "missing precedence.{p}.{k}");
        }
        for k in
            ["cancelled", "superseded", "withdrawn_after_delivery", "delivery_ratio", "escalated"]
        {
            assert!(j["precedence"][p].get(k).is_some(), "missing precedence.{p}.{k}");
        }
    }
    assert!(j["unintended"].is_u64(), "missing unintended");
    for k in [
        "node",
        "precedence",
        "pairs",
        "delivered",
        "expired",
        "refused",
        "held",
        "lost",
        "duplicates",
        "unintended",
        "latency_ms",
    ] {
        assert!(j["destinations"][0].get(k).is_some(), "missing destinations[].{k}");
    }
    // Every pair is in exactly one destination row.
    let rows: u64 =
        j["destinations"].as_array().unwrap().iter().map(|r| r["pairs"].as_u64().unwrap()).sum();
    let pairs: u64 = ["flash", "immediate", "priority", "routine"]
        .iter()
        .map(|p| j["precedence"][p]["pairs"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, pairs);
    for k in [
        "id",
        "medium",
        "bytes",
        "utilisation",
        "down_s",
        "offers",
        "payload_bytes",
        "framing_bytes",
        "control_bytes",
        "payload_efficiency",
    ] {
        assert!(j["links"][0].get(k).is_some(), "missing links[].{k}");
    }
    for k in ["at_s", "action", "target", "recovered_after_s", "caught_up_after_s"] {
        assert!(j["events"][0].get(k).is_some(), "missing events[].{k}");
    }
    let list = String::from_utf8(sim(&["list"]).stdout).unwrap();
    for (name, _) in scenario::BUILT_IN {
        assert!(list.contains(name), "{name} not listed");
    }
}

fn run_text(text: &str) -> relaymesh_sim::Report {
    let sc = scenario::parse(text, "t.toml").expect("parses");
    relaymesh_sim::run(&sc, sc.seed, &mut |_| {})
}

/// The per-destination row of `node` and precedence `p`, if any.
fn row<'a>(j: &'a Value, node: &str, p: &str) -> Option<&'a Value> {
    j["destinations"].as_array().unwrap().iter().find(|r| r["node"] == node && r["precedence"] == p)
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// county-hq, a relay, and two field teams hanging off it.
const TEAMS: &str = r#"
name = "teams"
duration = "20m"
seed = 4

[[node]]
id = "county-hq"
role = "command"

[[node]]
id = "relay-1"
role = "relay"

[[node]]
id = "team-1"
role = "field"

[[node]]
id = "team-2"
role = "field"

[[link]]
a = "county-hq"
b = "relay-1"
medium = "wireless"

[[link]]
a = "relay-1"
b = "team-1"
medium = "wireless"

[[link]]
a = "relay-1"
b = "team-2"
medium = "wireless"
"#;

#[test]
fn a_node_that_joins_within_a_lifetime_gets_the_message_and_one_that_joins_after_does_not() {
    // One alert at 1 min, live until 11 min, when nobody is in the group; team-1 joins at
    // 5 min, team-2 at 15 min. team-1 leaves at 12 min; a second alert at 17 min is for team-2.
    let text = format!(
        "{TEAMS}{}",
        r#"
[[traffic]]
from = "county-hq"
to = "group:medical"
precedence = "flash"
every = "1h"
start = "1m"
stop = "1m"
lifetime = "10m"

[[traffic]]
from = "county-hq"
to = "group:medical"
precedence = "immediate"
every = "1h"
start = "17m"
stop = "17m"
lifetime = "2m"

[[event]]
at = "5m"
action = "join"
node = "team-1"
group = "medical"

[[event]]
at = "12m"
action = "leave"
node = "team-1"
group = "medical"

[[event]]
at = "15m"
action = "join"
node = "team-2"
group = "medical"
"#
    );
    let r = run_text(&text);
    let j = &r.json;
    assert!(r.failures.is_empty(), "{:?}\n{}", r.failures, r.text);
    let t1 = row(j, "team-1", "flash").expect("team-1 was intended for the first alert");
    assert_eq!((n(t1, "pairs"), n(t1, "delivered"), n(t1, "duplicates")), (1, 1, 0), "{t1}");
    let latency = t1["latency_ms"]["max"].as_f64().unwrap();
    assert!((4.0 * 60e3..5.0 * 60e3).contains(&latency), "delivered {latency} ms after the send");
    assert!(row(j, "team-2", "flash").is_none(), "team-2 joined after the lifetime: {j:#}");
    let t2 = row(j, "team-2", "immediate").expect("team-2 was intended for the second alert");
    assert_eq!((n(t2, "pairs"), n(t2, "delivered")), (1, 1), "{t2}");
    assert!(row(j, "team-1", "immediate").is_none(), "team-1 left before: {j:#}");
    assert_eq!(j["unintended"], 0, "{}", r.text);
    assert_eq!(n(&j["precedence"]["flash"], "pairs"), 1);
    assert_eq!(n(&j["precedence"]["flash"], "messages"), 1);
}

#[test]
fn a_join_declared_while_the_node_is_down_counts_from_its_restart() {
    // team-1 is down from 2 to 6 min; the scenario has it join at 4 min, which takes effect at
    // its restart. The FLASH (1 min, live until 5:30) ends before that: not for team-1. The
    // IMMEDIATE (5 min, live until 15 min) is.
    let text = format!(
        "{TEAMS}{}",
        r#"
[[traffic]]
from = "county-hq"
to = "group:medical"
precedence = "flash"
every = "1h"
start = "1m"
stop = "1m"
lifetime = "270s"

[[traffic]]
from = "county-hq"
to = "group:medical"
precedence = "immediate"
every = "1h"
start = "5m"
stop = "5m"
lifetime = "10m"

[[event]]
at = "2m"
action = "node_crash"
node = "team-1"

[[event]]
at = "4m"
action = "join"
node = "team-1"
group = "medical"

[[event]]
at = "6m"
action = "node_restart"
node = "team-1"
"#
    );
    let r = run_text(&text);
    let j = &r.json;
    assert!(r.failures.is_empty(), "{:?}\n{}", r.failures, r.text);
    assert!(row(j, "team-1", "flash").is_none(), "{j:#}");
    let t1 = row(j, "team-1", "immediate").expect("team-1 joined within the lifetime");
    assert_eq!((n(t1, "pairs"), n(t1, "delivered")), (1, 1), "{t1}");
    let latency = t1["latency_ms"]["max"].as_f64().unwrap();
    assert!(latency >= 60e3, "delivered {latency} ms after the send, before the restart?");
    assert_eq!(j["unintended"], 0, "{}", r.text);
}

#[test]
fn a_member_that_never_returns_has_its_pairs_expired_not_lost() {
    // team-1 crashes at 3 min and never restarts; team-2's link goes at 3 min and never returns.
    let text = format!(
        "{TEAMS}{}",
        r#"
[[traffic]]
from = "county-hq"
to = "group:role:field"
precedence = "flash"
every = "1m"
start = "1m"
stop = "6m"
lifetime = "5m"

[[event]]
at = "3m"
action = "node_crash"
node = "team-1"

[[event]]
at = "3m"
action = "link_down"
link = "relay-1~team-2/wireless"
"#
    );
    let r = run_text(&text);
    let j = &r.json;
    for team in ["team-1", "team-2"] {
        let row = row(j, team, "flash").unwrap();
        assert_eq!(n(row, "pairs"), 6, "{row}");
        assert_eq!(n(row, "lost"), 0, "{row}\n{}", r.text);
        assert_eq!(n(row, "held"), 0, "{row}\n{}", r.text);
        assert!(n(row, "delivered") >= 2, "{row}");
        assert!(n(row, "expired") >= 3, "{row}");
        assert_eq!(n(row, "delivered") + n(row, "expired"), 6, "{row}");
    }
    assert_eq!(j["invariants"]["lost"], 0, "{}", r.text);
}

#[test]
fn a_late_joiner_cut_off_until_after_the_lifetime_is_accounted_expired() {
    // team-1 joins medical at 2 min while its link is down (30 s to 15 min); the order sent at
    // 1 min lives 5 min. The origin first hears of the join at 15 min: too late to deliver,
    // within the hour it keeps the message for, so it records the pair expired.
    let text = format!(
        "{TEAMS}{}",
        r#"
[[traffic]]
from = "county-hq"
to = "group:medical"
precedence = "flash"
every = "1h"
start = "1m"
stop = "1m"
lifetime = "5m"

[[event]]
at = "30s"
action = "link_down"
link = "relay-1~team-1/wireless"

[[event]]
at = "2m"
action = "join"
node = "team-1"
group = "medical"

[[event]]
at = "15m"
action = "link_up"
link = "relay-1~team-1/wireless"
"#
    );
    let r = run_text(&text);
    let row = row(&r.json, "team-1", "flash").unwrap();
    assert_eq!((n(row, "pairs"), n(row, "expired"), n(row, "lost")), (1, 1, 0), "{}", r.text);
}

#[test]
fn township_cutoff_delivers_every_pair_once_and_township_02_waits_out_the_outage() {
    let sc = built_in("township-cutoff");
    let r = relaymesh_sim::run(&sc, sc.seed, &mut |_| {});
    let j = &r.json;
    assert!(r.failures.is_empty(), "{:?}\n{}", r.failures, r.text);
    // 70 FLASH to two townships, 35 topic alerts to two subscribers.
    for (p, pairs) in [("flash", 140), ("immediate", 70)] {
        let c = &j["precedence"][p];
        assert_eq!(
            (n(c, "pairs"), n(c, "delivered"), n(c, "duplicates")),
            (pairs, pairs, 0),
            "{p}"
        );
    }
    for p in ["flash", "immediate"] {
        let near = row(j, "township-01", p).unwrap()["latency_ms"]["max"].as_f64().unwrap();
        let cut = row(j, "township-02", p).unwrap()["latency_ms"]["max"].as_f64().unwrap();
        assert!(near < 5e3, "township-01 {p} max {near} ms");
        // The first alert after the cut at 10 min waits until the link returns at 60 min.
        assert!((48.0 * 60e3..52.0 * 60e3).contains(&cut), "township-02 {p} max {cut} ms");
        let p50 = row(j, "township-02", p).unwrap()["latency_ms"]["p50"].as_f64().unwrap();
        assert!(p50 > 60e3, "township-02 {p} p50 {p50} ms: most alerts waited");
    }
}

#[test]
fn membership_events_naming_an_unknown_node_or_group_are_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = scenario::BUILT_IN.iter().find(|(n, _)| *n == "smoke").unwrap().1;
    let (head, tail) = base.split_at(base.find("[expect]").unwrap());
    // The event starts on the line after the head: [[event]], at, action, node, group/topic.
    let event_line = head.lines().count() + 1;
    let cases = [
        (
            "action = \"join\"\nnode = \"team-99\"\ngroup = \"medical\"",
            3,
            "unknown node \"team-99\"",
        ),
        (
            "action = \"join\"\nnode = \"township-01\"\ngroup = \"medcal\"",
            4,
            "unknown group \"medcal\"",
        ),
        (
            "action = \"leave\"\nnode = \"township-01\"\ngroup = \"role:field\"",
            4,
            "built-in groups",
        ),
        ("action = \"subscribe\"\nnode = \"township-01\"\ntopic = \"alerts/#/x\"", 4, "alerts/#/x"),
        (
            "action = \"unsubscribe\"\nnode = \"ghost\"\ntopic = \"alerts/#\"",
            3,
            "unknown node \"ghost\"",
        ),
        ("action = \"join\"\nnode = \"township-01\"", 2, "needs group"),
    ];
    for (event, offset, why) in cases {
        // "medical" is addressed by traffic, so it is a known group.
        let text = format!(
            "{head}[[event]]\nat = \"2m\"\n{event}\n\n[[traffic]]\nfrom = \"county-hq\"\nto = \"group:medical\"\nevery = \"1m\"\n\n{tail}"
        );
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = sim(&["run", path.to_str().unwrap(), "--quiet"]);
        assert_eq!(out.status.code(), Some(2), "{why}");
        let err = String::from_utf8_lossy(&out.stderr);
        let got: usize = err.split(':').nth(2).unwrap_or_default().trim().parse().unwrap_or(0);
        assert_eq!(got, event_line + offset, "{why}: {err}");
        assert!(err.contains(why), "{err}");
        assert!(out.stdout.is_empty(), "nothing ran");
    }
}

#[test]
fn compression_carries_text_reports_in_a_fraction_of_the_bytes_and_random_bytes_at_cost() {
    // satellite-bulk with situation-report text instead of random bytes, compressed (the
    // satellite default) and not.
    let (_, text) = scenario::BUILT_IN.iter().find(|(n, _)| *n == "satellite-bulk").unwrap();
    let text = text.replace("size = 60000\n", "size = 60000\ncontent = \"text\"\n");
    assert!(text.contains("content = \"text\""));
    let run = |extra: &str| {
        let sc = scenario::parse(&format!("{text}\n{extra}"), "satellite-text").unwrap();
        relaymesh_sim::run(&sc, sc.seed, &mut |_| {})
    };
    let (on, off) = (run(""), run("[media.satellite]\ncompress = false\n"));
    let routine = |r: &relaymesh_sim::Report| r.json["precedence"]["routine"]["delivered"].as_u64();
    let link_bytes = |r: &relaymesh_sim::Report| r.json["links"][0]["bytes"].as_u64().unwrap();
    let payload = |r: &relaymesh_sim::Report| r.json["links"][0]["payload_bytes"].as_u64().unwrap();
    // Compressed, all 1338 reports cross within the ten minutes on a fifth of the bytes;
    // uncompressed, the link is full and some are still queued at the end.
    assert_eq!(routine(&on), Some(1338), "{}", on.text);
    assert!(routine(&off).unwrap() < 1338, "{}", off.text);
    assert!(link_bytes(&on) * 3 < payload(&on), "{}", on.text);
    assert!(link_bytes(&off) > payload(&off), "{}", off.text);
    // Random bytes cannot be compressed: the built-in scenario (random payloads, compressed)
    // still puts over 90% of the link into payload, as before compression existed.
    let random = built_in("satellite-bulk");
    let r = relaymesh_sim::run(&random, random.seed, &mut |_| {});
    let efficiency = r.json["links"][0]["payload_efficiency"].as_f64().unwrap();
    assert!(efficiency > 0.9, "{efficiency}: {}", r.text);
}

/// The messages `flow` sent, in order: (id, sent at), from what the run observed.
fn flow_messages(
    obs: &relaymesh_sim::world::Observed,
    flow: usize,
) -> Vec<(relaymesh::core::MessageId, std::time::Duration)> {
    let mut v: Vec<_> =
        obs.sent.iter().filter(|(_, s)| s.flow == flow).map(|(id, s)| (*id, s.at)).collect();
    v.sort_by_key(|(id, at)| (*at, *id));
    v
}

#[test]
fn keyed_positions_cross_a_healed_link_as_the_newest_only_and_never_out_of_order() {
    // Two teams report their position every 5 s with a key, team-1 also a log without one;
    // the relay's link to county-hq is down from 2 to 12 min.
    let text = format!(
        "{TEAMS}{}",
        r#"
[[traffic]]
name = "pos-1"
from = "team-1"
to = "node:county-hq"
every = "5s"
size = 48
key = "pos/{from}"
start = "10s"
stop = "14m"

[[traffic]]
name = "pos-2"
from = "team-2"
to = "node:county-hq"
every = "5s"
size = 48
key = "pos/{from}"
start = "12s"
stop = "14m"

[[traffic]]
name = "log-1"
from = "team-1"
to = "node:county-hq"
every = "30s"
size = 200
start = "15s"
stop = "14m"

[[event]]
at = "2m"
action = "link_down"
link = "county-hq~relay-1/wireless"

[[event]]
at = "12m"
action = "link_up"
link = "county-hq~relay-1/wireless"
"#
    );
    let sc = scenario::parse(&text, "t.toml").unwrap();
    assert_eq!(sc.traffic[0].key.as_deref(), Some("pos/team-1"));
    assert_eq!(sc.traffic[2].key, None);
    let (r, obs) = relaymesh_sim::run_observed(&sc, sc.seed, &mut |_| {});
    let j = &r.json;
    assert!(r.failures.is_empty(), "{:?}\n{}", r.failures, r.text);
    let routine = &j["precedence"]["routine"];
    assert_eq!((n(routine, "lost"), n(routine, "held"), n(routine, "expired")), (0, 0, 0));
    let (cut, heal) = (std::time::Duration::from_secs(120), std::time::Duration::from_secs(720));
    let hq = 0;
    for flow in [0, 1] {
        let sent = flow_messages(&obs, flow);
        let delivered: Vec<_> = sent
            .iter()
            .filter_map(|(id, at)| obs.deliveries.get(&(*id, hq)).map(|t| (t[0], *at, *id)))
            .collect();
        // Never an older position after a newer one.
        let mut by_arrival = delivered.clone();
        by_arrival.sort();
        assert!(
            by_arrival.windows(2).all(|w| w[0].1 < w[1].1),
            "flow {flow}: a position arrived after a newer one: {by_arrival:?}"
        );
        // Of the ~120 positions sent during the cut, at most two crossed after the heal: the
        // newest, and perhaps the one relay-1 had offered over the link as it went silent
        // (later ones waited at the team, which had no route, so relay-1 never saw a newer
        // one and offers that stale copy first when the link returns; county-hq then marks
        // it superseded as the newest arrives). Every other one was superseded, not lost.
        let during: Vec<_> = sent.iter().filter(|(_, at)| *at > cut && *at < heal).collect();
        let crossed = during.iter().filter(|(id, _)| obs.deliveries.contains_key(&(*id, hq)));
        assert!(crossed.count() <= 2, "flow {flow}: {}", r.text);
        let superseded = during
            .iter()
            .filter(|(id, _)| {
                matches!(obs.withdrawn.get(&(*id, hq)), Some((Outcome::Superseded, _)))
            })
            .count();
        assert!(superseded + 2 >= during.len() && during.len() > 100, "flow {flow}: {}", r.text);
        // The last position sent is delivered.
        let (last, _) = sent.last().unwrap();
        assert!(obs.deliveries.contains_key(&(*last, hq)), "flow {flow}: the newest is missing");
    }
    // The log has no key: every entry crosses after the heal.
    let log = flow_messages(&obs, 2);
    assert!(log.iter().all(|(id, _)| obs.deliveries.contains_key(&(*id, hq))), "{}", r.text);
    let superseded = n(routine, "superseded");
    assert!(superseded > 200, "{}", r.text);
    assert_eq!(n(routine, "delivered") + superseded, n(routine, "pairs"), "{}", r.text);
    // Keyed positions delivered before a newer one arrived are marked withdrawn at county-hq,
    // and stay delivered.
    assert!(n(routine, "withdrawn_after_delivery") > 20, "{}", r.text);
    let up = j["events"].as_array().unwrap().iter().find(|e| e["action"] == "link_up").unwrap();
    let caught_up = up["caught_up_after_s"].as_f64().unwrap();
    assert!(caught_up < 30.0, "the backlog took {caught_up} s: {}", r.text);
}

/// county-hq sends team-1 one FLASH order at 2 min while team-1's radio is down (1 to 6 min),
/// and team-2 one at 1 min that arrives at once; then the events in `events`.
fn orders(events: &str) -> String {
    format!(
        "{TEAMS}{}{events}",
        r#"
[[traffic]]
name = "order"
from = "county-hq"
to = "node:team-1"
precedence = "flash"
every = "1h"
start = "2m"
stop = "2m"

[[traffic]]
name = "early"
from = "county-hq"
to = "node:team-2"
precedence = "flash"
every = "1h"
start = "1m"
stop = "1m"

[[event]]
at = "1m"
action = "link_down"
link = "relay-1~team-1/wireless"

[[event]]
at = "6m"
action = "link_up"
link = "relay-1~team-1/wireless"
"#
    )
}

#[test]
fn a_scripted_cancel_counts_the_pair_cancelled_not_lost_and_a_delivered_one_stays_delivered() {
    let r = run_text(&orders(
        r#"
[[event]]
at = "3m"
action = "cancel"
flow = "order"
reason = "sent to the wrong team"

[[event]]
at = "4m"
action = "cancel"
flow = 1
message = "first"

[[event]]
at = "4m"
action = "cancel"
flow = "order"
message = 3
"#,
    ));
    let j = &r.json;
    assert!(r.failures.is_empty(), "{:?}\n{}", r.failures, r.text);
    let flash = &j["precedence"]["flash"];
    assert_eq!(
        (n(flash, "pairs"), n(flash, "delivered"), n(flash, "cancelled"), n(flash, "lost")),
        (2, 1, 1, 0),
        "{}",
        r.text
    );
    // The order to team-2 arrived before its cancel: delivered, and marked withdrawn there.
    assert_eq!(n(flash, "withdrawn_after_delivery"), 1, "{}", r.text);
    assert_eq!(flash["delivery_ratio"], 1.0, "the cancelled pair is not owed: {}", r.text);
    let t1 = row(j, "team-1", "flash").unwrap();
    assert_eq!((n(t1, "cancelled"), n(t1, "delivered"), n(t1, "held")), (1, 0, 0), "{t1}");
    let cancels: Vec<&str> = j["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "cancel")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        cancels,
        ["order message 0", "early message 0", "order: no such message (1 sent so far)"],
        "{}",
        r.text
    );
    assert!(r.text.contains("cancelled"), "{}", r.text);
    assert!(r.html.contains("<th>cancelled</th>"));
}

#[test]
fn a_replacement_counts_the_old_pair_superseded_and_is_delivered_in_its_place() {
    let text = orders(
        r#"
[[event]]
at = "3m"
action = "replace"
flow = "order"
message = -1
"#,
    );
    let sc = scenario::parse(&text, "t.toml").unwrap();
    let (r, obs) = relaymesh_sim::run_observed(&sc, sc.seed, &mut |_| {});
    let j = &r.json;
    assert!(r.failures.is_empty(), "{:?}\n{}", r.failures, r.text);
    let t1 = row(j, "team-1", "flash").unwrap();
    assert_eq!(
        (n(t1, "pairs"), n(t1, "delivered"), n(t1, "superseded"), n(t1, "lost")),
        (2, 1, 1, 0),
        "{}",
        r.text
    );
    let order = flow_messages(&obs, 0);
    assert_eq!(order.len(), 2, "the order and its replacement");
    let (old, new) = (order[0].0, order[1].0);
    assert_eq!(obs.sent[&new].replaces, Some(old));
    let team1 = sc.node_index("team-1").unwrap();
    assert!(!obs.deliveries.contains_key(&(old, team1)), "the old order arrived");
    let at = obs.deliveries[&(new, team1)][0].as_secs_f64();
    assert!((360.0..380.0).contains(&at), "the replacement arrived at {at} s");
    let replace = j["events"].as_array().unwrap().iter().find(|e| e["action"] == "replace");
    assert_eq!(replace.unwrap()["target"], "order message 0 by message 1");
}

#[test]
fn steering_events_naming_an_unknown_flow_or_message_are_refused_with_the_line() {
    let base = orders("");
    // After the base: a blank line, [[event]], at; then the event's own lines, from 1.
    let before = base.lines().count() + 3;
    for (event, line, why) in [
        ("action = \"cancel\"\nflow = \"orders\"", 2, "unknown flow \"orders\""),
        ("action = \"cancel\"\nflow = 7", 2, "no flow 7"),
        ("action = \"cancel\"\nflow = 1.5", 2, "a name (a string) or an index"),
        ("action = \"replace\"", 1, "needs flow"),
        ("action = \"cancel\"\nflow = 0\nmessage = \"newest\"", 3, "message \"newest\""),
        ("action = \"replace\"\nflow = 0\nreason = \"x\"", 3, "takes no reason"),
    ] {
        let text = format!("{base}\n[[event]]\nat = \"2m\"\n{event}\n");
        let e = scenario::parse(&text, "t.toml").unwrap_err();
        assert_eq!(e.line, Some(before + line), "{why}: {e}");
        assert!(e.reason.contains(why), "{e}");
    }
    let keyed = |key: &str| {
        let text = base.replace("stop = \"2m\"\n", &format!("stop = \"2m\"\nkey = \"{key}\"\n"));
        scenario::parse(&text, "t.toml")
    };
    assert_eq!(keyed("orders/{from}").unwrap().traffic[0].key.as_deref(), Some("orders/county-hq"));
    assert!(keyed("orders/{to}").unwrap_err().reason.contains("placeholder"));
    assert!(keyed("orders/#").is_err());
    assert!(keyed("").is_err());
}

#[test]
fn keyed_outage_sends_a_fraction_of_the_bytes_over_the_healed_satellite_and_catches_up_at_once() {
    // The built-in, shortened: six teams, the satellite cut for 20 minutes from 5 min.
    let mut sc = built_in("keyed-outage");
    assert_eq!(sc.traffic.len(), 20);
    assert!(
        sc.traffic.iter().all(|t| t.key.as_deref().is_some_and(|k| k.starts_with("pos/team-")))
    );
    let minutes = |m: u64| std::time::Duration::from_secs(60 * m);
    sc.traffic.truncate(6);
    sc.nodes.truncate(8);
    sc.links.truncate(7);
    assert_eq!(
        (sc.nodes[7].id.as_str(), sc.links[6].id.as_str()),
        ("team-06", "township-relay~team-06/wireless")
    );
    for t in &mut sc.traffic {
        t.stop = minutes(35);
    }
    sc.events[0].at = minutes(5);
    sc.events[1].at = minutes(25);
    sc.duration = minutes(40);
    let keyed = relaymesh_sim::run(&sc, sc.seed, &mut |_| {});
    let mut plain = sc.clone();
    assert!(plain.without_keys());
    let plain = relaymesh_sim::run(&plain, plain.seed, &mut |_| {});
    let satellite = |r: &relaymesh_sim::Report| {
        r.json["links"].as_array().unwrap().iter().find(|l| l["medium"] == "satellite").unwrap()
            ["bytes"]
            .as_u64()
            .unwrap()
    };
    let caught_up = |r: &relaymesh_sim::Report| {
        let up = r.json["events"].as_array().unwrap().iter().find(|e| e["action"] == "link_up");
        up.unwrap()["caught_up_after_s"].as_f64().unwrap()
    };
    for r in [&keyed, &plain] {
        assert!(r.failures.is_empty(), "{:?}\n{}", r.failures, r.text);
        assert_eq!(r.json["invariants"]["lost"], 0, "{}", r.text);
    }
    let (k, p) = (&keyed.json["precedence"]["routine"], &plain.json["precedence"]["routine"]);
    assert_eq!(n(k, "pairs"), n(p, "pairs"), "the same positions were sent");
    // 20 minutes at one position every 3 s, six teams: 2,400 positions waited at the relay.
    // With keys a handful of them crossed; without, all, at over 80 bytes each on the
    // satellite (the rest of the traffic is the same in both runs).
    assert!(n(k, "superseded") > 2_300, "{}", keyed.text);
    assert_eq!((n(p, "superseded"), n(p, "delivered")), (0, n(p, "pairs")), "{}", plain.text);
    let saved = satellite(&plain).saturating_sub(satellite(&keyed));
    assert!(saved > 80 * 2_300, "{saved} B saved:\n{}\n{}", keyed.text, plain.text);
    assert!(caught_up(&keyed) < 15.0, "{}", keyed.text);
    assert!(caught_up(&plain) > 2.0 * caught_up(&keyed), "{}\n{}", keyed.text, plain.text);
    assert!(plain.json["scenario"] == keyed.json["scenario"]);
}

#[test]
fn cap_warnings_reach_every_township_within_their_objectives_as_valid_cap() {
    let sc = built_in("cap-warnings");
    let r = relaymesh_sim::run(&sc, sc.seed, &mut |_| {});
    assert!(r.failures.is_empty(), "{:?}\n{}", r.failures, r.text);
    let per = r.json["destinations"].as_array().unwrap();
    for t in ["township-01", "township-02", "township-03"] {
        let flash = per
            .iter()
            .find(|d| d["node"] == t && d["precedence"] == "flash")
            .unwrap_or_else(|| panic!("no FLASH row for {t}: {}", r.json["destinations"]));
        assert_eq!(flash["delivered"], flash["pairs"], "{t}: {flash}");
    }
    // What the flows send is CAP the gateway would take, at the flow's precedence.
    let mapping = relaymesh::gateway::cap::Mapping::default();
    for t in &sc.traffic {
        if t.content != relaymesh_sim::scenario::Content::Cap {
            continue;
        }
        let xml = relaymesh_sim::world::cap_alert(t, "county-hq", Duration::from_secs(600), 9);
        let alert = relaymesh::gateway::cap::parse(std::str::from_utf8(&xml).unwrap()).unwrap();
        let plan = mapping.plan(&alert, alert.sent).unwrap();
        assert_eq!(plan.precedence, t.precedence);
        assert_eq!(plan.lifetime, t.lifetime);
        assert_eq!(plan.status, relaymesh::core::TrafficStatus::Exercise);
        assert!(xml.len() >= t.size, "{} bytes, wanted {}", xml.len(), t.size);
    }
}

#[test]
fn a_small_city_of_three_deployments_loses_nothing_and_keeps_each_countys_groups_at_home() {
    let text = scenario::city(2, 6, "12m", false);
    let sc = scenario::parse(&text, "city:2:6:12m").unwrap();
    assert_eq!(sc.deployments.len(), 3);
    let r = relaymesh_sim::run(&sc, sc.seed, &mut |_| {});
    assert!(r.failures.is_empty(), "{:?}\n{}", r.failures, r.text);
    let d = &r.json["deployments"];
    let crossing = &d["crossing"];
    let n = |v: &Value| v.as_u64().unwrap();
    assert!(n(&crossing["delivered"]) > 0, "{}", r.text);
    // Delivered, refused by the federation (each county's field team writing to the city),
    // or still on its way when the run ended (sent in its last seconds).
    let settled = n(&crossing["delivered"]) + n(&crossing["refused"]) + n(&crossing["held"]);
    assert_eq!(settled, n(&crossing["pairs"]), "{}", r.text);
    assert!(n(&crossing["refused"]) >= 2, "{}", r.text);
    assert_eq!(crossing["lost"], 0);
    // Each county's FLASH to its townships stays in the county; the city's alerts reach
    // every county's subscribers.
    for c in ["c01", "c02"] {
        assert_eq!(d["each"][c]["lost"], 0);
        assert!(d["each"][c]["pairs"].as_u64().unwrap() > 0);
    }
    assert_eq!(d["links_between"].as_array().unwrap().len(), 3, "two satellite links and the ring");
    assert!(r.text.contains("(crossing)"), "{}", r.text);
}

#[test]
fn what_a_federation_refuses_is_counted_refused_not_lost() {
    let text = r#"
name = "refusals"
duration = "5m"
[federation]
to = ["node:*"]
precedences = ["immediate", "priority", "routine"]
roles = { command = "command" }

[[node]]
id = "hq"
role = "command"
border = true

[[node]]
id = "city-hq"
role = "command"
deployment = "city"
border = true

[[link]]
a = "hq"
b = "city-hq"
medium = "satellite"

[[traffic]]
from = "city-hq"
to = "node:hq"
precedence = "flash"
every = "1m"
size = 200
stop = "4m"

[[traffic]]
from = "city-hq"
to = "node:hq"
precedence = "immediate"
every = "1m"
size = 200
stop = "4m"
"#;
    let sc = scenario::parse(text, "refusals.toml").unwrap();
    let r = relaymesh_sim::run(&sc, 1, &mut |_| {});
    let p = &r.json["precedence"];
    assert!(p["flash"]["refused"].as_u64().unwrap() >= 4, "{}", r.text);
    assert_eq!(p["flash"]["delivered"], 0);
    assert_eq!(p["flash"]["lost"], 0, "{}", r.text);
    assert_eq!(p["immediate"]["delivered"], p["immediate"]["pairs"], "{}", r.text);
    assert!(r.failures.is_empty(), "{:?}", r.failures);
}

#[test]
fn a_mesh_in_areas_loses_nothing_and_floods_fewer_adverts_than_one_without() {
    let run = |areas: bool| {
        let text = scenario::mesh(40, true, "12m", areas);
        assert_eq!(text.contains("area = \"area-1\""), areas);
        let mut sc = scenario::parse(&text, "mesh:40:12m").unwrap();
        sc.check_invariants = true; // every node's, after every batch
        let r = relaymesh_sim::run(&sc, sc.seed, &mut |_| {});
        assert_eq!(r.json["invariants"]["checked"], true);
        assert_eq!(r.json["invariants"]["broken"], serde_json::json!([]), "{}", r.text);
        assert!(r.failures.is_empty(), "{:?}\n{}", r.failures, r.text);
        let flash = &r.json["precedence"]["flash"];
        assert_eq!(flash["delivered"], flash["pairs"], "{}", r.text);
        for p in ["flash", "priority"] {
            assert_eq!(r.json["precedence"][p]["lost"], 0, "{}", r.text);
            assert_eq!(r.json["precedence"][p]["duplicates"], 0, "{}", r.text);
        }
        r.json["control"]["adverts_per_min"].as_f64().unwrap()
    };
    let (whole, split) = (run(false), run(true));
    // Townships and field teams of one area never hear of another's changes.
    assert!(split < 0.75 * whole, "{split} adverts a minute in areas, {whole} without");
}

#[test]
fn a_bad_area_and_areas_beside_another_deployment_are_refused_with_the_line() {
    let base = "name = \"a\"\nduration = \"1m\"\n[[node]]\nid = \"hq\"\nrole = \"command\"\narea = \"north\"\n[[node]]\nid = \"t1\"\nrole = \"township\"\nAREA\n";
    let sc = scenario::parse(&base.replace("AREA", "area = \"south\""), "a.toml").unwrap();
    assert_eq!(sc.nodes[0].area, "north");
    assert_eq!(sc.nodes[1].area, "south");
    let err =
        scenario::parse(&base.replace("AREA", "area = \"South Side\""), "a.toml").unwrap_err();
    assert!(err.to_string().contains("a.toml:10"), "{err}");
    assert!(err.to_string().contains("an area is named like a node"), "{err}");
    let err =
        scenario::parse(&base.replace("AREA", "deployment = \"city\""), "a.toml").unwrap_err();
    assert!(err.to_string().contains("a.toml:6"), "{err}");
    assert!(err.to_string().contains("areas and several deployments together"), "{err}");
}
