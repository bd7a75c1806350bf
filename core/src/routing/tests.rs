use std::collections::BTreeSet;

use super::*;

fn n(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn media() -> BTreeMap<Medium, MediumConfig> {
    Medium::ALL.into_iter().map(|m| (m, MediumConfig::default_for(m))).collect()
}

fn link(to: &str, medium: Medium, rtt_ms: u64, up: bool) -> AdvertLink {
    AdvertLink {
        neighbour: n(to),
        medium,
        rtt: Duration::from_millis(rtt_ms),
        loss_ppm: 0,
        bandwidth_bps: 1_000_000,
        up,
    }
}

fn advert(node: &str, seq: u64, links: Vec<AdvertLink>) -> Advert {
    Advert {
        node: n(node),
        role: Role::Relay,
        seq,
        lifetime: Duration::from_secs(1800),
        age: Duration::ZERO,
        links,
        groups: vec![],
        subscriptions: vec![],
        certificate: Default::default(),
        signature: Default::default(),
        previous_certificates: vec![],
        area: String::new(),
        summary: Default::default(),
    }
}

fn local(to: &str, medium: Medium, rtt_ms: u64) -> LocalLink {
    LocalLink {
        neighbour: n(to),
        role: Role::Relay,
        medium,
        rtt: Duration::from_millis(rtt_ms),
        loss_ppm: 0,
        usable: true,
    }
}

/// `a` with a satellite hop straight to `c` and a two-hop wireless path through `b`.
fn triangle() -> Routing {
    let mut r = Routing::new(n("a"), media());
    r.set_local_links(vec![local("b", Medium::Wireless, 40), local("c", Medium::Satellite, 600)]);
    r.accept(
        advert(
            "b",
            1,
            vec![link("a", Medium::Wireless, 40, true), link("c", Medium::Wireless, 40, true)],
        ),
        Time(0),
    );
    r.accept(
        advert(
            "c",
            1,
            vec![link("a", Medium::Satellite, 600, true), link("b", Medium::Wireless, 40, true)],
        ),
        Time(0),
    );
    r
}

#[test]
fn flash_takes_the_fastest_path() {
    let mut r = triangle();
    assert_eq!(r.next_hop(&n("c"), Precedence::Flash), Some(&n("b")));
    assert_eq!(r.cost(&n("c"), Precedence::Flash), Some(82));
}

#[test]
fn a_strict_medium_is_closed_below_its_precedence_and_open_to_late_messages() {
    let mut strict = media();
    strict.get_mut(&Medium::Satellite).unwrap().strict = true;
    let sat = &strict[&Medium::Satellite];
    let rtt = Duration::from_millis(600);
    assert_eq!(edge_cost(sat, rtt, 0, Precedence::Routine, false), None);
    assert_eq!(edge_cost(sat, rtt, 0, Precedence::Routine, true), Some(650));
    assert_eq!(edge_cost(sat, rtt, 0, Precedence::Priority, false), Some(650));
    // Soft (the default): a penalty, not a ban; late messages pay none.
    let soft = &media()[&Medium::Satellite];
    assert_eq!(edge_cost(soft, rtt, 0, Precedence::Routine, false), Some(650 + AVOID));
    assert_eq!(edge_cost(soft, rtt, 0, Precedence::Routine, true), Some(650));

    // The triangle with b cut off from c: satellite is the only way to c.
    let mut r = Routing::new(n("a"), strict);
    r.set_local_links(vec![local("b", Medium::Wireless, 40), local("c", Medium::Satellite, 600)]);
    r.accept(advert("b", 1, vec![link("a", Medium::Wireless, 40, true)]), Time(0));
    r.accept(advert("c", 1, vec![link("a", Medium::Satellite, 600, true)]), Time(0));
    assert_eq!(r.next_hop(&n("c"), Precedence::Routine), None, "strict: not even the only way");
    assert_eq!(r.next_hop_late(&n("c"), Precedence::Routine), Some(&n("c")));
    assert_eq!(r.next_hop(&n("c"), Precedence::Priority), Some(&n("c")));
    // The late table follows changes: the satellite link goes down, and with it the route.
    r.set_local_links(vec![local("b", Medium::Wireless, 40)]);
    assert_eq!(r.next_hop_late(&n("c"), Precedence::Routine), None);
}

#[test]
fn routine_avoids_satellite_unless_it_is_the_only_way() {
    let mut r = triangle();
    assert_eq!(r.next_hop(&n("c"), Precedence::Routine), Some(&n("b")));
    // b loses its link to c: only the satellite is left, and ROUTINE takes it.
    r.accept(
        advert(
            "b",
            2,
            vec![link("a", Medium::Wireless, 40, true), link("c", Medium::Wireless, 40, false)],
        ),
        Time(0),
    );
    assert_eq!(r.next_hop(&n("c"), Precedence::Routine), Some(&n("c")));
    assert!(r.cost(&n("c"), Precedence::Routine).unwrap() > AVOID);
    // PRIORITY may use satellite without penalty.
    assert!(r.cost(&n("c"), Precedence::Priority).unwrap() < AVOID);
}

#[test]
fn a_link_only_one_end_reports_is_not_used() {
    let mut r = Routing::new(n("a"), media());
    r.set_local_links(vec![local("b", Medium::Wireless, 40)]);
    r.accept(
        advert(
            "b",
            1,
            vec![link("a", Medium::Wireless, 40, true), link("c", Medium::Wireless, 40, true)],
        ),
        Time(0),
    );
    // c's advert does not list b: the b-c link is half dead.
    r.accept(advert("c", 1, vec![]), Time(0));
    assert_eq!(r.next_hop(&n("c"), Precedence::Flash), None);
}

#[test]
fn older_adverts_are_ignored_and_adverts_expire() {
    let mut r = triangle();
    assert!(!r.accept(advert("b", 1, vec![]), Time(0)), "same seq");
    assert!(!r.accept(advert("b", 0, vec![]), Time(0)), "older");
    let gone = r.expire(Time(1801 * 1_000_000));
    assert_eq!(gone, vec![n("b"), n("c")]);
    assert_eq!(r.next_hop(&n("c"), Precedence::Flash), Some(&n("c")), "direct link still there");
}

/// Follows next hops from every node to every destination, each node using its own view.
fn assert_loop_free(views: &mut BTreeMap<NodeId, Routing>, nodes: &[&str]) {
    for p in Precedence::DESCENDING {
        for src in nodes {
            for dst in nodes {
                if src == dst {
                    continue;
                }
                let mut at = n(src);
                let mut seen = BTreeSet::new();
                while at != n(dst) {
                    assert!(seen.insert(at.clone()), "{p} loop from {src} to {dst} at {at}");
                    let Some(hop) = views.get_mut(&at).unwrap().next_hop(&n(dst), p).cloned()
                    else {
                        break;
                    };
                    at = hop;
                }
            }
        }
    }
}

#[test]
fn no_loops_after_a_topology_change() {
    // A ring of six with a chord, every node with the full database.
    let nodes = ["n0", "n1", "n2", "n3", "n4", "n5"];
    let mut edges: Vec<(usize, usize, Medium, u64)> =
        (0..6).map(|i| (i, (i + 1) % 6, Medium::Wireless, 20 + 10 * i as u64)).collect();
    edges.push((0, 3, Medium::Satellite, 600));
    let build = |edges: &[(usize, usize, Medium, u64)]| {
        let mut views = BTreeMap::new();
        for (i, me) in nodes.iter().enumerate() {
            let mut r = Routing::new(n(me), media());
            let mut mine = Vec::new();
            for (j, other) in nodes.iter().enumerate() {
                let links: Vec<AdvertLink> = edges
                    .iter()
                    .filter_map(|&(a, b, m, rtt)| {
                        if a == j {
                            Some(link(nodes[b], m, rtt, true))
                        } else if b == j {
                            Some(link(nodes[a], m, rtt, true))
                        } else {
                            None
                        }
                    })
                    .collect();
                if i == j {
                    mine = links
                        .iter()
                        .map(|l| local(l.neighbour.as_str(), l.medium, l.rtt.as_millis() as u64))
                        .collect();
                } else {
                    r.accept(advert(other, 1, links), Time(0));
                }
            }
            r.set_local_links(mine);
            views.insert(n(me), r);
        }
        views
    };
    let mut before = build(&edges);
    assert_loop_free(&mut before, &nodes);
    edges.retain(|e| !(e.0 == 1 && e.1 == 2));
    let mut after = build(&edges);
    assert_loop_free(&mut after, &nodes);
    assert_eq!(
        after.get_mut(&n("n1")).unwrap().next_hop(&n("n2"), Precedence::Flash),
        Some(&n("n0"))
    );
}

#[test]
fn groups_and_topics_resolve_from_adverts() {
    let mut r = triangle();
    let mut b = advert("b", 5, vec![link("a", Medium::Wireless, 40, true)]);
    b.role = Role::Township;
    b.groups = vec!["medical".into()];
    b.subscriptions = vec![TopicPattern::new("alerts/#").unwrap()];
    r.accept(b, Time(0));
    assert_eq!(r.resolve(&Address::parse("group:all").unwrap()), vec![n("b"), n("c")]);
    assert_eq!(r.resolve(&Address::parse("group:role:township").unwrap()), vec![n("b")]);
    assert_eq!(r.resolve(&Address::parse("group:medical").unwrap()), vec![n("b")]);
    assert_eq!(r.resolve(&Address::parse("topic:alerts/flood").unwrap()), vec![n("b")]);
    assert_eq!(r.resolve(&Address::parse("topic:other").unwrap()), Vec::<NodeId>::new());
    assert_eq!(r.resolve(&Address::parse("node:a").unwrap()), Vec::<NodeId>::new(), "self");
}

#[test]
fn a_refresh_that_moves_no_edge_keeps_the_routes_and_one_that_does_recomputes_them() {
    let mut r = triangle();
    let t = Time(1_000_000);
    assert_eq!(r.next_hop(&n("c"), Precedence::Routine), Some(&n("b")));
    assert!(!r.dirty);
    // Same links, RTT within the same millisecond, a new subscription: routes stand.
    let mut same = advert(
        "b",
        2,
        vec![link("a", Medium::Wireless, 40, true), link("c", Medium::Wireless, 40, true)],
    );
    same.links[0].rtt += Duration::from_micros(300);
    same.subscriptions.push(TopicPattern::new("alerts/#").unwrap());
    assert!(r.accept(same, t));
    assert!(!r.dirty, "a refresh moving no edge recomputes nothing");
    assert!(r.subscribes(&n("b"), "alerts/x"), "but what it says is taken");
    // b's link to c goes down: recomputed, and ROUTINE takes the satellite hop.
    let down = advert(
        "b",
        3,
        vec![link("a", Medium::Wireless, 40, true), link("c", Medium::Wireless, 40, false)],
    );
    assert!(r.accept(down, t));
    assert!(r.dirty);
    assert_eq!(r.next_hop(&n("c"), Precedence::Routine), Some(&n("c")));
    // An RTT that moves by a millisecond or more moves a cost: recomputed.
    let slower = advert(
        "b",
        4,
        vec![link("a", Medium::Wireless, 41, true), link("c", Medium::Wireless, 40, false)],
    );
    assert!(r.accept(slower, t));
    assert!(r.dirty);
    r.check().unwrap();
}
