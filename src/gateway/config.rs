//! The `[gateway.*]` sections of `node.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use relaymesh_core::{Address, Precedence, TopicPattern};
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

/// Checks and builds the gateway sections; paths are relative to `base` (the config file's
/// directory); `node` names the default MQTT client.
pub fn build(raw: RawGateways, base: &Path, node: &str) -> Result<Gateways, Fail> {
    let cap = raw.cap.map(|c| build_cap(c, base)).transpose()?;
    let mqtt = raw.mqtt.map(|m| build_mqtt(m, node)).transpose()?;
    Ok(Gateways { cap, mqtt })
}

fn build_cap(raw: RawCap, base: &Path) -> Result<CapConfig, Fail> {
    let mut mapping = Mapping::default();
    if let Some(to) = &raw.default_to {
        mapping.default_to = field("gateway.cap.default_to", Address::parse(to))?;
    }
    if let Some(l) = &raw.default_lifetime {
        mapping.default_lifetime = field("gateway.cap.default_lifetime", parse_duration(l))?;
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

fn build_mqtt(raw: RawMqtt, node: &str) -> Result<MqttConfig, Fail> {
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
            Some(l) => field(&format!("{key}.lifetime"), parse_duration(l))?,
            None => Duration::from_secs(3600),
        };
        inbound.push(MqttIn { filter: r.filter, to: r.to, precedence, lifetime });
    }
    let mut outbound = Vec::new();
    for (i, r) in raw.outbound.into_iter().enumerate() {
        let key = format!("gateway.mqtt.out[{i}]");
        let pattern = field(&format!("{key}.pattern"), TopicPattern::new(&r.pattern))?;
        // What goes out must not come back in: no inbound filter may match it.
        if let Some(f) = inbound.iter().find(|m| {
            super::mqtt::filter_matches(
                &m.filter,
                &format!("{}{}", r.prefix, r.pattern.trim_end_matches("/#")),
            )
        }) {
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
        build(top.gateway, Path::new("/etc/relaymesh"), "county-hq")
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
