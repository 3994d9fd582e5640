//! Helpers shared by the fuzz targets: fixed keys, addresses drawn from the
//! input, mac1 stamping, a pair of devices with a completed handshake, and
//! the invariants every device output must satisfy.

use libfuzzer_sys::arbitrary::Unstructured;
use netstack::crypto::{hash, mac};
use netstack::device::{Action, Device, DeviceConfig, DropReason, PeerConfig};
use netstack::wire::{self, Message};
use netstack::{IpNet, PrivateKey, PublicKey};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Private key of device A (the initiator in the pair).
pub const KEY_A: [u8; 32] = [0x11; 32];
/// Private key of device B (the responder in the pair).
pub const KEY_B: [u8; 32] = [0x22; 32];
/// Preshared key of the pair.
pub const PSK: [u8; 32] = [0x09; 32];
/// A's overlay addresses (allowed IPs of A at B).
pub const A_V4: [u8; 4] = [100, 64, 0, 1];
/// B's overlay address (allowed IP of B at A).
pub const B_V4: [u8; 4] = [100, 64, 0, 2];
/// A's IPv6 overlay address.
pub const A_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// B's IPv6 overlay address.
pub const B_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// Wall clock handed to every device.
pub const WALL: Duration = Duration::from_secs(1_700_000_000);
/// A's UDP endpoint.
pub fn a_ep() -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 1], 51820))
}
/// B's UDP endpoint.
pub fn b_ep() -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 2], 51820))
}

/// The UDP endpoint of `side`.
pub fn ep(side: Side) -> SocketAddr {
    match side {
        Side::A => a_ep(),
        Side::B => b_ep(),
    }
}

/// Size of the output buffers the targets normally use.
pub const BUF: usize = 2048;

/// A socket address from the input: one tag byte (v4 / v6 / one of the real
/// endpoints), then the address bytes and a port.
pub fn addr(u: &mut Unstructured<'_>) -> SocketAddr {
    let tag: u8 = u.arbitrary().unwrap_or(0);
    match tag % 4 {
        0 => a_ep(),
        1 => b_ep(),
        2 => {
            let ip: [u8; 4] = u.arbitrary().unwrap_or_default();
            SocketAddr::from((Ipv4Addr::from(ip), u.arbitrary().unwrap_or(0)))
        }
        _ => {
            let ip: [u8; 16] = u.arbitrary().unwrap_or_default();
            SocketAddr::from((Ipv6Addr::from(ip), u.arbitrary().unwrap_or(0)))
        }
    }
}

/// A forward step of the clock, mostly small, sometimes past the protocol timers.
pub fn step(u: &mut Unstructured<'_>) -> Duration {
    let kind: u8 = u.arbitrary().unwrap_or(0);
    let n: u16 = u.arbitrary().unwrap_or(0);
    match kind % 4 {
        0 => Duration::from_millis(u64::from(n % 100)),
        1 => Duration::from_millis(u64::from(n)),
        2 => Duration::from_millis(u64::from(n) * 4),
        _ => Duration::from_secs(u64::from(n % 200)),
    }
}

/// Fills in a valid mac1 (keyed by `to`) in a handshake message, so mutated
/// initiations and responses get past the mac check into the Noise code.
pub fn stamp_mac1(msg: &mut [u8], to: &PublicKey) {
    let at = match msg.first() {
        Some(&wire::TYPE_INITIATION) if msg.len() == wire::INITIATION_LEN => {
            wire::INITIATION_MAC1_OFFSET
        }
        Some(&wire::TYPE_RESPONSE) if msg.len() == wire::RESPONSE_LEN => {
            wire::RESPONSE_MAC1_OFFSET
        }
        _ => return,
    };
    let m = mac(&hash(b"mac1----", &to.0), &msg[..at]);
    msg[at..at + 16].copy_from_slice(&m);
}

