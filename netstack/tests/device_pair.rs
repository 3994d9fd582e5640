//! Two devices talking through an in-memory "network": handshakes, data,
//! roaming, replays, cookies under load and timer-driven retries.
#![allow(clippy::unwrap_used)]

mod support;

use netstack::{Action, Device, DeviceConfig, DropReason, IpNet, PeerConfig, PrivateKey};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use support::ip_packet;

const A_EP: &str = "198.18.0.1:51820";
const B_EP: &str = "198.18.0.2:51820";

struct Pair {
    a: Device,
    b: Device,
    now: Instant,
}

fn device(
    key: &PrivateKey,
    peer: &PrivateKey,
    peer_ip: [u8; 4],
    ep: Option<&str>,
    now: Instant,
) -> Device {
    device_with_limit(key, peer, peer_ip, ep, now, 1000)
}

/// A device with one peer that demands cookies above `load_limit` handshakes/s.
fn device_with_limit(
    key: &PrivateKey,
    peer: &PrivateKey,
    peer_ip: [u8; 4],
    ep: Option<&str>,
    now: Instant,
    load_limit: u32,
) -> Device {
    let mut d = Device::new(
        DeviceConfig {
            private_key: key.clone(),
            mtu: 1420,
            handshake_load_limit: load_limit,
        },
        now,
        Duration::from_secs(1_700_000_000),
    );
    d.upsert_peer(PeerConfig {
        public_key: peer.public_key(),
        preshared_key: Some([9; 32]),
        endpoint: ep.map(|e| e.parse().unwrap()),
        allowed_ips: vec![IpNet::new(IpAddr::from(peer_ip), 32).unwrap()],
        persistent_keepalive: None,
    });
    d
}

/// The initiation `d` sends for its first packet from `src` to `dst`.
fn initiation(d: &mut Device, src: [u8; 4], dst: [u8; 4], now: Instant) -> Vec<u8> {
    let mut out = vec![0u8; 2048];
    let Action::Send { len, .. } = d.encapsulate(&ip_packet(src, dst, 64), &mut out, now) else {
        panic!("initiation")
    };
    out[..len].to_vec()
}

/// `a` takes the cookie `reply` at `now`; returns its retry (with mac2) at
/// `later`.
fn retry_with_cookie(a: &mut Device, reply: &[u8], now: Instant, later: Instant) -> Vec<u8> {
    let mut out = vec![0u8; 2048];
    assert_eq!(
        a.decapsulate(B_EP.parse().unwrap(), reply, &mut out, now),
        Action::None
    );
    a.handle_timeout(later);
    let (_, len) = a.poll_transmit(&mut out, later).expect("retry");
    out[..len].to_vec()
}

impl Pair {
    fn new() -> Self {
        let now = Instant::now();
        let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
        let a = device(&ka, &kb, [100, 64, 0, 2], Some(B_EP), now);
        let b = device(&kb, &ka, [100, 64, 0, 1], None, now);
        Pair { a, b, now }
    }

    /// Delivers `wire` from A to B (from `from`), then shuttles every reply
    /// and queued datagram back and forth. Returns packets delivered to TUNs.
    fn run(
        &mut self,
        mut from_a: Vec<(SocketAddr, Vec<u8>)>,
        a_src: &str,
    ) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let (mut at_a, mut at_b) = (Vec::new(), Vec::new());
        let mut from_b: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        let mut out = vec![0u8; 2048];
        for _ in 0..20 {
            for (_, dg) in from_a.drain(..) {
                match self
                    .b
                    .decapsulate(a_src.parse().unwrap(), &dg, &mut out, self.now)
                {
                    Action::Send { len, .. } => {
                        from_b.push((a_src.parse().unwrap(), out[..len].to_vec()))
                    }
                    Action::Deliver(r) => at_b.push(out[r].to_vec()),
                    Action::None => {}
                }
            }
            while let Some((to, len)) = self.b.poll_transmit(&mut out, self.now) {
                from_b.push((to, out[..len].to_vec()));
            }
            for (_, dg) in from_b.drain(..) {
                match self
                    .a
                    .decapsulate(B_EP.parse().unwrap(), &dg, &mut out, self.now)
                {
                    Action::Send { len, to } => from_a.push((to, out[..len].to_vec())),
                    Action::Deliver(r) => at_a.push(out[r].to_vec()),
                    Action::None => {}
                }
            }
            while let Some((to, len)) = self.a.poll_transmit(&mut out, self.now) {
                from_a.push((to, out[..len].to_vec()));
            }
            if from_a.is_empty() && from_b.is_empty() {
                break;
            }
        }
        (at_a, at_b)
    }

    fn send_a(&mut self, packet: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = vec![0u8; 2048];
        match self.a.encapsulate(packet, &mut out, self.now) {
            Action::Send { to, len } => vec![(to, out[..len].to_vec())],
            _ => vec![],
        }
    }
}

