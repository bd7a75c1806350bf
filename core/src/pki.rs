//! The deployment's own CA, node certificates and revocation lists, as bytes; and
//! [`PkiTrust`], the core's [`Trust`] over them.
//!
//! Every node certificate is Ed25519 with a 16-byte serial number (fixed-length encodings
//! keep handshakes the same size, which the simulator's determinism relies on), valid for
//! client and server authentication, and names its node twice: a DNS name equal to the node
//! id (what TLS checks against the configured peer) and a URI
//! `urn:relaymesh:node:<id>:role:<role>` carrying the role.
//!
//! Nothing here touches a file: the shell reads and writes the PKI directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::signature::Ed25519KeyPair;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::time::ASN1Time;

use crate::federation::Deployment;
use crate::trust::{Credential, Revocations, Trust};
use crate::types::{NodeId, Role};

const URI_PREFIX: &str = "urn:relaymesh:node:";

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A key exists and `--force` was not given.
    #[error("{0} already exists (use --force to replace it)")]
    Exists(PathBuf),
    /// A file holds no usable PEM certificate or key.
    #[error("{path}: {why}")]
    Pem { path: PathBuf, why: String },
    /// A certificate lacks the relaymesh identity or is malformed.
    #[error("certificate: {0}")]
    BadCertificate(String),
    /// No certificate was issued to this node in the PKI directory.
    #[error("unknown node {node}: no certificate {path}")]
    UnknownNode { node: String, path: PathBuf },
    /// The operating system gave no randomness for a key.
    #[error("no randomness for a key: {0}")]
    Random(String),
    /// The node's certificate is on the deployment's revocation list: it is not renewed.
    #[error("{node} is revoked or decommissioned ({path}): issue a new certificate, not a renewal")]
    Withdrawn { node: String, path: PathBuf },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Who a certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub node: NodeId,
    pub role: Role,
}

/// The period a certificate is valid for.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour ago (clocks disagree) for `days` days.
    pub fn days_from(now: SystemTime, days: u64) -> Validity {
        Validity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(days * 24 * 3600),
        }
    }
}

/// The Ed25519 key pair of a 32-byte seed: random for real deployments (the shell draws it
/// from the OS), fixed for reproducible simulations and tests.
///
/// Always PKCS#8 v1 (RFC 8410, section 7: the private key alone), which OpenSSL 3.0 and
/// Python's `cryptography` read; ring's own keys are v2 (with the public key attached), which
/// they refuse. Both load here.
pub fn ed25519_key(seed: [u8; 32]) -> Result<KeyPair, PkiError> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    let der = PrivatePkcs8KeyDer::from(der);
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)?)
}

/// A 16-byte serial number with its first byte in 0x01..=0x7f, so it always encodes to the
/// same length.
fn serial(bytes: [u8; 16]) -> SerialNumber {
    let mut b = bytes;
    b[0] = (b[0] & 0x7f).max(1);
    SerialNumber::from_slice(&b)
}

/// A deployment CA that can issue node certificates.
#[derive(Debug)]
pub struct Ca {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    key: KeyPair,
}

/// A node certificate and its key.
#[derive(Debug)]
pub struct NodeCert {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_pem: String,
    pub key_der: PrivatePkcs8KeyDer<'static>,
}

