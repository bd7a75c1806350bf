//! The wire protocol (`proto/relaymesh.proto`, package `relaymesh.v1`): framing and conversion
//! between the generated protobuf types and the core's domain types.
//!
//! This is the only module that sees the generated types. Everything leaving it is a parsed
//! domain value; anything that does not parse is a [`WireError`], never a panic.

pub mod compact;
pub mod compress;
mod convert;
pub mod objects;

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;

use crate::frame::{Frame, InboxRecord, StatusRecord, StoredMessage};
use crate::types::{Medium, NodeId, Role};

#[allow(clippy::all, missing_debug_implementations, unreachable_pub)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/relaymesh.v1.rs"));
}

/// Protocol version carried in `Hello`.
/// 2: origin seals cover batches of envelopes (`core::trust::seal_batch`); a node of version 1
/// would take them for forged and cut the sender off, so the two refuse each other at `Hello`.
/// 3: adverts are signed over a fixed layout (`core::trust::advert_signed_bytes`) instead of
/// their protobuf encoding, and membership travels in summaries; a version 2 node would take
/// every advert of a version 3 node for forged.
/// 4: envelopes may carry a latest-value key, name a message they cancel or replace, and be
/// cancels; their seals cover these (`core::trust::envelope_signed_bytes`), which a version 3
/// node would drop unread and so take such envelopes for forged.
pub const PROTOCOL_VERSION: u32 = 4;
/// TLS ALPN identifier of this protocol.
pub const ALPN: &[u8] = b"relaymesh/1";
/// Default limit on one frame's encoded size.
/// Announced in `Hello` by a node that takes a link-state advert without its certificate
/// when it holds that certificate already (and asks for the adverts again, with their
/// certificates, when it does not): each certificate then crosses a link once per connection,
/// not with every advert (`core::adverts`).
pub const LEAN_ADVERTS: &str = "lean-adverts-v1";

pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024 + 16 * 1024;

/// QUIC application error codes used when a stream or connection is closed.
pub mod codes {
    /// Normal shutdown.
    pub const CLOSE_NORMAL: u32 = 0;
    /// The peer's `Hello` was missing, malformed or did not match its certificate.
    pub const BAD_HELLO: u32 = 0x10;
    /// The peer speaks a protocol version we do not.
    pub const BAD_VERSION: u32 = 0x11;
    /// The peer is not the node this link was configured for.
    pub const WRONG_PEER: u32 = 0x12;
    /// A frame did not decode or was not a valid value.
    pub const MALFORMED: u32 = 0x20;
    /// A frame exceeded the size limit.
    pub const OVERSIZED: u32 = 0x21;
    /// A frame was of a kind not allowed on that stream.
    pub const UNEXPECTED: u32 = 0x22;
    /// The peer broke its resource limits.
    pub const ABUSE: u32 = 0x30;
    /// The peer's certificate was revoked.
    pub const REVOKED: u32 = 0x31;
}

/// Why bytes from a peer were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The frame is longer than the limit.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    Oversized { size: u64, limit: usize },
    /// The bytes are not a protobuf frame.
    #[error("undecodable frame: {0}")]
    Decode(String),
    /// The frame decoded but holds an invalid value.
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    /// A length prefix was longer than ten bytes.
    #[error("malformed length prefix")]
    BadLength,
}

impl WireError {
    /// The QUIC error code a stream carrying this error is reset with.
    pub fn code(&self) -> u32 {
        match self {
            WireError::Oversized { .. } => codes::OVERSIZED,
            _ => codes::MALFORMED,
        }
    }

    fn invalid(what: &'static str, why: impl std::fmt::Display) -> WireError {
        WireError::Invalid { what, why: why.to_string() }
    }
}

/// The first frame on a link's control stream, in each direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    pub node: NodeId,
    pub role: Role,
    pub capabilities: Vec<String>,
    pub medium: Medium,
}

