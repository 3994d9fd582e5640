use super::*;
use proptest::prelude::*;

fn c(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn cs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|s| c(s)).collect()
}

fn rec(nets: &[&str], hosts: u64) -> Cidr {
    recommend(&cs(nets), hosts).unwrap().recommended
}

#[test]
fn pools_and_preference_are_what_they_say() {
    assert_eq!(
        POOLS.map(|p| p.to_string()),
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
    );
    for region in PREFERENCE {
        assert!(POOLS.iter().any(|p| p.covers(&region)), "{region}");
    }
}

#[test]
fn sizes_for_hosts_plus_growth() {
    let cases = [
        (0, 24),
        (1, 24),
        (10, 24),
        (63, 24), // 252 ≤ 254
        (64, 23), // 256 > 254
        (100, 23),
        (127, 23), // 508 ≤ 510
        (128, 22),
        (1000, 20),
        (1023, 20), // 4092 ≤ 4094
        (1024, 19),
        (60_000, 14),
        (4_194_303, 8),
        (16_777_214, 8),
        (u64::MAX, 8),
    ];
    for (hosts, prefix) in cases {
        assert_eq!(prefix_for(hosts), prefix, "{hosts} hosts");
    }
}

/// A deterministic generator for the draws.
struct Counter(u64);

