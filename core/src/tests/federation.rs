//! Two deployments under different CAs, federated: orders cross under an explicit policy,
//! only at the borders, each deployment's revocation lists counting for its own nodes only.
//!
//! County: `t1` (township) - `hq` (command, the county's border). City: `city-hq` (command,
//! the city's border), linked to `hq` over satellite; `city-team` (field) behind it.

use super::security::{Pki, misbehaved};
use super::*;
use crate::federation::Federation;
use crate::pki::NodePattern;
use crate::policy::AddressPattern;

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

/// What the county takes from the city: orders to any node and `topic:city/#`, IMMEDIATE and
/// below, from its command nodes acting as townships here.
fn county_takes_from_city() -> Federation {
    Federation {
        deployment: "city".into(),
        borders: vec![n("hq")],
        to: vec![
            AddressPattern::parse("node:*").unwrap(),
            AddressPattern::parse("topic:city/#").unwrap(),
        ],
        precedences: [true, true, true, false],
        roles: [(Role::Command, Role::Township)].into_iter().collect(),
    }
}

/// What the city takes from the county: anything to a node, from its command and townships.
fn city_takes_from_county() -> Federation {
    Federation {
        deployment: "county".into(),
        borders: vec![n("city-hq")],
        to: vec![
            AddressPattern::parse("node:*").unwrap(),
            AddressPattern::parse("topic:city/#").unwrap(),
        ],
        precedences: [true; 4],
        roles: [(Role::Command, Role::Command), (Role::Township, Role::Township)]
            .into_iter()
            .collect(),
    }
}

struct Deployments {
    h: Harness,
    county: Pki,
    city: Pki,
}

impl Deployments {
    fn add_county(&mut self, name: &str, role: Role) {
        let trust = self.county.pki_trust(name, role, 0);
        let trust = trust
            .federate(
                "city".into(),
                &self.city.ca_der(),
                vec![NodePattern::parse("city-*").unwrap()],
            )
            .unwrap();
        let mut cfg = CoreConfig::new(n(name), role);
        cfg.trust = Some(Arc::new(trust));
        cfg.federation = vec![county_takes_from_city()];
        self.h.add_with(cfg);
    }

    fn add_city(&mut self, name: &str, role: Role) {
        let trust = self.city.pki_trust(name, role, 0);
        let county_nodes = ["t*", "hq"].map(|p| NodePattern::parse(p).unwrap()).to_vec();
        let trust = trust.federate("county".into(), &self.county.ca_der(), county_nodes).unwrap();
        let mut cfg = CoreConfig::new(n(name), role);
        cfg.trust = Some(Arc::new(trust));
        cfg.federation = vec![city_takes_from_county()];
        self.h.add_with(cfg);
    }

    fn outcome(&mut self, at: &str, id: &MessageId, to: &str) -> (Option<Outcome>, String) {
        let view = self.h.node(at).message_status(id).unwrap().unwrap();
        let d = view.destinations.into_iter().find(|d| d.node == n(to)).unwrap();
        (d.outcome, d.reason)
    }
}

fn deployments() -> Deployments {
    let mut d = Deployments { h: Harness::new(), county: Pki::new(), city: Pki::with_seed(21) };
    d.add_county("t1", Role::Township);
    d.add_county("hq", Role::Command);
    d.add_city("city-hq", Role::Command);
    d.add_city("city-team", Role::Field);
    d.h.node("city-hq").handle_subscription(TopicPattern::new("city/#").unwrap(), true).unwrap();
    d.h.connect("t1", "hq", Medium::Wireless, 5 * MS);
    d.h.connect("hq", "city-hq", Medium::Satellite, 300 * MS);
    d.h.connect("city-hq", "city-team", Medium::Wireless, 5 * MS);
    d.h.run_for(5 * SECOND);
    d
}

#[test]
fn orders_cross_between_two_deployments_under_their_policy_with_receipts_both_ways() {
    let mut d = deployments();
    let down = d.h.submit("city-hq", "node:t1", Precedence::Immediate, HOUR);
    let up = d.h.submit("t1", "node:city-team", Precedence::Routine, HOUR);
    d.h.run_for(5 * SECOND);
    assert_eq!(d.h.delivered_ids("t1"), vec![down]);
    assert_eq!(d.h.delivered_ids("city-team"), vec![up]);
    assert_eq!(d.outcome("city-hq", &down, "t1").0, Some(Outcome::Delivered));
    assert_eq!(d.outcome("t1", &up, "city-team").0, Some(Outcome::Delivered));
    // Every node knows which nodes are the other deployment's.
    let status = d.h.node("t1").status();
    let city: Vec<&str> = status
        .deployments
        .iter()
        .filter(|(_, dep)| &**dep == "city")
        .map(|(node, _)| node.as_str())
        .collect();
    assert_eq!(city, ["city-hq", "city-team"]);
    assert!(
        d.h.node("city-team")
            .status()
            .deployments
            .iter()
            .any(|(node, dep)| node.as_str() == "t1" && &**dep == "county")
    );
    for at in ["t1", "hq", "city-hq", "city-team"] {
        assert_eq!(d.h.node(at).counters.forged, 0, "{at}");
        assert_eq!(d.h.node(at).counters.federation_refused, 0, "{at}");
    }
}

