//! What the daemon measures of its peers' paths: the endpoint echo
//! ([`Asker`]: where members see us, moves, path MTU, and the checks of
//! direct candidates), the overlay probes ([`Prober`]: RTT and loss per
//! peer, round robin, and closely for peers whose traffic goes unanswered
//! or whose path just changed), liveness from tunnel traffic, and what the
//! data plane shows ([`Facts`]) for the member's route decisions, which
//! are carried out here ([`Paths::carry_out`]).

use crate::dataplane::Shared;
use crate::member::peers::wg_key;
use crate::probe::{Prober, PROBE_TIMEOUT};
use federation::paths::public_candidates;
use federation::roster::Roster;
use federation::routes::{Command, Facts};
use federation::{NodeId, Status};
use netstack::asker::{Asker, Outcome, IPV4_UDP};
use netstack::node::Route;
use netstack::PublicKey;
use rand_core::OsRng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Peers probed per round (round robin).
const PROBES_PER_ROUND: usize = 8;
/// A peer whose last this many overlay probes were lost is silent.
const SILENT_AFTER: usize = 3;
/// Peers watched closely are probed this often, and the routes decided.
pub const WATCH_EVERY: Duration = Duration::from_millis(300);
/// Data sent this long without anything received back makes a peer
/// watched closely (one-way traffic is normal; the probes tell).
const UNANSWERED: Duration = Duration::from_millis(500);
/// ... if it was more than one packet: a lone packet is usually a reply
/// (to the other side's probe, say) that nothing answers.
const UNANSWERED_PACKETS: u32 = 2;
/// A close probe is lost after this long, or four round trips if longer.
const WATCH_TIMEOUT: Duration = Duration::from_millis(700);
/// Peers probed closely per tick, at most (those with unanswered data
/// first): a node that just joined a big network does not flood it.
const MAX_WATCHED: usize = 32;

/// When a periodic look at the paths happens, and for whom.
#[derive(Clone, Copy)]
pub struct Tick {
    /// This node.
    pub me: NodeId,
    /// False once this node is revoked (it probes nobody then).
    pub active: bool,
    /// Now.
    pub now: Instant,
    /// Now, in ms since the Unix epoch.
    pub now_ms: u64,
}

/// The echo and the probes.
pub struct Paths {
    /// Echo questions and what their answers show.
    pub asker: Asker,
    /// Overlay probes (none without CAP_NET_RAW).
    pub prober: Option<Prober<NodeId>>,
    probe_cursor: usize,
    /// Bytes each peer's tunnel had received at the last look.
    tunnel_rx: BTreeMap<NodeId, u64>,
}

/// What one look at the data plane shows.
struct Look {
    facts: BTreeMap<NodeId, Facts>,
    /// Bytes received per peer.
    rx: Vec<(NodeId, u64)>,
    /// Peers whose data has gone unanswered for [`UNANSWERED`].
    unanswered: BTreeSet<NodeId>,
}

impl Paths {
    /// Nothing measured yet.
    pub fn new() -> Self {
        Self {
            asker: Asker::new(),
            prober: Prober::new()
                .map_err(|e| tracing::warn!("no overlay RTT probes: {e:#}"))
                .ok(),
            probe_cursor: 0,
            tunnel_rx: BTreeMap::new(),
        }
    }

    /// Forgets what it knew of members not in `members`.
    pub fn retain(&mut self, members: &BTreeSet<NodeId>, keys: &BTreeSet<PublicKey>) {
        self.tunnel_rx.retain(|id, _| members.contains(id));
        self.asker.retain(|k| keys.contains(k));
    }

