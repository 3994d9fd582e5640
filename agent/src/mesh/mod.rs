//! The control loop of a network member: a small coordinator of owned
//! sub-state machines, each with its own state and fake-time tests:
//!
//! - [`Replica`] (federation): the state, anti-entropy with members, the
//!   trust boundary, traffic counters;
//! - [`paths::Paths`]: the route decisions (`federation::routes`), the
//!   endpoint echo (`netstack::asker`) and the overlay probes;
//! - [`Liveness`] (federation): when members were last heard from;
//! - [`own::Own`]: this node's record and when to publish it;
//! - [`via::Via`]: queries forwarded to other members, and joins passed
//!   on to their inviter ([`joins`]);
//! - [`observed::Observed`]: where members see our control plane
//!   (with `--advertise`, how others reach this node: [`reach`]).
//!
//! The loop wires them to the libp2p shell, the data plane
//! ([`crate::dataplane`]), netlink and the local API: it feeds what
//! arrives to the machine that owns it ([`inbound`]), runs their timers
//! when they ask ([`Mesh::poll_timeout`]), carries out what they decide
//! (here: storing and publishing records; [`apply`]: the host and the data
//! plane), and answers the local API ([`local`]). Policy lives in the
//! machines, in `federation` and in `crate::member` (redial); a decision
//! found in this folder belongs there. (About 530 lines: the loop itself,
//! its timers and the flush of what the machines produced.)

mod answers;
mod apply;
mod federate;
mod inbound;
pub mod invites;
mod joins;
mod local;
mod names;
mod observed;
mod own;
mod paths;
mod peers;
mod reach;
mod retag;
mod via;

use crate::api::{self, docs, LocalRequest, Request};
use crate::dataplane::Shared;
use crate::inventory::scan;
use crate::member::redial::{self, Redial};
use crate::statedir::{now_ms, StateDir};
use answers::View;
use anyhow::Result;
use drivers::netlink::Netlink;
use federation::liveness::Liveness;
use federation::net::{Event, Reply, RequestId, Shell};
use federation::protocol::{Request as Ask, Response};
use federation::replica::{self, Inbound, Replica, Transmit};
use federation::{NodeId, Status};
use futures::StreamExt;
use netstack::asker::Outcome;
use netstack::node::Event as NodeEvent;
use netstack::PublicKey;
use observed::Observed;
use own::{Outside, Own};
use paths::Paths;
use rand_core::OsRng;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use via::Via;

/// After a host change, re-read the host once it has been quiet this long.
const HOST_QUIET: Duration = Duration::from_millis(150);
/// Re-scan host addresses this often.
const SCAN_EVERY: Duration = Duration::from_secs(3);
/// Path decisions, liveness from tunnel traffic, and overlay probes this
/// often.
const PATHS_EVERY: Duration = Duration::from_secs(2);
/// The first summary of our measurements after start.
const METRICS_FIRST: Duration = Duration::from_secs(8);
/// How long a departing node keeps serving so its farewell spreads.
const FAREWELL: Duration = Duration::from_millis(1500);

/// When the loop's own periodic work is due.
struct Due {
    paths: Instant,
    /// Close probes and route decisions.
    watch: Instant,
    scan: Instant,
    metrics: Instant,
    /// Re-read the host after a burst of netlink events.
    rescan: Option<Instant>,
}

/// Everything the control loop owns.
pub struct Mesh {
    state: StateDir,
    replica: Replica,
    shell: Shell,
    data: Shared,
    node_events: mpsc::Receiver<NodeEvent>,
    netlink: Netlink,
    tun_index: u32,
    iface: String,
    own: Own,
    mtu_reason: String,
    paths: Paths,
    liveness: Liveness,
    via: Via<RequestId, oneshot::Sender<String>>,
    joins: Via<RequestId, Reply>,
    observed: Observed,
    /// The public address `--advertise auto` found.
    auto: Option<IpAddr>,
    /// The metadata lookup under way for `auto`.
    auto_lookup: Option<tokio::task::JoinHandle<Result<crate::metadata::Found, String>>>,
    /// Members that are peers of the data plane.
    peers: BTreeSet<NodeId>,
    /// Federated networks' ranges routed into the overlay interface.
    routed: BTreeSet<federation::Cidr>,
    /// The DNS listener for members' names.
    names: names::Names,
    /// Members in good standing, as last applied (time alone changes it:
    /// certificates expire).
    members: BTreeSet<NodeId>,
    /// This node's standing as last seen (to say when it changes).
    standing: Option<Status>,
    due: Due,
    /// When to dial members we are not connected to.
    redial: Redial,
    leaving: bool,
}

