//! Gateways between relaymesh and the systems around it.
//!
//! - [`cap`]: CAP 1.2 alerts (and China's national format) parsed, validated and mapped to
//!   messages; pure code.
//! - [`CapGateway`]: alerts in over the local API (`POST /v1/cap/alerts`) and from a watched
//!   directory, each sent once however often it is posted; Updates and Cancels replace what
//!   they refer to.
//! - [`feed`]: alerts out: what a node received, as an Atom feed and per-alert XML, and
//!   POSTed to configured URLs with retries.
//! - [`mqtt`]: sensor readings in from an MQTT broker as latest-value messages, and topics
//!   out to it.
//!
//! Gateways use the node through its [`NodeHandle`], as the API does: they never block it.

pub mod cap;
pub mod config;
pub mod feed;
pub mod mqtt;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use relaymesh_core::{Address, MessageId, Submission, SubmitError};
use serde::{Deserialize, Serialize};

use crate::shell::driver::NodeHandle;

/// Alerts taken, by `sender` and `identifier` (joined by a unit separator): JSON [`Taken`].
const ALERTS: TableDefinition<&str, &str> = TableDefinition::new("cap_alerts");
/// Per consumer (a POST target, the MQTT bridge), the next inbox cursor to hand on.
pub(crate) const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");

/// The gateways' own small database (`gateway.redb` in the node's data directory): what was
/// taken, and how far each consumer has got. The node's store is the node's alone.
pub fn open_db(data_dir: &Path) -> Result<Arc<Database>, String> {
    let path = data_dir.join("gateway.redb");
    Database::create(&path).map(Arc::new).map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn read_cursor(db: &Database, name: &str) -> Result<u64, String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let t = match tx.open_table(CURSORS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.to_string()),
    };
    Ok(t.get(name).map_err(|e| e.to_string())?.map_or(0, |v| v.value()))
}

pub(crate) fn write_cursor(db: &Database, name: &str, cursor: u64) -> Result<(), String> {
    let tx = db.begin_write().map_err(|e| e.to_string())?;
    tx.open_table(CURSORS)
        .and_then(|mut t| t.insert(name, cursor).map(|_| ()).map_err(Into::into))
        .map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())
}

/// The node's inbox as one consumer (a POST target, the MQTT bridge) goes through it: in
/// order, from where it got to before (its cursor is kept in the gateway database under its
/// name), waiting for more at the end.
pub(crate) struct InboxFollower {
    node: NodeHandle,
    db: Arc<Database>,
    name: String,
    /// The next cursor to read from.
    cursor: u64,
    changed: tokio::sync::watch::Receiver<u64>,
    ready: std::collections::VecDeque<relaymesh_core::status::InboxItem>,
}

impl InboxFollower {
    pub(crate) fn open(node: NodeHandle, db: Arc<Database>, name: &str) -> Result<Self, String> {
        let cursor = read_cursor(&db, name)?;
        let changed = node.inbox_watch();
        let name = name.to_owned();
        Ok(InboxFollower { node, db, name, cursor, changed, ready: Default::default() })
    }

    /// The next inbox item; `None` once the node stops.
    pub(crate) async fn next(&mut self) -> Option<relaymesh_core::status::InboxItem> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            match self.node.inbox(Some(self.cursor), 100).await {
                Ok(Ok(items)) if items.is_empty() => self.changed.changed().await.ok()?,
                Ok(Ok(items)) => self.ready.extend(items),
                Ok(Err(e)) => {
                    tracing::warn!(consumer = %self.name, "inbox: {e}");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(_) => return None,
            }
        }
    }

    /// `item` is done with: the next start goes on after it. The cursor is written (a synced
    /// commit) when the consumer `acted` on the item, and at the end of each batch read, not
    /// for every message it passes over: a restart may pass over those again, never act twice.
    pub(crate) fn done(
        &mut self,
        item: &relaymesh_core::status::InboxItem,
        acted: bool,
    ) -> Result<(), String> {
        self.cursor = item.cursor + 1;
        if acted || self.ready.is_empty() {
            write_cursor(&self.db, &self.name, self.cursor)?;
        }
        Ok(())
    }

    /// A mark of this consumer's in the gateway database (whether `what` was done before).
    pub(crate) fn marked(&self, what: &str) -> Result<bool, String> {
        Ok(read_cursor(&self.db, &format!("{}\u{1f}{what}", self.name))? != 0)
    }

    pub(crate) fn mark(&self, what: &str) -> Result<(), String> {
        write_cursor(&self.db, &format!("{}\u{1f}{what}", self.name), 1)
    }
}

