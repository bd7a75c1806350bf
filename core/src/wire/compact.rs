//! Compact offers: the envelopes of one offer stream with what the stream already carried
//! referred to by number (capabilities `compact-v1` to `compact-v3`, see [`Dialect`]; format
//! in `proto/relaymesh.proto`, `CompactOffers`).
//!
//! A QUIC stream delivers its bytes once and in order, so both ends of an offer stream can
//! keep the same tables without ever acknowledging them: an [`OfferEncoder`] at the sender, an
//! [`OfferDecoder`] at the receiver, each changed only by the frames of that stream, in
//! order. The tables:
//!
//! - strings (node ids, addresses, content types): entry `n` is the `n`-th string the stream
//!   added; only the last [`STRING_WINDOW`] may be referred to, so the receiver keeps at most
//!   that many;
//! - batch seals (signature and batch size): numbered the same way, the last
//!   [`BATCH_WINDOW`] usable; per batch, the tree hashes the receiver knows (it computes the
//!   leaf of every envelope of the batch it received and every parent of two known children,
//!   and keeps every path hash it was sent). An envelope carries only the path hashes the
//!   receiver cannot compute: none when its whole batch crosses in one frame;
//! - the previous compact envelope's creation time, offer number, place in its batch,
//!   strings, id, departure (creation time + age), hop count, precedence and receipt, which
//!   the next one is relative to (plain `Envelope` frames, which the encoder sends for what
//!   the tables do not fit, change none of the state).
//!
//! The decoder rebuilds each envelope exactly, its full seal included, and hands it on as an
//! ordinary offer: the core checks its origin seal as it checks any other, so a path hash that
//! is wrong makes the envelope fail that check, as a forged seal would. Whatever refers to an
//! entry never sent (or no longer in the window) is a decoding error that names it: the
//! stream is reset and the sender, which still holds custody, offers again on a new link.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::{WireError, convert, encode_pb, pb};
use crate::frame::Frame;
use crate::trust::{self, Digest, HASH, MAX_BATCH};
use crate::types::{Body, Envelope, NodeId};

/// The capability a node announces in `Hello` when its offer streams accept compact offers.
pub const CAPABILITY: &str = "compact-v1";
/// Announced besides [`CAPABILITY`] by a node whose decoder takes ids relative to the
/// previous envelope's (`CompactEnvelope.id_delta`); a peer that announces only `compact-v1`
/// gets every id whole.
pub const CAPABILITY_ID_DELTAS: &str = "compact-v2";
/// Announced besides both by a node whose decoder takes `CompactOffers.envelopes_v3`.
pub const CAPABILITY_V3: &str = "compact-v3";

/// What an encoder may send and a node announces: each dialect's decoder takes every older
/// one too, so a node announces its own and every older one, and a stream's encoder speaks
/// the newest both ends announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Dialect {
    /// `compact-v1`: strings, batch seals, destinations, lifetimes and creation times by
    /// reference or relative to the previous envelope.
    #[default]
    V1,
    /// `compact-v2`: besides, an id is its counter's step from the previous one's.
    V2,
    /// `compact-v3`: besides, a run of ids, departures together, and the same hop count,
    /// precedence and receipt as the previous envelope cost nothing.
    V3,
}

impl Dialect {
    /// The newest dialect.
    pub const NEWEST: Dialect = Dialect::V3;

    /// The dialect of its number (1 to 3).
    pub fn from_number(n: u32) -> Option<Dialect> {
        match n {
            1 => Some(Dialect::V1),
            2 => Some(Dialect::V2),
            3 => Some(Dialect::V3),
            _ => None,
        }
    }

    /// What a node that speaks `self` announces in `Hello`: its capability and every older
    /// one's.
    pub fn capabilities(self) -> &'static [&'static str] {
        const ALL: [&str; 3] = [CAPABILITY, CAPABILITY_ID_DELTAS, CAPABILITY_V3];
        &ALL[..self as usize + 1]
    }

    /// The newest dialect up to `ours` that a peer announcing `theirs` takes (`None`: the
    /// peer takes no compact offers).
    pub fn agreed<'a>(ours: Dialect, theirs: impl IntoIterator<Item = &'a str>) -> Option<Dialect> {
        let theirs: Vec<&str> = theirs.into_iter().collect();
        [Dialect::V1, Dialect::V2, Dialect::V3]
            .into_iter()
            .filter(|&d| d <= ours)
            .take_while(|d| d.capabilities().iter().all(|c| theirs.contains(c)))
            .last()
    }
}
/// Ids are relative to the previous envelope's when they share its last 8 bytes and their
/// counters (the first 8, little-endian) are at most this far apart.
const MAX_ID_DELTA: u64 = 1 << 20;

/// Strings a stream may refer to: the last this many it added.
pub const STRING_WINDOW: u64 = 4096;
/// Batch seals a stream may refer to: the last this many it added.
pub const BATCH_WINDOW: u64 = 256;
/// The longest string the table takes: a receiver holds at most 1 MiB of strings a stream.
pub const MAX_STRING: usize = 256;
/// Envelopes the encoder puts in one frame (so a frame adds at most this many batches), and
/// the payload and string bytes beyond which it starts another. A frame of several envelopes
/// stays well under 64 KiB, the margin every receiver's frame limit leaves above its largest
/// payload; one envelope alone is as large as its plain frame would be.
const MAX_ENVELOPES: usize = 128;
const FRAME_PAYLOAD: usize = 32 * 1024;
const FRAME_STRING_BYTES: usize = 16 * 1024;
/// New strings one frame may add at most, so that what its envelopes refer to is still in
/// the window once the receiver has added them all.
const FRAME_STRINGS: u64 = STRING_WINDOW / 2;
/// An envelope for more destinations than this goes as a plain `Envelope` frame.
const MAX_COMPACT_DESTINATIONS: usize = 64;

/// Nodes of a batch's tree (at most [`MAX_BATCH`] leaves), by level and position.
const LEVELS: usize = 5;

/// Which tree nodes of a batch are known, and their hashes (the decoder's; the encoder keeps
/// only which).
#[derive(Clone, Debug)]
struct Tree {
    count: usize,
    /// Compute parents' hashes (the decoder); the encoder tracks only which nodes are known.
    hashing: bool,
    known: [[Option<Digest>; MAX_BATCH]; LEVELS],
}

impl Tree {
    fn new(count: usize) -> Tree {
        Tree { count, hashing: true, known: [[None; MAX_BATCH]; LEVELS] }
    }

    /// Width of each level: the leaves, then half of the level below, rounded up, up to 1.
    fn widths(&self) -> impl Iterator<Item = usize> {
        let mut w = self.count;
        std::iter::from_fn(move || {
            if w == 0 {
                return None;
            }
            let this = w;
            w = if w == 1 { 0 } else { w.div_ceil(2) };
            Some(this)
        })
    }

    /// Sets node (`level`, `pos`) and every parent it completes.
    fn set(&mut self, level: usize, pos: usize, hash: Digest) {
        self.known[level][pos] = Some(hash);
        let (mut l, mut p) = (level, pos);
        let widths: Vec<usize> = self.widths().collect();
        while l + 1 < widths.len() {
            let sibling = p ^ 1;
            let up = if sibling >= widths[l] {
                self.known[l][p] // the odd one out moves up as it is
            } else {
                match (self.known[l][p & !1], self.known[l][p | 1]) {
                    (Some(a), Some(b)) if self.hashing => Some(trust::parent(&a, &b)),
                    (Some(_), Some(_)) => Some([0; HASH]),
                    _ => None,
                }
            };
            let Some(up) = up else { return };
            if self.known[l + 1][p / 2].is_some() {
                return;
            }
            self.known[l + 1][p / 2] = Some(up);
            l += 1;
            p /= 2;
        }
    }

