//! What origin signatures cost per message: signing at the origin (alone or in a batch),
//! verifying at every node, and checking a certificate learnt from an advert.
//! `cargo bench --bench signatures`.

#![allow(clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use relaymesh::core::trust::{self, Trust};
use relaymesh::core::types::{Body, Envelope};
use relaymesh::core::{Address, MessageId, NodeId, Precedence, Role, Time, TrafficStatus};
use relaymesh::pki::PkiTrust;
use relaymesh::pki::{Ca, Identity, Validity};
use relaymesh::shell::clock::Clock;
use relaymesh::shell::tls::Credentials;
use relaymesh::shell::trust::pki_trust;
use rustls::pki_types::PrivateKeyDer;

fn node_trust() -> (PkiTrust, Bytes) {
    let validity = Validity::days_from(SystemTime::now(), 30);
    let ca = Ca::generate([3; 32], validity).expect("CA");
    let node = NodeId::new("team-01").expect("id");
    let cert = ca.issue(&node, Role::Field, [5; 32], validity).expect("certificate");
    let der = Bytes::copy_from_slice(cert.cert_der.as_ref());
    let creds = Credentials {
        ca: ca.cert_der.clone(),
        chain: vec![cert.cert_der],
        key: Arc::new(PrivateKeyDer::Pkcs8(cert.key_der)),
        identity: Identity { node, role: Role::Field },
        federated: Vec::new(),
    };
    (pki_trust(&creds, Clock::wall()).expect("trust"), der)
}

fn envelope(size: usize) -> Envelope {
    Envelope {
        id: MessageId([7; 16]),
        origin: NodeId::new("team-01").expect("id"),
        to: Address::parse("node:county-hq").expect("address"),
        precedence: Precedence::Routine,
        lifetime: Duration::from_secs(3600),
        content_type: "application/octet-stream".into(),
        payload: Bytes::from(vec![0x42; size]),
        receipt: true,
        body: Body::Data,
        status: TrafficStatus::Actual,
        created: Time(1),
        age: Duration::ZERO,
        hop_count: 0,
        destinations: vec![NodeId::new("county-hq").expect("id")],
        signature: Bytes::new(),
        key: None,
        supersedes: None,
    }
}

fn signatures(c: &mut Criterion) {
    let (trust, cert) = node_trust();
    let cred = trust.check_certificate(&cert).expect("credential");
    for size in [256usize, 16 * 1024] {
        let mut env = envelope(size);
        c.bench_function(&format!("sign envelope {size} B"), |b| {
            b.iter(|| trust::seal_envelope(&trust, &mut env))
        });
        let signed = env.clone();
        c.bench_function(&format!("verify envelope {size} B"), |b| {
            b.iter(|| {
                let claim = trust::claim(&signed).expect("well-formed seal");
                assert!(trust::verify_claim(&cred.public_key, &claim));
            })
        });
    }
    // A busy origin signs up to MAX_BATCH envelopes at once; a relay checks the batch's
    // signature once and each envelope's Merkle path.
    let n = trust::MAX_BATCH;
    let mut batch: Vec<Envelope> = (0..n)
        .map(|i| {
            let mut e = envelope(256);
            e.id = MessageId([i as u8; 16]);
            e
        })
        .collect();
    c.bench_function(&format!("sign {n} envelopes of 256 B as one batch"), |b| {
        b.iter(|| trust::seal_batch(&trust, &mut batch))
    });
    let origin = batch[0].origin.clone();
    c.bench_function(&format!("verify {n} envelopes of 256 B of one batch"), |b| {
        b.iter(|| {
            let mut cache = trust::SealCache::default();
            for e in &batch {
                let claim = trust::claim(e).expect("well-formed seal");
                assert!(cache.check(&origin, &cred.public_key, &claim));
            }
        })
    });
    c.bench_function("check certificate (CA signature, validity, identity)", |b| {
        b.iter(|| trust.check_certificate(&cert).expect("valid"))
    });
}

criterion_group!(benches, signatures);
criterion_main!(benches);
