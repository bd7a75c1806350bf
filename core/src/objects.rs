//! Large objects: photos, map extracts, drone imagery.
//!
//! An object travels as one **manifest** message and **chunk** messages, all ordinary messages
//! of its origin with the object's address, precedence and lifetime. So every rule a message
//! has, a chunk has: each is sealed by the origin (one signature a batch) and verified by every
//! relay on its own, custodied hop by hop (a cut keeps what crossed; a restarted relay
//! resumes from what it holds), queued by precedence (a FLASH order waits at most for the chunk
//! on the wire), deduplicated, expired, and addressed to a node, group or topic.
//!
//! Only the destination treats them differently: instead of the inbox, chunks go to the
//! `object_chunks` table, checked against the manifest (index, length, SHA-256) as soon as
//! both are here. When the last one is in, one inbox item stands for the object (content type
//! [`OBJECT_CONTENT_TYPE`], payload: the manifest), the origin's receipt is sent, and the
//! bytes are read back chunk by chunk ([`Node::object_chunk`]). An object whose lifetime ends
//! incomplete is dropped with a report saying how much arrived; one whose chunks do not match
//! its manifest (only its origin could have made them) is refused. The chunks go when the
//! object's inbox item is pruned.
//!
//! The origin splits and compresses (the shell streams the file); chunks are sized for the
//! narrowest medium a node has ([`chunk_size_for`]), since a relay cannot split them again.

use std::time::Duration;

use bytes::Bytes;

use super::frame::InboxRecord;
use super::node::{Event, Node, Submission, SubmitError};
use super::store::{StoreError, Table};
use super::types::{
    Address, Envelope, Medium, MessageId, Outcome, Precedence, Time, TrafficStatus,
};
use super::{schema, wire};

/// Content type of an object's manifest message.
pub const MANIFEST_CONTENT_TYPE: &str = "application/vnd.relaymesh.manifest";
/// Content type of an object's chunk messages.
pub const CHUNK_CONTENT_TYPE: &str = "application/vnd.relaymesh.chunk";
/// Content type of the inbox item that stands for a delivered object (payload: its manifest).
pub const OBJECT_CONTENT_TYPE: &str = "application/vnd.relaymesh.object";

/// Whether applications may not use a content type (objects' own).
pub fn is_reserved(content_type: &str) -> bool {
    [MANIFEST_CONTENT_TYPE, CHUNK_CONTENT_TYPE, OBJECT_CONTENT_TYPE].contains(&content_type)
}

/// Chunk size for a medium: about 130 ms on the wire at 1 Mbit/s for satellite, so a FLASH
/// order queued behind a chunk waits about that long.
pub fn chunk_bytes(medium: Medium) -> u32 {
    match medium {
        Medium::Satellite => 16 * 1024,
        Medium::Wireless => 64 * 1024,
        Medium::Public => 256 * 1024,
    }
}

/// Chunk size for an object from a node whose links use `media`: the narrowest medium's
/// (satellite's when there are none).
pub fn chunk_size_for(media: impl IntoIterator<Item = Medium>) -> u32 {
    media.into_iter().map(chunk_bytes).min().unwrap_or(chunk_bytes(Medium::Satellite))
}

/// `data` cut into chunks of `chunk_size` bytes (the last may be shorter; an empty object is
/// one empty chunk), sharing its buffer.
pub fn cut(data: &Bytes, chunk_size: u32) -> Vec<Bytes> {
    let size = (chunk_size as usize).max(1);
    if data.is_empty() {
        return vec![Bytes::new()];
    }
    (0..data.len()).step_by(size).map(|at| data.slice(at..(at + size).min(data.len()))).collect()
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// What an object is and how it was cut, signed by its origin as a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// File name as the sender gave it (no directories).
    pub name: String,
    /// The object's own media type.
    pub content_type: String,
    /// Bytes of the object.
    pub size: u64,
    /// The chunks carry the object compressed with zstd.
    pub zstd: bool,
    /// Bytes across all chunks.
    pub encoded_size: u64,
    /// Every chunk but the last carries this many bytes.
    pub chunk_size: u32,
    /// SHA-256 of each chunk's data.
    pub chunks: Vec<[u8; 32]>,
    /// SHA-256 of the object itself.
    pub sha256: [u8; 32],
}