    /// Asks members where they see us, if a round is due, and sends every
    /// question waiting (path checks too) from the data-plane socket.
    pub fn ask_echo(&mut self, data: &Shared, now: Instant) {
        if self.asker.poll_timeout().is_none_or(|t| now >= t) {
            let (direct, mtu) = data.with(|n| {
                let direct: Vec<(PublicKey, SocketAddr)> = n
                    .device()
                    .peers()
                    .filter_map(|p| {
                        let at = p.endpoint.filter(|e| !netstack::relay::is_virtual(e))?;
                        Some((p.public_key, at))
                    })
                    .collect();
                (direct, n.device().mtu())
            });
            // The largest tunnel datagram the overlay MTU implies, with the
            // whole overhead budget (IPv6 headers, a relay envelope) minus
            // the IPv4 and UDP headers the probe itself travels in.
            let target = u16::try_from(mtu)
                .unwrap_or(u16::MAX)
                .saturating_add(federation::member::TUNNEL_OVERHEAD)
                .saturating_sub(IPV4_UDP);
            self.asker.handle_timeout(now, &direct, target, &mut OsRng);
        }
        while let Some(q) = self.asker.poll_question() {
            let Some((at, bytes)) = data.with(|n| n.question(&q.peer, q.nonce, q.len, q.to)) else {
                continue;
            };
            let sent = match q.ttl {
                Some(ttl) => data.send_with_ttl(at, &bytes, ttl),
                None => data.send_to(at, &bytes),
            };
            if let Err(e) = sent {
                tracing::debug!("cannot send an endpoint echo to {at}: {e}");
            }
        }
        // Calls after the punches they follow.
        while let Some((peer, nonce)) = self.asker.poll_call() {
            let Some((at, bytes)) = data.with(|n| n.call(&peer, nonce, now)) else {
                continue;
            };
            if let Err(e) = data.send_to(at, &bytes) {
                tracing::debug!("cannot call a relayed peer through {at}: {e}");
            }
        }
    }

    /// What the echo answers showed since the last call: the checks of
    /// direct candidates that answered (member, endpoint), and the rest.
    pub fn outcomes(
        &mut self,
        roster: &Roster<'_>,
        now_ms: u64,
    ) -> (Vec<(NodeId, SocketAddr)>, Vec<Outcome>) {
        let (mut verified, mut rest) = (Vec::new(), Vec::new());
        while let Some(o) = self.asker.poll_outcome() {
            match o {
                Outcome::Verified { peer, endpoint } => {
                    if let Some(id) = member_of(roster, &peer, now_ms) {
                        verified.push((id, endpoint));
                    }
                }
                other => rest.push(other),
            }
        }
        (verified, rest)
    }

    /// Every [`WATCH_EVERY`]: probes the peers watched closely (data
    /// unanswered, and `settling`: a path that just changed) and says what
    /// the data plane and the probes show now, for the routes.
    pub fn watch(
        &mut self,
        data: &Shared,
        roster: &Roster<'_>,
        t: Tick,
        settling: &[NodeId],
    ) -> BTreeMap<NodeId, Facts> {
        let look = self.look(data, roster, t);
        if let Some(prober) = self.prober.as_mut() {
            prober.expire(t.now);
            let addrs: BTreeMap<NodeId, Ipv4Addr> = addresses(roster, &t.me, t.now_ms).collect();
            let mut watched: Vec<NodeId> = look.unanswered.iter().copied().collect();
            watched.extend(
                settling
                    .iter()
                    .copied()
                    .filter(|id| !look.unanswered.contains(id)),
            );
            for id in watched.into_iter().filter(|_| t.active).take(MAX_WATCHED) {
                let Some(addr) = addrs.get(&id).copied() else {
                    continue;
                };
                let rtt = prober.window(&id).and_then(|w| w.avg()).unwrap_or_default();
                let within = WATCH_TIMEOUT.max(rtt * 4).min(PROBE_TIMEOUT);
                prober.send(id, addr, within);
            }
        }
        look.facts
    }

    /// One round (every 2 s): members whose tunnels received something
    /// (heard from), and the next peers probed.
    pub fn round(&mut self, data: &Shared, roster: &Roster<'_>, t: Tick) -> Vec<NodeId> {
        let look = self.look(data, roster, t);
        // Liveness from tunnel traffic: keepalives every 25 s keep quiet
        // tunnels alive, so no control connection to every member is needed.
        let heard = look
            .rx
            .into_iter()
            .filter(|(id, bytes)| {
                self.tunnel_rx
                    .insert(*id, *bytes)
                    .is_some_and(|before| before < *bytes)
            })
            .map(|(id, _)| id)
            .collect();
        self.probe_round(roster, t);
        heard
    }

