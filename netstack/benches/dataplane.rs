//! Data-plane benchmarks of the sans-IO device, after a real handshake:
//! `encapsulate` and `decapsulate` of 64- and 1420-byte packets, a full
//! handshake (initiation → response → confirming data packet), and the
//! allowed-IPs lookup with 1,000 peers.
//!
//! `cargo bench -p netstack --bench dataplane` (add `-- --quick` or a filter
//! such as `-- decapsulate` for a subset). Throughput is reported per inner
//! packet byte; multiply criterion's GiB/s by 8.59 for Gbit/s.

// criterion_group! expands to an undocumented `pub fn`.
#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use netstack::{Action, AllowedIps, IpNet, PrivateKey};
use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use support::{a_ep, established, fresh_pair, handshake, ip_packet, A_IP, B_IP};

const SIZES: [usize; 2] = [64, 1420];

fn bench_encapsulate(c: &mut Criterion) {
    let mut g = c.benchmark_group("encapsulate");
    for size in SIZES {
        let (mut a, _b, now) = established();
        let packet = ip_packet(A_IP, B_IP, size);
        let mut out = vec![0u8; 2048];
        assert!(matches!(
            a.encapsulate(&packet, &mut out, now),
            Action::Send { .. }
        ));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("{size}B"), |bench| {
            bench.iter(|| a.encapsulate(black_box(&packet), black_box(&mut out), now))
        });
    }
    g.finish();
}

fn bench_decapsulate(c: &mut Criterion) {
    let mut g = c.benchmark_group("decapsulate");
    for size in SIZES {
        let (mut a, mut b, now) = established();
        let packet = ip_packet(A_IP, B_IP, size);
        let mut enc = vec![0u8; 2048];
        let mut out = vec![0u8; 2048];
        // Each input is a fresh datagram from A (setup, not timed), so
        // counters only grow and the replay window accepts every one.
        let mut next = move || match a.encapsulate(&packet, &mut enc, now) {
            Action::Send { len, .. } => enc[..len].to_vec(),
            other => panic!("encapsulate: {other:?}"),
        };
        let probe = next();
        assert!(matches!(
            b.decapsulate(a_ep(), &probe, &mut out, now),
            Action::Deliver(r) if r.len() == size
        ));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("{size}B"), |bench| {
            bench.iter_batched(
                &mut next,
                |dg| {
                    let action = b.decapsulate(a_ep(), black_box(&dg), &mut out, now);
                    (action, dg)
                },
                BatchSize::SmallInput,
            )
        });
        assert_eq!(b.counters().dropped_total(), 0, "every datagram delivered");
    }
    g.finish();
}

fn bench_roundtrip(c: &mut Criterion) {
    let mut g = c.benchmark_group("roundtrip");
    let size = 1420;
    let (mut a, mut b, now) = established();
    let packet = ip_packet(A_IP, B_IP, size);
    let mut enc = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    g.throughput(Throughput::Bytes(size as u64));
    g.bench_function(format!("{size}B"), |bench| {
        bench.iter(|| {
            let Action::Send { len, .. } = a.encapsulate(black_box(&packet), &mut enc, now) else {
                unreachable!("session established")
            };
            b.decapsulate(a_ep(), &enc[..len], &mut out, now)
        })
    });
    assert_eq!(b.counters().dropped_total(), 0, "every datagram delivered");
    g.finish();
}

fn bench_handshake(c: &mut Criterion) {
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let first = ip_packet(A_IP, B_IP, 100);
    let mut buf = vec![0u8; 2048];
    let now = Instant::now();
    c.bench_function("handshake/full", |bench| {
        bench.iter_batched(
            || fresh_pair(&ka, &kb),
            |(mut a, mut b)| {
                let n = handshake(&mut a, &mut b, &first, &mut buf, now);
                assert_eq!(n, 1);
                (a, b)
            },
            BatchSize::SmallInput,
        )
    });
}

fn bench_allowed_ips(c: &mut Criterion) {
    const PEERS: u32 = 1000;
    let mut t = AllowedIps::new();
    for i in 0..PEERS {
        // Each peer: one /32 in 100.64.0.0/10 and one /128 in fd00::/8,
        // plus every 10th peer routes a /24 site network.
        let [_, _, hi, lo] = i.to_be_bytes();
        let v4 = IpAddr::from([100, 64 + hi, lo, 1]);
        let v6 = IpAddr::V6((0xfd00_u128 << 112 | u128::from(i)).into());
        t.insert(IpNet::new(v4, 32).expect("prefix"), i);
        t.insert(IpNet::new(v6, 128).expect("prefix"), i);
        if i % 10 == 0 {
            t.insert(
                IpNet::new(IpAddr::from([10, hi, lo, 0]), 24).expect("prefix"),
                i,
            );
        }
    }
    t.insert(
        IpNet::new(IpAddr::from([0, 0, 0, 0]), 0).expect("prefix"),
        PEERS,
    );
    // Hits on /32, /24 and /128, and misses that fall back to the default route.
    let probes: Vec<IpAddr> = (0..PEERS)
        .map(|i| {
            let [_, _, hi, lo] = i.to_be_bytes();
            match i % 4 {
                0 => IpAddr::from([10, hi, lo, 7]),
                1 => IpAddr::V6((0xfd00_u128 << 112 | u128::from(i)).into()),
                2 => IpAddr::from([8, 8, hi, lo]),
                _ => IpAddr::from([100, 64 + hi, lo, 1]),
            }
        })
        .collect();
    assert!(probes.iter().all(|p| t.lookup(*p).is_some()));
    let mut g = c.benchmark_group("allowed_ips");
    g.throughput(Throughput::Elements(probes.len() as u64));
    g.bench_function("lookup_1000_peers", |bench| {
        bench.iter(|| {
            let mut sum = 0u32;
            for p in &probes {
                sum = sum.wrapping_add(t.lookup(black_box(*p)).unwrap_or(0));
            }
            sum
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    targets = bench_encapsulate, bench_decapsulate, bench_roundtrip, bench_handshake, bench_allowed_ips
}
criterion_main!(benches);