    /// The sibling positions on the way from leaf `index` to the root, bottom up (an odd one
    /// out has none at its level).
    fn siblings(&self, index: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::with_capacity(LEVELS);
        let mut i = index;
        for (level, width) in self.widths().enumerate() {
            if width == 1 {
                break;
            }
            if i ^ 1 < width {
                out.push((level, i ^ 1));
            }
            i /= 2;
        }
        out
    }
}

/// `id` as a step from `prev`: both end in the same 8 bytes and their counters (the first 8,
/// little-endian) are close.
fn id_delta(prev: &[u8; 16], id: &[u8; 16]) -> Option<i64> {
    if prev[8..] != id[8..] {
        return None;
    }
    let counter = |x: &[u8; 16]| u64::from_le_bytes(x[..8].try_into().unwrap_or_default());
    let delta = counter(id).wrapping_sub(counter(prev)) as i64;
    (delta.unsigned_abs() <= MAX_ID_DELTA).then_some(delta)
}

/// The id `delta` on from `prev` (see [`id_delta`]).
fn id_after(prev: &[u8; 16], delta: i64) -> [u8; 16] {
    let mut id = *prev;
    let counter = u64::from_le_bytes(prev[..8].try_into().unwrap_or_default());
    id[..8].copy_from_slice(&counter.wrapping_add(delta as u64).to_le_bytes());
    id
}

/// The four fields a `compact-v3` envelope sends relative to the previous envelope on the
/// stream, where `CompactEnvelope` sends them whole (`CompactEnvelopeV3` in
/// `proto/relaymesh.proto`).
#[derive(Debug, Clone, Copy)]
struct Relative {
    departure_us: i64,
    hop_count: u32,
    precedence: u32,
    receipt_changed: bool,
}

/// When an envelope created at `created` is expected to leave, the one before it having left
/// at `previous`: with it, if it waited (a backlog, a batch sent together), else at once. What
/// `compact-v3` sends is the difference, next to nothing either way.
fn expected_departure(previous: u64, created: u64) -> u64 {
    previous.max(created)
}

/// `c` in `compact-v3`: its own fields as they are (its `id_delta` already the step minus
/// one), `r` for the four that are relative.
fn to_v3(c: pb::CompactEnvelope, r: Relative) -> pb::CompactEnvelopeV3 {
    let pb::CompactEnvelope {
        id,
        origin,
        to,
        content_type,
        payload,
        created_delta_us,
        age_us: _,
        hop_count: _,
        destinations,
        batch,
        index_delta,
        path,
        offer_gap,
        receipt: _,
        lifetime_us,
        precedence: _,
        kind,
        status,
        seal,
        report,
        id_delta,
        key,
    } = c;
    pb::CompactEnvelopeV3 {
        id,
        origin,
        to,
        content_type,
        payload,
        created_delta_us,
        departure_us: r.departure_us,
        hop_count: r.hop_count,
        destinations,
        batch,
        index_delta,
        path,
        offer_gap,
        receipt_changed: r.receipt_changed,
        lifetime_us,
        precedence: r.precedence,
        kind,
        status,
        seal,
        report,
        id_step: id_delta,
        key,
    }
}

/// The inverse of [`to_v3`]: the four relative fields apart, zero in the envelope.
fn from_v3(e: pb::CompactEnvelopeV3) -> (pb::CompactEnvelope, Relative) {
    let pb::CompactEnvelopeV3 {
        id,
        origin,
        to,
        content_type,
        payload,
        created_delta_us,
        departure_us,
        hop_count,
        destinations,
        batch,
        index_delta,
        path,
        offer_gap,
        receipt_changed,
        lifetime_us,
        precedence,
        kind,
        status,
        seal,
        report,
        id_step,
        key,
    } = e;
    let envelope = pb::CompactEnvelope {
        id,
        origin,
        to,
        content_type,
        payload,
        created_delta_us,
        age_us: 0,
        hop_count: 0,
        destinations,
        batch,
        index_delta,
        path,
        offer_gap,
        receipt: false,
        lifetime_us,
        precedence: 0,
        kind,
        status,
        seal,
        report,
        id_delta: id_step,
        key,
    };
    (envelope, Relative { departure_us, hop_count, precedence, receipt_changed })
}

/// Whether the tables take `e`'s strings and destinations.
fn compactable(e: &Envelope) -> bool {
    // Cancels and replacements are rare: they go whole. So does a hop count `compact-v3`
    // could not say one more than.
    e.supersedes.is_none()
        && e.hop_count < u32::MAX
        && !e.destinations.is_empty()
        && e.destinations.len() <= MAX_COMPACT_DESTINATIONS
        && e.origin.as_str().len() <= MAX_STRING
        && e.content_type.len() <= MAX_STRING
        && e.to.to_string().len() <= MAX_STRING
        && e.destinations.iter().all(|d| d.as_str().len() <= MAX_STRING)
}

/// A seal split into its parts (`None`: not a well-formed batch seal: sent whole).
fn split_seal(seal: &[u8]) -> Option<([u8; 64], usize, usize, Vec<Digest>)> {
    if seal.len() < trust::SEAL_HEADER || !(seal.len() - trust::SEAL_HEADER).is_multiple_of(HASH) {
        return None;
    }
    let count = usize::from(u16::from_be_bytes([seal[64], seal[65]]));
    let index = usize::from(u16::from_be_bytes([seal[66], seal[67]]));
    if count == 0 || count > MAX_BATCH || index >= count {
        return None;
    }
    let mut signature = [0; 64];
    signature.copy_from_slice(&seal[..64]);
    let path = seal[trust::SEAL_HEADER..]
        .chunks_exact(HASH)
        .map(|c| {
            let mut d = [0; HASH];
            d.copy_from_slice(c);
            d
        })
        .collect::<Vec<_>>();
    (path.len() == Tree::new(count).siblings(index).len())
        .then_some((signature, count, index, path))
}

/// The sender's side of one offer stream.
#[derive(Debug, Default)]
pub struct OfferEncoder {
    strings: HashMap<String, u64>,
    /// Strings by number, oldest first, to forget them as they leave the window.
    string_order: VecDeque<String>,
    next_string: u64,
    /// Batch numbers by signature and size, and what the receiver knows of each batch by
    /// number (a batch seen again after it left the window is a new batch).
    batches: HashMap<([u8; 64], usize), u64>,
    trees: HashMap<u64, EncoderTree>,
    next_batch: u64,
    prev: Previous,
    /// What the receiver takes.
    dialect: Dialect,
}

/// What the next envelope on a stream is described relative to (both ends keep the same).
#[derive(Debug, Default, Clone)]
struct Previous {
    origin: Option<String>,
    to: Option<String>,
    content_type: Option<String>,
    destinations: Vec<String>,
    /// The batch of the last envelope that named one (its number), and that envelope's
    /// place in it plus one.
    batch: Option<u64>,
    next_index: i64,
    created: u64,
    offer: u64,
    lifetime: Option<u64>,
    /// The previous compact envelope's id.
    id: Option<[u8; 16]>,
    /// Its creation time plus age (microseconds, wrapping), hop count, precedence (as on the
    /// wire) and receipt.
    departure: u64,
    hop_count: u32,
    precedence: i32,
    receipt: bool,
}

/// Which tree nodes the receiver knows (the encoder needs no hashes: it has every path).
#[derive(Debug, Clone)]
struct EncoderTree(Tree);

impl EncoderTree {
    fn knows(&self, level: usize, pos: usize) -> bool {
        self.0.known[level][pos].is_some()
    }

    fn learn(&mut self, level: usize, pos: usize) {
        // The value does not matter to the encoder, only that the receiver has one.
        if !self.knows(level, pos) {
            self.0.set(level, pos, [0; HASH]);
        }
    }
}