#[test]
fn first_packet_triggers_handshake_and_arrives() {
    let mut p = Pair::new();
    let pkt = ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100);
    let first = p.send_a(&pkt);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1.len(), 148, "an initiation goes out first");
    let (_, at_b) = p.run(first, A_EP);
    assert_eq!(
        at_b,
        vec![pkt.clone()],
        "queued packet delivered after the handshake"
    );
    // B answers over the new session and learned A's endpoint from the handshake.
    let back = ip_packet([100, 64, 0, 2], [100, 64, 0, 1], 60);
    let mut out = vec![0u8; 2048];
    let Action::Send { to, len } = p.b.encapsulate(&back, &mut out, p.now) else {
        panic!("B has a session")
    };
    assert_eq!(to, A_EP.parse().unwrap());
    let wire = out[..len].to_vec();
    let Action::Deliver(r) =
        p.a.decapsulate(B_EP.parse().unwrap(), &wire, &mut out, p.now)
    else {
        panic!("A decrypts B's reply")
    };
    assert_eq!(&out[r], &back[..]);
    assert_eq!(p.a.peers().next().map(|i| i.stats.handshakes), Some(1));
    assert_eq!(p.b.peers().next().map(|i| i.stats.handshakes), Some(1));
}

#[test]
fn replays_forgeries_and_spoofed_sources_are_dropped() {
    let mut p = Pair::new();
    let pkt = ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100);
    let first = p.send_a(&pkt);
    p.run(first, A_EP);
    let data = p.send_a(&pkt);
    let (_, at_b) = p.run(data.clone(), A_EP);
    assert_eq!(at_b.len(), 1);
    let (_, again) = p.run(data.clone(), A_EP);
    assert!(again.is_empty());
    assert_eq!(p.b.counters().dropped(DropReason::Replay), 1);
    let mut forged = data[0].1.clone();
    forged[40] ^= 0x80;
    forged[8] = forged[8].wrapping_add(1); // fresh counter, bad tag
    p.run(vec![(data[0].0, forged)], A_EP);
    assert_eq!(p.b.counters().dropped(DropReason::Decrypt), 1);
    // A packet whose inner source is not A's allowed IP is refused by B.
    let spoof = ip_packet([100, 64, 0, 77], [100, 64, 0, 2], 80);
    let d = p.send_a(&spoof);
    let (_, at_b) = p.run(d, A_EP);
    assert!(at_b.is_empty());
    assert_eq!(p.b.counters().dropped(DropReason::SourceNotAllowed), 1);
    // A confined peer (a federated network's member) reaches B's own
    // address and nothing behind it.
    let a_key = p.b.peers().next().expect("B has A as a peer").public_key;
    assert!(p.b.confine_peer(&a_key, Some([100, 64, 0, 2].into())));
    let d = p.send_a(&pkt);
    let (_, at_b) = p.run(d, A_EP);
    assert_eq!(at_b.len(), 1, "to B itself: delivered");
    // (A, misconfigured or hostile, routes B's whole range to B.)
    let b_key = p.a.peers().next().expect("A has B as a peer").public_key;
    let mut wide = p.a.peer_config(&b_key).expect("B's config");
    wide.allowed_ips = vec![IpNet::new(IpAddr::from([100, 64, 0, 0]), 24).unwrap()];
    p.a.upsert_peer(wide);
    let behind = ip_packet([100, 64, 0, 1], [100, 64, 0, 9], 80);
    let d = p.send_a(&behind);
    let (_, at_b) = p.run(d, A_EP);
    assert!(at_b.is_empty());
    assert_eq!(p.b.counters().dropped(DropReason::NotExposed), 1);
    // Garbage and replayed initiations.
    let mut out = vec![0u8; 2048];
    assert_eq!(
        p.b.decapsulate(A_EP.parse().unwrap(), &[4, 0, 0, 0, 1], &mut out, p.now),
        Action::None
    );
    assert_eq!(p.b.counters().dropped(DropReason::Malformed), 1);
}

