//! Steering orders after they left: cancel, replace and latest-value keys, between signed
//! nodes (every cancel and replacement is an origin-signed envelope like any other).

use super::security::Pki;
use super::*;
use crate::frame::InboxRecord;
use crate::steering::CancelReceipt;

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

fn signed(names: &[(&str, Role)]) -> (Harness, Pki) {
    let mut h = Harness::new();
    let mut pki = Pki::new();
    for (name, role) in names {
        pki.add(&mut h, name, *role);
    }
    (h, pki)
}

fn submission(to: &str, p: Precedence, body: &str) -> Submission {
    Submission {
        to: Address::parse(to).unwrap(),
        precedence: p,
        lifetime: HOUR,
        content_type: "text/plain".into(),
        payload: Bytes::from(body.to_owned()),
        receipt: true,
        status: TrafficStatus::Actual,
        key: None,
        replaces: None,
    }
}

fn send(h: &mut Harness, from: &str, sub: Submission) -> MessageId {
    let now = h.now;
    let id = h.node(from).handle_submit(now, sub).unwrap();
    h.node(from).commit(now).unwrap();
    id
}

fn cancel(h: &mut Harness, from: &str, target: MessageId, reason: &str) -> CancelReceipt {
    let now = h.now;
    let r = h.node(from).handle_cancel(now, target, reason.into(), None).unwrap();
    h.node(from).commit(now).unwrap();
    r
}

fn records(h: &mut Harness, name: &str) -> Vec<InboxRecord> {
    h.node(name).inbox(Some(0), 1000).unwrap().into_iter().map(|i| i.record).collect()
}

fn outcome_at(h: &mut Harness, origin: &str, id: MessageId, dest: &str) -> Option<Outcome> {
    let view = h.node(origin).message_status(&id).unwrap().unwrap();
    view.destinations.iter().find(|d| d.node == n(dest)).and_then(|d| d.outcome)
}

fn events_of<'a>(h: &'a Harness, name: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
    h.events.iter().filter(move |(n, _)| n == name).map(|(_, e)| e)
}

