//! Gateways with real relay processes: a CAP alert posted to the county node reaches every
//! township's feed, as sent, once; its Update and Cancel follow; an exercise stays an
//! exercise; alerts dropped in a watched directory go out, and a township POSTs what it
//! receives to its broadcast system through that system's failures. A sensor's readings
//! cross an outage through a real Mosquitto broker as its latest value.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use relaymesh::api_model::{CapIngestDoc, ErrorDoc, GatewaysDoc, MqttDoc};
use relaymesh::gateway::cap::format_time;

const STORM: &str = include_str!("data/cap/thunderstorm.xml");

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The thunderstorm warning, sent now, expiring in an hour, as `identifier`.
fn storm(identifier: &str, status: &str) -> String {
    storm_for(identifier, status, 3600)
}

/// The same, expiring `secs` from now.
fn storm_for(identifier: &str, status: &str, secs: i64) -> String {
    STORM
        .replace("KSTO1055887203", identifier)
        .replace("2003-06-17T14:57:00-07:00", &format_time(now()))
        .replace("2003-06-17T16:00:00-07:00", &format_time(now() + secs))
        .replace("<status>Actual</status>", &format!("<status>{status}</status>"))
}

/// The text of `earlier`'s first `<tag>`.
fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let start = xml.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
    &xml[start..start + xml[start..].find('<').unwrap()]
}

/// An Update or Cancel of `earlier` (a document of [`storm`]'s sender). The reference names
/// the earlier alert's own `sent`, which a gateway checks: made up from the clock here, it
/// would differ whenever a second passed between the two.
fn follow_up(identifier: &str, msg_type: &str, earlier: &str, headline: &str) -> String {
    let (id, sent) = (element(earlier, "identifier"), element(earlier, "sent"));
    let reference = format!("KSTO@NWS.NOAA.GOV,{id},{sent}");
    storm(identifier, "Actual")
        .replace("<msgType>Alert</msgType>", &format!("<msgType>{msg_type}</msgType>"))
        .replace(
            "<scope>Public</scope>",
            &format!("<scope>Public</scope>\n  <references>{reference}</references>"),
        )
        .replace("SEVERE THUNDERSTORM WARNING", headline)
}

/// The body `POST /v1/cap/alerts` answered with.
struct CapAnswer(String);

impl CapAnswer {
    /// The messages the alert became (a `200` or `201` answer).
    fn took(&self) -> CapIngestDoc {
        serde_json::from_str(&self.0).unwrap_or_else(|e| panic!("{e}: {}", self.0))
    }

    /// Why it was refused (an error answer).
    fn error(&self) -> String {
        let doc: ErrorDoc =
            serde_json::from_str(&self.0).unwrap_or_else(|e| panic!("{e}: {}", self.0));
        doc.error
    }
}

impl std::fmt::Display for CapAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn post_cap(node: &Relay, xml: &str) -> (u16, CapAnswer) {
    let r = http()
        .post(format!("{}/v1/cap/alerts", node.spec.api_url()))
        .header("content-type", "application/cap+xml")
        .body(xml.to_owned())
        .send()
        .unwrap();
    let code = r.status().as_u16();
    (code, CapAnswer(r.text().unwrap()))
}

