//! The handshake and cookie primitives on their own:
//!
//! - `Responder::read` on arbitrary 108-byte Noise payloads, and on real
//!   initiations with chosen bit flips: it must accept exactly the unmodified
//!   message and then recover the initiator's key and timestamp; the
//!   response must complete at the initiator iff it is unmodified and the
//!   preshared keys agree, with mirrored session keys.
//! - `CookieJar::accept_reply` on arbitrary nonce/sealed slices (error kind
//!   fixed by the lengths), and on real cookie replies with chosen flips: it
//!   must accept exactly the unmodified reply, after which mac2 verifies.

#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use netstack::cookie::{CookieChecker, CookieJar};
use netstack::handshake::{Initiator, Responder, TIMESTAMP_LEN};
use netstack::wire::{
    COOKIE_REPLY_LEN, INITIATION_LEN, INITIATION_MAC1_OFFSET, INITIATION_NOISE_LEN,
    RESPONSE_NOISE_LEN,
};
use netstack::{Error, PrivateKey};
use netstack_fuzz::*;
use std::time::Instant;

/// Applies up to 4 chosen XOR flips; returns whether the bytes changed.
fn flip(u: &mut Unstructured<'_>, b: &mut [u8]) -> bool {
    let before = b.to_vec();
    let n: u8 = u.arbitrary().unwrap_or(0);
    for _ in 0..(n % 5) {
        let pos = usize::from(u.arbitrary::<u16>().unwrap_or(0)) % b.len();
        let x: u8 = u.arbitrary().unwrap_or(0);
        b[pos] ^= x;
    }
    b != &before[..]
}

fn fill<const N: usize>(u: &mut Unstructured<'_>) -> [u8; N] {
    let mut a = [0u8; N];
    let src = u.bytes(N.min(u.len())).unwrap_or_default();
    a[..src.len()].copy_from_slice(src);
    a
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mode: u8 = u.arbitrary().unwrap_or(0);
    let a = PrivateKey(KEY_A);
    let b = PrivateKey(KEY_B);
    let now = Instant::now();
    match mode % 4 {
        // Arbitrary Noise payload of an initiation.
        0 => {
            let noise: [u8; INITIATION_NOISE_LEN] = fill(&mut u);
            if let Ok(r) = Responder::read(&b, &noise) {
                let mut out = [0u8; RESPONSE_NOISE_LEN];
                let _ = r.respond(&fill(&mut u), &mut out);
            }
        }
        // A real initiation and response, each possibly flipped.
        1 => {
            let ts: [u8; TIMESTAMP_LEN] = fill(&mut u);
            let psk: [u8; 32] = if mode & 0x10 != 0 { fill(&mut u) } else { PSK };
            let psk_b = if mode & 0x20 != 0 { [0u8; 32] } else { psk };
            let mut m1 = [0u8; INITIATION_NOISE_LEN];
            let init = Initiator::start(&a, &b.public_key(), &psk, &ts, &mut m1)
                .expect("initiator starts");
            let changed = flip(&mut u, &mut m1);
            let resp = Responder::read(&b, &m1);
            assert_eq!(resp.is_ok(), !changed, "accepted a modified initiation");
            let Ok(resp) = resp else { return };
            assert_eq!(resp.peer, a.public_key());
            assert_eq!(resp.timestamp, ts);
            let mut m2 = [0u8; RESPONSE_NOISE_LEN];
            let kb = resp.respond(&psk_b, &mut m2).expect("responder answers");
            let changed = flip(&mut u, &mut m2);
            let ka = init.finish(&m2);
            assert_eq!(
                ka.is_ok(),
                !changed && psk == psk_b,
                "response acceptance (changed {changed}, psk equal {})",
                psk == psk_b
            );
            if let Ok(ka) = ka {
                assert_eq!(ka.send, kb.recv);
                assert_eq!(ka.recv, kb.send);
                assert_ne!(ka.send, ka.recv);
            }
        }
        // accept_reply on arbitrary slices.
        2 => {
            let mut jar = CookieJar::new(&b.public_key());
            let stamped = mode & 0x10 != 0;
            if stamped {
                let mut msg: [u8; INITIATION_LEN] = fill(&mut u);
                jar.stamp(&mut msg, INITIATION_MAC1_OFFSET, now);
            }
            let nl = usize::from(u.arbitrary::<u8>().unwrap_or(0) % 40);
            let sl = usize::from(u.arbitrary::<u8>().unwrap_or(0) % 80);
            let nonce = u.bytes(nl.min(u.len())).unwrap_or_default();
            let sealed = u.bytes(sl.min(u.len())).unwrap_or_default();
            let r = jar.accept_reply(nonce, sealed, now);
            if !stamped {
                assert_eq!(r, Err(Error::UnexpectedCookie));
            } else if nonce.len() != 24 || sealed.len() < 32 {
                assert_eq!(r, Err(Error::Malformed));
            } else {
                assert_eq!(r, Err(Error::Decrypt), "forged cookie accepted");
            }
        }
        // A real cookie reply, possibly flipped; then mac2 must verify.
        _ => {
            let mut checker = CookieChecker::new(&b.public_key(), now);
            let mut jar = CookieJar::new(&b.public_key());
            let mut msg: [u8; INITIATION_LEN] = fill(&mut u);
            jar.stamp(&mut msg, INITIATION_MAC1_OFFSET, now);
            assert!(checker.check_mac1(&msg, INITIATION_MAC1_OFFSET));
            let src = addr(&mut u);
            let mut reply = [0u8; COOKIE_REPLY_LEN];
            let n = checker
                .write_reply(&msg, INITIATION_MAC1_OFFSET, 7, src, now, &mut reply)
                .expect("reply fits");
            assert_eq!(n, COOKIE_REPLY_LEN);
            let changed = flip(&mut u, &mut reply[8..]);
            let r = jar.accept_reply(&reply[8..32], &reply[32..], now);
            assert_eq!(r.is_ok(), !changed, "cookie reply acceptance: {r:?}");
            if r.is_ok() {
                jar.stamp(&mut msg, INITIATION_MAC1_OFFSET, now);
                assert!(checker.check_mac1(&msg, INITIATION_MAC1_OFFSET));
                assert!(checker.check_mac2(&msg, INITIATION_MAC1_OFFSET, src, now));
                let other = addr(&mut u);
                if other != src {
                    assert!(!checker.check_mac2(&msg, INITIATION_MAC1_OFFSET, other, now));
                }
            }
        }
    }
});
