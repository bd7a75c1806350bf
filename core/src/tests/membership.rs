//! Every intended recipient accounted for: membership that outlives an outage, late binding,
//! leaving, revocation, and addresses with no member.

use super::security::Pki;
use super::*;

const MINUTE: Duration = Duration::from_secs(60);

/// Signed nodes with a short advert lifetime (2 minutes), so outages outlast it quickly.
fn add(h: &mut Harness, pki: &mut Pki, name: &str, role: Role, groups: &[&str]) {
    let mut cfg = pki.config(name, role);
    cfg.advert_lifetime = 2 * MINUTE;
    cfg.groups = groups.iter().map(|g| (*g).to_owned()).collect();
    h.add_with(cfg);
}

/// hq - relay - t1, relay - t2; t2 subscribes to flood alerts.
fn county() -> (Harness, Pki, usize) {
    let mut h = Harness::new();
    let mut pki = Pki::new();
    add(&mut h, &mut pki, "hq", Role::Command, &[]);
    add(&mut h, &mut pki, "relay", Role::Relay, &[]);
    add(&mut h, &mut pki, "t1", Role::Township, &[]);
    add(&mut h, &mut pki, "t2", Role::Township, &[]);
    for t in ["t1", "t2"] {
        h.node(t).handle_subscription(TopicPattern::new("alerts/#").unwrap(), true).unwrap();
    }
    h.connect("hq", "relay", Medium::Satellite, 300 * MS);
    h.connect("relay", "t1", Medium::Wireless, 5 * MS);
    let t2 = h.connect("relay", "t2", Medium::Wireless, 5 * MS);
    h.run_for(Duration::from_secs(5));
    (h, pki, t2)
}

fn destinations(h: &mut Harness, at: &str, id: &MessageId) -> Vec<NodeId> {
    let view = h.node(at).message_status(id).unwrap().unwrap();
    view.destinations.into_iter().map(|d| d.node).collect()
}

fn count(ids: &[MessageId], id: &MessageId) -> usize {
    ids.iter().filter(|x| *x == id).count()
}

#[test]
fn a_township_cut_off_longer_than_the_advert_lifetime_gets_every_alert_once() {
    let (mut h, _pki, t2) = county();
    h.disconnect(t2);
    // Three advert lifetimes: every node's routing has forgotten t2.
    h.run_for(6 * MINUTE);
    assert!(h.node("hq").routing.role_of(&n("t2")).is_none(), "routing forgot t2");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(h.submit("hq", "group:role:township", Precedence::Flash, 60 * MINUTE));
        ids.push(h.submit("hq", "topic:alerts/flood", Precedence::Immediate, 60 * MINUTE));
        h.run_for(MINUTE);
    }
    for id in &ids {
        assert_eq!(destinations(&mut h, "hq", id), vec![n("t1"), n("t2")], "t2 is still intended");
    }
    h.run_for(10 * MINUTE);
    assert!(h.delivered_ids("t2").is_empty());
    h.connect("relay", "t2", Medium::Wireless, 5 * MS);
    h.run_for(MINUTE);
    let (got1, got2) = (h.delivered_ids("t1"), h.delivered_ids("t2"));
    for id in &ids {
        assert_eq!(count(&got1, id), 1, "t1 once");
        assert_eq!(count(&got2, id), 1, "t2 once, after its return");
        assert_eq!(h.node("hq").message_status(id).unwrap().unwrap().state, "delivered");
    }
}

#[test]
fn membership_survives_a_restart_of_the_origin() {
    let (mut h, _pki, t2) = county();
    h.disconnect(t2);
    h.run_for(6 * MINUTE);
    h.crash("hq");
    h.open("hq");
    h.connect("hq", "relay", Medium::Satellite, 300 * MS);
    h.run_for(MINUTE);
    let id = h.submit("hq", "group:role:township", Precedence::Flash, 60 * MINUTE);
    assert_eq!(destinations(&mut h, "hq", &id), vec![n("t1"), n("t2")]);
}

