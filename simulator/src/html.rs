//! The HTML report: the terminal table's content plus SVG plots (latency distribution per
//! precedence, delivery over time, link states over time, queue depth per node). One
//! self-contained file, no scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use relaymesh::core::Precedence;
use serde_json::Value;

use crate::scenario::Scenario;
use crate::world::Observed;

const COLOURS: [&str; 8] =
    ["#c0392b", "#d68910", "#2471a3", "#229954", "#7d3c98", "#17a589", "#5d6d7e", "#a04000"];
const W: f64 = 720.0;
const H: f64 = 260.0;
const PAD: f64 = 48.0;

fn colour(p: Precedence) -> &'static str {
    match p {
        Precedence::Flash => COLOURS[0],
        Precedence::Immediate => COLOURS[1],
        Precedence::Priority => COLOURS[2],
        Precedence::Routine => COLOURS[3],
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

struct Series<'a> {
    name: String,
    colour: &'a str,
    points: Vec<(f64, f64)>,
}

/// A line chart; `log_x` plots x on a log10 scale.
fn chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>], log_x: bool) -> String {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    let mut svg = format!(
        "<h3>{}</h3><svg width=\"{W}\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(title),
        H + 40.0
    );
    if all.is_empty() {
        svg.push_str("<text x=\"60\" y=\"40\">no data</text></svg>");
        return svg;
    }
    let fx = |x: f64| if log_x { x.max(1e-3).log10() } else { x };
    let (mut x0, mut x1) =
        all.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(fx(*x)), b.max(fx(*x))));
    let y1 = all.iter().fold(0.0f64, |a, (_, y)| a.max(*y)).max(1e-9);
    if x1 <= x0 {
        x0 -= 1.0;
        x1 += 1.0;
    }
    let sx = |x: f64| PAD + (fx(x) - x0) / (x1 - x0) * (W - 2.0 * PAD);
    let sy = |y: f64| H - PAD / 2.0 - y / y1 * (H - PAD);
    let _ = write!(
        svg,
        "<line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#444\"/><line x1=\"{PAD}\" y1=\"{t}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#444\"/>",
        b = H - PAD / 2.0,
        r = W - PAD,
        t = PAD / 2.0
    );
    for i in 0..=4 {
        let fx_val = x0 + (x1 - x0) * f64::from(i) / 4.0;
        let label =
            if log_x { format!("{:.3}", 10f64.powf(fx_val)) } else { format!("{fx_val:.0}") };
        let x = PAD + f64::from(i) / 4.0 * (W - 2.0 * PAD);
        let _ = write!(
            svg,
            "<text x=\"{x}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            H - PAD / 2.0 + 14.0,
            trim(&label)
        );
        let yv = y1 * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            PAD - 4.0,
            sy(yv) + 3.0,
            trim(&format!("{yv:.2}"))
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
        W / 2.0,
        H + 30.0,
        esc(x_label)
    );
    let _ = write!(
        svg,
        "<text x=\"12\" y=\"{}\" font-size=\"11\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">{}</text>",
        H / 2.0,
        H / 2.0,
        esc(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let pts: Vec<String> =
            s.points.iter().map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
            s.colour,
            pts.join(" ")
        );
        let ly = PAD / 2.0 + 14.0 * i as f64;
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            W - PAD - 110.0,
            ly,
            s.colour,
            W - PAD - 96.0,
            ly + 9.0,
            esc(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn trim(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

/// Thins a series to at most `n` points (keeping the last).
fn thin(points: Vec<(f64, f64)>, n: usize) -> Vec<(f64, f64)> {
    if points.len() <= n {
        return points;
    }
    let step = points.len() as f64 / n as f64;
    let mut out: Vec<(f64, f64)> = (0..n).map(|i| points[(i as f64 * step) as usize]).collect();
    if let Some(last) = points.last() {
        out.push(*last);
    }
    out
}

pub fn page(
    sc: &Scenario,
    j: &Value,
    obs: &Observed,
    latencies: &BTreeMap<Precedence, Vec<Duration>>,
) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>relaymesh-sim: {name}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}\
         td,th{{padding:.15em .6em;text-align:right;border-bottom:1px solid #ddd}}th{{background:#f4f4f4}}\
         td:first-child,th:first-child{{text-align:left}}.bad{{color:#c0392b;font-weight:bold}}</style></head><body>\
         <h1>{name}</h1><p>{desc}</p><p>Seed {seed}, {nodes} nodes, {virt} virtual in {wall:.2} s wall ({speed:.0}&times; real time).</p>",
        name = esc(&sc.name),
        desc = esc(&sc.description),
        seed = j["seed"],
        nodes = sc.nodes.len(),
        virt = relaymesh::units::format_duration(Duration::from_secs_f64(
            j["virtual_s"].as_f64().unwrap_or(0.0)
        )),
        wall = j["wall_s"].as_f64().unwrap_or(0.0),
        speed = j["speedup"].as_f64().unwrap_or(0.0),
    );
    let failures = j["expect"]["failures"].as_array().cloned().unwrap_or_default();
    if failures.is_empty() {
        h.push_str("<p><b>Expectations and invariants: passed.</b></p>");
    } else {
        h.push_str("<p class=\"bad\">Failed:</p><ul>");
        for f in failures {
            let _ = write!(h, "<li class=\"bad\">{}</li>", esc(f.as_str().unwrap_or("")));
        }
        h.push_str("</ul>");
    }
    h.push_str("<h2>Deliveries</h2><p>Messages sent, then (message, intended recipient) pairs.</p><table><tr><th>precedence</th><th>messages</th><th>no recipient</th><th>pairs</th><th>delivered</th><th>cancelled</th><th>superseded</th><th>expired</th><th>refused</th><th>held</th><th>lost</th><th>dup</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th></tr>");
    for p in Precedence::DESCENDING {
        let c = &j["precedence"][p.as_str()];
        let l = &c["latency_ms"];
        let _ = write!(h, "<tr><td>{p}</td>");
        for v in [
            &c["messages"],
            &c["no_destinations"],
            &c["sent"],
            &c["delivered"],
            &c["cancelled"],
            &c["superseded"],
            &c["expired"],
            &c["refused"],
            &c["held"],
            &c["lost"],
            &c["duplicates"],
            &l["p50"],
            &l["p90"],
            &l["p99"],
            &l["max"],
        ] {
            let _ = write!(h, "<td>{}</td>", if v.is_null() { "-".into() } else { v.to_string() });
        }
        h.push_str("</tr>");
    }
    let _ = write!(
        h,
        "</table><p>Submissions not accepted (origin down or refusing): {}</p>",
        j["not_accepted"]
    );
    let rows = j["destinations"].as_array().cloned().unwrap_or_default();
    crate::pairs::html(&mut h, &rows, esc);

    // Latency distribution (CDF).
    let series: Vec<Series<'_>> = Precedence::DESCENDING
        .iter()
        .map(|p| {
            let l = latencies.get(p).cloned().unwrap_or_default();
            let n = l.len().max(1) as f64;
            let pts = l
                .iter()
                .enumerate()
                .map(|(i, d)| (d.as_secs_f64() * 1000.0, (i + 1) as f64 / n))
                .collect();
            Series { name: p.to_string(), colour: colour(*p), points: thin(pts, 400) }
        })
        .collect();
    h.push_str(&chart(
        "Latency distribution",
        "latency (ms, log scale)",
        "fraction delivered",
        &series,
        true,
    ));

    // Deliveries over time.
    let mut by_prec: BTreeMap<Precedence, Vec<f64>> = BTreeMap::new();
    for ((id, _), times) in &obs.deliveries {
        if let (Some(s), Some(t)) = (obs.sent.get(id), times.iter().min()) {
            by_prec.entry(s.precedence).or_default().push(t.as_secs_f64() / 60.0);
        }
    }
    let series: Vec<Series<'_>> = Precedence::DESCENDING
        .iter()
        .map(|p| {
            let mut t = by_prec.remove(p).unwrap_or_default();
            t.sort_by(f64::total_cmp);
            let pts = t.iter().enumerate().map(|(i, x)| (*x, (i + 1) as f64)).collect();
            Series { name: p.to_string(), colour: colour(*p), points: thin(pts, 400) }
        })
        .collect();
    h.push_str(&chart(
        "Deliveries over time",
        "virtual time (min)",
        "messages delivered",
        &series,
        false,
    ));

    // Link states over time.
    if let Some(start) = obs.started {
        let total = obs.virtual_time.as_secs_f64().max(1e-9);
        let rows: Vec<_> = obs.links.iter().filter(|l| l.changes.len() > 1).collect();
        let row_h = 14.0;
        let height = row_h * rows.len() as f64 + 30.0;
        let _ = write!(
            h,
            "<h3>Link states over time</h3><svg width=\"{W}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">"
        );
        if rows.is_empty() {
            h.push_str("<text x=\"10\" y=\"20\">no link went down</text>");
        }
        let x0 = 260.0;
        let span = W - x0 - 10.0;
        for (i, l) in rows.iter().enumerate() {
            let y = 10.0 + row_h * i as f64;
            let _ = write!(
                h,
                "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text><rect x=\"{x0}\" y=\"{y}\" width=\"{span}\" height=\"10\" fill=\"#a9dfbf\"/>",
                x0 - 4.0,
                y + 9.0,
                esc(&l.id)
            );
            let mut down_from: Option<f64> = None;
            for (t, up) in &l.changes {
                let s = (*t - start).as_secs_f64() / total;
                match (up, down_from) {
                    (false, None) => down_from = Some(s),
                    (true, Some(f)) => {
                        let _ = write!(
                            h,
                            "<rect x=\"{:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"10\" fill=\"#c0392b\"/>",
                            x0 + f * span,
                            ((s - f) * span).max(1.0)
                        );
                        down_from = None;
                    }
                    _ => {}
                }
            }
            if let Some(f) = down_from {
                let _ = write!(
                    h,
                    "<rect x=\"{:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"10\" fill=\"#c0392b\"/>",
                    x0 + f * span,
                    ((1.0 - f) * span).max(1.0)
                );
            }
        }
        h.push_str("</svg>");
    }

    // Queue depth of the busiest nodes.
    let mut nodes: Vec<(&String, &Vec<(Duration, u64)>)> = obs.queue_depth.iter().collect();
    nodes.sort_by_key(|(name, s)| {
        (std::cmp::Reverse(s.iter().map(|x| x.1).max().unwrap_or(0)), (*name).clone())
    });
    let series: Vec<Series<'_>> = nodes
        .iter()
        .take(8)
        .enumerate()
        .map(|(i, (name, s))| Series {
            name: (*name).clone(),
            colour: COLOURS[i % COLOURS.len()],
            points: s.iter().map(|(t, d)| (t.as_secs_f64() / 60.0, *d as f64)).collect(),
        })
        .collect();
    h.push_str(&chart(
        "Messages held per node (the eight fullest)",
        "virtual time (min)",
        "messages held",
        &series,
        false,
    ));

    h.push_str("<h2>Failure events</h2><p>Recovered after: until traffic flowed again after a failure; caught up after: until the last message sent before a repair and delivered after it arrived.</p><table><tr><th>at</th><th>event</th><th>target</th><th>recovered after</th><th>caught up after</th></tr>");
    for e in j["events"].as_array().into_iter().flatten() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            relaymesh::units::format_duration(Duration::from_secs_f64(
                e["at_s"].as_f64().unwrap_or(0.0)
            )),
            esc(e["action"].as_str().unwrap_or("")),
            if e["random"] == true { " (random)" } else { "" },
            esc(e["target"].as_str().unwrap_or("")),
            e["recovered_after_s"].as_f64().map_or("-".into(), |s| format!("{s:.2} s")),
            e["caught_up_after_s"].as_f64().map_or("-".into(), |s| format!("{s:.2} s")),
        );
    }
    h.push_str("</table><h2>Links</h2><table><tr><th>link</th><th>medium</th><th>bytes</th><th>utilisation</th><th>payload</th><th>down</th></tr>");
    let percent = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{:.1}%", x * 100.0));
    for l in j["links"].as_array().into_iter().flatten() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{:.0} s</td></tr>",
            esc(l["id"].as_str().unwrap_or("")),
            l["medium"].as_str().unwrap_or(""),
            l["bytes"],
            l["utilisation"].as_f64().unwrap_or(0.0) * 100.0,
            percent(&l["payload_efficiency"]),
            l["down_s"].as_f64().unwrap_or(0.0),
        );
    }
    h.push_str("</table></body></html>\n");
    h
}
