//! How this node reaches each peer, sans-IO: the direct endpoint its record
//! suggests ([`crate::paths::choose_endpoint`]) first; a relay when that
//! gives no session within [`DIRECT_GRACE`] (a symmetric NAT, UDP blocked
//! one way); another relay when the one in use stops getting probes
//! through; and the direct path again every [`DIRECT_RETRY`] (a direct
//! packet from the peer also moves it back, by WireGuard's roaming).
//!
//! The caller says what the data plane and the overlay probes show
//! ([`Facts`]) and applies the [`Command`]s; the member records (who
//! relays, who sits behind a NAT, whose published links reach whom) come
//! from the [`Ledger`].

use crate::ledger::{Ledger, Status};
use crate::paths::public;
use crate::record::NodeId;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A direct path with no session this long after it was put in place
/// falls back to a relay.
pub const DIRECT_GRACE: Duration = Duration::from_secs(4);
/// A relayed peer is tried directly again this often (for
/// [`DIRECT_GRACE`]).
pub const DIRECT_RETRY: Duration = Duration::from_secs(60);
/// A session whose last handshake is younger than this is live.
pub const SESSION_FRESH: Duration = Duration::from_secs(150);
/// Commands waiting to be applied, at most (one per peer per run).
const MAX_COMMANDS: usize = 4096;

/// What the data plane and the probes show about one peer now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// It is reached directly (a real endpoint, not a relayed path).
    pub direct: bool,
    /// Its last handshake is younger than [`SESSION_FRESH`].
    pub session: bool,
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
}

#[derive(Debug, Clone, Copy)]
struct Route {
    /// The direct endpoint chosen from the records.
    chosen: SocketAddr,
    /// When the direct endpoint was last put in place (and tried since).
    direct_since: Instant,
    /// The relay in use, if any.
    relay: Option<NodeId>,
    /// When that relay was put in place.
    relay_since: Instant,
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

    /// The records now suggest `endpoint` for `peer`. A new choice starts
    /// a direct attempt and is returned, to be put in place; the same
    /// choice again changes nothing (what authenticated packets taught the
    /// data plane, roaming, stays).
    pub fn handle_choice(
        &mut self,
        peer: NodeId,
        endpoint: Option<SocketAddr>,
        now: Instant,
    ) -> Option<SocketAddr> {
        let endpoint = endpoint?;
        if self.routes.get(&peer).is_some_and(|r| r.chosen == endpoint) {
            return None;
        }
        self.routes.insert(
            peer,
            Route {
                chosen: endpoint,
                direct_since: now,
                relay: None,
                relay_since: now,
            },
        );
        Some(endpoint)
    }

    /// Forgets peers for which `keep` is false.
    pub fn retain(&mut self, keep: impl Fn(&NodeId) -> bool) {
        self.routes.retain(|id, _| keep(id));
    }

    /// The relay `peer` is reached through, as last commanded.
    pub fn relay_of(&self, peer: &NodeId) -> Option<NodeId> {
        self.routes.get(peer).and_then(|r| r.relay)
    }

    /// Decides, for every peer with a route, whether its path must change.
    /// `me` is this node; `facts` what is known of each peer (missing:
    /// nothing known, no session).
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        me: &NodeId,
        ledger: &Ledger,
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
            let since_direct = now.saturating_duration_since(route.direct_since);
            let mut avoid = None;
            if !f.direct && route.relay.is_some() {
                let through = now.saturating_duration_since(route.relay_since) > DIRECT_GRACE;
                if through && f.silent {
                    // The relay no longer gets us through: another one.
                    avoid = route.relay;
                } else {
                    if since_direct > DIRECT_RETRY + DIRECT_GRACE {
                        self.go_direct(id, route.relay, now);
                    }
                    continue;
                }
            } else if f.session || since_direct < DIRECT_GRACE {
                continue;
            }
            match self.pick_relay(&id, avoid, me, ledger, &fact, now_ms) {
                Some(relay) => {
                    self.command(Command::Relay {
                        peer: id,
                        relay,
                        replacing: avoid,
                    });
                    // Keep direct_since: the retry clock runs from the
                    // failed attempt.
                    if let Some(r) = self.routes.get_mut(&id) {
                        r.relay = Some(relay);
                        r.relay_since = now;
                    }
                }
                // No other relay: the direct path is all that is left.
                None if avoid.is_some() => self.go_direct(id, None, now),
                None => {}
            }
        }
    }

    /// A relay for `peer` among the members that relay and that we reach
    /// directly with a live, answering tunnel: first those whose published
    /// links show a live direct tunnel with the peer, then those not behind
    /// a NAT (they reach everyone), then the one we reach fastest.
    fn pick_relay(
        &self,
        peer: &NodeId,
        avoid: Option<NodeId>,
        me: &NodeId,
        ledger: &Ledger,
        fact: &impl Fn(&NodeId) -> Facts,
        now_ms: u64,
    ) -> Option<NodeId> {
        let fresh = SESSION_FRESH.as_secs();
        ledger
            .members(now_ms)
            .into_iter()
            .filter(|m| m.status == Status::Active && m.id != *me && m.id != *peer)
            .filter(|m| Some(m.id) != avoid && !m.record.no_relay)
            .filter_map(|m| {
                let f = fact(&m.id);
                if !(f.direct && f.session && !f.silent) {
                    return None;
                }
                let reaches = m.record.metrics.as_ref().is_some_and(|x| {
                    x.links.iter().any(|l| {
                        l.peer == *peer
                            && l.path == "direct"
                            && l.handshake_age_s.is_some_and(|a| a < fresh)
                    })
                });
                let rtt = f.rtt.unwrap_or(Duration::from_secs(1));
                Some((!reaches, !public(m.record), rtt, m.id))
            })
            .min()
            .map(|(.., id)| id)
    }

    /// Tries the chosen direct endpoint of `peer` again (for
    /// [`DIRECT_GRACE`]; `relay` is the one to fall back to meanwhile).
    fn go_direct(&mut self, peer: NodeId, relay: Option<NodeId>, now: Instant) {
        let Some(r) = self.routes.get_mut(&peer) else {
            return;
        };
        r.direct_since = now;
        r.relay = relay;
        r.relay_since = now;
        let endpoint = r.chosen;
        self.command(Command::Direct { peer, endpoint });
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
