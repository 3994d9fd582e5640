//! The control loop of a network member: feeds gossip and anti-entropy into
//! the ledger, keeps the node's own record (endpoints, address claim) up to
//! date, turns the ledger's members into the data plane's peer table,
//! admits newcomers, and answers the local CLI.

use crate::inventory::{quic_multiaddr, scan};
use crate::probe::Prober;
use crate::relays::Relays;
use crate::statedir::{now_ms, Node};
use crate::telemetry::{self, CpuSample};
use anyhow::Result;
use drivers::netlink::Netlink;
use drivers::store::Table;
use federation::admission::Admitter;
use federation::cert::Revocation;
use federation::member::{Link, MemberRecord, Metrics, MAX_LINKS};
use federation::net::{Event, Shell};
use federation::protocol::{Request, Response};
use federation::token::{secret_hash, Invite, Issued};
use federation::{address, sync, Ingest, Ledger, NodeId, Status};
use libp2p::request_response::OutboundRequestId;
use libp2p::Multiaddr;
use netstack::{Device, IpNet, PeerConfig, PublicKey};
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Keepalive on every tunnel, so liveness and NAT mappings stay fresh.
const KEEPALIVE: Duration = Duration::from_secs(25);
/// A member heard from within this long is alive; then suspect; then down.
const ALIVE_FOR: Duration = Duration::from_secs(35);
const SUSPECT_FOR: Duration = Duration::from_secs(120);
/// Anti-entropy with one peer this often.
const SYNC_EVERY: Duration = Duration::from_secs(2);
/// Redial disconnected members this often, at most this many per round.
const REDIAL_EVERY: Duration = Duration::from_secs(4);
const REDIAL_BATCH: usize = 16;
/// Control-plane connections a member keeps (gossip needs a few, not all).
const MAX_CONTROL_PEERS: usize = 24;
/// Re-scan host addresses this often.
const SCAN_EVERY: Duration = Duration::from_secs(3);
/// A direct path with no handshake for this long falls back to a relay.
const DIRECT_GRACE: Duration = Duration::from_secs(6);
/// A relayed peer is tried directly again this often, for DIRECT_GRACE.
const DIRECT_RETRY: Duration = Duration::from_secs(60);
/// Pushes of at most this many records are re-gossiped by the receiver.
const URGENT_PUSH: usize = 4;
/// Ask this many connected members per scan how they see our endpoint.
const OBSERVERS: usize = 4;
/// An observed (reflexive) endpoint is kept this long after it was reported.
const OBSERVED_FOR: Duration = Duration::from_secs(20);
/// Probe this many peers every [`PROBE_EVERY`] (round robin).
const PROBES_PER_ROUND: usize = 8;
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// The first summary after start, once a few probes have answered.
const METRICS_FIRST: Duration = Duration::from_secs(8);
/// How long a `--via` query may take.
const VIA_TIMEOUT: Duration = Duration::from_secs(12);
/// Most `--via` queries waiting for an answer.
const MAX_VIA: usize = 64;
/// Local commands another member may run here with `--via`.
const READ_ONLY: [&str; 5] = ["status", "members", "peers", "metrics", "host_networks"];

/// Longest invite life and most uses.
pub const MAX_INVITE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most uses one invite may have.
pub const MAX_INVITE_USES: u32 = 1000;

/// A request from the local CLI and where its answer goes.
pub struct LocalRequest {
    /// The request (JSON object with `cmd`).
    pub request: Value,
    /// The answer (JSON).
    pub reply: oneshot::Sender<Value>,
}

/// Everything the control loop owns.
pub struct Mesh {
    node: Node,
    ledger: Ledger,
    shell: Shell,
    device: Arc<Mutex<Device>>,
    netlink: Netlink,
    tun_index: u32,
    iface: String,
    own: MemberRecord,
    version: u64,
    last_seen: BTreeMap<NodeId, Instant>,
    started: Instant,
    peers_synced: BTreeSet<NodeId>,
    tunnel_rx: BTreeMap<NodeId, u64>,
    leaving: bool,
    prober: Option<Prober<NodeId>>,
    probe_cursor: usize,
    cpu: CpuSample,
    metrics: Metrics,
    metrics_due: Instant,
    gossip: Traffic,
    via: BTreeMap<OutboundRequestId, (oneshot::Sender<Value>, Instant)>,
    via_by_addr: Vec<(Multiaddr, String, oneshot::Sender<Value>, Instant)>,
    /// Reflexive endpoints: when first and last reported.
    observed: BTreeMap<SocketAddr, (Instant, Instant)>,
    chosen: BTreeMap<NodeId, SocketAddr>,
    refresh_mtu: bool,
    mtu_reason: String,
    relays: Arc<Relays>,
    paths: BTreeMap<NodeId, PathState>,
}

/// How this node reaches one peer.
#[derive(Debug, Clone, Copy)]
struct PathState {
    /// When a direct endpoint was last put in place (and tried since).
    direct_since: Instant,
    /// The relay in use, if any.
    relay: Option<NodeId>,
}

/// Control-plane messages and payload bytes, each way.
#[derive(Debug, Default, Clone, Copy)]
struct Traffic {
    in_messages: u64,
    in_bytes: u64,
    out_messages: u64,
    out_bytes: u64,
}

fn lock(d: &Arc<Mutex<Device>>) -> std::sync::MutexGuard<'_, Device> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

