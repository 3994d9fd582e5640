//! Which of a peer's endpoints to send to. A member advertises endpoints on
//! its own host addresses and the reflexive endpoints others see it at (a
//! NAT's public address). Private addresses are only comparable inside one
//! site: two clouds may use the same subnet, even the same host address, so
//! a peer's private endpoint is used only when both nodes sit behind the
//! same public address (or neither is behind a NAT); otherwise its
//! reflexive endpoint is used, which also makes both sides send to each
//! other's NAT at once — the simultaneous open that punches cone NATs.

use crate::member::MemberRecord;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

/// The public addresses a member is seen at (empty: nobody reported one).
fn site(m: &MemberRecord) -> BTreeSet<IpAddr> {
    m.reflexive.iter().map(SocketAddr::ip).collect()
}

/// True if `m` is seen at an address of its own (no NAT in between), or
/// nobody reported seeing it elsewhere.
pub fn unnatted(m: &MemberRecord) -> bool {
    m.reflexive
        .iter()
        .all(|r| m.endpoints.iter().any(|e| e.ip() == r.ip()))
}

/// The endpoint `me` should send to for `peer`.
pub fn choose_endpoint(me: &MemberRecord, peer: &MemberRecord) -> Option<SocketAddr> {
    let same_site = !site(peer).is_disjoint(&site(me));
    let local = peer.endpoints.iter().find(|e| match e.ip() {
        IpAddr::V4(ip) => me.host_networks.iter().any(|n| n.contains(ip)),
        IpAddr::V6(_) => false,
    });
    if same_site || (unnatted(me) && unnatted(peer)) {
        if let Some(e) = local {
            return Some(*e);
        }
    }
    peer.reflexive
        .first()
        .or_else(|| peer.endpoints.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(endpoint: &str, net: &str, reflexive: &[&str]) -> MemberRecord {
        MemberRecord {
            endpoints: vec![endpoint.parse().unwrap()],
            reflexive: reflexive.iter().map(|r| r.parse().unwrap()).collect(),
            host_networks: vec![net.parse().unwrap()],
            ..MemberRecord::example("n")
        }
    }

    #[test]
    fn flat_lan_uses_host_addresses() {
        let a = node("198.18.0.1:51820", "198.18.0.0/24", &["198.18.0.1:51820"]);
        let b = node("198.18.0.2:51820", "198.18.0.0/24", &[]);
        assert_eq!(
            choose_endpoint(&a, &b),
            Some("198.18.0.2:51820".parse().unwrap())
        );
    }

    #[test]
    fn same_nat_uses_the_private_address() {
        let a1 = node(
            "192.168.2.10:51820",
            "192.168.2.0/24",
            &["198.18.0.5:51820"],
        );
        let a2 = node(
            "192.168.2.11:51820",
            "192.168.2.0/24",
            &["198.18.0.5:40000"],
        );
        assert_eq!(
            choose_endpoint(&a1, &a2),
            Some("192.168.2.11:51820".parse().unwrap())
        );
    }

    #[test]
    fn duplicate_subnets_behind_different_nats_use_reflexive_endpoints() {
        let a = node(
            "192.168.2.10:51820",
            "192.168.2.0/24",
            &["198.18.0.5:51820"],
        );
        let b = node(
            "192.168.2.10:51820",
            "192.168.2.0/24",
            &["198.18.0.6:51820"],
        );
        assert_eq!(
            choose_endpoint(&a, &b),
            Some("198.18.0.6:51820".parse().unwrap())
        );
        assert_eq!(
            choose_endpoint(&b, &a),
            Some("198.18.0.5:51820".parse().unwrap())
        );
    }

    #[test]
    fn a_natted_node_reaches_a_public_one_at_its_own_address() {
        let a = node(
            "192.168.2.10:51820",
            "192.168.2.0/24",
            &["198.18.0.5:51820"],
        );
        let p = node("198.18.0.1:51820", "198.18.0.0/24", &["198.18.0.1:51820"]);
        assert_eq!(
            choose_endpoint(&a, &p),
            Some("198.18.0.1:51820".parse().unwrap())
        );
        assert_eq!(
            choose_endpoint(&p, &a),
            Some("198.18.0.5:51820".parse().unwrap())
        );
    }
}
