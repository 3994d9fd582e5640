//! The peer table: adding, changing and removing peers, their endpoints
//! and roaming, and what the caller may read of them.

use super::{Device, PeerConfig, PeerId, PeerInfo, MAX_HANDSHAKE_REPORTS};
use crate::allowed_ips::IpNet;
use crate::crypto::PublicKey;
use crate::peer::Peer;
use std::net::{IpAddr, SocketAddr};

impl Device {
    /// Points peer `id` at `endpoint`, keeping the endpoint index in step.
    fn set_endpoint(&mut self, id: PeerId, endpoint: Option<SocketAddr>) {
        let Some(peer) = self.peers.get_mut(id.0 as usize).and_then(Option::as_mut) else {
            return;
        };
        if peer.endpoint == endpoint {
            return;
        }
        let old = peer.endpoint;
        peer.endpoint = endpoint;
        if let Some(new) = endpoint {
            self.by_endpoint.insert(new, id);
        }
        if let Some(old) = old.filter(|o| self.by_endpoint.get(o) == Some(&id)) {
            // Another peer may sit at the same endpoint (one private
            // address at two sites): it is found there from now on.
            match self
                .peers
                .iter()
                .flatten()
                .position(|p| p.endpoint == Some(old))
            {
                Some(i) => self.by_endpoint.insert(old, PeerId(i as u32)),
                None => self.by_endpoint.remove(&old),
            };
        }
    }

    /// Adds a peer, or replaces the configuration of the peer with that key.
    /// A network another peer had is moved to this one (as `wg set` does).
    pub fn upsert_peer(&mut self, config: PeerConfig) -> PeerId {
        self.touched = true;
        let id = match self.by_key.get(&config.public_key) {
            Some(&id) => id,
            None => self.insert_peer(&config),
        };
        self.routes.remove_value(id);
        let nets: Vec<IpNet> = config.allowed_ips.iter().map(|n| n.masked()).collect();
        for net in &nets {
            if let Some(previous) = self.routes.owner(*net).filter(|o| *o != id) {
                if let Some(p) = self.peer_mut(previous) {
                    p.allowed.retain(|n| n != net);
                }
            }
            self.routes.insert(*net, id);
        }
        if let Some(p) = self.peer_mut(id) {
            p.psk = config.preshared_key.unwrap_or_default();
            p.allowed = nets;
            p.keepalive = config.persistent_keepalive;
        }
        if let Some(endpoint) = config.endpoint {
            self.move_to(id, endpoint);
        }
        id
    }

    /// Points peer `id` at a newly given `endpoint`. An initiation still
    /// unanswered went to the old one: it is sent again to the new one at
    /// once rather than after [`REKEY_TIMEOUT`](crate::timers::REKEY_TIMEOUT)
    /// (a path the control plane just learned, e.g. a peer's public address
    /// behind a NAT, is tried while the peer's own attempt keeps its NAT
    /// open).
    fn move_to(&mut self, id: PeerId, endpoint: SocketAddr) {
        let moved = self
            .peers
            .get(id.0 as usize)
            .and_then(Option::as_ref)
            .is_some_and(|p| p.endpoint != Some(endpoint));
        self.set_endpoint(id, Some(endpoint));
        if !moved {
            return;
        }
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        if peer.current.is_none() && peer.pending.is_some() {
            let old = peer.pending.take().map(|p| p.local_index);
            peer.want_handshake = true;
            if let Some(i) = old {
                self.by_index.remove(&i);
            }
            self.schedule(id);
        }
    }

