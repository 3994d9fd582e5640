//! Federation agreements: two independently created networks agree to
//! share a mesh. An agreement exists only when both authorities signed it:
//! the offering authority signs an [`Offer`] (its network, range and what it
//! exposes, an expiry and a one-time id), the accepting authority signs the
//! offer together with its own side ([`Agreement`]). The result proves
//! itself to every member of both networks, so the offering authority need
//! not be online when the offer is accepted: any member of the offering
//! network can take the agreement in and spread it.
//!
//! Each side keeps its say: an agreement names exactly two networks (never
//! transitive), each side decides what of its own it exposes (everything,
//! or members whose certificates carry given tags), and the two ranges
//! must be disjoint. Either authority ends it with a signed [`Ending`].
//!
//! Offers travel as one line of text ([`OfferToken`]), like invites.

use crate::cert::{valid_tags, MAX_TAGS};
use crate::cidr::Cidr;
use crate::contact::{open, seal, Contact, MAX_CONTACTS, MAX_CONTROL};
use crate::network::NetworkId;
use crate::record::{NodeId, NodeKey};
use blake2::digest::{FixedOutput, Update};
use blake2::Blake2s256;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Domain separation of offer signatures.
const OFFER_DOMAIN: &[u8] = b"cladnet/federation-offer/v1";
/// Domain separation of acceptance signatures.
const ACCEPT_DOMAIN: &[u8] = b"cladnet/federation-accept/v1";
/// Domain separation of ending signatures.
const END_DOMAIN: &[u8] = b"cladnet/federation-end/v1";
/// Every offer token starts with this.
pub const OFFER_PREFIX: &str = "cladfed1.";
/// Domain of the offer token checksum.
pub const CHECKSUM_DOMAIN: &[u8] = b"cladnet/federation-token/v1";
/// Longest network name.
pub const MAX_NETWORK_NAME: usize = 63;

/// What one side of an agreement lets the other side reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exposure {
    /// Every member.
    All,
    /// Members whose certificate carries at least one of these tags.
    Tags(Vec<String>),
}

/// Why an `--expose` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--expose takes `all` or up to {MAX_TAGS} comma-separated tags (names of a-z, 0-9 and -), e.g. --expose shared,web; {0:?} is neither")]
pub struct ExposureError(pub String);

/// Why a `--relays` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--relays takes up to {MAX_TAGS} comma-separated tags (names of a-z, 0-9 and -), e.g. --relays edge: the members carrying one relay for the other network; {0:?} is not that")]
pub struct RelaysError(pub String);

/// Parses `--relays TAG[,TAG]...`: the tags of the members a side lends as
/// relays.
pub fn parse_relays(text: &str) -> Result<Vec<String>, RelaysError> {
    match Exposure::parse(text) {
        Ok(Exposure::Tags(tags)) => Ok(tags),
        _ => Err(RelaysError(text.trim().to_string())),
    }
}

impl Exposure {
    /// Parses `all` or `TAG[,TAG]...`.
    pub fn parse(text: &str) -> Result<Self, ExposureError> {
        let text = text.trim();
        if text == "all" {
            return Ok(Exposure::All);
        }
        let tags: Vec<String> = text.split(',').map(|t| t.trim().to_string()).collect();
        if tags.is_empty() || !valid_tags(&tags) {
            return Err(ExposureError(text.to_string()));
        }
        Ok(Exposure::Tags(tags))
    }

    /// True if a member with certificate tags `tags` is exposed.
    pub fn covers(&self, tags: &[String]) -> bool {
        match self {
            Exposure::All => true,
            Exposure::Tags(wanted) => wanted.iter().any(|w| tags.contains(w)),
        }
    }

    fn valid(&self) -> bool {
        match self {
            Exposure::All => true,
            Exposure::Tags(tags) => !tags.is_empty() && valid_tags(tags),
        }
    }

    fn put(&self, m: &mut Vec<u8>) {
        match self {
            Exposure::All => m.push(0),
            Exposure::Tags(tags) => {
                m.push(1);
                put_len(m, tags.len());
                for t in tags {
                    put_text(m, t);
                }
            }
        }
    }
}

impl fmt::Display for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exposure::All => f.write_str("all"),
            Exposure::Tags(tags) => f.write_str(&tags.join(",")),
        }
    }
}

