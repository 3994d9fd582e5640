use super::*;
use crate::device::PeerConfig;
use crate::forwarding::OWN;
use crate::{DropReason, IpNet};
use std::net::IpAddr;

/// A small in-memory underlay: nodes by endpoint, datagrams in flight.
struct Lab {
    nodes: Vec<(SocketAddr, Node)>,
    now: Instant,
    /// Datagrams no node may receive (a one-way block between two endpoints).
    blocked: Vec<(SocketAddr, SocketAddr)>,
}

fn ep(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, i as u8 + 1], 51820))
}

fn overlay(i: usize) -> [u8; 4] {
    [100, 64, 0, i as u8 + 1]
}

fn packet(src: [u8; 4], dst: [u8; 4], len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

impl Lab {
    /// `n` members that know each other, each configured with the
    /// others' endpoints; relaying on for all.
    fn new(n: usize) -> Lab {
        let now = Instant::now();
        let keys: Vec<PrivateKey> = (0..n).map(|_| PrivateKey::generate()).collect();
        let nodes = (0..n)
            .map(|i| {
                let mut node = Node::new(
                    DeviceConfig {
                        private_key: keys[i].clone(),
                        mtu: 1420,
                        handshake_load_limit: 1000,
                    },
                    true,
                    now,
                    Duration::from_secs(1_700_000_000),
                );
                node.set_members(keys.iter().map(|k| (k.public_key(), OWN)), now);
                for (j, k) in keys.iter().enumerate().filter(|(j, _)| *j != i) {
                    node.device_mut().upsert_peer(PeerConfig {
                        public_key: k.public_key(),
                        preshared_key: None,
                        endpoint: Some(ep(j)),
                        allowed_ips: vec![IpNet::new(IpAddr::from(overlay(j)), 32).unwrap()],
                        persistent_keepalive: None,
                    });
                }
                (ep(i), node)
            })
            .collect();
        Lab {
            nodes,
            now,
            blocked: Vec::new(),
        }
    }

    /// Three members: a and c cannot meet, both have a session with r.
    fn apart() -> (Lab, (usize, usize, usize)) {
        let mut lab = Lab::new(3);
        let (a, r, c) = (0, 1, 2);
        lab.blocked = vec![(ep(a), ep(c)), (ep(c), ep(a))];
        for (x, y) in [(a, r), (c, r)] {
            lab.send(x, &packet(overlay(x), overlay(y), 100));
        }
        (lab, (a, r, c))
    }

    fn key(&self, i: usize) -> PublicKey {
        self.nodes[i].1.device().public_key()
    }

    /// Sends a packet from node `i` into the overlay and delivers every
    /// datagram until quiet; returns what each node delivered to its TUN.
    fn send(&mut self, i: usize, pkt: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut out = vec![0u8; 2048];
        let mut wire = Vec::new();
        if let Action::Send { to, len } = self.nodes[i].1.encapsulate(pkt, &mut out, self.now) {
            wire.push((ep(i), to, out[..len].to_vec()));
        }
        self.run(wire)
    }

    fn run(&mut self, mut wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)>) -> Vec<Vec<Vec<u8>>> {
        let mut delivered = vec![Vec::new(); self.nodes.len()];
        let mut out = vec![0u8; 2048];
        for _ in 0..50 {
            for (i, (at, node)) in self.nodes.iter_mut().enumerate() {
                while let Some((to, len)) = node.poll_transmit(&mut out, self.now) {
                    wire.push((*at, to, out[..len].to_vec()));
                }
                let _ = i;
            }
            if wire.is_empty() {
                break;
            }
            for (from, to, dg) in std::mem::take(&mut wire) {
                if self.blocked.contains(&(from, to)) {
                    continue;
                }
                let Some(j) = self.nodes.iter().position(|(at, _)| *at == to) else {
                    continue;
                };
                let node = &mut self.nodes[j].1;
                match node.handle_datagram(from, &dg, &mut out, self.now) {
                    Action::Send { to: back, len } => wire.push((to, back, out[..len].to_vec())),
                    Action::Deliver(r) => delivered[j].push(out[r].to_vec()),
                    Action::None => {}
                }
            }
        }
        delivered
    }
}

