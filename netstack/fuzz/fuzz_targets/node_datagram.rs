//! A mesh node (`netstack::Node`, relaying on, two members) fed a sequence
//! of datagrams from arbitrary sources: WireGuard messages, endpoint
//! echoes, relay envelopes naming members or strangers, garbage. It never
//! panics, never answers or relays for a stranger, keeps its relay paths
//! within the members it knows, and its counters add up.

#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use netstack::relay::{self, key_id};
use netstack::{Action, DeviceConfig, IpNet, Node, PeerConfig, PrivateKey};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

fn member_at(i: u8) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, i], 51820))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let now = Instant::now();
    let (own, a, b) = (
        PrivateKey([1; 32]),
        PrivateKey([2; 32]),
        PrivateKey([3; 32]),
    );
    let mut node = Node::new(
        DeviceConfig {
            private_key: own,
            mtu: 1420,
            handshake_load_limit: 10,
        },
        true,
        now,
        Duration::from_secs(1_700_000_000),
    );
    node.set_members([a.public_key(), b.public_key()], now);
    for (i, k) in [(2u8, &a), (3u8, &b)] {
        node.device_mut().upsert_peer(PeerConfig {
            public_key: k.public_key(),
            preshared_key: None,
            endpoint: Some(member_at(i)),
            allowed_ips: vec![IpNet::new(IpAddr::from([100, 64, 0, i]), 32).unwrap()],
            persistent_keepalive: None,
        });
    }
    let mut out = vec![0u8; 2048];
    let mut t = now;
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        let from = match u.arbitrary::<u8>().unwrap_or(0) % 4 {
            0 => member_at(2),
            1 => member_at(3),
            _ => SocketAddr::from(([198, 18, 9, u.arbitrary().unwrap_or(0)], u.arbitrary().unwrap_or(0))),
        };
        let kind = u.arbitrary::<u8>().unwrap_or(0) % 4;
        let body: Vec<u8> = {
            let n = usize::from(u.arbitrary::<u16>().unwrap_or(0)) % 1600;
            u.bytes(n.min(u.len())).unwrap_or_default().to_vec()
        };
        // Envelopes about members or strangers, or raw bytes.
        let datagram = match kind {
            0 | 1 => {
                let who = if u.arbitrary::<bool>().unwrap_or(false) {
                    key_id(&a.public_key())
                } else {
                    u.arbitrary().unwrap_or_default()
                };
                let mut h = [0u8; relay::HEADER];
                relay::write_header(if kind == 0 { relay::TO } else { relay::FROM }, &who, &mut h);
                [h.to_vec(), body].concat()
            }
            _ => body,
        };
        t += Duration::from_millis(u64::from(u.arbitrary::<u8>().unwrap_or(0)));
        let before = node.counters();
        let action = node.handle_datagram(from, &datagram, &mut out, t);
        let after = node.counters();
        let stranger = from.ip() != member_at(2).ip() && from.ip() != member_at(3).ip();
        match action {
            Action::Send { to, len } => {
                assert!(len <= out.len());
                if stranger {
                    // Only a handshake answer (cookie reply) may go back to
                    // an address we do not know; never an echo or a relay.
                    assert_eq!(after.echo_answered, before.echo_answered, "echo for a stranger");
                    assert_eq!(after.relayed_bytes, before.relayed_bytes, "relayed for a stranger");
                    assert_eq!(to, from, "a stranger's datagram sent elsewhere");
                }
            }
            Action::Deliver(r) => assert!(r.end <= out.len()),
            Action::None => {}
        }
        while node.poll_transmit(&mut out, t).is_some() {}
        node.handle_timeout(t);
        while node.poll_event().is_some() {}
    }
});
