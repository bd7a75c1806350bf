//! Delivery objectives that act: a message held past its objective may use media its
//! precedence otherwise avoids, at every hop (each can tell from the age it carries), and
//! objectives can differ per address.

use super::*;
use crate::config::{AddressObjectives, MediumConfig};
use crate::policy::AddressPattern;

const MINUTE: Duration = Duration::from_secs(60);

/// A county where ROUTINE never rides satellite (`strict`) until it is an hour late.
fn strict_satellite(name: &str, role: Role, escalate: bool) -> CoreConfig {
    let mut cfg = CoreConfig::new(n(name), role);
    cfg.media.insert(
        Medium::Satellite,
        MediumConfig { strict: true, ..MediumConfig::default_for(Medium::Satellite) },
    );
    cfg.objectives[Precedence::Routine.index()] = 60 * MINUTE;
    cfg.escalate = escalate;
    cfg
}

/// a -wireless- b -satellite- c: the only way from a to c crosses satellite.
fn county(escalate: bool) -> Harness {
    let mut h = Harness::new();
    h.add_with(strict_satellite("a", Role::Township, escalate))
        .add_with(strict_satellite("b", Role::Relay, escalate))
        .add_with(strict_satellite("c", Role::Township, escalate));
    h.connect("a", "b", Medium::Wireless, 5 * MS);
    h.connect("b", "c", Medium::Satellite, 300 * MS);
    h.run_for(Duration::from_secs(5));
    h
}

#[test]
fn a_late_routine_message_crosses_a_strict_satellite_link_and_every_hop_knows_it_is_late() {
    let mut h = county(true);
    let routine = h.submit("a", "node:c", Precedence::Routine, 4 * 60 * MINUTE);
    let priority = h.submit("a", "node:c", Precedence::Priority, 4 * 60 * MINUTE);
    h.run_for(MINUTE);
    assert_eq!(h.delivered_ids("c"), vec![priority], "PRIORITY may use satellite at once");
    // ROUTINE waits: no route avoids the satellite, and strict means not even as the only way.
    h.run_for(58 * MINUTE);
    assert!(!h.delivered_ids("c").contains(&routine), "ROUTINE crossed satellite on time");
    assert_eq!(h.node("a").status().overdue, [0; 4]);
    // An hour after it was sent it is late: the origin raises the alarm, a hands it to b, and
    // b, which never saw it before, escalates it too (its age says it is late).
    h.run_for(2 * MINUTE);
    assert!(h.delivered_ids("c").contains(&routine), "the late message did not cross");
    assert!(h.delivered_ids("c").iter().filter(|id| **id == routine).count() == 1);
    let r = Precedence::Routine.index();
    // Counted at both hops: neither had a route for it on time.
    assert_eq!(h.node("a").status().counters.escalated[r], 1);
    assert_eq!(h.node("b").status().counters.escalated[r], 1);
    // Its receipt comes back (receipts are ROUTINE too, and late by then): the alarm clears.
    h.run_for(MINUTE);
    let view = h.node("a").message_status(&routine).unwrap().unwrap();
    assert_eq!(view.destinations[0].outcome, Some(Outcome::Delivered));
    assert_eq!(h.node("a").status().overdue, [0; 4]);
    assert!(
        h.events
            .iter()
            .any(|(n, e)| n == "a"
                && matches!(e, Event::OverdueCleared { of, .. } if *of == routine)),
        "the alarm was never raised and cleared"
    );
}

#[test]
fn without_escalation_a_strict_medium_stays_closed_to_late_messages() {
    let mut h = county(false);
    let routine = h.submit("a", "node:c", Precedence::Routine, 4 * 60 * MINUTE);
    h.run_for(3 * 60 * MINUTE);
    assert!(h.delivered_ids("c").is_empty());
    assert_eq!(h.node("a").status().overdue, [1, 0, 0, 0], "late, and the alarm says so");
    assert!(
        h.node("a").message_status(&routine).unwrap().unwrap().destinations[0].outcome.is_none()
    );
}

