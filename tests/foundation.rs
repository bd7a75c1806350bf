//! End to end, with real processes and real sockets: certificates made with the CLI, relays
//! linked over QUIC with mutual TLS, messages sent and received with the CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use common::*;
use relaymesh::core::{NodeId, Role};
use relaymesh::wire::{self, codes};

#[test]
fn two_relays_deliver_a_message_sent_with_the_cli() {
    let mesh = Mesh::new();
    let (hq, t1) = mesh.linked_pair("");

    let id = cli_ok(&[
        "send",
        "--api",
        &hq.spec.api_url(),
        "--to",
        "node:township-01",
        "--precedence",
        "flash",
        "--wait",
        "evacuate sector 4",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 32, "a 32-digit id: {id:?}");

    let out = cli_ok(&["listen", "--api", &t1.spec.api_url(), "--json", "--count", "1"]);
    let m: InboxMessageDoc = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(m.id, id);
    assert_eq!(m.origin, "county-hq");
    assert_eq!(m.to, "node:township-01");
    assert_eq!(m.precedence, "flash");
    assert_eq!(m.body.as_deref(), Some("evacuate sector 4"));
    assert!(m.age_ms >= 0.0);

    // listen marked it read: the unread inbox is empty now.
    let status = t1.status();
    assert_eq!(status.inbox.unread, 0);
    let view = hq.message(id, "0s");
    assert_eq!(view.state, "delivered");
}

#[test]
fn links_report_the_payload_framing_and_udp_bytes_they_carried() {
    let mesh = Mesh::new();
    let (hq, t1) = mesh.linked_pair("");
    let body = "x".repeat(40);
    for _ in 0..20 {
        hq.submit("node:township-01", "routine", &body).unwrap();
    }
    wait_for("20 deliveries", Duration::from_secs(30), || {
        (t1.inbox_ids().len() == 20).then_some(())
    });

    let sent = hq.link_bytes("township-01").sent;
    let got = t1.link_bytes("county-hq").received;
    // Every offer carried one 40-byte payload (an offer timed out would be sent again, and
    // counted again: loopback makes that unlikely, not impossible).
    assert!(sent.offers >= 20, "{sent:?}");
    assert_eq!(sent.payload, sent.offers * 40, "{sent:?}");
    assert_eq!((got.offers, got.payload), (sent.offers, sent.payload), "{got:?}");
    assert_eq!(got.offer_bytes, sent.offer_bytes, "both ends count the same encoded offers");
    let framing = sent.framing_per_offer().unwrap();
    assert!(framing > 0.0 && framing < 1000.0, "framing per offer {framing}");
    // QUIC carries all of it, plus its own headers and the handshake.
    assert!(sent.udp_bytes > sent.offer_bytes + sent.control_bytes, "{sent:?}");
    // The custody answers flowed back on the control stream.
    let back = t1.link_bytes("county-hq").sent;
    assert!(back.control_bytes > 0, "{back:?}");

    let metrics = http().get(format!("{}/metrics", hq.spec.api_url())).send().unwrap();
    let metrics = metrics.text().unwrap();
    assert!(
        metrics.contains(&format!(
            "relaymesh_link_wire_bytes_total{{peer=\"township-01\",medium=\"public\",\
             direction=\"sent\",kind=\"payload\"}} {}",
            sent.payload
        )),
        "{metrics}"
    );
    let out = cli_ok(&["status", "--api", &hq.spec.api_url()]);
    assert!(
        out.contains(&format!("{} offers, payload {} B of", sent.offers, sent.payload)),
        "{out}"
    );
}

#[test]
fn compact_offers_go_to_relays_that_announce_them_and_plain_envelopes_to_one_that_does_not() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let new = mesh.node("township-01", "township", "public").peer(&hq);
    // As a relay from before compact offers: it does not announce compact-v1.
    let old = mesh
        .node("township-02", "township", "public")
        .peer(&hq)
        .extra("[wire]\ncompact_offers = false\n");
    let (mut hq, mut new, mut old) = (hq.start(), new.start(), old.start());
    Relay::wait_star(&mut hq, &mut [&mut new, &mut old]);
    let body = "x".repeat(40);
    for _ in 0..30 {
        hq.submit("node:township-01", "routine", &body).unwrap();
        hq.submit("node:township-02", "routine", &body).unwrap();
    }
    for _ in 0..10 {
        new.submit("node:county-hq", "flash", &body).unwrap();
        old.submit("node:county-hq", "flash", &body).unwrap();
    }
    for (r, n) in [(&new, 30), (&old, 30), (&hq, 20)] {
        wait_for("deliveries", Duration::from_secs(30), || {
            (r.inbox_ids().len() == n).then_some(())
        });
    }
    let sent = |r: &Relay, peer: &str| r.link_bytes(peer).sent;
    let (to_new, to_old) = (sent(&hq, "township-01"), sent(&hq, "township-02"));
    let (compact, plain) =
        (to_new.framing_per_offer().unwrap(), to_old.framing_per_offer().unwrap());
    // Messages submitted one by one are sealed one by one: each carries its own signature,
    // compact or not; compact offers leave out the strings, times and numbers repeated.
    eprintln!("framing per offer: compact {compact} B, plain {plain} B");
    assert!(compact + 40.0 < plain, "compact {compact} B, plain {plain} B: {}", hq.show_bytes());
    // The old relay's offers to hq are plain (it does not encode compact ones), and hq,
    // which takes both, read them.
    let from_old = sent(&old, "county-hq").framing_per_offer().unwrap();
    assert!(from_old > compact + 40.0, "old relay's framing {from_old} B: {}", old.show_bytes());
}

