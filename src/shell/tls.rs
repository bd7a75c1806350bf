//! Mutual TLS for every link: TLS 1.3 only, the `ring` provider, the deployment CA as the only
//! root (at a federation's border, that deployment's CA too), and the node clock as the time source (so certificate validity follows virtual time in
//! the simulator).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::clock::Clock;
use crate::pki::{self, Identity, PkiError};
use crate::wire::ALPN;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate or key files are missing or unusable.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The key is not the one the certificate certifies.
    #[error("the key does not belong to the certificate")]
    KeyMismatch,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(rustls::Error),
    /// The CA could not be used as a trust anchor.
    #[error("CA certificate: {0}")]
    Ca(String),
    /// The node's certificate names a different node than the configuration.
    #[error("certificate is for {found}, but this node is {expected}")]
    WrongIdentity { expected: String, found: String },
}

/// A node's credentials and trust anchor.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub ca: CertificateDer<'static>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
    pub identity: Identity,
    /// The CAs of the deployments this one federates with (`[[federation]]`).
    pub federated: Vec<FederatedCa>,
}

/// Another deployment's CA, as this node trusts it.
#[derive(Clone, Debug)]
pub struct FederatedCa {
    pub deployment: crate::core::federation::Deployment,
    pub ca: CertificateDer<'static>,
    /// The node ids it may certify.
    pub nodes: Vec<pki::NodePattern>,
    /// This node is one of the federation's borders: its nodes may link here, so the TLS
    /// handshake takes certificates of this CA. Elsewhere only their signatures are checked
    /// (end to end), and a link from one of its nodes fails the handshake.
    pub border: bool,
}

impl Credentials {
    /// Loads PEM files and checks that the certificate is this node's.
    pub fn load(
        ca: &std::path::Path,
        cert: &std::path::Path,
        key: &std::path::Path,
        node: &crate::core::NodeId,
    ) -> Result<Credentials, TlsError> {
        let ca = pki::load_certs(ca)?.remove(0);
        let chain = pki::load_certs(cert)?;
        let key = pki::load_key(key)?;
        let identity = pki::identity_of(&chain[0])?;
        if &identity.node != node {
            return Err(TlsError::WrongIdentity {
                expected: node.to_string(),
                found: identity.node.to_string(),
            });
        }
        Ok(Credentials { ca, chain, key: Arc::new(key), identity, federated: Vec::new() })
    }

    /// The secret behind this node's QUIC stateless-reset tokens, derived from its private key so
    /// that it survives restarts: a restarted node can then tell peers at once that their old
    /// connections are gone, instead of leaving them to idle out.
    pub fn reset_secret(&self) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.key.secret_der());
        let tag = ring::hmac::sign(&key, b"relaymesh stateless reset v1");
        let mut out = [0u8; 32];
        out.copy_from_slice(&tag.as_ref()[..32]);
        out
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(|e| TlsError::Ca(e.to_string()))?;
        for f in self.federated.iter().filter(|f| f.border) {
            roots
                .add(f.ca.clone())
                .map_err(|e| TlsError::Ca(format!("{} CA: {e}", f.deployment)))?;
        }
        Ok(Arc::new(roots))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server side: requires a client certificate issued by the deployment CA.
impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> TlsError {
        match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch,
            e => TlsError::Rustls(e),
        }
    }
}

pub fn server_config(c: &Credentials, clock: Clock) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(c.roots()?, provider.clone())
        .build()
        .map_err(|e| TlsError::Ca(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_details(provider, Arc::new(clock))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(c.chain.clone(), c.key.clone_key())?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.max_early_data_size = 0;
    // Sessions to resume: two a connection, and a node has a handful of neighbours dialling
    // in, not the hundred and more rustls's default of 256 is sized for; that default's table
    // was 31 KB of every node (a 1,000-node simulated mesh's 31 MB). A neighbour past the
    // 32nd makes a full handshake, as any does after a restart.
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(64);
    Ok(cfg)
}

/// Client side: the server must present a CA-issued certificate for the dialled node id.
pub fn client_config(c: &Credentials, clock: Clock) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(c.roots()?, provider.clone())
        .build()
        .map_err(|e| TlsError::Ca(e.to_string()))?;
    let mut cfg = rustls::ClientConfig::builder_with_details(provider, Arc::new(clock))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(c.chain.clone(), c.key.clone_key())?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.enable_early_data = false;
    Ok(cfg)
}

/// The identity in the certificate a connected peer presented.
pub fn peer_identity(conn: &quinn::Connection) -> Result<Identity, String> {
    pki::identity_of(&peer_certificate(conn)?).map_err(|e| e.to_string())
}

/// The certificate a connected peer presented.
pub fn peer_certificate(conn: &quinn::Connection) -> Result<CertificateDer<'static>, String> {
    let any = conn.peer_identity().ok_or("peer presented no certificate")?;
    let chain = any
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| "peer identity is not a certificate chain")?;
    chain.into_iter().next().ok_or_else(|| "peer presented an empty certificate chain".into())
}

/// A certificate's serial number, as revocation lists name it.
pub fn serial_of(cert: &[u8]) -> bytes::Bytes {
    pki::serial_of(&CertificateDer::from(cert)).map(bytes::Bytes::from).unwrap_or_default()
}
