//! Origin signatures and the deployment's trust: who may sign what, and who is revoked.
//!
//! Every envelope is signed by its origin with the Ed25519 key its CA-issued certificate
//! certifies, over the fields no relay may change ([`envelope_signed_bytes`]): in a batch, as
//! one signature over a Merkle root that each envelope proves its place under
//! ([`seal_batch`]). Every node verifies before it takes custody, so a forged or altered
//! message stops at the first honest node. Nodes learn each other's certificates from their link-state adverts, which carry the
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
    /// The deployment whose CA issued it, if not this node's own (a `[[federation]]`).
    pub deployment: Option<super::federation::Deployment>,
}

/// How many previous keys of one node are kept (and carried in its adverts).
pub const MAX_PREVIOUS_KEYS: usize = 4;

/// A revocation list the deployment CA signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocations {
    /// The CRL number: a higher one replaces a lower one.
    pub number: u64,
    /// Serial numbers of revoked certificates.
    pub serials: BTreeSet<Bytes>,
    /// The list as the CA signed it (DER), to store and pass on.
    pub der: Bytes,
    /// The deployment whose CA signed it, if not this node's own: it names that CA's
    /// certificates only.
    pub deployment: Option<super::federation::Deployment>,
}

/// The deployment's trust and this node's signing key, provided by the shell.
pub trait Trust: Send + Sync + fmt::Debug {
    /// This node's own certificate (DER).
    fn certificate(&self) -> Bytes;
    /// Signs `data` with this node's key (Ed25519, 64 bytes).
    fn sign(&self, data: &[u8]) -> Bytes;
    /// Checks that a certificate was issued by the deployment CA, or by the CA of a deployment
    /// this one federates with, and is valid now.
    fn check_certificate(&self, der: &[u8]) -> Result<Credential, String>;
    /// Checks that a revocation list was signed by the deployment CA or a federated one (the
    /// list then names that deployment's certificates only).
    fn check_revocations(&self, der: &[u8]) -> Result<Revocations, String>;
}

/// Signs an envelope as its origin (a batch of one).
pub fn seal_envelope(trust: &dyn Trust, env: &mut Envelope) {
    seal_batch(trust, std::slice::from_mut(env));
}

/// The most envelopes one origin signature covers. A seal carries its Merkle path, 16 bytes a
/// level: 16 keeps that to 64 bytes while a verifier's share of the signature check
/// (about 46 us) falls to under 3 us a message; beyond, the saving is small and the bytes are
/// not, on a satellite link.
pub const MAX_BATCH: usize = 16;

/// A seal without a path: signature, batch size, index.
pub(crate) const SEAL_HEADER: usize = 64 + 2 + 2;

/// The longest seal: a full batch's path has ceil(log2([`MAX_BATCH`])) levels.
pub const MAX_SEAL: usize = SEAL_HEADER + HASH * MAX_BATCH.next_power_of_two().ilog2() as usize;

/// Signs a batch of envelopes (at most [`MAX_BATCH`]; more are sealed in chunks) with one
/// origin signature.
///
/// Ed25519 costs far more than everything else a relay does with a message, so an origin
/// that has several messages to send at once signs the root of a Merkle tree over them, and
/// every envelope's seal carries that signature plus its path to the root:
///
/// ```text
/// seal = signature (64) || batch size (u16 BE) || index (u16 BE) || path (16 bytes a level)
/// leaf = SHA-256/128(0x00 || envelope_signed_bytes)  node = SHA-256/128(0x01 || left || right)
/// signed = "relaymesh batch v1\0" || batch size (u16 BE) || root
/// ```
///
/// SHA-256/128 is SHA-256 cut to its first 16 bytes. What stops a relay is second-preimage
/// resistance (it must find another envelope with the same hash as one it has seen): 2^128
/// work, less the few dozen bits a relay gains from the number of hashes it sees. Collisions
/// (2^64) would only let an origin make two envelopes share a proof, which gains it nothing: it
/// can sign either outright. Half the path bytes matter at 256 bytes a message.
///
/// At each level leaves pair up left to right; an odd one out moves up unpaired. A verifier
/// recomputes the root from the envelope and its path and checks the signature once per
/// batch it sees ([`SealCache`]); a relay that alters anything signed changes the root and
/// fails the check as before. A batch of one has no path: its root is the envelope's leaf.
pub fn seal_batch(trust: &dyn Trust, envs: &mut [Envelope]) {
    for chunk in envs.chunks_mut(MAX_BATCH) {
        let leaves: Vec<Digest> = chunk.iter().map(leaf_hash).collect();
        let levels = tree_levels(leaves);
        let root = levels.last().and_then(|l| l.first()).copied().unwrap_or([0; HASH]);
        let count = chunk.len() as u16;
        let signature = trust.sign(&batch_signed_bytes(count, &root));
        for (index, env) in chunk.iter_mut().enumerate() {
            let mut seal = Vec::with_capacity(SEAL_HEADER + HASH * (levels.len() - 1));
            seal.extend_from_slice(&signature);
            seal.extend_from_slice(&count.to_be_bytes());
            seal.extend_from_slice(&(index as u16).to_be_bytes());
            let mut i = index;
            for level in &levels[..levels.len() - 1] {
                // The sibling; an odd one out at the end of its level has none.
                if let Some(h) = level.get(i ^ 1) {
                    seal.extend_from_slice(h);
                }
                i /= 2;
            }
            env.signature = Bytes::from(seal);
        }
    }
}