#[test]
fn a_relay_carries_a_handshake_and_data_between_members_that_cannot_meet() {
    let mut lab = Lab::new(3);
    let (a, r, c) = (0, 1, 2);
    lab.blocked = vec![(ep(a), ep(c)), (ep(c), ep(a))];
    // Direct sessions with the relay first (the control loop only relays
    // through members it has a live tunnel with).
    for (x, y) in [(a, r), (c, r)] {
        let got = lab.send(x, &packet(overlay(x), overlay(y), 100));
        assert_eq!(got[y].len(), 1, "{x} -> {y} direct");
    }
    let (ka, kr, kc) = (lab.key(a), lab.key(r), lab.key(c));
    let now = lab.now;
    assert_eq!(lab.nodes[a].1.relay_via(&kc, &kr, now), Some(()));
    assert_eq!(lab.nodes[c].1.relay_via(&ka, &kr, now), Some(()));
    assert_eq!(lab.nodes[a].1.route(&kc), Some(Route::Relayed(kr)));
    let pkt = packet(overlay(a), overlay(c), 600);
    let got = lab.send(a, &pkt);
    assert_eq!(got[c], vec![pkt], "a -> c through r");
    let back = packet(overlay(c), overlay(a), 300);
    assert_eq!(lab.send(c, &back)[a], vec![back], "and back");
    assert!(lab.nodes[r].1.counters().relayed_bytes > 900);
    assert_eq!(lab.nodes[r].1.counters().relay_refused, 0);
    // Handshakes were reported on both ends.
    let events: Vec<Event> = std::iter::from_fn(|| lab.nodes[c].1.poll_event()).collect();
    assert!(events.contains(&Event::Handshake(ka)), "{events:?}");
}

#[test]
fn unauthenticated_envelopes_neither_fill_the_path_table_nor_get_relayed() {
    let mut lab = Lab::new(3);
    let (a, r, c) = (0, 1, 2);
    lab.send(a, &packet(overlay(a), overlay(r), 100));
    let (ka, kc) = (lab.key(a), lab.key(c));
    let now = lab.now;
    let node = &mut lab.nodes[r].1;
    let mut out = vec![0u8; 2048];
    let envelope = |kind: u32, id: &KeyId| {
        let mut h = [0u8; relay::HEADER];
        relay::write_header(kind, id, &mut h);
        [h.to_vec(), vec![1; 64]].concat()
    };
    // "From member a" and "to member c" from 5,000 spoofed addresses.
    for port in 0..5000u16 {
        let spoofed = SocketAddr::from(([198, 18, 9, 9], port));
        for e in [
            envelope(relay::FROM, &key_id(&ka)),
            envelope(relay::TO, &key_id(&kc)),
        ] {
            assert_eq!(
                node.handle_datagram(spoofed, &e, &mut out, now),
                Action::None
            );
        }
    }
    assert_eq!(node.paths.len(), 0, "strangers made relay paths");
    assert_eq!(node.counters().relay_refused, 10_000);
    assert_eq!(node.counters().relayed_bytes, 0);
    // The relay still works for members afterwards.
    lab.blocked = vec![(ep(a), ep(c)), (ep(c), ep(a))];
    lab.send(c, &packet(overlay(c), overlay(r), 100));
    let kr = lab.key(r);
    let now = lab.now;
    lab.nodes[a].1.relay_via(&kc, &kr, now);
    lab.nodes[c].1.relay_via(&ka, &kr, now);
    let pkt = packet(overlay(a), overlay(c), 200);
    assert_eq!(lab.send(a, &pkt)[c], vec![pkt]);
}

