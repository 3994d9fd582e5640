//! A network's identity: derived from its authority's key, so nobody can
//! claim someone else's network id without that key.

use crate::record::NodeId;
use blake2::digest::{FixedOutput, Update};
use blake2::Blake2s256;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The network id: 16 bytes of a hash of the authority's key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NetworkId(#[serde(with = "crate::hex::array")] pub [u8; 16]);

impl NetworkId {
    /// The id of the network whose authority is `authority`.
    pub fn of(authority: &NodeId) -> Self {
        let mut h = Blake2s256::default();
        Update::update(&mut h, b"cladnet/network/v1");
        Update::update(&mut h, &authority.0);
        let full: [u8; 32] = h.finalize_fixed().into();
        let mut id = [0u8; 16];
        id.copy_from_slice(&full[..16]);
        NetworkId(id)
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex::encode(&self.0))
    }
}

impl fmt::Debug for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkId({self})")
    }
}
