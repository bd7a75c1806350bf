//! Authorization of senders: who may send what precedence to which addresses.
//!
//! Rules are checked in order and the first that matches decides; no match allows. The
//! configured rules come first, then (unless disabled) the safe defaults:
//! only `command` nodes may send FLASH to `group:all`, and `field` nodes may not publish under
//! `alerts/`. The origin checks at submission; every relay checks again on receipt, so a node
//! with a different (or tampered) configuration cannot push a forbidden message through.

use super::types::{Address, Group, NodeId, ParseError, Precedence, Role, TopicPattern};

/// Which addresses a rule covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressPattern {
    /// Every address.
    Any,
    /// `node:*`
    AnyNode,
    Node(NodeId),
    /// `group:*`
    AnyGroup,
    Group(Group),
    /// `topic:<pattern>`, with `+` and `#`.
    Topic(TopicPattern),
}

impl AddressPattern {
    pub fn parse(s: &str) -> Result<AddressPattern, ParseError> {
        match s {
            "*" => return Ok(AddressPattern::Any),
            "node:*" => return Ok(AddressPattern::AnyNode),
            "group:*" => return Ok(AddressPattern::AnyGroup),
            _ => {}
        }
        if let Some(t) = s.strip_prefix("topic:") {
            return TopicPattern::new(t).map(AddressPattern::Topic);
        }
        match Address::parse(s)? {
            Address::Node(n) => Ok(AddressPattern::Node(n)),
            Address::Group(g) => Ok(AddressPattern::Group(g)),
            Address::Topic(t) => TopicPattern::new(&t).map(AddressPattern::Topic),
        }
    }

    /// Whether the address `to` is covered.
    pub fn matches(&self, to: &Address) -> bool {
        match (self, to) {
            (AddressPattern::Any, _) => true,
            (AddressPattern::AnyNode, Address::Node(_)) => true,
            (AddressPattern::Node(a), Address::Node(b)) => a == b,
            (AddressPattern::AnyGroup, Address::Group(_)) => true,
            (AddressPattern::Group(a), Address::Group(b)) => a == b,
            (AddressPattern::Topic(p), Address::Topic(t)) => p.matches(t),
            _ => false,
        }
    }
}

/// As written in a configuration (`node:*`, `topic:alerts/#`, ...): parses back to itself.
impl std::fmt::Display for AddressPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressPattern::Any => f.write_str("*"),
            AddressPattern::AnyNode => f.write_str("node:*"),
            AddressPattern::Node(n) => write!(f, "node:{n}"),
            AddressPattern::AnyGroup => f.write_str("group:*"),
            AddressPattern::Group(g) => write!(f, "group:{g}"),
            AddressPattern::Topic(p) => write!(f, "topic:{}", p.as_str()),
        }
    }
}

/// One rule; empty `from_roles` and `from_nodes` match every sender.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub allow: bool,
    pub from_roles: Vec<Role>,
    pub from_nodes: Vec<NodeId>,
    pub to: AddressPattern,
    /// The rule applies to this precedence and higher; `None`: to all.
    pub min_precedence: Option<Precedence>,
    /// Told to the sender when the rule refuses.
    pub reason: String,
}

impl Rule {
    fn matches(&self, origin: &NodeId, role: Option<Role>, to: &Address, p: Precedence) -> bool {
        let sender = (self.from_roles.is_empty() && self.from_nodes.is_empty())
            || role.is_some_and(|r| self.from_roles.contains(&r))
            || self.from_nodes.contains(origin);
        sender && self.to.matches(to) && self.min_precedence.is_none_or(|min| p >= min)
    }
}

/// The ordered rules of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub rules: Vec<Rule>,
    /// Roles whose nodes may cancel and replace other nodes' messages (an origin may always
    /// steer its own). None by default.
    pub override_roles: Vec<Role>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { rules: Policy::safe_defaults(), override_roles: Vec::new() }
    }
}

