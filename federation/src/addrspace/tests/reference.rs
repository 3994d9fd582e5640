//! Property tests of the address-space rules against brute-force references:
//! exhaustive search for the recommendation, every aligned block for the free
//! listing.

use super::*;

/// Every aligned /`prefix` of `region`, highest first.
fn blocks_top_down(region: Cidr, prefix: u8) -> impl Iterator<Item = Cidr> {
    let count = if prefix >= region.prefix() {
        1u64 << (prefix - region.prefix())
    } else {
        0
    };
    let base = u64::from(u32::from(region.addr()));
    let step = 1u64 << (32 - u32::from(prefix));
    (0..count)
        .rev()
        .map(move |i| Cidr::new(Ipv4Addr::from((base + i * step) as u32), prefix).unwrap())
}

fn is_free(block: Cidr, nets: &[Cidr]) -> bool {
    nets.iter()
        .filter(|n| n.prefix() >= MIN_HOST_NET_PREFIX)
        .all(|n| !n.overlaps(&block))
}

/// The recommendation rule by exhaustive search.
fn reference_pick(prefix: u8, nets: &[Cidr]) -> Option<Cidr> {
    PREFERENCE
        .iter()
        .flat_map(|r| blocks_top_down(*r, prefix))
        .find(|b| is_free(*b, nets))
}

fn in_pool(pool: usize, offset: u32, prefix: u8) -> Cidr {
    let p = POOLS[pool];
    let host_bits = !(u32::MAX << (32 - u32::from(p.prefix())));
    let addr = u32::from(p.addr()) | (offset & host_bits);
    Cidr::new(Ipv4Addr::from(addr), prefix.clamp(p.prefix(), 32)).unwrap()
}

fn host_net() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        // Anywhere, any size (default routes included).
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| Cidr::new(Ipv4Addr::from(a), p).unwrap()),
        // Inside a pool, any size.
        (0usize..3, any::<u32>(), 8u8..=32).prop_map(|(i, o, p)| in_pool(i, o, p)),
        // Large chunks of a pool, to crowd it.
        (0usize..3, any::<u32>(), 0u8..=3).prop_map(|(i, o, e)| in_pool(
            i,
            o,
            POOLS[i].prefix() + e
        )),
        // Near the top of a preferred region, where the search starts.
        (0usize..4, 0u32..(1 << 20), 9u8..=32).prop_map(|(r, o, p)| {
            let region = PREFERENCE[r];
            let addr = u32::from(region.last()) - o.min(region.size() as u32 - 1);
            Cidr::new(Ipv4Addr::from(addr), p.max(region.prefix())).unwrap()
        }),
    ]
}

fn host_count() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..=64, 0u64..=1_000, 0u64..=60_000]
}

/// Each pool cut into 2^k equal pieces, most of them taken: pools are
/// often full, or have a single hole.
fn crowded() -> impl Strategy<Value = Vec<Cidr>> {
    (
        prop::collection::vec(
            (
                0u8..=4,
                prop::collection::vec(prop::bool::weighted(0.85), 16),
            ),
            3,
        ),
        prop::collection::vec(host_net(), 0..4),
    )
        .prop_map(|(pools, extra)| {
            let mut nets = extra;
            for (i, (k, taken)) in pools.into_iter().enumerate() {
                let pool = POOLS[i];
                let p = pool.prefix() + k;
                for (j, piece) in blocks_top_down(pool, p).enumerate() {
                    if taken[j] {
                        nets.push(piece);
                    }
                }
            }
            nets
        })
}

