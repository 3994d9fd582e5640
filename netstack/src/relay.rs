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
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