fn get_text(node: &Relay, path: &str) -> (u16, String) {
    let r = http().get(format!("{}{path}", node.spec.api_url())).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// The feed's entries: (title, category, message id).
fn feed(node: &Relay, query: &str) -> Vec<(String, String, String)> {
    let (code, text) = get_text(node, &format!("/v1/cap/feed{query}"));
    assert_eq!(code, 200, "{text}");
    let doc = roxmltree::Document::parse(&text).unwrap();
    doc.root_element()
        .children()
        .filter(|n| n.has_tag_name("entry"))
        .map(|e| {
            let child = |name: &str| e.children().find(|c| c.has_tag_name(name)).unwrap();
            let id = child("id").text().unwrap().rsplit(':').next().unwrap().to_owned();
            let term = child("category").attribute("term").unwrap().to_owned();
            (child("title").text().unwrap().to_owned(), term, id)
        })
        .collect()
}

fn titles(node: &Relay) -> Vec<String> {
    feed(node, "").into_iter().map(|(t, _, _)| t).collect()
}

fn wait_titles(node: &Relay, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    wait_for(&format!("{}'s feed to be {want:?}", node.spec.id), Duration::from_secs(30), || {
        (titles(node) == want).then_some(())
    });
}

#[test]
fn a_cap_alert_reaches_every_township_feed_once_and_its_update_and_cancel_follow() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public").extra(
        "[gateway.cap]\ndefault_to = \"group:all\"\n\n[[gateway.cap.area]]\ngeocode = \"006109\"\n\
         value_name = \"SAME\"\nto = \"group:role:township\"\n",
    );
    let t1 = mesh.node("township-01", "township", "public").peer(&hq);
    let t2 = mesh.node("township-02", "township", "public").peer(&hq);
    let mut hq = hq.start();
    let (mut t1, mut t2) = (t1.start(), t2.start());
    hq.wait_link("township-01");
    hq.wait_link("township-02");
    t1.wait_link("county-hq");
    t2.wait_link("county-hq");

    // The alert: its area maps (by SAME code) to every township.
    let first = storm("KSTO-1", "Actual");
    let (code, doc) = post_cap(&hq, &first);
    assert_eq!(code, 201, "{doc}");
    let took = doc.took();
    assert_eq!(took.messages[0].to, "group:role:township");
    let id = took.messages[0].id.clone();
    for t in [&t1, &t2] {
        wait_titles(t, &["SEVERE THUNDERSTORM WARNING"]);
        // As sent, byte for byte.
        assert_eq!(get_text(t, &format!("/v1/cap/alerts/{id}")), (200, first.clone()));
        let inbox = t.inbox_all();
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].precedence, "flash", "Immediate and Severe");
        assert_eq!(inbox[0].content_type, "application/cap+xml");
    }
    // Posted again (a retry, a second feed of the same warning): it travels once.
    let (code, again) = post_cap(&hq, &first);
    assert_eq!(code, 200, "{again}");
    let again = again.took();
    assert_eq!((again.duplicate, again.messages[0].id.as_str()), (true, id.as_str()));

    // The Update replaces it everywhere; the Cancel replaces the Update.
    let (code, doc) =
        post_cap(&hq, &follow_up("KSTO-2", "Update", &first, "STORM WARNING EXTENDED"));
    assert_eq!(code, 201, "{doc}");
    for t in [&t1, &t2] {
        wait_titles(t, &["STORM WARNING EXTENDED"]);
    }
    // The Cancel names only the original (as CAP allows): it is the Update it replaces.
    let (code, doc) =
        post_cap(&hq, &follow_up("KSTO-3", "Cancel", &first, "STORM WARNING CANCELLED"));
    assert_eq!(code, 201, "{doc}");
    for t in [&t1, &t2] {
        wait_titles(t, &["STORM WARNING CANCELLED"]);
        let inbox = t.inbox_all();
        assert_eq!(inbox.len(), 3, "each once");
        assert_eq!(inbox.iter().filter(|m| m.withdrawn.is_some()).count(), 2);
    }

    // An exercise stays one: tagged in the feed, left out of the actual-only feed, and
    // travelled as exercise traffic.
    let (code, doc) = post_cap(&hq, &storm("KSTO-X", "Exercise"));
    assert_eq!(code, 201, "{doc}");
    wait_titles(&t1, &["[EXERCISE] SEVERE THUNDERSTORM WARNING", "STORM WARNING CANCELLED"]);
    assert_eq!(feed(&t1, "")[0].1, "exercise");
    let actual: Vec<String> = feed(&t1, "?status=actual").into_iter().map(|e| e.0).collect();
    assert_eq!(actual, vec!["STORM WARNING CANCELLED"]);
    assert!(t1.inbox_all().iter().any(|m| m.status == "exercise"));

    // Bad input: nothing sent, the element and line named.
    let (code, doc) =
        post_cap(&hq, &first.replace("<urgency>Immediate</urgency>", "<urgency>Now</urgency>"));
    assert_eq!(code, 400);
    assert!(doc.error().starts_with("line 13: <urgency>:"), "{doc}");
    let (code, doc) = post_cap(&hq, &first.replace("</sender>", "</sendr>"));
    assert_eq!(code, 400);
    assert!(doc.error().contains("line 4"), "{doc}");
    let past = STORM.replace("KSTO1055887203", "KSTO-OLD");
    let (code, doc) = post_cap(&hq, &past);
    assert_eq!(code, 400);
    assert!(doc.error().contains("<expires>: 2003-06-17T23:00:00+00:00 is in the past"), "{doc}");
    for size in [(1 << 20) + 1, 2 << 20] {
        let (code, doc) = post_cap(&hq, &"x".repeat(size));
        assert_eq!(code, 413);
        assert!(doc.error().contains("limit of 1048576 bytes"), "{doc}");
    }

    // A node without [gateway.cap] takes no alerts.
    let (code, doc) = post_cap(&t1, &first);
    assert_eq!(code, 404, "t1 runs no gateway: {doc}");
    assert_eq!(t1.inbox_all().len(), 4, "nothing else arrived");

    // Only the same sender's alerts of the same status are cancelled: an exercise Cancel of a
    // real warning, or another sender's, is delivered but withdraws nothing.
    let river = storm("KSTO-R", "Actual").replace("SEVERE THUNDERSTORM WARNING", "RIVER WARNING");
    assert_eq!(post_cap(&hq, &river).0, 201);
    let drill = follow_up("KSTO-XC", "Cancel", &river, "DRILL CANCEL")
        .replace("<status>Actual</status>", "<status>Exercise</status>");
    assert_eq!(post_cap(&hq, &drill).0, 201);
    let other = follow_up("OTHER-C", "Cancel", &river, "OTHER CANCEL")
        .replace("<sender>KSTO@NWS.NOAA.GOV</sender>", "<sender>someone@example.org</sender>");
    assert_eq!(post_cap(&hq, &other).0, 201);
    wait_for("both cancels at township-01", Duration::from_secs(30), || {
        let t = titles(&t1);
        (t.contains(&"[EXERCISE] DRILL CANCEL".to_owned())
            && t.contains(&"OTHER CANCEL".to_owned()))
        .then_some(())
    });
    let actual: Vec<String> = feed(&t1, "?status=actual").into_iter().map(|e| e.0).collect();
    assert!(actual.contains(&"RIVER WARNING".to_owned()), "{actual:?}");
    // An identifier is the sender's for one alert: another document under it is refused.
    let (code, doc) = post_cap(&hq, &river.replace("RIVER WARNING", "RIVER WARNING v2"));
    assert_eq!(code, 409, "{doc}");
    // An alert leaves the feed when it expires.
    let short = storm_for("KSTO-SHORT", "Actual", 4)
        .replace("SEVERE THUNDERSTORM WARNING", "SHORT WARNING");
    assert_eq!(post_cap(&hq, &short).0, 201);
    wait_for("the short warning at township-01", Duration::from_secs(30), || {
        titles(&t1).contains(&"SHORT WARNING".to_owned()).then_some(())
    });
    wait_for("the short warning to expire from the feed", Duration::from_secs(30), || {
        (!titles(&t1).contains(&"SHORT WARNING".to_owned())).then_some(())
    });
    for r in [&mut hq, &mut t1, &mut t2] {
        r.stop();
    }
}

