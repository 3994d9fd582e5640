//! Admitting a node: a member that may admit checks the presented invite
//! and certifies the newcomer's keys and name, extending its own chain (or
//! signing as the authority if it holds the authority's key).

use crate::cert::{valid_name, Cert, Claim, MAX_CHAIN};
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
        let chain = match self.authority {
            Some(authority) => vec![Cert::issue(authority, claim)],
            None => {
                if !self.chain.last().is_some_and(|c| c.admit) || self.chain.len() >= MAX_CHAIN {
                    return Err(AdmitError::NotAdmitter);
                }
                let mut chain = self.chain.to_vec();
                chain.push(Cert::issue(self.key, claim));
                chain
            }
        };
        Ok((spent, chain))
    }
}