#[test]
fn replayed_initiation_is_rejected_by_timestamp() {
    let mut p = Pair::new();
    let first = p.send_a(&ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100));
    let init = first[0].1.clone();
    p.run(first, A_EP);
    p.now += Duration::from_secs(1);
    p.run(vec![("0.0.0.0:0".parse().unwrap(), init)], A_EP);
    assert_eq!(p.b.counters().dropped(DropReason::StaleTimestamp), 1);
}

#[test]
fn peer_roams_to_the_source_of_authenticated_packets() {
    let mut p = Pair::new();
    let pkt = ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100);
    let first = p.send_a(&pkt);
    p.run(first, A_EP);
    let data = p.send_a(&pkt);
    p.run(data, "198.18.5.5:40000");
    assert_eq!(
        p.b.peers().next().and_then(|i| i.endpoint),
        Some("198.18.5.5:40000".parse().unwrap())
    );
    // An unauthenticated datagram from elsewhere does not move the endpoint.
    let mut out = vec![0u8; 2048];
    p.b.decapsulate(
        "198.18.6.6:1".parse().unwrap(),
        &[
            4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0,
        ],
        &mut out,
        p.now,
    );
    assert_eq!(
        p.b.peers().next().and_then(|i| i.endpoint),
        Some("198.18.5.5:40000".parse().unwrap())
    );
}

#[test]
fn unanswered_initiation_is_retried_then_abandoned() {
    let mut p = Pair::new();
    assert_eq!(
        p.send_a(&ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100))
            .len(),
        1
    );
    let mut out = vec![0u8; 2048];
    let mut initiations = 1;
    for _ in 0..(120 * 10) {
        p.now += Duration::from_millis(100);
        p.a.handle_timeout(p.now);
        while let Some((_, len)) = p.a.poll_transmit(&mut out, p.now) {
            assert_eq!(len, 148);
            initiations += 1;
        }
    }
    // One every REKEY_TIMEOUT (5 s) for REKEY_ATTEMPT_TIME (90 s), then stop.
    assert!(
        (17..=20).contains(&initiations),
        "{initiations} initiations"
    );
}

#[test]
fn under_load_initiations_need_a_cookie() {
    let now = Instant::now();
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let mut a = device(&ka, &kb, [100, 64, 0, 2], Some(B_EP), now);
    let mut b = device_with_limit(&kb, &ka, [100, 64, 0, 1], None, now, 0);
    let mut out = vec![0u8; 2048];
    let init = initiation(&mut a, [100, 64, 0, 1], [100, 64, 0, 2], now);
    let Action::Send { len, .. } = b.decapsulate(A_EP.parse().unwrap(), &init, &mut out, now)
    else {
        panic!("cookie")
    };
    assert_eq!(len, 64, "a cookie reply, no handshake work");
    // The retry carries mac2 and is answered with a response.
    let later = now + Duration::from_secs(6);
    let retry = retry_with_cookie(&mut a, &out[..len], now, later);
    match b.decapsulate(A_EP.parse().unwrap(), &retry, &mut out, later) {
        Action::Send { len, .. } => assert_eq!(len, 92),
        other => panic!("expected a response, got {other:?}"),
    }
    assert_eq!(b.counters().cookie_replies, 1);
}

#[test]
fn small_output_buffer_does_not_hang_poll_transmit() {
    // Regression (found by the decapsulate fuzz target): a handshake due and
    // an `out` too small for an initiation used to spin forever.
    let now = Instant::now();
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let mut a = device(&ka, &kb, [100, 64, 0, 2], Some(B_EP), now);
    let mut config = a.peer_config(&kb.public_key()).unwrap();
    config.persistent_keepalive = Some(Duration::from_secs(25));
    a.upsert_peer(config);
    a.handle_timeout(now);
    assert_eq!(a.poll_transmit(&mut [0u8; 100], now), None);
    assert_eq!(a.counters().dropped(DropReason::TooBig), 1);
}