fn multiaddrs(texts: &[String]) -> Vec<Multiaddr> {
    texts.iter().filter_map(|t| t.parse().ok()).collect()
}

impl Mesh {
    /// Builds the loop around an already running data plane.
    pub fn new(
        node: Node,
        shell: Shell,
        device: Arc<Mutex<Device>>,
        relays: Arc<Relays>,
        netlink: Netlink,
        tun_index: u32,
        iface: String,
    ) -> Result<Mesh> {
        let ledger = node.ledger()?;
        let (mut own, version) = node.own()?;
        own.no_relay = !relays.serve;
        Ok(Mesh {
            relays,
            paths: BTreeMap::new(),
            node,
            ledger,
            shell,
            device,
            netlink,
            tun_index,
            iface,
            own,
            version,
            last_seen: BTreeMap::new(),
            started: Instant::now(),
            peers_synced: BTreeSet::new(),
            tunnel_rx: BTreeMap::new(),
            leaving: false,
            prober: Prober::new()
                .map_err(|e| tracing::warn!("no overlay RTT probes: {e:#}"))
                .ok(),
            probe_cursor: 0,
            cpu: CpuSample::now(),
            metrics: Metrics::default(),
            metrics_due: Instant::now() + METRICS_FIRST,
            gossip: Traffic::default(),
            via: BTreeMap::new(),
            via_by_addr: Vec::new(),
            observed: BTreeMap::new(),
            chosen: BTreeMap::new(),
            refresh_mtu: false,
            mtu_reason: String::new(),
        })
    }

