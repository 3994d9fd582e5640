//! The agent's relay state, shared by the control loop (which decides when
//! a peer is reached through a relay) and the data-plane threads (which
//! wrap, forward and unwrap relay envelopes).
//!
//! A peer reached through relay R gets a virtual endpoint
//! (`netstack::relay::virtual_endpoint`); sends to it leave wrapped to R,
//! and envelopes R delivers from that peer are decapsulated as if they came
//! from the virtual endpoint, so WireGuard's roaming keeps both ends on the
//! relayed path until a direct packet arrives.

use crate::members::MemberKeys;
use netstack::relay::{self, KeyId};
use netstack::PublicKey;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Most relayed paths kept (bounds the tables, keyed partly by remote input).
const MAX_PATHS: usize = 4096;

#[derive(Default)]
struct Table {
    /// Virtual endpoint → (relay's real endpoint, far peer's key id).
    virt: BTreeMap<SocketAddr, (SocketAddr, KeyId)>,
    /// (relay's real endpoint, far peer's key id) → virtual endpoint.
    back: BTreeMap<(SocketAddr, KeyId), SocketAddr>,
    next: u32,
}

/// Relay paths and counters.
pub struct Relays {
    table: RwLock<Table>,
    members: Arc<MemberKeys>,
    /// Whether this node relays for others (`--no-relay` turns it off).
    pub serve: bool,
    /// Bytes this node relayed for others.
    pub relayed_bytes: AtomicU64,
    /// Envelopes this node refused to relay (not a peer, relaying off).
    pub refused: AtomicU64,
}

impl Relays {
    /// Empty tables; relaying only between members of `members`.
    pub fn new(serve: bool, members: Arc<MemberKeys>) -> Self {
        Self {
            table: RwLock::new(Table::default()),
            members,
            serve,
            relayed_bytes: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The member with key id `id`.
    pub fn member(&self, id: &KeyId) -> Option<PublicKey> {
        self.members.get(id).map(|m| m.key)
    }

    /// The virtual endpoint for reaching the peer with key id `target`
    /// through the relay at `relay`.
    pub fn path(&self, relay: SocketAddr, target: KeyId) -> Option<SocketAddr> {
        let mut t = self.write();
        if let Some(v) = t.back.get(&(relay, target)) {
            return Some(*v);
        }
        if t.virt.len() >= MAX_PATHS {
            return None;
        }
        t.next = t.next.wrapping_add(1);
        let v = relay::virtual_endpoint(t.next);
        t.virt.insert(v, (relay, target));
        t.back.insert((relay, target), v);
        Some(v)
    }

    /// For an envelope from `relay` carrying a datagram of member `source`:
    /// the virtual endpoint to decapsulate it from.
    pub fn inbound(&self, relay: SocketAddr, source: KeyId) -> Option<SocketAddr> {
        self.members.get(&source)?;
        self.path(relay, source)
    }

    /// The relay a virtual endpoint goes through.
    pub fn relay_of(&self, virtual_endpoint: &SocketAddr) -> Option<SocketAddr> {
        self.read().virt.get(virtual_endpoint).map(|(r, _)| *r)
    }

    /// Where a datagram to `to` really goes, and the envelope header to put
    /// in front (for `GsoBatch::send_via`); `None` for real endpoints.
    pub fn rewrite(&self, to: SocketAddr) -> Option<(SocketAddr, Vec<u8>)> {
        if !relay::is_virtual(&to) {
            return None;
        }
        let (relay_at, target) = *self.read().virt.get(&to)?;
        let mut header = [0u8; relay::HEADER];
        relay::write_header(relay::TO, &target, &mut header);
        Some((relay_at, header.to_vec()))
    }

    /// Counts `n` relayed bytes.
    pub fn count(&self, n: usize) {
        self.relayed_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_stable_and_only_members_are_accepted() {
        let members = Arc::new(MemberKeys::new(netstack::PrivateKey::generate()));
        let r = Relays::new(true, members.clone());
        let (a, b) = (
            netstack::PrivateKey::generate().public_key(),
            PublicKey([2; 32]),
        );
        members.set([a].into_iter());
        let relay_at: SocketAddr = "198.18.0.1:51820".parse().unwrap();
        let v = r.path(relay_at, relay::key_id(&b)).unwrap();
        assert_eq!(r.path(relay_at, relay::key_id(&b)), Some(v));
        assert_eq!(r.relay_of(&v), Some(relay_at));
        let (real, header) = r.rewrite(v).unwrap();
        assert_eq!(real, relay_at);
        assert_eq!(
            relay::parse(&[header, vec![9]].concat()),
            Some(relay::Envelope::To {
                target: relay::key_id(&b),
                inner: &[9]
            })
        );
        assert_eq!(r.rewrite(relay_at), None);
        assert!(r.inbound(relay_at, relay::key_id(&a)).is_some());
        assert_eq!(
            r.inbound(relay_at, relay::key_id(&b)),
            None,
            "b is no member"
        );
    }
}
