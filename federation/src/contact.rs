//! Members to reach ([`Contact`]) and their limits, and the checksummed text of every token.

use crate::record::NodeId;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use blake2::digest::{FixedOutput, Update};
use blake2::Blake2s256;
use serde::{Deserialize, Serialize};

/// Longest token text accepted.
pub const MAX_TOKEN: usize = 4096;
/// Most other members a token names.
pub const MAX_CONTACTS: usize = 3;
/// Most control-plane addresses a member may advertise.
pub const MAX_CONTROL: usize = 8;

/// A member a joiner may ask instead of the inviter, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The member.
    pub id: NodeId,
    /// Its control-plane endpoints.
    pub addrs: Vec<std::net::SocketAddr>,
}

/// The 4-byte checksum a token text carries after its payload, under
/// `domain` (one per kind of token).
pub fn checksum(domain: &[u8], payload: &[u8]) -> [u8; 4] {
    let mut h = Blake2s256::default();
    Update::update(&mut h, domain);
    Update::update(&mut h, payload);
    let full: [u8; 32] = h.finalize_fixed().into();
    [full[0], full[1], full[2], full[3]]
}

/// The text of a token: `prefix`, then base64url of `payload` and its
/// checksum under `domain`.
pub(crate) fn seal(prefix: &str, domain: &[u8], mut payload: Vec<u8>) -> String {
    let sum = checksum(domain, &payload);
    payload.extend_from_slice(&sum);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(payload))
}

/// The payload of a token text [`seal`]ed with `prefix` and `domain`
/// (surrounding whitespace ignored); `None` if it is too long, lacks the
/// prefix, is not base64url or its checksum does not match.
pub(crate) fn open(text: &str, prefix: &str, domain: &[u8]) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() > MAX_TOKEN {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(text.strip_prefix(prefix)?).ok()?;
    let (payload, sum) = raw.split_last_chunk::<4>()?;
    (checksum(domain, payload) == *sum).then(|| payload.to_vec())
}