    /// What the data plane and the probes show of every peer.
    fn look(&self, data: &Shared, roster: &Roster<'_>, t: Tick) -> Look {
        let now = t.now;
        let keys: BTreeMap<PublicKey, NodeId> = roster
            .members(t.now_ms)
            .iter()
            .filter_map(|m| Some((wg_key(m.record)?, m.id)))
            .collect();
        let prober = self.prober.as_ref();
        let mut look = Look {
            facts: BTreeMap::new(),
            rx: Vec::new(),
            unanswered: BTreeSet::new(),
        };
        data.with(|n| {
            for p in n.device().peers() {
                let Some(id) = keys.get(&p.public_key).copied() else {
                    continue;
                };
                look.rx.push((id, p.stats.rx_bytes));
                if unanswered(&p, now) {
                    look.unanswered.insert(id);
                }
                let window = prober.and_then(|pr| pr.window(&id));
                let relay = match n.route(&p.public_key) {
                    Some(Route::Relayed(k)) => keys.get(&k).copied(),
                    _ => None,
                };
                look.facts.insert(
                    id,
                    Facts {
                        direct: p.endpoint.is_some_and(|e| !netstack::relay::is_virtual(&e)),
                        relay,
                        handshake: p.stats.last_handshake,
                        answered: window.is_some_and(|w| w.min().is_some()),
                        silent: window.is_some_and(|w| w.last_lost(SILENT_AFTER)),
                        rtt: window.and_then(|w| w.avg()),
                    },
                );
            }
        });
        look
    }

    /// Carries out one route decision of the member on the data plane
    /// (and says so), then sends the echo questions waiting.
    pub fn carry_out(
        &mut self,
        c: Command,
        data: &Shared,
        roster: &Roster<'_>,
        now: Instant,
        now_ms: u64,
    ) {
        carry_out(
            c,
            data,
            roster,
            &mut self.asker,
            self.prober.as_mut(),
            now,
            now_ms,
        );
        self.ask_echo(data, now);
    }

    /// Probes the next few peers (round robin) through the overlay.
    fn probe_round(&mut self, roster: &Roster<'_>, t: Tick) {
        let peers: Vec<(NodeId, Ipv4Addr)> = addresses(roster, &t.me, t.now_ms).collect();
        let Some(prober) = self.prober.as_mut() else {
            return;
        };
        prober.expire(t.now);
        let ids: BTreeSet<NodeId> = peers.iter().map(|(id, _)| *id).collect();
        prober.retain(|k| ids.contains(k));
        if peers.is_empty() || !t.active {
            return;
        }
        for i in 0..PROBES_PER_ROUND.min(peers.len()) {
            let (id, addr) = peers[(self.probe_cursor + i) % peers.len()];
            prober.send(id, addr, PROBE_TIMEOUT);
        }
        self.probe_cursor = (self.probe_cursor + PROBES_PER_ROUND) % peers.len();
    }
}

/// The active hosts but `me`, with their overlay addresses (a lent relay
/// has no overlay route: the probes cannot reach it).
fn addresses<'a>(
    roster: &'a Roster<'a>,
    me: &'a NodeId,
    now_ms: u64,
) -> impl Iterator<Item = (NodeId, Ipv4Addr)> + 'a {
    roster
        .hosts(now_ms)
        .into_iter()
        .filter(move |m| m.status == Status::Active && m.id != *me)
        .map(|m| (m.id, m.record.address))
}

/// The member whose WireGuard key is `key`.
pub(super) fn member_of(roster: &Roster<'_>, key: &PublicKey, now_ms: u64) -> Option<NodeId> {
    roster
        .members(now_ms)
        .iter()
        .find(|m| wg_key(m.record).as_ref() == Some(key))
        .map(|m| m.id)
}

