//! The rules for the agreements a network holds, over the ones it knows
//! ([`Federation`]s from its ledger): which offers it may still accept,
//! which agreements and endings its members carry, and which agreement is
//! in force with another network. Signatures, ranges and exposure are
//! checked by [`crate::agreement`]; a member's own standing by its caller.

use crate::agreement::{Agreement, AgreementError, Ending, Offer};
use crate::ledger::Federation;
use crate::network::NetworkId;

/// Why a network may not take an offer, an agreement or an ending (each
/// message is the sentence the user sees).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FederationError {
    /// The offer was accepted once already.
    #[error("this federation offer was already accepted: ask the other network for a new one")]
    AlreadyAccepted,
    /// An agreement with the offering network is in force.
    #[error("this network is already federated with {0}: end that agreement first (`cladnet federate end`)")]
    AlreadyFederated(String),
    /// Neither side of the agreement is this network.
    #[error("this agreement is not one of this network's")]
    NotOurs,
    /// No agreement of that id is known.
    #[error("this network has no such agreement")]
    Unknown,
    /// No agreement in force with the network named.
    #[error("this network has no agreement in force with {0:?}: see `cladnet federate list`")]
    NotInForce(String),
    /// A signature, a range or an expiry is wrong.
    #[error(transparent)]
    Invalid(#[from] AgreementError),
}

/// May network `us` accept `offer`? Once per offer, and not while an
/// agreement with the offering network is in force.
pub fn may_accept(
    known: &[Federation],
    us: &NetworkId,
    offer: &Offer,
) -> Result<(), FederationError> {
    if known.iter().any(|f| f.agreement.id() == offer.id) {
        return Err(FederationError::AlreadyAccepted);
    }
    let with_them = known.iter().find(|f| {
        f.active()
            && f.agreement
                .other(us)
                .is_some_and(|o| o.network == offer.offerer.network)
    });
    match with_them {
        Some(f) => Err(FederationError::AlreadyFederated(
            f.agreement.offer.offerer.name.clone(),
        )),
        None => Ok(()),
    }
}

/// May a member of `us` carry `agreement`? It must be valid, one of this
/// network's, and the first agreement made of its offer; the other
/// network's id.
pub fn may_carry(
    known: &[Federation],
    us: &NetworkId,
    agreement: &Agreement,
) -> Result<NetworkId, FederationError> {
    agreement.check()?;
    let other = agreement.other(us).ok_or(FederationError::NotOurs)?.network;
    let rival = known
        .iter()
        .any(|f| f.agreement.id() == agreement.id() && f.agreement != *agreement);
    if rival {
        return Err(FederationError::AlreadyAccepted);
    }
    Ok(other)
}

/// May a member carry `ending`? It must end an agreement this network
/// knows, signed by one of its two authorities.
pub fn may_carry_ending(known: &[Federation], ending: &Ending) -> Result<(), FederationError> {
    let f = known
        .iter()
        .find(|f| f.agreement.id() == ending.agreement)
        .ok_or(FederationError::Unknown)?;
    Ok(ending.check(&f.agreement)?)
}

/// The agreement in force between `us` and the network named `org` (by
/// its name or id).
pub fn in_force_with<'a>(
    known: &'a [Federation],
    us: &NetworkId,
    org: &str,
) -> Result<&'a Federation, FederationError> {
    known
        .iter()
        .filter(|f| f.active())
        .find(|f| {
            f.agreement
                .other(us)
                .is_some_and(|o| o.name == org || o.network.to_string() == org)
        })
        .ok_or_else(|| FederationError::NotInForce(org.to_string()))
}

#[cfg(test)]
mod tests;