impl rand_core::RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        u32::try_from(self.next_u64() >> 32).unwrap()
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_core::impls::fill_bytes_via_next(self, dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

#[test]
fn draws_spread_over_the_region_and_avoid_host_networks() {
    let nets = cs(&["10.0.0.0/16", "10.64.0.0/10"]);
    let mut rng = Counter(7);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let d = draw(&nets, 10, &mut rng).unwrap();
        assert_eq!(d.region, c("10.0.0.0/9"));
        assert_eq!(d.block.prefix(), 24);
        assert!(d.region.covers(&d.block), "{d:?}");
        assert!(conflicts(d.block, &nets).is_empty(), "{d:?}");
        // 10.0.0.0/9 without a /16 and a /10: 32768 - 256 - 16384.
        assert_eq!(d.choices, 16_128);
        seen.insert(d.block);
    }
    assert!(
        seen.len() > 190,
        "200 draws gave only {} blocks",
        seen.len()
    );
    // Only one free /24 left: it is the one drawn.
    let nets = cs(&[
        "10.0.0.0/9",
        "10.128.0.0/9",
        "192.168.0.0/17",
        "192.168.128.0/18",
        "192.168.192.0/19",
        "192.168.224.0/20",
        "192.168.240.0/21",
        "192.168.248.0/22",
        "192.168.252.0/23",
        "192.168.254.0/24",
    ]);
    let d = draw(&nets, 10, &mut rng).unwrap();
    assert_eq!((d.block, d.choices), (c("192.168.255.0/24"), 1));
    let all = cs(&["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]);
    assert_eq!(
        draw(&all, 10, &mut rng).unwrap_err(),
        AddrSpaceError::NoRoom {
            prefix: 24,
            hosts: 10
        }
    );
    assert!(draw(&[], 16_777_215, &mut rng).is_err());
    assert_eq!(
        draw(&[], 16_777_214, &mut rng).unwrap().block,
        c("10.0.0.0/8")
    );
}

proptest! {
    #[test]
    fn a_draw_is_free_aligned_and_sized(
        seed in any::<u64>(),
        raw in proptest::collection::vec((any::<u32>(), 8u8..=32), 0..12),
        hosts in 0u64..100_000,
    ) {
        let nets: Vec<Cidr> = raw
            .iter()
            .filter_map(|(a, p)| Cidr::new(Ipv4Addr::from(*a), *p))
            .collect();
        let mut rng = Counter(seed);
        match draw(&nets, hosts, &mut rng) {
            Ok(d) => {
                prop_assert_eq!(d.block.prefix(), prefix_for(hosts));
                prop_assert!(conflicts(d.block, &nets).is_empty());
                prop_assert!(d.region.covers(&d.block));
            }
            Err(_) => prop_assert!(recommend(&nets, hosts).is_err()),
        }
    }
}

#[test]
fn nothing_in_the_way_gives_the_top_of_10_0_0_0_slash_9() {
    assert_eq!(rec(&[], 10), c("10.127.255.0/24"));
    assert_eq!(rec(&[], 100), c("10.127.254.0/23"));
    assert_eq!(rec(&[], 1000), c("10.127.240.0/20"));
    assert_eq!(rec(&[], 5_000_000), c("10.0.0.0/8"));
}

#[test]
fn cloud_and_home_defaults_are_avoided() {
    // AWS default VPC, GCP auto mode, Azure, a home router: none of them
    // is near the recommendation, which therefore does not move.
    let all = [
        "172.31.0.0/16",
        "10.128.0.0/9",
        "10.0.0.0/16",
        "192.168.1.0/24",
    ];
    for net in all {
        let r = recommend(&cs(&[net]), 10).unwrap();
        assert_eq!(r.recommended, c("10.127.255.0/24"), "{net}");
        assert!(conflicts(r.recommended, &cs(&[net])).is_empty());
    }
    assert_eq!(rec(&all, 10), c("10.127.255.0/24"));
}

#[test]
fn steps_down_past_taken_blocks() {
    assert_eq!(rec(&["10.127.255.7/16"], 10), c("10.126.255.0/24"));
    assert_eq!(rec(&["10.127.255.1/32"], 10), c("10.127.254.0/24"));
    assert_eq!(rec(&["10.127.0.0/16"], 1000), c("10.126.240.0/20"));
    // 10.0.0.0/9 taken: the top of 10/8 (GCP's half) is next.
    assert_eq!(rec(&["10.0.0.0/9"], 10), c("10.255.255.0/24"));
    // 10/8 taken: 192.168/16, then 172.16/12.
    assert_eq!(rec(&["10.0.0.0/8"], 10), c("192.168.255.0/24"));
    assert_eq!(
        rec(&["10.0.0.0/8", "192.168.0.0/16"], 10),
        c("172.31.255.0/24")
    );
    assert_eq!(
        rec(&["10.0.0.0/8", "192.168.0.0/16", "172.31.0.0/16"], 10),
        c("172.30.255.0/24")
    );
    // A /11 is too big for 192.168/16 and 172.16/12 once 10/8 is taken.
    let err = recommend(&cs(&["10.0.0.0/8"]), 1 << 18).unwrap_err();
    assert_eq!(
        err,
        AddrSpaceError::NoRoom {
            prefix: 11,
            hosts: 1 << 18
        }
    );
}

#[test]
fn all_pools_taken_is_an_error_that_says_what_to_do() {
    let nets = cs(&["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]);
    let err = recommend(&nets, 10).unwrap_err();
    assert_eq!(
        err,
        AddrSpaceError::NoRoom {
            prefix: 24,
            hosts: 10
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("--cidr") && msg.contains("/24"), "{msg}");
    // Pieces that add up to the pools count the same.
    let pieces = cs(&[
        "10.0.0.0/9",
        "10.128.0.0/9",
        "172.16.0.0/13",
        "172.24.0.0/13",
        "192.168.0.0/17",
        "192.168.128.0/17",
    ]);
    assert!(recommend(&pieces, 10).is_err());
    // One /24 hole is found, wherever it is.
    let mut holed = pieces.clone();
    holed[5] = c("192.168.128.0/18");
    holed.extend(cs(&["192.168.192.0/19", "192.168.224.0/20"]));
    holed.extend(cs(&["192.168.240.0/21", "192.168.248.0/22"]));
    holed.extend(cs(&["192.168.252.0/23", "192.168.255.0/24"]));
    let r = recommend(&holed, 10).unwrap();
    assert_eq!(r.recommended, c("192.168.254.0/24"));
    assert_eq!(
        r.free,
        vec![FreeBlock {
            pool: c("192.168.0.0/16"),
            block: c("192.168.254.0/24")
        }]
    );
    assert!(recommend(&holed, 100).is_err());
}

#[test]
fn too_many_hosts_is_an_error() {
    assert!(recommend(&[], 16_777_214).is_ok());
    let err = recommend(&[], 16_777_215).unwrap_err();
    assert_eq!(err, AddrSpaceError::TooManyHosts { hosts: 16_777_215 });
    assert!(err.to_string().contains("fewer hosts"));
}

#[test]
fn default_and_summary_routes_are_ignored() {
    let nets = cs(&["0.0.0.0/0", "10.0.0.0/7", "192.0.0.0/2"]);
    assert_eq!(rec(&["0.0.0.0/0"], 10), c("10.127.255.0/24"));
    assert_eq!(recommend(&nets, 10), recommend(&[], 10));
    assert!(conflicts(c("10.127.255.0/24"), &nets).is_empty());
    // A /8 still counts.
    assert_eq!(rec(&["10.0.0.0/8"], 10), c("192.168.255.0/24"));
}

#[test]
fn free_listing_is_maximal_and_bounded() {
    // Azure's 10.0.0.0/16 leaves exactly eight blocks of 10/8.
    let r = recommend(&cs(&["10.0.0.0/16"]), 10).unwrap();
    let ten: Vec<String> = r
        .free
        .iter()
        .filter(|f| f.pool == POOLS[0])
        .map(|f| f.block.to_string())
        .collect();
    assert_eq!(
        ten,
        [
            "10.1.0.0/16",
            "10.2.0.0/15",
            "10.4.0.0/14",
            "10.8.0.0/13",
            "10.16.0.0/12",
            "10.32.0.0/11",
            "10.64.0.0/10",
            "10.128.0.0/9"
        ]
    );
    // Untouched pools are listed whole.
    assert!(r.free.contains(&FreeBlock {
        pool: POOLS[1],
        block: POOLS[1]
    }));
    assert_eq!(r.omitted, 0);

    // A home router's /24 leaves 192.168.0.0/24 and seven larger blocks.
    let home = free_ranges(POOLS[2], &cs(&["192.168.1.0/24"]));
    assert_eq!(home.len(), 8);
    assert_eq!(home[0], c("192.168.0.0/24"));
    assert_eq!(home[7], c("192.168.128.0/17"));

    // A /32 leaves 16 blocks in 192.168/16: only the 8 of at least a
    // /24 qualify for 10 hosts, only 192.168.128.0/17 for 5000 (a /17).
    let nets = cs(&["10.0.0.0/8", "172.16.0.0/12", "192.168.1.1/32"]);
    assert_eq!(free_ranges(POOLS[2], &nets).len(), 16);
    let r = recommend(&nets, 10).unwrap();
    assert_eq!(r.free.len(), 8);
    assert_eq!(r.omitted, 0);
    assert_eq!(r.recommended, c("192.168.255.0/24"));
    let r = recommend(&nets, 5000).unwrap();
    assert_eq!(r.prefix, 17);
    assert_eq!(r.free.len(), 1);
    assert_eq!(r.recommended, c("192.168.128.0/17"));
    let many: Vec<Cidr> = (0..32u8)
        .map(|i| Cidr::new(Ipv4Addr::new(192, 168, i * 8, 1), 32).unwrap())
        .chain(cs(&["10.0.0.0/8", "172.16.0.0/12"]))
        .collect();
    // One /32 in each /21 of 192.168/16: 32 free /22s, 8 listed.
    let r = recommend(&many, 200).unwrap();
    assert_eq!(r.prefix, 22);
    assert_eq!(r.free.len(), MAX_FREE_PER_POOL);
    assert_eq!(r.omitted, 32 - MAX_FREE_PER_POOL);
}

#[test]
fn conflicts_name_the_overlapping_host_networks() {
    let nets = cs(&[
        "10.0.1.0/24",
        "192.168.1.0/24",
        "10.0.0.0/8",
        "10.0.1.9/24",
        "0.0.0.0/0",
    ]);
    assert_eq!(
        conflicts(c("10.0.0.0/16"), &nets),
        cs(&["10.0.1.0/24", "10.0.0.0/8"])
    );
    assert!(conflicts(c("172.16.0.0/12"), &nets).is_empty());
}

#[test]
fn replacement_keeps_the_size_and_dodges_the_conflict() {
    let aws = cs(&["172.31.0.0/16"]);
    assert_eq!(
        replacement(c("172.31.0.0/16"), &aws),
        Some(c("10.127.0.0/16"))
    );
    assert_eq!(
        replacement(c("172.31.5.0/24"), &aws),
        Some(c("10.127.255.0/24"))
    );
    // No conflict: keep it, even outside the pools.
    assert_eq!(
        replacement(c("100.64.0.0/10"), &aws),
        Some(c("100.64.0.0/10"))
    );
    assert_eq!(
        replacement(c("100.64.0.0/10"), &cs(&["100.100.0.0/16"])),
        Some(c("10.64.0.0/10"))
    );
    // Too large for any pool, or every pool taken.
    assert_eq!(replacement(c("96.0.0.0/4"), &cs(&["100.64.0.0/10"])), None);
    let full = cs(&["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]);
    assert_eq!(replacement(c("10.1.0.0/16"), &full), None);
}

#[test]
fn serializes_cidrs_as_strings() {
    let r = recommend(&cs(&["10.0.0.0/16"]), 10).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["recommended"], "10.127.255.0/24");
    assert_eq!(v["prefix"], 24);
    assert_eq!(v["free"][0]["pool"], "10.0.0.0/8");
    assert_eq!(v["free"][0]["block"], "10.1.0.0/16");
    assert_eq!(v["omitted"], 0);
}

// Property tests against brute-force references.
mod reference;
