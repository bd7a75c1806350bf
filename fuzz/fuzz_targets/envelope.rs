//! The envelope parser: protobuf bytes to domain values (`relaymesh::wire`), for a frame
//! (datagram form, no length prefix) and for the records the store keeps (held messages,
//! inbox, status, link-state adverts).
//!
//! Checks: never panics; whatever decodes re-encodes and decodes to the same value, and the
//! re-encoding is stable (encode . decode . encode == encode); the signed bytes of an envelope
//! ignore exactly the fields a relay may change.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use relaymesh::core::frame::Frame;
use relaymesh::wire;

/// `decode(encode(v)) == v` and `encode(decode(encode(v))) == encode(v)`.
fn round_trip<T: PartialEq + std::fmt::Debug, E: std::fmt::Display>(
    what: &str,
    value: &T,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<T, E>,
) {
    let bytes = encode(value);
    let again = match decode(&bytes) {
        Ok(v) => v,
        Err(e) => panic!("re-encoded {what} does not decode: {e}\n{value:?}"),
    };
    assert_eq!(&again, value, "{what} changed in a round trip");
    assert_eq!(encode(&again), bytes, "{what} re-encodes differently");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = wire::decode_datagram(Bytes::copy_from_slice(data)) {
        let _ = frame.kind();
        round_trip(
            "frame",
            &frame,
            |f| wire::encode_datagram(f).to_vec(),
            |b| wire::decode_datagram(Bytes::copy_from_slice(b)),
        );
        if let Frame::Offer { envelope, .. } = &frame {
            let signed = relaymesh::core::trust::envelope_signed_bytes(envelope);
            let mut relayed = envelope.clone();
            relayed.age += std::time::Duration::from_secs(1);
            relayed.hop_count = relayed.hop_count.wrapping_add(1);
            relayed.destinations.clear();
            relayed.signature = Bytes::from_static(b"other");
            assert_eq!(
                relaymesh::core::trust::envelope_signed_bytes(&relayed),
                signed,
                "signed bytes cover a relay's field"
            );
            let _ = envelope.weight();
        }
    }
    if let Ok(m) = wire::decode_stored(data) {
        round_trip("stored message", &m, wire::encode_stored, wire::decode_stored);
    }
    if let Ok(r) = wire::decode_inbox(data) {
        round_trip("inbox record", &r, wire::encode_inbox, wire::decode_inbox);
    }
    if let Ok(s) = wire::decode_status(data) {
        round_trip("status record", &s, wire::encode_status, wire::decode_status);
    }
    if let Ok(a) = wire::decode_advert(data) {
        round_trip("advert", &a, wire::encode_advert, wire::decode_advert);
    }
});
