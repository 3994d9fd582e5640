//! Making the host and the data plane match the ledger and this node's
//! record ([`crate::member::Command::Apply`]): the overlay address, MTU,
//! peers, routes to federated networks and the names the DNS answers.

use super::event_loop::EventLoop;
use super::names;
use crate::member::peers;
use federation::{NodeId, Status};
use netstack::PublicKey;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

impl EventLoop {
    /// Makes the data plane and the interface match the ledger.
    pub(super) async fn apply(&mut self) {
        let (now, now_ms) = (Instant::now(), crate::statedir::now_ms());
        let prefix = self
            .member
            .replica()
            .ledger()
            .authority()
            .map_or(32, |a| a.cidr.prefix());
        let address = IpAddr::V4(self.member.own().record.address);
        if let Err(e) = self
            .netlink
            .replace_ipv4(self.tun_index, address, prefix)
            .await
        {
            tracing::error!("cannot set the overlay address on {}: {e}", self.iface);
        }
        let current = self.member.own().record.mtu;
        let (mtu, reason) = peers::overlay_mtu(self.member.replica().ledger(), current, now_ms);
        self.mtu_reason = reason;
        if mtu != current {
            match self.netlink.set_up(self.tun_index, u32::from(mtu)).await {
                Ok(()) => {
                    tracing::info!(mtu, reason = %self.mtu_reason, "overlay MTU set");
                    self.member.handle_mtu(mtu, now, now_ms);
                }
                Err(e) => tracing::error!("cannot set the overlay MTU to {mtu}: {e}"),
            }
        }
        let member = &mut self.member;
        let peers: BTreeSet<NodeId> = self
            .data
            .with(|node| member.sync_peers(node, now, now_ms))
            .into_iter()
            .collect();
        let roster = self.member.replica().roster(now_ms);
        let keys: BTreeSet<PublicKey> = roster
            .members(now_ms)
            .iter()
            .filter(|m| m.status == Status::Active)
            .filter_map(|m| peers::wg_key(m.record))
            .collect();
        let ranges: BTreeSet<federation::Cidr> = roster.partner_ranges().into_iter().collect();
        self.paths.retain(&peers, &keys);
        for gone in self.peers.difference(&peers) {
            self.shell.disconnect(gone);
        }
        self.peers = peers;
        self.route_partners(ranges).await;
        self.names
            .set_zone(names::zone_of(self.member.replica(), now_ms));
        self.names.listen(self.member.own().record.address);
    }

    /// Routes the connected federated networks' ranges into the overlay
    /// interface, and no others.
    pub(super) async fn route_partners(&mut self, ranges: BTreeSet<federation::Cidr>) {
        let gone = self.routed.difference(&ranges).map(|r| (*r, false));
        let new = ranges.difference(&self.routed).map(|r| (*r, true));
        let changes: Vec<(federation::Cidr, bool)> = gone.chain(new).collect();
        for (range, add) in changes {
            let (net, prefix) = (IpAddr::V4(range.addr()), range.prefix());
            let done = if add {
                self.netlink.add_route(self.tun_index, net, prefix).await
            } else {
                self.netlink.del_route(self.tun_index, net, prefix).await
            };
            match (done, add) {
                (Ok(()), true) => {
                    tracing::info!(%range, "a federated network's range is routed into the overlay")
                }
                (Ok(()), false) => {
                    tracing::info!(%range, "a federated network's range is no longer routed")
                }
                (Err(e), _) => tracing::warn!("cannot change the route to {range}: {e}"),
            }
        }
        self.routed = ranges;
    }
}