#[test]
fn idle_peers_do_not_ping_pong_keepalives() {
    // Regression (review): keepalives used to be answered with keepalives,
    // so two idle peers exchanged one every 10 s forever.
    let mut p = Pair::new();
    let first = p.send_a(&ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100));
    p.run(first, A_EP);
    p.now += Duration::from_millis(1);
    let data = p.send_a(&ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100));
    p.run(data, A_EP);
    let mut out = vec![0u8; 2048];
    let mut sent = 0;
    for _ in 0..600 {
        p.now += Duration::from_millis(100);
        p.a.handle_timeout(p.now);
        p.b.handle_timeout(p.now);
        let mut from_a = Vec::new();
        while let Some((to, len)) = p.a.poll_transmit(&mut out, p.now) {
            from_a.push((to, out[..len].to_vec()));
        }
        sent += from_a.len();
        let mut from_b = Vec::new();
        for (_, dg) in &from_a {
            p.b.decapsulate(A_EP.parse().unwrap(), dg, &mut out, p.now);
        }
        while let Some((to, len)) = p.b.poll_transmit(&mut out, p.now) {
            from_b.push((to, out[..len].to_vec()));
        }
        sent += from_b.len();
        for (_, dg) in &from_b {
            p.a.decapsulate(B_EP.parse().unwrap(), dg, &mut out, p.now);
        }
    }
    // B owes one keepalive for A's data packet (after 10 s); then silence.
    assert_eq!(sent, 1, "datagrams between idle peers in 60 s");
}

#[test]
fn forged_response_does_not_cancel_the_handshake() {
    let mut p = Pair::new();
    let first = p.send_a(&ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100));
    let init = &first[0].1;
    // A response to A's index with a valid mac1 (A's public key is public)
    // but garbage where the Noise message goes.
    let mut forged = [0u8; 92];
    forged[0] = 2;
    forged[4..8].copy_from_slice(&[7, 7, 7, 7]);
    forged[8..12].copy_from_slice(&init[4..8]);
    forged[12..60].fill(0x42);
    let mac1_key = netstack::crypto::hash(b"mac1----", &p.a.public_key().0);
    let mac1 = netstack::crypto::mac(&mac1_key, &forged[..60]);
    forged[60..76].copy_from_slice(&mac1);
    let mut out = vec![0u8; 2048];
    assert_eq!(
        p.a.decapsulate(B_EP.parse().unwrap(), &forged, &mut out, p.now),
        Action::None
    );
    assert_eq!(p.a.counters().dropped(DropReason::Handshake), 1);
    // The retry still fires after REKEY_TIMEOUT and the handshake completes.
    p.now += Duration::from_millis(5100);
    p.a.handle_timeout(p.now);
    let (to, len) =
        p.a.poll_transmit(&mut out, p.now)
            .expect("retry after a forged response");
    assert_eq!(len, 148);
    let (_, at_b) = p.run(vec![(to, out[..len].to_vec())], A_EP);
    assert_eq!(
        at_b.len(),
        1,
        "the queued packet arrives after the retried handshake"
    );
}

#[test]
fn moving_an_allowed_ip_removes_it_from_the_old_peer() {
    let now = Instant::now();
    let (ka, kb, kc) = (
        PrivateKey::generate(),
        PrivateKey::generate(),
        PrivateKey::generate(),
    );
    let mut a = device(&ka, &kb, [100, 64, 0, 2], Some(B_EP), now);
    let net = IpNet::new(IpAddr::from([100, 64, 0, 2]), 32).unwrap();
    a.upsert_peer(PeerConfig {
        public_key: kc.public_key(),
        preshared_key: None,
        endpoint: None,
        allowed_ips: vec![net],
        persistent_keepalive: None,
    });
    assert!(a
        .peer_config(&kb.public_key())
        .unwrap()
        .allowed_ips
        .is_empty());
    // Re-applying B's (now empty) config does not take the network back.
    let b_config = a.peer_config(&kb.public_key()).unwrap();
    a.upsert_peer(b_config);
    assert_eq!(
        a.peer_config(&kc.public_key()).unwrap().allowed_ips,
        vec![net]
    );
}

