//! Choosing the overlay's address range so it collides with no host network.
//!
//! The overlay must live in the private pools of RFC 1918 ([`POOLS`]:
//! 10.0.0.0/8, 172.16.0.0/12 and 192.168.0.0/16) and must not overlap any
//! network a member is attached to, or routes to the overlay would shadow
//! (or be shadowed by) the member's LAN. This module, pure and sans-IO:
//!
//! - sizes a block for a number of hosts plus room to grow ([`prefix_for`]);
//! - lists what is free in each pool as maximal aligned CIDR blocks
//!   ([`free_ranges`], bounded in [`Recommendation::free`]);
//! - recommends one block ([`recommend`]) by a fixed, documented preference
//!   that keeps away from the ranges clouds, container runtimes and home
//!   routers use by default, or draws one at random in the same region
//!   ([`draw`], what `init` does) so independent networks do not collide;
//! - names the host networks an existing overlay collides with
//!   ([`conflicts`]) and a same-sized range to move to ([`replacement`]).
//!
//! Host networks are taken as given, host bits already cleared by
//! [`Cidr`]. A "host network" broader than /8 (a default route 0.0.0.0/0 or
//! a summary route) is not a directly attached network: it would block every
//! candidate, so any prefix shorter than [`MIN_HOST_NET_PREFIX`] is ignored.
//! A /32 is handled like any other network: it blocks the blocks holding it.

use crate::cidr::Cidr;
use serde::Serialize;
use std::net::Ipv4Addr;

/// The RFC 1918 private pools, in address order.
pub const POOLS: [Cidr; 3] = [
    Cidr::new_clamped(Ipv4Addr::new(10, 0, 0, 0), 8),
    Cidr::new_clamped(Ipv4Addr::new(172, 16, 0, 0), 12),
    Cidr::new_clamped(Ipv4Addr::new(192, 168, 0, 0), 16),
];

/// Ranges an overlay may use besides [`POOLS`] without owning them: the
/// shared address space (RFC 6598) and the benchmarking range (RFC 2544),
/// neither routed on the Internet.
pub const ALSO_PRIVATE: [Cidr; 2] = [
    Cidr::new_clamped(Ipv4Addr::new(100, 64, 0, 0), 10),
    Cidr::new_clamped(Ipv4Addr::new(198, 18, 0, 0), 15),
];

/// True if `range` lies inside [`POOLS`] or [`ALSO_PRIVATE`]: address
/// space nobody reaches over the Internet.
pub fn is_private(range: &Cidr) -> bool {
    POOLS.iter().chain(&ALSO_PRIVATE).any(|p| p.covers(range))
}

/// Where [`recommend`] looks, in order; inside each region it takes the
/// highest-addressed free block.
///
/// - 10.0.0.0/9 first: the largest pool, below Google Cloud's auto-mode
///   range 10.128.0.0/9; its top (10.127.x) is far from Azure's and the AWS
///   wizard's 10.0.0.0/16, kubeadm's 10.96.0.0/12, flannel's 10.244.0.0/16
///   and k3s's 10.42.0.0/15.
/// - then the whole of 10.0.0.0/8 (the rest of it, or a /8 itself).
/// - then 192.168.0.0/16, whose top is far from home routers' 192.168.0.x,
///   192.168.1.x and 192.168.178.x.
/// - 172.16.0.0/12 last: Docker numbers its bridges upwards from 172.17/16
///   and the AWS default VPC is 172.31.0.0/16, so no end of it is quiet.
pub const PREFERENCE: [Cidr; 4] = [
    Cidr::new_clamped(Ipv4Addr::new(10, 0, 0, 0), 9),
    Cidr::new_clamped(Ipv4Addr::new(10, 0, 0, 0), 8),
    Cidr::new_clamped(Ipv4Addr::new(192, 168, 0, 0), 16),
    Cidr::new_clamped(Ipv4Addr::new(172, 16, 0, 0), 12),
];

/// Host networks with a shorter prefix than this are ignored (see the
/// module documentation).
pub const MIN_HOST_NET_PREFIX: u8 = 8;

/// Room to grow: a block holds at least this many times the hosts asked for.
pub const GROWTH: u64 = 4;