#[test]
fn a_node_that_never_saw_the_member_learns_it_from_a_neighbour() {
    let (mut h, mut pki, t2) = county();
    h.disconnect(t2);
    h.run_for(6 * MINUTE);
    // A second command post comes up after t2's adverts ran out everywhere.
    add(&mut h, &mut pki, "hq2", Role::Command, &[]);
    h.connect("hq2", "relay", Medium::Wireless, 5 * MS);
    h.run_for(MINUTE);
    let id = h.submit("hq2", "topic:alerts/flood", Precedence::Flash, 60 * MINUTE);
    assert_eq!(destinations(&mut h, "hq2", &id), vec![n("t1"), n("t2")]);
    assert!(h.node("hq2").routing.role_of(&n("t2")).is_none(), "membership only, no route");
    h.connect("relay", "t2", Medium::Wireless, 5 * MS);
    h.run_for(MINUTE);
    assert_eq!(count(&h.delivered_ids("t2"), &id), 1);
}

#[test]
fn a_member_that_never_returns_is_reported_expired_for_that_destination() {
    let (mut h, _pki, t2) = county();
    h.disconnect(t2);
    h.run_for(6 * MINUTE);
    let id = h.submit("hq", "group:role:township", Precedence::Flash, 5 * MINUTE);
    h.run_for(10 * MINUTE);
    let view = h.node("hq").message_status(&id).unwrap().unwrap();
    let outcome =
        |node: &str| view.destinations.iter().find(|d| d.node == n(node)).unwrap().outcome;
    assert_eq!(outcome("t1"), Some(Outcome::Delivered));
    assert_eq!(outcome("t2"), Some(Outcome::Expired));
    assert_eq!(view.state, "partially_delivered");
    assert!(view.settled);
    let expired_for_t2 = h.events.iter().any(|(_, e)| {
        matches!(e, Event::Expired { id: x, destinations, .. } if *x == id && destinations == &[n("t2")])
    });
    assert!(expired_for_t2, "the expiry names the destination");
}

#[test]
fn a_node_that_joins_within_the_lifetime_gets_the_standing_order_and_a_later_one_does_not() {
    let (mut h, mut pki, _) = county();
    let id = h.submit("hq", "group:medical", Precedence::Immediate, 10 * MINUTE);
    h.run_for(MINUTE);
    let view = h.node("hq").message_status(&id).unwrap().unwrap();
    assert_eq!(view.state, "no_recipients");
    assert!(!view.settled);
    assert_eq!(h.node("hq").counters.no_recipients[Precedence::Immediate.index()], 1);

    // A field team powers on at the incident, in group medical.
    add(&mut h, &mut pki, "team-1", Role::Field, &["medical"]);
    h.connect("team-1", "t1", Medium::Wireless, 5 * MS);
    // t1 joins at run time.
    let now = h.now;
    assert!(h.node("t1").handle_group(now, "medical", true).unwrap());
    h.run_for(MINUTE);
    assert_eq!(count(&h.delivered_ids("team-1"), &id), 1);
    assert_eq!(count(&h.delivered_ids("t1"), &id), 1);
    assert_eq!(destinations(&mut h, "hq", &id), vec![n("t1"), n("team-1")]);
    assert_eq!(h.node("hq").message_status(&id).unwrap().unwrap().state, "delivered");

    // After the lifetime: nothing for a newcomer, but the origin says so for it.
    h.run_for(10 * MINUTE);
    add(&mut h, &mut pki, "team-2", Role::Field, &["medical"]);
    h.connect("team-2", "t1", Medium::Wireless, 5 * MS);
    h.run_for(MINUTE);
    assert!(h.delivered_ids("team-2").is_empty());
    let view = h.node("hq").message_status(&id).unwrap().unwrap();
    let late = view.destinations.iter().find(|d| d.node == n("team-2")).unwrap();
    assert_eq!(late.outcome, Some(Outcome::Expired));
    assert!(late.reason.contains("before team-2 was known"), "{}", late.reason);

    // Past the grace, a newcomer is not even recorded: the message is gone from the origin.
    h.run_for(super::super::membership::BINDING_GRACE);
    add(&mut h, &mut pki, "team-3", Role::Field, &["medical"]);
    h.connect("team-3", "t1", Medium::Wireless, 5 * MS);
    h.run_for(MINUTE);
    assert!(h.delivered_ids("team-3").is_empty());
    assert_eq!(destinations(&mut h, "hq", &id), vec![n("t1"), n("team-1"), n("team-2")]);
}

