//! A running member of a network, sans-IO, in the style of quinn-proto's
//! `Connection`: [`Member`] owns every protocol decision of a node and
//! none of its handles. The daemon (`crate::daemon`) feeds it what the
//! control plane, the data plane, the local API and the host reported
//! (`handle_*`, each given the time), runs [`Member::handle_timeout`] when
//! [`Member::poll_timeout`] says, and carries out what
//! [`Member::poll_command`] returns (dial, send, answer, publish, make the
//! host match the ledger...). This folder reads no clock and holds no
//! socket, task or driver: fake-time tests run several members joined by
//! an in-memory shell (`tests.rs`).
//!
//! What it owns, each in its own machine:
//! - [`Replica`] (federation): the state, anti-entropy, the trust
//!   boundary and the traffic counters;
//! - [`Liveness`] (federation): when members were last heard from;
//! - [`own::Own`]: this node's record and when to publish it;
//! - [`via::Via`]: queries forwarded to other members, and joins passed on
//!   to their inviter ([`joins`]);
//! - [`observed::Observed`]: where members see our control plane;
//! - [`redial::Redial`]: which members the control plane dials, and when;
//! - the routes to each peer (`federation::routes`) and the data plane's
//!   peer table ([`peers`], [`routing`]);
//! - agreements with other networks ([`agreements`]), re-tags
//!   ([`retag`]), invites ([`invites`]) and the local API's requests that
//!   change something ([`local`]).

pub mod agreements;
mod find;
mod flush;
mod inbound;
mod interface;
pub mod invites;
mod joins;
mod local;
pub mod observed;
pub mod own;
pub mod peers;
pub mod redial;
mod retag;
mod routing;
pub mod via;

#[cfg(test)]
mod tests;

use federation::liveness::Liveness;
use federation::protocol::{Request as Ask, Response};
use federation::replica::Replica;
use federation::{Ledger, NodeId, Status};
pub use find::find;
pub use interface::{Asker, Command, Identity, LocalId, Storage, Tag};
use observed::Observed;
use own::Own;
use rand_core::RngCore;
use redial::Redial;
use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use via::Via;

/// How long a departing node keeps serving so its farewell spreads.
pub const FAREWELL: Duration = Duration::from_millis(1500);
/// Standing can change with time alone (a certificate expires): looked
/// at this often.
const STANDING_EVERY: Duration = Duration::from_secs(2);
/// Commands waiting for the daemon, at most (a member that produces more
/// between two polls has a bug; the oldest are kept, and answers always).
const MAX_COMMANDS: usize = 4096;

/// Everything a running member decides on.
pub struct Member<R> {
    me: NodeId,
    identity: Identity,
    storage: Box<dyn Storage>,
    replica: Replica,
    liveness: Liveness,
    own: Own,
    via: Via<Tag, LocalId>,
    joins: Via<Tag, R>,
    observed: Observed,
    /// The public address `--advertise auto` found.
    auto: Option<IpAddr>,
    /// Members in good standing, as last applied (time alone changes it:
    /// certificates expire).
    members: BTreeSet<NodeId>,
    /// This node's standing as last seen (to say when it changes).
    standing: Option<Status>,
    standing_due: Instant,
    redial: Redial,
    /// How each peer is reached.
    routes: federation::routes::Routes,
    /// When a departing node stops serving.
    leaving: Option<Instant>,
    next_tag: Tag,
    commands: VecDeque<Command<R>>,
}

impl<R> Member<R> {
    /// A member from its stored state: `ledger` (every stored record) and
    /// its own record at `version`. Call [`Member::start`] next.
    pub fn new(
        identity: Identity,
        storage: Box<dyn Storage>,
        ledger: Ledger,
        own: (federation::member::MemberRecord, u64),
        now: Instant,
    ) -> Self {
        let me = identity.key.id();
        Self {
            me,
            identity,
            storage,
            replica: Replica::new(ledger, me),
            liveness: Liveness::new(now),
            own: Own::new(own.0, own.1),
            via: Via::new(),
            joins: Via::new(),
            observed: Observed::new(),
            auto: None,
            members: BTreeSet::new(),
            standing: None,
            standing_due: now + STANDING_EVERY,
            redial: Redial::new(now),
            routes: federation::routes::Routes::new(),
            leaving: None,
            next_tag: 0,
            commands: VecDeque::new(),
        }
    }