#[test]
fn a_relay_forwards_only_between_members_a_circle_connects_and_meters_it() {
    let (mut lab, (a, r, c)) = Lab::apart();
    let (ka, kr, kc) = (lab.key(a), lab.key(r), lab.key(c));
    let (ours, theirs) = (crate::forwarding::ours(0), crate::forwarding::theirs(0));
    let metered_at = usize::try_from(theirs.trailing_zeros()).unwrap();
    let now = lab.now;
    lab.nodes[a].1.relay_via(&kc, &kr, now);
    lab.nodes[c].1.relay_via(&ka, &kr, now);
    // On the relay: a is an own member the agreement exposes, c a
    // partner's member: relayed, and metered to the partner's circle.
    lab.nodes[r]
        .1
        .set_members([(kr, OWN), (ka, OWN | ours), (kc, theirs)], now);
    let pkt = packet(overlay(a), overlay(c), 200);
    assert_eq!(lab.send(a, &pkt)[c], vec![pkt]);
    let relay = &lab.nodes[r].1;
    let metered = relay.forwarding().metered()[metered_at];
    assert!(metered > 200, "{metered}");
    assert_eq!(relay.forwarding().metered()[0], 0);
    // The agreement no longer exposes a: a datagram for c in a relay
    // envelope (a forged relay request, as far as the relay knows) gets
    // nowhere, and is counted.
    lab.nodes[r]
        .1
        .set_members([(kr, OWN), (ka, OWN), (kc, theirs)], now);
    let got = lab.send(a, &packet(overlay(a), overlay(c), 200));
    assert!(got[c].is_empty(), "relayed between a pair nothing connects");
    let relay = &lab.nodes[r].1;
    assert!(relay.forwarding().refused().unconnected >= 1);
    assert_eq!(relay.forwarding().metered()[metered_at], metered);
}

#[test]
fn a_node_that_does_not_relay_refuses_and_counts() {
    let mut lab = Lab::new(3);
    let (a, r, c) = (0, 1, 2);
    lab.nodes[r].1.serve_relay = false;
    lab.blocked = vec![(ep(a), ep(c)), (ep(c), ep(a))];
    for (x, y) in [(a, r), (c, r)] {
        lab.send(x, &packet(overlay(x), overlay(y), 100));
    }
    let (ka, kr, kc) = (lab.key(a), lab.key(r), lab.key(c));
    let now = lab.now;
    lab.nodes[a].1.relay_via(&kc, &kr, now);
    lab.nodes[c].1.relay_via(&ka, &kr, now);
    let got = lab.send(a, &packet(overlay(a), overlay(c), 200));
    assert!(got[c].is_empty());
    assert!(lab.nodes[r].1.counters().relay_refused >= 1);
    assert_eq!(lab.nodes[r].1.counters().relayed_bytes, 0);
}

#[test]
fn members_answer_each_others_echo_and_strangers_are_dropped() {
    let mut lab = Lab::new(2);
    let (a, b) = (0, 1);
    let kb = lab.key(b);
    let (to, q) = lab.nodes[a]
        .1
        .question(&kb, 42, 1300, None)
        .expect("b is a member");
    assert_eq!((to, q.len()), (ep(b), 1300));
    let mut out = vec![0u8; 2048];
    let now = lab.now;
    let Action::Send { to, len } = lab.nodes[b].1.handle_datagram(ep(a), &q, &mut out, now) else {
        panic!("b answers a member")
    };
    assert_eq!(to, ep(a));
    let reply = out[..len].to_vec();
    assert_eq!(
        lab.nodes[a].1.handle_datagram(ep(b), &reply, &mut out, now),
        Action::None
    );
    assert_eq!(
        lab.nodes[a].1.poll_event(),
        Some(Event::Echo {
            from: kb,
            nonce: 42,
            seen: ep(a),
            len: 1300
        })
    );
    assert_eq!(lab.nodes[b].1.counters().echo_answered, 1);
    // A stranger (a node with no members, like a static WireGuard peer).
    let mut stranger = Node::new(
        DeviceConfig {
            private_key: PrivateKey::generate(),
            mtu: 1420,
            handshake_load_limit: 10,
        },
        false,
        now,
        Duration::ZERO,
    );
    assert_eq!(
        stranger.question(&kb, 1, 0, None),
        None,
        "it has no members to ask"
    );
    assert_eq!(
        stranger.handle_datagram(ep(a), &q, &mut out, now),
        Action::None
    );
    assert_eq!(stranger.counters().echo_dropped, 1);
    assert_eq!(
        stranger.device().counters().dropped(DropReason::Malformed),
        0
    );
}

