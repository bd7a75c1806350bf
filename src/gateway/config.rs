//! The `[gateway.*]` sections of `node.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use relaymesh_core::{Address, CoreConfig, Precedence, TopicPattern};
use serde::Deserialize;

use super::CapConfig;
use super::cap::{AreaRule, Mapping};
use super::mqtt::{MqttConfig, MqttIn, MqttOut};
use crate::units::parse_duration;

/// The gateways a node runs.
#[derive(Clone, Debug, Default)]
pub struct Gateways {
    pub cap: Option<CapConfig>,
    pub mqtt: Option<MqttConfig>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGateways {
    cap: Option<RawCap>,
    mqtt: Option<RawMqtt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCap {
    default_to: Option<String>,
    default_lifetime: Option<String>,
    watch_dir: Option<PathBuf>,
    #[serde(default)]
    post_to: Vec<String>,
    #[serde(default)]
    precedence: BTreeMap<String, String>,
    #[serde(default)]
    area: Vec<RawArea>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArea {
    geocode: Option<String>,
    value_name: Option<String>,
    name: Option<String>,
    to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    broker: String,
    client_id: Option<String>,
    #[serde(default, rename = "in")]
    inbound: Vec<RawMqttIn>,
    #[serde(default, rename = "out")]
    outbound: Vec<RawMqttOut>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqttIn {
    filter: String,
    to: String,
    precedence: Option<String>,
    lifetime: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqttOut {
    pattern: String,
    #[serde(default)]
    prefix: String,
}

type Fail = (String, String);

fn field<T, E: std::fmt::Display>(key: &str, r: Result<T, E>) -> Result<T, Fail> {
    r.map_err(|e| (key.to_owned(), e.to_string()))
}

/// Checks and builds the gateway sections for the node `core` configures (its id names the
/// default MQTT client; lifetimes are at most its `max_lifetime`); paths are relative to
/// `base` (the config file's directory).
pub fn build(raw: RawGateways, base: &Path, core: &CoreConfig) -> Result<Gateways, Fail> {
    let cap = raw.cap.map(|c| build_cap(c, base, core.max_lifetime)).transpose()?;
    let mqtt = raw.mqtt.map(|m| build_mqtt(m, core)).transpose()?;
    Ok(Gateways { cap, mqtt })
}

/// A lifetime the node takes: more than 0, at most `max` (`[limits] max_lifetime`).
fn lifetime(key: &str, text: &str, max: Duration) -> Result<Duration, Fail> {
    let d = field(key, parse_duration(text))?;
    if d.is_zero() || d > max {
        let why =
            format!("{text:?}: more than 0 and at most [limits] max_lifetime ({}s)", max.as_secs());
        return Err((key.to_owned(), why));
    }
    Ok(d)
}

fn build_cap(raw: RawCap, base: &Path, max_lifetime: Duration) -> Result<CapConfig, Fail> {
    let mut mapping = Mapping { max_lifetime, ..Mapping::default() };
    mapping.default_lifetime = mapping.default_lifetime.min(max_lifetime);
    if let Some(to) = &raw.default_to {
        mapping.default_to = field("gateway.cap.default_to", Address::parse(to))?;
    }
    if let Some(l) = &raw.default_lifetime {
        mapping.default_lifetime = lifetime("gateway.cap.default_lifetime", l, max_lifetime)?;
    }
    for (cell, p) in &raw.precedence {
        let key = format!("gateway.cap.precedence.{cell:?}");
        let p: Precedence = field(&key, p.parse())?;
        field(&key, mapping.precedence.set(cell, p))?;
    }
    for (i, a) in raw.area.into_iter().enumerate() {
        let key = format!("gateway.cap.area[{i}]");
        if a.geocode.is_none() && a.name.is_none() {
            return Err((key, "give a geocode, a name, or both".into()));
        }
        if a.value_name.is_some() && a.geocode.is_none() {
            return Err((key, "value_name qualifies a geocode: give the geocode".into()));
        }
        let to = field(&format!("{key}.to"), Address::parse(&a.to))?;
        mapping.areas.push(AreaRule {
            geocode: a.geocode,
            value_name: a.value_name,
            name: a.name,
            to,
        });
    }
    for (i, url) in raw.post_to.iter().enumerate() {
        let ok = reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err((
                format!("gateway.cap.post_to[{i}]"),
                format!("{url:?} is not an http(s) URL"),
            ));
        }
    }
    Ok(CapConfig { mapping, watch_dir: raw.watch_dir.map(|d| base.join(d)), post_to: raw.post_to })
}

fn build_mqtt(raw: RawMqtt, core: &CoreConfig) -> Result<MqttConfig, Fail> {
    let node = core.node.as_str();
    let (host, port) = raw
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            ("gateway.mqtt.broker".to_owned(), format!("{:?} is not host:port", raw.broker))
        })?;
    let mut inbound = Vec::new();
    for (i, r) in raw.inbound.into_iter().enumerate() {
        let key = format!("gateway.mqtt.in[{i}]");
        if r.filter.is_empty() || r.filter.contains(['\0']) {
            return Err((format!("{key}.filter"), "an MQTT topic filter, e.g. sensors/#".into()));
        }
        // The address must be a topic; "{topic}" stands for the MQTT topic of each reading.
        let sample = r.to.replace("{topic}", "a/b");
        match Address::parse(&sample) {
            Ok(Address::Topic(_)) => {}
            Ok(_) => return Err((format!("{key}.to"), "a topic:<path> address".into())),
            Err(e) => return Err((format!("{key}.to"), e.to_string())),
        }
        let precedence = match &r.precedence {
            Some(p) => field(&format!("{key}.precedence"), p.parse::<Precedence>())?,
            None => Precedence::Routine,
        };
        let lifetime = match &r.lifetime {
            Some(l) => lifetime(&format!("{key}.lifetime"), l, core.max_lifetime)?,
            None => Duration::from_secs(3600).min(core.max_lifetime),
        };
        inbound.push(MqttIn { filter: r.filter, to: r.to, precedence, lifetime });
    }
    let mut outbound = Vec::new();
    for (i, r) in raw.outbound.into_iter().enumerate() {
        let key = format!("gateway.mqtt.out[{i}]");
        let pattern = field(&format!("{key}.pattern"), TopicPattern::new(&r.pattern))?;
        // What goes out must not come back in: no inbound filter may match it.
        let out_topics = format!("{}{}", r.prefix, r.pattern);
        if let Some(f) =
            inbound.iter().find(|m| super::mqtt::filters_overlap(&m.filter, &out_topics))
        {
            return Err((
                format!("{key}.prefix"),
                format!(
                    "what goes out under {:?} would come back in through the filter {:?}",
                    r.prefix, f.filter
                ),
            ));
        }
        outbound.push(MqttOut { pattern, prefix: r.prefix });
    }
    Ok(MqttConfig {
        host,
        port,
        client_id: raw.client_id.unwrap_or_else(|| format!("relaymesh-{node}")),
        inbound,
        outbound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateways(text: &str) -> Result<Gateways, Fail> {
        #[derive(Deserialize)]
        struct Top {
            gateway: RawGateways,
        }
        let top: Top = toml::from_str(text).map_err(|e| ("toml".to_owned(), e.to_string()))?;
        let node = relaymesh_core::NodeId::new("county-hq").unwrap();
        let core = CoreConfig::new(node, relaymesh_core::Role::Command);
        build(top.gateway, Path::new("/etc/relaymesh"), &core)
    }

    #[test]
    fn a_full_cap_section_builds() {
        let g = gateways(
            r#"
            [gateway.cap]
            default_to = "group:role:township"
            default_lifetime = "12h"
            watch_dir = "cap-in"
            post_to = ["http://127.0.0.1:8080/cap"]
            [gateway.cap.precedence]
            "Future/*" = "immediate"
            [[gateway.cap.area]]
            geocode = "006109"
            value_name = "SAME"
            to = "group:sonora"
            "#,
        )
        .unwrap();
        let cap = g.cap.unwrap();
        assert_eq!(cap.mapping.default_to.to_string(), "group:role:township");
        assert_eq!(cap.mapping.default_lifetime, Duration::from_secs(12 * 3600));
        assert_eq!(cap.watch_dir, Some(PathBuf::from("/etc/relaymesh/cap-in")));
        assert_eq!(
            cap.mapping
                .precedence
                .get(super::super::cap::Urgency::Future, super::super::cap::Severity::Minor),
            Precedence::Immediate
        );
        assert_eq!(cap.mapping.areas.len(), 1);
        assert!(g.mqtt.is_none());
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            ("[gateway.cap]\ndefault_to = \"everyone\"", "gateway.cap.default_to"),
            ("[gateway.cap]\ndefault_lifetime = \"soon\"", "gateway.cap.default_lifetime"),
            ("[gateway.cap]\ndefault_lifetime = \"0s\"", "gateway.cap.default_lifetime"),
            ("[gateway.cap]\ndefault_lifetime = \"90d\"", "gateway.cap.default_lifetime"),
            (
                "[gateway.mqtt]\nbroker = \"h:1883\"\n[[gateway.mqtt.in]]\nfilter = \"a/+/#\"\nto = \"topic:{topic}\"\n[[gateway.mqtt.out]]\npattern = \"a/#\"",
                "gateway.mqtt.out[0].prefix",
            ),
            (
                "[gateway.mqtt]\nbroker = \"h:1883\"\n[[gateway.mqtt.in]]\nfilter = \"relay/+/x\"\nto = \"topic:s/{topic}\"\n[[gateway.mqtt.out]]\npattern = \"alerts/+\"\nprefix = \"relay/\"",
                "gateway.mqtt.out[0].prefix",
            ),
            ("[gateway.cap]\npost_to = [\"ftp://x\"]", "gateway.cap.post_to[0]"),
            (
                "[gateway.cap.precedence]\n\"Soon/Extreme\" = \"flash\"",
                "gateway.cap.precedence.\"Soon/Extreme\"",
            ),
            (
                "[gateway.cap.precedence]\n\"Immediate/Extreme\" = \"urgent\"",
                "gateway.cap.precedence.\"Immediate/Extreme\"",
            ),
            ("[[gateway.cap.area]]\nto = \"group:x\"", "gateway.cap.area[0]"),
            (
                "[[gateway.cap.area]]\nvalue_name = \"SAME\"\nname = \"x\"\nto = \"group:x\"",
                "gateway.cap.area[0]",
            ),
            ("[[gateway.cap.area]]\nname = \"x\"\nto = \"nowhere\"", "gateway.cap.area[0].to"),
            ("[gateway.mqtt]\nbroker = \"localhost\"", "gateway.mqtt.broker"),
            (
                "[gateway.mqtt]\nbroker = \"h:1883\"\n[[gateway.mqtt.in]]\nfilter = \"a/#\"\nto = \"node:hq\"",
                "gateway.mqtt.in[0].to",
            ),
            (
                "[gateway.mqtt]\nbroker = \"h:1883\"\n[[gateway.mqtt.in]]\nfilter = \"a/#\"\nto = \"topic:a/{topic}\"\nlifetime = \"x\"",
                "gateway.mqtt.in[0].lifetime",
            ),
            (
                "[gateway.mqtt]\nbroker = \"h:1883\"\n[[gateway.mqtt.out]]\npattern = \"a/+/#/b\"",
                "gateway.mqtt.out[0].pattern",
            ),
            (
                "[gateway.mqtt]\nbroker = \"h:1883\"\n[[gateway.mqtt.in]]\nfilter = \"#\"\nto = \"topic:s/{topic}\"\n[[gateway.mqtt.out]]\npattern = \"s/#\"",
                "gateway.mqtt.out[0].prefix",
            ),
        ];
        for (text, key) in cases {
            let (k, why) = gateways(text).unwrap_err();
            assert_eq!(k, key, "{text}: {why}");
        }
        let g = gateways("[gateway.mqtt]\nbroker = \"127.0.0.1:1883\"").unwrap();
        assert_eq!(g.mqtt.unwrap().client_id, "relaymesh-county-hq");
    }
}

#[cfg(test)]
mod seed {
    /// The config fuzz target's fullest seed parses, gateways included, so the fuzzer starts
    /// from inside them.
    #[test]
    fn the_fuzz_seed_is_a_valid_configuration() {
        let text = include_str!("../../fuzz/seeds/config/full");
        let path = std::path::Path::new("/etc/relaymesh/node.toml");
        let cfg = crate::shell::config::parse(text, path).unwrap();
        assert_eq!(cfg.gateways.cap.unwrap().mapping.areas.len(), 2);
        assert_eq!(cfg.gateways.mqtt.unwrap().inbound.len(), 1);
    }
}
