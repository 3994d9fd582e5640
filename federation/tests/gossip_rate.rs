//! Control-plane bytes per node per second with metrics summaries on, at 10
//! to 10,000 simulated members: every member publishes a full-size record
//! (3-link certificate chain, 16 measured links) on the schedule of
//! `member::metrics_interval`, with random phases, for ten simulated
//! minutes; every publication reaches every other member once (gossip
//! payload, without gossipsub's framing and duplicate suppression), and
//! anti-entropy adds one 512-byte summary each way every 2 s. The figure
//! that matters: bytes received per member per second must not grow with
//! the network (it would grow linearly with a fixed publication interval).

use federation::cert::{Cert, Claim};
use federation::member::{metrics_interval, Body, Link, MemberRecord, Metrics, MAX_LINKS};
use federation::{NetworkId, NodeKey};
use std::net::Ipv4Addr;

/// Encoded size of a realistic member record with a full metrics summary.
fn record_size() -> usize {
    let keys: Vec<NodeKey> = (0..4u8).map(|i| NodeKey::from_seed(&[i + 1; 32])).collect();
    let network = NetworkId::of(&keys[0].id());
    let chain: Vec<Cert> = keys
        .windows(2)
        .map(|w| {
            Cert::issue(
                &w[0],
                Claim {
                    network,
                    subject: w[1].id(),
                    wg_key: [7; 32],
                    name: "edge-node-042".into(),
                    admit: true,
                    tags: vec![],
                    issued_ms: 1_763_000_000_000,
                    expires_ms: 2_078_000_000_000,
                },
            )
        })
        .collect();
    let links = (0..MAX_LINKS)
        .map(|i| Link {
            peer: NodeKey::from_seed(&[100 + i as u8; 32]).id(),
            rtt_min_us: Some(12_345),
            rtt_avg_us: Some(15_678),
            loss_permille: 3,
            rx_bytes: 123_456_789,
            tx_bytes: 98_765_432,
            handshake_age_s: Some(87),
            path: "direct".into(),
        })
        .collect();
    let record = MemberRecord {
        network,
        name: "edge-node-042".into(),
        chain,
        endpoints: vec![
            "198.18.3.4:51820".parse().expect("valid literal"),
            "[2001:db8::4]:51820".parse().expect("valid literal"),
        ],
        reflexive: vec!["198.18.200.7:40312".parse().expect("valid literal")],
        advertised: vec![],
        control: vec![
            "198.18.3.4:51821".parse().expect("addr"),
            "[2001:db8::4]:51821".parse().expect("addr"),
        ],
        host_networks: vec![
            "198.18.3.0/24".parse().expect("valid literal"),
            "10.20.0.0/16".parse().expect("valid literal"),
        ],
        mtu: 1420,
        host_mtu: None,
        path_mtu: None,
        address: Ipv4Addr::new(100, 64, 3, 4),
        claimed_ms: 1_763_000_000_000,
        pinned: false,
        no_relay: false,
        left_ms: None,
        revocations: vec![],
        labels: Default::default(),
        agreements: vec![],
        endings: vec![],
        partner_contacts: vec![],
        metrics: Some(Metrics {
            sampled_ms: 1_763_000_000_000,
            uptime_s: 86_400,
            cpu_permille: 12,
            rss_kb: 14_000,
            version: "0.1.0".into(),
            links,
        }),
    };
    let body = Body::Member(record).to_bytes();
    let encoded = keys[3].sign(9, body.clone()).encode();
    assert_eq!(
        Body::parse(&body).map(|_| ()),
        Ok(()),
        "the record is valid"
    );
    encoded.len()
}

/// Mean bytes received per member per second over `seconds` of simulated
/// time for `n` members publishing records of `size` bytes.
fn received_per_second(n: usize, size: usize, seconds: u64) -> f64 {
    let interval = metrics_interval(n).as_millis() as u64;
    let horizon = seconds * 1000;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut publications = 0u64;
    for _ in 0..n {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut t = rng % interval;
        while t < horizon {
            publications += 1;
            t += interval;
        }
    }
    // Each publication reaches the n - 1 others.
    let gossip_total = publications as f64 * size as f64 * (n - 1) as f64;
    let summaries_per_member = 512.0 / 2.0 * seconds as f64;
    (gossip_total / n as f64 + summaries_per_member) / seconds as f64
}

#[test]
fn gossip_bytes_per_member_do_not_grow_with_the_network() {
    let size = record_size();
    assert!(
        size < federation::record::MAX_BODY,
        "a full record fits: {size} B"
    );
    let rates: Vec<(usize, f64)> = [10, 12, 60, 100, 1_000, 5_000, 10_000]
        .iter()
        .map(|&n| (n, received_per_second(n, size, 600)))
        .collect();
    for (n, r) in &rates {
        eprintln!(
            "FIGURE gossip, {n} members: record {size} B every {:?}, {:.0} B/s received per member",
            metrics_interval(*n),
            r
        );
    }
    let at = |n: usize| {
        rates
            .iter()
            .find(|(m, _)| *m == n)
            .map(|(_, r)| *r)
            .unwrap_or(0.0)
    };
    // The sizes the 60-agent bench compares (`testbed/scale.sh`).
    assert!(
        at(60) < 1.5 * at(12),
        "60 members cost {} vs {} B/s at 12",
        at(60),
        at(12)
    );
    assert!(
        at(1_000) < 1.25 * at(100),
        "1,000 members cost {} vs {} B/s at 100",
        at(1_000),
        at(100)
    );
    for n in [5_000, 10_000] {
        assert!(at(n) < 1.25 * at(100), "{n} members cost {} B/s", at(n));
    }
    // A fixed 20 s interval would have cost ten times more at 1,000 members.
    let fixed = 999.0 * size as f64 / 20.0;
    assert!(fixed > 8.0 * at(1_000));
}
