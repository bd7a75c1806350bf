//! The deployment's own CA and node certificates.
//!
//! Every node certificate is Ed25519 with a 16-byte serial number (fixed-length encodings
//! keep handshakes the same size, which the simulator's determinism relies on), valid for
//! client and server authentication, and names its node twice: a DNS name equal to the node
//! id (what TLS checks against the configured peer) and a URI
//! `urn:relaymesh:node:<id>:role:<role>` carrying the role.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::core::types::{NodeId, Role};

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

/// Paths of the CA certificate and key in a PKI directory.
pub fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.crt"), dir.join("ca.key"))
}

/// Paths of a node's certificate and key in a PKI directory.
pub fn node_paths(dir: &Path, node: &NodeId) -> (PathBuf, PathBuf) {
    (dir.join(format!("{node}.crt")), dir.join(format!("{node}.key")))
}

/// An Ed25519 key pair, random or derived from a 32-byte seed (for reproducible simulations).
///
/// Always PKCS#8 v1 (RFC 8410, section 7: the private key alone), which OpenSSL 3.0 and
/// Python's `cryptography` read; ring's own keys are v2 (with the public key attached), which
/// they refuse. Both load here.
pub fn ed25519_key(seed: Option<[u8; 32]>) -> Result<KeyPair, PkiError> {
    let seed = match seed {
        Some(seed) => seed,
        None => {
            use rand::TryRngCore;
            let mut seed = [0u8; 32];
            rand::rngs::OsRng
                .try_fill_bytes(&mut seed)
                .map_err(|e| PkiError::Random(e.to_string()))?;
            seed
        }
    };
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

fn random_bytes() -> [u8; 16] {
    use rand::TryRngCore;
    let mut b = [0u8; 16];
    if rand::rngs::OsRng.try_fill_bytes(&mut b).is_err() {
        // The serial only needs to be unique, which the time still gives.
        let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        b = t.as_nanos().to_be_bytes();
    }
    b
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
    /// A new CA. `seed` makes key and serial reproducible (simulations); `None` uses the OS.
    pub fn generate(seed: Option<[u8; 32]>, validity: Validity) -> Result<Ca, PkiError> {
        let key = ed25519_key(seed)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "relaymesh deployment CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(serial(seed.map_or_else(random_bytes, |s| sub_seed(&s, 0))));
        params.not_before = validity.not_before.into();
        params.not_after = validity.not_after.into();
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert_pem: cert.pem(), cert_der: cert.der().clone(), key })
    }

    /// Loads the CA of a PKI directory.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let (cert_path, key_path) = ca_paths(dir);
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| PkiError::Pem { path: key_path.clone(), why: e.to_string() })?;
        let cert_der = load_certs(&cert_path)?
            .into_iter()
            .next()
            .ok_or_else(|| PkiError::Pem { path: cert_path, why: "no certificate".into() })?;
        Ok(Ca { cert_pem, cert_der, key })
    }

    /// Issues a certificate for `node` with `role`. `seed` as in [`Ca::generate`].
    pub fn issue(
        &self,
        node: &NodeId,
        role: Role,
        seed: Option<[u8; 32]>,
        validity: Validity,
    ) -> Result<NodeCert, PkiError> {
        let key = ed25519_key(seed)?;
        let mut params = CertificateParams::new(vec![node.to_string()])?;
        let uri = format!("{URI_PREFIX}{node}:role:{role}");
        params.subject_alt_names.push(SanType::URI(uri.try_into()?));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node.as_str());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(serial(seed.map_or_else(random_bytes, |s| sub_seed(&s, 1))));
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

/// The revocation list of a PKI directory (kept beside the CA certificate).
pub fn crl_path(dir: &Path) -> PathBuf {
    dir.join("crl.pem")
}

