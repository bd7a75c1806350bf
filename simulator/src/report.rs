//! From what a run observed to the report: per-precedence delivery and latency, per-link load,
//! per-event recovery, the invariants of the README's "Guarantees" and the scenario's `[expect]`.
//! Rendered as a terminal table, one JSON object, and an HTML page with SVG plots.
//!
//! Accounting is per (message, intended recipient) pair ([`crate::pairs`]), because one group or
//! topic message is owed to several nodes: every pair is delivered, cancelled or superseded by
//! its sender, expired, refused, still held in some store, or lost. Intended recipients come
//! from the scenario ([`crate::oracle`]).
//!
//! Per event: after a failure (`link_down`, `node_crash`, `partition`, `degrade`),
//! `recovered_after_s`, the time until traffic flowed again (`recovery`); after a repair
//! (`link_up`, `heal`, `node_restart`), `caught_up_after_s`, the time until the last message
//! sent before it and delivered after it arrived: how long the backlog took to cross
//! (`catch_up`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use relaymesh::core::{MessageId, Precedence};
use relaymesh::units::format_duration;
use serde_json::{Value, json};

use crate::pairs::{self, Fate, ms, percentile};
use crate::scenario::Scenario;
use crate::world::{Observed, Sent};
use relaymesh::shell::traffic::DirectionBytes;

/// Payload bytes over all bytes on the link (`None` for an idle link), to four places.
fn efficiency(payload: u64, bytes: u64) -> Option<f64> {
    (bytes > 0).then(|| (payload as f64 / bytes as f64 * 1e4).round() / 1e4)
}

/// The finished report.
#[derive(Debug)]
pub struct Report {
    pub json: Value,
    pub failures: Vec<String>,
    pub text: String,
    pub html: String,
}

