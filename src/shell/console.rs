//! What the operator console needs beyond the JSON API: who may log in (the node's token and
//! a file of per-user tokens), browser sessions (an HttpOnly cookie and a CSRF token), the
//! console's own files (embedded in the binary: it works with no network beyond the node),
//! and a TLS listener so a tablet on the station's LAN can use it.
//!
//! A session remembers a digest of the token it was opened with. Every request made with the
//! session checks that the user still has that token: change or remove a user's line in the
//! users file and every session opened with the old token ends at its next request.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

/// The console's files, compiled in.
pub const INDEX_HTML: &str = include_str!("../../console/index.html");
pub const APP_JS: &str = include_str!("../../console/app.js");
pub const STYLE_CSS: &str = include_str!("../../console/style.css");

/// The user name a login with the node's own `api_token` gets.
pub const NODE_USER: &str = "node";

/// At most this many sessions are kept; the oldest goes when another is opened.
const MAX_SESSIONS: usize = 256;

/// Who may use the API: the node's token and the users file.
#[derive(Debug)]
pub struct Credentials {
    node_token: Option<String>,
    users_file: Option<PathBuf>,
    /// The users file as last read: its modification time and length, and `name -> token`.
    users: Mutex<UsersFile>,
}

#[derive(Debug, Default)]
struct UsersFile {
    stamp: Option<(SystemTime, u64)>,
    tokens: Vec<(String, String)>,
    error: Option<String>,
}

/// A token's digest: what a session keeps of the token that opened it.
type TokenDigest = [u8; 32];

fn token_digest(token: &str) -> TokenDigest {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses a users file: `name token` a line; blank lines and `#` comments are skipped.
pub fn parse_users(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(token), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("line {}: expected `name token`", i + 1));
        };
        if token.len() < 16 {
            return Err(format!("line {}: {name}'s token is shorter than 16 characters", i + 1));
        }
        if name == NODE_USER {
            return Err(format!(
                "line {}: `{NODE_USER}` is the node's own api_token's user",
                i + 1
            ));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("line {}: {name} is listed twice", i + 1));
        }
        out.push((name.to_owned(), token.to_owned()));
    }
    Ok(out)
}

impl Credentials {
    pub fn new(node_token: Option<String>, users_file: Option<PathBuf>) -> Credentials {
        Credentials { node_token, users_file, users: Mutex::new(UsersFile::default()) }
    }

    /// Whether anything is configured; without it the API answers loopback names only.
    pub fn required(&self) -> bool {
        self.node_token.is_some() || self.users_file.is_some()
    }

    fn users(&self) -> MutexGuard<'_, UsersFile> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads the users file if it changed. A file that cannot be read or parsed logs in
    /// nobody (and says why in the log) until it is mended: a half-read file must not keep a
    /// revoked user in.
    fn refresh(&self, path: &Path) {
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let mut users = self.users();
        if users.stamp == stamp && stamp.is_some() {
            return;
        }
        users.stamp = stamp;
        let read = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|t| parse_users(&t).map_err(|e| format!("{}: {e}", path.display())));
        match read {
            Ok(tokens) => {
                if users.error.take().is_some() || !users.tokens.is_empty() {
                    tracing::info!(file = %path.display(), users = tokens.len(), "API users reloaded");
                }
                users.tokens = tokens;
            }
            Err(e) => {
                if users.error.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "API users file refused: nobody from it can log in");
                }
                users.tokens.clear();
                users.error = Some(e);
            }
        }
    }

    /// The user a token belongs to, if any.
    pub fn user_of(&self, token: &str) -> Option<String> {
        if let Some(t) = &self.node_token
            && same_secret(t.as_bytes(), token.as_bytes())
        {
            return Some(NODE_USER.to_owned());
        }
        let path = self.users_file.as_ref()?;
        self.refresh(path);
        let users = self.users();
        users
            .tokens
            .iter()
            .find(|(_, t)| same_secret(t.as_bytes(), token.as_bytes()))
            .map(|(n, _)| n.clone())
    }

    /// Whether `user` still has the token whose digest is `digest`.
    fn still_valid(&self, user: &str, digest: &TokenDigest) -> bool {
        if user == NODE_USER {
            return self.node_token.as_deref().is_some_and(|t| token_digest(t) == *digest);
        }
        let Some(path) = &self.users_file else { return false };
        self.refresh(path);
        let users = self.users();
        users.tokens.iter().any(|(n, t)| n == user && token_digest(t) == *digest)
    }
}