impl Ca {
    /// A new CA whose key and serial number derive from `seed` (see [`ed25519_key`]).
    pub fn generate(seed: [u8; 32], validity: Validity) -> Result<Ca, PkiError> {
        let key = ed25519_key(seed)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "relaymesh deployment CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(serial(sub_seed(&seed, 0)));
        params.not_before = validity.not_before.into();
        params.not_after = validity.not_after.into();
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert_pem: cert.pem(), cert_der: cert.der().clone(), key })
    }

    /// A CA from its certificate (PEM text and DER) and its key (PEM text).
    pub fn from_pem(
        cert_pem: String,
        cert_der: CertificateDer<'static>,
        key_pem: &str,
    ) -> Result<Ca, String> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| e.to_string())?;
        Ok(Ca { cert_pem, cert_der, key })
    }

    /// The CA's private key, PEM (PKCS#8 v1).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a certificate for `node` with `role`; key and serial derive from `seed`.
    pub fn issue(
        &self,
        node: &NodeId,
        role: Role,
        seed: [u8; 32],
        validity: Validity,
    ) -> Result<NodeCert, PkiError> {
        self.certify(node, role, ed25519_key(seed)?, sub_seed(&seed, 1), validity)
    }

    /// Renews a certificate: the same node, role and key (`key_pem`, the node's key file),
    /// a new serial number (from `seed`) and a new validity.
    pub fn renew(
        &self,
        node: &NodeId,
        role: Role,
        key_pem: &str,
        seed: [u8; 32],
        validity: Validity,
    ) -> Result<NodeCert, PkiError> {
        let key = KeyPair::from_pem_and_sign_algo(key_pem, &rcgen::PKCS_ED25519)?;
        self.certify(node, role, key, sub_seed(&seed, 1), validity)
    }

    fn certify(
        &self,
        node: &NodeId,
        role: Role,
        key: KeyPair,
        serial_seed: [u8; 16],
        validity: Validity,
    ) -> Result<NodeCert, PkiError> {
        let mut params = CertificateParams::new(vec![node.to_string()])?;
        let uri = format!("{URI_PREFIX}{node}:role:{role}");
        params.subject_alt_names.push(SanType::URI(uri.try_into()?));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node.as_str());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(serial(serial_seed));
        params.not_before = validity.not_before.into();
        params.not_after = validity.not_after.into();
        let issuer = Issuer::from_ca_cert_der(&self.cert_der, &self.key)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(NodeCert {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }
}

impl Ca {
    /// A revocation list signed by this CA: number `number`, revoking `serials`.
    pub fn revocation_list(
        &self,
        number: u64,
        serials: &[Vec<u8>],
        now: SystemTime,
    ) -> Result<Vec<u8>, PkiError> {
        let entries: Vec<(Vec<u8>, Withdrawal)> =
            serials.iter().map(|s| (s.clone(), Withdrawal::Revoked)).collect();
        self.withdrawal_list(number, &entries, now)
    }

    /// A signed revocation list naming each certificate with why it was withdrawn.
    pub fn withdrawal_list(
        &self,
        number: u64,
        entries: &[(Vec<u8>, Withdrawal)],
        now: SystemTime,
    ) -> Result<Vec<u8>, PkiError> {
        use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams};
        let params = CertificateRevocationListParams {
            this_update: now.into(),
            next_update: (now + Duration::from_secs(365 * 86_400)).into(),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: entries
                .iter()
                .map(|(s, why)| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now.into(),
                    reason_code: Some(match why {
                        Withdrawal::Revoked => rcgen::RevocationReason::KeyCompromise,
                        Withdrawal::Decommissioned => rcgen::RevocationReason::CessationOfOperation,
                    }),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_ca_cert_der(&self.cert_der, &self.key)?;
        Ok(params.signed_by(&issuer)?.der().to_vec())
    }
}

/// Why a certificate is on the revocation list. Both end the node's part in the mesh (links,
/// signatures, membership of every group and topic); the list records which it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withdrawal {
    /// Compromised or lost: X.509 reason `keyCompromise`.
    Revoked,
    /// Retired by an operator: X.509 reason `cessationOfOperation`.
    Decommissioned,
}

fn sub_seed(seed: &[u8; 32], n: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = seed[i] ^ seed[i + 16] ^ n.wrapping_mul(0x5b).wrapping_add(i as u8);
    }
    out
}

/// The relaymesh identity a certificate carries.
pub fn identity_of(cert: &CertificateDer<'_>) -> Result<Identity, PkiError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, x509) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?
        .ok_or_else(|| PkiError::BadCertificate("no subject alternative name".into()))?;
    for name in &san.value.general_names {
        let GeneralName::URI(uri) = name else { continue };
        let Some(rest) = uri.strip_prefix(URI_PREFIX) else { continue };
        let (node, role) = rest
            .split_once(":role:")
            .ok_or_else(|| PkiError::BadCertificate(format!("malformed identity {uri}")))?;
        let node = NodeId::new(node).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        let role = role
            .parse()
            .map_err(|e: crate::types::ParseError| PkiError::BadCertificate(e.to_string()))?;
        return Ok(Identity { node, role });
    }
    Err(PkiError::BadCertificate("no relaymesh identity (urn:relaymesh:node:...)".into()))
}

