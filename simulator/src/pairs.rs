//! Accounting per (message, intended recipient) pair, per precedence and per destination.
//!
//! A pair's fate, in this order: delivered (its first delivery; more are duplicates; a copy
//! withdrawn after its delivery stays delivered, and counts as `withdrawn` too), cancelled or
//! superseded (an `Event::Superseded` at any node for the message naming the destination, with
//! a cause the simulator knows of: a cancel it had the origin send for this message, or a
//! message it sent that replaces this one or carries the same key from the same origin and was
//! sent no earlier; a withdrawal without such a cause is counted `unfounded` and the pair goes
//! on down this list), expired (an `Expired` event at any node for the message naming the
//! destination), refused (a `Refused` event for the message: refusals name no destination, so
//! it counts for every pair still open), held (in some store at the end), else lost. A delivery
//! to a node that is not an intended recipient (one that left the group before the send, say)
//! is `unintended`: reported, not a failure.
//!
//! The delivery ratio is of the pairs still owed: cancelled and superseded pairs were taken
//! back by their sender, and count neither for nor against it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use relaymesh::core::{MessageId, Outcome, Precedence};
use serde_json::{Value, json};

use crate::scenario::Scenario;
use crate::world::{Observed, Sent};

/// How a (message, destination) pair ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Delivered,
    Cancelled,
    Superseded,
    Expired,
    Refused,
    Held,
    Lost,
}

/// Counts over a set of pairs.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Messages (per precedence only).
    pub messages: u64,
    /// Messages with no intended recipient (per precedence only).
    pub no_destinations: u64,
    pub pairs: u64,
    pub delivered: u64,
    pub cancelled: u64,
    pub superseded: u64,
    pub expired: u64,
    pub refused: u64,
    pub held: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub unintended: u64,
    /// Delivered pairs later withdrawn at the destination (a cancel or a newer message came
    /// after): counted delivered too.
    pub withdrawn: u64,
    /// Pairs a node said it dropped for a cancel or a newer message the simulator knows
    /// nothing of (a cause that is not one): accounted by the rest of the list.
    pub unfounded: u64,
    /// From send to first delivery, sorted once counting is done.
    pub latencies: Vec<Duration>,
}

impl Stats {
    /// The pair counts, as the report's JSON gives them per precedence and per destination.
    pub fn counts_json(&self) -> serde_json::Map<String, Value> {
        [
            ("pairs", self.pairs),
            ("delivered", self.delivered),
            ("cancelled", self.cancelled),
            ("superseded", self.superseded),
            ("expired", self.expired),
            ("refused", self.refused),
            ("held", self.held),
            ("lost", self.lost),
            ("duplicates", self.duplicates),
            ("unintended", self.unintended),
            ("withdrawn_after_delivery", self.withdrawn),
            ("unfounded", self.unfounded),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::from(v)))
        .collect()
    }

    fn count(&mut self, fate: Fate, latency: Option<Duration>, duplicates: u64) {
        self.pairs += 1;
        self.duplicates += duplicates;
        match fate {
            Fate::Delivered => self.delivered += 1,
            Fate::Cancelled => self.cancelled += 1,
            Fate::Superseded => self.superseded += 1,
            Fate::Expired => self.expired += 1,
            Fate::Refused => self.refused += 1,
            Fate::Held => self.held += 1,
            Fate::Lost => self.lost += 1,
        }
        self.latencies.extend(latency);
    }

    /// Delivered over the pairs still owed (all but the cancelled and superseded ones).
    pub fn ratio(&self) -> Option<f64> {
        let owed = self.pairs - self.cancelled - self.superseded;
        (owed > 0).then(|| self.delivered as f64 / owed as f64)
    }
}

/// The fate of every pair, per precedence and per (destination, precedence).
pub struct Accounts {
    pub classes: BTreeMap<Precedence, Stats>,
    pub destinations: BTreeMap<(usize, Precedence), Stats>,
    /// (message, destination) -> fate and first delivery time.
    pub fates: std::collections::HashMap<(MessageId, usize), (Fate, Option<Duration>)>,
}