#[test]
fn relays_of_each_compact_dialect_exchange_offers_in_the_newest_both_take() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let v3 = mesh.node("township-01", "township", "public").peer(&hq);
    // As relays from before `compact-v3` and before `compact-v2`.
    let v2 = mesh
        .node("township-02", "township", "public")
        .peer(&hq)
        .extra("[wire]\ncompact_dialect = 2\n");
    let v1 = mesh
        .node("township-03", "township", "public")
        .peer(&hq)
        .extra("[wire]\ncompact_dialect = 1\n");
    let (mut hq, mut v3, mut v2, mut v1) = (hq.start(), v3.start(), v2.start(), v1.start());
    Relay::wait_star(&mut hq, &mut [&mut v3, &mut v2, &mut v1]);
    let towns = ["township-01", "township-02", "township-03"];
    // A run of orders to each township (receipts asked for, the default), and reports from
    // each back to hq.
    let body = "x".repeat(40);
    let mut ids = Vec::new();
    for t in towns {
        for _ in 0..30 {
            ids.push(hq.submit(&format!("node:{t}"), "routine", &body).unwrap());
        }
    }
    for r in [&v3, &v2, &v1] {
        for _ in 0..10 {
            r.submit("node:county-hq", "priority", &body).unwrap();
        }
    }
    for (r, n) in [(&v3, 30), (&v2, 30), (&v1, 30), (&hq, 30)] {
        wait_for("deliveries", Duration::from_secs(30), || {
            (r.inbox_ids().len() == n).then_some(())
        });
    }
    // Every order's receipt came back across its link, whichever dialect carried it.
    for id in &ids {
        assert_eq!(hq.message(id, "20s").state, "delivered", "{id}");
    }
    let framing = |r: &Relay, peer: &str| r.link_bytes(peer).sent.framing_per_offer().unwrap();
    let [to_v3, to_v2, to_v1] = towns.map(|t| framing(&hq, t));
    eprintln!("framing per offer from hq: v3 {to_v3} B, v2 {to_v2} B, v1 {to_v1} B");
    // compact-v2 left out 15 bytes of each id; compact-v3 the rest of an id in a run, the
    // hop count and the receipt flag repeated (at least 7 bytes).
    assert!(to_v2 + 10.0 < to_v1, "v2 {to_v2} B, v1 {to_v1} B");
    assert!(to_v3 + 5.0 < to_v2, "v3 {to_v3} B, v2 {to_v2} B");
    // Each older relay encodes its own dialect to hq, which takes them all.
    let [from_v3, from_v2, from_v1] = [&v3, &v2, &v1].map(|r| framing(r, "county-hq"));
    eprintln!("framing per offer to hq: v3 {from_v3} B, v2 {from_v2} B, v1 {from_v1} B");
    // Receipts and reports mixed, batched as they come: on a busy machine v2's batches packed
    // closer (133.6 B against 137.9 B, where 133.2 against 139.5 is usual), so the margin
    // here is smaller than the one above.
    assert!(from_v3 + 2.0 < from_v2 && from_v2 + 10.0 < from_v1, "{from_v3} {from_v2} {from_v1}");
}

