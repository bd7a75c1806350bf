//! The shell: tokio tasks that run a [`crate::core::Node`] over real QUIC links and a real
//! store, and serve the local API.
//!
//! [`Relay::start`] wires one node together from a [`RelaySpec`]: the driver task (core and
//! store), one quinn endpoint per listening socket, an accept loop per endpoint and a dial loop
//! per configured peer. Sockets, clock, seed and store all come in through the spec, which is
//! how `relaymesh run` uses real UDP and redb while the simulator uses its virtual fabric and
//! in-memory disks, in virtual time.

pub mod api;
pub mod clock;
pub mod config;
pub mod congestion;
pub mod console;
pub mod driver;
pub mod link;
pub mod objects;
pub mod pacing;
pub mod redb_store;
pub mod tls;
pub mod traffic;
pub mod transport;
pub mod trust;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use quinn::{AsyncUdpSocket, Endpoint};
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info_span};

use crate::core::store::{Store, StoreError};
use crate::core::{CoreConfig, Medium, Node, NodeId};
use clock::Clock;
use driver::{DriverOptions, NodeHandle, Observer};
use link::LinkContext;
use tls::{Credentials, TlsError};
use transport::{QuicConfigs, TransportSettings};

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShellError {
    /// TLS credentials or configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The node's certificate or key cannot sign.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// A socket or endpoint could not be created.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// New credentials that cannot be used (the running ones stay).
    #[error("credentials not reloaded: {0}")]
    Reload(String),
    /// A peer's medium has no socket to dial from.
    #[error("no socket to dial {peer} over {medium}")]
    NoSocket { peer: NodeId, medium: Medium },
}

/// A socket the node listens on, for links of one medium.
#[derive(Debug)]
pub struct Listener {
    pub medium: Medium,
    pub socket: Arc<dyn AsyncUdpSocket>,
}

/// A link the node dials (and redials) itself.
#[derive(Clone, Debug)]
pub struct Dial {
    pub node: NodeId,
    pub addr: SocketAddr,
    pub medium: Medium,
}

/// Makes a socket for dialling over a medium that has no listener.
pub type SocketFactory = Box<dyn Fn() -> std::io::Result<Arc<dyn AsyncUdpSocket>> + Send>;

/// Everything a relay is made of.
pub struct RelaySpec {
    pub core: CoreConfig,
    pub creds: Credentials,
    pub transport: BTreeMap<Medium, TransportSettings>,
    pub listeners: Vec<Listener>,
    pub dials: Vec<Dial>,
    pub store: Box<dyn Store>,
    /// How the store's commits land, if it syncs in the background.
    pub landing: driver::Landing,
    pub clock: Clock,
    /// Seeds message ids, quinn's endpoint RNG and redial jitter.
    pub seed: u64,
    pub max_batch: usize,
    /// When batches are committed.
    pub commit: driver::CommitPolicy,
    pub data_dir: Option<PathBuf>,
    pub observer: Option<Observer>,
    /// Run the driver (and its fsyncs) on its own thread, off the network runtime.
    pub dedicated_driver_thread: bool,
    pub client_socket: Option<SocketFactory>,
    /// How long a peer may leave a frame half-sent before it is cut off.
    pub stall_timeout: Duration,
    /// Where the links' byte counts go (`Traffic::default()` unless the caller keeps them
    /// across restarts, as the simulator does).
    pub traffic: traffic::Traffic,
    /// The compact dialect this node announces and takes (peers that announce one get compact
    /// offers in the newest both take); `None`: plain envelopes only, as a relay from before
    /// compact offers.
    pub compact: Option<crate::core::wire::compact::Dialect>,
}

impl std::fmt::Debug for RelaySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySpec").field("node", &self.core.node).finish_non_exhaustive()
    }
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    handle: NodeHandle,
    endpoints: Vec<(Medium, Endpoint)>,
    tasks: Vec<JoinHandle<()>>,
    driver_thread: Option<std::thread::JoinHandle<()>>,
    node: NodeId,
    clock: Clock,
    /// The core's trust, if the shell made it (not when the caller supplied its own).
    trust: Option<Arc<trust::Reloadable>>,
    /// Listening endpoints and the transport settings of their medium.
    servers: Vec<(Endpoint, TransportSettings)>,
    /// What each dial loop connects with, and the transport settings of its medium.
    clients: Vec<(ClientSlot, TransportSettings)>,
}

