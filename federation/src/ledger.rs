//! A node's copy of the network's state with the network's rules applied:
//! records come in as bytes and enter the CRDT only if signed, well formed,
//! of this network and written by a certified member (or the authority);
//! everything else is refused and counted by reason. [`Ledger::ingest`]
//! says what an accepted record changed ([`Delta`]), so consumers react to
//! deltas instead of re-reading everything. The ledger also reads the
//! state: members and their status, revocations in force, and who owns
//! each overlay address (those reads are in `ledger/standing.rs`).

use crate::agreement::{Agreement, Ending};
use crate::cert::{validate_chain, CertError, Revocations};
use crate::member::{AuthorityRecord, Body, MemberRecord};
use crate::network::NetworkId;
use crate::record::{NodeId, RecordError, SignedRecord};
use crate::state::{Ingest, State};
use std::collections::BTreeMap;

/// The network a ledger belongs to: its id and its authority's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The network id (derived from `authority`).
    pub id: NetworkId,
    /// The authority's ed25519 key.
    pub authority: NodeId,
}

impl Network {
    /// The network whose authority is `authority`.
    pub fn of(authority: NodeId) -> Self {
        Self {
            id: NetworkId::of(&authority),
            authority,
        }
    }
}

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Undecodable or badly signed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The body is not a valid record body.
    #[error("record body is malformed")]
    Body,
    /// The writer's certificate chain does not prove membership.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The record belongs to another network.
    #[error("record of another network")]
    WrongNetwork,
    /// An authority record not written by this network's authority.
    #[error("authority record written by another key")]
    NotAuthority,
    /// The writer has been revoked.
    #[error("record of a revoked node")]
    Revoked,
    /// The record carries a federation agreement or ending that does not
    /// verify, or an agreement its network is no side of.
    #[error("record carries a forged or foreign federation agreement")]
    Agreement,
    /// A record of a network this one has no agreement with.
    #[error("record of a network this one is not federated with")]
    NotPartner,
    /// A partner's member its network does not expose to this one.
    #[error("record of a member its network does not expose to this one")]
    NotExposed,
    /// A partner's member claiming an address outside its network's range,
    /// or a partner's authority record naming another range.
    #[error("record claims an address outside its network's range")]
    OutsideRange,
    /// A partner's authority record under another name than the agreement's.
    #[error("authority record names its network otherwise than the agreement")]
    WrongName,
}

impl Reject {
    /// Short label for counters.
    pub fn label(&self) -> &'static str {
        match self {
            Reject::Record(RecordError::BadSignature | RecordError::BadWriter) => "bad_signature",
            Reject::Record(_) | Reject::Body => "malformed",
            Reject::Cert(CertError::Expired) => "expired",
            Reject::Cert(_) => "not_member",
            Reject::WrongNetwork => "wrong_network",
            Reject::NotAuthority => "not_authority",
            Reject::Revoked => "revoked",
            Reject::Agreement => "bad_agreement",
            Reject::NotPartner => "not_partner",
            Reject::NotExposed => "not_exposed",
            Reject::OutsideRange => "outside_range",
            Reject::WrongName => "wrong_name",
        }
    }
}

/// What a member's certificate chain proved when its record was ingested.
#[derive(Debug, Clone, Copy)]
struct ChainFacts {
    /// The earliest expiry along the chain.
    expires_ms: u64,
    /// Whether the leaf may admit.
    admit: bool,
}

/// A member as the ledger sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// A member in good standing.
    Active,
    /// Left on purpose.
    Left,
    /// Revoked.
    Revoked,
    /// Its certificate expired.
    Expired,
}

/// What one accepted record changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Who is a member, or in what standing: a new member, one that left,
    /// a new certificate chain, revocations (which can change the standing
    /// of members other than the writer), the authority's record.
    pub membership: bool,
    /// Where the writer is reached: host, reflexive, advertised or control
    /// endpoints.
    pub endpoints: bool,
    /// The writer's overlay address claim.
    pub address: bool,
    /// What the writer's links carry (host MTU, probed path MTU), or
    /// whether it relays for others.
    pub paths: bool,
    /// The writer's published measurements.
    pub metrics: bool,
}

impl Changes {
    /// Everything changed (a writer seen for the first time).
    pub const ALL: Changes = Changes {
        membership: true,
        endpoints: true,
        address: true,
        paths: true,
        metrics: true,
    };

    /// True if the peer table (members, endpoints, addresses, MTU) may
    /// have to change; false for a metrics-only update.
    pub fn peers(&self) -> bool {
        self.membership || self.endpoints || self.address || self.paths
    }