/// `[gateway.cap]`.
#[derive(Clone, Debug, Default)]
pub struct CapConfig {
    pub mapping: cap::Mapping,
    /// Alerts dropped here as `*.xml` files are taken (then moved to `done/` or `failed/`).
    pub watch_dir: Option<PathBuf>,
    /// Every alert this node receives is POSTed to each of these URLs.
    pub post_to: Vec<String>,
}

/// One message an alert became.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub to: String,
    pub key: String,
    /// `None` while it is being submitted (a crash then is resolved at the next start by the
    /// key, from the node's own list of sent messages).
    pub id: Option<String>,
}

/// What became of one alert.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    pub messages: Vec<Sent>,
    /// Sent to every address it maps to (a repost is a duplicate).
    #[serde(default)]
    pub complete: bool,
    /// SHA-256 of the document (hex): the same identifier for another document is refused.
    #[serde(default)]
    pub digest: String,
    /// The traffic status it travelled as.
    #[serde(default)]
    pub status: String,
    /// Its `sent` (Unix seconds), which a reference to it must name.
    #[serde(default)]
    pub sent: i64,
    /// The alert (its key) that replaced it: an Update or Cancel referring to it.
    #[serde(default)]
    pub replaced_by: Option<String>,
}

/// The answer to an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ingested {
    /// Everything it names had been sent before: nothing was sent now.
    pub duplicate: bool,
    pub messages: Vec<Sent>,
}

/// Why an alert was not taken (each with its HTTP status).
#[derive(Debug)]
pub enum IngestError {
    /// 400: not a valid alert (or one not to send: a draft, an expired one).
    Invalid(cap::CapError),
    /// 413.
    TooLarge { size: usize, limit: usize },
    /// 409: the sender's identifier was used before for a different document.
    Conflict(String),
    /// The node refused a message (403 for policy, 400 or 503 otherwise); `sent` lists what
    /// it had taken before.
    Refused { error: SubmitError, sent: Vec<Sent> },
    /// 503: the node is stopping, or the gateway's database failed.
    Unavailable(String),
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::Invalid(e) => write!(f, "{e}"),
            IngestError::TooLarge { size, limit } => {
                write!(
                    f,
                    "the alert is {size} bytes, larger than the limit of {limit} bytes (the largest payload)"
                )
            }
            IngestError::Refused { error, .. } => write!(f, "{error}"),
            IngestError::Unavailable(e) | IngestError::Conflict(e) => write!(f, "{e}"),
        }
    }
}

/// CAP in: alerts to messages, each sent once.
#[derive(Debug)]
pub struct CapGateway {
    cfg: CapConfig,
    node: NodeHandle,
    db: Arc<Database>,
    max_bytes: usize,
    /// One alert at a time: "already sent?" and "send" must not interleave.
    lock: tokio::sync::Mutex<()>,
}

fn alert_key(sender: &str, identifier: &str) -> String {
    format!("{sender}\u{1f}{identifier}")
}

/// The latest-value key of the message an alert sends to `to`: a second copy (a crash between
/// sending and recording) then only supersedes the first.
fn message_key(sender: &str, identifier: &str, to: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{sender}\0{identifier}\0{to}").as_bytes(),
    );
    format!("cap/{}", hex(&d.as_ref()[..16]))
}