/// Accounts for every pair of `sent` (sorted by send time, then id).
pub fn account(obs: &Observed, sent: &[(&MessageId, &Sent)]) -> Accounts {
    let mut classes: BTreeMap<Precedence, Stats> =
        Precedence::DESCENDING.iter().map(|p| (*p, Stats::default())).collect();
    let mut destinations: BTreeMap<(usize, Precedence), Stats> = BTreeMap::new();
    let mut fates = std::collections::HashMap::new();
    for (id, s) in sent {
        let c = classes.entry(s.precedence).or_default();
        c.messages += 1;
        if s.intended.is_empty() {
            c.no_destinations += 1;
        }
        for d in &s.intended {
            let key = (**id, *d);
            let times = obs.deliveries.get(&key).filter(|t| !t.is_empty());
            let withdrawn = match obs.withdrawn.get(&key) {
                Some((outcome, by)) if times.is_none() => {
                    let founded = founded(obs, id, s, *outcome, by);
                    if !founded {
                        c.unfounded += 1;
                        destinations.entry((*d, s.precedence)).or_default().unfounded += 1;
                    }
                    founded.then_some(*outcome)
                }
                _ => None,
            };
            if times.is_some() && obs.marked.contains(&key) {
                c.withdrawn += 1;
                destinations.entry((*d, s.precedence)).or_default().withdrawn += 1;
            }
            let (fate, first, dups) = match times {
                Some(t) => {
                    let first = t.iter().min().copied().unwrap_or_default();
                    (Fate::Delivered, Some(first), t.len() as u64 - 1)
                }
                None if withdrawn == Some(Outcome::Cancelled) => (Fate::Cancelled, None, 0),
                None if withdrawn.is_some() => (Fate::Superseded, None, 0),
                None if obs.expired.contains(&key) => (Fate::Expired, None, 0),
                None if obs.refused.contains_key(id) => (Fate::Refused, None, 0),
                None if obs.held.contains(&key) => (Fate::Held, None, 0),
                None => (Fate::Lost, None, 0),
            };
            let latency = first.map(|f| f.saturating_sub(s.at));
            c.count(fate, latency, dups);
            destinations.entry((*d, s.precedence)).or_default().count(fate, latency, dups);
            fates.insert(key, (fate, first));
        }
    }
    // Deliveries to nodes the message was not for. Summed, so the map's order does not matter.
    for ((id, n), times) in &obs.deliveries {
        if let Some(s) = obs.sent.get(id)
            && !s.intended.contains(n)
        {
            let k = times.len() as u64;
            classes.entry(s.precedence).or_default().unintended += k;
            destinations.entry((*n, s.precedence)).or_default().unintended += k;
        }
    }
    for c in classes.values_mut().chain(destinations.values_mut()) {
        c.latencies.sort();
    }
    Accounts { classes, destinations, fates }
}

/// Whether a withdrawal of message `id` (sent as `s`) by `by` has a cause the simulator knows:
/// a cancel it had the origin send for this message, or a message it sent that replaces this
/// one, or carries its key from its origin and was sent no earlier.
fn founded(obs: &Observed, id: &MessageId, s: &Sent, outcome: Outcome, by: &MessageId) -> bool {
    match outcome {
        Outcome::Cancelled => obs.cancels.get(by) == Some(id),
        _ => obs.sent.get(by).is_some_and(|b| {
            b.replaces == Some(*id)
                || (by != id
                    && s.key.is_some()
                    && b.key == s.key
                    && b.origin == s.origin
                    && b.at >= s.at)
        }),
    }
}

pub fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

pub fn ms(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| json!((d.as_secs_f64() * 1e6).round() / 1e3))
}

/// The per-destination rows of the JSON report, by node (scenario order), then precedence
/// (highest first).
pub fn destinations_json(sc: &Scenario, a: &Accounts) -> Value {
    let mut keys: Vec<&(usize, Precedence)> = a.destinations.keys().collect();
    keys.sort_by_key(|(n, p)| (*n, std::cmp::Reverse(*p)));
    let rows: Vec<Value> = keys
        .into_iter()
        .map(|k| {
            let ((n, p), c) = (k, &a.destinations[k]);
            let l = &c.latencies;
            let mut row = c.counts_json();
            row.insert("node".into(), json!(sc.nodes[*n].id.as_str()));
            row.insert("precedence".into(), json!(p.as_str()));
            row.insert(
                "latency_ms".into(),
                json!({
                    "p50": ms(percentile(l, 0.5)),
                    "p99": ms(percentile(l, 0.99)),
                    "max": ms(l.last().copied()),
                }),
            );
            Value::Object(row)
        })
        .collect();
    Value::Array(rows)
}

