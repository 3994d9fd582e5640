//! mac1/mac2 and cookie replies: WireGuard's defence against handshake floods.
//!
//! Every handshake message carries mac1, keyed by the receiver's public key,
//! so a sender must know whom it talks to. A responder under load answers a
//! message without a valid mac2 with a cookie reply instead of doing any
//! Diffie-Hellman; the initiator retries with mac2 keyed by that cookie,
//! which proves it owns its source address.

use crate::crypto::{hash, mac, PublicKey};
use crate::Error;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const LABEL_MAC1: &[u8] = b"mac1----";
const LABEL_COOKIE: &[u8] = b"cookie--";
/// How long a cookie secret (responder) and a received cookie (initiator) live.
pub const COOKIE_LIFETIME: Duration = Duration::from_secs(120);

/// Constant-time equality of two byte strings.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The keys derived from one public key: for mac1 and for cookie encryption.
#[derive(Clone)]
struct MacKeys {
    mac1: [u8; 32],
    cookie: [u8; 32],
}

impl MacKeys {
    fn of(key: &PublicKey) -> Self {
        Self {
            mac1: hash(LABEL_MAC1, &key.0),
            cookie: hash(LABEL_COOKIE, &key.0),
        }
    }
}

/// Responder side: checks macs of messages sent to us and makes cookie replies.
pub struct CookieChecker {
    keys: MacKeys,
    secret: [u8; 32],
    secret_born: Instant,
}

impl CookieChecker {
    /// A checker for messages addressed to `own` public key.
    pub fn new(own: &PublicKey, now: Instant) -> Self {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        Self {
            keys: MacKeys::of(own),
            secret,
            secret_born: now,
        }
    }

    /// True if mac1 of `msg` (mac1 at `mac1_at`) is valid for us.
    pub fn check_mac1(&self, msg: &[u8], mac1_at: usize) -> bool {
        ct_eq(
            &mac(&self.keys.mac1, &msg[..mac1_at]),
            &msg[mac1_at..mac1_at + 16],
        )
    }

    fn cookie_for(&mut self, src: SocketAddr, now: Instant) -> [u8; 16] {
        if now.saturating_duration_since(self.secret_born) >= COOKIE_LIFETIME {
            OsRng.fill_bytes(&mut self.secret);
            self.secret_born = now;
        }
        let mut addr = [0u8; 18];
        let n = match src.ip() {
            IpAddr::V4(a) => {
                addr[..4].copy_from_slice(&a.octets());
                4
            }
            IpAddr::V6(a) => {
                addr[..16].copy_from_slice(&a.octets());
                16
            }
        };
        addr[n..n + 2].copy_from_slice(&src.port().to_be_bytes());
        mac(&self.secret, &addr[..n + 2])
    }

    /// True if mac2 of `msg` proves the sender received our cookie at `src`.
    pub fn check_mac2(
        &mut self,
        msg: &[u8],
        mac1_at: usize,
        src: SocketAddr,
        now: Instant,
    ) -> bool {
        let cookie = self.cookie_for(src, now);
        let mac2_at = mac1_at + 16;
        ct_eq(&mac(&cookie, &msg[..mac2_at]), &msg[mac2_at..mac2_at + 16])
    }

    /// Writes a cookie reply to `msg` (whose sender index is `sender`) into
    /// `out`; returns its length.
    pub fn write_reply(
        &mut self,
        msg: &[u8],
        mac1_at: usize,
        sender: u32,
        src: SocketAddr,
        now: Instant,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let out = out
            .get_mut(..crate::wire::COOKIE_REPLY_LEN)
            .ok_or(Error::BufferTooSmall)?;
        let cookie = self.cookie_for(src, now);
        crate::wire::write_header(out, crate::wire::TYPE_COOKIE_REPLY, sender);
        OsRng.fill_bytes(&mut out[8..32]);
        let nonce = *XNonce::from_slice(&out[8..32]);
        out[32..48].copy_from_slice(&cookie);
        let cipher = XChaCha20Poly1305::new((&self.keys.cookie).into());
        let tag = cipher
            .encrypt_in_place_detached(&nonce, &msg[mac1_at..mac1_at + 16], &mut out[32..48])
            .map_err(|_| Error::Handshake)?;
        out[48..64].copy_from_slice(&tag);
        Ok(crate::wire::COOKIE_REPLY_LEN)
    }
}