/// The DER of the first revocation list in a PEM (or DER) file.
pub fn load_crl(path: &Path) -> Result<Vec<u8>, PkiError> {
    let bytes = fs::read(path).map_err(|source| PkiError::Io { path: path.into(), source })?;
    if bytes.first() == Some(&0x30) {
        return Ok(bytes);
    }
    let crl = rustls_pemfile::crls(&mut bytes.as_slice())
        .next()
        .ok_or_else(|| PkiError::Pem { path: path.into(), why: "no X509 CRL in file".into() })?
        .map_err(|e| PkiError::Pem { path: path.into(), why: e.to_string() })?;
    Ok(crl.as_ref().to_vec())
}

/// `relaymesh pki revoke`: adds `node`'s certificate to the CA's revocation list (a new list
/// with the next number), written to `DIR/crl.pem`. Returns the path and the list's number.
pub fn revoke(dir: &Path, node: &NodeId) -> Result<(PathBuf, u64), PkiError> {
    withdraw(dir, node, Withdrawal::Revoked)
}

/// `relaymesh pki revoke` or `pki decommission`: adds `node`'s certificate to the CA's next
/// revocation list (`DIR/crl.pem`), keeping every earlier entry and its reason.
pub fn withdraw(dir: &Path, node: &NodeId, why: Withdrawal) -> Result<(PathBuf, u64), PkiError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::revocation_list::CertificateRevocationList;
    use x509_parser::x509::ReasonCode;
    let ca = Ca::load(dir)?;
    let (cert_path, _) = node_paths(dir, node);
    if !cert_path.exists() {
        return Err(PkiError::UnknownNode { node: node.to_string(), path: cert_path });
    }
    let cert = load_certs(&cert_path)?.remove(0);
    let (_, x509) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let serial = x509.raw_serial().to_vec();
    let path = crl_path(dir);
    let (mut entries, mut number) = (Vec::new(), 0u64);
    if path.exists() {
        let der = load_crl(&path)?;
        let (_, old) = CertificateRevocationList::from_der(&der)
            .map_err(|e| PkiError::Pem { path: path.clone(), why: e.to_string() })?;
        number = old.crl_number().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        for r in old.iter_revoked_certificates() {
            let why = match r.reason_code() {
                Some((_, ReasonCode::CessationOfOperation)) => Withdrawal::Decommissioned,
                _ => Withdrawal::Revoked,
            };
            entries.push((r.raw_serial().to_vec(), why));
        }
    }
    match entries.iter_mut().find(|(s, _)| *s == serial) {
        // A decommissioned node found compromised later is revoked; not the other way round.
        Some(entry) if why == Withdrawal::Revoked => entry.1 = why,
        Some(_) => {}
        None => entries.push((serial, why)),
    }
    number += 1;
    let der = ca.withdrawal_list(number, &entries, SystemTime::now())?;
    let pem = format!("-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n", base64_lines(&der));
    write(&path, pem.as_bytes(), false)?;
    Ok((path, number))
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    b64.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn sub_seed(seed: &[u8; 32], n: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = seed[i] ^ seed[i + 16] ^ n.wrapping_mul(0x5b).wrapping_add(i as u8);
    }
    out
}

/// `relaymesh pki init`: a new CA in `dir`.
pub fn init(dir: &Path, force: bool, days: u64) -> Result<PathBuf, PkiError> {
    let (cert_path, key_path) = ca_paths(dir);
    if key_path.exists() && !force {
        return Err(PkiError::Exists(key_path));
    }
    fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.into(), source })?;
    let ca = Ca::generate(None, Validity::days_from(SystemTime::now(), days))?;
    write(&key_path, ca.key.serialize_pem().as_bytes(), true)?;
    write(&cert_path, ca.cert_pem.as_bytes(), false)?;
    Ok(cert_path)
}

/// `relaymesh pki issue`: a node certificate signed by the CA in `dir`.
pub fn issue(
    dir: &Path,
    node: &NodeId,
    role: Role,
    force: bool,
    validity: Validity,
) -> Result<PathBuf, PkiError> {
    let (cert_path, key_path) = node_paths(dir, node);
    if key_path.exists() && !force {
        return Err(PkiError::Exists(key_path));
    }
    let ca = Ca::load(dir)?;
    let cert = ca.issue(node, role, None, validity)?;
    write(&key_path, cert.key_pem.as_bytes(), true)?;
    write(&cert_path, cert.cert_pem.as_bytes(), false)?;
    Ok(cert_path)
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io { path: path.into(), source })
}

