//! How this node reaches its peers, as the control loop runs it: the
//! endpoint echo ([`Asker`]: where members see us, moves, path MTU), the
//! overlay probes ([`Prober`]: RTT and loss per peer), liveness from tunnel
//! traffic, and the route decisions ([`Routes`]) carried out on the data
//! plane.

use super::peers::wg_key;
use crate::dataplane::Shared;
use crate::probe::Prober;
use federation::routes::{Command, Facts, Routes, SESSION_FRESH};
use federation::{Ledger, NodeId, Status};
use netstack::asker::{Asker, Outcome, IPV4_UDP};
use netstack::PublicKey;
use rand_core::OsRng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Instant;

/// Peers probed per round (round robin).
const PROBES_PER_ROUND: usize = 8;
/// A peer whose last this many overlay probes were lost is silent.
const SILENT_AFTER: usize = 3;

/// The path machines and the probes.
pub struct Paths {
    /// Route decisions per peer.
    pub routes: Routes,
    /// Echo questions and what their answers show.
    pub asker: Asker,
    /// Overlay probes (none without CAP_NET_RAW).
    pub prober: Option<Prober<NodeId>>,
    probe_cursor: usize,
    /// Bytes each peer's tunnel had received at the last look.
    tunnel_rx: BTreeMap<NodeId, u64>,
}

impl Paths {
    /// Nothing measured yet.
    pub fn new() -> Self {
        Self {
            routes: Routes::new(),
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

    /// Asks members where they see us, if a round is due, sending the
    /// questions from the data-plane socket.
    pub fn ask_echo(&mut self, data: &Shared, now: Instant) {
        if self.asker.poll_timeout().is_some_and(|t| now < t) {
            return;
        }
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
        // whole overhead budget (IPv6 headers, a relay envelope) minus the
        // IPv4 and UDP headers the probe itself travels in.
        let target = u16::try_from(mtu)
            .unwrap_or(u16::MAX)
            .saturating_add(federation::member::TUNNEL_OVERHEAD)
            .saturating_sub(IPV4_UDP);
        self.asker.handle_timeout(now, &direct, target, &mut OsRng);
        while let Some(q) = self.asker.poll_question() {
            let Some((at, bytes)) = data.with(|n| n.question(&q.peer, q.nonce, q.len)) else {
                continue;
            };
            if let Err(e) = data.send_to(at, &bytes) {
                tracing::debug!("cannot send an endpoint echo to {at}: {e}");
            }
        }
    }

    /// What the echo answers showed since the last call.
    pub fn outcomes(&mut self) -> Vec<Outcome> {
        std::iter::from_fn(|| self.asker.poll_outcome()).collect()
    }

    /// One round: members whose tunnels received something (heard from),
    /// route decisions carried out, and the next peers probed. `active`
    /// is false once this node is revoked (it probes nobody then).
    pub fn round(
        &mut self,
        data: &Shared,
        ledger: &Ledger,
        me: &NodeId,
        active: bool,
        now: Instant,
        now_ms: u64,
    ) -> Vec<NodeId> {
        let keys: BTreeMap<PublicKey, NodeId> = ledger
            .members(now_ms)
            .iter()
            .filter_map(|m| Some((wg_key(m.record)?, m.id)))
            .collect();
        let prober = self.prober.as_ref();
        let mut facts = BTreeMap::new();
        let mut rx = Vec::new();
        data.with(|n| {
            for p in n.device().peers() {
                let Some(id) = keys.get(&p.public_key).copied() else {
                    continue;
                };
                rx.push((id, p.stats.rx_bytes));
                let window = prober.and_then(|pr| pr.window(&id));
                facts.insert(
                    id,
                    Facts {
                        direct: p.endpoint.is_some_and(|e| !netstack::relay::is_virtual(&e)),
                        session: p
                            .stats
                            .last_handshake
                            .is_some_and(|t| now.saturating_duration_since(t) < SESSION_FRESH),
                        silent: window.is_some_and(|w| w.last_lost(SILENT_AFTER)),
                        rtt: window.and_then(|w| w.avg()),
                    },
                );
            }
        });
        // Liveness from tunnel traffic: keepalives every 25 s keep quiet
        // tunnels alive, so no control connection to every member is needed.
        let heard = rx
            .into_iter()
            .filter(|(id, bytes)| {
                self.tunnel_rx
                    .insert(*id, *bytes)
                    .is_some_and(|before| before < *bytes)
            })
            .map(|(id, _)| id)
            .collect();
        self.routes.handle_timeout(now, me, ledger, &facts, now_ms);
        while let Some(c) = self.routes.poll_command() {
            carry_out(c, data, ledger, self.prober.as_mut(), now, now_ms);
        }
        self.probe_round(ledger, me, active, now, now_ms);
        heard
    }

    /// Probes the next few peers (round robin) through the overlay.
    fn probe_round(
        &mut self,
        ledger: &Ledger,
        me: &NodeId,
        active: bool,
        now: Instant,
        now_ms: u64,
    ) {
        let peers: Vec<(NodeId, std::net::Ipv4Addr)> = ledger
            .members(now_ms)
            .iter()
            .filter(|m| m.status == Status::Active && m.id != *me)
            .map(|m| (m.id, m.record.address))
            .collect();
        let Some(prober) = self.prober.as_mut() else {
            return;
        };
        prober.expire(now);
        let ids: BTreeSet<NodeId> = peers.iter().map(|(id, _)| *id).collect();
        prober.retain(|k| ids.contains(k));
        if peers.is_empty() || !active {
            return;
        }
        for i in 0..PROBES_PER_ROUND.min(peers.len()) {
            let (id, addr) = peers[(self.probe_cursor + i) % peers.len()];
            prober.send(id, addr);
        }
        self.probe_cursor = (self.probe_cursor + PROBES_PER_ROUND) % peers.len();
    }
}

/// Applies one route decision to the data plane (and says so).
fn carry_out(
    c: Command,
    data: &Shared,
    ledger: &Ledger,
    prober: Option<&mut Prober<NodeId>>,
    now: Instant,
    now_ms: u64,
) {
    let member = |id: &NodeId| ledger.member(id, now_ms);
    let name = |id: &NodeId| member(id).map_or_else(|| id.short(), |m| m.record.name.clone());
    let key = |id: &NodeId| member(id).and_then(|m| wg_key(m.record));
    let peer = match c {
        Command::Direct { peer, .. } | Command::Relay { peer, .. } => peer,
    };
    let Some(peer_key) = key(&peer) else {
        return;
    };
    match c {
        Command::Direct { endpoint, .. } => {
            tracing::info!(peer = %name(&peer), %endpoint, "trying the direct path");
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
                    peer = %name(&peer), relay = %name(&relay), "no direct path; relaying"
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