/// What the loop is given to run.
pub struct Parts {
    /// The state directory.
    pub state: StateDir,
    /// The control plane.
    pub shell: Shell,
    /// The data plane and its events.
    pub data: (Shared, mpsc::Receiver<NodeEvent>),
    /// Netlink, the TUN interface's index and name.
    pub netlink: Netlink,
    /// The TUN interface's index.
    pub tun_index: u32,
    /// The TUN interface's name.
    pub iface: String,
}

impl Mesh {
    /// Builds the loop around an already running data plane.
    pub fn new(parts: Parts) -> Result<Mesh> {
        let Parts {
            state,
            shell,
            data: (data, node_events),
            netlink,
            tun_index,
            iface,
        } = parts;
        let replica = Replica::new(state.ledger()?, state.key.id());
        let names = names::Names::new(&iface);
        let (mut record, version) = state.own()?;
        record.no_relay = !data.with(|n| n.serves_relay());
        let now = Instant::now();
        Ok(Mesh {
            replica,
            shell,
            data,
            node_events,
            netlink,
            tun_index,
            iface,
            own: Own::new(record, version),
            mtu_reason: String::new(),
            paths: Paths::new(),
            liveness: Liveness::new(now),
            via: Via::new(),
            joins: Via::new(),
            observed: Observed::new(),
            auto: None,
            auto_lookup: None,
            peers: BTreeSet::new(),
            routed: BTreeSet::new(),
            names,
            members: BTreeSet::new(),
            standing: None,
            due: Due {
                paths: now,
                watch: now,
                scan: now + SCAN_EVERY,
                metrics: now + METRICS_FIRST,
                rescan: None,
            },
            redial: Redial::new(now),
            leaving: false,
            state,
        })
    }

    fn me(&self) -> NodeId {
        self.state.key.id()
    }

    /// Runs until `local` closes, a `leave` completes, or `stop` resolves.
    pub async fn run(
        mut self,
        mut local: mpsc::Receiver<LocalRequest>,
        stop: impl std::future::Future<Output = Result<()>>,
    ) -> Result<()> {
        self.ask_auto();
        self.refresh_host().await;
        let me = self.me();
        self.own
            .reclaim_if_lost(self.replica.ledger(), &me, now_ms());
        self.on_membership();
        self.apply().await;
        self.flush().await;
        self.redial_now();
        // Host changes re-read the host after a short quiet spell (one
        // change comes as a burst of messages); the scan stays as the
        // periodic check.
        let mut host_changes = self
            .netlink
            .host_changes()
            .map_err(|e| tracing::warn!("host changes are only polled: {e}"))
            .ok();
        tokio::pin!(stop);
        loop {
            let wake = self.poll_timeout();
            tokio::select! {
                event = self.shell.next() => self.on_shell(event).await,
                Some(event) = self.node_events.recv() => self.on_node(event),
                _ = tokio::time::sleep_until(wake.into()) => self.handle_timeout().await,
                change = next_change(&mut host_changes) => match change {
                    Some(()) => {
                        self.due.rescan.get_or_insert(Instant::now() + HOST_QUIET);
                    }
                    None => {
                        tracing::warn!("the netlink watch ended; host changes are only polled");
                        host_changes = None;
                    }
                },
                found = reach::auto_answer(&mut self.auto_lookup) => self.on_auto(found).await,
                replies = replies(&mut self.paths.prober) => {
                    for r in replies {
                        self.heard(r.key);
                    }
                }
                request = local.recv() => match request {
                    Some(LocalRequest { request: Request::Via { target, request }, reply }) => {
                        self.start_via(&target, *request, reply);
                    }
                    Some(LocalRequest { request: Request::Tag { node, tags }, reply }) => {
                        self.start_tag(&node, tags, reply);
                    }
                    Some(LocalRequest { request, reply }) => {
                        let answer = self.answer(request).await;
                        let _ = reply.send(answer);
                    }
                    None => return Ok(()),
                },
                r = &mut stop => return r,
            }
            self.flush().await;
            if self.leaving {
                return self.farewell().await;
            }
        }
    }

