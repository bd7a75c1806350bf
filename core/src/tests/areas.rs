//! Areas: full link state stays inside an area, borders summarise it for the rest, and
//! routing, membership, keys and receipts still work across areas.

use super::security::Pki;
use super::*;

const MINUTE: Duration = Duration::from_secs(60);

fn add(h: &mut Harness, pki: &mut Pki, name: &str, role: Role, area: &str, groups: &[&str]) {
    let mut cfg = pki.config(name, role);
    cfg.area = area.into();
    cfg.groups = groups.iter().map(|g| (*g).to_owned()).collect();
    h.add_with(cfg);
}

/// Area north: n-hq - n-relay - n-t1 (subscribes to alerts). Area south: s-relay - s-t1
/// (group medical), s-relay - s-t2, s-t1 - s-t2, and s-t3 linked to s-relay and s-t1.
/// Between them: n-relay - s-relay (radio) and n-hq - s-t2 (satellite). Wires returned:
/// n-relay - s-relay, and s-t1 - s-t3 (neither end a border).
fn two_areas() -> (Harness, Pki, usize, usize) {
    let mut h = Harness::new();
    let mut pki = Pki::new();
    add(&mut h, &mut pki, "n-hq", Role::Command, "north", &[]);
    add(&mut h, &mut pki, "n-relay", Role::Relay, "north", &[]);
    add(&mut h, &mut pki, "n-t1", Role::Township, "north", &[]);
    add(&mut h, &mut pki, "s-relay", Role::Relay, "south", &[]);
    add(&mut h, &mut pki, "s-t1", Role::Township, "south", &["medical"]);
    add(&mut h, &mut pki, "s-t2", Role::Field, "south", &[]);
    add(&mut h, &mut pki, "s-t3", Role::Field, "south", &[]);
    h.node("n-t1").handle_subscription(TopicPattern::new("alerts/#").unwrap(), true).unwrap();
    h.node("s-t2").handle_subscription(TopicPattern::new("alerts/#").unwrap(), true).unwrap();
    h.connect("n-hq", "n-relay", Medium::Wireless, 5 * MS);
    h.connect("n-relay", "n-t1", Medium::Wireless, 5 * MS);
    let across = h.connect("n-relay", "s-relay", Medium::Wireless, 10 * MS);
    h.connect("s-relay", "s-t1", Medium::Wireless, 5 * MS);
    h.connect("s-relay", "s-t2", Medium::Wireless, 5 * MS);
    h.connect("s-t1", "s-t2", Medium::Wireless, 5 * MS);
    h.connect("s-relay", "s-t3", Medium::Wireless, 5 * MS);
    let inside = h.connect("s-t1", "s-t3", Medium::Wireless, 5 * MS);
    h.connect("n-hq", "s-t2", Medium::Satellite, 300 * MS);
    h.run_for(MINUTE);
    (h, pki, across, inside)
}

fn held(h: &mut Harness, at: &str) -> BTreeMap<NodeId, u64> {
    h.node(at).routing.summary().into_iter().collect()
}

#[test]
fn adverts_stay_in_their_area_and_borders_summarise_it() {
    let (mut h, _pki, _, _) = two_areas();
    let db = held(&mut h, "n-t1");
    // Its own area, and the borders of both (n-hq and n-relay of north, s-relay and s-t2 of
    // south); not s-t1, which has no link out of south.
    let nodes: Vec<&str> = db.keys().map(NodeId::as_str).collect();
    assert_eq!(nodes, ["n-hq", "n-relay", "s-relay", "s-t2"]);
    let now = h.now;
    let border = h.node("n-t1").routing.advert(&n("s-relay"), now).unwrap();
    let members: Vec<String> = crate::wire::decode_area_summary(&border.summary)
        .unwrap()
        .into_iter()
        .map(|m| m.node.to_string())
        .collect();
    assert_eq!(members, ["s-relay", "s-t1", "s-t2", "s-t3"], "its area, itself first");
    assert!(h.node("n-t1").routing.advert(&n("n-hq"), now).unwrap().is_border());
    assert!(!h.node("s-t1").routing.advert(&n("s-relay"), now).unwrap().summary.is_empty());
    // Routes into the other area through the summaries; membership from them.
    assert_eq!(
        h.node("n-t1").routing.next_hop(&n("s-t1"), Precedence::Routine),
        Some(&n("n-relay"))
    );
    let medical = h.node("n-t1").resolve(&Address::parse("group:medical").unwrap());
    assert_eq!(medical, vec![n("s-t1")]);
    let membership = &h.node("n-t1").membership;
    assert!(membership.contains(&n("s-t1")) && membership.get(&n("s-t1")).is_none(), "vouched");
}

