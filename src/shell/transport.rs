//! QUIC endpoints and per-medium transport settings.
//!
//! Endpoints are always built with `Endpoint::new_with_abstract_socket` over a socket handed in
//! by the caller: a real UDP socket in production, the simulator's virtual one in simulations.
//! The endpoint RNG is seeded by the caller too, which the simulator needs for determinism.

use std::sync::Arc;
use std::time::Duration;

use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{AsyncUdpSocket, Endpoint, EndpointConfig, IdleTimeout, VarInt};
use rand::SeedableRng;

use super::clock::Clock;
use super::congestion::KnownRateConfig;
use super::tls::{self, Credentials, TlsError};
use crate::core::types::Medium;

/// Congestion controller of a medium's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Congestion {
    Cubic,
    NewReno,
    Bbr,
    /// Trust the medium's configured bandwidth (see `shell::congestion`).
    KnownRate,
}

impl std::str::FromStr for Congestion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cubic" => Ok(Congestion::Cubic),
            "newreno" => Ok(Congestion::NewReno),
            "bbr" => Ok(Congestion::Bbr),
            "known-rate" => Ok(Congestion::KnownRate),
            _ => Err(format!("{s:?}: expected cubic, newreno, bbr or known-rate")),
        }
    }
}

/// QUIC settings for the links of one medium.
#[derive(Clone, Debug, PartialEq)]
pub struct TransportSettings {
    pub initial_rtt: Duration,
    pub idle_timeout: Duration,
    /// Keep-alive interval (`None`: off; keep-alives cost airtime on thin links).
    pub keep_alive: Option<Duration>,
    pub congestion: Congestion,
    /// Initial congestion window in bytes (`None`: the controller's default).
    pub initial_window: Option<u64>,
    pub stream_receive_window: u64,
    pub receive_window: u64,
    pub send_window: u64,
    /// The link's capacity, for the `known-rate` controller (bits per second).
    pub bandwidth_bps: u64,
    /// Window over the bandwidth-delay product for `known-rate`.
    pub headroom: f64,
    /// Share of `bandwidth` a `known-rate` link's bulk offers are paced to (0: not paced);
    /// see `shell::pacing`.
    pub pace: f64,
    /// Compress offer streams to peers that take it (`wire::compress`): on for satellite.
    pub compress: bool,
}

impl TransportSettings {
    /// How long one dial attempt (handshake and `Hello`) may take before the next one.
    pub fn attempt_timeout(&self) -> Duration {
        (self.initial_rtt * 10).max(Duration::from_secs(3))
    }
    pub fn default_for(m: Medium) -> TransportSettings {
        // No QUIC keep-alives by default: link probes (every probe interval, well under the
        // idle timeout) already keep connections alive, and keep-alives cost airtime.
        let base = TransportSettings {
            initial_rtt: Duration::from_millis(100),
            idle_timeout: Duration::from_secs(30),
            keep_alive: None,
            congestion: Congestion::Cubic,
            initial_window: None,
            stream_receive_window: 8 << 20,
            receive_window: 32 << 20,
            send_window: 32 << 20,
            bandwidth_bps: crate::core::MediumConfig::default_for(m).bandwidth_bps,
            headroom: 1.1,
            pace: super::pacing::DEFAULT_PACE,
            compress: false,
        };
        match m {
            Medium::Satellite => TransportSettings {
                initial_rtt: Duration::from_millis(650),
                idle_timeout: Duration::from_secs(60),
                congestion: Congestion::KnownRate,
                initial_window: Some(64 * 1024),
                stream_receive_window: 2 << 20,
                receive_window: 8 << 20,
                send_window: 8 << 20,
                compress: true,
                ..base
            },
            Medium::Wireless | Medium::Public => base,
        }
    }

    /// The rate (bits per second) this medium's links are paced to, if they are.
    pub fn pacing_bps(&self) -> Option<u64> {
        let paced = self.congestion == Congestion::KnownRate && self.pace > 0.0;
        paced.then(|| (self.bandwidth_bps as f64 * self.pace.min(1.0)) as u64).filter(|&r| r > 0)
    }

    /// The quinn transport configuration these settings describe.
    pub fn quinn(&self) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        t.initial_rtt(self.initial_rtt);
        t.max_idle_timeout(IdleTimeout::try_from(self.idle_timeout).ok());
        t.keep_alive_interval(self.keep_alive);
        t.stream_receive_window(
            VarInt::from_u64(self.stream_receive_window).unwrap_or(VarInt::MAX),
        );
        t.receive_window(VarInt::from_u64(self.receive_window).unwrap_or(VarInt::MAX));
        t.send_window(self.send_window);
        // A peer needs one offer stream per precedence and one control stream: no more may
        // be open at once, so a hostile peer cannot pile up stream state.
        t.max_concurrent_uni_streams(VarInt::from_u32(4));
        t.max_concurrent_bidi_streams(VarInt::from_u32(1));
        t.datagram_receive_buffer_size(Some(256 * 1024));
        t.datagram_send_buffer_size(256 * 1024);
        match self.congestion {
            Congestion::Cubic => {
                let mut c = CubicConfig::default();
                if let Some(w) = self.initial_window {
                    c.initial_window(w);
                }
                t.congestion_controller_factory(Arc::new(c));
            }
            Congestion::NewReno => {
                let mut c = NewRenoConfig::default();
                if let Some(w) = self.initial_window {
                    c.initial_window(w);
                }
                t.congestion_controller_factory(Arc::new(c));
            }
            Congestion::Bbr => {
                let mut c = BbrConfig::default();
                if let Some(w) = self.initial_window {
                    c.initial_window(w);
                }
                t.congestion_controller_factory(Arc::new(c));
            }
            Congestion::KnownRate => {
                t.congestion_controller_factory(Arc::new(KnownRateConfig {
                    rate_bps: self.bandwidth_bps,
                    initial_rtt: self.initial_rtt,
                    headroom: self.headroom,
                }));
            }
        }
        t
    }
}

