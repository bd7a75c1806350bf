//! The operator console, end to end: its logins, sessions and CSRF protection against a real
//! relay; the API over TLS; and the main paths in a real browser (Debian's headless Chromium
//! through chromedriver) against two real relays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use common::webdriver::Browser;
use common::*;
use relaymesh::api_model::{SentDoc, SessionDoc};
use serde_json::json;

const NODE_TOKEN: &str = "node-token-0123456789abcdef";
const ALICE: &str = "alice-token-0123456789abcdef";

/// `POST path` with a session cookie and the given extra headers: (status, body).
fn post(
    client: &reqwest::blocking::Client,
    url: String,
    headers: &[(&str, &str)],
    body: serde_json::Value,
) -> (u16, String) {
    let mut r = client.post(url).json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn submitted(relay: &Relay) -> u64 {
    let c = relay.status().counters;
    c.flash.submitted + c.immediate.submitted + c.priority.submitted + c.routine.submitted
}

#[test]
fn console_logins_need_a_valid_token_and_changes_need_the_csrf_token_and_the_same_origin() {
    let mesh = Mesh::new();
    let users = mesh.dir.path().join("api-users");
    std::fs::write(&users, format!("# operators\nalice {ALICE}\n")).unwrap();
    let spec = mesh
        .node("county-hq", "command", "public")
        .api_token(NODE_TOKEN)
        .top(&format!("api_users = \"{}\"", users.display()));
    let relay = spec.start();
    let base = spec.api_url();
    let host = base.trim_start_matches("http://").to_owned();
    let origin = format!("http://{host}");
    let anon = http();

    // The console itself is public, and strict about where it runs.
    let page = anon.get(format!("{base}/")).send().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(page.text().unwrap().contains("/console/app.js"));
    assert_eq!(anon.get(format!("{base}/console/app.js")).send().unwrap().status().as_u16(), 200);
    // Nothing else without credentials.
    assert_eq!(anon.get(format!("{base}/v1/status")).send().unwrap().status().as_u16(), 401);
    assert_eq!(anon.get(format!("{base}/v1/session")).send().unwrap().status().as_u16(), 401);

    // A wrong login: 401 and no cookie.
    let r = anon.post(format!("{base}/v1/login")).json(&json!({"token": "guess"})).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    // A login from another origin: 403, before the token is even looked at.
    let evil = [("Origin", "http://evil.example")];
    let (code, _) = post(&anon, format!("{base}/v1/login"), &evil, json!({"token": ALICE}));
    assert_eq!(code, 403);

    // Alice logs in: an HttpOnly, SameSite=Strict cookie and a CSRF token.
    let r = anon.post(format!("{base}/v1/login")).json(&json!({"token": ALICE})).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.starts_with(&format!("relaymesh-{}=", spec.api)), "{cookie}");
    let session: SessionDoc = r.json().unwrap();
    assert_eq!(session.user, "alice");
    assert_eq!(session.csrf.len(), 64);
    let jar = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = |extra: &[(&'static str, String)]| {
        let mut h = vec![("Cookie", jar.clone())];
        h.extend(extra.iter().cloned());
        h
    };
    let get = |path: &str, headers: &[(&str, String)]| {
        let mut r = anon.get(format!("{base}{path}"));
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(get("/v1/status", &with_cookie(&[])), 200);
    assert_eq!(get("/v1/session", &with_cookie(&[])), 200);

    // A change without the CSRF token, with a wrong one, or from another origin: 403, and
    // nothing was sent.
    let order = json!({"to": "node:county-hq", "precedence": "flash", "body": "evacuate sector 4"});
    let as_refs = |h: Vec<(&'static str, String)>| h;
    let tries = [
        as_refs(with_cookie(&[])),
        as_refs(with_cookie(&[("X-CSRF-Token", "0".repeat(64))])),
        as_refs(with_cookie(&[
            ("X-CSRF-Token", session.csrf.clone()),
            ("Origin", "http://evil.example".into()),
        ])),
    ];
    for headers in &tries {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, body) = post(&anon, format!("{base}/v1/messages"), &h, order.clone());
        assert_eq!(code, 403, "{body}");
    }
    assert_eq!(submitted(&relay), 0, "a refused request sent something");

    // With both, from the console's own origin: sent, and listed under Sent.
    let good = with_cookie(&[("X-CSRF-Token", session.csrf.clone()), ("Origin", origin.clone())]);
    let h: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, body) = post(&anon, format!("{base}/v1/messages"), &h, order.clone());
    assert_eq!(code, 201, "{body}");
    let id: String = serde_json::from_str::<SubmitDoc>(&body).unwrap().id;
    assert_eq!(submitted(&relay), 1);
    let sent: SentDoc = anon
        .get(format!("{base}/v1/messages"))
        .header("Cookie", &jar)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(sent.messages.len(), 1);
    assert_eq!(sent.messages[0].id, id);
    // The console's input goes through the API's own checks, with its words.
    let bad = json!({"to": "node:County HQ", "body": "x"});
    let (code, body) = post(&anon, format!("{base}/v1/messages"), &h, bad);
    assert_eq!(code, 400);
    assert!(body.contains("County HQ"), "{body}");

    // Alice's console follows the node live (one stream for status, sent list and inbox).
    let live = anon
        .get(format!("{base}/v1/status/stream?inbox=10"))
        .header("Cookie", &jar)
        .send()
        .unwrap();
    assert_eq!(live.status().as_u16(), 200);
    let (ended, ends) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut live = live;
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        loop {
            match live.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        let _ = ended.send(seen);
    });

    // Alice's token is revoked (her line leaves the users file): her session ends with it,
    // her live stream too, and so does her token as a bearer.
    std::fs::write(&users, "# operators\n").unwrap();
    let seen = ends.recv_timeout(Duration::from_secs(10)).expect("the live stream goes on");
    assert!(seen.contains("event: status") && seen.contains("event: sent"), "{seen}");
    assert!(seen.contains("evacuate sector 4"), "the inbox rides the same stream: {seen}");
    assert_eq!(get("/v1/status", &with_cookie(&[])), 401);
    let bearer = [("Authorization", format!("Bearer {ALICE}"))];
    assert_eq!(get("/v1/status", &bearer), 401);
    assert_eq!(get("/v1/status", &with_cookie(&[])), 401, "the revoked session came back");

    // The node's own token still logs in; logging out ends that session.
    let r =
        anon.post(format!("{base}/v1/login")).json(&json!({"token": NODE_TOKEN})).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let jar2 = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(get("/v1/status", &[("Cookie", jar2.clone())]), 200);
    let r = anon.post(format!("{base}/v1/logout")).header("Cookie", &jar2).send().unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(get("/v1/status", &[("Cookie", jar2)]), 401);
    assert_eq!(submitted(&relay), 1);
}