/// Appends `frame`, length-prefixed, to `out`.
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    encode_pb(&convert::frame_to_pb(frame), out);
}

/// Appends `hello`, length-prefixed, to `out`.
pub fn encode_hello(hello: &Hello, out: &mut BytesMut) {
    let pb = pb::Frame { kind: Some(pb::frame::Kind::Hello(convert::hello_to_pb(hello))) };
    encode_pb(&pb, out);
}

fn encode_pb(frame: &pb::Frame, out: &mut BytesMut) {
    let len = frame.encoded_len();
    out.reserve(len + 10);
    prost::encoding::encode_varint(len as u64, out);
    // Encoding into a BytesMut only fails for lack of capacity, and it grows.
    let _ = frame.encode(out);
}

/// A frame without length prefix, for a QUIC datagram.
pub fn encode_datagram(frame: &Frame) -> Bytes {
    convert::frame_to_pb(frame).encode_to_vec().into()
}

/// Parses a datagram's frame.
pub fn decode_datagram(bytes: Bytes) -> Result<Frame, WireError> {
    let pb = pb::Frame::decode(bytes).map_err(|e| WireError::Decode(e.to_string()))?;
    convert::frame_from_pb(pb)
}

/// Either a `Hello` or any other frame, as read from a stream.
#[derive(Debug)]
pub enum Incoming {
    Hello(Hello),
    Frame(Frame),
}

/// Capacity an idle stream's buffers keep (see [`FrameDecoder::next_frame`]).
const IDLE_BUFFER: usize = 8 * 1024;

/// Splits a byte stream into frames, enforcing the size limit before buffering a frame.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max: usize,
    /// The stream's compact-offer tables, if this node announced `compact-v1`.
    compact: Option<compact::OfferDecoder>,
    /// Whether this node announced `zstd-v1` (takes compressed pieces).
    compressed: bool,
    /// The stream's zstd context, made with the first compressed piece: a context is some
    /// 160 KB, and most streams never carry one (every offer stream of a node that announces
    /// `zstd-v1` takes them, on any medium). At 1,000 simulated nodes contexts made up front
    /// were 101 MB of the peak.
    decompressor: Option<compress::Decompressor>,
    /// Decompressed bytes not yet split into frames.
    inner: BytesMut,
    /// Offers of a compact frame not yet handed out.
    pending: std::collections::VecDeque<Frame>,
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            max: max_frame,
            compact: None,
            compressed: false,
            decompressor: None,
            inner: BytesMut::new(),
            pending: Default::default(),
        }
    }

    /// A decoder for an offer stream that also takes compact offers ([`compact`]) of
    /// `dialect` or older (what this node announced).
    pub fn with_compact(max_frame: usize, dialect: compact::Dialect) -> FrameDecoder {
        FrameDecoder {
            compact: Some(compact::OfferDecoder::new(dialect)),
            ..FrameDecoder::new(max_frame)
        }
    }

    /// A decoder for an offer stream that takes compact offers and compressed pieces
    /// ([`compress`]).
    pub fn with_compressed(max_frame: usize, dialect: compact::Dialect) -> FrameDecoder {
        FrameDecoder { compressed: true, ..FrameDecoder::with_compact(max_frame, dialect) }
    }

    /// Adds bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Incoming>, WireError> {
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Ok(Some(Incoming::Frame(f)));
            }
            // Frames a compressed piece stood for come before anything after the piece.
            let from_piece = !self.inner.is_empty();
            let next = match from_piece {
                true => next_wire_frame(&mut self.inner, self.max)?,
                false => next_wire_frame(&mut self.buf, self.max)?,
            };
            match next {
                None if from_piece => {
                    return Err(WireError::invalid(
                        "compressed frame",
                        "a piece ends inside a frame",
                    ));
                }
                None => {
                    // What a burst grew the buffer to (a link-state sync, a large frame) would
                    // stay allocated for as long as the stream lasts: an idle stream lets it go.
                    if self.buf.is_empty() && self.buf.capacity() > IDLE_BUFFER {
                        self.buf = BytesMut::new();
                    }
                    if self.inner.capacity() > IDLE_BUFFER {
                        self.inner = BytesMut::new();
                    }
                    return Ok(None);
                }
                Some(Wire::Compressed(_)) if from_piece => {
                    return Err(WireError::invalid(
                        "compressed frame",
                        "a compressed frame inside a compressed piece",
                    ));
                }
                Some(Wire::Compressed(piece)) => match self.compressed {
                    true => {
                        let max = self.max;
                        let d = self
                            .decompressor
                            .get_or_insert_with(|| compress::Decompressor::new(max));
                        self.inner.extend_from_slice(&d.decompress(&piece)?);
                    }
                    false => {
                        return Err(WireError::invalid(
                            "frame",
                            "compressed frames where they were not announced (capability zstd-v1)",
                        ));
                    }
                },
                Some(Wire::One(incoming)) => return Ok(Some(incoming)),
                Some(Wire::Compact(c)) => match self.compact.as_mut() {
                    Some(dec) => self.pending.extend(dec.decode(c)?),
                    None => {
                        return Err(WireError::invalid(
                            "frame",
                            "compact offers where they were not announced (capability compact-v1)",
                        ));
                    }
                },
            }
        }
    }
}