impl Manifest {
    /// Whether it holds together (the sizes agree, the name is a bare file name).
    pub fn check(&self) -> Result<(), String> {
        check_name(&self.name)?;
        if self.content_type.is_empty() || self.content_type.len() > 128 {
            return Err("content type must be 1 to 128 bytes".into());
        }
        if self.chunk_size == 0 || self.chunks.is_empty() {
            return Err("no chunks".into());
        }
        let n = self.chunks.len() as u64;
        let full = (n - 1) * u64::from(self.chunk_size);
        if self.encoded_size < full || self.encoded_size > full + u64::from(self.chunk_size) {
            return Err(format!(
                "{} chunks of {} bytes cannot hold {} bytes",
                n, self.chunk_size, self.encoded_size
            ));
        }
        if !self.zstd && self.size != self.encoded_size {
            return Err("an uncompressed object's size differs from its chunks'".into());
        }
        Ok(())
    }

    /// How many bytes chunk `index` carries (`None`: no such chunk).
    pub fn chunk_len(&self, index: u32) -> Option<u64> {
        let i = u64::from(index);
        let n = self.chunks.len() as u64;
        if i >= n {
            return None;
        }
        let cs = u64::from(self.chunk_size);
        Some(if i + 1 < n { cs } else { self.encoded_size - i * cs })
    }

    /// Whether `data` is chunk `index`, as the manifest says.
    pub fn verify(&self, index: u32, data: &[u8]) -> Result<(), String> {
        let len = self.chunk_len(index).ok_or_else(|| {
            format!("chunk {index} is out of range (the object has {})", self.chunks.len())
        })?;
        if data.len() as u64 != len {
            return Err(format!("chunk {index} has {} bytes, not {len}", data.len()));
        }
        if sha256(data) != self.chunks[index as usize] {
            return Err(format!("chunk {index} does not match the manifest's hash"));
        }
        Ok(())
    }
}

/// A bare file name: 1 to 255 bytes, no directories (`/` or `\`), not hidden (a leading
/// dot, which also rules out `.` and `..`), no control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.starts_with('.')
        || name.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        return Err(format!(
            "object name {name:?}: a file name of 1 to 255 bytes, without directories, control \
             characters or a leading dot"
        ));
    }
    Ok(())
}

/// One piece of an object, as its chunk message carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The manifest message's id (the object's id).
    pub object: MessageId,
    pub index: u32,
    pub data: Bytes,
}

/// An object to send: the shell has read, compressed and cut it.
#[derive(Clone, Debug)]
pub struct ObjectSubmission {
    pub to: Address,
    pub precedence: Precedence,
    pub lifetime: Duration,
    /// A receipt for the whole object (chunks ask for none).
    pub receipt: bool,
    pub status: TrafficStatus,
    pub name: String,
    pub content_type: String,
    /// Bytes of the object itself.
    pub size: u64,
    /// `chunks` carry it compressed with zstd.
    pub zstd: bool,
    /// SHA-256 of the object itself.
    pub sha256: [u8; 32],
    /// Every chunk but the last has this many bytes.
    pub chunk_size: u32,
    pub chunks: Vec<Bytes>,
}

/// How far an object has got, as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ObjectProgress {
    /// Its manifest, once known here.
    pub manifest: Option<Manifest>,
    /// As a destination: chunks stored here.
    pub received: u32,
    /// As a destination: its inbox cursor, once delivered.
    pub delivered: Option<u64>,
    /// As a destination: refused (its chunks did not match its manifest).
    pub refused: bool,
    /// As the origin: chunks in all, and those whose custody has passed on.
    pub sent: Option<(u32, u32)>,
}

