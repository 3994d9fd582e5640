use super::*;
use crate::fixture::{TestMember, TestNetwork};
use crate::ledger::Ledger;
use crate::member::{Link, Metrics};
use crate::partners::Partners;

const NOW_MS: u64 = 1_000;

/// Members 1 (this node), 2 (the peer), 3 and 4 (candidate relays).
fn setup(net: &TestNetwork, edit: impl Fn(u8, &mut TestMember)) -> (Ledger, [NodeId; 4]) {
    let mut ledger = net.ledger();
    let mut ids = [NodeId([0; 32]); 4];
    for n in 1..=4u8 {
        let mut m = net.member(n);
        edit(n, &mut m);
        ledger.ingest(&m.signed(1), NOW_MS).unwrap();
        ids[usize::from(n) - 1] = m.key.id();
    }
    (ledger, ids)
}

/// The routes' decisions for `me` over `ledger` and `partners`.
fn decide_with(
    r: &mut Routes,
    now: Instant,
    me: &NodeId,
    (ledger, partners): (&Ledger, &Partners),
    facts: &BTreeMap<NodeId, Facts>,
    now_ms: u64,
) {
    let roster = Roster::new(ledger, partners, *me, now_ms);
    r.handle_timeout(now, me, &roster, facts, now_ms);
}

/// The routes' decisions for `me` over the own network's `ledger` alone.
fn decide(
    r: &mut Routes,
    now: Instant,
    me: &NodeId,
    ledger: &Ledger,
    facts: &BTreeMap<NodeId, Facts>,
    now_ms: u64,
) {
    let partners = Partners::new(ledger.network().id);
    decide_with(r, now, me, (ledger, &partners), facts, now_ms);
}

/// The commands for `peer` (new, direct attempt at [`endpoint`]) once its
/// grace is over, seen by `me` over `world` with `live` members answering
/// at the given RTTs (ms).
fn partner_attempt(
    peer: NodeId,
    me: &NodeId,
    world: (&Ledger, &Partners),
    live_ids: &[(NodeId, u64)],
) -> Vec<Command> {
    let facts: BTreeMap<NodeId, Facts> =
        live_ids.iter().map(|(id, rtt)| (*id, live(*rtt))).collect();
    let t0 = Instant::now();
    let mut r = Routes::new();
    r.handle_choice(peer, Some(endpoint()), t0);
    decide_with(&mut r, t0 + DIRECT_GRACE, me, world, &facts, 0);
    commands(&mut r)
}

fn live(rtt_ms: u64) -> Facts {
    Facts {
        direct: true,
        answered: true,
        rtt: Some(Duration::from_millis(rtt_ms)),
        ..Facts::default()
    }
}

/// What a relayed peer shows while its relay gets through.
fn relayed(relay: NodeId) -> Facts {
    Facts {
        relay: Some(relay),
        answered: true,
        ..Facts::default()
    }
}

/// Published metrics showing a live direct tunnel with `peer`.
fn live_link(peer: NodeId) -> Option<Metrics> {
    Some(Metrics {
        links: vec![Link {
            peer,
            rtt_min_us: None,
            rtt_avg_us: None,
            loss_permille: 0,
            rx_bytes: 0,
            tx_bytes: 0,
            handshake_age_s: Some(3),
            path: "direct".into(),
        }],
        ..Metrics::default()
    })
}

fn commands(r: &mut Routes) -> Vec<Command> {
    std::iter::from_fn(|| r.poll_command()).collect()
}

fn endpoint() -> SocketAddr {
    "198.18.0.2:51820".parse().unwrap()
}