    fn insert_peer(&mut self, config: &PeerConfig) -> PeerId {
        let slot = self
            .peers
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.peers.len());
        let peer = Peer::new(config.public_key);
        if slot == self.peers.len() {
            self.peers.push(Some(peer));
        } else {
            self.peers[slot] = Some(peer);
        }
        let id = PeerId(slot as u32);
        self.by_key.insert(config.public_key, id);
        id
    }

    /// Confines the peer with `key` to one destination: packets it sends
    /// to any other address are dropped and counted
    /// ([`DropReason::NotExposed`](super::DropReason::NotExposed)); `None`
    /// lifts it. False if no such peer.
    pub fn confine_peer(&mut self, key: &PublicKey, only_to: Option<IpAddr>) -> bool {
        let Some(id) = self.by_key.get(key).copied() else {
            return false;
        };
        match self.peer_mut(id) {
            Some(peer) => {
                peer.only_to = only_to;
                true
            }
            None => false,
        }
    }

    /// Removes a peer and everything that refers to it.
    pub fn remove_peer(&mut self, key: &PublicKey) -> bool {
        let Some(id) = self.by_key.get(key).copied() else {
            return false;
        };
        self.touched = true;
        self.set_endpoint(id, None);
        self.by_key.remove(key);
        self.routes.remove_value(id);
        if let Some(peer) = self.peers.get_mut(id.0 as usize).and_then(Option::take) {
            for i in peer.indices() {
                self.by_index.remove(&i);
            }
        }
        true
    }

    /// The current configuration of the peer with `key`.
    pub fn peer_config(&self, key: &PublicKey) -> Option<PeerConfig> {
        let id = self.by_key.get(key)?;
        let p = self.peers.get(id.0 as usize)?.as_ref()?;
        Some(PeerConfig {
            public_key: p.public,
            preshared_key: (p.psk != [0; 32]).then_some(p.psk),
            endpoint: p.endpoint,
            allowed_ips: p.allowed.clone(),
            persistent_keepalive: p.keepalive,
        })
    }

    /// The peer whose current endpoint is `endpoint` (learned from its
    /// authenticated packets or configured); O(1).
    pub fn peer_at(&self, endpoint: SocketAddr) -> Option<PublicKey> {
        let id = self.by_endpoint.get(&endpoint)?;
        Some(self.peers.get(id.0 as usize)?.as_ref()?.public)
    }

    /// Points the peer with `key` at `endpoint` (a newly chosen path; an
    /// unanswered initiation is sent again there at once); false if there
    /// is no such peer.
    pub fn set_peer_endpoint(&mut self, key: &PublicKey, endpoint: SocketAddr) -> bool {
        let Some(id) = self.by_key.get(key).copied() else {
            return false;
        };
        self.touched = true;
        self.move_to(id, endpoint);
        true
    }

    /// A real endpoint an authenticated packet of a relayed peer came from.
    pub fn poll_direct_seen(&mut self) -> Option<(PublicKey, SocketAddr)> {
        self.direct_seen.pop_front()
    }

    /// An authenticated packet of peer `id` came from `from`: the peer
    /// moves there (WireGuard's roaming), unless it is reached through a
    /// relay (a virtual endpoint) and `from` is a real endpoint: then the
    /// packet is reported ([`Device::poll_direct_seen`]) for the caller to
    /// check that path both ways first.
    pub(super) fn roam(&mut self, id: PeerId, from: SocketAddr) {
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        if peer.endpoint == Some(from) {
            return;
        }
        let relayed = peer.endpoint.is_some_and(|e| crate::relay::is_virtual(&e));
        if relayed && !crate::relay::is_virtual(&from) {
            let seen = (peer.public, from);
            if !self.direct_seen.contains(&seen) {
                if self.direct_seen.len() >= MAX_HANDSHAKE_REPORTS {
                    self.direct_seen.pop_front();
                }
                self.direct_seen.push_back(seen);
            }
            return;
        }
        self.set_endpoint(id, Some(from));
    }

    /// The current endpoint of the peer with `key`.
    pub fn endpoint_of(&self, key: &PublicKey) -> Option<SocketAddr> {
        let id = self.by_key.get(key)?;
        self.peers.get(id.0 as usize)?.as_ref()?.endpoint
    }

    /// Snapshots of every peer.
    pub fn peers(&self) -> impl Iterator<Item = PeerInfo> + '_ {
        self.peers.iter().flatten().map(|p| PeerInfo {
            public_key: p.public,
            endpoint: p.endpoint,
            allowed_ips: p.allowed.clone(),
            stats: p.stats,
            persistent_keepalive: p.keepalive,
            unanswered_since: p.unanswered_since,
            unanswered_packets: p.unanswered_packets,
        })
    }
}
