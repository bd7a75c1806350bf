//! Every intended recipient accounted for, with real processes: a township away for longer
//! than the advert lifetime still gets what was sent to its groups, an address with no member
//! is not reported delivered, and a decommissioned node stops being a member.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

const SHORT_ADVERTS: &str = "[limits]\nadvert_lifetime = \"4s\"\n";

fn has(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name)
}

/// Waits until `relay`'s status satisfies `f`.
fn wait_status(relay: &mut Relay, what: &str, f: impl Fn(&StatusDoc) -> bool) {
    wait_for(what, Duration::from_secs(60), || {
        relay.assert_running();
        relay.try_status().filter(|s| f(s)).map(|_| ())
    });
}

#[test]
fn a_township_stopped_longer_than_the_advert_lifetime_gets_the_group_all_flash_on_return() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public").extra(SHORT_ADVERTS);
    let township = mesh.node("township-01", "township", "public").peer(&hq).extra(SHORT_ADVERTS);
    let mut hq = hq.start();
    let mut township = township.start();
    wait_status(&mut hq, "hq knows township-01 as a member", |s| has(&s.members, "township-01"));
    township.stop();
    // Its advert ages out of hq's routing; its membership does not.
    wait_status(&mut hq, "township-01 forgotten by routing, still a member", |s| {
        !has(&s.known_nodes, "township-01") && has(&s.members, "township-01")
    });
    let status = cli_ok(&["status", "--api", &hq.spec.api_url()]);
    assert!(status.contains("members: 1 known, 1 without a route: township-01"), "{status}");
    let out = hq.send_cli(&[
        "--to",
        "group:all",
        "--precedence",
        "flash",
        "levee breach: evacuate sector 4",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = id.trim();
    let view = hq.message(id, "0s");
    let dests: Vec<&str> = view.destinations.iter().map(|d| d.node.as_str()).collect();
    assert_eq!(dests, ["county-hq", "township-01"], "{view:?}");
    assert_ne!(view.state, "delivered", "{view:?}");

    let mut township = township.spec.start();
    let inbox = wait_for("the FLASH at township-01", Duration::from_secs(60), || {
        township.assert_running();
        let inbox = township.inbox_all();
        (!inbox.is_empty()).then_some(inbox)
    });
    let got: Vec<&str> = inbox.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(got, [id], "exactly once");
    assert_eq!(inbox[0].body.as_deref(), Some("levee breach: evacuate sector 4"));
    let view = hq.message(id, "30s");
    assert_eq!(view.state, "delivered", "{view:?}");
}

#[test]
fn send_wait_to_a_group_with_no_member_exits_1_saying_no_recipients() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public").start();
    let out = hq.send_cli(&[
        "--to",
        "group:medical",
        "--precedence",
        "flash",
        "--wait",
        "casualties at the school",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no_recipients"), "{stderr}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let view = hq.message(&id, "0s");
    assert_eq!(view.state, "no_recipients");
    let metrics = http().get(format!("{}/metrics", hq.spec.api_url())).send().unwrap();
    let metrics = metrics.text().unwrap();
    assert!(
        metrics
            .contains("relaymesh_messages_total{precedence=\"flash\",event=\"no_recipients\"} 1"),
        "{metrics}"
    );

    // Once the node itself joins, its own group counts as usual.
    let out = cli(&["group", "--api", &hq.spec.api_url(), "join", "medical"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = hq.send_cli(&["--to", "group:medical", "--wait", "second report"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // A bad group name is bad input.
    let out = cli(&["group", "--api", &hq.spec.api_url(), "join", "role:field"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_decommissioned_node_stops_being_a_member_and_an_unknown_one_is_refused() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let township = mesh.node("township-01", "township", "public").peer(&hq);
    let mut hq = hq.start();
    let _township = township.start();
    wait_status(&mut hq, "hq knows township-01 as a member", |s| has(&s.members, "township-01"));
    let pki = mesh.pki();
    let out = cli(&["pki", "decommission", "--dir", pki.to_str().unwrap(), "--node", "team-99"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("team-99"), "{stderr}");

    cli_ok(&["pki", "decommission", "--dir", pki.to_str().unwrap(), "--node", "township-01"]);
    wait_status(&mut hq, "township-01 no longer a member", |s| !has(&s.members, "township-01"));
    let out = hq.send_cli(&["--to", "group:role:township", "--wait", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_recipients"));
}
