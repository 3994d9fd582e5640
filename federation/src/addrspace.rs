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
mod tests;
