//! The core's [`PkiTrust`] for a node of this shell: its credentials, and the node clock as
//! the wall clock certificates are judged by.

use std::sync::Arc;

use super::clock::Clock;
use super::tls::Credentials;
use crate::pki::{PkiError, PkiTrust};

/// Trust in the deployment CA of `creds`, with certificate validity judged by `clock`.
pub fn pki_trust(creds: &Credentials, clock: Clock) -> Result<PkiTrust, PkiError> {
    PkiTrust::new(
        creds.ca.as_ref(),
        creds.chain[0].as_ref(),
        creds.key.secret_der(),
        Arc::new(move || clock.system_time()),
    )
}
