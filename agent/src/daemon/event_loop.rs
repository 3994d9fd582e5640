//! The daemon's event loop: it owns every handle of a running member (the
//! libp2p shell, the data plane and its events, netlink, the DNS
//! listener, the prober, the local API's requests), selects over them,
//! feeds what they report to the sans-IO [`Member`] (and the path
//! machines, [`paths::Paths`], which drive the data plane), runs their
//! timers, and carries out the member's commands ([`EventLoop::carry_out`]).
//! Decisions live in `crate::member`; a decision found here belongs
//! there.

use super::answers::View;
use super::{auto, names, paths};
use crate::api::{self, LocalRequest};
use crate::dataplane::Shared;
use crate::inventory::{scan, Inventory};
use crate::member::own::HostSample;
use crate::member::{Asker, Command, Identity, LocalId, Member, Tag};
use crate::statedir::{now_ms, StateDir};
use crate::telemetry::{rss_kb, CpuSample};
use anyhow::Result;
use drivers::netlink::Netlink;
use federation::net::{Reply, RequestId, Shell};
use federation::NodeId;
use futures::StreamExt;
use netstack::node::Event as NodeEvent;
use paths::Paths;
use rand_core::OsRng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// After a host change, re-read the host once it has been quiet this long.
const HOST_QUIET: Duration = Duration::from_millis(150);
/// Re-scan host addresses this often.
const SCAN_EVERY: Duration = Duration::from_secs(3);
/// Liveness from tunnel traffic, and overlay probes, this often.
const PATHS_EVERY: Duration = Duration::from_secs(2);
/// The first summary of our measurements after start.
const METRICS_FIRST: Duration = Duration::from_secs(8);
/// Local requests waiting for the member's answer, at most (the local
/// API serves a handful of clients; more waiting is refused).
const MAX_LOCAL: usize = 256;

/// When the loop's own periodic work is due.
pub(super) struct Due {
    paths: Instant,
    /// Close probes and route decisions.
    watch: Instant,
    scan: Instant,
    metrics: Instant,
    /// Re-read the host after a burst of netlink events.
    pub(super) rescan: Option<Instant>,
}

/// Everything the event loop owns.
pub struct EventLoop {
    pub(super) member: Member<Reply>,
    pub(super) shell: Shell,
    pub(super) data: Shared,
    node_events: mpsc::Receiver<NodeEvent>,
    pub(super) netlink: Netlink,
    pub(super) tun_index: u32,
    pub(super) iface: String,
    pub(super) mtu_reason: String,
    pub(super) paths: Paths,
    /// Requests the shell sent for the member: the member's tag of each
    /// (an entry leaves with its answer or failure, which the shell always
    /// reports).
    pub(super) sent: BTreeMap<RequestId, Tag>,
    /// Local requests waiting for the member's answer.
    locals: BTreeMap<LocalId, oneshot::Sender<String>>,
    next_local: LocalId,
    /// The metadata lookup under way for `--advertise auto`.
    auto_lookup: Option<auto::Lookup>,
    /// Members that are peers of the data plane.
    pub(super) peers: BTreeSet<NodeId>,
    /// Federated networks' ranges routed into the overlay interface.
    pub(super) routed: BTreeSet<federation::Cidr>,
    /// The DNS listener for members' names.
    pub(super) names: names::Names,
    pub(super) due: Due,
    /// CPU time at the last measurement, and when this agent started.
    cpu: CpuSample,
    started: Instant,
}

/// What the loop is given to run.
pub struct Parts {
    /// The state directory.
    pub state: StateDir,
    /// The control plane.
    pub shell: Shell,
    /// The data plane and its events.
    pub data: (Shared, mpsc::Receiver<NodeEvent>),
    /// Netlink.
    pub netlink: Netlink,
    /// The TUN interface's index.
    pub tun_index: u32,
    /// The TUN interface's name.
    pub iface: String,
}

/// Now, as an instant and in ms since the epoch.
pub(super) fn clock() -> (Instant, u64) {
    (Instant::now(), now_ms())
}