/// A device that has no peers yet (B before a member's record arrived).
fn lonely(key: &PrivateKey, now: Instant) -> Device {
    Device::new(
        DeviceConfig {
            private_key: key.clone(),
            mtu: 1420,
            handshake_load_limit: 1000,
        },
        now,
        Duration::from_secs(1_700_000_000),
    )
}

fn a_as_peer(ka: &PrivateKey) -> PeerConfig {
    PeerConfig {
        public_key: ka.public_key(),
        preshared_key: Some([9; 32]),
        endpoint: None,
        allowed_ips: vec![IpNet::new(IpAddr::from([100, 64, 0, 1]), 32).unwrap()],
        persistent_keepalive: None,
    }
}

#[test]
fn an_initiation_that_arrives_just_before_its_peer_is_answered_when_the_peer_is_added() {
    let now = Instant::now();
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let a = device(&ka, &kb, [100, 64, 0, 2], Some(B_EP), now);
    let b = lonely(&kb, now);
    let mut p = Pair { a, b, now };
    let pkt = ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100);
    let first = p.send_a(&pkt);
    let (_, at_b) = p.run(first, A_EP);
    assert!(at_b.is_empty(), "B does not know A yet");
    assert_eq!(p.b.counters().dropped(DropReason::UnknownPeer), 1);
    // A's record arrives: B adds A and answers the kept initiation at once,
    // well before A's own retry (REKEY_TIMEOUT).
    p.now += Duration::from_millis(300);
    p.b.upsert_peer(a_as_peer(&ka));
    let (_, at_b) = p.run(vec![], A_EP);
    assert_eq!(
        at_b,
        vec![pkt],
        "A's queued packet arrives over the session"
    );
    assert_eq!(p.b.peers().next().map(|i| i.stats.handshakes), Some(1));
}

#[test]
fn a_kept_initiation_expires() {
    let now = Instant::now();
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let a = device(&ka, &kb, [100, 64, 0, 2], Some(B_EP), now);
    let b = lonely(&kb, now);
    let mut p = Pair { a, b, now };
    let first = p.send_a(&ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100));
    p.run(first, A_EP);
    p.now += Duration::from_secs(6);
    p.b.upsert_peer(a_as_peer(&ka));
    let mut out = vec![0u8; 2048];
    assert_eq!(p.b.poll_transmit(&mut out, p.now), None);
}

/// Runs A's timers only when `poll_timeout` asks, for `span`; returns how
/// many times they ran and the datagrams A sent.
fn drive_by_deadline(a: &mut Device, now: &mut Instant, span: Duration) -> (usize, Vec<usize>) {
    let end = *now + span;
    let (mut wakeups, mut sent) = (0, Vec::new());
    let mut out = vec![0u8; 2048];
    while let Some(due) = a.poll_timeout() {
        if due > end {
            break;
        }
        *now = due.max(*now);
        a.handle_timeout(*now);
        wakeups += 1;
        while let Some((_, len)) = a.poll_transmit(&mut out, *now) {
            sent.push(len);
        }
        assert!(wakeups < 10_000, "the timers spin");
    }
    *now = end;
    (wakeups, sent)
}

