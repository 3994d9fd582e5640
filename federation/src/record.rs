//! Signed single-writer records: a node's ed25519 key signs
//! `(writer, version, body)` under a domain tag; anyone can check it and
//! nobody else can produce it. The body is opaque here.

use blake2::digest::{FixedOutput, Update};
use blake2::Blake2s256;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore};
use std::fmt;

/// Domain separation: these signatures mean nothing anywhere else.
const DOMAIN: &[u8] = b"cladnet/record/v1";
/// Largest record body accepted (bounds memory per remote record).
pub const MAX_BODY: usize = 16 * 1024;
/// Encoded size without the body: writer, version, body length, signature.
const FIXED: usize = 32 + 8 + 4 + 64;

/// A node's identity: its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// Full hex form (64 digits), as shown by the CLI.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    /// Short form (first 12 hex digits) for tables and logs.
    pub fn short(&self) -> String {
        crate::hex::encode(&self.0[..6])
    }

    /// Parses the full hex form.
    pub fn from_hex(s: &str) -> Option<Self> {
        crate::hex::decode(s).map(Self)
    }

    /// Checks `signature` over `message` with this id as the ed25519 key.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        VerifyingKey::from_bytes(&self.0)
            .map(|k| {
                k.verify_strict(message, &Signature::from_bytes(signature))
                    .is_ok()
            })
            .unwrap_or(false)
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("expected a 64-digit hex node id"))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.0[..6].iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "NodeId({hex}…)")
    }
}

/// A node's signing key (the ed25519 seed is what gets persisted).
pub struct NodeKey(SigningKey);

impl NodeKey {
    /// A fresh key from the OS generator.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        Self::from_seed(&seed)
    }

    /// The key with this 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed (what the state directory stores).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Signs an arbitrary message (certificates, tokens) with this key.
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// The matching identity.
    pub fn id(&self) -> NodeId {
        NodeId(self.0.verifying_key().to_bytes())
    }

    /// Signs version `version` of this node's record.
    pub fn sign(&self, version: u64, body: Vec<u8>) -> SignedRecord {
        let writer = self.id();
        let sig = self
            .0
            .sign(&signed_bytes(&writer, version, &body))
            .to_bytes();
        SignedRecord {
            writer,
            version,
            body,
            sig,
        }
    }
}

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not an encoded record.
    #[error("malformed record")]
    Malformed,
    /// The body is larger than [`MAX_BODY`].
    #[error("record body too large")]
    TooLarge,
    /// The writer field is not a valid ed25519 key.
    #[error("record writer is not a valid key")]
    BadWriter,
    /// The signature does not match writer, version and body.
    #[error("record signature does not verify")]
    BadSignature,
}

/// A record as it travels: not yet trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRecord {
    /// Who wrote it (and whose key must have signed it).
    pub writer: NodeId,
    /// The writer's version counter; higher wins.
    pub version: u64,
    /// Opaque content.
    pub body: Vec<u8>,
    /// ed25519 signature over the domain tag, writer, version and body.
    pub sig: [u8; 64],
}

fn signed_bytes(writer: &NodeId, version: u64, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 40 + body.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&writer.0);
    m.extend_from_slice(&version.to_le_bytes());
    m.extend_from_slice(body);
    m
}

impl SignedRecord {
    /// Wire form: writer, version (LE), body length (LE u32), body, signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED + self.body.len());
        out.extend_from_slice(&self.writer.0);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.body.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.body);
        out.extend_from_slice(&self.sig);
        out
    }

    /// Parses the wire form; checks lengths only (see [`SignedRecord::verify`]).
    pub fn decode(b: &[u8]) -> Result<Self, RecordError> {
        let (writer, rest) = b.split_first_chunk::<32>().ok_or(RecordError::Malformed)?;
        let (version, rest) = rest
            .split_first_chunk::<8>()
            .ok_or(RecordError::Malformed)?;
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(RecordError::Malformed)?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > MAX_BODY {
            return Err(RecordError::TooLarge);
        }
        if rest.len() != len + 64 {
            return Err(RecordError::Malformed);
        }
        let (body, sig) = rest.split_at(len);
        Ok(Self {
            writer: NodeId(*writer),
            version: u64::from_le_bytes(*version),
            body: body.to_vec(),
            sig: sig.try_into().map_err(|_| RecordError::Malformed)?,
        })
    }

    /// Checks the signature against the writer's key.
    pub fn verify(self) -> Result<Verified, RecordError> {
        if self.body.len() > MAX_BODY {
            return Err(RecordError::TooLarge);
        }
        let key = VerifyingKey::from_bytes(&self.writer.0).map_err(|_| RecordError::BadWriter)?;
        let msg = signed_bytes(&self.writer, self.version, &self.body);
        key.verify_strict(&msg, &Signature::from_bytes(&self.sig))
            .map_err(|_| RecordError::BadSignature)?;
        let mut h = Blake2s256::default();
        Update::update(&mut h, &self.body);
        let hash: [u8; 32] = h.finalize_fixed().into();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&hash[..16]);
        Ok(Verified {
            rank: Rank {
                version: self.version,
                tag,
            },
            record: self,
        })
    }
}

/// The order in which one writer's records replace each other, the same
/// everywhere (ledger, state, anti-entropy): the higher version wins, and
/// between two bodies signed with one version (an equivocating writer: a
/// bug, a restore from an old backup, malice) the higher body hash, so
/// every member keeps the same one whatever order they arrive in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Rank {
    /// The writer's version counter.
    pub version: u64,
    /// The first 16 bytes of the body's BLAKE2s hash.
    #[serde(with = "crate::hex::array")]
    pub tag: [u8; 16],
}

/// A record whose signature was checked; only [`SignedRecord::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    record: SignedRecord,
    rank: Rank,
}

impl Verified {
    /// The record.
    pub fn record(&self) -> &SignedRecord {
        &self.record
    }

    /// Where it stands among its writer's records.
    pub fn rank(&self) -> Rank {
        self.rank
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn signed_records_verify_and_forgeries_do_not() {
        let k = NodeKey::generate();
        let r = k.sign(3, b"endpoints".to_vec());
        let again = SignedRecord::decode(&r.encode()).unwrap();
        assert_eq!(again, r);
        assert!(again.clone().verify().is_ok());
        let mut bumped = r.clone();
        bumped.version = 4;
        assert_eq!(
            bumped.verify().unwrap_err(),
            RecordError::BadSignature,
            "version is signed"
        );
        let mut other_writer = r.clone();
        other_writer.writer = NodeKey::generate().id();
        assert_eq!(
            other_writer.verify().unwrap_err(),
            RecordError::BadSignature,
            "writer is bound"
        );
        let mut body = r;
        body.body.push(0);
        assert_eq!(body.verify().unwrap_err(), RecordError::BadSignature);
    }

    #[test]
    fn oversized_bodies_are_refused_before_allocation() {
        let mut b = vec![0u8; 44];
        b[40..44].copy_from_slice(&(MAX_BODY as u32 + 1).to_le_bytes());
        assert_eq!(SignedRecord::decode(&b), Err(RecordError::TooLarge));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(r) = SignedRecord::decode(&bytes) {
                prop_assert_eq!(r.encode(), bytes);
            }
        }
    }
}