/// Builds the report. `wall` is the run's wall-clock time; it and `speedup` are the only
/// fields that differ between two runs of the same scenario and seed.
pub fn build(sc: &Scenario, seed: u64, obs: &Observed, wall: Duration) -> Report {
    // Deterministic order: by send time, then id.
    let mut sent: Vec<(&MessageId, &Sent)> = obs.sent.iter().collect();
    sent.sort_by_key(|(id, s)| (s.at, **id));
    let accounts = pairs::account(obs, &sent);
    let (classes, fates) = (&accounts.classes, &accounts.fates);
    let lost: u64 = classes.values().map(|c| c.lost).sum();
    let unfounded: u64 = classes.values().map(|c| c.unfounded).sum();
    let duplicates: u64 = classes.values().map(|c| c.duplicates).sum();
    let unintended: u64 = classes.values().map(|c| c.unintended).sum();
    let starved = starvation(&sent, fates);
    let virtual_s = obs.virtual_time.as_secs_f64();
    let wall_s = wall.as_secs_f64();

    let precedence_json: serde_json::Map<String, Value> = Precedence::DESCENDING
        .iter()
        .map(|p| {
            let c = &classes[p];
            let l = &c.latencies;
            let mut row = c.counts_json();
            row.insert("sent".into(), json!(c.pairs)); // the pairs, kept for older readers
            row.insert("messages".into(), json!(c.messages));
            row.insert("no_destinations".into(), json!(c.no_destinations));
            row.insert("delivery_ratio".into(), json!(c.ratio()));
            // Pairs past their delivery objective at the origin (ever, and still at the end).
            let late = obs.overdue.values().filter(|(q, _)| q == p);
            row.insert("overdue".into(), json!(late.clone().count()));
            row.insert("overdue_open".into(), json!(late.filter(|(_, open)| *open).count()));
            row.insert("escalated".into(), json!(obs.escalated[p.index()]));
            row.insert(
                "latency_ms".into(),
                json!({
                    "p50": ms(percentile(l, 0.5)),
                    "p90": ms(percentile(l, 0.9)),
                    "p99": ms(percentile(l, 0.99)),
                    "max": ms(l.last().copied()),
                }),
            );
            (p.as_str().to_owned(), Value::Object(row))
        })
        .collect();

    let links_json: Vec<Value> = obs
        .links
        .iter()
        .map(|l| {
            let bytes: u64 = l.directions.iter().map(|d| d.bytes).sum();
            let util = l
                .directions
                .iter()
                .map(|d| d.bytes as f64 * 8.0 / (l.bandwidth_bps as f64 * virtual_s.max(1e-9)))
                .fold(0.0, f64::max);
            let carried = obs.link_bytes.get(&l.id).copied().unwrap_or_default();
            let sum = |f: fn(&DirectionBytes) -> u64| carried.iter().map(f).sum::<u64>();
            let payload = sum(|d| d.payload);
            json!({
                "id": l.id,
                "medium": l.medium.as_str(),
                "bytes": bytes,
                "utilisation": (util * 1e4).round() / 1e4,
                "offers": sum(|d| d.offers),
                "payload_bytes": payload,
                "framing_bytes": sum(|d| d.offer_bytes.saturating_sub(d.payload)),
                "control_bytes": sum(|d| d.control_bytes + d.datagram_bytes),
                "payload_efficiency": efficiency(payload, bytes),
                "down_s": (l.down.as_secs_f64() * 1e3).round() / 1e3,
                "packets": l.directions.iter().map(|d| d.packets).sum::<u64>(),
                "dropped": l.directions.iter().map(|d| d.dropped_loss + d.dropped_queue + d.dropped_cut + d.dropped_mtu).sum::<u64>(),
            })
        })
        .collect();

    // Per medium: what the links of that medium carried, and how much of it was payload.
    let mut media: BTreeMap<&str, [u64; 5]> = BTreeMap::new();
    for l in &links_json {
        let m = media.entry(l["medium"].as_str().unwrap_or("?")).or_default();
        for (i, k) in ["bytes", "payload_bytes", "framing_bytes", "control_bytes", "offers"]
            .iter()
            .enumerate()
        {
            m[i] += l[*k].as_u64().unwrap_or(0);
        }
    }
    let media_json: serde_json::Map<String, Value> = media
        .iter()
        .map(|(m, [bytes, payload, framing, control, offers])| {
            let per_offer = (*offers > 0).then(|| (*framing as f64 / *offers as f64).round());
            let v = json!({
                "bytes": bytes,
                "payload_bytes": payload,
                "framing_bytes": framing,
                "control_bytes": control,
                "offers": offers,
                "framing_per_offer": per_offer,
                "payload_efficiency": efficiency(*payload, *bytes),
            });
            ((*m).to_owned(), v)
        })
        .collect();

    let events_json: Vec<Value> = obs
        .events
        .iter()
        .map(|e| {
            let failure = matches!(e.action, "link_down" | "node_crash" | "partition" | "degrade");
            let repair = matches!(e.action, "link_up" | "heal" | "node_restart");
            let recovered = if failure { recovery(sc, e.at, &sent, fates) } else { None };
            let caught_up = if repair { catch_up(e.at, &sent, fates) } else { None };
            let secs = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e3).round() / 1e3);
            json!({
                "at_s": e.at.as_secs_f64(),
                "action": e.action,
                "target": e.target,
                "random": e.random,
                "recovered_after_s": secs(recovered),
                "caught_up_after_s": secs(caught_up),
            })
        })
        .collect();

    let mut failures = Vec::new();
    if lost > 0 {
        failures.push(format!("invariant: {lost} (message, intended recipient) pairs lost (not delivered, expired, refused or held)"));
    }
    if duplicates > 0 {
        failures.push(format!("invariant: {duplicates} duplicate deliveries"));
    }
    if unfounded > 0 {
        failures.push(format!("invariant: {unfounded} (message, intended recipient) pairs dropped for a cancel or newer message nobody sent"));
    }
    for v in &obs.violations {
        failures.push(format!("invariant broken inside a node: {v}"));
    }
    let x = &sc.expect;
    if let Some(max) = x.lost
        && lost > max
    {
        failures.push(format!("expect.lost: {lost} > {max}"));
    }
    if let Some(max) = x.duplicates
        && duplicates > max
    {
        failures.push(format!("expect.duplicates: {duplicates} > {max}"));
    }
    if let Some(max) = x.starved
        && starved > max
    {
        failures.push(format!("expect.starved: {starved} > {max}"));
    }
    for (p, want) in &x.delivery_ratio {
        let c = &classes[p];
        let got = c.ratio().unwrap_or(1.0);
        if got + 1e-12 < *want {
            failures.push(format!("expect.delivery_ratio.{p}: {got:.4} < {want}"));
        }
    }
    for (p, max) in &x.overdue {
        let got = obs.overdue.values().filter(|(q, _)| q == p).count() as u64;
        if got > *max {
            failures.push(format!("expect.overdue.{p}: {got} > {max}"));
        }
    }
    for (p, want) in &x.latency_p99 {
        match percentile(&classes[p].latencies, 0.99) {
            Some(got) if got > *want => failures.push(format!(
                "expect.latency_p99.{p}: {} > {}",
                format_duration(got),
                format_duration(*want)
            )),
            None if classes[p].pairs > 0 => {
                failures.push(format!("expect.latency_p99.{p}: nothing delivered"))
            }
            _ => {}
        }
    }

    let objects_json = objects(sc, obs, &sent, &links_json);
    let deployments_json = deployments(sc, &sent, fates, &links_json, virtual_s);
    let json = json!({
        "scenario": sc.name,
        "seed": seed,
        "virtual_s": virtual_s,
        "wall_s": wall_s,
        "speedup": if wall_s > 0.0 { virtual_s / wall_s } else { 0.0 },
        "nodes": sc.nodes.len(),
        "precedence": precedence_json,
        "links": links_json,
        "media": media_json,
        "events": events_json,
        "not_accepted": obs.not_accepted.values().sum::<u64>(),
        "control": {
            "adverts_per_min": obs.control.adverts as f64 * 60.0 / virtual_s.max(1e-9),
            "advert_bytes_per_min": obs.control.advert_bytes as f64 * 60.0 / virtual_s.max(1e-9),
            "probes_per_min": obs.control.probes as f64 * 60.0 / virtual_s.max(1e-9),
            "link_bytes_per_min": obs.links.iter().flat_map(|l| l.directions.iter()).map(|d| d.bytes).sum::<u64>() as f64 * 60.0 / virtual_s.max(1e-9),
        },
        "invariants": {
            "lost": lost,
            "duplicates": duplicates,
            "starved": starved,
            "unfounded": unfounded,
            "checked": sc.check_invariants,
            "broken": obs.violations,
        },
        "unintended": unintended,
        "destinations": pairs::destinations_json(sc, &accounts),
        "objects": objects_json,
        "deployments": deployments_json,
        "expect": { "passed": failures.is_empty(), "failures": failures },
    });
    let text = table(&json);
    let html = crate::html::page(
        sc,
        &json,
        obs,
        &classes.iter().map(|(p, c)| (*p, c.latencies.clone())).collect(),
    );
    Report { json, failures, text, html }
}