impl OfferEncoder {
    /// An encoder for a receiver that takes `dialect` (see [`Dialect::agreed`]). From
    /// [`Dialect::V2`] on, an id that follows the previous envelope's (as a node's own ids do,
    /// see `Node::new_id`) costs three bytes, not 18; from [`Dialect::V3`] on, none.
    pub fn new(dialect: Dialect) -> OfferEncoder {
        OfferEncoder { dialect, ..OfferEncoder::default() }
    }

    /// Appends `offers` (`Frame::Offer`s; anything else is ignored) to `out` as length-prefixed
    /// `CompactOffers` frames, in order. An envelope the tables do not fit (very many
    /// destinations, a very long string) goes as a plain `Envelope` frame in its place.
    pub fn encode(&mut self, offers: &[Frame], out: &mut BytesMut) {
        let mut group: Vec<(u64, &Envelope)> = Vec::new();
        let (mut payload, mut strings, mut string_bytes) = (0usize, 0u64, 0usize);
        for f in offers {
            let Frame::Offer { offer, envelope: e } = f else { continue };
            if !compactable(e) {
                self.encode_frame(&group, out);
                group.clear();
                (payload, strings, string_bytes) = (0, 0, 0);
                super::encode_frame(f, out);
                continue;
            }
            let adds = 3 + e.destinations.len() as u64;
            // Strings the frame would have to carry, and a report's own strings.
            let to = e.to.to_string();
            let adds_bytes = [e.origin.as_str(), e.content_type.as_str(), to.as_str()]
                .into_iter()
                .chain(e.destinations.iter().map(NodeId::as_str))
                .map(|x| if self.reusable(x) { 0 } else { x.len() })
                .sum::<usize>()
                + match &e.body {
                    Body::Report(r) => r.reason.len() + 64 * (1 + r.destinations.len()),
                    Body::Data | Body::Cancel { .. } => 0,
                }
                + e.key.as_ref().map_or(0, String::len);
            if !group.is_empty()
                && (group.len() >= MAX_ENVELOPES
                    || payload + e.payload.len() > FRAME_PAYLOAD
                    || strings + adds > FRAME_STRINGS
                    || string_bytes + adds_bytes > FRAME_STRING_BYTES)
            {
                self.encode_frame(&group, out);
                group.clear();
                (payload, strings, string_bytes) = (0, 0, 0);
            }
            group.push((*offer, e));
            payload += e.payload.len();
            strings += adds;
            string_bytes += adds_bytes;
        }
        self.encode_frame(&group, out);
    }

    /// Whether the receiver has `s` and will have it to the end of a frame started now.
    fn reusable(&self, s: &str) -> bool {
        // Reused only if it stays in the window whatever the rest of the frame adds.
        self.strings.get(s).is_some_and(|&n| n + STRING_WINDOW - FRAME_STRINGS > self.next_string)
    }

    fn string(&mut self, s: &str, new: &mut Vec<String>) -> u64 {
        if self.reusable(s) {
            return self.strings[s];
        }
        let n = self.next_string;
        self.next_string += 1;
        self.strings.insert(s.to_owned(), n);
        self.string_order.push_back(s.to_owned());
        while self.string_order.len() as u64 > STRING_WINDOW {
            if let Some(old) = self.string_order.pop_front()
                && self.strings.get(&old).is_some_and(|&m| m + STRING_WINDOW <= self.next_string)
            {
                self.strings.remove(&old);
            }
        }
        new.push(s.to_owned());
        n
    }

    /// The batch number of `signature`, introducing the batch in `new` if the receiver does
    /// not have it (any more).
    fn batch(&mut self, signature: [u8; 64], count: usize, new: &mut Vec<pb::BatchSeal>) -> u64 {
        if let Some(&n) = self.batches.get(&(signature, count))
            && n + BATCH_WINDOW - MAX_ENVELOPES as u64 > self.next_batch
        {
            return n;
        }
        let n = self.next_batch;
        self.next_batch += 1;
        self.batches.insert((signature, count), n);
        self.trees.insert(n, EncoderTree(Tree { hashing: false, ..Tree::new(count) }));
        // Forget what the receiver no longer has.
        if let Some(gone) = n.checked_sub(BATCH_WINDOW) {
            self.trees.remove(&gone);
            self.batches.retain(|_, m| *m > gone);
        }
        new.push(pb::BatchSeal {
            signature: Bytes::copy_from_slice(&signature),
            count: count as u32,
        });
        n
    }

    fn encode_frame(&mut self, envs: &[(u64, &Envelope)], out: &mut BytesMut) {
        if envs.is_empty() {
            return;
        }
        let mut frame = pb::CompactOffers::default();
        // First every table entry the frame needs, so references can count back from the
        // table's end, and the leaves of every batched envelope, which the receiver computes
        // before it rebuilds any path.
        struct Refs {
            origin: u64,
            to: u64,
            content_type: u64,
            destinations: Vec<u64>,
            batch: Option<(u64, usize, Vec<Digest>)>,
        }
        let mut refs = Vec::with_capacity(envs.len());
        for (_, e) in envs {
            let to = e.to.to_string();
            let batch = split_seal(&e.signature).map(|(signature, count, index, path)| {
                let n = self.batch(signature, count, &mut frame.seals);
                if let Some(tree) = self.trees.get_mut(&n) {
                    tree.learn(0, index);
                }
                (n, index, path)
            });
            refs.push(Refs {
                origin: self.string(e.origin.as_str(), &mut frame.strings),
                to: self.string(&to, &mut frame.strings),
                content_type: self.string(&e.content_type, &mut frame.strings),
                destinations: e
                    .destinations
                    .iter()
                    .map(|d| self.string(d.as_str(), &mut frame.strings))
                    .collect(),
                batch,
            });
        }
        let (strings_end, batches_end) = (self.next_string, self.next_batch);
        let back = |end: u64, n: u64| (end - n) as u32;
        for ((offer, e), r) in envs.iter().zip(refs) {
            let mut c = pb::CompactEnvelope {
                id: Bytes::copy_from_slice(&e.id.0),
                id_delta: 0,
                payload: e.payload.clone(),
                created_delta_us: e.created.as_micros().wrapping_sub(self.prev.created) as i64,
                age_us: convert::us(e.age),
                hop_count: e.hop_count,
                offer_gap: offer.wrapping_sub(self.prev.offer.wrapping_add(1)),
                precedence: convert::precedence_to_pb(e.precedence) as i32,
                receipt: e.receipt,
                ..Default::default()
            };
            let destinations: Vec<String> =
                e.destinations.iter().map(|d| d.as_str().to_owned()).collect();
            if destinations != self.prev.destinations {
                c.destinations = r.destinations.iter().map(|&n| back(strings_end, n)).collect();
                self.prev.destinations = destinations;
            }
            let origin = e.origin.as_str();
            if self.prev.origin.as_deref() != Some(origin) {
                c.origin = back(strings_end, r.origin);
                self.prev.origin = Some(origin.to_owned());
            }
            let to = e.to.to_string();
            if self.prev.to.as_deref() != Some(to.as_str()) {
                let first = e.destinations.first().map(|d| format!("node:{d}"));
                c.to = if first.as_deref() == Some(to.as_str()) {
                    1
                } else {
                    back(strings_end, r.to) + 1
                };
                self.prev.to = Some(to);
            }
            if self.prev.content_type.as_deref() != Some(e.content_type.as_str()) {
                c.content_type = back(strings_end, r.content_type);
                self.prev.content_type = Some(e.content_type.clone());
            }
            if self.dialect >= Dialect::V2
                && let Some(delta) = self.prev.id.and_then(|p| id_delta(&p, &e.id.0))
            {
                c.id = Bytes::new();
                // A run of ids steps by one: from `compact-v3` on, that step is implied.
                c.id_delta =
                    if self.dialect >= Dialect::V3 { delta.wrapping_sub(1) } else { delta };
            }
            self.prev.id = Some(e.id.0);
            let departure = e.created.as_micros().wrapping_add(c.age_us);
            let relative = (self.dialect >= Dialect::V3).then(|| Relative {
                departure_us: departure
                    .wrapping_sub(expected_departure(self.prev.departure, e.created.as_micros()))
                    as i64,
                hop_count: if c.hop_count == self.prev.hop_count { 0 } else { c.hop_count + 1 },
                // Precedence numbers are 0 to 3.
                precedence: if c.precedence == self.prev.precedence {
                    0
                } else {
                    c.precedence.unsigned_abs() + 1
                },
                receipt_changed: e.receipt != self.prev.receipt,
            });
            self.prev.departure = departure;
            (self.prev.hop_count, self.prev.precedence, self.prev.receipt) =
                (c.hop_count, c.precedence, c.receipt);
            self.prev.created = e.created.as_micros();
            self.prev.offer = *offer;
            let lifetime = convert::us(e.lifetime);
            if self.prev.lifetime != Some(lifetime) {
                c.lifetime_us = Some(lifetime);
                self.prev.lifetime = Some(lifetime);
            }
            let (kind, report) = convert::body_to_pb(e);
            c.kind = kind as i32;
            c.status = convert::status_to_pb_enum(e.status) as i32;
            c.report = report;
            c.key = e.key.clone().unwrap_or_default();
            match r.batch {
                Some((n, index, path)) => {
                    if self.prev.batch != Some(n) {
                        c.batch = back(batches_end, n) + 1;
                        self.prev.batch = Some(n);
                    }
                    c.index_delta = (index as i64 - self.prev.next_index) as i32;
                    self.prev.next_index = index as i64 + 1;
                    if let Some(tree) = self.trees.get_mut(&n) {
                        let mut sent = Vec::new();
                        for (hash, (level, pos)) in path.iter().zip(tree.0.siblings(index)) {
                            if !tree.knows(level, pos) {
                                sent.extend_from_slice(hash);
                                tree.learn(level, pos);
                            }
                        }
                        c.path = Bytes::from(sent);
                    }
                }
                None => {
                    c.batch = 1;
                    c.seal = e.signature.clone();
                }
            }
            match relative {
                Some(r) => frame.envelopes_v3.push(to_v3(c, r)),
                None => frame.envelopes.push(c),
            }
        }
        encode_pb(&pb::Frame { kind: Some(pb::frame::Kind::CompactOffers(frame)) }, out);
    }
}

