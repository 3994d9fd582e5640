//! Two devices that completed a real handshake, so the fuzzer reaches the
//! transport data path with valid receiver indices. Captured datagrams (the
//! handshake messages and undelivered transport data in both directions) are
//! replayed, reordered and mutated — bytes flipped at chosen positions,
//! truncated, extended, counter or index rewritten, mac1 re-stamped — and fed
//! from chosen source addresses, between timer ticks and real traffic.
//!
//! Oracles (in `Pair`): no panic; emitted datagrams parse; a transport
//! counter is delivered at most once and only as the exact plaintext that was
//! encrypted under it; a datagram dropped as unauthenticated never moves the
//! peer's endpoint; `rx_datagrams` counts every call.

#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use netstack::PrivateKey;
use netstack_fuzz::*;
use std::net::IpAddr;

fn side(b: u8) -> Side {
    if b & 1 == 0 {
        Side::A
    } else {
        Side::B
    }
}

fn mutate(u: &mut Unstructured<'_>, dg: &mut Vec<u8>, indices: &[u32]) {
    let n: u8 = u.arbitrary().unwrap_or(0);
    for _ in 0..(n % 8) {
        let kind: u8 = u.arbitrary().unwrap_or(0);
        let pos = usize::from(u.arbitrary::<u16>().unwrap_or(0));
        let val: u8 = u.arbitrary().unwrap_or(0);
        match kind % 8 {
            // Flip bits of one byte.
            0..=2 if !dg.is_empty() => {
                let i = pos % dg.len();
                dg[i] ^= val.max(1);
            }
            // Flip a byte in the header (type, reserved, index, counter).
            3 if !dg.is_empty() => {
                let i = pos % dg.len().min(16);
                dg[i] ^= val.max(1);
            }
            4 => dg.truncate(pos % (dg.len() + 1)),
            5 => {
                let extra = u.bytes(usize::from(val % 32).min(u.len())).unwrap_or_default();
                dg.extend_from_slice(extra);
            }
            // Rewrite the counter of a transport message.
            6 if dg.len() >= 16 => {
                let c: u64 = match val % 4 {
                    0 => u64::from(val),
                    1 => u64::MAX - u64::from(val),
                    2 => (u64::MAX - (1 << 13)).wrapping_add(u64::from(val)).wrapping_sub(128),
                    _ => u.arbitrary().unwrap_or(0),
                };
                dg[8..16].copy_from_slice(&c.to_le_bytes());
            }
            // Point the message at another known receiver index.
            _ if dg.len() >= 8 && !indices.is_empty() => {
                let i = indices[pos % indices.len()];
                dg[4..8].copy_from_slice(&i.to_le_bytes());
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut p = Pair::new();
    let a_pub = PrivateKey(KEY_A).public_key();
    let b_pub = PrivateKey(KEY_B).public_key();

    for _ in 0..128 {
        if u.is_empty() {
            break;
        }
        let op: u8 = u.arbitrary().unwrap_or(0);
        match op % 8 {
            // A captured datagram, mutated, to its destination or the other side.
            0..=2 => {
                let pick = usize::from(u.arbitrary::<u8>().unwrap_or(0)) % p.pool.len();
                let Captured { to, mut bytes } = p.pool[pick].clone();
                let to = if op & 0x80 != 0 { to.other() } else { to };
                let indices: Vec<u32> = p
                    .pool
                    .iter()
                    .filter_map(|c| data_id(&c.bytes).map(|(r, _)| r).or(sender_index(&c.bytes)))
                    .collect();
                mutate(&mut u, &mut bytes, &indices);
                if op & 0x40 != 0 {
                    stamp_mac1(&mut bytes, if to == Side::A { &a_pub } else { &b_pub });
                }
                let from = addr(&mut u);
                let blen = if op & 0x20 != 0 {
                    usize::from(u.arbitrary::<u16>().unwrap_or(0)) % (BUF + 1)
                } else {
                    BUF
                };
                if let Some(reply) = p.deliver_with(to, from, &bytes, blen) {
                    p.deliver(to.other(), ep(to), &reply);
                }
            }
            // A captured datagram verbatim (in order, out of order, replayed).
            3 => {
                let pick = usize::from(u.arbitrary::<u8>().unwrap_or(0)) % p.pool.len();
                let c = p.pool[pick].clone();
                let from = if op & 0x80 != 0 {
                    addr(&mut u)
                } else {
                    ep(c.to.other())
                };
                if let Some(reply) = p.deliver(c.to, from, &c.bytes) {
                    p.deliver(c.to.other(), ep(c.to), &reply);
                }
            }
            // New traffic with content from the input (the receiver then parses
            // an attacker-chosen inner packet that authenticates).
            4 | 5 => {
                let s = side(op >> 3);
                let kind: u8 = u.arbitrary().unwrap_or(0);
                let n = usize::from(u.arbitrary::<u16>().unwrap_or(0)) % 1500;
                let payload = u.bytes(n.min(u.len())).unwrap_or_default().to_vec();
                let (own4, peer4, own6, peer6) = match s {
                    Side::A => (A_V4, B_V4, A_V6, B_V6),
                    Side::B => (B_V4, A_V4, B_V6, A_V6),
                };
                let packet = match kind % 4 {
                    0 => ip_packet(IpAddr::from(own4), IpAddr::from(peer4), &payload),
                    1 => ip_packet(IpAddr::from(own6), IpAddr::from(peer6), &payload),
                    // Spoofed inner source: must be refused by the receiver.
                    2 => ip_packet(IpAddr::from([10, 0, 0, kind]), IpAddr::from(peer4), &payload),
                    // Raw bytes with the destination forced, so the header
                    // fields the receiver checks (length, version) are fuzzed.
                    _ => {
                        let mut p = payload.clone();
                        p.resize(p.len().max(20), 0);
                        p[0] = 0x40 | (p[0] & 0x0f);
                        p[16..20].copy_from_slice(&peer4);
                        p
                    }
                };
                if let Some(dg) = p.encapsulate(s, &packet) {
                    if op & 0x80 != 0 {
                        if let Some(reply) = p.deliver(s.other(), ep(s), &dg) {
                            p.deliver(s, ep(s.other()), &reply);
                        }
                    }
                }
            }
            // Time passes; timers run; whatever they produce is exchanged.
            6 => {
                let by = step(&mut u);
                p.tick(by);
                if op & 0x80 == 0 {
                    p.shuttle();
                }
            }
            _ => p.shuttle(),
        }
    }
    p.shuttle();
});
