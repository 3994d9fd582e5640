//! Everyone this node may have a tunnel with: the members of its own
//! network, and the members of federated networks that the agreement
//! connects it to (the partner exposes them, and this network exposes
//! this node to that partner). The data plane's peers, the path
//! decisions and the probes read this, not a single ledger; gossip,
//! admission and liveness stay with the own network's ledger.

use crate::cidr::Cidr;
use crate::ledger::{leaf_tags, Ledger, Member, Status};
use crate::network::NetworkId;
use crate::partners::Partners;
use crate::record::NodeId;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The own network's ledger and the partners, seen from node `me`.
#[derive(Clone, Copy)]
pub struct Roster<'a> {
    ledger: &'a Ledger,
    partners: &'a Partners,
    me: NodeId,
}

impl<'a> Roster<'a> {
    /// The roster of `me` over its network's `ledger` and its `partners`.
    pub fn new(ledger: &'a Ledger, partners: &'a Partners, me: NodeId) -> Self {
        Self {
            ledger,
            partners,
            me,
        }
    }

    /// The own network's ledger.
    pub fn ledger(&self) -> &'a Ledger {
        self.ledger
    }

    /// The partner networks this node is connected to: those whose
    /// agreement exposes it (none while it is not an active member).
    pub fn connected_networks(&self, now_ms: u64) -> Vec<NetworkId> {
        let Some(me) = self
            .ledger
            .member(&self.me, now_ms)
            .filter(|m| m.status == Status::Active)
        else {
            return vec![];
        };
        let us = self.ledger.network().id;
        self.partners
            .networks()
            .filter(|n| {
                self.partners
                    .agreement(n)
                    .is_some_and(|a| a.exposes(&us, leaf_tags(me.record)))
            })
            .copied()
            .collect()
    }

    /// The overlay ranges of the connected partner networks.
    pub fn partner_ranges(&self, now_ms: u64) -> Vec<Cidr> {
        let us = self.ledger.network().id;
        self.connected_networks(now_ms)
            .iter()
            .filter_map(|n| self.partners.agreement(n)?.other(&us).map(|s| s.cidr))
            .collect()
    }

    /// Every member of the own network, then every exposed member of the
    /// connected partner networks, with its standing.
    pub fn members(&self, now_ms: u64) -> Vec<Member<'a>> {
        let mut all = self.ledger.members(now_ms);
        for n in self.connected_networks(now_ms) {
            if let Some(l) = self.partners.ledger(&n) {
                all.extend(l.members(now_ms));
            }
        }
        all
    }

    /// The member `id`, of the own network or a connected partner.
    pub fn member(&self, id: &NodeId, now_ms: u64) -> Option<Member<'a>> {
        self.ledger.member(id, now_ms).or_else(|| {
            self.connected_networks(now_ms)
                .iter()
                .find_map(|n| self.partners.ledger(n)?.member(id, now_ms))
        })
    }

    /// Who owns each overlay address: the own network's owners, then each
    /// connected partner's (its range is disjoint from ours and checked at
    /// ingest).
    pub fn address_owners(&self, now_ms: u64) -> BTreeMap<Ipv4Addr, NodeId> {
        let mut owners = self.ledger.address_owners(now_ms);
        for n in self.connected_networks(now_ms) {
            if let Some(l) = self.partners.ledger(&n) {
                for (address, id) in l.address_owners(now_ms) {
                    owners.entry(address).or_insert(id);
                }
            }
        }
        owners
    }
}
