//! [`PkiTrust`]: the core's [`Trust`] over the deployment's X.509 PKI: certificates and
//! revocation lists must carry the CA's Ed25519 signature, certificates must be valid by the
//! node clock, and this node signs with the key of its own certificate.

use bytes::Bytes;
use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::time::ASN1Time;

use super::clock::Clock;
use super::tls::Credentials;
use crate::core::trust::{Credential, Revocations, Trust};
use crate::pki::{self, PkiError};

/// Trust in the deployment CA, and this node's signing key.
pub struct PkiTrust {
    ca_key: Vec<u8>,
    own: Bytes,
    key: Ed25519KeyPair,
    clock: Clock,
}

impl std::fmt::Debug for PkiTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkiTrust").finish_non_exhaustive()
    }
}

impl PkiTrust {
    pub fn new(creds: &Credentials, clock: Clock) -> Result<PkiTrust, PkiError> {
        let (_, ca) = X509Certificate::from_der(creds.ca.as_ref())
            .map_err(|e| PkiError::BadCertificate(format!("CA certificate: {e}")))?;
        let ca_key = ca.public_key().subject_public_key.data.to_vec();
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(creds.key.secret_der())
            .map_err(|e| PkiError::BadCertificate(format!("node key is not Ed25519: {e}")))?;
        let own = Bytes::copy_from_slice(creds.chain[0].as_ref());
        Ok(PkiTrust { ca_key, own, key, clock })
    }

    fn signed_by_ca(&self, tbs: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.ca_key).verify(tbs, signature).is_ok()
    }
}

impl Trust for PkiTrust {
    fn certificate(&self) -> Bytes {
        self.own.clone()
    }

    fn sign(&self, data: &[u8]) -> Bytes {
        Bytes::copy_from_slice(self.key.sign(data).as_ref())
    }

    fn check_certificate(&self, der: &[u8]) -> Result<Credential, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("malformed: {e}"))?;
        if !self.signed_by_ca(cert.tbs_certificate.as_ref(), &cert.signature_value.data) {
            return Err("not issued by the deployment CA".into());
        }
        let now = self.clock.system_time();
        let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let at = ASN1Time::from_timestamp(secs as i64).map_err(|e| e.to_string())?;
        if !cert.validity().is_valid_at(at) {
            return Err("expired or not yet valid".into());
        }
        let id = pki::identity_of(&rustls::pki_types::CertificateDer::from(der))
            .map_err(|e| e.to_string())?;
        let public_key = Bytes::copy_from_slice(&cert.public_key().subject_public_key.data);
        if public_key.len() != 32 {
            return Err("the key is not Ed25519".into());
        }
        Ok(Credential {
            node: id.node,
            role: id.role,
            public_key,
            serial: Bytes::copy_from_slice(cert.raw_serial()),
            certificate: Bytes::copy_from_slice(der),
        })
    }

    fn check_revocations(&self, der: &[u8]) -> Result<Revocations, String> {
        let (_, crl) =
            CertificateRevocationList::from_der(der).map_err(|e| format!("malformed: {e}"))?;
        if !self.signed_by_ca(crl.tbs_cert_list.as_ref(), &crl.signature_value.data) {
            return Err("not signed by the deployment CA".into());
        }
        let number = crl
            .crl_number()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or("the list has no CRL number")?;
        let serials = crl
            .iter_revoked_certificates()
            .map(|r| Bytes::copy_from_slice(r.raw_serial()))
            .collect();
        Ok(Revocations { number, serials, der: Bytes::copy_from_slice(der) })
    }
}