/// Field `compact_offers` of `Frame`.
const FRAME_COMPACT_OFFERS: u64 = 9;

/// Refuses a frame whose `CompactOffers` holds more entries than [`OfferDecoder`] takes,
/// before protobuf decodes it: an empty entry is two bytes on the wire and a few hundred in
/// memory, so a frame at the size limit could otherwise cost hundreds of megabytes before its
/// counts were looked at. Anything that does not parse is left to the decoder to refuse.
pub(super) fn check_entry_counts(frame: &[u8]) -> Result<(), WireError> {
    let Some(body) = fields(frame)
        .find_map(|(field, value)| (field == FRAME_COMPACT_OFFERS).then_some(value).flatten())
    else {
        return Ok(());
    };
    let (mut strings, mut seals, mut envelopes) = (0, 0, 0);
    for (field, _) in fields(body) {
        match field {
            1 => strings += 1,
            2 => seals += 1,
            3 | 4 => envelopes += 1,
            _ => continue,
        }
        within_frame_limits(strings, seals, envelopes)?;
    }
    Ok(())
}

/// What one frame may hold: new strings, new batch seals and envelopes (of both dialects).
/// An envelope repeats its predecessor's destinations for two bytes, so without these limits
/// a small frame could stand for gigabytes of envelopes.
fn within_frame_limits(strings: usize, seals: usize, envelopes: usize) -> Result<(), WireError> {
    if strings as u64 > FRAME_STRINGS || seals > MAX_ENVELOPES {
        return Err(bad("more new table entries in one frame than the table takes"));
    }
    if envelopes > MAX_ENVELOPES {
        return Err(bad(format!("{envelopes} envelopes in one frame (at most {MAX_ENVELOPES})")));
    }
    Ok(())
}

/// The fields of a protobuf message, as (number, the bytes of a length-delimited value),
/// until the end or the first thing that does not parse.
fn fields(mut buf: &[u8]) -> impl Iterator<Item = (u64, Option<&[u8]>)> {
    std::iter::from_fn(move || {
        let (key, used) = super::peek_varint(buf).ok().flatten()?;
        buf = &buf[used..];
        let skip = match key & 7 {
            0 => super::peek_varint(buf).ok().flatten()?.1,
            1 => 8,
            2 => {
                let (len, used) = super::peek_varint(buf).ok().flatten()?;
                let end = used.checked_add(usize::try_from(len).ok()?)?;
                let value = buf.get(used..end)?;
                buf = &buf[end..];
                return Some((key >> 3, Some(value)));
            }
            5 => 4,
            _ => return None,
        };
        buf = buf.get(skip..)?;
        Some((key >> 3, None))
    })
}

/// The receiver's side of one offer stream.
#[derive(Debug, Default)]
pub struct OfferDecoder {
    /// The window of strings, oldest first.
    strings: VecDeque<String>,
    batches: VecDeque<([u8; 64], Tree)>,
    /// Batches ever added (the number of the next one).
    next_batch: u64,
    prev: Previous,
    /// What this node announced: anything newer is refused.
    dialect: Dialect,
}

fn bad(why: impl std::fmt::Display) -> WireError {
    WireError::invalid("compact offers", why)
}

impl OfferDecoder {
    /// A decoder for a node that announced `dialect` (and so every older one).
    pub fn new(dialect: Dialect) -> OfferDecoder {
        OfferDecoder { dialect, ..OfferDecoder::default() }
    }

    /// String `r`, counting back from the newest (1).
    fn string(&self, r: u32) -> Result<&str, WireError> {
        let len = self.strings.len();
        match (r as usize).checked_sub(1).and_then(|back| len.checked_sub(back + 1)) {
            Some(i) => Ok(&self.strings[i]),
            None => Err(bad(format!("string {r} back referred to, the table holds {len}"))),
        }
    }

    /// A string field: 0 is the previous envelope's.
    fn or_previous(&self, r: u32, prev: &Option<String>, what: &str) -> Result<String, WireError> {
        match r {
            0 => prev.clone().ok_or_else(|| bad(format!("no previous {what} to repeat"))),
            r => self.string(r).map(str::to_owned),
        }
    }

