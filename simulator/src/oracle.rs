//! The oracle: who each message is for, from the scenario's own declared membership, never from
//! any node's view of it.
//!
//! A node is a member of an address by what the scenario declares for it: `node:X` is X;
//! `group:all` is every node; `group:role:R` every node of role R; `group:NAME` every node that
//! declares the group or has joined it by an event and not left it since; `topic:PATH` every
//! node with a subscription (declared or by event, not unsubscribed since) whose pattern matches
//! PATH. The origin is a member like any other node.
//!
//! The intended recipients of a message sent at `t` with lifetime `L` are the members of its
//! address at `t`, plus every node that becomes a member at a time in `(t, t + L)` (late
//! binding). A membership change takes effect when the simulator applies it to the running
//! node: at the event's time, or at the node's next start if it is down then (a node that is
//! not running cannot join anything).
//!
//! With several deployments, a node of another deployment than the origin's is an intended
//! recipient of a group or topic message only if `[federation] to` lets the address cross
//! (matched here, by the oracle's own reading of the patterns).

use std::collections::BTreeSet;
use std::time::Duration;

use relaymesh::core::types::Group;
use relaymesh::core::{Address, Role};

use crate::scenario::Scenario;

/// One change to a node's declared membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Join(String),
    Leave(String),
    /// A topic pattern (already checked).
    Subscribe(String),
    Unsubscribe(String),
}

impl Change {
    /// The scenario action's name and its target (for the event log).
    pub fn describe(&self) -> (&'static str, &str) {
        match self {
            Change::Join(g) => ("join", g),
            Change::Leave(g) => ("leave", g),
            Change::Subscribe(p) => ("subscribe", p),
            Change::Unsubscribe(p) => ("unsubscribe", p),
        }
    }
}

/// What one node is declared a member of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub groups: BTreeSet<String>,
    pub topics: BTreeSet<String>,
}

impl Membership {
    /// Applies `change`; whether anything changed.
    pub fn apply(&mut self, change: &Change) -> bool {
        match change {
            Change::Join(g) => self.groups.insert(g.clone()),
            Change::Leave(g) => self.groups.remove(g),
            Change::Subscribe(p) => self.topics.insert(p.clone()),
            Change::Unsubscribe(p) => self.topics.remove(p),
        }
    }
}

/// A membership change as the simulator applied it.
#[derive(Clone, Debug)]
pub struct Applied {
    pub at: Duration,
    pub node: usize,
    pub change: Change,
}

/// Declared membership over a run: every node's at the start, and the changes in time order.
#[derive(Clone, Debug, Default)]
pub struct Declared {
    ids: Vec<String>,
    roles: Vec<Role>,
    deployments: Vec<usize>,
    /// `[federation] to`: what crosses between deployments.
    crosses: Vec<String>,
    initial: Vec<Membership>,
    changes: Vec<Applied>,
}

impl Declared {
    /// The membership the scenario declares for each node at the start.
    pub fn new(sc: &Scenario) -> Declared {
        Declared {
            ids: sc.nodes.iter().map(|n| n.id.to_string()).collect(),
            roles: sc.nodes.iter().map(|n| n.role).collect(),
            deployments: sc.nodes.iter().map(|n| n.deployment).collect(),
            crosses: sc.federation.as_ref().map(|f| f.to.clone()).unwrap_or_default(),
            initial: sc
                .nodes
                .iter()
                .map(|n| Membership {
                    groups: n.groups.iter().cloned().collect(),
                    topics: n.subscribe.iter().map(|p| p.as_str().to_owned()).collect(),
                })
                .collect(),
            changes: Vec::new(),
        }
    }

    /// Records a change applied at `at` (not before the last one recorded).
    pub fn record(&mut self, at: Duration, node: usize, change: Change) {
        debug_assert!(self.changes.last().is_none_or(|c| c.at <= at));
        self.changes.push(Applied { at, node, change });
    }

    fn is_member(&self, node: usize, m: &Membership, to: &Address) -> bool {
        match to {
            Address::Node(n) => n.as_str() == self.ids[node],
            Address::Group(Group::All) => true,
            Address::Group(Group::Role(r)) => *r == self.roles[node],
            Address::Group(Group::Named(g)) => m.groups.contains(g),
            Address::Topic(t) => m.topics.iter().any(|p| topic_matches(p, t)),
        }
    }

    /// The intended recipients (node indexes, ascending) of a message to `to` sent at `at`
    /// with `lifetime`: the members at `at` (changes at `at` included) and every node that
    /// becomes one at a time in `(at, at + lifetime)`.
    pub fn intended(
        &self,
        origin: usize,
        to: &Address,
        at: Duration,
        lifetime: Duration,
    ) -> Vec<usize> {
        if let Address::Node(n) = to {
            return self.ids.iter().position(|x| x == n.as_str()).into_iter().collect();
        }
        let mut out = self.members(to, at, lifetime);
        if !self.crosses.iter().any(|p| crosses(p, to)) {
            out.retain(|n| self.deployments[*n] == self.deployments[origin]);
        }
        out
    }