/// The wall clock as Unix seconds (CAP times are wall-clock times).
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl CapGateway {
    /// Opens the gateway on `db`, resolving alerts a crash left half-sent.
    pub async fn start(
        cfg: CapConfig,
        node: NodeHandle,
        db: Arc<Database>,
        max_bytes: usize,
    ) -> Result<Arc<CapGateway>, String> {
        let g = Arc::new(CapGateway { cfg, node, db, max_bytes, lock: Default::default() });
        g.reconcile().await?;
        if let Some(dir) = g.cfg.watch_dir.clone() {
            tokio::spawn(watch(g.clone(), dir));
        }
        for url in &g.cfg.post_to {
            tokio::spawn(feed::post_out(g.node.clone(), g.db.clone(), url.clone()));
        }
        Ok(g)
    }

    /// The largest alert taken: the node's largest payload.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    fn get(&self, key: &str) -> Result<Option<Taken>, String> {
        let tx = self.db.begin_read().map_err(|e| e.to_string())?;
        let t = match tx.open_table(ALERTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let Some(v) = t.get(key).map_err(|e| e.to_string())? else { return Ok(None) };
        serde_json::from_str(v.value()).map(Some).map_err(|e| format!("cap_alerts {key:?}: {e}"))
    }

    fn put(&self, key: &str, taken: &Taken) -> Result<(), String> {
        let json = serde_json::to_string(taken).map_err(|e| e.to_string())?;
        self.write(key, Some(&json))
    }

    fn delete(&self, key: &str) -> Result<(), String> {
        self.write(key, None)
    }

    /// Sets `key`'s record to `value`, or removes it (`None`), in a transaction of its own.
    fn write(&self, key: &str, value: Option<&str>) -> Result<(), String> {
        let tx = self.db.begin_write().map_err(|e| e.to_string())?;
        tx.open_table(ALERTS)
            .and_then(|mut t| {
                match value {
                    Some(v) => t.insert(key, v).map(|_| ()),
                    None => t.remove(key).map(|_| ()),
                }
                .map_err(Into::into)
            })
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())
    }

    /// Messages recorded as being submitted when the process stopped: sent if the node lists
    /// one with their key, else never sent (and forgotten, so a repost sends them).
    async fn reconcile(&self) -> Result<(), String> {
        let mut pending: Vec<(String, Taken)> = Vec::new();
        {
            let tx = self.db.begin_read().map_err(|e| e.to_string())?;
            match tx.open_table(ALERTS) {
                Ok(t) => {
                    for row in t.iter().map_err(|e| e.to_string())? {
                        let (k, v) = row.map_err(|e| e.to_string())?;
                        let taken: Taken = serde_json::from_str(v.value()).unwrap_or_default();
                        if taken.messages.iter().any(|m| m.id.is_none()) {
                            pending.push((k.value().to_owned(), taken));
                        }
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        let sent = match self.node.sent(1000).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("the node stopped".into()),
        };
        let by_key: BTreeMap<&str, MessageId> =
            sent.iter().filter_map(|v| Some((v.key.as_deref()?, v.id))).collect();
        for (k, mut taken) in pending {
            taken.messages.retain_mut(|m| {
                if m.id.is_none() {
                    m.id = by_key.get(m.key.as_str()).map(|id| id.to_string());
                }
                m.id.is_some()
            });
            self.put(&k, &taken)?;
        }
        Ok(())
    }

    /// The alert `key` names as it stands now: following what replaced it (an Update, then a
    /// Cancel of that...) to the newest, of the same status. Its key and record.
    fn newest(&self, key: String, taken: Taken) -> Result<(String, Taken), String> {
        let (mut key, mut taken) = (key, taken);
        for _ in 0..64 {
            let Some(next) = taken.replaced_by.clone() else { break };
            match self.get(&next)? {
                Some(t) if t.status == taken.status => (key, taken) = (next, t),
                _ => break,
            }
        }
        Ok((key, taken))
    }

    /// Takes one alert: validates it, and sends it to each address it maps to unless it was
    /// sent there before. An Update or Cancel (and an Ack or Error) also goes to every address
    /// the alerts it refers to went to (only there, if none of its own areas maps), and an
    /// Update or Cancel replaces there the newest of what it refers to. Only references to
    /// this gateway's alerts of the same sender and the same status count: an exercise never
    /// touches an actual alert, nor one sender another's.
    pub async fn ingest(&self, body: &[u8]) -> Result<Ingested, IngestError> {
        if body.len() > self.max_bytes {
            return Err(IngestError::TooLarge { size: body.len(), limit: self.max_bytes });
        }
        let xml = std::str::from_utf8(body).map_err(|e| {
            IngestError::Invalid(cap::CapError {
                line: 0,
                element: String::new(),
                message: format!("not UTF-8: {e}"),
            })
        })?;
        let alert = cap::parse(xml).map_err(IngestError::Invalid)?;
        let digest = hex(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
        let unavailable = IngestError::Unavailable;
        let _one = self.lock.lock().await;
        let key = alert_key(&alert.sender, &alert.identifier);
        let recorded = self.get(&key).map_err(unavailable)?;
        let new = recorded.is_none();
        let mut taken = recorded.unwrap_or_default();
        if !taken.digest.is_empty() && taken.digest != digest {
            return Err(IngestError::Conflict(format!(
                "{} already sent a different alert with the identifier {}",
                alert.sender, alert.identifier
            )));
        }
        if taken.complete {
            return Ok(Ingested { duplicate: true, messages: taken.messages });
        }
        let plan = self.cfg.mapping.plan(&alert, unix_now()).map_err(IngestError::Invalid)?;
        let status = plan.status.as_str();
        (taken.digest, taken.status, taken.sent) = (digest, status.to_owned(), alert.sent);
        let replaces = matches!(alert.msg_type, cap::MsgType::Update | cap::MsgType::Cancel);
        let mut replaced: BTreeMap<String, MessageId> = BTreeMap::new();
        let mut referred: Vec<String> = Vec::new();
        let mut earlier_keys = Vec::new();
        for r in &alert.references {
            let rkey = alert_key(&r.sender, &r.identifier);
            let Some(earlier) = self.get(&rkey).map_err(unavailable)? else {
                tracing::info!(alert = %alert.identifier, reference = %r.identifier, "CAP reference to an alert this gateway did not send: not followed");
                continue;
            };
            let same_sent = r.sent.is_empty() || cap::parse_time(&r.sent) == Ok(earlier.sent);
            if r.sender != alert.sender || earlier.status != status || !same_sent {
                tracing::warn!(alert = %alert.identifier, reference = %r.identifier, "CAP reference not followed: another sender, status or time");
                continue;
            }
            let (rkey, earlier) = self.newest(rkey, earlier).map_err(unavailable)?;
            earlier_keys.push(rkey);
            for m in earlier.messages {
                let Some(id) = m.id.as_deref().and_then(|i| MessageId::parse_hex(i).ok()) else {
                    continue;
                };
                if !referred.contains(&m.to) {
                    referred.push(m.to.clone());
                }
                if replaces {
                    replaced.insert(m.to, id);
                }
            }
        }
        let mut to: Vec<String> = Vec::new();
        if !plan.defaulted || referred.is_empty() {
            to.extend(plan.to.iter().map(Address::to_string));
        }
        if alert.msg_type != cap::MsgType::Alert {
            to.extend(referred.into_iter().filter(|a| !to.contains(a)).collect::<Vec<_>>());
        }
        let mut duplicate = true;
        for address in to {
            if taken.messages.iter().any(|m| m.to == address && m.id.is_some()) {
                continue;
            }
            duplicate = false;
            let mkey = message_key(&alert.sender, &alert.identifier, &address);
            taken.messages.retain(|m| m.to != address);
            taken.messages.push(Sent { to: address.clone(), key: mkey.clone(), id: None });
            self.put(&key, &taken).map_err(unavailable)?;
            let sub = Submission {
                to: Address::parse(&address).map_err(|e| unavailable(e.to_string()))?,
                precedence: plan.precedence,
                lifetime: plan.lifetime,
                content_type: cap::CONTENT_TYPE.to_owned(),
                payload: bytes::Bytes::copy_from_slice(body),
                receipt: true,
                status: plan.status,
                key: Some(mkey),
                replaces: replaced.get(&address).copied(),
            };
            let result = self.node.submit(sub).await;
            let last = taken.messages.len() - 1;
            match result {
                Ok(Ok(id)) => taken.messages[last].id = Some(id.to_string()),
                Ok(Err(error)) => {
                    taken.messages.pop();
                    // An alert refused before any of it went is not recorded: the sender
                    // may post it again, or a corrected document under its identifier.
                    if new && taken.messages.is_empty() {
                        self.delete(&key).map_err(unavailable)?;
                    } else {
                        self.put(&key, &taken).map_err(unavailable)?;
                    }
                    return Err(IngestError::Refused { error, sent: taken.messages });
                }
                Err(_) => return Err(unavailable("the node is stopping".into())),
            }
            self.put(&key, &taken).map_err(unavailable)?;
        }
        taken.complete = true;
        self.put(&key, &taken).map_err(unavailable)?;
        if replaces {
            for k in earlier_keys {
                if let Some(mut e) = self.get(&k).map_err(unavailable)? {
                    e.replaced_by = Some(key.clone());
                    self.put(&k, &e).map_err(unavailable)?;
                }
            }
        }
        Ok(Ingested { duplicate, messages: taken.messages })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// `dir/name`, or if that is taken, `dir/name.1`, `dir/name.2`, ...: nothing moved there
/// overwrites what an earlier file left.
fn free_name(dir: &Path, name: &std::ffi::OsStr) -> PathBuf {
    let first = dir.join(name);
    (1..)
        .map(|n| {
            let mut p = first.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        })
        .find(|p| !p.exists() && !PathBuf::from(format!("{}.error", p.display())).exists())
        .filter(|_| first.exists())
        .unwrap_or(first)
}

/// Takes the `*.xml` files dropped in `dir`, oldest name first, once they have not changed
/// for a second (a writer still writing one is left alone), and moves each to `done/` or,
/// with a `.error` file saying why, to `failed/` (a name already there gets `.1`, `.2`, ...).
/// A file that cannot be moved is logged and left alone until the process restarts.
async fn watch(g: Arc<CapGateway>, dir: PathBuf) {
    let mut stuck = std::collections::HashSet::new();
    for sub in ["done", "failed"] {
        if let Err(e) = std::fs::create_dir_all(dir.join(sub)) {
            tracing::error!(dir = %dir.display(), "CAP watch directory: {e}");
            return;
        }
    }
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "xml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.retain(|p| !stuck.contains(p));
        for path in files {
            let settled = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= Duration::from_secs(1));
            if !settled {
                continue;
            }
            let Ok(body) = std::fs::read(&path) else { continue };
            let name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
            let outcome = g.ingest(&body).await;
            let to = match &outcome {
                Ok(i) => {
                    tracing::info!(file = %path.display(), duplicate = i.duplicate, "CAP alert taken");
                    free_name(&dir.join("done"), &name)
                }
                Err(IngestError::Unavailable(e)) => {
                    tracing::warn!(file = %path.display(), "CAP alert left for later: {e}");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), "CAP alert refused: {e}");
                    let to = free_name(&dir.join("failed"), &name);
                    let mut why = to.clone().into_os_string();
                    why.push(".error");
                    let _ = std::fs::write(&why, format!("{e}\n"));
                    to
                }
            };
            if let Err(e) = std::fs::rename(&path, &to) {
                tracing::error!(file = %path.display(), "CAP watch directory: cannot move it: {e}");
                stuck.insert(path);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