/// A self-signed ECDSA certificate for 127.0.0.1 (what a station would get from its own CA):
/// its files, its DER, and its key's SPKI SHA-256 in base64 (what Chromium can be told to trust).
fn lan_certificate_with_spki(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>, String) {
    use base64::Engine;
    use rcgen::PublicKeyData;
    let (c, k, der) = lan_certificate(dir);
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&k).unwrap()).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info());
    (c, k, der, base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

fn lan_certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("console.crt"), dir.join("console.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k, cert.der().to_vec())
}

/// One HTTP/1.1 request over TLS, trusting only `ca`, offering `alpn`: the response's text
/// (empty when HTTP/2 was agreed) and the protocol agreed.
fn https(
    port: u16,
    ca: &[u8],
    request: &str,
    alpn: &[&[u8]],
) -> std::io::Result<(String, Option<Vec<u8>>)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(ca.to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    if !alpn.is_empty() {
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        return Ok((String::new(), tls.conn.alpn_protocol().map(<[u8]>::to_vec)));
    }
    tls.write_all(request.as_bytes())?;
    let mut out = String::new();
    match tls.read_to_string(&mut out) {
        Ok(_) => Ok((out, None)),
        // The server may close without a TLS close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {
            Ok((out, None))
        }
        Err(e) => Err(e),
    }
}