/// An IPv4 or IPv6 packet of about `len` bytes from `src` to `dst`, with a
/// correct total-length field and a payload taken from the input.
pub fn ip_packet(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = vec![0u8; 20];
            p[0] = 0x45;
            p[12..16].copy_from_slice(&s.octets());
            p[16..20].copy_from_slice(&d.octets());
            p.extend_from_slice(payload);
            let n = p.len().min(usize::from(u16::MAX)) as u16;
            p[2..4].copy_from_slice(&n.to_be_bytes());
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = vec![0u8; 40];
            p[0] = 0x60;
            p[8..24].copy_from_slice(&s.octets());
            p[24..40].copy_from_slice(&d.octets());
            p.extend_from_slice(payload);
            let n = payload.len().min(usize::from(u16::MAX)) as u16;
            p[4..6].copy_from_slice(&n.to_be_bytes());
            p
        }
        _ => payload.to_vec(),
    }
}

/// A device with fixed keys whose one peer is the other fixed key.
pub fn device(key: [u8; 32], peer: [u8; 32], mtu: usize, load_limit: u32, now: Instant) -> Device {
    let mut d = Device::new(
        DeviceConfig {
            private_key: PrivateKey(key),
            mtu,
            handshake_load_limit: load_limit,
        },
        now,
        WALL,
    );
    let (v4, v6, ep) = if key == KEY_A {
        (B_V4, B_V6, Some(b_ep()))
    } else {
        (A_V4, A_V6, None)
    };
    d.upsert_peer(PeerConfig {
        public_key: PrivateKey(peer).public_key(),
        preshared_key: Some(PSK),
        endpoint: ep,
        allowed_ips: vec![
            IpNet::new(IpAddr::from(v4), 32).expect("valid prefix"),
            IpNet::new(IpAddr::from(v6), 128).expect("valid prefix"),
        ],
        persistent_keepalive: None,
    });
    d
}

/// Drop reasons that only unauthenticated (or replayed) input can cause: a
/// datagram dropped for one of these must not move the peer's endpoint.
pub const UNAUTHENTICATED: &[DropReason] = &[
    DropReason::Malformed,
    DropReason::BadMac,
    DropReason::UnknownIndex,
    DropReason::UnknownPeer,
    DropReason::Handshake,
    DropReason::StaleTimestamp,
    DropReason::RateLimited,
    DropReason::Decrypt,
    DropReason::Replay,
    DropReason::Expired,
];

/// Sum of the drop counters in `UNAUTHENTICATED`.
pub fn unauth_drops(d: &Device) -> u64 {
    UNAUTHENTICATED
        .iter()
        .map(|r| d.counters().dropped(*r))
        .sum()
}

/// The first (only) peer's endpoint.
pub fn endpoint(d: &Device) -> Option<SocketAddr> {
    d.peers().next().and_then(|p| p.endpoint)
}

/// Checks an action returned by `encapsulate`/`decapsulate` against the
/// buffer it refers to; returns the datagram to send, if any.
pub fn check_action(action: &Action, out: &[u8]) -> Option<Vec<u8>> {
    match action {
        Action::Send { len, .. } => {
            assert!(*len <= out.len(), "Send past the buffer");
            let dg = &out[..*len];
            assert!(wire::parse(dg).is_ok(), "device emitted a malformed datagram");
            Some(dg.to_vec())
        }
        Action::Deliver(r) => {
            assert!(r.start <= r.end && r.end <= out.len(), "Deliver past the buffer");
            assert_eq!(r.start, wire::DATA_HEADER_LEN);
            assert!(r.len() >= 20, "delivered less than an IP header");
            None
        }
        Action::None => None,
    }
}

/// Checks a `poll_transmit` result against its buffer.
pub fn check_transmit(t: Option<(SocketAddr, usize)>, out: &[u8]) -> Option<Vec<u8>> {
    let (_, len) = t?;
    assert!(len <= out.len(), "poll_transmit past the buffer");
    let dg = &out[..len];
    assert!(wire::parse(dg).is_ok(), "device emitted a malformed datagram");
    Some(dg.to_vec())
}