#[test]
fn late_messages_take_a_dearer_medium_when_it_is_cheaper_without_the_penalty() {
    // a-b direct over (soft) satellite, or a-r-b over a wireless mesh configured as dear:
    // on time ROUTINE takes the mesh (satellite costs it AVOID extra); late it takes the
    // cheaper satellite hop.
    let dear_mesh = |name: &str, role: Role| {
        let mut cfg = CoreConfig::new(n(name), role);
        cfg.media.insert(
            Medium::Wireless,
            MediumConfig { cost: 5_000, ..MediumConfig::default_for(Medium::Wireless) },
        );
        cfg
    };
    let mut h = Harness::new();
    h.add_with(dear_mesh("a", Role::Township))
        .add_with(dear_mesh("r", Role::Relay))
        .add_with(dear_mesh("b", Role::Township));
    h.connect("a", "b", Medium::Satellite, 300 * MS);
    h.connect("a", "r", Medium::Wireless, 5 * MS);
    h.connect("r", "b", Medium::Wireless, 5 * MS);
    h.run_for(Duration::from_secs(5));
    let b = n("b");
    let sat = h.node("a").route(&b, Precedence::Routine, true);
    let mesh = h.node("a").route(&b, Precedence::Routine, false);
    assert!(sat.is_some() && mesh.is_some() && sat != mesh, "{sat:?} {mesh:?}");
    let links = h.node("a").status().links;
    let medium_of = |id| links.iter().find(|l| Some(l.id) == id).map(|l| l.medium);
    assert_eq!(medium_of(mesh), Some(Medium::Wireless));
    assert_eq!(medium_of(sat), Some(Medium::Satellite));
    // FLASH avoids nothing either way.
    let flash = h.node("a").route(&b, Precedence::Flash, false);
    assert_eq!(flash, h.node("a").route(&b, Precedence::Flash, true));
}

#[test]
fn an_address_can_have_its_own_objectives() {
    let mut cfg = CoreConfig::new(n("hq"), Role::Command);
    cfg.address_objectives = vec![
        AddressObjectives {
            to: AddressPattern::parse("topic:alerts/#").unwrap(),
            objectives: [None, None, None, Some(2 * MINUTE)],
        },
        // A later rule for the same address counts only for what the first leaves open.
        AddressObjectives {
            to: AddressPattern::parse("topic:alerts/flood").unwrap(),
            objectives: [None, None, Some(5 * MINUTE), Some(7 * MINUTE)],
        },
    ];
    cfg.notify_overdue = None;
    let mut h = Harness::new();
    h.add_with(cfg).add("t1", Role::Township);
    let node = h.node("hq");
    let alerts = Address::parse("topic:alerts/flood").unwrap();
    let order = Address::parse("node:t1").unwrap();
    assert_eq!(node.objective_for(&alerts, Precedence::Flash), 2 * MINUTE);
    assert_eq!(node.objective_for(&alerts, Precedence::Immediate), 5 * MINUTE);
    assert_eq!(node.objective_for(&alerts, Precedence::Routine), 6 * 60 * MINUTE);
    assert_eq!(node.objective_for(&order, Precedence::Flash), 10 * MINUTE);

    // t1 subscribes to alerts but is out of reach: the alert is overdue after 2 minutes, the
    // order to t1 only after 10.
    h.connect("hq", "t1", Medium::Wireless, 5 * MS);
    h.node("t1").handle_subscription(TopicPattern::new("alerts/#").unwrap(), true).unwrap();
    h.run_for(Duration::from_secs(5));
    h.disconnect(0);
    let alert = h.submit("hq", "topic:alerts/flood", Precedence::Flash, 60 * MINUTE);
    let _order = h.submit("hq", "node:t1", Precedence::Flash, 60 * MINUTE);
    h.run_for(2 * MINUTE + Duration::from_secs(1));
    let list = h.node("hq").overdue_list(10).unwrap();
    assert_eq!(list.iter().map(|o| o.id).collect::<Vec<_>>(), vec![alert]);
    assert_eq!(list[0].due.saturating_since(list[0].accepted_at), 2 * MINUTE);
    h.run_for(8 * MINUTE);
    assert_eq!(h.node("hq").overdue_list(10).unwrap().len(), 2);
}

#[test]
fn a_relay_holding_a_late_message_turns_it_back_towards_the_medium_it_avoided() {
    // hq -wireless- r -wireless- t, and hq -satellite(strict)- t. The mesh link r-t breaks
    // while r holds a ROUTINE message for t: late, it goes back to hq and over satellite.
    let mut h = Harness::new();
    h.add_with(strict_satellite("hq", Role::Command, true))
        .add_with(strict_satellite("r", Role::Relay, true))
        .add_with(strict_satellite("t", Role::Township, true));
    h.connect("hq", "r", Medium::Wireless, 5 * MS);
    let mesh = h.connect("r", "t", Medium::Wireless, 5 * MS);
    h.connect("hq", "t", Medium::Satellite, 300 * MS);
    h.run_for(Duration::from_secs(5));
    h.blackhole(mesh);
    let id = h.submit("hq", "node:t", Precedence::Routine, 4 * 60 * MINUTE);
    h.run_for(59 * MINUTE);
    assert!(h.delivered_ids("t").is_empty());
    h.run_for(2 * MINUTE);
    assert_eq!(h.delivered_ids("t"), vec![id], "the late message stayed where it was");
}