#[test]
fn orders_alerts_and_receipts_cross_areas_once_each() {
    let (mut h, _pki, _, _) = two_areas();
    let order = h.submit("n-t1", "node:s-t1", Precedence::Immediate, 30 * MINUTE);
    let medical = h.submit("n-t1", "group:medical", Precedence::Priority, 30 * MINUTE);
    let alert = h.submit("s-t1", "topic:alerts/flood", Precedence::Flash, 30 * MINUTE);
    let townships = h.submit("s-t2", "group:role:township", Precedence::Routine, 30 * MINUTE);
    h.run_for(2 * MINUTE);
    let count = |ids: Vec<MessageId>, id: &MessageId| ids.iter().filter(|x| *x == id).count();
    assert_eq!(count(h.delivered_ids("s-t1"), &order), 1);
    assert_eq!(count(h.delivered_ids("s-t1"), &medical), 1);
    assert_eq!(count(h.delivered_ids("n-t1"), &alert), 1, "north's subscriber");
    assert_eq!(count(h.delivered_ids("s-t2"), &alert), 1, "south's subscriber");
    assert_eq!(count(h.delivered_ids("n-t1"), &townships), 1);
    assert_eq!(count(h.delivered_ids("s-t1"), &townships), 1);
    // The origins hold every receipt: each destination's key crossed with its first message
    // (the origin's advert went along with the order; the receipt's signer's with the receipt).
    for (at, id) in [("n-t1", order), ("n-t1", medical), ("s-t1", alert), ("s-t2", townships)] {
        let view = h.node(at).message_status(&id).unwrap().unwrap();
        assert_eq!(view.state, "delivered", "{at}: {:?}", view.destinations);
    }
    // s-t1's advert went to north only with its messages: the relays keep it as membership,
    // not in routing.
    let now = h.now;
    assert!(h.node("n-relay").routing.advert(&n("s-t1"), now).is_none());
    assert!(h.node("n-t1").keys.contains_key(&n("s-t1")));
}

#[test]
fn a_link_failing_inside_an_area_is_not_flooded_beyond_it() {
    let (mut h, _pki, _, inside) = two_areas();
    h.run_for(MINUTE);
    let before = held(&mut h, "n-t1");
    let south_before = held(&mut h, "s-t1");
    // Inside south, between two nodes that are not borders (a border's own links are in its
    // advert, which every area holds): s-t3 is still reached through s-relay.
    h.disconnect(inside);
    h.run_for(MINUTE);
    assert_ne!(held(&mut h, "s-t1"), south_before, "south re-advertised");
    assert_eq!(held(&mut h, "n-t1"), before, "north saw nothing of it");
    let id = h.submit("n-t1", "node:s-t3", Precedence::Flash, 30 * MINUTE);
    h.run_for(MINUTE);
    assert_eq!(h.node("n-t1").message_status(&id).unwrap().unwrap().state, "delivered");
}

#[test]
fn when_the_radio_between_areas_fails_traffic_takes_the_satellite_border() {
    let (mut h, _pki, across, _) = two_areas();
    assert_eq!(h.node("n-t1").routing.next_hop(&n("s-t1"), Precedence::Flash), Some(&n("n-relay")));
    h.disconnect(across);
    h.run_for(MINUTE);
    // n-relay is no longer a border: its new advert replaced the border advert in south too.
    assert!(!h.node("s-t1").routing.holds_border(&n("n-relay")));
    let id = h.submit("n-t1", "node:s-t1", Precedence::Flash, 30 * MINUTE);
    h.run_for(MINUTE);
    let view = h.node("n-t1").message_status(&id).unwrap().unwrap();
    assert_eq!(view.state, "delivered", "over n-hq's satellite to s-t2, then s-t1");
}