/// Receiver index and counter of a transport datagram.
pub fn data_id(dg: &[u8]) -> Option<(u32, u64)> {
    match wire::parse(dg) {
        Ok(Message::Data(d)) => Some((d.receiver, d.counter)),
        _ => None,
    }
}

/// Sender index of a handshake message the device emitted.
pub fn sender_index(dg: &[u8]) -> Option<u32> {
    match wire::parse(dg) {
        Ok(Message::Initiation(m)) => Some(m.sender),
        Ok(Message::Response(m)) => Some(m.sender),
        _ => None,
    }
}

/// Which side of the pair.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    /// The initiator.
    A,
    /// The responder.
    B,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// A datagram seen on the wire, and the side it was sent to.
#[derive(Clone, Debug)]
pub struct Captured {
    /// Destination device.
    pub to: Side,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Two devices after a completed handshake, the datagrams they exchanged, and
/// oracles: what each transport counter decrypts to and what was delivered.
pub struct Pair {
    /// Initiator.
    pub a: Device,
    /// Responder.
    pub b: Device,
    /// Current time.
    pub now: Instant,
    /// Captured datagrams (delivered or not), for replay and mutation.
    pub pool: Vec<Captured>,
    /// (destination, receiver index, counter) → padded plaintext we encrypted.
    pub plain: HashMap<(bool, u32, u64), Vec<u8>>,
    /// (destination, receiver index, counter) already delivered.
    pub delivered: HashSet<(bool, u32, u64)>,
    /// Number of `decapsulate` calls per side, to check `rx_datagrams`.
    pub rx: [u64; 2],
    mtu: usize,
    buf: Vec<u8>,
}

/// Most datagrams kept in the pool.
pub const POOL: usize = 64;

impl Pair {
    /// Builds the pair, runs the handshake (initiation, response,
    /// confirming data packet) and captures a few transport datagrams in both
    /// directions that are not delivered yet.
    pub fn new() -> Pair {
        let now = Instant::now();
        let mtu = 1420;
        let mut p = Pair {
            a: device(KEY_A, KEY_B, mtu, 1000, now),
            b: device(KEY_B, KEY_A, mtu, 1000, now),
            now,
            pool: Vec::new(),
            plain: HashMap::new(),
            delivered: HashSet::new(),
            rx: [0; 2],
            mtu,
            buf: vec![0u8; BUF],
        };
        let first = p.encapsulate(Side::A, &ip_packet(A_V4.into(), B_V4.into(), &[7; 80]));
        assert_eq!(first.as_ref().map(Vec::len), Some(wire::INITIATION_LEN));
        if let Some(resp) = first.and_then(|dg| p.deliver(Side::B, a_ep(), &dg)) {
            p.deliver(Side::A, b_ep(), &resp);
        }
        p.shuttle();
        assert_eq!(p.b.peers().next().map(|i| i.stats.handshakes), Some(1), "handshake");
        assert_eq!(p.a.peers().next().map(|i| i.stats.handshakes), Some(1), "handshake");
        // Undelivered traffic for the fuzzer to reorder, replay and mutate.
        for (i, n) in [0usize, 1, 13, 100, 1000].into_iter().enumerate() {
            let payload = vec![i as u8; n];
            p.encapsulate(Side::A, &ip_packet(A_V4.into(), B_V4.into(), &payload));
            p.encapsulate(Side::B, &ip_packet(B_V6.into(), A_V6.into(), &payload));
        }
        p.encapsulate(Side::A, &ip_packet(A_V6.into(), B_V6.into(), &[1; 64]));
        p.encapsulate(Side::A, &ip_packet([1, 2, 3, 4].into(), B_V4.into(), &[1; 8]));
        p
    }