#[test]
fn a_direct_path_gets_its_grace_then_the_best_relay() {
    let net = TestNetwork::new(3);
    // Member 4 publishes a live direct link to the peer (member 2).
    let (ledger, [me, peer, r3, r4]) = setup(&net, |n, m| {
        if n == 4 {
            m.record.metrics = live_link(net.member(2).key.id());
        }
    });
    let t0 = Instant::now();
    let mut r = Routes::new();
    assert_eq!(
        r.handle_choice(peer, Some(endpoint()), t0),
        Some(endpoint())
    );
    assert_eq!(
        r.handle_choice(peer, Some(endpoint()), t0),
        None,
        "same choice"
    );
    assert_eq!(
        r.settling(t0).collect::<Vec<_>>(),
        [peer],
        "watched closely"
    );
    // r3 is faster, but r4 is known to reach the peer.
    let mut facts = BTreeMap::from([(r3, live(1)), (r4, live(30))]);
    // An old handshake does not make the attempt work.
    facts.insert(
        peer,
        Facts {
            direct: true,
            handshake: Some(t0 - Duration::from_secs(1)),
            ..Facts::default()
        },
    );
    decide(&mut r, t0 + DIRECT_GRACE / 2, &me, &ledger, &facts, NOW_MS);
    assert!(commands(&mut r).is_empty(), "within the grace");
    decide(&mut r, t0 + DIRECT_GRACE * 2, &me, &ledger, &facts, NOW_MS);
    assert_eq!(
        commands(&mut r),
        vec![Command::Relay {
            peer,
            relay: r4,
            replacing: None
        }]
    );
    assert_eq!(r.relay_of(&peer), Some(r4));
}

#[test]
fn a_relay_whose_handshake_is_fresh_answers_before_its_probes_do() {
    let net = TestNetwork::new(3);
    let (ledger, [me, peer, r3, _]) = setup(&net, |_, _| {});
    let t0 = Instant::now();
    let shook = |at: Instant| Facts {
        direct: true,
        handshake: Some(at),
        ..Facts::default()
    };
    let attempt = |relay_facts: Facts, now: Instant| {
        let mut r = Routes::new();
        r.handle_choice(peer, Some(endpoint()), t0);
        let facts = BTreeMap::from([(r3, relay_facts)]);
        decide(&mut r, now, &me, &ledger, &facts, NOW_MS);
        commands(&mut r)
    };
    let later = t0 + DIRECT_GRACE;
    assert_eq!(
        attempt(shook(t0), later),
        vec![Command::Relay {
            peer,
            relay: r3,
            replacing: None
        }]
    );
    // Long ago, or silent since: not a relay.
    assert_eq!(
        attempt(shook(t0), t0 + SESSION_FRESH + DIRECT_GRACE),
        vec![]
    );
    let silent = Facts {
        silent: true,
        ..shook(t0)
    };
    assert_eq!(attempt(silent, later), vec![]);
}

#[test]
fn an_answering_direct_path_is_kept_and_no_relay_is_no_relay() {
    let net = TestNetwork::new(3);
    // Members 3 and 4 refuse to relay.
    let (ledger, [me, peer, r3, r4]) = setup(&net, |n, m| m.record.no_relay = n >= 3);
    let t0 = Instant::now();
    let mut r = Routes::new();
    r.handle_choice(peer, Some(endpoint()), t0);
    let handshake = Facts {
        direct: true,
        handshake: Some(t0 + Duration::from_millis(5)),
        ..Facts::default()
    };
    let mut facts = BTreeMap::from([(r3, live(1)), (r4, live(1)), (peer, handshake)]);
    decide(&mut r, t0 + DIRECT_GRACE * 3, &me, &ledger, &facts, NOW_MS);
    assert!(commands(&mut r).is_empty(), "a handshake since the attempt");
    facts.remove(&peer);
    decide(&mut r, t0 + DIRECT_GRACE * 3, &me, &ledger, &facts, NOW_MS);
    assert!(commands(&mut r).is_empty(), "nobody relays");
}

#[test]
fn a_silent_relay_is_replaced_then_dropped_for_the_direct_path() {
    let net = TestNetwork::new(3);
    let (ledger, [me, peer, r3, r4]) = setup(&net, |_, _| {});
    let t0 = Instant::now();
    let mut r = Routes::new();
    r.handle_choice(peer, Some(endpoint()), t0);
    let mut facts = BTreeMap::from([(r3, live(1)), (r4, live(2))]);
    let mut now = t0 + DIRECT_GRACE * 2;
    decide(&mut r, now, &me, &ledger, &facts, NOW_MS);
    let c = commands(&mut r);
    assert!(
        matches!(c[..], [Command::Relay { relay, .. }] if relay == r3),
        "{c:?} r3 {r3:?} r4 {r4:?}"
    );
    // Relayed now; its probes through r3 go unanswered: at once.
    facts.insert(
        peer,
        Facts {
            silent: true,
            ..relayed(r3)
        },
    );
    now += Duration::from_millis(300);
    decide(&mut r, now, &me, &ledger, &facts, NOW_MS);
    assert_eq!(
        commands(&mut r),
        vec![Command::Relay {
            peer,
            relay: r4,
            replacing: Some(r3)
        }]
    );
    // r4 fails too and r3 is silent itself: back to direct.
    facts.insert(
        r3,
        Facts {
            silent: true,
            ..live(1)
        },
    );
    facts.insert(
        peer,
        Facts {
            silent: true,
            ..relayed(r4)
        },
    );
    now += Duration::from_millis(300);
    decide(&mut r, now, &me, &ledger, &facts, NOW_MS);
    assert_eq!(
        commands(&mut r),
        vec![Command::Direct {
            peer,
            endpoint: endpoint()
        }]
    );
}

