//! How this member reaches each peer: the data plane's peer table made to
//! match the roster ([`super::peers`]), and the route decisions
//! ([`Routes`], federation: direct first, a relay when the direct path
//! does not answer, back to direct once a check answers). The daemon
//! says what the data plane and the probes show; the member answers with
//! [`Command::Route`]s.

use super::{peers, Command, Member};
use federation::routes::Facts;
use federation::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

impl<R> Member<R> {
    /// Makes the data plane `node` (a sans-IO `netstack::Node`, locked by
    /// the daemon) hold a peer for every active member and no one else,
    /// with the endpoints the records and the routes choose; the members
    /// that are peers now.
    pub fn sync_peers(
        &mut self,
        node: &mut netstack::Node,
        now: Instant,
        now_ms: u64,
    ) -> Vec<NodeId> {
        let roster = self.replica.roster(now_ms);
        let active = self.standing == Some(federation::Status::Active);
        node.set_mtu(usize::from(self.own.record.mtu));
        let peers = peers::apply(
            &roster,
            &self.me,
            &self.own.record,
            active,
            &mut self.routes,
            node,
            now,
            now_ms,
        );
        self.drain_routes();
        peers
    }

    /// What the data plane and the probes show of every peer now: the
    /// routes decide.
    pub fn handle_facts(&mut self, facts: &BTreeMap<NodeId, Facts>, now: Instant, now_ms: u64) {
        let roster = self.replica.roster(now_ms);
        self.routes
            .handle_timeout(now, &self.me, &roster, facts, now_ms);
        self.drain_routes();
    }

    /// A check of `peer`'s direct candidate `endpoint` was answered.
    pub fn handle_verified(&mut self, peer: NodeId, endpoint: SocketAddr, now: Instant) {
        self.routes.handle_verified(peer, endpoint, now);
        self.drain_routes();
    }

    /// An authenticated packet of the relayed `peer` came straight from
    /// `at`: that path is checked.
    pub fn handle_direct_seen(&mut self, peer: NodeId, at: SocketAddr, now: Instant) {
        self.routes.handle_direct_seen(peer, at, now);
        self.drain_routes();
    }

    /// The relayed `peer` opened its NAT towards us and called through the
    /// relay: its direct candidate is checked now.
    pub fn handle_called(&mut self, peer: NodeId, now: Instant) {
        self.routes.handle_called(peer, now);
        self.drain_routes();
    }

    /// Peers whose path changed lately: the daemon probes them closely.
    pub fn settling(&self, now: Instant) -> Vec<NodeId> {
        self.routes.settling(now).collect()
    }

    fn drain_routes(&mut self) {
        while let Some(c) = self.routes.poll_command() {
            self.command(Command::Route(c));
        }
    }
}
