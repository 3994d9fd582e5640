//! Helpers shared by netstack's integration tests, benchmarks and the
//! instruction-count example: packets, and a pair of devices with a
//! session.
#![allow(dead_code)]

use netstack::{Action, Device, DeviceConfig, IpNet, PeerConfig, PrivateKey};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// An IPv4 packet of `len` bytes from `src` to `dst` with a patterned payload.
pub fn ip_packet(src: [u8; 4], dst: [u8; 4], len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

pub const MTU: usize = 1420;
pub const A_IP: [u8; 4] = [100, 64, 0, 1];
pub const B_IP: [u8; 4] = [100, 64, 0, 2];

pub fn a_ep() -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 1], 51820))
}

pub fn b_ep() -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 2], 51820))
}

pub fn device(
    key: &PrivateKey,
    peer: &PrivateKey,
    peer_ip: [u8; 4],
    ep: Option<SocketAddr>,
) -> Device {
    let mut d = Device::new(
        DeviceConfig {
            private_key: key.clone(),
            mtu: MTU,
            handshake_load_limit: u32::MAX,
        },
        Instant::now(),
        Duration::from_secs(1_700_000_000),
    );
    d.upsert_peer(PeerConfig {
        public_key: peer.public_key(),
        preshared_key: Some([9; 32]),
        endpoint: ep,
        allowed_ips: vec![IpNet::new(IpAddr::from(peer_ip), 32).expect("prefix")],
        persistent_keepalive: None,
    });
    d
}

/// Two fresh devices: A (initiator, knows B's endpoint) and B.
pub fn fresh_pair(ka: &PrivateKey, kb: &PrivateKey) -> (Device, Device) {
    (
        device(ka, kb, B_IP, Some(b_ep())),
        device(kb, ka, A_IP, None),
    )
}

/// Initiation → response → the queued packet as confirmation. Returns the
/// number of packets B delivered (1 when the handshake completed).
pub fn handshake(
    a: &mut Device,
    b: &mut Device,
    first: &[u8],
    buf: &mut [u8],
    now: Instant,
) -> usize {
    let Action::Send { len, .. } = a.encapsulate(first, buf, now) else {
        return 0;
    };
    let init = buf[..len].to_vec();
    let Action::Send { len, .. } = b.decapsulate(a_ep(), &init, buf, now) else {
        return 0;
    };
    let resp = buf[..len].to_vec();
    if a.decapsulate(b_ep(), &resp, buf, now) != Action::None {
        return 0;
    }
    let mut delivered = 0;
    while let Some((_, len)) = a.poll_transmit(buf, now) {
        let dg = buf[..len].to_vec();
        if let Action::Deliver(_) = b.decapsulate(a_ep(), &dg, buf, now) {
            delivered += 1;
        }
    }
    delivered
}

/// A pair with a confirmed session in both directions.
pub fn established() -> (Device, Device, Instant) {
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let (mut a, mut b) = fresh_pair(&ka, &kb);
    let now = Instant::now();
    let mut buf = vec![0u8; 2048];
    let first = ip_packet(A_IP, B_IP, 100);
    assert_eq!(
        handshake(&mut a, &mut b, &first, &mut buf, now),
        1,
        "handshake"
    );
    (a, b, now)
}