#[test]
fn a_working_relay_is_only_left_for_a_verified_direct_path() {
    let net = TestNetwork::new(3);
    let (ledger, [me, peer, r3, _]) = setup(&net, |_, _| {});
    let t0 = Instant::now();
    let mut r = Routes::new();
    r.handle_choice(peer, Some(endpoint()), t0);
    let mut facts = BTreeMap::from([(r3, live(1))]);
    decide(&mut r, t0 + DIRECT_GRACE, &me, &ledger, &facts, NOW_MS);
    assert_eq!(commands(&mut r).len(), 1, "relayed");
    facts.insert(peer, relayed(r3));
    // Five minutes of a working relay: the direct candidate is checked
    // every VERIFY_EVERY, never switched to on hope.
    let mut now = t0 + DIRECT_GRACE;
    let mut checks = 0;
    while now < t0 + Duration::from_secs(300) {
        now += Duration::from_secs(2);
        decide(&mut r, now, &me, &ledger, &facts, NOW_MS);
        for c in commands(&mut r) {
            assert_eq!(
                c,
                Command::Verify {
                    peer,
                    endpoint: endpoint()
                }
            );
            checks += 1;
        }
    }
    assert!((28..=31).contains(&checks), "{checks} checks");
    // A new choice from the records is checked too, not switched to.
    let moved: SocketAddr = "198.18.0.9:40000".parse().unwrap();
    assert_eq!(r.handle_choice(peer, Some(moved), now), None);
    assert_eq!(
        commands(&mut r),
        [Command::Verify {
            peer,
            endpoint: moved
        }]
    );
    // A direct packet from the peer: its endpoint is checked at once, at
    // most every SEEN_VERIFY_EVERY.
    let seen: SocketAddr = "198.18.0.9:40001".parse().unwrap();
    now += SEEN_VERIFY_EVERY;
    r.handle_direct_seen(peer, seen, now);
    r.handle_direct_seen(peer, seen, now);
    assert_eq!(
        commands(&mut r),
        [Command::Verify {
            peer,
            endpoint: seen
        }]
    );
    // The check answered: direct now.
    r.handle_verified(peer, seen, now);
    assert_eq!(
        commands(&mut r),
        [Command::Direct {
            peer,
            endpoint: seen
        }]
    );
    assert_eq!(r.relay_of(&peer), None);
    // That path dies (every probe on it lost): back to the relay at once,
    // although a handshake is recent.
    facts.insert(
        peer,
        Facts {
            direct: true,
            handshake: Some(now),
            silent: true,
            ..Facts::default()
        },
    );
    now += Duration::from_millis(300);
    decide(&mut r, now, &me, &ledger, &facts, NOW_MS);
    assert_eq!(
        commands(&mut r),
        [Command::Relay {
            peer,
            relay: r3,
            replacing: None
        }]
    );
}

#[test]
fn a_peer_that_moved_us_onto_a_relay_is_followed() {
    let net = TestNetwork::new(3);
    let (ledger, [me, peer, r3, _]) = setup(&net, |_, _| {});
    let t0 = Instant::now();
    let mut r = Routes::new();
    r.handle_choice(peer, Some(endpoint()), t0);
    let facts = BTreeMap::from([(r3, live(1)), (peer, relayed(r3))]);
    decide(
        &mut r,
        t0 + Duration::from_secs(1),
        &me,
        &ledger,
        &facts,
        NOW_MS,
    );
    assert!(commands(&mut r).is_empty());
    assert_eq!(r.relay_of(&peer), Some(r3));
}

