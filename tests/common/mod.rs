//! Shared helpers for end-to-end tests: a PKI made with the real CLI, relays as real
//! processes on loopback with free ports, and waits on observable state (never fixed sleeps).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)] // each test file uses some of them
pub use relaymesh::api_model::{
    ErrorDoc, InboxDoc, InboxMessageDoc, LinkDoc, LinksDoc, MessageDoc, SecurityDoc, StatusDoc,
    SubmitDoc,
};
use relaymesh::core::{Medium, NodeId, Role};
use relaymesh::shell::clock::Clock;
use relaymesh::wire::Hello;
use relaymesh_testkit::{Cut, Pki, Tool};

pub mod webdriver;
use serde_json::{Value, json};

/// The `relaymesh` binary under test: this build's, or `RELAYMESH_TEST_BIN` (the ARM smoke
/// test runs the cross-built binary through qemu this way; README, "ARM").
pub static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("RELAYMESH_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_relaymesh").into())
});

/// Runs the CLI to completion.
pub fn cli(args: &[&str]) -> Output {
    Command::new(&*BIN).args(args).output().expect("run relaymesh")
}

/// Runs the CLI and insists on success; returns stdout.
pub fn cli_ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "relaymesh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// A free UDP port on loopback ([`relaymesh_testkit::free_udp_port`]).
pub fn free_udp_port() -> u16 {
    relaymesh_testkit::free_udp_port().unwrap()
}

/// A free TCP port on loopback ([`relaymesh_testkit::free_tcp_port`]).
pub fn free_tcp_port() -> u16 {
    relaymesh_testkit::free_tcp_port().unwrap()
}

/// Waits until `f` returns `Some`, checking often, failing after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A deployment: a PKI made with the real CLI in a temporary directory (`dir`, through
/// [`Pki`]), which also holds the nodes of one test.
pub struct Mesh(Pki);

impl Deref for Mesh {
    type Target = Pki;
    fn deref(&self) -> &Pki {
        &self.0
    }
}

impl Mesh {
    pub fn new() -> Mesh {
        Mesh(Pki::new("relaymesh-test", Tool::Cli(BIN.as_str().into())).unwrap())
    }

    pub fn pki(&self) -> PathBuf {
        self.0.pki_dir()
    }

    pub fn issue(&self, node: &str, role: &str) {
        self.0.issue(node, role.parse().unwrap()).unwrap();
    }

    /// County HQ and township-01, which dials it over `public`, both running and linked both
    /// ways; `hq_extra` is appended to HQ's configuration.
    pub fn linked_pair(&self, hq_extra: &str) -> (Relay, Relay) {
        let hq = self.node("county-hq", "command", "public").extra(hq_extra);
        let t1 = self.node("township-01", "township", "public").peer(&hq);
        let mut hq = hq.start();
        let mut t1 = t1.start();
        hq.wait_link("township-01");
        t1.wait_link("county-hq");
        (hq, t1)
    }

    /// A node description with fresh ports; not started.
    pub fn node(&self, id: &str, role: &str, medium: &str) -> NodeSpec {
        if !self.pki().join(format!("{id}.crt")).exists() {
            self.issue(id, role);
        }
        NodeSpec {
            id: id.into(),
            role: role.into(),
            dir: self.dir.path().to_owned(),
            pki: self.pki(),
            port: free_udp_port(),
            api: free_tcp_port(),
            medium: medium.into(),
            peers: Vec::new(),
            more_listens: Vec::new(),
            extra: String::new(),
            top: Vec::new(),
            token: None,
        }
    }
}

#[derive(Clone)]
pub struct NodeSpec {
    pub id: String,
    pub role: String,
    pub dir: PathBuf,
    pub pki: PathBuf,
    pub port: u16,
    pub api: u16,
    pub medium: String,
    /// (node, udp port, medium)
    pub peers: Vec<(String, u16, String)>,
    /// More (port, medium) to listen on.
    pub more_listens: Vec<(u16, String)>,
    /// Extra TOML appended to the configuration.
    pub extra: String,
    /// Top-level settings (before any table).
    pub top: Vec<String>,
    /// The API token the node requires (the helpers send it).
    pub token: Option<String>,
}

