//! Which of a peer's endpoints to send to. A member publishes endpoints on
//! its own host addresses, the reflexive endpoints others see it at (a
//! NAT's public address) and the ones its operator advertised (a cloud's
//! 1:1 NAT). Private addresses are only comparable inside one site: two
//! clouds may use the same subnet, even the same host address, so a peer's
//! private endpoint is used only when both nodes sit behind the same public
//! address (or neither is behind a NAT); otherwise its advertised endpoint,
//! then its reflexive one is used, which also makes both sides send to each
//! other's NAT at once — the simultaneous open that punches cone NATs. An
//! endpoint on one of our own addresses is never a peer's (two VMs with the
//! same private address would talk to themselves).

use crate::member::MemberRecord;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

/// The public addresses a member is seen or advertised at (empty: nobody
/// reported one).
fn site(m: &MemberRecord) -> BTreeSet<IpAddr> {
    m.reflexive
        .iter()
        .chain(&m.advertised)
        .map(SocketAddr::ip)
        .collect()
}

/// True if `m` is seen at an address of its own (no NAT in between), or
/// nobody reported seeing it elsewhere.
pub fn unnatted(m: &MemberRecord) -> bool {
    m.reflexive
        .iter()
        .chain(&m.advertised)
        .all(|r| m.endpoints.iter().any(|e| e.ip() == r.ip()))
}

/// True if anyone can send to `m` unsolicited: it sits behind no NAT, or
/// its operator advertised where it is reached (a 1:1 NAT forwards all).
pub fn public(m: &MemberRecord) -> bool {
    unnatted(m) || !m.advertised.is_empty()
}

/// The endpoint `me` should send to for `peer`.
pub fn choose_endpoint(me: &MemberRecord, peer: &MemberRecord) -> Option<SocketAddr> {
    let mine: BTreeSet<IpAddr> = me.endpoints.iter().map(SocketAddr::ip).collect();
    let theirs = |e: &&SocketAddr| !mine.contains(&e.ip());
    let same_site = !site(peer).is_disjoint(&site(me));
    let local = peer.endpoints.iter().filter(theirs).find(|e| match e.ip() {
        IpAddr::V4(ip) => me.host_networks.iter().any(|n| n.contains(ip)),
        IpAddr::V6(_) => false,
    });
    if same_site || (unnatted(me) && unnatted(peer)) {
        if let Some(e) = local {
            return Some(*e);
        }
    }
    peer.advertised
        .iter()
        .chain(&peer.reflexive)
        .chain(&peer.endpoints)
        .find(theirs)
        .copied()
}

/// Where a member behind a NAT may be reached from outside its site: its
/// advertised endpoints, then the reflexive ones (several when its NAT
/// mapped some flows to other ports), without repeats. A hole punch tries
/// them all: which one its NAT keeps for us is not known in advance.
pub fn public_candidates(m: &MemberRecord) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for e in m.advertised.iter().chain(&m.reflexive) {
        if !out.contains(e) {
            out.push(*e);
        }
    }
    out
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
    fn public_candidates_are_advertised_then_reflexive_once_each() {
        let mut m = node(
            "10.0.0.5:51820",
            "10.0.0.0/24",
            &["198.18.0.4:59503", "198.18.0.4:51820"],
        );
        m.advertised = vec!["198.18.0.4:51820".parse().unwrap()];
        let got: Vec<String> = public_candidates(&m)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["198.18.0.4:51820", "198.18.0.4:59503"]);
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

    #[test]
    fn advertised_endpoints_come_first_and_our_own_address_is_never_a_peers() {
        // Two clouds' VMs with the same private address behind 1:1 NATs.
        let mut a = node("10.0.1.5:51820", "10.0.1.0/24", &[]);
        a.advertised = vec!["198.18.0.7:51820".parse().unwrap()];
        let b = node("10.0.1.5:51820", "10.0.1.0/24", &[]);
        // Before anyone saw b, b has only our own address: nothing.
        assert_eq!(choose_endpoint(&a, &b), None);
        assert_eq!(
            choose_endpoint(&b, &a),
            Some("198.18.0.7:51820".parse().unwrap()),
            "the advertised address, not b's own"
        );
        let mut b = b;
        b.reflexive = vec!["198.18.0.8:51820".parse().unwrap()];
        a.reflexive = vec!["198.18.0.7:51820".parse().unwrap()];
        assert_eq!(
            choose_endpoint(&a, &b),
            Some("198.18.0.8:51820".parse().unwrap())
        );
        assert!(public(&a) && !public(&b) && !unnatted(&a));
        // A VM next to a in the same cloud still uses the private address.
        let mut a2 = node("10.0.1.6:51820", "10.0.1.0/24", &["198.18.0.7:40000"]);
        assert_eq!(
            choose_endpoint(&a2, &a),
            Some("10.0.1.5:51820".parse().unwrap())
        );
        a2.reflexive.clear();
        assert_eq!(
            choose_endpoint(&a2, &a),
            Some("198.18.0.7:51820".parse().unwrap())
        );
    }
}