/// The next whole frame in `buf`, enforcing the size limit before buffering it.
fn next_wire_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Wire>, WireError> {
    let Some((len, prefix)) = peek_varint(buf)? else {
        return Ok(None);
    };
    if len > max as u64 {
        return Err(WireError::Oversized { size: len, limit: max });
    }
    let len = len as usize;
    if buf.len() < prefix + len {
        buf.reserve(prefix + len - buf.len());
        return Ok(None);
    }
    buf.advance(prefix);
    // Bytes of its own, not a slice of the read buffer: a slice keeps the whole buffer alive
    // for as long as anything decoded from the frame is (frames queued for the driver, a
    // payload held), and the buffer cannot be reused in place. At 1,000 simulated nodes,
    // read buffers held that way were a tenth of the peak.
    let bytes = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    // Two bytes of an empty entry decode to a few hundred: count a compact frame's entries
    // before decoding it.
    compact::check_entry_counts(&bytes)?;
    let pb = pb::Frame::decode(bytes).map_err(|e| WireError::Decode(e.to_string()))?;
    let incoming = match pb.kind {
        Some(pb::frame::Kind::Hello(h)) => Wire::One(Incoming::Hello(convert::hello_from_pb(h)?)),
        Some(pb::frame::Kind::CompactOffers(c)) => Wire::Compact(c),
        Some(pb::frame::Kind::Compressed(piece)) => Wire::Compressed(piece),
        kind => Wire::One(Incoming::Frame(convert::frame_from_pb(pb::Frame { kind })?)),
    };
    Ok(Some(incoming))
}

/// One frame as it came off the stream.
enum Wire {
    One(Incoming),
    Compact(pb::CompactOffers),
    Compressed(bytes::Bytes),
}

/// Reads a varint at the start of `buf`: `(value, bytes used)`, or `None` if incomplete.
fn peek_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, WireError> {
    let mut value = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 10 { Err(WireError::BadLength) } else { Ok(None) }
}

/// Encodes a held message for the store.
pub fn encode_stored(m: &StoredMessage) -> Vec<u8> {
    convert::stored_to_pb(m).encode_to_vec()
}

pub fn decode_stored(b: &[u8]) -> Result<StoredMessage, WireError> {
    convert::stored_from_pb(
        pb::StoredMessage::decode(b).map_err(|e| WireError::Decode(e.to_string()))?,
    )
}

pub fn encode_inbox(r: &InboxRecord) -> Vec<u8> {
    convert::inbox_to_pb(r).encode_to_vec()
}

