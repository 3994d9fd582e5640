use super::*;
use crate::fixture::{TestMember, TestNetwork};
use crate::member::{Link, Metrics};

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

fn live(rtt_ms: u64) -> Facts {
    Facts {
        direct: true,
        session: true,
        silent: false,
        rtt: Some(Duration::from_millis(rtt_ms)),
    }
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
            m.record.metrics = Some(Metrics {
                links: vec![Link {
                    peer: net.member(2).key.id(),
                    rtt_min_us: None,
                    rtt_avg_us: None,
                    loss_permille: 0,
                    rx_bytes: 0,
                    tx_bytes: 0,
                    handshake_age_s: Some(3),
                    path: "direct".into(),
                }],
                ..Metrics::default()
            });
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
    // r3 is faster, but r4 is known to reach the peer.
    let facts = BTreeMap::from([(r3, live(1)), (r4, live(30))]);
    r.handle_timeout(t0 + DIRECT_GRACE / 2, &me, &ledger, &facts, NOW_MS);
    assert!(commands(&mut r).is_empty(), "within the grace");
    r.handle_timeout(t0 + DIRECT_GRACE * 2, &me, &ledger, &facts, NOW_MS);
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
fn a_session_in_time_keeps_the_direct_path_and_no_relay_is_no_relay() {
    let net = TestNetwork::new(3);
    // Members 3 and 4 refuse to relay.
    let (ledger, [me, peer, r3, r4]) = setup(&net, |n, m| m.record.no_relay = n >= 3);
    let t0 = Instant::now();
    let mut r = Routes::new();
    r.handle_choice(peer, Some(endpoint()), t0);
    let mut facts = BTreeMap::from([(r3, live(1)), (r4, live(1)), (peer, live(1))]);
    r.handle_timeout(t0 + DIRECT_GRACE * 3, &me, &ledger, &facts, NOW_MS);
    assert!(commands(&mut r).is_empty(), "a live session");
    facts.remove(&peer);
    r.handle_timeout(t0 + DIRECT_GRACE * 3, &me, &ledger, &facts, NOW_MS);
    assert!(commands(&mut r).is_empty(), "nobody relays");
}

#[test]
fn a_silent_relay_is_replaced_then_dropped_and_direct_is_retried() {
    let net = TestNetwork::new(3);
    let (ledger, [me, peer, r3, r4]) = setup(&net, |_, _| {});
    let t0 = Instant::now();
    let mut r = Routes::new();
    r.handle_choice(peer, Some(endpoint()), t0);
    let mut facts = BTreeMap::from([(r3, live(1)), (r4, live(2))]);
    let mut now = t0 + DIRECT_GRACE * 2;
    r.handle_timeout(now, &me, &ledger, &facts, NOW_MS);
    let c = commands(&mut r);
    assert!(
        matches!(c[..], [Command::Relay { relay, .. }] if relay == r3),
        "{c:?} r3 {r3:?} r4 {r4:?}"
    );
    // Relayed now; its probes through r3 go unanswered.
    facts.insert(
        peer,
        Facts {
            direct: false,
            silent: true,
            ..Facts::default()
        },
    );
    now += DIRECT_GRACE * 2;
    r.handle_timeout(now, &me, &ledger, &facts, NOW_MS);
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
    now += DIRECT_GRACE * 2;
    r.handle_timeout(now, &me, &ledger, &facts, NOW_MS);
    assert_eq!(
        commands(&mut r),
        vec![Command::Direct {
            peer,
            endpoint: endpoint()
        }]
    );
    // A relay that works is kept until the direct retry is due, which
    // counts from the last direct attempt.
    let attempt = now;
    facts.insert(r3, live(1));
    facts.insert(peer, Facts::default());
    now += DIRECT_GRACE * 2;
    r.handle_timeout(now, &me, &ledger, &facts, NOW_MS);
    assert_eq!(commands(&mut r).len(), 1, "relayed again");
    facts.insert(
        peer,
        Facts {
            rtt: Some(Duration::from_millis(5)),
            ..Facts::default()
        },
    );
    r.handle_timeout(attempt + DIRECT_RETRY, &me, &ledger, &facts, NOW_MS);
    assert!(commands(&mut r).is_empty(), "not yet");
    r.handle_timeout(
        attempt + DIRECT_RETRY + DIRECT_GRACE * 2,
        &me,
        &ledger,
        &facts,
        NOW_MS,
    );
    assert_eq!(
        commands(&mut r),
        vec![Command::Direct {
            peer,
            endpoint: endpoint()
        }],
        "the direct path is retried"
    );
}
