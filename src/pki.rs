//! The deployment's PKI directory: the CA, node certificates and the revocation list as
//! files (`relaymesh pki ...`). What they contain is made and checked in
//! `relaymesh_core::pki`, re-exported here.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::core::types::{NodeId, Role};
pub use relaymesh_core::pki::{
    Ca, Identity, NodeCert, NodePattern, PkiError, PkiTrust, Validity, WallClock, Withdrawal,
    ed25519_key, identity_of,
};

/// Paths of the CA certificate and key in a PKI directory.
pub fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.crt"), dir.join("ca.key"))
}

/// Paths of a node's certificate and key in a PKI directory.
pub fn node_paths(dir: &Path, node: &NodeId) -> (PathBuf, PathBuf) {
    (dir.join(format!("{node}.crt")), dir.join(format!("{node}.key")))
}

/// A fresh random seed for a key (and its certificate's serial number), from the OS.
pub fn random_seed() -> Result<[u8; 32], PkiError> {
    use rand::TryRngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut seed).map_err(|e| PkiError::Random(e.to_string()))?;
    Ok(seed)
}

/// Loads the CA of a PKI directory.
pub fn load_ca(dir: &Path) -> Result<Ca, PkiError> {
    let (cert_path, key_path) = ca_paths(dir);
    let cert_pem = read(&cert_path)?;
    let key_pem = read(&key_path)?;
    let cert_der = load_certs(&cert_path)?
        .into_iter()
        .next()
        .ok_or_else(|| PkiError::Pem { path: cert_path, why: "no certificate".into() })?;
    Ca::from_pem(cert_pem, cert_der, &key_pem).map_err(|why| PkiError::Pem { path: key_path, why })
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
    let ca = load_ca(dir)?;
    let (cert_path, _) = node_paths(dir, node);
    if !cert_path.exists() {
        return Err(PkiError::UnknownNode { node: node.to_string(), path: cert_path });
    }
    // Every certificate the node was given (renewals keep the key: an older certificate for
    // it would still link), and the current one for a directory from before the ledger.
    let mut serials = issued_serials(dir, node)?;
    let current = serial_of(&load_certs(&cert_path)?.remove(0))?;
    if !serials.contains(&current) {
        serials.push(current);
    }
    let path = crl_path(dir);
    let (mut number, mut entries) = withdrawals(&path)?;
    for serial in serials {
        match entries.iter_mut().find(|(s, _)| *s == serial) {
            // A decommissioned node found compromised later is revoked; not the other way
            // round.
            Some(entry) if why == Withdrawal::Revoked => entry.1 = why,
            Some(_) => {}
            None => entries.push((serial, why)),
        }
    }
    number += 1;
    let der = ca.withdrawal_list(number, &entries, SystemTime::now())?;
    let pem = format!("-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n", base64_lines(&der));
    write(&path, pem.as_bytes(), false)?;
    Ok((path, number))
}

/// Whether the revocation list at `path` names `cert`.
pub fn revoked_in(path: &Path, cert: &CertificateDer<'_>) -> Result<bool, PkiError> {
    let serial = serial_of(cert)?;
    Ok(withdrawals(path)?.1.iter().any(|(s, _)| *s == serial))
}

/// A certificate's serial number (its raw bytes, as revocation lists carry it).
pub fn serial_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, PkiError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, x509) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    Ok(x509.raw_serial().to_vec())
}

/// The ledger of a node's certificates in a PKI directory: `DIR/<id>.serials`, one serial
/// number (hex) a line, written by `issue` and `renew`, read by `revoke` and `decommission`.
fn ledger_path(dir: &Path, node: &NodeId) -> PathBuf {
    dir.join(format!("{node}.serials"))
}

/// Every serial number in the node's ledger (none for a directory from before it).
fn issued_serials(dir: &Path, node: &NodeId) -> Result<Vec<Vec<u8>>, PkiError> {
    Ok(ledger(dir, node)?.into_iter().flatten().collect())
}

/// Serial numbers of the certificates issued for the node's current key: those recorded
/// since the ledger's last `# new key` line (all of them in a ledger from before such lines).
fn current_key_serials(dir: &Path, node: &NodeId) -> Result<Vec<Vec<u8>>, PkiError> {
    Ok(ledger(dir, node)?.pop().unwrap_or_default())
}