    fn between(old: &Body, new: &Body) -> Changes {
        match (old, new) {
            (Body::Member(a), Body::Member(b)) => Changes {
                membership: a.chain != b.chain
                    || a.left_ms != b.left_ms
                    || a.revocations != b.revocations
                    || a.name != b.name
                    || a.agreements != b.agreements
                    || a.endings != b.endings,
                endpoints: a.endpoints != b.endpoints
                    || a.reflexive != b.reflexive
                    || a.advertised != b.advertised
                    || a.control != b.control,
                address: a.address != b.address || a.claimed_ms != b.claimed_ms,
                paths: a.host_mtu != b.host_mtu
                    || a.path_mtu != b.path_mtu
                    || a.mtu != b.mtu
                    || a.no_relay != b.no_relay
                    || a.host_networks != b.host_networks,
                metrics: a.metrics != b.metrics,
            },
            _ => Changes::ALL,
        }
    }
}

/// An accepted record: whose, and what it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    /// The record's writer.
    pub writer: NodeId,
    /// What changed.
    pub changes: Changes,
}

/// One member of the network.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// Its id.
    pub id: NodeId,
    /// Its record's version.
    pub version: u64,
    /// Its record.
    pub record: &'a MemberRecord,
    /// Its standing.
    pub status: Status,
    /// May it admit and revoke.
    pub admit: bool,
}

/// The state plus the network's rules.
#[derive(Debug, Clone)]
pub struct Ledger {
    network: Network,
    state: State,
    bodies: BTreeMap<NodeId, Body>,
    /// Per member, what its verified chain proves (checked once, at ingest).
    chains: BTreeMap<NodeId, ChainFacts>,
    /// Revocations in force, computed when a record that revokes arrives,
    /// valid until the first revoker's certificate expires.
    in_force: Revocations,
    in_force_until: u64,
    /// Federation agreements the members' records carry, recomputed when a
    /// record that carries some (or a revocation) changes.
    federations: Vec<Federation>,
    rejected: BTreeMap<&'static str, u64>,
}

/// A federation agreement of this network, as its members' records say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federation {
    /// The agreement, signed by both authorities.
    pub agreement: Agreement,
    /// Its ending, once either side signed one.
    pub ended: Option<Ending>,
}

impl Federation {
    /// True while it has not been ended.
    pub fn active(&self) -> bool {
        self.ended.is_none()
    }
}