pub fn decode_inbox(b: &[u8]) -> Result<InboxRecord, WireError> {
    convert::inbox_from_pb(
        pb::InboxRecord::decode(b).map_err(|e| WireError::Decode(e.to_string()))?,
    )
}

pub fn encode_tombstone(t: &crate::frame::Tombstone) -> Vec<u8> {
    convert::tombstone_to_pb(t).encode_to_vec()
}

pub fn decode_tombstone(b: &[u8]) -> Result<crate::frame::Tombstone, WireError> {
    convert::tombstone_from_pb(
        pb::Tombstone::decode(b).map_err(|e| WireError::Decode(e.to_string()))?,
    )
}

pub fn encode_latest_key(k: &crate::frame::LatestKey) -> Vec<u8> {
    convert::latest_key_to_pb(k).encode_to_vec()
}

pub fn decode_latest_key(b: &[u8]) -> Result<crate::frame::LatestKey, WireError> {
    convert::latest_key_from_pb(
        pb::LatestKey::decode(b).map_err(|e| WireError::Decode(e.to_string()))?,
    )
}

pub fn encode_status(r: &StatusRecord) -> Vec<u8> {
    convert::status_to_pb(r).encode_to_vec()
}

pub fn decode_status(b: &[u8]) -> Result<StatusRecord, WireError> {
    convert::status_from_pb(
        pb::StatusRecord::decode(b).map_err(|e| WireError::Decode(e.to_string()))?,
    )
}

pub fn encode_advert(a: &crate::frame::Advert) -> Vec<u8> {
    convert::advert_to_pb(a).encode_to_vec()
}

/// An area border's summary, as its advert carries it (`Advert::summary`): the protobuf
/// `AreaSummary`, zstd-compressed. A summary names a hundred members or so whose ids, roles
/// and costs are much alike; every node of every area holds one of each border and every
/// link carries them at each refresh.
pub fn encode_area_summary(members: &[crate::frame::AreaMember]) -> Bytes {
    Bytes::from(compressed_summary(members, 19))
}

/// A `Table::Vouched` row: what borders said of their area's members, in the summary's
/// layout (read with [`decode_area_summary`]), compressed fast: it is rewritten whenever a
/// summary of the area changes.
pub fn encode_vouched(members: &[crate::frame::AreaMember]) -> Vec<u8> {
    compressed_summary(members, 3)
}

fn compressed_summary(members: &[crate::frame::AreaMember], level: i32) -> Vec<u8> {
    let plain = convert::area_summary_to_pb(members).encode_to_vec();
    // Compressing bytes in memory fails only for lack of memory, which aborts anyway.
    zstd::bulk::compress(&plain, level).unwrap_or_default()
}

/// Most bytes a summary may expand to.
pub const MAX_AREA_SUMMARY: u64 = 4 << 20;

/// Reads an `Advert::summary` (checked when the advert was decoded).
pub fn decode_area_summary(b: &[u8]) -> Result<Vec<crate::frame::AreaMember>, WireError> {
    let bad = |why: String| WireError::Decode(format!("area summary: {why}"));
    let size = match zstd::zstd_safe::get_frame_content_size(b) {
        Ok(Some(size)) if size <= MAX_AREA_SUMMARY => size as usize,
        Ok(Some(size)) => return Err(bad(format!("{size} bytes, more than {MAX_AREA_SUMMARY}"))),
        Ok(None) => return Err(bad("no content size".into())),
        Err(_) => return Err(bad("not zstd".into())),
    };
    let plain = zstd::bulk::decompress(b, size).map_err(|e| bad(e.to_string()))?;
    convert::area_summary_from_pb(
        pb::AreaSummary::decode(plain.as_slice()).map_err(|e| bad(e.to_string()))?,
    )
}

pub fn decode_advert(b: &[u8]) -> Result<crate::frame::Advert, WireError> {
    convert::advert_from_pb(pb::LinkState::decode(b).map_err(|e| WireError::Decode(e.to_string()))?)
}

#[cfg(test)]
mod tests;
