//! End-to-end security tests with real relay processes and a peer that speaks the protocol
//! badly on purpose: one test per row of the bad-input table in SECURITY.md that is on the
//! wire or at the API (the rest are in `tests/foundation.rs` and the core's unit tests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use relaymesh::core::frame::Frame;
use relaymesh::core::trust::seal_envelope;
use relaymesh::core::types::{Body, Envelope};
use relaymesh::core::{Address, MessageId, NodeId, Precedence, Time, TrafficStatus};
use relaymesh::shell::clock::Clock;
use relaymesh::shell::trust::pki_trust;
use relaymesh::wire::{self, codes};

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Connects a raw peer to `to` and completes the `Hello` exchange; returns its control stream.
async fn linked(mesh: &Mesh, name: &str, to: &NodeSpec) -> (RawPeer, quinn::SendStream) {
    let peer = RawPeer::connect(mesh, name, to).await;
    let (send, mut recv) = peer.hello(name, wire::PROTOCOL_VERSION).await;
    let mut buf = [0u8; 256];
    let _ = recv.read(&mut buf).await.unwrap(); // the node's hello: the link is up
    // Keep reading the control stream so the node's writes never block.
    tokio::spawn(async move { while let Ok(Some(_)) = recv.read_chunk(65536, true).await {} });
    (peer, send)
}

/// Waits for the node to close the peer's connection; returns the code and reason.
async fn cut_off(peer: &RawPeer) -> (u32, String) {
    match tokio::time::timeout(Duration::from_secs(20), peer.conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
            (c.error_code.into_inner() as u32, String::from_utf8_lossy(&c.reason).into_owned())
        }
        Ok(other) => panic!("expected the node to cut the peer off, got {other}"),
        Err(_) => panic!("the node did not cut the peer off"),
    }
}

fn envelope(origin: &str, to: &str, body: &str) -> Envelope {
    Envelope {
        id: MessageId([9; 16]),
        origin: NodeId::new(origin).unwrap(),
        to: Address::parse(&format!("node:{to}")).unwrap(),
        precedence: Precedence::Flash,
        lifetime: Duration::from_secs(600),
        content_type: "text/plain".into(),
        payload: Bytes::from(body.to_owned()),
        receipt: false,
        body: Body::Data,
        status: TrafficStatus::Actual,
        created: Time(0),
        age: Duration::ZERO,
        hop_count: 1,
        destinations: vec![NodeId::new(to).unwrap()],
        signature: Bytes::new(),
        key: None,
        supersedes: None,
    }
}

fn security(relay: &Relay) -> SecurityDoc {
    relay.status().security
}

