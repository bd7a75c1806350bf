use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::{Rng, RngCore, SeedableRng};

use super::*;
use crate::frame::{CustodyCode, CustodyResult};
use crate::types::{
    Address, Body, Envelope, MessageId, Outcome, Precedence, Report, Time, TrafficStatus,
};

fn sample_envelope() -> Envelope {
    Envelope {
        id: MessageId([7; 16]),
        origin: NodeId::new("county-hq").unwrap(),
        to: Address::parse("group:role:township").unwrap(),
        precedence: Precedence::Flash,
        lifetime: Duration::from_secs(3600),
        content_type: "text/plain".into(),
        payload: Bytes::from_static(b"evacuate sector 4"),
        receipt: true,
        body: Body::Data,
        status: TrafficStatus::Exercise,
        created: Time(1_700_000_000_000_000),
        age: Duration::from_millis(320),
        hop_count: 2,
        destinations: vec![
            NodeId::new("township-01").unwrap(),
            NodeId::new("township-02").unwrap(),
        ],
        signature: Bytes::from_static(&[1; 64]),
        key: None,
        supersedes: None,
    }
}

fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Incoming>, WireError> {
    let mut d = FrameDecoder::new(max);
    d.extend(bytes);
    let mut out = Vec::new();
    while let Some(f) = d.next_frame()? {
        out.push(f);
    }
    Ok(out)
}

#[test]
fn frames_round_trip_through_the_stream_codec() {
    let report = Envelope {
        body: Body::Report(Report {
            of: MessageId([9; 16]),
            outcome: Outcome::Expired,
            at_node: NodeId::new("relay-2").unwrap(),
            age: Duration::from_secs(5),
            reason: "lifetime ended while held".into(),
            destinations: vec![NodeId::new("township-01").unwrap()],
        }),
        ..sample_envelope()
    };
    let frames = vec![
        Frame::Offer { offer: 1, envelope: sample_envelope() },
        Frame::Offer { offer: 2, envelope: report },
        Frame::Custody(vec![CustodyResult {
            offer: 2,
            id: MessageId([3; 16]),
            code: CustodyCode::Busy,
            reason: "store near full".into(),
        }]),
        Frame::LsdbSummary { area: "north".into(), held: vec![(NodeId::new("a").unwrap(), 4)] },
    ];
    let mut buf = BytesMut::new();
    for f in &frames {
        encode_frame(f, &mut buf);
    }
    // Feed the bytes one at a time: frames must come out whole and in order.
    let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut got = Vec::new();
    for b in buf.iter() {
        d.extend(&[*b]);
        while let Some(Incoming::Frame(f)) = d.next_frame().unwrap() {
            got.push(f);
        }
    }
    assert_eq!(got, frames);
}

#[test]
fn hello_round_trips() {
    let hello = Hello {
        version: PROTOCOL_VERSION,
        node: NodeId::new("township-03").unwrap(),
        role: Role::Township,
        capabilities: vec!["lsdb".into()],
        medium: Medium::Satellite,
    };
    let mut buf = BytesMut::new();
    encode_hello(&hello, &mut buf);
    match decode_all(&buf, DEFAULT_MAX_FRAME).unwrap().pop() {
        Some(Incoming::Hello(h)) => assert_eq!(h, hello),
        other => panic!("expected a hello, got {other:?}"),
    }
}

#[test]
fn oversized_frames_are_refused_before_they_are_buffered() {
    let mut buf = BytesMut::new();
    prost::encoding::encode_varint(10_000_000, &mut buf);
    let err = decode_all(&buf, 1024).unwrap_err();
    assert_eq!(err, WireError::Oversized { size: 10_000_000, limit: 1024 });
    assert_eq!(err.code(), codes::OVERSIZED);
}

#[test]
fn invalid_values_are_errors() {
    let check = |mutate: fn(&mut pb::Envelope), what: &str| {
        let mut e = convert::envelope_to_pb(&sample_envelope());
        mutate(&mut e);
        let err = convert::envelope_from_pb(e).unwrap_err();
        assert!(err.to_string().contains(what), "{err} should mention {what}");
    };
    check(|e| e.id = Bytes::from_static(b"short"), "envelope id");
    check(|e| e.origin = "Not A Node".into(), "envelope origin");
    check(|e| e.to = "somewhere".into(), "envelope address");
    check(|e| e.precedence = 42, "precedence");
    check(|e| e.kind = pb::Kind::Report as i32, "report kind");
    check(|e| e.destinations = vec!["bad id".into()], "destination");
    check(|e| e.content_type = "x".repeat(1000), "content type");
}