/// One network's side of an agreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Side {
    /// The network's id.
    pub network: NetworkId,
    /// Its authority (whose key signs for this side).
    pub authority: NodeId,
    /// Its name (its organisation, as members are shown).
    pub name: String,
    /// Its overlay range.
    pub cidr: Cidr,
    /// What it lets the other side reach.
    pub exposes: Exposure,
    /// Tags of the members it lends the other side as relays (none: lends
    /// none). A lent member that is not exposed is a relay only to the
    /// other side: it forwards sealed datagrams, it is not a host there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lends: Vec<String>,
}

impl Side {
    fn put(&self, m: &mut Vec<u8>) {
        m.extend_from_slice(&self.network.0);
        m.extend_from_slice(&self.authority.0);
        put_text(m, &self.name);
        m.extend_from_slice(&self.cidr.addr().octets());
        m.push(self.cidr.prefix());
        self.exposes.put(m);
        // Signed only when present: agreements made before relays were
        // lent keep their signatures.
        if !self.lends.is_empty() {
            m.push(2);
            put_len(m, self.lends.len());
            for t in &self.lends {
                put_text(m, t);
            }
        }
    }

    /// True if this side lends a member with certificate tags `tags` as a
    /// relay.
    pub fn lends_member(&self, tags: &[String]) -> bool {
        self.lends.iter().any(|w| tags.contains(w))
    }

    /// True if the record of a member with `tags` may leave this side for
    /// the other: it is exposed or lent.
    pub fn shares(&self, tags: &[String]) -> bool {
        self.exposes.covers(tags) || self.lends_member(tags)
    }

    fn check(&self) -> Result<(), AgreementError> {
        if NetworkId::of(&self.authority) != self.network {
            return Err(AgreementError::ForeignAuthority);
        }
        let lends_ok = self.lends.is_empty() || valid_tags(&self.lends);
        if !valid_network_name(&self.name) || !self.exposes.valid() || !lends_ok {
            return Err(AgreementError::Malformed);
        }
        Ok(())
    }
}

fn put_len(m: &mut Vec<u8>, n: usize) {
    m.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_text(m: &mut Vec<u8>, t: &str) {
    put_len(m, t.len());
    m.extend_from_slice(t.as_bytes());
}

/// Why an offer, an agreement or an ending was refused (each message is the
/// sentence the user sees).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgreementError {
    /// Not an offer token, or fields out of range.
    #[error("this is not a cladnet federation offer (it may be truncated): copy the whole line printed by `cladnet federate offer`")]
    Malformed,
    /// A side's network id is not its authority's.
    #[error("the federation offer names a network id that does not belong to its authority: it was altered")]
    ForeignAuthority,
    /// A signature does not verify.
    #[error("a federation signature does not verify: the offer or agreement was altered or signed by another key")]
    BadSignature,
    /// Accepted after the offer's expiry.
    #[error("this federation offer expired: ask the other network to run `cladnet federate offer` again (use --ttl for a longer life)")]
    Expired,
    /// Both sides are one network.
    #[error("this federation offer comes from your own network: federate with another network")]
    SameNetwork,
    /// The ranges overlap.
    #[error("the offering network's range {theirs} overlaps this network's range {ours}: federated networks need disjoint ranges (one of them must be created again with another --cidr)")]
    Overlap {
        /// The accepting side's range.
        ours: Cidr,
        /// The offering side's range.
        theirs: Cidr,
    },
}

/// An offer: the offering authority's half of an agreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Which offer this is (one agreement per offer).
    #[serde(with = "crate::hex::array")]
    pub id: [u8; 16],
    /// The offering network.
    pub offerer: Side,
    /// Until when it may be accepted (ms since the Unix epoch).
    pub expires_ms: u64,
    /// The offering authority's signature.
    #[serde(with = "crate::hex::array")]
    pub sig: [u8; 64],
}

impl Offer {
    /// The offering `authority` signs an offer of `offerer` (which must
    /// name that authority) valid until `expires_ms`.
    pub fn sign(authority: &NodeKey, id: [u8; 16], offerer: Side, expires_ms: u64) -> Offer {
        let mut offer = Offer {
            id,
            offerer,
            expires_ms,
            sig: [0; 64],
        };
        offer.sig = authority.sign_bytes(&offer.signed_bytes());
        offer
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut m = OFFER_DOMAIN.to_vec();
        m.extend_from_slice(&self.id);
        self.offerer.put(&mut m);
        m.extend_from_slice(&self.expires_ms.to_le_bytes());
        m
    }