    /// Keeps serving a moment after `leave`, so the farewell spreads.
    async fn farewell(mut self) -> Result<()> {
        let deadline = tokio::time::sleep(FAREWELL);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                e = self.shell.next() => self.on_shell(e).await,
                _ = &mut deadline => return Ok(()),
            }
            self.flush().await;
        }
    }

    /// When [`Mesh::handle_timeout`] must run next: the earliest deadline
    /// of every machine and of the loop's own periodic work.
    fn poll_timeout(&self) -> Instant {
        let d = &self.due;
        [
            Some(d.paths),
            Some(d.watch),
            Some(self.redial.poll_timeout()),
            Some(d.scan),
            Some(d.metrics),
            d.rescan,
            self.replica.poll_timeout(),
            self.paths.asker.poll_timeout(),
            self.via.poll_timeout(),
            self.joins.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| Instant::now() + PATHS_EVERY)
    }

    /// Runs whatever is due.
    async fn handle_timeout(&mut self) {
        let (now, now_ms) = (Instant::now(), now_ms());
        self.replica.handle_timeout(now, now_ms, &mut OsRng);
        self.paths.ask_echo(&self.data, now);
        self.on_outcomes();
        for (reply, why) in self.via.expire(now) {
            let _ = reply.send(api::error(&why));
        }
        self.expire_joins(now);
        if now >= self.due.watch {
            self.due.watch = now + paths::WATCH_EVERY;
            let tick = self.tick(now, now_ms);
            self.paths
                .watch(&self.data, &self.replica.roster(now_ms), tick);
        }
        if now >= self.due.paths {
            self.due.paths = now + PATHS_EVERY;
            // Standing can change with time alone (a certificate expires).
            if self.active_members(now_ms) != self.members
                || self.replica.standing(now_ms) != self.standing
            {
                self.on_membership();
                self.apply().await;
            }
            let tick = self.tick(now, now_ms);
            let heard = self
                .paths
                .round(&self.data, &self.replica.roster(now_ms), tick);
            heard.into_iter().for_each(|id| self.heard(id));
        }
        if now >= self.due.metrics {
            // What a burst freed goes back before the RSS is measured.
            drivers::trim_heap();
            let links = self.with_view(|v| v.links());
            self.due.metrics = now + self.own.measured(links);
        }
        if now >= self.redial.poll_timeout() {
            let members = self.replica.ledger().members(now_ms);
            let connected: BTreeSet<NodeId> = self.replica.connected().copied().collect();
            let dials =
                self.redial
                    .handle_timeout(now, &self.me(), &members, &connected, &mut OsRng);
            for (id, addrs) in dials {
                self.shell.dial(&id, &addrs);
            }
        }
        if now >= self.due.scan || self.due.rescan.is_some_and(|t| now >= t) {
            self.due.scan = now + SCAN_EVERY;
            self.due.rescan = None;
            self.refresh_host().await;
        }
    }

    /// Carries out what the machines decided: stores and reacts to
    /// accepted records, publishes the own record if it changed, sends.
    async fn flush(&mut self) {
        let me = self.me();
        loop {
            let (mut stored, mut membership, mut peers) = (Vec::new(), false, false);
            while let Some(event) = self.replica.poll_event() {
                let (delta, bytes) = match event {
                    replica::Event::Accepted { delta, bytes } => (delta, bytes),
                    // A federated network's records changed.
                    replica::Event::Partners => {
                        peers = true;
                        continue;
                    }
                    replica::Event::PartnerEnded(ending) => {
                        if let Err(why) = self.own.carry_ending(*ending) {
                            tracing::warn!("cannot carry a federated network's ending: {why}");
                        }
                        continue;
                    }
                };
                tracing::debug!(writer = %delta.writer.short(), changes = ?delta.changes, "record accepted");
                membership |= delta.changes.membership;
                peers |= delta.changes.peers();
                if delta.writer != me {
                    self.heard(delta.writer);
                }
                stored.push((delta.writer, bytes));
            }
            if !stored.is_empty() {
                if let Err(e) = self.state.save_records(&stored) {
                    tracing::error!("cannot store received records: {e:#}");
                }
            }
            if membership || peers {
                // Another member may have won our address.
                self.own
                    .reclaim_if_lost(self.replica.ledger(), &me, now_ms());
            }
            // A revoked (or expired) node has nothing to tell the network.
            let silenced = matches!(self.standing, Some(Status::Revoked | Status::Expired));
            if let Some((version, urgent)) = self.own.take_publication().filter(|_| !silenced) {
                if let Some(delta) = self.publish_own(version, urgent) {
                    membership |= delta.changes.membership;
                    peers |= delta.changes.peers();
                }
            }
            if membership {
                self.on_membership();
            }
            if membership || peers {
                self.apply().await;
            }
            if !self.own.dirty {
                break;
            }
        }
        while let Some(t) = self.replica.poll_transmit() {
            match t {
                Transmit::Request { to, request } => {
                    let addrs = self.control_addrs(&to);
                    self.shell.request(&to, &addrs, request);
                }
                Transmit::Publish(bytes) => self.shell.publish(bytes),
            }
        }
    }

    /// Signs and stores the own record as `version` and hands it to the
    /// replica (which gossips it, and pushes it if `urgent`); what it
    /// changed.
    fn publish_own(&mut self, version: u64, urgent: bool) -> Option<federation::ledger::Delta> {
        let bytes = match self.state.save_own(&self.own.record, version) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("cannot store this node's record: {e:#}");
                return None;
            }
        };
        match self.replica.publish(bytes, urgent, now_ms()) {
            Ok(delta) => delta,
            Err(e) => {
                tracing::error!("this node's own record was refused by its own ledger: {e}");
                None
            }
        }
    }

    /// What the path machines look at now.
    fn tick(&self, now: Instant, now_ms: u64) -> paths::Tick {
        paths::Tick {
            me: self.me(),
            active: self.is_active(),
            now,
            now_ms,
        }
    }

    fn is_active(&self) -> bool {
        self.standing == Some(Status::Active)
    }

    fn heard(&mut self, id: NodeId) {
        self.liveness
            .heard(id, Instant::now(), self.replica.ledger(), now_ms());
    }

    fn control_addrs(&self, id: &NodeId) -> Vec<SocketAddr> {
        self.replica.control_addrs(id, now_ms())
    }

    fn id_of(&self, key: &PublicKey) -> Option<NodeId> {
        let now_ms = now_ms();
        self.replica
            .roster(now_ms)
            .members(now_ms)
            .iter()
            .find(|m| peers::wg_key(m.record).as_ref() == Some(key))
            .map(|m| m.id)
    }

    /// Dials members we are not connected to now ([`redial::targets`]).
    fn redial_now(&mut self) {
        let members = self.replica.ledger().members(now_ms());
        let connected: BTreeSet<NodeId> = self.replica.connected().copied().collect();
        for (id, addrs) in redial::targets(&self.me(), &members, &connected, &mut OsRng) {
            self.shell.dial(&id, &addrs);
        }
    }

    /// A consistent view for the answers, with the data plane locked.
    fn with_view<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        let connected: BTreeSet<NodeId> = self.replica.connected().copied().collect();
        let (now, now_ms) = (Instant::now(), now_ms());
        self.data.with(|node| {
            f(&View {
                ledger: self.replica.ledger(),
                roster: self.replica.roster(now_ms),
                partners: self.replica.partners(),
                me: self.me(),
                own: &self.own.record,
                version: self.own.version,
                settings: &self.state.settings,
                iface: &self.iface,
                authority: self.state.authority.is_some(),
                mtu_reason: &self.mtu_reason,
                traffic: self.replica.traffic(),
                refused: self
                    .replica
                    .refused()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                connected: &connected,
                liveness: &self.liveness,
                prober: self.paths.prober.as_ref(),
                node,
                metrics: self.own.record.metrics.as_ref(),
                now,
                now_ms,
            })
        })
    }
}

/// The next host change (`None`: the watch ended), or never without one.
async fn next_change<S: futures::Stream<Item = ()> + Unpin>(watch: &mut Option<S>) -> Option<()> {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// Replies to our probes, or never if probing is off.
async fn replies(
    prober: &mut Option<crate::probe::Prober<NodeId>>,
) -> Vec<crate::probe::Reply<NodeId>> {
    match prober {
        Some(p) => p.recv().await,
        None => std::future::pending().await,
    }
}