impl ObjectProgress {
    /// Chunks in the object, when known.
    pub fn total(&self) -> Option<u32> {
        self.manifest.as_ref().map(|m| m.chunks.len() as u32)
    }
}

/// What a node keeps of one object (table `objects`).
#[derive(Clone, Debug, Default)]
pub(crate) struct ObjectRecord {
    pub manifest: Option<InboxRecord>,
    pub received: u32,
    pub deadline: Time,
    pub cursor: Option<u64>,
    pub chunk_ids: Vec<MessageId>,
    pub failed_until: Option<Time>,
}

/// The chunks of this node's own objects that it still holds (built from the store when the
/// node opens, kept as they are submitted and pass on).
#[derive(Debug, Default)]
pub(crate) struct Sending {
    object_of: rustc_hash::FxHashMap<MessageId, MessageId>,
    held: rustc_hash::FxHashMap<MessageId, u32>,
}

impl Sending {
    fn add(&mut self, object: MessageId, chunk: MessageId) {
        self.object_of.insert(chunk, object);
        *self.held.entry(object).or_default() += 1;
    }

    /// A held message left this node's store: if it is a chunk of one of its objects, one
    /// fewer is held.
    pub(crate) fn passed(&mut self, id: &MessageId) {
        if let Some(object) = self.object_of.remove(id)
            && let Some(n) = self.held.get_mut(&object)
        {
            debug_assert!(*n > 0, "object {object} counted no chunk held");
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.held.remove(&object);
            }
        }
    }

    fn held(&self, object: &MessageId) -> u32 {
        self.held.get(object).copied().unwrap_or(0)
    }
}

fn arriving_key(id: &MessageId) -> Vec<u8> {
    let mut k = vec![0];
    k.extend_from_slice(&id.0);
    k
}

fn sent_key(id: &MessageId) -> Vec<u8> {
    let mut k = vec![1];
    k.extend_from_slice(&id.0);
    k
}

