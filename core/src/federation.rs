//! Other deployments this one federates with: whose CA it trusts besides its own, where their
//! nodes may link, and what their nodes may send into this deployment.
//!
//! A node learns that a certificate is another deployment's from its [`crate::trust::Trust`]
//! ([`crate::trust::Credential::deployment`]); what it then lets through is this module's
//! business. Every node of a deployment carries the same entries: each checks on receipt, like
//! [`crate::policy`], so a misconfigured or hostile border cannot push through what the policy
//! does not allow. A message the policy refuses is refused with the reason and counted; its
//! sender is not cut off for it (it may be honest: the policy simply does not allow it). A
//! forged one is judged as any forgery.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::policy::AddressPattern;
use super::types::{Address, NodeId, Precedence, Role};

/// The name of a deployment, as `[[federation]] deployment` gives it. `None` in a credential
/// means this node's own deployment.
pub type Deployment = Arc<str>;

/// One `[[federation]]` entry, as the core needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Federation {
    pub deployment: Deployment,
    /// This deployment's nodes where the other's nodes may link. A link from one of its nodes
    /// anywhere else is refused.
    pub borders: Vec<NodeId>,
    /// Addresses its nodes may send to (patterns as in policy rules). Also which of this
    /// deployment's group and topic messages its nodes receive: what may cross, either way.
    pub to: Vec<AddressPattern>,
    /// Precedences its nodes may send, by [`Precedence::index`].
    pub precedences: [bool; 4],
    /// Its roles, each mapped to the local role its nodes act as here (in policy rules and
    /// steering). A node of a role not mapped may send nothing.
    pub roles: BTreeMap<Role, Role>,
}

impl Federation {
    /// The local role a node of the other deployment certified as `role` acts as here, and
    /// whether it may send `p` to `to`; else why not.
    pub fn admit(&self, role: Role, to: &Address, p: Precedence) -> Result<Role, String> {
        let d = &self.deployment;
        let Some(local) = self.roles.get(&role) else {
            return Err(format!("federation {d}: role {role} may not send into this deployment"));
        };
        if !self.precedences[p.index()] {
            return Err(format!("federation {d}: {p} may not cross from {d}"));
        }
        if !self.carries(to) {
            return Err(format!("federation {d}: {to} may not be sent to from {d}"));
        }
        Ok(*local)
    }

    /// Whether messages to `to` may cross between the two deployments.
    pub fn carries(&self, to: &Address) -> bool {
        self.to.iter().any(|p| p.matches(to))
    }

    /// Whether `node` is a border of this federation.
    pub fn is_border(&self, node: &NodeId) -> bool {
        self.borders.contains(node)
    }
}

/// The federations of a node, looked up by deployment.
pub fn find<'a>(all: &'a [Federation], deployment: &str) -> Option<&'a Federation> {
    all.iter().find(|f| &*f.deployment == deployment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn city() -> Federation {
        Federation {
            deployment: "city".into(),
            borders: vec![NodeId::new("county-hq").unwrap()],
            to: vec![
                AddressPattern::parse("node:*").unwrap(),
                AddressPattern::parse("topic:city/#").unwrap(),
            ],
            precedences: [true, true, true, false],
            roles: [(Role::Command, Role::Township)].into_iter().collect(),
        }
    }

    #[test]
    fn the_policy_admits_only_mapped_roles_allowed_precedences_and_addresses() {
        let f = city();
        let node = Address::parse("node:county-hq").unwrap();
        assert_eq!(f.admit(Role::Command, &node, Precedence::Immediate), Ok(Role::Township));
        let flash = f.admit(Role::Command, &node, Precedence::Flash).unwrap_err();
        assert!(flash.contains("flash may not cross from city"), "{flash}");
        let field = f.admit(Role::Field, &node, Precedence::Routine).unwrap_err();
        assert!(field.contains("role field"), "{field}");
        let all = Address::parse("group:all").unwrap();
        let group = f.admit(Role::Command, &all, Precedence::Routine).unwrap_err();
        assert!(group.contains("group:all may not be sent to"), "{group}");
        assert!(f.carries(&Address::parse("topic:city/water").unwrap()));
        assert!(!f.carries(&Address::parse("topic:county/water").unwrap()));
        assert!(f.is_border(&NodeId::new("county-hq").unwrap()));
        assert!(!f.is_border(&NodeId::new("township-01").unwrap()));
    }
}