impl EventLoop {
    /// Builds the loop around an already running data plane.
    pub fn new(parts: Parts) -> Result<EventLoop> {
        let Parts {
            state,
            shell,
            data: (data, node_events),
            netlink,
            tun_index,
            iface,
        } = parts;
        let ledger = state.ledger()?;
        let (mut record, version) = state.own()?;
        record.no_relay = !data.with(|n| n.serves_relay());
        let identity = Identity {
            key: federation::NodeKey::from_seed(&state.key.seed()),
            authority: state
                .authority
                .as_ref()
                .map(|k| federation::NodeKey::from_seed(&k.seed())),
            network: state.network,
            settings: state.settings.clone(),
        };
        let now = Instant::now();
        let member = Member::new(identity, Box::new(state), ledger, (record, version), now);
        Ok(EventLoop {
            member,
            shell,
            data,
            node_events,
            netlink,
            tun_index,
            names: names::Names::new(&iface),
            iface,
            mtu_reason: String::new(),
            paths: Paths::new(),
            sent: BTreeMap::new(),
            locals: BTreeMap::new(),
            next_local: 0,
            auto_lookup: None,
            peers: BTreeSet::new(),
            routed: BTreeSet::new(),
            due: Due {
                paths: now,
                watch: now,
                scan: now + SCAN_EVERY,
                metrics: now + METRICS_FIRST,
                rescan: None,
            },
            cpu: CpuSample::now(),
            started: now,
        })
    }

