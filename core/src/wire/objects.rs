//! Large objects' manifests, chunks and records as protobuf (`ObjectManifest`, `ObjectChunk`,
//! `ObjectRecord`).

use bytes::Bytes;
use prost::Message;

use super::WireError;
use super::convert::{inbox_from_pb, inbox_to_pb};
use super::pb;
use crate::objects::{Chunk, Manifest, ObjectRecord};
use crate::types::{MessageId, Time};

fn hash(what: &'static str, b: &[u8]) -> Result<[u8; 32], WireError> {
    b.try_into().map_err(|_| WireError::invalid(what, format!("{} bytes, not 32", b.len())))
}

fn id(what: &'static str, b: &[u8]) -> Result<MessageId, WireError> {
    MessageId::from_slice(b).ok_or_else(|| WireError::invalid(what, "not a message id"))
}

pub fn encode_manifest(m: &Manifest) -> Vec<u8> {
    pb::ObjectManifest {
        name: m.name.clone(),
        content_type: m.content_type.clone(),
        size: m.size,
        zstd: m.zstd,
        encoded_size: m.encoded_size,
        chunk_size: m.chunk_size,
        chunks: m.chunks.iter().map(|h| h.to_vec().into()).collect(),
        sha256: m.sha256.to_vec().into(),
    }
    .encode_to_vec()
}

/// A manifest as its origin wrote it; [`Manifest::check`] says whether it holds together.
pub fn decode_manifest(b: &[u8]) -> Result<Manifest, WireError> {
    let m = pb::ObjectManifest::decode(b).map_err(|e| WireError::Decode(e.to_string()))?;
    Ok(Manifest {
        name: m.name,
        content_type: m.content_type,
        size: m.size,
        zstd: m.zstd,
        encoded_size: m.encoded_size,
        chunk_size: m.chunk_size,
        chunks: m.chunks.iter().map(|h| hash("chunk hash", h)).collect::<Result<_, _>>()?,
        sha256: hash("object hash", &m.sha256)?,
    })
}

pub fn encode_chunk(c: &Chunk) -> Vec<u8> {
    pb::ObjectChunk { object: c.object.0.to_vec().into(), index: c.index, data: c.data.clone() }
        .encode_to_vec()
}

pub fn decode_chunk(b: Bytes) -> Result<Chunk, WireError> {
    let c = pb::ObjectChunk::decode(b).map_err(|e| WireError::Decode(e.to_string()))?;
    Ok(Chunk { object: id("chunk's object", &c.object)?, index: c.index, data: c.data })
}

pub(crate) fn encode_record(r: &ObjectRecord) -> Vec<u8> {
    pb::ObjectRecord {
        manifest: r.manifest.as_ref().map(inbox_to_pb),
        received: r.received,
        deadline_us: r.deadline.as_micros(),
        cursor_plus_one: r.cursor.map_or(0, |c| c + 1),
        chunk_ids: r.chunk_ids.iter().map(|i| i.0.to_vec().into()).collect(),
        failed_us: r.failed_until.map_or(0, |t| t.as_micros().max(1)),
    }
    .encode_to_vec()
}

pub(crate) fn decode_record(b: &[u8]) -> Result<ObjectRecord, WireError> {
    let r = pb::ObjectRecord::decode(b).map_err(|e| WireError::Decode(e.to_string()))?;
    Ok(ObjectRecord {
        manifest: r.manifest.map(inbox_from_pb).transpose()?,
        received: r.received,
        deadline: Time::from_micros(r.deadline_us),
        cursor: r.cursor_plus_one.checked_sub(1),
        chunk_ids: r.chunk_ids.iter().map(|i| id("chunk id", i)).collect::<Result<_, _>>()?,
        failed_until: (r.failed_us != 0).then(|| Time::from_micros(r.failed_us)),
    })
}