/// The smallest block ever recommended (a /24).
pub const SMALLEST_PREFIX: u8 = 24;

/// The largest block ever recommended (a /8, the largest pool).
pub const LARGEST_PREFIX: u8 = 8;

/// At most this many free blocks are listed per pool.
pub const MAX_FREE_PER_POOL: usize = 8;

/// Why no range could be recommended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrSpaceError {
    /// Every block of the needed size in every pool overlaps a host network.
    #[error(
        "no free /{prefix} (sized for {hosts} hosts) is left in 10.0.0.0/8, 172.16.0.0/12 or \
         192.168.0.0/16 once the host networks are excluded: choose an overlay range that \
         overlaps none of them yourself with --cidr"
    )]
    NoRoom {
        /// The block size that was looked for.
        prefix: u8,
        /// The hosts it was sized for.
        hosts: u64,
    },
    /// More hosts than the largest pool can number.
    #[error(
        "{hosts} hosts do not fit in the largest private pool (10.0.0.0/8 numbers 16777214): \
         ask for fewer hosts"
    )]
    TooManyHosts {
        /// The hosts asked for.
        hosts: u64,
    },
}

/// A free block of a pool: overlaps no host network, and is maximal (the
/// aligned block one bit larger is outside the pool or overlaps one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FreeBlock {
    /// The pool it lies in (one of [`POOLS`]).
    pub pool: Cidr,
    /// The free block.
    pub block: Cidr,
}

/// What `cladnet addr-space recommend` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recommendation {
    /// Prefix length of the needed block ([`prefix_for`] of `hosts`).
    pub prefix: u8,
    /// The hosts the block is sized for.
    pub hosts: u64,
    /// The recommended overlay range: a /`prefix` overlapping no host network.
    pub recommended: Cidr,
    /// Free blocks at least as large as a /`prefix`: per pool (in
    /// [`POOLS`] order) the [`MAX_FREE_PER_POOL`] largest (lower address
    /// first on ties), listed in address order.
    pub free: Vec<FreeBlock>,
    /// How many more such free blocks exist but were left out of `free`.
    pub omitted: usize,
}

/// Prefix length of the block sized for `hosts` plus growth.
///
/// The rule: the longest prefix whose usable addresses (network and
/// broadcast excluded) number at least [`GROWTH`] (4) times `hosts`, but
/// never longer than /24 ([`SMALLEST_PREFIX`]: small networks get a
/// comfortable /24) and never shorter than /8 ([`LARGEST_PREFIX`]: the
/// largest pool; past 4 194 303 hosts the growth room shrinks).
///
/// hosts 10 → /24 (40 ≤ 254); 100 → /23 (400 ≤ 510); 1000 → /20
/// (4000 ≤ 4094).
pub fn prefix_for(hosts: u64) -> u8 {
    let need = hosts.saturating_mul(GROWTH);
    (LARGEST_PREFIX..=SMALLEST_PREFIX)
        .rev()
        .find(|&p| usable(p) >= need)
        .unwrap_or(LARGEST_PREFIX)
}

/// Usable addresses of a block of prefix `p` (`p` ≤ 30).
fn usable(p: u8) -> u64 {
    (1u64 << (32 - u32::from(p))) - 2
}