#[test]
fn what_the_policy_does_not_allow_is_refused_with_the_reason_and_its_sender_stays_linked() {
    let mut d = deployments();
    let flash = d.h.submit("city-hq", "node:t1", Precedence::Flash, HOUR);
    let field = d.h.submit("city-team", "node:t1", Precedence::Routine, HOUR);
    let broadcast = d.h.submit("city-hq", "topic:county/water", Precedence::Routine, HOUR);
    d.h.run_for(5 * SECOND);
    let (outcome, reason) = d.outcome("city-hq", &flash, "t1");
    assert_eq!(outcome, Some(Outcome::Refused));
    assert!(reason.contains("flash may not cross from city"), "{reason}");
    let (outcome, reason) = d.outcome("city-team", &field, "t1");
    assert_eq!(outcome, Some(Outcome::Refused));
    assert!(reason.contains("role field may not send"), "{reason}");
    assert!(d.h.delivered_ids("t1").is_empty());
    // Refused at the border, counted there; not a forgery: nobody is cut off.
    assert_eq!(d.h.node("hq").counters.federation_refused, 2);
    assert!(misbehaved(&d.h, "hq").is_empty(), "{:?}", misbehaved(&d.h, "hq"));
    // A topic of the county's the city may not send to has no member for it: t1 does not
    // subscribe, and nothing crosses for it.
    let view = d.h.node("city-hq").message_status(&broadcast).unwrap().unwrap();
    assert!(view.destinations.is_empty(), "{:?}", view.destinations);
    // What the policy allows still goes, on the same link.
    let next = d.h.submit("city-hq", "node:t1", Precedence::Immediate, HOUR);
    d.h.run_for(5 * SECOND);
    assert_eq!(d.h.delivered_ids("t1"), vec![next]);
}

#[test]
fn group_and_topic_messages_reach_the_other_deployment_only_where_the_policy_lets_them_cross() {
    let mut d = deployments();
    // `group:all` does not cross: the city's nodes are not among its recipients.
    let all = d.h.submit("hq", "group:all", Precedence::Routine, HOUR);
    // `topic:city/#` does, both ways: city-hq subscribes.
    let water = d.h.submit("t1", "topic:city/water", Precedence::Routine, HOUR);
    d.h.run_for(5 * SECOND);
    let view = d.h.node("hq").message_status(&all).unwrap().unwrap();
    let to: Vec<NodeId> = view.destinations.iter().map(|x| x.node.clone()).collect();
    assert_eq!(to, vec![n("hq"), n("t1")]);
    assert_eq!(d.h.delivered_ids("t1"), vec![all]);
    assert_eq!(d.h.delivered_ids("city-hq"), vec![water]);
    assert_eq!(d.outcome("t1", &water, "city-hq").0, Some(Outcome::Delivered));
}

#[test]
fn a_node_of_another_deployment_may_link_only_at_a_border() {
    let mut d = deployments();
    d.h.connect("city-team", "t1", Medium::Public, 5 * MS);
    d.h.run_for(2 * SECOND);
    let at_t1 = misbehaved(&d.h, "t1");
    assert!(
        at_t1.iter().any(|(peer, why)| peer == &n("city-team")
            && why.contains("a node of city may link only at its borders (hq), not at t1")),
        "{at_t1:?}"
    );
}

#[test]
fn each_deployments_revocation_list_counts_for_its_own_nodes_only() {
    let mut d = deployments();
    let crl = d.city.revoke(&["city-team"], 1);
    assert_eq!(d.h.node("t1").handle_revocations(None, &crl), Ok(true));
    assert_eq!(d.h.node("t1").revocation_number(), None, "the county's own list is untouched");
    assert_eq!(d.h.node("t1").federated_revocation_numbers(), vec![("city".into(), 1)]);
    // The county's own list, number 1 too, is taken beside it.
    let own = d.county.revoke(&["hq"], 1);
    assert_eq!(d.h.node("t1").handle_revocations(None, &own), Ok(true));
    assert_eq!(d.h.node("t1").revocation_number(), Some(1));
    // city-team's messages are refused at t1 as revoked; city-hq's still come.
    let revoked = d.h.submit("city-team", "node:t1", Precedence::Routine, HOUR);
    d.h.run_for(5 * SECOND);
    assert!(!d.h.delivered_ids("t1").contains(&revoked));
    let status = d.h.node("t1").status();
    assert!(!status.members.contains(&n("city-team")));
    // Both lists are stored, each under its own CA, and read back after a crash.
    d.h.crash("t1");
    d.h.open("t1");
    assert_eq!(d.h.node("t1").revocation_number(), Some(1));
    assert_eq!(d.h.node("t1").federated_revocation_numbers(), vec![("city".into(), 1)]);
}

