//! Member certificates and their chains. The network's authority certifies
//! nodes; a certified node whose certificate allows admission certifies
//! newcomers in turn. A member proves membership with the chain from the
//! authority down to itself; every link binds a node id, its WireGuard key
//! and its name, and is checked offline by every member.
//!
//! Revocation is a signed list entry (see [`Revocation`]); a chain that runs
//! through a revoked node stays valid only for the nodes the revocation
//! explicitly keeps, so a revoked admitter cannot mint members afterwards.

use crate::network::NetworkId;
use crate::record::{NodeId, NodeKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Domain separation for certificate signatures.
const DOMAIN: &[u8] = b"cladnet/cert/v1";
/// Longest chain accepted (authority → … → member).
pub const MAX_CHAIN: usize = 12;
/// Longest node name.
pub const MAX_NAME: usize = 63;
/// Most nodes one revocation can keep (bounds the record body).
pub const MAX_KEEP: usize = 256;
/// Most tags one certificate may carry.
pub const MAX_TAGS: usize = 8;

/// One link: `issuer` vouches for `subject` with these keys and this name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cert {
    /// The network this certificate belongs to.
    pub network: NetworkId,
    /// Who signed: the authority or an admitting member.
    pub issuer: NodeId,
    /// The certified node's ed25519 id.
    pub subject: NodeId,
    /// The certified node's WireGuard (X25519) public key.
    #[serde(with = "crate::hex::array")]
    pub wg_key: [u8; 32],
    /// The certified node's name.
    pub name: String,
    /// True if the subject may admit (certify) other nodes.
    pub admit: bool,
    /// Tags the admitter gave the subject (`invite --tag`): what federation
    /// policy selects members by. Signed, so a node cannot tag itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// When it was issued (ms since the Unix epoch).
    pub issued_ms: u64,
    /// When it stops being valid (ms since the Unix epoch).
    pub expires_ms: u64,
    /// The issuer's signature.
    #[serde(with = "crate::hex::array")]
    pub sig: [u8; 64],
}

/// Bytes a certificate stands for in traffic counters (network, issuer,
/// subject, keys, times, signature; the name is small and not counted).
pub const CERT_BYTES: usize = 16 + 32 + 32 + 32 + 1 + 8 + 8 + 64;

/// What a certificate states, before it is signed.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The network.
    pub network: NetworkId,
    /// The node being certified.
    pub subject: NodeId,
    /// Its WireGuard public key.
    pub wg_key: [u8; 32],
    /// Its name.
    pub name: String,
    /// May it admit others.
    pub admit: bool,
    /// Its tags (each a [`valid_name`], at most [`MAX_TAGS`]).
    pub tags: Vec<String>,
    /// Issue time (ms since the Unix epoch).
    pub issued_ms: u64,
    /// Expiry (ms since the Unix epoch).
    pub expires_ms: u64,
}

fn signed_bytes(issuer: &NodeId, c: &Claim) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 160 + c.name.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&c.network.0);
    m.extend_from_slice(&issuer.0);
    m.extend_from_slice(&c.subject.0);
    m.extend_from_slice(&c.wg_key);
    m.extend_from_slice(&(c.name.len() as u32).to_le_bytes());
    m.extend_from_slice(c.name.as_bytes());
    m.push(u8::from(c.admit));
    m.extend_from_slice(&c.issued_ms.to_le_bytes());
    m.extend_from_slice(&c.expires_ms.to_le_bytes());
    // Certificates without tags sign exactly what they signed before tags
    // existed, so those issued by earlier versions still verify.
    if !c.tags.is_empty() {
        m.extend_from_slice(b"tags");
        for tag in &c.tags {
            m.push(u8::try_from(tag.len()).unwrap_or(u8::MAX));
            m.extend_from_slice(tag.as_bytes());
        }
    }
    m
}

impl Cert {
    /// What this certificate states (to re-issue it with changes).
    pub fn claim(&self) -> Claim {
        Claim {
            network: self.network,
            subject: self.subject,
            wg_key: self.wg_key,
            name: self.name.clone(),
            admit: self.admit,
            tags: self.tags.clone(),
            issued_ms: self.issued_ms,
            expires_ms: self.expires_ms,
        }
    }

    /// `issuer` signs `claim`.
    pub fn issue(issuer: &NodeKey, claim: Claim) -> Cert {
        let sig = issuer.sign_bytes(&signed_bytes(&issuer.id(), &claim));
        Cert {
            network: claim.network,
            issuer: issuer.id(),
            subject: claim.subject,
            wg_key: claim.wg_key,
            name: claim.name,
            admit: claim.admit,
            tags: claim.tags,
            issued_ms: claim.issued_ms,
            expires_ms: claim.expires_ms,
            sig,
        }
    }

    fn signature_ok(&self) -> bool {
        self.issuer
            .verify(&signed_bytes(&self.issuer, &self.claim()), &self.sig)
    }
}