#[test]
fn a_peer_that_forges_another_nodes_order_is_cut_off_and_nothing_is_delivered() {
    let mesh = Mesh::new();
    let (mut hq_run, t1_run) = mesh.linked_pair("");
    let hq = hq_run.spec.clone();

    let (code, reason) = block_on(async {
        let (peer, mut control) = linked(&mesh, "team-8", &hq).await;
        // It says which adverts it holds, as every relay does on a new link: none newer than
        // hq's, so a bad signature cannot be a key hq has not learned yet.
        let mut buf = BytesMut::new();
        wire::encode_frame(&Frame::LsdbSummary { area: String::new(), held: Vec::new() }, &mut buf);
        control.write_all(&buf).await.unwrap();
        // An order "from township-01", signed with team-8's own (valid, CA-issued) key.
        let trust = pki_trust(&peer.creds, Clock::wall()).unwrap();
        let mut forged = envelope("township-01", "county-hq", "evacuate the north bank");
        seal_envelope(&trust, &mut forged);
        // Offered until it is cut off: an offer that overtakes the summary (another stream)
        // is only answered busy, as it might carry a key hq has not learned yet.
        let conn = peer.conn.clone();
        let offers = tokio::spawn(async move {
            for offer in 1.. {
                let mut buf = BytesMut::new();
                let envelope = forged.clone();
                wire::encode_frame(&Frame::Offer { offer, envelope }, &mut buf);
                let Ok(mut stream) = conn.open_uni().await else { break };
                if stream.write_all(&buf).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let closed = cut_off(&peer).await;
        offers.abort();
        closed
    });
    assert_eq!(code, codes::ABUSE);
    assert!(reason.contains("bad signature of township-01"), "{reason}");
    hq_run.assert_running();
    assert!(hq_run.inbox_all().is_empty(), "a forged order was delivered");
    assert_eq!(security(&hq_run).forged, 1);
    let bad = hq_run.status().bad_frames;
    assert!(bad.iter().any(|b| b.reason.contains("team-8 cut off")), "{bad:?}");
    // The real township-01 still gets through.
    let id = t1_run.submit("node:county-hq", "flash", "real order").unwrap();
    assert_eq!(t1_run.message(&id, "20s").state, "delivered");
}

#[test]
fn a_peer_that_floods_is_cut_off() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public").extra("[limits]\npeer_frame_rate = 100\n");
    let mut hq_run = hq.start();
    let (code, reason) = block_on(async {
        let (peer, mut control) = linked(&mesh, "team-8", &hq).await;
        // A sustained flood, 4,000 frames a second (a single burst may land within one
        // second of the node's clock and only be shed), until the node cuts the peer off.
        let flood = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            for _ in 0..200 {
                wire::encode_frame(
                    &Frame::LsdbSummary { area: String::new(), held: Vec::new() },
                    &mut buf,
                );
            }
            let burst = buf.freeze();
            while control.write_all(&burst).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let closed = cut_off(&peer).await;
        flood.abort();
        closed
    });
    assert_eq!(code, codes::ABUSE);
    assert!(reason.contains("flooding"), "{reason}");
    hq_run.assert_running();
    assert!(security(&hq_run).shed_frames >= 100);
}

#[test]
fn a_peer_that_leaves_a_frame_half_sent_is_cut_off() {
    let mesh = Mesh::new();
    let hq =
        mesh.node("county-hq", "command", "public").extra("[limits]\nstall_timeout = \"1s\"\n");
    let mut hq_run = hq.start();
    let (code, reason) = block_on(async {
        let (peer, _control) = linked(&mesh, "team-8", &hq).await;
        let mut stream = peer.conn.open_uni().await.unwrap();
        stream.write_all(&[100, 1, 2, 3]).await.unwrap(); // 3 bytes of a 100-byte frame
        cut_off(&peer).await
    });
    assert_eq!(code, codes::ABUSE);
    assert!(reason.contains("stalled"), "{reason}");
    hq_run.assert_running();
}

#[test]
fn revocation_travels_two_hops_without_the_county_and_shuts_the_stolen_terminal_out() {
    let mesh = Mesh::new();
    // Only the township reads the CA directory's list; the others learn through the mesh.
    let elsewhere = mesh.dir.path().join("no-such-crl.pem");
    let township = mesh.node("township-01", "township", "public");
    let relay = mesh.node("relay-1", "relay", "wireless").peer(&township).crl(&elsewhere);
    let field = mesh.node("team-01", "field", "wireless").peer(&relay).crl(&elsewhere);
    let stolen = mesh.node("team-13", "field", "wireless").peer(&field).crl(&elsewhere);
    let t = township.start();
    let mut r = relay.start();
    let mut f = field.start();
    let mut s = stolen.start();
    r.wait_link("township-01");
    f.wait_link("relay-1");
    s.wait_link("team-01");
    let id = s.submit("node:township-01", "immediate", "before").unwrap();
    assert_eq!(s.message(&id, "30s").state, "delivered");

    let out =
        cli_ok(&["pki", "revoke", "--dir", mesh.pki().to_str().unwrap(), "--node", "team-13"]);
    assert!(out.trim().ends_with("crl.pem"), "{out}");
    for (name, node) in [("relay-1", &r), ("team-01", &f)] {
        wait_for(&format!("{name} to hold revocation list 1"), Duration::from_secs(30), || {
            (security(node).revocation_list == Some(1)).then_some(())
        });
    }
    // team-01 closes its link to the stolen terminal and refuses it from then on.
    wait_for("team-01 to drop the stolen terminal", Duration::from_secs(30), || {
        let s = f.status();
        let linked = s.links.iter().any(|l| l.peer == "team-13");
        let refused = s.refused_links.iter().any(|r| r.reason.contains("certificate revoked"));
        (!linked && refused).then_some(())
    });
    let after = s.submit("node:township-01", "flash", "after").unwrap();
    // Its redials are refused: it has no link left to hand anything to.
    wait_for("the stolen terminal to be refused again", Duration::from_secs(30), || {
        let st = s.status();
        let refused = st.refused_links.iter().any(|r| r.reason.contains("revoked"));
        (refused && st.links.is_empty()).then_some(())
    });
    assert_eq!(s.message(&after, "0s").state, "held");
    let bodies = t.inbox_all().into_iter().filter_map(|m| m.body).collect::<Vec<_>>();
    assert!(bodies.iter().all(|b| !b.contains("after")), "{bodies:?}");
    // Restarted, the relay still knows the list (it kept it in its store).
    r.restart();
    assert_eq!(security(&r).revocation_list, Some(1));
    s.assert_running();
}

#[test]
fn the_api_refuses_cross_origin_and_foreign_host_requests_and_checks_its_token() {
    let mesh = Mesh::new();
    let open = mesh.node("county-hq", "command", "public");
    let token = mesh.node("township-01", "township", "public").api_token("s3cret");
    let _open_run = open.start();
    // The test helpers send the token; the probes below do not.
    let _token_run = token.start();
    let client = http();
    let status = |base: String, headers: &[(&str, &str)]| {
        let mut r = client.get(format!("{base}/v1/status"));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().map(|resp| (resp.status().as_u16(), resp.headers().clone()))
    };
    let (code, headers) = status(open.api_url(), &[]).unwrap();
    assert_eq!(code, 200);
    assert!(headers.get("access-control-allow-origin").is_none(), "no CORS headers");
    assert_eq!(status(open.api_url(), &[("Origin", "http://evil.example")]).unwrap().0, 403);
    assert_eq!(status(open.api_url(), &[("Host", "evil.example:80")]).unwrap().0, 403);

    let base = token.api_url();
    assert_eq!(status(base.clone(), &[]).unwrap().0, 401);
    assert_eq!(status(base.clone(), &[("Authorization", "Bearer wrong")]).unwrap().0, 401);
    assert_eq!(status(base.clone(), &[("Authorization", "Bearer s3cret")]).unwrap().0, 200);
}

#[test]
fn exercise_traffic_is_never_shown_as_actual() {
    let mesh = Mesh::new();
    let (hq_run, t1_run) = mesh.linked_pair("");
    let id = hq_run
        .submit_json(serde_json::json!({
            "to": "node:township-01", "precedence": "flash", "body": "dam breach drill",
            "status": "exercise",
        }))
        .unwrap();
    assert_eq!(hq_run.message(&id, "20s").state, "delivered");
    let inbox = t1_run.inbox_all();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].status, "exercise");
    let out = cli_ok(&["listen", "--count", "1", "--api", &t1_run.spec.api_url()]);
    assert!(out.contains("EXERCISE"), "{out}");
}

