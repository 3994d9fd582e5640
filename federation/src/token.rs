//! Invite tokens: one line of text a user copies to a new machine. It names
//! the network, its authority, the inviting member and where to reach it
//! (advertised, observed and host addresses), a few other members that
//! forward the join when the inviter cannot be reached directly, and
//! carries a one-time secret; the inviter keeps only the secret's hash,
//! its expiry and how many uses are left.

use crate::contact::{open, seal, Contact, MAX_CONTACTS};
use crate::network::NetworkId;
use crate::record::NodeId;
use blake2::digest::{FixedOutput, Update};
use blake2::Blake2s256;
use serde::{Deserialize, Serialize};

/// Every token starts with this.
pub const PREFIX: &str = "cladnet1.";

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The network.
    pub network: NetworkId,
    /// The network's authority (the joiner checks the state it receives
    /// against it).
    pub authority: NodeId,
    /// The inviting member.
    pub inviter: NodeId,
    /// The inviter's control-plane (QUIC over UDP) endpoints, the ones
    /// reachable from outside first.
    #[serde(deserialize_with = "crate::member::quic_endpoints")]
    pub addrs: Vec<std::net::SocketAddr>,
    /// Other members that forward the join to the inviter.
    #[serde(default)]
    pub members: Vec<Contact>,
    /// Which invite this is.
    #[serde(with = "crate::hex::array")]
    pub id: [u8; 16],
    /// The one-time secret.
    #[serde(with = "crate::hex::array")]
    pub secret: [u8; 32],
    /// Expiry (ms since the Unix epoch).
    pub expires_ms: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token at all (typo, truncated copy, other program's token).
    #[error("this is not a cladnet invite token (it may be truncated): copy the whole line printed by `cladnet invite`")]
    Malformed,
    /// The inviter has no such invite.
    #[error("this invite token is unknown to the member that issued it (it was revoked or belongs to another state): ask for a new one")]
    Unknown,
    /// All uses are spent.
    #[error("this invite token was already used: ask a member to run `cladnet invite` again")]
    Used,
    /// Past its expiry.
    #[error("this invite token expired: ask a member to run `cladnet invite` again (use --ttl for a longer life)")]
    Expired,
    /// For another network.
    #[error("this invite token belongs to another network than the member you reached")]
    ForeignNetwork,
}

/// Domain of the invite token checksum.
pub const CHECKSUM_DOMAIN: &[u8] = b"cladnet/token/v1";

/// Hash under which the inviter stores a secret.
pub fn secret_hash(secret: &[u8; 32]) -> [u8; 32] {
    let mut h = Blake2s256::default();
    Update::update(&mut h, b"cladnet/invite-secret/v1");
    Update::update(&mut h, secret);
    h.finalize_fixed().into()
}

impl Invite {
    /// The token text.
    pub fn encode(&self) -> String {
        seal(
            PREFIX,
            CHECKSUM_DOMAIN,
            serde_json::to_vec(self).unwrap_or_default(),
        )
    }

    /// Parses token text (surrounding whitespace is ignored).
    pub fn decode(text: &str) -> Result<Self, TokenError> {
        let payload = open(text, PREFIX, CHECKSUM_DOMAIN).ok_or(TokenError::Malformed)?;
        let invite: Invite = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if invite.members.len() > MAX_CONTACTS {
            return Err(TokenError::Malformed);
        }
        Ok(invite)
    }

    /// Every member to try, the inviter first, with its endpoints.
    pub fn contacts(&self) -> Vec<Contact> {
        let inviter = Contact {
            id: self.inviter,
            addrs: self.addrs.clone(),
        };
        std::iter::once(inviter)
            .chain(
                self.members
                    .iter()
                    .filter(|c| c.id != self.inviter)
                    .cloned(),
            )
            .collect()
    }
}

/// Up to [`MAX_CONTACTS`] members besides the issuer `me` that a token
/// names: active members it is `connected` to now, those anyone can reach
/// unsolicited first ([`crate::paths::public`]: no NAT, or an advertised
/// address).
pub fn contacts(
    ledger: &crate::Ledger,
    me: &NodeId,
    connected: impl Fn(&NodeId) -> bool,
    now_ms: u64,
) -> Vec<Contact> {
    let mut found: Vec<(bool, Contact)> = ledger
        .members(now_ms)
        .into_iter()
        .filter(|m| m.status == crate::Status::Active && m.id != *me && connected(&m.id))
        .filter(|m| !m.record.control.is_empty())
        .map(|m| {
            let contact = Contact {
                id: m.id,
                addrs: m.record.control.clone(),
            };
            (!crate::paths::public(m.record), contact)
        })
        .collect();
    found.sort_by_key(|(natted, _)| *natted);
    found
        .into_iter()
        .take(MAX_CONTACTS)
        .map(|(_, c)| c)
        .collect()
}