#[test]
fn a_cancel_reaches_a_copy_held_two_hops_away_and_it_is_never_delivered() {
    let (mut h, _pki) = signed(&[
        ("hq", Role::Command),
        ("r1", Role::Relay),
        ("r2", Role::Relay),
        ("t", Role::Township),
    ]);
    h.connect("hq", "r1", Medium::Satellite, 300 * MS);
    h.connect("r1", "r2", Medium::Wireless, 5 * MS);
    let last = h.connect("r2", "t", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    let order =
        send(&mut h, "hq", submission("node:t", Precedence::Immediate, "evacuate sector 4"));
    // The radio to t goes silent as the order travels: r2 finds out and holds it.
    h.blackhole(last);
    h.run_for(60 * SECOND);
    assert_eq!(h.node("r2").held_messages(), 1, "the order waits at r2, two hops from hq");

    let r = cancel(&mut h, "hq", order, "wrong sector");
    assert!(!r.pending && r.overrode.is_none());
    assert_eq!(h.node("hq").message_status(&order).unwrap().unwrap().state, "cancelled");
    h.run_for(5 * SECOND);
    // hq cannot reach t, yet the cancel reached r2: it goes to every node hq knows.
    assert_eq!(h.node("r2").held_messages(), 0, "the order is gone from r2");
    assert_eq!(h.node("hq").held_messages(), 1, "the cancel for t waits at hq");
    assert!(events_of(&h, "r2").any(|e| matches!(e,
        Event::Superseded { id, outcome: Outcome::Cancelled, destinations, .. }
            if *id == order && destinations == &vec![n("t")])));
    assert_eq!(outcome_at(&mut h, "hq", order, "t"), Some(Outcome::Cancelled));
    assert_eq!(h.node("r2").status().counters.cancelled, [0, 0, 1, 0]);

    // t comes back: it gets the cancel (a tombstone, nothing in its inbox), never the order.
    h.connect("r2", "t", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    assert!(h.delivered_ids("t").is_empty());
    assert!(records(&mut h, "t").is_empty());
    let c = h.node("hq").message_status(&r.id).unwrap().unwrap();
    assert_eq!(c.state, "delivered", "the cancel reached t, r1 and r2: {c:?}");
    assert_eq!(c.destinations.len(), 3);
    assert_eq!(h.node("hq").held_messages(), 0);
    // No alarm for what was recalled, even past its objective.
    h.run_for(HOUR);
    assert_eq!(h.node("hq").status().overdue, [0; 4]);
}

#[test]
fn a_cancel_that_overtakes_its_target_leaves_a_tombstone_that_drops_it_on_arrival() {
    let (mut h, _pki) = signed(&[
        ("hq", Role::Command),
        ("r1", Role::Relay),
        ("r2", Role::Relay),
        ("t", Role::Township),
    ]);
    let first = h.connect("hq", "r1", Medium::Wireless, 5 * MS);
    let stuck = h.connect("r1", "t", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    // The order reaches r1 as r1's radio to t goes silent; then hq loses r1 as well.
    let order = send(&mut h, "hq", submission("node:t", Precedence::Routine, "move to school"));
    h.blackhole(stuck);
    h.run_for(60 * SECOND);
    assert_eq!(h.node("r1").held_messages(), 1);
    h.disconnect(first);
    // Another way to t opens, and the cancel takes it: it gets to t before the order.
    h.connect("hq", "r2", Medium::Wireless, 5 * MS);
    h.connect("r2", "t", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    let r = cancel(&mut h, "hq", order, "");
    h.run_for(5 * SECOND);
    let c = h.node("hq").message_status(&r.id).unwrap().unwrap();
    assert_eq!(outcome_at(&mut h, "hq", r.id, "t"), Some(Outcome::Delivered), "{c:?}");
    assert_eq!(h.node("r1").held_messages(), 1, "r1 still holds the order");

    // r1 gets through to t at last: t takes custody and drops the order, unread.
    h.connect("r1", "t", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    assert_eq!(h.node("r1").held_messages(), 0, "custody settled, not lost");
    assert!(h.delivered_ids("t").is_empty(), "the order was delivered after its cancel");
    assert_eq!(outcome_at(&mut h, "hq", order, "t"), Some(Outcome::Cancelled));
    assert!(events_of(&h, "t").any(|e| matches!(e,
        Event::Superseded { id, outcome: Outcome::Cancelled, .. } if *id == order)));
}

#[test]
fn a_delivered_order_is_marked_cancelled_in_the_inbox_and_a_replacement_names_what_it_replaced() {
    let (mut h, _pki) = signed(&[("hq", Role::Command), ("t", Role::Township)]);
    h.connect("hq", "t", Medium::Wireless, 5 * MS);
    h.run_for(3 * SECOND);
    let first = send(&mut h, "hq", submission("node:t", Precedence::Flash, "road 7 open"));
    h.run_for(SECOND);
    assert_eq!(h.delivered_ids("t"), vec![first]);

    // The correction replaces it: the first is marked superseded, the second delivered.
    let mut fix = submission("node:t", Precedence::Flash, "road 7 CLOSED");
    fix.replaces = Some(first);
    let second = send(&mut h, "hq", fix);
    h.run_for(SECOND);
    assert_eq!(h.delivered_ids("t"), vec![first, second]);
    let inbox = records(&mut h, "t");
    let w = inbox[0].withdrawn.as_ref().expect("the first order is withdrawn");
    assert_eq!((w.by, w.outcome), (second, Outcome::Superseded));
    assert_eq!(inbox[1].envelope.supersedes.as_ref().map(|s| s.id), Some(first));
    assert!(events_of(&h, "t").any(|e| matches!(e,
        Event::Withdrawn { id, by, outcome: Outcome::Superseded, .. } if *id == first && *by == second)));
    assert_eq!(h.node("hq").message_status(&second).unwrap().unwrap().replaces, Some(first));

    // Then the correction itself is recalled: marked cancelled, with the reason.
    let r = cancel(&mut h, "hq", second, "road reopened");
    h.run_for(SECOND);
    let inbox = records(&mut h, "t");
    assert_eq!(inbox.len(), 2, "a cancel is not a message of its own");
    let w = inbox[1].withdrawn.as_ref().expect("the correction is withdrawn");
    assert_eq!((w.by, w.outcome, w.reason.as_str()), (r.id, Outcome::Cancelled, "road reopened"));
    // Cancelling twice sends nothing more; a cancel cannot be recalled; the origin's views
    // say which message replaced, cancelled or recalled which.
    assert_eq!(cancel(&mut h, "hq", second, "again").id, r.id);
    let now = h.now;
    let again = h.node("hq").handle_cancel(now, r.id, String::new(), None);
    assert!(matches!(again, Err(SubmitError::Invalid(_))), "{again:?}");
    assert_eq!(h.node("hq").message_status(&first).unwrap().unwrap().replaced_by, Some(second));
    assert_eq!(h.node("hq").message_status(&second).unwrap().unwrap().cancelled_by, Some(r.id));
    assert_eq!(h.node("hq").message_status(&r.id).unwrap().unwrap().cancels, Some(second));
}

#[test]
fn a_replacement_drops_the_held_copy_and_arrives_alone() {
    let (mut h, _pki) = signed(&[("hq", Role::Command), ("r", Role::Relay), ("t", Role::Township)]);
    h.connect("hq", "r", Medium::Satellite, 300 * MS);
    let edge = h.connect("r", "t", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    let first = send(&mut h, "hq", submission("node:t", Precedence::Priority, "water at 10:00"));
    h.blackhole(edge);
    h.run_for(60 * SECOND);
    assert_eq!(h.node("r").held_messages(), 1);
    let mut fix = submission("node:t", Precedence::Priority, "water at 14:00");
    fix.replaces = Some(first);
    let second = send(&mut h, "hq", fix);
    h.run_for(5 * SECOND);
    // The notice sent ahead reached r, which dropped the old order; the replacement waits at
    // hq for a way to t, with the notice's copy for t.
    assert_eq!(h.node("r").held_messages(), 0, "the old order is gone from r");
    assert_eq!(h.node("hq").held_messages(), 2);
    h.connect("r", "t", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    assert_eq!(h.delivered_ids("t"), vec![second]);
    assert_eq!(outcome_at(&mut h, "hq", first, "t"), Some(Outcome::Superseded));
    assert_eq!(h.node("hq").message_status(&first).unwrap().unwrap().state, "superseded");
    assert_eq!(outcome_at(&mut h, "hq", second, "t"), Some(Outcome::Delivered));
}

#[test]
fn keyed_positions_cross_an_outage_as_the_newest_one_per_key() {
    let (mut h, _pki) =
        signed(&[("hq", Role::Command), ("sat", Role::Relay), ("team", Role::Field)]);
    let up = h.connect("hq", "sat", Medium::Satellite, 300 * MS);
    h.connect("sat", "team", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    h.disconnect(up);
    h.run_for(5 * SECOND);
    // Three team members report every 10 s for 20 minutes: 360 positions, 3 keys.
    let mut newest = BTreeMap::new();
    for round in 0..120 {
        for member in 0..3 {
            let mut s = submission("node:hq", Precedence::Routine, &format!("pos {round}"));
            s.key = Some(format!("pos/team-{member}"));
            newest.insert(member, send(&mut h, "team", s));
        }
        h.run_for(10 * SECOND);
    }
    // With no way to hq, the team holds one per key: each newer one dropped the older.
    assert_eq!(h.node("team").held_messages(), 3);
    assert_eq!(h.node("team").status().counters.superseded[0], 357);
    h.connect("hq", "sat", Medium::Satellite, 300 * MS);
    h.run_for(10 * SECOND);
    let mut got = h.delivered_ids("hq");
    got.sort();
    let mut want: Vec<MessageId> = newest.values().copied().collect();
    want.sort();
    assert_eq!(got, want, "only the newest position of each member crossed");
    let now = h.now;
    let older = h.node("team").sent_status(now, 1000).unwrap();
    assert_eq!(older.iter().filter(|v| v.state == "superseded").count(), 357);
}

#[test]
fn an_older_keyed_message_arriving_after_a_newer_one_is_dropped_on_arrival() {
    let (mut h, _pki) = signed(&[
        ("hq", Role::Command),
        ("r1", Role::Relay),
        ("r2", Role::Relay),
        ("team", Role::Field),
    ]);
    let first = h.connect("team", "r1", Medium::Wireless, 5 * MS);
    let stuck = h.connect("r1", "hq", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    // The older position reaches r1 as r1's radio to hq goes silent; then team loses r1.
    let mut s = submission("node:hq", Precedence::Routine, "pos 1");
    s.key = Some("pos/team".into());
    let older = send(&mut h, "team", s.clone());
    h.blackhole(stuck);
    h.run_for(60 * SECOND);
    assert_eq!(h.node("r1").held_messages(), 1);
    h.disconnect(first);
    // The newer one goes another way and arrives first.
    h.connect("team", "r2", Medium::Wireless, 5 * MS);
    h.connect("r2", "hq", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    s.payload = Bytes::from_static(b"pos 2");
    let newer = send(&mut h, "team", s);
    h.run_for(5 * SECOND);
    assert_eq!(h.delivered_ids("hq"), vec![newer]);
    // r1 gets through at last: hq takes custody of the older one and drops it unread.
    h.connect("r1", "hq", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    assert_eq!(h.node("r1").held_messages(), 0, "custody settled, not lost");
    assert_eq!(h.delivered_ids("hq"), vec![newer], "an older position was delivered after a newer");
    assert_eq!(outcome_at(&mut h, "team", older, "hq"), Some(Outcome::Superseded));
    assert!(events_of(&h, "hq").any(|e| matches!(e,
        Event::Superseded { id, by, outcome: Outcome::Superseded, .. } if *id == older && *by == newer)));
}

#[test]
fn a_newer_keyed_message_marks_the_older_one_in_the_inbox() {
    let (mut h, _pki) = signed(&[("hq", Role::Command), ("team", Role::Field)]);
    h.connect("hq", "team", Medium::Wireless, 5 * MS);
    h.run_for(3 * SECOND);
    let mut s = submission("node:hq", Precedence::Routine, "pos 1");
    s.key = Some("pos/team-7".into());
    let older = send(&mut h, "team", s.clone());
    h.run_for(SECOND);
    s.payload = Bytes::from_static(b"pos 2");
    let newer = send(&mut h, "team", s);
    h.run_for(SECOND);
    let inbox = records(&mut h, "hq");
    assert_eq!(inbox.len(), 2);
    assert_eq!(
        inbox[0].withdrawn.as_ref().map(|w| (w.by, w.outcome)),
        Some((newer, Outcome::Superseded))
    );
    assert!(inbox[1].withdrawn.is_none());
    assert_eq!(inbox[0].envelope.id, older);
}

#[test]
fn only_the_origin_steers_its_messages_unless_policy_lets_its_role_override() {
    let mut h = Harness::new();
    let mut pki = Pki::new();
    let mut hq = pki.config("hq", Role::Command);
    hq.policy.override_roles = vec![Role::Command];
    h.add_with(hq);
    pki.add(&mut h, "relay", Role::Relay);
    pki.add(&mut h, "t", Role::Township);
    pki.add(&mut h, "u", Role::Township);
    h.connect("hq", "relay", Medium::Wireless, 5 * MS);
    h.connect("relay", "t", Medium::Wireless, 5 * MS);
    h.connect("relay", "u", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    let order = send(&mut h, "hq", submission("node:u", Precedence::Immediate, "hold position"));
    let report = send(&mut h, "t", submission("group:all", Precedence::Routine, "roof damage"));
    h.run_for(SECOND);
    assert!(h.delivered_ids("hq").contains(&report));

    // u holds hq's order but may not recall it.
    let now = h.now;
    let refused = h.node("u").handle_cancel(now, order, String::new(), None);
    assert!(
        matches!(&refused, Err(SubmitError::Forbidden(why)) if why.contains("only hq, its origin")),
        "{refused:?}"
    );
    let mut fix = submission("node:u", Precedence::Immediate, "x");
    fix.replaces = Some(order);
    assert!(matches!(h.node("u").handle_submit(now, fix), Err(SubmitError::Forbidden(_))));

    // hq's role may override, but the relay's policy does not allow it: refused on the way.
    let r = cancel(&mut h, "hq", report, "duplicate");
    assert_eq!(r.overrode, Some(n("t")));
    // Cancelling it again sends nothing more: the first cancel is the answer.
    let again = cancel(&mut h, "hq", report, "duplicate");
    assert_eq!((again.id, again.pending), (r.id, false));
    // Likewise for an id never seen here (a pending cancel).
    let unknown = MessageId([7; 16]);
    let pending = cancel(&mut h, "hq", unknown, "");
    assert!(pending.pending);
    assert_eq!(cancel(&mut h, "hq", unknown, "").id, pending.id);
    h.run_for(SECOND);
    assert!(h.node("u").inbox(Some(0), 10).unwrap().iter().all(|i| i.record.withdrawn.is_none()));
    let c = h.node("hq").message_status(&r.id).unwrap().unwrap();
    // hq is a member of group:all: its own copy is marked; every other node refused it.
    for d in c.destinations.iter().filter(|d| d.node != n("hq")) {
        assert_eq!(d.outcome, Some(Outcome::Refused), "{c:?}");
        assert!(d.reason.contains("only t, its origin"), "{c:?}");
    }
}

#[test]
fn a_cancel_of_a_message_not_seen_yet_waits_for_it_and_sends_the_cancel_on() {
    let mut h = Harness::new();
    let mut pki = Pki::new();
    let mut relay = pki.config("relay", Role::Command);
    relay.policy.override_roles = vec![Role::Command];
    h.add_with(relay);
    let mut t = pki.config("t", Role::Township);
    t.policy.override_roles = vec![Role::Command];
    h.add_with(t);
    // Policy is the deployment's: every node lets command nodes override.
    let mut team = pki.config("team", Role::Field);
    team.policy.override_roles = vec![Role::Command];
    h.add_with(team);
    let inbound = h.connect("team", "relay", Medium::Wireless, 5 * MS);
    h.connect("relay", "t", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    h.disconnect(inbound);
    let stray = send(&mut h, "team", submission("node:t", Precedence::Routine, "false alarm"));
    // The relay was told of it over the radio: it recalls it before it ever sees it.
    let r = cancel(&mut h, "relay", stray, "false alarm, ignore");
    assert!(r.pending);
    h.connect("team", "relay", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    assert!(h.delivered_ids("t").is_empty(), "the recalled message got through");
    assert_eq!(h.node("relay").held_messages(), 0);
    let c = h.node("relay").message_status(&r.id).unwrap().unwrap();
    assert_eq!(c.state, "delivered", "{c:?}");
    assert_eq!(outcome_at(&mut h, "team", stray, "t"), Some(Outcome::Cancelled));
}

#[test]
fn a_tombstone_survives_a_crash() {
    let (mut h, _pki) = signed(&[("hq", Role::Command), ("r", Role::Relay), ("t", Role::Township)]);
    let first = h.connect("hq", "r", Medium::Wireless, 5 * MS);
    let edge = h.connect("r", "t", Medium::Wireless, 5 * MS);
    h.run_for(3 * SECOND);
    let order = send(&mut h, "hq", submission("node:t", Precedence::Immediate, "a"));
    h.blackhole(edge);
    h.run_for(60 * SECOND);
    assert_eq!(h.node("r").held_messages(), 1);
    h.disconnect(first);
    let direct = h.connect("hq", "t", Medium::Public, 50 * MS);
    h.run_for(3 * SECOND);
    cancel(&mut h, "hq", order, "");
    h.run_for(3 * SECOND);
    h.disconnect(direct);
    h.crash("t");
    h.open("t");
    h.connect("r", "t", Medium::Wireless, 5 * MS);
    h.run_for(5 * SECOND);
    assert!(h.delivered_ids("t").is_empty(), "delivered after a restart forgot its cancel");
    assert_eq!(h.node("r").held_messages(), 0);
}

#[test]
fn keys_are_checked_like_published_topics() {
    let key = "x".repeat(crate::types::MAX_KEY + 1);
    assert!(crate::types::check_key(&key).is_err());
    assert!(crate::types::check_key("pos/+").is_err());
    assert!(crate::types::check_key("").is_err());
    assert!(crate::types::check_key("pos/team-07").is_ok());
}

#[test]
fn a_replacement_of_a_message_not_known_here_is_refused_rather_than_sent_beside_it() {
    let (mut h, _pki) = signed(&[("hq", Role::Command), ("t", Role::Township)]);
    let now = h.now;
    let mut fix = submission("node:t", Precedence::Flash, "correction");
    fix.replaces = Some(MessageId([0xab; 16]));
    let r = h.node("hq").handle_submit(now, fix);
    assert!(
        matches!(&r, Err(SubmitError::Invalid(why)) if why.contains("not known here")),
        "{r:?}"
    );
}
