//! One device with one configured peer (fixed keys), driven by the input:
//! arbitrary datagrams from arbitrary source addresses, handshake-shaped
//! messages with a valid mac1 (so they reach the Noise and cookie code),
//! packets to encapsulate, timer ticks with a monotonic clock, peer
//! reconfiguration, and `poll_transmit` with normal and undersized buffers.
//! Nothing may panic or hang, and every emitted datagram must parse.

#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use netstack::wire;
use netstack::{Device, DeviceConfig, IpNet, PeerConfig, PrivateKey};
use netstack_fuzz::*;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const MTUS: [usize; 6] = [1420, 1280, 0, 1, 9000, 65535];

fn buf_len(u: &mut Unstructured<'_>) -> usize {
    let b: u8 = u.arbitrary().unwrap_or(0);
    if b < 0xe0 {
        BUF
    } else {
        usize::from(u.arbitrary::<u8>().unwrap_or(0))
    }
}

fn peer_config(u: &mut Unstructured<'_>) -> PeerConfig {
    let flags: u8 = u.arbitrary().unwrap_or(0);
    PeerConfig {
        public_key: PrivateKey(KEY_A).public_key(),
        preshared_key: (flags & 1 == 0).then_some(PSK),
        endpoint: (flags & 2 == 0).then(a_ep),
        allowed_ips: vec![
            IpNet::new(IpAddr::from(A_V4), 32).expect("prefix"),
            IpNet::new(IpAddr::from(A_V6), if flags & 4 == 0 { 128 } else { 0 }).expect("prefix"),
        ],
        persistent_keepalive: (flags & 8 != 0).then(|| Duration::from_secs(u64::from(flags >> 4))),
    }
}

struct State {
    d: Device,
    now: Instant,
    out: Vec<u8>,
    /// Sender indices of initiations the device sent (valid receivers for
    /// responses and cookie replies).
    ours: Vec<u32>,
    rx: u64,
}

impl State {
    fn note(&mut self, dg: Option<Vec<u8>>) {
        if let Some(i) = dg.as_deref().and_then(sender_index) {
            if self.ours.len() < 16 {
                self.ours.push(i);
            } else {
                self.ours[i as usize % 16] = i;
            }
        }
    }

    fn decapsulate(&mut self, from: std::net::SocketAddr, dg: &[u8], len: usize) {
        let ep = endpoint(&self.d);
        let unauth = unauth_drops(&self.d);
        let a = self.d.decapsulate(from, dg, &mut self.out[..len], self.now);
        let reply = check_action(&a, &self.out[..len]);
        self.rx += 1;
        assert_eq!(self.d.counters().rx_datagrams, self.rx);
        // Without the peer's private key nothing fed here can authenticate
        // (an initiation needs it for `ss`, a response for `se`), so no
        // datagram may move the endpoint.
        assert_eq!(endpoint(&self.d), ep, "unauthenticated datagram moved the endpoint");
        assert!(unauth_drops(&self.d) >= unauth);
        assert!(
            !matches!(a, netstack::Action::Deliver(_)),
            "delivered a packet without any session"
        );
        self.note(reply);
    }

    fn poll(&mut self, len: usize) {
        for _ in 0..64 {
            let t = self.d.poll_transmit(&mut self.out[..len], self.now);
            match check_transmit(t, &self.out[..len]) {
                Some(dg) => self.note(Some(dg)),
                None => break,
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let setup: u8 = u.arbitrary().unwrap_or(0);
    let now = Instant::now();
    let mut d = Device::new(
        DeviceConfig {
            private_key: PrivateKey(KEY_B),
            mtu: MTUS[usize::from(setup) % MTUS.len()],
            handshake_load_limit: if setup & 0x80 != 0 { 0 } else { 1000 },
        },
        now,
        WALL,
    );
    d.upsert_peer(peer_config(&mut u));
    let own = d.public_key();
    let mut s = State {
        d,
        now,
        out: vec![0u8; BUF],
        ours: Vec::new(),
        rx: 0,
    };

    for _ in 0..256 {
        if u.is_empty() {
            break;
        }
        let op: u8 = u.arbitrary().unwrap_or(0);
        match op % 8 {
            // Arbitrary bytes from an arbitrary address.
            0 | 1 => {
                let from = addr(&mut u);
                let len = buf_len(&mut u);
                let n = usize::from(u.arbitrary::<u16>().unwrap_or(0)) % 1600;
                let dg = u.bytes(n.min(u.len())).unwrap_or_default().to_vec();
                s.decapsulate(from, &dg, len);
            }
            // A message of a valid type and length, body from the input,
            // mac1 valid for us, receiver index one of ours if we have any.
            2 | 3 => {
                let from = addr(&mut u);
                let kind: u8 = u.arbitrary().unwrap_or(0);
                let len = match kind % 4 {
                    0 => wire::INITIATION_LEN,
                    1 => wire::RESPONSE_LEN,
                    2 => wire::COOKIE_REPLY_LEN,
                    _ => wire::DATA_MIN_LEN + usize::from(u.arbitrary::<u8>().unwrap_or(0)),
                };
                let mut dg = vec![0u8; len];
                let body = u.bytes((len - 4).min(u.len())).unwrap_or_default();
                dg[4..4 + body.len()].copy_from_slice(body);
                dg[0] = kind % 4 + 1;
                if kind & 0x10 == 0 && !s.ours.is_empty() {
                    let i = s.ours[usize::from(kind >> 5) % s.ours.len()];
                    let at = if dg[0] == wire::TYPE_RESPONSE { 8 } else { 4 };
                    dg[at..at + 4].copy_from_slice(&i.to_le_bytes());
                }
                if kind & 0x08 == 0 {
                    stamp_mac1(&mut dg, &own);
                }
                let blen = buf_len(&mut u);
                s.decapsulate(from, &dg, blen);
            }
            // A packet from the TUN side.
            4 => {
                let kind: u8 = u.arbitrary().unwrap_or(0);
                let n = usize::from(u.arbitrary::<u16>().unwrap_or(0)) % 1600;
                let payload = u.bytes(n.min(u.len())).unwrap_or_default();
                let packet = match kind % 3 {
                    0 => ip_packet(B_V4.into(), A_V4.into(), payload),
                    1 => ip_packet(B_V6.into(), A_V6.into(), payload),
                    _ => payload.to_vec(),
                };
                let len = buf_len(&mut u);
                let a = s.d.encapsulate(&packet, &mut s.out[..len], s.now);
                let dg = check_action(&a, &s.out[..len]);
                s.note(dg);
            }
            // Time passes.
            5 => {
                s.now += step(&mut u);
                s.d.handle_timeout(s.now);
            }
            6 => {
                let len = buf_len(&mut u);
                s.poll(len);
            }
            // Reconfigure: update, or remove and re-add, the peer.
            _ => {
                let c = peer_config(&mut u);
                if op & 0x80 != 0 {
                    assert!(s.d.remove_peer(&c.public_key));
                    assert_eq!(s.d.peers().count(), 0);
                    s.ours.clear();
                }
                s.d.upsert_peer(c);
                assert_eq!(s.d.peers().count(), 1);
            }
        }
    }
    s.poll(BUF);
});
