//! Origin signatures and the deployment's trust: who may sign what, and who is revoked.
//!
//! Every envelope is signed by its origin with the Ed25519 key its CA-issued certificate
//! certifies, over the fields no relay may change ([`envelope_signed_bytes`]). Every node
//! verifies before it takes custody, so a forged or altered message stops at the first honest
//! node. Nodes learn each other's certificates from their link-state adverts, which carry the
//! certificate and are signed the same way.
//!
//! What a certificate or revocation list means is the deployment's business: the core asks a
//! [`Trust`] (the shell's implementation parses X.509 and checks the CA's signature, with the
//! node clock for validity). Signature verification itself is plain computation and happens
//! here.

use std::collections::BTreeSet;
use std::fmt;

use bytes::Bytes;

use super::frame::Advert;
use super::types::{Body, Envelope, NodeId, Role};

/// What a CA-issued certificate says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub node: NodeId,
    pub role: Role,
    /// Raw Ed25519 public key (32 bytes).
    pub public_key: Bytes,
    /// The certificate's serial number, as revocation lists name it.
    pub serial: Bytes,
    /// The certificate itself (DER).
    pub certificate: Bytes,
}

/// A revocation list the deployment CA signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocations {
    /// The CRL number: a higher one replaces a lower one.
    pub number: u64,
    /// Serial numbers of revoked certificates.
    pub serials: BTreeSet<Bytes>,
    /// The list as the CA signed it (DER), to store and pass on.
    pub der: Bytes,
}

/// The deployment's trust and this node's signing key, provided by the shell.
pub trait Trust: Send + Sync + fmt::Debug {
    /// This node's own certificate (DER).
    fn certificate(&self) -> Bytes;
    /// Signs `data` with this node's key (Ed25519, 64 bytes).
    fn sign(&self, data: &[u8]) -> Bytes;
    /// Checks that a certificate was issued by the deployment CA and is valid now.
    fn check_certificate(&self, der: &[u8]) -> Result<Credential, String>;
    /// Checks that a revocation list was signed by the deployment CA.
    fn check_revocations(&self, der: &[u8]) -> Result<Revocations, String>;
}

/// Signs an envelope as its origin.
pub fn seal_envelope(trust: &dyn Trust, env: &mut Envelope) {
    env.signature = trust.sign(&envelope_signed_bytes(env));
}

/// Attaches the node's certificate to its advert and signs it.
pub fn seal_advert(trust: &dyn Trust, a: &mut Advert) {
    a.certificate = trust.certificate();
    a.signature = trust.sign(&advert_signed_bytes(a));
}

/// Whether `signature` is `public_key`'s Ed25519 signature over `data`.
pub fn verify(public_key: &[u8], data: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(data, signature)
        .is_ok()
}

fn put(buf: &mut Vec<u8>, field: &[u8]) {
    buf.extend_from_slice(&(field.len() as u32).to_be_bytes());
    buf.extend_from_slice(field);
}

/// The bytes an origin signs: every field set at the origin, none of those a relay rewrites
/// (`age`, `hop_count`, `destinations`), in a fixed, length-prefixed layout.
pub fn envelope_signed_bytes(e: &Envelope) -> Vec<u8> {
    let mut b = Vec::with_capacity(128 + e.payload.len());
    b.extend_from_slice(b"relaymesh envelope v1\0");
    b.extend_from_slice(&e.id.0);
    put(&mut b, e.origin.as_str().as_bytes());
    put(&mut b, e.to.to_string().as_bytes());
    b.push(e.precedence.index() as u8);
    b.extend_from_slice(&(e.lifetime.as_micros() as u64).to_be_bytes());
    put(&mut b, e.content_type.as_bytes());
    put(&mut b, &e.payload);
    b.push(u8::from(e.receipt));
    b.push(e.status as u8);
    b.extend_from_slice(&e.created.as_micros().to_be_bytes());
    match &e.body {
        Body::Data => b.push(0),
        Body::Report(r) => {
            b.push(1);
            b.extend_from_slice(&r.of.0);
            b.push(r.outcome as u8);
            put(&mut b, r.at_node.as_str().as_bytes());
            b.extend_from_slice(&(r.age.as_micros() as u64).to_be_bytes());
            put(&mut b, r.reason.as_bytes());
            b.extend_from_slice(&(r.destinations.len() as u32).to_be_bytes());
            for d in &r.destinations {
                put(&mut b, d.as_str().as_bytes());
            }
        }
    }
    b
}

/// The bytes a node signs in its advert: the advert as encoded, without its age (which every
/// hop rewrites) and without the signature itself.
pub fn advert_signed_bytes(a: &Advert) -> Vec<u8> {
    let unsigned = Advert { age: std::time::Duration::ZERO, signature: Bytes::new(), ..a.clone() };
    let mut b = b"relaymesh advert v1\0".to_vec();
    b.extend_from_slice(&crate::wire::encode_advert(&unsigned));
    b
}