/// Bytes of a tree hash.
pub(crate) const HASH: usize = 16;

pub(crate) type Digest = [u8; HASH];

fn sha256(parts: &[&[u8]]) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0; HASH];
    out.copy_from_slice(&ctx.finish().as_ref()[..HASH]);
    out
}

pub(crate) fn leaf_hash(env: &Envelope) -> Digest {
    sha256(&[&[0], &envelope_signed_bytes(env)])
}

pub(crate) fn parent(left: &Digest, right: &Digest) -> Digest {
    sha256(&[&[1], left, right])
}

/// Every level of the tree over `leaves`, leaves first, the root's level last.
fn tree_levels(leaves: Vec<Digest>) -> Vec<Vec<Digest>> {
    let mut levels = vec![leaves];
    while levels.last().is_some_and(|l| l.len() > 1) {
        let below = levels.last().map(Vec::as_slice).unwrap_or_default();
        let up = below
            .chunks(2)
            .map(|pair| if let [l, r] = pair { parent(l, r) } else { pair[0] })
            .collect();
        levels.push(up);
    }
    levels
}

fn batch_signed_bytes(count: u16, root: &Digest) -> Vec<u8> {
    let mut b = b"relaymesh batch v1\0".to_vec();
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(root);
    b
}

/// What an envelope's seal proves once its path is followed: the batch root its origin must
/// have signed, and that signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub count: u16,
    pub root: Digest,
    pub signature: [u8; 64],
}

/// Follows an envelope's seal to the root of its batch. `None`: the seal is malformed (its
/// length does not fit its batch size and index).
pub fn claim(env: &Envelope) -> Option<Claim> {
    let seal = &env.signature;
    if seal.len() < SEAL_HEADER || !(seal.len() - SEAL_HEADER).is_multiple_of(HASH) {
        return None;
    }
    let mut signature = [0; 64];
    signature.copy_from_slice(&seal[..64]);
    let count = u16::from_be_bytes([seal[64], seal[65]]);
    let index = u16::from_be_bytes([seal[66], seal[67]]) as usize;
    if count == 0 || index >= count as usize {
        return None;
    }
    let mut path = seal[SEAL_HEADER..].chunks_exact(HASH);
    let mut hash = leaf_hash(env);
    let (mut i, mut width) = (index, count as usize);
    while width > 1 {
        if i % 2 == 1 {
            hash = parent(path.next()?.try_into().ok()?, &hash);
        } else if i + 1 < width {
            hash = parent(&hash, path.next()?.try_into().ok()?);
        }
        i /= 2;
        width = width.div_ceil(2);
    }
    if path.next().is_some() {
        return None;
    }
    Some(Claim { count, root: hash, signature })
}

/// Whether `claim` carries `public_key`'s signature over its batch root.
pub fn verify_claim(public_key: &[u8], claim: &Claim) -> bool {
    verify(public_key, &batch_signed_bytes(claim.count, &claim.root), &claim.signature)
}

