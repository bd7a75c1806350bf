//! Bytes each link carries, counted where the shell writes and reads frames, so that what a
//! link spends on relaymesh's own framing can be told from what users sent.
//!
//! Per neighbour and medium (every connection to that neighbour over that medium since the
//! node started, reconnections included), in each direction:
//! - offers and the payload bytes they carried (what applications submitted);
//! - offer-stream bytes: the encoded offers, payload included (the envelope's framing is
//!   this minus the payload);
//! - control-stream bytes: custody answers, adverts, link state;
//! - probe datagram bytes;
//! - UDP bytes: what QUIC put on the wire (packet headers, acknowledgements, retransmissions
//!   and the TLS handshake included; IP and UDP headers not), from quinn's connection
//!   statistics.
//!
//! Counting is a few relaxed atomic additions per write or read (not per frame).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::core::types::{Medium, NodeId};

/// The byte counts of every link of a node, by (neighbour, medium). Cheap to clone: clones
/// share the counts (the simulator keeps one across a node's restarts).
#[derive(Clone, Debug, Default)]
pub struct Traffic(Arc<Mutex<ByLink>>);

/// Counters by (neighbour, medium).
type ByLink = BTreeMap<(NodeId, Medium), Arc<LinkBytes>>;

impl Traffic {
    /// The counters of the link to `peer` over `medium`, made on first use.
    pub fn link(&self, peer: &NodeId, medium: Medium) -> Arc<LinkBytes> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((peer.clone(), medium)).or_default().clone()
    }

    /// Every link's counts so far (live connections' UDP bytes as of their last update).
    pub fn totals(&self) -> BTreeMap<(NodeId, Medium), WireBytes> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(k, v)| (k.clone(), v.read())).collect()
    }
}

/// One direction of counting, in atomics.
#[derive(Debug, Default)]
struct Side {
    offers: AtomicU64,
    payload: AtomicU64,
    offer_bytes: AtomicU64,
    control_bytes: AtomicU64,
    datagram_bytes: AtomicU64,
    udp_closed: AtomicU64,
}

/// The live counters of one link (neighbour and medium).
#[derive(Debug, Default)]
pub struct LinkBytes {
    sent: Side,
    received: Side,
    /// UDP bytes of the live connections, by connection: (sent, received).
    live: Mutex<BTreeMap<usize, (u64, u64)>>,
}

/// What one direction of a link carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionBytes {
    /// Offers (envelopes), each counted every time it was sent.
    pub offers: u64,
    /// Application payload bytes in those offers.
    pub payload: u64,
    /// Encoded offers, length prefixes and payload included.
    pub offer_bytes: u64,
    /// Control stream: custody answers, adverts, link state.
    pub control_bytes: u64,
    /// Probe datagrams.
    pub datagram_bytes: u64,
    /// UDP payload bytes QUIC sent or received (all of the above plus QUIC's own).
    pub udp_bytes: u64,
}

impl DirectionBytes {
    /// relaymesh's framing per offer: encoded offer bytes beyond the payload.
    pub fn framing_per_offer(&self) -> Option<f64> {
        (self.offers > 0)
            .then(|| self.offer_bytes.saturating_sub(self.payload) as f64 / self.offers as f64)
    }
}

/// A link's counts, both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireBytes {
    pub sent: DirectionBytes,
    pub received: DirectionBytes,
}

impl Side {
    fn read(&self, live_udp: u64) -> DirectionBytes {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DirectionBytes {
            offers: get(&self.offers),
            payload: get(&self.payload),
            offer_bytes: get(&self.offer_bytes),
            control_bytes: get(&self.control_bytes),
            datagram_bytes: get(&self.datagram_bytes),
            udp_bytes: get(&self.udp_closed) + live_udp,
        }
    }
}

/// Which stream (or datagram) bytes travelled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Offers,
    Control,
    Datagram,
}

impl LinkBytes {
    fn side(&self, sent: bool) -> &Side {
        if sent { &self.sent } else { &self.received }
    }

    /// `bytes` written (`sent`) or read on `channel`.
    pub fn add(&self, sent: bool, channel: Channel, bytes: usize) {
        let s = self.side(sent);
        let counter = match channel {
            Channel::Offers => &s.offer_bytes,
            Channel::Control => &s.control_bytes,
            Channel::Datagram => &s.datagram_bytes,
        };
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// An offer carrying `payload` bytes was written (`sent`) or read.
    pub fn offer(&self, sent: bool, payload: usize) {
        let s = self.side(sent);
        s.offers.fetch_add(1, Ordering::Relaxed);
        s.payload.fetch_add(payload as u64, Ordering::Relaxed);
    }

    /// The UDP byte counts of live connection `conn` (quinn's statistics, which only grow).
    pub fn udp(&self, conn: usize, sent: u64, received: u64) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.insert(conn, (sent, received));
    }

    /// Connection `conn` ended with these UDP byte counts: they move to the closed totals.
    pub fn udp_closed(&self, conn: usize, sent: u64, received: u64) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.remove(&conn);
        self.sent.udp_closed.fetch_add(sent, Ordering::Relaxed);
        self.received.udp_closed.fetch_add(received, Ordering::Relaxed);
    }

    pub fn read(&self) -> WireBytes {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let (s, r) = live.values().fold((0, 0), |(s, r), (a, b)| (s + a, r + b));
        WireBytes { sent: self.sent.read(s), received: self.received.read(r) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn counts_add_up_per_link_and_survive_reconnections() {
        let t = Traffic::default();
        let l = t.link(&id("b"), Medium::Satellite);
        l.offer(true, 40);
        l.add(true, Channel::Offers, 100);
        l.add(false, Channel::Control, 9);
        l.udp(1, 500, 60);
        assert_eq!(l.read().sent.udp_bytes, 500);
        l.udp(1, 700, 80); // quinn's statistics only grow: the latest replaces
        l.udp_closed(1, 800, 90);
        // A new connection to the same neighbour over the same medium adds to the same link.
        let again = t.link(&id("b"), Medium::Satellite);
        again.udp(2, 50, 5);
        again.offer(true, 40);
        again.add(true, Channel::Offers, 100);
        let w = t.totals()[&(id("b"), Medium::Satellite)];
        assert_eq!(w.sent.offers, 2);
        assert_eq!(w.sent.payload, 80);
        assert_eq!(w.sent.offer_bytes, 200);
        assert_eq!(w.sent.udp_bytes, 850);
        assert_eq!(w.received.udp_bytes, 95);
        assert_eq!(w.received.control_bytes, 9);
        assert_eq!(w.sent.framing_per_offer(), Some(60.0));
        // Another medium is another link.
        assert_eq!(t.link(&id("b"), Medium::Public).read(), WireBytes::default());
    }
}