/// What time it is by the node's wall clock (certificate validity is judged by it). In the
/// shell it is tokio's clock anchored to the wall clock; in the simulator, virtual time.
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Trust in the deployment CA (and the CAs of federated deployments), and this node's
/// signing key.
pub struct PkiTrust {
    /// This deployment's CA first, then each federated one.
    anchors: Vec<Anchor>,
    own: Bytes,
    key: Ed25519KeyPair,
    clock: WallClock,
}

/// A CA whose certificates and revocation lists this node takes.
struct Anchor {
    /// Its raw Ed25519 public key.
    key: Vec<u8>,
    /// `None`: this deployment's own CA.
    deployment: Option<Deployment>,
    /// For a federated CA, the node ids it may certify (`[[federation]] nodes`).
    nodes: Vec<NodePattern>,
}

/// Node ids a federated deployment's CA may certify: an id, or a prefix ending in `*`
/// (`city-*`). Each id belongs to one deployment: no other CA may certify it, this one's
/// included, so a federated CA cannot issue a certificate for one of this deployment's nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePattern(String);

impl NodePattern {
    pub fn parse(s: &str) -> Result<NodePattern, String> {
        let id = s.strip_suffix('*').unwrap_or(s);
        if id.is_empty() {
            return Err(format!("{s:?} names no node: give an id or a prefix such as \"city-*\""));
        }
        if id.contains('*') {
            return Err(format!("{s:?}: `*` may only end a pattern"));
        }
        NodeId::new(id).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(NodePattern(s.to_owned()))
    }

    pub fn matches(&self, node: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => node.starts_with(prefix),
            None => node == self.0,
        }
    }

    /// Whether some id matches both patterns.
    pub fn overlaps(&self, other: &NodePattern) -> bool {
        let (a, b) = (self.0.strip_suffix('*'), other.0.strip_suffix('*'));
        match (a, b) {
            (Some(a), Some(b)) => a.starts_with(b) || b.starts_with(a),
            (Some(_), None) => self.matches(&other.0),
            (None, _) => other.matches(&self.0),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PkiTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkiTrust").finish_non_exhaustive()
    }
}

/// The raw public key of a CA certificate (DER).
fn ca_key(ca: &[u8], what: &str) -> Result<Vec<u8>, PkiError> {
    let (_, ca) = X509Certificate::from_der(ca)
        .map_err(|e| PkiError::BadCertificate(format!("{what} certificate: {e}")))?;
    Ok(ca.public_key().subject_public_key.data.to_vec())
}

impl PkiTrust {
    /// From the CA certificate, this node's certificate and its PKCS#8 key (all DER).
    pub fn new(ca: &[u8], own: &[u8], key: &[u8], clock: WallClock) -> Result<PkiTrust, PkiError> {
        let anchor = Anchor { key: ca_key(ca, "CA")?, deployment: None, nodes: Vec::new() };
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(key)
            .map_err(|e| PkiError::BadCertificate(format!("node key is not Ed25519: {e}")))?;
        Ok(PkiTrust { anchors: vec![anchor], own: Bytes::copy_from_slice(own), key, clock })
    }

    /// Also takes the certificates (of the nodes `nodes` names) and revocation lists of
    /// `deployment`'s CA (DER).
    pub fn federate(
        mut self,
        deployment: Deployment,
        ca: &[u8],
        nodes: Vec<NodePattern>,
    ) -> Result<PkiTrust, PkiError> {
        let key = ca_key(ca, &format!("{deployment} CA"))?;
        if self.anchors.iter().any(|a| a.key == key) {
            return Err(PkiError::BadCertificate(format!(
                "the {deployment} CA is already trusted (this deployment's own, or federated twice)"
            )));
        }
        self.anchors.push(Anchor { key, deployment: Some(deployment), nodes });
        Ok(self)
    }

    /// Whether the CA of `deployment` may certify `node`: a federated one the ids its
    /// patterns name, this deployment's own every other id.
    fn may_certify(&self, deployment: &Option<Deployment>, node: &NodeId) -> Result<(), String> {
        let claimed = self
            .anchors
            .iter()
            .find(|a| a.deployment.is_some() && a.nodes.iter().any(|p| p.matches(node.as_str())));
        match (deployment, claimed) {
            (None, None) => Ok(()),
            (Some(d), Some(a)) if a.deployment.as_ref() == Some(d) => Ok(()),
            (_, Some(a)) => Err(format!(
                "{node} is a node of {}: no other CA may certify it",
                a.deployment.as_deref().unwrap_or("?")
            )),
            (Some(d), None) => {
                Err(format!("{d}'s CA may not certify {node}: not one of its nodes"))
            }
        }
    }