#[test]
fn a_new_choice_for_a_direct_peer_moves_it_there() {
    let t0 = Instant::now();
    let (peer, moved) = (NodeId([2; 32]), "198.18.0.7:40000".parse().unwrap());
    let mut r = Routes::new();
    assert_eq!(
        r.handle_choice(peer, Some(endpoint()), t0),
        Some(endpoint()),
        "a new peer"
    );
    let later = t0 + SETTLE * 2;
    assert_eq!(r.settling(later).count(), 0);
    assert_eq!(r.handle_choice(peer, Some(moved), later), None);
    assert_eq!(
        commands(&mut r),
        [Command::Direct {
            peer,
            endpoint: moved
        }]
    );
    assert_eq!(
        r.settling(later).collect::<Vec<_>>(),
        [peer],
        "a new attempt"
    );
}

#[test]
fn a_relayed_peer_behind_a_nat_is_punched_and_called_by_one_side_only() {
    let net = TestNetwork::new(3);
    // Every member sits behind a NAT (seen at an address not its own).
    let (ledger, [a, b, r3, _]) = setup(&net, |n, m| {
        m.record.reflexive = vec![SocketAddr::from(([198, 18, 1, n], 40000))];
    });
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    let t0 = Instant::now();
    let facts = BTreeMap::from([(r3, live(1)), (low, relayed(r3)), (high, relayed(r3))]);
    let run = |me: NodeId, peer: NodeId| {
        let mut r = Routes::new();
        r.handle_choice(peer, Some(endpoint()), t0);
        let mut facts = facts.clone();
        facts.insert(peer, Facts::default());
        decide(&mut r, t0 + DIRECT_GRACE, &me, &ledger, &facts, NOW_MS);
        assert!(matches!(commands(&mut r)[..], [Command::Relay { .. }]));
        facts.insert(peer, relayed(r3));
        let mut now = t0 + DIRECT_GRACE;
        let mut sent = Vec::new();
        while now < t0 + Duration::from_secs(124) {
            decide(&mut r, now, &me, &ledger, &facts, NOW_MS);
            sent.extend(commands(&mut r));
            now += Duration::from_secs(1);
        }
        (r, sent, now)
    };
    // The lower id punches and calls at once, then every PUNCH_EVERY; it
    // never knocks with a plain check (that would shut the peer's NAT).
    let (_, sent, _) = run(low, high);
    let (punch, check) = (Command::Punch { peer: high }, Command::Check { peer: high });
    assert_eq!(
        sent,
        [punch, check].repeat(3),
        "at 4 s, 44 s and 84 s, each checked itself 2 s later"
    );
    // The higher id waits for calls, and checks the path when called, at
    // most every SEEN_VERIFY_EVERY.
    let (mut r, sent, now) = run(high, low);
    assert_eq!(sent, vec![]);
    r.handle_called(low, now);
    r.handle_called(low, now + Duration::from_millis(500));
    let check = Command::Check { peer: low };
    assert_eq!(commands(&mut r), vec![check]);
    r.handle_called(low, now + SEEN_VERIFY_EVERY);
    assert_eq!(commands(&mut r), vec![check]);
    // A call from a stranger changes nothing.
    r.handle_called(r3, now + SEEN_VERIFY_EVERY * 2);
    assert_eq!(commands(&mut r), vec![]);
}

