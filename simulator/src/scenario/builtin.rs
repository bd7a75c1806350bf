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

/// The built-in `city`: a city centre and ten counties of twenty nodes, each under its own
/// CA, for an hour, with failures inside one county and on the city links
/// ([`city`]).
pub fn city_built_in() -> String {
    city(10, 20, "1h", true).replacen("name = \"city-10x20\"", "name = \"city\"", 1)
}

/// A built-in scenario by name.
pub fn built_in(name: &str) -> Option<Result<Scenario, ScenarioError>> {
    if name == "city" {
        return Some(parse(&city_built_in(), "<built-in city>"));
    }
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
///
/// With `areas` the mesh is split into areas of about a hundred nodes or more: the relay tree's
/// subtrees at depth `log2(n / 100)` (at least 1) are `area-0`, `area-1`, ..., each with the
/// members hanging off its relays; the command node, the relays above and their members are
/// `backbone`. Borders: the subtrees' roots and their parents, and the command node and the
/// townships with satellite links to it.
pub fn mesh(n: usize, traffic: bool, duration: &str, areas: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let (name, what) = match areas {
        true => (format!("mesh-{n}-areas"), ", in areas"),
        false => (format!("mesh-{n}"), ""),
    };
    let _ = writeln!(
        out,
        "name = \"{name}\"\ndescription = \"{n} nodes: a command node, a relay backbone, townships and field teams{what}\"\nduration = \"{duration}\"\nseed = 7\n"
    );
    let depth = match areas {
        true => ((n as f64 / 100.0).log2().floor() as u32).max(1),
        false => 0,
    };
    let region = Region { hq: "county-hq".into(), prefix: String::new(), deployment: None, depth };
    region.write(&mut out, n, traffic);
    let _ = writeln!(out, "[expect]\nlost = 0\nduplicates = 0");
    out
}

/// One region of a generated scenario: `n` nodes laid out as [`mesh`] describes, its ids
/// starting with `prefix` (the command node is `hq`), all of `deployment` if given (the
/// command node its border), split into areas at relay-tree `depth` if it is not 0.
struct Region {
    hq: String,
    prefix: String,
    deployment: Option<String>,
    depth: u32,
}

impl Region {
    /// The area of relay `i` (of the relay tree, `i`'s parent being `(i - 1) / 2`).
    fn area(&self, mut i: usize) -> Option<String> {
        if self.depth == 0 {
            return None;
        }
        let first = (1usize << self.depth) - 1; // the first relay at that depth
        if i < first {
            return Some("backbone".into());
        }
        while i > 2 * first {
            i = (i - 1) / 2;
        }
        Some(format!("area-{}", i - first))
    }

    /// Its relays and members (townships and field teams), by id.
    fn ids(&self, n: usize) -> (Vec<String>, Vec<String>) {
        let p = &self.prefix;
        let relays: Vec<String> =
            (0..(n / 10).max(1)).map(|i| format!("{p}relay-{i:04}")).collect();
        let members =
            (0..n.saturating_sub(1 + relays.len())).map(|i| format!("{p}node-{i:05}")).collect();
        (relays, members)
    }

    fn node(&self, out: &mut String, id: &str, role: &str, area: Option<String>, more: &str) {
        use std::fmt::Write as _;
        let _ = write!(out, "[[node]]\nid = \"{id}\"\nrole = \"{role}\"\n");
        if let Some(d) = &self.deployment {
            let _ = writeln!(out, "deployment = \"{d}\"");
        }
        if let Some(a) = area {
            let _ = writeln!(out, "area = \"{a}\"");
        }
        let _ = writeln!(out, "{more}");
    }

    fn write(&self, out: &mut String, n: usize, traffic: bool) {
        use std::fmt::Write as _;
        let hq = &self.hq;
        // A county of a city: its command node is the border, and it and the townships
        // hear the city's alerts.
        let city = self.deployment.is_some();
        let alerts = "subscribe = [\"city/alerts/#\"]\n";
        let more = if city { format!("border = true\n{alerts}") } else { String::new() };
        self.node(out, hq, "command", self.area(0), &more);
        let (relays, members) = self.ids(n);
        for (i, r) in relays.iter().enumerate() {
            self.node(out, r, "relay", self.area(i), "");
        }
        for (i, m) in members.iter().enumerate() {
            let role = if i % 4 == 0 { "township" } else { "field" };
            let more = if city && i % 4 == 0 { alerts } else { "" };
            self.node(out, m, role, self.area(i % relays.len()), more);
        }
        let link = |out: &mut String, a: &str, b: &str, delay: &str, loss: f64| {
            let _ = writeln!(
                out,
                "[[link]]\na = \"{a}\"\nb = \"{b}\"\nmedium = \"wireless\"\ndelay = \"{delay}\"\nbandwidth = \"5Mbps\"\nloss = {loss}\n"
            );
        };
        for (i, r) in relays.iter().enumerate() {
            let parent = if i == 0 { hq.clone() } else { relays[(i - 1) / 2].clone() };
            link(out, &parent, r, "8ms", 0.0);
        }
        for (i, m) in members.iter().enumerate() {
            link(out, &relays[i % relays.len()], m, "10ms", 0.01);
        }
        // Every tenth township also has a satellite terminal to the county (the path that is
        // left when the radio backbone fails, and the costly one whose link-state share is
        // capped).
        for m in members.iter().step_by(40) {
            let _ = writeln!(
                out,
                "[[link]]\na = \"{hq}\"\nb = \"{m}\"\nmedium = \"satellite\"\ndelay = \"300ms\"\nbandwidth = \"1Mbps\"\n"
            );
        }
        if traffic {
            for m in members.iter().step_by(4) {
                let _ = writeln!(
                    out,
                    "[[traffic]]\nfrom = \"{m}\"\nto = \"node:{hq}\"\nprecedence = \"priority\"\nevery = \"5m\"\nsize = 512\nstart = \"2m\"\n"
                );
            }
            let _ = writeln!(
                out,
                "[[traffic]]\nfrom = \"{hq}\"\nto = \"group:role:township\"\nprecedence = \"flash\"\nevery = \"10m\"\nsize = 256\nstart = \"3m\"\n"
            );
        }
    }
}

/// A generated city (`relaymesh-sim run city:<counties>:<nodes>`): a city centre and
/// `counties` counties of `per_county` nodes, each its own deployment under its own CA. Each
/// county is laid out as [`mesh`] (ids `cNN-...`, its command node `cNN-hq` the border); the
/// city centre (`city-hq`, its border, with an operations node and a relay) links to every
/// county's border over satellite, and the county borders form a ring over public networks.
/// What crosses: orders to nodes and the city's alert topics, from command nodes and
/// townships. Each county reports to the city and the city orders each county; the city
/// publishes alerts (`topic:city/alerts/...`) that every county command node and township
/// subscribes to; inside each county the traffic of [`mesh`]; and one field team of each
/// county writes to the city directly, which the federation refuses (field teams are not among
/// the roles it lets send across). With `failures`, one county's
/// radio backbone and the satellite links to two counties fail for a while, and the public
/// ring goes down for the last part of the run.
pub fn city(counties: usize, per_county: usize, duration: &str, failures: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "name = \"city-{counties}x{per_county}\"\ndescription = \"a city centre and {counties} counties of {per_county} nodes, each under its own CA\"\nduration = \"{duration}\"\nseed = 11\n"
    );
    let _ = writeln!(
        out,
        "[federation]\nto = [\"node:*\", \"topic:city/#\"]\nroles = {{ command = \"command\", township = \"township\" }}\n"
    );
    let centre = [
        ("city-hq", "command", true),
        ("city-ops", "command", false),
        ("city-relay", "relay", false),
    ];
    for (id, role, border) in centre {
        let b = if border { "border = true\n" } else { "" };
        let _ =
            writeln!(out, "[[node]]\nid = \"{id}\"\nrole = \"{role}\"\ndeployment = \"city\"\n{b}");
    }
    for (a, b) in [("city-hq", "city-relay"), ("city-relay", "city-ops")] {
        let _ = writeln!(
            out,
            "[[link]]\na = \"{a}\"\nb = \"{b}\"\nmedium = \"wireless\"\ndelay = \"2ms\"\nbandwidth = \"50Mbps\"\n"
        );
    }
    let names: Vec<String> = (1..=counties).map(|c| format!("c{c:02}")).collect();
    for name in &names {
        let region = Region {
            depth: 0,
            hq: format!("{name}-hq"),
            prefix: format!("{name}-"),
            deployment: Some(name.clone()),
        };
        region.write(&mut out, per_county, true);
        let hq = &region.hq;
        let _ = writeln!(
            out,
            "[[link]]\na = \"city-hq\"\nb = \"{hq}\"\nmedium = \"satellite\"\ndelay = \"300ms\"\nbandwidth = \"2Mbps\"\n"
        );
        let _ = writeln!(
            out,
            "[[traffic]]\nfrom = \"{hq}\"\nto = \"node:city-hq\"\nprecedence = \"priority\"\nevery = \"5m\"\nsize = 1024\nstart = \"2m\"\n"
        );
        let _ = writeln!(
            out,
            "[[traffic]]\nfrom = \"city-ops\"\nto = \"node:{hq}\"\nprecedence = \"immediate\"\nevery = \"10m\"\nsize = 400\nstart = \"4m\"\n"
        );
        // A field team writing to the city directly: field teams are not among the roles the
        // federation lets send across, so the city refuses it (and says why).
        if let Some(team) = region.ids(per_county).1.get(1) {
            let _ = writeln!(
                out,
                "[[traffic]]\nfrom = \"{team}\"\nto = \"node:city-hq\"\nprecedence = \"routine\"\nevery = \"15m\"\nsize = 300\nstart = \"6m\"\n"
            );
        }
    }
    for (i, name) in names.iter().enumerate().skip(usize::from(counties < 3)) {
        let next = &names[(i + 1) % counties];
        if next != name {
            let _ = writeln!(
                out,
                "[[link]]\na = \"{name}-hq\"\nb = \"{next}-hq\"\nmedium = \"public\"\ndelay = \"25ms\"\nbandwidth = \"20Mbps\"\n"
            );
        }
    }
    let _ = writeln!(
        out,
        "[[traffic]]\nfrom = \"city-hq\"\nto = \"topic:city/alerts/weather\"\nprecedence = \"flash\"\nevery = \"15m\"\nsize = 300\nstart = \"5m\"\nlifetime = \"2h\"\n"
    );
    if failures {
        let d = relaymesh::units::parse_duration(duration)
            .unwrap_or(std::time::Duration::from_secs(3600));
        let at = |f: f64| relaymesh::units::format_duration(d.mul_f64(f));
        let c = |i: usize| &names[i.min(counties - 1)];
        let events = [
            (at(0.2), "link_down", format!("{0}-hq~{0}-relay-0000/wireless", c(2))),
            (at(0.45), "link_up", format!("{0}-hq~{0}-relay-0000/wireless", c(2))),
            (at(0.3), "link_down", format!("city-hq~{}-hq/satellite", c(0))),
            (at(0.3), "link_down", format!("city-hq~{}-hq/satellite", c(5))),
            (at(0.6), "link_up", format!("city-hq~{}-hq/satellite", c(0))),
            (at(0.6), "link_up", format!("city-hq~{}-hq/satellite", c(5))),
        ];
        let mut events: Vec<_> = events.into_iter().collect();
        if counties >= 3 {
            for (i, name) in names.iter().enumerate() {
                let next = &names[(i + 1) % counties];
                events.push((at(0.7), "link_down", format!("{name}-hq~{next}-hq/public")));
            }
        }
        events.sort_by_key(|(t, _, _)| relaymesh::units::parse_duration(t).unwrap_or_default());
        events.dedup();
        for (t, action, link) in events {
            let _ = writeln!(
                out,
                "[[event]]\nat = \"{t}\"\naction = \"{action}\"\nlink = \"{link}\"\n"
            );
        }
    }
    let _ = writeln!(out, "[expect]\nlost = 0\nduplicates = 0");
    out
}