#[test]
fn satellite_offer_streams_are_compressed_to_relays_that_take_it_and_plain_to_others() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "satellite");
    let new = mesh.node("township-01", "township", "satellite").peer(&hq);
    // Compression switched off on its own side: it still takes compressed streams.
    let off = mesh
        .node("township-02", "township", "satellite")
        .peer(&hq)
        .extra("[media.satellite]\ncompress = false\n");
    // As a relay from before compression (and compact offers): it announces neither.
    let old = mesh
        .node("township-03", "township", "satellite")
        .peer(&hq)
        .extra("[wire]\ncompact_offers = false\n");
    let (mut hq, mut new, mut off, mut old) = (hq.start(), new.start(), off.start(), old.start());
    Relay::wait_star(&mut hq, &mut [&mut new, &mut off, &mut old]);
    // Situation reports: the wording repeats from one to the next, the figures do not.
    let report = |i: usize| {
        format!(
            "SITREP team-{:02} grid {} {}: {} evacuated, {} injured; road at mill road flooded; \
             water level {} cm, rising. Requesting two boats and a medical team at the school.",
            i % 40,
            4000 + i * 37 % 997,
            7000 + i * 53 % 991,
            i * 7 % 300,
            i % 11,
            100 + i * 13 % 300
        )
    };
    for i in 0..40 {
        for t in ["township-01", "township-02", "township-03"] {
            hq.submit(&format!("node:{t}"), "priority", &report(i)).unwrap();
        }
        off.submit("node:county-hq", "priority", &report(i)).unwrap();
    }
    for (r, n) in [(&new, 40), (&off, 40), (&old, 40), (&hq, 40)] {
        wait_for("deliveries", Duration::from_secs(60), || {
            (r.inbox_ids().len() == n).then_some(())
        });
    }
    let sent = |r: &Relay, peer: &str| r.link_bytes(peer).sent;
    let (to_new, to_off, to_old) =
        (sent(&hq, "township-01"), sent(&hq, "township-02"), sent(&hq, "township-03"));
    let from_off = sent(&off, "county-hq");
    eprintln!(
        "40 reports, {} B: offer stream compressed {} B, plain {} B; with receipts both ways, \
         compressed {} B, compact only {} B",
        to_new.payload,
        to_new.offer_bytes,
        to_old.offer_bytes,
        to_off.offer_bytes,
        from_off.offer_bytes
    );
    // To a relay that takes it: the whole offer stream, each report's own signature
    // included, is smaller than the reports alone, and a third of the plain one.
    assert!(to_new.offer_bytes < to_new.payload, "{}", hq.show_bytes());
    assert!(to_new.offer_bytes * 3 < to_old.offer_bytes, "{}", hq.show_bytes());
    // Between hq and the relay with compression off the same traffic flows both ways (40
    // reports, 40 receipts): compressed one way, not the other.
    assert!(
        to_off.offer_bytes * 3 < from_off.offer_bytes * 2,
        "{} {}",
        hq.show_bytes(),
        off.show_bytes()
    );
    assert!(from_off.offer_bytes > from_off.payload, "{}", off.show_bytes());
}

#[test]
fn a_node_from_another_ca_is_refused_and_its_message_never_arrives() {
    let mesh = Mesh::new();
    let other = Mesh::new(); // a different deployment CA
    let hq = mesh.node("county-hq", "command", "public");
    let hq_run = hq.start();
    // The impostor has a valid certificate, from the wrong CA, and takes our CA as its root
    // for the server, so only the server's check can stop it. (`relaymesh run` itself will
    // not start with a certificate its own CA did not issue: this is a hostile client.)
    let mut creds = other.issue_credentials("township-01", Role::Township).unwrap();
    creds.ca = relaymesh::pki::load_certs(&mesh.pki().join("ca.crt")).unwrap().remove(0);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], hq.port));
    block_on(async {
        let clock = relaymesh::shell::clock::Clock::wall();
        if let Ok(peer) = relaymesh_testkit::RawPeer::dial(&creds, clock, "county-hq", addr).await {
            // TLS 1.3: the client may finish before the server has judged its certificate.
            let _ = peer.conn.closed().await;
        }
    });
    let refusal = wait_for("the refusal", Duration::from_secs(20), || {
        hq_run.status().refused_links.first().cloned()
    });
    let reason = refusal.reason;
    assert!(reason.contains("UnknownIssuer") || reason.contains("certificate"), "{reason}");
    assert!(hq_run.inbox_all().is_empty());
    assert!(hq_run.status().links.is_empty());
}

