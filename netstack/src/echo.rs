//! Endpoint echo: one member asks another, over the data-plane socket, from
//! which address and port its datagrams arrive — its reflexive endpoint, as
//! STUN tells it, but with no server: any member answers. No WireGuard
//! session is needed, so a node learns where its NAT maps it before its
//! first handshake, and notices within a second when its NAT moves.
//!
//! A question may be padded to probe the path MTU: its answer says how
//! long the question was when it arrived, so the asker learns which sizes
//! the path carries (the data-plane socket sends with DF set).
//!
//! A relayed member asks a peer to open a direct path with a call: sent
//! through the relay after this member's NAT was opened towards the peer
//! by a short-lived punch ([`crate::asker::Asker::punch`]), it makes the
//! peer send its question straight to us now, when our NAT lets it in.
//!
//! ```text
//! request: type 18 (u32 LE) | asker key id (8) | nonce (8) | MAC (16)
//!          | padding (any length)
//! call:    type 20 (u32 LE) | caller key id (8) | nonce (8) | MAC (16)
//! reply:   type 19 (u32 LE) | answerer key id (8) | nonce (8)
//!          | port (u16 BE) | IPv6 or IPv4-mapped address (16)
//!          | request length (u16 BE) | MAC (16)
//! ```
//!
//! The MAC key is a hash of the X25519 agreement of the two members' static
//! keys, so only those two can ask or answer: a stranger can neither make us
//! answer nor tell us a false endpoint. The nonce ties a reply to a question
//! the asker keeps, so an old reply replayed later is not taken for news.

use crate::crypto::{hash, mac, PrivateKey, PublicKey};
use crate::relay::KeyId;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// "From where do my datagrams reach you?"
pub const REQUEST: u32 = 18;
/// "From here."
pub const REPLY: u32 = 19;
/// "Ask me straight away: my NAT expects you." (sent through a relay)
pub const CALL_ME: u32 = 20;
/// Length of an unpadded request (and of a call).
pub const REQUEST_LEN: usize = 4 + 8 + 8 + 16;
/// Length of a reply.
pub const REPLY_LEN: usize = 4 + 8 + 8 + 2 + 16 + 2 + 16;

/// The MAC key two members share.
pub type PairKey = [u8; 32];

/// The key `own` shares with `peer`; `None` for a peer key of low order (no
/// shared secret).
pub fn pair_key(own: &PrivateKey, peer: &PublicKey) -> Option<PairKey> {
    let secret = x25519_dalek::StaticSecret::from(own.0);
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
    shared
        .was_contributory()
        .then(|| hash(b"cladnet/echo/v1", shared.as_bytes()))
}

/// A parsed echo message (not yet authenticated: see [`authentic`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A question from the member with key id `asker`.
    Request {
        /// Who asks.
        asker: KeyId,
        /// The asker's nonce.
        nonce: u64,
        /// The request's length, padding included.
        len: u16,
    },
    /// A call from the relayed member with key id `caller`: it has just
    /// opened its NAT towards us and waits for our question.
    CallMe {
        /// Who calls.
        caller: KeyId,
    },
    /// An answer from the member with key id `answerer`.
    Reply {
        /// Who answers.
        answerer: KeyId,
        /// The nonce of the question.
        nonce: u64,
        /// Where the question came from, as the answerer saw it.
        seen: SocketAddr,
        /// The question's length as it arrived.
        len: u16,
    },
}

/// Reads an echo message; `None` for anything else (WireGuard, relay
/// envelopes, garbage, wrong lengths).
pub fn parse(datagram: &[u8]) -> Option<Message> {
    let (kind, rest) = datagram.split_first_chunk::<4>()?;
    let (id, rest) = rest.split_first_chunk::<8>()?;
    let (nonce, rest) = rest.split_first_chunk::<8>()?;
    let nonce = u64::from_le_bytes(*nonce);
    match (u32::from_le_bytes(*kind), datagram.len()) {
        (REQUEST, n) if n >= REQUEST_LEN => Some(Message::Request {
            asker: *id,
            nonce,
            len: u16::try_from(n).ok()?,
        }),
        (CALL_ME, REQUEST_LEN) => Some(Message::CallMe { caller: *id }),
        (REPLY, REPLY_LEN) => {
            let (port, rest) = rest.split_first_chunk::<2>()?;
            let (ip, rest) = rest.split_first_chunk::<16>()?;
            let (len, _) = rest.split_first_chunk::<2>()?;
            let ip = Ipv6Addr::from(*ip);
            let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
            Some(Message::Reply {
                answerer: *id,
                nonce,
                seen: SocketAddr::new(ip, u16::from_be_bytes(*port)),
                len: u16::from_be_bytes(*len),
            })
        }
        _ => None,
    }
}

