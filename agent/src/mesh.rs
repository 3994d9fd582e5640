//! The control loop of a network member: feeds gossip and anti-entropy into
//! the ledger, keeps the node's own record (endpoints, address claim) up to
//! date, turns the ledger's members into the data plane's peer table,
//! admits newcomers, and answers the local CLI.

use crate::echo::{Answer, Echo};
use crate::inventory::{quic_multiaddr, scan};
use crate::members::MemberKeys;
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
use netstack::pmtu::PathProbe;
use netstack::{Device, IpNet, PeerConfig, PublicKey};
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

mod local;
mod measure;
mod paths;
mod via;

pub use local::{serve_http, serve_local};

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
/// After a host change, re-read the host once it has been quiet this long.
const HOST_QUIET: Duration = Duration::from_millis(150);
/// Re-scan host addresses this often.
const SCAN_EVERY: Duration = Duration::from_secs(3);
/// A direct path with no handshake for this long falls back to a relay.
const DIRECT_GRACE: Duration = Duration::from_secs(4);
/// A relayed peer is tried directly again this often, for DIRECT_GRACE.
const DIRECT_RETRY: Duration = Duration::from_secs(60);
/// A relayed peer whose last this many overlay probes were lost is
/// moved to another relay (its relay went away).
const RELAY_SILENT: usize = 3;
/// Pushes of at most this many records are re-gossiped by the receiver.
const URGENT_PUSH: usize = 4;
/// Ask this many peers every [`ECHO_EVERY`] where they see our datagrams
/// come from (round robin over peers with a direct endpoint).
const ECHO_PER_ROUND: usize = 3;
const ECHO_EVERY: Duration = Duration::from_secs(1);
/// Questions whose answers are still awaited (older ones are forgotten).
const MAX_ASKED: usize = 64;
/// IPv4 and UDP headers: what a path MTU probe travels in.
const IPV4_UDP: u16 = 28;
/// A question unanswered this long is counted as lost.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// An observed (reflexive) endpoint is kept this long after it was reported.
const OBSERVED_FOR: Duration = Duration::from_secs(20);
/// Most reflexive endpoints remembered at once.
const MAX_OBSERVED: usize = 64;
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
    echoes: Echoes,
    members: Arc<MemberKeys>,
    /// Echo questions awaiting an answer.
    asked: VecDeque<Asked>,
    /// Path MTU search per peer (padded questions).
    path_probes: BTreeMap<PublicKey, PathProbe>,
    /// Where each peer last saw us (a change means our endpoint moved).
    echoed: BTreeMap<PublicKey, SocketAddr>,
    echo_cursor: usize,
    chosen: BTreeMap<NodeId, SocketAddr>,
    refresh_mtu: bool,
    mtu_reason: String,
    relays: Arc<Relays>,
    paths: BTreeMap<NodeId, PathState>,
}

/// What the control loop shares with the data plane to reach peers: the
/// relay tables, the endpoint echo (`crate::echo`) and its answers, and
/// the data-plane socket questions leave from.
pub struct Reach {
    /// Members' keys, read by the relays and the echo.
    pub members: Arc<MemberKeys>,
    /// Relay tables and counters.
    pub relays: Arc<Relays>,
    /// Pair keys and counters shared with the rx thread.
    pub echo: Arc<Echo>,
    /// Authenticated answers from the rx thread.
    pub answers: mpsc::Receiver<Answer>,
    /// The data-plane socket.
    pub udp: Arc<drivers::udp::Udp>,
}

/// The endpoint echo's part of [`Reach`].
struct Echoes {
    echo: Arc<Echo>,
    answers: mpsc::Receiver<Answer>,
    udp: Arc<drivers::udp::Udp>,
}

/// An echo question awaiting its answer.
#[derive(Debug, Clone, Copy)]
struct Asked {
    nonce: u64,
    peer: PublicKey,
    /// Padded length (a path MTU probe if above `echo::REQUEST_LEN`).
    len: u16,
    at: Instant,
}

/// How this node reaches one peer.
#[derive(Debug, Clone, Copy)]
struct PathState {
    /// When a direct endpoint was last put in place (and tried since).
    direct_since: Instant,
    /// The relay in use, if any.
    relay: Option<NodeId>,
    /// When that relay was put in place.
    relay_since: Instant,
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
        reach: Reach,
        netlink: Netlink,
        tun_index: u32,
        iface: String,
    ) -> Result<Mesh> {
        let Reach {
            members,
            relays,
            echo,
            answers,
            udp,
        } = reach;
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
            echoes: Echoes { echo, answers, udp },
            members,
            asked: VecDeque::new(),
            path_probes: BTreeMap::new(),
            echoed: BTreeMap::new(),
            echo_cursor: 0,
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
        let mut echo_tick = tokio::time::interval(ECHO_EVERY);
        // Host changes re-read the host after a short quiet spell (one
        // change comes as a burst of messages); the scan tick stays as the
        // periodic check.
        let mut host_changes = self
            .netlink
            .host_changes()
            .map_err(|e| tracing::warn!("host changes are only polled: {e}"))
            .ok();
        let mut rescan_at: Option<tokio::time::Instant> = None;
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
                _ = echo_tick.tick() => self.ask_echo(),
                change = next_change(&mut host_changes) => match change {
                    Some(()) => {
                        rescan_at.get_or_insert(tokio::time::Instant::now() + HOST_QUIET);
                    }
                    None => {
                        tracing::warn!("the netlink watch ended; host changes are only polled");
                        host_changes = None;
                    }
                },
                _ = sleep_until(rescan_at) => {
                    rescan_at = None;
                    if let Err(e) = self.refresh_own().await {
                        tracing::warn!("cannot refresh this node's record: {e:#}");
                    }
                }
                Some(answer) = self.echoes.answers.recv() => self.on_echo(answer).await,
                replies = replies(&mut self.prober) => {
                    for r in replies {
                        self.seen(r.key);
                    }
                }
                _ = redial_tick.tick() => self.redial(),
                _ = scan_tick.tick() => {
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

    /// Sets the overlay MTU to what the smallest host link in the network
    /// allows (see `member::overlay_mtu`).
    async fn apply_mtu(&mut self) {
        let default = self.ledger.authority().map_or(self.own.mtu, |a| a.mtu);
        let now = now_ms();
        let members = self.ledger.members(now);
        let active: Vec<&MemberRecord> = members
            .iter()
            .filter(|m| m.status == Status::Active)
            .map(|m| m.record)
            .collect();
        let (mtu, reason) = federation::member::overlay_mtu(default, &active);
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
        let member_keys: Vec<PublicKey> = self
            .ledger
            .members(now)
            .iter()
            .filter(|m| m.status == Status::Active)
            .filter_map(|m| m.record.chain.last().map(|c| PublicKey(c.wg_key)))
            .collect();
        self.echoed.retain(|k, _| member_keys.contains(k));
        self.path_probes.retain(|k, _| member_keys.contains(k));
        self.members.set(member_keys.into_iter());
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
                            relay_since: Instant::now(),
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
}

/// Replies to our probes, or never if probing is off.
/// The next host change (`None`: the watch ended), or never without one.
async fn next_change<S: libp2p::futures::Stream<Item = ()> + Unpin>(
    watch: &mut Option<S>,
) -> Option<()> {
    use libp2p::futures::StreamExt;
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever if there is no deadline.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn replies(prober: &mut Option<Prober<NodeId>>) -> Vec<crate::probe::Reply<NodeId>> {
    match prober {
        Some(p) => p.recv().await,
        None => std::future::pending().await,
    }
}