impl NodeSpec {
    pub fn peer(mut self, other: &NodeSpec) -> NodeSpec {
        self.peers.push((other.id.clone(), other.port, other.medium.clone()));
        self
    }

    /// Also listens on a fresh port for `medium`; returns the port.
    pub fn listen_also(&mut self, medium: &str) -> u16 {
        let port = free_udp_port();
        self.more_listens.push((port, medium.into()));
        port
    }

    /// Dials `node` at a given port (a proxy, say) over `medium`.
    pub fn peer_at(mut self, node: &str, port: u16, medium: &str) -> NodeSpec {
        self.peers.push((node.into(), port, medium.into()));
        self
    }

    /// Where the node looks for its revocation list (default: beside the CA certificate).
    pub fn crl(self, path: &std::path::Path) -> NodeSpec {
        self.top(&format!("crl = \"{}\"", path.display()))
    }

    /// A top-level setting, written before every table.
    pub fn top(mut self, line: &str) -> NodeSpec {
        self.top.push(line.to_owned());
        self
    }

    /// Requires `token` on the API (`api_token`); the test helpers send it.
    pub fn api_token(mut self, token: &str) -> NodeSpec {
        self.token = Some(token.to_owned());
        self.top(&format!("api_token = \"{token}\""))
    }

    pub fn extra(mut self, toml: &str) -> NodeSpec {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(format!("{}.toml", self.id))
    }

    pub fn write_config(&self) -> PathBuf {
        let pki = self.pki.display();
        let mut t = format!(
            "node = \"{id}\"\nrole = \"{role}\"\ndata_dir = \"data/{id}\"\nca = \"{pki}/ca.crt\"\n\
             cert = \"{pki}/{id}.crt\"\nkey = \"{pki}/{id}.key\"\napi = \"127.0.0.1:{api}\"\n\n\
             [[listen]]\naddr = \"127.0.0.1:{port}\"\nmedium = \"{medium}\"\n",
            id = self.id,
            role = self.role,
            api = self.api,
            port = self.port,
            medium = self.medium,
        );
        for line in self.top.iter().rev() {
            t.insert_str(0, &format!("{line}\n"));
        }
        for (port, medium) in &self.more_listens {
            let _ = write!(t, "\n[[listen]]\naddr = \"127.0.0.1:{port}\"\nmedium = \"{medium}\"\n");
        }
        for (node, port, medium) in &self.peers {
            let _ = write!(
                t,
                "\n[[peer]]\nnode = \"{node}\"\naddr = \"127.0.0.1:{port}\"\nmedium = \"{medium}\"\n"
            );
        }
        t.push('\n');
        t.push_str(&self.extra);
        let path = self.config_path();
        std::fs::write(&path, t).unwrap();
        path
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api)
    }

    /// Starts the node and waits until its API answers.
    pub fn start(&self) -> Relay {
        let config = self.write_config();
        let log = std::fs::File::create(self.dir.join(format!("{}.log", self.id))).unwrap();
        let child = Command::new(&*BIN)
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info,relaymesh=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start relaymesh run");
        let mut relay = Relay {
            spec: self.clone(),
            child: Some(child),
            http: http_with(self.token.as_deref()),
        };
        let id = self.id.clone();
        wait_for(&format!("{id}'s API"), Duration::from_secs(20), || {
            relay.assert_running();
            relay.try_status()
        });
        relay
    }
}

pub fn http() -> reqwest::blocking::Client {
    http_with(None)
}

/// A client that sends `Authorization: Bearer <token>` with every request, if given.
pub fn http_with(token: Option<&str>) -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
    }
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A running relay process; killed (with SIGKILL) when dropped.
pub struct Relay {
    pub spec: NodeSpec,
    child: Option<Child>,
    http: reqwest::blocking::Client,
}

