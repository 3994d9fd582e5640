//! How this node reaches each peer, sans-IO. A new peer, or a new endpoint
//! its record suggests while it is reached directly, is tried directly
//! first ([`crate::paths::choose_endpoint`]): the attempt holds once the
//! path answers (an overlay probe, or a handshake since the attempt began)
//! and falls back to a relay after [`DIRECT_GRACE`]. A path in use that
//! stops answering — its last overlay probes lost; the caller probes a
//! peer fast while its traffic goes unanswered — is left at once: a direct
//! path for a relay, a relay for another relay (or the direct path when
//! none is left). A relayed peer is never moved to a direct path on hope:
//! a direct candidate (the endpoint its record suggests, every
//! [`VERIFY_EVERY`]; an endpoint its authenticated packets came from, at
//! once) is first checked with an endpoint echo on that very path, and only
//! an answer — traffic both ways — moves it there.
//!
//! A relayed peer behind a NAT is not knocked at: an unasked datagram that
//! reaches a bare Linux router's own stack leaves a conntrack entry there
//! that takes the port its host's own flow to us needs, and the path stays
//! shut while we keep knocking. One side of the pair (the lower id) opens
//! its NAT with a short-lived punch and calls the peer through the relay
//! ([`Command::Punch`]); the called peer checks the path at once
//! ([`Routes::handle_called`]), when our NAT expects it, and a moment later
//! ([`CHECK_AFTER_CALL`]) we check the peer's endpoints too: by then its
//! answer has opened its NAT towards us, and a NAT that lets in anything
//! from an address it sent to takes our datagrams from whatever port our
//! own NAT gives them (an endpoint-dependent NAT's, say). Rounds are
//! [`PUNCH_EVERY`] apart, longer than a NAT keeps an unanswered flow, so
//! what a failed round left in a router's table is gone by the next.
//!
//! The caller says what the data plane and the probes show ([`Facts`]),
//! reports the checks' answers ([`Routes::handle_verified`]) and the direct
//! packets of relayed peers ([`Routes::handle_direct_seen`]), and applies
//! the [`Command`]s; the member records (who relays, who sits behind a NAT,
//! whose published links reach whom, which partner lends which relay) come
//! from the [`Roster`].

use crate::ledger::Status;
use crate::paths::public;
use crate::record::NodeId;
use crate::roster::Roster;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A direct attempt that has not answered this long falls back to a relay.
pub const DIRECT_GRACE: Duration = Duration::from_secs(4);
/// A relayed peer's direct candidate is checked this often.
pub const VERIFY_EVERY: Duration = Duration::from_secs(10);
/// A direct endpoint seen in a relayed peer's packets is checked at most
/// this often.
pub const SEEN_VERIFY_EVERY: Duration = Duration::from_secs(2);
/// A relayed peer behind a NAT is punched and called this often: longer
/// than a NAT keeps a flow nobody answered (30 s on Linux).
pub const PUNCH_EVERY: Duration = Duration::from_secs(40);
/// A punch round checks the peer's endpoints itself this long after its
/// call: once the peer had time to answer it, which opens its NAT.
pub const CHECK_AFTER_CALL: Duration = Duration::from_secs(2);
/// A path is watched closely for this long after it changed.
pub const SETTLE: Duration = Duration::from_secs(5);
/// A published link whose handshake is younger than this is live; so is
/// a relay candidate reached directly, before any probe answered.
pub const SESSION_FRESH: Duration = Duration::from_secs(150);
/// Commands waiting to be applied, at most (one per peer per run).
const MAX_COMMANDS: usize = 4096;

/// What the data plane and the probes show about one peer now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// It is reached directly (a real endpoint, not a relayed path).
    pub direct: bool,
    /// The relay it is reached through, when relayed.
    pub relay: Option<NodeId>,
    /// When its last handshake completed.
    pub handshake: Option<Instant>,
    /// An overlay probe sent on the current path was answered.
    pub answered: bool,
    /// Its last few overlay probes were all lost.
    pub silent: bool,
    /// The average round trip of the probes answered.
    pub rtt: Option<Duration>,
}

