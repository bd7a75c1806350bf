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
    #[error("object exceeds [limits] max_object of {0} bytes")]
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
    // Unique within the process; the spool is emptied when the node starts.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!("upload-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
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
/// compression). Each chunk is a buffer of its own, so the node can let each go once it has
/// made its message of it.
pub fn prepare(
    spool: &Spool,
    meta: ObjectMeta,
    chunk_size: u32,
) -> std::io::Result<ObjectSubmission> {
    use std::io::Read;
    let cs = (chunk_size as usize).max(1);
    let compressed = compressed_if_it_pays(&spool.path)?;
    let zstd = compressed.is_some();
    let chunks = match compressed {
        Some(packed) => packed.chunks(cs).map(Bytes::copy_from_slice).collect(),
        None => {
            let mut file = std::fs::File::open(&spool.path)?;
            let mut left = spool.size as usize;
            let mut chunks = Vec::with_capacity(left.div_ceil(cs).max(1));
            loop {
                let mut buf = vec![0; left.min(cs)];
                file.read_exact(&mut buf)?;
                left -= buf.len();
                chunks.push(Bytes::from(buf));
                if left == 0 {
                    break;
                }
            }
            chunks
        }
    };
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

/// The file compressed with zstd, if that saves at least a tenth (tried on its first MiB
/// first, so photos and video, which do not compress, cost one MiB of effort).
fn compressed_if_it_pays(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let pays = |out: u64, of: u64| out * 10 <= of * 9;
    let size = std::fs::metadata(path)?.len();
    if size < 64 {
        return Ok(None);
    }
    let mut file = std::fs::File::open(path)?;
    if size > PROBE as u64 {
        let mut head = vec![0; PROBE];
        file.read_exact(&mut head)?;
        let probe = zstd::bulk::compress(&head, ZSTD_LEVEL)?;
        if !pays(probe.len() as u64, PROBE as u64) {
            return Ok(None);
        }
        file = std::fs::File::open(path)?;
    }
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
    std::io::copy(&mut file, &mut enc)?;
    let out = enc.finish()?;
    Ok(pays(out.len() as u64, size).then_some(out))
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
    let state = Download {
        node,
        id,
        next: 0,
        fetched: Default::default(),
        dec: decoder,
        sent: 0,
        m: manifest,
    };
    let stream = futures_util::stream::unfold(state, |mut d| async move {
        let item = d.next().await?;
        if item.is_err() {
            d.next = u32::MAX; // nothing more after an error
            d.fetched.clear();
        }
        Some((item, d))
    });
    Body::from_stream(stream)
}

/// Chunks read from the node at a time, in bytes at most (one chunk at least).
const READ_AHEAD: usize = 4 << 20;

/// One object being served.
struct Download {
    node: NodeHandle,
    id: MessageId,
    /// The next chunk to ask the node for.
    next: u32,
    fetched: std::collections::VecDeque<Bytes>,
    dec: Option<zstd::stream::write::Decoder<'static, Vec<u8>>>,
    sent: u64,
    m: Manifest,
}

impl Download {
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        let id = self.id;
        if self.fetched.is_empty() {
            if self.next as usize >= self.m.chunks.len() {
                return None;
            }
            let count = (READ_AHEAD / self.m.chunk_size.max(1) as usize).max(1) as u32;
            let failed = |why: String| Some(Err(std::io::Error::other(why)));
            match self.node.object_read(id, Some((self.next, count))).await {
                Ok(Ok(ObjectPart::Chunks(c))) if !c.is_empty() => {
                    self.next += c.len() as u32;
                    self.fetched.extend(c);
                }
                Ok(Ok(_)) => {
                    return failed(format!("object {id}: chunk {} is not here", self.next));
                }
                Ok(Err(e)) => return failed(format!("object {id}: {e}")),
                Err(e) => return failed(e.to_string()),
            }
        }
        let chunk = self.fetched.pop_front()?;
        let out = match self.dec.as_mut() {
            None => chunk,
            Some(d) => {
                if let Err(e) = d.write_all(&chunk).and_then(|()| d.flush()) {
                    return Some(Err(std::io::Error::other(format!(
                        "object {id}: decompressing: {e}"
                    ))));
                }
                Bytes::from(std::mem::take(d.get_mut()))
            }
        };
        self.sent += out.len() as u64;
        if self.sent > self.m.size {
            let why = format!("object {id} decompresses past its size of {}", self.m.size);
            return Some(Err(std::io::Error::other(why)));
        }
        Some(Ok(out))
    }
}

/// Removes what a crash left in the spool.
pub fn clear_spool(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