#[test]
fn a_township_gateway_may_not_send_what_its_role_may_not() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let t1 = mesh.node("township-01", "township", "public").peer(&hq).extra("[gateway.cap]\n");
    let (mut hq, mut t1) = (hq.start(), t1.start());
    // FLASH (Immediate, Severe) to group:all from a township: the policy refuses it.
    let (code, doc) = post_cap(&t1, &storm("KSTO-T", "Actual"));
    assert_eq!(code, 403, "{doc}");
    assert!(doc.error().contains("FLASH"), "{doc}");
    // Once refused, nothing of it is recorded: posted again, it is refused again, and so is
    // another document under its identifier (not a conflict with the one refused). `storm`
    // puts the clock's second in the document, so the two differ in any case.
    assert_eq!(post_cap(&t1, &storm("KSTO-T", "Actual")).0, 403);
    assert_eq!(post_cap(&t1, &storm_for("KSTO-T", "Actual", 7200)).0, 403);
    hq.stop();
    t1.stop();
}

/// A broadcast system's receiving end: answers the first `fail` POSTs 503, then 200; keeps
/// the bodies it took.
fn broadcast_terminal(fail: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let taken = got.clone();
    std::thread::spawn(move || {
        let mut failures = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let status = if failures < fail {
                failures += 1;
                "503 Service Unavailable"
            } else {
                taken.lock().unwrap().push(String::from_utf8(body).unwrap());
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (port, got)
}

#[test]
fn alerts_dropped_in_a_directory_go_out_and_a_township_posts_them_through_failures() {
    let mesh = Mesh::new();
    let spool = tempfile::tempdir().unwrap();
    let (terminal, got) = broadcast_terminal(2);
    // Two area rules match the alert, one by code and one by name: township-01 is in both
    // addresses, gets two messages, and shows and posts the alert once.
    let desc = "EXTREME NORTH CENTRAL TUOLUMNE COUNTY IN CALIFORNIA, EXTREME NORTHEASTERN \
                CALAVERAS COUNTY IN CALIFORNIA, SOUTHWESTERN ALPINE COUNTY IN CALIFORNIA";
    let hq = mesh.node("county-hq", "command", "public").extra(&format!(
        "[gateway.cap]\nwatch_dir = \"{}\"\n\n[[gateway.cap.area]]\ngeocode = \"006109\"\n\
         to = \"group:role:township\"\n\n[[gateway.cap.area]]\nname = \"{desc}\"\nto = \"group:all\"\n",
        spool.path().display()
    ));
    let t1 = mesh
        .node("township-01", "township", "public")
        .peer(&hq)
        .extra(&format!("[gateway.cap]\npost_to = [\"http://127.0.0.1:{terminal}/alerts\"]\n"));
    let (mut hq, mut t1) = (hq.start(), t1.start());
    hq.wait_link("township-01");
    let alert = storm("KSTO-DIR", "Actual");
    std::fs::write(spool.path().join("storm.xml.part"), &alert).unwrap();
    std::fs::rename(spool.path().join("storm.xml.part"), spool.path().join("storm.xml")).unwrap();
    std::fs::write(spool.path().join("broken.xml"), "<alert>").unwrap();
    wait_for("the alert taken from the directory", Duration::from_secs(30), || {
        spool.path().join("done/storm.xml").exists().then_some(())
    });
    wait_for("the broken file set aside", Duration::from_secs(30), || {
        std::fs::read_to_string(spool.path().join("failed/broken.xml.error")).ok()
    });
    let why = std::fs::read_to_string(spool.path().join("failed/broken.xml.error")).unwrap();
    assert!(why.contains("not well-formed"), "{why}");
    // The terminal refused twice (503); the township retried until it took the alert.
    wait_for("the township's POST", Duration::from_secs(60), || {
        (got.lock().unwrap().len() == 1).then_some(())
    });
    assert_eq!(got.lock().unwrap()[0], alert);
    assert_eq!(t1.inbox_all().len(), 2, "by both addresses");
    assert_eq!(titles(&t1), vec!["SEVERE THUNDERSTORM WARNING"], "shown once");
    // Restarted, the township does not post it again.
    t1.restart();
    t1.wait_link("county-hq");
    let (code, doc) = post_cap(&hq, &storm("KSTO-DIR-2", "Actual"));
    assert_eq!(code, 201, "{doc}");
    wait_for("the second POST", Duration::from_secs(60), || {
        (got.lock().unwrap().len() == 2).then_some(())
    });
    assert!(got.lock().unwrap()[1].contains("KSTO-DIR-2"));
    hq.stop();
    t1.stop();
}

/// Mosquitto (Debian's) on a free loopback port, stopped when dropped.
struct Broker {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start(port: u16) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\n"))
            .unwrap();
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("Mosquitto (apt install mosquitto)");
        let child = Command::new(bin)
            .args(["-c", conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("Mosquitto to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Broker { port, child, _dir: dir }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An MQTT client of the test's own (rumqttc), its event loop on a thread; what arrives on
/// its subscriptions is collected.
struct Sensor {
    client: rumqttc::Client,
    got: Arc<Mutex<Vec<(String, String)>>>,
}

impl Sensor {
    fn connect(port: u16, id: &str, subscribe: Option<&str>) -> Sensor {
        let opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        let (client, mut connection) = rumqttc::Client::new(opts, 64);
        if let Some(filter) = subscribe {
            client.subscribe(filter, rumqttc::QoS::AtLeastOnce).unwrap();
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => sink
                        .lock()
                        .unwrap()
                        .push((p.topic.clone(), String::from_utf8_lossy(&p.payload).into_owned())),
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        Sensor { client, got }
    }

    fn publish(&self, topic: &str, value: &str) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, value.as_bytes().to_vec())
            .unwrap();
    }
}

/// The node's MQTT bridge counters (`GET /v1/gateways`); the bridge must be configured.
fn mqtt(node: &Relay) -> MqttDoc {
    let doc: GatewaysDoc =
        http().get(format!("{}/v1/gateways", node.spec.api_url())).send().unwrap().json().unwrap();
    doc.mqtt.expect("the MQTT bridge is configured")
}

#[test]
fn a_sensors_latest_reading_crosses_an_outage_through_mosquitto() {
    let broker = Broker::start(free_tcp_port());
    let mesh = Mesh::new();
    // The township's gauges publish to the broker; the county publishes what it receives on
    // sensors/# back to the broker under county/ (its own displays).
    let mut hq = mesh.node("county-hq", "command", "public").extra(&format!(
        "[gateway.mqtt]\nbroker = \"127.0.0.1:{}\"\n\n[[gateway.mqtt.out]]\npattern = \"sensors/#\"\nprefix = \"county/\"\n",
        broker.port
    ));
    let radio_port = hq.listen_also("wireless");
    let radio = UdpProxy::start(radio_port);
    let t1 = mesh.node("township-01", "township", "public").peer_at("county-hq", radio.port, "wireless").extra(&format!(
        "[gateway.mqtt]\nbroker = \"127.0.0.1:{}\"\n\n[[gateway.mqtt.in]]\nfilter = \"gauges/#\"\nto = \"topic:sensors/{{topic}}\"\nprecedence = \"priority\"\nlifetime = \"1h\"\n",
        broker.port
    ));
    let (mut hq, mut t1) = (hq.start(), t1.start());
    hq.wait_link("township-01");
    wait_for("both bridges connected", Duration::from_secs(30), || {
        (mqtt(&hq).connected && mqtt(&t1).connected).then_some(())
    });
    let display = Sensor::connect(broker.port, "county-display", Some("county/#"));
    let gauge = Sensor::connect(broker.port, "gauge-7", None);
    gauge.publish("gauges/river/g7", "2.10");
    wait_for("the first reading at the county display", Duration::from_secs(30), || {
        display
            .got
            .lock()
            .unwrap()
            .contains(&("county/sensors/gauges/river/g7".into(), "2.10".into()))
            .then_some(())
    });

    // The radio link fails (and the township notices); the river rises.
    radio.cut();
    wait_for("the township to see the link down", Duration::from_secs(60), || {
        t1.links().iter().all(|l| l.peer != "county-hq" || !l.up).then_some(())
    });
    for i in 1..=20 {
        gauge.publish("gauges/river/g7", &format!("{:.2}", 2.10 + f64::from(i) * 0.1));
    }
    wait_for("the township to take the readings", Duration::from_secs(30), || {
        (mqtt(&t1).taken == 21).then_some(())
    });
    radio.heal();
    wait_for("the newest reading at the county", Duration::from_secs(90), || {
        hq.inbox_all().iter().any(|m| m.body.as_deref() == Some("4.10")).then_some(())
    });
    let readings: Vec<String> = hq.inbox_all().into_iter().filter_map(|m| m.body).collect();
    // The first reading, the newest, and at most one offered as the link died.
    assert!(readings.len() <= 3, "the backlog travelled: {readings:?}");
    wait_for("the newest reading on the county display", Duration::from_secs(30), || {
        display
            .got
            .lock()
            .unwrap()
            .contains(&("county/sensors/gauges/river/g7".into(), "4.10".into()))
            .then_some(())
    });
    assert_eq!(mqtt(&t1).refused, 0);

    // The broker goes away and comes back: the bridge reconnects by itself.
    let port = broker.port;
    drop(broker);
    wait_for("the township to see the broker gone", Duration::from_secs(30), || {
        (!mqtt(&t1).connected).then_some(())
    });
    let _broker = Broker::start(port);
    wait_for("the township to reconnect", Duration::from_secs(60), || {
        mqtt(&t1).connected.then_some(())
    });
    assert!(mqtt(&t1).broker_errors > 0);
    let gauge = Sensor::connect(port, "gauge-7b", None);
    gauge.publish("gauges/river/g7", "4.50");
    wait_for("a reading after the broker came back", Duration::from_secs(30), || {
        hq.inbox_all().iter().any(|m| m.body.as_deref() == Some("4.50")).then_some(())
    });
    hq.stop();
    t1.stop();
}
