//! Making the host and the data plane match the ledger: the gossip
//! boundary and this node's standing when members change, the overlay
//! address, MTU, peers and routes to federated networks, and re-reading
//! the host's addresses.

use super::*;

impl Mesh {
    /// Members changed: the gossip boundary, the machines' tables and this
    /// node's own standing follow.
    pub(super) fn on_membership(&mut self) {
        let now_ms = now_ms();
        let members = self.active_members(now_ms);
        let ledger = self.replica.ledger();
        self.shell.set_members(members.iter().copied());
        self.observed.retain(|id| members.contains(id));
        self.liveness.retain_members(ledger, now_ms);
        self.members = members;
        let standing = self.replica.standing(now_ms);
        if standing != self.standing {
            match standing {
                Some(Status::Revoked) => tracing::error!(
                    "this node was revoked from the network: it no longer admits, invites or routes; join again with a new --state directory if that was a mistake"
                ),
                Some(Status::Expired) => tracing::error!(
                    "this node's certificate expired: it no longer admits, invites or routes"
                ),
                _ => {}
            }
            self.standing = standing;
        }
    }

    /// Members in good standing now.
    pub(super) fn active_members(&self, now_ms: u64) -> BTreeSet<NodeId> {
        self.replica
            .ledger()
            .members(now_ms)
            .iter()
            .filter(|m| m.status == Status::Active)
            .map(|m| m.id)
            .collect()
    }

    /// Makes the data plane and the interface match the ledger.
    pub(super) async fn apply(&mut self) {
        let (now, now_ms, me) = (Instant::now(), now_ms(), self.me());
        let prefix = self
            .replica
            .ledger()
            .authority()
            .map_or(32, |a| a.cidr.prefix());
        let address = std::net::IpAddr::V4(self.own.record.address);
        if let Err(e) = self
            .netlink
            .replace_ipv4(self.tun_index, address, prefix)
            .await
        {
            tracing::error!("cannot set the overlay address on {}: {e}", self.iface);
        }
        let (mtu, reason) = peers::overlay_mtu(self.replica.ledger(), self.own.record.mtu, now_ms);
        self.mtu_reason = reason;
        if mtu != self.own.record.mtu {
            match self.netlink.set_up(self.tun_index, u32::from(mtu)).await {
                Ok(()) => {
                    tracing::info!(mtu, reason = %self.mtu_reason, "overlay MTU set");
                    self.own.set_mtu(mtu);
                }
                Err(e) => tracing::error!("cannot set the overlay MTU to {mtu}: {e}"),
            }
        }
        let mtu = usize::from(self.own.record.mtu);
        let active = self.is_active();
        let roster = self.replica.roster(now_ms);
        let (own, routes) = (&self.own.record, &mut self.paths.routes);
        let peers: BTreeSet<NodeId> = self
            .data
            .with(|node| {
                node.set_mtu(mtu);
                peers::apply(&roster, &me, own, active, routes, node, now, now_ms)
            })
            .into_iter()
            .collect();
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
        self.names.set_zone(names::zone_of(&self.replica, now_ms));
        self.names.listen(self.own.record.address);
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

    /// Re-reads the host (addresses, networks, MTU) and where members see
    /// us; the record changes if any of that did.
    pub(super) async fn refresh_host(&mut self) {
        let cidr = self.replica.ledger().authority().map(|a| a.cidr);
        match scan(Some(self.tun_index), cidr).await {
            Ok(inv) => {
                if inv.mtu != self.own.record.host_mtu && self.own.record.host_mtu.is_some() {
                    // Our own links changed: what paths carry is unknown again.
                    self.paths.asker.forget_paths();
                    self.on_outcomes();
                }
                let now = Instant::now();
                let outside = Outside {
                    reflexive: self.paths.asker.reflexive(now, &inv.addrs),
                    control: self.observed.endpoints(now, &inv.addrs),
                    auto: self.auto,
                };
                self.own.update_host(&inv, &self.state.settings, outside);
                if self.own.dirty {
                    self.apply().await;
                }
            }
            Err(e) => tracing::warn!("cannot read this host's addresses: {e:#}"),
        }
    }
}