#[test]
fn a_frame_on_the_wrong_stream_cuts_the_peer_off() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let mut hq_run = hq.start();
    let (code, reason) = block_on(async {
        let (peer, mut control) = linked(&mesh, "team-8", &hq).await;
        // Offers belong on the precedence streams, never on the control stream.
        let mut buf = BytesMut::new();
        let env = envelope("team-8", "county-hq", "wrong stream");
        wire::encode_frame(&Frame::Offer { offer: 1, envelope: env }, &mut buf);
        control.write_all(&buf).await.unwrap();
        cut_off(&peer).await
    });
    assert_eq!(code, codes::UNEXPECTED);
    assert!(reason.contains("unexpected offer frame"), "{reason}");
    hq_run.assert_running();
}

#[test]
fn garbage_before_the_hello_closes_the_connection_with_the_code_that_says_why() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let mut hq_run = hq.start();
    // Bytes that claim a 5-byte frame and are none; then a length prefix of 4 GiB.
    let mut huge = BytesMut::new();
    prost::encoding::encode_varint(4 << 30, &mut huge);
    let cases: [(&str, &[u8], u32); 2] = [
        ("team-8", &[5, 0xff, 0xff, 0xff, 0xff, 0xff], codes::MALFORMED),
        ("team-9", &huge, codes::OVERSIZED),
    ];
    for (name, bytes, expected) in cases {
        let (code, reason) = block_on(async {
            let peer = RawPeer::connect(&mesh, name, &hq).await;
            let (mut send, _recv) = peer.conn.open_bi().await.unwrap();
            send.write_all(bytes).await.unwrap();
            cut_off(&peer).await
        });
        assert_eq!(code, expected, "{name}: {reason}");
        assert!(reason.contains("bad hello"), "{reason}");
    }
    hq_run.assert_running();
}

#[test]
fn one_certificate_holds_at_most_eight_connections_and_refusals_do_not_flood_the_log() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let mut hq_run = hq.start();
    mesh.issue("team-8", "field");
    let creds = mesh.credentials("team-8").unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], hq.port));
    let (abused, open) = block_on(async {
        // Thirty connections from one field certificate, none of which says hello.
        let mut peers = Vec::new();
        for _ in 0..30 {
            let p = relaymesh_testkit::RawPeer::dial(&creds, Clock::wall(), "county-hq", addr);
            peers.push(p.await.unwrap());
        }
        // Those over the limit are closed at once; wait for them, then look at the rest.
        let closed =
            futures_util::future::select_all(peers.iter().map(|p| Box::pin(p.conn.closed())));
        let _ = tokio::time::timeout(Duration::from_secs(20), closed).await;
        let mut abused = 0;
        for _ in 0..100 {
            abused = peers
                .iter()
                .filter(|p| matches!(p.conn.close_reason(),
                    Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == quinn::VarInt::from_u32(codes::ABUSE)))
                .count();
            if abused >= 22 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let open: Vec<_> = peers.iter().filter(|p| p.conn.close_reason().is_none()).collect();
        let held = open.len();
        // The ones held never say hello: each is closed BAD_HELLO at the 20 s deadline.
        for p in open {
            match tokio::time::timeout(Duration::from_secs(40), p.conn.closed()).await {
                Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
                    assert_eq!(c.error_code, quinn::VarInt::from_u32(codes::BAD_HELLO));
                }
                other => panic!("expected a BAD_HELLO close at the deadline, got {other:?}"),
            }
        }
        (abused, held)
    });
    assert_eq!(abused, 22, "all but eight refused as abuse");
    assert_eq!(open, 8, "eight held (until the hello deadline)");
    hq_run.assert_running();
    let log = hq_run.log();
    let warned = log.lines().filter(|l| l.contains("WARN") && l.contains("refused link")).count();
    assert!(warned <= 20, "{warned} refusals logged at WARN in a minute");
    assert!(log.contains("too many connections from team-8"), "{log}");
}