/// A change of path for the caller to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Send to `peer` at `endpoint`.
    Direct {
        /// The peer.
        peer: NodeId,
        /// Its direct endpoint.
        endpoint: SocketAddr,
    },
    /// Send to `peer` through the member `relay`.
    Relay {
        /// The peer.
        peer: NodeId,
        /// The relay.
        relay: NodeId,
        /// The relay it replaces, which stopped getting through.
        replacing: Option<NodeId>,
    },
    /// Check whether `endpoint` carries traffic with `peer` both ways (an
    /// endpoint echo sent there; its answer goes to
    /// [`Routes::handle_verified`]). The path in use does not change.
    Verify {
        /// The peer.
        peer: NodeId,
        /// The direct candidate.
        endpoint: SocketAddr,
    },
    /// Open our NAT towards every public endpoint of the relayed `peer`
    /// ([`crate::paths::public_candidates`]) with a punch that dies before
    /// the peer's NAT, then call the peer through the relay, so it checks
    /// the paths from its side (see the module docs). The path in use does
    /// not change.
    Punch {
        /// The peer.
        peer: NodeId,
    },
    /// Check every public endpoint of the relayed `peer`
    /// ([`crate::paths::public_candidates`]) now: it called, and its NAT
    /// expects us; or our call was answered a moment ago, and its NAT
    /// (full cone, address-restricted) now lets in what comes from our NAT's
    /// port towards it, whatever port that is. The path in use does not
    /// change.
    Check {
        /// The peer.
        peer: NodeId,
    },
}

/// The path in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Direct, since then.
    Direct(Instant),
    /// Through this relay, since then.
    Relay(NodeId, Instant),
}

#[derive(Debug, Clone, Copy)]
struct Route {
    /// The direct endpoint chosen from the records.
    chosen: SocketAddr,
    mode: Mode,
    /// When a direct candidate was last checked.
    checked: Option<Instant>,
    /// When the peer was last punched and called.
    punched: Option<Instant>,
    /// When the last round checks the peer's endpoints itself.
    check_at: Option<Instant>,
}

impl Route {
    fn since(&self) -> Instant {
        match self.mode {
            Mode::Direct(t) | Mode::Relay(_, t) => t,
        }
    }
}

/// Every peer's route.
#[derive(Debug, Default)]
pub struct Routes {
    routes: BTreeMap<NodeId, Route>,
    commands: VecDeque<Command>,
}

impl Routes {
    /// No routes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The records now suggest `endpoint` for `peer`. A new peer starts a
    /// direct attempt there and the endpoint is returned, to be put in
    /// place with the peer; a peer reached directly is moved there
    /// ([`Command::Direct`]: a NAT that changed its address); a relayed
    /// peer keeps its relay and the new endpoint is checked first. The
    /// same choice again changes nothing (what authenticated packets taught
    /// the data plane, roaming, stays).
    pub fn handle_choice(
        &mut self,
        peer: NodeId,
        endpoint: Option<SocketAddr>,
        now: Instant,
    ) -> Option<SocketAddr> {
        let endpoint = endpoint?;
        let Some(r) = self.routes.get_mut(&peer) else {
            let route = Route {
                chosen: endpoint,
                mode: Mode::Direct(now),
                checked: None,
                punched: None,
                check_at: None,
            };
            self.routes.insert(peer, route);
            return Some(endpoint);
        };
        if r.chosen == endpoint {
            return None;
        }
        r.chosen = endpoint;
        match r.mode {
            Mode::Relay(..) => {
                r.checked = Some(now);
                self.command(Command::Verify { peer, endpoint });
            }
            Mode::Direct(_) => {
                r.mode = Mode::Direct(now);
                self.command(Command::Direct { peer, endpoint });
            }
        }
        None
    }

    /// `peer` answered the check of `endpoint`: the path carries traffic
    /// both ways. A relayed peer moves there.
    pub fn handle_verified(&mut self, peer: NodeId, endpoint: SocketAddr, now: Instant) {
        let Some(r) = self.routes.get_mut(&peer) else {
            return;
        };
        if matches!(r.mode, Mode::Relay(..)) {
            r.mode = Mode::Direct(now);
            self.command(Command::Direct { peer, endpoint });
        }
    }

    /// An authenticated packet of the relayed `peer` came straight from
    /// `endpoint` (its NAT's mapping toward us, perhaps a new one): it is
    /// checked, at most every [`SEEN_VERIFY_EVERY`].
    pub fn handle_direct_seen(&mut self, peer: NodeId, endpoint: SocketAddr, now: Instant) {
        self.check_relayed_now(peer, Command::Verify { peer, endpoint }, now);
    }

    /// The relayed `peer` punched its NAT towards us and called: its
    /// public endpoints are checked now ([`Command::Check`], at most every
    /// [`SEEN_VERIFY_EVERY`]).
    pub fn handle_called(&mut self, peer: NodeId, now: Instant) {
        self.check_relayed_now(peer, Command::Check { peer }, now);
    }

