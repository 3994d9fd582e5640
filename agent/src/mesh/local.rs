//! The local CLI's requests (`status`, `members`, `invite`, `revoke`,
//! `leave`) and the sockets that carry them: the root-only Unix socket and
//! the HTTP listener for Prometheus and the mesh page.

use super::*;

impl Mesh {
    pub(super) async fn on_local(&mut self, req: &Value) -> Value {
        match req["cmd"].as_str().unwrap_or("") {
            "status" => self.status(),
            "members" => self.members(),
            "invite" => self.invite(req),
            "revoke" => self.revoke(req["node"].as_str().unwrap_or("")).await,
            "leave" => self.leave().await,
            "peers" => self.peers(),
            "metrics" => self.network_metrics(),
            "prometheus" => {
                let text = telemetry::prometheus(
                    &self.status(),
                    &self.peers(),
                    &self.members(),
                    &self.counters(),
                );
                json!({"text": text})
            }
            "html" => {
                let name = self
                    .ledger
                    .authority()
                    .map(|a| a.name.clone())
                    .unwrap_or_default();
                json!({"text": telemetry::html_page(&name, &self.network_metrics())})
            }
            "host_networks" => {
                let mut nets: Vec<federation::Cidr> = self
                    .ledger
                    .members(now_ms())
                    .iter()
                    .filter(|m| m.status == Status::Active)
                    .flat_map(|m| m.record.host_networks.iter().copied())
                    .collect();
                nets.sort();
                nets.dedup();
                json!({"host_networks": nets})
            }
            other => json!({"error": format!("unknown request {other:?}")}),
        }
    }

    pub(super) fn status(&self) -> Value {
        let auth = self.ledger.authority();
        let rejected: serde_json::Map<String, Value> = self
            .ledger
            .rejected()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let now = now_ms();
        let members = self.ledger.members(now);
        json!({
            "name": self.own.name,
            "id": self.node.key.id().to_hex(),
            "address": self.own.address.to_string(),
            "network": auth.map(|a| a.name.clone()),
            "network_id": self.node.network.id.to_string(),
            "cidr": auth.map(|a| a.cidr.to_string()),
            "mtu": self.own.mtu,
            "mtu_reason": self.mtu_reason,
            "host_mtu": self.own.host_mtu,
            "path_mtu": self.own.path_mtu,
            "interface": self.iface,
            "listen": self.node.settings.listen.to_string(),
            "control_listen": self.node.settings.control_listen.to_string(),
            "endpoints": self.own.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            "reflexive": self.own.reflexive.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            "version": self.version,
            "members": members.iter().filter(|m| m.status == Status::Active).count(),
            "connected": self.shell.connected().len(),
            "authority": self.node.authority.is_some(),
            "rejected_records": rejected,
            "relay": {
                "serves": self.relays.serve,
                "relayed_bytes": self.relays.relayed_bytes.load(std::sync::atomic::Ordering::Relaxed),
                "refused": self.relays.refused.load(std::sync::atomic::Ordering::Relaxed),
            },
            "echo": {
                "answered": self.echoes.echo.answered.load(std::sync::atomic::Ordering::Relaxed),
                "dropped": self.echoes.echo.dropped.load(std::sync::atomic::Ordering::Relaxed),
            },
            "gossip": {
                "in_messages": self.gossip.in_messages,
                "in_bytes": self.gossip.in_bytes,
                "out_messages": self.gossip.out_messages,
                "out_bytes": self.gossip.out_bytes,
            },
        })
    }

    pub(super) fn members(&self) -> Value {
        let now = now_ms();
        let list: Vec<Value> = self
            .ledger
            .members(now)
            .iter()
            .map(|m| {
                let (state, last_seen_ms) = self.liveness(&m.id, m.status);
                json!({
                    "name": m.record.name,
                    "id": m.id.to_hex(),
                    "address": m.record.address.to_string(),
                    "endpoints": m.record.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                    "state": state,
                    "last_seen_ms": last_seen_ms,
                    "version": m.version,
                    "self": m.id == self.node.key.id(),
                })
            })
            .collect();
        Value::Array(list)
    }