fn write(path: &Path, bytes: &[u8], secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io { path: path.into(), source };
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem = fs::read(path).map_err(|source| PkiError::Io { path: path.into(), source })?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem { path: path.into(), why: e.to_string() })?;
    if certs.is_empty() {
        return Err(PkiError::Pem { path: path.into(), why: "no certificate in file".into() });
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let pem = fs::read(path).map_err(|source| PkiError::Io { path: path.into(), source })?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| PkiError::Pem { path: path.into(), why: e.to_string() })?
        .ok_or_else(|| PkiError::Pem { path: path.into(), why: "no private key in file".into() })
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
            .map_err(|e: crate::core::types::ParseError| PkiError::BadCertificate(e.to_string()))?;
        return Ok(Identity { node, role });
    }
    Err(PkiError::BadCertificate("no relaymesh identity (urn:relaymesh:node:...)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validity() -> Validity {
        Validity::days_from(SystemTime::now(), 30)
    }

    #[test]
    fn random_keys_are_pkcs8_v1_as_openssl_reads_them() {
        const V1_ED25519: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let ca = Ca::generate(None, validity()).unwrap();
        let node = NodeId::new("team-rescue-7").unwrap();
        let (a, b) = (
            ca.issue(&node, Role::Field, None, validity()).unwrap(),
            ca.issue(&node, Role::Field, None, validity()).unwrap(),
        );
        for der in [ca.key.serialize_der(), a.key_der.secret_pkcs8_der().to_vec()] {
            assert_eq!(der.len(), 48, "version 1: no public key attached");
            assert_eq!(der[..16], V1_ED25519);
        }
        assert!(a.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_ne!(a.key_der.secret_pkcs8_der(), b.key_der.secret_pkcs8_der(), "random");
        // A version 2 key (as written before) still loads.
        let v2 = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_ne!(v2.serialize_der().len(), 48);
        assert!(KeyPair::from_pem(&v2.serialize_pem()).is_ok());
    }

    #[test]
    fn issued_certificates_carry_id_and_role_and_have_fixed_sizes() {
        let ca = Ca::generate(Some([1; 32]), validity()).unwrap();
        let node = NodeId::new("township-03").unwrap();
        let a = ca.issue(&node, Role::Township, Some([2; 32]), validity()).unwrap();
        assert_eq!(
            identity_of(&a.cert_der).unwrap(),
            Identity { node: node.clone(), role: Role::Township }
        );
        let mut sizes = std::collections::BTreeSet::new();
        for i in 0..64u8 {
            let c = ca.issue(&node, Role::Township, Some([i; 32]), validity()).unwrap();
            sizes.insert(c.cert_der.len());
        }
        assert_eq!(sizes.len(), 1, "certificate sizes vary: {sizes:?}");
    }

    #[test]
    fn seeded_keys_are_reproducible() {
        let a = ed25519_key(Some([9; 32])).unwrap();
        let b = ed25519_key(Some([9; 32])).unwrap();
        assert_eq!(a.public_key_raw(), b.public_key_raw());
    }

    #[test]
    fn init_and_issue_write_files_and_refuse_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), false, 365).unwrap();
        assert!(matches!(init(dir.path(), false, 365), Err(PkiError::Exists(_))));
        let node = NodeId::new("county-hq").unwrap();
        let cert = issue(dir.path(), &node, Role::Command, false, validity()).unwrap();
        let certs = load_certs(&cert).unwrap();
        assert_eq!(identity_of(&certs[0]).unwrap().role, Role::Command);
        assert!(matches!(
            issue(dir.path(), &node, Role::Command, false, validity()),
            Err(PkiError::Exists(_))
        ));
        issue(dir.path(), &node, Role::Relay, true, validity()).unwrap();
        let mode = fs::metadata(dir.path().join("county-hq.key")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    }
}
