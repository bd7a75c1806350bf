//! Compressed offer streams (capability `zstd-v1`): the frames an offer stream carries, run
//! through one zstd stream per QUIC stream.
//!
//! Messages on a relay link are short and alike (orders, situation reports, position
//! reports from the same teams), so compressing each alone gains little; one compression
//! context for the whole stream lets each piece refer back to what the stream already carried
//! (a window of [`WINDOW`] bytes). A QUIC stream delivers its bytes once and in order, so the
//! receiver's context follows the sender's exactly, as the compact-offer tables do. Each
//! piece ends with a zstd flush: it decodes whole, without waiting for the next.
//!
//! What is compressed is the stream's own framing (length-delimited frames: compact offers,
//! plain envelopes) cut at frame boundaries into pieces of up to [`PIECE`] bytes; a single
//! larger frame goes alone. Incompressible content (a photo already compressed) costs zstd a
//! few bytes of raw block per piece, not an expansion.
//!
//! The receiver's limits: a piece may expand to at most its frame limit (a frame it would
//! refuse uncompressed is refused compressed, before it is buffered whole), and the context
//! refuses a window larger than [`WINDOW`]. Either fault, or bytes that are not zstd, is a
//! decoding error that names it; the stream is reset and the sender, which still holds
//! custody of everything on it, offers again.

use bytes::BytesMut;
use zstd::zstd_safe::{self, CParameter, DParameter, InBuffer, OutBuffer};

use super::{WireError, encode_pb, pb, peek_varint};

/// The capability a node announces in `Hello` when its offer streams take compressed pieces.
pub const CAPABILITY: &str = "zstd-v1";
/// The compression window, log2: what a piece may refer back to, and what a receiver keeps.
pub const WINDOW_LOG: u32 = 17;
/// The compression window in bytes (128 KiB).
pub const WINDOW: usize = 1 << WINDOW_LOG;
/// Frames are compressed together until a piece holds this many bytes.
pub const PIECE: usize = 64 * 1024;
/// zstd's level: 3 is its default, fast enough for any link that is worth compressing for.
const LEVEL: i32 = 3;

fn fault(why: impl std::fmt::Display) -> WireError {
    WireError::invalid("compressed frame", why)
}

/// The sender's side of one offer stream.
pub struct Compressor {
    cctx: zstd_safe::CCtx<'static>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").finish_non_exhaustive()
    }
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor::new()
    }
}

impl Compressor {
    pub fn new() -> Compressor {
        let mut cctx = zstd_safe::CCtx::create();
        // Neither can fail for values in range; a failure would only leave zstd's defaults.
        let _ = cctx.set_parameter(CParameter::CompressionLevel(LEVEL));
        let _ = cctx.set_parameter(CParameter::WindowLog(WINDOW_LOG));
        Compressor { cctx }
    }

    /// Appends `frames` (whole length-delimited frames, as `encode_frame` and the compact
    /// encoder write them) to `out` as compressed pieces.
    pub fn compress(&mut self, frames: &[u8], out: &mut BytesMut) {
        let mut rest = frames;
        while !rest.is_empty() {
            let take = piece_len(rest);
            let (piece, after) = rest.split_at(take);
            let mut data = Vec::with_capacity(zstd_safe::compress_bound(piece.len()) + 16);
            let mut input = InBuffer::around(piece);
            loop {
                if data.len() == data.capacity() {
                    data.reserve(data.capacity().max(64));
                }
                // Written after what the vector already holds.
                let at = data.len();
                let mut output = OutBuffer::around_pos(&mut data, at);
                let left = self.cctx.compress_stream2(
                    &mut output,
                    &mut input,
                    zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_flush,
                );
                match left {
                    // Flushed, and every byte of the piece taken.
                    Ok(0) if input.pos() == piece.len() => break,
                    Ok(_) => {}
                    // Only a misuse of the context fails here, and the stream cannot start
                    // anew (the receiver's context follows this one): a bug, not bad input.
                    Err(code) => {
                        panic!("zstd compression failed: {}", zstd_safe::get_error_name(code))
                    }
                }
            }
            encode_pb(&pb::Frame { kind: Some(pb::frame::Kind::Compressed(data.into())) }, out);
            rest = after;
        }
    }
}