#[test]
fn the_api_and_console_are_served_over_tls_with_a_configured_certificate() {
    let mesh = Mesh::new();
    let (cert, key, der) = lan_certificate(mesh.dir.path());
    let tls_port = free_tcp_port();
    let spec = mesh
        .node("county-hq", "command", "public")
        .api_token(NODE_TOKEN)
        .top(&format!("api_tls = \"127.0.0.1:{tls_port}\""))
        .top(&format!("api_tls_cert = \"{}\"", cert.display()))
        .top(&format!("api_tls_key = \"{}\"", key.display()));
    // The helpers send the token, so start() waits for the plain API as usual.
    let _run = spec.start();
    let status = format!(
        "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {NODE_TOKEN}\r\n\
         Connection: close\r\n\r\n",
        tls_port
    );
    let answer = wait_for("the API over TLS", Duration::from_secs(20), || {
        https(tls_port, &der, &status, &[]).ok().map(|(a, _)| a)
    });
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"node\":\"county-hq\""), "{answer}");
    // The login cookie is Secure over TLS.
    let body = format!("{{\"token\":\"{NODE_TOKEN}\"}}");
    let login = format!(
        "POST /v1/login HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        tls_port,
        body.len()
    );
    let (answer, _) = https(tls_port, &der, &login, &[]).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("; Secure"), "{answer}");
    // The plain API stays where it was, for the command line on the node itself.
    let plain = http_with(Some(NODE_TOKEN)).get(spec.api_url() + "/v1/status").send().unwrap();
    assert_eq!(plain.status().as_u16(), 200);
    let text = cli_ok(&["status", "--api", &spec.api_url(), "--token", NODE_TOKEN]);
    assert!(text.contains("county-hq"), "{text}");
    // A browser gets HTTP/2 (one connection for all its streams) when it asks.
    let (_, alpn) = https(tls_port, &der, &status, &[b"h2", b"http/1.1"]).unwrap_or_default();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    // A client that trusts another certificate: the handshake fails.
    let elsewhere = mesh.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (_, _, other) = lan_certificate(&elsewhere);
    assert!(https(tls_port, &other, &status, &[]).is_err());
}

#[test]
fn a_tablet_logs_in_and_sends_over_tls_and_http2_in_a_real_browser() {
    let mesh = Mesh::new();
    let (cert, key, _, spki) = lan_certificate_with_spki(mesh.dir.path());
    let tls_port = free_tcp_port();
    let hq = mesh
        .node("county-hq", "command", "public")
        .api_token(NODE_TOKEN)
        .top(&format!("api_tls = \"127.0.0.1:{tls_port}\""))
        .top(&format!("api_tls_cert = \"{}\"", cert.display()))
        .top(&format!("api_tls_key = \"{}\"", key.display()));
    let hq_run = hq.start();
    let browser = Browser::start_with(
        &mesh.dir.path().join("chromium"),
        &[format!("--ignore-certificate-errors-spki-list={spki}")],
    );
    let long = Duration::from_secs(20);
    browser.goto(&format!("https://127.0.0.1:{tls_port}/"));
    let token = browser.wait_for("#login-token", long);
    browser.wait_until("the login form", long, "return !document.querySelector('#login').hidden");
    let protocol =
        browser.script("return performance.getEntriesByType('navigation')[0].nextHopProtocol");
    assert_eq!(protocol, json!("h2"), "the console over TLS should be HTTP/2");
    browser.type_into(&token, NODE_TOKEN);
    browser.click(&browser.find("#login-form button").unwrap());
    browser.wait_until("the console", long, "return !document.querySelector('#app').hidden");
    browser.click(&browser.find("#tabs button[data-view=compose]").unwrap());
    browser.type_into(&browser.find("#c-to").unwrap(), "node:county-hq");
    browser.type_into(&browser.find("#c-body").unwrap(), "sent from the station's tablet");
    browser.click(&browser.find("#c-send").unwrap());
    let result = browser.wait_until(
        "the message to be accepted",
        long,
        "const t = document.querySelector('#compose-result').textContent; \
         return t.startsWith('Accepted') || t.startsWith('Not sent') ? t : '';",
    );
    assert!(result.as_str().unwrap().starts_with("Accepted"), "{result}");
    browser.click(&browser.find("#tabs button[data-view=inbox]").unwrap());
    browser.wait_until(
        "the message in the inbox",
        long,
        "return document.querySelector('#inbox li')?.textContent.includes('station\\'s tablet')",
    );
    assert_eq!(hq_run.status().inbox.next, 1);
}

