//! CAP out: the alerts a node received, for local broadcast terminals and display screens:
//! an Atom feed and per-alert XML over the local API, and a POST of each alert to configured
//! URLs.
//!
//! An alert is emitted exactly as its sender wrote it. It is emitted only if its own
//! `status` is the one it travelled with, so an exercise (or test, or system) alert can never
//! come out as actual, whatever a faulty or hostile origin put in the XML.

use std::sync::Arc;
use std::time::Duration;

use redb::Database;
use relaymesh_core::status::InboxItem;
use relaymesh_core::{MessageId, TrafficStatus};

use super::cap::{self, Alert};
use crate::shell::driver::NodeHandle;

/// A CAP alert this node received.
#[derive(Clone, Debug)]
pub struct Received {
    pub id: MessageId,
    pub origin: String,
    pub cursor: u64,
    pub status: TrafficStatus,
    /// Withdrawn here by a newer message (an Update or Cancel replacing it) or a cancel.
    pub withdrawn: bool,
    pub xml: String,
    pub alert: Alert,
    /// What was left of its lifetime when it was delivered.
    pub remaining: Duration,
}

/// `item` as an alert to emit: `None` if it is not CAP, or not emitted (see the module).
pub fn as_alert(item: &InboxItem) -> Option<Received> {
    let e = &item.record.envelope;
    if e.content_type != cap::CONTENT_TYPE {
        return None;
    }
    let xml = std::str::from_utf8(&e.payload).ok()?;
    let alert = match cap::parse(xml) {
        Ok(a) => a,
        Err(err) => {
            tracing::warn!(id = %e.id, origin = %e.origin, "received CAP alert not emitted: {err}");
            return None;
        }
    };
    if alert.status.traffic() != Some(e.status) {
        tracing::warn!(
            id = %e.id,
            origin = %e.origin,
            travelled = e.status.as_str(),
            "received CAP alert not emitted: its status {:?} is not the one it travelled with",
            alert.status
        );
        return None;
    }
    Some(Received {
        id: e.id,
        origin: e.origin.to_string(),
        cursor: item.cursor,
        status: e.status,
        withdrawn: item.record.withdrawn.is_some(),
        xml: xml.to_owned(),
        alert,
        remaining: e.lifetime.saturating_sub(item.record.age),
    })
}

/// The CAP alerts still in the inbox, oldest first.
pub async fn received(node: &NodeHandle) -> Result<Vec<Received>, String> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let items = match node.inbox(Some(from), 1000).await {
            Ok(r) => r?,
            Err(_) => return Err("the node is stopping".into()),
        };
        let Some(last) = items.last() else { break };
        from = last.cursor + 1;
        out.extend(items.iter().filter_map(as_alert));
    }
    Ok(out)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The document without its XML declaration, to go inside another.
fn without_declaration(xml: &str) -> &str {
    let t = xml.trim_start_matches('\u{feff}').trim_start();
    match t.strip_prefix("<?xml").and_then(|r| r.split_once("?>")) {
        Some((_, rest)) => rest.trim_start(),
        None => t,
    }
}