#[test]
fn a_partner_peer_is_relayed_only_by_a_member_that_reaches_it_or_is_lent() {
    let (alpha, beta, agreement) = crate::partners::tests::alpha_beta();
    // alpha: me (1, exposed), a public member that carries the agreement
    // and is exposed to beta (2, `shared`), a public member not exposed
    // (3), and one whose links show a live tunnel with beta's member (4).
    let partner_node = beta.node(1, &[]);
    let partner = partner_node.key.id();
    let partners = crate::partners::tests::partners_of(&alpha, &beta, &agreement, &[&partner_node]);
    let mut carrier = alpha.node(2, &["shared"]);
    carrier.record.agreements = vec![agreement];
    let mut linked = alpha.node(4, &[]);
    linked.record.metrics = live_link(partner);
    let (me, unexposed) = (alpha.node(1, &["shared"]), alpha.node(3, &[]));
    let ledger = alpha.ledger(&[
        me.signed(1),
        carrier.signed(1),
        unexposed.signed(1),
        linked.signed(1),
    ]);
    let [me, exposed, unexposed, linked] = [&me, &carrier, &unexposed, &linked].map(|n| n.key.id());
    let attempt =
        |live_ids: &[(NodeId, u64)]| partner_attempt(partner, &me, (&ledger, &partners), live_ids);
    let relay = |relay| Command::Relay {
        peer: partner,
        relay,
        replacing: None,
    };
    // An unexposed public member cannot reach a partner's member: never
    // its relay, however fast.
    assert_eq!(attempt(&[(unexposed, 1)]), vec![]);
    assert_eq!(
        attempt(&[(unexposed, 1), (exposed, 20)]),
        vec![relay(exposed)]
    );
    assert_eq!(
        attempt(&[(unexposed, 1), (exposed, 20), (linked, 30)]),
        vec![relay(linked)],
        "one known to reach it first"
    );
}

#[test]
fn a_member_exposed_only_to_another_partner_does_not_relay_for_this_one() {
    use crate::partners::tests::{agree, alpha_beta, partners_of, Org};
    let (alpha, beta, with_beta) = alpha_beta();
    let gamma = Org::new(3, "gamma", "10.3.0.0/24");
    let with_gamma = agree(&alpha, "gw", &gamma, 8);
    let peer_node = beta.node(1, &[]);
    let peer = peer_node.key.id();
    let partners = partners_of(&alpha, &beta, &with_beta, &[&peer_node]);
    let mut me = alpha.node(1, &["shared"]);
    me.record.agreements = vec![with_beta, with_gamma];
    // Public, exposed to gamma only: it has no tunnel to beta's members.
    let gateway = alpha.node(5, &["gw"]);
    let ledger = alpha.ledger(&[me.signed(1), gateway.signed(1)]);
    let (me, gateway) = (me.key.id(), gateway.key.id());
    let world = (&ledger, &partners);
    assert_eq!(partner_attempt(peer, &me, world, &[(gateway, 1)]), vec![]);
}

#[test]
fn a_partner_peer_is_relayed_by_a_relay_its_network_lends_which_is_no_host() {
    let (alpha, beta, agreement) = crate::partners::tests::lending();
    let (server, edge) = (beta.node(1, &["shared"]), beta.node(2, &["edge"]));
    let partners =
        crate::partners::tests::partners_of(&alpha, &beta, &agreement, &[&server, &edge]);
    let mut me = alpha.node(1, &["shared"]);
    me.record.agreements = vec![agreement];
    let unexposed = alpha.node(3, &[]);
    let ledger = alpha.ledger(&[me.signed(1), unexposed.signed(1)]);
    let [me, unexposed, server, edge] = [&me, &unexposed, &server, &edge].map(|n| n.key.id());

    // The lent relay is a peer (a tunnel for envelopes), not a host: no
    // overlay address, no name.
    let roster = Roster::new(&ledger, &partners, me, 0);
    let ids = |ms: Vec<crate::ledger::Member<'_>>| ms.iter().map(|m| m.id).collect::<Vec<_>>();
    assert!(ids(roster.members(0)).contains(&edge));
    assert!(ids(roster.hosts(0)).contains(&server));
    assert!(!ids(roster.hosts(0)).contains(&edge));
    assert!(!roster.address_owners(0).values().any(|id| *id == edge));

    let attempt = |peer: NodeId, live_ids: &[(NodeId, u64)]| {
        partner_attempt(peer, &me, (&ledger, &partners), live_ids)
    };
    // Only our own unexposed member answers: nobody can relay.
    assert_eq!(attempt(server, &[(unexposed, 1)]), vec![]);
    // Beta's lent relay does.
    assert_eq!(
        attempt(server, &[(unexposed, 1), (edge, 30)]),
        vec![Command::Relay {
            peer: server,
            relay: edge,
            replacing: None
        }]
    );
    // The lent relay itself is never relayed to (relays do not chain).
    assert_eq!(attempt(edge, &[(unexposed, 1), (server, 1)]), vec![]);
}