/// True if the MAC of `datagram` (a message [`parse`] accepted; a
/// request's padding is not covered) was made with `key`.
pub fn authentic(datagram: &[u8], key: &PairKey) -> bool {
    let end = match datagram.first_chunk::<4>().map(|k| u32::from_le_bytes(*k)) {
        Some(REQUEST | CALL_ME) => REQUEST_LEN,
        _ => REPLY_LEN,
    };
    let Some(message) = datagram.get(..end) else {
        return false;
    };
    let (body, tag) = message.split_at(end - 16);
    let expected = mac(key, body);
    // Constant time: the comparison must not tell how much of a forgery
    // was right.
    expected
        .iter()
        .zip(tag)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// A request from `asker` with `nonce`, padded to `len` bytes (at least
/// [`REQUEST_LEN`]).
pub fn request(asker: &KeyId, nonce: u64, key: &PairKey, len: u16) -> Vec<u8> {
    let mut out = vec![0u8; usize::from(len).max(REQUEST_LEN)];
    write_question(REQUEST, asker, nonce, key, &mut out);
    out
}

/// A call from `caller` with `nonce`.
pub fn call_me(caller: &KeyId, nonce: u64, key: &PairKey) -> [u8; REQUEST_LEN] {
    let mut out = [0u8; REQUEST_LEN];
    write_question(CALL_ME, caller, nonce, key, &mut out);
    out
}

fn write_question(kind: u32, from: &KeyId, nonce: u64, key: &PairKey, out: &mut [u8]) {
    out[..4].copy_from_slice(&kind.to_le_bytes());
    out[4..12].copy_from_slice(from);
    out[12..20].copy_from_slice(&nonce.to_le_bytes());
    seal(&mut out[..REQUEST_LEN], key);
}

/// The reply of `answerer` to the request with `nonce` and length `len`
/// that came from `seen`.
pub fn reply(
    answerer: &KeyId,
    nonce: u64,
    seen: SocketAddr,
    len: u16,
    key: &PairKey,
) -> [u8; REPLY_LEN] {
    let mut out = [0u8; REPLY_LEN];
    out[..4].copy_from_slice(&REPLY.to_le_bytes());
    out[4..12].copy_from_slice(answerer);
    out[12..20].copy_from_slice(&nonce.to_le_bytes());
    out[20..22].copy_from_slice(&seen.port().to_be_bytes());
    let ip = match seen.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    out[22..38].copy_from_slice(&ip.octets());
    out[38..40].copy_from_slice(&len.to_be_bytes());
    seal(&mut out, key);
    out
}

fn seal(message: &mut [u8], key: &PairKey) {
    let body_len = message.len() - 16;
    let tag = mac(key, &message[..body_len]);
    message[body_len..].copy_from_slice(&tag);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::key_id;
    use proptest::prelude::*;

    #[test]
    fn both_members_derive_one_key_and_strangers_cannot_forge() {
        let (a, b, c) = (
            PrivateKey::generate(),
            PrivateKey::generate(),
            PrivateKey::generate(),
        );
        let ab = pair_key(&a, &b.public_key()).unwrap();
        assert_eq!(Some(ab), pair_key(&b, &a.public_key()));
        let cb = pair_key(&c, &b.public_key()).unwrap();
        assert_ne!(ab, cb);
        assert_eq!(pair_key(&a, &PublicKey([0; 32])), None, "low-order key");

        let a_id = key_id(&a.public_key());
        let q = request(&a_id, 7, &ab, 0);
        assert_eq!(
            parse(&q),
            Some(Message::Request {
                asker: a_id,
                nonce: 7,
                len: REQUEST_LEN as u16
            })
        );
        assert!(authentic(&q, &ab));
        let padded = request(&a_id, 7, &ab, 1400);
        assert_eq!(padded.len(), 1400);
        assert!(matches!(
            parse(&padded),
            Some(Message::Request { len: 1400, .. })
        ));
        assert!(authentic(&padded, &ab), "padding is not covered by the MAC");
        assert!(!authentic(&q, &cb), "c cannot pass for a");

        let seen: SocketAddr = "198.18.7.1:40000".parse().unwrap();
        let b_id = key_id(&b.public_key());
        let mut r = reply(&b_id, 7, seen, 1400, &ab);
        assert_eq!(
            parse(&r),
            Some(Message::Reply {
                answerer: b_id,
                nonce: 7,
                seen,
                len: 1400
            })
        );
        assert!(authentic(&r, &ab));
        r[21] ^= 1; // another port
        assert!(!authentic(&r, &ab), "a changed endpoint is detected");

        let v6: SocketAddr = "[2001:db8::5]:9".parse().unwrap();
        assert!(
            matches!(parse(&reply(&b_id, 1, v6, 36, &ab)), Some(Message::Reply { seen, .. }) if seen == v6)
        );
    }

    #[test]
    fn other_datagrams_are_not_echo_messages() {
        let key = [3u8; 32];
        let q = request(&[1; 8], 1, &key, 0);
        assert_eq!(parse(&q[..REQUEST_LEN - 1]), None, "truncated");
        let r = reply(&[1; 8], 1, "198.18.0.1:1".parse().unwrap(), 36, &key);
        let mut long = r.to_vec();
        long.push(0);
        assert_eq!(parse(&long), None, "a reply too long");
        for t in 1u32..=4 {
            let mut wg = vec![0u8; REQUEST_LEN];
            wg[..4].copy_from_slice(&t.to_le_bytes());
            assert_eq!(parse(&wg), None);
        }
        // A call is a question's size and never padded.
        let call = call_me(&[1; 8], 1, &key);
        assert_eq!(parse(&call), Some(Message::CallMe { caller: [1; 8] }));
        assert!(authentic(&call, &key));
        let mut padded = call.to_vec();
        padded.push(0);
        assert_eq!(parse(&padded), None, "a padded call");
        // A request relabelled as a call fails its MAC.
        let mut relabelled = q.clone();
        relabelled[..4].copy_from_slice(&CALL_ME.to_le_bytes());
        assert!(matches!(parse(&relabelled), Some(Message::CallMe { .. })));
        assert!(!authentic(&relabelled, &key));
        // A request's bytes relabelled as a reply do not parse (length).
        let mut relabelled = q.clone();
        relabelled[..4].copy_from_slice(&REPLY.to_le_bytes());
        assert_eq!(parse(&relabelled), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics(d in proptest::collection::vec(any::<u8>(), 0..80)) {
            // Whatever parses, random bytes never carry a valid MAC.
            let _ = parse(&d);
            prop_assert!(!authentic(&d, &[9; 32]));
        }
    }
}