#[test]
fn timers_sleep_until_their_next_deadline_and_still_fire() {
    // Retries of an unanswered initiation, driven only by poll_timeout: the
    // same retries as at a fixed 100 ms tick, with a fraction of the wakeups.
    let mut p = Pair::new();
    p.send_a(&ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100));
    let mut now = p.now;
    let (wakeups, sent) = drive_by_deadline(&mut p.a, &mut now, Duration::from_secs(120));
    assert!((16..=19).contains(&sent.len()), "{} retries", sent.len());
    assert!(sent.iter().all(|l| *l == 148));
    assert!(
        wakeups <= 2 * sent.len() + 4,
        "{wakeups} wakeups for {} retries",
        sent.len()
    );
    assert_eq!(
        p.a.poll_timeout(),
        None,
        "nothing left to do after giving up"
    );

    // A persistent keepalive every 25 s on an idle tunnel.
    let mut p = Pair::new();
    let first = p.send_a(&ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100));
    p.run(first, A_EP);
    let mut out = vec![0u8; 2048];
    let back = ip_packet([100, 64, 0, 2], [100, 64, 0, 1], 60);
    let Action::Send { len, .. } = p.b.encapsulate(&back, &mut out, p.now) else {
        panic!("B has a session")
    };
    let reply = out[..len].to_vec();
    assert!(matches!(
        p.a.decapsulate(B_EP.parse().unwrap(), &reply, &mut out, p.now),
        Action::Deliver(_)
    ));
    let mut config = p.a.peer_config(&p.b.public_key()).unwrap();
    config.persistent_keepalive = Some(Duration::from_secs(25));
    p.a.upsert_peer(config);
    let mut now = p.now;
    let (wakeups, sent) = drive_by_deadline(&mut p.a, &mut now, Duration::from_secs(101));
    // B's data at 0 s is owed a keepalive at 10 s; then one every 25 s:
    // 35, 60, 85 s. The session (101 s old) needs no rekey yet.
    assert_eq!(sent.len(), 4, "keepalives: {sent:?}");
    assert!(sent.iter().all(|l| *l == 32), "empty transport messages");
    assert!(wakeups <= 12, "{wakeups} wakeups for 4 keepalives");
}

#[test]
fn endpoints_are_indexed_and_handshakes_reported() {
    let mut p = Pair::new();
    let first = p.send_a(&ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100));
    p.run(first, A_EP);
    assert_eq!(p.a.poll_handshake(), Some(p.b.public_key()));
    assert_eq!(p.b.poll_handshake(), Some(p.a.public_key()));
    assert_eq!(p.a.poll_handshake(), None);
    assert_eq!(p.b.peer_at(A_EP.parse().unwrap()), Some(p.a.public_key()));
    let data = p.send_a(&ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100));
    p.run(data, "198.18.5.5:40000");
    assert_eq!(p.b.peer_at(A_EP.parse().unwrap()), None, "roamed away");
    assert_eq!(
        p.b.peer_at("198.18.5.5:40000".parse().unwrap()),
        Some(p.a.public_key())
    );
    assert!(p.b.remove_peer(&p.a.public_key()));
    assert_eq!(p.b.peer_at("198.18.5.5:40000".parse().unwrap()), None);
}

#[test]
fn a_raised_mtu_pads_like_wireguard() {
    let mut p = Pair::new();
    let first = p.send_a(&ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100));
    p.run(first, A_EP);
    p.a.set_mtu(1300);
    let big = ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 1401);
    // Above the MTU nothing is padded; with the MTU raised, up to 16 bytes.
    assert_eq!(p.send_a(&big)[0].1.len(), 1401 + 32);
    p.a.set_mtu(1420);
    assert_eq!(p.a.mtu(), 1420);
    assert_eq!(p.send_a(&big)[0].1.len(), 1408 + 32);
}

#[test]
fn a_new_endpoint_gets_the_unanswered_initiation_at_once() {
    let mut p = Pair::new();
    let wrong: SocketAddr = "198.18.7.7:51820".parse().unwrap();
    let kb = p.b.public_key();
    assert!(p.a.set_peer_endpoint(&kb, wrong));
    let first = p.send_a(&ip_packet([100, 64, 0, 1], [100, 64, 0, 2], 100));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, wrong, "the initiation went to the old endpoint");
    let mut out = vec![0u8; 2048];
    assert_eq!(p.a.poll_transmit(&mut out, p.now), None);
    // The control plane learns the right endpoint: no 5 s wait.
    assert!(p.a.set_peer_endpoint(&kb, B_EP.parse().unwrap()));
    let (to, len) =
        p.a.poll_transmit(&mut out, p.now)
            .expect("a new initiation at once");
    assert_eq!((to, len), (B_EP.parse().unwrap(), 148));
    let (_, at_b) = p.run(vec![(to, out[..len].to_vec())], A_EP);
    assert_eq!(
        at_b.len(),
        1,
        "the queued packet arrives over the new session"
    );
    // With a session up, a new endpoint changes nothing else (roaming).
    assert!(p.a.set_peer_endpoint(&kb, wrong));
    assert_eq!(p.a.poll_transmit(&mut out, p.now), None);
}