    /// The offers a `CompactOffers` frame stands for, in order.
    pub(super) fn decode(&mut self, c: pb::CompactOffers) -> Result<Vec<Frame>, WireError> {
        // Checked before anything is built from the frame (a frame off a stream was counted
        // before protobuf decoded it, in `check_entry_counts`).
        let envelopes = c.envelopes.len() + c.envelopes_v3.len();
        within_frame_limits(c.strings.len(), c.seals.len(), envelopes)?;
        let v3 = !c.envelopes_v3.is_empty();
        if v3 && !c.envelopes.is_empty() {
            return Err(bad("envelopes of two dialects in one frame"));
        }
        if v3 && self.dialect < Dialect::V3 {
            return Err(bad("compact-v3 envelopes, which this node did not announce"));
        }
        for s in c.strings {
            if s.len() > MAX_STRING {
                return Err(bad(format!("a {}-byte string (at most {MAX_STRING})", s.len())));
            }
            self.strings.push_back(s);
            if self.strings.len() as u64 > STRING_WINDOW {
                self.strings.pop_front();
            }
        }
        for seal in c.seals {
            let count = seal.count as usize;
            if seal.signature.len() != 64 || count == 0 || count > MAX_BATCH {
                return Err(bad(format!(
                    "a batch seal of {} signature bytes for {count} envelopes",
                    seal.signature.len()
                )));
            }
            let mut signature = [0; 64];
            signature.copy_from_slice(&seal.signature);
            self.batches.push_back((signature, Tree::new(count)));
            self.next_batch += 1;
            if self.batches.len() as u64 > BATCH_WINDOW {
                self.batches.pop_front();
            }
        }
        let envelopes: Vec<(pb::CompactEnvelope, Option<Relative>)> = if v3 {
            c.envelopes_v3.into_iter().map(from_v3).map(|(e, r)| (e, Some(r))).collect()
        } else {
            c.envelopes.into_iter().map(|e| (e, None)).collect()
        };
        // Every envelope as it was sent, its seal still to be rebuilt.
        let mut envs = Vec::with_capacity(envelopes.len());
        for (mut e, relative) in envelopes {
            let id = if e.id.is_empty() {
                if self.dialect < Dialect::V2 {
                    return Err(bad("an id relative to the previous one (compact-v2), which \
                                    this node did not announce"));
                }
                let prev = self.prev.id.ok_or_else(|| bad("no previous id to count from"))?;
                let delta = if v3 { e.id_delta.wrapping_add(1) } else { e.id_delta };
                Bytes::copy_from_slice(&id_after(&prev, delta))
            } else {
                e.id
            };
            if let Ok(id) = <[u8; 16]>::try_from(id.as_ref()) {
                self.prev.id = Some(id);
            }
            let destinations = if e.destinations.is_empty() {
                if self.prev.destinations.is_empty() {
                    return Err(bad("no previous destinations to repeat"));
                }
                self.prev.destinations.clone()
            } else if e.destinations.len() > MAX_COMPACT_DESTINATIONS {
                return Err(bad(format!(
                    "{} destinations (a compact envelope has at most {MAX_COMPACT_DESTINATIONS})",
                    e.destinations.len()
                )));
            } else {
                let strings = e.destinations.iter().map(|&d| self.string(d).map(str::to_owned));
                strings.collect::<Result<Vec<_>, _>>()?
            };
            self.prev.destinations = destinations.clone();
            let origin = self.or_previous(e.origin, &self.prev.origin, "origin")?;
            let to = match e.to {
                1 => format!(
                    "node:{}",
                    destinations
                        .first()
                        .ok_or_else(|| bad("node:<first destination> without destinations"))?
                ),
                r => self.or_previous(r.saturating_sub(1), &self.prev.to, "address")?,
            };
            let content_type =
                self.or_previous(e.content_type, &self.prev.content_type, "content type")?;
            self.prev.created = self.prev.created.wrapping_add(e.created_delta_us as u64);
            if let Some(r) = relative {
                let departure = expected_departure(self.prev.departure, self.prev.created)
                    .wrapping_add(r.departure_us as u64);
                e.age_us = departure.wrapping_sub(self.prev.created);
                e.hop_count = match r.hop_count {
                    0 => self.prev.hop_count,
                    h => h - 1,
                };
                e.precedence = match r.precedence {
                    0 => self.prev.precedence,
                    p => i32::try_from(p - 1).map_err(|_| bad(format!("precedence {}", p - 1)))?,
                };
                e.receipt = self.prev.receipt ^ r.receipt_changed;
            }
            self.prev.departure = self.prev.created.wrapping_add(e.age_us);
            (self.prev.hop_count, self.prev.precedence, self.prev.receipt) =
                (e.hop_count, e.precedence, e.receipt);
            self.prev.offer = self.prev.offer.wrapping_add(1).wrapping_add(e.offer_gap);
            if e.lifetime_us.is_some() {
                self.prev.lifetime = e.lifetime_us;
            }
            let lifetime = self
                .prev
                .lifetime
                .ok_or_else(|| bad("the first envelope of the stream has no lifetime"))?;
            let batch = match e.batch {
                1 => None,
                b => {
                    let slot = if b == 0 {
                        let n =
                            self.prev.batch.ok_or_else(|| bad("no previous batch to repeat"))?;
                        let first = self.next_batch - self.batches.len() as u64;
                        n.checked_sub(first)
                            .filter(|&i| i < self.batches.len() as u64)
                            .ok_or_else(|| bad("the previous batch left the window"))?
                    } else {
                        let r = u64::from(b - 1);
                        let len = self.batches.len() as u64;
                        if r > len {
                            return Err(bad(format!(
                                "batch seal {r} back referred to, the table holds {len}"
                            )));
                        }
                        len - r
                    };
                    self.prev.batch = Some(self.next_batch - self.batches.len() as u64 + slot);
                    let index = self.prev.next_index + i64::from(e.index_delta);
                    let count = self.batches[slot as usize].1.count;
                    let index = usize::try_from(index)
                        .ok()
                        .filter(|&i| i < count)
                        .ok_or_else(|| bad(format!("envelope {index} of a batch of {count}")))?;
                    self.prev.next_index = index as i64 + 1;
                    Some((slot as usize, index, e.path))
                }
            };
            let full = pb::Envelope {
                id,
                origin: origin.clone(),
                to: to.clone(),
                precedence: e.precedence,
                lifetime_us: lifetime,
                content_type: content_type.clone(),
                payload: e.payload,
                receipt: e.receipt,
                kind: e.kind,
                status: e.status,
                created_us: self.prev.created,
                age_us: e.age_us,
                hop_count: e.hop_count,
                destinations,
                signature: e.seal,
                report: e.report,
                offer: self.prev.offer,
                key: e.key,
                supersedes: None,
                reason: String::new(),
                replaced_by: Bytes::new(),
            };
            (self.prev.origin, self.prev.to, self.prev.content_type) =
                (Some(origin), Some(to), Some(content_type));
            let offer = full.offer;
            envs.push((offer, convert::envelope_from_pb(full)?, batch));
        }
        // The leaves of every envelope of a batch in this frame, then each path.
        for (_, env, batch) in &envs {
            if let Some((slot, index, _)) = batch {
                self.batches[*slot].1.set(0, *index, trust::leaf_hash(env));
            }
        }
        let mut frames = Vec::with_capacity(envs.len());
        for (offer, mut env, batch) in envs {
            if let Some((slot, index, sent)) = batch {
                let (signature, tree) = &mut self.batches[slot];
                if !sent.len().is_multiple_of(HASH) {
                    return Err(bad(format!("a path of {} bytes", sent.len())));
                }
                let mut sent = sent.chunks_exact(HASH);
                let mut seal = Vec::with_capacity(trust::MAX_SEAL);
                seal.extend_from_slice(&signature[..]);
                seal.extend_from_slice(&(tree.count as u16).to_be_bytes());
                seal.extend_from_slice(&(index as u16).to_be_bytes());
                for (level, pos) in tree.siblings(index) {
                    let hash = match tree.known[level][pos] {
                        Some(h) => h,
                        None => {
                            let h: Digest =
                                sent.next().and_then(|c| c.try_into().ok()).ok_or_else(|| {
                                    bad("a path hash the receiver cannot compute is missing")
                                })?;
                            tree.set(level, pos, h);
                            h
                        }
                    };
                    seal.extend_from_slice(&hash);
                }
                if sent.next().is_some() {
                    return Err(bad("more path hashes than the path has room for"));
                }
                env.signature = Bytes::from(seal);
            }
            frames.push(Frame::Offer { offer, envelope: env });
        }
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prost::Message;

    use super::*;
    use crate::trust::test_key::Key;
    use crate::trust::{claim, seal_batch, verify_claim};
    use crate::types::{Address, Body, MessageId, NodeId, Precedence, Time, TrafficStatus};
    use crate::wire::{FrameDecoder, Incoming};

    fn node(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    /// Envelope `i` of `origin`, for `dests`, with a payload of `size` bytes.
    fn envelope(origin: &str, i: u32, dests: &[&str], size: usize) -> Envelope {
        // As a node numbers its messages: a counter, then bytes of its own (here its name).
        let mut id = [0; 16];
        id[..8].copy_from_slice(&u64::from(i).to_le_bytes());
        id[8..8 + origin.len().min(8)].copy_from_slice(&origin.as_bytes()[..origin.len().min(8)]);
        Envelope {
            id: MessageId(id),
            origin: node(origin),
            to: Address::parse(&format!("node:{}", dests[0])).unwrap(),
            precedence: Precedence::Routine,
            lifetime: Duration::from_secs(3600),
            content_type: "text/plain".into(),
            payload: Bytes::from(vec![i as u8; size]),
            receipt: i.is_multiple_of(2),
            body: Body::Data,
            status: TrafficStatus::Actual,
            created: Time(1_700_000_000_000_000 + u64::from(i) * 1000),
            age: Duration::from_micros(u64::from(i) * 37),
            hop_count: i % 4,
            destinations: dests.iter().map(|d| node(d)).collect(),
            signature: Bytes::new(),
            key: None,
            supersedes: None,
        }
    }

    fn sealed(key: &Key, origin: &str, n: u32, size: usize) -> Vec<Envelope> {
        let mut envs: Vec<Envelope> =
            (0..n).map(|i| envelope(origin, i, &["county-hq"], size)).collect();
        seal_batch(key, &mut envs);
        envs
    }

    fn offers(envs: &[Envelope], first: u64) -> Vec<Frame> {
        envs.iter()
            .enumerate()
            .map(|(i, e)| Frame::Offer { offer: first + i as u64, envelope: e.clone() })
            .collect()
    }

    /// Encodes each group as one `encode` call and decodes the stream in one piece.
    fn round_trip(groups: &[Vec<Frame>]) -> (Vec<Frame>, usize) {
        round_trip_with(OfferEncoder::new(Dialect::NEWEST), groups)
    }

    fn round_trip_with(mut enc: OfferEncoder, groups: &[Vec<Frame>]) -> (Vec<Frame>, usize) {
        let mut bytes = BytesMut::new();
        for g in groups {
            enc.encode(g, &mut bytes);
        }
        let len = bytes.len();
        let mut dec = FrameDecoder::with_compact(crate::wire::DEFAULT_MAX_FRAME, Dialect::NEWEST);
        dec.extend(&bytes);
        let mut out = Vec::new();
        while let Some(Incoming::Frame(f)) = dec.next_frame().unwrap() {
            out.push(f);
        }
        assert_eq!(dec.buffered(), 0);
        (out, len)
    }

    fn authentic(key: &Key, f: &Frame) -> bool {
        let Frame::Offer { envelope, .. } = f else { return false };
        claim(envelope).is_some_and(|c| verify_claim(&key.public(), &c))
    }

    #[test]
    fn ids_that_follow_each_other_cost_three_bytes_for_a_peer_that_takes_deltas() {
        let key = Key::new(1);
        let mut envs: Vec<Envelope> =
            (0..16).map(|i| envelope("team-01", i, &["county-hq"], 40)).collect();
        // One id out of the run (another origin's numbering) in the middle, and one far on.
        envs[5].id = MessageId([0x5a; 16]);
        envs[9].id.0[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        seal_batch(&key, &mut envs);
        let sent = offers(&envs, 1);
        let (whole, whole_len) =
            round_trip_with(OfferEncoder::new(Dialect::V1), std::slice::from_ref(&sent));
        let (deltas, delta_len) =
            round_trip_with(OfferEncoder::new(Dialect::V2), std::slice::from_ref(&sent));
        assert_eq!(whole, sent);
        assert_eq!(deltas, sent);
        // 11 of the 16 follow the one before (not the first, the odd one or the one after it,
        // the one far on or the one after it): 15 bytes saved each (18 bytes of id against 3
        // of delta: field 21 takes a two-byte tag).
        assert_eq!(whole_len - delta_len, 11 * 15, "{whole_len} against {delta_len}");
        // A decoder asked for the previous id on a fresh stream says so.
        let mut enc = OfferEncoder::new(Dialect::V2);
        let mut bytes = BytesMut::new();
        enc.encode(&sent[..2], &mut bytes);
        let mut second = BytesMut::new();
        enc.encode(&sent[2..3], &mut second);
        let mut dec = FrameDecoder::with_compact(crate::wire::DEFAULT_MAX_FRAME, Dialect::NEWEST);
        dec.extend(&second);
        let e = dec.next_frame().unwrap_err();
        assert!(e.to_string().contains("no previous id"), "{e}");
    }

    #[test]
    fn a_whole_batch_crosses_without_paths_and_decodes_to_the_same_envelopes() {
        let key = Key::new(1);
        let sent = offers(&sealed(&key, "team-01", 16, 40), 1);
        let (got, _) = round_trip(std::slice::from_ref(&sent));
        assert_eq!(got, sent);
        assert!(got.iter().all(|f| authentic(&key, f)));
    }

    #[test]
    fn reports_and_unsealed_envelopes_cross_as_they_are() {
        use crate::types::{Outcome, Report};
        let key = Key::new(5);
        let mut report = envelope("township-01", 1, &["county-hq"], 0);
        report.body = Body::Report(Report {
            of: MessageId([7; 16]),
            outcome: Outcome::Delivered,
            at_node: node("township-01"),
            age: Duration::from_millis(420),
            reason: "in the inbox".into(),
            destinations: vec![node("township-01")],
        });
        report.content_type = crate::REPORT_CONTENT_TYPE.into();
        let mut reports = vec![report.clone(), report];
        reports[1].id = MessageId([8; 16]);
        seal_batch(&key, &mut reports);
        let unsealed = envelope("team-09", 2, &["county-hq", "township-02"], 12);
        let mut sent = offers(&reports, 5);
        sent.push(Frame::Offer { offer: 9, envelope: unsealed });
        let (got, _) = round_trip(std::slice::from_ref(&sent));
        assert_eq!(got, sent);
        assert!(got[..2].iter().all(|f| authentic(&key, f)));
    }

    #[test]
    fn a_steady_stream_spends_at_most_40_bytes_an_envelope_on_framing_25_with_id_deltas() {
        let key = Key::new(1);
        for size in [40, 256] {
            // Batches of 16 from one origin to one destination, one after another.
            let all: Vec<Envelope> = (0..4u32)
                .flat_map(|b| {
                    let mut envs: Vec<Envelope> = (0..16)
                        .map(|i| envelope("team-01", b * 16 + i, &["county-hq"], size))
                        .collect();
                    seal_batch(&key, &mut envs);
                    envs
                })
                .collect();
            let frames = offers(&all, 1);
            let steady = |mut enc: OfferEncoder| {
                let mut warm = BytesMut::new();
                enc.encode(&frames[..16], &mut warm);
                let mut steady = BytesMut::new();
                for batch in frames[16..].chunks(16) {
                    enc.encode(batch, &mut steady);
                }
                (steady.len() - 48 * size) as f64 / 48.0
            };
            let framing = steady(OfferEncoder::new(Dialect::V1));
            // With ids relative to the one before (`compact-v2`), 15 bytes less.
            let with_deltas = steady(OfferEncoder::new(Dialect::V2));
            assert!(with_deltas <= 25.0, "{size} B: {with_deltas} bytes with id deltas");
            let mut plain = BytesMut::new();
            frames[16..].iter().for_each(|f| crate::wire::encode_frame(f, &mut plain));
            let before = (plain.len() - 48 * size) as f64 / 48.0;
            assert!(
                framing <= 40.0,
                "{size} B: {framing} bytes of framing an envelope (plain {before})"
            );
            assert!(before > 4.0 * framing, "{size} B: plain {before}, compact {framing}");
            let (got, _) = round_trip(&[frames[..16].to_vec(), frames[16..].to_vec()]);
            assert_eq!(got, frames);
        }
    }

    /// Bytes of framing an envelope for a stream in `dialect`, once the stream is warm:
    /// batches of 16 from one origin to one destination, each batch sent together (one
    /// departure), one hop from its origin, receipts asked for, as a relay sends what its
    /// clients submit.
    fn steady_framing(dialect: Dialect, size: usize) -> f64 {
        let key = Key::new(1);
        let all: Vec<Envelope> = (0..4u32)
            .flat_map(|b| {
                let mut envs: Vec<Envelope> = (0..16)
                    .map(|i| {
                        let mut e = envelope("team-01", b * 16 + i, &["county-hq"], size);
                        // Submitted 117 us apart, the batch leaves 4 ms after its last.
                        e.created = Time(1_700_000_000_000_000 + u64::from(b * 16 + i) * 117);
                        let departure = 1_700_000_000_000_000 + u64::from(b * 16 + 15) * 117 + 4000;
                        e.age = Duration::from_micros(departure - e.created.as_micros());
                        (e.hop_count, e.receipt) = (1, true);
                        e
                    })
                    .collect();
                seal_batch(&key, &mut envs);
                envs
            })
            .collect();
        let frames = offers(&all, 1);
        let mut enc = OfferEncoder::new(dialect);
        enc.encode(&frames[..16], &mut BytesMut::new());
        let mut steady = BytesMut::new();
        for batch in frames[16..].chunks(16) {
            enc.encode(batch, &mut steady);
        }
        let (got, _) = round_trip_with(
            OfferEncoder::new(dialect),
            &[frames[..16].to_vec(), frames[16..].to_vec()],
        );
        assert_eq!(got, frames, "{dialect:?}");
        (steady.len() - 48 * size) as f64 / 48.0
    }

    #[test]
    fn in_compact_v3_a_steady_stream_spends_under_15_bytes_an_envelope_on_framing() {
        for size in [40, 256] {
            let [v1, v2, v3] =
                [Dialect::V1, Dialect::V2, Dialect::V3].map(|d| steady_framing(d, size));
            eprintln!("{size} B: framing an envelope {v1} B (v1), {v2} B (v2), {v3} B (v3)");
            // An id in a run, a departure shared with the batch, the same hop count and
            // receipt: 3 + 3 + 2 + 2 bytes in `compact-v2`, none in `compact-v3`.
            assert!(v3 + 9.0 < v2, "{size} B: {v3} B in v3, {v2} B in v2");
            assert!(v3 < 15.0, "{size} B: {v3} B in v3");
        }
    }

    #[test]
    fn the_dialect_is_the_newest_both_ends_announce() {
        use Dialect::*;
        assert_eq!(V3.capabilities(), ["compact-v1", "compact-v2", "compact-v3"]);
        assert_eq!(V1.capabilities(), ["compact-v1"]);
        for (ours, theirs, agreed) in [
            (V3, V3.capabilities(), Some(V3)),
            (V3, V2.capabilities(), Some(V2)),
            (V2, V3.capabilities(), Some(V2)),
            (V3, V1.capabilities(), Some(V1)),
            (V1, V3.capabilities(), Some(V1)),
            (V3, &[][..], None),
            // A newer dialect without the older ones it implies is not taken.
            (V3, &["compact-v3"][..], None),
            (V3, &["compact-v1", "compact-v3"][..], Some(V1)),
        ] {
            assert_eq!(
                Dialect::agreed(ours, theirs.iter().copied()),
                agreed,
                "{ours:?} {theirs:?}"
            );
        }
        assert_eq!(Dialect::from_number(3), Some(V3));
        assert_eq!(Dialect::from_number(0), None);
        assert_eq!(Dialect::from_number(4), None);
    }

    #[test]
    fn every_dialect_decodes_the_same_envelopes_with_any_mix_of_fields() {
        // Hop counts, receipts, precedences and ages that change from one envelope to the
        // next, and a departure that runs backwards.
        let key = Key::new(4);
        let mut envs: Vec<Envelope> =
            (0..16).map(|i| envelope("team-07", i * 3, &["county-hq"], 9)).collect();
        for (i, e) in envs.iter_mut().enumerate() {
            e.precedence = [Precedence::Flash, Precedence::Routine, Precedence::Immediate][i % 3];
            e.hop_count = [0, 7, 7, u32::MAX - 1][i % 4];
            e.age = Duration::from_micros([0, 5_000_000, 1, 123][i % 4]);
        }
        seal_batch(&key, &mut envs);
        let sent = offers(&envs, 40);
        for d in [Dialect::V1, Dialect::V2, Dialect::V3] {
            let (got, _) =
                round_trip_with(OfferEncoder::new(d), &[sent[..5].to_vec(), sent[5..].to_vec()]);
            assert_eq!(got, sent, "{d:?}");
        }
        // A hop count one more than which would overflow goes as a plain envelope.
        let mut last = envelope("team-07", 99, &["county-hq"], 9);
        last.hop_count = u32::MAX;
        let sent = vec![sent[0].clone(), Frame::Offer { offer: 90, envelope: last }];
        let (got, _) = round_trip(std::slice::from_ref(&sent));
        assert_eq!(got, sent);
    }

    #[test]
    fn parts_of_batches_split_across_frames_and_interleaved_still_decode_and_verify() {
        let (k1, k2) = (Key::new(1), Key::new(2));
        let a = sealed(&k1, "team-01", 16, 10);
        let b = sealed(&k2, "team-02", 11, 10);
        // Every third envelope of a, then b interleaved with the rest of a (in reverse), a
        // group message for many destinations as a plain frame in the middle.
        let mut frames = Vec::new();
        let mut n = 100;
        let mut push = |e: &Envelope, frames: &mut Vec<Frame>| {
            n += 3;
            frames.push(Frame::Offer { offer: n, envelope: e.clone() });
        };
        let mut first = Vec::new();
        for e in a.iter().step_by(3) {
            push(e, &mut first);
        }
        let many: Vec<String> = (0..70).map(|i| format!("team-{i:03}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let mut group = vec![envelope("county-hq", 7, &many, 5)];
        seal_batch(&k1, &mut group);
        let mut second = Vec::new();
        for (i, e) in a.iter().enumerate().rev().filter(|(i, _)| i % 3 != 0) {
            push(e, &mut second);
            if let Some(x) = b.get(i) {
                push(x, &mut second);
            }
            if i == 8 {
                push(&group[0], &mut second);
            }
        }
        frames.extend(first.clone());
        frames.extend(second.clone());
        let (got, _) = round_trip(&[first, second]);
        assert_eq!(got, frames);
        for f in &got {
            let Frame::Offer { envelope, .. } = f else { unreachable!() };
            let key = if envelope.origin.as_str() == "team-02" { &k2 } else { &k1 };
            assert!(authentic(key, f), "{:?}", envelope.id);
        }
    }

    #[test]
    fn a_long_stream_outgrows_both_windows_and_stays_exact() {
        let key = Key::new(3);
        let mut groups = Vec::new();
        let mut offer = 1;
        // 600 batches (more than the batch window) from 40 origins, each to its own
        // destinations (more strings than the string window), sent in groups of 50.
        let mut all = Vec::new();
        for b in 0..600u32 {
            let origin = format!("team-{:02}", b % 40);
            let dest = format!("dest-{b:05}");
            let mut envs: Vec<Envelope> = (0..(1 + b % 16))
                .map(|i| envelope(&origin, b * 100 + i, &[&dest, &format!("x-{b}-{i}")], 3))
                .collect();
            seal_batch(&key, &mut envs);
            all.extend(offers(&envs, offer));
            offer += envs.len() as u64;
        }
        // Old batches come back after the window moved on (a message offered again).
        let again: Vec<Frame> = all[..40].to_vec();
        for chunk in all.chunks(50) {
            groups.push(chunk.to_vec());
        }
        groups.push(again);
        let expected: Vec<Frame> = groups.concat();
        let (got, _) = round_trip(&groups);
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "a decoded envelope differs");
    }

    fn encoded(frames: &[Frame]) -> pb::CompactOffers {
        encoded_in(Dialect::V1, frames)
    }

    fn encoded_in(dialect: Dialect, frames: &[Frame]) -> pb::CompactOffers {
        let mut enc = OfferEncoder::new(dialect);
        let mut out = BytesMut::new();
        enc.encode(frames, &mut out);
        let mut d = FrameDecoder::new(crate::wire::DEFAULT_MAX_FRAME);
        d.extend(&out);
        let (len, prefix) = super::super::peek_varint(&out).unwrap().unwrap();
        let body = &out[prefix..prefix + len as usize];
        match pb::Frame::decode(body).unwrap().kind {
            Some(pb::frame::Kind::CompactOffers(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    fn fails(c: pb::CompactOffers, what: &str) {
        fails_in(Dialect::NEWEST, c, what)
    }

    fn fails_in(dialect: Dialect, c: pb::CompactOffers, what: &str) {
        match OfferDecoder::new(dialect).decode(c) {
            Err(e) => assert!(e.to_string().contains(what), "{e} does not say {what:?}"),
            Ok(f) => panic!("decoded {} offers, expected an error saying {what:?}", f.len()),
        }
    }

    #[test]
    fn references_to_entries_never_sent_hostile_sizes_and_missing_hashes_are_errors() {
        let key = Key::new(1);
        let sent = offers(&sealed(&key, "team-01", 5, 8), 1);
        let good = encoded(&sent);
        assert_eq!(OfferDecoder::new(Dialect::NEWEST).decode(good.clone()).unwrap(), sent);

        let mut c = good.clone();
        c.strings.clear();
        fails(c, "back referred to, the table holds 0");
        let mut c = good.clone();
        c.seals.clear();
        fails(c, "batch seal 1 back referred to, the table holds 0");
        let mut c = good.clone();
        c.strings.push("x".repeat(MAX_STRING + 1));
        fails(c, "a 257-byte string");
        let mut c = good.clone();
        c.strings = vec![String::new(); FRAME_STRINGS as usize + 1];
        fails(c, "more new table entries");
        let mut c = good.clone();
        c.seals[0].count = 17;
        fails(c, "for 17 envelopes");
        let mut c = good.clone();
        c.envelopes[0].index_delta = 9;
        fails(c, "envelope 9 of a batch of 5");
        let mut c = good.clone();
        c.envelopes[0].lifetime_us = None;
        fails(c, "no lifetime");
        // Amplification: many envelopes repeating a long destination list.
        let mut c = good.clone();
        let copy = pb::CompactEnvelope { batch: 1, ..Default::default() };
        c.envelopes.extend(std::iter::repeat_n(copy, MAX_ENVELOPES));
        fails(c, "envelopes in one frame (at most 128)");
        let mut c = good.clone();
        c.envelopes[0].destinations = vec![1; MAX_COMPACT_DESTINATIONS + 1];
        fails(c, "65 destinations");
        // Only four of five leaves: the fifth's branch needs a hash, which goes missing.
        let mut c = encoded(&sent[..4]);
        assert_eq!(c.envelopes[0].path.len(), HASH);
        c.envelopes[0].path = Bytes::new();
        fails(c, "path hash the receiver cannot compute is missing");
        let mut c = good.clone();
        c.envelopes[4].path = Bytes::from(vec![0; HASH]);
        fails(c, "more path hashes");

        // A path hash altered on the way decodes, and the rebuilt seal does not verify.
        let partial = encoded(&[sent[0].clone(), sent[4].clone()]);
        let mut c = partial.clone();
        let mut path = c.envelopes[0].path.to_vec();
        assert!(!path.is_empty());
        path[0] ^= 1;
        c.envelopes[0].path = path.into();
        let got = OfferDecoder::new(Dialect::NEWEST).decode(c).unwrap();
        assert!(!authentic(&key, &got[0]));
        assert!(
            OfferDecoder::new(Dialect::NEWEST)
                .decode(partial)
                .unwrap()
                .iter()
                .all(|f| authentic(&key, f))
        );

        // compact-v3: the same limits, and its own faults.
        let v3 = encoded_in(Dialect::V3, &sent);
        assert_eq!(v3.envelopes_v3.len(), 5);
        assert_eq!(OfferDecoder::new(Dialect::V3).decode(v3.clone()).unwrap(), sent);
        let mut c = v3.clone();
        c.envelopes = good.envelopes.clone();
        fails(c, "envelopes of two dialects in one frame");
        let mut c = v3.clone();
        c.envelopes_v3[0].id = Bytes::new();
        fails(c, "no previous id");
        // Four bytes an envelope stand for a whole one: the limit counts them too, before
        // anything is built.
        let mut c = v3.clone();
        let copy = pb::CompactEnvelopeV3 { batch: 1, ..Default::default() };
        c.envelopes_v3.extend(std::iter::repeat_n(copy, MAX_ENVELOPES));
        fails(c, "133 envelopes in one frame (at most 128)");
        let mut c = v3.clone();
        c.envelopes_v3[1].precedence = u32::MAX;
        fails(c, "precedence 4294967294");
        // Counted before protobuf builds them: empty entries, two bytes each.
        let refused_on_the_wire = |c: pb::CompactOffers| {
            let mut out = BytesMut::new();
            encode_pb(&pb::Frame { kind: Some(pb::frame::Kind::CompactOffers(c)) }, &mut out);
            let mut dec = FrameDecoder::with_compact(crate::wire::DEFAULT_MAX_FRAME, Dialect::V3);
            dec.extend(&out);
            dec.next_frame().unwrap_err().to_string()
        };
        // The count stops at the first entry past the limit: 129 of 200.
        let e = refused_on_the_wire(pb::CompactOffers {
            envelopes_v3: vec![Default::default(); 200],
            ..Default::default()
        });
        assert!(e.contains("129 envelopes in one frame (at most 128)"), "{e}");
        let e = refused_on_the_wire(pb::CompactOffers {
            envelopes: vec![Default::default(); 129],
            ..Default::default()
        });
        assert!(e.contains("129 envelopes in one frame (at most 128)"), "{e}");
        let e = refused_on_the_wire(pb::CompactOffers {
            strings: vec![String::new(); FRAME_STRINGS as usize + 1],
            ..Default::default()
        });
        assert!(e.contains("more new table entries"), "{e}");
        // A node takes no dialect newer than it announced.
        fails_in(Dialect::V2, v3.clone(), "compact-v3 envelopes, which this node did not announce");
        let v2 = encoded_in(Dialect::V2, &sent);
        assert!(v2.envelopes[1].id.is_empty());
        fails_in(Dialect::V1, v2.clone(), "an id relative to the previous one (compact-v2)");
        assert_eq!(OfferDecoder::new(Dialect::V2).decode(v2).unwrap(), sent);

        // A decoder that did not announce the capability refuses the frame.
        let mut out = BytesMut::new();
        OfferEncoder::new(Dialect::V1).encode(&sent, &mut out);
        let mut plain = FrameDecoder::new(crate::wire::DEFAULT_MAX_FRAME);
        plain.extend(&out);
        let e = plain.next_frame().unwrap_err();
        assert!(e.to_string().contains("compact-v1"), "{e}");
    }
}