/// Initiator side: stamps macs on messages to one peer and keeps its cookie.
#[derive(Clone)]
pub struct CookieJar {
    keys: MacKeys,
    last_mac1: Option<[u8; 16]>,
    cookie: Option<([u8; 16], Instant)>,
}

impl CookieJar {
    /// A jar for messages sent to `peer`.
    pub fn new(peer: &PublicKey) -> Self {
        Self {
            keys: MacKeys::of(peer),
            last_mac1: None,
            cookie: None,
        }
    }

    /// Fills mac1 and (if we hold a fresh cookie) mac2 of `msg`.
    pub fn stamp(&mut self, msg: &mut [u8], mac1_at: usize, now: Instant) {
        let mac1 = mac(&self.keys.mac1, &msg[..mac1_at]);
        msg[mac1_at..mac1_at + 16].copy_from_slice(&mac1);
        self.last_mac1 = Some(mac1);
        let mac2_at = mac1_at + 16;
        let mac2 = match self.cookie {
            Some((c, born)) if now.saturating_duration_since(born) < COOKIE_LIFETIME => {
                mac(&c, &msg[..mac2_at])
            }
            _ => [0u8; 16],
        };
        msg[mac2_at..mac2_at + 16].copy_from_slice(&mac2);
    }

    /// Decrypts a cookie reply to our last message and keeps the cookie.
    pub fn accept_reply(&mut self, nonce: &[u8], sealed: &[u8], now: Instant) -> Result<(), Error> {
        let aad = self.last_mac1.ok_or(Error::UnexpectedCookie)?;
        let (Ok(nonce), Some(tag)) = (<[u8; 24]>::try_from(nonce), sealed.get(16..32)) else {
            return Err(Error::Malformed);
        };
        let mut cookie = [0u8; 16];
        cookie.copy_from_slice(&sealed[..16]);
        let cipher = XChaCha20Poly1305::new((&self.keys.cookie).into());
        cipher
            .decrypt_in_place_detached(&nonce.into(), &aad, &mut cookie, Tag::from_slice(tag))
            .map_err(|_| Error::Decrypt)?;
        self.cookie = Some((cookie, now));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::PrivateKey;
    use crate::wire::{INITIATION_LEN, INITIATION_MAC1_OFFSET as AT};

    #[test]
    fn cookie_round_trip_makes_mac2_valid() {
        let now = Instant::now();
        let resp = PrivateKey::generate().public_key();
        let src: SocketAddr = "198.18.0.9:5000".parse().unwrap();
        let mut checker = CookieChecker::new(&resp, now);
        let mut jar = CookieJar::new(&resp);
        let mut msg = [5u8; INITIATION_LEN];
        jar.stamp(&mut msg, AT, now);
        assert!(checker.check_mac1(&msg, AT));
        assert!(!checker.check_mac2(&msg, AT, src, now));
        let mut reply = [0u8; 64];
        checker
            .write_reply(&msg, AT, 42, src, now, &mut reply)
            .unwrap();
        jar.accept_reply(&reply[8..32], &reply[32..64], now)
            .unwrap();
        jar.stamp(&mut msg, AT, now);
        assert!(checker.check_mac2(&msg, AT, src, now));
        let other: SocketAddr = "198.18.0.10:5000".parse().unwrap();
        assert!(
            !checker.check_mac2(&msg, AT, other, now),
            "cookie is bound to the address"
        );
        msg[3] ^= 1;
        assert!(!checker.check_mac1(&msg, AT));
    }

    #[test]
    fn forged_cookie_reply_is_rejected() {
        let now = Instant::now();
        let mut jar = CookieJar::new(&PrivateKey::generate().public_key());
        let mut msg = [0u8; INITIATION_LEN];
        jar.stamp(&mut msg, AT, now);
        assert_eq!(
            jar.accept_reply(&[0; 24], &[0; 32], now),
            Err(Error::Decrypt)
        );
    }
}
