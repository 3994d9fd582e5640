//! What this node holds of the networks its own is federated with: per
//! partner network, a [`Ledger`] of the records that network exposes to
//! this one, checked against the agreement both authorities signed.
//!
//! A partner's record enters only if it is signed, its certificate chain
//! runs from *that* network's authority, the partner's side of the
//! agreement exposes the member (by its certificate tags), its address lies
//! in the partner's range, and (for the partner's authority record) it
//! names the network and range the agreement names. So a partner's
//! authority cannot mint members of this network, take its addresses or
//! its name, and a network this one has no agreement with gets nothing in
//! (peering is not transitive). Refusals are counted by reason, like the
//! ledger's own. Sans-IO: bytes and times in, decisions out.

use crate::agreement::{Agreement, Side};
use crate::cert::validate_chain;
use crate::ledger::{leaf_tags, Delta, Ledger, Member, Network, Reject};
use crate::member::Body;
use crate::network::NetworkId;
use crate::record::{NodeId, SignedRecord};
use crate::sync::{self, Summary, Versions};
use std::collections::BTreeMap;

/// A partner network: the agreement with it and its exposed records.
#[derive(Debug, Clone)]
struct Partner {
    agreement: Agreement,
    ledger: Ledger,
}

impl Partner {
    /// The partner's side of the agreement.
    fn side(&self) -> &Side {
        self.agreement
            .side(&self.ledger.network().id)
            .unwrap_or(&self.agreement.acceptor)
    }
}

/// The partner networks of one network.
#[derive(Debug, Clone)]
pub struct Partners {
    us: NetworkId,
    partners: BTreeMap<NetworkId, Partner>,
    rejected: BTreeMap<&'static str, u64>,
}

/// A partner's member as this node sees it.
#[derive(Debug, Clone)]
pub struct PartnerMember<'a> {
    /// The partner network's name (its organisation).
    pub org: &'a str,
    /// The partner network's id.
    pub network: NetworkId,
    /// The member, as the partner's ledger sees it.
    pub member: Member<'a>,
}

impl Partners {
    /// No partners yet, for network `us`.
    pub fn new(us: NetworkId) -> Self {
        Self {
            us,
            partners: BTreeMap::new(),
            rejected: BTreeMap::new(),
        }
    }

