//! Everyone this node may have a tunnel with: the members of its own
//! network, and the members of federated networks that the agreement
//! connects it to (the partner exposes or lends them, and this network
//! exposes or lends this node to that partner). The data plane's peers,
//! the path decisions and the probes read this, not a single ledger;
//! gossip, admission and liveness stay with the own network's ledger.
//!
//! Only some of them are hosts ([`Roster::is_host`]): a partner's member
//! is one when both sides expose their end. A tunnel with a lent relay (or,
//! on a lent relay, with the partner's members) carries relay envelopes
//! and echoes only: no overlay address, no route, no name.

use crate::agreement::Agreement;
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
    /// The partner networks whose agreement exposes or lends this node
    /// (none while it is not an active member), found once when the
    /// roster is made.
    connected: Vec<NetworkId>,
    /// Those of them that expose this node as a host.
    hosting: Vec<NetworkId>,
}

impl<'a> Roster<'a> {
    /// The roster of `me` over its network's `ledger` and its `partners`
    /// at `now_ms`.
    pub fn new(ledger: &'a Ledger, partners: &'a Partners, me: NodeId, now_ms: u64) -> Self {
        let us = ledger.network().id;
        let mine = ledger
            .member(&me, now_ms)
            .filter(|m| m.status == Status::Active)
            .map(|m| leaf_tags(m.record));
        let partners_where = |f: fn(&Agreement, &NetworkId, &[String]) -> bool| -> Vec<NetworkId> {
            let Some(tags) = mine else {
                return Vec::new();
            };
            partners
                .networks()
                .filter(|n| partners.agreement(n).is_some_and(|a| f(a, &us, tags)))
                .copied()
                .collect()
        };
        Self {
            ledger,
            partners,
            connected: partners_where(Agreement::shares),
            hosting: partners_where(Agreement::exposes),
        }
    }

    /// True if `m` (of the own network or a connected partner) is a host
    /// to this node: IP traffic may flow between us. A partner's member is
    /// one when its side exposes it and ours exposes this node; otherwise
    /// one of us is only lent as a relay.
    pub fn is_host(&self, m: &Member<'_>) -> bool {
        let network = m.record.network;
        network == self.ledger.network().id
            || (self.hosting.contains(&network)
                && self
                    .partners
                    .agreement(&network)
                    .is_some_and(|a| a.exposes(&network, leaf_tags(m.record))))
    }

    /// The partner networks numbered for the data plane's relay circles
    /// (in the order of their ids).
    pub fn numbered_partners(&self) -> impl Iterator<Item = (u32, NetworkId)> + '_ {
        (0u32..).zip(self.partners.networks().copied())
    }

    /// Under the agreement with partner `n`: `Some(true)` if `m` is one of
    /// our members exposed to it, `Some(false)` if `m` is one of `n`'s
    /// exposed members, `None` otherwise (not exposed, only lent as a
    /// relay, or of another network): who may be relayed to whom.
    pub fn exposed_under(&self, m: &Member<'_>, n: &NetworkId) -> Option<bool> {
        let network = m.record.network;
        let ours = network == self.ledger.network().id;
        if !ours && network != *n {
            return None;
        }
        let a = self.partners.agreement(n)?;
        a.exposes(&network, leaf_tags(m.record)).then_some(ours)
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

    /// The overlay ranges of the partner networks this node is a host to.
    pub fn partner_ranges(&self) -> Vec<Cidr> {
        let us = self.ledger.network().id;
        self.hosting
            .iter()
            .filter_map(|n| self.partners.agreement(n)?.other(&us).map(|s| s.cidr))
            .collect()
    }

    /// Every member of the own network, then every exposed or lent member
    /// of the connected partner networks, with its standing.
    pub fn members(&self, now_ms: u64) -> Vec<Member<'a>> {
        let mut all = self.ledger.members(now_ms);
        for n in &self.connected {
            if let Some(l) = self.partners.ledger(n) {
                all.extend(l.members(now_ms));
            }
        }
        all
    }

    /// The members that are hosts to this node ([`Roster::is_host`]).
    pub fn hosts(&self, now_ms: u64) -> Vec<Member<'a>> {
        let mut all = self.members(now_ms);
        all.retain(|m| self.is_host(m));
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
    /// partner's hosts (its range is disjoint from ours and checked at
    /// ingest).
    pub fn address_owners(&self, now_ms: u64) -> BTreeMap<Ipv4Addr, NodeId> {
        let mut owners = self.ledger.address_owners(now_ms);
        let hosts: std::collections::BTreeSet<NodeId> =
            self.hosts(now_ms).iter().map(|m| m.id).collect();
        for n in &self.hosting {
            if let Some(l) = self.partners.ledger(n) {
                for (address, id) in l.address_owners(now_ms) {
                    if hosts.contains(&id) {
                        owners.entry(address).or_insert(id);
                    }
                }
            }
        }
        owners
    }
}
