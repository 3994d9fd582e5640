//! A transport session: the two ChaCha20-Poly1305 keys of one completed
//! handshake, the send counter and the receive replay window.
//!
//! The AEAD runs through `ring` (assembly for x86_64 and aarch64), sealing
//! and opening in place in the caller's buffer with explicit nonces; nothing
//! is allocated per packet.

use crate::handshake::SessionKeys;
use crate::replay::ReplayWindow;
use crate::timers::REJECT_AFTER_MESSAGES;
use crate::wire::{write_data_header, DATA_HEADER_LEN, TAG_LEN};
use crate::Error;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use std::time::Instant;

/// One direction-pair of transport keys with its counters.
pub struct Session {
    /// Our index: peers put it in the messages they send us.
    pub local_index: u32,
    /// The peer's index: we put it in the messages we send.
    pub remote_index: u32,
    /// When the handshake that made this session completed.
    pub created: Instant,
    /// True if we initiated the handshake that made this session.
    pub initiator: bool,
    send: LessSafeKey,
    recv: LessSafeKey,
    send_counter: u64,
    replay: ReplayWindow,
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

fn key(bytes: &[u8; 32]) -> Result<LessSafeKey, Error> {
    UnboundKey::new(&CHACHA20_POLY1305, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| Error::Handshake)
}

/// Length of an inner packet of `len` bytes once padded to 16 (never past `mtu`).
pub fn padded_len(len: usize, mtu: usize) -> usize {
    let padded = len.div_ceil(16) * 16;
    if padded > mtu {
        len.max(mtu)
    } else {
        padded
    }
}

impl Session {
    /// A session from handshake keys.
    pub fn new(
        keys: &SessionKeys,
        local_index: u32,
        remote_index: u32,
        initiator: bool,
        now: Instant,
    ) -> Result<Self, Error> {
        Ok(Self {
            local_index,
            remote_index,
            created: now,
            initiator,
            send: key(&keys.send)?,
            recv: key(&keys.recv)?,
            send_counter: 0,
            replay: ReplayWindow::new(),
        })
    }

    /// Messages sent so far (the next counter).
    pub fn sent(&self) -> u64 {
        self.send_counter
    }

    /// Encrypts `packet` (padded to 16 bytes within `mtu`) into a transport
    /// message in `out`; returns the message length.
    pub fn encrypt(&mut self, packet: &[u8], mtu: usize, out: &mut [u8]) -> Result<usize, Error> {
        if self.send_counter >= REJECT_AFTER_MESSAGES {
            return Err(Error::SessionExpired);
        }
        let padded = padded_len(packet.len(), mtu);
        let total = DATA_HEADER_LEN + padded + TAG_LEN;
        let out = out.get_mut(..total).ok_or(Error::BufferTooSmall)?;
        let counter = self.send_counter;
        self.send_counter += 1;
        write_data_header(out, self.remote_index, counter);
        let body = &mut out[DATA_HEADER_LEN..DATA_HEADER_LEN + padded];
        body[..packet.len()].copy_from_slice(packet);
        body[packet.len()..].fill(0);
        let tag = self
            .send
            .seal_in_place_separate_tag(nonce(counter), Aad::empty(), body)
            .map_err(|_| Error::Decrypt)?;
        out[DATA_HEADER_LEN + padded..].copy_from_slice(tag.as_ref());
        Ok(total)
    }

    /// Decrypts a transport message's `sealed` payload (with counter
    /// `counter`) into `out[DATA_HEADER_LEN..]`; returns the plaintext length.
    /// Replays and forgeries are errors and leave the window unchanged.
    pub fn decrypt(&mut self, counter: u64, sealed: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        if counter >= REJECT_AFTER_MESSAGES || !self.replay.check(counter) {
            return Err(Error::Replay);
        }
        let buf = out
            .get_mut(DATA_HEADER_LEN..DATA_HEADER_LEN + sealed.len())
            .ok_or(Error::BufferTooSmall)?;
        buf.copy_from_slice(sealed);
        let plain = self
            .recv
            .open_in_place(nonce(counter), Aad::empty(), buf)
            .map_err(|_| Error::Decrypt)?
            .len();
        if !self.replay.accept(counter) {
            return Err(Error::Replay);
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Session, Session) {
        let now = Instant::now();
        let a = SessionKeys {
            send: [1; 32],
            recv: [2; 32],
        };
        let b = SessionKeys {
            send: [2; 32],
            recv: [1; 32],
        };
        (
            Session::new(&a, 1, 2, true, now).unwrap(),
            Session::new(&b, 2, 1, false, now).unwrap(),
        )
    }

    #[test]
    fn seal_open_pad_and_replay() {
        let (mut a, mut b) = pair();
        let mut wire = [0u8; 256];
        let n = a.encrypt(b"hello", 1420, &mut wire).unwrap();
        assert_eq!(n, 16 + 16 + 16);
        let mut out = [0u8; 256];
        let m = b.decrypt(0, &wire[16..n], &mut out).unwrap();
        assert_eq!(m, 16);
        assert_eq!(&out[16..21], b"hello");
        assert_eq!(b.decrypt(0, &wire[16..n], &mut out), Err(Error::Replay));
        let n2 = a.encrypt(b"x", 1420, &mut wire).unwrap();
        wire[20] ^= 1;
        assert_eq!(b.decrypt(1, &wire[16..n2], &mut out), Err(Error::Decrypt));
        wire[20] ^= 1;
        assert!(
            b.decrypt(1, &wire[16..n2], &mut out).is_ok(),
            "a forgery does not burn the counter"
        );
    }

    #[test]
    fn padding_stays_within_mtu() {
        assert_eq!(padded_len(0, 1420), 0);
        assert_eq!(padded_len(1, 1420), 16);
        assert_eq!(padded_len(1419, 1420), 1420);
        assert_eq!(padded_len(1420, 1420), 1420);
        assert_eq!(padded_len(1500, 1420), 1500);
    }
}