#[test]
fn an_expired_certificate_is_refused() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let mut hq_run = hq.start();
    // Issue an expired certificate through the library (the CLI only issues valid ones).
    let ca = relaymesh::pki::load_ca(&mesh.pki()).unwrap();
    let old = SystemTime::now() - Duration::from_secs(400 * 24 * 3600);
    let validity =
        relaymesh::pki::Validity { not_before: old, not_after: old + Duration::from_secs(86400) };
    let cert = ca
        .issue(
            &NodeId::new("team-7").unwrap(),
            Role::Field,
            relaymesh::pki::random_seed().unwrap(),
            validity,
        )
        .unwrap();
    std::fs::write(mesh.pki().join("team-7.crt"), &cert.cert_pem).unwrap();
    std::fs::write(mesh.pki().join("team-7.key"), &cert.key_pem).unwrap();
    let team = mesh.node("team-7", "field", "public").peer(&hq);
    let team = team.start();
    // It starts (it can still take and hold local traffic), saying why no one will link.
    assert!(team.log().contains("certificate EXPIRED"), "{}", team.log());
    let refusal = wait_for("the refusal", Duration::from_secs(20), || {
        hq_run.assert_running();
        hq_run.status().refused_links.first().cloned()
    });
    let reason = refusal.reason;
    assert!(reason.contains("certificate expired"), "{reason}");
}

#[test]
fn a_peer_that_is_not_the_configured_node_is_refused() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let _hq = hq.start();
    // t1 believes township-02 listens at hq's address.
    let mut t1 = mesh.node("township-01", "township", "public");
    t1.peers.push(("township-02".into(), hq.port, "public".into()));
    mesh.issue("township-02", "township");
    let t1 = t1.start();
    let refusal = wait_for("the refusal", Duration::from_secs(20), || {
        t1.status().refused_links.first().cloned()
    });
    assert_eq!(refusal.peer.as_deref(), Some("township-02"));
    let reason = refusal.reason;
    assert!(reason.contains("NotValidForName") || reason.contains("township-02"), "{reason}");
}

/// Runs the async part of a test on its own runtime, so the blocking helpers stay outside it.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn an_unknown_protocol_version_is_refused_with_a_reason() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let hq_run = hq.start();
    block_on(async {
        let peer = RawPeer::connect(&mesh, "team-9", &hq).await;
        let _streams = peer.hello("team-9", 99).await;
        match peer.conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(c) => {
                assert_eq!(c.error_code, quinn::VarInt::from_u32(codes::BAD_VERSION));
                let reason = String::from_utf8_lossy(&c.reason).into_owned();
                assert!(reason.contains("unsupported protocol version 99"), "{reason}");
            }
            other => panic!("expected an application close, got {other}"),
        }
    });
    let s = hq_run.status();
    let reasons: Vec<&str> = s.refused_links.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("unsupported protocol version 99")), "{reasons:?}");
}

#[test]
fn a_hello_that_lies_about_the_id_is_refused() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let _hq_run = hq.start();
    block_on(async {
        let peer = RawPeer::connect(&mesh, "team-9", &hq).await;
        let _streams = peer.hello("county-hq", wire::PROTOCOL_VERSION).await;
        match peer.conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(c) => {
                assert_eq!(c.error_code, quinn::VarInt::from_u32(codes::BAD_HELLO));
            }
            other => panic!("expected an application close, got {other}"),
        }
    });
}