/// An Atom feed (RFC 4287) of the alerts in force at `now` (Unix seconds), newest first, each
/// with its CAP document inline and a link to it. Withdrawn alerts are left out (their Update
/// or Cancel is in), and so are expired ones; an alert that came more than once (by two
/// addresses this node is in) is shown once; `only` keeps those of one status. Non-actual
/// entries say so in their title.
pub fn atom(node: &str, alerts: &[Received], only: Option<TrafficStatus>, now: i64) -> String {
    let mut seen = std::collections::HashSet::new();
    let shown: Vec<&Received> = alerts
        .iter()
        .rev()
        .filter(|a| !a.withdrawn && only.is_none_or(|s| s == a.status))
        .filter(|a| a.alert.expires().is_none_or(|t| t > now))
        .filter(|a| seen.insert((a.alert.sender.clone(), a.alert.identifier.clone())))
        .collect();
    let updated = shown.iter().map(|a| a.alert.sent).max().unwrap_or(now);
    let mut f = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    f.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    f.push_str(&format!("  <id>urn:relaymesh:{}:cap</id>\n", escape(node)));
    f.push_str(&format!("  <title>CAP alerts received by {}</title>\n", escape(node)));
    f.push_str(&format!("  <updated>{}</updated>\n", cap::format_time(updated)));
    f.push_str("  <link rel=\"self\" href=\"/v1/cap/feed\"/>\n");
    for a in shown {
        let tag = match a.status {
            TrafficStatus::Actual => String::new(),
            s => format!("[{}] ", s.as_str().to_uppercase()),
        };
        f.push_str("  <entry>\n");
        f.push_str(&format!("    <id>urn:relaymesh:message:{}</id>\n", a.id));
        f.push_str(&format!("    <title>{}{}</title>\n", tag, escape(&a.alert.title())));
        f.push_str(&format!("    <updated>{}</updated>\n", cap::format_time(a.alert.sent)));
        f.push_str(&format!("    <author><name>{}</name></author>\n", escape(&a.alert.sender)));
        f.push_str(&format!("    <category term=\"{}\"/>\n", a.status.as_str()));
        f.push_str(&format!(
            "    <link rel=\"alternate\" type=\"{}\" href=\"/v1/cap/alerts/{}\"/>\n",
            cap::CONTENT_TYPE,
            a.id
        ));
        f.push_str(&format!("    <content type=\"{}\">", cap::CONTENT_TYPE));
        f.push_str(without_declaration(&a.xml));
        f.push_str("</content>\n  </entry>\n");
    }
    f.push_str("</feed>\n");
    f
}

/// Hands every CAP alert this node receives to `url` (HTTP POST, `application/cap+xml`), in
/// the order received, from where it got to before (kept in the gateway database, so a
/// restart neither repeats nor skips), each alert once even if it came by two addresses. A
/// failure is retried with a backoff of 1 s doubling to 1 min until the alert expires (or,
/// without `expires`, its message's lifetime runs out); a 4xx answer (but 408 and 429) is
/// final and logged. Withdrawn alerts are skipped: their Update or Cancel follows.
pub async fn post_out(node: NodeHandle, db: Arc<Database>, url: String) {
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(30)).build() {
        Ok(c) => c,
        Err(e) => return tracing::error!(%url, "CAP POST: {e}"),
    };
    let mut inbox = match super::InboxFollower::open(node, db, &format!("post {url}")) {
        Ok(i) => i,
        Err(e) => return tracing::error!(%url, "CAP POST: {e}"),
    };
    while let Some(item) = inbox.next().await {
        let mut acted = false;
        let result = match as_alert(&item).filter(|a| !a.withdrawn) {
            Some(a) => {
                let alert = format!("{}\u{1f}{}", a.alert.sender, a.alert.identifier);
                match inbox.marked(&alert) {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        post_one(&client, &url, &a).await;
                        acted = true;
                        inbox.mark(&alert)
                    }
                    Err(e) => Err(e),
                }
            }
            None => Ok(()),
        };
        if let Err(e) = result.and_then(|()| inbox.done(&item, acted)) {
            return tracing::error!(%url, "CAP POST: {e}");
        }
    }
}