    /// Starts: takes what the host shows (`host`: as for
    /// [`Member::handle_host`], if it could be read), reclaims a lost
    /// address, sets the boundary, makes the host match, publishes what
    /// changed (once) and dials the members.
    pub fn start(
        &mut self,
        host: Option<(&crate::inventory::Inventory, Vec<SocketAddr>)>,
        now: Instant,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) {
        if self
            .identity
            .settings
            .advertise
            .contains(&crate::advertise::Advertise::Auto)
        {
            self.command(Command::LookUpAuto);
        }
        if let Some((inv, reflexive)) = host {
            self.take_host(inv, reflexive, now);
        }
        self.own
            .reclaim_if_lost(self.replica.ledger(), &self.me, now_ms);
        self.on_membership(now_ms);
        self.command(Command::Apply);
        self.flush(now, now_ms);
        self.dial(redial::targets(
            &self.me,
            &self.replica.ledger().members(now_ms),
            &self.connected(),
            rng,
        ));
    }

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Who this node is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The replica (the state and its counters).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// This node's record.
    pub fn own(&self) -> &Own {
        &self.own
    }

    /// When members were last heard from.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// True while this node is a member in good standing.
    pub fn is_active(&self) -> bool {
        self.standing == Some(Status::Active)
    }

    /// Members with a control connection now.
    pub fn connected(&self) -> BTreeSet<NodeId> {
        self.replica.connected().copied().collect()
    }

    /// The next command for the daemon.
    pub fn poll_command(&mut self) -> Option<Command<R>> {
        self.commands.pop_front()
    }