#[test]
fn a_late_message_that_comes_back_does_not_wait_behind_on_time_ones() {
    // As above, with a one-minute objective. The first message goes to r before the mesh link
    // r-t breaks; the next ones stay at hq (no on-time route). When the first comes back to
    // hq, late, it is behind them in hq's queue, yet it must cross at once.
    let cfg = |name: &str, role| {
        let mut c = strict_satellite(name, role, true);
        c.objectives[Precedence::Routine.index()] = MINUTE;
        c
    };
    let mut h = Harness::new();
    h.add_with(cfg("hq", Role::Command))
        .add_with(cfg("r", Role::Relay))
        .add_with(cfg("t", Role::Township));
    h.connect("hq", "r", Medium::Wireless, 15 * MS);
    let mesh = h.connect("r", "t", Medium::Wireless, 15 * MS);
    h.connect("hq", "t", Medium::Satellite, 300 * MS);
    h.run_for(Duration::from_secs(5));
    let first = h.submit("hq", "node:t", Precedence::Routine, 60 * MINUTE);
    h.run_for(20 * MS);
    h.blackhole(mesh);
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.node("r").status().held, [1, 0, 0, 0], "the first is at r");
    let mut later = Vec::new();
    for _ in 0..4 {
        later.push(h.submit("hq", "node:t", Precedence::Routine, 60 * MINUTE));
        h.run_for(Duration::from_secs(10));
    }
    assert_eq!(h.node("hq").status().held, [4, 0, 0, 0]);
    // The first turns late 60 s after it was sent (at 65 s); the next 5 s after that.
    h.run_for(Duration::from_secs(16));
    assert_eq!(h.delivered_ids("t"), vec![first], "the late message waited behind the others");
    h.run_for(MINUTE);
    let mut all = h.delivered_ids("t");
    all.sort();
    later.push(first);
    later.sort();
    assert_eq!(all, later);
}

#[test]
fn a_rolled_back_late_message_leaves_no_lateness_to_the_next_holding_its_place() {
    // b learns that the message it holds in place 0 is late, then the batch that held it fails
    // as it lands. Place 0 goes to the next message b takes, an on-time one: it must wait for
    // its own objective, not cross the strict satellite on the late one's account.
    let mut h = Harness::new();
    h.add_with(strict_satellite("a", Role::Township, true))
        .add_with(strict_satellite("b", Role::Relay, true))
        .add_with(strict_satellite("c", Role::Township, true));
    h.slow_disk("b", Duration::from_millis(300));
    let ab = h.connect("a", "b", Medium::Wireless, 5 * MS);
    let bc = h.connect("b", "c", Medium::Satellite, 300 * MS);
    h.run_for(Duration::from_secs(5));
    h.disconnect(ab);
    h.submit("a", "node:c", Precedence::Routine, 4 * 60 * MINUTE);
    h.run_for(61 * MINUTE);
    // b's offers to c are lost from now on (so no receipt comes back to take place 0).
    h.blackhole(bc);
    h.faults["b"].lock().unwrap().fail_landings = true;
    let ab = h.connect("a", "b", Medium::Wireless, 5 * MS);
    let mut took = false;
    for _ in 0..100 {
        h.run_for(10 * MS);
        took |= h.node("b").late_at.contains_key(&0);
        if took && h.landing.is_empty() {
            break;
        }
    }
    assert!(took, "b never held the late message");
    h.disconnect(ab);
    h.disconnect(bc);
    h.faults["b"].lock().unwrap().fail_landings = false;
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.node("b").held_messages(), 0, "the late message's batch did not fail");
    let on_time = h.submit("b", "node:c", Precedence::Routine, 4 * 60 * MINUTE);
    h.connect("b", "c", Medium::Satellite, 300 * MS);
    h.run_for(30 * MINUTE);
    assert!(!h.delivered_ids("c").contains(&on_time), "an on-time message crossed satellite");
    h.run_for(31 * MINUTE);
    assert!(h.delivered_ids("c").contains(&on_time));
}