#[test]
fn the_largest_datagram_follows_the_mtu() {
    let mut lab = Lab::new(2);
    let before = lab.nodes[0].1.max_datagram();
    assert_eq!(before, 1424 + 16 + 16 + relay::HEADER);
    lab.nodes[0].1.set_mtu(9000);
    assert_eq!(
        lab.nodes[0].1.max_datagram(),
        9008 + 16 + 16 + relay::HEADER
    );
    let big = packet(overlay(0), overlay(1), 8999);
    let mut out = vec![0u8; lab.nodes[0].1.max_datagram()];
    lab.send(0, &packet(overlay(0), overlay(1), 60));
    let now = lab.now;
    match lab.nodes[0].1.encapsulate(&big, &mut out, now) {
        Action::Send { len, .. } => assert_eq!(len, 9000 + 32, "padded up to the MTU"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn envelopes_are_bounded_and_a_path_needs_an_authenticated_datagram() {
    let mut lab = Lab::new(3);
    let (a, r, c) = (0, 1, 2);
    for (x, y) in [(a, r), (c, r)] {
        lab.send(x, &packet(overlay(x), overlay(y), 100));
    }
    let (ka, kc) = (lab.key(a), lab.key(c));
    let now = lab.now;
    let node = &mut lab.nodes[r].1;
    let mut out = vec![0u8; 70_000];
    // A member's envelope larger than anything we send: refused, not
    // copied into buffers sized for our own datagrams.
    let mut h = [0u8; relay::HEADER];
    relay::write_header(relay::TO, &key_id(&kc), &mut h);
    let huge = [h.to_vec(), vec![7; 60_000]].concat();
    assert_eq!(
        node.handle_datagram(ep(a), &huge, &mut out, now),
        Action::None
    );
    assert_eq!(node.counters().relay_refused, 1);
    // "From member a" arriving from member c's real endpoint (spoofable),
    // carrying garbage: no path is kept.
    relay::write_header(relay::FROM, &key_id(&ka), &mut h);
    for i in 0..100u8 {
        let forged = [h.to_vec(), vec![i; 148]].concat();
        node.handle_datagram(ep(c), &forged, &mut out, now);
    }
    assert!(
        node.paths.is_empty(),
        "unauthenticated datagrams made paths"
    );
}

#[test]
fn paths_through_a_departed_relay_go() {
    let mut lab = Lab::new(3);
    let (a, r, c) = (0, 1, 2);
    lab.send(a, &packet(overlay(a), overlay(r), 100));
    let (kr, kc) = (lab.key(r), lab.key(c));
    let now = lab.now;
    let node = &mut lab.nodes[a].1;
    assert_eq!(node.relay_via(&kc, &kr, now), Some(()));
    assert_eq!(node.paths.len(), 1);
    // r is no longer a member; c still is.
    let keep = [(node.device().public_key(), OWN), (kc, OWN)];
    node.set_members(keep, now);
    assert!(
        node.paths.is_empty(),
        "a path through a non-member survived"
    );
}

#[test]
fn a_direct_packet_of_a_relayed_peer_is_reported_not_followed() {
    let mut lab = Lab::new(3);
    let (a, r, c) = (0, 1, 2);
    // a cannot reach c directly; c can reach a.
    lab.blocked = vec![(ep(a), ep(c))];
    for (x, y) in [(a, r), (c, r)] {
        let got = lab.send(x, &packet(overlay(x), overlay(y), 100));
        assert_eq!(got[y].len(), 1, "{x} -> {y} direct");
    }
    let (ka, kr, kc) = (lab.key(a), lab.key(r), lab.key(c));
    let now = lab.now;
    lab.nodes[a].1.relay_via(&kc, &kr, now);
    lab.nodes[c].1.relay_via(&ka, &kr, now);
    let pkt = packet(overlay(a), overlay(c), 200);
    assert_eq!(lab.send(a, &pkt)[c], vec![pkt.clone()], "relayed");
    while lab.nodes[a].1.poll_event().is_some() {}
    // c tries the direct path: its packets reach a straight.
    assert!(lab.nodes[c].1.go_direct(&ka, ep(a)));
    let back = packet(overlay(c), overlay(a), 100);
    assert_eq!(lab.send(c, &back)[a], vec![back], "c -> a direct");
    // a stays relayed (its way to c is blocked) and says what it saw.
    assert_eq!(lab.nodes[a].1.route(&kc), Some(Route::Relayed(kr)));
    let events: Vec<Event> = std::iter::from_fn(|| lab.nodes[a].1.poll_event()).collect();
    assert!(
        events.contains(&Event::DirectSeen {
            peer: kc,
            at: ep(c)
        }),
        "{events:?}"
    );
    assert_eq!(lab.send(a, &pkt)[c], vec![pkt], "a -> c still arrives");
}

#[test]
fn a_call_crosses_the_relay_and_a_direct_question_of_a_relayed_peer_is_reported() {
    let (mut lab, (a, r, c)) = Lab::apart();
    let (ka, kr, kc) = (lab.key(a), lab.key(r), lab.key(c));
    let now = lab.now;
    assert_eq!(
        lab.nodes[a].1.call(&kc, 1, now),
        None,
        "c is not relayed yet"
    );
    lab.nodes[a].1.relay_via(&kc, &kr, now);
    lab.nodes[c].1.relay_via(&ka, &kr, now);
    for i in [a, c] {
        while lab.nodes[i].1.poll_event().is_some() {}
    }
    let (to, call) = lab.nodes[a].1.call(&kc, 1, now).expect("a call");
    assert_eq!(to, ep(r), "through the relay");
    lab.run(vec![(ep(a), to, call.clone())]);
    let events: Vec<Event> = std::iter::from_fn(|| lab.nodes[c].1.poll_event()).collect();
    assert_eq!(events, vec![Event::CallMe(ka)]);
    // Straight from a's endpoint, a call is dropped: calls come relayed.
    let dropped = lab.nodes[c].1.counters().echo_dropped;
    let mut out = vec![0u8; 2048];
    let raw = &call[relay::HEADER..];
    assert_eq!(
        lab.nodes[c].1.handle_datagram(ep(a), raw, &mut out, now),
        Action::None
    );
    assert_eq!(lab.nodes[c].1.counters().echo_dropped, dropped + 1);
    // A call relabelled as another member's (the relay lies) is dropped.
    let mut forged = call.clone();
    forged[relay::HEADER + 4..relay::HEADER + 12].copy_from_slice(&key_id(&kr));
    lab.run(vec![(ep(a), to, forged)]);
    assert_eq!(lab.nodes[c].1.poll_event(), None);
    // c answers the call: its question reaches a straight (the path is
    // open now), a answers it and reports where c's question came from.
    lab.blocked.clear();
    let (at, q) = lab.nodes[c].1.question(&ka, 9, 0, Some(ep(a))).unwrap();
    let back = lab.run(vec![(ep(c), at, q)]);
    assert!(back.iter().all(Vec::is_empty));
    let events: Vec<Event> = std::iter::from_fn(|| lab.nodes[a].1.poll_event()).collect();
    assert_eq!(
        events,
        vec![Event::DirectSeen {
            peer: kc,
            at: ep(c)
        }]
    );
    let events: Vec<Event> = std::iter::from_fn(|| lab.nodes[c].1.poll_event()).collect();
    assert!(
        matches!(events.as_slice(), [Event::Echo { from, nonce: 9, .. }] if *from == ka),
        "{events:?}"
    );
}