impl Ledger {
    /// An empty ledger of `network`.
    pub fn new(network: Network) -> Self {
        Self {
            network,
            state: State::new(),
            bodies: BTreeMap::new(),
            chains: BTreeMap::new(),
            in_force: Revocations::default(),
            in_force_until: u64::MAX,
            federations: Vec::new(),
            rejected: BTreeMap::new(),
        }
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The raw CRDT (digests, anti-entropy).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Offers an encoded record: what it changed if it was accepted and
    /// outranks the writer's record held here, `None` if it does not.
    /// Refusals are counted by reason.
    pub fn ingest(&mut self, bytes: &[u8], now_ms: u64) -> Result<Option<Delta>, Reject> {
        let result = self.try_ingest(bytes, now_ms);
        if let Err(e) = &result {
            *self.rejected.entry(e.label()).or_default() += 1;
        }
        result
    }

    fn try_ingest(&mut self, bytes: &[u8], now_ms: u64) -> Result<Option<Delta>, Reject> {
        let verified = SignedRecord::decode(bytes)?.verify()?;
        let writer = verified.record().writer;
        // The state's rule, checked first so stale copies cost no parsing.
        if self.state.rank(&writer) >= Some(verified.rank()) {
            return Ok(None);
        }
        let body = Body::parse(&verified.record().body).map_err(|_| Reject::Body)?;
        let mut facts = None;
        match &body {
            Body::Authority(a) => {
                if writer != self.network.authority {
                    return Err(Reject::NotAuthority);
                }
                if a.network != self.network.id {
                    return Err(Reject::WrongNetwork);
                }
            }
            Body::Member(m) => {
                if m.network != self.network.id {
                    return Err(Reject::WrongNetwork);
                }
                let leaf = validate_chain(
                    &m.chain,
                    &self.network.authority,
                    &self.network.id,
                    &writer,
                    now_ms,
                )?;
                if self.revocations(now_ms).contains(&writer) {
                    return Err(Reject::Revoked);
                }
                let ours = |a: &Agreement| a.check().is_ok() && a.side(&self.network.id).is_some();
                if !m.agreements.iter().all(ours) {
                    return Err(Reject::Agreement);
                }
                facts = Some(ChainFacts {
                    expires_ms: m.chain.iter().map(|c| c.expires_ms).min().unwrap_or(0),
                    admit: leaf.admit,
                });
            }
        }
        if self.state.insert(verified) == Ingest::Stale {
            return Ok(None);
        }
        let revokes = |b: &Body| match b {
            Body::Authority(a) => !a.revocations.is_empty(),
            Body::Member(m) => !m.revocations.is_empty(),
        };
        let federates = |b: &Body| match b {
            Body::Authority(_) => false,
            Body::Member(m) => !m.agreements.is_empty() || !m.endings.is_empty(),
        };
        // Recompute when the new body or the one it replaces revokes.
        let revocations = revokes(&body) || self.bodies.get(&writer).is_some_and(revokes);
        let federations =
            revocations || federates(&body) || self.bodies.get(&writer).is_some_and(federates);
        let changes = match self.bodies.get(&writer) {
            Some(old) => Changes::between(old, &body),
            None => Changes::ALL,
        };
        self.bodies.insert(writer, body);
        if let Some(f) = facts {
            self.chains.insert(writer, f);
        }
        if revocations {
            (self.in_force, self.in_force_until) = self.compute_revocations(now_ms);
        }
        if federations {
            self.federations = self.compute_federations(now_ms);
        }
        Ok(Some(Delta { writer, changes }))
    }

    /// Refusals so far, by reason label.
    pub fn rejected(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.rejected.iter().map(|(k, v)| (*k, *v))
    }

    /// The authority's record, once known.
    pub fn authority(&self) -> Option<&AuthorityRecord> {
        match self.bodies.get(&self.network.authority) {
            Some(Body::Authority(a)) => Some(a),
            _ => None,
        }
    }

    fn member_records(&self) -> impl Iterator<Item = (NodeId, &MemberRecord)> {
        self.bodies.iter().filter_map(|(id, b)| match b {
            Body::Member(m) => Some((*id, m)),
            Body::Authority(_) => None,
        })
    }

    /// This network's federation agreements (active and ended), one per
    /// offer: the ones active members' records carry. If one offer was
    /// accepted twice (two acceptances raced), every member keeps the
    /// same one: the earliest accepted, then the lowest network id.
    pub fn federations(&self) -> &[Federation] {
        &self.federations
    }

    /// The agreements in force.
    pub fn agreements(&self) -> impl Iterator<Item = &Agreement> {
        self.federations
            .iter()
            .filter(|f| f.active())
            .map(|f| &f.agreement)
    }

    fn compute_federations(&self, now_ms: u64) -> Vec<Federation> {
        let carriers: Vec<&MemberRecord> = self
            .members(now_ms)
            .into_iter()
            .filter(|m| m.status == Status::Active)
            .map(|m| m.record)
            .collect();
        let mut chosen: BTreeMap<[u8; 16], &Agreement> = BTreeMap::new();
        for a in carriers.iter().flat_map(|m| &m.agreements) {
            let rank = |x: &Agreement| (x.accepted_ms, x.acceptor.network);
            chosen
                .entry(a.id())
                .and_modify(|best| {
                    if rank(a) < rank(best) {
                        *best = a;
                    }
                })
                .or_insert(a);
        }
        chosen
            .into_values()
            .map(|agreement| Federation {
                agreement: agreement.clone(),
                ended: carriers
                    .iter()
                    .flat_map(|m| &m.endings)
                    .filter(|e| e.check(agreement).is_ok())
                    .min_by_key(|e| e.ended_ms)
                    .cloned(),
            })
            .collect()
    }

    /// Members of `network` (a federated one) and their control endpoints,
    /// as this network's active members recorded them.
    pub fn partner_contacts(
        &self,
        network: &NetworkId,
        now_ms: u64,
    ) -> Vec<crate::contact::Contact> {
        let mut out: Vec<crate::contact::Contact> = Vec::new();
        for m in self
            .members(now_ms)
            .into_iter()
            .filter(|m| m.status == Status::Active)
        {
            for c in m
                .record
                .partner_contacts
                .iter()
                .filter(|p| p.network == *network)
                .flat_map(|p| &p.members)
            {
                if !out.iter().any(|o| o.id == c.id) && out.len() <= crate::contact::MAX_CONTACTS {
                    out.push(c.clone());
                }
            }
        }
        out
    }

    /// Whose records may go to the other side of `agreement`: the
    /// authority (name, range, revocations) and the active members this
    /// side exposes or lends as relays. Nothing else leaves.
    pub fn exposed_writers(&self, agreement: &Agreement, now_ms: u64) -> Vec<NodeId> {
        let Some(side) = agreement.side(&self.network.id) else {
            return vec![];
        };
        let exposed = self
            .members(now_ms)
            .into_iter()
            .filter(|m| m.status == Status::Active && side.shares(leaf_tags(m.record)))
            .map(|m| m.id);
        std::iter::once(self.network.authority)
            .chain(exposed)
            .filter(|w| self.state.get(w).is_some())
            .collect()
    }

    /// Drops `writer`'s record (what a federated network no longer
    /// exposes); true if it was held.
    pub fn forget(&mut self, writer: &NodeId, now_ms: u64) -> bool {
        if !self.state.remove(writer) {
            return false;
        }
        self.bodies.remove(writer);
        self.chains.remove(writer);
        (self.in_force, self.in_force_until) = self.compute_revocations(now_ms);
        self.federations = self.compute_federations(now_ms);
        true
    }
}

/// The tags in a member's own certificate (the last link of its chain).
pub fn leaf_tags(record: &MemberRecord) -> &[String] {
    record.chain.last().map_or(&[], |c| c.tags.as_slice())
}

mod standing;

#[cfg(test)]
mod tests;