#[test]
fn malformed_and_oversized_frames_cut_the_peer_off_and_the_node_keeps_its_other_links() {
    let mesh = Mesh::new();
    let (mut hq_run, t1_run) = mesh.linked_pair("");
    let hq = hq_run.spec.clone();

    block_on(async {
        // Garbage that claims to be a 5-byte frame, then a frame that announces 100 MB, each
        // from a fresh connection: the stream is stopped and the peer cut off, with the code.
        let mut bad_len = BytesMut::new();
        prost::encoding::encode_varint(100 << 20, &mut bad_len);
        let cases: [(&str, &[u8], u32); 2] = [
            ("team-8", &[5, 0xff, 0xff, 0xff, 0xff, 0xff], codes::MALFORMED),
            ("team-9", &bad_len, codes::OVERSIZED),
        ];
        for (name, bytes, expected) in cases {
            let peer = RawPeer::connect(&mesh, name, &hq).await;
            let (_send, mut recv) = peer.hello(name, wire::PROTOCOL_VERSION).await;
            let mut buf = [0u8; 256];
            let _ = recv.read(&mut buf).await.unwrap(); // hq's hello: the link is up
            let mut stream = peer.conn.open_uni().await.unwrap();
            stream.write_all(bytes).await.unwrap();
            let code = stream.stopped().await.unwrap_or(None);
            assert!(
                code.is_none() || code == Some(quinn::VarInt::from_u32(expected)),
                "stream stopped with {code:?}"
            );
            match peer.conn.closed().await {
                quinn::ConnectionError::ApplicationClosed(c) => {
                    assert_eq!(c.error_code, quinn::VarInt::from_u32(expected));
                }
                other => panic!("expected the peer to be cut off, got {other}"),
            }
        }
    });
    // Every other link still stands.
    hq_run.assert_running();
    let id = t1_run.submit("node:county-hq", "immediate", "still here").unwrap();
    assert_eq!(t1_run.message(&id, "20s").state, "delivered");
    let bad: Vec<String> = hq_run.status().bad_frames.into_iter().map(|b| b.reason).collect();
    assert!(bad.iter().any(|r| r.contains("exceeds the limit")), "{bad:?}");
    assert!(bad.iter().any(|r| r.contains("undecodable")), "{bad:?}");
}

#[test]
fn flash_overtakes_a_routine_backlog_on_a_saturated_link() {
    let mesh = Mesh::new();
    // A thin link: 400 kbit/s of custody offers from hq.
    let (hq, t1) = mesh.linked_pair("[media.public]\nrate = \"400kbps\"");

    let bulk = "r".repeat(2000);
    let routine: Vec<String> =
        (0..100).map(|_| hq.submit("node:township-01", "routine", &bulk).unwrap()).collect();
    let flash: Vec<String> = (0..5)
        .map(|i| hq.submit("node:township-01", "flash", &format!("flash {i}")).unwrap())
        .collect();

    let inbox = wait_for("all 105 messages", Duration::from_secs(60), || {
        let all = t1.inbox_all();
        (all.len() >= 105).then_some(all)
    });
    assert_eq!(inbox.len(), 105);
    let order: Vec<&str> = inbox.iter().map(|m| m.id.as_str()).collect();
    let last_flash =
        flash.iter().map(|f| order.iter().position(|o| o == f).unwrap()).max().unwrap();
    let routine_before =
        order[..last_flash].iter().filter(|o| routine.iter().any(|r| r == *o)).count();
    assert!(
        routine_before < 50,
        "every FLASH should overtake the queued ROUTINE backlog; {routine_before} ROUTINE arrived first"
    );
}

#[test]
fn a_bad_config_exits_2_naming_the_file_the_key_and_the_reason() {
    let mesh = Mesh::new();
    let hq =
        mesh.node("county-hq", "command", "public").extra("[media.satellite]\ncost = \"cheap\"");
    let path = hq.write_config();
    let out = cli(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("county-hq.toml"), "{err}");
    assert!(err.contains("media.satellite.cost"), "{err}");
    assert!(err.contains("invalid type"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn cli_input_errors_exit_2_and_unreachable_nodes_exit_1() {
    let out = cli(&["send", "--to", "nowhere", "hello"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&["send", "--to", "node:x", "--precedence", "urgent", "hello"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli(&[
        "send",
        "--api",
        &format!("http://127.0.0.1:{}", free_tcp_port()),
        "--to",
        "node:x",
        "hi",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the node"));
    let out = cli(&["pki", "issue", "--dir", "/nonexistent", "--node", "x", "--role", "relay"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn send_wait_exits_1_when_the_message_expires() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public").start();
    let out = cli(&[
        "send",
        "--api",
        &hq.spec.api_url(),
        "--to",
        "node:township-99",
        "--lifetime",
        "1s",
        "--wait",
        "nobody is there",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expired"), "{err}");
}