#[test]
fn a_keepalive_without_an_endpoint_does_not_wake_the_timers() {
    let now = Instant::now();
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    // B does not know A's endpoint: its keepalive cannot leave.
    let mut b = device(&kb, &ka, [100, 64, 0, 1], None, now);
    let mut config = b.peer_config(&ka.public_key()).unwrap();
    config.persistent_keepalive = Some(Duration::from_secs(25));
    b.upsert_peer(config);
    b.handle_timeout(now);
    let mut out = vec![0u8; 2048];
    while b.poll_transmit(&mut out, now).is_some() {}
    b.handle_timeout(now + Duration::from_millis(100));
    assert_eq!(
        b.poll_timeout(),
        None,
        "a 10 Hz loop for a keepalive that cannot leave"
    );
}

#[test]
fn one_source_past_its_share_must_show_a_cookie_before_any_diffie_hellman() {
    // Regression (hostile-load bench): well-formed initiations from unknown
    // keys, all from one address, each cost a Diffie-Hellman until the whole
    // device was under load (1,000 a second here, 200 in the agent).
    let now = Instant::now();
    let (kb, kc) = (PrivateKey::generate(), PrivateKey::generate());
    let stranger = PrivateKey::generate();
    let mut b = device(&kb, &kc, [100, 64, 0, 3], None, now);
    let mut c = device(&stranger, &kb, [100, 64, 0, 2], Some(B_EP), now);
    let mut out = vec![0u8; 2048];
    let init = initiation(&mut c, [100, 64, 0, 3], [100, 64, 0, 2], now);
    let from: SocketAddr = "198.18.0.9:51820".parse().unwrap();
    let mut cookies = 0;
    for _ in 0..100 {
        if let Action::Send { len, .. } = b.decapsulate(from, &init, &mut out, now) {
            assert_eq!(len, 64, "only cookie replies go back");
            cookies += 1;
        }
    }
    let unknown = b.counters().dropped(DropReason::UnknownPeer);
    assert_eq!(unknown, 40, "the source's share reaches the handshake");
    assert_eq!(cookies, 60, "the rest get cookie replies");
    // Another address has a share of its own.
    let other: SocketAddr = "198.18.0.10:51820".parse().unwrap();
    assert_eq!(b.decapsulate(other, &init, &mut out, now), Action::None);
    assert_eq!(b.counters().dropped(DropReason::UnknownPeer), 41);
}

#[test]
fn a_peer_past_its_share_gets_through_with_the_cookie() {
    // The other half of the share: a source that spent it is not shut out;
    // its retry with the cookie is answered (not under load all along).
    let now = Instant::now();
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let mut a = device(&ka, &kb, [100, 64, 0, 2], Some(B_EP), now);
    let mut b = device(&kb, &ka, [100, 64, 0, 1], None, now);
    let from: SocketAddr = A_EP.parse().unwrap();
    let mut out = vec![0u8; 2048];
    let init = initiation(&mut a, [100, 64, 0, 1], [100, 64, 0, 2], now);
    // The share: the first is answered, the 39 copies after it are stale.
    let spend = |b: &mut Device, at: Instant, out: &mut [u8]| {
        (0..40)
            .filter(|_| {
                matches!(
                    b.decapsulate(from, &init, out, at),
                    Action::Send { len: 92, .. }
                )
            })
            .count()
    };
    assert_eq!(spend(&mut b, now, &mut out), 1, "one response");
    let Action::Send { len: 64, .. } = b.decapsulate(from, &init, &mut out, now) else {
        panic!("past the share: a cookie reply")
    };
    let later = now + Duration::from_secs(6);
    let retry = retry_with_cookie(&mut a, &out[..64], now, later);
    assert_eq!(spend(&mut b, later, &mut out), 0, "the share spent again");
    match b.decapsulate(from, &retry, &mut out, later) {
        Action::Send { len, .. } => assert_eq!(len, 92, "the retry with mac2 is answered"),
        other => panic!("expected a response, got {other:?}"),
    }
}
