//! The Noise_IKpsk2 handshake of WireGuard, run by `snow`.
//!
//! WireGuard's handshake is exactly Noise IKpsk2 over Curve25519,
//! ChaCha20-Poly1305 and BLAKE2s with the prologue below; the bytes between a
//! message's index fields and its macs are the Noise message. snow runs the
//! pattern; this module adds WireGuard's framing and hands the split transport
//! keys to [`crate::session`].

use crate::crypto::{PrivateKey, PublicKey};
use crate::wire::{INITIATION_NOISE_LEN, RESPONSE_NOISE_LEN};
use crate::Error;
use snow::params::NoiseParams;
use snow::{Builder, HandshakeState};
use std::sync::OnceLock;

/// WireGuard's Noise protocol name.
const PROTOCOL: &str = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// WireGuard's prologue ("identifier").
const PROLOGUE: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
/// Length of the TAI64N timestamp carried in the initiation.
pub const TIMESTAMP_LEN: usize = 12;

fn params() -> Result<NoiseParams, Error> {
    static PARAMS: OnceLock<Option<NoiseParams>> = OnceLock::new();
    PARAMS
        .get_or_init(|| PROTOCOL.parse().ok())
        .clone()
        .ok_or(Error::Handshake)
}

/// Transport keys produced by a completed handshake.
pub struct SessionKeys {
    /// Key for packets we send.
    pub send: [u8; 32],
    /// Key for packets we receive.
    pub recv: [u8; 32],
}

/// An initiation we sent and whose response we wait for.
pub struct Initiator {
    state: HandshakeState,
}

impl Initiator {
    /// Writes the Noise part of an initiation to `peer` into `out` and keeps
    /// the state needed to read the response.
    pub fn start(
        local: &PrivateKey,
        peer: &PublicKey,
        psk: &[u8; 32],
        timestamp: &[u8; TIMESTAMP_LEN],
        out: &mut [u8; INITIATION_NOISE_LEN],
    ) -> Result<Self, Error> {
        let mut state = Builder::new(params()?)
            .local_private_key(&local.0)
            .and_then(|b| b.remote_public_key(&peer.0))
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.psk(2, psk))
            .and_then(|b| b.build_initiator())
            .map_err(|_| Error::Handshake)?;
        let n = state
            .write_message(timestamp, out)
            .map_err(|_| Error::Handshake)?;
        debug_assert_eq!(n, INITIATION_NOISE_LEN);
        Ok(Self { state })
    }

    /// Reads the Noise part of the response and returns the session keys.
    pub fn finish(mut self, noise: &[u8]) -> Result<SessionKeys, Error> {
        let mut payload = [0u8; 16];
        let n = self
            .state
            .read_message(noise, &mut payload)
            .map_err(|_| Error::Decrypt)?;
        if n != 0 {
            return Err(Error::Handshake);
        }
        let (send, recv) = self.state.dangerously_get_raw_split();
        Ok(SessionKeys { send, recv })
    }
}

/// An initiation we received and authenticated, before we answer it.
pub struct Responder {
    state: HandshakeState,
    /// The initiator's static key, as decrypted from the message.
    pub peer: PublicKey,
    /// The initiator's TAI64N timestamp (replay protection).
    pub timestamp: [u8; TIMESTAMP_LEN],
}

impl Responder {
    /// Reads the Noise part of an initiation addressed to `local`.
    pub fn read(local: &PrivateKey, noise: &[u8]) -> Result<Self, Error> {
        let mut state = Builder::new(params()?)
            .local_private_key(&local.0)
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.psk(2, &[0u8; 32]))
            .and_then(|b| b.build_responder())
            .map_err(|_| Error::Handshake)?;
        let mut payload = [0u8; 64];
        let n = state
            .read_message(noise, &mut payload)
            .map_err(|_| Error::Decrypt)?;
        let timestamp: [u8; TIMESTAMP_LEN] = payload
            .get(..n)
            .and_then(|p| p.try_into().ok())
            .ok_or(Error::Handshake)?;
        let peer = state
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .map(PublicKey)
            .ok_or(Error::Handshake)?;
        Ok(Self {
            state,
            peer,
            timestamp,
        })
    }

    /// Writes the Noise part of the response into `out`, using the peer's
    /// preshared key, and returns the session keys.
    pub fn respond(
        mut self,
        psk: &[u8; 32],
        out: &mut [u8; RESPONSE_NOISE_LEN],
    ) -> Result<SessionKeys, Error> {
        self.state.set_psk(2, psk).map_err(|_| Error::Handshake)?;
        let n = self
            .state
            .write_message(&[], out)
            .map_err(|_| Error::Handshake)?;
        debug_assert_eq!(n, RESPONSE_NOISE_LEN);
        let (recv, send) = self.state.dangerously_get_raw_split();
        Ok(SessionKeys { send, recv })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_derive_mirrored_keys() {
        let (a, b) = (PrivateKey::generate(), PrivateKey::generate());
        let psk = [7u8; 32];
        let mut m1 = [0u8; INITIATION_NOISE_LEN];
        let ts = [1u8; TIMESTAMP_LEN];
        let init = Initiator::start(&a, &b.public_key(), &psk, &ts, &mut m1).unwrap();
        let resp = Responder::read(&b, &m1).unwrap();
        assert_eq!(resp.peer, a.public_key());
        assert_eq!(resp.timestamp, ts);
        let mut m2 = [0u8; RESPONSE_NOISE_LEN];
        let kb = resp.respond(&psk, &mut m2).unwrap();
        let ka = init.finish(&m2).unwrap();
        assert_eq!(ka.send, kb.recv);
        assert_eq!(ka.recv, kb.send);
        assert_ne!(ka.send, ka.recv);
    }

    #[test]
    fn wrong_psk_fails_at_the_initiator() {
        let (a, b) = (PrivateKey::generate(), PrivateKey::generate());
        let mut m1 = [0u8; INITIATION_NOISE_LEN];
        let init =
            Initiator::start(&a, &b.public_key(), &[1; 32], &[0; TIMESTAMP_LEN], &mut m1).unwrap();
        let mut m2 = [0u8; RESPONSE_NOISE_LEN];
        Responder::read(&b, &m1)
            .unwrap()
            .respond(&[2; 32], &mut m2)
            .unwrap();
        assert!(init.finish(&m2).is_err());
    }

    #[test]
    fn initiation_for_someone_else_fails() {
        let (a, b, c) = (
            PrivateKey::generate(),
            PrivateKey::generate(),
            PrivateKey::generate(),
        );
        let mut m1 = [0u8; INITIATION_NOISE_LEN];
        Initiator::start(&a, &b.public_key(), &[0; 32], &[0; TIMESTAMP_LEN], &mut m1).unwrap();
        assert!(Responder::read(&c, &m1).is_err());
    }
}
