//! Relay framing. When two peers cannot reach each other directly (a
//! symmetric NAT, UDP blocked one way), their WireGuard datagrams travel
//! through a third member inside a small envelope. The inner datagram stays
//! end-to-end encrypted: the relay sees only which peers talk, never what.
//!
//! ```text
//! to the relay:    type 16 (u32 LE) | target key id (8) | WireGuard datagram
//! from the relay:  type 17 (u32 LE) | source key id (8) | WireGuard datagram
//! ```
//! WireGuard's own messages use types 1–4, so the first word tells them
//! apart. A key id is a hash of the peer's WireGuard public key.

use crate::crypto::{hash, PublicKey};
use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

/// "Relay this to the peer with this key id."
pub const TO: u32 = 16;
/// "This came from the peer with this key id."
pub const FROM: u32 = 17;
/// Bytes the envelope adds.
pub const HEADER: usize = 12;

/// Short identifier of a WireGuard public key.
pub type KeyId = [u8; 8];

/// The key id of `key`.
pub fn key_id(key: &PublicKey) -> KeyId {
    let h = hash(b"cladnet/relay/v1", &key.0);
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[..8]);
    id
}

/// A parsed envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// To be relayed to `target`.
    To {
        /// The destination peer.
        target: KeyId,
        /// The WireGuard datagram.
        inner: &'a [u8],
    },
    /// Relayed to us from `source`.
    From {
        /// The sending peer.
        source: KeyId,
        /// The WireGuard datagram.
        inner: &'a [u8],
    },
}

/// Reads an envelope; `None` for anything else (a plain WireGuard datagram
/// or garbage).
pub fn parse(datagram: &[u8]) -> Option<Envelope<'_>> {
    let (kind, rest) = datagram.split_first_chunk::<4>()?;
    let (id, inner) = rest.split_first_chunk::<8>()?;
    if inner.is_empty() {
        return None;
    }
    match u32::from_le_bytes(*kind) {
        TO => Some(Envelope::To { target: *id, inner }),
        FROM => Some(Envelope::From { source: *id, inner }),
        _ => None,
    }
}

/// Writes the envelope header of `kind` for `id` into `out[..HEADER]`.
pub fn write_header(kind: u32, id: &KeyId, out: &mut [u8; HEADER]) {
    out[..4].copy_from_slice(&kind.to_le_bytes());
    out[4..].copy_from_slice(id);
}

/// The prefix of virtual endpoints (`fd63:6c61:646e::/48`, a ULA that never
/// leaves the process): a peer reached through a relay has one as its
/// endpoint, so the WireGuard state machine needs no notion of relays.
const VIRTUAL_PREFIX: [u16; 3] = [0xfd63, 0x6c61, 0x646e];

/// The virtual endpoint number `n`.
pub fn virtual_endpoint(n: u32) -> SocketAddr {
    let ip = Ipv6Addr::new(
        VIRTUAL_PREFIX[0],
        VIRTUAL_PREFIX[1],
        VIRTUAL_PREFIX[2],
        0,
        0,
        0,
        (n >> 16) as u16,
        n as u16,
    );
    SocketAddr::V6(SocketAddrV6::new(ip, 1, 0, 0))
}

/// True if `addr` is a virtual endpoint.
pub fn is_virtual(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V6(a) => a.ip().segments()[..3] == VIRTUAL_PREFIX,
        SocketAddr::V4(_) => false,
    }
}

/// Relayed paths kept at once, at most; a new one then replaces the one
/// unused the longest.
pub const MAX_PATHS: usize = 4096;
/// A path unused this long is forgotten.
pub const IDLE: Duration = Duration::from_secs(600);

/// One relayed path: a peer reached through a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    /// The relay's real endpoint.
    pub relay: SocketAddr,
    /// The relay's key.
    pub relay_key: PublicKey,
    /// The far peer's key id.
    pub peer: KeyId,
    used: Instant,
}

/// Relayed paths by virtual endpoint, and back. Entries are made only for
/// pairs the caller authenticated (a relay that is a member reached at
/// its known endpoint, a peer that is a member), so the table holds at
/// most members × relays; it is bounded anyway, and idle paths go.
#[derive(Debug, Default)]
pub struct Paths {
    by_virtual: HashMap<SocketAddr, Path>,
    by_route: HashMap<(SocketAddr, KeyId), SocketAddr>,
    next: u32,
}

impl Paths {
    /// The virtual endpoint of `peer` through the relay `relay_key` at
    /// `relay`, made if needed.
    pub fn get_or_insert(
        &mut self,
        relay: SocketAddr,
        relay_key: PublicKey,
        peer: KeyId,
        now: Instant,
    ) -> SocketAddr {
        if let Some(v) = self.by_route.get(&(relay, peer)).copied() {
            if let Some(p) = self.by_virtual.get_mut(&v) {
                p.used = now;
                p.relay_key = relay_key;
            }
            return v;
        }
        let v = self.next_virtual();
        self.insert_at(v, relay, relay_key, peer, now);
        v
    }

