//! Key layouts of the store's tables (see `core::store::Table`). Integers are big-endian so
//! byte order is numeric order.

use super::types::{MessageId, NodeId, Precedence, Time};

pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn read_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// `Queue` key: destination, 0x00, rank (FLASH = 0), seq.
pub fn queue_key(dest: &NodeId, p: Precedence, seq: u64) -> Vec<u8> {
    let mut k = queue_lane_prefix(dest, p);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The prefix shared by every `Queue` key of one (destination, precedence) lane.
pub fn queue_lane_prefix(dest: &NodeId, p: Precedence) -> Vec<u8> {
    let mut k = Vec::with_capacity(dest.as_str().len() + 10);
    k.extend_from_slice(dest.as_str().as_bytes());
    k.push(0);
    k.push(p.rank());
    k
}

/// The `Queue` keys of every lane of one destination: `from <= key < to`.
pub fn queue_destination_range(dest: &NodeId) -> (Vec<u8>, Vec<u8>) {
    let mut from = dest.as_str().as_bytes().to_vec();
    let mut to = from.clone();
    from.push(0);
    to.push(1);
    (from, to)
}

/// Parses a `Queue` key back into (destination, precedence, seq).
pub fn parse_queue_key(k: &[u8]) -> Option<(NodeId, Precedence, u64)> {
    let sep = k.iter().position(|b| *b == 0)?;
    let dest = NodeId::new(std::str::from_utf8(&k[..sep]).ok()?).ok()?;
    let p = Precedence::from_rank(*k.get(sep + 1)?)?;
    let seq = read_u64(k.get(sep + 2..)?)?;
    Some((dest, p, seq))
}

/// `Expiry` key: deadline, seq.
pub fn expiry_key(deadline: Time, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&deadline.as_micros().to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// `Delivered` key: message id, then origin (ids are unique per origin only).
pub fn delivered_key(id: &MessageId, origin: &NodeId) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + origin.as_str().len());
    k.extend_from_slice(&id.0);
    k.extend_from_slice(origin.as_str().as_bytes());
    k
}

/// `Keys` key: origin, 0x00, key.
pub fn latest_key(origin: &NodeId, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(origin.as_str().len() + 1 + key.len());
    k.extend_from_slice(origin.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `HeldIds` key: message id, seq.
pub fn held_id_key(id: &MessageId, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&id.0);
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The `Delivered` or `HeldIds` keys of message `id`: `from <= key < to`.
pub fn id_range(id: &MessageId) -> (Vec<u8>, Vec<u8>) {
    let from = id.0.to_vec();
    let mut to = from.clone();
    // Past every origin (node ids are ASCII) and every seq that follows the id.
    to.extend_from_slice(&[0xff; 9]);
    (from, to)
}

/// `DeliveredExpiry` key: time, then the `Delivered` key.
pub fn time_prefixed(t: Time, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&t.as_micros().to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// `StatusAge` key: time, id.
pub fn time_id_key(t: Time, id: &MessageId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&t.as_micros().to_be_bytes());
    k[8..].copy_from_slice(&id.0);
    k
}

/// Upper bound (exclusive) for keys that start with a time at or before `now`.
pub fn time_bound(now: Time) -> [u8; 8] {
    now.as_micros().saturating_add(1).to_be_bytes()
}

pub mod meta {
    pub const NEXT_SEQ: &[u8] = b"next_seq";
    pub const NEXT_CURSOR: &[u8] = b"next_cursor";
    pub const READ_CURSOR: &[u8] = b"read_cursor";
    pub const HELD_BYTES: &[u8] = b"held_bytes";
    pub const ADVERT_SEQ: &[u8] = b"advert_seq";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_sort_by_destination_then_precedence_then_age() {
        let a = NodeId::new("a").unwrap();
        let ab = NodeId::new("a-b").unwrap();
        let mut keys = [
            queue_key(&a, Precedence::Routine, 1),
            queue_key(&ab, Precedence::Flash, 0),
            queue_key(&a, Precedence::Flash, 9),
            queue_key(&a, Precedence::Flash, 2),
        ];
        keys.sort();
        let parsed: Vec<_> = keys.iter().map(|k| parse_queue_key(k).unwrap()).collect();
        assert_eq!(
            parsed,
            vec![
                (a.clone(), Precedence::Flash, 2),
                (a.clone(), Precedence::Flash, 9),
                (a, Precedence::Routine, 1),
                (ab, Precedence::Flash, 0),
            ]
        );
    }
}