fn check(nets: &[Cidr], hosts: u64) -> Result<(), TestCaseError> {
    let prefix = prefix_for(hosts);
    let expected = reference_pick(prefix, nets);
    match recommend(nets, hosts) {
        Ok(r) => {
            prop_assert_eq!(r.prefix, prefix);
            prop_assert_eq!(r.hosts, hosts);
            prop_assert_eq!(r.recommended.prefix(), prefix);
            prop_assert!(r.recommended.hosts() >= hosts * GROWTH);
            prop_assert!(POOLS.iter().any(|p| p.covers(&r.recommended)));
            prop_assert!(is_free(r.recommended, nets));
            prop_assert_eq!(Some(r.recommended), expected);
            // The listing: free, maximal, in its pool, large enough,
            // the largest ones, bounded.
            let mut omitted = 0;
            for pool in POOLS {
                let all = free_ranges(pool, nets);
                let mine: Vec<Cidr> = r
                    .free
                    .iter()
                    .filter(|f| f.pool == pool)
                    .map(|f| f.block)
                    .collect();
                let eligible = all.iter().filter(|b| b.prefix() <= prefix).count();
                prop_assert_eq!(mine.len(), eligible.min(MAX_FREE_PER_POOL));
                omitted += eligible - mine.len();
                prop_assert!(mine.windows(2).all(|w| w[0].addr() < w[1].addr()));
                let smallest = mine.iter().map(|b| b.prefix()).max().unwrap_or(0);
                for b in &all {
                    if b.prefix() <= prefix && !mine.contains(b) {
                        prop_assert!(b.prefix() >= smallest);
                    }
                }
                for b in &mine {
                    prop_assert!(pool.covers(b));
                    prop_assert!(b.prefix() <= prefix);
                    prop_assert!(is_free(*b, nets));
                    prop_assert!(all.contains(b));
                }
            }
            prop_assert_eq!(r.omitted, omitted);
            prop_assert!(r.free.iter().all(|f| POOLS.contains(&f.pool)));
        }
        Err(e) => {
            prop_assert_eq!(e, AddrSpaceError::NoRoom { prefix, hosts });
            prop_assert_eq!(expected, None);
        }
    }
    // The replacement of a conflicting overlay of that size follows
    // the same rule.
    if let Some(b) = expected {
        for n in nets.iter().filter(|n| n.prefix() >= MIN_HOST_NET_PREFIX) {
            let overlay = Cidr::new(n.addr(), prefix).unwrap();
            prop_assert!(conflicts(overlay, nets).contains(n));
            prop_assert_eq!(replacement(overlay, nets), Some(b));
        }
    }
    Ok(())
}

/// `free_ranges` covers exactly the free part of the pool, with
/// disjoint maximal blocks: checked on every aligned /`prefix`.
fn check_ranges(nets: &[Cidr], prefix: u8) -> Result<(), TestCaseError> {
    for pool in POOLS {
        let ranges = free_ranges(pool, nets);
        prop_assert!(ranges.windows(2).all(|w| w[0].last() < w[1].addr()));
        for r in &ranges {
            prop_assert!(pool.covers(r));
            prop_assert!(is_free(*r, nets));
            if r.prefix() > pool.prefix() {
                let parent = Cidr::new(r.addr(), r.prefix() - 1).unwrap();
                prop_assert!(!is_free(parent, nets), "{r} is not maximal");
            }
        }
        for b in blocks_top_down(pool, prefix) {
            let i = ranges.partition_point(|r| r.addr() <= b.addr());
            let covered = i > 0 && ranges[i - 1].covers(&b);
            prop_assert_eq!(is_free(b, nets), covered, "{}", b);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn recommendation_matches_exhaustive_search(
        nets in prop::collection::vec(host_net(), 0..12),
        hosts in host_count(),
    ) {
        check(&nets, hosts)?;
    }

    #[test]
    fn crowded_pools_match_exhaustive_search(nets in crowded(), hosts in host_count()) {
        check(&nets, hosts)?;
    }

    #[test]
    fn free_ranges_are_exactly_the_free_space(
        nets in prop::collection::vec(host_net(), 0..12),
        prefix in 12u8..=24,
    ) {
        check_ranges(&nets, prefix)?;
    }
}