    /// The CA of these anchors that signed `tbs`, if any.
    fn signer(&self, tbs: &[u8], signature: &[u8]) -> Option<&Anchor> {
        self.anchors.iter().find(|a| crate::trust::verify(&a.key, tbs, signature))
    }

    fn not_ours(&self, what: &str) -> String {
        if self.anchors.len() == 1 {
            format!("not {what} by the deployment CA")
        } else {
            format!("not {what} by the deployment CA or a federated one")
        }
    }

    /// What `der` certifies if one of the CAs issued it, and its validity period (not judged
    /// here).
    fn check_issued(&self, der: &[u8]) -> Result<(Credential, SystemTime, SystemTime), String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("malformed: {e}"))?;
        let Some(anchor) = self.signer(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        else {
            return Err(self.not_ours("issued"));
        };
        let id = identity_of(&CertificateDer::from(der)).map_err(|e| e.to_string())?;
        let public_key = Bytes::copy_from_slice(&cert.public_key().subject_public_key.data);
        if public_key.len() != 32 {
            return Err("the key is not Ed25519".into());
        }
        let time = |t: ASN1Time| {
            let secs = t.timestamp();
            match u64::try_from(secs) {
                Ok(s) => std::time::UNIX_EPOCH + Duration::from_secs(s),
                Err(_) => std::time::UNIX_EPOCH,
            }
        };
        let validity = cert.validity();
        let credential = Credential {
            node: id.node,
            role: id.role,
            public_key,
            serial: Bytes::copy_from_slice(cert.raw_serial()),
            certificate: Bytes::copy_from_slice(der),
            deployment: anchor.deployment.clone(),
        };
        Ok((credential, time(validity.not_before), time(validity.not_after)))
    }
}

/// Certificates found issued by a CA in this process, by the SHA-256 of the CA's key and the
/// certificate: what each certifies and its validity period, judged afresh at every use by the
/// asking node's clock. One node meets each certificate once a connection; the simulator's
/// thousand nodes would otherwise each parse and check every other node's, and keep a copy
/// of it (the credential's `certificate` is shared). Bounded like [`crate::trust::Verified`].
#[derive(Default)]
struct Checked {
    generations: std::sync::Mutex<[std::collections::HashMap<[u8; 32], Issued>; 2]>,
}

type Issued = (Credential, SystemTime, SystemTime);

impl Checked {
    const GENERATION: usize = 16_384;

