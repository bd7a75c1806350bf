//! The mesh with real processes on loopback: several hops, several paths, several media,
//! groups, topics and sender policy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

fn ids(inbox: &[InboxMessageDoc]) -> Vec<String> {
    inbox.iter().map(|m| m.id.clone()).collect()
}

fn wait_route(r: &mut Relay, to: &str) {
    let me = r.spec.id.clone();
    wait_for(&format!("a route from {me} to {to}"), Duration::from_secs(30), || {
        r.assert_running();
        r.try_status()?.has_route(to).then_some(())
    });
}

#[test]
fn a_message_crosses_two_hops_through_a_chain_of_three() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "wireless");
    let relay = mesh.node("relay-1", "relay", "wireless").peer(&hq);
    let t1 = mesh.node("township-01", "township", "wireless").peer(&relay);
    let mut hq = hq.start();
    let _relay = relay.start();
    let t1 = t1.start();
    wait_route(&mut hq, "township-01");
    let id = cli_ok(&[
        "send",
        "--api",
        &hq.spec.api_url(),
        "--to",
        "node:township-01",
        "--precedence",
        "priority",
        "--wait",
        "sandbags to the north dyke",
    ]);
    let inbox = t1.inbox_all();
    assert_eq!(ids(&inbox), vec![id.trim().to_owned()]);
    assert_eq!(inbox[0].body.as_deref(), Some("sandbags to the north dyke"));
    let view = hq.message(id.trim(), "0s");
    assert_eq!(view.custody_at.as_deref(), Some("relay-1"), "hq handed it to the relay");
}

#[test]
fn a_diamond_delivers_every_message_exactly_once_when_a_relay_dies_mid_flow() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "wireless");
    let r1 = mesh.node("relay-1", "relay", "wireless").peer(&hq);
    let r2 = mesh.node("relay-2", "relay", "wireless").peer(&hq);
    let t1 = mesh.node("township-01", "township", "wireless").peer(&r1).peer(&r2);
    let mut hq = hq.start();
    let mut r1 = r1.start();
    let _r2 = r2.start();
    let t1 = t1.start();
    wait_route(&mut hq, "township-01");

    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (stop, spec) = (stop.clone(), hq.spec.clone());
        std::thread::spawn(move || {
            let client = http();
            let mut accepted = Vec::new();
            for i in 0..400 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let body = serde_json::json!({"to": "node:township-01", "precedence": "immediate", "body": format!("report {i}")});
                if let Ok(r) =
                    client.post(format!("{}/v1/messages", spec.api_url())).json(&body).send()
                    && r.status().as_u16() == 201
                {
                    accepted.push(r.json::<SubmitDoc>().unwrap().id);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            accepted
        })
    };
    // Kill whichever relay carries the flow once messages are flowing, bring it back later.
    wait_for("deliveries under way", Duration::from_secs(30), || {
        (t1.inbox_all().len() >= 50).then_some(())
    });
    r1.kill();
    wait_for("deliveries after the loss", Duration::from_secs(30), || {
        (t1.inbox_all().len() >= 200).then_some(())
    });
    r1.restart();
    let accepted = loader.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let want: BTreeSet<String> = accepted.iter().cloned().collect();
    let got = wait_for("every accepted message", Duration::from_secs(60), || {
        let got = ids(&t1.inbox_all());
        want.is_subset(&got.iter().cloned().collect()).then_some(got)
    });
    assert_eq!(got.len(), accepted.len(), "duplicates or strangers in the inbox");
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), got.len());
}

#[test]
fn a_link_that_went_silent_is_redialled_and_flows_as_soon_as_the_path_returns() {
    let mesh = Mesh::new();
    let t1 = mesh.node("township-01", "township", "wireless");
    let radio = UdpProxy::start(t1.port);
    let hq = mesh.node("county-hq", "command", "wireless").peer_at(
        "township-01",
        radio.port,
        "wireless",
    );
    let t1 = t1.start();
    let mut hq = hq.start();
    hq.wait_link("township-01");
    radio.cut();
    // The probes go unanswered: the link is declared down and its connection closed.
    wait_for("the silent link's connection to be closed", Duration::from_secs(20), || {
        hq.status().links.is_empty().then_some(())
    });
    let id = hq.submit("node:township-01", "flash", "held through the cut").unwrap();
    radio.heal();
    // Well inside QUIC's 30 s idle timeout, which a dead connection would wait out.
    assert_eq!(hq.message(&id, "10s").state, "delivered");
    assert_eq!(ids(&t1.inbox_all()).len(), 1);
}