#[test]
fn an_operator_sends_a_flash_order_from_the_console_and_sees_it_arrive_in_a_real_browser() {
    let mesh = Mesh::new();
    let hq = mesh
        .node("county-hq", "command", "public")
        .api_token(NODE_TOKEN)
        .extra("[objectives]\nflash = \"2s\"");
    let t1 = mesh.node("township-01", "township", "public").peer(&hq);
    let mut hq_run = hq.start();
    let mut t1_run = t1.start();
    hq_run.wait_link("township-01");
    t1_run.wait_link("county-hq");
    let profile = mesh.dir.path().join("chromium");
    let browser = Browser::start(&profile);
    let long = Duration::from_secs(20);

    // A wrong token is refused in words; the right one opens the console.
    browser.goto(&format!("{}/", hq.api_url()));
    let token = browser.wait_for("#login-token", long);
    browser.wait_until("the login form", long, "return !document.querySelector('#login').hidden");
    browser.type_into(&token, "not-the-token");
    browser.click(&browser.find("#login-form button").unwrap());
    let why = browser.wait_until(
        "the refused login's reason",
        long,
        "return document.querySelector('#login-error').textContent",
    );
    assert!(why.as_str().unwrap().contains("wrong token"), "{why}");
    browser.type_into(&token, NODE_TOKEN);
    browser.click(&browser.find("#login-form button").unwrap());
    browser.wait_until("the console", long, "return !document.querySelector('#app').hidden");
    let login_shown = browser
        .script("return getComputedStyle(document.querySelector('#login')).display !== 'none'");
    assert_eq!(login_shown, json!(false), "the login form stays on screen after the login");

    // The mesh view shows the link up, live.
    let edge = "[data-edge='county-hq|township-01|public']";
    browser.wait_until(
        "the link in the mesh view",
        long,
        &format!("return document.querySelector(\"{edge}\")?.dataset.up === 'true'"),
    );

    // Compose a FLASH order to township-01.
    browser.click(&browser.find("#tabs button[data-view=compose]").unwrap());
    browser.type_into(&browser.find("#c-to").unwrap(), "node:township-01");
    browser.script("document.querySelector('#c-precedence').value = 'flash'; return true;");
    browser.type_into(&browser.find("#c-body").unwrap(), "Evacuate sector 4 now");
    browser.click(&browser.find("#c-send").unwrap());
    let result = browser.wait_until(
        "the order to be accepted",
        long,
        "const t = document.querySelector('#compose-result').textContent; \
         return t.startsWith('Accepted') || t.startsWith('Not sent') ? t : '';",
    );
    assert!(result.as_str().unwrap().starts_with("Accepted"), "{result}");

    // Its state turns delivered under Sent.
    browser.click(&browser.find("#tabs button[data-view=sent]").unwrap());
    browser.wait_until(
        "the order to show delivered",
        long,
        "return document.querySelector('#sent tbody tr')?.dataset.state === 'delivered'",
    );
    browser.screenshot(&mesh.dir.path().join("sent.png"));

    // On township-01's console (loopback, no token: no login), the order is in the inbox,
    // unread and marked FLASH, with a banner on every view.
    browser.goto(&format!("{}/#inbox", t1.api_url()));
    let item = browser.wait_until(
        "the order in township-01's inbox",
        long,
        "const li = document.querySelector('#inbox li'); \
         return li ? li.className + ' | ' + li.textContent : '';",
    );
    let item = item.as_str().unwrap();
    assert!(item.contains("flash") && item.contains("unread"), "{item}");
    assert!(item.contains("Evacuate sector 4 now") && item.contains("from county-hq"), "{item}");
    let banner = browser.script("return document.querySelector('#flash-banner').textContent");
    assert!(banner.as_str().unwrap().contains("1 unread FLASH"), "{banner}");
    browser.click(&browser.find("#inbox li button.mark").unwrap());
    browser.wait_until(
        "the order marked read",
        long,
        "return document.querySelector('#inbox li')?.classList.contains('read')",
    );
    assert_eq!(t1_run.status().inbox.unread, 0);

    // A correction from HQ's Sent view: Replace opens Compose for the same address.
    browser.goto(&format!("{}/#sent", hq.api_url()));
    let first = browser
        .wait_until(
            "the order under Sent",
            long,
            "return document.querySelector('#sent tbody tr')?.dataset.id || ''",
        )
        .as_str()
        .unwrap()
        .to_owned();
    browser.click(&browser.find("#sent tbody tr button.replace").unwrap());
    let to = browser.script("return document.querySelector('#c-to').value");
    assert_eq!(to, json!("node:township-01"));
    assert_eq!(browser.script("return document.querySelector('#c-replaces').hidden"), json!(false));
    browser.type_into(&browser.find("#c-body").unwrap(), "Evacuate sector 5, not 4");
    browser.click(&browser.find("#c-send").unwrap());
    let result = browser.wait_until(
        "the correction to be accepted",
        long,
        "const t = document.querySelector('#compose-result').textContent; \
         return t.startsWith('Accepted') || t.startsWith('Not sent') ? t : '';",
    );
    assert!(result.as_str().unwrap().contains(&format!("replacing {}", &first[..12])), "{result}");

    // township-01's inbox shows the first order superseded and the correction replacing it;
    // a cancel of the correction shows on the open page as it lands.
    browser.goto(&format!("{}/#inbox", t1.api_url()));
    browser.wait_until(
        "the first order marked superseded",
        long,
        &format!(
            "return document.querySelector(\"#inbox li[data-id='{first}']\")?.classList.contains('superseded')"
        ),
    );
    let second = t1_run.inbox_ids().into_iter().find(|id| id != &first).unwrap();
    let shown = browser.script(&format!(
        "return document.querySelector(\"#inbox li[data-id='{second}']\").textContent"
    ));
    assert!(shown.as_str().unwrap().contains(&format!("Replaces {}", &first[..12])), "{shown}");
    let r = hq_run
        .http_post_json(&format!("/v1/messages/{second}/cancel"), json!({ "reason": "all clear" }));
    assert_eq!(r, 201);
    let shown = browser.wait_until(
        "the correction marked cancelled, live",
        long,
        &format!(
            "const li = document.querySelector(\"#inbox li[data-id='{second}']\"); \
             return li && li.classList.contains('cancelled') ? li.textContent : '';"
        ),
    );
    assert!(shown.as_str().unwrap().contains("CANCELLED by its sender: all clear"), "{shown}");

    // Back on HQ's console: stop township-01 and watch its link go down in the mesh view.
    browser.goto(&format!("{}/#mesh", hq.api_url()));
    browser.wait_until(
        "the link in the mesh view",
        long,
        &format!("return document.querySelector(\"{edge}\")?.dataset.up === 'true'"),
    );
    let screenshot = std::env::var_os("RELAYMESH_CONSOLE_SCREENSHOT");
    if let Some(path) = &screenshot {
        browser.screenshot(std::path::Path::new(path));
    }
    t1_run.stop();
    browser.wait_until(
        "the link to show down in the mesh view",
        Duration::from_secs(10),
        &format!("return document.querySelector(\"{edge}\")?.dataset.up === 'false'"),
    );
    let alarms = browser.script("return document.querySelector('#alarms').textContent");
    assert!(
        alarms.as_str().unwrap().contains("Link to township-01 over public is down"),
        "{alarms}"
    );

    // A FLASH order that cannot arrive within its objective (2 s here) raises an alarm, and
    // its destination shows overdue under Sent.
    let late = hq_run.submit("node:township-01", "flash", "second order").unwrap();
    let alarm = browser.wait_until(
        "the overdue alarm",
        long,
        "const t = document.querySelector('#alarms').textContent; \
         return t.includes('OVERDUE FLASH to township-01') ? t : '';",
    );
    assert!(alarm.as_str().unwrap().contains(&late[..12]), "{alarm}");
    browser.click(&browser.find("#tabs button[data-view=sent]").unwrap());
    browser.wait_until(
        "the overdue destination under Sent",
        long,
        &format!("return document.querySelector(\"#sent tr[data-id='{late}'] .dest.overdue\")"),
    );
    hq_run.assert_running();
}

