//! Longest-prefix-match table from overlay addresses to peers ("allowed IPs").
//!
//! One hash map per prefix length in use; a lookup probes the lengths in use
//! from longest to shortest, so it costs at most one hash probe per distinct
//! prefix length (typically 1–3), independent of the number of peers.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

/// An IP network: address and prefix length (host bits are masked on insert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length (0–32 for IPv4, 0–128 for IPv6).
    pub prefix: u8,
}

impl IpNet {
    /// A network; `None` if the prefix is too long for the address family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// The network with host bits cleared (and the prefix clamped to the family).
    pub fn masked(self) -> Self {
        let prefix = self.prefix.min(if self.addr.is_ipv4() { 32 } else { 128 });
        let addr = match self.addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(self.prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(self.prefix)).into()),
        };
        Self { addr, prefix }
    }

    /// True if `ip` lies inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.addr.is_ipv4() == ip.is_ipv4()
            && IpNet {
                addr: ip,
                prefix: self.prefix,
            }
            .masked()
            .addr
                == self.masked().addr
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

/// Multiplicative hasher for integer keys that come from our own masking.
#[derive(Default)]
struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (u64::from(n) ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ self.0.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Per-family table: prefix length → (masked network → value).
#[derive(Debug, Clone)]
struct Family<K, V> {
    by_len: Vec<IntMap<K, V>>,
    lens: Vec<u8>,
}

impl<K: std::hash::Hash + Eq + Copy, V: Copy> Family<K, V> {
    fn new(max: u8) -> Self {
        Self {
            by_len: (0..=max).map(|_| IntMap::default()).collect(),
            lens: Vec::new(),
        }
    }
    fn insert(&mut self, key: K, prefix: u8, value: V) {
        self.by_len[usize::from(prefix)].insert(key, value);
        if !self.lens.contains(&prefix) {
            self.lens.push(prefix);
            self.lens.sort_unstable_by(|a, b| b.cmp(a));
        }
    }
    fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        for m in &mut self.by_len {
            m.retain(|_, v| keep(v));
        }
        let by_len = &self.by_len;
        self.lens.retain(|l| !by_len[usize::from(*l)].is_empty());
    }
    fn lookup(&self, mask_key: impl Fn(u8) -> K) -> Option<V> {
        self.lens
            .iter()
            .find_map(|&l| self.by_len[usize::from(l)].get(&mask_key(l)).copied())
    }
}

/// The table: IPv4 and IPv6 networks mapped to values (peer handles).
#[derive(Debug, Clone)]
pub struct AllowedIps<V> {
    v4: Family<u32, V>,
    v6: Family<u128, V>,
}

impl<V: Copy + PartialEq> Default for AllowedIps<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Copy + PartialEq> AllowedIps<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            v4: Family::new(32),
            v6: Family::new(128),
        }
    }

    /// Maps `net` to `value`, replacing any previous owner of exactly that network.
    pub fn insert(&mut self, net: IpNet, value: V) {
        let net = net.masked();
        match net.addr {
            IpAddr::V4(a) => self.v4.insert(u32::from(a), net.prefix, value),
            IpAddr::V6(a) => self.v6.insert(u128::from(a), net.prefix, value),
        }
    }

    /// The value that owns exactly `net`, if any.
    pub fn owner(&self, net: IpNet) -> Option<V> {
        let net = net.masked();
        match net.addr {
            IpAddr::V4(a) => self.v4.by_len[usize::from(net.prefix)]
                .get(&u32::from(a))
                .copied(),
            IpAddr::V6(a) => self.v6.by_len[usize::from(net.prefix)]
                .get(&u128::from(a))
                .copied(),
        }
    }

    /// Removes every network that maps to `value`.
    pub fn remove_value(&mut self, value: V) {
        self.v4.retain(|v| *v != value);
        self.v6.retain(|v| *v != value);
    }

    /// The value of the longest prefix containing `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<V> {
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.lookup(|l| a & mask32(l))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.lookup(|l| a & mask128(l))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        let (a, p) = s.split_once('/').unwrap_or((s, "32"));
        IpNet::new(
            a.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            p.parse().unwrap_or(32),
        )
        .unwrap_or(IpNet {
            addr: IpAddr::from([0, 0, 0, 0]),
            prefix: 0,
        })
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = AllowedIps::new();
        t.insert(net("0.0.0.0/0"), 0);
        t.insert(net("100.64.0.0/10"), 1);
        t.insert(net("100.64.0.7/32"), 2);
        t.insert(net("fd00::/8"), 3);
        assert_eq!(
            t.lookup("100.64.0.7".parse().unwrap_or(IpAddr::from([0; 4]))),
            Some(2)
        );
        assert_eq!(
            t.lookup("100.64.9.9".parse().unwrap_or(IpAddr::from([0; 4]))),
            Some(1)
        );
        assert_eq!(
            t.lookup("8.8.8.8".parse().unwrap_or(IpAddr::from([0; 4]))),
            Some(0)
        );
        assert_eq!(
            t.lookup("fd12::1".parse().unwrap_or(IpAddr::from([0; 4]))),
            Some(3)
        );
        assert_eq!(
            t.lookup("fe80::1".parse().unwrap_or(IpAddr::from([0; 4]))),
            None
        );
        t.remove_value(2);
        assert_eq!(
            t.lookup("100.64.0.7".parse().unwrap_or(IpAddr::from([0; 4]))),
            Some(1)
        );
    }

    proptest! {
        /// LPM agrees with a linear scan over all inserted networks.
        #[test]
        fn agrees_with_linear_scan(nets in proptest::collection::vec((any::<u32>(), 0u8..=32), 1..40),
                                   probes in proptest::collection::vec(any::<u32>(), 1..60)) {
            let mut t = AllowedIps::new();
            let mut list: Vec<(IpNet, usize)> = Vec::new();
            for (i, (a, p)) in nets.iter().enumerate() {
                let n = IpNet { addr: IpAddr::from(a.to_be_bytes()), prefix: *p }.masked();
                t.insert(n, i);
                list.retain(|(m, _)| *m != n);
                list.push((n, i));
            }
            for p in probes {
                let ip = IpAddr::from(p.to_be_bytes());
                let want = list.iter().filter(|(n, _)| n.contains(ip)).max_by_key(|(n, _)| n.prefix).map(|(_, v)| *v);
                prop_assert_eq!(t.lookup(ip), want);
            }
        }
    }
}
