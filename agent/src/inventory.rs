//! What the host looks like from here: its addresses (endpoint candidates)
//! and the networks it is attached to (for overlap checks).

use anyhow::Result;
use drivers::netlink::Netlink;
use federation::Cidr;
use std::net::IpAddr;

/// The host's usable addresses and IPv4 networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Addresses other hosts might reach us at, best first (IPv4 first).
    pub addrs: Vec<IpAddr>,
    /// IPv4 networks of the host's interfaces.
    pub networks: Vec<Cidr>,
    /// Smallest MTU of the interfaces holding those addresses.
    pub mtu: Option<u16>,
}

fn usable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

/// Scans the host's addresses, leaving out interface `skip` (our TUN) and
/// anything inside `overlay`.
pub async fn scan(skip: Option<u32>, overlay: Option<Cidr>) -> Result<Inventory> {
    let nl = Netlink::connect("host")?;
    let mut inv = Inventory::default();
    let mtus: std::collections::BTreeMap<u32, u32> = nl.mtus().await?.into_iter().collect();
    let mut all = nl.addresses().await?;
    all.sort_by_key(|(_, ip, _)| (ip.is_ipv6(), *ip));
    for (index, ip, prefix) in all {
        if Some(index) == skip || !usable(&ip) {
            continue;
        }
        if let IpAddr::V4(v4) = ip {
            if overlay.is_some_and(|o| o.contains(v4)) {
                continue;
            }
            if let Some(net) = Cidr::new(v4, prefix) {
                if !inv.networks.contains(&net) {
                    inv.networks.push(net);
                }
            }
        }
        if !inv.addrs.contains(&ip) {
            inv.addrs.push(ip);
        }
        if let Some(m) = mtus.get(&index).and_then(|m| u16::try_from(*m).ok()) {
            inv.mtu = Some(inv.mtu.map_or(m, |x| x.min(m)));
        }
    }
    Ok(inv)
}