    fn members(&self, to: &Address, at: Duration, lifetime: Duration) -> Vec<usize> {
        let mut state = self.initial.clone();
        let split = self.changes.partition_point(|c| c.at <= at);
        for c in &self.changes[..split] {
            state[c.node].apply(&c.change);
        }
        let mut out: BTreeSet<usize> =
            (0..state.len()).filter(|n| self.is_member(*n, &state[*n], to)).collect();
        for c in self.changes[split..].iter().take_while(|c| c.at < at + lifetime) {
            state[c.node].apply(&c.change);
            if self.is_member(c.node, &state[c.node], to) {
                out.insert(c.node);
            }
        }
        out.into_iter().collect()
    }

    /// The changes applied during the run, in time order.
    pub fn changes(&self) -> &[Applied] {
        &self.changes
    }
}

/// Whether a `[federation] to` pattern (`*`, `node:*`, `group:*`, `topic:<pattern>` or an
/// address) covers `to`.
fn crosses(pattern: &str, to: &Address) -> bool {
    let to_s = to.to_string();
    match (pattern, to) {
        ("*", _) => true,
        ("node:*", Address::Node(_)) | ("group:*", Address::Group(_)) => true,
        (p, Address::Topic(t)) if p.starts_with("topic:") => topic_matches(&p[6..], t),
        (p, _) => p == to_s,
    }
}

/// Whether the concrete `topic` matches `pattern` (MQTT: `+` one level, `#` this level and
/// every one below, so `alerts/#` matches `alerts` too). Written here, not taken from the relay,
/// so that the oracle does not share the relay's mistakes.
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('/');
    let mut t = topic.split('/');
    loop {
        match (p.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_as_mqtt_says() {
        for (p, t, want) in [
            ("alerts/#", "alerts/flood", true),
            ("alerts/#", "alerts", true),
            ("alerts/#", "alertsx/flood", false),
            ("alerts/flood", "alerts/flood", true),
            ("alerts/flood", "alerts/flood/east", false),
            ("alerts/flood/+", "alerts/flood/east", true),
            ("alerts/flood/+", "alerts/flood", false),
            ("+/flood", "alerts/flood", true),
            ("#", "anything/at/all", true),
        ] {
            assert_eq!(topic_matches(p, t), want, "{p} vs {t}");
        }
    }

    fn declared() -> Declared {
        let text = r#"
name = "t"
duration = "1h"
[[node]]
id = "hq"
role = "command"
[[node]]
id = "t1"
role = "township"
subscribe = ["alerts/#"]
[[node]]
id = "f1"
role = "field"
groups = ["medical"]
"#;
        Declared::new(&crate::scenario::parse(text, "t.toml").unwrap())
    }

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn a_group_or_topic_crosses_to_another_deployment_only_where_the_federation_says() {
        let text = r#"
name = "t"
duration = "1h"
[federation]
to = ["node:*", "topic:city/#"]
roles = { command = "command" }
[[node]]
id = "hq"
role = "command"
subscribe = ["city/#", "county/#"]
[[node]]
id = "city-hq"
role = "command"
deployment = "city"
subscribe = ["city/#", "county/#"]
"#;
        let d = Declared::new(&crate::scenario::parse(text, "t.toml").unwrap());
        let m = Duration::from_secs(60);
        assert_eq!(d.intended(0, &addr("group:all"), m, m), vec![0]);
        assert_eq!(d.intended(1, &addr("group:all"), m, m), vec![1]);
        assert_eq!(d.intended(0, &addr("topic:county/roads"), m, m), vec![0]);
        assert_eq!(d.intended(0, &addr("topic:city/water"), m, m), vec![0, 1]);
        assert_eq!(d.intended(0, &addr("node:city-hq"), m, m), vec![1]);
        assert!(crosses("*", &addr("group:all")));
        assert!(crosses("group:all", &addr("group:all")));
        assert!(!crosses("group:*", &addr("node:hq")));
    }

    #[test]
    fn intended_recipients_are_the_members_at_send_time_and_the_late_joiners() {
        let mut d = declared();
        let m = Duration::from_secs(60);
        assert_eq!(d.intended(0, &addr("group:all"), m, m), vec![0, 1, 2]);
        assert_eq!(d.intended(0, &addr("group:role:township"), m, m), vec![1]);
        assert_eq!(d.intended(0, &addr("node:f1"), m, m), vec![2]);
        assert_eq!(d.intended(0, &addr("topic:alerts/flood"), m, m), vec![1]);
        d.record(10 * m, 0, Change::Join("medical".into()));
        d.record(20 * m, 2, Change::Leave("medical".into()));
        d.record(30 * m, 2, Change::Subscribe("alerts/flood".into()));
        let medical = addr("group:medical");
        // Sent at 1 min, 5 min lifetime: hq joins too late.
        assert_eq!(d.intended(0, &medical, m, 5 * m), vec![2]);
        // Sent at 5 min, 10 min lifetime: hq joins within it (at 10 min, before 15 min).
        assert_eq!(d.intended(0, &medical, 5 * m, 10 * m), vec![0, 2]);
        // A lifetime that ends exactly at the join does not count.
        assert_eq!(d.intended(0, &medical, 5 * m, 5 * m), vec![2]);
        // After f1 left.
        assert_eq!(d.intended(0, &medical, 25 * m, 60 * m), vec![0]);
        assert_eq!(d.intended(0, &addr("topic:alerts/flood"), 25 * m, 10 * m), vec![1, 2]);
        assert_eq!(d.intended(0, &addr("topic:alerts/flood"), 25 * m, 5 * m), vec![1]);
    }
}