#[test]
fn an_empty_frame_is_refused() {
    let mut buf = BytesMut::new();
    prost::encoding::encode_varint(0, &mut buf);
    assert!(decode_all(&buf, 1024).is_err());
}

#[test]
fn random_bytes_never_panic_the_decoder() {
    let seed = 0x5eed_u64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut valid = BytesMut::new();
    encode_frame(&Frame::Offer { offer: 1, envelope: sample_envelope() }, &mut valid);
    for round in 0..20_000 {
        let mut bytes = if round % 2 == 0 {
            let mut b = vec![0u8; rng.random_range(0..512)];
            rng.fill_bytes(&mut b);
            b
        } else {
            // Valid frames with a few bytes flipped exercise the deeper parsing paths.
            let mut b = valid.to_vec();
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            b
        };
        if round % 7 == 0 {
            bytes.truncate(rng.random_range(0..=bytes.len()));
        }
        let _ = decode_all(&bytes, 4096);
        let _ = decode_datagram(Bytes::from(bytes));
    }
}

#[test]
fn records_round_trip() {
    let stored = StoredMessage {
        envelope: sample_envelope(),
        received_at: Time(42),
        from: Some(NodeId::new("relay-1").unwrap()),
    };
    assert_eq!(decode_stored(&encode_stored(&stored)).unwrap(), stored);
    let local = StoredMessage { from: None, ..stored };
    assert_eq!(decode_stored(&encode_stored(&local)).unwrap(), local);
    assert!(decode_stored(b"\xff\xff\xff").is_err());
}

#[test]
fn signed_bytes_ignore_the_mutable_fields() {
    // What origins sign and every node verifies (there is no second definition to drift).
    use crate::trust::envelope_signed_bytes as signed_bytes;
    let a = sample_envelope();
    let mut b = a.clone();
    b.age = Duration::from_secs(99);
    b.hop_count = 9;
    b.destinations.pop();
    b.signature = Bytes::new();
    assert_eq!(signed_bytes(&a), signed_bytes(&b));
    b.payload = Bytes::from_static(b"evacuate sector 5");
    assert_ne!(signed_bytes(&a), signed_bytes(&b));
}

#[test]
fn acceptances_travel_as_runs_and_come_back_in_order() {
    use crate::frame::Accepted;
    let a = |offer: u64, b: u8| Accepted { offer, fingerprint: [b, b.wrapping_mul(3)] };
    // Runs, gaps, a step back and a wrap around the offer numbers.
    let list =
        vec![a(1, 1), a(2, 2), a(3, 3), a(10, 4), a(11, 5), a(7, 6), a(u64::MAX, 7), a(0, 8)];
    let frame = Frame::Accepted(list.clone());
    let bytes = encode_datagram(&frame);
    assert_eq!(decode_datagram(bytes.clone()).unwrap(), frame);
    // Two bytes an acceptance and a few a run, against a whole id and more for `Custody`.
    let steady: Vec<Accepted> = (1000..1064).map(|o| a(o, o as u8)).collect();
    let compact = encode_datagram(&Frame::Accepted(steady.clone())).len();
    let plain = encode_datagram(&Frame::Custody(
        steady
            .iter()
            .map(|x| CustodyResult {
                offer: x.offer,
                id: MessageId([x.fingerprint[0]; 16]),
                code: CustodyCode::Accepted,
                reason: String::new(),
            })
            .collect(),
    ))
    .len();
    assert!(compact <= 64 * 2 + 16, "{compact} bytes for 64 acceptances (plain {plain})");
    assert!(plain >= 64 * 20, "plain {plain}");

    // Malformed: runs and lengths that disagree, an empty run, fingerprints missing.
    let pb_frame = |starts: Vec<i64>, lengths: Vec<u64>, prints: usize| {
        let a = pb::Accepted { starts, lengths, fingerprints: vec![0; prints].into() };
        pb::Frame { kind: Some(pb::frame::Kind::Accepted(a)) }
    };
    for (f, what) in [
        (pb_frame(vec![1, 2], vec![1], 2), "2 runs with 1 lengths"),
        (pb_frame(vec![1], vec![0], 0), "0 offers"),
        (pb_frame(vec![1], vec![3], 4), "3 offers, 4 fingerprint bytes"),
        (pb_frame(vec![1], vec![u64::MAX], 0), "fingerprint bytes"),
    ] {
        let e = convert::frame_from_pb(f).unwrap_err().to_string();
        assert!(e.contains(what), "{e} does not say {what:?}");
    }
}

