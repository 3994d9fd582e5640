//! Admitting a node: a member that may admit checks the presented invite
//! and certifies the newcomer's keys and name, extending its own chain (or
//! signing as the authority if it holds the authority's key).

use crate::cert::{valid_name, valid_tags, validate_chain, Cert, Claim, MAX_CHAIN};
use crate::cidr::Cidr;
use crate::ledger::{Ledger, Status};
use crate::protocol::JoinRequest;
use crate::record::{NodeId, NodeKey};
use crate::token::{Issued, TokenError};
use std::net::Ipv4Addr;

/// Certificates live this long (ms); renewal is not automatic yet.
pub const CERT_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// Who admits: the member's key and chain, and the authority key if this
/// member holds it.
pub struct Admitter<'a> {
    /// The member's own key.
    pub key: &'a NodeKey,
    /// The member's own certificate chain.
    pub chain: &'a [Cert],
    /// The authority's key, on the node that created the network.
    pub authority: Option<&'a NodeKey>,
}

/// Why a join was refused (each message is the sentence the joiner sees).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The token itself was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The requested name is not valid.
    #[error("node name must be 1-63 characters of a-z, 0-9 and -, not starting with -")]
    BadName,
    /// Another member already has the name.
    #[error("the name `{0}` is taken by another member: pick another --name")]
    NameTaken(String),
    /// The joining key was revoked.
    #[error("this node was revoked from the network and cannot join again with the same identity")]
    Revoked,
    /// This member may not admit.
    #[error("the member you reached may not admit nodes: ask another member for an invite")]
    NotAdmitter,
    /// This member was revoked (or left, or its certificate expired).
    #[error("the member you reached was revoked from the network and admits nobody: ask another member for an invite")]
    AdmitterRevoked,
    /// The pinned address is outside the organisation's range.
    #[error("--address {address} is not a usable address of the network's range {range}: pick one inside it or leave --address out")]
    AddressOutside {
        /// The address asked for.
        address: Ipv4Addr,
        /// The range.
        range: Cidr,
    },
    /// `tag` names no active member of this network.
    #[error("no active member of this network has that name: see `cladnet members`")]
    NotMember,
    /// Tags that are not valid.
    #[error("tags must be 1-32 characters of a-z, 0-9 and -, at most 8")]
    BadTags,
    /// A re-issued certificate that is not for this node or not valid.
    #[error("the re-issued certificate is not valid for this node: it keeps its certificate")]
    BadReissue,
    /// Another member holds the pinned address.
    #[error(
        "--address {0} is already used by another member: pick another or leave --address out"
    )]
    AddressTaken(Ipv4Addr),
}

impl Admitter<'_> {
    /// Checks `req` from `subject` against the stored invite `issued` and
    /// everything else a join can fail on (name, address, our own
    /// standing), and returns the invite with one use spent, and the
    /// newcomer's chain. A refused join spends nothing.
    pub fn admit(
        &self,
        ledger: &Ledger,
        req: &JoinRequest,
        subject: NodeId,
        issued: Option<&Issued>,
        now_ms: u64,
    ) -> Result<(Issued, Vec<Cert>), AdmitError> {
        if req.network != ledger.network().id {
            return Err(TokenError::ForeignNetwork.into());
        }
        let spent = issued
            .ok_or(TokenError::Unknown)?
            .redeem(&req.secret, now_ms)?;
        if !valid_name(&req.name) {
            return Err(AdmitError::BadName);
        }
        let me = self.key.id();
        if ledger
            .member(&me, now_ms)
            .is_some_and(|m| m.status != Status::Active)
        {
            return Err(AdmitError::AdmitterRevoked);
        }
        let members = ledger.members(now_ms);
        if ledger.revocations(now_ms).contains(&subject) {
            return Err(AdmitError::Revoked);
        }
        if let (Some(address), Some(range)) = (req.address, ledger.authority().map(|a| a.block)) {
            if !range.is_host(address) {
                return Err(AdmitError::AddressOutside { address, range });
            }
            if ledger
                .address_owners(now_ms)
                .get(&address)
                .is_some_and(|owner| *owner != subject)
            {
                return Err(AdmitError::AddressTaken(address));
            }
        }
        if members
            .iter()
            .any(|m| m.record.name == req.name && m.id != subject && m.status == Status::Active)
        {
            return Err(AdmitError::NameTaken(req.name.clone()));
        }
        let claim = Claim {
            network: ledger.network().id,
            subject,
            wg_key: req.wg_key,
            name: req.name.clone(),
            admit: true,
            tags: spent.tags.clone(),
            issued_ms: now_ms,
            expires_ms: now_ms.saturating_add(CERT_TTL_MS),
        };
        Ok((spent, self.certify(claim)?))
    }

    /// A new chain for the active member `target` whose certificate says
    /// `tags` instead of what it said (same key, name and rights): what
    /// `cladnet tag` hands the member to adopt.
    pub fn reissue(
        &self,
        ledger: &Ledger,
        target: &NodeId,
        tags: Vec<String>,
        now_ms: u64,
    ) -> Result<Vec<Cert>, AdmitError> {
        if ledger
            .member(&self.key.id(), now_ms)
            .is_some_and(|m| m.status != Status::Active)
        {
            return Err(AdmitError::AdmitterRevoked);
        }
        let leaf = ledger
            .member(target, now_ms)
            .filter(|m| m.status == Status::Active)
            .and_then(|m| m.record.chain.last().cloned())
            .ok_or(AdmitError::NotMember)?;
        if !valid_tags(&tags) {
            return Err(AdmitError::BadTags);
        }
        self.certify(Claim {
            tags,
            issued_ms: now_ms,
            expires_ms: now_ms.saturating_add(CERT_TTL_MS),
            ..leaf.claim()
        })
    }

    /// `claim` signed as the authority, or as this member extending its
    /// own chain.
    fn certify(&self, claim: Claim) -> Result<Vec<Cert>, AdmitError> {
        match self.authority {
            Some(authority) => Ok(vec![Cert::issue(authority, claim)]),
            None => {
                if !self.chain.last().is_some_and(|c| c.admit) || self.chain.len() >= MAX_CHAIN {
                    return Err(AdmitError::NotAdmitter);
                }
                let mut chain = self.chain.to_vec();
                chain.push(Cert::issue(self.key, claim));
                Ok(chain)
            }
        }
    }
}