    /// Keeps the path of `peer` through the relay `relay_key` at `relay`
    /// under virtual endpoint `v` (from [`Paths::next_virtual`]); the path
    /// unused the longest makes room if the table is full.
    pub fn insert_at(
        &mut self,
        v: SocketAddr,
        relay: SocketAddr,
        relay_key: PublicKey,
        peer: KeyId,
        now: Instant,
    ) {
        if self.by_virtual.len() >= MAX_PATHS {
            let oldest = self
                .by_virtual
                .iter()
                .min_by_key(|(_, p)| p.used)
                .map(|(v, _)| *v);
            if let Some(old) = oldest {
                self.remove(&old);
            }
        }
        if let SocketAddr::V6(a) = v {
            let s = a.ip().segments();
            self.next = (u32::from(s[6]) << 16) | u32::from(s[7]);
        }
        self.by_virtual.insert(
            v,
            Path {
                relay,
                relay_key,
                peer,
                used: now,
            },
        );
        self.by_route.insert((relay, peer), v);
    }

    /// The virtual endpoint of `peer` through the relay at `relay`, if
    /// there is one.
    pub fn find(&self, relay: SocketAddr, peer: &KeyId) -> Option<SocketAddr> {
        self.by_route.get(&(relay, *peer)).copied()
    }

    /// The virtual endpoint the next new path will get.
    pub fn next_virtual(&self) -> SocketAddr {
        let mut n = self.next;
        loop {
            n = n.wrapping_add(1);
            let v = virtual_endpoint(n);
            if !self.by_virtual.contains_key(&v) {
                return v;
            }
        }
    }

    /// Where a datagram to virtual endpoint `v` goes (and marks it used).
    pub fn route(&mut self, v: &SocketAddr, now: Instant) -> Option<Path> {
        let p = self.by_virtual.get_mut(v)?;
        p.used = now;
        Some(*p)
    }

    /// The path behind virtual endpoint `v`.
    pub fn get(&self, v: &SocketAddr) -> Option<&Path> {
        self.by_virtual.get(v)
    }

    fn remove(&mut self, v: &SocketAddr) {
        if let Some(p) = self.by_virtual.remove(v) {
            self.by_route.remove(&(p.relay, p.peer));
        }
    }

    /// Forgets paths unused for [`IDLE`] and those `keep` refuses.
    pub fn retain(&mut self, now: Instant, keep: impl Fn(&Path) -> bool) {
        let gone: Vec<SocketAddr> = self
            .by_virtual
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.used) >= IDLE || !keep(p))
            .map(|(v, _)| *v)
            .collect();
        gone.iter().for_each(|v| self.remove(v));
    }

    /// Paths held.
    pub fn len(&self) -> usize {
        self.by_virtual.len()
    }

    /// True if no path is held.
    pub fn is_empty(&self) -> bool {
        self.by_virtual.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_are_stable_bounded_and_forgotten_when_idle() {
        let t0 = Instant::now();
        let mut paths = Paths::default();
        let relay: SocketAddr = "198.18.0.1:51820".parse().unwrap();
        let rk = PublicKey([1; 32]);
        let v = paths.get_or_insert(relay, rk, [2; 8], t0);
        assert!(is_virtual(&v));
        assert_eq!(paths.get_or_insert(relay, rk, [2; 8], t0), v);
        assert_eq!(
            paths.route(&v, t0).map(|p| (p.relay, p.peer)),
            Some((relay, [2; 8]))
        );
        for i in 0..(MAX_PATHS as u32 + 10) {
            let later = t0 + Duration::from_millis(u64::from(i) + 1);
            paths.get_or_insert(
                relay,
                rk,
                (i + 10).to_le_bytes().repeat(2).try_into().unwrap(),
                later,
            );
        }
        assert_eq!(paths.len(), MAX_PATHS, "bounded");
        assert!(paths.get(&v).is_none(), "the oldest went first");
        paths.retain(t0 + IDLE + Duration::from_secs(10), |_| true);
        assert!(paths.is_empty(), "idle paths are forgotten");
    }

    #[test]
    fn envelopes_roundtrip_and_wireguard_messages_are_not_envelopes() {
        let id = key_id(&PublicKey([5; 32]));
        let mut h = [0u8; HEADER];
        write_header(TO, &id, &mut h);
        let mut d = h.to_vec();
        d.extend_from_slice(b"inner");
        assert_eq!(
            parse(&d),
            Some(Envelope::To {
                target: id,
                inner: b"inner"
            })
        );
        write_header(FROM, &id, &mut h);
        d[..HEADER].copy_from_slice(&h);
        assert_eq!(
            parse(&d),
            Some(Envelope::From {
                source: id,
                inner: b"inner"
            })
        );
        for t in 1u32..=4 {
            let mut wg = vec![0u8; 148];
            wg[..4].copy_from_slice(&t.to_le_bytes());
            assert_eq!(parse(&wg), None);
        }
        assert_eq!(parse(&h), None, "an empty envelope is refused");
        assert!(is_virtual(&virtual_endpoint(70_000)));
        assert!(!is_virtual(&"[2001:db8::1]:1".parse().unwrap()));
        assert_ne!(virtual_endpoint(1), virtual_endpoint(2));
    }

    proptest! {
        #[test]
        fn parse_never_panics(d in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&d);
        }
    }
}