    /// Follows the agreements in force (from this network's ledger): a
    /// partner is added for each new one; the networks no agreement covers
    /// any more are dropped with all their records, and returned so the
    /// caller forgets them durably and closes their tunnels.
    pub fn follow<'a>(
        &mut self,
        agreements: impl Iterator<Item = &'a Agreement>,
    ) -> Vec<NetworkId> {
        let mut keep: BTreeMap<NetworkId, &Agreement> = BTreeMap::new();
        for a in agreements {
            if let Some(other) = a.other(&self.us) {
                keep.entry(other.network).or_insert(a);
            }
        }
        let gone: Vec<NetworkId> = self
            .partners
            .iter()
            .filter(|(id, p)| keep.get(*id).is_none_or(|a| a.id() != p.agreement.id()))
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.partners.remove(id);
        }
        for (id, a) in keep {
            if let (Some(other), false) = (a.other(&self.us), self.partners.contains_key(&id)) {
                let network = Network::of(other.authority);
                self.partners.insert(
                    id,
                    Partner {
                        agreement: a.clone(),
                        ledger: Ledger::new(network),
                    },
                );
            }
        }
        gone
    }

    /// The partner networks' ids.
    pub fn networks(&self) -> impl Iterator<Item = &NetworkId> {
        self.partners.keys()
    }

    /// The agreement with partner `network`.
    pub fn agreement(&self, network: &NetworkId) -> Option<&Agreement> {
        self.partners.get(network).map(|p| &p.agreement)
    }

    /// The ledger of partner `network` (its exposed records).
    pub fn ledger(&self, network: &NetworkId) -> Option<&Ledger> {
        self.partners.get(network).map(|p| &p.ledger)
    }

    /// The partner network the agreement with id `agreement` joins us to.
    pub fn network_of(&self, agreement: &[u8; 16]) -> Option<NetworkId> {
        self.partners
            .iter()
            .find(|(_, p)| p.agreement.id() == *agreement)
            .map(|(id, _)| *id)
    }

    /// True if `id` is an active member of partner `network`, as exposed.
    pub fn is_member(&self, network: &NetworkId, id: &NodeId, now_ms: u64) -> bool {
        self.ledger(network)
            .and_then(|l| l.member(id, now_ms))
            .is_some_and(|m| m.status == crate::ledger::Status::Active)
    }

    /// What this node holds of partner `network`, summarised for one of
    /// its members to compare with what that network exposes.
    pub fn summary(&self, network: &NetworkId) -> Option<Summary> {
        self.ledger(network).map(|l| sync::summary(l.state()))
    }

    /// A partner member's answer to our summary (or leaves request): the
    /// writers to pull from it and the leaves to ask it for. The partner
    /// network is the only source of its records, so what it no longer
    /// exposes (revoked, left, untagged) is forgotten — only if the answer
    /// comes from one of its active members (`trusted`). Returns the plan
    /// and whether anything was forgotten.
    pub fn handle_versions(
        &mut self,
        network: &NetworkId,
        theirs: &Versions,
        trusted: bool,
        now_ms: u64,
    ) -> (sync::Mirror, bool) {
        let Some(partner) = self.partners.get_mut(network) else {
            return (sync::Mirror::default(), false);
        };
        let mirror = sync::mirror_plan(partner.ledger.state(), theirs);
        let mut forgot = false;
        if trusted {
            let authority = partner.ledger.network().authority;
            for w in mirror.forget.iter().filter(|w| **w != authority) {
                forgot |= partner.ledger.forget(w, now_ms);
            }
        }
        (mirror, forgot)
    }

    /// Offers a record from a partner: what it changed, if it entered.
    /// Refusals are counted by reason.
    pub fn ingest(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Option<(NetworkId, Delta)>, Reject> {
        let result = self.try_ingest(bytes, now_ms);
        if let Err(e) = &result {
            *self.rejected.entry(e.label()).or_default() += 1;
        }
        result
    }

    fn try_ingest(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Option<(NetworkId, Delta)>, Reject> {
        let record = SignedRecord::decode(bytes)?;
        let body = Body::parse(&record.body).map_err(|_| Reject::Body)?;
        let network = match &body {
            Body::Authority(a) => a.network,
            Body::Member(m) => m.network,
        };
        if network == self.us {
            // This network's own records are the ledger's business, never
            // a partner's: a partner claiming our network is refused.
            return Err(Reject::WrongNetwork);
        }
        let partner = self.partners.get_mut(&network).ok_or(Reject::NotPartner)?;
        let side = partner.side().clone();
        match &body {
            Body::Authority(a) => {
                if a.name != side.name {
                    return Err(Reject::WrongName);
                }
                if a.cidr != side.cidr || !side.cidr.covers(&a.block) {
                    return Err(Reject::OutsideRange);
                }
            }
            Body::Member(m) => {
                if !side.cidr.is_host(m.address) {
                    return Err(Reject::OutsideRange);
                }
                validate_chain(
                    &m.chain,
                    &side.authority,
                    &side.network,
                    &record.writer,
                    now_ms,
                )?;
                if !side.shares(leaf_tags(m)) {
                    return Err(Reject::NotExposed);
                }
            }
        }
        let delta = partner.ledger.ingest(bytes, now_ms)?;
        Ok(delta.map(|d| (network, d)))
    }

    /// Every partner's member, with its network's name.
    pub fn members(&self, now_ms: u64) -> Vec<PartnerMember<'_>> {
        self.partners
            .iter()
            .flat_map(|(id, p)| {
                let org = p.side().name.as_str();
                p.ledger
                    .members(now_ms)
                    .into_iter()
                    .map(move |member| PartnerMember {
                        org,
                        network: *id,
                        member,
                    })
            })
            .collect()
    }

    /// Partner records refused so far, by reason.
    pub fn rejected(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.rejected.iter().map(|(k, v)| (*k, *v))
    }
}

#[cfg(test)]
pub(crate) mod tests;