impl Relay {
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            panic!("{} exited with {status}:\n{}", self.spec.id, self.log());
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.spec.dir.join(format!("{}.log", self.spec.id)))
            .unwrap_or_default()
    }

    /// `GET /v1/status`, or `None` if the node does not answer (yet). A document that does
    /// not parse fails the test: the API and its model disagree.
    pub fn try_status(&self) -> Option<StatusDoc> {
        let r = self.http.get(format!("{}/v1/status", self.spec.api_url())).send().ok()?;
        let text = r.text().ok()?;
        Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("status: {e}: {text}")))
    }

    pub fn status(&self) -> StatusDoc {
        self.try_status().unwrap_or_else(|| panic!("{} does not answer", self.spec.id))
    }

    /// `GET /v1/links`.
    pub fn links(&self) -> Vec<LinkDoc> {
        let r = self.http.get(format!("{}/v1/links", self.spec.api_url())).send().unwrap();
        let text = r.text().unwrap();
        let doc: LinksDoc =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("links: {e}: {text}"));
        doc.links
    }

    /// What this node's link to `peer` carried (`GET /v1/links`, `bytes`); fails the test if
    /// there is no such link.
    pub fn link_bytes(&self, peer: &str) -> relaymesh::shell::traffic::WireBytes {
        let links = self.links();
        let link = links.iter().find(|l| l.peer == peer);
        link.unwrap_or_else(|| panic!("{} has no link to {peer}", self.spec.id)).bytes
    }

    /// Every link's bytes, to print when an assertion on them fails.
    pub fn show_bytes(&self) -> String {
        format!("{:?}", self.links().iter().map(|l| (&l.peer, l.bytes)).collect::<Vec<_>>())
    }

    /// Waits until `hub` and each of `spokes` see their link to each other up.
    pub fn wait_star(hub: &mut Relay, spokes: &mut [&mut Relay]) {
        for s in spokes.iter_mut() {
            hub.wait_link(&s.spec.id);
            s.wait_link(&hub.spec.id);
        }
    }

    /// Waits until a link to `peer` is up.
    pub fn wait_link(&mut self, peer: &str) {
        let id = self.spec.id.clone();
        wait_for(&format!("{id} to link with {peer}"), Duration::from_secs(30), || {
            self.assert_running();
            self.try_status()?.link_up(peer).then_some(())
        });
    }

    /// Submits through the HTTP API; returns the id or the error body.
    pub fn submit(&self, to: &str, precedence: &str, body: &str) -> Result<String, (u16, String)> {
        self.submit_json(json!({ "to": to, "precedence": precedence, "body": body }))
    }

    pub fn submit_json(&self, j: Value) -> Result<String, (u16, String)> {
        let r =
            self.http.post(format!("{}/v1/messages", self.spec.api_url())).json(&j).send().unwrap();
        let code = r.status().as_u16();
        let text = r.text().unwrap();
        if code == 201 {
            Ok(serde_json::from_str::<SubmitDoc>(&text).unwrap().id)
        } else {
            Err((code, serde_json::from_str::<ErrorDoc>(&text).unwrap().error))
        }
    }

    /// POSTs `j` to `path` of this node's API (with its token, if any); the status code.
    pub fn http_post_json(&self, path: &str, j: Value) -> u16 {
        let url = format!("{}{path}", self.spec.api_url());
        self.http.post(url).json(&j).send().unwrap().status().as_u16()
    }

    /// Every inbox message (read or not), in delivery order.
    pub fn inbox_all(&self) -> Vec<InboxMessageDoc> {
        let mut out = Vec::new();
        let mut from = 0u64;
        loop {
            let url = format!("{}/v1/inbox?from={from}&limit=10000", self.spec.api_url());
            let page: InboxDoc = self.http.get(url).send().unwrap().json().unwrap();
            match page.last {
                Some(last) if !page.messages.is_empty() => from = last + 1,
                _ => return out,
            }
            out.extend(page.messages);
        }
    }

    /// The ids in the inbox, in delivery order.
    pub fn inbox_ids(&self) -> Vec<String> {
        self.inbox_all().into_iter().map(|m| m.id).collect()
    }

    /// `GET /v1/messages/{id}?wait=...`, read as the API's typed document.
    pub fn message(&self, id: &str, wait: &str) -> MessageDoc {
        let url = format!("{}/v1/messages/{id}?wait={wait}", self.spec.api_url());
        self.http.get(url).send().unwrap().json().unwrap()
    }

    /// `relaymesh send --api <this node's API> ARGS...`.
    pub fn send_cli(&self, args: &[&str]) -> Output {
        let api = self.spec.api_url();
        let mut all = vec!["send", "--api", api.as_str()];
        all.extend_from_slice(args);
        cli(&all)
    }

    /// kill -9: no shutdown, no final commit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Graceful stop (SIGTERM) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    /// SIGHUP, as `systemctl reload` sends it.
    pub fn hangup(&self) {
        if let Some(c) = self.child.as_ref() {
            let ok = Command::new("kill").args(["-HUP", &c.id().to_string()]).status().unwrap();
            assert!(ok.success());
        }
    }

    /// Starts the same node again (same data directory, same ports).
    pub fn restart(&mut self) {
        self.kill();
        let fresh = self.spec.start();
        *self = fresh;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Prints the status of each relay (for diagnosing a failed wait).
pub fn dump(relays: &[&Relay]) {
    for r in relays {
        eprintln!("==== {} ====", r.spec.id);
        match r.try_status() {
            Some(s) => eprintln!("{}", serde_json::to_string_pretty(&s).unwrap()),
            None => eprintln!("(not answering)"),
        }
        let log = r.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        for l in tail.into_iter().rev() {
            eprintln!("{l}");
        }
    }
}

/// A UDP forwarder to a local port whose link can be cut (packets silently vanish, as on a
/// dead radio link) and healed ([`relaymesh_testkit::UdpProxy`]).
pub struct UdpProxy {
    pub port: u16,
    proxy: relaymesh_testkit::UdpProxy,
}

impl UdpProxy {
    /// Forwards datagrams arriving on a fresh port to `target` (a local port), and the
    /// answers back to whoever sent last.
    pub fn start(target: u16) -> UdpProxy {
        let proxy =
            relaymesh_testkit::UdpProxy::start(SocketAddr::from(([127, 0, 0, 1], target))).unwrap();
        UdpProxy { port: proxy.port, proxy }
    }

    pub fn cut(&self) {
        self.proxy.cut(Cut::Drop);
    }

    pub fn heal(&self) {
        self.proxy.heal();
    }
}

/// A client that speaks the protocol on purpose badly, from a valid certificate
/// ([`relaymesh_testkit::RawPeer`]: `conn`, `creds`).
pub struct RawPeer(relaymesh_testkit::RawPeer);

impl Deref for RawPeer {
    type Target = relaymesh_testkit::RawPeer;
    fn deref(&self) -> &relaymesh_testkit::RawPeer {
        &self.0
    }
}

impl RawPeer {
    /// Issues `id` as a field unit and connects it to `to`; sends nothing yet.
    pub async fn connect(mesh: &Mesh, id: &str, to: &NodeSpec) -> RawPeer {
        mesh.issue(id, "field");
        let creds = mesh.credentials(id).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], to.port));
        let peer = relaymesh_testkit::RawPeer::dial(&creds, Clock::wall(), &to.id, addr);
        RawPeer(peer.await.unwrap())
    }

    /// Opens the control stream and sends a `Hello` as field unit `id`, speaking `version`.
    pub async fn hello(&self, id: &str, version: u32) -> (quinn::SendStream, quinn::RecvStream) {
        let hello = Hello {
            version,
            node: NodeId::new(id).unwrap(),
            role: Role::Field,
            capabilities: vec![],
            medium: Medium::Public,
        };
        self.0.send_hello(&hello).await.unwrap()
    }
}