/// Recommends an overlay range for `hosts` hosts that overlaps none of
/// `host_nets`, and lists the free blocks of each pool.
///
/// The rule: a block of exactly [`prefix_for`]`(hosts)`, the first found
/// searching the regions of [`PREFERENCE`] in order, each from its highest
/// address down. So, with nothing in the way, 10.127.255.0/24 for a small
/// network, 10.127.240.0/20 for 1000 hosts.
///
/// Why the top of 10.0.0.0/9: the given host networks are avoided for
/// certain, but members that join later bring networks nobody listed, and
/// those are most likely defaults, which crowd the low end of each pool
/// (Azure and the AWS wizard 10.0.0.0/16, Docker 172.17.0.0/16 upwards,
/// home routers 192.168.0.0/24 and 192.168.1.0/24) and, for Google Cloud,
/// the upper half of 10/8. Taking the highest free block rather than a
/// hash-derived one keeps the answer predictable and stable: a host network
/// elsewhere never moves it. (A node already in another cladnet overlay
/// lists that overlay among its host networks, so the two do not collide.)
/// `init` does not use this rule but [`draw`]s a block at random from the
/// same region, so networks created independently do not all share one.
///
/// Errors if `hosts` exceeds what a /8 numbers, or if no block of the
/// needed size is free in any pool.
pub fn recommend(host_nets: &[Cidr], hosts: u64) -> Result<Recommendation, AddrSpaceError> {
    if hosts > usable(LARGEST_PREFIX) {
        return Err(AddrSpaceError::TooManyHosts { hosts });
    }
    let prefix = prefix_for(hosts);
    let nets = relevant(host_nets);
    let recommended = pick(prefix, &nets).ok_or(AddrSpaceError::NoRoom { prefix, hosts })?;
    let mut free = Vec::new();
    let mut omitted = 0;
    for pool in POOLS {
        let mut blocks: Vec<Cidr> = free_ranges(pool, &nets)
            .into_iter()
            .filter(|b| b.prefix() <= prefix)
            .collect();
        blocks.sort_by_key(|b| (b.prefix(), b.addr()));
        omitted += blocks.len().saturating_sub(MAX_FREE_PER_POOL);
        blocks.truncate(MAX_FREE_PER_POOL);
        blocks.sort_by_key(|b| b.addr());
        free.extend(blocks.into_iter().map(|block| FreeBlock { pool, block }));
    }
    Ok(Recommendation {
        prefix,
        hosts,
        recommended,
        free,
        omitted,
    })
}

/// A block drawn at random by [`draw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Drawn {
    /// The overlay range drawn.
    pub block: Cidr,
    /// The region of [`PREFERENCE`] it was drawn from.
    pub region: Cidr,
    /// How many free blocks of that size the region offered.
    pub choices: u64,
}

/// Draws an overlay range for `hosts` hosts at random, the way `init` does
/// without `--cidr`: uniformly among the free /[`prefix_for`]`(hosts)`
/// blocks of the first region of [`PREFERENCE`] that has one (32,768 /24s
/// in 10.0.0.0/9 with nothing in the way), like an IPv6 ULA prefix.
/// Networks created independently then almost never share a range (two
/// small ones collide with odds of 1 in 32,768), which federating them
/// needs: their ranges must be disjoint. [`recommend`]'s fixed rule would
/// give every such network the same block.
///
/// Errors as [`recommend`] does. `rng` is the source of randomness (the
/// modulo bias over at most 2^24 choices is below 2^-40).
pub fn draw(
    host_nets: &[Cidr],
    hosts: u64,
    rng: &mut dyn rand_core::RngCore,
) -> Result<Drawn, AddrSpaceError> {
    if hosts > usable(LARGEST_PREFIX) {
        return Err(AddrSpaceError::TooManyHosts { hosts });
    }
    let prefix = prefix_for(hosts);
    let nets = relevant(host_nets);
    for region in PREFERENCE.iter().filter(|r| r.prefix() <= prefix) {
        let mut free = Vec::new();
        collect_free(*region, &nets, &mut free);
        let blocks = |f: &Cidr| 1u64 << (prefix - f.prefix());
        free.retain(|f| f.prefix() <= prefix);
        let choices: u64 = free.iter().map(blocks).sum();
        if choices == 0 {
            continue;
        }
        let mut pick = rng.next_u64() % choices;
        for f in &free {
            if pick < blocks(f) {
                let offset = pick << (32 - u32::from(prefix));
                let addr = u64::from(u32::from(f.addr())) + offset;
                let block = u32::try_from(addr)
                    .ok()
                    .and_then(|a| Cidr::new(Ipv4Addr::from(a), prefix))
                    .ok_or(AddrSpaceError::NoRoom { prefix, hosts })?;
                return Ok(Drawn {
                    block,
                    region: *region,
                    choices,
                });
            }
            pick -= blocks(f);
        }
    }
    Err(AddrSpaceError::NoRoom { prefix, hosts })
}

