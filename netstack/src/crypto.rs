//! Key types and the BLAKE2s primitives WireGuard builds on (HASH and the
//! keyed 16-byte MAC), plus TAI64N timestamps.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::{Blake2s256, Blake2sMac};
use std::fmt;

/// Length of every key the protocol uses.
pub const KEY_LEN: usize = 32;

/// An X25519 public key (a peer's WireGuard identity).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; KEY_LEN]);

/// An X25519 private key. Its Debug output never shows the bytes.
#[derive(Clone)]
pub struct PrivateKey(pub [u8; KEY_LEN]);

/// Error for a key that is not 32 bytes of base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid key: expected 44 characters of base64 encoding 32 bytes (as printed by `wg genkey`)")]
pub struct BadKey;

fn decode_key(s: &str) -> Result<[u8; KEY_LEN], BadKey> {
    let bytes = B64.decode(s.trim()).map_err(|_| BadKey)?;
    bytes.try_into().map_err(|_| BadKey)
}

impl PublicKey {
    /// Parses the base64 form used by `wg`.
    pub fn from_base64(s: &str) -> Result<Self, BadKey> {
        decode_key(s).map(Self)
    }
    /// The base64 form used by `wg`.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl PrivateKey {
    /// A fresh random key from the OS generator, clamped like `wg genkey`.
    pub fn generate() -> Self {
        let secret = x25519_dalek::StaticSecret::random_from_rng(rand_core::OsRng);
        Self(secret.to_bytes())
    }
    /// Parses the base64 form used by `wg`.
    pub fn from_base64(s: &str) -> Result<Self, BadKey> {
        decode_key(s).map(Self)
    }
    /// The base64 form used by `wg`.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }
    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let secret = x25519_dalek::StaticSecret::from(self.0);
        PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(hidden)")
    }
}

/// HASH(a || b) with BLAKE2s-256.
pub fn hash(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut h = Blake2s256::default();
    Update::update(&mut h, a);
    Update::update(&mut h, b);
    h.finalize_fixed().into()
}

/// MAC(key, msg): keyed BLAKE2s with a 16-byte output.
pub fn mac(key: &[u8], msg: &[u8]) -> [u8; 16] {
    // Keys are 16 or 32 bytes here, always within BLAKE2s' limit.
    let Ok(mut m) = <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(key)
    else {
        unreachable!("BLAKE2s accepts keys of up to 32 bytes")
    };
    blake2::digest::Mac::update(&mut m, msg);
    blake2::digest::Mac::finalize(m).into_bytes().into()
}

/// A TAI64N timestamp (12 bytes, big-endian: seconds + 2^62 + 10, nanoseconds).
pub fn tai64n(unix: std::time::Duration) -> [u8; 12] {
    let mut out = [0u8; 12];
    let secs = 0x4000_0000_0000_000a_u64.wrapping_add(unix.as_secs());
    out[..8].copy_from_slice(&secs.to_be_bytes());
    out[8..].copy_from_slice(&unix.subsec_nanos().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_hide() {
        let k = PrivateKey::generate();
        let again = PrivateKey::from_base64(&k.to_base64()).map(|k| k.0);
        assert_eq!(again, Ok(k.0));
        assert!(!format!("{k:?}").contains(&k.to_base64()));
        assert_eq!(PublicKey::from_base64("short"), Err(BadKey));
    }

    #[test]
    fn public_key_matches_rfc7748_vector() {
        // RFC 7748 section 6.1, Alice's key pair.
        let sk = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let pk = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        assert_eq!(PrivateKey(sk).public_key(), PublicKey(pk));
    }

    #[test]
    fn tai64n_is_monotonic() {
        let a = tai64n(std::time::Duration::new(100, 999_999_999));
        let b = tai64n(std::time::Duration::new(101, 0));
        assert!(a < b);
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or_default();
        }
        out
    }
}
