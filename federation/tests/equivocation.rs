//! A writer that signs two bodies under one version (a bug, a restore from
//! an old backup, or malice) must not split the network: every replica
//! keeps the same one of the two, whatever order the records arrive in and
//! whichever replica talks to which, through the real ledger and the real
//! anti-entropy code ([`federation::sync`]).

use federation::fixture::TestNetwork;
use federation::member::{Body, MemberRecord};
use federation::sync;
use federation::{Ledger, Network};
use proptest::prelude::*;
use std::sync::OnceLock;

const NOW: u64 = 1_000_000;
const WRITERS: usize = 3;
const REPLICAS: usize = 4;

struct World {
    network: Network,
    authority_record: Vec<u8>,
    /// Per writer, per version 1..=2, two different bodies.
    records: Vec<Vec<[Vec<u8>; 2]>>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let net = TestNetwork::new(7);
        let records = (0..WRITERS)
            .map(|w| {
                let m = net.member(w as u8 + 1);
                (1..=2u64)
                    .map(|version| {
                        [0u64, 1].map(|variant| {
                            let body = MemberRecord {
                                claimed_ms: version * 10 + variant,
                                ..m.record.clone()
                            };
                            m.key.sign(version, Body::Member(body).to_bytes()).encode()
                        })
                    })
                    .collect()
            })
            .collect();
        World {
            network: net.network,
            authority_record: net.authority_record(),
            records,
        }
    })
}

/// One anti-entropy exchange, `a` asking `b`, as the agent runs it.
fn exchange(replicas: &mut [Ledger], a: usize, b: usize) {
    let mut versions = sync::differing(replicas[b].state(), &sync::summary(replicas[a].state()));
    loop {
        let plan = sync::plan(replicas[a].state(), &versions);
        let pulled = sync::records_of(replicas[b].state(), &plan.pull);
        for r in pulled {
            let _ = replicas[a].ingest(&r, NOW);
        }
        for r in plan.push {
            let _ = replicas[b].ingest(&r, NOW);
        }
        if plan.leaves.is_empty() {
            return;
        }
        versions = sync::leaves(replicas[b].state(), &plan.leaves);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn equivocating_writers_end_identical_everywhere(
        // Each delivery: which replica, which writer, version, which body.
        deliveries in proptest::collection::vec(
            (0..REPLICAS, 0..WRITERS, 0usize..2, 0usize..2), 1..24),
        talks in proptest::collection::vec((0..REPLICAS, 0..REPLICAS), 0..12),
    ) {
        let w = world();
        let mut replicas: Vec<Ledger> = (0..REPLICAS)
            .map(|_| {
                let mut l = Ledger::new(w.network);
                l.ingest(&w.authority_record, NOW).expect("authority record");
                l
            })
            .collect();
        for (r, writer, version, variant) in deliveries {
            let _ = replicas[r].ingest(&w.records[writer][version][variant], NOW);
        }
        // Random exchanges first, then every ordered pair twice: what one
        // replica has, all get.
        for (a, b) in talks {
            exchange(&mut replicas, a, b);
        }
        for _ in 0..2 {
            for a in 0..REPLICAS {
                for b in 0..REPLICAS {
                    if a != b {
                        exchange(&mut replicas, a, b);
                    }
                }
            }
        }
        for r in &replicas[1..] {
            prop_assert_eq!(r.state(), replicas[0].state());
        }
    }
}