/// The part of `within` that overlaps none of `host_nets`, as maximal
/// aligned CIDR blocks in address order (the fewest blocks that cover it
/// exactly). Host networks shorter than [`MIN_HOST_NET_PREFIX`] are ignored.
///
/// E.g. 10.0.0.0/8 without 10.0.0.0/16 is 10.1.0.0/16, 10.2.0.0/15,
/// 10.4.0.0/14, …, 10.128.0.0/9. At most about 32 blocks per host network.
pub fn free_ranges(within: Cidr, host_nets: &[Cidr]) -> Vec<Cidr> {
    let nets = relevant(host_nets);
    let mut out = Vec::new();
    collect_free(within, &nets, &mut out);
    out
}

/// The host networks (of at least [`MIN_HOST_NET_PREFIX`] bits) that
/// overlap `overlay`, in the order given, each once.
pub fn conflicts(overlay: Cidr, host_nets: &[Cidr]) -> Vec<Cidr> {
    let mut out: Vec<Cidr> = Vec::new();
    for net in relevant(host_nets) {
        if net.overlaps(&overlay) && !out.contains(&net) {
            out.push(net);
        }
    }
    out
}

/// A range the size of `overlay` that overlaps none of `host_nets`: the
/// overlay itself if it has no [`conflicts`], otherwise the block of the
/// same prefix that [`recommend`]'s rule picks. `None` if no such block is
/// free in the pools (or `overlay` is larger than a /8).
pub fn replacement(overlay: Cidr, host_nets: &[Cidr]) -> Option<Cidr> {
    let nets = relevant(host_nets);
    if nets.iter().all(|n| !n.overlaps(&overlay)) {
        return Some(overlay);
    }
    pick(overlay.prefix(), &nets)
}

/// The host networks that count (see the module documentation).
fn relevant(host_nets: &[Cidr]) -> Vec<Cidr> {
    host_nets
        .iter()
        .copied()
        .filter(|n| n.prefix() >= MIN_HOST_NET_PREFIX)
        .collect()
}

/// The first free /`prefix` in [`PREFERENCE`] order, highest first within
/// each region.
fn pick(prefix: u8, nets: &[Cidr]) -> Option<Cidr> {
    PREFERENCE
        .iter()
        .find_map(|region| highest_free(*region, prefix, nets))
}

/// The two halves of `block`; `None` for a /32.
fn halves(block: Cidr) -> Option<(Cidr, Cidr)> {
    let p = block.prefix().checked_add(1).filter(|p| *p <= 32)?;
    let lower = Cidr::new(block.addr(), p)?;
    let upper_addr = u32::from(block.addr()) | (1u32 << (32 - u32::from(p)));
    let upper = Cidr::new(Ipv4Addr::from(upper_addr), p)?;
    Some((lower, upper))
}

/// The highest-addressed /`prefix` inside `block` that overlaps none of
/// `nets`. Visits O(32 × nets) blocks: a half overlapping no network
/// answers at once, a half inside one is dropped at once.
fn highest_free(block: Cidr, prefix: u8, nets: &[Cidr]) -> Option<Cidr> {
    if block.prefix() > prefix {
        return None;
    }
    let nets: Vec<Cidr> = nets
        .iter()
        .copied()
        .filter(|n| n.overlaps(&block))
        .collect();
    if nets.is_empty() {
        return Cidr::new(block.last(), prefix);
    }
    if block.prefix() == prefix || nets.iter().any(|n| n.covers(&block)) {
        return None;
    }
    let (lower, upper) = halves(block)?;
    highest_free(upper, prefix, &nets).or_else(|| highest_free(lower, prefix, &nets))
}

/// Appends the maximal free blocks of `block` to `out`, in address order.
fn collect_free(block: Cidr, nets: &[Cidr], out: &mut Vec<Cidr>) {
    let nets: Vec<Cidr> = nets
        .iter()
        .copied()
        .filter(|n| n.overlaps(&block))
        .collect();
    if nets.is_empty() {
        out.push(block);
        return;
    }
    if nets.iter().any(|n| n.covers(&block)) {
        return;
    }
    // Not covered, so not a /32: it splits.
    if let Some((lower, upper)) = halves(block) {
        collect_free(lower, &nets, out);
        collect_free(upper, &nets, out);
    }
}

#[cfg(test)]
mod tests {
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

    // --- property tests against brute-force references ---

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
}
