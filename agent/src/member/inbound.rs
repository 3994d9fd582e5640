//! What the control plane reports to a member: gossip, requests,
//! answers, failures, connections and where members see us; each handed
//! to the machine that owns it.

use super::{Asker, Command, Member, Tag};
use crate::api;
use federation::protocol::{Request as Ask, Response};
use federation::replica::{Inbound, Verdict};
use federation::NodeId;
use rand_core::RngCore;
use std::net::SocketAddr;
use std::time::Instant;

impl<R> Member<R> {
    /// A gossiped record forwarded by `source`: the verdict for the shell.
    pub fn handle_gossip(
        &mut self,
        source: &NodeId,
        data: &[u8],
        now: Instant,
        now_ms: u64,
    ) -> Verdict {
        let verdict = self.replica.handle_gossip(source, data, now_ms);
        self.flush(now, now_ms);
        verdict
    }

    /// `from` asks `request`; the answer goes to `reply`.
    pub fn handle_request(
        &mut self,
        from: NodeId,
        request: Ask,
        reply: R,
        now: Instant,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) {
        self.handle_heard(from, now, now_ms);
        let response = match self.replica.handle_request(from, request, now_ms) {
            Inbound::Answer(answer) => {
                self.command(Command::Respond { reply, answer });
                return self.flush(now, now_ms);
            }
            Inbound::Join { subject, join } => self.admit(subject, &join, now_ms),
            Inbound::Forward {
                inviter,
                subject,
                join,
            } => {
                self.forward_join(inviter, subject, join, reply, now, now_ms);
                return self.flush(now, now_ms);
            }
            Inbound::Federate {
                agreement,
                contacts,
            } => self.federated(&agreement, contacts),
            Inbound::EndFederation(ending) => self.ended(*ending),
            Inbound::Reissue(chain) => self.reissued(chain, now_ms),
            Inbound::Query { text, admit } => match api::read_request(&text) {
                Ok(q) if q.allowed_remotely(admit) => {
                    self.handle_local(Asker::Remote(reply), q, now, now_ms, rng);
                    return self.flush(now, now_ms);
                }
                Ok(q) => Response::Refused(format!(
                    "`{}` cannot be run here from another member",
                    q.name()
                )),
                Err(_) => Response::Refused("the query is not valid".into()),
            },
        };
        self.reply(reply, response);
        self.flush(now, now_ms);
    }

    /// `from` answered our request `tag`.
    pub fn handle_response(
        &mut self,
        tag: Tag,
        from: NodeId,
        response: Response,
        now: Instant,
        now_ms: u64,
    ) {
        self.handle_heard(from, now, now_ms);
        if let Some(r) = self.replica.handle_response(from, response, now_ms) {
            if self.joins.waits(&tag) {
                self.join_answered(&tag, Ok(r));
            } else if let Some(id) = self.via.answered(&tag) {
                let line = match r {
                    Response::Answer(text) => text,
                    Response::Refused(why) => api::error(&format!("the member refused: {why}")),
                    Response::NotMember | Response::Revoked(_) => api::error(
                        "that member does not know this node as a member: only members of its network get answers (a node that just joined: try again in a few seconds)",
                    ),
                    _ => api::error("the member sent an unexpected answer"),
                };
                self.answer(id, line);
            }
        }
        self.flush(now, now_ms);
    }

    /// Our request `tag` to `peer` failed (unreachable, timed out, or the
    /// shell could not send it).
    pub fn handle_failed(
        &mut self,
        tag: Tag,
        peer: NodeId,
        error: &str,
        now: Instant,
        now_ms: u64,
    ) {
        tracing::debug!(peer = %peer.short(), "request failed: {error}");
        self.replica.handle_failed(peer, now_ms);
        if self.joins.waits(&tag) {
            self.join_answered(&tag, Err(error.to_string()));
        } else if let Some(id) = self.via.answered(&tag) {
            self.answer(
                id,
                api::error(&format!("cannot reach that member: {error}")),
            );
        }
        self.flush(now, now_ms);
    }

    /// A first control connection to `id` is up (`dialed`: the address we
    /// dialed, if we did).
    pub fn handle_connected(
        &mut self,
        id: NodeId,
        dialed: Option<SocketAddr>,
        now: Instant,
        now_ms: u64,
    ) {
        self.handle_heard(id, now, now_ms);
        self.replica.handle_connected(id, now_ms);
        if let Some(addr) = dialed {
            for (query, local, at) in self.via.connected(addr) {
                let tag = self.ask(&id, now_ms, Ask::Query(query));
                self.via.sent(tag, local, at);
            }
        }
        self.flush(now, now_ms);
    }

    /// The last control connection to `id` closed: a member is redialed
    /// at once (e.g. our NAT changed its address).
    pub fn handle_disconnected(&mut self, id: NodeId, now: Instant, now_ms: u64) {
        self.replica.handle_disconnected(&id);
        if self.replica.is_member(&id, now_ms) {
            let addrs = self.control_addrs(&id, now_ms);
            self.command(Command::Dial { id, addrs });
        }
        self.flush(now, now_ms);
    }

    /// Member `from` sees our control plane at `addr` (strangers' reports
    /// are not believed): the host is re-read if that is news.
    pub fn handle_observed(&mut self, from: NodeId, addr: SocketAddr, now: Instant, now_ms: u64) {
        if self.replica.is_member(&from, now_ms) && self.observed.handle_report(from, addr, now) {
            tracing::debug!(%addr, by = %from.short(), "a member sees our control plane at a new endpoint");
            self.command(Command::Rescan);
        }
    }
}
