//! The scenarios built into the binary, and the generated regional mesh.

use super::{Scenario, ScenarioError, parse};

/// The scenarios built into the binary: (name, file text).
pub const BUILT_IN: &[(&str, &str)] = &[
    ("county-flood", include_str!("../../../scenarios/county-flood.toml")),
    ("satellite-bulk", include_str!("../../../scenarios/satellite-bulk.toml")),
    ("smoke", include_str!("../../../scenarios/smoke.toml")),
    ("chaos-10", include_str!("../../../scenarios/chaos-10.toml")),
    ("chaos-30", include_str!("../../../scenarios/chaos-30.toml")),
    ("township-cutoff", include_str!("../../../scenarios/township-cutoff.toml")),
    ("keyed-outage", include_str!("../../../scenarios/keyed-outage.toml")),
    ("late-routine", include_str!("../../../scenarios/late-routine.toml")),
    ("cap-warnings", include_str!("../../../scenarios/cap-warnings.toml")),
    ("satellite-object", include_str!("../../../scenarios/satellite-object.toml")),
];

/// A built-in scenario by name.
pub fn built_in(name: &str) -> Option<Result<Scenario, ScenarioError>> {
    BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| parse(text, &format!("<built-in {n}>")))
}

/// A generated regional mesh of `n` nodes (`relaymesh-sim run mesh:<n>`): a command node, a
/// tree of wireless relays (one per ten nodes), and townships and field teams hanging off the
/// relays, every tenth township with a satellite link to the command node besides; every fourth
/// member reports to the command node, which sends FLASH to the townships.
/// With `traffic` false the mesh is at rest (for measuring routing and probe traffic).
pub fn mesh(n: usize, traffic: bool, duration: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "name = \"mesh-{n}\"\ndescription = \"{n} nodes: a command node, a relay backbone, townships and field teams\"\nduration = \"{duration}\"\nseed = 7\n"
    );
    let _ = writeln!(out, "[[node]]\nid = \"county-hq\"\nrole = \"command\"\n");
    let relays: Vec<String> = (0..(n / 10).max(1)).map(|i| format!("relay-{i:04}")).collect();
    for r in &relays {
        let _ = writeln!(out, "[[node]]\nid = \"{r}\"\nrole = \"relay\"\n");
    }
    let members: Vec<String> =
        (0..n.saturating_sub(1 + relays.len())).map(|i| format!("node-{i:05}")).collect();
    for (i, m) in members.iter().enumerate() {
        let role = if i % 4 == 0 { "township" } else { "field" };
        let _ = writeln!(out, "[[node]]\nid = \"{m}\"\nrole = \"{role}\"\n");
    }
    let link = |out: &mut String, a: &str, b: &str, delay: &str, loss: f64| {
        let _ = writeln!(
            out,
            "[[link]]\na = \"{a}\"\nb = \"{b}\"\nmedium = \"wireless\"\ndelay = \"{delay}\"\nbandwidth = \"5Mbps\"\nloss = {loss}\n"
        );
    };
    for (i, r) in relays.iter().enumerate() {
        let parent = if i == 0 { "county-hq".to_owned() } else { relays[(i - 1) / 2].clone() };
        link(&mut out, &parent, r, "8ms", 0.0);
    }
    for (i, m) in members.iter().enumerate() {
        link(&mut out, &relays[i % relays.len()], m, "10ms", 0.01);
    }
    // Every tenth township also has a satellite terminal to the county (the path that is left
    // when the radio backbone fails, and the costly one whose link-state share is capped).
    for m in members.iter().step_by(40) {
        let _ = writeln!(
            out,
            "[[link]]\na = \"county-hq\"\nb = \"{m}\"\nmedium = \"satellite\"\ndelay = \"300ms\"\nbandwidth = \"1Mbps\"\n"
        );
    }
    if traffic {
        for m in members.iter().step_by(4) {
            let _ = writeln!(
                out,
                "[[traffic]]\nfrom = \"{m}\"\nto = \"node:county-hq\"\nprecedence = \"priority\"\nevery = \"5m\"\nsize = 512\nstart = \"2m\"\n"
            );
        }
        let _ = writeln!(
            out,
            "[[traffic]]\nfrom = \"county-hq\"\nto = \"group:role:township\"\nprecedence = \"flash\"\nevery = \"10m\"\nsize = 256\nstart = \"3m\"\n"
        );
    }
    let _ = writeln!(out, "[expect]\nlost = 0\nduplicates = 0");
    out
}
