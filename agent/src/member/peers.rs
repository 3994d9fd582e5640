//! The data plane's peer table from the roster: a peer for every active
//! member (of this network, or exposed or lent by a connected federated
//! network) (its key, the overlay address it owns if it is a host, the
//! endpoint its record suggests), none for the rest; the member list that
//! may use the node's relay and echo, with the circles it is relayed
//! within; and the overlay MTU the records allow.

use federation::member::MemberRecord;
use federation::roster::Roster;
use federation::routes::Routes;
use federation::{Ledger, NodeId, Status};
use netstack::forwarding::{self, Circles};
use netstack::{IpNet, Node, PeerConfig, PublicKey};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Keepalive on every tunnel, so liveness and NAT mappings stay fresh.
pub const KEEPALIVE: Duration = Duration::from_secs(25);

/// The WireGuard key a member's certificate binds.
pub fn wg_key(record: &MemberRecord) -> Option<PublicKey> {
    record.chain.last().map(|c| PublicKey(c.wg_key))
}

/// Makes `node` match the ledger as seen by `own` (this node's record,
/// `me` its id); `standing` is false once this node is revoked: it then
/// keeps no peer and serves nobody. New endpoint choices go through
/// `routes`. Returns the members' ids that are peers now.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    roster: &Roster<'_>,
    me: &NodeId,
    own: &MemberRecord,
    standing: bool,
    routes: &mut Routes,
    node: &mut Node,
    now: Instant,
    now_ms: u64,
) -> Vec<NodeId> {
    let owners = roster.address_owners(now_ms);
    let members = roster.members(now_ms);
    let active = |status: Status| standing && status == Status::Active;
    node.set_members(
        members
            .iter()
            .filter(|m| active(m.status))
            .filter_map(|m| Some((wg_key(m.record)?, circles(roster, m)))),
        now,
    );
    let mut peers = Vec::new();
    for m in &members {
        if m.id == *me {
            continue;
        }
        let Some(key) = wg_key(m.record) else {
            continue;
        };
        let device = node.device_mut();
        if !active(m.status) {
            if device.remove_peer(&key) {
                tracing::info!(name = %m.record.name, status = ?m.status, "removed from the peer table");
            }
            continue;
        }
        peers.push(m.id);
        let owns = owners.get(&m.record.address) == Some(&m.id);
        let allowed_ips: Vec<IpNet> = if owns {
            IpNet::new(IpAddr::V4(m.record.address), 32)
                .into_iter()
                .collect()
        } else {
            vec![]
        };
        let choice = federation::paths::choose_endpoint(own, m.record);
        let chosen = routes.handle_choice(m.id, choice, now);
        if let Some(endpoint) = chosen {
            tracing::debug!(peer = %m.record.name, %endpoint, "endpoint chosen from the records");
        }
        let existing = device.peer_config(&key);
        // A newly chosen endpoint replaces the device's; otherwise the
        // device keeps what authenticated packets taught it (roaming).
        let endpoint = chosen.or_else(|| existing.as_ref().and_then(|c| c.endpoint).or(choice));
        let unchanged = existing
            .as_ref()
            .is_some_and(|c| c.allowed_ips == allowed_ips && c.endpoint == endpoint);
        if !unchanged {
            device.upsert_peer(PeerConfig {
                public_key: key,
                preshared_key: None,
                endpoint,
                allowed_ips,
                persistent_keepalive: Some(KEEPALIVE),
            });
        }
        // A federated network's member reaches this node and nothing
        // behind it (packets to any other address are dropped, counted).
        let partner = m.record.network != own.network;
        device.confine_peer(&key, partner.then_some(IpAddr::V4(own.address)));
    }
    // Members gone from the roster altogether (a federation ended, a
    // partner stopped exposing them) lose their tunnels too.
    let keep: std::collections::BTreeSet<PublicKey> = members
        .iter()
        .filter(|m| active(m.status))
        .filter_map(|m| wg_key(m.record))
        .collect();
    let device = node.device_mut();
    let stale: Vec<PublicKey> = device
        .peers()
        .map(|p| p.public_key)
        .filter(|k| !keep.contains(k))
        .collect();
    for key in stale {
        device.remove_peer(&key);
        tracing::info!("a member no longer in the roster left the peer table");
    }
    routes.retain(|id| peers.contains(id));
    peers
}

/// The relay circles of `m` ([`netstack::forwarding`]): the own network,
/// and the side of each agreement it is exposed on.
fn circles(roster: &Roster<'_>, m: &federation::Member<'_>) -> Circles {
    let mut circles = if m.record.network == roster.ledger().network().id {
        forwarding::OWN
    } else {
        0
    };
    for (k, n) in roster.numbered_partners() {
        match roster.exposed_under(m, &n) {
            Some(true) => circles |= forwarding::ours(k),
            Some(false) => circles |= forwarding::theirs(k),
            None => {}
        }
    }
    circles
}

/// The overlay MTU the active members' records allow, and why.
pub fn overlay_mtu(ledger: &Ledger, default: u16, now_ms: u64) -> (u16, String) {
    let members = ledger.members(now_ms);
    let active: Vec<&MemberRecord> = members
        .iter()
        .filter(|m| m.status == Status::Active)
        .map(|m| m.record)
        .collect();
    federation::member::overlay_mtu(ledger.authority().map_or(default, |a| a.mtu), &active)
}