/// Builds quinn configurations from a node's credentials.
#[derive(Clone)]
pub struct QuicConfigs {
    server: Arc<QuicServerConfig>,
    client: Arc<QuicClientConfig>,
    clock: Clock,
}

impl std::fmt::Debug for QuicConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicConfigs").finish_non_exhaustive()
    }
}

impl QuicConfigs {
    pub fn new(creds: &Credentials, clock: Clock) -> Result<QuicConfigs, TlsError> {
        let server = QuicServerConfig::try_from(tls::server_config(creds, clock)?)
            .map_err(|e| TlsError::Ca(e.to_string()))?;
        let client = QuicClientConfig::try_from(tls::client_config(creds, clock)?)
            .map_err(|e| TlsError::Ca(e.to_string()))?;
        Ok(QuicConfigs { server: Arc::new(server), client: Arc::new(client), clock })
    }

    pub fn server(&self, t: &TransportSettings) -> quinn::ServerConfig {
        let mut s = quinn::ServerConfig::with_crypto(self.server.clone());
        s.transport_config(Arc::new(t.quinn()));
        s.time_source(Arc::new(self.clock));
        s.migration(false);
        s
    }

    pub fn client(&self, t: &TransportSettings) -> quinn::ClientConfig {
        let mut c = quinn::ClientConfig::new(self.client.clone());
        c.transport_config(Arc::new(t.quinn()));
        c
    }
}

/// An endpoint over `socket`, accepting connections if `server` is given. `reset_secret` keys
/// its stateless resets (see `Credentials::reset_secret`); `seed` its RNG.
pub fn endpoint(
    socket: Arc<dyn AsyncUdpSocket>,
    server: Option<quinn::ServerConfig>,
    seed: [u8; 32],
    reset_secret: [u8; 32],
) -> std::io::Result<Endpoint> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &reset_secret);
    let mut cfg = EndpointConfig::new(Arc::new(key));
    // Connection ids are checked against a key before a stateless reset is sent for them; it
    // must survive restarts as the reset secret does, or a restarted node drops its old
    // connections' packets silently and peers wait for their idle timeout.
    let cid_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &reset_secret);
    cfg.cid_generator(move || {
        Box::new(KeyedCids { key: cid_key.clone(), rng: rand_chacha::ChaCha8Rng::from_seed(seed) })
    });
    cfg.rng_seed(Some(seed));
    Endpoint::new_with_abstract_socket(cfg, server, socket, Arc::new(quinn::TokioRuntime))
}

/// Connection ids of 8 bytes: a 4-byte nonce from the seeded RNG and 4 bytes of HMAC over it.
/// Any endpoint with the same key recognises them as its own (quinn's default generator uses a
/// random key per endpoint, which a restart would lose).
struct KeyedCids {
    key: ring::hmac::Key,
    rng: rand_chacha::ChaCha8Rng,
}

const CID_NONCE: usize = 4;
const CID_LEN: usize = 8;

impl KeyedCids {
    fn tag(&self, nonce: &[u8]) -> [u8; CID_LEN - CID_NONCE] {
        let tag = ring::hmac::sign(&self.key, nonce);
        let mut out = [0u8; CID_LEN - CID_NONCE];
        out.copy_from_slice(&tag.as_ref()[..CID_LEN - CID_NONCE]);
        out
    }
}

impl quinn::ConnectionIdGenerator for KeyedCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        use rand::RngCore;
        let mut cid = [0u8; CID_LEN];
        self.rng.fill_bytes(&mut cid[..CID_NONCE]);
        let tag = self.tag(&cid[..CID_NONCE]);
        cid[CID_NONCE..].copy_from_slice(&tag);
        quinn::ConnectionId::new(&cid)
    }

    fn validate(&self, cid: &quinn::ConnectionId) -> Result<(), quinn_proto::InvalidCid> {
        if cid.len() == CID_LEN && self.tag(&cid[..CID_NONCE]) == cid[CID_NONCE..] {
            Ok(())
        } else {
            Err(quinn_proto::InvalidCid)
        }
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// A real UDP socket for production endpoints.
pub fn udp_socket(addr: std::net::SocketAddr) -> std::io::Result<Arc<dyn AsyncUdpSocket>> {
    use quinn::Runtime;
    let socket = std::net::UdpSocket::bind(addr)?;
    quinn::TokioRuntime.wrap_udp_socket(socket)
}
