//! The core's [`PkiTrust`] for a node of this shell: its credentials, and the node clock as
//! the wall clock certificates are judged by; and [`Reloadable`], which lets a running node
//! take a renewed certificate, a new key or a new CA without restarting its core.

use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;

use super::clock::Clock;
use super::tls::Credentials;
use crate::core::trust::{Credential, Revocations, Trust};
use crate::pki::{PkiError, PkiTrust};

/// Trust in the deployment CA of `creds`, with certificate validity judged by `clock`.
/// Every federated CA is trusted for signatures and certificates, border or not: messages
/// keep their origin's signature end to end.
pub fn pki_trust(creds: &Credentials, clock: Clock) -> Result<PkiTrust, PkiError> {
    let mut trust = PkiTrust::new(
        creds.ca.as_ref(),
        creds.chain[0].as_ref(),
        creds.key.secret_der(),
        Arc::new(move || clock.system_time()),
    )?;
    for f in &creds.federated {
        trust = trust.federate(f.deployment.clone(), f.ca.as_ref(), f.nodes.clone())?;
    }
    Ok(trust)
}

/// A [`PkiTrust`] that can be replaced while the node runs ([`super::Relay::reload`]): what
/// is signed from then on is signed with the new key and carries the new certificate, and
/// certificates are judged against the new CA. Messages signed before stay as they were.
#[derive(Debug)]
pub struct Reloadable(RwLock<Arc<PkiTrust>>);

impl Reloadable {
    pub fn new(trust: PkiTrust) -> Reloadable {
        Reloadable(RwLock::new(Arc::new(trust)))
    }

    /// Puts `trust` in place of the current one.
    pub fn replace(&self, trust: PkiTrust) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(trust);
    }

    fn current(&self) -> Arc<PkiTrust> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Trust for Reloadable {
    fn certificate(&self) -> Bytes {
        self.current().certificate()
    }

    fn sign(&self, data: &[u8]) -> Bytes {
        self.current().sign(data)
    }

    fn check_certificate(&self, der: &[u8]) -> Result<Credential, String> {
        self.current().check_certificate(der)
    }

    fn check_revocations(&self, der: &[u8]) -> Result<Revocations, String> {
        self.current().check_revocations(der)
    }
}
