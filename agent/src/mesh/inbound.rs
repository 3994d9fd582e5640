//! What arrives at the control loop: control-plane events (gossip,
//! requests, responses, connections) handed to the replica and the
//! machines that own them, data-plane events (echo answers, direct
//! traffic seen, handshakes), and what the echo answers showed; and the
//! one way the loop asks and answers other members (counted by the
//! replica).

use super::*;

impl Mesh {
    pub(super) async fn on_shell(&mut self, event: Event) {
        let now_ms = now_ms();
        match event {
            Event::Gossip {
                source,
                ticket,
                data,
            } => {
                let verdict = self.replica.handle_gossip(&source, &data, now_ms);
                self.shell.validated(&ticket, verdict);
            }
            Event::Request {
                from,
                request,
                reply,
            } => {
                self.heard(from);
                let response = match self.replica.handle_request(from, request, now_ms) {
                    Inbound::Answer(counted) => return self.shell.respond(reply, counted),
                    Inbound::Join { subject, join } => return self.admit(subject, &join, reply),
                    Inbound::Forward {
                        inviter,
                        subject,
                        join,
                    } => return self.forward_join(inviter, subject, join, reply),
                    Inbound::Federate {
                        agreement,
                        contacts,
                    } => self.federated(&agreement, contacts),
                    Inbound::EndFederation(ending) => self.ended(*ending),
                    Inbound::Reissue(chain) => self.reissued(chain),
                    Inbound::Query { text, admit } => match api::read_request(&text) {
                        Ok(q) if q.allowed_remotely(admit) => {
                            Response::Answer(self.answer(q).await)
                        }
                        Ok(q) => Response::Refused(format!(
                            "`{}` cannot be run here from another member",
                            q.name()
                        )),
                        Err(_) => Response::Refused("the query is not valid".into()),
                    },
                };
                self.reply(reply, response);
            }
            Event::Response { id, from, response } => {
                self.heard(from);
                let Some(r) = self.replica.handle_response(from, response, now_ms) else {
                    return;
                };
                if self.joins.waits(&id) {
                    return self.join_answered(&id, Ok(r));
                }
                if let Some(reply) = self.via.answered(&id) {
                    let line = match r {
                        Response::Answer(text) => text,
                        Response::Refused(why) => api::error(&format!("the member refused: {why}")),
                        Response::NotMember | Response::Revoked(_) => api::error(
                            "that member does not know this node as a member: only members of its network get answers (a node that just joined: try again in a few seconds)",
                        ),
                        _ => api::error("the member sent an unexpected answer"),
                    };
                    let _ = reply.send(line);
                }
            }
            Event::Failed { id, peer, error } => {
                tracing::debug!(peer = %peer.short(), "request failed: {error}");
                self.replica.handle_failed(peer, now_ms);
                if self.joins.waits(&id) {
                    return self.join_answered(&id, Err(error));
                }
                if let Some(reply) = self.via.answered(&id) {
                    let _ = reply.send(api::error(&format!("cannot reach that member: {error}")));
                }
            }
            Event::Connected(id, dialed) => {
                self.heard(id);
                self.replica.handle_connected(id, now_ms);
                if let Some(addr) = dialed {
                    for (query, reply, at) in self.via.connected(addr) {
                        if let Some(rid) = self.ask(&id, &[], Ask::Query(query)) {
                            self.via.sent(rid, reply, at);
                        }
                    }
                }
            }
            Event::Disconnected(id) => {
                self.replica.handle_disconnected(&id);
                // Redial at once (e.g. our NAT changed its address).
                if self.replica.is_member(&id, now_ms) {
                    let addrs = self.control_addrs(&id);
                    self.shell.dial(&id, &addrs);
                }
            }
            Event::Listening(addr) => tracing::info!("control plane listening on {addr}"),
            Event::Observed(id, addr) => self.on_observed(id, addr),
        }
    }

    pub(super) fn on_node(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::Echo {
                from,
                nonce,
                seen,
                len,
            } => {
                self.paths
                    .asker
                    .handle_answer(from, nonce, seen, len, Instant::now());
                self.on_outcomes();
            }
            NodeEvent::DirectSeen { peer, at } => {
                let now_ms = now_ms();
                let roster = self.replica.roster(now_ms);
                self.paths
                    .direct_seen(&self.data, &roster, &peer, at, Instant::now(), now_ms);
            }
            NodeEvent::Handshake(key) => {
                if let Some(id) = self.id_of(&key) {
                    self.heard(id);
                }
            }
        }
    }

    /// Acts on what the echo answers showed.
    pub(super) fn on_outcomes(&mut self) {
        let (now, now_ms) = (Instant::now(), now_ms());
        let roster = self.replica.roster(now_ms);
        for o in self.paths.outcomes(&self.data, &roster, now, now_ms) {
            match o {
                Outcome::Moved { from, to } => {
                    // QUIC here cannot migrate: the control connections
                    // are dead; close them now and redial instead of
                    // waiting for their timeout.
                    tracing::info!(%from, %to, "peers see this node at a new endpoint; reconnecting the control plane");
                    let connected: Vec<NodeId> = self.replica.connected().copied().collect();
                    for id in connected {
                        self.shell.disconnect(&id);
                    }
                }
                Outcome::Seen(_) => {
                    self.due.rescan.get_or_insert(Instant::now());
                }
                Outcome::PathMtu(limit) => {
                    self.own.set_path_mtu(limit);
                    self.due.rescan.get_or_insert(Instant::now());
                }
                // Taken by the routes already.
                Outcome::Verified { .. } => {}
            }
        }
    }

    /// Sends a request of this node's own (a forwarded query or join, a
    /// re-issued certificate), counted like every control message.
    pub(super) fn ask(
        &mut self,
        to: &NodeId,
        addrs: &[SocketAddr],
        request: Ask,
    ) -> Option<RequestId> {
        self.replica.count_request(&request);
        self.shell.request(to, addrs, request)
    }

    /// Answers a request through the replica, which counts it.
    pub(super) fn reply(&mut self, reply: Reply, response: Response) {
        let answer = self.replica.answer(response);
        self.shell.respond(reply, answer);
    }
}
