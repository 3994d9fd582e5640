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
#[derive(Clone)]
pub struct Roster<'a> {
    ledger: &'a Ledger,
    partners: &'a Partners,
    /// The partner networks whose agreement exposes this node (none while
    /// it is not an active member), found once when the roster is made.
    connected: Vec<NetworkId>,
}

impl<'a> Roster<'a> {
    /// The roster of `me` over its network's `ledger` and its `partners`
    /// at `now_ms`.
    pub fn new(ledger: &'a Ledger, partners: &'a Partners, me: NodeId, now_ms: u64) -> Self {
        let us = ledger.network().id;
        let connected = ledger
            .member(&me, now_ms)
            .filter(|m| m.status == Status::Active)
            .map(|m| {
                partners
                    .networks()
                    .filter(|n| {
                        partners
                            .agreement(n)
                            .is_some_and(|a| a.exposes(&us, leaf_tags(m.record)))
                    })
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        Self {
            ledger,
            partners,
            connected,
        }
    }

    /// The own network's ledger.
    pub fn ledger(&self) -> &'a Ledger {
        self.ledger
    }

    /// The partner networks this node is connected to: those whose
    /// agreement exposes it (none while it is not an active member).
    pub fn connected_networks(&self) -> &[NetworkId] {
        &self.connected
    }

    /// The overlay ranges of the connected partner networks.
    pub fn partner_ranges(&self) -> Vec<Cidr> {
        let us = self.ledger.network().id;
        self.connected
            .iter()
            .filter_map(|n| self.partners.agreement(n)?.other(&us).map(|s| s.cidr))
            .collect()
    }

    /// Every member of the own network, then every exposed member of the
    /// connected partner networks, with its standing.
    pub fn members(&self, now_ms: u64) -> Vec<Member<'a>> {
        let mut all = self.ledger.members(now_ms);
        for n in &self.connected {
            if let Some(l) = self.partners.ledger(n) {
                all.extend(l.members(now_ms));
            }
        }
        all
    }

    /// The member `id`, of the own network or a connected partner.
    pub fn member(&self, id: &NodeId, now_ms: u64) -> Option<Member<'a>> {
        self.ledger.member(id, now_ms).or_else(|| {
            self.connected
                .iter()
                .find_map(|n| self.partners.ledger(n)?.member(id, now_ms))
        })
    }

    /// Who owns each overlay address: the own network's owners, then each
    /// connected partner's (its range is disjoint from ours and checked at
    /// ingest).
    pub fn address_owners(&self, now_ms: u64) -> BTreeMap<Ipv4Addr, NodeId> {
        let mut owners = self.ledger.address_owners(now_ms);
        for n in &self.connected {
            if let Some(l) = self.partners.ledger(n) {
                for (address, id) in l.address_owners(now_ms) {
                    owners.entry(address).or_insert(id);
                }
            }
        }
        owners
    }
}