/// One browser's login.
#[derive(Clone, Debug)]
struct Session {
    user: String,
    token: TokenDigest,
    csrf: String,
    opened: Instant,
    ends: Instant,
}

/// What a valid session cookie stands for.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub user: String,
    pub csrf: String,
    pub expires_in: Duration,
}

/// Browser sessions, in memory: a restart logs everybody out.
#[derive(Clone, Debug)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
    lifetime: Duration,
    rng: SystemRandom,
    /// The cookie's name: per API port, as browsers share cookies between ports of one host.
    pub cookie: String,
    /// Whether the API is served over TLS (the cookie is then `Secure`).
    pub secure: bool,
}

fn random_hex(rng: &SystemRandom) -> String {
    let mut b = [0u8; 32];
    // The system's random source does not fail on Linux once booted; if it ever did, a session
    // id of zeros would be guessable, so refuse to go on.
    if rng.fill(&mut b).is_err() {
        panic!("the system random source failed");
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sessions {
    pub fn new(lifetime: Duration, port: u16, secure: bool) -> Sessions {
        Sessions {
            inner: Arc::new(Mutex::new(HashMap::new())),
            lifetime,
            rng: SystemRandom::new(),
            cookie: format!("relaymesh-{port}"),
            secure,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session for `user`, who logged in with `token`: its id (the cookie's value) and
    /// what the browser may know of it.
    pub fn open(&self, user: String, token: &str) -> (String, SessionInfo) {
        let id = random_hex(&self.rng);
        let now = Instant::now();
        let s = Session {
            user: user.clone(),
            token: token_digest(token),
            csrf: random_hex(&self.rng),
            opened: now,
            ends: now + self.lifetime,
        };
        let info = SessionInfo { user, csrf: s.csrf.clone(), expires_in: self.lifetime };
        let mut map = self.lock();
        map.retain(|_, s| s.ends > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.opened).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), s);
        (id, info)
    }

    /// The session `id` stands for, if it is open, has not expired and its user still has the
    /// token it was opened with; an expired or revoked one is forgotten.
    pub fn check(&self, id: &str, creds: &Credentials) -> Option<SessionInfo> {
        let now = Instant::now();
        let s = self.lock().get(id).cloned()?;
        if s.ends <= now || !creds.still_valid(&s.user, &s.token) {
            self.lock().remove(id);
            return None;
        }
        Some(SessionInfo { user: s.user, csrf: s.csrf, expires_in: s.ends - now })
    }

    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The `Set-Cookie` value that opens (`Some(id)`) or ends (`None`) a session.
    pub fn set_cookie(&self, id: Option<&str>) -> String {
        let (value, age) = match id {
            Some(id) => (id, self.lifetime.as_secs()),
            None => ("", 0),
        };
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{secure}", self.cookie)
    }

    /// The session id in a `Cookie` header, if there is one.
    pub fn from_cookie_header(&self, header: &str) -> Option<String> {
        header.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == self.cookie && !v.is_empty()).then(|| v.to_owned())
        })
    }
}

/// Loads a TLS server configuration from PEM files (a certificate chain and its key).
pub fn tls_config(cert: &Path, key: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    let bad = |what: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", what.display()))
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut io::BufReader::new(
        std::fs::File::open(cert).map_err(|e| bad(cert, &e))?,
    ))
    .collect::<Result<_, _>>()
    .map_err(|e| bad(cert, &e))?;
    if certs.is_empty() {
        return Err(bad(cert, &"no certificate in the file"));
    }
    let key_der = rustls_pemfile::private_key(&mut io::BufReader::new(
        std::fs::File::open(key).map_err(|e| bad(key, &e))?,
    ))
    .map_err(|e| bad(key, &e))?
    .ok_or_else(|| bad(key, &"no private key in the file"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(cert, &e))?;
    // HTTP/2 first: a browser keeps one connection for every tab's streams, where HTTP/1.1
    // would allow six per host.
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A TCP listener whose connections are TLS: handshakes run concurrently (a slow or silent
/// client holds up nobody) and give up after [`TLS_HANDSHAKE_TIMEOUT`].
pub struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    handshakes: tokio::task::JoinSet<Option<(TlsStream, SocketAddr)>>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener").field("tcp", &self.tcp).finish_non_exhaustive()
    }
}