/// Batch roots whose signatures this node has checked, so that the other envelopes of a batch
/// cost a few hashes instead of a signature check. Bounded: the oldest is forgotten first.
///
/// An entry stands for exactly what was checked: the key, the signed bytes (batch size and
/// root) and the signature. Anything else, a batch size changed on the way say, is checked
/// afresh: a relay must not accept from its cache what its next hop, without the entry, would
/// refuse, and blame it for.
#[derive(Debug, Default)]
pub struct SealCache {
    checked: std::collections::HashSet<(NodeId, [u8; 32])>,
    order: std::collections::VecDeque<(NodeId, [u8; 32])>,
}

impl SealCache {
    /// Batches remembered.
    pub const CAPACITY: usize = 4096;

    /// Whether `env` is authentic under its origin's `public_key`: a batch seal
    /// ([`seal_batch`]), or a plain 64-byte signature over [`envelope_signed_bytes`] as nodes
    /// before batch seals made (messages still held in an upgraded node's store).
    pub fn check_envelope(&mut self, public_key: &[u8], env: &Envelope) -> bool {
        if env.signature.len() == 64 {
            return verify(public_key, &envelope_signed_bytes(env), &env.signature);
        }
        claim(env).is_some_and(|c| self.check(&env.origin, public_key, &c))
    }

    /// Whether `origin`'s envelope carrying `claim` is authentic under `public_key`, checking
    /// the signature only for a batch not seen before.
    pub fn check(&mut self, origin: &NodeId, public_key: &[u8], claim: &Claim) -> bool {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(public_key);
        ctx.update(&batch_signed_bytes(claim.count, &claim.root));
        ctx.update(&claim.signature);
        let mut digest = [0; 32];
        digest.copy_from_slice(ctx.finish().as_ref());
        let key = (origin.clone(), digest);
        if self.checked.contains(&key) {
            return true;
        }
        if !verify_claim(public_key, claim) {
            return false;
        }
        if self.order.len() >= Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.checked.remove(&old);
        }
        self.checked.insert(key.clone());
        self.order.push_back(key);
        true
    }

    /// Forgets everything checked for `origin` (its certificate was revoked).
    pub fn forget(&mut self, origin: &NodeId) {
        self.order.retain(|k| &k.0 != origin);
        self.checked.retain(|k| &k.0 != origin);
    }
}

/// Attaches the node's certificate to its advert and signs it.
pub fn seal_advert(trust: &dyn Trust, a: &mut Advert) {
    a.certificate = trust.certificate();
    a.signature = trust.sign(&advert_signed_bytes(a));
}

/// Whether `signature` is `public_key`'s Ed25519 signature over `data`.
///
/// Signatures found good are remembered for the whole process ([`Verified`]): a node that
/// meets the same signed bytes again (an advert taken back after it aged out, a revocation
/// list from a second neighbour) and, in the simulator, every other node it runs, pay a
/// SHA-256 of them instead of a signature check (about 50 us, most of the simulator's time
/// in a 1,000-node mesh otherwise).
pub fn verify(public_key: &[u8], data: &[u8], signature: &[u8]) -> bool {
    let digest = Verified::digest(public_key, data, signature);
    if Verified::global().knows(&digest) {
        return true;
    }
    let good = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(data, signature)
        .is_ok();
    if good {
        Verified::global().remember(digest);
    }
    good
}

/// Signatures checked and found good in this process, each as the SHA-256 of exactly what was
/// checked (key, signed bytes, signature, each length-prefixed), so an entry vouches for
/// nothing else. Bounded: two generations of [`Verified::GENERATION`] entries each; when the
/// newer fills, the older is forgotten. Bad signatures are not remembered (each is checked,
/// and blamed, again).
#[derive(Debug, Default)]
pub struct Verified {
    generations: std::sync::Mutex<[rustc_hash::FxHashSet<[u8; 32]>; 2]>,
}

impl Verified {
    /// Entries per generation (64 bytes each with the table's overhead: 8 MiB in all).
    pub const GENERATION: usize = 65_536;