/// The node's ledger (`DIR/<id>.serials`): serial numbers in hex, a line each, in runs that
/// a `# new key` line starts.
fn ledger(dir: &Path, node: &NodeId) -> Result<Vec<Vec<Vec<u8>>>, PkiError> {
    let path = ledger_path(dir, node);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(PkiError::Io { path, source }),
    };
    let mut runs = vec![Vec::new()];
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if l == NEW_KEY {
            runs.push(Vec::new());
            continue;
        }
        let serial = (0..l.len())
            .step_by(2)
            .map(|i| l.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| PkiError::Pem { path: path.clone(), why: format!("bad line {l:?}") })?;
        if let Some(run) = runs.last_mut() {
            run.push(serial);
        }
    }
    Ok(runs)
}

/// The ledger line that starts the serials of a new key.
const NEW_KEY: &str = "# new key";

/// Adds `certs`' serial numbers to the node's ledger; `new_key`: they are the first of a new
/// key (a `# new key` line goes before them).
fn record(
    dir: &Path,
    node: &NodeId,
    certs: &[&CertificateDer<'_>],
    new_key: bool,
) -> Result<(), PkiError> {
    let mut runs = ledger(dir, node)?;
    if runs.is_empty() {
        runs.push(Vec::new());
    }
    if new_key && runs.iter().any(|r| !r.is_empty()) {
        runs.push(Vec::new());
    }
    for cert in certs {
        let serial = serial_of(cert)?;
        if !runs.iter().flatten().any(|s| *s == serial)
            && let Some(run) = runs.last_mut()
        {
            run.push(serial);
        }
    }
    let hex = |s: &Vec<u8>| s.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n";
    let text: Vec<String> = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let head = if i > 0 { format!("{NEW_KEY}\n") } else { String::new() };
            head + &run.iter().map(hex).collect::<String>()
        })
        .collect();
    write(&ledger_path(dir, node), text.concat().as_bytes(), false)
}

/// A revocation list's entries: serial number and reason.
type Entries = Vec<(Vec<u8>, Withdrawal)>;

/// The number of the revocation list at `path` and its entries; `(0, [])` when there is no
/// list yet.
fn withdrawals(path: &Path) -> Result<(u64, Entries), PkiError> {
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    use x509_parser::x509::ReasonCode;
    if !path.exists() {
        return Ok((0, Vec::new()));
    }
    let der = load_crl(path)?;
    let (_, list) = CertificateRevocationList::from_der(&der)
        .map_err(|e| PkiError::Pem { path: path.into(), why: e.to_string() })?;
    let number = list.crl_number().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    let entries = list
        .iter_revoked_certificates()
        .map(|r| {
            let why = match r.reason_code() {
                Some((_, ReasonCode::CessationOfOperation)) => Withdrawal::Decommissioned,
                _ => Withdrawal::Revoked,
            };
            (r.raw_serial().to_vec(), why)
        })
        .collect();
    Ok((number, entries))
}