#[test]
fn cutting_one_medium_moves_traffic_to_the_other() {
    let mesh = Mesh::new();
    let mut t1 = mesh.node("township-01", "township", "wireless");
    let sat_port = t1.listen_also("satellite");
    let wireless = UdpProxy::start(t1.port);
    let satellite = UdpProxy::start(sat_port);
    let hq = mesh
        .node("county-hq", "command", "wireless")
        .peer_at("township-01", wireless.port, "wireless")
        .peer_at("township-01", satellite.port, "satellite");
    let t1 = t1.start();
    let mut hq = hq.start();
    wait_for("both links up", Duration::from_secs(30), || {
        let up = hq.try_status()?.links.iter().filter(|l| l.up).count();
        (up == 2).then_some(())
    });
    let before = hq.submit("node:township-01", "priority", "over the radio").unwrap();
    assert_eq!(hq.message(&before, "20s").state, "delivered");
    // Offers each medium's links took, summed over the links of that medium (a link that
    // flaps under load is removed and comes back as a new link with counters of its own, so
    // what an earlier satellite link carried may not be counted here).
    let link_accepted = |hq: &Relay, medium: &str| -> u64 {
        hq.status().links.iter().filter(|l| l.medium == medium).map(|l| l.accepted).sum()
    };
    let radio_before = link_accepted(&hq, "wireless");
    wireless.cut();
    let after: Vec<String> = (0..5)
        .map(|i| {
            hq.submit("node:township-01", "priority", &format!("over the satellite {i}")).unwrap()
        })
        .collect();
    for id in &after {
        assert_eq!(hq.message(id, "30s").state, "delivered", "{id}");
    }
    // Delivered while the radio proxy drops every packet (so over the satellite), and no
    // radio link took them.
    assert!(link_accepted(&hq, "wireless") <= radio_before, "the radio link took none");
    let got = ids(&t1.inbox_all());
    assert_eq!(got.len(), 6);
    hq.assert_running();
}

#[test]
fn a_topic_publish_reaches_a_wildcard_subscriber_three_hops_away() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "wireless");
    let r1 = mesh.node("relay-1", "relay", "wireless").peer(&hq);
    let r2 = mesh.node("relay-2", "relay", "wireless").peer(&r1);
    let t1 = mesh.node("team-01", "field", "wireless").peer(&r2);
    let mut hq = hq.start();
    let _r1 = r1.start();
    let _r2 = r2.start();
    let t1 = t1.start();
    wait_route(&mut hq, "team-01");
    // `listen --topic` subscribes (durably) and prints only matching messages.
    let listener = std::process::Command::new(&*BIN)
        .args([
            "listen",
            "--api",
            &t1.spec.api_url(),
            "--topic",
            "weather/+/rain",
            "--json",
            "--count",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the subscription", Duration::from_secs(10), || {
        t1.status().subscriptions.iter().any(|s| s == "weather/+/rain").then_some(())
    });
    // Published at once: if hq has not heard of the subscription yet, it binds the message to
    // the subscriber when the advert arrives (late binding).
    let id = hq.submit("topic:weather/north/rain", "immediate", "heavy rain north").unwrap();
    hq.submit("topic:weather/north/wind", "immediate", "not for this subscriber").unwrap();
    let out = listener.wait_with_output().unwrap();
    let line: InboxMessageDoc =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().lines().next().unwrap())
            .unwrap();
    assert_eq!(line.id, id);
    assert_eq!(line.to, "topic:weather/north/rain");
    assert_eq!(hq.message(&id, "20s").state, "delivered");
    let inbox = t1.inbox_all();
    assert!(
        inbox.iter().all(|m| m.to != "topic:weather/north/wind"),
        "only subscribed topics arrive"
    );
}

#[test]
fn a_group_message_reaches_every_township_and_an_unauthorised_broadcast_is_refused() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "wireless");
    let relay = mesh.node("relay-1", "relay", "wireless").peer(&hq);
    let towns: Vec<NodeSpec> = (1..=3)
        .map(|i| mesh.node(&format!("township-0{i}"), "township", "wireless").peer(&relay))
        .collect();
    let mut hq = hq.start();
    let _relay = relay.start();
    let towns: Vec<Relay> = towns.iter().map(NodeSpec::start).collect();
    for t in ["township-01", "township-02", "township-03"] {
        wait_route(&mut hq, t);
    }
    let id = cli_ok(&[
        "send",
        "--api",
        &hq.spec.api_url(),
        "--to",
        "group:role:township",
        "--precedence",
        "flash",
        "--wait",
        "all townships: open the shelters",
    ]);
    let view = hq.message(id.trim(), "0s");
    assert_eq!(view.state, "delivered");
    assert_eq!(view.destinations.len(), 3);
    for t in &towns {
        assert_eq!(ids(&t.inbox_all()), vec![id.trim().to_owned()], "{}", t.spec.id);
    }
    // A township may not send FLASH to everyone: refused at submission, with the reason.
    let out = cli(&[
        "send",
        "--api",
        &towns[0].spec.api_url(),
        "--to",
        "group:all",
        "--precedence",
        "flash",
        "forged order",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only command nodes may send FLASH to group:all"), "{err}");
}