pub type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// How long a client may take over its TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    pub fn new(tcp: tokio::net::TcpListener, cfg: Arc<rustls::ServerConfig>) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(cfg),
            handshakes: tokio::task::JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((tcp, addr)) => {
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(async move {
                            let hs = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                            match hs.await {
                                Ok(Ok(tls)) => Some((tls, addr)),
                                Ok(Err(e)) => {
                                    tracing::debug!(%addr, error = %e, "API TLS handshake failed");
                                    None
                                }
                                Err(_) => None,
                            }
                        });
                    }
                    // Out of descriptors, say: wait a little rather than spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_files_are_checked_line_by_line() {
        let ok = parse_users(
            "# operators\nalice 0123456789abcdef0123\n\n  bob   fedcba9876543210fedc  \n",
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1], ("bob".to_owned(), "fedcba9876543210fedc".to_owned()));
        assert!(parse_users("alice").unwrap_err().contains("line 1"));
        assert!(parse_users("alice short").unwrap_err().contains("shorter than 16"));
        assert!(parse_users("a 0123456789abcdef x").unwrap_err().contains("expected"));
        assert!(parse_users("node 0123456789abcdef").unwrap_err().contains("api_token"));
        let twice = "a 0123456789abcdef\na 0123456789abcdefgh";
        assert!(parse_users(twice).unwrap_err().contains("line 2: a is listed twice"));
    }

    #[test]
    fn a_session_ends_when_its_token_is_revoked_or_its_time_is_up() {
        let dir = std::env::temp_dir().join(format!("relaymesh-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("users");
        std::fs::write(&file, "alice 0123456789abcdef0123\n").unwrap();
        let creds = Credentials::new(Some("node-token-0123456789".into()), Some(file.clone()));
        assert_eq!(creds.user_of("0123456789abcdef0123").as_deref(), Some("alice"));
        assert_eq!(creds.user_of("node-token-0123456789").as_deref(), Some(NODE_USER));
        assert_eq!(creds.user_of("0123456789abcdef012"), None);

        let sessions = Sessions::new(Duration::from_secs(3600), 7480, false);
        let (id, info) = sessions.open("alice".into(), "0123456789abcdef0123");
        assert_eq!(info.csrf.len(), 64);
        assert!(sessions.check(&id, &creds).is_some());
        let header = format!("other=1; {}={id}", sessions.cookie);
        assert_eq!(sessions.from_cookie_header(&header), Some(id.clone()));
        // A new token for alice (the file's length changes, so the change is seen at once).
        std::fs::write(&file, "alice 0123456789abcdef0123-new\n").unwrap();
        assert!(sessions.check(&id, &creds).is_none(), "a revoked token's session goes on");
        assert!(sessions.check(&id, &creds).is_none());

        // A users file that no longer parses logs in nobody from it (the node's token still
        // works), and ends the sessions opened with its tokens.
        std::fs::write(&file, "bob 0123456789abcdef0123\n").unwrap();
        let (bob, _) = sessions.open("bob".into(), "0123456789abcdef0123");
        assert!(sessions.check(&bob, &creds).is_some());
        std::fs::write(&file, "bob 0123456789abcdef0123\nbroken line here\n").unwrap();
        assert_eq!(creds.user_of("0123456789abcdef0123"), None);
        assert!(sessions.check(&bob, &creds).is_none());
        assert_eq!(creds.user_of("node-token-0123456789").as_deref(), Some(NODE_USER));

        let short = Sessions::new(Duration::ZERO, 7480, true);
        let (id, _) = short.open(NODE_USER.into(), "node-token-0123456789");
        assert!(short.check(&id, &creds).is_none(), "an expired session goes on");
        assert!(short.set_cookie(Some("x")).ends_with("; Secure"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