/// `relaymesh pki renew`: a new certificate for `node` with the same role and a new validity,
/// replacing `DIR/<id>.crt`: for the same key, or with `new_key` for a new one replacing
/// `DIR/<id>.key` (key rotation). A node whose certificate is on the revocation list is
/// refused ([`PkiError::Withdrawn`]): a compromised key is not given more time.
pub fn renew(
    dir: &Path,
    node: &NodeId,
    validity: Validity,
    new_key: bool,
) -> Result<PathBuf, PkiError> {
    let (cert_path, key_path) = node_paths(dir, node);
    if !cert_path.exists() {
        return Err(PkiError::UnknownNode { node: node.to_string(), path: cert_path });
    }
    let old = load_certs(&cert_path)?.remove(0);
    let identity = identity_of(&old)?;
    if &identity.node != node {
        return Err(PkiError::Pem {
            path: cert_path,
            why: format!("the certificate is for {}, not {node}", identity.node),
        });
    }
    // Any certificate of its current key revoked (the current one, or one a renewal
    // replaced): no renewal. Those of a key it had before do not count: a node re-issued
    // after a revocation (`pki issue --force`) is renewed as any other.
    let mut serials = current_key_serials(dir, node)?;
    serials.push(serial_of(&old)?);
    let crl = crl_path(dir);
    if withdrawals(&crl)?.1.iter().any(|(serial, _)| serials.contains(serial)) {
        return Err(PkiError::Withdrawn { node: node.to_string(), path: crl });
    }
    let ca = load_ca(dir)?;
    let cert = if new_key {
        ca.issue(node, identity.role, random_seed()?, validity)?
    } else {
        let key_pem = read(&key_path)?;
        ca.renew(node, identity.role, &key_pem, random_seed()?, validity).map_err(|e| match e {
            PkiError::Generate(g) => PkiError::Pem { path: key_path.clone(), why: g.to_string() },
            e => e,
        })?
    };
    // Both go in the ledger before the new certificate is written: revoking the node later
    // revokes the one it replaces too, which may still be on a station (or, after a new key,
    // still vouch for messages signed before).
    record(dir, node, &[&old], false)?;
    record(dir, node, &[&cert.cert_der], new_key)?;
    if new_key {
        // Key first, certificate last: a node watching the files takes them once they have
        // stayed the same for a poll, so it never tries the new key with the old certificate.
        write(&key_path, cert.key_pem.as_bytes(), true)?;
    }
    write(&cert_path, cert.cert_pem.as_bytes(), false)?;
    Ok(cert_path)
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

/// `relaymesh pki init`: a new CA in `dir`.
pub fn init(dir: &Path, force: bool, days: u64) -> Result<PathBuf, PkiError> {
    let (cert_path, key_path) = ca_paths(dir);
    if key_path.exists() && !force {
        return Err(PkiError::Exists(key_path));
    }
    fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.into(), source })?;
    let ca = Ca::generate(random_seed()?, Validity::days_from(SystemTime::now(), days))?;
    write(&key_path, ca.key_pem().as_bytes(), true)?;
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
    let ca = load_ca(dir)?;
    let cert = ca.issue(node, role, random_seed()?, validity)?;
    record(dir, node, &[&cert.cert_der], true)?;
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

/// A certificate with less than this left is warned of: at start, by `relaymesh check`, in
/// the log (daily for the node's own, at link-up for a neighbour's) and in `status`.
pub const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// When a certificate stops being valid.
pub fn not_after(cert: &CertificateDer<'_>) -> Result<SystemTime, PkiError> {
    validity_of(cert).map(|(_, not_after)| not_after)
}