impl Policy {
    /// Configured rules followed by the safe defaults.
    pub fn with_defaults(mut rules: Vec<Rule>) -> Policy {
        rules.extend(Policy::safe_defaults());
        Policy { rules, override_roles: Vec::new() }
    }

    pub fn safe_defaults() -> Vec<Rule> {
        vec![
            Rule {
                allow: true,
                from_roles: vec![Role::Command],
                from_nodes: vec![],
                to: AddressPattern::Group(Group::All),
                min_precedence: Some(Precedence::Flash),
                reason: String::new(),
            },
            Rule {
                allow: false,
                from_roles: vec![],
                from_nodes: vec![],
                to: AddressPattern::Group(Group::All),
                min_precedence: Some(Precedence::Flash),
                reason: "only command nodes may send FLASH to group:all".into(),
            },
            Rule {
                allow: false,
                from_roles: vec![Role::Field],
                from_nodes: vec![],
                to: AddressPattern::Topic(
                    TopicPattern::new("alerts/#")
                        .unwrap_or_else(|_| unreachable!("`alerts/#` is a valid pattern")),
                ),
                min_precedence: None,
                reason: "field nodes may not publish under alerts/".into(),
            },
        ]
    }

    /// `Ok` if `origin` (of `role`, if known) may send `p` to `to`, else the refusal reason.
    pub fn check(
        &self,
        origin: &NodeId,
        role: Option<Role>,
        to: &Address,
        p: Precedence,
    ) -> Result<(), String> {
        match self.rules.iter().find(|r| r.matches(origin, role, to, p)) {
            Some(r) if !r.allow => Err(if r.reason.is_empty() {
                format!("refused by policy: {origin} may not send {p} to {to}")
            } else {
                r.reason.clone()
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(p: &Policy, origin: &str, role: Role, to: &str, prec: Precedence) -> bool {
        p.check(&NodeId::new(origin).unwrap(), Some(role), &Address::parse(to).unwrap(), prec)
            .is_ok()
    }

    #[test]
    fn safe_defaults() {
        let p = Policy::default();
        assert!(check(&p, "county-hq", Role::Command, "group:all", Precedence::Flash));
        assert!(!check(&p, "township-01", Role::Township, "group:all", Precedence::Flash));
        assert!(check(&p, "township-01", Role::Township, "group:all", Precedence::Immediate));
        assert!(!check(&p, "team-1", Role::Field, "topic:alerts/flood", Precedence::Routine));
        assert!(check(&p, "team-1", Role::Field, "topic:reports/flood", Precedence::Routine));
        assert!(check(&p, "township-01", Role::Township, "topic:alerts/flood", Precedence::Flash));
        // An unknown origin role does not get the command exemption.
        let unknown = p.check(
            &NodeId::new("x").unwrap(),
            None,
            &Address::parse("group:all").unwrap(),
            Precedence::Flash,
        );
        assert_eq!(unknown, Err("only command nodes may send FLASH to group:all".into()));
    }

    #[test]
    fn configured_rules_come_first() {
        let p = Policy::with_defaults(vec![Rule {
            allow: true,
            from_roles: vec![],
            from_nodes: vec![NodeId::new("team-lead").unwrap()],
            to: AddressPattern::parse("topic:alerts/#").unwrap(),
            min_precedence: None,
            reason: String::new(),
        }]);
        assert!(check(&p, "team-lead", Role::Field, "topic:alerts/fire", Precedence::Flash));
        assert!(!check(&p, "team-2", Role::Field, "topic:alerts/fire", Precedence::Flash));
    }

    #[test]
    fn patterns_parse() {
        for (s, ok) in [
            ("*", true),
            ("node:*", true),
            ("group:*", true),
            ("topic:alerts/+/north", true),
            ("node:county-hq", true),
            ("group:role:field", true),
            ("nonsense", false),
        ] {
            assert_eq!(AddressPattern::parse(s).is_ok(), ok, "{s}");
            if let Ok(p) = AddressPattern::parse(s) {
                assert_eq!(p.to_string(), s, "written back as it was read");
            }
        }
    }
}