    fn global() -> &'static Checked {
        static CHECKED: std::sync::OnceLock<Checked> = std::sync::OnceLock::new();
        CHECKED.get_or_init(Checked::default)
    }

    fn key(ca_key: &[u8], der: &[u8]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&(ca_key.len() as u64).to_be_bytes());
        ctx.update(ca_key);
        ctx.update(der);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn get(&self, key: &[u8; 32]) -> Option<Issued> {
        let g = self.generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g[0].get(key).or_else(|| g[1].get(key)).cloned()
    }

    fn put(&self, key: [u8; 32], issued: Issued) {
        let mut g = self.generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if g[0].len() >= Self::GENERATION {
            g[1] = std::mem::take(&mut g[0]);
        }
        g[0].insert(key, issued);
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
        // What a CA certified is the same for every node; whose deployment it is depends on
        // the asking node (one deployment's own CA is federated in another).
        let remembered = self.anchors.iter().find_map(|a| {
            let (mut credential, from, until) =
                Checked::global().get(&Checked::key(&a.key, der))?;
            credential.deployment = a.deployment.clone();
            Some((credential, from, until))
        });
        let (credential, not_before, not_after) = match remembered {
            Some(found) => found,
            None => {
                let found = self.check_issued(der)?;
                let anchor = self.anchors.iter().find(|a| a.deployment == found.0.deployment);
                if let Some(a) = anchor {
                    Checked::global().put(Checked::key(&a.key, der), found.clone());
                }
                found
            }
        };
        self.may_certify(&credential.deployment, &credential.node)?;
        // Whole seconds, as certificates state their validity.
        let secs = (self.clock)().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let now = std::time::UNIX_EPOCH + Duration::from_secs(secs);
        if now < not_before || now > not_after {
            return Err("expired or not yet valid".into());
        }
        Ok(credential)
    }

    fn check_revocations(&self, der: &[u8]) -> Result<Revocations, String> {
        let (_, crl) =
            CertificateRevocationList::from_der(der).map_err(|e| format!("malformed: {e}"))?;
        let Some(anchor) = self.signer(crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
        else {
            return Err(self.not_ours("signed"));
        };
        let number = crl
            .crl_number()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or("the list has no CRL number")?;
        let serials = crl
            .iter_revoked_certificates()
            .map(|r| Bytes::copy_from_slice(r.raw_serial()))
            .collect();
        Ok(Revocations {
            number,
            serials,
            der: Bytes::copy_from_slice(der),
            deployment: anchor.deployment.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validity() -> Validity {
        Validity::days_from(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000), 30)
    }

    #[test]
    fn keys_are_pkcs8_v1_as_openssl_reads_them() {
        const V1_ED25519: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let ca = Ca::generate([3; 32], validity()).unwrap();
        let node = NodeId::new("team-rescue-7").unwrap();
        let (a, b) = (
            ca.issue(&node, Role::Field, [4; 32], validity()).unwrap(),
            ca.issue(&node, Role::Field, [5; 32], validity()).unwrap(),
        );
        for der in [ca.key.serialize_der(), a.key_der.secret_pkcs8_der().to_vec()] {
            assert_eq!(der.len(), 48, "version 1: no public key attached");
            assert_eq!(der[..16], V1_ED25519);
        }
        assert!(a.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_ne!(a.key_der.secret_pkcs8_der(), b.key_der.secret_pkcs8_der(), "per seed");
        // A version 2 key (as written before) still loads.
        let v2 = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_ne!(v2.serialize_der().len(), 48);
        assert!(KeyPair::from_pem(&v2.serialize_pem()).is_ok());
    }

    #[test]
    fn issued_certificates_carry_id_and_role_and_have_fixed_sizes() {
        let ca = Ca::generate([1; 32], validity()).unwrap();
        let node = NodeId::new("township-03").unwrap();
        let a = ca.issue(&node, Role::Township, [2; 32], validity()).unwrap();
        assert_eq!(
            identity_of(&a.cert_der).unwrap(),
            Identity { node: node.clone(), role: Role::Township }
        );
        let mut sizes = std::collections::BTreeSet::new();
        for i in 0..64u8 {
            let c = ca.issue(&node, Role::Township, [i; 32], validity()).unwrap();
            sizes.insert(c.cert_der.len());
        }
        assert_eq!(sizes.len(), 1, "certificate sizes vary: {sizes:?}");
    }

    #[test]
    fn a_remembered_certificate_is_still_judged_by_each_nodes_clock_and_ca() {
        let (ca, other) = (
            Ca::generate([11; 32], validity()).unwrap(),
            Ca::generate([12; 32], validity()).unwrap(),
        );
        let node =
            ca.issue(&NodeId::new("t-1").unwrap(), Role::Field, [13; 32], validity()).unwrap();
        let trust = |ca: &Ca, days: u64| {
            let at = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + days * 86_400);
            let clock: WallClock = Arc::new(move || at);
            PkiTrust::new(&ca.cert_der, &node.cert_der, node.key_der.secret_pkcs8_der(), clock)
                .unwrap()
        };
        let (inside, later, foreign) = (trust(&ca, 1), trust(&ca, 40), trust(&other, 1));
        for _ in 0..2 {
            let c = inside.check_certificate(&node.cert_der).unwrap();
            assert_eq!(c.node.as_str(), "t-1");
            assert_eq!(c.certificate.as_ref(), node.cert_der.as_ref());
            let expired = later.check_certificate(&node.cert_der).unwrap_err();
            assert_eq!(expired, "expired or not yet valid");
            let elsewhere = foreign.check_certificate(&node.cert_der).unwrap_err();
            assert_eq!(elsewhere, "not issued by the deployment CA");
        }
    }

    #[test]
    fn seeded_keys_are_reproducible() {
        let a = ed25519_key([9; 32]).unwrap();
        let b = ed25519_key([9; 32]).unwrap();
        assert_eq!(a.public_key_raw(), b.public_key_raw());
    }
}