    fn global() -> &'static Verified {
        static VERIFIED: std::sync::OnceLock<Verified> = std::sync::OnceLock::new();
        VERIFIED.get_or_init(Verified::default)
    }

    fn digest(public_key: &[u8], data: &[u8], signature: &[u8]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [public_key, data, signature] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn knows(&self, digest: &[u8; 32]) -> bool {
        let g = self.generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g[0].contains(digest) || g[1].contains(digest)
    }

    fn remember(&self, digest: [u8; 32]) {
        let mut g = self.generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if g[0].len() >= Self::GENERATION {
            g[1] = std::mem::take(&mut g[0]);
        }
        g[0].insert(digest);
    }
}

fn put(buf: &mut Vec<u8>, field: &[u8]) {
    buf.extend_from_slice(&(field.len() as u32).to_be_bytes());
    buf.extend_from_slice(field);
}

/// The bytes an origin signs: every field set at the origin, none of those a relay rewrites
/// (`age`, `hop_count`, `destinations`), in a fixed, length-prefixed layout. A cancel's
/// reason, a key and a target (protocol 4) follow only when present, so an envelope without
/// them signs the same bytes as before.
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
        Body::Cancel { reason, replaced_by } => {
            b.push(2);
            put(&mut b, reason.as_bytes());
            match replaced_by {
                None => b.push(0),
                Some(id) => {
                    b.push(1);
                    b.extend_from_slice(&id.0);
                }
            }
        }
    }
    if e.key.is_some() || e.supersedes.is_some() {
        b.push(0xff);
        put(&mut b, e.key.as_deref().unwrap_or("").as_bytes());
        match &e.supersedes {
            None => b.push(0),
            Some(t) => {
                b.push(1);
                put(&mut b, t.origin.as_str().as_bytes());
                b.extend_from_slice(&t.id.0);
            }
        }
    }
    b
}

/// The bytes a node signs in its advert: every field but its age (which every hop rewrites)
/// and the signature itself, in a fixed layout of their own like an envelope's, so that what
/// is signed never depends on how a protobuf encoder lays the advert out (a field added to the
/// wire format later cannot make an honest advert look forged).
///
/// ```text
/// "relaymesh advert v2\0" node role seq lifetime
///   links: count, each (neighbour medium rtt loss_ppm bandwidth up)
///   groups: count, each name   subscriptions: count, each pattern   certificate
/// ```
/// Strings and the certificate are length-prefixed (u32 BE); numbers are big-endian, times in
/// microseconds.
pub fn advert_signed_bytes(a: &Advert) -> Vec<u8> {
    let mut b = Vec::with_capacity(256 + a.certificate.len() + 48 * a.links.len());
    b.extend_from_slice(b"relaymesh advert v2\0");
    put(&mut b, a.node.as_str().as_bytes());
    put(&mut b, a.role.as_str().as_bytes());
    b.extend_from_slice(&a.seq.to_be_bytes());
    b.extend_from_slice(&(a.lifetime.as_micros() as u64).to_be_bytes());
    b.extend_from_slice(&(a.links.len() as u32).to_be_bytes());
    for l in &a.links {
        put(&mut b, l.neighbour.as_str().as_bytes());
        put(&mut b, l.medium.as_str().as_bytes());
        b.extend_from_slice(&(l.rtt.as_micros() as u64).to_be_bytes());
        b.extend_from_slice(&l.loss_ppm.to_be_bytes());
        b.extend_from_slice(&l.bandwidth_bps.to_be_bytes());
        b.push(u8::from(l.up));
    }
    b.extend_from_slice(&(a.groups.len() as u32).to_be_bytes());
    for g in &a.groups {
        put(&mut b, g.as_bytes());
    }
    b.extend_from_slice(&(a.subscriptions.len() as u32).to_be_bytes());
    for p in &a.subscriptions {
        put(&mut b, p.as_str().as_bytes());
    }
    put(&mut b, &a.certificate);
    // Added with areas; an advert without either signs the same bytes as before them.
    if !a.area.is_empty() || !a.summary.is_empty() {
        b.extend_from_slice(b"area\0");
        put(&mut b, a.area.as_bytes());
        put(&mut b, &a.summary);
    }
    b
}

#[cfg(test)]
pub(crate) mod test_key {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    /// A signing key and nothing else: the batch seals need no certificates.
    #[derive(Debug)]
    pub(crate) struct Key(Ed25519KeyPair);