/// Applies one route decision to the data plane (and says so).
fn carry_out(
    c: Command,
    data: &Shared,
    roster: &Roster<'_>,
    asker: &mut Asker,
    prober: Option<&mut Prober<NodeId>>,
    now: Instant,
    now_ms: u64,
) {
    let member = |id: &NodeId| roster.member(id, now_ms);
    let name = |id: &NodeId| member(id).map_or_else(|| id.short(), |m| m.record.name.clone());
    let key = |id: &NodeId| member(id).and_then(|m| wg_key(m.record));
    let candidates =
        |id: &NodeId| member(id).map_or_else(Vec::new, |m| public_candidates(m.record));
    let peer = match c {
        Command::Direct { peer, .. }
        | Command::Relay { peer, .. }
        | Command::Verify { peer, .. }
        | Command::Punch { peer }
        | Command::Check { peer } => peer,
    };
    let Some(peer_key) = key(&peer) else {
        return;
    };
    match c {
        Command::Verify { endpoint, .. } => {
            tracing::debug!(peer = %name(&peer), %endpoint, "checking a direct path");
            asker.verify(peer_key, endpoint, now, &mut OsRng);
            // The path in use does not change: its probes stay.
            return;
        }
        Command::Punch { .. } => {
            let candidates = candidates(&peer);
            tracing::debug!(peer = %name(&peer), ?candidates, "punching towards a relayed peer and calling it");
            asker.punch(peer_key, &candidates, now, &mut OsRng);
            return;
        }
        Command::Check { .. } => {
            let candidates = candidates(&peer);
            tracing::debug!(peer = %name(&peer), ?candidates, "checking a relayed peer's endpoints");
            for e in candidates {
                asker.verify(peer_key, e, now, &mut OsRng);
            }
            return;
        }
        Command::Direct { endpoint, .. } => {
            tracing::info!(peer = %name(&peer), %endpoint, "taking the direct path");
            data.with(|n| n.go_direct(&peer_key, endpoint));
        }
        Command::Relay {
            relay, replacing, ..
        } => {
            let Some(relay_key) = key(&relay) else {
                return;
            };
            match replacing {
                Some(old) => tracing::info!(
                    peer = %name(&peer), relay = %name(&relay), failed = %name(&old),
                    "the relay stopped getting through; relaying elsewhere"
                ),
                None => tracing::info!(
                    peer = %name(&peer), relay = %name(&relay), "the direct path does not answer; relaying"
                ),
            }
            if data
                .with(|n| n.relay_via(&peer_key, &relay_key, now))
                .is_none()
            {
                tracing::debug!("the relay has no direct endpoint yet");
            }
        }
    }
    if let Some(p) = prober {
        p.forget(&peer);
    }
}

/// True if `p`'s data has gone unanswered long enough to watch it closely:
/// [`UNANSWERED`] since the first packet, and more than a lone reply. (A
/// lone reply counted too made probes beget probes: the side that answered
/// a probe saw its answer unanswered, probed back, and so on every 300 ms
/// for every peer, ~90 datagrams/s per node at 60 members.)
fn unanswered(p: &netstack::device::PeerInfo, now: Instant) -> bool {
    p.unanswered_since
        .is_some_and(|t| now.saturating_duration_since(t) >= UNANSWERED)
        && p.unanswered_packets >= UNANSWERED_PACKETS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(since_ms: Option<u64>, packets: u32, now: Instant) -> netstack::device::PeerInfo {
        netstack::device::PeerInfo {
            public_key: netstack::PrivateKey::generate().public_key(),
            endpoint: None,
            allowed_ips: vec![],
            stats: Default::default(),
            persistent_keepalive: None,
            unanswered_since: since_ms.map(|ms| now - Duration::from_millis(ms)),
            unanswered_packets: packets,
        }
    }

    #[test]
    fn a_lone_reply_is_not_watched_and_unanswered_traffic_is() {
        let now = Instant::now();
        assert!(!unanswered(&peer(None, 0, now), now), "nothing sent");
        assert!(
            !unanswered(&peer(Some(5_000), 1, now), now),
            "one reply long ago"
        );
        assert!(!unanswered(&peer(Some(100), 9, now), now), "too recent");
        assert!(
            unanswered(&peer(Some(600), 2, now), now),
            "a flow unanswered"
        );
    }
}
