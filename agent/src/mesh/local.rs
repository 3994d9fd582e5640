//! Requests of the local API (and those forwarded by other members with
//! `--via`): answered from a consistent view, forwarded, or carried out.

use super::*;

impl Mesh {
    /// `--via`: forwards a query to another member; answered when it does.
    pub(super) fn start_via(
        &mut self,
        target: &str,
        request: Request,
        reply: oneshot::Sender<String>,
    ) {
        if !self.via.has_room() {
            let _ = reply.send(api::error("too many --via queries in flight; try again"));
            return;
        }
        let query = api::answer(&request);
        let now = Instant::now();
        match self.with_view(|v| v.find(target)) {
            Ok(id) if id == self.me() => {
                let _ = reply.send(api::error("--via names this node itself: leave --via out"));
            }
            Ok(id) => {
                let addrs = self.control_addrs(&id);
                match self.ask(&id, &addrs, Ask::Query(query)) {
                    Some(rid) => self.via.sent(rid, reply, now),
                    None => {
                        let _ = reply.send(api::error("that member has an invalid id"));
                    }
                }
            }
            Err(why) => match target.parse::<SocketAddr>() {
                // A control endpoint of a node we do not know (yet).
                Ok(addr) => {
                    self.shell.dial_address(addr);
                    self.via.dialing(addr, query, reply, now);
                }
                Err(_) => {
                    let _ = reply.send(api::error(&why));
                }
            },
        }
    }

    /// Answers a local (or forwarded) request.
    pub(super) async fn answer(&mut self, request: Request) -> String {
        match request {
            Request::Status => self.with_view(|v| api::answer(&v.status())),
            Request::Members => self.with_view(|v| api::answer(&v.members())),
            Request::Peers => self.with_view(|v| api::answer(&v.peers())),
            Request::Metrics => self.with_view(|v| api::answer(&v.metrics())),
            Request::HostNetworks => self.with_view(|v| api::answer(&v.host_networks())),
            Request::Prometheus => self.with_view(|v| {
                let text = crate::exposition::prometheus(
                    &v.status(),
                    &v.peers(),
                    &v.members(),
                    &v.dropped(),
                );
                api::answer(&docs::Text { text })
            }),
            Request::Html => {
                let name = self
                    .replica
                    .ledger()
                    .authority()
                    .map(|a| a.name.clone())
                    .unwrap_or_default();
                self.with_view(|v| {
                    let members = v.members();
                    let alive = members
                        .iter()
                        .filter(|m| m.state != "left" && m.state != "revoked")
                        .count();
                    api::answer(&docs::Text {
                        text: crate::exposition::html_page(&crate::exposition::Page {
                            network: &name,
                            metrics: &v.metrics(),
                            members: &members,
                            interval: federation::member::metrics_interval(alive),
                            now_ms: v.now_ms,
                        }),
                    })
                })
            }
            Request::Invite { ttl_s, uses, tags } => self.invite(&invites::Terms {
                ttl: Duration::from_secs(ttl_s),
                uses,
                tags,
            }),
            Request::Set(change) => self.set(change).await,
            Request::Revoke { node } => self.revoke(&node),
            Request::Leave => {
                self.leaving = true;
                api::answer(&self.own.leave(now_ms()))
            }
            Request::Via { .. } => api::error("--via cannot be chained"),
            Request::Tag { .. } => api::error("`tag` cannot be run here from another member"),
            Request::Show => {
                api::error("`show` is for WireGuard-file mode; use `status` and `peers`")
            }
            Request::FederateOffer {
                expose,
                ttl_s,
                authority,
            } => self.federate_offer(&expose, Duration::from_secs(ttl_s), authority.as_deref()),
            Request::FederateSign {
                offer,
                expose,
                authority,
            } => self.federate_sign(&offer, &expose, authority.as_deref()),
            Request::FederateAdopt {
                agreement,
                contacts,
            } => self.federate_adopt(&agreement, contacts),
            Request::FederateList => api::answer(&self.federate_list()),
            Request::FederateEnd { org, authority } => {
                self.federate_end(&org, authority.as_deref())
            }
        }
    }

    pub(super) fn revoke(&mut self, who: &str) -> String {
        let admits = self.state.authority.is_some();
        let now_ms = now_ms();
        let found = self
            .own
            .may_admit(self.standing, admits)
            .and_then(|()| self.with_view(|v| v.find(who)))
            .and_then(|id| match self.replica.ledger().member(&id, now_ms) {
                Some(_) => Ok(id),
                None => Err(format!(
                    "{who} is a member of a federated network: only its own network can revoke it (`federate end` cuts the whole agreement)"
                )),
            });
        let me = self.me();
        match found.and_then(|target| self.own.revoke(self.replica.ledger(), &me, &target, now_ms))
        {
            Ok(doc) => {
                if let Some(target) = NodeId::from_hex(&doc.revoked) {
                    self.shell.disconnect(&target);
                }
                api::answer(&doc)
            }
            Err(why) => api::error(&why),
        }
    }
}