    /// Runs until `local` closes, a `leave` completes, or `stop` resolves.
    pub async fn run(
        mut self,
        mut local: mpsc::Receiver<LocalRequest>,
        stop: impl std::future::Future<Output = Result<()>>,
    ) -> Result<()> {
        self.refresh_own().await?;
        self.apply().await;
        self.redial();
        let mut sync_tick = tokio::time::interval(SYNC_EVERY);
        let mut redial_tick = tokio::time::interval(REDIAL_EVERY);
        let mut scan_tick = tokio::time::interval(SCAN_EVERY);
        let mut probe_tick = tokio::time::interval(PROBE_EVERY);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                event = self.shell.next() => self.on_event(event).await,
                _ = sync_tick.tick() => {
                    self.anti_entropy();
                    self.observe_tunnels();
                    self.manage_paths();
                    self.expire_via();
                    if Instant::now() >= self.metrics_due {
                        self.publish_metrics().await;
                    }
                }
                _ = probe_tick.tick() => self.probe_round(),
                replies = replies(&mut self.prober) => {
                    for r in replies {
                        self.seen(r.key);
                    }
                }
                _ = redial_tick.tick() => self.redial(),
                _ = scan_tick.tick() => {
                    self.ask_observers();
                    if let Err(e) = self.refresh_own().await {
                        tracing::warn!("cannot refresh this node's record: {e:#}");
                    }
                }
                req = local.recv() => match req {
                    Some(r) if r.request["cmd"] == "via" => self.start_via(r),
                    Some(r) => {
                        let answer = self.on_local(&r.request).await;
                        let _ = r.reply.send(answer);
                        if self.leaving {
                            // Give gossip a moment to carry the farewell.
                            let deadline = tokio::time::sleep(Duration::from_millis(1500));
                            tokio::pin!(deadline);
                            loop {
                                tokio::select! {
                                    e = self.shell.next() => self.on_event(e).await,
                                    _ = &mut deadline => break,
                                }
                            }
                            return Ok(());
                        }
                    }
                    None => return Ok(()),
                },
                r = &mut stop => return r,
            }
        }
    }

    fn seen(&mut self, id: NodeId) {
        self.last_seen.insert(id, Instant::now());
    }

    /// Ingests records; stores and applies what was new.
    async fn ingest_all(&mut self, records: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let now = now_ms();
        let mut fresh = Vec::new();
        for bytes in records {
            if let Ok(Ingest::Newer) = self.ledger.ingest(bytes, now) {
                if let Ok(r) = federation::SignedRecord::decode(bytes) {
                    fresh.push((r.writer, bytes.clone()));
                }
            }
        }
        if !fresh.is_empty() {
            if let Err(e) = self.node.save_records(&fresh) {
                tracing::error!("cannot store received records: {e:#}");
            }
            self.apply().await;
        }
        fresh.into_iter().map(|(_, b)| b).collect()
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Gossip { source, id, data } => {
                self.gossip.in_messages += 1;
                self.gossip.in_bytes += data.len() as u64;
                let verdict = match self.ledger.ingest(&data, now_ms()) {
                    Ok(Ingest::Newer) => {
                        if let Ok(r) = federation::SignedRecord::decode(&data) {
                            if let Err(e) = self.node.save_records(&[(r.writer, data.clone())]) {
                                tracing::error!("cannot store a gossiped record: {e:#}");
                            }
                            self.seen(r.writer);
                        }
                        self.apply().await;
                        Some(true)
                    }
                    Ok(Ingest::Stale) => None,
                    Err(e) => {
                        tracing::debug!("refused a gossiped record: {e}");
                        Some(false)
                    }
                };
                self.shell.validated(&id, &source, verdict);
            }
            Event::Request {
                from,
                request,
                channel,
            } => {
                let response = self.on_request(from, request).await;
                self.shell.respond(channel, response);
            }
            Event::Response { id, from, response } => {
                self.seen(from);
                self.gossip.in_messages += 1;
                match response {
                    Response::Answer(text) => {
                        if let Some((reply, _)) = self.via.remove(&id) {
                            let v = serde_json::from_str(&text).unwrap_or_else(
                                |_| json!({"error": "the member sent an unreadable answer"}),
                            );
                            let _ = reply.send(v);
                        }
                    }
                    Response::Refused(why) if self.via.contains_key(&id) => {
                        if let Some((reply, _)) = self.via.remove(&id) {
                            let _ =
                                reply.send(json!({"error": format!("the member refused: {why}")}));
                        }
                    }
                    Response::Versions(v) => {
                        let (pull, push) = sync::plan(self.ledger.state(), &v);
                        let addrs = self.control_addrs(&from);
                        if !pull.is_empty() {
                            self.shell
                                .request(&from, addrs.clone(), Request::Pull(pull));
                        }
                        if !push.is_empty() {
                            self.send(&from, addrs, Request::Push(push));
                        }
                    }
                    Response::Records(records) => {
                        self.ingest_all(&records).await;
                    }
                    Response::Observed(Some(endpoint)) => {
                        let now = Instant::now();
                        if let Some((_, last)) = self.observed.get_mut(&endpoint) {
                            *last = now;
                        } else if self.observed.len() < 64 {
                            self.observed.insert(endpoint, (now, now));
                            // Seen somewhere new: tell everyone now.
                            if let Err(e) = self.refresh_own().await {
                                tracing::warn!("cannot refresh this node's record: {e:#}");
                            }
                        }
                    }
                    _ => {}
                }
            }
            Event::Failed { id, peer, error } => {
                tracing::debug!(peer = %peer.short(), "request failed: {error}");
                if let Some((reply, _)) = self.via.remove(&id) {
                    let _ =
                        reply.send(json!({"error": format!("cannot reach that member: {error}")}));
                }
            }
            Event::Connected(id, dialed) => {
                self.seen(id);
                // A new connection may mean a new path: learn at once how
                // this member sees us.
                self.send(&id, vec![], Request::Observe);
                if let Some(addr) = dialed {
                    self.send_via_by_addr(id, &addr);
                }
                // New neighbour: repair with it right away.
                self.send(
                    &id,
                    vec![],
                    Request::Summary(sync::summary(self.ledger.state())),
                );
            }
            Event::Disconnected(id) => {
                // Redial at once (e.g. our NAT changed its address).
                let addrs = self.control_addrs(&id);
                if self
                    .ledger
                    .member(&id, now_ms())
                    .is_some_and(|m| m.status == Status::Active)
                {
                    self.shell.dial(&id, addrs);
                }
            }
            Event::Listening(addr) => tracing::info!("control plane listening on {addr}"),
            Event::Observed(addr) => tracing::debug!("a peer sees us at {addr}"),
        }
    }

    async fn on_request(&mut self, from: NodeId, request: Request) -> Response {
        let member = self.ledger.member(&from, now_ms()).map(|m| m.status);
        match request {
            Request::Join(req) => self.admit(from, &req),
            // Only members in good standing take part in anti-entropy.
            _ if member != Some(Status::Active) => {
                Response::Refused("only members of this network may ask".into())
            }
            Request::Summary(s) => {
                self.seen(from);
                Response::Versions(sync::differing(self.ledger.state(), &s))
            }
            Request::Pull(writers) => {
                self.seen(from);
                Response::Records(sync::records_of(self.ledger.state(), &writers))
            }
            Request::Observe => Response::Observed(self.observed_endpoint_of(&from)),
            Request::Query(text) => {
                self.seen(from);
                let admit = self.ledger.member(&from, now_ms()).is_some_and(|m| m.admit);
                match serde_json::from_str::<Value>(&text) {
                    Ok(q) => {
                        let cmd = q["cmd"].as_str().unwrap_or("");
                        let allowed = READ_ONLY.contains(&cmd)
                            || (admit && matches!(cmd, "invite" | "revoke"));
                        if allowed {
                            Response::Answer(self.on_local(&q).await.to_string())
                        } else {
                            Response::Refused(format!(
                                "`{cmd}` cannot be run here from another member"
                            ))
                        }
                    }
                    Err(_) => Response::Refused("the query is not JSON".into()),
                }
            }
            Request::Push(records) => {
                self.seen(from);
                let records: Vec<Vec<u8>> = records.into_iter().take(sync::MAX_BATCH).collect();
                let fresh = self.ingest_all(&records).await;
                // A small push is an urgent update (a member behind a NAT
                // that just moved may reach only us): pass it on by gossip.
                if fresh.len() <= URGENT_PUSH {
                    for bytes in fresh {
                        self.gossip.out_messages += 1;
                        self.gossip.out_bytes += bytes.len() as u64;
                        self.shell.publish(bytes);
                    }
                }
                Response::Ack
            }
        }
    }

    fn admit(&mut self, from: NodeId, req: &federation::protocol::JoinRequest) -> Response {
        let key = req.invite;
        let issued: Option<Issued> = self
            .node
            .store
            .get(Table::Invites, &key)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let admitter = Admitter {
            key: &self.node.key,
            chain: &self.own.chain,
            authority: self.node.authority.as_ref(),
        };
        match admitter.admit(&self.ledger, req, from, issued.as_ref(), now_ms()) {
            Ok((spent, chain)) => {
                let stored = serde_json::to_vec(&spent)
                    .map_err(anyhow::Error::from)
                    .and_then(|b| Ok(self.node.store.put(Table::Invites, &key, &b)?));
                if let Err(e) = stored {
                    tracing::error!("cannot record the invite's use: {e:#}");
                    return Response::Refused(
                        "the member could not record the invite's use; try again".into(),
                    );
                }
                tracing::info!(name = %req.name, id = %from.short(), "admitted a new member");
                let records = self.ledger.state().newer_than(&federation::Digest(vec![]));
                Response::Admitted { chain, records }
            }
            Err(e) => {
                tracing::warn!(id = %from.short(), "refused a join: {e}");
                Response::Refused(e.to_string())
            }
        }
    }

    fn control_addrs(&self, id: &NodeId) -> Vec<Multiaddr> {
        self.ledger
            .member(id, now_ms())
            .map(|m| multiaddrs(&m.record.control))
            .unwrap_or_default()
    }

    fn anti_entropy(&mut self) {
        let connected = self.shell.connected();
        if connected.is_empty() {
            return;
        }
        let pick = connected[(OsRng.next_u32() as usize) % connected.len()];
        let summary = sync::summary(self.ledger.state());
        self.send(&pick, vec![], Request::Summary(summary));
    }

    /// Sends a request to a member, counting it.
    fn send(
        &mut self,
        to: &NodeId,
        addrs: Vec<Multiaddr>,
        request: Request,
    ) -> Option<OutboundRequestId> {
        self.gossip.out_messages += 1;
        self.gossip.out_bytes += request.payload_len() as u64;
        self.shell.request(to, addrs, request)
    }

    /// Active members other than us, by id, with their overlay addresses.
    fn peer_members(&self) -> Vec<(NodeId, std::net::Ipv4Addr)> {
        let me = self.node.key.id();
        self.ledger
            .members(now_ms())
            .iter()
            .filter(|m| m.status == Status::Active && m.id != me)
            .map(|m| (m.id, m.record.address))
            .collect()
    }

    /// Probes the next few peers (round robin) through the overlay.
    fn probe_round(&mut self) {
        let peers = self.peer_members();
        let Some(prober) = self.prober.as_mut() else {
            return;
        };
        prober.expire(Instant::now());
        let ids: BTreeSet<NodeId> = peers.iter().map(|(id, _)| *id).collect();
        prober.retain(|k| ids.contains(k));
        if peers.is_empty() {
            return;
        }
        for i in 0..PROBES_PER_ROUND.min(peers.len()) {
            let (id, addr) = peers[(self.probe_cursor + i) % peers.len()];
            prober.send(id, addr);
        }
        self.probe_cursor = (self.probe_cursor + PROBES_PER_ROUND) % peers.len();
    }

    /// This node's view of one peer's link.
    fn link(&self, id: &NodeId, info: Option<&netstack::PeerInfo>, now: Instant) -> Link {
        let w = self.prober.as_ref().and_then(|p| p.window(id));
        let us = |d: Option<Duration>| d.map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        Link {
            peer: *id,
            rtt_min_us: us(w.and_then(|w| w.min())),
            rtt_avg_us: us(w.and_then(|w| w.avg())),
            loss_permille: w.map_or(0, |w| w.loss_permille()),
            rx_bytes: info.map_or(0, |i| i.rx_bytes),
            tx_bytes: info.map_or(0, |i| i.tx_bytes),
            handshake_age_s: info
                .and_then(|i| i.last_handshake)
                .map(|t| now.saturating_duration_since(t).as_secs()),
            path: self.path_of(info.and_then(|i| i.endpoint)).0,
        }
    }

    /// Every member's WireGuard key, by id.
    fn member_keys(&self) -> BTreeMap<NodeId, [u8; 32]> {
        self.ledger
            .members(now_ms())
            .iter()
            .filter_map(|m| m.record.chain.last().map(|c| (m.id, c.wg_key)))
            .collect()
    }

    /// Data-plane facts per peer key.
    fn peer_infos(&self) -> BTreeMap<[u8; 32], netstack::PeerInfo> {
        lock(&self.device)
            .peers()
            .map(|p| (p.public_key.0, p))
            .collect()
    }

    /// Samples own CPU, memory and a rotating sample of links, and
    /// publishes them in the own record.
    async fn publish_metrics(&mut self) {
        let now = Instant::now();
        let peers = self.peer_members();
        let infos = self.peer_infos();
        let keys = self.member_keys();
        // More peers than fit: publish a different slice each time.
        let skip = if peers.len() > MAX_LINKS {
            (self.version as usize).wrapping_mul(MAX_LINKS) % peers.len()
        } else {
            0
        };
        let links: Vec<Link> = peers
            .iter()
            .cycle()
            .skip(skip)
            .take(peers.len().min(MAX_LINKS))
            .map(|(id, _)| self.link(id, keys.get(id).and_then(|k| infos.get(k)), now))
            .collect();
        let (cpu_permille, next) = self.cpu.since();
        self.cpu = next;
        self.metrics = Metrics {
            sampled_ms: now_ms(),
            uptime_s: self.started.elapsed().as_secs(),
            cpu_permille,
            rss_kb: telemetry::rss_kb(),
            version: env!("CARGO_PKG_VERSION").into(),
            links,
        };
        self.own.metrics = Some(self.metrics.clone());
        self.metrics_due = now + federation::member::metrics_interval(peers.len() + 1);
        if let Err(e) = self.publish_own().await {
            tracing::warn!("cannot publish metrics: {e:#}");
        }
    }

    /// `peers`: this node's data-plane view of every active member.
    fn peers(&self) -> Value {
        let now = Instant::now();
        let infos = self.peer_infos();
        let me = self.node.key.id();
        let list: Vec<Value> = self
            .ledger
            .members(now_ms())
            .iter()
            .filter(|m| m.status == Status::Active && m.id != me)
            .map(|m| {
                let info = m.record.chain.last().and_then(|c| infos.get(&c.wg_key));
                let l = self.link(&m.id, info, now);
                let ms = |us: Option<u32>| us.map(|u| f64::from(u) / 1000.0);
                json!({
                    "name": m.record.name,
                    "id": m.id.to_hex(),
                    "address": m.record.address.to_string(),
                    "endpoint": info.and_then(|i| i.endpoint).map(|e| e.to_string()),
                    "path": l.path,
                    "relay": self.path_of(info.and_then(|i| i.endpoint)).1,
                    "rx_bytes": l.rx_bytes,
                    "tx_bytes": l.tx_bytes,
                    "rx_packets": info.map_or(0, |i| i.rx_packets),
                    "tx_packets": info.map_or(0, |i| i.tx_packets),
                    "handshakes": info.map_or(0, |i| i.handshakes),
                    "last_handshake_ms": info.and_then(|i| i.last_handshake).map(|t| now.saturating_duration_since(t).as_millis() as u64),
                    "rtt_ms": ms(l.rtt_avg_us),
                    "rtt_min_ms": ms(l.rtt_min_us),
                    "loss": f64::from(l.loss_permille) / 1000.0,
                })
            })
            .collect();
        Value::Array(list)
    }

    /// `metrics`: the network-wide view.
    fn network_metrics(&self) -> Value {
        let mut own = self.metrics.clone();
        let now = Instant::now();
        let infos = self.peer_infos();
        let keys = self.member_keys();
        // Our own links are fresh, and complete rather than a sample.
        own.links = self
            .peer_members()
            .iter()
            .map(|(id, _)| self.link(id, keys.get(id).and_then(|k| infos.get(k)), now))
            .collect();
        telemetry::network_view(&self.ledger, self.node.key.id(), &own, now_ms())
    }

    /// The data plane's counters (drops by reason).
    fn counters(&self) -> Value {
        let dev = lock(&self.device);
        let c = dev.counters();
        let dropped: serde_json::Map<String, Value> = netstack::DropReason::ALL
            .iter()
            .map(|r| (r.label().to_string(), json!(c.dropped(*r))))
            .collect();
        json!({"dropped": dropped})
    }

    /// `--via`: forwards a query to another member and answers when it does.
    fn start_via(&mut self, r: LocalRequest) {
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
    fn send_via_by_addr(&mut self, id: NodeId, addr: &Multiaddr) {
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
    fn expire_via(&mut self) {
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

    /// Falls back to a relay for peers whose direct path gave no handshake
    /// within [`DIRECT_GRACE`], and tries relayed peers directly again every
    /// [`DIRECT_RETRY`] (a direct packet from them also moves us back, by
    /// WireGuard's roaming).
    fn manage_paths(&mut self) {
        let now = Instant::now();
        let me = self.node.key.id();
        let members: Vec<(NodeId, PublicKey, bool)> = self
            .ledger
            .members(now_ms())
            .iter()
            .filter(|m| m.status == Status::Active && m.id != me)
            .filter_map(|m| {
                Some((
                    m.id,
                    PublicKey(m.record.chain.last()?.wg_key),
                    m.record.no_relay,
                ))
            })
            .collect();
        let infos = self.peer_infos();
        let recent = |k: &PublicKey| {
            infos
                .get(&k.0)
                .and_then(|i| i.last_handshake)
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(150))
        };
        for (id, key, _) in &members {
            let Some(state) = self.paths.get(id).copied() else {
                continue;
            };
            let endpoint = infos.get(&key.0).and_then(|i| i.endpoint);
            let relayed = endpoint.is_some_and(|e| netstack::relay::is_virtual(&e));
            let since_direct = now.saturating_duration_since(state.direct_since);
            // A live path always has a session (keepalives rekey it); no
            // session DIRECT_GRACE after trying the direct endpoint means
            // the direct path does not work.
            let has_session = recent(key);
            if relayed {
                if since_direct > DIRECT_RETRY + DIRECT_GRACE {
                    // Time to try the direct path again.
                    if let Some(direct) = self.chosen.get(id).copied() {
                        self.set_endpoint(key, direct);
                        self.paths.insert(
                            *id,
                            PathState {
                                direct_since: now,
                                relay: state.relay,
                            },
                        );
                    }
                }
                continue;
            }
            if has_session || since_direct < DIRECT_GRACE {
                continue;
            }
            // No direct handshake: pick the relay we reach fastest among
            // members that relay and that we have a live tunnel with.
            // ... among members that relay, that we have a live tunnel
            // with, and that report a live tunnel with the peer.
            let reaches = |r: &NodeId| {
                self.ledger.member(r, now_ms()).is_some_and(|m| {
                    m.record.metrics.as_ref().is_some_and(|x| {
                        x.links.iter().any(|l| {
                            l.peer == *id
                                && l.path == "direct"
                                && l.handshake_age_s.is_some_and(|a| a < 150)
                        })
                    })
                })
            };
            let relay = members
                .iter()
                .filter(|(r, rk, no_relay)| r != id && !no_relay && recent(rk) && reaches(r))
                .filter_map(|(r, rk, _)| {
                    let at = infos
                        .get(&rk.0)?
                        .endpoint
                        .filter(|e| !netstack::relay::is_virtual(e))?;
                    let rtt = self
                        .prober
                        .as_ref()
                        .and_then(|p| p.window(r))
                        .and_then(|w| w.avg())
                        .unwrap_or(Duration::from_secs(1));
                    Some((rtt, *r, at))
                })
                .min();
            let Some((_, relay_id, relay_at)) = relay else {
                continue;
            };
            let Some(virtual_endpoint) = self.relays.path(relay_at, netstack::relay::key_id(key))
            else {
                continue;
            };
            let names = telemetry::names(&self.ledger, now_ms());
            tracing::info!(
                peer = %names.get(id).cloned().unwrap_or_default(),
                relay = %names.get(&relay_id).cloned().unwrap_or_default(),
                "no direct path after {DIRECT_GRACE:?}; relaying"
            );
            self.set_endpoint(key, virtual_endpoint);
            // Keep direct_since: the retry clock runs from the failed attempt.
            self.paths.insert(
                *id,
                PathState {
                    direct_since: state.direct_since,
                    relay: Some(relay_id),
                },
            );
        }
    }

    /// Points the device at `endpoint` for the peer with `key`.
    fn set_endpoint(&self, key: &PublicKey, endpoint: SocketAddr) {
        let mut dev = lock(&self.device);
        if let Some(mut c) = dev.peer_config(key) {
            c.endpoint = Some(endpoint);
            dev.upsert_peer(c);
        }
    }

    /// The path to a peer as shown to users: `direct`, or `relay` and the
    /// relaying member's name.
    fn path_of(&self, endpoint: Option<SocketAddr>) -> (String, Option<String>) {
        let Some(e) = endpoint.filter(netstack::relay::is_virtual) else {
            return ("direct".into(), None);
        };
        let relay_at = self.relays.relay_of(&e);
        let key = relay_at.and_then(|r| lock(&self.device).peer_at(r));
        let name = key.and_then(|k| {
            self.ledger
                .members(now_ms())
                .iter()
                .find(|m| m.record.chain.last().is_some_and(|c| c.wg_key == k.0))
                .map(|m| m.record.name.clone())
        });
        ("relay".into(), name)
    }

    /// Sets the overlay MTU to what the smallest host link in the network
    /// allows (see `member::overlay_mtu`).
    async fn apply_mtu(&mut self) {
        let default = self.ledger.authority().map_or(self.own.mtu, |a| a.mtu);
        let now = now_ms();
        let members = self.ledger.members(now);
        let hosts = members
            .iter()
            .filter(|m| m.status == Status::Active)
            .filter_map(|m| Some((m.record.name.as_str(), m.record.host_mtu?)));
        let (mtu, reason) = federation::member::overlay_mtu(default, hosts);
        self.mtu_reason = reason;
        if mtu != self.own.mtu {
            match self.netlink.set_up(self.tun_index, u32::from(mtu)).await {
                Ok(()) => {
                    tracing::info!(mtu, reason = %self.mtu_reason, "overlay MTU set");
                    self.own.mtu = mtu;
                    self.refresh_mtu = true;
                }
                Err(e) => tracing::error!("cannot set the overlay MTU to {mtu}: {e}"),
            }
        }
    }

    /// Asks a few connected members how they see our data-plane endpoint.
    fn ask_observers(&mut self) {
        let mut connected = self.shell.connected();
        for i in (1..connected.len()).rev() {
            connected.swap(i, OsRng.next_u32() as usize % (i + 1));
        }
        for id in connected.into_iter().take(OBSERVERS) {
            self.send(&id, vec![], Request::Observe);
        }
    }

    /// The endpoint `who`'s authenticated packets last came from.
    fn observed_endpoint_of(&self, who: &NodeId) -> Option<SocketAddr> {
        let key = self
            .ledger
            .member(who, now_ms())?
            .record
            .chain
            .last()?
            .wg_key;
        let info = self.peer_infos().remove(&key)?;
        let fresh = info
            .last_handshake
            .is_some_and(|t| t.elapsed() < Duration::from_secs(180));
        (info.rx_packets > 0 && fresh)
            .then_some(info.endpoint)
            .flatten()
            .filter(|e| !netstack::relay::is_virtual(e))
    }

    /// Dials members we are not connected to, in random order, until the
    /// control plane has [`MAX_CONTROL_PEERS`] connections: enough for
    /// gossip and repair without a full mesh of QUIC connections.
    fn redial(&mut self) {
        let me = self.node.key.id();
        let room = MAX_CONTROL_PEERS.saturating_sub(self.shell.connected().len());
        let mut targets: Vec<(NodeId, Vec<Multiaddr>)> = self
            .ledger
            .members(now_ms())
            .into_iter()
            .filter(|m| m.status == Status::Active && m.id != me && !self.shell.is_connected(&m.id))
            .map(|m| (m.id, multiaddrs(&m.record.control)))
            .collect();
        // Fisher-Yates with the OS generator: every member gets its turn.
        for i in (1..targets.len()).rev() {
            targets.swap(i, OsRng.next_u32() as usize % (i + 1));
        }
        for (id, addrs) in targets.into_iter().take(room.min(REDIAL_BATCH)) {
            self.shell.dial(&id, addrs);
        }
    }

    /// Counts a member as heard from when its tunnel received something
    /// since the last look (keepalives every 25 s keep quiet tunnels alive),
    /// so liveness does not need a control connection to every member.
    fn observe_tunnels(&mut self) {
        let by_key: BTreeMap<[u8; 32], NodeId> = self
            .member_keys()
            .into_iter()
            .map(|(id, k)| (k, id))
            .collect();
        let rx: Vec<(NodeId, u64)> = lock(&self.device)
            .peers()
            .filter_map(|p| by_key.get(&p.public_key.0).map(|id| (*id, p.rx_bytes)))
            .collect();
        for (id, bytes) in rx {
            if self
                .tunnel_rx
                .insert(id, bytes)
                .is_some_and(|before| before < bytes)
            {
                self.seen(id);
            }
        }
    }

    /// Publishes a new version of the own record.
    async fn publish_own(&mut self) -> Result<()> {
        self.version += 1;
        let bytes = self.node.save_own(&self.own, self.version)?;
        self.ledger.ingest(&bytes, now_ms()).ok();
        self.gossip.out_messages += 1;
        self.gossip.out_bytes += bytes.len() as u64;
        self.shell.publish(bytes);
        Ok(())
    }

    /// Re-scans host addresses; republishes the record if endpoints or host
    /// networks changed; re-claims the address if another member won it.
    async fn refresh_own(&mut self) -> Result<()> {
        let cidr = self.ledger.authority().map(|a| a.cidr);
        let inv = scan(Some(self.tun_index), cidr).await?;
        let s = &self.node.settings;
        let pick = |configured: SocketAddr| -> Vec<IpAddr> {
            if configured.ip().is_unspecified() {
                inv.addrs.clone()
            } else {
                vec![configured.ip()]
            }
        };
        let endpoints: Vec<SocketAddr> = pick(s.listen)
            .into_iter()
            .map(|ip| SocketAddr::new(ip, s.listen.port()))
            .take(federation::member::MAX_ENDPOINTS)
            .collect();
        let control: Vec<String> = pick(s.control_listen)
            .into_iter()
            .map(|ip| quic_multiaddr(SocketAddr::new(ip, s.control_listen.port())))
            .take(federation::member::MAX_CONTROL)
            .collect();
        if inv.mtu != self.own.host_mtu {
            self.own.host_mtu = inv.mtu;
            self.refresh_mtu = true;
        }
        let networks: Vec<_> = inv
            .networks
            .into_iter()
            .take(federation::member::MAX_HOST_NETWORKS)
            .collect();
        let mut changed = std::mem::take(&mut self.refresh_mtu);
        if endpoints != self.own.endpoints
            || control != self.own.control
            || networks != self.own.host_networks
        {
            self.own.endpoints = endpoints;
            self.own.control = control;
            self.own.host_networks = networks;
            changed = true;
        }
        self.observed
            .retain(|_, (_, last)| last.elapsed() < OBSERVED_FOR);
        // Seen at one of our own addresses (same LAN, no NAT) tells
        // nothing new: only other addresses are reflexive. Newest first, so
        // after a NAT changes its address peers try the new one first.
        let mut reflexive: Vec<(SocketAddr, Instant)> = self
            .observed
            .iter()
            .filter(|(e, _)| !inv.addrs.contains(&e.ip()))
            .map(|(e, (first, _))| (*e, *first))
            .collect();
        reflexive.sort_by_key(|(e, first)| (std::cmp::Reverse(*first), *e));
        let reflexive: Vec<SocketAddr> = reflexive.into_iter().map(|(e, _)| e).take(4).collect();
        if reflexive != self.own.reflexive {
            tracing::info!(?reflexive, "members see this node at new endpoints");
            self.own.reflexive = reflexive;
            changed = true;
        }
        if self.reclaim_if_lost() {
            changed = true;
        }
        if changed || self.ledger.state().get(&self.node.key.id()).is_none() {
            self.publish_own().await?;
            // Endpoints and addresses are urgent: push to every connected
            // member as well, in case gossip's mesh is still re-forming.
            if let Some(bytes) = self
                .ledger
                .state()
                .get(&self.node.key.id())
                .map(|r| r.encode())
            {
                for id in self.shell.connected() {
                    self.send(&id, vec![], Request::Push(vec![bytes.clone()]));
                }
            }
            self.apply().await;
        }
        Ok(())
    }

    /// If another member won our address, claims a free one.
    fn reclaim_if_lost(&mut self) -> bool {
        let now = now_ms();
        let me = self.node.key.id();
        let owners = self.ledger.address_owners(now);
        match owners.get(&self.own.address) {
            Some(owner) if *owner != me => {}
            _ => return false,
        }
        let Some(block) = self.ledger.authority().map(|a| a.block) else {
            return false;
        };
        let taken: BTreeSet<_> = owners.keys().copied().collect();
        let Some(fresh) = address::pick(&block, &me, &taken) else {
            tracing::error!("the network's address block {block} is full: no address to claim");
            return false;
        };
        tracing::warn!(
            lost = %self.own.address, new = %fresh,
            "another member claimed our overlay address first; claiming a new one"
        );
        self.own.address = fresh;
        self.own.claimed_ms = now;
        true
    }

    /// Makes the data plane match the ledger: peers for active members,
    /// none for the rest; the interface carries our current address.
    async fn apply(&mut self) {
        if self.reclaim_if_lost() {
            if let Err(e) = Box::pin(self.publish_own()).await {
                tracing::error!("cannot publish the re-claimed address: {e:#}");
            }
        }
        let now = now_ms();
        let me = self.node.key.id();
        let owners = self.ledger.address_owners(now);
        let prefix = self.ledger.authority().map_or(32, |a| a.cidr.prefix());
        if let Err(e) = self
            .netlink
            .replace_ipv4(self.tun_index, IpAddr::V4(self.own.address), prefix)
            .await
        {
            tracing::error!("cannot set the overlay address on {}: {e}", self.iface);
        }
        self.apply_mtu().await;
        self.relays.set_members(
            self.ledger
                .members(now)
                .iter()
                .filter(|m| m.status == Status::Active)
                .filter_map(|m| m.record.chain.last().map(|c| PublicKey(c.wg_key))),
        );
        let mut wanted = BTreeSet::new();
        let mut dev = lock(&self.device);
        for m in self.ledger.members(now) {
            if m.id == me {
                continue;
            }
            let Some(leaf) = m.record.chain.last() else {
                continue;
            };
            let key = PublicKey(leaf.wg_key);
            if m.status != Status::Active {
                self.chosen.remove(&m.id);
                if dev.remove_peer(&key) {
                    tracing::info!(name = %m.record.name, status = ?m.status, "removed from the peer table");
                }
                continue;
            }
            wanted.insert(m.id);
            let owns = owners.get(&m.record.address) == Some(&m.id);
            let allowed_ips = if owns {
                IpNet::new(IpAddr::V4(m.record.address), 32)
                    .into_iter()
                    .collect()
            } else {
                vec![]
            };
            let existing = dev.peer_config(&key);
            // A newly chosen endpoint replaces the device's; otherwise the
            // device keeps what authenticated packets taught it (roaming).
            let choice = federation::paths::choose_endpoint(&self.own, m.record);
            let endpoint = match choice {
                Some(c) if self.chosen.get(&m.id) != Some(&c) => {
                    self.chosen.insert(m.id, c);
                    self.paths.insert(
                        m.id,
                        PathState {
                            direct_since: Instant::now(),
                            relay: None,
                        },
                    );
                    Some(c)
                }
                _ => existing.as_ref().and_then(|c| c.endpoint).or(choice),
            };
            let unchanged = existing
                .as_ref()
                .is_some_and(|c| c.allowed_ips == allowed_ips && c.endpoint == endpoint);
            if !unchanged {
                dev.upsert_peer(PeerConfig {
                    public_key: key,
                    preshared_key: None,
                    endpoint,
                    allowed_ips,
                    persistent_keepalive: Some(KEEPALIVE),
                });
            }
        }
        drop(dev);
        for gone in self.peers_synced.difference(&wanted) {
            self.shell.disconnect(gone);
        }
        self.peers_synced = wanted;
    }

    fn liveness(&self, id: &NodeId, status: Status) -> (&'static str, Option<u64>) {
        let since = self.last_seen.get(id).map(|t| t.elapsed());
        let ms = since.map(|d| d.as_millis() as u64);
        let state = match status {
            Status::Left => "left",
            Status::Revoked | Status::Expired => "revoked",
            Status::Active if *id == self.node.key.id() => return ("alive", Some(0)),
            Status::Active if self.shell.is_connected(id) => "alive",
            Status::Active => match since {
                Some(d) if d < ALIVE_FOR => "alive",
                Some(d) if d < SUSPECT_FOR => "suspect",
                None if self.started.elapsed() < ALIVE_FOR => "suspect",
                _ => "down",
            },
        };
        (state, ms)
    }

    async fn on_local(&mut self, req: &Value) -> Value {
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

    fn status(&self) -> Value {
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
            "interface": self.iface,
            "listen": self.node.settings.listen.to_string(),
            "control_listen": self.node.settings.control_listen.to_string(),
            "endpoints": self.own.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
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
            "gossip": {
                "in_messages": self.gossip.in_messages,
                "in_bytes": self.gossip.in_bytes,
                "out_messages": self.gossip.out_messages,
                "out_bytes": self.gossip.out_bytes,
            },
        })
    }

    fn members(&self) -> Value {
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

    fn invite(&mut self, req: &Value) -> Value {
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
    fn find(&self, who: &str) -> Result<NodeId, String> {
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

    async fn revoke(&mut self, who: &str) -> Value {
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

    async fn leave(&mut self) -> Value {
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

/// Replies to our probes, or never if probing is off.
async fn replies(prober: &mut Option<Prober<NodeId>>) -> Vec<crate::probe::Reply<NodeId>> {
    match prober {
        Some(p) => p.recv().await,
        None => std::future::pending().await,
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

/// Longest local request accepted.
const MAX_LOCAL_REQUEST: u64 = 4096;