fn chunk_key(id: &MessageId, index: u32) -> Vec<u8> {
    let mut k = id.0.to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

impl Node {
    /// An object (see the module's text): its manifest and chunks are accepted together or
    /// not at all (the quota is checked for the whole object first), durable once the batch
    /// commits, like [`Node::handle_submit`]. Returns the object's id (its manifest's).
    pub fn handle_submit_object(
        &mut self,
        now: Time,
        sub: ObjectSubmission,
    ) -> Result<MessageId, SubmitError> {
        if let Some(e) = &self.poisoned {
            return Err(SubmitError::Storage(e.clone()));
        }
        let invalid = SubmitError::Invalid;
        let encoded: u64 = sub.chunks.iter().map(|c| c.len() as u64).sum();
        let size = sub.size.max(encoded);
        if size > self.cfg.max_object {
            return Err(invalid(format!(
                "object of {size} bytes exceeds [limits] max_object of {} bytes",
                self.cfg.max_object
            )));
        }
        if sub.chunk_size as usize + 64 > self.cfg.max_payload {
            return Err(invalid(format!(
                "chunks of {} bytes exceed the payload limit of {}",
                sub.chunk_size, self.cfg.max_payload
            )));
        }
        if let Some(i) =
            sub.chunks.iter().rev().skip(1).position(|c| c.len() != sub.chunk_size as usize)
        {
            return Err(invalid(format!(
                "chunk {} is not {} bytes",
                sub.chunks.len() - 2 - i,
                sub.chunk_size
            )));
        }
        let manifest = Manifest {
            name: sub.name,
            content_type: sub.content_type,
            size: sub.size,
            zstd: sub.zstd,
            encoded_size: encoded,
            chunk_size: sub.chunk_size,
            chunks: sub.chunks.iter().map(|c| sha256(c)).collect(),
            sha256: sub.sha256,
        };
        manifest.check().map_err(invalid)?;
        let message = |content_type: &str, payload: Vec<u8>, receipt: bool| Submission {
            to: sub.to.clone(),
            precedence: sub.precedence,
            lifetime: sub.lifetime,
            content_type: content_type.into(),
            payload: payload.into(),
            receipt,
            status: sub.status,
            key: None,
            replaces: None,
        };
        let head = self.build_envelope(
            now,
            message(MANIFEST_CONTENT_TYPE, wire::objects::encode_manifest(&manifest), sub.receipt),
        )?;
        let object = head.id;
        let mut envelopes = vec![head];
        for (index, data) in sub.chunks.into_iter().enumerate() {
            let chunk = Chunk { object, index: index as u32, data };
            let payload = wire::objects::encode_chunk(&chunk);
            envelopes.push(self.build_envelope(now, message(CHUNK_CONTENT_TYPE, payload, false))?);
        }
        let weight: u64 = envelopes.iter().map(Envelope::weight).sum();
        self.admit(sub.precedence, weight).map_err(|e| {
            SubmitError::Refused(format!("no room for all {weight} bytes of the object: {e}"))
        })?;
        let local = self.is_local_member(&sub.to);
        let record = ObjectRecord {
            chunk_ids: envelopes[1..].iter().map(|e| e.id).collect(),
            ..ObjectRecord::default()
        };
        let mut result = self.store.put(
            Table::Objects,
            &sent_key(&object),
            &wire::objects::encode_record(&record),
        );
        for env in envelopes {
            if result.is_err() {
                break;
            }
            if env.id != object && !env.destinations.is_empty() {
                self.sending.add(object, env.id);
            }
            result = self.accept_local(now, env, local);
        }
        if let Err(e) = result {
            self.poison(e.clone());
            return Err(SubmitError::Storage(e));
        }
        Ok(object)
    }

    fn object_record(&mut self, key: &[u8]) -> Result<Option<ObjectRecord>, StoreError> {
        match self.store.get(Table::Objects, key)? {
            None => Ok(None),
            Some(b) => wire::objects::decode_record(&b)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("object record: {e}"))),
        }
    }

    fn put_object_record(&mut self, key: &[u8], r: &ObjectRecord) -> Result<(), StoreError> {
        self.store.put(Table::Objects, key, &wire::objects::encode_record(r))
    }

    /// An incomplete object's record, made with its expiry entry when it is the first part here.
    fn arriving(&mut self, id: &MessageId, deadline: Time) -> Result<ObjectRecord, StoreError> {
        if let Some(r) = self.object_record(&arriving_key(id))? {
            return Ok(r);
        }
        self.store.put(Table::ObjectExpiry, &schema::time_prefixed(deadline, &id.0), b"")?;
        self.next_object_expiry =
            Some(self.next_object_expiry.map_or(deadline, |t| t.min(deadline)));
        Ok(ObjectRecord { deadline, ..ObjectRecord::default() })
    }

    /// A manifest or chunk for this node (its dedup record is written): stored towards its
    /// object, which is delivered once whole.
    pub(super) fn deliver_object_part(
        &mut self,
        now: Time,
        env: &Envelope,
        age: Duration,
    ) -> Result<(), StoreError> {
        let deadline = now + env.lifetime.saturating_sub(age);
        if env.content_type == MANIFEST_CONTENT_TYPE {
            let manifest = match wire::objects::decode_manifest(&env.payload)
                .map_err(|e| e.to_string())
                .and_then(|m| m.check().map(|()| m))
            {
                Ok(m) => m,
                Err(why) => {
                    return self.refuse_part(now, env, age, &format!("bad manifest: {why}"));
                }
            };
            let key = arriving_key(&env.id);
            let mut rec = self.arriving(&env.id, deadline)?;
            if rec.failed_until.is_some() || rec.manifest.is_some() {
                return Ok(());
            }
            // Chunks that came first are checked now.
            let mut early = Vec::new();
            self.store.scan(
                Table::ObjectChunks,
                &env.id.0,
                Some(&chunk_key(&env.id, u32::MAX)),
                &mut |k, v| {
                    let index = u32::from_be_bytes(k[16..20].try_into().unwrap_or_default());
                    early.push((index, manifest.verify(index, v)));
                    true
                },
            )?;
            rec.manifest = Some(InboxRecord {
                envelope: env.clone(),
                delivered_at: now,
                age,
                withdrawn: None,
            });
            if let Some((_, Err(why))) = early.into_iter().find(|(_, r)| r.is_err()) {
                return self.refuse_object(now, &env.id, rec, &why);
            }
            self.put_object_record(&key, &rec)?;
            return self.complete_object(now, &env.id, rec);
        }
        let chunk = match wire::objects::decode_chunk(env.payload.clone()) {
            Ok(c) => c,
            Err(e) => return self.refuse_part(now, env, age, &format!("bad chunk: {e}")),
        };
        let key = arriving_key(&chunk.object);
        let mut rec = self.arriving(&chunk.object, deadline)?;
        if rec.failed_until.is_some() || rec.cursor.is_some() {
            return Ok(());
        }
        if let Some(m) = &rec.manifest {
            let manifest = wire::objects::decode_manifest(&m.envelope.payload)
                .map_err(|e| StoreError::Corrupt(format!("stored manifest: {e}")))?;
            if let Err(why) = manifest.verify(chunk.index, &chunk.data) {
                return self.refuse_object(now, &chunk.object, rec, &why);
            }
        }
        let ck = chunk_key(&chunk.object, chunk.index);
        if self.store.get(Table::ObjectChunks, &ck)?.is_none() {
            self.store.put(Table::ObjectChunks, &ck, &chunk.data)?;
            rec.received += 1;
        }
        self.put_object_record(&key, &rec)?;
        self.complete_object(now, &chunk.object, rec)
    }

    /// Delivers the object if every chunk is here.
    fn complete_object(
        &mut self,
        now: Time,
        id: &MessageId,
        mut rec: ObjectRecord,
    ) -> Result<(), StoreError> {
        let Some(head) = rec.manifest.clone() else { return Ok(()) };
        let total = wire::objects::decode_manifest(&head.envelope.payload)
            .map_err(|e| StoreError::Corrupt(format!("stored manifest: {e}")))?
            .chunks
            .len();
        if (rec.received as usize) < total {
            return Ok(());
        }
        let cursor = self.next_cursor;
        self.next_cursor += 1;
        self.meta_dirty = true;
        let age = head.age + now.saturating_since(head.delivered_at);
        let mut item = head;
        item.envelope.content_type = OBJECT_CONTENT_TYPE.into();
        item.delivered_at = now;
        item.age = age;
        self.store.put(Table::Inbox, &cursor.to_be_bytes(), &wire::encode_inbox(&item))?;
        self.store.delete(Table::ObjectExpiry, &schema::time_prefixed(rec.deadline, &id.0))?;
        rec.cursor = Some(cursor);
        self.put_object_record(&arriving_key(id), &rec)?;
        let env = &item.envelope;
        self.counters.delivered[env.precedence.index()] += 1;
        self.pending_events.push(Event::Delivered {
            cursor,
            id: *id,
            origin: env.origin.clone(),
            to: env.to.clone(),
            precedence: env.precedence,
            age,
            status: env.status,
        });
        let me = [self.cfg.node.clone()];
        self.report(now, env, Outcome::Delivered, "", age, &me)
    }

    /// A part that does not parse: only its origin could have sealed it so.
    fn refuse_part(
        &mut self,
        now: Time,
        env: &Envelope,
        age: Duration,
        why: &str,
    ) -> Result<(), StoreError> {
        tracing::warn!(id = %env.id, origin = %env.origin, "object part refused: {why}");
        self.pending_events.push(Event::Refused {
            id: env.id,
            origin: env.origin.clone(),
            precedence: env.precedence,
            reason: why.to_owned(),
        });
        let me = [self.cfg.node.clone()];
        self.report(now, env, Outcome::Refused, why, age, &me)
    }

    /// An object whose chunks do not match its manifest: its chunks go, and its record stays
    /// (marked) until its deadline so that later chunks are dropped too.
    fn refuse_object(
        &mut self,
        now: Time,
        id: &MessageId,
        mut rec: ObjectRecord,
        why: &str,
    ) -> Result<(), StoreError> {
        self.drop_chunks(id)?;
        rec.received = 0;
        rec.failed_until = Some(rec.deadline);
        self.put_object_record(&arriving_key(id), &rec)?;
        if let Some(head) = &rec.manifest {
            let env = head.envelope.clone();
            let age = head.age + now.saturating_since(head.delivered_at);
            self.refuse_part(now, &env, age, &format!("object refused: {why}"))?;
        }
        Ok(())
    }

    fn drop_chunks(&mut self, id: &MessageId) -> Result<(), StoreError> {
        let mut keys = Vec::new();
        self.store.scan(
            Table::ObjectChunks,
            &id.0,
            Some(&chunk_key(id, u32::MAX)),
            &mut |k, _| {
                keys.push(k.to_vec());
                true
            },
        )?;
        // The last index, u32::MAX, is past the bound: no manifest names that many chunks.
        for k in keys {
            self.store.delete(Table::ObjectChunks, &k)?;
        }
        Ok(())
    }

    pub(super) fn peek_object_expiry(&mut self) -> Result<Option<Time>, StoreError> {
        self.first_time(Table::ObjectExpiry)
    }

    /// Objects whose lifetime ended before they were whole: dropped, the origin told how much
    /// arrived.
    pub(super) fn expire_objects(&mut self, now: Time) -> Result<(), StoreError> {
        for k in self.due_keys(Table::ObjectExpiry, now, 1000)? {
            self.store.delete(Table::ObjectExpiry, &k)?;
            let Some(id) = MessageId::from_slice(&k[8..]) else { continue };
            let key = arriving_key(&id);
            let Some(rec) = self.object_record(&key)? else { continue };
            if rec.cursor.is_some() {
                continue;
            }
            self.drop_chunks(&id)?;
            self.store.delete(Table::Objects, &key)?;
            if rec.failed_until.is_some() {
                continue;
            }
            let Some(head) = rec.manifest else { continue };
            let env = head.envelope;
            let total = wire::objects::decode_manifest(&env.payload).map_or(0, |m| m.chunks.len());
            let why = format!("{} of {} chunks arrived", rec.received, total);
            tracing::info!(id = %id, origin = %env.origin, "object expired incomplete: {why}");
            let me = vec![self.cfg.node.clone()];
            self.pending_events.push(Event::Expired {
                id,
                origin: env.origin.clone(),
                precedence: env.precedence,
                destinations: me.clone(),
            });
            let age = env.lifetime;
            self.report(now, &env, Outcome::Expired, &why, age, &me)?;
        }
        self.next_object_expiry = self.peek_object_expiry()?;
        Ok(())
    }

    /// A delivered object's inbox item was pruned: its chunks go with it.
    pub(super) fn forget_object(&mut self, id: &MessageId) -> Result<(), StoreError> {
        self.drop_chunks(id)?;
        self.store.delete(Table::Objects, &arriving_key(id))?;
        Ok(())
    }

    /// Which chunks of its own objects the store holds (when the node opens).
    pub(super) fn load_sending(&mut self) -> Result<Sending, StoreError> {
        let mut sent = Vec::new();
        self.store.scan(Table::Objects, &[1], Some(&[2]), &mut |k, v| {
            if let (Some(id), Ok(r)) =
                (MessageId::from_slice(&k[1..]), wire::objects::decode_record(v))
            {
                sent.push((id, r.chunk_ids));
            }
            true
        })?;
        let mut s = Sending::default();
        for (object, chunks) in sent {
            for chunk in chunks {
                let mut held = false;
                let mut end = chunk.0.to_vec();
                end.push(0xff);
                self.store.scan(Table::HeldIds, &chunk.0, Some(&end), &mut |_, _| {
                    held = true;
                    false
                })?;
                if held {
                    s.add(object, chunk);
                }
            }
        }
        Ok(s)
    }

    /// The origin's record of an object goes with its status.
    pub(super) fn forget_sent_object(&mut self, id: &MessageId) -> Result<(), StoreError> {
        if self.store.delete(Table::Objects, &sent_key(id))? {
            self.sending.held.remove(id);
            self.sending.object_of.retain(|_, o| o != id);
        }
        Ok(())
    }

    /// How far object `id` has got here (`None`: this node knows nothing of it).
    pub fn object_progress(
        &mut self,
        id: &MessageId,
    ) -> Result<Option<ObjectProgress>, StoreError> {
        let arriving = self.object_record(&arriving_key(id))?;
        let sent = self.object_record(&sent_key(id))?;
        if arriving.is_none() && sent.is_none() {
            return Ok(None);
        }
        let mut p = ObjectProgress::default();
        if let Some(r) = arriving {
            p.manifest = match &r.manifest {
                Some(m) => wire::objects::decode_manifest(&m.envelope.payload).ok(),
                None => None,
            };
            p.received = r.received;
            p.delivered = r.cursor;
            p.refused = r.failed_until.is_some();
        }
        if let Some(r) = sent {
            let n = r.chunk_ids.len() as u32;
            p.sent = Some((n, n.saturating_sub(self.sending.held(id))));
        }
        Ok(Some(p))
    }

    /// Refuses to steer an object this node knows: a cancel or replacement of its manifest
    /// alone would leave its chunks travelling (and a destination holding the manifest would
    /// still deliver it).
    pub(super) fn refuse_object_steering(&mut self, id: &MessageId) -> Result<(), SubmitError> {
        for key in [sent_key(id), arriving_key(id)] {
            if self.store.get(Table::Objects, &key).map_err(SubmitError::Storage)?.is_some() {
                return Err(SubmitError::Invalid(format!(
                    "{id} is an object: objects cannot be cancelled or replaced yet"
                )));
            }
        }
        Ok(())
    }

    /// Objects on their way: arriving here incomplete, or sent from here with chunks still
    /// held here (at most `limit`).
    pub fn objects_in_progress(
        &mut self,
        limit: usize,
    ) -> Result<Vec<(MessageId, ObjectProgress)>, StoreError> {
        let mut ids = Vec::new();
        self.store.scan(Table::Objects, b"", None, &mut |k, _| {
            if let Some(id) = MessageId::from_slice(&k[1..]) {
                ids.push(id);
            }
            true
        })?;
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            let Some(p) = self.object_progress(&id)? else { continue };
            let arriving =
                (p.received > 0 || p.manifest.is_some()) && p.delivered.is_none() && !p.refused;
            let sending = p.sent.is_some_and(|(n, passed)| passed < n);
            if arriving || sending {
                out.push((id, p));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Chunk `index` of an object stored here.
    pub fn object_chunk(
        &mut self,
        id: &MessageId,
        index: u32,
    ) -> Result<Option<Bytes>, StoreError> {
        Ok(self.store.get(Table::ObjectChunks, &chunk_key(id, index))?.map(Bytes::from))
    }

    /// The manifest of an object delivered here.
    pub fn object_manifest(&mut self, id: &MessageId) -> Result<Option<Manifest>, StoreError> {
        let Some(r) = self.object_record(&arriving_key(id))? else { return Ok(None) };
        let Some(head) = r.manifest.filter(|_| r.cursor.is_some()) else { return Ok(None) };
        wire::objects::decode_manifest(&head.envelope.payload)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("stored manifest: {e}")))
    }
}