    /// Checks the offer on its own: well formed and signed by the
    /// authority it names.
    pub fn check(&self) -> Result<(), AgreementError> {
        self.offerer.check()?;
        if !self
            .offerer
            .authority
            .verify(&self.signed_bytes(), &self.sig)
        {
            return Err(AgreementError::BadSignature);
        }
        Ok(())
    }

    /// Checks whether the network `acceptor` may accept this offer at
    /// `now_ms`: the offer holds, has not expired, comes from another
    /// network and its range is disjoint from the acceptor's.
    pub fn acceptable_by(&self, acceptor: &Side, now_ms: u64) -> Result<(), AgreementError> {
        self.check()?;
        acceptor.check()?;
        if now_ms >= self.expires_ms {
            return Err(AgreementError::Expired);
        }
        if acceptor.network == self.offerer.network {
            return Err(AgreementError::SameNetwork);
        }
        if acceptor.cidr.overlaps(&self.offerer.cidr) {
            return Err(AgreementError::Overlap {
                ours: acceptor.cidr,
                theirs: self.offerer.cidr,
            });
        }
        Ok(())
    }

    /// The offering authority's short fingerprint, printed for checking
    /// out of band.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.offerer.authority)
    }
}

/// A short fingerprint of an authority key: 16 hex digits of a hash of it,
/// in groups of four.
pub fn fingerprint(authority: &NodeId) -> String {
    let mut h = Blake2s256::default();
    Update::update(&mut h, b"cladnet/authority-fingerprint/v1");
    Update::update(&mut h, &authority.0);
    let full: [u8; 32] = h.finalize_fixed().into();
    full[..8]
        .chunks(2)
        .map(crate::hex::encode)
        .collect::<Vec<_>>()
        .join("-")
}

/// Both authorities' signatures: the agreement in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    /// The offer, signed by the offering authority.
    pub offer: Offer,
    /// The accepting network.
    pub acceptor: Side,
    /// When it was accepted (ms since the Unix epoch).
    pub accepted_ms: u64,
    /// The accepting authority's signature over the offer and its side.
    #[serde(with = "crate::hex::array")]
    pub sig: [u8; 64],
}

impl Agreement {
    /// The accepting `authority` accepts `offer` for `acceptor` (which
    /// must name that authority) at `now_ms`; refused as
    /// [`Offer::acceptable_by`] says.
    pub fn accept(
        authority: &NodeKey,
        offer: Offer,
        acceptor: Side,
        now_ms: u64,
    ) -> Result<Agreement, AgreementError> {
        offer.acceptable_by(&acceptor, now_ms)?;
        if authority.id() != acceptor.authority {
            return Err(AgreementError::ForeignAuthority);
        }
        let mut agreement = Agreement {
            offer,
            acceptor,
            accepted_ms: now_ms,
            sig: [0; 64],
        };
        agreement.sig = authority.sign_bytes(&agreement.signed_bytes());
        Ok(agreement)
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut m = ACCEPT_DOMAIN.to_vec();
        m.extend_from_slice(&self.offer.signed_bytes());
        m.extend_from_slice(&self.offer.sig);
        self.acceptor.put(&mut m);
        m.extend_from_slice(&self.accepted_ms.to_le_bytes());
        m
    }

    /// Checks both signatures and the rules an acceptance had to meet
    /// (accepted before expiry, two networks, disjoint ranges). Needs no
    /// clock: an agreement stays valid after its offer expires.
    pub fn check(&self) -> Result<(), AgreementError> {
        self.offer.acceptable_by(&self.acceptor, self.accepted_ms)?;
        if !self
            .acceptor
            .authority
            .verify(&self.signed_bytes(), &self.sig)
        {
            return Err(AgreementError::BadSignature);
        }
        Ok(())
    }

    /// The agreement's id (its offer's).
    pub fn id(&self) -> [u8; 16] {
        self.offer.id
    }

    /// The side of `network`, if it is one of the two.
    pub fn side(&self, network: &NetworkId) -> Option<&Side> {
        [&self.offer.offerer, &self.acceptor]
            .into_iter()
            .find(|s| s.network == *network)
    }

