//! The stream frame decoder (`relaymesh::wire::FrameDecoder`) fed a byte stream in arbitrary
//! chunks, as it is on a QUIC stream.
//!
//! Input: `[max and kind selector] [chunking seed] stream...`: the decoder of a control
//! stream, of an offer stream taking compact offers, or of one also taking compressed pieces.
//!
//! Checks: never panics; the result (frames, then at most one error, after which the shell
//! resets the stream) does not depend on how the stream was split; the decoder never holds
//! more than one maximal frame plus its prefix; every decoded frame re-encodes and decodes to
//! the same value.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use relaymesh::core::frame::Frame;
use relaymesh::wire::{self, FrameDecoder, Hello, Incoming, WireError};

#[derive(Debug, PartialEq)]
enum Got {
    Hello(Hello),
    Frame(Frame),
    Error(WireError),
}

const MAXES: [usize; 8] = [wire::DEFAULT_MAX_FRAME, 0, 1, 2, 16, 127, 128, 1000];

/// Decodes everything available; stops at the first error, as the shell does.
fn drain(d: &mut FrameDecoder, max: usize, out: &mut Vec<Got>) -> bool {
    loop {
        match d.next_frame() {
            Ok(Some(Incoming::Hello(h))) => out.push(Got::Hello(h)),
            Ok(Some(Incoming::Frame(f))) => out.push(Got::Frame(f)),
            Ok(None) => {
                // Held bytes are a partial prefix (< 10 bytes) or a partial frame whose
                // announced length is within the limit.
                assert!(
                    d.buffered() < max.saturating_add(10),
                    "decoder holds {} bytes with a limit of {max}",
                    d.buffered()
                );
                return true;
            }
            Err(e) => {
                let _ = e.code();
                let _ = e.to_string();
                out.push(Got::Error(e));
                return false;
            }
        }
    }
}

fn decode(stream: &[u8], max: usize, kind: u8, mut chunk: impl FnMut() -> usize) -> Vec<Got> {
    let mut d = match kind {
        0 => FrameDecoder::new(max),
        1 => FrameDecoder::with_compact(max, wire::compact::Dialect::NEWEST),
        _ => FrameDecoder::with_compressed(max, wire::compact::Dialect::NEWEST),
    };
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = chunk().clamp(1, rest.len());
        d.extend(&rest[..n]);
        rest = &rest[n..];
        if !drain(&mut d, max, &mut out) {
            break;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [sel, seed, stream @ ..] = data else { return };
    let max = MAXES[usize::from(*sel) % MAXES.len()];
    let kind = (*sel / MAXES.len() as u8) % 3;

    // Chunk sizes from a small xorshift seeded by the input: mostly tiny, sometimes large.
    let mut state = u32::from(*seed) | 0x100;
    let chunked = decode(stream, max, kind, || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        match state % 8 {
            0..=3 => 1 + (state >> 8) as usize % 4,
            4..=6 => 1 + (state >> 8) as usize % 64,
            _ => 1 + (state >> 8) as usize % 4096,
        }
    });
    let whole = decode(stream, max, kind, || usize::MAX);
    assert_eq!(chunked, whole, "the result depends on how the stream was split");

    for got in &whole {
        let mut buf = BytesMut::new();
        match got {
            Got::Hello(h) => wire::encode_hello(h, &mut buf),
            Got::Frame(f) => wire::encode_frame(f, &mut buf),
            Got::Error(_) => continue,
        }
        let mut d = FrameDecoder::new(usize::MAX);
        d.extend(&buf);
        let again = match d.next_frame() {
            Ok(Some(Incoming::Hello(h))) => Got::Hello(h),
            Ok(Some(Incoming::Frame(f))) => Got::Frame(f),
            Ok(None) => panic!("a re-encoded frame is incomplete: {got:?}"),
            Err(e) => panic!("a re-encoded frame does not decode: {e}: {got:?}"),
        };
        assert_eq!(&again, got, "the frame changed in a round trip");
        assert_eq!(d.buffered(), 0, "bytes left after a re-encoded frame");
    }
});