/// With several deployments: per deployment, the pairs whose destination is one of its nodes
/// (what became of them, and delivery latency), the pairs that crossed between deployments, and
/// what the links between deployments carried. `null` with one deployment.
fn deployments(
    sc: &Scenario,
    sent: &[(&MessageId, &Sent)],
    fates: &std::collections::HashMap<(MessageId, usize), (pairs::Fate, Option<Duration>)>,
    links: &[Value],
    virtual_s: f64,
) -> Value {
    if sc.deployments.len() < 2 {
        return Value::Null;
    }
    #[derive(Default)]
    struct Tally {
        pairs: u64,
        delivered: u64,
        refused: u64,
        held: u64,
        lost: u64,
        latencies: Vec<Duration>,
    }
    impl Tally {
        fn add(&mut self, fate: pairs::Fate, at: Duration, first: Option<Duration>) {
            self.pairs += 1;
            match fate {
                pairs::Fate::Delivered => self.delivered += 1,
                pairs::Fate::Refused => self.refused += 1,
                pairs::Fate::Held => self.held += 1,
                pairs::Fate::Lost => self.lost += 1,
                _ => {}
            }
            self.latencies.extend(first.map(|f| f.saturating_sub(at)));
        }
        fn json(mut self) -> serde_json::Map<String, Value> {
            self.latencies.sort();
            let l = &self.latencies;
            let mut m = serde_json::Map::new();
            m.insert("pairs".into(), json!(self.pairs));
            m.insert("delivered".into(), json!(self.delivered));
            m.insert("refused".into(), json!(self.refused));
            m.insert("held".into(), json!(self.held));
            m.insert("lost".into(), json!(self.lost));
            m.insert(
                "latency_ms".into(),
                json!({ "p50": ms(percentile(l, 0.5)), "p99": ms(percentile(l, 0.99)), "max": ms(l.last().copied()) }),
            );
            m
        }
    }
    let mut by: Vec<Tally> = sc.deployments.iter().map(|_| Tally::default()).collect();
    let mut crossing = Tally::default();
    for (id, s) in sent {
        for d in &s.intended {
            let Some((fate, first)) = fates.get(&(**id, *d)) else { continue };
            let (from, to) = (sc.nodes[s.origin].deployment, sc.nodes[*d].deployment);
            by[to].add(*fate, s.at, *first);
            if from != to {
                crossing.add(*fate, s.at, *first);
            }
        }
    }
    let per_min = |b: u64| (b as f64 * 60.0 / virtual_s.max(1e-9)).round();
    let between: Vec<Value> = sc
        .links
        .iter()
        .filter(|l| sc.nodes[l.a].deployment != sc.nodes[l.b].deployment)
        .filter_map(|l| links.iter().find(|j| j["id"] == l.id.as_str()))
        .map(|j| {
            json!({
                "id": j["id"],
                "medium": j["medium"],
                "bytes_per_min": per_min(j["bytes"].as_u64().unwrap_or(0)),
                "control_bytes_per_min": per_min(j["control_bytes"].as_u64().unwrap_or(0)),
                "payload_bytes_per_min": per_min(j["payload_bytes"].as_u64().unwrap_or(0)),
                "down_s": j["down_s"],
            })
        })
        .collect();
    let each: serde_json::Map<String, Value> = sc
        .deployments
        .iter()
        .zip(by)
        .enumerate()
        .map(|(i, (d, t))| {
            let mut m = t.json();
            m.insert("nodes".into(), json!(sc.nodes.iter().filter(|n| n.deployment == i).count()));
            (d.name.clone(), Value::Object(m))
        })
        .collect();
    json!({ "each": each, "crossing": crossing.json(), "links_between": between })
}