    fn dev(&mut self, side: Side) -> &mut Device {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn remember(&mut self, to: Side, bytes: Vec<u8>) {
        if self.pool.len() >= POOL {
            // Keep the handshake messages at the front; recycle the rest.
            let at = 4 + (self.pool.len() + bytes.len()) % (POOL - 4);
            self.pool[at] = Captured { to, bytes };
        } else {
            self.pool.push(Captured { to, bytes });
        }
    }

    /// Encrypts `packet` on `side`; records the plaintext of the resulting
    /// transport datagram and puts it in the pool (undelivered).
    pub fn encapsulate(&mut self, side: Side, packet: &[u8]) -> Option<Vec<u8>> {
        let now = self.now;
        let mut out = std::mem::take(&mut self.buf);
        let action = self.dev(side).encapsulate(packet, &mut out, now);
        let dg = check_action(&action, &out);
        self.buf = out;
        let dg = dg?;
        if let Some((r, c)) = data_id(&dg) {
            let mut padded = packet.to_vec();
            padded.resize(netstack::session::padded_len(packet.len(), self.mtu), 0);
            self.plain.insert((side.other() == Side::A, r, c), padded);
        }
        self.remember(side.other(), dg.clone());
        Some(dg)
    }

    /// Feeds `dg` to `side` from `from` with a buffer of `buf_len` bytes and
    /// checks the oracles. Returns the reply datagram, if any.
    pub fn deliver_with(
        &mut self,
        side: Side,
        from: SocketAddr,
        dg: &[u8],
        buf_len: usize,
    ) -> Option<Vec<u8>> {
        let now = self.now;
        let mut out = std::mem::take(&mut self.buf);
        out.resize(buf_len.max(BUF), 0);
        let dev = match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        };
        let ep_before = endpoint(dev);
        let unauth_before = unauth_drops(dev);
        let action = dev.decapsulate(from, dg, &mut out[..buf_len], now);
        let reply = check_action(&action, &out[..buf_len]);
        if unauth_drops(dev) > unauth_before {
            assert_eq!(
                endpoint(dev),
                ep_before,
                "an unauthenticated datagram moved the endpoint"
            );
        }
        if let Some(id @ (_, r, c)) = data_id(dg).map(|(r, c)| (side == Side::A, r, c)) {
            if let Action::Deliver(range) = &action {
                assert!(
                    self.delivered.insert(id),
                    "counter {c} of index {r:#x} delivered twice"
                );
                if let Some(p) = self.plain.get(&id) {
                    assert!(range.len() <= p.len());
                    assert_eq!(&out[range.clone()], &p[..range.len()], "wrong plaintext");
                }
            }
        }
        self.rx[side as usize] += 1;
        let dev = match side {
            Side::A => &self.a,
            Side::B => &self.b,
        };
        assert_eq!(dev.counters().rx_datagrams, self.rx[side as usize]);
        self.buf = out;
        self.buf.truncate(BUF);
        if let Some(r) = &reply {
            self.remember(side.other(), r.clone());
        }
        reply
    }

    /// `deliver_with` and a normal buffer.
    pub fn deliver(&mut self, side: Side, from: SocketAddr, dg: &[u8]) -> Option<Vec<u8>> {
        self.deliver_with(side, from, dg, BUF)
    }

    /// Drains both devices' `poll_transmit` and delivers everything (and the
    /// replies) to the other side, for a bounded number of rounds.
    pub fn shuttle(&mut self) {
        for _ in 0..8 {
            let mut moved = false;
            for side in [Side::A, Side::B] {
                let mut sent = Vec::new();
                let now = self.now;
                let mut out = std::mem::take(&mut self.buf);
                for _ in 0..256 {
                    let t = self.dev(side).poll_transmit(&mut out, now);
                    match check_transmit(t, &out) {
                        Some(dg) => sent.push(dg),
                        None => break,
                    }
                }
                self.buf = out;
                let from = ep(side);
                for dg in sent {
                    moved = true;
                    self.remember(side.other(), dg.clone());
                    if let Some(reply) = self.deliver(side.other(), from, &dg) {
                        self.deliver(side, ep(side.other()), &reply);
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Advances the clock and runs both devices' timers.
    pub fn tick(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        self.a.handle_timeout(now);
        self.b.handle_timeout(now);
    }
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}