/// What the inviter stores about an invite it issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// Hash of the secret.
    #[serde(with = "crate::hex::array")]
    pub secret_hash: [u8; 32],
    /// Expiry (ms since the Unix epoch).
    pub expires_ms: u64,
    /// Uses left.
    pub uses_left: u32,
    /// Tags every node admitted with it gets in its certificate.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Issued {
    /// Spends one use of this invite for `secret` at `now_ms`; returns the
    /// updated entry to store.
    pub fn redeem(&self, secret: &[u8; 32], now_ms: u64) -> Result<Issued, TokenError> {
        if !constant_time_eq(&secret_hash(secret), &self.secret_hash) {
            return Err(TokenError::Unknown);
        }
        if now_ms >= self.expires_ms {
            return Err(TokenError::Expired);
        }
        if self.uses_left == 0 {
            return Err(TokenError::Used);
        }
        Ok(Issued {
            uses_left: self.uses_left - 1,
            ..self.clone()
        })
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn invite() -> Invite {
        Invite {
            network: NetworkId([3; 16]),
            authority: NodeId([4; 32]),
            inviter: NodeId([5; 32]),
            addrs: vec!["198.18.0.1:51821".parse().unwrap()],
            members: vec![Contact {
                id: NodeId([8; 32]),
                addrs: vec!["198.18.0.2:51821".parse().unwrap()],
            }],
            id: [6; 16],
            secret: [7; 32],
            expires_ms: 1_000,
        }
    }

    #[test]
    fn tokens_roundtrip_and_typos_are_caught() {
        let t = invite().encode();
        assert_eq!(Invite::decode(&format!(" {t}\n")), Ok(invite()));
        let mut typo = t.clone().into_bytes();
        let last = typo.len() - 5;
        typo[last] = if typo[last] == b'A' { b'B' } else { b'A' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(Invite::decode(&typo), Err(TokenError::Malformed));
        assert_eq!(
            Invite::decode(&t[..t.len() - 3]),
            Err(TokenError::Malformed)
        );
        assert_eq!(Invite::decode("hello"), Err(TokenError::Malformed));
        let ids: Vec<NodeId> = invite().contacts().iter().map(|c| c.id).collect();
        assert_eq!(
            ids,
            vec![NodeId([5; 32]), NodeId([8; 32])],
            "the inviter first"
        );
        let mut crowded = invite();
        crowded.members = vec![crowded.members[0].clone(); MAX_CONTACTS + 1];
        assert_eq!(
            Invite::decode(&crowded.encode()),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn one_time_secrets_expire_and_run_out() {
        let issued = Issued {
            secret_hash: secret_hash(&[7; 32]),
            expires_ms: 1_000,
            uses_left: 1,
            tags: vec![],
        };
        let once = issued.redeem(&[7; 32], 10).unwrap();
        assert_eq!(once.redeem(&[7; 32], 11), Err(TokenError::Used));
        assert_eq!(issued.redeem(&[8; 32], 10), Err(TokenError::Unknown));
        assert_eq!(issued.redeem(&[7; 32], 1_000), Err(TokenError::Expired));
    }

    #[test]
    fn contacts_are_connected_members_reachable_ones_first() {
        use crate::fixture::TestNetwork;
        let net = TestNetwork::new(6);
        let mut ledger = net.ledger();
        let me = net.member(1);
        for i in 1..=5 {
            let m = net.member(i);
            let mut r = m.record.clone();
            r.control = vec![format!("198.18.0.{i}:51821").parse().unwrap()];
            r.endpoints = vec![format!("10.0.0.{i}:51820").parse().unwrap()];
            r.reflexive = vec![format!("198.18.0.{i}:51820").parse().unwrap()];
            if i == 4 {
                r.advertised = r.reflexive.clone();
            }
            let bytes = m
                .key
                .sign(1, crate::member::Body::Member(r).to_bytes())
                .encode();
            ledger.ingest(&bytes, 0).unwrap();
        }
        let not_5 = |id: &NodeId| *id != net.member(5).key.id();
        let found = contacts(&ledger, &me.key.id(), not_5, 0);
        let ids: Vec<NodeId> = found.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), MAX_CONTACTS);
        assert_eq!(ids[0], net.member(4).key.id(), "the advertised one first");
        assert!(!ids.contains(&me.key.id()) && !ids.contains(&net.member(5).key.id()));
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in ".{0,300}") {
            let _ = Invite::decode(&s);
            let _ = Invite::decode(&format!("{PREFIX}{s}"));
        }
    }
}