/// Checks a re-issued chain `me` was handed before it adopts it: valid
/// from the network's authority, for this node's key, WireGuard key, name
/// and rights (only the tags and dates may differ from `current`).
pub fn check_reissue(
    ledger: &Ledger,
    me: &NodeId,
    current: &Cert,
    chain: &[Cert],
    now_ms: u64,
) -> Result<(), AdmitError> {
    let network = ledger.network();
    let leaf = validate_chain(chain, &network.authority, &network.id, me, now_ms)
        .map_err(|_| AdmitError::BadReissue)?;
    let same =
        leaf.wg_key == current.wg_key && leaf.name == current.name && leaf.admit == current.admit;
    if !same {
        return Err(AdmitError::BadReissue);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::TestNetwork;

    #[test]
    fn a_reissued_certificate_changes_the_tags_and_nothing_else() {
        let net = TestNetwork::new(3);
        let (a, b) = (net.member(1), net.member(2));
        let mut ledger = net.ledger();
        for m in [&a, &b] {
            ledger.ingest(&m.signed(1), 0).expect("a valid member");
        }
        let by_authority = Admitter {
            key: &a.key,
            chain: &a.record.chain,
            authority: Some(&net.authority),
        };
        let tags = vec!["shared".to_string()];
        let chain = by_authority
            .reissue(&ledger, &b.key.id(), tags.clone(), 5)
            .expect("b is a member");
        let current = b.record.chain.last().expect("b has a certificate");
        assert_eq!(chain.last().map(|c| &c.tags), Some(&tags));
        assert_eq!(
            check_reissue(&ledger, &b.key.id(), current, &chain, 6),
            Ok(())
        );
        // b's new record with it enters every ledger.
        let mut record = b.record.clone();
        record.chain = chain.clone();
        let signed = b
            .key
            .sign(2, crate::member::Body::Member(record).to_bytes())
            .encode();
        assert!(ledger.ingest(&signed, 6).expect("valid").is_some());
        // Handed to another node, or with another key: refused.
        assert_eq!(
            check_reissue(&ledger, &a.key.id(), current, &chain, 6),
            Err(AdmitError::BadReissue)
        );
        let mut other = current.clone();
        other.wg_key = [9; 32];
        assert_eq!(
            check_reissue(&ledger, &b.key.id(), &other, &chain, 6),
            Err(AdmitError::BadReissue)
        );
        // Bad tags, or someone who is not a member.
        assert_eq!(
            by_authority.reissue(&ledger, &b.key.id(), vec!["Bad Tag".into()], 5),
            Err(AdmitError::BadTags)
        );
        let stranger = crate::record::NodeKey::generate().id();
        assert_eq!(
            by_authority.reissue(&ledger, &stranger, vec![], 5),
            Err(AdmitError::NotMember)
        );
        // A member extends its own chain when it does not hold the authority.
        let by_a = Admitter {
            key: &a.key,
            chain: &a.record.chain,
            authority: None,
        };
        let chain = by_a
            .reissue(&ledger, &b.key.id(), vec![], 7)
            .expect("a admits");
        assert_eq!(chain.len(), 2);
        assert_eq!(
            check_reissue(&ledger, &b.key.id(), current, &chain, 8),
            Ok(())
        );
    }
}