#[test]
fn a_federated_ca_certifies_only_its_own_nodes() {
    let mut d = deployments();
    // The city's CA issues a certificate for a county node's id: nobody takes it, either as
    // the city's node or as the county's.
    let forged = d.city.pki_trust("hq", Role::Command, 1);
    let der = crate::trust::Trust::certificate(&forged);
    let t1 = d.h.node("t1").cfg.trust.clone().unwrap();
    let why = t1.check_certificate(&der).unwrap_err();
    assert!(why.contains("hq is a node of") || why.contains("may not certify hq"), "{why}");
    // And the county's CA may not certify a city id.
    let county_city = d.county.pki_trust("city-x", Role::Command, 0);
    let why = t1.check_certificate(&crate::trust::Trust::certificate(&county_city)).unwrap_err();
    assert!(why.contains("city-x is a node of city"), "{why}");
}

#[test]
fn a_federated_border_that_alters_a_message_is_cut_off_as_any_forger() {
    let mut d = deployments();
    // city-hq alters what it forwards: city-team's order, signed by city-team, is no longer
    // what city-team signed when it reaches hq.
    d.h.tamper = Some("city-hq".into());
    let id = d.h.submit("city-team", "node:hq", Precedence::Routine, HOUR);
    d.h.run_for(5 * SECOND);
    assert!(!d.h.delivered_ids("hq").contains(&id));
    assert!(d.h.node("hq").counters.forged >= 1);
    assert_eq!(d.h.node("hq").counters.federation_refused, 0, "judged a forgery, not policy");
    let cut = misbehaved(&d.h, "hq");
    assert!(
        cut.iter().any(|(peer, why)| peer == &n("city-hq") && why.contains("bad signature")),
        "{cut:?}"
    );
}

/// An envelope `from` signs (through its own node), with `body` and `payload`, to `to`.
fn signed_report(
    d: &mut Deployments,
    from: &str,
    to: &str,
    report: crate::types::Report,
    payload: Bytes,
) {
    let now = d.h.now;
    let node = d.h.node(from);
    let env = Envelope {
        id: node.new_id(),
        origin: n(from),
        to: Address::parse(to).unwrap(),
        precedence: Precedence::Flash,
        lifetime: HOUR,
        content_type: crate::custody::REPORT_CONTENT_TYPE.into(),
        payload,
        receipt: false,
        body: crate::types::Body::Report(report),
        status: TrafficStatus::Actual,
        created: now,
        age: Duration::ZERO,
        hop_count: 0,
        destinations: vec![n(to.trim_start_matches("node:"))],
        signature: Bytes::new(),
        key: None,
        supersedes: None,
    };
    node.originate(now, env);
    node.commit(now).unwrap();
}

fn delivered_at(of: MessageId, node: &str) -> crate::types::Report {
    crate::types::Report {
        of,
        outcome: Outcome::Delivered,
        at_node: n(node),
        age: SECOND,
        reason: String::new(),
        destinations: vec![n(node)],
    }
}

#[test]
fn a_receipt_signed_by_one_node_for_another_is_refused_and_the_order_stays_undelivered() {
    let mut d = deployments();
    d.h.disconnect(0); // t1 - hq: t1 can receive nothing
    let id = d.h.submit("hq", "node:t1", Precedence::Flash, HOUR);
    d.h.run_for(2 * SECOND);
    // city-hq signs "delivered at t1": it may speak only for itself.
    signed_report(&mut d, "city-hq", "node:hq", delivered_at(id, "t1"), Bytes::new());
    d.h.run_for(5 * SECOND);
    assert_eq!(d.outcome("hq", &id, "t1").0, None, "a forged receipt was taken");
    // And "delivered at city-hq" for a message to t1 names a destination that is not its own.
    let mut own = delivered_at(id, "city-hq");
    own.destinations = vec![n("t1")];
    signed_report(&mut d, "city-hq", "node:hq", own, Bytes::new());
    d.h.run_for(5 * SECOND);
    assert_eq!(d.outcome("hq", &id, "t1").0, None, "a delivery named for another node was taken");
    assert!(d.h.node("hq").counters.refused[Precedence::Flash.index()] >= 2);
}

#[test]
fn nothing_but_a_receipt_crosses_as_a_report() {
    let mut d = deployments();
    // FLASH may not cross from the city; a "report" carrying a payload would.
    let report = delivered_at(MessageId([9; 16]), "city-hq");
    signed_report(&mut d, "city-hq", "node:t1", report, Bytes::from(vec![b'x'; 60_000]));
    d.h.run_for(5 * SECOND);
    assert_eq!(d.h.node("t1").counters.received[Precedence::Flash.index()], 0);
    assert_eq!(d.h.node("hq").counters.received[Precedence::Flash.index()], 0);
    assert!(d.h.node("hq").counters.refused[Precedence::Flash.index()] >= 1);
}