/// Whether a JSON row has anything but every pair delivered once (or withdrawn by its sender).
fn row_missed(r: &Value) -> bool {
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    n("delivered") + n("cancelled") + n("superseded") < n("pairs")
        || n("duplicates") > 0
        || n("unintended") > 0
}

/// Up to this many rows the terminal shows them all; beyond, only the rows that missed (a pair
/// cancelled or superseded by its sender is not a miss).
const ALL_ROWS: usize = 16;

/// The terminal's per-destination table.
pub fn text(t: &mut String, rows: &[Value], cell: impl Fn(&Value) -> String) {
    if rows.is_empty() {
        return;
    }
    let steered = rows
        .iter()
        .any(|r| r["cancelled"].as_u64().unwrap_or(0) + r["superseded"].as_u64().unwrap_or(0) > 0);
    let once = if steered { "delivered once or withdrawn by its sender" } else { "delivered once" };
    let show: Vec<&Value> = if rows.len() <= ALL_ROWS {
        rows.iter().collect()
    } else {
        rows.iter().filter(|r| row_missed(r)).collect()
    };
    if show.is_empty() {
        let _ = writeln!(
            t,
            "\nper destination: all {} (destination, precedence) rows {once} (all in --json)",
            rows.len()
        );
        return;
    }
    let _ = writeln!(
        t,
        "\n{:<20} {:<10} {:>6} {:>9} {:>9} {:>10} {:>7} {:>7} {:>5} {:>5} {:>4} {:>6} {:>9} {:>9} {:>9}",
        "destination",
        "precedence",
        "pairs",
        "delivered",
        "cancelled",
        "superseded",
        "expired",
        "refused",
        "held",
        "lost",
        "dup",
        "unint",
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    for r in &show {
        let l = &r["latency_ms"];
        let _ = writeln!(
            t,
            "{:<20} {:<10} {:>6} {:>9} {:>9} {:>10} {:>7} {:>7} {:>5} {:>5} {:>4} {:>6} {:>9} {:>9} {:>9}",
            r["node"].as_str().unwrap_or("?"),
            r["precedence"].as_str().unwrap_or("?"),
            cell(&r["pairs"]),
            cell(&r["delivered"]),
            cell(&r["cancelled"]),
            cell(&r["superseded"]),
            cell(&r["expired"]),
            cell(&r["refused"]),
            cell(&r["held"]),
            cell(&r["lost"]),
            cell(&r["duplicates"]),
            cell(&r["unintended"]),
            cell(&l["p50"]),
            cell(&l["p99"]),
            cell(&l["max"]),
        );
    }
    if show.len() < rows.len() {
        let _ = writeln!(
            t,
            "... and {} more (destination, precedence) rows, each {once} (all in --json)",
            rows.len() - show.len()
        );
    }
}

/// The HTML page's per-destination table: every row, the ones that missed marked.
pub fn html(h: &mut String, rows: &[Value], esc: impl Fn(&str) -> String) {
    h.push_str(
        "<h2>Per destination</h2><p>(message, intended recipient) pairs by destination node and \
         precedence; latency from the send.</p><table><tr><th>destination</th><th>precedence</th>\
         <th>pairs</th><th>delivered</th><th>cancelled</th><th>superseded</th><th>expired</th><th>refused</th><th>held</th><th>lost</th>\
         <th>dup</th><th>unintended</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>",
    );
    for r in rows {
        let l = &r["latency_ms"];
        let class = if row_missed(r) { " class=\"bad\"" } else { "" };
        let _ = write!(
            h,
            "<tr{class}><td>{}</td><td>{}</td>",
            esc(r["node"].as_str().unwrap_or("")),
            r["precedence"].as_str().unwrap_or("")
        );
        for v in [
            &r["pairs"],
            &r["delivered"],
            &r["cancelled"],
            &r["superseded"],
            &r["expired"],
            &r["refused"],
            &r["held"],
            &r["lost"],
            &r["duplicates"],
            &r["unintended"],
            &l["p50"],
            &l["p99"],
            &l["max"],
        ] {
            let _ = write!(h, "<td>{}</td>", if v.is_null() { "-".into() } else { v.to_string() });
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}