/// The length of the first piece of `frames`: whole frames up to [`PIECE`] bytes, or the
/// first frame alone if it is larger (or if the bytes do not parse: they are compressed as
/// they are, and the receiver reports what is wrong with them).
fn piece_len(frames: &[u8]) -> usize {
    let mut at = 0;
    while at < frames.len() {
        let Ok(Some((len, prefix))) = peek_varint(&frames[at..]) else { return frames.len() };
        let end = (at + prefix).saturating_add(len as usize).min(frames.len());
        if at > 0 && end > PIECE {
            break;
        }
        at = end;
    }
    at
}

/// The receiver's side of one offer stream.
pub struct Decompressor {
    dctx: zstd_safe::DCtx<'static>,
    /// The most one piece may expand to.
    limit: usize,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor").field("limit", &self.limit).finish()
    }
}

impl Decompressor {
    /// A decompressor whose pieces expand to at most `limit` bytes (the stream's frame limit
    /// and a length prefix, or one [`PIECE`], whichever is more).
    pub fn new(limit: usize) -> Decompressor {
        let mut dctx = zstd_safe::DCtx::create();
        let _ = dctx.set_parameter(DParameter::WindowLogMax(WINDOW_LOG));
        Decompressor { dctx, limit: limit.max(PIECE) + 10 }
    }

    /// The frames one compressed piece stands for, as bytes to be split like the stream's.
    pub fn decompress(&mut self, piece: &[u8]) -> Result<Vec<u8>, WireError> {
        let mut data: Vec<u8> = Vec::with_capacity((piece.len() * 4).clamp(256, self.limit));
        let mut input = InBuffer::around(piece);
        loop {
            if data.len() == data.capacity() {
                if data.len() >= self.limit {
                    return Err(fault(format!(
                        "a piece expands past {} bytes (the frame limit)",
                        self.limit
                    )));
                }
                let more = data.capacity().min(self.limit - data.len());
                data.reserve_exact(more);
            }
            let at = data.len();
            let mut output = OutBuffer::around_pos(&mut data, at);
            let result = self.dctx.decompress_stream(&mut output, &mut input);
            let full = output.pos() == output.capacity();
            match result {
                Err(code) => return Err(fault(zstd_safe::get_error_name(code))),
                // All input taken and room left over: zstd has nothing more for this piece.
                Ok(_) if input.pos() == piece.len() && !full => break,
                Ok(_) => {}
            }
        }
        if data.len() > self.limit {
            return Err(fault(format!(
                "a piece expands past {} bytes (the frame limit)",
                self.limit
            )));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FrameDecoder, Incoming};

    fn frames(n: usize, size: usize, seed: u8) -> BytesMut {
        let mut out = BytesMut::new();
        for i in 0..n {
            let body: Vec<u8> = (0..size).map(|j| ((i * 7 + j) as u8) ^ seed).collect();
            let f = crate::frame::Frame::Revocations(body.into());
            crate::wire::encode_frame(&f, &mut out);
        }
        out
    }

    #[test]
    fn pieces_decode_in_order_and_later_ones_refer_back() {
        let mut c = Compressor::new();
        let first = frames(20, 200, 1);
        let mut out = BytesMut::new();
        c.compress(&first, &mut out);
        let one = out.len();
        // The same content again: the stream has it in its window, so it costs little.
        c.compress(&first, &mut out);
        assert!(out.len() - one < one / 4, "{} then {}", one, out.len() - one);
        let mut dec = FrameDecoder::with_compressed(1 << 20, crate::wire::compact::Dialect::NEWEST);
        dec.extend(&out);
        let mut got = 0;
        while let Some(f) = dec.next_frame().unwrap() {
            assert!(matches!(f, Incoming::Frame(crate::frame::Frame::Revocations(_))));
            got += 1;
        }
        assert_eq!(got, 40);
    }

    #[test]
    fn a_stream_makes_its_zstd_context_with_its_first_compressed_piece() {
        let mut dec = FrameDecoder::with_compressed(1 << 20, crate::wire::compact::Dialect::NEWEST);
        dec.extend(&frames(3, 100, 5));
        while dec.next_frame().unwrap().is_some() {}
        assert!(dec.decompressor.is_none(), "plain frames need no context");
        let mut out = BytesMut::new();
        Compressor::new().compress(&frames(3, 100, 6), &mut out);
        dec.extend(&out);
        let mut got = 0;
        while dec.next_frame().unwrap().is_some() {
            got += 1;
        }
        assert_eq!(got, 3);
        assert!(dec.decompressor.is_some());
        // A stream of a node that did not announce zstd-v1 still refuses compressed pieces.
        let mut plain = FrameDecoder::with_compact(1 << 20, crate::wire::compact::Dialect::NEWEST);
        plain.extend(&out);
        assert!(plain.next_frame().is_err());
    }

    #[test]
    fn a_large_frame_goes_alone_and_many_small_ones_are_cut_at_frame_boundaries() {
        let big = frames(1, 200_000, 3);
        assert_eq!(piece_len(&big), big.len());
        let small = frames(1000, 300, 4);
        let first = piece_len(&small);
        assert!(first <= PIECE && first > PIECE - 400, "{first}");
        let mut rest = &small[first..];
        while let Ok(Some((len, prefix))) = peek_varint(rest) {
            rest = &rest[prefix + len as usize..];
        }
        assert!(rest.is_empty(), "cut inside a frame");
    }

    #[test]
    fn incompressible_content_barely_grows() {
        let mut rng_bytes = Vec::with_capacity(50_000);
        let mut x: u64 = 0x9e3779b97f4a7c15;
        while rng_bytes.len() < 50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            rng_bytes.extend_from_slice(&x.to_le_bytes());
        }
        let mut raw = BytesMut::new();
        crate::wire::encode_frame(&crate::frame::Frame::Revocations(rng_bytes.into()), &mut raw);
        let mut out = BytesMut::new();
        Compressor::new().compress(&raw, &mut out);
        assert!(out.len() <= raw.len() + 32, "{} -> {}", raw.len(), out.len());
    }

