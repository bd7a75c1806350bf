//! Cancel, replace and latest-value keys with real relay processes, from the command line
//! and the API: a correction replaces the first order in the recipient's inbox, a recalled
//! order held at a relay while its township is down never arrives, and only an order's origin
//! may recall it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use relaymesh::api_model::{InboxMessageDoc, StatusDoc, WithdrawnDoc};
use serde_json::json;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Opens `/v1/inbox/stream?from=0` at `api` and, on a thread, reads it until a `withdrawn`
/// event comes: its data line. Gives up (an error, not a hang) after 60 s without one.
fn follow_withdrawn(api: &str) -> std::thread::JoinHandle<Result<String, String>> {
    use std::io::{BufRead, BufReader, Write};
    let addr = api.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = format!("GET /v1/inbox/stream?from=0 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    tcp.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(tcp);
    // The headers: the stream is open (and following the node's events) once they came.
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = String::new();
        let mut withdrawn = false;
        while std::time::Instant::now() < deadline {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return Err(format!("the stream ended: {seen}")),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(e) => return Err(format!("{e}: {seen}")),
            }
            if withdrawn && let Some(data) = line.strip_prefix("data:") {
                return Ok(data.trim().to_owned());
            }
            withdrawn = line.trim() == "event: withdrawn" || line.trim() == "event:withdrawn";
            seen.push_str(&line);
        }
        Err(format!("no withdrawn event in 60 s: {seen}"))
    })
}

fn find<'a>(inbox: &'a [InboxMessageDoc], id: &str) -> &'a InboxMessageDoc {
    inbox.iter().find(|m| m.id == id).unwrap_or_else(|| panic!("{id} not in {inbox:?}"))
}

#[test]
fn a_commander_replaces_and_recalls_orders_from_the_command_line() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let relay = mesh.node("relay-01", "relay", "public").peer(&hq);
    let t1 = mesh.node("township-01", "township", "public").peer(&relay);
    let hq_run = hq.start();
    let mut relay_run = relay.start();
    let mut t1_run = t1.start();
    relay_run.wait_link("county-hq");
    t1_run.wait_link("relay-01");
    wait_for("hq to learn a route to township-01", Duration::from_secs(20), || {
        let s: StatusDoc = hq_run.status();
        s.routes.iter().any(|r| r.destination == "township-01").then_some(())
    });

    // An order, then its correction: the first is marked superseded in the inbox.
    let out =
        hq_run.send_cli(&["--to", "node:township-01", "-p", "flash", "--wait", "road 7 open"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = stdout(&out);
    // township-01's inbox stream, following as the correction arrives.
    let stream = follow_withdrawn(&t1.api_url());
    let out = hq_run.send_cli(&[
        "--to",
        "node:township-01",
        "-p",
        "flash",
        "--wait",
        "--replaces",
        &first,
        "road 7 CLOSED",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let second = stdout(&out);
    let inbox = wait_for("the first order to be marked", Duration::from_secs(20), || {
        let inbox = t1_run.inbox_all();
        inbox.iter().any(|m| m.id == first && m.withdrawn.is_some()).then_some(inbox)
    });
    let w = find(&inbox, &first).withdrawn.clone().unwrap();
    assert_eq!((w.outcome.as_str(), w.by.as_str()), ("superseded", second.as_str()));
    assert_eq!(find(&inbox, &second).replaces.as_deref(), Some(first.as_str()));
    let event: WithdrawnDoc = serde_json::from_str(&stream.join().unwrap().unwrap()).unwrap();
    assert_eq!(
        (event.id.as_str(), event.outcome.as_str(), event.by.as_str()),
        (first.as_str(), "superseded", second.as_str())
    );
    let listed = cli_ok(&["listen", "--api", &t1.api_url(), "--count", "2"]);
    assert!(listed.contains(&format!("[SUPERSEDED by {second}]")), "{listed}");
    assert!(listed.contains(&format!("[replaces {first}]")), "{listed}");
    assert_eq!(hq_run.message(&second, "0s").replaces.as_deref(), Some(first.as_str()));

    // The township goes down; an order waits for it; the commander recalls it.
    t1_run.kill();
    wait_for("hq to see township-01 gone", Duration::from_secs(30), || {
        let s = hq_run.status();
        (!s.routes.iter().any(|r| r.destination == "township-01")).then_some(())
    });
    let order = hq_run.submit("node:township-01", "immediate", "evacuate sector 4").unwrap();
    let out = cli(&["cancel", "--api", &hq.api_url(), "--reason", "wrong sector", &order]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cancel = stdout(&out);
    assert_eq!(cancel.len(), 32, "{cancel}");
    assert_eq!(hq_run.message(&order, "0s").state, "cancelled");
    assert_eq!(hq_run.message(&order, "0s").cancelled_by.as_deref(), Some(cancel.as_str()));

    // The township returns: it gets the cancel, never the order; nothing is held anywhere.
    t1_run.restart();
    t1_run.wait_link("relay-01");
    wait_for("the cancel to reach township-01", Duration::from_secs(30), || {
        let c = hq_run.message(&cancel, "2s");
        (c.with_outcome("delivered").contains(&"township-01")).then_some(())
    });
    assert!(!t1_run.inbox_ids().contains(&order), "a recalled order was delivered");
    wait_for("nothing held anywhere", Duration::from_secs(30), || {
        let held = |r: &Relay| {
            let q = r.status().queues;
            q.flash + q.immediate + q.priority + q.routine
        };
        (held(&hq_run) + held(&relay_run) + held(&t1_run) == 0).then_some(())
    });

    // Only the origin may recall: township-01 cannot cancel hq's order (exit 1, 403).
    let out = cli(&["cancel", "--api", &t1.api_url(), &second]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("only county-hq, its origin"), "{}", stderr(&out));
    let r = http()
        .post(format!("{}/v1/messages/{second}/cancel", t1.api_url()))
        .json(&json!({ "reason": "no" }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[test]
fn bad_keys_targets_and_cancels_are_refused_with_the_reason() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let hq_run = hq.start();
    let too_long = "k".repeat(129);
    for (body, why) in [
        (json!({ "to": "node:x", "body": "a", "key": too_long }), "1 to 128 bytes"),
        (json!({ "to": "node:x", "body": "a", "key": "pos/#" }), "key"),
        (json!({ "to": "node:x", "body": "a", "replaces": "zz" }), "replaces"),
    ] {
        let (code, error) = hq_run.submit_json(body).unwrap_err();
        assert_eq!(code, 400, "{error}");
        assert!(error.contains(why), "{error}");
    }
    let client = http();
    let r = client.post(format!("{}/v1/messages/nothex/cancel", hq.api_url())).send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = client
        .post(format!("{}/v1/messages/{}/cancel", hq.api_url(), "ab".repeat(16)))
        .json(&json!({ "reason": "x", "colour": "red" }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "unknown fields are refused");
    // An id never seen here: accepted, pending until it arrives.
    let r = client
        .post(format!("{}/v1/messages/{}/cancel", hq.api_url(), "ab".repeat(16)))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let doc: relaymesh::api_model::CancelDoc = r.json().unwrap();
    assert_eq!(doc.state, "pending");
    let out = cli(&["send", "--api", &hq.api_url(), "--to", "node:x", "--key", "a/+", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A keyed message is accepted and shows its key.
    let id =
        hq_run.submit_json(json!({ "to": "node:x", "body": "pos", "key": "pos/team-07" })).unwrap();
    assert_eq!(hq_run.message(&id, "0s").key.as_deref(), Some("pos/team-07"));
}