    /// Issues `check` if `peer` is relayed and was not checked in the last
    /// [`SEEN_VERIFY_EVERY`].
    fn check_relayed_now(&mut self, peer: NodeId, check: Command, now: Instant) {
        let Some(r) = self.routes.get_mut(&peer) else {
            return;
        };
        let due = r
            .checked
            .is_none_or(|t| now.saturating_duration_since(t) >= SEEN_VERIFY_EVERY);
        if matches!(r.mode, Mode::Relay(..)) && due {
            r.checked = Some(now);
            self.command(check);
        }
    }

    /// Forgets peers for which `keep` is false.
    pub fn retain(&mut self, keep: impl Fn(&NodeId) -> bool) {
        self.routes.retain(|id, _| keep(id));
    }

    /// The relay `peer` is reached through, as last commanded.
    pub fn relay_of(&self, peer: &NodeId) -> Option<NodeId> {
        match self.routes.get(peer)?.mode {
            Mode::Relay(relay, _) => Some(relay),
            Mode::Direct(_) => None,
        }
    }

    /// Peers whose path changed in the last [`SETTLE`]: to be probed
    /// closely, so a new path that does not work is left fast.
    pub fn settling(&self, now: Instant) -> impl Iterator<Item = NodeId> + '_ {
        self.routes
            .iter()
            .filter(move |(_, r)| now.saturating_duration_since(r.since()) < SETTLE)
            .map(|(id, _)| *id)
    }

    /// Decides, for every peer with a route, whether its path must change.
    /// `me` is this node; `facts` what is known of each peer (missing:
    /// nothing known, no answer).
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        me: &NodeId,
        roster: &Roster<'_>,
        facts: &BTreeMap<NodeId, Facts>,
        now_ms: u64,
    ) {
        let fact = |id: &NodeId| facts.get(id).copied().unwrap_or_default();
        let ids: Vec<NodeId> = self.routes.keys().copied().collect();
        for id in ids {
            let Some(route) = self.routes.get(&id).copied() else {
                continue;
            };
            let f = fact(&id);
            match route.mode {
                // The peer moved us onto a relay (its packets arrive
                // through one, and roaming followed): so be it.
                Mode::Direct(_) if !f.direct && f.relay.is_some() => {
                    if let (Some(relay), Some(r)) = (f.relay, self.routes.get_mut(&id)) {
                        r.mode = Mode::Relay(relay, now);
                    }
                }
                Mode::Direct(since) => {
                    let answers = f.answered || f.handshake.is_some_and(|h| h >= since);
                    let late = now.saturating_duration_since(since) >= DIRECT_GRACE;
                    if f.silent || (late && !answers) {
                        self.relay(id, None, me, roster, &fact, now, now_ms);
                    }
                }
                Mode::Relay(relay, _) if f.silent => {
                    // The relay no longer gets us through: another one.
                    self.relay(id, Some(relay), me, roster, &fact, now, now_ms);
                }
                Mode::Relay(..) => self.check(id, route, me, roster, now, now_ms),
            }
        }
    }

    /// Checks the direct candidate of the relayed `peer` when due: a peer
    /// anyone can reach is asked there every [`VERIFY_EVERY`]; one behind a
    /// NAT is punched and called every [`PUNCH_EVERY`] by the lower id of
    /// the pair (the other answers calls), which checks the peer's
    /// endpoints itself [`CHECK_AFTER_CALL`] later.
    fn check(
        &mut self,
        peer: NodeId,
        route: Route,
        me: &NodeId,
        roster: &Roster<'_>,
        now: Instant,
        now_ms: u64,
    ) {
        if route.check_at.is_some_and(|t| now >= t) {
            if let Some(r) = self.routes.get_mut(&peer) {
                r.check_at = None;
            }
            self.command(Command::Check { peer });
        }
        let since = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t));
        let verify = since(route.checked).is_none_or(|d| d >= VERIFY_EVERY);
        let punch = *me < peer && since(route.punched).is_none_or(|d| d >= PUNCH_EVERY);
        if !verify && !punch {
            return;
        }
        let reachable = roster
            .member(&peer, now_ms)
            .is_some_and(|m| public(m.record));
        let endpoint = route.chosen;
        let Some(r) = self.routes.get_mut(&peer) else {
            return;
        };
        if reachable && verify {
            r.checked = Some(now);
            self.command(Command::Verify { peer, endpoint });
        } else if !reachable && punch {
            r.punched = Some(now);
            r.check_at = Some(now + CHECK_AFTER_CALL);
            self.command(Command::Punch { peer });
        }
    }

    /// Moves `peer` to the best relay other than `avoid`; with none left
    /// after a failed relay, back to the direct path.
    #[allow(clippy::too_many_arguments)]
    fn relay(
        &mut self,
        peer: NodeId,
        avoid: Option<NodeId>,
        me: &NodeId,
        roster: &Roster<'_>,
        fact: &impl Fn(&NodeId) -> Facts,
        now: Instant,
        now_ms: u64,
    ) {
        let Some(route) = self.routes.get(&peer).copied() else {
            return;
        };
        match self.pick_relay(&peer, avoid, me, roster, fact, (now, now_ms)) {
            Some(relay) => {
                self.command(Command::Relay {
                    peer,
                    relay,
                    replacing: avoid,
                });
                if let Some(r) = self.routes.get_mut(&peer) {
                    r.mode = Mode::Relay(relay, now);
                }
            }
            // No other relay: the direct path is all that is left.
            None if avoid.is_some() => {
                if let Some(r) = self.routes.get_mut(&peer) {
                    r.mode = Mode::Direct(now);
                }
                self.command(Command::Direct {
                    peer,
                    endpoint: route.chosen,
                });
            }
            // Nobody relays: keep trying the direct path.
            None => {}
        }
    }

    /// A relay for `peer` among the members that relay and that we reach
    /// directly with a live, answering tunnel (its probes answered, or a
    /// handshake completed lately): first those whose published
    /// links show a live direct tunnel with the peer, then those not behind
    /// a NAT (they reach the network's members), then the one we reach
    /// fastest. A peer of another network (a federation partner's member)
    /// is relayed only by a member whose links show it reaching that peer,
    /// or by one anyone can reach that is exposed or lent to the partner
    /// (ours) or to us (the peer's network's): an unexposed member has no
    /// tunnel to it and could not forward. A peer that is not a host to us
    /// (a lent relay, or one of us only lent) is never relayed.
    fn pick_relay(
        &self,
        peer: &NodeId,
        avoid: Option<NodeId>,
        me: &NodeId,
        roster: &Roster<'_>,
        fact: &impl Fn(&NodeId) -> Facts,
        (now, now_ms): (Instant, u64),
    ) -> Option<NodeId> {
        let fresh = SESSION_FRESH.as_secs();
        let ledger = roster.ledger();
        let us = ledger.network().id;
        let target = roster.member(peer, now_ms)?;
        if !roster.is_host(&target) {
            return None;
        }
        let theirs = target.record.network;
        let own = theirs == us;
        let exposed: Vec<NodeId> = if own {
            Vec::new()
        } else {
            ledger
                .agreements()
                .filter(|a| a.other(&us).is_some_and(|s| s.network == theirs))
                .flat_map(|a| ledger.exposed_writers(a, now_ms))
                .collect()
        };
        roster
            .members(now_ms)
            .into_iter()
            .filter(|m| m.status == Status::Active && m.id != *me && m.id != *peer)
            .filter(|m| Some(m.id) != avoid && !m.record.no_relay)
            .filter_map(|m| {
                let f = fact(&m.id);
                // Answering: its probes, or a handshake on the direct path
                // lately (before the round-robin probes reached it).
                let shook = f
                    .handshake
                    .is_some_and(|h| now.saturating_duration_since(h) < SESSION_FRESH);
                if !(f.direct && (f.answered || shook) && !f.silent) {
                    return None;
                }
                let reaches = m.record.metrics.as_ref().is_some_and(|x| {
                    x.links.iter().any(|l| {
                        l.peer == *peer
                            && l.path == "direct"
                            && l.handshake_age_s.is_some_and(|a| a < fresh)
                    })
                });
                let network = m.record.network;
                let able = if network == us {
                    own || reaches || (exposed.contains(&m.id) && public(m.record))
                } else {
                    // The peer's own network's member, exposed or lent to us.
                    network == theirs && (reaches || public(m.record))
                };
                if !able {
                    return None;
                }
                let rtt = f.rtt.unwrap_or(Duration::from_secs(1));
                Some((!reaches, !public(m.record), rtt, m.id))
            })
            .min()
            .map(|(.., id)| id)
    }

    fn command(&mut self, c: Command) {
        if self.commands.len() < MAX_COMMANDS {
            self.commands.push_back(c);
        }
    }

    /// The next change of path to apply.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }
}

#[cfg(test)]
mod tests;
