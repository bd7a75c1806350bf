//! Store-and-forward with real processes: custody across `kill -9`, exactly-once delivery,
//! precedence on catch-up, quotas.

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

#[test]
fn held_messages_survive_kill_9_and_arrive_once_flash_first() {
    let mesh = Mesh::new();
    // Catch-up at a controlled rate (200 kbit/s), so the drain order is visible at the far end.
    let hq =
        mesh.node("county-hq", "command", "public").extra("[media.public]\nrate = \"200kbps\"");
    let t1 = mesh.node("township-01", "township", "public").peer(&hq);
    let mut hq_run = hq.start();

    // The next hop is down: everything is held at hq.
    let pad = "p".repeat(2000);
    let mut routine = Vec::new();
    for i in 0..30 {
        routine.push(
            hq_run.submit("node:township-01", "routine", &format!("supplies {i} {pad}")).unwrap(),
        );
    }
    let mut flash = Vec::new();
    for i in 0..10 {
        flash.push(
            hq_run.submit("node:township-01", "flash", &format!("evacuate {i} {pad}")).unwrap(),
        );
    }
    assert_eq!(hq_run.status().queues.routine, 30);

    // Power loss at the holding relay, then it comes back.
    hq_run.kill();
    hq_run.restart();
    let s = hq_run.status();
    assert_eq!(s.queues.routine, 30, "custody survived kill -9");
    assert_eq!(s.queues.flash, 10);

    // The peer comes up: every message arrives exactly once, FLASH drained before ROUTINE.
    let t1_run = t1.start();
    let inbox = wait_for("40 deliveries", Duration::from_secs(60), || {
        let all = t1_run.inbox_all();
        (all.len() >= 40).then_some(all)
    });
    let got = ids(&inbox);
    assert_eq!(got.len(), 40);
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 40, "no duplicates");
    assert_eq!(
        got[..10].iter().collect::<BTreeSet<_>>(),
        flash.iter().collect::<BTreeSet<_>>(),
        "FLASH first"
    );
    assert_eq!(&got[10..], &routine[..], "then ROUTINE, oldest first");
    // Every delivery is reported back to the origin.
    let last = routine.last().unwrap();
    assert_eq!(hq_run.message(last, "30s").state, "delivered");
    let s = hq_run.status();
    assert_eq!(s.queues.routine, 0);
    assert_eq!(s.queues.flash, 0);
}

#[test]
fn kill_9_in_a_loop_under_load_loses_and_duplicates_nothing() {
    let cycles: usize =
        std::env::var("KILL_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(20);
    let started = std::time::Instant::now();
    let mesh = Mesh::new();
    let relay = mesh.node("relay-1", "relay", "wireless");
    let hq = mesh.node("county-hq", "command", "wireless").peer(&relay);
    let t1 = mesh.node("township-01", "township", "wireless").peer(&relay);
    let mut relay_run = relay.start();
    let mut hq_run = hq.start();
    let mut t1_run = t1.start();
    relay_run.wait_link("county-hq");
    relay_run.wait_link("township-01");
    hq_run.wait_link("relay-1");
    t1_run.wait_link("relay-1");
    // Let link state reach hq, so it routes to township-01 through the relay.
    wait_for("a route from hq to township-01", Duration::from_secs(30), || {
        hq_run.status().has_route("township-01").then_some(())
    });

    // A steady load from hq to township-01 through the relay.
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let stop = stop.clone();
        let spec = hq_run.spec.clone();
        std::thread::spawn(move || {
            let client = http();
            let mut accepted = Vec::new();
            let precedences = ["routine", "priority", "immediate", "flash"];
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                // About 200 messages a second: a steady load, not a flood.
                std::thread::sleep(Duration::from_millis(5));
                let body = serde_json::json!({
                    "to": "node:township-01",
                    "precedence": precedences[i % 4],
                    "body": format!("load {i}"),
                });
                let r = client.post(format!("{}/v1/messages", spec.api_url())).json(&body).send();
                if let Ok(r) = r
                    && r.status().as_u16() == 201
                {
                    accepted.push(r.json::<SubmitDoc>().unwrap().id);
                }
                i += 1;
            }
            accepted
        })
    };

    let mut taken = 0u64;
    for cycle in 0..cycles {
        eprintln!("cycle {cycle} at {:?}", started.elapsed());
        // Wait until the relay has taken custody of something new, then pull the plug.
        wait_for(&format!("custody at the relay (cycle {cycle})"), Duration::from_secs(60), || {
            relay_run.assert_running();
            let received = relay_run.try_status()?.total(|c| c.received);
            (received > 5).then_some(())
        });
        taken += 1;
        relay_run.restart(); // kill -9, then start again on the same store
    }
    assert_eq!(taken, cycles as u64);
    eprintln!("cycles done at {:?}", started.elapsed());
    stop.store(true, Ordering::Relaxed);
    let accepted = loader.join().unwrap();
    assert!(accepted.len() > 100, "the load kept flowing: {} accepted", accepted.len());

    let want: BTreeSet<String> = accepted.iter().cloned().collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let inbox = loop {
        let got = ids(&t1_run.inbox_all());
        let set: BTreeSet<String> = got.iter().cloned().collect();
        if want.is_subset(&set) {
            break got;
        }
        if std::time::Instant::now() > deadline {
            let missing: Vec<&String> = want.difference(&set).take(5).collect();
            eprintln!(
                "{} of {} missing, e.g. {missing:?}",
                want.len() - want.intersection(&set).count(),
                want.len()
            );
            for m in &missing {
                eprintln!("{m}: {:?}", hq_run.message(m, "0s"));
            }
            dump(&[&hq_run, &relay_run, &t1_run]);
            panic!("not every accepted message arrived");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let set: BTreeSet<&String> = inbox.iter().collect();
    assert_eq!(set.len(), inbox.len(), "a message was delivered twice");
    assert_eq!(inbox.len(), accepted.len(), "delivered something never accepted");
    eprintln!(
        "{cycles} kill -9 cycles: {} accepted, {} delivered once each, 0 lost, 0 duplicated",
        accepted.len(),
        inbox.len()
    );
    t1_run.assert_running();
    hq_run.assert_running();
}

#[test]
fn quotas_refuse_routine_first_and_send_says_why() {
    let mesh = Mesh::new();
    let hq =
        mesh.node("county-hq", "command", "public").extra("[store]\nmax_bytes = \"40KB\"").start();
    let big = "x".repeat(2000);
    let mut routine = 0;
    let refusal = loop {
        match hq.submit("node:township-01", "routine", &big) {
            Ok(_) => routine += 1,
            Err(e) => break e,
        }
        assert!(routine < 100, "the quota never bit");
    };
    assert_eq!(refusal.0, 503);
    assert!(refusal.1.contains("routine is refused above 70%"), "{}", refusal.1);
    assert!(hq.submit("node:township-01", "flash", &big).is_ok(), "FLASH is still admitted");
    let out = cli(&["send", "--api", &hq.spec.api_url(), "--to", "node:township-01", &big]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("store"), "send says why");
}