    /// The side that is not `network`, if `network` is one of the two.
    pub fn other(&self, network: &NetworkId) -> Option<&Side> {
        self.side(network)?;
        [&self.offer.offerer, &self.acceptor]
            .into_iter()
            .find(|s| s.network != *network)
    }

    /// True if a member of network `a` with certificate tags `a_tags` and
    /// one of network `b` with `b_tags` are connected by this agreement:
    /// the two networks are its two sides and each side exposes its member.
    pub fn connects(
        &self,
        (a, a_tags): (&NetworkId, &[String]),
        (b, b_tags): (&NetworkId, &[String]),
    ) -> bool {
        a != b
            && self.side(a).is_some_and(|s| s.exposes.covers(a_tags))
            && self.side(b).is_some_and(|s| s.exposes.covers(b_tags))
    }

    /// True if a member of `network` with `tags` is exposed to the other
    /// side as a host (IP traffic both ways).
    pub fn exposes(&self, network: &NetworkId, tags: &[String]) -> bool {
        self.side(network).is_some_and(|s| s.exposes.covers(tags))
    }

    /// True if the record of a member of `network` with `tags` may leave
    /// its network for the other side's members: it is exposed or lent.
    pub fn shares(&self, network: &NetworkId, tags: &[String]) -> bool {
        self.side(network).is_some_and(|s| s.shares(tags))
    }
}

/// One side ends an agreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ending {
    /// The agreement ended.
    #[serde(with = "crate::hex::array")]
    pub agreement: [u8; 16],
    /// The network whose authority ended it.
    pub by: NetworkId,
    /// When (ms since the Unix epoch).
    pub ended_ms: u64,
    /// That authority's signature.
    #[serde(with = "crate::hex::array")]
    pub sig: [u8; 64],
}

impl Ending {
    /// `authority` (of network `by`) ends `agreement` at `now_ms`.
    pub fn sign(
        authority: &NodeKey,
        agreement: &Agreement,
        now_ms: u64,
    ) -> Result<Ending, AgreementError> {
        let by = NetworkId::of(&authority.id());
        agreement
            .side(&by)
            .ok_or(AgreementError::ForeignAuthority)?;
        let mut ending = Ending {
            agreement: agreement.id(),
            by,
            ended_ms: now_ms,
            sig: [0; 64],
        };
        ending.sig = authority.sign_bytes(&ending.signed_bytes());
        Ok(ending)
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut m = END_DOMAIN.to_vec();
        m.extend_from_slice(&self.agreement);
        m.extend_from_slice(&self.by.0);
        m.extend_from_slice(&self.ended_ms.to_le_bytes());
        m
    }

    /// Checks that this ends `agreement` and is signed by one of its sides.
    pub fn check(&self, agreement: &Agreement) -> Result<(), AgreementError> {
        let side = agreement
            .side(&self.by)
            .filter(|_| self.agreement == agreement.id())
            .ok_or(AgreementError::ForeignAuthority)?;
        if !side.authority.verify(&self.signed_bytes(), &self.sig) {
            return Err(AgreementError::BadSignature);
        }
        Ok(())
    }
}

/// What `federate offer` prints: the offer and members of the offering
/// network an acceptance can be handed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferToken {
    /// The signed offer.
    pub offer: Offer,
    /// Members of the offering network and their control endpoints.
    pub contacts: Vec<Contact>,
}

impl OfferToken {
    /// The token text.
    pub fn encode(&self) -> String {
        seal(
            OFFER_PREFIX,
            CHECKSUM_DOMAIN,
            serde_json::to_vec(self).unwrap_or_default(),
        )
    }

    /// Parses token text and checks the offer's signature (surrounding
    /// whitespace is ignored).
    pub fn decode(text: &str) -> Result<Self, AgreementError> {
        let payload = open(text, OFFER_PREFIX, CHECKSUM_DOMAIN).ok_or(AgreementError::Malformed)?;
        let token: OfferToken =
            serde_json::from_slice(&payload).map_err(|_| AgreementError::Malformed)?;
        if token.contacts.len() > MAX_CONTACTS + 1
            || token.contacts.iter().any(|c| c.addrs.len() > MAX_CONTROL)
        {
            return Err(AgreementError::Malformed);
        }
        token.offer.check()?;
        Ok(token)
    }
}

/// True if `name` may name a network in an agreement: 1 to
/// [`MAX_NETWORK_NAME`] bytes without control characters.
pub fn valid_network_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NETWORK_NAME && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests;