/// Object flows (`content = "object"`): objects sent, delivered (pairs), completion times, and
/// each link's bytes (all its traffic) per object byte delivered.
fn objects(sc: &Scenario, obs: &Observed, sent: &[(&MessageId, &Sent)], links: &[Value]) -> Value {
    let flows: Vec<usize> = (0..sc.traffic.len())
        .filter(|f| sc.traffic[*f].content == crate::scenario::Content::Object)
        .collect();
    if flows.is_empty() {
        return Value::Null;
    }
    let mut delivered_bytes = 0u64;
    let mut out = Vec::new();
    for f in flows {
        let t = &sc.traffic[f];
        let mine: Vec<_> = sent.iter().filter(|(_, s)| s.flow == f).collect();
        let mut done: Vec<Duration> = Vec::new();
        for (id, s) in &mine {
            for node in &s.intended {
                if let Some(first) = obs.deliveries.get(&(**id, *node)).and_then(|v| v.first()) {
                    done.push(first.saturating_sub(s.at));
                }
            }
        }
        done.sort();
        delivered_bytes += t.size as u64 * done.len() as u64;
        let secs = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e3).round() / 1e3);
        out.push(json!({
            "flow": t.label(f),
            "size": t.size,
            "objects": mine.len(),
            "pairs": mine.iter().map(|(_, s)| s.intended.len()).sum::<usize>(),
            "delivered": done.len(),
            "completion_s": {
                "p50": secs(pairs::percentile(&done, 0.5)),
                "max": secs(done.last().copied()),
            },
        }));
    }
    let per_byte: serde_json::Map<String, Value> = links
        .iter()
        .filter(|_| delivered_bytes > 0)
        .map(|l| {
            let bytes = l["bytes"].as_u64().unwrap_or(0) as f64;
            let ratio = (bytes / delivered_bytes as f64 * 1e4).round() / 1e4;
            (l["id"].as_str().unwrap_or("?").to_owned(), json!(ratio))
        })
        .collect();
    json!({ "flows": out, "delivered_bytes": delivered_bytes, "link_bytes_per_object_byte": per_byte })
}

