//! Compact offers (`relaymesh::wire::compact`), both ways.
//!
//! Input: `[mode] rest...`.
//! - mode even: `rest` is an offer stream in two chunks (its first byte says where it splits
//!   and which dialect the decoder announced), fed to a decoder: it must never panic, whatever table references, batch seals, paths and
//!   deltas it holds; it stops at the first error, as the shell does.
//! - mode odd: `rest` describes envelopes (origin, destinations, address, batch sizes, which
//!   envelopes of each batch cross, in which order, and how they are grouped into writes);
//!   they are sealed, encoded on one stream in the dialect `(mode >> 1) & 3` picks (0
//!   `compact-v1`, 1 `compact-v2`, 2 and 3 `compact-v3`) and decoded: what comes out must
//!   equal what went in, seals included.
#![no_main]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use relaymesh::core::frame::Frame;
use relaymesh::core::trust::{self, Credential, Revocations, Trust};
use relaymesh::core::types::Body;
use relaymesh::core::{Address, Envelope, MessageId, NodeId, Precedence, Time, TrafficStatus};
use relaymesh::wire::{self, FrameDecoder, Incoming, compact};

/// Signs with a constant: the codec never checks signatures, only carries them.
#[derive(Debug)]
struct Signer(u8);

impl Trust for Signer {
    fn certificate(&self) -> Bytes {
        Bytes::new()
    }
    fn sign(&self, data: &[u8]) -> Bytes {
        let mut s = vec![self.0; 64];
        s[0] = data.len() as u8;
        Bytes::from(s)
    }
    fn check_certificate(&self, _: &[u8]) -> Result<Credential, String> {
        Err("none".into())
    }
    fn check_revocations(&self, _: &[u8]) -> Result<Revocations, String> {
        Err("none".into())
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

fn node(i: u8) -> NodeId {
    match NodeId::new(&format!("node-{}", i % 24)) {
        Ok(n) => n,
        Err(e) => panic!("{e}"),
    }
}

fn decode_stream(data: &[u8]) {
    let Some((&split, stream)) = data.split_first() else { return };
    let at = usize::from(split).min(stream.len());
    // A decoder of each dialect: older ones refuse what they did not announce.
    let dialect = [compact::Dialect::V1, compact::Dialect::V2, compact::Dialect::V3]
        [usize::from(split / 64) % 3];
    let mut d = FrameDecoder::with_compact(wire::DEFAULT_MAX_FRAME, dialect);
    for chunk in [&stream[..at], &stream[at..]] {
        d.extend(chunk);
        loop {
            match d.next_frame() {
                Ok(Some(Incoming::Frame(f))) => drop(format!("{f:?}")),
                Ok(Some(Incoming::Hello(_))) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

fn round_trip(data: &[u8], dialect: compact::Dialect) {
    let mut input = Input(data);
    let mut offers = Vec::new();
    let mut id = 0u32;
    let mut offer = 0u64;
    // Up to 12 batches.
    for b in 0..(input.byte() % 12) {
        let origin_byte = input.byte();
        let origin = node(origin_byte);
        let count = usize::from(input.byte() % 20) + 1;
        let spread = input.byte();
        let mut envs: Vec<Envelope> = (0..count)
            .map(|i| {
                id += 1;
                // Sorted and without repeats, as every envelope in a node is.
                let mut dests: Vec<NodeId> = (0..1 + (spread >> 4) % 3)
                    .map(|k| node(spread.wrapping_add(k).wrapping_add(i as u8)))
                    .collect();
                dests.sort();
                dests.dedup();
                let to = if spread & 1 == 0 {
                    Address::Node(dests[0].clone())
                } else {
                    Address::parse("group:all").unwrap_or(Address::Node(dests[0].clone()))
                };
                // Numbered as nodes number them (a counter, then the origin's own bytes), now
                // and then far off, or one of another numbering.
                let mut raw = [origin_byte; 16];
                let n = if spread & 16 == 0 { u64::from(id) } else { u64::from(id) << 33 };
                raw[..8].copy_from_slice(&n.to_le_bytes());
                if spread & 32 != 0 {
                    raw[15] ^= i as u8;
                }
                Envelope {
                    id: MessageId(raw),
                    origin: origin.clone(),
                    to,
                    precedence: Precedence::DESCENDING[usize::from(spread >> 6)],
                    lifetime: Duration::from_secs(60 * u64::from(1 + (spread & 3))),
                    content_type: if spread & 2 == 0 { "text/plain".into() } else { "a/b".into() },
                    payload: Bytes::from(vec![b; usize::from(spread % 7)]),
                    receipt: spread & 4 != 0,
                    body: Body::Data,
                    status: TrafficStatus::Actual,
                    created: Time(1_000_000 + u64::from(id) * u64::from(spread)),
                    // Departures together, apart, or running backwards; hop counts that change.
                    age: Duration::from_micros(
                        u64::from(spread) * 3 + (i as u64 * u64::from(spread & 3) * 1000),
                    ),
                    hop_count: u32::from(spread % 5) + u32::from(spread & 128 != 0) * (i as u32 % 2),
                    destinations: dests,
                    signature: Bytes::new(),
                    key: None,
                    supersedes: None,
                }
            })
            .collect();
        if spread & 8 == 0 {
            trust::seal_batch(&Signer(b), &mut envs);
        }
        // Which of the batch's envelopes cross, and in what order.
        let keep = input.byte();
        let reverse = input.byte() & 1 == 1;
        let mut chosen: Vec<Envelope> = envs
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep == 0 || keep & (1 << (i % 8)) != 0)
            .map(|(_, e)| e)
            .collect();
        if reverse {
            chosen.reverse();
        }
        for e in chosen {
            offer += u64::from(input.byte() % 3) + 1;
            offers.push(Frame::Offer { offer, envelope: e });
        }
    }
    // Interleave: rotate by an input-chosen amount, then write in input-sized groups.
    if !offers.is_empty() {
        let r = usize::from(input.byte()) % offers.len();
        offers.rotate_left(r);
    }
    let mut enc = compact::OfferEncoder::new(dialect);
    let mut bytes = BytesMut::new();
    let mut rest = &offers[..];
    while !rest.is_empty() {
        let n = (usize::from(input.byte() % 9) + 1).min(rest.len());
        enc.encode(&rest[..n], &mut bytes);
        rest = &rest[n..];
    }
    let mut d = FrameDecoder::with_compact(wire::DEFAULT_MAX_FRAME, compact::Dialect::NEWEST);
    d.extend(&bytes);
    let mut got = Vec::new();
    loop {
        match d.next_frame() {
            Ok(Some(Incoming::Frame(f))) => got.push(f),
            Ok(Some(Incoming::Hello(h))) => panic!("a hello came out: {h:?}"),
            Ok(None) => break,
            Err(e) => panic!("what the encoder wrote does not decode: {e}"),
        }
    }
    assert_eq!(got.len(), offers.len());
    for (a, b) in got.iter().zip(&offers) {
        assert_eq!(a, b, "an offer came out different");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        decode_stream(rest)
    } else {
        let dialect = match (mode >> 1) & 3 {
            0 => compact::Dialect::V1,
            1 => compact::Dialect::V2,
            _ => compact::Dialect::V3,
        };
        round_trip(rest, dialect)
    }
});
