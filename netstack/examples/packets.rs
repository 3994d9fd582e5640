//! Seals and opens COUNT packets of 1,420 bytes between two devices with a
//! session (`encapsulate` on one, `decapsulate` on the other), for counting
//! instructions per packet under callgrind (x86_64) or qemu-user's
//! execution log (aarch64): `testbed/bench/instructions.sh` runs it at two
//! counts and divides the difference.
//!
//! `cargo run --release -p netstack --example packets -- 1000`

#[path = "../tests/support/mod.rs"]
mod support;

use netstack::Action;
use std::hint::black_box;
use support::{a_ep, established, ip_packet, A_IP, B_IP};

fn main() {
    let count: u32 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 1000,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("packets: COUNT must be a whole number of packets, e.g. 1000");
            std::process::exit(2);
        }
    };
    let (mut a, mut b, now) = established();
    let packet = ip_packet(A_IP, B_IP, 1420);
    let (mut enc, mut out) = (vec![0u8; 2048], vec![0u8; 2048]);
    let mut delivered = 0u32;
    for _ in 0..count {
        let Action::Send { len, .. } = a.encapsulate(black_box(&packet), &mut enc, now) else {
            eprintln!("packets: the session did not seal a packet");
            std::process::exit(1);
        };
        if let Action::Deliver(_) = b.decapsulate(a_ep(), black_box(&enc[..len]), &mut out, now) {
            delivered += 1;
        }
    }
    if delivered != count {
        eprintln!("packets: {delivered} of {count} packets delivered");
        std::process::exit(1);
    }
    println!("{count} packets sealed and opened");
}
