//! `--via`: queries forwarded to another member and answered by it.

use super::*;

impl Mesh {
    /// `--via`: forwards a query to another member and answers when it does.
    pub(super) fn start_via(&mut self, r: LocalRequest) {
        if self.via.len() + self.via_by_addr.len() >= MAX_VIA {
            let _ = r
                .reply
                .send(json!({"error": "too many --via queries in flight; try again"}));
            return;
        }
        let target = r.request["target"].as_str().unwrap_or("").to_string();
        let query = r.request["request"].to_string();
        match self.find(&target) {
            Ok(id) if id == self.node.key.id() => {
                let _ = r
                    .reply
                    .send(json!({"error": "--via names this node itself: leave --via out"}));
            }
            Ok(id) => {
                let addrs = self.control_addrs(&id);
                match self.send(&id, addrs, Request::Query(query)) {
                    Some(req) => {
                        self.via.insert(req, (r.reply, Instant::now()));
                    }
                    None => {
                        let _ = r
                            .reply
                            .send(json!({"error": "that member has an invalid id"}));
                    }
                }
            }
            Err(_) => {
                match target.parse::<SocketAddr>() {
                    // A control address of a node we do not know (yet).
                    Ok(sa) => match quic_multiaddr(sa).parse::<Multiaddr>() {
                        Ok(addr) => {
                            self.shell.dial_address(addr.clone());
                            self.via_by_addr
                                .push((addr, query, r.reply, Instant::now()));
                        }
                        Err(_) => {
                            let _ = r.reply.send(json!({"error": format!("{target} is not a usable control address")}));
                        }
                    },
                    Err(_) => {
                        let _ = r.reply.send(json!({"error": format!("no member is called {target:?} (name, overlay address, id or control IP:PORT): see `cladnet members`")}));
                    }
                }
            }
        }
    }

    /// Sends the queries that waited for a connection to `addr`.
    pub(super) fn send_via_by_addr(&mut self, id: NodeId, addr: &Multiaddr) {
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.via_by_addr)
            .into_iter()
            .partition(|(a, ..)| addr.to_string().starts_with(&a.to_string()));
        self.via_by_addr = waiting;
        for (_, query, reply, at) in ready {
            if let Some(req) = self.send(&id, vec![], Request::Query(query)) {
                self.via.insert(req, (reply, at));
            }
        }
    }

    /// Answers `--via` queries that took too long.
    pub(super) fn expire_via(&mut self) {
        let late = |at: &Instant| at.elapsed() > VIA_TIMEOUT;
        let expired: Vec<OutboundRequestId> = self
            .via
            .iter()
            .filter(|(_, (_, at))| late(at))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((reply, _)) = self.via.remove(&id) {
                let _ = reply.send(json!({"error": "that member did not answer in time"}));
            }
        }
        let (old, fresh): (Vec<_>, Vec<_>) = std::mem::take(&mut self.via_by_addr)
            .into_iter()
            .partition(|(.., at)| late(at));
        self.via_by_addr = fresh;
        for (addr, _, reply, _) in old {
            let _ = reply.send(json!({"error": format!("nothing answers at {addr}: check the address and that its agent runs")}));
        }
    }
}
