//! MQTT bridge: sensor readings in from a broker, relaymesh topics out to it.
//!
//! In: each `[[gateway.mqtt.in]]` filter is subscribed at the broker (QoS 1); a reading on
//! MQTT topic `T` becomes a message to `to` (with `{topic}` replaced by `T`), carrying a
//! latest-value key of its own (`mqtt/T`), so through an outage only each sensor's newest
//! reading travels, not the backlog. Out: each `[[gateway.mqtt.out]]` pattern becomes a
//! durable subscription of the node, and every message delivered on it is published (QoS 1)
//! to `prefix` + its topic, for the station's own systems.
//!
//! The bridge never blocks the node: it talks to it through its handle like the API. A broker
//! that goes away is reconnected with a backoff of 1 s doubling to 30 s; readings the node
//! refuses are counted and logged (`GET /v1/gateways`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redb::Database;
use relaymesh_core::{Address, Precedence, Submission, TopicPattern, TrafficStatus};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::shell::driver::NodeHandle;

/// `[gateway.mqtt]`.
#[derive(Clone, Debug)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub inbound: Vec<MqttIn>,
    pub outbound: Vec<MqttOut>,
}

/// `[[gateway.mqtt.in]]`.
#[derive(Clone, Debug)]
pub struct MqttIn {
    /// An MQTT topic filter (`+` and `#` wildcards).
    pub filter: String,
    /// A `topic:` address; `{topic}` stands for the reading's MQTT topic.
    pub to: String,
    pub precedence: Precedence,
    pub lifetime: Duration,
}

/// `[[gateway.mqtt.out]]`.
#[derive(Clone, Debug)]
pub struct MqttOut {
    pub pattern: TopicPattern,
    pub prefix: String,
}

/// What the bridge did (since the node started).
#[derive(Debug, Default)]
pub struct MqttStatus {
    pub connected: AtomicBool,
    /// Readings the node took.
    pub taken: AtomicU64,
    /// Readings that could not be taken: no valid address or key, or refused by the node.
    pub refused: AtomicU64,
    /// Connection failures.
    pub broker_errors: AtomicU64,
    /// Messages handed to the MQTT client for the broker (while the broker is away they wait
    /// in the client's queue, and go once it is back).
    pub published: AtomicU64,
}

impl MqttStatus {
    /// The counters as `GET /v1/gateways` shows them.
    pub fn doc(&self) -> crate::api_model::MqttDoc {
        crate::api_model::MqttDoc {
            connected: self.connected.load(Ordering::Relaxed),
            taken: self.taken.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            broker_errors: self.broker_errors.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
        }
    }
}

/// Whether the MQTT topic `topic` matches `filter` (`+` one level, `#` the rest).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match (f, t.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(level)) if f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

/// Whether some topic matches both filters (MQTT wildcards: `+` one level, `#` the rest,
/// including the level before it).
pub fn filters_overlap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(&"#"), _) | (_, Some(&"#")) | (None, None) => return true,
            (Some(x), Some(y)) if *x == "+" || *y == "+" || x == y => i += 1,
            _ => return false,
        }
    }
}

/// The message a reading on `topic` becomes, per the first matching `[[gateway.mqtt.in]]`.
pub fn reading(cfg: &MqttConfig, topic: &str, payload: &[u8]) -> Result<Submission, String> {
    let m = cfg
        .inbound
        .iter()
        .find(|m| filter_matches(&m.filter, topic))
        .ok_or_else(|| format!("{topic:?} matches no [[gateway.mqtt.in]] filter"))?;
    let to = Address::parse(&m.to.replace("{topic}", topic)).map_err(|e| e.to_string())?;
    let key = format!("mqtt/{topic}");
    relaymesh_core::types::check_key(&key)?;
    Ok(Submission {
        to,
        precedence: m.precedence,
        lifetime: m.lifetime,
        content_type: "application/octet-stream".into(),
        payload: bytes::Bytes::copy_from_slice(payload),
        receipt: false,
        status: TrafficStatus::Actual,
        key: Some(key),
        replaces: None,
    })
}