/// The README's pictures of the console: a five-node mesh on three media, a few orders, and
/// the views as an operator sees them. Writes `docs/console-*.png`; run on demand:
/// `cargo test --test console readme_screenshots -- --ignored`.
#[test]
#[ignore = "writes the README's screenshots"]
fn readme_screenshots() {
    let mesh = Mesh::new();
    let mut hq = mesh.node("county-hq", "command", "public");
    let hq_sat = hq.listen_also("satellite");
    let mut t1 = mesh.node("township-01", "township", "public").peer(&hq);
    let t1_wireless = t1.listen_also("wireless");
    let t2 = mesh
        .node("township-02", "township", "wireless")
        .peer_at("township-01", t1_wireless, "wireless")
        .peer_at("county-hq", hq_sat, "satellite");
    let f7 = mesh.node("field-07", "field", "wireless").peer(&t2);
    let r1 = mesh.node("relay-ridge", "relay", "wireless").peer(&t2).peer_at(
        "township-01",
        t1_wireless,
        "wireless",
    );
    let mut runs: Vec<Relay> = [&hq, &t1, &t2, &f7, &r1].iter().map(|s| s.start()).collect();
    for (i, peer) in
        [(0, "township-01"), (0, "township-02"), (3, "township-02"), (4, "township-01")]
    {
        runs[i].wait_link(peer);
    }
    wait_for("routes to every node", Duration::from_secs(60), || {
        let s = runs[0].status();
        ["field-07", "relay-ridge", "township-02"].iter().all(|n| s.has_route(n)).then_some(())
    });
    let hq_run = &runs[0];
    let orders = [
        ("node:field-07", "flash", "Evacuate sector 4 now: levee failing at km 12"),
        ("group:all", "immediate", "Shelter at township schools open from 18:00"),
        ("node:township-02", "priority", "Send water level readings every 15 min"),
        ("node:township-01", "routine", "Generator fuel report due 20:00"),
    ];
    let mut ids = Vec::new();
    for (to, p, body) in orders {
        let id = hq_run.submit(to, p, body).unwrap();
        let _ = hq_run.message(&id, "20s");
        ids.push(id);
    }
    // A correction of the first order, and the fuel report recalled.
    let fix = hq_run
        .submit_json(json!({
            "to": "node:field-07", "precedence": "flash", "replaces": ids[0],
            "body": "Evacuate sector 5 now, not 4: levee failing at km 15",
        }))
        .unwrap();
    let _ = hq_run.message(&fix, "20s");
    let code = hq_run.http_post_json(
        &format!("/v1/messages/{}/cancel", ids[3]),
        json!({ "reason": "report received by radio" }),
    );
    assert_eq!(code, 201);
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let browser = Browser::start(&mesh.dir.path().join("chromium"));
    let long = Duration::from_secs(20);
    browser.goto(&format!("{}/#mesh", hq.api_url()));
    browser.wait_until(
        "the mesh",
        long,
        "return document.querySelectorAll('#mesh [data-node]').length >= 5",
    );
    browser.click(&browser.wait_for("[data-node='field-07']", long));
    browser.wait_until("the routes", long, "return document.querySelector('#routes')");
    browser.screenshot(&docs.join("console-mesh.png"));
    browser.click(&browser.find("#tabs button[data-view=sent]").unwrap());
    browser.wait_until(
        "the sent list",
        long,
        "return document.querySelectorAll('#sent tbody tr').length >= 4",
    );
    browser.screenshot(&docs.join("console-sent.png"));
    browser.goto(&format!("{}/#inbox", f7.api_url()));
    browser.wait_until(
        "the inbox",
        long,
        "return document.querySelectorAll('#inbox li').length >= 3 \
         && document.querySelector('#inbox li.superseded')",
    );
    browser.screenshot(&docs.join("console-inbox.png"));
}