#[test]
fn an_advert_carries_its_previous_certificates_and_too_many_are_refused() {
    use crate::frame::Advert;
    let mut advert = Advert {
        node: NodeId::new("county-hq").unwrap(),
        role: crate::types::Role::Command,
        seq: 9,
        lifetime: Duration::from_secs(1800),
        age: Duration::ZERO,
        links: vec![],
        groups: vec![],
        subscriptions: vec![],
        certificate: Bytes::from_static(b"current"),
        signature: Bytes::from_static(&[2; 64]),
        previous_certificates: vec![Bytes::from_static(b"old"), Bytes::from_static(b"older")],
        area: String::new(),
        summary: Bytes::new(),
    };
    assert_eq!(decode_advert(&encode_advert(&advert)).unwrap(), advert);
    advert.previous_certificates =
        vec![Bytes::from_static(b"c"); crate::trust::MAX_PREVIOUS_KEYS + 1];
    let err = decode_advert(&encode_advert(&advert)).unwrap_err();
    assert!(err.to_string().contains("previous certificates"), "{err}");
    advert.previous_certificates = vec![Bytes::from(vec![0; 9000])];
    assert!(decode_advert(&encode_advert(&advert)).is_err());
}

#[test]
fn keys_targets_and_cancels_round_trip_and_are_signed() {
    use crate::trust::envelope_signed_bytes;
    use crate::types::Supersedes;
    let plain = sample_envelope();
    let target = Supersedes { origin: NodeId::new("county-hq").unwrap(), id: MessageId([5; 16]) };
    let keyed = Envelope { key: Some("pos/team-07".into()), ..sample_envelope() };
    let replacement = Envelope { supersedes: Some(target.clone()), ..sample_envelope() };
    let cancel = Envelope {
        body: Body::Cancel { reason: "wrong sector".into(), replaced_by: None },
        supersedes: Some(target.clone()),
        payload: Bytes::new(),
        ..sample_envelope()
    };
    let notice = Envelope {
        body: Body::Cancel { reason: String::new(), replaced_by: Some(MessageId([6; 16])) },
        supersedes: Some(target),
        payload: Bytes::new(),
        ..sample_envelope()
    };
    let all = [&plain, &keyed, &replacement, &cancel, &notice];
    for e in all {
        let frame = Frame::Offer { offer: 1, envelope: e.clone() };
        let mut buf = BytesMut::new();
        encode_frame(&frame, &mut buf);
        match decode_all(&buf, DEFAULT_MAX_FRAME).unwrap().as_slice() {
            [Incoming::Frame(f)] => assert_eq!(f, &frame),
            other => panic!("{other:?}"),
        }
    }
    // Each signs different bytes, and a plain envelope signs what it always did.
    let signed: std::collections::BTreeSet<Vec<u8>> =
        all.iter().map(|e| envelope_signed_bytes(e)).collect();
    assert_eq!(signed.len(), all.len());
    // A cancel that names nothing, or a key that is not a path, does not decode.
    let mut pb_cancel = convert::envelope_to_pb(&cancel);
    pb_cancel.supersedes = None;
    assert!(convert::envelope_from_pb(pb_cancel).is_err());
    let mut pb_keyed = convert::envelope_to_pb(&keyed);
    pb_keyed.key = "pos/#".into();
    assert!(convert::envelope_from_pb(pb_keyed.clone()).is_err());
    pb_keyed.key = "k".repeat(129);
    assert!(convert::envelope_from_pb(pb_keyed).is_err());
}