#[test]
fn a_node_restarted_keeps_what_it_learned_of_other_areas() {
    let (mut h, _pki, _, _) = two_areas();
    let before = held(&mut h, "n-t1");
    let members: Vec<NodeId> = h.node("n-t1").membership.nodes().cloned().collect();
    h.crash("n-t1");
    h.open("n-t1");
    assert_eq!(held(&mut h, "n-t1"), before, "routing resumes with the borders' adverts");
    let after: Vec<NodeId> = h.node("n-t1").membership.nodes().cloned().collect();
    assert_eq!(after, members, "and membership with the vouched members");
    let medical = h.node("n-t1").resolve(&Address::parse("group:medical").unwrap());
    assert_eq!(medical, vec![n("s-t1")]);
}

#[test]
fn a_member_cut_off_inside_its_area_stays_a_member_across_a_restart_elsewhere() {
    let (mut h, _pki, _, _) = two_areas();
    let all = Address::parse("group:all").unwrap();
    assert!(h.node("n-t1").resolve(&all).contains(&n("s-t3")));
    // What borders said is kept an area a row, not a row a member.
    assert_eq!(h.disks["n-t1"].len(Table::Vouched), 1, "south's row");
    let own = h.node("n-t1").membership.own_count();
    assert_eq!(h.disks["n-t1"].len(Table::Members), own);
    // s-t3 goes down: south's borders reach it no longer and say so.
    h.crash("s-t3");
    h.run_for(MINUTE);
    for border in ["s-relay", "s-t2"] {
        let now = h.now;
        let advert = h.node("n-t1").routing.advert(&n(border), now).unwrap();
        let said = crate::wire::decode_area_summary(&advert.summary).unwrap();
        assert!(said.iter().all(|m| m.node != n("s-t3")), "{border} no longer names s-t3");
    }
    // Still a member at n-t1, and still after n-t1 restarts: an alert for everyone waits for it.
    h.crash("n-t1");
    h.open("n-t1");
    assert!(h.node("n-t1").resolve(&all).contains(&n("s-t3")), "kept across the restart");
    assert_eq!(h.node("n-t1").resolve(&Address::parse("group:medical").unwrap()), vec![n("s-t1")]);
}

#[test]
fn a_member_vouched_for_by_another_area_leaves_its_old_areas_row() {
    let (mut h, _pki, _, _) = two_areas();
    let now = h.now;
    let node = h.node("n-t1");
    let seq = node.membership.seq(&n("s-t3")).unwrap();
    assert_eq!(node.membership.vouched_area(&n("s-t3")).map(|a| &**a), Some("south"));
    // s-t3 moved to area west; west's borders now vouch for it.
    let moved = crate::frame::AreaMember {
        node: n("s-t3"),
        role: Role::Field,
        seq: seq + 1,
        groups: Vec::new(),
        subscriptions: Vec::new(),
        costs: [Some(10); 5],
    };
    let vouched = std::sync::Arc::new(crate::membership::vouched_advert("west", moved));
    assert!(node.learn_member(now, &vouched));
    node.commit(now).unwrap();
    // Held once, in west's row: south's no longer names it (the invariants compare the rows'
    // entries with what is held).
    node.check_invariants().unwrap();
    assert_eq!(h.disks["n-t1"].len(Table::Vouched), 2);
}

