//! Standing in the network as the ledger reads it: the revocations in
//! force, each member's status, and who owns each overlay address.

use super::{Ledger, Member, Status};
use crate::address::{claim_rank, LEFT_GRACE_MS};
use crate::cert::Revocations;
use crate::member::{Body, MemberRecord};
use crate::record::{NodeId, SignedRecord};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

impl Ledger {
    /// Revocations in force: the authority's, and those of members whose
    /// certificate lets them admit (their own later revocation does not undo
    /// what they revoked).
    pub fn revocations(&self, now_ms: u64) -> std::borrow::Cow<'_, Revocations> {
        if now_ms < self.in_force_until {
            std::borrow::Cow::Borrowed(&self.in_force)
        } else {
            std::borrow::Cow::Owned(self.compute_revocations(now_ms).0)
        }
    }

    /// Revocations in force at `now_ms`, and until when they stay so (the
    /// earliest expiry of a revoker's chain).
    pub(super) fn compute_revocations(&self, now_ms: u64) -> (Revocations, u64) {
        let mut r = Revocations::default();
        let mut until = u64::MAX;
        if let Some(a) = self.authority() {
            a.revocations.iter().for_each(|x| r.add(x));
        }
        for (id, m) in self.member_records() {
            if self.admitter(&id, now_ms) && !m.revocations.is_empty() {
                m.revocations.iter().for_each(|x| r.add(x));
                until = until.min(self.chains.get(&id).map_or(u64::MAX, |f| f.expires_ms));
            }
        }
        (r, until)
    }

    /// The revocation of `target` to write: the members admitted through
    /// it stay members (at most [`crate::cert::MAX_KEEP`] listed).
    pub fn revocation_of(&self, target: &NodeId, now_ms: u64) -> crate::cert::Revocation {
        let keep: std::collections::BTreeSet<NodeId> = self
            .members(now_ms)
            .iter()
            .filter_map(|m| {
                let chain = &m.record.chain;
                let i = chain.iter().position(|c| c.subject == *target)?;
                chain.get(i + 1).map(|c| c.subject)
            })
            .collect();
        crate::cert::Revocation {
            node: *target,
            keep: keep.into_iter().take(crate::cert::MAX_KEEP).collect(),
        }
    }

    /// The records whose revocations take `id`'s membership away (the
    /// authority's, or an admitter's naming `id` or a node in its chain):
    /// what a revoked node is shown so it knows, and can check, why.
    pub fn revocation_proof(&self, id: &NodeId) -> Vec<Vec<u8>> {
        let Some(Body::Member(m)) = self.bodies.get(id) else {
            return vec![];
        };
        let chain: Vec<NodeId> = m.chain.iter().map(|c| c.subject).collect();
        self.bodies
            .iter()
            .filter(|(_, b)| {
                let revocations = match b {
                    Body::Authority(a) => &a.revocations,
                    Body::Member(m) => &m.revocations,
                };
                revocations.iter().any(|r| chain.contains(&r.node))
            })
            .filter_map(|(w, _)| self.state.get(w).map(SignedRecord::encode))
            .collect()
    }

    /// True if `id`'s verified chain lets it admit and has not expired.
    fn admitter(&self, id: &NodeId, now_ms: u64) -> bool {
        self.chains
            .get(id)
            .is_some_and(|f| f.admit && now_ms < f.expires_ms)
    }

    /// Every member with its standing at `now_ms`.
    pub fn members(&self, now_ms: u64) -> Vec<Member<'_>> {
        let revocations = self.revocations(now_ms);
        self.member_records()
            .map(|(id, record)| self.standing(id, record, &revocations, now_ms))
            .collect()
    }

    fn standing<'a>(
        &self,
        id: NodeId,
        record: &'a MemberRecord,
        revocations: &Revocations,
        now_ms: u64,
    ) -> Member<'a> {
        let live = self.chains.get(&id).is_some_and(|f| now_ms < f.expires_ms);
        let status = if !live {
            Status::Expired
        } else if revocations.blocks(&record.chain) {
            Status::Revoked
        } else if record.left_ms.is_some() {
            Status::Left
        } else {
            Status::Active
        };
        Member {
            id,
            version: self.state.get(&id).map_or(0, |r| r.version),
            record,
            status,
            admit: live && self.admitter(&id, now_ms),
        }
    }

    /// The member `id`.
    pub fn member(&self, id: &NodeId, now_ms: u64) -> Option<Member<'_>> {
        match self.bodies.get(id) {
            Some(Body::Member(record)) => {
                Some(self.standing(*id, record, &self.revocations(now_ms), now_ms))
            }
            _ => None,
        }
    }

    /// Who owns each claimed address: among active members (and members
    /// that left less than [`LEFT_GRACE_MS`] ago) whose claim lies in the
    /// network's range, the earliest claim wins, then the lowest id.
    pub fn address_owners(&self, now_ms: u64) -> BTreeMap<Ipv4Addr, NodeId> {
        let range = self.authority().map(|a| a.block);
        let mut owners: BTreeMap<Ipv4Addr, (u64, NodeId)> = BTreeMap::new();
        for m in self.members(now_ms) {
            let holds = match m.status {
                Status::Active => true,
                Status::Left => m
                    .record
                    .left_ms
                    .is_some_and(|t| now_ms < t.saturating_add(LEFT_GRACE_MS)),
                Status::Revoked | Status::Expired => false,
            };
            if !holds || range.is_some_and(|r| !r.is_host(m.record.address)) {
                continue;
            }
            let rank = claim_rank(m.record.claimed_ms, &m.id);
            owners
                .entry(m.record.address)
                .and_modify(|best| *best = (*best).min(rank))
                .or_insert(rank);
        }
        owners.into_iter().map(|(a, (_, id))| (a, id)).collect()
    }
}