#[test]
fn keyed_envelopes_cross_compact_offer_streams_and_targets_go_whole() {
    use crate::types::Supersedes;
    let mut enc = compact::OfferEncoder::new(compact::Dialect::NEWEST);
    let keyed = Envelope { key: Some("pos/team-07".into()), ..sample_envelope() };
    let target = Supersedes { origin: NodeId::new("county-hq").unwrap(), id: MessageId([5; 16]) };
    let replacement = Envelope { supersedes: Some(target), ..sample_envelope() };
    let frames = vec![
        Frame::Offer { offer: 1, envelope: keyed },
        Frame::Offer { offer: 2, envelope: replacement },
    ];
    let mut buf = BytesMut::new();
    enc.encode(&frames[..1], &mut buf);
    let compact_len = buf.len();
    enc.encode(&frames[1..], &mut buf);
    let mut plain = BytesMut::new();
    encode_frame(&frames[1], &mut plain);
    assert_eq!(buf.len() - compact_len, plain.len(), "a replacement goes as a plain frame");
    let mut dec = FrameDecoder::with_compact(DEFAULT_MAX_FRAME, compact::Dialect::NEWEST);
    dec.extend(&buf);
    let mut got = Vec::new();
    while let Some(Incoming::Frame(f)) = dec.next_frame().unwrap() {
        got.push(f);
    }
    assert_eq!(got, frames);
}

#[test]
fn a_border_advert_carries_its_area_summary_and_a_bad_one_is_refused() {
    use crate::frame::{Advert, AreaMember};
    use crate::types::{Role, TopicPattern};
    let members = vec![
        AreaMember {
            node: NodeId::new("north-hq").unwrap(),
            role: Role::Command,
            seq: 3,
            groups: vec!["medical".into()],
            subscriptions: vec![TopicPattern::new("alerts/#").unwrap()],
            costs: [Some(0); 5],
        },
        AreaMember {
            node: NodeId::new("north-t1").unwrap(),
            role: Role::Township,
            seq: 12,
            groups: vec![],
            subscriptions: vec![],
            // FLASH reaches it; satellite-only ROUTINE does not, until late.
            costs: [None, Some(40), Some(40), Some(9), Some(1_000_040)],
        },
    ];
    let summary = encode_area_summary(&members);
    assert_eq!(decode_area_summary(&summary).unwrap(), members);
    let mut advert = Advert {
        node: NodeId::new("north-hq").unwrap(),
        role: Role::Command,
        seq: 3,
        lifetime: Duration::from_secs(1800),
        age: Duration::ZERO,
        links: vec![],
        groups: vec![],
        subscriptions: vec![],
        certificate: Bytes::new(),
        signature: Bytes::new(),
        previous_certificates: vec![],
        area: "north".into(),
        summary,
    };
    assert!(advert.is_border());
    assert_eq!(decode_advert(&encode_advert(&advert)).unwrap(), advert);
    // A summary that is not one, or names a member by an invalid id, or an invalid area:
    // the advert does not decode.
    let zstd = |b: &[u8]| Bytes::from(zstd::bulk::compress(b, 3).unwrap());
    advert.summary = zstd(&[0x0a, 0x05, 0x0a, 0x03, b'B', b'A', b'D']);
    let err = decode_advert(&encode_advert(&advert)).unwrap_err();
    assert!(err.to_string().contains("area member"), "{err}");
    advert.summary = Bytes::from_static(&[0xff, 0xff]);
    let err = decode_advert(&encode_advert(&advert)).unwrap_err();
    assert!(err.to_string().contains("not zstd"), "{err}");
    // A bomb: 5 MiB of zeros compress to a few hundred bytes, and are refused unread.
    advert.summary = zstd(&vec![0; 5 << 20]);
    assert!(advert.summary.len() < 1000);
    let err = decode_advert(&encode_advert(&advert)).unwrap_err();
    assert!(err.to_string().contains("more than"), "{err}");
    advert.summary = Bytes::new();
    advert.area = "North Area".into();
    let err = decode_advert(&encode_advert(&advert)).unwrap_err();
    assert!(err.to_string().contains("area"), "{err}");
}