/// Higher precedence overtaken by lower: for each (origin, destination), a delivered message
/// that arrived more than a second after a lower-precedence message sent after it.
fn starvation(
    sent: &[(&MessageId, &Sent)],
    fates: &HashMap<(MessageId, usize), (Fate, Option<Duration>)>,
) -> u64 {
    const SLACK: Duration = Duration::from_secs(1);
    // (origin, destination) -> [(sent, precedence, delivered)]
    type Timeline = Vec<(Duration, Precedence, Duration)>;
    let mut by_pair: BTreeMap<(usize, usize), Timeline> = BTreeMap::new();
    for (id, s) in sent {
        for d in &s.intended {
            if let Some((Fate::Delivered, Some(at))) = fates.get(&(**id, *d)) {
                by_pair.entry((s.origin, *d)).or_default().push((s.at, s.precedence, *at));
            }
        }
    }
    let mut starved = 0;
    for list in by_pair.values_mut() {
        list.sort_by_key(|(sent, _, _)| *sent);
        // Earliest delivery among messages sent later, per precedence index.
        let mut earliest: [Option<Duration>; 4] = [None; 4];
        for (_, p, delivered) in list.iter().rev() {
            let lower = earliest[..p.index()].iter().flatten().min();
            if lower.is_some_and(|l| *delivered > *l + SLACK) {
                starved += 1;
            }
            let e = &mut earliest[p.index()];
            *e = Some(e.map_or(*delivered, |x| x.min(*delivered)));
        }
    }
    starved
}

/// The longest time, over the flows that were delivering before the event, from the event to
/// the arrival of the flow's first message sent after it (minus the wait for that send).
/// An origin's own copy (it is a member of its groups) arrives at once: it does not count.
/// Messages withdrawn by their sender (cancelled, or superseded by a newer one with their key)
/// before the first one delivered count from their send: with latest-value keys, the first
/// message after a cut is superseded by the next, and traffic flowed again only when the newest
/// got through.
fn recovery(
    sc: &Scenario,
    at: Duration,
    sent: &[(&MessageId, &Sent)],
    fates: &HashMap<(MessageId, usize), (Fate, Option<Duration>)>,
) -> Option<Duration> {
    let mut worst: Option<Duration> = None;
    for (flow, t) in sc.traffic.iter().enumerate() {
        let window = t.interval * 2;
        let was_flowing = sent.iter().any(|(id, s)| {
            s.flow == flow
                && s.intended.iter().filter(|d| **d != s.origin).any(|d| {
                    matches!(fates.get(&(**id, *d)), Some((Fate::Delivered, Some(x))) if *x < at && *x + window >= at)
                })
        });
        if !was_flowing {
            continue;
        }
        let mut since: Option<Duration> = None;
        let first_after =
            sent.iter().filter(|(_, s)| s.flow == flow && s.at >= at).find_map(|(id, s)| {
                let fate = |d: &usize| fates.get(&(**id, *d));
                let mut others = s.intended.iter().filter(|d| **d != s.origin).peekable();
                let withdrawn = others.peek().is_some()
                    && others
                        .clone()
                        .all(|d| matches!(fate(d), Some((Fate::Cancelled | Fate::Superseded, _))));
                if withdrawn {
                    since.get_or_insert(s.at);
                    return None;
                }
                others
                    .filter_map(|d| match fate(d) {
                        Some((Fate::Delivered, Some(x))) => Some(*x),
                        _ => None,
                    })
                    .min()
                    .map(|x| x.saturating_sub(since.unwrap_or(s.at)))
            });
        if let Some(r) = first_after {
            worst = Some(worst.map_or(r, |w| w.max(r)));
        }
    }
    worst
}