/// When a certificate starts and stops being valid.
pub fn validity_of(cert: &CertificateDer<'_>) -> Result<(SystemTime, SystemTime), PkiError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, c) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let at = |t: x509_parser::time::ASN1Time| {
        std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
    };
    Ok((at(c.validity().not_before), at(c.validity().not_after)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn validity() -> Validity {
        Validity::days_from(SystemTime::now(), 30)
    }

    #[test]
    fn issued_keys_are_random() {
        let ca = Ca::generate(random_seed().unwrap(), validity()).unwrap();
        let node = NodeId::new("team-rescue-7").unwrap();
        let a = ca.issue(&node, Role::Field, random_seed().unwrap(), validity()).unwrap();
        let b = ca.issue(&node, Role::Field, random_seed().unwrap(), validity()).unwrap();
        assert_ne!(a.key_der.secret_pkcs8_der(), b.key_der.secret_pkcs8_der());
        assert_ne!(a.cert_der, b.cert_der, "serial numbers differ too");
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

    #[test]
    fn renew_keeps_key_and_role_and_refuses_a_revoked_node() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), false, 365).unwrap();
        let node = NodeId::new("township-north").unwrap();
        let cert_path = issue(dir.path(), &node, Role::Township, false, validity()).unwrap();
        let key_before = fs::read(dir.path().join("township-north.key")).unwrap();
        let old = load_certs(&cert_path).unwrap().remove(0);
        let later = Validity::days_from(SystemTime::now(), 400);
        renew(dir.path(), &node, later, false).unwrap();
        let new = load_certs(&cert_path).unwrap().remove(0);
        assert_ne!(old, new);
        assert_eq!(fs::read(dir.path().join("township-north.key")).unwrap(), key_before);
        assert_eq!(identity_of(&new).unwrap().role, Role::Township);
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, a) = X509Certificate::from_der(old.as_ref()).unwrap();
        let (_, b) = X509Certificate::from_der(new.as_ref()).unwrap();
        assert_eq!(a.public_key().raw, b.public_key().raw, "same key");
        assert!(b.validity().not_after > a.validity().not_after);
        // The renewed certificate works with the key on disk, for TLS and for signatures.
        use crate::shell::{clock::Clock, tls};
        let (ca, key) = (dir.path().join("ca.crt"), dir.path().join("township-north.key"));
        let creds = tls::Credentials::load(&ca, &cert_path, &key, &node).unwrap();
        tls::server_config(&creds, Clock::wall()).expect("renewed certificate matches the key");
        // (which is checked: another node's key does not go with it)
        let other = NodeId::new("township-south").unwrap();
        issue(dir.path(), &other, Role::Township, false, validity()).unwrap();
        let wrong = dir.path().join("township-south.key");
        let creds = tls::Credentials::load(&ca, &cert_path, &wrong, &node).unwrap();
        assert!(tls::server_config(&creds, Clock::wall()).is_err());
        // Revoking the node revokes both certificates: the old one has the same key.
        revoke(dir.path(), &node).unwrap();
        let (_, entries) = withdrawals(&crl_path(dir.path())).unwrap();
        let revoked: Vec<&Vec<u8>> = entries.iter().map(|(s, _)| s).collect();
        assert!(revoked.contains(&&a.raw_serial().to_vec()), "the replaced certificate");
        assert!(revoked.contains(&&b.raw_serial().to_vec()), "the current certificate");
        // Revoked: no renewal.
        assert!(matches!(renew(dir.path(), &node, later, false), Err(PkiError::Withdrawn { .. })));
        let unknown = NodeId::new("nobody").unwrap();
        assert!(matches!(
            renew(dir.path(), &unknown, later, true),
            Err(PkiError::UnknownNode { .. })
        ));
    }

    #[test]
    fn renew_with_a_new_key_replaces_key_and_certificate_and_keeps_the_role() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), false, 365).unwrap();
        let node = NodeId::new("relay-hill").unwrap();
        let cert_path = issue(dir.path(), &node, Role::Relay, false, validity()).unwrap();
        let key_path = dir.path().join("relay-hill.key");
        let key_before = fs::read(&key_path).unwrap();
        let old = load_certs(&cert_path).unwrap().remove(0);
        renew(dir.path(), &node, validity(), true).unwrap();
        let new = load_certs(&cert_path).unwrap().remove(0);
        assert_ne!(fs::read(&key_path).unwrap(), key_before, "a new key");
        let mode = fs::metadata(&key_path).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, a) = X509Certificate::from_der(old.as_ref()).unwrap();
        let (_, b) = X509Certificate::from_der(new.as_ref()).unwrap();
        assert_ne!(a.public_key().raw, b.public_key().raw, "the certificate carries the new key");
        assert_eq!(identity_of(&new).unwrap().role, Role::Relay);
        use crate::shell::{clock::Clock, tls};
        let creds =
            tls::Credentials::load(&dir.path().join("ca.crt"), &cert_path, &key_path, &node)
                .unwrap();
        tls::server_config(&creds, Clock::wall()).expect("the new certificate matches the new key");
        // Both are in the ledger: revoking the node revokes the old key as well.
        revoke(dir.path(), &node).unwrap();
        let (_, entries) = withdrawals(&crl_path(dir.path())).unwrap();
        let revoked: Vec<&Vec<u8>> = entries.iter().map(|(s, _)| s).collect();
        assert!(revoked.contains(&&a.raw_serial().to_vec()));
        assert!(revoked.contains(&&b.raw_serial().to_vec()));
        assert!(matches!(
            renew(dir.path(), &node, validity(), true),
            Err(PkiError::Withdrawn { .. })
        ));
        // Re-issued after the revocation (a new key): renewed as any other node, and a later
        // revocation still covers every certificate it was ever given.
        issue(dir.path(), &node, Role::Relay, true, validity()).unwrap();
        renew(dir.path(), &node, validity(), false).expect("a re-issued node renews");
        renew(dir.path(), &node, validity(), true).expect("and takes a new key");
        let newest = load_certs(&cert_path).unwrap().remove(0);
        revoke(dir.path(), &node).unwrap();
        let (_, entries) = withdrawals(&crl_path(dir.path())).unwrap();
        let revoked: Vec<&Vec<u8>> = entries.iter().map(|(s, _)| s).collect();
        assert_eq!(revoked.len(), 5, "five certificates, of four keys");
        assert!(revoked.contains(&&serial_of(&newest).unwrap()));
    }
}