#[test]
fn a_signed_leave_ends_membership() {
    let (mut h, _pki, _) = county();
    let now = h.now;
    h.node("t1").handle_group(now, "medical", true).unwrap();
    h.run_for(MINUTE);
    let id = h.submit("hq", "group:medical", Precedence::Flash, 10 * MINUTE);
    assert_eq!(destinations(&mut h, "hq", &id), vec![n("t1")]);
    let now = h.now;
    assert!(h.node("t1").handle_group(now, "medical", false).unwrap());
    h.run_for(MINUTE);
    let id = h.submit("hq", "group:medical", Precedence::Flash, 10 * MINUTE);
    assert!(destinations(&mut h, "hq", &id).is_empty());
    assert_eq!(h.node("hq").message_status(&id).unwrap().unwrap().state, "no_recipients");
}

#[test]
fn a_revoked_node_is_no_longer_a_member() {
    let (mut h, pki, t2) = county();
    h.disconnect(t2);
    h.run_for(6 * MINUTE);
    // Held for t2 at hq, which has no route to it.
    let waiting = h.submit("hq", "group:role:township", Precedence::Flash, 60 * MINUTE);
    h.run_for(MINUTE);
    assert_eq!(h.node("hq").held_messages(), 1);
    let crl = pki.revoke(&["t2"], 1);
    h.node("hq").handle_revocations(None, &crl).unwrap();
    h.run_for(MINUTE);
    // The copy held for it is refused at once, with a report, not left to expire.
    assert_eq!(h.node("hq").held_messages(), 0);
    let id = h.submit("hq", "group:role:township", Precedence::Flash, 60 * MINUTE);
    assert_eq!(destinations(&mut h, "hq", &id), vec![n("t1")]);
    let view = h.node("hq").message_status(&waiting).unwrap().unwrap();
    let t2_fate = view.destinations.iter().find(|d| d.node == n("t2")).unwrap();
    assert_eq!(t2_fate.outcome, Some(Outcome::Refused));
    assert!(t2_fate.reason.contains("withdrawn by the CA"), "{}", t2_fate.reason);
    assert!(view.settled);
    // And it stays gone across a restart.
    h.crash("hq");
    h.open("hq");
    let id = h.submit("hq", "group:role:township", Precedence::Flash, 60 * MINUTE);
    assert_eq!(destinations(&mut h, "hq", &id), vec![n("t1")]);
}

#[test]
fn an_origin_belongs_to_its_own_groups() {
    let (mut h, _pki, _) = county();
    let now = h.now;
    h.node("hq").handle_group(now, "command-post", true).unwrap();
    let id = h.submit("hq", "group:command-post", Precedence::Flash, 10 * MINUTE);
    h.run_for(MS);
    let view = h.node("hq").message_status(&id).unwrap().unwrap();
    assert_eq!(view.state, "delivered", "its own copy, not no_recipients");
    assert_eq!(count(&h.delivered_ids("hq"), &id), 1);
}

#[test]
fn a_restarted_origin_still_binds_late() {
    let (mut h, mut pki, _) = county();
    let id = h.submit("hq", "group:medical", Precedence::Flash, 30 * MINUTE);
    h.run_for(MINUTE);
    h.crash("hq");
    h.open("hq");
    h.connect("hq", "relay", Medium::Satellite, 300 * MS);
    add(&mut h, &mut pki, "team-1", Role::Field, &["medical"]);
    h.connect("team-1", "t1", Medium::Wireless, 5 * MS);
    h.run_for(MINUTE);
    assert_eq!(count(&h.delivered_ids("team-1"), &id), 1);
}

#[test]
fn a_leave_not_signed_by_the_member_is_refused_as_a_forgery() {
    let (mut h, _pki, _) = county();
    let now = h.now;
    h.node("t1").handle_group(now, "medical", true).unwrap();
    h.run_for(MINUTE);
    // The relay forges t1's leave: t1's advert, a higher seq, the group dropped.
    let now = h.now;
    let mut advert = h.node("relay").membership.get(&n("t1")).unwrap().clone();
    advert.seq += 10;
    advert.groups.clear();
    let link = *h.node("hq").links.keys().next().unwrap();
    h.node("hq").handle_frame(now, link, Frame::LinkState(advert));
    h.flush();
    assert_eq!(h.node("hq").counters.forged, 1);
    let medical = Address::parse("group:medical").unwrap();
    assert!(h.node("hq").membership.is_member(&n("t1"), &medical), "still a member");
}

#[test]
fn what_a_border_vouches_for_a_member_fits_in_24_bytes() {
    // One for every node of every other area, in every node: a 1,000-node mesh holds ~10^6.
    assert_eq!(std::mem::size_of::<crate::membership::Vouched>(), 24);
}