async fn post_one(client: &reqwest::Client, url: &str, a: &Received) {
    let lifetime_ends = super::unix_now() + a.remaining.as_secs() as i64;
    let expires = Some(a.alert.expires().unwrap_or(lifetime_ends));
    let mut backoff = Duration::from_secs(1);
    loop {
        let sent = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, cap::CONTENT_TYPE)
            .body(a.xml.clone())
            .send()
            .await;
        let why = match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(%url, id = %a.id, "CAP alert posted");
                return;
            }
            Ok(r) if r.status().is_client_error() && !matches!(r.status().as_u16(), 408 | 429) => {
                return tracing::warn!(%url, id = %a.id, status = %r.status(), "CAP alert refused by the receiver");
            }
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        if expires.is_some_and(|t| t <= super::unix_now()) {
            return tracing::warn!(%url, id = %a.id, "CAP alert expired before it could be posted: {why}");
        }
        tracing::warn!(%url, id = %a.id, retry_in = ?backoff, "CAP POST failed: {why}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declaration_goes_and_the_document_stays() {
        let x = "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<alert/>";
        assert_eq!(without_declaration(x), "<alert/>");
        assert_eq!(without_declaration("<alert/>"), "<alert/>");
    }

    fn inbox_item(xml: &str, status: TrafficStatus) -> InboxItem {
        use relaymesh_core::frame::InboxRecord;
        use relaymesh_core::types::{Address, Body, Envelope, NodeId, Precedence, Time};
        let envelope = Envelope {
            id: MessageId([7; 16]),
            origin: NodeId::new("county-hq").unwrap(),
            to: Address::parse("group:all").unwrap(),
            precedence: Precedence::Flash,
            lifetime: Duration::from_secs(3600),
            content_type: cap::CONTENT_TYPE.into(),
            payload: bytes::Bytes::copy_from_slice(xml.as_bytes()),
            receipt: true,
            body: Body::Data,
            status,
            created: Time(0),
            age: Duration::ZERO,
            hop_count: 1,
            destinations: Vec::new(),
            signature: bytes::Bytes::new(),
            key: None,
            supersedes: None,
        };
        let record =
            InboxRecord { envelope, delivered_at: Time(0), age: Duration::ZERO, withdrawn: None };
        InboxItem { cursor: 3, record }
    }

    #[test]
    fn an_alert_is_emitted_only_with_the_status_it_travelled_with() {
        let storm = include_str!("../../tests/data/cap/thunderstorm.xml");
        assert!(as_alert(&inbox_item(storm, TrafficStatus::Actual)).is_some());
        // Exercise traffic whose document says Actual (a faulty or hostile origin): never out.
        assert!(as_alert(&inbox_item(storm, TrafficStatus::Exercise)).is_none());
        let exercise = storm.replace("<status>Actual</status>", "<status>Exercise</status>");
        assert!(as_alert(&inbox_item(&exercise, TrafficStatus::Actual)).is_none());
        let a = as_alert(&inbox_item(&exercise, TrafficStatus::Exercise)).unwrap();
        assert_eq!((a.status, a.cursor), (TrafficStatus::Exercise, 3));
        // Not CAP, or not valid CAP: not an alert.
        assert!(as_alert(&inbox_item("<alert/>", TrafficStatus::Actual)).is_none());
    }

    #[test]
    fn the_feed_is_atom_with_each_alert_inline_and_exercises_marked() {
        let storm = include_str!("../../tests/data/cap/thunderstorm.xml");
        let exercise = storm
            .replace("<status>Actual</status>", "<status>Exercise</status>")
            .replace("KSTO1055887203", "KSTO1055887204");
        let mk = |xml: &str, id: u8, status, withdrawn| Received {
            id: MessageId([id; 16]),
            origin: "county-hq".into(),
            cursor: u64::from(id),
            status,
            withdrawn,
            xml: xml.to_owned(),
            alert: cap::parse(xml).unwrap(),
            remaining: Duration::from_secs(3600),
        };
        let alerts = vec![
            mk(storm, 1, TrafficStatus::Actual, true),
            mk(storm, 2, TrafficStatus::Actual, false),
            mk(&exercise, 3, TrafficStatus::Exercise, false),
        ];
        let feed = atom("township-01", &alerts, None, 0);
        let doc = roxmltree::Document::parse(&feed).unwrap();
        let entries: Vec<_> =
            doc.root_element().children().filter(|n| n.has_tag_name("entry")).collect();
        assert_eq!(entries.len(), 2, "the withdrawn one is left out:\n{feed}");
        let title = |n: &roxmltree::Node| {
            n.children()
                .find(|c| c.has_tag_name("title"))
                .and_then(|t| t.text())
                .unwrap()
                .to_owned()
        };
        assert_eq!(title(&entries[0]), "[EXERCISE] SEVERE THUNDERSTORM WARNING", "newest first");
        assert_eq!(title(&entries[1]), "SEVERE THUNDERSTORM WARNING");
        // The CAP document is inside, in its namespace, as sent.
        let inline = entries[1]
            .descendants()
            .find(|n| n.has_tag_name((cap::CAP12_NS, "alert")))
            .expect("the alert inline");
        let ident = inline.children().find(|c| c.has_tag_name((cap::CAP12_NS, "identifier")));
        assert_eq!(ident.and_then(|i| i.text()), Some("KSTO1055887203"));
        let actual_only = atom("township-01", &alerts, Some(TrafficStatus::Actual), 0);
        assert_eq!(actual_only.matches("<entry>").count(), 1);
    }
}
