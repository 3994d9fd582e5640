//! Members' WireGuard keys by key id, set by the control loop and read by
//! the data plane: relays accept envelopes only from and to members, and
//! the endpoint echo answers only members, with the pair key it shares
//! with each.

use netstack::echo::{self, PairKey};
use netstack::relay::{key_id, KeyId};
use netstack::{PrivateKey, PublicKey};
use std::collections::BTreeMap;
use std::sync::RwLock;

/// One member's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberKey {
    /// Its WireGuard public key.
    pub key: PublicKey,
    /// The endpoint-echo key it shares with this node.
    pub pair: PairKey,
}

/// The member table.
pub struct MemberKeys {
    own: PrivateKey,
    own_id: KeyId,
    table: RwLock<BTreeMap<KeyId, MemberKey>>,
}

impl MemberKeys {
    /// An empty table for the node with WireGuard key `own`.
    pub fn new(own: PrivateKey) -> Self {
        Self {
            own_id: key_id(&own.public_key()),
            own,
            table: RwLock::new(BTreeMap::new()),
        }
    }

    /// This node's key id.
    pub fn own_id(&self) -> KeyId {
        self.own_id
    }

    /// Sets the members. Pair keys already known are kept, so a new member
    /// list costs one X25519 per new member; a key of low order (no shared
    /// secret) is left out.
    pub fn set(&self, keys: impl Iterator<Item = PublicKey>) {
        let old = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        let table = keys
            .filter_map(|key| {
                let id = key_id(&key);
                let pair = match old.get(&id) {
                    Some(m) if m.key == key => m.pair,
                    _ => echo::pair_key(&self.own, &key)?,
                };
                Some((id, MemberKey { key, pair }))
            })
            .collect();
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = table;
    }

    /// The member with key id `id`.
    pub fn get(&self, id: &KeyId) -> Option<MemberKey> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
    }
}