/// Runs the bridge until the node stops.
pub async fn run(cfg: MqttConfig, node: NodeHandle, db: Arc<Database>, status: Arc<MqttStatus>) {
    let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    opts.set_keep_alive(Duration::from_secs(15));
    let (client, mut events) = AsyncClient::new(opts, 256);
    for out in &cfg.outbound {
        match node.subscribe(out.pattern.clone(), true).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(pattern = %out.pattern, "MQTT out: {e}"),
            Err(_) => return,
        }
    }
    if !cfg.outbound.is_empty() {
        tokio::spawn(publish_out(cfg.clone(), node.clone(), db, client.clone(), status.clone()));
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(broker = %format!("{}:{}", cfg.host, cfg.port), "MQTT connected");
                status.connected.store(true, Ordering::Relaxed);
                backoff = Duration::from_secs(1);
                for m in &cfg.inbound {
                    if let Err(e) = client.try_subscribe(m.filter.clone(), QoS::AtLeastOnce) {
                        tracing::error!(filter = %m.filter, "MQTT subscribe: {e}");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let result = match reading(&cfg, &p.topic, &p.payload) {
                    Ok(sub) => match node.submit(sub).await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(_) => return,
                    },
                    Err(e) => Err(e),
                };
                match result {
                    Ok(_) => {
                        status.taken.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        status.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(topic = %p.topic, "MQTT reading not taken: {e}");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                status.connected.store(false, Ordering::Relaxed);
                status.broker_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(retry_in = ?backoff, "MQTT broker: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Publishes what the node receives on the `out` patterns, from where it got to before.
async fn publish_out(
    cfg: MqttConfig,
    node: NodeHandle,
    db: Arc<Database>,
    client: AsyncClient,
    status: Arc<MqttStatus>,
) {
    let mut inbox = match super::InboxFollower::open(node, db, "mqtt out") {
        Ok(i) => i,
        Err(e) => return tracing::error!("MQTT out: {e}"),
    };
    while let Some(item) = inbox.next().await {
        let mut acted = false;
        let e = &item.record.envelope;
        if let Address::Topic(path) = &e.to
            && item.record.withdrawn.is_none()
            && let Some(out) = cfg.outbound.iter().find(|o| o.pattern.matches(path))
        {
            let topic = format!("{}{path}", out.prefix);
            match client.publish(topic, QoS::AtLeastOnce, false, e.payload.to_vec()).await {
                Ok(()) => {
                    status.published.fetch_add(1, Ordering::Relaxed);
                    acted = true;
                }
                Err(err) => return tracing::error!("MQTT out: {err}"),
            }
        }
        if let Err(err) = inbox.done(&item, acted) {
            return tracing::error!("MQTT out: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MqttConfig {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "t".into(),
            inbound: vec![
                MqttIn {
                    filter: "sensors/water/+/level".into(),
                    to: "topic:hazard/{topic}".into(),
                    precedence: Precedence::Priority,
                    lifetime: Duration::from_secs(600),
                },
                MqttIn {
                    filter: "sensors/#".into(),
                    to: "topic:sensors/other".into(),
                    precedence: Precedence::Routine,
                    lifetime: Duration::from_secs(3600),
                },
            ],
            outbound: Vec::new(),
        }
    }

    #[test]
    fn filters_match_as_mqtt_says() {
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(!filter_matches("a/+/c", "a/b/c/d"));
        assert!(!filter_matches("a/+", "a"));
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(filter_matches("#", "x"));
        assert!(!filter_matches("a/b", "a/bb"));
        assert!(filters_overlap("a/+/#", "a/#"));
        assert!(filters_overlap("relay/+/x", "relay/alerts/+"));
        assert!(!filters_overlap("relay/+/x", "relay/alerts/+/y"));
        assert!(filters_overlap("a/#", "a"));
        assert!(!filters_overlap("gauges/#", "county/sensors/#"));
        assert!(!filters_overlap("a/b", "a/c"));
    }

    #[test]
    fn a_reading_becomes_a_latest_value_message_by_the_first_matching_filter() {
        let sub = reading(&cfg(), "sensors/water/gauge-7/level", b"3.42").unwrap();
        assert_eq!(sub.to.to_string(), "topic:hazard/sensors/water/gauge-7/level");
        assert_eq!(sub.key.as_deref(), Some("mqtt/sensors/water/gauge-7/level"));
        assert_eq!(
            (sub.precedence, sub.lifetime),
            (Precedence::Priority, Duration::from_secs(600))
        );
        let other = reading(&cfg(), "sensors/rain/r1", b"12").unwrap();
        assert_eq!(other.to.to_string(), "topic:sensors/other");
        assert!(reading(&cfg(), "weather/x", b"1").unwrap_err().contains("matches no"));
    }
}