/// Why a chain does not prove membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// No certificate at all, or more than [`MAX_CHAIN`].
    #[error("certificate chain is empty or too long")]
    Length,
    /// The first link is not signed by the network's authority.
    #[error("certificate chain does not start at the network's authority")]
    ForeignRoot,
    /// A link belongs to another network.
    #[error("certificate of another network")]
    WrongNetwork,
    /// A link's signature does not verify.
    #[error("certificate signature does not verify")]
    BadSignature,
    /// Links do not connect, or an issuer was not allowed to admit.
    #[error("certificate issued by a node that may not admit")]
    NotAdmitter,
    /// A link has expired.
    #[error("certificate expired")]
    Expired,
    /// The last link certifies someone other than the record's writer.
    #[error("certificate names another node")]
    WrongSubject,
    /// The name is empty, too long or has characters other than a-z0-9-.
    #[error("node name must be 1-63 characters of a-z, 0-9 and -")]
    BadName,
    /// More than [`MAX_TAGS`] tags, or a tag that is not a [`valid_name`].
    #[error("certificate tags must be at most 8 names of 1-63 characters of a-z, 0-9 and -")]
    BadTag,
}

/// True for names of 1–63 characters from `a-z`, `0-9` and `-`, not
/// starting with `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// True if `tags` may stand in a certificate: at most [`MAX_TAGS`], each a
/// [`valid_name`], none twice.
pub fn valid_tags(tags: &[String]) -> bool {
    tags.len() <= MAX_TAGS
        && tags.iter().all(|t| valid_name(t))
        && tags.iter().enumerate().all(|(i, t)| !tags[..i].contains(t))
}

/// Checks that `chain` runs from `authority` to `writer` in `network` and is
/// valid at `now_ms`; returns the last link (the writer's own certificate).
/// Revocations are checked separately ([`Revocations::blocks`]).
pub fn validate_chain<'c>(
    chain: &'c [Cert],
    authority: &NodeId,
    network: &NetworkId,
    writer: &NodeId,
    now_ms: u64,
) -> Result<&'c Cert, CertError> {
    let leaf = chain.last().ok_or(CertError::Length)?;
    if chain.len() > MAX_CHAIN {
        return Err(CertError::Length);
    }
    let mut issuer = *authority;
    let mut may_admit = true;
    for (i, cert) in chain.iter().enumerate() {
        if cert.network != *network {
            return Err(CertError::WrongNetwork);
        }
        if cert.issuer != issuer {
            return Err(if i == 0 {
                CertError::ForeignRoot
            } else {
                CertError::NotAdmitter
            });
        }
        if !may_admit {
            return Err(CertError::NotAdmitter);
        }
        if !valid_name(&cert.name) {
            return Err(CertError::BadName);
        }
        if !valid_tags(&cert.tags) {
            return Err(CertError::BadTag);
        }
        if cert.expires_ms <= now_ms {
            return Err(CertError::Expired);
        }
        if !cert.signature_ok() {
            return Err(CertError::BadSignature);
        }
        issuer = cert.subject;
        may_admit = cert.admit;
    }
    if leaf.subject != *writer {
        return Err(CertError::WrongSubject);
    }
    Ok(leaf)
}

/// "`node` is no longer a member." Nodes that `node` admitted stay members
/// only if listed in `keep` (the revoker lists those it knew of), so
/// certificates the revoked node signs later are worthless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked node.
    pub node: NodeId,
    /// Nodes admitted by `node` that remain members.
    #[serde(default)]
    pub keep: Vec<NodeId>,
}

/// All revocations in force, by revoked node.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    by_node: BTreeMap<NodeId, Vec<NodeId>>,
}

impl Revocations {
    /// Adds one revocation (several revocations of a node keep the
    /// intersection of what they keep: the strictest wins).
    pub fn add(&mut self, r: &Revocation) {
        match self.by_node.get_mut(&r.node) {
            Some(keep) => keep.retain(|k| r.keep.contains(k)),
            None => {
                self.by_node.insert(r.node, r.keep.clone());
            }
        }
    }