    impl Key {
        pub(crate) fn new(seed: u8) -> Key {
            Key(Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap())
        }
        pub(crate) fn public(&self) -> Vec<u8> {
            self.0.public_key().as_ref().to_vec()
        }
    }

    impl Trust for Key {
        fn certificate(&self) -> Bytes {
            Bytes::new()
        }
        fn sign(&self, data: &[u8]) -> Bytes {
            Bytes::copy_from_slice(self.0.sign(data).as_ref())
        }
        fn check_certificate(&self, _: &[u8]) -> Result<Credential, String> {
            Err("no certificates here".into())
        }
        fn check_revocations(&self, _: &[u8]) -> Result<Revocations, String> {
            Err("no revocations here".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_key::Key;
    use super::*;
    use crate::types::{Address, MessageId, Precedence, TrafficStatus};
    use std::time::Duration;

    #[test]
    fn a_remembered_signature_vouches_for_exactly_what_was_checked() {
        let (k, other) = (Key::new(41), Key::new(42));
        let data = b"situation report 17".to_vec();
        let sig = k.sign(&data);
        for _ in 0..2 {
            assert!(verify(&k.public(), &data, &sig), "good, then remembered");
            assert!(!verify(&other.public(), &data, &sig), "another key");
            assert!(!verify(&k.public(), b"situation report 18", &sig), "other bytes");
            let mut bad = sig.to_vec();
            bad[0] ^= 1;
            assert!(!verify(&k.public(), &data, &bad), "another signature");
            // The same bytes split differently between the parts are another entry.
            let mut shifted = data.clone();
            shifted.extend_from_slice(&sig[..1]);
            assert!(!verify(&k.public(), &shifted, &sig[1..]));
        }
    }

    fn envelope(i: u8) -> Envelope {
        Envelope {
            id: MessageId([i; 16]),
            origin: NodeId::new("team-01").unwrap(),
            to: Address::parse("node:county-hq").unwrap(),
            precedence: Precedence::Routine,
            lifetime: Duration::from_secs(60),
            content_type: "text/plain".into(),
            payload: Bytes::from(vec![i; 40]),
            receipt: true,
            body: Body::Data,
            status: crate::types::TrafficStatus::Actual,
            created: crate::types::Time(u64::from(i)),
            age: Duration::ZERO,
            hop_count: 0,
            destinations: vec![NodeId::new("county-hq").unwrap()],
            signature: Bytes::new(),
            key: None,
            supersedes: None,
        }
    }

    fn batch(n: usize) -> Vec<Envelope> {
        let mut envs: Vec<Envelope> = (0..n).map(|i| envelope(i as u8)).collect();
        seal_batch(&Key::new(1), &mut envs);
        envs
    }

    fn authentic(key: &Key, env: &Envelope) -> bool {
        claim(env).is_some_and(|c| verify_claim(&key.public(), &c))
    }

    #[test]
    fn every_envelope_of_every_batch_size_proves_its_origin_alone() {
        let key = Key::new(1);
        for n in 1..=2 * MAX_BATCH + 3 {
            let envs = batch(n);
            for (i, e) in envs.iter().enumerate() {
                assert!(authentic(&key, e), "batch of {n}, envelope {i}");
                let chunk = (i / MAX_BATCH) * MAX_BATCH;
                let size = (n - chunk).min(MAX_BATCH);
                let levels = usize::BITS - (size - 1).leading_zeros();
                let longest = SEAL_HEADER + HASH * levels as usize;
                assert!(e.signature.len() <= longest, "batch of {n}: seal of {i} too long");
            }
            // One signature per chunk of MAX_BATCH.
            let signatures: BTreeSet<&[u8]> = envs.iter().map(|e| &e.signature[..64]).collect();
            assert_eq!(signatures.len(), n.div_ceil(MAX_BATCH), "batch of {n}");
        }
        assert_eq!(batch(1)[0].signature.len(), SEAL_HEADER, "a batch of one has no path");
        let longest = batch(MAX_BATCH).iter().map(|e| e.signature.len()).max();
        assert_eq!(longest, Some(MAX_SEAL), "the wire's limit fits a full batch");
    }

    #[test]
    fn altering_any_signed_field_or_the_seal_breaks_the_proof() {
        let key = Key::new(1);
        let envs = batch(11);
        type Alteration = (&'static str, fn(&mut Envelope));
        let alterations: Vec<Alteration> = vec![
            ("payload", |e| e.payload = Bytes::from_static(b"evacuate north")),
            ("precedence", |e| e.precedence = Precedence::Flash),
            ("address", |e| e.to = Address::parse("group:all").unwrap()),
            ("origin", |e| e.origin = NodeId::new("county-hq").unwrap()),
            ("lifetime", |e| e.lifetime = Duration::from_secs(86_400)),
            ("status", |e| e.status = TrafficStatus::Exercise),
            ("path", |e| {
                let mut s = e.signature.to_vec();
                let last = s.len() - 1;
                s[last] ^= 1;
                e.signature = s.into();
            }),
            ("index", |e| {
                let mut s = e.signature.to_vec();
                s[67] ^= 1;
                e.signature = s.into();
            }),
            ("signature", |e| {
                let mut s = e.signature.to_vec();
                s[0] ^= 1;
                e.signature = s.into();
            }),
        ];
        for (what, alter) in alterations {
            for (i, e) in envs.iter().enumerate() {
                let mut e = e.clone();
                alter(&mut e);
                assert!(!authentic(&key, &e), "{what} altered in envelope {i} still proves");
            }
        }
        // Hop fields are not signed: relays rewrite them.
        let mut e = envs[3].clone();
        e.age = Duration::from_secs(5);
        e.hop_count = 4;
        e.destinations.clear();
        assert!(authentic(&key, &e));
        // Another key, and another envelope's seal, do not prove it.
        assert!(!authentic(&Key::new(2), &envs[3]));
        let mut swapped = envs[3].clone();
        swapped.signature = envs[4].signature.clone();
        assert!(!authentic(&key, &swapped));
    }

    #[test]
    fn a_plain_signature_from_before_batch_seals_still_verifies() {
        let key = Key::new(1);
        let mut e = envelope(3);
        e.signature = key.sign(&envelope_signed_bytes(&e));
        let mut cache = SealCache::default();
        assert!(cache.check_envelope(&key.public(), &e));
        e.payload = Bytes::from_static(b"altered");
        assert!(!cache.check_envelope(&key.public(), &e));
        assert!(!cache.check_envelope(&Key::new(2).public(), &batch(1)[0]));
        assert!(cache.check_envelope(&key.public(), &batch(1)[0]));
    }

    #[test]
    fn malformed_seals_are_refused_without_panicking() {
        let e = &batch(5)[2];
        let seal = e.signature.to_vec();
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            seal[..64].to_vec(),
            seal[..seal.len() - 1].to_vec(),
            [seal.clone(), vec![0; HASH]].concat(),
            seal[..SEAL_HEADER].to_vec(),
        ];
        for (count, index) in [(0u16, 0u16), (5, 5), (u16::MAX, 0), (1, 0), (2, 1)] {
            let mut s = seal.clone();
            s[64..66].copy_from_slice(&count.to_be_bytes());
            s[66..68].copy_from_slice(&index.to_be_bytes());
            cases.push(s);
        }
        for (i, s) in cases.into_iter().enumerate() {
            let mut bad = e.clone();
            bad.signature = s.into();
            let proved = claim(&bad).is_some_and(|c| verify_claim(&Key::new(1).public(), &c));
            assert!(!proved, "malformed seal {i} proved the envelope");
        }
    }

    #[test]
    fn the_cache_checks_one_signature_per_batch_and_never_a_wrong_one() {
        let key = Key::new(1);
        let origin = NodeId::new("team-01").unwrap();
        let envs = batch(MAX_BATCH);
        let mut cache = SealCache::default();
        for e in &envs {
            assert!(cache.check(&origin, &key.public(), &claim(e).unwrap()));
        }
        assert_eq!(cache.order.len(), 1, "one batch, one entry");
        // The batch size is signed: one changed on the way is checked, not taken from the
        // cache, even where the same root comes out (index 0 of 16 as index 0 of 9).
        let mut resized = claim(&envs[0]).unwrap();
        resized.count = 9;
        let mut seal = envs[0].signature.to_vec();
        seal[64..66].copy_from_slice(&9u16.to_be_bytes());
        let mut e = envs[0].clone();
        e.signature = seal.into();
        assert_eq!(claim(&e).map(|c| c.root), Some(resized.root), "same root, other size");
        assert!(!cache.check_envelope(&key.public(), &e), "a resized batch came from the cache");
        // Nor is a batch checked under another key taken as checked under this one.
        assert!(!cache.check(&origin, &Key::new(2).public(), &claim(&envs[1]).unwrap()));
        // A forged envelope whose seal was copied from the batch computes another root.
        let mut forged = envs[0].clone();
        forged.payload = Bytes::from_static(b"stand down");
        assert!(!cache.check(&origin, &key.public(), &claim(&forged).unwrap()));
        // The batch's root with another signature is checked, not taken from the cache.
        let mut c = claim(&envs[1]).unwrap();
        c.signature[10] ^= 1;
        assert!(!cache.check(&origin, &key.public(), &c));
        // Bounded, and forgetting an origin forgets its batches.
        for i in 0..SealCache::CAPACITY + 10 {
            let mut e = envelope(0);
            e.created = crate::types::Time(1_000 + i as u64);
            seal_envelope(&key, &mut e);
            assert!(cache.check(&origin, &key.public(), &claim(&e).unwrap()));
        }
        assert_eq!(cache.checked.len(), SealCache::CAPACITY);
        assert_eq!(cache.order.len(), SealCache::CAPACITY);
        cache.forget(&origin);
        assert!(cache.checked.is_empty() && cache.order.is_empty());
    }

    #[test]
    fn advert_signatures_cover_every_field_but_the_age() {
        use crate::frame::AdvertLink;
        use crate::types::{Medium, TopicPattern};
        let n = |s: &str| NodeId::new(s).unwrap();
        let advert = Advert {
            node: n("township-02"),
            role: Role::Township,
            seq: 7,
            lifetime: Duration::from_secs(1800),
            age: Duration::from_secs(3),
            links: vec![AdvertLink {
                neighbour: n("relay-1"),
                medium: Medium::Wireless,
                rtt: Duration::from_millis(12),
                loss_ppm: 1000,
                bandwidth_bps: 10_000_000,
                up: true,
            }],
            groups: vec!["medical".into()],
            subscriptions: vec![TopicPattern::new("alerts/#").unwrap()],
            certificate: Bytes::from_static(b"cert"),
            signature: Bytes::from_static(b"sig"),
            previous_certificates: vec![],
            area: String::new(),
            summary: Bytes::new(),
        };
        let signed = advert_signed_bytes(&advert);
        let same = |a: &Advert| advert_signed_bytes(a) == signed;
        assert!(same(&Advert { age: Duration::from_secs(99), ..advert.clone() }));
        assert!(same(&Advert { signature: Bytes::new(), ..advert.clone() }));
        // Previous certificates prove themselves (the CA signed each): not covered.
        assert!(same(&Advert {
            previous_certificates: vec![Bytes::from_static(b"old")],
            ..advert.clone()
        }));
        let mut changed: Vec<Advert> = vec![
            Advert { node: n("township-03"), ..advert.clone() },
            Advert { role: Role::Field, ..advert.clone() },
            Advert { seq: 8, ..advert.clone() },
            Advert { lifetime: Duration::from_secs(60), ..advert.clone() },
            Advert { links: vec![], ..advert.clone() },
            Advert { groups: vec![], ..advert.clone() },
            Advert { groups: vec!["medica".into(), "l".into()], ..advert.clone() },
            Advert { subscriptions: vec![], ..advert.clone() },
            Advert { certificate: Bytes::from_static(b"other"), ..advert.clone() },
        ];
        for edit in [
            |l: &mut AdvertLink| l.neighbour = NodeId::new("relay-2").unwrap(),
            |l: &mut AdvertLink| l.medium = Medium::Satellite,
            |l: &mut AdvertLink| l.rtt = Duration::from_millis(13),
            |l: &mut AdvertLink| l.loss_ppm = 0,
            |l: &mut AdvertLink| l.bandwidth_bps = 1,
            |l: &mut AdvertLink| l.up = false,
        ] {
            let mut a = advert.clone();
            edit(&mut a.links[0]);
            changed.push(a);
        }
        for (i, a) in changed.iter().enumerate() {
            assert!(!same(a), "change {i} is not covered by the signature");
        }
    }
}