    /// When [`Member::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Instant {
        [
            Some(self.redial.poll_timeout()),
            Some(self.standing_due),
            self.replica.poll_timeout(),
            self.via.poll_timeout(),
            self.joins.poll_timeout(),
            self.leaving,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.standing_due)
    }

    /// Runs whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, now_ms: u64, rng: &mut impl RngCore) {
        self.replica.handle_timeout(now, now_ms, rng);
        for (id, why) in self.via.expire(now) {
            self.answer(id, crate::api::error(&why));
        }
        self.expire_joins(now);
        if now >= self.standing_due {
            self.standing_due = now + STANDING_EVERY;
            if self.active_members(now_ms) != self.members
                || self.replica.standing(now_ms) != self.standing
            {
                self.on_membership(now_ms);
                self.command(Command::Apply);
            }
        }
        if now >= self.redial.poll_timeout() {
            let members = self.replica.ledger().members(now_ms);
            let dials = self
                .redial
                .handle_timeout(now, &self.me, &members, &self.connected(), rng);
            self.dial(dials);
        }
        if self.leaving.is_some_and(|t| now >= t) {
            self.leaving = None;
            self.command(Command::Exit);
        }
        self.flush(now, now_ms);
    }

    /// Member `id` was heard from (over a tunnel, a probe, a handshake).
    pub fn handle_heard(&mut self, id: NodeId, now: Instant, now_ms: u64) {
        self.liveness.heard(id, now, self.replica.ledger(), now_ms);
    }

    /// What the host shows now (`inv`), and where members see this node's
    /// data plane (`reflexive`, from the endpoint echo).
    pub fn handle_host(
        &mut self,
        inv: &crate::inventory::Inventory,
        reflexive: Vec<SocketAddr>,
        now: Instant,
        now_ms: u64,
    ) {
        self.take_host(inv, reflexive, now);
        self.flush(now, now_ms);
    }

    fn take_host(
        &mut self,
        inv: &crate::inventory::Inventory,
        reflexive: Vec<SocketAddr>,
        now: Instant,
    ) {
        let outside = own::Outside {
            reflexive,
            control: self.observed.endpoints(now, &inv.addrs),
            auto: self.auto,
        };
        self.own.update_host(inv, &self.identity.settings, outside);
        if self.own.dirty {
            self.command(Command::Apply);
        }
    }

    /// What the metadata service answered for `--advertise auto` (`None`:
    /// nothing, said by the daemon); the host is re-read next.
    pub fn handle_auto(&mut self, found: Option<IpAddr>) {
        // A lookup that `set` made moot (auto no longer advertised).
        if !self
            .identity
            .settings
            .advertise
            .contains(&crate::advertise::Advertise::Auto)
        {
            return;
        }
        self.auto = found;
        self.command(Command::Rescan);
    }

    /// The overlay MTU the daemon set on the interface.
    pub fn handle_mtu(&mut self, mtu: u16, now: Instant, now_ms: u64) {
        self.own.set_mtu(mtu);
        self.flush(now, now_ms);
    }

    /// Probing found the narrowest path (`None`: no limit below the links).
    pub fn handle_path_mtu(&mut self, limit: Option<u16>, now: Instant, now_ms: u64) {
        self.own.set_path_mtu(limit);
        self.command(Command::Rescan);
        self.flush(now, now_ms);
    }

    /// Peers see this node at a new endpoint: QUIC here cannot migrate, so
    /// the control connections are dead; they are closed now and redialed
    /// instead of waiting for their timeout.
    pub fn handle_moved(&mut self) {
        for id in self.connected() {
            self.command(Command::Disconnect(id));
        }
    }

    /// This node's measurements of itself and its links (`links`): put in
    /// the record; when to measure again.
    pub fn handle_measured(
        &mut self,
        host: own::HostSample,
        links: Vec<federation::member::Link>,
        now: Instant,
        now_ms: u64,
    ) -> Duration {
        let next = self.own.measured(host, links, now_ms);
        self.flush(now, now_ms);
        next
    }

    fn command(&mut self, c: Command<R>) {
        // Answers are never dropped: one per request waiting, and those
        // are bounded where they wait.
        let answer = matches!(
            c,
            Command::Answer { .. } | Command::Respond { .. } | Command::Exit
        );
        if answer || self.commands.len() < MAX_COMMANDS {
            self.commands.push_back(c);
        } else {
            tracing::error!("the daemon is not taking the member's commands; one dropped");
        }
    }

    fn answer(&mut self, id: LocalId, line: String) {
        self.command(Command::Answer { id, line });
    }

    fn dial(&mut self, dials: Vec<redial::Dial>) {
        for (id, addrs) in dials {
            self.command(Command::Dial { id, addrs });
        }
    }

    fn control_addrs(&self, id: &NodeId, now_ms: u64) -> Vec<SocketAddr> {
        self.replica.control_addrs(id, now_ms)
    }

    /// Members changed: the gossip boundary, the machines' tables and this
    /// node's own standing follow.
    fn on_membership(&mut self, now_ms: u64) {
        let members = self.active_members(now_ms);
        self.command(Command::SetMembers(members.clone()));
        self.observed.retain(|id| members.contains(id));
        self.liveness.retain_members(self.replica.ledger(), now_ms);
        self.members = members;
        let standing = self.replica.standing(now_ms);
        if standing != self.standing {
            match standing {
                Some(Status::Revoked) => tracing::error!(
                    "this node was revoked from the network: it no longer admits, invites or routes; join again with a new --state directory if that was a mistake"
                ),
                Some(Status::Expired) => tracing::error!(
                    "this node's certificate expired: it no longer admits, invites or routes"
                ),
                _ => {}
            }
            self.standing = standing;
        }
    }

    /// Members in good standing now.
    fn active_members(&self, now_ms: u64) -> BTreeSet<NodeId> {
        self.replica
            .ledger()
            .members(now_ms)
            .iter()
            .filter(|m| m.status == Status::Active)
            .map(|m| m.id)
            .collect()
    }

    fn tag(&mut self) -> Tag {
        self.next_tag = self.next_tag.wrapping_add(1);
        self.next_tag
    }

    /// Sends a request of this node's own (a forwarded query or join, a
    /// re-issued certificate), counted like every control message; its
    /// tag.
    fn ask(&mut self, to: &NodeId, now_ms: u64, request: Ask) -> Tag {
        self.replica.count_request(&request);
        let tag = self.tag();
        let addrs = self.control_addrs(to, now_ms);
        self.command(Command::Request {
            tag,
            to: *to,
            addrs,
            request,
        });
        tag
    }

    /// Answers another member's request through the replica, which counts
    /// it.
    fn reply(&mut self, reply: R, response: Response) {
        let answer = self.replica.answer(response);
        self.command(Command::Respond { reply, answer });
    }

    /// Answers `asker`: a local request gets the line, a remote one the
    /// line as its answer.
    fn tell(&mut self, asker: Asker<R>, line: String) {
        match asker {
            Asker::Local(id) => self.answer(id, line),
            Asker::Remote(reply) => self.reply(reply, Response::Answer(line)),
        }
    }

    /// The daemon's answer to a [`Command::Read`].
    pub fn answered(&mut self, asker: Asker<R>, line: String) {
        self.tell(asker, line);
    }
}