    #[test]
    fn a_bomb_garbage_and_a_wide_window_are_refused_with_their_reason() {
        // A 10 MB frame of zeros compresses to a few hundred bytes: past the limit, refused
        // before it is held whole.
        let mut zeros = BytesMut::new();
        let f = crate::frame::Frame::Revocations(vec![0u8; 10_000_000].into());
        crate::wire::encode_frame(&f, &mut zeros);
        let mut bomb = BytesMut::new();
        Compressor::new().compress(&zeros, &mut bomb);
        assert!(bomb.len() < 2000, "{}", bomb.len());
        let mut dec = FrameDecoder::with_compressed(1 << 20, crate::wire::compact::Dialect::NEWEST);
        dec.extend(&bomb);
        let err = dec.next_frame().unwrap_err();
        assert!(err.to_string().contains("expands past"), "{err}");
        // One made in one go declares its size, and its window is that size: refused too.
        let one_go = zstd::bulk::compress(&zeros, 3).unwrap();
        let err = Decompressor::new(1 << 20).decompress(&one_go).unwrap_err();
        assert!(err.to_string().contains("too much memory"), "{err}");
        let err = Decompressor::new(1 << 20).decompress(b"not zstd at all").unwrap_err();
        assert!(err.to_string().contains("compressed frame"), "{err}");
        // A stream made with a 1 MiB window, referring back further than 128 KiB.
        let mut cctx = zstd_safe::CCtx::create();
        cctx.set_parameter(CParameter::WindowLog(20)).unwrap();
        let mut wide = vec![0u8; 4 << 20];
        let n = cctx.compress2(&mut wide[..], &frames(2000, 300, 5)).unwrap();
        let err = Decompressor::new(8 << 20).decompress(&wide[..n]).unwrap_err();
        assert!(err.to_string().contains("compressed frame"), "{err}");
    }

    #[test]
    fn a_compressed_frame_on_a_stream_that_did_not_announce_it_is_refused() {
        let mut out = BytesMut::new();
        Compressor::new().compress(&frames(2, 50, 6), &mut out);
        let mut dec = FrameDecoder::with_compact(1 << 20, crate::wire::compact::Dialect::NEWEST);
        dec.extend(&out);
        let err = dec.next_frame().unwrap_err();
        assert!(err.to_string().contains("zstd-v1"), "{err}");
        // Nor may a piece hold another compressed piece.
        let mut inner = BytesMut::new();
        Compressor::new().compress(&out, &mut inner);
        let mut dec = FrameDecoder::with_compressed(1 << 20, crate::wire::compact::Dialect::NEWEST);
        dec.extend(&inner);
        let err = dec.next_frame().unwrap_err();
        assert!(err.to_string().contains("inside"), "{err}");
    }
}