/// How long after a repair at `at` the backlog took to cross: from `at` to the last delivery
/// of a message sent before it and delivered after it (to a node other than its origin).
/// Where failures overlap, what another failure held back counts too.
fn catch_up(
    at: Duration,
    sent: &[(&MessageId, &Sent)],
    fates: &HashMap<(MessageId, usize), (Fate, Option<Duration>)>,
) -> Option<Duration> {
    sent.iter()
        .filter(|(_, s)| s.at < at)
        .flat_map(|(id, s)| {
            s.intended.iter().filter(|d| **d != s.origin).filter_map(|d| {
                match fates.get(&(**id, *d)) {
                    Some((Fate::Delivered, Some(x))) if *x > at => Some(*x - at),
                    _ => None,
                }
            })
        })
        .max()
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => n.as_f64().map_or_else(
            || n.to_string(),
            |f| if f.fract() == 0.0 { format!("{f:.0}") } else { format!("{f:.1}") },
        ),
        other => other.to_string(),
    }
}

/// The terminal table.
fn table(j: &Value) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "scenario {}  seed {}  nodes {}  virtual {}  wall {:.2}s  speedup {:.0}x",
        j["scenario"].as_str().unwrap_or("?"),
        j["seed"],
        j["nodes"],
        format_duration(Duration::from_secs_f64(j["virtual_s"].as_f64().unwrap_or(0.0))),
        j["wall_s"].as_f64().unwrap_or(0.0),
        j["speedup"].as_f64().unwrap_or(0.0),
    );
    let _ = writeln!(
        t,
        "\n{:<10} {:>8} {:>7} {:>9} {:>9} {:>10} {:>7} {:>7} {:>6} {:>5} {:>4} {:>9} {:>9} {:>9} {:>9}",
        "precedence",
        "messages",
        "pairs",
        "delivered",
        "cancelled",
        "superseded",
        "expired",
        "refused",
        "held",
        "lost",
        "dup",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms"
    );
    for p in Precedence::DESCENDING {
        let c = &j["precedence"][p.as_str()];
        let l = &c["latency_ms"];
        let _ = writeln!(
            t,
            "{:<10} {:>8} {:>7} {:>9} {:>9} {:>10} {:>7} {:>7} {:>6} {:>5} {:>4} {:>9} {:>9} {:>9} {:>9}",
            p.as_str(),
            cell(&c["messages"]),
            cell(&c["sent"]),
            cell(&c["delivered"]),
            cell(&c["cancelled"]),
            cell(&c["superseded"]),
            cell(&c["expired"]),
            cell(&c["refused"]),
            cell(&c["held"]),
            cell(&c["lost"]),
            cell(&c["duplicates"]),
            cell(&l["p50"]),
            cell(&l["p90"]),
            cell(&l["p99"]),
            cell(&l["max"]),
        );
    }
    let nobody: u64 = Precedence::DESCENDING
        .iter()
        .map(|p| j["precedence"][p.as_str()]["no_destinations"].as_u64().unwrap_or(0))
        .sum();
    // One line per count that is not zero for some precedence.
    let mut line = |label: &str, cell: &dyn Fn(&Value) -> Option<String>| {
        let parts: Vec<String> = Precedence::DESCENDING
            .iter()
            .filter_map(|p| Some(format!("{p} {}", cell(&j["precedence"][p.as_str()])?)))
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(t, "{label}: {}", parts.join(", "));
        }
    };
    let nonzero = |c: &Value, k: &str| c[k].as_u64().filter(|n| *n > 0);
    line("overdue (pairs past their delivery objective at the origin)", &|c| {
        Some(format!("{} ({} still at the end)", nonzero(c, "overdue")?, c["overdue_open"]))
    });
    line("escalated (offers of late messages on routes their precedence avoids)", &|c| {
        nonzero(c, "escalated").map(|n| n.to_string())
    });
    line(
        "delivered, then withdrawn at the destination by a cancel or a newer message (counted delivered)",
        &|c| nonzero(c, "withdrawn_after_delivery").map(|n| n.to_string()),
    );
    let refused = j["not_accepted"].as_u64().unwrap_or(0);
    if nobody > 0 || refused > 0 {
        let _ = writeln!(
            t,
            "messages whose address had no intended recipient: {nobody}; submissions not \
             accepted (origin down or refusing): {refused}"
        );
    }
    if let Some(each) = j["deployments"]["each"].as_object() {
        let _ = writeln!(
            t,
            "\n{:<12} {:>6} {:>7} {:>9} {:>7} {:>5} {:>9} {:>9}",
            "deployment", "nodes", "pairs", "delivered", "refused", "lost", "p50 ms", "p99 ms"
        );
        let crossing = &j["deployments"]["crossing"];
        let rows = each.iter().map(|(k, v)| (k.as_str(), v)).chain([("(crossing)", crossing)]);
        for (name, d) in rows {
            let _ = writeln!(
                t,
                "{:<12} {:>6} {:>7} {:>9} {:>7} {:>5} {:>9} {:>9}",
                name,
                cell(&d["nodes"]),
                cell(&d["pairs"]),
                cell(&d["delivered"]),
                cell(&d["refused"]),
                cell(&d["lost"]),
                cell(&d["latency_ms"]["p50"]),
                cell(&d["latency_ms"]["p99"]),
            );
        }
        for l in j["deployments"]["links_between"].as_array().into_iter().flatten() {
            let _ = writeln!(
                t,
                "between deployments {} ({}): {} B/min, {} B/min of it control",
                l["id"].as_str().unwrap_or("?"),
                l["medium"].as_str().unwrap_or("?"),
                cell(&l["bytes_per_min"]),
                cell(&l["control_bytes_per_min"]),
            );
        }
    }
    let mut links: Vec<&Value> =
        j["links"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    links.sort_by(|a, b| {
        b["utilisation"]
            .as_f64()
            .partial_cmp(&a["utilisation"].as_f64())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let _ = writeln!(
        t,
        "\n{:<44} {:<9} {:>12} {:>6} {:>8} {:>9}",
        "link (busiest first)", "medium", "bytes", "util", "payload", "down"
    );
    let percent = |v: &Value| match v.as_f64() {
        Some(x) => format!("{:.1}%", x * 100.0),
        None => "-".into(),
    };
    for l in links.iter().take(12) {
        let _ = writeln!(
            t,
            "{:<44} {:<9} {:>12} {:>5.1}% {:>8} {:>9}",
            l["id"].as_str().unwrap_or("?"),
            l["medium"].as_str().unwrap_or("?"),
            l["bytes"],
            l["utilisation"].as_f64().unwrap_or(0.0) * 100.0,
            percent(&l["payload_efficiency"]),
            format_duration(Duration::from_secs_f64(l["down_s"].as_f64().unwrap_or(0.0))),
        );
    }
    if links.len() > 12 {
        let _ = writeln!(t, "... and {} more links", links.len() - 12);
    }
    if let Some(flows) = j["objects"]["flows"].as_array() {
        let _ = writeln!(t, "\nobjects");
        for f in flows {
            let _ = writeln!(
                t,
                "  {}: {} objects of {} B to {} destinations, {} delivered whole; completion p50 {} s, max {} s",
                f["flow"].as_str().unwrap_or("?"),
                f["objects"],
                f["size"],
                f["pairs"],
                f["delivered"],
                cell(&f["completion_s"]["p50"]),
                cell(&f["completion_s"]["max"]),
            );
        }
        if let Some(per) = j["objects"]["link_bytes_per_object_byte"].as_object() {
            let parts: Vec<String> = per.iter().map(|(l, r)| format!("{l} {r}")).collect();
            if !parts.is_empty() {
                let _ = writeln!(t, "  link bytes per object byte delivered: {}", parts.join(", "));
            }
        }
    }
    if let Some(media) = j["media"].as_object() {
        let _ = writeln!(
            t,
            "\n{:<10} {:>12} {:>12} {:>8} {:>16}",
            "medium", "bytes", "payload", "payload", "framing/offer"
        );
        for (m, v) in media {
            let _ = writeln!(
                t,
                "{:<10} {:>12} {:>12} {:>8} {:>14} B",
                m,
                v["bytes"],
                v["payload_bytes"],
                percent(&v["payload_efficiency"]),
                v["framing_per_offer"].as_f64().map_or("-".into(), |x| format!("{x:.0}")),
            );
        }
    }
    let events = j["events"].as_array().cloned().unwrap_or_default();
    if !events.is_empty() {
        let _ = writeln!(
            t,
            "\n{:>9} {:<14} {:<44} {:>10} {:>10}",
            "at", "event", "target", "recovered", "caught up"
        );
        let secs = |v: &Value| {
            v.as_f64().map_or("-".into(), |s| format_duration(Duration::from_secs_f64(s)))
        };
        for e in events.iter().take(40) {
            let _ = writeln!(
                t,
                "{:>9} {:<14} {:<44} {:>10} {:>10}",
                format_duration(Duration::from_secs_f64(e["at_s"].as_f64().unwrap_or(0.0))),
                format!(
                    "{}{}",
                    e["action"].as_str().unwrap_or("?"),
                    if e["random"] == true { "*" } else { "" }
                ),
                e["target"].as_str().unwrap_or(""),
                secs(&e["recovered_after_s"]),
                secs(&e["caught_up_after_s"]),
            );
        }
        if events.len() > 40 {
            let _ = writeln!(t, "... and {} more events (* = random)", events.len() - 40);
        }
    }
    let dests = j["destinations"].as_array().cloned().unwrap_or_default();
    pairs::text(&mut t, &dests, cell);
    let i = &j["invariants"];
    let _ = writeln!(
        t,
        "\ninvariants: lost {}, duplicates {}, starved {} (pairs); unintended deliveries {}{}{}",
        i["lost"],
        i["duplicates"],
        i["starved"],
        j["unintended"],
        match i["unfounded"].as_u64() {
            Some(n) if n > 0 => format!("; {n} pairs withdrawn for no cause the simulator gave"),
            _ => String::new(),
        },
        match i["broken"].as_array().map(Vec::len) {
            _ if i["checked"] != true => String::new(),
            Some(0) | None => "; every node checked its own invariants: none broken".into(),
            Some(n) => format!("; {n} broken inside nodes"),
        }
    );
    let failures = j["expect"]["failures"].as_array().cloned().unwrap_or_default();
    if failures.is_empty() {
        let _ = writeln!(t, "expect: passed");
    } else {
        let _ = writeln!(t, "expect: FAILED");
        for f in failures {
            let _ = writeln!(t, "  - {}", f.as_str().unwrap_or("?"));
        }
    }
    t
}
