//! IPv4 networks in CIDR notation (`100.64.0.0/10`): parsing, containment,
//! overlap and host enumeration, for overlay ranges and host networks.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: the address is always masked to the prefix.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IPv4 network like 100.64.0.0/16")]
pub struct CidrError(pub String);

impl Cidr {
    /// The network of `addr` with `prefix` bits (host bits are cleared);
    /// `None` if `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    /// [`Cidr::new`] usable in constants (`const POOL: Cidr = ...`): a
    /// prefix above 32 is clamped to 32 instead of refused.
    pub const fn new_clamped(addr: Ipv4Addr, prefix: u8) -> Self {
        let prefix = if prefix > 32 { 32 } else { prefix };
        Self {
            addr: Ipv4Addr::from_bits(addr.to_bits() & mask(prefix)),
            prefix,
        }
    }

    /// First address of the network.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Number of addresses in the network.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// Last address of the network.
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    /// True if `ip` lies inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// True if the two networks share at least one address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// True if `other` lies entirely inside.
    pub fn covers(&self, other: &Cidr) -> bool {
        self.prefix <= other.prefix && self.contains(other.addr)
    }

    /// Number of usable host addresses (network and broadcast excluded
    /// below /31).
    pub fn hosts(&self) -> u64 {
        if self.prefix >= 31 {
            self.size()
        } else {
            self.size() - 2
        }
    }

    /// The `index`-th usable host address (0-based), if there is one.
    pub fn host(&self, index: u64) -> Option<Ipv4Addr> {
        if index >= self.hosts() {
            return None;
        }
        let offset = if self.prefix >= 31 { index } else { index + 1 };
        Some(Ipv4Addr::from(u32::from(self.addr) + offset as u32))
    }

    /// True if `ip` is a usable host address of this network.
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && (self.prefix >= 31 || (ip != self.addr && ip != self.last()))
    }
}

const fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let err = || CidrError(s.to_string());
        let (a, p) = s.trim().split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| err())?;
        let prefix: u8 = p.parse().map_err(|_| err())?;
        Cidr::new(addr, prefix).ok_or_else(err)
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;
    fn try_from(s: String) -> Result<Self, CidrError> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_masks_and_prints() {
        assert_eq!(c("100.64.3.7/16").to_string(), "100.64.0.0/16");
        assert_eq!(c("0.0.0.0/0").size(), 1 << 32);
        for bad in ["100.64.0.0", "100.64.0.0/33", "x/8", "100.64.0.0/-1", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn overlap_and_hosts() {
        assert!(c("10.0.0.0/8").overlaps(&c("10.1.0.0/16")));
        assert!(c("10.1.0.0/16").overlaps(&c("10.0.0.0/8")));
        assert!(!c("10.0.0.0/16").overlaps(&c("10.1.0.0/16")));
        assert!(c("10.0.0.0/8").covers(&c("10.1.0.0/16")));
        assert!(!c("10.1.0.0/16").covers(&c("10.0.0.0/8")));
        let n = c("100.64.0.0/30");
        assert_eq!(n.hosts(), 2);
        assert_eq!(n.host(0), Some(Ipv4Addr::new(100, 64, 0, 1)));
        assert_eq!(n.host(2), None);
        assert!(!n.is_host(Ipv4Addr::new(100, 64, 0, 3)));
        assert!(n.is_host(Ipv4Addr::new(100, 64, 0, 2)));
    }

    #[test]
    fn const_constructor_masks_and_clamps() {
        const NET: Cidr = Cidr::new_clamped(Ipv4Addr::new(10, 1, 2, 3), 16);
        assert_eq!(NET, c("10.1.0.0/16"));
        let ip = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(Cidr::new_clamped(ip, 40), c("10.1.2.3/32"));
        assert_eq!(Cidr::new_clamped(ip, 0), c("0.0.0.0/0"));
    }
}