    pub(super) fn invite(&mut self, req: &Value) -> Value {
        let ttl = Duration::from_secs(req["ttl_s"].as_u64().unwrap_or(3600));
        let uses = req["uses"].as_u64().unwrap_or(1) as u32;
        if ttl.is_zero() || ttl > MAX_INVITE_TTL || uses == 0 || uses > MAX_INVITE_USES {
            return json!({"error": "--ttl must be between 1s and 30d and --uses between 1 and 1000"});
        }
        if !self.own.chain.last().is_some_and(|c| c.admit) && self.node.authority.is_none() {
            return json!({"error": "this node may not admit others: ask another member for an invite"});
        }
        let mut id = [0u8; 16];
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        OsRng.fill_bytes(&mut secret);
        let expires_ms = now_ms() + ttl.as_millis() as u64;
        let issued = Issued {
            secret_hash: secret_hash(&secret),
            expires_ms,
            uses_left: uses,
        };
        let stored = serde_json::to_vec(&issued)
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(self.node.store.put(Table::Invites, &id, &b)?));
        if let Err(e) = stored {
            return json!({"error": format!("cannot store the invite: {e:#}")});
        }
        let token = Invite {
            network: self.node.network.id,
            authority: self.node.network.authority,
            inviter: self.node.key.id(),
            addrs: self.own.control.clone(),
            id,
            secret,
            expires_ms,
        };
        json!({"token": token.encode(), "expires_ms": expires_ms, "uses": uses})
    }

    /// Finds a member by name, overlay address, id prefix (at least 8
    /// digits) or control address (IP:PORT).
    pub(super) fn find(&self, who: &str) -> Result<NodeId, String> {
        let control = who.parse::<SocketAddr>().ok().map(quic_multiaddr);
        let now = now_ms();
        let members = self.ledger.members(now);
        let hits: Vec<NodeId> = members
            .iter()
            .filter(|m| {
                m.record.name == who
                    || m.record.address.to_string() == who
                    || (who.len() >= 8 && m.id.to_hex().starts_with(who))
                    || control
                        .as_ref()
                        .is_some_and(|c| m.record.control.contains(c))
            })
            .map(|m| m.id)
            .collect();
        match hits.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!(
                "no member is called {who:?}: see `cladnet members`"
            )),
            _ => Err(format!(
                "{who:?} names several members: give the node id instead"
            )),
        }
    }

    pub(super) async fn revoke(&mut self, who: &str) -> Value {
        let target = match self.find(who) {
            Ok(t) => t,
            Err(e) => return json!({"error": e}),
        };
        if target == self.node.key.id() {
            return json!({"error": "a node cannot revoke itself: use `cladnet leave`"});
        }
        if !self.own.chain.last().is_some_and(|c| c.admit) {
            return json!({"error": "this node may not revoke members"});
        }
        // Members admitted through the revoked node stay members.
        let keep: Vec<NodeId> = self
            .ledger
            .members(now_ms())
            .iter()
            .filter_map(|m| {
                let chain = &m.record.chain;
                let i = chain.iter().position(|c| c.subject == target)?;
                chain.get(i + 1).map(|c| c.subject)
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(federation::cert::MAX_KEEP)
            .collect();
        if self.own.revocations.len() >= federation::member::MAX_REVOCATIONS {
            return json!({"error": "this node's record holds the most revocations it can; revoke from another member"});
        }
        self.own.revocations.push(Revocation { node: target, keep });
        if let Err(e) = self.publish_own().await {
            return json!({"error": format!("cannot publish the revocation: {e:#}")});
        }
        self.apply().await;
        self.shell.disconnect(&target);
        json!({"revoked": target.to_hex()})
    }

    pub(super) async fn leave(&mut self) -> Value {
        self.own.left_ms = Some(now_ms());
        if let Err(e) = self.publish_own().await {
            self.own.left_ms = None;
            return json!({"error": format!("cannot publish the departure: {e:#}")});
        }
        // Push the farewell to every connected member directly as well.
        let bytes = self
            .ledger
            .state()
            .get(&self.node.key.id())
            .map(|r| r.encode());
        if let Some(bytes) = bytes {
            for id in self.shell.connected() {
                self.shell
                    .request(&id, vec![], Request::Push(vec![bytes.clone()]));
            }
        }
        self.leaving = true;
        json!({"left": true})
    }
}

/// Serves Prometheus text on `/metrics` and the mesh page on `/` (plain
/// HTTP/1.0, one request per connection); never returns if `addr` is None.
pub async fn serve_http(
    addr: Option<SocketAddr>,
    to_loop: mpsc::Sender<LocalRequest>,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(addr) = addr else {
        return std::future::pending().await;
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot serve metrics on {addr}: {e}; pick another --metrics-listen")
    })?;
    tracing::info!("metrics on http://{addr}/metrics, mesh page on http://{addr}/");
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let to_loop = to_loop.clone();
        tokio::spawn(async move {
            let mut head = vec![0u8; 2048];
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let line = String::from_utf8_lossy(&head[..n]);
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (cmd, kind) = match path {
                "/metrics" => ("prometheus", "text/plain; version=0.0.4"),
                "/" => ("html", "text/html; charset=utf-8"),
                _ => ("", ""),
            };
            let (status, body) = if cmd.is_empty() {
                (
                    "404 Not Found",
                    "not found: try /metrics or /\n".to_string(),
                )
            } else {
                let (reply, answer) = oneshot::channel();
                let request = json!({"cmd": cmd});
                let text = match to_loop.send(LocalRequest { request, reply }).await {
                    Ok(()) => answer
                        .await
                        .ok()
                        .and_then(|v| v["text"].as_str().map(str::to_string)),
                    Err(_) => None,
                };
                match text {
                    Some(t) => ("200 OK", t),
                    None => (
                        "503 Service Unavailable",
                        "the agent is shutting down\n".to_string(),
                    ),
                }
            };
            let kind = if kind.is_empty() { "text/plain" } else { kind };
            let response = format!(
                "HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// Serves the CLI on the root-only socket `path`: one JSON request line in,
/// one JSON answer line out, answered by the control loop.
pub async fn serve_local(
    path: &std::path::Path,
    to_loop: mpsc::Sender<LocalRequest>,
) -> Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let listener = crate::api::bind(path)?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let to_loop = to_loop.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = Vec::new();
            let mut reader = tokio::io::BufReader::new(read).take(MAX_LOCAL_REQUEST);
            let _ = reader.read_until(b'\n', &mut line).await;
            let answer = match serde_json::from_slice::<Value>(&line) {
                Ok(request) => {
                    let (reply, answer) = oneshot::channel();
                    if to_loop.send(LocalRequest { request, reply }).await.is_err() {
                        json!({"error": "the agent is shutting down"})
                    } else {
                        answer
                            .await
                            .unwrap_or_else(|_| json!({"error": "the agent is shutting down"}))
                    }
                }
                Err(_) => json!({"error": "the request is not one JSON line"}),
            };
            let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
        });
    }
}

/// Longest local request accepted.
const MAX_LOCAL_REQUEST: u64 = 4096;