    /// True if `node` itself was revoked.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.by_node.contains_key(node)
    }

    /// True if the chain no longer proves membership: its subject is
    /// revoked, or it passes through a revoked node that did not keep the
    /// next link.
    pub fn blocks(&self, chain: &[Cert]) -> bool {
        chain.iter().enumerate().any(|(i, cert)| {
            self.by_node.get(&cert.subject).is_some_and(|keep| {
                chain
                    .get(i + 1)
                    .is_none_or(|next| !keep.contains(&next.subject))
            })
        })
    }

    /// Revoked nodes.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.by_node.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: NetworkId = NetworkId([7; 16]);

    fn cert(issuer: &NodeKey, subject: &NodeKey, admit: bool) -> Cert {
        Cert::issue(
            issuer,
            Claim {
                network: NET,
                subject: subject.id(),
                wg_key: [1; 32],
                name: "node-1".into(),
                admit,
                tags: vec![],
                issued_ms: 0,
                expires_ms: 1_000,
            },
        )
    }

    #[test]
    fn tags_are_signed_and_untagged_certificates_sign_as_before() {
        let (auth, a) = (NodeKey::generate(), NodeKey::generate());
        let plain = cert(&auth, &a, true);
        // No `tags` key in the JSON of an untagged certificate (as before
        // tags existed), and such JSON still reads.
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("tags"), "{json}");
        assert_eq!(serde_json::from_str::<Cert>(&json).unwrap(), plain);
        let mut claim = plain.claim();
        claim.tags = vec!["shared".into(), "web".into()];
        let tagged = Cert::issue(&auth, claim);
        let ok = validate_chain(std::slice::from_ref(&tagged), &auth.id(), &NET, &a.id(), 10);
        assert_eq!(
            ok.map(|c| c.tags.clone()),
            Ok(vec!["shared".to_string(), "web".to_string()])
        );
        // A node adding a tag to its own certificate breaks the signature.
        let mut forged = tagged.clone();
        forged.tags.push("admin".into());
        assert_eq!(
            validate_chain(&[forged], &auth.id(), &NET, &a.id(), 10),
            Err(CertError::BadSignature)
        );
        let mut stripped = tagged;
        stripped.tags.clear();
        assert_eq!(
            validate_chain(&[stripped], &auth.id(), &NET, &a.id(), 10),
            Err(CertError::BadSignature)
        );
        let mut claim = plain.claim();
        claim.tags = vec!["Bad Tag".into()];
        let bad = Cert::issue(&auth, claim);
        assert_eq!(
            validate_chain(&[bad], &auth.id(), &NET, &a.id(), 10),
            Err(CertError::BadTag)
        );
        assert!(valid_tags(&["a".into(), "b".into()]));
        assert!(!valid_tags(&["a".into(), "a".into()]));
        assert!(!valid_tags(
            &(0..9).map(|i| format!("t{i}")).collect::<Vec<_>>()
        ));
    }

    #[test]
    fn chains_validate_from_the_authority_only() {
        let (auth, a, b, mallory) = (
            NodeKey::generate(),
            NodeKey::generate(),
            NodeKey::generate(),
            NodeKey::generate(),
        );
        let chain = vec![cert(&auth, &a, true), cert(&a, &b, false)];
        let ok = validate_chain(&chain, &auth.id(), &NET, &b.id(), 10);
        assert_eq!(ok.map(|c| c.subject), Ok(b.id()));
        assert_eq!(
            validate_chain(&chain, &auth.id(), &NET, &b.id(), 1_000),
            Err(CertError::Expired)
        );
        assert_eq!(
            validate_chain(&chain, &auth.id(), &NET, &a.id(), 10),
            Err(CertError::WrongSubject)
        );
        assert_eq!(
            validate_chain(&chain, &mallory.id(), &NET, &b.id(), 10),
            Err(CertError::ForeignRoot)
        );
        assert_eq!(
            validate_chain(&chain, &auth.id(), &NetworkId([8; 16]), &b.id(), 10),
            Err(CertError::WrongNetwork)
        );
        // b may not admit, so nothing it signs counts.
        let c = NodeKey::generate();
        let mut longer = chain.clone();
        longer.push(cert(&b, &c, false));
        assert_eq!(
            validate_chain(&longer, &auth.id(), &NET, &c.id(), 10),
            Err(CertError::NotAdmitter)
        );
        // A self-signed root or a tampered link fails.
        let own = vec![cert(&mallory, &mallory, true)];
        assert_eq!(
            validate_chain(&own, &auth.id(), &NET, &mallory.id(), 10),
            Err(CertError::ForeignRoot)
        );
        let mut tampered = chain.clone();
        tampered[1].admit = true;
        assert_eq!(
            validate_chain(&tampered, &auth.id(), &NET, &b.id(), 10),
            Err(CertError::BadSignature)
        );
        assert_eq!(
            validate_chain(&[], &auth.id(), &NET, &b.id(), 10),
            Err(CertError::Length)
        );
    }

    #[test]
    fn revocation_keeps_only_listed_descendants() {
        let (auth, a, b, c) = (
            NodeKey::generate(),
            NodeKey::generate(),
            NodeKey::generate(),
            NodeKey::generate(),
        );
        let to_b = vec![cert(&auth, &a, true), cert(&a, &b, true)];
        let mut to_c = to_b.clone();
        to_c.push(cert(&b, &c, true));
        let mut r = Revocations::default();
        r.add(&Revocation {
            node: b.id(),
            keep: vec![c.id()],
        });
        assert!(r.blocks(&to_b), "b itself is out");
        assert!(!r.blocks(&to_c), "c was kept");
        r.add(&Revocation {
            node: b.id(),
            keep: vec![],
        });
        assert!(r.blocks(&to_c), "the strictest revocation wins");
    }

    #[test]
    fn names() {
        assert!(valid_name("edge-01"));
        for bad in ["", "-a", "A", "a b", "ä", &"x".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