/// The client configuration a dial loop uses for its next attempt.
type ClientSlot = Arc<RwLock<quinn::ClientConfig>>;

/// Initial and maximum pause between dial attempts.
const REDIAL_MIN: Duration = Duration::from_millis(500);
const REDIAL_MAX: Duration = Duration::from_secs(10);

impl Relay {
    /// Starts a relay. Must be called within a tokio runtime.
    pub fn start(spec: RelaySpec) -> Result<Relay, ShellError> {
        let span = info_span!("node", id = %spec.core.node);
        let _enter = span.enter();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed);
        let mut core = spec.core.clone();
        let mut reloadable = None;
        if core.trust.is_none() {
            let t = Arc::new(trust::Reloadable::new(trust::pki_trust(&spec.creds, spec.clock)?));
            reloadable = Some(t.clone());
            core.trust = Some(t);
        }
        let node = Node::open(core, spec.store, rng.random(), spec.clock.now())?;
        let revoked: link::Revoked =
            Arc::new(std::sync::RwLock::new(node.revoked_serials().into_iter().collect()));
        let opts = DriverOptions {
            clock: spec.clock,
            max_batch: spec.max_batch,
            commit: spec.commit,
            data_dir: spec.data_dir.clone(),
            observer: spec.observer,
            revoked: revoked.clone(),
            traffic: spec.traffic.clone(),
            landing: spec.landing,
        };
        let (handle, drive) = driver::driver(node, opts);
        let mut tasks = Vec::new();
        let driver_thread = if spec.dedicated_driver_thread {
            let name = format!("driver-{}", spec.core.node);
            let drive = drive.instrument(span.clone());
            Some(std::thread::Builder::new().name(name).spawn(move || {
                match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt.block_on(drive),
                    Err(e) => tracing::error!("cannot start the driver runtime: {e}"),
                }
            })?)
        } else {
            tasks.push(tokio::spawn(drive.instrument(span.clone())));
            None
        };

        let quic = QuicConfigs::new(&spec.creds, spec.clock)?;
        let reset = spec.creds.reset_secret();
        let settings = |m: Medium| {
            spec.transport.get(&m).cloned().unwrap_or_else(|| TransportSettings::default_for(m))
        };
        let ctx = LinkContext {
            node: spec.core.node.clone(),
            role: spec.core.role,
            driver: handle.sender(),
            bulk: handle.bulk_sender(),
            next_link: Arc::new(AtomicU64::new(1)),
            max_frame: spec.core.max_payload + 64 * 1024,
            clock: spec.clock,
            revoked,
            stall_timeout: spec.stall_timeout,
            admission: Arc::default(),
            traffic: spec.traffic.clone(),
            compact: spec.compact,
            pacing: Arc::new(
                Medium::ALL
                    .into_iter()
                    .filter_map(|m| Some((m, settings(m).pacing_bps()?)))
                    .collect(),
            ),
            compress: Arc::new(Medium::ALL.into_iter().filter(|&m| settings(m).compress).collect()),
        };
        let mut endpoints: Vec<(Medium, Endpoint)> = Vec::new();
        let (mut servers, mut clients) = (Vec::new(), Vec::new());
        for l in spec.listeners {
            let server = quic.server(&settings(l.medium));
            let ep = transport::endpoint(l.socket, Some(server), rng.random(), reset)?;
            servers.push((ep.clone(), settings(l.medium)));
            tasks.push(tokio::spawn(
                link::accept_loop(ctx.clone(), ep.clone(), l.medium).instrument(span.clone()),
            ));
            endpoints.push((l.medium, ep));
        }
        for d in spec.dials {
            let ep = match endpoints.iter().find(|(m, _)| *m == d.medium) {
                Some((_, ep)) => ep.clone(),
                None => {
                    let factory = spec.client_socket.as_ref().ok_or_else(|| {
                        ShellError::NoSocket { peer: d.node.clone(), medium: d.medium }
                    })?;
                    let ep = transport::endpoint(factory()?, None, rng.random(), reset)?;
                    endpoints.push((d.medium, ep.clone()));
                    ep
                }
            };
            let ts = settings(d.medium);
            let cfg: ClientSlot = Arc::new(RwLock::new(quic.client(&ts)));
            clients.push((cfg.clone(), ts.clone()));
            let jitter = rand_chacha::ChaCha8Rng::seed_from_u64(rng.random());
            tasks.push(tokio::spawn(
                redial(ctx.clone(), ep, cfg, d, ts.attempt_timeout(), jitter)
                    .instrument(span.clone()),
            ));
        }
        Ok(Relay {
            handle,
            endpoints,
            tasks,
            driver_thread,
            node: spec.core.node.clone(),
            clock: spec.clock,
            trust: reloadable,
            servers,
            clients,
        })
    }

    /// Takes new credentials while running (a renewed certificate, a new key, a new CA):
    /// links that are up stay up, and nothing the node holds is touched; new links are made
    /// with the new certificate, and what the node signs from now on is signed with the new
    /// key and carries the new certificate. Credentials that would not work (another node's,
    /// not issued by their CA, expired, a key that is not the certificate's) are refused and
    /// the running ones stay.
    pub fn reload(&self, creds: &Credentials) -> Result<(), ShellError> {
        let Some(reloadable) = &self.trust else {
            return Err(ShellError::Reload("this node's trust was supplied by its caller".into()));
        };
        if creds.identity.node != self.node {
            return Err(ShellError::Reload(format!(
                "the certificate is for {}, but this node is {}",
                creds.identity.node, self.node
            )));
        }
        let new = trust::pki_trust(creds, self.clock)?;
        crate::core::trust::Trust::check_certificate(&new, creds.chain[0].as_ref())
            .map_err(|e| ShellError::Reload(format!("the certificate: {e}")))?;
        let quic = QuicConfigs::new(creds, self.clock)?;
        for (ep, ts) in &self.servers {
            ep.set_server_config(Some(quic.server(ts)));
        }
        for (slot, ts) in &self.clients {
            *slot.write().unwrap_or_else(PoisonError::into_inner) = quic.client(ts);
        }
        reloadable.replace(new);
        self.handle
            .credentials_changed()
            .map_err(|_| ShellError::Reload("the node has stopped".into()))?;
        Ok(())
    }

    pub fn handle(&self) -> &NodeHandle {
        &self.handle
    }

    /// The local address of each endpoint.
    pub fn local_addrs(&self) -> Vec<(Medium, SocketAddr)> {
        self.endpoints.iter().filter_map(|(m, e)| e.local_addr().ok().map(|a| (*m, a))).collect()
    }

    /// Stops gracefully: the driver commits and ends, links close, tasks end.
    pub async fn stop(mut self) {
        self.handle.stop().await;
        for (_, ep) in &self.endpoints {
            ep.close(quinn::VarInt::from_u32(crate::wire::codes::CLOSE_NORMAL), b"node stopping");
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(t) = self.driver_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    /// Stops at once, as a crash or power loss would: nothing more is committed. Peers notice
    /// through their idle timeouts, not through a close.
    pub fn abort(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.endpoints.clear();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Dials a peer again and again, with exponential backoff and seeded jitter.
async fn redial(
    ctx: LinkContext,
    endpoint: Endpoint,
    cfg: ClientSlot,
    d: Dial,
    attempt: Duration,
    mut jitter: rand_chacha::ChaCha8Rng,
) {
    let mut pause = REDIAL_MIN;
    loop {
        let started = tokio::time::Instant::now();
        let config = cfg.read().unwrap_or_else(PoisonError::into_inner).clone();
        let (was_up, reason) = link::dial(
            ctx.clone(),
            endpoint.clone(),
            config,
            d.node.clone(),
            d.addr,
            d.medium,
            attempt,
        )
        .await;
        debug!(peer = %d.node, medium = %d.medium, "link attempt ended: {reason}");
        if was_up && started.elapsed() > Duration::from_secs(60) {
            pause = REDIAL_MIN;
        }
        let spread: f64 = jitter.random_range(0.75..1.25);
        tokio::time::sleep(pause.mul_f64(spread)).await;
        pause = (pause * 2).min(REDIAL_MAX);
        if was_up {
            pause = REDIAL_MIN;
        }
    }
}