#[test]
fn a_summary_newer_than_a_members_own_advert_does_not_stop_its_key_from_travelling() {
    let (mut h, _pki, _, _) = two_areas();
    let first = h.submit("s-t1", "node:n-t1", Precedence::Immediate, 30 * MINUTE);
    h.run_for(MINUTE);
    assert!(h.node("n-relay").membership.get(&n("s-t1")).is_some(), "its advert came along");
    assert!(!h.node("n-hq").keys.contains_key(&n("s-t1")));
    // s-t1 joins a group: south's borders summarise it anew, newer than the advert n-relay
    // holds, which n-relay must still pass on ahead of s-t1's next message.
    let now = h.now;
    h.node("s-t1").handle_group(now, "rescue", true).unwrap();
    h.run_for(MINUTE);
    let relay = &h.node("n-relay").membership;
    let own = relay.get(&n("s-t1")).map(|a| a.seq);
    assert!(relay.seq(&n("s-t1")) > own, "the border's word is newer");
    let joined = Address::parse("group:rescue").unwrap();
    assert!(relay.is_member(&n("s-t1"), &joined), "and counts");
    let second = h.submit("s-t1", "node:n-hq", Precedence::Immediate, 30 * MINUTE);
    h.run_for(MINUTE);
    for (to, id) in [("n-t1", first), ("n-hq", second)] {
        assert_eq!(h.delivered_ids(to).iter().filter(|x| **x == id).count(), 1, "{to}");
        let view = h.node("s-t1").message_status(&id).unwrap().unwrap();
        assert_eq!(view.state, "delivered", "{to}");
    }
    // And after a restart n-relay still holds the advert to pass on.
    h.crash("n-relay");
    h.open("n-relay");
    assert!(h.node("n-relay").membership.get(&n("s-t1")).is_some());
}

#[test]
fn a_message_crosses_a_transit_area_and_waits_out_a_cut_inside_it() {
    let mut h = Harness::new();
    let mut pki = Pki::new();
    for (name, area) in [
        ("a1", "west"),
        ("a2", "west"),
        ("m1", "middle"),
        ("m2", "middle"),
        ("m3", "middle"),
        ("b1", "east"),
        ("b2", "east"),
    ] {
        add(&mut h, &mut pki, name, Role::Relay, area, &[]);
    }
    h.connect("a1", "a2", Medium::Wireless, 5 * MS);
    h.connect("a2", "m1", Medium::Wireless, 5 * MS);
    let inside = h.connect("m1", "m2", Medium::Wireless, 5 * MS);
    h.connect("m2", "m3", Medium::Wireless, 5 * MS);
    h.connect("m3", "b1", Medium::Wireless, 5 * MS);
    h.connect("b1", "b2", Medium::Wireless, 5 * MS);
    h.run_for(MINUTE);
    // a1 holds no advert of m2 (inside the middle area, not a border) nor of b2.
    assert!(!h.node("a1").routing.holds(&n("m2")) && !h.node("a1").routing.holds(&n("b2")));
    assert_eq!(h.node("a1").routing.next_hop(&n("b2"), Precedence::Flash), Some(&n("a2")));
    let first = h.submit("a1", "node:b2", Precedence::Flash, 30 * MINUTE);
    h.run_for(MINUTE);
    assert_eq!(h.node("a1").message_status(&first).unwrap().unwrap().state, "delivered");
    // Cut inside the middle area: m1's summary no longer reaches m3, and the route is gone
    // everywhere west (no loop between a2 and m1 while it goes).
    h.disconnect(inside);
    h.run_for(MINUTE);
    assert_eq!(h.node("a1").routing.next_hop(&n("b2"), Precedence::Flash), None);
    assert_eq!(h.node("a2").routing.next_hop(&n("b2"), Precedence::Flash), None);
    let second = h.submit("a1", "node:b2", Precedence::Flash, 30 * MINUTE);
    h.run_for(2 * MINUTE);
    assert_eq!(h.delivered_ids("b2").iter().filter(|x| **x == second).count(), 0);
    h.connect("m1", "m2", Medium::Wireless, 5 * MS);
    h.run_for(MINUTE);
    assert_eq!(h.delivered_ids("b2").iter().filter(|x| **x == second).count(), 1, "once");
    assert_eq!(h.node("a1").message_status(&second).unwrap().unwrap().state, "delivered");
}