    /// Runs until `local` closes, a `leave` completes, or `stop` resolves.
    pub async fn run(
        mut self,
        mut local: mpsc::Receiver<LocalRequest>,
        stop: impl std::future::Future<Output = Result<()>>,
    ) -> Result<()> {
        let host = self.scan_host().await;
        let (now, now_ms) = clock();
        let host = host
            .as_ref()
            .map(|(inv, reflexive)| (inv, reflexive.clone()));
        self.member.start(host, now, now_ms, &mut OsRng);
        self.carry_out().await;
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
                event = self.shell.next() => self.on_shell(event),
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
                found = auto::answer(&mut self.auto_lookup) => {
                    self.auto_lookup = None;
                    self.member.handle_auto(auto::found(found));
                }
                replies = replies(&mut self.paths.prober) => {
                    let (now, now_ms) = clock();
                    for r in replies {
                        self.member.handle_heard(r.key, now, now_ms);
                    }
                }
                request = local.recv() => match request {
                    Some(LocalRequest { request, reply }) => self.on_local(request, reply),
                    None => return Ok(()),
                },
                r = &mut stop => return r,
            }
            if self.carry_out().await {
                return Ok(());
            }
        }
    }

    /// A local API request: to the member, its answer line back later.
    fn on_local(&mut self, request: api::Request, reply: oneshot::Sender<String>) {
        if self.locals.len() >= MAX_LOCAL {
            let _ = reply.send(api::error("too many requests waiting; try again"));
            return;
        }
        self.next_local = self.next_local.wrapping_add(1);
        let id = self.next_local;
        self.locals.insert(id, reply);
        let (now, now_ms) = clock();
        self.member
            .handle_local(Asker::Local(id), request, now, now_ms, &mut OsRng);
    }

    /// When [`EventLoop::handle_timeout`] must run next: the member's, the
    /// echo's, and the loop's own periodic work.
    fn poll_timeout(&self) -> Instant {
        let d = &self.due;
        [
            Some(d.paths),
            Some(d.watch),
            Some(d.scan),
            Some(d.metrics),
            d.rescan,
            Some(self.member.poll_timeout()),
            self.paths.asker.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| Instant::now() + PATHS_EVERY)
    }

    /// Runs whatever is due.
    async fn handle_timeout(&mut self) {
        let (now, now_ms) = clock();
        self.member.handle_timeout(now, now_ms, &mut OsRng);
        self.paths.ask_echo(&self.data, now);
        self.on_outcomes();
        let tick = paths::Tick {
            me: self.member.me(),
            active: self.member.is_active(),
            now,
            now_ms,
        };
        if now >= self.due.watch {
            self.due.watch = now + paths::WATCH_EVERY;
            let settling = self.member.settling(now);
            let roster = self.member.replica().roster(now_ms);
            let facts = self.paths.watch(&self.data, &roster, tick, &settling);
            self.member.handle_facts(&facts, now, now_ms);
        }
        if now >= self.due.paths {
            self.due.paths = now + PATHS_EVERY;
            let roster = self.member.replica().roster(now_ms);
            let heard = self.paths.round(&self.data, &roster, tick);
            for id in heard {
                self.member.handle_heard(id, now, now_ms);
            }
        }
        if now >= self.due.metrics {
            // What a burst freed goes back before the RSS is measured.
            drivers::trim_heap();
            let links = self.with_view(|v| v.links());
            let (cpu_permille, next) = self.cpu.since();
            self.cpu = next;
            let host = HostSample {
                cpu_permille,
                rss_kb: rss_kb(),
                uptime_s: now.saturating_duration_since(self.started).as_secs(),
            };
            self.due.metrics = now + self.member.handle_measured(host, links, now, now_ms);
        }
        if now >= self.due.scan || self.due.rescan.is_some_and(|t| now >= t) {
            self.due.scan = now + SCAN_EVERY;
            self.due.rescan = None;
            self.refresh_host().await;
        }
    }

    /// Carries out what the member decided, until it has nothing more to
    /// say; true once it asked to stop.
    async fn carry_out(&mut self) -> bool {
        let mut exit = false;
        loop {
            let mut apply = false;
            while let Some(c) = self.member.poll_command() {
                match c {
                    Command::Dial { id, addrs } => self.shell.dial(&id, &addrs),
                    Command::DialAddress(addr) => self.shell.dial_address(addr),
                    Command::Disconnect(id) => self.shell.disconnect(&id),
                    Command::Request {
                        tag,
                        to,
                        addrs,
                        request,
                    } => match self.shell.request(&to, &addrs, request) {
                        Some(id) => {
                            self.sent.insert(id, tag);
                        }
                        None => {
                            let (now, now_ms) = clock();
                            self.member.handle_failed(
                                tag,
                                to,
                                "that member has an invalid id",
                                now,
                                now_ms,
                            );
                        }
                    },
                    Command::Respond { reply, answer } => self.shell.respond(reply, answer),
                    Command::Publish(bytes) => self.shell.publish(bytes),
                    Command::Route(c) => {
                        let (now, now_ms) = clock();
                        let roster = self.member.replica().roster(now_ms);
                        self.paths.carry_out(c, &self.data, &roster, now, now_ms);
                    }
                    Command::SetMembers(members) => self.shell.set_members(members),
                    Command::Apply => apply = true,
                    Command::Rescan => {
                        self.due.rescan.get_or_insert(Instant::now());
                    }
                    Command::LookUpAuto => self.auto_lookup = Some(auto::look_up()),
                    Command::Answer { id, line } => {
                        if let Some(reply) = self.locals.remove(&id) {
                            let _ = reply.send(line);
                        }
                    }
                    Command::Read { asker, request } => {
                        let line = self.read(request);
                        self.member.answered(asker, line);
                    }
                    Command::Exit => exit = true,
                }
            }
            if !apply {
                return exit;
            }
            self.apply().await;
        }
    }

    /// Re-reads the host (addresses, networks, MTU) and where members see
    /// us, for the member.
    async fn refresh_host(&mut self) {
        if let Some((inv, reflexive)) = self.scan_host().await {
            let (now, now_ms) = clock();
            self.member.handle_host(&inv, reflexive, now, now_ms);
        }
    }

    /// What the host shows (addresses, networks, MTU), and where members
    /// see our data plane; `None` (said) if the host cannot be read.
    async fn scan_host(&mut self) -> Option<(Inventory, Vec<std::net::SocketAddr>)> {
        let cidr = self.member.replica().ledger().authority().map(|a| a.cidr);
        match scan(Some(self.tun_index), cidr).await {
            Ok(inv) => {
                let host_mtu = self.member.own().record.host_mtu;
                if inv.mtu != host_mtu && host_mtu.is_some() {
                    // Our own links changed: what paths carry is unknown again.
                    self.paths.asker.forget_paths();
                    self.on_outcomes();
                }
                let reflexive = self.paths.asker.reflexive(Instant::now(), &inv.addrs);
                Some((inv, reflexive))
            }
            Err(e) => {
                tracing::warn!("cannot read this host's addresses: {e:#}");
                None
            }
        }
    }

    /// A consistent view for the answers, with the data plane locked.
    pub(super) fn with_view<T>(&self, f: impl FnOnce(&View) -> T) -> T {
        let m = &self.member;
        let connected = m.connected();
        let (now, now_ms) = clock();
        let replica = m.replica();
        self.data.with(|node| {
            f(&View {
                ledger: replica.ledger(),
                roster: replica.roster(now_ms),
                partners: replica.partners(),
                me: m.me(),
                own: &m.own().record,
                version: m.own().version,
                settings: &m.identity().settings,
                iface: &self.iface,
                authority: m.identity().authority.is_some(),
                mtu_reason: &self.mtu_reason,
                traffic: replica.traffic(),
                refused: replica.refused().map(|(k, v)| (k.to_string(), v)).collect(),
                connected: &connected,
                liveness: m.liveness(),
                prober: self.paths.prober.as_ref(),
                node,
                metrics: m.own().record.metrics.as_ref(),
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
