//! What the control plane and the data plane report to the event loop:
//! handed to the member (and the path machines) at the time it arrived.

use super::event_loop::{clock, EventLoop};
use super::paths;
use federation::net::Event;
use federation::NodeId;
use netstack::asker::Outcome;
use netstack::node::Event as NodeEvent;
use netstack::PublicKey;
use rand_core::OsRng;

impl EventLoop {
    pub(super) fn on_shell(&mut self, event: Event) {
        let (now, now_ms) = clock();
        match event {
            Event::Gossip {
                source,
                ticket,
                data,
            } => {
                let verdict = self.member.handle_gossip(&source, &data, now, now_ms);
                self.shell.validated(&ticket, verdict);
            }
            Event::Request {
                from,
                request,
                reply,
            } => self
                .member
                .handle_request(from, request, reply, now, now_ms, &mut OsRng),
            Event::Response { id, from, response } => match self.sent.remove(&id) {
                Some(tag) => self
                    .member
                    .handle_response(tag, from, response, now, now_ms),
                None => tracing::debug!("an answer to a request this node did not send"),
            },
            Event::Failed { id, peer, error } => match self.sent.remove(&id) {
                Some(tag) => self.member.handle_failed(tag, peer, &error, now, now_ms),
                None => tracing::debug!("a failure of a request this node did not send"),
            },
            Event::Connected(id, dialed) => self.member.handle_connected(id, dialed, now, now_ms),
            Event::Disconnected(id) => self.member.handle_disconnected(id, now, now_ms),
            Event::Listening(addr) => tracing::info!("control plane listening on {addr}"),
            Event::Observed(id, addr) => self.member.handle_observed(id, addr, now, now_ms),
        }
    }

    pub(super) fn on_node(&mut self, event: NodeEvent) {
        let (now, now_ms) = clock();
        match event {
            NodeEvent::Echo {
                from,
                nonce,
                seen,
                len,
            } => {
                self.paths.asker.handle_answer(from, nonce, seen, len, now);
                self.on_outcomes();
            }
            NodeEvent::DirectSeen { peer, at } => {
                if let Some(id) = self.id_of(&peer, now_ms) {
                    self.member.handle_direct_seen(id, at, now);
                }
            }
            NodeEvent::CallMe(key) => {
                if let Some(id) = self.id_of(&key, now_ms) {
                    self.member.handle_called(id, now);
                }
            }
            NodeEvent::Handshake(key) => {
                if let Some(id) = self.id_of(&key, now_ms) {
                    self.member.handle_heard(id, now, now_ms);
                }
            }
        }
    }

    /// Acts on what the echo answers showed.
    pub(super) fn on_outcomes(&mut self) {
        let (now, now_ms) = clock();
        let roster = self.member.replica().roster(now_ms);
        let (verified, rest) = self.paths.outcomes(&roster, now_ms);
        for (id, endpoint) in verified {
            self.member.handle_verified(id, endpoint, now);
        }
        for o in rest {
            match o {
                Outcome::Moved { from, to } => {
                    tracing::info!(%from, %to, "peers see this node at a new endpoint; reconnecting the control plane");
                    self.member.handle_moved();
                }
                Outcome::Seen(_) => {
                    self.due.rescan.get_or_insert(now);
                }
                Outcome::PathMtu(limit) => self.member.handle_path_mtu(limit, now, now_ms),
                // Went to the member above.
                Outcome::Verified { .. } => {}
            }
        }
    }

    /// The member whose WireGuard key is `key`.
    fn id_of(&self, key: &PublicKey, now_ms: u64) -> Option<NodeId> {
        paths::member_of(&self.member.replica().roster(now_ms), key, now_ms)
    }
}
