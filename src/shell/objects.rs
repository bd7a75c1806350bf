//! Objects over the local API: an upload is streamed to a spool file (hashed on the way, never
//! held whole in memory while it arrives), compressed with zstd where that saves at least a
//! tenth, cut into chunks and submitted whole (`core::objects`); a delivered object is read
//! back chunk by chunk and streamed out, decompressed.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::driver::{NodeHandle, ObjectPart};
use crate::core::objects::{Manifest, ObjectSubmission};
use crate::core::{Address, MessageId, Precedence, TrafficStatus};

/// What the API needs to take objects.
#[derive(Clone, Debug)]
pub struct ObjectLimits {
    /// `[limits] max_object`.
    pub max_object: u64,
    /// Chunk size: the narrowest medium's of the node's links (`core::objects::chunk_size_for`).
    pub chunk_size: u32,
    /// Where uploads wait while they arrive (`<data_dir>/spool`).
    pub spool: PathBuf,
}

/// Compression is tried on this much of an object first; if that saves less than a tenth,
/// the object goes as it is.
const PROBE: usize = 1 << 20;
const ZSTD_LEVEL: i32 = 3;

/// An upload's spool file, removed when dropped.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    pub size: u64,
    pub sha256: [u8; 32],
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why an upload was not taken.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("object exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("reading the upload: {0}")]
    Body(String),
    #[error("spooling the upload: {0}")]
    Io(#[from] std::io::Error),
}

/// Streams `body` into a spool file under `limits.spool`, hashing it.
pub async fn spool(
    body: &mut axum::body::BodyDataStream,
    limits: &ObjectLimits,
) -> Result<Spool, UploadError> {
    tokio::fs::create_dir_all(&limits.spool).await?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("upload-{}-{nanos:x}-{n}", std::process::id());
    let mut spool = Spool { path: limits.spool.join(name), size: 0, sha256: [0; 32] };
    let mut file = tokio::fs::File::create(&spool.path).await?;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| UploadError::Body(e.to_string()))?;
        spool.size += piece.len() as u64;
        if spool.size > limits.max_object {
            return Err(UploadError::TooLarge(limits.max_object));
        }
        hash.update(&piece);
        file.write_all(&piece).await?;
    }
    file.flush().await?;
    spool.sha256.copy_from_slice(hash.finish().as_ref());
    Ok(spool)
}

/// Reads and drops what is left of a refused upload, up to `limit` bytes, so that the client
/// is still listening when the refusal comes (an HTTP/1.1 client sending a body reads no
/// answer before it has sent it).
pub async fn drain(body: &mut axum::body::BodyDataStream, limit: u64) {
    let mut seen = 0u64;
    while let Some(Ok(piece)) = body.next().await {
        seen += piece.len() as u64;
        if seen > limit {
            return;
        }
    }
}

/// What an upload is, besides its bytes.
#[derive(Clone, Debug)]
pub struct ObjectMeta {
    pub to: Address,
    pub precedence: Precedence,
    pub lifetime: std::time::Duration,
    pub receipt: bool,
    pub status: TrafficStatus,
    pub name: String,
    pub content_type: String,
}

/// The spooled object, compressed if that pays, cut into chunks (blocking: file reads and
/// compression). The chunks share one buffer of the object as it travels.
pub fn prepare(
    spool: &Spool,
    meta: ObjectMeta,
    chunk_size: u32,
) -> std::io::Result<ObjectSubmission> {
    let raw = std::fs::read(&spool.path)?;
    let compressed = compressed_if_it_pays(&raw)?;
    let zstd = compressed.is_some();
    let encoded = Bytes::from(compressed.unwrap_or(raw));
    let chunks = crate::core::objects::cut(&encoded, chunk_size);
    Ok(ObjectSubmission {
        to: meta.to,
        precedence: meta.precedence,
        lifetime: meta.lifetime,
        receipt: meta.receipt,
        status: meta.status,
        name: meta.name,
        content_type: meta.content_type,
        size: spool.size,
        zstd,
        sha256: spool.sha256,
        chunk_size,
        chunks,
    })
}

/// `data` compressed with zstd, if that saves at least a tenth (tried on its first MiB first,
/// so photos and video, which do not compress, cost one MiB of effort).
fn compressed_if_it_pays(data: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    let pays = |out: usize, of: usize| out * 10 <= of * 9;
    if data.len() < 64 {
        return Ok(None);
    }
    if data.len() > PROBE {
        let probe = zstd::bulk::compress(&data[..PROBE], ZSTD_LEVEL)?;
        if !pays(probe.len(), PROBE) {
            return Ok(None);
        }
    }
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
    enc.write_all(data)?;
    let out = enc.finish()?;
    Ok(pays(out.len(), data.len()).then_some(out))
}

/// A name for an upload without one: the object's id is not known yet, so the time.
pub fn default_name() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("object-{secs}")
}

/// Streams a delivered object's bytes, decompressed; the stream fails if a chunk is missing
/// or the bytes come out longer than the manifest says.
pub fn download(node: NodeHandle, id: MessageId, manifest: Manifest) -> Body {
    let decoder = match manifest.zstd {
        true => zstd::stream::write::Decoder::new(Vec::new()).ok(),
        false => None,
    };
    let state = (node, 0u32, decoder, 0u64, manifest);
    let stream =
        futures_util::stream::unfold(state, move |(node, index, mut dec, sent, m)| async move {
            if index as usize >= m.chunks.len() {
                return None;
            }
            let failed = |why: String| {
                Some((
                    Err(std::io::Error::other(why)),
                    (node.clone(), u32::MAX, None, sent, m.clone()),
                ))
            };
            let chunk = match node.object_read(id, Some(index)).await {
                Ok(Ok(ObjectPart::Chunk(Some(c)))) => c,
                Ok(Ok(_)) => return failed(format!("object {id}: chunk {index} is not here")),
                Ok(Err(e)) => return failed(format!("object {id}: {e}")),
                Err(e) => return failed(e.to_string()),
            };
            let out = match dec.as_mut() {
                None => chunk,
                Some(d) => {
                    if let Err(e) = d.write_all(&chunk).and_then(|()| d.flush()) {
                        return failed(format!("object {id}: decompressing chunk {index}: {e}"));
                    }
                    Bytes::from(std::mem::take(d.get_mut()))
                }
            };
            let sent = sent + out.len() as u64;
            if sent > m.size {
                return failed(format!("object {id} decompresses past its size of {}", m.size));
            }
            Some((Ok::<_, std::io::Error>(out), (node, index + 1, dec, sent, m)))
        });
    Body::from_stream(stream)
}

/// Removes what a crash left in the spool.
pub fn clear_spool(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
