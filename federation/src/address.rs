//! Overlay address claims. Each node claims an address in its own record;
//! when two live members claim the same one, every node picks the same
//! winner (earliest claim, then lowest id) and the loser claims again, so
//! addresses become unique without a coordinator.

use crate::cidr::Cidr;
use crate::record::NodeId;
use blake2::digest::{FixedOutput, Update};
use blake2::Blake2s256;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// How long a departed member's address stays reserved (ms).
pub const LEFT_GRACE_MS: u64 = 10 * 60 * 1000;

/// The ordering of competing claims: the smaller key wins.
pub fn claim_rank(claimed_ms: u64, id: &NodeId) -> (u64, NodeId) {
    (claimed_ms, *id)
}

/// A free host address of `block` for node `id`, not in `taken`: starts at
/// a position derived from the node's id (so concurrent joiners spread out
/// instead of all taking the first free address) and probes upward.
/// `None` if the block is full.
pub fn pick(block: &Cidr, id: &NodeId, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let hosts = block.hosts();
    if hosts == 0 {
        return None;
    }
    let mut h = Blake2s256::default();
    Update::update(&mut h, b"cladnet/address/v1");
    Update::update(&mut h, &id.0);
    let digest: [u8; 32] = h.finalize_fixed().into();
    let mut start = [0u8; 8];
    start.copy_from_slice(&digest[..8]);
    let start = u64::from_le_bytes(start) % hosts;
    let limit = hosts.min(1 << 20);
    (0..limit)
        .filter_map(|i| block.host((start + i) % hosts))
        .find(|a| !taken.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NodeKey;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn picks_a_free_host_of_the_block(prefix in 24u8..31, taken_n in 0usize..300, seed in any::<[u8; 32]>()) {
            let block: Cidr = format!("100.64.0.0/{prefix}").parse().unwrap();
            let taken: BTreeSet<Ipv4Addr> = (0..taken_n as u64).filter_map(|i| block.host(i * 3 % block.hosts())).collect();
            let id = NodeKey::from_seed(&seed).id();
            match pick(&block, &id, &taken) {
                Some(a) => {
                    prop_assert!(block.is_host(a));
                    prop_assert!(!taken.contains(&a));
                }
                None => prop_assert_eq!(taken.len() as u64, block.hosts()),
            }
        }
    }

    #[test]
    fn different_nodes_start_apart() {
        let block: Cidr = "100.64.0.0/16".parse().unwrap();
        let none = BTreeSet::new();
        let picks: BTreeSet<_> = (0..20)
            .filter_map(|_| pick(&block, &NodeKey::generate().id(), &none))
            .collect();
        assert!(
            picks.len() >= 19,
            "20 joiners should rarely collide: {picks:?}"
        );
    }
}
